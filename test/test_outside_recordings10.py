"""Outside review of issue 16 (real robot recordings), tenth pass: recordings users have that were
refused or misread, each built from what its producer's own source writes (read for this review):

- zstd_image_transport (ros-perception/image_transport_plugins, ``zstd_publisher.cpp`` and
  ``zlib_cpp.cpp``): topic ``<base>/zstd``, a sensor_msgs/CompressedImage of ``format`` ``"zstd"``
  whose data is a 17-byte little-endian header (uint32 height, uint32 width, uint8 is_bigendian,
  uint32 step, uint32 length of the encoding), the encoding, then the Image's ``data`` compressed by
  ``deflateInit2(level 3, windowBits 15 + 16)``: zlib's deflate in a gzip wrapper, not zstd (open PR
  #214 would make it a zstd frame; read too). Written here with Python's zlib, the library the plugin
  links, and the zstd module for the frame.
- compressed_image_transport's ``tiff`` (``compressed_publisher.cpp``): ``format`` ``"<encoding>; tiff
  compressed "``, data ``cv::imencode(".tiff", toCvShare(image, ""), {XDPI, YDPI, RESUNIT})``: the
  Image's own Mat, whatever its encoding (8/16/32-bit: 16UC1 and 32FC1 depth too). Written here with
  OpenCV's own encoder (and Pillow's for one-channel images, where the numpy-1.26 venv has no cv2).
- ZED (stereolabs/zed-ros2-wrapper): the left images are the rgb ones (``publishImageWithInfo(mat_left,
  mPubLeft…)`` and ``(mat_left, mPubRgb…)``, both in the left optical frame; CHANGELOG v5.1.0: "RGB
  sensor topics (corresponding to the left sensor for the Stereo cameras)"), 4.x names
  ``left/image_rect_color``, ``left_raw/image_raw_color``, ``left_gray/image_rect_gray``,
  ``left_raw_gray/image_raw_gray``, 5.1+ ``left/<color|gray>/<rect|raw>/image``. Wrapper 3.x publishes
  ``depth/depth_registered`` at ``depth.depth_downsample_factor`` of the sensor's size and the images
  at ``video.img_downsample_factor`` (``mMatResolDepth`` / ``mMatResolVideo``), both in
  ``mLeftCamOptFrameId``, the depth's CameraInfo being the left one (``mDepthCamInfoMsg =
  mLeftCamInfoMsg``: the video size). 4.x and 5.x publish both at one size (``mMatResol``).
- rosbag2's own test bag ``rosbag2_py/test/resources/mcap/convert_a``: written by "mcap go #(devel)",
  a message logged at 0, Statistics starting at 1 ms (the Go writer before foxglove/mcap#770 took a
  start of 0 for "none yet"), the chunk index at 0, metadata.yaml at 0; its channels keep no QoS
  (``offered_qos_profiles: ''``) while metadata.yaml lists them. Rust's writer (foxglove/mcap#924)
  misses 0 in its chunk indexes as well. Written here with the ``mcap`` library, its Statistics (and
  chunk index) set as those writers set them.
- realsense-ros 4.55.1+ (``realsense2_camera/launch/rs_launch.py``, ros2-development): ``camera_name``
  and ``camera_namespace`` both default to ``camera``, and ``rs_node_setup.cpp`` names every topic
  ``"~/" + stream + "/image_" + ("rect_" for the depth sensor) + "raw"``: ``/camera/camera/...``.
  4.54.1 and before put the node in namespace ``camera_name`` with relative topics: ``/camera/...``.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from gs_mapping.errors import MessageError
from gs_mapping.messages import COMPRESSED_IMAGE, default_factory
from gs_mapping.messages.camera_image import color_to_rgb, depth_to_metres
from gs_mapping.messages.factory import make_header

REPO = Path(__file__).resolve().parents[1]


def _msg(fmt: str, data: bytes, stamp: int = 0, frame: str = "cam"):
    f = default_factory()
    return f.make(
        COMPRESSED_IMAGE,
        header=make_header(stamp, frame, f),
        format=fmt,
        data=np.frombuffer(data, np.uint8).copy(),
    )


def _rows(img: np.ndarray, step: int | None = None, bigendian: bool = False) -> tuple[bytes, int]:
    """An image's ``data`` and ``step`` as a driver fills a sensor_msgs/Image: rows of ``step`` bytes
    (zero padding after the pixels), elements in the byte order ``is_bigendian`` says."""
    a = np.ascontiguousarray(img, img.dtype.newbyteorder(">" if bigendian else "<"))
    rows = a.reshape(a.shape[0], -1).view(np.uint8)
    step = step or rows.shape[1]
    out = np.zeros((a.shape[0], step), np.uint8)
    out[:, : rows.shape[1]] = rows
    return out.tobytes(), step


def _zstd_transport(img, encoding, step=None, bigendian=False, codec="gzip", cut=None, **header) -> bytes:
    """ZstdPublisher::publish's CompressedImage.data for an Image of ``img`` (zstd_publisher.cpp)."""
    data, step = _rows(img, step, bigendian)
    if codec == "gzip":  # zlib::Comp(level, true): deflateInit2(level, Z_DEFLATED, 15 + 16, 8, default)
        c = zlib.compressobj(3, zlib.DEFLATED, 15 + 16, 8, zlib.Z_DEFAULT_STRATEGY)
        packed = c.compress(data) + c.flush()
    else:
        from gs_mapping.zstd_frames import zstd

        packed = zstd.compress(data)
    enc = encoding.encode()
    fields = {"height": img.shape[0], "width": img.shape[1], "big": int(bigendian), "step": step} | header
    head = struct.pack("<IIBII", fields["height"], fields["width"], fields["big"], fields["step"], len(enc))
    return (head + enc + packed)[:cut]


def _expected_metres(a: np.ndarray) -> np.ndarray:
    """REP-118 by hand: 16UC1 millimetres (0 and 65535 none), 32FC1 metres (non-finite or ≤ 0 none)."""
    if a.dtype == np.uint16:
        return np.where((a == 0) | (a == 65535), np.nan, a.astype(np.float32) * np.float32(0.001))
    return np.where(np.isfinite(a) & (a > 0), a, np.nan).astype(np.float32)


RNG = np.random.default_rng(10)
RGB = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)
MM = RNG.integers(0, 6000, (6, 10), dtype=np.uint16)
MM[0, :3] = (0, 65535, 1)
METRES = RNG.uniform(0.2, 9.0, (6, 10)).astype(np.float32)
METRES[1, :3] = (np.nan, -1.0, np.inf)


# -- 1. zstd_image_transport ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "encoding, pixels, rgb",
    [
        ("rgb8", RGB, RGB),
        ("bgr8", RGB[:, :, ::-1], RGB),
        ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)]), RGB),
        ("mono8", RGB[:, :, 1], np.repeat(RGB[:, :, 1:2], 3, axis=2)),
        ("mono16", RGB[:, :, 1].astype(np.uint16) * 257 + 3, np.repeat(RGB[:, :, 1:2], 3, axis=2)),
    ],
)
@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_zstd_transport_colour_decodes_to_the_source_pixels(encoding, pixels, rgb, codec):
    """A colour Image through zstd_image_transport (padded rows: a step past the pixels) comes back
    pixel for pixel, 16-bit grey by its high byte as every 16-bit colour image."""
    msg = _msg("zstd", _zstd_transport(pixels, encoding, step=pixels[0].nbytes + 4, codec=codec))
    np.testing.assert_array_equal(color_to_rgb(msg), rgb)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_zstd_transport_depth_decodes_to_the_source_metres(bigendian, codec):
    """16UC1 millimetres and 32FC1 metres, either byte order, are the source's depth exactly."""
    for encoding, src in (("16UC1", MM), ("32FC1", METRES)):
        msg = _msg("zstd", _zstd_transport(src, encoding, bigendian=bigendian, codec=codec))
        np.testing.assert_array_equal(depth_to_metres(msg), _expected_metres(src))


def _zstd_cases():
    good = _zstd_transport(MM, "16UC1")
    head = 17 + len("16UC1")
    c = zlib.compressobj(9, zlib.DEFLATED, 15 + 16)
    bomb = c.compress(bytes(64 << 20)) + c.flush()  # 64 MiB of zeros in ~64 kB
    return {
        "shorter than the header": (good[:10], "10 bytes, shorter than the transport's 17-byte header"),
        "encoding length lies": (
            good[:13] + struct.pack("<I", 10**9) + good[17:],
            "claims a 1000000000-byte",
        ),
        "no rows": (_zstd_transport(MM, "16UC1", height=0), "claims 0 rows"),
        "4 GiB of rows": (_zstd_transport(MM, "16UC1", height=65535, step=65535), "claims 65535 rows"),
        "stream cut short": (good[: head + 20], "cut short"),
        "more rows than sent": (
            _zstd_transport(MM, "16UC1", height=9),
            "inflates to 120 bytes, its header says 9 rows",
        ),
        "fewer rows than sent": (_zstd_transport(MM, "16UC1", height=2), "inflates to more than 40 bytes"),
        "a bomb": (good[:head] + bomb, "inflates to more than 120 bytes"),
        "neither zlib nor zstd": (good[:head] + b"JFIF" * 10, "cannot inflate the image"),
        "zstd frame cut short": (
            _zstd_transport(MM, "16UC1", codec="zstd", cut=-3),
            "cannot inflate the image",
        ),
    }


@pytest.mark.parametrize("case", list(_zstd_cases()))
def test_zstd_transport_hostile_payloads_are_one_line_errors(case):
    data, says = _zstd_cases()[case]
    with pytest.raises(MessageError) as e:
        depth_to_metres(_msg("zstd", data))
    assert says in str(e.value) and "\n" not in str(e.value)


# -- 1. compressed_image_transport's tiff ----------------------------------------------------------------
def _cv_tiff(mat: np.ndarray) -> bytes:
    """CompressedPublisher::publish, case TIFF: cv::imencode(".tiff") of the Image's own Mat with the
    plugin's default parameters (tiff.xdpi 72, tiff.ydpi 72, tiff.res_unit inch = 2)."""
    cv2 = pytest.importorskip("cv2")
    ok, buf = cv2.imencode(
        ".tiff", mat, [cv2.IMWRITE_TIFF_XDPI, 72, cv2.IMWRITE_TIFF_YDPI, 72, cv2.IMWRITE_TIFF_RESUNIT, 2]
    )
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    "encoding, mat, rgb",
    [
        ("rgb8", RGB, RGB),  # (OpenCV takes it for BGR: the file holds B, G, R as its R, G, B)
        ("bgr8", RGB[:, :, ::-1], RGB),
        ("bgra8", np.dstack([RGB[:, :, ::-1], np.full(RGB.shape[:2], 9, np.uint8)]), RGB),
        ("mono8", RGB[:, :, 2], np.repeat(RGB[:, :, 2:3], 3, axis=2)),
        ("rgb16", RGB.astype(np.uint16) * 256 + 200, RGB),
    ],
)
def test_tiff_colour_decodes_to_the_source_pixels(encoding, mat, rgb):
    np.testing.assert_array_equal(color_to_rgb(_msg(f"{encoding}; tiff compressed ", _cv_tiff(mat))), rgb)


@pytest.mark.parametrize("writer", ["opencv", "pillow"])
def test_tiff_depth_decodes_to_the_source_metres(writer):
    """16UC1 and 32FC1 depth (the reason compressed_image_transport gained tiff) are exact."""
    from PIL import Image

    for encoding, src in (("16UC1", MM), ("32FC1", METRES)):
        if writer == "opencv":
            data = _cv_tiff(src)
        else:
            buf = io.BytesIO()
            Image.fromarray(src).save(buf, format="TIFF")
            data = buf.getvalue()
        np.testing.assert_array_equal(
            depth_to_metres(_msg(f"{encoding}; tiff compressed ", data)), _expected_metres(src)
        )


def _claiming_tiff(side: int, samples: int, bits: int) -> bytes:
    """A little-endian TIFF whose IFD claims ``side`` x ``side`` pixels of ``samples`` x ``bits`` (and
    holds 4 bytes of them)."""
    photometric, fmt = (2, 1) if samples == 3 else (1, 3 if bits == 32 else 1)
    tags = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, bits), (259, 3, 1, 1), (262, 3, 1, photometric),
            (273, 4, 1, 8), (277, 3, 1, samples), (278, 4, 1, side), (279, 4, 1, 4), (339, 3, 1, fmt)]  # fmt: skip
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + b"\0" * 4
    return b"II*\x00" + struct.pack("<I", 12) + b"\0\0\0\0" + ifd


@pytest.mark.filterwarnings("ignore:Corrupt EXIF", "ignore:Image size")  # (Pillow on those payloads)
def test_tiff_hostile_payloads_are_one_line_errors():
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(MM).save(buf, format="TIFF")
    good = buf.getvalue()
    cases = [
        ("16UC1; tiff compressed ", good[: len(good) // 2], "cannot decode tiff"),
        # (Pillow lets 144 M pixels by with a warning: 1.7 GB as float, refused before it is allocated)
        ("rgb8; tiff compressed ", _claiming_tiff(12000, 3, 8), "the TIFF claims 12000x12000 pixels"),
        # (Pillow's bomb check, or ours where another test has raised Image.MAX_IMAGE_PIXELS)
        (
            "32FC1; tiff compressed ",
            _claiming_tiff(100000, 1, 32),
            ("DecompressionBombError", "claims 100000x100000"),
        ),
        ("rgb8; tiff compressed ", good, "holds 1-channel uint16, its format says rgb8"),
        ("yuv420; tiff compressed ", good, "names no image encoding this TIFF holds"),
    ]
    for fmt, data, says in cases:
        with pytest.raises(MessageError) as e:
            depth_to_metres(_msg(fmt, data))
        says = (says,) if isinstance(says, str) else says
        assert any(w in str(e.value) for w in says) and "\n" not in str(e.value), fmt


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_hostile_zstd_and_tiff_frames_never_stop_the_mapper_node():
    """mapper_node on zstd colour and a tiff depth: each corrupt message is rejected on its own (the
    node's diagnostics name it) and the good pair after it is mapped."""
    pytest.importorskip("torch")
    from hostile_cases import tf_message

    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    base = "/camera/camera/color/image_raw"
    t = cfg["mapper"].topics
    t.color, t.camera_info = base + "/zstd", "/camera/camera/color/camera_info"
    t.depth = "/camera/camera/aligned_depth_to_color/image_raw/compressed"
    node = MapperNode(bus.context("mapper_node"), cfg)
    f, s = bus.factory, 10**9
    K = np.array([[8.0, 0, 4.5], [0, 8.0, 2.5], [0, 0, 1]])
    bus.inject(t.camera_info, intrinsics_to_camera_info(CameraIntrinsics(10, 6, K, frame_id="cam"), f, s), s)
    bus.inject("/tf_static", tf_message(f, 0, "map", "cam", 0.0), s)
    depth = np.full((6, 10), 1500, np.uint16)
    bus.inject(t.color, _msg("zstd", _zstd_transport(RGB, "rgb8", cut=-9), s), s)
    assert node.diag.rejected[t.color] == 1 and "cut short" in node.diag.last_error
    bus.inject(t.depth, _msg("16UC1; tiff compressed ", _cv_tiff(depth), s), s)
    s2 = 2 * s
    bus.inject(t.color, _msg("zstd", _zstd_transport(RGB, "rgb8"), s2), s2)
    bus.inject(t.depth, _msg("16UC1; tiff compressed ", _cv_tiff(depth)[:40], s2), s2)
    assert node.diag.rejected[t.depth] == 1 and "cannot decode tiff" in node.diag.last_error
    assert node.mapper.stats.frames == 0
    s3 = 3 * s
    bus.inject(t.color, _msg("zstd", _zstd_transport(RGB, "rgb8"), s3), s3)
    bus.inject(t.depth, _msg("16UC1; tiff compressed ", _cv_tiff(depth), s3), s3)
    assert node.mapper.stats.frames == 1


RS = "/camera/camera"


@pytest.mark.parametrize("layout", ["zstd colour, tiff depth", "tiff colour, zstd depth"])
def test_a_realsense_recording_on_zstd_and_tiff_maps_its_own_pixels(shared_data, tmp_path, layout):
    """The shared RealSense recording's first frames written again as a Jazzy user records them with
    zstd_image_transport or compressed_image_transport's tiff: ``map``'s topic discovery picks those
    topics and the bag's frames (read_frames: what ``map`` trains on) hold the decoded source's pixels
    and depths exactly."""
    from PIL import Image
    from real_layouts import _copy_tf

    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.mapping.frames import read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.messages import CAMERA_INFO, compressed_image_to_numpy, stamp_to_ns
    from gs_mapping.messages.compressed_depth import compressed_depth_to_numpy
    from gs_mapping.topics import discover

    tiff_colour = layout.startswith("tiff")
    colour = f"{RS}/color/image_raw/" + ("compressed" if tiff_colour else "zstd")
    depth = f"{RS}/aligned_depth_to_color/image_raw/" + ("zstd" if tiff_colour else "compressed")
    src_c, src_d, info = (f"{RS}/color/image_raw/compressed", f"{RS}/aligned_depth_to_color/image_raw/compressedDepth",
                          f"{RS}/color/camera_info")  # fmt: skip
    rgbs, mms = {}, {}
    dst = tmp_path / "jazzy"
    with BagReader(shared_data / "realsense_kitchen_rgbd") as r, BagWriter(dst) as w:
        _copy_tf(r, w)
        for name, kind in ((colour, COMPRESSED_IMAGE), (depth, COMPRESSED_IMAGE), (info, CAMERA_INFO)):
            w.add_topic(name, kind)
        for topic, logged, msg in r.messages([src_c, src_d, info]):
            s = stamp_to_ns(msg.header.stamp)
            if topic == info:
                w.write(info, logged, msg)
            elif topic == src_c and len(rgbs) < 3:
                rgbs[s] = rgb = compressed_image_to_numpy(msg)  # (JPEG decoded: the source pixels)
                data = _cv_tiff(rgb[:, :, ::-1]) if tiff_colour else _zstd_transport(rgb[:, :, ::-1], "bgr8")
                w.write(
                    colour,
                    logged,
                    _msg("bgr8; tiff compressed " if tiff_colour else "zstd", data, s, msg.header.frame_id),
                )
            elif topic == src_d and len(mms) < 3:
                mms[s] = mm = compressed_depth_to_numpy(msg)
                if tiff_colour:
                    data, fmt = _zstd_transport(mm, "16UC1"), "zstd"
                else:
                    buf = io.BytesIO()
                    Image.fromarray(mm).save(buf, format="TIFF")
                    data, fmt = buf.getvalue(), "16UC1; tiff compressed "
                w.write(depth, logged, _msg(fmt, data, s, msg.header.frame_id))
    with BagReader(dst) as b:
        found = discover({t.name: t.type for t in b.topics})
    assert (found.color, found.depth, found.camera_info) == (colour, depth, info)
    topics = TopicsConfig(color=colour, depth=depth, camera_info=info, depth_camera_info="")
    frames = list(read_frames(dst, topics))
    assert len(frames) == 3
    for fr in frames:
        np.testing.assert_array_equal(np.rint(fr.rgb * 255).astype(np.uint8), rgbs[fr.stamp_ns])
        np.testing.assert_array_equal(fr.depth, np.nan_to_num(_expected_metres(mms[fr.stamp_ns]), nan=0.0))


def test_depth_is_read_from_zstd_before_an_8_bit_compressed_copy():
    """Jazzy's ``ros2 bag record -a`` with the raw topic left out: depth on ``compressedDepth``,
    ``zstd`` (both lossless) and ``compressed`` (an 8-bit JPEG by default): compressedDepth first,
    then zstd; colour from ``compressed`` as before, zstd where it is the only one."""
    from gs_mapping.topics import CAMERA_INFO, discover

    c, d = f"{RS}/color/image_raw", f"{RS}/aligned_depth_to_color/image_raw"
    info = {f"{RS}/color/camera_info": CAMERA_INFO}
    every = {f"{n}/{t}": COMPRESSED_IMAGE for n in (c, d) for t in ("compressed", "compressedDepth", "zstd")}
    assert (discover(every | info).color, discover(every | info).depth) == (
        c + "/compressed",
        d + "/compressedDepth",
    )
    no_cd = {k: v for k, v in every.items() if not k.endswith("compressedDepth")}
    assert discover(no_cd | info).depth == d + "/zstd"
    only_zstd = {k: v for k, v in every.items() if k.endswith("/zstd")}
    assert (discover(only_zstd | info).color, discover(only_zstd | info).depth) == (c + "/zstd", d + "/zstd")


# -- 2. ZED: the left images are the rgb sensor's; a registered depth at another resolution ------------------
ZED = "/zed/zed_node"
IMG, INFO = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"


def _zed_types(*sensors: str) -> dict[str, str]:
    """``{topic: type}`` of a ZED recording: each image with its CameraInfo (image_transport's
    CameraPublisher: ``<ns>/camera_info`` beside ``<ns>/<image>``), and the registered depth."""
    t = {f"{ZED}/depth/depth_registered": IMG, f"{ZED}/depth/camera_info": INFO}
    for s in sensors:
        ns, image = s.rsplit("/", 1)
        t |= {f"{ZED}/{s}": IMG, f"{ZED}/{ns}/camera_info": INFO}
    return t


V4_LEFT = (
    "left/image_rect_color",
    "left_raw/image_raw_color",
    "left_gray/image_rect_gray",
    "left_raw_gray/image_raw_gray",
)
V5_LEFT = ("left/color/rect/image", "left/color/raw/image", "left/gray/rect/image", "left/gray/raw/image")


@pytest.mark.parametrize("left", [V4_LEFT, V5_LEFT], ids=["4.x", "5.1+"])
def test_zed_left_images_are_its_rgb_camera(left):
    """Every left image name of the wrapper is the rgb sensor (``sensor_of``); the right camera and an
    OAK's ``left`` (a mono camera of its own) are not. ``hd-predict`` (find_cameras) on a recording
    with rgb, left and right takes the rgb image and the right camera, not the left one beside them;
    with the left images alone (5.1+'s ``video.publish_rgb: false``) the left colour one is the camera
    and ``map``'s colour topic."""
    from types import SimpleNamespace

    from gs_mapping.topics import discover, sensor_of
    from gsmap_hd.predict_bag import find_cameras

    rgb = "rgb/image_rect_color" if left is V4_LEFT else "rgb/color/rect/image"
    right = "right/image_rect_color" if left is V4_LEFT else "right/color/rect/image"
    for name in left:
        assert sensor_of(f"{ZED}/{name}") == sensor_of(f"{ZED}/{rgb}/compressed") == f"{ZED}/rgb", name
    assert sensor_of(f"{ZED}/{right}") == f"{ZED}/right"
    assert sensor_of("/oak/left/image_raw") == "/oak/left"

    def bag(types):
        return SimpleNamespace(topics=[SimpleNamespace(name=n, type=t, count=3) for n, t in types.items()])

    everything = _zed_types(rgb, right, *left)
    assert find_cameras(bag(everything)) == sorted([f"{ZED}/{rgb}", f"{ZED}/{right}"])
    assert discover(everything).color == f"{ZED}/{rgb}"
    alone = _zed_types(*left)
    assert find_cameras(bag(alone)) == [f"{ZED}/{left[0]}"] == [discover(alone).color]


def _zed3_bag(
    path: Path, video: tuple[int, int], depth: tuple[int, int], depth_frame: str = "zed_left_optical"
):
    """Three frames as zed-ros2-wrapper 3.x records them: ``rgb/image_rect_color`` (bgra8, its
    ``rgb/camera_info`` scaled to the published size as ``getCameraInformation(mMatResolVideo)`` does)
    and ``depth/depth_registered`` (32FC1) of ``depth`` = (W, H), with ``depth/camera_info`` the left
    CameraInfo itself (the video size), a static map → left optical frame. Returns the depths."""
    from hostile_cases import tf_message

    from gs_mapping.bag import BagWriter
    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info, numpy_to_image

    native = np.array([[52.0, 0, 31.7], [0, 52.0, 17.9], [0, 0, 1]])  # a 64x36 sensor
    K = np.diag([video[0] / 64, video[1] / 36, 1.0]) @ native
    f = default_factory()
    frame = "zed_left_optical"
    out = []
    with BagWriter(path) as w:
        for name, kind in ((f"{ZED}/rgb/image_rect_color", IMG), (f"{ZED}/rgb/camera_info", INFO),
                           (f"{ZED}/depth/depth_registered", IMG), (f"{ZED}/depth/camera_info", INFO)):  # fmt: skip
            w.add_topic(name, kind)
        w.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        w.write("/tf_static", 1, tf_message(f, 0, "map", frame, 0.0))
        for i in range(3):
            s = (i + 1) * 10**8
            info = intrinsics_to_camera_info(CameraIntrinsics(*video, K, frame_id=frame), f, s)
            bgra = RNG.integers(0, 256, (video[1], video[0], 4), dtype=np.uint8)
            d = RNG.uniform(0.5, 8.0, (depth[1], depth[0])).astype(np.float32)
            d[0, 0] = np.nan
            w.write(f"{ZED}/rgb/camera_info", s, info)
            w.write(f"{ZED}/depth/camera_info", s, info)
            w.write(f"{ZED}/rgb/image_rect_color", s, numpy_to_image(bgra, "bgra8", s, frame, f))
            w.write(f"{ZED}/depth/depth_registered", s, numpy_to_image(d, "32FC1", s, depth_frame, f))
            out.append(d)
    return out


@pytest.mark.parametrize("video, depth", [((64, 36), (32, 18)), ((64, 36), (19, 10)), ((32, 18), (64, 36))],
                         ids=["depth_downsample_factor 0.5", "0.3", "img_downsample_factor 0.5"])  # fmt: skip
def test_zed3_registered_depth_of_another_resolution_is_the_colour_cameras_view(tmp_path, video, depth):
    """A 3.x recording whose depth is published at another size than its images (same optical frame):
    each colour pixel takes the depth pixel whose area holds its centre, an independent nearest
    sample ``d[floor((v + ½)·h/H), floor((u + ½)·w/W)]``; it used to be refused for its size."""
    from gs_mapping.bag import BagReader
    from gs_mapping.mapping.frames import FrameStats, read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.topics import discover

    depths = _zed3_bag(tmp_path / "zed", video, depth)
    with BagReader(tmp_path / "zed") as b:
        found = discover({t.name: t.type for t in b.topics})
    assert (found.color, found.depth, found.depth_camera_info) == (
        f"{ZED}/rgb/image_rect_color", f"{ZED}/depth/depth_registered", "")  # fmt: skip
    topics = TopicsConfig(
        color=found.color, depth=found.depth, camera_info=found.camera_info, depth_camera_info=""
    )
    stats = FrameStats()
    frames = list(read_frames(tmp_path / "zed", topics, stats))
    assert len(frames) == 3, stats.reasons
    (W, H), (w, h) = video, depth
    rows = np.floor((np.arange(H) + 0.5) * h / H).astype(int)
    cols = np.floor((np.arange(W) + 0.5) * w / W).astype(int)
    for fr, d in zip(frames, depths, strict=True):
        if w < W:  # (a coarser depth: each colour pixel's own depth pixel)
            np.testing.assert_array_equal(fr.depth, np.nan_to_num(d, nan=0.0)[rows[:, None], cols[None, :]])
        else:  # (a finer one: the nearest of the depth pixels inside the colour pixel)
            blocks = np.nan_to_num(d, nan=np.inf).reshape(H, h // H, W, w // W).min(axis=(1, 3))
            np.testing.assert_array_equal(fr.depth, np.where(np.isinf(blocks), 0.0, blocks))


@pytest.mark.parametrize("depth, frame", [((32, 24), "zed_left_optical"), ((32, 18), "camera_depth_optical_frame")],
                         ids=["another aspect (a crop)", "another frame"])  # fmt: skip
def test_a_registered_depth_resized_only_in_the_colours_frame_and_aspect(tmp_path, depth, frame):
    """The rule is no wider than the wrapper: a depth of another aspect, or in another optical frame
    (a RealSense ``depth/image_rect_raw`` taken as registered by ``depth_camera_info: ''``), is still
    refused for its size, one line a frame."""
    from gs_mapping.mapping.frames import FrameStats, read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig

    _zed3_bag(tmp_path / "zed", (64, 36), depth, depth_frame=frame)
    topics = TopicsConfig(color=f"{ZED}/rgb/image_rect_color", depth=f"{ZED}/depth/depth_registered",
                          camera_info=f"{ZED}/rgb/camera_info", depth_camera_info="")  # fmt: skip
    stats = FrameStats()
    assert list(read_frames(tmp_path / "zed", topics, stats)) == []
    assert (
        stats.invalid_depth == 3
        and f"depth image is {depth[0]}x{depth[1]}, colour is 64x36" in stats.reasons[0]
    )


def test_mapper_node_maps_a_zed3_depth_at_half_the_image_size():
    """mapper_node on the wrapper's topics: a half-size depth_registered beside its image is mapped."""
    pytest.importorskip("torch")
    from hostile_cases import tf_message

    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info, numpy_to_image
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    t = cfg["mapper"].topics
    t.color, t.camera_info = f"{ZED}/rgb/image_rect_color", f"{ZED}/rgb/camera_info"
    t.depth = f"{ZED}/depth/depth_registered"
    node = MapperNode(bus.context("mapper_node"), cfg)
    f, s, frame = bus.factory, 10**9, "zed_left_optical"
    K = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]])
    bus.inject(t.camera_info, intrinsics_to_camera_info(CameraIntrinsics(32, 24, K, frame_id=frame), f, s), s)
    bus.inject("/tf_static", tf_message(f, 0, "map", frame, 0.0), s)
    bus.inject(
        t.color, numpy_to_image(RNG.integers(0, 256, (24, 32, 4), dtype=np.uint8), "bgra8", s, frame, f), s
    )
    bus.inject(t.depth, numpy_to_image(np.full((12, 16), 1.5, np.float32), "32FC1", s, frame, f), s)
    assert node.mapper.stats.frames == 1, node.diag.last_error


# -- 3. MCAP statistics that leave out a message logged at time 0 -------------------------------------------
LATCHED_QOS = (  # one offered profile as rosbag2 writes it into metadata.yaml (transient local)
    "- history: 1\n  depth: 1\n  reliability: 1\n  durability: 1\n  deadline:\n    sec: 9223372036\n"
    "    nsec: 854775807\n  lifespan:\n    sec: 9223372036\n    nsec: 854775807\n  liveliness: 1\n"
    "  liveliness_lease_duration:\n    sec: 9223372036\n    nsec: 854775807\n"
    "  avoid_ros_namespace_conventions: false"
)


def _old_go_start(times: list[int]) -> int:
    """The Go writer's Statistics start before foxglove/mcap#770: ``if m.LogTime < start || start == 0``."""
    start = 0
    for t in times:
        if t < start or start == 0:
            start = t
    return start


def _mcap_bag(folder: Path, times: list[int], writer: str, metadata_start: int | None = 0) -> Path:
    """A ROS 2 MCAP of ``/chatter`` Strings logged at ``times`` written with the ``mcap`` library the
    way rosbag2's convert_a was: channels without QoS (``offered_qos_profiles: ''``), Statistics whose
    start is the old Go writer's (``go``) or, with the chunk index's too, Rust's (``rust``,
    foxglove/mcap#924: a chunk's start of 0 taken for none yet); ``right``: the library's own. With
    ``metadata_start`` a metadata.yaml as rosbag2 writes it (version 5, as convert_a's) beside it."""
    import yaml
    from mcap.writer import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    String = ts.types["std_msgs/msg/String"]
    folder.mkdir()
    path = folder / "rewriter_0.mcap"
    with path.open("wb") as f:
        w = Writer(f)
        w.start(profile="ros2", library="mcap go #(devel)")
        schema = w.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        channel = w.register_channel("/chatter", "cdr", schema, {"offered_qos_profiles": ""})
        for i, t in enumerate(times):
            w.add_message(channel, t, ts.serialize_cdr(String(data=f"m{i}"), "std_msgs/msg/String"), t, i)
        if writer != "right":  # (the library keeps what it writes here; those writers got these wrong)
            w._Writer__statistics.message_start_time = _old_go_start(times)
        if writer == "rust":
            w._Writer__chunk_builder.message_start_time = _old_go_start(times)
        w.finish()
    if metadata_start is not None:
        info = {
            "version": 5,
            "storage_identifier": "mcap",
            "relative_file_paths": [path.name],
            "duration": {"nanoseconds": max(times) - metadata_start},
            "starting_time": {"nanoseconds_since_epoch": metadata_start},
            "message_count": len(times),
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": "/chatter",
                        "type": "std_msgs/msg/String",
                        "serialization_format": "cdr",
                        "offered_qos_profiles": LATCHED_QOS,
                    },  # fmt: skip
                    "message_count": len(times),
                }
            ],
            "compression_format": "",
            "compression_mode": "",
            "files": [
                {
                    "path": path.name,
                    "starting_time": {"nanoseconds_since_epoch": metadata_start},
                    "duration": {"nanoseconds": max(times) - metadata_start},
                    "message_count": len(times),
                }
            ],  # fmt: skip
        }
        (folder / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}))
    return folder if metadata_start is not None else path


TIMES = [0, 1_000_000, 2_000_000, 2_000_000, 100_000_000]  # convert_a's: the first at 0


@pytest.mark.parametrize("writer, form", [("go", "bag"), ("go", "bare .mcap"), ("rust", "bag")])
def test_a_message_at_time_0_that_the_mcap_summary_misses_is_no_disagreement(tmp_path, caplog, writer, form):
    """convert_a's shape: the reader's span starts at the message logged at 0 (the chunk index says so
    for Go's; for Rust's, whose chunk index does not, metadata.yaml's 0 is read and found true), with
    no warning that metadata.yaml disagrees, nor that its QoS differs from a storage that kept none;
    the latched QoS metadata.yaml gives is kept, and every message is read."""
    from gs_mapping.bag import BagReader

    bag = _mcap_bag(tmp_path / "convert", TIMES, writer, metadata_start=0 if form == "bag" else None)
    with caplog.at_level(logging.INFO, logger="gs_mapping.bag"), BagReader(bag) as b:
        assert (b.start_ns, b.end_ns, b.message_count) == (0, 100_000_000, 5)
        assert [s for _, s, _ in b.raw_messages()] == TIMES
        assert b.topic("/chatter").latched == (form == "bag")
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_metadata_yaml_that_claims_an_earlier_start_than_any_message_is_still_said(tmp_path, caplog):
    """Control: a metadata.yaml starting at 0 beside messages from 1 s on (a right summary) is a lie:
    the storage's span is used and the warning says so; reading found nothing earlier."""
    from gs_mapping.bag import BagReader

    times = [10**9, 2 * 10**9, 3 * 10**9]
    with (
        caplog.at_level(logging.WARNING, logger="gs_mapping.bag"),
        BagReader(_mcap_bag(tmp_path / "b", times, "right")) as b,
    ):
        assert (b.start_ns, b.end_ns) == (10**9, 3 * 10**9)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "metadata.yaml disagrees" in said[0] and "time span 0..3000000000" in said[0]


def test_every_message_is_read_where_a_chunk_index_misses_one_logged_at_0(tmp_path):
    """A bare MCAP of Rust's writer (foxglove/mcap#924: Statistics and chunk index from 1 ms): nothing
    in it says a message was logged at 0 short of reading every message, so its span is reported from
    1 ms; but the message is read (rosbags reads a chunk from its index's start unless told 0)."""
    from gs_mapping.bag import BagReader

    with BagReader(_mcap_bag(tmp_path / "rust", TIMES, "rust", metadata_start=None)) as b:
        assert [s for _, s, _ in b.raw_messages()] == TIMES


# -- 4. realsense-ros 4.55.1+: /camera/camera/... ------------------------------------------------------------
# realsense2_camera/launch/rs_launch.py (ros2-development): configurable_parameters' defaults, and the
# Node(namespace=camera_namespace, name=camera_name) it launches
RS_LAUNCH_DEFAULTS = {"camera_namespace": "camera", "camera_name": "camera", "align_depth.enable": "false"}


def _rs_topic(stream: str, leaf: str) -> str:
    """rs_node_setup.cpp: ``"~/" << stream_name << "/image_" << (depth sensor ? "rect_" : "") << "raw"``
    and ``"~/" << stream_name << "/camera_info"``; ``~`` is the node's namespace and name (ROS 2's
    private namespace substitution)."""
    ns, node = RS_LAUNCH_DEFAULTS["camera_namespace"], RS_LAUNCH_DEFAULTS["camera_name"]
    return f"/{ns}/{node}/{stream}/{leaf}"


def test_the_mapper_defaults_are_the_topics_of_realsense_ros_default_launch():
    """``ros2 launch realsense2_camera rs_launch.py`` as it comes (no aligned depth): the mapper's
    defaults (TopicsConfig, config/full.yaml, which the launch files load) are its colour, depth and
    colour CameraInfo, and ``depth_camera_info: auto`` registers that depth by its own CameraInfo."""
    import yaml

    from gs_mapping.mapping.mapper_config import TopicsConfig

    want = {
        "color": _rs_topic("color", "image_raw"),
        "depth": _rs_topic("depth", "image_rect_raw"),
        "camera_info": _rs_topic("color", "camera_info"),
    }
    assert want["color"] == "/camera/camera/color/image_raw"
    defaults = TopicsConfig()
    assert {k: getattr(defaults, k) for k in want} == want
    full = yaml.safe_load((REPO / "config" / "full.yaml").read_text())["/**"]["ros__parameters"]["mapper"][
        "topics"
    ]
    assert {k: full[k] for k in want} == want
    assert defaults.depth_camera_info == "auto" and defaults.depth_info() == _rs_topic("depth", "camera_info")


@pytest.mark.parametrize("recording", ["7scenes_kitchen_rgbd", "realsense_kitchen_rgbd"])
def test_a_parameter_file_with_the_former_defaults_still_finds_a_recordings_topics(shared_data, recording):
    """A parameter file an older ``gs-mapping params`` wrote names the former defaults (realsense-ros
    4.54's ``/camera/color/image_raw``, ...): ``map --config`` takes them for defaults, not a choice,
    and finds the recording's topics, the shared RealSense one's under ``/camera/camera`` as the
    7-Scenes one's under ``/camera``."""
    import dataclasses

    from gs_mapping.cli.topic_choice import fill_topics
    from gs_mapping.mapping.mapper_config import MapperConfig

    bag = shared_data / recording
    cfg = MapperConfig()
    cfg.topics = dataclasses.replace(
        cfg.topics, color="/camera/color/image_raw", depth="/camera/depth/image_rect_raw",
        camera_info="/camera/color/camera_info",
    )  # fmt: skip
    fill_topics(bag, cfg, {}, "test")
    ns = "/camera/camera" if recording.startswith("realsense") else "/camera"
    assert (
        cfg.topics.color.startswith(f"{ns}/color/image_raw")
        and cfg.topics.camera_info == f"{ns}/color/camera_info"
    )
