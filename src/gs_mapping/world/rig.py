"""Sensor rigs: camera and LiDAR mounts in base_link (x forward, y left, z up, on the ground under
the rear-axle centre). Camera names follow nuScenes; optical frames follow REP-103 (z forward,
x right, y down). A ``front`` rig is the front camera alone; ``surround`` is six cameras."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import Camera
from ..errors import GsMappingError


@dataclass(frozen=True)
class Mount:
    name: str
    xyz: tuple[float, float, float]
    yaw_deg: float  # left positive, about base_link z
    pitch_deg: float  # down positive
    hfov_deg: float


MOUNTS = {
    "front": Mount("front", (1.7, 0.0, 1.55), 0.0, 3.0, 70.0),
    "front_left": Mount("front_left", (1.5, 0.5, 1.55), 55.0, 3.0, 70.0),
    "front_right": Mount("front_right", (1.5, -0.5, 1.55), -55.0, 3.0, 70.0),
    "back_left": Mount("back_left", (1.0, 0.5, 1.55), 110.0, 3.0, 70.0),
    "back_right": Mount("back_right", (1.0, -0.5, 1.55), -110.0, 3.0, 70.0),
    "back": Mount("back", (0.0, 0.0, 1.55), 180.0, 3.0, 110.0),
}
RIGS = {
    "front": ["front"],
    "surround": ["front", "front_left", "front_right", "back", "back_left", "back_right"],
}
LIDAR_XYZ = (0.9, 0.0, 1.9)  # lidar_link: axes parallel to base_link


def optical_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """R_base_optical: columns are the optical x (right), y (down), z (forward) axes in base_link."""
    psi, th = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    f = np.array([np.cos(psi), np.sin(psi), 0.0])
    right = np.array([np.sin(psi), -np.cos(psi), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    fwd = np.cos(th) * f + np.sin(th) * down
    dn = np.cos(th) * down - np.sin(th) * f
    return np.stack([right, dn, fwd], axis=1)


def mount_transform(m: Mount) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = optical_rotation(m.yaw_deg, m.pitch_deg)
    T[:3, 3] = m.xyz
    return T


def lidar_transform() -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = LIDAR_XYZ
    return T


def rig_cameras(rig: str, width: int, height: int) -> list[Camera]:
    """Cameras of a rig with ``T_map_cam`` = T_base_cam (the extrinsic); frame ``<name>_optical_frame``."""
    if rig not in RIGS:
        raise GsMappingError(f"unknown rig {rig!r}; choose one of {', '.join(RIGS)}")
    out = []
    for name in RIGS[rig]:
        m = MOUNTS[name]
        f = (width / 2) / np.tan(np.deg2rad(m.hfov_deg) / 2)
        K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])
        out.append(Camera(K, width, height, mount_transform(m), f"{name}_optical_frame"))
    return out
