"""mapper_node.tf_wait_s = 0 is "no wait" for a CameraInfo too (mut41's mutant N3, ``tf_wait_s <= 0``
→ ``< 0`` in ``MapperNode._infos``, passed every test): once CameraInfos have matched image stamps
(a driver that publishes them with each frame), a pair newer than every CameraInfo waits up to
``tf_wait_s`` for its own; with 0 it takes the newest there is at once, not at the next timer tick."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # (the mapper node builds a mapper: not in the Humble run)


def _node(tf_wait_s: float):
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    node = MapperNode(bus.context("mapper_node"), cfg)
    node.node_cfg.tf_wait_s = tf_wait_s
    return bus, node


@pytest.mark.parametrize("tf_wait_s", [0.0, 0.5])
def test_a_pair_newer_than_every_camera_info_waits_tf_wait_s_and_0_is_no_wait(tf_wait_s):
    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info

    bus, node = _node(tf_wait_s)
    K = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    t0, t1 = 10**9, 10**9 + 100_000_000

    def info(frame, stamp):
        return intrinsics_to_camera_info(
            CameraIntrinsics(32, 24, K, frame_id=frame), bus.factory, stamp_ns=stamp
        )

    for stamp in (t0 - 100_000_000, t0):  # CameraInfos that came with their frames' images
        node.on_camera_info(info("color", stamp), stamp)
        node.on_depth_camera_info(info("depth", stamp), stamp)
    color, depth = (info("color", t0).header,), (info("depth", t0).header,)
    intr, depth_intr, missing = node._infos(color, depth, final=False)
    assert missing == "" and intr is not None and depth_intr is not None  # (matched: now paired)
    color, depth = (info("color", t1).header,), (info("depth", t1).header,)
    intr, _, missing = node._infos(color, depth, final=False)
    if tf_wait_s:
        assert intr is None and missing == node.cfg.topics.camera_info  # its own may still come
    else:
        assert missing == "" and intr is not None and intr.frame_id == "color"  # the newest, at once
