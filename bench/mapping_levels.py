"""Benchmark: octree levels of detail (ProGS) on the real 7-Scenes kitchen bag, with and without the
multi-level loss.

For each variant the kitchen bag is mapped (``--calibrate-color`` as bench/mapping.py; every 5th
frame held out, never mapped), then each held-out view is rendered from levels <= l only, for every
l, against the real image: per-level held-out PSNR, plus the fraction of Gaussians per level and
the cumulative fraction (bytes of a progressive prefix are about proportional to it).

    OMP_NUM_THREADS=1 .venv/bin/python bench/mapping_levels.py [--max-frames 50] [--variants with,without,none]
        [--set levels.base_voxel_m=0.4 ...] [--parts DIR [--tag T]]   # one process per variant, then
    .venv/bin/python bench/mapping_levels.py --merge DIR --main with,without,none [--note TEXT ...]
    (the other parts in DIR are listed as tuning runs). ~5-7 CPU minutes per variant on the whole bag.

Writes bench/results/mapping_levels.json and .md (machine info from bench/common.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
DEFAULT_BAG = REPO.parent / "shared" / "data" / "7scenes_kitchen_rgbd"
# variant → (multi-level loss, levels on): "none" is the mapper without levels (count = 1), the
# reference for what levels + coarse discs cost the full map.
VARIANTS = {"with": (True, True), "without": (False, True), "none": (False, False)}


def build_config(sets: list[str], variant: str):
    import yaml

    from gs_mapping.config_file import flatten, from_dict, unflatten
    from gs_mapping.mapping.mapper_config import MapperConfig

    flat = flatten(MapperConfig())
    flat["calibrate_color"] = True
    for item in sets:
        key, _, value = item.partition("=")
        if key not in flat:
            sys.exit(f"unknown mapper parameter {key!r}")
        flat[key] = yaml.safe_load(value)
    flat["levels.multi_level_loss"], on = VARIANTS[variant]
    if not on:
        flat["levels.count"] = 1
    return from_dict(MapperConfig, unflatten(flat), where="--set")


def run_variant(name: str, args) -> dict:
    import numpy as np

    from gs_mapping.cli.topic_choice import fill_topics
    from gs_mapping.config_file import to_dict
    from gs_mapping.mapping.levels import level_fractions
    from gs_mapping.mapping.run import map_bag
    from gs_mapping.ply import load_ply

    cfg = build_config(args.set, name)
    fill_topics(args.bag, cfg, {}, "bench.mapping_levels")  # the bag's camera, found as `map` finds it
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        m = map_bag(
            args.bag,
            tmp,
            cfg,
            device="cpu",
            progress=not args.quiet,
            write_pngs=False,
            max_frames=args.max_frames,
        )
        levels = load_ply(Path(tmp) / "map.ply").levels  # as the codec will read them
    wall = time.perf_counter() - t0
    per_view = m["heldout"]["per_view"]
    count = cfg.levels.count
    per_level = [
        float(np.mean([v.get("psnr_levels", [v["psnr"]])[lvl] for v in per_view])) for lvl in range(count)
    ]
    frac = level_fractions(levels, count)
    return {
        "variant": name,
        "multi_level_loss": cfg.levels.multi_level_loss and count > 1,
        "config": to_dict(cfg),
        "heldout_views": len(per_view),
        "frames": m["frames"],
        "keyframes": m["keyframes"],
        "gaussians": m["gaussians"],
        "heldout_psnr_db": m["heldout"]["psnr"],
        "heldout_ssim": m["heldout"]["ssim"],
        "heldout_depth_l1_m": m["heldout"]["depth_l1_m"],
        "psnr_levels_db": per_level,
        "level_fraction": frac,
        "cumulative_fraction": list(np.cumsum(frac).astype(float)),
        "psnr_levels_per_view": [v.get("psnr_levels", [v["psnr"]]) for v in per_view],
        "cpu_seconds_mapping": m["cpu_seconds_mapping"],
        "wall_s": wall,
    }


def markdown(res: dict) -> str:
    from common import machine_info  # noqa: F401  (documented in JSON)

    rs_all = res["runs"]
    rs = [r for r in rs_all if len(r["psnr_levels_db"]) > 1] or rs_all  # variants with levels
    first = rs[0]
    count = len(first["psnr_levels_db"])
    lines = [
        f"# {res['benchmark']}",
        "",
        f"{res['machine']['platform']}, {res['machine']['cpus']} CPUs, torch {res['machine']['torch']} "
        f"(1 thread), device cpu. Bag: first {res['max_frames']} frames of the kitchen bag "
        f"({first['frames']} frames, {first['heldout_views']} held out, {first['keyframes']} keyframes; "
        f"the whole bag has 50). Levels: {count}, level-0 voxel "
        f"{first['config']['levels']['base_voxel_m']} m; multi-level loss weight "
        f"{first['config']['levels']['loss_weight']}, every {first['config']['levels']['loss_every']} "
        "iterations. Extra settings: " + (", ".join(res["set"]) or "none") + ".",
        "",
        "Held-out PSNR (dB) rendering only levels <= l (the last row is the whole map), and the "
        "cumulative fraction of Gaussians in that prefix:",
        "",
        "| levels <= l | "
        + " | ".join(f"{r['variant']} multi-level loss: PSNR | Gaussians (cum.)" for r in rs)
        + " |",
        "|---|" + "---|---|" * len(rs),
    ]
    for lvl in range(count):
        cells = [f"{r['psnr_levels_db'][lvl]:.2f} | {100 * r['cumulative_fraction'][lvl]:.1f} %" for r in rs]
        lines.append(f"| {lvl} | " + " | ".join(cells) + " |")
    lines += [
        "",
        'Whole map ("none": the mapper without levels, levels.count = 1):',
        "",
        "| variant | full-map PSNR (dB) | SSIM | depth L1 (cm) | Gaussians | level fractions (%) | "
        "CPU s mapping |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rs_all:
        fr = " / ".join(f"{100 * f:.1f}" for f in r["level_fraction"])
        lines.append(
            f"| {r['variant']} | {r['heldout_psnr_db']:.2f} | {r['heldout_ssim']:.3f} | "
            f"{100 * r['heldout_depth_l1_m']:.2f} | {r['gaussians']} | {fr} | "
            f"{r['cpu_seconds_mapping']:.0f} |"
        )
    if res.get("tuning_runs"):
        lines += [
            "",
            "Tuning runs (each on the first `frames` frames of the bag; settings as listed):",
            "",
            "| run | frames (held out) | settings | PSNR levels <= 0 .. full (dB) | cumulative Gaussians (%) |",
            "|---|---|---|---|---|",
        ]
        for r in res["tuning_runs"]:
            lv = r["config"]["levels"]
            desc = (
                f"loss {'on' if r['multi_level_loss'] else 'off'}, weight {lv['loss_weight']}, every "
                f"{lv['loss_every']}, voxel {lv['base_voxel_m']} m, coarse_scale {lv['coarse_scale']}"
                if lv["count"] > 1
                else "no levels (count 1)"
            )
            lines.append(
                f"| {r['part']} | {r['frames']} ({r['heldout_views']}) | {desc} | "
                + " / ".join(f"{x:.2f}" for x in r["psnr_levels_db"])
                + " | "
                + " / ".join(f"{100 * x:.1f}" for x in r["cumulative_fraction"])
                + " |"
            )
    if res.get("notes"):
        lines += [""] + res["notes"]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bag", default=str(DEFAULT_BAG))
    ap.add_argument("--max-frames", type=int, default=50, help="first N frames (50 = the whole bag)")
    ap.add_argument("--variants", default="with,without")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--parts", default=None, help="write each variant's result here (no merged output)")
    ap.add_argument("--merge", default=None, help="merge the variant results in this directory")
    ap.add_argument("--name", default="mapping_levels")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the part file (tuning runs)")
    ap.add_argument(
        "--main",
        default="with,without,none",
        help="with --merge: the part files (stems) of the main comparison; the other parts in the "
        "directory are listed as tuning runs",
    )
    args = ap.parse_args(argv)

    import torch
    from common import machine_info, save_text, write_results

    torch.set_num_threads(1)
    sweep = []
    if args.merge:
        main_stems = args.main.split(",")
        parts = {p.stem: json.loads(p.read_text()) for p in sorted(Path(args.merge).glob("*.json"))}
        runs = [parts[s] for s in main_stems]
        sweep = [parts[s] | {"part": s} for s in parts if s not in main_stems]
    else:
        runs = []
        for name in args.variants.split(","):
            r = run_variant(name, args)
            r["tag"], r["set"] = args.tag, args.set
            runs.append(r)
            if args.parts:
                Path(args.parts).mkdir(parents=True, exist_ok=True)
                save_text(Path(args.parts) / f"{name}{args.tag}.json", json.dumps(r, indent=2, default=float))
            print(
                json.dumps(
                    {
                        k: r[k]
                        for k in (
                            "variant",
                            "heldout_psnr_db",
                            "psnr_levels_db",
                            "level_fraction",
                            "gaussians",
                            "cpu_seconds_mapping",
                        )
                    }
                )
            )
        if args.parts:
            return 0
    res = {
        "benchmark": "mapping levels: ProGS octree levels, per-level held-out PSNR with/without the "
        "multi-level loss (7-Scenes kitchen RGB-D)",
        "machine": machine_info(),
        "max_frames": args.max_frames,
        "set": args.set,
        "notes": args.note,
        "runs": runs,
        "tuning_runs": sweep,
    }
    by = {r["variant"]: r for r in runs}
    if "with" in by and "without" in by:
        a, b = by["with"], by["without"]
        res["delta_with_minus_without_db"] = {
            "full_map": a["heldout_psnr_db"] - b["heldout_psnr_db"],
            "per_level": [x - y for x, y in zip(a["psnr_levels_db"], b["psnr_levels_db"], strict=False)],
        }
    md = markdown(res)
    write_results(args.name, res, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
