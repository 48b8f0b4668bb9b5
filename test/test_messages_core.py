"""Factories, CDR, stamps, CameraInfo, TFMessage, UInt8MultiArray and String conversions."""

from __future__ import annotations

import array
import time
from types import SimpleNamespace as NS

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_mapping.camera import Camera
from gs_mapping.errors import MessageError, TFError
from gs_mapping.geometry import Transform, TransformStamped, quat_to_matrix
from gs_mapping.messages import (
    CAMERA_INFO,
    STRING,
    TF_MESSAGE,
    UINT8_MULTI_ARRAY,
    CameraIntrinsics,
    MessageFactory,
    RclpyFactory,
    RosbagsFactory,
    bytes_to_uint8_multiarray,
    camera_info_to_camera,
    camera_info_to_intrinsics,
    default_factory,
    deserialize_cdr,
    intrinsics_to_camera_info,
    json_to_string_message,
    make_header,
    ns_to_stamp_fields,
    serialize_cdr,
    stamp_to_ns,
    string_message_to_json,
    tf_message_to_transforms,
    transforms_to_tf_message,
    uint8_multiarray_to_bytes,
)


def cdr(msg, typename):
    return deserialize_cdr(serialize_cdr(msg, typename), typename)


# --- factory --------------------------------------------------------------------------------------
def test_factory_fills_defaults_and_nested_dicts():
    f = default_factory()
    assert isinstance(f, MessageFactory) and isinstance(RclpyFactory(), MessageFactory)
    info = f.make(CAMERA_INFO, width=4, header={"frame_id": "cam", "stamp": {"sec": 3}})
    assert info.header.frame_id == "cam" and info.header.stamp.sec == 3 and info.header.stamp.nanosec == 0
    assert info.k.shape == (9,) and info.d.shape == (0,) and info.roi.do_rectify is False
    back = cdr(info, CAMERA_INFO)
    assert back.width == 4 and back.height == 0 and back.distortion_model == ""
    marker = f.make("visualization_msgs/msg/Marker", points=[{"x": 1.0}, {"y": 2.0}])
    assert [p.x for p in marker.points] == [1.0, 0.0]
    assert cdr(marker, "visualization_msgs/msg/Marker").points[1].y == 2.0


def test_factory_errors_name_type_and_field():
    f = RosbagsFactory()
    with pytest.raises(MessageError, match="std_msgs/msg/Header.*unknown field.*'stmap'"):
        f.make("std_msgs/msg/Header", stmap=1)
    with pytest.raises(MessageError, match="nope_msgs/msg/X"):
        f.make("nope_msgs/msg/X")
    with pytest.raises(MessageError, match=r"CameraInfo\.k.*9 elements.*got 4"):
        f.make(CAMERA_INFO, k=[1, 2, 3, 4])
    with pytest.raises(MessageError, match="nope_msgs/msg/X"):
        serialize_cdr(NS(), "nope_msgs/msg/X")
    with pytest.raises(MessageError, match="Header.*no field 'frame_id'"):
        serialize_cdr(NS(stamp=NS(sec=1, nanosec=0)), "std_msgs/msg/Header")


def test_rclpy_factory_needs_ros():
    with pytest.raises(MessageError, match="sensor_msgs/msg/Image"):
        RclpyFactory().make("sensor_msgs/msg/Image")


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**31) * 10**9, (2**31 - 1) * 10**9 + 999_999_999))
def test_stamp_round_trip(ns):
    fields = ns_to_stamp_fields(ns)
    assert 0 <= fields["nanosec"] < 10**9
    header = cdr(make_header(ns, "f"), "std_msgs/msg/Header")
    assert stamp_to_ns(header.stamp) == ns


def test_stamp_out_of_range():
    with pytest.raises(MessageError, match="int32"):
        ns_to_stamp_fields(2**31 * 10**9)


# --- CameraInfo -----------------------------------------------------------------------------------
K = np.array([[292.5, 0, 159.75], [0, 292.5, 119.75], [0, 0, 1]])


def test_camera_info_round_trip():
    intr = CameraIntrinsics(
        320, 240, K, [0.1, -0.2, 0.001, 0.002, 0.05], "plumb_bob", "cam_optical", 1_700_000_000_123_456_789
    )
    msg = cdr(intrinsics_to_camera_info(intr), CAMERA_INFO)
    assert list(msg.p) == [292.5, 0, 159.75, 0, 0, 292.5, 119.75, 0, 0, 0, 1, 0]
    assert list(msg.r) == list(np.eye(3).reshape(-1))
    back = camera_info_to_intrinsics(msg)
    assert (back.width, back.height, back.distortion_model, back.frame_id, back.stamp_ns) == (
        320,
        240,
        "plumb_bob",
        "cam_optical",
        1_700_000_000_123_456_789,
    )
    assert np.array_equal(back.K, K) and np.array_equal(back.D, intr.D)
    T = np.eye(4)
    T[:3, 3] = [1, 2, 3]
    cam = back.camera(T)
    assert isinstance(cam, Camera) and cam.frame_id == "cam_optical" and np.array_equal(cam.T_map_cam, T)
    uv, z = cam.project(np.array([[1.0, 2.0, 5.0]]))
    assert np.allclose(uv, [[159.75, 119.75]]) and np.allclose(z, 2.0)
    assert camera_info_to_camera(msg).width == 320
    again = CameraIntrinsics.from_camera(cam, 5)
    assert np.array_equal(again.K, K) and again.stamp_ns == 5


def test_camera_info_rclpy_style_and_ros1_names():
    hdr = NS(stamp=NS(sec=0, nanosec=7), frame_id="c")
    msg = NS(
        header=hdr, width=2, height=1, distortion_model="", d=array.array("d"), k=np.array(K.reshape(-1))
    )
    assert camera_info_to_intrinsics(msg).stamp_ns == 7
    msg = NS(header=hdr, width=2, height=1, distortion_model="", D=[], K=tuple(K.reshape(-1)))
    assert camera_info_to_intrinsics(msg).fx == 292.5


@pytest.mark.parametrize(
    "k,size,pattern",
    [
        (K * np.array([[np.nan, 1, 1], [1, 1, 1], [1, 1, 1]]), (320, 240), r"CameraInfo.*k.*non-finite"),
        (np.zeros((3, 3)), (320, 240), r"CameraInfo.*k.*uncalibrated"),
        (K * np.diag([-1, 1, 1]), (320, 240), r"CameraInfo.*k.*fx=-292.5"),
        (K * np.diag([1, 0, 1]), (320, 240), r"CameraInfo.*k.*fy=0"),
        (K, (0, 240), r"CameraInfo.*width/height.*0x240"),
    ],
)
def test_camera_info_rejects_bad_intrinsics(k, size, pattern):
    f = default_factory()
    msg = f.make(
        CAMERA_INFO,
        header=make_header(0, "cam", f),
        width=size[0],
        height=size[1],
        k=np.asarray(k, np.float64).reshape(-1),
    )
    with pytest.raises(MessageError, match=pattern):
        camera_info_to_intrinsics(msg)


# --- TF -------------------------------------------------------------------------------------------
def _random_transforms(rng, n):
    out = []
    for i in range(n):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        out.append(
            TransformStamped(
                f"p{i}", f"c{i}", int(rng.integers(0, 2**31 * 10**9)), Transform(rng.normal(size=3) * 10, q)
            )
        )
    return out


def test_tf_round_trip():
    ts = _random_transforms(np.random.default_rng(1), 5)
    back = tf_message_to_transforms(cdr(transforms_to_tf_message(ts), TF_MESSAGE))
    assert len(back) == 5
    for a, b in zip(ts, back, strict=False):
        assert (a.parent, a.child, a.stamp_ns) == (b.parent, b.child, b.stamp_ns)
        assert np.array_equal(a.transform.translation, b.transform.translation)
        assert np.allclose(a.transform.rotation, b.transform.rotation, atol=1e-15)
    assert tf_message_to_transforms(transforms_to_tf_message([])) == []


def _tf_msg(q, t=(0.0, 0.0, 0.0), parent="map", child="base_link"):
    f = default_factory()
    return f.make(
        TF_MESSAGE,
        transforms=[
            {
                "header": {"frame_id": parent},
                "child_frame_id": child,
                "transform": {
                    "translation": dict(zip("xyz", t, strict=False)),
                    "rotation": dict(zip("xyzw", q, strict=False)),
                },
            }
        ],
    )


@pytest.mark.parametrize(
    "q,t,pattern",
    [
        ((0, 0, 0, np.nan), (0, 0, 0), r"map -> base_link.*child frame 'base_link'.*rotation.*non-finite"),
        ((0, 0, 0, 0.5), (0, 0, 0), r"child frame 'base_link'.*rotation.*not unit"),
        ((0, 0, 0, 0), (0, 0, 0), r"child frame 'base_link'.*not unit"),
        ((0, 0, 0, 1), (0, np.inf, 0), r"child frame 'base_link'.*translation.*not finite"),
    ],
)
def test_tf_rejects_bad_transforms(q, t, pattern):
    with pytest.raises(TFError, match=pattern):
        tf_message_to_transforms(cdr(_tf_msg(q, t), TF_MESSAGE))


def test_tf_frames():
    with pytest.raises(TFError, match="empty frame id"):
        tf_message_to_transforms(_tf_msg((0, 0, 0, 1), parent=""))
    with pytest.raises(TFError, match="own parent"):
        tf_message_to_transforms(_tf_msg((0, 0, 0, 1), parent="a", child="a"))
    (t,) = tf_message_to_transforms(_tf_msg((0, 0, 0, 1.0004), parent="/map", child="/base_link"))
    assert (t.parent, t.child) == ("map", "base_link")
    assert np.isclose(np.linalg.norm(t.transform.rotation), 1.0)  # float32-ish input renormalised


def test_kitchen_tf(kitchen_bag):
    from rosbags.highlevel import AnyReader

    from gs_mapping.messages import typestore

    edges = {}
    with AnyReader([kitchen_bag], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.msgtype == TF_MESSAGE]
        for conn, _, raw in reader.messages(connections=conns):
            for t in tf_message_to_transforms(reader.deserialize(raw, conn.msgtype)):
                edges.setdefault((t.parent, t.child), []).append(t)
    assert len(edges[("map", "base_link")]) == 50
    assert len(edges[("base_link", "camera_color_optical_frame")]) == 1
    r = quat_to_matrix(edges[("map", "base_link")][0].transform.rotation)
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-9)


def test_kitchen_camera_info(kitchen_bag):
    from rosbags.highlevel import AnyReader

    from gs_mapping.messages import typestore

    with AnyReader([kitchen_bag], default_typestore=typestore()) as reader:
        conn = next(c for c in reader.connections if c.msgtype == CAMERA_INFO)
        _, _, raw = next(iter(reader.messages(connections=[conn])))
        intr = camera_info_to_intrinsics(reader.deserialize(raw, CAMERA_INFO))
    assert (intr.width, intr.height) == (320, 240)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (292.5, 292.5, 159.75, 119.75)
    assert intr.frame_id == "camera_color_optical_frame"


# --- UInt8MultiArray / String ---------------------------------------------------------------------
def test_uint8_multiarray_5mb_round_trip_is_fast():
    payload = np.random.default_rng(2).bytes(5 * 1024 * 1024)
    t0 = time.process_time()
    msg = bytes_to_uint8_multiarray(payload)
    raw = serialize_cdr(msg, UINT8_MULTI_ARRAY)
    back = uint8_multiarray_to_bytes(deserialize_cdr(raw, UINT8_MULTI_ARRAY))
    elapsed = time.process_time() - t0
    assert back == payload
    assert msg.layout.dim[0].size == len(payload)
    # Not a speed goal, a guard against a per-byte Python loop (which would take seconds).
    assert elapsed < 2.0, elapsed


def test_uint8_multiarray_inputs_and_rclpy_style():
    for data in (b"abc", bytearray(b"abc"), memoryview(b"abc"), np.frombuffer(b"abc", np.uint8)):
        assert uint8_multiarray_to_bytes(bytes_to_uint8_multiarray(data)) == b"abc"
    assert uint8_multiarray_to_bytes(bytes_to_uint8_multiarray(b"")) == b""
    rclpy_like = NS(layout=NS(dim=[], data_offset=2), data=array.array("B", b"xxpayload"))
    assert uint8_multiarray_to_bytes(rclpy_like) == b"payload"
    with pytest.raises(MessageError, match="UInt8MultiArray.layout.data_offset"):
        uint8_multiarray_to_bytes(NS(layout=NS(dim=[], data_offset=10), data=b"abc"))


def test_json_string_message():
    obj = {"lanes": [[0.0, 1.5], [2.0, 3.0]], "frame": "map"}
    assert string_message_to_json(cdr(json_to_string_message(obj), STRING)) == obj
    with pytest.raises(MessageError, match="String.data.*JSON"):
        string_message_to_json(NS(data="{nope"))
    with pytest.raises(MessageError, match="String.data"):
        json_to_string_message({"x": float("nan")})


def test_wrong_message_type_names_the_missing_field():
    from gs_mapping.messages import image_to_numpy, pointcloud2_to_array

    info = default_factory().make(CAMERA_INFO)
    with pytest.raises(MessageError, match=r"sensor_msgs/msg/Image.*CameraInfo.*no field 'encoding'"):
        image_to_numpy(info)
    with pytest.raises(MessageError, match=r"tf2_msgs/msg/TFMessage.*no field 'transforms'"):
        tf_message_to_transforms(info)
    with pytest.raises(MessageError, match=r"PointCloud2.*no field 'point_step'"):
        pointcloud2_to_array(info)
