"""``gs-mapping diff OLD.ply NEW.ply OUT.gsd``: the delta from one map to another, by Gaussian id.

The delta applies to the snapshot ``gs-mapping encode OLD.ply`` writes with the same quality and
map id (sequence ``--base-seq``, default 1); it gets sequence base + 1.
"""

from __future__ import annotations

import argparse

from .encode import add_common


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", help="the map the receiver holds (PLY)")
    p.add_argument("new", help="the map to bring it to (PLY)")
    p.add_argument("out", help="output delta (.gsd)")
    p.add_argument("--base-seq", type=int, default=1, help="sequence number of OLD's container (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (never an input)")
    add_common(p)


def run(args) -> int:
    import json

    from gs_map_share.delta import encode_delta
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_mapping.errors import ConfigError
    from gs_mapping.output_files import check_output, write_bytes
    from gs_mapping.ply import load_ply

    if not 1 <= args.base_seq < (1 << 64) - 1:  # the container's sequence numbers are uint64
        raise ConfigError(f"--base-seq must be 1 … 2**64 - 2, got {args.base_seq}")
    if not 0 <= args.map_id < 1 << 64:
        raise ConfigError(f"--map-id must be 0 … 2**64 - 1, got {args.map_id}")
    inputs = [args.old, args.new]
    check_output(args.out, overwrite=args.overwrite, inputs=inputs)  # before any work
    old, new = load_ply(args.old), load_ply(args.new)
    if old.sh_degree != new.sh_degree:
        raise ConfigError(
            f"{args.old} has SH degree {old.sh_degree}, {args.new} {new.sh_degree}: "
            "a delta cannot change it (encode a new snapshot)"
        )
    params = QuantParams.from_quality(args.quality, args.pos_step)
    data, info = encode_delta(
        to_qmap(old, params),
        to_qmap(new, params),
        params,
        map_id=args.map_id,
        seq=args.base_seq + 1,
        base_seq=args.base_seq,
        frame_id=args.frame_id,
        tile_size=new.tile_size,
    )
    write_bytes(args.out, data, overwrite=args.overwrite, inputs=inputs)
    print(
        json.dumps(
            {
                "added": info.added,
                "updated": info.updated,
                "removed": info.removed,
                "cleared_tiles": info.cleared_tiles,
                "bytes": info.bytes,
            }
        )
    )
    return 0
