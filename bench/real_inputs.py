"""The RealSense-layout kitchen bag (JPEG colour, compressedDepth PNG, namespaced topics, TF through
odom) mapped with NO topic options, against the same frames in the raw-image layout (decoded and
written as rgb8 / 16UC1 Images, test/real_layouts.py): held-out PSNR of both with
``gs-mapping map --calibrate-color`` and the mapper's defaults. Goal (issue 16): within 0.5 dB.

Writes bench/results/real_inputs.{json,md}. Minutes per bag on 2 CPU cores: run it nice'd.
    python bench/real_inputs.py [--data ../shared/data] [--work /tmp/real_inputs]
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


def map_run(bag: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    rc = cli_main(["map", str(bag), "--out", str(out), "--calibrate-color", "--no-progress"])
    if rc != 0:
        raise SystemExit(f"gs-mapping map {bag} failed with status {rc}")
    m = json.loads((out / "metrics.json").read_text())
    m["wall_s"] = time.perf_counter() - t0
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/real_inputs_bench")
    args = ap.parse_args()
    import real_layouts

    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rs = data / real_layouts.REALSENSE
    raw = work / "raw_layout"
    shutil.rmtree(raw, ignore_errors=True)
    real_layouts.write_raw_layout(rs, raw)
    runs = {}
    for name, bag in (("realsense_layout", rs), ("raw_layout", raw)):
        m = map_run(bag, work / f"map_{name}")
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
        "command": "gs-mapping map BAG --out DIR --calibrate-color (no topic options; mapper defaults)",
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
    md += ["", f"Difference {diff:+.2f} dB (goal within 0.5 dB: {'met' if data_out['met'] else 'NOT met'})."]
    print(write_results("real_inputs", data_out, "\n".join(md)))


if __name__ == "__main__":
    main()
