"""Vectorised ray casting of the world: pinhole cameras (colour + z-depth) and a spinning LiDAR.

Rays are cast against analytic surfaces — the ground plane and each primitive of :mod:`.scene` —
so depth is exact (no discretisation). Per view, each primitive's bounding box is projected to find
the block of rays that can hit it (the screen rectangle for a camera, an azimuth range for the LiDAR);
only those rays are tested. Camera rays are scaled to unit optical-axis component, so the ray
parameter t *is* the z-depth (what ROS depth images hold).

Textures are procedural functions of the 3D hit point (value noise from an integer hash, window grids
on facades, the ground label raster), so they are the same from every viewpoint: parallax is real.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .ground import LABEL_MASK, SHADOW
from .ground import RES as GROUND_RES
from .roads import ASPHALT, CURB, GRASS, PAINT_WHITE, PAINT_YELLOW, SIDEWALK
from .scene import BUILDING, FOLIAGE, LAMP_HEAD, POLE, TRUNK, Objects

NONE, GROUND, BOX, CYL, ELL = 0, 1, 2, 3, 4
NEAR = 0.05
AMBIENT = 0.6  # share of light that is not direct sun (so shadows stay readable)

SKY_HORIZON = np.array([205, 218, 232], np.float32)
SKY_ZENITH = np.array([112, 150, 204], np.float32)
GROUND_COLOURS = {
    GRASS: (74, 98, 48),
    ASPHALT: (66, 67, 70),
    SIDEWALK: (150, 146, 139),
    CURB: (188, 186, 180),
    PAINT_WHITE: (234, 234, 228),
    PAINT_YELLOW: (228, 186, 58),
}
# LiDAR reflectivity per ground label / material (intensity = reflectivity * |cos incidence|)
GROUND_REFLECT = {GRASS: 0.25, ASPHALT: 0.12, SIDEWALK: 0.3, CURB: 0.35, PAINT_WHITE: 0.85, PAINT_YELLOW: 0.8}
MATERIAL_REFLECT = {BUILDING: 0.4, LAMP_HEAD: 0.5, POLE: 0.6, TRUNK: 0.3, FOLIAGE: 0.2}
_MATERIAL_REFLECT_TABLE = np.array([MATERIAL_REFLECT[k] for k in range(len(MATERIAL_REFLECT))], np.float32)
# ground texture per class: albedo, noise amplitudes (fine 4 cm hash, 1.7 m and 9 m value noise),
# slab joints, hue drift, LiDAR reflectivity
_GROUND_NOISE = {
    GRASS: (0.25, 0.35, 0.3, 0.0, 40.0),
    ASPHALT: (0.22, 0.16, 0.12, 0.0, 0.0),
    SIDEWALK: (0.08, 0.06, 0.0, 0.18, 0.0),
    CURB: (0.08, 0.06, 0.0, 0.18, 0.0),
    PAINT_WHITE: (0.05, 0.04, 0.0, 0.0, 0.0),
    PAINT_YELLOW: (0.05, 0.04, 0.0, 0.0, 0.0),
}
_GROUND_TABLE = {
    k: np.zeros((128, 3) if k == "colour" else 128, np.float32)
    for k in ("colour", "fine", "coarse", "big", "joints", "red", "reflect")
}
for _lab, (_f, _c, _b, _j, _r) in _GROUND_NOISE.items():
    _GROUND_TABLE["colour"][_lab] = GROUND_COLOURS[_lab]
    _GROUND_TABLE["reflect"][_lab] = GROUND_REFLECT[_lab]
    for _k, _v in zip(("fine", "coarse", "big", "joints", "red"), (_f, _c, _b, _j, _r), strict=False):
        _GROUND_TABLE[_k][_lab] = _v


@dataclass
class Hits:
    t: np.ndarray  # (H, W) float32 ray parameter, inf where nothing was hit
    kind: np.ndarray  # (H, W) int8: NONE, GROUND, BOX, CYL, ELL
    index: np.ndarray  # (H, W) int32 primitive index within its kind


# ------------------------------------------------------------------------------------------ hashing
def _hash(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray | int = 0, seed: int = 0) -> np.ndarray:
    """Integer lattice → uniform [0, 1) (float32); wraps modulo 2**32 by design."""
    with np.errstate(over="ignore"):
        h = (
            np.asarray(ix).astype(np.int64).astype(np.uint32) * np.uint32(0x8DA6B343)
            ^ np.asarray(iy).astype(np.int64).astype(np.uint32) * np.uint32(0xD8163841)
            ^ np.asarray(iz).astype(np.int64).astype(np.uint32) * np.uint32(0xCB1AB31F)
            ^ np.uint32(seed * 0x165667B1 & 0xFFFFFFFF)
        )
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x2C1B3C6D)
        h ^= h >> np.uint32(12)
        h *= np.uint32(0x297A2D39)
        h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def value_noise2(x: np.ndarray, y: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth 2D value noise in [0, 1) with features of size ``scale`` metres."""
    x = np.asarray(x, np.float64) / scale
    y = np.asarray(y, np.float64) / scale
    ix, iy = np.floor(x), np.floor(y)
    fx, fy = (x - ix).astype(np.float32), (y - iy).astype(np.float32)
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    a, b = _hash(ix, iy, 0, seed), _hash(ix + 1, iy, 0, seed)
    c, d = _hash(ix, iy + 1, 0, seed), _hash(ix + 1, iy + 1, 0, seed)
    return (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy


def value_noise3(p: np.ndarray, scale: float, seed: int) -> np.ndarray:
    q = np.asarray(p, np.float64) / scale
    i = np.floor(q)
    f = (q - i).astype(np.float32)
    f = f * f * (3 - 2 * f)
    out = np.zeros(len(q), np.float32)
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1 - f[:, 0]
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1 - f[:, 1]
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1 - f[:, 2]
                out += wx * wy * wz * _hash(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


# -------------------------------------------------------------------------------------- intersection
def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, np.float32(1e-12), d)


# Scalars are made Python floats so that float32 ray arrays stay float32 (NumPy 2 promotion rules).
def hit_box(o, d, cx, cy, z0, z1, hx, hy, yaw):
    """Ray parameters of the first hit with an oriented box (inf where missed). o (3,), d (..., 3)."""
    o = [float(v) for v in o]
    cx, cy, z0, z1, hx, hy = map(float, (cx, cy, z0, z1, hx, hy))
    c, s = math.cos(yaw), math.sin(yaw)
    ox, oy = o[0] - cx, o[1] - cy
    lox, loy, loz = c * ox + s * oy, -s * ox + c * oy, o[2]
    ldx = c * d[..., 0] + s * d[..., 1]
    ldy = -s * d[..., 0] + c * d[..., 1]
    ldz = d[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ix, iy, iz = 1.0 / _safe(ldx), 1.0 / _safe(ldy), 1.0 / _safe(ldz)
        ax, bx = (-hx - lox) * ix, (hx - lox) * ix
        ay, by = (-hy - loy) * iy, (hy - loy) * iy
        az, bz = (z0 - loz) * iz, (z1 - loz) * iz
        tmin = np.maximum(np.maximum(np.minimum(ax, bx), np.minimum(ay, by)), np.minimum(az, bz))
        tmax = np.minimum(np.minimum(np.maximum(ax, bx), np.maximum(ay, by)), np.maximum(az, bz))
    return np.where((tmax >= tmin) & (tmin > NEAR), tmin, np.inf)


def hit_cylinder(o, d, cx, cy, r, z0, z1):
    """First hit with a vertical cylinder's side or top cap."""
    o = [float(v) for v in o]
    cx, cy, r, z0, z1 = map(float, (cx, cy, r, z0, z1))
    ox, oy = o[0] - cx, o[1] - cy
    # quadratics lose precision in float32 far away (b² - ac cancels); these regions are small
    d = d.astype(np.float64)
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    a = dx * dx + dy * dy
    b = ox * dx + oy * dy
    c = ox * ox + oy * oy - r * r
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / _safe(a)
        z = o[2] + t_side * dz
        side = (disc >= 0) & (t_side > NEAR) & (z >= z0) & (z <= z1)
        t_cap = (z1 - o[2]) / _safe(dz)
        px, py = ox + t_cap * dx, oy + t_cap * dy
        cap = (t_cap > NEAR) & (px * px + py * py <= r * r) & (o[2] > z1)
    t = np.where(side, t_side, np.inf)
    return np.where(cap & (t_cap < t), t_cap, t)


def hit_ellipsoid(o, d, cx, cy, cz, r, rz):
    """First hit with an ellipsoid of horizontal radius r and vertical radius rz."""
    r, rz = float(r), float(rz)
    oo = [(float(o[0]) - float(cx)) / r, (float(o[1]) - float(cy)) / r, (float(o[2]) - float(cz)) / rz]
    d = d.astype(np.float64)
    dx, dy, dz = d[..., 0] / r, d[..., 1] / r, d[..., 2] / rz
    a = dx * dx + dy * dy + dz * dz
    b = dx * oo[0] + dy * oo[1] + dz * oo[2]
    c = oo[0] ** 2 + oo[1] ** 2 + oo[2] ** 2 - 1.0
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    return np.where((disc >= 0) & (t > NEAR), t, np.inf)


def hit_ground(o, d):
    o = [float(v) for v in o]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -o[2] / _safe(d[..., 2])
    return np.where((d[..., 2] < 0) & (t > NEAR), t, np.inf)


def cast(objects: Objects, o: np.ndarray, d: np.ndarray, regions, max_t: float) -> Hits:
    """Cast rays ``o + t d`` (d: (H, W, 3) float32); ``regions`` yields (kind, index, r0, r1, c0, c1)."""
    t = hit_ground(o, d).astype(np.float32)
    kind = np.where(np.isfinite(t), GROUND, NONE).astype(np.int8)
    index = np.zeros(t.shape, np.int32)
    b, cy, el = objects.boxes, objects.cylinders, objects.ellipsoids
    for k, i, r0, r1, c0, c1 in regions:
        dd = d[r0:r1, c0:c1]
        if k == BOX:
            th = hit_box(o, dd, b.cx[i], b.cy[i], b.z0[i], b.z1[i], b.hx[i], b.hy[i], b.yaw[i])
        elif k == CYL:
            th = hit_cylinder(o, dd, cy.cx[i], cy.cy[i], cy.r[i], cy.z0[i], cy.z1[i])
        else:
            th = hit_ellipsoid(o, dd, el.cx[i], el.cy[i], el.cz[i], el.r[i], el.rz[i])
        tv = t[r0:r1, c0:c1]
        closer = th < tv
        if closer.any():
            tv[closer] = th[closer]
            kind[r0:r1, c0:c1][closer] = k
            index[r0:r1, c0:c1][closer] = i
    far = t > max_t
    t[far] = np.inf
    kind[far] = NONE
    return Hits(t, kind, index)


# ------------------------------------------------------------------------------------------ culling
def _all_corners(objects: Objects):
    for k, prims in ((BOX, objects.boxes), (CYL, objects.cylinders), (ELL, objects.ellipsoids)):
        if len(prims):
            yield k, prims.corners()


def camera_regions(objects: Objects, T_cam_map: np.ndarray, K: np.ndarray, w: int, h: int, max_t: float):
    """Screen rectangles of every primitive that can be seen (conservative)."""
    R, tr = T_cam_map[:3, :3], T_cam_map[:3, 3]
    out = []
    for k, corners in _all_corners(objects):
        pc = corners @ R.T + tr  # (N, 8, 3)
        zmin, zmax = pc[..., 2].min(1), pc[..., 2].max(1)
        dist = np.linalg.norm(pc.mean(1), axis=1) - np.linalg.norm(
            pc - pc.mean(1, keepdims=True), axis=2
        ).max(1)
        visible = (zmax > NEAR) & (dist < max_t)
        front = zmin > NEAR
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[0, 0] * pc[..., 0] / pc[..., 2] + K[0, 2]
            v = K[1, 1] * pc[..., 1] / pc[..., 2] + K[1, 2]
        for i in np.flatnonzero(visible):
            if front[i]:
                c0, c1 = int(max(0, np.floor(u[i].min()) - 1)), int(min(w, np.ceil(u[i].max()) + 2))
                r0, r1 = int(max(0, np.floor(v[i].min()) - 1)), int(min(h, np.ceil(v[i].max()) + 2))
            else:  # straddles the camera plane: test the whole image
                r0, r1, c0, c1 = 0, h, 0, w
            if r1 > r0 and c1 > c0:
                out.append((k, int(i), r0, r1, c0, c1))
    return out


def lidar_regions(objects: Objects, T_lidar_map: np.ndarray, azimuths: np.ndarray, max_t: float):
    """Azimuth column ranges of every primitive in range. ``azimuths``: the LiDAR-frame azimuth of
    each ray column, ascending and evenly spaced over 2π."""
    n = len(azimuths)
    a0, da = azimuths[0], azimuths[1] - azimuths[0]
    R, tr = T_lidar_map[:3, :3], T_lidar_map[:3, 3]
    out = []
    for k, corners in _all_corners(objects):
        rel = (corners @ R.T + tr)[..., :2]  # the primitive's hull projected on the LiDAR xy plane
        centre = rel.mean(1)
        radius = np.linalg.norm(rel - centre[:, None], axis=2).max(1)
        dc = np.linalg.norm(centre, axis=1)
        for i in np.flatnonzero(dc - radius < max_t):
            if dc[i] <= radius[i] + 0.5:
                out.append((k, int(i), 0, None, 0, n))
                continue
            ac = np.arctan2(centre[i, 1], centre[i, 0])
            half = np.arcsin(min(1.0, radius[i] / dc[i])) + 2 * da
            c0 = int(np.floor((ac - half - a0) / da))
            c1 = int(np.ceil((ac + half - a0) / da)) + 1
            for lo, hi in ((c0, c1), (c0 + n, c1 + n), (c0 - n, c1 - n)):
                lo, hi = max(lo, 0), min(hi, n)
                if hi > lo:
                    out.append((k, int(i), 0, None, lo, hi))
    return out


# ------------------------------------------------------------------------------------------ shading
def surface(world, o: np.ndarray, d: np.ndarray, hits: Hits):
    """Per hit: map-frame point, unit normal, base albedo (0..255), LiDAR reflectivity. Flat (M,) arrays
    over the pixels where ``hits.kind != NONE``, in row-major order."""
    mask = hits.kind != NONE
    kind = hits.kind[mask]
    idx = hits.index[mask]
    # float32 is ample here: 6e-5 m at 1 km from the origin, against 4 cm texels
    p = np.asarray(o, np.float32) + hits.t[mask][:, None] * d[mask]
    m = len(p)
    normal = np.zeros((m, 3), np.float32)
    albedo = np.zeros((m, 3), np.float32)
    reflect = np.zeros(m, np.float32)
    shadow = np.zeros(m, bool)
    seed = world.seed

    g = kind == GROUND
    if g.any():
        pg = p[g]
        texel = world.ground.lookup(pg[:, :2])
        labels = texel & LABEL_MASK
        shadow[g] = (texel & SHADOW) != 0
        fine = _hash(np.floor(pg[:, 0] / GROUND_RES), np.floor(pg[:, 1] / GROUND_RES), 0, seed) - 0.5
        coarse = value_noise2(pg[:, 0], pg[:, 1], 1.7, seed + 1) - 0.5
        big = value_noise2(pg[:, 0], pg[:, 1], 9.0, seed + 2) - 0.5
        # per-class tables instead of masks: one gather per coefficient
        base = _GROUND_TABLE["colour"][labels]
        shade = (
            1.0
            + _GROUND_TABLE["fine"][labels] * fine
            + _GROUND_TABLE["coarse"][labels] * coarse
            + _GROUND_TABLE["big"][labels] * big
        )
        jl = _GROUND_TABLE["joints"][labels]
        has_joints = jl > 0
        if has_joints.any():  # sidewalk slabs: darker joints on a 1.5 m grid
            q = pg[has_joints]
            joints = (np.mod(q[:, 0], 1.5) < 0.04) | (np.mod(q[:, 1], 1.5) < 0.04)
            shade[has_joints] -= jl[has_joints] * joints
        base[:, 0] += _GROUND_TABLE["red"][labels] * big  # grass hue drifts green ↔ olive
        refl = _GROUND_TABLE["reflect"][labels]
        albedo[g] = base * shade[:, None]
        normal[g] = (0, 0, 1)
        reflect[g] = refl

    sel = kind == BOX
    if sel.any():
        b = world.objects.boxes
        i = idx[sel]
        pb = p[sel]
        c, s = np.cos(b.yaw[i]), np.sin(b.yaw[i])
        ox, oy = pb[:, 0] - b.cx[i], pb[:, 1] - b.cy[i]
        lx, ly = c * ox + s * oy, -s * ox + c * oy
        dxf, dyf, dzf = b.hx[i] - np.abs(lx), b.hy[i] - np.abs(ly), b.z1[i] - pb[:, 2]
        face = np.argmin(np.stack([dxf, dyf, dzf], 1), 1)
        nl = np.zeros((len(pb), 3))
        nl[face == 0, 0] = np.sign(lx[face == 0])
        nl[face == 1, 1] = np.sign(ly[face == 1])
        nl[face == 2, 2] = 1.0
        normal[sel] = np.stack([c * nl[:, 0] - s * nl[:, 1], s * nl[:, 0] + c * nl[:, 1], nl[:, 2]], 1)
        u = np.where(face == 0, ly + b.hy[i], lx + b.hx[i])  # along the wall
        width = np.where(face == 0, 2 * b.hy[i], 2 * b.hx[i])
        z = pb[:, 2] - b.z0[i]
        col = b.colour[i].copy()
        mat = b.material[i]
        fine = _hash(np.floor(u / 0.05), np.floor(z / 0.05), i, seed + 3) - 0.5
        shade = 1.0 + 0.08 * fine + 0.1 * (value_noise2(u + 31 * i, z, 2.5, seed + 4) - 0.5)
        bld = (mat == BUILDING) & (face < 2)
        # windows: a grid of 1.4 x 1.6 m panes on 3 m columns and 3.2 m floors
        col_i, floor_i = np.floor(u / 3.0), np.floor(z / 3.2)
        fu, fz = u - 3.0 * col_i, z - 3.2 * floor_i
        win = (
            bld
            & (fu > 0.8)
            & (fu < 2.2)
            & (fz > 0.9)
            & (fz < 2.5)
            & (u > 0.6)
            & (u < width - 0.6)
            & (z < b.z1[i] - b.z0[i] - 0.8)
        )
        frame = (
            bld
            & ~win
            & (fu > 0.7)
            & (fu < 2.3)
            & (fz > 0.8)
            & (fz < 2.6)
            & (u > 0.5)
            & (u < width - 0.5)
            & (z < b.z1[i] - b.z0[i] - 0.7)
        )
        glass = _hash(col_i, floor_i, i * 2 + face, seed + 5)
        wcol = np.stack([40 + 40 * glass, 52 + 45 * glass, 68 + 50 * glass], 1)
        lit = glass > 0.9
        wcol[lit] = (205, 185, 130)
        col[win] = wcol[win]
        col[frame] = col[frame] * 0.6
        base = bld & (z < 0.5)
        col[base] = col[base] * 0.55
        roof = (mat == BUILDING) & (face == 2)
        col[roof] = (96, 94, 92)
        albedo[sel] = col * shade[:, None]
        r = _MATERIAL_REFLECT_TABLE[mat]
        reflect[sel] = np.where(win, 0.1, r)

    sel = kind == CYL
    if sel.any():
        cyl = world.objects.cylinders
        i = idx[sel]
        pc = p[sel]
        rx, ry = pc[:, 0] - cyl.cx[i], pc[:, 1] - cyl.cy[i]
        rr = np.maximum(np.hypot(rx, ry), 1e-9)
        top = (pc[:, 2] > cyl.z1[i] - 1e-4) & (rr < cyl.r[i] * 0.999)
        n = np.stack([rx / rr, ry / rr, np.zeros_like(rr)], 1)
        n[top] = (0, 0, 1)
        normal[sel] = n
        mat = cyl.material[i]
        ang = np.arctan2(ry, rx)
        streak = _hash(np.floor(ang * 6), np.floor(pc[:, 2] / 0.4), i, seed + 6) - 0.5
        shade = 1.0 + np.where(mat == TRUNK, 0.35, 0.06) * streak
        albedo[sel] = cyl.colour[i] * shade[:, None]
        reflect[sel] = np.where(mat == TRUNK, MATERIAL_REFLECT[TRUNK], MATERIAL_REFLECT[POLE])

    sel = kind == ELL
    if sel.any():
        e = world.objects.ellipsoids
        i = idx[sel]
        pe = p[sel]
        q = np.stack(
            [
                (pe[:, 0] - e.cx[i]) / e.r[i] ** 2,
                (pe[:, 1] - e.cy[i]) / e.r[i] ** 2,
                (pe[:, 2] - e.cz[i]) / e.rz[i] ** 2,
            ],
            1,
        )
        normal[sel] = q / np.linalg.norm(q, axis=1, keepdims=True)
        leaf = value_noise3(pe, 0.35, seed + 7)
        clump = value_noise3(pe, 1.2, seed + 8)
        shade = 0.55 + 0.5 * leaf + 0.35 * (clump - 0.5)
        albedo[sel] = e.colour[i] * shade[:, None]
        reflect[sel] = MATERIAL_REFLECT[FOLIAGE]
    return mask, p, normal, np.clip(albedo, 0, 255), reflect, shadow


def shade_camera(world, o: np.ndarray, d: np.ndarray, hits: Hits) -> np.ndarray:
    """Colour image (H, W, 3) uint8 from hits: Lambert + ambient, distance haze, sky gradient."""
    h, w = hits.t.shape
    img = np.empty((h, w, 3), np.float32)
    mask, p, normal, albedo, _, shadow = surface(world, o, d, hits)
    sky = ~mask
    if sky.any():
        ds = d[sky]
        elev = np.clip(ds[:, 2] / np.linalg.norm(ds, axis=1), 0, 1)[:, None] ** 0.6
        img[sky] = SKY_HORIZON * (1 - elev) + SKY_ZENITH * elev
    if mask.any():
        sun = world.sun
        lam = np.where(shadow, 0.0, np.maximum(normal @ sun.astype(np.float32), 0))
        light = (AMBIENT + (1 - AMBIENT) * lam) / (AMBIENT + (1 - AMBIENT) * sun[2])  # sunlit ground = 1
        col = albedo * light[:, None]
        dist = np.linalg.norm(p - np.asarray(o, np.float32), axis=1)
        haze = (1 - np.exp(-((dist / 260.0) ** 2)))[:, None]
        img[mask] = col * (1 - haze) + SKY_HORIZON * haze
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
