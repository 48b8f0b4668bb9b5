"""Layered snapshots: a map whose Gaussians carry ProGS levels is sent in sections of whole levels
(coarsest first; the first gathers the tiny coarse levels, the largest is halved by id up to four
layers), so a prefix decodes to the Gaussians of the coarser levels; and quality 0 (the smallest)."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_map_share.container import LEVEL, TILES, Chunk, pack, unpack
from gs_map_share.errors import DecodeError, EncodeError
from gs_map_share.quantize import QuantParams, quantize, to_qmap
from gs_map_share.section import encode_section
from gs_map_share.snapshot import _layers, decode_map, decode_snapshot, encode_map


def _levelled(n=3000, seed=0, values=(0, 1, 3, 4)):
    g = synthetic_map(n, 1, seed=seed)
    rng = np.random.default_rng(seed)
    g.levels = rng.choice(np.asarray(values, np.uint8), n, p=[0.05, 0.15, 0.3, 0.5][: len(values)])
    return g


def test_layered_round_trip_and_prefixes():
    g = _levelled()  # levels 0 / 1 / 3 / 4 hold 5 / 15 / 30 / 50 %
    p = QuantParams.from_quality(2)
    data, info = encode_map(g, p)
    assert info.levels == 4 and len(info.bytes_per_level) == 4 and sum(info.bytes_per_level) == len(data)
    want = quantize(g, p)
    assert decode_map(data).equals(want)
    # layers: levels 0-1 (level 0 alone is under 1/16 of the map), level 3, then level 4 in two
    # halves by id
    top = want.ids[want.levels == 4]
    lower_half = np.isin(want.ids, top[: len(top) // 2])
    expect = [want.levels <= 1, want.levels <= 3, (want.levels <= 3) | lower_half, np.ones(len(want), bool)]
    for k, rows in enumerate(expect):
        assert decode_map(data, max_level=k).equals(want.subset(np.flatnonzero(rows)))
    assert info.bytes_per_level[0] < 0.3 * len(data)


@pytest.mark.parametrize(
    "shares,groups",
    [
        ((0.02, 0.06, 0.17, 0.75), [[0, 1], [2], [3, "a"], [3, "b"]]),  # the kitchen map's proportions
        ((0.5, 0.5), [[0, "a"], [0, "b"], [1, "a"], [1, "b"]]),  # each level halved
        ((0.1, 0.2, 0.3, 0.4, 0.0), [[0], [1], [2], [3]]),  # enough levels: one per layer
    ],
)
def test_layers_gather_tiny_coarse_levels_and_split_to_four(shares, groups):
    n = 1600
    counts = (np.array(shares) * n).astype(int)
    levels = np.repeat(np.arange(len(shares)), counts).astype(np.uint8)
    rng = np.random.default_rng(1)
    g = synthetic_map(len(levels), 0, seed=2)
    g.levels = rng.permutation(levels)  # levels interleave in id order, as the mapper's do
    q = to_qmap(g, QuantParams())
    layers = _layers(q)
    assert len(layers) == len(groups)
    for rows, grp in zip(layers, groups, strict=False):
        lv = [v for v in grp if not isinstance(v, str)]
        members = np.flatnonzero(np.isin(q.level, lv))
        if grp[-1] in ("a", "b"):  # one half of a level, by id
            half = len(members) // 2
            members = members[:half] if grp[-1] == "a" else members[half:]
        assert np.array_equal(rows, members)
    data, _ = encode_map(g, QuantParams())
    assert decode_map(data).equals(quantize(g, QuantParams()))


def test_one_level_or_flat_request_is_one_section():
    g = _levelled()
    p = QuantParams()
    g1 = g.copy()
    g1.levels[:] = 2
    _, info = encode_map(g1, p, n_levels=5)
    assert info.levels > 1  # aggregated levels of detail, as for any flat map
    data, info = encode_map(g, p, n_levels=1)
    assert info.levels == 1 and decode_map(data).equals(quantize(g, p))


def _layer_chunks(q, p, groups):
    chunks = []
    for i, rows in enumerate(groups):
        sec, _ = encode_section(q.take(rows), p, 1)
        chunks += [Chunk(TILES, i, sec[0].data), Chunk(LEVEL, i, sec[1].data)]
    return chunks


def test_bad_layering_is_rejected():
    g = _levelled(800)
    p = QuantParams()
    data, _ = encode_map(g, p)
    h, chunks = unpack(data)
    swapped = chunks[2:4] + chunks[0:2] + chunks[4:]
    with pytest.raises(DecodeError, match="layer 0"):
        decode_snapshot(pack(h, swapped))
    q = to_qmap(g, p)
    h3 = unpack(data)[0]
    h3.n_levels = 3
    # levels may share a layer, in order; a later layer may not go back to a coarser level
    ok = [
        np.flatnonzero(q.level == 0),
        np.flatnonzero((q.level == 1) | (q.level == 3)),
        np.flatnonzero(q.level == 4),
    ]
    assert decode_map(pack(h3, _layer_chunks(q, p, ok))).equals(quantize(g, p))
    bad = [
        np.flatnonzero((q.level == 0) | (q.level == 3)),
        np.flatnonzero(q.level == 1),
        np.flatnonzero(q.level == 4),
    ]
    with pytest.raises(DecodeError, match="layer 1 holds a level below"):
        decode_snapshot(pack(h3, _layer_chunks(q, p, bad)))
    # the same Gaussians again in a finer layer
    again = q.take(np.flatnonzero(q.level == 3))
    again.level[:] = 5
    chunks5 = _layer_chunks(q, p, [np.flatnonzero(q.level == v) for v in (0, 1, 3, 4)])
    sec, _ = encode_section(again, p, 1)
    h5 = unpack(data)[0]
    h5.n_levels = 5
    with pytest.raises(DecodeError, match="two layers"):
        decode_snapshot(pack(h5, chunks5 + [Chunk(TILES, 4, sec[0].data), Chunk(LEVEL, 4, sec[1].data)]))
    # layer count must match the header
    h.n_levels = 3
    with pytest.raises(DecodeError, match="layers"):
        decode_snapshot(pack(h, chunks))


def test_quality_zero_is_smallest_and_exact():
    g = synthetic_map(4000, 0, seed=3)
    sizes = []
    for qlt in (0, 1, 2):
        p = QuantParams.from_quality(qlt)
        data, _ = encode_map(g, p)
        assert decode_map(data).equals(quantize(g, p))
        sizes.append(len(data))
    assert sizes[0] < sizes[1] < sizes[2]
    with pytest.raises(EncodeError, match="0..5"):
        QuantParams.from_quality(6)


def test_spheres_get_the_identity_rotation():
    g = synthetic_map(2000, 0, seed=4)
    p = QuantParams.from_quality(2)
    g.log_scales[:1000] = g.log_scales[:1000, :1]  # spheres, rotations left random
    q = to_qmap(g, p)
    assert np.all(q.rot_idx[:1000] == 3) and np.all(q.rot[:1000] == 0)
    assert np.any(q.rot[1000:] != 0)
    # the rendered shape is unchanged: covariance of the quantised sphere with its original rotation
    back = quantize(g, p)
    rm = __import__("gs_mapping.geometry", fromlist=["quat_to_matrix"]).quat_to_matrix
    for i in range(0, 1000, 97):
        s2 = np.diag(np.exp(2 * back.log_scales[i].astype(np.float64)))
        q0, q1 = (
            x.astype(np.float64) / np.linalg.norm(x.astype(np.float64)) for x in (g.quats[i], back.quats[i])
        )
        r0, r1 = rm(q0), rm(q1)
        assert np.allclose(r0 @ s2 @ r0.T, r1 @ s2 @ r1.T, rtol=1e-6, atol=1e-12)
    # re-encoding the decoded map is lossless
    data, _ = encode_map(back, p)
    assert decode_map(data).equals(back)
