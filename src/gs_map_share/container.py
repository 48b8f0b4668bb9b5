"""The container: header, table of contents, CRC-checked chunks (see docs/format.md).

Everything is little-endian. The header is at most 256 bytes; each chunk carries type, level, length
and CRC-32C; the header and the table of contents carry their own CRC-32C. Unknown chunk types are
checked and skipped (forward compatible). Parsing checks every length against the bytes present
before using it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .bitio import Reader, Writer, crc32c
from .errors import DecodeError, EncodeError
from .quantize import MAX_ROT_TIERS, QuantParams

MAGIC = b"GSMD"
VERSION = 12
# 5 added centred prediction choices and two-lane streams, 6 faint rotations and positions
# (header fields faint_rot, faint_pos), 7 plain short streams (stream mode 7) and one table for
# a short stream's contexts, 8 the blue channel's extrapolated prediction, 9 neighbour phases and
# blue-first sections, 10 octree tails, 11 SH channels from channel 1, 12 SH palette indices as
# first uses and repeats (docs/format.md)
READS = (4, 5, 6, 7, 8, 9, 10, 11, 12)
MAX_FRAME_ID = 128
MAX_CHUNKS = 4096

# chunk types
TILES = 1  # section header: Gaussian count, level depths, tile coordinates
LEVEL = 2  # one level of detail: occupancy (+ aggregated or leaf attributes)
REMOVED = 3  # ids removed (delta)
UPDATED = 4  # ids updated, residuals against the previous quantised values (delta)
CLEAR_TILES = 5  # codec tiles emptied (delta)
PAD = 15  # padding (ignored; keeps a minimum of bytes per Gaussian, see the decoder's cap)
CHUNK_NAMES = {
    TILES: "TILES",
    LEVEL: "LEVEL",
    REMOVED: "REMOVED",
    UPDATED: "UPDATED",
    CLEAR_TILES: "CLEAR_TILES",
    PAD: "PAD",
}

_FIXED5 = struct.Struct("<4sHHQQQQIBBBBddddddB4HBh")  # versions 4-5: up to and including faint_below
_FIXED = struct.Struct("<4sHHQQQQIBBBBddddddB4HBhBB")  # version 6 on: then faint_rot, faint_pos
_N5 = len(_FIXED5.unpack(bytes(_FIXED5.size)))  # fields of the version 4-5 layout


def _layout(version: int) -> struct.Struct:
    return _FIXED if version >= 6 else _FIXED5


_TOC = struct.Struct("<BBHII")


@dataclass
class Header:
    map_id: int
    seq: int
    base_seq: int  # 0 = snapshot
    gaussians: int  # Gaussians in the map after this container is applied
    state_crc: int  # QMap.checksum() of that map
    sh_degree: int
    n_levels: int
    params: QuantParams
    tile_size: float = 2.0  # GaussianMap.tile_size of the sender's map (metadata)
    frame_id: str = "map"

    @property
    def is_snapshot(self) -> bool:
        return self.base_seq == 0


@dataclass
class Chunk:
    type: int
    level: int
    data: bytes | memoryview = field(repr=False)  # a decoded container's chunks are views


def pack(h: Header, chunks: list[Chunk]) -> bytes:
    try:
        frame = h.frame_id.encode("utf-8")
    except (UnicodeEncodeError, AttributeError):  # (a command line's undecodable bytes: surrogates)
        raise EncodeError(f"frame id must be UTF-8 text, got {h.frame_id!r}") from None
    if len(frame) > MAX_FRAME_ID:
        raise EncodeError(f"frame id longer than {MAX_FRAME_ID} bytes ({len(frame)})")
    for name in ("map_id", "seq", "base_seq", "gaussians"):  # uint64 fields: refused, never wrapped
        value = getattr(h, name)
        if not 0 <= value < 1 << 64:
            raise EncodeError(f"{name} must be 0 … 2**64 - 1, got {value}")
    p = h.params
    tiers = tuple(p.rot_tiers) + (0,) * (MAX_ROT_TIERS - len(p.rot_tiers))
    fixed = _FIXED.pack(
        MAGIC,
        VERSION,
        0,
        h.map_id,
        h.seq,
        h.base_seq,
        h.gaussians,
        h.state_crc,
        h.sh_degree,
        h.n_levels,
        p.tile_bits,
        p.rot_bits,
        p.pos_step,
        h.tile_size,
        p.opacity_step,
        p.scale_step,
        p.dc_step,
        p.rest_step,
        len(p.rot_tiers),
        *tiers,
        p.faint_factor,
        p.faint_below,
        p.faint_rot,
        p.faint_pos,
    )
    body = fixed + struct.pack("<HB", len(chunks), len(frame)) + frame
    hlen = len(body) + 4
    body = body[:6] + struct.pack("<H", hlen) + body[8:]
    w = Writer()
    w.raw(body)
    w.u32(crc32c(body))
    toc = b"".join(_TOC.pack(c.type, c.level, 0, len(c.data), crc32c(c.data)) for c in chunks)
    w.raw(toc)
    w.u32(crc32c(toc))
    for c in chunks:
        w.raw(c.data)
    return w.getvalue()


def unpack_header(data) -> tuple[Header, int, int]:
    """Parse and check the header only. Returns (header, n_chunks, offset of the TOC)."""
    data = memoryview(bytes(data)) if not isinstance(data, (bytes, memoryview)) else memoryview(data)
    if len(data) < _FIXED5.size + 7:
        raise DecodeError(f"container: {len(data)} bytes is shorter than a header")
    version = struct.unpack_from("<H", data, 4)[0]
    layout = _layout(version)
    if len(data) < layout.size + 7:
        raise DecodeError(f"container: {len(data)} bytes is shorter than a version {version} header")
    fixed = layout.unpack_from(data, 0)
    faint_rot, faint_pos = fixed[_N5:] if version >= 6 else (0, 1)
    (
        magic,
        version,
        hlen,
        map_id,
        seq,
        base_seq,
        gaussians,
        state_crc,
        sh_degree,
        n_levels,
        tile_bits,
        rot_bits,
        pos_step,
        tile_size,
        op_step,
        scale_step,
        dc_step,
        rest_step,
        n_tiers,
        t0,
        t1,
        t2,
        t3,
        faint_factor,
        faint_below,
    ) = fixed[:_N5]
    tiers = (t0, t1, t2, t3)
    if magic != MAGIC:
        raise DecodeError(f"container: wrong magic {bytes(magic)!r} (expected {MAGIC!r})")
    if version not in READS:
        raise DecodeError(
            f"container: unsupported version {version} (this decoder reads {READS[0]}..{VERSION})"
        )
    if not layout.size + 7 <= hlen <= 256 or hlen > len(data):
        raise DecodeError(f"container: header length {hlen} is invalid for {len(data)} bytes")
    (stored,) = struct.unpack_from("<I", data, hlen - 4)
    if crc32c(data[: hlen - 4]) != stored:
        raise DecodeError("container: header CRC-32C mismatch")
    n_chunks, flen = struct.unpack_from("<HB", data, layout.size)
    if layout.size + 3 + flen + 4 != hlen or flen > MAX_FRAME_ID:
        raise DecodeError("container: frame id length does not match the header length")
    try:
        frame = bytes(data[layout.size + 3 : layout.size + 3 + flen]).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("container: frame id is not UTF-8") from None
    if sh_degree > 3:
        raise DecodeError(f"container: SH degree {sh_degree} > 3")
    if not 1 <= n_levels <= 32:
        raise DecodeError(f"container: {n_levels} levels of detail (1..32 allowed)")
    if base_seq >= seq:
        raise DecodeError(f"container: base sequence {base_seq} is not before sequence {seq}")
    if n_tiers > MAX_ROT_TIERS or any(tiers[n_tiers:]):
        raise DecodeError(f"container: {n_tiers} rotation tiers (at most {MAX_ROT_TIERS}, unused entries 0)")
    try:
        params = QuantParams(
            pos_step,
            tile_bits,
            op_step,
            scale_step,
            rot_bits,
            dc_step,
            rest_step,
            tuple(tiers[:n_tiers]),
            faint_factor,
            faint_below,
            faint_rot,
            faint_pos,
        )
    except Exception as exc:  # EncodeError from the parameter checks
        raise DecodeError(f"container: bad quantisation parameters: {exc}") from None
    if not (tile_size > 0 and tile_size < 1e12):
        raise DecodeError(f"container: bad tile size {tile_size}")
    if n_chunks > MAX_CHUNKS:
        raise DecodeError(f"container: {n_chunks} chunks (at most {MAX_CHUNKS})")
    h = Header(map_id, seq, base_seq, gaussians, state_crc, sh_degree, n_levels, params, tile_size, frame)
    return h, n_chunks, hlen


def unpack(data) -> tuple[Header, list[Chunk]]:
    """Parse a whole container, checking every CRC. Raises :class:`DecodeError` only."""
    data = memoryview(bytes(data))
    h, n_chunks, off = unpack_header(data)
    r = Reader(data, "container")
    r.pos = off
    toc = r.raw(_TOC.size * n_chunks)
    if crc32c(toc) != r.u32():
        raise DecodeError("container: table of contents CRC-32C mismatch")
    entries = [_TOC.unpack_from(toc, i * _TOC.size) for i in range(n_chunks)]
    if sum(e[3] for e in entries) != r.remaining:
        raise DecodeError(
            f"container: chunks declare {sum(e[3] for e in entries)} bytes, "
            f"{r.remaining} follow the table of contents"
        )
    chunks = []
    for i, (ctype, level, _flags, length, crc) in enumerate(entries):
        body = r.raw(length)
        if crc32c(body) != crc:
            raise DecodeError(f"container: chunk {i} ({CHUNK_NAMES.get(ctype, ctype)}) CRC-32C mismatch")
        chunks.append(Chunk(ctype, level, body))
    return h, chunks


def reseal(data: bytes) -> bytes:
    """Recompute the header, TOC and chunk CRCs of (possibly edited) container bytes, as far as the
    structure can be followed. For fuzzing: mutations then reach the decoders behind the CRCs."""
    b = bytearray(data)
    if len(b) < _FIXED5.size + 7:
        return bytes(b)
    layout = _layout(struct.unpack_from("<H", b, 4)[0])
    hlen = struct.unpack_from("<H", b, 6)[0]
    if not layout.size + 7 <= hlen <= len(b):
        return bytes(b)
    struct.pack_into("<I", b, hlen - 4, crc32c(bytes(b[: hlen - 4])))
    n = struct.unpack_from("<H", b, layout.size)[0]
    toc_end = hlen + _TOC.size * n
    if toc_end + 4 > len(b):
        return bytes(b)
    pos = toc_end + 4
    for i in range(n):
        t, lv, fl, ln, _ = _TOC.unpack_from(b, hlen + i * _TOC.size)
        body = bytes(b[pos : pos + ln])
        _TOC.pack_into(b, hlen + i * _TOC.size, t, lv, fl, ln, crc32c(body))
        pos += ln
    struct.pack_into("<I", b, toc_end, crc32c(bytes(b[hlen:toc_end])))
    return bytes(b)
