"""Outside review of issue 20 (ROS 2 for real): QoS as real publishers offer it and real consumers
request it.

What it guards, with cases the suite does not have (test_guards_survivors20 checks the profiles our
subscriptions declare; nothing checked them against what the other side of a ROS 2 graph uses):

- the ROS 2 QoS compatibility rules (docs.ros.org, "Quality of Service settings", table
  "QoS compatibilities": a RELIABLE request does not match a BEST_EFFORT offer, a TRANSIENT_LOCAL
  request does not match a VOLATILE offer; everything else matches) applied to every endpoint of the
  four nodes as rclpy creates them: a camera driver publishing sensor data best-effort (or
  reliable, as usb_cam's default), tf2_ros' broadcasters, RViz's default subscription, the shipped
  ``config/gs_mapping.rviz`` displays, and the nodes' own wiring to each other;
- ``gs-mapping play`` ("feeds a bag, like ros2 bag play", README) with real Cyclone DDS matching:
  rosbag2's player "attempts to preserve the policy originally offered by the topic" (ROS 2 docs,
  "Overriding QoS Policies For Recording And Playback"), i.e. the bag's ``offered_qos_profiles``;
  readers in this process request what ``ros2 topic echo --qos-reliability reliable``, RViz's
  displays and our own map_receiver_node request, and Cyclone decides whether they match;
- the DDS runtime meeting an offer it cannot match says so, as rclpy's default incompatible-QoS
  event callback does (rclpy/qos_event.py).

rclpy is Humble's pure-Python package with test/rclpy_standin.py under it (as in
test_rclpy_runtime.py); the compatibility rule here is written from the ROS 2 table, not taken from
the stand-in. The DDS part is real Cyclone DDS on loopback; the player is the real CLI process.
"""

# no `from __future__ import annotations`: Cyclone resolves IdlStruct annotations at run time

import dataclasses
import functools
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------------
# The ROS 2 compatibility table, written down independently (docs.ros.org "QoS compatibilities")

R, BE = "reliable", "best_effort"
V, TL = "volatile", "transient_local"


def compatible(offered: tuple[str, str], requested: tuple[str, str]) -> bool:
    """(reliability, durability) of a publisher vs a subscription, by the ROS 2 table."""
    (o_rel, o_dur), (r_rel, r_dur) = offered, requested
    if r_rel == R and o_rel == BE:
        return False
    return not (r_dur == TL and o_dur == V)


def test_the_table_as_written():
    """The four reliability and four durability cells of the ROS 2 docs table."""
    assert compatible((R, V), (BE, V)) and compatible((BE, V), (BE, V)) and compatible((R, V), (R, V))
    assert not compatible((BE, V), (R, V))
    assert compatible((R, TL), (R, V)) and compatible((R, TL), (R, TL)) and compatible((R, V), (R, V))
    assert not compatible((R, V), (R, TL))


# ------------------------------------------------------------------------------------------------
# The four nodes under rclpy (real Python layer, stand-in C extension)


@pytest.fixture(scope="module")
def ros():
    import rclpy_standin
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.messages import RclpyFactory

    RclpyFactory._class.cache_clear()
    rclpy, _, interfaces = rclpy_standin.install(get_typestore(Stores.ROS2_HUMBLE))
    yield rclpy
    RclpyFactory._class.cache_clear()
    rclpy_standin.uninstall(interfaces)


def _kind(profile) -> tuple[str, str]:
    """rclpy QoSProfile -> (reliability, durability) in the table's words."""
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    rel = {ReliabilityPolicy.RELIABLE: R, ReliabilityPolicy.BEST_EFFORT: BE}[profile.reliability]
    dur = {DurabilityPolicy.VOLATILE: V, DurabilityPolicy.TRANSIENT_LOCAL: TL}[profile.durability]
    return rel, dur


@pytest.fixture(scope="module")
def endpoints(ros, tmp_path_factory):
    """{node: (subscriptions {topic: kind}, publishers {topic: kind})} for the four nodes as rclpy
    built them (rclpy's own Subscription/Publisher objects and their qos_profile)."""
    from gs_mapping.nodes.registry import NODES, node_class
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    tmp = tmp_path_factory.mktemp("qos_nodes")
    extra = {
        "mapper_node": ["-p", "mapper.device:=cpu"],
        "hd_map_node": ["-p", "hd_map_node.device:=cpu"],
        "map_server_node": ["-p", f"map_server_node.store_path:={tmp / 'fleet.sqlite3'}"],
    }
    out = {}
    for name in NODES:
        context = ros.Context()
        ros.init(args=[name, "--ros-args", *extra.get(name, [])], context=context)
        node, obj = create_node(node_class(name), context)
        try:
            subs = {s.topic_name: _kind(s.qos_profile) for s in node.subscriptions}
            pubs = {p.topic_name: _kind(p.qos_profile) for p in node.publishers}
        finally:
            context.try_shutdown()
            close_node(node, obj)
        out[name] = (subs, pubs)
    return out


# What real producers offer (their own defaults):
CAMERA_DRIVERS = {
    "sensor data (realsense2_camera, zed, most drivers)": (BE, V),  # rmw qos_profile_sensor_data
    "default QoS (usb_cam, image_publisher)": (R, V),  # rmw qos_profile_default
}
TF_BROADCASTER = (R, V)  # tf2_ros::TransformBroadcaster: DynamicBroadcasterQoS
STATIC_BROADCASTER = (R, TL)  # tf2_ros::StaticTransformBroadcaster: StaticBroadcasterQoS
RVIZ_DEFAULT = (R, V)  # rviz_common's default display QoS (depth 5, reliable, volatile)


@pytest.mark.parametrize("node", ["mapper_node", "hd_map_node"])
@pytest.mark.parametrize("driver", sorted(CAMERA_DRIVERS))
def test_camera_topics_accept_what_camera_drivers_offer(endpoints, node, driver):
    """A sensor subscription must hear a driver whatever reliability it publishes with: only a
    best-effort request matches both (a reliable one would hear nothing from realsense2_camera)."""
    subs, _ = endpoints[node]
    sensor = {t: k for t, k in subs.items() if "camera" in t or "image" in t or "depth" in t or "color" in t}
    assert sensor, f"{node}: no camera subscription found in {sorted(subs)}"
    for topic, requested in sensor.items():
        assert compatible(CAMERA_DRIVERS[driver], requested), (topic, requested, driver)


@pytest.mark.parametrize("node", ["mapper_node", "hd_map_node"])
def test_tf_topics_accept_tf2_broadcasters(endpoints, node):
    """/tf from a TransformBroadcaster, /tf_static from a StaticTransformBroadcaster (or
    `ros2 run tf2_ros static_transform_publisher`), as tf2_ros' own listener takes them."""
    subs, _ = endpoints[node]
    assert compatible(TF_BROADCASTER, subs["/tf"])
    assert compatible(STATIC_BROADCASTER, subs["/tf_static"])


def test_every_publisher_reaches_rviz_and_topic_echo_defaults(endpoints):
    """RViz's default display QoS (reliable, volatile) and `ros2 topic echo` with
    `--qos-reliability reliable` must hear every topic we publish; a best-effort one hears all."""
    for node, (_, pubs) in endpoints.items():
        for topic, offered in pubs.items():
            if topic.startswith("/rosout") or topic.endswith("parameter_events"):
                continue  # rclpy's own
            assert compatible(offered, RVIZ_DEFAULT), (node, topic, offered)
            assert compatible(offered, (BE, V)), (node, topic, offered)


def test_the_shipped_rviz_displays_match_our_publishers(endpoints):
    """config/gs_mapping.rviz requests per display (e.g. the map cloud transient-local, depth 1):
    each display on one of our topics must match the QoS the node publishes it with."""
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "gs_mapping.rviz").read_text())
    offered = {t: k for _, pubs in endpoints.values() for t, k in pubs.items()}
    words = {"Reliable": R, "Best Effort": BE, "Volatile": V, "Transient Local": TL}
    checked = 0
    for display in cfg["Visualization Manager"]["Displays"]:
        topic = display.get("Topic", {})
        if topic.get("Value") in offered:
            requested = (words[topic["Reliability Policy"]], words[topic["Durability Policy"]])
            assert compatible(offered[topic["Value"]], requested), (display["Name"], requested)
            checked += 1
    assert checked >= 2  # the predicted lanes and the map cloud


def test_our_nodes_subscriptions_match_the_publishers_of_the_node_they_listen_to(endpoints):
    """The pipeline's own wiring (mapper -> receiver / server, server -> receiver): every
    subscription whose topic one of our nodes publishes must match that publisher."""
    offered = {t: (n, k) for n, (_, pubs) in endpoints.items() for t, k in pubs.items()}
    pairs = 0
    for node, (subs, _) in endpoints.items():
        for topic, requested in subs.items():
            if topic in offered and offered[topic][0] != node:
                assert compatible(offered[topic][1], requested), (node, topic, offered[topic])
                pairs += 1
    assert pairs >= 2  # the receiver's delta and snapshot subscriptions on the mapper's topics


# ------------------------------------------------------------------------------------------------
# gs-mapping play on real Cyclone DDS, readers as ROS 2 tools and our receiver request


DOMAIN = 73  # not used by the other DDS tests


@functools.cache
def _string_type():
    """std_msgs/msg/String as rmw_cyclonedds names it, written here (not our dds_types)."""
    from cyclonedds.idl import IdlStruct

    @dataclasses.dataclass
    class String_(IdlStruct, typename="std_msgs::msg::dds_::String_"):
        data: str

    return String_


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    """Play a hand-built bag once (real CLI process) while this process reads it with Cyclone:
    a RELIABLE and a BEST_EFFORT reader on a topic recorded reliable, and Cyclone's built-in
    DCPSPublication topic (what the player's writers offer)."""
    pytest.importorskip("cyclonedds")
    from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
    from cyclonedds.core import Policy, Qos
    from cyclonedds.domain import Domain, DomainParticipant
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic
    from cyclonedds.util import duration

    from gs_mapping.bag import BagWriter, default_typestore
    from gs_mapping.runtime.dds import LOOPBACK_CONFIG

    bag = tmp_path_factory.mktemp("qos_play") / "bag"
    ts = default_typestore()
    S = ts.types["std_msgs/msg/String"]
    MA = ts.types["visualization_msgs/msg/MarkerArray"]
    with BagWriter(bag) as b:  # recorded as `ros2 bag record` stores a reliable / latched offer
        b.add_topic("/gs_x29/chatter", "std_msgs/msg/String")
        b.add_topic("/gs_x29/state", "std_msgs/msg/String", latched=True)
        b.add_topic("/ground_truth/lanes", "visualization_msgs/msg/MarkerArray")
        b.write("/gs_x29/state", 1_000_000_000, S(data="state"))
        for i in range(5):
            b.write("/gs_x29/chatter", 1_000_000_000 + i * 10_000_000, S(data=f"m{i}"))
            b.write("/ground_truth/lanes", 1_000_000_000 + i * 10_000_000, MA(markers=[]))

    from rosbags.highlevel import AnyReader

    recorded = {}  # the offers the bag holds, read by rosbags (independent of our reader)
    with AnyReader([bag]) as r:
        for c in r.connections:
            (q,) = c.ext.offered_qos_profiles
            recorded[c.topic] = (
                R if q.reliability.name == "RELIABLE" else BE,
                TL if q.durability.name == "TRANSIENT_LOCAL" else V,
            )

    domain = Domain(DOMAIN, LOOPBACK_CONFIG)
    dp = DomainParticipant(DOMAIN)
    topic = Topic(dp, "rt/gs_x29/chatter", _string_type())
    xcdr1 = Policy.DataRepresentation(use_cdrv0_representation=True)  # as rmw_cyclonedds
    readers = {
        # `ros2 topic echo --qos-reliability reliable`, RViz's default, and map_receiver_node's
        # delta subscription (reliable, keep-last 100) all request this
        R: DataReader(
            dp,
            topic,
            qos=Qos(
                Policy.Reliability.Reliable(duration(infinite=True)), Policy.History.KeepLast(100), xcdr1
            ),
        ),
        BE: DataReader(
            dp, topic, qos=Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(100), xcdr1)
        ),
    }
    pubs = BuiltinDataReader(dp, BuiltinTopicDcpsPublication)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "gs_mapping", "play", str(bag), "--domain-id", str(DOMAIN)]
    proc = subprocess.Popen(
        # (its other topics have no reader: it waits all of it; 5 s lets discovery finish on a
        # loaded 2-core machine, where 1 s sometimes sent before the best-effort reader matched)
        [*cmd, "--wait-for-subscribers", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    offers: dict[str, tuple[str, str]] = {}
    deadline = time.monotonic() + 60  # a hung player fails the test instead of the suite's timeout
    while proc.poll() is None and time.monotonic() < deadline:
        for s in pubs.take(N=64):
            if getattr(s, "topic_name", None) and s.topic_name.startswith("rt/"):
                rel = R if isinstance(s.qos[Policy.Reliability], Policy.Reliability.Reliable) else BE
                dur = TL if s.qos[Policy.Durability] == Policy.Durability.TransientLocal else V
                offers[s.topic_name[2:]] = (rel, dur)
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate(timeout=30)
    time.sleep(0.2)
    got = {k: [m.data for m in rd.take(N=100)] for k, rd in readers.items()}
    yield {"rc": proc.returncode, "out": out, "err": err, "got": got, "offers": offers, "recorded": recorded}
    del readers, pubs, topic, dp, domain


def test_play_runs_and_a_best_effort_reader_gets_every_message(played):
    """The player itself works: exit 0, all 11 messages sent, a best-effort reader has the five."""
    assert played["rc"] == 0, played["err"]
    assert "played 11 messages" in played["out"]
    assert played["got"][BE] == [f"m{i}" for i in range(5)]


def test_play_keeps_the_recorded_durability(played):
    """A latched recording is re-offered transient-local (late joiners get it), a volatile one
    volatile: rosbag2's rule, and what bag.py's docstring promises ("re-latches them")."""
    assert set(played["offers"]) == set(played["recorded"])
    for topic, (_, dur) in played["recorded"].items():
        assert played["offers"][topic][1] == dur, topic


def test_play_offers_the_recorded_reliability(played):
    for topic, (rel, _) in played["recorded"].items():
        assert played["offers"][topic][0] == rel, topic


def test_a_reliable_reader_gets_a_reliably_recorded_topic(played):
    assert played["got"][R] == [f"m{i}" for i in range(5)]


def test_the_shipped_rviz_ground_truth_display_matches_play(played):
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "gs_mapping.rviz").read_text())
    words = {"Reliable": R, "Best Effort": BE, "Volatile": V, "Transient Local": TL}
    (display,) = [
        d
        for d in cfg["Visualization Manager"]["Displays"]
        if d.get("Topic", {}).get("Value") == "/ground_truth/lanes"
    ]
    t = display["Topic"]
    requested = (words[t["Reliability Policy"]], words[t["Durability Policy"]])
    assert compatible(played["offers"]["/ground_truth/lanes"], requested)


def test_the_dds_runtime_says_so_when_a_publisher_offers_an_incompatible_qos(caplog):
    """rclpy's SubscriptionEventCallbacks (use_default_callbacks=True) log "New publisher
    discovered on topic ..., offering incompatible QoS. No messages will be received from it." A
    node on the DDS runtime meeting a best-effort writer with its reliable subscription (the
    receiver's deltas) should say so too: otherwise a user sees no data and no reason."""
    pytest.importorskip("cyclonedds")
    from cyclonedds.core import Policy, Qos
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic

    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.dds import DdsContext

    domain = DOMAIN + 1
    ctx = DdsContext("x29_rx", domain_id=domain)
    got, control = [], []
    ctx.create_subscription("/gs_x29/be", "std_msgs/msg/String", QoS(reliable=True, depth=100), got.append)
    # a best-effort subscription beside it: proof that the writer was discovered and delivers
    ctx.create_subscription("/gs_x29/be", "std_msgs/msg/String", QoS(reliable=False, depth=5), control.append)
    dp = DomainParticipant(domain)
    xcdr1 = Policy.DataRepresentation(use_cdrv0_representation=True)
    writer = DataWriter(
        dp, Topic(dp, "rt/gs_x29/be", _string_type()), qos=Qos(Policy.Reliability.BestEffort, xcdr1)
    )
    try:
        with caplog.at_level(logging.DEBUG):
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                writer.write(_string_type()(data="x"))
                ctx.spin_once(0.05)
        assert control and not got  # the DDS rule: no match (what the warning would be about)
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("/gs_x29/be" in m and "incompatible" in m.lower() for m in said), said
        # the policy named by its DDS id (11: RELIABILITY), as rclpy's callback names it
        assert any("Last incompatible policy: RELIABILITY" in m for m in said), said
    finally:
        ctx.close()
        del writer, dp


def test_a_writer_of_another_data_representation_is_named_as_cyclone_names_it(caplog):
    """rmw_cyclonedds offers XCDR1; a writer offering only XCDR2 never matches, and Cyclone's
    incompatible-QoS status names the policy by its id (25: DATA_REPRESENTATION): the warning names
    it, not 'unknown'."""
    pytest.importorskip("cyclonedds")
    from cyclonedds.core import Policy, Qos
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic

    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.dds import DdsContext

    domain = DOMAIN + 2
    ctx = DdsContext("x29_dr", domain_id=domain)
    got = []
    ctx.create_subscription("/gs_x29/dr", "std_msgs/msg/String", QoS(reliable=True, depth=10), got.append)
    dp = DomainParticipant(domain)
    xcdr2 = Qos(Policy.DataRepresentation(use_xcdrv2_representation=True))
    writer = DataWriter(dp, Topic(dp, "rt/gs_x29/dr", _string_type()), qos=xcdr2)
    try:
        with caplog.at_level(logging.WARNING):
            end = time.monotonic() + 2.0
            while time.monotonic() < end and not caplog.records:
                writer.write(_string_type()(data="x"))
                ctx.spin_once(0.05)
        said = [r.getMessage() for r in caplog.records]
        assert not got
        assert any("Last incompatible policy: DATA_REPRESENTATION" in m for m in said), said
    finally:
        ctx.close()
        del writer, dp


# ------------------------------------------------------------------------------------------------
# Bad input as a real camera sends it: depth in the wrong unit on every frame (mapper_node, the same
# node object as under rclpy, on the replay bus)


def _millimetres(msg):
    """A 32FC1 depth Image (metres by REP 118) scaled x1000: a driver's depth scale left at 16UC1's."""
    import copy

    import numpy as np

    assert msg.encoding == "32FC1"
    m = copy.deepcopy(msg)
    m.data = np.frombuffer((np.frombuffer(bytes(m.data), np.float32) * 1000).tobytes(), np.uint8)
    return m


@pytest.fixture(scope="module")
def world_msgs(tmp_path_factory):
    """The driving world's six frames (front camera, 128x72) as the bag holds them, and the types."""
    from gs_mapping.bag import BagReader
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    tmp = tmp_path_factory.mktemp("qos_world")
    write_bag(Drive.make(5, 6, "front", (128, 72)), tmp / "world", progress=False)
    with BagReader(tmp / "world") as bag:
        return list(bag.messages()), {t.name: t.type for t in bag.topics}


@pytest.fixture(scope="module")
def mm_depth_run(world_msgs, tmp_path_factory):
    """The six frames with millimetre depth fed to mapper_node: its log lines and /diagnostics."""
    from test_outside_ros2_nodes import _feed, _mapper

    msgs, _ = world_msgs
    tmp = tmp_path_factory.mktemp("qos_mm_depth")
    bus, node = _mapper(tmp)
    t = node.cfg.topics
    frames = sum(1 for topic, _, _ in msgs if topic == t.depth)

    def edit(topic, stamp, msg):
        return _millimetres(msg) if topic == t.depth else msg

    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    keep = _Keep(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(keep)
    try:
        _feed(bus, node, msgs, edit)
        diags = []
        bus.subscribe("/diagnostics", diags.append)
        node.publish_diagnostics()
        bus.inject("/gs_x29/nothing", None, bus.now_ns)  # delivers what is queued
    finally:
        root.removeHandler(keep)
    return {"node": node, "frames": frames, "records": records, "diag": diags[-1], "depth_topic": t.depth}


def test_millimetre_depth_is_not_mapped(mm_depth_run):
    """No frame with 0 % of its depth within [min_depth_m, max_depth_m] is used (the mapper's rule)."""
    node = mm_depth_run["node"]
    assert mm_depth_run["frames"] == 6
    assert node.mapper.stats.frames == 0 and len(node.mapper.gmap) == 0


def test_the_same_unusable_depth_on_every_frame_is_one_warning_line(mm_depth_run):
    lines = [r.getMessage() for r in mm_depth_run["records"] if "depth unusable" in r.getMessage()]
    assert len(lines) == 1, lines


def test_unusable_depth_is_counted_in_diagnostics_with_its_reason(mm_depth_run):
    """Issue 20: bad input is 'counted in /diagnostics, logged once with the reason'. What the
    /diagnostics message carries (its key/value pairs and message), read as a user's
    `ros2 topic echo /diagnostics` would show it, must name the reason and the six frames."""
    msg = mm_depth_run["diag"]
    text = " ".join(
        [s.message for s in msg.status] + [f"{kv.key}={kv.value}" for s in msg.status for kv in s.values]
    )
    assert "depth unusable" in text or "millimetres" in text, text
    assert any(kv.value == "6" for s in msg.status for kv in s.values if "depth" in kv.key), text


def test_under_rclpy_the_reason_reaches_the_nodes_ros_logger(ros, world_msgs, tmp_path):
    """ROS 2 logging: what a node says goes through its logger (console with the node's name,
    /rosout, the log file, `--log-level`); rclpy_runtime hands the nodes rclpy's RcutilsLogger for
    that. The stand-in keeps every rclpy log call in rclpy_standin.LOG. The subscription callbacks
    are rclpy's own Subscription.callback, called in stamp order as the executor would."""
    import rclpy_standin

    from gs_mapping.messages import RclpyFactory, convert_message
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    msgs, types = world_msgs
    f = tmp_path / "m.yaml"
    f.write_text(
        "/**:\n  ros__parameters:\n    mapper:\n      device: cpu\n      topics: {color: "
        "/cameras/front/image_raw, depth: /cameras/front/depth, camera_info: /cameras/front/camera_info}\n"
    )
    context = ros.Context()
    ros.init(args=["mapper_node", "--ros-args", "--params-file", str(f)], context=context)
    node, obj = create_node(MapperNode, context)
    try:
        callbacks = {s.topic_name: s.callback for s in node.subscriptions}
        first = len(rclpy_standin.LOG)
        for topic, _, msg in msgs:
            if topic in callbacks:
                msg = _millimetres(msg) if topic == "/cameras/front/depth" else msg
                callbacks[topic](convert_message(msg, types[topic], RclpyFactory()))
        assert obj.mapper.stats.skipped_invalid_depth == 6  # the six frames did meet the rule
        said = [(name, m) for _, name, m in rclpy_standin.LOG[first:] if "depth unusable" in m]
        assert said and all(name.endswith("mapper_node") for name, _ in said), said
    finally:
        context.try_shutdown()
        close_node(node, obj)


def test_under_ros2_run_the_modules_python_lines_go_to_the_nodes_logger(ros, tmp_path):
    """`ros2 run`'s entry point (run_node): what the suite's modules log with Python's logging (the
    mapper, the codec, the readers) goes through the node's rclpy logger (its name, /rosout,
    --log-level), INFO included, and not also to Python's own handlers; afterwards, as before."""
    import threading
    import time

    import rclpy_standin

    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import _ToNodeLogger, run_node

    context = ros.Context()
    args = ["map_receiver_node", "--ros-args", "-p", f"map_receiver_node.save_path:={tmp_path / 'm.ply'}"]
    result = []
    t = threading.Thread(target=lambda: result.append(run_node(MapReceiverNode, args, context)))
    t.start()
    end = time.monotonic() + 20
    # (the node built and its logging taken over: waiting for its publishers alone raced with the
    # rest of its start on a loaded machine)
    while not any(isinstance(h, _ToNodeLogger) for h in logging.getLogger("gs_map_share").handlers):
        assert time.monotonic() < end and t.is_alive()
        time.sleep(0.02)
    seen: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    keep = _Keep(logging.DEBUG)
    logging.getLogger().addHandler(keep)
    try:
        first = len(rclpy_standin.LOG)
        logging.getLogger("gs_map_share.receiver").warning("probe warning x29")
        logging.getLogger("gsmap_hd.infer").info("probe info x29")
        logging.getLogger("gs_mapping.ply").debug("probe debug x29")  # below rclpy's default INFO
        said = [(sev, name, m) for sev, name, m in rclpy_standin.LOG[first:] if "x29" in m]
    finally:
        context.try_shutdown()
        t.join(10)
        logging.getLogger().removeHandler(keep)
    assert result == [0]
    assert [(sev, name) for sev, name, _ in said] == [(30, "map_receiver_node"), (20, "map_receiver_node")]
    assert "gs_map_share.receiver: probe warning x29" in said[0][2]
    # Python's root saw them only as the stand-in's own echo of rclpy's output (ros.<node>)
    assert all(r.name.startswith("ros.") for r in seen if "x29" in r.getMessage())
    assert logging.getLogger("gs_map_share").propagate and not logging.getLogger("gs_map_share").handlers
