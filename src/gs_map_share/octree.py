"""Octree geometry: Morton codes, child-occupancy bytes per depth, and aggregated (coarse) Gaussians.

Per codec tile, local integer coordinates (``tile_bits`` bits per axis) are interleaved into a Morton
code, x the most significant bit of each triple, so a node at depth d is the code's top 3·d bits and
its child octant is ``(x_bit << 2) | (y_bit << 1) | z_bit``. Nodes of all tiles are kept in
(tile index, code) order; a depth's occupancy bytes list, for each node in that order, which of its
eight children exist (bit o = octant o). Decoding is the same walk in reverse (ProGS: a child is its
parent plus an octant).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gs_mapping.geometry import matrix_to_quat, quat_to_matrix
from gs_mapping.morton import demorton as _demorton
from gs_mapping.morton import morton as _morton

from . import jit

__all__ = ["build_levels", "demorton", "morton"]

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.int64)
_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(bool)
# octant of the lowest set bit of each occupancy byte (0 for 0, which never occurs)
_FEW = (
    64  # expand_codes: up to this many nodes with several children, the first children are copied in slices
)
_LOWBIT = np.array([(i & -i).bit_length() - 1 if i else 0 for i in range(256)], np.uint64)


def morton(local: np.ndarray) -> np.ndarray:
    """``gs_mapping.morton.morton``: uint64 codes of (N, 3) cells (the low 21 bits of each);
    compiled in one pass where numba is there (the same bits)."""
    kernels = jit.kernels()
    local = np.asarray(local)
    if kernels is None or local.ndim != 2 or local.shape[1:] != (3,) or local.dtype.kind not in "iu":
        return _morton(local)
    out = np.empty(len(local), np.uint64)
    kernels.morton(np.ascontiguousarray(local, np.int64), out)
    return out


def demorton(
    code: np.ndarray,
    origin: np.ndarray | None = None,
    tile_count: np.ndarray | None = None,
    reps: np.ndarray | None = None,
) -> np.ndarray:
    """``gs_mapping.morton.demorton``: (N, 3) int64 cells of uint64 codes, plus each code's tile
    ``origin`` (int64 (T, 3); tile t holds ``tile_count[t]`` consecutive codes, summing to N)
    when given, each row repeated ``reps[i]`` times when given (int64, ≥ 1: the caller checked
    their sum); compiled in one pass where numba is there (the same bits; the decoder's positions,
    ~10× numpy's 18 passes, a repeat of the origins and a gather of rows)."""
    kernels = jit.kernels()
    if kernels is None:
        cells = _demorton(code)
        if origin is not None and tile_count is not None:
            cells += np.repeat(origin, tile_count, axis=0)
        return cells if reps is None else np.repeat(cells, reps, axis=0)
    out = np.empty((len(code) if reps is None else int(reps.sum()), 3), np.int64)
    if origin is None or tile_count is None:
        origin, tile_count = _NO_ORIGIN, _NO_INDEX
    kernels.demorton(
        np.ascontiguousarray(code, np.uint64),
        out,
        np.ascontiguousarray(origin, np.int64),
        np.asarray(tile_count, np.int64),
        _NO_INDEX if reps is None else np.asarray(reps, np.int64),
    )
    return out


def build_levels(tile_idx: np.ndarray, codes: np.ndarray, depth: int):
    """From sorted unique leaves (tile index, Morton code at ``depth``) compute, for every depth
    d < depth, the nodes (tile, code) and their occupancy bytes, and the parent index of each node
    at d+1 in the node list of d.

    Returns lists indexed by depth: ``node_tile[d]``, ``node_code[d]`` (d = 0..depth),
    ``occ[d]`` (d = 0..depth-1) and ``parent[d]`` (d = 1..depth; index into depth d-1).
    """
    node_tile: list[Any] = [None] * (depth + 1)
    node_code: list[Any] = [None] * (depth + 1)
    occ: list[Any] = [None] * depth
    parent: list[Any] = [None] * (depth + 1)
    t, c = tile_idx, codes
    node_tile[depth], node_code[depth] = t, c
    compiled = jit.kernels()
    for d in range(depth - 1, -1, -1):
        if compiled is not None:  # one pass a depth (numpy's takes ten)
            n = len(c)
            t_up, c_up = np.empty(n, t.dtype), np.empty(n, np.uint64)
            occ_up, parent[d + 1] = np.empty(n, np.uint8), np.empty(n, np.int64)
            m = compiled.parent_level(t, c, t_up, c_up, occ_up, parent[d + 1])
            t, c, occ[d] = t_up[:m], c_up[:m], occ_up[:m]
            node_tile[d], node_code[d] = t, c
            continue
        pc = c >> np.uint64(3)
        start = np.ones(len(c), bool)
        if len(c) > 1:
            start[1:] = (pc[1:] != pc[:-1]) | (t[1:] != t[:-1])
        starts = np.flatnonzero(start)
        bits = (np.uint8(1) << (c & np.uint64(7)).astype(np.uint8)).astype(np.uint8)
        occ[d] = np.bitwise_or.reduceat(bits, starts) if len(starts) else np.zeros(0, np.uint8)
        parent[d + 1] = np.cumsum(start) - 1
        t, c = t[starts], pc[starts]
        node_tile[d], node_code[d] = t, c
    return node_tile, node_code, occ, parent


def expand_codes(code: np.ndarray, occ: np.ndarray, kids: np.ndarray | None = None, parents: bool = True):
    """One depth down, in numpy (the plain path of :func:`descend`; its compiled path is
    ``kernels.descend``): children codes in order and each child's parent index (nodes of all
    tiles in order; a tile's children follow its nodes). ``kids``: :func:`children_per_node` of
    ``occ`` when already computed; ``parents=False``: the parent indices are not needed (None
    instead).

    Every node's first child is its code and lowest occupied octant; near the leaves most nodes
    have no other child, so only the few that do are expanded further."""
    if kids is None:
        kids = children_per_node(occ)
    extra = int(kids.sum()) - len(code)  # children beyond each node's first
    # many nodes with several children (or an empty node, which a decoder refuses before this):
    # expand all bits at once
    if 4 * extra > len(code) or (len(kids) and int(kids.min()) == 0):
        k = np.flatnonzero(_BITS[occ].ravel())  # set bits of the (P, 8) table, node-major
        pidx = k >> 3
        k &= 7  # octant, increasing within each node
        child = code[pidx]
        child <<= np.uint64(3)
        child |= k.view(np.uint64)
        return child, (pidx if parents else None)
    first = code << np.uint64(3)
    first |= _LOWBIT[occ]  # (a fancy index by the uint8 bytes: no intp copy of the indices, as np.take makes)
    if extra == 0:  # one child each: the children are the nodes' first children
        return first, (np.arange(len(code)) if parents else None)
    multi = np.flatnonzero(kids > 1)
    n_rest = kids[multi] - 1  # further children of each node that has them
    before = np.cumsum(n_rest)
    before -= n_rest  # further children ahead of each such node
    # their codes: the set bits above the lowest, node-major
    rest = occ[multi]
    rest &= rest - np.uint8(1)
    k = np.flatnonzero(_BITS[rest].ravel())
    sub = k >> 3
    k &= 7
    more = code[multi][sub]
    more <<= np.uint64(3)
    more |= k.view(np.uint64)
    # and where they go: after their node's first child (at multi + before)
    at = (multi + before)[sub] + 1 + (np.arange(len(k)) - before[sub])
    if len(multi) <= _FEW:  # the first children in a few slices
        child = np.empty(len(code) + extra, np.uint64)
        lo, shift = 0, 0
        for i, r in zip(multi.tolist(), n_rest.tolist(), strict=True):
            child[lo + shift : i + 1 + shift] = first[lo : i + 1]
            lo, shift = i + 1, shift + r
        child[lo + shift :] = first[lo:]
    else:
        child = np.repeat(first, kids)
    child[at] = more
    if not parents:
        return child, None
    pidx = np.zeros(len(child), np.int64)
    pidx[at] = 1
    np.cumsum(pidx, out=pidx)  # further children before each child
    np.subtract(np.arange(len(child)), pidx, out=pidx)
    return child, pidx


def children_per_node(occ: np.ndarray) -> np.ndarray:
    return _POPCOUNT[occ]


def descend(
    code: np.ndarray,
    occ: np.ndarray,
    tile_count: np.ndarray,
    max_nodes: int,
    parents: bool = True,
    up: np.ndarray | None = None,
):
    """A decoder's step one depth down: ``occ`` (the decoded occupancy bytes, int32, one per node)
    checked to lie in 1..255, then :func:`expand_codes`; with the nodes per tile at the new depth
    (``tile_count``: nodes of a tile contiguous, summing to ``len(occ)``, which the compiled pass
    relies on). Returns (children, parent index or None, nodes per tile); ``ValueError`` naming
    the fault for a byte outside 1..255 or more than ``max_nodes`` children (before anything is
    sized by them). With ``up`` (int64, one per node) the index returned is ``up[parent]``: steps
    chained this way carry each node's ancestor at some coarser depth down, one pass per step
    instead of a gather per depth afterwards. Compiled: one pass into arrays sized by the bound
    min(8 × nodes, ``max_nodes``) (the numpy path makes four passes and two copies)."""
    compiled = jit.kernels()
    if compiled is not None:
        cap = max(0, min(8 * len(code), max_nodes))  # (each node has at most 8 children)
        per_tile = np.empty(len(tile_count), np.int64)
        child = np.empty(cap, np.uint64)
        pidx = np.empty(cap if parents else 0, np.int64)
        m = compiled.descend(code, occ, tile_count, child, pidx, _NO_INDEX if up is None else up, per_tile)
        if m == -1:
            raise ValueError("occupancy byte outside 1..255")
        if m < -1 or m > max_nodes:
            raise ValueError(f"{-2 - m if m < -1 else m} nodes, more than the {max_nodes} Gaussians")
        return child[:m], (pidx[:m] if parents else None), per_tile
    if len(occ) and (occ.min() < 1 or occ.max() > 255):
        raise ValueError("occupancy byte outside 1..255")
    occ = occ.astype(np.uint8)
    kids = children_per_node(occ)
    m = int(kids.sum())
    if m > max_nodes:
        raise ValueError(f"{m} nodes, more than the {max_nodes} Gaussians")
    child, pidx = expand_codes(code, occ, kids, parents)
    if pidx is not None and up is not None:
        pidx = up[pidx]
    return child, pidx, np.add.reduceat(kids, np.cumsum(tile_count) - tile_count)


_NO_INDEX = np.zeros(0, np.int64)
_NO_ORIGIN = np.zeros((0, 3), np.int64)


# -- aggregation ------------------------------------------------------------------------------------
def leaf_moments(
    node: np.ndarray,
    n_nodes: int,
    rel_means: np.ndarray,
    quats: np.ndarray,
    log_scales: np.ndarray,
    opacity_logits: np.ndarray,
    dc: np.ndarray,
) -> dict:
    """Opacity-weighted sums of the Gaussians of each node (positions relative to their tile's
    origin). Sums compose: a coarser node's moments are the sums of its children's."""
    alpha = 1.0 / (1.0 + np.exp(-opacity_logits.astype(np.float64)))
    s = np.exp(log_scales.astype(np.float64))
    kernels = jit.kernels()
    out: dict[str, np.ndarray]
    if kernels is not None:  # the same sums in one compiled pass (~4× faster on playbot)
        out = {
            "w": np.zeros(n_nodes),
            "wm": np.zeros((n_nodes, 3)),
            "wS": np.zeros((n_nodes, 6)),
            "aa": np.zeros(n_nodes),
            "wdc": np.zeros((n_nodes, 3)),
            "amax": np.zeros(n_nodes),
        }
        kernels.leaf_moments(
            np.asarray(node, np.int64),
            np.ascontiguousarray(quats),
            s,
            alpha,
            np.ascontiguousarray(rel_means, np.float64),
            np.ascontiguousarray(dc),
            *out.values(),
        )
        return out
    s2 = s * s
    # rotation matrices, then Σ = Σ_k s_k² r_k r_kᵀ component by component
    R = quat_to_matrix(quats.astype(np.float64))
    r = [[R[:, i, j] for j in range(3)] for i in range(3)]
    mu = rel_means.astype(np.float64)
    w = alpha + 1e-6
    ss = np.sort(s, axis=1)
    area = ss[:, 1] * ss[:, 2]
    wS = []
    for i, j in _PAIRS:
        cov = r[i][0] * r[j][0] * s2[:, 0] + r[i][1] * r[j][1] * s2[:, 1] + r[i][2] * r[j][2] * s2[:, 2]
        wS.append(np.bincount(node, w * (cov + mu[:, i] * mu[:, j]), n_nodes))
    out = {
        "w": np.bincount(node, w, n_nodes),
        "wm": np.stack([np.bincount(node, w * mu[:, i], n_nodes) for i in range(3)], 1),
        "wS": np.stack(wS, 1),
        "aa": np.bincount(node, alpha * area, n_nodes),
        "wdc": np.stack([np.bincount(node, w * dc[:, i].astype(np.float64), n_nodes) for i in range(3)], 1),
    }
    amax = np.zeros(n_nodes)
    np.maximum.at(amax, node, alpha)
    out["amax"] = amax
    return out


COVER = 1.4  # tuned on the synthetic room (level PSNR), see bench/results/codec.md
_PAIRS = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]


def combine_moments(m: dict, parent: np.ndarray, n_parents: int) -> dict:
    out: dict[str, np.ndarray] = {}
    for k, v in m.items():
        if k == "amax":
            a = np.zeros(n_parents)
            np.maximum.at(a, parent, v)
            out[k] = a
        elif v.ndim == 1:
            out[k] = np.bincount(parent, v, n_parents)
        else:
            out[k] = np.stack([np.bincount(parent, v[:, i], n_parents) for i in range(v.shape[1])], 1)
    return out


def merged_gaussians(m: dict, centres: np.ndarray):
    """Moment-matched Gaussian per node, placed at its cell centre (relative coordinates):
    covariance = E[(x-c)(x-c)ᵀ] over the children's mixture; opacity conserves Σ α·area (area ≈
    product of the two largest scales), capped by the largest child opacity; DC = weighted mean.
    Returns (quats xyzw, log_scales, opacity_logits, dc)."""
    w = m["w"]
    mean = m["wm"] / w[:, None]
    second = m["wS"] / w[:, None]
    c = centres
    agg = np.empty((len(w), 3, 3))
    for k, (i, j) in enumerate(_PAIRS):
        v = second[:, k] - c[:, i] * mean[:, j] - mean[:, i] * c[:, j] + c[:, i] * c[:, j]
        agg[:, i, j] = v
        agg[:, j, i] = v
    evals, evecs = np.linalg.eigh(agg)
    evals = np.maximum(evals, 1e-16)
    det = np.linalg.det(evecs)
    evecs[det < 0, :, 0] *= -1
    q = matrix_to_quat(evecs, positive_w=False)
    ls = 0.5 * np.log(evals)
    # eigh sorts ascending: widen the two in-plane axes so neighbouring coarse Gaussians overlap as
    # the surface they summarise does (moment matching alone leaves a dotted surface)
    ls[:, 1:] += np.log(COVER)
    area_p = np.exp(np.sort(ls, axis=1)[:, 1:].sum(axis=1))
    a_p = np.clip(np.minimum(m["aa"] / np.maximum(area_p, 1e-30), m["amax"]), 1e-4, 0.9999)
    return q, ls, np.log(a_p / (1 - a_p)), m["wdc"] / w[:, None]
