"""Differentiable BEV rasteriser of Gaussian map elements, and ground-truth masks.

Occupancy of element j at pixel p (GSMap Eq. 6): O_j(p) = 1 - Π_i (1 - G_i(p)),
G_i(p) = exp(-½ (p-μ_i)ᵀ Σ_i⁻¹ (p-μ_i)). Beyond ``cutoff`` σ (Mahalanobis) a Gaussian contributes
nothing; to keep the function continuous there (so gradients do not see a step) the kernel is shifted
and rescaled: G = max(e^{-m/2} - e^{-c²/2}, 0) / (1 - e^{-c²/2}), which is 1 at the centre and 0 at
the cut. Two implementations, tested against each other (as gsplat keeps a reference beside the fast path):

- :func:`rasterize_dense` evaluates every Gaussian at every pixel: exactly Eq. 6, the reference (float64
  gradcheck runs on it).
- :func:`rasterize` (used in training) evaluates each Gaussian only inside the pixel window that holds
  its cut-off ellipse, accumulates log(1 - G) per element with ``index_add`` and exponentiates. G is
  scaled by (1 - 1e-6) so the log stays finite at a centre; occupancy differs from Eq. 6 by < 1e-5.
"""

from __future__ import annotations

import math

import torch

from gs_mapping.mapping.metrics import ssim_nchw

from .gaussians2d import SX, SY, THETA, BEVGrid, covariance


def gaussian_kernel(params: torch.Tensor, pix: torch.Tensor, cutoff: float = 3.0) -> torch.Tensor:
    """params (..., K, 5), pix (H, W, 2) → G (..., K, H, W)."""
    mu = params[..., :2][..., None, None, :]  # (..., K, 1, 1, 2)
    d = pix - mu  # (..., K, H, W, 2)
    c = torch.cos(params[..., THETA])[..., None, None]
    s = torch.sin(params[..., THETA])[..., None, None]
    a = (c * d[..., 0] + s * d[..., 1]) / params[..., SX][..., None, None]  # along the Gaussian's x
    b = (-s * d[..., 0] + c * d[..., 1]) / params[..., SY][..., None, None]
    m = a * a + b * b
    floor = math.exp(-0.5 * cutoff * cutoff)
    return torch.clamp(torch.exp(-0.5 * m) - floor, min=0.0) / (1.0 - floor)


def rasterize_dense(
    params: torch.Tensor, grid: BEVGrid, cutoff: float = 3.0, chunk: int = 64
) -> torch.Tensor:
    """Occupancy masks of elements: params (..., E, K, 5) in metres → (..., E, H, W) in [0, 1].

    Batched over any leading dims (frames, elements); ``chunk`` elements are rendered at a time."""
    pix = grid.pixel_centres(dtype=params.dtype, device=params.device)
    lead = params.shape[:-2]
    flat = params.reshape(-1, *params.shape[-2:])
    outs = []
    for i in range(0, flat.shape[0], chunk):
        g = gaussian_kernel(flat[i : i + chunk], pix, cutoff)  # (c, K, H, W)
        outs.append(1.0 - torch.prod(1.0 - g, dim=1))
    out = torch.cat(outs) if outs else flat.new_zeros(0, grid.height, grid.width)
    return out.reshape(*lead, grid.height, grid.width)


def polyline_mask(points: torch.Tensor, grid: BEVGrid, width_m: float) -> torch.Tensor:
    """Ground-truth masks: pixels within ``width_m``/2 of the polyline through points (E, K, 2)
    → (E, H, W) float {0, 1}. Polygons are passed closed (their outline is drawn, as the Gaussians
    along it render an outline)."""
    pix = grid.pixel_centres(dtype=points.dtype, device=points.device).reshape(-1, 2)  # (P, 2)
    a = points[:, :-1, :]  # (E, S, 2)
    b = points[:, 1:, :]
    ab = b - a
    ap = pix[None, None] - a[:, :, None, :]  # (E, S, P, 2)
    denom = (ab * ab).sum(-1).clamp_min(1e-12)[..., None]
    t = ((ap * ab[:, :, None, :]).sum(-1) / denom).clamp(0, 1)  # (E, S, P)
    closest = a[:, :, None, :] + t[..., None] * ab[:, :, None, :]
    dist = torch.linalg.norm(pix[None, None] - closest, dim=-1).amin(1)  # (E, P)
    return (dist <= width_m / 2).to(points.dtype).reshape(-1, grid.height, grid.width)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM per mask of (N, H, W) images in [0, 1] (Gaussian window, C1 = 0.01², C2 = 0.03²,
    zero padding at the border): gs_mapping's SSIM, one implementation for both losses."""
    return ssim_nchw(a[:, None], b[:, None], window, sigma, zero_pad=True).mean(dim=(1, 2, 3))


_EPS = 1e-6


def rasterize(params: torch.Tensor, grid: BEVGrid, cutoff: float = 3.0) -> torch.Tensor:
    """Occupancy masks of elements, windowed: params (..., E, K, 5) in metres → (..., E, H, W).

    Each Gaussian touches a pixel window centred on its pixel (clamped into the grid), as many rows
    and columns as the largest cut-off ellipse in the batch spans, but never more than the grid:
    every Gaussian is rendered whole within its cut-off, and memory stays below N·(2H-1)·(2W-1)
    for N Gaussians however large they are against the pixel."""
    lead = params.shape[:-2]
    k = params.shape[-2]
    flat = params.reshape(-1, 5)  # (N, 5), element of row n = n // k
    n = flat.shape[0]
    h, w = grid.height, grid.width
    if n == 0:
        return params.new_zeros(*lead, h, w)
    rx, ry = grid.res
    with torch.no_grad():
        cov = covariance(flat)
        ext_x = cutoff * cov[:, 0, 0].clamp_min(0).sqrt() / rx
        ext_y = cutoff * cov[:, 1, 1].clamp_min(0).sqrt() / ry
        # No fixed cap (one cut large Gaussians on a fine raster, a step in Eq. 6 at the window's
        # edge). With the centre pixel clamped into the grid, ±(H-1) rows and ±(W-1) columns
        # reach every pixel, so a larger window is never needed.
        rad_r = min(int(torch.ceil(ext_x.max()).item()) + 1, h - 1)
        rad_c = min(int(torch.ceil(ext_y.max()).item()) + 1, w - 1)
        row_c = torch.floor((grid.x_range[1] - flat[:, 0]) / rx).long().clamp(0, h - 1)
        col_c = torch.floor((grid.y_range[1] - flat[:, 1]) / ry).long().clamp(0, w - 1)
        rows = row_c[:, None, None] + torch.arange(-rad_r, rad_r + 1, device=flat.device)[None, :, None]
        cols = col_c[:, None, None] + torch.arange(-rad_c, rad_c + 1, device=flat.device)[None, None, :]
        valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)  # (N, Sr, Sc)
        elem = torch.arange(n, device=flat.device) // k
        index = elem[:, None, None] * (h * w) + rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)
    px = grid.x_range[1] - (rows.to(flat.dtype) + 0.5) * rx  # (N, Sr, 1)
    py = grid.y_range[1] - (cols.to(flat.dtype) + 0.5) * ry  # (N, 1, Sc)
    dx = px - flat[:, 0, None, None]
    dy = py - flat[:, 1, None, None]
    c = torch.cos(flat[:, THETA])[:, None, None]
    s = torch.sin(flat[:, THETA])[:, None, None]
    a = (c * dx + s * dy) / flat[:, SX, None, None]
    b = (-s * dx + c * dy) / flat[:, SY, None, None]
    floor = math.exp(-0.5 * cutoff * cutoff)
    g = torch.clamp(torch.exp(-0.5 * (a * a + b * b)) - floor, min=0.0) / (1.0 - floor)
    logt = torch.log1p(-g * (1.0 - _EPS)) * valid
    canvas = flat.new_zeros((n // k) * h * w)
    canvas = canvas.index_add(0, index.reshape(-1), logt.reshape(-1))
    return (1.0 - torch.exp(canvas)).reshape(*lead, h, w)
