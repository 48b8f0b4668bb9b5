"""sensor_msgs/Image ⇄ numpy, honouring ``step`` row padding and ``is_bigendian``.

Arrays are (H, W) for one channel and (H, W, C) otherwise, always native-endian and owning their
memory (never a view into the message buffer). Depth follows REP-118: ``16UC1`` millimetres or
``32FC1`` metres, with 0, NaN, ±inf and 65535 (16UC1) marking invalid pixels.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from ..errors import MessageError
from ..say_once import say_once
from .factory import MessageFactory, _factory, as_uint8_array, make_header, reads

IMAGE = "sensor_msgs/msg/Image"
BAYER_PATTERNS = ("rggb", "bggr", "gbrg", "grbg")  # a 2x2 cell's sites in row order

# Named encodings (sensor_msgs/image_encodings.hpp) → (dtype, channels).
_NAMED = {
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "mono8": ("u1", 1),
    "mono16": ("u2", 1),
    "rgb16": ("u2", 3),
    "bgr16": ("u2", 3),
    "rgba16": ("u2", 4),
    "bgra16": ("u2", 4),
    **{f"bayer_{p}8": ("u1", 1) for p in BAYER_PATTERNS},
    **{f"bayer_{p}16": ("u2", 1) for p in BAYER_PATTERNS},
    # 4:2:2 YUV, two bytes per pixel (read as (H, W, 2) uint8); "uyvy"/"yuyv" are the newer names
    "yuv422": ("u1", 2),
    "uyvy": ("u1", 2),
    "yuv422_yuy2": ("u1", 2),
    "yuyv": ("u1", 2),
}
_YUV422_ORDER = {"yuv422": "uyvy", "uyvy": "uyvy", "yuv422_yuy2": "yuyv", "yuyv": "yuyv"}
_GENERIC = re.compile(r"^(8|16|32|64)([USF])C([1-4])$")  # OpenCV-style "16UC1", "32FC3", ...
_GENERIC_KIND = {"U": "u", "S": "i", "F": "f"}
# three or four 8-bit channels with no colour order (image_encodings.hpp: isColor is false for them,
# and cv_bridge refuses to convert them to rgb8 or bgr8): what an OpenCV-based node publishes for its
# cv::Mat, which OpenCV orders BGR(A); RViz's image display and image_view show them so
_UNORDERED_COLOUR = ("8UC3", "8UC4")
log = logging.getLogger(__name__)

#: The encodings :func:`image_to_numpy` and :func:`numpy_to_image` understand.
SUPPORTED_ENCODINGS = tuple(_NAMED) + tuple(
    f"{bits}{k}C{c}"
    for bits in (8, 16, 32, 64)
    for k in "USF"
    for c in (1, 2, 3, 4)
    if not (k == "F" and bits < 32) and not (k == "U" and bits > 16) and not (k == "S" and bits > 32)
)


def encoding_layout(encoding: str) -> tuple[np.dtype, int]:
    """An image encoding → (element dtype, native-endian; number of channels)."""
    if encoding in _NAMED:
        code, channels = _NAMED[encoding]
        return np.dtype(code), channels
    m = _GENERIC.match(encoding)
    if m and encoding in SUPPORTED_ENCODINGS:
        bits, kind, n = m.groups()
        return np.dtype(f"{_GENERIC_KIND[kind]}{int(bits) // 8}"), int(n)
    raise MessageError(
        f"{IMAGE}.encoding: unknown or unsupported encoding {encoding!r} "
        f"(supported: rgb8, bgr8, rgba8, bgra8, mono8, mono16, rgb16, bgr16, rgba16, "
        f"bgra16, bayer_*8/16, yuv422, yuv422_yuy2 and <8|16|32|64><U|S|F>C<1-4> "
        f"like 16UC1, 32FC1)"
    )


@reads(IMAGE)
def image_to_numpy(msg: Any) -> np.ndarray:
    """An Image message (rclpy or rosbags) → a native-endian array (H, W) or (H, W, C)."""
    encoding = str(msg.encoding)
    dtype, channels = encoding_layout(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise MessageError(
            f"{IMAGE}.step: {step} is smaller than width*bytes_per_pixel = "
            f"{width}*{channels * dtype.itemsize} = {row_bytes} ({encoding})"
        )
    data = as_uint8_array(msg.data, f"{IMAGE}.data")
    if len(data) != height * step:
        raise MessageError(
            f"{IMAGE}.data: length {len(data)} != height*step = {height}*{step} = "
            f"{height * step} ({width}x{height} {encoding})"
        )
    stored = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    rows = data.reshape(height, step)[:, :row_bytes]
    arr = np.ascontiguousarray(rows).view(stored).astype(dtype.newbyteorder("="), copy=True)
    return arr.reshape((height, width) if channels == 1 else (height, width, channels))


def numpy_to_image(
    arr: np.ndarray,
    encoding: str,
    stamp_ns: int = 0,
    frame_id: str = "",
    factory: MessageFactory | None = None,
    step: int | None = None,
    is_bigendian: bool = False,
) -> Any:
    """A (H, W) or (H, W, C) array → an Image message of ``encoding``.

    The array's dtype must match the encoding's (floats of another width are cast; other mismatches
    are an error rather than a silent wrap-around). ``step`` > the packed row size pads each row with
    zeros; ``is_bigendian`` stores multi-byte elements big-endian.
    """
    dtype, channels = encoding_layout(encoding)
    a = np.asarray(arr)
    if a.ndim == 3 and channels == 1 and a.shape[2] == 1:
        a = a[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    if a.ndim != expected_ndim or (channels > 1 and a.shape[2] != channels):
        want = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise MessageError(
            f"{IMAGE}: array of shape {a.shape} does not fit encoding {encoding!r}, which needs {want}"
        )
    if a.dtype.newbyteorder("=") != dtype:
        if a.dtype.kind == "f" and dtype.kind == "f":
            a = a.astype(dtype)
        else:
            raise MessageError(
                f"{IMAGE}: array dtype {a.dtype} does not match encoding {encoding!r} "
                f"({dtype}); convert it explicitly"
            )
    height, width = a.shape[:2]
    row_bytes = width * channels * dtype.itemsize
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise MessageError(f"{IMAGE}.step: {step} is smaller than width*bytes_per_pixel = {row_bytes}")
    stored = np.ascontiguousarray(a, dtype=dtype.newbyteorder(">" if is_bigendian else "<"))
    raw = stored.view(np.uint8).reshape(height, row_bytes)
    if step == row_bytes:
        data = raw.reshape(-1).copy()
    else:
        data = np.zeros((height, step), np.uint8)
        data[:, :row_bytes] = raw
        data = data.reshape(-1)
    factory = _factory(factory)
    return factory.make(
        IMAGE,
        header=make_header(stamp_ns, frame_id, factory),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(bool(is_bigendian)),
        step=step,
        data=data,
    )


@reads(IMAGE)
def image_to_rgb(msg: Any) -> np.ndarray:
    """An Image → uint8 RGB (H, W, 3) for display or colour supervision.

    bgr/rgba/bgra are reordered or lose alpha, mono is repeated to 3 channels, 16-bit images keep
    their high byte (16UC1, REP-118's depth, is refused); 8UC3 / 8UC4, which carry no colour order,
    are taken as BGR / BGRA, the order of the OpenCV images they are published from, as RViz shows
    them (said once a process).
    YUV 4:2:2 is converted with BT.601 (video range, as OpenCV does); Bayer mosaics by 2x2 cells
    (each cell's colour on its 4 pixels: half resolution in colour, no interpolation artefacts).
    Float images have no colour meaning here.
    """
    encoding = str(msg.encoding)
    if encoding == "16UC1":  # REP-118's depth (mono16 is a grey camera's): its high byte is near black
        raise MessageError(f"{IMAGE}.encoding: '16UC1' is a depth image (millimetres), not colour")
    a = image_to_numpy(msg)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise MessageError(f"{IMAGE}.encoding: cannot convert {encoding!r} ({a.dtype}) to RGB")
    if encoding in _YUV422_ORDER:
        return _yuv422_to_rgb(a, _YUV422_ORDER[encoding], encoding)
    if encoding.startswith("bayer_"):
        return bayer_to_rgb(a, encoding[6:10])
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 2:
        raise MessageError(f"{IMAGE}.encoding: cannot convert two-channel {encoding!r} to RGB")
    if encoding in _UNORDERED_COLOUR:
        say_once(
            log,
            f"{IMAGE}.encoding {encoding!r} carries no colour order: taken as "
            f"{'bgr8' if encoding == '8UC3' else 'bgra8'}, as OpenCV orders it and RViz shows it "
            "(publish rgb8 or bgr8 to say which)",
        )
    if encoding.startswith("bgr") or encoding in _UNORDERED_COLOUR:
        a = a[:, :, 2::-1]
    return np.ascontiguousarray(a[:, :, :3])


def _yuv422_to_rgb(a: np.ndarray, order: str, encoding: str) -> np.ndarray:
    height, width = a.shape[:2]
    if width % 2:
        raise MessageError(f"{IMAGE}.width: {encoding!r} needs an even width, got {width}")
    q = a.reshape(height, width // 2, 4).astype(np.float32)
    if order == "uyvy":
        u, y0, v, y1 = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    else:
        y0, u, y1, v = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    y = 1.164 * (np.stack([y0, y1], axis=-1).reshape(height, width) - 16.0)
    d = np.repeat(u, 2, axis=1) - 128.0
    e = np.repeat(v, 2, axis=1) - 128.0
    rgb = np.stack([y + 1.596 * e, y - 0.392 * d - 0.813 * e, y + 2.017 * d], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def bayer_to_rgb(a: np.ndarray, pattern: str) -> np.ndarray:
    """A uint8 (H, W) mosaic of ``pattern`` (rggb, bggr, gbrg, grbg: the 2x2 cell's sites in row
    order) → uint8 RGB, each cell's colour on its 4 pixels."""
    height, width = a.shape
    if height == 0 or width == 0:
        return np.zeros((height, width, 3), np.uint8)
    # odd sizes: mirror (not repeat) the last row/column so the padded one has the right CFA parity
    even = a
    if height % 2:
        even = np.concatenate([even, even[-2:-1] if height > 1 else even[-1:]], axis=0)
    if width % 2:
        even = np.concatenate([even, even[:, -2:-1] if width > 1 else even[:, -1:]], axis=1)
    even = even.astype(np.float32)
    cells = {0: even[0::2, 0::2], 1: even[0::2, 1::2], 2: even[1::2, 0::2], 3: even[1::2, 1::2]}
    red = cells[pattern.index("r")]
    blue = cells[pattern.index("b")]
    g1, g2 = (cells[i] for i, c in enumerate(pattern) if c == "g")
    rgb = np.stack([red, (g1 + g2) * 0.5, blue], axis=-1)
    rgb = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)[:height, :width]
    return np.rint(rgb).astype(np.uint8)


@reads(IMAGE)
def depth_image_to_metres(msg: Any) -> np.ndarray:
    """A depth Image → float32 (H, W) metres, NaN where invalid.

    ``16UC1``/``mono16`` are millimetres (0 and 65535 invalid); ``32FC1``/``64FC1`` are metres
    (0, NaN, ±inf invalid). Negative depths are invalid too: no sensor measures behind itself.
    """
    encoding = str(msg.encoding)
    a = image_to_numpy(msg)
    if encoding in ("16UC1", "mono16"):
        out = a.astype(np.float32) * np.float32(0.001)
        out[(a == 0) | (a == 65535)] = np.nan
        return out
    if encoding in ("32FC1", "64FC1"):
        out = a.astype(np.float32)
        out[~np.isfinite(out) | (out <= 0)] = np.nan
        return out
    raise MessageError(f"{IMAGE}.encoding: {encoding!r} is not a depth encoding (16UC1 mm or 32FC1 m)")


def metres_to_depth_image(
    depth_m: np.ndarray,
    encoding: str = "16UC1",
    stamp_ns: int = 0,
    frame_id: str = "",
    factory: MessageFactory | None = None,
) -> Any:
    """float (H, W) metres (NaN/inf/≤0 invalid) → a 16UC1 (mm, 0 invalid) or 32FC1 (NaN invalid) Image."""
    d = np.asarray(depth_m, dtype=np.float64)
    if d.ndim != 2:
        raise MessageError(f"{IMAGE}: depth array must be (H, W), got shape {d.shape}")
    invalid = ~np.isfinite(d) | (d <= 0)
    if encoding == "16UC1":
        mm = np.rint(np.where(invalid, 0.0, d) * 1000.0)
        mm[(mm >= 65535) & ~invalid] = 0  # beyond the 16-bit range: cannot be represented, mark invalid
        return numpy_to_image(mm.astype(np.uint16), "16UC1", stamp_ns, frame_id, factory)
    if encoding == "32FC1":
        return numpy_to_image(
            np.where(invalid, np.nan, d).astype(np.float32), "32FC1", stamp_ns, frame_id, factory
        )
    raise MessageError(f"{IMAGE}.encoding: cannot write depth as {encoding!r} (use 16UC1 or 32FC1)")
