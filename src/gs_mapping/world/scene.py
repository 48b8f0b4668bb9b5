"""Buildings, street lamps and trees as analytic primitives, placed along the roads.

Primitives (all on or above the ground plane z = 0, map frame):

- boxes: oriented about z (buildings, lamp heads), ``centre xy, z0, z1, half extents, yaw``;
- vertical cylinders: poles and tree trunks, ``centre xy, radius, z0, z1`` (top cap included);
- ellipsoids: tree crowns, ``centre xyz, horizontal radius, vertical radius``.

Each primitive carries a material and a base colour; the renderer turns these into textures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from shapely.geometry import Point, Polygon
from shapely.prepared import prep

from .roads import SIDEWALK_WIDTH, RoadNetwork

BUILDING, LAMP_HEAD, POLE, TRUNK, FOLIAGE = 0, 1, 2, 3, 4
MATERIAL_NAMES = {BUILDING: "building", LAMP_HEAD: "lamp", POLE: "pole", TRUNK: "trunk", FOLIAGE: "foliage"}

FACADES = np.array(
    [
        [186, 160, 130],
        [160, 82, 60],
        [200, 196, 186],
        [140, 138, 136],
        [176, 140, 96],
        [214, 204, 170],
        [120, 100, 90],
        [170, 180, 190],
    ],
    np.float32,
)


@dataclass
class Boxes:
    cx: np.ndarray
    cy: np.ndarray
    z0: np.ndarray
    z1: np.ndarray
    hx: np.ndarray
    hy: np.ndarray
    yaw: np.ndarray
    material: np.ndarray
    colour: np.ndarray  # (N, 3) float32 0..255

    def __len__(self) -> int:
        return len(self.cx)

    def corners(self) -> np.ndarray:
        """(N, 8, 3) corners in the map frame."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        sx = np.array([-1, 1, 1, -1] * 2)[None] * self.hx[:, None]
        sy = np.array([-1, -1, 1, 1] * 2)[None] * self.hy[:, None]
        x = self.cx[:, None] + c[:, None] * sx - s[:, None] * sy
        y = self.cy[:, None] + s[:, None] * sx + c[:, None] * sy
        z = np.concatenate([np.repeat(self.z0[:, None], 4, 1), np.repeat(self.z1[:, None], 4, 1)], 1)
        return np.stack([x, y, z], axis=-1)


@dataclass
class Cylinders:
    cx: np.ndarray
    cy: np.ndarray
    r: np.ndarray
    z0: np.ndarray
    z1: np.ndarray
    material: np.ndarray
    colour: np.ndarray

    def __len__(self) -> int:
        return len(self.cx)

    def corners(self) -> np.ndarray:
        sx = np.array([-1, 1, 1, -1] * 2)[None] * self.r[:, None]
        sy = np.array([-1, -1, 1, 1] * 2)[None] * self.r[:, None]
        z = np.concatenate([np.repeat(self.z0[:, None], 4, 1), np.repeat(self.z1[:, None], 4, 1)], 1)
        return np.stack([self.cx[:, None] + sx, self.cy[:, None] + sy, z], axis=-1)


@dataclass
class Ellipsoids:
    cx: np.ndarray
    cy: np.ndarray
    cz: np.ndarray
    r: np.ndarray
    rz: np.ndarray
    material: np.ndarray
    colour: np.ndarray

    def __len__(self) -> int:
        return len(self.cx)

    def corners(self) -> np.ndarray:
        sx = np.array([-1, 1, 1, -1] * 2)[None] * self.r[:, None]
        sy = np.array([-1, -1, 1, 1] * 2)[None] * self.r[:, None]
        sz = np.array([-1] * 4 + [1] * 4)[None] * self.rz[:, None]
        return np.stack([self.cx[:, None] + sx, self.cy[:, None] + sy, self.cz[:, None] + sz], axis=-1)


def _pack(cls, rows: list[tuple]):
    n = len(cls.__dataclass_fields__)
    if not rows:
        cols = [np.zeros(0) for _ in range(n)]
        cols[-1] = np.zeros((0, 3), np.float32)
        cols[-2] = np.zeros(0, np.int8)
        return cls(*cols)
    cols = list(zip(*rows, strict=False))
    arrays = [np.asarray(c, np.float64) for c in cols[:-2]]
    return cls(*arrays, np.asarray(cols[-2], np.int8), np.asarray(cols[-1], np.float32).reshape(-1, 3))


@dataclass
class Objects:
    boxes: Boxes
    cylinders: Cylinders
    ellipsoids: Ellipsoids

    def add_box(self, cx, cy, z0, z1, hx, hy, yaw, material=BUILDING, colour=(180, 160, 140)) -> Objects:
        """A copy with one more box (tests build occluders this way)."""
        b = self.boxes
        row = [cx, cy, z0, z1, hx, hy, yaw]
        fields = [
            np.append(getattr(b, f), v)
            for f, v in zip(["cx", "cy", "z0", "z1", "hx", "hy", "yaw"], row, strict=False)
        ]
        return Objects(
            Boxes(
                *fields,
                np.append(b.material, np.int8(material)),
                np.vstack([b.colour, np.asarray(colour, np.float32)[None]]),
            ),
            self.cylinders,
            self.ellipsoids,
        )


def shadow_polygons(objects: Objects, sun: np.ndarray) -> list[Polygon]:
    """Each primitive's shadow on the ground z = 0 for a sun in direction ``sun`` (unit, z > 0):
    the convex hull of the primitive's points pushed along the sun rays down to the ground."""
    from shapely.geometry import MultiPoint

    sun = np.asarray(sun, np.float64)
    out = []

    def cast(p: np.ndarray) -> Polygon:
        g = p[:, :2] - (p[:, 2:3] / sun[2]) * sun[:2]
        return MultiPoint(g).convex_hull

    for c in objects.boxes.corners():
        out.append(cast(c))
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    cy = objects.cylinders
    for i in range(len(cy)):
        ring = np.stack([cy.cx[i] + cy.r[i] * np.cos(ang), cy.cy[i] + cy.r[i] * np.sin(ang)], 1)
        pts = np.concatenate([np.c_[ring, np.full(16, cy.z0[i])], np.c_[ring, np.full(16, cy.z1[i])]])
        out.append(cast(pts))
    el = objects.ellipsoids
    th, ph = np.meshgrid(ang, np.linspace(-np.pi / 2, np.pi / 2, 9))
    unit = np.stack([np.cos(ph) * np.cos(th), np.cos(ph) * np.sin(th), np.sin(ph)], -1).reshape(-1, 3)
    for i in range(len(el)):
        pts = unit * [el.r[i], el.r[i], el.rz[i]] + [el.cx[i], el.cy[i], el.cz[i]]
        out.append(cast(pts))
    return [p for p in out if p.geom_type == "Polygon"]


def populate(net: RoadNetwork, rng: np.random.Generator) -> Objects:
    """Place buildings, lamps and trees beside the roads, never on the road or sidewalk."""
    keep_out = prep(net.drivable.buffer(SIDEWALK_WIDTH + 0.4))
    road_core = prep(net.drivable.buffer(0.4))
    boxes, cyls, ells = [], [], []
    footprints: dict[tuple[int, int], list[Polygon]] = {}

    def free(poly: Polygon) -> bool:
        x0, y0, x1, y1 = poly.bounds
        for i in range(int(x0 // 30) - 1, int(x1 // 30) + 2):
            for j in range(int(y0 // 30) - 1, int(y1 // 30) + 2):
                if any(poly.intersects(o) for o in footprints.get((i, j), [])):
                    return False
        return True

    def claim(poly: Polygon) -> None:
        cx, cy = poly.centroid.x, poly.centroid.y
        footprints.setdefault((int(cx // 30), int(cy // 30)), []).append(poly)

    def oriented(cx, cy, hx, hy, yaw) -> Polygon:
        c, s = np.cos(yaw), np.sin(yaw)
        return Polygon(
            [
                (cx + c * a - s * b, cy + s * a + c * b)
                for a, b in ((-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy))
            ]
        )

    for road in net.roads():
        urban = rng.random() < 0.65
        s_len = len(road.pts)
        step = float(np.linalg.norm(road.pts[1] - road.pts[0])) if s_len > 1 else 1.0
        length = step * (s_len - 1)
        normals = road.normals
        for side in (1.0, -1.0):
            # buildings
            s = float(rng.uniform(0, 6))
            while s < length - 4:
                front = float(rng.uniform(8, 22) if urban else rng.uniform(7, 13))
                if rng.random() < (0.12 if urban else 0.4):
                    s += float(rng.uniform(4, 14))
                    continue
                depth = float(rng.uniform(9, 18) if urban else rng.uniform(7, 11))
                height = float(rng.uniform(9, 32) if urban else rng.uniform(4.5, 9))
                setback = float(rng.uniform(0.6, 2.5) if urban else rng.uniform(3, 9))
                i = min(int((s + front / 2) / step), s_len - 1)
                d = road.width / 2 + SIDEWALK_WIDTH + 0.4 + setback + depth / 2
                c = road.pts[i] + side * d * normals[i]
                poly = oriented(c[0], c[1], front / 2, depth / 2, road.heading[i])
                if not keep_out.intersects(poly) and free(poly):
                    claim(poly)
                    colour = FACADES[rng.integers(len(FACADES))] * rng.uniform(0.85, 1.1)
                    boxes.append(
                        (
                            c[0],
                            c[1],
                            0.0,
                            height,
                            front / 2,
                            depth / 2,
                            road.heading[i],
                            BUILDING,
                            np.clip(colour, 0, 255),
                        )
                    )
                s += front + float(rng.uniform(0.5, 5) if urban else rng.uniform(3, 10))
            # street lamps, then trees between them
            offset = road.width / 2 + 0.6
            for s in np.arange(float(rng.uniform(5, 20)), length, 32.0):
                i = int(s / step)
                p = road.pts[i] + side * offset * normals[i]
                if road_core.contains(Point(p)):
                    continue
                cyls.append((p[0], p[1], 0.09, 0.0, 7.5, POLE, (112, 114, 120)))
                head = p - side * 0.7 * normals[i]
                yaw = road.heading[i] + np.pi / 2
                boxes.append((head[0], head[1], 7.35, 7.55, 0.8, 0.18, yaw, LAMP_HEAD, (70, 70, 76)))
                claim(Point(p).buffer(1.0))
            offset = road.width / 2 + SIDEWALK_WIDTH - 1.0
            s = float(rng.uniform(3, 12))
            while s < length:
                i = int(s / step)
                p = road.pts[i] + side * offset * normals[i]
                spot = Point(p).buffer(0.8)
                if not road_core.intersects(spot) and free(spot) and rng.random() < (0.55 if urban else 0.8):
                    claim(spot)
                    _tree(rng, p, cyls, ells)
                s += float(rng.uniform(9, 16))
            if not urban:  # scattered trees on the open ground behind the verge
                for _ in range(int(length / 12)):
                    s = float(rng.uniform(0, length))
                    i = int(s / step)
                    p = (
                        road.pts[i]
                        + side * (road.width / 2 + SIDEWALK_WIDTH + rng.uniform(3, 30)) * normals[i]
                    )
                    spot = Point(p).buffer(2.0)
                    if not keep_out.intersects(spot) and free(spot):
                        claim(spot)
                        _tree(rng, p, cyls, ells, big=True)
    return Objects(_pack(Boxes, boxes), _pack(Cylinders, cyls), _pack(Ellipsoids, ells))


def _tree(rng, p, cyls, ells, big: bool = False) -> None:
    trunk_h = float(rng.uniform(2.2, 3.4))
    r = float(rng.uniform(1.2, 2.0) * (1.4 if big else 1.0))
    rz = float(rng.uniform(1.4, 2.6) * (1.3 if big else 1.0))
    cyls.append((p[0], p[1], float(rng.uniform(0.13, 0.22)), 0.0, trunk_h + rz * 0.6, TRUNK, (92, 70, 50)))
    green = np.array([52, 96, 40]) * rng.uniform(0.8, 1.2, 3)
    ells.append((p[0], p[1], trunk_h + rz * 0.8, r, rz, FOLIAGE, np.clip(green, 0, 255)))
