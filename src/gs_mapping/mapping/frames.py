"""From a bag to mapping frames: colour + depth + intrinsics + pose from TF.

Colour and depth images are paired by the approximate-time synchroniser; the latest CameraInfo gives
the intrinsics; the pose is ``T_map_cam`` looked up in TF at the colour image's header stamp, for
the colour image's frame id. TF is read in a first pass (it is small) so that a lookup at an image's
stamp can interpolate between the transforms around it, as a live node would after a short delay.

Depth is taken as registered to the colour image (``*/image_rect_raw`` aligned to colour, or
``aligned_depth_to_color``); a depth image of another size is invalid for that frame.

Frames that cannot be used are skipped, counted and logged, never fatal: no pose (TF missing or
extrapolated), an undecodable or wrongly sized depth image, no CameraInfo in the bag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..camera import Camera
from ..errors import GsMappingError, MessageError, TFError
from .mapper_config import TopicsConfig

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One RGB-D frame with its pose. ``depth`` is metres, 0 or NaN where invalid."""

    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]
    depth: np.ndarray  # (H, W) float32 metres
    camera: Camera  # intrinsics + T_map_cam
    stamp_ns: int
    index: int = 0  # position among the bag's colour/depth pairs (for hold-out selection)


@dataclass
class FrameStats:
    pairs: int = 0
    no_pose: int = 0
    invalid_depth: int = 0
    no_camera_info: int = 0
    unpaired: int = 0  # colour or depth images the synchroniser could not pair
    reasons: list[str] = field(default_factory=list)
    strict: bool = False  # an undecodable message in the bag is an error (else counted and skipped)
    bad_messages: dict[str, int] = field(default_factory=dict)  # "topic (type)" → undecodable, skipped

    @property
    def skipped(self) -> int:
        return self.no_pose + self.invalid_depth + self.no_camera_info + self.unpaired

    def skip(self, kind: str, message: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.reasons) < 100:
            self.reasons.append(message)
        log.warning(f"{message}: skipped")


def load_tf(bag, topics: TopicsConfig):
    """A TF buffer holding every /tf and /tf_static transform of the bag."""
    from ..tf import TFBuffer

    # Everything is loaded up front, so keep all samples (no cache horizon).
    buf = TFBuffer(cache_time_s=0, extrapolation_tolerance_s=topics.tf_tolerance_s)
    for name, static in ((topics.tf_static, True), (topics.tf, False)):
        if not bag.has_topic(name):
            continue
        for _topic, _stamp, msg in bag.messages([name]):
            try:
                buf.add_message(msg, static=static)
            except GsMappingError as exc:
                log.warning(f"{name}: bad transform message ignored: {exc}")
    return buf


def load_camera_infos(bag, topics: TopicsConfig) -> list:
    """Every valid CameraInfo of the bag as (stamp_ns, CameraIntrinsics), in time order."""
    from ..messages import camera_info_to_intrinsics, stamp_to_ns

    out = []
    for _topic, _stamp, msg in bag.messages([topics.camera_info]):
        try:
            out.append((stamp_to_ns(msg.header.stamp), camera_info_to_intrinsics(msg)))
        except MessageError as exc:
            log.warning(f"{topics.camera_info}: bad CameraInfo ignored: {exc}")
    return out


def _intrinsics_at(infos: list, stamp_ns: int):
    """The latest CameraInfo at or before ``stamp_ns``; the first one for images before it (the
    driver publishes both together, and the bag's order within one stamp is arbitrary)."""
    if not infos:
        return None
    best = infos[0][1]
    for s, intr in infos:
        if s > stamp_ns:
            break
        best = intr
    return best


def make_frame(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    intrinsics,
    T_map_cam: np.ndarray,
    stamp_ns: int,
    frame_id: str,
    index: int = 0,
) -> Frame:
    """A mapping frame from decoded images: ``rgb`` uint8 (H, W, 3), ``depth_m`` metres (NaN or 0 =
    invalid) registered to it, the colour CameraInfo. :class:`MessageError` if the sizes disagree.
    The one place both the bag reader and mapper_node assemble frames."""
    h, w = rgb.shape[:2]
    if (intrinsics.width, intrinsics.height) != (w, h):
        raise MessageError(
            f"colour image is {w}x{h} but its CameraInfo says {intrinsics.width}x{intrinsics.height}"
        )
    if depth_m.shape != (h, w):
        raise MessageError(
            f"depth image is {depth_m.shape[1]}x{depth_m.shape[0]}, colour is {w}x{h} "
            "(depth must be registered to colour)"
        )
    camera = Camera(intrinsics.K, intrinsics.width, intrinsics.height, T_map_cam, frame_id)
    return Frame(
        rgb.astype(np.float32) / 255.0,
        np.nan_to_num(depth_m, nan=0.0).astype(np.float32),
        camera,
        stamp_ns,
        index,
    )


def read_frames(
    bag_path: str | Path, topics: TopicsConfig | None = None, stats: FrameStats | None = None
) -> Iterator[Frame]:
    """Yield the bag's usable frames in time order; skipped ones are counted in ``stats``."""
    from ..bag import BagReader
    from ..messages import depth_image_to_metres, image_to_rgb, stamp_to_ns
    from ..sync import ApproximateTimeSynchronizer

    topics = topics or TopicsConfig()
    stats = stats if stats is not None else FrameStats()
    with BagReader(bag_path, strict=stats.strict) as bag:
        stats.bad_messages = bag.bad_messages  # the reader's live count
        for name in (topics.color, topics.depth, topics.camera_info):
            bag.topic(name)  # BagError naming the topics the bag has
        tf = load_tf(bag, topics)
        sync = ApproximateTimeSynchronizer(
            [topics.color, topics.depth], queue_size=10, slop=topics.sync_slop_s
        )
        infos = load_camera_infos(bag, topics)
        for topic, _stamp, msg in bag.messages([topics.color, topics.depth]):
            pair = sync.add(topic, stamp_to_ns(msg.header.stamp), msg)
            if pair is not None:
                color_msg, depth_msg = pair
                index = stats.pairs
                stats.pairs += 1
                stamp = stamp_to_ns(color_msg.header.stamp)
                where = f"frame {index} ({topics.color} at {stamp} ns)"
                intrinsics = _intrinsics_at(infos, stamp)
                if intrinsics is None:
                    stats.skip("no_camera_info", f"{where}: no CameraInfo on {topics.camera_info}")
                    continue
                frame_id = str(color_msg.header.frame_id) or intrinsics.frame_id
                try:
                    T = tf.lookup(topics.map_frame, frame_id, stamp).matrix()
                except TFError as exc:
                    stats.skip("no_pose", f"{where}: no pose {topics.map_frame} <- {frame_id}: {exc}")
                    continue
                try:
                    frame = make_frame(
                        image_to_rgb(color_msg),
                        depth_image_to_metres(depth_msg),
                        intrinsics,
                        T,
                        stamp,
                        frame_id,
                        index,
                    )
                except MessageError as exc:
                    stats.skip("invalid_depth", f"{where}: {exc}")
                    continue
                yield frame
        stats.unpaired = sync.dropped + sync.pending()
        if stats.unpaired:
            log.warning(
                f"{stats.unpaired} colour/depth images found no partner within {topics.sync_slop_s:.3f} s"
            )
