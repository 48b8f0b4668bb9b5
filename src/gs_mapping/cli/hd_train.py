"""``gs-mapping hd-train``: train the GSMap HD-map model on the driving world (or flat-road scenes)."""

from __future__ import annotations

import argparse

from . import add_no_progress, seed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        required=True,
        help="run directory: last.pt (resumable), model.pt, metrics.jsonl, config.json",
    )
    p.add_argument(
        "--preset",
        choices=("small", "paper"),
        help="small (default, CPU) or paper (ResNet-50 class, 50x20 queries, 6 layers; GPU)",
    )
    p.add_argument(
        "--config",
        help="ROS parameter YAML with an hd_train section (over the preset; on --resume over the "
        "config the run was started with)",
    )
    p.add_argument("--steps", type=int, help="training steps")
    p.add_argument("--batch-size", type=int, help="frames per optimiser step (default 4)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 6e-4)")
    p.add_argument(
        "--data",
        choices=("world", "flat", "nuscenes"),
        help="world (gs_mapping.world), flat-road scenes, or nuScenes (--nuscenes-root; GPU)",
    )
    p.add_argument("--nuscenes-root", help="nuScenes dataset root (tables, samples/, maps/expansion/)")
    p.add_argument("--nuscenes-version", help="e.g. v1.0-trainval (default) or v1.0-mini")
    p.add_argument("--nuscenes-splits", nargs=2, metavar=("TRAIN", "EVAL"), help="default: train val")
    p.add_argument(
        "--rig", choices=("front", "surround"), help="camera rig: front (1 camera, default) or surround (6)"
    )
    p.add_argument("--frames", type=int, help="number of distinct training frames")
    p.add_argument(
        "--region",
        choices=("auto", "patch", "forward_half", "frustum"),
        help="ground the rig covers; GT and predictions are clipped to it (auto: frustum for the "
        "front rig, patch for surround)",
    )
    p.add_argument("--augment-flip", type=float, help="probability of a left-right mirror per frame")
    p.add_argument("--augment-color", type=float, help="brightness/contrast/colour jitter strength")
    p.add_argument("--raster-weight", type=float, help="raster loss weight (0 = vector-only ablation)")
    p.add_argument("--seed", type=seed, help="training seed (init and batch order)")
    p.add_argument("--device", help="cpu | cuda | auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument(
        "--eval-every", type=int, help="evaluate with the reference metrics every N steps (0: never)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last.pt, with the config the run was started with (the options "
        "given, or a --config, over it)",
    )
    p.add_argument("--overwrite", action="store_true", help="start over in OUT, which holds a run already")
    p.add_argument(
        "--init-from",
        metavar="CKPT",
        help="fine-tune: start from this checkpoint's weights with a fresh optimizer and schedule",
    )
    p.add_argument("--data-seed", type=seed, help="which procedural worlds the training frames come from")
    add_no_progress(p)


def config_from_file(path: str | None, preset: str = "small", base=None):
    """The ``preset``'s TrainConfig (or ``base``) with a ROS parameter YAML's ``hd_train`` section
    over it (nested sections such as ``model``/``loss`` merge key by key); no path: the preset."""
    from gsmap_hd.model_config import PRESETS, TrainConfig

    from ..config_file import from_dict, to_dict
    from ..nodes.registry import read_parameter_file

    cfg = base if base is not None else PRESETS[preset]()
    if path:
        section = read_parameter_file(path).get("hd_train", {})
        merged = to_dict(cfg)
        for k, v in section.items():
            if isinstance(v, dict) and isinstance(merged.get(k), dict):
                merged[k].update(v)
            else:
                merged[k] = v
        cfg = from_dict(TrainConfig, merged, where=f"{path}: hd_train")
    return cfg


def build_config(args: argparse.Namespace):
    import dataclasses

    from ..errors import ConfigError

    cfg = config_from_file(args.config, args.preset or "small", _resumed_config(args))
    over = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "data": args.data,
        "rig": args.rig,
        "train_frames": args.frames,
        "nuscenes_root": args.nuscenes_root,
        "nuscenes_version": args.nuscenes_version,
        "nuscenes_train_split": args.nuscenes_splits[0] if args.nuscenes_splits else None,
        "nuscenes_eval_split": args.nuscenes_splits[1] if args.nuscenes_splits else None,
        "region": args.region,
        "augment_flip": args.augment_flip,
        "augment_color": args.augment_color,
        "seed": args.seed,
        "device": args.device,
        "num_threads": args.threads,
        "eval_every": args.eval_every,
        "init_from": args.init_from,
        "data_seed": args.data_seed,
    }
    given = {k: v for k, v in over.items() if v is not None}
    try:  # (every number is checked as the configs are built: gsmap_hd.model_config)
        cfg = dataclasses.replace(cfg, **given)
        if args.raster_weight is not None:
            given["raster_weight"] = args.raster_weight
            cfg = dataclasses.replace(
                cfg, loss=dataclasses.replace(cfg.loss, raster_weight=args.raster_weight)
            )
    except ConfigError as exc:
        field, _, why = str(exc).partition(": ")
        if field not in given:
            raise
        raise ConfigError(f"{_OPTIONS.get(field, '--' + field.replace('_', '-'))}: {why}") from None
    return cfg


def _resumed_config(args: argparse.Namespace):
    """The config of the run ``--resume`` continues (its last.pt's), which the options given go
    over: the preset under it would silently change a run started with --config (its data, rig,
    batch, lr). None when not resuming, there is no last.pt (a fresh start), or --preset is given."""
    from pathlib import Path

    from gsmap_hd import checkpoint as ckpt

    last = Path(args.out) / "last.pt"
    try:
        if not args.resume or args.preset or not last.exists():
            return None
    except OSError:  # (a name too long: train() names it)
        return None
    return ckpt.config_of(ckpt.load_state(last), last)


_OPTIONS = {"train_frames": "--frames", "num_threads": "--threads"}  # where the option is not the field


def run(args: argparse.Namespace) -> int:
    import json

    from gsmap_hd.train import train

    from ..errors import ConfigError
    from . import show_progress

    cfg = build_config(args)
    if cfg.data == "nuscenes" and not cfg.nuscenes_root:
        raise ConfigError("--data nuscenes needs --nuscenes-root (or hd_train.nuscenes_root)")
    last = train(
        cfg, args.out, resume=args.resume, progress=show_progress(args.no_progress), overwrite=args.overwrite
    )
    print(json.dumps({"out": args.out, **{k: v for k, v in last.items()}}, default=float))
    return 0
