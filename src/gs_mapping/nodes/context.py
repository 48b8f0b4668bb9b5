"""What a node class may ask of the runtime that drives it.

Node classes (``gs_mapping.nodes.*``) are written against :class:`NodeContext` only, so the same
object runs under rclpy, rosbag replay and Cyclone DDS. Topic names follow ROS 2 rules: ``~/x`` is
private to the node, ``x`` is relative to the namespace, ``/x`` is absolute. Topics between our own
nodes are private or relative, so a whole pipeline launched with ``namespace:=robot1`` stays wired;
sensor inputs, ``/tf``, ``/tf_static`` and ``/diagnostics`` are absolute as their producers publish them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ConfigError
from ..topics import check_topic_name


@dataclass(frozen=True)
class QoS:
    """The ROS 2 QoS settings we use: reliability, durability, keep-last depth."""

    reliable: bool = True
    transient_local: bool = False
    depth: int = 10


SENSOR_QOS = QoS(reliable=False, transient_local=False, depth=5)  # rclpy qos_profile_sensor_data
RELIABLE_QOS = QoS(reliable=True, transient_local=False, depth=10)
LATCHED_QOS = QoS(reliable=True, transient_local=True, depth=1)  # a state: late joiners get the last
# tf2's own QoS: /tf keep-last 100; /tf_static transient-local keep-last 100, because each static
# broadcaster latches its own message and a late joiner with depth 1 would keep only one of them.
TF_QOS = QoS(reliable=True, transient_local=False, depth=100)
TF_STATIC_QOS = QoS(reliable=True, transient_local=True, depth=100)


class Publisher(Protocol):
    def publish(self, msg: Any) -> None: ...

    def subscription_count(self) -> int: ...


def subscriptions_joined(pub: Publisher) -> int:
    """How many subscriptions ever matched ``pub``, where its runtime can say (DDS's total_count, the
    Zenoh graph's tokens, the replay bus), else the current count. A latched topic's publisher
    compares it with what it last saw to serve a joiner a fresh state: one subscriber leaving as
    another joins leaves the current count as it was, and the joiner would keep the stale one."""
    joined = getattr(pub, "subscriptions_joined", None)
    return int(joined()) if joined is not None else pub.subscription_count()


class MessageFactory(Protocol):
    def make(self, typename: str, **fields: Any) -> Any: ...


class NodeContext(Protocol):
    """Optional beyond these (a node looks for them with ``getattr``): ``clock_stopped()``, whether
    the timer callback now running runs because ROS time stands still (rclpy's tail of a bag under
    ``use_sim_time``, replay's last round at the bag's end); ``publisher_count(topic)``;
    ``attach_diagnostics(diag)``."""

    node_name: str
    namespace: str
    factory: MessageFactory
    logger: logging.Logger

    def create_publisher(self, topic: str, typename: str, qos: QoS) -> Publisher: ...

    def create_subscription(
        self, topic: str, typename: str, qos: QoS, callback: Callable[[Any], None]
    ) -> None: ...

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> None: ...

    def now_ns(self) -> int: ...

    def resolve_topic_name(self, topic: str) -> str:
        """``topic`` fully qualified as this node's subscriptions resolve it (namespace, ``~``, and
        remapping where the runtime remaps: rclpy's ``-r``)."""
        ...


class ExpandsNames:
    """resolve_topic_name for the runtimes without remapping (replay, DDS, Zenoh): expansion only."""

    node_name: str
    namespace: str

    def resolve_topic_name(self, topic: str) -> str:
        return resolve_topic(topic, self.node_name, self.namespace)


MAX_DOMAIN_ID = 232  # RTPS ports (7400 + 250 · domain + …) stay below 65536 up to here


def ros_domain_id(domain_id: int | None) -> int:
    """The ROS domain: ``domain_id``, else ``$ROS_DOMAIN_ID``, else 0; ConfigError naming the source
    for anything but an integer 0..232 (what a DDS participant can take)."""
    import os

    source, value = "--domain-id", domain_id
    if value is None:
        source, text = "ROS_DOMAIN_ID", os.environ.get("ROS_DOMAIN_ID", "").strip() or "0"
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(
                f"ROS_DOMAIN_ID: expected an integer 0..{MAX_DOMAIN_ID}, got {text!r}"
            ) from None
    if not 0 <= value <= MAX_DOMAIN_ID:
        raise ConfigError(f"{source}: the ROS domain must be 0..{MAX_DOMAIN_ID}, got {value}")
    return value


_ROS_TOKEN = r"[A-Za-z_][A-Za-z0-9_]*"


def is_ros_namespace(ns: str) -> bool:
    """Whether rcl takes ``ns`` as a namespace: ``/`` or tokens (letters, digits, ``_``; not a digit
    first) after ``/``, the leading one optional."""
    import re

    return ns == "/" or re.fullmatch(rf"/?{_ROS_TOKEN}(/{_ROS_TOKEN})*", ns) is not None


def check_ros_names(node_name: str | None, namespace: str = "") -> None:
    """ConfigError for a node name or namespace ROS 2 would refuse (rcl's rules: a name is letters,
    digits and underscores, not starting with a digit; a namespace is such tokens after ``/``)."""
    import re

    if node_name is not None and not re.fullmatch(_ROS_TOKEN, node_name):
        raise ConfigError(
            f"--name: {node_name!r} is not a ROS node name (letters, digits, _; not a digit first)"
        )
    if node_name is not None and len(node_name) > 255:  # rmw's RMW_NODE_NAME_MAX_NAME_LENGTH
        raise ConfigError(f"--name: {len(node_name)} characters; a ROS node name has at most 255")
    ns = namespace  # (not stripped: rcl refuses " robot1", and the runtimes use it as given)
    if len(ns) > 253:  # rmw's RMW_NAMESPACE_MAX_LENGTH (its topic-name limit 255, less 2)
        raise ConfigError(f"--namespace: {len(ns)} characters; a ROS namespace has at most 253")
    if ns and not is_ros_namespace(ns):
        raise ConfigError(
            f"--namespace: {namespace!r} is not a ROS namespace (such as /robot1 or /fleet/car_2)"
        )


def resolve_topic(name: str, node_name: str, namespace: str = "") -> str:
    """Fully qualified ROS 2 topic name (``~/lanes`` → ``/ns/node/lanes``); ConfigError for a name
    rcl refuses (:func:`check_topic_name`)."""
    check_topic_name(name)
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    name = name.replace("{node}", node_name).replace("{namespace}", ns or "/").replace("{ns}", ns or "/")
    if "//" in name:  # (rcl expands "/foo/{ns}" in the root namespace to "/foo//", and refuses it)
        raise ConfigError(f"topic {name!r} (substituted) is not a ROS 2 topic name: it holds '//'")
    if name.startswith("~"):
        name = f"{ns}/{node_name}/{name[1:].lstrip('/')}"
    elif not name.startswith("/"):
        name = f"{ns}/{name}"
    name = "/" + "/".join(p for p in name.split("/") if p)
    return name
