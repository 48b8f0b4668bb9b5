"""Per-node health counters published as diagnostic_msgs/DiagnosticArray.

Each node owns one :class:`NodeDiagnostics`: it counts inputs per topic (for rates), dropped and
rejected messages with the last reason, and latencies; node-specific values (Gaussian count,
device, …) are added as key/values. A rejected message is counted and logged, never fatal.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from typing import Any

import numpy as np

OK, WARN, ERROR = 0, 1, 2


class NodeDiagnostics:
    def __init__(self, name: str, logger: logging.Logger | None = None, window: int = 100):
        self.name = name
        self.logger = logger or logging.getLogger(f"gs_mapping.{name}")
        self.inputs: dict[str, int] = defaultdict(int)
        self.rejected: dict[str, int] = defaultdict(int)
        self.dropped: dict[str, int] = defaultdict(int)
        self.skipped: dict[str, int] = defaultdict(int)  # routine skips (a rate limit): no fault
        self._faults_reported = 0  # rejected + dropped at the last report (its level: new ones only)
        self.failure = ""  # a lasting fault (the fleet store failed): ERROR at every report
        self.last_error = ""
        self._reasons_said: dict[str, set[str]] = defaultdict(set)  # topic → reasons logged
        self.values: dict[str, Any] = {}
        self._stamps: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))
        self._latency_s: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))

    def received(self, topic: str, now_ns: int) -> None:
        self.inputs[topic] += 1
        s = self._stamps[topic]
        if s and now_ns < s[-1]:  # the clock went back (a looped bag, a simulator reset): start over
            s.clear()
        s.append(now_ns)

    def fail(self, reason: str) -> None:
        """A fault that lasts until the node restarts: ERROR at every report, with its reason."""
        self.failure = reason
        self.last_error = reason

    def silent(self, topics, witnesses=()) -> list[tuple[str, float]]:
        """(topic, seconds) of ``topics`` silent for over half a second and five of their periods
        while another of them, or a ``witness`` (TF), still arrives: one input stopped, not the
        whole recording paused."""
        last = {t: self.last_received_ns(t) for t in topics}
        alive = [*last.values(), *(self.last_received_ns(w) for w in witnesses)]
        newest = max((v for v in alive if v is not None), default=None)
        rates = {t: self.rate_hz(t) for t in topics}
        slowest = min((r for r in rates.values() if r > 0), default=0.0)
        out = []
        for t, v in last.items():
            rate = rates[t] or slowest  # (one message has no rate yet: the slowest input's)
            if v is None or newest is None or rate <= 0:
                continue
            gap = (newest - v) / 1e9
            if gap > max(0.5, 5.0 / rate):
                out.append((t, gap))
        return out

    def reject(self, topic: str, reason: str, kind: str | None = None) -> None:
        """A message that could not be used: counted, skipped, and logged once per reason (the
        first few reasons of a topic; a stream of bad frames is one line, not one a frame), with a
        running total every 100th. ``kind``: what makes two reasons the same where their text
        carries a per-message measure (default: the whole text)."""
        self.rejected[topic] += 1
        self.last_error = f"{topic}: {reason}"
        n = self.rejected[topic]
        said = self._reasons_said[topic]
        key = reason if kind is None else kind
        if key not in said and len(said) < 5:
            said.add(key)
            self.logger.warning(f"rejected message #{n} on {topic}: {reason}")
        elif n % 100 == 0:
            self.logger.warning(f"{n} messages rejected on {topic} so far (the last: {reason})")

    def drop(self, what: str, reason: str = "", n: int = 1) -> None:
        self.dropped[what] += n
        if reason:
            self.last_error = f"{what}: {reason}"

    def skip(self, what: str, n: int = 1) -> None:
        """A message left out by design (``max_rate_hz``): counted, reported, not a fault."""
        self.skipped[what] += n

    def latency(self, what: str, seconds: float) -> None:
        self._latency_s[what].append(seconds)

    def last_received_ns(self, topic: str) -> int | None:
        s = self._stamps.get(topic)
        return s[-1] if s else None

    def rate_hz(self, topic: str, now_ns: int | None = None) -> float:
        """Receipts per second over the last ``window`` receipts; at ``now_ns`` (a report), a topic
        silent for more than two of its periods is rated over the same span ending now, as
        diagnostic_updater's FrequencyStatus counts events in a window ending at the report: a
        stopped camera decays to 0 instead of keeping its old rate."""
        s = self._stamps.get(topic)
        if not s or len(s) < 2 or s[-1] == s[0]:
            return 0.0
        span = s[-1] - s[0]
        rate = (len(s) - 1) / (span / 1e9)
        if now_ns is None or now_ns - s[-1] <= 2e9 / rate:
            return rate
        return sum(1 for t in s if t > now_ns - span) / (span / 1e9)  # (≥ 0: received() keeps s in order)

    def latency_stats(self, what: str) -> dict[str, float]:
        v = self._latency_s.get(what)
        if not v:
            return {}
        arr = np.asarray(v)
        return {"p50_ms": float(np.percentile(arr, 50) * 1e3), "p95_ms": float(np.percentile(arr, 95) * 1e3)}

    def summary(self) -> dict[str, Any]:
        return {
            "inputs": dict(self.inputs),
            "rejected": dict(self.rejected),
            "dropped": dict(self.dropped),
            "skipped": dict(self.skipped),
            "rates_hz": {t: round(self.rate_hz(t), 3) for t in self.inputs},
            "latency": {k: self.latency_stats(k) for k in self._latency_s},
            "last_error": self.last_error,
            **self.values,
        }

    def _faults(self) -> int:
        return sum(self.rejected.values()) + sum(self.dropped.values())

    def level(self) -> int:
        """ERROR while a lasting fault holds (:meth:`fail`); WARN while inputs are awaited
        (``waiting_for``: never arrived, or stopped) or messages were rejected or dropped since the
        last report; OK again once that is over (the counts stay in the values), as
        diagnostic_updater's statuses judge their last window."""
        if self.failure:
            return ERROR
        if self.values.get("waiting_for") or self._faults() > self._faults_reported:
            return WARN
        return OK

    def to_message(self, factory, stamp_ns: int, hardware_id: str = "") -> Any:
        """diagnostic_msgs/DiagnosticArray with one status for this node."""
        from ..messages import make_header

        pairs: list[tuple[str, str]] = []
        for topic, n in self.inputs.items():
            pairs.append((f"input {topic} count", str(n)))
            pairs.append((f"input {topic} rate_hz", f"{self.rate_hz(topic, stamp_ns):.3f}"))
        for topic, n in self.rejected.items():
            pairs.append((f"rejected {topic}", str(n)))
        for what, n in self.dropped.items():
            pairs.append((f"dropped {what}", str(n)))
        for what, n in self.skipped.items():
            pairs.append((f"skipped {what}", str(n)))
        for what in self._latency_s:
            for k, v in self.latency_stats(what).items():
                pairs.append((f"latency {what} {k}", f"{v:.2f}"))
        for k, v in self.values.items():
            pairs.append((k, str(v)))
        if self.last_error:
            pairs.append(("last_error", self.last_error))
        level = self.level()
        message = (
            "OK"
            if level == OK
            else self.failure
            if self.failure
            else "waiting for inputs (see waiting_for)"
            if self.values.get("waiting_for")
            else "inputs rejected or dropped since the last report (see values)"
        )
        self._faults_reported = self._faults()
        status = factory.make(
            "diagnostic_msgs/msg/DiagnosticStatus",
            level=level,
            name=self.name,
            message=message,
            hardware_id=hardware_id,
            values=[factory.make("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in pairs],
        )
        return factory.make(
            "diagnostic_msgs/msg/DiagnosticArray", header=make_header(stamp_ns, "", factory), status=[status]
        )
