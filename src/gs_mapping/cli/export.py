"""``gs-mapping export MAP.ply OUT.spz``: Niantic SPZ (version 2, gzip) for common splat viewers."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("map", help="input 3DGS PLY")
    p.add_argument("out", help="output .spz")
    p.add_argument(
        "--fractional-bits",
        type=int,
        default=12,
        help="fixed-point fraction bits of positions (default 12: 0.24 mm steps, ±2048 m range)",
    )


def run(args) -> int:
    import json
    from pathlib import Path

    from gs_map_share.spz import write_spz
    from gs_mapping.ply import atomic_write, load_ply

    gmap = load_ply(args.map)
    data = write_spz(gmap, args.fractional_bits)
    atomic_write(Path(args.out), data)
    print(
        json.dumps(
            {
                "gaussians": len(gmap),
                "bytes": len(data),
                "bytes_per_gaussian": len(data) / max(len(gmap), 1),
                "spz_version": 2,
            }
        )
    )
    return 0
