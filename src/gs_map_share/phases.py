"""Neighbour phases (container version 9): a channel's residuals coded in three interleaved phases,
each in the context of its neighbours in the section's order, decoded phase by phase.

A section's leaves travel in id order, and a scene's implicit ids number its Gaussians as the octree
visits them (``snapshot.spatial_ids``), so neighbours in the order are mostly neighbours in space.
Rows 0, 4, 8, … come first, in the channel's own context; then rows 2, 6, … in the context of the
sum of rows i − 2 and i + 2; then the odd rows in that of rows i ± 1 (the row before twice where
the one after is past the end). Every phase is one stream whose contexts the decoder computes from
the phases before it, in one vectorised pass: no value waits on the one before it (a context from
the previous value would make the ANS decoder switch tables symbol by symbol, and constriction, the
reference reader, could not decode it in bulk).

The context is the shifted sum's sign and log magnitude (``REACH`` buckets each way: 0, 1–2, 3–6,
7 and more), times the channel's own context (a faint row's values are on a coarser lattice; as a
neighbour it may count ``faint`` times its residual, in the others' units, ``WEIGHED``). The
shift, written after the choice byte, sets the bucket width to the channel's spread: the encoder
takes the bit length of the median |sum| less three (guitar, single level, quality 2: blue's
median |sum| is 29, shift 2; green's 8, shift 1; red's 4, shift 0 — each the best of 0..3).

Colour gains (guitar single level, DC colour: quality 2 1.776 → 1.664 B/G, quality 3 2.153 → 2.059;
with blue first, ``section._blue_first``, 1.728 → 1.621 and 2.097 → 2.005; the shift's share is
−0.011 at quality 2); opacity, scales and rotations did not (−0.003 to +0.01 B/G at any shift), so
only colour tries it (``section._code_attrs``), and only without a parent level (a parent's
prediction leaves the neighbours nothing: guitar progressive 9.163 → 9.158 B/G for 12 % more
encode time). Decoding costs a compiled pass for each phase's contexts and the tables of 14
contexts (guitar single level, quality 2: 18.2 → 21.0 ms, and ~0.45 ms more for the faint
weighing by the kernel's own timing; gunzip of its PLY 25 ms).
"""

from __future__ import annotations

import numpy as np

from . import jit
from .bitio import Reader, Writer
from .entropy import Groups, decode_stream, put_stream

REACH = 3  # log buckets each way: 2·3 + 1 = 7, times colour's 2 faint contexts ≤ the compiled decoder's 16
BUCKETS = 2 * REACH + 1
CLIP = (2 << REACH) - 1  # |t| from here on is in the last bucket
MAX_SHIFT = 31  # residuals are below 2**30: a sum of two is below 2**31 (2**34 weighed)
WEIGHED = 0x80  # in the shift byte: neighbours on the faint lattice count faint_factor times
MIN_VALUES = 4096  # shorter channels are not tried: three streams' tables for little
# kept where at least 2 % smaller: a phased channel costs its decoder ~20 ns a value more (the
# contexts' pass, twice the tables; guitar ~0.9 ms a channel), which a fine quality's noisy colour
# does not repay (guitar single level, quality 5: 1.5 / 3.1 / 0.6 % smaller by channel, decode
# 22 → 25 ms with all three against gunzip's 25; qualities 0–3 save 2–11 % a channel)
KEEP = 0.98
PHASES = ((2, 2), (1, 1))  # (first row, gap) of the phases after rows 0, 4, 8, …
_NO_BASE = np.zeros(0, np.int64)  # (the compiled loop's "no channel contexts")
_LOG = np.minimum(np.floor(np.log2(np.arange(CLIP + 1) + 1)), REACH).astype(np.int64)  # of min(|t|, CLIP)


def base_contexts(ctx) -> np.ndarray | None:
    """A channel's own contexts (an array or a :class:`Groups`) as int64, or None."""
    return None if ctx is None else np.asarray(ctx.ctx if isinstance(ctx, Groups) else ctx, np.int64)


def _neighbour_sums(
    res: np.ndarray, start: int, gap: int, base, faint: int, every: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start``, ``start + 2·gap``, … (every ``every``-th of them) and the int64 sums of their
    neighbours at ± gap (the row before twice where the one after is past the end), a neighbour
    on the faint lattice (``base`` context 1) times ``faint``: in the same units as the rest."""
    rows = np.arange(start, len(res), 2 * gap * every)
    after = rows + gap
    after[after >= len(res)] -= 2 * gap
    x, y = res[rows - gap].astype(np.int64), res[after].astype(np.int64)
    if base is not None and faint > 1:
        x *= np.where(base[rows - gap] == 1, faint, 1)
        y *= np.where(base[after] == 1, faint, 1)
    return rows, x + y


def choose_shift(res: np.ndarray, base=None, faint: int = 1) -> int:
    """The bucket shift for residuals ``res``: the bit length of the median |sum| of the odd rows'
    neighbours (every 8th odd row), less three, at least 0."""
    total = np.abs(_neighbour_sums(res, 1, 1, base, faint, every=8)[1])
    m = int(np.median(total)) if len(total) else 0
    return max(0, m.bit_length() - 3)


def contexts(res: np.ndarray, start: int, gap: int, shift: int, base, n_base: int, faint: int = 1) -> Groups:
    """The contexts of rows ``start``, ``start + 2·gap``, … of ``res`` (those of the phases before
    filled in), with their counts. ``base``: the channel's own contexts, each in 0..n_base − 1
    (callers take them from a :class:`Groups`, which checked that); ``faint``: the factor of the
    faint lattice, whose rows have context 1 (1: none)."""
    n_ctx = BUCKETS * n_base
    kernels = jit.kernels()
    if kernels is not None and res.dtype in (np.int32, np.int64):
        out = np.empty(len(range(start, len(res), 2 * gap)), np.int64)
        counts = np.zeros(n_ctx, np.int64)
        b = _NO_BASE if base is None else base
        kernels.phase_contexts(res, start, gap, shift, REACH, b, faint, out, counts)
        return Groups(out, n_ctx, counts)
    rows, total = _neighbour_sums(res, start, gap, base, faint)
    total >>= shift
    mag = _LOG[np.minimum(np.abs(total), CLIP)]
    k = np.where(total < 0, REACH - mag, REACH + mag)
    if base is not None:
        k += BUCKETS * base[rows]
    return Groups(k, n_ctx)


def put(w: Writer, res: np.ndarray, ctx, n_ctx: int, faint: int = 1) -> None:
    """``res`` (int64) in phases: a byte (the shift, ``WEIGHED`` where faint neighbours count
    ``faint`` times), then one stream per phase. On a faint lattice both ways are tried and the
    smaller kept (guitar: weighed, −0.011 B/G; playbot: not, weighing would cost +0.015)."""
    base = base_contexts(ctx)
    first = Writer()  # rows 0, 4, 8, … in the channel's own context: the same either way
    put_stream(first, res[0::4], ctx=None if base is None else base[0::4], n_ctx=n_ctx)
    best = b""
    for f in (faint, 1) if faint > 1 and base is not None else (1,):
        out = Writer()
        shift = choose_shift(res, base, f)
        out.u8(shift | (WEIGHED if f > 1 else 0))
        out.raw(first.getvalue())
        for start, gap in PHASES:
            k = contexts(res, start, gap, shift, base, n_ctx, f)
            put_stream(out, res[start :: 2 * gap], ctx=k, n_ctx=BUCKETS * n_ctx)
        if not best or len(out.getvalue()) < len(best):
            best = out.getvalue()
    w.raw(best)


def get(r: Reader, n: int, ctx, n_ctx: int, limit: int, faint: int = 1) -> np.ndarray:
    """Inverse of :func:`put`: ``n`` int32 residuals, each |value| ≤ ``limit``."""
    byte = r.u8()
    shift, faint = byte & ~WEIGHED, faint if byte & WEIGHED else 1
    if shift > MAX_SHIFT:
        raise r.fail(f"phase shift {shift} above {MAX_SHIFT}")
    base = base_contexts(ctx)
    out = np.empty(n, np.int32)
    first = out[0::4]
    first[...] = decode_stream(
        r, len(first), ctx=None if base is None else base[0::4], n_ctx=n_ctx, int32=True, limit=limit
    )
    for start, gap in PHASES:
        k = contexts(out, start, gap, shift, base, n_ctx, faint)
        out[start :: 2 * gap] = decode_stream(
            r, len(k.ctx), ctx=k, n_ctx=BUCKETS * n_ctx, int32=True, limit=limit
        )
    return out
