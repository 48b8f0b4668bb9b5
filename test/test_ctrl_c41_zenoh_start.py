"""Ctrl-C while a Zenoh node's context is being made (#40's CI: `run map_server_node`, Ctrl-C right
after its "no Zenoh router reachable" warning, printed "interrupted" and then never ended). The
KeyboardInterrupt left ``ZenohContext.__init__`` after the session and its graph subscriber were
open; the caller had no context to close, and the subscriber's callback and the session's threads
kept the process alive. Now the context closes its session on the way out, whatever interrupts it.
Real Zenoh session (eclipse-zenoh); the interrupt raised at given points of the start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("zenoh")

SRC = Path(__file__).resolve().parent.parent / "src"

_CHILD = textwrap.dedent(
    """
    import sys
    from gs_mapping.runtime.zenoh_runtime import ZenohContext

    def interrupt_at(frame, event, arg):
        if event == "call" and frame.f_code.co_name == sys.argv[1]:
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(interrupt_at)
    try:
        ZenohContext("n", "", 41, connect=["tcp/127.0.0.1:1"], listen=["tcp/127.0.0.1:0"]).close()
        print("built", flush=True)  # (the interrupt point was never reached)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    """
)


@pytest.mark.parametrize("where", ["_new_id", "_start", "keyexpr"])
def test_an_interrupt_during_the_zenoh_start_ends_the_process(where):
    """Interrupted after the session opened (as the rest of the start begins, at the node's id, at
    its liveliness token's key): "interrupted" and the process ends, not kept alive by the session."""
    try:
        p = subprocess.run(
            [sys.executable, "-c", _CHILD, where],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, PYTHONPATH=str(SRC), PYTHONDONTWRITEBYTECODE="1"),
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"still running 60 s after the interrupt at {where}: {exc.stdout!r}")
    assert p.returncode == 0 and p.stdout.split() in (["interrupted"], ["built"]), (
        p.stdout,
        p.stderr[-2000:],
    )
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
