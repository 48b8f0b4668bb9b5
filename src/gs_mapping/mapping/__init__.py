"""Incremental 3D Gaussian Splatting mapping from RGB-D (or LiDAR-depth) frames with TF poses.

``frames`` (bag → posed RGB-D frames), ``keyframes`` (selection), ``seeding`` (new Gaussians where the
map does not explain a frame), ``optimizer`` (sliding window), ``densify`` (clone/split/prune/cap),
``virtual_views`` (GS-Share's virtual-image enhancement), ``params`` (torch working copy ⇄
GaussianMap), ``metrics``, and ``mapper`` (:class:`IncrementalMapper`, which ties them together).

The names below are imported on first use, so the torch-free parts (``mapper_config``, ``frames``,
``keyframes``, ``calibration``) load without torch: the map server, receiver and HD nodes, the
options checks and topic choice need no torch.
"""

from ..lazy_api import lazy_api

_API = {
    "Frame": "frames",
    "FrameStats": "frames",
    "read_frames": "frames",
    "IncrementalMapper": "mapper",
    "MapperStats": "mapper",
    "MapperConfig": "mapper_config",
}
__all__ = sorted(_API)
__getattr__ = lazy_api(__name__, _API)
