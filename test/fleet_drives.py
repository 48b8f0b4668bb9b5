"""Recorded map streams of tiny mapper runs through one procedural world (fleet tests and bench).

Each vehicle drives the same world's route from its own start time (so their maps overlap where
their drives do), a tiny front camera, a few CPU optimiser iterations per keyframe. What it records
is exactly what mapper_node publishes: a first snapshot, then one delta per keyframe from the
map's change record (``MapSender.update``), numbered from ``first_seq``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gs_map_share.delta import MapSender
from gs_map_share.quantize import QuantParams
from gs_mapping.camera import Camera
from gs_mapping.mapping import MapperConfig
from gs_mapping.mapping.frames import Frame
from gs_mapping.mapping.mapper import IncrementalMapper
from gs_mapping.world import Drive, World
from gs_mapping.world.rig import rig_cameras

FLEET_QUALITY = 3  # mapper_node.quality and map_server_node.quality default


@dataclass
class Recording:
    """One vehicle's published stream: containers in publication order (snapshot first)."""

    map_id: int
    containers: list[bytes] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)  # T_map_base per frame


def tiny_config(iterations: int = 2) -> MapperConfig:
    cfg = MapperConfig()
    cfg.device = cfg.backend = "cpu"
    cfg.keyframe.max_gap = 1
    cfg.optim.iterations = cfg.optim.first_iterations = iterations
    cfg.optim.refine_iterations = 0
    cfg.seeding.stride = 3
    cfg.holdout_every = 0
    cfg.max_depth_m = cfg.seeding.max_depth_m = 25.0
    # levels of detail at street scale: a tiny camera seeds ~100 Gaussians a frame, metres apart, so
    # the indoor 0.3 m level-0 voxel would put every one of them on level 0
    cfg.levels.base_voxel_m = 4.0
    return cfg


def fleet_world(seed: int = 3, length: float = 160.0) -> World:
    return World.generate(seed, length)


def record_drive(
    world: World,
    map_id: int,
    start_s: float,
    frames: int,
    *,
    size: tuple[int, int] = (40, 24),
    step_s: float = 0.5,
    params: QuantParams | None = None,
    first_seq: int | None = None,
    iterations: int = 2,
) -> Recording:
    """Map ``frames`` camera frames ``step_s`` apart from ``start_s`` seconds into the route."""
    drive = Drive(world, 1, size=size)
    cam0: Camera = rig_cameras("front", *size)[0]
    mapper = IncrementalMapper(tiny_config(iterations))
    sender = MapSender(
        params or QuantParams.from_quality(FLEET_QUALITY),
        map_id=map_id,
        first_seq=first_seq if first_seq is not None else 1000 * map_id,
        sh_degree=mapper.gmap.sh_degree,
        tile_size=mapper.gmap.tile_size,
    )
    rec = Recording(map_id, [sender.snapshot()])
    for i in range(frames):
        T = drive.trajectory.pose(start_s + i * step_s)
        cam = cam0.with_pose(T @ cam0.T_map_cam)
        rgb, depth = world.render(cam)
        frame = Frame(rgb.astype(np.float32) / 255.0, np.nan_to_num(depth, nan=0.0), cam, 10**9 * (i + 1), i)
        if mapper.add_frame(frame).is_keyframe:
            changes = mapper.gmap.take_changes()
            if not changes.empty:
                data, _ = sender.update(mapper.gmap, changes)
                rec.containers.append(data)
        rec.poses.append(T)
    return rec


_CACHE: dict = {}


def fleet_recordings(vehicles: int = 4, frames: int = 6) -> list[Recording]:
    """The fleet tests' four vehicles (cached per process): map ids 1..n, starts 1.5 s apart."""
    key = (vehicles, frames)
    if key not in _CACHE:
        world = fleet_world()
        _CACHE[key] = [record_drive(world, k + 1, 1.5 * k, frames) for k in range(vehicles)]
    return _CACHE[key]
