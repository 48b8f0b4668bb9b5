"""Real spherical harmonics, degree 0–3, with the basis constants and signs of 3DGS / gsplat.

A Gaussian's colour seen along the unit direction ``d`` (camera centre → Gaussian mean, map frame) is
``max(sum_k sh[k] * Y_k(d) + 0.5, 0)`` per channel, so ``sh[0] = (rgb - 0.5) / Y_0`` for a plain
colour. Using the same basis (value and sign per coefficient) as gsplat/the original 3DGS code means a
PLY trained by either renders identically here, and the CPU and CUDA backends agree.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """The (degree+1)² basis values at unit directions ``dirs`` (…, 3) → (…, (degree+1)²)."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    out = [torch.full_like(dirs[..., 0], SH_C0)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        out += [
            SH_C2[0] * xy,
            SH_C2[1] * yz,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * xz,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_to_color(degree: int, dirs: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """RGB from SH ``coeffs`` (…, K, 3) (K ≥ (degree+1)²; extra bands ignored) seen along ``dirs``
    (…, 3, any length, normalised here): ``clamp_min(sum_k coeffs[k] Y_k(d) + 0.5, 0)`` as gsplat."""
    n = (degree + 1) ** 2
    if degree == 0:
        raw = SH_C0 * coeffs[..., 0, :]
    else:
        # Normalise with a floor so a Gaussian exactly at the camera centre gives a finite colour.
        d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        basis = sh_basis(degree, d)
        # (…, 1, n) @ (…, n, 3): a batched matrix product, cheaper than broadcast-multiply-and-sum.
        raw = torch.matmul(basis[..., None, :], coeffs[..., :n, :])[..., 0, :]
    return torch.clamp_min(raw + 0.5, 0.0)


def _sphere(n: int = 64) -> torch.Tensor:
    """``n`` unit directions spread evenly over the sphere (a Fibonacci lattice), float64."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = torch.sqrt(1.0 - z * z)
    phi = i * math.pi * (3.0 - math.sqrt(5.0))  # the golden angle
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)


def sh_rotation(degree: int, R) -> np.ndarray:
    """The (n, n) matrix M, n = (degree+1)², of a scene turned by the rotation ``R`` (3x3): a
    Gaussian's coefficients ``M @ sh`` show along ``R d`` the colour ``sh`` showed along ``d`` (the
    camera turned with the scene sees the same image). Block diagonal: each band maps into itself
    (its rotated functions are again functions of the band) and the DC term stays. Each band's block
    is solved from the basis at 64 directions spread over the sphere, ``Y(d) M = Y(Rᵀ d)``: a fit
    with no residual, so exact up to float64 rounding, in gsplat's basis and signs as rendered."""
    R = torch.as_tensor(np.asarray(R, np.float64).reshape(3, 3))
    d = _sphere()
    A, B = sh_basis(degree, d), sh_basis(degree, d @ R)  # (d @ R: Rᵀ d per row)
    M = np.zeros(((degree + 1) ** 2,) * 2)
    for band in range(degree + 1):
        s = slice(band * band, (band + 1) ** 2)
        M[s, s] = torch.linalg.lstsq(A[:, s], B[:, s]).solution.numpy()
    return M
