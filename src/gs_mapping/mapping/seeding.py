"""New Gaussians from measured depth where the current map does not explain a frame.

A pixel is unexplained when the map renders little there (alpha below a threshold), or when the
map's depth lies clearly behind the measurement (something new stands in front of what we had).
Unexplained pixels with valid depth on a ``stride`` grid become isotropic Gaussians at the
back-projected point, coloured from the image (averaged over the grid cell), sized so neighbours
overlap: σ = scale_factor · stride · z / f.
"""

from __future__ import annotations

import numpy as np

from ..camera import Camera
from ..gaussians import SH_C0
from ..morton import morton
from .mapper_config import SeedingConfig


def unexplained_mask(
    alpha: np.ndarray | None, rendered_depth: np.ndarray | None, depth: np.ndarray, cfg: SeedingConfig
) -> np.ndarray:
    """(H, W) bool: pixels with valid depth that the map does not explain. ``alpha`` None = empty
    map. ``rendered_depth`` is the expected depth normalised by alpha (z where the map is)."""
    valid = (depth >= cfg.min_depth_m) & (depth <= cfg.max_depth_m) & np.isfinite(depth)
    if alpha is None:
        return valid
    low = alpha < cfg.alpha_threshold
    behind = np.zeros_like(valid)
    if rendered_depth is not None:
        behind = rendered_depth > depth * (1.0 + cfg.depth_behind_ratio)
    return valid & (low | behind)


def fill_holes(depth: np.ndarray, max_px: int) -> np.ndarray:
    """Depth with invalid pixels (0) within ``max_px`` of a valid one set to the nearest valid depth."""
    from scipy.ndimage import distance_transform_edt

    invalid = ~(depth > 0)
    if max_px <= 0 or not invalid.any() or invalid.all():
        return depth
    dist, (iy, ix) = distance_transform_edt(invalid, return_indices=True)
    filled = depth[iy, ix]
    return np.where(invalid & (dist <= max_px), filled, depth).astype(depth.dtype)


def _cell_mean(img: np.ndarray, s: int) -> np.ndarray:
    """Mean over s×s cells anchored at the grid points (edge cells padded by replication)."""
    if s == 1:
        return img
    h, w = img.shape[:2]
    hp, wp = -(-h // s) * s, -(-w // s) * s
    pad = [(0, hp - h), (0, wp - w)] + [(0, 0)] * (img.ndim - 2)
    p = np.pad(img, pad, mode="edge")
    return p.reshape(hp // s, s, wp // s, s, *img.shape[2:]).mean(axis=(1, 3))


def seed_pixels(mask: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(v, u) of the seeded pixels, in the order of :func:`seed_gaussians`'s rows."""
    grid = np.zeros_like(mask)
    grid[::stride, ::stride] = True
    return np.nonzero(mask & grid)


def seed_gaussians(
    rgb: np.ndarray,
    depth: np.ndarray,
    camera: Camera,
    mask: np.ndarray,
    cfg: SeedingConfig,
    sh_degree: int = 0,
) -> dict[str, np.ndarray]:
    """Parameters (pre-activation, as GaussianMap stores them) of the new Gaussians."""
    s = cfg.stride
    v, u = seed_pixels(mask, s)
    z = depth[v, u].astype(np.float64)
    K = camera.K
    pc = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=-1)
    means = pc @ camera.T_map_cam[:3, :3].T + camera.T_map_cam[:3, 3]
    colour = _cell_mean(rgb.astype(np.float64), s)[v // s, u // s]
    n = len(z)
    sh = np.zeros((n, (sh_degree + 1) ** 2, 3), np.float32)
    sh[:, 0] = (np.clip(colour, 0, 1) - 0.5) / SH_C0
    f = 0.5 * (K[0, 0] + K[1, 1])
    sigma = cfg.scale_factor * s * z / f
    quats = np.zeros((n, 4), np.float32)
    quats[:, 3] = 1
    op = cfg.initial_opacity
    return {
        "means": means.astype(np.float32),
        "quats": quats,
        "log_scales": np.repeat(np.log(sigma)[:, None], 3, axis=1).astype(np.float32),
        "opacity_logits": np.full(n, np.log(op / (1 - op)), np.float32),
        "sh": sh,
    }


def spatial_order(
    means: np.ndarray, levels: np.ndarray, cell_m: float = 0.001, tile_m: float = 2.048
) -> np.ndarray:
    """Row order of new Gaussians by (level, tile, Morton code of a ``cell_m`` grid inside the tile):
    the order in which the codec walks a layer's octree. Seeds appended in this order get ascending
    ids along it, so a snapshot's id stream (id differences in octree order) is mostly small steps
    instead of jumps between pixel rows."""
    if len(means) < 2:
        return np.arange(len(means))
    per_tile = int(round(tile_m / cell_m))
    ijk = np.floor(np.asarray(means, np.float64) / cell_m).astype(np.int64)
    tiles = np.floor_divide(ijk, per_tile)
    codes = morton(ijk - tiles * per_tile).view(np.int64)
    return np.lexsort((codes, tiles[:, 2], tiles[:, 1], tiles[:, 0], np.asarray(levels)))
