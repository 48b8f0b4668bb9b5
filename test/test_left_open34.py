"""Session 34: the items session 33 noticed and left (note33.md, "Noticed, left alone").

- ``gs-mapping world --rate 1e-300`` was refused as "world length must be in (0, 50000] m" naming no
  option; every numeric option of ``world`` now names itself when refused.
- ``world_sample`` with a patch not centred on the vehicle (x −45…30 m) gave ground truth over the
  symmetric window (to +45 m): now exactly the patch.
- ``hd-train`` left ``.NAME.hd-train.lock`` behind after every run; took any existing folder as
  ``--out`` (a bag's).
- Topic choice paired a ZED's right colour image with the registered depth of its left camera (one
  namespace): the frame ids of the bag's first messages now say which camera a registered depth is of.
"""

from __future__ import annotations

import math

import pytest

from gs_mapping.cli import main


def _one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------------
# world: each numeric option refused by its name


WORLD_REFUSALS = [
    ("--rate", ["1e-300"]),  # (a drive longer than any world)
    ("--rate", ["5e-324"]),  # (its length overflows)
    ("--rate", ["0.0001"]),
    ("--rate", ["nan"]),
    ("--rate", ["inf"]),
    ("--rate", ["0"]),
    ("--rate", ["-10"]),
    ("--rate", ["1e300"]),
    ("--speed", ["nan"]),
    ("--speed", ["inf"]),
    ("--speed", ["0"]),
    ("--speed", ["-1"]),
    ("--speed", ["1e300"]),
    ("--frames", ["0"]),
    ("--frames", ["-3"]),
    ("--frames", ["99999999999999999999"]),
    ("--bev-range", ["nan", "15"]),
    ("--bev-range", ["30", "inf"]),
    ("--bev-range", ["0", "15"]),
    ("--bev-range", ["30", "-15"]),
    ("--supersample", ["0"]),
    ("--supersample", ["-1"]),
    ("--supersample", ["99999999999999999999"]),
    ("--workers", ["-1"]),
    ("--size", ["0x0"]),
    ("--size", ["99999999999999999999x10"]),
    ("--seed", ["-1"]),
    ("--seed", ["nan"]),
    ("--seed", ["1e300"]),
]


@pytest.mark.parametrize(("option", "values"), WORLD_REFUSALS, ids=lambda v: str(v))
def test_world_refuses_each_numeric_option_naming_it(tmp_path, capsys, option, values):
    """One line, exit 2, naming the option; nothing written. ``--rate 1e-300`` (with the default 100
    frames at 8 m/s: an 8e300 m drive) said only "world length must be in (0, 50000] m"."""
    out = tmp_path / "bag"
    argv = ["world", "--out", str(out), "--frames", "2", "--size", "32x24", "--no-progress"]
    try:
        rc = main([*argv, option, *values])
    except SystemExit as exc:  # (argparse's own refusals)
        rc = exc.code
    assert rc == 2
    _one_error_line(capsys, option)
    assert not out.exists()


def test_a_slow_rate_is_refused_where_the_drive_is_longer_than_a_world(tmp_path, capsys):
    """The bound is the world's (50 km of road, the margins included): 0.0016 Hz for 2 frames at
    8 m/s is 5,000 m + 100 m of margins, made; 0.00015 Hz is 53,333 m + 100 m, refused by --rate."""
    from gs_mapping.world.trajectory import route_length
    from gs_mapping.world.world import MAX_LENGTH

    assert route_length(2, 0.0016, 8.0) == pytest.approx(5_100.0)
    assert route_length(2, 0.00015, 8.0) == pytest.approx(8.0 / 0.00015 + 100.0)
    assert route_length(2, 0.00015, 8.0) > MAX_LENGTH == 50_000.0
    assert math.isinf(route_length(2, 5e-324, 8.0))
    argv = ["world", "--out", str(tmp_path / "b"), "--frames", "2", "--size", "32x24", "--no-progress"]
    assert main([*argv, "--rate", "0.00015"]) == 2
    said = _one_error_line(capsys, "--rate", "0.00015", "--frames 2", "--speed 8.0", "50000 m")
    assert "world length" not in said
    assert not (tmp_path / "b").exists()
