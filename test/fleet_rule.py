"""The fleet merge rule of docs/fleet.md written out plainly, as the tests' reference: per codec
tile, the vehicle with most Gaussians there (ties: the smaller map id) gives all its Gaussians in
it, under ids map_id << 32 | local id. No numpy set operations, no code of gs_map_share.merge."""

from __future__ import annotations

import numpy as np

from gs_map_share.quantize import QMap


def offline_merge(maps: dict[int, QMap], tile_bits: int) -> QMap:
    best: dict[tuple, dict[int, int]] = {}
    for mid, q in maps.items():
        for t in map(tuple, (q.pos >> tile_bits).tolist()):
            best.setdefault(t, {}).setdefault(mid, 0)
            best[t][mid] += 1
    owner = {t: min(per, key=lambda m: (-per[m], m)) for t, per in best.items()}
    parts = []
    for mid, q in maps.items():
        rows = [i for i, t in enumerate(map(tuple, (q.pos >> tile_bits).tolist())) if owner[t] == mid]
        part = q.take(np.array(rows, np.int64))
        part.ids = (np.uint64(mid) << np.uint64(32)) | part.ids
        parts.append(part)
    return QMap.concat(parts)
