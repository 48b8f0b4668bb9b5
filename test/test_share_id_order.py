"""Id-ordered geometry (idorder.py): single-level sections whose ids follow space list positions in id
order; the encoder falls back to the octree where that is smaller; hostile id/position walks fail."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_map_share import idorder, section
from gs_map_share.bitio import Reader, Writer
from gs_map_share.container import LEVEL, TILES, Chunk, pack, unpack
from gs_map_share.delta import decode_delta, encode_delta
from gs_map_share.entropy import put_stream
from gs_map_share.errors import DecodeError
from gs_map_share.quantize import MAX_LATTICE, QMap, QuantParams, to_qmap
from gs_map_share.section import BLUE_FIRST, ID_ORDER, OCTREE, TAILS
from gs_map_share.snapshot import decode_map, decode_snapshot, encode_map

P = QuantParams.from_quality(2)


def _forms(data: bytes) -> list[int]:
    """The geometry form of every section of a container (its byte less the colour-order and tail
    flags)."""
    out = []
    for c in unpack(data)[1]:
        if c.type == TILES:
            r = Reader(c.data)
            r.varint()
            L = r.varint()
            for _ in range(L):
                r.u8()
            out.append(r.u8() & ~(BLUE_FIRST | TAILS))
    return out


def _same(a: QMap, b: QMap) -> None:
    assert len(a) == len(b) and a.checksum() == b.checksum()
    for f in ("ids", "pos", "level", "op", "scale", "rot_idx", "rot", "dc", "rest"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f


@pytest.fixture(scope="module")
def swept():
    """A map whose ids follow a keyframe sweep (neighbours get consecutive ids), as the mapper's do."""
    return synthetic_map(3000, 1, seed=5)


def test_layers_with_spatial_ids_use_the_id_order_and_round_trip(swept):
    g = swept.copy()
    g.levels = (np.arange(len(g)) * 4 // len(g)).astype(np.uint8)  # 4 layers of consecutive ids
    data, info = encode_map(g, P)
    assert _forms(data) == [ID_ORDER] * 4
    _, q = decode_snapshot(data)
    _same(q, to_qmap(g, P))
    for k in range(4):  # every prefix of layers decodes to exactly the levels ≤ k
        part = decode_map(data, max_level=k)
        assert np.array_equal(np.sort(part.ids), np.sort(g.ids[g.levels <= k]))


def _forced(monkeypatch, g, id_order: bool) -> bytes:
    monkeypatch.setattr(section, "_id_order_smaller", lambda *a: id_order)
    data, _ = encode_map(g, P, n_levels=1)
    monkeypatch.undo()
    return data


def test_the_encoder_takes_the_smaller_form(swept, monkeypatch):
    """Sweep-ordered ids: the id order, well below the octree. A full voxel grid whose ids are
    shuffled across it: the octree (occupancy is almost free there, id differences are not)."""
    data, _ = encode_map(swept, P, n_levels=1)
    octree_form = _forced(monkeypatch, swept, False)
    assert _forms(data) == [ID_ORDER] and _forms(octree_form) == [OCTREE]
    assert len(data) < 0.9 * len(octree_form)
    _same(decode_snapshot(octree_form)[1], decode_snapshot(data)[1])

    grid = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1).reshape(-1, 3) * P.pos_step
    rows = np.random.default_rng(0).permutation(len(grid))
    g = synthetic_map(len(grid), 0, seed=1)
    g.means[:] = (grid[rows] + 0.25).astype(np.float32)
    data, _ = encode_map(g, P, n_levels=1)
    assert _forms(data) == [OCTREE]
    assert len(data) < len(_forced(monkeypatch, g, True))
    _same(decode_snapshot(data)[1], to_qmap(g, P))


def test_sections_with_coarse_levels_keep_the_octree(swept):
    data, info = encode_map(swept, P, n_levels=4)
    assert _forms(data) == [OCTREE] and info.levels > 1


def test_single_gaussian_and_ids_near_the_top_of_the_range(swept):
    g = swept.subset(np.arange(1))
    data, _ = encode_map(g, P, n_levels=1)
    assert _forms(data) == [ID_ORDER]
    _same(decode_snapshot(data)[1], to_qmap(g, P))
    h = swept.subset(np.arange(200))
    h.ids = np.uint64((1 << 63) - 10_000) + np.arange(200, dtype=np.uint64) * np.uint64(37)
    data, _ = encode_map(h, P, n_levels=1)
    assert _forms(data) == [ID_ORDER]
    _same(decode_snapshot(data)[1], to_qmap(h, P))


def test_deltas_add_in_id_order_and_stay_bit_identical(swept):
    q0 = to_qmap(swept, P)
    g2 = swept.copy()
    g2.add(
        swept.means[:300] + 0.5,
        swept.quats[:300],
        swept.log_scales[:300],
        swept.opacity_logits[:300],
        swept.sh[:300],
    )
    q1 = to_qmap(g2, P)
    data, info = encode_delta(q0, q1, P, map_id=1, seq=2, base_seq=1)
    assert info.added == 300 and _forms(data) == [ID_ORDER]
    _same(decode_delta(q0, data)[1], q1)


# -- hostile id-ordered sections ------------------------------------------------------------------
def _crafted(swept, first: int, gaps, pos_diffs, L: int = 1, geometry: int = ID_ORDER) -> bytes:
    """A valid id-ordered snapshot of 50 Gaussians with its ids/positions replaced."""
    g = swept.subset(np.arange(50))
    data, _ = encode_map(g, P, n_levels=1)
    h, chunks = unpack(data)
    _tiles, level = chunks[0], chunks[1]
    r = Reader(level.data)
    idorder.decode(r, 50)
    tail = bytes(level.data[r.pos :])
    w = Writer()
    w.varint(first)
    put_stream(w, np.asarray(gaps), signed=False)
    for i in range(3):
        put_stream(w, np.asarray(pos_diffs[:, i], np.int64))
    t = Writer()
    t.varint(50)
    t.varint(L)
    for d in [P.tile_bits - 1, P.tile_bits] if L == 2 else [P.tile_bits]:
        t.u8(d)
    t.u8(geometry)
    return pack(
        h,
        [Chunk(TILES, 0, t.getvalue()), Chunk(LEVEL, 0, w.getvalue() + tail)]
        + ([Chunk(LEVEL, 1, b"")] if L == 2 else []),
    )


def _valid_fields(swept):
    q = to_qmap(swept.subset(np.arange(50)), P)
    return int(q.ids[0]), np.diff(q.ids.astype(np.int64)) - 1, np.diff(q.pos, axis=0, prepend=0)


def test_crafted_valid_container_decodes(swept):
    first, gaps, d = _valid_fields(swept)
    _same(decode_snapshot(_crafted(swept, first, gaps, d))[1], to_qmap(swept.subset(np.arange(50)), P))


@pytest.mark.parametrize(
    "case,match",
    [
        ("wrapping gap", "not increasing"),
        ("id above 2**63", "not increasing"),
        ("step beyond the lattice", "position step outside"),
        ("walk out of the lattice", "position outside"),
        ("two levels", "id-ordered geometry with 2 levels"),
        ("unknown form", "unknown geometry form 7"),
    ],
)
def test_hostile_id_ordered_sections_are_refused(swept, case, match):
    first, gaps, d = _valid_fields(swept)
    gaps, d, L, form = gaps.astype(np.uint64), d.copy(), 1, ID_ORDER
    if case == "wrapping gap":
        gaps[10] = np.uint64((1 << 64) - 5)  # + 1 and the running sum wraps below the previous id
    elif case == "id above 2**63":
        first = (1 << 63) - 20
    elif case == "step beyond the lattice":
        d[5, 1] = 2 * MAX_LATTICE
    elif case == "walk out of the lattice":
        d[5:, 2] = MAX_LATTICE // 8  # each step legal, the sum leaves the lattice
    elif case == "two levels":
        L = 2
    else:
        form = 7
    data = _crafted(swept, first, gaps, d, L, form)
    with pytest.raises(DecodeError, match=match):
        decode_snapshot(data)
