"""Guards for behaviours a mutation-testing pass found unguarded (ninth round): the ROS 2 runtime and
node plumbing. The approximate-time synchroniser's slop and input addressing, the TF buffer's memory
of refused frames, ROS name rules (root namespace, ``~`` resolution, ``ROS_DOMAIN_ID`` defaults), the
replay bus's transient-local history, node diagnostics, and the nodes' documented timing rules. Each
test compares the real component with an independent reference (the rule a docstring, the README or
ROS 2 states; a hand-built input with a hand-computed answer), so that breaking the line it guards
makes it fail."""

from __future__ import annotations

import logging

import pytest

MS = 1_000_000
_HINT = " (nothing arrived on it yet; check the topic names)"

# ------------------------------------------------------------------------------------------------
# sync: ApproximateTimeSynchronizer


def test_a_spread_of_exactly_a_slop_of_65_microseconds_matches():
    """'max − min ≤ slop': 65 µs is 64999.99… ns as a float; truncating it would refuse a pair
    exactly 65 µs apart."""
    from gs_mapping.sync import ApproximateTimeSynchronizer

    sync = ApproximateTimeSynchronizer(2, queue_size=3, slop=65e-6)
    assert sync.add(0, 1_000_000, "a") is None
    assert sync.add(1, 1_065_000, "b") == ("a", "b")


def test_named_inputs_are_addressed_by_index_zero_too():
    """'addressed by name or index': index 0 is the first named input."""
    from gs_mapping.sync import ApproximateTimeSynchronizer

    sync = ApproximateTimeSynchronizer(["color", "depth"], queue_size=3, slop=0.001)
    assert sync.add(0, 5 * MS, "c") is None
    assert sync.add("depth", 5 * MS, "d") == ("c", "d")


# ------------------------------------------------------------------------------------------------
# tf: TFBuffer


def test_every_refused_frame_says_why_not_only_the_first():
    """add(): 'a later lookup of a frame whose every transform was refused says why' (bounded at
    1024 frames, far above two)."""
    from gs_mapping.errors import TFError, UnknownFrameError
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.tf import TFBuffer

    tf = TFBuffer()
    tf.add(TransformStamped("map", "base", 0, Transform()))
    for child in ("cam_a", "cam_b"):
        bad = Transform([float("nan"), 0.0, 0.0])
        with pytest.raises(TFError):
            tf.add(TransformStamped("base", child, 0, bad))
    for child in ("cam_a", "cam_b"):
        with pytest.raises(UnknownFrameError, match="every transform to it was refused"):
            tf.lookup("map", child, 0)


# ------------------------------------------------------------------------------------------------
# nodes.context: ROS names


def test_the_root_namespace_is_a_valid_namespace():
    """ROS 2's root namespace '/' (``__ns:=/``) is what a node without a namespace has."""
    from gs_mapping.nodes.context import check_ros_names

    check_ros_names("mapper_node", "/")
    check_ros_names("mapper_node", "")


def test_tilde_alone_resolves_to_the_nodes_fully_qualified_name():
    """ROS 2 name resolution: '~' is the node's fully qualified name, no trailing slash."""
    from gs_mapping.nodes.context import resolve_topic

    assert resolve_topic("~", "mapper_node", "robot1") == "/robot1/mapper_node"
    assert resolve_topic("~", "mapper_node", "") == "/mapper_node"
    assert resolve_topic("~/x", "n", "/a/b/") == "/a/b/n/x"


def test_an_empty_or_unset_ros_domain_id_is_domain_0(monkeypatch):
    """ROS 2: 'if ROS_DOMAIN_ID is unset or empty, domain 0'."""
    from gs_mapping.nodes.context import ros_domain_id

    monkeypatch.setenv("ROS_DOMAIN_ID", "")
    assert ros_domain_id(None) == 0
    monkeypatch.setenv("ROS_DOMAIN_ID", "  ")
    assert ros_domain_id(None) == 0
    monkeypatch.delenv("ROS_DOMAIN_ID")
    assert ros_domain_id(None) == 0


# ------------------------------------------------------------------------------------------------
# nodes.base: time jumps, waiting, diagnostics' hardware id


def _receiver(bus, namespace: str = ""):
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode

    return MapReceiverNode(bus.context("map_receiver_node", namespace), MapReceiverNode.load_config(None))


def test_time_going_back_exactly_time_jump_s_is_a_late_message_not_a_jump():
    """time_went_back: 'more than TIME_JUMP_S before': 5 s back is late, 5 s + 1 ns is a jump."""
    from gs_mapping.runtime.replay import ReplayBus

    rx = _receiver(ReplayBus())
    jump = int(rx.TIME_JUMP_S * 1e9)
    assert rx.time_went_back(10 * 10**9 - jump, 10 * 10**9) is False
    assert "time_jumps" not in rx.diag.values
    assert rx.time_went_back(10 * 10**9 - jump - 1, 10 * 10**9) is True
    assert rx.diag.values["time_jumps"] == 1


def _waiting_logs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for")]


def test_waiting_is_said_again_when_what_is_awaited_changes(caplog):
    """'says so on the console when what it waits for changes', not only every 30 s."""
    from gs_mapping.runtime.replay import ReplayBus

    rx = _receiver(ReplayBus())
    with caplog.at_level(logging.WARNING):
        rx.report_waiting(["colour on /a"])
        rx.report_waiting(["colour on /a"])  # same, same time: said once
        rx.report_waiting(["depth on /b"])
    assert _waiting_logs(caplog) == ["waiting for colour on /a" + _HINT, "waiting for depth on /b" + _HINT]


def test_waiting_again_after_the_input_came_is_a_change_and_said(caplog):
    """Waiting → nothing awaited → waiting for the same input again: two changes, said again."""
    from gs_mapping.runtime.replay import ReplayBus

    rx = _receiver(ReplayBus())
    with caplog.at_level(logging.WARNING):
        rx.report_waiting(["colour on /a"])
        rx.report_waiting([])
        assert "waiting_for" not in rx.diag.values
        rx.report_waiting(["colour on /a"])
    assert len(_waiting_logs(caplog)) == 2


def test_waiting_is_repeated_at_exactly_waiting_repeat_s(caplog):
    """'and again every this many seconds of node time': at 30 s exactly, not later."""
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    rx = _receiver(bus)
    repeat = int(rx.WAITING_REPEAT_S * 1e9)
    with caplog.at_level(logging.WARNING):
        bus.now_ns = 10**9
        rx.report_waiting(["colour on /a"])
        bus.now_ns = 10**9 + repeat - 1
        rx.report_waiting(["colour on /a"])
        assert len(_waiting_logs(caplog)) == 1
        bus.now_ns = 10**9 + repeat
        rx.report_waiting(["colour on /a"])
    assert len(_waiting_logs(caplog)) == 2


def test_a_message_provoking_a_non_gs_mapping_error_is_counted_not_raised():
    """guarded: 'anything else a hostile message provokes … is counted the same way with its type'
    (under rclpy an exception out of a callback ends the process). A delta whose
    ``layout.data_offset`` is None (a duck-typed publisher's mistake) provokes a TypeError in int()."""
    from types import SimpleNamespace

    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    rx = _receiver(bus)
    msg = SimpleNamespace(data=[1, 2, 3], layout=SimpleNamespace(data_offset=None))
    bus.inject("/mapper_node/map_delta", msg, 10**9)
    assert rx.diag.rejected["mapper_node/map_delta"] == 1
    assert "unexpected TypeError" in rx.diag.last_error
    assert rx.diag.inputs["mapper_node/map_delta"] == 1


def test_diagnostics_hardware_id_is_the_nodes_fully_qualified_name():
    """publish_diagnostics: hardware_id is the node's fully qualified name ('~' resolved), so two
    receivers in two namespaces differ on /diagnostics."""
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    got: list = []
    bus.subscribe("/diagnostics", got.append)
    for ns in ("robot1", ""):
        _receiver(bus, ns).publish_diagnostics()
    bus.advance(0)  # drain the queue
    assert [m.status[0].hardware_id for m in got] == ["/robot1/map_receiver_node", "/map_receiver_node"]


# ------------------------------------------------------------------------------------------------
# nodes.diagnostics


def test_rate_of_a_topic_whose_messages_all_came_at_one_instant_is_zero():
    """Two messages at the same node time (a bag replayed, one stamp twice) give no rate, not a
    division by zero inside publish_diagnostics."""
    from gs_mapping.nodes.diagnostics import NodeDiagnostics

    diag = NodeDiagnostics("t")
    diag.received("/cam", 5 * 10**9)
    diag.received("/cam", 5 * 10**9)
    assert diag.rate_hz("/cam") == 0.0
    diag.received("/cam", 6 * 10**9)
    assert diag.rate_hz("/cam") == pytest.approx(2.0)  # 2 intervals in 1 s


def test_a_rejected_input_alone_raises_the_level_to_warn():
    """The status says 'inputs rejected or dropped': a rejection alone is a WARN."""
    from gs_mapping.nodes.diagnostics import OK, WARN, NodeDiagnostics

    diag = NodeDiagnostics("t")
    assert diag.level() == OK
    diag.reject("/cam", "bad encoding")
    assert diag.level() == WARN


def test_a_drop_without_a_reason_keeps_the_last_reason():
    """last_error is 'the last reason': a reasonless drop (hd_map_node's rate limit, routine)
    counts but does not wipe the reason a rejected message left."""
    from gs_mapping.nodes.diagnostics import NodeDiagnostics

    diag = NodeDiagnostics("t")
    diag.reject("/cam", "bad encoding")
    diag.drop("frames_rate_limited")
    assert diag.dropped["frames_rate_limited"] == 1
    assert diag.last_error == "/cam: bad encoding"


def test_rates_are_over_the_last_window_stamps():
    """NodeDiagnostics(window=3): the rate is that of the last three arrivals (2 in 2 s), not of
    every arrival since the start (4 in 22 s)."""
    from gs_mapping.nodes.diagnostics import NodeDiagnostics

    diag = NodeDiagnostics("t", window=3)
    for t_s in (0, 10, 20, 21, 22):
        diag.received("/cam", t_s * 10**9)
    assert diag.rate_hz("/cam") == pytest.approx(1.0)
    assert diag.inputs["/cam"] == 5


# ------------------------------------------------------------------------------------------------
# runtime.replay: the in-process bus


def test_a_late_subscriber_of_a_transient_local_topic_gets_its_last_depth_messages():
    """ReplayBus.subscribe: 'a late subscriber of a latched topic gets its last messages, as
    transient_local does': keep-last depth 3 after four publications is the last three, in order
    (tf2's /tf_static is such a topic, depth 100: one latched message per static broadcaster)."""
    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    qos = QoS(reliable=True, transient_local=True, depth=3)
    for k in range(4):
        bus.publish("/state", "std_msgs/msg/String", qos, k)
    got: list = []
    bus.subscribe("/state", got.append)
    bus.advance(0)
    assert got == [1, 2, 3]


def test_a_late_subscriber_of_a_volatile_topic_gets_nothing_old():
    """Volatile durability: what was published before the subscription is not delivered to it."""
    from gs_mapping.nodes.context import RELIABLE_QOS
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    bus.publish("/x", "std_msgs/msg/String", RELIABLE_QOS, "old")
    got: list = []
    bus.subscribe("/x", got.append)
    bus.advance(0)
    assert got == []
    bus.publish("/x", "std_msgs/msg/String", RELIABLE_QOS, "new")
    bus.advance(0)
    assert got == ["new"]


def _nodes_on(bus):
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.nodes.mapper_node import MapperNode

    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    return [
        MapperNode(bus.context("mapper_node"), cfg),
        MapReceiverNode(bus.context("map_receiver_node"), MapReceiverNode.load_config(None)),
    ]


def test_a_topic_another_node_in_the_replay_publishes_is_not_an_unmatched_input(tmp_path):
    """ReplaySummary.unmatched_inputs: 'subscribed topics it lacks', but a topic some node in the
    same replay publishes (the receiver's deltas from the mapper) is fed in-process, not missing."""
    from hostile_cases import _tf_bag

    from gs_mapping.bag import BagReader
    from gs_mapping.runtime.replay import ReplayBus

    bag = _tf_bag(tmp_path / "tf_bag", "mcap")
    bus = ReplayBus()
    _nodes_on(bus)
    with BagReader(bag) as reader:
        summary = bus.run(reader, progress=False)
    assert "/camera/camera/color/image_raw" in summary.unmatched_inputs  # (the default colour topic)
    assert "/mapper_node/map_delta" not in summary.unmatched_inputs
    assert "/mapper_node/map_snapshot" not in summary.unmatched_inputs
    assert summary.matched_inputs == ["/tf", "/tf_static"]


def test_bag_time_passes_for_timers_on_messages_only_copied_to_the_output(tmp_path):
    """Replay docstring: 'timers fire when the clock passes their due time'. A receiver alone takes
    none of a TF bag's topics, yet the copied /tf (1.0 … 2.9 s) moves the clock: its 1 s diagnostics
    timer, created at the bag's start (0 s), fires at 1 s and 2 s."""
    from hostile_cases import _tf_bag

    from gs_mapping.bag import BagReader
    from gs_mapping.runtime.replay import ReplayBus

    bag = _tf_bag(tmp_path / "tf_bag", "mcap")
    bus = ReplayBus()
    stamps: list = []
    bus.subscribe("/diagnostics", lambda m: stamps.append(bus.now_ns))
    _receiver(bus)
    with BagReader(bag) as reader:
        bus.run(reader, progress=False)
    assert stamps == [10**9, 2 * 10**9]


def _tf_bag_from_10_s(path):
    """/tf_static at 10 s and /tf from 10.0 to 12.9 s: a bag that does not start at 0."""
    from hostile_cases import tf_message

    from gs_mapping.bag import BagWriter, default_typestore
    from gs_mapping.messages import RosbagsFactory

    f = RosbagsFactory(default_typestore())
    s = 10 * 10**9
    with BagWriter(path) as bag:
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        bag.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        bag.write("/tf_static", s, tf_message(f, s, "base_link", "camera", 0.2))
        for i in range(30):
            t = s + i * 10**8
            bag.write("/tf", t, tf_message(f, t, "map", "base_link", 0.1 * i))
    return path


def _replayed(tmp_path):
    from gs_mapping.bag import BagReader
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import replay_bag

    bag = _tf_bag_from_10_s(tmp_path / "in_bag")
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    out = tmp_path / "out_bag"
    replay_bag(bag, out, [MapperNode, MapReceiverNode], [cfg, MapReceiverNode.load_config(None)])
    with BagReader(out) as r:
        return list((t, s) for t, s, _ in r.messages())


def test_replay_stamps_start_up_publications_at_the_bags_first_stamp(tmp_path):
    """Replay docstring: the clock 'starts at the bag's first stamp (so what nodes publish while
    starting is stamped then, not at 1970)': the mapper's start-up snapshot is at 10 s."""
    msgs = _replayed(tmp_path)
    snaps = [s for t, s in msgs if t == "/mapper_node/map_snapshot"]
    assert snaps and snaps[0] == 10 * 10**9
    assert min(s for _, s in msgs) == 10 * 10**9


def test_replay_fires_a_last_round_of_timers_at_the_final_stamp(tmp_path):
    """Replay docstring: 'a last round of timers fires at the final stamp': /diagnostics at 11 s
    and 12 s on the period, and once more at 12.9 s, the bag's last stamp."""
    msgs = _replayed(tmp_path)
    last = 10 * 10**9 + 29 * 10**8
    assert max(s for _, s in msgs) == last
    diag = [s for t, s in msgs if t == "/diagnostics"]
    assert diag[-1] == last


def test_a_replay_publisher_counts_the_subscriptions_of_its_topic():
    """Publisher.subscription_count (rclpy's get_subscription_count): subscribers of the topic."""
    from gs_mapping.nodes.context import LATCHED_QOS
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    pub = bus.context("n", "ns").create_publisher("~/out", "std_msgs/msg/String", LATCHED_QOS)
    assert pub.subscription_count() == 0
    bus.subscribe("/ns/n/out", lambda m: None)
    bus.subscribe("/ns/n/out", lambda m: None)
    bus.subscribe("/other", lambda m: None)
    assert pub.subscription_count() == 2


def test_mapper_sends_a_snapshot_when_a_subscriber_joins_in_a_replay():
    """mapper_node: '~/map_snapshot … on a period and when a new subscriber joins'. With period 0
    only the start-up snapshot and one per join, at the next timer tick."""
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    cfg["mapper_node"].snapshot_period_s = 0.0
    MapperNode(bus.context("mapper_node"), cfg)
    topic = "/mapper_node/map_snapshot"
    bus.advance(0)
    bus.advance(3 * 10**9)
    assert bus.published[topic] == 1
    bus.subscribe(topic, lambda m: None)
    bus.advance(4 * 10**9)
    assert bus.published[topic] == 2
    bus.advance(8 * 10**9)
    assert bus.published[topic] == 2


def test_replay_copies_tf_and_tf_static_into_the_output_at_their_stamps(tmp_path):
    """ReplayBus.run: 'copy record_inputs topics (/tf, /tf_static) into the output bag unchanged'."""
    msgs = _replayed(tmp_path)
    s = 10 * 10**9
    assert [st for t, st in msgs if t == "/tf_static"] == [s]
    assert [st for t, st in msgs if t == "/tf"] == [s + i * 10**8 for i in range(30)]


def test_strict_replay_of_a_bag_holding_only_tf_is_an_error_and_writes_nothing(tmp_path):
    """replay_bag(strict=True): 'a bag holding no input topic of the nodes' is an error; /tf and
    /tf_static alone are no input topic (every node reads them), and no output is written."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import replay_bag

    bag = _tf_bag_from_10_s(tmp_path / "in_bag")
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    out = tmp_path / "out_bag"
    with pytest.raises(ConfigError, match="no input topic"):
        replay_bag(bag, out, [MapperNode], [cfg], strict=True)
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# runtime.spin_loop: the live runtimes' wall-clock timers


def test_a_wall_timer_first_fires_one_period_after_it_was_created():
    """Like rclpy's timers: a timer of period P is first due P after its creation, not at once."""
    from gs_mapping.runtime.spin_loop import WallTimers

    timers, fired = WallTimers(), []
    timers.add(3600.0, lambda: fired.append(1))
    assert timers.fire_due() == 0 and fired == []
    assert timers.wait_ns(2.0) > 10**9  # nothing due: the spin may wait (almost) its full timeout


def test_an_overdue_wall_timer_makes_the_spin_wait_zero_not_a_negative_time():
    """wait_ns: 'how long a spin may wait': never negative (time.sleep refuses that)."""
    import time

    from gs_mapping.runtime.spin_loop import WallTimers

    timers = WallTimers()
    timers.add(0.001, lambda: None)
    time.sleep(0.02)
    assert timers.wait_ns(1.0) == 0


def test_a_wall_timer_that_fired_is_next_due_one_period_later():
    """Periodic: after firing, a 0.5 s timer is not due again at once."""
    import time

    from gs_mapping.runtime.spin_loop import WallTimers

    timers, fired = WallTimers(), []
    timers.add(0.5, lambda: fired.append(1))
    time.sleep(0.55)
    assert timers.fire_due() == 1
    assert timers.fire_due() == 0 and fired == [1]
    assert timers.wait_ns(1.0) > 0


# ------------------------------------------------------------------------------------------------
# runtime.dds: what a subscription callback gets


def test_a_dds_subscription_gets_data_only_not_the_writers_unregistration():
    """rmw_cyclonedds hands callbacks valid samples only: a publisher that goes away (its
    participant deleted: Cyclone unregisters its instance, an invalid sample) is no message."""
    import gc

    from gs_mapping.nodes.context import RELIABLE_QOS
    from gs_mapping.runtime.dds import DdsContext

    sub = DdsContext("sub", domain_id=43)
    got: list = []
    sub.create_subscription("/gs_test/leaving", "std_msgs/msg/String", RELIABLE_QOS, got.append)

    def publish_once_and_leave() -> None:
        ctx = DdsContext("pub", domain_id=43)
        pub = ctx.create_publisher("/gs_test/leaving", "std_msgs/msg/String", RELIABLE_QOS)
        sub.spin(until=lambda: pub.subscription_count() > 0, timeout_s=5)
        pub.publish(ctx.factory.make("std_msgs/msg/String", data="hello"))
        sub.spin(until=lambda: got, timeout_s=5)
        ctx.close()

    publish_once_and_leave()
    gc.collect()  # the writer's participant is deleted: its instance is unregistered
    sub.spin(timeout_s=1.0)
    assert [m.data for m in got] == ["hello"]
    sub.close()


# ------------------------------------------------------------------------------------------------
# runtime.type_hash: bounded strings and sequences (REP-2011)


@pytest.mark.parametrize(
    "typename",
    [
        "shape_msgs/msg/SolidPrimitive",  # float64[<=3]: a bounded sequence (type id + 96)
        "type_description_interfaces/msg/FieldType",  # string<=255: a bounded string (id 21)
        "rcl_interfaces/msg/ParameterDescriptor",  # both, and nested ranges
    ],
)
def test_type_hash_of_bounded_strings_and_sequences_agrees_with_rosbags(typename):
    """rosbags implements REP-2011 independently; our nodes' own types have no bounded fields, so
    these types (no .msg ``char``) check the bounded cases."""
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.runtime.type_hash import type_hash

    assert type_hash(typename) == get_typestore(Stores.ROS2_JAZZY).hash_rihs01(typename)


# ------------------------------------------------------------------------------------------------
# map_receiver_node: ~/map_cloud


def _cloud_of(gmap_seed: int = 3):
    """The receiver's ~/map_cloud for a synthetic snapshot, and the map the snapshot decodes to."""
    from synthetic_maps import synthetic_map

    from gs_map_share.snapshot import decode_map, encode_map
    from gs_mapping.messages import bytes_to_uint8_multiarray, pointcloud2_to_array
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    rx = _receiver(bus)
    clouds: list = []
    bus.subscribe("/map_receiver_node/map_cloud", clouds.append)
    data, _ = encode_map(synthetic_map(400, 0, seed=gmap_seed))
    bus.inject("/mapper_node/map_snapshot", bytes_to_uint8_multiarray(data, bus.factory), 10**9)
    bus.inject("/tick", None, 2 * 10**9)
    return rx, bus, clouds, pointcloud2_to_array(clouds[-1]), decode_map(data)


def test_map_cloud_packs_rviz_rgb_as_rounded_0x00rrggbb_and_scale_as_the_largest_axis():
    """RViz's packed colour: 0x00RRGGBB of round(colour · 255), as float32 bits; 'scale' the
    largest of the three axis scales; only Gaussians at or above min_opacity (0.05)."""
    import numpy as np

    _, _, _, cloud, gmap = _cloud_of()
    keep = gmap.opacities() >= 0.05
    c = np.round(gmap.colors()[keep] * 255).astype(np.uint32)
    packed = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    assert np.array_equal(np.ascontiguousarray(cloud["rgb"]).view(np.uint32), packed)
    assert np.allclose(cloud["scale"], gmap.scales()[keep].max(axis=1).astype(np.float32))
    assert np.allclose(cloud["x"], gmap.means[keep][:, 0].astype(np.float32))


def test_map_cloud_is_published_only_when_the_map_changed():
    """Receiver docstring: 'at most publish_rate_hz times a second, only when it changed'."""
    _, bus, clouds, _, _ = _cloud_of()
    n = len(clouds)
    assert n == 1
    bus.inject("/tick", None, 10 * 10**9)
    assert len(clouds) == n


def test_map_cloud_rate_is_publish_rate_hz_times_a_second():
    """publish_rate_hz = 4: the changed map is published at the next quarter-second tick, not 4 s
    later."""
    from synthetic_maps import synthetic_map

    from gs_map_share.snapshot import encode_map
    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapReceiverNode.load_config(None)
    cfg["map_receiver_node"].publish_rate_hz = 4.0
    MapReceiverNode(bus.context("map_receiver_node"), cfg)
    stamps: list = []
    bus.subscribe("/map_receiver_node/map_cloud", lambda m: stamps.append(bus.now_ns))
    data, _ = encode_map(synthetic_map(50, 0, seed=1))
    bus.inject("/mapper_node/map_snapshot", bytes_to_uint8_multiarray(data, bus.factory), 10**9)
    bus.inject("/tick", None, 10**9 + 250_000_000)
    assert stamps == [10**9 + 250_000_000]


# ------------------------------------------------------------------------------------------------
# mapper_node: snapshots and the wait for TF


def _mapper(bus, **node_cfg):
    from gs_mapping.nodes.mapper_node import MapperNode

    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    for k, v in node_cfg.items():
        setattr(cfg["mapper_node"], k, v)
    return MapperNode(bus.context("mapper_node"), cfg)


def test_mapper_snapshot_is_due_exactly_one_period_after_the_last():
    """snapshot_period_s = 2: the start-up snapshot at 0 s, the next at 2 s exactly (its timer ticks
    every 2 s), not a period later."""
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    _mapper(bus, snapshot_period_s=2.0)
    topic = "/mapper_node/map_snapshot"
    bus.advance(0)
    assert bus.published[topic] == 1
    bus.advance(2 * 10**9)
    assert bus.published[topic] == 2


def test_mapper_snapshots_go_on_after_the_clock_went_back():
    """A bag played in a loop under use_sim_time: node time jumps back from 100 s to 1 s. Periodic
    snapshots ('on a period') go on 2 s after the jump, instead of stopping until the clock is past
    100 s again."""
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    node = _mapper(bus, snapshot_period_s=2.0)
    bus.now_ns = 100 * 10**9
    node.on_snapshot_timer()
    n = bus.published["/mapper_node/map_snapshot"]
    bus.now_ns = 1 * 10**9  # the sim clock went back (rclpy's /clock; replay's own never does)
    node.on_snapshot_timer()
    bus.now_ns = 3 * 10**9
    node.on_snapshot_timer()
    assert bus.published["/mapper_node/map_snapshot"] == n + 1


def test_a_frame_waits_for_its_transform_exactly_tf_wait_s():
    """tf_wait_s: 'a frame whose transform has not arrived yet waits this long (node clock)': held
    at exactly tf_wait_s of waiting, dropped 1 ns later."""
    from gs_mapping.errors import ExtrapolationError
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    node = _mapper(bus, tf_wait_s=0.5)
    exc = ExtrapolationError("in flight", future=True, gap_ns=1)
    bus.now_ns = 10 * 10**9
    assert node._hold_for_tf(None, None, 0, exc, bus.now_ns - 500_000_000) is True
    assert node._hold_for_tf(None, None, 0, exc, bus.now_ns - 500_000_001) is False


def test_tf_on_tf_static_alone_is_not_waited_for():
    """waiting_for: 'TF on /tf / /tf_static' is listed until TF arrives on either; a camera fixed in
    the map frame has /tf_static only."""
    from hostile_cases import tf_message

    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    node = _mapper(bus)
    assert any(w.startswith("TF on") for w in node.waiting_for())
    bus.inject("/tf_static", tf_message(bus.factory, 0, "map", "camera_color_optical_frame", 0.0), 10**9)
    assert node.diag.inputs["/tf_static"] == 1 and not node.diag.rejected
    assert not any(w.startswith("TF on") for w in node.waiting_for())


def test_mapper_snapshot_period_below_a_second_is_kept():
    """snapshot_period_s = 0.5 ('period of ~/map_snapshot'): a snapshot at 0.5 s, 1.0 s, …; the 1 s
    tick is for period 0 only (joins)."""
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    _mapper(bus, snapshot_period_s=0.5)
    topic = "/mapper_node/map_snapshot"
    bus.advance(0)
    bus.advance(500_000_000)
    assert bus.published[topic] == 2
    bus.advance(10**9)
    assert bus.published[topic] == 3


# ------------------------------------------------------------------------------------------------
# a bug this pass found (fixed)


def test_a_node_name_or_namespace_longer_than_rmw_takes_is_refused():
    """rmw/validate_node_name.h: a node name is at most 255 characters (rcl refuses longer ones:
    RMW_NODE_NAME_INVALID_TOO_LONG); a namespace at most 253 (RMW_NAMESPACE_MAX_LENGTH)."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.context import check_ros_names

    check_ros_names("n" * 255, "/" + "s" * 252)  # the longest rmw takes
    with pytest.raises(ConfigError, match="at most 255"):
        check_ros_names("n" * 256)
    with pytest.raises(ConfigError, match="at most 253"):
        check_ros_names("n", "/" + "s" * 253)
