"""The ground plane's surface labels (grass, asphalt, sidewalk, curb, paint) as a tiled raster.

Road shapes are polygons (:mod:`.roads`); looking them up per pixel would be slow, so they are drawn
once into label tiles (``TILE`` metres square at ``RES`` metres per texel, with PIL) when a tile is
first needed. A tile depends only on the shapes, never on the order of requests, so rendering stays
deterministic. Tiles that touch no road and no shadow are never stored (all grass, sunlit).

Shadows of objects on the ground (the sun is fixed) are drawn into the same tiles as a bit
(``SHADOW``) beside the label: shading then costs nothing per pixel.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PIL import Image, ImageDraw
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
    """Boolean (N, N) texels of a tile covered by a polygon (holes respected)."""
    mask = Image.new("1", (N, N), 0)
    part = geom.intersection(window)
    if not part.is_empty:
        draw = ImageDraw.Draw(mask)
        for poly in getattr(part, "geoms", [part]):
            if poly.geom_type != "Polygon":
                continue
            draw.polygon(_pix(poly.exterior.coords, x0, y0), fill=1)
            for hole in poly.interiors:
                draw.polygon(_pix(hole.coords, x0, y0), fill=0)
    return np.asarray(mask, dtype=bool)


def _pix(coords, x0: float, y0: float) -> list[tuple[float, float]]:
    # texel k spans [k, k+1) * RES, its centre at (k + 0.5) * RES; PIL's integer coordinates are
    # pixel centres: half a texel down
    return [((x - x0) / RES - 0.5, (y - y0) / RES - 0.5) for x, y in coords]
