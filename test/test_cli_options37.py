"""A command's option given before the command (``gs-mapping --log-level x info BAG``): argparse took
its value for the command and said "invalid choice: 'x'" (or called a known option of the command
unrecognized); the one line now names the option, and for a command's own option where it goes."""

from __future__ import annotations

import subprocess
import sys

import pytest

PUT_AFTER = "is an option of the command {c}: put it after the command, as in gs-mapping {c} {o} …"


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--log-level", "x", "info", "B"], "unrecognized arguments: --log-level x"),  # (no command has it)
        (["-v", "--bogus=3", "x", "map", "B"], "unrecognized arguments: --bogus=3 x"),
        (["--out", "o", "map", "B"], "--out " + PUT_AFTER.format(c="map", o="--out")),
        (["--out=o", "map", "B"], "--out " + PUT_AFTER.format(c="map", o="--out")),
        (
            ["--overwrite", "map", "B", "--out", "o"],
            "--overwrite " + PUT_AFTER.format(c="map", o="--overwrite"),
        ),
        (["-v", "--config", "map", "map", "B"], "--config " + PUT_AFTER.format(c="map", o="--config")),
        (["--json", "info", "B"], "--json " + PUT_AFTER.format(c="info", o="--json")),
        (["--bogus", "info", "B"], "unrecognized arguments: --bogus"),  # (as before)
        (["mpa", "B"], "argument COMMAND: invalid choice: 'mpa'"),  # (a misspelt command: as before)
    ],
)
def test_an_option_before_the_command_is_named_in_one_line(argv, said, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", *argv], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"gs-mapping: error: {said}"), r.stderr
    assert "Traceback" not in r.stderr and list(tmp_path.iterdir()) == []


def test_top_options_before_the_command_still_work(tmp_path):
    """``-v`` / ``--verbose`` (and argparse's abbreviation ``--verb``) are gs-mapping's own."""
    for top in (["-v"], ["--verb"]):
        r = subprocess.run(
            [sys.executable, "-m", "gs_mapping", *top, "info", str(tmp_path / "none")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2 and r.stderr.startswith("gs-mapping info: error: "), r.stderr
        assert "no such bag" in r.stderr, r.stderr
