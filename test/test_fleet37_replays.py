"""docs/fleet.md, "Vehicles": a snapshot inside a span of sequences the server has held a vehicle's
map at is a replay; any other snapshot is taken, below the vehicle's sequence too (a mapper
restarted on a clock set back); a delta at or below the vehicle's sequence, or of an earlier span,
is a replay. No clock is read: a server whose own clock runs days behind refuses every replay.

The real map server on the replay bus with its SQLite store on disk, restarted between runs (its
clock days behind for one of them), containers from the real encoder (MapSender) of two vehicles
whose mappers restart on clocks a day ahead, set right, ahead again, set back an hour. After every
new container, every earlier container of both vehicles is replayed in random order; after each
one the global map must equal merge_maps of the vehicles' own maps, each vehicle's map its
mapper's, nothing may wait in a vehicle's pending deltas, and a receiver following the global
stream must hold the global map (a fresh one rebuilt from the latched snapshot too)."""

from __future__ import annotations

import json
import random
import sqlite3
import time

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_map_share.delta import MapSender
from gs_map_share.fleet_store import FleetStoreError
from gs_map_share.merge import MAX_SPANS, FleetMerge, Spans, merge_maps
from gs_map_share.quantize import QuantParams
from gs_map_share.receiver import MapStore
from gs_mapping.messages import bytes_to_uint8_multiarray, uint8_multiarray_to_bytes
from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
from gs_mapping.runtime.replay import ReplayBus

P = QuantParams.from_quality(3)  # map_server_node.quality's default
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000


class _Mapper:
    """One mapper run of a vehicle: its map and the containers its MapSender makes from ``first``."""

    def __init__(self, map_id: int, seed: int, first: int):
        self.map_id, self.rng = map_id, np.random.default_rng(seed)
        self.g = synthetic_map(300, 0, seed=seed, extent=6.0)
        self.sender = MapSender.from_map(self.g, P, map_id=map_id, first_seq=first)

    def snapshot(self) -> bytes:
        return self.sender.snapshot()

    def delta(self) -> bytes:
        ids = self.rng.choice(self.g.ids, 8, replace=False)
        moved = self.g.means[self.g.rows_of(ids)] + self.rng.normal(0, 1.5, (8, 3)).astype(np.float32)
        self.g.update(ids, means=moved)
        return self.sender.update(self.g, self.g.take_changes())[0]


class _Fleet:
    def __init__(self, tmp_path):
        self.store = tmp_path / "fleet.sqlite3"
        self.sent: list[tuple[int, bytes]] = []  # every container either vehicle sent, in order
        self.current: dict[int, _Mapper] = {}  # each vehicle's mapper now
        self.rx = MapStore()  # a receiver following the global stream across server restarts
        self.start()

    def start(self) -> None:
        self.bus = ReplayBus()
        self.bus.advance(10**9)
        for topic in ("/map_server_node/map_delta", "/map_server_node/map_snapshot"):
            self.bus.subscribe(topic, lambda m: self.rx.receive(uint8_multiarray_to_bytes(m)))
        cfg = MapServerNodeConfig(
            store_path=str(self.store), vehicles=["vehicle1", "vehicle2"], global_period_s=0.0
        )
        self.server = MapServerNode(self.bus.context("map_server_node"), {"map_server_node": cfg})
        self.bus.advance(self.bus.now_ns + 1000)  # (what it republished on start reaches the receiver)

    def restart(self) -> None:
        self.server.close()
        self.start()

    def deliver(self, mid: int, data: bytes) -> None:
        topic = "map_snapshot" if data[24:32] == bytes(8) else "map_delta"  # base_seq 0: a snapshot
        msg = bytes_to_uint8_multiarray(data)
        self.bus.inject(f"/vehicle{mid}/mapper_node/{topic}", msg, self.bus.now_ns + 1000)

    def send(self, m: _Mapper, data: bytes) -> None:
        self.current[m.map_id] = m
        self.sent.append((m.map_id, data))
        self.deliver(m.map_id, data)
        self.check("new container")

    def info(self, mid: int) -> dict:
        self.server.on_diagnostics_timer()
        return json.loads(self.server.diag.values[f"vehicle vehicle{mid}"])

    def check(self, where: str) -> None:
        merge = self.server.merge
        want = {mid: m.sender.shadow for mid, m in self.current.items()}
        for mid, shadow in want.items():
            v = merge.vehicles[mid]
            assert v.seq == self.current[mid].sender.seq and v.state.equals(shadow), (where, mid)
            assert len(v.pending) == 0, (where, mid)  # (a delta of a numbering left behind waits for nothing)
        assert merge.global_map.equals(merge_maps(want, P.tile_bits, 0)), where
        assert self.rx.seq == merge.global_seq and self.rx.state.equals(merge.global_map), where

    def replay_all(self, rng: random.Random) -> None:
        """Every earlier container again, in random order: nothing may change."""
        before = {mid: self.info(mid) for mid in self.current}
        seq = self.server.merge.global_seq
        for mid, data in rng.sample(self.sent, len(self.sent)):
            self.deliver(mid, data)
            self.check("replay")
        assert self.server.merge.global_seq == seq
        for mid, was in before.items():
            now = self.info(mid)
            assert now["replayed"] > was["replayed"]
            for k in ("applied", "snapshot", "clock_back", "buffered", "dropped", "rejected"):
                assert now.get(k, 0) == was.get(k, 0), (mid, k)


def test_every_replay_in_any_order_changes_nothing_whatever_the_clocks(tmp_path, monkeypatch):
    rng = random.Random(37)
    now = time.time_ns() // 1000
    fleet = _Fleet(tmp_path)

    def run(mid: int, seed: int, first: int, deltas: int, *, periodic: bool = False) -> _Mapper:
        m = _Mapper(mid, seed, first)
        fleet.send(m, m.snapshot())
        fleet.replay_all(rng)
        for k in range(deltas):
            fleet.send(m, m.delta())
            if periodic and k == 0:
                fleet.send(m, m.snapshot())  # (at the sequence held: itself a replay)
        fleet.replay_all(rng)
        return m

    run(1, 1, now, 3, periodic=True)  # on a clock set right
    run(2, 2, now + 5, 2)
    run(1, 3, now + DAY_US, 2)  # its clock a day ahead: newer
    fleet.restart()
    fleet.check("restarted")
    fleet.replay_all(rng)
    run(1, 4, now + 10_000_000, 2)  # clock set right: below the held numbering, taken
    assert fleet.info(1)["clock_back"] == 1
    run(2, 5, now - HOUR_US, 2)  # clock set back an hour, below its first run: taken
    assert fleet.info(2)["clock_back"] == 1
    # a server whose own clock runs two days behind: the replays are still replays
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() - 2 * DAY_US * 1000)
    fleet.restart()
    fleet.check("restarted behind")
    fleet.replay_all(rng)
    run(1, 6, now + 2 * DAY_US, 1)  # ahead again, above every numbering: newer
    run(1, 7, now + 20_000_000, 2)  # set right again: between two earlier runs, taken
    assert fleet.info(1)["clock_back"] == 1  # (counted since the server's restart)
    monkeypatch.setattr(time, "time_ns", real)
    fleet.restart()
    fleet.check("restarted on time")
    fleet.replay_all(rng)
    late = MapStore()  # a receiver that joins now: the server's snapshot
    assert late.receive(fleet.server.merge.snapshot()) == "snapshot"
    assert late.state.equals(fleet.server.merge.global_map)
    fleet.server.close()


def test_a_span_ends_where_the_held_sequences_end():
    """The edges: the current span's first sequence is held, the one below it is not; an earlier
    span's last sequence is held, the one above it is not; deltas of an earlier span are replays."""
    now = 1_800_000_000_000_000
    fm = FleetMerge(P, global_map_id=1 << 20)
    ahead = _Mapper(1, 11, now + DAY_US)
    fm.offer(ahead.snapshot())
    fm.offer(ahead.delta())
    assert fm.offer(_Mapper(1, 12, now + DAY_US).snapshot()).status == "replayed"  # its first: held
    res = fm.offer(_Mapper(1, 13, now + DAY_US - 1).snapshot())  # just below: a restart
    assert (res.status, fm.vehicle(1).counts["clock_back"]) == ("snapshot", 1)
    abandoned = ahead.delta()  # the abandoned run's next delta: its base is in an earlier span
    assert fm.offer(abandoned).status == "replayed"
    assert fm.offer(_Mapper(1, 14, now + DAY_US + 1).snapshot()).status == "replayed"  # its last: held
    above = _Mapper(1, 15, now + DAY_US + 2)  # just above it: newer, taken
    assert fm.offer(above.snapshot()).status == "snapshot"
    assert fm.vehicle(1).state.equals(above.sender.shadow)
    assert fm.vehicle(1).spans == Spans(
        now + DAY_US + 2, [(now + DAY_US - 1, now + DAY_US - 1), (now + DAY_US, now + DAY_US + 1)]
    )


def test_beyond_the_bound_the_nearest_earlier_spans_join_never_around_the_current():
    """MAX_SPANS earlier spans at most: the nearest two join (ties: the lowest), but never two
    with the current span between them (its own next sequences would become replays)."""
    sp = Spans()
    sp.start(0, None)
    for k in range(1, MAX_SPANS + 1):  # spans (1000 k, 1000 k + 1), 999 apart
        sp.start(1000 * k, 1000 * (k - 1) + 1)
    assert len(sp.past) == MAX_SPANS
    sp.start(500, 1000 * MAX_SPANS)  # a restart below, between the first two
    assert (len(sp.past), sp.lo) == (MAX_SPANS, 500)
    assert [p for p in sp.past if p[1] - p[0] > 1] == [(1000, 2001)]
    assert sp.in_past(1) and not sp.in_past(2) and not sp.holds(501, 500) and sp.in_past(1500)


def test_a_damaged_spans_record_is_a_corrupt_store(tmp_path):
    fleet = _Fleet(tmp_path)
    m = _Mapper(1, 21, time.time_ns() // 1000)
    fleet.send(m, m.snapshot())
    fleet.server.close()
    with sqlite3.connect(fleet.store) as db:
        assert json.loads(db.execute("SELECT value FROM meta WHERE key='spans 1'").fetchone()[0]) == {
            "lo": m.sender.seq,
            "past": [],
        }
        db.execute("""UPDATE meta SET value='{"lo": 5, "past": [[9, 3]]}' WHERE key='spans 1'""")
    with pytest.raises(FleetStoreError, match="corrupt fleet store.*ends before it starts"):
        fleet.start()


@pytest.mark.parametrize(
    "record", [None, '{"lo": SEQ_PLUS_5, "past": []}', '{"lo": 1, "past": [[SEQ, SEQ]]}']
)
def test_without_spans_that_hold_its_sequence_every_older_snapshot_is_a_replay(tmp_path, record):
    """A store an earlier server wrote has no spans; a record that does not hold the vehicle's
    sequence in its current span (written before a rollback, or damaged) describes another past:
    either way the vehicle's span runs from 0 to its sequence, as a receiver's rule."""
    fleet = _Fleet(tmp_path)
    now = time.time_ns() // 1000
    m = _Mapper(1, 31, now)
    fleet.send(m, m.snapshot())
    fleet.server.close()
    with sqlite3.connect(fleet.store) as db:
        if record is None:
            db.execute("DELETE FROM meta WHERE key='spans 1'")
        else:
            text = record.replace("SEQ_PLUS_5", str(now + 5)).replace("SEQ", str(now))
            db.execute("UPDATE meta SET value=? WHERE key='spans 1'", (text,))
    fleet.start()
    fleet.check("restarted")
    fleet.deliver(1, _Mapper(1, 32, now - HOUR_US).snapshot())  # (with spans held: a restart)
    fleet.check("an older snapshot")
    assert (fleet.info(1)["replayed"], fleet.info(1).get("clock_back", 0)) == (1, 0)
    fleet.send(m, m.delta())  # the vehicle's own numbering goes on
    fleet.server.close()
