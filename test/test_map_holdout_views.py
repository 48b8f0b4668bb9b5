"""``gs-mapping map --holdout-views N``: mapper.holdout_views from the command line (the real
7-Scenes kitchen bag, a short run)."""

from __future__ import annotations

import json

import pytest

from gs_mapping.cli import main


def test_holdout_views_limits_the_views_evaluated(kitchen_bag, tmp_path, capsys):
    """6 frames, every 2nd held out: frames 1, 3 and 5 (0-based) are withheld from the mapper. With
    --holdout-views 2, two of them are evaluated, evenly spaced over the drive: the first and the last,
    1 and 5 (the default, 32, would evaluate all three)."""
    pytest.importorskip("torch")
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      backend: cpu\n      seeding: {stride: 8}\n"
        "      optim: {iterations: 1, first_iterations: 1, refine_iterations: 0}\n"
    )
    out = tmp_path / "out"
    argv = ["map", str(kitchen_bag), "--out", str(out), "--device", "cpu", "--config", str(cfg)]
    argv += ["--max-frames", "6", "--holdout-every", "2", "--holdout-views", "2", "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    h = json.loads((out / "metrics.json").read_text())["heldout"]
    assert h["held_out_frames"] == 3
    assert h["views"] == 2 and [v["index"] for v in h["per_view"]] == [1, 5]
    assert sorted(p.name for p in (out / "heldout").iterdir()) == ["000001.png", "000005.png"]


def test_a_negative_holdout_views_is_one_line(kitchen_bag, tmp_path, capsys):
    argv = ["map", str(kitchen_bag), "--out", str(tmp_path / "o"), "--holdout-views", "-1"]
    rc = main([*argv, "--max-frames", "1", "--no-progress"])  # (short, should it map after all)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--holdout-views" in err, err
    assert not (tmp_path / "o").exists()
