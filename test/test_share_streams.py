"""gs_map_share integer streams: dense and sparse modes, decoder fast paths, hostile streams."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from synthetic_maps import synthetic_map

from gs_map_share.bitio import Reader, Writer
from gs_map_share.entropy import decode_stream, encode_stream, put_stream
from gs_map_share.errors import DecodeError
from gs_map_share.quantize import QMap, QuantParams, dequantize, to_qmap


def _code(values, signed=True, **kw) -> bytes:
    w = Writer()
    put_stream(w, values, signed, **kw)
    return w.getvalue()


def _decode(data, n, signed=True, **kw):
    r = Reader(data, "test")
    out = decode_stream(r, n, signed, **kw)
    r.end()
    return out


def _sparse_values(rng, n, density, scale=3, big=False):
    v = np.zeros(n, np.int64)
    k = int(n * density)
    idx = rng.choice(n, k, replace=False)
    v[idx] = rng.integers(1, scale + 1, k) * rng.choice([-1, 1], k)
    if big and k:
        v[idx[: max(1, k // 10)]] *= 1 << 20  # escapes in the value stream
    return v


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("big", [False, True])
def test_mostly_zero_stream_is_sparse_and_exact(signed, big):
    rng = np.random.default_rng(1)
    v = _sparse_values(rng, 100000, 0.4, scale=1, big=big)
    if not signed:
        v = np.abs(v)
    data = _code(v, signed)
    assert data[0] == 3  # sparse mode
    assert len(data) <= 1.02 * min(len(_dense(v, signed, t)) for t in (4, 6, 8)) + 32
    out = _decode(data, len(v), signed)
    assert np.array_equal(out.astype(np.int64), v)
    o32 = np.full(len(v), 7, np.int32)
    got = decode_stream(Reader(data), len(v), signed, int32=True, out=o32)
    assert got is o32 and np.array_equal(o32, v)


def _dense(v, signed, t=6):
    w = Writer()
    encode_stream(w, v, signed, t)
    return w.getvalue()


@pytest.mark.parametrize("n", [4095, 5000])
def test_dense_stream_stays_dense(n):
    """Dense, in one lane (mode 2) below LANES_MIN values and two (mode 6) from there."""
    rng = np.random.default_rng(2)
    v = rng.integers(-5, 6, n)
    assert _code(v)[0] == (6 if n >= 4096 else 2)
    assert np.array_equal(_decode(_code(v), len(v)), v)


@pytest.mark.parametrize("int32", [False, True])
def test_direct_symbol_fast_path_matches_escape_path(int32):
    """Small values decode by table lookup; values past the direct-symbol bound use escapes. Both
    must give the exact integers (signed zig-zag and unsigned)."""
    rng = np.random.default_rng(3)
    small = rng.integers(-7, 8, 3000)  # every symbol direct (alphabet ≤ 2**4)
    mixed = np.concatenate([small, [1000, -70000, 5]])  # escapes present
    for v in (small, mixed):
        for signed, vals in ((True, v), (False, np.abs(v))):
            for t in (4, 6, 8):
                w = Writer()
                encode_stream(w, vals, signed, t)
                out = _decode(w.getvalue(), len(vals), signed, int32=int32)
                assert out.dtype == (np.int32 if int32 else (np.int64 if signed else np.uint64))
                assert np.array_equal(out.astype(np.int64), vals)


def test_constant_stream_into_out():
    data = _code(np.full(1000, -3))
    assert data[0] == 1
    o = np.zeros(1000, np.int32)
    decode_stream(Reader(data), 1000, True, int32=True, out=o)
    assert np.all(o == -3)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 3000),
    density=st.floats(0, 1),
    scale=st.integers(1, 300),
    signed=st.booleans(),
    seed=st.integers(0, 2**16),
    big=st.booleans(),
)
def test_stream_round_trip_property(n, density, scale, signed, seed, big):
    rng = np.random.default_rng(seed)
    v = _sparse_values(rng, n, density, scale, big) if n else np.zeros(0, np.int64)
    if not signed:
        v = np.abs(v)
    data = _code(v, signed)
    assert np.array_equal(_decode(data, n, signed).astype(np.int64), v)


def _sparse_bytes(k, gaps, vals, n_mode3_nested=False):
    w = Writer()
    w.u8(3)
    w.varint(k)
    if n_mode3_nested:
        w.u8(3)
        w.varint(1)
    encode_stream(w, np.asarray(gaps), False, 6)
    encode_stream(w, np.asarray(vals), False, 6)
    return w.getvalue()


@pytest.mark.parametrize("case", ["gap_past_end", "k_above_n", "k_zero", "nested", "with_contexts"])
def test_hostile_sparse_streams_raise_decode_error(case):
    n = 100
    if case == "gap_past_end":
        data = _sparse_bytes(3, [10, 50, 60], [0, 1, 2])  # positions 10, 61, 122 ≥ n
    elif case == "k_above_n":
        data = _sparse_bytes(101, [0] * 101, [0] * 101)
    elif case == "k_zero":
        data = _sparse_bytes(0, [], [])
    elif case == "nested":
        data = _sparse_bytes(2, [1, 1], [0, 0], n_mode3_nested=True)
    else:
        data = _sparse_bytes(2, [1, 1], [0, 0])
    kw = {"ctx": np.zeros(n, np.int64), "n_ctx": 1} if case == "with_contexts" else {}
    with pytest.raises(DecodeError):
        _decode(data, n, **kw)


def test_hand_made_sparse_stream_and_its_truncations():
    rng = np.random.default_rng(4)
    n, k = 2000, 150
    gaps = rng.integers(0, 12, k)
    mapped = rng.integers(0, 40, k)
    mapped[:3] = [1 << 20, 5 << 30, 77]  # escapes
    data = _sparse_bytes(k, gaps, mapped)
    want = np.zeros(n, np.int64)
    pos = np.cumsum(gaps + 1) - 1
    u = mapped + 1
    want[pos] = (u >> 1) ^ -(u & 1)
    assert np.array_equal(_decode(data, n), want)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            _decode(data[:cut], n)


def test_checksum_and_dequantize_of_a_transposed_sh_view():
    """A decoded map holds its higher SH as a transposed view; checksum and floats must equal those
    of the contiguous layout."""
    g = synthetic_map(40000, 3, seed=7)
    p = QuantParams.from_quality(2)
    q = to_qmap(g, p)
    n = len(q)
    cols = np.ascontiguousarray(q.rest.reshape(n, -1).T)
    view = QMap(
        q.sh_degree, q.ids, q.pos, q.level, q.op, q.scale, q.rot_idx, q.rot, q.dc, cols.T.reshape(n, -1, 3)
    )
    assert not view.rest.flags.c_contiguous
    assert view.checksum() == q.checksum()
    assert dequantize(view, p).equals(dequantize(q, p))


@pytest.mark.parametrize("kind", ["zero", "const", "sparse", "dense", "escapes"])
def test_decode_into_zeroed_out(kind):
    """``zeroed=True`` lets constant-zero and sparse streams skip writing zeros; every other value
    must still land in ``out``."""
    rng = np.random.default_rng(5)
    n = 100000
    v = {
        "zero": np.zeros(n, np.int64),
        "const": np.full(n, 4),
        "dense": rng.integers(-9, 10, n),
        "sparse": _sparse_values(rng, n, 0.4, scale=1),
        "escapes": np.where(rng.random(n) < 0.01, 1 << 25, 0),
    }[kind]
    data = _code(v)
    out = np.zeros(n, np.int32)
    got = decode_stream(Reader(data), n, True, int32=True, out=out, zeroed=True)
    assert got is out and np.array_equal(out, v)


@pytest.mark.parametrize("top", [20, 56, 57, 58, 62])
def test_escape_mantissas_of_every_width(top):
    """Mantissas up to 57 bits are read as one 64-bit word each, wider ones bit by bit."""
    rng = np.random.default_rng(top)
    n = 5000
    widths = rng.integers(0, top + 1, n)
    v = (rng.integers(0, 1 << 62, n) >> (62 - widths)) * rng.choice([-1, 1], n)
    for t in (4, 8):
        w = Writer()
        encode_stream(w, v, True, t)
        assert np.array_equal(_decode(w.getvalue(), n), v)


_SPARSE = _code(_sparse_values(np.random.default_rng(9), 100000, 0.4, scale=1, big=True))


@settings(max_examples=200, deadline=None)
@given(
    muts=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 1 << 20)),
)
def test_mutated_sparse_streams_raise_only_decode_error(muts, cut):
    assert _SPARSE[0] == 3
    b = bytearray(_SPARSE)
    for pos, val in muts:
        b[pos % len(b)] = val
    if cut is not None:
        b = b[: cut % (len(b) + 1)]
    for zeroed in (False, True):
        try:
            out = np.zeros(100000, np.int32)
            r = Reader(bytes(b), "fuzz")
            decode_stream(r, 100000, True, int32=True, out=out, zeroed=zeroed)
            r.end()
        except DecodeError:
            pass


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("centre", [-(1 << 20), -300, 700])
def test_channel_far_from_zero_is_centred_and_exact(wide, centre):
    """A channel whose values sit far from zero (a first log scale, coded raw) takes the centred
    choice: the constant travels once, the residuals are small, and it is smaller than raw."""
    from gs_map_share.section import CENTRED, _get_pred, _put_pred

    rng = np.random.default_rng(1)
    v = centre + rng.integers(-40, 41, 5000)
    parent = rng.integers(-5, 6, 5000).astype(np.int32)
    w = Writer()
    _put_pred(w, v, [0, parent])
    data = w.getvalue()
    assert data[0] & CENTRED
    plain = Writer()
    put_stream(plain, v)
    assert len(data) < 0.8 * len(plain.getvalue())
    r = Reader(data, "test")
    got = _get_pred(r, len(v), [0, parent], wide=wide)
    r.end()
    assert got.dtype == (np.int64 if wide else np.int32) and np.array_equal(got, v)


@pytest.mark.parametrize("const", [1 << 30, -(1 << 30), (1 << 62)])
def test_centring_constant_outside_the_lattice_is_refused(const):
    from gs_map_share.section import CENTRED, _get_pred

    w = Writer()
    w.u8(CENTRED)
    w.varint(2 * const if const >= 0 else -2 * const - 1)
    put_stream(w, np.zeros(100, np.int64) + 1)
    with pytest.raises(DecodeError, match="centring constant|exceeds the limit"):
        _get_pred(Reader(w.getvalue(), "test"), 100, [0])


@pytest.mark.parametrize("flag", [0, 1])
@pytest.mark.parametrize("big", [1 << 30, -(1 << 30), (1 << 31) + 5, 1 << 40])
@pytest.mark.parametrize("sparse", [False, True])
def test_residual_outside_the_lattice_is_refused(flag, big, sparse):
    """A value (raw, flag 0) or residual (from the parent, flag 1) of |v| ≥ 2**30 is refused with
    the decoder's error, never wrapped into int32: escaped in a dense stream or sparse among
    zeros, checked by the stream itself (the prediction sums never see it)."""
    from gs_map_share.section import _get_pred

    v = np.zeros(1000, np.int64) if sparse else np.arange(1000, dtype=np.int64) % 7 - 3
    v[417] = big
    parent = np.full(1000, 5, np.int32)
    w = Writer()
    w.u8(flag)
    put_stream(w, v)
    with pytest.raises(DecodeError):
        _get_pred(Reader(w.getvalue(), "test"), 1000, [0, parent])


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 80),
    spread=st.sampled_from([1, 30, 1 << 20, 1 << 40]),
    signed=st.booleans(),
    int32=st.booleans(),
    n_ctx=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_short_streams_take_the_smaller_of_plain_and_coded(n, spread, signed, int32, n_ctx, seed):
    """A stream of at most PLAIN_MAX values is written plain (mode 7: varints, no table) when
    that is smaller than the coded form, and decodes to its values either way, with or without
    contexts, into ``out`` or not; longer streams are never plain."""
    from gs_map_share import entropy

    rng = np.random.default_rng(seed)
    v = rng.integers(-spread, spread + 1, n)
    if not signed:
        v = np.abs(v)
    if int32:
        v = np.clip(v, -(1 << 31), (1 << 31) - 1)
    ctx = rng.integers(0, n_ctx, n) if n_ctx > 1 else None
    data = _code(v, signed, ctx=ctx, n_ctx=n_ctx)
    w = Writer()
    entropy.encode_stream(w, v, signed, 6, ctx=ctx, n_ctx=n_ctx)
    coded = w.getvalue()
    u = entropy._zz(v) if signed else v
    plain = 1 + sum(max(1, (int(x).bit_length() + 6) // 7) for x in u)
    if data[0] == entropy.PLAIN:
        assert n <= entropy.PLAIN_MAX and len(data) == plain
        assert coded[0] not in (0, 1) and plain <= len(coded)  # (a constant stays mode 1)
    elif n <= entropy.PLAIN_MAX and coded[0] not in (0, 1):
        assert len(data) <= plain  # the coded form was kept only where it is smaller
    out = np.full(n, 7, np.int32) if int32 else None
    got = _decode(data, n, signed, ctx=ctx, n_ctx=n_ctx, int32=int32, out=out)
    assert np.array_equal(got, v) and (out is None or got is out)


def _plain(values, signed=True) -> bytes:
    w = Writer()
    w.u8(7)
    for x in values:
        w.varint((x << 1) ^ (x >> 63) if signed else x)
    return w.getvalue()


@pytest.mark.parametrize(
    "data,n,kw,message",
    [
        (_plain([1, -2, 3]), 3, {}, None),
        (_plain(range(65)), 65, {}, "plain stream of 65 values"),
        (_plain([1, 2])[:-1], 2, {}, "needs 1 bytes"),
        (_plain([1 << 31]), 1, {"int32": True}, "int32"),
        (_plain([-(1 << 31) - 1]), 1, {"int32": True}, "int32"),
        (_plain([5, -9]), 2, {"limit": 8}, "beyond"),
        (b"\x07" + b"\xff" * 11, 1, {}, "varint longer than 64 bits"),
        (_plain([(1 << 64) - 1], signed=False), 1, {"signed": False}, None),
    ],
)
def test_hostile_plain_streams(data, n, kw, message):
    """Mode 7 read strictly: at most PLAIN_MAX values, every varint whole, int32 and limits held."""
    if message is None:
        assert len(_decode(data, n, **kw)) == n
        return
    with pytest.raises(DecodeError, match=message):
        _decode(data, n, **kw)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(65, 5000),
    n_ctx=st.sampled_from([2, 5]),
    apart=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@example(n=4500, n_ctx=2, apart=False, seed=1)  # (long streams: alike, and far apart)
@example(n=4500, n_ctx=5, apart=True, seed=2)
def test_short_context_streams_may_share_one_table(n, n_ctx, apart, seed):
    """A stream of several contexts shorter than MERGE_MAX takes one table for all its values
    where that is no larger (version 7: C = 1); a longer one where that costs at most
    CONTEXT_SLACK more, in two lanes (version 10): contexts alike merge, contexts far apart keep
    their tables. The decoder reads either form, compiled or not, to the same values."""
    from gs_map_share import entropy, jit

    rng = np.random.default_rng(seed)
    ctx = rng.integers(0, n_ctx, n)
    # contexts far apart (their own tables pay) or alike (one table is smaller)
    v = rng.laplace(0, 4, n).astype(np.int64) + (ctx * 1000 if apart else 0)
    data = _code(v, ctx=ctx, n_ctx=n_ctx)
    split, merged = Writer(), Writer()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(entropy, "CONTEXT_SLACK", -1.0)  # (the contexts' own tables, whatever they cost)
        entropy.encode_stream(split, v, True, int(data[1]), ctx=ctx, n_ctx=n_ctx)
    entropy.encode_stream(merged, v, True, int(data[1]))
    sizes = len(split.getvalue()), len(merged.getvalue())
    c_count = Reader(data[2:]).varint()
    if n >= entropy.MERGE_MAX:
        assert c_count == (n_ctx if apart else 1)
        if apart:
            assert data == split.getvalue()
        else:  # one table in two lanes, within the slack (and the second lane's state flush)
            assert data == merged.getvalue() and data[0] == 6
            assert sizes[1] <= (1 + entropy.CONTEXT_SLACK) * sizes[0] + 8
    else:
        assert len(data) == min(sizes) and (c_count == 1) == (sizes[1] <= sizes[0])
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            assert np.array_equal(_decode(data, n, ctx=ctx, n_ctx=n_ctx, int32=True), v)
            assert np.array_equal(_decode(data, n, ctx=ctx, n_ctx=n_ctx), v)


def test_one_table_is_taken_within_the_slack_of_the_contexts_entropy():
    """The merge decision against the entropies counted independently (bits of each context's
    symbols under its own frequencies, and of all under one table), over contexts from alike to far
    apart: one table exactly where it costs at most CONTEXT_SLACK more."""
    from gs_map_share import entropy

    def bits(sym):
        _, k = np.unique(sym, return_counts=True)
        return float(-(k * np.log2(k / k.sum())).sum())

    rng = np.random.default_rng(3)
    ctx = rng.integers(0, 2, 20000)
    seen = set()
    for shift in np.linspace(0, 4, 41):
        sym = np.clip(np.round(rng.laplace(0, 3, len(ctx)) + 8 + shift * ctx), 0, 31).astype(np.int64)
        split = bits(sym[ctx == 0]) + bits(sym[ctx == 1])
        want = bits(sym) <= (1 + entropy.CONTEXT_SLACK) * split
        assert entropy._one_table_will_do(sym, ctx, 2) == want
        seen.add((want, bits(sym) <= 1.03 * split))
    assert (False, True) in seen and (True, True) in seen  # cases on both sides of the slack


@pytest.mark.parametrize("signed", [True, False])
def test_long_context_streams_of_either_sign_round_trip(signed):
    """Long streams with contexts, signed or not (uint64 values), go through the one-table
    decision and back."""
    from gs_map_share import entropy

    rng = np.random.default_rng(5)
    n = 6000
    ctx = rng.integers(0, 3, n)
    v = rng.integers(-9 if signed else 0, 20, n).astype(np.int64 if signed else np.uint64)
    w = Writer()
    entropy.put_stream(w, v, signed=signed, ctx=ctx, n_ctx=3)
    out = entropy.decode_stream(Reader(w.getvalue()), n, signed=signed, ctx=ctx, n_ctx=3)
    assert np.array_equal(out, v)


def _bounded_sparse(rng, n, limit, signed):
    """A sparse SH-like column: |v| ≤ limit, gaps long enough to escape (≥ 64 at log2t 6)."""
    v = np.zeros(n, np.int64)
    pos = np.unique(np.concatenate([rng.choice(n, n // 20, replace=False), [0, 150, 400, n - 1]]))
    v[pos] = rng.integers(1, limit + 1, len(pos)) * (rng.choice([-1, 1], len(pos)) if signed else 1)
    return v


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("limit", [3, 200, (1 << 20)])
def test_bounded_int32_sparse_stream_equals_the_unbounded_decode(signed, limit):
    """A sparse stream read as int32 under ``limit`` (the SH columns: gaps and values then go
    through the int32 reader) gives the values of the unbounded uint64-path decode, escapes in
    both the gaps and the values included."""
    rng = np.random.default_rng(limit)
    v = _bounded_sparse(rng, 5000, limit, signed)
    v[[150, 400]] = [limit, -limit if signed else limit]  # the bound itself is allowed
    data = _sparse_bytes(*_sparse_parts(v, signed))
    want = _decode(data, len(v), signed)
    assert np.array_equal(want.astype(np.int64), v)
    out = np.zeros(len(v), np.int32)
    got = _decode(data, len(v), signed, int32=True, out=out, zeroed=True, limit=limit)
    assert got is out and np.array_equal(out, v)


def _sparse_parts(v, signed):
    pos = np.flatnonzero(v)
    gaps = np.diff(np.concatenate([[-1], pos])) - 1
    u = (np.abs(v[pos]) * 2 - (v[pos] < 0)) if signed else v[pos]  # zig-zag
    return len(pos), gaps, u - 1


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("case", ["one_over", "far_over", "gap_past_end"])
def test_bounded_int32_sparse_stream_refuses_what_is_outside(signed, case):
    """One value just past ``limit`` (signed: −(limit+1), the largest whose mapped form is still
    within the int32 reader's own bound 2 × limit), far past it, or a gap past the end: one
    DecodeError, whatever path reads it."""
    limit, n = 5, 300
    v = np.zeros(n, np.int64)
    v[[3, 100, 250]] = [1, 2, 3]
    k, gaps, mapped = _sparse_parts(v, signed)
    if case == "one_over":
        mapped[1] = 2 * limit if signed else limit  # −(limit+1) signed, limit+1 unsigned
    elif case == "far_over":
        mapped[1] = 1 << 40
    else:
        gaps[2] = n
    data = _sparse_bytes(k, gaps, mapped)
    if case != "gap_past_end":
        _decode(data, n, signed)  # well-formed without the bound
    with pytest.raises(DecodeError):
        _decode(data, n, signed, int32=True, out=np.zeros(n, np.int32), zeroed=True, limit=limit)


def test_bounded_int32_sparse_stream_takes_the_compiled_reader(monkeypatch):
    """The speed line: a bounded int32 sparse stream's escaped gaps go through the compiled
    escape reader, not the uint64 plain path (``_unpack_bits``), ~4× slower a call on a small
    SH 3 scene, where most coefficient columns are sparse."""
    from gs_map_share import entropy, jit

    if jit.kernels() is None:
        pytest.skip("numba is not here: the plain path is the only one")
    rng = np.random.default_rng(2)
    v = _bounded_sparse(rng, 5000, 7, True)
    data = _sparse_bytes(*_sparse_parts(v, True))

    def plain(*a, **k):
        raise AssertionError("uint64 plain path taken")

    monkeypatch.setattr(entropy, "_unpack_bits", plain)
    out = np.zeros(len(v), np.int32)
    _decode(data, len(v), True, int32=True, out=out, zeroed=True, limit=7)
    assert np.array_equal(out, v)
