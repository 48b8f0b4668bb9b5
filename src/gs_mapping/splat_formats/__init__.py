"""The common 3D Gaussian splatting file formats, read and written by file name.

Generic scene I/O, beside :mod:`gs_mapping.ply` in the core (no codec, no ROS): a user's scene from
any trainer or viewer becomes a :class:`~gs_mapping.gaussians.GaussianMap` (implicit ids when the
file has none, the suite's ±inf rule for non-finite values), and back.

=======================  =====================================  ======  =====
format                   recognised by                          read    write
=======================  =====================================  ======  =====
standard 3DGS PLY        ``.ply`` (no ``packed_position``)      yes     yes
PlayCanvas compressed    ``.ply`` with chunk + packed vertex    yes     no
Niantic SPZ v1–v4        ``.spz``                               yes     v2–v4
PlayCanvas SOG           ``.sog`` zip, ``*meta.json``, a dir    yes     no
antimatter15 splat       ``.splat``                             yes     yes
=======================  =====================================  ======  =====

Writing SOG or compressed PLY needs k-means palettes and WebP encoding that PlayCanvas'
splat-transform (npm) does well; ``bench/codec_real.py`` runs it as an anchor. splat-transform
also turns the formats read by neither (GaussianSplats3D's ``.ksplat``, ``.lcc``) into a PLY.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path

from ..errors import MapError, named
from ..gaussians import GaussianMap
from ..output_files import write_bytes
from ..ply import from_ply_elements, read_elements, read_file, save_ply, warn_if_antialiased
from .antimatter_splat import read_splat, write_splat
from .compressed_ply import from_elements, is_compressed_ply
from .sog import is_meta_name, load_sog
from .spz import SPZ_AXES, read_spz, stored_coordinate_system, turn_axes, write_spz

__all__ = [
    "kind_of",
    "kind_by_name",
    "can_write",
    "load_splats",
    "save_splats",
    "written_sh_degree",
    "read_spz",
    "stored_coordinate_system",
    "write_spz",
    "read_splat",
    "write_splat",
    "READ_KINDS",
    "WRITE_KINDS",
    "READ_NAMES",
    "WRITE_NAMES",
]

log = logging.getLogger(__name__)
READ_KINDS = ("ply", "spz", "sog", "splat")
WRITE_KINDS = ("ply", "spz", "splat")
READ_NAMES = ".ply, .compressed.ply, .spz, .sog, [name.]meta.json (SOG) or .splat"
WRITE_NAMES = ".ply, .spz or .splat"


def kind_of(path: str | Path) -> str:
    """'ply', 'spz', 'sog' or 'splat' from the name (a directory or *meta.json is SOG); else ''."""
    kind = kind_by_name(path)
    try:
        return kind or ("sog" if Path(path).is_dir() else "")
    except OSError:  # a name too long to look at: no scene of ours
        return ""


def kind_by_name(path: str | Path) -> str:
    """:func:`kind_of` from the name alone (a directory of any name is not looked for)."""
    name = Path(path).name.lower()
    for kind in ("ply", "spz", "splat", "sog"):
        if name.endswith("." + kind):
            return kind
    return "sog" if is_meta_name(name) else ""


def can_write(path: str | Path) -> bool:
    """Whether :func:`save_splats` writes this name's format (not SOG, not compressed PLY)."""
    return kind_of(path) in WRITE_KINDS and not str(path).lower().endswith(".compressed.ply")


def _check_axes(spz_axes: str) -> None:
    if spz_axes not in SPZ_AXES:
        raise MapError(f"SPZ axes must be one of {', '.join(SPZ_AXES)}, got {spz_axes!r}")


def load_splats(path: str | Path, tile_size: float | None = None, spz_axes: str = "stored") -> GaussianMap:
    """Any supported scene file → GaussianMap. :class:`MapError` (one line) on anything wrong.
    ``spz_axes`` "rub": an SPZ's RUB axes are turned into PLY's RDF (:data:`.spz.SPZ_AXES`; one
    whose coordinate-system extension says RDF is read as stored)."""
    path = Path(path)
    _check_axes(spz_axes)
    try:
        with _held_warnings() as held:
            gmap = _load(path, tile_size, spz_axes)
    except MemoryError:  # what check_room could not foresee (a limit set with ulimit -v)
        raise MapError(f"{path}: out of memory while reading it") from None
    for record in held:  # the file read: what its readers noticed on the way
        logging.getLogger(record.name).handle(record)
    if tile_size is not None:
        gmap.tile_size = tile_size
    gmap.take_changes()
    return gmap


# the readers' loggers (ply's, the formats'): a warning logged on the way to a refusal (rows past
# a header whose counts are wrong, then the chunk rows they leave short) would be a second line
# beside the one-line error; held until the file has been read, dropped if it is refused
_READER_LOGGERS = ("gs_mapping.ply", __name__, f"{__name__}.sog", f"{__name__}.spz")


@contextmanager
def _held_warnings():
    """Hold the records the readers log in this thread (others' pass) until the caller handles them."""
    held: list[logging.LogRecord] = []
    me = threading.get_ident()

    def hold(record: logging.LogRecord) -> bool:
        if record.thread != me:
            return True
        held.append(record)
        return False

    loggers = [logging.getLogger(name) for name in _READER_LOGGERS]
    for logger in loggers:
        logger.addFilter(hold)
    try:
        yield held
    finally:
        for logger in loggers:
            logger.removeFilter(hold)


def _load(path: Path, tile_size: float | None, spz_axes: str) -> GaussianMap:
    kind = kind_of(path)
    if kind == "ply":
        elements, comments = read_elements(read_file(path), path)
        if is_compressed_ply(elements):
            warn_if_antialiased(comments, path)
            gmap = from_elements(elements, str(path))
        else:
            gmap = from_ply_elements(elements, comments, path, tile_size)
    elif kind == "spz":
        gmap = read_spz(read_file(path), str(path), spz_axes)
    elif kind == "sog":
        gmap = load_sog(path)
    elif kind == "splat":
        gmap = read_splat(read_file(path), str(path))
    else:
        raise MapError(f"{path}: unknown scene format (expected {READ_NAMES})")
    return gmap


def save_splats(
    gmap: GaussianMap,
    path: str | Path,
    *,
    spz_version: int = 4,
    spz_axes: str = "stored",
    overwrite: bool = False,
    inputs=(),
    spz_coordinate_system: int | None = None,
    keep_ids: bool = False,
) -> int:
    """Write ``gmap`` as the format its name says (.ply, .spz or .splat); returns the bytes written.
    ``keep_ids``: a PLY holds the map's ids and levels too (:func:`.ply.save_ply`; no other format
    written here holds them).
    ``spz_axes`` "rub": the scene's PLY axes (RDF) are turned into SPZ's RUB (:data:`.spz.SPZ_AXES`),
    written without a coordinate-system extension (RUB); "stored": ``spz_coordinate_system``, the
    extension of the SPZ the scene was read from, is written back (:func:`.spz.write_spz`)."""
    path = Path(path)
    _check_axes(spz_axes)
    if not can_write(path):
        raise MapError(
            f"{path}: writing {path.suffix or 'this'} is not supported here ({WRITE_NAMES}; for SOG and "
            f"compressed PLY use PlayCanvas splat-transform)"
        )
    kind = kind_of(path)
    if keep_ids and kind != "ply":
        raise MapError(f"{path}: only a .ply holds a map's ids (keep_ids)")
    try:
        return _save(
            gmap, path, kind, spz_version, spz_axes, overwrite, inputs, spz_coordinate_system, keep_ids
        )
    except MemoryError:  # (each writer makes its bytes before a file is opened: the output is as it was)
        raise MapError(f"{path}: out of memory while writing it") from None


def _save(
    gmap, path: Path, kind, spz_version, spz_axes, overwrite, inputs, spz_coordinate_system, keep_ids
) -> int:
    if kind == "ply":
        save_ply(gmap, path, overwrite=overwrite, inputs=inputs, keep_ids=keep_ids)
        return path.stat().st_size
    try:
        if kind == "spz":
            if spz_axes == "rub":
                data = write_spz(turn_axes(gmap), spz_version, target=str(path))
            else:
                data = write_spz(gmap, spz_version, target=str(path), coordinate_system=spz_coordinate_system)
        else:
            data = write_splat(gmap)
    except MapError as exc:  # (the file's name in front, where the writer did not put it)
        raise named(path, exc) from None
    if kind == "splat" and gmap.sh_degree:  # after writing: a refused scene gets its error line only
        log.warning(f"{path}: .splat holds the DC colour only: SH degree {gmap.sh_degree} is dropped")
    write_bytes(path, data, overwrite=overwrite, inputs=inputs)
    return len(data)


def written_sh_degree(gmap: GaussianMap, path: str | Path) -> int:
    """The SH degree a file written by :func:`save_splats` holds: .splat rows carry the DC colour
    only (antimatter15's format), the other formats the scene's degree."""
    return 0 if kind_of(Path(path)) == "splat" else gmap.sh_degree
