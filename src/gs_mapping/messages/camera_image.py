"""Any camera message a robot records → what the mapper needs: RGB colour or depth in metres.

Colour may be a ``sensor_msgs/Image`` of any driver encoding (:func:`.image.image_to_rgb`) or a
``CompressedImage`` (jpeg/png, :mod:`.compressed_image`); depth an ``Image`` (16UC1 mm, 32FC1 m) or a
``CompressedImage`` (``compressedDepth`` png/rvl, :mod:`.compressed_depth`; or a plain 16-bit PNG
of millimetres). A ``tiff`` or ``zstd`` CompressedImage carries the Image itself
(:func:`.compressed_image.carried_image`), read as that Image. The two types are told apart by their
fields (``format`` vs ``encoding``), so this works on rclpy and rosbags messages alike, whatever
topic they came from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MessageError
from .compressed_depth import compressed_depth_to_metres, is_compressed_depth
from .compressed_image import COMPRESSED_IMAGE, carried_image, compressed_image_to_numpy
from .image import BAYER_PATTERNS, IMAGE, bayer_to_rgb, depth_image_to_metres, image_to_rgb

CAMERA_IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)


def is_compressed(msg: Any) -> bool:
    """A CompressedImage (has ``format``, no ``encoding``)?"""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def _check_image(msg: Any, what: str) -> None:
    if not (hasattr(msg, "format") or hasattr(msg, "encoding")) or not hasattr(msg, "data"):
        kind = type(msg).__name__
        raise MessageError(
            f"{what}: a {kind} is not an image (sensor_msgs/msg/Image or CompressedImage expected)"
        )


def color_to_rgb(msg: Any) -> np.ndarray:
    """An Image or CompressedImage → uint8 RGB (H, W, 3)."""
    _check_image(msg, "colour")
    if not is_compressed(msg):
        return image_to_rgb(msg)
    if is_compressed_depth(str(msg.format)):
        raise MessageError(f"{COMPRESSED_IMAGE}.format: {msg.format!r} is a depth image, not colour")
    raw = carried_image(msg)
    if raw is not None:
        return image_to_rgb(raw)
    a = compressed_image_to_numpy(msg)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if a.ndim == 2:
        # image_transport compresses a Bayer mosaic as it is and names it before the ';'
        # ("bayer_rggb8; png compressed "): its subscriber gives back a bayer_rggb8 Image
        encoding = str(msg.format).split(";", 1)[0].strip().lower()
        if encoding.startswith("bayer_") and encoding[6:10] in BAYER_PATTERNS:
            return bayer_to_rgb(a, encoding[6:10])
        return np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def depth_to_metres(msg: Any) -> np.ndarray:
    """An Image or CompressedImage depth → float32 (H, W) metres, NaN where invalid."""
    _check_image(msg, "depth")
    if not is_compressed(msg):
        return depth_image_to_metres(msg)
    if is_compressed_depth(str(msg.format)):
        return compressed_depth_to_metres(msg)
    raw = carried_image(msg)
    if raw is not None:
        return depth_image_to_metres(raw)
    a = compressed_image_to_numpy(msg)  # a plain 16-bit PNG of millimetres (e.g. "16UC1; png")
    if a.dtype != np.uint16 or a.ndim != 2:
        raise MessageError(
            f"{COMPRESSED_IMAGE}.format: {msg.format!r} holds a {a.dtype} {a.shape} image, not depth "
            "(compressedDepth, or a 16-bit PNG of millimetres)"
        )
    out = a.astype(np.float32) * np.float32(0.001)
    out[(a == 0) | (a == 65535)] = np.nan
    return out
