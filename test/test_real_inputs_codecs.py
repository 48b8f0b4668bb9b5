"""Inputs real robots record, decoded: compressedDepth (PNG, RVL; 16UC1 and 32FC1), JPEG/PNG colour and
the raw Image encodings drivers use — each against bytes made by an independent encoder (OpenCV's
imencode / cvtColor, an RVL encoder written here from the paper's description and checked on a
hand-computed example) or the real RealSense-layout bag."""

from __future__ import annotations

import struct
from types import SimpleNamespace as NS

import numpy as np
import pytest

from gs_mapping.errors import MessageError
from gs_mapping.messages import numpy_to_image
from gs_mapping.messages.camera_image import color_to_rgb, depth_to_metres
from gs_mapping.messages.compressed_depth import (
    compressed_depth_to_numpy,
    decode_rvl,
    inverse_depth_params,
    numpy_to_compressed_depth,
)

cv2 = pytest.importorskip("cv2")


# -- an RVL encoder from A. D. Wilson's description (ISS 2017), independent of the product's decoder ----
def rvl_encode(pixels: np.ndarray) -> bytes:
    """Runs of zeros / non-zeros and zig-zag deltas of the non-zero values, each as 3-bit nibbles
    (high bit: more follow), 8 nibbles per 32-bit word, first nibble at the top of the word."""
    nibbles: list[int] = []

    def vle(value: int) -> None:
        while True:
            nib = value & 7
            value >>= 3
            nibbles.append(nib | (8 if value else 0))
            if not value:
                return

    flat = [int(x) for x in np.asarray(pixels, np.uint16).reshape(-1)]
    i, prev = 0, 0
    while i < len(flat):
        z = 0
        while i < len(flat) and flat[i] == 0:
            i, z = i + 1, z + 1
        vle(z)
        j = i
        while j < len(flat) and flat[j] != 0:
            j += 1
        vle(j - i)
        for k in range(i, j):
            delta = flat[k] - prev
            vle((delta << 1) ^ (delta >> 31))  # zig-zag of a 32-bit int
            prev = flat[k]
        i = j
    while len(nibbles) % 8:
        nibbles.append(0)
    words = [
        sum(n << (28 - 4 * k) for k, n in enumerate(nibbles[w : w + 8])) for w in range(0, len(nibbles), 8)
    ]
    return struct.pack(f"<{len(words)}I", *words)


def test_rvl_encoder_matches_a_hand_computed_example():
    # [0, 0, 5, 6, 0]: zeros 2, nonzeros 2, zigzag(5)=10 -> nibbles A,1; zigzag(1)=2; zeros 1, nonzeros 0
    # nibbles 2 2 A 1 2 1 0 (+ one pad) = word 0x22A12100, stored little-endian
    data = rvl_encode(np.array([0, 0, 5, 6, 0], np.uint16))
    assert data == bytes.fromhex("0021a122")
    out = decode_rvl(struct.pack("<II", 5, 1) + data)
    assert out.tolist() == [[0, 0, 5, 6, 0]]


def _cd_message(encoding: str, codec: str, payload: bytes, a: float = 0.0, b: float = 0.0, kind: int = 0):
    return NS(format=f"{encoding}; compressedDepth {codec}", data=struct.pack("<iff", kind, a, b) + payload)


@pytest.mark.parametrize(
    "case",
    ["random", "starts_nonzero", "ends_nonzero", "all_zero", "wrap", "long_runs"],
)
def test_rvl_16uc1_round_trip(case):
    rng = np.random.default_rng(7)
    img = rng.integers(300, 9000, (37, 53)).astype(np.uint16)
    img[rng.random(img.shape) < 0.3] = 0
    if case == "starts_nonzero":
        img.flat[0] = 1234
    elif case == "ends_nonzero":
        img.flat[-1] = 4321
    elif case == "all_zero":
        img[:] = 0
    elif case == "wrap":
        img.flat[:4] = [65535, 1, 65534, 2]
    elif case == "long_runs":
        img[:20] = 0
        img[25:] = 800
    rows, cols = img.shape
    msg = _cd_message("16UC1", "rvl", struct.pack("<II", cols, rows) + rvl_encode(img))
    assert np.array_equal(compressed_depth_to_numpy(msg), img)


def _quantise_like_ros(depth: np.ndarray, depth_max=10.0, z0=100.0):
    """The publisher's 32FC1 quantisation, written from the ROS source's formula: float32 A, B;
    q = (unsigned short)(A / d + B) for d < depth_max, else 0 (NaN compares false)."""
    a = np.float32(z0) * np.float32(z0 + 1.0)
    b = np.float32(1.0) - a / np.float32(depth_max)
    q = np.zeros(depth.shape, np.uint16)
    ok = depth < depth_max
    v = a / depth[ok].astype(np.float32) + b
    # nearer than A / (65535 - B) (0.152 m) the C++ cast to unsigned short is undefined (x86 wraps it
    # to a far depth); our writer leaves such a pixel invalid (0) instead
    q[ok] = np.where(v < 65536, np.trunc(v), 0).astype(np.uint16)
    return q, float(a), float(b)


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_32fc1_inverse_depth(codec):
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.3, 9.5, (24, 32)).astype(np.float32)
    depth[2, 3] = np.nan
    depth[5, 7] = 12.0  # beyond depth_max: invalid
    q, a, b = _quantise_like_ros(depth)
    assert (a, b) == inverse_depth_params()
    if codec == "png":
        ok, buf = cv2.imencode(".png", q)
        payload = buf.tobytes()
    else:
        payload = struct.pack("<II", 32, 24) + rvl_encode(q)
    out = compressed_depth_to_numpy(_cd_message("32FC1", codec, payload, a, b))
    assert out.dtype == np.float32
    valid = q > 0
    assert np.isnan(out[~valid]).all() and np.isnan(out[2, 3]) and np.isnan(out[5, 7])
    expect = np.float32(a) / (q[valid].astype(np.float32) - np.float32(b))
    assert np.array_equal(out[valid], expect)
    # quantisation error: one step of inverse depth, d^2 / A at most
    err = np.abs(out[valid] - depth[valid])
    assert (err <= depth[valid] ** 2 / a * 1.01 + 1e-6).all()
    metres = depth_to_metres(_cd_message("32FC1", codec, payload, a, b))
    assert np.array_equal(np.isnan(metres), ~valid)


def test_16uc1_png_from_opencv_and_plain_png_depth():
    rng = np.random.default_rng(5)
    mm = rng.integers(0, 6000, (30, 40)).astype(np.uint16)
    ok, buf = cv2.imencode(".png", mm)
    assert np.array_equal(compressed_depth_to_numpy(_cd_message("16UC1", "png", buf.tobytes())), mm)
    # the older format string without a codec name is PNG
    old = NS(format="16UC1; compressedDepth", data=struct.pack("<iff", 0, 0, 0) + buf.tobytes())
    assert np.array_equal(compressed_depth_to_numpy(old), mm)
    metres = depth_to_metres(_cd_message("16UC1", "png", buf.tobytes()))
    assert np.allclose(metres[mm > 0], mm[mm > 0] * 0.001) and np.isnan(metres[mm == 0]).all()
    # a plain 16-bit PNG CompressedImage (no compressedDepth header) of millimetres
    plain = depth_to_metres(NS(format="16UC1; png compressed", data=buf.tobytes()))
    assert np.allclose(plain[mm > 0], mm[mm > 0] * 0.001)


def test_our_compressed_depth_writer_is_read_by_opencv():
    rng = np.random.default_rng(2)
    mm = rng.integers(1, 5000, (12, 16)).astype(np.uint16)
    msg = numpy_to_compressed_depth(mm)
    data = bytes(msg.data)
    assert msg.format == "16UC1; compressedDepth png" and struct.unpack("<i", data[:4]) == (0,)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data[12:], np.uint8), cv2.IMREAD_UNCHANGED), mm)
    f = numpy_to_compressed_depth(mm.astype(np.float32) / 1000)
    q, a, b = _quantise_like_ros(mm.astype(np.float32) / 1000)
    fdata = bytes(f.data)
    assert struct.unpack("<ff", fdata[4:12]) == (np.float32(a), np.float32(b))
    assert np.array_equal(cv2.imdecode(np.frombuffer(fdata[12:], np.uint8), cv2.IMREAD_UNCHANGED), q)


@pytest.mark.parametrize(
    "fmt, data, pattern",
    [
        ("16UC1; compressedDepth zstd", b"\0" * 20, "codec 'zstd'"),
        ("rgb8; compressedDepth png", b"\0" * 20, "compressedDepth of 'rgb8'"),
        ("16UC1; compressedDepth png", b"\0" * 8, "8 bytes"),
        ("16UC1; compressedDepth png", b"\0" * 12 + b"GIF89a", "not a PNG"),
        ("16UC1; compressedDepth rvl", b"\0" * 12 + struct.pack("<II", 4000, 4000) + b"\0" * 16, "RVL"),
        ("16UC1; compressedDepth rvl", b"\0" * 12 + struct.pack("<II", 70000, 1) + b"\0" * 16, "claims"),
        ("16UC1; compressedDepth rvl", b"\0" * 12 + struct.pack("<II", 8, 1) + b"\xff" * 8, "RVL"),
    ],
)
def test_bad_compressed_depth_is_one_message_error(fmt, data, pattern):
    with pytest.raises(MessageError, match=pattern):
        compressed_depth_to_numpy(NS(format=fmt, data=data))


def test_truncated_rvl_is_refused():
    img = np.arange(1, 65, dtype=np.uint16).reshape(8, 8)
    body = rvl_encode(img)
    msg = _cd_message("16UC1", "rvl", struct.pack("<II", 8, 8) + body[: len(body) // 2])
    with pytest.raises(MessageError, match="RVL"):
        compressed_depth_to_numpy(msg)


# -- colour ---------------------------------------------------------------------------------------------
def _test_image(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 2 % 256], axis=-1).astype(np.uint8)
    rgb[:8, :8] = (255, 0, 0)  # a red corner: channel order shows
    return rgb


def test_jpeg_and_png_from_opencv_come_out_rgb():
    rgb = _test_image()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    ok, png = cv2.imencode(".png", bgr)
    assert np.array_equal(color_to_rgb(NS(format="bgr8; png compressed bgr8", data=png.tobytes())), rgb)
    ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = color_to_rgb(NS(format="jpeg", data=jpg.tobytes()))
    ref = cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert out.shape == rgb.shape and np.abs(out.astype(int) - ref).mean() < 1.0
    assert out[2, 2, 0] > 200 and out[2, 2, 2] < 60
    ok, grey = cv2.imencode(".jpg", rgb[:, :, 1])
    g = color_to_rgb(NS(format="mono8; jpeg compressed mono8", data=grey.tobytes()))
    assert g.shape == (48, 64, 3) and np.array_equal(g[..., 0], g[..., 2])


def test_depth_is_not_colour_and_colour_is_not_depth():
    with pytest.raises(MessageError, match="depth image, not colour"):
        color_to_rgb(_cd_message("16UC1", "png", b"\x89PNG\r\n\x1a\n"))
    ok, jpg = cv2.imencode(".jpg", _test_image())
    with pytest.raises(MessageError, match="not depth"):
        depth_to_metres(NS(format="jpeg", data=jpg.tobytes()))
    with pytest.raises(MessageError, match="not an image"):
        depth_to_metres(NS(transforms=[]))


@pytest.mark.parametrize(
    "encoding, code",
    [
        ("rgb8", None),
        ("bgr8", cv2.COLOR_BGR2RGB),
        ("rgba8", cv2.COLOR_RGBA2RGB),
        ("bgra8", cv2.COLOR_BGRA2RGB),
        ("mono8", cv2.COLOR_GRAY2RGB),
    ],
)
def test_raw_encodings_as_opencv_converts_them(encoding, code):
    rgb = _test_image()
    src = {
        "rgb8": rgb,
        "bgr8": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
        "rgba8": cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA),
        "bgra8": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA),
        "mono8": rgb[:, :, 1].copy(),
    }[encoding]
    expect = src if code is None else cv2.cvtColor(src, code)
    assert np.array_equal(color_to_rgb(numpy_to_image(src, encoding)), expect)


@pytest.mark.parametrize("encoding, code", [("uyvy", "COLOR_YUV2RGB_UYVY"), ("yuyv", "COLOR_YUV2RGB_YUY2")])
def test_yuv422_as_opencv_converts_it(encoding, code):
    rng = np.random.default_rng(9)
    packed = rng.integers(16, 236, (20, 32, 2)).astype(np.uint8)
    expect = cv2.cvtColor(packed, getattr(cv2, code))
    out = color_to_rgb(numpy_to_image(packed, encoding))
    assert np.abs(out.astype(int) - expect.astype(int)).max() <= 2


def test_mono16_and_depth_images():
    mm = np.array([[0, 1000, 65535], [2500, 1, 40000]], np.uint16)
    for enc in ("16UC1", "mono16"):
        d = depth_to_metres(numpy_to_image(mm, enc))
        assert np.isnan(d[0, 0]) and np.isnan(d[0, 2]) and d[1, 0] == np.float32(2.5)
    assert np.array_equal(color_to_rgb(numpy_to_image(mm, "mono16"))[..., 0], (mm >> 8).astype(np.uint8))
    f = np.array([[np.nan, 1.5], [-1.0, np.inf]], np.float32)
    d = depth_to_metres(numpy_to_image(f, "32FC1"))
    assert d[0, 1] == np.float32(1.5) and np.isnan(d[[0, 1, 1], [0, 0, 1]]).all()


# -- the real RealSense-layout bag ------------------------------------------------------------------------
def test_realsense_bag_decodes_like_opencv(shared_data):
    from gs_mapping.bag import BagReader

    bag = shared_data / "realsense_kitchen_rgbd"
    depth_topic = "/camera/camera/aligned_depth_to_color/image_raw/compressedDepth"
    color_topic = "/camera/camera/color/image_raw/compressed"
    seen = set()
    with BagReader(bag) as r:
        for topic, _s, msg in r.messages([color_topic, depth_topic]):
            data = np.frombuffer(bytes(msg.data), np.uint8)
            if topic == color_topic:
                ref = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                out = color_to_rgb(msg)
                assert out.shape == (480, 640, 3) and np.abs(out.astype(int) - ref).mean() < 1.0
            else:
                ref = cv2.imdecode(data[12:], cv2.IMREAD_UNCHANGED)
                assert ref.dtype == np.uint16
                d = depth_to_metres(msg)
                assert np.array_equal(np.nan_to_num(d * 1000, nan=0).round().astype(np.uint16), ref)
                # the same frame through RVL (our test encoder) decodes to the same millimetres
                rvl = _cd_message("16UC1", "rvl", struct.pack("<II", 640, 480) + rvl_encode(ref))
                assert np.array_equal(compressed_depth_to_numpy(rvl), ref)
            seen.add(topic)
            if len(seen) == 2:
                break
