"""Guards for behaviours a mutation-testing pass (sixty-fifth round) over session 34's node and
runtime changes (``nodes/map_saving.check_save_path``, ``nodes/context.subscriptions_joined`` and
its runtimes, ``nodes/map_server_node``'s binding and publisher count, ``runtime/rclpy_runtime``'s
QoS overrides) found unguarded. Each test compares with something outside the line it guards: the
real final save, rclpy's own code (through test/rclpy_standin.py, as test_rclpy_runtime.py does),
the vehicles' own maps, a real Zenoh session's graph."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import spin_until

# ------------------------------------------------------------------------------------------------
# map_saving.check_save_path: what the real save cannot take, and only that


def test_a_folder_given_as_a_home_relative_save_path_is_refused_as_the_save_would_fail(tmp_path, monkeypatch):
    """``save_path: ~/maps`` where ~/maps is a folder: the final save expands ``~`` as a shell does
    and cannot write a PLY over the folder (it goes to the temp directory); the config refuses it
    where it is given, naming the parameter, for both nodes' configs."""
    from synthetic_maps import synthetic_map

    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.map_receiver_node import MapReceiverNodeConfig
    from gs_mapping.nodes.map_saving import final_save
    from gs_mapping.nodes.mapper_node import MapperNodeConfig

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "maps").mkdir()
    saved = final_save(synthetic_map(20, 0, seed=1), "~/maps", logging.getLogger("t"), "n")
    try:  # (the real save: not there)
        assert saved is not None and not saved.startswith(str(tmp_path))
    finally:
        if saved:
            import os

            os.unlink(saved)
    for cls, name in ((MapReceiverNodeConfig, "map_receiver_node"), (MapperNodeConfig, "mapper_node")):
        with pytest.raises(ConfigError, match=f"{name}.save_path: ~/maps is a directory"):
            cls(save_path="~/maps")


def test_an_existing_map_file_as_save_path_is_taken_as_the_save_replaces_it(tmp_path):
    """Re-running with the same save_path is the common case: the file is there from the last run,
    and the real save replaces it. Only a folder is refused, not a path that exists."""
    from synthetic_maps import synthetic_map

    from gs_mapping.nodes.map_receiver_node import MapReceiverNodeConfig
    from gs_mapping.nodes.map_saving import save_map
    from gs_mapping.nodes.mapper_node import MapperNodeConfig
    from gs_mapping.ply import load_ply

    path = tmp_path / "map.ply"
    save_map(synthetic_map(10, 0, seed=1), str(path))
    assert MapReceiverNodeConfig(save_path=str(path)).save_path == str(path)
    assert MapperNodeConfig(save_path=str(path)).save_path == str(path)
    save_map(synthetic_map(30, 0, seed=2), str(path))
    assert len(load_ply(path)) == 30


# ------------------------------------------------------------------------------------------------
# context.subscriptions_joined on rclpy: its publisher has no joined count; the current one stands


@pytest.fixture(scope="module")
def ros():
    """rclpy's real Python package over test/rclpy_standin.py's C layer (skipped where absent)."""
    import rclpy_standin

    with rclpy_standin.humble_for_tests() as rclpy:
        yield rclpy


def test_on_rclpy_a_snapshot_publishers_joined_count_is_rclpys_subscription_count(ros):
    """rclpy's publisher says how many subscriptions match now, not how many ever did: the snapshot
    timers' join test falls back to that count (a receiver that joins is still seen), not to
    nothing (no fresh snapshot for any joiner on rclpy at snapshot_period_s 0)."""
    rclpy = ros
    from rclpy.node import Node
    from std_msgs.msg import UInt8MultiArray

    from gs_mapping.nodes.context import LATCHED_QOS, subscriptions_joined
    from gs_mapping.runtime.rclpy_runtime import RclpyContext, _qos_profile

    context = rclpy.Context()
    rclpy.init(args=["n"], context=context)
    node, other = Node("map_server_node", context=context), Node("rx", context=context)
    try:
        pub = RclpyContext(node).create_publisher(
            "~/map_snapshot", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS
        )
        raw = next(p for p in node.publishers if p.topic_name == "/map_server_node/map_snapshot")
        assert subscriptions_joined(pub) == raw.get_subscription_count() == 0
        other.create_subscription(
            UInt8MultiArray, "/map_server_node/map_snapshot", lambda m: None, _qos_profile(LATCHED_QOS)
        )
        assert subscriptions_joined(pub) == raw.get_subscription_count() == 1
    finally:
        other.destroy_node()
        node.destroy_node()
        context.try_shutdown()


# ------------------------------------------------------------------------------------------------
# map_server_node's per-vehicle ``publishers``: processes (Zenoh sessions), not publisher tokens


def test_over_zenoh_two_delta_publishers_of_one_process_count_as_one_publisher(tmp_path, caplog):
    """One process with two publishers on a vehicle's delta topic (a mapper and a relay composed in
    one process) is one map stream: ``publishers`` 1 and no warning about two vehicles in one
    namespace. Compared with the real Zenoh graph: two ``MP`` tokens, one session id among them."""
    pytest.importorskip("zenoh")

    from test_zenoh_runtime import _free_port

    from gs_mapping.nodes.context import QoS
    from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    endpoint, domain = f"tcp/127.0.0.1:{_free_port()}", 44
    router = run_router([endpoint])
    ctxs: list[ZenohContext] = []
    server = None
    try:
        ctxs.append(ZenohContext("map_server_node", "", domain, connect=[endpoint]))
        cfg = MapServerNodeConfig(store_path=str(tmp_path / "fleet.sqlite3"), vehicles=["vehicle1"])
        server = MapServerNode(ctxs[0], {"map_server_node": cfg})
        v = ZenohContext("mapper_node", "vehicle1", domain, connect=[endpoint])
        ctxs.append(v)
        for _ in range(2):
            v.create_publisher(
                "/vehicle1/mapper_node/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(depth=20)
            )

        def delta_publishers():
            return [
                e for e in ctxs[0].graph() if e.kind == "MP" and e.topic == "/vehicle1/mapper_node/map_delta"
            ]

        with caplog.at_level(logging.WARNING, logger="gs_mapping.map_server_node"):
            spin_until(ctxs, lambda: len(server.bindings["vehicle1"].tokens or ()) >= 2, 30)
            seen = delta_publishers()
            assert len(seen) == 2 and len({e.zid for e in seen}) == 1, seen
            assert len(server.bindings["vehicle1"].tokens) == 2
            server.on_diagnostics_timer()
        assert json.loads(server.diag.values["vehicle vehicle1"])["publishers"] == 1
        assert not [r for r in caplog.records if "processes publish" in r.getMessage()]
    finally:
        if server is not None:
            server.close()
        for c in ctxs:
            c.close()
        router.close()


# ------------------------------------------------------------------------------------------------
# map_server_node binding: a container the merge refuses holds nothing back, so it binds nothing


def test_a_refused_container_of_another_map_does_not_hold_the_namespace_for_that_map(tmp_path):
    """A damaged container of another map id (its header readable, its body not) is refused by the
    merge; nothing of it is held, so it says nothing of whose the namespace is. The vehicle's own
    deltas that arrive before its snapshot (a late joiner's first messages) are held and applied
    once the snapshot comes: the global map is the rule over the vehicle's own map."""
    from test_outside_fleet import _delta, _rule, _server, _stream, _vmap

    from gs_mapping.runtime.replay import ReplayBus

    server = _server(ReplayBus(), tmp_path / "fleet.sqlite3", global_period_s=0.0)
    try:
        v1 = server.bindings["vehicle1"]
        other = _vmap(30, seed=9, origin=(80.0, 0.0, 0.0))
        bad = bytearray(_delta(other, other, 5, 7001))
        bad[-1] ^= 0xFF
        assert server.ingest(bytes(bad), v1) == "rejected" and server.merge.vehicles[5].state is None
        stream, states = _stream(1, 3, seed=1, origin=(0.0, 0.0, 0.0))
        assert [server.ingest(c, v1) for c in stream[1:]] == ["buffered"] * 3, v1.last_error
        # before its snapshot the namespace's diagnostics are of what it holds: the vehicle's deltas
        server.on_diagnostics_timer()
        info = json.loads(server.diag.values["vehicle vehicle1"])
        held = (info["map_id"], info["pending"], info["bytes_in"], info["silent"])
        assert held == (1, 3, sum(len(c) for c in stream[1:]), False), info
        assert (info["liveliness"], info["publishers"]) == ("n/a", None)  # (no graph on this runtime)
        assert server.ingest(stream[0], v1) == "snapshot"
        assert server.merge.global_map.equals(_rule({1: states[103]}))
    finally:
        server.close()


def test_over_zenoh_the_shared_namespace_warning_is_said_once_per_episode(tmp_path, caplog):
    """Processes publishing a vehicle's deltas (real Zenoh sessions through a real router): two
    → the warning, once; a third → still that one line; back to one → quiet; a second one again →
    said again (a new episode). ``publishers`` follows the distinct session ids of the ``MP``
    tokens in the real graph at each step."""
    pytest.importorskip("zenoh")

    from test_zenoh_runtime import _free_port

    from gs_mapping.nodes.context import QoS
    from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    endpoint, domain, topic = f"tcp/127.0.0.1:{_free_port()}", 43, "/vehicle1/mapper_node/map_delta"
    router = run_router([endpoint])
    server_ctx = ZenohContext("map_server_node", "", domain, connect=[endpoint])
    ctxs: list[ZenohContext] = [server_ctx]
    server = None

    def sessions() -> int:
        return len({e.zid for e in server_ctx.graph() if e.kind == "MP" and e.topic == topic})

    def settle(n: int) -> int:
        spin_until(ctxs, lambda: sessions() == n and server.bindings["vehicle1"].publishers == n, 30)
        server.on_diagnostics_timer()
        return json.loads(server.diag.values["vehicle vehicle1"])["publishers"]

    def vehicle() -> ZenohContext:
        v = ZenohContext("mapper_node", "vehicle1", domain, connect=[endpoint])
        v.create_publisher("~/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(depth=20))
        ctxs.append(v)
        return v

    def said() -> int:
        return sum("processes publish its map deltas" in r.getMessage() for r in caplog.records)

    def leave(v: ZenohContext) -> None:
        ctxs.remove(v)
        v.close()

    try:
        cfg = MapServerNodeConfig(store_path=str(tmp_path / "fleet.sqlite3"), vehicles=["vehicle1"])
        server = MapServerNode(server_ctx, {"map_server_node": cfg})
        with caplog.at_level(logging.WARNING, logger="gs_mapping.map_server_node"):
            a, b = vehicle(), vehicle()
            assert (settle(2), said()) == (2, 1)
            c = vehicle()
            assert (settle(3), said()) == (3, 1)
            leave(b)
            leave(c)
            assert (settle(1), said()) == (1, 1)
            vehicle()
            assert (settle(2), said()) == (2, 2)
        assert a in ctxs
    finally:
        if server is not None:
            server.close()
        for c in ctxs:
            c.close()
        router.close()


# ------------------------------------------------------------------------------------------------
# subscriptions_joined on DDS: Cyclone's own total count of matched readers


def test_over_dds_a_reader_that_replaced_another_counts_as_joined():
    """Cyclone's publication-matched status: a reader leaving and another joining leaves the current
    count at 1 and the total at 2; the snapshot timers see the join only through the total."""
    pytest.importorskip("cyclonedds")
    import gc

    from gs_mapping.nodes.context import LATCHED_QOS, subscriptions_joined
    from gs_mapping.runtime.dds import DdsContext

    topic, kind = "/gs_test65/map_snapshot", "std_msgs/msg/UInt8MultiArray"
    server = DdsContext("server", domain_id=65)
    try:
        pub = server.create_publisher(topic, kind, LATCHED_QOS)
        for k in (1, 2):
            rx = DdsContext(f"rx{k}", domain_id=65)
            rx.create_subscription(topic, kind, LATCHED_QOS, lambda m: None)
            server.spin(until=lambda: subscriptions_joined(pub) == k, timeout_s=10)  # noqa: B023
            assert (pub.subscription_count(), subscriptions_joined(pub)) == (1, k)
            rx.close()
            del rx  # (its reader goes with the last reference to it, as with rclpy's destroy_node)
            gc.collect()
            server.spin(until=lambda: pub.subscription_count() == 0, timeout_s=10)
            assert pub.subscription_count() == 0
    finally:
        server.close()


# ------------------------------------------------------------------------------------------------
# mapper_node's snapshot timer: a receiver replacing another gets a fresh snapshot


def test_a_mapper_sends_a_fresh_snapshot_to_a_receiver_that_replaced_another():
    """``snapshot_period_s: 0`` = at start and when subscribers join. A receiver that leaves as
    another joins (between two looks) leaves the current count at 1: the joiner must still get a
    snapshot published after it joined, besides the latched one it is served."""
    pytest.importorskip("torch")
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapperNode.load_config(None)
    cfg["mapper"].device = "cpu"
    cfg["mapper_node"].snapshot_period_s = 0.0
    node = MapperNode(bus.context("mapper_node"), cfg)
    topic = "/mapper_node/map_snapshot"

    def run(seconds: float) -> None:
        for _ in range(int(seconds * 4)):
            bus.advance(bus.now_ns + 250_000_000)

    try:
        first: list = []
        bus.subscribe(topic, first.append)
        run(3)
        assert len(first) == 2  # the latched one of the start, then one as it joined
        bus.subscribers[topic].remove(first.append)  # (that receiver's process is gone) …
        second: list = []
        bus.subscribe(topic, second.append)  # … and another's joined before the mapper looked again
        run(3)
        assert len(second) == 2 and bytes(second[1].data) == bytes(second[0].data)  # (latched, fresh)
    finally:
        node.close()


# ------------------------------------------------------------------------------------------------
# rclpy_runtime's qos_overrides: history is one of the policies, and keep-all needs no depth


def test_a_keep_all_history_override_is_applied_whatever_depth_it_names(ros):
    """``history: keep_all`` in qos_overrides reaches rcl (rclpy's defaults let history be
    overridden); its depth is not used by keep-all, so the ``depth: 0`` a DDS-minded params file
    writes beside it is no error (only a keep-last depth below 1 is)."""
    rclpy = ros
    from rclpy.qos import HistoryPolicy

    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import close_node, create_node

    delta = "/mapper_node/map_delta"
    context = rclpy.Context()
    args = ["r", "--ros-args", "-p", f"qos_overrides.{delta}.subscription.history:=keep_all"]
    rclpy.init(args=[*args, "-p", f"qos_overrides.{delta}.subscription.depth:=0"], context=context)
    node, obj = create_node(MapReceiverNode, context)
    try:
        (sub,) = [s for s in node.subscriptions if s.topic_name == delta]
        assert sub.qos_profile.history == HistoryPolicy.KEEP_ALL
    finally:
        context.try_shutdown()
        close_node(node, obj)


def test_a_publisher_qos_override_rclpy_cannot_apply_on_a_private_topic_is_one_line_and_exit_2(ros, capsys):
    """``~/map_cloud`` (the node's own, as rcl expands it) with a durability rclpy has no value for:
    one line naming the parameter as given, exit status 2, the node not started; rclpy itself
    names the override it could not read (the test checks its words are in the line)."""
    import threading

    rclpy = ros
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode
    from gs_mapping.runtime.rclpy_runtime import run_node

    name = "qos_overrides./map_receiver_node/map_cloud.publisher.durability"
    context, result = rclpy.Context(), []
    t = threading.Thread(
        target=lambda: result.append(
            run_node(MapReceiverNode, ["n", "--ros-args", "-p", f"{name}:=sometimes"], context)
        )
    )
    t.start()
    t.join(30)
    if t.is_alive():
        context.try_shutdown()
        t.join(30)
    assert result == [2], "the node started with the override it could not apply"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].count(name) == 1 and "sometimes" in err[0], err


# ------------------------------------------------------------------------------------------------
# the snapshot timers' join test on rclpy: a receiver leaving is no join


@pytest.mark.parametrize("name", ["map_server_node", "mapper_node"])
def test_on_rclpy_a_receiver_leaving_sends_the_map_to_nobody(ros, tmp_path, name):
    """On rclpy the join test reads the current subscription count (rclpy keeps no total): a
    receiver joining raises it and gets a fresh snapshot; one leaving lowers it, and a snapshot then
    would go to receivers that hold it already (a whole global map, at snapshot_period_s 0). A
    receiver that stays counts what the node sends, through rclpy's own executor. The same for a
    mapper's snapshots."""
    rclpy = ros
    if name == "mapper_node":  # (its mapper is torch's; Humble's venv has none)
        pytest.importorskip("torch")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import UInt8MultiArray

    from gs_mapping.nodes.context import LATCHED_QOS
    from gs_mapping.nodes.registry import node_class
    from gs_mapping.runtime.rclpy_runtime import _qos_profile, close_node, create_node

    topic = f"/{name}/map_snapshot"
    context = rclpy.Context()
    args = ["s", "--ros-args", "-p", f"{name}.snapshot_period_s:=0.0", "-p", "mapper.device:=cpu"]
    args += (
        ["-p", f"map_server_node.store_path:={tmp_path / 'fleet.sqlite3'}"]
        if name == "map_server_node"
        else []
    )
    rclpy.init(args=args, context=context)
    node, obj = create_node(node_class(name), context)
    stays = Node("stays", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(stays)
    got: list = []

    def look() -> int:  # (what the node's timer does each second)
        obj.on_snapshot_timer()
        for _ in range(20):
            executor.spin_once(timeout_sec=0.01)
        return len(got)

    try:
        stays.create_subscription(UInt8MultiArray, topic, got.append, _qos_profile(LATCHED_QOS))
        before = look()  # (the latched one of the start, and one as it joined)
        assert before >= 1
        other = Node("leaves", context=context)
        sub = other.create_subscription(UInt8MultiArray, topic, lambda m: None, _qos_profile(LATCHED_QOS))
        assert look() == before + 1  # a join: a fresh snapshot
        other.destroy_subscription(sub)
        other.destroy_node()
        assert look() == before + 1  # a leave: none
    finally:
        stays.destroy_node()
        context.try_shutdown()
        close_node(node, obj)
