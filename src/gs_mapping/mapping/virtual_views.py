"""GS-Share's virtual-image enhancement.

Besides the real keyframes, the mapper supervises views displaced sideways from the trajectory
(the camera's x axis, e.g. ±1 m: the neighbouring lane), where a map fitted only to the driven path
degrades first. Their targets come from measurement, not from the map itself: the keyframe's RGB-D
points are reprojected into the virtual camera with a z-buffer (nearest point wins). Pixels no point
reaches carry no target (masked out), so the virtual views constrain geometry and colour where the
sensor saw something, without inventing content where it did not.
"""
from __future__ import annotations

import numpy as np
import torch

from ..camera import Camera
from .optimizer import TrainView, scaled_camera


def displaced_pose(T_map_cam: np.ndarray, lateral_m: float) -> np.ndarray:
    shift = np.eye(4)
    shift[0, 3] = lateral_m
    return T_map_cam @ shift


def reproject(rgb: np.ndarray, depth: np.ndarray, src: Camera, dst: Camera
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward-warp an RGB-D image from ``src`` into ``dst``: (rgb, z-depth, mask) at dst's size."""
    valid = depth > 0
    pts = src.backproject(np.where(valid, depth, 0.0))[valid]
    col = rgb[valid]
    uv, z = dst.project(pts)
    u = np.round(uv[:, 0]).astype(np.int64)
    v = np.round(uv[:, 1]).astype(np.int64)
    ok = (z > 1e-3) & (u >= 0) & (u < dst.width) & (v >= 0) & (v < dst.height)
    u, v, z, col = u[ok], v[ok], z[ok], col[ok]
    order = np.argsort(-z, kind="stable")  # far first, so the nearest point is written last
    out_rgb = np.zeros((dst.height, dst.width, 3), np.float32)
    out_d = np.zeros((dst.height, dst.width), np.float32)
    mask = np.zeros((dst.height, dst.width), bool)
    out_rgb[v[order], u[order]] = col[order]
    out_d[v[order], u[order]] = z[order]
    mask[v[order], u[order]] = True
    return out_rgb, out_d, mask


def virtual_views(rgb: np.ndarray, depth: np.ndarray, camera: Camera, offsets_m, scale: float,
                  weight: float, device="cpu") -> list[TrainView]:
    views = []
    for off in offsets_m:
        dst = scaled_camera(camera.with_pose(displaced_pose(camera.T_map_cam, float(off))), scale)
        r, d, m = reproject(rgb, depth, camera, dst)
        if m.mean() < 0.05:  # almost nothing seen from there: no useful target
            continue
        views.append(TrainView(dst, torch.as_tensor(r, device=device), torch.as_tensor(d, device=device),
                               torch.as_tensor(m, device=device), weight=weight, virtual=True))
    return views
