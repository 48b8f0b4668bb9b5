"""A table-driven decoder for the ANS words :mod:`.entropy` writes with ``constriction``.

The format is constriction's: its ``AnsCoder`` (64-bit state, 32-bit words read from the end, as a
stack) over its fast-quantised leaky ``Categorical`` model (``perfect=False``, 24-bit precision).
constriction finds each symbol by a binary search over the model's CDF (~2.4 ns a step, 15–25 ns a
symbol at our alphabets); here a 4,096-bucket table over the top 12 bits of the quantile names the
symbol, its CDF and frequency in one load for all but the buckets a symbol boundary crosses: ~4.5 ns
a symbol (the state's dependency chain: one load, a multiply). The encoder stays
constriction's, and constriction stays the reference reader: the tests decode the same streams with
both and require equal symbols and equal verdicts on malformed ones.

The loop is compiled with numba when it is installed (:mod:`.jit`); without numba,
:func:`decode_symbols` returns ``None`` and the caller uses constriction.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .jit import Compiled

PRECISION = 24  # constriction's DefaultContiguousCategoricalEntropyModel
_LUT_BITS = 12
_FLAG = np.uint64(1) << np.uint64(63)


def _compile(numba):
    @numba.njit(cache=True, nogil=True)
    def quantized_cdf(freq):  # pragma: no cover - compiled
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

    @numba.njit(cache=True, nogil=True)
    def decode(words, freq, out, zigzag):  # pragma: no cover - compiled
        """Decode len(out) symbols (unzigzagged with ``zigzag``); returns 0 (ended where it should), 1 (data left over), 2 (the
        last word is zero: constriction refuses it)."""
        cdf = quantized_cdf(freq)
        # per quantile bucket (the top 12 of the 24 bits): ``symbol | left << 9 | frequency << 33``
        # when one symbol covers the whole bucket (one load decodes it), else the flag bit 63 and
        # the symbol holding the bucket's first quantile (a short search from there)
        lut = np.empty(1 << _LUT_BITS, np.uint64)
        width = np.uint32(1 << (PRECISION - _LUT_BITS))
        s = 0
        for b in range(1 << _LUT_BITS):
            start = np.uint32(b << (PRECISION - _LUT_BITS))
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
        lut_shift = np.uint64(PRECISION - _LUT_BITS)
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

    return SimpleNamespace(quantized_cdf=quantized_cdf, decode=decode)


KERNEL = Compiled(_compile)


def available() -> bool:
    """Whether the compiled decoder is in use (numba installed, not switched off)."""
    return bool(KERNEL.get())


def decode_symbols(
    words: np.ndarray, freq: np.ndarray, m: int, out: np.ndarray | None = None, zigzag: bool = False
) -> tuple[np.ndarray, str | None] | None:
    """``m`` symbols (int32, into ``out`` when given) of a stream constriction's ``AnsCoder`` wrote
    with ``Categorical(freq / freq.sum(), perfect=False)``, each mapped ``s → (s >> 1) ^ −(s & 1)``
    with ``zigzag``; and ``None`` or what was wrong with the data (the verdicts constriction gives).
    ``None`` instead when the compiled decoder is unavailable."""
    kernel = KERNEL.get()
    if not kernel:
        return None
    if out is None:
        out = np.empty(m, np.int32)
    code = kernel.decode(np.ascontiguousarray(words, np.uint32), np.asarray(freq, np.int64), out, zigzag)
    if code == 2:
        return out, "ANS compressed data never ends in a zero word"
    return out, (None if code == 0 else "entropy-coded data does not end where it should")
