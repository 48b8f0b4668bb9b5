"""The map-element representation: an ordered sequence of K 2D Gaussians in the ego BEV frame.

A Gaussian is (x, y, sx, sy, θ) in base_link metres/radians with covariance
Σ = R(θ) diag(sx², sy²) R(θ)ᵀ. The element's vector form is its ordered centres (polygons closed:
the last centre repeats the first). Tensors hold the parameters in the last dimension, (..., K, 5).

:class:`BEVGrid` fixes the one mapping between metres, normalised coordinates and raster pixels (see
``gsmap_hd.model_config`` for the axis choice): normalised u = (x - x_min)/(x_max - x_min),
v = (y - y_min)/(y_max - y_min) in [0, 1] (what the decoder regresses and the L1 loss compares, as in
MapTR); raster row i has x = x_max - (i + ½)·res_x, column j has y = y_max - (j + ½)·res_y.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

X, Y, SX, SY, THETA = range(5)


@dataclass(frozen=True)
class BEVGrid:
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    height: int  # rows, along x
    width: int  # cols, along y

    @classmethod
    def with_resolution(cls, x_range, y_range, res: float) -> BEVGrid:
        return cls(
            tuple(x_range),
            tuple(y_range),
            max(1, round((x_range[1] - x_range[0]) / res)),
            max(1, round((y_range[1] - y_range[0]) / res)),
        )

    @property
    def size_x(self) -> float:
        return self.x_range[1] - self.x_range[0]

    @property
    def size_y(self) -> float:
        return self.y_range[1] - self.y_range[0]

    @property
    def res(self) -> tuple[float, float]:
        return self.size_x / self.height, self.size_y / self.width

    def pixel_centres(self, dtype=torch.float32, device=None) -> torch.Tensor:
        """(H, W, 2) metric (x, y) of every pixel centre."""
        rx, ry = self.res
        xs = self.x_range[1] - (torch.arange(self.height, dtype=dtype, device=device) + 0.5) * rx
        ys = self.y_range[1] - (torch.arange(self.width, dtype=dtype, device=device) + 0.5) * ry
        gx, gy = torch.meshgrid(xs, ys, indexing="ij")
        return torch.stack([gx, gy], dim=-1)

    def normalize(self, xy):
        """Metric (..., 2) → normalised (u, v) in [0, 1] inside the patch (torch or numpy)."""
        u = (xy[..., 0] - self.x_range[0]) / self.size_x
        v = (xy[..., 1] - self.y_range[0]) / self.size_y
        return torch.stack([u, v], -1) if isinstance(xy, torch.Tensor) else np.stack([u, v], -1)

    def denormalize(self, uv):
        x = uv[..., 0] * self.size_x + self.x_range[0]
        y = uv[..., 1] * self.size_y + self.y_range[0]
        return torch.stack([x, y], -1) if isinstance(uv, torch.Tensor) else np.stack([x, y], -1)

    @staticmethod
    def uv_to_grid_sample(uv: torch.Tensor) -> torch.Tensor:
        """Normalised (u, v) → ``grid_sample`` coordinates (col, row) in [-1, 1] of a BEV tensor laid out
        as this grid (row 0 = front, col 0 = left; align_corners=False)."""
        return torch.stack([1.0 - 2.0 * uv[..., 1], 1.0 - 2.0 * uv[..., 0]], dim=-1)


def covariance(params: torch.Tensor) -> torch.Tensor:
    """(..., 5) → (..., 2, 2) Σ = R diag(sx², sy²) Rᵀ."""
    c, s = torch.cos(params[..., THETA]), torch.sin(params[..., THETA])
    a, b = params[..., SX] ** 2, params[..., SY] ** 2
    sxx = c * c * a + s * s * b
    syy = s * s * a + c * c * b
    sxy = c * s * (a - b)
    return torch.stack([torch.stack([sxx, sxy], -1), torch.stack([sxy, syy], -1)], -2)


# ---------------------------------------------------------------------------------------------------
# Ground truth: clip to the patch, resample to K points, permutation-equivalent orderings.


def clip_to_patch(cls: int, pts: np.ndarray, grid: BEVGrid, is_polygon: bool) -> list[np.ndarray]:
    """Clip a GT element to the BEV patch (shapely); returns 0..n pieces (polygons closed)."""
    from shapely.geometry import Polygon, box

    from gs_mapping.world.roads import clip_line

    pts = np.asarray(pts, np.float64)
    patch = box(grid.x_range[0], grid.y_range[0], grid.x_range[1], grid.y_range[1])
    if is_polygon:
        if len(pts) < 3:
            return []
        geom = Polygon(pts).buffer(0)
        if geom.is_empty:
            return []
        clipped = geom.intersection(patch)
        polys = [clipped] if clipped.geom_type == "Polygon" else list(getattr(clipped, "geoms", []))
        out = []
        for p in polys:
            if p.geom_type == "Polygon" and not p.is_empty and p.area > 1e-6:
                ring = np.asarray(p.exterior.coords)
                out.append(ring)
        return out
    if len(pts) < 2:
        return []
    return [np.asarray(l.coords) for l in clip_line(pts, patch) if l.length > 1e-3]


def resample(pts: np.ndarray, k: int, closed: bool) -> np.ndarray:
    """K points evenly spaced along arc length. ``closed``: pts is a ring; the result is closed too
    (point K-1 == point 0, K-1 distinct points)."""
    pts = np.asarray(pts, np.float64)
    if closed and not np.allclose(pts[0], pts[-1]):
        pts = np.vstack([pts, pts[:1]])
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1]
    if total <= 0:
        return np.repeat(pts[:1], k, axis=0)
    t = np.linspace(0.0, total, k)
    out = np.stack([np.interp(t, cum, pts[:, 0]), np.interp(t, cum, pts[:, 1])], axis=1)
    if closed:
        out[-1] = out[0]
    return out


def orderings(points: np.ndarray, closed: bool) -> np.ndarray:
    """All permutation-equivalent orderings of one resampled element, (P, K, 2): a polyline in both
    directions; a closed ring (last == first) from every start vertex in both directions."""
    if not closed:
        return np.stack([points, points[::-1]])
    ring = points[:-1]
    out = []
    for direction in (ring, ring[::-1]):
        for s in range(len(ring)):
            r = np.roll(direction, -s, axis=0)
            out.append(np.vstack([r, r[:1]]))
    return np.stack(out)


def gaussians_from_points(points: torch.Tensor, width: float) -> torch.Tensor:
    """Gaussians lying along a polyline (..., K, 2): θ along the local tangent, sx half the spacing,
    sy = ``width``/2: the Gaussians of a prediction that is exactly the given lane (the model learns
    its own; tests build known predictions with it)."""
    d = torch.zeros_like(points)
    d[..., 1:-1, :] = points[..., 2:, :] - points[..., :-2, :]
    d[..., 0, :] = points[..., 1, :] - points[..., 0, :]
    d[..., -1, :] = points[..., -1, :] - points[..., -2, :]
    theta = torch.atan2(d[..., 1], d[..., 0])
    spacing = torch.linalg.norm(points[..., 1:, :] - points[..., :-1, :], dim=-1).mean(-1, keepdim=True)
    sx = (spacing * 0.5).clamp_min(width / 2).expand_as(theta)
    sy = torch.full_like(theta, width / 2)
    return torch.cat([points, sx[..., None], sy[..., None], theta[..., None]], dim=-1)
