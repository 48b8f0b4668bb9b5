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

    u8 mode           0 = empty, 1 = constant (varint u follows), 2 = coded, 3 = sparse,
                      6 = coded in two lanes, 7 = plain
    -- mode 2 (and 6) --
    u8 log2_T         direct-symbol bound T = 2**log2_T (1..256)
    varint contexts   C (or 1 where the structure names several: one table for all)
    per context:      varint A (alphabet size, 0 = no values in this context),
                      the frequency table (see :mod:`.tables`),
                      varint n_words, n_words × u32 ANS words
                      (mode 6, one context only: twice, lane 0 then lane 1; value i of the
                      stream is coded by lane i % 2, each lane its own ANS coder)
    varint n_bytes, n_bytes mantissa bits (LSB first, values in stream order)
    -- mode 3 (no contexts; mostly-zero streams) --
    varint k          number of non-zero values (1..n)
    stream (mode 0..2) of k unsigned gaps: zeros before each non-zero value
    stream (mode 0..2) of k unsigned values u − 1 (u = zig-zag of a signed value)
    -- mode 7 (short streams, 1 ≤ n ≤ PLAIN_MAX) --
    n varints u (zig-zag of a signed value), no table
"""

from __future__ import annotations

import math
from itertools import accumulate

import constriction
import numpy as np

from . import ans_decode, jit
from .bitio import Reader, Writer, pack_bits, varints
from .errors import DecodeError
from .tables import _TABLE_ARRAYS, TABLE_BITS_PER_SYMBOL, get_table, put_table

DECODE_BITS_PER_STEP = 1 / 256  # see Stats.best: ≈ 0.1 % of a 4-bit symbol per search step
_FREQ_TOTAL = 1 << 16  # frequency tables are scaled to at most this total (compact, exact)
_MAX_ALPHABET = 256 + 64
# streams of one context at least this long are coded in two lanes (mode 6): the decoder runs
# the two coders' dependency chains side by side, ~1.8× faster, for one more state flush (≤ 8
# bytes). Streams of several contexts gain nothing from it: their decoder's states live in memory
# and consecutive values mostly belong to different coders already (measured: 5.7 → 6.0 ms on
# guitar's nine context streams)
LANES_MIN = 4096


def zigzag(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    u = np.asarray(u, dtype=np.uint64)
    return ((u >> np.uint64(1)).view(np.int64)) ^ -(u & np.uint64(1)).view(np.int64)


def bit_length(u: np.ndarray) -> np.ndarray:
    """Bit length of each uint64 (0 for 0), exact (no float rounding)."""
    x = np.asarray(u, dtype=np.uint64)
    if len(x) == 0 or int(x.max()) < (1 << 53):  # exact in float64: the exponent is the length
        return np.frexp(x.astype(np.float64))[1].astype(np.int64)
    x = x.copy()
    b = np.zeros(x.shape, np.int64)
    for s in (32, 16, 8, 4, 2, 1):
        m = x >= np.uint64(1 << s)
        b += m * s
        x = np.where(m, x >> np.uint64(s), x)
    return b + (x > 0)


def _symbols(u: np.ndarray, log2t: int):
    t = 1 << log2t
    esc = u >= t
    sym = u.astype(np.int64, copy=True)
    nb = np.zeros(0, np.int64)
    mant = np.zeros(0, np.uint64)
    if esc.any():
        ue = u[esc].astype(np.uint64)
        bl = bit_length(ue)
        sym[esc] = t + bl - (log2t + 1)
        nb = bl - 1
        mant = ue - (np.uint64(1) << (bl - 1).astype(np.uint64))
    return sym, esc, nb, mant


def _unpack_bits(buf, nbits: np.ndarray, what: str) -> np.ndarray:
    total = int(nbits.sum())
    if total > len(buf) * 8:
        raise DecodeError(f"{what}: mantissa needs {total} bits, stream holds {len(buf) * 8}")
    nbits = np.asarray(nbits, np.int64)
    offs = np.cumsum(nbits)
    offs -= nbits  # first bit of each value
    if len(nbits) and int(nbits.max()) <= 57:
        # each value lies within the 8 bytes from its first byte: one little-endian word per value,
        # taken from an unaligned uint64 view starting at every byte (one 8-byte gather per value)
        data = np.frombuffer(bytes(buf) + bytes(8), np.uint8)
        words = np.ndarray((len(data) - 7,), "<u8", data, 0, (1,))
        vals = np.take(words, offs >> 3)
        vals >>= (offs & 7).view(np.uint64)
        mask = np.left_shift(1, nbits)
        mask -= 1
        vals &= mask.view(np.uint64)
        return vals
    bits = np.unpackbits(np.frombuffer(buf, np.uint8), bitorder="little")[:total]
    vals = np.zeros(len(nbits), np.uint64)
    for j in range(int(nbits.max()) if len(nbits) else 0):
        m = nbits > j
        vals[m] |= bits[offs[m] + j].astype(np.uint64) << np.uint64(j)
    return vals


def _freq_table(sym: np.ndarray) -> np.ndarray:
    return _scaled(np.bincount(sym))


def _scaled(counts: np.ndarray) -> np.ndarray:
    """:func:`_freq_table` of the symbols counted ``counts`` (``np.bincount``'s: last one > 0)."""
    total = counts.sum()
    if total > _FREQ_TOTAL:
        f = (counts * _FREQ_TOTAL) // total
        f[(counts > 0) & (f == 0)] = 1
        return f
    return counts


def _model(freq: np.ndarray):
    return constriction.stream.model.Categorical(freq.astype(np.float64) / float(freq.sum()), perfect=False)


class Stats:
    """Value statistics computed once per array, from which the coded size for any direct-symbol
    bound T is estimated (used to choose T, raw-vs-residual and dense-vs-sparse without coding
    twice). ``zeros`` adds that many zero values not present in ``values`` (sparse streams)."""

    _SBL = None

    def __init__(self, values, signed: bool = True, zeros: int = 0, keep_u: bool = True) -> None:
        v = values if values.__class__ is np.ndarray else np.asarray(values)
        n = len(v)
        self.n = n + zeros
        self._by_bound: np.ndarray | None = None
        self._best: tuple[int, float] | None = None
        if Stats._SBL is None:
            Stats._SBL = bit_length(np.arange(256, dtype=np.uint64))
        self._sbl = Stats._SBL
        kernels = jit.kernels() if n and v.dtype.kind == "i" else None
        if kernels is not None:  # the counts, every bound's estimate and the best in one call
            both = np.zeros(257 + 65, np.int64)  # (one allocation: small, then big_bl)
            u = np.empty(n if keep_u else 0, np.int64)
            by = np.empty(9)
            if v.dtype != np.int64 or not v.flags.c_contiguous:
                v = np.ascontiguousarray(v, np.int64)
            best = kernels.stream_stats(
                v,
                signed,
                zeros,
                both,
                u,
                self._sbl,
                float(TABLE_BITS_PER_SYMBOL),
                DECODE_BITS_PER_STEP * self.n,
                by,
            )
            if best >= 0:
                self.u = u if keep_u else None
                self.small, self.big_bl = both[:256], both[257:]
                self._by_bound = by
                self._best = best, float(by[best])
                return
        u = _zz(v) if signed else _as_u(v)
        self.u = u if keep_u else None
        if len(v):
            small = np.bincount(
                np.minimum(u, 256).view(np.int64) if u.dtype == np.uint64 else np.minimum(u, 256),
                minlength=257,
            )
        else:
            small = np.zeros(257, np.int64)
        small[0] += zeros
        n_big = int(small[256])
        self.small = small[:256]
        if n_big:
            big = u[u >= 256]
            self.big_bl = np.bincount(bit_length(big), minlength=65)
        else:
            self.big_bl = np.zeros(65, np.int64)

    @classmethod
    def of_counts(cls, n: int, small: np.ndarray, big_bl: np.ndarray, u: np.ndarray | None = None) -> Stats:
        """The Stats of ``n`` values counted elsewhere (``small`` 257 or 256 bins, ``big_bl`` 65),
        with their zig-zagged values ``u`` where kept: what the constructor counts, taken as given."""
        st = cls.__new__(cls)
        st.n = n
        st._by_bound = None
        st._best = None
        if Stats._SBL is None:
            Stats._SBL = bit_length(np.arange(256, dtype=np.uint64))
        st._sbl = Stats._SBL
        st.small, st.big_bl, st.u = small[:256], big_bl, u
        return st

    @property
    def max_small(self) -> int:
        """Largest value when all are < 256, else 256."""
        if self.big_bl.any():
            return 256
        nz = np.flatnonzero(self.small)
        return int(nz[-1]) if len(nz) else 0

    def bits(self, log2t: int) -> float:
        """Estimated coded size for the direct-symbol bound 2**log2t (0..8): symbols' entropy,
        escaped values' mantissa bits, TABLE_BITS_PER_SYMBOL a present symbol."""
        return float(self._bits_by_bound()[log2t])

    def _bits_by_bound(self) -> np.ndarray:
        """:meth:`bits` for every bound at once (bounds are powers of two, so the escapes of bound
        2**k are exactly the values of bit length > k): n·log2 n − Σ c·log2 c over the symbols'
        counts c, from prefix sums over the direct symbols and suffix sums over the escapes' bit
        lengths — the same figure as counting each bound's symbols, in one pass."""
        if self._by_bound is not None:
            return self._by_bound
        n = self.n
        if n == 0:
            self._by_bound = np.zeros(9)
            return self._by_bound
        kernels = jit.kernels()
        if kernels is not None:
            out = np.empty(9)
            kernels.bits_by_bound(self.small, self.big_bl, self._sbl, n, float(TABLE_BITS_PER_SYMBOL), out)
            self._by_bound = out
            return out
        small = self.small.astype(np.float64)
        esc = self.big_bl.astype(np.float64)  # escapes by bit length: every value of that length
        esc[:9] += np.bincount(self._sbl, small, minlength=9)[:9]
        direct = np.concatenate([[0.0], np.cumsum(_clog(small))])  # Σ over symbols < t, t = 0..256
        direct_n = np.concatenate([[0], np.cumsum(small > 0)])
        tail = np.cumsum((_clog(esc))[::-1])[::-1]  # Σ over bit lengths ≥ b
        tail_n = np.cumsum((esc > 0)[::-1])[::-1]
        mant = np.cumsum((esc * np.maximum(np.arange(65) - 1, 0))[::-1])[::-1]
        out = np.empty(9)
        for k in range(9):
            t, b = 1 << k, k + 1  # direct symbols 0..t−1, escapes of bit length ≥ k + 1
            present = direct_n[t] + tail_n[b]
            out[k] = n * math.log2(n) - direct[t] - tail[b] + mant[b] + TABLE_BITS_PER_SYMBOL * present
        self._by_bound = out
        return out

    def best(self) -> tuple[int, float]:
        """(log2 T, estimated bits) of the cheapest bound, where a value's decoding time counts a
        little: each doubling of T adds a binary-search step per symbol to the entropy decoder
        (≈ 2.5 ns), charged as DECODE_BITS_PER_STEP bits, so near-ties go to the smaller
        alphabet. The bits returned are the estimate alone."""
        if self._best is not None:  # (asked several times of one Stats: counted once)
            return self._best
        by = self._bits_by_bound().tolist()
        step = DECODE_BITS_PER_STEP * self.n
        best = 4
        for t in (5, 6, 7, 8):  # the first of equal costs, as min() takes
            if by[t] + step * t < by[best] + step * best:
                best = t
        self._best = best, by[best]
        return self._best


def _zz(v: np.ndarray) -> np.ndarray:
    """Zig-zag of signed values: int64 (non-negative) when |v| < 2**62, else uint64."""
    v = np.asarray(v)
    if v.dtype != np.int64:
        v = v.astype(np.int64)
    if len(v) and (int(v.max()) >= (1 << 62) or int(v.min()) < -(1 << 62)):
        return zigzag(v)
    u = v << 1
    u ^= v >> 63
    return u


def _as_u(v: np.ndarray) -> np.ndarray:
    """Unsigned values as int64 when they fit (cheaper to count), else uint64."""
    v = np.asarray(v)
    if v.dtype.kind == "i" and (len(v) == 0 or int(v.min()) >= 0):
        return v.astype(np.int64, copy=False)
    if v.dtype == np.uint64 and (len(v) == 0 or int(v.max()) < (1 << 63)):
        return v.view(np.int64)
    return v.astype(np.uint64)


# streams of several contexts shorter than this may take one table for all; no longer than
# LANES_MIN, so a merged stream stays in one lane (a decoder refuses two lanes where contexts are named)
MERGE_MAX = LANES_MIN
PLAIN = 7  # stream mode: n varints of the (zig-zag) values, no table: short streams
PLAIN_MAX = 64  # (a table and the ANS state flush cost more bytes, and decoding time, below this)
SPARSE_MIN = 256  # streams shorter than this are always coded dense
SPARSE_SLACK = 1.01  # sparse is taken up to 1 % above the dense estimate: it decodes several times faster
# ... and up to this many bits more per value it lets the decoder skip (n − 2k: zeros are never
# entropy-decoded there). A mostly-zero 1M-value stream decodes in ~1 ms sparse, ~15 ms dense; at
# 1/64 bit per skipped value, such a stream may grow by at most ~2 KB for that (in practice tens of
# bytes: both estimates are close whenever k ≪ n)
SPARSE_BITS_PER_SKIP = 1 / 64


def put_stream(
    w: Writer, values, signed: bool = True, ctx=None, n_ctx: int = 1, stats: Stats | None = None
) -> None:
    """Code ``values`` choosing the direct-symbol bound and, for mostly-zero streams without
    contexts, dense (mode 2) or sparse (mode 3: positions of the non-zero values as gaps, then the
    values), whichever is estimated smaller. Sparse streams also decode much faster: zeros cost
    nothing there. Short streams take the smallest of their coded forms (one table for all
    contexts below MERGE_MAX values) and plain varints (mode 7, at most PLAIN_MAX values).
    ``stats``: ``Stats(values, signed)`` (with ``u``) where the caller has it already."""
    values = np.asarray(values)
    n = len(values)
    if ctx is None and n >= SPARSE_MIN:
        split = _sparse_split(values, signed)
        if split is not None:
            if split[0] and put_sparse(w, n, *split):
                return
            k = 0  # (dense: as below)
        else:
            k = int(np.count_nonzero(values))
        if 0 < k <= n // 2:
            idx = np.flatnonzero(values)
            nz = values[idx]
            dense = Stats(nz, signed, zeros=n - k, keep_u=False)  # the dense estimate, from the non-zeros
            gaps = np.diff(idx, prepend=-1)
            gaps -= 1
            mapped = (_zz(nz) if signed else _as_u(nz)) - 1
            sg, sv = Stats(gaps, False), Stats(mapped, False)
            if put_sparse(w, n, k, dense, gaps, mapped, sg, sv):
                return
    st = stats if stats is not None and stats.u is not None else Stats(values, signed)
    best = st.best()[0] if n > 64 else 6

    def coded(c=None, k: int = 1) -> bytes:
        out = Writer()
        encode_stream(out, values, signed, best, ctx=c, n_ctx=k, u=st.u)
        return out.getvalue()

    contexts = ctx is not None and n_ctx > 1
    if not (contexts and n < MERGE_MAX) and not 0 < n <= PLAIN_MAX:
        encode_stream(w, values, signed, best, ctx=ctx, n_ctx=n_ctx, u=st.u)
        return
    # a short stream (PLAIN_MAX < MERGE_MAX): one table for all contexts where that is no larger
    # (a table can cost more than the contexts save, and the decoder a table's work), and plain
    # varints where smaller still. Both coded forms from one preparation where compiled
    forms = _compiled_forms(values, signed, best, ctx, n_ctx, st.u, contexts)
    if forms is not None:
        data = forms[0] if forms[1] is None or len(forms[0]) < len(forms[1]) else forms[1]
    else:
        data = coded(ctx, n_ctx)
        if contexts:
            merged = coded()
            data = merged if len(merged) <= len(data) else data
    if 0 < n <= PLAIN_MAX and data[0] not in (0, 1):  # (a constant stays mode 1)
        plain = bytes((PLAIN,)) + varints((_zz(values) if signed else _as_u(values)).tolist())
        data = plain if len(plain) <= len(data) else data
    w.raw(data)


def put_sparse(
    w: Writer, n: int, k: int, dense: Stats, gaps: np.ndarray, mapped: np.ndarray, sg: Stats, sv: Stats
) -> bool:
    """:func:`put_stream`'s sparse form of a stream of ``n`` values, ``k`` (0 < k ≤ n // 2) of
    them non-zero, where it is estimated smaller than the dense one (``dense``: its Stats): their
    gaps and zig-zag values less one (``mapped``), with their Stats (``u`` kept). Whether written."""
    bg, bv = sg.best()[1], sv.best()[1]
    if bg + bv + 16 > SPARSE_SLACK * dense.best()[1] + SPARSE_BITS_PER_SKIP * (n - 2 * k):
        return False
    w.u8(3)
    w.varint(k)
    encode_stream(w, gaps, False, sg.best()[0], u=sg.u)
    encode_stream(w, mapped, False, sv.best()[0], u=sv.u)
    return True


def _sparse_split(values: np.ndarray, signed: bool):
    """The sparse form's parts in one compiled pass (:func:`.kernels.sparse_split`): (k, the dense
    estimate's Stats, gaps, mapped values, their Stats), k = 0 where the stream is all zeros or
    more than half non-zero (dense); None where not compiled (the numpy path then splits)."""
    kernels = jit.kernels()
    if kernels is None or values.dtype not in (np.int32, np.int64) or values.ndim != 1:
        return None
    n = len(values)
    cap = n // 2
    gaps, mapped = np.empty(cap, np.int64), np.empty(cap, np.int64)
    cnt = np.zeros((3, 257), np.int64)
    big = np.zeros((3, 65), np.int64)
    k = kernels.sparse_split(values, signed, gaps, mapped, cnt[0], big[0], cnt[1], big[1], cnt[2], big[2])
    if k == -2:
        return None
    if k <= 0:
        return 0, None, None, None, None, None
    cnt[0, 0] += n - k
    gaps, mapped = gaps[:k], mapped[:k]
    return (
        k,
        Stats.of_counts(n, cnt[0], big[0]),
        gaps,
        mapped,
        Stats.of_counts(k, cnt[1], big[1], gaps),
        Stats.of_counts(k, cnt[2], big[2], mapped),
    )


def encode_stream(
    w: Writer,
    values,
    signed: bool = True,
    log2t: int = 6,
    ctx=None,
    n_ctx: int = 1,
    u: np.ndarray | None = None,
) -> None:
    """Code ``values`` (int64 if signed else uint64) densely into ``w``. ``ctx`` (int array, values
    in [0, n_ctx)) selects one frequency table per context. ``u``: the zig-zagged values (int64
    non-negative or uint64), if already computed."""
    values = np.asarray(values)
    n = len(values)
    if n == 0:
        w.u8(0)
        return
    if u is None:
        u = _zz(values) if signed else _as_u(values)
    forms = _compiled_forms(values, signed, log2t, ctx, n_ctx, u, False)
    if forms is not None:
        w.raw(forms[0])
        return
    u0 = u[0]
    umax = u.max()
    if umax == u0 and u.min() == u0:
        w.u8(1)
        w.varint(int(u0))
        return
    t = 1 << log2t
    blob = b""
    kernels = jit.kernels()
    if int(umax) < t:  # no escapes (the common case): symbols are the values
        sym = u
    elif kernels is not None and u.dtype == np.int64:  # symbols and mantissa bits in one pass
        sym = np.empty(n, np.int64)
        buf = np.empty(8 * n + 8, np.uint8)
        blob = buf[: kernels.escape_symbols(u, log2t, sym, buf)].tobytes()
    else:
        sym, _, nb, mant = _symbols(u, log2t)
        blob = pack_bits(mant, nb)
    if ctx is None or (n >= LANES_MIN and _one_table_will_do(sym, ctx, n_ctx)):
        ctx, n_ctx = None, 1
    lanes = 2 if n >= LANES_MIN and n_ctx == 1 else 1
    w.u8(6 if lanes == 2 else 2)
    w.u8(log2t)
    w.varint(n_ctx)
    # the symbols as int32 in their lanes or context groups, and their counts, in one compiled pass
    # (else numpy's: a sort of the contexts, then per context a gather, a count, a conversion)
    got = _laid_out(kernels, sym, ctx, n_ctx, lanes, int(umax) + 1 if int(umax) < t else t + 64)
    if got is not None:
        laid, bounds, counted = got
    elif n_ctx == 1:
        order, bounds = None, np.array([0, n])
    else:
        order, bounds = _group(ctx, n_ctx)
    for c in range(n_ctx):
        if got is not None:
            if n_ctx == 1:
                parts = [laid[lane, : (n - lane + lanes - 1) // lanes] for lane in range(lanes)]
            else:
                parts = [laid[bounds[c] : bounds[c + 1]]]
            m = int(bounds[c + 1] - bounds[c])
        else:
            s = sym if order is None else sym[order[bounds[c] : bounds[c + 1]]]
            parts = [(s if lanes == 1 else s[lane::2]).astype(np.int32) for lane in range(lanes)]
            m = len(s)
        if m == 0:
            w.varint(0)
            continue
        if got is not None:
            nz = np.flatnonzero(counted[c])
            freq = _scaled(counted[c, : nz[-1] + 1])
        else:
            freq = _freq_table(s)
        if len(freq) < 2:  # constriction's categorical needs two symbols at least
            freq = np.append(freq, 0)
        w.varint(len(freq))
        freq = put_table(w, freq, m)
        if got is not None and kernels is not None:  # constriction's coder, compiled (the same words)
            rows = laid if n_ctx == 1 else laid[None, bounds[c] : bounds[c + 1]]
            lens = np.array([len(p) for p in parts], np.int64)
            words, nw = np.empty((len(parts), int(lens[0]) + 2), np.uint32), np.empty(len(parts), np.int64)
            kernels.ans_encode(rows, lens, kernels.quantized_cdf(freq), words, nw)
            for lane in range(len(parts)):
                w.varint(int(nw[lane]))
                w.raw(np.asarray(words[lane, : nw[lane]], "<u4").tobytes())
            continue
        model = _model(freq)
        for part in parts:
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(part, model)
            words = coder.get_compressed()
            w.varint(len(words))
            w.raw(np.asarray(words, "<u4").tobytes())
    w.blob(blob)


_NO_CTX = np.zeros(0, np.int64)
_UNCOUNTED = np.full(1, -1, np.int64)


def _compiled_forms(values, signed: bool, log2t: int, ctx, n_ctx: int, u, merged: bool):
    """:func:`encode_stream`'s bytes of ``values`` (``u``: their zig-zagged values) by the
    compiled loops, and with ``merged`` (several contexts, n < LANES_MIN) also the same stream
    coded with one table for all contexts, from the same symbols: (bytes, merged bytes or None).
    None where the compiled loops do not take the stream (the plain path then codes it). One
    compiled call (:func:`.kernels.stream_body`) where no context choice is left to make (one
    context, or fewer than LANES_MIN values), else :func:`_compiled_forms_laid`."""
    kernels = jit.kernels()
    if kernels is None or u.dtype != np.int64:
        return None
    n = len(u)
    if n == 0:
        return b"\x00", None
    if ctx is not None and n_ctx > 1 and n >= LANES_MIN:
        return _compiled_forms_laid(kernels, log2t, ctx, n_ctx, u, merged)
    per = _UNCOUNTED
    if ctx is None or n_ctx == 1:
        raw, n_ctx = _NO_CTX, 1
    elif isinstance(ctx, Groups):
        raw, per = ctx.ctx, np.asarray(ctx.counts, np.int64)
        if len(per) != n_ctx or not n_ctx:
            return _compiled_forms_laid(kernels, log2t, ctx, n_ctx, u, merged)
    else:
        raw = np.ascontiguousarray(ctx, np.int64)
    if len(raw) != n and n_ctx > 1:
        return _compiled_forms_laid(kernels, log2t, ctx, n_ctx, u, merged)
    lanes = 2 if n >= LANES_MIN and n_ctx == 1 else 1
    a = (1 << log2t) + 64  # (the largest alphabet: every direct symbol and escape)
    room = _body_room(n_ctx, a, n, lanes)
    merged = merged and n_ctx > 1
    out = np.empty(room, np.uint8)
    out2 = np.empty(room if merged else 0, np.uint8)
    blob = np.empty(8 * n + 8, np.uint8)
    u = u if u.flags.c_contiguous else np.ascontiguousarray(u)
    status, size, size2, nb = kernels.stream_body(u, log2t, raw, per, n_ctx, lanes, merged, out, out2, blob)
    if status == 1:  # (a constant: mode 1, whatever the contexts)
        return b"\x01" + varints((int(u[0]),)), None
    if status:
        return _compiled_forms_laid(kernels, log2t, ctx, n_ctx, u, merged)
    tail = varints((nb,)) + blob[:nb].tobytes()
    data = _head(lanes, log2t, n_ctx) + out[:size].tobytes() + tail
    return data, bytes((2, log2t, 1)) + out2[:size2].tobytes() + tail if merged else None


def _body_room(n_ctx: int, a: int, n: int, lanes: int) -> int:
    """A bound on a compiled stream body's bytes (alphabet ``a``): per context ≤ 3 + 1 + 3 + the
    table's bytes, per lane ≤ 5 + 4 words more."""
    return n_ctx * (a * 28 // 8 + 24) + 4 * n + 16 * (n_ctx + lanes)


def _head(lanes: int, log2t: int, n_ctx: int) -> bytes:
    """A coded stream's header, as :func:`encode_stream` writes it: mode (6: two lanes), bound, contexts."""
    return bytes((6 if lanes == 2 else 2, log2t)) + varints((n_ctx,))


def _compiled_forms_laid(kernels, log2t: int, ctx, n_ctx: int, u, merged: bool):
    """:func:`_compiled_forms` in steps: the symbols, the choice of one table for a long stream of
    several contexts (:func:`_one_table_will_do`), their layout (:func:`_laid_out`), then the
    body in one call (:func:`.kernels.stream_tables`)."""
    n = len(u)
    u0 = u[0]
    umax = u.max()
    if umax == u0 and u.min() == u0:  # (a constant: mode 1, whatever the contexts)
        return (b"\x01" + varints((int(u0),)), None)
    t = 1 << log2t
    blob = b""
    if int(umax) < t:
        sym = u
        a = int(umax) + 1
    else:
        sym = np.empty(n, np.int64)
        buf = np.empty(8 * n + 8, np.uint8)
        blob = buf[: kernels.escape_symbols(u, log2t, sym, buf)].tobytes()
        a = t + 64
    if ctx is None or (n >= LANES_MIN and _one_table_will_do(sym, ctx, n_ctx)):
        ctx, n_ctx = None, 1
    lanes = 2 if n >= LANES_MIN and n_ctx == 1 else 1
    got = _laid_out(kernels, sym, ctx, n_ctx, lanes, a)
    if got is None:
        return None
    laid, bounds, counted = got
    tail = varints((len(blob),)) + blob
    room = _body_room(n_ctx, a, n, lanes)
    if n_ctx == 1:
        rows, lens = laid, np.array([(n - lane + lanes - 1) // lanes for lane in range(lanes)], np.int64)
    else:
        rows, lens = laid[None], np.zeros(1, np.int64)
    out = np.empty(room, np.uint8)
    size = kernels.stream_tables(rows, lens, bounds, counted, out)
    data = _head(lanes, log2t, n_ctx) + out[:size].tobytes() + tail
    if not merged or n_ctx == 1:
        return data, None
    one = counted.sum(axis=0)[None]
    size = kernels.stream_tables(
        sym.astype(np.int32)[None], np.array([n], np.int64), np.array([0, n], np.int64), one, out
    )
    return data, bytes((2, log2t, 1)) + out[:size].tobytes() + tail


def _laid_out(kernels, sym: np.ndarray, ctx, n_ctx: int, lanes: int, a: int):
    """:func:`encode_stream`'s symbols (every one below ``a``) laid out for the coder by the compiled
    loops: (``lanes`` × ⌈n / lanes⌉ int32 with one context, else int32 grouped by context), the
    groups' bounds, their counts (n_ctx × a); None where those loops do not take them."""
    if kernels is None or sym.dtype != np.int64 or n_ctx * a > (1 << 22):
        return None
    n = len(sym)
    counts = np.zeros((n_ctx, a), np.int64)
    if n_ctx == 1:
        laid = np.empty((lanes, (n + lanes - 1) // lanes), np.int32)
        kernels.lane_symbols(np.ascontiguousarray(sym), laid, counts[0])
        return laid, np.array([0, n]), counts
    raw = ctx.ctx if isinstance(ctx, Groups) else np.ascontiguousarray(ctx, np.int64)
    per = (
        ctx.counts
        if isinstance(ctx, Groups)
        else np.bincount(raw[(raw >= 0) & (raw < n_ctx)], minlength=n_ctx)
    )
    if len(per) != n_ctx:
        return None
    bounds = np.zeros(n_ctx + 1, np.int64)
    np.cumsum(per, out=bounds[1:])
    grouped = np.empty(n, np.int32)
    if int(bounds[-1]) != n or kernels.group_symbols(np.ascontiguousarray(sym), raw, bounds, grouped, counts):
        return None
    return grouped, bounds, counts


# a long stream of several contexts is coded with one table (in two lanes, which decode ~2× faster
# than the contexts' one each) when its symbols' entropy is at most this much above theirs, as
# SPARSE_SLACK buys speed: guitar in levels, quality 4 and 5, 23.3 → 22.6 and 24.2 → 23.5 ms for
# +0.004 and +0.003 B/G; at quality 2 every context saves more and stays (2 %: −3 ms at quality 4,
# but +0.07 B/G)
CONTEXT_SLACK = 0.01
ONE_TABLE_SAMPLE = 1 << 16


def _one_table_will_do(sym: np.ndarray, ctx, n_ctx: int) -> bool:
    """Whether ``sym`` (the stream's symbols) costs at most CONTEXT_SLACK more bits under one
    table than under one per context (estimated from the symbol counts: the escapes' mantissa
    bits are the same either way, the tables a few hundred bytes). Counted on every k-th value
    of a stream longer than ONE_TABLE_SAMPLE (playbot: 27 → 8 ms an encode; the counts' error
    there is well inside the slack)."""
    raw = ctx.ctx if isinstance(ctx, Groups) else np.asarray(ctx, np.int64)
    k = max(1, len(sym) // ONE_TABLE_SAMPLE)
    raw = raw[::k]
    sym = np.asarray(sym[::k], np.int64)  # (symbols < 320, whatever integer type they came in)
    a = int(sym.max()) + 1
    joint = np.bincount(raw * a + sym, minlength=n_ctx * a).reshape(n_ctx, a).astype(np.float64)

    def bits(counts):  # Σ f · log2(F / f) over each row
        f = np.where(counts > 0, counts, 1.0)
        total = counts.sum(axis=-1, keepdims=True)
        return float((counts * (np.log2(np.maximum(total, 1.0)) - np.log2(f))).sum())

    return bits(joint.sum(axis=0)) <= (1 + CONTEXT_SLACK) * bits(joint)


def _clog(c: np.ndarray) -> np.ndarray:
    """c · log2 c for counts ``c`` (float64; 0 where c = 0) with the C library's log2, as the
    compiled sums (``kernels.bits_by_bound``) take it: numpy's own log2 differs from it in the
    last bit for some integers (26, 52, 104, … in numpy 1.26's vector loops; from 1621 in numpy
    2.4), and the two paths must estimate the same floats to choose the same bytes. At most 322
    counts a stream."""
    out = np.zeros(len(c))
    for i in np.flatnonzero(c > 0):
        out[i] = c[i] * math.log2(c[i])
    return out


class Groups:
    """A stream's contexts, maybe shared by several streams: the values' contexts and counts, and
    their grouping (:func:`_group`, a sort) made once, when a stream first needs it (the compiled
    decoder does not)."""

    def __init__(self, ctx, n_ctx: int, counts: np.ndarray | None = None) -> None:
        """``counts``: the values per context, where the caller counted them (and made every
        context lie in 0..n_ctx − 1)."""
        self.n_ctx = n_ctx
        self.ctx = np.ascontiguousarray(ctx, np.int64)  # as the compiled decoder takes them
        self.counts = _counts(self.ctx, n_ctx) if counts is None else counts
        self._grouped: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def grouped(self) -> tuple[np.ndarray, np.ndarray]:
        if self._grouped is None:
            self._grouped = _group(self.ctx, self.n_ctx)
        return self._grouped


_EXTREMES_TYPES = (np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.uint8), np.dtype(np.int8))


def extremes(a: np.ndarray) -> tuple[int, int]:
    """(min, max) of a non-empty integer array as Python ints: one compiled pass
    (:func:`.kernels.extremes`) for the int32/int64/uint8/int8 arrays the decoder checks (a
    small scene's decode checks ~50 of them), numpy's ``min`` and ``max`` otherwise."""
    kernels = jit.kernels()
    if kernels is not None and a.size and a.dtype in _EXTREMES_TYPES and a.flags.c_contiguous:
        lo, hi = kernels.extremes(a if a.ndim == 1 else a.reshape(-1))
        return int(lo), int(hi)
    hi = int(a.max())  # (max first: an empty array's error names the maximum, as before)
    return int(a.min()), hi


def _counts(ctx, n_ctx: int) -> np.ndarray:
    """Values per context; every context must lie in 0..n_ctx − 1 (the decoder derives them)."""
    if isinstance(ctx, Groups):
        return ctx.counts
    ctx = np.asarray(ctx)
    if len(ctx):
        lo, hi = extremes(ctx)
        if lo < 0 or hi >= n_ctx:
            raise DecodeError(f"context outside 0..{n_ctx - 1}")
    return np.bincount(ctx, minlength=n_ctx)


def _group(ctx, n_ctx: int):
    """Stable order grouping values by context, and the group bounds."""
    if isinstance(ctx, Groups):
        return ctx.grouped
    ctx = np.asarray(ctx)
    small = ctx.astype(np.uint8 if n_ctx <= 256 else np.int64)  # radix sort for small contexts
    order = np.argsort(small, kind="stable")
    bounds = np.searchsorted(small[order], np.arange(n_ctx + 1))
    return order, bounds


def decode_stream(
    r: Reader,
    n: int,
    signed: bool = True,
    ctx=None,
    n_ctx: int = 1,
    int32: bool = False,
    out: np.ndarray | None = None,
    zeroed: bool = False,
    limit: int | None = None,
    _nested: bool = False,
) -> np.ndarray:
    """Inverse of :func:`encode_stream` / :func:`put_stream`; ``n`` and ``ctx`` come from
    already-decoded structure (``ctx`` may be a :class:`Groups` of it, shared by several streams). With ``int32`` the values must fit in int32 (else
    :class:`DecodeError`) and come back as int32; ``out`` (int32, length n, with ``int32``)
    receives them instead of a new array; ``zeroed``: ``out`` holds zeros already (constant-zero
    and sparse streams then write only their non-zero values). ``limit``: every |value| must be at
    most this (else :class:`DecodeError`), checked on what the stream's structure does not already
    bound (the constant, the sparse values, the escaped values), so a whole-array scan is rare."""
    v = _decode(r, n, signed, ctx, n_ctx, int32, _nested, out if int32 else None, zeroed, limit)
    if out is None or v is out:
        return v
    out[...] = v
    return out


_I32_MAX = (1 << 31) - 1


def _over(r: Reader, v: np.ndarray, limit: int | None) -> None:
    if limit is not None and len(v) and (int(v.max()) > limit or int(v.min()) < -limit):
        raise r.fail(f"value beyond ±{limit}")


def _no_mantissa(r: Reader) -> None:
    """The mantissa blob of a stream without escaped values: empty."""
    if r.varint(r.remaining) != 0:
        raise r.fail("mantissa bytes where none are expected")


def _check_direct_limit(r: Reader, v: np.ndarray, a: int, signed: bool, limit: int | None) -> None:
    """Direct symbols s < a have |value| ≤ a // 2 (signed) or < a: scan ``v`` for ``limit`` only
    when that does not already bound it."""
    if limit is not None and (a // 2 if signed else a - 1) > limit:
        _over(r, v, limit)


def _mantissa_words(r: Reader) -> tuple[np.ndarray, int]:
    """The mantissa blob as little-endian uint64 words with a zero word after the last bits (as
    the compiled escape readers take it), and its length in bits."""
    blob = r.blob()
    words = np.zeros(len(blob) // 8 + 2, np.uint64)
    words.view(np.uint8)[: len(blob)] = np.frombuffer(blob, np.uint8)
    return words, 8 * len(blob)


def _values(
    r: Reader,
    sym: np.ndarray,
    t: int,
    log2t: int,
    max_a: int,
    signed: bool,
    int32: bool,
    out: np.ndarray | None,
    limit: int | None = None,
) -> np.ndarray:
    """Values of a coded stream's symbols (int32, < ``max_a`` ≤ 320, owned by the caller): direct
    symbols by table lookup (into ``out`` when given), then the escaped ones (rare) patched in from
    their mantissa bits. Reads the mantissa blob. Compiled in one pass where numba is there
    (:func:`.kernels.escaped_values`); on a fault this plain path runs again to name it."""
    kernels = jit.kernels() if max_a > t and (signed or int32) else None
    if kernels is not None:
        start = r.pos
        words, have = _mantissa_words(r)
        dest = out if (out is not None and int32) else np.empty(len(sym), np.int32 if int32 else np.int64)
        lim = -1 if limit is None else limit
        if kernels.escaped_values(sym, t, log2t, words, have, signed, lim, dest) == 0:
            return dest
        r.pos = start
    esc = np.flatnonzero(sym >= t) if max_a > t else None
    if esc is None or len(esc) == 0:
        _no_mantissa(r)
        esc = None
    else:
        bl = sym[esc].astype(np.int64) - (t - log2t - 1)
        if bl.max() > 64:
            raise r.fail("escape symbol names more than 64 bits")
        mant = _unpack_bits(r.blob(), bl - 1, r.what)
        u_esc = (np.uint64(1) << (bl - 1).astype(np.uint64)) | mant
    # every symbol is unzigzagged (escape symbols too: they are overwritten below); arithmetic on
    # the int32 symbols is ~2.5× cheaper than a table lookup
    if signed:
        s = sym if int32 else sym.astype(np.int64)
        v = out if (out is not None and int32) else np.empty(len(s), s.dtype)
        np.right_shift(s, 1, out=v)
        low = s & 1
        np.negative(low, out=low)
        v ^= low
    elif int32:
        if out is not None:
            np.copyto(out, sym)
        v = sym if out is None else out
    else:
        v = sym.astype(np.uint64)
    if esc is not None:
        ve = unzigzag(u_esc) if signed else u_esc
        if int32 and (int(ve.max()) > _I32_MAX or (signed and int(ve.min()) < -_I32_MAX - 1)):
            raise r.fail("value outside the int32 range")
        _over(r, ve, limit)
        v[esc] = ve
    _check_direct_limit(r, v, min(max_a, t), signed, limit)
    return v


def _decode(
    r: Reader,
    n: int,
    signed: bool,
    ctx,
    n_ctx: int,
    int32: bool,
    nested: bool,
    out: np.ndarray | None = None,
    zeroed: bool = False,
    limit: int | None = None,
) -> np.ndarray:
    """``out``, when given, may receive the values (then it is returned)."""
    if int32 and 0 < n <= ONE_CALL_MAX:
        v = _coded_compiled(r, n, signed, ctx, n_ctx, out, limit)
        if v is not None:
            return v
    mode = r.u8()
    if mode == 0:
        if n:
            raise r.fail(f"empty stream where {n} values are expected")
        return np.zeros(0, np.int32 if int32 else (np.int64 if signed else np.uint64))
    if mode == 1:  # a constant: in Python ints (numpy's per-call costs are most of a small scene's)
        u0 = r.varint((1 << 64) - 1)
        v0 = (u0 >> 1) ^ -(u0 & 1) if signed else u0
        if int32 and not -_I32_MAX - 1 <= v0 <= _I32_MAX:
            raise r.fail("value outside the int32 range")
        if n and limit is not None and not -limit <= v0 <= limit:
            raise r.fail(f"value beyond ±{limit}")
        if out is not None:
            if not (zeroed and v0 == 0):
                out.fill(v0)
            return out
        v = np.empty(n, np.int32 if int32 else (np.int64 if signed else np.uint64))
        v.fill(v0)  # (np.full: ~1 µs more, in Python)
        return v
    if mode == PLAIN:
        if not 0 < n <= PLAIN_MAX:
            raise r.fail(f"plain stream of {n} values (1..{PLAIN_MAX} allowed)")
        return _decode_plain(r, n, signed, int32, out, limit)
    if mode == 3:
        if nested or ctx is not None:
            raise r.fail("sparse stream not allowed here")
        return _decode_sparse(r, n, signed, int32, out if zeroed else None, limit)
    if mode not in (2, 6):
        raise r.fail(f"unknown stream mode {mode}")
    lanes = 2 if mode == 6 else 1
    if n == 0:
        raise r.fail("coded stream where no values are expected")
    log2t = r.u8()
    if log2t > 8:
        raise r.fail(f"direct-symbol bound 2**{log2t} too large")
    t = 1 << log2t
    c_count = r.varint(1 << 16)
    if lanes == 2 and c_count != 1:
        raise r.fail(f"two-lane stream of {c_count} tables")
    if ctx is None or c_count == 1:  # (version 7: one table may serve all contexts; 10: in two lanes)
        ctx, n_ctx = None, 1
    if c_count != n_ctx:
        raise r.fail(f"stream has {c_count} contexts, expected {n_ctx}")
    counts = [n] if n_ctx == 1 else _counts(ctx, n_ctx)
    tables = []  # (context, values, frequencies, [ANS words of each lane]) of the contexts that have values
    max_a = 0
    for c in range(n_ctx):
        m = int(counts[c])
        a = r.varint(_MAX_ALPHABET)
        if a == 0:
            if m:
                raise r.fail(f"context {c} has no table but {m} values")
            continue
        if a < 2:
            raise r.fail("alphabet of one symbol")
        max_a = max(max_a, a)
        freq = get_table(r, a)
        words = []
        for _ in range(lanes):
            nw = r.varint(r.remaining // 4)
            words.append(np.frombuffer(r.raw(4 * nw), "<u4").astype(np.uint32))
        if m == 0:
            raise r.fail(f"context {c} has a table but no values")
        tables.append((c, m, freq, words))
    direct = max_a <= t and int32  # no escapes: the values are the (unzigzagged) symbols
    dest = out if direct else None
    if n_ctx == 1:
        _, m, freq, words = tables[0]
        sym = _ans_decode(r, words, freq, m, dest, zigzag=direct and signed)
    else:
        v = _context_values(r, ctx, n_ctx, n, tables, t, log2t, max_a, signed, int32, out, limit)
        if v is not None:
            return v
        sym = _ans_decode_contexts(r, ctx, n_ctx, n, tables, dest, zigzag=direct and signed)
    if not direct:
        return _values(r, sym, t, log2t, max_a, signed, int32, out, limit)
    _no_mantissa(r)
    _check_direct_limit(r, sym, max_a, signed, limit)
    return sym


MAX_COMPILED_CONTEXTS = 16  # the compiled decoder holds a 32 KB lookup table per context
_NO_CTX = np.zeros(0, np.int64)
# streams longer than this take the step-by-step reader: their fixed costs do not matter, and the
# one call read playbot's 500 k-value streams slower (decode 241 -> 250 ms; its byte-wise copies)
ONE_CALL_MAX = 1 << 17


def reader_bytes(r: Reader) -> np.ndarray:
    """``r``'s chunk as a uint8 array for the compiled readers: made once a reader (kept on it)."""
    u8 = r.__dict__.get("_u8")
    if u8 is None:
        u8 = r.__dict__["_u8"] = np.frombuffer(r.data, np.uint8)
    return u8


def _coded_compiled(
    r: Reader, n: int, signed: bool, ctx, n_ctx: int, out: np.ndarray | None, limit: int | None
) -> np.ndarray | None:
    """The int32 values of a coded stream (mode 2 or 6) read by one compiled call
    (:func:`.kernels.coded_stream`: header, tables, words, symbols, escapes, limit), the reader
    moved past it; None (the reader where it was) where that call does not take the stream or
    refuses it: the steps below then read it and name the fault. A small scene's decode is
    mostly such streams' fixed costs (~15 µs of Python and numpy calls each; 30–150 a scene)."""
    data, p = r.data, r.pos
    if p >= len(data) or data[p] not in (2, 6) or (limit is not None and not 0 <= limit < 1 << 62):
        return None
    kernels = jit.kernels()
    if kernels is None:
        return None
    u8 = reader_bytes(r)
    if ctx is None or n_ctx == 1:
        ctx, n_ctx = _NO_CTX, 1
    else:
        ctx = ctx.ctx if isinstance(ctx, Groups) else np.ascontiguousarray(ctx, np.int64)
    dest = out
    if dest is None or dest.dtype != np.int32 or not dest.flags.c_contiguous or len(dest) != n:
        dest = np.empty(n, np.int32)
    end = kernels.coded_stream(
        u8,
        p,
        len(u8),
        signed,
        ctx,
        n_ctx,
        -1 if limit is None else limit,
        *_TABLE_ARRAYS,
        _MAX_ALPHABET,
        dest,
    )
    if end < 0:
        return None
    r.pos = end
    if out is not None and dest is not out:
        out[...] = dest
        return out
    return dest


def _compiled_contexts(n_ctx: int, tables: list):
    """:mod:`.kernels` where its context decoder takes this stream, else None."""
    kernels = jit.kernels() if n_ctx <= MAX_COMPILED_CONTEXTS else None
    if kernels is not None and max(len(f) for _, _, f, _ in tables) > kernels.MAX_SYMBOLS:
        return None
    return kernels


def _run_contexts(
    r: Reader, kernels, ctx, n_ctx: int, tables: list, out: np.ndarray, zigzag: bool, esc: tuple
) -> int:
    """:func:`.kernels.ans_decode_contexts` over ``tables`` into ``out`` (``esc``: its escape
    arguments t, log2t, mantissa words, their bits, limit); an ANS fault raises its verdict."""
    raw = np.ascontiguousarray(ctx.ctx if isinstance(ctx, Groups) else ctx, np.int64)
    words = [np.zeros(0, np.uint32)] * n_ctx
    freqs = [np.zeros(0, np.int64)] * n_ctx
    for c, _, freq, (w,) in tables:
        words[c], freqs[c] = w, freq
    status = np.zeros(n_ctx, np.int64)
    code = kernels.ans_decode_contexts(
        raw,
        np.concatenate(words),
        np.array(list(accumulate(len(w) for w in words)), np.int64),  # (a short list: no numpy cumsum)
        np.concatenate(freqs).astype(np.int64),
        np.array(list(accumulate(len(f) for f in freqs)), np.int64),
        out,
        zigzag,
        status,
        *esc,
    )
    if status.any():
        raise r.fail(ans_decode.VERDICTS[int(status[np.flatnonzero(status)[0]])])
    return int(code)


_NO_ESCAPES = (1 << 62, 0, np.zeros(2, np.uint64), 0, -1)  # t beyond every symbol: none escaped


def _context_values(
    r: Reader,
    ctx,
    n_ctx: int,
    n: int,
    tables: list,
    t: int,
    log2t: int,
    max_a: int,
    signed: bool,
    int32: bool,
    out: np.ndarray | None,
    limit: int | None,
) -> np.ndarray | None:
    """The int32 values of a stream of several contexts (into ``out`` if given), symbols and
    escapes in one compiled pass; reads the mantissa blob. None (the reader where it was) when
    the compiled decoder does not take the stream, or to let the plain path name an escape fault."""
    kernels = _compiled_contexts(n_ctx, tables) if int32 else None
    if kernels is None:
        return None
    start = r.pos
    escaped = max_a > t
    words, have = _mantissa_words(r) if escaped else (_NO_ESCAPES[2], 0)
    v = out if out is not None else np.empty(n, np.int32)
    lim = -1 if limit is None else limit
    if _run_contexts(r, kernels, ctx, n_ctx, tables, v, signed, (t, log2t, words, have, lim)) != 0:
        r.pos = start
        return None
    if not escaped:
        _no_mantissa(r)
    _check_direct_limit(r, v, min(max_a, t), signed, limit)
    return v


def _ans_decode_contexts(
    r: Reader, ctx, n_ctx: int, n: int, tables: list, out: np.ndarray | None, zigzag: bool
) -> np.ndarray:
    """The symbols of a stream of several contexts, in value order (int32, into ``out`` if given,
    unzigzagged with ``zigzag``): the compiled decoder takes each value from its context's coder
    in one pass; without it, constriction decodes each context and the values are scattered back
    by the contexts' grouping."""
    kernels = _compiled_contexts(n_ctx, tables)
    sym = out if out is not None else np.empty(n, np.int32)
    if kernels is not None:
        _run_contexts(r, kernels, ctx, n_ctx, tables, sym, zigzag, _NO_ESCAPES)
        return sym
    order, bounds = _group(ctx, n_ctx)
    for c, m, freq, words in tables:
        sym[order[bounds[c] : bounds[c + 1]]] = _ans_decode(r, words, freq, m, zigzag=zigzag)
    return sym


def _ans_decode(
    r: Reader,
    words: list,
    freq: np.ndarray,
    m: int,
    out: np.ndarray | None = None,
    zigzag: bool = False,
) -> np.ndarray:
    """``m`` symbols (int32) of one context's ANS words (one array per lane: with two, lane 0
    codes the even values), into ``out`` if given, unzigzagged with ``zigzag``: the compiled
    table-driven decoder when numba is there (:mod:`.ans_decode`, same symbols and verdicts),
    else constriction's own."""
    if len(words) == 2:
        split = len(words[0])
        fast = ans_decode.decode_symbols(np.concatenate(words), freq, m, out, zigzag, split=split)
        if fast is None:  # constriction, lane by lane
            s = out if out is not None else np.empty(m, np.int32)
            s[0::2] = _ans_decode(r, words[:1], freq, (m + 1) // 2, zigzag=zigzag)
            s[1::2] = _ans_decode(r, words[1:], freq, m // 2, zigzag=zigzag)
            return s
    else:
        fast = ans_decode.decode_symbols(words[0], freq, m, out, zigzag)
    if fast is not None:
        s, err = fast
        if err is not None:
            raise r.fail(err)
        return s
    try:
        coder = constriction.stream.stack.AnsCoder(words[0])
        s = coder.decode(_model(freq), m)
        ok = coder.is_empty()
    except (ValueError, RuntimeError, OverflowError) as exc:
        raise r.fail(f"entropy decoding failed: {exc}") from None
    if not ok:
        raise r.fail("entropy-coded data does not end where it should")
    if zigzag:
        s = (s >> 1) ^ -(s & 1)
    if out is not None:
        np.copyto(out, s)
        return out
    return s


def _decode_sparse(
    r: Reader, n: int, signed: bool, int32: bool, out: np.ndarray | None = None, limit: int | None = None
) -> np.ndarray:
    """Mode 3: ``varint k`` non-zero values, a stream of k gaps (zeros before each), a stream of
    the k values mapped to ``u − 1`` (u = zig-zag for signed streams)."""
    k = r.varint(n)
    if k == 0:
        raise r.fail("sparse stream without values")
    # gaps below n, and the values of a bounded int32 stream (u < 2 × limit), read as int32 with
    # that bound: the compiled escape reader then takes them (a uint64 stream's plain path costs
    # ~4× as much a call: most of a small scene's SH 3 decode, where most coefficients are sparse)
    small = n <= _I32_MAX
    gaps = _decode(r, k, False, None, 1, small, True, limit=n - 1 if small else None)
    if int(gaps.max()) >= n:
        raise r.fail("sparse stream gap beyond its length")
    pos = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if int(pos[-1]) >= n:
        raise r.fail(f"sparse stream positions run past its {n} values")
    if int32 and limit is not None and 2 * limit < _I32_MAX:
        u = _decode(r, k, False, None, 1, True, True, limit=2 * limit).astype(np.int64) + 1
        vals = ((u >> 1) ^ -(u & 1)) if signed else u
        _over(r, vals, limit)
        vals = vals.astype(np.int32)
    else:
        u = _decode(r, k, False, None, 1, False, True)
        if int(u.max()) >= (1 << 64) - 1:
            raise r.fail("sparse stream value out of range")
        vals = _finish(r, u.astype(np.uint64) + np.uint64(1), signed, int32)
        _over(r, vals, limit)
    if out is None or out.dtype != vals.dtype:
        out = np.zeros(n, vals.dtype)
    out[pos] = vals  # ``out`` given: it holds zeros already
    return out


def _decode_plain(
    r: Reader, n: int, signed: bool, int32: bool, out: np.ndarray | None, limit: int | None
) -> np.ndarray:
    """Mode 7: ``n`` varints of the (zig-zag) values, in plain Python: for so few values, numpy's
    per-call costs would be most of the time."""
    u = [r.varint((1 << 64) - 1) for _ in range(n)]
    v = [(x >> 1) ^ -(x & 1) for x in u] if signed else u
    lo, hi = min(v), max(v)
    if int32 and (hi > _I32_MAX or lo < -_I32_MAX - 1):
        raise r.fail("value outside the int32 range")
    if limit is not None and (hi > limit or lo < -limit):
        raise r.fail(f"value beyond ±{limit}")
    a = np.array(v, np.int32 if int32 else (np.int64 if signed else np.uint64))
    if out is not None:
        out[...] = a
        return out
    return a


def _finish(r: Reader, u: np.ndarray, signed: bool, int32: bool) -> np.ndarray:
    v = unzigzag(u) if signed else u
    if int32:
        if len(v) and (v.max() > np.iinfo(np.int32).max or (signed and v.min() < np.iinfo(np.int32).min)):
            raise r.fail("value outside the int32 range")
        return v.astype(np.int32)
    return v
