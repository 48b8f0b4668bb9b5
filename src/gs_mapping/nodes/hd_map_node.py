"""hd_map_node: camera images + CameraInfo + TF → GSMap vector lanes.

Inputs (best-effort sensor QoS): one to six cameras (``sensor_msgs/Image``, or ``CompressedImage``
when the topic ends in ``/compressed`` or ``/zstd``; a ``/theora`` video stream is refused), each
with its ``camera_info`` sibling topic, /tf and /tf_static. Images of all cameras are grouped by the
approximate-time synchroniser; extrinsics T_base_cam come from TF. Outputs:

- ``~/lanes`` (visualization_msgs/MarkerArray): with ``fuse`` (default) the persistent lane map in
  ``map_frame`` — every frame's predictions fused over time (``gsmap_hd.lane_map``: association,
  merging, stable ids, confidence from repeated sightings, one-off false positives dropped); without,
  the frame's elements in ``base_frame``. A LINE_STRIP per element (marker id = lane id when fused),
  namespace per class (divider, ped_crossing, boundary), coloured by class;
- ``~/lanes_json`` (std_msgs/String): this frame's prediction, ``{"stamp_ns", "frame_id", "vectors":
  [{"pts", "type", "confidence_level"}]}`` in ``base_frame`` — the format of ``gs-mapping hd-eval``
  and the world's GT — plus ``"region"``, the ground its cameras cover (predictions are clipped to it);
- ``~/lanes_delta`` (std_msgs/UInt8MultiArray): the changes of the lane map (``fuse``) or the frame's
  lanes (ids matched frame to frame) in ``map_frame``, as compact gs_map_share lane containers;
- ``/diagnostics``.

Backends (``backend``): ``torch`` runs the checkpoint; ``onnx`` runs ``onnx_model`` (``gs-mapping
hd-export --onnx``) with onnxruntime on ``onnx_providers`` (on a Jetson: TensorRT, CUDA, CPU). At start
the node logs what the model was trained on: the shipped checkpoints learnt from the procedural
world only, so real cameras are out of their domain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..config_file import param
from ..errors import ConfigError, GsMappingError, MessageError, TFError, transform_may_arrive
from ..sync import CameraInfoHistory
from ..tf import lookup_in_map
from ..topics import image_type, info_topic, transport_base
from .base import NodeBase
from .context import RELIABLE_QOS, SENSOR_QOS, TF_QOS, TF_STATIC_QOS, QoS

CLASS_NAMES = ("divider", "ped_crossing", "boundary")
# frames whose lanes wait for their map pose, in order (each at most tf_wait_s): a late localisation's
# first fix poses those before it; a few KB a frame, the default wait holds 5 at 10 Hz; beyond, the
# oldest goes with the TF there is
LANES_WAITING = 32
CLASS_RGBA = ((1.0, 0.55, 0.0, 1.0), (0.1, 0.4, 1.0, 1.0), (0.1, 0.9, 0.2, 1.0))


@dataclass
class HDMapNodeConfig:
    camera_topics: list[str] = param(
        ["/cameras/front/image_raw"],
        "camera image topics (1 to 6 cameras, each on one transport; '/compressed' or '/zstd' suffix = CompressedImage, '/theora' refused); "
        "each needs a sibling 'camera_info' topic",
    )
    checkpoint: str = param(
        "",
        "GSMap checkpoint (empty: the small model shipped with the package for the rig: the front model "
        "for one camera, the surround model for several)",
    )
    backend: str = param("torch", "torch (the checkpoint) | onnx (onnx_model, run by onnxruntime)")
    onnx_model: str = param("", "ONNX export of the model (gs-mapping hd-export --onnx), for backend onnx")
    onnx_providers: list[str] = param(
        ["CPUExecutionProvider"],
        "onnxruntime execution providers in order of preference (Jetson: TensorrtExecutionProvider, "
        "CUDAExecutionProvider, CPUExecutionProvider)",
    )
    fuse: bool = param(True, "fuse frames into a persistent lane map in map_frame (~/lanes, ~/lanes_delta)")
    map_min_hits: int = param(2, "frames that must see a lane before the lane map publishes it", (1, 1000))
    device: str = param("auto", "auto | cpu | cuda | cuda:N (auto: cuda where torch sees one, else cpu)")
    base_frame: str = param(
        "base_link", "ego frame of the predicted lanes (a tf2 frame id: not empty, no leading '/')"
    )
    map_frame: str = param("map", "fixed frame of ~/lanes_delta (a tf2 frame id: not empty, no leading '/')")
    score_threshold: float = param(0.3, "elements below this confidence are not published", (0.0, 1.0))
    max_rate_hz: float = param(
        10.0,
        "frames faster than this (by more than 10 %) are skipped (counted in 'skipped frames_rate_limited', not a fault)",
        (0.1, 100.0),
    )
    sync_slop_s: float = param(0.02, "cameras further apart than this are not grouped", (0.0, 1.0))
    map_id: int = param(2, "map id of the lane deltas", (1, 2**31 - 1))
    lane_step_m: float = param(0.01, "quantisation of lane points in the delta", (0.001, 1.0))
    snapshot_every: int = param(20, "every n-th lane container is a snapshot (late joiners)", (1, 100000))
    diagnostics_period_s: float = param(1.0, "period of /diagnostics", (0.05, 60.0))
    tf_wait_s: float = param(
        0.5,
        "A frame whose map pose (or the TF sample after its stamp) has not arrived yet waits this long "
        "(node clock) for it while TF keeps being read, as tf2's message filter does, up to 32 frames in "
        "order (beyond, the oldest goes with the TF there is). 0: no wait",
        (0.0, 60.0),
    )

    def __post_init__(self) -> None:
        """What no type or range says, checked wherever the config is built (a file, ``-p``, launch,
        ``ros2 param set``) so that a bad value stops the node before it starts; whether the device,
        checkpoint or providers are usable on this machine is the node's start's question."""
        from ..device import is_device_name
        from ..tf import check_frame_id
        from ..topics import check_topic_parameter

        if not is_device_name(self.device):
            raise ConfigError(f"hd_map_node.device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.backend not in ("torch", "onnx"):
            raise ConfigError(f"hd_map_node.backend: expected torch or onnx, got {self.backend!r}")
        if self.backend == "onnx" and not self.onnx_model:
            raise ConfigError("hd_map_node.onnx_model: backend onnx needs the path of an ONNX export")
        if not 1 <= len(self.camera_topics) <= 6:
            raise ConfigError(
                f"hd_map_node.camera_topics: need 1 to 6 cameras, got {len(self.camera_topics)}"
            )
        for topic in self.camera_topics:
            check_topic_parameter("hd_map_node.camera_topics", topic)
            image_type(topic, "hd_map_node.camera_topics", "colour")  # (a /theora stream refused)
        check_frame_id("hd_map_node.base_frame", self.base_frame)
        check_frame_id("hd_map_node.map_frame", self.map_frame)


class HDMapNode(NodeBase):
    name = "hd_map_node"
    sections = {"hd_map_node": HDMapNodeConfig}
    # Applied at run time (`ros2 param set`); every other parameter is read-only.
    runtime_parameters = frozenset({"hd_map_node.score_threshold", "hd_map_node.max_rate_hz"})

    def __init__(self, ctx, config: dict[str, Any]):
        super().__init__(ctx, config)
        from ..sync import ApproximateTimeSynchronizer
        from ..tf import TFBuffer

        self.cfg: HDMapNodeConfig = config["hd_map_node"]
        self.cfg.__post_init__()  # (again: Python code may have set fields after the config was built)
        cams = list(self.cfg.camera_topics)  # (1 to 6 valid names: HDMapNodeConfig checked them)
        # the cameras as resolved (namespace, remapping), as ``ros2 topic list`` shows them: the names
        # /diagnostics and the console give
        self.resolved = {t: ctx.resolve_topic_name(t) for t in cams}
        # compared as cameras, whatever the transport or stream (image_raw, image_rect): one camera
        # listed twice would be grouped with itself and run through the several-camera model; two
        # streams beside one camera_info are one camera to image_transport
        seen: dict[str, str] = {}
        for topic in cams:
            stream, camera = transport_base(self.resolved[topic]), info_topic(self.resolved[topic])
            if camera in seen:
                same = transport_base(self.resolved[seen[camera]]) == stream
                raise ConfigError(
                    f"hd_map_node.camera_topics: {seen[camera]!r} and {topic!r} are one camera "
                    f"({stream if same else f'both beside {camera}'})"
                )
            seen[camera] = topic
        self.cameras = cams
        self.predictor = self._load_predictor()
        self.tf = TFBuffer(cache_time_s=30.0)
        # One camera needs no grouping; several are grouped like message_filters would.
        self.sync = (
            ApproximateTimeSynchronizer(cams, queue_size=5, slop=self.cfg.sync_slop_s)
            if len(cams) > 1
            else None
        )
        self._unmatched = 0  # the synchroniser's drops already counted in /diagnostics
        # each camera's recent CameraInfos by stamp: an image takes the one of its stamp (published just
        # after it); a frame whose CameraInfo may still come waits (one frame: the newest wins)
        self.infos: dict[str, CameraInfoHistory] = {t: CameraInfoHistory() for t in cams}
        self._frame_waiting: tuple | None = None  # (msgs, stamp, since_ns)
        self._info_refused: dict[str, str] = {}  # image topic → why its last CameraInfo was refused
        self.last_stamp_ns = -1
        self._said_no_map_pose = False
        # lanes awaiting their map pose, oldest first: (elements, region, stamp, since_ns)
        self._waiting: list[tuple] = []
        self._lanes_prev: list = []
        self._lane_state = None
        self._next_lane_id = 1
        # (from the wall clock, as MapSender's: a restarted node's stream is newer than the last run's)
        self._lane_seq = time.time_ns() // 1000
        self._lanes_sent = 0
        self.lane_map = None
        if self.cfg.fuse:
            from gsmap_hd.lane_map import LaneMap, LaneMapConfig

            self.lane_map = LaneMap(
                LaneMapConfig(min_hits=self.cfg.map_min_hits, min_score=self.cfg.score_threshold)
            )

        self.pub_markers = ctx.create_publisher("~/lanes", "visualization_msgs/msg/MarkerArray", RELIABLE_QOS)
        self.pub_json = ctx.create_publisher("~/lanes_json", "std_msgs/msg/String", RELIABLE_QOS)
        self.pub_delta = ctx.create_publisher(
            "~/lanes_delta", "std_msgs/msg/UInt8MultiArray", QoS(reliable=True, depth=50)
        )
        # each camera's CameraInfo as image_transport finds it: beside the image topic as resolved
        # (namespace, remapping), not as written (``image_raw`` in /cam: /cam/camera_info)
        self.info_topics = {t: info_topic(self.resolved[t]) for t in cams}
        for topic in cams:
            typename = image_type(topic, "hd_map_node.camera_topics", "colour")  # (mapper_node's rule)
            ctx.create_subscription(
                topic, typename, SENSOR_QOS, self.guarded(topic, lambda m, t=topic: self.on_image(t, m))
            )
            ctx.create_subscription(
                self.info_topics[topic],
                "sensor_msgs/msg/CameraInfo",
                SENSOR_QOS,
                self.guarded(self.info_topics[topic], lambda m, t=topic: self.on_info(t, m)),
            )
        ctx.create_subscription(
            "/tf",
            "tf2_msgs/msg/TFMessage",
            TF_QOS,
            self.guarded("/tf", lambda m: self.on_tf(m, static=False)),
        )
        ctx.create_subscription(
            "/tf_static",
            "tf2_msgs/msg/TFMessage",
            TF_STATIC_QOS,
            self.guarded("/tf_static", lambda m: self.on_tf(m, static=True)),
        )
        ctx.create_timer(self.cfg.diagnostics_period_s, self.on_diagnostics_timer)
        self.diag.values["device"] = self.predictor.device
        self.diag.values["backend"] = self.cfg.backend
        self.diag.values["region"] = self.predictor.region_name
        # the shipped models learnt from synthetic worlds only: say so where an operator looks
        ctx.logger.info(
            f"hd_map_node: {self.cfg.backend} model {self._model_path}; {self.predictor.trained_on}"
        )

    def _load_predictor(self):
        from gsmap_hd.infer import Predictor
        from gsmap_hd.predict_bag import shipped_checkpoint

        from ..device import resolve_device

        if self.cfg.backend == "onnx":  # (backend, device and onnx_model: checked by HDMapNodeConfig)
            self._model_path = self.cfg.onnx_model
            return Predictor.from_onnx(
                self.cfg.onnx_model,
                providers=list(self.cfg.onnx_providers),
                score_threshold=self.cfg.score_threshold,
            )
        path = self.cfg.checkpoint or str(shipped_checkpoint(len(self.cfg.camera_topics)))
        self._model_path = path
        try:
            device = resolve_device(self.cfg.device)  # (usable on this machine: CUDA, its index)
        except ConfigError as exc:
            raise ConfigError(f"hd_map_node.device: {exc}") from None
        try:
            return Predictor.from_checkpoint(path, device=device, score_threshold=self.cfg.score_threshold)
        except FileNotFoundError:
            raise ConfigError(f"hd_map_node.checkpoint: {path} not found") from None

    def parameters_changed(self, section: str, values: dict[str, Any]) -> None:
        super().parameters_changed(section, values)
        if "score_threshold" in values:  # the predictor holds its own copy
            self.predictor.score_threshold = self.cfg.score_threshold
            if self.lane_map is not None:
                self.lane_map.config.min_score = self.cfg.score_threshold

    # -- inputs ------------------------------------------------------------------------------------
    def on_info(self, topic: str, msg: Any) -> None:
        from gsmap_hd.infer import check_intrinsics

        from ..messages import camera_info_to_intrinsics
        from ..rectify import for_images_on

        try:
            info = for_images_on(camera_info_to_intrinsics(msg), topic)  # (topic: the image's)
            check_intrinsics(info.K, f"{topic}'s CameraInfo")  # (a K read transposed: as uncalibrated)
        except GsMappingError as exc:  # (kept to say why frames wait; the guard counts and logs it)
            self._info_refused[topic] = str(exc)
            raise
        self._info_refused.pop(topic, None)
        stamp = self.header_ns(self.info_topics[topic], msg)  # (zero: its arrival; None: skipped)
        if stamp is None:
            return
        self.infos[topic].add(stamp, info)
        if self._frame_waiting is not None:  # (its CameraInfo, published just after the image?)
            msgs, stamp, since = self._frame_waiting
            self._frame_waiting = None
            self._predict(msgs, stamp, since)

    def on_image(self, topic: str, msg: Any) -> None:
        stamp = self.header_ns(topic, msg)  # (zero: its arrival, the frame restamped so; None: skipped)
        if stamp is None:
            return
        msg = self.restamped(msg, stamp)
        group = [msg] if self.sync is None else self.sync.add(topic, stamp, msg)
        if self.sync is not None and self.sync.dropped > self._unmatched:  # (a camera late or gone)
            self.diag.drop(
                "images_unmatched",
                f"images without a partner on every camera within sync_slop_s ({self.cfg.sync_slop_s} s)",
                n=self.sync.dropped - self._unmatched,
            )
            self._unmatched = self.sync.dropped
        if group is not None:
            self.on_frame(list(group))

    def on_tf(self, msg: Any, static: bool) -> None:
        self.add_tf(self.tf, msg, static)  # a bad transform raises: counted by ``guarded``
        self._retry_waiting()

    def on_frame(self, msgs: list[Any]) -> None:
        from ..messages import stamp_to_ns

        self._predict_frame_waiting()  # the newest frame wins: the one waiting for a CameraInfo now
        stamp = stamp_to_ns(msgs[0].header.stamp)
        went_back = self.time_went_back(stamp, self.last_stamp_ns)
        # the lanes waiting for their pose wait on, in order; those of the run before time went back
        # (a bag loop, a simulator reset) go now, with the TF there is
        self._retry_waiting(final=went_back)
        if went_back:
            self.last_stamp_ns = -1
        if stamp <= self.last_stamp_ns:
            self.diag.drop("frames", f"stamp {stamp} ns is not after the previous frame's")
            return
        # (within 10 %: a camera at max_rate_hz whose stamps jitter by a millisecond keeps every frame)
        if self.last_stamp_ns >= 0 and (stamp - self.last_stamp_ns) < 0.9e9 / self.cfg.max_rate_hz:
            self.diag.skip("frames_rate_limited")
            return
        self._predict(msgs, stamp, since_ns=None)

    def _predict_frame_waiting(self) -> None:
        """Predict the frame waiting for a CameraInfo with what there is (a newer frame, the timer
        once it waited ``tf_wait_s``, the node stopping)."""
        if self._frame_waiting is not None:
            msgs, stamp, since = self._frame_waiting
            self._frame_waiting = None
            self._predict(msgs, stamp, since, final=True)

    def _predict(self, msgs: list[Any], stamp: int, since_ns: int | None, final: bool = False) -> None:
        t0 = time.perf_counter()
        try:
            got = self._inputs(msgs, stamp, final)
            if got is None:  # a CameraInfo of its stamp may still come (published just after the image)
                self._frame_waiting = (msgs, stamp, self.ctx.now_ns() if since_ns is None else since_ns)
                return
            elements = self.predictor.predict(*got)
        except TFError as exc:
            self.diag.drop("frames_no_tf", str(exc))
            return
        except GsMappingError as exc:
            self.diag.reject("frames", str(exc))
            return
        self.last_stamp_ns = stamp
        self.diag.latency("predict", time.perf_counter() - t0)
        self.publish(elements, stamp)

    def _inputs(self, msgs: list[Any], stamp: int, final: bool):
        """The frame's images, CameraInfos (each of its image's stamp) and base ← camera transforms;
        None while a CameraInfo may still come (not when ``final``)."""
        from ..messages import stamp_to_ns
        from ..messages.camera_image import color_to_rgb

        final = final or self.cfg.tf_wait_s <= 0  # ("0: no wait", for a CameraInfo too)
        infos = [
            self.infos[t].for_image(stamp_to_ns(m.header.stamp), final)
            for t, m in zip(self.cameras, msgs, strict=True)
        ]
        for topic, info in zip(self.cameras, infos, strict=True):
            if info is None and (final or (not self.infos[topic] and topic in self._info_refused)):
                why = self._info_refused.get(topic)
                refused = f" (the last one was refused: {why})" if why else ""
                raise MessageError(f"no CameraInfo yet on {self.info_topics[topic]}{refused}")
        if any(info is None for info in infos):
            return None
        images, extrinsics = [], []
        self.tf_follows_clock(self.tf)
        for info, msg in zip(infos, msgs, strict=True):
            # any driver encoding, or a jpeg/png CompressedImage (grey → RGB); a distorted camera's
            # raw image is made pinhole by the Predictor, from the CameraInfo's d
            rgb = color_to_rgb(msg)
            frame_id = str(msg.header.frame_id) or info.frame_id
            images.append(rgb)
            extrinsics.append(self.tf.lookup(self.cfg.base_frame, frame_id, stamp).matrix())
        return images, infos, extrinsics

    def on_diagnostics_timer(self) -> None:
        """Until the first prediction, diagnostics say which inputs have not arrived; after it, which
        cameras stopped while the others go on (no frame can be grouped without them)."""
        seen = self.diag.inputs
        waiting = []
        if self.last_stamp_ns < 0:
            for topic in self.cameras:
                waiting += [f"image on {self.resolved[topic]}"] if not seen.get(topic) else []
                info = self.info_topics[topic]
                waiting += [f"camera_info on {info}"] if not seen.get(info) else []
            if not seen.get("/tf") and not seen.get("/tf_static"):
                waiting.append(f"TF to {self.cfg.base_frame} on /tf or /tf_static")
        stopped = [
            (f"image on {self.resolved[t]}", s)
            for t, s in (self._silent_cameras() if self.last_stamp_ns >= 0 else [])
        ]
        # lanes whose pose never comes are dropped once their wait is over; a frame whose CameraInfo
        # of its stamp never comes goes with the CameraInfo there is (contained: a timer has no guard)
        self.contained(self.cameras[0], self._retry_waiting)
        if (
            self._frame_waiting is not None
            and self.ctx.now_ns() - self._frame_waiting[2] > self.cfg.tf_wait_s * 1e9
        ):
            self.contained(self.cameras[0], self._predict_frame_waiting)
        self.report_waiting(waiting, stopped)
        self.publish_diagnostics()

    def _silent_cameras(self) -> list[tuple[str, float]]:
        """Cameras that stopped while another camera, or /tf, goes on (the only camera too)."""
        return self.diag.silent(self.cameras, witnesses=("/tf",))

    # -- outputs -----------------------------------------------------------------------------------
    def publish(self, elements: list, stamp: int) -> None:
        from ..messages import json_to_string_message, marker_array

        f = self.ctx.factory
        region = self.predictor.last_regions[0] if self.predictor.last_regions else None
        doc = {"stamp_ns": stamp, "frame_id": self.cfg.base_frame, "vectors": [e.to_eval() for e in elements]}
        if region is not None:
            doc["region"] = region.coords()
        self.pub_json.publish(json_to_string_message(doc, f))
        self.diag.values["elements"] = len(elements)
        if self.lane_map is None:  # per-frame lanes: markers in base_frame, ids matched frame to frame
            self.pub_markers.publish(
                marker_array(self._markers(elements, None, self.cfg.base_frame, stamp), f)
            )
        self._lanes_at_pose(elements, region, stamp, None)

    def _lanes_at_pose(
        self, elements: list, region, stamp: int, waited_since: int | None, final: bool = False
    ) -> None:
        """The lanes in ``map_frame`` (fused, or this frame's) once the pose at ``stamp`` is known;
        a pose still in flight is waited for (``tf_wait_s``, node clock; not when ``final``) behind
        the lanes already waiting (at most :data:`LANES_WAITING`), else the frame is counted. (A
        newer frame's pose is there only if the waiting ones' are: :meth:`on_frame` retries them
        first, so the lanes are fused in order.)"""
        now = self.ctx.now_ns()
        since = now if waited_since is None else waited_since
        wait = self.cfg.tf_wait_s * 1e9
        may_wait = not final and wait > 0 and now - since <= wait
        self.tf_follows_clock(self.tf)
        try:  # (while it may wait, a pose past the last sample waits for the next: tf2's rule; one
            # before a late localisation's first fix is held back through it, as the mapper's)
            T = lookup_in_map(
                self.tf, self.cfg.map_frame, self.cfg.base_frame, stamp, 0 if may_wait else None
            )
        except TFError as exc:
            if may_wait and transform_may_arrive(exc):
                if waited_since is None:
                    self._wait(elements, region, stamp, since)
                else:  # (retried: back to the front, the rest wait behind it)
                    self._waiting.insert(0, (elements, region, stamp, since))
                return
            self.diag.drop("lane_map_no_map_pose", str(exc))
            if not self._said_no_map_pose:  # (in /diagnostics only, an odometry-only robot saw nothing)
                self._said_no_map_pose = True
                self.ctx.logger.warning(
                    f"no pose of {self.cfg.base_frame} in {self.cfg.map_frame}: lanes are not fused or "
                    f"sent until there is ({exc}); a robot without a map frame: set "
                    f"hd_map_node.map_frame to its odometry frame"
                )
            return
        from ..messages import bytes_to_uint8_multiarray, marker_array

        f = self.ctx.factory
        if self.lane_map is None:
            lanes = self._frame_lanes(elements, T)
        else:
            from gs_map_share.lanes import Lane
            from gsmap_hd.lane_map import ground_z, region_in_map, to_frame

            # fused in the map's plane, drawn at the ground's height where each piece was seen
            in_map = [_Elem(e.cls, e.score, to_frame(e.points, T), ground_z(e.points, T)) for e in elements]
            self.lane_map.update(in_map, None if region is None else region_in_map(region, T))
            tracks = self.lane_map.published()
            lanes = [Lane(t.id, t.cls, t.confidence, t.points) for t in tracks]
            self.diag.values["lane_map_lanes"] = len(lanes)
            markers = self._markers(
                lanes, [ln.id for ln in lanes], self.cfg.map_frame, stamp, [t.z for t in tracks]
            )
            self.pub_markers.publish(marker_array(markers, f))
        self.pub_delta.publish(bytes_to_uint8_multiarray(self._lane_container(lanes), f))

    def _wait(self, elements: list, region, stamp: int, since: int) -> None:
        """Queue a frame's lanes for their pose, behind the others; beyond :data:`LANES_WAITING`
        the oldest goes now, with the TF there is."""
        self._waiting.append((elements, region, stamp, since))
        while len(self._waiting) > LANES_WAITING:
            self._lanes_at_pose(*self._waiting.pop(0), final=True)

    def _retry_waiting(self, final: bool = False) -> None:
        """Try the lanes waiting for their pose again, oldest first (new TF, a newer frame, or the
        timer: each goes with the TF there is once its wait is over), until one still has to wait;
        ``final`` (the node stopping): every one fused now or counted."""
        while self._waiting:
            elements, region, stamp, since = self._waiting.pop(0)
            self._lanes_at_pose(elements, region, stamp, since, final)
            if self._waiting and self._waiting[0][0] is elements:  # (held again: the rest wait behind it)
                break

    def close(self) -> None:
        self.contained(self.cameras[0], self._predict_frame_waiting)
        self.contained(self.cameras[0], self._retry_waiting, True)

    def _markers(self, elements: list, ids, frame_id: str, stamp: int, heights=None) -> list:
        from ..messages import delete_all_marker, line_strip_marker

        f = self.ctx.factory
        markers = [delete_all_marker(frame_id, stamp, factory=f)]  # RViz drops what was shown before
        for i, e in enumerate(elements):
            pts = np.zeros((len(e.points), 3))
            pts[:, :2] = e.points
            if heights is not None:
                pts[:, 2] = heights[i]
            markers.append(
                line_strip_marker(
                    CLASS_NAMES[e.cls],
                    i if ids is None else int(ids[i]),
                    pts,
                    CLASS_RGBA[e.cls],
                    frame_id,
                    stamp,
                    width=0.15,
                    factory=f,
                )
            )
        return markers

    def _frame_lanes(self, elements: list, T: np.ndarray) -> list:
        """One frame's elements in the map frame with ids matched to the previous frame's."""
        from gs_map_share.lanes import assign_ids
        from gsmap_hd.lane_map import to_frame

        in_map = [_Elem(e.cls, e.score, to_frame(e.points, T)) for e in elements]
        lanes, self._next_lane_id = assign_ids(self._lanes_prev, in_map, self._next_lane_id)
        self._lanes_prev = lanes
        return lanes

    def _lane_container(self, lanes: list) -> bytes:
        """The lanes (map frame) as a delta against the previously sent state (snapshot periodically)."""
        from gs_map_share.lanes import encode_lanes, quantize_lanes

        state = quantize_lanes(lanes, self.cfg.lane_step_m)
        self._lane_seq += 1
        self._lanes_sent += 1
        # containers 1, n+1, 2n+1, …: with n = 1 every one (seq % 1 == 1 never held)
        snapshot = self._lane_state is None or (self._lanes_sent - 1) % self.cfg.snapshot_every == 0
        data = encode_lanes(
            None if snapshot else self._lane_state,
            state,
            map_id=self.cfg.map_id,
            seq=self._lane_seq,
            base_seq=0 if snapshot else self._lane_seq - 1,
            frame_id=self.cfg.map_frame,
            step=self.cfg.lane_step_m,
        )
        self._lane_state = state
        self.diag.values["lane_bytes_total"] = self.diag.values.get("lane_bytes_total", 0) + len(data)
        return data


class _Elem(NamedTuple):
    """An element in the map frame, as gs_map_share.lanes.assign_ids reads it."""

    cls: int
    score: float
    points: np.ndarray
    z: np.ndarray | None = None  # the ground's height in the map frame at each point (lane fusion)


__all__ = ["HDMapNode", "HDMapNodeConfig"]
