"""gs-mapping router: a Zenoh router (like rmw_zenoh's rmw_zenohd), for nodes run with
`--transport zenoh` and for the fleet: one per host, and one per server room linking them."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        action="append",
        metavar="ENDPOINT",
        help="endpoint to listen on (repeatable; default tcp/[::]:7447, rmw_zenohd's)",
    )
    p.add_argument(
        "--connect",
        action="append",
        metavar="ENDPOINT",
        help="another router to link to, e.g. tcp/server.example:7447 (repeatable)",
    )
    p.add_argument(
        "--zenoh-config",
        "--config",  # (the router's first name; --zenoh-config as for nodes and play, README)
        dest="config",
        help="zenoh router config file (default: $ZENOH_ROUTER_CONFIG_URI or built-in)",
    )
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def run(args: argparse.Namespace) -> int:
    import time

    from ..runtime.zenoh_runtime import asks_any_port, listen_endpoints, run_router, session_config
    from . import on_unwinding_signals
    from .run_node import check_duration

    check_duration(args.duration)
    router = run_router(args.listen, args.connect, args.config)
    stop = []
    on_unwinding_signals(lambda *_: stop.append(1))  # (a clean stop from the loop, as Ctrl-C's)
    end = None if args.duration is None else time.monotonic() + args.duration
    try:
        # where it listens as the config used says (a file's endpoints, not rmw_zenohd's default)
        endpoints = listen_endpoints(router, session_config("router", args.connect, args.listen, args.config))
        unknown = any(map(asks_any_port, endpoints))  # (Zenoh tells no bound port without it)
        why = (
            " (port 0: the system's choice; Zenoh tells it where its adminspace is enabled)"
            if unknown
            else ""
        )
        print(f"zenoh router {router.zid()}: ready, listening on {', '.join(endpoints)}{why}", flush=True)
        while not stop and (end is None or time.monotonic() < end):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        router.close()
    return 0
