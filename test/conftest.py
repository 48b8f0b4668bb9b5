"""Shared fixtures. Real data lives in ../shared/data beside the checkout (as in CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GS_MAPPING_SHARED_DATA", REPO.parent / "shared" / "data"))
KITCHEN_BAG = SHARED_DATA / "7scenes_kitchen_rgbd"


@pytest.fixture(scope="session")
def kitchen_bag() -> Path:
    """The real 7-Scenes kitchen RGB-D rosbag2 (MCAP). Skipped where ../shared is absent."""
    if not (KITCHEN_BAG / "metadata.yaml").exists():
        pytest.skip(f"real data not found at {KITCHEN_BAG}")
    return KITCHEN_BAG


# Mapper settings for node tests: the real pipeline, with a few optimiser steps per keyframe.
FAST_NODES_YAML = """
/**:
  ros__parameters:
    mapper:
      device: cpu
      max_gaussians: 20000
      seeding: {stride: 4}
      optim: {iterations: 2, first_iterations: 4}
      keyframe: {max_gap: 4}
    mapper_node:
      snapshot_period_s: 0.5
      diagnostics_period_s: 0.5
    map_receiver_node:
      publish_rate_hz: 5.0
      diagnostics_period_s: 0.5
"""


@pytest.fixture(scope="session")
def fast_nodes_config(tmp_path_factory) -> Path:
    """A parameter file (config/full.yaml layout) with fast mapper settings for node tests."""
    path = tmp_path_factory.mktemp("config") / "fast_nodes.yaml"
    path.write_text(FAST_NODES_YAML)
    return path
