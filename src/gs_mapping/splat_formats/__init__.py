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
PlayCanvas SOG           ``.sog`` zip, ``meta.json`` or a dir   yes     no
=======================  =====================================  ======  =====

Writing SOG or compressed PLY needs k-means palettes and WebP encoding that PlayCanvas'
splat-transform (npm) does well; ``bench/codec_real.py`` runs it as an anchor.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MapError
from ..gaussians import GaussianMap
from ..output_files import write_bytes
from ..ply import load_ply, read_elements, read_file, save_ply
from .compressed_ply import from_elements, is_compressed_ply
from .sog import load_sog
from .spz import read_spz, write_spz

__all__ = ["kind_of", "load_splats", "save_splats", "read_spz", "write_spz", "READ_KINDS", "WRITE_KINDS"]

READ_KINDS = ("ply", "spz", "sog")
WRITE_KINDS = ("ply", "spz")


def kind_of(path: str | Path) -> str:
    """'ply', 'spz' or 'sog' from the name (a directory or meta.json is SOG); else ''."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".ply"):
        return "ply"
    if name.endswith(".spz"):
        return "spz"
    if name.endswith(".sog") or name == "meta.json" or p.is_dir():
        return "sog"
    return ""


def load_splats(path: str | Path, tile_size: float | None = None) -> GaussianMap:
    """Any supported scene file → GaussianMap. :class:`MapError` (one line) on anything wrong."""
    path = Path(path)
    kind = kind_of(path)
    if kind == "ply":
        elements, _ = read_elements(read_file(path), path)
        gmap = (
            from_elements(elements, str(path)) if is_compressed_ply(elements) else load_ply(path, tile_size)
        )
    elif kind == "spz":
        gmap = read_spz(read_file(path), str(path))
    elif kind == "sog":
        gmap = load_sog(path)
    else:
        raise MapError(f"{path}: unknown scene format (expected .ply, .spz, .sog or meta.json)")
    if tile_size is not None:
        gmap.tile_size = tile_size
    gmap.take_changes()
    return gmap


def save_splats(
    gmap: GaussianMap,
    path: str | Path,
    *,
    spz_version: int = 4,
    overwrite: bool = False,
    inputs=(),
) -> int:
    """Write ``gmap`` as the format its name says (.ply or .spz); returns the bytes written."""
    path = Path(path)
    kind = kind_of(path)
    if kind == "ply" and not path.name.lower().endswith(".compressed.ply"):
        save_ply(gmap, path, overwrite=overwrite, inputs=inputs)
        return path.stat().st_size
    if kind == "spz":
        data = write_spz(gmap, spz_version)
        write_bytes(path, data, overwrite=overwrite, inputs=inputs)
        return len(data)
    raise MapError(
        f"{path}: writing {path.suffix or 'this'} is not supported here (.ply, .spz; for SOG and compressed "
        f"PLY use PlayCanvas splat-transform)"
    )
