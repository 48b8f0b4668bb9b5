"""Optional numba compilation of the decoder's few scalar loops (ANS symbols, frequency tables).

numba is an optional dependency (requirements.txt installs it; a ROS install may not have it). Each
compiled loop has a plain path beside it that gives the same result: constriction for ANS, numpy and
Python for the rest; the tests run both and compare. ``GS_MAP_SHARE_NUMBA=0`` switches every compiled
loop off. Loops compile on first use (cached on disk by numba), never at import.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def switched_off() -> bool:
    """``GS_MAP_SHARE_NUMBA=0``: every compiled loop off (the plain paths run)."""
    return os.environ.get("GS_MAP_SHARE_NUMBA", "1") == "0"


class Compiled:
    """A loop that ``factory(numba)`` compiles on first :meth:`get`; ``False`` without numba."""

    def __init__(self, factory: Callable[[Any], Any]) -> None:
        self.factory = factory
        self.fn: Any = None  # what the factory compiled, False without numba, None before first use

    def get(self) -> Any:
        if self.fn is None:
            self.fn = False
            if not switched_off():
                try:
                    import numba
                except ImportError:
                    return False
                self.fn = self.factory(numba)
        return self.fn
