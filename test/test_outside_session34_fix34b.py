"""Session 34 (fix34b): what a ROS 2 fleet operator meets, left by the day's reviews.

- A fleet store that cannot be written any more (disk full, quota, a remount read-only) fails at a
  commit, not at open: its line gave SQLite's words alone ("cannot commit (disk I/O error)"), where
  the same cause met at open says what to check. Made for real: a file size limit (RLIMIT_FSIZE, the
  kernel refusing the write as a full disk or a quota does) in a process of its own.
- ``qos_overrides`` in a params file are applied only under rclpy; ``gs-mapping run`` / ``replay``
  (DDS, Zenoh, the replay bus) read the file and kept them unread without a word.
- Two processes publishing as one mapper (one name and namespace, launched twice): a
  map_receiver_node said nothing of it; its diagnostics now count the delta publishers.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from conftest import spin_until

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")

# ------------------------------------------------------------------------------------------------
# a store that fills up while the server runs

_FILL_UP = r"""
import os, resource, signal, sys
from gs_map_share.fleet_store import FleetStore, Row, identity
from gs_map_share.quantize import QuantParams

path, fresh = sys.argv[1], sys.argv[2]
ident = identity(1_000_000, "map", QuantParams.from_quality(3), 0)
s = FleetStore(path, ident)
s.commit([(1, Row(5, 0, b"vehicle snapshot"))])
# from here the kernel refuses to grow any file past what the store holds now (EFBIG, as a full
# disk's ENOSPC or a quota's EDQUOT): the next commit's WAL pages do not fit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
room = os.path.getsize(path) + os.path.getsize(path + "-wal") + 4 * 4096
resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))
for what, do in (
    ("COMMIT", lambda: s.commit([(1, Row(6, 5, os.urandom(1 << 20)))])),
    # the same cause met at open: a new store on that disk (no room for its first page)
    ("OPEN", lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512)) or FleetStore(fresh, ident).close()),
):
    try:
        do()
        print(what, "ok")
    except Exception as exc:
        print(what, type(exc).__name__, exc)
"""


def test_a_store_that_fills_up_at_a_commit_says_what_to_check_as_at_open(tmp_path):
    store, fresh = tmp_path / "fleet.sqlite3", tmp_path / "fresh.sqlite3"
    r = subprocess.run(
        [sys.executable, "-c", _FILL_UP, str(store), str(fresh)],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    said = dict(ln.split(" ", 1) for ln in r.stdout.splitlines() if ln.startswith(("COMMIT", "OPEN")))
    assert "Traceback" not in r.stderr, r.stderr
    commit, at_open = said.get("COMMIT", ""), said.get("OPEN", "")
    assert commit.startswith(f"FleetStoreError {store}: cannot commit"), r.stdout + r.stderr
    assert at_open.startswith("FleetStoreError"), r.stdout + r.stderr
    # the line names the cause's class and what to check, in the words the open error uses
    hint = at_open.rsplit("; ", 1)[1]
    assert "permissions" in hint and "free space" in hint, at_open
    assert commit.endswith("; " + hint), commit
    assert "corrupt" not in commit
    # nothing acknowledged is lost, nothing half-written: the file, read with sqlite3, holds the
    # first commit alone
    db = sqlite3.connect(str(store))
    try:
        assert db.execute("SELECT * FROM vehicle_log").fetchall() == [(1, 5, 0, b"vehicle snapshot")]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


# ------------------------------------------------------------------------------------------------
# qos_overrides given to a runtime that does not apply them

_QOS_FILE = """/**:
  ros__parameters:
    qos_overrides:
      /map_receiver_node/map_cloud:
        publisher: {durability: volatile}
    qos_overrides./mapper_node/map_delta.subscription.reliability: best_effort
    map_receiver_node: {min_opacity: 0.1}
"""
_QOS_NAMES = (
    "qos_overrides./map_receiver_node/map_cloud.publisher.durability",
    "qos_overrides./mapper_node/map_delta.subscription.reliability",
)


def _qos_warnings(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "qos_overrides" in ln]


def test_gs_mapping_run_says_once_that_qos_overrides_are_not_applied(tmp_path):
    """``gs-mapping run`` (Cyclone DDS here) with the params file an rclpy launch uses: the node runs
    (the file is good), and one warning names every override and says the built-in QoS stays."""
    f = tmp_path / "qos.yaml"
    f.write_text(_QOS_FILE)
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "run", "map_receiver_node", "--config", str(f)]
        + ["--duration", "0.3", "--domain-id", "151"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert r.returncode == 0 and "map_receiver_node: ready" in r.stdout, r.stdout + r.stderr
    (said,) = _qos_warnings(r.stderr)
    assert all(n in said for n in _QOS_NAMES) and "built-in QoS" in said and str(f) in said, said


def test_replay_of_several_nodes_says_it_once(tmp_path, caplog):
    """``gs-mapping replay`` runs several nodes from one ``/**`` file: one warning, not one per node."""
    import logging

    import numpy as np

    from gs_mapping.bag import BagWriter
    from gs_mapping.cli import main
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import transforms_to_tf_message
    from gs_mapping.say_once import forget

    forget()
    f, bag = tmp_path / "qos.yaml", tmp_path / "bag"
    f.write_text(_QOS_FILE)
    with BagWriter(bag) as w:
        w.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        t = Transform(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
        w.write("/tf", 10**9, transforms_to_tf_message([TransformStamped("map", "base_link", 10**9, t)]))
    argv = ["replay", str(bag), "--out", str(tmp_path / "out"), "--config", str(f)]
    with caplog.at_level(logging.WARNING, logger="gs_mapping"):
        assert main([*argv, "--nodes", "map_receiver_node,map_server_node", "--json"]) == 0
    said = [r.getMessage() for r in caplog.records if "qos_overrides" in r.getMessage()]
    assert len(said) == 1 and all(n in said[0] for n in _QOS_NAMES), said


# ------------------------------------------------------------------------------------------------
# two processes publishing as one mapper: what a map_receiver_node says


def _two_mappers_maps():
    """The maps two mappers launched with one name and namespace send: both map id 1, A numbered
    from 100, B (started later, its clock further on) from 500."""
    from test_outside_fleet import _stream

    a = _stream(1, 2, seed=1, origin=(0.0, 0.0, 0.0), first_seq=100)
    b = _stream(1, 2, seed=2, origin=(60.0, 0.0, 0.0), first_seq=500)
    return a, b


def _said_shared(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if "publishers on /vehicle1/mapper_node/map_delta" in r.getMessage()
    ]


def test_on_the_replay_bus_a_receiver_names_two_publishers_of_its_deltas(caplog):
    """Two mapper_node contexts in namespace vehicle1 on one bus (a launch file run twice) and a
    map_receiver_node following vehicle1's deltas: its diagnostics say 2 publishers (the two made
    here) and the log says it once; the map it holds is one of the two (B's, the newest
    snapshot), never both, which is what the warning is for."""
    import logging

    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.context import LATCHED_QOS, QoS
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode, MapReceiverNodeConfig
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    rx = MapReceiverNode(
        bus.context("map_receiver_node", "vehicle1"), {"map_receiver_node": MapReceiverNodeConfig()}
    )
    bus.advance(2 * 10**9)
    assert "publishers" not in rx.diag.values  # nobody publishes on the bus yet: not counted
    mappers = []
    for _ in range(2):
        ctx = bus.context("mapper_node", "vehicle1")
        typ = "std_msgs/msg/UInt8MultiArray"
        mappers.append(
            (
                ctx.create_publisher("~/map_delta", typ, QoS(depth=20)),
                ctx.create_publisher("~/map_snapshot", typ, LATCHED_QOS),
            )
        )
    with caplog.at_level(logging.WARNING, logger="gs_mapping.map_receiver_node"):
        bus.advance(bus.now_ns + 10**9)
        assert rx.diag.values["publishers"] == 2
        (a, _), (b, b_states) = _two_mappers_maps()
        for (_, snap), stream in zip(mappers, (a, b), strict=True):
            snap.publish(bytes_to_uint8_multiarray(stream[0]))
        for k in (1, 2):
            for (delta, _), stream in zip(mappers, (a, b), strict=True):
                delta.publish(bytes_to_uint8_multiarray(stream[k]))
        bus.advance(bus.now_ns + 3 * 10**9)
    said = _said_shared(caplog)
    assert len(said) == 1 and said[0].startswith("2 publishers"), said
    assert rx.store.state.equals(b_states[502])


def test_over_zenoh_a_receiver_names_two_processes_publishing_as_one_mapper(caplog):
    """The same over a real Zenoh router, each mapper a Zenoh session of its own (as a process
    is): ``publishers`` is 2 while both are up, said once, and 1 once one session closes."""
    pytest.importorskip("zenoh")
    import logging

    from test_zenoh_runtime import _free_port

    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.context import LATCHED_QOS, QoS
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode, MapReceiverNodeConfig
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    endpoint, domain = f"tcp/127.0.0.1:{_free_port()}", 45
    router = run_router([endpoint])
    ctxs: list[ZenohContext] = []

    try:
        ctxs.append(ZenohContext("map_receiver_node", "vehicle1", domain, connect=[endpoint]))
        rx = MapReceiverNode(ctxs[0], {"map_receiver_node": MapReceiverNodeConfig(diagnostics_period_s=0.2)})
        mappers = []
        for _ in range(2):
            v = ZenohContext("mapper_node", "vehicle1", domain, connect=[endpoint])
            ctxs.append(v)
            typ = "std_msgs/msg/UInt8MultiArray"
            mappers.append(
                (
                    v,
                    v.create_publisher("~/map_delta", typ, QoS(depth=20)),
                    v.create_publisher("~/map_snapshot", typ, LATCHED_QOS),
                )
            )
        with caplog.at_level(logging.WARNING, logger="gs_mapping.map_receiver_node"):
            assert spin_until(ctxs, lambda: rx.diag.values.get("publishers") == 2, 30), rx.diag.values
            # published once the receiving side's subscriptions are in each publisher's graph, as a
            # mapper's snapshot timer publishes when a subscription joins
            pubs = [p for _, delta, snap in mappers for p in (delta, snap)]
            assert spin_until(ctxs, lambda: all(p.subscription_count() >= 1 for p in pubs), 30)
            a, b = _two_mappers_maps()

            # one process's stream, then the other's, each taken before the next (the snapshot
            # subscription is keep-last 1, LATCHED_QOS: two snapshots arriving within one spin keep
            # only the later arrival, which would make the winner a matter of timing)
            for (v, delta, snap), (stream, states), last in zip(mappers, (a, b), (102, 502), strict=True):
                snap.publish(bytes_to_uint8_multiarray(stream[0], v.factory))
                for k in (1, 2):
                    delta.publish(bytes_to_uint8_multiarray(stream[k], v.factory))

                def taken(w=states[last]) -> bool:
                    return rx.store.state is not None and rx.store.state.equals(w)

                assert spin_until(ctxs, taken, 30)
            spin_until(ctxs, lambda: False, 1.0)  # (five more reports with both up: still said once)
        said = _said_shared(caplog)
        assert len(said) == 1 and said[0].startswith("2 publishers"), said
        ctxs.remove(mappers[0][0])
        mappers[0][0].close()
        assert spin_until(ctxs, lambda: rx.diag.values.get("publishers") == 1, 30), rx.diag.values
    finally:
        for c in ctxs:
            c.close()
        router.close()


def test_over_cyclone_dds_the_count_is_the_matched_writers():
    """DDS: each mapper a participant of its own; the count is the delta reader's matched writers
    (its subscription-matched status), 2 while both are up, 1 once one participant is gone."""
    pytest.importorskip("cyclonedds")
    from gs_mapping.nodes.context import QoS
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode, MapReceiverNodeConfig
    from gs_mapping.runtime.dds import DdsContext

    domain = 152
    rx_ctx = DdsContext("map_receiver_node", "vehicle1", domain)
    mappers = [DdsContext("mapper_node", "vehicle1", domain) for _ in range(2)]
    try:
        rx = MapReceiverNode(rx_ctx, {"map_receiver_node": MapReceiverNodeConfig(diagnostics_period_s=0.1)})
        for v in mappers:
            v.create_publisher("~/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(depth=20))
        rx_ctx.spin(until=lambda: rx.diag.values.get("publishers") == 2, timeout_s=20)
        assert rx.diag.values.get("publishers") == 2, rx.diag.values
        mappers.pop().close()
        rx_ctx.spin(until=lambda: rx.diag.values.get("publishers") == 1, timeout_s=20)
        assert rx.diag.values.get("publishers") == 1, rx.diag.values
    finally:
        for c in (rx_ctx, *mappers):
            c.close()


def test_under_rclpy_the_count_is_rmws_on_the_remapped_topic():
    """rclpy: rmw's publisher count on the topic the subscription took, remapping included (a
    receiver remapped to a relay's topic counts the relay's publishers, not the mapper's)."""
    import importlib.util

    if importlib.util.find_spec("rclpy") is None:
        pytest.skip("rclpy-intellisense (rclpy's Python layer) is not in this venv")
    import rclpy_standin
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.messages import RclpyFactory

    RclpyFactory._class.cache_clear()
    rclpy, _, interfaces = rclpy_standin.install(get_typestore(Stores.ROS2_HUMBLE))
    try:
        from std_msgs.msg import UInt8MultiArray

        from gs_mapping.nodes.map_receiver_node import MapReceiverNode
        from gs_mapping.runtime.rclpy_runtime import close_node, create_node

        others = rclpy.Context()  # (the mappers and the relay: processes of their own, no -r rules)
        rclpy.init(args=["others"], context=others)
        probes = [rclpy.create_node("mapper_node", namespace="/vehicle1", context=others) for _ in range(2)]
        probes.append(rclpy.create_node("relay", context=others))
        for p in probes[:2]:
            p.create_publisher(UInt8MultiArray, "~/map_delta", 10)
        probes[2].create_publisher(UInt8MultiArray, "/relay/map_delta", 10)
        try:
            for remap, want in (([], 2), (["-r", "/vehicle1/mapper_node/map_delta:=/relay/map_delta"], 1)):
                context = rclpy.Context()
                rclpy.init(args=["r", "--ros-args", "-r", "__ns:=/vehicle1", *remap], context=context)
                node, obj = create_node(MapReceiverNode, context)
                try:
                    obj.on_diagnostics_timer()
                    assert obj.diag.values["publishers"] == want, (remap, obj.diag.values)
                finally:
                    context.try_shutdown()
                    close_node(node, obj)
        finally:
            for p in probes:
                p.destroy_node()
            others.try_shutdown()
    finally:
        RclpyFactory._class.cache_clear()
        rclpy_standin.uninstall(interfaces)
