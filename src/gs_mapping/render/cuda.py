"""CUDA backend: ``gsplat.rasterization`` (imported lazily, only when this backend runs).

NOTE: written against gsplat 1.5's public API (rasterization(means, quats[wxyz], scales, opacities,
colors, viewmats, Ks, width, height, near_plane, far_plane, radius_clip, eps2d, sh_degree, packed,
tile_size, backgrounds, render_mode, ..., rasterize_mode)) but NOT run in this repository's CI: gsplat
needs a CUDA GPU and cannot be installed on the development machines. Check it with
``test/test_render_cuda.py`` where a GPU is available.
"""

from __future__ import annotations

import torch


def gsplat_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA extension build
        return False
    return True


def rasterize_gsplat(
    means,
    quats_xyzw,
    scales,
    opacities,
    sh,
    viewmat,
    Kp,
    width,
    height,
    *,
    sh_degree,
    background,
    near,
    far,
    eps2d,
):
    """Same arguments as the CPU path (``Kp``: gsplat pixel convention). Returns colour (H, W, 3),
    depth "ED" (H, W), alpha (H, W) and gsplat's meta dict, on the GPU."""
    import gsplat

    dev = torch.device("cuda")

    def cu(x):
        return x.to(device=dev, dtype=torch.float32)

    quats_wxyz = torch.cat([quats_xyzw[:, 3:4], quats_xyzw[:, :3]], dim=1)
    bg = None if background is None else cu(background).reshape(1, 3)
    colors, alphas, meta = gsplat.rasterization(
        cu(means),
        cu(quats_wxyz),
        cu(scales),
        cu(opacities),
        cu(sh),
        cu(viewmat)[None],
        cu(Kp)[None],
        width,
        height,
        near_plane=near,
        far_plane=far,
        eps2d=eps2d,
        sh_degree=sh_degree,
        packed=False,
        tile_size=16,
        backgrounds=bg,
        render_mode="RGB+ED",
        rasterize_mode="classic",
    )
    return colors[0, ..., :3], colors[0, ..., 3], alphas[0, ..., 0], meta
