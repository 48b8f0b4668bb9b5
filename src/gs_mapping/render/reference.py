"""A dense, deliberately plain rasteriser: the specification the fast CPU backend is tested against.

It evaluates every Gaussian at every pixel (memory N × H × W, tests only), with straightforward
matrix maths and autograd for gradients. Conventions are those documented in ``projection.py`` and
``cpu.py`` (gsplat "classic", pixel centres at +0.5 in ``Kp``).
"""

from __future__ import annotations

import torch

from .projection import ALPHA_THRESHOLD


def _rotmat(q: torch.Tensor) -> torch.Tensor:
    x, y, z, w = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [
        [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def rasterize_reference(
    means,
    quats,
    scales,
    opacities,
    colors,
    viewmat,
    Kp,
    width,
    height,
    *,
    background=None,
    near=0.01,
    far=1e4,
    eps2d=0.3,
):
    """colors: (N, 3) already-evaluated RGB. Returns color (H, W, 3) with background, accumulated
    depth Σ w z (H, W), alpha (H, W)."""
    N = means.shape[0]
    W = viewmat[:3, :3]
    p = (W @ means.T).T + viewmat[:3, 3]
    z = p[:, 2]
    in_range = (z >= near) & (z <= far)
    zs = torch.where(in_range, z, torch.ones_like(z))
    Rg = _rotmat(quats)
    cov3 = Rg @ torch.diag_embed(scales**2) @ Rg.transpose(1, 2)
    cov_c = W @ cov3 @ W.T
    fx, fy, cx, cy = Kp[0, 0], Kp[1, 1], Kp[0, 2], Kp[1, 2]
    # Jacobian of (fx x/z + cx, fy y/z + cy) at the mean, x/z and y/z clamped to 1.3× the FOV.
    lx_n, lx_p = cx / fx + 0.15 * width / fx, (width - cx) / fx + 0.15 * width / fx
    ly_n, ly_p = cy / fy + 0.15 * height / fy, (height - cy) / fy + 0.15 * height / fy
    u = torch.clamp(p[:, 0] / zs, min=-lx_n, max=lx_p)
    v = torch.clamp(p[:, 1] / zs, min=-ly_n, max=ly_p)
    J = torch.zeros(N, 2, 3, dtype=means.dtype)
    J[:, 0, 0] = fx / zs
    J[:, 0, 2] = -fx * u / zs
    J[:, 1, 1] = fy / zs
    J[:, 1, 2] = -fy * v / zs
    cov2 = J @ cov_c @ J.transpose(1, 2) + eps2d * torch.eye(2, dtype=means.dtype)
    det = torch.linalg.det(cov2)
    ok = in_range & (det > 0) & (opacities >= ALPHA_THRESHOLD)
    inv = torch.linalg.inv(torch.where(ok[:, None, None], cov2, torch.eye(2, dtype=means.dtype)))
    mu = torch.stack([fx * p[:, 0] / zs + cx, fy * p[:, 1] / zs + cy], -1)

    with torch.no_grad():  # the culling box of projection.py, written out again
        ext = torch.clamp(torch.sqrt(2 * torch.log(opacities.clamp_min(ALPHA_THRESHOLD) * 255.0)), max=3.33)
        half_tr = 0.5 * (cov2[:, 0, 0] + cov2[:, 1, 1])
        lam = half_tr + torch.sqrt(torch.clamp(half_tr**2 - det, min=0.01))
        rx = torch.ceil(torch.minimum(ext * cov2[:, 0, 0].clamp_min(0).sqrt(), ext * lam.clamp_min(0).sqrt()))
        ry = torch.ceil(torch.minimum(ext * cov2[:, 1, 1].clamp_min(0).sqrt(), ext * lam.clamp_min(0).sqrt()))
        ok = ok & ((rx > 0) | (ry > 0))
        ok = ok & (mu[:, 0] + rx > 0) & (mu[:, 0] - rx < width)
        ok = ok & (mu[:, 1] + ry > 0) & (mu[:, 1] - ry < height)

    idx = torch.nonzero(ok).flatten()
    idx = idx[torch.argsort(z[idx], stable=True)]  # front to back
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=means.dtype) + 0.5,
        torch.arange(width, dtype=means.dtype) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([xs.flatten(), ys.flatten()], -1)  # (P, 2)
    d = pix[:, None, :] - mu[idx][None]  # (P, M, 2)
    sigma = 0.5 * torch.einsum("pmi,mij,pmj->pm", d, inv[idx], d)
    alpha = torch.clamp(opacities[idx][None] * torch.exp(-sigma), max=0.999)
    alpha = torch.where(alpha >= ALPHA_THRESHOLD, alpha, torch.zeros_like(alpha))
    # Front-to-back: a Gaussian counts while the transmittance after it stays above 1e-4.
    t_after = torch.cumprod(1 - alpha, dim=1)
    alpha = torch.where(t_after > 1e-4, alpha, torch.zeros_like(alpha))
    t_before = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], 1), dim=1)
    w = alpha * t_before  # (P, M)
    acc = w.sum(1)
    rgb = w @ colors[idx]
    if background is not None:
        rgb = rgb + (1 - acc)[:, None] * background
    dep = w @ z[idx]
    return rgb.reshape(height, width, 3), dep.reshape(height, width), acc.reshape(height, width)
