"""Integer streams, entropy coded with ``constriction``'s ANS coder.

One *stream* codes an array of integers whose length the decoder already knows (it follows from
structure decoded before). Values are mapped to symbols: small magnitudes ``u < T`` are their own
symbol, larger ones become an escape symbol naming their bit length, followed by raw mantissa bits
(exp-Golomb style). Symbols are coded with a static categorical model whose integer frequency table
travels in the stream, optionally one table per *context* (context = a small integer per value that
the decoder can compute from what it already decoded, e.g. a bucket of the parent's value).

Determinism: the model is built from integer frequencies only (frequency / total in float64 is an
exactly rounded IEEE operation, identical on every platform) and quantised by constriction's
fixed-point "leaky" categorical model (``perfect=False``), so encoder and decoder agree bit for bit.

Layout of one stream (all varints unsigned LEB128)::

    u8 mode           0 = empty, 1 = constant (varint u follows), 2 = coded
    -- mode 2 --
    u8 log2_T         direct-symbol bound T = 2**log2_T (1..256)
    varint contexts   C
    per context:      varint A (alphabet size, 0 = no values in this context),
                      ceil(A/8) bytes presence bitmap (bit i of byte i//8 = symbol i present),
                      varint frequency per present symbol,
                      varint n_words, n_words × u32 ANS words
    varint n_bytes, n_bytes mantissa bits (LSB first, values in stream order)
"""
from __future__ import annotations

import constriction
import numpy as np

from .bitio import Reader, Writer
from .errors import DecodeError

_FREQ_TOTAL = 1 << 16  # frequency tables are scaled to at most this total (compact, exact)
_MAX_ALPHABET = 256 + 64


def zigzag(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    u = np.asarray(u, dtype=np.uint64)
    return ((u >> np.uint64(1)).view(np.int64)) ^ -(u & np.uint64(1)).view(np.int64)


def bit_length(u: np.ndarray) -> np.ndarray:
    """Bit length of each uint64 (0 for 0), exact (no float rounding)."""
    x = np.asarray(u, dtype=np.uint64).copy()
    b = np.zeros(x.shape, np.int64)
    for s in (32, 16, 8, 4, 2, 1):
        m = x >= np.uint64(1 << s)
        b += m * s
        x = np.where(m, x >> np.uint64(s), x)
    return b + (x > 0)


def _symbols(u: np.ndarray, log2t: int):
    t = 1 << log2t
    esc = u >= np.uint64(t)
    sym = u.astype(np.int64, copy=True)
    nb = np.zeros(0, np.int64)
    mant = np.zeros(0, np.uint64)
    if esc.any():
        ue = u[esc]
        bl = bit_length(ue)
        sym[esc] = t + bl - (log2t + 1)
        nb = bl - 1
        mant = ue - (np.uint64(1) << (bl - 1).astype(np.uint64))
    return sym, esc, nb, mant


def _pack_bits(vals: np.ndarray, nbits: np.ndarray) -> bytes:
    if len(vals) == 0:
        return b""
    offs = np.concatenate([[0], np.cumsum(nbits)])
    bits = np.zeros(int(offs[-1]), np.uint8)
    for j in range(int(nbits.max())):
        m = nbits > j
        bits[offs[:-1][m] + j] = ((vals[m] >> np.uint64(j)) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits, bitorder="little").tobytes()


def _unpack_bits(buf, nbits: np.ndarray, what: str) -> np.ndarray:
    total = int(nbits.sum())
    if total > len(buf) * 8:
        raise DecodeError(f"{what}: mantissa needs {total} bits, stream holds {len(buf) * 8}")
    bits = np.unpackbits(np.frombuffer(buf, np.uint8), bitorder="little")[:total]
    offs = np.concatenate([[0], np.cumsum(nbits)])[:-1]
    vals = np.zeros(len(nbits), np.uint64)
    for j in range(int(nbits.max()) if len(nbits) else 0):
        m = nbits > j
        vals[m] |= bits[offs[m] + j].astype(np.uint64) << np.uint64(j)
    return vals


def _freq_table(sym: np.ndarray) -> np.ndarray:
    counts = np.bincount(sym)
    total = counts.sum()
    if total > _FREQ_TOTAL:
        f = (counts * _FREQ_TOTAL) // total
        f[(counts > 0) & (f == 0)] = 1
        return f
    return counts


def _model(freq: np.ndarray):
    return constriction.stream.model.Categorical(freq.astype(np.float64) / float(freq.sum()),
                                                 perfect=False)


def estimate_bits(values: np.ndarray, signed: bool = True, log2t: int = 6) -> float:
    """Approximate coded size in bits (entropy + mantissa + a table allowance), for choices."""
    if len(values) == 0:
        return 0.0
    u = zigzag(values) if signed else np.asarray(values, np.uint64)
    sym, esc, nb, _ = _symbols(u, log2t)
    c = np.bincount(sym)
    c = c[c > 0]
    p = c / c.sum()
    return float(-(c * np.log2(p)).sum() + nb.sum() + 24 * len(c))


def encode_stream(w: Writer, values, signed: bool = True, log2t: int = 6, ctx=None,
                  n_ctx: int = 1) -> None:
    """Code ``values`` (int64 if signed else uint64) into ``w``. ``ctx`` (int array, values in
    [0, n_ctx)) selects one frequency table per context."""
    values = np.asarray(values)
    n = len(values)
    if n == 0:
        w.u8(0)
        return
    u = zigzag(values) if signed else values.astype(np.uint64)
    if np.all(u == u[0]):
        w.u8(1)
        w.varint(int(u[0]))
        return
    sym, esc, nb, mant = _symbols(u, log2t)
    w.u8(2)
    w.u8(log2t)
    if ctx is None:
        ctx = np.zeros(n, np.int64)
        n_ctx = 1
    ctx = np.asarray(ctx, np.int64)
    w.varint(n_ctx)
    order = np.argsort(ctx, kind="stable")
    bounds = np.searchsorted(ctx[order], np.arange(n_ctx + 1))
    for c in range(n_ctx):
        s = sym[order[bounds[c]:bounds[c + 1]]]
        if len(s) == 0:
            w.varint(0)
            continue
        freq = _freq_table(s)
        a = len(freq)
        w.varint(a)
        present = freq > 0
        w.raw(np.packbits(present, bitorder="little").tobytes())
        for f in freq[present].tolist():
            w.varint(f)
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(s.astype(np.int32), _model(freq))
        words = coder.get_compressed()
        w.varint(len(words))
        w.raw(words.astype("<u4").tobytes())
    w.blob(_pack_bits(mant, nb))


def decode_stream(r: Reader, n: int, signed: bool = True, ctx=None, n_ctx: int = 1) -> np.ndarray:
    """Inverse of :func:`encode_stream`; ``n`` and ``ctx`` come from already-decoded structure."""
    what = r.what
    mode = r.u8()
    if mode == 0:
        if n:
            raise r.fail(f"empty stream where {n} values are expected")
        u = np.zeros(0, np.uint64)
    elif mode == 1:
        u = np.full(n, r.varint((1 << 64) - 1), np.uint64)
    elif mode == 2:
        if n == 0:
            raise r.fail("coded stream where no values are expected")
        log2t = r.u8()
        if log2t > 8:
            raise r.fail(f"direct-symbol bound 2**{log2t} too large")
        t = 1 << log2t
        c_count = r.varint(1 << 16)
        if ctx is None:
            ctx = np.zeros(n, np.int64)
            n_ctx = 1
        if c_count != n_ctx:
            raise r.fail(f"stream has {c_count} contexts, expected {n_ctx}")
        ctx = np.asarray(ctx, np.int64)
        order = np.argsort(ctx, kind="stable")
        bounds = np.searchsorted(ctx[order], np.arange(n_ctx + 1))
        sym = np.empty(n, np.int64)
        for c in range(n_ctx):
            m = int(bounds[c + 1] - bounds[c])
            a = r.varint(_MAX_ALPHABET)
            if a == 0:
                if m:
                    raise r.fail(f"context {c} has no table but {m} values")
                continue
            present = np.unpackbits(np.frombuffer(r.raw((a + 7) // 8), np.uint8), bitorder="little")[:a]
            k = int(present.sum())
            freq = np.zeros(a, np.int64)
            freq[present.astype(bool)] = [r.varint(_FREQ_TOTAL) for _ in range(k)]
            if freq.sum() <= 0:
                raise r.fail("frequency table sums to zero")
            nw = r.varint(r.remaining // 4)
            words = np.frombuffer(r.raw(4 * nw), "<u4").astype(np.uint32)
            if m == 0:
                raise r.fail(f"context {c} has a table but no values")
            try:
                coder = constriction.stream.stack.AnsCoder(words)
                s = coder.decode(_model(freq), m)
                ok = coder.is_empty()
            except (ValueError, RuntimeError, OverflowError) as exc:
                raise r.fail(f"entropy decoding failed: {exc}") from None
            if not ok:
                raise r.fail("entropy-coded data does not end where it should")
            sym[order[bounds[c]:bounds[c + 1]]] = s
        esc = sym >= t
        u = sym.astype(np.uint64)
        if esc.any():
            bl = sym[esc] - t + log2t + 1
            if bl.max() > 64:
                raise r.fail("escape symbol names more than 64 bits")
            mant = _unpack_bits(r.blob(), bl - 1, what)
            u[esc] = (np.uint64(1) << (bl - 1).astype(np.uint64)) | mant
        else:
            if r.varint(r.remaining) != 0:
                raise r.fail("mantissa bytes where none are expected")
    else:
        raise r.fail(f"unknown stream mode {mode}")
    if signed:
        return unzigzag(u)
    return u
