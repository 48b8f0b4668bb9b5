"""``gs-mapping convert IN OUT``: a 3DGS scene from one format to another, by file name.

IN: standard 3DGS PLY, PlayCanvas compressed PLY, SPZ (v1–v4), SOG (``.sog``, ``meta.json``,
``<name>.meta.json`` or its directory), antimatter15 ``.splat`` or our snapshot (``.gsd``). OUT:
``.ply`` (the viewers' layout; ``--keep-ids`` keeps a map's ids and levels), ``.spz`` (version 4;
``--spz-version 2`` for viewers that predate v3), ``.splat`` (DC colour only) or ``.gsd`` (a
snapshot, as ``gs-mapping encode``).
"""

from __future__ import annotations

import argparse
import logging

from .encode import CODEC_DEFAULTS, add_codec_options, add_keep_ids, add_spz_axes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input", help="scene: .ply, .compressed.ply, .spz, .sog, [name.]meta.json (SOG), .splat or .gsd"
    )
    p.add_argument("out", help="output: .ply, .spz, .splat or .gsd")
    p.add_argument(
        "--spz-version", type=int, default=4, choices=(2, 3, 4), help="SPZ version written (default 4)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_keep_ids(p)
    add_spz_axes(p)
    add_codec_options(p)


def run(args) -> int:
    import json

    from ..splat_formats import written_sh_degree
    from .scene_io import check_container_output, check_scene_output, load_scene, save_scene

    if str(args.out).lower().endswith(".gsd"):
        from .encode import check_snapshot_options, encode_to

        check_snapshot_options(args)
        check_container_output(args.out, args, [args.input])  # before the work
        info = encode_to(args, load_scene(args.input, args), args.out)
        print(json.dumps(info))
        return 0
    check_scene_output(str(args.out), args, [args.input], snapshot_too=True)  # before the work
    unused = [k for k, v in CODEC_DEFAULTS.items() if getattr(args, k, v) != v]
    if unused:
        names = ", ".join("--" + k.replace("_", "-") for k in unused)
        logging.getLogger("gs_mapping.convert").warning(
            f"{args.out}: {names}: for .gsd outputs only; ignored"
        )
    gmap = load_scene(args.input, args)
    nbytes = save_scene(gmap, args.out, args)
    degree = written_sh_degree(gmap, args.out)  # (what the file holds: .splat has no SH)
    print(json.dumps({"gaussians": len(gmap), "sh_degree": degree, "bytes": nbytes}))
    return 0
