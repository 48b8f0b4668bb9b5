"""gs-mapping play: publish a bag's messages on Cyclone DDS or Zenoh in stamp order (like
`ros2 bag play`, without ROS): the way to feed `gs-mapping run` nodes from a recording."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", help="rosbag2 to play")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    p.add_argument(
        "--topics", help="comma-separated topics; relative names resolve as in ROS (a -> /a) (default: all)"
    )
    p.add_argument("--transport", choices=("dds", "zenoh"), default="dds", help="dds (default) or zenoh")
    p.add_argument("--domain-id", type=int, default=None, help="ROS domain (default: $ROS_DOMAIN_ID or 0)")
    p.add_argument("--network", action="store_true", help="dds: discover peers beyond loopback")
    p.add_argument(
        "--ros-distro",
        choices=("humble", "jazzy"),
        default="jazzy",
        help="dds: which ROS 2 graph to join (default jazzy)",
    )
    p.add_argument("--connect", action="append", metavar="ENDPOINT", help="zenoh: router to connect to")
    p.add_argument("--listen", action="append", metavar="ENDPOINT", help="zenoh: endpoint to listen on")
    p.add_argument("--zenoh-config", help="zenoh: session config file")
    p.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=2.0,
        help="seconds to wait for subscribers before starting (default 2)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="an undecodable message in the bag is an error (default: skipped)",
    )


def run(args: argparse.Namespace) -> int:
    import time

    from ..bag import BagReader
    from ..errors import ConfigError, MessageError
    from ..nodes.context import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, TF_QOS, TF_STATIC_QOS
    from ..topics import resolve_topic_option
    from .run_node import make_context

    if not 0.001 <= args.rate <= 1000:  # (NaN is not; a slower rate would wait for ever)
        raise ConfigError(f"--rate: must be in [0.001, 1000], got {args.rate}")
    if not 0 <= args.wait_for_subscribers <= 3600:  # (NaN is not)
        raise ConfigError(f"--wait-for-subscribers: must be 0..3600 s, got {args.wait_for_subscribers}")
    ctx = make_context(args, "bag_player")
    try:  # (a Zenoh session left open keeps the process alive after an error line)
        with BagReader(args.bag, strict=args.strict) as bag:
            topics = (
                resolve_topic_option("--topics", args.topics.split(","))
                if args.topics is not None
                else [t.name for t in bag.topics]
            )
            pubs = {}
            for name in topics:
                info = bag.topic(name)
                # tf2's own QoS for the TF topics (a bag holds one /tf_static per static broadcaster:
                # at depth 1 a late joiner kept only the last); the rest as recorded, as ros2 bag play
                # does: latched re-latched, best effort where a recorded publisher offered it, else
                # reliable (which best-effort readers take too; a best-effort offer reaches no
                # reliable reader: RViz's defaults, map_receiver_node's deltas)
                qos = (
                    TF_STATIC_QOS
                    if name == "/tf_static"
                    else TF_QOS
                    if name == "/tf"
                    else LATCHED_QOS
                    if info.latched
                    else SENSOR_QOS
                    if info.best_effort
                    else RELIABLE_QOS
                )
                try:
                    pubs[name] = ctx.create_publisher(name, info.type, qos)
                except MessageError as exc:
                    if args.topics is not None:  # asked for by name: an error
                        raise
                    # a driver's own type (realsense2_camera_msgs, …) the transport cannot publish:
                    # as ros2 bag play, that topic is left out and the rest is played
                    log.warning(f"ignoring topic {name} ({info.type}): {exc}")
            if not pubs:
                raise ConfigError(f"{args.bag}: no topic of a type that can be published")
            topics = list(pubs)
            end = time.monotonic() + args.wait_for_subscribers
            while time.monotonic() < end and not all(p.subscription_count() for p in pubs.values()):
                ctx.spin_once(0.05)
            start_wall, start_bag, sent = time.monotonic(), None, 0
            for topic, stamp, msg in bag.messages(topics):
                start_bag = stamp if start_bag is None else start_bag
                delay = (stamp - start_bag) / 1e9 / args.rate - (time.monotonic() - start_wall)
                if delay > 0:
                    time.sleep(delay)
                pubs[topic].publish(msg)
                sent += 1
        skipped = "".join(f", skipped {n} undecodable on {kind}" for kind, n in bag.bad_messages.items())
        print(f"played {sent} messages from {args.bag}{skipped}", flush=True)
        time.sleep(0.5)  # let reliable writers flush before the participant goes away
    finally:
        ctx.close()
    return 0
