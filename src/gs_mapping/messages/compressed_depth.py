"""image_transport's ``compressedDepth`` (sensor_msgs/CompressedImage) ⇄ numpy depth.

Layout, as compressed_depth_image_transport (ROS 2) writes it:

- ``format`` is ``"<encoding>; compressedDepth <png|rvl>"`` (older drivers: ``"<encoding>; compressedDepth"``,
  which is PNG);
- ``data`` starts with a 12-byte ``ConfigHeader``: int32 ``format`` (0 = inverse depth) and float32
  ``depthParam[2]`` (little-endian on every platform ROS runs on), then the payload;
- ``16UC1`` (millimetres): the payload is the uint16 image itself (values above ``depth_max`` zeroed);
- ``32FC1`` (metres): the payload is quantised inverse depth ``q = uint16(A / d + B)`` with
  ``A = z0 (z0 + 1)``, ``B = 1 - A / depth_max`` (z0 = ``depth_quantization``, default 100;
  ``depth_max`` default 10 m); ``q = 0`` is invalid, and the reader restores ``d = A / (q - B)``;
- payload ``png``: a 16-bit grey PNG; payload ``rvl``: uint32 cols, uint32 rows, then RVL
  (A. D. Wilson, "Fast Lossless Depth Image Compression", ISS 2017): runs of zeros and non-zeros
  and zig-zag deltas between successive non-zero pixels, each as a variable-length code of 3-bit
  nibbles (high bit = more follows), eight nibbles per little-endian 32-bit word, first nibble in
  the word's top bits.

PNG goes through Pillow; RVL is decoded with numpy (one Python step per run of pixels, not per pixel).
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import MessageError
from .factory import MessageFactory, _factory, as_uint8_array, make_header

COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
HEADER_BYTES = 12
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEFAULT_DEPTH_MAX_M = 10.0
DEFAULT_DEPTH_QUANTIZATION = 100.0
_MAX_SIDE = 16384  # an RVL size beyond this is corrupt (and would allocate gigabytes)
# and so is one of more pixels than this (8192 x 4096; depth cameras stop near 4K): a zero run of
# 268M pixels costs a few bytes to claim, and seconds and gigabytes to expand and convert
_MAX_PIXELS = 1 << 25


def is_compressed_depth(fmt: str) -> bool:
    """Whether a CompressedImage ``format`` names image_transport's compressedDepth."""
    return "compresseddepth" in str(fmt).lower().replace(" ", "")


def parse_format(fmt: str) -> tuple[str, str]:
    """``"16UC1; compressedDepth rvl"`` → (``"16UC1"``, ``"rvl"``); no codec named → png (older drivers)."""
    text = str(fmt)
    encoding, _, rest = text.partition(";")
    encoding = encoding.strip()
    codec = "png"
    tail = rest.lower().split("compresseddepth", 1)[-1].strip()
    if tail:
        codec = tail.split()[0]
    if codec not in ("png", "rvl"):
        raise MessageError(f"{COMPRESSED_IMAGE}.format: unknown compressedDepth codec {codec!r} in {text!r}")
    if encoding not in ("16UC1", "32FC1", "mono16"):
        raise MessageError(
            f"{COMPRESSED_IMAGE}.format: compressedDepth of {encoding or '(no encoding)'!r} in {text!r} "
            "(drivers write 16UC1 millimetres or 32FC1 metres)"
        )
    return encoding, codec


def compressed_depth_to_numpy(msg: Any) -> np.ndarray:
    """A compressedDepth message → uint16 (H, W) millimetres (16UC1) or float32 (H, W) metres (32FC1,
    NaN invalid)."""
    fmt = str(msg.format)
    encoding, codec = parse_format(fmt)
    data = as_uint8_array(msg.data, f"{COMPRESSED_IMAGE}.data").tobytes()
    if data.startswith(_PNG_MAGIC) and encoding != "32FC1":  # a header-less PNG (some converters)
        return decode_png16(data, fmt)
    if len(data) <= HEADER_BYTES:
        raise MessageError(
            f"{COMPRESSED_IMAGE}.data: {len(data)} bytes is no compressedDepth image (format {fmt!r}; "
            f"a {HEADER_BYTES}-byte header and a payload expected)"
        )
    _kind, quant_a, quant_b = struct.unpack("<iff", data[:HEADER_BYTES])
    payload = data[HEADER_BYTES:]
    q = decode_png16(payload, fmt) if codec == "png" else decode_rvl(payload, fmt)
    if encoding != "32FC1":
        return q
    if not (np.isfinite(quant_a) and np.isfinite(quant_b)) or quant_a == 0:
        raise MessageError(
            f"{COMPRESSED_IMAGE}.data: 32FC1 compressedDepth header has unusable quantisation "
            f"parameters A={quant_a}, B={quant_b}"
        )
    qf = q.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.float32(quant_a) / (qf - np.float32(quant_b))
    depth[q == 0] = np.nan
    return depth.astype(np.float32)


def compressed_depth_to_metres(msg: Any) -> np.ndarray:
    """A compressedDepth message → float32 (H, W) metres, NaN where invalid."""
    d = compressed_depth_to_numpy(msg)
    if d.dtype == np.uint16:
        out = d.astype(np.float32) * np.float32(0.001)
        out[(d == 0) | (d == 65535)] = np.nan
        return out
    d = d.copy()
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return d


def decode_png16(payload: bytes, fmt: str = "") -> np.ndarray:
    """A 16-bit (or 8-bit) grey PNG → uint16 (H, W), with Pillow."""
    if not payload.startswith(_PNG_MAGIC):
        raise MessageError(
            f"{COMPRESSED_IMAGE}.data: compressedDepth payload is not a PNG (format {fmt!r}, "
            f"starts {payload[:8]!r})"
        )
    from PIL import Image  # pinned runtime dependency

    with pillow_decoding("compressedDepth PNG", fmt), Image.open(io.BytesIO(payload)) as im:
        im.load()
        if im.mode not in ("I;16", "I;16B", "I;16L", "I", "L"):
            raise MessageError(
                f"{COMPRESSED_IMAGE}.data: compressedDepth PNG is {im.mode}, not single-channel (format {fmt!r})"
            )
        return np.asarray(im).astype(np.uint16)


@contextlib.contextmanager
def pillow_decoding(kind: str, fmt: str) -> Iterator[None]:
    """Pillow's errors on a corrupt stream (OSError, SyntaxError, ValueError, ...) as one
    :class:`MessageError` naming ``kind`` and the message's ``fmt``; our own MessageErrors pass."""
    try:
        yield
    except MessageError:
        raise
    except Exception as e:
        raise MessageError(
            f"{COMPRESSED_IMAGE}.data: cannot decode {kind} (format {fmt!r}): {type(e).__name__}: {e}"
        ) from None


def _vle_values(words: np.ndarray) -> np.ndarray:
    """Every variable-length value in a stream of RVL words (padding nibbles decode as trailing 0s)."""
    shifts = np.arange(28, -1, -4, dtype=np.uint32)  # first nibble in the top bits
    nibbles = ((words[:, None] >> shifts[None, :]) & 0xF).reshape(-1).astype(np.int64)
    ends = np.flatnonzero((nibbles & 0x8) == 0)  # a value ends at the first nibble without the high bit
    starts = np.concatenate([[0], ends[:-1] + 1])
    # position of each nibble within its value: 3 bits more significant per nibble
    value_of = np.repeat(np.arange(len(ends)), ends - starts + 1)
    nib = nibbles[: ends[-1] + 1] if len(ends) else nibbles[:0]
    pos = np.arange(len(nib)) - starts[value_of]
    if len(pos) and pos.max() > 10:
        raise MessageError(f"{COMPRESSED_IMAGE}.data: RVL code longer than 32 bits (corrupt stream)")
    parts = (nib & 0x7) << (3 * pos)
    return np.bincount(value_of, weights=parts, minlength=len(ends)).astype(np.int64)


def decode_rvl(payload: bytes, fmt: str = "") -> np.ndarray:
    """``uint32 cols, uint32 rows`` + an RVL stream → uint16 (rows, cols)."""
    if len(payload) < 8:
        raise MessageError(f"{COMPRESSED_IMAGE}.data: RVL payload of {len(payload)} bytes has no size")
    cols, rows = struct.unpack("<II", payload[:8])
    n = rows * cols
    body = payload[8:]
    # (no bound by compression ratio: long zero runs cost a few nibbles; corrupt runs are caught below)
    if n == 0 or cols > _MAX_SIDE or rows > _MAX_SIDE or n > _MAX_PIXELS:
        raise MessageError(
            f"{COMPRESSED_IMAGE}.data: RVL image claims {cols}x{rows} pixels (format {fmt!r}; "
            f"sides 1..{_MAX_SIDE}, at most {_MAX_PIXELS} pixels)"
        )
    body = body[: len(body) // 4 * 4]
    values = _vle_values(np.frombuffer(body, "<u4").astype(np.uint32))
    # walk the runs: zeros, nonzeros, then that many deltas (one Python step per run)
    zero_runs, nz_runs, delta_at = [], [], []
    i, left, nv = 0, n, len(values)
    vals = values.tolist()  # Python ints: list indexing is several times faster than numpy scalars
    while left > 0:
        if i + 1 >= nv:
            raise MessageError(
                f"{COMPRESSED_IMAGE}.data: RVL stream ends {left} pixels early (format {fmt!r})"
            )
        zeros, nonzeros = vals[i], vals[i + 1]
        if zeros + nonzeros > left or i + 2 + nonzeros > nv:
            raise MessageError(f"{COMPRESSED_IMAGE}.data: RVL runs overrun the {cols}x{rows} image (corrupt)")
        zero_runs.append(zeros)
        nz_runs.append(nonzeros)
        delta_at.append(i + 2)
        i += 2 + nonzeros
        left -= zeros + nonzeros
    nz_runs_a = np.asarray(nz_runs, np.int64)
    idx = np.repeat(np.asarray(delta_at, np.int64), nz_runs_a) + (
        np.arange(int(nz_runs_a.sum())) - np.repeat(np.cumsum(nz_runs_a) - nz_runs_a, nz_runs_a)
    )
    positive = values[idx]
    deltas = (positive >> 1) ^ -(positive & 1)  # zig-zag back to signed
    pixels = (np.cumsum(deltas) & 0xFFFF).astype(np.uint16)  # the C decoder wraps in unsigned short
    out = np.zeros(n, np.uint16)
    mask = np.repeat(
        np.tile([False, True], len(zero_runs)), np.column_stack([zero_runs, nz_runs]).reshape(-1)
    )
    out[mask] = pixels
    return out.reshape(rows, cols)


def inverse_depth_params(
    depth_max: float = DEFAULT_DEPTH_MAX_M, depth_quantization: float = DEFAULT_DEPTH_QUANTIZATION
) -> tuple[float, float]:
    """(A, B) of the 32FC1 inverse-depth quantisation, in float32 as the publisher computes them."""
    a = np.float32(depth_quantization) * (np.float32(depth_quantization) + np.float32(1.0))
    b = np.float32(1.0) - a / np.float32(depth_max)
    return float(a), float(b)


def numpy_to_compressed_depth(
    depth: np.ndarray,
    stamp_ns: int = 0,
    frame_id: str = "",
    factory: MessageFactory | None = None,
    depth_max: float = DEFAULT_DEPTH_MAX_M,
    depth_quantization: float = DEFAULT_DEPTH_QUANTIZATION,
) -> Any:
    """uint16 (H, W) millimetres → ``16UC1; compressedDepth png``; float (H, W) metres →
    ``32FC1; compressedDepth png`` with the inverse-depth quantisation. PNG via Pillow."""
    from PIL import Image

    d = np.asarray(depth)
    if d.ndim != 2 or min(d.shape) == 0:
        raise MessageError(f"{COMPRESSED_IMAGE}: depth must be a non-empty (H, W) array, got shape {d.shape}")
    if d.dtype == np.uint16:
        encoding = "16UC1"
        q = d.copy()
        q[q > np.uint16(min(65535, int(depth_max * 1000)))] = 0
        a = b = 0.0
    elif d.dtype.kind == "f":
        encoding = "32FC1"
        a, b = inverse_depth_params(depth_max, depth_quantization)
        f = d.astype(np.float32)
        ok = np.isfinite(f) & (f > 0) & (f < np.float32(depth_max))
        q = np.zeros(f.shape, np.uint16)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            v = np.float32(a) / f + np.float32(b)
        # nearer than A / (65535 - B) (0.152 m by default) no code holds it: invalid, where the C++
        # publisher's cast would wrap it to a far depth
        ok &= v < np.float32(65536)
        q[ok] = v[ok].astype(np.uint16)  # C cast: truncation
    else:
        raise MessageError(f"{COMPRESSED_IMAGE}: depth dtype {d.dtype} (uint16 mm or float metres)")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(q)).save(buf, format="PNG", compress_level=1)
    data = struct.pack("<iff", 0, a, b) + buf.getvalue()
    factory = _factory(factory)
    return factory.make(
        COMPRESSED_IMAGE,
        header=make_header(stamp_ns, frame_id, factory),
        format=f"{encoding}; compressedDepth png",
        data=np.frombuffer(data, np.uint8).copy(),
    )
