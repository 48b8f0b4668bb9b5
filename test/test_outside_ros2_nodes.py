"""Outside review of issue 20 (ROS 2 for real): the nodes as a ROS 2 user starts and feeds them.

What it guards, with cases the rclpy suite (test_rclpy_runtime.py) does not have:

- parameter files as rcl reads them (``rcl_yaml_param_parser``'s README and ``parse.c``): keys that
  name one node by its fully qualified name, a namespace nesting node names, ``-r __ns:=`` /
  ``-r __node:=``, values typed by rcl (a ``5e-4`` is a DOUBLE: rcl tries ``strtol`` then ``strtod``),
  wrong types given with ``-p`` (one line, exit 2, as run_node's docstring promises);
- ``use_sim_time`` with and without /clock (ROS time stands still until /clock comes);
- ``ros2 param delete`` of a runtime parameter; shutdown while a map is being received (what
  rclpy's signal handler does: the context shut down) saves the map and exits 0;
- ROS 2's own parameters in a params file (``use_sim_time``, ``qos_overrides``) as the CLI reads it;
- live messages: a CameraInfo that changes size mid-stream, frame ids with a leading '/' or empty,
  an unsupported encoding — never fatal, and (issue 20: "logged once with the reason") one line;
  /tf served after the image of its stamp on hd_map_node (rclpy's executor order, as the suite
  already checks for mapper_node); a bag shorter than 5 s played with ``--loop``.

rclpy is Humble's pure-Python package with test/rclpy_standin.py under it, as in
test_rclpy_runtime.py; the CLI's own reader (``gs-mapping run --config``) is compared with rcl's
rules, which is what the README's "the same file the CLI reads" promises.
"""

from __future__ import annotations

import copy
import logging
import threading
import time

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# rclpy (real Python layer, stand-in C extension)


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.messages import RclpyFactory

    RclpyFactory._class.cache_clear()
    rclpy, standin, interfaces = rclpy_standin.install(get_typestore(Stores.ROS2_HUMBLE))
    yield rclpy, rclpy_standin
    RclpyFactory._class.cache_clear()
    rclpy_standin.uninstall(interfaces)


def _receiver(rclpy, *ros_args):
    """A map_receiver_node built by rclpy_runtime from a ``--ros-args`` command line."""
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import create_node

    context = rclpy.Context()
    rclpy.init(args=["map_receiver_node", "--ros-args", *ros_args], context=context)
    node, obj = create_node(MapReceiverNode, context)
    return context, node, obj


def _close(context, node, obj):
    from gs_mapping.runtime.rclpy_runtime import close_node

    context.try_shutdown()
    close_node(node, obj)


FLEET_YAML = """
/car1/map_receiver_node:
  ros__parameters:
    map_receiver_node: {min_opacity: 0.25}
/car2/map_receiver_node:
  ros__parameters:
    map_receiver_node: {min_opacity: 0.75}
/rx2:
  ros__parameters:
    map_receiver_node: {min_opacity: 0.5}
"""


@pytest.mark.parametrize(
    "remap, fqn, opacity, delta_topic",
    [
        ("__ns:=/car1", "/car1/map_receiver_node", 0.25, "/car1/mapper_node/map_delta"),
        ("__ns:=/car2", "/car2/map_receiver_node", 0.75, "/car2/mapper_node/map_delta"),
        ("__node:=rx2", "/rx2", 0.5, "/mapper_node/map_delta"),
        ("__ns:=/car3", "/car3/map_receiver_node", 0.05, "/car3/mapper_node/map_delta"),  # no key: default
    ],
)
def test_a_params_file_keyed_by_node_name_reaches_that_node_only(
    ros, tmp_path, remap, fqn, opacity, delta_topic
):
    """rcl's rule: a key is a node's fully qualified name (or /**); other nodes' keys are not ours,
    and the node's check for misspelt parameters must not trip on them."""
    rclpy, _ = ros
    f = tmp_path / "fleet.yaml"
    f.write_text(FLEET_YAML)
    context, node, obj = _receiver(rclpy, "--params-file", str(f), "-r", remap)
    try:
        assert node.get_fully_qualified_name() == fqn
        assert obj.cfg.min_opacity == opacity
        # relative default topics follow the namespace (ROS name resolution), whatever the node's name
        assert delta_topic in {s.topic_name for s in node.subscriptions}
    finally:
        _close(context, node, obj)


@pytest.mark.parametrize(
    "arg, name",
    [
        ("map_receiver_node.max_pending:=256.0", "max_pending"),  # a double for an INTEGER parameter
        ("map_receiver_node.save_path:=123", "save_path"),  # YAML-typed: 123 is an INTEGER, not a STRING
        ("map_receiver_node.min_opacity:=true", "min_opacity"),  # a bool for a double
        ("map_receiver_node.publish_rate_hz:=[1.0, 2.0]", "publish_rate_hz"),  # an array for a double
    ],
)
def test_a_wrongly_typed_minus_p_value_is_one_line_and_exit_2(ros, tmp_path, capsys, arg, name):
    """rclpy decides the type (static typing; ints accepted for floats by dynamic typing); the node's
    entry point turns the refusal into one line naming the parameter and status 2 (its docstring)."""
    rclpy, _ = ros
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import run_node

    assert run_node(MapReceiverNode, ["n", "--ros-args", "-p", arg], rclpy.Context()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and name in err[0], err


def test_use_sim_time_stands_still_without_clock_and_follows_it(ros):
    """ROS time under use_sim_time is /clock's: before the first /clock nothing time-driven happens
    (diagnostics timer), after it the node's stamps are /clock's values."""
    rclpy, _ = ros
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock

    context, node, obj = _receiver(
        rclpy, "-p", "use_sim_time:=true", "-p", "map_receiver_node.diagnostics_period_s:=0.1"
    )
    try:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        probe = rclpy.create_node("probe", context=context)
        executor.add_node(probe)
        got: list = []
        probe.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
        clock = probe.create_publisher(Clock, "/clock", 10)

        def spin(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.02)

        spin(0.6)  # six diagnostics periods of wall time, no /clock
        assert got == [] and node.get_clock().now().nanoseconds == 0
        # (between two periods: rcl's timer fires twice where a jump lands exactly on one, its
        # catch-up making the next call time equal to now, which is ready; timer.c rcl_timer_call)
        for k, sec in enumerate((42, 43), 1):
            clock.publish(Clock(clock=Time(sec=sec, nanosec=50_000_000)))
            end = time.monotonic() + 10  # (on a loaded machine the timer and the probe need a while)
            while len(got) < k and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.02)
            spin(0.1)  # (a second report at the same sim time would show here)
        assert [m.header.stamp.sec for m in got] == [42, 43]
        probe.destroy_node()
    finally:
        _close(context, node, obj)


def test_deleting_a_runtime_parameter_is_refused_and_the_value_kept(ros):
    """``ros2 param delete`` sends NOT_SET; rclpy lets a dynamically typed parameter through to the
    node's callback, which must refuse it (the node keeps using its value)."""
    rclpy, _ = ros
    from rclpy.parameter import Parameter

    context, node, obj = _receiver(rclpy, "-p", "map_receiver_node.min_opacity:=0.3")
    try:
        (res,) = node.set_parameters([Parameter("map_receiver_node.min_opacity", Parameter.Type.NOT_SET)])
        assert not res.successful and "min_opacity" in res.reason
        assert obj.cfg.min_opacity == 0.3 and node.get_parameter("map_receiver_node.min_opacity").value == 0.3
    finally:
        _close(context, node, obj)


def test_shutdown_right_after_a_map_arrives_saves_that_map_and_exits_0(ros, tmp_path):
    """rclpy's SIGINT/SIGTERM handler shuts the context down; the node then saves what it holds and
    run_node returns 0. The saved PLY is compared with the snapshot decoded independently."""
    rclpy, standin = ros
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import UInt8MultiArray
    from synthetic_maps import synthetic_map

    from gs_map_share.snapshot import decode_map, encode_map
    from gs_mapping.messages import RclpyFactory, bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.ply import load_ply
    from gs_mapping.runtime.rclpy_runtime import run_node

    save = tmp_path / "rx.ply"
    context, result = rclpy.Context(), []
    args = ["n", "--ros-args", "-p", f"map_receiver_node.save_path:={save}"]
    # (this run's subscription: a node an earlier test left undestroyed on the process-wide bus
    # would otherwise be watched instead, and the shutdown came before this node had the map)
    before = {id(s) for s in standin.BUS.subscriptions}
    t = threading.Thread(target=lambda: result.append(run_node(MapReceiverNode, args, context)))
    t.start()

    def live_sub():
        return [
            s
            for s in standin.BUS.subscriptions
            if s.topic == "/mapper_node/map_snapshot" and not s.destroyed and id(s) not in before
        ]

    end = time.monotonic() + 20
    while not live_sub():
        assert time.monotonic() < end and t.is_alive()
        time.sleep(0.01)
    data, _ = encode_map(synthetic_map(300, 0, seed=5))
    pub_node = rclpy.create_node("pub", context=context)
    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub = pub_node.create_publisher(UInt8MultiArray, "/mapper_node/map_snapshot", qos)
    pub.publish(bytes_to_uint8_multiarray(data, RclpyFactory()))
    sub = live_sub()[0]
    while sub.queue:  # taken by the executor: its callback runs (or ran) now
        assert time.monotonic() < end
        time.sleep(0.001)
    context.try_shutdown()
    t.join(30)
    pub_node.destroy_node()
    assert result == [0]
    saved, sent = load_ply(save), decode_map(data)
    assert len(saved) == len(sent) == 300
    order = lambda m: np.lexsort(np.asarray(m.means).T)  # noqa: E731 - the same Gaussians, any order
    np.testing.assert_allclose(
        np.asarray(saved.means)[order(saved)], np.asarray(sent.means)[order(sent)], atol=1e-5
    )


# ------------------------------------------------------------------------------------------------
# the CLI's parameter-file reader against rcl's rules (README: "the same file the CLI reads")


def test_cli_reads_an_exponent_float_as_rcl_does(tmp_path):
    from gs_mapping.nodes.mapper_node import MapperNode

    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    mapper: {optim: {lr_means: 5e-4}}\n")
    assert MapperNode.load_config(str(f))["mapper"].optim.lr_means == 0.0005


def test_cli_applies_only_the_keys_of_the_node_it_runs(tmp_path):
    from gs_mapping.nodes.mapper_node import MapperNode

    f = tmp_path / "fleet.yaml"
    f.write_text(
        "/car1/mapper_node:\n  ros__parameters:\n    mapper_node: {map_id: 11}\n"
        "/car2/mapper_node:\n  ros__parameters:\n    mapper_node: {map_id: 22}\n"
    )
    # the node the CLI runs by default is /mapper_node: neither key names it (rcl: defaults)
    assert MapperNode.load_config(str(f))["mapper_node"].map_id == 1
    # `gs-mapping run mapper_node --namespace /car2` is /car2/mapper_node: that key alone
    assert MapperNode.load_config(str(f), namespace="/car2")["mapper_node"].map_id == 22
    assert MapperNode.load_config(str(f), namespace="car1")["mapper_node"].map_id == 11
    # rclpy's wildcards: /* one name token, /** any number (none included); later keys win
    f.write_text(
        "/**/mapper_node:\n  ros__parameters:\n    mapper_node: {map_id: 7, quality: 3}\n"
        "/*/mapper_node:\n  ros__parameters:\n    mapper_node: {map_id: 8}\n"
    )
    at_root = MapperNode.load_config(str(f))["mapper_node"]
    assert (at_root.map_id, at_root.quality) == (7, 3)
    in_ns = MapperNode.load_config(str(f), namespace="/fleet")["mapper_node"]
    assert (in_ns.map_id, in_ns.quality) == (8, 3)
    assert MapperNode.load_config(str(f), namespace="/fleet/a")["mapper_node"].map_id == 7
    assert MapperNode.load_config(str(f), name="other")["mapper_node"].map_id == 1


def test_cli_accepts_rcl_namespace_nesting(tmp_path):
    from gs_mapping.nodes.mapper_node import MapperNode

    f = tmp_path / "nested.yaml"
    f.write_text("/car1:\n  mapper_node:\n    ros__parameters:\n      mapper_node: {quality: 4}\n")
    MapperNode.load_config(str(f))  # valid for rcl; not this node's key, so defaults


@pytest.mark.parametrize(
    "ros_own",
    ["use_sim_time: true", "qos_overrides: {/tf: {subscription: {depth: 100}}}"],
)
def test_cli_accepts_a_params_file_with_ros2s_own_parameters(tmp_path, ros_own):
    from gs_mapping.nodes.mapper_node import MapperNode

    f = tmp_path / "p.yaml"
    f.write_text(f"/**:\n  ros__parameters:\n    {ros_own}\n    mapper_node: {{quality: 4}}\n")
    assert MapperNode.load_config(str(f))["mapper_node"].quality == 4


def test_standin_types_minus_p_values_as_rcl_does():
    import rclpy_standin

    (rule,) = rclpy_standin.parse_ros_args(["--ros-args", "-p", "a.b:=5e-4"])["params"]
    assert isinstance(rule.value, float) and rule.value == 0.0005


# ------------------------------------------------------------------------------------------------
# live messages on mapper_node (the same node object as under rclpy, on the replay bus)


@pytest.fixture(scope="module")
def drive_msgs(tmp_path_factory):
    from gs_mapping.bag import BagReader
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("outside19") / "world"
    drive = Drive.make(5, 6, "front", (128, 72))
    write_bag(drive, out, progress=False)
    with BagReader(out) as bag:
        return drive, list(bag.messages())


def _mapper(tmp_path):
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    f = tmp_path / "m.yaml"
    f.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      device: cpu\n      max_gaussians: 20000\n"
        "      seeding: {stride: 8}\n      optim: {iterations: 1, first_iterations: 2}\n"
        "      keyframe: {max_gap: 4}\n      topics: {color: /cameras/front/image_raw, "
        "depth: /cameras/front/depth, camera_info: /cameras/front/camera_info}\n"
    )
    bus = ReplayBus()
    return bus, MapperNode(bus.context("mapper_node"), MapperNode.load_config(str(f)))


def _feed(bus, node, msgs, edit=lambda topic, stamp, msg: msg):
    t = node.cfg.topics
    for topic, stamp, msg in msgs:
        if topic in (t.color, t.depth, t.camera_info, "/tf", "/tf_static"):
            bus.inject(topic, edit(topic, stamp, msg), stamp)


def _halved(msg):
    """An Image at half resolution (every other pixel), as a driver reconfigured to bin by 2 sends."""
    m = copy.deepcopy(msg)
    bpp = m.step // m.width
    a = np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.step)[:, : m.width * bpp]
    a = np.ascontiguousarray(a.reshape(m.height, m.width, bpp)[::2, ::2])
    m.height, m.width, m.step = a.shape[0], a.shape[1], a.shape[1] * bpp
    m.data = np.frombuffer(a.tobytes(), np.uint8)
    return m


def test_camera_info_changing_size_mid_stream_keeps_mapping(drive_msgs, tmp_path):
    """The second half of the drive at half resolution (CameraInfo K halved, images subsampled): the
    node follows the new CameraInfo; every frame is used, none rejected."""
    _, msgs = drive_msgs
    bus, node = _mapper(tmp_path)
    t = node.cfg.topics
    half = sorted({s for tp, s, _ in msgs if tp == t.color})[3]

    def edit(topic, stamp, msg):
        if stamp < half:
            return msg
        if topic in (t.color, t.depth):
            return _halved(msg)
        if topic == t.camera_info:
            m = copy.deepcopy(msg)
            m.width, m.height = m.width // 2, m.height // 2
            k, p = np.array(m.k, float), np.array(m.p, float)
            k[[0, 2, 4, 5]] /= 2  # fx, cx, fy, cy (pixel-centre offsets ignored: a 0.25 px shift)
            p[[0, 2, 5, 6]] /= 2
            m.k, m.p = k, p
            return m
        return msg

    _feed(bus, node, msgs, edit)
    d = node.diag.summary()
    assert node.mapper.stats.frames == 6 and not d["rejected"], d


@pytest.mark.parametrize("frame", ["/{}", ""])
def test_image_frame_id_with_a_leading_slash_or_empty_maps_at_the_same_poses(drive_msgs, tmp_path, frame):
    """tf2 strips a leading '/' (a ROS 1 habit); an empty frame_id falls back to CameraInfo's. The
    poses used are the world's, as with the plain frame id."""
    drive, msgs = drive_msgs
    bus, node = _mapper(tmp_path)
    t = node.cfg.topics

    def edit(topic, stamp, msg):
        if topic in (t.color, t.depth):
            msg = copy.deepcopy(msg)
            msg.header.frame_id = frame.format(msg.header.frame_id)
        return msg

    _feed(bus, node, msgs, edit)
    assert node.mapper.stats.frames == 6 and not node.diag.summary()["rejected"]
    cam = drive.cameras[0]
    np.testing.assert_allclose(
        node.poses.lookup("/" + cam.frame_id, drive.stamp_ns(5)), drive.pose(5) @ cam.T_map_cam, atol=1e-5
    )


def _unsupported_then_good(drive_msgs, tmp_path, caplog):
    _, msgs = drive_msgs
    bus, node = _mapper(tmp_path)
    t = node.cfg.topics
    switch = sorted({s for tp, s, _ in msgs if tp == t.color})[4]

    def edit(topic, stamp, msg):
        if topic == t.color and stamp < switch:
            msg = copy.deepcopy(msg)
            msg.encoding = "yuv420"  # a real driver's name; not one this node decodes
        return msg

    with caplog.at_level(logging.WARNING):
        _feed(bus, node, msgs, edit)
    lines = [r.getMessage() for r in caplog.records if "yuv420" in r.getMessage()]
    return node, lines


def test_unsupported_encoding_is_counted_and_the_node_carries_on(drive_msgs, tmp_path, caplog):
    node, lines = _unsupported_then_good(drive_msgs, tmp_path, caplog)
    assert node.diag.rejected[node.cfg.topics.color] == 4  # the four yuv420 frames
    assert node.mapper.stats.frames == 2  # the good frames after them are mapped
    assert lines and all("unsupported encoding 'yuv420'" in line for line in lines)


def test_the_same_rejection_on_every_frame_is_one_warning_line(drive_msgs, tmp_path, caplog):
    _, lines = _unsupported_then_good(drive_msgs, tmp_path, caplog)
    assert len(lines) == 1, lines


# ------------------------------------------------------------------------------------------------
# hd_map_node: /tf served after the image of the same stamp


@pytest.fixture(scope="module")
def hd_msgs(tmp_path_factory):
    from gs_mapping.bag import BagReader
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("outside19hd") / "world"
    write_bag(Drive.make(3, 6, "front", (256, 144)), out, progress=False)
    with BagReader(out) as bag:
        return list(bag.messages())


def _hd_lane_deltas(msgs, **node):
    """The real HDMapNode (config ``node``) fed ``msgs`` in their order; the node and its lane
    containers."""
    from test_guards_survivors22 import _node

    hd, bus, out = _node(**node)
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    return hd, out["deltas"]


def _tf_after_images(msgs):
    """``msgs`` as rclpy's executor serves a busy node: at each stamp the images and camera_info
    (created first) before the /tf of that stamp."""
    rank = {"/tf_static": 0, "/tf": 2}
    return sorted(msgs, key=lambda m: (m[0] != "/tf_static", m[1], rank.get(m[0], 1)))


def test_hd_lanes_are_fused_when_tf_is_served_after_the_image(hd_msgs):
    """rclpy's executor takes ready subscriptions in creation order: a busy hd_map_node (a CPU
    prediction takes longer than a frame) finds image and /tf of the same stamp queued together and
    gets the image first. The lane map must still be fed (as in bag order)."""
    _, in_order = _hd_lane_deltas(hd_msgs)
    hd, late_tf = _hd_lane_deltas(_tf_after_images(hd_msgs))
    assert len(in_order) == 6  # (the reference: every frame fused in bag order)
    assert "lane_map_no_map_pose" not in hd.diag.dropped, dict(hd.diag.dropped)
    assert len(late_tf) == len(in_order)


def test_a_short_bag_played_in_a_loop_is_mapped_again(drive_msgs, tmp_path):
    """base.py: 'a bag played with --loop, a simulator reset: the node starts its stamps over instead
    of dropping every later frame'. The world drive lasts 0.5 s; its second pass must be mapped."""
    _, msgs = drive_msgs
    bus, node = _mapper(tmp_path)
    _feed(bus, node, msgs)
    assert node.mapper.stats.frames == 6
    stamps = sorted({s for tp, s, _ in msgs if tp == node.cfg.topics.color})
    later = stamps[-1] - stamps[0] + 10**8  # the bus's clock goes on; the messages' stamps go back
    t = node.cfg.topics
    for topic, stamp, msg in msgs:
        if topic in (t.color, t.depth, t.camera_info, "/tf"):
            bus.inject(topic, msg, stamp + later)
    # the first frame of the second pass is taken for a late message; the next one shows that
    # time went back (base.py OLDER_IN_A_ROW), and from it on the pass is mapped
    assert node.mapper.stats.frames == 11, dict(node.diag.dropped)
