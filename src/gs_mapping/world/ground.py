"""The ground plane's surface labels (grass, asphalt, sidewalk, curb, paint) as a tiled raster.

Road shapes are polygons (:mod:`.roads`); looking them up per pixel would be slow, so they are drawn
once into label tiles (``TILE`` metres square at ``RES`` metres per texel; a texel takes the label of
the shapes its centre lies in) when a tile is first needed. A tile depends only on the shapes, never on the order of requests, so rendering stays
deterministic. Tiles that touch no road and no shadow are never stored (all grass, sunlit).

Shadows of objects on the ground (the sun is fixed) are drawn into the same tiles as a bit
(``SHADOW``) beside the label: shading then costs nothing per pixel.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import shapely
from shapely.geometry import box
from shapely.strtree import STRtree

from .roads import ASPHALT, CURB, CURB_WIDTH, GRASS, SIDEWALK, RoadNetwork

TILE = 25.6
RES = 0.04
N = int(round(TILE / RES))
MAX_TILES = 256  # cached tiles (≈ 100 MB)
SHADOW = 0x80  # bit set in a texel's label where an object shades the ground
LABEL_MASK = 0x7F


class GroundLabels:
    def __init__(self, net: RoadNetwork, shadows=()):
        rings = [net.drivable.exterior, *net.drivable.interiors]
        curb = [r.buffer(CURB_WIDTH / 2, cap_style="flat", quad_segs=2) for r in rings]
        # Layers drawn in order; a later layer wins.
        layers = [(SIDEWALK, [net.sidewalk.union(net.drivable)]), (ASPHALT, [net.drivable]), (CURB, curb)] + [
            (p.label, [p.polygon]) for p in net.paint
        ]
        self._layers = [(label, g) for label, geoms in layers for g in geoms]
        self._tree = STRtree([g for _, g in self._layers])
        self._shadows = [g for g in shadows if not g.is_empty]
        self._shadow_tree = STRtree(self._shadows)
        self._tiles: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()

    def tile(self, i: int, j: int) -> np.ndarray | None:
        """The (N, N) texels of tile (i, j), drawn on first use; least recently used tiles are dropped
        beyond ``MAX_TILES`` so long drives stay in bounded memory (redrawing gives the same texels)."""
        key = (i, j)
        if key in self._tiles:
            self._tiles.move_to_end(key)
            return self._tiles[key]
        t = self._tiles[key] = self._draw(i, j)
        if len(self._tiles) > MAX_TILES:
            self._tiles.popitem(last=False)
        return t

    def _draw(self, i: int, j: int) -> np.ndarray | None:
        x0, y0 = i * TILE, j * TILE
        window = box(x0 - RES, y0 - RES, x0 + TILE + RES, y0 + TILE + RES)
        hits = sorted(int(k) for k in self._tree.query(window))
        shade = sorted(int(k) for k in self._shadow_tree.query(window))
        if not hits and not shade:
            return None
        labels = np.full((N, N), GRASS, np.uint8)
        for k in hits:  # STRtree indices follow layer order, so sorting keeps the painter's order
            label, geom = self._layers[k]
            labels[_mask(geom, window, x0, y0)] = label
        for k in shade:
            labels[_mask(self._shadows[k], window, x0, y0)] |= SHADOW
        return labels

    def classes(self, xy: np.ndarray) -> np.ndarray:
        """Surface classes (GRASS … PAINT_YELLOW) at (M, 2) map-frame points, without the shadow bit."""
        return self.lookup(xy) & LABEL_MASK

    def lookup(self, xy: np.ndarray) -> np.ndarray:
        """Texel values at (M, 2) map-frame ground points (nearest texel): class | SHADOW bit."""
        xy = np.asarray(xy)
        out = np.full(len(xy), GRASS, np.uint8)
        if len(xy) == 0:
            return out
        ti = np.floor(xy[:, 0] / TILE).astype(np.int64)
        tj = np.floor(xy[:, 1] / TILE).astype(np.int64)
        # texel (row = y, col = x) inside the tile; texel k covers [k, k+1) * RES
        col = np.clip(((xy[:, 0] - ti * TILE) / RES).astype(np.int64), 0, N - 1)
        row = np.clip(((xy[:, 1] - tj * TILE) / RES).astype(np.int64), 0, N - 1)
        key = ti * 1_000_003 + tj
        order = np.argsort(key, kind="stable")
        uniq, starts = np.unique(key[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        for a, b in zip(starts, ends, strict=False):
            idx = order[a:b]
            t = self.tile(int(ti[idx[0]]), int(tj[idx[0]]))
            if t is not None:
                out[idx] = t[row[idx], col[idx]]
        return out


def _mask(geom, window, x0: float, y0: float) -> np.ndarray:
    """Boolean (N, N) texels of a tile whose centres lie in a polygon (holes respected).

    Texel k spans [k, k+1) * RES, its centre at (k + 0.5) * RES. Sampling the centres keeps each
    shape its true size and place; a fill that also takes the texels its outline touches (PIL's
    polygon fill) grows every stripe and line by about a texel, off the centre of its ground truth.
    Even-odd scanlines in metres: each ring edge toggles inside/outside along each row of centres it
    crosses, from the first centre at or right of the crossing. These are the texels that
    ``shapely.contains_xy`` gives at the centres (bar a centre exactly on an edge, which goes to one
    side only: rows lo <= y < hi, columns x >= crossing), at a cost per edge and row rather than per
    texel (contains_xy over every texel drew tiles 2.5x slower than PIL; this is faster than PIL)."""
    mask = np.zeros((N, N), bool)
    part = geom.intersection(window)
    # (the lines and points a clip can leave beside the polygons cover no texel centre)
    polys = [p for p in shapely.get_parts(part) if p.geom_type == "Polygon" and not p.is_empty]
    if not polys:
        return mask
    rings = [np.asarray(r.coords) for p in polys for r in (p.exterior, *p.interiors)]
    a, b = np.concatenate([r[:-1] for r in rings]), np.concatenate([r[1:] for r in rings])  # edges
    xs, ys = x0 + (np.arange(N) + 0.5) * RES, y0 + (np.arange(N) + 0.5) * RES
    r0 = np.searchsorted(ys, np.minimum(a[:, 1], b[:, 1]))  # rows lo <= y < hi
    r1 = np.searchsorted(ys, np.maximum(a[:, 1], b[:, 1]))
    count = r1 - r0
    if not count.any():
        return mask
    edge = np.repeat(np.arange(len(a)), count)
    row = np.repeat(r0 - np.cumsum(count) + count, count) + np.arange(count.sum())
    t = (ys[row] - a[edge, 1]) / (b[edge, 1] - a[edge, 1])
    col = np.searchsorted(xs, a[edge, 0] + t * (b[edge, 0] - a[edge, 0]))  # first centre x >= it
    rr0, rr1, c0 = int(row.min()), int(row.max()) + 1, int(col.min())
    toggles = np.zeros((N + 1 - c0, rr1 - rr0), np.uint8)  # columns first: cumsum down contiguous rows
    np.add.at(toggles, (col - c0, row - rr0), 1)
    mask[rr0:rr1, c0:] = (np.cumsum(toggles[:-1], axis=0, dtype=np.uint8) & 1).T.astype(bool)
    return mask
