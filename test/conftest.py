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
