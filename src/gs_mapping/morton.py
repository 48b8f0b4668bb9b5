"""Morton (Z-order) codes of 3D integer cells: x the most significant bit of each interleaved triple.

Shared by the mapper (the order in which new Gaussians get their ids) and the codec's octree (the
order in which it walks a tile), so both agree on one interleaving.
"""

from __future__ import annotations

import numpy as np


def _spread(v: np.ndarray) -> np.ndarray:
    """Insert two zero bits between the low 21 bits of each value."""
    x = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    x = (x | (x << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    x = (x | (x << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    x = (x | (x << np.uint64(2))) & np.uint64(0x1249249249249249)
    return x


def _compact(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64) & np.uint64(0x1249249249249249)
    x = (x | (x >> np.uint64(2))) & np.uint64(0x10C30C30C30C30C3)
    x = (x | (x >> np.uint64(4))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x >> np.uint64(8))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x >> np.uint64(16))) & np.uint64(0x1F00000000FFFF)
    x = (x | (x >> np.uint64(32))) & np.uint64(0x1FFFFF)
    return x.astype(np.int64)


def morton(local: np.ndarray) -> np.ndarray:
    """(N, 3) non-negative ints (< 2**21) → uint64 codes."""
    return (
        (_spread(local[:, 0]) << np.uint64(2)) | (_spread(local[:, 1]) << np.uint64(1)) | _spread(local[:, 2])
    )


def demorton(code: np.ndarray) -> np.ndarray:
    code = code.astype(np.uint64)
    return np.stack([_compact(code >> np.uint64(2)), _compact(code >> np.uint64(1)), _compact(code)], axis=1)
