"""Topic discovery on the layouts drivers record, robot TF trees, and bad inputs refused in one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import map_args

from gs_mapping.errors import ConfigError, UnknownFrameError
from gs_mapping.geometry import Transform, TransformStamped
from gs_mapping.tf import MapPoses, TFBuffer
from gs_mapping.topics import discover, info_topic, resolve_name

I, C, INFO, PC = (
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CompressedImage",
    "sensor_msgs/msg/CameraInfo",
    "sensor_msgs/msg/PointCloud2",
)
TF = {"/tf": "tf2_msgs/msg/TFMessage", "/tf_static": "tf2_msgs/msg/TFMessage"}


def _cam(base: str, image: str = "image_raw", types=(I,), info=True) -> dict:
    out = {f"{base}/{image}": I} if I in types else {}
    if C in types:
        out[f"{base}/{image}/compressed"] = C
    if info:
        out[f"{base}/camera_info"] = INFO
    return out


LAYOUTS = {
    # realsense2_camera (ROS 2, namespaced), compressed transports only, as in ../shared/data
    "realsense_compressed": (
        {
            **_cam("/camera/camera/color", types=(C,)),
            "/camera/camera/aligned_depth_to_color/image_raw/compressedDepth": C,
            "/camera/camera/aligned_depth_to_color/camera_info": INFO,
            **TF,
        },
        (
            "/camera/camera/color/image_raw/compressed",
            "/camera/camera/aligned_depth_to_color/image_raw/compressedDepth",
            "",
        ),
    ),
    # realsense without align_depth: depth in its own camera, raw + compressed transports (raw wins)
    "realsense_unaligned": (
        {
            **_cam("/camera/color", types=(I, C)),
            **_cam("/camera/depth", "image_rect_raw"),
            "/camera/depth/image_rect_raw/compressedDepth": C,
            "/camera/infra1/image_rect_raw": I,
            "/camera/infra1/camera_info": INFO,
            **TF,
        },
        ("/camera/color/image_raw", "/camera/depth/image_rect_raw", "/camera/depth/camera_info"),
    ),
    "7scenes": (
        {**_cam("/camera/color"), "/camera/depth/image_rect_raw": I, **TF},
        ("/camera/color/image_raw", "/camera/depth/image_rect_raw", ""),
    ),
    "zed": (
        {
            **_cam("/zed/zed_node/rgb", "image_rect_color", (I, C)),
            **_cam("/zed/zed_node/left", "image_rect_color"),
            **_cam("/zed/zed_node/right", "image_rect_color"),
            **_cam("/zed/zed_node/depth", "depth_registered"),
            "/zed/zed_node/confidence/confidence_map": I,
            "/zed/zed_node/point_cloud/cloud_registered": PC,
            **TF,
        },
        ("/zed/zed_node/rgb/image_rect_color", "/zed/zed_node/depth/depth_registered", ""),
    ),
    "oak": (
        {**_cam("/oak/rgb", types=(I, C)), **_cam("/oak/stereo"), **TF},
        ("/oak/rgb/image_raw", "/oak/stereo/image_raw", "/oak/stereo/camera_info"),
    ),
    "azure_kinect": (
        {
            **_cam("/rgb"),
            **_cam("/depth"),
            **_cam("/depth_to_rgb"),
            **_cam("/ir"),
            **TF,
        },
        ("/rgb/image_raw", "/depth_to_rgb/image_raw", ""),
    ),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_discovery_on_driver_layouts(name):
    types, (color, depth, depth_info) = LAYOUTS[name]
    found = discover(types)
    assert (found.color, found.depth, found.depth_camera_info) == (color, depth, depth_info)
    assert found.camera_info == info_topic(color) and not found.cloud


def _topics_only_bag(path, types: dict):
    """A rosbag2 (MCAP) with these topics and no messages: what discovery reads."""
    from rosbags.rosbag2 import Writer

    from gs_mapping.bag import default_typestore

    ts = default_typestore()
    with Writer(path, version=8) as w:
        for name, kind in types.items():
            w.add_connection(name, kind, typestore=ts)
    return path


REPLAY_LAYOUTS = {
    **LAYOUTS,
    # realsense2_camera at its default topics with align_depth on: the mapper's default colour topic is
    # there, its default depth (image_rect_raw, another camera) too, but the registered one is the one
    "realsense_default_aligned": (
        {
            **_cam("/camera/color"),
            **_cam("/camera/depth", "image_rect_raw"),
            **_cam("/camera/aligned_depth_to_color"),
            **TF,
        },
        ("/camera/color/image_raw", "/camera/aligned_depth_to_color/image_raw", ""),
    ),
}


@pytest.mark.parametrize("name", sorted(REPLAY_LAYOUTS))
def test_replay_finds_the_topics_map_finds(name, tmp_path, fast_nodes_config):
    """``replay`` and ``map`` choose a bag's topics by one rule, with or without a parameter file (replay
    once stopped at the default colour topic and kept the default depth: an empty map, exit 0)."""

    from gs_mapping.cli.map import choose_topics
    from gs_mapping.cli.replay import _discover_mapper_topics
    from gs_mapping.mapping.mapper_config import MapperConfig
    from gs_mapping.nodes.registry import node_class

    types, (color, depth, depth_info) = REPLAY_LAYOUTS[name]
    bag = _topics_only_bag(tmp_path / "b", types)
    cfg = MapperConfig()
    assert choose_topics(bag, cfg, map_args()) == ""
    for config in (None, str(fast_nodes_config)):
        nodes = node_class("mapper_node").load_config(config)
        _discover_mapper_topics(bag, nodes)
        t = nodes["mapper"].topics
        assert (t.color, t.depth, t.depth_camera_info, t.camera_info) == (
            color,
            depth,
            depth_info,
            info_topic(color),
        )
        assert (cfg.topics.color, cfg.topics.depth, cfg.topics.depth_camera_info) == (
            color,
            depth,
            depth_info,
        )
        assert nodes["mapper_node"].cloud_topic == ""


def test_replay_topics_named_in_the_config_are_kept_or_refused(tmp_path):
    """Topics a parameter file names win over discovery; a named topic the bag lacks is one error
    (the node would wait for it forever); a bag without a camera, when nothing was named, keeps the
    defaults with a warning."""
    from gs_mapping.cli.replay import _discover_mapper_topics
    from gs_mapping.nodes.registry import node_class

    types, _ = REPLAY_LAYOUTS["azure_kinect"]
    bag = _topics_only_bag(tmp_path / "b", types)
    cfg_file = tmp_path / "p.yaml"

    def topics(**named):
        lines = "".join(f"        {k}: {v}\n" for k, v in named.items())
        cfg_file.write_text(f"/**:\n  ros__parameters:\n    mapper:\n      topics:\n{lines}")
        return node_class("mapper_node").load_config(str(cfg_file))

    nodes = topics(depth="/depth/image_raw")  # discovery alone takes the registered /depth_to_rgb
    _discover_mapper_topics(bag, nodes)
    t = nodes["mapper"].topics
    assert (t.color, t.depth, t.depth_camera_info) == (
        "/rgb/image_raw",
        "/depth/image_raw",
        "/depth/camera_info",
    )
    nodes = topics(color="/front/image_raw")
    with pytest.raises(ConfigError, match="no topic /front/image_raw"):
        _discover_mapper_topics(bag, nodes)
    bare = _topics_only_bag(tmp_path / "bare", TF)
    nodes = node_class("mapper_node").load_config(None)
    _discover_mapper_topics(bare, nodes)
    assert nodes["mapper"].topics.color == "/camera/camera/color/image_raw"  # (the default)


def test_discovery_lidar_camera_and_options():
    world = {**_cam("/cameras/front"), "/lidar/points": PC, **TF}
    found = discover(world)
    assert (found.color, found.cloud, found.depth) == ("/cameras/front/image_raw", "/lidar/points", "")
    # a named option is kept (and checked); the rest is found
    types, _ = LAYOUTS["realsense_unaligned"]
    f = discover(types, depth="/camera/depth/image_rect_raw/compressedDepth")
    assert f.depth.endswith("compressedDepth") and f.depth_camera_info == "/camera/depth/camera_info"


def test_each_stream_is_read_from_its_best_transport():
    """Raw first (no decode cost); then depth from ``/compressedDepth`` (lossless) over
    ``/compressed`` (an 8-bit JPEG of 16-bit depth), colour from ``/compressed``, whatever the
    names' order."""
    col, dep = "/camera/color/image_raw", "/camera/aligned_depth_to_color/image_raw"
    every = ("/compressed", "/compressedDepth", "/theora", "/zstd")
    colour = {col + t: C for t in every} | {"/camera/color/camera_info": INFO}
    depth = {dep + t: C for t in every}
    assert (discover(colour | depth).color, discover(colour | depth).depth) == (
        col + "/compressed",
        dep + "/compressedDepth",
    )
    with_raw = discover(colour | depth | {col: I, dep: I})
    assert (with_raw.color, with_raw.depth) == (col, dep)


def test_ambiguous_and_missing_are_one_line_errors():
    two = {**_cam("/cam_a/color"), **_cam("/cam_b/color"), "/cam_a/depth/image_raw": I}
    with pytest.raises(
        ConfigError, match="ambiguous, candidates /cam_a/color/image_raw, /cam_b/color/image_raw"
    ):
        discover(two)
    with pytest.raises(ConfigError, match="no colour image topic"):
        discover({"/camera/depth/image_raw": I, **TF})
    with pytest.raises(ConfigError, match="no depth image topic"):
        discover(_cam("/camera/color"))
    types, _ = LAYOUTS["7scenes"]
    with pytest.raises(ConfigError, match="depth topic /tf is tf2_msgs/msg/TFMessage"):
        discover(types, depth="/tf")
    with pytest.raises(ConfigError, match="same stream"):
        discover(types, depth="/camera/color/image_raw")
    with pytest.raises(ConfigError, match="no topic /nope"):
        discover(types, color="/nope")


def test_relative_names_resolve_as_ros():
    assert resolve_name("raspicam_node/camera/image/compressed") == "/raspicam_node/camera/image/compressed"
    assert resolve_name("image", "robot1") == "/robot1/image"
    assert resolve_name("/abs//x/") == "/abs/x"


# -- TF trees ------------------------------------------------------------------------------------------------
def _T(x=0.0, y=0.0, z=0.0):
    return Transform(np.array([x, y, z]), np.array([0.0, 0.0, 0.0, 1.0]))


def test_robot_tree_static_chain_of_any_depth():
    tf = TFBuffer(cache_time_s=0)
    chain = [
        "map",
        "odom",
        "base_link",
        "mount",
        "camera_link",
        "camera_color_frame",
        "camera_color_optical_frame",
    ]
    for i, (p, c) in enumerate(zip(chain[:-1], chain[1:], strict=True)):
        tf.add(TransformStamped(p, c, 0, _T(x=0.1 * (i + 1))), static=(p, c) != ("odom", "base_link"))
    tf.add(TransformStamped("odom", "base_link", 100, _T(y=1.0)))
    T = MapPoses(tf, "map").lookup("camera_color_optical_frame", 100)
    assert np.allclose(T[:3, 3], [0.1 + 0.3 + 0.4 + 0.5 + 0.6, 1.0, 0.0])  # odom's 0.2 x replaced by y=1


def test_missing_map_frame_anchors_at_the_first_pose_and_says_so(caplog):
    import logging

    tf = TFBuffer(cache_time_s=0)
    tf.add(TransformStamped("odom", "base_link", 0, _T(x=5.0)))
    tf.add(TransformStamped("odom", "base_link", 10, _T(x=6.0)))
    tf.add(TransformStamped("base_link", "cam", 0, _T(z=0.5)), static=True)
    poses = MapPoses(tf, "map", logging.getLogger("t"))
    with caplog.at_level(logging.WARNING):
        first = poses.lookup("cam", 0)
        second = poses.lookup("cam", 10)
        poses.lookup("cam", 5)
    assert np.allclose(first, np.eye(4)) and np.allclose(second[:3, 3], [1.0, 0.0, 0.0])
    said = [r for r in caplog.records if "no frame 'map'" in r.getMessage()]
    assert len(said) == 1
    with pytest.raises(UnknownFrameError, match="no TF for frame 'other'"):
        MapPoses(tf, "map").lookup("other", 0)


def test_a_frame_to_itself_is_the_identity_without_tf():
    assert np.allclose(TFBuffer().lookup("camera_optical", "camera_optical", 123).matrix(), np.eye(4))


# -- the command line: one line, exit 2 ------------------------------------------------------------------
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gs_mapping", *args], capture_output=True, text=True)


def _one_line_exit_2(r, *words):
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_map_bad_topics_are_one_line(kitchen_bag, tmp_path, capsys):
    from gs_mapping.cli import main

    class R:  # the subprocess result's shape, from an in-process run (torch imported once)
        def __init__(self, *args):
            self.returncode = main(list(args))
            self.stderr = capsys.readouterr().err

    out = str(tmp_path / "o")
    same = R("map", str(kitchen_bag), "--out", out, "--depth-topic", "/camera/color/image_raw")
    _one_line_exit_2(same, "same stream", "/camera/color/image_raw")
    wrong = R("map", str(kitchen_bag), "--out", out, "--depth-topic", "/tf")
    _one_line_exit_2(wrong, "depth topic /tf is tf2_msgs/msg/TFMessage")
    cloud = R("map", str(kitchen_bag), "--out", out, "--cloud-topic", "camera/color/image_raw")
    _one_line_exit_2(cloud, "cloud topic /camera/color/image_raw is sensor_msgs/msg/Image")
    info = R("map", str(kitchen_bag), "--out", out, "--depth-info-topic", "/camera/color/image_raw")
    _one_line_exit_2(info, "depth camera_info topic /camera/color/image_raw is sensor_msgs/msg/Image")
    assert not (tmp_path / "o").exists()


def test_ros1_bag_says_how_to_convert(tmp_path):
    bag = tmp_path / "drive.bag"
    bag.write_bytes(b"#ROSBAG V2.0\n" + b"\0" * 64)
    r = _cli("info", str(bag))
    _one_line_exit_2(r, "ROS 1 bag", "rosbags-convert --src")


def test_info_into_a_closed_pipe_is_quiet(kitchen_bag):
    p = subprocess.Popen(
        [sys.executable, "-m", "gs_mapping", "info", str(kitchen_bag)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdout.close()  # like `| head` that has already exited
    err = p.stderr.read().decode()
    # (141 = 128 + SIGPIPE, quietly, as cat and every other command: it was 0 until session 39)
    assert p.wait() == 141 and "BrokenPipe" not in err and "Traceback" not in err, err


def test_node_with_one_topic_for_colour_and_depth_is_a_config_error(fast_nodes_config):
    from gs_mapping.errors import GsMappingError
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.replay import ReplayBus

    cls = node_class("mapper_node")
    cfg = cls.load_config(str(fast_nodes_config))
    cfg["mapper"].topics.depth = cfg["mapper"].topics.color
    with pytest.raises(GsMappingError, match="distinct: /camera/color/image_raw given more than once"):
        cls(ReplayBus().context("mapper_node"), cfg)
