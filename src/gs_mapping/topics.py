"""Find a bag's camera topics by type and the common driver layouts; resolve names as ROS does.

With no topic options, ``gs-mapping map`` / ``replay`` call :func:`discover` on the bag's
``{topic: type}``. Layouts it knows by name (each also with ``/compressed`` colour and
``/compressedDepth`` depth transports):

- RealSense (realsense2_camera): ``/camera[/camera]/color/image_raw``,
  ``…/aligned_depth_to_color/image_raw`` (registered) or ``…/depth/image_rect_raw`` (its own camera);
- ZED (zed_wrapper): ``/zed[2]/zed_node/rgb/image_rect_color`` (5.1+: ``…/rgb/color/rect/image``),
  ``…/depth/depth_registered``;
- OAK (depthai_ros): ``/oak/rgb/image_raw``, ``/oak/stereo/image_raw``; older ``/color/image``,
  ``/stereo/depth``;
- Azure Kinect: ``/rgb/image_raw``, ``/depth_to_rgb/image_raw`` (registered), ``/depth/image_raw``;
- this project's world: ``/cameras/<name>/image_raw``, ``/cameras/<name>/depth``, ``/lidar/points``.

Colour is an Image/CompressedImage whose name says nothing of depth, infrared, thermal or disparity;
depth one whose name says depth. Each needs (colour) or may have (depth) a sibling ``camera_info``;
of the colour images beside one ``camera_info`` (image_proc's outputs beside the driver's) the
driver's own is taken: its registered depth was made in it; of one sensor's twins with CameraInfos
of their own (ZED's ``rgb``, ``rgb_raw``, ``rgb_gray``, and its ``left``, which the wrapper also
publishes as ``rgb``) the rectified colour one. When one stream is on more than one transport, raw
wins (no decode cost), then for depth ``/compressedDepth``, then ``/zstd`` (both lossless), then
``/compressed`` (often an 8-bit JPEG of it); for colour ``/compressed``, then ``/zstd``. A depth with
its own CameraInfo in another frame is registered to colour by the mapper; a registered one
(``aligned_depth_to_color``, ``depth_registered``, ``depth_to_rgb``) is preferred when both exist.
A camera is its namespace: a depth named alone takes the colour sharing the most namespace levels
with it; a depth taken as registered (no CameraInfo of its own) named beside another camera's colour
is refused. Where the bag's first messages are at hand (``frame_of``: ``map``, ``replay``), so is a
depth taken as registered whose header frame is not the colour camera's (a ZED's
``depth/depth_registered``, in its left camera's frame, beside ``right/image_rect_color``: one
namespace), and a depth named alone takes a colour of its own frame. When more than one candidate remains the choice is ambiguous: :class:`~gs_mapping.errors.ConfigError`
lists them in one line. A ``/theora`` stream (theora_image_transport's video, no image per message)
is refused in one line naming the topics to use instead, whether named or the only one recorded.
Where no depth image is found, the bag's one LiDAR cloud is the geometry: a PointCloud2 or a Livox
``CustomMsg`` (:data:`CLOUD_TYPES`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"
# Livox's own cloud (xfer_format 1, what FAST-LIO and most LIO stacks record): one layout under the
# names of livox_ros_driver2, the ROS 1 livox_ros_driver (ported bags) and livox_ros2_driver
# (:mod:`gs_mapping.messages.livox`)
LIVOX_CUSTOM_MSGS = (
    "livox_ros_driver2/msg/CustomMsg",
    "livox_ros_driver/msg/CustomMsg",
    "livox_interfaces/msg/CustomMsg",
)
CLOUD_TYPES = (POINT_CLOUD2, *LIVOX_CUSTOM_MSGS)
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
# theora_image_transport's ``…/theora``: Ogg packets of an inter-coded video (a frame needs the stream's
# header packets and every packet since its keyframe), no image per message (:func:`refuse_theora`)
THEORA_PACKET = "theora_image_transport/msg/Packet"

_TRANSPORTS = ("/compressedDepth", "/compressed", "/theora", "/zstd")
# invisible light, one rule for colour and depth: RealSense's ``infra1``, Kinect's ``/ir/``, Orbbec's
# ``left_ir`` / ``right_ir``, near-infrared ``nir`` and thermal cameras (``thermal``, or by band:
# long-, mid- and short-wave ``lwir``, ``mwir``, ``swir``), each as a whole name token
_NOT_VISIBLE = r"infra|thermal|(^|[/_])(n|[lms]w)?ir($|[/_])"
# (OAK's ``stereo/image_raw`` is depth; a stereo pair's ``/stereo/left/image_raw`` is a camera)
_NOT_COLOUR = re.compile(rf"depth|disparity|{_NOT_VISIBLE}|confidence|stereo/image|mask|segment|label|normal")
_NOT_DEPTH = re.compile(rf"colorized|confidence|disparity|{_NOT_VISIBLE}|normal")
_DEPTH = re.compile(r"depth|/stereo/image")
_REGISTERED = re.compile(r"aligned_depth_to_colou?r|depth_registered|depth_to_rgb|registered")
_COLOUR_WORDS = re.compile(r"colou?r|rgb")
# rectified: ``image_rect*`` (image_proc, realsense) or a ``rect`` level (ZED wrapper 5.1+:
# ``rgb/color/rect/image``); raw: ``image_raw*`` or a ``raw`` level (``rgb/color/raw/image``)
_RECTIFIED = re.compile(r"/[^/]*rect[^/]*$|/rect(/|$)")
_RAW_OR_RECTIFIED = re.compile(r"/image_raw|image_rect|/r(aw|ect)(/|$)")
_GREY = re.compile(r"gr[ae]y|(^|[/_])mono($|[/_])")
# one sensor's twins, each with its own CameraInfo publisher, told by the namespace: ZED wrapper
# 5.1+'s ``<sensor>/<color|gray>/<rect|raw>/image`` and 4.x's ``<sensor>``, ``<sensor>_raw``,
# ``<sensor>_gray``, ``<sensor>_raw_gray`` (``rgb/image_rect_color``, ``rgb_raw/image_raw_color``,
# ``rgb_gray/image_rect_gray``, ``rgb_raw_gray/image_raw_gray``)
_TWIN_LEVELS = re.compile(r"/(colou?r|gr[ae]y|mono)/(rect|raw)$|(_(raw|gr[ae]y|mono))+$")
# a ZED's left sensor is its rgb sensor: the wrapper publishes one image under both names (its
# CHANGELOG, v5.1.0: "RGB sensor topics (corresponding to the left sensor for the Stereo cameras)";
# 3.x to 5.x publish the left Mat on both, in the left optical frame), told by the wrapper's own image
# names: 4.x ``left/image_rect_color``, ``left_raw/image_raw_color``, ``left_gray/image_rect_gray``,
# ``left_raw_gray/image_raw_gray``; 5.1+ ``left/<color|gray>/<rect|raw>/image``. An OAK's
# ``left/image_raw`` (a mono camera of its own) is not one of them.
_ZED_LEFT = re.compile(
    r"/left(/(colou?r|gr[ae]y)/(rect|raw)/image|(_raw)?(_gray)?/image_(rect|raw)_(color|gray))$"
)
# image_proc's outputs beside a driver's image: ``image_mono`` and ``image_rect`` are grey,
# ``image_color`` and ``image_rect_color`` colour (of one camera: colour_candidates keeps one)
_IMAGE_PROC_GREY = re.compile(r"/image_(mono|rect)$")


def resolve_name(name: str, namespace: str = "") -> str:
    """A topic or frame name as ROS resolves it for a node in ``namespace``: relative names
    (``raspicam_node/image``) go under the namespace (the root when none), ``//`` collapses."""
    name = str(name).strip()
    if not name:
        return name
    if not name.startswith("/"):
        ns = namespace.strip("/")
        name = f"/{ns}/{name}" if ns else f"/{name}"
    return "/" + "/".join(p for p in name.split("/") if p)


def resolve_topic_option(option: str, names) -> list[str]:
    """Topic names given to a command line ``option``, each as :func:`resolve_name` resolves it
    for a node at the root; an empty one (``--topics /tf,``, ``--cameras ""``) is refused in one
    line naming the option, not looked up as a topic with no name."""
    names = list(names)
    resolved = [resolve_name(n) for n in names]
    if not resolved or not all(resolved):
        raise ConfigError(f"{option}: an empty topic name (given {', '.join(map(repr, names)) or 'none'})")
    return resolved


def resolve_namespace(ns: str) -> str:
    """A node namespace as one spelling, for keys: ``vehicle1``, ``/vehicle1`` and ``/vehicle1/`` are
    ``/vehicle1`` (a namespace is absolute either way), ``""`` and ``/`` the root ``/``."""
    return resolve_name(ns or "/")


def transport_base(topic: str) -> str:
    """``/cam/color/image_raw/compressed`` → ``/cam/color/image_raw`` (the stream, whatever transport)."""
    for suffix in _TRANSPORTS:
        if topic.endswith(suffix):
            return topic[: -len(suffix)]
    return topic


_SUBSTITUTIONS = ("{node}", "{ns}", "{namespace}")  # rcl_expand_topic_name's


def check_topic_name(name: str) -> None:
    """ConfigError for a topic name rcl refuses (``rcl_validate_topic_name``, as written): letters,
    digits, ``_`` and ``/``, a ``~`` only first (and then followed by ``/``), rcl's substitutions
    (``{node}``, ``{ns}``, ``{namespace}``), no ``//``, no trailing ``/``, no part starting with a
    digit. Under rclpy an InvalidTopicNameException; the other runtimes refuse the same names, so a
    parameter means one thing everywhere."""
    plain = name
    for sub in _SUBSTITUTIONS:
        plain = plain.replace(sub, "x")
    why = (
        "is empty"
        if not name
        else "ends with '/'"
        if name.endswith("/")
        else "holds '//'"
        if "//" in name
        else "has '~' other than as its first character, followed by '/'"
        if "~" in name[1:] or (name.startswith("~") and name not in ("~",) and not name.startswith("~/"))
        else "holds a character other than letters, digits, '_', '/', a leading '~' and {node}, {ns}"
        if not re.fullmatch(r"[~A-Za-z0-9_/]+", plain)
        else "has a part starting with a digit"
        if any(part[:1].isdigit() for part in plain.lstrip("~").split("/"))
        else ""
    )
    if why:
        raise ConfigError(f"topic {name!r} is not a ROS 2 topic name: it {why}")


def check_topic_parameter(parameter: str, topic: str) -> None:
    """:func:`check_topic_name` for the value of a topic parameter, its ConfigError naming ``parameter``
    (checked where the config is built: a file, ``-p``, launch, before any node starts)."""
    try:
        check_topic_name(topic)
    except ConfigError as exc:
        raise ConfigError(f"{parameter}: {exc}") from None


class TheoraStreamError(ConfigError):
    """A colour or depth topic is a theora video stream (:func:`refuse_theora`): unlike a camera not
    found, a camera recorded in a form no frame can be read from (``replay`` refuses it too, where it
    only warns of no camera)."""


def refuse_theora(topic: str, where: str, role: str, typename: str = "") -> None:
    """:class:`TheoraStreamError` in one line where ``topic`` (of ``role``, colour or depth) is
    theora_image_transport's video stream, by its ``…/theora`` name or its type: it names the
    topics that carry the same images frame by frame."""
    by_name = topic.endswith("/theora")
    if not by_name and typename != THEORA_PACKET:
        return
    others = "/compressedDepth" if role == "depth" else "/compressed"
    if by_name:
        base = transport_base(topic)
        instead = f"the raw {base}, {base}{others} or {base}/zstd"
    else:
        instead = f"the camera's raw image topic or its {others} or /zstd transport"
    raise TheoraStreamError(
        f"{where}: {role} topic {topic} is theora_image_transport's video stream ({THEORA_PACKET}), "
        f"which cannot be decoded frame by frame; use {instead} instead"
    )


def image_type(topic: str, where: str, role: str) -> str:
    """The message type image_transport publishes on the camera topic ``topic``, by its transport:
    ``…/compressed``, ``…/compressedDepth`` and ``…/zstd`` carry sensor_msgs/CompressedImage, the raw
    topic an Image; ``…/theora`` is refused (:func:`refuse_theora`)."""
    refuse_theora(topic, where, role)
    return COMPRESSED_IMAGE if transport_base(topic) != topic else IMAGE


def is_rectified(image_topic: str) -> bool:
    """Whether an image topic carries rectified images (image_proc's ``image_rect``,
    ``image_rect_color``, realsense's ``image_rect_raw``): their camera is the CameraInfo's P, with no
    distortion; any other image (``image_raw``, ``image_color``) is the raw camera, K and d."""
    return bool(_RECTIFIED.search(transport_base(image_topic).lower()))


def info_topic(image_topic: str) -> str:
    """The sibling CameraInfo of an image topic: ``/cam/color/image_raw[/compressed]`` →
    ``/cam/color/camera_info``."""
    return transport_base(image_topic).rsplit("/", 1)[0] + "/camera_info"


@dataclass
class CameraTopics:
    """What the mapper reads. ``depth_camera_info`` is set when depth has its own CameraInfo (then
    it is registered to colour through TF unless its frame is the colour's); ``cloud`` when the
    geometry is a LiDAR cloud (PointCloud2 or Livox CustomMsg) instead of depth."""

    color: str
    camera_info: str
    depth: str = ""
    depth_camera_info: str = ""
    cloud: str = ""

    def describe(self) -> str:
        geo = f"cloud {self.cloud}" if self.cloud else f"depth {self.depth}"
        if self.depth_camera_info and not self.cloud:
            geo += f" (own CameraInfo {self.depth_camera_info}: registered to colour through TF)"
        return f"colour {self.color}, {geo}, camera_info {self.camera_info}"


def depth_info_topic(depth: str) -> str:
    """The CameraInfo of a depth topic's own camera: its sibling ``camera_info``, or '' where the
    name says the depth is registered to colour (``aligned_depth_to_color``, ``depth_registered``,
    ``depth_to_rgb``: its sibling describes the colour camera). ``map``'s rule and the node's ``auto``."""
    return "" if _REGISTERED.search(depth.lower()) else info_topic(depth)


def _shared_namespace(a: str, b: str) -> int:
    """How many leading namespaces two topics share: the depth of the colour's own camera (/front's
    depth for /front's colour) comes first."""
    n = 0
    for x, y in zip(a.split("/")[1:-1], b.split("/")[1:-1], strict=False):
        if x != y:
            break
        n += 1
    return n


def _published(names: list[str], empty: frozenset[str]) -> list[str]:
    """``names`` less the topics without messages, unless none has any (a bag of topics only)."""
    return [n for n in names if n not in empty] or names


# the transports of one stream in the order they are read, after the raw topic (no decode cost):
# depth's own lossless compressedDepth, then zstd_image_transport's (the raw image, deflated), before
# compressed, which holds an 8-bit JPEG of a 16-bit depth image (OpenCV's encoder saturates it);
# colour's compressed (jpeg/png) before the others
_COLOUR_TRANSPORTS = ("/compressed", "/zstd", "/theora", "/compressedDepth")
_DEPTH_TRANSPORTS = ("/compressedDepth", "/zstd", "/compressed", "/theora")


def _one_per_stream(names: list[str], transports: tuple[str, ...]) -> list[str]:
    """One topic per stream: the raw one, else the first of ``transports`` recorded."""
    by_base: dict[str, list[str]] = {}
    for n in names:
        by_base.setdefault(transport_base(n), []).append(n)
    rank = {"": 0} | {t: i + 1 for i, t in enumerate(transports)}
    return [
        min(group, key=lambda n, base=base: (rank[n[len(base) :]], n))
        for base, group in sorted(by_base.items())
    ]


def _best(cands: list[str], score, what: str, option: str) -> str:
    if not cands:
        return ""
    scores = {c: score(c) for c in cands}
    top = max(scores.values())
    best = [c for c in cands if scores[c] == top]
    if len(best) > 1:
        raise ConfigError(f"{what}: ambiguous, candidates {', '.join(best)}; choose one with {option}")
    return best[0]


def _colour_score(topic: str) -> tuple:
    """Higher is likelier the main colour stream, judged on the whole name: a colour/rgb namespace
    (not just ``image_rect_color``, which ZED's left and right cameras share), then not a stereo
    side (ZED 5.1+'s ``left/color/…`` beside ``rgb/color/…``), left before right, then raw/rectified
    images, then colour over grey, then rectified over raw (ZED's registered depth is registered to
    its rectified image: ``rgb/image_rect_color`` beside ``rgb_raw/image_raw_color``, 5.1+'s
    ``rgb/color/rect/image`` beside ``rgb/color/raw/image``)."""
    name = transport_base(topic).lower()
    space = name.rsplit("/", 1)[0] + "/"
    side = 0 if "/right/" in space else 1 if "/left/" in space else 2
    return (
        2 if _COLOUR_WORDS.search(space) else 1 if side == 1 else 0,
        side,
        bool(_RAW_OR_RECTIFIED.search(name)),
        not _GREY.search(name),
        is_rectified(name),
    )


def sensor_of(image_topic: str) -> str:
    """The namespace of the sensor an image topic shows: its CameraInfo's, less the levels by which
    a driver publishes one sensor's twins under CameraInfos of their own (ZED's grey and raw images
    of its ``rgb`` sensor: ``…/rgb/gray/rect/image`` and ``…/rgb_raw/image_raw_color`` are
    ``…/rgb``; so are a ZED's ``left`` images, :data:`_ZED_LEFT`)."""
    sensor = _TWIN_LEVELS.sub("", info_topic(image_topic).rsplit("/", 1)[0])
    if _ZED_LEFT.search(transport_base(image_topic)):
        sensor = sensor.removesuffix("left") + "rgb"
    return sensor


def colour_candidates(types: dict[str, str], empty: frozenset[str] = frozenset()) -> list[str]:
    """The colour image topics, one a camera: one CameraInfo describes one camera, so of the images
    beside one ``camera_info`` (image_proc's ``image_rect_color`` beside the driver's ``image_raw``)
    a colour one before a grey one (image_proc's ``image_mono``), then the driver's own unrectified
    one: a driver's registered depth (realsense's ``aligned_depth_to_color``, Kinect's
    ``depth_to_rgb``) is made in that image, not in image_proc's rectified one. Of one sensor's
    twins under CameraInfos of their own (:func:`sensor_of`) those :func:`_colour_score` ranks first
    (ties stay, for :func:`discover` to call ambiguous). Topics without messages give way as in
    :func:`_published`."""
    names = [
        n
        for n, t in types.items()
        if t in IMAGE_TYPES and not _NOT_COLOUR.search(n.lower()) and info_topic(n) in types
    ]
    by_info: dict[str, list[str]] = {}
    for n in _one_per_stream(_published(names, empty), _COLOUR_TRANSPORTS):
        by_info.setdefault(info_topic(n), []).append(n)
    by_sensor: dict[str, list[str]] = {}
    for n in (min(group, key=_driver_image_first) for group in by_info.values()):
        by_sensor.setdefault(sensor_of(n), []).append(n)
    return sorted(
        n for group in by_sensor.values() for n in group if _colour_score(n) == max(map(_colour_score, group))
    )


def _driver_image_first(topic: str) -> tuple:
    """Order of the images beside one CameraInfo: colour before grey (image_proc's ``image_rect``
    and ``image_mono`` are grey), unrectified before rectified, the driver's ``image_raw`` before
    image_proc's ``image_color``."""
    name = transport_base(topic).lower()
    grey = bool(_GREY.search(name) or _IMAGE_PROC_GREY.search(name))
    return grey, is_rectified(name), "/image_raw" not in name, topic


def depth_candidates(types: dict[str, str], empty: frozenset[str] = frozenset()) -> list[str]:
    names = [
        n
        for n, t in types.items()
        if t in IMAGE_TYPES and _DEPTH.search(n.lower()) and not _NOT_DEPTH.search(n.lower())
    ]
    return _one_per_stream(_published(names, empty), _DEPTH_TRANSPORTS)


def discover(
    types: dict[str, str],
    color: str | None = None,
    depth: str | None = None,
    camera_info: str | None = None,
    depth_camera_info: str | None = None,
    cloud: str | None = None,
    where: str = "bag",
    empty: frozenset[str] = frozenset(),
    frame_of: Callable[[str], str] | None = None,
    registered: bool = False,
) -> CameraTopics:
    """The colour, depth (or cloud) and CameraInfo topics of a bag with topics ``{name: type}``;
    given names are kept (and checked), the others found, preferring topics not in ``empty`` (topics
    the bag holds no message of: a raw transport advertised beside the compressed one that was
    published). ``frame_of``: a topic's header frame id in the bag ('' where it cannot say), read
    only for a depth taken as registered to colour (:func:`_refuse_other_frames_depth`).
    ``registered``: the user says the depth is registered to the colour camera
    (``--depth-registered``, ``mapper.topics.depth_registered``): no CameraInfo of its own is
    looked for, and its header frame is not checked against the colour's.
    :class:`ConfigError` in one line when something is missing, of the wrong type, or ambiguous."""

    def need(name: str, allowed: tuple[str, ...], role: str) -> str:
        if allowed == IMAGE_TYPES:
            refuse_theora(name, where, role, types.get(name, ""))
        if name not in types:
            raise ConfigError(f"{where}: no topic {name} ({role}); topics: {', '.join(sorted(types))}")
        if types[name] not in allowed:
            raise ConfigError(f"{where}: {role} topic {name} is {types[name]}, not {' or '.join(allowed)}")
        return name

    if depth:
        depth = need(depth, IMAGE_TYPES, "depth")
    if color:
        color = need(color, IMAGE_TYPES, "colour")
    elif depth:  # the colour of the named depth's own camera (of its frame, where it is registered)
        colours = colour_candidates(types, empty)
        if frame_of and not depth_camera_info and not _own_camera_info(types, depth):
            own = _frame(frame_of, depth)
            colours = [c for c in colours if own and _colour_frame(frame_of, c) == own] or colours
        color = _colour_of_depth(colours, depth, where)
    else:
        color = _best(
            colour_candidates(types, empty),
            lambda n: _colour_score(n),
            f"{where}: colour topic",
            "--color-topic",
        )
    if not color:  # (none found, for a depth named alone too)
        _refuse_theora_only(types, _NOT_COLOUR, where, "colour")
        images = sorted(n for n, t in types.items() if t in IMAGE_TYPES)
        raise ConfigError(
            f"{where}: no colour image topic with a sibling camera_info found "
            f"(image topics: {', '.join(images) or 'none'}); name one with --color-topic"
        )
    camera_info = need(camera_info or info_topic(color), (CAMERA_INFO,), "colour camera_info")
    if cloud:
        cloud = need(cloud, CLOUD_TYPES, "cloud")
        return CameraTopics(color, camera_info, cloud=cloud)
    if not depth:
        depth = _best(
            [d for d in depth_candidates(types, empty) if transport_base(d) != transport_base(color)],
            lambda n: (_shared_namespace(n, color), bool(_REGISTERED.search(n.lower())), "rect" in n),
            f"{where}: depth topic",
            "--depth-topic",
        )
        if not depth:
            clouds = _published(sorted(n for n, t in types.items() if t in CLOUD_TYPES), empty)
            if len(clouds) == 1:
                return CameraTopics(color, camera_info, cloud=clouds[0])
            _refuse_theora_only(types, _NOT_DEPTH, where, "depth", _DEPTH)
            raise ConfigError(
                f"{where}: no depth image topic found"
                + (
                    f" and several clouds ({', '.join(clouds)}): choose one with --cloud-topic"
                    if clouds
                    else ""
                )
                + "; name one with --depth-topic (or a LiDAR with --cloud-topic)"
            )
    if transport_base(depth) == transport_base(color):
        raise ConfigError(f"{where}: colour and depth are the same stream ({color}, {depth})")
    if depth_camera_info:
        depth_camera_info = need(depth_camera_info, (CAMERA_INFO,), "depth camera_info")
    elif not registered:
        depth_camera_info = _own_camera_info(types, depth)
    if not depth_camera_info:
        _refuse_other_cameras_depth(colour_candidates(types, empty), color, depth, where)
        if frame_of and not registered:
            _refuse_other_frames_depth(frame_of, color, camera_info, depth, where)
    return CameraTopics(color, camera_info, depth, depth_camera_info or "")


def _own_camera_info(types: dict[str, str], depth: str) -> str:
    """The depth's own CameraInfo topic where the bag records it (:func:`depth_info_topic`), else ''
    (the depth is then taken as registered to colour)."""
    name = depth_info_topic(depth)
    return name if types.get(name) == CAMERA_INFO else ""


def _frame(frame_of: Callable[[str], str], topic: str) -> str:
    return (frame_of(topic) or "").strip("/")


def _colour_frame(frame_of: Callable[[str], str], color: str, camera_info: str = "") -> str:
    """The frame of a colour camera: its images' header frame id, else its CameraInfo's (the frame
    the mapper places it in)."""
    return _frame(frame_of, color) or _frame(frame_of, camera_info or info_topic(color))


def _refuse_other_frames_depth(
    frame_of: Callable[[str], str], color: str, camera_info: str, depth: str, where: str
) -> None:
    """:class:`ConfigError` in one line where a depth taken as registered to colour (no CameraInfo of
    its own: its pixels read as the colour camera's) says in its header that it is in another
    camera's frame: a ZED's ``depth/depth_registered`` is its left camera's, not ``right/…``'s,
    though one namespace holds both. Nothing said where either frame is unknown."""
    depth_frame = _frame(frame_of, depth)
    color_frame = _colour_frame(frame_of, color, camera_info) if depth_frame else ""
    if depth_frame and color_frame and depth_frame != color_frame:
        raise ConfigError(
            f"{where}: depth {depth} is in frame {depth_frame}, colour {color} in {color_frame}: a depth "
            "with no CameraInfo of its own is registered to the colour camera of its frame; name that "
            "camera's colour with --color-topic, or the depth's CameraInfo with --depth-info-topic, or, "
            "where this depth is registered to this colour camera whatever frame it names (an older "
            "driver's aligned_depth_to_color), say so with --depth-registered "
            "(mapper.topics.depth_registered: true)"
        )


def _depth_camera_level(colours: list[str], depth: str) -> int:
    """How many namespace levels the depth shares with the colour of its own camera: the most any
    colour topic shares with it (``/front/aligned_depth_to_color/…`` and ``/front/color/…``: 1)."""
    base = transport_base(depth)
    return max((_shared_namespace(transport_base(c), base) for c in colours), default=0)


def _colour_of_depth(colours: list[str], depth: str, where: str) -> str:
    """The colour topic of a named depth's own camera: of the colour candidates, those sharing the
    most namespace levels with it (one camera's; :func:`_best` then picks among that camera's
    streams as with no depth named). The only candidate when there is one; :class:`ConfigError` in
    one line naming them where none shares a namespace with the depth, or several cameras do alike."""
    if len(colours) <= 1:
        return _best(colours, _colour_score, f"{where}: colour topic", "--color-topic")
    level = _depth_camera_level(colours, depth)
    own = [c for c in colours if _shared_namespace(transport_base(c), transport_base(depth)) == level]
    if level == 0:
        raise ConfigError(
            f"{where}: colour topic: none of {', '.join(colours)} is of the camera of depth {depth} "
            "(no namespace in common); choose one with --color-topic"
        )
    try:
        return _best(own, _colour_score, "", "")
    except ConfigError:
        raise ConfigError(
            f"{where}: colour topic of depth {depth}: ambiguous, candidates {', '.join(own)}; "
            "choose one with --color-topic"
        ) from None


def _refuse_other_cameras_depth(colours: list[str], color: str, depth: str, where: str) -> None:
    """:class:`ConfigError` in one line where a depth taken as registered to colour (no CameraInfo of
    its own) is by its name another camera's: another colour topic shares more namespace levels with
    it than ``color`` does (``/rear/aligned_depth_to_color/…`` is registered to ``/rear/color/…``,
    not ``/front/color/…``; its pixels are not the front camera's, whatever frame its header names).
    A depth with its own CameraInfo is placed through TF and may be any camera's."""
    base = transport_base(depth)
    level = _depth_camera_level([*colours, color], depth)
    if _shared_namespace(transport_base(color), base) >= level:
        return
    own = [c for c in colours if _shared_namespace(transport_base(c), base) == level]
    raise ConfigError(
        f"{where}: depth {depth} is of another camera than colour {color} (that of {', '.join(own)}) "
        "and has no CameraInfo of its own to place it through TF; name that camera's colour with "
        "--color-topic, or the depth's CameraInfo with --depth-info-topic"
    )


def _refuse_theora_only(types: dict[str, str], exclude, where: str, role: str, include=None) -> None:
    """Where no ``role`` image is found: :func:`refuse_theora` for a theora stream that would have been
    one (a recording of ``…/theora`` only), rather than a line saying there is none."""
    for name in sorted(n for n, t in types.items() if t == THEORA_PACKET):
        low = name.lower()
        if not exclude.search(low) and (include is None or include.search(low)):
            refuse_theora(name, where, role, THEORA_PACKET)


TF_MESSAGE = "tf2_msgs/msg/TFMessage"


def tf_topics(
    bag, tf: str = "/tf", tf_static: str = "/tf_static", how: str = "", warn=None
) -> list[tuple[str, bool]]:
    """``[(topic, static)]`` a recording's TF is read from: the one rule of ``map``, ``info``,
    ``replay``, ``hd-predict`` and ``hd-export``'s check. ``bag``: a :class:`~gs_mapping.bag.BagReader`
    (its topics' names, types and counts). ``tf`` and ``tf_static`` (the global ones by default)
    while ``tf`` holds a message; where it holds none (absent, or advertised and recorded empty by
    ``ros2 bag record -a``) but one robot's namespaced ``/robot1/tf`` does (as Clearpath's and Nav2's
    multi-robot setups record), that robot's pair too (beside a global ``/tf_static``), said once. A
    robot is a namespace whose ``…/tf`` holds a message (a parked robot's latched ``…/tf_static``
    alone is none; where no namespace's ``…/tf`` has any, one whose ``…/tf_static`` has). Several
    robots': where the command has a way to choose one (``how`` says it: ``map``'s
    ``mapper.topics.tf``), :class:`ConfigError` naming them; else the global pair only, ``warn``
    (default: a logged warning) told in one line naming them. Only TFMessage topics the bag has are
    listed."""
    import logging

    kinds = {t.name: t.count for t in bag.topics if t.type == TF_MESSAGE}
    pair = [(tf_static, True), (tf, False)]
    published = {name for name, count in kinds.items() if count}  # (an empty topic hides nothing)
    own = {tf.rsplit("/", 1)[0], tf_static.rsplit("/", 1)[0]}

    def spaces_of(leaf: str) -> list[str]:
        return sorted({n.rsplit("/", 1)[0] for n in published if n.rsplit("/", 1)[-1] == leaf} - own)

    leaf = "tf" if spaces_of("tf") else "tf_static"
    spaces = spaces_of(leaf)
    if tf not in published and len(spaces) > 1:
        robots = ", ".join(f"{s}/{leaf}" for s in spaces)
        several = f"{bag.path}: no message on {tf}; the bag's TF is in several robots' namespaces ({robots})"
        if how:
            raise ConfigError(f"{several}: one robot's TF topics must be chosen{how}")
        (warn or logging.getLogger(__name__).warning)(f"{several}: only {tf} and {tf_static} read")
    elif tf not in published and spaces:
        logging.getLogger(__name__).info(
            f"{bag.path}: no message on {tf}; TF read from {spaces[0]}/tf (and {spaces[0]}/tf_static)"
        )
        pair += [(f"{spaces[0]}/tf_static", True), (f"{spaces[0]}/tf", False)]
    return [(name, static) for name, static in pair if name in kinds]
