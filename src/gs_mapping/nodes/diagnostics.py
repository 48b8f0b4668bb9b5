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
        self.last_error = ""
        self._reasons_said: dict[str, set[str]] = defaultdict(set)  # topic → reasons logged
        self.values: dict[str, Any] = {}
        self._stamps: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))
        self._latency_s: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))

    def received(self, topic: str, now_ns: int) -> None:
        self.inputs[topic] += 1
        self._stamps[topic].append(now_ns)

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

    def latency(self, what: str, seconds: float) -> None:
        self._latency_s[what].append(seconds)

    def last_received_ns(self, topic: str) -> int | None:
        s = self._stamps.get(topic)
        return s[-1] if s else None

    def rate_hz(self, topic: str) -> float:
        s = self._stamps.get(topic)
        if not s or len(s) < 2 or s[-1] == s[0]:
            return 0.0
        return (len(s) - 1) / ((s[-1] - s[0]) / 1e9)

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
            "rates_hz": {t: round(self.rate_hz(t), 3) for t in self.inputs},
            "latency": {k: self.latency_stats(k) for k in self._latency_s},
            "last_error": self.last_error,
            **self.values,
        }

    def level(self) -> int:
        return WARN if (sum(self.rejected.values()) or sum(self.dropped.values())) else OK

    def to_message(self, factory, stamp_ns: int, hardware_id: str = "") -> Any:
        """diagnostic_msgs/DiagnosticArray with one status for this node."""
        from ..messages import make_header

        pairs: list[tuple[str, str]] = []
        for topic, n in self.inputs.items():
            pairs.append((f"input {topic} count", str(n)))
            pairs.append((f"input {topic} rate_hz", f"{self.rate_hz(topic):.3f}"))
        for topic, n in self.rejected.items():
            pairs.append((f"rejected {topic}", str(n)))
        for what, n in self.dropped.items():
            pairs.append((f"dropped {what}", str(n)))
        for what in self._latency_s:
            for k, v in self.latency_stats(what).items():
                pairs.append((f"latency {what} {k}", f"{v:.2f}"))
        for k, v in self.values.items():
            pairs.append((k, str(v)))
        if self.last_error:
            pairs.append(("last_error", self.last_error))
        level = self.level()
        status = factory.make(
            "diagnostic_msgs/msg/DiagnosticStatus",
            level=level,
            name=self.name,
            message="OK" if level == OK else "inputs rejected or dropped (see values)",
            hardware_id=hardware_id,
            values=[factory.make("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in pairs],
        )
        return factory.make(
            "diagnostic_msgs/msg/DiagnosticArray", header=make_header(stamp_ns, "", factory), status=[status]
        )
