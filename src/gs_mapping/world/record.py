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


def _worker_signals() -> None:
    """A forked worker takes the default SIGTERM and leaves Ctrl-C and a hang-up to the parent,
    which unwinds and kills the workers. It also leaves the parent's process group: a signal to
    the whole group (a terminal's Ctrl-C, a hang-up, ``kill -TERM -PGID``, ``timeout``) reaches only
    the parent (a worker whose parent is gone fails its next send and exits)."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for s in {signal.SIGINT, *UNWINDING_SIGNALS} - {signal.SIGTERM}:  # (SIGHUP where it exists)
        signal.signal(s, signal.SIG_IGN)


def _render_every(first: int, step: int, conn, readers: list) -> None:
    """A worker's body: frames first, first + step, … of the drive, each sent down ``conn`` as
    (True, frame), or (False, the error) for the one that failed. ``readers``: the read ends the
    fork copied (its own pipe's, the workers' before it), closed, so that the parent's are the only
    ones: a parent killed outright leaves a worker's send failing, not blocked for ever."""
    _worker_signals()
    for r in readers:
        r.close()
    try:
        for i in range(first, len(_DRIVE), step):
            conn.send((True, _DRIVE.frame(i)))
    except BrokenPipeError:  # (the parent stopped reading: it is unwinding)
        pass
    except Exception as exc:  # (sent as text where it cannot be pickled)
        with contextlib.suppress(Exception):
            conn.send((False, exc if _picklable(exc) else RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def _picklable(exc: Exception) -> bool:
    import pickle

    try:
        pickle.dumps(exc)
    except Exception:
        return False
    return True


def frames(drive: Drive, workers: int = 1):
    """The drive's frames in order, rendered by ``workers`` forked processes (1: in this process).

    Rendering is a pure function of the frame index, so the result does not depend on ``workers``.
    Worker k renders frames k, k + W, … into its own pipe, read in turn: no lock is shared, so the
    parent that unwinds (Ctrl-C, a hang-up) kills its workers wherever they are and goes on. (A
    multiprocessing Pool's terminate() could hang there for ever: a worker killed while it sent a
    result held the result queue's lock, which the pool's task thread then waited for: 1 hang-up in
    15 on a loaded machine.) A pipe holds less than a frame, so each worker is at most one frame
    ahead of the reader."""
    global _DRIVE
    if workers <= 1 or len(drive) < 2 or "fork" not in mp.get_all_start_methods():
        yield from drive
        return
    ctx = mp.get_context("fork")
    n = min(workers, len(drive))
    procs, conns = [], []
    _DRIVE = drive
    try:
        for k in range(n):  # (OSError: no descriptor or process left for a worker and its pipe)
            r, w = ctx.Pipe(duplex=False)
            try:
                p = ctx.Process(target=_render_every, args=(k, n, w, [r, *conns]), daemon=True)
                p.start()
            except BaseException:
                r.close()
                raise
            finally:
                w.close()  # (the worker's end: a worker that dies leaves the reader at EOF)
            procs.append(p)
            conns.append(r)
        for i in range(len(drive)):
            try:
                ok, got = conns[i % n].recv()
            except EOFError:
                raise OSError(f"the process rendering frame {i} ended without it") from None
            if not ok:
                raise got
            yield got
    finally:
        _DRIVE = None
        for p in procs:
            with contextlib.suppress(OSError):
                p.kill()
        for c in conns:
            c.close()
        for p in procs:
            p.join()


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
