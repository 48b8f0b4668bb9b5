"""File-system faults for the hostile-input tests: a read-only directory and a nearly full disk.

As root (CI containers, this machine) these are real: a read-only tmpfs and a 256 KiB tmpfs. Without
the right to mount, the equivalents: a directory without write permission, and a file-size limit
(RLIMIT_FSIZE, SIGXFSZ ignored) so writes beyond it fail with EFBIG as a full disk fails with ENOSPC.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import uuid
from pathlib import Path

import pytest


def _mount(where: Path, options: str) -> bool:
    """A tmpfs at ``where`` (made here). False, and ``where`` not made, where this process may not
    mount (not root, or root without CAP_SYS_ADMIN: a default Docker container)."""
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, timeout=10
    )
    if r.returncode != 0:
        where.rmdir()
    return r.returncode == 0


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


@contextlib.contextmanager
def read_only_dir(base: Path, seed_files: dict[str, bytes] | None = None):
    """A directory whose file system (or permissions) refuses writes; ``seed_files`` are put in first."""
    where = base / f"ro-{uuid.uuid4().hex[:6]}"
    if _mount(where, "size=1m,mode=0755"):
        for name, data in (seed_files or {}).items():
            (where / name).write_bytes(data)
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, timeout=10)
        try:
            yield where
        finally:
            _umount(where)
        return
    where.mkdir(parents=True)
    for name, data in (seed_files or {}).items():
        (where / name).write_bytes(data)
    where.chmod(0o555)
    try:
        if os.access(where, os.W_OK):  # (root without the right to mount: mode bits do not stop it)
            pytest.skip("cannot make a directory that refuses writes here (root without mount)")
        yield where
    finally:
        where.chmod(0o755)


@contextlib.contextmanager
def full_disk_dir(base: Path, size_bytes: int = 256 * 1024, seed_files: dict[str, bytes] | None = None):
    """A directory where writes beyond ~``size_bytes`` in all fail; ``seed_files`` are written first.

    Yields (path, kind): kind is "tmpfs" (ENOSPC) or "rlimit" (EFBIG per file, process-wide limit
    held only inside the block).
    """
    where = base / f"full-{uuid.uuid4().hex[:6]}"
    if _mount(where, f"size={max(size_bytes // 1024, 16)}k,mode=0755"):
        for name, data in (seed_files or {}).items():
            (where / name).write_bytes(data)
        try:
            yield where, "tmpfs"
        finally:
            _umount(where)
        return
    where.mkdir(parents=True)
    for name, data in (seed_files or {}).items():
        (where / name).write_bytes(data)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size_bytes, old_limit[1]))
    try:
        yield where, "rlimit"
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
