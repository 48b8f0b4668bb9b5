"""The compiled table-driven ANS decoder against constriction, the format's reference reader: same
symbols for every stream constriction writes, same verdict for every stream it refuses, and the
same decoded maps end to end."""

from __future__ import annotations

import constriction
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_maps import synthetic_map

from gs_map_share import ans_decode, entropy, jit
from gs_map_share.quantize import QuantParams
from gs_map_share.snapshot import decode_map, encode_map

pytest.importorskip("numba")  # requirements.txt installs it; without it the decoder is constriction's
if jit.switched_off():
    pytest.skip("GS_MAP_SHARE_NUMBA=0: the compiled loops are switched off", allow_module_level=True)


def _reference(words, freq, m):
    """constriction's reading: (symbols, ended where it should) or None where it refuses the words."""
    model = constriction.stream.model.Categorical(freq / freq.sum(), perfect=False)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
    except ValueError:
        return None
    return coder.decode(model, m), coder.is_empty()


def _encode(symbols, freq):
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(
        symbols.astype(np.int32), constriction.stream.model.Categorical(freq / freq.sum(), perfect=False)
    )
    return coder.get_compressed()


def _check(words, freq, m):
    ref = _reference(words, freq, m)
    ours = ans_decode.decode_symbols(words, freq, m)
    assert ours is not None, "numba is installed: the compiled decoder must be in use"
    sym, err = ours
    if ref is None:
        assert err is not None and "zero word" in err
        return
    ref_sym, ended = ref
    np.testing.assert_array_equal(sym, ref_sym)
    assert (err is None) == ended


def test_the_compiled_decoder_is_used_when_numba_is_installed():
    assert jit.kernels() is not None


@settings(max_examples=300, deadline=None)
@given(
    a=st.integers(2, 320),
    n=st.integers(1, 3000),
    concentration=st.sampled_from([0.02, 0.3, 3.0]),
    scale=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_same_symbols_as_constriction(a, n, concentration, scale, seed):
    rng = np.random.default_rng(seed)
    sym = rng.choice(a, size=n, p=rng.dirichlet(np.full(a, concentration)))
    freq = np.bincount(sym, minlength=a) * scale  # tables need not sum to n (tables.py rescales)
    _check(_encode(sym, freq), freq, n)


@settings(max_examples=300, deadline=None)
@given(
    a=st.integers(2, 64),
    n=st.integers(1, 2000),
    seed=st.integers(0, 2**32 - 1),
    edit=st.sampled_from(["flip", "drop_last", "drop_first", "zero_last", "extra", "count"]),
)
def test_same_verdict_as_constriction_on_damaged_streams(a, n, seed, edit):
    rng = np.random.default_rng(seed)
    sym = rng.choice(a, size=n, p=rng.dirichlet(np.ones(a)))
    freq = np.bincount(sym, minlength=a)
    freq[freq == 0] = 1  # the table may name symbols that never occur; a damaged stream decodes them
    words = _encode(sym, freq).copy()
    m = n
    if len(words) == 0 and edit != "extra":  # a short stream may fit the coder's initial state
        edit = "count"
    if edit == "flip":
        k = int(rng.integers(len(words)))
        words[k] ^= np.uint32(1 << int(rng.integers(32)))
    elif edit == "drop_last":
        words = words[:-1]
    elif edit == "drop_first":
        words = words[1:]
    elif edit == "zero_last":
        words[-1] = 0
    elif edit == "extra":
        words = np.append(words, np.uint32(rng.integers(1, 2**32)))
    else:
        m = max(1, n + int(rng.integers(-3, 4)))
    _check(words, freq, m)


def test_quantized_cdf_gives_every_symbol_a_slot():
    freq = np.array([0, 1_000_000, 0, 3, 0], np.int64)
    cdf = jit.kernels().quantized_cdf(freq)
    assert cdf[0] == 0 and cdf[-1] == 1 << 24
    assert (np.diff(cdf.astype(np.int64)) >= 1).all()


def _lookup_by_bucket(cdf: np.ndarray, bits: int) -> list[int]:
    """The lookup table by its definition, one bucket at a time: the symbol holding the bucket's
    first quantile, with its left CDF and frequency when it covers the whole bucket, else flagged."""
    k = jit.kernels()
    width = 1 << (k.PRECISION - bits)
    cdf = cdf.astype(np.int64).tolist()
    out = []
    for b in range(1 << bits):
        start = b * width
        s = max(i for i in range(len(cdf) - 1) if cdf[i] <= start)
        if cdf[s + 1] - start >= width:
            out.append(s | cdf[s] << 9 | (cdf[s + 1] - cdf[s]) << 33)
        else:
            out.append(s | 1 << 63)
    return out


@pytest.mark.parametrize("bits", [8, 10, 12])  # the bucket counts _lut_shift gives (short streams: fewer)
@pytest.mark.parametrize("kind", ["random", "aligned", "one_big", "tiny_symbols"])
def test_lookup_table_is_the_per_bucket_definition(kind, bits):
    """The decoder's lookup table, filled symbol by symbol, is the one the per-bucket definition
    gives: symbols ending exactly on, just before and just after bucket boundaries, symbols inside
    one bucket, a symbol spanning almost all."""
    k = jit.kernels()
    width = 1 << (k.PRECISION - bits)
    rng = np.random.default_rng(len(kind))
    for _ in range(5):
        if kind == "random":
            cdf = k.quantized_cdf(rng.integers(1, 1000, int(rng.integers(2, 300))).astype(np.int64))
        else:
            if kind == "aligned":  # boundaries on bucket starts, and one quantile either side
                cuts = rng.choice(np.arange(1, 1 << bits), 40, replace=False) * width
                cuts = np.r_[cuts, cuts[:10] - 1, cuts[10:20] + 1]
            elif kind == "one_big":
                cuts = np.array([3, 5 * width + 7, (1 << k.PRECISION) - 2])
            else:  # many symbols of one or two quantiles inside the first buckets
                cuts = np.arange(1, 3 * width, 2)[:300]
            cdf = np.unique(np.r_[0, cuts, 1 << k.PRECISION]).astype(np.uint32)
        lut = np.zeros(1 << bits, np.uint64)
        k._lookup_table(cdf, lut, np.uint64(k.PRECISION - bits))
        assert lut.tolist() == _lookup_by_bucket(cdf, bits)


def test_decoded_maps_equal_constrictions_end_to_end(monkeypatch):
    gmap = synthetic_map(20_000, seed=3, sh_degree=2)
    data, _ = encode_map(gmap, QuantParams.from_quality(1), n_levels=3)
    fast = decode_map(data)
    monkeypatch.setattr(jit, "_kernels", False)  # the reference path: constriction decodes
    assert ans_decode.decode_symbols(np.zeros(1, np.uint32), np.ones(2), 1) is None
    ref = decode_map(data)
    for field in ("ids", "levels", "means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(fast, field), getattr(ref, field), err_msg=field)


def test_a_damaged_stream_is_one_decode_error_on_both_paths(monkeypatch):
    from gs_map_share.bitio import Reader, Writer
    from gs_map_share.errors import DecodeError

    w = Writer()
    entropy.encode_stream(w, np.arange(500) % 7, signed=False, log2t=4)
    data = bytearray(w.getvalue())
    data[-5] ^= 0x40  # inside the last ANS word
    for compiled in (jit.kernels(), False):
        monkeypatch.setattr(jit, "_kernels", compiled)
        with pytest.raises(DecodeError):
            r = Reader(bytes(data), "test")
            entropy.decode_stream(r, 500, signed=False)
            r.end()


def _decode_both(data: bytes, n: int, monkeypatch, **kw):
    """decode_stream with the compiled loops and with the plain paths: (values or the error) each."""
    from gs_map_share.bitio import Reader
    from gs_map_share.errors import DecodeError

    got = []
    for compiled in (jit.kernels(), False):
        monkeypatch.setattr(jit, "_kernels", compiled)
        try:
            r = Reader(data, "test")
            v = entropy.decode_stream(r, n, **kw)
            r.end()
            got.append((v.dtype, v.tolist()))
        except DecodeError:
            got.append("DecodeError")
    return got


@settings(max_examples=200, deadline=None)
@given(
    n=st.one_of(st.integers(1, 3000), st.integers(4090, 9000)),  # one lane, or two (mode 6)
    n_ctx=st.integers(2, 20),
    spread=st.sampled_from([3, 40, 5000]),
    signed=st.booleans(),
    int32=st.booleans(),
    shared=st.booleans(),
    damage=st.booleans(),
    limit=st.sampled_from([None, "largest - 1", 1 << 20]),
    seed=st.integers(0, 2**32 - 1),
)
def test_context_streams_decode_the_same_compiled_or_not(
    n, n_ctx, spread, signed, int32, shared, damage, limit, seed
):
    """Streams of several contexts (some empty, some with escapes, which int32 streams read in the
    symbols' pass; more contexts than the compiled decoder takes fall back): the same values
    either way, and a DecodeError either way when damaged or beyond ``limit``."""
    from gs_map_share.bitio import Writer

    rng = np.random.default_rng(seed)
    ctx = np.minimum(rng.geometric(0.3, n) - 1, n_ctx - 1)
    vals = rng.laplace(0, spread, n).astype(np.int64) * (ctx + 1)
    if not signed:
        vals = np.abs(vals)
    w = Writer()
    entropy.encode_stream(w, vals, signed, log2t=int(rng.integers(4, 9)), ctx=ctx, n_ctx=n_ctx)
    data = bytearray(w.getvalue())
    if damage:
        k = int(rng.integers(len(data)))
        data[k] ^= 1 << int(rng.integers(8))
    if limit == "largest - 1":  # the largest value refused, direct or escaped
        limit = int(np.abs(vals).max()) - 1
    kw = dict(signed=signed, int32=int32, n_ctx=n_ctx, limit=limit)
    with pytest.MonkeyPatch.context() as mp:
        fast, plain = _decode_both(
            bytes(data), n, mp, ctx=entropy.Groups(ctx, n_ctx) if shared else ctx, **kw
        )
    assert fast == plain
    if not damage:
        assert (
            fast == "DecodeError"
            if limit is not None and np.abs(vals).max() > limit
            else fast[1] == vals.tolist()
        )


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 2000),
    bits=st.sampled_from([5, 20, 31, 40, 63]),
    signed=st.booleans(),
    int32=st.booleans(),
    limit=st.sampled_from([None, 50, 1 << 20, (1 << 31) - 1]),
    damage=st.sampled_from([None, "flip", "cut", "extra"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_escaped_values_the_same_compiled_or_not(n, bits, signed, int32, limit, damage, seed):
    """Values with escapes (mantissas up to 63 bits, beyond int32, beyond a limit): the compiled
    one-pass patching gives the plain path's values, or the same DecodeError message when the
    stream is damaged (a flipped bit, a cut or an extended mantissa blob) or a value is refused."""
    from gs_map_share.bitio import Reader, Writer
    from gs_map_share.errors import DecodeError

    rng = np.random.default_rng(seed)
    mag = rng.integers(0, 1 << 62, n, dtype=np.int64) >> rng.integers(63 - bits, 63, n)
    vals = mag if not signed else np.where(rng.random(n) < 0.5, -mag, mag)
    w = Writer()
    entropy.encode_stream(w, vals, signed, log2t=int(rng.integers(2, 6)))
    data = w.getvalue()
    if damage == "flip":
        b = bytearray(data)
        b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        data = bytes(b)
    elif damage == "cut":
        data = data[: int(rng.integers(1, len(data)))]
    elif damage == "extra":
        data += b"\x00"
    got = []
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            try:
                r = Reader(data, "test")
                v = entropy.decode_stream(r, n, signed=signed, int32=int32, limit=limit)
                r.end()
                got.append((v.dtype, v.tolist()))
            except DecodeError as exc:
                got.append(str(exc))
    assert got[0] == got[1]


def test_mantissa_bytes_without_escapes_are_refused_either_way():
    """A table with escape symbols but none in the data: any mantissa byte is a fault on both paths."""
    from gs_map_share.bitio import Reader
    from gs_map_share.errors import DecodeError

    sym = np.array([0, 3, 1, 2], np.int32)
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            with pytest.raises(DecodeError, match="mantissa bytes where none are expected"):
                entropy._values(Reader(b"\x01\x00", "test"), sym, 4, 2, 8, True, True, None)
            v = entropy._values(Reader(b"\x00", "test"), sym, 4, 2, 8, True, True, None)
            assert v.tolist() == [0, -2, -1, 1]


@settings(max_examples=120, deadline=None)
@given(
    n=st.integers(4096, 12000),
    edit=st.sampled_from(["none", "flip", "zero_last", "cut", "swap_lanes"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_two_lane_streams_decode_the_same_compiled_or_not(n, edit, seed):
    """Mode 6 (two lanes a context): the compiled pair decoder gives constriction's values lane by
    lane, interleaved, and the same error message when a lane is damaged (a flipped bit, a zero
    last word, a cut stream, the lanes' word counts exchanged)."""
    from gs_map_share.bitio import Reader, Writer
    from gs_map_share.errors import DecodeError

    rng = np.random.default_rng(seed)
    vals = rng.laplace(0, 6, n).astype(np.int64)
    w = Writer()
    entropy.encode_stream(w, vals, True, log2t=5)
    data = bytearray(w.getvalue())
    assert data[0] == 6
    if edit == "flip":
        k = int(rng.integers(8, len(data)))
        data[k] ^= 1 << int(rng.integers(8))
    elif edit == "zero_last":
        r = Reader(bytes(data), "test")  # find lane 0's last word of the first context
        r.u8(), r.u8(), r.varint()
        a = r.varint()
        entropy.get_table(r, a)
        nw = r.varint()
        at = r.pos + 4 * nw - 4
        data[at : at + 4] = bytes(4)
    elif edit == "cut":
        data = data[: int(rng.integers(1, len(data)))]
    elif edit == "swap_lanes":
        r = Reader(bytes(data), "test")
        r.u8(), r.u8(), r.varint()
        a = r.varint()
        entropy.get_table(r, a)
        at = r.pos
        n0 = r.varint()
        lane0 = bytes(r.raw(4 * n0))
        n1 = r.varint()
        lane1 = bytes(r.raw(4 * n1))
        swapped = Writer()
        swapped.varint(n1)
        swapped.raw(lane1)
        swapped.varint(n0)
        swapped.raw(lane0)
        data = data[:at] + bytearray(swapped.getvalue()) + data[r.pos :]
    got = []
    with pytest.MonkeyPatch.context() as mp:
        for compiled in (jit.kernels(), False):
            mp.setattr(jit, "_kernels", compiled)
            try:
                r = Reader(bytes(data), "test")
                v = entropy.decode_stream(r, n, True)
                r.end()
                got.append(v.tolist())
            except DecodeError:
                got.append("DecodeError")
    assert got[0] == got[1]
    if edit == "none":
        assert got[0] == vals.tolist()
    elif edit == "zero_last":
        assert got[0] == "DecodeError"


def test_streams_with_contexts_stay_in_one_lane_and_refuse_two():
    """Two lanes are for streams of one table: an encoder codes a stream's tables in one lane
    (mode 2), and a decoder refuses mode 6 of several tables; one table for all the contexts may
    take two lanes (version 10)."""
    from gs_map_share.bitio import Reader, Writer
    from gs_map_share.errors import DecodeError

    n = 6000
    vals = np.arange(n) % 9 - 4
    ctx = np.arange(n) % 3
    w = Writer()
    entropy.encode_stream(w, vals, True, log2t=5, ctx=ctx, n_ctx=3)
    data = w.getvalue()
    assert data[0] == 2
    assert entropy.decode_stream(Reader(data), n, True, ctx=ctx, n_ctx=3).tolist() == vals.tolist()
    with pytest.raises(DecodeError, match="two-lane stream of 3 tables"):
        entropy.decode_stream(Reader(bytes([6]) + data[1:]), n, True, ctx=ctx, n_ctx=3)
    w = Writer()
    entropy.encode_stream(w, vals, True, log2t=5)  # one table, two lanes, read where contexts are
    assert w.getvalue()[0] == 6
    assert entropy.decode_stream(Reader(w.getvalue()), n, True, ctx=ctx, n_ctx=3).tolist() == vals.tolist()
