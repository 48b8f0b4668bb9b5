"""Colour-camera self-calibration for RGB-D sensors whose depth is not registered to colour.

Some RGB-D recordings (7-Scenes among them: "registered to colour only approximately") give depth
in the depth camera's frame and poses for that camera, with the colour image from a second camera
whose intrinsics and offset are unknown (the CameraInfo repeats the depth camera's). Colour then
disagrees with geometry from view to view, and no single map can fit all views.

The fix estimates the colour camera relative to the depth camera (focal scale, principal point
shift, translation; rotation taken as identity) by photometric consistency: points back-projected
from one frame's depth must have the same colour when projected, through the candidate colour
camera, into other frames. Only mapping frames are used. Each frame is then registered: its camera
becomes the colour camera and its depth is re-projected into it (z-buffer), so seeding, optimisation
and evaluation all see one consistent RGB-D camera.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..camera import Camera
from .frames import Frame
from .virtual_views import reproject

log = logging.getLogger(__name__)


@dataclass
class ColorCalibration:
    focal_scale: float = 1.0
    dcx: float = 0.0
    dcy: float = 0.0
    t_depth_color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cost_before: float = float("nan")
    cost_after: float = float("nan")
    # the calibration frames' (fx, fy): dcx, dcy are in their pixels, and a camera binned or scaled
    # since (a driver restarted at half size) takes the shift scaled alike (None: as given)
    ref_focal: tuple[float, float] | None = None

    def color_camera(self, depth_camera: Camera) -> Camera:
        K = depth_camera.K.copy()
        sx, sy = (K[0, 0] / self.ref_focal[0], K[1, 1] / self.ref_focal[1]) if self.ref_focal else (1.0, 1.0)
        K[0, 0] *= self.focal_scale
        K[1, 1] *= self.focal_scale
        K[0, 2] += self.dcx * sx
        K[1, 2] += self.dcy * sy
        T = np.eye(4)
        T[:3, 3] = self.t_depth_color
        return Camera(
            K, depth_camera.width, depth_camera.height, depth_camera.T_map_cam @ T, depth_camera.frame_id
        )

    def register(self, frame: Frame) -> Frame:
        """The frame seen from the colour camera, with depth re-projected into it."""
        cam = self.color_camera(frame.camera)
        _, depth, mask = reproject(frame.rgb, frame.depth, frame.camera, cam)
        return Frame(
            frame.rgb, np.where(mask, depth, 0.0).astype(np.float32), cam, frame.stamp_ns, frame.index
        )


def _bilinear(img: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    u, v = uv[:, 0], uv[:, 1]
    ok = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    u0 = np.clip(np.floor(u).astype(int), 0, w - 2)
    v0 = np.clip(np.floor(v).astype(int), 0, h - 2)
    a, b = np.clip(u - u0, 0, 1)[:, None], np.clip(v - v0, 0, 1)[:, None]
    out = (
        (1 - a) * (1 - b) * img[v0, u0]
        + a * (1 - b) * img[v0, u0 + 1]
        + (1 - a) * b * img[v0 + 1, u0]
        + a * b * img[v0 + 1, u0 + 1]
    )
    return out, ok


def photometric_cost(frames: list[Frame], pairs, calib: ColorCalibration, step: int | None = None) -> float:
    """Mean absolute colour difference of depth points seen in both frames of each pair."""
    if step is None:  # about 3,000 sampled depth pixels per frame (every 5th pixel at 320x240)
        step = max(1, int((frames[0].depth.size / 3000) ** 0.5))
    errs = []
    for a, b in pairs:
        A, B = frames[a], frames[b]
        sub = np.zeros_like(A.depth)
        sub[::step, ::step] = A.depth[::step, ::step]
        pts = A.camera.backproject(sub)[sub > 0]
        cols, oks = [], []
        for F in (A, B):
            uv, z = calib.color_camera(F.camera).project(pts)
            c, ok = _bilinear(F.rgb, uv)
            cols.append(c)
            oks.append(ok & (z > 0))
        ok = oks[0] & oks[1]
        if ok.sum() > 100:
            errs.append(float(np.mean(np.abs(cols[0][ok] - cols[1][ok]))))
    return float(np.mean(errs)) if errs else float("nan")


# An RGB-D sensor's colour camera sits centimetres from its depth camera with a similar field of
# view. The photometric cost has degenerate minima outside that: a focal scale → 0 sends every point
# to one pixel, whose colours then agree trivially (a scene whose colours change between frames
# fitted focal ×1e-20 and a 2.7 m offset, and every frame was then refused). The fit is kept inside
# these bounds; one that ends at a bound, or no better than the identity, is not taken.
FOCAL_SCALE_BOUNDS = (0.5, 2.0)
MAX_OFFSET_M = 0.3
MAX_PP_SHIFT = 0.25  # of the image's width / height


def estimate_color_calibration(frames: list[Frame], max_pairs: int = 6) -> ColorCalibration:
    """Fit the colour camera to ``frames`` (mapping frames only, in time order); the identity
    (colour taken as registered), with a warning, where no fit within the bounds above improves on it."""
    from scipy.optimize import minimize

    n = len(frames)
    gap = max(1, n // 2)
    pairs = [(i, i + gap) for i in range(0, n - gap, max(1, (n - gap) // max_pairs))][:max_pairs]
    if not pairs:
        return ColorCalibration()

    def calib(x):
        return ColorCalibration(
            float(np.exp(x[0])), float(x[1]), float(x[2]), (float(x[3]), float(x[4]), 0.0)
        )

    w, h = frames[0].camera.width, frames[0].camera.height
    lo = np.array(
        [np.log(FOCAL_SCALE_BOUNDS[0]), -MAX_PP_SHIFT * w, -MAX_PP_SHIFT * h, -MAX_OFFSET_M, -MAX_OFFSET_M]
    )
    hi = -lo
    hi[0] = np.log(FOCAL_SCALE_BOUNDS[1])

    def cost(x):
        if (x < lo).any() or (x > hi).any():
            return np.inf
        return photometric_cost(frames, pairs, calib(x))

    before = cost(np.zeros(5))
    best = None
    for s0 in (0.85, 0.9, 1.0):  # a coarse start: Kinect-type colour cameras are wider than depth
        r = minimize(
            cost,
            np.array([np.log(s0), 0, 0, 0, 0]),
            method="Nelder-Mead",
            options={"xatol": 1e-3, "fatol": 1e-5, "maxiter": 400, "initial_simplex": None},
        )
        if best is None or r.fun < best.fun:
            best = r
    at_bound = np.minimum(best.x - lo, hi - best.x) < 0.02 * (hi - lo)
    if not best.fun < before or at_bound.any():
        log.warning(
            f"colour camera: no calibration found within focal ×{FOCAL_SCALE_BOUNDS[0]}–{FOCAL_SCALE_BOUNDS[1]}, "
            f"principal point ±{MAX_PP_SHIFT:.0%} of the image, offset ±{MAX_OFFSET_M} m that makes the "
            f"frames' colours agree better (inconsistency {before:.4f} → {best.fun:.4f}): colour taken "
            "as registered to depth (are the scene's colours steady between frames?)"
        )
        return ColorCalibration(cost_before=before, cost_after=before)
    out = calib(best.x)
    out.cost_before, out.cost_after = before, float(best.fun)
    out.ref_focal = (float(frames[0].camera.K[0, 0]), float(frames[0].camera.K[1, 1]))
    log.info(
        f"colour camera: focal ×{out.focal_scale:.3f}, principal point {out.dcx:+.1f}/{out.dcy:+.1f} px, offset {np.round(out.t_depth_color, 3).tolist()} m; photometric inconsistency {before:.4f} → {best.fun:.4f}",
    )
    return out
