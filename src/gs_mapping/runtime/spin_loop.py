"""What the live runtimes (Cyclone DDS, Zenoh) share in their spin loops: wall-clock timers and the
spin-until loop. Replay keeps its own timers on the bag's clock."""

from __future__ import annotations

import time
from collections.abc import Callable


class WallTimers:
    """Periodic callbacks on the monotonic clock, fired from one spin thread."""

    def __init__(self) -> None:
        self._timers: list[list] = []  # [period_ns, next_due_ns, callback]

    def add(self, period_s: float, callback: Callable[[], None]) -> None:
        period = int(period_s * 1e9)
        self._timers.append([period, time.monotonic_ns() + period, callback])

    def wait_ns(self, timeout_s: float) -> int:
        """How long a spin may wait: ``timeout_s``, or less when a timer falls due sooner."""
        wait = int(timeout_s * 1e9)
        if self._timers:
            wait = max(0, min(wait, min(t[1] for t in self._timers) - time.monotonic_ns()))
        return wait

    def fire_due(self) -> int:
        """Run the timers that are due; returns how many ran."""
        ran = 0
        now = time.monotonic_ns()
        for timer in self._timers:
            if now >= timer[1]:
                timer[1] = now + timer[0]
                timer[2]()
                ran += 1
        return ran


def spin_until(
    spin_once: Callable[[float], object], until: Callable[[], bool] | None, timeout_s: float | None
) -> None:
    """Call ``spin_once`` until ``until()`` is true or ``timeout_s`` passes (forever if both are None)."""
    end = None if timeout_s is None else time.monotonic() + timeout_s
    while not (until and until()) and not (end and time.monotonic() > end):
        spin_once(0.05)
