"""hd_map_node's lanes in the fixed frame, checked against the world's ground truth.

The world bag's map frame is put under a ``world`` frame turned by 60° (a /tf_static the test adds,
so that the roads do not run along x where a rotation and its transpose look alike). The node's lane
deltas are decoded and their vertices compared (a) per-frame mode (``fuse: false``): with the node's
own base_link JSON lanes carried into ``world`` by the true vehicle poses (the drive's, not TF's),
to the delta's 1 cm lattice; (b) per-frame and fused lane map (the default): with the world's
ground-truth map elements in ``world``."""

from __future__ import annotations

import numpy as np
import pytest

from gs_mapping.bag import BagReader
from gs_mapping.nodes.hd_map_node import HDMapNode
from gs_mapping.runtime.replay import ReplayBus

SEED, FRAMES = 3, 6
YAW = np.radians(60.0)


def T_world_map() -> np.ndarray:
    c, s = np.cos(YAW), np.sin(YAW)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = [12.0, -7.0, 0.0]
    return T


@pytest.fixture(scope="module")
def world_bag(tmp_path_factory):
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    drive = Drive.make(SEED, FRAMES, "front", (256, 144))
    path = tmp_path_factory.mktemp("lanes") / "world"
    write_bag(drive, path, progress=False)
    return drive, path


def run_node(world_bag, fuse: bool):
    from gs_map_share.lanes import decode_lanes
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import string_message_to_json, transforms_to_tf_message

    drive, path = world_bag
    cfg = HDMapNode.load_config(None)
    cfg["hd_map_node"].device = "cpu"
    cfg["hd_map_node"].score_threshold = 0.0
    cfg["hd_map_node"].map_frame = "world"
    cfg["hd_map_node"].fuse = fuse
    bus = ReplayBus()
    node = HDMapNode(bus.context("hd_map_node"), cfg)
    got: dict[str, list] = {"json": [], "delta": []}
    bus.subscribe("/hd_map_node/lanes_json", lambda m: got["json"].append(string_message_to_json(m)))
    bus.subscribe("/hd_map_node/lanes_delta", lambda m: got["delta"].append(bytes(m.data)))
    with BagReader(path) as bag:
        msgs = list(bag.messages())
    t0 = msgs[0][1]
    world = TransformStamped("world", "map", t0, Transform.from_matrix(T_world_map()))
    bus.inject("/tf_static", transforms_to_tf_message([world], bus.factory), t0)
    gt = None
    for topic, stamp, msg in msgs:
        if topic == "/ground_truth/map_json":
            gt = string_message_to_json(msg)
        bus.inject(topic, msg, stamp)
    states, state = [], None
    for data in got["delta"]:
        _, state = decode_lanes(data, state)
        states.append(state.to_lanes(cfg["hd_map_node"].lane_step_m))
    assert sum(node.diag.rejected.values()) == 0
    return drive, got["json"], states, gt


@pytest.fixture(scope="module")
def frame_lanes(world_bag):
    """Per-frame lanes (``fuse: false``): each delta carries exactly the frame's predictions."""
    return run_node(world_bag, fuse=False)


@pytest.fixture(scope="module")
def fused_lanes(world_bag):
    """The persistent lane map (``fuse: true``, the default), fused in ``world``."""
    return run_node(world_bag, fuse=True)


def test_lane_deltas_are_the_json_lanes_carried_by_the_true_poses(frame_lanes):
    drive, docs, states, _ = frame_lanes
    assert len(docs) == len(states) == FRAMES
    stamps = [drive.stamp_ns(i) for i in range(FRAMES)]
    checked = 0
    for doc, lanes in zip(docs, states, strict=True):
        T = T_world_map() @ drive.pose(stamps.index(doc["stamp_ns"]))
        want = [np.asarray(v["pts"], float) @ T[:2, :2].T + T[:2, 3] for v in doc["vectors"]]
        assert len(lanes) == len(want)
        for ln in lanes:  # each decoded lane is one of the frame's JSON lanes, to the lattice
            err = min(
                (np.abs(ln.points - w).max() for w in want if w.shape == ln.points.shape), default=np.inf
            )
            assert err <= 0.006, f"lane {ln.id}: {err:.3f} m from every JSON lane of its frame"
            checked += len(ln.points)
    assert checked > 50


def _distance_to_polylines(pts: np.ndarray, lines: list[np.ndarray]) -> np.ndarray:
    best = np.full(len(pts), np.inf)
    for line in lines:
        a, b = line[:-1], line[1:]
        ab = b - a
        t = np.clip(((pts[:, None] - a[None]) * ab[None]).sum(-1) / np.maximum((ab**2).sum(-1), 1e-12), 0, 1)
        d = np.linalg.norm(pts[:, None] - (a[None] + t[..., None] * ab[None]), axis=-1).min(axis=1)
        best = np.minimum(best, d)
    return best


@pytest.mark.parametrize("mode", ["frame_lanes", "fused_lanes"])
def test_lane_vertices_lie_on_the_worlds_ground_truth(mode, request):
    """The shipped model's lanes, in ``world``, lie near the world's true map elements; a lane put
    in the wrong place (rotation transposed, translation missed) lies metres off."""
    _, _, states, gt = request.getfixturevalue(mode)
    T = T_world_map()
    truth = [np.asarray(v["pts"], float) @ T[:2, :2].T + T[:2, 3] for v in gt["vectors"]]
    pts = np.concatenate([ln.points for lanes in states for ln in lanes])
    d = _distance_to_polylines(pts, truth)
    assert len(pts) > 50
    # 0.66 m for this seed with the shipped model (its own error); misplaced lanes lie metres off
    assert np.median(d) < 1.0, f"median distance to the true map {np.median(d):.2f} m"
