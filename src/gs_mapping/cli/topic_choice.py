"""The mapper's topics for a bag, one rule for ``map`` and ``replay``: names given on the command line
win, then those the parameter file sets (a topic that differs from its default), and the rest are
found in the bag (:func:`gs_mapping.topics.discover`)."""

from __future__ import annotations

import dataclasses
import logging

_FIELDS = ("color", "depth", "camera_info", "depth_camera_info")


def fill_topics(bag_path, cfg, given: dict, log: str) -> str:
    """Set ``cfg.topics`` (a :class:`MapperConfig`'s) for the bag at ``bag_path``; return the LiDAR cloud
    topic, or ''. ``given``: {field or "cloud": name or None}; relative names resolve as in ROS.
    :class:`ConfigError` in one line when a named topic is missing or of the wrong type, or when
    nothing can be found."""
    from ..bag import BagReader
    from ..topics import discover, resolve_name

    t, named = cfg.topics, _named(cfg)
    names = {k: given.get(k) or named.get(k) for k in (*_FIELDS, "cloud")}
    names = {k: resolve_name(v) if v else None for k, v in names.items()}
    with BagReader(bag_path) as bag:
        types = {ti.name: ti.type for ti in bag.topics}
        empty = frozenset(ti.name for ti in bag.topics if not ti.count)
    found = discover(types, where=str(bag_path), empty=empty, **names)
    if any(names[k] is None for k in ("color", "depth", "camera_info")):
        logging.getLogger(log).info(f"topics: {found.describe()}")
    cfg.topics = dataclasses.replace(
        t,
        color=found.color,
        depth=found.depth or t.depth,
        camera_info=found.camera_info,
        depth_camera_info=found.depth_camera_info,
    )
    return found.cloud


def _named(cfg) -> dict:
    """The topics a parameter file sets: those that differ from their defaults."""
    from ..mapping.mapper_config import TopicsConfig

    defaults = TopicsConfig()
    return {k: getattr(cfg.topics, k) for k in _FIELDS if getattr(cfg.topics, k) != getattr(defaults, k)}


def names_any(cfg, cloud: str = "") -> bool:
    """Whether a parameter file named any of the mapper's topics (then a topic that cannot be found is
    an error, not a warning)."""
    return bool(cloud) or bool(_named(cfg))
