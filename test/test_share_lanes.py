"""Compact lane deltas: exact round trips, ids kept across frames, small deltas, hostile input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from gs_map_share.container import reseal
from gs_map_share.errors import DecodeError
from gs_map_share.lanes import Lane, LaneState, assign_ids, decode_lanes, encode_lanes, quantize_lanes


def lanes(rng, n=12, k=20):
    out = []
    for i in range(n):
        start = rng.uniform(-30, 30, 2)
        steps = np.cumsum(rng.normal([1.0, 0.0], 0.05, (k, 2)), axis=0)
        out.append(Lane(i + 1, int(rng.integers(0, 3)), float(rng.uniform(0.3, 1)), start + steps))
    return out


def test_snapshot_and_delta_round_trip():
    rng = np.random.default_rng(0)
    a = lanes(rng)
    qa = quantize_lanes(a)
    snap = encode_lanes(None, qa, map_id=3, seq=1, base_seq=0)
    h, st = decode_lanes(snap, None)
    assert h.is_snapshot and st.checksum() == qa.checksum()
    back = st.to_lanes(0.01)
    assert max(np.abs(x.points - y.points).max() for x, y in zip(back, a, strict=False)) <= 0.005 + 1e-9
    b = [Lane(x.id, x.cls, x.score, x.points + (0.03 if x.id % 3 == 0 else 0.0)) for x in a if x.id != 5]
    b.append(Lane(99, 1, 0.9, np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 1.5]])))
    qb = quantize_lanes(b)
    delta = encode_lanes(qa, qb, map_id=3, seq=2, base_seq=1)
    assert len(delta) < len(snap)
    h, st2 = decode_lanes(delta, st)
    assert st2.checksum() == qb.checksum() and set(st2.lanes) == set(qb.lanes)
    assert st.checksum() == qa.checksum()  # the base is untouched
    assert len(encode_lanes(qb, qb, map_id=3, seq=3, base_seq=2)) < 200  # nothing changed: header only


def test_assign_ids_keeps_identity():
    rng = np.random.default_rng(1)
    prev = lanes(rng, n=5)

    @dataclass
    class E:
        cls: int
        score: float
        points: np.ndarray

    els = [E(p.cls, p.score, p.points + 0.1) for p in reversed(prev)] + [
        E(2, 0.5, np.array([[100.0, 100.0]]))
    ]
    got, nxt = assign_ids(prev, els, next_id=6)
    assert sorted(g.id for g in got) == [1, 2, 3, 4, 5, 6] and nxt == 7


def test_corrupt_lane_containers_raise_decode_error_only():
    rng = np.random.default_rng(2)
    qa = quantize_lanes(lanes(rng))
    qb = quantize_lanes(lanes(rng))
    delta = encode_lanes(qa, qb, map_id=1, seq=2, base_seq=1)
    for i in range(0, len(delta), 3):
        b = bytearray(delta)
        b[i] ^= 0xFF
        for blob in (bytes(b), reseal(bytes(b))):
            try:
                decode_lanes(blob, qa)
            except DecodeError:
                pass
    with pytest.raises(DecodeError):
        decode_lanes(delta, LaneState())
