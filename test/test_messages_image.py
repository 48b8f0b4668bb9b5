"""Image ⇄ numpy: exact round trips through CDR for every encoding, padding, endianness; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_mapping.errors import MessageError
from gs_mapping.messages import (
    IMAGE,
    SUPPORTED_ENCODINGS,
    depth_image_to_metres,
    deserialize_cdr,
    encoding_layout,
    image_to_numpy,
    image_to_rgb,
    make_header,
    metres_to_depth_image,
    numpy_to_image,
    serialize_cdr,
    stamp_to_ns,
)
from gs_mapping.messages.factory import default_factory


def random_image(rng: np.random.Generator, encoding: str, height: int, width: int) -> np.ndarray:
    dtype, channels = encoding_layout(encoding)
    shape = (height, width) if channels == 1 else (height, width, channels)
    # Random bytes reinterpreted: covers every bit pattern, NaN payloads and infinities included.
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def through_cdr(msg):
    return deserialize_cdr(serialize_cdr(msg, IMAGE), IMAGE)


@settings(max_examples=150, deadline=None)
@given(
    encoding=st.sampled_from(SUPPORTED_ENCODINGS),
    height=st.integers(0, 7),
    width=st.integers(0, 9),
    pad=st.integers(0, 9),
    big=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_exact_every_encoding(encoding, height, width, pad, big, seed):
    arr = random_image(np.random.default_rng(seed), encoding, height, width)
    dtype, channels = encoding_layout(encoding)
    step = width * channels * dtype.itemsize + pad
    msg = numpy_to_image(arr, encoding, stamp_ns=123_456_789_012, frame_id="cam", step=step, is_bigendian=big)
    back = through_cdr(msg)
    assert (back.height, back.width, back.step, back.encoding) == (height, width, step, encoding)
    assert bool(back.is_bigendian) == big
    assert len(back.data) == height * step
    assert stamp_to_ns(back.header.stamp) == 123_456_789_012 and back.header.frame_id == "cam"
    out = image_to_numpy(back)
    assert out.shape == arr.shape and out.dtype == dtype and out.dtype.isnative
    assert out.tobytes() == arr.tobytes()  # bitwise, so NaN payloads count too
    assert out.flags.writeable and not np.shares_memory(out, back.data)


def test_big_endian_bytes_are_really_big_endian():
    arr = np.array([[0x0102, 0x0304]], np.uint16)
    msg = numpy_to_image(arr, "16UC1", is_bigendian=True)
    assert bytes(msg.data) == b"\x01\x02\x03\x04"
    msg = numpy_to_image(arr, "16UC1")
    assert bytes(msg.data) == b"\x02\x01\x04\x03"


def test_padding_bytes_ignored_when_reading():
    # A hand-built message whose padding holds garbage: only the first width*bpp bytes of a row count.
    f = default_factory()
    data = np.array([1, 2, 3, 0xEE, 0xEE, 4, 5, 6, 0xEE, 0xEE], np.uint8)
    msg = f.make(
        IMAGE,
        header=make_header(0, "c", f),
        height=2,
        width=1,
        encoding="rgb8",
        is_bigendian=0,
        step=5,
        data=data,
    )
    assert image_to_numpy(msg).tolist() == [[[1, 2, 3]], [[4, 5, 6]]]


def test_read_from_rclpy_like_objects():
    """Duck typing: rclpy gives array.array('B') data and plain attributes."""
    import array
    from types import SimpleNamespace as NS

    arr = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    msg = NS(
        header=NS(stamp=NS(sec=1, nanosec=2), frame_id="c"),
        height=2,
        width=2,
        encoding="bgr8",
        is_bigendian=0,
        step=6,
        data=array.array("B", arr.tobytes()),
    )
    assert np.array_equal(image_to_numpy(msg), arr)
    assert np.array_equal(image_to_rgb(msg), arr[:, :, ::-1])
    msg.data = arr.tobytes()
    assert np.array_equal(image_to_numpy(msg), arr)
    # and serialize_cdr converts a foreign object through the typestore layout
    back = deserialize_cdr(serialize_cdr(msg, IMAGE), IMAGE)
    assert np.array_equal(image_to_numpy(back), arr)


@pytest.mark.parametrize(
    "encoding,channels_in",
    [
        ("rgb8", 3),
        ("bgr8", 3),
        ("rgba8", 4),
        ("bgra8", 4),
        ("mono8", 1),
        ("mono16", 1),
        ("8UC3", 3),
        ("8UC4", 4),
    ],
)
def test_image_to_rgb(encoding, channels_in):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    if encoding == "mono8":
        arr, want = rgb[:, :, 0], np.repeat(rgb[:, :, :1], 3, 2)
    elif encoding == "mono16":
        arr = rgb[:, :, 0].astype(np.uint16) << 8 | 0x7F
        want = np.repeat(rgb[:, :, :1], 3, 2)
    elif encoding.startswith("bgr") or encoding in ("8UC3", "8UC4"):  # (no colour order: OpenCV's BGR)
        arr = rgb[:, :, ::-1]
        want = rgb
        if channels_in == 4:
            arr = np.concatenate([arr, np.full((3, 5, 1), 9, np.uint8)], 2)
    else:
        arr, want = rgb, rgb
        if channels_in == 4:
            arr = np.concatenate([arr, np.full((3, 5, 1), 9, np.uint8)], 2)
    out = image_to_rgb(through_cdr(numpy_to_image(np.ascontiguousarray(arr), encoding, step=5 * 8)))
    assert out.dtype == np.uint8 and out.shape == (3, 5, 3)
    assert np.array_equal(out, want)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422_to_rgb(encoding):
    # video-range BT.601: Y 16 → black, 235 → white, neutral chroma 128 → grey
    uyvy = encoding in ("yuv422", "uyvy")
    ys = np.array([[16, 235, 126, 126]], np.uint8)
    u = np.array([[128, 128]], np.uint8)
    v = np.array([[128, 255]], np.uint8)
    packed = np.empty((1, 2, 4), np.uint8)
    if uyvy:
        packed[..., 0], packed[..., 1], packed[..., 2], packed[..., 3] = u, ys[:, 0::2], v, ys[:, 1::2]
    else:
        packed[..., 0], packed[..., 1], packed[..., 2], packed[..., 3] = ys[:, 0::2], u, ys[:, 1::2], v
    msg = through_cdr(numpy_to_image(packed.reshape(1, 4, 2), encoding, step=10))
    rgb = image_to_rgb(msg)
    assert rgb.shape == (1, 4, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [255, 255, 255]
    assert rgb[0, 2, 0] > 200 and rgb[0, 2, 2] < rgb[0, 2, 0]  # V high: red
    with pytest.raises(MessageError, match="even width"):
        image_to_rgb(numpy_to_image(np.zeros((1, 3, 2), np.uint8), encoding))


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_to_rgb(pattern, bits):
    colour = {"r": 200, "g": 100, "b": 50}
    h, w = 5, 7  # odd sizes: the last row/column reuse their neighbours' cell
    mosaic = np.empty((h, w), np.uint16 if bits == 16 else np.uint8)
    for i in range(h):
        for j in range(w):
            mosaic[i, j] = colour[pattern[2 * (i % 2) + (j % 2)]] << (8 if bits == 16 else 0)
    rgb = image_to_rgb(through_cdr(numpy_to_image(mosaic, f"bayer_{pattern}{bits}")))
    assert rgb.shape == (h, w, 3) and (rgb == [200, 100, 50]).all()


def test_image_to_rgb_rejects_float():
    with pytest.raises(MessageError, match="32FC1"):
        image_to_rgb(numpy_to_image(np.zeros((2, 2), np.float32), "32FC1"))


def test_depth_16uc1_invalid_values_become_nan():
    mm = np.array([[0, 1000, 65535], [2500, 1, 65534]], np.uint16)
    d = depth_image_to_metres(through_cdr(numpy_to_image(mm, "16UC1", is_bigendian=True)))
    assert d.dtype == np.float32 and d.shape == (2, 3)
    assert np.isnan(d[0, 0]) and np.isnan(d[0, 2])
    np.testing.assert_allclose(d[~np.isnan(d)], [1.0, 2.5, 0.001, 65.534], rtol=1e-6)


def test_depth_32fc1_invalid_values_become_nan():
    m = np.array([[0.0, np.nan, np.inf], [-np.inf, 1.25, -2.0]], np.float32)
    d = depth_image_to_metres(through_cdr(numpy_to_image(m, "32FC1", step=64)))
    assert np.isnan(d).sum() == 5 and d[1, 1] == np.float32(1.25)


def test_metres_to_depth_image_round_trip():
    d = np.array([[0.5, np.nan], [2.9, 0.0]])
    back = depth_image_to_metres(metres_to_depth_image(d, "16UC1"))
    np.testing.assert_allclose(back, [[0.5, np.nan], [2.9, np.nan]], rtol=1e-6)
    back = depth_image_to_metres(metres_to_depth_image(d, "32FC1"))
    np.testing.assert_allclose(back, [[0.5, np.nan], [2.9, np.nan]], rtol=1e-6)


def test_depth_rejects_colour():
    with pytest.raises(MessageError, match="rgb8.*depth"):
        depth_image_to_metres(numpy_to_image(np.zeros((1, 1, 3), np.uint8), "rgb8"))


# --- bad input ------------------------------------------------------------------------------------
def _msg(**over):
    f = default_factory()
    fields = dict(
        header=make_header(0, "cam", f),
        height=2,
        width=3,
        encoding="rgb8",
        is_bigendian=0,
        step=9,
        data=np.zeros(18, np.uint8),
    )
    fields.update(over)
    return f.make(IMAGE, **fields)


@pytest.mark.parametrize(
    "over,pattern",
    [
        (dict(encoding="yuv_weird"), r"Image\.encoding.*'yuv_weird'"),
        (dict(encoding="32UC1"), r"Image\.encoding.*'32UC1'"),
        (dict(data=np.zeros(17, np.uint8)), r"Image\.data.*17.*height\*step.*18"),
        (dict(data=np.zeros(19, np.uint8)), r"Image\.data.*19"),
        (dict(step=8, data=np.zeros(16, np.uint8)), r"Image\.step.*8.*width\*bytes_per_pixel.*9"),
    ],
)
def test_bad_image_messages(over, pattern):
    with pytest.raises(MessageError, match=pattern):
        image_to_numpy(_msg(**over))


def test_numpy_to_image_rejects_mismatches():
    with pytest.raises(MessageError, match=r"shape \(2, 2\).*rgb8"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(MessageError, match="dtype int64.*16UC1"):
        numpy_to_image(np.zeros((2, 2), np.int64), "16UC1")
    with pytest.raises(MessageError, match="step"):
        numpy_to_image(np.zeros((2, 2), np.uint16), "16UC1", step=3)
    with pytest.raises(MessageError, match="encoding"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "nope")
    # float64 → 32FC1 is a documented cast, (H, W, 1) is accepted for one channel
    msg = numpy_to_image(np.ones((2, 2, 1)), "32FC1")
    assert image_to_numpy(msg).dtype == np.float32


def test_corrupt_cdr_is_a_message_error():
    raw = serialize_cdr(_msg(), IMAGE)
    with pytest.raises(MessageError, match="sensor_msgs/msg/Image"):
        deserialize_cdr(raw[:20], IMAGE)


# --- real data ------------------------------------------------------------------------------------
def test_kitchen_bag_colour_and_depth(kitchen_bag):
    from rosbags.highlevel import AnyReader

    from gs_mapping.messages import typestore

    colour, depth = [], []
    with AnyReader([kitchen_bag], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.msgtype == IMAGE]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            (colour if "color" in conn.topic else depth).append(msg)
    assert len(colour) == 50 and len(depth) == 50
    rgb = image_to_rgb(colour[0])
    assert rgb.shape == (240, 320, 3) and rgb.dtype == np.uint8
    assert 20 < rgb.mean() < 235 and rgb.std() > 10  # a real picture, not a constant
    for msg in depth[::7]:
        d = depth_image_to_metres(msg)
        assert d.shape == (240, 320) and d.dtype == np.float32
        valid = d[np.isfinite(d)]
        assert valid.size > 0.5 * d.size
        lo, hi = np.percentile(valid, [5, 95])
        assert 0.5 < lo and hi < 3.5, (lo, hi)
        assert 0.75 < np.mean((valid > 0.9) & (valid < 2.9))
    # converting a real message back and forth is exact too
    again = image_to_numpy(through_cdr(numpy_to_image(image_to_numpy(depth[0]), "16UC1")))
    assert np.array_equal(again, image_to_numpy(depth[0]))
