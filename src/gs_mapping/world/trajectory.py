"""The vehicle's drive through a world: smooth poses along the route and per-frame sensor data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..camera import Camera
from .rig import lidar_transform, rig_cameras
from .roads import MapElement
from .world import World, WorldError

START_MARGIN = 40.0  # metres of road behind the first pose (so the back camera and GT see road)
END_MARGIN = 40.0


def route_length(frames: int, rate_hz: float, speed: float) -> float:
    """Metres of road a drive of ``frames`` frames at ``rate_hz`` and ``speed`` m/s needs (its world's
    length: the margins behind and ahead included); inf where it overflows."""
    with np.errstate(over="ignore"):
        return (
            float(np.float64(speed) * (frames - 1) / np.float64(rate_hz)) + START_MARGIN + END_MARGIN + 20.0
        )


class Trajectory:
    """Constant-speed drive along the world's lane-centre route; base_link on the ground (z = 0)."""

    def __init__(self, world: World, speed: float = 8.0):
        if not (0 < speed < 60):
            raise WorldError(f"speed must be in (0, 60) m/s, got {speed}")
        pts, _ = world.route
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        self.arc = np.concatenate([[0.0], np.cumsum(seg)])
        self.pts = pts
        # heading from central differences of the (smooth) path, unwrapped so it interpolates
        d = np.gradient(pts, axis=0)
        self.heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
        self.speed = float(speed)

    @property
    def duration(self) -> float:
        return max(0.0, (self.arc[-1] - START_MARGIN - END_MARGIN) / self.speed)

    def pose(self, t: float) -> np.ndarray:
        """T_map_base (4×4) at ``t`` seconds after the start."""
        a = START_MARGIN + self.speed * t
        x = np.interp(a, self.arc, self.pts[:, 0])
        y = np.interp(a, self.arc, self.pts[:, 1])
        h = np.interp(a, self.arc, self.heading)
        T = np.eye(4)
        T[:2, :2] = [[np.cos(h), -np.sin(h)], [np.sin(h), np.cos(h)]]
        T[:2, 3] = x, y
        return T


@dataclass
class Frame:
    index: int
    stamp_ns: int
    T_map_base: np.ndarray
    images: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name → (rgb, depth)
    lidar: np.ndarray | None = None  # (N, 4), lidar_link
    lanes: list[MapElement] = field(default_factory=list)  # base_link, clipped


class Drive:
    """A seeded drive: world + rig + timing. Iterating yields :class:`Frame` objects in time order.

    ``Drive.make(seed, frames, rig, size)`` builds a world just long enough for the drive.
    """

    START_NS = 1_700_000_000 * 1_000_000_000  # fixed epoch so bags are byte-identical per seed

    def __init__(
        self,
        world: World,
        frames: int,
        rig: str = "front",
        size: tuple[int, int] = (640, 360),
        rate_hz: float = 10.0,
        speed: float = 8.0,
        lidar: bool = False,
        bev_range: tuple = (30.0, 15.0),  # (half sizes, or (lo, hi) pairs: World.elements_in_ego)
        supersample: int = 1,
    ):
        if frames < 1:
            raise WorldError(f"frames must be ≥ 1, got {frames}")
        if not (0 < rate_hz <= 1000):
            raise WorldError(f"rate must be in (0, 1000] Hz, got {rate_hz}")
        self.world = world
        self.frames = int(frames)
        self.cameras: list[Camera] = rig_cameras(rig, *size)
        self.rig = rig
        self.rate_hz = float(rate_hz)
        self.trajectory = Trajectory(world, speed)
        self.with_lidar = lidar
        self.bev_range = bev_range
        if not 1 <= int(supersample) <= 8:
            raise WorldError(f"supersample must be in 1..8, got {supersample}")
        self.supersample = int(supersample)
        if (frames - 1) / rate_hz > self.trajectory.duration + 1e-9:
            raise WorldError(
                f"the route is {self.trajectory.duration:.1f} s long at {speed} m/s, "
                f"too short for {frames} frames at {rate_hz} Hz; generate a longer world"
            )

    @staticmethod
    def make(
        seed: int,
        frames: int,
        rig: str = "front",
        size: tuple[int, int] = (640, 360),
        rate_hz: float = 10.0,
        speed: float = 8.0,
        lidar: bool = False,
        bev_range: tuple = (30.0, 15.0),  # (half sizes, or (lo, hi) pairs: World.elements_in_ego)
        supersample: int = 1,
    ) -> Drive:
        if frames < 1:
            raise WorldError(f"frames must be ≥ 1, got {frames}")
        world = World.generate(seed, route_length(frames, rate_hz, speed))
        return Drive(world, frames, rig, size, rate_hz, speed, lidar, bev_range, supersample)

    def stamp_ns(self, index: int) -> int:
        return self.START_NS + int(round(index * 1e9 / self.rate_hz))

    def pose(self, index: int, lateral: float = 0.0) -> np.ndarray:
        """T_map_base of frame ``index``; ``lateral`` metres to the left (negative: right) of the driven
        path, for extrapolated views the vehicle never took."""
        T = self.trajectory.pose(index / self.rate_hz)
        T[:3, 3] += lateral * T[:3, 1]
        return T

    def frame(self, index: int) -> Frame:
        T = self.pose(index)
        fr = Frame(index, self.stamp_ns(index), T)
        for cam in self.cameras:
            fr.images[cam.frame_id.removesuffix("_optical_frame")] = self.world.render(
                cam.with_pose(T @ cam.T_map_cam), supersample=self.supersample
            )
        if self.with_lidar:
            fr.lidar = self.world.lidar(T @ lidar_transform())
        fr.lanes = self.world.elements_in_ego(T, self.bev_range)
        return fr

    def __len__(self) -> int:
        return self.frames

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.frames):
            yield self.frame(i)
