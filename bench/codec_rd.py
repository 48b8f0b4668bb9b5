"""Rate–distortion sensitivity of one quality preset on a map fitted by the mapper: bytes per
Gaussian and held-out PSNR (real images) when one quantisation step at a time is made coarser or
finer, plus "faint" rows that emulate a coarser lattice for low-opacity Gaussians (dc and scales
quantised at ``factor`` × their step where sigmoid(opacity) < ``threshold``; the bytes there are
this codec coding those values on the normal lattice, so they understate what a dedicated lattice
would save). Shows which step buys the most bytes per dB — the data for tuning presets.

    .venv/bin/python bench/codec_rd.py --map MAP.ply [--bag ../shared/data/7scenes_kitchen_rgbd] [--quality 0]

writes bench/results/codec_rd.json and codec_rd.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from codec import heldout_scorer  # noqa: E402
from common import machine_info, write_results  # noqa: E402

from gs_map_share.quantize import QuantParams, quantize  # noqa: E402
from gs_map_share.snapshot import encode_map  # noqa: E402
from gs_mapping.ply import load_ply  # noqa: E402

# one change at a time, relative to the preset: (label, field, factor on the step or new rot_bits)
CHANGES = [
    ("positions ×4/3", "pos_step", 4 / 3),
    ("positions ×5/3", "pos_step", 5 / 3),
    ("opacity ×1.5", "opacity_step", 1.5),
    ("opacity ×2", "opacity_step", 2.0),
    ("opacity ×0.75", "opacity_step", 0.75),
    ("scales ×1.43", "scale_step", 1 / 0.7),
    ("scales ×0.71", "scale_step", 0.71),
    ("DC ×1.43", "dc_step", 1 / 0.7),
    ("DC ×1.67", "dc_step", 1 / 0.6),
    ("DC ×0.71", "dc_step", 0.71),
    ("rotation −1 bit", "rot_bits", -1),
    ("rotation +1 bit", "rot_bits", +1),
]
FAINT = [(0.1, 2), (0.2, 2), (0.3, 2), (0.3, 3)]


def _params(base: QuantParams, quality: int, field: str, f: float) -> QuantParams:
    if field == "pos_step":  # the tile follows the position step, as in from_quality
        p = QuantParams.from_quality(quality, pos_step=base.pos_step * f)
        return replace(
            p,
            **{
                k: getattr(base, k)
                for k in ("opacity_step", "scale_step", "rot_bits", "dc_step", "rest_step")
            },
        )
    if field == "rot_bits":
        return replace(base, rot_bits=base.rot_bits + int(f))
    return replace(base, **{field: getattr(base, field) * f})


def _faint(g, p: QuantParams, threshold: float, factor: int):
    h = copy.deepcopy(g)
    faint = 1 / (1 + np.exp(-h.opacity_logits.astype(np.float64))) < threshold
    s = factor * p.dc_step
    h.sh[faint, 0] = np.rint(h.sh[faint, 0] / s) * s
    s = factor * p.scale_step
    h.log_scales[faint] = np.rint(h.log_scales[faint] / s) * s
    return h, float(faint.mean())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--map", required=True)
    ap.add_argument(
        "--bag", default=str(Path(__file__).resolve().parents[2] / "shared/data/7scenes_kitchen_rgbd")
    )
    ap.add_argument("--quality", type=int, default=0)
    args = ap.parse_args()
    g = load_ply(args.map)
    _, frames, score = heldout_scorer(args.map, args.bag)
    base_psnr = score(g)
    p0 = QuantParams.from_quality(args.quality)

    def row(label, gm, p, **extra):
        data, _ = encode_map(gm, p)
        v = score(quantize(gm, p))
        r = {
            "change": label,
            "bytes_per_gaussian": len(data) / len(g),
            "psnr_db": v,
            "drop_db": base_psnr - v,
            **extra,
        }
        print(r, flush=True)
        return r

    rows = [row("preset", g, p0)]
    for label, field, f in CHANGES:
        rows.append(row(label, g, _params(p0, args.quality, field, f)))
    for thr, fac in FAINT:
        h, frac = _faint(g, p0, thr, fac)
        rows.append(row(f"faint (opacity < {thr}): DC and scales ×{fac}", h, p0, faint_fraction=frac))
    ref = rows[0]
    for r in rows[1:]:
        db = r["bytes_per_gaussian"] - ref["bytes_per_gaussian"]
        r["db_per_byte"] = (ref["psnr_db"] - r["psnr_db"]) / -db if db < 0 else None
    res = {
        "machine": machine_info(),
        "map": args.map,
        "gaussians": len(g),
        "heldout_views": len(frames),
        "quality": args.quality,
        "original_psnr_db": base_psnr,
        "rows": rows,
    }
    md = [
        f"# Codec rate–distortion sensitivity (quality {args.quality})",
        "",
        f"Map `{args.map}` ({len(g)} Gaussians), held-out PSNR of the original {base_psnr:.2f} dB over "
        f"{len(frames)} real views. One step changed at a time; 'dB per saved B/G' = PSNR lost per byte "
        "per Gaussian saved (lower = a cheaper place to save bytes).",
        "",
        "| change | B/G | PSNR dB | drop dB | dB per saved B/G |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        d = r.get("db_per_byte")
        md.append(
            f"| {r['change']} | {r['bytes_per_gaussian']:.3f} | {r['psnr_db']:.3f} | {r['drop_db']:.3f} | "
            f"{'–' if d is None else f'{d:.2f}'} |"
        )
    write_results("codec_rd", res, "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
