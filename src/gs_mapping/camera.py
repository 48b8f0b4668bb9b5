"""A pinhole camera: intrinsics, image size and pose. Shared by the world, the renderer and the mapper.

``T_map_cam`` is the camera pose (maps points in the optical frame into the map frame); the optical
frame follows REP-103: z forward, x right, y down. Pixel centres are at integer coordinates
(u = fx * x / z + cx), as in OpenCV and ROS CameraInfo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import GsMappingError


@dataclass
class Camera:
    K: np.ndarray
    width: int
    height: int
    T_map_cam: np.ndarray = field(default_factory=lambda: np.eye(4))
    frame_id: str = "camera_optical_frame"

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, np.float64).reshape(3, 3)
        self.T_map_cam = np.asarray(self.T_map_cam, np.float64).reshape(4, 4)
        if not (np.all(np.isfinite(self.K)) and np.all(np.isfinite(self.T_map_cam))):
            raise GsMappingError(f"camera {self.frame_id}: non-finite intrinsics or pose")
        if self.width <= 0 or self.height <= 0 or self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            raise GsMappingError(
                f"camera {self.frame_id}: invalid size {self.width}x{self.height} "
                f"or focal length fx={self.K[0, 0]}, fy={self.K[1, 1]}"
            )

    @property
    def T_cam_map(self) -> np.ndarray:
        """The view matrix (world → camera)."""
        r = self.T_map_cam[:3, :3]
        out = np.eye(4)
        out[:3, :3] = r.T
        out[:3, 3] = -r.T @ self.T_map_cam[:3, 3]
        return out

    def with_pose(self, T_map_cam: np.ndarray) -> Camera:
        return Camera(self.K.copy(), self.width, self.height, T_map_cam, self.frame_id)

    def project(self, points_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map-frame points (…, 3) → pixel coordinates (…, 2) and depth z (…)."""
        p = np.asarray(points_map, np.float64) @ self.T_cam_map[:3, :3].T + self.T_cam_map[:3, 3]
        z = p[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (p[..., :2] / z[..., None]) * np.diag(self.K)[:2] + self.K[:2, 2]
        return uv, z

    def backproject(self, depth: np.ndarray) -> np.ndarray:
        """A depth image (H, W) of z-depth in metres → (H, W, 3) points in the map frame."""
        h, w = depth.shape
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        x = (u - self.K[0, 2]) / self.K[0, 0] * depth
        y = (v - self.K[1, 2]) / self.K[1, 1] * depth
        pc = np.stack([x, y, depth], axis=-1)
        return pc @ self.T_map_cam[:3, :3].T + self.T_map_cam[:3, 3]
