"""A standard stream that could not be written (its reader left, its terminal went away, its disk
is full) sent to /dev/null; the log's stderr handler that does so.

Why: off a terminal Python buffers stdout and stderr (unless PYTHONUNBUFFERED is set), and a write
that fails leaves its bytes in the buffer; the flush at exit fails on them a second time and the
process exits 120 ("Exception ignored …") whatever it had done. Pointing the descriptor at
/dev/null lets that flush succeed, so the exit status is the command's own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys


def to_devnull(stream) -> None:
    """Point ``stream``'s descriptor at /dev/null (a stream without one, such as a closed stdout's
    stand-in or a test's capture, needs nothing)."""
    with contextlib.suppress(OSError, AttributeError, ValueError):
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


class StderrHandler(logging.StreamHandler):
    """The log's handler on stderr: logging passes a write error over (``handleError``), but the
    line that failed stays in a buffered stderr; here stderr goes to /dev/null then, as above."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if isinstance(sys.exc_info()[1], OSError):
            to_devnull(self.stream)
        else:
            super().handleError(record)
