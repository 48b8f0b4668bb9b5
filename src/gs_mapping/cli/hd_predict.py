"""``gs-mapping hd-predict``: run a GSMap checkpoint over a bag's cameras; write the predicted lanes
(base_link) per frame as JSON in the ``hd-eval`` format, with the bag's ground truth when it has it.
Points are in base_link (REP-103: x forward, y left); the file says so (``"frame": "rep103"``), which
``gs-mapping hd-eval`` reads."""

from __future__ import annotations

import argparse

from . import add_no_progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..nodes.hd_map_node import HDMapNodeConfig  # light: the node's torch imports are deferred

    p.add_argument("bag", help="rosbag2 directory or .mcap/.db3 file")
    p.add_argument(
        "--out", required=True, help="output JSON: {results: [...], GTs: [...]} (GTs if the bag has them)"
    )
    p.add_argument(
        "--checkpoint",
        help="model checkpoint (default: the shipped small world model for the rig, as hd_map_node "
        "chooses it: the front model for one camera, the surround model for several)",
    )
    p.add_argument(
        "--cameras",
        nargs="+",
        metavar="IMAGE_TOPIC",
        help="image topics to use, in order; relative names resolve as in ROS (cam/image -> /cam/image) "
        "(default: every Image/CompressedImage topic that has a sibling camera_info and is not a depth "
        "image)",
    )
    p.add_argument(
        "--base-frame",
        default="base_link",
        help="the vehicle frame the predictions are in (default base_link): x forward, y left, z up "
        "(REP 103), the ground at its z = 0 as the model was trained (the world's base_link; on a "
        "robot whose base_link is above the ground, its base_footprint, REP 105); the cameras are "
        "found in it through TF",
    )
    p.add_argument(
        "--sync-slop",
        type=float,
        default=HDMapNodeConfig.sync_slop_s,
        help="cameras whose header stamps are further apart than this many seconds are not grouped "
        "(default %(default)s, as hd_map_node's sync_slop_s)",
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        default=HDMapNodeConfig.score_threshold,
        help="elements below this confidence are dropped (default %(default)s, as hd_map_node)",
    )
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument(
        "--fit",
        choices=("crop", "stretch"),
        default="crop",
        help="images whose aspect ratio differs from the model input: centre-crop to it (default; "
        "square pixels, as in training) or stretch the whole image (fx != fy)",
    )
    p.add_argument(
        "--antialias",
        action="store_true",
        help="low-pass filter before downsizing (default: sample each input pixel's centre ray, as "
        "the world renderer made the training frames)",
    )
    add_no_progress(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (never an input)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="an undecodable message in the bag, an invalid CameraInfo or a bad transform is an error "
        "(default: skipped)",
    )


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from gsmap_hd.predict_bag import predict_bag

    from ..tf import check_frame_id
    from ..topics import resolve_topic_option
    from . import show_progress

    check_frame_id("--base-frame", args.base_frame)
    summary = predict_bag(
        args.bag,
        Path(args.out),
        checkpoint=args.checkpoint,
        cameras=resolve_topic_option("--cameras", args.cameras) if args.cameras else None,
        base_frame=args.base_frame,
        score_threshold=args.score_threshold,
        max_frames=args.max_frames,
        device=args.device,
        progress=show_progress(args.no_progress),
        fit=args.fit,
        antialias=args.antialias,
        overwrite=args.overwrite,
        strict=args.strict,
        sync_slop_s=args.sync_slop,
    )
    print(json.dumps(summary))
    return 0
