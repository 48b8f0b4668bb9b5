"""Outside review (session 23, ff2): the ``gs-mapping`` CLI as users run it on the real recordings
in /work/shared/data, in a shell or a CI job: progress output when stderr is a log file or pipe,
Ctrl-C (SIGINT) mid-run, exit statuses. Each test runs the command as a separate process, as a
shell does, and compares with what the shell, tqdm or POSIX define."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
REALSENSE = "realsense_kitchen_rgbd"

# the mapper's quick settings (as test_real_inputs_mapping.FAST): a few optimiser steps a frame
FAST = """
/**:
  ros__parameters:
    mapper:
      device: cpu
      seeding: {stride: 6}
      optim: {iterations: 2, first_iterations: 4, refine_iterations: 0}
      calibration_frames: 2
"""


def _gs(*args: str, **kw) -> subprocess.Popen:
    """``gs-mapping ARGS`` as its own process (the console script's body), stderr a pipe: what a
    CI job or ``2> log`` gives the command (not a terminal)."""
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    code = "import sys; from gs_mapping.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        **kw,
    )


@pytest.fixture
def fast_config(tmp_path) -> Path:
    path = tmp_path / "fast.yaml"
    path.write_text(FAST)
    return path


def test_map_progress_is_not_redrawn_into_a_log(shared_data, tmp_path, fast_config):
    """tqdm redraws its bar with carriage returns; on a file or pipe (a CI log, ``2> log``) each
    redraw stays as text, a screenful of one line. tqdm's own rule (its ``disable=None``: "disable
    on non-TTY") and ``git``/``pip``/``curl`` show progress only when stderr is a terminal. Here
    stderr is a pipe: no carriage return may reach it; the command still succeeds."""
    proc = _gs(
        "map", str(shared_data / REALSENSE), "--out", str(tmp_path / "o"), "--max-frames", "2",
        "--holdout-every", "0", "--config", str(fast_config),
    )  # fmt: skip
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"\r" not in err, err.decode()[-500:]
    assert (tmp_path / "o" / "map.ply").is_file()
