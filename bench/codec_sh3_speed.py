"""Codec speed on one core on SH 3 (issue 17: ≥ 0.5 M Gaussians/s encoding): ``encode_map`` and
``decode_map`` of a 1M-Gaussian SH 3 scene (guitar tiled 11× along x, synthetic SH 3 as
bench/codec_small.py's ``with_sh``) and of playbot (SOG, SH 2), progressive (5 levels) and single
level, quality 2 relative to the scene with shared SH steps (``QuantParams.from_quality(2)
.relative_to(g).for_shared_sh(g)``).

Each code version runs in a subprocess of its own (``--worker SRC``) with NUMBA_NUM_THREADS=1:
this checkout's src and, with ``--base COMMIT``, that commit's src (``git archive`` into a temporary
folder), alternately for ``--rounds`` rounds; a figure is the best CPU time (``time.process_time``:
other load on the machine counts less) over every repeat of every round. The encoded bytes'
sha256 of both versions are recorded and must agree (the speed work changes no byte).

    .venv/bin/python bench/codec_sh3_speed.py [--base COMMIT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SPLATS = Path(os.environ.get("GS_MAPPING_SHARED_DATA", ROOT.parent / "shared" / "data")) / "splats"
SH3_TILES = 11  # guitar (~99k Gaussians) × 11 ≈ 1.09 M


def sh3_scene(tiles: int):
    """guitar tiled ``tiles`` times along x (1.1 × its extent apart), with synthetic SH 3."""
    import numpy as np
    from codec_small import with_sh

    from gs_mapping.gaussians import GaussianMap
    from gs_mapping.splat_formats import load_splats

    g = load_splats(SPLATS / "guitar.ply")
    step = float(np.ptp(g.means[:, 0])) * 1.1
    off = np.zeros((tiles * len(g), 3), np.float32)
    off[:, 0] = np.repeat(np.arange(tiles) * step, len(g))
    big = GaussianMap(
        sh_degree=0,
        means=np.tile(g.means, (tiles, 1)) + off,
        quats=np.tile(g.quats, (tiles, 1)),
        log_scales=np.tile(g.log_scales, (tiles, 1)),
        opacity_logits=np.tile(g.opacity_logits, tiles),
        sh=np.tile(g.sh, (tiles, 1, 1)),
    )
    return with_sh(big, 3)


def worker(tiles: int, repeats: int) -> dict:
    """Times of the gs_map_share on sys.path (the caller puts it first)."""
    import numpy as np

    from gs_map_share.quantize import QuantParams
    from gs_map_share.snapshot import decode_map, encode_map
    from gs_mapping.splat_formats import load_splats

    def best(fn):
        t, out = None, None
        for _ in range(repeats):
            c = time.process_time()
            out = fn()
            c = time.process_time() - c
            t = c if t is None else min(t, c)
        return t, out

    scenes = {
        f"guitar×{tiles} + synthetic SH 3": sh3_scene(tiles),
        "playbot (SH 2)": load_splats(SPLATS / "playbot_sog"),
    }
    warm = next(iter(scenes.values())).subset(np.arange(5000))  # compile / load numba's caches first
    for levels in (5, 1):
        decode_map(
            encode_map(
                warm, QuantParams.from_quality(2).relative_to(warm).for_shared_sh(warm), n_levels=levels
            )[0]
        )
    out = {}
    for name, g in scenes.items():
        p = QuantParams.from_quality(2).relative_to(g).for_shared_sh(g)
        for levels in (5, 1):
            te, (data, _) = best(lambda g=g, p=p, levels=levels: encode_map(g, p, n_levels=levels))
            td, _ = best(lambda data=data: decode_map(data))
            out[f"{name}, levels {levels}"] = {
                "gaussians": len(g),
                "bytes_per_gaussian": len(data) / len(g),
                "sha256": hashlib.sha256(data).hexdigest()[:16],
                "encode_cpu_s": te,
                "decode_cpu_s": td,
            }
    return out


def run_worker(src: Path, tiles: int, repeats: int) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "numba_codec_sh3_speed"))
    cmd = [sys.executable, __file__, "--worker", str(src), "--tiles", str(tiles), "--repeats", str(repeats)]
    res = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(res.stdout)


def base_src(commit: str, into: Path) -> Path:
    """``commit``'s src folder, extracted into ``into``."""
    tar = into / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(tar), commit, "src"], check=True)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data") if sys.version_info >= (3, 12) else t.extractall(into)
    return into / "src"


def markdown(data: dict) -> str:
    lines = [
        "# Codec speed on SH 3 (one core)",
        "",
        f"CPU time (process_time), best of {data['repeats']} repeats × {data['rounds']} rounds, "
        f"NUMBA_NUM_THREADS=1; machine: {data['machine']}. Quality 2 relative to the scene, shared SH steps.",
        "MG/s = million Gaussians per CPU second.",
        "",
        "| scene | B/G | "
        + " | ".join(f"encode MG/s {v} | decode MG/s {v}" for v in data["versions"])
        + " |",
        "|---|---|" + "---|---|" * len(data["versions"]),
    ]
    first = data["versions"][0]
    for case, r in data["results"][first].items():
        row = [case, f"{r['bytes_per_gaussian']:.3f}"]
        for v in data["versions"]:
            x = data["results"][v][case]
            row += [
                f"{x['gaussians'] / x['encode_cpu_s'] / 1e6:.3f}",
                f"{x['gaussians'] / x['decode_cpu_s'] / 1e6:.3f}",
            ]
        lines.append("| " + " | ".join(row) + " |")
    if len(data["versions"]) > 1:
        lines += ["", f"Encoded bytes identical across versions: {data['bytes_identical']}."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--base", help="also time this commit's src, alternately with this checkout's")
    ap.add_argument("--tiles", type=int, default=SH3_TILES)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--note", default="", help="said with the machine (e.g. 'loaded by other jobs')")
    args = ap.parse_args()
    sys.path.insert(0, str(BENCH))
    if args.worker is not None:
        sys.path.insert(0, str(args.worker))
        print(json.dumps(worker(args.tiles, args.repeats)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"this": ROOT / "src"}
        if args.base:
            versions = {f"base {args.base}": base_src(args.base, Path(tmp)), **versions}
        results: dict = {}
        for r in range(args.rounds):
            for v, src in versions.items():
                print(f"round {r + 1}: {v}", file=sys.stderr, flush=True)
                got = run_worker(src, args.tiles, args.repeats)
                for case, x in got.items():
                    old = results.setdefault(v, {}).setdefault(case, x)
                    for k in ("encode_cpu_s", "decode_cpu_s"):
                        old[k] = min(old[k], x[k])
    shas = {v: {c: x["sha256"] for c, x in res.items()} for v, res in results.items()}
    data = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
        + f", load average {os.getloadavg()[0]:.1f} at the end"
        + (f", {args.note}" if args.note else ""),
        "python": platform.python_version(),
        "repeats": args.repeats,
        "rounds": args.rounds,
        "versions": list(versions),
        "bytes_identical": len({json.dumps(s, sort_keys=True) for s in shas.values()}) == 1,
        "results": results,
    }
    sys.path.insert(0, str(ROOT / "src"))
    from common import write_results

    print(write_results("codec_sh3_speed", data, markdown(data)))
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
