"""Long-running commands with Python's default buffered standard streams (no PYTHONUNBUFFERED):
their awaited lines reach a pipe while they run, and a stream that cannot be written does not
cost the exit status. This box sets PYTHONUNBUFFERED=1, so every other
test that reads a "ready" line from a child ran with unbuffered stdout; a user, a launch file or
a shell pipe (``| grep --line-buffered ready``, ``| tee``) does not, and a line printed without a
flush would sit in an 8 kB buffer until the process exits. (A hang-up with stderr on a gone
terminal, buffered and not: test_outside_session24c.)
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


def _spawn_buffered(*argv: str, **popen) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), *sys.path]), OMP_NUM_THREADS="1")
    env.update(popen.pop("env", {}))
    env.pop("PYTHONUNBUFFERED", None)  # what a user has: stdout (and stderr) off a terminal are buffered
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen([sys.executable, "-m", "gs_mapping", *argv], env=env, **popen)


def _line_while_running(proc: subprocess.Popen, timeout_s: float = WAIT_S, stream=None) -> str:
    """The child's next stdout (or ``stream``) line, read while it still runs; '' if none came in time."""
    fd, buf, end = (stream or proc.stdout).fileno(), b"", time.monotonic() + timeout_s
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


def test_a_progress_reader_that_leaves_costs_no_run_with_buffered_stderr(tmp_path):
    """``gs-mapping world … 2>&1 >/dev/null | head -1``: the progress lines' reader leaves after
    one; the next line fails (EPIPE, passed over: a log that went away costs no run) but stayed in
    the buffered stderr, the flush at exit failed on it and a complete bag came with exit 120."""
    out = tmp_path / "w"
    p = _spawn_buffered(
        "world", "--out", str(out), "--frames", "60", "--size", "320x180",
        stdout=subprocess.DEVNULL, env={"GS_MAPPING_PROGRESS_INTERVAL": "0"},
    )  # fmt: skip
    try:
        first = _line_while_running(p, stream=p.stderr)
        assert first, "no line on stderr while world ran"
        p.stderr.close()  # the reader leaves; world has lines to say still (a line each tenth)
        rc = p.wait(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 0
    assert (out / "metadata.yaml").is_file() and (out / "w.mcap").stat().st_size > 0


@pytest.mark.timeout(240)
def test_a_log_reader_that_leaves_costs_no_run_with_buffered_stderr():
    """``gs-mapping run map_receiver_node 2>&1 >/dev/null | head -1``: after its reader left, the
    node logs a rejected message; logging passes the write error over (its handleError) but the
    line stayed in the buffered stderr, and the flush at exit failed on it: exit 120 after a clean
    stop by SIGTERM."""
    import numpy as np

    from gs_mapping.nodes.context import RELIABLE_QOS
    from gs_mapping.runtime.dds import DdsContext

    domain = 59
    p = _spawn_buffered("run", "map_receiver_node", "--domain-id", str(domain))
    ctx = DdsContext("mapper_node", domain_id=domain)
    try:
        assert _line_while_running(p, stream=p.stderr), "no log line while the node ran"
        p.stderr.close()  # the reader leaves
        pub = ctx.create_publisher("/mapper_node/map_delta", "std_msgs/msg/UInt8MultiArray", RELIABLE_QOS)
        ctx.spin(until=lambda: pub.subscription_count() > 0, timeout_s=30)
        assert pub.subscription_count() > 0, "the node's subscription was not matched"
        garbage = ctx.factory.make("std_msgs/msg/UInt8MultiArray", data=np.full(64, 7, np.uint8))
        for _ in range(3):
            pub.publish(garbage)
            ctx.spin_once(0.3)
        time.sleep(1.0)
        rc, out = _stop(p)
    finally:
        ctx.close()
        if p.poll() is None:
            p.kill()
            p.wait()
    summary = out.strip().splitlines()[-1]
    assert '"containers_rejected": 3' in summary, summary  # (each rejection is a logged line)
    assert rc == 0
