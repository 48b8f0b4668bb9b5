"""gs-mapping run: one node on Cyclone DDS, ROS 2 wire-compatible, without rclpy."""

from __future__ import annotations

import argparse
import json
import signal
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..nodes.registry import NODES

    p.add_argument("node", choices=sorted(NODES), help="which node")
    p.add_argument("--config", help="parameter file (config/full.yaml layout)")
    p.add_argument("--name", help="node name (default: the node's own)")
    p.add_argument("--namespace", default="", help="ROS namespace")
    p.add_argument("--domain-id", type=int, default=None, help="DDS domain (default: $ROS_DOMAIN_ID or 0)")
    p.add_argument(
        "--network",
        action="store_true",
        help="discover peers on the network (default: loopback only, like ROS_LOCALHOST_ONLY=1; "
        "CYCLONEDDS_URI, when set, always wins)",
    )
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def run(args: argparse.Namespace) -> int:
    from ..nodes.registry import node_class
    from ..runtime.dds import DdsContext

    cls = node_class(args.node)
    config = cls.load_config(args.config)
    ctx = DdsContext(args.name or cls.name, args.namespace, args.domain_id, network=args.network)
    node = cls(ctx, config)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    ctx.logger.info(f"{ctx.node_name} running on DDS domain {ctx.domain_id}")
    print(f"{ctx.node_name}: ready", flush=True)
    end = None if args.duration is None else time.monotonic() + args.duration
    try:
        while not stop and (end is None or time.monotonic() < end):
            ctx.spin_once(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        node.close()
        ctx.close()
        # One machine-readable line at the end: what the node saw, rejected and holds.
        print(
            "summary: " + json.dumps({"node": ctx.node_name, **node.diag.summary()}, default=str), flush=True
        )
    return 0
