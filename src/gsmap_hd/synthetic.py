"""Flat-road scenes rendered by ray casting onto the ground plane: a small, fast, self-contained data
source with exact lane ground truth, for tests and for training before/besides the driving world.

Each scene (in base_link, ground at z = 0): a curved road (constant curvature) with 1-3 lanes, painted
dividers (class 0, some dashed), boundaries at the road edges with a kerb-coloured sidewalk beyond
(class 2), and sometimes a zebra crossing (class 1, a closed ring). Cameras: a front camera, or a
6-camera surround rig (nuScenes-like yaws).
"""

from __future__ import annotations

import math

import numpy as np

from .data import Sample

SURROUND_YAWS_DEG = (0.0, -55.0, 55.0, -110.0, 110.0, 180.0)


def camera_rig(rig: str, width: int, height: int, cam_height: float = 1.6, pitch_deg: float = 6.0):
    """(K (N,3,3), T_ego_cam (N,4,4)) for 'front' or 'surround'."""
    yaws = (0.0,) if rig == "front" else SURROUND_YAWS_DEG
    fov = math.radians(90.0 if rig == "front" else 70.0)
    f = (width / 2) / math.tan(fov / 2)
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])
    # optical (x right, y down, z forward) → ego (x forward, y left, z up), then pitch down, then yaw
    base = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    p = math.radians(pitch_deg)
    pitch = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    Ks, Ts = [], []
    for yaw in yaws:
        y = math.radians(yaw)
        rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
        T = np.eye(4)
        T[:3, :3] = rz @ pitch @ base
        T[:3, 3] = rz @ np.array([1.0, 0.0, cam_height])
        Ks.append(K.copy())
        Ts.append(T)
    return np.stack(Ks), np.stack(Ts)


def _arc(rng, kappa: float, heading: float, y0: float, s: np.ndarray):
    """Centreline points and unit left normals at arc lengths s (through (0, y0) at s = 0)."""
    th = heading + kappa * s
    if abs(kappa) < 1e-6:
        x = s * math.cos(heading)
        y = y0 + s * math.sin(heading)
    else:
        x = (np.sin(th) - math.sin(heading)) / kappa
        y = y0 - (np.cos(th) - math.cos(heading)) / kappa
    pts = np.stack([x, y], 1)
    normals = np.stack([-np.sin(th), np.cos(th)], 1)
    return pts, normals


def _seg_dist(p: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from points p (P, 2) to a polyline (S+1, 2), and the arc length of the closest point."""
    a, b = line[:-1], line[1:]
    ab = b - a
    L = np.linalg.norm(ab, axis=1)
    cum = np.concatenate([[0], np.cumsum(L)[:-1]])
    t = np.clip(((p[:, None] - a[None]) * ab[None]).sum(-1) / np.maximum(L**2, 1e-12)[None], 0, 1)
    d = np.linalg.norm(p[:, None] - (a[None] + t[..., None] * ab[None]), axis=-1)
    i = d.argmin(1)
    return d[np.arange(len(p)), i], cum[i] + t[np.arange(len(p)), i] * L[i]


def generate(seed: int, rig: str = "front", width: int = 256, height: int = 128) -> Sample:
    rng = np.random.default_rng(seed)
    lanes = int(rng.integers(1, 4))
    lane_w = float(rng.uniform(3.0, 3.8))
    road_w = lanes * lane_w
    kappa = float(rng.uniform(-0.012, 0.012))
    heading = float(rng.uniform(-0.12, 0.12))
    y_left = float(rng.uniform(0.3, 0.7) * lane_w + lane_w * rng.integers(0, lanes))  # ego inside the road
    s = np.linspace(-45, 45, 46)  # 2 m spacing: chord error < 1 cm at these curvatures
    centre, normal = _arc(rng, kappa, heading, y_left, s)  # this is the LEFT road edge
    elements, paint = [], []  # paint: (polyline, half width, dash period or 0)
    edge_r = centre - normal * road_w
    elements += [(2, centre), (2, edge_r)]
    for i in range(1, lanes):
        line = centre - normal * (i * lane_w)
        dashed = bool(rng.random() < 0.6)
        elements.append((0, line))
        paint.append((line, 0.08, 9.0 if dashed else 0.0))
    if rng.random() < 0.5:
        s0 = float(rng.uniform(6, 28))
        i0, i1 = np.searchsorted(s, [s0, s0 + 4.0])
        ring = np.vstack([centre[i0], centre[i1], edge_r[i1], edge_r[i0], centre[i0]])
        elements.append((1, ring))
        crossing = (centre[i0], normal[i0], s0)
    else:
        crossing = None
    Ks, Ts = camera_rig(rig, width, height)
    imgs = []
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    tex_rng = np.random.default_rng(seed + 7919)
    for K, T in zip(Ks, Ts, strict=False):
        rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
        d = rays.reshape(-1, 3) @ T[:3, :3].T
        o = T[:3, 3]
        t = -o[2] / np.where(d[:, 2] < -1e-6, d[:, 2], -1e-6)
        ground = (d[:, 2] < -1e-3) & (t < 120)
        g = o[:2] + t[:, None] * d[:, :2]
        col = np.empty((len(d), 3))
        col[:] = (0.55, 0.7, 0.9)  # sky
        col[~ground] -= 0.15 * np.clip(d[~ground, 2:3], 0, 1)
        gp = g[ground]
        dl, sl = _seg_dist(gp, centre)
        dr, _ = _seg_dist(gp, edge_r)
        on_road = (dl + dr) <= road_w + 1e-3
        c = np.where(on_road[:, None], (0.33, 0.33, 0.35), (0.55, 0.5, 0.42))
        c = c + np.where(((np.minimum(dl, dr) < 0.15) & ~on_road)[:, None], (0.25, 0.25, 0.25), 0)
        for line, hw, period in paint:
            dd, sa = _seg_dist(gp, line)
            m = dd < hw
            if period:
                m &= (sa % period) < period * 0.45
            c[m] = (0.92, 0.92, 0.9)
        if crossing is not None:
            p0, n0, s0 = crossing
            tang = np.array([n0[1], -n0[0]])
            rel = gp - p0
            along = rel @ tang
            across = -(rel @ n0)
            m = (along >= 0) & (along <= 4.0) & (across >= 0) & (across <= road_w) & ((across % 1.0) < 0.5)
            c[m] = (0.95, 0.95, 0.95)
        fade = np.clip(t[ground] / 120, 0, 1)[:, None]
        c = c * (1 - 0.5 * fade) + 0.5 * fade * np.array([0.6, 0.65, 0.7])
        col[ground] = c
        col += tex_rng.normal(0, 0.03, col.shape)
        imgs.append((np.clip(col, 0, 1).reshape(height, width, 3) * 255).astype(np.uint8))
    return Sample(np.stack(imgs), Ks, Ts, [(c, p.astype(np.float64)) for c, p in elements])
