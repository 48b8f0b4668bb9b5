"""``gs-mapping map BAG --out DIR``: build a 3D Gaussian map from a bag's camera, depth and TF."""

from __future__ import annotations

import argparse

from . import add_no_progress


def _device(name: str) -> str:
    from ..device import is_device_name

    if not is_device_name(name):
        raise argparse.ArgumentTypeError(f"{name!r}: expected auto, cpu, cuda or cuda:N")
    return name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", help="rosbag2 directory (or .mcap/.db3 file) with colour, depth, CameraInfo, TF")
    p.add_argument("--out", required=True, help="output directory (map.ply, metrics.json, heldout/*.png)")
    p.add_argument(
        "--device",
        default=None,
        type=_device,
        metavar="{auto,cpu,cuda,cuda:N}",
        help="torch device (default: config, auto = cuda if present)",
    )
    p.add_argument(
        "--holdout-every",
        type=int,
        default=None,
        metavar="N",
        help="hold out every N-th frame for evaluation, never mapped (default 5; 0 = none); at most "
        "--holdout-views of them are evaluated, evenly spaced",
    )
    p.add_argument(
        "--holdout-views",
        type=int,
        default=None,
        metavar="N",
        help="evaluate at most N of the held-out frames, evenly spaced over the drive, so memory stays "
        "bounded on a long one (mapper.holdout_views, default 32; 0 = evaluate none: frames are still "
        "held out)",
    )
    p.add_argument("--config", default=None, help="ROS parameter YAML with a 'mapper' section")
    p.add_argument(
        "--color-topic",
        default=None,
        help="colour Image or CompressedImage topic (default: found in the bag, e.g. "
        "/camera/color/image_raw, /camera/camera/color/image_raw/compressed)",
    )
    p.add_argument(
        "--depth-topic",
        default=None,
        help="depth Image or compressedDepth topic (default: found in the bag; registered "
        "aligned_depth_to_color / depth_registered preferred)",
    )
    p.add_argument(
        "--camera-info-topic", default=None, help="colour CameraInfo (default: the colour topic's sibling)"
    )
    p.add_argument(
        "--depth-info-topic",
        default=None,
        metavar="TOPIC",
        help="CameraInfo of a depth camera NOT registered to colour: depth is reprojected into the "
        "colour camera through TF (default: the depth topic's sibling when its name does not say "
        "registered)",
    )
    p.add_argument(
        "--depth-registered",
        action="store_true",
        help="the depth images are registered to the colour camera (its pixels and intrinsics, as "
        "realsense's aligned_depth_to_color) whatever frame their header names: taken as they are, "
        "not refused for another frame than the colour's (mapper.topics.depth_registered)",
    )
    p.add_argument(
        "--cloud-topic",
        default=None,
        metavar="TOPIC",
        help="LiDAR cloud (PointCloud2, or a Livox CustomMsg) instead of depth: moved by TF at its own "
        "stamp into the colour camera and projected (default: used when the bag has one cloud and no "
        "depth image)",
    )
    p.add_argument("--map-frame", default=None, help="fixed TF frame of the map (default map)")
    p.add_argument(
        "--calibrate-color",
        action="store_true",
        help="estimate the colour camera from the data and register depth to it (for bags "
        "whose depth is not registered to colour, e.g. 7-Scenes)",
    )
    p.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="stop after this many frames (colour/depth pairs that make a frame; skipped ones do not count)",
    )
    add_no_progress(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument(
        "--strict",
        action="store_true",
        help="an undecodable message in the bag is an error (default: skipped)",
    )


def choose_topics(bag_path, cfg, args) -> str:
    """Fill ``cfg.topics`` from the options, the parameter file and the bag (one rule with replay:
    :mod:`.topic_choice`); return the cloud topic or ''."""
    from .topic_choice import fill_topics

    given = {
        "color": args.color_topic,
        "depth": args.depth_topic,
        "camera_info": args.camera_info_topic,
        "depth_camera_info": args.depth_info_topic,
        "depth_registered": args.depth_registered,
        "cloud": args.cloud_topic,
    }
    return fill_topics(bag_path, cfg, given, "gs_mapping.map")[0]  # (the bag's messages carry their type)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import math

    from ..config_file import load_section
    from ..errors import ConfigError
    from ..mapping.mapper_config import MapperConfig
    from ..nodes.registry import NODES, check_node_keys, node_class, node_fqn, read_parameter_file
    from ..tf import check_frame_id
    from . import show_progress

    # the mapper runs here as mapper_node does: the file's keys that name /mapper_node
    check_node_keys(args.config, "map")
    cfg = load_section(
        args.config, "mapper", MapperConfig, read_parameter_file(args.config, node_fqn("mapper_node"))
    )
    if args.map_frame is not None:
        check_frame_id("--map-frame", args.map_frame)
        cfg.topics = dataclasses.replace(cfg.topics, map_frame=args.map_frame)
    if args.holdout_every is not None:
        if args.holdout_every < 0 or args.holdout_every == 1:
            raise ConfigError(f"--holdout-every must be 0 (none) or >= 2, got {args.holdout_every}")
        cfg.holdout_every = args.holdout_every
    if args.holdout_views is not None:
        if args.holdout_views < 0:
            raise ConfigError(f"--holdout-views must be >= 0 (0 = evaluate none), got {args.holdout_views}")
        cfg.holdout_views = args.holdout_views
    if args.calibrate_color:
        cfg.calibrate_color = True
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {args.max_frames}")
    cloud = choose_topics(args.bag, cfg, args)  # bad topics fail here, before torch is imported
    for name in NODES if args.config is not None else ():  # the nodes' sections too, as replay reads
        node_class(name).load_config(args.config)  # them: a typo there is refused, not left
        # unread (mapper_node's module imports torch: after the quick checks above)
    from ..mapping.run import map_bag

    m = map_bag(
        args.bag,
        args.out,
        cfg,
        device=args.device,
        max_frames=args.max_frames,
        progress=show_progress(args.no_progress),
        overwrite=args.overwrite,
        strict=args.strict,
        cloud_topic=cloud,
    )
    h = m["heldout"]

    def fig(v, form: str) -> str:  # (no held-out view: metrics.json has null, not "nan")
        return format(v, form) if v is not None and math.isfinite(v) else "n/a"

    depth_cm = None if h["depth_l1_m"] is None else 100 * h["depth_l1_m"]
    print(
        f"map: {m['gaussians']} Gaussians from {m['keyframes']} keyframes of {m['frames']} frames "
        f"({m['skipped']} skipped) on {m['device']}; held-out PSNR {fig(h['psnr'], '.2f')} dB, SSIM "
        f"{fig(h['ssim'], '.3f')}, depth L1 {fig(depth_cm, '.1f')} cm; "
        f"{m['seconds_per_keyframe_p50']:.2f} s/keyframe (median) → {args.out}"
    )
    bad = m.get("undecodable_messages") or {}
    if bad:  # skipped, not fatal (--strict makes them errors)
        print(
            f"map: skipped {sum(bad.values())} undecodable message(s): "
            + ", ".join(f"{k} {v}" for k, v in bad.items())
        )
    return 0
