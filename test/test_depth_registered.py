"""A depth registered to colour but stamped with another frame: ``map --depth-registered`` and
``mapper.topics.depth_registered`` (session 36).

realsense-ros's ``aligned_depth_to_color`` is the colour camera's image (its pixels, its
intrinsics) and today carries the colour optical frame; some drivers stamp such a depth with the
depth camera's frame (realsense-ros's ``rgbd`` message until realsense-ros#3385). The frame check
of ``map`` / ``replay`` (test_left_open34) refuses it, and naming its CameraInfo would place it
through TF from the wrong camera. The real RealSense kitchen bag's first frames, with the aligned
depth (and its CameraInfo) restamped ``camera_depth_optical_frame``, are that recording.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import yaml
from conftest import map_args
from hostile_cases import one_error_line

from gs_mapping.cli import main

RS = "/camera/camera"
ALIGNED = RS + "/aligned_depth_to_color/image_raw/compressedDepth"
ALIGNED_INFO = RS + "/aligned_depth_to_color/camera_info"
DEPTH_FRAME = "camera_depth_optical_frame"
FRAMES = 2
# a map of two frames in seconds on CPU: the Gaussians seeded from each frame's depth where it
# places it (no optimisation: the depth's placement is what differs), a coarse seeding grid
FAST = {
    "backend": "cpu",
    "seeding": {"stride": 8},
    "optim": {"iterations": 0, "first_iterations": 0, "refine_iterations": 0},
}


def _derived(shared_data, out, frame: str = DEPTH_FRAME, rename: dict | None = None):
    """The kitchen bag's first ``FRAMES`` frames (and all its TF), the aligned depth and its
    CameraInfo stamped with ``frame``; ``rename``: {topic: new name}."""
    from gs_mapping.bag import BagReader, BagWriter

    rename = rename or {}
    with BagReader(shared_data / "realsense_kitchen_rgbd") as r, BagWriter(out) as w:
        types = {t.name: t.type for t in r.topics}
        for name, typ in types.items():
            w.add_topic(rename.get(name, name), typ, latched=name == "/tf_static")
        count: dict[str, int] = {}
        for topic, t, m in r.messages(list(types)):
            count[topic] = count.get(topic, 0) + 1
            if not topic.startswith("/tf") and count[topic] > FRAMES:
                continue
            if topic in (ALIGNED, ALIGNED_INFO):
                m = dataclasses.replace(m, header=dataclasses.replace(m.header, frame_id=frame))
            w.write(rename.get(topic, topic), t, m)
    return out


@pytest.fixture(scope="module")
def bags(shared_data, tmp_path_factory):
    pytest.importorskip("rosbags.rosbag2")
    d = tmp_path_factory.mktemp("registered")
    return {
        "as_recorded": _derived(shared_data, d / "as_recorded", frame="camera_color_optical_frame"),
        "depth_frame": _derived(shared_data, d / "depth_frame"),
        # a depth whose name says nothing of registration, beside a CameraInfo of the same frame
        # (a driver registering in place, its depth topic and info kept: Orbbec's depth_registration)
        "plain_name": _derived(
            shared_data,
            d / "plain_name",
            rename={
                ALIGNED: RS + "/depth/image_raw/compressedDepth",
                ALIGNED_INFO: RS + "/depth/camera_info",
            },
        ),
    }


def _config(path, **topics) -> str:
    mapper = {**FAST, "topics": topics} if topics else FAST
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"mapper": mapper}}}))
    return str(path)


def test_the_refusal_names_the_override_and_writes_nothing(bags, tmp_path):
    """Through the real command: exit 2, one line naming both frames and ``--depth-registered`` /
    ``mapper.topics.depth_registered``, nothing written."""
    out = tmp_path / "o"
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "map", str(bags["depth_frame"]), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,  # (refused before any mapping: seconds)
    )
    err = r.stderr.strip()
    assert r.returncode == 2 and "\n" not in err and "Traceback" not in err, err
    for needle in (ALIGNED, DEPTH_FRAME, "camera_color_optical_frame", "--depth-registered"):
        assert needle in err, err
    assert "mapper.topics.depth_registered: true" in err
    assert not out.exists()


def _map(bag, out, capsys, caplog, *more) -> bytes:
    caplog.clear()
    rc = main(["map", str(bag), "--out", str(out), "--holdout-every", "0", "--no-progress", *more])
    said = capsys.readouterr().err + caplog.text  # (the log: to stderr, or to pytest's capture)
    assert rc == 0, said
    assert "depth images name frame" not in said  # (said registered: no warning of its frame)
    return (out / "map.ply").read_bytes()


def test_depth_registered_maps_it_as_the_colour_cameras(bags, tmp_path, capsys, caplog):
    """``--depth-registered`` (or the parameter in the file) on the restamped bag makes the very map
    the bag as recorded makes (byte for byte: its frame is not used), where without it the bag is
    refused. The plain-named depth beside a CameraInfo of its own (``auto`` would register it
    through TF from ``camera_depth_optical_frame``, which the bag's TF does not have: every frame
    skipped) maps the same map too, with the option or the parameter."""
    pytest.importorskip("torch")  # (the mapper)
    cfg = _config(tmp_path / "fast.yaml")
    want = _map(bags["as_recorded"], tmp_path / "want", capsys, caplog, "--config", cfg)
    said = _config(tmp_path / "said.yaml", depth_registered=True)
    # (the older spelling: an empty depth_camera_info, "registered" by its description; map and
    # replay dropped it to auto before)
    empty = _config(tmp_path / "empty.yaml", depth_camera_info="")
    for bag in ("depth_frame", "plain_name"):
        got = _map(bags[bag], tmp_path / f"{bag}1", capsys, caplog, "--config", cfg, "--depth-registered")
        assert got == want, bag
        assert _map(bags[bag], tmp_path / f"{bag}2", capsys, caplog, "--config", said) == want, bag
    assert _map(bags["depth_frame"], tmp_path / "empty", capsys, caplog, "--config", empty) == want


def test_without_it_the_plain_named_depth_is_placed_through_tf(bags, tmp_path, capsys, caplog):
    """The control of the test above: the plain-named depth, not said registered, is taken as its
    own camera's (its CameraInfo in camera_depth_optical_frame, which no transform reaches): exit 2,
    no usable frame, each skipped for no pose."""
    pytest.importorskip("torch")  # (the mapper)
    cfg = _config(tmp_path / "fast.yaml")
    caplog.set_level("INFO", logger="gs_mapping.map")  # (the topics line)
    rc = main(
        ["map", str(bags["plain_name"]), "--out", str(tmp_path / "o"), "--config", cfg, "--no-progress"]
    )
    err = capsys.readouterr().err + caplog.text
    assert rc == 2 and "no usable frame" in err and f"no pose map <- {DEPTH_FRAME}" in err, err
    assert "registered to colour through TF" in err


def test_registered_with_a_depth_camera_info_is_refused(bags, tmp_path, capsys):
    """A registered depth has no CameraInfo of its own: the option with ``--depth-info-topic`` is
    one line and exit 2 (nothing written); the parameter with a ``depth_camera_info`` topic is refused
    where the config is built (test_param_validation runs it through every runtime)."""
    out = tmp_path / "o"
    argv = ["map", str(bags["depth_frame"]), "--out", str(out), "--depth-registered"]
    assert main([*argv, "--depth-info-topic", ALIGNED_INFO]) == 2
    one_error_line(capsys, "--depth-registered", "--depth-info-topic")
    bad = _config(tmp_path / "bad.yaml", depth_registered=True, depth_camera_info=ALIGNED_INFO)
    assert main(["map", str(bags["depth_frame"]), "--out", str(out), "--config", bad]) == 2
    one_error_line(capsys, "mapper.topics.depth_registered", "mapper.topics.depth_camera_info", ALIGNED_INFO)
    assert not out.exists()


def test_an_option_naming_the_depth_camera_info_wins_over_the_files_registered(bags, tmp_path):
    """Names on the command line win over the file's (topic_choice's rule): ``--depth-info-topic``
    beside a file's ``depth_registered: true`` places the depth through TF, not refused."""
    from gs_mapping.cli.map import choose_topics
    from gs_mapping.config_file import load_section
    from gs_mapping.mapping.mapper_config import MapperConfig
    from gs_mapping.nodes.registry import node_fqn, read_parameter_file

    path = _config(tmp_path / "said.yaml", depth_registered=True)
    cfg = load_section(path, "mapper", MapperConfig, read_parameter_file(path, node_fqn("mapper_node")))
    choose_topics(bags["depth_frame"], cfg, map_args(depth_info_topic=ALIGNED_INFO))
    assert (cfg.topics.depth_camera_info, cfg.topics.depth_registered) == (ALIGNED_INFO, False)


def test_replay_maps_it_with_the_parameter(bags, tmp_path):
    """``gs-mapping replay`` takes its topics from the parameter file: without
    ``depth_registered`` the restamped bag's camera is not taken (a warning naming the override; the
    mapper publishes no delta), with it mapper_node maps both frames and publishes its deltas."""
    pytest.importorskip("torch")  # (the mapper)
    runs = {}
    for name, cfg in (
        ("plain", _config(tmp_path / "plain.yaml")),
        ("said", _config(tmp_path / "said.yaml", depth_registered=True)),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "gs_mapping", "replay", str(bags["depth_frame"]), "--out"]
            + [str(tmp_path / name), "--nodes", "mapper_node", "--config", cfg, "--json", "--no-progress"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr
        runs[name] = (yaml.safe_load(r.stdout.strip().splitlines()[-1]), r.stderr)
    plain, said = runs["plain"], runs["said"]
    assert "--depth-registered" in plain[1] and "mapper.topics.depth_registered: true" in plain[1]
    assert not plain[0]["published"].get("/mapper_node/map_delta")
    assert said[0]["published"].get("/mapper_node/map_delta", 0) >= 1, said
    assert "depth images name frame" not in said[1]


def test_mapper_node_with_the_parameter_reads_no_depth_camera_info(bags, tmp_path, caplog):
    """mapper_node as a live graph runs it: topics from the parameter file as given (no topic
    choice from a bag), ``depth_camera_info`` left ``auto``. The plain-named depth in another frame
    than colour: without ``depth_registered`` the node takes its sibling CameraInfo and waits for a
    transform of camera_depth_optical_frame that never comes (no delta); with it, no depth CameraInfo
    is subscribed and both frames are mapped into deltas (the replay runtime, driven directly)."""
    pytest.importorskip("torch")  # (the mapper)
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import replay_bag

    topics = {
        "color": RS + "/color/image_raw/compressed",
        "depth": RS + "/depth/image_raw/compressedDepth",
        "camera_info": RS + "/color/camera_info",
    }
    published = {}
    for said in (False, True):
        cfg = MapperNode.load_config(_config(tmp_path / f"{said}.yaml", depth_registered=said, **topics))
        assert cfg["mapper"].topics.depth_camera_info == "auto"
        summary, _ = replay_bag(bags["plain_name"], tmp_path / f"out{said}", [MapperNode], [cfg])
        published[said] = summary.published.get("/mapper_node/map_delta", 0)
        assert (RS + "/depth/camera_info" in summary.matched_inputs) == (not said), summary.matched_inputs
    assert published[False] == 0 and published[True] >= 1, published
    assert "depth images name frame" not in caplog.text  # (said registered: its frame not warned of)
