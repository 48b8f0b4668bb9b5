"""gs-mapping demo: the main job — world bag → all nodes (replay, CPU) → figures and a report.

Everything is built in a temp directory beside ``--out`` and swapped in whole at the end (an
interrupted demo leaves the previous results as they were); an existing ``--out`` is replaced only
with ``--overwrite`` and only if it holds nothing but a demo's outputs."""

from __future__ import annotations

import argparse

from . import add_no_progress, seed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out", help="output directory (default: out)")
    p.add_argument("--frames", type=int, default=40, help="frames of the drive (default 40)")
    p.add_argument(
        "--seed",
        type=seed,
        default=2026,
        help="world seed (default 2026; the shipped HD model never saw it: it trained on worlds 0-15)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier demo in --out")
    add_no_progress(p)


# What a demo's output directory holds (an existing one with anything else is never replaced).
# what a demo writes, by name: --overwrite (`make demo` passes it) replaces a folder holding only
# these, never a user's own pictures beside them
DEMO_OUTPUTS = (
    "demo_config.yaml",
    "world_bag",
    "replay_bag",
    "report.md",
    "metrics.json",
    "lanes_bev.png",
    "lane_map.png",
    "map_vs_camera.png",
    "levels_of_detail.png",
    "rate_distortion.png",
)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..output_files import check_output, output_directory

    if not 5 <= args.frames <= 1000:
        raise ConfigError(f"--frames: must be between 5 and 1000, got {args.frames}")
    final = check_output(args.out, overwrite=args.overwrite, directory=True, allowed=DEMO_OUTPUTS)
    with output_directory(final, overwrite=args.overwrite, allowed=DEMO_OUTPUTS) as out:
        _build(out, args)
    print(f"done: {final}/report.md, {final}/metrics.json, {final}/replay_bag")
    return 0


def _build(out, args: argparse.Namespace) -> None:
    """Run the demo with its outputs in ``out`` (a temp directory swapped in by the caller)."""
    import logging
    import time

    from ..demo import measure, pipeline, report
    from . import show_progress

    logging.getLogger("gs_mapping").setLevel(logging.ERROR)  # counted in diagnostics and the report
    progress = show_progress(args.no_progress)
    settings = pipeline.DemoSettings(seed=args.seed, frames=args.frames)
    configs = pipeline.node_configs(settings)
    pipeline.write_config(configs, out / "demo_config.yaml")
    t = {"start": time.perf_counter()}

    def step(msg: str) -> None:
        print(f"[{time.perf_counter() - t['start']:6.1f} s] {msg}", flush=True)

    step(
        f"1/4 generating the driving world: {settings.frames} frames at {settings.size[0]}x{settings.size[1]}"
    )
    drive = pipeline.make_world_bag(settings, out / "world_bag", progress)
    t["world"] = time.perf_counter()
    step("2/4 replaying it through hd_map_node, mapper_node, map_receiver_node (CPU)")
    summary, nodes = pipeline.replay(out / "world_bag", out / "replay_bag", configs, progress)
    t["replay"] = time.perf_counter()
    step("3/4 measuring against the world's ground truth")
    mapper, receiver = nodes["mapper_node"], nodes["map_receiver_node"]
    hd, pairs = measure.hd_map_metrics(out / "world_bag", out / "replay_bag")
    shared = receiver.store.gaussian_map()
    views = measure.heldout_views(drive)
    quality, rows = measure.heldout_quality(drive, shared, views)
    sharing = measure.delta_costs(out / "replay_bag")
    rd = measure.rate_distortion(mapper.mapper.gmap, views[:2])  # the unquantised map
    lods = measure.levels_of_detail(mapper.sender.snapshot(), views[len(views) // 2])
    t["measure"] = time.perf_counter()
    metrics = {
        "world": {
            "seed": settings.seed,
            "frames": settings.frames,
            "size": f"{settings.size[0]}x{settings.size[1]}",
        },
        "device": mapper.mapper.device,
        "hd_map": hd,
        "mapping": {
            "gaussians": len(mapper.mapper.gmap),
            "keyframes": mapper.mapper.stats.keyframes,
            "heldout": quality,
            "psnr_all": quality["psnr_all"],
            "psnr_in_range": quality["psnr_in_range"],
            "receiver_equals_mapper": measure.receiver_matches_mapper(mapper, receiver),
        },
        "sharing": sharing,
        "rate_distortion": rd,
        "levels_of_detail": [{k: v for k, v in lod.items() if k != "image"} for lod in lods],
        "latency_ms": {n: node.diag.summary()["latency"] for n, node in nodes.items()},
        "diagnostics": {
            n: {k: v for k, v in node.diag.summary().items() if k != "latency"} for n, node in nodes.items()
        },
        "replay": {
            "bag_seconds": summary.bag_seconds,
            "wall_seconds": round(summary.wall_s, 2),
            "real_time_factor": round(summary.bag_seconds / summary.wall_s, 4) if summary.wall_s else None,
        },
        "seconds": {
            "world": t["world"] - t["start"],
            "replay": t["replay"] - t["world"],
            "measure": t["measure"] - t["replay"],
        },
    }
    step("4/4 writing the report")
    metrics["seconds"]["total"] = time.perf_counter() - t["start"]
    report.write_report(out, metrics, pairs, rows, lods, rd)
    print(
        f"  HD map: Chamfer mAP {hd.get('chamfer_mAP', float('nan')):.3f}, raster mAP "
        f"{hd.get('raster_mAP', float('nan')):.3f} over {hd.get('frames', 0)} frames"
    )
    print(
        f"  3DGS map: {len(shared)} Gaussians, held-out PSNR {quality['psnr_in_range']:.2f} dB (mapped range), "
        f"receiver == mapper's quantised map: {metrics['mapping']['receiver_equals_mapper']}"
    )
    print(
        f"  sharing: deltas {sharing['delta_bytes_total'] / 1e3:.1f} kB vs full resends "
        f"{sharing['full_resend_bytes_total'] / 1e3:.1f} kB"
    )
