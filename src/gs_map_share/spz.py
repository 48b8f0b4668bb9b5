"""Niantic SPZ export (and a reader for checking it), format **version 2**.

An SPZ file is gzip of: a 16-byte header (u32 magic 0x5053474e "NGSP", u32 version = 2, u32 number of
points, u8 SH degree, u8 fractional bits, u8 flags (0x1 = antialiased), u8 reserved = 0), then
attribute arrays, all points of one attribute together, in this order:

- positions: 3 × 24-bit signed fixed point per point (little-endian, ``fractional_bits`` fraction bits);
- alphas: u8, ``round(sigmoid(opacity_logit) · 255)``;
- colours: 3 × u8, ``round(dc · 0.15 · 255 + 127.5)`` (DC SH coefficient, scaled by 0.15);
- scales: 3 × u8, ``round((log_scale + 10) · 16)``;
- rotations: 3 × u8, ``round(q · 127.5 + 127.5)`` for x, y, z of the unit quaternion with w ≥ 0;
- SH (degree ≥ 1): per point, coefficient-major with colour channel inner, u8 ``round(c · 128 + 128)``
  kept to 5 bits (degree 1) or 4 bits (degrees 2–3).

Coordinates are written as they are in the map (no RDF→RUB axis change). SPZ's 24-bit positions
cover ±2**(23 − fractional_bits) m; we never let them wrap: the writer picks fewer fraction bits or
refuses. Ids and levels are not part of SPZ.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np

from gs_mapping.errors import MapError
from gs_mapping.gaussians import GaussianMap

from .errors import DecodeError

MAGIC = 0x5053474E
VERSION = 2
COLOR_SCALE = 0.15
MAX_POINTS = 10_000_000
_HEADER = struct.Struct("<IIIBBBB")


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def write_spz(gmap: GaussianMap, fractional_bits: int | None = 12) -> bytes:
    """SPZ v2 bytes of ``gmap``. ``fractional_bits=None`` picks the most that fit (≤ 12)."""
    n = len(gmap)
    if n > MAX_POINTS:
        raise MapError(f"SPZ readers accept at most {MAX_POINTS} points, the map has {n}")
    ext = float(np.abs(gmap.means.astype(np.float64)).max()) if n else 0.0
    fits = [b for b in range(0, 24) if ext * (1 << b) < (1 << 23) - 1]
    if fractional_bits is None:
        if not fits:
            raise MapError(f"map extent {ext:.0f} m is beyond SPZ's 24-bit positions")
        fractional_bits = min(12, max(fits))
    if not 0 <= fractional_bits <= 23:
        raise MapError(f"fractional bits must be 0..23, got {fractional_bits}")
    if fractional_bits not in fits:
        raise MapError(
            f"a Gaussian lies {ext:.1f} m from the origin, beyond SPZ's range of "
            f"±{2.0 ** (23 - fractional_bits):.0f} m with {fractional_bits} fractional bits "
            f"(SPZ would wrap it); use fewer fractional bits"
        )
    fixed = np.rint(gmap.means.astype(np.float64) * (1 << fractional_bits)).astype(np.int32)
    pos = fixed.reshape(-1, 1).view(np.uint8).reshape(-1, 4)[:, :3]  # little-endian low 3 bytes
    alpha = _u8(gmap.opacities() * 255.0)
    colors = _u8(gmap.sh[:, 0, :].astype(np.float64) * COLOR_SCALE * 255.0 + 127.5)
    scales = _u8((gmap.log_scales.astype(np.float64) + 10.0) * 16.0)
    q = gmap.quats.astype(np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 3] < 0] *= -1
    rots = _u8(q[:, :3] * 127.5 + 127.5)
    parts = [
        _HEADER.pack(MAGIC, VERSION, n, gmap.sh_degree, fractional_bits, 0, 0),
        pos.tobytes(),
        alpha.tobytes(),
        colors.tobytes(),
        scales.tobytes(),
        rots.tobytes(),
    ]
    if gmap.num_sh > 1:
        sh = np.rint(gmap.sh[:, 1:, :].astype(np.float64) * 128.0 + 128.0)
        bucket = np.where(np.floor(np.sqrt(np.arange(1, gmap.num_sh))) == 1, 8, 16)[None, :, None]
        sh = np.floor((sh + bucket // 2) / bucket) * bucket
        parts.append(_u8(sh).tobytes())
    return gzip.compress(b"".join(parts), compresslevel=9, mtime=0)


def read_spz(data: bytes) -> GaussianMap:
    """Parse SPZ v2 into a GaussianMap with ids
    1..N. Raises :class:`DecodeError` on anything malformed; output size is bounded by the header's
    point count, itself capped, before anything is allocated."""
    d = zlib.decompressobj(wbits=31)
    try:
        head = d.decompress(data, _HEADER.size)
        magic, version, n, deg, fb, flags, reserved = _HEADER.unpack(head)
    except (zlib.error, struct.error) as exc:
        raise DecodeError(f"spz: bad header ({exc})") from None
    if magic != MAGIC:
        raise DecodeError(f"spz: wrong magic {magic:#x}")
    if version != VERSION:
        raise DecodeError(f"spz: version {version} not supported (this reader checks our v2 output)")
    if n > MAX_POINTS or deg > 3 or fb > 23:
        raise DecodeError(f"spz: header out of range (points {n}, degree {deg}, fractional bits {fb})")
    k = (deg + 1) ** 2
    size = n * (9 + 1 + 3 + 3 + 3 + 3 * (k - 1))
    try:
        body = d.decompress(d.unconsumed_tail, size + 1)
    except zlib.error as exc:
        raise DecodeError(f"spz: corrupt gzip data ({exc})") from None
    if len(body) != size:
        raise DecodeError(f"spz: {len(body)} bytes of data, {size} expected for {n} points")
    b = np.frombuffer(body, np.uint8)
    o = 0

    def take(m):
        nonlocal o
        out = b[o : o + m]
        o += m
        return out

    p = take(9 * n).reshape(n, 3, 3).astype(np.int32)
    fixed = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    means = fixed.astype(np.float64) / (1 << fb)
    alpha = take(n).astype(np.float64) / 255.0
    alpha = np.clip(alpha, 1e-6, 1 - 1e-6)
    dc = (take(3 * n).reshape(n, 3).astype(np.float64) / 255.0 - 0.5) / COLOR_SCALE
    ls = take(3 * n).reshape(n, 3).astype(np.float64) / 16.0 - 10.0
    xyz = take(3 * n).reshape(n, 3).astype(np.float64) / 127.5 - 1.0
    w = np.sqrt(np.maximum(0.0, 1.0 - (xyz**2).sum(1)))
    q = np.concatenate([xyz, w[:, None]], 1)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    sh = np.zeros((n, k, 3))
    sh[:, 0] = dc
    if k > 1:
        sh[:, 1:] = (take(3 * (k - 1) * n).reshape(n, k - 1, 3).astype(np.float64) - 128.0) / 128.0
    return GaussianMap(
        sh_degree=deg,
        means=means.astype(np.float32),
        quats=q.astype(np.float32),
        log_scales=ls.astype(np.float32),
        opacity_logits=np.log(alpha / (1 - alpha)).astype(np.float32),
        sh=sh.astype(np.float32),
        ids=np.arange(1, n + 1, dtype=np.uint64),
        levels=np.zeros(n, np.uint8),
    )
