"""Errors of the model side of gsmap_hd (inference inputs, checkpoints, training data).

They derive from :class:`gsmap_hd.errors.HDMapError` (the package's base, owned by the metrics side)
when it exists, else directly from :class:`gs_mapping.errors.GsMappingError`; either way the CLI prints
them in one line and exits 2.
"""

from __future__ import annotations

try:
    from .errors import HDMapError as _Base
except ImportError:  # pragma: no cover - the metrics side not installed yet
    from gs_mapping.errors import GsMappingError as _Base


class HDInputError(_Base):
    """Bad inference input: a missing or mis-sized image, non-finite calibration, wrong counts."""


class CheckpointError(_Base):
    """A checkpoint is missing, unreadable, or was trained with another model configuration."""


class HDDataError(_Base):
    """Training data is unusable (unknown GT class, empty source)."""
