"""The mapper on the real 7-Scenes kitchen bag (short runs) and the `gs-mapping map` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gs_mapping.cli import main
from gs_mapping.mapping import IncrementalMapper, MapperConfig, read_frames
from gs_mapping.ply import load_ply


def _fast_cfg() -> MapperConfig:
    cfg = MapperConfig()
    cfg.device = "cpu"
    cfg.backend = "cpu"
    cfg.seeding.stride = 4
    cfg.optim.iterations = 2
    cfg.optim.first_iterations = 2
    cfg.optim.refine_iterations = 0
    return cfg


@pytest.fixture(scope="module")
def kitchen_frames(kitchen_bag):
    from conftest import use_kitchen_topics

    topics = MapperConfig().topics
    use_kitchen_topics(topics)  # (the bag's realsense-ros 4.54 names, not today's defaults)
    return list(read_frames(kitchen_bag, topics))[:10]


def test_optimisation_improves_over_initial_map(kitchen_frames):
    torch.manual_seed(0)
    cfg = _fast_cfg()
    cfg.optim.first_iterations = 0
    m = IncrementalMapper(cfg, "cpu")
    f0 = kitchen_frames[0]
    m.add_frame(f0)  # seeded only
    initial = m.evaluate(f0)
    m.optimizer.run(m.params, list(m.window), 12, m.rng)
    m.params.sync_to(m.gmap)
    after = m.evaluate(f0)
    assert after["psnr"] > initial["psnr"] + 0.5, (initial["psnr"], after["psnr"])
    assert after["ssim"] > initial["ssim"]
    assert after["depth_l1_m"] < 0.1


def test_cli_short_run_writes_valid_outputs(kitchen_bag, tmp_path, capsys):
    cfg_file = tmp_path / "mapper.yaml"
    cfg_file.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      backend: cpu\n"
        "      seeding: {stride: 4}\n"
        "      optim: {iterations: 2, first_iterations: 2, refine_iterations: 2}\n"
    )
    out = tmp_path / "out"
    rc = main(
        [
            "map",
            str(kitchen_bag),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--holdout-every",
            "5",
            "--config",
            str(cfg_file),
            "--max-frames",
            "10",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert "held-out PSNR" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    for key in ("frames", "keyframes", "skipped", "gaussians", "seconds_per_keyframe_p50", "device"):
        assert key in m
    assert m["frames"] == 10 and m["skipped"] == 0 and m["device"] == "cpu"
    assert m["mapping_frames"] == 8 and 1 <= m["keyframes"] <= 8
    h = m["heldout"]
    assert h["views"] == 2 and [v["index"] for v in h["per_view"]] == [4, 9]
    assert 0 < h["ssim"] <= 1 and 0 <= h["depth_l1_m"] < 0.3
    # Each view's PSNR recomputed from its PNG (rendered | real, 8-bit) by plain numpy, and compared
    # with what a flat image of the frame's mean colour scores: the map must beat it clearly.
    for v in h["per_view"]:
        both = np.asarray(Image.open(out / "heldout" / f"{v['index']:06d}.png"), np.float64) / 255.0
        rendered, real = both[:, : both.shape[1] // 2], both[:, both.shape[1] // 2 :]
        ours = -10 * np.log10(np.mean((rendered - real) ** 2))
        flat = -10 * np.log10(np.mean((real - real.reshape(-1, 3).mean(0)) ** 2))
        assert abs(ours - v["psnr"]) < 0.2, (ours, v["psnr"])
        assert v["psnr"] > flat + 3.0, (
            f"view {v['index']}: {v['psnr']:.2f} dB, a flat image scores {flat:.2f}"
        )
    assert h["psnr"] == pytest.approx(np.mean([v["psnr"] for v in h["per_view"]]))
    # progressive prefixes (default 4 levels): one PSNR per prefix, the last is the whole map's
    assert len(h["psnr_levels"]) == 4 and h["psnr_levels"][-1] == pytest.approx(h["psnr"])
    assert sum(h["level_fractions"]) == pytest.approx(1.0) and h["level_fractions"][0] < 0.2
    g = load_ply(out / "map.ply")
    assert len(g) == m["gaussians"] > 1000
    g.validate()
    pngs = sorted((out / "heldout").glob("*.png"))
    assert [p.name for p in pngs] == ["000004.png", "000009.png"]
    assert Image.open(pngs[0]).size == (640, 240)  # rendered | real


@pytest.mark.parametrize(
    "argv, message",
    [
        (["map", "/nonexistent/bag", "--out", "{tmp}/o"], "no such bag"),
        (["map", "{bag}", "--out", "{tmp}/o", "--color-topic", "/nope"], "no topic /nope"),
        (["map", "{bag}", "--out", "{tmp}/o", "--holdout-every", "1"], "--holdout-every"),
        (["map", "{bag}", "--out", "{tmp}/o", "--config", "{tmp}/bad.yaml"], "unknown key 'itterations'"),
    ],
)
def test_cli_errors_are_one_line(kitchen_bag, tmp_path, capsys, argv, message):
    (tmp_path / "bad.yaml").write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      optim: {itterations: 3}\n"
    )
    argv = [a.format(bag=kitchen_bag, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert err.startswith("gs-mapping map: error:")
