"""Outside review of fleet map sharing (session 34, user34b): what a fleet operator meets.

Each test drives the real MapServerNode on real SQLite files and real codec containers, and compares
the global map with docs/fleet.md's merge rule written out (test_guards_survivors7._rule) over the
vehicles' own maps as built here, never with the server's own bookkeeping.
"""

from __future__ import annotations

import json

import pytest
from conftest import spin_until
from test_outside_fleet import _delta, _rule, _send, _server, _stream, _vmap

from gs_mapping.runtime.replay import ReplayBus

# ------------------------------------------------------------------------------------------------
# a stray delta of another fleet's map reaches a vehicle's topic before the vehicle's first snapshot


def test_a_stray_delta_of_another_map_does_not_lock_the_vehicle_out(tmp_path):
    """docs/fleet.md: "A namespace is bound to the map id of its first container taken". A delta
    that only waits for a snapshot (the server cannot apply it, so nothing proves whose it is: here
    one of another fleet's map 5, on the same quantisation, as a shared router can carry) took
    nothing; it bound vehicle1 to map 5 and refused every container of the real vehicle (map 1),
    so its map never reached the global map. The vehicle's own snapshot and deltas must be taken,
    the global map be the rule over the vehicle's own map, before and after a restart."""
    store = tmp_path / "fleet.sqlite3"
    server = _server(ReplayBus(), store, global_period_s=0.0)
    v1 = server.bindings["vehicle1"]
    other = _vmap(30, seed=9, origin=(80.0, 0.0, 0.0))
    assert server.ingest(_delta(other, other, 5, 7001), v1) == "buffered"
    stream, states = _stream(1, 3, seed=1, origin=(0.0, 0.0, 0.0))
    outcomes = [server.ingest(c, v1) for c in stream]
    # a second stray delta of that map, now that the namespace is the vehicle's: refused
    assert server.ingest(_delta(other, other, 5, 7002), v1) == "rejected"
    server.on_diagnostics_timer()
    info = json.loads(server.diag.values["vehicle vehicle1"])
    server.close()
    assert outcomes == ["snapshot", "applied", "applied", "applied"], info["last_error"]
    want = _rule({1: states[103]})
    assert server.merge.global_map.equals(want)
    assert (info["map_id"], info["seq"], info["rejected"]) == (1, 103, 1)
    again = _server(ReplayBus(), store)  # the binding stored is the vehicle's own
    try:
        assert again.merge.global_map.equals(want)
        assert again.bindings["vehicle1"].map_id == 1
    finally:
        again.close()


def test_stray_deltas_of_many_maps_on_one_namespace_are_held_as_one_vehicles(tmp_path):
    """Before its first snapshot, what a namespace holds back stays bounded as one vehicle's
    (docs/fleet.md: max_pending, 64 MB): deltas of further map ids are refused, not each given a
    vehicle of its own; the first container taken still binds the namespace."""
    server = _server(ReplayBus(), tmp_path / "fleet.sqlite3", global_period_s=0.0)
    v1 = server.bindings["vehicle1"]
    other = _vmap(20, seed=9, origin=(80.0, 0.0, 0.0))
    got = [server.ingest(_delta(other, other, mid, 7001), v1) for mid in range(5, 25)]
    assert got == ["buffered"] + ["rejected"] * 19
    assert sorted(server.merge.vehicles) == [5]
    stream, states = _stream(1, 2, seed=1, origin=(0.0, 0.0, 0.0))
    assert [server.ingest(c, v1) for c in stream] == ["snapshot", "applied", "applied"]
    assert server.merge.global_map.equals(_rule({1: states[102]}))
    server.close()


# ------------------------------------------------------------------------------------------------
# a receiver leaves as another joins: the joiner must get the map as it is, not the stale latched one


def _drop_node(bus: ReplayBus, node) -> None:
    """``node`` leaves the bus (its process gone): its subscriptions with it."""
    for topic, callbacks in bus.subscribers.items():
        bus.subscribers[topic] = [
            cb
            for cb in callbacks
            if getattr(cb, "__self__", None) is not node
            and getattr(getattr(cb, "__wrapped__", None), "__self__", None) is not node
        ]


def test_a_receiver_joining_as_another_leaves_gets_the_current_global_map(tmp_path):
    """docs/fleet.md: snapshot_period_s 0 = "at start and when subscribers join". The server saw a
    join only as a rise in the subscriber count: one receiver leaving as another joined (between two
    looks) left the count as it was, no snapshot went out, and the joiner kept the stale latched
    snapshot (here the empty map of the server's start) for ever, the vehicle's deltas buffered
    behind it. The joiner must hold the rule over the vehicle's own map."""
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode, MapReceiverNodeConfig

    def _receiver(bus: ReplayBus, ns: str) -> MapReceiverNode:
        cfg = MapReceiverNodeConfig(
            delta_topic="/map_server_node/map_delta", snapshot_topic="/map_server_node/map_snapshot"
        )
        return MapReceiverNode(bus.context("map_receiver_node", ns), {"map_receiver_node": cfg})

    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0, snapshot_period_s=0.0)
    rx1 = _receiver(bus, "rx1")
    for _ in range(5):  # rx1 seen: a snapshot of the (empty) map goes out and stays latched
        bus.advance(bus.now_ns + 10**9)
    assert rx1.store.stats["snapshot"] == 1 and len(rx1.store.state) == 0
    stream, states = _stream(1, 4, seed=1, origin=(0.0, 0.0, 0.0))
    for c in stream:
        _send(bus, "vehicle1", c)
    bus.advance(bus.now_ns + 2 * 10**9)
    want = _rule({1: states[104]})
    assert rx1.store.state.equals(want)
    _drop_node(bus, rx1)
    rx2 = _receiver(bus, "rx2")  # before the server looks at its subscribers again
    bus.advance(bus.now_ns + 5 * 10**9)
    server.close()
    assert rx2.store.state is not None and rx2.store.state.equals(want), (rx2.store.seq, rx2.store.stats)


def test_over_zenoh_a_receiver_that_replaced_another_gets_the_current_global_map(tmp_path):
    """The same over a real Zenoh router, with the real nodes: map_server_node, a vehicle's
    publishers, map_receiver_node rx1 following; rx1's session closes and rx2's opens, and the
    server looks again only once its graph shows both (its subscriber count is 1 before and
    after). rx2 must hold the rule over the vehicle's own map, not the stale latched snapshot."""
    pytest.importorskip("zenoh")

    from test_zenoh_runtime import _free_port

    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.context import LATCHED_QOS, QoS
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode, MapReceiverNodeConfig
    from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    endpoint, domain = f"tcp/127.0.0.1:{_free_port()}", 47
    router = run_router([endpoint])
    ctxs: dict[str, ZenohContext] = {}
    server = None

    def context(key: str, name: str, ns: str = "") -> ZenohContext:
        ctxs[key] = ZenohContext(name, ns, domain, connect=[endpoint])
        return ctxs[key]

    def receiver(ns: str) -> MapReceiverNode:
        cfg = MapReceiverNodeConfig(
            delta_topic="/map_server_node/map_delta", snapshot_topic="/map_server_node/map_snapshot"
        )
        return MapReceiverNode(context(ns, "map_receiver_node", ns), {"map_receiver_node": cfg})

    try:
        cfg = MapServerNodeConfig(
            store_path=str(tmp_path / "fleet.sqlite3"),
            vehicles=["vehicle1"],
            global_period_s=0.0,
            snapshot_period_s=0.0,
        )
        server = MapServerNode(context("server", "map_server_node"), {"map_server_node": cfg})
        rx1 = receiver("rx1")
        vehicle = context("vehicle", "mapper_node", "vehicle1")
        pub_delta = vehicle.create_publisher("~/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(depth=20))
        pub_snap = vehicle.create_publisher("~/map_snapshot", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS)
        assert spin_until(
            ctxs.values(),
            lambda: rx1.store.ready
            and pub_delta.subscription_count() > 0
            and pub_snap.subscription_count() > 0,
            30,
        )
        assert server.pub_snapshot.subscription_count() == 1
        spin_until(
            ctxs.values(), lambda: False, 1.5
        )  # the server looks at its subscribers (every second): rx1 seen
        stream, states = _stream(1, 4, seed=1, origin=(0.0, 0.0, 0.0))
        pub_snap.publish(bytes_to_uint8_multiarray(stream[0], vehicle.factory))
        for c in stream[1:]:
            pub_delta.publish(bytes_to_uint8_multiarray(c, vehicle.factory))
        want = _rule({1: states[104]})
        assert spin_until(
            ctxs.values(), lambda: rx1.store.state is not None and rx1.store.state.equals(want), 30
        )

        ctxs.pop("rx1").close()
        rx2 = receiver("rx2")
        graph = ctxs["server"].graph

        def swapped() -> bool:
            return server.pub_snapshot.subscription_count() == 1 and any(
                e.kind == "MS" and e.namespace == "/rx2" and e.topic.endswith("map_snapshot") for e in graph()
            )

        assert spin_until([c for k, c in ctxs.items() if k != "server"], swapped, 30)
        assert spin_until(
            ctxs.values(), lambda: rx2.store.state is not None and rx2.store.state.equals(want), 10
        ), (
            rx2.store.seq,
            server.merge.global_seq,
        )
    finally:
        if server is not None:
            server.close()
        for c in ctxs.values():
            c.close()
        router.close()


# ------------------------------------------------------------------------------------------------
# two vehicles started in one namespace (a copied launch file)


def test_over_zenoh_two_vehicles_in_one_namespace_are_named_in_its_diagnostics(tmp_path, caplog):
    """Two mapper processes publish in namespace vehicle1 with map id 1 (a copied launch file):
    to the server they are one map stream, the newer numbering wins, and the other's containers
    count as replays: its map never reaches the global map. The diagnostics said liveliness
    "alive" and nothing more. They must say how many processes publish the vehicle's deltas (2, the
    real count here) and the log must say it once; back to 1 when one of them goes."""
    pytest.importorskip("zenoh")
    import logging

    from test_zenoh_runtime import _free_port

    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.context import LATCHED_QOS, QoS
    from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    endpoint, domain = f"tcp/127.0.0.1:{_free_port()}", 46
    router = run_router([endpoint])
    ctxs: list[ZenohContext] = []
    server = None

    def info() -> dict:
        server.on_diagnostics_timer()
        return json.loads(server.diag.values["vehicle vehicle1"])

    try:
        ctxs.append(ZenohContext("map_server_node", "", domain, connect=[endpoint]))
        cfg = MapServerNodeConfig(
            store_path=str(tmp_path / "fleet.sqlite3"), vehicles=["vehicle1"], global_period_s=0.0
        )
        server = MapServerNode(ctxs[0], {"map_server_node": cfg})
        vehicles = []
        for seed, x, first in ((1, 0.0, 100), (2, 60.0, 500)):
            v = ZenohContext("mapper_node", "vehicle1", domain, connect=[endpoint])
            ctxs.append(v)
            pub_delta = v.create_publisher("~/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(depth=20))
            pub_snap = v.create_publisher("~/map_snapshot", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS)
            vehicles.append(
                (v, pub_delta, pub_snap, _stream(1, 2, seed=seed, origin=(x, 0.0, 0.0), first_seq=first))
            )
        with caplog.at_level(logging.WARNING, logger="gs_mapping.map_server_node"):
            assert spin_until(ctxs, lambda: info()["publishers"] == 2, 30), info()
            # published once the receiving side's subscriptions are in each publisher's graph, as a
            # mapper's snapshot timer publishes when a subscription joins
            pubs = [p for _, pub_delta, pub_snap, _ in vehicles for p in (pub_delta, pub_snap)]
            assert spin_until(ctxs, lambda: all(p.subscription_count() >= 1 for p in pubs), 30)
            # one process's stream, then the other's, each taken before the next (the snapshot
            # subscription is keep-last 1, LATCHED_QOS: two snapshots arriving within one spin keep
            # only the later arrival, which would make the winner a matter of timing)
            for (v, pub_delta, pub_snap, (stream, _)), last in zip(vehicles, (102, 502), strict=True):
                pub_snap.publish(bytes_to_uint8_multiarray(stream[0], v.factory))
                for k in (1, 2):
                    pub_delta.publish(bytes_to_uint8_multiarray(stream[k], v.factory))
                assert spin_until(ctxs, lambda: info()["seq"] == last, 30), info()  # noqa: B023
        said = [
            r.getMessage() for r in caplog.records if "processes publish its map deltas" in r.getMessage()
        ]
        assert len(said) == 1 and "vehicle1: 2 processes" in said[0], said
        # the global map is one vehicle's (B's numbering is newer): A's map is what the warning is for
        assert server.merge.global_map.equals(_rule({1: vehicles[1][3][1][502]}))
        ctxs.remove(vehicles[0][0])
        vehicles[0][0].close()
        assert spin_until(ctxs, lambda: info()["publishers"] == 1, 30), info()
    finally:
        if server is not None:
            server.close()
        for c in ctxs:
            c.close()
        router.close()
