"""World bag → replay through all nodes. Parameters are the nodes' own dataclasses, set here for a
driving scene at demo speed, and written to ``OUT/demo_config.yaml`` (usable with ``--config``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config_file import to_dict

log = logging.getLogger(__name__)


@dataclass
class DemoSettings:
    # The shipped HD model trained on worlds 0–15 (gsmap_hd.world_data, data seed 0): the demo drives
    # through a world it has never seen.
    seed: int = 2026
    frames: int = 40
    size: tuple[int, int] = (384, 216)
    rate_hz: float = 10.0
    speed_mps: float = 6.0


def node_configs(settings: DemoSettings) -> dict[str, dict]:
    """The demo's parameters per node (sections as in config/full.yaml)."""
    from ..mapping.mapper_config import MapperConfig, TopicsConfig
    from ..nodes.hd_map_node import HDMapNode
    from ..nodes.map_receiver_node import MapReceiverNode
    from ..nodes.mapper_node import MapperNode
    from ..world.record import camera_topics

    cam = camera_topics("front")
    hd = HDMapNode.load_config(None)
    hd["hd_map_node"].camera_topics = [cam["image"]]
    hd["hd_map_node"].max_rate_hz = settings.rate_hz
    hd["hd_map_node"].device = "cpu"
    mapper = MapperNode.load_config(None)
    mcfg: MapperConfig = mapper["mapper"]
    mcfg.topics = TopicsConfig(color=cam["image"], depth=cam["depth"], camera_info=cam["info"])
    mcfg.device = "cpu"
    # A street is deeper than a room: map the road and the near facades, not the far city.
    mcfg.max_depth_m = 40.0
    mcfg.min_valid_depth_fraction = 0.1
    mcfg.seeding.stride = 3
    mcfg.seeding.max_depth_m = 40.0
    # At 6 m/s and 10 Hz every frame moves 0.6 m: keyframes every ~1.2 m keep the window useful.
    mcfg.keyframe.min_translation_m = 1.0
    mcfg.keyframe.min_rotation_deg = 10.0
    mcfg.keyframe.min_overlap = 0.7
    mcfg.keyframe.max_gap = 3
    mcfg.optim.iterations = 10
    mcfg.optim.first_iterations = 20
    mcfg.max_gaussians = 60000
    mapper["mapper_node"].snapshot_period_s = 1.0
    receiver = MapReceiverNode.load_config(None)
    receiver["map_receiver_node"].publish_rate_hz = 2.0
    return {"hd_map_node": hd, "mapper_node": mapper, "map_receiver_node": receiver}


def write_config(configs: dict[str, dict], path: Path) -> None:
    params: dict = {}
    for sections in configs.values():
        for name, cfg in sections.items():
            params[name] = to_dict(cfg)
    path.write_text(
        "# The parameters `gs-mapping demo` used (same layout as config/full.yaml).\n"
        + yaml.safe_dump({"/**": {"ros__parameters": params}}, sort_keys=False)
    )


def make_world_bag(settings: DemoSettings, out: Path, progress: bool):
    from ..world import Drive
    from ..world.record import write_bag

    drive = Drive.make(
        settings.seed, settings.frames, "front", settings.size, settings.rate_hz, settings.speed_mps
    )
    write_bag(drive, out, overwrite=True, progress=progress)
    return drive


def replay(world_bag: Path, out_bag: Path, configs: dict[str, dict], progress: bool):
    from ..nodes.registry import node_class
    from ..runtime.replay import replay_bag

    names = list(configs)
    summary, nodes = replay_bag(
        world_bag,
        out_bag,
        [node_class(n) for n in names],
        [configs[n] for n in names],
        overwrite=True,
        progress=progress,
    )
    return summary, dict(zip(names, nodes, strict=False))
