"""Guards for behaviours a mutation-testing pass found unguarded (thirteenth round): the message
layer (``gs_mapping.messages``: Image encodings, CompressedImage, image_transport's compressedDepth
with PNG and RVL payloads, CameraInfo, PointCloud2, markers, TF, std_msgs), ``gs_mapping.rectify``
and ``gs_mapping.camera``. Each test drives the real component and compares it with an independent
reference (Pillow, OpenCV, a numpy re-computation, an RVL encoder written here from the paper, the
ROS 2 message definitions and image_transport's published format, or the rule a docstring states),
so that breaking the line it guards makes it fail."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from gs_mapping.errors import MessageError
from gs_mapping.messages import (
    CameraIntrinsics,
    camera_info_to_intrinsics,
    default_factory,
    image_to_rgb,
    intrinsics_to_camera_info,
    numpy_to_image,
    stamp_to_ns,
)
from gs_mapping.messages.camera_image import color_to_rgb, depth_to_metres

COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"


def _png(a: np.ndarray) -> bytes:
    """PNG bytes written by Pillow (independent of the product's encoder)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
    return buf.getvalue()


def _compressed(fmt: str, data: bytes):
    return default_factory().make(COMPRESSED_IMAGE, format=fmt, data=np.frombuffer(data, np.uint8).copy())


# ------------------------------------------------------------------------------------------------
# camera_image: colour / depth from a CompressedImage


def test_a_16_bit_png_colour_image_keeps_its_high_byte():
    """image_to_rgb's rule for 16-bit images ('keep their high byte') holds for a 16-bit PNG
    CompressedImage too: 0x1234 → 0x12, grey repeated to three channels."""
    a = np.array([[0x1234, 0xFF00], [0x00FF, 0x8001]], np.uint16)
    got = color_to_rgb(_compressed("mono16; png compressed mono16", _png(a)))
    want = np.repeat(np.array([[0x12, 0xFF], [0x00, 0x80]], np.uint8)[:, :, None], 3, axis=2)
    assert got.dtype == np.uint8 and np.array_equal(got, want)


def test_an_rgba_png_colour_image_comes_out_rgb_without_alpha():
    """color_to_rgb: '→ uint8 RGB (H, W, 3)': an RGBA PNG loses its alpha channel."""
    rgba = np.random.default_rng(1).integers(0, 256, (3, 5, 4), dtype=np.uint8)
    got = color_to_rgb(_compressed("rgba8; png compressed bgra8", _png(rgba)))
    assert got.shape == (3, 5, 3) and np.array_equal(got, rgba[:, :, :3])


def test_a_compressed_bayer_mosaic_is_demosaiced_like_a_raw_one():
    """image_transport's compressed publisher compresses a bayer_* image as it is (no colour
    conversion: 'bayer_rggb8; png compressed ') and its subscriber restores an Image of encoding
    bayer_rggb8 (format.substr(0, ';')). A red scene (R = 200 on every red site, G = B = 0) must
    come out red, as image_to_rgb's 2x2-cell rule makes it of the raw Image — not grey."""
    mosaic = np.zeros((4, 4), np.uint8)
    mosaic[0::2, 0::2] = 200
    got = color_to_rgb(_compressed("bayer_rggb8; png compressed ", _png(mosaic)))
    assert np.array_equal(got, np.broadcast_to(np.array([200, 0, 0], np.uint8), (4, 4, 3)))


def test_an_8_bit_grey_png_is_not_taken_for_millimetres_of_depth():
    """depth_to_metres on a plain PNG needs '16-bit PNG of millimetres': an 8-bit grey PNG (a mono
    camera's image on the wrong topic) is one MessageError, not depths of 0–255 mm."""
    grey = np.full((4, 4), 200, np.uint8)
    with pytest.raises(MessageError, match="not depth"):
        depth_to_metres(_compressed("mono8; png compressed mono8", _png(grey)))


def test_a_plain_16_bit_png_depth_marks_65535_invalid_like_raw_16uc1():
    """REP-118 (image.py's docstring): 0 and 65535 mark invalid 16UC1 pixels; the plain-PNG depth
    path must agree with the raw-Image path."""
    mm = np.array([[0, 1500], [65535, 65534]], np.uint16)
    got = depth_to_metres(_compressed("16UC1; png", _png(mm)))
    assert np.isnan(got[0, 0]) and np.isnan(got[1, 0])
    assert got[0, 1] == pytest.approx(1.5, rel=1e-6) and got[1, 1] == pytest.approx(65.534, rel=1e-6)


# ------------------------------------------------------------------------------------------------
# camera_info


def _camera_info(k, p, **kw):
    f = default_factory()
    msg = f.make(
        "sensor_msgs/msg/CameraInfo",
        width=640,
        height=480,
        k=np.asarray(k, np.float64).reshape(-1),
        p=np.asarray(p, np.float64).reshape(-1),
        r=np.eye(3).reshape(-1),
        distortion_model="plumb_bob",
        d=np.zeros(5),
    )
    for name, v in kw.items():
        if name == "roi":
            msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = v
        else:
            setattr(msg, name, v)
    return msg


K = np.array([[500.0, 0, 319.5], [0, 505.0, 241.0], [0, 0, 1]])


def test_the_rectified_camera_is_ps_left_3x3_read_from_a_12_element_p():
    """CameraInfo.msg: P is 3x4 (12 elements); the rectified images' K is its left 3x3, not K."""
    p = np.array([[450.0, 0, 300.0, 0], [0, 455.0, 230.0, 0], [0, 0, 1, 0]])
    intr = camera_info_to_intrinsics(_camera_info(K, p))
    assert np.allclose(intr.rectified().K, p[:, :3])
    assert np.allclose(intr.K, K)


def test_an_all_zero_p_leaves_the_rectified_camera_at_k():
    """An uncalibrated P (all zero, as many drivers publish) is no camera: rectified() falls back
    to K (its docstring: 'K = P's left 3x3 where P is set (else K)')."""
    intr = camera_info_to_intrinsics(_camera_info(K, np.zeros((3, 4))))
    rect = intr.rectified()
    assert np.allclose(rect.K, K) and not rect.D.any()


def test_a_roi_one_pixel_beyond_the_right_edge_is_refused():
    """The ROI must lie inside the full sensor: x_offset + width == sensor width fits,
    one more pixel is one MessageError naming the roi."""
    ok = camera_info_to_intrinsics(_camera_info(K, np.zeros((3, 4)), roi=(40, 0, 600, 480)))
    assert (ok.width, ok.height) == (600, 480) and ok.K[0, 2] == pytest.approx(279.5)
    with pytest.raises(MessageError, match="roi: 601x480 at \\(40, 0\\) is not inside"):
        camera_info_to_intrinsics(_camera_info(K, np.zeros((3, 4)), roi=(40, 0, 601, 480)))


def test_intrinsics_to_camera_info_stamps_the_header_with_the_given_time():
    """stamp_ns given overrides the intrinsics' own stamp (builtin_interfaces/Time: sec, nanosec)."""
    intr = CameraIntrinsics(640, 480, K, np.zeros(5), "plumb_bob", "cam", stamp_ns=1)
    msg = intrinsics_to_camera_info(intr, stamp_ns=5_000_000_007, frame_id="other")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (5, 7)
    assert stamp_to_ns(msg.header.stamp) == 5_000_000_007 and msg.header.frame_id == "other"


# ------------------------------------------------------------------------------------------------
# image


def test_an_integer_array_is_not_silently_cast_to_a_float_encoding():
    """numpy_to_image: 'floats of another width are cast; other mismatches are an error rather
    than a silent wrap-around': int32 millimetres written as 32FC1 (metres) must be refused."""
    with pytest.raises(MessageError, match="does not match encoding '32FC1'"):
        numpy_to_image(np.full((2, 2), 1500, np.int32), "32FC1")
    # a float64 array is cast to float32 (the allowed case)
    msg = numpy_to_image(np.full((2, 2), 1.5), "32FC1")
    assert msg.step == 8 and np.frombuffer(msg.data.tobytes(), "<f4").tolist() == [1.5] * 4


def test_a_two_channel_image_has_no_rgb():
    """image_to_rgb: a two-channel 8UC2 image has no colour meaning: one MessageError."""
    with pytest.raises(MessageError, match="two-channel"):
        image_to_rgb(numpy_to_image(np.zeros((2, 2, 2), np.uint8), "8UC2"))


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_cells_average_their_two_greens(pattern):
    """image_to_rgb's docstring: 'Bayer mosaics by 2x2 cells (each cell's colour on its 4
    pixels)': red, the mean of the two greens, blue — hand-computed on one cell."""
    value = {"r": 200, "b": 40}
    greens = iter([10, 30])
    cell = np.array([value[c] if c in value else next(greens) for c in pattern], np.uint8).reshape(2, 2)
    got = image_to_rgb(numpy_to_image(cell, f"bayer_{pattern}8"))
    assert np.array_equal(got, np.broadcast_to(np.array([200, 20, 40], np.uint8), (2, 2, 3)))


def test_negative_and_out_of_range_depths_are_written_invalid_not_wrapped():
    """metres_to_depth_image: '(NaN/inf/≤0 invalid) → 16UC1 (mm, 0 invalid) or 32FC1 (NaN
    invalid)'; 70 m does not fit 16 bits (65.535 m max) and must not wrap to 70000 − 65536 mm."""
    from gs_mapping.messages import metres_to_depth_image

    d = np.array([[-0.5, 1.25, 70.0, 65.5]])
    mm = np.frombuffer(metres_to_depth_image(d, "16UC1").data.tobytes(), "<u2")
    assert mm.tolist() == [0, 1250, 0, 65500]
    m = np.frombuffer(metres_to_depth_image(d, "32FC1").data.tobytes(), "<f4")
    assert np.isnan(m[0]) and m[1] == 1.25


def test_a_raw_16uc1_depth_image_is_refused_as_colour():
    """image_to_rgb: '16UC1, REP-118's depth, is refused' (its high byte is near black); mono16,
    a grey camera's, is not."""
    mm = np.full((2, 2), 1500, np.uint16)
    with pytest.raises(MessageError, match="'16UC1' is a depth image"):
        color_to_rgb(numpy_to_image(mm, "16UC1"))
    assert color_to_rgb(numpy_to_image(mm, "mono16")).tolist() == [[[5, 5, 5]] * 2] * 2  # 1500 >> 8


# ------------------------------------------------------------------------------------------------
# compressed_image: Pillow modes other than L / RGB / RGBA


def test_a_grey_and_alpha_png_decodes_to_rgba_keeping_the_alpha():
    """compressed_image_to_numpy: '(H, W, 4) RGBA': a grey+alpha (LA) PNG is grey repeated to
    three channels with its alpha, not alpha dropped."""
    from gs_mapping.messages import compressed_image_to_numpy

    la = np.array([[[10, 255], [200, 0]]], np.uint8)
    buf = io.BytesIO()
    Image.fromarray(la, mode="LA").save(buf, format="PNG")
    got = compressed_image_to_numpy(_compressed("png", buf.getvalue()))
    assert got.tolist() == [[[10, 10, 10, 255], [200, 200, 200, 0]]]


def test_a_palette_png_decodes_to_its_palette_colours_not_indices():
    """A palette ("P") PNG: the colours its palette names, as RGB — not the palette indices."""
    from gs_mapping.messages import compressed_image_to_numpy

    im = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    im.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    got = compressed_image_to_numpy(_compressed("png", buf.getvalue()))
    red, blue = [255, 0, 0], [0, 0, 255]
    assert got.tolist() == [[red, blue], [blue, red]]


def test_what_jpeg_cannot_hold_is_one_message_error_not_a_pillow_traceback():
    """numpy_to_compressed_image: RGBA and uint16 are 'png only'; an empty image cannot be
    compressed: each is one MessageError, not Pillow's OSError / SystemError."""
    from gs_mapping.messages import numpy_to_compressed_image

    with pytest.raises(MessageError, match="cannot compress"):
        numpy_to_compressed_image(np.zeros((4, 4, 4), np.uint8), "jpeg")
    with pytest.raises(MessageError, match="cannot compress"):
        numpy_to_compressed_image(np.zeros((4, 4), np.uint16), "jpeg")
    with pytest.raises(MessageError, match="empty"):
        numpy_to_compressed_image(np.zeros((0, 4, 3), np.uint8), "png")


def test_a_single_channel_colour_array_is_compressed_as_grey():
    """An (H, W, 1) uint8 array is grey (mono8), as an (H, W) one; Pillow reads it back."""
    from gs_mapping.messages import numpy_to_compressed_image

    a = np.arange(12, dtype=np.uint8).reshape(3, 4, 1) * 20
    msg = numpy_to_compressed_image(a, "png")
    assert msg.format == "mono8; png compressed mono8"
    with Image.open(io.BytesIO(msg.data.tobytes())) as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), a[:, :, 0])


# ------------------------------------------------------------------------------------------------
# compressed_depth: image_transport's compressedDepth (ConfigHeader: int32 format, float32
# depthParam[2]; 32FC1 depth = depthQuantA / (q − depthQuantB), q = 0 invalid)


def _cd(fmt: str, quant_a: float, quant_b: float, payload: bytes):
    return _compressed(fmt, struct.pack("<iff", 0, quant_a, quant_b) + payload)


def test_a_32fc1_compressed_depth_without_its_header_is_refused():
    """A 32FC1 compressedDepth's PNG holds quantised inverse depth, meaningless without the
    header's A and B: a header-less PNG (accepted for 16UC1 only) must be one MessageError, not
    quantisation codes taken for millimetres."""
    from gs_mapping.messages import compressed_depth_to_metres

    q = np.array([[1000, 2000]], np.uint16)
    msg = _compressed("32FC1; compressedDepth png", _png(q))
    with pytest.raises(MessageError):
        compressed_depth_to_metres(msg)
    # the same PNG as 16UC1 is millimetres (the header-less form some converters write)
    assert compressed_depth_to_metres(_compressed("16UC1; compressedDepth png", _png(q))).tolist() == [
        [pytest.approx(1.0), pytest.approx(2.0)]
    ]


def test_a_32fc1_header_with_a_zero_quantisation_is_refused():
    """depthQuantA = 0 would make every depth 0: the header is unusable, one MessageError."""
    from gs_mapping.messages import compressed_depth_to_numpy

    msg = _cd("32FC1; compressedDepth png", 0.0, -1009.0, _png(np.full((2, 2), 5, np.uint16)))
    with pytest.raises(MessageError, match="unusable quantisation"):
        compressed_depth_to_numpy(msg)


def test_32fc1_depths_decoding_negative_are_invalid():
    """d = A / (q − B): with a (foreign) header whose B exceeds some q the formula gives negative
    depths, which no sensor measures: NaN, as raw 32FC1 images treat them."""
    from gs_mapping.messages import compressed_depth_to_metres

    q = np.array([[10, 100, 0]], np.uint16)
    got = compressed_depth_to_metres(_cd("32FC1; compressedDepth png", 100.0, 50.0, _png(q)))
    assert np.isnan(got[0, 0]) and got[0, 1] == pytest.approx(100.0 / 50.0) and np.isnan(got[0, 2])


def test_a_colour_png_in_a_compressed_depth_message_is_refused():
    """compressedDepth payloads are single-channel 16-bit PNGs: an RGB PNG is one MessageError."""
    from gs_mapping.messages import compressed_depth_to_numpy

    msg = _cd("16UC1; compressedDepth png", 0.0, 0.0, _png(np.zeros((2, 2, 3), np.uint8)))
    with pytest.raises(MessageError, match="not single-channel"):
        compressed_depth_to_numpy(msg)


def _rvl(cols: int, rows: int, *words: int) -> bytes:
    """An RVL payload built by hand: uint32 cols, rows, then 32-bit words of eight 4-bit nibbles
    (first nibble in the top bits; low 3 bits value, high bit 'more follows')."""
    return struct.pack("<II", cols, rows) + struct.pack(f"<{len(words)}I", *words)


def test_a_hand_built_rvl_stream_decodes_and_corrupt_ones_are_one_message_error():
    """decode_rvl against hand-computed streams. Good: nibbles 0,2,2,2,0,1,2,… = 0 zeros, 2
    non-zeros (zig-zag 2 = +1 twice → 1, 2), 0 zeros, 1 non-zero (+1 → 3). Corrupt: a stream
    ending one value short of its last run, a zero run longer than the image, an image of no
    pixels, a 12-nibble (> 32-bit) code — each one MessageError, never an IndexError."""
    from gs_mapping.messages.compressed_depth import decode_rvl

    assert decode_rvl(_rvl(3, 1, 0x02220120)).tolist() == [[1, 2, 3]]
    assert decode_rvl(_rvl(4, 1, 0x02220120, 0x12000000)).tolist() == [[1, 2, 3, 4]]
    with pytest.raises(MessageError, match="ends 1 pixels early"):
        decode_rvl(_rvl(4, 1, 0x02220120))  # the 8th nibble (padding 0) is the last value
    with pytest.raises(MessageError, match="overrun"):
        decode_rvl(_rvl(2, 1, 0x50000000))  # 5 zeros in a 2-pixel image
    with pytest.raises(MessageError, match="claims 0x5 pixels"):
        decode_rvl(_rvl(0, 5, 0x00000000))
    # 11 continuation nibbles then a 0: a 12-nibble code; then 1 non-zero of delta +1
    with pytest.raises(MessageError, match="longer than 32 bits"):
        decode_rvl(_rvl(1, 1, 0x88888888, 0x88801200))


def _q(msg) -> np.ndarray:
    """The quantised payload of one of our compressedDepth messages, read by Pillow."""
    raw = msg.data.tobytes()
    with Image.open(io.BytesIO(raw[12:])) as im:
        return np.asarray(im).astype(np.uint16)


def test_16uc1_compressed_depth_zeroes_only_what_is_beyond_depth_max():
    """compressed_depth_image_transport: 'if (*itDepthImg > depthMaxUShort) *itDepthImg = 0' with
    depthMaxUShort = depth_max * 1000: exactly depth_max is kept, one millimetre more is not."""
    from gs_mapping.messages import numpy_to_compressed_depth

    mm = np.array([[9999, 10000, 10001, 0]], np.uint16)
    msg = numpy_to_compressed_depth(mm, depth_max=10.0)
    assert struct.unpack("<iff", msg.data.tobytes()[:12]) == (0, 0.0, 0.0)
    assert _q(msg).tolist() == [[9999, 10000, 0, 0]]


def test_32fc1_compressed_depth_quantises_as_image_transport_does():
    """encodeCompressedDepthImage: 'if (*itDepthImg < depthMax) q = A / d + B; else q = 0' with
    A = z0 (z0 + 1), B = 1 − A / depth_max (float32) and a C cast (truncation); NaN and depth_max
    itself are 0 (invalid), and so is a depth behind the camera (where the C cast is undefined)."""
    from gs_mapping.messages import numpy_to_compressed_depth

    a = np.float32(100.0) * np.float32(101.0)
    b = np.float32(1.0) - a / np.float32(10.0)
    d = np.array([[0.5, 2.0, 9.99, 10.0, np.nan, -2.0, 3.3]], np.float32)
    msg = numpy_to_compressed_depth(d)
    assert struct.unpack("<iff", msg.data.tobytes()[:12]) == (0, float(a), float(b))
    want = [int(np.float32(a) / np.float32(x) + b) if 0 < x < 10 else 0 for x in d[0]]
    assert _q(msg).tolist() == [want]
    assert want[:3] == [19191, 4041, 2]  # hand-computed: 10100 / 0.5 − 1009, …


def test_an_empty_depth_array_is_one_message_error():
    from gs_mapping.messages import numpy_to_compressed_depth

    with pytest.raises(MessageError, match="non-empty"):
        numpy_to_compressed_depth(np.zeros((0, 4), np.float32))


def test_depths_nearer_than_the_quantisation_can_hold_do_not_come_back_farther():
    """q = A / d + B must fit uint16: with the defaults (A = 10100, B = −1009) the nearest depth a
    code can hold is A / (65535 − B) = 0.1518 m. A RealSense sees 0.1 m; written and read back it
    must be invalid (NaN) or clamped near 0.152 m — not 0.285 m (100000 wrapped to 34464). 0.1519 m
    (just beyond the bound) still comes back."""
    from gs_mapping.messages import compressed_depth_to_metres, numpy_to_compressed_depth

    d = np.array([[0.1, 0.14, 0.5]], np.float32)
    back = compressed_depth_to_metres(numpy_to_compressed_depth(d))
    assert back[0, 2] == pytest.approx(0.5, rel=1e-3)
    for x in back[0, :2]:
        assert np.isnan(x) or x <= 10100.0 / (65535 + 1009) + 1e-4
    edge = compressed_depth_to_metres(numpy_to_compressed_depth(np.array([[0.1519]], np.float32)))
    assert edge[0, 0] == pytest.approx(0.1519, abs=1e-4)


# ------------------------------------------------------------------------------------------------
# factory: bytes, stamps, CDR


def test_a_signed_byte_array_is_read_as_its_bytes():
    """as_uint8_array: a one-byte-per-element array (int8, as some bridges type byte[]) is the same
    bytes, two's complement (-1 → 0xFF), not an error; wider dtypes are refused."""
    from gs_mapping.messages import as_uint8_array

    got = as_uint8_array(np.array([[-1, 2], [-128, 127]], np.int8))
    assert got.dtype == np.uint8 and got.tolist() == [255, 2, 128, 127]
    with pytest.raises(MessageError, match="expected uint8 data"):
        as_uint8_array(np.array([1, 2], np.uint16))


def test_an_image_serialises_to_hand_computed_xcdr1_bytes():
    """serialize_cdr: XCDR1 little-endian (encapsulation 00 01 00 00), each primitive aligned to its
    size counted from the end of that 4-byte header, strings as uint32 length (with the NUL) +
    bytes + NUL, sequences as uint32 count + elements. A look-alike message (rclpy's shape:
    ``array.array`` data) serialises to the same bytes, and the bytes read back from a memoryview."""
    import array
    from types import SimpleNamespace as NS

    from gs_mapping.messages import deserialize_cdr, serialize_cdr

    want = bytes.fromhex(
        "00010000"  # encapsulation: CDR little-endian
        "01000000"
        "02000000"  # header.stamp sec = 1, nanosec = 2
        "03000000"
        "616200"
        "00"  # frame_id "ab" (+NUL), 1 pad byte to align the next uint32
        "01000000"
        "02000000"  # height 1, width 2
        "06000000"
        "6d6f6e6f3800"  # encoding "mono8" (+NUL)
        "00"
        "00"  # is_bigendian (uint8), 1 pad byte
        "02000000"  # step 2
        "02000000"
        "0708"  # data: uint8[2]
    )
    msg = numpy_to_image(np.array([[7, 8]], np.uint8), "mono8", stamp_ns=1_000_000_002, frame_id="ab")
    assert serialize_cdr(msg, "sensor_msgs/msg/Image") == want
    header = NS(stamp=NS(sec=1, nanosec=2), frame_id="ab")
    look = NS(
        header=header,
        height=1,
        width=2,
        encoding="mono8",
        is_bigendian=0,
        step=2,
        data=array.array("B", [7, 8]),
    )
    assert serialize_cdr(look, "sensor_msgs/msg/Image") == want
    back = deserialize_cdr(memoryview(want), "sensor_msgs/msg/Image")
    assert back.encoding == "mono8" and back.header.frame_id == "ab" and back.data.tolist() == [7, 8]


def test_an_rclpy_byte_sequence_of_one_byte_bytes_converts_to_its_values():
    """convert_message: rclpy holds ``byte[]`` (octet) sequences as lists of 1-byte ``bytes``; they
    must become the byte values, not an error."""
    from types import SimpleNamespace as NS

    from gs_mapping.messages import convert_message

    look = NS(layout=NS(dim=[], data_offset=0), data=[b"\x01", b"\xff", b"\x00"])
    msg = convert_message(look, "std_msgs/msg/ByteMultiArray")
    assert np.asarray(msg.data).tolist() == [1, 255, 0]


# ------------------------------------------------------------------------------------------------
# pointcloud2: hand-built clouds (PointField datatypes: 7 = FLOAT32, 8 = FLOAT64)

PC2 = "sensor_msgs/msg/PointCloud2"


def _cloud(fields, point_step, rows, width=None, extra=b"", **kw):
    """A PointCloud2 made field by field: ``fields`` (name, offset, datatype, count), ``rows`` the
    packed little-endian bytes of each point."""
    f = default_factory()
    data = b"".join(rows) + extra
    n = len(rows) if width is None else width
    return f.make(
        PC2,
        height=1,
        width=n,
        fields=[
            f.make("sensor_msgs/msg/PointField", name=a, offset=o, datatype=t, count=c)
            for a, o, t, c in fields
        ],
        point_step=point_step,
        row_step=point_step * n,
        data=np.frombuffer(data, np.uint8).copy(),
        is_dense=False,
        **kw,
    )


XYZ = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]


def test_a_point_field_of_count_0_is_one_element():
    """fields_to_dtype: 'count 0 is written by some drivers and means one element, as in PCL'."""
    from gs_mapping.messages import pointcloud2_xyz

    msg = _cloud([(n, o, t, 0) for n, o, t, _ in XYZ], 12, [struct.pack("<3f", 1, 2, 3)])
    assert pointcloud2_xyz(msg).tolist() == [[1.0, 2.0, 3.0]]


def test_a_field_reaching_past_point_step_is_named_in_the_error():
    from gs_mapping.messages import pointcloud2_to_array

    msg = _cloud(XYZ, 11, [b"\x00" * 11])  # z (4 bytes at 8) ends at 12 > 11
    with pytest.raises(MessageError, match="'z'.*extends beyond point_step 11"):
        pointcloud2_to_array(msg)


def test_a_cloud_of_points_without_a_point_step_or_with_extra_bytes_is_one_message_error():
    from gs_mapping.messages import pointcloud2_to_array

    with pytest.raises(MessageError, match="point_step: 0 for 3x1 points"):
        pointcloud2_to_array(_cloud([], 0, [], width=3))
    with pytest.raises(MessageError, match="data: length 13 != height\\*row_step"):
        pointcloud2_to_array(_cloud(XYZ, 12, [struct.pack("<3f", 1, 2, 3)], extra=b"\x00"))


def test_a_point_with_only_z_invalid_is_dropped_and_the_cloud_is_not_dense():
    """pointcloud2_xyz drops 'rows with a non-finite coordinate' — z too; array_to_pointcloud2's
    is_dense is 'True when x, y, z ... are finite'."""
    from gs_mapping.messages import array_to_pointcloud2, pointcloud2_xyz

    nan = float("nan")
    msg = _cloud(XYZ, 12, [struct.pack("<3f", 1, 2, nan), struct.pack("<3f", 4, 5, 6)])
    assert pointcloud2_xyz(msg).tolist() == [[4.0, 5.0, 6.0]]
    a = np.zeros(2, np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")]))
    a["z"][0] = np.nan
    assert array_to_pointcloud2(a).is_dense is False


def test_a_coordinate_or_packed_colour_of_the_wrong_shape_is_one_message_error():
    """x with count 2 is no coordinate; a float64 'rgb' is no PCL-packed 4-byte colour."""
    from gs_mapping.messages import pointcloud2_rgb, pointcloud2_xyz

    two = _cloud([("x", 0, 7, 2), ("y", 8, 7, 1), ("z", 12, 7, 1)], 16, [struct.pack("<4f", 1, 1, 2, 3)])
    with pytest.raises(MessageError, match="count must be 1"):
        pointcloud2_xyz(two)
    wide = _cloud([*XYZ, ("rgb", 12, 8, 1)], 20, [struct.pack("<3fd", 1, 2, 3, 0.5)])
    with pytest.raises(MessageError, match="expected one 4-byte packed colour"):
        pointcloud2_rgb(wide)


# ------------------------------------------------------------------------------------------------
# markers


def test_marker_colours_are_clipped_to_0_1_and_rgb_vertices_take_the_markers_alpha():
    """std_msgs/ColorRGBA is 0..1: an out-of-range colour is clipped; per-vertex (N, 3) colours
    have no alpha of their own, and RViz draws a vertex with its colour's alpha, so they carry the
    marker's alpha (0.5 here), not an opaque 1."""
    from gs_mapping.messages import line_strip_marker

    pts = np.array([[0.0, 0, 0], [1, 0, 0]])
    m = line_strip_marker(
        "lane", 1, pts, rgba=(1.5, -0.2, 0.5, 0.5), colors=np.array([[0.0, 1, 0], [1, 0, 2]])
    )
    assert (m.color.r, m.color.g, m.color.b, m.color.a) == (1.0, 0.0, 0.5, 0.5)
    assert [(c.r, c.g, c.b, c.a) for c in m.colors] == [(0.0, 1.0, 0.0, 0.5), (1.0, 0.0, 1.0, 0.5)]


def test_marker_lifetime_is_a_normalised_duration():
    """builtin_interfaces/Duration: 0 ≤ nanosec < 1e9 — 2.5 s is (2, 500000000)."""
    from gs_mapping.messages import points_marker

    m = points_marker("p", 0, np.zeros((1, 3)), lifetime_ns=2_500_000_000)
    assert (m.lifetime.sec, m.lifetime.nanosec) == (2, 500_000_000)


def _marker_with_pose(position, orientation):
    from gs_mapping.messages import line_strip_marker

    m = line_strip_marker("lane", 1, np.array([[1.0, 0, 0], [0, 0, 0]]))
    m.pose.position.x, m.pose.position.y, m.pose.position.z = position
    m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w = orientation
    return m


def test_a_marker_pose_translation_is_applied_even_without_rotation():
    """A marker's points are in its pose's frame: identity orientation and position (1, 2, 3)
    moves every point by (1, 2, 3)."""
    from gs_mapping.messages import marker_to_points

    got = marker_to_points(_marker_with_pose((1.0, 2.0, 3.0), (0.0, 0.0, 0.0, 1.0)))
    assert np.allclose(got, [[2, 2, 3], [1, 2, 3]])


def test_a_non_unit_marker_orientation_is_normalised_as_rviz_does():
    """(0, 0, √2, √2) is 90° about z at norm 2: (1, 0, 0) → (0, 1, 0), not scaled by 4."""
    from gs_mapping.messages import marker_to_points

    s = np.sqrt(2.0)
    got = marker_to_points(_marker_with_pose((0.0, 0.0, 0.0), (0.0, 0.0, s, s)))
    assert np.allclose(got, [[0, 1, 0], [0, 0, 0]], atol=1e-12)


# ------------------------------------------------------------------------------------------------
# tf_message


def test_a_transform_with_an_empty_child_frame_is_refused():
    """tf2 refuses a transform whose child_frame_id is empty (and one whose parent is)."""
    from gs_mapping.errors import TFError
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import transform_stamped_from_msg, transform_to_msg

    msg = transform_to_msg(TransformStamped("map", "base", 0, Transform()))
    msg.child_frame_id = "/"  # a bare slash is empty once tf2's leading '/' is stripped
    with pytest.raises(TFError, match="empty frame id"):
        transform_stamped_from_msg(msg)


# ------------------------------------------------------------------------------------------------
# rectify


def test_zero_distortion_with_a_skewed_k_reads_every_pixel_from_itself():
    """The module docstring: 'a skew K[0, 1] is applied both ways here': unprojecting a pixel with
    K and projecting it back with K (no distortion) must land on the same pixel."""
    from gs_mapping.rectify import Rectifier

    K = np.array([[200.0, 3.0, 15.5], [0, 190.0, 11.5], [0, 0, 1]])
    r = Rectifier(32, 24, K, "plumb_bob", np.zeros(5))
    v, u = np.mgrid[0:24, 0:32]
    assert np.allclose(r.source[0], u, atol=1e-9) and np.allclose(r.source[1], v, atol=1e-9)


def test_depth_rays_landing_past_the_last_row_read_nothing():
    """Depth is read 'by the nearest pixel ... and 0 (invalid) beyond the border': a ray landing
    at v ∈ [H − 0.5, H + 0.5) has no raw pixel (nearest row H does not exist). OpenCV's
    initUndistortRectifyMap is the reference for where each ray lands."""
    cv2 = pytest.importorskip("cv2")
    from gs_mapping.rectify import Rectifier

    W = H = 40
    K = np.array([[100.0, 0, 19.5], [0, 100.0, 19.5], [0, 0, 1]])
    d = np.array([1.0, 0, 0, 0, 0])  # strong pincushion: the bottom row reads from below the image
    mx, my = cv2.initUndistortRectifyMap(K, d, None, K, (W, H), cv2.CV_32FC1)
    ni, nj = np.rint(my).astype(int), np.rint(mx).astype(int)
    inside = (ni >= 0) & (ni < H) & (nj >= 0) & (nj < W)
    assert ((my >= H - 0.5) & (my < H + 0.4)).any()  # the case this guards is present
    depth = (np.arange(H * W, dtype=np.float32).reshape(H, W) + 1) / 100
    out = Rectifier(W, H, K, "plumb_bob", d).depth(depth)
    assert np.array_equal(out[inside], depth[ni[inside], nj[inside]]) and not out[~inside].any()


def test_an_undistorted_rectifier_is_the_identity_on_depth_including_the_first_pixel():
    """With d = 0 every pixel reads itself: depth comes back unchanged — the top-left pixel (flat
    index 0) included."""
    from gs_mapping.rectify import Rectifier

    depth = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    r = Rectifier(4, 3, [[10.0, 0, 1.5], [0, 10.0, 1.0], [0, 0, 1]], "plumb_bob", np.zeros(5))
    assert np.array_equal(r.depth(depth), depth)


def test_rectified_colour_is_the_bilinear_value_rounded_not_truncated():
    """Colour is read bilinearly (edge pixels beyond the border) and stored back as uint8:
    rounded. Reference: numpy bilinear interpolation at OpenCV's undistortion map."""
    cv2 = pytest.importorskip("cv2")
    from gs_mapping.rectify import Rectifier

    W, H = 48, 36
    K = np.array([[60.0, 0, 23.5], [0, 60.0, 17.5], [0, 0, 1]])
    d = np.array([-0.2, 0.05, 0.001, -0.002, 0])
    rgb = np.random.default_rng(5).integers(0, 256, (H, W, 3), dtype=np.uint8)
    mx, my = cv2.initUndistortRectifyMap(K, d, None, K, (W, H), cv2.CV_32FC1)
    x, y = np.clip(mx.astype(np.float64), 0, W - 1), np.clip(my.astype(np.float64), 0, H - 1)
    j0, i0 = np.minimum(np.floor(x).astype(int), W - 2), np.minimum(np.floor(y).astype(int), H - 2)
    a, b = (x - j0)[..., None], (y - i0)[..., None]
    f = rgb.astype(np.float64)
    want = (
        f[i0, j0] * (1 - a) * (1 - b)
        + f[i0, j0 + 1] * a * (1 - b)
        + f[i0 + 1, j0] * (1 - a) * b
        + f[i0 + 1, j0 + 1] * a * b
    )
    diff = np.abs(Rectifier(W, H, K, "plumb_bob", d).color(rgb).astype(int) - np.rint(want).astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.02


def test_pinhole_color_leaves_an_image_of_another_size_to_the_callers_check():
    """pinhole_color: 'An image of another size than the CameraInfo's is returned as it is: the
    caller's size check names it' — not a traceback from the resampling."""
    from gs_mapping.rectify import pinhole_color

    intr = CameraIntrinsics(64, 48, K / 10 * [[1], [1], [10]], [0.1, 0, 0, 0, 0], "plumb_bob", "cam")
    small = np.zeros((24, 32, 3), np.uint8)
    assert pinhole_color(small, intr) is small


# ------------------------------------------------------------------------------------------------
# camera


def test_a_camera_of_zero_width_is_refused():
    from gs_mapping.camera import Camera
    from gs_mapping.errors import GsMappingError

    with pytest.raises(GsMappingError, match="invalid size 0x48"):
        Camera(K, 0, 48)


def test_the_view_matrix_is_the_inverse_of_the_pose():
    """T_cam_map (world → camera) is the inverse of T_map_cam: numpy's inverse is the reference;
    a map point projects where the optical-frame rule u = fx x / z + cx puts it."""
    from gs_mapping.camera import Camera
    from gs_mapping.geometry import quat_to_matrix

    T = np.eye(4)
    q = np.array([0.1, -0.3, 0.2, 0.9])
    T[:3, :3] = quat_to_matrix(q / np.linalg.norm(q))
    T[:3, 3] = [1.0, -2.0, 0.5]
    cam = Camera(K, 640, 480, T)
    assert np.allclose(cam.T_cam_map, np.linalg.inv(T))
    p_cam = np.array([0.2, -0.1, 2.0])
    p_map = T[:3, :3] @ p_cam + T[:3, 3]
    uv, z = cam.project(p_map)
    assert z == pytest.approx(2.0) and np.allclose(uv, [500 * 0.1 + 319.5, 505 * -0.05 + 241.0])


def test_backprojection_follows_the_pinhole_rule_and_the_pose():
    """backproject: pixel (u, v) at depth z is the optical-frame point ((u − cx) z / fx,
    (v − cy) z / fy, z) (REP-103: x right, y down), carried into the map by T_map_cam."""
    from gs_mapping.camera import Camera

    T = np.array([[0.0, 0, 1, 5], [-1, 0, 0, 6], [0, -1, 0, 7], [0, 0, 0, 1]])  # optical → ROS body
    cam = Camera(K, 640, 480, T)
    depth = np.zeros((480, 640))
    depth[100, 600] = 2.0
    p = cam.backproject(depth)[100, 600]
    x, y = (600 - 319.5) * 2.0 / 500.0, (100 - 241.0) * 2.0 / 505.0
    assert np.allclose(p, [5 + 2.0, 6 - x, 7 - y])


def test_a_namespaced_deleteall_removes_only_its_namespace():
    """visualization_msgs/Marker.msg: 'action 3 deletes all objects (or those with the given ns if
    any)'; RViz2's MarkerCommon::processMessage: a DELETEALL with a non-empty ns calls
    deleteMarkersInNamespace(ns). marker_array_to_polylines says it applies deletes 'as RViz
    applies them', and delete_all_marker takes an ns to build exactly this marker."""
    from gs_mapping.messages import (
        delete_all_marker,
        line_strip_marker,
        marker_array,
        marker_array_to_polylines,
    )

    pts = np.array([[0.0, 0, 0], [1, 0, 0]])
    arr = marker_array(
        [
            line_strip_marker("trajectory", 0, pts),
            line_strip_marker("lanes", 0, pts),
            delete_all_marker(ns="lanes"),
            line_strip_marker("lanes", 1, pts + 1),
        ]
    )
    got = [(p.ns, p.id) for p in marker_array_to_polylines(arr)]
    assert got == [("trajectory", 0), ("lanes", 1)]
