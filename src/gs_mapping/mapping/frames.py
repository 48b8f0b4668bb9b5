"""From a bag to mapping frames: colour + depth + intrinsics + pose from TF.

Colour (``Image`` of any driver encoding, or ``CompressedImage`` jpeg/png) and depth (``Image``
16UC1/32FC1 or ``compressedDepth``) — or a LiDAR ``PointCloud2`` — are paired by the approximate-time
synchroniser; the latest CameraInfo gives the intrinsics; the pose is ``T_map_cam`` looked up in TF at
the colour image's header stamp, for the colour image's frame id (the first frame's pose when TF has
no map frame: :class:`~gs_mapping.tf.MapPoses`). TF is read in a first pass (it is small) so that a
lookup at an image's stamp can interpolate between the transforms around it, as a live node would
after a short delay; a ``/tf_static`` value re-published part-way poses the frames logged after it
(the one before it the earlier ones, as in tf2 fed the bag in its order: by log time, a clock of its
own in a simulator's recording, whose header stamps are sim time). A camera topic whose header
stamps are all zero (a driver that does not stamp) is timed by log time instead
(:func:`logged_clock_topics`); a zero stamp among stamped ones is skipped (:class:`Unstamped`).

Depth is registered to colour (``aligned_depth_to_color``, ``depth_registered``) unless the topics
name a depth CameraInfo (``depth_camera_info``; ``auto``, the default: the depth topic's sibling where
the bag has one, for depth images in another frame than the colour's:
:meth:`TopicsConfig.depth_info_for`): then each depth image is reprojected into the colour camera
through TF at both stamps (:mod:`.depth_registration`). A cloud (PointCloud2, or a Livox
``CustomMsg``) is moved by TF at its own stamp into the colour camera at the colour stamp and
projected; with per-point times (ouster-ros ``t``, velodyne ``time``, Hesai/RoboSense/Livox
``timestamp``, a CustomMsg's ``timebase`` + ``offset_time``) each point first by the sensor's pose
when it was measured (:mod:`.deskew`; ``mapper.deskew``).

Frames that cannot be used are skipped, counted and logged, never fatal: no pose (TF missing or
extrapolated), an undecodable or wrongly sized depth image, no CameraInfo in the bag. A topic of the
wrong type is refused before reading (one :class:`~gs_mapping.errors.ConfigError` line).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..camera import Camera
from ..errors import MessageError, TFError
from ..say_once import say_once
from ..sync import info_at
from .deskew import Deskew
from .mapper_config import AUTO, TopicsConfig

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
    invalid_color: int = 0  # a colour image that does not decode (an encoding or a file we cannot read)
    no_camera_info: int = 0
    unpaired: int = 0  # colour or depth images the synchroniser could not pair
    duplicates: int = 0  # a message with the stamp of the one before it on its topic (recorded twice)
    reasons: list[str] = field(default_factory=list)
    strict: bool = False  # an undecodable message in the bag is an error (else counted and skipped)
    bad_messages: dict[str, int] = field(default_factory=dict)  # "topic (type)" → undecodable, skipped

    @property
    def skipped(self) -> int:
        return self.no_pose + self.invalid_depth + self.invalid_color + self.no_camera_info + self.unpaired

    def skip(self, kind: str, message: str) -> None:
        """Count a frame skipped for ``kind``; the first of each kind is logged, the others at debug
        level (a bag without TF would print a line a frame) and counted in :meth:`log_totals`."""
        count = getattr(self, kind) + 1
        setattr(self, kind, count)
        if len(self.reasons) < 100:
            self.reasons.append(message)
        (log.warning if count == 1 else log.debug)(f"{message}: skipped")

    def log_totals(self) -> None:
        for kind in ("no_pose", "invalid_depth", "invalid_color", "no_camera_info"):
            if getattr(self, kind) > 1:
                log.warning(f"{getattr(self, kind)} frames skipped in all for {kind.replace('_', ' ')}")


def _nearest_gap(a: list[int], b: list[int]) -> str:
    """'' or ' (the nearest two are X s apart)': how far apart the two inputs' closest stamps are."""
    if not a or not b:
        return ""
    x, y = np.sort(np.asarray(a, np.int64)), np.asarray(b, np.int64)
    i = np.searchsorted(x, y)  # each of b between x[i - 1] and x[i]
    below, above = x[np.maximum(i - 1, 0)], x[np.minimum(i, len(x) - 1)]
    gap = np.minimum(np.abs(below - y), np.abs(above - y)).min()
    return f" (the nearest two are {gap / 1e9:.3f} s apart)"


def _tf_topics(bag, topics: TopicsConfig) -> list[tuple[str, bool]]:
    """``[(topic, static)]`` TF is read from: the configured ones, or one robot's namespaced TF
    (:func:`gs_mapping.topics.tf_topics`)."""
    from ..topics import tf_topics

    # (map's parameter file is --config: it has no --params-file)
    how = " with mapper.topics.tf and mapper.topics.tf_static in the parameter file of --config"
    return tf_topics(bag, topics.tf, topics.tf_static, how)


def load_tf(bag, topics: TopicsConfig):
    """A TF buffer holding every transform of the bag's TF topics (:func:`_tf_topics`); a bad one is
    refused, said and counted (:class:`~gs_mapping.tf.RecordedTF`)."""
    from ..tf import RecordedTF, TFBuffer

    # Everything is loaded up front, so keep all samples (no cache horizon).
    buf = TFBuffer(cache_time_s=0, extrapolation_tolerance_s=topics.tf_tolerance_s)
    recorded = RecordedTF(buf, log)
    static_of = dict(_tf_topics(bag, topics))
    # in log order, each with its log time: a static value re-published mid-drive, or a frame
    # re-mounted (a new parent, static <-> /tf), holds from when it was logged, as in tf2 fed the
    # bag in order (looked up by the images' log times, on the same clock: read_frames)
    for name, logged, msg in bag.messages(list(static_of)):
        recorded.add(name, msg, static_of[name], since_ns=logged)
    recorded.log_total()
    return buf


def _raw_header_ns(data: bytes) -> int | None:
    """The header stamp of a CDR record whose message starts with a ``std_msgs/Header`` (Image,
    CompressedImage, CameraInfo, PointCloud2), without deserialising it; None if too short."""
    import struct

    from ..bag import _inflated

    data = _inflated(data)
    if len(data) < 12:
        return None
    sec, nanosec = struct.unpack_from("<iI" if data[1] else ">iI", data, 4)
    return sec * 1_000_000_000 + nanosec


def logged_clock_topics(bag, topics) -> set[str]:
    """Of the camera ``topics``, those to time by log time (when each message was recorded): every
    header stamp zero while the log times are not (a driver that does not stamp; said once, naming
    the topic). A topic is read up to its first stamped message: one whose stamps are zero in part
    (a driver's first messages) keeps its stamps, and its zero-stamped messages are skipped
    (:class:`Unstamped`)."""
    from ..errors import BagError

    out = set()
    for topic in dict.fromkeys(t for t in topics if t and bag.has_topic(t)):
        logged = False  # a log time not zero among its zero stamps
        try:
            # (read up to the first stamped message: a driver's first few unstamped ones end it there,
            # not after reading every image of the topic)
            for _, t, data in bag.raw_messages([topic]):
                if _raw_header_ns(data) != 0:
                    break
                logged = logged or t != 0
            else:
                if logged:
                    out.add(topic)
        except BagError:
            continue  # (said where the messages are read)
    if out:  # (one line for a camera's colour, depth and CameraInfo)
        names = ", ".join(t for t in dict.fromkeys(topics) if t in out)
        say_once(
            log,
            f"{names}: every header stamp is zero (a driver that does not stamp): their messages are "
            "timed by when they were recorded (the bag's log time) instead, and posed by TF at it",
        )
    return out


class Unstamped:
    """Messages with a zero header stamp on a topic whose other messages are stamped (a driver's
    first messages before its clock is up): no time to pair or pose them by, so skipped, counted
    and said once a topic at the end (:meth:`say`)."""

    def __init__(self, logged_clock: set[str]):
        self.logged_clock = logged_clock
        self.counts: dict[str, int] = {}
        self.totals: dict[str, int] = {}

    def stamp(self, topic: str, msg, logged: int) -> int | None:
        """The time ``msg`` (logged at ``logged``) is taken at on ``topic``; None: skip it."""
        from ..messages import stamp_to_ns

        self.totals[topic] = self.totals.get(topic, 0) + 1
        if topic in self.logged_clock:
            return logged
        stamp = stamp_to_ns(msg.header.stamp)
        if stamp == 0 and logged != 0:
            self.counts[topic] = self.counts.get(topic, 0) + 1
            return None
        return stamp

    def say(self) -> None:
        for topic, n in self.counts.items():  # (once a process: map reads the bag twice)
            say_once(
                log,
                f"{topic}: {n} of {self.totals[topic]} messages have a zero header stamp among stamped "
                "ones (unstamped, as a driver's first messages): skipped",
            )


def load_camera_infos(
    bag, topic: str, rejected: list | None = None, logged_clock: set[str] = frozenset()
) -> list:
    """Every valid CameraInfo on ``topic`` as (stamp_ns, CameraIntrinsics), in time order; the
    reasons for the invalid ones are appended to ``rejected``. A topic in ``logged_clock`` is timed
    by log time (:func:`logged_clock_topics`); a zero stamp among stamped ones is skipped."""
    from ..messages import camera_info_to_intrinsics

    out = []
    bad = 0
    clock = Unstamped(set(logged_clock))
    for _topic, logged, msg in bag.messages([topic]):
        stamp = clock.stamp(topic, msg, logged)
        if stamp is None:
            continue
        try:
            out.append((stamp, camera_info_to_intrinsics(msg)))
        except MessageError as exc:
            bad += 1  # (said once: an uncalibrated camera sends a zero K at 30 Hz, for the whole drive)
            (log.warning if bad == 1 else log.debug)(f"{topic}: bad CameraInfo ignored: {exc}")
            if rejected is not None:
                rejected.append(str(exc))
    if bad > 1:
        log.warning(f"{topic}: {bad} of {bad + len(out)} CameraInfo messages ignored in all as bad")
    clock.say()
    return out


def _no_info(topic: str, rejected: list) -> str:
    """Why a frame has no intrinsics: none on the topic, or only invalid ones (the first reason)."""
    if not rejected:
        return f"no CameraInfo on {topic}"
    return f"no valid CameraInfo on {topic} ({len(rejected)} invalid, e.g. {rejected[0]})"


def check_color_size(rgb: np.ndarray, intrinsics) -> None:
    """:class:`MessageError` where a colour image is not the size its CameraInfo says."""
    h, w = rgb.shape[:2]
    if (intrinsics.width, intrinsics.height) != (w, h):
        raise MessageError(
            f"colour image is {w}x{h} but its CameraInfo says {intrinsics.width}x{intrinsics.height}"
        )


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
    invalid) in the colour camera's pinhole image (:func:`depth_in_color`), the colour CameraInfo
    (:func:`gs_mapping.rectify.for_images_on`). A distorted colour image is made pinhole here. :class:`MessageError` if
    the sizes disagree. The one place both the bag reader and mapper_node assemble frames."""
    from ..rectify import pinhole_color

    check_color_size(rgb, intrinsics)
    h, w = rgb.shape[:2]
    rgb = pinhole_color(rgb, intrinsics)
    if depth_m.shape != (h, w):
        raise MessageError(
            f"depth image is {depth_m.shape[1]}x{depth_m.shape[0]}, colour is {w}x{h} "
            "(depth must be registered to colour, or name its CameraInfo: depth_camera_info)"
        )
    camera = Camera(intrinsics.K, intrinsics.width, intrinsics.height, T_map_cam, frame_id)
    return Frame(
        rgb.astype(np.float32) / 255.0,
        np.nan_to_num(depth_m, nan=0.0).astype(np.float32),
        camera,
        stamp_ns,
        index,
    )


def _tf_span_s(tf, fixed: str | None, frame: str, stamp_ns: int, logged_ns: int | None):
    """The times (s since ``stamp_ns``) every moving transform between ``frame`` and ``fixed`` (None:
    its tree's root) has samples for; None where nothing moves or an edge has none."""
    from ..errors import TFError

    try:
        fixed = fixed or tf.root(frame, logged_ns)
        first = tf.earliest_common_stamp(fixed, frame, logged_ns)
        last = tf.latest_common_stamp(fixed, frame)
    except TFError:
        return None
    if first is None or last is None:
        return None
    return ((first - stamp_ns) / 1e9, (last - stamp_ns) / 1e9)


def depth_in_color(
    geometry: np.ndarray,
    geometry_frame: str,
    geometry_stamp: int,
    color_intrinsics,
    T_map_color: np.ndarray,
    poses,
    depth_intrinsics=None,
    cloud: bool = False,
    color_stamp: int | None = None,
    color_frame: str = "",
    logged_ns: int | None = None,
    point_times: np.ndarray | None = None,
    deskew: Deskew | None = None,
    future_tolerance_ns: int | None = None,
    registered: bool = False,
) -> np.ndarray:
    """Depth (H, W) metres in the colour camera's pinhole image from what the sensor gave: a registered
    depth image (in the colour camera's raw image: undistorted as colour is; one of another size in
    the colour's frame, the same view resampled, :func:`_same_view_resized`), an unregistered one with
    its ``depth_intrinsics`` (undistorted in its own camera, then registered), or a cloud's (N, 3)
    points (projected). ``poses`` is a :class:`~gs_mapping.tf.MapPoses`; the depth/cloud pose is taken
    at its own stamp (a registered depth's too, given the colour image's ``color_stamp`` and
    ``color_frame``: the colour camera's pose then, whatever frame the depth header names);
    ``logged_ns`` picks a recording's static transforms (:meth:`~gs_mapping.tf.TFBuffer.lookup`).
    A cloud's ``point_times`` (seconds since its stamp, :func:`gs_mapping.messages.cloud_xyz_times`)
    place each point by the sensor's pose then, with ``deskew`` (None: the whole cloud at its stamp),
    its motion taken in odometry (:func:`~gs_mapping.tf.odometry_frame`), not in a map that jumps;
    ``future_tolerance_ns`` 0: a time past the newest TF sample raises (a live node waits for it).
    ``registered``: the user said the depth is registered (``mapper.topics.depth_registered``): its
    header frame is neither warned of nor needed to resample one of another size.
    The one rule for the bag reader and mapper_node."""
    from ..rectify import rectifier_for
    from ..tf import is_world_frame, odometry_frame
    from .depth_registration import cloud_to_depth, register_depth

    size = (color_intrinsics.width, color_intrinsics.height)
    if not cloud and depth_intrinsics is None:
        rectifier = rectifier_for(color_intrinsics)
        frame = (color_frame or color_intrinsics.frame_id).lstrip("/")
        said = registered or geometry_frame.lstrip("/") == frame
        if _same_view_resized(geometry.shape, size) and said:
            K_depth = _resized_K(color_intrinsics.K, size, geometry.shape)
            geometry = register_depth(geometry, K_depth, np.eye(4), color_intrinsics.K, size)
        if geometry.shape != (size[1], size[0]):  # (make_frame names a wrong size)
            return geometry
        if rectifier is not None:
            geometry = rectifier.depth(geometry)
        # registered depth is in the colour camera's image, whatever frame its header names (without
        # its own CameraInfo nothing places another camera); it keeps its own stamp (librealsense's
        # aligned depth has the depth frame's): the moving colour camera saw it from where it was then
        if geometry_frame.lstrip("/") not in ("", frame) and not registered:
            _say_registered_in_another_frame(geometry_frame, frame)
        if not frame or color_stamp is None or geometry_stamp == color_stamp:
            return geometry
        T = np.linalg.inv(T_map_color) @ poses.lookup(frame, geometry_stamp, logged_ns=logged_ns)
        if np.abs(T[:3, 3]).max() < 1e-4 and np.abs(T[:3, :3] - np.eye(3)).max() < 1e-4:  # (under 0.1 mm)
            return geometry
        return register_depth(geometry, color_intrinsics.K, T, color_intrinsics.K, size)
    frame = geometry_frame or (depth_intrinsics.frame_id if depth_intrinsics is not None else "")
    if not frame:
        raise MessageError("depth/cloud message has no header.frame_id: cannot place it in TF")
    if cloud:
        T_map_cloud = poses.lookup(frame, geometry_stamp, logged_ns=logged_ns)
        if deskew is not None and point_times is not None:
            # the motion within the scan in odom, not in map: a localisation's jump is no motion
            odom = odometry_frame(poses.tf, poses.map_frame, frame, logged_ns)

            def pose_at(ns: int, tolerance: int | None = future_tolerance_ns) -> np.ndarray:
                if odom is None:
                    return poses.lookup(frame, ns, tolerance, logged_ns)
                return poses.tf.lookup(odom, frame, ns, tolerance, logged_ns).matrix()

            T_at_stamp = T_map_cloud if odom is None else pose_at(geometry_stamp, None)
            geometry = deskew(
                geometry,
                point_times,
                geometry_stamp,
                T_at_stamp,
                pose_at,
                raise_future=future_tolerance_ns == 0,
                tf_span_s=_tf_span_s(poses.tf, odom, frame, geometry_stamp, logged_ns),
            )
        T_color_cloud = np.linalg.inv(T_map_color) @ T_map_cloud
        camera_frame = (color_frame or color_intrinsics.frame_id).lstrip("/")
        world = bool(camera_frame) and is_world_frame(
            poses.tf, frame, camera_frame, poses.map_frame, logged_ns
        )
        return cloud_to_depth(geometry, T_color_cloud, color_intrinsics.K, size, frame, world)
    if geometry.shape != (depth_intrinsics.height, depth_intrinsics.width):
        raise MessageError(
            f"depth image is {geometry.shape[1]}x{geometry.shape[0]} but its CameraInfo says "
            f"{depth_intrinsics.width}x{depth_intrinsics.height}"
        )
    T_color_depth = np.linalg.inv(T_map_color) @ poses.lookup(frame, geometry_stamp, logged_ns=logged_ns)
    rectifier = rectifier_for(depth_intrinsics)
    if rectifier is not None:
        geometry = rectifier.depth(geometry)
    same = (
        geometry.shape == (size[1], size[0])
        and np.allclose(depth_intrinsics.K, color_intrinsics.K)
        and np.allclose(T_color_depth, np.eye(4), atol=1e-9)
    )
    return (
        geometry
        if same
        else register_depth(geometry, depth_intrinsics.K, T_color_depth, color_intrinsics.K, size)
    )


def _same_view_resized(shape: tuple[int, ...], size: tuple[int, int]) -> bool:
    """Whether a registered depth image of ``shape`` (H, W) may be the colour image of ``size`` (W, H)
    resampled: another size of the same aspect (to a pixel's rounding). The ZED wrapper 3.x publishes
    its registered depth at ``depth.depth_downsample_factor`` of the sensor's size and its images at
    ``video.img_downsample_factor``, in one optical frame (4.x and 5.x publish both at one size)."""
    h, w = shape
    return (w, h) != size and w > 0 and h > 0 and abs(w * size[1] / size[0] - h) <= 1


def _resized_K(K, size: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
    """The colour camera's K for its image resampled to ``shape`` (H, W), pixel centres kept where
    they are (as :func:`~gs_mapping.mapping.optimizer.scaled_camera`): each depth pixel covers the
    colour pixels of its own area."""
    sx, sy = shape[1] / size[0], shape[0] / size[1]
    (fx, _, cx), (_, fy, cy) = np.asarray(K, np.float64)[:2]
    return np.array(
        [[fx * sx, 0.0, (cx + 0.5) * sx - 0.5], [0.0, fy * sy, (cy + 0.5) * sy - 0.5], [0.0, 0.0, 1.0]]
    )


def _say_registered_in_another_frame(depth_frame: str, color_frame: str) -> None:
    """Warn once a process (not each frame) that a depth taken as registered names another frame."""
    say_once(
        log,
        f"depth images name frame {depth_frame!r}, the colour images {color_frame!r}, and no depth "
        "CameraInfo is given: the depth is taken as registered to colour and its frame is not used "
        "(name its CameraInfo, --depth-info-topic / mapper.topics.depth_camera_info, to register "
        "it through TF; --depth-registered / mapper.topics.depth_registered: true says it is registered)",
    )


LIDAR_MIN_VALID_DEPTH_FRACTION = 0.005


def adapt_to_cloud(cfg, logger=None) -> None:
    """A LiDAR projected into a camera covers a few percent of its pixels, which the depth-camera
    default ``min_valid_depth_fraction`` (0.2) would reject as invalid: lower it for cloud input,
    unless the configuration chose a value of its own (said once)."""
    from .mapper_config import MapperConfig

    if cfg.min_valid_depth_fraction == MapperConfig().min_valid_depth_fraction:
        cfg.min_valid_depth_fraction = LIDAR_MIN_VALID_DEPTH_FRACTION
        (logger or log).info(
            f"cloud input: mapper.min_valid_depth_fraction {MapperConfig().min_valid_depth_fraction} -> "
            f"{LIDAR_MIN_VALID_DEPTH_FRACTION} (a projected LiDAR is sparse; set it to choose)"
        )


def check_topics(bag, topics: TopicsConfig, cloud_topic: str = "") -> None:
    """Refuse, in one line naming the topic, inputs that are missing, of the wrong type or the same."""
    from ..errors import ConfigError
    from ..topics import CAMERA_INFO, CLOUD_TYPES, IMAGE_TYPES, transport_base

    roles = [
        (topics.color, IMAGE_TYPES, "colour"),
        (cloud_topic, CLOUD_TYPES, "cloud") if cloud_topic else (topics.depth, IMAGE_TYPES, "depth"),
        (topics.camera_info, (CAMERA_INFO,), "camera_info"),
    ]
    if topics.depth_camera_info not in ("", AUTO) and not cloud_topic:  # (auto: read where the bag has it)
        roles.append((topics.depth_camera_info, (CAMERA_INFO,), "depth camera_info"))
    for name, types, role in roles:
        info = bag.topic(name)  # BagError naming the topics the bag has
        if info.type not in types:
            raise ConfigError(f"{bag.path}: {role} topic {name} is {info.type}, not {' or '.join(types)}")
    geometry = cloud_topic or topics.depth
    if transport_base(topics.color) == transport_base(geometry):
        raise ConfigError(f"{bag.path}: colour and depth are the same topic ({topics.color})")


def read_frames(
    bag_path: str | Path,
    topics: TopicsConfig | None = None,
    stats: FrameStats | None = None,
    cloud_topic: str = "",
    deskew: bool = True,
) -> Iterator[Frame]:
    """Yield the bag's usable frames in time order; skipped ones are counted in ``stats``.
    ``cloud_topic``: a LiDAR cloud (PointCloud2 or Livox CustomMsg) instead of ``topics.depth``
    (LiDAR + camera), its points placed by their own times where it has them and ``deskew``
    (:mod:`.deskew`)."""
    from ..bag import BagReader
    from ..messages import cloud_xyz_times, stamp_to_ns
    from ..messages.camera_image import color_to_rgb, depth_to_metres
    from ..messages.livox import once_for
    from ..rectify import for_images_on
    from ..sync import CLOUD_WAIT_NS, RecordingPairer
    from ..tf import MapPoses
    from ..topics import CAMERA_INFO

    topics = topics or TopicsConfig()
    stats = stats if stats is not None else FrameStats()
    geometry_topic = cloud_topic or topics.depth
    with BagReader(bag_path, strict=stats.strict) as bag:
        stats.bad_messages = bag.bad_messages  # the reader's live count
        check_topics(bag, topics, cloud_topic)
        tf = load_tf(bag, topics)
        poses = MapPoses(tf, topics.map_frame, log)
        # (a finished recording: each image with its mutually nearest depth, however late it was logged)
        # (a cloud is logged a scan after its stamp: its frame waits for it)
        pairer = RecordingPairer(
            int(round(topics.sync_slop_s * 1e9)), wait_ns=CLOUD_WAIT_NS if cloud_topic else 0
        )
        bad_infos: list = []
        bad_depth_infos: list = []
        depth_info = topics.depth_info()
        if topics.depth_camera_info == AUTO and not (
            bag.has_topic(depth_info) and bag.topic(depth_info).type == CAMERA_INFO
        ):
            depth_info = ""  # (auto: a depth without its own CameraInfo is registered)
        if cloud_topic:
            depth_info = ""
        # a camera whose driver does not stamp: timed by log time (a cloud's points are timed from
        # its stamp: a LiDAR's is kept)
        camera_topics = [topics.color, topics.camera_info, depth_info, "" if cloud_topic else topics.depth]
        clock = Unstamped(logged_clock_topics(bag, camera_topics))
        infos = load_camera_infos(bag, topics.camera_info, bad_infos, clock.logged_clock)
        depth_infos = (
            load_camera_infos(bag, depth_info, bad_depth_infos, clock.logged_clock) if depth_info else None
        )
        deskewer = Deskew(cloud_topic, log) if cloud_topic and deskew else None
        warn = once_for(cloud_topic, log.warning)
        last: dict[str, int] = {}
        stamps: dict[str, list[int]] = {topics.color: [], geometry_topic: []}  # to say why none paired

        def pairs():  # (each message with its log time)
            for topic, logged, msg in bag.messages([topics.color, geometry_topic], arrays=[geometry_topic]):
                stamp = (
                    stamp_to_ns(msg.header.stamp) if topic == cloud_topic else clock.stamp(topic, msg, logged)
                )
                if stamp is None:  # (a zero stamp among stamped ones)
                    continue
                if last.get(topic) == stamp:  # a bag recorded twice over, or merged: the same image again
                    stats.duplicates += 1
                    continue
                last[topic] = stamp
                stamps[topic].append(stamp)
                yield from pairer.add(0 if topic == topics.color else 1, stamp, (msg, logged, stamp))
            yield from pairer.finish()

        for (color_msg, color_logged, stamp), (depth_msg, depth_logged, depth_stamp) in pairs():
            # its static transforms: those tf2 fed the bag in order holds when the pair is complete
            logged = max(color_logged, depth_logged)
            index = stats.pairs
            stats.pairs += 1
            where = f"frame {index} ({topics.color} at {stamp} ns)"
            intrinsics = for_images_on(info_at(infos, stamp), topics.color)
            if intrinsics is None:
                stats.skip("no_camera_info", f"{where}: {_no_info(topics.camera_info, bad_infos)}")
                continue
            depth_intr = None
            color_frame = str(color_msg.header.frame_id) or intrinsics.frame_id
            if depth_infos is not None and topics.depth_info_for(str(depth_msg.header.frame_id), color_frame):
                depth_intr = for_images_on(info_at(depth_infos, depth_stamp), topics.depth)
                if depth_intr is None:
                    stats.skip("no_camera_info", f"{where}: {_no_info(depth_info, bad_depth_infos)}")
                    continue
            frame_id = str(color_msg.header.frame_id) or intrinsics.frame_id
            if not frame_id:
                stats.skip(
                    "no_pose", f"{where}: no header.frame_id (nor in its CameraInfo): cannot place it in TF"
                )
                continue
            looking_up = frame_id  # the frame a TFError below concerns
            try:
                T = poses.lookup(frame_id, stamp, logged_ns=logged)
                if cloud_topic or depth_intr is not None:  # (registered depth: the colour frame's)
                    looking_up = str(depth_msg.header.frame_id) or "(depth/cloud frame)"
                geometry, times = (
                    cloud_xyz_times(depth_msg, warn) if cloud_topic else (depth_to_metres(depth_msg), None)
                )
                depth = depth_in_color(
                    geometry,
                    str(depth_msg.header.frame_id),
                    depth_stamp,
                    intrinsics,
                    T,
                    poses,
                    depth_intr,
                    cloud=bool(cloud_topic),
                    color_stamp=stamp,
                    color_frame=frame_id,
                    logged_ns=logged,
                    point_times=times,
                    deskew=deskewer,
                    registered=topics.depth_registered,
                )
            except TFError as exc:
                stats.skip("no_pose", f"{where}: no pose {topics.map_frame} <- {looking_up}: {exc}")
                continue
            except MessageError as exc:
                stats.skip("invalid_depth", f"{where}: {exc}")
                continue
            try:
                rgb = color_to_rgb(color_msg)
                check_color_size(rgb, intrinsics)
            except MessageError as exc:
                stats.skip("invalid_color", f"{where}: {exc}")
                continue
            try:
                frame = make_frame(rgb, depth, intrinsics, T, stamp, frame_id, index)
            except MessageError as exc:
                stats.skip("invalid_depth", f"{where}: {exc}")
                continue
            yield frame
        clock.say()
        if stats.duplicates:
            log.warning(
                f"{stats.duplicates} colour/depth messages repeat the stamp of the one before them: skipped"
            )
        stats.log_totals()
        stats.unpaired = pairer.dropped + pairer.pending()
        if stats.unpaired:
            # (the nearest stamps of all tell why nothing paired; beside pairs made they are a pair's)
            why = _nearest_gap(*stamps.values()) if not stats.pairs else f" ({stats.pairs} pairs made)"
            message = (
                f"{stats.unpaired} messages on {topics.color} / {geometry_topic} found no partner within "
                f"topics.sync_slop_s = {topics.sync_slop_s:g} s{why}"
            )
            log.warning(message)
            if not stats.pairs:
                stats.reasons.append(message)
