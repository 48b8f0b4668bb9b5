"""Exception types of gsmap_hd.

Bad input to the HD-map package (prediction/ground-truth files, map vectors, cameras, checkpoints)
raises a subclass of :class:`gs_mapping.errors.GsMappingError`, so the ``gs-mapping`` CLI prints it
as one line and exits non-zero. Messages name the file, frame, vector and key that were wrong.
"""

from gs_mapping.errors import GsMappingError


class HDMapError(GsMappingError):
    """HD-map input is invalid: an unknown class, malformed points, NaN, a missing key, ..."""
