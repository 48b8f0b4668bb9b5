"""A Ctrl-C caught while an ``exec()`` of a string ran (session 40).

CPython marks a KeyboardInterrupt that leaves any ``exec()`` of a string as unhandled even when a
caller catches it, and under ``python -m`` kills the process by SIGINT after main returned,
whatever main returned. Dataclasses are made by such an exec, at imports: CI's
`test_ctrl_c37` saw `python -m gs_mapping run map_server_node` print "interrupted" and then die by
SIGINT (-2, not 130) when the Ctrl-C landed in a rosbags import (found with a gdb watchpoint on the
mark). These run the real interpreter with ``-m``, as that test and `python -m gs_mapping` do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import SHARED_DATA

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

# The CLI's `info` on a real scene, with SIGINT raised when the first code run by an exec() of a
# string starts once the command's run() has begun: the KeyboardInterrupt leaves that exec.
_CLI = textwrap.dedent(
    """
    import signal, sys
    from gs_mapping.cli import main

    state = []

    def profile(frame, event, arg):
        if event != "call":
            return
        if not state and frame.f_code.co_name == "run" and frame.f_globals["__name__"].startswith("gs_mapping.cli."):
            state.append("in run")
        elif state == ["in run"] and frame.f_code.co_filename == "<string>":
            state.append("sent")
            sys.stderr.write("sent in exec\\n")
            signal.raise_signal(signal.SIGINT)

    sys.setprofile(profile)
    rc = main(sys.argv[1:])
    sys.setprofile(None)
    sys.exit(rc)
    """
)

# A node's entry point (what `ros2 run` starts) stopped by a Ctrl-C that left an exec: as the
# KeyboardInterrupt a dataclass made at the node's import gives.
_ENTRY_POINT = textwrap.dedent(
    """
    import sys
    import gs_mapping.nodes.registry as registry
    from gs_mapping.runtime.rclpy_runtime import _main

    def interrupted(name):
        exec("raise KeyboardInterrupt")

    registry.node_class = interrupted
    sys.exit(_main("map_server_node", torch_threads=False))
    """
)


def _run_as_module(tmp_path: Path, name: str, text: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / f"{name}.py").write_text(text)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(HERE), str(tmp_path)]))
    return subprocess.run(
        [sys.executable, "-m", name, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )


def test_the_cli_interrupted_in_an_exec_exits_130(tmp_path):
    p = _run_as_module(tmp_path, "ctrl_c_in_exec", _CLI, "info", str(SHARED_DATA / "splats" / "guitar.ply"))
    assert "sent in exec" in p.stderr, p.stderr[-2000:]  # (the Ctrl-C did land in an exec)
    assert p.returncode == 130, (p.returncode, p.stderr[-2000:])  # not -2: killed by SIGINT
    assert p.stderr.rstrip().endswith("gs-mapping info: interrupted"), p.stderr[-2000:]
    assert "Traceback" not in p.stderr


def test_a_node_entry_point_interrupted_in_an_exec_exits_130(tmp_path):
    p = _run_as_module(tmp_path, "entry_in_exec", _ENTRY_POINT)
    assert p.returncode == 130, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr
