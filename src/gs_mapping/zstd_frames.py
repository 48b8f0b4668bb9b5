"""zstd data read as the reference library's ``ZSTD_decompress`` reads it, with a bound.

A zstd stream may hold several frames, and skippable frames (RFC 8878 §3.1); ``ZstdDecompressor``
stops at the end of the first. :func:`inflate` reads them all, up to ``MAX_FRAMES``, and stops
before making more than its limit (a small file that inflates to gigabytes is refused before the
gigabytes exist).
"""

from __future__ import annotations

try:  # Python ≥ 3.14 ships zstd; before, the backport of the same module
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the Python version
    from backports import zstd  # type: ignore[import-not-found,no-redef]

ZstdError = zstd.ZstdError


# frames in one stream at most: each costs ~20 µs here (a decompressor of its own), so a file of
# many tiny frames would take minutes (800,000 empty ones in 6.4 MB: 16 s). Writers make one frame
# a stream (Niantic's), or one every few hundred kB to MB (zstd's seekable format), which 4096
# frames leave room for up to a gigabyte; skippable frames count too (they cost ~0.4 µs)
MAX_FRAMES = 4096


def _skippable(view: memoryview) -> bool:
    """Whether the frame at the start of ``view`` is a skippable one (magic 0x184D2A50..5F)."""
    return len(view) >= 4 and view[0] & 0xF0 == 0x50 and bytes(view[1:4]) == b"\x2a\x4d\x18"


def inflate(data: bytes, limit: int) -> bytes | None:
    """Every frame of ``data`` inflated in turn; None where that is more than ``limit`` bytes.
    :class:`ZstdError` for corrupt data, a truncated frame, bytes after the frames that are none,
    or more than ``MAX_FRAMES`` frames."""
    out = bytearray()
    view = memoryview(bytes(data))
    at = frames = 0
    while at < len(view):
        frames += 1
        if frames > MAX_FRAMES:
            raise ZstdError(f"more than {MAX_FRAMES} zstd frames in one stream")
        size = zstd.get_frame_size(view[at:])  # (each frame on its own: no copy of the rest per frame)
        if _skippable(view[at:]):  # nothing to inflate: no decompressor for it
            at += size
            continue
        d = zstd.ZstdDecompressor()
        out += d.decompress(view[at : at + size], max_length=limit - len(out) + 1)
        if len(out) > limit:
            return None
        if not d.eof:
            raise ZstdError("truncated zstd frame")
        at += size
    return bytes(out)
