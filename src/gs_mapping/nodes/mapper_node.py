"""mapper_node: colour + depth (or a LiDAR cloud) + CameraInfo + TF → incremental 3DGS map → deltas.

Inputs (best-effort sensor QoS): the colour image (``Image`` of any driver encoding, or
``CompressedImage`` when the topic ends in ``/compressed`` or ``/zstd``), the depth image (``Image``, or
``compressedDepth`` when the topic ends in ``/compressedDepth``; a ``/theora`` topic, a video stream,
is refused at start, naming the topics to use) registered to it — or with its own
CameraInfo (``mapper.topics.depth_camera_info``; ``auto``, the default: the depth topic's sibling,
for depth images in another frame than the colour's, unless the topic's name says registered or
``mapper.topics.depth_registered`` says so, whatever frame it names), then
reprojected into the colour camera through TF —
or a LiDAR cloud, a PointCloud2 or a Livox CustomMsg (``mapper_node.cloud_type``; under rclpy the
driver's message package must be installed), moved by TF at its own stamp, each point by its own
time where the cloud has one (``mapper.deskew``), and projected into the colour camera; the colour
CameraInfo, /tf and /tf_static. Until a frame can be made, diagnostics say what the node waits for.
Colour and depth are paired by the approximate-time synchroniser; the pose is T_map_cam from TF at
the colour stamp. Outputs:

- ``~/map_delta`` (std_msgs/UInt8MultiArray, reliable, keep-last N): one gs_map_share delta per
  keyframe, from the map's change record, and one when a map anchored to the first frame's pose
  (no ``map`` frame then) moves into TF's ``map`` once a localisation starts (:class:`~gs_mapping.tf.MapPoses`);
- ``~/map_snapshot`` (UInt8MultiArray, reliable + transient_local): the whole map, on a period and
  when a new subscriber joins, so late joiners and receivers that lost deltas recover; and, where
  ROS time stands still (a bag's end or pause under ``use_sim_time``: the runtime runs the timer on
  steady time, ``clock_stopped`` once the node is idle), once after the last deltas, so a joiner at
  any time ends with the final map;
- ``/diagnostics``.

Save/load: parameter ``mapper_node.load_path`` (PLY loaded at start, taken as in TF's map: held
apart while the map is anchored to the first frame's pose, :meth:`MapperNode._anchored`), ``mapper_node.save_path``
(written on shutdown, and whenever a std_msgs/String arrives on ``~/save``: its text is the path, or
empty for ``save_path``). The saved PLY keeps the map's ids and levels (:func:`gs_mapping.ply.save_ply`'s
``keep_ids``), so a mapper resumed from it sends deltas its receivers can apply; some web viewers
misread such a file: ``gs-mapping convert`` makes the plain layout for them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config_file import param
from ..errors import ConfigError, GsMappingError, MessageError, TFError, transform_may_arrive
from ..mapping.keyframes import INVALID_DEPTH
from ..mapping.mapper_config import AUTO, MapperConfig
from ..sync import CameraInfoHistory
from ..topics import CLOUD_TYPES, POINT_CLOUD2, check_topic_parameter, image_type
from .base import NodeBase
from .context import (
    LATCHED_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    TF_QOS,
    TF_STATIC_QOS,
    QoS,
    subscriptions_joined,
)

# frames waiting for their TF, in order (tf2_ros MessageFilter's queue): a 30 Hz camera has 3 between
# two samples of 10 Hz odometry; beyond, the oldest goes with the TF there is (a mapper slower than
# the camera would otherwise work through stale frames: the newest matters most)
TF_QUEUE = 3


@dataclass
class MapperNodeConfig:
    cloud_topic: str = param(
        "", "LiDAR cloud used instead of the depth image when set (projected into the colour camera)"
    )
    cloud_type: str = param(
        POINT_CLOUD2,
        "message type of cloud_topic: sensor_msgs/msg/PointCloud2, or a Livox CustomMsg "
        "(livox_ros_driver2/msg/CustomMsg, livox_ros_driver/msg/CustomMsg, livox_interfaces/msg/CustomMsg; "
        "under rclpy its package must be installed)",
    )
    snapshot_period_s: float = param(
        5.0, "period of ~/map_snapshot (0 = only when subscribers join)", (0.0, 3600.0)
    )
    delta_depth: int = param(20, "keep-last depth of ~/map_delta", (1, 10000))
    quality: int = param(3, "codec quality 0 (smallest) … 5 (finest)", (0, 5))
    levels: int = param(5, "levels of detail in snapshots", (1, 12))
    map_id: int = param(1, "map id stamped in every delta (receivers reject other maps)", (1, 2**31 - 1))
    diagnostics_period_s: float = param(1.0, "period of /diagnostics", (0.05, 60.0))
    load_path: str = param("", "PLY map loaded at start-up (empty: start empty)")
    save_path: str = param(
        "",
        "PLY path the map is saved to on shutdown and on ~/save, with its ids and levels for load_path "
        "(antimatter15-style web viewers misread it: 'gs-mapping convert' it for them)",
    )
    tf_wait_s: float = param(
        0.5,
        "A frame whose transform (or the TF sample after its stamp) has not arrived yet waits this long "
        "(node clock) for it while TF keeps being read, as tf2's message filter does, up to 3 frames in "
        "order (beyond, the oldest goes with the TF there is). 0: no wait",
        (0.0, 60.0),
    )

    def __post_init__(self) -> None:
        from .map_saving import check_save_path

        check_save_path(self.save_path, "mapper_node.save_path")
        if self.cloud_type not in CLOUD_TYPES:
            raise ConfigError(
                f"mapper_node.cloud_type: {self.cloud_type!r} is not a cloud type we read "
                f"({', '.join(CLOUD_TYPES)})"
            )
        if self.cloud_topic:
            check_topic_parameter("mapper_node.cloud_topic", self.cloud_topic)


class MapperNode(NodeBase):
    name = "mapper_node"
    sections = {"mapper": MapperConfig, "mapper_node": MapperNodeConfig}
    # Applied at run time (`ros2 param set`; read where used); every other parameter is read-only.
    runtime_parameters = frozenset({"mapper_node.save_path"})

    def __init__(self, ctx, config: dict[str, Any]):
        super().__init__(ctx, config)
        from gs_map_share.delta import MapSender
        from gs_map_share.quantize import QuantParams

        from ..mapping.mapper import IncrementalMapper
        from ..sync import CLOUD_WAIT_NS, ApproximateTimeSynchronizer
        from ..tf import MapPoses, TFBuffer

        self.cfg: MapperConfig = config["mapper"]
        self.node_cfg: MapperNodeConfig = config["mapper_node"]
        self.node_cfg.__post_init__()  # (again: Python code may have set fields after it was built)
        self._deskew = None  # a cloud's points placed by their own times (mapper.deskew)
        if self.node_cfg.cloud_topic:
            from ..messages.livox import once_for

            self._warn_cloud = once_for(self.node_cfg.cloud_topic, ctx.logger.warning)
            from ..mapping.deskew import Deskew
            from ..mapping.frames import adapt_to_cloud

            adapt_to_cloud(self.cfg, ctx.logger)
            if self.cfg.deskew:
                self._deskew = Deskew(self.node_cfg.cloud_topic, ctx.logger)
        t = self.cfg.topics
        self.mapper = IncrementalMapper(self.cfg)
        self._loaded_ids = np.zeros(0, np.uint64)  # the Gaussians of load_path's map (in TF's map)
        if self.node_cfg.load_path:
            self._load(self.node_cfg.load_path)
        self.sender = MapSender.from_map(
            self.mapper.gmap,
            QuantParams.from_quality(self.node_cfg.quality),
            map_id=self.node_cfg.map_id,
            frame_id=t.map_frame,
            n_levels=self.node_cfg.levels,
        )
        self.tf = TFBuffer(cache_time_s=30.0, extrapolation_tolerance_s=t.tf_tolerance_s)
        self.depth_topic = self.node_cfg.cloud_topic or t.depth
        self.sync = ApproximateTimeSynchronizer(  # (a cloud comes a scan after its stamp: frames wait)
            [t.color, self.depth_topic],
            queue_size=10,
            slop=t.sync_slop_s,
            wait_ns=CLOUD_WAIT_NS if self.node_cfg.cloud_topic else 0,
        )
        # recent CameraInfos by stamp: a frame takes the one of its image's stamp (published just after
        # the image by image_transport's CameraPublisher; a zoom or resolution change is at one stamp)
        self.camera_infos = CameraInfoHistory()
        self.depth_infos = CameraInfoHistory()
        # the depth CameraInfo frames need: auto's is known once a depth image names its frame
        self._depth_info_used = (
            "" if self.cfg.topics.depth_camera_info == AUTO else self.cfg.topics.depth_info()
        )
        self.poses = MapPoses(
            self.tf, t.map_frame, ctx.logger, live=True, on_reanchor=self._move_map, on_anchor=self._anchored
        )
        self.last_stamp_ns = -1
        # frames awaiting their TF, oldest first: (colour, depth, stamp, since_ns)
        self._waiting: list[tuple] = []
        self._before_info: tuple | None = None  # (colour, depth, since): awaiting its CameraInfo
        self.delta_bytes = 0
        self.deltas = 0
        self._subscribers_seen = 0
        self._last_snapshot_ns = 0
        self._deltas_at_snapshot = 0  # self.deltas when the last snapshot went out
        self._resync = False

        self.pub_delta = ctx.create_publisher(
            "~/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(reliable=True, depth=self.node_cfg.delta_depth)
        )
        self.pub_snapshot = ctx.create_publisher(
            "~/map_snapshot", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS
        )
        color_type = image_type(t.color, "mapper.topics.color", "colour")
        depth_type = (
            self.node_cfg.cloud_type
            if self.node_cfg.cloud_topic
            else image_type(t.depth, "mapper.topics.depth", "depth")
        )
        ctx.create_subscription(t.color, color_type, SENSOR_QOS, self.guarded(t.color, self.on_color))
        ctx.create_subscription(
            self.depth_topic, depth_type, SENSOR_QOS, self.guarded(self.depth_topic, self.on_depth)
        )
        # one subscription where depth names the colour's CameraInfo as its own (counted once)
        depth_info = "" if self.node_cfg.cloud_topic else t.depth_info()  # ('auto' resolved)
        both = depth_info == t.camera_info
        self._depth_info_topic = depth_info
        ctx.create_subscription(
            t.camera_info,
            "sensor_msgs/msg/CameraInfo",
            SENSOR_QOS,
            self.guarded(t.camera_info, self._on_both_camera_infos if both else self.on_camera_info),
        )
        if depth_info and depth_info != t.camera_info:
            ctx.create_subscription(
                depth_info,
                "sensor_msgs/msg/CameraInfo",
                SENSOR_QOS,
                self.guarded(depth_info, self.on_depth_camera_info),
            )
        ctx.create_subscription(
            t.tf,
            "tf2_msgs/msg/TFMessage",
            TF_QOS,
            self.guarded(t.tf, lambda m: self.on_tf(m, static=False)),
        )
        ctx.create_subscription(
            t.tf_static,
            "tf2_msgs/msg/TFMessage",
            TF_STATIC_QOS,
            self.guarded(t.tf_static, lambda m: self.on_tf(m, static=True)),
        )
        ctx.create_subscription(
            "~/save", "std_msgs/msg/String", RELIABLE_QOS, self.guarded("~/save", self.on_save)
        )
        ctx.create_timer(self.node_cfg.diagnostics_period_s, self.on_diagnostics_timer)
        # (at least every 1 s: a joiner is served, and a clock that stopped noticed, within it)
        period = self.node_cfg.snapshot_period_s
        ctx.create_timer(min(period, 1.0) if period > 0 else 1.0, self.on_snapshot_timer)
        self.diag.values["device"] = self.mapper.device
        self.publish_snapshot()

    # -- inputs ------------------------------------------------------------------------------------
    def on_camera_info(self, msg: Any, stamp: int | None = None) -> None:
        from ..messages import camera_info_to_intrinsics
        from ..rectify import for_images_on

        stamp = self.header_ns(self.cfg.topics.camera_info, msg) if stamp is None else stamp
        if stamp is None:
            return
        info = for_images_on(camera_info_to_intrinsics(msg), self.cfg.topics.color)
        self.camera_infos.add(stamp, info)
        self._retry_for_info()

    def on_depth_camera_info(self, msg: Any, stamp: int | None = None) -> None:
        from ..messages import camera_info_to_intrinsics
        from ..rectify import for_images_on

        stamp = self.header_ns(self._depth_info_topic, msg) if stamp is None else stamp
        if stamp is None:
            return
        info = for_images_on(camera_info_to_intrinsics(msg), self.cfg.topics.depth)
        self.depth_infos.add(stamp, info)
        self._retry_for_info()

    def _on_both_camera_infos(self, msg: Any) -> None:
        """Depth names the colour's CameraInfo as its own: one message, both roles."""
        stamp = self.header_ns(self.cfg.topics.camera_info, msg)
        if stamp is not None:
            self.on_camera_info(msg, stamp)
            self.on_depth_camera_info(msg, stamp)

    def _infos(self, color: tuple, depth: tuple, final: bool) -> tuple[Any, Any, str]:
        """(colour CameraInfo, depth CameraInfo or None, '') for a pair, each of its image's stamp;
        where one may still come (or, ``final``, there is none) its topic instead of ''."""
        from ..messages import stamp_to_ns

        t = self.cfg.topics
        final = final or self.node_cfg.tf_wait_s <= 0  # ("0: no wait", for a CameraInfo too)
        intr = self.camera_infos.for_image(stamp_to_ns(color[0].stamp), final)
        if intr is None:
            return None, None, t.camera_info
        if self.node_cfg.cloud_topic:
            return intr, None, ""
        depth_info = t.depth_info_for(str(depth[0].frame_id), str(color[0].frame_id) or intr.frame_id)
        self._depth_info_used = depth_info  # (for waiting_for)
        if not depth_info:
            return intr, None, ""
        depth_intr = self.depth_infos.for_image(stamp_to_ns(depth[0].stamp), final)
        return intr, depth_intr, "" if depth_intr is not None else depth_info

    def _retry_for_info(self, timer: bool = False, closing: bool = False) -> None:
        """A driver may send a frame's CameraInfo just after its images (image_transport's
        CameraPublisher does, at the same stamp): the pair that came first is made now. From the
        timer, once it waited ``tf_wait_s``, with the CameraInfo there is (none: it waits on)."""
        if self._before_info is None:
            self._retry_waiting()  # (frames queued behind others wait for their CameraInfo in place)
            return
        color, depth, since = self._before_info
        waited = closing or (timer and self.ctx.now_ns() - since > self.node_cfg.tf_wait_s * 1e9)
        final = waited and not self._infos(color, depth, final=True)[2]
        if final or not self._infos(color, depth, final=False)[2]:
            self._before_info = None
            self.on_pair(color, depth, waited_since=since, info_final=final)
            if self._before_info is None:
                self._retry_waiting()  # (the frames queued for TF behind it)

    def on_color(self, msg: Any) -> None:
        from ..messages.camera_image import color_to_rgb

        self._offer(self.cfg.topics.color, msg, color_to_rgb(msg))  # decoded now: errors name this message

    def on_depth(self, msg: Any) -> None:
        from ..messages import cloud_xyz_times
        from ..messages.camera_image import depth_to_metres

        self._offer(  # (a cloud: its points and their times)
            self.depth_topic,
            msg,
            cloud_xyz_times(msg, self._warn_cloud) if self.node_cfg.cloud_topic else depth_to_metres(msg),
        )

    def _offer(self, topic: str, msg: Any, data: np.ndarray) -> None:
        from ..messages import stamp_to_ns

        # a cloud's points are timed from its stamp: kept as it is, as ``map`` does
        if self.node_cfg.cloud_topic and topic == self.depth_topic:
            stamp: int | None = stamp_to_ns(msg.header.stamp)
        else:
            stamp = self.header_ns(topic, msg)  # (a camera's zero stamp: its arrival; None: skipped)
        if stamp is None:
            return
        pair = self.sync.add(topic, stamp, (self.restamped(msg, stamp).header, data))
        self.diag.values["unpaired"] = self.sync.dropped
        if pair is not None:
            self.on_pair(*pair)

    def on_pair(
        self,
        color: tuple,
        depth: tuple,
        waited_since: int | None = None,
        final: bool = False,
        superseded: bool = False,
        info_final: bool = False,
    ) -> None:
        """One synchronised colour/depth pair → a mapping frame (or a counted skip).

        ``waited_since``: node time the pair started waiting for its transform (a retry). While it
        may wait (``tf_wait_s``), a pose past the last TF sample waits for the next one and is
        interpolated (tf2 never extrapolates into the future); after that, or ``final`` (a newer
        frame came, the node stops), the last sample serves within ``tf_tolerance_s``.
        ``superseded``: it leaves a full TF queue (a drop is counted so). ``info_final``: it takes
        the CameraInfo there is, but may still wait for its TF."""
        from ..messages import stamp_to_ns

        stamp = stamp_to_ns(color[0].stamp)
        if waited_since is None and self._before_info is not None:  # a newer frame came: the one kept
            (color_w, depth_w, since_w), self._before_info = self._before_info, None  # for its CameraInfo
            self.on_pair(color_w, depth_w, waited_since=since_w, info_final=True)  # takes the one there is
        if waited_since is None and self._waiting:  # frames before it wait for TF: it waits behind them
            self._retry_waiting()
            if self._waiting:
                self._waiting.append((color, depth, stamp, self.ctx.now_ns()))
                while len(self._waiting) > TF_QUEUE:  # (as tf2's message filter: its oldest goes now)
                    color_w, depth_w, _, since = self._waiting.pop(0)
                    self.on_pair(color_w, depth_w, waited_since=since, final=True, superseded=True)
                self.diag.values["frames_waiting_for_tf"] = len(self._waiting)
                return
        if self.time_went_back(stamp, self.last_stamp_ns):
            self.last_stamp_ns = -1
        if stamp <= self.last_stamp_ns:
            self.diag.drop("frames", f"stamp {stamp} ns is not after the previous frame's")
            return
        now, wait_ns = self.ctx.now_ns(), self.node_cfg.tf_wait_s * 1e9
        expired = waited_since is not None and now - waited_since > wait_ns
        infos = self._infos(color, depth, final or info_final or expired)
        if infos[2]:
            if final or info_final or expired:
                why = "a newer frame came" if final or info_final else f"waited {self.node_cfg.tf_wait_s} s"
                self.diag.drop("frames", f"no CameraInfo received yet on {infos[2]} ({why})")
            elif waited_since is None:  # kept (the newest one) until its CameraInfo comes
                self._before_info = (color, depth, now)
            else:  # queued behind other frames: it waits for its CameraInfo in its place
                self._waiting.insert(0, (color, depth, stamp, waited_since))
            return
        t0 = time.perf_counter()
        may_wait = not final and wait_ns > 0 and (waited_since is None or now - waited_since <= wait_ns)
        try:
            frame = self._frame(color, depth, stamp, infos, future_tolerance_ns=0 if may_wait else None)
        except TFError as exc:
            if superseded:  # (it waited for TF, and the queue was full)
                self.diag.drop(
                    "frames_superseded",
                    f"frame at {stamp} ns: {TF_QUEUE} newer ones came while it waited for TF ({exc})",
                )
            elif final or not self._hold_for_tf(color, depth, stamp, exc, waited_since):
                waited = (
                    ""
                    if waited_since is None
                    else f" (after waiting {(self.ctx.now_ns() - waited_since) / 1e9:.2f} s)"
                )
                self.diag.drop("frames_no_pose", f"{exc}{waited}")
            return
        except GsMappingError as exc:
            self.diag.reject(self.cfg.topics.color, str(exc))
            return
        self.last_stamp_ns = stamp
        decision = self.mapper.add_frame(frame)
        if decision.reason.startswith(INVALID_DEPTH):
            self.diag.reject(self.cfg.topics.depth, decision.reason, kind=INVALID_DEPTH)
        if decision.is_keyframe:
            self.publish_delta()
        self._not_waiting(since_ns=now)
        self.diag.latency("frame", time.perf_counter() - t0)
        self.diag.values["gaussians"] = len(self.mapper.gmap)
        self.diag.values["keyframes"] = self.mapper.stats.keyframes
        self.diag.values["frames_used"] = self.mapper.stats.frames

    # -- waiting for TF (tf2's message filter, for the newest frame) --------------------------------
    def on_tf(self, msg: Any, static: bool) -> None:
        self.add_tf(self.tf, msg, static)  # a bad transform raises: counted by ``guarded``
        self._retry_waiting()

    def _hold_for_tf(self, color: tuple, depth: tuple, stamp: int, exc: TFError, since: int | None) -> bool:
        """Keep a pair whose transform may still arrive (at most ``tf_wait_s``); False: drop it now.
        A retried pair goes back to the front of the queue (the frames keep their order)."""
        now = self.ctx.now_ns()
        wait_ns = self.node_cfg.tf_wait_s * 1e9
        if wait_ns <= 0 or not transform_may_arrive(exc) or (since is not None and now - since > wait_ns):
            return False
        if since is None:
            self._waiting.append((color, depth, stamp, now))
        else:
            self._waiting.insert(0, (color, depth, stamp, since))
        self.diag.values["frames_waiting_for_tf"] = len(self._waiting)
        return True

    def _not_waiting(self, since_ns: int) -> None:
        """The node time since ``since_ns``, spent working, is not counted in any frame's wait: tf2's
        listener reads TF on a thread of its own meanwhile, where ours reads it between callbacks
        (a mapper slower than the camera would otherwise drop the frames queued behind the one it
        maps, their TF still unread)."""
        busy = self.ctx.now_ns() - since_ns
        if busy <= 0:
            return
        self._waiting = [(c, d, stamp, since + busy) for c, d, stamp, since in self._waiting]
        if self._before_info is not None:
            color, depth, since = self._before_info
            self._before_info = (color, depth, since + busy)

    def _retry_waiting(self) -> None:
        """Try the waiting frames again, oldest first (new TF, or the timer: each goes with the TF
        there is once its wait is over), until one still has to wait."""
        while self._waiting and self._before_info is None:  # (one parked for its CameraInfo is older)
            color, depth, _, since = self._waiting.pop(0)
            self.on_pair(color, depth, waited_since=since)
            if self._waiting and self._waiting[0][0] is color:  # (held again: the rest wait behind it)
                break
        self.diag.values["frames_waiting_for_tf"] = len(self._waiting)

    def _frame(
        self,
        color: tuple,
        depth: tuple,
        stamp: int,
        infos: tuple | None = None,
        future_tolerance_ns: int | None = None,
    ):
        from ..mapping.frames import depth_in_color, make_frame
        from ..messages import stamp_to_ns

        (color_header, rgb), (depth_header, depth_data) = color, depth
        depth_data, times = depth_data if self.node_cfg.cloud_topic else (depth_data, None)
        intr, depth_intr, missing = infos or self._infos(color, depth, final=True)
        if missing:
            raise MessageError(f"no CameraInfo received yet on {missing}")
        frame_id = str(color_header.frame_id) or intr.frame_id
        self.tf_follows_clock(self.tf)
        T = self.poses.lookup(frame_id, stamp, future_tolerance_ns)
        depth_m = depth_in_color(
            depth_data,
            str(depth_header.frame_id),
            stamp_to_ns(depth_header.stamp),  # the depth/cloud pose at its own stamp
            intr,
            T,
            self.poses,
            depth_intr,
            cloud=bool(self.node_cfg.cloud_topic),
            color_stamp=stamp,
            color_frame=frame_id,
            point_times=times,
            deskew=self._deskew,
            future_tolerance_ns=future_tolerance_ns,  # (waits for the TF after the scan too)
            registered=self.cfg.topics.depth_registered,
        )
        return make_frame(rgb, depth_m, intr, T, stamp, frame_id)

    def waiting_for(self) -> list[str]:
        """The inputs no frame can be made without that have not arrived yet (for diagnostics)."""
        t, seen = self.cfg.topics, self.diag.inputs
        need = [(t.color, "colour"), (self.depth_topic, "cloud" if self.node_cfg.cloud_topic else "depth")]
        need.append((t.camera_info, "camera_info"))
        if self._depth_info_used and not self.node_cfg.cloud_topic:
            need.append((self._depth_info_used, "depth camera_info"))
        out = [f"{what} on {topic}" for topic, what in need if not seen.get(topic)]
        if not seen.get(t.tf) and not seen.get(t.tf_static):
            out.append(f"TF on {t.tf} / {t.tf_static}")
        return out

    def _anchored(self) -> None:
        """No ``map`` in TF: the map is anchored to the first frame's pose (:class:`~gs_mapping.tf.MapPoses`).
        A map loaded from ``load_path`` was saved in TF's map, not there: it is held apart (not drawn,
        so neither optimised nor taken as explaining a view; sent and saved as loaded) until a
        localisation gives TF's map, and the move brings what was built in the anchor's frame to it.
        (Not moved with the rest: it was never in the anchor's frame. Not mapped into either: where
        the robot is in it is unknown until then.)"""
        if len(self._loaded_ids):
            self.mapper.hold_apart(self._loaded_ids)
            self.ctx.logger.warning(
                f"the map loaded from {self.node_cfg.load_path} ({len(self._loaded_ids)} Gaussians, in "
                f"{self.cfg.topics.map_frame!r}) is held apart, not drawn, until TF has "
                f"{self.cfg.topics.map_frame!r}: what is mapped meanwhile joins it then"
            )

    def _move_map(self, T_map_anchor: np.ndarray) -> None:
        """A localisation started late: the map anchored to the first frame's pose moves into TF's
        map (:class:`~gs_mapping.tf.MapPoses`), and the receivers' with it, by a delta now. Tried
        once (MapPoses ends the anchor first): a delta that fails to go out leaves the map moved and
        the sender's state with it, the receivers brought along by the next snapshot as after any
        lost delta; a move that fails part way (out of memory) leaves what it had moved, said by
        the guard that contains it, rather than move anything twice."""
        self.mapper.move_map(T_map_anchor)
        self.publish_delta()

    # -- outputs -----------------------------------------------------------------------------------
    def publish_delta(self) -> None:
        from ..messages import bytes_to_uint8_multiarray

        changes = self.mapper.gmap.take_changes()
        if changes.empty and not self._resync:
            return
        try:
            # After a failed update the change record is gone: diff the whole map by id instead.
            data, info = self.sender.update(self.mapper.gmap, None if self._resync else changes)
        except GsMappingError as exc:
            self._resync = True
            self.diag.drop("deltas", f"cannot encode delta: {exc}")
            return
        self._resync = False
        self.pub_delta.publish(bytes_to_uint8_multiarray(data, self.ctx.factory))
        self.deltas += 1
        self.delta_bytes += len(data)
        self.diag.values["seq"] = self.sender.seq
        self.diag.values["state_crc"] = self.sender.shadow.checksum()
        self.diag.values["deltas"] = self.deltas
        self.diag.values["delta_bytes_total"] = self.delta_bytes

    def publish_snapshot(self) -> None:
        from ..messages import bytes_to_uint8_multiarray

        data = self.sender.snapshot()
        self._last_snapshot_ns = self.ctx.now_ns()
        self._deltas_at_snapshot = self.deltas
        self.pub_snapshot.publish(bytes_to_uint8_multiarray(data, self.ctx.factory))
        self.diag.values["snapshot_bytes"] = len(data)
        self.diag.values["seq"] = self.sender.seq
        self.diag.values["state_crc"] = self.sender.shadow.checksum()

    def on_snapshot_timer(self) -> bool:
        subs = subscriptions_joined(self.pub_snapshot)
        joined = subs > self._subscribers_seen  # (a count: one leaving as another joined shows)
        self._subscribers_seen = subs
        period = self.node_cfg.snapshot_period_s
        self._last_snapshot_ns = min(self._last_snapshot_ns, self.ctx.now_ns())  # (the clock went back)
        due = period > 0 and self.ctx.now_ns() - self._last_snapshot_ns >= period * 1e9
        # ROS time stands still (a bag's end or pause; the runtime runs this timer on steady time
        # then) and the node is idle: deltas sent since the last snapshot make a fresh one now, or
        # a joiner from now on gets the latched, older one and no later message comes to bring it
        # the rest
        stopped = getattr(self.ctx, "clock_stopped", None)
        settle = self.deltas > self._deltas_at_snapshot and stopped is not None and stopped()
        if joined or due or settle:
            start = self.ctx.now_ns()
            self.publish_snapshot()
            self._not_waiting(since_ns=start)
        return self.deltas > self._deltas_at_snapshot  # (the runtime: call again, ROS time standing still)

    def on_diagnostics_timer(self) -> None:
        # a frame whose TF never comes is dropped once its wait is over; one whose CameraInfo of its
        # stamp never comes goes with the CameraInfo there is
        self.contained(self.cfg.topics.color, self._retry_waiting)
        self.contained(self.cfg.topics.color, self._retry_for_info, True)
        if self.mapper.stats.frames == 0:
            self.report_waiting(self.waiting_for())
        else:  # colour or depth stopped while the other, or TF, goes on: no frame can be made
            t = self.cfg.topics
            stopped = self.diag.silent([t.color, self.depth_topic], witnesses=(t.tf,))
            kinds = {t.color: "colour", self.depth_topic: "cloud" if self.node_cfg.cloud_topic else "depth"}
            self.report_waiting([], [(f"{kinds[topic]} on {topic}", s) for topic, s in stopped])
        self.publish_diagnostics()

    # -- save / load -------------------------------------------------------------------------------
    def on_save(self, msg: Any) -> None:
        from ..messages import string_message_to_str

        self.save(string_message_to_str(msg).strip() or self.node_cfg.save_path)

    def save(self, path: str) -> None:
        """Save the map (temp + rename); one-line error (counted by ``guarded``) if it cannot be."""
        from .map_saving import save_map

        start = self.ctx.now_ns()
        try:
            save_map(self.mapper.gmap, path, keep_ids=True)
        finally:
            self._not_waiting(since_ns=start)
        self.ctx.logger.info(f"map saved to {path} ({len(self.mapper.gmap)} Gaussians)")

    def _load(self, path: str) -> None:
        from ..ply import load_ply

        gmap = load_ply(path)
        self.mapper.load_map(gmap)
        self._loaded_ids = gmap.ids.copy()

    def close(self) -> None:
        from .map_saving import final_save

        # the frame still waiting (for its TF, or its CameraInfo) goes with what there is, as a newer
        # frame would have made it go; then the map is saved
        self.contained(self.cfg.topics.color, self._retry_for_info, True, True)  # (the oldest)
        while self._waiting:
            color, depth, _, since = self._waiting.pop(0)
            self.contained(self.cfg.topics.color, self.on_pair, color, depth, since, True)
        final_save(
            self.mapper.gmap, self.node_cfg.save_path, self.ctx.logger, self.ctx.node_name, keep_ids=True
        )
