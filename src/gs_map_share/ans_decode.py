"""A table-driven decoder for the ANS words :mod:`.entropy` writes with ``constriction``.

The format is constriction's: its ``AnsCoder`` (64-bit state, 32-bit words read from the end, as a
stack) over its fast-quantised leaky ``Categorical`` model (``perfect=False``, 24-bit precision).
constriction finds each symbol by a binary search over the model's CDF (~2.4 ns a step, 15–25 ns a
symbol at our alphabets); here a 4,096-bucket table over the top 12 bits of the quantile names the
symbol, its CDF and frequency in one load for all but the buckets a symbol boundary crosses: ~4.5 ns
a symbol (the state's dependency chain: one load, a multiply). The encoder stays
constriction's, and constriction stays the reference reader: the tests decode the same streams with
both and require equal symbols and equal verdicts on malformed ones.

The loop (:mod:`.kernels`) is compiled with numba when it is installed (:mod:`.jit`); without numba,
:func:`decode_symbols` returns ``None`` and the caller uses constriction.
"""

from __future__ import annotations

import numpy as np

from . import jit

# what the compiled decoder's status codes mean (constriction refuses the same data)
VERDICTS = {
    1: "entropy-coded data does not end where it should",
    2: "ANS compressed data never ends in a zero word",
}


def decode_symbols(
    words: np.ndarray,
    freq: np.ndarray,
    m: int,
    out: np.ndarray | None = None,
    zigzag: bool = False,
    split: int | None = None,
) -> tuple[np.ndarray, str | None] | None:
    """``m`` symbols (int32, into ``out`` when given) of a stream constriction's ``AnsCoder`` wrote
    with ``Categorical(freq / freq.sum(), perfect=False)``, each mapped ``s → (s >> 1) ^ −(s & 1)``
    with ``zigzag``; and ``None`` or what was wrong with the data (the verdicts constriction gives).
    ``split``: two lanes (stream mode 6), ``words[:split]`` coding the even values and
    ``words[split:]`` the odd ones; the first lane's fault is named. ``None`` instead when the
    compiled decoder is unavailable."""
    kernels = jit.kernels()
    if kernels is None or len(freq) > kernels.MAX_SYMBOLS:
        return None
    if out is None:
        out = np.empty(m, np.int32)
    words = np.ascontiguousarray(words, np.uint32)
    freq = np.asarray(freq, np.int64)
    if split is None:
        return out, VERDICTS.get(kernels.ans_decode(words, freq, out, zigzag))
    status = np.zeros(2, np.int64)
    kernels.ans_decode_pair(words, split, freq, out, zigzag, status)
    return out, VERDICTS.get(int(status[0]) or int(status[1]))
