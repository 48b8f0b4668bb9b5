"""hd-predict on a recording as robots make them: compressed camera, no TF at all, relative topic names."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def camera_only_bag(tmp_path_factory):
    """A world drive's JPEG camera and CameraInfo only (no /tf, no /tf_static)."""
    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.cli import main

    tmp = tmp_path_factory.mktemp("hd")
    world = tmp / "world"
    args = ["world", "--out", str(world), "--frames", "2", "--compressed", "--size", "320x180"]
    assert main([*args, "--workers", "1", "--no-progress"]) == 0
    out = tmp / "camera_only"
    keep = ["/cameras/front/image_raw/compressed", "/cameras/front/camera_info"]
    with BagReader(world) as r, BagWriter(out) as w:
        for t in keep:
            w.add_topic(t, r.topic(t).type)
        for topic, stamp, msg in r.messages(keep):
            w.write(topic, stamp, msg)
    return out


def test_hd_predict_relative_topic_and_a_bag_without_tf(camera_only_bag, tmp_path, capsys):
    from gs_mapping.cli import main

    # a relative, compressed camera topic resolves as in ROS (the world drive, with its TF)
    out = tmp_path / "lanes.json"
    cam = ["--cameras", "cameras/front/image_raw/compressed"]
    args = ["hd-predict", str(camera_only_bag.parent / "world"), "--out", str(out), "--no-progress", *cam]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["cameras"] == ["/cameras/front/image_raw/compressed"] and summary["frames"] == 2
    assert len(json.loads(out.read_text())["results"]) == 2
    # a bag without TF: base_link cannot be found, one line naming the frame, exit 2
    args = ["hd-predict", str(camera_only_bag), "--out", str(tmp_path / "b.json"), "--no-progress", *cam]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "base_link" in err and "Traceback" not in err
    # the camera's own optical frame as the base: its z = 0 plane holds the camera's axis, the model
    # sees no ground there: refused in one line, not a file of empty frames
    assert main([*args, "--base-frame", "front_optical_frame"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "front_optical_frame" in err and "ground" in err


def test_hd_predict_threshold_default_is_the_nodes():
    from gs_mapping.cli import build_parser
    from gs_mapping.nodes.hd_map_node import HDMapNodeConfig

    ns = build_parser().parse_args(["hd-predict", "b", "--out", "o"])
    assert ns.score_threshold == HDMapNodeConfig().score_threshold == 0.3


def test_hd_map_node_says_what_it_waits_for(camera_only_bag):
    """Images but no TF: diagnostics name the missing transform; no CameraInfo: they name it too."""
    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.replay import ReplayBus

    cls = node_class("hd_map_node")
    cfg = cls.load_config(None)
    cfg["hd_map_node"].camera_topics = ["/cameras/front/image_raw/compressed"]
    cfg["hd_map_node"].device = "cpu"
    bus = ReplayBus()
    node = cls(bus.context("hd_map_node"), cfg)
    bus.fire_timers()
    before = node.diag.summary()["waiting_for"]
    assert "image on /cameras/front/image_raw/compressed" in before
    assert "camera_info on /cameras/front/camera_info" in before and "TF to base_link" in before
    with BagReader(camera_only_bag) as b:
        bus.run(b, progress=False)
    bus.fire_timers()
    after = node.diag.summary()["waiting_for"]
    assert after == "TF to base_link on /tf or /tf_static", after


def test_hd_predict_without_a_single_complete_frame_is_an_error(camera_only_bag, tmp_path, capsys):
    """The camera's CameraInfo topic is declared but holds nothing: no frame can be predicted, and an
    empty prediction file (which hd-eval would score as "no lanes") is not written: one line, exit 2."""
    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.cli import main

    bag = tmp_path / "no_info"
    cam, info = "/cameras/front/image_raw/compressed", "/cameras/front/camera_info"
    with BagReader(camera_only_bag) as r, BagWriter(bag) as w:
        for t in (cam, info):
            w.add_topic(t, r.topic(t).type)
        for topic, stamp, msg in r.messages([cam]):
            w.write(topic, stamp, msg)
    out = tmp_path / "lanes.json"
    code = main(["hd-predict", str(bag), "--out", str(out), "--no-progress", "--cameras", cam,
                 "--base-frame", "front_optical_frame"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no frame predicted" in err and err.count("\n") == 0, err
    assert not out.exists()
