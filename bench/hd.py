"""Benchmark of the GSMap HD-map model: parameter counts, latency, overfit sanity, the paper's Table 4
ablation (vector-only vs vector + raster loss) on the driving world.

Writes bench/results/hd.json and hd.md (machine, configs, figures). Parts (all by default except
``ablation``, which is long: run it where there is compute):

    .venv/bin/python bench/hd.py --parts params latency overfit
    .venv/bin/python bench/hd.py --parts ablation --steps 3000 --seeds 0 1 2 --device cuda
    # on a CPU, one process per seed in parallel, then merged:
    for s in 0 1 2; do .venv/bin/python bench/hd.py --parts ablation --seeds $s --results-dir /tmp/abl_$s & done; wait
    .venv/bin/python bench/hd.py --parts ablation_merge --merge /tmp/abl_0 /tmp/abl_1 /tmp/abl_2
    # at the recipe's own budget (≈ 45 min of one core per run), one run per process, kept in
    # bench/results/ablation_recipe_5000/s{seed}_{variant}/ until all seeds are in:
    .venv/bin/python bench/hd.py --parts ablation --config config/hd_front.yaml --steps 5000 \
        --seeds 0 --variants vector_only --heldout-seeds 1 2 3 --ablation-key ablation_recipe_5000 \
        --results-dir bench/results/ablation_recipe_5000/s0_vector_only

* params: parameter counts of the small and paper configs.
* latency: p50/p95 per frame of the small config, front camera (CPU, ``--threads``), and of the paper
  config (surround, 6 cameras) on CUDA when available; forward + post-processing, batch 1, after
  warm-up.
* overfit: one batch of world frames trained ``--overfit-steps`` steps, then Chamfer/raster AP of the
  model on that same batch (goal ≥ 0.95 Chamfer mAP).
* shipped: the shipped checkpoint (``gsmap_hd/assets``) and ``--candidate`` runs scored with the
  reference metrics on held-out world seeds (``--heldout-seeds``, drives never trained on: training
  uses data seed 0 and the in-training evaluation seed 7777); ``--ship`` replaces the asset with the
  best candidate only if it beats the shipped one on held-out Chamfer mAP.
* ablation: for each seed, train the ``--config`` recipe (default: the small preset) twice with the
  same budget (raster_weight 0 vs the recipe's) on world frames and evaluate on the held-out world
  seeds in the recipe's region; report mean ± spread (max - min) per variant and the difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import save_text, save_with  # noqa: E402  (bench/ is the script folder)

REPO = Path(__file__).resolve().parents[1]


def machine(device: str) -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": device,
        "threads": torch.get_num_threads(),
    }
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        pass
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def part_params() -> dict:
    from gsmap_hd.model import GSMapModel, count_parameters
    from gsmap_hd.model_config import paper, small

    return {
        "small": count_parameters(GSMapModel(small().model)),
        "paper": count_parameters(GSMapModel(paper().model)),
    }


def _latency(cfg_model, rig: str, device: str, repeats: int) -> dict:
    import numpy as np
    import torch

    from gsmap_hd.infer import Predictor
    from gsmap_hd.model import GSMapModel
    from gsmap_hd.synthetic import generate

    h, w = cfg_model.image_size
    s = generate(0, rig, w, h)
    pred = Predictor(GSMapModel(cfg_model), device=device)
    cams = [{"K": K, "width": w, "height": h} for K in s.K]
    args = (list(s.images), cams, list(s.T_ego_cam))
    for _ in range(3):
        pred.predict(*args)
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        pred.predict(*args)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1000
    return {
        "rig": rig,
        "cameras": len(s.K),
        "image_size": [h, w],
        "repeats": repeats,
        "p50_ms": float(np.percentile(t, 50)),
        "p95_ms": float(np.percentile(t, 95)),
        "fps_p50": float(1000 / np.percentile(t, 50)),
    }


def part_latency(args) -> dict:
    import torch

    from gsmap_hd.model_config import paper, small

    out = {"small_front_cpu": _latency(small().model, "front", "cpu", args.repeats)}
    if torch.cuda.is_available():
        out["paper_surround_cuda"] = _latency(paper().model, "surround", "cuda", args.repeats)
    return out


def _train_eval(cfg, eval_source, frames: int, out_dir: Path, device: str, source=None) -> dict:
    from gsmap_hd.model import GSMapModel  # noqa: F401  (import cost outside the timing)
    from gsmap_hd.train import evaluate_model, train

    t0 = time.perf_counter()
    last = train(cfg, out_dir, progress=False, source=source, overwrite=True)  # (a rerun starts over)
    from gsmap_hd.checkpoint import load_model

    model, _, _ = load_model(out_dir / "last.pt", device=device)
    ev = evaluate_model(model, cfg, eval_source, frames, device)
    return {"train_s": time.perf_counter() - t0, "final_loss": last.get("loss"), "eval": ev}


class _AllClasses:
    """The first ``n`` frames (scanning in order, at most 400) that together hold every class, so the
    overfit batch's mAP is not capped by a class absent from it (an absent class counts 0)."""

    def __init__(self, source, n: int) -> None:
        self.source, picked, seen = source, [], set()
        for i in range(400):
            classes = {c for c, _ in source[i].elements}
            if classes - seen:
                picked.append(i)
                seen |= classes
            if seen >= {0, 1, 2}:
                break
        i = 0
        while len(picked) < n:
            if i not in picked:
                picked.append(i)
            i += 1
        self.indices = sorted(picked[:n])
        self.classes = sorted(seen)

    def __getitem__(self, i: int):
        return self.source[self.indices[i]]


def part_overfit(args) -> dict:
    from gsmap_hd.data import SampleSource
    from gsmap_hd.model_config import small

    cfg = small()
    cfg = dataclasses.replace(
        cfg,
        steps=args.overfit_steps,
        batch_size=args.overfit_batch,
        train_frames=args.overfit_batch,
        eval_every=0,
        data=args.data,
        checkpoint_every=10**9,
        warmup_steps=20,
        lr=1e-3,
        num_threads=args.threads,
        device=args.device,
        loss=dataclasses.replace(cfg.loss, raster_warmup_steps=args.overfit_steps // 4),
    )
    src = _AllClasses(
        SampleSource(cfg.data, cfg.rig, cfg.data_seed, tuple(cfg.model.image_size)), args.overfit_batch
    )
    with tempfile.TemporaryDirectory() as d:
        r = _train_eval(
            cfg, src, args.overfit_batch, Path(d), cfg.device if cfg.device != "auto" else "cpu", source=src
        )
    return {
        "steps": cfg.steps,
        "batch": cfg.batch_size,
        "data": cfg.data,
        "frames": src.indices,
        "classes": src.classes,
        **r,
        "chamfer_mAP": r["eval"]["chamfer"]["mAP"],
        "raster_mAP": r["eval"]["raster"]["mAP"],
    }


def part_ablation(args) -> dict:
    """Table 4: each seed trains the ``--config`` recipe (default: the small preset) twice, raster
    weight 0 vs the recipe's, ``--steps`` each, scored on the held-out world seeds (drives no run
    trained on) in the recipe's region."""
    from gs_mapping.cli.hd_train import config_from_file

    base = dataclasses.replace(
        config_from_file(args.config),
        steps=args.steps,
        eval_every=0,
        data=args.data,
        device=args.device,
        num_threads=args.threads,
        checkpoint_every=10**9,
    )
    if args.frames:
        base = dataclasses.replace(base, train_frames=args.frames)
    from gsmap_hd.data import SampleSource

    size = tuple(base.model.image_size)
    src = SampleSource(base.data, base.rig, base.data_seed, size)  # rendered once, shared by the runs
    ev_src = _Concat(base.rig, args.heldout_seeds, args.heldout_frames, size)
    n_eval = args.heldout_frames * len(args.heldout_seeds)
    runs = {"vector_only": [], "vector_raster": []}
    rw_on = base.loss.raster_weight if args.raster_weight is None else args.raster_weight
    variants = [(k, w) for k, w in (("vector_only", 0.0), ("vector_raster", rw_on)) if k in args.variants]
    for seed in args.seeds:
        for name, rw in variants:
            cfg = dataclasses.replace(base, seed=seed, loss=dataclasses.replace(base.loss, raster_weight=rw))
            with tempfile.TemporaryDirectory() as d:
                r = _train_eval(cfg, ev_src, n_eval, Path(d), args.device, source=src)
            runs[name].append(
                {
                    "seed": seed,
                    "chamfer_mAP": r["eval"]["chamfer"]["mAP"],
                    "chamfer_class_ap": r["eval"]["chamfer"]["class_ap"],
                    "raster_mAP": r["eval"]["raster"]["mAP"],
                    "train_s": r["train_s"],
                }
            )
            print(name, seed, runs[name][-1], flush=True)
    out = summarise_ablation(runs, args.steps, base.train_frames, n_eval)
    out.update(
        config=args.config or "small preset", region=base.region, heldout_seeds=list(args.heldout_seeds)
    )
    out["raster_weight"] = rw_on
    return out


def part_ablation_merge(args) -> dict:
    """Ablation runs done in separate processes merged into one summary. Each ``--merge`` entry is
    ``DIR`` (its hd.json, under ``--ablation-key`` or ``ablation``: both variants) or
    ``DIR@KEY/VARIANT`` (that key's runs of one variant only), so that one arm can be set beside
    runs made earlier, e.g. a raster variant with another setting beside the same seeds' vector-only
    runs. ``--note`` says what the arms are when they differ in more than the raster weight."""
    runs = {"vector_only": [], "vector_raster": []}
    first = None
    for entry in args.merge:
        d, _, spec = entry.partition("@")
        key, _, only = spec.partition("/")
        part = json.loads((Path(d) / "hd.json").read_text())
        a = part[key] if key else (part.get(args.ablation_key) or part["ablation"])
        first = first or a
        for name in runs:
            if not only or name == only:
                runs[name] += a["runs"][name]
    out = summarise_ablation(runs, first["steps"], first["train_frames"], first["eval_frames"])
    out.update({k: first[k] for k in ("config", "region", "heldout_seeds") if k in first})
    out["merged_from"] = list(args.merge)
    if args.note:
        out["note"] = args.note
    return out


def summarise_ablation(runs: dict, steps: int, frames: int, eval_frames: int) -> dict:
    def summ(rs, key):
        v = [r[key] for r in rs]
        return {"mean": statistics.fmean(v), "spread": max(v) - min(v), "values": v}

    out = {"steps": steps, "train_frames": frames, "eval_frames": eval_frames, "runs": runs}
    if not (runs["vector_only"] and runs["vector_raster"]):  # one variant only (merged later)
        return out
    for key in ("chamfer_mAP", "raster_mAP"):
        a, b = summ(runs["vector_only"], key), summ(runs["vector_raster"], key)
        by_seed = {r["seed"]: r[key] for r in runs["vector_only"]}
        out[key] = {
            "vector_only": a,
            "vector_raster": b,
            "gain": b["mean"] - a["mean"],
            "beyond_2x_spread": (b["mean"] - a["mean"]) > 2 * max(a["spread"], b["spread"]),
            # the same seed (init and batch order) with and without the raster term
            "paired_gains": [
                r[key] - by_seed[r["seed"]] for r in runs["vector_raster"] if r["seed"] in by_seed
            ],
        }
    return out


class _Concat:
    """Frames of several world data seeds, ``per_seed`` each, as one source."""

    def __init__(self, rig: str, seeds, per_seed: int, size) -> None:
        from gsmap_hd.data import SampleSource

        self.sources = [SampleSource("world", rig, s, size) for s in seeds]
        self.per_seed = per_seed

    def __getitem__(self, i: int):
        return self.sources[i // self.per_seed][i % self.per_seed]


def _heldout(path: Path, args) -> dict:
    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.region import resolve_name
    from gsmap_hd.train import evaluate_regions

    model, cfg, extra = load_model(path)
    src = _Concat(cfg.rig, args.heldout_seeds, args.heldout_frames, tuple(cfg.model.image_size))
    n = args.heldout_frames * len(args.heldout_seeds)
    t0 = time.perf_counter()
    own = resolve_name(cfg.region, cfg.rig)  # the region the config declares: the honest score
    names = tuple(dict.fromkeys(("patch", "forward_half", "frustum", own)))
    by_region = evaluate_regions(model, cfg, src, n, names)
    ev = by_region[own]
    return {
        "checkpoint": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
        "trained_steps": int(cfg.steps),
        "train_frames": int(cfg.train_frames),
        "batch": int(cfg.batch_size),
        "data_seed": int(cfg.data_seed),
        "rig": cfg.rig,
        "size_bytes": path.stat().st_size,
        "heldout": {
            "seeds": list(args.heldout_seeds),
            "frames_per_seed": args.heldout_frames,
            "frames": n,
            "eval_s": time.perf_counter() - t0,
            "chamfer_mAP": ev["chamfer"]["mAP"],
            "chamfer_class_ap": ev["chamfer"]["class_ap"],
            "raster_mAP": ev["raster"]["mAP"],
            "region": own,
            "eval": ev,
            "regions": {
                k: {
                    "area_m2": v["region"]["area_m2"],
                    "chamfer_mAP": v["chamfer"]["mAP"],
                    "chamfer_class_ap": v["chamfer"]["class_ap"],
                    "raster_mAP": v["raster"]["mAP"],
                    "num_gts": v["chamfer"]["num_gts"],
                }
                for k, v in by_region.items()
            },
        },
    }


def part_surround(args) -> dict:
    """A surround checkpoint (``--surround-checkpoint``, default the shipped one) and the shipped
    front model, both run on the same held-out six-camera frames and scored on the whole patch:
    what the surround fine-tuning adds over the front model's weights on that rig."""
    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.predict_bag import SHIPPED, SHIPPED_SURROUND
    from gsmap_hd.train import evaluate_model

    path = Path(args.surround_checkpoint or SHIPPED_SURROUND)
    model, cfg, _ = load_model(path)
    src = _Concat("surround", args.heldout_seeds, args.heldout_frames, tuple(cfg.model.image_size))
    n = args.heldout_frames * len(args.heldout_seeds)
    out = {"checkpoint": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path), "frames": n}
    out["seeds"] = list(args.heldout_seeds)
    for name, m in (("surround", model), ("front_weights", load_model(SHIPPED)[0])):
        ev = evaluate_model(m, cfg, src, n, region="patch")
        out[name] = {
            "chamfer_mAP": ev["chamfer"]["mAP"],
            "chamfer_class_ap": ev["chamfer"]["class_ap"],
            "raster_mAP": ev["raster"]["mAP"],
        }
    out["trained_steps"], out["train_frames"] = int(cfg.steps), int(cfg.train_frames)
    return out


def part_gradients(args) -> dict:
    """Why the raster term gains little: on one batch of 8 unseen-world frames (front frustum), the
    gradient of the vector terms (cls + pts, every decoder layer) and of the raster term (last
    layer, full weight) over all parameters — norms, their ratio and cosine — for a freshly
    initialised model and the shipped one."""
    import torch

    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.data import Sample, SampleSource, collate
    from gsmap_hd.losses import GSMapCriterion
    from gsmap_hd.matching import build_targets
    from gsmap_hd.model import GSMapModel
    from gsmap_hd.predict_bag import SHIPPED
    from gsmap_hd.region import clip_elements
    from gsmap_hd.train import POLYGON_CLASSES, sample_region

    shipped, cfg, _ = load_model(SHIPPED)
    src = SampleSource("world", cfg.rig, 12, tuple(cfg.model.image_size))  # a seed no stage trained on
    region = sample_region(cfg, src[0])
    frames = [src[i] for i in range(0, 48, 6)]
    frames = [
        Sample(f.images, f.K, f.T_ego_cam, clip_elements(f.elements, region, POLYGON_CLASSES)) for f in frames
    ]
    im, K, T, _ = collate(frames, cfg.model)
    targets = [build_targets(f.elements, cfg.model, cfg.loss) for f in frames]
    crit, lw = GSMapCriterion(cfg.model, cfg.loss), cfg.loss
    torch.manual_seed(0)
    out = {"frames": len(frames), "raster_weight": lw.raster_weight}
    for name, model in (("init", GSMapModel(cfg.model)), ("shipped", shipped)):
        model.train()
        o = model(im, K, T)
        layers = list(zip(o["logits"], o["params"], strict=True))
        per = [
            crit.layer_loss(lg, pr, targets, float(i == len(layers) - 1)) for i, (lg, pr) in enumerate(layers)
        ]
        vec = sum(lw.cls_weight * p["cls"] + lw.pts_weight * p["pts"] for p in per)
        ras = lw.raster_weight * (lw.bce_weight * per[-1]["bce"] + lw.dssim_weight * per[-1]["dssim"])
        ps = list(model.parameters())

        def flat(loss, keep, ps=ps):
            g = torch.autograd.grad(loss, ps, retain_graph=keep, allow_unused=True)
            return torch.cat(
                [(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, ps, strict=True)]
            )

        gv, gr = flat(vec, True), flat(ras, False)
        out[name] = {
            "vector_loss": float(vec),
            "raster_loss": float(ras),
            "grad_norm_vector": float(gv.norm()),
            "grad_norm_raster": float(gr.norm()),
            "ratio": float(gr.norm() / gv.norm()),
            "cosine": float(gv @ gr / (gv.norm() * gr.norm() + 1e-12)),
        }
    return out


def part_shipped(args) -> dict:
    asset = REPO / "src" / "gsmap_hd" / "assets" / "gsmap_small_world.pt"
    shipped = _heldout(asset, args)
    cands = [_heldout(Path(c).resolve(), args) for c in args.candidate]
    out = {"asset": str(asset.relative_to(REPO)), "before": shipped, "candidates": cands, "replaced": False}
    best = max(cands, key=lambda c: c["heldout"]["chamfer_mAP"], default=None)
    margin = args.ship_margin
    out["ship_rule"] = f"candidate Chamfer mAP in the config's region > shipped + {margin}"
    if args.ship and best and best["heldout"]["chamfer_mAP"] > shipped["heldout"]["chamfer_mAP"] + margin:
        import torch

        from gsmap_hd.checkpoint import load_state

        src = (
            Path(best["checkpoint"]) if Path(best["checkpoint"]).is_absolute() else REPO / best["checkpoint"]
        )
        state = load_state(src)
        if not state.get("half"):
            raise SystemExit(f"{src}: ship a weights-only (model.pt) checkpoint, not a resumable one")
        h = best["heldout"]
        state["extra"] = {
            "provenance": args.provenance or f"gs-mapping hd-train, {best['trained_steps']} steps",
            "heldout_eval": {
                "seeds": h["seeds"],
                "frames": h["frames"],
                "chamfer_mAP": h["chamfer_mAP"],
                "chamfer_class_ap": h["chamfer_class_ap"],
                "raster_mAP": h["raster_mAP"],
                "region": h["region"],
                "regions": h["regions"],
            },
        }
        save_with(asset, lambda tmp: torch.save(state, tmp))
        out["replaced"] = True
        out["after"] = dict(
            best,
            checkpoint=str(asset.relative_to(REPO)),
            size_bytes=asset.stat().st_size,
            source_run=best["checkpoint"],
            provenance=state["extra"]["provenance"],
        )
    return out


def part_onnx(args) -> dict:
    """The shipped checkpoint exported as ONNX: outputs vs torch (world + the real camera frames in
    ../shared/data) and latency of both backends through the same Predictor (pre- and
    post-processing included), batch 1, front camera 256x128, ``--threads`` threads each."""
    import numpy as np
    import torch

    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.infer import Predictor
    from gsmap_hd.onnx_export import OnnxModel, compare_on_bag, compare_on_world, export_onnx
    from gsmap_hd.predict_bag import SHIPPED
    from gsmap_hd.world_data import world_sample

    model, cfg, _ = load_model(SHIPPED)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, cfg, Path(tmp) / "gsmap.onnx")
        size = path.stat().st_size
        out = {"onnx_bytes": size, "world": compare_on_world(model, cfg, path, frames=4)}
        shared = REPO.parent / "shared" / "data"
        for name in ("7scenes_kitchen_rgbd", "realsense_kitchen_rgbd"):
            if (shared / name).is_dir():
                out[name] = compare_on_bag(model, OnnxModel(path), shared / name, max_frames=4)
        h, w = cfg.model.image_size
        s = world_sample(424_242, 3, "front", (w, h))
        cams = [{"K": K, "width": w, "height": h} for K in s.K]
        frame = (list(s.images), cams, list(s.T_ego_cam))
        torch.set_num_threads(args.threads)
        backends = {
            "torch": Predictor(model, train_cfg=cfg),
            "onnx": Predictor(OnnxModel(path, threads=args.threads), train_cfg=cfg),
        }
        lat = {}
        for name, pred in backends.items():
            for _ in range(3):
                pred.predict(*frame)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                pred.predict(*frame)
                times.append(time.perf_counter() - t0)
            t = np.array(times) * 1000
            lat[name] = {"p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95))}
        out["latency"] = {"threads": args.threads, "repeats": args.repeats, **lat}
    return out


def part_fusion(args) -> dict:
    """Per-frame predictions of a checkpoint (``--fusion-checkpoint``, default the shipped one) fused
    into a lane map (gsmap_hd.lane_map) over
    held-out drives, scored against each world's global GT map in every frame's camera region; the
    map's growth with frames; a picture of the fused map over the GT (hd_fusion.png)."""
    from gs_mapping.world import Drive
    from gsmap_hd.infer import Predictor
    from gsmap_hd.lane_map_eval import fuse_drive, score
    from gsmap_hd.predict_bag import SHIPPED

    pred = Predictor.from_checkpoint(args.fusion_checkpoint or SHIPPED, score_threshold=0.05)
    drives = []
    for seed in args.fusion_seeds:
        d = Drive.make(seed, args.fusion_frames, "front", (256, 128), rate_hz=2.0)
        t0 = time.perf_counter()
        fd = fuse_drive(pred, d, snapshot_every=max(1, args.fusion_frames // 6))
        growth = [score(fd, n) for n in sorted(fd.snapshots)]
        drives.append(
            {
                "world_seed": seed,
                "frames": args.fusion_frames,
                "rate_hz": 2.0,
                "seconds": time.perf_counter() - t0,
                "growth": growth,
                "lanes": len(fd.lane_map.published()),
                "tracks_total": fd.lane_map.next_id - 1,
            }
        )
        if seed == args.fusion_seeds[0]:
            _plot_fusion(fd, Path(args.results_dir) / "hd_fusion.png", seed)
    return {"checkpoint": str(Path(args.fusion_checkpoint or SHIPPED).name), "drives": drives}


def _plot_fusion(fd, path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from shapely.ops import unary_union

    from gsmap_hd.lane_map import region_in_map

    seen = unary_union([region_in_map(r, T) for r, T in zip(fd.regions, fd.poses, strict=True)])
    x0, y0, x1, y1 = seen.bounds
    fig, ax = plt.subplots(figsize=(10, 10 * max(0.3, (y1 - y0) / max(x1 - x0, 1))), dpi=110)
    for g in getattr(seen, "geoms", [seen]):
        ax.fill(*g.exterior.xy, color="#eeeeee", zorder=0)
    for _, p in fd.gt_map:
        ax.plot(p[:, 0], p[:, 1], color="0.55", lw=3.0, zorder=1)
    colours = ("tab:orange", "tab:blue", "tab:green")
    for t in fd.lane_map.published():
        ax.plot(t.points[:, 0], t.points[:, 1], color=colours[t.cls], lw=1.4, zorder=2)
    poses = np.array([T[:2, 3] for T in fd.poses])
    ax.plot(poses[:, 0], poses[:, 1], "k--", lw=0.8, zorder=3)
    ax.set_xlim(x0 - 5, x1 + 5)
    ax.set_ylim(y0 - 5, y1 + 5)
    ax.set_aspect("equal")
    ax.set_title(
        f"fused lane map after {len(fd.poses)} frames (world {seed}): divider orange, crossing blue, "
        "boundary green; GT grey; seen ground shaded; path dashed",
        fontsize=8,
    )
    fig.tight_layout()
    save_with(path, fig.savefig)
    plt.close(fig)


def _shipped_on_eval_frames(run: Path, reference: Path | None = None) -> float:
    """The shipped checkpoint's Chamfer mAP on the run's own in-training evaluation frames (the
    reference line of the learning curve)."""
    from gs_mapping.config_file import from_dict
    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.data import SampleSource
    from gsmap_hd.model_config import TrainConfig
    from gsmap_hd.predict_bag import SHIPPED
    from gsmap_hd.train import EVAL_SEED_OFFSET, evaluate_model

    cfg = from_dict(TrainConfig, json.loads((run / "config.json").read_text()), where=str(run))
    model, _, _ = load_model(reference or SHIPPED)
    src = SampleSource(cfg.data, cfg.rig, cfg.data_seed + EVAL_SEED_OFFSET, tuple(cfg.model.image_size))
    return float(evaluate_model(model, cfg, src, cfg.eval_frames)["chamfer"]["mAP"])


def _rescore_snapshots(run: Path) -> list:
    """Copies of the run's last.pt taken at evaluation steps (``step_N.pt``), scored again on the
    run's evaluation frames with the current code."""
    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.data import SampleSource
    from gsmap_hd.train import EVAL_SEED_OFFSET, evaluate_model

    out = []
    for f in sorted(run.glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1])):
        model, cfg, _ = load_model(f)
        src = SampleSource(cfg.data, cfg.rig, cfg.data_seed + EVAL_SEED_OFFSET, tuple(cfg.model.image_size))
        ev = evaluate_model(model, cfg, src, cfg.eval_frames)["chamfer"]
        out.append((int(f.stem.split("_")[1]), float(ev["mAP"]), [float(x) for x in ev["class_ap"]]))
    return out


def part_curve(args) -> dict:
    """Learning curve of a training run (its metrics.jsonl): held-out Chamfer mAP vs steps, plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(args.curve_run)
    ev_by, loss_by = {}, {}  # a resumed run logs its steps again from the checkpoint: the last wins
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "eval" in r and "chamfer" in r["eval"]:
            ev_by[r["step"]] = (r["step"], r["eval"]["chamfer"]["mAP"], r["eval"]["chamfer"]["class_ap"])
        elif "loss" in r:
            loss_by[r["step"]] = (r["step"], r["loss"])
    evals, losses = [ev_by[k] for k in sorted(ev_by)], [loss_by[k] for k in sorted(loss_by)]
    rescored = _rescore_snapshots(run)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    if evals:
        a.plot([e[0] for e in evals], [e[1] for e in evals], "o:", color="0.6", label="mAP (in training)")
    if rescored:
        a.plot([e[0] for e in rescored], [e[1] for e in rescored], "o-", label="mAP (re-scored)")
        for k, name in enumerate(("divider", "crossing", "boundary")):
            a.plot([e[0] for e in rescored], [e[2][k] for e in rescored], ".--", label=name)
    a.axhline(0.6, color="r", lw=0.8, ls=":", label="goal 0.6")
    ref = _shipped_on_eval_frames(run, Path(args.curve_reference) if args.curve_reference else None)
    a.axhline(ref, color="k", lw=0.8, ls="--", label=f"reference ckpt {ref:.2f}")
    a.set_xlabel("step")
    a.set_ylabel("held-out Chamfer AP (front, frustum)")
    a.legend(fontsize=7)
    b.plot([x for x, _ in losses], [y for _, y in losses], lw=0.8)
    b.set_xlabel("step")
    b.set_ylabel("training loss")
    fig.tight_layout()
    save_with(Path(args.results_dir) / "hd_learning_curve.png", fig.savefig)
    plt.close(fig)
    cfg = json.loads((run / "config.json").read_text())
    return {
        "rescored": [{"step": st, "chamfer_mAP": m, "class_ap": c} for st, m, c in rescored],
        "shipped_on_same_frames": ref,
        "reference": str(args.curve_reference) if args.curve_reference else "the shipped checkpoint",
        "run": str(run),
        "evals": [{"step": s, "chamfer_mAP": m, "class_ap": c} for s, m, c in evals],
        "last_step": losses[-1][0] if losses else 0,
        "config": {
            k: cfg[k]
            for k in (
                "steps",
                "train_frames",
                "batch_size",
                "lr",
                "region",
                "augment_flip",
                "augment_color",
                "eval_frames",
            )
        },
    }


def write_md(res: dict, path: Path) -> None:
    lines = ["# GSMap HD-map model benchmark", "", f"machine: `{json.dumps(res['machine'])}`", ""]
    if "params" in res:
        lines += ["| config | backbone | BEV encoder | decoder | total |", "|---|---|---|---|---|"]
        for k, v in res["params"].items():
            lines.append(
                f"| {k} | {v['backbone']:,} | {v['bev_encoder']:,} | {v['decoder']:,} | {v['total']:,} |"
            )
        lines.append("")
    if "latency" in res:
        lines += ["| latency | cameras | input | p50 ms | p95 ms | FPS (p50) |", "|---|---|---|---|---|---|"]
        for k, v in res["latency"].items():
            lines.append(
                f"| {k} | {v['cameras']} | {v['image_size'][1]}x{v['image_size'][0]} | "
                f"{v['p50_ms']:.1f} | {v['p95_ms']:.1f} | {v['fps_p50']:.1f} |"
            )
        lines.append("")
    if "overfit" in res:
        o = res["overfit"]
        lines += [
            f"overfit ({o['data']}, batch {o['batch']}, {o['steps']} steps, {o['train_s']:.0f} s): "
            f"Chamfer mAP {o['chamfer_mAP']:.3f}, raster mAP {o['raster_mAP']:.3f} (goal Chamfer ≥ 0.95)",
            "",
        ]
    for name in sorted(k for k in res if k.startswith("ablation")):
        a = res[name]
        if "chamfer_mAP" not in a:  # one arm only, run in its own process: merged later
            continue
        lines += [
            f"{name}: Table 4 on the world, {len(a['runs']['vector_only'])} seeds, {a['steps']} steps, "
            f"{a['train_frames']} training frames, {a['eval_frames']} held-out frames (± = max − min "
            f"over seeds); base {a.get('config', 'small preset')}, region {a.get('region', 'patch')}"
            + (
                f", held-out world seeds {a['heldout_seeds']}"
                if "heldout_seeds" in a
                else ", seed 7777 frames"
            )
            + (f"; raster variant at weight {a['raster_weight']:g}" if "raster_weight" in a else "")
            + (f". {a['note']}" if "note" in a else ""),
            "",
            "| metric | vector only | vector + raster | gain | > 2x spread |",
            "|---|---|---|---|---|",
        ]
        for key in ("chamfer_mAP", "raster_mAP"):
            m = a[key]
            lines.append(
                f"| {key} | {m['vector_only']['mean']:.4f} ± {m['vector_only']['spread']:.4f} | "
                f"{m['vector_raster']['mean']:.4f} ± {m['vector_raster']['spread']:.4f} | "
                f"{m['gain']:+.4f} | {m['beyond_2x_spread']} |"
            )
        paired = {k: a[k].get("paired_gains") for k in ("chamfer_mAP", "raster_mAP")}
        if all(paired.values()):
            lines += [
                "",
                "Paired by seed (same init and batch order), raster − vector only: "
                + "; ".join(f"{k} " + ", ".join(f"{g:+.3f}" for g in v) for k, v in paired.items()),
            ]
        lines.append("")
    if "shipped_checkpoint" in res:
        sc = res["shipped_checkpoint"]
        lines += [
            "| shipped checkpoint (held-out world seeds) | steps | train frames | Chamfer mAP | "
            "divider / crossing / boundary | raster mAP |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in [("before", sc["before"])] + [
            (f"candidate {i}", c) for i, c in enumerate(sc["candidates"])
        ]:
            h = r["heldout"]
            lines.append(
                f"| {name}: {r['checkpoint']} | {r['trained_steps']} | {r['train_frames']} | "
                f"{h['chamfer_mAP']:.4f} | {' / '.join(f'{a:.3f}' for a in h['chamfer_class_ap'])} | "
                f"{h['raster_mAP']:.4f} |"
            )
        lines += ["", f"replaced: {sc['replaced']}", ""]
        rows = [("before", sc["before"])] + [(f"candidate {i}", c) for i, c in enumerate(sc["candidates"])]
        if all("regions" in r["heldout"] for _, r in rows):
            lines += [
                "Both ways, side by side (same predictions, same held-out frames; GT and predictions "
                "clipped alike). Chamfer mAP (divider / crossing / boundary), GT elements:",
                "",
                "| checkpoint | whole patch (old) | forward half | front frustum (honest) |",
                "|---|---|---|---|",
            ]
            for name, r in rows:
                cells = []
                for k in ("patch", "forward_half", "frustum"):
                    g = r["heldout"]["regions"][k]
                    cells.append(
                        f"{g['chamfer_mAP']:.3f} ({' / '.join(f'{a:.2f}' for a in g['chamfer_class_ap'])}), "
                        f"{sum(g['num_gts'])} GT, {g['area_m2']:.0f} m²"
                    )
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    if "onnx" in res:
        o = res["onnx"]
        lines += [
            f"ONNX export of the shipped checkpoint ({o['onnx_bytes'] / 1e6:.1f} MB, opset 17, deformable "
            "attention as GridSample) vs torch — largest differences: logits; x/y relative to the patch; "
            "sx/sy relative to the scale range; θ (rad); and x/y in metres:",
            "",
            "| input | frames | logits | x/y rel | scale rel | θ | x/y m |",
            "|---|---|---|---|---|---|---|",
        ]
        for k in ("world", "7scenes_kitchen_rgbd", "realsense_kitchen_rgbd"):
            if k in o:
                d = o[k]
                lines.append(
                    f"| {k} | {d.get('frames', 4)} | {d['logits']:.1e} | {max(d['x_rel'], d['y_rel']):.1e} | "
                    f"{d['scale_rel']:.1e} | {d['theta']:.1e} | {d['xy_m']:.1e} |"
                )
        lat = o["latency"]
        lines += [
            "",
            f"| backend (front 256x128, {lat['threads']} thread, Predictor incl. pre/post) | p50 ms | p95 ms |",
            "|---|---|---|",
            f"| torch (CPU) | {lat['torch']['p50_ms']:.1f} | {lat['torch']['p95_ms']:.1f} |",
            f"| onnxruntime (CPUExecutionProvider) | {lat['onnx']['p50_ms']:.1f} | {lat['onnx']['p95_ms']:.1f} |",
            "",
        ]
        for key in ("latency", "latency_under_load"):  # where a run was kept from another time
            if o.get(key, {}).get("note"):
                t = o[key]
                lines += [
                    f"{key.replace('_', ' ')}: {t['note']}: torch {t['torch']['p50_ms']:.1f} ms, onnxruntime "
                    f"{t['onnx']['p50_ms']:.1f} ms (p50)",
                    "",
                ]
    if "gradients" in res:
        gr = res["gradients"]
        lines += [
            f"Why the raster term gains little (one batch of {gr['frames']} unseen-world frames; gradients over all "
            f"parameters; raster weight {gr['raster_weight']}):",
            "",
            "| model | vector loss | raster loss | ‖∇ vector‖ | ‖∇ raster‖ | ratio | cosine |",
            "|---|---|---|---|---|---|---|",
        ]
        for k in ("init", "shipped"):
            e = gr[k]
            lines.append(
                f"| {k} | {e['vector_loss']:.3f} | {e['raster_loss']:.3f} | {e['grad_norm_vector']:.3f} | "
                f"{e['grad_norm_raster']:.3f} | {e['ratio']:.3f} | {e['cosine']:+.3f} |"
            )
        lines.append("")
    if "surround" in res:
        sr = res["surround"]

        def _row(k):
            e = sr[k]
            return f"{e['chamfer_mAP']:.3f} ({' / '.join(f'{a:.2f}' for a in e['chamfer_class_ap'])}) | {e['raster_mAP']:.3f}"

        lines += [
            f"Surround rig ({sr['checkpoint']}, {sr['trained_steps']} steps on {sr['train_frames']} frames): "
            f"{sr['frames']} held-out six-camera frames (world seeds {sr['seeds']}), whole patch; Chamfer mAP "
            "(divider / crossing / boundary) | raster mAP",
            "",
            "| weights | Chamfer mAP | raster mAP |",
            "|---|---|---|",
            f"| shipped front model on the six cameras | {_row('front_weights')} |",
            f"| surround model | {_row('surround')} |",
            "",
        ]
    if "fusion" in res:
        f = res["fusion"]
        lines += [
            f"Persistent lane map ({f['checkpoint']}; the map and the per-frame predictions both from "
            f"predictions with score ≥ the map's min_score): Chamfer mAP in every frame's "
            "camera region against the world's global GT map — the map fused over the first n frames vs "
            "the per-frame predictions in the same windows. ![fused map](hd_fusion.png)",
            "",
            "| world | frames n | fused map mAP | per-frame mAP | map lanes |",
            "|---|---|---|---|---|",
        ]
        for d in f["drives"]:
            for g in d["growth"]:
                lines.append(
                    f"| {d['world_seed']} | {g['frames']} | {g['fused_mAP']:.3f} | {g['per_frame_mAP']:.3f} | "
                    f"{g['map_elements']} |"
                )
        lines.append("")
    if "curve" in res:
        c = res["curve"]
        lines += [
            f"Learning curve ({c['run']}, {c['config']}; last logged step {c['last_step']}): "
            "![learning curve](hd_learning_curve.png)",
            "",
            f"Reference: {c.get('reference', 'the shipped checkpoint')} on the same {c['config']['eval_frames']} frames: "
            f"{c['shipped_on_same_frames']:.3f}."
            + (
                " The re-scored column scores snapshots of last.pt with the current code."
                if c["rescored"]
                else ""
            ),
            "",
            "| step | held-out Chamfer mAP (frustum), in training | re-scored | divider / crossing / boundary (re-scored) |",
            "|---|---|---|---|",
        ]
        rs = {e["step"]: e for e in c.get("rescored", [])}
        for e in c["evals"]:
            r = rs.get(e["step"])
            lines.append(
                f"| {e['step']} | {e['chamfer_mAP']:.3f} | {r['chamfer_mAP'] if r else float('nan'):.3f} | "
                + (" / ".join(f"{a:.3f}" for a in r["class_ap"]) if r else "–")
                + " |"
            )
        lines.append("")
    save_text(path, "\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--parts",
        nargs="+",
        default=["params", "latency", "overfit"],
        choices=[
            "params",
            "latency",
            "overfit",
            "ablation",
            "ablation_merge",
            "shipped",
            "surround",
            "gradients",
            "onnx",
            "fusion",
            "curve",
        ],
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--data", default="world", choices=["world", "flat"])
    ap.add_argument("--overfit-steps", type=int, default=400)
    ap.add_argument("--overfit-batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3000, help="ablation: steps per run")
    ap.add_argument("--frames", type=int, help="ablation: training frames (default: the config's)")
    ap.add_argument("--config", help="ablation: hd-train YAML recipe as the base (default: small preset)")
    ap.add_argument("--raster-weight", type=float, help="ablation: raster weight of the raster variant")
    ap.add_argument(
        "--variants", nargs="+", default=["vector_only", "vector_raster"], help="ablation: variants to run"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--ablation-key",
        default="ablation",
        help="results key of an ablation run (several budgets side by side, e.g. ablation_2000)",
    )
    ap.add_argument(
        "--merge",
        nargs="*",
        default=[],
        help="ablation_merge: results dirs of ablation runs made in separate processes (DIR, or "
        "DIR@KEY/VARIANT for one variant of one key)",
    )
    ap.add_argument(
        "--candidate", nargs="*", default=[], help="shipped: run checkpoints (model.pt) to compare"
    )
    ap.add_argument(
        "--note", default="", help="ablation_merge: what the two arms are, when not just the raster weight"
    )
    ap.add_argument("--heldout-seeds", type=int, nargs="+", default=[1, 2], help="shipped: world data seeds")
    ap.add_argument("--heldout-frames", type=int, default=48, help="shipped: frames per held-out seed")
    ap.add_argument(
        "--surround-checkpoint", help="surround: checkpoint (default: the shipped surround model)"
    )
    ap.add_argument("--ship", action="store_true", help="shipped: replace the asset if a candidate is better")
    ap.add_argument("--provenance", help="shipped: provenance text stored in the shipped checkpoint")
    ap.add_argument(
        "--ship-margin", type=float, default=0.02, help="shipped: the candidate must beat the asset by this"
    )
    ap.add_argument(
        "--fusion-seeds", type=int, nargs="+", default=[424242, 31337], help="fusion: world seeds"
    )
    ap.add_argument("--fusion-frames", type=int, default=48, help="fusion: frames per drive (2 Hz)")
    ap.add_argument("--fusion-checkpoint", help="fusion: checkpoint (default: the shipped one)")
    ap.add_argument(
        "--curve-reference", help="curve: checkpoint drawn as the reference line (default shipped)"
    )
    ap.add_argument("--curve-run", default=str(REPO / "out" / "hd_front"), help="curve: a hd-train run dir")
    ap.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "hd.json"
    res = json.loads(path.read_text()) if path.exists() else {}  # parts run separately accumulate
    res["machine"] = machine(args.device)
    if "params" in args.parts:
        res["params"] = part_params()
    if "latency" in args.parts:
        res["latency"] = part_latency(args)
    if "overfit" in args.parts:
        res["overfit"] = part_overfit(args)
    if "ablation" in args.parts:
        res[args.ablation_key] = part_ablation(args)
    if "ablation_merge" in args.parts:
        res[args.ablation_key] = part_ablation_merge(args)
    if "shipped" in args.parts:
        res["shipped_checkpoint"] = part_shipped(args)
    if "surround" in args.parts:
        res["surround"] = part_surround(args)
    if "gradients" in args.parts:
        res["gradients"] = part_gradients(args)
    if "onnx" in args.parts:
        res["onnx"] = part_onnx(args)
    if "fusion" in args.parts:
        res["fusion"] = part_fusion(args)
    if "curve" in args.parts:
        res["curve"] = part_curve(args)
    from gs_mapping.config_file import to_dict
    from gsmap_hd.model_config import paper, small

    res["configs"] = {"small": to_dict(small()), "paper": to_dict(paper())}
    save_text(path, json.dumps(res, indent=2, default=float))
    write_md(res, out_dir / "hd.md")
    print(json.dumps({k: v for k, v in res.items() if k != "configs"}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
