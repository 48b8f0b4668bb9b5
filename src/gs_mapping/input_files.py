"""Input files: read whole, and only what can end.

A scene, a container or a SOG image is read into memory whole. A name that points at a device, a
pipe or a socket (``/dev/zero`` linked as ``scene.ply``) would be read forever, so only regular
files are read; the check is on the opened file (``fstat``), not on the name, so nothing can swap
it in between. Opening does not block on a pipe without a writer (``O_NONBLOCK``).

Before reading a scene whose header names far more Gaussians than its bytes hold (SPZ and SOG
compress a constant to almost nothing), :func:`check_room` refuses what would not fit in the memory
this machine has free, in one line, instead of running into the out-of-memory killer.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from .errors import MapError


class NotRegularFile(OSError):
    """The name is a device, a pipe, a socket or a directory, not a file."""

    def __init__(self, path) -> None:
        super().__init__(errno.EINVAL, "not a regular file", os.fspath(path))


def open_regular(path) -> BinaryIO:
    """``path`` opened for binary reading if it is a regular file; :class:`NotRegularFile` for
    anything else, any other ``OSError`` as the system gives it."""
    fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        raise NotRegularFile(path)
    return fh


def read_bytes(path, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular`). ``limit``: more bytes than
    this raise :class:`MapError` before they are read."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if limit is not None and size > limit:
            raise MapError(f"{path}: {size} bytes (limit {limit})")
        return fh.read()


# what reading and converting take at their peak: the decoded arrays, the map's own copy, the
# readers' float64 temporaries (some per Gaussian whatever its SH) and the written file's bytes.
# Measured above the process's start (2026-12-04, a SOG of a million constant Gaussians): SH 0 read
# 367 B a Gaussian (map 65 B); SH 3 read 778, read + PLY write 1,180 (map 245 B). 3 × the map's
# bytes, the rule before, let a 10 kB SOG naming 2^26 Gaussians past the check on a 24 GB machine
# and then need ~24 GB. test_formats_hostile2 measures it.
PEAK_PER_MAP_BYTE = 4
PEAK_PER_GAUSSIAN = 240


def peak_bytes(n: int, sh_degree: int) -> int:
    """What reading or converting ``n`` Gaussians of SH ``sh_degree`` may take at its peak."""
    return PEAK_PER_MAP_BYTE * map_bytes(n, sh_degree) + PEAK_PER_GAUSSIAN * n


def map_bytes(n: int, sh_degree: int) -> int:
    """Bytes of a GaussianMap of ``n`` Gaussians: float32 means, quaternion, scales, opacity, SH,
    uint64 id and uint8 level."""
    return n * (4 * (3 + 4 + 3 + 1 + 3 * (sh_degree + 1) ** 2) + 8 + 1)


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can take without swapping (``MemAvailable``); None
    where that is not known (not Linux)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_room(n: int, sh_degree: int, source) -> None:
    """:class:`MapError` when reading ``n`` Gaussians of SH ``sh_degree`` would need more memory
    than is available."""
    need = peak_bytes(n, sh_degree)
    free = available_memory()
    if free is not None and need > free:
        raise MapError(
            f"{source}: {n} Gaussians (SH degree {sh_degree}) need about {need / 2**30:.1f} GiB to "
            f"read; {free / 2**30:.1f} GiB of memory is available"
        )
