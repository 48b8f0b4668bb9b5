"""A writer started and caught mid-write, for the tests of what a killed run leaves behind: a
command (``gs-mapping world``, say) run with its output discarded until a temp folder of its own
(``.NAME.<8 characters>.partial``, tempfile's names) appears beside its output."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def start_until_partial(
    cmd: list[str],
    folder: Path,
    env: dict,
    *,
    cwd: Path | None = None,
    pattern: str = ".w.????????.partial",
    known: frozenset[Path] | set[Path] = frozenset(),
    timeout: float = 60.0,
) -> tuple[subprocess.Popen, Path | None]:
    """``cmd`` started (in ``cwd``), then polled until ``folder`` holds a ``pattern`` entry not in
    ``known``, for at most ``timeout`` s. Returns the running process, which the caller stops and
    reaps, and that entry (None if none came)."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = set(folder.glob(pattern)) - set(known)
            if new:
                return p, min(new)
            time.sleep(0.01)
        return p, None
    except BaseException:  # (interrupted while waiting: no writer left running)
        p.kill()
        p.wait()
        raise
