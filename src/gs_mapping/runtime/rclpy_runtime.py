"""rclpy runtime (ROS 2 Humble / Jazzy): the same node objects as replay and DDS, on a real ROS 2 node.

Kept thin on purpose: QoS mapping, parameter declaration from the config dataclasses (with their
descriptions and ranges), message classes by type name, and spinning. rclpy cannot be installed on
our development machine or in CI, so this module is NOT exercised by the test suite; it is written
against the documented rclpy API and checked on a ROS 2 machine (see README, "What was tested where").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..config_file import describe, from_dict, unflatten
from ..cpu_threads import prefer_single_thread_torch
from ..nodes.context import QoS


def _msg_class(typename: str) -> type:
    pkg, kind, name = typename.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def _qos_profile(qos: QoS):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=ReliabilityPolicy.RELIABLE if qos.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.transient_local else DurabilityPolicy.VOLATILE,
    )


class RclpyContext:
    """:class:`~gs_mapping.nodes.context.NodeContext` on an ``rclpy.node.Node``."""

    def __init__(self, node: Any):
        from ..messages import RclpyFactory

        self.node = node
        self.node_name = node.get_name()
        self.namespace = node.get_namespace()
        self.factory = RclpyFactory()
        self.logger = node.get_logger()  # rclpy's logger: debug/info/warning/error like logging's
        self._keep: list[Any] = []

    def create_publisher(self, topic: str, typename: str, qos: QoS) -> Any:
        pub = self.node.create_publisher(_msg_class(typename), topic, _qos_profile(qos))
        pub.subscription_count = pub.get_subscription_count  # our Publisher protocol's name
        return pub

    def create_subscription(
        self, topic: str, typename: str, qos: QoS, callback: Callable[[Any], None]
    ) -> None:
        self._keep.append(
            self.node.create_subscription(_msg_class(typename), topic, callback, _qos_profile(qos))
        )

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> None:
        self._keep.append(self.node.create_timer(period_s, callback))

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds


def declare_section(node: Any, section: str, cls: type) -> Any:
    """Declare every field of config dataclass ``cls`` as parameter ``<section>.<field>`` (with
    description and range) and build the config from the values the node was given (the params
    file's ``/**: ros__parameters: <section>:`` entries arrive as overrides of these)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    values = {}
    for name, info in describe(cls).items():
        desc = ParameterDescriptor(description=info["description"] or name)
        lo_hi = info["range"]
        default = info["default"]
        if lo_hi is not None and not isinstance(default, bool):
            if isinstance(default, int):
                desc.integer_range = [IntegerRange(from_value=int(lo_hi[0]), to_value=int(lo_hi[1]), step=0)]
            elif isinstance(default, float):
                desc.floating_point_range = [
                    FloatingPointRange(from_value=float(lo_hi[0]), to_value=float(lo_hi[1]), step=0.0)
                ]
        if isinstance(default, tuple):
            default = list(default)
        param = node.declare_parameter(f"{section}.{name}", default, desc)
        values[name] = param.value
    return from_dict(cls, unflatten(values), where=f"node {node.get_name()} parameters {section}")


def run_node(node_cls: type, args: list[str] | None = None) -> int:
    """Entry point body for ``ros2 run gs_mapping <node>``: init rclpy, declare the node class's
    parameter sections, build the node object, spin until shutdown."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node

    rclpy.init(args=args)
    node = Node(node_cls.name)
    obj = None
    try:
        config = {section: declare_section(node, section, cls) for section, cls in node_cls.sections.items()}
        obj = node_cls(RclpyContext(node), config)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if obj is not None and hasattr(obj, "close"):
            obj.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main_hd_map_node() -> int:
    prefer_single_thread_torch()
    from ..nodes.hd_map_node import HDMapNode

    return run_node(HDMapNode)


def main_mapper_node() -> int:
    prefer_single_thread_torch()
    from ..nodes.mapper_node import MapperNode

    return run_node(MapperNode)


def main_map_receiver_node() -> int:
    prefer_single_thread_torch()
    from ..nodes.map_receiver_node import MapReceiverNode

    return run_node(MapReceiverNode)


def main_map_server_node() -> int:
    from ..nodes.map_server_node import MapServerNode

    return run_node(MapServerNode)
