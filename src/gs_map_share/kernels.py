"""The codec's scalar loops, compiled with numba (imported only through :func:`.jit.kernels`).

Each has a plain path beside it that gives the same result (see :mod:`.jit`). Decoder:
``ans_decode`` and ``ans_decode_pair`` (two lanes) beside constriction's decoder (:mod:`.ans_decode`),
``read_table_entries`` beside ``tables._read_entries_py``, ``escaped_values`` beside
``entropy._values``, ``dequantize_rotations`` beside its :mod:`.quantize` namesake,
``descend`` beside the numpy path of ``octree.descend``,
``gather_column`` and ``gather_combo`` beside ``section._Parent``'s numpy gathers,
``faint_rescale`` (and the encoder's ``faint_rescale_wide``) beside ``section._on_faint``,
``phase_contexts`` beside ``phases.contexts``. Encoder: ``canonical_axes``, ``attribute_lattices``
and ``sh_codes`` (:mod:`.quantize`), ``unique_rows`` (:mod:`.palette`), ``morton``,
``leaf_moments`` and ``parent_level`` (:mod:`.octree`), ``stable_argsort`` (``section``'s octree
order), ``stream_counts`` and ``bits_by_bound``
(``entropy.Stats``), ``sparse_split`` (``entropy.put_stream``'s sparse form), ``lane_symbols`` and ``group_symbols``
(``entropy.encode_stream``'s symbols in lanes or context groups) and ``ans_encode`` (constriction's
ANS coder, two lanes at once), ``coefficient_counts``
(``section._put_sh_coefficient``'s estimates), ``column_counts`` (the SH palette's), ``rows_nonzero_counts`` and ``rows_sparse_fill``
(``section``'s sparse SH streams from the rows), ``escape_symbols`` (``entropy._symbols`` with ``bitio.pack_bits``),
``pack_bits`` (:mod:`.bitio`) and ``table_precision`` and ``table_blob`` (``tables.put_table``)
beside their numpy paths.
Module-level functions, so numba's on-disk cache (``cache=True``) serves later processes (where numba
finds a writable place for it: :func:`_njit`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

try:  # LLVM's count of leading zeros, as numba exposes it (not a public API: a loop without it)
    from numba.cpython.unsafe.numbers import leading_zeros as _leading_zeros
except ImportError:  # pragma: no cover - numba 0.57-0.68 have it
    _leading_zeros = None  # type: ignore[assignment]

PRECISION = 24  # constriction's DefaultContiguousCategoricalEntropyModel
LUT_BITS = 12  # quantile buckets of the ANS lookup table (12 measured best of 12..15)
MAX_SYMBOLS = 512  # a lookup entry holds the symbol in 9 bits (entropy's alphabets stop at 320)
_FLAG = np.uint64(1) << np.uint64(63)
_MASK = np.uint64((1 << PRECISION) - 1)
_LOW = np.uint64(1) << np.uint64(32)  # the state holds at least one word above its low 32 bits


def _njit(**options):
    """numba's ``njit`` with its on-disk cache where numba can place one. Where it cannot (the
    package installed read-only and no writable user cache folder: a service user without a home),
    numba's ``cache=True`` raises RuntimeError as the function is decorated; the loop is then
    compiled for this process only, which gives the same code, at the compile time of each start."""

    def decorate(fn):
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function …: no locator available for file …"
            return njit(**options)(fn)

    return decorate


@_njit(nogil=True)
def quantized_cdf(freq):
    """constriction's fast quantisation of ``freq / sum(freq)`` (``Categorical(p,
    perfect=False)``): the left CDF of symbol i is ``floor(c_i * scale) + i``, c_i the running
    float64 sum of the probabilities before i, ``scale = (2**24 − A) / sum(p)`` (the same
    sequential sums as constriction's fold): every symbol gets at least one slot. uint32, A + 1."""
    a = len(freq)
    total = 0
    for i in range(a):
        total += freq[i]
    p = np.empty(a, np.float64)
    for i in range(a):
        p[i] = np.float64(freq[i]) / np.float64(total)
    norm = 0.0
    for i in range(a):
        norm += p[i]
    scale = np.float64((1 << PRECISION) - a) / norm
    cdf = np.empty(a + 1, np.uint32)
    c = 0.0
    for i in range(a):
        cdf[i] = np.uint32(np.uint64(c * scale) + np.uint64(i))  # truncation, as Rust's `as u32`
        c += p[i]
    cdf[a] = np.uint32(1 << PRECISION)
    return cdf


@_njit(nogil=True)
def _lookup_table(cdf, lut, shift):
    """Per quantile bucket (the top 12 of the 24 bits): ``symbol | left << 9 | frequency << 33``
    when one symbol covers the whole bucket (one load decodes it), else the flag bit 63 and the
    symbol holding the bucket's first quantile (a short search from there). Filled symbol by
    symbol, each bucket once (~8× faster than a search per bucket: a short stream's table costs
    about 1 µs, not 9)."""
    for s in range(len(cdf) - 1):
        lo, hi = np.int64(cdf[s]), np.int64(cdf[s + 1])
        first = (lo + (1 << shift) - 1) >> shift  # the first bucket starting inside [lo, hi)
        last = hi >> shift  # the bucket holding hi: the ones before it lie inside whole
        if first < last:
            e = np.uint64(s) | (np.uint64(lo) << np.uint64(9)) | (np.uint64(hi - lo) << np.uint64(33))
            for b in range(first, last):
                lut[b] = e
        if first <= last and (last << shift) < hi:  # a bucket starting inside, ending past hi
            lut[last] = np.uint64(s) | _FLAG


@_njit(nogil=True, inline="always")
def _lut_shift(n):
    """Quantiles per lookup bucket (log2) for a stream of ``n`` symbols: 2**LUT_BITS buckets
    (32 KB) for long streams; a short one's table, filled per stream, is most of its cost, so
    fewer (the table only speeds the search: the symbols are the same at any size)."""
    bits = LUT_BITS if n > 2048 else (10 if n > 256 else 8)
    return np.uint64(PRECISION - bits)


@_njit(nogil=True)
def _initial_state(words, lo, hi):
    """constriction's AnsCoder(words[lo:hi]): words are read from the end until the state holds
    more than one; (state, position of the next word to read, the last word was zero)."""
    pos = hi
    state = np.uint64(0)
    if pos > lo:
        pos -= 1
        if words[pos] == 0:
            return state, pos, True
        state = np.uint64(words[pos])
        while pos > lo:
            pos -= 1
            state = (state << np.uint64(32)) | np.uint64(words[pos])
            if state >= _LOW:
                break
    return state, pos, False


@_njit(nogil=True, inline="always")
def _step(state, cdf, lut, shift):
    """One symbol off ``state``: (symbol, the state before refilling); ``lut`` of buckets of
    2**``shift`` quantiles (:func:`_lut_shift`)."""
    q = state & _MASK
    e = lut[q >> shift]
    s = np.int64(e & np.uint64(511))
    if e & _FLAG:
        while np.uint64(cdf[s + 1]) <= q:
            s += 1
        left = np.uint64(cdf[s])
        f = np.uint64(cdf[s + 1]) - left
    else:
        left = (e >> np.uint64(9)) & _MASK
        f = e >> np.uint64(33)
    return s, (state >> np.uint64(PRECISION)) * f + (q - left)


@_njit(nogil=True)
def ans_decode(words, freq, out, zigzag):
    """Decode len(out) symbols (unzigzagged with ``zigzag``); returns 0 (ended where it should),
    1 (data left over), 2 (the last word is zero: constriction refuses it)."""
    cdf = quantized_cdf(freq)
    shift = _lut_shift(len(out))
    lut = np.empty(1 << (PRECISION - shift), np.uint64)
    _lookup_table(cdf, lut, shift)
    state, pos, zero = _initial_state(words, 0, len(words))
    if zero:
        return 2
    for i in range(len(out)):
        s, state = _step(state, cdf, lut, shift)
        if state < _LOW and pos > 0:  # take the next word (from the end) when the state ran low
            pos -= 1
            state = (state << np.uint64(32)) | np.uint64(words[pos])
        out[i] = (s >> 1) ^ -(s & 1) if zigzag else s
    return 0 if state == 0 else 1


@_njit(nogil=True)
def ans_decode_pair(words, split, freq, out, zigzag, status):
    """Two lanes (stream mode 6, one context): value i comes from lane i % 2, lane 0's words
    ``words[:split]``, lane 1's ``words[split:]``, one table. The two states' chains are
    independent, so the processor overlaps them (~1.8× :func:`ans_decode`; the refills are
    written out: a helper returning (state, pos), even inlined, made it as slow as one lane).
    ``status[l]`` as :func:`ans_decode`'s return, per lane."""
    cdf = quantized_cdf(freq)
    shift = _lut_shift(len(out))
    lut = np.empty(1 << (PRECISION - shift), np.uint64)
    _lookup_table(cdf, lut, shift)
    s0, p0, z0 = _initial_state(words, 0, split)
    s1, p1, z1 = _initial_state(words, split, len(words))
    status[0] = 2 if z0 else 0
    status[1] = 2 if z1 else 0
    if z0 or z1:
        return
    n = len(out)
    for i in range(0, n - 1, 2):
        a, s0 = _step(s0, cdf, lut, shift)
        b, s1 = _step(s1, cdf, lut, shift)
        if s0 < _LOW and p0 > 0:
            p0 -= 1
            s0 = (s0 << np.uint64(32)) | np.uint64(words[p0])
        if s1 < _LOW and p1 > split:
            p1 -= 1
            s1 = (s1 << np.uint64(32)) | np.uint64(words[p1])
        out[i] = (a >> 1) ^ -(a & 1) if zigzag else a
        out[i + 1] = (b >> 1) ^ -(b & 1) if zigzag else b
    if n & 1:
        a, s0 = _step(s0, cdf, lut, shift)
        if s0 < _LOW and p0 > 0:
            p0 -= 1
            s0 = (s0 << np.uint64(32)) | np.uint64(words[p0])
        out[n - 1] = (a >> 1) ^ -(a & 1) if zigzag else a
    status[0] = 0 if s0 == 0 else 1
    status[1] = 0 if s1 == 0 else 1


@_njit(nogil=True)
def ans_decode_contexts(
    ctx, words, word_ends, freqs, freq_ends, out, zigzag, status, t, log2t, mant, have, limit
):
    """A stream of several contexts, each its own ANS data (``words[word_ends[c-1]:word_ends[c]]``)
    and table (``freqs`` likewise), decoded in value order: value i comes from context ctx[i]'s
    coder, so no grouping sort and no scatter. Symbols below ``t`` are their own value (zig-zag
    mapped with ``zigzag``); from ``t`` on, escapes as :func:`escaped_values` reads them (from
    ``mant``, ``have`` bits; ``limit`` < 0: none), in the same pass: the escape work overlaps the
    coders' dependency chains instead of taking a second pass (~20% faster on guitar's escaped
    channels). ``status[c]`` as :func:`ans_decode`'s return; returns 0, or 1 where an escape is
    wrong (the caller lets the plain path name it)."""
    n_ctx = len(word_ends)
    width = 0
    for c in range(n_ctx):
        width = max(width, freq_ends[c] - (freq_ends[c - 1] if c else 0))
    cdfs = np.zeros((n_ctx, width + 1), np.uint32)
    shift = _lut_shift(len(out))
    luts = np.empty((n_ctx, 1 << (PRECISION - shift)), np.uint64)
    states = np.zeros(n_ctx, np.uint64)
    pos = np.zeros(n_ctx, np.int64)
    lo = np.zeros(n_ctx, np.int64)
    for c in range(n_ctx):
        f0 = freq_ends[c - 1] if c else 0
        if freq_ends[c] == f0:  # a context without values has no table
            continue
        cdf = quantized_cdf(freqs[f0 : freq_ends[c]])
        cdfs[c, : len(cdf)] = cdf
        _lookup_table(cdf, luts[c], shift)
        lo[c] = word_ends[c - 1] if c else 0
        states[c], pos[c], zero = _initial_state(words, lo[c], word_ends[c])
        status[c] = 2 if zero else 0
    top = np.int64(np.iinfo(out.dtype).max)
    bottom = np.int64(np.iinfo(out.dtype).min)
    mp = np.int64(0)  # the next mantissa bit
    escapes = 0
    for i in range(len(out)):
        c = ctx[i]
        s, state = _step(states[c], cdfs[c], luts[c], shift)
        if state < _LOW and pos[c] > lo[c]:
            pos[c] -= 1
            state = (state << np.uint64(32)) | np.uint64(words[pos[c]])
        states[c] = state
        if s < t:
            out[i] = (s >> 1) ^ -(s & 1) if zigzag else s
        else:
            v, mp, bad = _escaped_value(s, t, log2t, mant, mp, have, zigzag, top, bottom, limit)
            if bad:
                return 1
            out[i] = v
            escapes += 1
    for c in range(n_ctx):
        if status[c] == 0 and states[c] != 0:
            status[c] = 1
    return 1 if escapes == 0 and have else 0  # (mantissa bytes where none are expected)


@_njit(nogil=True)
def read_table_entries(data, prefix, kl, mask, sh, base, nb, max_e, out):
    """The loop of ``tables._read_entries_py``, compiled: same entries, same (code, value); read
    from the table's ``nb`` bits in ``data``; and the entries' sum."""
    return _entries_at(data, 0, len(data), nb, prefix, kl, mask, sh, base, max_e, out)


@_njit(nogil=True)
def _entries_at(data, start, stop, nb, prefix, kl, mask, sh, base, max_e, out):
    """:func:`read_table_entries` over the ``nb`` bits of ``data[start:stop]``: (0, bits read,
    the entries' sum), or the Python reader's fault code (1 short, 2 a bad code, 3 a bad exponent
    with it) and zeros."""
    a = len(out)
    pos, e, i = 0, 0, 0
    one = np.uint64(1)
    while i < a:
        x = _window_to(data, start, stop, pos)
        if e == 0 and (x & one):  # a run of absent symbols (z = 0): one bit each
            run = 0
            while run < 64 and (x >> np.uint64(run)) & one:
                run += 1
            run = min(run, a - i)
            for j in range(i, i + run):
                out[j] = 0
            pos += run
            i += run
            continue
        t = prefix[np.int64(x & np.uint64(8191))]
        if t < 0:
            return (1 if pos + 7 > nb else 2), 0, 0
        adv = t & 15
        pos += adv
        if pos > nb:
            return 1, 0, 0
        e += (t >> 4) - 64
        if e < 0 or e > max_e:
            return 3, e, 0
        if e:
            pos += kl[e]
            if pos > nb:
                return 1, 0, 0
            out[i] = base[e] + (np.int64((x >> np.uint64(adv)) & np.uint64(mask[e])) << sh[e])
        else:
            out[i] = 0
        i += 1
    total = 0
    for j in range(a):
        total += out[j]
    return 0, pos, total


# -- a whole coded stream in one call (entropy._decode's modes 2 and 6, int32 values) -------------


@_njit(nogil=True, inline="always")
def _varint_at(data, p, end, limit):
    """The LEB128 varint at ``data[p]`` (bytes up to ``end``): (value, next position), or
    (−1, p) where ``bitio.Reader.varint`` would refuse it or it exceeds ``limit`` (< 2**56)."""
    v = np.int64(0)
    shift = 0
    while True:
        if shift > 63 or p >= end:
            return np.int64(-1), p
        b = np.int64(data[p])
        p += 1
        if shift >= 56 and (b & 0x7F):  # a value ≥ 2**56: beyond every limit asked here
            return np.int64(-1), p
        if shift < 56:
            v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    if v > limit:
        return np.int64(-1), p
    return v, p


@_njit(nogil=True, inline="always")
def _window_to(data, start, stop, pos):
    """The 64 bits from bit ``pos`` of ``data[start:stop]`` on, zeros past ``stop``."""
    b = start + (pos >> 3)
    x = np.uint64(0)
    for k in range(8):
        if b + k < stop:
            x |= np.uint64(data[b + k]) << np.uint64(8 * k)
    return x >> np.uint64(pos & 7)


@_njit(nogil=True)
def _table_at(data, start, stop, prefix, kl, mask, sh, base, max_e, out):
    """:func:`read_table_entries` over the table blob ``data[start:stop]`` in place: True where
    it reads exactly the blob's bytes and sums above zero (what ``tables.get_table`` accepts)."""
    code, pos, total = _entries_at(
        data, start, stop, 8 * (stop - start), prefix, kl, mask, sh, base, max_e, out
    )
    return code == 0 and (pos + 7) // 8 == stop - start and total > 0


@_njit(nogil=True)
def coded_stream(data, p, end, signed, ctx, n_ctx, limit, prefix, rebuild, max_alphabet, out):
    """``entropy._decode`` of a coded stream (mode 2 or 6) of len(out) int32 values starting at
    ``data[p]`` (the chunk's bytes up to ``end``), in one call: header, frequency tables (as
    ``tables.get_table``), ANS words, the symbols (:func:`ans_decode`, :func:`ans_decode_pair` or,
    with ``n_ctx`` > 1 contexts ``ctx``, :func:`ans_decode_contexts`), escapes and the ``limit``
    (< 0: none) checks. Returns the position after the stream, or −1 wherever the Python path may
    refuse the data or take a path other than these (it then runs from ``p`` and names the fault);
    every read is bounded by ``end`` and every allocation by the bytes there. ``rebuild[p]``:
    ``tables._REBUILD_ARRAYS[p]``'s kl, mask, sh, base rows."""
    n = len(out)
    if p >= end or n == 0:
        return -1
    mode = data[p]
    p += 1
    if mode != 2 and mode != 6:
        return -1
    lanes = 2 if mode == 6 else 1
    if p >= end:
        return -1
    log2t = np.int64(data[p])
    p += 1
    if log2t > 8:
        return -1
    t = np.int64(1) << log2t
    c_count, p = _varint_at(data, p, end, 1 << 16)
    if c_count < 1 or (lanes == 2 and c_count != 1):
        return -1
    if c_count == 1:
        n_ctx = 1
    if c_count != n_ctx or n_ctx > 16:
        return -1
    counts = np.zeros(n_ctx, np.int64)
    if n_ctx == 1:
        counts[0] = n
    else:
        if len(ctx) != n:
            return -1
        for i in range(n):
            c = ctx[i]
            if c < 0 or c >= n_ctx:
                return -1
            counts[c] += 1
    # first pass over the tables: where each context's table and words lie
    t_start = np.zeros(n_ctx, np.int64)
    t_stop = np.zeros(n_ctx, np.int64)
    t_prec = np.zeros(n_ctx, np.int64)
    alpha = np.zeros(n_ctx, np.int64)
    w_start = np.zeros((n_ctx, 2), np.int64)
    w_count = np.zeros((n_ctx, 2), np.int64)
    max_a = 0
    n_words = 0
    n_freq = 0
    max_e = rebuild.shape[2] - 1
    for c in range(n_ctx):
        a, p = _varint_at(data, p, end, max_alphabet)
        if a < 0 or (a == 0 and counts[c] != 0) or a == 1:
            return -1
        if a == 0:
            continue
        if counts[c] == 0:
            return -1
        alpha[c] = a
        max_a = max(max_a, a)
        n_freq += a
        if p >= end:
            return -1
        prec = np.int64(data[p])
        p += 1
        if prec < 1 or prec > max_e:
            return -1
        nbytes, p = _varint_at(data, p, end, end - p)
        if nbytes < 0 or nbytes > end - p or nbytes > (a * (11 + max_e - 1) + 7) // 8:
            return -1
        t_prec[c] = prec
        t_start[c] = p
        t_stop[c] = p + nbytes
        p += nbytes
        for lane in range(lanes):
            nw, p = _varint_at(data, p, end, (end - p) // 4)
            if nw < 0 or 4 * nw > end - p:  # (the limit counted the varint's own bytes)
                return -1
            w_start[c, lane] = p
            w_count[c, lane] = nw
            n_words += nw
            p += 4 * nw
    # the tables and words
    freqs = np.zeros(n_freq, np.int64)
    freq_ends = np.zeros(n_ctx, np.int64)
    words = np.empty(n_words, np.uint32)
    word_ends = np.zeros(n_ctx, np.int64)
    f0 = 0
    k = 0
    split = 0
    for c in range(n_ctx):
        if alpha[c]:
            prec = t_prec[c]
            ok = _table_at(
                data, t_start[c], t_stop[c], prefix, rebuild[0, prec], rebuild[1, prec],
                rebuild[2, prec], rebuild[3, prec], max_e, freqs[f0 : f0 + alpha[c]],
            )  # fmt: skip
            if not ok:
                return -1
            f0 += alpha[c]
            for lane in range(lanes):
                q = w_start[c, lane]
                for j in range(w_count[c, lane]):
                    b = q + 4 * j
                    words[k] = (
                        np.uint32(data[b])
                        | (np.uint32(data[b + 1]) << np.uint32(8))
                        | (np.uint32(data[b + 2]) << np.uint32(16))
                        | (np.uint32(data[b + 3]) << np.uint32(24))
                    )
                    k += 1
                if lane == 0:
                    split = k
        freq_ends[c] = f0
        word_ends[c] = k
    direct = max_a <= t
    # the mantissa blob (escapes: as entropy._mantissa_words)
    m_len, p = _varint_at(data, p, end, end - p)
    if m_len < 0 or m_len > end - p or (direct and m_len != 0):  # (past the varint: what is left)
        return -1
    mant = np.zeros(m_len // 8 + 2, np.uint64)
    for j in range(m_len):
        mant[j >> 3] |= np.uint64(data[p + j]) << np.uint64(8 * (j & 7))
    have = 8 * m_len
    p += m_len
    if n_ctx > 1:
        status = np.zeros(n_ctx, np.int64)
        if ans_decode_contexts(
            ctx, words, word_ends, freqs, freq_ends, out, signed, status, t, log2t, mant, have, limit
        ):
            return -1
        for c in range(n_ctx):
            if status[c]:
                return -1
        bound = min(max_a, t)
    elif direct:
        if lanes == 2:
            status = np.zeros(2, np.int64)
            ans_decode_pair(words, split, freqs, out, signed, status)
            if status[0] or status[1]:
                return -1
        elif ans_decode(words, freqs, out, signed):
            return -1
        bound = max_a
    else:
        sym = np.empty(n, np.int32)
        if lanes == 2:
            status = np.zeros(2, np.int64)
            ans_decode_pair(words, split, freqs, sym, False, status)
            if status[0] or status[1]:
                return -1
        elif ans_decode(words, freqs, sym, False):
            return -1
        if escaped_values(sym, t, log2t, mant, have, signed, limit, out):
            return -1
        return p
    # entropy._check_direct_limit
    if limit >= 0 and ((bound // 2) if signed else bound - 1) > limit:
        for i in range(n):
            if out[i] > limit or out[i] < -limit:
                return -1
    return p


@_njit(nogil=True, inline="always")
def _compact(x):
    x &= np.uint64(0x1249249249249249)
    x = (x | (x >> np.uint64(2))) & np.uint64(0x10C30C30C30C30C3)
    x = (x | (x >> np.uint64(4))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x >> np.uint64(8))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x >> np.uint64(16))) & np.uint64(0x1F00000000FFFF)
    return (x | (x >> np.uint64(32))) & np.uint64(0x1FFFFF)


@_njit(nogil=True, inline="always")
def _spread(v):
    x = np.uint64(v) & np.uint64(0x1FFFFF)
    x = (x | (x << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    x = (x | (x << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    return (x | (x << np.uint64(2))) & np.uint64(0x1249249249249249)


@_njit(nogil=True)
def morton(local, out):
    """``gs_mapping.morton.morton`` (the same masks and shifts) in one pass: the encoder's codes
    (playbot's 500k cells: ~15 ms in numpy's 18 passes)."""
    for i in range(len(local)):
        out[i] = (
            (_spread(local[i, 0]) << np.uint64(2))
            | (_spread(local[i, 1]) << np.uint64(1))
            | _spread(local[i, 2])
        )


_MORTON_BLOCK = 1024  # codes per block in demorton (its three columns stay in L1)


@_njit(nogil=True)
def demorton(code, out, origin, tile_count, reps):
    """``gs_mapping.morton.demorton`` (the same masks and shifts): x from the bits above y above z
    of each triple; plus, where ``origin`` is not empty, the origin of each code's tile (tile t:
    ``tile_count[t]`` consecutive codes); each row written ``reps[i]`` times where ``reps`` is
    not empty (the Gaussians of a voxel: no gather of rows afterwards). Block by block: the bits
    are pulled apart into column buffers, a loop the compiler vectorises (guitar: 0.79 → 0.42 ms),
    then written out as rows."""
    tiles = len(origin) > 0
    many = len(reps) > 0
    bx = np.empty(_MORTON_BLOCK, np.int64)
    by = np.empty(_MORTON_BLOCK, np.int64)
    bz = np.empty(_MORTON_BLOCK, np.int64)
    i = 0
    j = 0
    for t in range(len(tile_count) if tiles else 1):
        ox, oy, oz = np.int64(0), np.int64(0), np.int64(0)
        end = len(code)
        if tiles:
            ox, oy, oz = origin[t, 0], origin[t, 1], origin[t, 2]
            end = i + tile_count[t]
        while i < end:
            m = min(_MORTON_BLOCK, end - i)
            _compact_block(code[i : i + m], bx, by, bz)
            for k in range(m):
                x, y, z = ox + bx[k], oy + by[k], oz + bz[k]
                for _ in range(reps[i + k] if many else 1):
                    out[j, 0] = x
                    out[j, 1] = y
                    out[j, 2] = z
                    j += 1
            i += m


@_njit(nogil=True, inline="always")
def _compact_block(c, bx, by, bz):
    for k in range(len(c)):
        v = c[k]
        bx[k] = np.int64(_compact(v >> np.uint64(2)))
        by[k] = np.int64(_compact(v >> np.uint64(1)))
        bz[k] = np.int64(_compact(v))


# the occupied octants of each occupancy byte, increasing, and their count
_OCTANTS = np.zeros((256, 8), np.uint64)
_COUNT = np.zeros(256, np.int64)
for _o in range(256):
    for _k in range(8):
        if _o >> _k & 1:
            _OCTANTS[_o, _COUNT[_o]] = _k
            _COUNT[_o] += 1


@_njit(nogil=True)
def descend(code, occ, tile_count, child, pidx, up, per_tile):
    """``octree.descend`` in one pass: for each node in order (``tile_count[t]`` consecutive
    nodes per tile), its occupied octants in increasing order become children ``code << 3 |
    octant`` (into ``child``) and, when ``pidx`` is not empty, the node's index (``up[index]``
    when ``up`` is not empty) into ``pidx``; children per tile into ``per_tile``. Returns the
    number of children; −1 at a byte outside 1..255; −2 − (the number of children) when they
    exceed ``len(child)`` (then counted, not written: nothing is sized by a lie)."""
    cap = len(child)
    parents = len(pidx) > 0
    carry = len(up) > 0
    i = 0
    j = 0
    for t in range(len(tile_count)):
        j0 = j
        for _ in range(tile_count[t]):
            o = occ[i]
            if o < 1 or o > 255:
                return -1
            c = _COUNT[o]
            if j + c <= cap:
                base = code[i] << np.uint64(3)
                a = up[i] if carry else i
                # the first child apart: deep in the tree nearly every node has one (~30% faster)
                child[j] = base | _OCTANTS[o, 0]
                if parents:
                    pidx[j] = a
                if c > 1:
                    for k in range(1, c):
                        child[j + k] = base | _OCTANTS[o, k]
                        if parents:
                            pidx[j + k] = a
            j += c
            i += 1
        per_tile[t] = j - j0
    return j if j <= cap else -2 - j


@_njit(nogil=True)
def extremes(a):
    """(min, max) of a non-empty 1-D integer array, as int64: the decoder's range checks, one
    call where numpy's ``a.min()`` and ``a.max()`` cost ~2 µs each on a small scene's arrays."""
    lo = a[0]
    hi = a[0]
    for i in range(1, len(a)):  # (min and max without branches: the compiler vectorises it)
        lo = min(lo, a[i])
        hi = max(hi, a[i])
    return np.int64(lo), np.int64(hi)


# coded_stream as descend_streams calls it: bound here, since numba reads a global when it compiles
# the caller, and a test that wraps kernels.coded_stream in Python (counting its calls) would
# otherwise hand it a Python function (a TypingError wherever descend_streams compiles then)
_coded_stream = coded_stream
_NO_CTX = np.zeros(0, np.int64)
_I32_MAX = (1 << 31) - 1


@_njit(nogil=True)
def _small_stream(data, p, end, out):
    """``entropy._decode`` of an unsigned int32 stream in mode 1 (a constant) or 7 (plain
    varints) into ``out``: the position after it, or −1 where the Python path may refuse it or
    reads it otherwise (a coded stream: :func:`coded_stream`)."""
    n = len(out)
    if p >= end or n == 0:
        return -1
    mode = data[p]
    p += 1
    if mode == 1:
        v, p = _varint_at(data, p, end, _I32_MAX)
        if v < 0:
            return -1
        for i in range(n):
            out[i] = v
        return p
    if mode == 7 and n <= 64:
        for i in range(n):
            v, p = _varint_at(data, p, end, _I32_MAX)
            if v < 0:
                return -1
            out[i] = v
        return p
    return -1


@_njit(nogil=True)
def descend_streams(
    data, p, end, code, up, tile_count, parents, max_nodes, steps, prefix, rebuild, max_alphabet
):
    """Up to ``steps`` octree depths at once, each its occupancy stream (unsigned int32 from
    ``data[p]``, up to ``end``: a constant, plain varints or a coded stream, as
    :func:`_small_stream` and :func:`coded_stream` read them) and :func:`descend` (``up``: as
    there, or empty; ``parents``: each child's parent index, carried by ``up``). Stops before a
    depth whose stream or occupancy bytes the Python path may refuse or read otherwise (it then
    takes that depth and names the fault). Returns (depths done, the position after them, codes,
    parent indices (``up`` where none), nodes per tile)."""
    done = 0
    for _ in range(steps):
        n = len(code)
        occ = np.empty(n, np.int32)
        q = _small_stream(data, p, end, occ)
        if q < 0:
            if p < end and (data[p] == 2 or data[p] == 6):
                q = _coded_stream(data, p, end, False, _NO_CTX, 1, -1, prefix, rebuild, max_alphabet, occ)
            if q < 0:
                break
        cap = max(0, min(8 * n, max_nodes))
        child = np.empty(cap, np.uint64)
        pidx = np.empty(cap if parents else 0, np.int64)
        per_tile = np.empty(len(tile_count), np.int64)
        m = descend(code, occ, tile_count, child, pidx, up, per_tile)
        if m < 0 or m > max_nodes:
            break
        code = child[:m]
        if parents:
            up = pidx[:m]
        tile_count = per_tile
        p = q
        done += 1
    return done, p, code, up, tile_count


@_njit(nogil=True)
def join_tails(code, branch, path, widths, b_code, b_up, up, tile_count, out, out_up, per_tile):
    """``tails.join`` in one pass: for each node i at s in order (``tile_count[t]`` per tile), a
    tail (``branch[i]`` 0) gives one voxel, its code followed by its path symbols (``widths[k]``
    bits from ``path[k]``), a branch its voxels ``b_code`` whose ``b_up`` is i (in order);
    ``up[i]`` with each where ``up`` is not empty; voxels per tile into ``per_tile``. The paths
    are put together first, row by row of ``path`` (loops that vectorise). False where a branch
    holds fewer than two voxels (it would have been a tail: one map, one encoding)."""
    n_tails = path.shape[1]
    tail = np.zeros(n_tails, np.uint64)
    total = np.uint64(0)
    for p in range(len(widths)):
        w = np.uint64(widths[p])
        total += w
        row = path[p]
        for t in range(n_tails):
            tail[t] = (tail[t] << w) | np.uint64(row[t])
    carry = len(up) > 0
    # unsigned indices (all ≥ 0): numba then skips its negative-index wrap
    i = np.uint64(0)
    j = np.uint64(0)
    k = np.uint64(0)  # next branch voxel
    t = np.uint64(0)  # next tail
    nb = np.uint64(len(b_code))
    one = np.uint64(1)
    for tile in range(len(tile_count)):
        j0 = j
        for _ in range(tile_count[tile]):
            if branch[i] == 0:
                out[j] = (code[i] << total) | tail[t]
                if carry:
                    out_up[j] = up[i]
                j += one
                t += one
            else:
                k0 = k
                while k < nb and b_up[k] == np.int64(i):
                    out[j] = b_code[k]
                    if carry:
                        out_up[j] = up[i]
                    j += one
                    k += one
                if k - k0 < np.uint64(2):
                    return False
            i += one
        per_tile[tile] = j - j0
    return True


@_njit(nogil=True)
def faint_rescale(x, faint, f, divide, out):
    """``out[i] = x[i]``, except on the faint rows: ``x[i] // f`` (floor) with ``divide``, else
    ``x[i] * f`` (the caller keeps it in range); int32 ``x``. One pass without branches where
    numpy makes four and a copy. The floor of the float64 quotient is the integer one for
    |x| < 2**53 (the quotient is correctly rounded, and 1/f apart from the next integer), and
    vectorises where integer floor division (sign fix-ups, a zero check) does not."""
    ff = np.float64(f)
    for i in range(len(x)):
        v = x[i]
        w = np.int32(np.floor(np.float64(v) / ff)) if divide else v * np.int32(f)
        out[i] = w if faint[i] else v


_FLOAT_EXACT = 1 << 48  # |x| below this: floor(float64(x) / f) is x // f for f ≤ 8 (see faint_rescale)


@_njit(nogil=True)
def faint_rescale_wide(x, faint, f, divide, out):
    """:func:`faint_rescale` for int64 ``x`` (the encoder's channels and predictions): exact over
    the whole int64 range. Where every |x| < 2**48 (the lattice's values always) the division is
    the float one, branch-free as faint_rescale's: integer division and a branch on the faint rows
    (random to the predictor) were ~7 ns a value, most of a 10 k-Gaussian encode's 3 ms here;
    beyond, integer floor division."""
    exact = divide and f <= 8
    if exact:
        for i in range(len(x)):
            if x[i] >= _FLOAT_EXACT or x[i] <= -_FLOAT_EXACT:
                exact = False
                break
    if exact:
        ff = np.float64(f)
        for i in range(len(x)):
            v = x[i]
            w = np.int64(np.floor(np.float64(v) / ff))
            out[i] = w if faint[i] else v
        return
    for i in range(len(x)):
        v = x[i]
        if faint[i]:
            out[i] = v // f if divide else v * f
        else:
            out[i] = v


@_njit(nogil=True)
def phase_contexts(res, start, gap, shift, reach, base, faint, out, counts):
    """``phases.contexts`` in one pass: for rows i = start, start + 2·gap, … of ``res``, t = (w·res[i
    − gap] + w·res[i + gap, or i − gap past the end]) >> shift, w = ``faint`` for a row whose
    ``base`` context is 1, else 1 (with ``faint`` > 1 every context is 0 or 1); the bucket reach ∓
    min(floor(log2(|t| + 1)), reach) by t's sign, plus (2·reach + 1) × base[i] where ``base`` is
    not empty; into ``out``, and counted into ``counts``."""
    n = len(res)
    buckets = 2 * reach + 1
    clip = (2 << reach) - 1  # |t| ≥ clip: the last bucket
    # bucket of t clipped to ±clip: reach ∓ min(floor(log2(|t| + 1)), reach)
    table = np.empty(2 * clip + 1, np.int64)
    for v in range(-clip, clip + 1):
        m = -v if v < 0 else v
        mag = 0
        while mag < reach and m >= (2 << mag) - 1:
            mag += 1
        table[v + clip] = reach - mag if v < 0 else reach + mag
    has_base = len(base) > 0
    more = np.int64(faint) - 1  # a faint row (context 1) weighs 1 + more: no branch on the row
    weigh = has_base and more > 0
    last = n - 1 - gap  # rows beyond it take the row before twice
    j = 0
    for i in range(start, n, 2 * gap):
        # unsigned indices (all ≥ 0): numba then skips its negative-index wrap (~20 % of the loop)
        b = np.uint64(i - gap)
        a = np.uint64(i + gap if i <= last else i - gap)
        x = np.int64(res[b])
        y = np.int64(res[a])
        if weigh:
            x *= 1 + more * base[b]
            y *= 1 + more * base[a]
        t = (x + y) >> shift
        k = table[np.uint64(min(max(t, -clip), clip) + clip)]
        if has_base:
            k += buckets * base[np.uint64(i)]
        out[np.uint64(j)] = k
        counts[k] += 1
        j += 1


@_njit(nogil=True)
def gather_column(src, j, idx, out):
    """``out[i] = src[idx[i], j]`` (int32 ``src`` of shape (m, k)): a parent's column for each
    child, without the contiguous copy and int64 fancy indexing numpy makes (~3× faster)."""
    for i in range(len(idx)):
        out[i] = src[idx[i], j]


@_njit(nogil=True)
def add_parent(v, src, i, j, idx, x, faint, f, lim):
    """``section._ParentPred.add_into``: ``v[k] += p`` for the parent prediction
    p = src[idx[k], i] (+ x[k] − src[idx[k], j] where j ≥ 0), floor-divided by ``f`` on the faint
    rows (``faint`` empty: none); False where a sum reaches ±``lim`` (int32 ``v``; every value
    here, parents' and ``x``, already within ±2**30, so a column's sum fits int32 and a combo's
    is tested for it). A power-of-two ``f`` (every preset's but quality 0's 5) divides by an
    arithmetic shift, which floors as division does; another by the floor of the float64
    quotient, exact for these magnitudes (< 2**53), as ``faint_rescale``. The range is checked in
    a second loop, which vectorises (a running check in the first halved its speed)."""
    n = len(v)
    with_faint = len(faint) > 0
    shift = 0
    while (1 << shift) < f:
        shift += 1
    if (1 << shift) != f:
        shift = -1
    wide = False
    # the commonest cases in loops of their own (a loop that tests for each case runs ~2× slower)
    if j < 0 and not with_faint:
        for k in range(n):
            v[k] = np.int64(v[k]) + np.int64(src[idx[k], i])
    elif j < 0 and shift >= 0:
        for k in range(n):  # shifted by 0 on the other rows: no branch
            v[k] = np.int64(v[k]) + (np.int64(src[idx[k], i]) >> (shift * np.int64(faint[k])))
    elif j >= 0 and shift >= 0:  # a combo (every value within ±2**30: its sum may not fit int32)
        for k in range(n):
            p = idx[k]
            pred = np.int64(src[p, i]) + np.int64(x[k]) - np.int64(src[p, j])
            if with_faint:
                pred >>= shift * np.int64(faint[k])
            s = np.int64(v[k]) + pred
            wide |= s != np.int64(np.int32(s))
            v[k] = s
    else:  # faint rows with a factor that is not a power of two
        ff = np.float64(f)
        for k in range(n):
            p = idx[k]
            pred = np.int64(src[p, i])
            if j >= 0:
                pred += np.int64(x[k]) - np.int64(src[p, j])
            q = np.int64(np.floor(np.float64(pred) / ff))
            pred += (q - pred) * np.int64(faint[k])  # a blend, not a branch: faint rows are scattered
            s = np.int64(v[k]) + pred
            wide |= s != np.int64(np.int32(s))
            v[k] = s
    bad = wide
    for k in range(n):
        bad |= (v[k] >= lim) | (v[k] <= -lim)
    return not bad


@_njit(nogil=True)
def gather_combo(src, i, j, idx, x, out):
    """``out[k] = src[idx[k], i] + x[k] − src[idx[k], j]`` in int64: the parent's channel i moved
    by the child's step from the parent in channel j, in one pass (numpy makes five)."""
    for k in range(len(idx)):
        p = idx[k]
        out[k] = np.int64(src[p, i]) + np.int64(x[k]) - np.int64(src[p, j])


@_njit(nogil=True)
def escaped_values(sym, t, log2t, words, have, signed, limit, out):
    """``entropy._values`` compiled, for int32 or int64 ``out``: symbols below ``t`` are their
    own value; an escape symbol names a bit length whose lower bits come, LSB first, from the
    mantissa blob in stream order (``have`` bits, held little-endian in the uint64 ``words`` with
    at least one zero word after them); signed values are unzigzagged. ``limit`` < 0: none. Returns
    0, or nonzero where the data is wrong (the caller then lets the plain path name the fault).
    Two passes: every symbol as if direct (a loop without branches, which vectorises), then the
    escapes, which are rare, patched over."""
    n = len(sym)
    escapes = 0
    for i in range(n):
        s = sym[i]
        escapes += s >= t
        out[i] = (s >> 1) ^ -(s & 1) if signed else s
    # direct values are below t (|v| ≤ t // 2 signed): check the limit only where that allows more
    if limit >= 0 and (t // 2 if signed else t - 1) > limit:
        for i in range(n):
            if sym[i] < t and (out[i] > limit or out[i] < -limit):
                return 1
    if escapes == 0:
        return 1 if have else 0  # mantissa bytes where none are expected
    # then the escapes (all symbols from t up)
    top = np.int64(np.iinfo(out.dtype).max)
    bottom = np.int64(np.iinfo(out.dtype).min)
    pos = np.int64(0)
    for i in range(n):
        s = np.int64(sym[i])
        if s < t:
            continue
        v, pos, bad = _escaped_value(s, t, log2t, words, pos, have, signed, top, bottom, limit)
        if bad:
            return 1
        out[i] = v
    return 0


@_njit(nogil=True, inline="always")
def _escaped_value(s, t, log2t, words, pos, have, signed, top, bottom, limit):
    """The value of escape symbol ``s`` (≥ t): a bit length whose lower bits are read, LSB first,
    at bit ``pos`` of the mantissa ``words`` (``have`` bits, a zero word after them); (value, the
    next bit, 0), or (0, pos, 1) where the data is wrong (too long, past the bits, outside
    ``bottom``..``top`` or ±``limit``)."""
    one = np.uint64(1)
    nb = np.int64(s) - t + log2t  # mantissa bits: the bit length less its leading one
    if nb > 63 or pos + nb > have:
        return np.int64(0), pos, 1
    k, sh = pos >> 6, np.uint64(pos & 63)
    # the next word's low bits shifted in by 64 − sh, as two shifts (none when sh is 0)
    mant = (words[k] >> sh) | ((words[k + 1] << one) << (np.uint64(63) - sh))
    u = (one << np.uint64(nb)) | (mant & ((one << np.uint64(nb)) - one))
    if signed:
        v = np.int64(u >> one) ^ -np.int64(u & one)
    else:
        if u > np.uint64(top):
            return np.int64(0), pos, 1
        v = np.int64(u)
    if v > top or v < bottom or (limit >= 0 and (v > limit or v < -limit)):
        return np.int64(0), pos, 1
    return v, pos + nb, 0


# -- the encoder's streams (entropy.Stats, entropy._symbols + bitio.pack_bits) --------------------


if _leading_zeros is not None:

    @_njit(nogil=True, inline="always")
    def _bit_length(u):
        """Bits of uint64 ``u`` (0 for 0): one instruction, where the loop took one step a bit
        (the streams' counts 30 % faster on playbot, whose fine steps escape 29 % of values)."""
        return 64 - np.int64(_leading_zeros(u))

else:  # pragma: no cover

    @_njit(nogil=True, inline="always")
    def _bit_length(u):
        n = 0
        while u:
            u >>= np.uint64(1)
            n += 1
        return n


@_njit(nogil=True)
def stream_counts(v, signed, small, big_bl, u_out):
    """``entropy.Stats``'s counts in one pass over int64 ``v``: the zig-zag (``signed``) or plain
    values u, ``small[min(u, 256)]`` and, for u ≥ 256, ``big_bl[bit length]`` incremented; u into
    ``u_out`` when it has room. Returns 1 (nothing usable) for a value the numpy path would hold
    as uint64 (|v| ≥ 2**62 signed, or a negative unsigned one), else 0."""
    keep = len(u_out) > 0
    lim = np.int64(1) << np.int64(62)
    for i in range(len(v)):
        x = v[i]
        if signed:
            if x >= lim or x < -lim:
                return 1
            u = (x << 1) ^ (x >> 63)
        else:
            if x < 0:
                return 1
            u = x
        if keep:
            u_out[i] = u
        if u < 256:
            small[u] += 1
        else:
            small[256] += 1
            big_bl[_bit_length(np.uint64(u))] += 1
    return 0


@_njit(nogil=True)
def sparse_split(v, signed, gaps, mapped, small_d, big_d, small_g, big_g, small_m, big_m):
    """``entropy.put_stream``'s sparse split in one pass over ``v`` (int32 or int64, any stride):
    for each non-zero value (k of them, in order) its gap after the one before (``gaps``) and its
    zig-zag (``signed``) or plain value u less one (``mapped``), both int64; the counts of
    ``entropy.Stats`` of u (``small_d``/``big_d``: the dense estimate's, zeros not counted), of the
    gaps and of the mapped values. Returns k; −1 where more than ``len(gaps)`` values are non-zero
    (the outputs then partly written), −2 for a value the numpy path would hold as uint64."""
    cap = len(gaps)
    lim = np.int64(1) << np.int64(62)
    k = 0
    last = -1
    for i in range(len(v)):
        x = np.int64(v[i])
        if x == 0:
            continue
        if signed:
            if x >= lim or x < -lim:
                return -2
            u = (x << 1) ^ (x >> 63)
        else:
            if x < 0:
                return -2
            u = x
        if k >= cap:
            return -1
        g = np.int64(i - last - 1)
        last = i
        m = u - 1
        gaps[k] = g
        mapped[k] = m
        k += 1
        if u < 256:
            small_d[u] += 1
        else:
            small_d[256] += 1
            big_d[_bit_length(np.uint64(u))] += 1
        if g < 256:
            small_g[g] += 1
        else:
            small_g[256] += 1
            big_g[_bit_length(np.uint64(g))] += 1
        if m < 256:
            small_m[m] += 1
        else:
            small_m[256] += 1
            big_m[_bit_length(np.uint64(m))] += 1
    return k


@_njit(nogil=True)
def rows_nonzero_counts(rows, k, small, big_bl):
    """For each column c of the int32 rows (n, K): its non-zero values' count ``k[c]`` and the
    ``entropy.Stats`` counts of their zig-zag values (``small`` (K, 257), ``big_bl`` (K, 65)),
    in one pass over the rows (``put_stream``'s sparse split of every column, first half)."""
    n, w = rows.shape
    for i in range(n):
        for c in range(w):
            x = np.int64(rows[i, c])
            if x == 0:
                continue
            k[c] += 1
            u = (x << 1) ^ (x >> 63)
            if u < 256:
                small[c, u] += 1
            else:
                small[c, 256] += 1
                big_bl[c, _bit_length(np.uint64(u))] += 1


@_njit(nogil=True)
def rows_sparse_fill(rows, start, gaps, mapped, small_g, big_g, small_m, big_m):
    """The second half: each column c with ``start[c] ≥ 0`` gets its non-zero values' gaps and
    zig-zag values less one from ``gaps[start[c]]`` / ``mapped[start[c]]`` on, and their
    ``entropy.Stats`` counts (``small_g``/``big_g``, ``small_m``/``big_m``: (K, 257), (K, 65))."""
    n, w = rows.shape
    pos = start.copy()
    last = np.full(w, -1, np.int64)
    for i in range(n):
        for c in range(w):
            x = np.int64(rows[i, c])
            if x == 0 or pos[c] < 0:
                continue
            g = np.int64(i) - last[c] - 1
            last[c] = i
            m = ((x << 1) ^ (x >> 63)) - 1
            p = pos[c]
            gaps[p] = g
            mapped[p] = m
            pos[c] = p + 1
            if g < 256:
                small_g[c, g] += 1
            else:
                small_g[c, 256] += 1
                big_g[c, _bit_length(np.uint64(g))] += 1
            if m < 256:
                small_m[c, m] += 1
            else:
                small_m[c, 256] += 1
                big_m[c, _bit_length(np.uint64(m))] += 1


@_njit(nogil=True)
def column_counts(a, small, big_bl):
    """``entropy.Stats``'s counts (signed) of each column of the 2-D int array ``a`` (any strides)
    in one pass over its rows: ``small`` (k, 257), ``big_bl`` (k, 65). Returns 1 for a value the
    numpy path would hold as uint64 (|v| ≥ 2**62), else 0. (The counting is written out in each
    loop: a helper taking the count arrays costs a reference count per call, 20-50× the loop.)"""
    lim = np.int64(1) << np.int64(62)
    n, k = a.shape
    for i in range(n):
        for c in range(k):
            x = np.int64(a[i, c])
            if x >= lim or x < -lim:
                return 1
            u = (x << 1) ^ (x >> 63)
            if u < 256:
                small[c, u] += 1
            else:
                small[c, 256] += 1
                big_bl[c, _bit_length(np.uint64(u))] += 1
    return 0


@_njit(nogil=True)
def coefficient_counts(x0, x1, x2, pred, cube, esc_small, esc_big):
    """The counts behind ``section._put_sh_coefficient``'s choices, in one pass over one SH
    coefficient's three channels (int32 or int64, any stride; with ``pred`` channels 0 and 2 less
    channel 1, in int64), by the row's class ``min(umax, 6)`` (umax its largest zig-zag value: a
    row is escaped under every joint base up to it): each channel's ``entropy.Stats`` counts
    (``esc_small`` (21, 257), ``esc_big`` (21, 65): row 3 · class + channel; a channel's Stats
    are the sum over the classes), and for the rows of class < 6 the count of each zig-zag
    triple (``cube[u0 + 6 u1 + 36 u2]``, 216), from which every base's joint symbols are counted.
    Returns 1 for a value the numpy path would hold as uint64 (|v| ≥ 2**62), else 0."""
    for i in range(len(x0)):
        if _count_triple(np.int64(x0[i]), np.int64(x1[i]), np.int64(x2[i]), pred, cube, esc_small, esc_big):
            return 1
    return 0


@_njit(nogil=True)
def rows_coefficient_counts(rows, step, cube, esc_small, esc_big):
    """:func:`coefficient_counts` of every coefficient of int32 ``rows`` (n, 3 · K), plain and
    predicted, over every ``step``-th row, in one pass over those rows (a coefficient's channels
    read from the row where they lie: one cache line, not a strided column per coefficient):
    ``cube[k, p]``, ``esc_small[k, p]``, ``esc_big[k, p]`` for coefficient k, p = predicted.
    (int32 values: never the uint64 case. :func:`_count_triple`'s counting is written out here, as
    in :func:`column_counts`: the helper taking the count arrays cost ~33 ns a triple, this ~11: 1M SH 3 rows, 0.12 → 0.042 s)"""
    block = 512 * step  # (the block's sampled rows stay in cache while each coefficient's counts are hot)
    for s in range(0, rows.shape[0], block):
        for k in range(rows.shape[1] // 3):
            for i in range(s, min(s + block, rows.shape[0]), step):
                b = np.int64(rows[i, 3 * k + 1])
                ub = (b << 1) ^ (b >> 63)
                for p in range(2):
                    a = np.int64(rows[i, 3 * k])
                    c = np.int64(rows[i, 3 * k + 2])
                    if p == 1:
                        a -= b
                        c -= b
                    ua = (a << 1) ^ (a >> 63)
                    uc = (c << 1) ^ (c >> 63)
                    umax = max(ua, max(ub, uc))
                    if umax < 6:
                        cube[k, p, ua + 6 * ub + 36 * uc] += 1
                        cls = 3 * umax
                        esc_small[k, p, cls, ua] += 1
                        esc_small[k, p, cls + 1, ub] += 1
                        esc_small[k, p, cls + 2, uc] += 1
                        continue
                    for ch in range(3):
                        u = ua if ch == 0 else (ub if ch == 1 else uc)
                        if u < 256:
                            esc_small[k, p, 18 + ch, u] += 1
                        else:
                            esc_small[k, p, 18 + ch, 256] += 1
                            esc_big[k, p, 18 + ch, _bit_length(np.uint64(u))] += 1


@_njit(nogil=True, inline="always")
def _count_triple(a, b, c, pred, cube, esc_small, esc_big):
    """One row's counts for :func:`coefficient_counts`; 1 for the uint64 case, else 0."""
    lim = np.int64(1) << np.int64(62)
    if pred:
        a -= b
        c -= b
    if a >= lim or a < -lim or b >= lim or b < -lim or c >= lim or c < -lim:
        return 1
    ua = (a << 1) ^ (a >> 63)
    ub = (b << 1) ^ (b >> 63)
    uc = (c << 1) ^ (c >> 63)
    umax = max(ua, max(ub, uc))
    if umax < 6:
        cube[ua + 6 * ub + 36 * uc] += 1
        cls = 3 * umax
        esc_small[cls, ua] += 1
        esc_small[cls + 1, ub] += 1
        esc_small[cls + 2, uc] += 1
        return 0
    for ch in range(3):
        u = ua if ch == 0 else (ub if ch == 1 else uc)
        if u < 256:
            esc_small[18 + ch, u] += 1
        else:
            esc_small[18 + ch, 256] += 1
            esc_big[18 + ch, _bit_length(np.uint64(u))] += 1
    return 0


@_njit(nogil=True)
def bits_by_bound(small, big_bl, sbl, n, table_bits, out):
    """``entropy.Stats._bits_by_bound`` into ``out`` (9): the same sums in the same order."""
    esc = np.zeros(65)
    for b in range(65):
        esc[b] = np.float64(big_bl[b])
    for i in range(256):
        if sbl[i] < 9:
            esc[sbl[i]] += np.float64(small[i])
    direct = np.zeros(257)
    direct_n = np.zeros(257, np.int64)
    for i in range(256):
        c = np.float64(small[i])
        direct[i + 1] = direct[i] + (c * np.log2(c) if c > 0 else 0.0)
        direct_n[i + 1] = direct_n[i] + (small[i] > 0)
    tail = np.zeros(66)
    tail_n = np.zeros(66, np.int64)
    mant = np.zeros(66)
    for b in range(64, -1, -1):
        c = esc[b]
        tail[b] = tail[b + 1] + (c * np.log2(c) if c > 0 else 0.0)
        tail_n[b] = tail_n[b + 1] + (c > 0)
        mant[b] = mant[b + 1] + c * max(b - 1, 0)
    nl = np.float64(n) * np.log2(np.float64(n))
    for k in range(9):
        t, b = 1 << k, k + 1
        out[k] = nl - direct[t] - tail[b] + mant[b] + table_bits * (direct_n[t] + tail_n[b])


@_njit(nogil=True, inline="always")
def _put_bits(x, nb, acc, fill, out, nbytes):
    """Append the low ``nb`` (≤ 64) bits of ``x`` to the bit writer (acc, fill, nbytes)."""
    while nb > 0:  # as many as fit beside the pending bits, then flush whole bytes
        take = min(nb, 64 - fill)
        part = x & ((np.uint64(1) << np.uint64(take)) - np.uint64(1)) if take < 64 else x
        acc |= part << np.uint64(fill)
        fill += take
        x = x >> np.uint64(take) if take < 64 else np.uint64(0)
        nb -= take
        while fill >= 8:
            out[nbytes] = np.uint8(acc & np.uint64(255))
            acc >>= np.uint64(8)
            fill -= 8
            nbytes += 1
    return acc, fill, nbytes


@_njit(nogil=True, inline="always")
def _end_bits(acc, fill, out, nbytes):
    """The bytes used once the last, partial byte (zero-padded high bits) is written."""
    if fill:
        out[nbytes] = np.uint8(acc & np.uint64(255))
        nbytes += 1
    return nbytes


@_njit(nogil=True)
def pack_bits(vals, nbits, out):
    """``bitio.pack_bits``: values of ``nbits`` bits each, LSB-first, into ``out`` (large
    enough); returns the bytes used."""
    acc = np.uint64(0)
    fill = 0
    nbytes = 0
    for i in range(len(vals)):
        acc, fill, nbytes = _put_bits(np.uint64(vals[i]), nbits[i], acc, fill, out, nbytes)
    return _end_bits(acc, fill, out, nbytes)


@_njit(nogil=True)
def escape_symbols(u, log2t, sym, blob):
    """``entropy._symbols`` and ``bitio.pack_bits`` of its mantissas in one pass: u < t is its own
    symbol, a larger u the escape ``t + bit length − (log2t + 1)`` with its bits below the leading
    one appended, low bit first, to ``blob`` (≥ 8·len(u) + 8 bytes). Returns the bytes used."""
    t = np.int64(1) << np.int64(log2t)
    acc = np.uint64(0)  # bits not yet written, low first
    fill = 0
    nbytes = 0
    for i in range(len(u)):
        x = u[i]
        if x < t:
            sym[i] = x
            continue
        bl = _bit_length(np.uint64(x))
        sym[i] = t + bl - (log2t + 1)
        acc, fill, nbytes = _put_bits(np.uint64(x), bl - 1, acc, fill, blob, nbytes)
    return _end_bits(acc, fill, blob, nbytes)


@_njit(nogil=True)
def lane_symbols(sym, out, counts):
    """``entropy.encode_stream``'s lanes of one context in one pass: symbol i (int64, each in
    0..len(counts) − 1) into ``out[i % L, i // L]`` (int32, L = len(out) lanes) and counted in
    ``counts`` (``np.bincount(sym)``, zero-padded)."""
    lanes = out.shape[0]
    for i in range(len(sym)):
        x = sym[i]
        out[i % lanes, i // lanes] = np.int32(x)
        counts[x] += 1


@_njit(nogil=True)
def group_symbols(sym, ctx, bounds, out, counts):
    """``entropy.encode_stream``'s symbols grouped by context in one pass (a counting sort: the
    stable order ``entropy._group`` sorts them into): ``out`` int32, context c's at
    ``out[bounds[c]:bounds[c + 1]]`` (``bounds``: n_ctx + 1, from the contexts' counts), each
    context's ``np.bincount`` in ``counts[c]`` (zero-padded: every symbol below counts.shape[1]).
    Returns 1 (nothing usable written) when a context lies outside 0..n_ctx − 1 or holds more
    values than its bounds, else 0."""
    n_ctx = len(bounds) - 1
    at = bounds[:n_ctx].copy()
    for i in range(len(sym)):
        c = ctx[i]
        if c < 0 or c >= n_ctx or at[c] >= bounds[c + 1]:
            return 1
        x = sym[i]
        out[at[c]] = np.int32(x)
        at[c] += 1
        counts[c, x] += 1
    return 0


@_njit(nogil=True, error_model="numpy")  # (f ≥ 1: no zero-divisor test per symbol)
def ans_encode(parts, lens, cdf, words, nw):
    """constriction's ``AnsCoder().encode_reverse(part, model)`` then ``get_compressed()`` of each
    row ``parts[l, :lens[l]]`` (one or two), the model's quantised CDF ``cdf``
    (:func:`quantized_cdf`): row l's words into ``words[l, :nw[l]]`` (≥ lens[l] + 2 each). The
    state is 64 bits, words 32, precision 24: a symbol of frequency f pushes the state's low word
    first where ``state >> 40 ≥ f``, then ``state = (state // f) << 24 | (state % f + left)``;
    the end pushes the state's low word, then its high one where non-zero (nothing for a zero
    state). Two rows are coded in one loop: their divisions, the cost, overlap (constriction codes
    a lane at ~6 ns a symbol, as this one row alone)."""
    hi_bits = np.uint64(64 - PRECISION)
    low = np.uint64(0xFFFFFFFF)
    s0 = np.uint64(0)
    s1 = np.uint64(0)
    n0 = 0
    n1 = 0
    i0 = lens[0] - 1
    i1 = lens[1] - 1 if parts.shape[0] > 1 else -1
    while i0 > i1:  # (row 0 the longer: its last symbols alone)
        x = parts[0, i0]
        left = np.uint64(cdf[x])
        f = np.uint64(cdf[x + 1]) - left
        if (s0 >> hi_bits) >= f:
            words[0, n0] = np.uint32(s0 & low)
            n0 += 1
            s0 >>= np.uint64(32)
        s0 = ((s0 // f) << np.uint64(PRECISION)) | (s0 % f + left)
        i0 -= 1
    while i1 > i0:
        x = parts[1, i1]
        left = np.uint64(cdf[x])
        f = np.uint64(cdf[x + 1]) - left
        if (s1 >> hi_bits) >= f:
            words[1, n1] = np.uint32(s1 & low)
            n1 += 1
            s1 >>= np.uint64(32)
        s1 = ((s1 // f) << np.uint64(PRECISION)) | (s1 % f + left)
        i1 -= 1
    for i in range(i0, -1, -1):  # (both rows: i0 == i1)
        x = parts[0, i]
        y = parts[1, i]
        left0 = np.uint64(cdf[x])
        f0 = np.uint64(cdf[x + 1]) - left0
        left1 = np.uint64(cdf[y])
        f1 = np.uint64(cdf[y + 1]) - left1
        if (s0 >> hi_bits) >= f0:
            words[0, n0] = np.uint32(s0 & low)
            n0 += 1
            s0 >>= np.uint64(32)
        if (s1 >> hi_bits) >= f1:
            words[1, n1] = np.uint32(s1 & low)
            n1 += 1
            s1 >>= np.uint64(32)
        s0 = ((s0 // f0) << np.uint64(PRECISION)) | (s0 % f0 + left0)
        s1 = ((s1 // f1) << np.uint64(PRECISION)) | (s1 % f1 + left1)
    for r in range(parts.shape[0]):
        st = s0 if r == 0 else s1
        k = n0 if r == 0 else n1
        if st != 0:
            words[r, k] = np.uint32(st & low)
            k += 1
            if st >> np.uint64(32):
                words[r, k] = np.uint32(st >> np.uint64(32))
                k += 1
        nw[r] = k


# -- the encoder's frequency tables (tables.put_table) --------------------------------------------


@_njit(nogil=True, inline="always")
def _rebuilt(f, e, p):
    """``tables._rebuild`` of one frequency ``f`` (bit length ``e``) at precision ``p``: its kept
    bits, the dropped ones replaced by half their range; and the kept bits below the leading one."""
    if e == 0:
        return 0, 0
    k = min(e, p)
    d = e - k
    return ((f >> d) << d) + ((1 << (d - 1)) if d > 0 else 0), k - 1


@_njit(nogil=True)
def table_precision(f, e, scale, top):
    """``tables._precision``: the kept precision p (1..top) of the smallest table plus data
    estimate for frequencies ``f`` (bit lengths ``e``), the same arithmetic in the same order
    (each row's data bits summed symbol by symbol), so the same choice."""
    a = len(f)
    best, best_cost = 0, 0.0
    for p in range(1, top + 1):
        total = 0
        kept = 0
        for i in range(a):
            r, k1 = _rebuilt(f[i], e[i], p)
            total += r
            kept += k1
        data = 0.0
        for i in range(a):
            if e[i] > 0:
                r, _ = _rebuilt(f[i], e[i], p)
                data += np.float64(f[i]) * np.log2(np.float64(r) / np.float64(total))
        cost = kept - data * scale
        if p == 1 or cost < best_cost - 1e-9:
            best, best_cost = p, cost
    return best


@_njit(nogil=True)
def table_blob(f, e, p, rec, out):
    """``tables.put_table``'s bits at precision ``p`` for frequencies ``f`` (bit lengths ``e``)
    into ``out``, the rebuilt frequencies into ``rec``; returns the bytes used. Per symbol: the
    exp-Golomb code of the zig-zagged bit-length change (its m − 1 zeros and a one, then the bits
    of z + 1 below its leading one), then the kept frequency bits below the leading one."""
    acc, fill, nbytes = np.uint64(0), 0, 0
    prev = 0
    for i in range(len(f)):
        dz = e[i] - prev
        prev = e[i]
        z = (dz << 1) ^ (dz >> 63)
        m = _bit_length(np.uint64(z + 1))
        acc, fill, nbytes = _put_bits(np.uint64(1) << np.uint64(m - 1), m, acc, fill, out, nbytes)
        acc, fill, nbytes = _put_bits(
            np.uint64((z + 1) & ((1 << (m - 1)) - 1)), m - 1, acc, fill, out, nbytes
        )
        r, kept = _rebuilt(f[i], e[i], p)
        d = e[i] - min(e[i], p)
        acc, fill, nbytes = _put_bits(
            np.uint64((f[i] >> d) & ((1 << kept) - 1)), kept, acc, fill, out, nbytes
        )
        rec[i] = r
    return _end_bits(acc, fill, out, nbytes)


# -- the encoder's row order (section._octree_order) ---------------------------------------------

_RADIX_BITS = 11  # a pass's digit: 2048 counters (in L1), 500k keys of 54 bits in 5 passes


@_njit(nogil=True)
def stable_argsort(key):
    """``np.argsort(key, kind="stable")`` of non-negative int64 keys: a least-significant-digit
    radix sort over the bits the largest key has, in passes of at most ``_RADIX_BITS`` (each
    stable, so ties keep their row order). numpy sorts int64 by merging: ~2× slower on the
    octree's 500k keys of 54 bits (playbot)."""
    n = len(key)
    top = np.int64(0)
    for i in range(n):
        top = max(top, key[i])
    bits = 0
    while top >> bits:
        bits += 1
    order = np.arange(n)
    if n < 2 or bits == 0:
        return order
    passes = (bits + _RADIX_BITS - 1) // _RADIX_BITS
    width = (bits + passes - 1) // passes  # the passes' digits as even as they come
    mask = (np.int64(1) << width) - 1
    count = np.empty(mask + 2, np.int64)
    src, dst = key.copy(), np.empty(n, np.int64)
    moved = np.empty(n, np.int64)
    for p in range(passes):
        shift = p * width
        count[:] = 0
        for i in range(n):
            count[((src[i] >> shift) & mask) + 1] += 1
        for d in range(1, mask + 2):  # each digit's first place
            count[d] += count[d - 1]
        for i in range(n):
            d = (src[i] >> shift) & mask
            at = count[d]
            count[d] = at + 1
            dst[at] = src[i]
            moved[at] = order[i]
        src, dst = dst, src
        order, moved = moved, order
    return order


# -- the encoder's octree (octree.build_levels, octree.leaf_moments) -------------------------------


@_njit(nogil=True, inline="always")
def _cov(i0, i1, i2, j0, j1, j2, a0, a1, a2):
    return i0 * j0 * a0 + i1 * j1 * a1 + i2 * j2 * a2


@_njit(nogil=True)
def leaf_moments(node, quats, s, alpha, mu, dc, w_out, wm, ws, aa, wdc, amax):
    """``octree.leaf_moments``'s sums in one pass, bit for bit: the same products in the same
    order (the rotation matrix rows of ``geometry.quat_to_matrix``, Σ = Σ_k s_k² r_k r_kᵀ term
    by term), added into each node in row order as ``np.bincount`` adds. ``s`` and ``alpha`` come
    from numpy (its exp, not libm's, so both paths start from the same floats)."""
    for i in range(len(node)):
        k = node[i]
        x = np.float64(quats[i, 0])
        y = np.float64(quats[i, 1])
        z = np.float64(quats[i, 2])
        q = np.float64(quats[i, 3])
        r00 = 1 - 2 * (y * y + z * z)
        r01 = 2 * (x * y - z * q)
        r02 = 2 * (x * z + y * q)
        r10 = 2 * (x * y + z * q)
        r11 = 1 - 2 * (x * x + z * z)
        r12 = 2 * (y * z - x * q)
        r20 = 2 * (x * z - y * q)
        r21 = 2 * (y * z + x * q)
        r22 = 1 - 2 * (x * x + y * y)
        s0, s1, s2 = s[i, 0], s[i, 1], s[i, 2]
        a0, a1, a2 = s0 * s0, s1 * s1, s2 * s2
        m0, m1, m2 = mu[i, 0], mu[i, 1], mu[i, 2]
        a = alpha[i]
        w = a + 1e-6
        w_out[k] += w
        wm[k, 0] += w * m0
        wm[k, 1] += w * m1
        wm[k, 2] += w * m2
        # the pairs (0,0) (0,1) (0,2) (1,1) (1,2) (2,2), as octree._PAIRS
        ws[k, 0] += w * (_cov(r00, r01, r02, r00, r01, r02, a0, a1, a2) + m0 * m0)
        ws[k, 1] += w * (_cov(r00, r01, r02, r10, r11, r12, a0, a1, a2) + m0 * m1)
        ws[k, 2] += w * (_cov(r00, r01, r02, r20, r21, r22, a0, a1, a2) + m0 * m2)
        ws[k, 3] += w * (_cov(r10, r11, r12, r10, r11, r12, a0, a1, a2) + m1 * m1)
        ws[k, 4] += w * (_cov(r10, r11, r12, r20, r21, r22, a0, a1, a2) + m1 * m2)
        ws[k, 5] += w * (_cov(r20, r21, r22, r20, r21, r22, a0, a1, a2) + m2 * m2)
        # the two largest scales' product (np.sort's middle and last): a three-value sort network
        lo, mid, hi = s0, s1, s2
        if lo > mid:
            lo, mid = mid, lo
        if mid > hi:
            mid, hi = hi, mid
        if lo > mid:
            lo, mid = mid, lo
        aa[k] += a * (mid * hi)
        wdc[k, 0] += w * np.float64(dc[i, 0])
        wdc[k, 1] += w * np.float64(dc[i, 1])
        wdc[k, 2] += w * np.float64(dc[i, 2])
        if a > amax[k]:
            amax[k] = a


@_njit(nogil=True)
def parent_level(t, c, t_out, c_out, occ_out, parent_out):
    """One step of ``octree.build_levels`` up from sorted unique nodes (tile ``t``, code ``c``):
    their parents (tile, code) and occupancy bytes, each node's parent index; returns the count
    of parents."""
    m = -1
    for i in range(len(c)):
        pc = c[i] >> np.uint64(3)
        if m < 0 or pc != c_out[m] or t[i] != t_out[m]:
            m += 1
            t_out[m] = t[i]
            c_out[m] = pc
            occ_out[m] = 0
        occ_out[m] |= np.uint8(1) << np.uint8(c[i] & np.uint64(7))
        parent_out[i] = m
    return m + 1


# -- the encoder's distinct rows (palette.unique_rows) ------------------------------------------


@_njit(nogil=True, inline="always")
def _mix(h):
    h ^= h >> np.uint64(33)  # murmur3's finaliser: every input bit reaches every output bit
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


# the row hashes' four lane seeds (odd constants of FNV, murmur3 and the golden ratio) and the
# lanes' multiplier (the golden ratio's: odd, its bits spread)
_LANE_SEEDS = (0xCBF29CE484222325, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x100000001B3)
_LANE_MUL = 0x9E3779B97F4A7C15


@_njit(nogil=True, inline="always")
def _word(bits, i, j):
    """Values j and j+1 of row i as one 64-bit word."""
    return np.uint64(np.uint32(bits[i, j])) | (np.uint64(np.uint32(bits[i, j + 1])) << np.uint64(32))


@_njit(nogil=True, inline="always")
def _lane_step(lane, word, m):
    """``(lane ^ word) × m``, then its high half folded down: a bijection of the lane for each
    word, and of the word for each lane. Without the fold a flip of a word's top bit would only
    flip the product's top bit, where the lane's next word's top-bit flip undoes it (two rows
    differing there would share their hash)."""
    x = (lane ^ word) * m
    return x ^ (x >> np.uint64(29))


@_njit(nogil=True)
def _row_hashes(bits, i):
    """Two 64-bit hashes of row i. The row's 32-bit values are taken two at a time as 64-bit
    words, dealt round to four lanes of FNV-1a style steps (:func:`_lane_step`; what is left of
    a width not a multiple of 8 goes into the first lane value by value); the four finalised
    lanes (256 bits) are then folded two different ways into the two hashes. Four independent
    multiply chains over words: 4× faster than one chain of 32-bit steps per hash (the hashing
    was 70 % of this pass on playbot's 500k rows of 24)."""
    w = bits.shape[1]
    m = np.uint64(_LANE_MUL)
    l0 = np.uint64(_LANE_SEEDS[0])
    l1 = np.uint64(_LANE_SEEDS[1])
    l2 = np.uint64(_LANE_SEEDS[2])
    l3 = np.uint64(_LANE_SEEDS[3])
    j = 0
    while j + 8 <= w:
        l0 = _lane_step(l0, _word(bits, i, j), m)
        l1 = _lane_step(l1, _word(bits, i, j + 2), m)
        l2 = _lane_step(l2, _word(bits, i, j + 4), m)
        l3 = _lane_step(l3, _word(bits, i, j + 6), m)
        j += 8
    while j < w:
        l0 = _lane_step(l0, np.uint64(np.uint32(bits[i, j])), m)
        j += 1
    a = _mix(l0)
    b = _mix(l1)
    c = _mix(l2)
    d = _mix(l3)
    return _mix(a + (b ^ c) * m + d), _mix((a ^ m) * np.uint64(_LANE_SEEDS[3]) + b + (c ^ d))


@_njit(nogil=True)
def _rehash(table, cap):
    """The entries of ``table`` in a new table of ``2 * cap`` slots."""
    grown = np.zeros((2 * cap, 3), np.uint64)
    mask = 2 * cap - 1
    for s in range(table.shape[0]):
        if table[s, 2] != 0:
            t = np.int64(table[s, 0] & np.uint64(mask))
            while grown[t, 2] != 0:
                t = (t + 1) & mask
            grown[t, 0] = table[s, 0]
            grown[t, 1] = table[s, 1]
            grown[t, 2] = table[s, 2]
    return grown


@_njit(nogil=True)
def unique_rows(bits, first, inv, limit):
    """``palette.unique_rows`` over a hash table: rows of ``bits`` (n × w int32) with equal 128-bit
    hashes (:func:`_row_hashes`) are one row. Fills ``inv`` (each row's distinct index, in order
    of first use) and ``first[:k]`` (the row each distinct one first appears at); returns k, or
    stops as soon as k passes ``limit`` and returns it (the arrays then unfinished): a scene
    whose rows are no palette (a trainer's SH, all distinct) is told after a quarter of its rows.
    Rows are not compared: that is a cache miss per row into the palette (4× the time on
    playbot's 500k rows of 24); a false merge needs a 128-bit collision (below 2**-88 for 2**20
    rows of data not made for it), and would not pass unseen: the container's checksum is of the
    encoder's own quantised map, so the decoder would refuse it. The hashes are worked out in
    passes of their own over blocks of rows: the probes' loop is then short enough for the
    processor to overlap the cache misses of successive rows into the table (slots of hash,
    hash, index + 1; it grows with the distinct rows); 2× faster than hashing in the probes'
    loop on playbot."""
    n = bits.shape[0]
    block = 8192
    hs = np.empty(min(n, block), np.uint64)
    gs = np.empty(min(n, block), np.uint64)
    cap = 1024
    table = np.zeros((2 * cap, 3), np.uint64)
    k = 0
    for b in range(0, n, block):
        m = min(block, n - b)
        for r in range(m):
            hs[r], gs[r] = _row_hashes(bits, b + r)
        for r in range(m):
            i = b + r
            h = hs[r]
            mask = table.shape[0] - 1
            slot = np.int64(h & np.uint64(mask))
            while True:
                e = table[slot, 2]
                if e == 0:
                    if k == cap:  # grow: room for twice the rows, a table of twice that
                        cap *= 2
                        table = _rehash(table, cap)
                        mask = table.shape[0] - 1
                        slot = np.int64(h & np.uint64(mask))
                        continue
                    table[slot, 0] = h
                    table[slot, 1] = gs[r]
                    table[slot, 2] = np.uint64(k + 1)
                    first[k] = i
                    inv[i] = k
                    k += 1
                    break
                if table[slot, 0] == h and table[slot, 1] == gs[r]:
                    inv[i] = np.int64(e) - 1
                    break
                slot = (slot + 1) & mask
            if k > limit:
                return k
    return k


# -- the encoder's attribute codes (quantize.attribute_lattices) -----------------------------------


@_njit(nogil=True, inline="always")
def _on_lattice(x, lo, hi, step):
    """``rint(clip(x, lo, hi) / step)`` in float64, as numpy takes it (x not NaN)."""
    v = np.float64(x)
    if v < lo:
        v = lo
    elif v > hi:
        v = hi
    return np.rint(v / step)


@_njit(nogil=True)
def attribute_lattices(opl, ls, dc, lims, steps, faint_below, factor, op_out, scale_out, dc_out):
    """``quantize.attribute_lattices`` in one pass: the same float64 operations on each value
    (numpy makes five passes and four temporaries; playbot's 500k rows: ~30 ms → ~4 ms).
    ``lims``: the opacity, log-scale and colour clamps (lo, hi each); ``steps``: the opacity,
    scale and colour steps, then the scale and colour steps on the faint lattice (``factor`` ×);
    ``factor`` 1: no faint lattice. Returns False, leaving the outputs unfinished, when a value
    is NaN (numpy's cast of a NaN is the platform's: the caller takes numpy's path)."""
    for i in range(len(opl)):
        x = opl[i]
        if x != x:
            return False
        o = np.int32(_on_lattice(x, lims[0], lims[1], steps[0]))
        op_out[i] = o
        faint = factor > 1 and o < faint_below
        s_step = steps[3] if faint else steps[1]
        c_step = steps[4] if faint else steps[2]
        mult = np.int32(factor) if faint else np.int32(1)
        for j in range(3):
            a = ls[i, j]
            b = dc[i, j]
            if a != a or b != b:
                return False
            scale_out[i, j] = np.int32(_on_lattice(a, lims[2], lims[3], s_step)) * mult
            dc_out[i, j] = np.int32(_on_lattice(b, lims[4], lims[5], c_step)) * mult
    return True


@_njit(nogil=True, error_model="numpy")  # (no zero-divisor test per value: the loop vectorises)
def sh_codes(src, rows, steps, clamp, out):
    """``quantize.to_qmap``'s higher-SH codes in one pass: row i's values from column 3 on
    (``src`` float32, (n, 3k); with ``rows``, source row ``rows[i]``) clamped to ±``clamp``,
    divided by their float32 step, rounded half to even, as numpy's float32 operations
    (playbot's 500k × 24: ~25 ms → ~8 ms)."""
    lo = np.float32(-clamp)
    hi = np.float32(clamp)
    gather = len(rows) > 0
    k = out.shape[1]
    for i in range(out.shape[0]):
        r = rows[i] if gather else i
        for j in range(k):  # (selects, not branches: the loop vectorises)
            v = src[r, j + 3]
            v = lo if v < lo else v
            v = hi if v > hi else v
            out[i, j] = np.int32(np.rint(v / steps[j]))


# -- the encoder's least-turned frame (quantize.canonical_axes, row by row) ------------------------


@_njit(nogil=True, inline="always")
def _closest(q0, q1, q2, q3, margin, oct_index):
    """``quantize._closest_to_identity`` for one unit quaternion."""
    a = (abs(q0), abs(q1), abs(q2), abs(q3))
    v1, i1 = a[0], 0
    for j in range(1, 4):
        if a[j] > v1:
            v1, i1 = a[j], j
    v2, i2 = -1.0, 0
    for j in range(4):
        c = -1.0 if j == i1 else a[j]
        if c > v2:
            v2, i2 = c, j
    pair = (v1 + v2) * np.sqrt(0.5)
    every = (a[0] + a[1] + a[2] + a[3]) * 0.5
    kind = 1 if pair > v1 else 0
    best = max(v1, pair)
    if every > best:
        kind = 2
    best = max(best, every)
    if not best > a[3] + margin:
        return 0
    q = (q0, q1, q2, q3)
    code = 0
    digit = 1
    for j in range(4):
        used = j == i1 or (kind >= 1 and j == i2) or kind == 2
        s = (-1 if q[j] < 0 else 1) if used else 0
        code += ((s if j == 3 else -s) + 1) * digit
        digit *= 3
    return oct_index[code]


@_njit(nogil=True, inline="always")
def _quantize(q0, q1, q2, q3, m, s):
    """``quantize.quantize_rotations`` for one quaternion: (index, three codes)."""
    norm = np.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3)
    c = (q0 / norm, q1 / norm, q2 / norm, q3 / norm)
    best, idx = abs(c[0]), 0
    for j in range(1, 4):
        if abs(c[j]) > best:
            best, idx = abs(c[j]), j
    sign = -1.0 if c[idx] < 0 else 1.0
    k0 = c[1] if idx == 0 else c[0]
    k1 = c[2] if idx <= 1 else c[1]
    k2 = c[3] if idx <= 2 else c[2]
    r0 = min(max(np.rint(k0 * sign / s), -m), m)
    r1 = min(max(np.rint(k1 * sign / s), -m), m)
    r2 = min(max(np.rint(k2 * sign / s), -m), m)
    return idx, np.int32(r0), np.int32(r1), np.int32(r2)


@_njit(nogil=True, inline="always")
def _dequantize(idx, r0, r1, r2, s):
    """``quantize.dequantize_rotations`` for one code: float32 (x, y, z, w)."""
    c0, c1, c2 = np.float64(r0) * s, np.float64(r1) * s, np.float64(r2) * s
    ss = c0 * c0
    ss += c1 * c1
    ss += c2 * c2
    amax = np.float64(max(max(abs(r0), abs(r1)), abs(r2))) * s
    amax += 0.25 * s
    big = max(np.sqrt(max(1.0 - ss, 0.0)), amax)
    q0 = big if idx == 0 else c0
    q1 = big if idx == 1 else (c0 if idx == 0 else c1)
    q2 = big if idx == 2 else (c2 if idx == 3 else c1)
    q3 = big if idx == 3 else c2
    norm = q0 * q0
    norm += q1 * q1
    norm += q2 * q2
    norm += q3 * q3
    norm = np.sqrt(norm)
    return np.float32(q0 / norm), np.float32(q1 / norm), np.float32(q2 / norm), np.float32(q3 / norm)


@_njit(nogil=True)
def canonical_axes(
    q, qn, scale, lat_m, lat_s, oct_q, oct_axes, oct_index, oct_mul, half_turn, idx_out, rot_out, turn_out
):
    """``quantize.canonical_axes`` row by row: the same float64 operations in the same order, so
    the same codes. ``q`` the rotations as given, ``qn`` normalised by numpy (whose row sums
    associate differently); each row's lattice (``lat_m``, ``lat_s``), whose step is also the
    margin a frame must win by; ``scale`` (N × 3) is permuted in place. ``turn_out``: each row's
    relabelling (the frame's turn, then canonical_rotations' half-turn, ``half_turn[index]``)."""
    for i in range(q.shape[0]):
        x, y, z, w = q[i, 0], q[i, 1], q[i, 2], q[i, 3]
        m, s = lat_m[i], lat_s[i]
        k = _closest(qn[i, 0], qn[i, 1], qn[i, 2], qn[i, 3], s, oct_index)
        turn = 0
        for it in range(4):
            if k != 0:
                turn = oct_mul[turn, k]
                s0, s1, s2 = scale[i, oct_axes[k, 0]], scale[i, oct_axes[k, 1]], scale[i, oct_axes[k, 2]]
                scale[i, 0], scale[i, 1], scale[i, 2] = s0, s1, s2
            elif it > 0:
                break
            bx, by, bz, bw = oct_q[turn, 0], oct_q[turn, 1], oct_q[turn, 2], oct_q[turn, 3]
            fx = w * bx + x * bw + y * bz - z * by
            fy = w * by - x * bz + y * bw + z * bx
            fz = w * bz + x * by - y * bx + z * bw
            fw = w * bw - x * bx - y * by - z * bz
            idx, r0, r1, r2 = _quantize(fx, fy, fz, fw, m, s)
            for _ in range(4):  # stable_rotations: to the code its own decode re-encodes to
                d0, d1, d2, d3 = _dequantize(idx, r0, r1, r2, s)
                idx2, t0, t1, t2 = _quantize(
                    np.float64(d0), np.float64(d1), np.float64(d2), np.float64(d3), m, s
                )
                if idx2 == idx and t0 == r0 and t1 == r1 and t2 == r2:
                    break
                idx, r0, r1, r2 = idx2, t0, t1, t2
            turn_out[i] = oct_mul[turn, half_turn[idx]]
            # canonical_rotations: the same ellipsoid with w dropped (kept a, b, c → w-form)
            if idx == 0:
                r0, r1, r2 = -r2, -r1, r0
            elif idx == 1:
                r0, r1, r2 = r1, -r2, -r0
            elif idx == 2:
                r0, r1, r2 = -r1, r0, -r2
            idx = 3
            d0, d1, d2, d3 = _dequantize(idx, r0, r1, r2, s)
            k = _closest(np.float64(d0), np.float64(d1), np.float64(d2), np.float64(d3), s, oct_index)
        idx_out[i] = idx
        rot_out[i, 0], rot_out[i, 1], rot_out[i, 2] = r0, r1, r2


@_njit(nogil=True)
def rotation_bits(c0, c1, c2, t0, t1, t2, t3, base, op, faint_below, faint_rot, out):
    """``quantize.rotation_bits`` in one pass (numpy's takes ~10): ``base`` plus one bit per tier
    (``t0..t3``, unused ones beyond any spread) the log-scale spread of (c0, c1, c2) reaches, less
    ``faint_rot`` where the opacity code is below ``faint_below`` (``op`` empty: no faint
    rotations). Tiers as scalars and no branch in the loop: it vectorises (a loop over a tier
    array ran 6× slower). Contiguous columns (an (N, 3) array's strided ones, or its rows, ran
    ~4× slower than copying them first)."""
    faint = len(op) > 0
    for k in range(len(out)):
        a, b, c = np.int64(c0[k]), np.int64(c1[k]), np.int64(c2[k])
        s = max(max(a, b), c) - min(min(a, b), c)
        f = faint_rot * np.int64(op[k] < faint_below) if faint else 0
        out[k] = base + np.int64(s >= t0) + np.int64(s >= t1) + np.int64(s >= t2) + np.int64(s >= t3) - f


@_njit(nogil=True)
def rotations_within(rot, bits, maxima, largest):
    """Whether every component of ``rot`` (N × 3) lies within its row's lattice: ±``maxima[bits[i]]``
    (±``largest`` for all when ``bits`` is empty). One pass; numpy makes five and two copies."""
    scalar = len(bits) == 0
    bad = False
    for i in range(rot.shape[0]):
        m = largest if scalar else maxima[bits[i]]
        r0, r1, r2 = np.int64(rot[i, 0]), np.int64(rot[i, 1]), np.int64(rot[i, 2])
        bad |= (abs(r0) > m) | (abs(r1) > m) | (abs(r2) > m)
    return not bad


_DQ_BLOCK = 1024  # rows per block in dequantize_rotations (its columns stay in L1)


_SH_BLOCK = 32  # rows per tile in dequantize_sh (its buffer, 3k × 32 floats, stays in L1)


@_njit(nogil=True)
def dequantize_sh(dc, rest, steps, out):
    """``quantize.dequantize_fields``' SH: row i of ``out`` (n, 3k) float32 is ``float32(v) *
    steps`` of DC ``dc[i]`` then the rest ``rest[i]`` (n, 3k − 3, any layout: a decoded map's is
    column-major), the same single float32 rounding as numpy's product. Tile by tile: each rest
    column's 32 rows read contiguously into a small column buffer, then the tile's rows written
    out whole, in order (1M SH 3: 96 → 69 ms; writing each output column of a 256-row block in
    turn touched every output line 15 times, numpy's 16k-row blocks 89 ms; equal below ~16k)."""
    n = out.shape[0]
    k3 = rest.shape[1]
    s0 = steps[0]
    buf = np.empty((k3, _SH_BLOCK), np.float32)
    for b in range(0, n, _SH_BLOCK):
        m = min(n - b, _SH_BLOCK)
        for j in range(k3):
            s = steps[3 + j]
            for i in range(m):
                buf[j, i] = np.float32(rest[b + i, j]) * s
        for i in range(m):
            for c in range(3):
                out[b + i, c] = np.float32(dc[b + i, c]) * s0
            for j in range(k3):
                out[b + i, 3 + j] = buf[j, i]


@_njit(nogil=True, error_model="numpy")
def dequantize_rotations(idx, rot, bits, steps, out):
    """``quantize.dequantize_rotations`` (the same float64 operations): float32 (x, y, z, w) into
    ``out``; row i's lattice step ``steps[bits[i]]`` (``steps[0]`` for all when ``bits`` is empty).
    Block by block through column buffers, where the processor takes four rows per instruction
    (1.14 → 0.69 ms on guitar's 91k; rows of a 2-D array are not vectorised). Each operation is
    an exactly rounded IEEE one either way, so the floats are the same. (``error_model="numpy"``:
    without a divide-by-zero branch; the norm is at least a quarter step.)"""
    n = len(idx)
    b = np.empty(_DQ_BLOCK, np.float64)
    r0, r1, r2 = (
        np.empty(_DQ_BLOCK, rot.dtype),
        np.empty(_DQ_BLOCK, rot.dtype),
        np.empty(_DQ_BLOCK, rot.dtype),
    )
    o0, o1 = np.empty(_DQ_BLOCK, np.float32), np.empty(_DQ_BLOCK, np.float32)
    o2, o3 = np.empty(_DQ_BLOCK, np.float32), np.empty(_DQ_BLOCK, np.float32)
    k = np.empty(_DQ_BLOCK, np.uint8)
    scalar = len(bits) == 0
    for start in range(0, n, _DQ_BLOCK):
        m = min(_DQ_BLOCK, n - start)
        for i in range(m):
            r0[i], r1[i], r2[i] = rot[start + i, 0], rot[start + i, 1], rot[start + i, 2]
            k[i] = idx[start + i]
            b[i] = steps[0] if scalar else steps[bits[start + i]]
        _dequantize_block(k, r0, r1, r2, b, o0, o1, o2, o3, m)
        for i in range(m):
            out[start + i, 0], out[start + i, 1] = o0[i], o1[i]
            out[start + i, 2], out[start + i, 3] = o2[i], o3[i]


@_njit(nogil=True, inline="always", error_model="numpy")
def _dequantize_block(idx, r0, r1, r2, steps, o0, o1, o2, o3, m):
    """:func:`_dequantize` over the first ``m`` entries of columns (a loop the compiler vectorises)."""
    for i in range(m):
        o0[i], o1[i], o2[i], o3[i] = _dequantize(idx[i], r0[i], r1[i], r2[i], steps[i])


@_njit(nogil=True, inline="always")
def _turn_cost(r0, r1, r2, s, t0, t1, t2, t3, w0, w1, w2):
    """``quantize._turn_costs`` for one w-form code: Σ w_k δ_k², δ = t ⊗ q (q the code's
    rotation, t the conjugate source in the code's frame); inf where a decoder would not rebuild
    q as written (w not the largest component by a quarter step)."""
    x, y, z = np.float64(r0) * s, np.float64(r1) * s, np.float64(r2) * s
    amax = np.float64(max(max(abs(r0), abs(r1)), abs(r2))) * s + 0.25 * s
    w = np.sqrt(max(1.0 - (x * x + y * y + z * z), 0.0))
    dx = t3 * x + t0 * w + t1 * z - t2 * y
    dy = t3 * y - t0 * z + t1 * w + t2 * x
    dz = t3 * z + t0 * y - t1 * x + t2 * w
    c = w0 * dx * dx + w1 * dy * dy + w2 * dz * dz
    return c if w >= amax else np.inf


@_njit(nogil=True)
def refine_rotations(quats, scale, rot, lat_s, lat_m, ptab, vtab, off, oct_q, oct_index, turns, rounds):
    """``quantize.refine_rotations`` row by row (the same float64 operations, so the same codes):
    ``rot`` (N × 3 w-form codes) moved in place; ``ptab[code − largest + off]`` a scale code's
    blurred precision, in units of the row's largest axis, ``vtab`` its variance (1 / precision)."""
    for i in range(rot.shape[0]):
        c0, c1, c2 = scale[i, 0], scale[i, 1], scale[i, 2]
        if c0 == c1 and c1 == c2:
            continue  # a sphere: its rotation is zeroed
        o = off - max(max(c0, c1), c2)  # codes below the largest
        p0, p1, p2 = ptab[c0 + o], ptab[c1 + o], ptab[c2 + o]
        v0, v1, v2 = vtab[c0 + o], vtab[c1 + o], vtab[c2 + o]
        w0 = (p1 - p2) * (p1 - p2) * (v1 * v2)
        w1 = (p0 - p2) * (p0 - p2) * (v0 * v2)
        w2 = (p0 - p1) * (p0 - p1) * (v0 * v1)
        x, y, z, w = (
            np.float64(quats[i, 0]),
            np.float64(quats[i, 1]),
            np.float64(quats[i, 2]),
            np.float64(quats[i, 3]),
        )
        inv = 1.0 / np.sqrt(x * x + y * y + z * z + w * w)
        x, y, z, w = x * inv, y * inv, z * inv, w * inv
        s, m = lat_s[i], lat_m[i]
        r0, r1, r2 = rot[i, 0], rot[i, 1], rot[i, 2]
        k = turns[i]
        b0, b1, b2, b3 = -oct_q[k, 0], -oct_q[k, 1], -oct_q[k, 2], oct_q[k, 3]
        # t = conj(turn) ⊗ conj(source): the conjugate source in the code's frame
        t0 = -b3 * x + b0 * w - b1 * z + b2 * y
        t1 = -b3 * y + b0 * z + b1 * w - b2 * x
        t2 = -b3 * z - b0 * y + b1 * x + b2 * w
        t3 = b3 * w + b0 * x + b1 * y + b2 * z
        best = _turn_cost(r0, r1, r2, s, t0, t1, t2, t3, w0, w1, w2)
        for _ in range(rounds):
            n0, n1, n2 = r0, r1, r2  # the nearest so far
            for j in range(6):  # the six neighbours (one component ±1), in order
                d = 1 if j & 1 else -1
                u0, u1, u2 = (
                    r0 + (d if j < 2 else 0),
                    r1 + (d if 2 <= j < 4 else 0),
                    r2 + (d if j >= 4 else 0),
                )
                if max(max(abs(u0), abs(u1)), abs(u2)) > m:
                    continue  # off the lattice: not a code
                cost = _turn_cost(u0, u1, u2, s, t0, t1, t2, t3, w0, w1, w2)
                if cost < best * (1.0 - 1e-9):
                    # and its decoded rotation stays in its frame (canonical_axes' test)
                    d0, d1, d2, d3 = _dequantize(3, u0, u1, u2, s)
                    if (
                        _closest(np.float64(d0), np.float64(d1), np.float64(d2), np.float64(d3), s, oct_index)
                        == 0
                    ):
                        best, n0, n1, n2 = cost, u0, u1, u2
            if n0 == r0 and n1 == r1 and n2 == r2:
                break
            r0, r1, r2 = n0, n1, n2
        rot[i, 0], rot[i, 1], rot[i, 2] = r0, r1, r2


# -- the encoder's coded stream bodies (entropy.encode_stream, enc41) ------------------------------


@_njit(nogil=True, inline="always")
def _put_varint(out, pos, v):
    """LEB128 of ``v`` (≥ 0) at ``out[pos:]``; returns the position after it."""
    while v >= 128:
        out[pos] = np.uint8((v & 127) | 128)
        v >>= 7
        pos += 1
    out[pos] = np.uint8(v)
    return pos + 1


@_njit(nogil=True)
def stream_tables(rows, lens, bounds, counts, out):
    """``entropy.encode_stream``'s part after its header, for every context, into ``out`` (large
    enough; returns the bytes used): per context its alphabet size A (varint; 0 where it holds no
    values), then ``tables.put_table`` of its scaled counts (``entropy._scaled``, padded to two
    symbols: u8 precision, varint length, the table's bits) and the ANS words of its symbols coded
    with the rebuilt frequencies (per lane: varint count, the words as little-endian u32).
    ``counts``: n_ctx × a symbol counts. One context (``len(bounds) == 2``): ``rows`` holds its
    lanes, lane l's symbols ``rows[l, :lens[l]]``; several: ``rows[0]`` holds them grouped by
    context, context c's at ``bounds[c]:bounds[c + 1]`` (one lane)."""
    n_ctx = len(bounds) - 1
    pos = 0
    for c in range(n_ctx):
        m = bounds[c + 1] - bounds[c]
        if m == 0:
            pos = _put_varint(out, pos, 0)
            continue
        last = 0
        total = 0
        for i in range(counts.shape[1]):
            if counts[c, i] > 0:
                last = i
            total += counts[c, i]
        a = max(last + 1, 2)
        f = np.zeros(a, np.int64)
        for i in range(last + 1):
            x = counts[c, i]
            if total > 65536:  # entropy._FREQ_TOTAL
                y = (x * 65536) // total
                f[i] = 1 if (x > 0 and y == 0) else y
            else:
                f[i] = x
        e = np.empty(a, np.int64)
        ftotal = 0
        top = 0
        for i in range(a):
            e[i] = _bit_length(np.uint64(f[i])) if f[i] > 0 else 0
            ftotal += f[i]
            top = max(top, e[i])
        top = max(1, min(17, top))  # tables._top_precision
        pos = _put_varint(out, pos, a)
        p = table_precision(f, e, np.float64(m) / np.float64(ftotal), top)
        rec = np.empty(a, np.int64)
        blob = np.empty(a * 28 // 8 + 8, np.uint8)  # tables._MAX_ENTRY_BITS
        nb = table_blob(f, e, p, rec, blob)
        out[pos] = np.uint8(p)
        pos = _put_varint(out, pos + 1, nb)
        out[pos : pos + nb] = blob[:nb]
        pos += nb
        cdf = quantized_cdf(rec)
        if n_ctx == 1:
            part, plen = rows, lens
        else:
            part = rows[:, bounds[c] : bounds[c + 1]]
            plen = np.full(1, m, np.int64)
        words = np.empty((part.shape[0], plen[0] + 2), np.uint32)
        nw = np.empty(part.shape[0], np.int64)
        ans_encode(part, plen, cdf, words, nw)
        for lane in range(part.shape[0]):
            pos = _put_varint(out, pos, nw[lane])
            for j in range(nw[lane]):
                x = words[lane, j]
                out[pos] = np.uint8(x & 255)
                out[pos + 1] = np.uint8((x >> 8) & 255)
                out[pos + 2] = np.uint8((x >> 16) & 255)
                out[pos + 3] = np.uint8(x >> 24)
                pos += 4
    return pos


@_njit(nogil=True)
def stream_stats(v, signed, zeros, both, u_out, sbl, table_bits, step, out):
    """``entropy.Stats`` of int64 ``v`` plus ``zeros`` zero values, and its ``best()``, in one call:
    :func:`stream_counts` (into ``both``: 257 small bins, then 65 big bit lengths), the zeros added
    to the bin of 0, :func:`bits_by_bound` into ``out`` (9), then the cheapest bound 4..8 with
    ``step`` bits charged per doubling (the first of equal costs, as ``Stats.best``). Returns that
    bound, or −1 where :func:`stream_counts` does not take the values (nothing usable written)."""
    small = both[:257]
    big_bl = both[257:]
    if stream_counts(v, signed, small, big_bl, u_out):
        return -1
    small[0] += zeros
    bits_by_bound(small, big_bl, sbl, len(v) + zeros, table_bits, out)
    best = 4
    for t in range(5, 9):
        if out[t] + step * t < out[best] + step * best:
            best = t
    return best


@_njit(nogil=True)
def stream_body(u, log2t, ctx, per, n_ctx, lanes, merged, out, out2, blob):
    """``entropy.encode_stream`` of zig-zagged int64 values ``u`` (n ≥ 1) at bound 2**log2t, after
    its header, in one call: the symbols (:func:`escape_symbols`: mantissa bits into ``blob``),
    laid out in ``lanes`` (one context) or grouped by ``ctx`` (n_ctx > 1; each context's count in
    ``per`` where ``per[0] ≥ 0``, else counted here), then :func:`stream_tables` into ``out``; with
    ``merged`` (n_ctx > 1) also the one-table form into ``out2``. Returns (status, bytes in out,
    bytes in out2, bytes in blob): status 1 = a constant (nothing written), 2 = not taken here (a
    context outside 0..n_ctx − 1, counts that disagree, or too large a table), 0 = written."""
    n = len(u)
    lo = u[0]
    hi = u[0]
    for i in range(n):
        lo = min(lo, u[i])
        hi = max(hi, u[i])
    if lo == hi:
        return 1, 0, 0, 0
    t = np.int64(1) << np.int64(log2t)
    if hi < t:
        a = hi + 1
        nblob = 0
        sym = u
    else:
        a = t + 64
        sym = np.empty(n, np.int64)
        nblob = escape_symbols(u, log2t, sym, blob)
    if n_ctx * a > (1 << 22):
        return 2, 0, 0, 0
    counts = np.zeros((n_ctx, a), np.int64)
    if n_ctx == 1:
        laid = np.empty((lanes, (n + lanes - 1) // lanes), np.int32)
        lane_symbols(sym, laid, counts[0])
        lens = np.empty(lanes, np.int64)
        for lane in range(lanes):
            lens[lane] = (n - lane + lanes - 1) // lanes
        bounds = np.zeros(2, np.int64)
        bounds[1] = n
        return 0, stream_tables(laid, lens, bounds, counts, out), 0, nblob
    bounds = np.zeros(n_ctx + 1, np.int64)
    if per[0] >= 0:
        for c in range(n_ctx):
            bounds[c + 1] = bounds[c] + per[c]
    else:
        for i in range(n):
            c = ctx[i]
            if c < 0 or c >= n_ctx:
                return 2, 0, 0, 0
            bounds[c + 1] += 1
        for c in range(n_ctx):
            bounds[c + 1] += bounds[c]
    if bounds[n_ctx] != n:
        return 2, 0, 0, 0
    grouped = np.empty((1, n), np.int32)
    if group_symbols(sym, ctx, bounds, grouped[0], counts):
        return 2, 0, 0, 0
    lens = np.zeros(1, np.int64)
    size = stream_tables(grouped, lens, bounds, counts, out)
    size2 = 0
    if merged:
        one = np.zeros((1, a), np.int64)
        flat = np.empty((1, n), np.int32)
        for i in range(n):
            flat[0, i] = np.int32(sym[i])
        for c in range(n_ctx):
            for j in range(a):
                one[0, j] += counts[c, j]
        lens[0] = n
        whole = np.zeros(2, np.int64)
        whole[1] = n
        size2 = stream_tables(flat, lens, whole, one, out2)
    return 0, size, size2, nblob


@_njit(nogil=True)
def counts_median(small, order, k):
    """``section._median_int``'s two middle ranks from a Stats' counts: with c the running sums of
    ``small[order]`` (``order``: the zig-zag code of each value −128..127, in value order), the
    first index where c exceeds k − 1 and the first where it exceeds k (``np.searchsorted(c,
    k − 1 / k, side="right")``; len(order) where none does)."""
    c = 0
    lo = len(order)
    for i in range(len(order)):
        c += small[order[i]]
        if lo == len(order) and c > k - 1:
            lo = i
        if c > k:
            return lo, i
    return lo, len(order)
