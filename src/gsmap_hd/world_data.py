"""Training samples from the procedural driving world (``gs_mapping.world``).

Frame i of a data seed belongs to drive ``i // FRAMES_PER_DRIVE`` (each drive its own world, seeded
from the data seed and the drive number) and is that drive's frame ``i % FRAMES_PER_DRIVE``, taken at
``RATE_HZ`` so consecutive samples are metres apart. Images, intrinsics and extrinsics (base_link ←
optical, the rig's mounts) come from the world's renderer; lanes are the world's ego-frame GT.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .data import Sample

FRAMES_PER_DRIVE = 24
RATE_HZ = 2.0  # 4 m between frames at 8 m/s


@lru_cache(maxsize=4)
def _drive(seed: int, rig: str, size: tuple[int, int], bev_range=(30.0, 15.0)):
    """One drive of the data (cached: its frames are drawn one by one); ``bev_range``: the GT's
    patch, as :meth:`gs_mapping.world.World.elements_in_ego` takes it."""
    from gs_mapping.world import Drive

    return Drive.make(seed, FRAMES_PER_DRIVE, rig=rig, size=size, rate_hz=RATE_HZ, bev_range=bev_range)


def world_sample(
    data_seed: int,
    index: int,
    rig: str,
    size: tuple[int, int],
    x_range=(-30.0, 30.0),
    y_range=(-15.0, 15.0),
) -> Sample:
    """``size`` is (width, height) of the rendered images; the lanes cover the patch ``x_range`` x
    ``y_range`` (metres, base_link; the model's patch)."""
    # the world clips its ground truth to the patch itself (x −45…30 m: not to +45)
    patch = (tuple(float(v) for v in x_range), tuple(float(v) for v in y_range))
    drive = _drive(data_seed * 100_003 + index // FRAMES_PER_DRIVE, rig, tuple(size), patch)
    fr = drive.frame(index % FRAMES_PER_DRIVE)
    ims, Ks, Ts = [], [], []
    for cam in drive.cameras:
        rgb, _ = fr.images[cam.frame_id.removesuffix("_optical_frame")]
        ims.append(np.asarray(rgb, np.uint8))
        Ks.append(cam.K)
        Ts.append(cam.T_map_cam)  # the rig's camera pose relative to base_link
    lanes = [(int(e.cls), np.asarray(e.pts, np.float64)) for e in fr.lanes]
    return Sample(np.stack(ims), np.stack(Ks), np.stack(Ts), lanes)
