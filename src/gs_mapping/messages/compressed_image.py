"""sensor_msgs/CompressedImage (jpeg, png) ⇄ numpy with Pillow.

The ``format`` field follows image_transport's convention, ``"<encoding>; <jpeg|png> compressed <enc>"``
(e.g. ``"rgb8; jpeg compressed bgr8"``), so ROS decoders restore the channel order; plain ``"jpeg"`` /
``"png"`` are read as well. The image bytes themselves are standard JPEG/PNG whatever the format string
says, so we decode by their magic number. ``compressedDepth`` messages are handed to
:mod:`.compressed_depth` (16UC1 → uint16 millimetres, 32FC1 → float32 metres, NaN invalid).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..errors import MessageError
from .compressed_depth import compressed_depth_to_numpy, is_compressed_depth
from .factory import MessageFactory, _factory, as_uint8_array, make_header, reads

COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pillow is a pinned runtime dependency; say so if it is missing
        raise MessageError(f"{COMPRESSED_IMAGE}: Pillow is needed to decode images ({e})") from None
    return Image


@reads(COMPRESSED_IMAGE)
def compressed_image_to_numpy(msg: Any) -> np.ndarray:
    """A CompressedImage → uint8 (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; uint16 (H, W) for a
    16-bit PNG; float32 (H, W) metres for a 32FC1 compressedDepth.

    Colour comes out in RGB order (JPEG/PNG store colour independent of OpenCV's BGR memory order).
    """
    fmt = str(msg.format)
    if is_compressed_depth(fmt):
        return compressed_depth_to_numpy(msg)
    data = as_uint8_array(msg.data, f"{COMPRESSED_IMAGE}.data").tobytes()
    if data.startswith(_PNG_MAGIC):
        kind = "png"
    elif data.startswith(_JPEG_MAGIC):
        kind = "jpeg"
    else:
        raise MessageError(
            f"{COMPRESSED_IMAGE}.data: not a JPEG or PNG stream (format {fmt!r}, "
            f"{len(data)} bytes, starts {data[:8]!r})"
        )
    Image = _pil()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L"):
                arr = np.asarray(im).astype(np.uint16)
            elif mode == "I":  # some Pillow versions open 16-bit grey PNGs as 32-bit ints
                arr = np.asarray(im).astype(np.uint16)
            elif mode in ("L", "RGB", "RGBA"):
                arr = np.asarray(im)
            elif mode == "LA":
                arr = np.asarray(im.convert("RGBA"))
            else:  # palette, CMYK, 1-bit, ...
                arr = np.asarray(im.convert("RGB"))
    except MessageError:
        raise
    except Exception as e:  # Pillow raises OSError / SyntaxError / ValueError on corrupt streams
        raise MessageError(
            f"{COMPRESSED_IMAGE}.data: cannot decode {kind} (format {fmt!r}): {type(e).__name__}: {e}"
        ) from None
    return np.array(arr)  # writable, owning its memory


def numpy_to_compressed_image(
    arr: np.ndarray,
    format: str = "jpeg",
    stamp_ns: int = 0,
    frame_id: str = "",
    factory: MessageFactory | None = None,
    quality: int = 90,
) -> Any:
    """An RGB (H, W, 3), RGBA (H, W, 4, png only), grey uint8 (H, W) or uint16 (H, W, png only) array
    → a CompressedImage. png is lossless; jpeg uses ``quality`` (1–95)."""
    fmt = str(format).lower()
    fmt = "jpeg" if fmt == "jpg" else fmt
    if fmt not in ("jpeg", "png"):
        raise MessageError(f"{COMPRESSED_IMAGE}.format: unsupported compression {format!r} (jpeg or png)")
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype == np.uint8 and a.ndim == 2:
        encoding, target = "mono8", "mono8"
    elif a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3:
        encoding, target = "rgb8", "bgr8"
    elif a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 4 and fmt == "png":
        encoding, target = "rgba8", "bgra8"
    elif a.dtype == np.uint16 and a.ndim == 2 and fmt == "png":
        encoding, target = "mono16", "mono16"
    else:
        raise MessageError(
            f"{COMPRESSED_IMAGE}: cannot compress an array of shape {a.shape} and dtype "
            f"{a.dtype} as {fmt} (uint8 grey/RGB, RGBA or uint16 grey for png)"
        )
    if min(a.shape[:2]) == 0:
        raise MessageError(f"{COMPRESSED_IMAGE}: cannot compress an empty {a.shape[1]}x{a.shape[0]} image")
    Image = _pil()
    a = np.ascontiguousarray(a)
    im = Image.fromarray(a)  # uint16 (H, W) becomes mode "I;16" and saves as a 16-bit grey PNG
    buf = io.BytesIO()
    if fmt == "jpeg":
        im.save(buf, format="JPEG", quality=int(quality))
    else:
        im.save(buf, format="PNG", compress_level=1)  # speed over a few percent of size
    factory = _factory(factory)
    return factory.make(
        COMPRESSED_IMAGE,
        header=make_header(stamp_ns, frame_id, factory),
        format=f"{encoding}; {fmt} compressed {target}",
        data=np.frombuffer(buf.getvalue(), np.uint8).copy(),
    )
