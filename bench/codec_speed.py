"""Codec speed on one core: encode_map / decode_map of a 1M-Gaussian synthetic map (SH3 and SH0).

Times exactly what bench/codec.py times (``encode_map`` includes quantisation, ``decode_map``
includes dequantisation to a float GaussianMap), best of ``--repeats``, CPU time of this process
(``time.process_time``, the honest figure on a shared machine) and wall time. Each run is stored
under ``--label`` in bench/results/codec_speed.json (other labels are kept), so the figures of two
code versions sit side by side: run it once per version, e.g. with ``PYTHONPATH=<old checkout>/src``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/codec_speed.py --label after
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))  # synthetic_maps (test material)
from common import RESULTS, machine_info, write_results


def _best(fn, repeats: int):
    best, out = None, None
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        c, w = time.process_time() - c, time.perf_counter() - w
        if best is None or c < best[0]:
            best = (c, w)
    return best, out


def measure(n: int, deg: int, quality: int, repeats: int) -> dict:
    from synthetic_maps import synthetic_map

    from gs_map_share.quantize import QuantParams, quantize
    from gs_map_share.snapshot import decode_map, encode_map

    g = synthetic_map(n, sh_degree=deg, seed=0)
    p = QuantParams.from_quality(quality)
    (ce, we), (data, _) = _best(lambda: encode_map(g, p), repeats)
    (cd, wd), dec = _best(lambda: decode_map(data), repeats)
    return {
        "gaussians": n,
        "sh_degree": deg,
        "quality": quality,
        "bytes": len(data),
        "bytes_per_gaussian": len(data) / n,
        "encode_cpu_s": ce,
        "encode_wall_s": we,
        "encode_mgaussians_per_s": n / ce / 1e6,
        "decode_cpu_s": cd,
        "decode_wall_s": wd,
        "decode_mgaussians_per_s": n / cd / 1e6,
        "round_trip_exact": bool(dec.equals(quantize(g, p))),
    }


def _commit(path: Path) -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="after")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--degrees", type=int, nargs="+", default=[3, 0])
    ap.add_argument(
        "--quality",
        type=int,
        nargs="+",
        default=[2],
        help="quality presets (each SH degree is measured at each)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    import gs_map_share

    src = Path(gs_map_share.__file__).resolve().parent
    run = {
        "code": str(src),
        "commit": _commit(src),
        "note": args.note,
        "machine": machine_info(),
        "results": [measure(args.n, d, q, args.repeats) for q in args.quality for d in args.degrees],
    }
    path = RESULTS / "codec_speed.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("config", {}).pop("quality", None)  # per result row now
    data["config"].update(
        {
            "gaussians": args.n,
            "repeats": args.repeats,
            "threads": 1,
            "map": "test/synthetic_maps.synthetic_map(n, deg, seed=0)",
            "goals": {"decode_mgaussians_per_s": 1.0, "encode_mgaussians_per_s": 0.3},
        }
    )
    data.setdefault("runs", {})[args.label] = run
    rows = [
        "| run | commit | quality | SH | B/G | encode M/s (cpu s, wall s) | decode M/s (cpu s, wall s) | exact |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in data["runs"].items():
        for x in r["results"]:
            q = x.get("quality", 2)  # runs before per-row qualities were all at quality 2
            rows.append(
                f"| {label} | {r.get('commit')} | {q} | {x['sh_degree']} | {x['bytes_per_gaussian']:.4f} | "
                f"{x['encode_mgaussians_per_s']:.3f} ({x['encode_cpu_s']:.2f}, {x['encode_wall_s']:.2f}) | "
                f"{x['decode_mgaussians_per_s']:.3f} ({x['decode_cpu_s']:.2f}, {x['decode_wall_s']:.2f}) | "
                f"{x['round_trip_exact']} |"
            )
    md = (
        f"# Codec speed, 1 thread, {args.n} synthetic Gaussians\n\n"
        "Best of repeats; CPU = process time (user + system; the machine is shared), wall in brackets "
        "too.\nNotes per run are in codec_speed.json.\n"
        "Goals: decode ≥ 1 M/s, encode ≥ 0.3 M/s.\n\n" + "\n".join(rows) + "\n"
    )
    print(write_results("codec_speed", data, md))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
