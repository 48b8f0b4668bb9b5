"""16-bit colour in compressed_image_transport's ``tiff``: the colour the mapper gets is the one the
raw 16-bit Image of the same pixels gives (its high byte, :func:`gs_mapping.messages.image.image_to_rgb`),
whatever the TIFF's layout: OpenCV's (the transport's own ``cv::imencode``: interleaved, LZW) and a
planar one (PlanarConfiguration 2, one plane a channel, uncompressed: what tifffile writes with
``planarconfig='separate'``), little- and big-endian. Expected values: the 16-bit pixels shifted right by 8 by
hand, and the raw Image read by the project's own rule."""

from __future__ import annotations

import struct
from types import SimpleNamespace as NS

import numpy as np
import pytest

from gs_mapping.messages.camera_image import color_to_rgb
from gs_mapping.messages.image import image_to_rgb

RNG = np.random.default_rng(16)
RGB16 = RNG.integers(0, 65536, (5, 7, 3), dtype=np.uint16)  # the scene's true colour, 16 bits
RGB16[0, :3] = [[0x00FF, 0x0100, 0xFFFF]] * 3  # (a low byte that rounding would carry up)


def _planar_tiff(planes: np.ndarray, order: str) -> bytes:
    """A baseline TIFF 6.0 file (section 2, 'RGB Full Color Images'; PlanarConfiguration, section 8)
    of ``planes`` (C, H, W) uint16, one strip per plane, uncompressed, byte order ``order``
    ('<' II or '>' MM)."""
    c, h, w = planes.shape
    strips = [np.ascontiguousarray(p).astype(f"{order}u2").tobytes() for p in planes]
    entries = [  # (tag, type: 3 SHORT / 4 LONG, count, value or where the values are)
        (256, 3, 1, w),
        (257, 3, 1, h),
        (258, 3, c, "bits"),
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 2),  # RGB
        (273, 4, c, "offsets"),
        (277, 3, 1, c),
        (278, 3, 1, h),  # rows per strip: a plane a strip
        (279, 4, c, "counts"),
        (284, 3, 1, 2),  # planar
    ]
    ifd_end = 8 + 2 + 12 * len(entries) + 4
    bits_at, offsets_at, counts_at = ifd_end, ifd_end + 2 * c, ifd_end + 6 * c
    first = ifd_end + 10 * c
    offsets = [first + i * len(strips[0]) for i in range(c)]
    where = {
        "bits": struct.pack(f"{order}I", bits_at),
        "offsets": struct.pack(f"{order}I", offsets_at),
        "counts": struct.pack(f"{order}I", counts_at),
    }
    ifd = struct.pack(f"{order}H", len(entries))
    for tag, kind, count, value in entries:
        packed = where[value] if isinstance(value, str) else struct.pack(f"{order}HH", value, 0)
        ifd += struct.pack(f"{order}HHI", tag, kind, count) + packed
    head = (b"II" if order == "<" else b"MM") + struct.pack(f"{order}HI", 42, 8)
    values = struct.pack(f"{order}{c}H", *[16] * c)
    values += struct.pack(f"{order}{c}I", *offsets) + struct.pack(f"{order}{c}I", *map(len, strips))
    return head + ifd + struct.pack(f"{order}I", 0) + values + b"".join(strips)


def _opencv_tiff(mat: np.ndarray) -> bytes:
    """CompressedPublisher::publish, case TIFF: cv::imencode(".tiff") of the Image's own Mat."""
    cv2 = pytest.importorskip("cv2")
    ok, buf = cv2.imencode(".tiff", mat)
    assert ok
    return buf.tobytes()


def _raw(encoding: str, mat: np.ndarray):
    h, w, c = mat.shape
    return NS(height=h, width=w, encoding=encoding, is_bigendian=0, step=w * c * 2, data=mat.tobytes())


@pytest.mark.parametrize("layout", ["opencv", "planar <", "planar >"])
@pytest.mark.parametrize("encoding", ["bgr16", "rgb16"])
def test_16_bit_colour_tiff_reads_as_the_raw_16_bit_image(layout, encoding):
    # the camera's Mat in the message's encoding; OpenCV takes any 3-channel Mat for BGR and stores it
    # as the TIFF's RGB, so the file holds the Mat's channels reversed (a bgr16 image's true colour)
    mat = RGB16[:, :, ::-1] if encoding == "bgr16" else RGB16
    in_file = mat[:, :, ::-1]
    if layout == "opencv":
        data = _opencv_tiff(mat)
    else:
        data = _planar_tiff(np.moveaxis(in_file, 2, 0), layout[-1])
    got = color_to_rgb(NS(format=f"{encoding}; tiff compressed ", data=np.frombuffer(data, np.uint8)))
    np.testing.assert_array_equal(got, (RGB16 >> 8).astype(np.uint8))  # by hand
    np.testing.assert_array_equal(got, image_to_rgb(_raw(encoding, mat)))  # the raw Image's rule
