"""Benchmark: bag I/O, TF lookups and synchronisation (CPU, one thread).

Writes bench/results/bag_tf.json and bag_tf.md with the machine (platform, CPUs, torch, load average
before/after; the machine may be shared, so timings read pessimistic) and, as medians over repeats:

* reading: the real 7-Scenes kitchen bag when ../shared/data has it (raw records and deserialised
  messages, messages/s and MB/s), else only the synthetic bag below;
* writing: a synthetic VGA RGB-D bag (colour rgb8 + depth 16UC1 + camera_info + /tf) through
  BagWriter, plain and zstd-compressed, then read back;
* TF: inserting 10k samples on a dynamic edge, and lookups map → optical through a 3-edge chain
  (interpolated, random stamps);
* sync: ApproximateTimeSynchronizer over colour/depth/info streams with jitter;
* ``gs-mapping info`` end to end (subprocess, including interpreter start).

    .venv/bin/python bench/bag_tf.py [--repeats 5] [--frames 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import save_text  # noqa: E402  (bench/ is the script folder)

REPO = Path(__file__).resolve().parents[1]
KITCHEN = (
    Path(os.environ.get("GS_MAPPING_SHARED_DATA", REPO.parent / "shared" / "data")) / "7scenes_kitchen_rgbd"
)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (typestore, generated (de)serialisers, page cache)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--frames", type=int, default=100, help="frames in the synthetic VGA bag")
    ap.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import numpy as np

    from gs_mapping import messages as m
    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.sync import ApproximateTimeSynchronizer
    from gs_mapping.tf import TFBuffer

    load_before = os.getloadavg()
    r = args.repeats
    rows: list[dict] = []

    def add(case, size, seconds, **rates):
        row = {"case": case, "size": size, "median_ms": round(seconds * 1e3, 3)}
        row.update({k: round(v, 1) for k, v in rates.items()})
        rows.append(row)
        extra = "  ".join(f"{k}={v:,.1f}" for k, v in rates.items())
        print(f"{case:<46} {size:<30} {seconds * 1e3:10.3f} ms  {extra}")

    tmp = Path(tempfile.mkdtemp(prefix="bench_bag_tf."))
    try:
        # --- reading the real bag -----------------------------------------------------------------
        if (KITCHEN / "metadata.yaml").exists():
            mb = sum(f.stat().st_size for f in KITCHEN.glob("*.mcap")) / 1e6
            with BagReader(KITCHEN) as bag:
                n = bag.message_count

                def read_raw():
                    for _ in bag.raw_messages():
                        pass

                def read_decoded():
                    for _ in bag.messages():
                        pass

                s = timed(read_raw, r)
                add(
                    "read kitchen bag, raw CDR",
                    f"{n} msgs, {mb:.1f} MB",
                    s,
                    msgs_per_s=n / s,
                    MB_per_s=mb / s,
                )
                s = timed(read_decoded, r)
                add(
                    "read kitchen bag, deserialised",
                    f"{n} msgs, {mb:.1f} MB",
                    s,
                    msgs_per_s=n / s,
                    MB_per_s=mb / s,
                )
            s = timed(lambda: BagReader(KITCHEN).open().close(), r)
            add("open kitchen bag (index + typestore)", "", s)

        # --- writing a synthetic VGA RGB-D bag ------------------------------------------------------
        rng = np.random.default_rng(0)
        frames = args.frames
        rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        depth = rng.integers(500, 4000, (480, 640), dtype=np.uint16)
        img = m.numpy_to_image(rgb, "rgb8", 0, "cam")
        dimg = m.numpy_to_image(depth, "16UC1", 0, "cam")
        info = m.intrinsics_to_camera_info(
            m.CameraIntrinsics(
                640,
                480,
                np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]),
                np.zeros(5),
                "plumb_bob",
                "cam",
                0,
            )
        )
        tfm = m.transforms_to_tf_message([TransformStamped("map", "base_link", 0, Transform())])
        per_frame_mb = (len(m.serialize_cdr(img, m.IMAGE)) + len(m.serialize_cdr(dimg, m.IMAGE))) / 1e6

        def write(compress: bool):
            out = tmp / ("vga_z" if compress else "vga")
            with BagWriter(out, overwrite=True, compress=compress) as bag:
                bag.add_topic("/color", m.IMAGE)
                bag.add_topic("/depth", m.IMAGE)
                bag.add_topic("/info", m.CAMERA_INFO)
                bag.add_topic("/tf", m.TF_MESSAGE)
                for k in range(frames):
                    t = k * 33_333_333
                    bag.write("/color", t, img)
                    bag.write("/depth", t, dimg)
                    bag.write("/info", t, info)
                    bag.write("/tf", t, tfm)
            return out

        total = frames * per_frame_mb
        for compress in (False, True):
            s = timed(lambda c=compress: write(c), max(1, r // 2))
            out = write(compress)
            size = sum(f.stat().st_size for f in out.glob("*.mcap")) / 1e6
            label = "zstd chunks" if compress else "plain"
            add(
                f"write VGA RGB-D bag ({label})",
                f"{frames} frames, {size:.1f} MB on disk",
                s,
                frames_per_s=frames / s,
                MB_per_s=total / s,
            )

            def read_back(out=out):
                with BagReader(out) as bag:
                    for _ in bag.messages():
                        pass

            s = timed(read_back, max(1, r // 2))
            add(
                f"read VGA RGB-D bag back ({label})",
                f"{4 * frames} msgs",
                s,
                frames_per_s=frames / s,
                MB_per_s=total / s,
            )

        # --- TF -----------------------------------------------------------------------------------
        n_tf = 10_000
        stamps = np.arange(n_tf, dtype=np.int64) * 10_000_000  # 100 Hz
        qs = rng.normal(size=(n_tf, 4))
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        samples = [
            TransformStamped("odom", "base_link", int(t), Transform(rng.normal(size=3), q))
            for t, q in zip(stamps, qs, strict=False)
        ]

        def fill():
            buf = TFBuffer(cache_time_s=None)
            for ts in samples:
                buf.add(ts)
            return buf

        s = timed(fill, r)
        add("TF insert (in order, validated)", f"{n_tf} samples", s, samples_per_s=n_tf / s)
        buf = fill()
        buf.add(TransformStamped("map", "odom", 0, Transform()), static=True)
        buf.add(
            TransformStamped("base_link", "cam_optical", 0, Transform([0.1, 0, 1.2], [-0.5, 0.5, -0.5, 0.5])),
            static=True,
        )
        queries = rng.integers(0, int(stamps[-1]), size=2000)

        def lookups():
            for t in queries:
                buf.lookup("map", "cam_optical", int(t))

        s = timed(lookups, r)
        add(
            "TF lookup map<-optical (3 edges, interpolated)",
            "2000 lookups, 10k samples/edge",
            s,
            lookups_per_s=len(queries) / s,
        )

        # --- sync ---------------------------------------------------------------------------------
        n_sync = 3000
        jitter = rng.integers(-3_000_000, 3_000_000, size=(n_sync, 3))
        events = sorted((k * 33_333_333 + int(jitter[k, i]), i, k) for k in range(n_sync) for i in range(3))

        def sync_run():
            sync = ApproximateTimeSynchronizer(3, queue_size=10, slop=0.01)
            for t, i, k in events:
                sync.add(i, t, k)
            assert sync.matched == n_sync

        s = timed(sync_run, r)
        add(
            "sync colour/depth/info (queue 10, slop 10 ms)",
            f"{3 * n_sync} messages",
            s,
            messages_per_s=3 * n_sync / s,
        )

        # --- gs-mapping info ------------------------------------------------------------------------
        target = KITCHEN if (KITCHEN / "metadata.yaml").exists() else tmp / "vga"
        env = dict(os.environ, OMP_NUM_THREADS="1")

        def run_info():
            subprocess.run(
                [sys.executable, "-m", "gs_mapping", "info", str(target), "--json"],
                check=True,
                capture_output=True,
                env=env,
            )

        s = timed(run_info, max(1, r // 2))
        add("gs-mapping info --json (subprocess)", target.name, s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load_after = os.getloadavg()
    try:
        import torch

        torch_version = torch.__version__
    except Exception:  # torch is not needed by this benchmark
        torch_version = None
    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch_version,
        "device": "cpu",
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }
    config = {
        "repeats": r,
        "frames": args.frames,
        "kitchen_bag": str(KITCHEN) if (KITCHEN / "metadata.yaml").exists() else None,
    }
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    save_text(
        results / "bag_tf.json",
        json.dumps({"machine": machine, "config": config, "rows": rows}, indent=2) + "\n",
    )
    lines = [
        "# bag / TF / sync benchmark",
        "",
        f"{machine['platform']}, {machine['cpus']} CPUs, load {load_before[0]:.1f} → {load_after[0]:.1f}; "
        f"median of {r} after a warm-up (writes/reads of the VGA bag: {max(1, r // 2)}).",
        "",
        "| case | size | median ms | rate |",
        "|---|---|---:|---|",
    ]
    for row in rows:
        rates = ", ".join(
            f"{k.replace('_per_s', '/s')} {v:,.1f}" for k, v in row.items() if k.endswith("_per_s")
        )
        lines.append(f"| {row['case']} | {row['size']} | {row['median_ms']:.3f} | {rates} |")
    save_text(results / "bag_tf.md", "\n".join(lines) + "\n")
    print(f"wrote {results / 'bag_tf.json'} and {results / 'bag_tf.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
