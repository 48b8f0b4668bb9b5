"""Octree *tails* (version 10): below some depth s of a section's last level nearly every node holds
one voxel (guitar: 95 % at s = 11 of 17), and its remaining occupancy bytes are each one set bit,
one entropy-coded symbol and one expansion step per node and depth. Instead, a stream at s says
which nodes *branch* (hold two voxels or more); only their subtrees go on in occupancy bytes, and
each *tail* node's path to its voxel follows in a few streams of two octants per symbol (6 bits,
the deeper octant low; the last alone when D − s is odd), one value per tail. The bytes are the
same (the octant symbols carry what the single-bit bytes did: guitar +0.3 KB of 1.3 MB); the
decoder ANS-decodes half the symbols and expands only the branches, then merges the tails back
into octree order in one pass (guitar, quality 5: the depths below s decode in 3.1 ms instead of
5.5). The encoder takes the shallowest depth at or below the last level's first where at least
TAIL_SHARE of at least TAIL_MIN nodes are tails, two depths above the leaves or more; else none
(the TILES chunk says which, docs/format.md §4)."""

from __future__ import annotations

import numpy as np

from . import jit, octree
from .bitio import Reader
from .entropy import decode_stream

TAIL_SHARE = 0.9  # (guitar: s = 11 at 95 % tails; at 83 % (s = 10) the branches' own octree costs more)
TAIL_MIN = 1024  # nodes at s: a smaller section decodes in well under a millisecond either way
PAIR = 6  # bits (two octants) per tail symbol


def parts(depths: int) -> list[int]:
    """Bits of each tail stream for ``depths`` = D − s: pairs of octants, the last alone if odd."""
    return [PAIR] * (depths // 2) + [3] * (depths % 2)


def choose(occ: list[np.ndarray], lo: int, D: int) -> tuple[int, np.ndarray] | None:
    """(s, voxels under each node at s) for a last level starting at depth ``lo``, or None.
    Voxel counts from the leaves up, one depth at a time, while the tails' share holds."""
    best = None
    below = np.ones(0, np.int64)  # voxels under each node at d + 1 (D: one each)
    for d in range(D - 1, lo - 1, -1):
        kids = octree.children_per_node(occ[d]).astype(np.int64)
        if d == D - 1:
            voxels = kids
        else:
            voxels = np.add.reduceat(below, np.cumsum(kids) - kids)
        if len(voxels) < TAIL_MIN or np.count_nonzero(voxels == 1) < TAIL_SHARE * len(voxels):
            break
        if d <= D - 2:
            best = (d, voxels)
        below = voxels
    return best


def streams(occ: list[np.ndarray], s: int, D: int, voxels: np.ndarray, leaf_code: np.ndarray) -> list:
    """The streams of depths s..D−1 in order, as (label, values, bits or None): the branch flags,
    the branches' occupancy per depth, the tails' paths (``bits``: the symbols' width, coded
    without escapes). ``leaf_code``: the voxels' Morton codes at D, in octree order."""
    branch = voxels > 1
    out: list[tuple[str, np.ndarray, int | None]] = [("tail_branch", branch.astype(np.int64), None)]
    keep = branch  # nodes at d under a branch
    for d in range(s, D):
        out.append(("occupancy", occ[d][keep].astype(np.int64), None))
        if d + 1 < D:
            keep = np.repeat(keep, octree.children_per_node(occ[d]))
    first = np.cumsum(voxels) - voxels  # each node's first voxel
    path = leaf_code[first[~branch]] & np.uint64((1 << (3 * (D - s))) - 1)
    shift = 3 * (D - s)
    for bits in parts(D - s):
        shift -= bits
        sym = (path >> np.uint64(shift)) & np.uint64((1 << bits) - 1)
        out.append(("tail_path", sym.astype(np.int64), bits))
    return out


def get(r: Reader, code: np.ndarray, up: np.ndarray | None, tile_count: np.ndarray, D: int, s: int, cap: int):
    """Inverse of :func:`streams` for the nodes ``code`` at s (``up``: each one's ancestor index,
    or None): the voxels' codes at D in octree order, their ancestor indices (None without
    ``up``) and voxels per tile. ValueError naming the fault, as :func:`.octree.descend`."""
    m = len(code)
    branch = decode_stream(r, m, signed=False, int32=True, limit=1)
    at = np.flatnonzero(branch)
    b_code, b_up = code[at], at
    one = np.array([len(at)], np.int64)
    for _ in range(s, D):
        occ = decode_stream(r, len(b_code), signed=False, int32=True)
        if len(b_code):  # (none: empty streams)
            b_code, b_up, one = octree.descend(b_code, occ, one, cap, up=b_up)
    n_tails = m - len(at)
    if n_tails + len(b_code) > cap:
        raise ValueError(f"{n_tails + len(b_code)} nodes, more than the {cap} Gaussians")
    widths = parts(D - s)
    path = np.empty((len(widths), n_tails), np.int32)
    for i, bits in enumerate(widths):
        decode_stream(r, n_tails, signed=False, int32=True, out=path[i], limit=(1 << bits) - 1)
    return join(code, branch, path, widths, b_code, b_up, up, tile_count)


_NO_INDEX = np.zeros(0, np.int64)


def join(code, branch, path, widths, b_code, b_up, up, tile_count):
    """The voxels at D: for each node at s in order, its tail's (its code, then its path) or its
    branch's voxels (``b_code``, those of node i having ``b_up`` = i, in order). Returns (codes,
    ancestors or None, voxels per tile)."""
    n = path.shape[1] + len(b_code)
    kernels = jit.kernels()
    if kernels is not None:
        out = np.empty(n, np.uint64)
        out_up = np.empty(n if up is not None else 0, np.int64)
        per_tile = np.empty(len(tile_count), np.int64)
        carried = _NO_INDEX if up is None else up
        widths64 = np.array(widths, np.int64)
        kernels.join_tails(
            code, branch, path, widths64, b_code, b_up, carried, tile_count, out, out_up, per_tile
        )
        return out, (out_up if up is not None else None), per_tile
    tails = np.flatnonzero(branch == 0)
    tail = code[tails]
    for i, bits in enumerate(widths):
        tail = (tail << np.uint64(bits)) | path[i].astype(np.uint64)
    per = np.ones(len(code), np.int64)  # voxels under each node at s
    per[branch != 0] = 0
    per += np.bincount(b_up, minlength=len(code))
    start = np.cumsum(per) - per
    is_tail = np.zeros(n, bool)
    is_tail[start[tails]] = True
    out = np.empty(n, np.uint64)
    out[is_tail] = tail
    out[~is_tail] = b_code
    out_up = np.repeat(up, per) if up is not None else None
    return out, out_up, np.add.reduceat(per, np.cumsum(tile_count) - tile_count)
