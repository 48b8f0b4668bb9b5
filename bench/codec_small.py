"""Our codec on small real scenes: decode against gunzip of the raw PLY, and the encode rate, side by side.

    nice -n 10 .venv/bin/python bench/codec_small.py [--scene NAME=PATH[#shD]] [--label after]

Issue 17 asks that decoding be at least as fast as gunzip of the raw PLY (same scene, core, run) and
encoding ≥ 0.5 M Gaussians/s on one core. On large scenes both hold (codec_real.md); below ~10 k
Gaussians a fixed per-call cost (tens of streams, each a few Python steps) dominates. This bench
measures 1 k … 10 k Gaussian subsets (a random sample of rows, seed 0) of real scenes at SH 0–3:

- guitar (``splats/guitar.ply``, SH 0, real) and guitar SH 1 / SH 3 (guitar plus synthetic higher
  SH: N(0, 0.05²) coefficients, seed 1; no real SH 1/3 scene is in ``shared/data``);
- playbot (``splats/playbot_sog``, SH 2, real);
- any ``--scene NAME=PATH[#shD]`` (e.g. a trainer's SH 3 PLY).

Timing as bench/codec_real.py: process CPU time on one core, best call of at least ``--repeats``
and as many as fill ``--min-total`` seconds, after warm-up; gunzip is zlib inflating ``gzip -9`` of
the raw binary PLY in the same process; encode includes choosing the scene's steps (quality 2,
``relative_to``, ``for_shared_sh``) as ``gs-mapping encode --relative`` does. Each row also records
the sha256 of the encoded bytes (the speed work must not change them). First-call cost (loading
the compiled loops) is reported apart.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import platform
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from codec_real import SPLATS, load_scene, raw_ply  # noqa: E402
from common import best_time, log, save_text  # noqa: E402

from gs_map_share.quantize import QuantParams  # noqa: E402
from gs_map_share.snapshot import decode_map, encode_map  # noqa: E402
from gs_mapping.gaussians import GaussianMap  # noqa: E402

OUT = ROOT / "bench" / "results"
SIZES = (1000, 2000, 5000, 10000)
LEVELS = (5, 1)  # progressive (the CLI's default) and single level


def with_sh(g: GaussianMap, degree: int, seed: int = 1) -> GaussianMap:
    """``g`` (SH 0) with synthetic higher-order SH coefficients, N(0, 0.05²)."""
    rng = np.random.default_rng(seed)
    rest = (rng.standard_normal((len(g), (degree + 1) ** 2 - 1, 3)) * 0.05).astype(np.float32)
    return GaussianMap(
        sh_degree=degree,
        means=g.means,
        quats=g.quats,
        log_scales=g.log_scales,
        opacity_logits=g.opacity_logits,
        sh=np.concatenate([g.sh[:, :1], rest], axis=1),
    )


def subset(g: GaussianMap, n: int) -> GaussianMap:
    return g.subset(np.sort(np.random.default_rng(0).choice(len(g), n, replace=False)))


def scenes(extra: list[str]) -> dict:
    guitar = load_scene(SPLATS / "guitar.ply")
    out = {
        "guitar (SH 0)": guitar,
        "guitar + synthetic SH 1": with_sh(guitar, 1),
        "playbot (SH 2)": load_scene(SPLATS / "playbot_sog"),
        "guitar + synthetic SH 3": with_sh(guitar, 3),
    }
    for spec in extra:
        name, _, path = spec.partition("=")
        out[name] = load_scene(path)
    return out


def measure(g: GaussianMap, levels: int, repeats: int, min_total: float) -> dict:
    n = len(g)
    gz = gzip.compress(raw_ply(g), 9)
    t_gunzip, _ = best_time(lambda: zlib.decompress(gz, 31), repeats, min_total, 2000)

    def encode():
        p = QuantParams.from_quality(2).relative_to(g).for_shared_sh(g)
        return encode_map(g, p, n_levels=levels)[0]

    te, data = best_time(encode, repeats, min_total, 2000)
    td, _ = best_time(lambda: decode_map(data), repeats, min_total, 2000)
    return {
        "gaussians": n,
        "sh_degree": g.sh_degree,
        "levels": levels,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "gunzip_ms": t_gunzip * 1e3,
        "decode_ms": td * 1e3,
        "decode_over_gunzip": td / t_gunzip,
        "encode_ms": te * 1e3,
        "encode_mgauss_per_s": n / te / 1e6,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--scene", action="append", default=[], help="NAME=PATH[#shD], added to the built-in ones"
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-total", type=float, default=0.3, help="seconds of calls per figure (best call)")
    ap.add_argument("--label", default="", help="results file suffix (e.g. before)")
    args = ap.parse_args(argv)
    all_scenes = scenes(args.scene)
    t = time.process_time()
    decode_map(encode_map(subset(all_scenes["guitar (SH 0)"], 1000))[0])
    first = time.process_time() - t  # the compiled loops load from numba's cache (compile: once)
    rows = []
    for name, g in all_scenes.items():
        for n in [s for s in SIZES if s <= len(g)]:
            part = subset(g, n)
            for levels in LEVELS:
                row = {"scene": name, **measure(part, levels, args.repeats, args.min_total)}
                log(f"{name} {n} L{levels}: {row}")
                rows.append(row)
    import numba  # noqa: E402  (the versions only)

    versions = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__}
    machine = (
        f"{platform.machine()} {platform.processor() or ''} {len(__import__('os').sched_getaffinity(0))} CPUs"
    )
    out = {"machine": machine, "versions": versions, "first_call_s": first, "rows": rows}
    stem = "codec_small" + (f"_{args.label}" if args.label else "")
    (OUT / f"{stem}.json").write_text(json.dumps(out, indent=1) + "\n")
    save_text(OUT / f"{stem}.md", report(out))


def report(out: dict) -> str:
    lines = [
        "# Codec on small real scenes (bench/codec_small.py)",
        "",
        f"Machine: {out['machine']}; versions: {json.dumps(out['versions'])}. First call (loading the "
        f"compiled loops from numba's cache): {out['first_call_s']:.2f} s, excluded below.",
        "Times: CPU ms, one core, best call; subsets (random rows, seed 0) of the scene; quality 2. Targets "
        "(issue 17): decode ≤ gunzip of the raw PLY (ratio ≤ 1), encode ≥ 0.5 M Gaussians/s.",
        "",
        "| scene | Gaussians | levels | B/G | gunzip ms | decode ms | decode / gunzip | encode ms | encode MG/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        lines.append(
            f"| {r['scene']} | {r['gaussians']} | {r['levels']} | {r['bytes'] / r['gaussians']:.2f} | "
            f"{r['gunzip_ms']:.3f} | {r['decode_ms']:.3f} | {r['decode_over_gunzip']:.2f} | "
            f"{r['encode_ms']:.2f} | {r['encode_mgauss_per_s']:.2f} |"
        )
    rows = out["rows"]
    dec = [f"{r['scene']} {r['gaussians']} L{r['levels']}" for r in rows if r["decode_over_gunzip"] <= 1]
    enc = [f"{r['scene']} {r['gaussians']} L{r['levels']}" for r in rows if r["encode_mgauss_per_s"] >= 0.5]
    lines += ["", f"Decode ≤ gunzip in {len(dec)} of {len(rows)} rows: {', '.join(dec) or 'none'}."]
    lines += [f"Encode ≥ 0.5 M Gaussians/s in {len(enc)} of {len(rows)} rows: {', '.join(enc) or 'none'}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
