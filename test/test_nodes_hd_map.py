"""hd_map_node under replay on a small driving-world bag: lanes as markers, JSON and lane deltas."""

from __future__ import annotations

import numpy as np
import pytest

from gs_mapping.bag import BagReader
from gs_mapping.nodes.hd_map_node import CLASS_NAMES, HDMapNode, info_topic
from gs_mapping.runtime.replay import ReplayBus, replay_bag


@pytest.fixture(scope="module")
def world_bag(tmp_path_factory):
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("hd") / "world"
    write_bag(Drive.make(3, 6, "front", (256, 144)), out, progress=False)
    return out


def _config(**node):
    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].score_threshold = 0.0
    for k, v in node.items():
        setattr(cfg["hd_map_node"], k, v)
    return cfg


def test_lanes_are_published_in_all_three_forms(world_bag, tmp_path):
    from gs_map_share.lanes import decode_lanes
    from gs_mapping.messages import (
        marker_array_to_polylines,
        string_message_to_json,
        uint8_multiarray_to_bytes,
    )
    from gsmap_hd.eval_io import parse_frames

    summary, (node,) = replay_bag(world_bag, tmp_path / "out", [HDMapNode], [_config()])
    assert summary.published["/hd_map_node/lanes"] == 6
    with BagReader(tmp_path / "out") as bag:
        markers = [m for _, _, m in bag.messages(["/hd_map_node/lanes"])]
        docs = [string_message_to_json(m) for _, _, m in bag.messages(["/hd_map_node/lanes_json"])]
        deltas = [uint8_multiarray_to_bytes(m) for _, _, m in bag.messages(["/hd_map_node/lanes_delta"])]
    lines = marker_array_to_polylines(markers[-1])
    assert lines and {ns for ns, _, _ in lines} <= set(CLASS_NAMES)
    assert markers[-1].markers[0].action == 3  # DELETEALL first: RViz drops the previous frame's lanes
    frames = parse_frames([{"vectors": d["vectors"]} for d in docs], "lanes_json", need_score=True)
    assert sum(len(f) for f in frames) == sum(len(m.markers) - 1 for m in markers)
    assert all(d["frame_id"] == "base_link" for d in docs)
    # the lane containers apply in sequence: a snapshot, then deltas against it
    state = None
    for i, data in enumerate(deltas):
        header, state = decode_lanes(data, state)
        assert header.is_snapshot == (i == 0)
        assert len(state.lanes) == len(docs[i]["vectors"])
    assert sum(node.diag.rejected.values()) == 0


def test_bad_camera_input_is_rejected_not_fatal(world_bag):
    from gs_mapping.messages import numpy_to_image

    bus = ReplayBus()
    node = HDMapNode(bus.context("hd_map_node"), _config())
    cam = node.cameras[0]
    with BagReader(world_bag) as bag:
        msgs = list(bag.messages())
    f = bus.factory
    stamp = msgs[0][1]
    # an image before any CameraInfo, then TF and the real CameraInfo, then a mis-sized image
    bus.inject(
        cam, numpy_to_image(np.zeros((144, 256, 3), np.uint8), "rgb8", stamp, "front_optical_frame", f), stamp
    )
    for topic, t, msg in msgs:
        if topic in ("/tf", "/tf_static", info_topic(cam)):
            bus.inject(topic, msg, t)
    bus.inject(
        cam,
        numpy_to_image(np.zeros((100, 200, 3), np.uint8), "rgb8", stamp + 1, "front_optical_frame", f),
        stamp + 1,
    )
    # NaN calibration
    info = next(m for t, _, m in msgs if t == info_topic(cam))
    info.k = np.full(9, np.nan)
    bus.inject(info_topic(cam), info, stamp + 2)
    assert node.diag.rejected.get("frames", 0) >= 2
    assert node.diag.rejected.get(info_topic(cam), 0) == 1
    assert (
        "CameraInfo" in node.diag.last_error
        or "K" in node.diag.last_error
        or "finite" in node.diag.last_error
    )
