"""Scene files for the CLI: every 3DGS format :mod:`gs_mapping.splat_formats` reads, plus our own
snapshots (``.gsd``), which only the application layer may decode (the codec sits above the core)."""

from __future__ import annotations

import struct
from pathlib import Path

from gs_map_share.container import MAGIC, unpack_header
from gs_map_share.errors import DecodeError
from gs_map_share.snapshot import decode_map
from gs_mapping.errors import ConfigError, GsMappingError, MapError, named
from gs_mapping.gaussians import GaussianMap
from gs_mapping.input_files import check_room, open_regular, read_bytes
from gs_mapping.output_files import check_output
from gs_mapping.ply import read_file, starts_as_ply
from gs_mapping.splat_formats import (
    WRITE_NAMES,
    can_write,
    kind_by_name,
    load_splats,
    save_splats,
    stored_coordinate_system,
)
from gs_mapping.splat_formats.sog import is_meta_name
from gs_mapping.splat_formats.spz import MAGIC as SPZ_MAGIC


def read_container(path: str) -> bytes:
    """A container file's bytes, once its header's Gaussian count is known to fit in memory (a
    container holds up to 8 Gaussians a byte: 8 MB can name 2**26 Gaussians, ~12 GB decoded), as
    the scene readers check theirs; a header that does not parse is left to the decoder to name."""
    try:
        data = read_bytes(path)
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        h = unpack_header(data)[0]
    except DecodeError:
        return data
    check_room(h.gaussians, h.sh_degree, path)
    return data


def _with_sog_folders(inputs) -> list:
    """``inputs`` and the folder of each SOG named by its meta file: the SOG is the folder (its
    images), so nothing is written into it, as for a SOG named by its folder."""
    return [*inputs, *(Path(p).parent for p in inputs if p and is_meta_name(Path(p).name))]


def check_scene_output(out: str, args, inputs, snapshot_too: bool = False) -> None:
    """Before any work: ``out`` names a scene format we write, and may be written
    (:func:`.output_files.check_output`). ``snapshot_too``: the command writes .gsd as well."""
    if not can_write(out):
        names = WRITE_NAMES.replace(" or ", ", ") + " or .gsd" if snapshot_too else WRITE_NAMES
        raise ConfigError(
            f"{out}: cannot write this format ({names}; SOG and compressed PLY: splat-transform)"
        )
    _check_keep_ids(out, args)
    check_output(out, overwrite=getattr(args, "overwrite", False), inputs=_with_sog_folders(inputs))


def _check_keep_ids(out: str, args) -> None:
    if getattr(args, "keep_ids", False) and kind_by_name(out) != "ply":
        raise ConfigError(
            f"{out}: --keep-ids is for a .ply output (a .gsd always keeps ids; .spz and .splat cannot)"
        )


def check_container_output(out: str, args, inputs) -> None:
    """Before any work: ``out`` is named ``.gsd``, and may be written. A container under another
    name is one only decode and apply would read: the other commands take a snapshot by its name
    (:func:`load_scene`), and every scene reader refuses one under a scene's name."""
    _check_keep_ids(out, args)
    check_output(out, overwrite=getattr(args, "overwrite", False), inputs=_with_sog_folders(inputs))
    if not str(out).lower().endswith(".gsd"):
        given = Path(out).suffix
        what = f", not {given}" if 1 < len(given) <= 16 else ""  # (a name's long tail is no format)
        hint = "; 'gs-mapping convert' writes scene formats" if kind_by_name(out) else ""
        raise ConfigError(f"{out}: a .gsd container is written here{what} (name it .gsd{hint})")


def load_scene(path: str, args=None, max_level: int | None = None) -> GaussianMap:
    """A scene from any supported file (a ``.gsd`` snapshot decoded, up to ``max_level``; an SPZ with
    ``args.spz_axes``)."""
    try:
        if str(path).lower().endswith(".gsd"):
            try:
                return decode_map(read_container(path), max_level)
            except DecodeError as exc:
                raise named(path, exc) from None
        if kind_by_name(path) == "splat":  # no header: another format's magic is all that tells
            held = _held_as(path)
            if held is not None:
                raise MapError(f"{path}: {held[0]} under another name: rename it to end in {held[1]}")
        return load_splats(path, spz_axes=getattr(args, "spz_axes", "stored"))
    except GsMappingError as exc:
        raise misnamed(path, exc) from None


# the magic a file of each format we read starts with: what it is, and the name that reads it
# (the PLY and SPZ tests are their readers' own). Read as a .splat's first position, each is a
# coordinate no scene has (|x| below 1e-19 m or above 1e10 m, or one exact float of 821.3 m for
# GSMD), so a headerless .splat is checked against them before it is read.
_HELD = (
    (starts_as_ply, "a PLY file", ".ply"),
    (lambda h: h[:4] == struct.pack("<I", SPZ_MAGIC), "an SPZ file", ".spz"),
    # gzip: deflate (8), reserved flag bits clear (what every gzip writer makes)
    (
        lambda h: h[:3] == b"\x1f\x8b\x08" and len(h) > 3 and h[3] < 0x20,
        "gzip data (as SPZ up to version 3)",
        ".spz",
    ),
    (lambda h: h.startswith(MAGIC), "a .gsd snapshot", ".gsd"),
    (lambda h: h[:4] == b"PK\x03\x04", "a zip (as a .sog)", ".sog"),
)


def misnamed(path, exc: Exception, snapshot_only: bool = False) -> Exception:
    """What to raise for ``exc``, a reader's refusal of ``path``: where the file starts with the
    magic of another format we read than its name says (``snapshot_only``: than .gsd), an error
    saying so, else ``exc``. (A PLY named .splat, a headerless format, was refused for a 'negative
    scale', an SPZ named .ply as 'not a PLY file', a scene given to decode for a 'wrong magic'.)
    Only on a refusal: a file its reader takes is never second-guessed."""
    held = _held_as(path)
    if held is None:
        return exc
    what, suffix = held
    if snapshot_only and suffix != ".gsd":
        return type(exc)(f"{path}: {what}, not a .gsd container ('gs-mapping convert' reads scenes)")
    if not snapshot_only and not str(path).lower().endswith(suffix):
        return type(exc)(f"{path}: {what} under another name: rename it to end in {suffix}")
    return exc


def _held_as(path) -> tuple[str, str] | None:
    """(what, the name that reads it) of the format whose magic ``path`` starts with, or None."""
    try:
        with open_regular(path) as f:  # (never a FIFO's open, which would wait for a writer)
            head = f.read(8)
    except OSError:  # (a SOG folder, a pipe, a missing file: the reader's own words)
        return None
    return next(((what, suffix) for holds, what, suffix in _HELD if holds(head)), None)


def save_scene(gmap: GaussianMap, out: str, args) -> int:
    """Write .ply / .spz / .splat by name (``args.spz_version``, ``args.overwrite``, ``args.keep_ids``);
    never over the input."""
    inputs = [p for p in (getattr(args, n, None) for n in ("input", "map", "container")) if p]
    axes = getattr(args, "spz_axes", "stored")
    return save_splats(
        gmap,
        Path(out),
        spz_version=getattr(args, "spz_version", 4),
        spz_axes=axes,
        overwrite=getattr(args, "overwrite", False),
        inputs=inputs,
        spz_coordinate_system=_spz_tag(inputs, out) if axes == "stored" else None,
        keep_ids=getattr(args, "keep_ids", False),
    )


def _spz_tag(inputs, out: str) -> int | None:
    """An SPZ input's coordinate-system extension, for an SPZ written in the axes it was read in:
    kept, so that its data is not taken as RUB (what no extension means) by readers that honour it."""
    spz_in = [p for p in inputs if kind_by_name(p) == "spz"]
    if kind_by_name(out) != "spz" or not spz_in:
        return None
    return stored_coordinate_system(read_file(spz_in[0]), str(spz_in[0]))  # (read and checked before)
