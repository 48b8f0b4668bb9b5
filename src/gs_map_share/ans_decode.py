"""A table-driven decoder for the ANS words :mod:`.entropy` writes with ``constriction``.

The format is constriction's: its ``AnsCoder`` (64-bit state, 32-bit words read from the end, as a
stack) over its fast-quantised leaky ``Categorical`` model (``perfect=False``, 24-bit precision).
constriction finds each symbol by a binary search over the model's CDF (~2.4 ns a step, 15–25 ns a
symbol at our alphabets); here a 4,096-bucket table over the top 12 bits of the quantile names the
symbol at once for all but the rare symbols narrower than a bucket, in ~4 ns. The encoder stays
constriction's, and constriction stays the reference reader: the tests decode the same streams with
both and require equal symbols and equal verdicts on malformed ones.

The loop is compiled with numba when it is installed (an optional dependency: requirements.txt has
it, a ROS install may not); without numba, :func:`decode_symbols` returns ``None`` and the caller
uses constriction. ``GS_MAP_SHARE_ANS=constriction`` forces the reference path.
"""

from __future__ import annotations

import os

import numpy as np

PRECISION = 24  # constriction's DefaultContiguousCategoricalEntropyModel
_LUT_BITS = 12

_kernel = None  # the compiled loop, or False when numba is absent or switched off


def quantized_cdf(freq: np.ndarray) -> np.ndarray:
    """constriction's fast quantisation of ``freq / freq.sum()`` (``Categorical(p, perfect=False)``):
    the left CDF of symbol i is ``floor(c_i * scale) + i`` with ``c_i`` the running float64 sum of
    the probabilities before i and ``scale = (2**24 − A) / sum(p)``: every symbol gets at least one
    slot. Sequential sums (``np.cumsum``), as constriction's fold; uint32, length A + 1."""
    p = np.asarray(freq, np.int64).astype(np.float64) / float(np.sum(freq))
    a = len(p)
    csum = np.cumsum(p)
    scale = float((1 << PRECISION) - a) / float(csum[-1])
    left = np.empty(a + 1, np.float64)
    left[0] = 0.0
    left[1:] = csum
    left[:a] *= scale
    cdf = left.astype(np.uint64)  # truncation toward zero, as Rust's `as u32` for these values
    cdf[:a] += np.arange(a, dtype=np.uint64)
    cdf[a] = 1 << PRECISION
    return cdf.astype(np.uint32)


def _bucket_table(cdf: np.ndarray) -> np.ndarray:
    """For each of the 2**12 quantile buckets, the symbol holding the bucket's first quantile."""
    starts = np.arange(1 << _LUT_BITS, dtype=np.uint32) << np.uint32(PRECISION - _LUT_BITS)
    return (np.searchsorted(cdf[:-1], starts, side="right") - 1).astype(np.int32)


def _compile():
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(words, cdf, lut, out):  # pragma: no cover - compiled; run by the tests through numba
        """Decode len(out) symbols; returns 0 (ended where it should), 1 (data left over), 2 (the
        last word is zero: constriction refuses it)."""
        word_bits = np.uint64(32)
        prec = np.uint64(PRECISION)
        mask = np.uint64((1 << PRECISION) - 1)
        lut_shift = np.uint64(PRECISION - _LUT_BITS)
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
            s = lut[q >> lut_shift]
            while np.uint64(cdf[s + 1]) <= q:
                s += 1
            left = np.uint64(cdf[s])
            state = (state >> prec) * (np.uint64(cdf[s + 1]) - left) + (q - left)
            if state < low and pos > 0:
                pos -= 1
                state = (state << word_bits) | np.uint64(words[pos])
            out[i] = s
        return 0 if state == 0 else 1

    return kernel


def _get_kernel():
    global _kernel
    if _kernel is None:
        _kernel = False
        if os.environ.get("GS_MAP_SHARE_ANS", "") != "constriction":
            try:
                _kernel = _compile()
            except ImportError:
                pass
    return _kernel


def available() -> bool:
    """Whether the compiled decoder is in use (numba installed, not switched off)."""
    return bool(_get_kernel())


def decode_symbols(words: np.ndarray, freq: np.ndarray, m: int) -> tuple[np.ndarray, str | None] | None:
    """``m`` symbols (int32) of a stream constriction's ``AnsCoder`` wrote with
    ``Categorical(freq / freq.sum(), perfect=False)``, and ``None`` or what was wrong with the data
    (the verdicts constriction gives). ``None`` instead when the compiled decoder is unavailable."""
    kernel = _get_kernel()
    if not kernel:
        return None
    cdf = quantized_cdf(freq)
    out = np.empty(m, np.int32)
    code = kernel(np.ascontiguousarray(words, np.uint32), cdf, _bucket_table(cdf), out)
    if code == 2:
        return out, "ANS compressed data never ends in a zero word"
    return out, (None if code == 0 else "entropy-coded data does not end where it should")
