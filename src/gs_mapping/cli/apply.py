"""``gs-mapping apply BASE.gsd DELTA.gsd… OUT.ply``: a snapshot plus deltas, strictly in sequence.

The sequence rules are the receiver's own (:func:`gs_map_share.receiver.delta_standing` and
:func:`~gs_map_share.receiver.apply_next`), so a file-based apply and a live receiver agree.
"""

from __future__ import annotations

import argparse

from .encode import add_keep_ids


def add_arguments(p: argparse.ArgumentParser) -> None:
    # (argparse's own usage would read `files` as repeated DELTA… OUT groups)
    p.usage = "%(prog)s [-h] [--overwrite] [--keep-ids] BASE.gsd [DELTA.gsd ...] OUT.ply"
    p.add_argument("base", help="snapshot container (.gsd)")
    p.add_argument(
        "files",
        nargs="+",
        metavar="DELTA.gsd… OUT.ply",
        help="delta containers in order (none: the snapshot alone), then the output PLY",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (never an input)")
    add_keep_ids(p)


def run(args) -> int:
    import json

    from gs_map_share.container import unpack
    from gs_map_share.errors import DecodeError
    from gs_map_share.quantize import dequantize
    from gs_map_share.receiver import DUPLICATE, NEXT, OTHER_MAP, apply_next, delta_standing
    from gs_map_share.snapshot import decode_snapshot
    from gs_mapping.errors import ConfigError, named
    from gs_mapping.output_files import check_output
    from gs_mapping.ply import save_ply

    from .scene_io import misnamed, read_container

    *deltas, out = args.files
    if not out.lower().endswith(".ply"):  # e.g. OUT forgotten: the last delta would be replaced
        raise ConfigError(f"{out}: the last argument is the output and must be a .ply file")
    inputs = [args.base, *deltas]
    check_output(out, overwrite=args.overwrite, inputs=inputs)  # before any decoding work
    try:
        h0, state = decode_snapshot(read_container(args.base))
    except DecodeError as exc:
        raise misnamed(args.base, named(args.base, exc), snapshot_only=True) from None
    if not hasattr(state, "checksum"):
        raise DecodeError(f"{args.base}: not a full snapshot")
    h = h0
    for path in deltas:
        data = read_container(path)
        try:
            dh, chunks = unpack(data)
        except DecodeError as exc:
            raise misnamed(path, DecodeError(f"{path}: {exc}"), snapshot_only=True) from None
        if dh.is_snapshot:
            raise DecodeError(f"{path}: is a snapshot, expected a delta")
        standing = delta_standing(dh, h0.map_id, h.seq)
        if standing == OTHER_MAP:
            raise DecodeError(f"{path}: delta for map {dh.map_id}, the base is map {h0.map_id}")
        if standing == DUPLICATE:
            raise DecodeError(f"{path}: delta {dh.seq} is already in the map (at sequence {h.seq})")
        if standing != NEXT:
            raise DecodeError(f"{path}: delta applies to sequence {dh.base_seq}, the map is at {h.seq}")
        try:
            state = apply_next(state, h, dh, chunks, len(data))
        except DecodeError as exc:
            raise DecodeError(f"{path}: {exc}") from None
        h = dh
    gmap = dequantize(state, h0.params, h.tile_size)
    save_ply(gmap, out, overwrite=args.overwrite, inputs=inputs, keep_ids=args.keep_ids)
    print(json.dumps({"gaussians": len(gmap), "seq": h.seq}))
    return 0
