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

from gs_mapping.cli import COMMANDS

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
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", COLUMNS="200")
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
    pytest.importorskip("torch")  # (the mapper's)
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


def _help_options(command: str) -> dict[str, str]:
    """``gs-mapping COMMAND --help`` as a user reads it, each option's flag → its help text (the
    lines argparse's HelpFormatter writes after the flag, wrapped at a fixed width)."""
    import re

    proc = _gs(command, "--help")  # (COLUMNS: argparse wraps at $COLUMNS)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    options: dict[str, str] = {}
    flag = None
    for line in out.decode().split("options:", 1)[1].splitlines():
        m = re.match(r"^  (-[-\w]+)[^ ]*(?:, (--[-\w]+))?(?: [^ ]+)?(?:  +(.*))?$", line)
        if m:
            flag = m.group(2) or m.group(1)
            options[flag] = m.group(3) or ""
        elif flag and line.startswith("   "):
            options[flag] += " " + line.strip()
    return options


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_describes_every_option_and_its_default(command):
    """Each option in ``--help`` (argparse's own rendering, read as text) says what it does, and one
    whose value the command fills in when left out says which (as ``--rate``'s "default 1.0")."""
    from gs_mapping.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    defaults = {
        a.option_strings[-1]: a.default
        for a in sub.choices[command]._actions
        if a.option_strings and a.default not in (None, False, "", "==SUPPRESS==")
    }
    shown = _help_options(command)
    assert shown, command
    for flag, text in shown.items():
        assert text.strip(), f"{command} {flag}: no help text"
        if flag in defaults:
            assert "default" in text, f"{command} {flag}: default {defaults[flag]!r} not stated: {text}"
