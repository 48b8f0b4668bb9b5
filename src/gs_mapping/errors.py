"""Exception types of the suite.

Every error we raise on bad input derives from :class:`GsMappingError`, so the CLI can print it in
one line and exit non-zero, and nodes can count and skip it. Messages name what was wrong and where
(file, topic, frame, field).
"""


class GsMappingError(Exception):
    """Base of all errors the suite raises on bad input or bad configuration."""


def named(path, exc: Exception) -> Exception:
    """``exc`` (an error whose message says what, not where) with ``path`` in front, once."""
    text = str(exc)
    return type(exc)(text if text.startswith(str(path)) else f"{path}: {text}")


class Terminated(BaseException):
    """SIGTERM or SIGHUP (the terminal or ssh session went away), raised where the command runs so
    that it unwinds as for Ctrl-C: half-written outputs (temp files, partial bag folders) are removed
    and nothing existing is replaced. ``args[0]``: the signal's number. (Here, not in the CLI, so
    that the library code a command runs can save what it holds on the way out, as ``map`` does.)"""

    @property
    def word(self) -> str:
        """How a command's last line names the stop: "hangup" for SIGHUP, else "terminated"."""
        import signal

        return "hangup" if self.args[:1] == (getattr(signal, "SIGHUP", None),) else "terminated"


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
    """A lookup asked for a time outside the buffered data, beyond the allowed tolerance.

    ``future``: the time lies after the newest sample, so the transform may still arrive (a node
    waits for it, as tf2's message filter does); otherwise it is before the data held. ``gap_ns``:
    how far outside the data it lies."""

    def __init__(self, message: str = "", future: bool = False, gap_ns: int = 0):
        super().__init__(message)
        self.future, self.gap_ns = future, gap_ns


def transform_may_arrive(exc: BaseException) -> bool:
    """True for a TF failure that more TF can cure: a frame not seen yet, or a stamp after the newest
    sample (the transform may be in flight, or still waiting in its reader while the node was busy;
    a live node waits for it, bounded in time, as tf2's message filter does)."""
    return isinstance(exc, UnknownFrameError) or (isinstance(exc, ExtrapolationError) and exc.future)


class MapError(GsMappingError):
    """A Gaussian map file or container is invalid."""


class OutputError(GsMappingError):
    """An output cannot be written (exists without overwrite, is an input, read-only, no space, …).

    Raised before anything is replaced: the previous output, if any, is left intact.
    """
