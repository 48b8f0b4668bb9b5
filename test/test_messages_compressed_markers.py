"""CompressedImage (png exact, jpeg close) and MarkerArray polylines."""

from __future__ import annotations

import io
from types import SimpleNamespace as NS

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_mapping.errors import MessageError
from gs_mapping.messages import (
    COMPRESSED_IMAGE,
    LINE_LIST,
    MARKER_ARRAY,
    POINTS,
    compressed_image_to_numpy,
    delete_all_marker,
    deserialize_cdr,
    line_list_marker,
    line_strip_marker,
    make_marker,
    marker_array,
    marker_array_to_polylines,
    numpy_to_compressed_image,
    points_marker,
    serialize_cdr,
    stamp_to_ns,
)
from gs_mapping.messages.factory import default_factory


def through_cdr(msg, typename):
    return deserialize_cdr(serialize_cdr(msg, typename), typename)


def smooth_rgb(h, w, seed=0):
    """A smooth test picture (JPEG is meant for such, not for white noise)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6, 3)
    img = np.stack([np.sin(4 * x + phase[0]), np.cos(3 * y + phase[1]), np.sin(2 * (x + y) + phase[2])], -1)
    return ((img + 1) * 127.5).astype(np.uint8)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    kind=st.sampled_from(["mono8", "rgb", "rgba", "mono16"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_png_round_trip_exact(h, w, kind, seed):
    rng = np.random.default_rng(seed)
    shape = {"mono8": (h, w), "rgb": (h, w, 3), "rgba": (h, w, 4), "mono16": (h, w)}[kind]
    dtype = np.uint16 if kind == "mono16" else np.uint8
    arr = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    msg = through_cdr(numpy_to_compressed_image(arr, "png", stamp_ns=99, frame_id="cam"), COMPRESSED_IMAGE)
    assert "png" in msg.format and stamp_to_ns(msg.header.stamp) == 99
    out = compressed_image_to_numpy(msg)
    assert out.dtype == dtype and np.array_equal(out, arr)


def test_jpeg_close():
    arr = smooth_rgb(48, 64)
    msg = through_cdr(numpy_to_compressed_image(arr, "jpeg", quality=90), COMPRESSED_IMAGE)
    assert msg.format == "rgb8; jpeg compressed bgr8"
    assert bytes(msg.data[:3]) == b"\xff\xd8\xff"
    out = compressed_image_to_numpy(msg)
    assert out.shape == arr.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - arr.astype(int))
    assert err.mean() < 3 and np.percentile(err, 99) < 16
    grey = numpy_to_compressed_image(arr[:, :, 1], "jpg")
    assert compressed_image_to_numpy(grey).shape == (48, 64)


def test_reads_foreign_format_strings_and_compressed_depth():
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(smooth_rgb(8, 8)).save(buf, format="PNG")
    png = buf.getvalue()
    for fmt in ("png", "bgr8; png compressed bgr8", "PNG", ""):
        assert compressed_image_to_numpy(NS(format=fmt, data=png)).shape == (8, 8, 3)
    depth = np.arange(64, dtype=np.uint16).reshape(8, 8) * 900
    buf = io.BytesIO()
    Image.fromarray(depth).save(buf, format="PNG")
    header = np.array([0], "<i4").tobytes() + np.array([0, 0], "<f4").tobytes()
    msg = NS(format="16UC1; compressedDepth png", data=header + buf.getvalue())
    assert np.array_equal(compressed_image_to_numpy(msg), depth)
    # 32FC1: quantised inverse depth q = A / d + B, 0 = invalid
    metres = np.linspace(0.5, 8.0, 64).reshape(8, 8)
    a, b = 2000.0, -10.0
    q = np.rint(a / metres + b).astype(np.uint16)
    q[0, 0] = 0
    buf = io.BytesIO()
    Image.fromarray(q).save(buf, format="PNG")
    header = np.array([0], "<i4").tobytes() + np.array([a, b], "<f4").tobytes()
    out = compressed_image_to_numpy(NS(format="32FC1; compressedDepth png", data=header + buf.getvalue()))
    assert out.dtype == np.float32 and np.isnan(out[0, 0])
    np.testing.assert_allclose(out.reshape(-1)[1:], metres.reshape(-1)[1:], rtol=0.02)


def test_compressed_bad_input():
    # (a TIFF's magic number before garbage: compressed_image_transport's tiff, cut short)
    with pytest.raises(MessageError, match=r"CompressedImage\.data.*cannot decode tiff.*'tiff'"):
        compressed_image_to_numpy(NS(format="tiff", data=b"II*\x00garbage"))
    with pytest.raises(MessageError, match=r"CompressedImage\.data.*not a JPEG, PNG or TIFF.*'webp'"):
        compressed_image_to_numpy(NS(format="webp", data=b"RIFF\x00\x00\x00\x00WEBP"))
    with pytest.raises(MessageError, match=r"CompressedImage\.data.*cannot decode png"):
        compressed_image_to_numpy(NS(format="png", data=b"\x89PNG\r\n\x1a\n" + b"\x00" * 20))
    with pytest.raises(MessageError, match=r"CompressedImage\.format.*'webp'"):
        numpy_to_compressed_image(np.zeros((2, 2, 3), np.uint8), "webp")
    with pytest.raises(MessageError, match=r"CompressedImage.*uint16.*jpeg"):
        numpy_to_compressed_image(np.zeros((2, 2), np.uint16), "jpeg")
    with pytest.raises(MessageError, match=r"CompressedImage.*float32"):
        numpy_to_compressed_image(np.zeros((2, 2, 3), np.float32), "png")


# --- markers --------------------------------------------------------------------------------------
def test_marker_array_round_trip():
    rng = np.random.default_rng(0)
    strip = rng.normal(size=(7, 3))
    pairs = rng.normal(size=(4, 3))
    pts = rng.normal(size=(5, 3))
    msg = marker_array(
        [
            delete_all_marker("map", 5),
            line_strip_marker("lanes", 1, strip, (1, 0, 0), "map", 5, 0.2),
            line_list_marker("crossings", 2, pairs, (0, 1, 0, 0.5), "map", 5, 0.1),
            points_marker("centres", 3, pts, (0, 0, 1), "map", 5, size=0.3, colors=rng.uniform(size=(5, 3))),
        ]
    )
    back = through_cdr(msg, MARKER_ARRAY)
    assert [m.action for m in back.markers] == [3, 0, 0, 0]
    m1 = back.markers[1]
    assert (m1.type, m1.scale.x, m1.pose.orientation.w, m1.color.r, m1.color.a) == (4, 0.2, 1.0, 1.0, 1.0)
    assert back.markers[3].scale.y == 0.3 and len(back.markers[3].colors) == 5
    lines = marker_array_to_polylines(back)
    assert [(p.ns, p.id) for p in lines] == [("lanes", 1), ("crossings", 2), ("centres", 3)]
    for (_ns, _mid, got), want in zip(lines, (strip, pairs, pts), strict=False):
        assert np.array_equal(got, want)  # float64 in the message: exact
    assert marker_array_to_polylines(back, types=(LINE_LIST,))[0].ns == "crossings"


def test_polylines_apply_pose_and_deletes():
    f = default_factory()
    m = line_strip_marker("a", 0, np.array([[1.0, 0, 0], [2, 0, 0]]))
    # rotate 90° about z and shift: (1,0,0) → (0,1,0) + (10,0,0)
    m.pose = f.make(
        "geometry_msgs/msg/Pose", position={"x": 10.0}, orientation={"z": np.sqrt(0.5), "w": np.sqrt(0.5)}
    )
    (line,) = marker_array_to_polylines(marker_array([m]))
    assert np.allclose(line.points, [[10, 1, 0], [10, 2, 0]])
    other = line_strip_marker("b", 0, np.zeros((2, 3)))
    delete = f.make("visualization_msgs/msg/Marker", ns="a", id=0, action=2)
    assert [p.ns for p in marker_array_to_polylines(marker_array([m, other, delete]))] == ["b"]
    assert marker_array_to_polylines(marker_array([m, delete_all_marker()])) == []


def test_marker_bad_input():
    with pytest.raises(MessageError, match=r"Marker ns='l' id=3\.points.*non-finite"):
        line_strip_marker("l", 3, np.array([[0, 0, np.nan]]))
    with pytest.raises(MessageError, match=r"Marker ns='l' id=3\.points.*\(N, 3\)"):
        line_strip_marker("l", 3, np.zeros((3, 4)))
    with pytest.raises(MessageError, match="LINE_LIST.*even"):
        line_list_marker("l", 3, np.zeros((3, 3)))
    with pytest.raises(MessageError, match=r"\.type: 1 is not"):
        make_marker(1, "l", 3, np.zeros((2, 3)))
    with pytest.raises(MessageError, match=r"\.scale"):
        points_marker("l", 3, np.zeros((2, 3)), size=0)
    with pytest.raises(MessageError, match=r"\.color"):
        line_strip_marker("l", 3, np.zeros((2, 3)), rgba=(1, 0))
    m = line_strip_marker("l", 3, np.zeros((2, 2)))  # 2D points get z = 0
    assert m.type != POINTS and m.points[1].z == 0.0
