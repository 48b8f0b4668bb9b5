"""The codec against the real thing: what a receiver holds is the sender's *map* quantised with the
sender's parameters (``to_qmap``), never merely what the sender recorded it sent; hostile containers
are refused whole. Each test here was watched failing with the line it guards broken
(docs/architecture.md, "Mutation checks")."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_map_share.delta import MapSender
from gs_map_share.errors import DecodeError
from gs_map_share.quantize import QuantParams, dequantize, to_qmap
from gs_map_share.receiver import APPLIED, REJECTED, MapStore
from gs_map_share.snapshot import decode_snapshot, encode_snapshot


def moved(g, seed: int, frac: float = 0.3):
    """A copy of ``g`` with a share of its Gaussians moved and recoloured (what a keyframe does)."""
    rng = np.random.default_rng(seed)
    out = g.copy()
    ids = out.ids[rng.random(len(out)) < frac]
    rows = out.rows_of(ids)
    out.update(
        ids,
        means=out.means[rows] + rng.normal(0, 0.05, (len(ids), 3)).astype(out.means.dtype),
        sh=out.sh[rows] + rng.normal(0, 0.2, out.sh[rows].shape).astype(out.sh.dtype),
    )
    return out


def assert_same_qmap(got, want, what: str) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} Gaussians, the map has {len(want)}"
    assert np.array_equal(got.ids, want.ids), f"{what}: other ids"
    for f in ("pos", "level", "op", "scale", "rot_idx", "rot", "dc", "rest"):
        assert np.array_equal(getattr(got, f), getattr(want, f)), f"{what}: field {f} differs"


def test_receiver_refuses_a_delta_on_another_lattice_and_keeps_the_map():
    g = synthetic_map(400, 0, seed=3)
    fine, coarse = QuantParams.from_quality(3), QuantParams.from_quality(1)
    sender = MapSender.from_map(g, fine, first_seq=1)
    other = MapSender.from_map(g, coarse, first_seq=1)  # same map, same sequence, other lattice
    store = MapStore()
    store.receive(sender.snapshot())
    g2 = moved(g, 1)
    foreign, _ = other.update(g2)
    assert store.receive(foreign) == REJECTED
    assert "quantisation" in store.last_error
    assert_same_qmap(store.state, to_qmap(g, fine), "after the foreign delta")
    data, _ = sender.update(g2)
    assert store.receive(data) == APPLIED
    assert_same_qmap(store.state, to_qmap(g2, fine), "after the sender's delta")


@pytest.mark.parametrize("quality", [0, 3])
def test_updated_gaussians_reach_the_receiver(quality):
    """A change set with updates, removals and additions: the receiver equals the new map quantised."""
    g = synthetic_map(500, 1, seed=quality)
    p = QuantParams.from_quality(quality)
    sender = MapSender.from_map(g, p, first_seq=1)
    store = MapStore()
    store.receive(sender.snapshot())
    g2 = moved(g, 2)  # a fresh copy: its change record holds exactly the moves below
    g2.update(g2.ids[:50], opacity_logits=g2.opacity_logits[:50] + 1.0)
    g2.remove(g2.ids[50:60])
    extra = synthetic_map(20, 1, seed=9)
    g2.add(extra.means, extra.quats, extra.log_scales, extra.opacity_logits, extra.sh)
    data, _ = sender.update(g2, g2.take_changes())
    assert store.receive(data) == APPLIED
    assert_same_qmap(store.state, to_qmap(g2, p), "receiver vs the map")
    rebuilt = store.gaussian_map()
    want = dequantize(to_qmap(g2, p), p, g2.tile_size)
    assert np.array_equal(rebuilt.means, want.means) and np.array_equal(rebuilt.sh, want.sh)


def test_rotation_index_out_of_range_is_refused():
    """A rotation index 4 (no such quaternion component): the section coder names it and refuses.
    Encoder and decoder share the per-field coder, so the writer refuses too; with the check gone
    both take it and the container decodes."""
    g = synthetic_map(300, 0, seed=3)
    p = QuantParams.from_quality(3)
    q = to_qmap(g, p)
    q.rot_idx[5] = 4
    with pytest.raises(DecodeError, match="rotation index"):
        data, _ = encode_snapshot(q, p, map_id=1, seq=1)
        decode_snapshot(data)
