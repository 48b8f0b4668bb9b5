"""Write a :class:`~.trajectory.Drive` as a rosbag2 (MCAP): TF, cameras, depth, LiDAR, ground truth.

Topics (see docs/world.md):

- ``/tf`` map→base_link per frame; ``/tf_static`` (latched) base_link→``<cam>_optical_frame`` and
  base_link→``lidar_link``;
- ``/cameras/<name>/image_raw`` (rgb8 Image) or ``/cameras/<name>/image_raw/compressed`` (jpeg),
  ``/cameras/<name>/camera_info``, ``/cameras/<name>/depth`` (32FC1 z-depth in metres, NaN = none);
- ``/lidar/points`` (PointCloud2 x, y, z, intensity float32, frame lidar_link) with ``lidar``;
- ``/ground_truth/lanes`` (MarkerArray, base_link, one LINE_STRIP per element, ns = class name),
  ``/ground_truth/lanes_json`` (String, JSON, base_link), ``/ground_truth/map_json`` (String, JSON,
  latched, the whole map in the map frame, once).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing as mp
import os
import signal
from pathlib import Path

import numpy as np

from ..bag import BagWriter
from ..errors import BagError
from ..geometry import Transform, TransformStamped
from ..output_files import UNWINDING_SIGNALS, os_reason
from .rig import lidar_transform
from .roads import CLASS_NAMES
from .trajectory import Drive

log = logging.getLogger(__name__)

TOPIC_TF, TOPIC_TF_STATIC = "/tf", "/tf_static"
TOPIC_LIDAR = "/lidar/points"
TOPIC_LANES, TOPIC_LANES_JSON, TOPIC_MAP_JSON = (
    "/ground_truth/lanes",
    "/ground_truth/lanes_json",
    "/ground_truth/map_json",
)
MAP_FRAME, BASE_FRAME, LIDAR_FRAME = "map", "base_link", "lidar_link"
# MapTR's colours: divider orange, ped_crossing blue, boundary green
CLASS_RGBA = {0: (1.0, 0.6, 0.0, 1.0), 1: (0.0, 0.4, 1.0, 1.0), 2: (0.0, 0.8, 0.2, 1.0)}
JPEG_QUALITY = 90


def camera_topics(name: str, compressed: bool = False) -> dict[str, str]:
    base = f"/cameras/{name}"
    return {
        "image": f"{base}/image_raw/compressed" if compressed else f"{base}/image_raw",
        "info": f"{base}/camera_info",
        "depth": f"{base}/depth",
    }


def lanes_json(elements, stamp_ns: int, frame_id: str = BASE_FRAME) -> dict:
    """The machine-readable ground-truth frame (the ``gs-mapping hd-eval`` GT frame format)."""
    return {"stamp_ns": int(stamp_ns), "frame_id": frame_id, "vectors": [e.to_json() for e in elements]}


_DRIVE: Drive | None = None  # the drive a forked worker renders (inherited, not pickled)


def _render(index: int):
    return _DRIVE.frame(index)


def _worker_signals() -> None:
    """A forked worker takes the default SIGTERM (the pool's terminate() ends it) and leaves Ctrl-C
    and a hang-up to the parent, which unwinds and terminates the pool. It inherits the CLI's
    handlers, which raised inside the pool's queue lock and could leave the parent waiting on that
    lock for ever; a worker that died of the signal there would too. So it also leaves the parent's
    process group: a signal to the whole group (a terminal's Ctrl-C, a hang-up, ``kill -TERM -PGID``,
    ``timeout``) reaches only the parent, and an idle worker is never killed holding the lock (a
    worker whose parent is gone reads the end of its task pipe and exits)."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for s in {signal.SIGINT, *UNWINDING_SIGNALS} - {signal.SIGTERM}:  # (SIGHUP where it exists)
        signal.signal(s, signal.SIG_IGN)


def frames(drive: Drive, workers: int = 1):
    """The drive's frames in order, rendered by ``workers`` forked processes (1: in this process).

    Rendering is a pure function of the frame index, so the result does not depend on ``workers``."""
    global _DRIVE
    if workers <= 1 or len(drive) < 2 or "fork" not in mp.get_all_start_methods():
        yield from drive
        return
    _DRIVE = drive
    try:
        try:
            pool = mp.get_context("fork").Pool(min(workers, len(drive)), initializer=_worker_signals)
        except OSError as exc:  # (no descriptor or process left for the workers and their pipes)
            # The half-made pool keeps its pipes open for as long as this traceback holds its
            # __init__ frame, and then until collected: the bag's cleanup, which needs descriptors
            # too, would fail. So the traceback goes, and the pool with it, before the error does.
            failed = exc.with_traceback(None)
        else:
            failed = None
        if failed is not None:
            gc.collect()
            raise failed
        with pool:
            yield from pool.imap(_render, range(len(drive)), chunksize=1)
    finally:
        _DRIVE = None


def _named(out: str | Path, rendered):
    """The rendered frames; a failure of the rendering processes names the bag it was for."""
    try:
        yield from rendered
    except OSError as exc:
        raise BagError(f"{out}: cannot render its frames: {os_reason(exc)}") from None


def write_bag(
    drive: Drive,
    out: str | Path,
    overwrite: bool = False,
    compressed: bool = False,
    progress: bool = True,
    workers: int = 1,
) -> dict:
    """Render and write every frame of ``drive`` into the bag directory ``out``; returns a summary.
    ``workers`` > 1 renders frames in that many forked processes (same bytes as 1)."""
    from .. import messages as M
    from ..progress import progress as progress_report

    names = [c.frame_id.removesuffix("_optical_frame") for c in drive.cameras]
    with BagWriter(out, overwrite=overwrite) as bag:
        bag.add_topic(TOPIC_TF_STATIC, M.TF_MESSAGE, latched=True)
        bag.add_topic(TOPIC_MAP_JSON, M.STRING, latched=True)
        bag.add_topic(TOPIC_TF, M.TF_MESSAGE)
        for name in names:
            t = camera_topics(name, compressed)
            bag.add_topic(t["image"], M.COMPRESSED_IMAGE if compressed else M.IMAGE)
            bag.add_topic(t["info"], M.CAMERA_INFO)
            bag.add_topic(t["depth"], M.IMAGE)
        if drive.with_lidar:
            bag.add_topic(TOPIC_LIDAR, M.POINT_CLOUD2)
        bag.add_topic(TOPIC_LANES, M.MARKER_ARRAY)
        bag.add_topic(TOPIC_LANES_JSON, M.STRING)

        t0 = drive.stamp_ns(0)
        static = [
            TransformStamped(BASE_FRAME, cam.frame_id, t0, Transform.from_matrix(cam.T_map_cam))
            for cam in drive.cameras
        ]
        if drive.with_lidar:
            static.append(
                TransformStamped(BASE_FRAME, LIDAR_FRAME, t0, Transform.from_matrix(lidar_transform()))
            )
        bag.write(TOPIC_TF_STATIC, t0, M.transforms_to_tf_message(static))
        world_gt = lanes_json(drive.world.map_elements(), t0, MAP_FRAME)
        world_gt["seed"] = drive.world.seed
        bag.write(TOPIC_MAP_JSON, t0, M.json_to_string_message(world_gt))

        for frame in progress_report(
            _named(out, frames(drive, workers)),
            total=len(drive),
            desc="world",
            unit="frame",
            enabled=progress,
        ):
            ns = frame.stamp_ns
            bag.write(
                TOPIC_TF,
                ns,
                M.transforms_to_tf_message(
                    [TransformStamped(MAP_FRAME, BASE_FRAME, ns, Transform.from_matrix(frame.T_map_base))]
                ),
            )
            for name, cam in zip(names, drive.cameras, strict=False):
                rgb, depth = frame.images[name]
                t = camera_topics(name, compressed)
                bag.write(t["info"], ns, M.intrinsics_to_camera_info(M.CameraIntrinsics.from_camera(cam, ns)))
                if compressed:
                    img = M.numpy_to_compressed_image(rgb, "jpeg", ns, cam.frame_id, quality=JPEG_QUALITY)
                else:
                    img = M.numpy_to_image(rgb, "rgb8", ns, cam.frame_id)
                bag.write(t["image"], ns, img)
                bag.write(t["depth"], ns, M.numpy_to_image(depth, "32FC1", ns, cam.frame_id))
            if frame.lidar is not None:
                pts = np.zeros(
                    len(frame.lidar), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")]
                )
                for k, f in enumerate(("x", "y", "z", "intensity")):
                    pts[f] = frame.lidar[:, k]
                bag.write(TOPIC_LIDAR, ns, M.array_to_pointcloud2(pts, ns, LIDAR_FRAME))
            markers = [M.delete_all_marker(BASE_FRAME, ns)]
            for k, el in enumerate(frame.lanes):
                pts3 = np.concatenate([el.pts, np.zeros((len(el.pts), 1))], 1)
                markers.append(
                    M.line_strip_marker(
                        CLASS_NAMES[el.cls], k, pts3, CLASS_RGBA[el.cls], BASE_FRAME, ns, width=0.15
                    )
                )
            bag.write(TOPIC_LANES, ns, M.marker_array(markers))
            bag.write(TOPIC_LANES_JSON, ns, M.json_to_string_message(lanes_json(frame.lanes, ns)))
        counts = dict(bag.counts)
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    return {"path": str(out), "frames": len(drive), "cameras": names, "topics": counts, "bytes": size}
