"""zstd data read as the reference library's ``ZSTD_decompress`` reads it, with a bound.

A zstd stream may hold several frames, and skippable frames (RFC 8878 §3.1); ``ZstdDecompressor``
stops at the end of the first. :func:`inflate` reads them all, and stops before making more than
its limit (a small file that inflates to gigabytes is refused before the gigabytes exist).
"""

from __future__ import annotations

try:  # Python ≥ 3.14 ships zstd; before, the backport of the same module
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the Python version
    from backports import zstd  # type: ignore[import-not-found,no-redef]

ZstdError = zstd.ZstdError


def inflate(data: bytes, limit: int) -> bytes | None:
    """Every frame of ``data`` inflated in turn; None where that is more than ``limit`` bytes.
    :class:`ZstdError` for corrupt data, a truncated frame, or bytes after the frames that are none."""
    out = bytearray()
    view = memoryview(bytes(data))
    at = 0
    while at < len(view):
        size = zstd.get_frame_size(view[at:])  # (each frame on its own: no copy of the rest per frame)
        d = zstd.ZstdDecompressor()
        out += d.decompress(view[at : at + size], max_length=limit - len(out) + 1)
        if len(out) > limit:
            return None
        if not d.eof:
            raise ZstdError("truncated zstd frame")
        at += size
    return bytes(out)
