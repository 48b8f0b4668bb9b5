"""The mapper's topics for a bag, one rule for ``map`` and ``replay``: names given on the command line
win, then those the parameter file sets (a topic that differs from its default, today's or the one
before realsense-ros 4.55.1), and the rest are found in the bag (:func:`gs_mapping.topics.discover`)."""

from __future__ import annotations

import dataclasses
import logging

_FIELDS = ("color", "depth", "camera_info", "depth_camera_info")
# the defaults before realsense-ros 4.55.1 moved its topics under /camera/camera (camera_namespace +
# camera_name): a parameter file an older ``gs-mapping params`` wrote holds them, meaning no choice
_FORMER_DEFAULTS = {
    "color": "/camera/color/image_raw",
    "depth": "/camera/depth/image_rect_raw",
    "camera_info": "/camera/color/camera_info",
}


def fill_topics(bag_path, cfg, given: dict, log: str) -> tuple[str, str]:
    """Set ``cfg.topics`` (a :class:`MapperConfig`'s) for the bag at ``bag_path``; return the LiDAR cloud
    topic and its type in the bag (PointCloud2 or a Livox CustomMsg: ``mapper_node.cloud_type`` on a
    live graph), or ('', ''). ``given``: {field or "cloud": name or None}; relative names resolve as in ROS.
    :class:`ConfigError` in one line when a named topic is missing or of the wrong type, or when
    nothing can be found."""
    from ..bag import BagReader
    from ..errors import ConfigError
    from ..topics import discover, resolve_name

    t, named = cfg.topics, _named(cfg)
    names = {k: given.get(k) or named.get(k) for k in (*_FIELDS, "cloud")}
    names = {k: resolve_name(v) if v else None for k, v in names.items()}
    # the depth said registered (the option, or the file's depth_registered or its empty
    # depth_camera_info, "registered" as its description says), unless the option names its CameraInfo
    registered = bool(given.get("depth_registered")) or (
        not given.get("depth_camera_info") and (t.depth_registered or t.depth_camera_info == "")
    )
    if registered:
        if given.get("depth_camera_info"):
            raise ConfigError(
                "--depth-registered and --depth-info-topic: a depth registered to colour has no "
                "CameraInfo of its own; give one of them"
            )
        names["depth_camera_info"] = None
    with BagReader(bag_path) as bag:
        types = {ti.name: ti.type for ti in bag.topics}
        empty = frozenset(ti.name for ti in bag.topics if not ti.count)
        found = discover(
            types,
            where=str(bag_path),
            empty=empty,
            frame_of=first_frame_ids(bag),
            registered=registered,
            **names,
        )
    if any(names[k] is None for k in ("color", "depth", "camera_info")):
        logging.getLogger(log).info(f"topics: {found.describe()}")
    cfg.topics = dataclasses.replace(
        t,
        color=found.color,
        depth=found.depth or t.depth,
        camera_info=found.camera_info,
        depth_camera_info=found.depth_camera_info,
        depth_registered=registered,
    )
    return found.cloud, types.get(found.cloud, "")


def first_frame_ids(bag):
    """``frame_of`` for :func:`gs_mapping.topics.discover`: a topic's header frame id in its first
    message in the open ``bag`` ('' where it has none, or no message that reads), each read once."""
    from ..errors import GsMappingError

    seen: dict[str, str] = {}

    def frame_of(topic: str) -> str:
        if topic not in seen:
            seen[topic] = ""
            try:
                for _, _, msg in bag.messages([topic]):
                    seen[topic] = str(getattr(getattr(msg, "header", None), "frame_id", "") or "")
                    break
            except GsMappingError:  # (a topic the bag lacks, a record that does not read: unknown)
                pass
        return seen[topic]

    return frame_of


def _named(cfg) -> dict:
    """The topics a parameter file sets: those that differ from their defaults (today's or former)."""
    from ..mapping.mapper_config import TopicsConfig

    defaults = TopicsConfig()
    return {
        k: getattr(cfg.topics, k)
        for k in _FIELDS
        if getattr(cfg.topics, k) not in (getattr(defaults, k), _FORMER_DEFAULTS.get(k))
    }


def names_any(cfg, cloud: str = "") -> bool:
    """Whether a parameter file named any of the mapper's topics (then a topic that cannot be found is
    an error, not a warning)."""
    return bool(cloud) or bool(_named(cfg))
