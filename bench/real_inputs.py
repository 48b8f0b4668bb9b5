"""The RealSense-layout kitchen bag (JPEG colour, compressedDepth PNG, namespaced topics, TF through
odom) mapped with NO topic options, against the same frames in the raw-image layout (decoded and
written as rgb8 / 16UC1 Images, test/real_layouts.py): held-out PSNR of both with
``gs-mapping map --calibrate-color`` and the mapper's defaults. Goal (issue 16): within 0.5 dB.

Writes bench/results/real_inputs.{json,md}. The whole bag with the defaults takes tens of minutes per
layout on 2 free CPU cores; ``--max-frames N`` and ``--config FILE`` make a shorter run (recorded
in the results as run):
    python bench/real_inputs.py [--data ../shared/data] [--max-frames N] [--config FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "test"))  # real_layouts (test material)

from common import machine_info, write_results  # noqa: E402

from gs_mapping.cli import main as cli_main  # noqa: E402


def map_run(bag: Path, out: Path, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    rc = cli_main(["map", str(bag), "--out", str(out), "--calibrate-color", "--no-progress", *extra])
    if rc != 0:
        raise SystemExit(f"gs-mapping map {bag} failed with status {rc}")
    m = json.loads((out / "metrics.json").read_text())
    m["wall_s"] = time.perf_counter() - t0
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/real_inputs_bench")
    ap.add_argument("--max-frames", type=int, default=None, help="only the first N colour/depth pairs")
    ap.add_argument("--holdout-every", type=int, default=None)
    ap.add_argument("--config", default=None, help="mapper parameter YAML (default: the mapper's defaults)")
    args = ap.parse_args()
    extra = []
    if args.max_frames:
        extra += ["--max-frames", str(args.max_frames)]
    if args.holdout_every:
        extra += ["--holdout-every", str(args.holdout_every)]
    if args.config:
        extra += ["--config", args.config]
    import real_layouts

    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rs = data / real_layouts.REALSENSE
    raw = work / "raw_layout"
    shutil.rmtree(raw, ignore_errors=True)
    real_layouts.write_raw_layout(rs, raw)
    runs = {}
    for name, bag in (("realsense_layout", rs), ("raw_layout", raw)):
        m = map_run(bag, work / f"map_{name}", extra)
        runs[name] = {
            "topics": m["topics"],
            "heldout_psnr_db": m["heldout"]["psnr"],
            "heldout_ssim": m["heldout"]["ssim"],
            "heldout_depth_l1_m": m["heldout"]["depth_l1_m"],
            "heldout_views": m["heldout"]["views"],
            "frames": m["frames"],
            "keyframes": m["keyframes"],
            "skipped": m["skipped"],
            "gaussians": m["gaussians"],
            "wall_s": m["wall_s"],
        }
        print(name, json.dumps(runs[name]), flush=True)
    diff = runs["realsense_layout"]["heldout_psnr_db"] - runs["raw_layout"]["heldout_psnr_db"]
    data_out = {
        "machine": machine_info(),
        "command": "gs-mapping map BAG --out DIR --calibrate-color --no-progress " + " ".join(extra),
        "config": Path(args.config).read_text() if args.config else "mapper defaults",
        "runs": runs,
        "psnr_difference_db": diff,
        "goal": "|difference| <= 0.5 dB",
        "met": abs(diff) <= 0.5,
    }
    md = [
        "# real_inputs: RealSense layout (compressed, no topic options) vs raw-image layout, same frames",
        "",
        f"{data_out['machine']['platform']}, {data_out['machine']['cpus']} CPUs, load "
        f"{data_out['machine']['load_avg_1m']:.1f} (shared machine: times pessimistic)",
        "",
        "| layout | colour / depth topics | held-out PSNR (dB) | SSIM | depth L1 (cm) | keyframes | wall (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        md.append(
            f"| {name} | {r['topics']['color']} / {r['topics']['depth']} | {r['heldout_psnr_db']:.2f} | "
            f"{r['heldout_ssim']:.3f} | {100 * r['heldout_depth_l1_m']:.2f} | {r['keyframes']} | {r['wall_s']:.0f} |"
        )
    md += [
        "",
        f"Command: `{data_out['command']}` (no topic options)"
        + ("" if not args.config else f"; config:\n\n```yaml\n{data_out['config'].strip()}\n```"),
        "",
        f"Difference {diff:+.2f} dB (goal within 0.5 dB: {'met' if data_out['met'] else 'NOT met'}).",
    ]
    print(write_results("real_inputs", data_out, "\n".join(md)))


if __name__ == "__main__":
    main()
