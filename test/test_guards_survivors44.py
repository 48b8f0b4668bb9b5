"""Guards for mutants that survived the project's tests (mutation run 44, seed 2612061).

Each test checks the project against something outside its own bookkeeping (hand-counted frames of
bags written with rosbags only, the CDR wire format and a scaled pinhole camera computed by hand,
Pillow's and numpy's own exceptions, Python's star-import rule, the geometry of a scene built so
that its true colour calibration is known), and fails on the surviving mutant it is named after
while passing on the real code.

Run 44: 40 lines drawn, 36 mutants run (4 lines had no non-equivalent mutation: two ``def`` lines,
a return annotation, a closing parenthesis), 22 killed, 14 survived: 2 equivalent
(pointcloud2.py:9 ``from __future__``; factory.py:375 element dtype, re-coerced by both
factories), 12 real, each caught here.
"""

from __future__ import annotations

import json
import struct
import types

import numpy as np
import pytest

FAST_YAML = """
/**:
  ros__parameters:
    mapper:
      device: cpu
      seeding: {{stride: 2}}
      optim: {{iterations: 2, first_iterations: 4, refine_iterations: 0}}
{extra}"""


def _cfg(tmp_path, extra=""):
    p = tmp_path / "cfg.yaml"
    p.write_text(FAST_YAML.format(extra=extra))
    return p


def test_no_usable_frame_counts_every_frame_the_mapper_refused_as_skipped(tmp_path, capsys):
    """Outside thing: a bag written with rosbags only, 4 colour/depth pairs, every depth a wall at
    1.5 m, mapped with ``mapper.max_depth_m: 1.0`` (docs: the upper end of the valid depth range).
    By hand every one of the 4 pairs is refused, so ``map``'s one-line error must say
    "4 colour/depth pairs, 4 skipped" (the frames refused by the mapper's depth check count as
    skipped, as metrics.json's ``skipped_detail.invalid_depth`` does).
    (Mutant run.py:171 dropping ``mapper.stats.skipped_invalid_depth``: "4 pairs, 0 skipped".)"""
    pytest.importorskip("torch")
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("cv2")
    import test_hostile_robot_inputs as rb

    bag = rb.robot_bag(tmp_path / "bag", n=4)
    cfg = _cfg(tmp_path, "      max_depth_m: 1.0\n")
    rc, last, err = rb._map(capsys, bag, tmp_path / "out", cfg)
    assert rc != 0
    assert "no usable frame" in err
    assert "(4 colour/depth pairs, 4 skipped;" in err, err
    assert "within [0.1, 1.0] m" in err


def test_depth_of_another_width_than_colour_is_refused_by_the_mapper():
    """Outside thing: pixel alignment. A depth image can only be registered pixel-for-pixel to a
    colour image of the same height *and* width; a 16x24 depth beside a 32x24 colour image is not
    mappable whatever its values (the mapper would index colour with depth's pixel grid), and
    ``depth_problem`` says both sizes as WIDTHxHEIGHT. (Mutant mapper.py:128 comparing only the
    heights: the frame is taken as valid.)"""
    pytest.importorskip("torch")
    from gs_mapping.camera import Camera
    from gs_mapping.mapping.frames import Frame
    from gs_mapping.mapping.mapper import IncrementalMapper
    from gs_mapping.mapping.mapper_config import MapperConfig

    mapper = IncrementalMapper(MapperConfig(device="cpu"), device="cpu")
    K = np.array([[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]])
    rgb = np.full((24, 32, 3), 0.5, np.float32)
    narrow = Frame(rgb=rgb, depth=np.full((24, 16), 2.0, np.float32), camera=Camera(K, 32, 24), stamp_ns=1)
    short = Frame(rgb=rgb, depth=np.full((12, 32), 2.0, np.float32), camera=Camera(K, 32, 24), stamp_ns=2)
    same = Frame(rgb=rgb, depth=np.full((24, 32), 2.0, np.float32), camera=Camera(K, 32, 24), stamp_ns=3)
    assert mapper.depth_problem(narrow) == "depth image is 16x24, colour 32x24"
    assert mapper.depth_problem(short) == "depth image is 32x12, colour 32x24"
    assert mapper.depth_problem(same) is None


@pytest.mark.parametrize("data", [[1, 2, 256], [1, -1], ["a", "b"], [[1, 2], [3]]])
def test_byte_payload_that_numpy_cannot_read_as_uint8_is_a_message_error(data):
    """Outside thing: rclpy's ``uint8[]`` (an ``array.array('B')``), which raises OverflowError for
    256 / -1 and TypeError for strings and ragged lists (numpy >= 2 refuses them too; Humble's numpy
    1.21 wrapped 256 to 0 and -1 to 255 without a word: refused since session #26); the project's
    contract (errors.py: a bad message is a MessageError, one line naming the field) must hold for
    every one of them, and the field named. (Mutant factory.py:78-80 not catching them: numpy's
    exception escapes as a traceback.)"""
    import array

    from gs_mapping.errors import MessageError
    from gs_mapping.messages.factory import as_uint8_array

    with pytest.raises((OverflowError, ValueError, TypeError)):
        array.array("B", data)  # rclpy's own uint8[] refuses it (the premise; numpy < 2 would wrap 256)
    with pytest.raises(MessageError, match=r"^pkg/msg/T\.data: cannot read as bytes"):
        as_uint8_array(data, "pkg/msg/T.data")
    assert as_uint8_array([0, 7, 255], "w").tolist() == [0, 7, 255]


def test_converted_int16_and_float32_sequences_serialise_to_the_hand_computed_cdr():
    """Outside thing: the CDR wire format (OMG CDR, little-endian, as ROS 2 writes it), computed by
    hand. An rclpy-like message whose ``int16[]``/``float32[]`` fields are a Python list or an
    ``array.array`` (what rclpy gives) converted by ``convert_message`` must serialise with 2-byte /
    4-byte elements: Int16MultiArray [1, -2, 3] is header 00 01 00 00, layout (empty dim sequence,
    data_offset 0), length 3, then 01 00 fe ff 03 00. (Run 44's mutant factory.py:375, dropping the
    element dtype, turned out equivalent because RosbagsFactory re-coerces; this guards the wire
    bytes of the rclpy -> rosbags path, which no other test compares by hand.)"""
    import array

    from gs_mapping.messages import convert_message, serialize_cdr

    layout = types.SimpleNamespace(dim=[], data_offset=0)
    want = bytes([0, 1, 0, 0]) + struct.pack("<III", 0, 0, 3) + struct.pack("<3h", 1, -2, 3)
    for data in ([1, -2, 3], array.array("h", [1, -2, 3])):
        look = types.SimpleNamespace(layout=layout, data=data)
        msg = convert_message(look, "std_msgs/msg/Int16MultiArray")
        assert bytes(serialize_cdr(msg, "std_msgs/msg/Int16MultiArray")) == want

    look = types.SimpleNamespace(layout=layout, data=[0.5, -1.25])
    msg = convert_message(look, "std_msgs/msg/Float32MultiArray")
    want = bytes([0, 1, 0, 0]) + struct.pack("<III", 0, 0, 2) + struct.pack("<2f", 0.5, -1.25)
    assert bytes(serialize_cdr(msg, "std_msgs/msg/Float32MultiArray")) == want


def test_mono16_depth_image_is_millimetres_with_0_and_65535_invalid():
    """Outside thing: a sensor_msgs/Image built with rosbags' own Humble typestore (not the
    project's writer), encoding ``mono16`` (what OpenNI-era drivers publish depth as), rows padded
    to 8 bytes. By hand: 1500 mm -> 1.5 m, 250 mm -> 0.25 m, 0 and 65535 -> invalid (NaN), exactly
    as for 16UC1 (the docstring of depth_image_to_metres and compressed_depth accept mono16 as
    millimetres). (Mutant image.py:233 taking only 16UC1: mono16 depth is refused.)"""
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.messages.camera_image import depth_to_metres

    T = get_typestore(Stores.ROS2_HUMBLE).types
    mm = np.array([[0, 1500, 7], [65535, 250, 1000]], "<u2")
    rows = np.zeros((2, 8), np.uint8)
    rows[:, :6] = mm.view(np.uint8).reshape(2, 6)
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="d")
    want = np.array([[np.nan, 1.5, 0.007], [np.nan, 0.25, 1.0]], np.float32)
    for enc in ("mono16", "16UC1"):
        msg = T["sensor_msgs/msg/Image"](
            header=hdr, height=2, width=3, encoding=enc, is_bigendian=0, step=8, data=rows.reshape(-1)
        )
        got = depth_to_metres(msg)
        assert got.dtype == np.float32 and got.shape == (2, 3)
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


def test_metrics_skipped_detail_counts_no_pose_and_no_camera_info_apart(tmp_path, capsys):
    """Outside thing: a bag written with rosbags only whose odom -> base_link TF starts at the third
    of 5 frames (tf2 cannot place the first two: no pose), each frame with its CameraInfo. By hand:
    ``metrics.json``'s ``skipped_detail`` is no_pose 2, no_camera_info 0 (docs: the skipped frames by
    reason). (Mutant run.py:218 writing no_pose's count under no_camera_info.)"""
    pytest.importorskip("torch")
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("cv2")
    import test_hostile_robot_inputs as rb

    def tf_dyn(ns, i):
        return [] if i < 2 else [rb._tf(ns, "map", "odom"), rb._tf(ns, "odom", "base_link", (0.02 * i, 0, 0))]

    bag = rb.robot_bag(tmp_path / "bag", n=5, tf_dyn=tf_dyn)
    rc, last, err = rb._map(capsys, bag, tmp_path / "out", _cfg(tmp_path))
    assert rc == 0, err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    detail = metrics["skipped_detail"]
    assert detail["no_pose"] == 2, detail
    assert detail["no_camera_info"] == 0, detail


@pytest.mark.parametrize("offset, value", [(11, 0), (35, 0)])
def test_compressed_depth_png_that_pillow_rejects_with_value_or_syntax_error_is_a_message_error(
    offset, value
):
    """Outside thing: Pillow itself. A valid 16-bit PNG written by OpenCV, then one byte broken:
    the IHDR length field set to 0 (Pillow raises ``ValueError: Truncated IHDR chunk``) or the second
    chunk's type (Pillow raises ``SyntaxError: broken PNG file``): neither is an OSError. Inside a
    compressedDepth message (image_transport's 12-byte header, then the PNG) the project's contract
    is one MessageError naming the field, as for any corrupt stream. (Mutant compressed_depth.py:129
    catching only OSError: Pillow's ValueError / SyntaxError escapes as a traceback.)"""
    import io

    cv2 = pytest.importorskip("cv2")
    from PIL import Image
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.errors import MessageError
    from gs_mapping.messages.camera_image import depth_to_metres

    ok, buf = cv2.imencode(".png", (np.arange(48 * 64).reshape(48, 64) * 13 % 65535).astype(np.uint16))
    assert ok
    png = bytearray(buf.tobytes())
    png[offset] = value
    with pytest.raises(Exception) as pillow:  # the premise: what Pillow raises on these bytes
        with Image.open(io.BytesIO(bytes(png))) as im:
            im.load()
    T = get_typestore(Stores.ROS2_HUMBLE).types
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="d")
    payload = struct.pack("<iff", 0, 0.0, 0.0) + bytes(png)
    msg = T["sensor_msgs/msg/CompressedImage"](
        header=hdr, format="16UC1; compressedDepth png", data=np.frombuffer(payload, np.uint8).copy()
    )
    with pytest.raises(MessageError, match="cannot decode compressedDepth PNG") as got:
        depth_to_metres(msg)
    assert type(pillow.value).__name__ in str(got.value)


def test_star_import_of_messages_gives_every_name_the_package_re_exports():
    """Outside thing: Python's import system (language reference, "the import statement"): with
    ``__all__`` defined, ``from gs_mapping.messages import *`` binds exactly the names in it. Every
    public name that messages/__init__.py imports from its own submodules (read from its source with
    ``ast``) is there to be re-exported, so a star import must give all of them.
    (Mutants messages/__init__.py:152 and :119 dropping "pointcloud2_to_array" / "make_stamp" from
    ``__all__``: still importable by name, silently missing from a star import.)"""
    import ast
    import importlib

    mod = importlib.import_module("gs_mapping.messages")
    tree = ast.parse(open(mod.__file__, encoding="utf-8").read())
    re_exported = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
        if not (alias.asname or alias.name).startswith("_")
    }
    assert {"pointcloud2_to_array", "make_stamp", "bytes_to_uint8_multiarray"} <= re_exported
    ns: dict = {}
    exec("from gs_mapping.messages import *", ns)
    missing = sorted(re_exported - set(ns))
    assert missing == []


def test_colour_calibration_of_a_registered_camera_is_the_identity_with_a_3d_offset(tmp_path, capsys):
    """Outside thing: the scene's geometry, by construction. A bag written with rosbags only: the
    robot slides 4 cm sideways per frame in front of a wall 1.5 m away, and each colour image is the
    wall's fixed texture seen through the depth camera itself (colour registered to depth). So the
    true colour camera is the depth camera: ``calibrate_color`` must report focal scale ~1 and
    ``t_depth_color`` ~0 as a 3-vector (x, y, z) in metres in metrics.json.
    (Mutant run.py:237 writing only two of its three components.)"""
    pytest.importorskip("torch")
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("cv2")
    pytest.importorskip("scipy")
    import test_hostile_robot_inputs as rb

    step, z = 0.04, 1.5
    cx, cy = (rb.W - 1) / 2, (rb.H - 1) / 2

    def color(ns, fid, _rgb):
        i = (ns - rb.T0) // rb.DT
        v, u = np.mgrid[0 : rb.H, 0 : rb.W].astype(float)
        x = -step * i + (u - cx) * z / rb.FX  # optical x = -base_link y
        y = (v - cy) * z / rb.FX
        tex = np.stack(
            [
                0.5 + 0.4 * np.sin(9 * x) * np.cos(7 * y),
                0.5 + 0.4 * np.sin(5 * x + 3 * y),
                0.5 + 0.4 * np.cos(11 * y - 4 * x),
            ],
            -1,
        )
        return rb._image(ns, fid, np.rint(tex * 255).astype(np.uint8), "rgb8")

    def tf_dyn(ns, i):
        return [rb._tf(ns, "map", "odom"), rb._tf(ns, "odom", "base_link", (0.0, step * i, 0.0))]

    bag = rb.robot_bag(tmp_path / "bag", n=6, color=color, tf_dyn=tf_dyn)
    cfg = _cfg(tmp_path, "      calibrate_color: true\n      calibration_frames: 6\n")
    rc, last, err = rb._map(capsys, bag, tmp_path / "out", cfg)
    assert rc == 0, err
    cal = json.loads((tmp_path / "out" / "metrics.json").read_text())["color_calibration"]
    t = cal["t_depth_color"]
    assert len(t) == 3 and all(isinstance(c, float) and np.isfinite(c) for c in t), t
    assert np.linalg.norm(t) < 0.05, cal
    assert abs(cal["focal_scale"] - 1.0) < 0.05, cal


def test_optimisation_renders_at_render_scale_with_pixel_centres_kept():
    """Outside thing: a hand computation of the scaled pinhole camera. With ``optim.render_scale``
    0.5 (docs: "0.5 = half resolution") a 32x24 frame with fx = fy = 40, principal point (15.5, 11.5)
    is optimised at 16x12 with fx = fy = 20 and principal point ((15.5 + 0.5) / 2 - 0.5, (11.5 + 0.5)
    / 2 - 0.5) = (7.5, 5.5) (pixel centres at +0.5 map onto each other). Every render the window
    optimiser asks for is recorded. (Mutant mapper.py:197 building the view at scale 1.0: 32x24.)"""
    pytest.importorskip("torch")
    from mapper_configs import small_cpu_config

    from gs_mapping.camera import Camera
    from gs_mapping.mapping.frames import Frame
    from gs_mapping.mapping.mapper import IncrementalMapper

    W, H = 32, 24
    K = np.array([[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]])
    v, u = np.mgrid[0:H, 0:W]
    rgb = np.stack([0.5 + 0.4 * np.sin(u / 3.0), 0.5 + 0.4 * np.cos(v / 2.0), 0.3 + 0 * u], -1).astype(
        np.float32
    )
    frame = Frame(rgb, np.full((H, W), 1.5, np.float32), Camera(K, W, H), stamp_ns=1, index=0)
    cfg = small_cpu_config()
    cfg.optim.iterations = cfg.optim.first_iterations = 2
    cfg.optim.render_scale = 0.5
    m = IncrementalMapper(cfg, "cpu")
    seen = []
    inner = m.optimizer.render_fn

    def spy(params, camera):
        seen.append((camera.width, camera.height, *np.asarray(camera.K)[[0, 1, 0, 1], [0, 1, 2, 2]].tolist()))
        return inner(params, camera)

    m.optimizer.render_fn = spy
    m.add_frame(frame)
    assert seen, "no optimisation render"
    assert set(seen) == {(16, 12, 20.0, 20.0, 7.5, 5.5)}


def test_colour_image_of_another_size_than_its_camera_info_is_skipped_as_invalid_colour(tmp_path):
    """Outside thing: sensor_msgs/CameraInfo's definition (width/height: "the image dimensions with
    which the camera was calibrated"; K is in those pixels). A bag written with rosbags only whose 4
    colour images are 64x48 while their CameraInfo (and the depth) say 32x24: K does not describe
    these pixels, so by hand all 4 frames are skipped as invalid colour, the reason naming both
    sizes. (Mutant frames.py:410 not calling check_color_size: frames come out with a 32x24 camera
    over a 64x48 image.)"""
    pytest.importorskip("rosbags.rosbag2")
    pytest.importorskip("cv2")
    import test_hostile_robot_inputs as rb

    from gs_mapping.bag import BagReader
    from gs_mapping.mapping.frames import FrameStats, read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.topics import discover

    def big_colour(ns, fid, rgb):
        return rb._image(ns, fid, np.repeat(np.repeat(rgb, 2, 0), 2, 1), "rgb8")

    bag = rb.robot_bag(tmp_path / "bag", n=4, color=big_colour)
    with BagReader(bag) as b:
        f = discover({t.name: t.type for t in b.topics})
    topics = TopicsConfig(color=f.color, depth=f.depth, camera_info=f.camera_info)
    stats = FrameStats()
    frames = list(read_frames(bag, topics, stats))
    assert frames == []
    assert stats.invalid_color == 4 and stats.pairs == 4
    assert "colour image is 64x48 but its CameraInfo says 32x24" in stats.reasons[0]


@pytest.mark.parametrize("kind", ["ndarray", "bytearray"])
def test_uint8_multiarray_is_a_snapshot_of_the_payload_not_a_view(kind):
    """Outside thing: message value semantics. A ROS message holds its own data (rclpy copies the
    payload into the message; a publisher may reuse its buffer for the next payload), and the
    function's docstring says "copied once". So overwriting the caller's buffer after building the
    message must not change the message, and the message's layout says the payload's size by hand
    (one dimension "bytes", size = stride = 10). (Mutant std.py:22 ``copy=False``: the message
    aliases the caller's ndarray / bytearray.)"""
    from gs_mapping.messages import bytes_to_uint8_multiarray

    payload = np.arange(10, dtype=np.uint8) + 100
    buf = payload.copy() if kind == "ndarray" else bytearray(payload.tobytes())
    msg = bytes_to_uint8_multiarray(buf)
    buf[:] = b"\x00" * 10 if kind == "bytearray" else 0
    assert bytes(np.asarray(msg.data, np.uint8)) == payload.tobytes()
    (dim,) = msg.layout.dim
    assert (dim.label, dim.size, dim.stride, msg.layout.data_offset) == ("bytes", 10, 10, 0)
