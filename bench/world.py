"""Benchmark: the procedural driving world (``gs-mapping world``) — speed, output size, a contact sheet.

Writes bench/results/world.json, world.md and world_contact_sheet.png with the machine (platform,
CPUs, torch, load average before/after; the machine may be shared, so wall times read pessimistic;
CPU times are given beside them):

* the goal figure: ``gs-mapping world --frames 100`` (front camera, 640x360) end to end, as a
  subprocess including interpreter start and bag writing (goal < 60 s);
* breakdown in-process: world generation, per-frame render time of the front camera (p50/p95),
  a surround frame (6 cameras), a LiDAR scan (32 x 1024), ground truth clipping per frame;
* the contact sheet: six front frames across the drive, a bird's-eye render and the ego ground truth
  of one frame (divider orange, crossing blue, boundary green).

    .venv/bin/python bench/world.py [--frames 100] [--seed 9]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import save_text, save_with  # noqa: E402  (bench/ is the script folder)

REPO = Path(__file__).resolve().parents[1]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--seed", type=int, default=9, help="world seed (9: 4 then 2 lanes, a 4-way junction)")
    ap.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from gs_mapping.world import Drive
    from gs_mapping.world.rig import lidar_transform

    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()

    # 1. the goal: the CLI end to end
    tmp = Path(tempfile.mkdtemp(prefix="world_bench_"))
    try:
        exe = str(Path(sys.executable).with_name("gs-mapping"))
        cmd = [
            exe,
            "world",
            "--out",
            str(tmp / "bag"),
            "--frames",
            str(args.frames),
            "--seed",
            str(args.seed),
            "--no-progress",
        ]
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        cli_wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        cli_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        bag_bytes = sum(p.stat().st_size for p in (tmp / "bag").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # 2. breakdown
    t0 = time.perf_counter()
    drive = Drive.make(args.seed, args.frames, "front", (640, 360))
    gen_s = time.perf_counter() - t0
    world = drive.world
    render_s, render_cpu_s, gt_s, frames = [], [], [], {}
    show = set(np.linspace(0, args.frames - 1, 6).round().astype(int).tolist())
    for i in range(args.frames):
        T = drive.pose(i)
        cam = drive.cameras[0]
        t0, c0 = time.perf_counter(), time.process_time()
        rgb, _ = world.render(cam.with_pose(T @ cam.T_map_cam))
        render_s.append(time.perf_counter() - t0)
        render_cpu_s.append(time.process_time() - c0)
        t0 = time.perf_counter()
        lanes = world.elements_in_ego(T, drive.bev_range)
        gt_s.append(time.perf_counter() - t0)
        if i in show:
            frames[i] = (rgb, lanes)
    sur = Drive(world, args.frames, "surround", (640, 360))
    t0 = time.perf_counter()
    for cam in sur.cameras:
        world.render(cam.with_pose(sur.pose(args.frames // 2) @ cam.T_map_cam))
    surround_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scan = world.lidar(drive.pose(args.frames // 2) @ lidar_transform())
    lidar_s = time.perf_counter() - t0

    # 3. contact sheet: 6 frames, a bird's-eye view, the ego ground truth of the middle frame
    tw, th = 320, 180
    sheet = Image.new("RGB", (4 * tw, 2 * th), (255, 255, 255))
    for k, i in enumerate(sorted(frames)):
        im = Image.fromarray(frames[i][0]).resize((tw, th), Image.BILINEAR)
        ImageDraw.Draw(im).text((4, 4), f"frame {i}", fill=(255, 255, 0))
        sheet.paste(im, ((k % 4) * tw, (k // 4) * th))
    mid = sorted(frames)[len(frames) // 2]
    T = drive.pose(mid)
    from gs_mapping.camera import Camera

    top = np.eye(4)
    # looking straight down, image right = vehicle forward (as the GT panel), 60 m across
    top[:3, :3] = T[:3, :3] @ np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]], float)
    top[:3, 3] = T[:3, 3] + [0, 0, 30.0 / np.tan(np.deg2rad(30))]
    f = (tw / 2) / np.tan(np.deg2rad(30))
    bird = Camera(np.array([[f, 0, (tw - 1) / 2], [0, f, (th - 1) / 2], [0, 0, 1]]), tw, th, top)
    rgb_top, _ = world.render(bird)
    im = Image.fromarray(rgb_top)
    ImageDraw.Draw(im).text((4, 4), f"bird's eye, frame {mid}", fill=(255, 255, 0))
    sheet.paste(im, (2 * tw, th))
    gt = Image.new("RGB", (tw, th), (30, 30, 30))
    d = ImageDraw.Draw(gt)
    bx, by = drive.bev_range
    s = min(tw / (2 * bx), th / (2 * by))
    colours = {0: (255, 153, 0), 1: (0, 102, 255), 2: (0, 204, 51)}
    for el in frames[mid][1]:  # ego x forward → image right, y left → image up
        pts = [(tw / 2 + x * s, th / 2 - y * s) for x, y in el.pts]
        d.line(pts, fill=colours[el.cls], width=2)
    d.rectangle([tw / 2 - 2 * s, th / 2 - 1 * s, tw / 2 + 2 * s, th / 2 + 1 * s], outline=(255, 255, 255))
    d.text((4, 4), f"GT base_link, frame {mid} (x right)", fill=(255, 255, 255))
    sheet.paste(gt, (3 * tw, th))
    sheet_path = results_dir / "world_contact_sheet.png"
    save_with(sheet_path, lambda tmp: sheet.save(tmp, optimize=True))

    res = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "device": "cpu",
            "numpy": np.__version__,
            "load_avg_before": load_before,
            "load_avg_after": os.getloadavg(),
        },
        "config": {
            "frames": args.frames,
            "seed": args.seed,
            "rig": "front",
            "size": [640, 360],
            "rate_hz": drive.rate_hz,
            "speed_mps": drive.trajectory.speed,
            "bev_range": list(drive.bev_range),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
        "cli": {
            "wall_s": round(cli_wall, 2),
            "cpu_s": round(cli_cpu, 2),
            "goal_wall_s": 60.0,
            "meets_goal": cli_wall < 60.0,
            "bag_mb": round(bag_bytes / 1e6, 1),
            "stdout_first_line": proc.stdout.splitlines()[0] if proc.stdout else "",
        },
        "breakdown": {
            "world_generation_s": round(gen_s, 3),
            "front_render_ms_p50": round(1e3 * statistics.median(render_s), 1),
            "front_render_ms_p95": round(1e3 * pct(render_s, 95), 1),
            "front_render_cpu_ms_p50": round(1e3 * statistics.median(render_cpu_s), 1),
            "surround_6cams_frame_s": round(surround_s, 3),
            "lidar_scan_ms": round(1e3 * lidar_s, 1),
            "lidar_points": int(len(scan)),
            "gt_clip_ms_p50": round(1e3 * statistics.median(gt_s), 2),
            "world": {
                "boxes": len(world.objects.boxes),
                "cylinders": len(world.objects.cylinders),
                "ellipsoids": len(world.objects.ellipsoids),
                "map_elements": len(world.map_elements()),
                "junctions": len(world.net.junctions),
                "lanes_per_link": [link.n_lanes for _, _, link in world.net.links],
            },
        },
        "contact_sheet": str(sheet_path.relative_to(REPO)),
    }
    save_text(results_dir / "world.json", json.dumps(res, indent=2) + "\n")
    b = res["breakdown"]
    md = [
        "# world benchmark",
        "",
        f"Machine: {res['machine']['platform']}, {res['machine']['cpu_count']} CPUs (shared; load "
        f"{load_before[0]:.1f} before, {res['machine']['load_avg_after'][0]:.1f} after), numpy "
        f"{np.__version__}, CPU only.",
        "",
        "| figure | value | goal |",
        "|---|---|---|",
        f"| `gs-mapping world --frames {args.frames}` (front, 640x360), wall | {cli_wall:.1f} s | < 60 s |",
        f"| … CPU time (user + sys, all rendering processes) | {cli_cpu:.1f} s | |",
        f"| bag size | {res['cli']['bag_mb']} MB | |",
        f"| world generation | {gen_s:.2f} s | |",
        f"| front camera render, wall p50 / p95 | {b['front_render_ms_p50']} / {b['front_render_ms_p95']} ms | |",
        f"| front camera render, CPU p50 | {b['front_render_cpu_ms_p50']} ms | |",
        f"| surround frame (6 cameras, 640x360) | {surround_s:.2f} s | |",
        f"| LiDAR scan (32 x 1024) | {b['lidar_scan_ms']} ms ({b['lidar_points']} points) | |",
        f"| ground-truth clipping per frame, p50 | {b['gt_clip_ms_p50']} ms | |",
        "",
        f"Contact sheet: `{res['contact_sheet']}`.",
        "",
    ]
    save_text(results_dir / "world.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
