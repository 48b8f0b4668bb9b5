"""Playbot's single-level bytes stream by stream, each step's price in dB, and the SH palette's
own coding: probes for issue 17's last goal (≤ 0.7× SOG, 12.0 B/G at 54.28 dB; 12.83 today).

    nice .venv/bin/python bench/codec_real_probe3.py

Same scene, views and renderer as ``codec_real.py`` and the other probes (``codec_real_probe.py``'s
ladder: quality 1 → 2, linear in PSNR against log bytes). What it measures:

- ``breakdown``: the bytes of each kind of stream (the encoder's own accounting, ``stats``) at
  qualities 1 and 2;
- ``steps``: each preset step ×1.25 alone — B/G saved, dB lost, dB a B/G (the ladder's is ≈ 2.44:
  a step dearer than that is worth making finer, a cheaper one coarser);
- ``row_steps``: the SH palette's rows with a step per row from its number of users (a row's error
  lands on all its users, its bits are paid once: balancing gives step ∝ users^−½). The rows'
  bytes are the codec's own coefficient coder on the rows' codes; the PSNR is the decoded scene
  with its higher SH replaced by the rows so quantised. A decoder would know the counts once it had
  read the indices (read before the rows);
- ``sh_off``: the higher SH zeroed for the Gaussians least weighted by opacity (× coefficient
  norm) — their palette indices would then cost a flag;
- ``palette``: the palette's structure: the index's information bound (given the counts, the rows'
  order free) against its coded bits; the rows' decorrelation left beyond the colour channels (a
  24 × 24 transform); rows sorted along principal axes and coded as differences.

Writes bench/results/codec_real_probe3.json and .md. Takes ~8 min on one core.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys  # noqa: E402
from dataclasses import replace  # noqa: E402
from math import lgamma, log  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from codec_real import SCENES, psnr_vs  # noqa: E402
from codec_real_probe import Probe  # noqa: E402
from common import log as say  # noqa: E402
from common import machine_info, write_results  # noqa: E402

from gs_map_share.bitio import Writer  # noqa: E402
from gs_map_share.palette import palette_of  # noqa: E402
from gs_map_share.quantize import to_qmap  # noqa: E402
from gs_map_share.section import _columns, _put_sh_coefficient, octree_rows  # noqa: E402
from gs_map_share.snapshot import decode_map, encode_map  # noqa: E402
from gs_mapping.gaussians import GaussianMap  # noqa: E402

CLAMP = 64.0  # quantize._SH_CLAMP


def rows_bytes(codes: np.ndarray) -> int:
    """Bytes of int ``codes`` (rows, 3·(K−1)) through the codec's coefficient coder (as the palette's
    rows are coded)."""
    w = Writer({})
    cols = _columns(np.ascontiguousarray(codes, np.int32))
    for j in range(0, codes.shape[1], 3):
        _put_sh_coefficient(w, cols[j : j + 3])
    return sum(len(x) for x in w.parts)


def weighted(idx: np.ndarray, weights: np.ndarray, m: int) -> np.ndarray:
    """(w / mean w)^−½ of each row's summed users' ``weights``, kept to ¼..16."""
    w = np.bincount(idx, weights=weights, minlength=m)
    return np.clip(np.sqrt(w.mean() / np.maximum(w, 1e-12)), 0.25, 16)


def with_sh(dec: GaussianMap, rest: np.ndarray) -> GaussianMap:
    k = dec.num_sh
    sh = np.array(dec.sh, np.float32).reshape(len(dec), 3 * k)
    sh[:, 3:] = rest
    f = ("sh_degree", "tile_size", "means", "quats", "log_scales", "opacity_logits")
    return GaussianMap(**{a: getattr(dec, a) for a in f}, sh=sh.reshape(len(dec), k, 3))


def main() -> int:
    pr = Probe(SCENES["playbot"])
    g, n, k = pr.g, pr.n, pr.g.num_sh
    say(f"ladder: {pr.ladder}")
    src = np.ascontiguousarray(np.asarray(g.sh, np.float32).reshape(n, 3 * k)[:, 3:])
    first, idx = palette_of(src)
    m = len(first)
    cnt = np.bincount(idx, minlength=m)
    res: dict = {
        "scene": "playbot",
        "machine": machine_info(),
        "ladder": {str(q): v for q, v in pr.ladder.items()},
    }
    res["users"] = {
        "rows": m,
        "min": int(cnt.min()),
        "median": float(np.median(cnt)),
        "mean": float(cnt.mean()),
        "max": int(cnt.max()),
        "used once": int((cnt == 1).sum()),
        "AM/GM": float(cnt.mean() / np.exp(np.log(cnt).mean())),
    }
    res["breakdown"], res["steps"], res["row_steps"] = {}, {}, []
    for q in (1, 2):
        p = pr.params(q)
        st: dict = {}
        data = encode_map(g, p, n_levels=1, stats=st)[0]
        res["breakdown"][str(q)] = {
            key: v / n for key, v in sorted(st.items(), key=lambda kv: -kv[1]) if v > 100
        }
        res["breakdown"][str(q)]["total"] = len(data) / n
        base = pr.ladder[q]
        moves = {
            "pos_step": {"pos_step": p.pos_step * 1.25},
            "scale_step": {"scale_step": p.scale_step * 1.25},
            "opacity_step": {"opacity_step": p.opacity_step * 1.25},
            "dc_step": {"dc_step": p.dc_step * 1.25},
            "rest_step": {"rest_step": p.rest_step * 1.25},
        }
        res["steps"][str(q)] = {}
        for name, mv in moves.items():
            pt = pr.point(replace(p, **mv))
            db, dp = pt["bpg"] - base["bpg"], pt["psnr"] - base["psnr"]
            res["steps"][str(q)][name] = {"dbpg": db, "ddb": dp, "gain": pr.gain(pt)}
            say(q, name, res["steps"][str(q)][name])
        # a step per palette row from its number of users
        dec = decode_map(data)
        gi = idx[octree_rows(to_qmap(g, p), p)]  # each decoded Gaussian's source row
        steps = np.repeat(p.rest_steps(k).astype(np.float32), 3)
        pal = np.clip(src[first], -CLAMP, CLAMP)
        b0 = rows_bytes(np.rint(pal / steps))
        ratio = np.sqrt(cnt.mean() / cnt)
        opac = 1 / (1 + np.exp(-np.asarray(g.opacity_logits, np.float64)))
        area = np.exp(np.sort(np.asarray(g.log_scales, np.float64), 1)[:, 1:].sum(1))
        rules = {
            "uniform (today)": np.ones(m),
            "(users/mean)^-1/2": ratio,
            "half step × round(2·(users/mean)^-1/2), 1..8": 0.5 * np.clip(np.rint(ratio / 0.5), 1, 8),
            "round((users/mean)^-1/2), 1..8": np.clip(np.rint(ratio), 1, 8),
            "half step × (1, 2, 3 for ≥ 16, ≥ 4, fewer users)": 0.5
            * np.where(cnt >= 16, 1, np.where(cnt >= 4, 2, 3)),
            "(users/mean)^-1": ratio**2,
            "(Σ users' opacity / mean)^-1/2": weighted(idx, opac, m),
            "(Σ users' opacity × area / mean)^-1/2": weighted(idx, opac * area, m),
        }
        for name, f in rules.items():
            stp = steps[None, :] * f[:, None].astype(np.float32)
            codes = np.rint(pal / stp)
            pt = {"bpg": (len(data) - b0 + rows_bytes(codes)) / n}
            pt["psnr"] = psnr_vs(with_sh(dec, (codes * stp).astype(np.float32)[gi]), pr.cams, pr.ref)
            row = {"quality": q, "rule": name, "rows_bpg": rows_bytes(codes) / n, **pt, "gain": pr.gain(pt)}
            res["row_steps"].append(row)
            say(row)
        if q == 1:  # higher SH off for the least weighted
            op = 1 / (1 + np.exp(-np.asarray(g.opacity_logits, np.float64)))
            norm = np.sqrt((src.astype(np.float64) ** 2).sum(1))
            res["sh_off"] = []
            rest = np.array(dec.sh, np.float32).reshape(n, 3 * k)[:, 3:]
            order = octree_rows(to_qmap(g, p), p)
            for cname, crit in (("opacity", op), ("opacity × SH norm", op * norm)):
                for share in (0.05, 0.1, 0.2):
                    off = (crit <= np.quantile(crit, share))[order]
                    r = rest.copy()
                    r[off] = 0
                    ps = psnr_vs(with_sh(dec, r), pr.cams, pr.ref)
                    res["sh_off"].append({"by": cname, "share": share, "psnr": ps})
                    say(res["sh_off"][-1])
            res["sh_off"].append(
                {"by": "all", "share": 1.0, "psnr": psnr_vs(with_sh(dec, rest * 0), pr.cams, pr.ref)}
            )
    # the palette's structure
    l2 = 1 / log(2)
    seq = (lgamma(n + 1) - sum(lgamma(int(c) + 1) for c in cnt)) * l2
    free = lgamma(m + 1) * l2
    pc = np.bincount(cnt)
    pc = pc[pc > 0] / m
    counts_bits = -(pc * np.log2(pc)).sum() * m
    pal_res: dict = {
        "index bound bits/G": (seq - free + counts_bits) / n,
        "index coded bits/G": 8 * res["breakdown"]["1"].get("sh_palette_index", 0.0),
    }
    p = pr.params(1)
    steps = np.repeat(p.rest_steps(k), 3)
    x = np.clip(src[first], -CLAMP, CLAMP) / steps
    x -= x.mean(0)
    cov = np.cov(x.T)
    full = 0.5 * (np.log2(np.diag(cov)).sum() - np.log2(np.linalg.eigvalsh(cov)).sum())
    rgb = sum(
        0.5 * (np.log2(np.diag(c3)).sum() - np.log2(np.linalg.eigvalsh(c3)).sum())
        for c3 in (cov[j : j + 3, j : j + 3] for j in range(0, x.shape[1], 3))
    )
    pal_res["transform gain bits/row: 24×24"] = full
    pal_res["transform gain bits/row: 3×3 per coefficient"] = rgb
    codes = np.rint(np.clip(src[first], -CLAMP, CLAMP) / steps.astype(np.float32))
    pal_res["rows B/G, order of first use"] = rows_bytes(codes) / n
    _, _, vt = np.linalg.svd(x[::4], full_matrices=False)
    pcs = x @ vt[:4].T
    for nd, bits in ((1, 16), (3, 6), (4, 4)):
        span = np.ptp(pcs[:, :nd], 0)
        qv = np.rint((pcs[:, :nd] - pcs[:, :nd].min(0)) / span * (2**bits - 1)).astype(np.int64)
        key = np.zeros(m, np.int64)
        for b in range(bits - 1, -1, -1):
            for d in range(nd):
                key = key * 2 + ((qv[:, d] >> b) & 1)
        c = codes[np.lexsort((pcs[:, 0], key))]
        c[1:] -= c[:-1].copy()
        pal_res[f"rows B/G, Morton order of {nd} principal axes ({bits} bits), differences"] = (
            rows_bytes(c) / n
        )
    res["palette"] = pal_res
    write_results("codec_real_probe3", res, markdown(res))
    return 0


def markdown(res: dict) -> str:
    lad = res["ladder"]
    lines = [
        "# Playbot single level: streams, steps and the SH palette (bench/codec_real_probe3.py)",
        "",
        f"Machine: {res['machine'].get('platform', '')}. Single level; PSNR of the decoded scene against the "
        "uncompressed one over codec_real.py's 6 orbit views (our CPU renderer). Gains: bytes at equal PSNR "
        f"against the ladder quality 1 → 2 ({lad['1']['bpg']:.2f} B/G at {lad['1']['psnr']:.2f} dB → "
        f"{lad['2']['bpg']:.2f} at {lad['2']['psnr']:.2f}); the goal needs 6.5 % (0.83 B/G) at SOG's 54.28 dB.",
        "",
        "## Bytes per stream (B/G)",
        "",
        "| stream | quality 1 | quality 2 |",
        "|---|---|---|",
    ]
    b1, b2 = res["breakdown"]["1"], res["breakdown"]["2"]
    for key in b1:
        lines.append(f"| {key} | {b1[key]:.3f} | {b2.get(key, 0.0):.3f} |")
    lines += [
        "",
        "## Each step ×1.25 alone",
        "",
        "| quality | step | ΔB/G | ΔdB | dB a B/G | vs ladder |",
        "|---|---|---|---|---|---|",
    ]
    for q, rows in res["steps"].items():
        for name, v in rows.items():
            slope = f"{v['ddb'] / v['dbpg']:.2f}" if abs(v["dbpg"]) > 1e-3 else "–"
            lines.append(
                f"| {q} | {name} | {v['dbpg']:+.3f} | {v['ddb']:+.3f} | {slope} | {100 * v['gain']:+.2f} % |"
            )
    u = res["users"]
    lines += [
        "",
        "## A step per palette row from its users",
        "",
        f"{u['rows']} rows; users a row: min {u['min']}, median {u['median']:.0f}, mean {u['mean']:.2f}, max "
        f"{u['max']}; {u['used once']} used once; AM/GM {u['AM/GM']:.3f} (≈ {0.5 * np.log2(u['AM/GM']):.2f} bits a "
        "coefficient at equal distortion).",
        "",
        "| quality | row step (× the preset's) | rows B/G | B/G | PSNR dB | vs ladder |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["row_steps"]:
        lines.append(
            f"| {r['quality']} | {r['rule']} | {r['rows_bpg']:.3f} | {r['bpg']:.3f} | {r['psnr']:.2f} | {100 * r['gain']:+.2f} % |"
        )
    lines += [
        "",
        "## Higher SH off for the least weighted (quality 1)",
        "",
        "| by | share | PSNR dB |",
        "|---|---|---|",
    ]
    for r in res["sh_off"]:
        lines.append(f"| {r['by']} | {100 * r['share']:.0f} % | {r['psnr']:.2f} |")
    lines += ["", "## The palette's structure (quality 1)", "", "| what | value |", "|---|---|"]
    for key, v in res["palette"].items():
        lines.append(f"| {key} | {v:.3f} |")
    best = max((r for r in res["row_steps"] if r["quality"] == 1), key=lambda r: r["gain"])
    pal = res["palette"]
    t24 = pal["transform gain bits/row: 24×24"] - pal["transform gain bits/row: 3×3 per coefficient"]
    lines += [
        "",
        "## Reading",
        "",
        f"- No stream has 0.83 B/G to give at equal PSNR. The index ({b1.get('sh_palette_index', 0):.2f} B/G) is "
        f"{pal['index coded bits/G'] - pal['index bound bits/G']:.2f} bits a Gaussian above its information bound "
        "(the sequence given the rows' counts, less the free order of the rows, plus the counts); the rows "
        f"({b1.get('sh_rest', 0):.2f} B/G) have {t24:.2f} bits a row of linear dependence left beyond the colour "
        "channels the coder already predicts from one another, and sorting them along principal axes to code "
        "differences costs more than their order of first use (before the ~0.24 B/G the index would lose "
        "in a fixed row order).",
        f"- A step per row from its users is the one positive: best {100 * best['gain']:+.2f} % at quality 1 "
        f"({best['rule']}; weighting the users by opacity or opacity × area is worse); it needs a format "
        "change (the indices before the rows): not implemented.",
        "- The higher SH carries ~19 dB of the render (all off: 32 dB); turning it off even for the 5 % least "
        "weighted loses 3–6 dB against ~0.08 B/G of index: no.",
        "- The step prices repeat codec_real_probe.py's walk: at quality 2 the position step is cheap "
        "(1.15 dB a B/G) and the DC and higher-SH steps dear (4.3, 3.9): ~1 % from re-allocation, measured there.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
