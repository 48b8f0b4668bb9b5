"""Zenoh runtime: run node objects on Zenoh in rmw_zenoh's wire format, without rclpy.

A :class:`ZenohContext` is one Zenoh session holding one ROS node, like an rmw_zenoh context with
one node: the same data keys (``<domain>/<topic>/<type>/<RIHS01 hash>``), CDR payloads (the same
bytes the DDS runtime sends) with rmw_zenoh's 33-byte attachment, and liveliness tokens under
``@ros2_lv`` for the node, each publisher and each subscription, so an ``rmw_zenoh_cpp`` graph lists
our nodes and topics (see :mod:`.zenoh_wire` for the formats and what they were checked against).
Transient-local endpoints use zenoh-ext's advanced publisher (cache of ``depth`` samples, publisher
detection, sporadic heartbeat when reliable) and advanced subscriber (history from late publishers,
recovery), as rmw_zenoh does.

All callbacks run on the thread that calls :meth:`ZenohContext.spin_once` (Zenoh delivers on its
own threads; we queue), so node objects need no locking. A payload that does not decode is
counted in :attr:`ZenohContext.bad_samples` and skipped, a sample a full keep-last queue pushes out
in :attr:`ZenohContext.dropped_samples`; both are counted in the node's diagnostics too (rejected and
dropped, :meth:`ZenohContext.attach_diagnostics`), as the node counts a message it cannot use (DDS and
rclpy decode in the middleware, which drops such samples unseen). A DELETE sample (a key deleted
with ``z_delete``) carries no message and is ignored.

Beyond the :class:`~gs_mapping.nodes.context.NodeContext` protocol a node class (the fleet map
server) may use, all on the spin thread:

- :meth:`ZenohContext.declare_queryable` ``(key_expr, handler(payload) -> bytes)``: answer ``get``
  requests, in this ROS domain (the key is ``<domain>/<key_expr>``, as topics' keys start with the
  domain: two fleets on one router do not answer each other), under that key (a wildcard query
  learns which server answered);
- :meth:`ZenohContext.get` ``(selector, payload=None, timeout_s=…) -> list[ZenohReply]``, in this
  ROS domain too;
- :meth:`ZenohContext.put` / :meth:`ZenohContext.subscribe_raw`: raw bytes on any key;
- :meth:`ZenohContext.declare_token` / :meth:`ZenohContext.subscribe_liveliness` /
  :meth:`ZenohContext.liveliness_get`: presence of vehicles (a token vanishes with its session);
- :meth:`ZenohContext.topic_key`: the rmw_zenoh data key of a ROS topic and type.

Not done: services (``SS``/``SC``), rmw_zenoh's start-up wait for a router (we warn instead),
shared memory, content filters, and Humble's rmw_zenoh (which, per third-party rmw_zenoh-compatible
projects, writes ``TypeHashNotSupported`` where Jazzy writes the RIHS01 hash; not checked in
rmw_zenoh's humble branch, not implemented). Transient-local follows rmw_zenoh >= 0.2.2 (advanced
publisher/subscriber, its #469); earlier Jazzy releases used a publication cache and a querying
subscriber, so late-joiner history between those and us is not expected to work. Not run against
an ``rmw_zenoh_cpp`` process (no ROS 2 here); eclipse-zenoh 1.10 speaks the same Zenoh 1.x protocol
as rmw_zenoh's vendored zenoh-c (1.2+), which is Zenoh's compatibility promise, not something run.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zenoh
import zenoh.ext

from ..errors import ConfigError, GsMappingError, MessageError
from ..input_files import open_regular
from ..nodes.context import ExpandsNames, QoS, resolve_topic, ros_domain_id
from . import dds_types, zenoh_wire
from .spin_loop import WallTimers, spin_until
from .type_hash import type_hash

log = logging.getLogger(__name__)

DEFAULT_ROUTER = "tcp/localhost:7447"  # rmw_zenoh's default session connects here
HEARTBEAT_S = 0.5  # rmw_zenoh: SAMPLE_MISS_DETECTION_HEARTBEAT_PERIOD 500 ms


MAX_FRAGMENT_WAIT_US = 5_000_000  # a client session's (see session_config)
_FRAGMENT_WAIT = "transport/link/tx/queue/congestion_control/drop/max_wait_before_drop_fragments"


def session_config(
    mode: str = "peer",
    connect: list[str] | None = None,
    listen: list[str] | None = None,
    config_file: str | None = None,
) -> zenoh.Config:
    """rmw_zenoh's default session (or router) settings; a config file, when given, wins.

    ``ZENOH_SESSION_CONFIG_URI`` (``ZENOH_ROUTER_CONFIG_URI`` for a router) is honoured as rmw_zenoh
    does when no file is passed. ``connect``/``listen`` then override the endpoints."""
    env = "ZENOH_ROUTER_CONFIG_URI" if mode == "router" else "ZENOH_SESSION_CONFIG_URI"
    config_file = config_file or os.environ.get(env)
    try:
        if config_file:
            # only a regular file is read (a pipe named as the file would block Zenoh's read, in
            # Rust, past Ctrl-C and SIGTERM): refused here, without waiting for a writer
            open_regular(config_file).close()
            config = zenoh.Config.from_file(config_file)
        else:
            config = zenoh.Config()
            config.insert_json5("mode", f'"{mode}"')
            config.insert_json5("scouting/multicast/enabled", "false")
            config.insert_json5("scouting/gossip/enabled", "true")
            config.insert_json5("timestamping/enabled", "true")
            config.insert_json5("queries_default_timeout", "10000")
            if mode == "router":
                listen = listen or ["tcp/[::]:7447"]
                connect = connect or []
            else:
                listen = listen or ["tcp/localhost:0"]
                connect = [DEFAULT_ROUTER] if connect is None else connect
        # a client's message of many fragments (a map delta or snapshot of megabytes) may wait this
        # long for room on its one link, to its router, before it is dropped: Zenoh's 50 ms lost a
        # 6 MiB delta on a 32 Mbit/s uplink without a word (a publish may then take that long on a
        # slow link). A router or peer sends to every subscriber itself: there one receiver that
        # stopped reading (a suspended laptop) would hold each delta, and the sender's thread, up to
        # this long for all, so they keep Zenoh's 50 ms (that receiver loses deltas, the others
        # not). A config file that sets it keeps its own, as Zenoh read it (a comment naming it sets
        # nothing; a file setting Zenoh's own default cannot be told from one that does not)
        unset = config.get_json(_FRAGMENT_WAIT) == zenoh.Config().get_json(_FRAGMENT_WAIT)
        if unset and json.loads(config.get_json("mode")) == "client":
            config.insert_json5(_FRAGMENT_WAIT, str(MAX_FRAGMENT_WAIT_US))
        if connect is not None:
            config.insert_json5("connect/endpoints", _json_list(connect))
        if listen is not None:
            config.insert_json5("listen/endpoints", _json_list(listen))
    except (zenoh.ZError, OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else _short(exc)
        raise ConfigError(f"zenoh configuration ({config_file or 'built-in'}): {why}") from None
    return config


def asks_any_port(endpoint: str) -> bool:
    """``tcp/127.0.0.1:0``: listen where the system chooses (metadata after ``?`` / ``#`` aside)."""
    return endpoint.split("#")[0].split("?")[0].endswith(":0")


def listen_endpoints(session: zenoh.Session, config: zenoh.Config) -> list[str]:
    """The endpoints a session opened with ``config`` listens on: the config's own (a file's, or
    ``--listen``, or the built-in default; per mode where the file lists them per mode). Where one
    asks for port 0, the locators Zenoh bound instead, as its admin space tells them (only where
    the config enables it: it is off by default, and then port 0 stays as asked)."""
    mode = json.loads(config.get_json("mode")) or "peer"  # (Zenoh's default)
    endpoints = json.loads(config.get_json("listen/endpoints"))
    if isinstance(endpoints, dict):
        endpoints = endpoints.get(mode) or []
    if any(map(asks_any_port, endpoints)):
        for reply in session.get(f"@/{session.zid()}/{mode}", timeout=2.0):
            if reply.ok is not None:
                bound = json.loads(reply.ok.payload.to_bytes()).get("locators")
                return [str(b) for b in bound] or endpoints
    return [str(e) for e in endpoints]


def _short(exc: Exception) -> str:
    """Zenoh's message without the Rust source locations it appends (`` at /…/x.rs:12.``), on one
    line."""
    text = re.sub(r" at /\S+\.rs:\d+\.?", "", str(exc))  # (each, inner ones too: the message goes on)
    text = text.replace('Json5Err(Message { msg: "', "")
    # json5's caret diagram spans lines (" --> 2:1", "2 | <source>", "  | ^---", "  = expected …"):
    # its place and its message ("> 2:1; 2; expected …" read as a quote of the file)
    diagram = re.search(r"-->\s*(\d+):(\d+)(?s:.*)^\s*=\s*(.+)$", text, re.M)
    if diagram:
        return f"line {diagram[1]}, column {diagram[2]}: {diagram[3].strip()}"
    # serde's: 'JSON error: Message { msg: "…", location: Some(Location { line: 1, column: 9 }) }'
    serde = re.fullmatch(r'JSON error: Message \{ msg: "(.*)", location: Some\(Location \{ line: (\d+), '
                         r"column: (\d+) \}\) \}", text.strip(), re.S)  # fmt: skip
    if serde:
        # (msg is Rust's Debug of the text: its quotes escaped, 'string \"yes\", expected a boolean')
        return f"line {serde[2]}, column {serde[3]}: " + serde[1].replace('\\"', '"')
    lines = [ln.strip(" |^-=") for ln in text.splitlines()]
    return "; ".join(ln for ln in lines if ln)


def _json_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def open_session(config: zenoh.Config, what: str) -> zenoh.Session:
    try:
        return zenoh.open(config)
    except zenoh.ZError as exc:
        raise GsMappingError(f"cannot open a zenoh {what}: {_short(exc)}") from None


@dataclass(frozen=True)
class ZenohReply:
    """One answer to :meth:`ZenohContext.get` (``ok`` False: the queryable replied an error)."""

    key: str
    payload: bytes
    attachment: bytes | None
    ok: bool = True


class ZenohPublisher:
    def __init__(self, ctx: ZenohContext, key: str, typename: str, gid: bytes, pub: Any):
        self._ctx, self.key, self._typename, self.gid, self._pub = ctx, key, typename, gid, pub
        self._seq = 0
        self.count = 0

    def publish(self, msg: Any) -> None:
        cls = dds_types.idl_class(self._typename)
        idl = msg if isinstance(msg, cls) else dds_types.to_idl(msg, self._typename)
        self.publish_serialized(dds_types.serialize(idl))

    def publish_serialized(self, cdr: bytes) -> None:
        """Send CDR bytes (with their 4-byte encapsulation header) as this publisher."""
        self._seq += 1  # rmw_zenoh starts at 1
        attachment = zenoh_wire.encode_attachment(self._seq, time.time_ns(), self.gid)
        self._pub.put(cdr, attachment=attachment)
        self.count += 1

    def subscription_count(self) -> int:
        """Matching subscriptions seen in the graph (their ``MS`` liveliness tokens)."""
        return self._ctx.graph_count(zenoh_wire.SUBSCRIPTION, self.key)

    def subscriptions_joined(self) -> int:
        """Matching subscriptions whose tokens ever appeared (one leaving as another joins shows)."""
        return self._ctx.graph_joined(zenoh_wire.SUBSCRIPTION, self.key)


class ZenohContext(ExpandsNames):
    """A :class:`~gs_mapping.nodes.context.NodeContext` on one Zenoh session (see module doc)."""

    def __init__(
        self,
        node_name: str,
        namespace: str = "",
        domain_id: int | None = None,
        *,
        connect: list[str] | None = None,
        listen: list[str] | None = None,
        mode: str = "peer",
        config_file: str | None = None,
        enclave: str = "/",
    ):
        self.node_name = node_name
        self.namespace = namespace
        self.factory = dds_types.DdsFactory()
        self.logger = logging.getLogger(f"gs_mapping.{node_name}")
        domain_id = ros_domain_id(domain_id)
        self.domain_id = domain_id
        self.session = open_session(session_config(mode, connect, listen, config_file), "session")
        try:
            self._start(node_name, namespace, domain_id, connect, mode, enclave)
        except BaseException:
            # (an error, or a Ctrl-C landing here: the graph subscriber's callback and the session's
            # threads would keep the process alive after its error line; the caller has no context
            # to close)
            self.session.close()
            raise

    def _start(self, node_name, namespace, domain_id, connect, mode, enclave) -> None:
        """The rest of :meth:`__init__`, on the open session."""
        self.zid = str(self.session.zid())
        if mode == "peer" and not list(self.session.info.routers_zid()):
            # rmw_zenoh waits for its router; we go on (peers on this host still meet) but say so
            self.logger.warning(
                f"{node_name}: no Zenoh router reachable at {', '.join(connect or [DEFAULT_ROUTER])}; "
                "start one with `gs-mapping router`"
            )
        self._cond = threading.Condition()
        self._queues: list[tuple[collections.deque, Callable[[Any], None]]] = []
        self._timers = WallTimers()
        self._entities: list[Any] = []  # publishers, subscribers, queryables, tokens to undeclare
        self._next_id = 0
        self.bad_samples: dict[str, int] = collections.Counter()
        self.dropped_samples: dict[str, int] = collections.Counter()  # (keep-last: the oldest went)
        self._diag: Any = None  # the node's diagnostics (attach_diagnostics)
        self._drops_told: dict[str, int] = {}
        self._graph: dict[str, zenoh_wire.GraphEntity] = {}
        self._graph_joined: collections.Counter = collections.Counter()  # (kind, data key) → tokens seen
        self._graph_lock = threading.Lock()
        self._graph_sub = self.session.liveliness().declare_subscriber(
            f"{zenoh_wire.ADMIN_SPACE}/{domain_id}/**", self._on_graph_token, history=True
        )
        self.node_id = self._new_id()
        ns = "/" + namespace.strip("/") if namespace.strip("/") else "/"
        self._node_info = dict(
            domain_id=domain_id, zid=self.zid, node_id=str(self.node_id), enclave=enclave, namespace=ns
        )
        node = zenoh_wire.GraphEntity(
            **self._node_info, entity_id=str(self.node_id), kind=zenoh_wire.NODE, node_name=node_name
        )
        self._entities.append(self.session.liveliness().declare_token(node.keyexpr))

    # ---- ids, graph ---------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _entity(self, kind: str, topic: str, typename: str, qos: QoS) -> zenoh_wire.GraphEntity:
        return zenoh_wire.GraphEntity(
            **self._node_info,
            entity_id=str(self._new_id()),
            kind=kind,
            node_name=self.node_name,
            topic=topic,
            type_name=dds_types.dds_type_name(typename),
            type_hash=type_hash(typename),
            qos=zenoh_wire.RmwQos.from_qos(qos),
        )

    def _on_graph_token(self, sample: zenoh.Sample) -> None:
        key = str(sample.key_expr)
        with self._graph_lock:
            if sample.kind == zenoh.SampleKind.DELETE:
                self._graph.pop(key, None)
                return
            try:
                e = zenoh_wire.parse_liveliness(key)
            except MessageError as exc:
                log.debug(f"ignoring liveliness token: {exc}")
                return
            if key not in self._graph and e.topic:
                self._graph_joined[e.kind, self._data_key(e)] += 1
            self._graph[key] = e

    def graph(self) -> list[zenoh_wire.GraphEntity]:
        """Every entity of this domain whose liveliness token is alive (ours included)."""
        with self._graph_lock:
            return list(self._graph.values())

    @staticmethod
    def _data_key(e: zenoh_wire.GraphEntity) -> str:
        return zenoh_wire.topic_keyexpr(e.domain_id, e.topic, e.type_name, e.type_hash)

    def graph_count(self, kind: str, data_key: str) -> int:
        """Remote-or-local entities of ``kind`` whose topic/type/hash give ``data_key``."""
        return sum(e.kind == kind and self._data_key(e) == data_key for e in self.graph())

    def graph_joined(self, kind: str, data_key: str) -> int:
        """Entities of ``kind`` on ``data_key`` whose tokens ever appeared (gone ones too)."""
        with self._graph_lock:
            return self._graph_joined[kind, data_key]

    def publisher_count(self, topic: str) -> int:
        """Zenoh sessions (processes) whose publisher tokens on ``topic`` (resolved against this
        node) are up: two processes publishing as one node count 2, as the map server counts a
        vehicle's (a killed process's token stays until Zenoh times its session out)."""
        full = resolve_topic(topic, self.node_name, self.namespace)
        return len({e.zid for e in self.graph() if e.kind == zenoh_wire.PUBLISHER and e.topic == full})

    def topic_key(self, topic: str, typename: str) -> str:
        """The rmw_zenoh data key of a ROS topic name (resolved against this node) and type."""
        full = resolve_topic(topic, self.node_name, self.namespace)
        return zenoh_wire.topic_keyexpr(
            self.domain_id, full, dds_types.dds_type_name(typename), type_hash(typename)
        )

    # ---- NodeContext ---------------------------------------------------------------------------

    def create_publisher(self, topic: str, typename: str, qos: QoS) -> ZenohPublisher:
        full = resolve_topic(topic, self.node_name, self.namespace)
        entity = self._entity(zenoh_wire.PUBLISHER, full, typename, qos)
        key = zenoh_wire.topic_keyexpr(self.domain_id, full, entity.type_name, entity.type_hash)
        reliability = zenoh.Reliability.RELIABLE if qos.reliable else zenoh.Reliability.BEST_EFFORT
        opts: dict[str, Any] = dict(congestion_control=zenoh.CongestionControl.DROP, reliability=reliability)
        if qos.transient_local:
            opts.update(cache=zenoh.ext.CacheConfig(max_samples=max(qos.depth, 1)), publisher_detection=True)
            if qos.reliable:
                opts["sample_miss_detection"] = zenoh.ext.MissDetectionConfig(
                    heartbeat=None, sporadic_heartbeat=HEARTBEAT_S
                )
        pub = zenoh.ext.declare_advanced_publisher(self.session, key, **opts)
        self._entities.append(pub)
        self._entities.append(self.session.liveliness().declare_token(entity.keyexpr))
        return ZenohPublisher(self, key, typename, entity.gid, pub)

    def create_subscription(
        self, topic: str, typename: str, qos: QoS, callback: Callable[[Any], None]
    ) -> None:
        full = resolve_topic(topic, self.node_name, self.namespace)
        entity = self._entity(zenoh_wire.SUBSCRIPTION, full, typename, qos)
        key = zenoh_wire.topic_keyexpr(self.domain_id, full, entity.type_name, entity.type_hash)

        def deliver(payload: bytes, _attachment: bytes | None) -> None:
            try:
                msg = dds_types.deserialize(payload, typename)
            except MessageError as exc:
                self._bad(full, str(exc))
                return
            callback(msg)

        self._subscribe(key, full, deliver, qos)
        self._entities.append(self.session.liveliness().declare_token(entity.keyexpr))

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> None:
        self._timers.add(period_s, callback)

    def now_ns(self) -> int:
        return time.time_ns()

    def ros_time(self) -> bool:  # (the system clock: an NTP step is no jump of ROS time)
        return False

    # ---- raw Zenoh, for node classes that need more than topics ---------------------------------

    def put(self, key: str, payload: bytes, attachment: bytes | None = None) -> None:
        self.session.put(key, payload, attachment=attachment)

    def subscribe_raw(
        self, key_expr: str, callback: Callable[[str, bytes, bytes | None], None], depth: int = 1000
    ) -> None:
        """``callback(key, payload, attachment)`` on the spin thread for every sample on ``key_expr``."""
        queue: collections.deque = collections.deque(maxlen=depth)

        def on_sample(sample: zenoh.Sample) -> None:
            att = sample.attachment
            item = (
                str(sample.key_expr),
                sample.payload.to_bytes(),
                att.to_bytes() if att is not None else None,
            )
            self._push(queue, key_expr, item)

        self._queues.append((queue, lambda item: callback(*item)))
        self._entities.append(self.session.declare_subscriber(key_expr, on_sample))

    def declare_queryable(self, key_expr: str, handler: Callable[[bytes], bytes]) -> None:
        """``handler(request payload) -> reply payload`` runs on the spin thread; the reply goes
        under this queryable's own key (``<domain>/<key_expr>``); a handler that raises replies an
        error with its message. The query is finalised when the reply is sent."""
        queue: collections.deque = collections.deque()
        key = f"{self.domain_id}/{key_expr}"

        def on_query(query: zenoh.Query) -> None:
            self._push(queue, key, query)

        def run(query: zenoh.Query) -> None:
            with query:  # leaving the block finalises the query: the querier stops waiting on us
                payload = query.payload.to_bytes() if query.payload is not None else b""
                try:
                    answer = handler(payload)
                except Exception as exc:  # noqa: BLE001 - said to the querier, the node runs on
                    query.reply_err(str(exc).encode())
                    return
                query.reply(key, answer)

        self._queues.append((queue, run))
        self._entities.append(self.session.declare_queryable(key, on_query))

    def get(self, selector: str, payload: bytes | None = None, timeout_s: float = 10.0) -> list[ZenohReply]:
        """Query ``selector`` in this ROS domain (``<domain>/<selector>``) and wait for all replies
        (or ``timeout_s``)."""
        replies = []
        for reply in self.session.get(f"{self.domain_id}/{selector}", payload=payload, timeout=timeout_s):
            if reply.ok is not None:
                s = reply.ok
                att = s.attachment
                replies.append(
                    ZenohReply(
                        str(s.key_expr), s.payload.to_bytes(), att.to_bytes() if att is not None else None
                    )
                )
            else:
                replies.append(ZenohReply("", reply.err.payload.to_bytes(), None, ok=False))
        return replies

    def declare_token(self, key: str) -> Any:
        """A liveliness token; it disappears when undeclared, at close, or when this process dies."""
        token = self.session.liveliness().declare_token(key)
        self._entities.append(token)
        return token

    def subscribe_liveliness(self, key_expr: str, callback: Callable[[str, bool], None]) -> None:
        """``callback(key, alive)`` on the spin thread for tokens appearing/vanishing (current ones
        are reported first)."""
        queue: collections.deque = collections.deque()

        def on_token(sample: zenoh.Sample) -> None:
            self._push(queue, key_expr, (str(sample.key_expr), sample.kind == zenoh.SampleKind.PUT))

        self._queues.append((queue, lambda item: callback(*item)))
        sub = self.session.liveliness().declare_subscriber(key_expr, on_token, history=True)
        self._entities.append(sub)

    def liveliness_get(self, key_expr: str, timeout_s: float = 3.0) -> list[str]:
        """Keys of the liveliness tokens alive now under ``key_expr``."""
        return [
            str(r.ok.key_expr)
            for r in self.session.liveliness().get(key_expr, timeout=timeout_s)
            if r.ok is not None
        ]

    # ---- dispatch ------------------------------------------------------------------------------

    def _subscribe(
        self, key: str, name: str, deliver: Callable[[bytes, bytes | None], None], qos: QoS
    ) -> None:
        queue: collections.deque = collections.deque(maxlen=max(qos.depth, 1))  # keep-last: drop oldest

        def on_sample(sample: zenoh.Sample) -> None:
            if sample.kind == zenoh.SampleKind.DELETE:  # (a key deleted, `z_delete`: no message)
                return
            att = sample.attachment
            self._push(queue, name, (sample.payload.to_bytes(), att.to_bytes() if att is not None else None))

        opts: dict[str, Any] = {}
        if qos.transient_local:
            opts.update(
                history=zenoh.ext.HistoryConfig(detect_late_publishers=True, max_samples=max(qos.depth, 1)),
                subscriber_detection=True,
            )
            if qos.reliable:
                opts["recovery"] = zenoh.ext.RecoveryConfig(periodic_queries=None, heartbeat=True)
        sub = zenoh.ext.declare_advanced_subscriber(self.session, key, on_sample, **opts)
        self._queues.append((queue, lambda item: deliver(*item)))
        self._entities.append(sub)

    def _push(self, queue: collections.deque, key: str, item: Any) -> None:
        with self._cond:
            if queue.maxlen is not None and len(queue) == queue.maxlen:
                self.dropped_samples[key] += 1
            queue.append(item)
            self._cond.notify()

    def attach_diagnostics(self, diag: Any) -> None:
        """Count what this runtime refuses or drops before a node's handler runs (a sample that is
        no CDR message of the topic's type; one a full keep-last queue pushed out) in the node's
        :class:`~gs_mapping.nodes.diagnostics.NodeDiagnostics` too, as the node's guard counts a
        message it cannot use (NodeBase attaches its own)."""
        self._diag = diag

    def _bad(self, topic: str, reason: str) -> None:
        self.bad_samples[topic] += 1
        if self._diag is not None:  # (logged there, once per reason)
            self._diag.reject(topic, f"undecodable sample: {reason}", kind="undecodable")
        elif self.bad_samples[topic] == 1:
            self.logger.warning(f"{self.node_name}: skipping an undecodable sample on {topic}: {reason}")

    def spin_once(self, timeout_s: float = 0.1) -> int:
        """Wait up to ``timeout_s`` (less if a timer is due), run what arrived; returns the number
        of callbacks run."""
        wait_ns = self._timers.wait_ns(timeout_s)
        with self._cond:
            if not any(q for q, _ in self._queues):
                self._cond.wait(wait_ns / 1e9)
            batch = []
            for queue, run in self._queues:
                while queue:
                    batch.append((run, queue.popleft()))
            drops = {k: n - self._drops_told.get(k, 0) for k, n in self.dropped_samples.items()}
            self._drops_told = dict(self.dropped_samples)
        for topic, n in drops.items():  # (on this thread: the node's diagnostics are not locked)
            if n and self._diag is not None:
                self._diag.drop(topic, "keep-last queue full: the node fell behind", n)
        for run, item in batch:
            run(item)
        ran = len(batch)
        return ran + self._timers.fire_due()

    def spin(self, until: Callable[[], bool] | None = None, timeout_s: float | None = None) -> None:
        """Spin until ``until()`` is true or ``timeout_s`` passes (forever if both are None)."""
        spin_until(self.spin_once, until, timeout_s)

    def close(self) -> None:
        """Undeclare everything (tokens vanish from the graph) and close the session."""
        for entity in reversed(self._entities):
            try:
                entity.undeclare()
            except zenoh.ZError:
                pass
        self._entities.clear()
        self._queues.clear()
        if not self.session.is_closed():
            self.session.close()


def run_router(
    listen: list[str] | None = None, connect: list[str] | None = None, config_file: str | None = None
) -> zenoh.Session:
    """Open a Zenoh router (rmw_zenohd's defaults: listen on tcp/[::]:7447, gossip, no multicast)."""
    return open_session(session_config("router", connect, listen, config_file), "router")
