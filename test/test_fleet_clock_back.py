"""docs/fleet.md, "Vehicles": a vehicle's sequence is its mapper's wall clock in µs at start
(docs/format.md §5). A vehicle whose clock ran ahead numbered its map in the server's future; once
its clock is set right, its restarted mapper numbers below that. The server must take it back (a
restarted vehicle rejoins: its store keeps the old sequence, so a server restart would not help),
while a true replay — old deltas, an old snapshot of any numbering the server held, above or below
the vehicle's sequence — still changes nothing (test_fleet37_replays.py: every replay, any order). The real map server on the replay bus,
its SQLite store on disk, containers from the real encoder (MapSender)."""

from __future__ import annotations

import json
import time

import numpy as np
from synthetic_maps import synthetic_map
from test_guards_survivors7 import _rule

from gs_map_share.delta import MapSender
from gs_map_share.quantize import QuantParams
from gs_mapping.messages import bytes_to_uint8_multiarray
from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
from gs_mapping.runtime.replay import ReplayBus

P = QuantParams.from_quality(3)  # map_server_node.quality's default
DAY_US = 86_400_000_000


def _server(bus: ReplayBus, store) -> MapServerNode:
    cfg = MapServerNodeConfig(store_path=str(store), vehicles=["vehicle1"], global_period_s=0.0)
    return MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})


def _send(bus: ReplayBus, data: bytes) -> None:
    topic = "map_snapshot" if data[24:32] == bytes(8) else "map_delta"  # base_seq 0: a snapshot
    bus.inject(f"/vehicle1/mapper_node/{topic}", bytes_to_uint8_multiarray(data), bus.now_ns + 1000)


def _info(server: MapServerNode) -> dict:
    server.on_diagnostics_timer()
    return json.loads(server.diag.values["vehicle vehicle1"])


class _Mapper:
    """A vehicle's mapper: its own map and the containers its MapSender makes, from ``first_seq``."""

    def __init__(self, seed: int, first_seq: int):
        self.rng = np.random.default_rng(seed)
        self.g = synthetic_map(400, 0, seed=seed, extent=8.0)
        self.sender = MapSender.from_map(self.g, P, map_id=1, first_seq=first_seq)

    def snapshot(self) -> bytes:
        return self.sender.snapshot()

    def delta(self) -> bytes:
        ids = self.rng.choice(self.g.ids, 10, replace=False)
        moved = self.g.means[self.g.rows_of(ids)] + self.rng.normal(0, 1.0, (10, 3)).astype(np.float32)
        self.g.update(ids, means=moved)
        return self.sender.update(self.g, self.g.take_changes())[0]


def test_a_vehicle_restarted_below_a_numbering_from_a_clock_ahead_rejoins(tmp_path):
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3")
    ahead = _Mapper(1, time.time_ns() // 1000 + DAY_US)  # its clock a day ahead
    old = [ahead.snapshot(), ahead.delta(), ahead.delta()]
    gap = ahead.delta(), ahead.delta()  # (the first lost: the second waits for it)
    for data in [*old, gap[1]]:
        _send(bus, data)
    assert (_info(server)["applied"], _info(server)["pending"]) == (2, 1)
    right = _Mapper(2, time.time_ns() // 1000)  # restarted, its clock set right: a day below
    new = [right.snapshot(), right.delta(), right.delta()]
    for data in new:
        _send(bus, data)
    info = _info(server)
    assert (info["clock_back"], info["seq"], info["applied"], info["pending"]) == (1, right.sender.seq, 4, 0)
    assert server.merge.vehicle(1).state.equals(right.sender.shadow)
    assert server.merge.global_map.equals(_rule({1: right.sender.shadow}))
    # true replays change nothing: the new run's own snapshot and deltas, the abandoned run's deltas
    for data in [new[0], new[1], *old[1:], gap[0]]:
        _send(bus, data)
    info = _info(server)
    assert (info["clock_back"], info["seq"], info["applied"]) == (1, right.sender.seq, 4)
    assert server.merge.global_map.equals(_rule({1: right.sender.shadow}))
    server.close()
    # the store holds the new run: a restarted server has its map and takes its next delta
    bus = ReplayBus()
    again = _server(bus, tmp_path / "fleet.sqlite3")
    assert again.merge.vehicle(1).seq == right.sender.seq
    assert again.merge.global_map.equals(_rule({1: right.sender.shadow}))
    _send(bus, right.delta())
    assert _info(again)["applied"] == 1
    assert again.merge.global_map.equals(_rule({1: right.sender.shadow}))
    _send(bus, new[0])  # (its first snapshot again, after the server's restart: still a replay)
    assert (_info(again)["replayed"], _info(again).get("clock_back", 0)) == (1, 0)
    again.close()


def test_an_older_snapshot_is_a_replay_only_inside_a_sequence_span_held(tmp_path):
    """The other side of the rule: no clock decides, only whether the server held the vehicle's
    map at that sequence. A restart 10 s below everything held is taken (its clock set back), an
    older snapshot of a numbering held is a replay, above the held sequence too, and a restart a
    day ahead below one two days ahead is taken."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3")
    now = time.time_ns() // 1000
    on_time = _Mapper(3, now)
    first = on_time.snapshot()
    _send(bus, first)
    _send(bus, on_time.delta())
    later = on_time.snapshot()  # (at the sequence held)
    for data in [first, later]:
        _send(bus, data)
    assert (_info(server)["replayed"], _info(server).get("clock_back", 0)) == (2, 0)
    before = _Mapper(4, now - 10_000_000)  # restarted with its clock 10 s behind the held numbering
    back = before.snapshot()
    _send(bus, back)
    info = _info(server)
    assert (info["seq"], info["replayed"], info["clock_back"]) == (before.sender.seq, 2, 1)
    for data in [first, later]:  # the earlier span's, now above the vehicle's sequence
        _send(bus, data)
    assert (_info(server)["seq"], _info(server)["replayed"]) == (before.sender.seq, 4)
    assert server.merge.global_map.equals(_rule({1: before.sender.shadow}))
    two_days = _Mapper(5, now + 2 * DAY_US)
    one_day = _Mapper(6, now + DAY_US)
    _send(bus, two_days.snapshot())  # newer: taken
    _send(bus, one_day.snapshot())  # older, outside every span: its clock came back a day
    for data in [first, later, back, two_days.snapshot()]:
        _send(bus, data)
    info = _info(server)
    assert (info["seq"], info["replayed"], info["clock_back"]) == (one_day.sender.seq, 8, 2)
    assert server.merge.global_map.equals(_rule({1: one_day.sender.shadow}))
    server.close()


def test_a_server_restarted_meanwhile_takes_the_vehicle_back_too(tmp_path):
    """The lockout the rule removes outlived server restarts (the store keeps the sequence): the
    vehicle ran a day ahead, the server restarted from its store, then the vehicle restarted on a
    clock set right."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3")
    ahead = _Mapper(7, time.time_ns() // 1000 + DAY_US)
    for data in [ahead.snapshot(), ahead.delta()]:
        _send(bus, data)
    server.close()
    bus = ReplayBus()
    again = _server(bus, tmp_path / "fleet.sqlite3")
    assert again.merge.vehicle(1).seq == ahead.sender.seq
    right = _Mapper(8, time.time_ns() // 1000)
    for data in [right.snapshot(), right.delta()]:
        _send(bus, data)
    info = _info(again)
    assert (info["clock_back"], info["applied"], info["seq"]) == (1, 1, right.sender.seq)
    assert again.merge.global_map.equals(_rule({1: right.sender.shadow}))
    again.close()
