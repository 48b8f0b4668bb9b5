"""A seeded procedural driving world with ground truth, rendered by ray casting.

See ``docs/world.md``. Main entry points: :class:`World` (generate, render any camera, LiDAR, map
ground truth), :class:`Drive` (a vehicle drive with a camera rig), :func:`record.write_bag`.
"""

from .roads import BOUNDARY, CLASS_NAMES, DIVIDER, PED_CROSSING, MapElement
from .trajectory import Drive, Frame, Trajectory
from .world import World, WorldError

__all__ = [
    "World",
    "WorldError",
    "Drive",
    "Frame",
    "Trajectory",
    "MapElement",
    "DIVIDER",
    "PED_CROSSING",
    "BOUNDARY",
    "CLASS_NAMES",
]
