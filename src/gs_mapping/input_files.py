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
from pathlib import Path
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
    """Bytes a new allocation can take without swapping or the out-of-memory killer: the kernel's
    ``MemAvailable``, or less where this process's cgroup (a container's ``--memory``, a service's
    ``MemoryMax=``, a Kubernetes limit) has less room (:func:`cgroup_memory_room`; MemAvailable is
    the host's there). None where neither is known (not Linux)."""
    known = [x for x in (_mem_available(), cgroup_memory_room()) if x is not None]
    return min(known, default=None)


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# (limit, usage) files of cgroup v2 (memory.max is "max" without a limit) and v1
_CGROUP_V2 = ("memory.max", "memory.current", "inactive_file")
_CGROUP_V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def cgroup_memory_room(
    root: str | os.PathLike = "/sys/fs/cgroup", self_cgroup: str | os.PathLike = "/proc/self/cgroup"
) -> int | None:
    """Bytes this process's memory cgroup and its ancestors (each limit holds) can still take:
    the smallest limit less usage, reclaimable page cache (``inactive_file``) not counted as used,
    as the kernel reclaims it before the limit's out-of-memory kill. None without a limit."""
    try:
        with open(self_cgroup, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    rooms: list[int] = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and not controllers:  # v2 (unified; beside v1's in a hybrid layout)
            for base in (Path(root), Path(root) / "unified"):
                rooms += _rooms_up(base, path, _CGROUP_V2)
        elif "memory" in controllers.split(","):
            rooms += _rooms_up(Path(root) / "memory", path, _CGROUP_V1)
    return min(rooms, default=None)


def _rooms_up(base: Path, path: str, files: tuple[str, str, str]) -> list[int]:
    """Limit less usage in the cgroup folder ``base/path`` and each folder above it up to ``base``.
    Inside a container's cgroup namespace ``base`` itself is the process's cgroup (the path named
    is not under it)."""
    here = base / path.strip("/")
    if not here.is_dir():
        here = base
    rooms = []
    for folder in [here, *here.parents]:
        try:
            limit_text = (folder / files[0]).read_text().strip()
            usage = int((folder / files[1]).read_text())
            if limit_text != "max":
                rooms.append(int(limit_text) - max(0, usage - _stat(folder / "memory.stat", files[2])))
        except (OSError, ValueError):
            pass  # (no such files at this level: no limit here)
        if folder == base:
            break
    return rooms


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


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
