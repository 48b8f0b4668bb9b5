"""Octree tails (container version 10, tails.py): the encoder's depth choice against the voxel
counts of the real tree, exact round trips of random octrees compiled or not (tiles, branches,
ancestors carried), and hostile tail data refused with one line."""

from __future__ import annotations

import numpy as np
import pytest
from test_guards_format import tiles_header
from test_share_speedpaths import _use_compiled

from gs_map_share import octree, section, tails
from gs_map_share.bitio import Reader, Writer
from gs_map_share.container import TILES, Chunk, pack, unpack
from gs_map_share.errors import DecodeError
from gs_map_share.quantize import QuantParams
from gs_map_share.snapshot import decode_snapshot

D = 9


def _tree(seed: int, n: int, n_tiles: int = 3, spread: int = 40):
    """A random octree of depth D: voxels in clusters (so most deep nodes hold one voxel and a few
    branch), in ``n_tiles`` tiles. Returns build_levels' lists and each voxel's node at every
    depth (brute force, from the codes)."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 1 << D, (spread, 3))
    pos = (centres[rng.integers(0, spread, n)] + rng.integers(-6, 7, (n, 3))) % (1 << D)
    tile = rng.integers(0, n_tiles, n)
    code = octree.morton(pos.astype(np.int64))
    key = np.unique(tile.astype(np.uint64) << np.uint64(3 * D) | code)
    t = (key >> np.uint64(3 * D)).astype(np.int64)
    c = key & np.uint64((1 << (3 * D)) - 1)
    return octree.build_levels(t, c, D)


def _voxels_under(node_tile, node_code, s: int) -> np.ndarray:
    """Voxels under each node at depth s, counted from the voxels' own codes."""
    up = node_code[D] >> np.uint64(3 * (D - s))
    key_s = node_tile[s].astype(np.uint64) << np.uint64(3 * s) | node_code[s]
    key_v = node_tile[D].astype(np.uint64) << np.uint64(3 * s) | up
    return np.searchsorted(key_v, key_s, side="right") - np.searchsorted(key_v, key_s, side="left")


def _streams(node_tile, node_code, s: int) -> list:
    """The encoder's tail streams from depth s of a tree (build_levels' lists)."""
    c = tails.shared_depths(node_tile[D], node_code[D], D)
    return tails.streams(node_tile[D], node_code[D], c, s, D)


def _write(streams) -> bytes:
    w = Writer()
    for label, values, bits in streams:
        section._put(w, values, False, label, log2t=bits)
    return w.getvalue()


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("seed,n", [(1, 3000), (2, 800), (3, 50)])
def test_every_tail_depth_round_trips_to_the_voxels(seed, n, compiled, monkeypatch):
    """For every depth s: the voxels decoded from the tails equal the tree's, in octree order, with
    each voxel's ancestor (carried from s) and the voxels per tile."""
    _use_compiled(compiled, monkeypatch)
    node_tile, node_code, _, _ = _tree(seed, n)
    n_tiles = int(node_tile[0].max()) + 1
    for s in range(D):
        voxels = _voxels_under(node_tile, node_code, s)
        data = _write(_streams(node_tile, node_code, s))
        up = np.arange(len(node_code[s]), dtype=np.int64) * 7 + 3
        tile_count = np.bincount(node_tile[s], minlength=n_tiles).astype(np.int64)
        for carried in (up, None):
            r = Reader(data, "test")
            code, anc, per_tile = tails.get(r, node_code[s], carried, tile_count, D, s, 1 << 20)
            r.end()
            assert np.array_equal(code, node_code[D])
            assert np.array_equal(per_tile, np.bincount(node_tile[D], minlength=n_tiles))
            if carried is None:
                assert anc is None
            else:
                assert np.array_equal(anc, np.repeat(up, voxels))


def test_the_encoder_takes_the_shallowest_depth_of_mostly_tails(monkeypatch):
    """``choose``: the shallowest s ≥ lo, two above D or more, from which every depth has at least
    TAIL_SHARE tails among at least TAIL_MIN nodes — counted from the depths neighbouring voxels
    share, which give every depth's nodes and tails as the tree has them."""
    monkeypatch.setattr(tails, "TAIL_MIN", 200)
    node_tile, node_code, _, _ = _tree(4, 3000)
    counts = [len(x) for x in node_code]
    c = tails.shared_depths(node_tile[D], node_code[D], D)
    alone = np.maximum(c[:-1], c[1:])
    share = {}
    for d in range(D + 1):
        under = _voxels_under(node_tile, node_code, d)
        assert np.count_nonzero(c[:-1] < d) == counts[d]  # a node starts where two voxels part
        assert np.count_nonzero(alone < d) == np.count_nonzero(under == 1)
        share[d] = float(np.mean(under == 1))
    for lo in range(D):
        ok = [
            d
            for d in range(lo, D - 1)
            if all(share[e] >= tails.TAIL_SHARE and counts[e] >= 200 for e in range(d, D))
        ]
        assert tails.choose(c, counts, lo, D) == (min(ok) if ok else None)
    monkeypatch.setattr(tails, "TAIL_MIN", counts[D] + 1)  # too few nodes anywhere
    assert tails.choose(c, counts, 0, D) is None


@pytest.mark.parametrize("n,want", [(1100, 2), (1099, None)])
def test_the_tail_share_is_a_bound_not_a_guess(n, want, monkeypatch):
    """At depth D − 2, 100 pairs of voxels share a node and the rest are alone: 1,100 voxels make
    1,000 nodes of which 900 tails (exactly TAIL_SHARE: taken), 1,099 make 899 of 999 (not)."""
    monkeypatch.setattr(tails, "TAIL_MIN", 1)
    depth = 4
    c = np.full(n + 1, -1, np.int64)
    c[np.arange(1, 200, 2)] = depth - 2  # voxels 0 and 1, 2 and 3, … part only below D − 2
    counts = [int(np.count_nonzero(c[:-1] < d)) for d in range(depth + 1)]
    assert tails.TAIL_SHARE == 0.9 and counts[depth - 2] == n - 100
    assert tails.choose(c, counts, depth - 2, depth) == want


@pytest.mark.parametrize("compiled", [True, False])
def test_hostile_tail_streams_fail_with_one_line(compiled, monkeypatch):
    _use_compiled(compiled, monkeypatch)
    node_tile, node_code, _, _ = _tree(5, 2000)
    s = 6
    good = _streams(node_tile, node_code, s)
    tile_count = np.bincount(node_tile[s]).astype(np.int64)

    def decode(streams, cap=1 << 20):
        w = Writer()
        for label, values, bits in streams:
            section._put(w, values, False, label, log2t=bits)
        r = Reader(w.getvalue(), "test")
        try:
            tails.get(r, node_code[s], None, tile_count, D, s, cap)
            r.end()
        except ValueError as e:  # (the section turns it into its one-line DecodeError)
            raise DecodeError(str(e)) from None

    decode(good)
    flags = good[0][1].copy()
    flags[0] = 2
    with pytest.raises(DecodeError, match="beyond"):
        decode([(good[0][0], flags, None)] + good[1:])
    path = good[-1][1].copy()
    path[0] = 1 << good[-1][2]  # one past the symbol's width
    with pytest.raises(DecodeError, match="beyond"):
        decode(good[:-1] + [(good[-1][0], path, None)])
    with pytest.raises(DecodeError, match="more than the"):
        decode(good, cap=len(node_code[D]) - 1)
    with pytest.raises(DecodeError, match="needs"):  # a path stream missing
        decode(good[:-1])
    # every node flagged a branch: the one-voxel ones should have been tails (one map, one encoding)
    flags = np.ones(len(node_code[s]), np.int64)
    occ = octree.build_levels(node_tile[D], node_code[D], D)[2]
    every = [("tail_branch", flags, None)] + [
        ("occupancy", occ[d].astype(np.int64), None) for d in range(s, D)
    ]
    every += [(label, values[:0], bits) for label, values, bits in good if label == "tail_path"]
    with pytest.raises(DecodeError, match="branch node with one voxel"):
        decode(every)


def _retail(data: bytes, depth: int) -> bytes:
    """``data`` (one section with tails) with its TILES chunk naming tail depth ``depth``."""
    h, chunks = unpack(data)
    out = []
    for c in chunks:
        if c.type == TILES:
            c = Chunk(TILES, c.level, bytes(c.data[:-1]) + bytes([depth]))
        out.append(c)
    return pack(h, out)


def test_a_tail_depth_outside_the_last_level_is_refused():
    from pathlib import Path

    data = (Path(__file__).resolve().parent / "data" / "codec_golden_v10_q3_scene5.bin").read_bytes()
    depths, s = tiles_header(data)
    assert s is not None and depths[-2] <= s < depths[-1]
    decode_snapshot(_retail(data, s))
    for bad in (depths[-2] - 1, depths[-1], 255):
        with pytest.raises(DecodeError, match="tail depth"):
            decode_snapshot(_retail(data, bad))
    # another depth in range reads other streams: refused, never a wrong map
    with pytest.raises(DecodeError):
        decode_snapshot(_retail(data, s + 1))


def test_tails_need_the_octree_form():
    p = QuantParams.from_quality(2)
    w = Writer()
    w.varint(5)
    w.varint(1)
    w.u8(p.tile_bits)
    w.u8(section.ID_ORDER | section.TAILS)
    with pytest.raises(DecodeError, match="tails without the octree"):
        section.decode_section([Chunk(TILES, 0, w.getvalue())], p, 0, 100)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("levels", [1, 2, 4])
def test_sections_with_tails_from_any_depth_decode_exactly(levels, compiled, monkeypatch):
    """Whole snapshots whose tails start at the last level's first depth (every node's ancestor
    is then the node itself) or deeper, one level or several: the receiver gets the map quantised."""
    from synthetic_maps import smooth_colour_scene

    from gs_map_share.quantize import to_qmap
    from gs_map_share.snapshot import encode_map, spatial_ids

    _use_compiled(compiled, monkeypatch)
    g = smooth_colour_scene(3000, 7, 8)
    p = QuantParams.from_quality(3)
    want = spatial_ids(to_qmap(g, p), p)
    monkeypatch.setattr(tails, "TAIL_MIN", 1)
    monkeypatch.setattr(section, "_id_order_smaller", lambda *a: False)  # (the octree form, one level too)
    real = tails.get
    for share in (0.0, 0.5, 0.9):
        monkeypatch.setattr(tails, "TAIL_SHARE", share)
        seen: list[bool] = []

        def get(r, code, up, *a, seen=seen):
            seen.append(up is None)
            return real(r, code, up, *a)

        monkeypatch.setattr(tails, "get", get)
        data, _ = encode_map(g, p, n_levels=levels)
        _, out = decode_snapshot(data)
        assert out.equals(want)
        if share == 0:  # tails from the last level's first depth, its nodes' ancestors themselves
            assert seen == [levels == 1]
