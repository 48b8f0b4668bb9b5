"""gs-mapping run: one node on Cyclone DDS (ROS 2 wire-compatible) or on Zenoh (rmw_zenoh's wire
format), without rclpy."""

from __future__ import annotations

import argparse
import errno
import json
import sys
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..nodes.registry import NODES

    p.add_argument("node", choices=sorted(NODES), help="which node")
    p.add_argument("--config", help="parameter file (config/full.yaml layout)")
    p.add_argument("--name", help="node name (default: the node's own)")
    p.add_argument("--namespace", default="", help="ROS namespace")
    p.add_argument(
        "--transport",
        choices=("dds", "zenoh"),
        default="dds",
        help="dds: Cyclone DDS like rmw_cyclonedds_cpp (default); zenoh: like rmw_zenoh_cpp",
    )
    p.add_argument("--domain-id", type=int, default=None, help="ROS domain (default: $ROS_DOMAIN_ID or 0)")
    p.add_argument(
        "--network",
        action="store_true",
        help="dds: discover peers on the network (default: loopback only, like ROS_LOCALHOST_ONLY=1; "
        "CYCLONEDDS_URI, when set, always wins)",
    )
    p.add_argument(
        "--ros-distro",
        choices=("humble", "jazzy"),
        default="jazzy",
        help="dds: which ROS 2 graph to join (ros_discovery_info layout, type hashes); default jazzy",
    )
    p.add_argument(
        "--connect",
        action="append",
        metavar="ENDPOINT",
        help="zenoh: router/peer to connect to, e.g. tcp/10.0.0.5:7447 (repeatable; default "
        "tcp/localhost:7447 like rmw_zenoh)",
    )
    p.add_argument(
        "--listen",
        action="append",
        metavar="ENDPOINT",
        help="zenoh: endpoint to listen on (repeatable; default tcp/localhost:0)",
    )
    p.add_argument(
        "--zenoh-config", help="zenoh: session config file (default: $ZENOH_SESSION_CONFIG_URI or built-in)"
    )
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def make_context(args: argparse.Namespace, node_name: str):
    """The runtime context the arguments ask for (shared with `gs-mapping play`)."""
    if args.transport == "zenoh":
        from ..runtime.zenoh_runtime import ZenohContext

        return ZenohContext(
            node_name,
            getattr(args, "namespace", ""),
            args.domain_id,
            connect=args.connect,
            listen=args.listen,
            config_file=args.zenoh_config,
        )
    from ..runtime.dds import DdsContext

    return DdsContext(
        node_name,
        getattr(args, "namespace", ""),
        args.domain_id,
        network=args.network,
        ros_distro=args.ros_distro,
    )


def check_duration(duration: float | None) -> None:
    """``--duration`` of a long-running command: None (run until stopped) or seconds > 0."""
    from ..errors import ConfigError

    if duration is not None and not 0 < duration < 1e9:  # (NaN is not)
        raise ConfigError(f"--duration: must be a number of seconds > 0, got {duration}")


def _say(line: str, stop: list) -> None:
    """A line on stdout. A terminal that went away (EIO: the hang-up that comes with it stops the
    node) or any write after a stop by a signal ends the output, not the node's clean stop: what
    stays buffered goes to /dev/null (main's last flush would fail again)."""
    try:
        print(line, flush=True)
    except OSError as exc:
        if not stop and exc.errno != errno.EIO:
            raise
        from ..std_streams import to_devnull

        stop.append(1)
        to_devnull(sys.stdout)


def run(args: argparse.Namespace) -> int:
    from ..nodes.context import check_ros_names
    from ..nodes.registry import node_class
    from . import on_unwinding_signals

    cls = node_class(args.node)
    check_duration(args.duration)
    check_ros_names(args.name, args.namespace)
    config = cls.load_config(args.config, namespace=args.namespace or "", name=args.name)
    ctx = make_context(args, args.name or cls.name)
    try:
        node = cls(ctx, config)
    except BaseException:
        ctx.close()  # a Zenoh session's threads would keep the process alive after the error line
        raise
    stop = []
    on_unwinding_signals(lambda *_: stop.append(1))  # (a clean stop from the loop, as Ctrl-C's)
    end = None if args.duration is None else time.monotonic() + args.duration
    try:
        # inside the try: a "ready" that cannot be written (>&-, | head gone) still closes the
        # node and its Zenoh session, whose threads would keep the process alive
        ctx.logger.info(f"{ctx.node_name} running on {args.transport}, ROS domain {ctx.domain_id}")
        _say(f"{ctx.node_name}: ready", stop)
        while not stop and (end is None or time.monotonic() < end):
            ctx.spin_once(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            node.close()
        finally:
            ctx.close()
        # One machine-readable line at the end: what the node saw, rejected and holds. After a stop
        # by a signal (a hang-up leaves stdout on a gone terminal: EIO) the exit status says it
        # alone, and what stays buffered goes to /dev/null (main's last flush would fail again).
        summary = {"node": ctx.node_name, **node.diag.summary()}
        _say("summary: " + json.dumps(summary, default=str), stop)
    return 0
