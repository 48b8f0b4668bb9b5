"""Exception types of the suite.

Every error we raise on bad input derives from :class:`GsMappingError`, so the CLI can print it in
one line and exit non-zero, and nodes can count and skip it. Messages name what was wrong and where
(file, topic, frame, field).
"""


class GsMappingError(Exception):
    """Base of all errors the suite raises on bad input or bad configuration."""


class ConfigError(GsMappingError):
    """A configuration file or option is invalid (unknown key, wrong type, out of range)."""


class BagError(GsMappingError):
    """A rosbag2 could not be read or written (missing, truncated, corrupt, unsupported)."""


class MessageError(GsMappingError):
    """A ROS message could not be converted (unknown encoding, size mismatch, bad field layout)."""


class TFError(GsMappingError):
    """A transform is invalid or cannot be looked up."""


class UnknownFrameError(TFError):
    """A frame was asked for that never appeared in /tf or /tf_static."""


class ExtrapolationError(TFError):
    """A lookup asked for a time outside the buffered data, beyond the allowed tolerance."""


class MapError(GsMappingError):
    """A Gaussian map file or container is invalid."""


class OutputError(GsMappingError):
    """An output cannot be written (exists without overwrite, is an input, read-only, no space, …).

    Raised before anything is replaced: the previous output, if any, is left intact.
    """
