"""Guards for behaviours a mutation-testing pass over the map codec found unguarded (fifth round):
each test compares the codec with an independent reference (id-ordered, delta-id, plain and
constant streams written by hand, the container and faint-lattice rules of docs/format.md applied
to hand-built headers and numpy re-computations, hand-built UPDATED chunks, the octree expansion
worked out by hand on both the compiled and plain paths, the fleet id space and region rules of
docs/fleet.md), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# id-ordered geometry: ids below 2**63, positions inside the lattice


def _id_ordered(first: int, gaps, pos) -> bytes:
    """An id-ordered LEVEL stream written by hand (idorder's docstring): ``varint first id``, the
    n − 1 gaps − 1 unsigned, then per axis the n signed lattice differences, the first from 0."""
    from gs_map_share.bitio import Writer
    from gs_map_share.entropy import put_stream

    w = Writer()
    w.varint(first)
    put_stream(w, np.asarray(gaps, np.int64), signed=False)
    pos = np.asarray(pos, np.int64)
    for i in range(3):
        put_stream(w, np.diff(pos[:, i], prepend=0))
    return w.getvalue()


def test_id_ordered_ids_stop_just_below_2_to_the_63():
    """Ids are below 2**63: a last id of 2**63 − 1 is read back, one of exactly 2**63 (first
    2**63 − 2, gap 2) is refused as "not increasing below 2**63"."""
    from gs_map_share import idorder
    from gs_map_share.bitio import Reader
    from gs_map_share.errors import DecodeError

    top = (1 << 63) - 2
    pos = np.zeros((2, 3), np.int64)
    ids, got = idorder.decode(Reader(_id_ordered(top, [0], pos)), 2)
    assert ids.tolist() == [top, top + 1]
    assert np.array_equal(got, pos)
    with pytest.raises(DecodeError, match="not increasing below 2"):
        idorder.decode(Reader(_id_ordered(top, [1], pos)), 2)


@pytest.mark.parametrize("sign", [1, -1])
def test_id_ordered_position_on_the_lattice_bound_is_refused(sign):
    """Lattice positions lie strictly inside ±MAX_LATTICE: ±(MAX_LATTICE − 1) decodes, a position
    of exactly ±MAX_LATTICE (a step that is itself in range) is "position outside the lattice"."""
    from gs_map_share import idorder
    from gs_map_share.bitio import Reader
    from gs_map_share.errors import DecodeError
    from gs_map_share.quantize import MAX_LATTICE

    inside = np.array([[0, 0, 0], [sign * (MAX_LATTICE - 1), 5, -5]], np.int64)
    _, got = idorder.decode(Reader(_id_ordered(7, [0], inside)), 2)
    assert np.array_equal(got, inside)
    on = inside.copy()
    on[1, 0] = sign * MAX_LATTICE
    with pytest.raises(DecodeError, match="position outside the lattice"):
        idorder.decode(Reader(_id_ordered(7, [0], on)), 2)


# ------------------------------------------------------------------------------------------------
# palette rule


def test_palette_takes_exactly_one_distinct_row_in_four_from_4096_rows():
    """``is_palette``: at least PALETTE_MIN_ROWS rows and at most one distinct row in
    PALETTE_MIN_SHARING; both bounds are inclusive."""
    from gs_map_share.palette import PALETTE_MIN_ROWS, PALETTE_MIN_SHARING, is_palette

    assert (PALETTE_MIN_ROWS, PALETTE_MIN_SHARING) == (4096, 4)
    assert is_palette(4096, 1024)
    assert not is_palette(4096, 1025)
    assert not is_palette(4095, 1)
    assert is_palette(8000, 2000)
    assert not is_palette(8000, 2001)


# ------------------------------------------------------------------------------------------------
# container header bounds (docs/format.md)


def _header(**kw):
    from gs_map_share.container import Header
    from gs_map_share.quantize import QuantParams

    f = dict(map_id=1, seq=3, base_seq=0, gaussians=0, state_crc=0, sh_degree=0, n_levels=1)
    f.update(kw)
    tile_size = f.pop("tile_size", 2.0)
    return Header(**f, params=QuantParams(), tile_size=tile_size, frame_id="map")


@pytest.mark.parametrize("field", ["map_id", "seq", "gaussians"])
def test_uint64_header_fields_take_2_to_the_64_minus_1_and_refuse_2_to_the_64(field):
    """The u64 header fields are refused at 2**64 with an EncodeError naming the field (never a
    struct error, never wrapped); 2**64 − 1 is packed and read back."""
    from gs_map_share.container import pack, unpack_header
    from gs_map_share.errors import EncodeError

    top = (1 << 64) - 1
    h, _, _ = unpack_header(pack(_header(**{field: top}), []))
    assert getattr(h, field) == top
    with pytest.raises(EncodeError, match=f"{field} must be 0"):
        pack(_header(**{field: top + 1}), [])


def test_header_sh_degree_above_three_is_refused():
    """SH degree is 0..3: a header carrying 3 is read, one carrying 4 is a DecodeError."""
    from gs_map_share.container import pack, unpack_header
    from gs_map_share.errors import DecodeError

    assert unpack_header(pack(_header(sh_degree=3), []))[0].sh_degree == 3
    with pytest.raises(DecodeError, match="SH degree 4 > 3"):
        unpack_header(pack(_header(sh_degree=4), []))


def test_header_levels_of_detail_are_1_to_32():
    """n_levels is 1..32: 32 is read, 33 and 0 are DecodeErrors."""
    from gs_map_share.container import pack, unpack_header
    from gs_map_share.errors import DecodeError

    assert unpack_header(pack(_header(n_levels=32), []))[0].n_levels == 32
    for bad in (0, 33):
        with pytest.raises(DecodeError, match=f"{bad} levels of detail"):
            unpack_header(pack(_header(n_levels=bad), []))


def test_header_tile_size_must_be_positive():
    """The tile size is a positive length: 0.0 and a negative one are refused, a tiny one is read."""
    from gs_map_share.container import pack, unpack_header
    from gs_map_share.errors import DecodeError

    assert unpack_header(pack(_header(tile_size=1e-9), []))[0].tile_size == 1e-9
    for bad in (0.0, -1.0):
        with pytest.raises(DecodeError, match="bad tile size"):
            unpack_header(pack(_header(tile_size=bad), []))


def test_container_of_4096_chunks_is_read_and_4097_refused():
    """At most MAX_CHUNKS = 4096 chunks: a container of 4096 empty PAD chunks unpacks, one of 4097
    is a DecodeError naming the count."""
    from gs_map_share.container import MAX_CHUNKS, PAD, Chunk, pack, unpack
    from gs_map_share.errors import DecodeError

    assert MAX_CHUNKS == 4096
    _, chunks = unpack(pack(_header(), [Chunk(PAD, 0, b"")] * 4096))
    assert len(chunks) == 4096
    with pytest.raises(DecodeError, match="4097 chunks"):
        unpack(pack(_header(), [Chunk(PAD, 0, b"")] * 4097))


# ------------------------------------------------------------------------------------------------
# snapshot decoding


def test_snapshot_max_level_is_below_2_to_the_31():
    """decode_snapshot's ``max_level`` is 0 … 2**31 − 1: 2**31 − 1 decodes the whole map (every
    level is below it), 2**31 is a DecodeError naming the range."""
    from synthetic_maps import synthetic_map

    from gs_map_share.errors import DecodeError
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.snapshot import decode_snapshot, encode_snapshot

    p = QuantParams.from_quality(2)
    q = to_qmap(synthetic_map(300, 1, seed=3), p)
    data, _ = encode_snapshot(q, p, map_id=1, seq=1, n_levels=2)
    _, whole = decode_snapshot(data, max_level=(1 << 31) - 1)
    assert len(whole.pos) == len(q)
    with pytest.raises(DecodeError, match="max level must be 0"):
        decode_snapshot(data, max_level=1 << 31)


def _tiny_qmap(levels, seed: int = 3):
    """A quantised map of len(levels) Gaussians with ids 1..n and the given levels."""
    from synthetic_maps import synthetic_map

    from gs_map_share.quantize import QuantParams, to_qmap

    p = QuantParams.from_quality(2)
    q = to_qmap(synthetic_map(300, 1, seed=seed), p).take(np.arange(len(levels)))
    q.ids = np.arange(1, len(levels) + 1, dtype=np.uint64)
    q.level = np.asarray(levels, q.level.dtype)
    return q, p


def test_layers_of_one_gaussian_are_not_halved_into_an_empty_layer():
    """_layers halves the largest layer while there are fewer than MIN_LAYERS (4), but never one of
    a single Gaussian: levels [0, 1, 1] give three layers of one Gaussian each (header n_levels 3),
    and the snapshot decodes to the map."""
    from gs_map_share.container import unpack_header
    from gs_map_share.snapshot import MIN_LAYERS, _layers, decode_snapshot, encode_snapshot

    q, p = _tiny_qmap([0, 1, 1])
    assert MIN_LAYERS == 4
    assert [r.tolist() for r in _layers(q)] == [[0], [1], [2]]
    data, _ = encode_snapshot(q, p, map_id=1, seq=1, n_levels=5)
    assert unpack_header(data)[0].n_levels == 3
    assert decode_snapshot(data)[1].equals(q)


def test_receiver_takes_a_snapshot_of_exactly_its_max_gaussians():
    """MapStore.max_gaussians is the largest map it holds: a snapshot of exactly that many is
    taken, one Gaussian over is rejected before decoding."""
    from gs_map_share.receiver import REJECTED, SNAPSHOT, MapStore
    from gs_map_share.snapshot import encode_snapshot

    q, p = _tiny_qmap([0] * 40)
    data, _ = encode_snapshot(q, p, map_id=1, seq=1)
    assert MapStore(max_gaussians=40).receive(data) == SNAPSHOT
    over = MapStore(max_gaussians=39)
    assert over.receive(data) == REJECTED
    assert "at most 39" in over.last_error


# ------------------------------------------------------------------------------------------------
# delta id lists (REMOVED / UPDATED: varint n, varint first id, unsigned stream of n − 1 gaps − 1)


def _delta_ids(first: int, gaps) -> bytes:
    from gs_map_share.bitio import Writer
    from gs_map_share.entropy import put_stream

    w = Writer()
    w.varint(len(gaps) + 1)
    w.varint(first)
    put_stream(w, np.asarray(gaps, np.int64), signed=False)
    return w.getvalue()


def test_delta_id_gaps_reach_as_far_as_ids_below_2_to_the_63():
    """A delta's id gaps may be as large as ids below 2**63 allow (the encoder writes any: vehicles'
    global ids are 2**32 apart, map ids up to 2**31): from 5, a gap − 1 of 2**62 is read, and of
    2**63 − 7 (last id 2**63 − 1); 2**63 − 6 is "id outside 0..2**63"."""
    from gs_map_share.bitio import Reader
    from gs_map_share.delta import _get_ids
    from gs_map_share.errors import DecodeError

    assert _get_ids(Reader(_delta_ids(5, [1 << 62])), 10).tolist() == [5, 5 + (1 << 62) + 1]
    assert _get_ids(Reader(_delta_ids(5, [(1 << 63) - 7])), 10).tolist() == [5, (1 << 63) - 1]
    with pytest.raises(DecodeError, match="id outside 0"):
        _get_ids(Reader(_delta_ids(5, [(1 << 63) - 6])), 10)


def test_delta_ids_stop_just_below_2_to_the_63():
    """A delta's ids are below 2**63: first 2**63 − 2 with gap 1 (last id 2**63 − 1) is read, with
    gap 2 (last id exactly 2**63) it is "id outside 0..2**63"."""
    from gs_map_share.bitio import Reader
    from gs_map_share.delta import _get_ids
    from gs_map_share.errors import DecodeError

    top = (1 << 63) - 2
    assert _get_ids(Reader(_delta_ids(top, [0])), 10).tolist() == [top, top + 1]
    with pytest.raises(DecodeError, match="id outside 0"):
        _get_ids(Reader(_delta_ids(top, [1])), 10)


def _updated_delta(state, cur, mask, declared=None):
    """A delta of one UPDATED chunk written with the codec's own field writer: the ids of
    ``state``, the field masks ``mask`` (one per Gaussian, any value) and the residuals of ``cur``
    against ``state`` for the fields whose bit is set; the header declares the count and checksum
    of ``declared`` (default ``state``: as if nothing changed)."""
    from gs_map_share.bitio import Writer
    from gs_map_share.container import UPDATED, Chunk, Header
    from gs_map_share.delta import _put_ids, _put_updates
    from gs_map_share.entropy import put_stream

    w = Writer()
    _put_ids(w, state.ids)
    put_stream(w, np.asarray(mask, np.int64), signed=False)
    _put_updates(w, state, cur, np.asarray(mask, np.int64))
    declared = state if declared is None else declared
    h = Header(1, 2, 1, len(declared), declared.checksum(), state.sh_degree, 1, None, 2.0, "map")
    return h, [Chunk(UPDATED, 0, w.getvalue())]


def test_update_mask_with_only_bit_7_is_refused():
    """docs/format.md: field masks are non-zero with bits 0..6 (1..127). A mask of 128 (an undefined
    bit, no field) is "bad field mask", though the map it would leave is the base itself; masks
    of 127 apply."""
    from gs_map_share.delta import apply_delta
    from gs_map_share.errors import DecodeError

    q, p = _tiny_qmap([0] * 8)
    h, chunks = _updated_delta(q, q, [127] * 8)
    h.params = p
    assert apply_delta(q, h, chunks, 4096).equals(q)
    h, chunks = _updated_delta(q, q, [128] + [1] * 7)
    h.params = p
    with pytest.raises(DecodeError, match="bad field mask"):
        apply_delta(q, h, chunks, 4096)


def test_updated_rotation_index_4_is_refused_even_under_a_matching_checksum():
    """An updated rotation index is 0..3 (the dropped component of x, y, z, w): an update to 4,
    under a header whose checksum is that of the map with index 4, is "rotation index outside
    0..3"; an update to another valid index applies."""
    from gs_map_share.delta import F_ROT, apply_delta
    from gs_map_share.errors import DecodeError

    q, p = _tiny_qmap([0] * 8)
    ok = q.take(np.arange(len(q)))  # (copy() shares the arrays)
    ok.rot_idx[0] = (int(q.rot_idx[0]) + 1) % 4
    h, chunks = _updated_delta(q, ok, [F_ROT] * 8, declared=ok)
    h.params = p
    assert apply_delta(q, h, chunks, 4096).equals(ok)
    bad = q.take(np.arange(len(q)))  # (copy() shares the arrays)
    bad.rot_idx[0] = 4
    h, chunks = _updated_delta(q, bad, [F_ROT] * 8, declared=bad)
    h.params = p
    with pytest.raises(DecodeError, match="rotation index outside 0..3"):
        apply_delta(q, h, chunks, 4096)


def test_updated_level_256_is_refused_not_wrapped():
    """An updated level is 0..255: a residual taking level 0 to 256 is "level outside 0..255" (not
    wrapped back to 0, which would leave the declared map); 255 applies."""
    from gs_map_share.delta import F_LEVEL, apply_delta
    from gs_map_share.errors import DecodeError

    q, p = _tiny_qmap([0] * 8)
    top = q.take(np.arange(len(q)))  # (copy() shares the arrays)
    top.level[0] = 255
    h, chunks = _updated_delta(q, top, [F_LEVEL] * 8, declared=top)
    h.params = p
    assert apply_delta(q, h, chunks, 4096).equals(top)
    wide = q.take(np.arange(len(q)))  # (copy() shares the arrays)
    wide.level = q.level.astype(np.int64)
    wide.level[0] = 256
    h, chunks = _updated_delta(q, wide, [F_LEVEL] * 8)  # declared: the base (256 wrapped to 0)
    h.params = p
    with pytest.raises(DecodeError, match="level outside 0..255"):
        apply_delta(q, h, chunks, 4096)


# ------------------------------------------------------------------------------------------------
# faint Gaussians (docs/format.md: opacity code < faint_below)


@pytest.mark.parametrize("factor", [2, 4])
def test_faint_is_an_opacity_code_strictly_below_faint_below(factor):
    """docs/format.md: with F > 1 a Gaussian whose opacity code is below ``faint_below`` keeps its
    log-scales and DC on the F times coarser lattice ``F · rint(clip(x) / (F · step))``; the code
    equal to ``faint_below`` is not faint (its own lattice ``rint(x / step)``)."""
    import dataclasses

    from gs_map_share.quantize import QuantParams, attribute_lattices

    f = factor
    p = dataclasses.replace(QuantParams(), faint_factor=f, faint_below=-10)
    op_logits = np.array([-11, -10, -9], np.float64) * p.opacity_step
    log_scales = np.full((3, 3), -95.0 * p.scale_step)  # fine code -95, on F · Z: -96
    dc = np.full((3, 3), 13.0 * p.dc_step)  # fine 13, on F · Z: 12
    op, scale, dcq = attribute_lattices(op_logits, log_scales, dc, p)
    assert op.tolist() == [-11, -10, -9]
    fine_s = np.rint(log_scales / p.scale_step)
    coarse_s = f * np.rint(log_scales / (f * p.scale_step))
    assert not np.array_equal(fine_s, coarse_s)  # the two lattices differ on these values
    assert np.array_equal(scale, np.stack([coarse_s[0], fine_s[1], fine_s[2]]))
    fine_d, coarse_d = np.rint(dc / p.dc_step), f * np.rint(dc / (f * p.dc_step))
    assert not np.array_equal(fine_d, coarse_d)
    assert np.array_equal(dcq, np.stack([coarse_d[0], fine_d[1], fine_d[2]]))


def test_faint_rows_exist_with_only_a_faint_position_lattice():
    """A faint row is the same test whatever F is (docs/format.md): with F = 1 and R = 0 but Q = 2 the
    faint rows are still those with opacity code < faint_below (their positions go on the Q times
    coarser lattice); with Q = 1 too there are none (None)."""
    import dataclasses

    from gs_map_share.quantize import QuantParams, faint_rows

    p = dataclasses.replace(QuantParams(), faint_factor=1, faint_rot=0, faint_pos=2, faint_below=0)
    assert (p.faint_factor, p.faint_rot) == (1, 0)
    op = np.array([-5, -1, 0, 3], np.int32)
    assert faint_rows(op, p).tolist() == [True, True, False, False]
    assert faint_rows(op, dataclasses.replace(p, faint_pos=1)) is None


# ------------------------------------------------------------------------------------------------
# fleet merge: vehicle map ids 1..2**31 − 1, local ids below 2**32


def _vehicle_snapshot(map_id: int, last_id: int) -> tuple:
    from gs_map_share.snapshot import encode_snapshot

    q, p = _tiny_qmap([0] * 6)
    q.ids = np.array([1, 2, 3, 4, 5, last_id], np.uint64)
    data, _ = encode_snapshot(q, p, map_id=map_id, seq=1)
    return data, p, q.sh_degree


def test_fleet_takes_local_id_2_to_the_32_minus_1_and_refuses_2_to_the_32():
    """A vehicle's local ids fill the low 32 bits of the fleet id: a snapshot whose last id is
    2**32 − 1 is merged (its global id map_id << 32 | 2**32 − 1), one whose last id is 2**32 is
    rejected naming the fleet id space."""
    from gs_map_share.merge import REJECTED, SNAPSHOT, FleetMerge

    top = (1 << 32) - 1
    data, p, deg = _vehicle_snapshot(3, top)
    fleet = FleetMerge(p, global_map_id=1 << 40, sh_degree=deg)
    assert fleet.offer(data).status == SNAPSHOT
    assert int(fleet.global_map.ids.max()) == (3 << 32) | top
    data, p, deg = _vehicle_snapshot(4, top + 1)
    fleet = FleetMerge(p, global_map_id=1 << 40, sh_degree=deg)
    assert fleet.offer(data).status == REJECTED
    assert "fleet id space" in fleet.last_error


def test_fleet_takes_vehicle_map_id_2_to_the_31_minus_1_and_refuses_2_to_the_31():
    """Vehicle map ids are 1..2**31 − 1 (the global id map_id << 32 | local stays below 2**63):
    2**31 − 1 is merged, 2**31 is rejected as not a vehicle's."""
    from gs_map_share.merge import REJECTED, SNAPSHOT, FleetMerge

    top = (1 << 31) - 1
    data, p, deg = _vehicle_snapshot(top, 9)
    fleet = FleetMerge(p, global_map_id=1 << 40, sh_degree=deg)
    assert fleet.offer(data).status == SNAPSHOT
    assert int(fleet.global_map.ids.max()) == (top << 32) | 9
    data, p, deg = _vehicle_snapshot(top + 1, 9)
    fleet = FleetMerge(p, global_map_id=1 << 40, sh_degree=deg)
    assert fleet.offer(data).status == REJECTED
    assert "outside 1.." in fleet.last_error


def test_delta_declaring_one_gaussian_fewer_than_it_keeps_is_refused_before_its_section():
    """A delta's added section is decoded with exactly the room its header leaves: a delta that
    adds Gaussians, edited to declare one fewer than the base it keeps (room −1), is refused
    naming the Gaussians that remain, before the section is read; unedited it applies."""
    from gs_map_share.container import pack, unpack
    from gs_map_share.delta import decode_delta, encode_delta
    from gs_map_share.errors import DecodeError

    q, p = _tiny_qmap([0] * 12)
    base = q.take(np.arange(6))
    data, _ = encode_delta(base, q, p, map_id=1, seq=2, base_seq=1)
    assert decode_delta(base, data)[1].equals(q)
    h, chunks = unpack(data)
    h.gaussians = len(base) - 1
    with pytest.raises(DecodeError, match="6 Gaussians remain, more than the 5 it declares"):
        decode_delta(base, pack(h, chunks))


def test_to_qmap_refuses_a_position_of_exactly_2_to_the_52_steps():
    """A position code must be below 2**52 in magnitude (MAX_LATTICE): a Gaussian exactly 2**52
    steps from the origin (2**42 m at a step of 2**-10 m, exact in float32) is an EncodeError,
    one 2**29 steps nearer is quantised to its exact code."""
    import dataclasses

    from synthetic_maps import synthetic_map

    from gs_map_share.errors import EncodeError
    from gs_map_share.quantize import MAX_LATTICE, QuantParams, to_qmap

    p = dataclasses.replace(QuantParams(), pos_step=2.0**-10)
    g = synthetic_map(300, 1, seed=3).subset(np.arange(3))
    for sign in (1, -1):
        g.means[0] = [sign * (2.0**42 - 2.0**19), 0, 0]
        assert int(to_qmap(g, p).pos[0, 0]) == sign * (MAX_LATTICE - (1 << 29))
        g.means[0] = [sign * 2.0**42, 0, 0]
        with pytest.raises(EncodeError, match="more than 2\\*\\*52 position steps"):
            to_qmap(g, p)


# ------------------------------------------------------------------------------------------------
# quantisation parameters (docs/format.md header fields)


def test_tile_bits_are_1_to_20():
    """tile_bits is 1..20: 20 is a valid parameter set, 21 and 0 are EncodeErrors naming the
    range."""
    import dataclasses

    from gs_map_share.errors import EncodeError
    from gs_map_share.quantize import QuantParams

    assert dataclasses.replace(QuantParams(), tile_bits=20).tile_bits == 20
    assert dataclasses.replace(QuantParams(), tile_bits=1).tile_bits == 1
    for bad in (0, 21):
        with pytest.raises(EncodeError, match="tile_bits must be 1..20"):
            dataclasses.replace(QuantParams(), tile_bits=bad)


def test_rotation_lattice_keeps_two_bits_after_tiers_and_faint_rot():
    """docs/format.md: b ≥ rot_bits − n_tiers − faint_rot ≥ 2. rot_bits 4 with one tier and
    faint_rot 1 (2 bits left) is valid; with faint_rot 2 (1 bit left) it is an EncodeError."""
    import dataclasses

    from gs_map_share.errors import EncodeError
    from gs_map_share.quantize import QuantParams

    ok = dataclasses.replace(QuantParams(), rot_bits=4, rot_tiers=(7,), faint_rot=1)
    assert ok.rot_bits - len(ok.rot_tiers) - ok.faint_rot == 2
    with pytest.raises(EncodeError, match="rot_bits − len − faint_rot ≥ 2"):
        dataclasses.replace(QuantParams(), rot_bits=4, rot_tiers=(7,), faint_rot=2)
    with pytest.raises(EncodeError, match="rot_bits − len − faint_rot ≥ 2"):
        dataclasses.replace(QuantParams(), rot_bits=3, rot_tiers=(), faint_rot=2)


# ------------------------------------------------------------------------------------------------
# streams: plain (mode 7) and constant (mode 1) streams written by hand, value limits


def _zz(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _plain(values, signed: bool = True) -> bytes:
    """Mode 7 written by hand: the byte 7, then one LEB128 varint per (zig-zag) value."""
    from gs_map_share.bitio import Writer

    w = Writer()
    w.u8(7)
    for v in values:
        w.varint(_zz(v) if signed else v)
    return w.getvalue()


def _constant(v: int) -> bytes:
    """Mode 1 written by hand: the byte 1, then the zig-zag value as a varint."""
    from gs_map_share.bitio import Writer

    w = Writer()
    w.u8(1)
    w.varint(_zz(v))
    return w.getvalue()


@pytest.mark.parametrize("limit", [1, 5, 1000])
def test_plain_and_constant_streams_keep_values_within_plus_minus_limit(limit):
    """``limit``: every |value| ≤ limit. ±limit come back from a plain and a constant stream;
    limit + 1 and −limit − 1 are "value beyond ±limit" in both."""
    from gs_map_share.bitio import Reader
    from gs_map_share.entropy import decode_stream
    from gs_map_share.errors import DecodeError

    got = decode_stream(Reader(_plain([limit, -limit, 0])), 3, limit=limit)
    assert got.tolist() == [limit, -limit, 0]
    for v in (limit, -limit):
        assert decode_stream(Reader(_constant(v)), 4, limit=limit).tolist() == [v] * 4
    for v in (limit + 1, -limit - 1):
        with pytest.raises(DecodeError, match=f"value beyond ±{limit}"):
            decode_stream(Reader(_plain([0, v])), 2, limit=limit)
        with pytest.raises(DecodeError, match=f"value beyond ±{limit}"):
            decode_stream(Reader(_constant(v)), 4, limit=limit)


def test_plain_stream_holds_at_most_64_values():
    """docs/format.md: a plain stream (mode 7) holds 1..PLAIN_MAX = 64 values: 64 are read, a plain
    stream where 65 values are expected is refused naming the range."""
    from gs_map_share.bitio import Reader
    from gs_map_share.entropy import PLAIN_MAX, decode_stream
    from gs_map_share.errors import DecodeError

    assert PLAIN_MAX == 64
    vals = [(-1) ** i * i for i in range(65)]
    assert decode_stream(Reader(_plain(vals[:64])), 64).tolist() == vals[:64]
    with pytest.raises(DecodeError, match=r"plain stream of 65 values \(1..64 allowed\)"):
        decode_stream(Reader(_plain(vals)), 65)


def test_int32_plain_stream_takes_minus_2_to_the_31_and_refuses_one_below():
    """An int32 stream's values are −2**31 … 2**31 − 1: both ends come back from a plain stream,
    −2**31 − 1 and 2**31 are DecodeErrors (never an overflow)."""
    from gs_map_share.bitio import Reader
    from gs_map_share.entropy import decode_stream
    from gs_map_share.errors import DecodeError

    lo, hi = -(1 << 31), (1 << 31) - 1
    got = decode_stream(Reader(_plain([lo, hi])), 2, int32=True)
    assert got.dtype == np.int32 and got.tolist() == [lo, hi]
    for bad in (lo - 1, hi + 1):
        with pytest.raises(DecodeError, match="outside the int32 range"):
            decode_stream(Reader(_plain([0, bad])), 2, int32=True)


def test_stream_with_a_direct_symbol_bound_above_2_to_the_8_is_refused():
    """A coded stream's log2t is at most 8: a stream written with log2t 8 is read back; the same
    stream with its log2t byte edited to 9 is "direct-symbol bound 2**9 too large"."""
    from gs_map_share.bitio import Reader, Writer
    from gs_map_share.entropy import decode_stream, encode_stream
    from gs_map_share.errors import DecodeError

    values = np.arange(300, dtype=np.int64) % 7 - 3
    w = Writer()
    encode_stream(w, values, signed=True, log2t=8)
    data = bytearray(w.getvalue())
    assert data[0] == 2 and data[1] == 8
    assert np.array_equal(decode_stream(Reader(bytes(data)), 300), values)
    data[1] = 9
    with pytest.raises(DecodeError, match=r"direct-symbol bound 2\*\*9 too large"):
        decode_stream(Reader(bytes(data)), 300)


def test_coded_stream_with_largest_symbol_one_above_the_limit_is_refused():
    """A coded signed stream of values −2..3 has direct symbols up to zig-zag(3) = 6 (alphabet 7,
    so |value| ≤ 7 // 2 = 3): decoded with limit 3 it comes back, with limit 2 the value 3 is
    "value beyond ±2" (the alphabet alone does not bound it)."""
    from gs_map_share.bitio import Reader, Writer
    from gs_map_share.entropy import decode_stream, encode_stream
    from gs_map_share.errors import DecodeError

    values = np.arange(200, dtype=np.int64) % 6 - 2
    w = Writer()
    encode_stream(w, values, signed=True, log2t=6)
    data = w.getvalue()
    assert data[0] == 2 and data[3] == 7  # mode 2, one table, its alphabet: symbols 0..6
    assert np.array_equal(decode_stream(Reader(data), 200, limit=3), values)
    for int32 in (False, True):
        with pytest.raises(DecodeError, match="value beyond ±2"):
            decode_stream(Reader(data), 200, limit=2, int32=int32)


# ------------------------------------------------------------------------------------------------
# octree descent: compiled and plain paths, the same bounds


@pytest.mark.parametrize("compiled", [True, False])
def test_descend_bounds_the_children_by_max_nodes_exactly(compiled, monkeypatch):
    """octree.descend: two nodes with bytes 0xFF and 0x81 have 8 + 2 children (codes
    ``code << 3 | octant``, octants increasing); max_nodes 10 takes them, 9 is a ValueError naming
    10 nodes; a byte 0 or 256 is "occupancy byte outside 1..255". Compiled and plain alike."""
    from test_share_speedpaths import _use_compiled

    from gs_map_share import octree

    _use_compiled(compiled, monkeypatch)
    code = np.array([5, 9], np.uint64)
    occ = np.array([0xFF, 0x81], np.int32)
    tiles = np.array([2], np.int64)
    child, parent, per_tile = octree.descend(code, occ, tiles, 10)
    want = [5 * 8 + k for k in range(8)] + [9 * 8 + 0, 9 * 8 + 7]
    assert child.tolist() == want
    assert parent.tolist() == [0] * 8 + [1, 1]
    assert per_tile.tolist() == [10]
    with pytest.raises(ValueError, match="10 nodes, more than the 9 Gaussians"):
        octree.descend(code, occ, tiles, 9)
    for bad in (0, 256):
        with pytest.raises(ValueError, match="occupancy byte outside 1..255"):
            octree.descend(code, np.array([0xFF, bad], np.int32), tiles, 100)


# ------------------------------------------------------------------------------------------------
# region queries (docs/fleet.md, "Region queries")


def test_region_tile_order_includes_a_tile_at_exactly_the_radius_nearest_first():
    """Tiles whose cube lies within ``radius`` of the pose, nearest first, ties in tile key order:
    with 1 m tiles and the pose at (0.5, 0.5, 0.5), tile (2, 0, 0) is 1.5 m away (its face at
    x = 2) and is included at radius 1.5, not at 1.49; (−1, 0, 0), (0, 1, 0) and (0, 0, −1) tie at
    0.5 m and come in key order (x, then y, then z)."""
    import dataclasses

    from gs_map_share.quantize import QuantParams
    from gs_map_share.region import tile_order

    p = dataclasses.replace(QuantParams(), pos_step=2.0**-10, tile_bits=10)  # edge 1 m
    tiles = np.array([[2, 0, 0], [0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, 0, 5], [0, 0, -1]], np.int64)
    centre = np.array([0.5, 0.5, 0.5])
    assert tile_order(tiles, centre, 1.5, p).tolist() == [1, 2, 5, 3, 0]
    assert tile_order(tiles, centre, 1.49, p).tolist() == [1, 2, 5, 3]


def test_region_request_bounds_on_id_and_max_bytes():
    """A request's id is at most 64 characters (64 taken, 65 refused) and max_bytes at least 1024
    (1024 taken, 1023 refused)."""
    import json

    from gs_map_share.region import RegionError, RegionRequest

    def req(**kw):
        return RegionRequest.from_bytes(json.dumps({"x": 0, "y": 0, **kw}).encode(), 100.0, 1 << 20)

    assert req(id="a" * 64).id == "a" * 64
    with pytest.raises(RegionError, match="at most 64 characters"):
        req(id="a" * 65)
    assert req(max_bytes=1024).max_bytes == 1024
    with pytest.raises(RegionError, match="max_bytes must be an integer ≥ 1024"):
        req(max_bytes=1023)


def test_region_answer_holding_every_tile_is_the_last_page():
    """An answer whose page holds every remaining tile has next_cursor null (the last page); its
    container holds every Gaussian of those tiles."""
    from gs_map_share.region import RegionRequest, answer
    from gs_map_share.snapshot import decode_snapshot

    q, p = _tiny_qmap([0] * 30)
    keys = {tuple(int(v) for v in t) for t in q.pos >> p.tile_bits}
    centre = q.pos[0] * p.pos_step
    req = RegionRequest(float(centre[0]), float(centre[1]), float(centre[2]), radius_m=1e6)
    a = answer(req, q, p, map_id=1, seq=3, tile_seq=dict.fromkeys(keys, 1))
    assert a.status == "ok" and a.next_cursor is None
    assert sorted(map(tuple, a.tiles)) == sorted(keys)
    assert a.gaussians == len(q)
    assert decode_snapshot(a.container)[1].equals(q)


def test_a_quantised_maps_copy_has_arrays_of_its_own():
    """QMap.copy() returned views (take(slice(None))): writing into a 'copy' changed the map it came
    from. A copy now owns its arrays; with_ids shares them on purpose, under other ids."""
    from synthetic_maps import synthetic_map

    from gs_map_share.quantize import QuantParams, to_qmap

    q = to_qmap(synthetic_map(50, 1, seed=2), QuantParams())
    before = q.take(np.arange(len(q)))  # (fancy indexing: a real copy)
    c = q.copy()
    for f in ("pos", "op", "scale", "rot", "dc", "rest", "level", "rot_idx"):
        getattr(c, f)[...] = 0
    c.ids[...] = 7
    assert q.equals(before)
    w = q.with_ids(q.ids + np.uint64(100))
    assert np.array_equal(w.ids, before.ids + np.uint64(100)) and np.shares_memory(w.pos, q.pos)
