"""Niantic SPZ, versions 1–4 read, 2–4 written (the format of Niantic's reference library).

A point cloud of n Gaussians is six attribute arrays, all points of one attribute together:

- positions: 3 × 24-bit signed fixed point per point, little-endian, ``fractional_bits`` fraction
  bits (version 1: 3 × float16);
- alphas: u8 ``round(sigmoid(opacity_logit) · 255)``;
- colours: 3 × u8 ``round(dc · (0.15 · 255) + 127.5)`` (the DC SH coefficient, scaled by 0.15);
- scales: 3 × u8 ``round((log_scale + 10) · 16)``;
- rotations: version ≤ 2: 3 × u8 ``round(q · 127.5 + 127.5)`` of x, y, z of the unit quaternion
  with w ≥ 0; version ≥ 3: one u32 "smallest three": bits 30–31 the index of the largest |component|
  (made positive), then per other component in x, y, z, w order (high bits first) a sign bit and 9
  bits ``(u32)(511 · |q_i| / sqrt(1/2) + 0.5)``;
- SH (degree ≥ 1): per point, coefficient-major with the colour channel inner, u8
  ``round(c · 128) + 128`` rounded to the centre of a bucket of 8 (degree 1) or 16 (degrees 2–3).

Versions 1–3: gzip of a 16-byte header (u32 magic "NGSP", u32 version, u32 n, u8 SH degree, u8
fractional bits, u8 flags (1 = antialiased, 2 = extensions follow), u8 0) and the arrays in the
order positions, alphas, colours, scales, rotations, SH. Version 4: a 32-byte uncompressed header
(magic, version, n, degree, fractional bits, flags, u8 number of streams, u32 offset of the table of
contents, 12 reserved bytes), the table (per stream u64 compressed size, u64 raw size), then each
non-empty array as its own zstd frame (level 12), in the same order. With flag 2, the bytes
between the header and the table (version 4), or after the arrays to the end of the gzip stream
(versions 1-3), are extension records (u32 type, u32 byte length, the value); of them,
``SPZ_ADOBE_coordinate_system`` (type 0xADBE0003, a u32 of Niantic's ``CoordinateSystem``) names
the axes the data is stored in (RUB when absent); the others are skipped by their length, as
Niantic's reader does. Without flag 2, bytes after the gzip framing's arrays are ignored.

Arithmetic is float32 as in the reference library (``round`` = half away from zero), so the
attribute bytes we write equal Niantic's for the same input (checked against its output in
``../shared/data/splats/spz_reference``; the compressed streams are equal where the same zlib/zstd
version runs). Coordinates are written as they are (no axis change, the reference library's default
for an unspecified source). Ids and levels are not part of SPZ: a read map has implicit ids.

SH degree 4 (the reference library's maximum) is read with its fifth band dropped (a GaussianMap
holds degrees 0–3); that, and the antialiased flag (a mip-splatting scene: the values are kept, the
flag is not), are logged as warnings.

Reading never trusts the header: the point count is bounded by the file size (as in the reference
reader: at most 1024 × bytes / 9 points) and by ``MAX_POINTS``, every stream's size must match what
the header implies, and decompression stops at that size (the gzip framing then runs on to its CRC,
in bounded chunks that are discarded). An empty scene cannot be written: Niantic's reader refuses a
point count of 0, and so do we.
"""

from __future__ import annotations

import logging
import struct
import zlib
from typing import NamedTuple

import numpy as np

from ..errors import MapError
from ..gaussians import GaussianMap, clamp_nonfinite
from ..input_files import check_room
from ..ply import warn_antialiased
from ..zstd_frames import ZstdError, inflate, zstd

MAGIC = 0x5053474E  # "NGSP"
LATEST = 4
FLAG_ANTIALIASED = 1
FLAG_EXTENSIONS = 2
EXT_COORDINATE_SYSTEM = 0xADBE0003  # SPZ_ADOBE_coordinate_system: u32, the data's stored axes
# Niantic's CoordinateSystem codes (spz::CoordinateSystem in splat-types.h), by value
COORDINATE_SYSTEMS = (
    "UNSPECIFIED", "LDB", "RDB", "LUB", "RUB", "LDF", "RDF", "LUF", "RUF",
    "LFD", "RFD", "LFU", "RFU", "LBD", "RBD", "LBU", "RBU",
)  # fmt: skip
RUB, RDF = 4, 6
MAX_EXTENSIONS = 1 << 16  # records read before a file is refused (each is a step of Python)
log = logging.getLogger(__name__)
MAX_POINTS = 1 << 26
MAX_TRAILER = 1 << 26  # bytes we inflate (and discard) after the arrays of a gzip SPZ: extensions
COLOR_SCALE = np.float32(0.15)
SQRT1_2 = np.float32(0.70710678118654752)
ZSTD_LEVEL = 12
DEFAULT_FRACTIONAL_BITS = 12  # the reference writer's
# zstd's most compressed block: an RLE block, 4 bytes for up to 128 KiB (the bound on points of a
# version 4 file, as gzip's 1024:1 bounds those of versions 1-3)
ZSTD_MAX_RATIO = 1 << 15
_LEGACY = struct.Struct("<IIIBBBB")
_NGSP = struct.Struct("<IIIBBBBI12x")
_F = np.float32


def _round_away(x: np.ndarray) -> np.ndarray:
    """C's ``std::round`` (half away from zero) of float32 values, exactly (in float64)."""
    x = np.asarray(x, np.float64)
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(_round_away(x), 0, 255).astype(np.uint8)


def _normalized(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, _F)
    norm = np.sqrt((q * q).sum(axis=1, dtype=_F), dtype=_F)
    return (q / np.maximum(norm, _F(1e-30))[:, None]).astype(_F)


def _pack_smallest_three(quats: np.ndarray) -> np.ndarray:
    q = _normalized(quats)
    a = np.abs(q)
    largest = np.argmax(a, axis=1)  # first of equal maxima, as the reference's strict '>'
    rows = np.arange(len(q))
    negate = q[rows, largest] < 0
    comp = largest.astype(np.uint32)
    for i in range(4):
        keep = largest != i
        neg = ((q[:, i] < 0) ^ negate).astype(np.uint32)
        mag = np.floor((_F(511.0) * (a[:, i] / SQRT1_2)).astype(_F) + _F(0.5)).astype(np.uint32)
        mag = np.minimum(mag, 511)  # |q_i| ≤ sqrt(1/2) up to float rounding
        comp = np.where(keep, (comp << np.uint32(10)) | (neg << np.uint32(9)) | mag, comp)
    return comp.astype("<u4").view(np.uint8).reshape(-1, 4)


def _unpack_smallest_three(r: np.ndarray) -> np.ndarray:
    comp = np.ascontiguousarray(r, np.uint8).view("<u4").reshape(-1).astype(np.uint32)
    largest = (comp >> np.uint32(30)).astype(np.int64)
    out = np.zeros((len(comp), 4), _F)
    sum_sq = np.zeros(len(comp), _F)
    for i in range(3, -1, -1):
        keep = largest != i
        mag = (comp & np.uint32(511)).astype(_F)
        neg = ((comp >> np.uint32(9)) & np.uint32(1)).astype(bool)
        v = (SQRT1_2 * mag / _F(511.0)).astype(_F)
        v = np.where(neg, -v, v)
        out[:, i] = np.where(keep, v, 0)
        sum_sq = np.where(keep, sum_sq + v * v, sum_sq).astype(_F)
        comp = np.where(keep, comp >> np.uint32(10), comp)
    out[np.arange(len(out)), largest] = np.sqrt(np.maximum(_F(0), _F(1) - sum_sq))
    return out


_SH_BLOCK = 1 << 16


def _quantize_sh(x: np.ndarray, bucket: int) -> np.ndarray:
    # SPZ saturates SH at its byte range (|x| > ~1 clips to 0 or 255); clipping first keeps huge finite
    # values from overflowing float32 into an undefined integer cast (same bytes for every |x| <= 2).
    x = np.clip(np.asarray(x, _F), _F(-2.0), _F(2.0))
    q = (_round_away((x * _F(128.0)).astype(_F)) + 128.0).astype(np.int64)
    q = np.trunc((q + bucket // 2) / bucket).astype(np.int64) * bucket  # C integer division
    return np.clip(q, 0, 255).astype(np.uint8)


# SPZ's axes. Its specification stores RUB (x right, y up, z back: OpenGL, three.js), where a
# trainer's PLY is RDF (y down, z forward); Niantic's library converts only when told the source's
# system (its default, "unspecified", stores what it is given, as the reference vectors do), while
# PlayCanvas' splat-transform and SuperSplat turn PLY's RDF into RUB. "stored" takes the file's
# axes as they are (the default: Niantic's bytes); "rub" turns PLY's axes into SPZ's on writing and
# back on reading: 180° about x, its own inverse. A file whose coordinate-system extension says RDF
# is already in PLY's axes: "rub" reads it as it is, as Niantic's library does.
SPZ_AXES = ("stored", "rub")
# The sign of each SH basis function (3DGS order, DC first) under y → −y, z → −z: (−1)^(its degree
# in y + its degree in z), from the basis' polynomials (render.sh.sh_basis).
_TURN_SH_SIGNS = np.array([1, -1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1], np.float32)


def turn_axes(gmap: GaussianMap) -> GaussianMap:
    """The scene turned 180° about x (PLY's RDF ⇄ SPZ's RUB): positions' y and z negated, each
    rotation conjugated by the turn (x, y, z, w) → (x, −y, −z, w), and the SH coefficients whose
    basis function is odd in y and z negated. A copy; its own inverse."""
    out = gmap.copy()
    out.means[:, 1:] *= -1
    out.quats[:, 1:3] *= -1
    out.sh *= _TURN_SH_SIGNS[: gmap.num_sh, None]
    return out


def pack_attributes(
    gmap: GaussianMap, version: int = LATEST, fractional_bits: int | None = None
) -> list[bytes]:
    """The six raw attribute arrays (positions, alphas, colours, scales, rotations, SH) of SPZ
    ``version`` (2–4), as the reference library packs them. ``fractional_bits`` None: see
    :func:`position_bits`."""
    n = len(gmap)
    if version not in (2, 3, 4):
        raise MapError(f"SPZ version must be 2, 3 or 4 for writing, got {version}")
    if n == 0:  # a file of 0 points is refused by Niantic's reader (and ours): never write one
        raise MapError("SPZ cannot hold an empty scene (SPZ readers refuse a point count of 0)")
    if n > MAX_POINTS:
        raise MapError(f"SPZ: at most {MAX_POINTS} points, the map has {n}")
    if fractional_bits is None:
        fractional_bits = position_bits(gmap)
    if not 0 <= fractional_bits <= 23:
        raise MapError(f"SPZ fractional bits must be 0..23, got {fractional_bits}")
    fixed = _fixed(gmap.means, fractional_bits)
    ext = float(np.abs(fixed).max())
    if not _in_int24(fixed):
        raise MapError(
            f"a Gaussian lies {ext / (1 << fractional_bits):.1f} units from the origin, beyond SPZ's "
            f"±{2.0 ** (23 - fractional_bits):.0f} with {fractional_bits} fractional bits (it would "
            f"wrap)" + ("" if fractional_bits else ": SPZ cannot hold this scene")
        )
    pos = fixed.astype(np.int32).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
    # float32 as the reference: a huge finite value overflows to ±inf as in C and saturates at 0 or
    # 255 (exp(−logit) = inf is alpha 0), the bytes the reference writes; no warning for it
    with np.errstate(over="ignore"):
        alpha = _u8((_F(1) / (_F(1) + np.exp(-gmap.opacity_logits.astype(_F)))).astype(_F) * _F(255.0))
        colors = _u8((gmap.sh[:, 0, :].astype(_F) * (COLOR_SCALE * _F(255.0)) + _F(127.5)).astype(_F))
        scales = _u8(((gmap.log_scales.astype(_F) + _F(10.0)).astype(_F) * _F(16.0)).astype(_F))
    if version >= 3:
        rots = _pack_smallest_three(gmap.quats)
    else:
        q = _normalized(gmap.quats)
        q = q * np.where(q[:, 3:4] < 0, _F(-127.5), _F(127.5)) + _F(127.5)
        rots = _u8(q[:, :3].astype(_F))
    sh = b""
    if gmap.num_sh > 1:
        k = np.arange(1, gmap.num_sh)
        bucket = np.where(k < 4, 8, 16)
        sh8 = np.empty((n, gmap.num_sh - 1, 3), np.uint8)
        for lo in range(0, n, _SH_BLOCK):  # in blocks: the float64/int64 temporaries of 45 values a
            rest = gmap.sh[lo : lo + _SH_BLOCK, 1:, :].astype(_F)  # point took ~5x the map's memory
            for b in (8, 16):
                sel = bucket == b
                sh8[lo : lo + _SH_BLOCK, sel, :] = _quantize_sh(rest[:, sel, :], b)
        sh = sh8.tobytes()
    return [pos.tobytes(), alpha.tobytes(), colors.tobytes(), scales.tobytes(), rots.tobytes(), sh]


def _fixed(means: np.ndarray, fractional_bits: int) -> np.ndarray:
    # float64: scaling by a power of two is exact in either width, but float32 overflows (with a
    # warning) for a position near its maximum, which the callers refuse
    return _round_away(np.asarray(means).astype(np.float64) * (1 << fractional_bits))


def _in_int24(fixed: np.ndarray) -> bool:
    """Whether fixed-point positions fit SPZ's signed 24 bits: −2**23 (a position of exactly
    −2048 at 12 bits, as Niantic writes it) to 2**23 − 1."""
    return bool(fixed.min() >= -(1 << 23) and fixed.max() <= (1 << 23) - 1)


def position_bits(gmap: GaussianMap, target: str = "SPZ") -> int:
    """The fractional bits a writer uses: the reference writer's 12 (1/4096 of a unit, ±2048 units)
    where the scene fits, else as many as keep every position inside the 24-bit range (a
    georeferenced map in metres), with a warning naming the coarser step; 0 when none does (the
    writer then refuses the scene)."""
    if not len(gmap):
        return DEFAULT_FRACTIONAL_BITS
    means = gmap.means.astype(np.float64)
    ext = float(np.abs(means).max())
    extremes = np.array([means.min(), means.max()])
    fits = lambda fb: _in_int24(_fixed(extremes, fb))  # noqa: E731
    fb = DEFAULT_FRACTIONAL_BITS
    while fb > 0 and not fits(fb):
        fb -= 1
    if fb < DEFAULT_FRACTIONAL_BITS and fits(fb):  # (not even 0 bits: the writer's error alone)
        log.warning(
            f"{target}: positions with {fb} fractional bits (a step of {2.0**-fb:g} units): a Gaussian lies "
            f"{ext:.1f} units from the origin, beyond ±{2.0 ** (23 - DEFAULT_FRACTIONAL_BITS):.0f} at "
            f"the usual {DEFAULT_FRACTIONAL_BITS}"
        )
    return fb


def write_spz(
    gmap: GaussianMap,
    version: int = LATEST,
    fractional_bits: int | None = None,
    target: str = "SPZ",
    coordinate_system: int | None = None,
) -> bytes:
    """SPZ bytes of ``gmap`` (version 4 by default; 2 for viewers that predate smallest-three
    rotations); ``fractional_bits`` None: :func:`position_bits` (``target`` names the file in its
    warning). ``coordinate_system``: the code of an input's coordinate-system extension, written
    back (version 4; versions 2-3 hold none here, which means RUB: any other is refused)."""
    if coordinate_system is not None and version < 4 and coordinate_system != RUB:
        raise MapError(
            f"{target}: SPZ version {version} cannot keep the input's coordinate-system extension "
            f"({_system_name(coordinate_system)}): write version 4, or RUB with --spz-axes rub"
        )
    if fractional_bits is None:
        fractional_bits = position_bits(gmap, target)
    parts = pack_attributes(gmap, version, fractional_bits)
    if version < 4:
        head = _LEGACY.pack(MAGIC, version, len(gmap), gmap.sh_degree, fractional_bits, 0, 0)
        c = zlib.compressobj(6, zlib.DEFLATED, 31, 9)  # the reference: gzip, default level, memLevel 9
        return c.compress(head + b"".join(parts)) + c.flush()
    streams = []
    for raw in parts:
        if raw:
            z = zstd.ZstdCompressor(level=ZSTD_LEVEL)
            z.set_pledged_input_size(len(raw))  # as ZSTD_compress2 knows the size (same parameters)
            streams.append((z.compress(raw, mode=zstd.ZstdCompressor.FLUSH_FRAME), len(raw)))
    ext, flags = b"", 0
    if coordinate_system is not None:
        ext, flags = struct.pack("<III", EXT_COORDINATE_SYSTEM, 4, coordinate_system), FLAG_EXTENSIONS
    head = _NGSP.pack(
        MAGIC, version, len(gmap), gmap.sh_degree, fractional_bits, flags, len(streams), 32 + len(ext)
    )
    toc = b"".join(struct.pack("<QQ", len(c), u) for c, u in streams)
    return head + ext + toc + b"".join(c for c, _ in streams)


def _sizes(n: int, degree: int, version: int) -> list[int]:
    k = (degree + 1) ** 2
    return [n * (6 if version == 1 else 9), n, 3 * n, 3 * n, n * (4 if version >= 3 else 3), 3 * n * (k - 1)]


def read_spz(data: bytes, source: str = "spz", axes: str = "stored") -> GaussianMap:
    """Parse SPZ versions 1–4 into a GaussianMap (implicit ids). :class:`MapError` (one line naming
    ``source``) on anything malformed, before any allocation the input does not justify. ``axes``
    "rub" (:data:`SPZ_AXES`): turned into PLY's RDF from the stored axes, RUB unless the file's
    coordinate-system extension says RDF (then as stored); another system named there is refused."""
    turn = axes == "rub"
    gmap, system = _read_any(bytes(data), source, warn=turn)
    if turn and system not in (None, RUB, RDF):
        raise MapError(
            f"{source}: SPZ stored in {_system_name(system)} axes (its coordinate-system "
            f"extension): only RUB and RDF are turned into PLY's axes here; read it with --spz-axes stored"
        )
    return turn_axes(gmap) if turn and system != RDF else gmap


def _system_name(code: int) -> str:
    return COORDINATE_SYSTEMS[code] if code < len(COORDINATE_SYSTEMS) else f"unknown code {code}"


def stored_coordinate_system(data: bytes, source: str = "spz") -> int | None:
    """The axes an SPZ's data is stored in, by its ``SPZ_ADOBE_coordinate_system`` extension, as
    :func:`_coordinate_system` takes them (None: no record, RUB). The gzip framing is inflated to
    reach its records (after the arrays); a truncated version-4 header gives None (the reader's
    error)."""
    if data[:4] == struct.pack("<I", MAGIC):
        return None if len(data) < _NGSP.size else _coordinate_system(_ngsp_extensions(data, source), source)
    return _coordinate_system(_inflate_gzip(data, source)[2], source)


class _Extensions(NamedTuple):
    """Flag 2's extension records (empty without the flag), at byte ``at`` of the file (version 4)
    or of the gzip stream (versions 1-3), bounded by ``end`` (both named in errors)."""

    records: bytes
    at: int
    end: str


def _coordinate_system(ext: _Extensions, source: str, warn: bool = False) -> int | None:
    """The stored axes named by the extension records, as Niantic's reader takes them (one loop for
    both framings): other types skipped by their length, the first coordinate system of a defined
    code (0-16) used, UNSPECIFIED (0) as RUB ("likely a writer bug", its ``resolve``) and a code
    above 16 as no record (its ``read``); RUB taken so is logged once when ``warn`` (where the axes
    matter). None: no record. A record that runs past ``ext.end`` is refused."""
    zone, at, end = ext
    found, ignored, o = None, [], 0
    for _ in range(MAX_EXTENSIONS):
        if o == len(zone):
            if warn and (found == 0 or (found is None and ignored)):  # (taken as RUB by default)
                what = "UNSPECIFIED" if found == 0 else f"unknown code {ignored[0]}"
                log.warning(
                    f"{source}: SPZ coordinate-system extension {what}: read as RUB, as Niantic's library does"
                )
            return RUB if found == 0 else found
        if len(zone) - o < 8 or struct.unpack_from("<I", zone, o + 4)[0] > len(zone) - o - 8:
            raise MapError(f"{source}: SPZ extension record at byte {at + o} runs past {end}")
        kind, size = struct.unpack_from("<II", zone, o)
        if kind == EXT_COORDINATE_SYSTEM:
            if size != 4:
                raise MapError(f"{source}: SPZ coordinate-system extension of {size} bytes (4 expected)")
            code = struct.unpack_from("<I", zone, o + 8)[0]
            if code >= len(COORDINATE_SYSTEMS):
                ignored.append(code)
            elif found is None:
                found = code
        o += 8 + size
    raise MapError(f"{source}: more than {MAX_EXTENSIONS} SPZ extension records")


def _ngsp_extensions(data: bytes, source: str) -> _Extensions:
    """A version-4 file's extension zone, [32, table of contents). ``data`` holds a whole header."""
    *_, flags, _, toc = _NGSP.unpack_from(data)
    if not _NGSP.size <= toc <= len(data):
        raise MapError(f"{source}: SPZ table of contents at {toc} outside the file")
    zone = data[_NGSP.size : toc] if flags & FLAG_EXTENSIONS else b""
    return _Extensions(zone, _NGSP.size, f"the table of contents ({toc})")


def _read_any(data: bytes, source: str, warn: bool = False) -> tuple[GaussianMap, int | None]:
    """The scene and its stored axes (:func:`_coordinate_system`, ``warn`` passed on)."""
    if data[:4] == struct.pack("<I", MAGIC):
        return _read_ngsp(data, source, warn)
    (version, n, deg, fb, flags), body, ext = _inflate_gzip(data, source)
    system = _coordinate_system(ext, source, warn)
    parts, o = [], 0
    for size in _sizes(n, deg, version):
        parts.append(body[o : o + size])
        o += size
    return _unpack(parts, version, n, deg, fb, flags, source), system


def _inflate_gzip(data: bytes, source: str) -> tuple[tuple[int, int, int, int, int], bytes, _Extensions]:
    """The gzip framing's header (version, n, SH degree, fractional bits, flags), its arrays, and
    its extension zone: what follows the arrays to the end of the stream (with flag 2)."""
    if data[:2] != b"\x1f\x8b":
        raise MapError(f"{source}: not an SPZ file (neither gzip nor an NGSP header)")
    d = zlib.decompressobj(wbits=31)
    try:
        head = d.decompress(data, _LEGACY.size)
        magic, version, n, deg, fb, flags, _ = _LEGACY.unpack(head)
    except (zlib.error, struct.error) as exc:
        raise MapError(f"{source}: bad SPZ header ({exc})") from None
    _check_header(source, magic, version, n, deg, fb, len(data), legacy=True)
    sizes = _sizes(n, deg, version)
    try:
        body = d.decompress(d.unconsumed_tail, sum(sizes))
    except zlib.error as exc:
        raise MapError(f"{source}: corrupt gzip data ({exc})") from None
    if len(body) != sum(sizes):
        raise MapError(f"{source}: {len(body)} bytes of SPZ data, {sum(sizes)} expected for {n} points")
    zone = _finish_gzip(d, source, keep=bool(flags & FLAG_EXTENSIONS))
    at = _LEGACY.size + len(body)
    ext = _Extensions(zone, at, f"the end of the gzip stream ({at + len(zone)})")
    return (version, n, deg, fb, flags), body, ext


def _finish_gzip(d, source: str, keep: bool) -> bytes:
    """Inflate what follows the arrays (extension records, or nothing) to the end of the gzip
    stream, a bounded chunk at a time: only there does zlib check the CRC and length, so a flipped
    bit in the arrays is an error instead of wrong values. The bytes are returned when ``keep``
    (flag 2), else discarded (b""). Bytes after the gzip stream are ignored, as by the reference
    reader."""
    extra, kept = 0, []
    try:
        while not d.eof:
            chunk = d.decompress(d.unconsumed_tail, 1 << 20)
            if not chunk and not d.unconsumed_tail and not d.eof:
                raise MapError(f"{source}: truncated gzip stream (it ends before its CRC)")
            extra += len(chunk)
            if extra > MAX_TRAILER:  # a bomb behind valid arrays: stop instead of inflating on
                raise MapError(f"{source}: more than {MAX_TRAILER} bytes after the SPZ arrays")
            if keep:
                kept.append(chunk)
    except zlib.error as exc:  # a CRC or length mismatch, or corrupt deflate data
        raise MapError(f"{source}: corrupt gzip data ({exc})") from None
    return b"".join(kept)


def _check_header(source, magic, version, n, deg, fb, size, legacy) -> None:
    if magic != MAGIC:
        raise MapError(f"{source}: wrong SPZ magic {magic:#x}")
    # (the gzip framing holds versions 1–4: Niantic's writer made gzip v4 for a while, and its reader
    # still takes it; the zstd framing is version 4 only)
    if not legacy and 1 <= version <= 3:  # (a file gunzipped, or a tool's raw arrays before gzip)
        raise MapError(
            f"{source}: SPZ version {version} without its gzip framing (versions 1-3 are stored gzip-"
            "compressed, as Niantic's reader requires: gzip the file)"
        )
    if not (1 <= version <= 4 if legacy else version == 4):
        raise MapError(f"{source}: SPZ version {version} not supported in this framing")
    if deg > 4:
        raise MapError(f"{source}: SPZ SH degree {deg} not supported (0..4)")
    if fb > 23:
        raise MapError(f"{source}: SPZ fractional bits {fb} out of range (0..23)")
    if n == 0:  # as the reference reader: an SPZ holds at least one point
        raise MapError(f"{source}: SPZ point count 0 (an empty scene, which SPZ does not allow)")
    # the reference reader's bound for gzip: streams compress at most 1024:1, positions take ≥ 6
    # bytes a point; zstd's (version 4) at most ZSTD_MAX_RATIO:1, positions 9 bytes
    if n > MAX_POINTS or n > (size * 1024 // 6 if legacy else size * ZSTD_MAX_RATIO // 9):
        raise MapError(f"{source}: SPZ point count {n} impossible for a {size}-byte file (max {MAX_POINTS})")
    check_room(n, min(deg, 3), source)  # gzip's 1024:1 still lets 1 MB name 170M points


def _read_ngsp(data: bytes, source: str, warn: bool) -> tuple[GaussianMap, int | None]:
    if len(data) < _NGSP.size:
        raise MapError(f"{source}: truncated SPZ header ({len(data)} bytes)")
    magic, version, n, deg, fb, flags, ns, toc = _NGSP.unpack_from(data)
    _check_header(source, magic, version, n, deg, fb, len(data), legacy=False)
    want = [s for s in _sizes(n, deg, version) if s]
    if ns != len(want):
        raise MapError(f"{source}: {ns} SPZ streams, {len(want)} expected for SH degree {deg}")
    if not _NGSP.size <= toc <= len(data) - 16 * ns:
        raise MapError(f"{source}: SPZ table of contents at {toc} outside the file")
    system = _coordinate_system(_ngsp_extensions(data, source), source, warn)  # (whatever the axes)
    o, parts = toc + 16 * ns, []
    for i in range(ns):
        cs, us = struct.unpack_from("<QQ", data, toc + 16 * i)
        if us != want[i]:
            raise MapError(f"{source}: SPZ stream {i} holds {us} bytes, {want[i]} expected for {n} points")
        if cs > len(data) - o:
            raise MapError(f"{source}: SPZ stream {i} runs past the end of the file")
        try:  # (every frame of it, as ZSTD_decompress reads a stream)
            raw = inflate(data[o : o + cs], us)
        except ZstdError as exc:
            raise MapError(f"{source}: corrupt zstd data in SPZ stream {i} ({exc})") from None
        if raw is None or len(raw) != us:
            got = "more" if raw is None else len(raw)
            raise MapError(f"{source}: SPZ stream {i} decompresses to {got} bytes, {us} expected")
        parts.append(raw)
        o += cs
    if o != len(data):
        raise MapError(f"{source}: {len(data) - o} unexpected bytes after the SPZ streams")
    if deg == 0:
        parts.append(b"")
    return _unpack(parts, version, n, deg, fb, flags, source), system


def _unpack(
    parts: list[bytes], version: int, n: int, deg: int, fb: int, flags: int, source: str
) -> GaussianMap:
    pos_b, alpha_b, col_b, scale_b, rot_b, sh_b = (np.frombuffer(p, np.uint8) for p in parts)
    if flags & FLAG_ANTIALIASED:
        warn_antialiased(source)
    if deg == 4:
        log.warning(f"{source}: SH degree 4: its fifth band is dropped (degrees 0-3 are kept)")
        sh_b = sh_b.reshape(n, 24, 3)[:, :15].reshape(-1)
        deg = 3
    if version == 1:
        means = pos_b.view("<f2").reshape(n, 3).astype(_F)
    else:
        p = pos_b.reshape(n, 3, 3).astype(np.int32)
        fixed = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
        fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
        means = fixed.astype(_F) * _F(1.0 / (1 << fb))
    scales = scale_b.reshape(n, 3).astype(_F) / _F(16.0) - _F(10.0)
    if version >= 3:
        quats = _unpack_smallest_three(rot_b.reshape(n, 4))
    else:
        xyz = rot_b.reshape(n, 3).astype(_F) * _F(1.0 / 127.5) - _F(1.0)
        w = np.sqrt(np.maximum(_F(0), _F(1) - (xyz * xyz).sum(axis=1, dtype=_F)))
        quats = np.concatenate([xyz, w[:, None]], axis=1)
    with np.errstate(divide="ignore"):
        a = alpha_b.astype(_F) / _F(255.0)
        opacity = np.log(a / (_F(1) - a))  # ±inf at 0 and 255: clamped by the suite's rule
    k = (deg + 1) ** 2
    sh = np.empty((n, k, 3), _F)
    sh[:, 0] = (col_b.reshape(n, 3).astype(_F) / _F(255.0) - _F(0.5)) / COLOR_SCALE
    if k > 1:
        sh[:, 1:] = (sh_b.reshape(n, k - 1, 3).astype(_F) - _F(128.0)) / _F(128.0)
    means, quats, scales, opacity, sh = clamp_nonfinite(means, quats, scales, opacity, sh, source)
    norms = np.linalg.norm(quats, axis=1)
    quats[norms < 1e-12] = (0, 0, 0, 1)  # an all-zero code: the reference decodes it as is
    quats = (quats / np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), 1e-30)).astype(_F)
    return GaussianMap(
        sh_degree=deg, means=means, quats=quats, log_scales=scales, opacity_logits=opacity, sh=sh
    )
