"""Benchmark: incremental mapping of the real 7-Scenes kitchen bag (CPU by default).

Writes bench/results/mapping.json and mapping.md: held-out PSNR / SSIM / depth L1 (every 5th frame
held out, never mapped), keyframes, Gaussians, seconds per keyframe (median, max), whole-bag time,
the configuration, and the machine (platform, CPUs, torch, device, load average before/after, since
the machine may be shared and timings then read pessimistic).

    .venv/bin/python bench/mapping.py [--bag DIR] [--device cpu] [--threads 2] [--config FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from common import save_text  # noqa: E402  (bench/ is the script folder)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BAG = REPO.parent / "shared" / "data" / "7scenes_kitchen_rgbd"

GOALS = {
    "heldout_psnr_db_min": 25.0,
    "depth_l1_m_max": 0.05,
    "whole_bag_s_max": 600.0,
    "seconds_per_keyframe_p50_max": 6.0,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bag", default=str(DEFAULT_BAG))
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU rasteriser workers (torch itself runs one intra-op thread: gs_mapping.cpu_threads)",
    )
    ap.add_argument("--config", default=None, help="ROS parameter YAML with a mapper section")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a mapper parameter (dotted, YAML value), e.g. optim.iterations=30",
    )
    ap.add_argument("--name", default="mapping", help="results file stem under bench/results")
    ap.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--out", default=None, help="keep the map/PNGs here (default: temporary)")
    ap.add_argument(
        "--no-calibrate-color",
        dest="calibrate_color",
        action="store_false",
        help="keep the bag's CameraInfo for colour (the kitchen bag's is the depth camera's, "
        "so by default the colour camera is calibrated: mapper calibrate_color)",
    )
    args = ap.parse_args(argv)

    import torch
    import yaml

    from gs_mapping import cpu_threads
    from gs_mapping.cli.topic_choice import fill_topics
    from gs_mapping.config_file import flatten, from_dict, load_section, to_dict, unflatten
    from gs_mapping.mapping.mapper_config import MapperConfig
    from gs_mapping.mapping.run import map_bag

    cpu_threads.configure(args.threads)  # torch 1 intra-op thread, the cores to the rasteriser
    cfg = load_section(args.config, "mapper", MapperConfig)
    cfg.calibrate_color = args.calibrate_color
    if args.set:
        flat = flatten(cfg)
        for item in args.set:
            key, _, value = item.partition("=")
            if key not in flat:
                sys.exit(f"unknown mapper parameter {key!r}")
            flat[key] = yaml.safe_load(value)
        cfg = from_dict(MapperConfig, unflatten(flat), where="--set")
    fill_topics(args.bag, cfg, {}, "bench.mapping")  # the bag's camera, found as `map` finds it
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        m = map_bag(args.bag, out, cfg, device=args.device, progress=True, max_frames=args.max_frames)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    h = m["heldout"]
    figures = {
        "heldout_psnr_db": h["psnr"],
        "heldout_ssim": h["ssim"],
        "heldout_depth_l1_m": h["depth_l1_m"],
        "heldout_views": h["views"],
        "heldout_coverage": h["coverage"],
        "heldout_psnr_levels_db": h.get("psnr_levels"),
        "level_fractions": h.get("level_fractions"),
        "frames": m["frames"],
        "keyframes": m["keyframes"],
        "skipped": m["skipped"],
        "gaussians": m["gaussians"],
        "seconds_per_keyframe_p50": m["seconds_per_keyframe_p50"],
        "seconds_refine": m["seconds_refine"],
        "cpu_seconds_per_keyframe_p50": m["cpu_seconds_per_keyframe_p50"],
        "cpu_seconds_mapping": m["cpu_seconds_mapping"],
        "seconds_per_keyframe_max": m["seconds_per_keyframe_max"],
        "whole_bag_s": wall,
        "optimisation": m["optimisation"],
    }
    met = {
        "heldout_psnr_db_min": h["psnr"] >= GOALS["heldout_psnr_db_min"],
        "depth_l1_m_max": h["depth_l1_m"] <= GOALS["depth_l1_m_max"],
        "whole_bag_s_max": wall <= GOALS["whole_bag_s_max"],
        "seconds_per_keyframe_p50_max": m["seconds_per_keyframe_p50"]
        <= GOALS["seconds_per_keyframe_p50_max"],
    }
    result = {
        "benchmark": "mapping: 7-Scenes kitchen RGB-D bag, hold out every 5th frame",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": 1,
            "raster_workers": args.threads,
            "device": m["device"],
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "bag": str(Path(args.bag).name),
        "config": to_dict(cfg),
        "figures": figures,
        "per_view": h["per_view"],
        "goals": GOALS,
        "goals_met": met,
    }
    res = Path(args.results_dir)
    res.mkdir(parents=True, exist_ok=True)
    save_text(res / f"{args.name}.json", json.dumps(result, indent=2) + "\n")

    def f(x, fmt):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    rows = [
        ("held-out PSNR (dB)", f(h["psnr"], ".2f"), "≥ 25", met["heldout_psnr_db_min"]),
        ("held-out SSIM", f(h["ssim"], ".3f"), "", None),
        ("held-out depth L1 (cm)", f(100 * h["depth_l1_m"], ".2f"), "≤ 5", met["depth_l1_m_max"]),
        ("whole bag (s)", f(wall, ".1f"), "≤ 600", met["whole_bag_s_max"]),
        (
            "s / keyframe, median",
            f(m["seconds_per_keyframe_p50"], ".2f"),
            "≤ 6",
            met["seconds_per_keyframe_p50_max"],
        ),
        ("s / keyframe, max", f(m["seconds_per_keyframe_max"], ".2f"), "", None),
        ("frames / keyframes / skipped", f"{m['frames']} / {m['keyframes']} / {m['skipped']}", "", None),
        ("Gaussians", str(m["gaussians"]), "", None),
    ]
    md = [
        f"# {result['benchmark']}",
        "",
        f"{result['machine']['platform']}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"(1 intra-op thread, {args.threads} rasteriser workers), device {m['device']}, load average before/after "
        f"{load_before[0]:.1f} / {load_after[0]:.1f} (shared machine: timings pessimistic)",
        "",
        "| figure | value | goal | met |",
        "|---|---|---|---|",
    ]
    md += [f"| {a} | {b} | {c} | {'' if d is None else ('yes' if d else 'no')} |" for a, b, c, d in rows]
    save_text(res / f"{args.name}.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
