"""Benchmarks of the mapper on the procedural driving world (ground truth for any view).

``--suite virtual``: GS-Share's virtual-image enhancement. Map a drive with and without virtual views
(lateral ±1 m targets reprojected from each keyframe's RGB-D), then render views displaced laterally
by 1 m and 2 m (both sides) from the driven path and compare with the world's true images: PSNR over
the pixels the world hits within the mapper's depth range (masked; sky excluded) and over the whole
image. Writes bench/results/mapping_virtual.{json,md}.

``--suite long``: a long drive (≥ 1,000 frames) under a small hard cap: Gaussian count and process
memory (RSS) sampled along the drive. Writes bench/results/mapping_long.{json,md}.

    .venv/bin/python bench/mapping_drive.py --suite virtual [--frames 40] [--size 192x108]
    .venv/bin/python bench/mapping_drive.py --suite long [--frames 1000] [--cap 20000]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def machine(threads):
    import torch
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": threads, "device": "cpu",
            "loadavg": os.getloadavg()}


def drive_frames(drive, start=0, stop=None):
    """Mapper frames from the first camera of a world drive (rendered on the fly)."""
    from gs_mapping.mapping import Frame

    cam = drive.cameras[0]
    for i in range(start, len(drive) if stop is None else stop):
        c = cam.with_pose(drive.pose(i) @ cam.T_map_cam)
        rgb, depth = drive.world.render(c)
        yield Frame(rgb.astype(np.float32) / 255.0, np.nan_to_num(depth, nan=0.0), c, drive.stamp_ns(i), i)


def drive_config(args):
    from gs_mapping.mapping import MapperConfig

    cfg = MapperConfig()
    cfg.device = cfg.backend = "cpu"
    cfg.min_depth_m, cfg.max_depth_m = 0.5, args.max_depth
    cfg.seeding.min_depth_m, cfg.seeding.max_depth_m = 0.5, args.max_depth
    cfg.min_valid_depth_fraction = 0.1
    cfg.seeding.stride = args.stride
    cfg.keyframe.min_translation_m = args.keyframe_m
    cfg.keyframe.max_gap = 0
    cfg.optim.iterations = args.iterations
    cfg.optim.first_iterations = 3 * args.iterations
    cfg.optim.render_scale = 1.0
    cfg.optim.refine_iterations = 0
    cfg.max_gaussians = args.cap
    return cfg


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def write(name, result, md_lines):
    res = REPO / "bench" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (res / f"{name}.md").write_text("\n".join(md_lines) + "\n")
    print("\n".join(md_lines))


def suite_virtual(args) -> None:
    from gs_mapping.config import to_dict
    from gs_mapping.mapping import IncrementalMapper
    from gs_mapping.mapping.metrics import psnr
    from gs_mapping.mapping.virtual_views import displaced_pose
    from gs_mapping.world import Drive

    w, h = (int(x) for x in args.size.split("x"))
    drive = Drive.make(args.seed, args.frames, "front", (w, h))
    frames = list(drive_frames(drive))
    eval_idx = list(range(args.frames // 4, args.frames - 2, args.eval_every))
    offsets = [-2.0, -1.0, 1.0, 2.0]
    truth = {}
    for i in eval_idx:
        for off in offsets:
            cam = frames[i].camera.with_pose(displaced_pose(frames[i].camera.T_map_cam, off))
            rgb, depth = drive.world.render(cam)
            truth[i, off] = (cam, rgb.astype(np.float32) / 255.0,
                             np.isfinite(depth) & (depth <= args.max_depth))
    runs = {}
    for enhanced in (False, True):
        cfg = drive_config(args)
        cfg.virtual_views.enabled = enhanced
        cfg.virtual_views.offsets_m = [-1.0, 1.0]
        mapper = IncrementalMapper(cfg, "cpu")
        t0 = time.process_time()
        for f in frames:
            mapper.add_frame(f)
        cpu = time.process_time() - t0
        per = {}
        for (i, off), (cam, rgb, mask) in truth.items():
            color, _, _ = mapper.render(cam)
            per.setdefault(abs(off), []).append((psnr(color, rgb, mask), psnr(color, rgb)))
        on_path = [psnr(mapper.render(frames[i].camera)[0], frames[i].rgb,
                        (frames[i].depth > 0) & (frames[i].depth <= args.max_depth)) for i in eval_idx]
        runs["with" if enhanced else "without"] = {
            "psnr_masked": {f"{k:g}m": float(np.nanmean([a for a, _ in v])) for k, v in per.items()},
            "psnr_full": {f"{k:g}m": float(np.nanmean([b for _, b in v])) for k, v in per.items()},
            "psnr_on_path_masked": float(np.mean(on_path)),
            "keyframes": mapper.stats.keyframes, "gaussians": len(mapper.gmap), "cpu_s": cpu,
            "cpu_s_per_keyframe_p50": float(np.median(mapper.stats.keyframe_cpu_seconds)),
            "config": to_dict(cfg)}
    gain = {k: runs["with"]["psnr_masked"][k] - runs["without"]["psnr_masked"][k]
            for k in runs["with"]["psnr_masked"]}
    result = {"benchmark": "mapping: virtual-image enhancement on extrapolated views (driving world)",
              "machine": machine(args.threads), "drive": {"seed": args.seed, "frames": args.frames,
                                                          "size": [w, h], "eval_frames": eval_idx,
                                                          "offsets_m": offsets},
              "runs": runs, "gain_db_masked": gain, "goal": "≥ +1 dB from the enhancement",
              "goal_met": {k: v >= 1.0 for k, v in gain.items()}}
    md = [f"# {result['benchmark']}", "",
          f"{args.frames} frames, {w}x{h}, seed {args.seed}; PSNR masked to pixels with true depth ≤ "
          f"{args.max_depth} m (full image in parentheses), mean over both sides.", "",
          "| lateral offset | without (dB) | with (dB) | gain (dB) | goal ≥ +1 dB |", "|---|---|---|---|---|"]
    for k in sorted(gain, key=lambda s: float(s[:-1])):
        a, b = runs["without"], runs["with"]
        md.append(f"| {k} | {a['psnr_masked'][k]:.2f} ({a['psnr_full'][k]:.2f}) | "
                  f"{b['psnr_masked'][k]:.2f} ({b['psnr_full'][k]:.2f}) | {gain[k]:+.2f} | "
                  f"{'yes' if gain[k] >= 1 else 'no'} |")
    md.append(f"| on path | {runs['without']['psnr_on_path_masked']:.2f} | "
              f"{runs['with']['psnr_on_path_masked']:.2f} | | |")
    write("mapping_virtual", result, md)


def suite_long(args) -> None:
    from gs_mapping.config import to_dict
    from gs_mapping.mapping import IncrementalMapper
    from gs_mapping.world import Drive

    w, h = (int(x) for x in args.size.split("x"))
    drive = Drive.make(args.seed, args.frames, "front", (w, h))
    cfg = drive_config(args)
    mapper = IncrementalMapper(cfg, "cpu")
    samples = []
    t0 = time.process_time()
    from tqdm import tqdm
    for f in tqdm(drive_frames(drive), total=args.frames, desc="long drive", leave=False):
        mapper.add_frame(f)
        if f.index % 25 == 0 or f.index == args.frames - 1:
            samples.append({"frame": f.index, "keyframes": mapper.stats.keyframes,
                            "gaussians": len(mapper.gmap), "rss_mb": rss_mb()})
    cpu = time.process_time() - t0
    g = [s["gaussians"] for s in samples]
    rss = [s["rss_mb"] for s in samples]
    late = rss[len(rss) // 2:]
    result = {"benchmark": "mapping: long synthetic drive under a hard Gaussian cap",
              "machine": machine(args.threads), "drive": {"seed": args.seed, "frames": args.frames,
                                                          "size": [w, h]},
              "cap": args.cap, "max_gaussians_seen": max(g), "under_cap": max(g) <= args.cap,
              "capped_total": mapper.stats.capped, "keyframes": mapper.stats.keyframes,
              "rss_mb_first": rss[0], "rss_mb_max": max(rss), "rss_mb_second_half_growth": late[-1] - late[0],
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "cpu_s": cpu, "cpu_s_per_keyframe_p50": float(np.median(mapper.stats.keyframe_cpu_seconds)),
              "samples": samples, "config": to_dict(cfg)}
    md = [f"# {result['benchmark']}", "",
          f"{args.frames} frames ({mapper.stats.keyframes} keyframes), {w}x{h}, cap {args.cap}", "",
          "| figure | value |", "|---|---|",
          f"| largest Gaussian count | {max(g)} (cap {args.cap}: {'under' if max(g) <= args.cap else 'OVER'}) |",
          f"| Gaussians removed by the cap | {mapper.stats.capped} |",
          f"| RSS first / max (MB) | {rss[0]:.0f} / {max(rss):.0f} |",
          f"| RSS growth over the second half (MB) | {late[-1] - late[0]:+.0f} |",
          f"| CPU s / keyframe (median) | {result['cpu_s_per_keyframe_p50']:.2f} |"]
    write("mapping_long", result, md)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=("virtual", "long"), required=True)
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--size", default="192x108")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stride", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--keyframe-m", type=float, default=0.5)
    ap.add_argument("--max-depth", type=float, default=40.0)
    ap.add_argument("--cap", type=int, default=100000)
    ap.add_argument("--eval-every", type=int, default=4)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    if args.suite == "virtual":
        args.frames = args.frames or 40
        suite_virtual(args)
    else:
        args.frames = args.frames or 1000
        suite_long(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
