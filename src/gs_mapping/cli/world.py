"""``gs-mapping world``: generate a procedural driving world and write its sensor data as a rosbag2."""

from __future__ import annotations

import argparse
import re

from . import add_no_progress, seed

MIN_SIZE, MAX_SIZE = (32, 24), (4096, 4096)
MAX_FRAMES = 100_000
MAX_BEV_RANGE = 1000.0  # metres a side: past any camera's or LiDAR's reach (GT of the whole world is no BEV)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", required=True, help="output rosbag2 directory (must not exist unless --overwrite)"
    )
    p.add_argument("--frames", type=int, default=100, help="number of frames (default 100)")
    p.add_argument(
        "--rig", default="front", help="camera rig: front (1 camera, default) or surround (6, nuScenes names)"
    )
    p.add_argument("--size", default="640x360", help="image size WxH (default 640x360)")
    p.add_argument(
        "--seed", type=seed, default=0, help="world seed; same seed, byte-identical bag (default 0)"
    )
    p.add_argument("--lidar", action="store_true", help="also write /lidar/points (32 beams x 1024)")
    p.add_argument(
        "--compressed", action="store_true", help="write JPEG CompressedImage instead of rgb8 Image"
    )
    p.add_argument("--rate", type=float, default=10.0, help="frame rate in Hz (default 10)")
    p.add_argument("--speed", type=float, default=8.0, help="vehicle speed in m/s (default 8)")
    p.add_argument(
        "--bev-range",
        type=float,
        nargs=2,
        default=(30.0, 15.0),
        metavar=("X", "Y"),
        help=f"ground-truth range in base_link: |x| <= X, |y| <= Y metres, each in (0, {MAX_BEV_RANGE:.0f}]"
        " (default 30 15)",
    )
    p.add_argument(
        "--supersample",
        type=int,
        default=1,
        help="anti-aliasing: S x S colour samples per pixel (1-4, cost S^2; default 1)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="rendering processes (default 0: one per CPU, at most 8); output is the same",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    add_no_progress(p)


def parse_size(text: str) -> tuple[int, int]:
    from ..errors import ConfigError

    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m:
        raise ConfigError(f"--size: expected WxH such as 640x360, got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if w < MIN_SIZE[0] or h < MIN_SIZE[1]:
        raise ConfigError(f"--size: {w}x{h} is too small (minimum {MIN_SIZE[0]}x{MIN_SIZE[1]})")
    if w > MAX_SIZE[0] or h > MAX_SIZE[1]:
        raise ConfigError(f"--size: {w}x{h} is too large (maximum {MAX_SIZE[0]}x{MAX_SIZE[1]})")
    return w, h


def run(args: argparse.Namespace) -> int:
    import math
    import os
    import time
    from pathlib import Path

    from ..bag import BAG_FILES
    from ..errors import ConfigError
    from ..output_files import check_output
    from ..world.rig import RIGS
    from ..world.trajectory import route_length
    from ..world.world import MAX_LENGTH
    from . import show_progress

    if not 1 <= args.frames <= MAX_FRAMES:
        raise ConfigError(f"--frames: must be between 1 and {MAX_FRAMES}, got {args.frames}")
    if args.rig not in RIGS:
        raise ConfigError(f"--rig: unknown rig {args.rig!r} (choose {' or '.join(RIGS)})")
    size = parse_size(args.size)
    if not (math.isfinite(args.rate) and 0 < args.rate <= 1000):
        raise ConfigError(f"--rate: must be in (0, 1000] Hz, got {args.rate}")
    if not (math.isfinite(args.speed) and 0 < args.speed < 60):
        raise ConfigError(f"--speed: must be in (0, 60) m/s, got {args.speed}")
    length = route_length(args.frames, args.rate, args.speed)
    if not length <= MAX_LENGTH:  # (a drive longer than any world: a slow --rate, mostly)
        raise ConfigError(
            f"--rate: {args.rate} Hz with --frames {args.frames} at --speed {args.speed} m/s needs "
            f"{length:.3g} m of road; a world is at most {MAX_LENGTH:.0f} m: raise --rate, or lower "
            "--frames or --speed"
        )
    bx, by = args.bev_range
    if not (0 < bx <= MAX_BEV_RANGE and 0 < by <= MAX_BEV_RANGE):  # (NaN fails both)
        raise ConfigError(
            f"--bev-range: each extent must be in (0, {MAX_BEV_RANGE:.0f}] metres, got {bx} {by}"
        )
    if not 1 <= args.supersample <= 4:
        raise ConfigError(f"--supersample: must be between 1 and 4, got {args.supersample}")
    if args.workers < 0:
        raise ConfigError(f"--workers: must be ≥ 0, got {args.workers}")
    workers = args.workers or min(8, os.cpu_count() or 1)
    out = Path(args.out)
    # before any rendering: exists without --overwrite, not a bag, read-only, a file as parent
    check_output(out, overwrite=args.overwrite, directory=True, allowed=BAG_FILES)

    from ..world import Drive
    from ..world.record import write_bag

    t0 = time.perf_counter()
    drive = Drive.make(
        args.seed, args.frames, args.rig, size, args.rate, args.speed, args.lidar, (bx, by), args.supersample
    )
    summary = write_bag(
        drive,
        out,
        overwrite=args.overwrite,
        compressed=args.compressed,
        progress=show_progress(args.no_progress),
        workers=workers,
    )
    dt = time.perf_counter() - t0
    print(
        f"wrote {out}: {summary['frames']} frames, {len(summary['cameras'])} camera(s) "
        f"({', '.join(summary['cameras'])}) at {size[0]}x{size[1]}, seed {args.seed}, "
        f"{summary['bytes'] / 1e6:.1f} MB in {dt:.1f} s"
    )
    for topic, n in summary["topics"].items():
        print(f"  {topic}: {n}")
    return 0
