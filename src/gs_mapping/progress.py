"""Progress of long work (``map``, ``hd-predict``, ``world``, ``replay``, ``hd-train``, ``demo``): a
tqdm bar on a terminal, plain lines anywhere else.

A bar redraws its line with carriage returns, which a log (``nohup``, systemd's journal,
``docker logs``, a CI log, ``2> file``) keeps as text, one copy a redraw; so a bar is drawn only
where stderr is a terminal (tqdm's own ``disable=None`` rule; git and pip do the same). Elsewhere a
run says how far it is in a line now and then, no carriage return, no ANSI code: at most one each
tenth of the work and each :data:`INTERVAL_ENV` seconds of wall time (default 30), whichever is
rarer, so an hour's run writes about ten lines and a short one none::

    mapping: 600/1200 (50%), 31:02 elapsed, ETA 31:02, 0.322 frame/s, kf=212, gs=40100

Where lines were written, ``close()`` writes the last state once more if it is not the last line's.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator

from .errors import ConfigError
from .std_streams import to_devnull

INTERVAL_ENV = "GS_MAPPING_PROGRESS_INTERVAL"  # seconds between lines, at least (0: each tenth)
DEFAULT_INTERVAL_S = 30.0


def line_interval_s() -> float:
    """The least wall time between two progress lines: :data:`INTERVAL_ENV`, else the default;
    :class:`ConfigError` naming the variable for a value that is not a number of seconds >= 0."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise ConfigError(f"{INTERVAL_ENV}={text!r}: must be a number of seconds >= 0")
    return value


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    leave: bool = True,
    enabled: bool = True,
):
    """What tqdm's ``tqdm(iterable, total=..., ...)`` gives (iterate it, or ``update(n)``,
    ``set_postfix(...)``, ``close()``; a context manager): tqdm's bar where stderr is a terminal
    (``leave``: it stays when done), :class:`ProgressLines` elsewhere, nothing when not ``enabled``."""
    from tqdm import tqdm

    if not enabled or sys.stderr is None:
        return tqdm(iterable, total=total, initial=initial, disable=True)
    if sys.stderr.isatty():
        return tqdm(
            iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, dynamic_ncols=True
        )
    return ProgressLines(iterable, total=total, desc=desc, unit=unit, initial=initial)


def _plain(x: float) -> str:
    """``x`` > 0 to three significant digits (all of its integer digits from 1000 on) as ``'.3g'``
    writes them, never with an exponent: ``'.3g'`` writes 999.7 as ``1e+03``, 0.0000322 as ``3.22e-05``."""
    text = f"{x:.{max(2 - math.floor(math.log10(x)), 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class ProgressLines:
    """Progress as plain lines on stderr (see the module's doc). ``clock``: seconds, monotonic."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if total is None and iterable is not None:
            with contextlib.suppress(TypeError):  # (a generator has no length: lines without a total)
                total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.interval_s = line_interval_s() if interval_s is None else interval_s
        self.n = self._n0 = self._said_n = initial
        self._clock = clock
        self._t0 = self._said_t = clock()
        self._postfix = ""
        self._said = self._closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable if self.iterable is not None else ():  # (an array has no truth value)
            yield item
            self.update(1)

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _tenth(self, n: int) -> int:
        return 10 * n // self.total if self.total else 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if now - self._said_t < self.interval_s:
            return
        if self.total and self._tenth(self.n) <= self._tenth(self._said_n):  # (no new tenth yet)
            return
        self._say(now)

    def set_postfix(self, **values) -> None:
        """Shown at the end of the next line (as tqdm's bar shows them)."""
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self._closed and self._said and self.n != self._said_n:
            self._say(self._clock())
        self._closed = True

    def line(self, now: float) -> str:
        from tqdm import tqdm

        elapsed = now - self._t0
        done = self.n - self._n0  # (a resumed run's initial steps are not this run's rate)
        parts = [f"{self.n}/{self.total} ({100 * self.n // self.total}%)" if self.total else f"{self.n}"]
        parts.append(f"{tqdm.format_interval(elapsed)} elapsed")
        if self.total:
            eta = elapsed * max(self.total - self.n, 0) / done if done > 0 else None
            parts.append(f"ETA {'?' if eta is None else tqdm.format_interval(eta)}")
        if done > 0 and elapsed > 0:
            parts.append(f"{_plain(done / elapsed)} {self.unit}/s")
        if self._postfix:
            parts.append(self._postfix)
        return f"{self.desc + ': ' if self.desc else ''}{', '.join(parts)}"

    def _say(self, now: float) -> None:
        self._said, self._said_n, self._said_t = True, self.n, now
        try:
            print(self.line(now), file=sys.stderr, flush=True)
        except ValueError:  # (stderr closed by its owner: a log that went away costs no run)
            pass
        except OSError:  # (nor one whose reader left; a buffered stderr keeps the failed line)
            to_devnull(sys.stderr)
