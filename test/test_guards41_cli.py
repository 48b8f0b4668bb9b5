"""Mutation round 41 (cli): breakages that passed every test, each guarded against the real thing."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from hostile_cases import one_error_line

from gs_mapping.cli import main, seed


def test_a_seed_is_bounded_by_int64_as_numpy_and_the_bags_keep_it():
    """``--seed`` (cli.seed) takes what an int64 holds, as bags and checkpoints keep it: int64's own
    maximum is taken, one past it refused. Accepting 2**63 (``<=`` at the bound) passed every test."""
    top = int(np.iinfo(np.int64).max)
    assert seed(str(top)) == top
    np.random.default_rng(top)  # (numpy takes it)
    with pytest.raises(OverflowError):
        np.int64(top + 1)  # (what an int64 field would do with one past it)
    with pytest.raises(argparse.ArgumentTypeError):
        seed(str(top + 1))


def test_world_refuses_a_seed_past_int64_in_one_line(tmp_path, capsys):
    out = tmp_path / "bag"
    argv = ["world", "--out", str(out), "--frames", "2", "--size", "32x24", "--no-progress"]
    try:
        rc = main([*argv, "--seed", str(2**63)])
    except SystemExit as exc:  # (argparse's own refusals)
        rc = exc.code
    assert rc == 2
    one_error_line(capsys, "--seed")
    assert not out.exists()
