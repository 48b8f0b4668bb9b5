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


def test_replay_with_a_config_leaves_no_fleet_store_in_the_working_directory(
    shared_data, tmp_path, fast_config
):
    """``gs-mapping replay BAG --out OUT --config FILE`` with a file that does not name
    ``map_server_node.store_path`` (here: only the mapper's quick settings) runs the fleet server on
    the replay's own scratch store, as without ``--config``: the working directory (listed by the
    OS) gains no ``fleet_map.sqlite3``, which would otherwise carry one replay's global map into the
    next one run there."""
    work = tmp_path / "work"
    work.mkdir()
    proc = _gs(
        "replay", str(shared_data / REALSENSE), "--out", str(tmp_path / "r"), "--config", str(fast_config),
        "--nodes", "map_server_node", cwd=work,
    )  # fmt: skip
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert sorted(os.listdir(work)) == []


def test_replay_keeps_a_fleet_store_the_config_names(shared_data, tmp_path):
    """A ``store_path`` the parameter file names is where the server's SQLite store goes (the user
    asked for it there): checked by opening it with Python's sqlite3."""
    import sqlite3

    store = tmp_path / "mine.sqlite3"
    config = tmp_path / "server.yaml"
    config.write_text(f"/**:\n  ros__parameters:\n    map_server_node:\n      store_path: {store}\n")
    proc = _gs(
        "replay", str(shared_data / REALSENSE), "--out", str(tmp_path / "r"), "--config", str(config),
        "--nodes", "map_server_node", cwd=tmp_path,
    )  # fmt: skip
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    with sqlite3.connect(store) as con:
        assert con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
