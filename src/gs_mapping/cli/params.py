"""gs-mapping params: print the default parameter file of the nodes (config/full.yaml's layout)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..nodes.registry import NODES

    p.add_argument(
        "nodes", nargs="*", help=f"nodes whose sections to print (default: all: {', '.join(NODES)})"
    )


def run(args: argparse.Namespace) -> int:
    from ..config_file import dump_section
    from ..errors import ConfigError
    from ..nodes.registry import NODES, node_class

    names = args.nodes or list(NODES)
    for n in names:
        if n not in NODES:
            raise ConfigError(f"unknown node {n!r} (nodes: {', '.join(NODES)})")
    sections: dict[str, object] = {}
    for n in names:
        for section, cls in node_class(n).sections.items():
            sections.setdefault(section, cls())
    print("/**:\n  ros__parameters:")
    print("\n".join(dump_section(name, cfg) for name, cfg in sections.items()))
    return 0
