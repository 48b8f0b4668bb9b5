"""gs-mapping replay: feed a bag through the nodes in stamp order, record what they publish."""

from __future__ import annotations

import argparse
import json

from . import add_no_progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..nodes.registry import NODES

    p.add_argument("bag", help="input rosbag2 (directory or .mcap/.db3)")
    p.add_argument("--out", required=True, help="output rosbag2 directory (MCAP)")
    p.add_argument("--config", help="parameter file (default: built-in defaults = config/full.yaml)")
    p.add_argument(
        "--nodes",
        default=",".join(NODES),
        help=f"comma-separated nodes to run (default: all: {','.join(NODES)})",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    p.add_argument(
        "--strict",
        action="store_true",
        help="an undecodable input message is an error (default: skipped), and so is a bag in which no "
        "input topic of the nodes is found (default: a warning, exit 0)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_no_progress(p)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..nodes.registry import check_node_keys, node_class
    from ..output_files import scratch_directory
    from ..runtime.replay import replay_bag
    from . import show_progress

    names = [n.strip() for n in args.nodes.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"--nodes: expected distinct node names, got {args.nodes!r}")
    classes = [node_class(n) for n in names]  # unknown names fail before any work
    check_node_keys(args.config, "replay")
    configs = [cls.load_config(args.config) for cls in classes]  # (each node: the keys naming it)
    if "mapper_node" in names:
        _discover_mapper_topics(args.bag, configs[names.index("mapper_node")])
    # removed when the run ends; one a killed run left, by the next replay
    with scratch_directory("gs_mapping_replay") as scratch:
        if "map_server_node" in names and not _names_store(args.config):
            # the fleet server's store (a file in the working directory by default) is the replay's
            # own scratch, not an output beside the bag's (left there, it would carry this replay's
            # global map into the next one); a store the parameter file names is where it says
            configs[names.index("map_server_node")]["map_server_node"].store_path = str(
                scratch / "fleet.sqlite3"
            )
        summary, nodes = replay_bag(
            args.bag,
            args.out,
            classes,
            configs,
            overwrite=args.overwrite,
            progress=show_progress(args.no_progress),
            strict=args.strict,
        )
    report = {
        "input": str(args.bag),
        "output": str(args.out),
        "nodes": names,
        "input_messages": summary.input_messages,
        "bag_seconds": round(summary.bag_seconds, 3),
        "wall_seconds": round(summary.wall_s, 3),
        "real_time_factor": round(summary.bag_seconds / summary.wall_s, 3) if summary.wall_s else None,
        "published": summary.published,
        "undecodable": summary.undecodable,
        "diagnostics": {n.ctx.node_name: n.diag.summary() for n in nodes},
    }
    report["matched_inputs"] = summary.matched_inputs
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print(
            f"replayed {report['input_messages']} messages ({report['bag_seconds']} s of bag) in "
            f"{report['wall_seconds']} s → {args.out}"
        )
        for kind, n in sorted(summary.undecodable.items()):
            print(f"  skipped {n} undecodable message(s) on {kind}")
        for topic, n in sorted(summary.published.items()):
            print(f"  {topic:45s} {n:6d} messages")
        for name, d in report["diagnostics"].items():
            rejected = sum(d["rejected"].values())
            print(
                f"  {name}: inputs {sum(d['inputs'].values())}, rejected {rejected}, dropped "
                f"{sum(d['dropped'].values())}" + (f" (last: {d['last_error']})" if d["last_error"] else "")
            )
            if d.get("waiting_for"):
                print(f"  {name}: waiting for {d['waiting_for']}")
    return 0


def _names_store(config_path) -> bool:
    """Whether the parameter file sets ``map_server_node.store_path`` (for the node as replay runs it)."""
    from ..nodes.registry import node_fqn, read_parameter_file

    params = read_parameter_file(config_path, node_fqn("map_server_node")) or {}
    return "store_path" in params.get("map_server_node", {})


def _discover_mapper_topics(bag_path, config: dict) -> None:
    """The mapper's topics as ``map`` finds them (:mod:`.topic_choice`): those the parameter file
    names, the rest found in the bag; ``mapper_node.cloud_type`` the cloud's type in the bag. A bag
    without a camera, when nothing was named, leaves the defaults with a warning (the mapper then
    waits, and says so); a named topic that is missing is an error, and so is a theora video stream, named or the only colour or depth recorded."""
    import logging

    from ..errors import ConfigError
    from ..topics import TheoraStreamError
    from .topic_choice import fill_topics, names_any

    node = config["mapper_node"]
    try:
        cloud, cloud_type = fill_topics(
            bag_path, config["mapper"], {"cloud": node.cloud_topic or None}, "gs_mapping.replay"
        )
    except TheoraStreamError:  # (a camera was recorded, in a transport no frame can be read from)
        raise
    except ConfigError as exc:
        if names_any(config["mapper"], node.cloud_topic):
            raise
        logging.getLogger("gs_mapping.replay").warning(f"mapper_node: no camera topics found: {exc}")
        return
    node.cloud_topic = cloud
    if cloud:  # the type a live graph's node must subscribe with (the replay reads the bag's own)
        node.cloud_type = cloud_type
