"""Long-running commands' awaited lines reach a pipe while the command runs, with Python's default
block-buffered stdout (no PYTHONUNBUFFERED). This box sets PYTHONUNBUFFERED=1, so every other
test that reads a "ready" line from a child ran with unbuffered stdout; a user, a launch file or
a shell pipe (``| grep --line-buffered ready``, ``| tee``) does not, and a line printed without a
flush would sit in an 8 kB buffer until the process exits.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gs_mapping

SRC = Path(gs_mapping.__file__).resolve().parents[1]  # (the child runs the code imported here)
WAIT_S = 90.0  # a child's start (imports, a DDS participant) on a loaded 2-core box


def _spawn_buffered(*argv: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), *sys.path]), OMP_NUM_THREADS="1")
    env.pop("PYTHONUNBUFFERED", None)  # what a user has: stdout to a pipe is block-buffered
    return subprocess.Popen(
        [sys.executable, "-m", "gs_mapping", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def _line_while_running(proc: subprocess.Popen, timeout_s: float = WAIT_S) -> str:
    """The child's next stdout line, read while it still runs; '' if none came in time."""
    fd, buf, end = proc.stdout.fileno(), b"", time.monotonic() + timeout_s
    while b"\n" not in buf and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:  # the child exited: what came then was the exit's flush, not a live line
                break
            buf += chunk
    assert proc.poll() is None, (
        f"the child exited ({proc.returncode}) before its line: {proc.stderr.read()!r}"
    )
    return buf.decode().partition("\n")[0]


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out.decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(240)
def test_run_nodes_ready_line_reaches_a_pipe_while_it_runs_with_buffered_stdout():
    """``gs-mapping run map_receiver_node`` (DDS): its "ready" is read while it runs, not at exit,
    and its summary line follows the SIGTERM (a clean stop: status 0)."""
    proc = _spawn_buffered("run", "map_receiver_node", "--domain-id", "53")
    try:
        assert _line_while_running(proc) == "map_receiver_node: ready"
    finally:
        rc, out = _stop(proc)
    assert rc == 0, out
    assert out.startswith("summary: {"), out


@pytest.mark.timeout(240)
def test_routers_ready_line_reaches_a_pipe_while_it_runs_with_buffered_stdout():
    """``gs-mapping router``: the line a launch file or a script waits on before starting nodes."""
    pytest.importorskip("zenoh")
    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    proc = _spawn_buffered("router", "--listen", endpoint)
    try:
        line = _line_while_running(proc)
        assert line.startswith("zenoh router ") and f"ready, listening on {endpoint}" in line, line
    finally:
        _stop(proc)
