"""Guards for behaviours a mutation-testing pass found unguarded (twentieth round): the nodes' map
saving, the mapper's frame gating and ~/save, the receiver's runtime parameters, the rclpy runtime's
parameter descriptors and set-parameters callback, the replay bus's clock and the launch helpers.
Each test drives the real component and compares it with an independent reference (the rule a
docstring, the README or ROS 2 states; a hand-built input with a hand-computed answer), so that
breaking the line it guards makes it fail."""

from __future__ import annotations

import logging

import pytest
from test_guards_survivors9 import _mapper

# ------------------------------------------------------------------------------------------------
# nodes.map_saving


def _small_map(n: int = 20):
    from synthetic_maps import synthetic_map

    return synthetic_map(n, 0, seed=5)


def test_final_save_of_an_empty_map_writes_nothing_and_logs_no_error(tmp_path, caplog):
    """final_save: an empty map (nothing mapped yet) is not written, and that is no failure: no
    error line, no rescue file in the temp directory."""
    from gs_mapping.gaussians import GaussianMap
    from gs_mapping.nodes.map_saving import final_save

    empty = _small_map().subset([])
    assert isinstance(empty, GaussianMap) and len(empty) == 0
    log = logging.getLogger("test.final_save")
    with caplog.at_level(logging.INFO, logger="test.final_save"):
        assert final_save(empty, str(tmp_path / "map.ply"), log, "mapper_node") is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert list(tmp_path.iterdir()) == []


def test_save_map_expands_a_tilde_to_the_home_directory(tmp_path, monkeypatch):
    """~/save with '~/maps/x.ply' (what a user types) is the home directory's file, not a folder
    named '~' under the node's working directory."""
    from gs_mapping.nodes.map_saving import save_map

    home, cwd = tmp_path / "home", tmp_path / "cwd"
    (home / "maps").mkdir(parents=True)
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    save_map(_small_map(), "~/maps/x.ply")
    assert (home / "maps" / "x.ply").stat().st_size > 0
    assert list(cwd.iterdir()) == []


def test_final_save_returns_the_rescue_path_it_wrote(tmp_path, monkeypatch, caplog):
    """final_save: 'The path written, if any': a failed save (the path's folder is a file) goes to
    the temp directory, and that file is what it returns."""
    import tempfile

    from gs_mapping.nodes.map_saving import final_save
    from gs_mapping.ply import load_ply

    rescue_dir = tmp_path / "temp"
    rescue_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue_dir))
    (tmp_path / "afile").write_bytes(b"x")
    gmap = _small_map()
    with caplog.at_level(logging.ERROR):
        out = final_save(gmap, str(tmp_path / "afile" / "map.ply"), logging.getLogger("t"), "rx")
    written = list(rescue_dir.iterdir())
    assert len(written) == 1 and out == str(written[0])
    assert len(load_ply(out)) == len(gmap)


# ------------------------------------------------------------------------------------------------
# mapper_node: frames from hand-built messages

# the mapper's default topics (realsense-ros' default launch)
COLOR, DEPTH = "/camera/camera/color/image_raw", "/camera/camera/depth/image_rect_raw"
INFO = "/camera/camera/color/camera_info"
S = 10**9


def _feed(bus, stamp, frame="cam", info_frame=None, tf=True):
    """CameraInfo (32×24, f = 30 px), /tf_static map → ``frame``, an rgb8 colour and a 32FC1 depth
    of 1.5 m, all at ``stamp``."""
    import numpy as np
    from hostile_cases import tf_message

    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info, numpy_to_image

    f = bus.factory
    K = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    intr = CameraIntrinsics(32, 24, K, frame_id=info_frame or frame)
    bus.inject(INFO, intrinsics_to_camera_info(intr, f, stamp_ns=stamp), stamp)
    if tf:
        bus.inject("/tf_static", tf_message(f, 0, "map", frame, 0.0), stamp)
    rgb = np.random.default_rng(stamp % 1000).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    bus.inject(COLOR, numpy_to_image(rgb, "rgb8", stamp, frame, f), stamp)
    depth = np.full((24, 32), 1.5, np.float32)
    bus.inject(DEPTH, numpy_to_image(depth, "32FC1", stamp, frame, f), stamp)


def test_a_second_frame_at_the_same_stamp_is_dropped():
    """on_pair: a frame whose stamp 'is not after the previous frame's' is dropped: a repeated stamp
    (a driver resending a frame) is not mapped twice."""
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    node = _mapper(bus)
    _feed(bus, 1 * S)
    assert node.mapper.stats.frames == 1
    _feed(bus, 1 * S)
    assert node.mapper.stats.frames == 1
    assert node.diag.dropped.get("frames") == 1
    _feed(bus, 2 * S)
    assert node.mapper.stats.frames == 2


def test_the_images_frame_id_wins_over_the_camera_infos(tmp_path):
    """The pose is 'T_map_cam from TF at the colour stamp': the colour image's own frame_id; the
    CameraInfo's frame is only the fallback for an image without one."""
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    node = _mapper(bus)
    _feed(bus, 1 * S, frame="cam_a", info_frame="cam_without_tf")
    assert node.mapper.stats.frames == 1
    assert not node.diag.dropped.get("frames_no_pose")


def test_an_empty_save_request_saves_to_save_path(tmp_path):
    """Module docstring: a String on ~/save 'is the path, or empty for save_path'."""
    from gs_mapping.ply import load_ply
    from gs_mapping.runtime.replay import ReplayBus

    target = tmp_path / "map.ply"
    bus = ReplayBus()
    node = _mapper(bus, save_path=str(target))
    _feed(bus, 1 * S)
    assert len(node.mapper.gmap) > 0
    bus.inject("/mapper_node/save", bus.factory.make("std_msgs/msg/String", data="  "), 2 * S)
    assert not node.diag.rejected
    assert len(load_ply(target)) == len(node.mapper.gmap)


# ------------------------------------------------------------------------------------------------
# rclpy_runtime: descriptors and QoS, under rclpy's own Python code (C layer stood in)


@pytest.fixture(scope="module")
def ros():
    """rclpy (Humble's pure-Python package) with test/rclpy_standin.py's C layer, removed after."""
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy


@pytest.fixture
def rclpy_node(ros):
    """``make(node_cls, *ros_args)``: the node under rclpy; closed and shut down after the test."""
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    made = []

    def make(node_cls, *args):
        context = ros.Context()
        ros.init(args=["node", "--ros-args", *args], context=context)
        node, obj = create_node(node_cls, context)
        made.append((context, node, obj))
        return node, obj

    yield make
    for context, node, obj in made:
        context.try_shutdown()
        close_node(node, obj)


def test_only_runtime_parameters_are_writable_and_ranges_are_declared(rclpy_node):
    """base.py: 'the rclpy runtime declares all others read_only'; a number's range is its
    descriptor's integer_range / floating_point_range (what `ros2 param describe` shows), and a
    float parameter is dynamically typed (a YAML `rate: 2` is an INTEGER)."""
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode

    node, _ = rclpy_node(MapReceiverNode)
    d = {n: node.describe_parameter(f"map_receiver_node.{n}") for n in ("min_opacity", "save_path")}
    assert not d["min_opacity"].read_only and not d["save_path"].read_only
    rate = node.describe_parameter("map_receiver_node.publish_rate_hz")
    assert rate.read_only and rate.dynamic_typing
    r = rate.floating_point_range[0]
    assert (r.from_value, r.to_value) == (0.01, 100.0)
    pending = node.describe_parameter("map_receiver_node.max_pending")
    assert pending.read_only and not pending.dynamic_typing
    ir = pending.integer_range[0]
    assert (ir.from_value, ir.to_value) == (1, 100000) and not pending.floating_point_range
    topic = node.describe_parameter("map_receiver_node.delta_topic")
    assert topic.read_only and not topic.integer_range and not topic.floating_point_range


def test_a_float_parameter_given_as_an_integer_is_accepted(rclpy_node):
    """`-p map_receiver_node.publish_rate_hz:=4` (an INTEGER to rclpy) starts the node at 4.0 Hz."""
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode

    _, rx = rclpy_node(MapReceiverNode, "-p", "map_receiver_node.publish_rate_hz:=4")
    assert rx.cfg.publish_rate_hz == 4.0


def test_sensor_tf_and_latched_qos_follow_ros2_conventions(rclpy_node):
    """Sensor inputs: rclpy's own qos_profile_sensor_data (best effort, volatile, depth 5); /tf and
    /tf_static as tf2_ros subscribes (depth 100, /tf_static transient_local); ~/map_snapshot a latched
    state (reliable, transient_local, depth 1)."""
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy, qos_profile_sensor_data

    from gs_mapping.nodes.mapper_node import MapperNode

    node, mapper = rclpy_node(MapperNode, "-p", "mapper.device:=cpu")
    subs = {s.topic_name: s.qos_profile for s in node.subscriptions}
    for topic in (COLOR, DEPTH, INFO):
        q = subs[topic]
        assert (q.depth, q.reliability, q.durability) == (
            qos_profile_sensor_data.depth,
            qos_profile_sensor_data.reliability,
            qos_profile_sensor_data.durability,
        )
    assert (subs["/tf"].depth, subs["/tf"].durability) == (100, DurabilityPolicy.VOLATILE)
    assert (subs["/tf_static"].depth, subs["/tf_static"].durability) == (
        100,
        DurabilityPolicy.TRANSIENT_LOCAL,
    )
    snap = mapper.pub_snapshot.qos_profile
    assert (snap.depth, snap.reliability, snap.durability) == (
        1,
        ReliabilityPolicy.RELIABLE,
        DurabilityPolicy.TRANSIENT_LOCAL,
    )


# ------------------------------------------------------------------------------------------------
# nodes.launch_support


def test_a_blank_launch_argument_is_not_given_and_a_given_one_is_trimmed():
    """given_overrides: 'an empty default means "not given"': `device:=" "` typed with a space is not
    an override either; ` cuda ` is the value 'cuda', `use_sim_time:=True` the bool True."""
    from gs_mapping.nodes.launch_support import given_overrides

    assert given_overrides({"mapper.device": "  ", "use_sim_time": " "}) == {}
    assert given_overrides({"mapper.device": " cuda ", "use_sim_time": " True"}) == {
        "mapper.device": "cuda",
        "use_sim_time": True,
    }


def test_rviz_config_of_a_nested_namespace_is_one_file_in_out_dir(tmp_path):
    """namespace:=/fleet/car_2 (a valid ROS namespace): RViz gets one file directly in the launch's
    temporary directory whose topics carry /fleet/car_2."""
    from gs_mapping.nodes.launch_support import rviz_config_for_namespace

    cfg = tmp_path / "in.rviz"
    cfg.write_text("      Value: /map_receiver_node/map_cloud\n      Value: /camera/image\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    path = rviz_config_for_namespace(cfg, "/fleet/car_2", out_dir)
    assert [p.name for p in out_dir.iterdir()] == [path.rsplit("/", 1)[1]]
    assert (
        open(path).read()
        == "      Value: /fleet/car_2/map_receiver_node/map_cloud\n      Value: /camera/image\n"
    )


def test_rviz_under_the_root_namespace_uses_the_config_itself(tmp_path):
    """namespace:=/ is ROS 2's root namespace (no namespace): RViz gets config/gs_mapping.rviz, no
    copy is written."""
    from gs_mapping.nodes.launch_support import rviz_config_for_namespace

    cfg = tmp_path / "in.rviz"
    cfg.write_text("Value: /map_receiver_node/map_cloud\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert rviz_config_for_namespace(cfg, "/", out_dir) == str(cfg)
    assert list(out_dir.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# runtime.replay: the bag clock and timers


def test_replay_clock_never_goes_back_for_an_older_stamp():
    """Replay docstring: the clock is the bag's and timers fire 'when the clock passes their due
    time'; a message stamped before the current time does not turn the clock back."""
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    got = []
    bus.subscribe("/x", lambda m: got.append(bus.now_ns))
    bus.inject("/x", "a", 5 * S)
    bus.inject("/x", "b", 3 * S)
    assert got == [5 * S, 5 * S] and bus.now_ns == 5 * S


def test_a_replay_timer_first_fires_one_period_after_the_first_tick_and_at_its_due_time():
    """rclpy's timers: the first call one period after creation, then every period; due exactly at
    a stamp means it fires at that stamp."""
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    bus.now_ns = 10 * S
    fired = []
    bus.context("n").create_timer(1.0, lambda: fired.append(bus.now_ns))
    bus.advance(10 * S)
    assert fired == []
    bus.advance(11 * S)
    assert fired == [11 * S]
    bus.advance(13 * S + 1)  # two periods passed: both calls, at the time they are noticed
    assert fired == [11 * S, 13 * S + 1, 13 * S + 1]


def test_replay_records_latched_outputs_as_transient_local_in_the_bag(tmp_path):
    """A latched output (~/map_snapshot, ~/map_cloud) is written to the output bag with its
    transient_local QoS, so `ros2 bag play` latches it again; a volatile one is not."""
    from gs_mapping.bag import BagReader, BagWriter
    from gs_mapping.nodes.context import LATCHED_QOS, RELIABLE_QOS
    from gs_mapping.runtime.replay import ReplayBus

    out = tmp_path / "out"
    with BagWriter(out) as writer:
        bus = ReplayBus(writer)
        ctx = bus.context("n")
        f = bus.factory
        ctx.create_publisher("~/state", "std_msgs/msg/String", LATCHED_QOS).publish(
            f.make("std_msgs/msg/String", data="s")
        )
        ctx.create_publisher("~/event", "std_msgs/msg/String", RELIABLE_QOS).publish(
            f.make("std_msgs/msg/String", data="e")
        )
    with BagReader(out) as reader:
        assert reader.topic("/n/state").latched is True
        assert reader.topic("/n/event").latched is False


# ------------------------------------------------------------------------------------------------
# cli: encode


def _cli(args, capsys):
    from gs_mapping.cli import main

    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_encode_takes_32_levels_and_refuses_33(tmp_path, capsys):
    """encode --help: a map's own levels are '2-32'; --levels 32 is the largest taken, 33 is one
    line and exit 2."""
    import json

    from gs_mapping.ply import save_ply

    save_ply(_small_map(200), tmp_path / "a.ply")
    rc, out, _ = _cli(["encode", str(tmp_path / "a.ply"), str(tmp_path / "a.gsd"), "--levels", "32"], capsys)
    assert rc == 0 and json.loads(out)["gaussians"] == 200
    rc, out, err = _cli(
        ["encode", str(tmp_path / "a.ply"), str(tmp_path / "b.gsd"), "--levels", "33"], capsys
    )
    assert rc == 2 and "--levels" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.gsd").exists()


def test_encode_relative_scales_the_position_step_with_the_scene(tmp_path, capsys):
    """--relative: 'position step relative to the scene's Gaussian sizes instead of metres': the
    same scene in centimetres (positions and sizes × 100) gets a step 100 times larger; without
    --relative the step is the preset's metres for both."""
    import json

    import numpy as np

    from gs_mapping.ply import save_ply

    g = _small_map(300)
    cm = g.copy()
    cm.update(cm.ids, means=g.means * 100, log_scales=g.log_scales + np.log(100.0))
    save_ply(g, tmp_path / "m.ply")
    save_ply(cm, tmp_path / "cm.ply")
    steps = {}
    for rel in (False, True):
        for name in ("m", "cm"):
            out_path = tmp_path / f"{name}{rel}.gsd"
            args = ["encode", str(tmp_path / f"{name}.ply"), str(out_path)] + (["--relative"] if rel else [])
            rc, out, _ = _cli(args, capsys)
            assert rc == 0
            steps[name, rel] = json.loads(out)["pos_step"]
    assert steps["m", False] == steps["cm", False]
    # (up to the PLY's float32 sizes and the step's own rounding: 100 ± 5 %, where ignoring it gives 1)
    assert steps["cm", True] == pytest.approx(100 * steps["m", True], rel=0.05)
    assert steps["m", True] != steps["m", False]


def test_export_to_anything_but_spz_is_one_line_and_writes_nothing(tmp_path, capsys):
    """export --help / README: export writes SPZ; `export a.ply b.ply` is refused (pointing at
    convert) before any work, not a PLY silently written by the wrong command."""
    from gs_mapping.ply import save_ply

    save_ply(_small_map(50), tmp_path / "a.ply")
    rc, _, err = _cli(["export", str(tmp_path / "a.ply"), str(tmp_path / "b.ply")], capsys)
    assert rc == 2 and "convert" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.ply").exists()


def test_apply_names_a_delta_given_twice_as_already_in_the_map(tmp_path, capsys):
    """apply follows the receiver's sequence rules: a delta repeated on the command line is a
    duplicate ('already in the map'), told apart from a gap; nothing is written."""
    from gs_mapping.ply import save_ply

    g = _small_map(100)
    b = g.copy()
    b.remove(b.ids[:10])
    save_ply(g, tmp_path / "a.ply")
    save_ply(b, tmp_path / "b.ply")
    t = lambda n: str(tmp_path / n)  # noqa: E731
    assert _cli(["encode", t("a.ply"), t("a.gsd")], capsys)[0] == 0
    assert _cli(["diff", t("a.gsd"), t("b.ply"), t("ab.gsd")], capsys)[0] == 0
    rc, _, err = _cli(["apply", t("a.gsd"), t("ab.gsd"), t("ab.gsd"), t("out.ply")], capsys)
    assert rc == 2 and "delta 2 is already in the map (at sequence 2)" in err
    assert not (tmp_path / "out.ply").exists()


def _lidar_mapper(stamp: int, **topics):
    """mapper_node on the replay bus taking a LiDAR cloud (/lidar/points) for depth, ``topics``
    set in mapper.topics, and the 32 x 24 camera 'cam' (fx = fy = 30, centre 16, 12) announced on
    INFO at ``stamp``."""
    import numpy as np

    from gs_mapping.messages import CameraIntrinsics, intrinsics_to_camera_info
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    for name, value in topics.items():
        setattr(cfg["mapper"].topics, name, value)
    cfg["mapper_node"].cloud_topic = "/lidar/points"
    node = MapperNode(bus.context("mapper_node"), cfg)
    K = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    info = intrinsics_to_camera_info(CameraIntrinsics(32, 24, K, frame_id="cam"), bus.factory, stamp_ns=stamp)
    bus.inject(INFO, info, stamp)
    return bus, node


def _points_per_pixel(z: float = 1.5):
    """One point per pixel centre of _lidar_mapper's camera at depth ``z``, in the camera's frame."""
    import numpy as np

    u, v = np.meshgrid(np.arange(32), np.arange(24))
    pts = np.zeros(u.size, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    pts["z"] = z
    pts["x"] = ((u.ravel() - 16) / 30.0) * z
    pts["y"] = ((v.ravel() - 12) / 30.0) * z
    return pts


def test_a_cloud_input_does_not_wait_for_a_depth_camera_info():
    """mapper.topics.depth_camera_info is for an unregistered depth image; with cloud_topic set the
    node does not subscribe to it, so a frame is made from colour + CameraInfo + cloud alone (a
    params file keeping a depth_camera_info from a depth setup must not stall the LiDAR one)."""
    import numpy as np
    from hostile_cases import tf_message

    from gs_mapping.messages import array_to_pointcloud2, numpy_to_image

    stamp = 1 * S
    bus, node = _lidar_mapper(stamp, depth_camera_info="/camera/depth/camera_info")
    f = bus.factory
    bus.inject("/tf_static", tf_message(f, 0, "map", "cam", 0.0), stamp)
    rgb = np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    bus.inject(COLOR, numpy_to_image(rgb, "rgb8", stamp, "cam", f), stamp)
    bus.inject("/lidar/points", array_to_pointcloud2(_points_per_pixel(), stamp, "cam", factory=f), stamp)
    assert not node.diag.rejected, node.diag.rejected
    assert node.mapper.stats.frames == 1
    assert not any("depth camera_info" in w for w in node.waiting_for())


# ------------------------------------------------------------------------------------------------
# cli: run


def test_run_refuses_a_zero_duration_before_starting_the_node(capsys):
    """`gs-mapping run --duration`: 'stop after this many seconds' — 0 is no run at all: one line,
    exit 2, nothing started."""
    rc, out, err = _cli(["run", "map_receiver_node", "--duration", "0"], capsys)
    assert rc == 2 and "--duration" in err and len(err.strip().splitlines()) == 1
    assert "ready" not in out


# ------------------------------------------------------------------------------------------------
# cli: params


def test_params_without_nodes_prints_every_nodes_sections_as_config_full_yaml(capsys):
    """`gs-mapping params`: 'default: all' nodes — the sections of config/full.yaml that nodes read
    (all but hd_train, the trainer's recipe), under /**: ros__parameters."""
    from pathlib import Path

    import yaml

    rc, out, _ = _cli(["params"], capsys)
    assert rc == 0
    printed = yaml.safe_load(out)["/**"]["ros__parameters"]
    full = Path(__file__).resolve().parents[1] / "config" / "full.yaml"
    expected = set(yaml.safe_load(full.read_text())["/**"]["ros__parameters"]) - {"hd_train"}
    assert set(printed) == expected


# ------------------------------------------------------------------------------------------------
# map_receiver_node


def test_map_cloud_is_in_the_senders_frame():
    """~/map_cloud's header.frame_id is the frame the map was sent in (the container's frame_id:
    the mapper's map_frame, e.g. 'odom'), so RViz places it there, not always in 'map'."""
    from gs_map_share.snapshot import encode_map
    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    MapReceiverNode(bus.context("map_receiver_node"), MapReceiverNode.load_config(None))
    clouds: list = []
    bus.subscribe("/map_receiver_node/map_cloud", clouds.append)
    data, _ = encode_map(_small_map(50), frame_id="odom")
    bus.inject("/mapper_node/map_snapshot", bytes_to_uint8_multiarray(data, bus.factory), S)
    bus.inject("/tick", None, 3 * S)
    assert len(clouds) == 1 and clouds[0].header.frame_id == "odom"


def test_a_cloud_is_placed_by_the_pose_at_its_own_stamp():
    """mapper_node, as `map` does: 'the depth/cloud pose at its own stamp'. The camera moves at 1 m/s
    along x; a cloud stamped 50 ms after the colour image was taken 5 cm further on, so its points
    (one per pixel centre at 1.5 m, in the camera's frame at the cloud's time) land one pixel to
    the right in the colour image (30 px/m · 0.05 m / 1.5 m · 30 = 1 px): column 0 stays empty.
    Placed by the colour stamp's pose they would fill every column."""
    import numpy as np
    from hostile_cases import tf_message

    from gs_mapping.messages import array_to_pointcloud2, numpy_to_image, pointcloud2_xyz_times

    stamp, late = 1 * S, 1 * S + 50_000_000
    bus, node = _lidar_mapper(stamp, sync_slop_s=0.1)
    f = bus.factory
    for t in range(8, 13):  # map -> cam: x = (t - 1 s) · 1 m/s
        bus.inject("/tf", tf_message(f, t * S // 10, "map", "cam", t / 10 - 1.0), t * S // 10)
    color = numpy_to_image(np.zeros((24, 32, 3), np.uint8), "rgb8", stamp, "cam", f)
    cloud = array_to_pointcloud2(_points_per_pixel(), late, "cam", factory=f)
    frame = node._frame(
        (color.header, np.zeros((24, 32, 3), np.uint8)), (cloud.header, pointcloud2_xyz_times(cloud)), stamp
    )
    depth = np.nan_to_num(np.asarray(frame.depth, np.float64))
    assert not depth[:, 0].any()
    assert np.allclose(depth[:, 1:], 1.5, atol=1e-3)
