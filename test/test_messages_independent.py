"""Cross-check against an independent CDR implementation (mcap-ros2-support's dynamic codec).

Our messages (rosbags CDR) are decoded by mcap_ros2 into *its* message objects (another duck type:
``bytes`` data, SimpleNamespace-like classes) and read back with our readers; and messages encoded by
mcap_ros2 from plain dicts are decoded by us. Both directions must agree exactly.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from gs_mapping.geometry import Transform, TransformStamped
from gs_mapping.messages import (
    CAMERA_INFO,
    IMAGE,
    MARKER_ARRAY,
    POINT_CLOUD2,
    TF_MESSAGE,
    UINT8_MULTI_ARRAY,
    CameraIntrinsics,
    array_to_pointcloud2,
    bytes_to_uint8_multiarray,
    camera_info_to_intrinsics,
    deserialize_cdr,
    image_to_numpy,
    intrinsics_to_camera_info,
    line_strip_marker,
    marker_array,
    marker_array_to_polylines,
    numpy_to_image,
    pointcloud2_to_array,
    serialize_cdr,
    stamp_to_ns,
    tf_message_to_transforms,
    transforms_to_tf_message,
    typestore,
    uint8_multiarray_to_bytes,
)

mcap_dynamic = pytest.importorskip("mcap_ros2._dynamic")


@functools.cache
def _codecs(typename):
    text, _ = typestore().generate_msgdef(typename, ros_version=2)
    return (
        mcap_dynamic.generate_dynamic(typename, text)[typename],
        mcap_dynamic.serialize_dynamic(typename, text)[typename],
    )


def theirs(msg, typename):
    """Our message → our CDR → their decoder → their message object."""
    return _codecs(typename)[0](serialize_cdr(msg, typename))


@pytest.mark.parametrize(
    "encoding,dtype,channels",
    [
        ("rgb8", np.uint8, 3),
        ("bgra8", np.uint8, 4),
        ("16UC1", np.uint16, 1),
        ("32FC1", np.float32, 1),
        ("64FC3", np.float64, 3),
    ],
)
@pytest.mark.parametrize("big", [False, True])
def test_image_through_independent_decoder(encoding, dtype, channels, big):
    rng = np.random.default_rng(0)
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    arr = rng.integers(0, 256, int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8).view(dtype)
    arr = arr.reshape(shape)
    step = 7 * channels * np.dtype(dtype).itemsize + 3
    msg = theirs(numpy_to_image(arr, encoding, 42, "cam", step=step, is_bigendian=big), IMAGE)
    assert isinstance(msg.data, (bytes, bytearray, memoryview, list, np.ndarray))
    assert image_to_numpy(msg).tobytes() == arr.tobytes() and stamp_to_ns(msg.header.stamp) == 42


def test_image_encoded_by_them():
    payload = bytes(range(2 * 10))
    raw = _codecs(IMAGE)[1](
        {
            "header": {"stamp": {"sec": 3, "nanosec": 4}, "frame_id": "c"},
            "height": 2,
            "width": 2,
            "encoding": "mono16",
            "is_bigendian": 1,
            "step": 10,
            "data": payload,
        }
    )
    out = image_to_numpy(deserialize_cdr(raw, IMAGE))
    want = np.frombuffer(payload, np.uint8).reshape(2, 10)[:, :4].copy().view(">u2").astype(np.uint16)
    assert np.array_equal(out, want)


def test_pointcloud2_camera_info_tf_markers_bytes_through_independent_decoder():
    dtype = np.dtype(
        {
            "names": ["x", "y", "z", "ring"],
            "formats": ["<f4", "<f4", "<f4", "<u2"],
            "offsets": [0, 4, 8, 16],
            "itemsize": 20,
        }
    )
    cloud = np.zeros(4, dtype)
    cloud["x"], cloud["ring"] = [1, 2, 3, 4], [0, 1, 2, 3]
    back = pointcloud2_to_array(theirs(array_to_pointcloud2(cloud, is_bigendian=True), POINT_CLOUD2))
    assert back.dtype == dtype and back.tobytes() == cloud.tobytes()

    K = np.array([[500.0, 0, 320], [0, 505, 240], [0, 0, 1]])
    intr = camera_info_to_intrinsics(
        theirs(
            intrinsics_to_camera_info(
                CameraIntrinsics(640, 480, K, [0.1, 0.2, 0, 0, 0.3], "plumb_bob", "cam", 9)
            ),
            CAMERA_INFO,
        )
    )
    assert np.array_equal(intr.K, K) and intr.D.tolist() == [0.1, 0.2, 0, 0, 0.3] and intr.stamp_ns == 9

    ts = [
        TransformStamped(
            "map", "base_link", 123, Transform(np.array([1.0, 2, 3]), np.array([0, 0.6, 0, 0.8]))
        )
    ]
    (t,) = tf_message_to_transforms(theirs(transforms_to_tf_message(ts), TF_MESSAGE))
    assert (t.parent, t.child, t.stamp_ns) == ("map", "base_link", 123)
    assert np.allclose(t.transform.rotation, [0, 0.6, 0, 0.8])

    pts = np.random.default_rng(1).normal(size=(6, 3))
    (line,) = marker_array_to_polylines(
        theirs(marker_array([line_strip_marker("lanes", 4, pts)]), MARKER_ARRAY)
    )
    assert (line.ns, line.id) == ("lanes", 4) and np.array_equal(line.points, pts)

    payload = np.random.default_rng(2).bytes(100_000)
    assert uint8_multiarray_to_bytes(theirs(bytes_to_uint8_multiarray(payload), UINT8_MULTI_ARRAY)) == payload
