"""``gs-mapping decode IN.gsd OUT.ply [--max-level K]``: a snapshot back to a PLY (with ids)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("container", help="input snapshot (.gsd)")
    p.add_argument("out", help="output 3DGS PLY")
    p.add_argument(
        "--max-level",
        type=int,
        default=None,
        help="stop after this level of detail (0 = coarsest): in a layered snapshot (a map "
        "with mapper levels) the Gaussians of layers 0..K, else aggregated Gaussians "
        "with ids 1..M",
    )


def run(args) -> int:
    import json
    from pathlib import Path

    from gs_map_share.snapshot import decode_map
    from gs_mapping.ply import save_ply

    data = read_container(args.container)
    gmap = decode_map(data, args.max_level)
    save_ply(gmap, Path(args.out))
    print(json.dumps({"gaussians": len(gmap), "sh_degree": gmap.sh_degree}))
    return 0


def read_container(path: str) -> bytes:
    from gs_map_share.errors import DecodeError

    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read: {exc.strerror}") from None
