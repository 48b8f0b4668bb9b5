"""Rosbag replay runtime: drive node objects from a bag, in stamp order, and record what they publish.

The clock is the bag's: it starts at the bag's first stamp (so what nodes publish while starting is
stamped then, not at 1970), each input message sets "now" to its receive stamp, timers fire when the
clock passes their due time, and every publication is written to the output bag at the current
stamp; a last round of timers fires at the final stamp, so the output bag's span lies within the
input's. Nodes talk to each other in-process (a mapper's deltas reach a receiver in the same replay),
through a FIFO queue drained after each input message, so callbacks never nest.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..bag import BagReader, BagWriter
from ..errors import ConfigError
from ..messages import default_factory
from ..nodes.context import ExpandsNames, QoS, resolve_topic

log = logging.getLogger(__name__)


@dataclass
class ReplaySummary:
    input_messages: int = 0
    published: dict[str, int] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    wall_s: float = 0.0
    matched_inputs: list[str] = field(default_factory=list)  # subscribed topics the bag has
    unmatched_inputs: list[str] = field(default_factory=list)  # subscribed topics it lacks
    undecodable: dict[str, int] = field(default_factory=dict)  # "topic (type)" → messages skipped

    @property
    def bag_seconds(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9


class _Publisher:
    def __init__(self, bus: ReplayBus, topic: str, typename: str, qos: QoS):
        self._bus, self.topic, self.typename, self.qos = bus, topic, typename, qos

    def publish(self, msg: Any) -> None:
        self._bus.publish(self.topic, self.typename, self.qos, msg)

    def subscription_count(self) -> int:
        return len(self._bus.subscribers.get(self.topic, ()))

    def subscriptions_joined(self) -> int:
        return self._bus.joined.get(self.topic, 0)


class ReplayContext(ExpandsNames):
    """A :class:`~gs_mapping.nodes.context.NodeContext` on a :class:`ReplayBus`."""

    def __init__(self, bus: ReplayBus, node_name: str, namespace: str = ""):
        self.bus, self.node_name, self.namespace = bus, node_name, namespace
        self.factory = bus.factory
        self.logger = logging.getLogger(f"gs_mapping.{node_name}")

    def _resolve(self, topic: str) -> str:
        return resolve_topic(topic, self.node_name, self.namespace)

    def create_publisher(self, topic: str, typename: str, qos: QoS) -> _Publisher:
        self.bus.advertised.add(self._resolve(topic))
        self.bus.publishers[self._resolve(topic)] += 1
        return _Publisher(self.bus, self._resolve(topic), typename, qos)

    def create_subscription(
        self, topic: str, typename: str, qos: QoS, callback: Callable[[Any], None]
    ) -> None:
        self.bus.subscribe(self._resolve(topic), callback)

    def publisher_count(self, topic: str) -> int | None:
        """Publishers nodes on this bus made for ``topic``; None where none did (the bag's
        messages feed it: who recorded them is not known)."""
        return self.bus.publishers.get(self._resolve(topic)) or None

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> None:
        period = int(period_s * 1e9)
        self.bus.timers.append([period, None, callback])

    def now_ns(self) -> int:
        return self.bus.now_ns

    def ros_time(self) -> bool:  # (the bag's clock, as /clock from `ros2 bag play --clock`)
        return True

    def clock_stopped(self) -> bool:  # (the last round of timers, at the bag's end)
        return self.bus.final


class ReplayBus:
    """In-process topics with the bag's clock; publications go to ``writer`` when one is given."""

    def __init__(self, writer: BagWriter | None = None, factory=None):
        self.writer = writer
        self.factory = factory or default_factory()
        self.subscribers: dict[str, list[Callable[[Any], None]]] = defaultdict(list)
        self.timers: list[list[Any]] = []  # [period_ns, next_due_ns or None, callback]
        self.now_ns = 0
        self.final = False  # within fire_timers: the bag's end (ReplayContext.clock_stopped)
        self.published: dict[str, int] = defaultdict(int)
        self._queue: deque[tuple[list[Callable[[Any], None]], Any]] = deque()
        self._recorded: set[str] = set()
        self.advertised: set[str] = set()  # topics some node here publishes
        self.publishers: dict[str, int] = defaultdict(int)  # publishers made, per topic
        self._latched: dict[str, deque] = {}  # transient_local topics: the last `depth` messages
        self.joined: dict[str, int] = defaultdict(int)  # subscriptions ever made, per topic

    def context(self, node_name: str, namespace: str = "") -> ReplayContext:
        return ReplayContext(self, node_name, namespace)

    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None:
        """A late subscriber of a latched topic gets its last messages, as transient_local does."""
        self.subscribers[topic].append(callback)
        self.joined[topic] += 1
        for msg in self._latched.get(topic, ()):
            self._queue.append(([callback], msg))

    def publish(self, topic: str, typename: str, qos: QoS, msg: Any) -> None:
        self.published[topic] += 1
        if qos.transient_local:
            self._latched.setdefault(topic, deque(maxlen=qos.depth)).append(msg)
        if self.writer is not None:
            if topic not in self._recorded:
                self.writer.add_topic(topic, typename, latched=qos.transient_local)
                self._recorded.add(topic)
            self.writer.write(topic, self.now_ns, msg)
        if self.subscribers.get(topic):
            self._queue.append((self.subscribers[topic], msg))

    def inject(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Advance the clock to ``stamp_ns``, fire due timers, deliver ``msg``, drain the queue."""
        self.advance(stamp_ns)
        if self.subscribers.get(topic):
            self._queue.append((self.subscribers[topic], msg))
        self._drain()

    def _is_internal(self, topic: str) -> bool:
        """A topic some node here publishes (e.g. the receiver's deltas from the mapper)."""
        return topic in self.advertised

    def advance(self, stamp_ns: int) -> None:
        self.now_ns = max(self.now_ns, stamp_ns)
        for timer in self.timers:
            if timer[1] is None:
                timer[1] = self.now_ns + timer[0]
            while timer[1] <= self.now_ns:
                timer[1] += timer[0]
                timer[2]()
                self._drain()
        self._drain()

    def fire_timers(self) -> None:
        """Fire every timer once at the current time (a last round at the end of a replay), clock unchanged."""
        self.final = True
        try:
            for timer in self.timers:
                timer[2]()
                self._drain()
        finally:
            self.final = False

    def _drain(self) -> None:
        while self._queue:
            callbacks, msg = self._queue.popleft()
            for callback in list(callbacks):
                callback(msg)

    def run(
        self,
        reader: BagReader,
        topics: Iterable[str] | None = None,
        record_inputs: Iterable[str] = ("/tf", "/tf_static"),
        progress: bool = True,
        remap: dict[str, str] | None = None,
    ) -> ReplaySummary:
        """Feed ``reader``'s messages (those with subscribers, or ``topics``) in stamp order; copy
        ``record_inputs`` topics into the output bag unchanged. ``remap``: {bag topic: the topic it
        is played on}, as ``ros2 bag play --remap`` (names here are those played)."""
        import time

        from ..progress import progress as progress_report

        remap = remap or {}
        played: dict[str, list[str]] = {}  # topic played → the bag's topics played on it
        for info in reader.topics:
            played.setdefault(remap.get(info.name, info.name), []).append(info.name)
        wanted = set(topics) if topics is not None else set(self.subscribers)
        matched = sorted(t for t in wanted if t in played)
        unmatched = sorted(t for t in wanted if t not in played and not self._is_internal(t))
        if not matched or not any(t not in record_inputs for t in matched):
            log.warning(
                f"{reader.path}: no input topic of the nodes is in the bag (they subscribe to "
                f"{', '.join(unmatched) or 'nothing'}; the bag has {', '.join(t.name for t in reader.topics)})"
            )
        copy = {t for t in record_inputs if t in played}
        if self.writer is not None:
            for t in sorted(copy):
                sources = [reader.topic(b) for b in played[t]]
                self.writer.add_topic(t, sources[0].type, latched=any(b.latched for b in sources))
        read = [b for t in sorted(wanted | copy) for b in played.get(t, ())]
        total = sum(reader.topic(b).count for b in read)
        summary = ReplaySummary(start_ns=reader.start_ns, matched_inputs=matched, unmatched_inputs=unmatched)
        t0 = time.perf_counter()
        with progress_report(total=total, desc="replay", unit="msg", enabled=progress, leave=False) as bar:
            # a Livox cloud only fed to the nodes comes with its points as one array (as rclpy's raw
            # subscription gives it): rosbags would make an object a point
            arrays = [b for t in sorted(wanted - copy) for b in played.get(t, ())]
            for name, stamp_ns, msg in reader.messages(read, arrays=arrays):
                topic = remap.get(name, name)
                if topic in copy and self.writer is not None:
                    self.writer.write(topic, stamp_ns, msg)
                if topic in wanted:
                    self.inject(topic, msg, stamp_ns)
                else:
                    self.advance(stamp_ns)  # bag time passes for timers, inputs or not
                summary.input_messages += 1
                summary.end_ns = stamp_ns
                bar.update(1)
        summary.published = dict(self.published)
        summary.wall_s = time.perf_counter() - t0
        return summary


def close_all(nodes) -> None:
    """Close every node (each saves what it holds) even where one fails; the first failure is
    raised after all were closed (one node's failing save must not cost another node's map)."""
    first = None
    for node in nodes:
        try:
            node.close()
        except Exception as exc:  # noqa: BLE001 - raised below, once every node had its turn
            first = first or exc
    if first is not None:
        raise first


def _tf_remap(reader: BagReader, subscribed) -> dict[str, str]:
    """A robot's namespaced TF (``/robot1/tf`` where the bag's ``/tf`` holds no message, the rule of
    ``map``: :func:`~gs_mapping.topics.tf_topics`) played on ``/tf`` and ``/tf_static``, where the
    nodes listen, as ``ros2 bag play --remap /robot1/tf:=/tf`` would; not a topic a node subscribes
    to by its own name (a parameter file naming it)."""
    from ..topics import tf_topics

    return {  # (several robots' TF: said, and none of it played on /tf; a node may name one)
        name: "/tf_static" if static else "/tf"
        for name, static in tf_topics(reader)
        if name not in ("/tf", "/tf_static") and name not in subscribed
    }


def replay_bag(
    in_bag,
    out_bag,
    node_classes: list[type],
    configs: list[dict] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    strict: bool = False,
) -> tuple[ReplaySummary, list]:
    """Replay ``in_bag`` through new instances of ``node_classes`` (with their loaded configs) into
    ``out_bag``; returns the summary and the node objects (closed, state kept for inspection).
    ``out_bag`` never replaces ``in_bag``; an undecodable input message is counted in
    ``summary.undecodable`` and skipped (``strict``: an error, as is a bag holding no input topic
    of the nodes; either way no output is written)."""
    configs = configs if configs is not None else [cls.load_config(None) for cls in node_classes]
    with (
        BagReader(in_bag, strict=strict) as reader,
        BagWriter(out_bag, overwrite=overwrite, inputs=[in_bag]) as writer,
    ):
        bus = ReplayBus(writer)
        bus.now_ns = reader.start_ns  # start-up publications (snapshots, latched state) on the bag clock
        nodes = [cls(bus.context(cls.name), cfg) for cls, cfg in zip(node_classes, configs, strict=False)]
        summary = bus.run(reader, progress=progress, remap=_tf_remap(reader, bus.subscribers))
        bus.fire_timers()  # a last snapshot / diagnostics at the final stamp, inside the input's span
        close_all(nodes)
        summary.published = dict(bus.published)
        summary.undecodable = dict(reader.bad_messages)
        if strict and not [t for t in summary.matched_inputs if t not in ("/tf", "/tf_static")]:
            # raised inside the writer: the output is never committed (an existing one is kept)
            raise ConfigError(
                f"{in_bag}: no input topic of {', '.join(cls.name for cls in node_classes)} is in the bag "
                f"(they subscribe to {', '.join(summary.unmatched_inputs) or 'nothing'})"
            )
    return summary, nodes
