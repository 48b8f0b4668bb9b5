"""Id-ordered geometry: the ids and positions of a single-level section listed in ascending id order.

The octree codes positions as a set, in Morton order, and then must send the permutation from that
order back to the ids. The mapper numbers each keyframe's new Gaussians in octree order, so
consecutive ids are near neighbours: coding the ids as gaps and each position as the difference
from the previous id's position costs less than occupancy plus that permutation (on the kitchen map
2.2 B/G instead of 2.8). It gives up nothing there: a single-level section has no coarse levels for
the octree to carry (layers of a layered snapshot, a delta's added Gaussians). Like the predictive
geometry that MPEG's G-PCC offers beside its octree, the encoder takes whichever form is smaller.

Streams, in a LEVEL chunk: ``varint first id``; an unsigned stream of the n−1 id gaps − 1; then per
axis x, y, z a signed stream of n lattice differences, the first from 0 (the position itself).
"""

from __future__ import annotations

import numpy as np

from .bitio import Reader
from .entropy import decode_stream
from .quantize import MAX_LATTICE


def streams(ids: np.ndarray, pos: np.ndarray) -> tuple[int, list[tuple[str, np.ndarray, bool]]]:
    """The first id and the (label, values, signed) streams for Gaussians in ascending id order."""
    gaps = np.diff(ids.astype(np.uint64)).astype(np.int64) - 1
    out = [("ids", gaps, False)]
    p = pos.astype(np.int64)
    for i in range(3):
        out.append(("positions", np.diff(p[:, i], prepend=0), True))
    return int(ids[0]), out


def decode(r: Reader, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`streams` → (uint64 ids ascending, int64 (n, 3) lattice positions)."""
    first = r.varint((1 << 63) - 1)
    ids = np.empty(n, np.uint64)
    ids[0] = first
    gaps = decode_stream(r, n - 1, signed=False).astype(np.uint64)
    gaps += np.uint64(1)  # a gap of 2**64 - 1 wraps to 0 and fails the check below
    ids[1:] = gaps
    np.cumsum(ids, out=ids)  # modulo 2**64: any wrap breaks the strict increase
    if np.any(ids[1:] <= ids[:-1]) or ids[-1] >= np.uint64(1 << 63):
        raise r.fail("ids are not increasing below 2**63")
    pos = np.empty((n, 3), np.int64)
    for i in range(3):
        d = decode_stream(r, n)
        # differences below 2**53 keep every partial sum exact up to the first one that leaves
        # the lattice, so checking the sums catches any walk out of range
        if d.max() >= 2 * MAX_LATTICE or d.min() <= -2 * MAX_LATTICE:
            raise r.fail("position step outside the lattice")
        np.cumsum(d, out=pos[:, i])
    if pos.max() >= MAX_LATTICE or pos.min() <= -MAX_LATTICE:
        raise r.fail("position outside the lattice")
    return ids, pos
