"""hd_map_node under replay on a small driving-world bag: lanes as markers, JSON and lane deltas."""

from __future__ import annotations

import numpy as np
import pytest

from gs_mapping.bag import BagReader
from gs_mapping.nodes.hd_map_node import CLASS_NAMES, HDMapNode
from gs_mapping.runtime.replay import ReplayBus, replay_bag
from gs_mapping.topics import info_topic

S = 1_000_000_000


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


def _read(out):
    from gs_mapping.messages import string_message_to_json, uint8_multiarray_to_bytes

    with BagReader(out) as bag:
        markers = [m for _, _, m in bag.messages(["/hd_map_node/lanes"])]
        docs = [string_message_to_json(m) for _, _, m in bag.messages(["/hd_map_node/lanes_json"])]
        deltas = [uint8_multiarray_to_bytes(m) for _, _, m in bag.messages(["/hd_map_node/lanes_delta"])]
    return markers, docs, deltas


def test_per_frame_lanes_in_all_three_forms(world_bag, tmp_path):
    from gs_map_share.lanes import decode_lanes
    from gs_mapping.messages import marker_array_to_polylines
    from gsmap_hd.eval_io import parse_frames

    summary, (node,) = replay_bag(world_bag, tmp_path / "out", [HDMapNode], [_config(fuse=False)])
    assert summary.published["/hd_map_node/lanes"] == 6
    markers, docs, deltas = _read(tmp_path / "out")
    lines = marker_array_to_polylines(markers[-1])
    assert lines and {ns for ns, _, _ in lines} <= set(CLASS_NAMES)
    assert markers[-1].markers[0].action == 3  # DELETEALL first: RViz drops the previous frame's lanes
    frames = parse_frames([{"vectors": d["vectors"]} for d in docs], "lanes_json", need_score=True)
    # clipped pieces of one prediction are separate elements in both forms
    assert sum(len(f) for f in frames) == sum(len(m.markers) - 1 for m in markers)
    assert all(d["frame_id"] == "base_link" for d in docs)
    # the lane containers apply in sequence: a snapshot, then deltas against it
    state = None
    for i, data in enumerate(deltas):
        header, state = decode_lanes(data, state)
        assert header.is_snapshot == (i == 0)
        assert len(state.lanes) == len(docs[i]["vectors"])
    assert sum(node.diag.rejected.values()) == 0


def test_front_predictions_are_clipped_to_what_the_camera_sees(world_bag, tmp_path):
    """The shipped front model declares the frustum region: every published point lies in the front
    camera's ground footprint (nothing behind the car), and the region travels with the JSON."""
    from shapely.geometry import Point, Polygon

    replay_bag(world_bag, tmp_path / "out", [HDMapNode], [_config(fuse=False)])
    _, docs, _ = _read(tmp_path / "out")
    assert all("region" in d for d in docs)
    n = 0
    for d in docs:
        region = Polygon(d["region"][0]).buffer(1e-3)  # coordinates are rounded to 0.1 mm
        assert region.bounds[0] > 3.0  # the footprint starts metres ahead of base_link
        for v in d["vectors"]:
            assert all(region.contains(Point(p)) for p in v["pts"]), v["pts"]
            n += len(v["pts"])
    assert n > 0


def test_lane_map_is_published_in_map_and_its_deltas_rebuild_it(world_bag, tmp_path):
    from gs_map_share.lanes import decode_lanes
    from gs_mapping.messages import marker_array_to_polylines

    summary, (node,) = replay_bag(
        world_bag, tmp_path / "out", [HDMapNode], [_config(fuse=True, score_threshold=0.3)]
    )
    markers, docs, deltas = _read(tmp_path / "out")
    assert len(markers) == len(deltas) == 6
    assert all(m.markers[0].header.frame_id == "map" for m in markers)
    state = None
    for data, msg in zip(deltas, markers, strict=True):
        header, state = decode_lanes(data, state)
        shown = {int(i): pts[:, :2] for _, i, pts in marker_array_to_polylines(msg)}
        # the receiver's map is the published lane map: same ids, same points (1 cm lattice)
        assert set(shown) == set(state.lanes)
        for i, (_, _, q) in state.lanes.items():
            np.testing.assert_allclose(q * 0.01, shown[i], atol=0.006)
    tracks = node.lane_map.published()
    assert tracks and all(t.hits >= 2 for t in tracks)  # one-off elements are not in the map
    assert {t.id for t in tracks} == set(state.lanes)


def test_node_logs_what_its_model_was_trained_on(world_bag, caplog):
    import logging

    bus = ReplayBus()
    with caplog.at_level(logging.INFO):
        HDMapNode(bus.context("hd_map_node"), _config())
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "procedural driving world" in text and "outside this domain" in text


def test_onnx_backend_publishes_what_torch_does(world_bag, tmp_path):
    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.onnx_export import export_onnx
    from gsmap_hd.predict_bag import SHIPPED

    model, cfg, _ = load_model(SHIPPED)
    onnx_path = export_onnx(model, cfg, tmp_path / "m.onnx")
    replay_bag(world_bag, tmp_path / "t", [HDMapNode], [_config(fuse=False, score_threshold=0.2)])
    replay_bag(
        world_bag,
        tmp_path / "o",
        [HDMapNode],
        [_config(fuse=False, score_threshold=0.2, backend="onnx", onnx_model=str(onnx_path))],
    )
    _, docs_t, _ = _read(tmp_path / "t")
    _, docs_o, _ = _read(tmp_path / "o")
    assert len(docs_t) == len(docs_o) == 6
    for a, b in zip(docs_t, docs_o, strict=True):
        assert [v["type"] for v in a["vectors"]] == [v["type"] for v in b["vectors"]]
        for va, vb in zip(a["vectors"], b["vectors"], strict=True):
            assert abs(va["confidence_level"] - vb["confidence_level"]) < 1e-4
            np.testing.assert_allclose(va["pts"], vb["pts"], atol=1e-3)  # metres (float32 on a 60 m patch)


def test_bad_backend_is_a_config_error():
    from gs_mapping.errors import ConfigError

    with pytest.raises(ConfigError, match="backend"):
        HDMapNode(ReplayBus().context("hd_map_node"), _config(backend="tensorrt"))
    with pytest.raises(ConfigError, match="onnx_model"):
        HDMapNode(ReplayBus().context("hd_map_node"), _config(backend="onnx"))


def test_bad_camera_input_is_rejected_not_fatal(world_bag):
    from gs_mapping.messages import numpy_to_image

    bus = ReplayBus()
    node = HDMapNode(bus.context("hd_map_node"), _config())
    cam = node.cameras[0]
    with BagReader(world_bag) as bag:
        msgs = list(bag.messages())
    f = bus.factory
    stamp = msgs[0][1]
    # an image before any CameraInfo (it waits for one: a driver publishes the image first), then
    # TF and the real CameraInfo, then a mis-sized image
    published: list = []
    bus.subscribe("/hd_map_node/lanes_json", published.append)
    bus.inject(
        cam, numpy_to_image(np.zeros((144, 256, 3), np.uint8), "rgb8", stamp, "front_optical_frame", f), stamp
    )
    for topic, t, msg in msgs:
        if topic in ("/tf", "/tf_static", info_topic(cam)):
            bus.inject(topic, msg, t)
    late = stamp + 10**9
    bus.inject(
        cam, numpy_to_image(np.zeros((100, 200, 3), np.uint8), "rgb8", late, "front_optical_frame", f), late
    )
    bus.inject(  # (a newer frame: the mis-sized one goes with the CameraInfo there is)
        cam,
        numpy_to_image(np.zeros((100, 200, 3), np.uint8), "rgb8", late + 10**9, "front_optical_frame", f),
        late + 10**9,
    )
    assert len(published) == 1  # the first image, once its CameraInfo came
    assert node.diag.rejected.get("frames", 0) == 1 and "its CameraInfo says" in node.diag.last_error
    # NaN calibration
    info = next(m for t, _, m in msgs if t == info_topic(cam))
    info.k = np.full(9, np.nan)
    bus.inject(info_topic(cam), info, late + 2 * 10**9)
    assert node.diag.rejected.get(info_topic(cam), 0) == 1
    assert (
        "CameraInfo" in node.diag.last_error
        or "K" in node.diag.last_error
        or "finite" in node.diag.last_error
    )


def test_demo_scores_frames_in_their_region_and_the_rebuilt_lane_map(world_bag, tmp_path):
    from shapely.geometry import Point, Polygon

    from gs_mapping.demo.measure import hd_map_metrics
    from gs_mapping.demo.report import lane_map_panel

    _, (node,) = replay_bag(world_bag, tmp_path / "out", [HDMapNode], [_config(score_threshold=0.3)])
    hd, pairs = hd_map_metrics(world_bag, tmp_path / "out")
    assert hd["frames"] == 6 and hd["region"].startswith("camera region")
    for pred, gt in pairs:  # the GT scored is what the camera covers, as the predictions are
        region = Polygon(pred["region"][0]).buffer(1e-3)
        assert all(region.contains(Point(p)) for v in gt["vectors"] for p in v["pts"])
    lm = hd["lane_map"]
    assert lm["frames"] == 6 and lm["lanes"] == len(node.lane_map.published())
    assert 0.0 <= lm["lane_map_mAP"] <= 1.0 and 0.0 <= lm["per_frame_mAP"] <= 1.0
    assert lm["geometry"]["gt"] and len(lm["geometry"]["path"]) == 6
    if lm["lanes"]:
        img = lane_map_panel(lm["geometry"])
        assert img.size[0] > 50 and img.size[1] > 50


def test_the_shipped_model_follows_the_rig():
    from gsmap_hd.checkpoint import load_model
    from gsmap_hd.model_config import model_config_diff
    from gsmap_hd.predict_bag import SHIPPED, SHIPPED_SURROUND

    front, fcfg, _ = load_model(SHIPPED)
    surround, scfg, _ = load_model(SHIPPED_SURROUND)
    assert (fcfg.rig, scfg.rig) == ("front", "surround")
    assert not model_config_diff(fcfg.model, scfg.model)  # one architecture, two sets of weights
    assert any(
        not np.array_equal(a.detach(), b.detach())
        for a, b in zip(front.parameters(), surround.parameters(), strict=True)
    )
    six = [
        f"/cameras/{c}/image_raw"
        for c in ("front", "front_left", "front_right", "back", "back_left", "back_right")
    ]
    for topics, path, region in ((six[:1], SHIPPED, "frustum"), (six, SHIPPED_SURROUND, "patch")):
        bus = ReplayBus()
        node = HDMapNode(bus.context("hd_map_node"), _config(camera_topics=topics))
        assert node._model_path == str(path)
        assert node.predictor.region_name == region  # the ground each model is judged on


def test_an_odometry_only_robot_is_told_to_name_its_odometry_frame(world_bag, tmp_path, caplog):
    """A robot whose TF has no map frame (odom → base_link): fused lanes cannot be placed. That was
    counted in /diagnostics only; it is said once on the console with the fix (hd_map_node.map_frame),
    and with map_frame set to odom the lanes are fused and sent."""
    import copy

    from gs_mapping.bag import BagWriter

    odom = tmp_path / "odom"
    with BagReader(world_bag) as r, BagWriter(odom) as w:
        for t in r.topics:
            w.add_topic(t.name, t.type, latched=t.latched)
        for topic, stamp, msg in r.messages():
            if topic in ("/tf", "/tf_static"):
                msg = copy.deepcopy(msg)
                for tr in msg.transforms:
                    tr.header.frame_id = "odom" if tr.header.frame_id == "map" else tr.header.frame_id
            w.write(topic, stamp, msg)
    with caplog.at_level("WARNING"):
        _, (node,) = replay_bag(odom, tmp_path / "a", [HDMapNode], [_config(fuse=True)])
    said = [r.getMessage() for r in caplog.records if "no pose of base_link in map" in r.getMessage()]
    assert len(said) == 1 and "hd_map_node.map_frame" in said[0]
    assert node.diag.summary()["dropped"]["lane_map_no_map_pose"] == 6
    with BagReader(tmp_path / "a") as bag:
        assert not bag.has_topic("/hd_map_node/lanes_delta")
    replay_bag(odom, tmp_path / "b", [HDMapNode], [_config(fuse=True, map_frame="odom")])
    _, _, deltas = _read(tmp_path / "b")
    assert len(deltas) == 6


def test_a_frame_waiting_for_a_refused_camera_info_says_why(world_bag):
    """A camera whose CameraInfo is refused (here K of zeros) leaves its frames waiting; the frame's
    reason names the refusal, not only 'no CameraInfo yet' (which reads as a missing topic). A good
    CameraInfo afterwards clears it and the frame is predicted."""
    import copy

    bus = ReplayBus()
    node = HDMapNode(bus.context("hd_map_node"), _config())
    cam = node.cameras[0]
    with BagReader(world_bag) as bag:
        msgs = list(bag.messages())
    for topic, t, msg in msgs:
        if topic in ("/tf", "/tf_static"):
            bus.inject(topic, msg, t)
    (t_info, info), (t_img, img) = (
        next((t, m) for tp, t, m in msgs if tp == name) for name in (info_topic(cam), cam)
    )
    bad = copy.copy(info)
    bad.k = np.zeros(9)
    bus.inject(info_topic(cam), bad, t_info)
    bus.inject(cam, img, t_img)
    assert node.diag.last_error.startswith(
        f"frames: no CameraInfo yet on {info_topic(cam)} (the last one was refused: "
    )
    published: list = []
    bus.subscribe("/hd_map_node/lanes_json", published.append)
    bus.inject(info_topic(cam), info, t_info)
    t_next, img_next = [(t, m) for tp, t, m in msgs if tp == cam][1]
    bus.inject(cam, img_next, t_next)
    assert len(published) == 1


def test_lanes_before_a_late_first_fix_wait_in_order_and_the_oldest_goes_past_the_queue(
    world_bag, tmp_path, monkeypatch
):
    """The localisation starts 0.25 s after the first frame (frames 0-2 before its first fix, each
    within tf_wait_s of it): the lanes of the frames before it wait in order, and once more are
    waiting than the queue holds (2 here) the oldest goes with the TF there is (none: counted).
    Frames 1-5 are fused as the same drive with ``map`` from its start fuses them, in order."""
    pytest.importorskip("scipy")
    import test_outside_late_localisation as L

    from gs_mapping.nodes import hd_map_node
    from gsmap_hd.lane_map import LaneMap

    L._late_world_bag(world_bag, tmp_path / "late", 250_000_000)
    fused: list[list] = []
    update = LaneMap.update

    def spy(self, observations, region=None):
        fused[-1].append([np.array(o.points) for o in observations])
        return update(self, observations, region)

    monkeypatch.setattr(LaneMap, "update", spy)
    monkeypatch.setattr(hd_map_node, "LANES_WAITING", 2)
    nodes = []
    for bag in (world_bag, tmp_path / "late"):
        fused.append([])
        nodes += replay_bag(bag, tmp_path / f"out{len(fused)}", [HDMapNode], [_config()])[1]
    ref, late = fused
    assert len(ref) == 6 and len(late) == 5
    assert nodes[1].diag.dropped.get("lane_map_no_map_pose") == 1, dict(nodes[1].diag.dropped)
    for want, got in zip(ref[1:], late, strict=True):
        assert len(got) == len(want)
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(b, a, atol=1e-4)


def test_lanes_waiting_when_time_goes_back_go_with_the_tf_there_is(world_bag):
    """The drive played 60 s into the recording without its last /tf (the last frame's lanes wait
    for the sample after their stamp), then the node's clock goes back and the drive comes again
    with its own stamps (a simulator reset, ``ros2 bag play --loop --clock``): at the new run's
    first frame the old run's waiting lanes go, with the TF there is (none: counted), rather than
    wait in a queue the new run's TF never reaches."""
    from test_hostile_nodes import _shifted

    bus = ReplayBus()
    hd = HDMapNode(bus.context("hd_map_node"), _config())
    with BagReader(world_bag) as r:
        msgs = [m for m in r.messages() if m[0] in bus.subscribers]  # (the node's inputs)
    last_tf = max(i for i, m in enumerate(msgs) if m[0] == "/tf")
    for i, (topic, logged, msg) in enumerate(msgs):
        if i != last_tf:
            bus.inject(topic, msg if topic == "/tf_static" else _shifted(msg, 60), logged + 60 * S)
    assert "lane_map_no_map_pose" not in hd.diag.dropped, dict(hd.diag.dropped)
    bus.now_ns = msgs[0][1]
    first = next(i for i, m in enumerate(msgs) if m[0] == "/cameras/front/image_raw")
    for topic, logged, msg in msgs[: first + 1]:
        if topic != "/tf_static":
            bus.inject(topic, msg, logged)
    assert hd.diag.dropped.get("lane_map_no_map_pose") == 1, dict(hd.diag.dropped)
