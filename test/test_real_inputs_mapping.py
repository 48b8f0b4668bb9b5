"""Real recordings mapped: the RealSense-layout kitchen bag with no topic options (against the same frames
in the raw-image layout), LiDAR + camera from the world's --lidar bags, and replay's bag clock."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # real_layouts (test material)

import real_layouts as R  # noqa: E402

FAST = """
/**:
  ros__parameters:
    mapper:
      device: cpu
      seeding: {stride: 6}
      optim: {iterations: 2, first_iterations: 4, refine_iterations: 0}
      calibration_frames: 2
"""


@pytest.fixture(scope="module")
def raw_layout(shared_data, tmp_path_factory) -> Path:
    """The first 6 frames of the RealSense-layout bag, decoded and written as raw rgb8/16UC1 Images."""
    return R.write_raw_layout(
        shared_data / R.REALSENSE, tmp_path_factory.mktemp("raw") / "raw_layout", max_frames=6
    )


def _topics_of(bag):
    from gs_mapping.bag import BagReader
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.topics import discover

    with BagReader(bag) as b:
        f = discover({t.name: t.type for t in b.topics})
    return TopicsConfig(color=f.color, depth=f.depth, camera_info=f.camera_info)


def test_compressed_layout_gives_the_frames_of_the_raw_layout(shared_data, raw_layout):
    from gs_mapping.mapping.frames import read_frames

    rs = shared_data / R.REALSENSE
    t_rs, t_raw = _topics_of(rs), _topics_of(raw_layout)
    assert t_rs.color == R.RS_COLOR and t_rs.depth == R.RS_DEPTH and t_raw.color == "/camera/color/image_raw"
    a = list(read_frames(rs, t_rs))[:6]
    b = list(read_frames(raw_layout, t_raw))
    assert len(a) == len(b) == 6
    for fa, fb in zip(a, b, strict=True):
        assert fa.rgb.shape == (480, 640, 3) and np.array_equal(fa.rgb, fb.rgb)
        assert np.array_equal(fa.depth, fb.depth) and (fa.depth > 0).mean() > 0.8
        assert np.allclose(fa.camera.T_map_cam, fb.camera.T_map_cam) and fa.stamp_ns == fb.stamp_ns
        assert fa.camera.frame_id == "camera_color_optical_frame"


@pytest.mark.slow
def test_map_realsense_without_topic_options_matches_raw_layout(shared_data, raw_layout, tmp_path, capsys):
    """`gs-mapping map --calibrate-color` with no topic options, a few frames and a fast mapper: the
    compressed layout's held-out PSNR within 0.5 dB of the raw layout's (the full-bag figure with the
    mapper's defaults is bench/real_inputs.py's)."""
    from gs_mapping.cli import main

    cfg = tmp_path / "fast.yaml"
    cfg.write_text(FAST)
    psnr = {}
    for name, bag in (("realsense", shared_data / R.REALSENSE), ("raw", raw_layout)):
        out = tmp_path / name
        args = [
            "map",
            str(bag),
            "--out",
            str(out),
            "--calibrate-color",
            "--no-progress",
            "--config",
            str(cfg),
        ]
        assert main([*args, "--max-frames", "6", "--holdout-every", "3"]) == 0, capsys.readouterr().err
        m = json.loads((out / "metrics.json").read_text())
        assert m["keyframes"] >= 2 and m["skipped"] == 0 and m["heldout"]["views"] == 2
        psnr[name] = m["heldout"]["psnr"]
    assert psnr["realsense"] > 15 and abs(psnr["realsense"] - psnr["raw"]) <= 0.5, psnr


@pytest.fixture(scope="module")
def lidar_world(tmp_path_factory) -> Path:
    from gs_mapping.cli import main

    out = tmp_path_factory.mktemp("world") / "lidar"
    args = ["world", "--out", str(out), "--frames", "3", "--lidar", "--compressed", "--size", "320x180"]
    assert main([*args, "--workers", "1", "--no-progress"]) == 0
    return out


def test_lidar_camera_frames_match_the_rendered_depth(lidar_world):
    """Each cloud, moved by TF at its own stamp into the camera and projected, gives the depth the world
    renderer drew at those pixels (its own depth image: the ground truth)."""
    from gs_mapping.bag import BagReader
    from gs_mapping.mapping.frames import read_frames
    from gs_mapping.mapping.mapper_config import TopicsConfig
    from gs_mapping.messages.camera_image import depth_to_metres

    topics = TopicsConfig(
        color="/cameras/front/image_raw/compressed",
        depth="/cameras/front/depth",
        camera_info="/cameras/front/camera_info",
    )
    frames = list(read_frames(lidar_world, topics, cloud_topic="/lidar/points"))
    with BagReader(lidar_world) as b:
        truth = [
            np.nan_to_num(depth_to_metres(m), nan=0.0) for _t, _s, m in b.messages(["/cameras/front/depth"])
        ]
    assert len(frames) == len(truth) == 3
    for f, gt in zip(frames, truth, strict=True):
        hit = (f.depth > 0) & (gt > 0)
        assert hit.sum() > 300  # a 32-beam LiDAR covers a band of the image
        rel = np.abs(f.depth[hit] - gt[hit]) / gt[hit]
        assert np.median(rel) < 0.02, np.median(rel)


def test_map_cli_lidar_camera(lidar_world, tmp_path, capsys):
    from gs_mapping.cli import main

    cfg = tmp_path / "fast.yaml"
    cfg.write_text(FAST.replace("      calibration_frames: 2\n", ""))
    out = tmp_path / "m"
    args = [
        "map",
        str(lidar_world),
        "--out",
        str(out),
        "--cloud-topic",
        "/lidar/points",
        "--config",
        str(cfg),
    ]
    assert main([*args, "--holdout-every", "0", "--no-progress"]) == 0, capsys.readouterr().err
    # no held-out view: the console says n/a where metrics.json has null (it printed "nan dB")
    assert "held-out PSNR n/a dB, SSIM n/a, depth L1 n/a cm" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["heldout"]["psnr"] is None
    assert m["topics"]["cloud"] == "/lidar/points" and m["topics"]["color"].endswith("/compressed")
    assert m["keyframes"] >= 1 and m["gaussians"] > 100


def test_replay_output_bag_lies_within_the_input_span(lidar_world, tmp_path, fast_nodes_config):
    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.replay import replay_bag

    mapper, receiver = node_class("mapper_node"), node_class("map_receiver_node")
    configs = [mapper.load_config(str(fast_nodes_config)), receiver.load_config(str(fast_nodes_config))]
    configs[0]["mapper"].topics.color = "/cameras/front/image_raw/compressed"
    configs[0]["mapper"].topics.camera_info = "/cameras/front/camera_info"
    configs[0]["mapper_node"].cloud_topic = "/lidar/points"
    summary, nodes = replay_bag(lidar_world, tmp_path / "out", [mapper, receiver], configs)
    assert nodes[0].mapper.stats.frames == 3, nodes[0].diag.summary()
    with BagReader(lidar_world) as src, BagReader(tmp_path / "out") as out:
        assert src.start_ns <= out.start_ns and out.end_ns <= src.end_ns, (src.start_ns, out.start_ns)
        names = {t.name for t in out.topics}
        assert {"/mapper_node/map_snapshot", "/mapper_node/map_delta", "/diagnostics"} <= names
        for topic, stamp, _msg in out.messages(sorted(names)):
            assert src.start_ns <= stamp <= src.end_ns, topic


def test_mapper_node_says_what_it_waits_for(lidar_world, tmp_path, fast_nodes_config):
    """A LiDAR-only input (no colour, no camera_info): diagnostics name what is missing."""
    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.replay import ReplayBus

    cls = node_class("mapper_node")
    cfg = cls.load_config(str(fast_nodes_config))
    cfg["mapper_node"].cloud_topic = "/lidar/points"
    bus = ReplayBus()
    node = cls(bus.context("mapper_node"), cfg)
    with BagReader(lidar_world) as b:
        bus.run(b, topics=["/lidar/points", "/tf", "/tf_static"], progress=False)
    bus.fire_timers()
    waiting = node.diag.summary()["waiting_for"]
    assert (
        "colour on /camera/color/image_raw" in waiting
        and "camera_info on /camera/color/camera_info" in waiting
    )
    assert "cloud" not in waiting and "TF" not in waiting


def test_replay_says_when_no_input_matched(kitchen_bag, tmp_path, capsys, caplog):
    from gs_mapping.cli import main

    args = ["replay", str(kitchen_bag), "--nodes", "map_receiver_node"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    said = caplog.text
    assert "no input topic of the nodes is in the bag" in said and "/mapper_node/map_delta" in said
    assert main([*args, "--out", str(tmp_path / "b"), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].startswith("gs-mapping replay: error:") and "no input topic of map_receiver_node" in err[-1]
    )


@pytest.mark.slow  # 640x480 mapping in the node: about a minute each on a busy 2-core machine
@pytest.mark.parametrize("layout", ["recorded", "unregistered"])
def test_mapper_node_maps_realsense_layouts(shared_data, tmp_path, fast_nodes_config, layout):
    """mapper_node in replay: JPEG colour with compressedDepth (as recorded), or with raw depth in its
    own camera (depth_camera_info: registered through TF); the topics found as replay finds them."""
    from gs_mapping.cli.replay import _discover_mapper_topics
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.replay import replay_bag

    src = shared_data / R.REALSENSE
    if layout == "recorded":
        bag = R.write_subset(src, tmp_path / "rs3", 3)
    else:
        bag, _ = R.write_unregistered_layout(src, tmp_path / "unreg", max_frames=2)
    cls = node_class("mapper_node")
    cfg = cls.load_config(str(fast_nodes_config))
    _discover_mapper_topics(bag, cfg)
    t = cfg["mapper"].topics
    assert t.color == R.RS_COLOR
    assert (t.depth, t.depth_camera_info) == (
        (R.RS_DEPTH, "")
        if layout == "recorded"
        else ("/camera/camera/depth/image_rect_raw", "/camera/camera/depth/camera_info")
    )
    _summary, (node,) = replay_bag(bag, tmp_path / "out", [cls], [cfg])
    d = node.diag.summary()
    # the bag's first colour/depth pair may come before the first CameraInfo of the same stamp: a live
    # node cannot use it either (rejected, said)
    n = 3 if layout == "recorded" else 2
    assert (
        node.mapper.stats.frames + sum(d["rejected"].values()) == n and node.mapper.stats.frames >= n - 1
    ), d
    assert node.mapper.stats.keyframes >= 1 and "no CameraInfo" in (d["last_error"] or "no CameraInfo"), d
    # nothing awaited that never came; the subset keeps the recording's /tf after its last images,
    # so colour and depth may be reported as stopped while TF goes on (as they did)
    waiting = [p for p in d.get("waiting_for", "").split(", ") if p]
    assert all("silent for" in p for p in waiting), waiting
