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
