"""Incremental 3D Gaussian Splatting mapping from RGB-D (or LiDAR-depth) frames with TF poses.

``frames`` (bag → posed RGB-D frames), ``keyframes`` (selection), ``seeding`` (new Gaussians where the
map does not explain a frame), ``optimizer`` (sliding window), ``densify`` (clone/split/prune/cap),
``virtual_views`` (GS-Share's virtual-image enhancement), ``params`` (torch working copy ⇄
GaussianMap), ``metrics``, and ``mapper`` (:class:`IncrementalMapper`, which ties them together).
"""

from .frames import Frame, FrameStats, read_frames
from .mapper import IncrementalMapper, MapperStats
from .mapper_config import MapperConfig

__all__ = ["Frame", "FrameStats", "IncrementalMapper", "MapperConfig", "MapperStats", "read_frames"]
