"""gs-mapping map against faults: an interrupted run (kill -9 at random points) leaves the old
outputs or the complete new ones, never a mix; an existing output directory needs --overwrite; a
full disk at the end loses no mapping work (the map is saved elsewhere and the error says where)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from hostile_cases import run_cli
from hostile_fs import full_disk_dir

from gs_mapping.ply import load_ply

FAST = (
    "/**:\n  ros__parameters:\n    mapper:\n      backend: cpu\n      seeding: {stride: 8}\n"
    "      optim: {iterations: 1, first_iterations: 1, refine_iterations: 0}\n"
)


def _argv(bag, out, cfg, frames=6, *extra):
    return [
        "map",
        str(bag),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--config",
        str(cfg),
        "--max-frames",
        str(frames),
        "--no-progress",
        *extra,
    ]


def _complete(out) -> tuple[int, str]:
    """(Gaussians, metrics text) of a complete output directory; AssertionError for a mix."""
    m = json.loads((out / "metrics.json").read_text())
    assert m["gaussians"] == len(load_ply(out / "map.ply")), "map.ply and metrics.json from different runs"
    return m["gaussians"], (out / "metrics.json").read_text()


@pytest.mark.shared_data
def test_existing_output_needs_overwrite_and_never_the_bag(kitchen_bag, tmp_path):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(FAST)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    o = run_cli(_argv(kitchen_bag, out, cfg), "map-output", inputs=[kitchen_bag], must_name=[str(out)])
    assert not o.violation and o.result == "error" and "exists already" in o.stderr
    o = run_cli(_argv(kitchen_bag, out, cfg, 6, "--overwrite"), "map-output", inputs=[kitchen_bag])
    assert not o.violation and o.result == "error" and "notes.txt" in o.stderr  # not only our outputs
    assert (out / "notes.txt").read_text() == "mine"
    o = run_cli(_argv(kitchen_bag, kitchen_bag, cfg, 6, "--overwrite"), "map-output", inputs=[kitchen_bag])
    assert not o.violation and o.result == "error" and "input" in o.stderr


@pytest.mark.shared_data
def test_full_disk_at_the_end_keeps_the_map(kitchen_bag, tmp_path):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(FAST)
    with full_disk_dir(tmp_path, 48 * 1024) as (d, _):
        o = run_cli(
            _argv(kitchen_bag, d / "out", cfg, 4, "--holdout-every", "0"),
            "map-full-disk",
            inputs=[kitchen_bag],
            must_name=[str(d / "out")],
        )
        assert not o.violation, o.violation
        assert o.result == "error" and "saved to" in o.stderr, o.stderr
        assert not (d / "out").exists() and not list(d.iterdir())  # nothing half-written left
    rescued = o.stderr.split("saved to ")[1].split(" instead")[0]
    assert len(load_ply(rescued)) > 0
    os.unlink(rescued)


@pytest.mark.slow
@pytest.mark.shared_data
def test_kill_9_at_random_points_leaves_old_or_new_never_a_mix(kitchen_bag, tmp_path):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(FAST)
    out = tmp_path / "out"
    assert run_cli(_argv(kitchen_bag, out, cfg, 4), "map-kill").result == "ok"
    old = _complete(out)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    rng = random.Random(21)
    outcomes = []
    for _ in range(4):
        p = subprocess.Popen(
            [sys.executable, "-m", "gs_mapping", *_argv(kitchen_bag, out, cfg, 8, "--overwrite")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(2.0, 14.0))  # import, mapping, evaluation or writing
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        now = _complete(out)
        outcomes.append("old" if now == old else "new")
        old = now
    assert set(outcomes) <= {"old", "new"}
    leftovers = [x.name for x in tmp_path.iterdir() if x.name.startswith(".out.")]
    assert len(leftovers) <= 4  # hidden temp directories of killed runs, never under the output name
