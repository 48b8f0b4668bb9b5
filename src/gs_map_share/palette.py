"""Distinct rows of an integer or float array, fast: scenes that were vector-quantised (SOG's
64k-entry SH palette) repeat whole rows of SH coefficients, and both the choice of their step
(:meth:`QuantParams.for_shared_sh`) and their coding (a palette, ``section``) start from that."""

from __future__ import annotations

import numpy as np

from . import jit

# a palette pays when there are at least this many rows and at most one distinct row in this many:
# below, its own streams cost more than it saves (the palette coder in ``section`` and the step
# rule of ``QuantParams.for_shared_sh`` both use these)
PALETTE_MIN_ROWS = 4096
PALETTE_MIN_SHARING = 4


def is_palette(n: int, k: int) -> bool:
    """Whether ``k`` distinct rows among ``n`` are worth coding as a palette."""
    return n >= PALETTE_MIN_ROWS and k <= n // PALETTE_MIN_SHARING


def palette_of(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`unique_rows` of ``rows`` where their distinct rows are worth coding as a palette
    (at least PALETTE_MIN_ROWS rows, at most one distinct in PALETTE_MIN_SHARING), else None.
    Compiled, the count stops as soon as there are too many distinct rows: a trainer's SH (every
    row distinct) is told after a quarter of its rows (1M rows of SH 3: 0.09 → ~0.02 s)."""
    n = len(rows)
    if n < PALETTE_MIN_ROWS:
        return None
    return _unique_rows(rows, n // PALETTE_MIN_SHARING)


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)`` over the distinct rows, in order of first use: ``first`` (increasing)
    the row where each distinct one first appears, ``inverse`` each row's distinct index. Rows of
    4-byte values (int32 or float32, compared as bits). Compiled: one pass over a hash table of
    128-bit row hashes (:func:`.kernels.unique_rows`, ~5× faster on playbot's 500k × 24; why it
    does not compare rows, and why that is safe, is said there). Plain: a 64-bit hash per row
    (one int64 sort instead of a row-wise one), verified, with the exact row-wise sort as the
    fallback on a collision."""
    out = _unique_rows(rows, None)
    assert out is not None  # (no limit)
    return out


def _unique_rows(rows: np.ndarray, limit: int | None) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`unique_rows`, or None when there are more than ``limit`` distinct rows."""
    rows = np.ascontiguousarray(rows)
    if rows.dtype.itemsize != 4:
        raise ValueError(f"unique_rows takes 4-byte values, got {rows.dtype}")
    bits = rows.view(np.int32)
    kernels = jit.kernels()
    if kernels is not None and bits.ndim == 2:
        first = np.empty(len(bits), np.int64)
        inv = np.empty(len(bits), np.int64)
        k = kernels.unique_rows(bits, first, inv, len(bits) if limit is None else limit)
        return None if limit is not None and k > limit else (first[:k].copy(), inv)
    mix = np.random.default_rng(0).integers(1, 1 << 62, rows.shape[1], dtype=np.int64) | 1
    with np.errstate(over="ignore"):
        h = bits @ mix  # int64, wrapping
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    if not np.array_equal(bits[first[inv]], bits):  # a collision: the exact, slower way
        v = bits.view(np.dtype((np.void, 4 * rows.shape[1]))).ravel()
        _, first, inv = np.unique(v, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
    if limit is not None and len(first) > limit:
        return None
    order = np.argsort(first)  # into order of first use (first rows are distinct: no ties)
    rank = np.empty(len(first), np.int64)
    rank[order] = np.arange(len(first))
    return first[order], rank[inv]
