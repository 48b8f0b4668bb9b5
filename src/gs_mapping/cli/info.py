"""``gs-mapping info BAG [--json]``: topics, types, counts, time span and the TF tree of a rosbag2."""

from __future__ import annotations

import argparse
import json

GLOBAL_TF = ("/tf", "/tf_static")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 directory, or a bare .mcap / .db3 file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def summarize(path) -> dict:
    """Everything ``info`` prints, as a JSON-ready dict (also used by tests and other commands)."""
    from ..bag import BagReader
    from ..errors import TFError
    from ..tf import TFBuffer
    from ..topics import tf_topics

    tf = TFBuffer(cache_time_s=None)
    tf_errors: list[str] = []
    with BagReader(path) as bag:
        topics = [
            {"name": t.name, "type": t.type, "count": t.count, "latched": t.latched} for t in bag.topics
        ]
        # the TF `map` and `hd-predict` read (a robot's namespaced /robot1/tf where /tf is empty;
        # several robots': said, and the global topics shown)
        read = dict(tf_topics(bag, warn=tf_errors.append))
        if read:
            for topic, _, msg in bag.messages(list(read)):
                try:
                    tf.add_message(msg, static=read[topic])
                except TFError as exc:  # report a bad transform, keep summarising the rest
                    if len(tf_errors) < 10:
                        tf_errors.append(f"{topic}: {exc}")
        start, end, count = bag.start_ns, bag.end_ns, bag.message_count
    edges = tf.edges()
    return {
        "path": str(path),
        "message_count": count,
        "start_ns": start,
        "end_ns": end,
        "duration_s": (end - start) / 1e9,
        "topics": topics,
        "tf_frames": {e.child: e.parent for e in edges},
        "tf_edges": [
            {
                "child": e.child,
                "parent": e.parent,
                "static": e.static,
                "count": e.count,
                "first_ns": e.first_ns,
                "last_ns": e.last_ns,
            }
            for e in edges
        ],
        "tf_errors": tf_errors,
        "tf_topics": sorted(read),
    }


def _tree_lines(info: dict) -> list[str]:
    edges = {e["child"]: e for e in info["tf_edges"]}
    children: dict[str, list[str]] = {}
    for child, parent in info["tf_frames"].items():
        children.setdefault(parent, []).append(child)
    roots = sorted(p for p in children if p not in edges)
    lines: list[str] = []

    def walk(frame: str, depth: int) -> None:
        for child in sorted(children.get(frame, [])):
            e = edges[child]
            kind = "static" if e["static"] else f"dynamic, {e['count']} samples"
            lines.append(f"  {'  ' * depth}└─ {child}  ({kind})")
            walk(child, depth + 1)

    for root in roots:
        lines.append(f"  {root}")
        walk(root, 0)
    return lines


def _utc(ns: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds")


def format_text(info: dict) -> str:
    out = [
        f"bag:      {info['path']}",
        f"messages: {info['message_count']}",
        f"start:    {info['start_ns']} ns ({_utc(info['start_ns'])})",
        f"end:      {info['end_ns']} ns ({_utc(info['end_ns'])})",
        f"duration: {info['duration_s']:.3f} s",
        "",
    ]
    rows = [("topic", "type", "count", "")] + [
        (t["name"], t["type"], str(t["count"]), "latched" if t["latched"] else "") for t in info["topics"]
    ]
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    for n, r in enumerate(rows):
        out.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    if info["tf_frames"]:
        out.append("TF tree:")
        out.extend(_tree_lines(info))
    else:
        out.append("TF tree: (no /tf or /tf_static transforms)")
    if any(t not in GLOBAL_TF for t in info.get("tf_topics", ())):
        out.append(f"TF read from: {', '.join(info['tf_topics'])}")
    for err in info["tf_errors"]:
        out.append(f"TF warning: {err}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    info = summarize(args.bag)
    # (`info BAG | head`: a reader that left ends the command quietly with 141, as every command's
    # output does, in main())
    print(json.dumps(info) if args.json else format_text(info), flush=True)
    return 0
