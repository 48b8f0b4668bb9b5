"""``gs-mapping diff OLD NEW OUT.gsd``: the delta from one map to another, by Gaussian id.

The delta applies to the snapshot ``gs-mapping encode OLD`` writes with the same quality,
``--relative`` and map id (sequence ``--base-seq``, default 1); it gets sequence base + 1. OLD and
NEW: any scene ``encode`` reads. A scene without ids (every trainer's PLY) is numbered as ``encode``
numbers it, and a NEW without ids is matched to OLD by content: a Gaussian that did not change
keeps its id, one that changed is removed and added (``gs_map_share.delta.match_ids``).

The receivers' state is OLD quantised with the snapshot's parameters. Where those cannot be
derived from OLD again (a chain of deltas with ``--relative``, whose step follows the scene), they
come from the snapshot itself: OLD given as the ``.gsd`` the receivers hold (its parameters, ids
and sequence), or ``--params-from BASE.gsd`` with OLD the map ``apply`` wrote.
"""

from __future__ import annotations

import argparse

from .encode import add_common, add_relative, add_spz_axes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", help="the map the receiver holds (any scene encode reads)")
    p.add_argument("new", help="the map to bring it to")
    p.add_argument("out", help="output delta (.gsd)")
    p.add_argument(
        "--base-seq",
        type=int,
        default=None,
        help="sequence number of OLD's container (default: OLD's own for a .gsd, else 1)",
    )
    p.add_argument(
        "--params-from",
        default=None,
        metavar="BASE.gsd",
        help="take the quantisation parameters from this snapshot (the one the receivers started "
        "from) instead of deriving them from OLD",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (never an input)")
    add_spz_axes(p)
    add_common(p)
    add_relative(p)
    # default: the base snapshot's (OLD as a .gsd, or --params-from), else encode's (1, 'map')
    p.set_defaults(map_id=None, frame_id=None)


def run(args) -> int:
    import json

    from gs_map_share.delta import encode_delta, match_ids
    from gs_map_share.errors import EncodeError
    from gs_map_share.quantize import to_qmap
    from gs_map_share.snapshot import spatial_ids
    from gs_mapping.errors import ConfigError, named
    from gs_mapping.output_files import write_bytes

    from .encode import snapshot_params, warn_if_clamped
    from .scene_io import check_container_output, load_scene

    if args.base_seq is not None and not 1 <= args.base_seq < (1 << 64) - 1:  # uint64 in the container
        raise ConfigError(f"--base-seq must be 1 … 2**64 - 2, got {args.base_seq}")
    if args.map_id is not None and not 0 <= args.map_id < 1 << 64:
        raise ConfigError(f"--map-id must be 0 … 2**64 - 1, got {args.map_id}")
    inputs = [p for p in (args.old, args.new, args.params_from) if p]
    check_container_output(args.out, args, inputs)  # before any work
    # the snapshot the receivers started from: its parameters, map and frame are the delta's;
    # OLD as a .gsd is where they are now (its sequence is the delta's base)
    old_header = _snapshot_header(args.old) if str(args.old).lower().endswith(".gsd") else None
    header = _snapshot_header(args.params_from) if args.params_from else old_header
    base = args.params_from or args.old
    base_seq = args.base_seq or (old_header.seq if old_header is not None else 1)
    map_id, frame_id = _map_and_frame(args, header, base)
    _check_quantisation_options(args, header, base)
    old, new = load_scene(args.old, args), load_scene(args.new, args)
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
    # the snapshot's parameters, which the delta must share
    params = header.params if header is not None else snapshot_params(args, old)
    for path, scene in ((args.old, old), (args.new, new)):
        warn_if_clamped(scene, path)
    if header is not None and header.sh_degree != old.sh_degree:
        raise ConfigError(f"{base} has SH degree {header.sh_degree}, {args.old} {old.sh_degree}")
    try:
        old_q = to_qmap(old, params)
    except EncodeError as exc:
        raise named(args.old, exc) from None
    try:
        new_q = to_qmap(new, params)
    except EncodeError as exc:
        raise named(args.new, exc) from None
    if old_implicit:  # numbered as encode numbers it
        old_q = spatial_ids(old_q, params)
    if new_implicit:
        new_q = match_ids(old_q, spatial_ids(new_q, params))
    data, info = encode_delta(
        old_q,
        new_q,
        params,
        map_id=map_id,
        seq=base_seq + 1,
        base_seq=base_seq,
        frame_id=frame_id,
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


def _map_and_frame(args, header, base: str) -> tuple[int, str]:
    """The delta's map id and frame: the base snapshot's (a delta for another map or frame would
    not apply to it; an option saying otherwise is refused), else the options' or encode's."""
    from gs_mapping.errors import ConfigError

    from .encode import CODEC_DEFAULTS, check_container_frame_id

    if args.frame_id is not None:
        check_container_frame_id(args.frame_id)
    if header is None:
        return (
            CODEC_DEFAULTS["map_id"] if args.map_id is None else args.map_id,
            CODEC_DEFAULTS["frame_id"] if args.frame_id is None else args.frame_id,
        )
    for option, given, held in (
        ("--map-id", args.map_id, header.map_id),
        ("--frame-id", args.frame_id, header.frame_id),
    ):
        if given is not None and given != held:
            raise ConfigError(f"{option} {given!r}: {base} is of {held!r}, to which the delta must apply")
    return header.map_id, header.frame_id


def _check_quantisation_options(args, header, base: str) -> None:
    """``--quality`` and ``--pos-step`` checked as encode checks them, whether used or not; with a
    base snapshot the delta must take its quantisation, so those given (and ``--relative``) are said
    to be ignored: they were dropped without a word, a ``--quality 9`` too."""
    import logging

    from .encode import CODEC_DEFAULTS, preset

    preset(args)  # (a bad --quality or --pos-step refused, as encode refuses it)
    given = [k for k in ("quality", "pos_step", "relative") if getattr(args, k) != CODEC_DEFAULTS[k]]
    if header is not None and given:
        names = ", ".join("--" + k.replace("_", "-") for k in given)
        logging.getLogger("gs_mapping.diff").warning(
            f"{names}: ignored: the delta takes the quantisation of {base}, which the receivers hold"
        )


def _snapshot_header(path: str):
    """The header of the snapshot at ``path``, the whole container checked (its chunks' CRCs):
    one line naming the file and exit 2 for anything else."""
    from gs_map_share.container import unpack
    from gs_map_share.errors import DecodeError
    from gs_mapping.errors import ConfigError, named

    from .scene_io import read_container

    try:
        h = unpack(read_container(path))[0]
    except DecodeError as exc:
        raise named(path, exc) from None
    if not h.is_snapshot:
        raise ConfigError(f"{path}: a delta (base sequence {h.base_seq}), not a snapshot")
    return h
