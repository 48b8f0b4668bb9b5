"""Octree *tails* (version 10): below some depth s of a section's last level nearly every node holds
one voxel (guitar: 95 % at s = 11 of 17), and its remaining occupancy bytes are each one set bit,
one entropy-coded symbol and one expansion step per node and depth. Instead, a stream at s says
which nodes *branch* (hold two voxels or more); only their subtrees go on in occupancy bytes, and
each *tail* node's path to its voxel follows in a few streams of two octants per symbol (6 bits,
the deeper octant low; the last alone when D − s is odd), one value per tail. The bytes are the
same (the octant symbols carry what the single-bit bytes did: guitar quality 2, +100 bytes of
812 KB); the decoder ANS-decodes half the symbols and expands only the branches, then merges the
tails back into octree order in one pass (guitar quality 5 decodes in 22.0 ms instead of 22.9 single
level, 24.9 instead of 26.3 in levels; playbot quality 2 in levels 145 instead of 154 ms). The
encoder takes the shallowest depth at or below the last level's first from which every depth has
at least TAIL_SHARE tails among at least TAIL_MIN nodes, two depths above the leaves or more; else
none (the TILES chunk says which, docs/format.md §4). It counts every depth's nodes and tails in
one pass over the voxels (:func:`shared_depths`)."""

from __future__ import annotations

import numpy as np

from . import jit, octree
from .bitio import Reader
from .entropy import bit_length, decode_stream

TAIL_SHARE = 0.9  # (guitar: s = 11 at 95 % tails; at 83 % (s = 10) the branches' own octree costs more)
TAIL_MIN = 1024  # nodes at s: a smaller section decodes in well under a millisecond either way
PAIR = 6  # bits (two octants) per tail symbol


def parts(depths: int) -> list[int]:
    """Bits of each tail stream for ``depths`` = D − s: pairs of octants, the last alone if odd."""
    return [PAIR] * (depths // 2) + [3] * (depths % 2)


def shared_depths(tile: np.ndarray, code: np.ndarray, D: int) -> np.ndarray:
    """For voxels in octree order (tile index, Morton code at D): c[i] = the deepest depth at which
    voxels i − 1 and i lie in one node (−1 where none: other tiles, or i = 0, n), i = 0..n. A node
    at depth d starts at voxel i where c[i] < d, and voxel i is alone in its node at d (a tail
    there) where max(c[i], c[i + 1]) < d: every depth's counts from one pass over the voxels."""
    n = len(code)
    c = np.full(n + 1, -1, np.int64)
    if n > 1:
        # (voxels are distinct: the codes of two in one tile differ, so their xor has a length)
        deepest = D - (bit_length(code[1:] ^ code[:-1]) + 2) // 3
        c[1:n] = np.where(tile[1:] == tile[:-1], deepest, -1)
    return c


def choose(c: np.ndarray, counts: list[int], lo: int, D: int) -> int | None:
    """The tail depth s for a last level starting at depth ``lo`` (``c``: :func:`shared_depths`,
    ``counts``: nodes per depth), or None: the shallowest s ≤ D − 2 from which every depth has at
    least TAIL_SHARE tails among at least TAIL_MIN nodes."""
    alone = np.maximum(c[:-1], c[1:])  # voxel i is a tail at every depth deeper than this
    tails_at = np.cumsum(np.bincount(alone + 1, minlength=D + 2))  # [d]: voxels alone at d
    best = None
    for d in range(D - 1, lo - 1, -1):
        if counts[d] < TAIL_MIN or tails_at[d] < TAIL_SHARE * counts[d]:
            break
        if d <= D - 2:
            best = d
    return best


def streams(tile: np.ndarray, code: np.ndarray, c: np.ndarray, s: int, D: int) -> list:
    """The streams of depths s..D−1 in order, as (label, values, bits or None): the branch flags,
    the branches' occupancy per depth (the octree of the voxels under branch nodes, which are
    exactly those subtrees), the tails' paths (``bits``: the symbols' width, coded without
    escapes). ``tile``, ``code``: the voxels in octree order; ``c``: their :func:`shared_depths`."""
    alone = np.maximum(c[:-1], c[1:]) < s  # the tails' voxels
    first = np.flatnonzero(c[:-1] < s)  # each node's first voxel
    out: list[tuple[str, np.ndarray, int | None]] = [("tail_branch", (~alone[first]).astype(np.int64), None)]
    under = ~alone
    _, _, occ, _ = octree.build_levels(tile[under], code[under], D)
    out += [("occupancy", occ[d].astype(np.int64), None) for d in range(s, D)]
    path = code[alone] & np.uint64((1 << (3 * (D - s))) - 1)
    shift = 3 * (D - s)
    for bits in parts(D - s):
        shift -= bits
        sym = (path >> np.uint64(shift)) & np.uint64((1 << bits) - 1)
        out.append(("tail_path", sym.view(np.int64), bits))  # (< 64: the same values, no copy)
    return out


def get(r: Reader, code: np.ndarray, up: np.ndarray | None, tile_count: np.ndarray, D: int, s: int, cap: int):
    """Inverse of :func:`streams` for the nodes ``code`` at s (``up``: each one's ancestor index,
    or None): the voxels' codes at D in octree order, their ancestor indices (None without
    ``up``) and voxels per tile. ValueError naming the fault, as :func:`.octree.descend`."""
    m = len(code)
    branch = decode_stream(r, m, signed=False, int32=True, limit=1)
    at = np.flatnonzero(branch)
    b_code, b_up = code[at], at
    as_one_tile = np.array([len(at)], np.int64)  # (tiles are counted in join)
    for _ in range(s, D):
        occ = decode_stream(r, len(b_code), signed=False, int32=True)
        if len(b_code):  # (none: empty streams)
            b_code, b_up, as_one_tile = octree.descend(b_code, occ, as_one_tile, cap, up=b_up)
    n_tails = m - len(at)
    if n_tails + len(b_code) > cap:
        raise ValueError(f"{n_tails + len(b_code)} nodes, more than the {cap} Gaussians")
    widths = parts(D - s)
    path = np.empty((len(widths), n_tails), np.int32)
    for i, bits in enumerate(widths):
        decode_stream(r, n_tails, signed=False, int32=True, out=path[i], limit=(1 << bits) - 1)
    return join(code, branch, path, widths, b_code, b_up, up, tile_count)


_NO_INDEX = np.zeros(0, np.int64)
_ONE_VOXEL_BRANCH = "a branch node with one voxel (a tail)"


def join(code, branch, path, widths, b_code, b_up, up, tile_count):
    """The voxels at D: for each node at s in order, its tail's (its code, then its path) or its
    branch's voxels (``b_code``, those of node i having ``b_up`` = i, in order). Returns (codes,
    ancestors or None, voxels per tile); ValueError where a branch holds one voxel."""
    n = path.shape[1] + len(b_code)
    kernels = jit.kernels()
    if kernels is not None:
        out = np.empty(n, np.uint64)
        out_up = np.empty(n if up is not None else 0, np.int64)
        per_tile = np.empty(len(tile_count), np.int64)
        carried = _NO_INDEX if up is None else up
        widths64 = np.array(widths, np.int64)
        if not kernels.join_tails(
            code, branch, path, widths64, b_code, b_up, carried, tile_count, out, out_up, per_tile
        ):
            raise ValueError(_ONE_VOXEL_BRANCH)
        return out, (out_up if up is not None else None), per_tile
    tails = np.flatnonzero(branch == 0)
    tail = code[tails]
    for i, bits in enumerate(widths):
        tail = (tail << np.uint64(bits)) | path[i].astype(np.uint64)
    per = np.ones(len(code), np.int64)  # voxels under each node at s
    per[branch != 0] = 0
    per += np.bincount(b_up, minlength=len(code))
    if np.any(per[branch != 0] < 2):
        raise ValueError(_ONE_VOXEL_BRANCH)
    start = np.cumsum(per) - per
    is_tail = np.zeros(n, bool)
    is_tail[start[tails]] = True
    out = np.empty(n, np.uint64)
    out[is_tail] = tail
    out[~is_tail] = b_code
    out_up = np.repeat(up, per) if up is not None else None
    return out, out_up, np.add.reduceat(per, np.cumsum(tile_count) - tile_count)
