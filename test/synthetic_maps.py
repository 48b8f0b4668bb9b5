"""Synthetic Gaussian maps for tests and benchmarks (a room with boxes and spheres).

Gaussians lie on surfaces as a fitted map's do: flat (thin along the normal), oriented to the surface,
sized to the sampling density, textured colours, bimodal opacities, small higher-order SH decaying
with degree, positions with a few mm of noise off the surface. Ids follow a simulated keyframe sweep
(batches of nearby Gaussians get consecutive ids, as a mapper seeding from depth images does).
These statistics drive the measured sizes: they stand in for a fitted map, they are not one.
"""

from __future__ import annotations

import numpy as np

from gs_mapping.gaussians import SH_C0, GaussianMap
from gs_mapping.geometry import matrix_to_quat


def _frame(normals: np.ndarray, rng) -> np.ndarray:
    """Rotation matrices whose third column is the normal, random in-plane angle."""
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    a = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    t = np.cross(n, a)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    b = np.cross(n, t)
    ang = rng.uniform(0, 2 * np.pi, len(n))[:, None]
    t2 = np.cos(ang) * t + np.sin(ang) * b
    b2 = np.cross(n, t2)
    return np.stack([t2, b2, n], axis=2)


def synthetic_map(
    n: int,
    sh_degree: int = 3,
    seed: int = 0,
    extent: float = 8.0,
    height: float = 3.0,
    origin=(0.0, 0.0, 0.0),
) -> GaussianMap:
    rng = np.random.default_rng(seed)
    # surfaces: (kind, params, base colour)
    surfs = []
    e, h = extent, height
    surfs += [("plane", (np.array([0, 0, 0.0]), np.array([e, 0, 0.0]), np.array([0, e, 0.0])))]  # floor
    surfs += [
        ("plane", (np.array([0, 0, 0.0]), np.array([e, 0, 0.0]), np.array([0, 0, h]))),
        ("plane", (np.array([0, e, 0.0]), np.array([e, 0, 0.0]), np.array([0, 0, h]))),
        ("plane", (np.array([0, 0, 0.0]), np.array([0, e, 0.0]), np.array([0, 0, h]))),
        ("plane", (np.array([e, 0, 0.0]), np.array([0, e, 0.0]), np.array([0, 0, h]))),
    ]
    for _ in range(12):  # boxes: top + 4 sides
        c = rng.uniform(1, e - 1, 2)
        sx, sy, sz = rng.uniform(0.3, 1.2, 3)
        x0, y0 = c[0] - sx / 2, c[1] - sy / 2
        surfs += [
            ("plane", (np.array([x0, y0, sz]), np.array([sx, 0, 0]), np.array([0, sy, 0]))),
            ("plane", (np.array([x0, y0, 0]), np.array([sx, 0, 0]), np.array([0, 0, sz]))),
            ("plane", (np.array([x0, y0 + sy, 0]), np.array([sx, 0, 0]), np.array([0, 0, sz]))),
            ("plane", (np.array([x0, y0, 0]), np.array([0, sy, 0]), np.array([0, 0, sz]))),
            ("plane", (np.array([x0 + sx, y0, 0]), np.array([0, sy, 0]), np.array([0, 0, sz]))),
        ]
    for _ in range(8):
        surfs.append(
            ("sphere", (np.append(rng.uniform(1, e - 1, 2), rng.uniform(0.5, 2.0)), rng.uniform(0.2, 0.6)))
        )
    area = np.array(
        [np.linalg.norm(np.cross(p[1], p[2])) if k == "plane" else 4 * np.pi * p[1] ** 2 for k, p in surfs]
    )
    counts = rng.multinomial(n, area / area.sum())
    pts, nrm, col, sid = [], [], [], []
    for i, ((kind, p), m) in enumerate(zip(surfs, counts, strict=False)):
        if m == 0:
            continue
        base = rng.uniform(0.15, 0.85, 3)
        if kind == "plane":
            uv = rng.uniform(0, 1, (m, 2))
            x = p[0] + uv[:, :1] * p[1] + uv[:, 1:] * p[2]
            nn = np.repeat(np.cross(p[1], p[2])[None], m, 0)
            tex = uv * np.array([np.linalg.norm(p[1]), np.linalg.norm(p[2])])
        else:
            v = rng.normal(size=(m, 3))
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            x = p[0] + p[1] * v
            nn = v
            tex = np.stack(
                [np.arctan2(v[:, 1], v[:, 0]) * p[1], np.arccos(np.clip(v[:, 2], -1, 1)) * p[1]], 1
            )
        freq = rng.uniform(1, 6, 2)
        c = (
            base
            + 0.15 * np.sin(freq[0] * tex[:, :1] * 2) * np.cos(freq[1] * tex[:, 1:] * 2)
            + rng.normal(0, 0.03, (m, 3))
        )
        pts.append(x)
        nrm.append(nn)
        col.append(c)
        sid.append(np.full(m, i))
    x, nn, c, sid = map(np.concatenate, (pts, nrm, col, sid))
    nn /= np.linalg.norm(nn, axis=1, keepdims=True)
    x = x + nn * rng.normal(0, 0.002, (len(x), 1))
    spacing = np.sqrt(area.sum() / max(n, 1))
    R = _frame(nn, rng)
    q = matrix_to_quat(R, positive_w=False)
    ls = np.log(spacing) + rng.normal(0, 0.3, (len(x), 3))
    ls[:, 2] = np.log(spacing * 0.1) + rng.normal(0, 0.3, len(x))
    op = np.where(rng.uniform(size=len(x)) < 0.7, rng.normal(3, 1, len(x)), rng.normal(-1, 1.5, len(x)))
    k = (sh_degree + 1) ** 2
    sh = np.zeros((len(x), k, 3))
    sh[:, 0] = (np.clip(c, 0, 1) - 0.5) / SH_C0
    if k > 1:
        deg = np.floor(np.sqrt(np.arange(1, k)))
        sh[:, 1:] = rng.normal(0, 1, (len(x), k - 1, 3)) * (0.05 / deg)[None, :, None]
    # simulated keyframe sweep: batches by angle around the room centre, raster order inside
    ang = np.arctan2(x[:, 1] - e / 2, x[:, 0] - e / 2)
    batch = np.floor((ang + np.pi) / (2 * np.pi) * 64).astype(np.int64)
    order = np.lexsort(
        (np.round(x[:, 0] / 0.01), np.round(x[:, 2] / 0.01), np.round(x[:, 1] / 0.05), sid, batch)
    )
    ids = np.arange(1, len(x) + 1, dtype=np.uint64)
    g = GaussianMap(
        sh_degree=sh_degree,
        means=(x[order] + np.asarray(origin)).astype(np.float32),
        quats=q[order].astype(np.float32),
        log_scales=ls[order].astype(np.float32),
        opacity_logits=op[order].astype(np.float32),
        sh=sh[order].astype(np.float32),
        ids=ids,
        levels=np.zeros(len(x), np.uint8),
    )
    g.take_changes()
    return g


def smooth_colour_scene(n: int, seed: int, colour_seed: int, offset: float = 0.0) -> GaussianMap:
    """A scene read without ids (trainer order: shuffled) whose colour varies smoothly in space,
    blue least: a single level codes its colour blue first, in neighbour phases (version 9);
    ``offset`` is added to every DC value (far from zero: the first channel is centred too)."""
    g = synthetic_map(n, 0, seed=seed)
    rng = np.random.default_rng(colour_seed)
    perm = rng.permutation(len(g))
    means, quats, scales, ops = g.means[perm], g.quats[perm], g.log_scales[perm], g.opacity_logits[perm]
    x, y, z = means.astype(np.float64).T
    blue = 0.2 * np.sin(x) + rng.normal(0, 0.02, len(g))
    green = blue + 0.8 * np.cos(y) + rng.normal(0, 0.02, len(g))
    red = green + 0.5 * (green - blue) + 0.6 * np.sin(z) + rng.normal(0, 0.02, len(g))
    sh = (np.stack([red, green, blue], 1) + offset).astype(np.float32)[:, None, :]
    return GaussianMap(0, g.tile_size, means, quats, scales, ops, sh)


def sheen_scene(n: int, seed: int, palette: int = 0) -> GaussianMap:
    """``smooth_colour_scene`` with SH degree 2 whose colour channels move together in every
    higher coefficient (a near-grey view-dependent sheen, as trained scenes have: their channels
    correlate, ρ ≈ 0.9 on playbot): version 11 codes channels 0 and 2 from channel 1. With
    ``palette`` > 0 the Gaussians share that many distinct higher-SH rows (a vector-quantised
    source, coded as an SH palette)."""
    g = smooth_colour_scene(n, seed, seed + 1)
    rng = np.random.default_rng(seed + 2)
    rows = palette if palette else n
    common = rng.normal(0, 0.15, (rows, 8, 1))
    rest = (common + rng.normal(0, 0.02, (rows, 8, 3))).astype(np.float32)
    if palette:
        rest = rest[rng.integers(0, palette, n)]
    sh = np.concatenate([g.sh, rest], 1)
    return GaussianMap(2, g.tile_size, g.means, g.quats, g.log_scales, g.opacity_logits, sh)


def fuzz_seeds(n: int, seed: int, levels: int = 4):
    """Valid containers to mutate when fuzzing the decoder: a snapshot of a small SH3 map, the
    quantised map it encodes, a delta against it (moves, removals and additions), and a layered
    snapshot of the same map with its Gaussians spread over three levels.

    Returns ``(snapshot, q0, delta, layered)``; the same seed gives the same bytes."""
    from gs_map_share.delta import encode_delta
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.snapshot import encode_map

    p = QuantParams()
    g = synthetic_map(n, 3, seed=seed)
    snapshot, _ = encode_map(g, p, n_levels=levels)
    q0 = to_qmap(g, p)
    k = max(1, n // 16)
    g2 = g.copy()
    g2.update(g2.ids[:k], means=g2.means[:k] + 0.01)
    g2.remove(g2.ids[2 * k : 3 * k])
    g2.add(
        g.means[: k // 2 + 1] + 0.2,
        g.quats[: k // 2 + 1],
        g.log_scales[: k // 2 + 1],
        g.opacity_logits[: k // 2 + 1],
        g.sh[: k // 2 + 1],
    )
    delta, _ = encode_delta(q0, to_qmap(g2, p), p, map_id=1, seq=2, base_seq=1)
    gl = g.copy()
    gl.levels = (gl.ids % 3).astype(np.uint8)
    layered, _ = encode_map(gl, p, n_levels=levels)
    return snapshot, q0, delta, layered
