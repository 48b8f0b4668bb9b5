"""gs_map_share decoder speed paths: each fast path gives exactly what the plain computation gives
(table-lookup values with escapes patched in, shared context groups,
block-wise SH dequantisation, rotation rebuild), and the encoder's sparse/alphabet choices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_maps import synthetic_map

from gs_map_share.bitio import Reader, Writer
from gs_map_share.entropy import Groups, decode_stream, encode_stream, put_stream, unzigzag, zigzag
from gs_map_share.errors import DecodeError
from gs_map_share.quantize import (
    QuantParams,
    dequantize_fields,
    dequantize_rotations,
    quantize_rotations,
    rotation_max,
    to_qmap,
)
from gs_map_share.snapshot import decode_snapshot, encode_map


def _dense(values, signed, log2t, ctx=None, n_ctx=1) -> bytes:
    w = Writer()
    encode_stream(w, np.asarray(values), signed, log2t, ctx=ctx, n_ctx=n_ctx)
    return w.getvalue()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=2, max_size=300),
    st.sampled_from([4, 5, 6, 7, 8]),
    st.booleans(),
)
def test_direct_and_escaped_values_all_output_kinds(vals, log2t, with_out):
    """Signed int32-range values through every output kind: int32 (into ``out`` or not), int64."""
    v = np.asarray(vals, np.int64)
    data = _dense(v, True, log2t)
    got64 = decode_stream(Reader(data), len(v), True)
    assert got64.dtype == np.int64 and np.array_equal(got64, v)
    out = np.full(len(v), 99, np.int32) if with_out else None
    got32 = decode_stream(Reader(data), len(v), True, int32=True, out=out)
    assert got32.dtype == np.int32 and np.array_equal(got32, v)
    if with_out:
        assert got32 is out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, (1 << 64) - 1), min_size=2, max_size=200), st.sampled_from([4, 6, 8]))
def test_unsigned_full_range(vals, log2t):
    v = np.asarray(vals, np.uint64)
    data = _dense(v, False, log2t)
    got = decode_stream(Reader(data), len(v), False)
    assert got.dtype == np.uint64 and np.array_equal(got, v)
    if int(v.max()) <= (1 << 31) - 1:
        assert np.array_equal(decode_stream(Reader(data), len(v), False, int32=True), v.astype(np.int64))
    else:
        with pytest.raises(DecodeError, match="int32"):
            decode_stream(Reader(data), len(v), False, int32=True)


@pytest.mark.parametrize("big", [1 << 31, -(1 << 31) - 1, (1 << 62), -(1 << 63)])
def test_escaped_value_outside_int32_is_refused(big):
    v = np.array([0, 1, -2, big, 3], np.int64)
    data = _dense(v, True, 4)
    assert np.array_equal(decode_stream(Reader(data), len(v), True), v)
    with pytest.raises(DecodeError, match="int32"):
        decode_stream(Reader(data), len(v), True, int32=True, out=np.zeros(len(v), np.int32))


def test_zigzag_table_matches_arithmetic():
    u = np.arange(512, dtype=np.uint64)
    rng = np.random.default_rng(0)
    sym = rng.integers(0, 256, 5000)
    v = unzigzag(u)
    assert np.array_equal(zigzag(v), u)
    data = _dense(v[sym], True, 8)
    assert np.array_equal(decode_stream(Reader(data), len(sym), True, int32=True), v[sym])


def test_shared_context_groups_decode_the_same():
    rng = np.random.default_rng(3)
    n = 20000
    ctx = rng.integers(0, 4, n)
    streams = [rng.integers(-50, 50, n) * (ctx + 1) for _ in range(3)]
    data = [_dense(s, True, 6, ctx=ctx, n_ctx=4) for s in streams]
    g = Groups(ctx, 4)
    for s, d in zip(streams, data, strict=False):
        a = decode_stream(Reader(d), n, True, ctx=ctx, n_ctx=4, int32=True)
        b = decode_stream(Reader(d), n, True, ctx=g, n_ctx=4, int32=True)
        assert np.array_equal(a, s) and np.array_equal(b, s)


def test_nearly_empty_and_mostly_zero_streams_go_sparse():
    rng = np.random.default_rng(4)
    n = 200000
    v = np.zeros(n, np.int64)
    v[[17, 90000, 199999]] = [1, -1, 2]
    assert _code(v)[0] == 3
    v = np.where(rng.uniform(size=n) < 0.012, rng.choice([-1, 1], n), 0)  # SH degree 2 at quality 3
    data = _code(v)
    assert data[0] == 3
    assert np.array_equal(decode_stream(Reader(data), n, True), v)
    assert len(data) <= 1.05 * min(len(_dense(v, True, t)) for t in (4, 6, 8))


def _code(values, signed=True) -> bytes:
    w = Writer()
    put_stream(w, np.asarray(values), signed)
    return w.getvalue()


def _reference_rotations(rot_idx, rot, params, bits=None):
    """The rebuild as docs/format.md words it (one np.where per case)."""
    s = params.rot_step if bits is None else (1.0 / np.sqrt(2.0)) / rotation_max(bits).astype(np.float64)
    r = np.asarray(rot)
    c = [r[:, j].astype(np.float64) * s for j in range(3)]
    ss = c[0] * c[0] + c[1] * c[1] + c[2] * c[2]
    amax = np.abs(r).max(axis=1).astype(np.float64) * s
    big = np.maximum(np.sqrt(np.maximum(0.0, 1.0 - ss)), amax + 0.25 * s)
    idx = np.asarray(rot_idx)
    q = []
    for col in range(4):
        kept = c[min(col, 2)] if col < 3 else c[2]
        below = c[col - 1] if col >= 1 else c[0]
        q.append(np.where(idx == col, big, np.where(col < idx, kept, below)))
    norm = np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    return np.stack([x / norm for x in q], 1).astype(np.float32)


@pytest.mark.parametrize("quality", [0, 2, 3, 5])
def test_rotation_rebuild_bit_identical(quality):
    p = QuantParams.from_quality(quality)
    rng = np.random.default_rng(quality)
    quats = rng.normal(size=(20000, 4))
    idx, rot = quantize_rotations(quats, p)
    m = p.rot_max
    edge_rot = np.array([[0, 0, 0], [m, m, m], [-m, m, -m], [m, 0, 0], [1, -1, 0]], np.int32)
    edge = (np.repeat(np.arange(4, dtype=np.uint8), len(edge_rot)), np.tile(edge_rot, (4, 1)))
    for i, r in ((idx, rot), edge):
        got = dequantize_rotations(i, r, p)
        assert np.array_equal(got.view(np.uint32), _reference_rotations(i, r, p).view(np.uint32))


@pytest.mark.parametrize("n", [1, 1023, 1025, 5000])
def test_rotation_rebuild_bit_identical_per_row_lattices(n):
    """Each row on its own lattice (anisotropy tiers, faint rows), across the compiled decoder's
    blocks of rows; codes as int32 (a decoder's) and int64 (an encoder's)."""
    p = QuantParams.from_quality(3)
    rng = np.random.default_rng(n)
    bits = rng.integers(p.rot_bits - len(p.rot_tiers) - p.faint_rot, p.rot_bits + 1, n).astype(np.int32)
    m = rotation_max(bits)[:, None]
    rot = np.clip(rng.integers(-m, m + 1, (n, 3)), -m, m)
    rot[::7] = np.concatenate([m, -m, m], axis=1)[::7]  # the lattice's corners
    idx = rng.integers(0, 4, n).astype(np.uint8)
    want = _reference_rotations(idx, rot, p, bits).view(np.uint32)
    for r in (rot.astype(np.int32), rot.astype(np.int64)):
        assert np.array_equal(dequantize_rotations(idx, r, p, bits).view(np.uint32), want)


def test_sh_dequantisation_same_for_column_and_row_major():
    g = synthetic_map(3000, 3, seed=5)
    p = QuantParams.from_quality(3)
    data, _ = encode_map(g, p)
    _, q = decode_snapshot(data)
    assert q.rest.strides[0] == q.rest.itemsize  # the decoder's column-major view
    a = dequantize_fields(q, p)["sh"]
    q2 = q.copy()
    q2.rest = np.ascontiguousarray(q.rest)
    b = dequantize_fields(q2, p)["sh"]
    steps = np.concatenate([[np.float32(p.dc_step)], p.rest_steps(16).astype(np.float32)])
    vals = np.concatenate([q.dc[:, None, :], q.rest], axis=1)
    ref = vals.astype(np.float32) * steps[None, :, None]
    assert a.flags.c_contiguous and b.flags.c_contiguous
    assert np.array_equal(a.view(np.uint32), ref.view(np.uint32))
    assert np.array_equal(b.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("quality", [2, 3])
@pytest.mark.parametrize("deg", [0, 3])
def test_round_trip_exact_at_bench_qualities(quality, deg):
    g = synthetic_map(30000, deg, seed=6)
    p = QuantParams.from_quality(quality)
    data, _ = encode_map(g, p)
    _, q = decode_snapshot(data)
    assert q.equals(to_qmap(g, p))


@pytest.mark.parametrize("kind", ["constant", "sparse", "direct", "escaped"])
def test_limit_checked_in_every_mode(kind):
    """``limit`` (the SH quantisation range) is enforced whatever the stream mode, and values at
    the limit pass."""
    n = 5000
    v = np.zeros(n, np.int64)
    if kind == "constant":
        v[:] = -41
        data = _code(v)
    elif kind == "sparse":
        v[[3, 4000]] = [7, -41]
        data = _code(v)
    elif kind == "direct":
        v = np.arange(n) % 83 - 41
        data = _dense(v, True, 8)
    else:
        v = np.arange(n) % 83 - 41
        data = _dense(v, True, 4)
    assert data[0] == {"constant": 1, "sparse": 3, "direct": 6, "escaped": 6}[kind]  # 6: two lanes (n ≥ 4096)
    out = np.zeros(n, np.int32)
    assert np.array_equal(decode_stream(Reader(data), n, True, int32=True, out=out, zeroed=True, limit=41), v)
    with pytest.raises(DecodeError, match="beyond"):
        decode_stream(Reader(data), n, True, int32=True, out=np.zeros(n, np.int32), zeroed=True, limit=40)


def _coefficient_bytes(ch: np.ndarray) -> bytes:
    from gs_map_share.section import _put_sh_coefficient

    w = Writer()
    _put_sh_coefficient(w, ch)
    return w.getvalue()


def _decode_coefficient(data: bytes, n: int, limit: int = 1 << 20) -> np.ndarray:
    from gs_map_share.section import JOINT_MODE, _get_sh_joint

    r = Reader(data, "test")
    out = np.zeros((3, n), np.int32)
    if data[0] == JOINT_MODE:
        _get_sh_joint(r, out, limit)
    else:
        for c in range(3):
            decode_stream(r, n, int32=True, out=out[c], zeroed=True, limit=limit)
    r.end()
    return out


def test_joint_sh_coefficient_round_trip_with_escapes():
    """Dense small values (SH degree 1 at quality 3) take the joint form; escapes of all sizes come
    back exactly."""
    rng = np.random.default_rng(7)
    n = 200000
    ch = np.rint(rng.normal(0, 0.8, (3, n))).astype(np.int32)
    ch[0, 5], ch[1, 900], ch[2, n - 1] = 40, -300, 7
    data = _coefficient_bytes(ch)
    assert data[0] == 4 and 2 <= data[1] <= 6
    assert np.array_equal(_decode_coefficient(data, n), ch)
    sep = b"".join(_code(c) for c in ch)
    assert len(data) <= 1.005 * len(sep) + 64
    with pytest.raises(DecodeError):  # the escaped 300 is beyond this limit
        _decode_coefficient(data, n, limit=299)


def test_sparse_coefficient_stays_separate():
    rng = np.random.default_rng(8)
    n = 50000
    ch = np.where(rng.uniform(size=(3, n)) < 0.01, 1, 0).astype(np.int32)
    data = _coefficient_bytes(ch)
    assert data[0] != 4
    assert np.array_equal(_decode_coefficient(data, n), ch)


@pytest.mark.parametrize("base", [0, 1, 7, 255])
def test_joint_bad_base_refused(base):
    rng = np.random.default_rng(9)
    ch = np.rint(rng.normal(0, 0.8, (3, 200000))).astype(np.int32)
    data = bytearray(_coefficient_bytes(ch))
    assert data[0] == 4
    data[1] = base
    with pytest.raises(DecodeError):
        _decode_coefficient(bytes(data), 200000)


def test_joint_symbol_beyond_base_cubed_refused():
    n = 1000
    j = np.full(n, 3**3 + 1, np.int64)  # above the escape symbol of base 3
    w = Writer()
    w.u8(4), w.u8(3)
    put_stream(w, j, False)
    for _ in range(3):
        put_stream(w, np.zeros(0, np.int64))
    with pytest.raises(DecodeError):
        _decode_coefficient(w.getvalue(), n)


def test_snapshot_with_joint_coefficients_round_trips():
    import gs_map_share.section as S

    g = synthetic_map(200000, 3, seed=10)
    p = QuantParams.from_quality(3)
    data, _ = encode_map(g, p)
    calls = []
    orig = S._get_sh_joint
    S._get_sh_joint = lambda r, out, limit: (calls.append(1), orig(r, out, limit))[1]
    try:
        _, q = decode_snapshot(data)
    finally:
        S._get_sh_joint = orig
    assert calls  # degree-1 coefficients at quality 3 take the joint form
    assert q.equals(to_qmap(g, p))


def test_mutated_joint_coefficient_raises_only_decode_error():
    rng = np.random.default_rng(11)
    n = 200000
    ch = np.rint(rng.normal(0, 0.8, (3, n))).astype(np.int32)
    data = _coefficient_bytes(ch)
    assert data[0] == 4
    for _ in range(60):
        m = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            i = (
                int(rng.integers(0, min(len(m), 400)))
                if rng.uniform() < 0.7
                else int(rng.integers(0, len(m)))
            )
            m[i] = int(rng.integers(0, 256))
        cut = len(m) if rng.uniform() < 0.8 else int(rng.integers(1, len(m)))
        try:
            _decode_coefficient(bytes(m[:cut]), n)
        except DecodeError:
            pass


def _expand_plain(code, occ):
    """Children codes and parent indices, bit by bit (the reference for octree.expand_codes)."""
    child, pidx = [], []
    for i, (c, o) in enumerate(zip(code.tolist(), occ.tolist(), strict=True)):
        for b in range(8):
            if o >> b & 1:
                child.append((c << 3) | b)
                pidx.append(i)
    return np.array(child, np.uint64), np.array(pidx, np.int64)


def _use_compiled(compiled: bool, monkeypatch) -> None:
    """Run the codec's compiled loops (skipped without numba or when switched off), or its plain
    paths."""
    from gs_map_share import jit

    if compiled:
        pytest.importorskip("numba")
        if jit.switched_off():
            pytest.skip("GS_MAP_SHARE_NUMBA=0: the compiled loops are switched off")
        assert jit.kernels() is not None
    else:
        monkeypatch.setattr(jit, "_kernels", False)


@pytest.mark.parametrize("multi", [0.0, 0.01, 0.05, 0.2, 0.3, 1.0])
def test_expand_codes_every_path_matches_plain(multi):
    """octree.expand_codes (numpy): one child each, a few nodes with several (first children
    copied in slices, the others patched in), more (repeated, patched), many (all bits expanded):
    same children and parents as bit by bit, with or without the parent indices. (The compiled
    expansion is checked through octree.descend below.)"""
    from gs_map_share import octree

    rng = np.random.default_rng(int(multi * 100))
    for p in (0, 1, 7, 300, 3000):
        occ = np.where(rng.random(p) < multi, rng.integers(1, 256, p), 1 << rng.integers(0, 8, p)).astype(
            np.uint8
        )
        code = rng.integers(0, 1 << 40, p).astype(np.uint64)
        if multi == 0.3 and p > 7:
            occ[rng.integers(0, p, 3)] = 0  # an empty node (a decoder refuses it first): still exact
        want = _expand_plain(code, occ)
        for kids in (None, octree.children_per_node(occ)):
            got = octree.expand_codes(code, occ, kids)
            assert np.array_equal(got[0], want[0]) and got[0].dtype == np.uint64
            assert np.array_equal(got[1], want[1])
            assert octree.expand_codes(code, occ, kids, parents=False)[1] is None
            assert np.array_equal(octree.expand_codes(code, occ, kids, parents=False)[0], want[0])


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("multi", [0.0, 0.01, 0.05, 0.2, 1.0])
def test_descend_matches_plain_expansion_and_refuses_bad_bytes(multi, compiled, monkeypatch):
    """octree.descend (a decoder's step down): the children and parents of the bit-by-bit
    expansion, nodes per tile counted from the bytes, and a clean ValueError for a byte outside
    1..255 or more children than allowed, compiled (one counting pass, then
    gs_map_share.kernels.expand_codes) and plain alike, with or without the parent indices."""
    from gs_map_share import octree

    _use_compiled(compiled, monkeypatch)
    rng = np.random.default_rng(int(multi * 100) + 3)
    for p in (0, 1, 7, 300, 3000):
        occ = np.where(rng.random(p) < multi, rng.integers(1, 256, p), 1 << rng.integers(0, 8, p)).astype(
            np.int32
        )
        code = rng.integers(0, 1 << 40, p).astype(np.uint64)
        tile_count = np.diff(np.r_[0, np.sort(rng.integers(0, p + 1, 4)), p]).astype(np.int64)
        tile_count = tile_count[tile_count > 0]
        want_child, want_pidx = _expand_plain(code, occ)
        tile_of_node = np.repeat(np.arange(len(tile_count)), tile_count)
        want_tiles = np.bincount(tile_of_node[want_pidx], minlength=len(tile_count))
        child, pidx, per_tile = octree.descend(code, occ, tile_count, len(want_child))
        assert np.array_equal(child, want_child) and child.dtype == np.uint64
        assert np.array_equal(pidx, want_pidx)
        assert np.array_equal(per_tile, want_tiles)
        child, pidx, _ = octree.descend(code, occ, tile_count, len(want_child), parents=False)
        assert pidx is None and np.array_equal(child, want_child)
        up = rng.integers(0, 1 << 40, p)  # an ancestor index carried down: the parent's, looked up
        child, pidx, _ = octree.descend(code, occ, tile_count, len(want_child), up=up)
        assert np.array_equal(child, want_child) and np.array_equal(pidx, up[want_pidx])
        with pytest.raises(ValueError, match="more than the"):
            octree.descend(code, occ, tile_count, len(want_child) - 1)
        for bad in (0, 256, -1) if p else ():
            occ2 = occ.copy()
            occ2[rng.integers(0, p)] = bad
            with pytest.raises(ValueError, match="outside 1..255"):
                octree.descend(code, occ2, tile_count, 8 * p)


@pytest.mark.parametrize("compiled", [True, False])
def test_parent_columns_and_combos_match_numpy(compiled, monkeypatch):
    """A child's view of its parent's attributes (section._Parent): each column gathered by parent
    index, and a channel moved by the child's step in another, as plain numpy computes them, for
    the decoder's int32 columns (compiled gathers) and the encoder's int64 ones alike."""
    from gs_map_share.section import Coarse, _Parent

    _use_compiled(compiled, monkeypatch)
    rng = np.random.default_rng(11)
    m, n = 300, 2000
    idx = np.sort(rng.integers(0, m, n))
    for dtype in (np.int32, np.int64):
        a = rng.integers(-(1 << 29), 1 << 29, (m, 3)).astype(dtype)
        c = Coarse(a[:, 0].copy(), a, np.zeros(m, np.uint8), a, a)
        p = _Parent(c, idx)
        for i in range(3):
            got = p.col("scale", i)
            assert got.dtype == np.int32 and np.array_equal(got, a[idx, i])
        assert np.array_equal(p.col("op"), a[idx, 0])
        x = rng.integers(-(1 << 29), 1 << 29, n).astype(dtype)
        for i, j in ((1, 0), (2, 1), (0, 2)):
            want = a[idx, i].astype(np.int64) + x - a[idx, j]
            got = p.combo("dc", i, x, j)
            assert got.dtype == np.int64 and np.array_equal(got, want)


@pytest.mark.parametrize("compiled", [True, False])
def test_parent_prediction_added_in_place_as_numpy_adds_it(compiled, monkeypatch):
    """section._ParentPred.add_into (the decoder's fused gather, faint division, sum and range
    check): the sum numpy makes of the residuals and the materialised prediction, for columns,
    1-D channels and combos, faint factors 2, 4 and 5, sums at ±2**30 (refused) and combos
    whose sum leaves int32 (refused, not wrapped); None where not compiled."""
    from gs_map_share.section import Coarse, _Parent, _ParentPred

    _use_compiled(compiled, monkeypatch)
    rng = np.random.default_rng(13)
    lim = 1 << 30
    m, n = 300, 3000
    idx = np.sort(rng.integers(0, m, n))
    a = rng.integers(-(1 << 29), 1 << 29, (m, 3)).astype(np.int32)
    p = _Parent(Coarse(a[:, 0].copy(), a, np.zeros(m, np.uint8), a, a), idx)
    x = rng.integers(-(1 << 29), 1 << 29, n).astype(np.int32)
    faint = rng.random(n) < 0.3
    wrapped = False
    for f, fa in ((1, None), (2, faint), (4, faint), (5, faint)):
        for pred in (_ParentPred(p, "scale", 1), _ParentPred(p, "op", None), _ParentPred(p, "dc", 2, 1, x)):
            pred = pred if fa is None else pred.on_faint(fa, f)
            want_pred = pred()  # the plain path's values (numpy floor division on faint rows)
            v = rng.integers(-(1 << 28), 1 << 28, n).astype(np.int32)
            want = v.astype(np.int64) + want_pred
            got = v.copy()
            ok = pred.add_into(got, lim)
            if not compiled:
                assert ok is None
                continue
            assert ok is bool(np.abs(want).max() < lim)
            if ok:
                assert np.array_equal(got, want)
            # a residual that takes one sum to ±2**30 exactly, or a combo's past int32: refused
            for edge in (lim, -lim, 3 * lim):
                v2 = v.copy()
                v2[7] = min(max(edge - int(want_pred[7]), -(1 << 31)), (1 << 31) - 1)
                if abs(int(v2[7]) + int(want_pred[7])) >= lim:
                    assert pred.add_into(v2, lim) is False
            # a combo's sum past 2**31, whose int32 wrap would land back inside ±2**30
            k = int(np.argmax(want_pred))
            if want_pred[k] > lim:
                v2 = (-want_pred).astype(np.int32)  # every other sum 0
                v2[k] = (1 << 31) - 1
                assert -lim < np.int32(np.int64(v2[k]) + want_pred[k] - (1 << 32)) < lim
                assert pred.add_into(v2, lim) is False
                wrapped = True
    assert wrapped or not compiled


@pytest.mark.parametrize("quality", [0, 2])
def test_progressive_decode_the_same_with_parent_predictions_fused_or_not(quality, monkeypatch):
    """A progressive snapshot (faint factor 5 at quality 0, 2 above) decodes to the same integers
    and the same prefixes whether parent predictions are added by the fused kernel or by numpy;
    and the fused path is taken (so this compares something)."""
    from gs_map_share import jit, section

    compiled = jit.kernels()
    if compiled is None:
        pytest.skip("numba is not installed (or GS_MAP_SHARE_NUMBA=0): only the numpy path exists")
    g = synthetic_map(6000, 1, seed=8)
    g.opacity_logits[::3] = -3.0  # a third faint
    data, info = encode_map(g, QuantParams.from_quality(quality), n_levels=4)
    used = []
    fused = section._ParentPred.add_into

    def spy(self, v, lim):
        used.append(len(v))
        return fused(self, v, lim)

    with monkeypatch.context() as mp:
        mp.setattr(section._ParentPred, "add_into", spy)
        fast = [decode_snapshot(data, k)[1] for k in range(info.levels)]
    assert used and max(used) == len(g)
    monkeypatch.setattr(jit, "_kernels", False)
    plain = [decode_snapshot(data, k)[1] for k in range(info.levels)]
    for a, b in zip(fast, plain, strict=True):
        assert a.equals(b)


def test_rotation_bits_the_same_compiled_or_not(monkeypatch):
    """quantize.rotation_bits: the compiled pass gives numpy's bits for 0 to 4 tiers, with and
    without faint rotations, from an (N, 3) array or three columns, int32 or int64, at spreads on
    and either side of each tier."""
    from gs_map_share import jit
    from gs_map_share.quantize import rotation_bits

    compiled = jit.kernels()
    if compiled is None:
        pytest.skip("numba is not installed (or GS_MAP_SHARE_NUMBA=0): only the numpy path exists")
    rng = np.random.default_rng(14)
    n = 5000
    base = rng.integers(-400, 0, n)
    for tiers in ((), (6,), (6, 13), (13, 26, 48, 80)):
        for faint_rot in (0, 1):
            p = QuantParams(rot_bits=9, rot_tiers=tiers, faint_rot=faint_rot)
            spread = rng.choice(
                np.array(sorted({0, 1, 200, *tiers, *(t - 1 for t in tiers), *(t + 1 for t in tiers)})), n
            )
            for dtype in (np.int32, np.int64):
                sc = np.stack([base, base + spread, base + rng.integers(0, spread + 1)], 1).astype(dtype)
                rng.permuted(sc, axis=1, out=sc)
                op = rng.integers(-40, 40, n).astype(dtype)
                for form in (sc, [sc[:, 0], sc[:, 1], sc[:, 2]]):
                    monkeypatch.setattr(jit, "_kernels", compiled)
                    fast = rotation_bits(form, p, op)
                    monkeypatch.setattr(jit, "_kernels", False)
                    plain = rotation_bits(form, p, op)
                    if not tiers and not faint_rot:
                        assert fast is None and plain is None
                        continue
                    assert fast.dtype == plain.dtype == np.int32 and np.array_equal(fast, plain)
                    assert len(np.unique(plain)) > 1


@pytest.mark.parametrize("compiled", [True, False])
def test_faint_rows_rescaled_as_numpy_does(compiled, monkeypatch):
    """section._on_faint: floor division (negative values too) or multiplication by the faint
    factor on the faint rows only, the other rows untouched, in the input's dtype."""
    from gs_map_share.section import _on_faint

    _use_compiled(compiled, monkeypatch)
    rng = np.random.default_rng(12)
    for dtype in (np.int32, np.int64):
        x = rng.integers(-5000, 5000, 3000).astype(dtype)
        x[:4] = [-(1 << 31), (1 << 31) - 1, -(1 << 31) + 1, -1]  # floor at the extremes too
        faint = rng.random(3000) < 0.3
        faint[:4] = True
        for f in (2, 3, 8, 1 << 20, (1 << 31) - 1):
            got = _on_faint(x, faint, f, divide=True)
            assert got.dtype == dtype and np.array_equal(got, np.where(faint, x // f, x))
        x[:4] = 0  # (multiplied: the caller keeps the product in range)
        for f in (2, 3, 8):
            got = _on_faint(x, faint, f, divide=False)
            assert got.dtype == dtype and np.array_equal(got, np.where(faint, x * f, x))


def test_id_order_scatter_matches_sort():
    """Ids filling a range are placed by a scatter; gaps and repeats fall back to the sort."""
    from gs_map_share.section import _id_order

    rng = np.random.default_rng(5)
    for ids in (
        rng.permutation(1000) + 1,  # 1..N in any order: the scatter
        rng.permutation(1000) + (1 << 62),
        rng.choice(5000, 1000, replace=False),  # gaps: the sort
        np.array([3, 1, 2, 2, 5]),  # a repeat with max − min = n − 1: the sort
        np.array([7]),
        np.zeros(0, np.int64),
    ):
        ids = np.asarray(ids).astype(np.uint64)
        assert np.array_equal(ids[_id_order(ids)], np.sort(ids))
        if len(np.unique(ids)) == len(ids):
            assert np.array_equal(_id_order(ids), np.argsort(ids))


@pytest.mark.parametrize(
    ("n", "span"), [(5000, 1), (5000, 40), (3000, 4000), (50, 1 << 19), (200, 1 << 23), (1, 0)]
)
def test_distinct_tiles_every_path_equals_numpy_unique(n, span):
    """The encoder's distinct tiles (presence table, packed 1-D key, row-wise) = np.unique's."""
    from gs_map_share.section import _unique_tiles

    t = np.random.default_rng(span).integers(-span, span + 1, size=(n, 3)) + [7, -3, 1 << 20]
    tiles, idx = _unique_tiles(t)
    ref, inv = np.unique(t, axis=0, return_inverse=True)
    assert np.array_equal(tiles, ref) and np.array_equal(idx, inv.reshape(-1))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 1500), st.integers(0, 64), st.integers(0, 2**32 - 1))
def test_bit_packing_and_bit_lengths_equal_pythons_ints(n, max_bits, seed):
    """pack_bits (compiled; or byte planes up to 57 bits, bit by bit above) = the values' bits laid
    end to end, read back with Python ints; bit_length (float exponent below 2**53) =
    int.bit_length."""
    from gs_map_share import jit
    from gs_map_share.bitio import pack_bits
    from gs_map_share.entropy import bit_length

    rng = np.random.default_rng(seed)
    nb = rng.integers(0, max_bits + 1, n)
    vals = rng.integers(0, 1 << 63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    vals >>= rng.integers(0, 64, n).astype(np.uint64)
    want, at = 0, 0
    for v, b in zip(vals.tolist(), nb.tolist(), strict=True):
        want |= (v & ((1 << b) - 1)) << at
        at += b
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            packed = pack_bits(vals, nb)
            assert int.from_bytes(packed, "little") == want and len(packed) == (at + 7) // 8
    assert bit_length(vals).tolist() == [v.bit_length() for v in vals.tolist()]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 3000),
    width=st.sampled_from([1, 3, 9, 24, 45]),
    palette=st.sampled_from([1, 7, 500, None]),
    floats=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_distinct_rows_the_same_compiled_or_not(n, width, palette, floats, seed):
    """The encoder's distinct rows (the SH palette): the hash-table pass gives the numpy path's
    (first, inverse), both in order of first use, and they rebuild the rows exactly — float rows
    compared as bits (−0.0 and 0.0 are two rows)."""
    from gs_map_share import jit
    from gs_map_share.palette import unique_rows

    rng = np.random.default_rng(seed)
    if floats:
        pool = rng.choice(np.array([0.0, -0.0, 1.5, -2.25, np.inf], np.float32), (palette or n or 1, width))
    else:
        pool = rng.integers(-3, 4, (palette or n or 1, width)).astype(np.int32)
    rows = pool[rng.integers(0, len(pool), n)] if palette else pool[:n]
    got = []
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            got.append(unique_rows(rows))
    (f1, i1), (f2, i2) = got
    assert np.array_equal(f1, f2) and np.array_equal(i1, i2)
    assert np.all(np.diff(f1) > 0) and (n == 0 or i1[0] == 0)
    assert np.array_equal(rows[f1][i1].view(np.int32), rows.view(np.int32))
    assert len(f1) == len({r.tobytes() for r in rows})


@pytest.mark.parametrize("width", [1, 2, 7, 8, 9, 16, 24, 45])
def test_distinct_rows_that_differ_in_one_value_anywhere(width):
    """Rows that differ from one another in a single value, at every position of the row (each
    value of a row feeds one lane of the compiled pass's hash; the last values of a width not a
    multiple of 8 go their own way), and in a single bit (0.0 against −0.0, the lowest and the
    highest bit): each is a distinct row, and repeats of them are found as repeats."""
    from gs_map_share.palette import unique_rows

    rng = np.random.default_rng(width)
    base = rng.integers(-1000, 1000, width).astype(np.int32)
    variants = [base]
    for j in range(width):
        for flip in (1, 1 << 31, 1 << 7, 12345):
            row = base.copy()
            row[j] ^= np.int32(np.uint32(flip).view(np.int32))
            variants.append(row)
    distinct = np.array(variants)
    order = rng.permutation(np.repeat(np.arange(len(distinct)), 3))  # each three times, shuffled
    rows = distinct[order]
    first, inv = unique_rows(rows)
    assert len(first) == len(distinct)
    assert np.array_equal(rows[first][inv], rows)


@pytest.mark.parametrize("n", [0, 1, 2, 1000, 70_000])
@pytest.mark.parametrize("bits", [0, 1, 11, 12, 33, 54, 62])
def test_stable_argsort_is_numpys_stable_argsort(n, bits):
    """The octree order's radix sort: numpy's stable argsort of non-negative int64 keys, ties in
    row order, for keys of every width up to 62 bits (digit widths that do and do not divide
    them; one pass, several)."""
    from gs_map_share import jit

    kernels = jit.kernels()
    if kernels is None:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(n * 64 + bits)
    key = rng.integers(0, 1 << bits, n) if bits else np.zeros(n, np.int64)
    if n > 10:
        key[rng.integers(0, n, n // 3)] = key[0]  # many ties
        key[-1] = (1 << bits) - 1 if bits else 0  # the widest key
    assert np.array_equal(kernels.stable_argsort(key.astype(np.int64)), np.argsort(key, kind="stable"))


@pytest.mark.parametrize("tiles", [1, 8, 5000])
@pytest.mark.parametrize("D", [4, 17, 20])
def test_octree_order_is_tile_then_morton_then_id(tiles, D):
    """section._octree_order: rows by (tile, Morton code, id) as a lexsort gives them, whichever
    way it takes (the packed key sorted, compiled or not; the lexsort where the key does not fit
    63 bits: 5000 tiles at D = 20), with ids in order and not."""
    from gs_map_share import jit
    from gs_map_share.section import _octree_order

    rng = np.random.default_rng(tiles + D)
    n = 30_000
    tile_idx = np.sort(rng.integers(0, tiles, n))[rng.permutation(n)]
    codes = rng.integers(0, 1 << min(3 * D, 62), n).astype(np.uint64)
    codes[rng.integers(0, n, n // 4)] = codes[0]  # ties broken by id
    for ids in (np.arange(1, n + 1, dtype=np.int64), rng.permutation(n).astype(np.int64)):
        want = np.lexsort((ids, codes, tile_idx))
        with pytest.MonkeyPatch.context() as mp:
            for compiled in (jit.kernels(), False):
                mp.setattr(jit, "_kernels", compiled)
                assert np.array_equal(_octree_order(tile_idx, codes, ids, D), want)


@pytest.mark.parametrize("sorted_nodes", [True, False])
def test_leaf_moments_the_same_compiled_or_not(sorted_nodes):
    """The coarse levels' moments: the compiled pass gives numpy's sums bit for bit (the same
    products in the same order, added in row order), with ties among a Gaussian's scales and
    nodes in any order."""
    from gs_map_share import jit, octree

    rng = np.random.default_rng(5)
    n, nodes = 20000, 700
    node = rng.integers(0, nodes, n)
    if sorted_nodes:
        node.sort()
    q = rng.normal(size=(n, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ls = rng.normal(-4, 1, (n, 3)).astype(np.float32)
    ls[::5, 1] = ls[::5, 0]
    ls[::7] = ls[::7, :1]
    op = rng.normal(0, 3, n).astype(np.float32)
    mu = rng.normal(size=(n, 3))
    dc = rng.normal(size=(n, 3)).astype(np.float32)
    got = []
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            got.append(octree.leaf_moments(node, nodes, mu, q, ls, op, dc))
    assert got[0].keys() == got[1].keys()
    for k in got[0]:
        assert np.array_equal(got[0][k], got[1][k]), k


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 3000),
    bits=st.sampled_from([3, 9, 20, 40, 61, 62, 63]),
    signed=st.booleans(),
    zeros=st.sampled_from([0, 5]),
    log2t=st.integers(2, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_encoder_streams_the_same_compiled_or_not(n, bits, signed, zeros, log2t, seed):
    """The encoder's one-pass statistics and escape symbols (mantissas packed as they go): the
    same Stats and the same stream bytes as numpy's passes, up to and beyond the 2**62 values the
    compiled pass hands back to numpy."""
    from gs_map_share import entropy, jit

    rng = np.random.default_rng(seed)
    mag = rng.integers(0, 1 << 62, n, dtype=np.int64) >> rng.integers(62 - min(bits, 62), 63, n)
    if bits == 63:
        mag[0] = (1 << 63) - 1  # beyond the compiled pass's range
    vals = np.where(rng.random(n) < 0.5, -mag, mag) if signed else mag
    got = []
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            st_ = entropy.Stats(vals, signed, zeros=zeros)
            w = Writer()
            entropy.encode_stream(w, vals, signed, log2t)
            got.append((st_.n, st_.small.tolist(), st_.big_bl.tolist(), st_.u.tolist(), w.getvalue()))
    assert got[0] == got[1]


@pytest.mark.parametrize("quality", [0, 2, 5])
def test_encoder_bytes_the_same_compiled_or_not(quality):
    """Whole containers (SH palette, coarse levels, escapes at fine steps) are the same bytes with
    the compiled encoder loops as with numpy's."""
    from gs_map_share import jit

    g = synthetic_map(6000, 2, seed=4)
    rows = np.random.default_rng(4).integers(0, 40, len(g))
    g.sh[:, 1:] = g.sh[rows, 1:]  # 40 distinct higher-SH rows: the palette is taken
    p = QuantParams.from_quality(quality)
    out = []
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            out.append([encode_map(g, p, n_levels=levels)[0] for levels in (1, 4)])
    assert out[0] == out[1]


def test_demorton_the_same_compiled_or_not():
    """The decoder's positions from Morton codes: the compiled pass = gs_mapping.morton's, and
    both invert morton() over the whole 21-bit range of each axis."""
    from gs_map_share import jit, octree
    from gs_mapping.morton import demorton, morton

    rng = np.random.default_rng(3)
    cells = rng.integers(0, 1 << 21, (5000, 3))
    cells[:3] = [[0, 0, 0], [(1 << 21) - 1] * 3, [1, (1 << 21) - 1, 0]]
    codes = morton(cells)
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            got = octree.demorton(codes)
            assert got.dtype == np.int64 and np.array_equal(got, cells)
            # with tile origins: tiles of 0, 1, many codes, origins anywhere (negative too)
            count = np.array([0, 1, 2000, 0, 2999])
            origin = rng.integers(-(1 << 40), 1 << 40, (len(count), 3))
            got = octree.demorton(codes, origin, count)
            assert np.array_equal(got, cells + np.repeat(origin, count, axis=0))
            reps = rng.integers(1, 4, len(codes))  # several Gaussians in a voxel: rows repeated
            got = octree.demorton(codes, origin, count, reps)
            assert np.array_equal(got, np.repeat(cells + np.repeat(origin, count, axis=0), reps, axis=0))
    assert np.array_equal(demorton(codes), cells)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 4000),
    scale=st.sampled_from([0.5, 3.0, 40.0, 1e3, 1e6, 1e15]),
    signed=st.booleans(),
    zeros=st.sampled_from([0, 7]),
    seed=st.integers(0, 2**32 - 1),
)
def test_size_estimate_of_every_bound_equals_counting_its_symbols(n, scale, signed, zeros, seed):
    """Stats.bits (every bound at once, from prefix and suffix sums) = the estimate made by
    counting one bound's symbols: its direct values and its escapes by bit length."""
    from gs_map_share import jit
    from gs_map_share.entropy import Stats
    from gs_map_share.tables import TABLE_BITS_PER_SYMBOL

    rng = np.random.default_rng(seed)
    v = rng.laplace(0, scale, n).astype(np.int64)
    v = v if signed else np.abs(v)
    s = Stats(v, signed, zeros=zeros)
    got = [s.bits(k) for k in range(9)]  # (computed on first use: before the switch below)
    with pytest.MonkeyPatch.context() as mp:  # the compiled sums and numpy's: the same floats
        mp.setattr(jit, "_kernels", False)
        plain = Stats(v, signed, zeros=zeros)
        assert [plain.bits(k) for k in range(9)] == got
    for k in range(4, 9):
        t = 1 << k
        esc = np.bincount(s._sbl[t:], s.small[t:], minlength=65)[:65] + s.big_bl
        counts = np.concatenate([s.small[:t], esc[k + 1 :]])
        c = counts[counts > 0]
        want = -(c * np.log2(c / c.sum())).sum() + (esc * np.maximum(np.arange(65) - 1, 0)).sum()
        want += TABLE_BITS_PER_SYMBOL * len(c)
        assert s.bits(k) == pytest.approx(want, rel=1e-12, abs=1e-6)


@settings(max_examples=80, deadline=None)
@given(
    a=st.integers(2, 320),
    top=st.integers(1, 16),
    absent=st.floats(0.0, 0.95),
    n_values=st.sampled_from([None, 10, 5000, 10**6]),
    seed=st.integers(0, 2**32 - 1),
)
def test_table_precision_the_same_compiled_or_not(a, top, absent, n_values, seed):
    """A frequency table: the compiled precision choice and bits = numpy's (the same bytes), and
    a decoder rebuilds the frequencies put_table says it will."""
    from gs_map_share import jit, tables

    rng = np.random.default_rng(seed)
    f = rng.integers(0, 1 << top, a, dtype=np.int64) + 1
    f[rng.random(a) < absent] = 0
    f[rng.integers(0, a)] = max(1, int(f.max()))
    out = []
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            w = Writer()
            rec = tables.put_table(w, f, n_values)
            out.append((w.getvalue(), rec.tolist()))
    assert out[0] == out[1]
    r = Reader(out[0][0], "table")
    assert tables.get_table(r, a).tolist() == out[0][1]


@pytest.mark.parametrize("spread", [3, 12, 21])
def test_octree_levels_the_same_compiled_or_not(spread):
    """The encoder's octree (nodes, occupancy bytes, parent indices at every depth) from sorted
    unique leaves over several tiles: the compiled pass = numpy's."""
    from gs_map_share import jit, octree

    rng = np.random.default_rng(spread)
    D = 21
    tiles = rng.integers(0, 4, 3000)
    codes = octree.morton(rng.integers(0, 1 << spread, (3000, 3)) << (D - spread))
    order = np.lexsort((codes, tiles))  # by tile, then code; then the repeats dropped
    t, c = tiles[order], codes[order]
    keep = np.ones(len(t), bool)
    keep[1:] = (t[1:] != t[:-1]) | (c[1:] != c[:-1])
    t, c = t[keep], c[keep]
    got = []
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            levels = octree.build_levels(t, c, D)
            got.append([[None if a is None else (a.dtype.str, a.tolist()) for a in part] for part in levels])
    assert got[0] == got[1]


@pytest.mark.parametrize("tiers", [False, True])
def test_rotation_lattice_check_compiled_equals_numpy(tiers, monkeypatch):
    """The decoder's check that every rotation component lies within its row's lattice: the
    compiled pass and numpy's agree on codes at, inside and one past each row's largest code."""
    from gs_map_share import jit
    from gs_map_share.quantize import rotations_within

    p = QuantParams.from_quality(3)
    rng = np.random.default_rng(7)
    n = 3000
    bits = rng.integers(p.rot_bits - len(p.rot_tiers) - p.faint_rot, p.rot_bits + 1, n).astype(np.int32)
    m = rotation_max(bits) if tiers else np.full(n, p.rot_max)
    rot = np.clip(rng.integers(-m[:, None], m[:, None] + 1, (n, 3)), -m[:, None], m[:, None]).astype(np.int32)
    b = bits if tiers else None
    compiled = jit.kernels()
    assert compiled is not None or jit.switched_off()
    cases = [(rot, True)]
    for row, col, sign in ((0, 0, 1), (n // 2, 1, -1), (n - 1, 2, 1)):
        bad = rot.copy()
        bad[row, col] = sign * (m[row] + 1)
        edge = rot.copy()
        edge[row, col] = sign * m[row]
        cases += [(bad, False), (edge, True)]
    for r, want in cases:
        assert rotations_within(r, b, p) is want
        monkeypatch.setattr(jit, "_kernels", False)
        assert rotations_within(r, b, p) is want
        monkeypatch.setattr(jit, "_kernels", compiled)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attribute_codes_are_the_lattice_definition(compiled, dtype, monkeypatch):
    """quantize.attribute_lattices, compiled or not, against its definition written out here: each
    value clamped (opacity logits ±20, log-scales −30..12, colour ±64), divided by its step and
    rounded half to even; a faint row's (opacity code below ``faint_below``) scales and colour
    rounded on the factor's coarser lattice and sent as multiples of it. Ties, ±inf, a colour
    that is a strided view (a map's SH DC column), every faint factor."""
    from gs_map_share.quantize import attribute_lattices

    _use_compiled(compiled, monkeypatch)
    rng = np.random.default_rng(7)
    n = 4000
    for f in range(1, 9):
        p = QuantParams.from_quality(f % 6).with_faint(0.3, f)
        opl = (rng.normal(0, 6, n) * rng.choice([1.0, 100.0], n)).astype(dtype)
        opl[: n // 5] = ((np.round(opl[: n // 5] / p.opacity_step) + 0.5) * p.opacity_step).astype(dtype)
        opl[-4:] = [np.inf, -np.inf, 20.3, -20.4]  # (and just past the clamps)
        ls = rng.normal(-4, 12, (n, 3)).astype(dtype)
        ls[: n // 5] = (np.round(ls[: n // 5] / p.scale_step) + 0.5) * p.scale_step
        ls[-3] = [-np.inf, np.inf, 40.0]
        ls[-4] = [12.3, -30.4, 12.0]
        sh = rng.normal(0, 30, (n, 4, 3)).astype(dtype)
        sh[-1, 0] = [64.3, -64.4, -np.inf]
        op, scale, dc = attribute_lattices(opl, ls, sh[:, 0, :], p)

        def code(x, bound, step):
            lo, hi = bound
            return np.array([np.rint(min(max(float(v), lo), hi) / step) for v in np.ravel(x)]).reshape(
                np.shape(x)
            )

        want_op = code(opl, (-20.0, 20.0), p.opacity_step)
        faint = want_op < p.faint_below
        k = np.where(faint, f, 1)[:, None]
        want_scale = np.stack(
            [code(ls[i], (-30.0, 12.0), k[i, 0] * p.scale_step) * k[i, 0] for i in range(n)]
        )
        want_dc = np.stack([code(sh[i, 0], (-64.0, 64.0), k[i, 0] * p.dc_step) * k[i, 0] for i in range(n)])
        assert op.dtype == scale.dtype == dc.dtype == np.int32
        assert (
            np.array_equal(op, want_op) and np.array_equal(scale, want_scale) and np.array_equal(dc, want_dc)
        )
        assert f == 1 or faint.sum() > n // 10  # the faint lattice was exercised


@pytest.mark.parametrize("compiled", [True, False])
def test_higher_sh_codes_are_float32_lattice_values(compiled, monkeypatch):
    """to_qmap's higher-SH codes, compiled or not, against the definition in float32: each value
    clamped to ±64, divided by its degree's step, rounded half to even (ties placed on purpose,
    values past the clamp both ways)."""
    _use_compiled(compiled, monkeypatch)
    g = synthetic_map(3000, 3, seed=4)
    p = QuantParams.from_quality(4)
    steps = np.repeat(p.rest_steps(g.num_sh).astype(np.float32), 3)
    rng = np.random.default_rng(2)
    flat = g.sh.reshape(len(g), -1)  # (a view: the map's own values edited)
    flat[:500, 3:] = ((rng.integers(-40, 40, (500, len(steps))) + np.float32(0.5)) * steps).astype(np.float32)
    flat[500:600, 3:] = rng.choice(np.array([64.3, -64.3, 1e30, -1e30, 63.9], np.float32), (100, len(steps)))
    want = np.rint(np.clip(flat[:, 3:], np.float32(-64), np.float32(64)) / steps).astype(np.int32)
    got = to_qmap(g, p).rest.reshape(len(g), -1)
    assert np.array_equal(got, want)
    assert np.array_equal(want[:500] % 2, np.zeros_like(want[:500]))  # (the ties went to even)


@pytest.mark.parametrize("compiled", [True, False])
def test_encoder_morton_codes_interleave_the_cells_bits(compiled, monkeypatch):
    """octree.morton, compiled or not: bit 3·b + 2 of a code is bit b of x, 3·b + 1 of y, 3·b of
    z, for the low 21 bits of each cell (written out here bit by bit), negative cells by their
    two's complement bits, as the octree's local cells (``pos − (tile << D)``) take them."""
    from gs_map_share import octree

    _use_compiled(compiled, monkeypatch)
    rng = np.random.default_rng(3)
    cells = rng.integers(-(1 << 22), 1 << 22, (2000, 3))
    cells[:3] = [[0, 0, 0], [(1 << 21) - 1] * 3, [-1, 1 << 21, 5]]
    want = np.zeros(len(cells), np.uint64)
    for b in range(21):
        for axis, at in ((0, 2), (1, 1), (2, 0)):
            bit = ((cells[:, axis] >> b) & 1).astype(np.uint64)
            want |= bit << np.uint64(3 * b + at)
    got = octree.morton(cells)
    assert got.dtype == np.uint64 and np.array_equal(got, want)


@pytest.mark.parametrize("extra_at", ["start", "end"])
@pytest.mark.parametrize("n", [4096, 8193, 20_000])
def test_a_palette_is_told_at_its_bound_compiled_or_not(n, extra_at):
    """palette_of (the SH palette's test, which the compiled count leaves as soon as the distinct
    rows pass n // 4): exactly n // 4 distinct rows are a palette, whose (first, inverse) equal
    unique_rows'; one more is none, whether the extra row comes first or last; so is a scene of
    all-distinct rows (a trainer's SH). The same answers without the compiled loops."""
    from gs_map_share import jit
    from gs_map_share.palette import palette_of, unique_rows

    rng = np.random.default_rng(n)
    limit = n // 4
    pool = rng.integers(-(1 << 20), 1 << 20, (limit + 1, 9)).astype(np.int32)
    at = rng.integers(0, limit, n)
    at[:limit] = np.arange(limit)  # every pool row but the last used
    at = at[rng.permutation(n)]
    rows = pool[at]
    with_extra = rows.copy()
    with_extra[0 if extra_at == "start" else -1] = pool[limit]
    distinct = rng.integers(-(1 << 20), 1 << 20, (n, 9)).astype(np.int32)
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            got = palette_of(rows)
            assert got is not None
            first, inv = unique_rows(rows)
            assert len(got[0]) == limit
            assert np.array_equal(got[0], first) and np.array_equal(got[1], inv)
            assert palette_of(with_extra) is None
            assert palette_of(distinct) is None
            assert palette_of(rows[:4095]) is None  # too few rows for a palette at all
