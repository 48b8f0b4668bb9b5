"""``gs-mapping export SCENE OUT.spz``: Niantic SPZ (version 4 by default) for common splat viewers."""

from __future__ import annotations

import argparse

from .encode import add_spz_axes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "map", help="input scene (.ply, .compressed.ply, .spz, .sog, [name.]meta.json, .splat, .gsd)"
    )
    p.add_argument("out", help="output .spz")
    p.add_argument(
        "--spz-version",
        type=int,
        default=4,
        choices=(2, 3, 4),
        help="SPZ version (default 4, smallest-three rotations; 2 for viewers that predate v3)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_spz_axes(p)


def run(args) -> int:
    import json

    from gs_mapping.errors import ConfigError

    from .scene_io import check_scene_output, load_scene, save_scene

    if not str(args.out).lower().endswith(".spz"):
        raise ConfigError(f"{args.out}: export writes .spz (use 'gs-mapping convert' for other formats)")
    check_scene_output(args.out, args, [args.map])  # before the work
    gmap = load_scene(args.map, args)
    nbytes = save_scene(gmap, args.out, args)
    print(
        json.dumps(
            {
                "gaussians": len(gmap),
                "bytes": nbytes,
                "bytes_per_gaussian": nbytes / len(gmap) if len(gmap) else None,  # (none to share it)
                "spz_version": args.spz_version,
            }
        )
    )
    return 0
