"""Where playbot's missing single-level bytes are not: probes of the codec on a real trained scene.

    nice .venv/bin/python bench/codec_real_probe.py [--scene playbot] [--walk-steps 8]

Issue 17's last open goal is playbot at ≤ 0.7× SOG's bytes with a single level (0.75× today,
``bench/codec_real.py``). Each probe here asks whether one kind of change could close it, on the
same scene, views and renderer as ``codec_real.py`` (decoded scene vs uncompressed, 6 orbit views at
320×240, our CPU renderer), and states the answer as bytes at equal PSNR against the ladder's own
trade (quality 1 → 2, linear in PSNR against log bytes, as ``codec_real.interpolate``):

- ``attribution``: quality 2 with one attribute at a time restored to the source's exact values —
  how much of the distortion each attribute carries;
- ``walk``: greedy steps over the scale-relative preset's parameters (each step tries every
  parameter ×0.8 / ×1.25, or ±1 for the integer ones, and takes the best dB per byte), up from
  quality 1 and down from quality 2 — how far the presets are from their own best allocation;
- ``weights``: each Gaussian's total blending weight (the renderer's ``weight_sum``) over the
  bench's views and over 26 views of a sphere: the spread that render-aware steps could exploit
  (the AM–GM gap: bits a value at equal distortion with steps ∝ 1/√weight) and how well weights
  from other views predict the score's;
- ``codebook``: a source quantised on SOG's 256-entry codebooks (DC, higher SH) coded as its
  codebook indices (exact) instead of on our lattice.

Writes bench/results/codec_real_probe.json and .md. Takes ~15 min on one core (the walk ~80 % of it).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from codec_real import SCENES, orbit, psnr_vs  # noqa: E402
from common import log, machine_info, write_results  # noqa: E402

from gs_map_share.quantize import QuantParams, to_qmap  # noqa: E402
from gs_map_share.section import octree_rows  # noqa: E402
from gs_map_share.snapshot import decode_map, encode_map  # noqa: E402
from gs_mapping.camera import Camera  # noqa: E402
from gs_mapping.gaussians import GaussianMap  # noqa: E402
from gs_mapping.render import render  # noqa: E402
from gs_mapping.splat_formats import load_splats  # noqa: E402

torch.set_num_threads(1)
FIELDS = ("sh_degree", "tile_size", "means", "quats", "log_scales", "opacity_logits", "sh")


class Probe:
    def __init__(self, path: Path) -> None:
        self.g = load_splats(path)
        self.n = len(self.g)
        self.cams = orbit(self.g)
        self.ref = [render(self.g, c, backend="cpu").numpy()[0] for c in self.cams]
        self.ladder = {q: self.point(self.params(q)) for q in (1, 2)}

    def params(self, quality: int) -> QuantParams:
        return QuantParams.from_quality(quality).relative_to(self.g).for_shared_sh(self.g)

    def point(self, p: QuantParams, scene: GaussianMap | None = None, fix=None) -> dict:
        """B/G and PSNR of ``scene`` (default the source) through the codec; ``fix(decoded, rows)``
        may put exact values back (rows: the decoded rows' source rows)."""
        scene = self.g if scene is None else scene
        data = encode_map(scene, p, n_levels=1)[0]
        dec = decode_map(data)
        if fix is not None:
            dec = fix(dec, octree_rows(to_qmap(scene, p), p))
        return {"bpg": len(data) / self.n, "psnr": psnr_vs(dec, self.cams, self.ref)}

    def ladder_bpg(self, psnr: float) -> float:
        """The ladder's B/G at ``psnr`` (quality 1 → 2, linear in PSNR against log B/G, extended)."""
        a, b = self.ladder[1], self.ladder[2]
        t = (psnr - a["psnr"]) / (b["psnr"] - a["psnr"])
        return float(np.exp(np.log(a["bpg"]) + t * (np.log(b["bpg"]) - np.log(a["bpg"]))))

    def gain(self, pt: dict) -> float:
        """Fewer bytes than the ladder at the point's PSNR, as a fraction (positive: better)."""
        return 1.0 - pt["bpg"] / self.ladder_bpg(pt["psnr"])

    def scene_with(self, **fields) -> GaussianMap:
        a = {f: getattr(self.g, f) for f in FIELDS}
        a.update(fields)
        return GaussianMap(**a)


def attribution(pr: Probe) -> dict:
    p, g = pr.params(2), pr.g

    def restore(*names):
        def fix(dec, rows):
            a = {f: getattr(dec, f) for f in FIELDS}
            for f in names:
                if f == "dc":
                    a["sh"] = a["sh"].copy()
                    a["sh"][:, 0] = g.sh[rows, 0]
                elif f == "rest":
                    a["sh"] = a["sh"].copy()
                    a["sh"][:, 1:] = g.sh[rows, 1:]
                else:
                    a[f] = getattr(g, f)[rows]
            return GaussianMap(**a)

        return fix

    base = pr.ladder[2]["psnr"]
    out = {}
    for label, names in (
        ("positions", ("means",)),
        ("opacity", ("opacity_logits",)),
        ("scales and rotations", ("log_scales", "quats")),  # (one frame: the codes' axes are relabelled)
        ("DC colour", ("dc",)),
        ("higher SH", ("rest",)),
    ):
        out[label] = pr.point(p, fix=restore(*names))["psnr"] - base
        log(f"  exact {label}: +{out[label]:.2f} dB")
    return out


def _moves(p: QuantParams, sign: int) -> dict:
    f = 0.8 if sign > 0 else 1.25
    out = {
        k: replace(p, **{k: getattr(p, k) * f})
        for k in ("pos_step", "opacity_step", "scale_step", "dc_step", "rest_step")
    }
    for k, d, lo, hi in (
        ("rot_bits", sign, 3, 16),
        ("faint_factor", -sign, 1, 8),
        ("faint_pos", -sign, 1, 8),
        ("faint_rot", -sign, 0, 3),
    ):
        try:
            if lo <= getattr(p, k) + d <= hi:
                out[k] = replace(p, **{k: getattr(p, k) + d})
        except Exception:  # (a combination QuantParams refuses: not a move)
            pass
    out["faint_below"] = replace(p, faint_below=p.faint_below - 2 * sign)
    return out


def walk(pr: Probe, start: int, sign: int, steps: int) -> list[dict]:
    """Greedy steps from quality ``start``: finer (sign +1, best dB per byte added) or coarser (−1,
    fewest dB per byte saved)."""
    p, cur = pr.params(start), pr.ladder[start]
    path = [{"move": f"quality {start}", **cur, "gain": pr.gain(cur)}]
    for _ in range(steps):
        best = None
        for k, q in _moves(p, sign).items():
            pt = pr.point(q)
            db, dp = pt["bpg"] - cur["bpg"], pt["psnr"] - cur["psnr"]
            if sign > 0:
                score = dp / db if db > 1e-6 else (np.inf if dp > 0 else -np.inf)
                better = best is None or score > best[0]
            else:
                score = dp / db if db < -1e-6 else (-np.inf if dp >= 0 else np.inf)
                better = best is None or score < best[0]
            if better:
                best = (score, k, q, pt)
        _, k, p, cur = best
        path.append({"move": k, **cur, "gain": pr.gain(cur)})
        log(
            f"  walk {sign:+d}: {k} → {cur['bpg']:.3f} B/G, {cur['psnr']:.2f} dB, {100 * pr.gain(cur):+.2f} % vs ladder"
        )
    return path


def _sphere(g: GaussianMap, count: int) -> list[Camera]:
    """``count`` views on a Fibonacci sphere at codec_real.orbit's radius and intrinsics."""
    c = np.median(g.means, axis=0).astype(np.float64)
    r = 1.6 * float(np.percentile(np.linalg.norm(g.means - c, axis=1), 90))
    K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
    i = np.arange(count) + 0.5
    phi, th = np.arccos(1 - 2 * i / count), np.pi * (1 + 5**0.5) * i
    cams = []
    for d in np.stack([np.cos(th) * np.sin(phi), np.cos(phi), np.sin(th) * np.sin(phi)], 1):
        eye = c + r * d
        z = (c - eye) / np.linalg.norm(c - eye)
        x = np.cross(z, [0, -1.0, 0] if abs(z[1]) < 0.99 else [1.0, 0, 0])
        x /= np.linalg.norm(x)
        T = np.eye(4)
        T[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
        T[:3, 3] = eye
        cams.append(Camera(K, 320, 240, T))
    return cams


def weights(pr: Probe) -> dict:
    def total(cams):
        return sum(render(pr.g, c, backend="cpu").meta["weight_sum"].numpy().astype(np.float64) for c in cams)

    w_bench, w_sphere = total(pr.cams), total(_sphere(pr.g, 26))
    out = {}
    for label, w in (("bench views", w_bench), ("26 sphere views", w_sphere)):
        clipped = np.maximum(w, 1e-2 * np.median(w[w > 0]))
        out[label] = {
            "zero_fraction": float((w == 0).mean()),
            "p10_p50_p90": [float(v) for v in np.quantile(w, [0.1, 0.5, 0.9])],
            "amgm_bits_per_value": float(0.5 * (np.log2(clipped.mean()) - np.log2(clipped).mean())),
        }
    order = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    out["rank_correlation"] = float(np.corrcoef(order(w_bench), order(w_sphere))[0, 1])
    log(f"  weights: {out}")
    return out


def codebook(pr: Probe, meta_path: Path) -> dict:
    """DC and higher SH coded as the indices of SOG's codebooks (values k·step, so the codes are
    the indices), the decoded scene given the exact values back."""
    meta = json.loads(meta_path.read_text())
    g, out = pr.g, {}
    for q in (1, 2):
        p = pr.params(q)
        book = np.asarray(meta["sh0"]["codebook"], np.float32)
        i = np.searchsorted(book, g.sh[:, 0])
        if not np.array_equal(book[np.clip(i, 0, 255)], g.sh[:, 0]):
            return {"skipped": "DC not on the sh0 codebook"}
        sh = g.sh.copy()
        sh[:, 0] = i * np.float32(p.dc_step)

        def dc_back(dec, rows):
            s = dec.sh.copy()
            s[:, 0] = g.sh[rows, 0]
            return GaussianMap(**{**{f: getattr(dec, f) for f in FIELDS}, "sh": s})

        dc = pr.point(p, pr.scene_with(sh=sh), dc_back)
        book = np.asarray(meta["shN"]["codebook"], np.float32)
        i = np.searchsorted(book, g.sh[:, 1:])
        sh = g.sh.copy()
        sh[:, 1:] = (i - 128) * p.rest_steps(g.sh.shape[1]).astype(np.float32)[None, :, None]

        def rest_back(dec, rows):
            s = dec.sh.copy()
            s[:, 1:] = g.sh[rows, 1:]
            return GaussianMap(**{**{f: getattr(dec, f) for f in FIELDS}, "sh": s})

        rest = pr.point(p, pr.scene_with(sh=sh), rest_back)
        base = pr.ladder[q]
        out[f"quality {q}"] = {
            name: {"bpg": pt["bpg"] - base["bpg"], "db": pt["psnr"] - base["psnr"], "gain": pr.gain(pt)}
            for name, pt in (("DC as codebook indices", dc), ("higher SH as codebook indices", rest))
        }
        log(f"  codebook q{q}: {out[f'quality {q}']}")
    return out


def markdown(res: dict) -> str:
    lad = res["ladder"]
    lines = [
        f"# Codec probes on {res['scene']} (bench/codec_real_probe.py)",
        "",
        f"Machine: {res['machine']['platform']}, {res['machine']['cpus']} CPUs. Single level; PSNR of the decoded scene "
        "against the uncompressed one over codec_real.py's 6 orbit views (our CPU renderer). Gains are bytes at "
        f"equal PSNR against the ladder quality 1 → 2 ({lad['1']['bpg']:.2f} B/G at {lad['1']['psnr']:.2f} dB → "
        f"{lad['2']['bpg']:.2f} at {lad['2']['psnr']:.2f}); the goal needs 6.5 % at SOG's 54.28 dB.",
        "",
        "## Attribution (quality 2, one attribute restored exactly)",
        "",
        "| attribute | PSNR gain dB |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:+.2f} |" for k, v in res["attribution"].items()]
    for name, path in res["walk"].items():
        lines += [
            "",
            f"## Greedy walk, {name}",
            "",
            "| move | B/G | PSNR dB | vs ladder |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {s['move']} | {s['bpg']:.3f} | {s['psnr']:.2f} | {100 * s['gain'] + 0.0:+.2f} % |"
            for s in path
        ]
    w = res["weights"]
    lines += [
        "",
        "## Blending weights",
        "",
        "| views | zero | 10th / 50th / 90th percentile | AM–GM bits a value |",
    ]
    lines += ["|---|---|---|---|"]
    for k in ("bench views", "26 sphere views"):
        v = w[k]
        pct = " / ".join(f"{x:.3g}" for x in v["p10_p50_p90"])
        lines.append(f"| {k} | {100 * v['zero_fraction']:.1f} % | {pct} | {v['amgm_bits_per_value']:.2f} |")
    lines += ["", f"Rank correlation of the two: {w['rank_correlation']:.2f}."]
    cb = res["codebook"]
    if "skipped" in cb:
        lines += ["", f"## Codebook indices: skipped ({cb['skipped']})"]
    else:
        lines += ["", "## Codebook indices (exact values)", "", "| quality | what | ΔB/G | ΔdB | vs ladder |"]
        lines += ["|---|---|---|---|---|"]
        for q, rows in cb.items():
            for k, v in rows.items():
                lines.append(f"| {q} | {k} | {v['bpg']:+.3f} | {v['db']:+.2f} | {100 * v['gain']:+.2f} % |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", default="playbot", choices=sorted(SCENES))
    ap.add_argument("--walk-steps", type=int, default=8, help="greedy steps each way (0: no walk)")
    a = ap.parse_args()
    pr = Probe(SCENES[a.scene])
    log(f"ladder: {pr.ladder}")
    res = {"scene": a.scene, "machine": machine_info(), "ladder": {str(k): v for k, v in pr.ladder.items()}}
    res["attribution"] = attribution(pr)
    res["weights"] = weights(pr)
    meta = SCENES[a.scene] / "meta.json"
    res["codebook"] = codebook(pr, meta) if meta.is_file() else {"skipped": "not a SOG scene"}
    res["walk"] = {}
    if a.walk_steps:
        res["walk"] = {
            "up from quality 1": walk(pr, 1, +1, a.walk_steps),
            "down from quality 2": walk(pr, 2, -1, a.walk_steps),
        }
    write_results("codec_real_probe", res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
