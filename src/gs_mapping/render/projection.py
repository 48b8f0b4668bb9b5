"""EWA projection of 3D Gaussians into a pinhole image, with gsplat's "classic" conventions.

Everything here is per Gaussian (N-sized, cheap) and differentiable through autograd. Conventions
(the same as ``gsplat.fully_fused_projection`` so that the CPU and CUDA backends agree):

* ``Kp`` are *gsplat-style* intrinsics: a pixel's centre is at ``(col + 0.5, row + 0.5)``.
  :func:`gs_mapping.render.rasterize` takes OpenCV/ROS intrinsics (centres at integers) and shifts the
  principal point by +0.5 before calling this.
* 2D covariance ``J W Σ Wᵀ Jᵀ`` with the Jacobian evaluated at the mean clamped to 1.3× the field of
  view (avoids huge splats from Gaussians far outside the image), plus ``eps2d`` (0.3 px²) on the
  diagonal as a low-pass filter.
* Culling (radius 0 = not rendered): depth outside ``[near, far]``, non-positive determinant, opacity
  below 1/255, or the opacity-aware bounding box (``extend = min(3.33, sqrt(2 ln(255 o)))`` standard
  deviations per axis, gsplat ≥ 1.3) entirely outside the image. Every pixel where a Gaussian's alpha
  reaches 1/255 lies inside that box, so which pixels a Gaussian touches does not depend on tiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALPHA_THRESHOLD = 1.0 / 255.0


@dataclass
class Projected:
    means2d: torch.Tensor  # (N, 2) pixel position of the mean (gsplat pixel convention)
    conics: torch.Tensor  # (N, 3) inverse 2D covariance (a, b, c): σ = ½(a dx² + c dy²) + b dx dy
    depths: torch.Tensor  # (N,) camera-frame z of the mean
    radii: torch.Tensor  # (N, 2) int32 half-size of the bounding box in pixels; 0 = culled
    valid: torch.Tensor  # (N,) bool, radii > 0
    cov2d: torch.Tensor  # (N, 3) blurred 2D covariance (xx, xy, yy)


def quat_xyzw_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(N, 4) quaternions (x, y, z, w), any non-zero length → (N, 3, 3) rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    x, y, z, w = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(quats.shape[:-1] + (3, 3))


def project(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    viewmat: torch.Tensor,
    Kp: torch.Tensor,
    width: int,
    height: int,
    *,
    near: float = 0.01,
    far: float = 1e4,
    eps2d: float = 0.3,
) -> Projected:
    R = viewmat[:3, :3]
    t = viewmat[:3, 3]
    p = means @ R.T + t
    z = p[:, 2]
    in_range = (z >= near) & (z <= far)
    # Culled Gaussians still flow through the maths (vectorised); give them a harmless depth so
    # nothing is inf/NaN and their gradients are exactly zero.
    zs = torch.where(in_range, z, torch.ones_like(z))

    # Camera-frame covariance: (W R_g S)(W R_g S)ᵀ.
    M = R @ (quat_xyzw_to_rotmat(quats) * scales[:, None, :])
    fx, fy, cx, cy = Kp[0, 0], Kp[1, 1], Kp[0, 2], Kp[1, 2]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_xp = (width - cx) / fx + 0.3 * tan_fovx
    lim_xn = cx / fx + 0.3 * tan_fovx
    lim_yp = (height - cy) / fy + 0.3 * tan_fovy
    lim_yn = cy / fy + 0.3 * tan_fovy
    tx = zs * torch.minimum(torch.maximum(p[:, 0] / zs, -lim_xn), lim_xp)
    ty = zs * torch.minimum(torch.maximum(p[:, 1] / zs, -lim_yn), lim_yp)
    rz = 1.0 / zs
    # Rows of J M (J = [[fx/z, 0, -fx tx/z²], [0, fy/z, -fy ty/z²]]: its zeros left out), cov2d = JM JMᵀ.
    m0, m1, m2 = M.unbind(1)
    a0 = (fx * rz)[:, None] * m0 + (-fx * tx * rz * rz)[:, None] * m2  # (N, 3) = row 0 of J M
    a1 = (fy * rz)[:, None] * m1 + (-fy * ty * rz * rz)[:, None] * m2
    cxx = (a0 * a0).sum(-1) + eps2d
    cxy = (a0 * a1).sum(-1)
    cyy = (a1 * a1).sum(-1) + eps2d
    det = cxx * cyy - cxy * cxy
    ok = in_range & (det > 0)
    det_s = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([cyy / det_s, -cxy / det_s, cxx / det_s], dim=-1)
    means2d = torch.stack([fx * p[:, 0] * rz + cx, fy * p[:, 1] * rz + cy], dim=-1)

    with torch.no_grad():
        o = opacities.detach()
        ok = ok & (o >= ALPHA_THRESHOLD)
        extend = torch.sqrt(2.0 * torch.log(torch.clamp_min(o, ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extend = torch.clamp_max(extend, 3.33)
        b = 0.5 * (cxx + cyy)
        v1 = b + torch.sqrt(torch.clamp_min(b * b - det, 0.01))
        r1 = extend * torch.sqrt(torch.clamp_min(v1, 0))
        rx = torch.ceil(torch.minimum(extend * torch.sqrt(torch.clamp_min(cxx, 0)), r1))
        ry = torch.ceil(torch.minimum(extend * torch.sqrt(torch.clamp_min(cyy, 0)), r1))
        m2 = means2d.detach()
        ok = ok & ((rx > 0) | (ry > 0))
        ok = ok & (m2[:, 0] + rx > 0) & (m2[:, 0] - rx < width)
        ok = ok & (m2[:, 1] + ry > 0) & (m2[:, 1] - ry < height)
        ok = ok & torch.isfinite(m2).all(-1) & torch.isfinite(conics.detach()).all(-1)
        radii = torch.stack([rx, ry], dim=-1).clamp(0, 1 << 30)
        radii = torch.where(ok[:, None], radii, torch.zeros_like(radii)).to(torch.int32)
    return Projected(means2d, conics, z, radii, ok, torch.stack([cxx, cxy, cyy], dim=-1))


@torch.no_grad()
def candidates(
    means: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    viewmat: torch.Tensor,
    Kp: torch.Tensor,
    width: int,
    height: int,
    *,
    near: float = 0.01,
    far: float = 1e4,
    eps2d: float = 0.3,
) -> torch.Tensor:
    """Indices of the Gaussians that :func:`project` might keep: a cheap, conservative superset
    (depth range, opacity, and the image grown by an upper bound of the radius from the largest
    scale and the largest Jacobian norm), so that the differentiable projection runs on fewer."""
    p = means @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = p[:, 2]
    ok = (z >= near) & (z <= far) & (opacities >= ALPHA_THRESHOLD)
    zs = torch.where(ok, z, torch.ones_like(z))
    fx, fy, cx, cy = (float(v) for v in (Kp[0, 0], Kp[1, 1], Kp[0, 2], Kp[1, 2]))
    tx = max((width - cx) / fx, cx / fx) + 0.15 * width / fx  # the Jacobian's clamp limits
    ty = max((height - cy) / fy, cy / fy) + 0.15 * height / fy
    j2 = (fx * fx * (1 + tx * tx) + fy * fy * (1 + ty * ty)) / (zs * zs)  # ≥ ‖J‖²
    smax = scales.abs().amax(dim=1)
    r = 3.33 * torch.sqrt(j2 * smax * smax + eps2d) + 2.0  # ≥ the radius (with rounding slack)
    u = fx * p[:, 0] / zs + cx
    v = fy * p[:, 1] / zs + cy
    ok &= (u + r > 0) & (u - r < width) & (v + r > 0) & (v - r < height)
    return torch.nonzero(ok).flatten()
