"""Pipeline benchmark: the demo's drive replayed through all three nodes on CPU.

Measures replay speed relative to real time, per-node latency (p50/p95 of each handler), and bytes
on the wire per second for map deltas vs re-sending the full map at each keyframe (and vs the
periodic snapshots actually sent). Also a 1 MB delta between two Cyclone DDS processes on loopback.

    .venv/bin/python bench/pipeline.py [--frames 40]

writes bench/results/pipeline.json and pipeline.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, write_results  # noqa: E402

DDS_PUB = textwrap.dedent("""
    import sys, time, numpy as np
    from gs_mapping.runtime.dds import DdsContext
    from gs_mapping.nodes.context import RELIABLE_QOS
    ctx = DdsContext("bench_pub", domain_id=31)
    pub = ctx.create_publisher("/bench/delta", "std_msgs/msg/UInt8MultiArray", RELIABLE_QOS)
    data = np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8)
    ctx.spin(until=lambda: pub.subscription_count() > 0, timeout_s=20)
    time.sleep(0.5)
    for i in range(20):
        data[:8] = np.frombuffer(np.int64(time.time_ns()).tobytes(), np.uint8)
        pub.publish(ctx.factory.make("std_msgs/msg/UInt8MultiArray", data=data))
        time.sleep(0.1)
    time.sleep(1.0)
""")


def dds_one_megabyte() -> dict:
    import numpy as np

    from gs_mapping.nodes.context import RELIABLE_QOS
    from gs_mapping.runtime.dds import DdsContext

    ctx = DdsContext("bench_sub", domain_id=31)
    lat = []

    def on(msg):
        sent = int(np.frombuffer(msg.data[:8], np.int64)[0])
        lat.append((time.time_ns() - sent) / 1e6)

    ctx.create_subscription("/bench/delta", "std_msgs/msg/UInt8MultiArray", RELIABLE_QOS, on)
    proc = subprocess.Popen([sys.executable, "-c", DDS_PUB])
    ctx.spin(until=lambda: len(lat) >= 20, timeout_s=60)
    proc.wait(timeout=30)
    ctx.close()
    return {
        "messages": len(lat),
        "bytes": 1 << 20,
        "latency_ms_p50": float(np.percentile(lat, 50)),
        "latency_ms_p95": float(np.percentile(lat, 95)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()

    from gs_mapping.demo import measure, pipeline

    settings = pipeline.DemoSettings(frames=args.frames)
    configs = pipeline.node_configs(settings)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        pipeline.make_world_bag(settings, tmp / "world", progress=False)
        world_s = time.perf_counter() - t0
        summary, nodes = pipeline.replay(tmp / "world", tmp / "out", configs, progress=False)
        costs = measure.delta_costs(tmp / "out")
        snapshot_bytes = 0
        from gs_mapping.bag import BagReader

        with BagReader(tmp / "out") as bag:
            snapshot_bytes = sum(len(m.data) for _, _, m in bag.messages(["/mapper_node/map_snapshot"]))
    bag_s = summary.bag_seconds
    lat = {n: node.diag.summary()["latency"] for n, node in nodes.items()}
    result = {
        "machine": machine_info(),
        "config": {
            "frames": settings.frames,
            "size": list(settings.size),
            "rate_hz": settings.rate_hz,
            "speed_mps": settings.speed_mps,
            "nodes": list(configs),
            "device": "cpu",
        },
        "world_bag_seconds": round(world_s, 2),
        "replay": {
            "bag_seconds": bag_s,
            "wall_seconds": round(summary.wall_s, 2),
            "real_time_factor": round(bag_s / summary.wall_s, 4),
        },
        "latency_ms": lat,
        "wire": {
            "delta_bytes_per_s": costs["delta_bytes_total"] / bag_s,
            "full_resend_bytes_per_s": costs["full_resend_bytes_total"] / bag_s,
            "periodic_snapshot_bytes_per_s": snapshot_bytes / bag_s,
            "delta_vs_full_resend": costs["delta_vs_full"],
            "keyframes": costs["keyframes"],
        },
        "dds_1MB_delta": dds_one_megabyte(),
    }
    md = [
        f"# Pipeline benchmark ({result['machine']['cpus']} CPUs, load {result['machine']['load_avg_1m']:.1f}, CPU)",
        "",
        f"Drive: {settings.frames} frames at {settings.size[0]}x{settings.size[1]}, {settings.rate_hz} Hz "
        f"({bag_s:.1f} s of bag); nodes: {', '.join(configs)}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| replay speed vs real time | {result['replay']['real_time_factor']:.3f}x ({summary.wall_s:.1f} s wall) |",
        f"| delta bytes/s | {result['wire']['delta_bytes_per_s'] / 1e3:.1f} kB/s |",
        f"| full-map resend at each keyframe, bytes/s | {result['wire']['full_resend_bytes_per_s'] / 1e3:.1f} kB/s |",
        f"| periodic snapshots sent, bytes/s | {result['wire']['periodic_snapshot_bytes_per_s'] / 1e3:.1f} kB/s |",
        f"| 1 MB delta over DDS (loopback, 2 processes) p50 / p95 | "
        f"{result['dds_1MB_delta']['latency_ms_p50']:.1f} / {result['dds_1MB_delta']['latency_ms_p95']:.1f} ms |",
    ]
    for node, stats in lat.items():
        for what, s in stats.items():
            if s:
                md.append(f"| {node} {what} latency p50 / p95 | {s['p50_ms']:.0f} / {s['p95_ms']:.0f} ms |")
    print(write_results("pipeline", result, "\n".join(md)))


if __name__ == "__main__":
    main()
