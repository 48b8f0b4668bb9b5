"""Exception types of gsmap_hd (metrics and model side alike).

Bad input to the HD-map package (prediction/ground-truth files, map vectors, cameras, checkpoints)
raises a subclass of :class:`gs_mapping.errors.GsMappingError`, so the ``gs-mapping`` CLI prints it
as one line and exits non-zero. Messages name the file, frame, vector and key that were wrong.
"""

from gs_mapping.errors import GsMappingError


class HDMapError(GsMappingError):
    """HD-map input is invalid: an unknown class, malformed points, NaN, a missing key, ..."""


class HDInputError(HDMapError):
    """Bad inference input: a missing or mis-sized image, non-finite calibration, wrong counts."""


class CheckpointError(HDMapError):
    """A checkpoint is missing, unreadable, or was trained with another model configuration."""


class HDDataError(HDMapError):
    """Training data is unusable (unknown GT class, empty source)."""
