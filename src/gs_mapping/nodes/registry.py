"""The suite's nodes by name (the names of ``ros2 run gs_mapping <node>`` and ``gs-mapping run``)."""

from __future__ import annotations

import importlib

from ..errors import ConfigError

NODES: dict[str, str] = {
    "hd_map_node": "gs_mapping.nodes.hd_map_node:HDMapNode",
    "mapper_node": "gs_mapping.nodes.mapper_node:MapperNode",
    "map_receiver_node": "gs_mapping.nodes.map_receiver_node:MapReceiverNode",
    "map_server_node": "gs_mapping.nodes.map_server_node:MapServerNode",
}


def node_class(name: str) -> type:
    if name not in NODES:
        raise ConfigError(f"unknown node {name!r} (nodes: {', '.join(NODES)})")
    module, cls = NODES[name].split(":")
    return getattr(importlib.import_module(module), cls)


# Every section a parameter file may hold (config/full.yaml's layout): the nodes' own (their
# ``sections``; a test keeps this list equal to them) and hd-train's recipe. A section named
# otherwise is a typo, refused rather than silently left unread.
SECTIONS = ("hd_map_node", "hd_train", "map_receiver_node", "map_server_node", "mapper", "mapper_node")


def read_parameter_file(path) -> dict | None:
    """The parameters of file ``path`` (None without one), with a ConfigError naming a section
    that no part of the suite reads."""
    if path is None:
        return None
    from ..config_file import read_parameters

    params = read_parameters(path)
    unknown = sorted(set(params) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r} (sections: {', '.join(SECTIONS)})")
    return params
