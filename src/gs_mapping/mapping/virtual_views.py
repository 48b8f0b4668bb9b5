"""GS-Share's virtual-image enhancement.

Besides the real keyframes, the mapper supervises views displaced sideways from the trajectory
(the camera's x axis, e.g. ±1 m and ±2 m: the neighbouring lanes), where a map fitted only to the
driven path degrades first. Their targets come from measurement, not from the map itself: the RGB-D
points of the newest keyframe *and of the keyframes before it* are reprojected into the virtual camera
with a z-buffer (nearest point wins). Several sources matter: one keyframe leaves the regions it did
not see (disocclusions, the near field beside the car) empty, and its neighbours often saw them.

Forward warping leaves cracks where the points spread out; through a crack, a background point can win
the z-buffer inside a foreground surface and would teach the map the wrong colour there. So a target
pixel is dropped when a neighbour (3×3) holds a point much nearer than its own (``occlusion_tolerance``):
fewer targets, but the ones kept are safe. Pixels no point reaches carry no target (masked out): the
virtual views constrain geometry and colour where a sensor saw something, never inventing content.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import minimum_filter

from ..camera import Camera
from .optimizer import TrainView


def displaced_pose(T_map_cam: np.ndarray, lateral_m: float) -> np.ndarray:
    shift = np.eye(4)
    shift[0, 3] = lateral_m
    return T_map_cam @ shift


def _as_numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def reproject(
    rgb, depth, src: Camera, dst: Camera, occlusion_tolerance: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward-warp an RGB-D image (or a list of them, with a list of cameras) into ``dst``:
    (rgb, z-depth, mask) at dst's size. ``occlusion_tolerance`` > 0 drops pixels whose depth exceeds
    (1 + tolerance) × the nearest depth in their 3×3 neighbourhood (background seen through a crack)."""
    if isinstance(src, Camera):
        rgb, depth, src = [rgb], [depth], [src]
    pts, cols = [], []
    for r, d, cam in zip(rgb, depth, src, strict=False):
        r, d = _as_numpy(r), _as_numpy(d)
        valid = d > 0
        pts.append(cam.backproject(np.where(valid, d, 0.0))[valid])
        cols.append(r[valid])
    pts, col = np.concatenate(pts), np.concatenate(cols)
    uv, z = dst.project(pts)
    u = np.round(uv[:, 0]).astype(np.int64)
    v = np.round(uv[:, 1]).astype(np.int64)
    ok = (z > 1e-3) & (u >= 0) & (u < dst.width) & (v >= 0) & (v < dst.height)
    u, v, z, col = u[ok], v[ok], z[ok], col[ok]
    # the nearest point of each pixel, chosen explicitly: numpy does not promise which of several
    # writes to one element lands last
    pix = v * dst.width + u
    order = np.lexsort((z, pix))  # by pixel, then nearest first
    first = np.ones(len(order), bool)
    first[1:] = pix[order][1:] != pix[order][:-1]
    keep = order[first]
    out_rgb = np.zeros((dst.height, dst.width, 3), np.float32)
    out_d = np.zeros((dst.height, dst.width), np.float32)
    mask = np.zeros((dst.height, dst.width), bool)
    out_rgb[v[keep], u[keep]] = col[keep]
    out_d[v[keep], u[keep]] = z[keep]
    mask[v[keep], u[keep]] = True
    if occlusion_tolerance > 0:
        near = minimum_filter(np.where(mask, out_d, np.inf), size=3, mode="nearest")
        mask &= out_d <= (1 + occlusion_tolerance) * near
        out_rgb[~mask] = 0
        out_d[~mask] = 0
    return out_rgb, out_d, mask


def virtual_views(
    sources: list[TrainView],
    offsets_m,
    weight: float,
    occlusion_tolerance: float = 0.0,
    min_coverage: float = 0.05,
) -> list[TrainView]:
    """Virtual views displaced by ``offsets_m`` (camera x) from the last of ``sources`` (real views at
    optimisation resolution, oldest first), with targets warped from all of them."""
    ref = sources[-1]
    device = ref.rgb.device
    views = []
    for off in offsets_m:
        dst = ref.camera.with_pose(displaced_pose(ref.camera.T_map_cam, float(off)))
        r, d, m = reproject(
            [s.rgb for s in sources],
            [s.depth for s in sources],
            [s.camera for s in sources],
            dst,
            occlusion_tolerance,
        )
        if m.mean() < min_coverage:  # almost nothing seen from there: no useful target
            continue
        views.append(
            TrainView(
                dst,
                torch.as_tensor(r, device=device),
                torch.as_tensor(d, device=device),
                torch.as_tensor(m, device=device),
                weight=weight,
                virtual=True,
            )
        )
    return views
