"""Fleet merge: the global map is the documented per-tile rule over the vehicles' own maps.

The vehicles' maps come from real mapper runs through one procedural world (test/fleet_drives.py);
each vehicle's map as the server holds it is compared with the vehicle's own receiver-side map
(MapStore), and the global map with the rule computed offline from those maps, in any interleaving.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from fleet_drives import FLEET_QUALITY, fleet_recordings
from fleet_rule import offline_merge

from gs_map_share.container import Header, pack, unpack
from gs_map_share.merge import (
    APPLIED,
    BUFFERED,
    REJECTED,
    REPLAYED,
    FleetMerge,
    global_ids,
    merge_maps,
    tile_counts,
    tiles_of,
)
from gs_map_share.quantize import QMap, QuantParams
from gs_map_share.receiver import MapStore

PARAMS = QuantParams.from_quality(FLEET_QUALITY)
GLOBAL_ID = 1000000


@pytest.fixture(scope="module")
def recs():
    return fleet_recordings()


def _own_maps(recs) -> dict[int, QMap]:
    """Each vehicle's map as its own receivers rebuild it (the codec's MapStore, not our code)."""
    out = {}
    for r in recs:
        s = MapStore()
        for c in r.containers:
            assert s.receive(c) in ("snapshot", "applied")
        out[r.map_id] = s.state
    return out


def _offline_merge(maps: dict[int, QMap]) -> QMap:
    """The rule of docs/fleet.md written out independently (test/fleet_rule.py)."""
    return offline_merge(maps, PARAMS.tile_bits)


def _run(merge: FleetMerge, order: list[bytes]) -> MapStore:
    """Feed containers; a MapStore follows the global stream (snapshot first, then the deltas)."""
    follower = MapStore()
    assert follower.receive(merge.snapshot()) == "snapshot"
    for c in order:
        r = merge.offer(c)
        if r.global_delta is not None:
            assert follower.receive(r.global_delta) == "applied", follower.last_error
        # incremental = rule from scratch after every container
        assert merge.global_map.equals(merge.reference_merge())
    return follower


def test_global_map_is_the_rule_over_the_vehicles_maps(recs):
    own = _own_maps(recs)
    assert len(own) == 4 and all(len(q) > 50 for q in own.values())
    merge = FleetMerge(PARAMS, global_map_id=GLOBAL_ID, global_seq=5)
    follower = _run(merge, [c for r in recs for c in r.containers])
    for mid, q in own.items():
        assert merge.vehicles[mid].state.equals(q)
    expected = _offline_merge(own)
    assert merge.global_map.equals(expected)
    assert follower.state.equals(expected)  # the receiver of the global stream: bit-identical
    # the drives overlap: some tiles are seen by several vehicles, and every vehicle owns some
    shared = [t for t in merge.tile_vehicles.values() if len(t) > 1]
    assert shared and len(set(merge.owner.values())) == 4
    assert len(expected) < sum(len(q) for q in own.values())


def test_any_interleaving_gives_the_same_global_bytes(recs):
    streams = [list(r.containers) for r in recs]
    results = set()
    for seed in range(4):
        rng = random.Random(seed)
        cursors, order = [0] * 4, []
        while any(c < len(s) for c, s in zip(cursors, streams, strict=True)):
            k = rng.choice([i for i in range(4) if cursors[i] < len(streams[i])])
            order.append(streams[k][cursors[k]])
            cursors[k] += 1
        if seed >= 2:  # also out of order within a vehicle (buffered), and duplicated
            rng.shuffle(order)
            order += order[: len(order) // 3]
        merge = FleetMerge(PARAMS, global_map_id=GLOBAL_ID, global_seq=5)
        follower = _run(merge, order)
        snap = merge.snapshot()
        h, _ = unpack(snap)
        results.add((follower.state.checksum(), h.state_crc, len(merge.global_map)))
        assert follower.state.equals(merge.global_map)
    assert len(results) == 1


def test_bad_vehicles_are_counted_and_never_touch_the_global_map(recs):
    merge = FleetMerge(PARAMS, global_map_id=GLOBAL_ID, global_seq=5)
    for c in recs[0].containers:
        merge.offer(c)
    before = merge.global_map.copy()
    seq0 = merge.global_seq
    snap2 = recs[1].containers[0]
    h, chunks = unpack(snap2)

    def forged(**kw):
        d = dict(h.__dict__)
        d.update(kw)
        return pack(Header(**d), chunks)

    other_params = QuantParams.from_quality(FLEET_QUALITY - 1)
    bad = {
        "frame": forged(frame_id="odom"),
        "quantisation": forged(params=other_params),
        "sh": forged(sh_degree=1),
        "own id": forged(map_id=GLOBAL_ID),
    }
    for name, data in bad.items():
        r = merge.offer(data)
        assert r.status == REJECTED and not r.accepted, name
    corrupt = bytearray(recs[0].containers[2])
    corrupt[-5] ^= 0x40
    assert merge.offer(bytes(corrupt)).status in (REJECTED, REPLAYED)
    assert merge.offer(recs[0].containers[3]).status == REPLAYED  # replayed delta
    # a corrupt delta that is next in sequence: CRC catches it
    m2 = FleetMerge(PARAMS, global_map_id=GLOBAL_ID)
    m2.offer(recs[0].containers[0])
    c1 = bytearray(recs[0].containers[1])
    c1[len(c1) // 2] ^= 0xFF
    assert m2.offer(bytes(c1)).status == REJECTED
    assert m2.vehicles[1].counts[REJECTED] == 1 and "CRC" in m2.vehicles[1].last_error
    assert m2.offer(recs[0].containers[1]).status == APPLIED  # the good one still applies
    # ids beyond the fleet's 32-bit local id space
    big = QMap.concat([recs_state(recs[1])])
    big.ids = big.ids + np.uint64(1 << 33)
    from gs_map_share.snapshot import encode_snapshot

    data, _ = encode_snapshot(big, PARAMS, map_id=2, seq=10**9, frame_id="map")
    assert merge.offer(data).status == REJECTED
    assert merge.global_map.equals(before) and merge.global_seq == seq0
    v2 = merge.vehicles[2]
    assert v2.counts[REJECTED] == 4 and v2.state is None
    assert merge.vehicles[1].counts[REPLAYED] >= 1


def recs_state(rec) -> QMap:
    s = MapStore()
    for c in rec.containers:
        s.receive(c)
    return s.state


def test_future_deltas_wait_for_the_gap(recs):
    merge = FleetMerge(PARAMS, global_map_id=GLOBAL_ID, global_seq=5)
    c = recs[2].containers
    assert merge.offer(c[0]).status == "snapshot"
    assert merge.offer(c[2]).status == BUFFERED
    r = merge.offer(c[1])
    assert r.status == APPLIED and [a.seq for a in r.accepted] == [unpack(c[1])[0].seq, unpack(c[2])[0].seq]


def test_merge_rule_tie_and_ids():
    """Two vehicles, one tile each with equal counts: the smaller map id owns it."""
    q = QMap.empty(0)
    n = 3
    a = QMap(
        0,
        np.arange(1, n + 1, dtype=np.uint64),
        np.zeros((n, 3), np.int64) + 5,
        np.zeros(n, np.uint8),
        np.zeros(n, np.int32),
        np.zeros((n, 3), np.int32),
        np.full(n, 3, np.uint8),
        np.zeros((n, 3), np.int32),
        np.zeros((n, 3), np.int32),
        np.zeros((n, 0, 3), np.int32),
    )
    b = a.copy()
    out = merge_maps({7: b, 3: a, 9: q}, PARAMS.tile_bits, 0)
    assert list(out.ids) == list(global_ids(3, a.ids))
    assert tile_counts(a, PARAMS.tile_bits) == {tuple(tiles_of(a, PARAMS.tile_bits)[0].tolist()): 3}


def test_changed_tiles_are_exactly_the_tiles_whose_content_differs(recs):
    """Brute force: a tile changed iff the set of (id, row bytes) in it differs, either direction."""
    from gs_map_share.merge import changed_tiles

    def content(q):
        out: dict = {}
        rows = np.concatenate(
            [q.ids[:, None].view(np.int64), q.pos, q.level[:, None], q.op[:, None], q.scale,
             q.rot_idx[:, None], q.rot, q.dc], axis=1,
        )  # fmt: skip
        for t, row in zip(map(tuple, (q.pos >> PARAMS.tile_bits).tolist()), rows.tolist(), strict=True):
            out.setdefault(t, set()).add(tuple(row))
        return out

    states = []
    s = MapStore()
    for c in recs[0].containers + recs[1].containers[:1]:
        s.receive(c)
        states.append(s.state)
    full = recs_state(recs[2])
    thin = full.take(np.flatnonzero(np.arange(len(full)) % 3 != 1))  # ids no longer aligned by row
    thin.op = thin.op.copy()
    thin.op[::5] += 1  # and some rows edited
    states += [full, thin]
    for a, b in zip(states, states[1:] + states[:1], strict=True):
        for old, new in ((a, b), (b, a)):
            ca, cb = content(old), content(new)
            want = {t for t in set(ca) | set(cb) if ca.get(t) != cb.get(t)}
            assert changed_tiles(old, new, PARAMS.tile_bits) == want


def test_the_global_snapshot_is_encoded_again_only_when_the_global_map_changed(recs, monkeypatch):
    """map_server_node sends the global snapshot every snapshot_period_s, changed or not, and stores
    one at compaction: encoding a large global map takes seconds (1.4 s for 400k Gaussians), so the
    same map at the same sequence is encoded once; a change gives a snapshot of the new global map."""
    from gs_map_share import snapshot as snapshot_mod

    calls = []
    real = snapshot_mod.encode_snapshot
    monkeypatch.setattr(snapshot_mod, "encode_snapshot", lambda *a, **k: calls.append(1) or real(*a, **k))
    merge = FleetMerge(PARAMS, global_map_id=GLOBAL_ID, global_seq=5)
    for c in recs[0].containers:
        merge.offer(c)
    assert len(merge.global_map)
    first = merge.snapshot()
    assert merge.snapshot() == first and len(calls) == 1
    committed = merge.global_map, merge.global_seq
    assert [merge.offer(c).global_delta for c in recs[1].containers] != [None] * len(recs[1].containers)
    follower = MapStore()
    assert follower.receive(merge.snapshot()) == "snapshot" and len(calls) == 2
    assert follower.state.equals(merge.global_map) and follower.seq == merge.global_seq
    merge.global_map, merge.global_seq = committed  # (map_server_node's rollback on a store error)
    assert merge.snapshot() == first


def test_a_vehicle_map_beyond_the_bound_is_refused_before_decoding(recs, monkeypatch):
    """A vehicle whose snapshot declares more Gaussians than ``max_vehicle_gaussians`` is rejected
    from its header (the decoder never runs) and the global map is untouched; within the bound
    the same stream merges as always."""
    from gs_map_share import merge as merge_mod

    snap = recs[0].containers[0]
    n = unpack(snap)[0].gaussians
    calls = []
    real = merge_mod.decode_snapshot
    monkeypatch.setattr(merge_mod, "decode_snapshot", lambda *a, **k: calls.append(1) or real(*a, **k))
    small = FleetMerge(PARAMS, global_map_id=GLOBAL_ID, max_vehicle_gaussians=n - 1)
    r = small.offer(snap)
    assert r.status == REJECTED and not calls and small.vehicles[1].state is None
    assert f"at most {n - 1}" in small.vehicles[1].last_error and len(small.global_map) == 0
    enough = FleetMerge(PARAMS, global_map_id=GLOBAL_ID, max_vehicle_gaussians=n)
    assert enough.offer(snap).status != REJECTED and calls
