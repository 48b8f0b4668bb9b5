"""Cyclone DDS runtime: run node objects on a ROS 2 wire-compatible DDS graph without rclpy.

Topics are ``rt/<name>`` (ROS 2's prefix), types ``pkg::msg::dds_::T_`` (see :mod:`.dds_types`),
data representation XCDR1 as rmw_cyclonedds uses, and the ROS 2 QoS mapping (reliability,
durability, keep-last depth). All callbacks run on the thread that calls :meth:`DdsContext.spin_once`,
so node objects need no locking.

Discovery defaults to loopback only (like ``ROS_LOCALHOST_ONLY=1``): a node started for testing never
talks to the network. Pass ``network=True`` or set ``CYCLONEDDS_URI`` to join a real graph.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from cyclonedds.core import InstanceState, Policy, Qos, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ..errors import GsMappingError
from ..nodes.context import QoS, resolve_topic
from . import dds_types

LOOPBACK_CONFIG = """<CycloneDDS><Domain id="any">
  <General><Interfaces><NetworkInterface name="lo"/></Interfaces>
    <AllowMulticast>false</AllowMulticast></General>
  <Discovery><ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>64</MaxAutoParticipantIndex>
    <Peers><Peer address="127.0.0.1"/></Peers></Discovery>
</Domain></CycloneDDS>"""

_domains: dict[int, Domain] = {}


def dds_topic_name(ros_topic: str) -> str:
    """``/camera/image_raw`` → ``rt/camera/image_raw``."""
    return "rt" + ros_topic


def dds_qos(qos: QoS) -> Qos:
    return Qos(
        Policy.Reliability.Reliable(duration(seconds=1)) if qos.reliable else Policy.Reliability.BestEffort,
        Policy.Durability.TransientLocal if qos.transient_local else Policy.Durability.Volatile,
        Policy.History.KeepLast(qos.depth),
        Policy.DataRepresentation(use_cdrv0_representation=True),
    )


class DdsPublisher:
    def __init__(self, writer: DataWriter, typename: str):
        self._writer = writer
        self._typename = typename
        self.count = 0

    def publish(self, msg: Any) -> None:
        cls = dds_types.idl_class(self._typename)
        self._writer.write(msg if isinstance(msg, cls) else dds_types.to_idl(msg, self._typename))
        self.count += 1

    def subscription_count(self) -> int:
        return self._writer.get_publication_matched_status().current_count


class DdsContext:
    """A :class:`~gs_mapping.nodes.context.NodeContext` on Cyclone DDS."""

    def __init__(
        self,
        node_name: str,
        namespace: str = "",
        domain_id: int | None = None,
        network: bool = False,
        ros_distro: str = "jazzy",
    ):
        self.node_name = node_name
        self.namespace = namespace
        self.ros_distro = ros_distro
        self.factory = dds_types.DdsFactory()
        self.logger = logging.getLogger(f"gs_mapping.{node_name}")
        if domain_id is None:
            domain_id = int(os.environ.get("ROS_DOMAIN_ID", "0"))
        self.domain_id = domain_id
        if not network and "CYCLONEDDS_URI" not in os.environ and domain_id not in _domains:
            _domains[domain_id] = Domain(domain_id, LOOPBACK_CONFIG)
        try:
            self.participant = DomainParticipant(domain_id)
        except Exception as exc:  # cyclonedds raises DDSException with a numeric code
            raise GsMappingError(f"cannot create a DDS participant on domain {domain_id}: {exc}") from None
        self._waitset = WaitSet(self.participant)
        self._readers: list[tuple[DataReader, ReadCondition, Callable[[Any], None]]] = []
        self._timers: list[list[Any]] = []  # [period_ns, next_due_ns, callback]
        self._topics: dict[str, Topic] = {}

    def _topic(self, name: str, typename: str) -> Topic:
        full = resolve_topic(name, self.node_name, self.namespace)
        if full not in self._topics:
            self._topics[full] = Topic(self.participant, dds_topic_name(full), dds_types.idl_class(typename))
        return self._topics[full]

    def create_publisher(self, topic: str, typename: str, qos: QoS) -> DdsPublisher:
        return DdsPublisher(
            DataWriter(self.participant, self._topic(topic, typename), qos=dds_qos(qos)), typename
        )

    def create_subscription(
        self, topic: str, typename: str, qos: QoS, callback: Callable[[Any], None]
    ) -> None:
        reader = DataReader(self.participant, self._topic(topic, typename), qos=dds_qos(qos))
        cond = ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any)
        self._waitset.attach(cond)
        self._readers.append((reader, cond, callback))

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> None:
        period = int(period_s * 1e9)
        self._timers.append([period, time.monotonic_ns() + period, callback])

    def now_ns(self) -> int:
        return time.time_ns()

    def spin_once(self, timeout_s: float = 0.1) -> int:
        """Wait up to ``timeout_s`` (less if a timer is due), dispatch what arrived; returns the
        number of callbacks run."""
        now = time.monotonic_ns()
        wait_ns = int(timeout_s * 1e9)
        if self._timers:
            wait_ns = max(0, min(wait_ns, min(t[1] for t in self._timers) - now))
        if self._readers:
            self._waitset.wait(duration(nanoseconds=max(wait_ns, 1)))
        else:
            time.sleep(wait_ns / 1e9)
        ran = 0
        for reader, _cond, callback in self._readers:
            for sample in reader.take(N=64):
                if getattr(sample, "sample_info", None) is not None and not sample.sample_info.valid_data:
                    continue
                callback(sample)
                ran += 1
        now = time.monotonic_ns()
        for timer in self._timers:
            if now >= timer[1]:
                timer[1] = now + timer[0]
                timer[2]()
                ran += 1
        return ran

    def spin(self, until: Callable[[], bool] | None = None, timeout_s: float | None = None) -> None:
        """Spin until ``until()`` is true or ``timeout_s`` passes (forever if both are None)."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while not (until and until()) and not (end and time.monotonic() > end):
            self.spin_once(0.05)

    def close(self) -> None:
        self._readers.clear()
        self.participant = None  # entities are released with the participant
