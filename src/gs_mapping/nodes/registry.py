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


# Parameters rclpy itself declares on every node (or reads from a params file: QoS overrides):
# a ``/**`` file may set them, and they are not ours to refuse.
ROS_OWN = ("use_sim_time", "qos_overrides", "start_type_description_service")


def read_parameter_file(path, fqn: str | None = None) -> dict | None:
    """The parameters of file ``path`` that apply to node ``fqn`` (``/ns/name``, rclpy's key
    rule; every key's when None), with a ConfigError naming a section that no part of the suite
    reads. None without a file."""
    if path is None:
        return None
    from ..config_file import read_parameters

    params = read_parameters(path, fqn)
    unknown = sorted(set(params) - set(SECTIONS) - set(ROS_OWN))
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r} (sections: {', '.join(SECTIONS)})")
    return params


def check_node_keys(path, command: str) -> None:
    """For ``map`` and ``replay``, which run the nodes by their own names outside any namespace: a
    node key of file ``path`` that holds one of the nodes' sections yet applies to none of them is
    refused where its node name is none of theirs (a misspelt ``/mapper_nod:``, which rcl leaves
    unread without a word), and said where only its namespace keeps it off (``/robot1/mapper_node``,
    a fleet file's). A key of another node's own parameters (a camera driver's) is not ours to judge."""
    if path is None:
        return
    import logging

    from ..config_file import node_key_matches, parameter_entries

    fqns = [node_fqn(n) for n in NODES]
    ours = set(SECTIONS) - {"hd_train"}  # (hd-train reads its recipe under any key)
    for key, params in parameter_entries(path):
        held = sorted(ours & set(params))
        if not held or any(node_key_matches(key, f, path) for f in fqns):
            continue
        name = key.rstrip("/").rsplit("/", 1)[-1]
        if name not in NODES and name not in ("*", "**"):
            raise ConfigError(
                f"{path}: node key {key!r} names no node of the suite ({', '.join(NODES)}): its "
                f"{held[0]!r} section would not be read"
            )
        logging.getLogger(f"gs_mapping.{command}").warning(
            f"{path}: node key {key!r} is not read: {command} runs the nodes outside any namespace "
            f"({', '.join(fqns)})"
        )


def node_fqn(name: str, namespace: str = "") -> str:
    """A node's fully qualified name, what a params file's keys are matched against: ``/ns/name``."""
    ns = "/".join(p for p in namespace.split("/") if p)
    return f"/{ns}/{name}" if ns else f"/{name}"
