"""Scene files for the CLI: every 3DGS format :mod:`gs_mapping.splat_formats` reads, plus our own
snapshots (``.gsd``), which only the application layer may decode (the codec sits above the core)."""

from __future__ import annotations

from pathlib import Path

from gs_map_share.snapshot import decode_map
from gs_mapping.gaussians import GaussianMap
from gs_mapping.splat_formats import load_splats, save_splats


def read_container(path: str) -> bytes:
    from gs_map_share.errors import DecodeError

    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read: {exc.strerror}") from None


def load_scene(path: str, max_level: int | None = None) -> GaussianMap:
    """A scene from any supported file (a ``.gsd`` snapshot decoded, up to ``max_level``)."""
    if str(path).lower().endswith(".gsd"):
        return decode_map(read_container(path), max_level)
    return load_splats(path)


def save_scene(gmap: GaussianMap, out: str, args) -> int:
    """Write .ply / .spz / .splat by name (``args.spz_version``, ``args.overwrite``); never over the input."""
    inputs = [p for p in (getattr(args, n, None) for n in ("input", "map", "container")) if p]
    return save_splats(
        gmap,
        Path(out),
        spz_version=getattr(args, "spz_version", 4),
        overwrite=getattr(args, "overwrite", False),
        inputs=inputs,
    )
