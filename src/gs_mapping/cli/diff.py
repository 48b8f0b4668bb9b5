"""``gs-mapping diff OLD NEW OUT.gsd``: the delta from one map to another, by Gaussian id.

The delta applies to the snapshot ``gs-mapping encode OLD`` writes with the same quality,
``--relative`` and map id (sequence ``--base-seq``, default 1); it gets sequence base + 1. OLD and
NEW: any scene ``encode`` reads. A scene without ids (every trainer's PLY) is numbered as ``encode``
numbers it, and a NEW without ids is matched to OLD by content: a Gaussian that did not change
keeps its id, one that changed is removed and added (``gs_map_share.delta.match_ids``).
"""

from __future__ import annotations

import argparse

from .encode import add_common, add_relative


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", help="the map the receiver holds (any scene encode reads)")
    p.add_argument("new", help="the map to bring it to")
    p.add_argument("out", help="output delta (.gsd)")
    p.add_argument("--base-seq", type=int, default=1, help="sequence number of OLD's container (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (never an input)")
    add_common(p)
    add_relative(p)


def run(args) -> int:
    import json

    from gs_map_share.delta import encode_delta, match_ids
    from gs_map_share.quantize import to_qmap
    from gs_map_share.snapshot import spatial_ids
    from gs_mapping.errors import ConfigError
    from gs_mapping.output_files import check_output, write_bytes

    from .encode import snapshot_params
    from .scene_io import load_scene

    if not 1 <= args.base_seq < (1 << 64) - 1:  # the container's sequence numbers are uint64
        raise ConfigError(f"--base-seq must be 1 … 2**64 - 2, got {args.base_seq}")
    if not 0 <= args.map_id < 1 << 64:
        raise ConfigError(f"--map-id must be 0 … 2**64 - 1, got {args.map_id}")
    inputs = [args.old, args.new]
    check_output(args.out, overwrite=args.overwrite, inputs=inputs)  # before any work
    old, new = load_scene(args.old), load_scene(args.new)
    if old.sh_degree != new.sh_degree:
        raise ConfigError(
            f"{args.old} has SH degree {old.sh_degree}, {args.new} {new.sh_degree}: "
            "a delta cannot change it (encode a new snapshot)"
        )
    # (an empty scene has no ids to match, whatever its file says)
    old_implicit, new_implicit = old.ids_implicit or not len(old), new.ids_implicit or not len(new)
    if old_implicit and not new_implicit:
        raise ConfigError(
            f"{args.new} has Gaussian ids and {args.old} none: they cannot be matched by id (give "
            "NEW without ids to match its Gaussians by content, or encode a new snapshot)"
        )
    params = snapshot_params(args, old)  # OLD's snapshot's, which the delta must share
    old_q, new_q = to_qmap(old, params), to_qmap(new, params)
    if old_implicit:  # numbered as encode numbers it
        old_q = spatial_ids(old_q, params)
    if new_implicit:
        new_q = match_ids(old_q, spatial_ids(new_q, params))
    data, info = encode_delta(
        old_q,
        new_q,
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
