"""Depth from another sensor, in the colour camera: unregistered depth images and LiDAR clouds.

A depth camera that is not aligned to colour (RealSense without ``align_depth``, ZED's or OAK's
stereo depth, Kinect's ``depth/image_raw``) has its own intrinsics and optical frame. Each valid depth
pixel is lifted to 3D with the depth camera's K, moved into the colour camera with
``T_color_depth`` (from TF at the image stamps) and projected with the colour K. Each depth pixel
covers the colour pixels between the projections of its two opposite corners (as librealsense's
``align`` does), so equal or coarser depth leaves no cracks; where several depth pixels land on one
colour pixel the nearest wins (z-buffer), so background seen through a foreground edge from the depth
camera's viewpoint does not bleed into the colour view: occlusion is handled. Colour pixels no depth
pixel reaches stay invalid (0).

LiDAR points (``cloud_to_depth``) are single points: one colour pixel each, nearest wins. Returns
nearer than ``MIN_LIDAR_RANGE_M`` to the sensor are no measurement and dropped. A LiDAR beside the
camera sees surfaces the camera does not (the wall just past a board's edge), and its beams are
sparser than the camera's pixels, so such a return seldom has a nearer one on its own pixel: the
returns the camera cannot see are found from the surface the LiDAR's own neighbouring beams span and
dropped (:mod:`.lidar_visibility`; a window of pixels cannot tell them: a 16-ring LiDAR's rings lie
tens of pixels apart, a dense cloud's far ground steps in depth between neighbouring rows). The
points come here already deskewed by their own times where the cloud has them (:mod:`.deskew`).
"""

from __future__ import annotations

import logging

import numpy as np

from ..say_once import say_once
from .lidar_visibility import MAX_SENSOR_OFFSET_M, hidden_returns

log = logging.getLogger(__name__)

# colour pixels per axis one depth pixel may cover, beyond its cameras' focal ratio (a pixel seen at a
# grazing angle projects to a long box: bounded, not smeared over the image)
_MAX_FOOTPRINT = 4

# a return nearer than this to the LiDAR (in its own frame) is no measurement: Ouster's ROS 1 driver,
# ros2_ouster and older ouster-ros write a beam with no return as x = y = z = 0 (or its beam origin,
# millimetres from it), and no LiDAR ranges under ~0.1 m
MIN_LIDAR_RANGE_M = 0.1


def _zbuffer(flat_index: np.ndarray, z: np.ndarray, size: int) -> np.ndarray:
    """Nearest z per pixel; +inf where none."""
    out = np.full(size, np.inf, np.float32)
    np.minimum.at(out, flat_index, z.astype(np.float32))  # unbuffered: repeated pixels keep the minimum
    return out


def register_depth(
    depth_m: np.ndarray,
    K_depth: np.ndarray,
    T_color_depth: np.ndarray,
    K_color: np.ndarray,
    color_size: tuple[int, int],
) -> np.ndarray:
    """Depth (H_d, W_d) metres of the depth camera (0/NaN invalid) → float32 (H, W) z-depth in the
    colour camera of ``color_size = (W, H)``, 0 where invalid.

    ``T_color_depth`` maps points in the depth optical frame into the colour optical frame (4x4)."""
    w, h = int(color_size[0]), int(color_size[1])
    d = np.asarray(depth_m, np.float64)
    v, u = np.nonzero(np.isfinite(d) & (d > 0))
    z = d[v, u]
    Kd = np.asarray(K_depth, np.float64)
    # pixel centres at integer coordinates (ROS CameraInfo / OpenCV convention); corners at ±0.5
    corners = []
    R, t = np.asarray(T_color_depth, np.float64)[:3, :3], np.asarray(T_color_depth, np.float64)[:3, 3]
    Kc = np.asarray(K_color, np.float64)
    for du in (-0.5, 0.5):
        x = (u + du - Kd[0, 2]) / Kd[0, 0] * z
        y = (v + du - Kd[1, 2]) / Kd[1, 1] * z
        p = np.stack([x, y, z], axis=1) @ R.T + t
        with np.errstate(divide="ignore", invalid="ignore"):
            cu = Kc[0, 0] * p[:, 0] / p[:, 2] + Kc[0, 2]
            cv = Kc[1, 1] * p[:, 1] / p[:, 2] + Kc[1, 2]
        corners.append((cu, cv, p[:, 2]))
    (u0, v0, z0), (u1, v1, z1) = corners
    zc = 0.5 * (z0 + z1)
    ok = (z0 > 0) & (z1 > 0) & np.isfinite(u0) & np.isfinite(u1) & np.isfinite(v0) & np.isfinite(v1)
    # integer colour pixels whose centres lie inside the projected corner box
    lo_u = np.ceil(np.minimum(u0, u1)[ok]).astype(np.int64)
    hi_u = np.floor(np.maximum(u0, u1)[ok]).astype(np.int64)
    lo_v = np.ceil(np.minimum(v0, v1)[ok]).astype(np.int64)
    hi_v = np.floor(np.maximum(v0, v1)[ok]).astype(np.int64)
    # a box that holds no pixel centre (depth finer than colour) still marks its nearest pixel
    cu_ = np.rint(0.5 * (u0 + u1)[ok]).astype(np.int64)
    cv_ = np.rint(0.5 * (v0 + v1)[ok]).astype(np.int64)
    empty_u, empty_v = hi_u < lo_u, hi_v < lo_v
    lo_u[empty_u], hi_u[empty_u] = cu_[empty_u], cu_[empty_u]
    lo_v[empty_v], hi_v[empty_v] = cv_[empty_v], cv_[empty_v]
    # (depth 5x coarser than colour, as a D435's 480x270 depth beside 1080p colour: 5-6 pixels a side)
    cap = _MAX_FOOTPRINT + int(np.ceil(max(Kc[0, 0] / Kd[0, 0], Kc[1, 1] / Kd[1, 1], 1.0))) - 1
    nu = np.clip(hi_u - lo_u + 1, 1, cap)
    nv = np.clip(hi_v - lo_v + 1, 1, cap)
    zk = zc[ok].astype(np.float32)
    # expand each depth pixel into the colour pixels it covers (mostly one): no per-offset passes
    counts = nu * nv
    owner = np.repeat(np.arange(len(counts)), counts)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    pu = lo_u[owner] + k % nu[owner]
    pv = lo_v[owner] + k // nu[owner]
    m = (pu >= 0) & (pu < w) & (pv >= 0) & (pv < h)
    out = _zbuffer(pv[m] * w + pu[m], zk[owner[m]], w * h).reshape(h, w)
    out[~np.isfinite(out)] = 0.0
    return out


def cloud_to_depth(
    xyz: np.ndarray,
    T_cam_cloud: np.ndarray,
    K: np.ndarray,
    size: tuple[int, int],
    frame: str = "",
    world_frame: bool = False,
) -> np.ndarray:
    """LiDAR points (N, 3) in the cloud's frame (its origin the sensor's) → a sparse float32 (H, W)
    z-depth image of the camera (``size = (W, H)``; 0 = no point), nearest point per pixel; returns
    nearer than ``MIN_LIDAR_RANGE_M`` dropped (Ouster's zeros for no return), and those the camera
    cannot see (:func:`~.lidar_visibility.hidden_returns`), unless the cloud's ``frame`` is a world
    frame, not the sensor's (said once): ``world_frame`` (TF has the camera moving in it:
    :func:`~gs_mapping.tf.is_world_frame`), or it lies farther than ``MAX_SENSOR_OFFSET_M`` from
    the camera."""
    w, h = int(size[0]), int(size[1])
    p = np.asarray(xyz, np.float64).reshape(-1, 3)
    # in the sensor's frame, before moving: a no-return zero is at the LiDAR's origin, not the camera's
    p = p[np.all(np.isfinite(p), axis=1) & (np.einsum("ij,ij->i", p, p) >= MIN_LIDAR_RANGE_M**2)]
    T = np.asarray(T_cam_cloud, np.float64)
    q = p @ T[:3, :3].T + T[:3, 3]
    front = q[:, 2] > 1e-6
    offset = float(np.linalg.norm(T[:3, 3]))
    if offset <= MAX_SENSOR_OFFSET_M and not world_frame:
        front &= ~hidden_returns(p, T, K, (w, h))
    else:
        why = (
            "the camera moves in it (TF)"
            if world_frame
            else f"it lies {offset:.0f} m from the camera (over {MAX_SENSOR_OFFSET_M:.0f} m)"
        )
        say_once(
            log,
            f"cloud frame {frame!r} is a world frame, not the LiDAR's: {why}; its returns the camera "
            "cannot see are kept (said once)",
            key=("world frame", frame),
        )
    p, z = q[front], q[front, 2]
    Kc = np.asarray(K, np.float64)
    # pixels as floats first: a return just in front of the camera plane lands far outside the image,
    # past what an integer holds
    u = np.rint(Kc[0, 0] * p[:, 0] / z + Kc[0, 2])
    v = np.rint(Kc[1, 1] * p[:, 1] / z + Kc[1, 2])
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v = u[inside].astype(np.int64), v[inside].astype(np.int64)
    out = _zbuffer(v * w + u, z[inside].astype(np.float32), w * h).reshape(h, w)
    out[~np.isfinite(out)] = 0.0
    return out
