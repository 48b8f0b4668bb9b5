"""The decoder's scalar loops, compiled with numba (imported only through :func:`.jit.kernels`).

Each has a plain path beside it that gives the same result (see :mod:`.jit`): ``ans_decode`` beside
constriction's decoder (:mod:`.ans_decode`), ``read_table_entries`` beside ``tables._read_entries_py``.
Module-level functions, so numba's on-disk cache (``cache=True``) serves later processes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

PRECISION = 24  # constriction's DefaultContiguousCategoricalEntropyModel
LUT_BITS = 12  # quantile buckets of the ANS lookup table (12 measured best of 12..15)
_FLAG = np.uint64(1) << np.uint64(63)


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def ans_decode(words, freq, out, zigzag):
    """Decode len(out) symbols (unzigzagged with ``zigzag``); returns 0 (ended where it should), 1 (data left over), 2 (the
    last word is zero: constriction refuses it)."""
    cdf = quantized_cdf(freq)
    # per quantile bucket (the top 12 of the 24 bits): ``symbol | left << 9 | frequency << 33``
    # when one symbol covers the whole bucket (one load decodes it), else the flag bit 63 and
    # the symbol holding the bucket's first quantile (a short search from there)
    lut = np.empty(1 << LUT_BITS, np.uint64)
    width = np.uint32(1 << (PRECISION - LUT_BITS))
    s = 0
    for b in range(1 << LUT_BITS):
        start = np.uint32(b << (PRECISION - LUT_BITS))
        while cdf[s + 1] <= start:
            s += 1
        if cdf[s + 1] - start >= width:
            f = np.uint64(cdf[s + 1] - cdf[s])
            lut[b] = np.uint64(s) | (np.uint64(cdf[s]) << np.uint64(9)) | (f << np.uint64(33))
        else:
            lut[b] = np.uint64(s) | _FLAG
    word_bits = np.uint64(32)
    prec = np.uint64(PRECISION)
    mask = np.uint64((1 << PRECISION) - 1)
    lut_shift = np.uint64(PRECISION - LUT_BITS)
    m9, m24, nine, flag = np.uint64(511), np.uint64((1 << 24) - 1), np.uint64(9), _FLAG
    low = np.uint64(1) << word_bits
    pos = len(words)
    state = np.uint64(0)
    if pos > 0:
        pos -= 1
        if words[pos] == 0:
            return 2
        state = np.uint64(words[pos])
        while pos > 0:
            pos -= 1
            state = (state << word_bits) | np.uint64(words[pos])
            if state >= low:
                break
    for i in range(len(out)):
        q = state & mask
        e = lut[q >> lut_shift]
        s = np.int64(e & m9)
        if e & flag:
            while np.uint64(cdf[s + 1]) <= q:
                s += 1
            left = np.uint64(cdf[s])
            f = np.uint64(cdf[s + 1]) - left
        else:
            left = (e >> nine) & m24
            f = e >> np.uint64(33)
        state = (state >> prec) * f + (q - left)
        if state < low and pos > 0:
            pos -= 1
            state = (state << word_bits) | np.uint64(words[pos])
        out[i] = (s >> 1) ^ -(s & 1) if zigzag else s
    return 0 if state == 0 else 1


@njit(cache=True, nogil=True)
def read_table_entries(win, prefix, kl, mask, sh, base, nb, max_e, out):
    """The loop of ``tables._read_entries_py``, compiled: same entries, same (code, value)."""
    a = len(out)
    pos, e, i = 0, 0, 0
    one = np.uint64(1)
    while i < a:
        x = win[pos >> 3] >> np.uint64(pos & 7)
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
            return (1 if pos + 7 > nb else 2), 0
        adv = t & 15
        pos += adv
        if pos > nb:
            return 1, 0
        e += (t >> 4) - 64
        if e < 0 or e > max_e:
            return 3, e
        if e:
            pos += kl[e]
            if pos > nb:
                return 1, 0
            out[i] = base[e] + (np.int64((x >> np.uint64(adv)) & np.uint64(mask[e])) << sh[e])
        else:
            out[i] = 0
        i += 1
    return 0, pos
