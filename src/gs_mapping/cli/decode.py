"""``gs-mapping decode IN.gsd OUT.ply|OUT.spz|OUT.splat [--max-level K]``: a snapshot back to a scene file."""

from __future__ import annotations

import argparse

from .encode import add_keep_ids, add_spz_axes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("container", help="input snapshot (.gsd)")
    p.add_argument("out", help="output scene: .ply (ids and levels with --keep-ids), .spz or .splat")
    p.add_argument(
        "--max-level",
        type=int,
        default=None,
        help="stop after this level of detail (0 = coarsest): in a layered snapshot (a map "
        "with mapper levels) the Gaussians of layers 0..K, else aggregated Gaussians "
        "with ids 1..M",
    )
    p.add_argument("--spz-version", type=int, default=4, choices=(2, 3, 4), help="SPZ version (default 4)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_keep_ids(p)
    add_spz_axes(p)


def run(args) -> int:
    import json

    from gs_map_share.errors import DecodeError
    from gs_map_share.snapshot import decode_map
    from gs_mapping.errors import named

    from ..splat_formats import written_sh_degree
    from .scene_io import check_scene_output, misnamed, read_container, save_scene

    check_scene_output(args.out, args, [args.container])  # before the work
    try:
        gmap = decode_map(read_container(args.container), args.max_level)
    except DecodeError as exc:  # name the file (the codec's messages say what, not where)
        raise misnamed(args.container, named(args.container, exc), snapshot_only=True) from None
    save_scene(gmap, args.out, args)
    print(json.dumps({"gaussians": len(gmap), "sh_degree": written_sh_degree(gmap, args.out)}))
    return 0


def read_container(path: str) -> bytes:
    """A container file's bytes (kept here for ``gs-mapping apply``)."""
    from .scene_io import read_container as read

    return read(path)
