"""``gs-mapping apply BASE.gsd DELTA.gsd… OUT.ply``: a snapshot plus deltas, strictly in sequence."""

from __future__ import annotations

import argparse
from functools import partial


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", help="snapshot container (.gsd)")
    p.add_argument(
        "files", nargs="+", metavar="DELTA… OUT", help="delta containers in order, then the output PLY"
    )


def run(args) -> int:
    import json
    from pathlib import Path

    from gs_map_share.container import unpack
    from gs_map_share.delta import apply_delta
    from gs_map_share.errors import DecodeError
    from gs_map_share.quantize import dequantize
    from gs_map_share.snapshot import decode_snapshot, guarded
    from gs_mapping.ply import save_ply

    from .decode import read_container

    *deltas, out = args.files
    h0, state = decode_snapshot(read_container(args.base))
    if not hasattr(state, "checksum"):
        raise DecodeError(f"{args.base}: not a full snapshot")
    h = h0
    for path in deltas:
        data = read_container(path)
        try:
            dh, chunks = unpack(data)
        except DecodeError as exc:
            raise DecodeError(f"{path}: {exc}") from None
        if dh.is_snapshot:
            raise DecodeError(f"{path}: is a snapshot, expected a delta")
        if dh.map_id != h0.map_id:
            raise DecodeError(f"{path}: delta for map {dh.map_id}, the base is map {h0.map_id}")
        if dh.base_seq != h.seq:
            raise DecodeError(f"{path}: delta applies to sequence {dh.base_seq}, the map is at {h.seq}")
        if dh.params != h0.params:
            raise DecodeError(f"{path}: delta uses other quantisation parameters than the base")
        try:
            state = guarded(partial(apply_delta, state, dh, chunks, len(data)))
        except DecodeError as exc:
            raise DecodeError(f"{path}: {exc}") from None
        h = dh
    gmap = dequantize(state, h0.params, h.tile_size)
    save_ply(gmap, Path(out))
    print(json.dumps({"gaussians": len(gmap), "seq": h.seq}))
    return 0
