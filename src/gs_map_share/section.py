"""A *section*: a set of Gaussians coded as an octree with levels of detail (one TILES chunk and one
LEVEL chunk per level). Snapshots are one section; a delta's added Gaussians are another.

Level k holds the child occupancy from depth d[k-1] to d[k] (d[-1] = 0) and then, for k < L-1,
one aggregated Gaussian per node at depth d[k] (opacity, scales, rotation, DC colour; placed at the
cell centre), or, for the last level, the leaves: Gaussians per occupied voxel, ids, levels and all
attributes. Attribute channels of level k are coded raw or as the residual against a prediction:
the parent node's decoded value at depth d[k-1] (the parent-conditioned context), the same
Gaussian's channel before, or both (the encoder picks per channel, a choice byte says which, and
whether the residuals travel in neighbour phases, :mod:`.phases`).

A single-level section may instead list its ids and positions in id order (:mod:`.idorder`), when
that is estimated smaller than the octree; the TILES chunk names the geometry form, whether the
section codes its colour blue first (:func:`_blue_first`), and whether its octree's deepest depths
travel as tails (:mod:`.tails`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gs_mapping.gaussians import GaussianMap

from . import idorder, jit, octree, phases, tails
from .bitio import Reader, Writer
from .container import LEVEL, TILES, Chunk
from .entropy import (
    _MAX_ALPHABET,
    ONE_CALL_MAX,
    Groups,
    Stats,
    _coded_compiled,
    decode_stream,
    encode_stream,
    extremes,
    put_sparse,
    put_stream,
    reader_bytes,
)
from .errors import DecodeError, EncodeError
from .palette import PALETTE_MIN_ROWS, palette_of
from .quantize import (
    MAX_LATTICE,
    QMap,
    QuantParams,
    attribute_lattices,
    canonical_axes,
    dequantize,
    dequantize_fields,
    faint_rows,
    rotation_bits,
    rotation_contexts,
    rotations_within,
)
from .tables import _TABLE_ARRAYS

OCTREE, ID_ORDER = 0, 1  # geometry forms of a section (TILES chunk)
BLUE_FIRST = 0x10  # (version 9) flag beside the geometry form: colour is coded B, G, R (_blue_first)
TAILS = 0x20  # (version 10) flag beside the octree form: the last level ends in tails (.tails)
# target node-count ratio between successive levels of detail (an encoder choice: the depths are in
# the stream). 16 rather than 8: the coarse levels then cost ~1.5 % of a trained scene's bytes instead
# of ~10 % (guitar q2: 10.31 B/G with 5 levels vs 10.16 single-level; 11.28 at 8), at a coarser
# first useful prefix (3.5 % of the bytes instead of 13 %). Layered snapshots (the mapper's own
# levels) do not use it.
LEVEL_RATIO = 16
# a coarse level of fewer nodes is left out (a section may then have fewer levels than asked): it
# previews nothing (guitar's two coarsest of five held 8 and 20 Gaussians) and costs the decoder a
# stream's fixed work per attribute, ~0.4 ms (guitar quality 5, progressive: 24.5 → 23.7 ms, and
# 0.005 B/G less)
MIN_LEVEL_NODES = 64
MIN_BITS_PER_GAUSSIAN = 1  # decoders refuse counts above 8 × container bytes (+4096): no lying header


def max_gaussians_for(nbytes: int) -> int:
    return 8 * nbytes // MIN_BITS_PER_GAUSSIAN + 4096


# -- channel coding helpers -------------------------------------------------------------------------
SAMPLE_MIN = 1 << 15  # channels at least this long choose their prediction on every 8th value


def _put(
    w: Writer,
    values: np.ndarray,
    signed: bool = True,
    label: str = "",
    ctx=None,
    n_ctx: int = 1,
    log2t: int | None = None,
) -> None:
    """A stream of ``values`` counted under ``label``; with ``log2t`` coded densely with that
    direct-symbol bound (no choice of form)."""
    before = sum(len(x) for x in w.parts) if w.stats is not None else 0
    if log2t is None:
        put_stream(w, values, signed, ctx=ctx, n_ctx=n_ctx)
    else:
        encode_stream(w, values, signed, log2t)
    _count(w, label, sum(len(x) for x in w.parts) - before if w.stats is not None else 0)


def _count(w: Writer, label: str, nbytes: int) -> None:
    """``nbytes`` more under ``label`` in the writer's byte accounting, if it keeps one."""
    if w.stats is not None:
        w.stats[label] = w.stats.get(label, 0) + nbytes


CENTRED = 0x80  # choice-byte flag: a constant (signed varint) is taken off the residuals
PHASED = 0x40  # (version 9) choice-byte flag: the residuals follow in neighbour phases (.phases)
CENTRE_MIN = 64  # channels shorter than this are never centred (the varint would not pay)


def _centre(res: np.ndarray, keep_u: bool = False) -> tuple[int, float, Stats]:
    """(offset, estimated bits, the :class:`Stats` of ``res`` less the offset) for residuals
    ``res``: their median taken off when that is estimated smaller — a channel coded raw (a first
    scale, an opacity) sits far from zero, and at fine steps its values are escapes whose mantissa
    bits are stored, not modelled. ``keep_u``: the Stats keep the zig-zagged values, so
    :func:`put_stream` may take them instead of counting the same values again."""
    st = Stats(res, keep_u=keep_u)
    bits = st.best()[1]
    if len(res) < CENTRE_MIN:
        return 0, bits, st
    m = _median_int(res, st)
    if not m:
        return 0, bits, st
    centred = Stats(res - m, keep_u=keep_u)
    cost = centred.best()[1] + 8 * _varint_len(_zigzag_int(m))
    return (m, cost, centred) if cost < bits else (0, bits, st)


# zig-zag code of each value −128..127, in value order (a Stats' counts → the values' histogram)
_ZZ_BY_VALUE = np.array([2 * v if v >= 0 else -2 * v - 1 for v in range(-128, 128)], np.int64)


def _median_int(v: np.ndarray, st: Stats | None = None) -> int:
    """``int(np.median(v))`` of integers: the middle value, or the float mean of the middle two
    (np.median's arithmetic, truncated the same way). From ``st``'s counts (``v``'s Stats) where
    every value lies in −128..127 (the usual residual: a 256-bin cumulative count, where a
    partition of 10 k values took ~100 µs and np.median's overhead alone ~15 µs), else from a
    histogram where the values span few more than 4 × their number, else by partition."""
    k = len(v) // 2
    csum, first = None, -128
    if st is not None and st.n == len(v) and not st.big_bl.any():
        kernels = jit.kernels()
        if kernels is not None:  # (the two ranks in one compiled pass over the counts)
            lo, hi = kernels.counts_median(st.small, _ZZ_BY_VALUE, k)
            return hi + first if len(v) % 2 else int((float(lo + first) + float(hi + first)) / 2)
        csum = np.cumsum(st.small[_ZZ_BY_VALUE])
    elif len(v):
        first, last = int(v.min()), int(v.max())
        if last - first <= 4 * len(v) + 4096:  # a histogram of the range: cheaper than a partition
            csum = np.cumsum(np.bincount(v - first))
    if csum is not None:
        hi = int(np.searchsorted(csum, k, side="right")) + first  # the k-th smallest (from 0)
        if len(v) % 2:
            return hi
        lo = int(np.searchsorted(csum, k - 1, side="right")) + first
        return int((float(lo) + float(hi)) / 2)
    if len(v) % 2:
        return int(np.partition(v, k)[k])
    part = np.partition(v, (k - 1, k))
    return int((float(part[k - 1]) + float(part[k])) / 2)


def _varint_len(u: int) -> int:
    return max(1, (u.bit_length() + 6) // 7)


def _zigzag_int(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _put_pred(
    w: Writer,
    child: np.ndarray,
    cands: list,
    label: str = "",
    ctx=None,
    n_ctx: int = 1,
    phased: bool = False,
    faint: int = 1,
) -> None:
    """Code ``child`` as the residual against one of the candidate predictions (index 0 = none,
    i.e. raw; ``None`` = unavailable), less a constant where that pays (:func:`_centre`), the
    one estimated cheapest; a choice byte names it (``CENTRED`` set: the constant follows).
    ``phased``: also try the residuals in neighbour phases (:mod:`.phases`), kept where enough
    smaller (``phases.KEEP``; ``PHASED`` set); ``faint``: the factor of the faint lattice whose
    rows have context 1, if the channel is on one."""
    child = np.asarray(child, np.int64)
    n = len(child)
    # choose on a fixed subsample (every 8th value) for long channels: the choice is written in
    # the stream, so this only affects how well the encoder chooses, never what a decoder reads
    step = 8 if n >= SAMPLE_MIN else 1
    sub = child[::step]
    best, best_off, best_bits, best_st, best_c, best_res = 0, 0, None, None, None, None
    for i, c in enumerate(cands):
        if i and len(child) <= 16:
            break
        c = c() if callable(c) else c
        if c is None:
            continue
        res = sub - c[::step] if i else sub
        off, bits, st = _centre(res, keep_u=step == 1)
        if best_bits is None or bits < best_bits:
            best, best_off, best_bits, best_st, best_c, best_res = i, off, bits, st, c, res
    if step == 1 and best_res is not None:  # the chosen residuals as computed while choosing
        res = best_res  # (so a prediction is built once)
    else:
        res = child - best_c if best else child
    if best_off:
        res = res - best_off
    stream = Writer()
    # (the chosen residuals' Stats, counted while choosing: the very values coded, unsampled)
    put_stream(stream, res, ctx=ctx, n_ctx=n_ctx, stats=best_st if step == 1 else None)
    data = stream.getvalue()
    if phased and n >= phases.MIN_VALUES:  # both ways: phases kept where enough smaller
        split = Writer()
        phases.put(split, res, ctx, n_ctx, faint)
        if len(split.getvalue()) < phases.KEEP * len(data):
            best |= PHASED
            data = split.getvalue()
    w.u8(best | CENTRED if best_off else best)
    if best_off:
        w.varint(_zigzag_int(best_off))
    w.raw(data)
    _count(w, label, len(data))


def _get_pred(
    r: Reader, n: int, cands: list, ctx=None, n_ctx: int = 1, wide: bool = False, faint: int = 1
) -> np.ndarray:
    """Inverse of :func:`_put_pred`: int32 values (``wide``: int64 within the position lattice)."""
    lim = MAX_LATTICE if wide else 1 << 30
    flag = r.u8()
    off = 0
    phased = bool(flag & PHASED)
    if phased and wide:
        raise r.fail("neighbour phases on a position channel")
    flag &= ~PHASED
    if flag & CENTRED:
        flag &= ~CENTRED
        u = r.varint(2 * lim)
        off = u >> 1 if not u & 1 else -(u >> 1) - 1
        if not -lim < off < lim:
            raise r.fail("centring constant outside the lattice range")
    cand = cands[flag] if flag < len(cands) else None
    if callable(cand) and not isinstance(cand, _ParentPred):  # (a parent's: added below)
        cand = cand()
    if cand is None:
        raise r.fail(f"prediction {flag} is not available here")
    # |v| < lim checked by the stream where its structure leaves it open (no scan of direct symbols)
    if phased:
        v = phases.get(r, n, ctx, n_ctx, lim - 1, faint)
    else:  # (a coded int32 stream straight to its compiled reader: decode_stream's first step)
        fast = (
            _coded_compiled(r, n, True, ctx, n_ctx, None, lim - 1)
            if not wide and 0 < n <= ONE_CALL_MAX
            else None
        )
        v = decode_stream(r, n, ctx=ctx, n_ctx=n_ctx, int32=not wide, limit=lim - 1) if fast is None else fast

    def within(a):
        if len(a):
            lo, hi = extremes(a)
            if hi >= lim or lo <= -lim:
                raise r.fail("value outside the lattice range")
        return a

    if off:
        # |v|, |off| < lim: the sum fits int32 (lim = 2**30) or int64 (2**52)
        v += v.dtype.type(off)  # (v is this stream's own array)
        v = within(v)
    if not flag and not wide:  # int32 already; every decoded value is kept within ±2**30
        return v
    if isinstance(cand, _ParentPred):
        added = None if wide else cand.add_into(v, lim)
        if added is False:
            raise r.fail("value outside the lattice range")
        if added:
            return v
        cand = cand()
    if not wide and cand.dtype == np.int32 and len(v):
        # parent values are decoded values (|x| < 2**30, checked here): with |residual| < 2**30
        # too the int32 sum cannot overflow
        return within(v + cand)
    if flag:
        if wide and len(v) and np.abs(v).max() >= MAX_LATTICE:
            raise r.fail("residual outside the position lattice")
        v = v.astype(np.int64) + cand
    return within(v).astype(np.int64 if wide else np.int32)


@dataclass
class Coarse:
    """Quantised attributes of one set of Gaussians (aggregated nodes of a level, or the leaves)."""

    op: np.ndarray
    scale: np.ndarray
    rot_idx: np.ndarray
    rot: np.ndarray
    dc: np.ndarray
    off: np.ndarray | None = None  # aggregated nodes: position inside the cell, OFFSET_BITS per axis
    rot_bits: np.ndarray | None = None  # per Gaussian, from the scales (quantize.rotation_bits)


OFFSET_BITS = 4


def _offset_bits(d: int, D: int) -> int:
    return min(OFFSET_BITS, D - d)


class _Parent:
    """The parent context of a set of Gaussians: the parents' decoded attributes (a :class:`Coarse`)
    and each Gaussian's parent index; columns are gathered on first use (int32)."""

    def __init__(self, coarse: Coarse, idx: np.ndarray) -> None:
        self.coarse, self.idx = coarse, idx
        self._cols: dict[tuple[str, int | None], np.ndarray] = {}

    def col(self, f: str, i: int | None = None) -> np.ndarray:
        key = (f, i)
        if key not in self._cols:
            self._cols[key] = _gather(getattr(self.coarse, f), i, self.idx)
        return self._cols[key]

    def combo(self, f: str, i: int, x: np.ndarray, j: int) -> np.ndarray:
        """int64 ``col(f, i) + x − col(f, j)``: the parent's channel i moved by the step ``x``
        (this Gaussian's channel j) from the parent's channel j."""
        src = getattr(self.coarse, f)
        kernels = jit.kernels()
        if kernels is not None and src.dtype == np.int32 and src.flags.c_contiguous:
            out = np.empty(len(self.idx), np.int64)
            kernels.gather_combo(src, i, j, self.idx, x, out)
            return out
        return self.col(f, i).astype(np.int64) + x - self.col(f, j)


class _ParentPred:
    """A prediction from the parent: its channel ``f`` (column ``i``), or with ``j`` and ``x`` the
    combo ``col(f, i) + x − col(f, j)``; on the faint lattice where ``faint`` (those rows divided
    by ``fdiv``, floor). Called, it gives the values (the encoder's, and the decoder's plain path);
    :meth:`add_into` adds them to a decoded stream instead, compiled in one pass — the gather, the
    faint division, the sum and its range check, each a pass over the Gaussians otherwise."""

    def __init__(self, parent: _Parent, f: str, i, j=None, x=None, faint=None, fdiv: int = 1) -> None:
        self.parent, self.f, self.i, self.j, self.x = parent, f, i, j, x
        self.faint, self.fdiv = faint, fdiv

    def __call__(self) -> np.ndarray:
        P = self.parent
        v = P.col(self.f, self.i) if self.j is None else P.combo(self.f, self.i, self.x, self.j)
        return v if self.faint is None else _on_faint(v, self.faint, self.fdiv, divide=True)

    def on_faint(self, faint: np.ndarray, f: int) -> _ParentPred:
        return _ParentPred(self.parent, self.f, self.i, self.j, self.x, faint, f)

    def add_into(self, v: np.ndarray, lim: int) -> bool | None:
        """``v += self()`` in place where compiled (int32 ``v`` and parents): True, or False
        where a sum reaches ±``lim`` (``v`` then partly changed); None where not compiled."""
        kernels = jit.kernels()
        src = getattr(self.parent.coarse, self.f)
        x = self.x
        if (
            kernels is None
            or v.dtype != np.int32
            or src.dtype != np.int32
            or not src.flags.c_contiguous
            or (x is not None and not (x.dtype == np.int32 and x.flags.c_contiguous))
        ):
            return None
        src2 = src if src.ndim == 2 else src.reshape(-1, 1)
        return bool(
            kernels.add_parent(
                v,
                src2,
                0 if self.i is None else self.i,
                -1 if self.j is None else self.j,
                self.parent.idx,
                _NO_I32 if x is None else x,
                _NO_FAINT if self.faint is None else self.faint,
                self.fdiv,
                lim,
            )
        )


_NO_I32 = np.zeros(0, np.int32)
_NO_I64 = np.zeros(0, np.int64)
_NO_FAINT = np.zeros(0, bool)


def _gather(v: np.ndarray, i: int | None, idx: np.ndarray) -> np.ndarray:
    """int32 ``v[idx]`` (``v[idx, i]`` for a column): compiled for the int32 (m, k) arrays the
    decoder's :class:`Coarse` holds."""
    kernels = jit.kernels()
    if kernels is not None and i is not None and v.dtype == np.int32 and v.flags.c_contiguous:
        out = np.empty(len(idx), np.int32)
        kernels.gather_column(v, i, idx, out)
        return out
    v = v if i is None else v[:, i]
    return np.ascontiguousarray(v, np.int32)[idx]


def _code_attrs(
    c: Coarse | None,
    parent: _Parent | None,
    n: int,
    put,
    params: QuantParams,
    label: str = "",
    blue_first: bool = False,
) -> Coarse:
    """One walk shared by encoder (``put`` codes a channel, returns it) and decoder (``put`` decodes
    it). Channel by channel, predictions come from the parent's value (ProGS's parent context), the
    same Gaussian's channel coded before (colours and in-plane scales correlate), or both. Rotation
    components are coded in the context of their lattice (anisotropy tier, from the decoded scales).
    Colour goes R, G, B or, with ``blue_first``, B, G, R; without a parent its channels ask ``put``
    to try neighbour phases (``phased``: the encoder's choice, which the stream names)."""
    P = parent

    # candidates are built lazily (callables): a decoder builds only the one the stream names
    def pc(f, i=None):
        if P is None:
            return None
        return _ParentPred(P, f, i)

    def ch(f, i=None):
        if c is None:
            return None
        v = getattr(c, f)
        return (v if i is None else v[:, i]).astype(np.int64)

    def combo(f, i, x, j):
        if P is None or x is None:
            return None
        return _ParentPred(P, f, i, j, x)

    op = put(ch("op"), [0, pc("op")], label + "op")
    put_fl = _faint_put(put, faint_rows(op, params), params.faint_factor)
    sc: list[np.ndarray] = []
    for i in range(3):
        cands = [0, pc("scale", i)]
        for j in range(i):
            cands += [sc[j], combo("scale", i, sc[j], j)]
        sc.append(put_fl(ch("scale", i), cands, label + "scale"))
    ri = put(ch("rot_idx"), [0, pc("rot_idx")], label + "rot")
    if n and not _within(ri, 0, 3):
        raise DecodeError("rotation index outside 0..3")
    bits = rotation_bits(sc, params, op)
    ctx, n_ctx = (ri, 4) if bits is None else rotation_contexts(bits, params)
    rot = [put(ch("rot", i), [0, pc("rot", i)], label + "rot", ctx=ctx, n_ctx=n_ctx) for i in range(3)]
    dc: list = [None] * 3
    order = (2, 1, 0) if blue_first else (0, 1, 2)  # (version 9: the section chooses)
    for k, i in enumerate(order):
        cands = [0, pc("dc", i)]
        if k:
            j = order[k - 1]
            cands += [dc[j], combo("dc", i, dc[j], j)]
        if k == 2:  # (version 8) the last from the middle moved on by half the step from the first
            cands.append(lambda a=order[1], b=order[0]: _extrapolated(dc[a], dc[b]))
        # neighbour phases where no parent predicts (a parent's prediction leaves them nothing)
        dc[i] = put_fl(ch("dc", i), cands, label + "dc", phased=P is None)
    return Coarse(
        np.asarray(op, np.int32),
        _stack32(sc),
        np.asarray(ri).astype(np.uint8),
        _stack32(rot),
        _stack32(dc),
        rot_bits=bits,
    )


def _extrapolated(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + (a − b) // 2`` in int64 (a colour channel predicted from the two before it: a
    Gaussian's colour steps by similar amounts from channel to channel; guitar single level,
    quality 2: colour 1.824 → 1.776 B/G, quality 3 −0.05 B/G)."""
    a64 = np.asarray(a, np.int64)
    return a64 + ((a64 - np.asarray(b, np.int64)) >> 1)


def _blue_first(dc: np.ndarray) -> bool:
    """Whether a section's colour is estimated cheaper coded B, G, R than R, G, B (each channel
    against the cheapest of none, the channel before and, for the last, :func:`_extrapolated`), on
    every 8th Gaussian's DC codes, at most ~32k of them (playbot: 13 → 4 ms). Trained scenes take
    blue first (guitar single level, quality 2: colour 1.776 → 1.728 B/G, 1.664 → 1.621 in
    neighbour phases; playbot −0.02), the kitchen map red (blue first +0.003)."""
    sub = np.asarray(dc[:: max(8, len(dc) // 16384)], np.int64)
    if len(sub) < CENTRE_MIN:
        return False

    def bits(v):
        return _centre(v)[1]

    def cost(a, b, c):
        x, y, z = sub[:, a], sub[:, b], sub[:, c]
        return bits(x) + min(bits(y), bits(y - x)) + min(bits(z), bits(z - y), bits(z - _extrapolated(y, x)))

    return bool(cost(2, 1, 0) < cost(0, 1, 2))


def _faint_put(put, faint: np.ndarray | None, f: int):
    """``put`` for a channel on the faint lattice: faint rows' values (multiples of ``f``) and
    their predictions travel divided by ``f`` (floor), in their own context; returns normal units.
    ``put`` itself without a faint lattice for scales and colour (f = 1: faint rows may still
    have coarser rotations or positions)."""
    if faint is None or f == 1 or not faint.any():
        return put
    ctx = faint.astype(np.int64)

    def div(c):  # lazily: a decoder builds only the prediction its stream names
        if c is None or (isinstance(c, int) and c == 0):
            return c
        if isinstance(c, _ParentPred):
            return c.on_faint(faint, f)
        return lambda: _on_faint(c() if callable(c) else c, faint, f, divide=True)

    def put_faint(values, cands, lab, phased=False):
        if values is not None:
            values = np.asarray(values, np.int64)
            if (values[faint] % f).any():
                raise EncodeError(
                    "a faint Gaussian's scale or colour is off its lattice "
                    "(quantise the map with these parameters)"
                )
            values = _on_faint(values, faint, f, divide=True)
        out = put(values, [div(c) for c in cands], lab, ctx=ctx, n_ctx=2, phased=phased, faint=f)
        if len(out) and _magnitude(out) >= (1 << 30) // f:
            raise DecodeError("faint value outside the lattice range")
        return _on_faint(out, faint, f, divide=False)

    return put_faint


def _on_faint(x: np.ndarray, faint: np.ndarray, f: int, divide: bool) -> np.ndarray:
    """``x // f`` (floor; ``divide``) or ``x * f`` on the faint rows, ``x`` on the others (a new
    array of x's dtype): compiled in one pass; numpy takes the whole array with a scalar (it
    divides by a scalar ~10× faster than by an array) and blends the rows arithmetically, faster
    than a masked select."""
    kernels = jit.kernels()
    dt = x.dtype
    if kernels is not None and dt in _WIDTHS and len(faint) == len(x):
        out = np.empty(x.shape, dt)  # (not empty_like: ~1 µs more a call)
        rescale = kernels.faint_rescale if dt == _WIDTHS[0] else kernels.faint_rescale_wide
        rescale(x, faint, f, divide, out)
        return out
    y = x // x.dtype.type(f) if divide else x * x.dtype.type(f)
    y -= x
    y *= faint
    y += x
    return y


def _magnitude(a: np.ndarray) -> int:
    """max |a| of a non-empty integer array (a Python int: no int32 wrap of −2**31)."""
    lo, hi = extremes(a)
    return max(hi, -lo)


def _within(a: np.ndarray, lo: int, hi: int) -> bool:
    """Every value of the non-empty integer array ``a`` in ``lo`` … ``hi``."""
    a_lo, a_hi = extremes(a)
    return lo <= a_lo and a_hi <= hi


_WIDTHS = (np.dtype(np.int32), np.dtype(np.int64))


def _stack32(cols) -> np.ndarray:
    out = np.empty((len(cols[0]), len(cols)), np.int32)
    for j, c in enumerate(cols):
        out[:, j] = c
    return out


def _shared_groups():
    """``ctx`` → its :class:`Groups`, made once per context array: the three rotation components
    share theirs, the faint channels theirs (a grouping is a sort, per stream otherwise)."""
    groups = {}  # id(ctx) → (ctx, its Groups)

    def shared(ctx, n_ctx):
        if ctx is None:
            return None
        if id(ctx) not in groups:
            groups[id(ctx)] = (ctx, Groups(ctx, n_ctx))  # (the array kept alive: its id stays its own)
        return groups[id(ctx)][1]

    return shared


def _put_coarse(
    w: Writer,
    c: Coarse,
    parent: _Parent | None,
    params: QuantParams,
    label: str = "",
    blue_first: bool = False,
) -> None:
    shared = _shared_groups()

    def put(values, cands, lab, ctx=None, n_ctx=1, phased=False, faint=1):
        _put_pred(w, values, cands, lab, ctx=shared(ctx, n_ctx), n_ctx=n_ctx, phased=phased, faint=faint)
        return values

    _code_attrs(c, parent, len(c.op), put, params, label, blue_first)


def _get_coarse(r: Reader, n: int, parent: _Parent | None, params: QuantParams, blue_first: bool) -> Coarse:
    shared = _shared_groups()

    def put(_values, cands, _lab, ctx=None, n_ctx=1, phased=False, faint=1):
        return _get_pred(r, n, cands, ctx=shared(ctx, n_ctx), n_ctx=n_ctx, faint=faint)

    out = _code_attrs(None, parent, n, put, params, blue_first=blue_first)
    if n and not rotations_within(out.rot, out.rot_bits, params):
        raise r.fail("rotation component outside its lattice")
    return out


def _choose_depths(counts: list[int], n_levels: int) -> list[int]:
    depth = len(counts) - 1
    if n_levels - 1 > depth:
        n_levels = depth + 1
    ds = [depth]
    for k in range(n_levels - 2, -1, -1):
        target = counts[-1] / LEVEL_RATIO ** (n_levels - 1 - k)
        upper = ds[0] - 1
        cand = list(range(k, upper + 1))  # the depth whose node count is nearest the target (log scale)
        ds.insert(0, min(cand, key=lambda d: (abs(np.log(max(counts[d], 1) / target)), -d)) if cand else k)
        if ds[0] > upper:
            ds[0] = upper
    # coarse levels too small to preview anything are not made (MIN_LEVEL_NODES)
    return [d for d in ds[:-1] if counts[d] >= MIN_LEVEL_NODES] + ds[-1:]


# -- encoder ----------------------------------------------------------------------------------------
def encode_section(
    q: QMap, params: QuantParams, n_levels: int, stats: dict | None = None
) -> tuple[list[Chunk], list[int]]:
    """Chunks (TILES + one LEVEL per level of detail) for the Gaussians of ``q``. ``stats``, when
    given, is filled with the bytes of each kind of stream (label → bytes)."""
    D = params.tile_bits
    n = len(q)
    tiles_all = q.pos >> D
    tiles, tile_idx = _unique_tiles(tiles_all)
    codes = octree.morton(q.pos - (tiles_all << D)) if n else np.zeros(0, np.uint64)
    order = _octree_order(tile_idx, codes, q.ids, D)  # (tile, code, id) order of the rows of q
    t_s, c_s = tile_idx[order], codes[order]
    ids_s = q.ids[order]
    new_vox = np.ones(n, bool)
    if n > 1:
        new_vox[1:] = (c_s[1:] != c_s[:-1]) | (t_s[1:] != t_s[:-1])
    vstart = np.flatnonzero(new_vox)
    vcount = np.diff(np.append(vstart, n))
    voxel_of = np.empty(n, np.int64)  # voxel index of each row of q (rows stay in id order)
    voxel_of[order] = np.cumsum(new_vox) - 1
    node_tile, node_code, occ, parent = octree.build_levels(t_s[vstart], c_s[vstart], D)
    counts = [len(c) for c in node_code]
    depths = _choose_depths(counts, n_levels) if n else list(range(max(0, D - n_levels + 1), D + 1))
    L = len(depths)

    id_streams = idorder.streams(q.ids, q.pos) if L == 1 and n > 0 else None
    id_order = id_streams is not None and _id_order_smaller(id_streams[1], occ, vcount, ids_s, len(tiles))
    tail = None  # the tail depth, and the depths each pair of voxels share (tails.py)
    if not id_order and n:
        shared = tails.shared_depths(node_tile[D], node_code[D], D)
        s = tails.choose(shared, counts, depths[-2] if L > 1 else 0, D)
        tail = None if s is None else (s, shared)
    w = Writer(stats)
    w.varint(n)
    w.varint(L)
    for d in depths:
        w.u8(d)
    blue_first = _blue_first(q.dc)
    w.u8((ID_ORDER if id_order else OCTREE) | (BLUE_FIRST if blue_first else 0) | (TAILS if tail else 0))
    if not id_order:
        w.varint(len(tiles))
        w.raw(np.ascontiguousarray(tiles, "<i8").tobytes())
    if tail:
        w.u8(tail[0])
    chunks = [Chunk(TILES, 0, w.getvalue())]
    if n == 0:
        return chunks + [Chunk(LEVEL, k, b"") for k in range(L)], [len(chunks[0].data)] + [0] * (L - 1)
    if id_order:
        w = Writer(stats)
        first, streams = id_streams  # type: ignore[misc]  # id_order implies the streams exist
        w.varint(first)
        for label, values, signed in streams:
            _put(w, values, signed, label)
        _put_leaves(w, q, params, None, blue_first)
        chunks.append(Chunk(LEVEL, 0, w.getvalue()))
        return chunks, [len(chunks[0].data) + len(chunks[1].data)]

    # node index at each chosen depth for every Gaussian
    node_at = {}
    idx = voxel_of
    for d in range(D, -1, -1):
        if d in depths:
            node_at[d] = idx
        if d > 0:
            idx = parent[d][idx]
    coarse_at = _aggregates(q, params, tiles, tile_idx, depths, node_at, node_code, parent, counts)
    prev_d, prev_coarse = 0, None
    for k, d in enumerate(depths):
        w = Writer(stats)
        for dd in range(prev_d, d):
            if tail and k == L - 1 and dd == tail[0]:  # the rest of the depths as tails
                for label, values, bits in tails.streams(node_tile[D], node_code[D], tail[1], dd, D):
                    _put(w, values, False, label, log2t=bits)
                break
            _put(w, occ[dd].astype(np.int64), False, "occupancy")
        if k < L - 1:
            m = counts[d]
            coarse = coarse_at[d]
            pc = None
            if prev_coarse is not None:
                pidx = _ancestor(parent, d, depths[k - 1], np.arange(m))
                pc = _Parent(prev_coarse, pidx)
            _put_coarse(w, coarse, pc, params, "coarse_", blue_first)
            for i in range(3):
                _put(w, coarse.off[:, i], signed=False, label="coarse_offset")
            prev_coarse = coarse
        else:
            _put(w, vcount - 1, signed=False, label="voxel_count")
            w.varint(int(ids_s[0]))
            _put(w, np.diff(ids_s.astype(np.int64)), label="ids")
            # from here on the Gaussians are in id order (q's own order; the decoder knows it
            # from the ids), so neither side permutes the bulk of the data
            pc = None
            if prev_coarse is not None:
                pc = _Parent(prev_coarse, node_at[depths[k - 1]])
            _put_leaves(w, q, params, pc, blue_first)
        chunks.append(Chunk(LEVEL, k, w.getvalue()))
        prev_d = d
    sizes = [len(c.data) for c in chunks[1:]]
    sizes[0] += len(chunks[0].data)
    return chunks, sizes


def _put_leaves(w: Writer, q: QMap, params: QuantParams, pc: _Parent | None, blue_first: bool) -> None:
    """The Gaussians' fields after their geometry, in id order: level, attributes, higher SH."""
    _put(w, q.level.astype(np.int64), signed=False, label="level")
    _put_coarse(w, Coarse(q.op, q.scale, q.rot_idx, q.rot, q.dc), pc, params, blue_first=blue_first)
    rows = q.rest.reshape(len(q), -1)
    if rows.shape[1] and _put_sh_palette(w, rows):
        return
    _put_sh_rows(w, rows)


def _put_sh_rows(w: Writer, rows: np.ndarray) -> None:
    """The higher SH of (n, 3 · (K − 1)) ``rows``, coefficient by coefficient. Compiled, for long
    int32 rows: the channels are read from the rows where they lie (no transposed copy of them),
    the sparse form of every channel split in two passes over the rows (:class:`_SparseRows`)."""
    n, k3 = rows.shape
    kernels = jit.kernels()
    if kernels is None or n < SAMPLE_MIN or rows.dtype != np.int32 or not rows.flags.c_contiguous:
        cols = _columns(rows)
        for j in range(0, k3, 3):
            _put_sh_coefficient(w, cols[j : j + 3])
        return
    split = _SparseRows(rows)
    for j in range(0, k3, 3):
        _put_sh_coefficient(w, rows[:, j : j + 3].T, split, j)


class _SparseRows:
    """Each channel of int32 ``rows`` (n, w) as :func:`put_stream`'s sparse split would make it
    (:func:`.kernels.rows_nonzero_counts`, :func:`.kernels.rows_sparse_fill`: two passes over the
    rows for all channels, made on first use)."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows
        self._made = False

    def _make(self) -> None:
        kernels = jit.kernels()
        assert kernels is not None  # (made only where compiled: _put_sh_rows)
        n, w = self.rows.shape
        self.k = np.zeros(w, np.int64)
        self.small_d, self.big_d = np.zeros((w, 257), np.int64), np.zeros((w, 65), np.int64)
        kernels.rows_nonzero_counts(self.rows, self.k, self.small_d, self.big_d)
        sparse = (self.k > 0) & (self.k <= n // 2)
        size = np.where(sparse, self.k, 0)
        self.start = np.where(sparse, np.cumsum(size) - size, -1)
        total = int(size.sum())
        self.gaps, self.mapped = np.empty(total, np.int64), np.empty(total, np.int64)
        self.small_g, self.big_g = np.zeros((w, 257), np.int64), np.zeros((w, 65), np.int64)
        self.small_m, self.big_m = np.zeros((w, 257), np.int64), np.zeros((w, 65), np.int64)
        kernels.rows_sparse_fill(
            self.rows, self.start, self.gaps, self.mapped, self.small_g, self.big_g, self.small_m, self.big_m
        )
        self._made = True

    def counts(self, col: int) -> tuple:
        """The counts :func:`_counted_estimates` takes for the coefficient at channels ``col`` ..
        ``col`` + 2, plain and predicted (:func:`.kernels.rows_coefficient_counts`: every
        coefficient's in one pass over every 8th row, made on first use)."""
        if not hasattr(self, "cube"):
            kernels = jit.kernels()
            assert kernels is not None
            k = self.rows.shape[1] // 3
            self.cube = np.zeros((k, 2, 216), np.int64)
            self.esc_small, self.esc_big = (
                np.zeros((k, 2, 21, 257), np.int64),
                np.zeros((k, 2, 21, 65), np.int64),
            )
            kernels.rows_coefficient_counts(self.rows, 8, self.cube, self.esc_small, self.esc_big)
        j = col // 3
        return tuple((self.cube[j, p], self.esc_small[j, p], self.esc_big[j, p]) for p in (0, 1))

    def any(self, cols: range) -> bool:
        """Whether any of the channels ``cols`` holds a non-zero value."""
        if not self._made:
            self._make()
        return bool(self.k[cols.start : cols.stop].any())

    def put(self, w: Writer, c: int) -> None:
        """Channel ``c`` as ``_put(w, rows[:, c], label="sh_rest")`` writes it."""
        if not self._made:
            self._make()
        before = sum(len(x) for x in w.parts) if w.stats is not None else 0
        n, k, s = len(self.rows), int(self.k[c]), int(self.start[c])
        if s < 0 or not _sparse_taken(w, n, k, self, c):
            put_stream(w, np.ascontiguousarray(self.rows[:, c]))
        _count(w, "sh_rest", sum(len(x) for x in w.parts) - before if w.stats is not None else 0)


def _sparse_taken(w: Writer, n: int, k: int, sr: _SparseRows, c: int) -> bool:
    small = sr.small_d[c].copy()
    small[0] += n - k
    s = int(sr.start[c])
    gaps, mapped = sr.gaps[s : s + k], sr.mapped[s : s + k]
    return put_sparse(
        w,
        n,
        k,
        Stats.of_counts(n, small, sr.big_d[c]),
        gaps,
        mapped,
        Stats.of_counts(k, sr.small_g[c], sr.big_g[c], gaps),
        Stats.of_counts(k, sr.small_m[c], sr.big_m[c], mapped),
    )


PALETTE_MODE = 5  # a stream-mode byte no plain stream (0..3) or joint coefficient (4) uses
# (version 12) the same palette with its rows in order of first use and its indices as first uses
# and repeats (:func:`_put_first_uses`); byte 8 is CHANNEL_PRED
PALETTE_FIRST_USE = 9


def _put_sh_palette(w: Writer, rows: np.ndarray) -> bool:
    """The higher SH of all Gaussians as a palette when many share the same quantised coefficients
    (a scene that was already vector-quantised, such as SOG's 64k-entry SH palette): ``u8 9,
    varint K``, the K distinct rows in order of first use, coded as K Gaussians' coefficients are,
    then the n row indices as :func:`_put_first_uses`; or, where that is estimated smaller, ``u8
    5``, the rows most used first and the indices as one stream. Taken when estimated smaller than
    the coefficients per Gaussian."""
    n, k3 = rows.shape
    if n < PALETTE_MIN_ROWS:
        return False
    rows = np.ascontiguousarray(rows, np.int32)
    palette = palette_of(rows)  # in order of first use
    if palette is None:
        return False
    first, idx = palette
    k = len(first)
    # most used first (ties in order of first use): small indices are then the frequent ones,
    # which the escape buckets of the index stream code in fewer bits
    by_use = np.argsort(-np.bincount(idx, minlength=k), kind="stable")
    rank = np.empty(k, np.int64)
    rank[by_use] = np.arange(k)
    idx_by_use = rank[idx]
    split = _first_uses(idx, k)
    by_use_bits = Stats(idx_by_use, signed=False, keep_u=False).best()[1]
    first_use_bits = _first_use_bits(*split)
    direct = 16 * _columns_bits(rows[::16])  # the direct form, estimated on every 16th Gaussian
    pal = rows[first]
    pal_bits = _columns_bits(pal)
    if pal_bits + min(by_use_bits, first_use_bits) >= 0.9 * direct:
        return False
    by_first_use = first_use_bits < by_use_bits
    w.u8(PALETTE_FIRST_USE if by_first_use else PALETTE_MODE)
    w.varint(k)
    cols = _columns(pal if by_first_use else rows[first[by_use]])
    for j in range(0, k3, 3):
        _put_sh_coefficient(w, cols[j : j + 3])
    if by_first_use:
        _put_first_uses(w, *split)
    else:
        _put(w, idx_by_use, signed=False, label="sh_palette_index")
    return True


def _columns_bits(a: np.ndarray) -> float:
    """Σ over the columns of int ``a`` (m, k) of each one's estimated bits as a signed stream
    (``Stats.best``), in column order: the counts in one compiled pass over the rows
    (:func:`.kernels.column_counts`) where compiled."""
    m, k = a.shape
    kernels = jit.kernels()
    if kernels is not None and a.dtype in (np.int32, np.int64) and m:
        small, big = np.zeros((k, 257), np.int64), np.zeros((k, 65), np.int64)
        if not kernels.column_counts(a, small, big):
            return sum(Stats.of_counts(m, small[c], big[c]).best()[1] for c in range(k))
    return sum(Stats(a[:, c].astype(np.int64), keep_u=False).best()[1] for c in range(k))


# An index into rows listed in order of first use is either the next new row or one already seen:
# a flag per Gaussian, then each repeat coded in the context of how many rows were seen before it
# (its octave: a repeat is about uniform below that count). Where use is spread over the rows and
# the Gaussians' order, listing rows by first use drops the log2(K!) bits a free order of the rows
# costs: playbot (500k Gaussians, 64k rows) 1.97 → 1.78 B/G of indices, against most-used-first
# rows indexed directly; 0.2-0.83× where K ≈ n/4 and the Gaussians come in random order. Where a
# few popular rows are met late, their high first-use numbers cost more than the most-used-first
# ranks (2.6× the index bytes: n = 300k, K = 4096, 16 popular rows met last): the encoder takes the
# form estimated smaller.
MAX_SEEN_CONTEXTS = 16  # = entropy.MAX_COMPILED_CONTEXTS: the compiled decoder takes the repeats


def _seen_contexts(seen: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """(contexts, count) of repeats after ``seen`` (≥ 1) distinct rows of ``k``: the octave of
    ``seen``, the lowest octaves merged so that at most MAX_SEEN_CONTEXTS remain."""
    top = int(k).bit_length() - 1  # the octave of k, the highest any seen count reaches
    low = max(0, top + 1 - MAX_SEEN_CONTEXTS)
    octave = np.frexp(seen.astype(np.float64))[1].astype(np.int64) - 1  # floor(log2): exact
    return np.maximum(octave - low, 0), top - low + 1


def _first_uses(idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, Groups]:
    """Row indices ``idx`` (rows in order of first use, ``k`` of them) as their two streams: n
    flags (1 = the next new row, int64), and the repeats' indices (int64) with their
    :func:`_seen_contexts` (grouped once, for the estimate and the coder)."""
    new = np.empty(len(idx), bool)
    new[0] = True
    new[1:] = idx[1:] > np.maximum.accumulate(idx)[:-1]
    seen = (np.cumsum(new) - new)[~new]
    ctx, n_ctx = _seen_contexts(np.maximum(seen, 1), k)
    return new.astype(np.int64), idx[~new].astype(np.int64), Groups(ctx, n_ctx)


def _put_first_uses(w: Writer, new: np.ndarray, rep: np.ndarray, groups: Groups) -> None:
    """:func:`_first_uses`' two streams."""
    _put(w, new, signed=False, label="sh_palette_index")
    _put(w, rep, signed=False, ctx=groups, n_ctx=groups.n_ctx, label="sh_palette_index")


def _first_use_bits(new: np.ndarray, rep: np.ndarray, groups: Groups) -> float:
    """Estimated bits of :func:`_first_uses`' streams (a table per context)."""
    bits = Stats(new, signed=False, keep_u=False).best()[1]
    order, bounds = groups.grouped
    for c in range(groups.n_ctx):
        part = rep[order[bounds[c] : bounds[c + 1]]]
        bits += Stats(part, signed=False, keep_u=False).best()[1] if len(part) else 0.0
    return bits


def _get_first_uses(r: Reader, n: int, k: int) -> np.ndarray:
    """Inverse of :func:`_put_first_uses`: the n row indices, each below the rows seen before it."""
    new = decode_stream(r, n, signed=False, int32=True, limit=1).astype(bool)
    if int(np.count_nonzero(new)) != k:  # (a first Gaussian that repeats names no row: below)
        raise r.fail("SH palette first uses do not name each row once")
    seen = (np.cumsum(new) - new)[~new]
    ctx, n_ctx = _seen_contexts(seen, k)
    rep = decode_stream(r, len(seen), signed=False, int32=True, ctx=ctx, n_ctx=n_ctx, limit=k - 1)
    if np.any(rep >= seen):
        raise r.fail("SH palette index names a row before its first use")
    idx = np.empty(n, np.int32)
    idx[new] = np.arange(k, dtype=np.int32)
    idx[~new] = rep
    return idx


def octree_rows(q: QMap, params: QuantParams) -> np.ndarray:
    """Rows of ``q`` in the order the octree codes them: by tile, then Morton code, then id."""
    D = params.tile_bits
    if not len(q):
        return np.zeros(0, np.int64)
    tiles_all = q.pos >> D
    _, tile_idx = _unique_tiles(tiles_all)
    return _octree_order(tile_idx, octree.morton(q.pos - (tiles_all << D)), q.ids, D)


def _id_order_smaller(
    id_streams: list, occ: list, vcount: np.ndarray, ids_s: np.ndarray, n_tiles: int
) -> bool:
    """Whether the id-ordered geometry of a single-level section (its :func:`idorder.streams`) is
    estimated smaller than its octree (occupancy, voxel counts, ids in octree order, the tile list)."""

    def bits(v, signed=True):
        return Stats(v, signed, keep_u=False).best()[1]

    octree_bits = sum(bits(o.astype(np.int64), False) for o in occ) + bits(vcount - 1, False)
    octree_bits += bits(np.diff(ids_s.astype(np.int64))) + 8 * 24 * n_tiles
    return sum(bits(v, s) for _, v, s in id_streams) < octree_bits


def _unique_tiles(tiles_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct tiles (lexicographic) and each row's tile index: a presence table when their box
    holds few cells (a scene, a local map), one 1-D sort when the tiles span less than 2**21 per
    axis (always, short of 4000 km at 2 m tiles), else a row-wise unique."""
    n = len(tiles_all)
    if n == 0:
        return np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    cols = [tiles_all[:, j] for j in range(3)]  # column by column: numpy reduces (n, 3) along
    lo = np.array([c.min() for c in cols])  # axis 0 row by row, ~8× slower
    span = np.array([c.max() for c in cols]) - lo
    cells = int(np.prod(span + 1, dtype=np.float64))
    if cells <= max(4 * n, 1 << 16):  # a compact scene: a presence table over the box, no sort
        key = cols[0] - lo[0]
        key *= span[1] + 1
        key += cols[1]
        key -= lo[1]
        key *= span[2] + 1
        key += cols[2]
        key -= lo[2]
        present = np.zeros(cells, bool)
        present[key] = True
        ukey = np.flatnonzero(present)
        rank = np.cumsum(present) - 1
        tiles = np.stack(np.unravel_index(ukey, tuple(span + 1)), 1) + lo
        return tiles.astype(np.int64), rank[key]
    if span.max() < (1 << 21):
        rel = tiles_all - lo
        key = (rel[:, 0] << 42) | (rel[:, 1] << 21) | rel[:, 2]
        ukey, idx = np.unique(key, return_inverse=True)
        mask = (1 << 21) - 1
        tiles = np.stack([ukey >> 42, (ukey >> 21) & mask, ukey & mask], 1) + lo
        return tiles.astype(np.int64), idx.reshape(-1).astype(np.int64)
    tiles, idx = np.unique(tiles_all, axis=0, return_inverse=True)
    return tiles, idx.reshape(-1).astype(np.int64)


def _octree_order(tile_idx: np.ndarray, codes: np.ndarray, ids: np.ndarray, D: int) -> np.ndarray:
    """Row order by (tile, Morton code, id): one stable sort of a packed key when the rows are
    already in id order (QMap's invariant) and the key fits 63 bits (the tile indices below
    2**(63 − 3D): a scene's few tiles at its fine steps, D = 17, leave 4096), else a lexsort."""
    n = len(ids)
    fits = n and int(tile_idx.max()) < (1 << (63 - 3 * D))
    if fits and (n < 2 or bool(np.all(ids[1:] > ids[:-1]))):
        key = (tile_idx << (3 * D)) | codes.view(np.int64)
        if bool(np.all(key[1:] >= key[:-1])):  # in octree order already (a scene renumbered so)
            return np.arange(n)
        kernels = jit.kernels()
        return kernels.stable_argsort(key) if kernels is not None else np.argsort(key, kind="stable")
    return np.lexsort((ids, codes, tile_idx))


def _columns(a: np.ndarray, block: int = 8192) -> np.ndarray:
    """(n, k) → contiguous (k, n), transposed block by block (cache friendly)."""
    n, k = a.shape
    out = np.empty((k, n), a.dtype)
    for s in range(0, n, block):
        out[:, s : s + block] = a[s : s + block].T
    return out


def _aggregates(qs: QMap, params: QuantParams, tiles, t_s, depths, node_at, node_code, parent, counts):
    """Quantised aggregated Gaussians for every coarse depth: moments from the leaves at the
    deepest coarse depth, then summed upwards (moments compose), each level moment-matched."""
    D = params.tile_bits
    if len(depths) < 2:
        return {}
    g = dequantize_fields(qs, params, rest=False)  # aggregates: from what the receiver will hold
    rel = (qs.pos - (tiles[t_s] << D)).astype(np.float64) * params.pos_step  # rows of qs, any order
    d = depths[-2]
    mom = octree.leaf_moments(
        node_at[d], counts[d], rel, g["quats"], g["log_scales"], g["opacity_logits"], g["sh"][:, 0, :]
    )
    out = {}
    for k in range(len(depths) - 2, -1, -1):
        d = depths[k]
        if k < len(depths) - 2:
            mom = octree.combine_moments(
                mom, _ancestor(parent, depths[k + 1], d, np.arange(counts[depths[k + 1]])), counts[d]
            )
        cell = 1 << (D - d)
        b = _offset_bits(d, D)
        lo = (octree.demorton(node_code[d]) * cell).astype(np.float64)
        mean = mom["wm"] / mom["w"][:, None] / params.pos_step
        off = np.clip(np.floor((mean - lo + 0.5) / cell * (1 << b)), 0, (1 << b) - 1).astype(np.int32)
        centres = _cell_points(lo, off, cell, b) * params.pos_step
        qv, ls, op, dc = octree.merged_gaussians(mom, centres)
        qop, sc, qdc = attribute_lattices(op, ls, dc, params)
        ri, rq, sc, _ = canonical_axes(qv, sc, params, rotation_bits(sc, params, qop))
        out[d] = Coarse(qop, sc, ri, rq, qdc, off)
    return out


def _cell_points(lo: np.ndarray, off: np.ndarray, cell: int, b: int) -> np.ndarray:
    """Lattice coordinates (float) of a coarse Gaussian: sub-cell ``off`` of 2**b per axis, centred
    on the lattice points it spans."""
    sub = cell / (1 << b)
    return lo + off.astype(np.float64) * sub + 0.5 * (sub - 1)


def _ancestor(parent, d_from: int, d_to: int, idx: np.ndarray) -> np.ndarray:
    for d in range(d_from, d_to, -1):
        idx = parent[d][idx]
    return idx


def _centres(tiles, node_tile, node_code, d, D, params, off) -> np.ndarray:
    """Positions (metres, float64) of the coarse Gaussians of nodes at depth d."""
    cell = 1 << (D - d)
    lo = (octree.demorton(node_code) * cell).astype(np.float64)
    p = (tiles[node_tile] << D).astype(np.float64) + _cell_points(lo, off, cell, _offset_bits(d, D))
    return p * params.pos_step


# -- SH coefficients: three colour channels, separately or as one joint stream -------------------------
JOINT_MODE = 4  # a stream-mode byte no plain stream uses: "the three channels of this coefficient, joint"
JOINT_BASES = (2, 3, 4, 5, 6)  # (consecutive from 2: kernels.coefficient_counts counts them so)
# (version 11) a stream-mode byte no stream uses: "this coefficient's channels 0 and 2 follow as
# differences from channel 1" (colour channels of one SH coefficient correlate, ρ ≈ 0.9 on
# playbot: its higher SH 4.68 → 3.64 B/G per Gaussian at quality 2, bench/sh_channels.py)
CHANNEL_PRED = 8
CHANNEL_PRED_GAIN = 0.98  # taken when estimated more than 2 % smaller on channels 0 and 2


def _from_channel_1(ch: np.ndarray) -> np.ndarray:
    """(3, n) int64 channels → (channel 0 − channel 1, channel 1, channel 2 − channel 1)."""
    return np.stack([ch[0] - ch[1], ch[1], ch[2] - ch[1]])


def _channel_predicted(ch: np.ndarray) -> bool:
    """Whether coding channels 0 and 2 as differences from channel 1 is estimated smaller
    (on every 8th Gaussian of a long coefficient; only the choice depends on it)."""
    sub = (ch[:, ::8] if ch.shape[1] >= SAMPLE_MIN else ch).astype(np.int64)
    plain = Stats(sub[0]).best()[1] + Stats(sub[2]).best()[1]
    d = _from_channel_1(sub)
    return Stats(d[0]).best()[1] + Stats(d[2]).best()[1] < CHANNEL_PRED_GAIN * plain


def _sym_ns(a: int) -> float:
    """Rough entropy-decoder cost of one symbol (ns) for an alphabet of ``a`` (binary search)."""
    return 8.0 + 2.5 * np.log2(max(a, 2))


def _stream_cost(st: Stats) -> tuple[float, float]:
    """(estimated bits, estimated decode ns) of one channel coded by :func:`put_stream`: dense, or
    sparse (2 symbols per non-zero value) when mostly zero."""
    t, bits = st.best()
    n, nz = st.n, st.n - int(st.small[0])
    a = min(1 << t, st.max_small + 1) + (4 if st.max_small >= (1 << t) else 0)
    syms = min(n, 2 * nz) if nz <= n // 2 and n >= 256 else n
    return bits, syms * _sym_ns(a)


def _zigzag_max(ch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, n) int64 → zig-zag values and their largest per Gaussian."""
    u = (ch << 1) ^ (ch >> 63)
    return u, u.max(axis=0)


def _joint_symbols(u: np.ndarray, umax: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Joint symbols of zig-zag values ``u`` (3, n): base-B digits, B³ where one needs escaping
    (``umax`` ≥ B); and that escape mask."""
    esc = umax >= b
    j = u[0] + b * u[1] + b * b * u[2]
    j[esc] = b**3
    return j, esc


def _sub_estimates(sub: np.ndarray):
    """(each channel's Stats, ``joint(B)``) of a coefficient's sampled channels ``sub`` (3, m)
    int64: ``joint(B)`` gives the escapes' count under base B, and callables for the Stats of the
    joint symbols and of each channel's escaped values."""
    u, umax = _zigzag_max(sub)

    def joint(b):
        j, esc = _joint_symbols(u, umax, b)
        return int(esc.sum()), lambda: Stats(j, signed=False), lambda: [Stats(c[esc]) for c in sub]

    return [Stats(c) for c in sub], joint


def _counted_estimates(ch: np.ndarray, pred: bool, counted=None):
    """:func:`_sub_estimates` of every 8th Gaussian of ``ch`` (with ``pred``, of its channels 0 and
    2 less channel 1) from one compiled pass of counts (:func:`.kernels.coefficient_counts`, no
    copies), or from ``counted`` (cube, small, big) where :class:`_SparseRows` counted them for
    every coefficient at once; None where not compiled."""
    kernels = jit.kernels()
    if kernels is None or ch.dtype not in (np.int32, np.int64):
        return None
    m = len(range(0, ch.shape[1], 8))
    if counted is not None:
        cube, small, big = counted
    else:
        cube = np.zeros(216, np.int64)
        small, big = np.zeros((21, 257), np.int64), np.zeros((21, 65), np.int64)
        if kernels.coefficient_counts(*(ch[c, ::8] for c in range(3)), pred, cube, small, big):
            return None
    esc_small, esc_big = small.reshape(7, 3, 257), big.reshape(7, 3, 65)  # [class, channel]
    triples = cube.reshape(6, 6, 6)  # [u2, u1, u0]

    def joint(b):
        below = triples[:b, :b, :b]  # rows whose three zig-zag values are below b: their own symbol
        e = m - int(below.sum())
        counts = np.zeros(257, np.int64)
        counts[: b**3] = below.reshape(-1)  # symbol u0 + b·u1 + b²·u2, in that (C) order
        counts[b**3] = e
        return (
            e,
            lambda: Stats.of_counts(m, counts, np.zeros(65, np.int64)),
            lambda: [Stats.of_counts(e, esc_small[b:, c].sum(0), esc_big[b:, c].sum(0)) for c in range(3)],
        )

    return [Stats.of_counts(m, esc_small[:, c].sum(0), esc_big[:, c].sum(0)) for c in range(3)], joint


def _put_sh_coefficient(w: Writer, ch: np.ndarray, rows: _SparseRows | None = None, col: int = 0) -> None:
    """One SH coefficient's three channels (3, n): three signed streams, or (mode 4) one stream of
    joint symbols — the three zig-zag values as base-B digits, B³ = escape — plus three streams of
    the escaped Gaussians' values, when that is estimated to decode clearly faster at no real cost
    in size (one entropy-decoder symbol per Gaussian instead of three). Either follows a byte
    ``CHANNEL_PRED`` when channels 0 and 2 are coded as differences from channel 1. ``rows``:
    ``ch`` is channels ``col`` .. ``col`` + 2 of those rows (a view), whose sparse splits they have made."""
    n = ch.shape[1]
    counts = rows.counts(col) if rows is not None else (None, None)
    counted = _counted_estimates(ch, False, counts[0]) if n >= SAMPLE_MIN else None
    est = None
    if counted is not None:  # _channel_predicted from the counts
        d = _counted_estimates(ch, True, counts[1])
        plain = counted[0][0].best()[1] + counted[0][2].best()[1]
        pred = d[0][0].best()[1] + d[0][2].best()[1] < CHANNEL_PRED_GAIN * plain
        est = d if pred else counted
    else:
        pred = bool(n) and _channel_predicted(ch)
    if pred:
        w.u8(CHANNEL_PRED)
        ch = _from_channel_1(ch.astype(np.int64))
        rows = None
    if n >= SAMPLE_MIN and (ch.any() if rows is None else rows.any(range(col, col + 3))):
        # estimated on every 8th Gaussian (only the choice depends on it; both sides alike)
        sep_st, joint = est if est is not None else _sub_estimates(ch[:, ::8].astype(np.int64))
        sep = [_stream_cost(st) for st in sep_st]
        sep_ns = sum(t for _, t in sep)
        m = sep_st[0].n
        best = None
        for b in JOINT_BASES:
            e, joint_st, esc_st = joint(b)
            if e > m // 32:
                continue
            jb, jt = _stream_cost(joint_st())
            eb = sum(st.best()[1] for st in esc_st()) if e else 0.0
            cost = (jb + eb + 16, jt + 3 * e * _sym_ns(64))
            if best is None or cost[0] < best[1][0]:
                best = (b, cost)
        if best is not None and best[1][1] < 0.8 * sep_ns:
            # clearly faster: compare sizes on all values (a subsample overstates table costs)
            b = best[0]
            full = ch.astype(np.int64)
            j, esc = _joint_symbols(*_zigzag_max(full), b)
            jb = Stats(j, signed=False, keep_u=False).best()[1] + 16
            jb += sum(Stats(c[esc], keep_u=False).best()[1] for c in full) if esc.any() else 0.0
            sb = sum(_stream_cost(Stats(c, keep_u=False))[0] for c in full)
            if jb <= 1.005 * sb + 64:
                w.u8(JOINT_MODE)
                w.u8(b)
                _put(w, j, signed=False, label="sh_rest")
                for c in ch:
                    _put(w, c[esc], label="sh_rest")
                return
    if rows is not None:
        for c in range(col, col + 3):
            rows.put(w, c)
        return
    for c in ch:
        _put(w, c, label="sh_rest")


_JOINT_TABLES: dict[int, np.ndarray] = {}


def _joint_table(b: int) -> np.ndarray:
    """(3, B³ + 1) int32: each channel's value for every joint symbol (0 for the escape)."""
    if b not in _JOINT_TABLES:
        jj = np.arange(b**3)
        u = np.stack([jj % b, (jj // b) % b, jj // (b * b)])
        v = (u >> 1) ^ -(u & 1)
        _JOINT_TABLES[b] = np.concatenate([v, np.zeros((3, 1), np.int64)], 1).astype(np.int32)
    return _JOINT_TABLES[b]


def _get_sh_joint(r: Reader, out: np.ndarray, limit: int) -> None:
    """Inverse of the joint form of :func:`_put_sh_coefficient` into ``out`` (3, n) int32 zeros."""
    n = out.shape[1]
    r.u8()
    b = r.u8()
    if b not in JOINT_BASES:
        raise r.fail(f"joint SH base {b} not in {JOINT_BASES}")
    j = decode_stream(r, n, signed=False, int32=True, limit=b**3)
    table = _joint_table(b)
    esc = np.flatnonzero(j == b**3)
    for c in range(3):
        np.take(table[c], j, out=out[c], mode="clip")
        if b // 2 > limit:
            if max(int(out[c].max()), -int(out[c].min())) > limit:
                raise r.fail("SH coefficient outside its quantisation range")
    for c in range(3):
        v = decode_stream(r, len(esc), int32=True, limit=limit)
        out[c][esc] = v


# -- decoder ----------------------------------------------------------------------------------------
def decode_section(
    chunks: list[Chunk],
    params: QuantParams,
    sh_degree: int,
    cap: int,
    max_level: int | None = None,
    where: str = "section",
):
    """Decode a section. Returns a :class:`QMap` for a full decode, or a preview
    :class:`GaussianMap` of aggregated Gaussians when ``max_level`` stops before the last level."""
    if not chunks or chunks[0].type != TILES:
        raise DecodeError(f"{where}: missing TILES chunk")
    r = Reader(chunks[0].data, f"{where} TILES")
    n = r.varint(cap)
    L = r.varint(32)
    if L < 1:
        raise r.fail("no levels")
    D = params.tile_bits
    depths = [r.u8() for _ in range(L)]
    if depths[-1] != D or any(b <= a for a, b in zip(depths, depths[1:], strict=False)):
        raise r.fail(f"level depths {depths} are not increasing to the tile depth {D}")
    geometry = r.u8()
    blue_first = bool(geometry & BLUE_FIRST)
    tailed = bool(geometry & TAILS)
    geometry &= ~(BLUE_FIRST | TAILS)
    if tailed and geometry != OCTREE:
        raise r.fail("tails without the octree geometry")
    if geometry == ID_ORDER:
        if L != 1:
            raise r.fail(f"id-ordered geometry with {L} levels (it has one)")
        if n == 0:
            raise r.fail("id-ordered geometry without Gaussians")
    elif geometry != OCTREE:
        raise r.fail(f"unknown geometry form {geometry}")
    else:
        n_tiles = r.varint(r.remaining // 24)
        tiles = r.array("<i8", 3 * n_tiles).reshape(n_tiles, 3).astype(np.int64)
    tail_depth = -1
    if tailed:
        tail_depth = r.u8()
        lo = depths[-2] if L > 1 else 0
        if not lo <= tail_depth < D:
            raise r.fail(f"tail depth {tail_depth} outside the last level's depths {lo}..{D - 1}")
    r.end()
    levels = [c for c in chunks[1:] if c.type == LEVEL]
    if [c.level for c in levels] != list(range(L)):
        raise DecodeError(f"{where}: LEVEL chunks {[c.level for c in levels]} do not match {L} levels")
    if geometry == ID_ORDER:  # the one LEVEL chunk: ids and positions (idorder.py), then the leaves
        r = Reader(levels[0].data, f"{where} LEVEL 0")
        ids, pos = idorder.decode(r, n)
        return _get_leaves(r, ids, pos, None, params, sh_degree, where, blue_first)
    if n_tiles and (np.abs(tiles).max() >= (MAX_LATTICE >> D)):
        raise DecodeError(f"{where}: tile coordinate beyond the position lattice")
    if n_tiles > max(n, 0) or (n > 0 and n_tiles == 0):
        raise DecodeError(f"{where}: {n_tiles} tiles for {n} Gaussians")
    stop = L - 1 if max_level is None else min(max_level, L - 1)
    if n == 0:
        return (
            QMap.empty(sh_degree)
            if stop == L - 1
            else _preview(np.zeros((0, 3)), None, sh_degree, params, stop)
        )

    kernels = jit.kernels()
    tile_count = np.ones(n_tiles, np.int64)  # nodes per tile at the current depth (tiles are contiguous)
    code = np.zeros(n_tiles, np.uint64)
    prev_d, prev_coarse = 0, None
    for k in range(stop + 1):
        d = depths[k]
        r = Reader(levels[k].data, f"{where} LEVEL {k}")
        anc = None  # each node's ancestor among the previous level's nodes (levels after the first)
        dd0 = prev_d
        if kernels is not None:  # the depths before any tails in one compiled call (each: ~10 µs here)
            last = tail_depth if k == L - 1 and prev_d <= tail_depth < d else d
            dd0, code, anc, tile_count = _descend_compiled(
                kernels, r, code, tile_count, n, k > 0, prev_d, last
            )
        for dd in range(dd0, d):
            try:
                if dd == tail_depth and k == L - 1:  # the rest of the depths as tails
                    up = anc if anc is not None or k == 0 else np.arange(len(code))
                    code, anc, tile_count = tails.get(r, code, up, tile_count, D, dd, n)
                    break
                occ = decode_stream(r, len(code), signed=False, int32=True)  # (no uint64 copy)
                code, anc, tile_count = octree.descend(code, occ, tile_count, n, parents=k > 0, up=anc)
            except ValueError as e:
                raise r.fail(f"depth {dd + 1}: {e}") from None
        m = len(code)
        if k < L - 1:
            pc = None
            if prev_coarse is not None and anc is not None:  # (both are, after the first level)
                pc = _Parent(prev_coarse, anc)
            coarse = _get_coarse(r, m, pc, params, blue_first)
            b = _offset_bits(d, D)
            coarse.off = np.stack([decode_stream(r, m, signed=False, int32=True) for _ in range(3)], 1)
            if m and extremes(coarse.off)[1] >= (1 << b):
                raise r.fail("sub-cell offset outside the cell")
            r.end()
            if k == stop:
                tile_of = np.repeat(np.arange(n_tiles), tile_count)
                return _preview(
                    _centres(tiles, tile_of, code, d, D, params, coarse.off), coarse, sh_degree, params, k
                )
            prev_coarse = coarse
        else:
            cnt = decode_stream(r, m, signed=False, int32=True)
            if extremes(cnt)[1] >= n or int(cnt.sum(dtype=np.int64)) + m != n:
                raise r.fail(f"voxel counts do not add up to {n} Gaussians")
            # Gaussians of each voxel, in octree order (None: one each); their rows are repeated
            # as they are made, not gathered afterwards (a gather of (n, 3) rows is ~1.3 ms on guitar)
            reps = (cnt + 1).astype(np.int64) if m != n else None
            first = r.varint((1 << 63) - 1)
            dif = decode_stream(r, n - 1)
            ids = np.empty(n, np.int64)
            ids[0] = first
            if n > 1:
                np.cumsum(dif, out=ids[1:])
                ids[1:] += first
            if ids.min() < 0:  # (int64: never ≥ 2**63)
                raise r.fail("id outside 0..2**63")
            ids = ids.view(np.uint64)
            order = None  # the Gaussians' id order, where the octree order is not it already
            if n > 1 and int(dif.min()) <= 0:  # (the encoder's usual order is increasing)
                order = _id_order(ids)
                ids = ids[order]
                if np.any(ids[1:] == ids[:-1]):
                    raise DecodeError(
                        f"{where}: duplicate Gaussian id {int(ids[1:][ids[1:] == ids[:-1]][0])}"
                    )
            pos = octree.demorton(code, tiles << D, tile_count, reps)
            pc = None
            if prev_coarse is not None and anc is not None:  # (both are, after the first level)
                up = anc if reps is None else np.repeat(anc, reps)
                pc = _Parent(prev_coarse, up if order is None else up[order])
            if order is not None:
                pos = np.take(pos, order, axis=0)  # (rows: ~5× faster than pos[order] here)
            return _get_leaves(r, ids, pos, pc, params, sh_degree, where, blue_first)
        prev_d = d
    raise AssertionError("unreachable")


def _descend_compiled(kernels, r: Reader, code, tile_count, n: int, parents: bool, d0: int, d1: int):
    """Depths ``d0`` … ``d1`` − 1 of the octree (occupancy streams from ``r``) by
    :func:`.kernels.descend_streams` as far as it takes them: (the depth it stopped at, codes,
    each node's ancestor at ``d0`` − 1 or None, nodes per tile), the reader moved past them. The
    step-by-step loop reads the rest, and names any fault, from there."""
    u8 = reader_bytes(r)
    done, r.pos, code, up, tile_count = kernels.descend_streams(
        u8, r.pos, len(u8), code, _NO_UP, tile_count, parents, n, d1 - d0, *_TABLE_ARRAYS, _MAX_ALPHABET
    )
    return d0 + done, code, (up if parents and done else None), tile_count


_NO_UP = np.zeros(0, np.int64)


def _id_order(ids: np.ndarray) -> np.ndarray:
    """The order sorting ``ids`` (uint64). Ids are unique (the caller checks): any sort gives the
    one order. Ids that fill a range (1..N of a fresh scene, in any order) are placed by one
    scatter instead of a sort; anything else (gaps, repeats) is sorted."""
    n = len(ids)
    if n > 1:
        lo = int(ids.min())
        if int(ids.max()) - lo == n - 1:
            order = np.full(n, -1, np.int64)
            order[(ids - np.uint64(lo)).view(np.int64)] = np.arange(n)
            if order.min() >= 0:  # every slot filled once: no repeats
                return order
    return np.argsort(ids)


def _get_leaves(
    r: Reader,
    ids: np.ndarray,
    pos: np.ndarray,
    pc: _Parent | None,
    params: QuantParams,
    sh_degree: int,
    where: str,
    blue_first: bool,
) -> QMap:
    """Inverse of :func:`_put_leaves` for Gaussians whose ids (ascending) and positions are known."""
    n = len(ids)
    lev = decode_stream(r, n, signed=False, int32=True)
    if not _within(lev, 0, 255):
        raise r.fail("level field above 255")
    leaf = _get_coarse(r, n, pc, params, blue_first)
    num_sh = (sh_degree + 1) ** 2
    k3 = 3 * (num_sh - 1)
    cols = np.zeros((k3, n), np.int32)  # zero pages: all-zero and sparse streams write less
    # |v| ≤ 64 / step + 1 (the quantisation range), checked by the stream on what its
    # structure leaves open: no scan of all-zero or sparse columns
    bound = np.floor(np.repeat(64.0 / params.rest_steps(num_sh), 3) + 1).astype(np.int64) if k3 else _NO_I64
    if k3 and n and r.remaining and r.data[r.pos] in (PALETTE_MODE, PALETTE_FIRST_USE):
        first_uses = r.u8() == PALETTE_FIRST_USE
        k = r.varint(n)  # a palette never has more rows than Gaussians: bounded allocation
        if k < 1:
            raise r.fail("empty SH palette")
        pal = np.zeros((k3, k), np.int32)
        _get_sh_cols(r, pal, bound)
        if first_uses:
            idx = _get_first_uses(r, n, k)
        else:
            idx = decode_stream(r, n, signed=False, int32=True, limit=k - 1)
            if idx.max() >= k:
                raise r.fail("SH palette index out of range")
        # row-major (n, 3·(K−1)): one contiguous row copy per Gaussian (a column-wise gather
        # reads the palette 3·(K−1) times)
        rest = np.take(np.ascontiguousarray(pal.T), idx, axis=0).reshape(n, -1, 3)
    else:
        _get_sh_cols(r, cols, bound)
        rest = cols.T.reshape(n, -1, 3)  # a view: no transposed copy
    r.end()
    _check_ranges(leaf, params, where)
    return QMap(
        sh_degree,
        ids,
        pos,
        lev.astype(np.uint8),
        leaf.op,
        leaf.scale,
        leaf.rot_idx,
        leaf.rot,
        leaf.dc,
        rest,
    )


def _get_sh_cols(r: Reader, cols: np.ndarray, bound: np.ndarray) -> None:
    """The per-coefficient SH streams into ``cols`` (3·(K−1), n) int32 zeros."""
    n = cols.shape[1]
    for j in range(0, len(cols), 3):
        out, lim = cols[j : j + 3], int(bound[j])  # one bound for a coefficient's three channels
        pred = bool(r.remaining) and r.data[r.pos] == CHANNEL_PRED
        if pred:
            r.u8()
        # differences from channel 1 span twice the range (|v| < 2^31 for any step ≥ 1e-6)
        lims = (2 * lim, lim, 2 * lim) if pred else (lim, lim, lim)
        if r.remaining and r.data[r.pos] == JOINT_MODE:
            _get_sh_joint(r, out, max(lims))
        else:
            for c in range(3):
                decode_stream(r, n, int32=True, out=out[c], zeroed=True, limit=lims[c])
        if pred:
            out[0] += out[1]
            out[2] += out[1]
            # all three channels (channel 1 too: the joint form read it under the wider limit),
            # one pass over the coefficient's rows (contiguous in ``cols``)
            if n and _magnitude(out) > lim:
                raise r.fail("SH coefficient outside its quantisation range")


def _check_ranges(c: Coarse, params: QuantParams, where: str) -> None:
    f = params.faint_factor  # a faint value rounds to the nearest multiple of f
    lim = {
        "op": 20 / params.opacity_step + 1,
        "scale": 30 / params.scale_step + f,
        "dc": 64 / params.dc_step + f,
    }
    for name, bound in lim.items():
        a = getattr(c, name)
        if len(a) and _magnitude(a) > bound:
            raise DecodeError(f"{where}: {name} value outside its quantisation range")


def check_lattice(q: QMap, params: QuantParams, where: str) -> None:
    """Every value of ``q`` lies where a section can carry it (docs/format.md section 1): the
    ranges and rotation lattice the section decoder checks, SH within ±R, positions below 2**52
    steps, a faint Gaussian's scales and DC multiples of F. For maps made otherwise than by
    decoding a section (a delta's updated Gaussians), so that what a receiver holds is always a
    map a snapshot can send."""
    if not len(q):
        return
    _check_ranges(Coarse(q.op, q.scale, q.rot_idx, q.rot, q.dc), params, where)
    if int(np.abs(q.pos).max()) >= MAX_LATTICE:
        raise DecodeError(f"{where}: position beyond 2**52 steps")
    if not rotations_within(q.rot, rotation_bits(q.scale, params, q.op), params):
        raise DecodeError(f"{where}: rotation component outside its lattice")
    if q.rest.size:
        bound = np.floor(64.0 / params.rest_steps(q.num_sh) + 1)
        if np.any(np.abs(q.rest).max(axis=(0, 2)) > bound):
            raise DecodeError(f"{where}: SH coefficient outside its quantisation range")
    faint = faint_rows(q.op, params)
    if faint is not None and len(faint):
        f = params.faint_factor
        if np.any(q.scale[faint] % f) or np.any(q.dc[faint] % f):
            raise DecodeError(f"{where}: a faint Gaussian's scale or DC off its lattice (multiples of {f})")


def _preview(centers, coarse: Coarse | None, sh_degree: int, params: QuantParams, level: int) -> GaussianMap:
    """A renderable map of the aggregated Gaussians of one level (ids 1..M in octree order)."""
    m = len(centers)
    k = (sh_degree + 1) ** 2
    if coarse is None:
        return GaussianMap(sh_degree=sh_degree)
    _check_ranges(coarse, params, "preview")
    q = QMap(
        sh_degree,
        np.arange(1, m + 1, dtype=np.uint64),
        np.zeros((m, 3), np.int64),
        np.full(m, level, np.uint8),
        coarse.op,
        coarse.scale,
        coarse.rot_idx,
        coarse.rot,
        coarse.dc,
        np.zeros((m, k - 1, 3), np.int64),
    )
    g = dequantize(q, params)
    g.means = centers.astype(np.float32)
    return g
