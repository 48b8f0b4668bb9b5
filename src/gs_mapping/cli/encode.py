"""``gs-mapping encode SCENE OUT.gsd``: a scene as one progressive, entropy-coded snapshot.

SCENE: any format ``gs-mapping convert`` reads (PLY, compressed PLY, SPZ, SOG). Quality presets
are in metres (the mapper's maps); ``--relative`` scales the position step to the scene's own size
(for scenes in arbitrary units, see :meth:`QuantParams.relative_to`).
"""

from __future__ import annotations

import argparse

# the snapshot options' defaults (convert names those set otherwise when it writes no snapshot);
# --quality's is None so that a quality given, the default's too, can be told from none
DEFAULT_QUALITY = 2
CODEC_DEFAULTS = dict(quality=None, pos_step=None, map_id=1, frame_id="map", relative=False, levels=5, seq=1)


def add_common(p: argparse.ArgumentParser) -> None:
    d = CODEC_DEFAULTS
    p.add_argument(
        "--quality",
        type=int,
        default=d["quality"],
        help=f"0 (smallest) … 5 (finest); default {DEFAULT_QUALITY}",
    )
    p.add_argument(
        "--pos-step",
        type=float,
        default=d["pos_step"],
        help="position lattice step in scene units (overrides quality's; with --relative it is "
        "scaled to the scene as the preset's is)",
    )
    p.add_argument(
        "--map-id", type=int, default=d["map_id"], help="map id written to the container (default 1)"
    )
    p.add_argument("--frame-id", default=d["frame_id"], help="frame id of the map (default 'map')")


def add_relative(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--relative",
        action="store_true",
        help="position step relative to the scene's Gaussian sizes instead of metres (scenes in "
        "arbitrary units: trained objects, SOG/SPZ downloads)",
    )


def add_codec_options(p: argparse.ArgumentParser) -> None:
    """Options of every command that writes a snapshot (encode, convert to .gsd)."""
    add_common(p)
    add_relative(p)
    p.add_argument(
        "--levels",
        type=int,
        default=CODEC_DEFAULTS["levels"],
        help="levels of detail (default 5; 1 = single level). A map whose Gaussians carry their own "
        "2-32 levels (the mapper's) is sent in layers of those instead, unless 1",
    )
    p.add_argument(
        "--seq", type=int, default=CODEC_DEFAULTS["seq"], help="sequence number of the snapshot (default 1)"
    )


# splat_formats.SPZ_AXES, written out: importing the readers here would slow every command's start
# (a test keeps the two equal)
SPZ_AXES = ("stored", "rub")


def add_spz_axes(p: argparse.ArgumentParser) -> None:
    """``--spz-axes``, for the commands that read or write SPZ."""
    p.add_argument(
        "--spz-axes",
        choices=SPZ_AXES,
        default="stored",
        help="SPZ's axes: 'stored' takes them as stored, as Niantic's library does by default (the "
        "default; PlayCanvas splat-transform 3.x writes them so); 'rub' reads an SPZ's RUB axes (its "
        "specification; PlayCanvas splat-transform 2.x) as PLY's RDF and writes PLY's RDF as RUB: a "
        "180° turn about x (an SPZ whose coordinate-system extension says RDF is read as stored)",
    )


def add_keep_ids(p: argparse.ArgumentParser) -> None:
    """``--keep-ids``, for the commands that write a PLY (whose default is the viewers' layout)."""
    p.add_argument(
        "--keep-ids",
        action="store_true",
        help="a .ply output keeps the map's Gaussian ids and levels (a 'gs_mapping' element after "
        "the vertices, which antimatter15-style web viewers misread and gsplat.js refuses; a .gsd "
        "always keeps them)",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "map",
        help="input scene (.ply, .compressed.ply, .spz, .sog, [name.]meta.json, .splat), or a .gsd: "
        "re-encoded on its own lattice unless --quality, --pos-step or --relative is given",
    )
    p.add_argument("out", help="output container (.gsd)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_spz_axes(p)
    add_codec_options(p)


def snapshot_params(args, gmap):
    """The quantisation parameters a snapshot of ``gmap`` gets from these options (and so the
    ones a delta from it must use): the quality preset, scale-relative with ``--relative``, and
    finer higher-SH and DC steps where the SH is a palette."""
    params = preset(args)
    if getattr(args, "relative", False):
        params = params.relative_to(gmap)
    else:
        _warn_coarse_for_scene(gmap, params.pos_step, given=args.pos_step is not None)
    return params.for_shared_sh(gmap)


def preset(args):
    """The ``--quality`` preset (``DEFAULT_QUALITY`` where none is given) with ``--pos-step``."""
    from gs_map_share.quantize import QuantParams

    return QuantParams.from_quality(DEFAULT_QUALITY if args.quality is None else args.quality, args.pos_step)


FEW_STEPS = 1000  # a map spans many thousands of its position steps; a scene this narrow is not in metres


def _warn_coarse_for_scene(gmap, pos_step: float, given: bool = False) -> None:
    """Say when the metre presets are coarse for the scene (a trained object in millimetres or in
    arbitrary units spans a few steps, and its Gaussians fall onto shared lattice points)."""
    import logging

    import numpy as np

    if len(gmap) < 2:
        return
    lo, hi = np.percentile(np.asarray(gmap.means, np.float64), [1, 99], axis=0)
    span = float(np.max(hi - lo))
    if span < FEW_STEPS * pos_step:
        logging.getLogger("gs_mapping.encode").warning(
            f"the scene spans {span:.3g} units, only {span / pos_step:.0f} position steps of "
            f"{pos_step:g} ({'--pos-step' if given else 'the presets are in metres'}): for a scene in "
            "other units use --relative (or a finer --pos-step)"
        )


def encode_to(args, gmap, out: str) -> dict:
    """``gmap`` as a snapshot written to ``out``, whose name and options the caller checked before
    loading the scene (:func:`.scene_io.check_container_output`, :func:`check_snapshot_options`)."""
    from pathlib import Path

    from gs_map_share.errors import EncodeError
    from gs_map_share.snapshot import encode_map
    from gs_mapping.errors import named
    from gs_mapping.output_files import write_bytes

    inputs = [p for p in (getattr(args, "map", None), getattr(args, "input", None)) if p]
    params = container_params(inputs[0]) if inputs and _keeps_lattice(args, inputs[0]) else None
    params = params or snapshot_params(args, gmap)
    warn_if_clamped(gmap, inputs[0] if inputs else "the scene")
    try:
        data, info = encode_map(
            gmap, params, map_id=args.map_id, seq=args.seq, n_levels=args.levels, frame_id=args.frame_id
        )
    except EncodeError as exc:  # (a position beyond the lattice: which file's)
        raise named(inputs[0], exc) if inputs else exc from None
    write_bytes(Path(out), data, overwrite=args.overwrite, inputs=inputs)
    return {**info.as_dict(), "pos_step": params.pos_step}


def _keeps_lattice(args, source: str) -> bool:
    """A ``.gsd`` re-encoded (other levels, another map id) with no quantisation option keeps the
    lattice it was sent on: its decoded map is on it exactly, so nothing is lost again (the presets'
    steps in metres would requantise a ``--relative`` scene ~10× coarser)."""
    given = any(
        getattr(args, k, CODEC_DEFAULTS[k]) != CODEC_DEFAULTS[k] for k in ("quality", "pos_step", "relative")
    )
    return str(source).lower().endswith(".gsd") and not given


def container_params(path: str):
    """The quantisation of the snapshot at ``path`` (its header's; the container was read and
    checked whole when its map was loaded)."""
    from gs_map_share.container import unpack_header

    from .scene_io import read_container

    return unpack_header(read_container(path))[0].params


def warn_if_clamped(gmap, source: str) -> None:
    """One warning where values of ``gmap`` lie beyond the codec's range (they are stored at its
    bounds): what encode, convert to .gsd and diff quantise."""
    import logging

    from gs_map_share.quantize import beyond_clamps

    clamped = beyond_clamps(gmap)
    if clamped:
        logging.getLogger("gs_mapping.encode").warning(
            f"{source}: {clamped}: stored at those bounds (the codec's range)"
        )


def check_snapshot_options(args) -> None:
    """The snapshot's own options, before any work: a bad one is its own fault, not the scene's
    (the container's map_id and seq are uint64, a snapshot's seq at least 1: docs/format.md)."""
    from gs_mapping.errors import ConfigError

    if not 1 <= args.levels <= 32:
        raise ConfigError(f"--levels must be 1..32, got {args.levels}")
    if not 0 <= args.map_id < 1 << 64:
        raise ConfigError(f"--map-id must be 0 … 2**64 - 1, got {args.map_id}")
    if not 1 <= args.seq < 1 << 64:
        raise ConfigError(f"--seq must be 1 … 2**64 - 1, got {args.seq}")
    check_container_frame_id(args.frame_id)


def check_container_frame_id(frame_id: str) -> None:
    """``--frame-id`` as tf2 and the container take it: UTF-8 of at most MAX_FRAME_ID bytes too,
    which the encoder would refuse only once the scene is loaded and coded, in the scene's name."""
    from gs_map_share.container import MAX_FRAME_ID
    from gs_mapping.errors import ConfigError
    from gs_mapping.tf import check_frame_id

    check_frame_id("--frame-id", frame_id)
    try:
        size = len(frame_id.encode("utf-8"))
    except UnicodeEncodeError:  # (a command line's undecodable bytes: surrogates)
        raise ConfigError(f"--frame-id: the frame id must be UTF-8 text, got {frame_id!r}") from None
    if size > MAX_FRAME_ID:
        raise ConfigError(
            f"--frame-id: the frame id is {size} bytes, a container holds at most {MAX_FRAME_ID}"
        )


def run(args) -> int:
    import json

    from .scene_io import check_container_output, load_scene

    check_snapshot_options(args)
    check_container_output(args.out, args, [args.map])  # before the work
    print(json.dumps(encode_to(args, load_scene(args.map, args), args.out)))
    return 0
