"""Keyframe selection by motion and view overlap.

Poses are given (TF), so keyframes are about coverage and cost, not tracking: a frame is worth
optimising when the camera moved or turned enough since the last keyframe, or when a noticeable
part of what it sees was not in the last keyframe's view. Overlap is geometric (no render): the last
keyframe's depth points, subsampled, are projected into the new view; the fraction that lands inside
it with positive depth is the overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..camera import Camera
from .mapper_config import KeyframeConfig


def relative_motion(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """Translation (m) and rotation angle (degrees) between two 4×4 poses."""
    rel = np.linalg.inv(T_a) @ T_b
    cos = np.clip((np.trace(rel[:3, :3]) - 1) / 2, -1.0, 1.0)
    return float(np.linalg.norm(rel[:3, 3])), math.degrees(math.acos(cos))


def sample_points(camera: Camera, depth: np.ndarray, step: int = 8) -> np.ndarray:
    """Map-frame points of every ``step``-th valid depth pixel (for overlap tests)."""
    sub = np.zeros_like(depth)
    sub[::step, ::step] = depth[::step, ::step]
    pts = camera.backproject(sub)
    return pts[sub > 0]


def view_overlap(points: np.ndarray, camera: Camera) -> float:
    """Fraction of map-frame points that project inside ``camera``'s image in front of it."""
    if len(points) == 0:
        return 0.0
    uv, z = camera.project(points)
    inside = (
        (z > 0)
        & (uv[:, 0] >= -0.5)
        & (uv[:, 0] < camera.width - 0.5)
        & (uv[:, 1] >= -0.5)
        & (uv[:, 1] < camera.height - 0.5)
    )
    return float(inside.mean())


INVALID_DEPTH = "depth unusable"  # how the reason of a frame skipped for its depth starts


@dataclass
class KeyframeDecision:
    is_keyframe: bool
    reason: str
    translation_m: float = 0.0
    rotation_deg: float = 0.0
    overlap: float = 1.0


class KeyframeSelector:
    def __init__(self, cfg: KeyframeConfig):
        self.cfg = cfg
        self._last_pose: np.ndarray | None = None
        self._last_points: np.ndarray | None = None
        self._since = 0

    def move(self, T_new_old: np.ndarray) -> None:
        """The last keyframe's pose and points in another frame (the map moved by ``T_new_old``)."""
        if self._last_pose is not None:
            self._last_pose = T_new_old @ self._last_pose
        if self._last_points is not None:
            self._last_points = self._last_points @ T_new_old[:3, :3].T + T_new_old[:3, 3]

    def decide(self, camera: Camera, depth: np.ndarray) -> KeyframeDecision:
        """Decide for one mapping frame; a positive decision makes it the new reference."""
        if self._last_pose is None:
            d = KeyframeDecision(True, "first")
        else:
            t, r = relative_motion(self._last_pose, camera.T_map_cam)
            ov = view_overlap(self._last_points, camera)
            self._since += 1
            if t >= self.cfg.min_translation_m:
                reason = "translation"
            elif r >= self.cfg.min_rotation_deg:
                reason = "rotation"
            elif ov < self.cfg.min_overlap:
                reason = "overlap"
            elif self.cfg.max_gap and self._since >= self.cfg.max_gap:
                reason = "gap"
            else:
                reason = ""
            d = KeyframeDecision(bool(reason), reason or "covered", t, r, ov)
        if d.is_keyframe:
            self._last_pose = camera.T_map_cam.copy()
            self._last_points = sample_points(camera, depth)
            self._since = 0
        return d
