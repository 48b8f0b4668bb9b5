"""A command whose dependency this install lacks ends in one line naming the package, exit 2.

ROS 2 Humble's system Python has no torch (rosdep brings none; the Humble run of ``make test`` has
none either), and ``map``, ``hd-train`` and ``hd-predict`` need it. The test runs where torch is
really absent (it skips where torch imports): the Humble venv."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BAG = ROOT.parent / "shared" / "data" / "7scenes_kitchen_rgbd"


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed here")
@pytest.mark.parametrize("argv", [["map", str(BAG)], ["hd-train"], ["hd-predict", str(BAG)]])
def test_a_command_needing_a_missing_package_says_so_in_one_line(tmp_path, argv):
    argv = argv + ["--out", str(tmp_path / "out")]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", *argv], capture_output=True, text=True, env=env, timeout=120
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr[-1500:]
    assert "Traceback" not in r.stderr
    assert (
        lines[-1]
        == f"gs-mapping {argv[0]}: error: needs the Python package 'torch', which is not installed here"
    )
    assert not (tmp_path / "out").exists()
