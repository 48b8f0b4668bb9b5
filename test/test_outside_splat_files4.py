"""Outside check of issue 17, fourth pass (read the 3DGS files users have): SPZ framings that
Niantic's reference reader (nianticlabs/spz 21715c3, ``src/cc/load-spz.cc``, built from source
against zlib and libzstd 1.5.4) reads and ours refuses, and a SOG image header that makes Pillow
print lines of its own. The first three passes (test_outside_splat_files.py, ...2.py, ...3.py) and
test_formats_*.py do not build these files.

- SPZ version 4 in the gzip framing (16-byte header, the v3 arrays): what Niantic's library wrote
  from 2026-03-11 (c22d609, tag ``v2.1.0+adobe.27``, ``LATEST_SPZ_HEADER_VERSION = 4`` before the
  zstd framing of 51008f8) and what ``@adobe/spz`` 0.2.0 on npm writes today (its
  ``saveSpzToBuffer`` with ``version: LATEST_SPZ_HEADER_VERSION``). Niantic's current reader takes
  versions 1-4 in that framing (``deserializePackedGaussians``: ``version < 1 || version > LATEST``);
  the bytes below are that package's output, and the values are what Niantic's ``spz_to_ply`` decodes.
- SPZ version 4 (NGSP) whose attribute streams are more than one zstd frame, or start with a
  skippable frame: Niantic decodes each stream with ``ZSTD_decompress``, which reads every
  concatenated frame (RFC 8878, section 3: "multiple frames can be appended"). Its decode of each
  file built here was checked equal, byte for byte, to its decode of the gzip file above.
- gzip headers with the optional fields of RFC 1952 (FEXTRA, FNAME, FCOMMENT, FHCRC), as zlib's
  inflate (Niantic's reader) takes them.
- A SOG image whose WebP header names 100 megapixels: Pillow's decompression-bomb warning went to
  stderr (three lines) before our size check refused the image in one.
"""

from __future__ import annotations

import base64
import gzip
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from gs_mapping.errors import MapError
from gs_mapping.splat_formats.spz import read_spz

try:  # Python 3.14+ ships zstd; before, the backport of the same module (as spz.py)
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    zstd = pytest.importorskip("backports.zstd")

OUTSIDE = Path(__file__).parent / "data" / "outside_splat_files"

# @adobe/spz 0.2.0 (npm), saveSpzToBuffer of 4 Gaussians of SH degree 1 with
# {version: LATEST_SPZ_HEADER_VERSION (4), from: UNSPECIFIED, sh1Bits: 5, shRestBits: 4}:
# gzip of a 16-byte header (magic, version 4, 4 points, degree 1, 12 fractional bits, flags 0) and
# the arrays in the v3 layout (smallest-three rotations).
_ADOBE_V4_GZIP = base64.b64decode(
    "H4sIAAAAAAAAA/NzDw5gYWBgAGFGHiDBwcDw5z+DAAPDi/8MCgwMTAwMBgwMD/4z/PgPlGQAqnjzv+Gh3K7m9u6c/mUNDQ073SYXZCQ"
    "AGQEJBRMcGoBqDmQunSo2pWK1y39GoOYFCRcmBBxocNhQgJMJAKsmVa6EAAAA"
)

# Niantic's spz_to_ply (21715c3) of that file, column by column (float32 as printed by numpy)
_NIANTIC = {
    "xyz": [[0.5, -0.25, 1.0], [-1.5, 2.0, 0.125], [3.0, -2.0, -0.5], [0.0, 0.75, -1.25]],
    "scale": [[-3.0, -3.5, -4.0], [-2.0, -2.0, -2.0], [-5.0, -4.0, -3.0], [-1.0, -6.0, -2.0]],
    "opacity": [0.00784329, 2.014903, -2.014903, 0.99164027],
    "f_dc": [
        [0.09150346, 0.19607861, 0.30065376],
        [-0.5098039, 0.4052289, 1.006536],
        [0.01307209, 0.01307209, 0.01307209],
        [1.503268, -1.5032678, 0.50980407],
    ],
    # f_rest_0..8, channel-major (red's three coefficients, then green's, then blue's)
    "f_rest": [
        [-0.625, 0.625, 0.5, 0.25, 0.125, 0.0, -0.25, -0.375, -0.5],
        [0.375, 0.25, 0.125, -0.125, -0.25, -0.375, -0.625, 0.625, 0.5],
        [0.0, -0.125, -0.25, -0.5, -0.625, 0.625, 0.375, 0.25, 0.125],
        [-0.375, -0.5, -0.625, 0.5, 0.375, 0.25, 0.0, -0.125, -0.25],
    ],
    # rot_0..3 = (w, x, y, z)
    "rot": [
        [1.0, 0.0, 0.0, 0.0],
        [0.49954119, 0.50137389, 0.49954119, 0.49954119],
        [0.20479804, 0.10239902, 0.92368942, -0.30719706],
        [0.70710677, 0.70710677, 0.0, 0.0],
    ],
}


def _assert_niantics_values(g) -> None:
    """A map read from the 4-Gaussian scene against Niantic's decode of the same arrays."""
    assert len(g) == 4 and g.sh_degree == 1
    np.testing.assert_array_equal(g.means, np.float32(_NIANTIC["xyz"]))
    np.testing.assert_array_equal(g.log_scales, np.float32(_NIANTIC["scale"]))
    np.testing.assert_allclose(g.opacity_logits, _NIANTIC["opacity"], atol=1e-6)
    np.testing.assert_allclose(g.sh[:, 0, :], _NIANTIC["f_dc"], atol=1e-6)
    rest = np.float32(_NIANTIC["f_rest"]).reshape(4, 3, 3).transpose(0, 2, 1)  # (n, coeff, channel)
    np.testing.assert_allclose(g.sh[:, 1:, :], rest, atol=1e-7)
    want = np.float64(_NIANTIC["rot"])[:, [1, 2, 3, 0]]  # (x, y, z, w)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    q = g.quats.astype(np.float64)
    q *= np.sign((q * want).sum(axis=1))[:, None]  # q and -q are one rotation
    np.testing.assert_allclose(q, want, atol=2e-6)


def _arrays() -> tuple[tuple, list[bytes]]:
    """The header fields and the six attribute arrays of the gzip file, split by the SPZ layout
    (gunzipped by the standard library, not by our reader)."""
    raw = gzip.decompress(_ADOBE_V4_GZIP)
    head = struct.unpack_from("<IIIBBBB", raw)
    magic, version, n, deg, fb, flags, _ = head
    assert (magic, version, n, deg, fb, flags) == (0x5053474E, 4, 4, 1, 12, 0)
    sizes = [9 * n, n, 3 * n, 3 * n, 4 * n, 3 * n * ((deg + 1) ** 2 - 1)]
    out, at = [], 16
    for s in sizes:
        out.append(raw[at : at + s])
        at += s
    assert at == len(raw)
    return head, out


def test_spz_version_4_in_gzip_framing_reads_as_niantics_reader_reads_it():
    """docs/format.md promises "Niantic SPZ v1–v4". Version 4 first meant the gzip framing with the
    v3 arrays (Niantic c22d609 .. 51008f8, tag v2.1.0+adobe.27; @adobe/spz 0.2.0 on npm still writes
    it); Niantic's current reader keeps reading it (the legacy path accepts version <= 4)."""
    _assert_niantics_values(read_spz(_ADOBE_V4_GZIP, "adobe.spz"))


def _ngsp(frames_of) -> bytes:
    """The gzip file's arrays in Niantic's version-4 layout: 32-byte header, table of (compressed,
    raw) u64 sizes at offset 32, then each non-empty array compressed by ``frames_of``."""
    (magic, _, n, deg, fb, flags, _), arrays = _arrays()
    streams = [frames_of(a) for a in arrays]
    head = struct.pack("<IIIBBBBI12x", magic, 4, n, deg, fb, flags, len(streams), 32)
    toc = b"".join(struct.pack("<QQ", len(c), len(a)) for c, a in zip(streams, arrays, strict=True))
    return head + toc + b"".join(streams)


def _one_frame(a: bytes) -> bytes:
    return zstd.compress(a)


def _streaming_frame(a: bytes) -> bytes:
    """What a streaming writer makes: no content size in the frame header, a checksum at its end."""
    params = {zstd.CompressionParameter.content_size_flag: 0, zstd.CompressionParameter.checksum_flag: 1}
    return zstd.ZstdCompressor(options=params).compress(a, mode=zstd.ZstdCompressor.FLUSH_FRAME)


def _two_frames(a: bytes) -> bytes:
    """The array compressed in two halves, the frames concatenated (a chunked or parallel writer)."""
    return zstd.compress(a[: len(a) // 2]) + zstd.compress(a[len(a) // 2 :])


def _skippable_first(a: bytes) -> bytes:
    """A skippable frame (magic 0x184D2A50, RFC 8878 section 3.1.2) before the data's frame."""
    return struct.pack("<II", 0x184D2A50, 3) + b"gsm" + zstd.compress(a)


@pytest.mark.parametrize(
    "frames_of",
    [
        pytest.param(_one_frame, id="one-frame"),
        pytest.param(_streaming_frame, id="streaming-frame"),
        pytest.param(_two_frames, id="two-frames"),
        pytest.param(_skippable_first, id="skippable-frame-first"),
    ],
)
def test_spz_v4_streams_read_as_zstd_decompress_reads_them(frames_of):
    """Niantic's loadSpzPacked hands each stream to ZSTD_decompress, which decodes concatenated
    frames and skips skippable ones, and checks only the raw size the table of contents names.
    Each file here decodes in Niantic's reader to the same values as the gzip file above."""
    _assert_niantics_values(read_spz(_ngsp(frames_of), "ngsp.spz"))


def _gzip_with_optional_fields(raw: bytes) -> bytes:
    """RFC 1952 member with FHCRC, FEXTRA (one 'AB' subfield), FNAME and FCOMMENT set, as
    `gzip` (FNAME) and other writers make them; raw deflate in between, CRC-32 and ISIZE after."""
    flags = 0x02 | 0x04 | 0x08 | 0x10
    head = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0" + b"\0\x03"
    head += struct.pack("<H", 6) + b"AB" + struct.pack("<H", 2) + b"hi"
    head += b"scene.spz\0" + b"exported by hand\0"
    head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(raw) + c.flush()
    return head + body + struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF)


def test_spz_gzip_member_with_optional_header_fields_reads():
    """A version-3 SPZ (the same arrays, the header's version set to 3) whose gzip member carries
    the optional header fields: zlib's inflate, Niantic's reader, skips them; so must we. And a
    flipped FHCRC is damage (zlib refuses the member): one MapError."""
    (magic, _, n, deg, fb, flags, pad), arrays = _arrays()
    raw = struct.pack("<IIIBBBB", magic, 3, n, deg, fb, flags, pad) + b"".join(arrays)
    data = _gzip_with_optional_fields(raw)
    assert gzip.decompress(data) == raw  # the standard library reads the member too
    _assert_niantics_values(read_spz(data, "fields.spz"))
    at = data.index(b"exported by hand\0") + len(b"exported by hand\0")
    bad = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    with pytest.raises(MapError, match="fields.spz"):
        read_spz(bad, "fields.spz")


def _vp8l_header(width: int, height: int) -> bytes:
    """A lossless WebP (RIFF 'WEBP', one 'VP8L' chunk) whose header names width × height pixels
    and whose image data is 16 zero bytes (WebP container spec, VP8L bitstream section 3)."""
    bits = (width - 1) | ((height - 1) << 14) | (1 << 28)  # alpha used, version 0
    chunk = b"\x2f" + struct.pack("<I", bits) + bytes(16)
    chunk += b"\0" * (len(chunk) % 2)
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(chunk)) + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_sog_image_naming_100_megapixels_is_refused_in_one_line(tmp_path):
    """README: "Errors on bad input print one line naming the file ... and exit non-zero". A
    20-Gaussian SOG (splat-transform 2.7.1's, test/data/outside_splat_files/s1_sog) with its
    means_l.webp replaced by a 62-byte WebP whose header says 10000 × 10000: sog.py refuses it by
    size, but Pillow's Image.open warns first (more than 89,478,485 pixels) on stderr."""
    sog = tmp_path / "bomb_sog"
    sog.mkdir()
    for f in (OUTSIDE / "s1_sog").iterdir():  # (bytes only: the checkout's modes may be read-only)
        (sog / f.name).write_bytes(f.read_bytes())
    (sog / "means_l.webp").write_bytes(_vp8l_header(10000, 10000))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "convert", str(sog), str(tmp_path / "out.ply")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and not (tmp_path / "out.ply").exists(), r.stderr
    assert "means_l.webp" in lines[-1], r.stderr
    assert len(lines) == 1, r.stderr
