"""sensor_msgs/CompressedImage (jpeg, png, tiff; zstd_image_transport's zstd) ⇄ numpy with Pillow.

The ``format`` field follows image_transport's convention, ``"<encoding>; <jpeg|png> compressed <enc>"``
(e.g. ``"rgb8; jpeg compressed bgr8"``), so ROS decoders restore the channel order; plain ``"jpeg"`` /
``"png"`` are read as well. The image bytes themselves are standard JPEG/PNG whatever the format string
says, so we decode by their magic number. ``compressedDepth`` messages are handed to
:mod:`.compressed_depth` (16UC1 → uint16 millimetres, 32FC1 → float32 metres, NaN invalid).

Two transports carry the driver's ``sensor_msgs/Image`` itself, which :func:`carried_image` gives back
as their subscribers do (then :mod:`.image` reads it as any Image):

- compressed_image_transport's ``tiff`` (``"<encoding>; tiff compressed "``, compressed_publisher.cpp):
  ``cv::imencode(".tiff")`` of the image in its own encoding (8/16/32-bit: 16UC1 and 32FC1 depth too).
  OpenCV takes a 3/4-channel image for BGR(A) and stores it as the TIFF's RGB(A), so the file's first
  three channels are the message's in reverse order (an rgb8 image's TIFF holds B, G, R). Pillow reads
  16-bit colour as its high bytes: the 8 bits :func:`.image.image_to_rgb` keeps of a raw rgb16 Image,
  all the mapper uses. It is read with libtiff, whatever its layout (:func:`_libtiff_reading`).
- zstd_image_transport's ``zstd`` (topic ``…/zstd``, ``format`` ``"zstd"``, zstd_publisher.cpp): a
  17-byte little-endian header (uint32 height, uint32 width, uint8 is_bigendian, uint32 step, uint32
  length of the encoding), the encoding, then the image's ``data`` compressed. Despite its name the
  released plugin (Jazzy's 4.x, Kilted's and Rolling's 5.x) compresses with zlib in a gzip wrapper
  (``deflateInit2(level, 15 + 16)``; its subscriber inflates zlib or gzip); a zstd frame is read too.
  Inflating stops past ``height * step`` bytes: a header that lies costs no memory.
"""

from __future__ import annotations

import contextlib
import io
import struct
import sys
import threading
import zlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import MessageError
from .compressed_depth import compressed_depth_to_numpy, is_compressed_depth, pillow_decoding
from .factory import MessageFactory, _factory, as_uint8_array, make_header, reads
from .image import encoding_layout, image_to_numpy, image_to_rgb

COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # little/big-endian, classic/BigTIFF
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_HEADER = struct.Struct("<IIBII")  # zstd_image_transport: height, width, is_bigendian, step, len
_MAX_ENCODING = 64  # the longest encoding name is "bayer_rggb16": a longer one is a corrupt header
_MAX_IMAGE_BYTES = 1 << 30  # a larger image is a corrupt header (an 8K RGBA float image is 0.5 GiB)


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pillow is a pinned runtime dependency; say so if it is missing
        raise MessageError(f"{COMPRESSED_IMAGE}: Pillow is needed to decode images ({e})") from None
    return Image


@reads(COMPRESSED_IMAGE)
def compressed_image_to_numpy(msg: Any) -> np.ndarray:
    """A CompressedImage → uint8 (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; uint16 (H, W) for a
    16-bit PNG; float32 (H, W) metres for a 32FC1 compressedDepth. A ``tiff`` or ``zstd`` one
    (:func:`carried_image`): one channel as its encoding's dtype (16UC1 uint16, 32FC1 float32),
    colour as uint8 RGB (:func:`.image.image_to_rgb`).

    Colour comes out in RGB order (JPEG/PNG store colour independent of OpenCV's BGR memory order).
    """
    fmt = str(msg.format)
    if is_compressed_depth(fmt):
        return compressed_depth_to_numpy(msg)
    raw = carried_image(msg)
    if raw is not None:  # tiff / zstd: the Image itself; colour as RGB, as jpeg and png give it
        return image_to_numpy(raw) if encoding_layout(raw.encoding)[1] == 1 else image_to_rgb(raw)
    data = as_uint8_array(msg.data, f"{COMPRESSED_IMAGE}.data").tobytes()
    if data.startswith(_PNG_MAGIC):
        kind = "png"
    elif data.startswith(_JPEG_MAGIC):
        kind = "jpeg"
    else:
        raise MessageError(
            f"{COMPRESSED_IMAGE}.data: not a JPEG, PNG or TIFF stream (format {fmt!r}, "
            f"{len(data)} bytes, starts {data[:8]!r})"
        )
    Image = _pil()
    with pillow_decoding(kind, fmt), Image.open(io.BytesIO(data)) as im:
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
    return np.array(arr)  # writable, owning its memory


def carried_image(msg: Any) -> Any | None:
    """The ``sensor_msgs/Image`` a ``tiff`` or ``zstd`` CompressedImage carries (duck-typed, as its
    image_transport subscriber gives it back); None for the other formats (jpeg, png,
    compressedDepth). :class:`MessageError` in one line for a corrupt or lying payload."""
    fmt = str(msg.format)
    if fmt.strip().lower() == "zstd":
        return _zstd_transport_image(as_uint8_array(msg.data, f"{COMPRESSED_IMAGE}.data").tobytes(), fmt)
    if is_compressed_depth(fmt):
        return None
    data = as_uint8_array(msg.data, f"{COMPRESSED_IMAGE}.data")
    if bytes(data[:4]) in _TIFF_MAGICS:
        return _tiff_image(data.tobytes(), fmt)
    return None


def _image(height: int, width: int, encoding: str, bigendian: int, step: int, data: bytes) -> SimpleNamespace:
    return SimpleNamespace(
        height=height, width=width, encoding=encoding, is_bigendian=bigendian, step=step, data=data
    )


def _zstd_transport_image(data: bytes, fmt: str) -> SimpleNamespace:
    """zstd_image_transport's payload (the module's docstring) → an Image."""
    what = f"{COMPRESSED_IMAGE}.data ({fmt!r})"
    if len(data) < _ZSTD_HEADER.size:
        raise MessageError(f"{what}: {len(data)} bytes, shorter than the transport's 17-byte header")
    height, width, bigendian, step, n = _ZSTD_HEADER.unpack_from(data)
    if n > _MAX_ENCODING or _ZSTD_HEADER.size + n > len(data):
        raise MessageError(f"{what}: the header claims a {n}-byte encoding in a {len(data)}-byte message")
    encoding = data[_ZSTD_HEADER.size : _ZSTD_HEADER.size + n].decode("ascii", "replace")
    size = height * step
    if not 0 < size <= _MAX_IMAGE_BYTES:
        raise MessageError(
            f"{what}: the header claims {height} rows of {step} bytes ({width}x{height} {encoding})"
        )
    packed = data[_ZSTD_HEADER.size + n :]
    try:
        if packed.startswith(_ZSTD_MAGIC):
            from ..zstd_frames import inflate

            pixels = inflate(packed, size)
        else:  # zlib or gzip, told by its header as the plugin's subscriber does (windowBits 15 + 32)
            inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)
            pixels = inflater.decompress(packed, size + 1)
            if len(pixels) <= size and not inflater.eof:
                raise MessageError(
                    f"{what}: the compressed image is cut short ({len(pixels)} bytes of {size})"
                )
    except MessageError:
        raise
    except Exception as exc:  # zlib.error, ZstdError: not a zlib/gzip/zstd stream, or a corrupt one
        raise MessageError(f"{what}: cannot inflate the image (zlib, gzip or zstd): {exc}") from None
    if pixels is None or len(pixels) != size:
        got = f"more than {size}" if pixels is None or len(pixels) > size else str(len(pixels))
        raise MessageError(
            f"{what}: the image inflates to {got} bytes, its header says {height} rows of {step} ({encoding})"
        )
    return _image(height, width, encoding, bigendian, step, pixels)


# a 16-bit colour TIFF comes back from Pillow in 8 bits: the 8-bit encoding of the same layout
_EIGHT_BIT = {
    "rgb16": "rgb8",
    "bgr16": "bgr8",
    "rgba16": "rgba8",
    "bgra16": "bgra8",
    "16UC3": "8UC3",
    "16UC4": "8UC4",
}
# the encoding of a TIFF whose format names none, by what Pillow reads (colour in OpenCV's BGR order)
_BY_LAYOUT = {
    ("u1", 1): "mono8",
    ("u1", 3): "bgr8",
    ("u1", 4): "bgra8",
    ("u2", 1): "16UC1",
    ("f4", 1): "32FC1",
}


_LIBTIFF_LOCK = threading.Lock()


@contextlib.contextmanager
def _libtiff_reading() -> Iterator[None]:
    """TIFFs opened meanwhile are read by libtiff, as Pillow reads every compressed one: Pillow's own
    reader of uncompressed strips unpacks a 16-bit sample of a planar TIFF (PlanarConfiguration 2,
    one plane a channel, as tifffile's ``planarconfig='separate'`` writes) as one byte, which is noise.
    (Pillow's switch is its module's; the lock keeps two decoders from restoring it out of turn.)"""
    from PIL import TiffImagePlugin, features

    with _LIBTIFF_LOCK:
        was = TiffImagePlugin.READ_LIBTIFF
        TiffImagePlugin.READ_LIBTIFF = was or bool(features.check_codec("libtiff"))
        try:
            yield
        finally:
            TiffImagePlugin.READ_LIBTIFF = was


# (offsets tag, byte counts tag, what each is): where a TIFF's pieces lie (TIFF 6.0 sections 3, 15)
_TIFF_PIECES = ((273, 279, "strip"), (324, 325, "tile"))


def _refuse_cut_short(im: Any, size: int, fmt: str) -> None:
    """:class:`MessageError` for a TIFF of ``size`` bytes whose strips or tiles, as its directory
    places them (read without decoding), run past its end: libtiff would also print its own line
    (``TIFFFillStrip: Read error ...``) on the process's stderr, beside ours and past any logger."""
    for offsets_tag, counts_tag, what in _TIFF_PIECES:
        offsets, counts = im.tag_v2.get(offsets_tag), im.tag_v2.get(counts_tag)
        if offsets is None or counts is None:  # (none of these, or libtiff estimates the counts)
            continue
        pairs = zip(np.atleast_1d(offsets), np.atleast_1d(counts), strict=False)  # (unequal: libtiff's)
        ends = [int(at) + int(n) for at, n in pairs]
        if ends and max(ends) > size:
            k = int(np.argmax(ends))
            raise MessageError(
                f"{COMPRESSED_IMAGE}.data: cannot decode tiff (format {fmt!r}): its {what} {k} runs to "
                f"byte {ends[k]} of a {size}-byte message (cut short)"
            )


def _native_floats(im: Any) -> None:
    """Read 32-bit float samples through libtiff as the native floats it gives: Pillow unpacks them
    in the file's byte order, so a big-endian (MM) file's come out byte-swapped, garbage (Pillow
    corrects only 16-bit samples so). Its tile's raw mode is set as Pillow sets a 16-bit one's."""
    tiles = []
    for tile in im.tile:
        name, extents, offset, args = tile
        if name == "libtiff" and args and args[0] in ("F;32F", "F;32BF"):
            args = ("F;32NF", *args[1:])
            # (a named tuple in newer Pillows, which read it by its fields; a plain tuple in older)
            tile = tile._replace(args=args) if hasattr(tile, "_replace") else (name, extents, offset, args)
        tiles.append(tile)
    im.tile = tiles


def _tiff_image(data: bytes, fmt: str) -> SimpleNamespace:
    """compressed_image_transport's ``tiff`` (the module's docstring) → an Image."""
    Image = _pil()
    with pillow_decoding("tiff", fmt):
        with _libtiff_reading():
            im = Image.open(io.BytesIO(data))
        with im:
            w, h = im.size
            if w * h * len(im.getbands()) * 4 > _MAX_IMAGE_BYTES:  # (before Pillow allocates it)
                raise MessageError(
                    f"{COMPRESSED_IMAGE}.data: the TIFF claims {w}x{h} pixels (format {fmt!r})"
                )
            _refuse_cut_short(im, len(data), fmt)
            _native_floats(im)
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    if mode not in ("L", "RGB", "RGBA", "F") and not mode.startswith("I;16"):
        raise MessageError(
            f"{COMPRESSED_IMAGE}.data: a TIFF of Pillow mode {mode!r} is no camera image (format {fmt!r})"
        )
    arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim == 3:  # OpenCV's BGR(A) stored as RGB(A): back to the message's channel order
        arr = np.concatenate([arr[:, :, 2::-1], arr[:, :, 3:]], axis=2)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    encoding = fmt.split(";", 1)[0].strip() if ";" in fmt else ""
    encoding = encoding or _BY_LAYOUT.get((arr.dtype.str[1:], channels), "")
    if arr.dtype == np.uint8:
        encoding = _EIGHT_BIT.get(encoding, encoding)
    try:
        dtype, want = encoding_layout(encoding)
    except MessageError:
        raise MessageError(
            f"{COMPRESSED_IMAGE}.format: {fmt!r} names no image encoding this TIFF holds"
        ) from None
    if (dtype, want) != (arr.dtype, channels):
        raise MessageError(
            f"{COMPRESSED_IMAGE}.data: the TIFF holds {channels}-channel {arr.dtype}, "
            f"its format says {encoding} (format {fmt!r})"
        )
    h, w = arr.shape[:2]
    step = w * channels * arr.dtype.itemsize
    return _image(h, w, encoding, int(sys.byteorder == "big"), step, np.ascontiguousarray(arr).tobytes())


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
