"""Warnings said once a process, not once a frame or once a bag open: a stream of frames with the
same odd encoding or frame, or a bag opened several times (to choose topics, to read TF, to map),
would otherwise repeat one warning thousands of times.

One place for every such warning, so that they share one bound (a long-lived node meeting many
distinct cases says a case again at worst, and never grows without limit) and tests can make a
process forget them (:func:`forget`).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

LIMIT = 256  # distinct warnings remembered; past it the memory starts again

_said: set[Hashable] = set()


def say_once(logger: logging.Logger, text: str, key: Hashable | None = None) -> bool:
    """Warn ``text`` on ``logger`` unless the same ``key`` (default: the text itself) was said
    before in this process; True when it was said now."""
    k = text if key is None else key
    if k in _said:
        return False
    if len(_said) >= LIMIT:
        _said.clear()
    _said.add(k)
    logger.warning(text)
    return True


def forget() -> None:
    """Forget every warning said (tests that check a warning is given, whatever ran before)."""
    _said.clear()
