"""Saving a node's map to a PLY without ever losing it (mapper_node, map_receiver_node).

- :func:`save_map` (``~/save`` and the like) writes through :mod:`gs_mapping.output_files` (temp +
  rename: the previous file stays whole on any failure) and raises one line saying why it could not
  (read-only, a directory, no space, …); the caller's ``guarded`` handler counts it and the node runs
  on with its map. An empty map (nothing mapped yet) is not written: it would replace a good file
  with nothing.
- :func:`final_save` (shutdown) never raises: where the configured path fails it saves to the
  system's temp directory instead and logs where the map is.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ..errors import ConfigError, GsMappingError
from ..output_files import rescue


def check_save_path(path: str, name: str) -> None:
    """A ``save_path`` that can never hold the map (an existing folder) refused where it is given (a
    params file, ``-p``, ``ros2 param set``: :class:`ConfigError` naming parameter ``name``), not
    found out at shutdown, when the map goes to the temp directory instead."""
    if path and "\0" not in path and os.path.isdir(os.path.expanduser(path)):
        raise ConfigError(f"{name}: {path} is a directory; give the path of the PLY file (…/map.ply)")


def save_map(gmap, path: str, what: str = "map", keep_ids: bool = False) -> None:
    """Write ``gmap`` to ``path`` as a PLY, replacing the previous file only once the new one is whole.
    ``keep_ids``: with the map's ids and levels (:func:`gs_mapping.ply.save_ply`)."""
    from ..ply import save_ply

    if not path:
        raise GsMappingError(f"no path to save the {what} to (set save_path or send a path on ~/save)")
    if len(gmap) == 0:
        raise GsMappingError(f"{path}: the {what} is empty (nothing mapped yet): not saved")
    if "\0" in path:
        raise GsMappingError(f"{path!r}: a path cannot hold a NUL character")
    # (os.path's rule, as a shell's: an unknown user's ~name stays as written; Path's raises)
    target = Path(os.path.expanduser(path))
    # a map replaces a map: a path sent on ~/save naming another kind of file (the node's own
    # parameter file, a recording) is refused, not replaced by a PLY
    head = None  # (no file, or not a regular one: save_ply's own refusal names it)
    try:
        if stat.S_ISREG(target.stat().st_mode):  # (opening a FIFO would wait for a writer)
            with target.open("rb") as f:
                head = f.read(4)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        raise GsMappingError(f"{path}: cannot read the existing file: {exc.strerror or exc}") from None
    if head not in (None, b"", b"ply\n", b"ply\r"):  # (an empty file holds nothing to lose)
        raise GsMappingError(f"{path}: exists and is not a PLY file: not replaced by the {what}")
    save_ply(gmap, target, overwrite=True, keep_ids=keep_ids)


def final_save(
    gmap, path: str, logger, node_name: str, what: str = "map", keep_ids: bool = False
) -> str | None:
    """Save at shutdown; on failure save to the temp directory and log where. The path written, if any."""
    if gmap is None or len(gmap) == 0:
        return None
    if not path:  # said, so that a map thrown away at shutdown is not a surprise
        logger.info(f"{what} of {len(gmap)} Gaussians not saved: {node_name}.save_path is empty")
        return None
    try:
        save_map(gmap, path, what, keep_ids)
    except Exception as exc:  # noqa: BLE001 - never raises: anything that fails the save goes to the rescue
        why = _reason(exc, path)
        try:  # (a rescue that fails leaves no file: an empty one where the log points would read as a map)
            saved = rescue(f"{node_name}-{what}-", ".ply", lambda p: save_map(gmap, str(p), what, keep_ids))
        except Exception as exc2:  # noqa: BLE001 - as above
            logger.error(
                f"final save failed: {why}; also could not save to the temp directory "
                f"({_reason(exc2, tempfile.gettempdir())}); the previous {path} is untouched; the {what} is not saved"
            )
            return None
        logger.error(f"final save failed: {why}; the {what} was saved to {saved} instead ({path} untouched)")
        return str(saved)
    logger.info(f"{what} saved to {path} ({len(gmap)} Gaussians)")
    return path


def _reason(exc: Exception, where: str) -> str:
    """A failure as the log names it: our errors name their path; anything else gets ``where``."""
    return str(exc) if isinstance(exc, GsMappingError) else f"{where}: {type(exc).__name__}: {exc}"
