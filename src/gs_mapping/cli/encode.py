"""``gs-mapping encode MAP.ply OUT.gsd``: a map as one progressive, entropy-coded snapshot."""

from __future__ import annotations

import argparse


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quality", type=int, default=2, help="0 (smallest) … 5 (finest); default 2")
    p.add_argument(
        "--pos-step", type=float, default=None, help="position lattice step in metres (overrides quality)"
    )
    p.add_argument("--map-id", type=int, default=1, help="map id written to the container (default 1)")
    p.add_argument("--frame-id", default="map", help="frame id of the map (default 'map')")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("map", help="input 3DGS PLY")
    p.add_argument("out", help="output container (.gsd)")
    p.add_argument("--levels", type=int, default=5, help="levels of detail (default 5)")
    p.add_argument("--seq", type=int, default=1, help="sequence number of the snapshot (default 1)")
    add_common(p)


def run(args) -> int:
    import json
    from pathlib import Path

    from gs_map_share.quantize import QuantParams
    from gs_map_share.snapshot import encode_map
    from gs_mapping.errors import ConfigError
    from gs_mapping.ply import atomic_write, load_ply

    if not 1 <= args.levels <= 32:
        raise ConfigError(f"--levels must be 1..32, got {args.levels}")
    gmap = load_ply(args.map)
    params = QuantParams.from_quality(args.quality, args.pos_step)
    data, info = encode_map(
        gmap, params, map_id=args.map_id, seq=args.seq, n_levels=args.levels, frame_id=args.frame_id
    )
    atomic_write(Path(args.out), data)
    print(json.dumps(info.as_dict()))
    return 0
