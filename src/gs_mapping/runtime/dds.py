"""Cyclone DDS runtime: run node objects on a ROS 2 wire-compatible DDS graph without rclpy.

Topics are ``rt/<name>`` (ROS 2's prefix), types ``pkg::msg::dds_::T_`` (see :mod:`.dds_types`),
data representation XCDR1 as rmw_cyclonedds uses, and rmw_cyclonedds' QoS mapping
(``create_readwrite_qos`` in its ``rmw_node.cpp``): reliability (reliable writes block without a
time limit), durability (transient-local with a matching durability service), keep-last depth,
writers that do *not* auto-dispose unregistered instances, and on Jazzy ``typehash=RIHS01_…;`` in
every endpoint's USER_DATA (:mod:`.type_hash`). The participant carries ``enclave=/;`` and publishes
``ros_discovery_info`` (:mod:`.dds_discovery`) so ``ros2 node list`` / ``ros2 topic info -v`` on a
ROS 2 machine see the node; ``ros_distro`` picks the Humble or Jazzy layout. All callbacks run on the
thread that calls :meth:`DdsContext.spin_once`, so node objects need no locking.

Checked here by ``test/test_dds_graph.py`` reading Cyclone's built-in topics and
``ros_discovery_info`` from another process; not run against a real ``ros2`` CLI (no ROS 2 install).

Discovery defaults to loopback only (like ``ROS_LOCALHOST_ONLY=1``): a node started for testing never
talks to the network. Pass ``network=True`` or set ``CYCLONEDDS_URI`` to join a real graph.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from typing import Any

from cyclonedds.core import InstanceState, Policy, Qos, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ..errors import ConfigError, GsMappingError
from ..nodes.context import LATCHED_QOS, ExpandsNames, QoS, resolve_topic, ros_domain_id
from . import dds_discovery, dds_types
from .spin_loop import WallTimers, spin_until
from .type_hash import type_hash

# The QoS policies a reader and a writer must agree on (DDS 1.4, 2.2.3's "RxO"), by the ids an
# incompatible-QoS status names them with (Cyclone's dds_qos_policy_id_t); HISTORY and LIFESPAN are
# never incompatible
_POLICY_NAMES = {
    2: "DURABILITY",
    3: "PRESENTATION",
    4: "DEADLINE",
    5: "LATENCY_BUDGET",
    6: "OWNERSHIP",
    8: "LIVELINESS",
    11: "RELIABILITY",
    12: "DESTINATION_ORDER",
    24: "TYPE_CONSISTENCY_ENFORCEMENT",
    25: "DATA_REPRESENTATION",
}

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


def dds_qos(qos: QoS, user_data: bytes = b"") -> Qos:
    """rmw_cyclonedds' reader/writer QoS for a ROS QoS profile (``user_data``: the endpoint's
    USER_DATA, e.g. ``typehash=RIHS01_…;``)."""
    history = Policy.History.KeepLast(qos.depth)
    policies = [
        Policy.WriterDataLifecycle(autodispose=False),
        Policy.Reliability.Reliable(duration(infinite=True))
        if qos.reliable
        else Policy.Reliability.BestEffort,
        history,
        Policy.DataRepresentation(use_cdrv0_representation=True),
        Policy.Liveliness.Automatic(duration(infinite=True)),
    ]
    if qos.transient_local:
        # Cyclone keeps historical data by the durability service's history (rmw_cyclonedds sets it
        # to the same keep-last depth, no cleanup delay, no resource limits)
        policies += [Policy.Durability.TransientLocal, Policy.DurabilityService(0, history, -1, -1, -1)]
    else:
        policies.append(Policy.Durability.Volatile)
    if user_data:
        policies.append(Policy.Userdata(user_data))
    return Qos(*policies)


def endpoint_user_data(typename: str, ros_distro: str) -> bytes:
    """``typehash=RIHS01_…;`` on Jazzy (rmw_dds_common's encoding); nothing on Humble."""
    return f"typehash={type_hash(typename)};".encode() if ros_distro != "humble" else b""


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

    def subscriptions_joined(self) -> int:
        return self._writer.get_publication_matched_status().total_count


def _inline_xml_end(uri: str, i: int) -> int:
    """Where the inline XML element starting at ``uri[i] == "<"`` ends, as Cyclone's parser reads it
    (``</>`` closes anonymously; an element left open runs to the end)."""
    depth = 0
    while i < len(uri):
        if uri[i] != "<":
            i += 1
            continue
        if uri.startswith("<!--", i):
            end = uri.find("-->", i)
            i = len(uri) if end < 0 else end + 3
            continue
        j, quote = i + 1, None  # the tag's end, past quoted attribute values
        while j < len(uri) and (quote or uri[j] != ">"):
            quote = (None if uri[j] == quote else quote) if quote else (uri[j] if uri[j] in "\"'" else None)
            j += 1
        tag = uri[i : j + 1]
        i = j + 1
        if tag.startswith("</"):
            depth -= 1
        elif not (tag.startswith(("<?", "<!")) or tag.endswith("/>")):
            depth += 1
        if depth <= 0:
            return i
    return len(uri)


def cyclonedds_uri_files(uri: str) -> list[str]:
    """The files ``CYCLONEDDS_URI`` names, as Cyclone's ``ddsi_config_init`` reads it: commas and
    white space skipped, an entry starting with ``<`` inline XML to its element's end, anything else
    a file name up to the next comma (opened as written, else less a ``file://`` prefix)."""
    files, i = [], 0
    while i < len(uri):
        if uri[i].isspace() or uri[i] == ",":
            i += 1
        elif uri[i] == "<":
            i = _inline_xml_end(uri, i)
        else:
            end = uri.find(",", i)
            end = len(uri) if end < 0 else end
            files.append(uri[i:end])
            i = end
    return files


def check_cyclonedds_uri(uri: str) -> None:
    """The files ``CYCLONEDDS_URI`` names (:func:`cyclonedds_uri_files`: ``file://PATH`` or a bare
    path, beside inline ``<XML>`` or not) that exist and are not regular files refused in one line:
    Cyclone's C reader would wait on a pipe for ever, past Ctrl-C and SIGTERM. A missing one is left
    to Cyclone's own error."""
    for name in cyclonedds_uri_files(uri):
        for path in (name, name[len("file://") :] if name.startswith("file://") else None):
            try:
                mode = os.stat(path).st_mode if path else None
            except OSError:
                continue
            if mode is not None and not stat.S_ISREG(mode):
                raise ConfigError(f"CYCLONEDDS_URI: {path}: not a regular file (a directory, device or pipe)")
            break  # (the one Cyclone opens: the name as written where it exists)


class DdsContext(ExpandsNames):
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
        if ros_distro not in dds_discovery.GID_SIZE:
            raise ConfigError(f"--ros-distro: expected humble or jazzy, got {ros_distro!r}")
        self.ros_distro = ros_distro
        self.factory = dds_types.DdsFactory()
        self.logger = logging.getLogger(f"gs_mapping.{node_name}")
        domain_id = ros_domain_id(domain_id)
        self.domain_id = domain_id
        check_cyclonedds_uri(os.environ.get("CYCLONEDDS_URI", ""))
        if not network and "CYCLONEDDS_URI" not in os.environ and domain_id not in _domains:
            _domains[domain_id] = Domain(domain_id, LOOPBACK_CONFIG)
        try:
            # rmw_cyclonedds marks ROS participants with their SROS enclave ("/" when none)
            self.participant = DomainParticipant(domain_id, qos=Qos(Policy.Userdata(b"enclave=/;")))
        except Exception as exc:  # cyclonedds raises DDSException with a numeric code
            raise GsMappingError(f"cannot create a DDS participant on domain {domain_id}: {exc}") from None
        self._waitset = WaitSet(self.participant)
        self._readers: list[tuple[DataReader, ReadCondition, Callable[[Any], None]]] = []
        self._qos_watch: list[tuple[Any, str, bool]] = []  # (reader or writer, topic, is a reader)
        self._next_qos_check = 0.0
        self._timers = WallTimers()
        self._topics: dict[str, Topic] = {}
        self._reader_guids: list[bytes] = []
        self._writer_guids: list[bytes] = []
        self._discovery_writer = self._create_discovery_writer()
        self._announce()

    def _create_discovery_writer(self) -> DataWriter:
        info_cls = dds_discovery.message_types(self.ros_distro)[2]
        topic = Topic(self.participant, dds_discovery.TOPIC, info_cls)
        qos = dds_qos(LATCHED_QOS, endpoint_user_data(dds_discovery.TYPENAME, self.ros_distro))
        return DataWriter(self.participant, topic, qos=qos)

    def _announce(self) -> None:
        """(Re)publish this participant's node and endpoints on ``ros_discovery_info``."""
        ns = "/" + self.namespace.strip("/") if self.namespace.strip("/") else "/"
        msg = dds_discovery.participant_info(
            self.ros_distro,
            self.participant.guid.bytes,
            [(ns, self.node_name, self._reader_guids, self._writer_guids)],
        )
        self._discovery_writer.write(msg)

    def _topic(self, name: str, typename: str) -> Topic:
        full = resolve_topic(name, self.node_name, self.namespace)
        if full not in self._topics:
            self._topics[full] = Topic(self.participant, dds_topic_name(full), dds_types.idl_class(typename))
        return self._topics[full]

    def _check_incompatible_qos(self) -> None:
        """rclpy's default QoS event callbacks, in words: a peer whose QoS cannot match is never
        connected, and DDS says so only through this status. Polled from the spin (a cyclonedds
        listener would call Python from Cyclone's own threads, also while entities are torn down)."""
        now = time.monotonic()
        if now < self._next_qos_check:
            return
        self._next_qos_check = now + 0.5
        for entity, topic, is_reader in self._qos_watch:
            st = (
                entity.get_requested_incompatible_qos_status()
                if is_reader
                else entity.get_offered_incompatible_qos_status()
            )
            if not st.total_count_change:
                continue
            policy = _POLICY_NAMES.get(int(st.last_policy_id), "unknown")
            peer, verb, flow = (
                ("publisher", "offering", "received from")
                if is_reader
                else ("subscription", "requesting", "sent to")
            )
            self.logger.warning(
                f"New {peer} discovered on topic '{topic}', {verb} incompatible QoS. No messages will "
                f"be {flow} it. Last incompatible policy: {policy}"
            )

    def create_publisher(self, topic: str, typename: str, qos: QoS) -> DdsPublisher:
        user_data = endpoint_user_data(typename, self.ros_distro)
        writer = DataWriter(self.participant, self._topic(topic, typename), qos=dds_qos(qos, user_data))
        self._qos_watch.append((writer, topic, False))
        self._writer_guids.append(writer.guid.bytes)
        self._announce()
        return DdsPublisher(writer, typename)

    def create_subscription(
        self, topic: str, typename: str, qos: QoS, callback: Callable[[Any], None]
    ) -> None:
        user_data = endpoint_user_data(typename, self.ros_distro)
        reader = DataReader(self.participant, self._topic(topic, typename), qos=dds_qos(qos, user_data))
        self._qos_watch.append((reader, topic, True))
        cond = ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any)
        self._waitset.attach(cond)
        self._readers.append((reader, cond, callback))
        self._reader_guids.append(reader.guid.bytes)
        self._announce()

    def publisher_count(self, topic: str) -> int:
        """Publishers (DDS writers) matched with this node's readers of ``topic``: their
        subscription-matched status's current count (a writer of an incompatible QoS is not)."""
        full = resolve_topic(topic, self.node_name, self.namespace)
        return sum(
            entity.get_subscription_matched_status().current_count
            for entity, t, is_reader in self._qos_watch
            if is_reader and resolve_topic(t, self.node_name, self.namespace) == full
        )

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> None:
        self._timers.add(period_s, callback)

    def now_ns(self) -> int:
        return time.time_ns()

    def ros_time(self) -> bool:  # (the system clock: an NTP step is no jump of ROS time)
        return False

    def spin_once(self, timeout_s: float = 0.1) -> int:
        """Wait up to ``timeout_s`` (less if a timer is due), dispatch what arrived; returns the
        number of callbacks run."""
        wait_ns = self._timers.wait_ns(timeout_s)
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
        self._check_incompatible_qos()
        return ran + self._timers.fire_due()

    def spin(self, until: Callable[[], bool] | None = None, timeout_s: float | None = None) -> None:
        """Spin until ``until()`` is true or ``timeout_s`` passes (forever if both are None)."""
        spin_until(self.spin_once, until, timeout_s)

    def close(self) -> None:
        # like rmw_destroy_node: tell the graph the node is gone (no endpoints) before the participant goes
        self._discovery_writer.write(
            dds_discovery.participant_info(self.ros_distro, self.participant.guid.bytes, [])
        )
        self._readers.clear()
        self._qos_watch.clear()
        self.participant = None  # entities are released with the participant
