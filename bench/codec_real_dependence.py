"""How much playbot's quantised attributes say about each other beyond what the codec's contexts use.

    nice .venv/bin/python bench/codec_real_dependence.py [--scene playbot] [--quality 2]

Issue 17's last open goal (playbot single level ≤ 0.7× SOG; 0.75× today) needs ~6.5 % fewer bytes
at SOG's PSNR. ``codec_real_probe.py`` bounds allocation, render-aware steps and codebooks; this
script bounds *context modelling*: coding a value in the context of something the decoder already
has. Each figure is a code length with a sequential adaptive model (Dirichlet ½ per symbol, so the
cost of learning each context's table is included and more contexts are not free), on the scene
quantised at ``--quality`` (scale-relative presets, single level, the octree's order):

- ``palette index``: the higher-SH palette row of each Gaussian (the codec: first-use streams,
  ~14 bits a Gaussian on playbot) — how often it repeats one of the last m rows in coding order or
  one of its k nearest neighbours' rows, and its code length in contexts of the Gaussian's DC
  brightness, opacity or size (quantile buckets) against one context;
- ``channels``: each attribute channel's quantised values (not the codec's predicted residuals)
  in contexts of an attribute decoded before it (opacity before scales and DC; scales before
  rotations) against one context. The codec has coarse forms of two of these already (scales and
  DC in two contexts by opacity on a faint lattice; rotation components in contexts of their bits,
  set by anisotropy), so the gains over it are smaller still.

Writes bench/results/codec_real_dependence.json and .md. About a minute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.special import gammaln

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from codec_real import SCENES  # noqa: E402
from common import log, machine_info, write_results  # noqa: E402

from gs_map_share.palette import unique_rows  # noqa: E402
from gs_map_share.quantize import QuantParams, to_qmap  # noqa: E402
from gs_map_share.snapshot import spatial_ids  # noqa: E402
from gs_mapping.splat_formats import load_splats  # noqa: E402

ALPHA = 0.5  # the adaptive model's prior count per symbol (Krichevsky–Trofimov)


def adaptive_bits(x: np.ndarray, ctx: np.ndarray | None = None) -> float:
    """Bits to code ``x`` (integers) with a sequential Dirichlet-½ model per context: the log of the
    Dirichlet-multinomial probability of each context's counts (order-free, exact)."""
    x = np.asarray(x, np.int64)
    x = x - x.min()
    k = int(x.max()) + 1
    ctx = np.zeros(len(x), np.int64) if ctx is None else np.asarray(ctx, np.int64)
    total = 0.0
    for c in np.unique(ctx):
        counts = np.bincount(x[ctx == c], minlength=k).astype(np.float64)
        m = counts.sum()
        total -= (
            gammaln(counts + ALPHA).sum() - k * gammaln(ALPHA) + gammaln(k * ALPHA) - gammaln(m + k * ALPHA)
        )
    return total / np.log(2)


def buckets(v: np.ndarray, n: int) -> np.ndarray:
    """Quantile buckets 0..n−1 of ``v`` (what a context of n values could be)."""
    return np.searchsorted(np.quantile(v, np.linspace(0, 1, n + 1)[1:-1]), v)


def palette_index(q, n_buckets: int) -> dict:
    from scipy.spatial import cKDTree

    rows = np.ascontiguousarray(q.rest.reshape(len(q), -1), np.int32)
    _, idx = unique_rows(rows)
    n = len(idx)
    recent = {}
    for m in (1, 8, 64):
        hit = np.zeros(n, bool)
        for d in range(1, m + 1):
            hit[d:] |= idx[d:] == idx[:-d]
        recent[str(m)] = float(hit.mean())
    pos = q.pos.astype(np.float64)
    _, nn = cKDTree(pos).query(pos, k=17)
    near = {str(k): float((idx[nn[:, 1 : k + 1]] == idx[:, None]).any(axis=1).mean()) for k in (1, 8, 16)}
    one = adaptive_bits(idx)
    ctx = {
        "DC brightness": q.dc.sum(axis=1),
        "opacity": q.op.ravel(),
        "size (sum of log-scales)": q.scale.sum(axis=1),
    }
    gain = {name: (one - adaptive_bits(idx, buckets(v, n_buckets))) / n / 8 for name, v in ctx.items()}
    out = {"rows": int(idx.max()) + 1, "repeats_last_m": recent, "repeats_knn": near, "gain_bpg": gain}
    log(f"  palette index: {out}")
    return out


def channels(q, n_buckets: int) -> dict:
    op = q.op.ravel()
    size = q.scale.sum(axis=1)
    spread = q.scale.max(axis=1) - q.scale.min(axis=1)
    plan = [(f"scale {j}", q.scale[:, j], "opacity", op) for j in range(3)]
    plan += [(f"DC {j}", q.dc[:, j], "opacity", op) for j in range(3)]
    plan += [(f"DC {j}", q.dc[:, j], "size", size) for j in range(3)]
    plan += [(f"rotation {j}", q.rot[:, j], "anisotropy", spread) for j in range(3)]
    plan += [("opacity", op, "size", size)]
    n = len(q)
    out = []
    for name, v, by, c in plan:
        one = adaptive_bits(v)
        two = adaptive_bits(v, buckets(c, n_buckets))
        out.append({"channel": name, "context": by, "bits": one / n, "gain_bpg": (one - two) / n / 8})
        log(f"  {name} | {by}: {out[-1]}")
    return {"rows": out}


def markdown(res: dict) -> str:
    p = res["palette_index"]
    lines = [
        f"# Dependence the codec's contexts do not use: {res['scene']} (bench/codec_real_dependence.py)",
        "",
        f"Machine: {res['machine']['platform']}, {res['machine']['cpus']} CPUs. Quality {res['quality']} "
        f"(scale-relative), {res['gaussians']} Gaussians, {res['bpg']:.2f} B/G single level; the goal needs "
        "~0.8 B/G (6.5 %) at SOG's PSNR. Code lengths: sequential adaptive models (Dirichlet ½), learning "
        f"cost included; contexts are {res['buckets']} quantile buckets.",
        "",
        f"## Higher-SH palette index ({p['rows']} rows)",
        "",
        "Repeats one of the last m rows in coding order: "
        + ", ".join(f"m = {k}: {100 * v:.2f} %" for k, v in p["repeats_last_m"].items())
        + "; one of its k nearest neighbours' rows: "
        + ", ".join(f"k = {k}: {100 * v:.2f} %" for k, v in p["repeats_knn"].items())
        + ".",
        "",
        "| context | gain B/G |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:+.3f} |" for k, v in p["gain_bpg"].items()]
    lines += ["", "## Channels (quantised values, not the codec's residuals)", ""]
    lines += ["| channel | context | bits a value alone | gain B/G |", "|---|---|---|---|"]
    lines += [
        f"| {r['channel']} | {r['context']} | {r['bits']:.2f} | {r['gain_bpg']:+.3f} |"
        for r in res["channels"]["rows"]
    ]
    best = {}
    for r in res["channels"]["rows"]:
        best[r["channel"]] = max(best.get(r["channel"], 0.0), r["gain_bpg"])
    total = sum(best.values()) + max(0.0, max(p["gain_bpg"].values()))
    lines += [
        "",
        f"Every channel's best context and the index's together: {total:.3f} B/G "
        f"({100 * total / res['bpg']:.1f} % of the bytes), if the codec's residuals kept all of it and its own "
        "contexts (faint lattice by opacity, rotation bits by anisotropy) had none of it.",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", default="playbot", choices=sorted(SCENES))
    ap.add_argument("--quality", type=int, default=2)
    ap.add_argument("--buckets", type=int, default=8)
    a = ap.parse_args()
    from gs_map_share.snapshot import encode_map

    g = load_splats(SCENES[a.scene])
    p = QuantParams.from_quality(a.quality).relative_to(g).for_shared_sh(g)
    q = spatial_ids(to_qmap(g, p), p)
    bpg = len(encode_map(g, p, n_levels=1)[0]) / len(g)
    res = {"scene": a.scene, "machine": machine_info(), "quality": a.quality, "buckets": a.buckets}
    res.update(gaussians=len(g), bpg=bpg)
    res["palette_index"] = palette_index(q, a.buckets) if g.sh.shape[1] > 1 else {}
    res["channels"] = channels(q, a.buckets)
    write_results("codec_real_dependence", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
