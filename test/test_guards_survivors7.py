"""Guards for behaviours a mutation-testing pass over the fleet map-sharing side found unguarded
(seventh round): map_server_node's restart, compaction and global-snapshot schedule, namespace
binding, liveliness and silence diagnostics; the SQLite store's schema, identity and compaction
rules; region request bounds and tile order; the merge's replay and pending rules; rmw_zenoh's
wire format. Each test drives the real components (MapServerNode on the in-process ReplayBus,
real SQLite files, real containers built with the codec) and compares them with an independent
reference: the rule docs/fleet.md or a docstring states, a hand-built input, or a sqlite3 / numpy
re-computation, so that breaking the line it guards makes it fail."""

from __future__ import annotations

import json
import sqlite3
import time

import numpy as np
import pytest

from gs_map_share.fleet_store import FleetStore, FleetStoreError, Row, identity
from gs_map_share.quantize import QMap, QuantParams, to_qmap
from gs_mapping.messages import bytes_to_uint8_multiarray
from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
from gs_mapping.runtime.replay import ReplayBus

PARAMS = QuantParams.from_quality(3)  # map_server_node.quality's default
GLOBAL_ID = 1000000  # map_server_node.map_id's default


# ------------------------------------------------------------------------------------------------
# helpers: hand-built vehicle streams and a real server on the replay bus


def _vmap(n: int, seed: int = 3, origin=(0.0, 0.0, 0.0)) -> QMap:
    """A vehicle map of n Gaussians (ids 1..n) on the fleet's quantisation, SH degree 0."""
    from synthetic_maps import synthetic_map

    q = to_qmap(synthetic_map(400, 0, seed=seed, origin=origin), PARAMS).take(np.arange(n))
    q.ids = np.arange(1, n + 1, dtype=np.uint64)
    return q


def _snap(q: QMap, map_id: int, seq: int, frame_id: str = "map") -> bytes:
    from gs_map_share.snapshot import encode_snapshot

    return encode_snapshot(q, PARAMS, map_id=map_id, seq=seq, n_levels=1, frame_id=frame_id)[0]


def _delta(old: QMap, new: QMap, map_id: int, seq: int) -> bytes:
    from gs_map_share.delta import encode_delta

    return encode_delta(old, new, PARAMS, map_id=map_id, seq=seq, base_seq=seq - 1)[0]


def _stream(map_id: int, n_deltas: int, seed: int = 3, first_seq: int = 10) -> tuple[list[bytes], list[QMap]]:
    """A vehicle's stream: a snapshot of 20 Gaussians at first_seq, then deltas adding 10 each."""
    full = _vmap(20 + 10 * n_deltas, seed=seed)
    states = [full.take(np.arange(20 + 10 * k)) for k in range(n_deltas + 1)]
    out = [_snap(states[0], map_id, first_seq)]
    out += [_delta(states[k - 1], states[k], map_id, first_seq + k) for k in range(1, n_deltas + 1)]
    return out, states


def _server(bus: ReplayBus, store, **kw) -> MapServerNode:
    cfg = MapServerNodeConfig(store_path=str(store), **kw)
    return MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})


def _send(bus: ReplayBus, ns: str, data: bytes) -> None:
    """One container on a vehicle namespace's mapper topic (snapshot or delta by its header)."""
    from gs_map_share.container import unpack_header

    topic = "map_snapshot" if unpack_header(data)[0].is_snapshot else "map_delta"
    bus.inject(f"/{ns}/mapper_node/{topic}", bytes_to_uint8_multiarray(data), bus.now_ns + 1000)


def _rule(maps: dict[int, QMap]) -> QMap:
    """docs/fleet.md's merge rule written out independently: per tile the vehicle with the most
    Gaussians (ties: smaller map id), all its Gaussians there, ids map_id << 32 | local id."""
    count: dict[tuple, dict[int, int]] = {}
    for mid, q in maps.items():
        for t in map(tuple, (q.pos >> PARAMS.tile_bits).tolist()):
            count.setdefault(t, {}).setdefault(mid, 0)
            count[t][mid] += 1
    owner = {t: min(per, key=lambda m: (-per[m], m)) for t, per in count.items()}
    parts = []
    for mid in sorted(maps):
        q = maps[mid]
        keep = [i for i, t in enumerate(map(tuple, (q.pos >> PARAMS.tile_bits).tolist())) if owner[t] == mid]
        part = q.take(np.array(keep, np.int64))
        part.ids = (np.uint64(mid) << np.uint64(32)) | part.ids
        parts.append(part)
    return QMap.concat(parts)


def _rows(store, table: str, where: str = "", args=()) -> list:
    db = sqlite3.connect(str(store))
    try:
        return db.execute(f"SELECT * FROM {table} {where}", args).fetchall()
    finally:
        db.close()


# ------------------------------------------------------------------------------------------------
# map_server_node: restart from the store


def _store_with_vehicle(tmp_path, n_deltas: int = 2, **kw):
    """A store holding vehicle1's snapshot + n deltas (committed, acknowledged, server closed)."""
    store = tmp_path / "fleet.sqlite3"
    bus = ReplayBus()
    server = _server(bus, store, **kw)
    stream, states = _stream(1, n_deltas)
    for c in stream:
        _send(bus, "vehicle1", c)
    server.close()
    return store, stream, states


def test_restart_refuses_a_vehicle_log_whose_first_row_is_not_a_snapshot_row(tmp_path):
    """A vehicle's log starts with its snapshot row (base_seq 0, docs/fleet.md's table): a store
    whose first row claims a base (here the snapshot row's base_seq column edited to 9) is a log
    that does not replay — one FleetStoreError naming the file, the file left as it was."""
    store, _, _ = _store_with_vehicle(tmp_path)
    db = sqlite3.connect(str(store))
    db.execute("UPDATE vehicle_log SET base_seq = 9 WHERE map_id = 1 AND base_seq = 0")
    db.commit()
    db.close()
    before = _rows(store, "vehicle_log")
    # (the column is checked against the snapshot container's own header first)
    with pytest.raises(FleetStoreError, match=r"fleet.sqlite3: corrupt .* on 9 of map 1 holds .* on 0\)"):
        _server(ReplayBus(), store)
    assert _rows(store, "vehicle_log") == before


def test_restart_refuses_a_delta_row_whose_base_is_not_where_the_log_is(tmp_path):
    """Each logged delta applies to the sequence the log has reached: a delta row whose base_seq
    column names another sequence is one FleetStoreError ("applies to … the log is at …"), even
    though its container's own bytes would apply."""
    store, _, _ = _store_with_vehicle(tmp_path)
    db = sqlite3.connect(str(store))
    db.execute("UPDATE vehicle_log SET base_seq = 3 WHERE map_id = 1 AND seq = 12")
    db.commit()
    db.close()
    with pytest.raises(FleetStoreError, match=r"row seq 12 on 3 of map 1 holds .* seq 12 on 11\)"):
        _server(ReplayBus(), store)


def test_restart_counts_the_logged_deltas_towards_compaction(tmp_path):
    """compact_after counts a vehicle's deltas logged since its snapshot, across a restart: with
    compact_after 3, a snapshot + 1 delta before the restart and 1 after make 2 deltas (3 rows,
    no compaction); a third delta replaces the log by one snapshot row at that sequence."""
    store, stream, states = _store_with_vehicle(tmp_path, n_deltas=1, compact_after=3)
    bus = ReplayBus()
    server = _server(bus, store, compact_after=3, global_period_s=0.0)
    more, more_states = _stream(1, 3)
    _send(bus, "vehicle1", more[2])
    assert [(r[1], r[2]) for r in _rows(store, "vehicle_log", "ORDER BY seq")] == [
        (10, 0),
        (11, 10),
        (12, 11),
    ]
    _send(bus, "vehicle1", more[3])
    assert [(r[1], r[2]) for r in _rows(store, "vehicle_log", "ORDER BY seq")] == [(13, 0)]
    server.close()


def _store_with_vehicle_rows_ahead(tmp_path):
    """A store an older server left: vehicle2's snapshot committed without the global delta it
    makes (docs/fleet.md, "Restart"). Returns the store, the global sequence it holds, and the
    vehicles' maps."""
    store, _, states = _store_with_vehicle(tmp_path, n_deltas=1)
    s = FleetStore(str(store), identity(GLOBAL_ID, "map", PARAMS, 0))
    other = _vmap(30, seed=8, origin=(3.0, 1.0, 0.0))
    g_seq = s.load().global_rows[-1].seq
    s.commit([(2, Row(50, 0, _snap(other, 2, 50)))])
    s.close()
    return store, g_seq, {1: states[-1], 2: other}


def test_restart_brings_the_global_map_to_the_rule_with_one_delta(tmp_path):
    """Vehicle rows committed ahead of the global map: at start the server recomputes the rule,
    and one global delta (sequence + 1, stored) brings the global map to it; a receiver that held
    the old global map applies that delta and holds the rule."""
    from gs_map_share.receiver import MapStore

    store, g_seq, maps = _store_with_vehicle_rows_ahead(tmp_path)
    s = FleetStore(str(store), identity(GLOBAL_ID, "map", PARAMS, 0))
    old = s.load().global_rows
    s.close()
    follower = MapStore()
    for r in old:
        assert follower.receive(r.data) in ("snapshot", "applied")
    bus = ReplayBus()
    server = _server(bus, store)
    expected = _rule(maps)
    assert server.merge.global_map.equals(expected)
    (row,) = _rows(store, "global_log", "WHERE seq = ?", (g_seq + 1,))
    assert row[1] == g_seq
    assert follower.receive(bytes(row[2])) == "applied" and follower.state.equals(expected)
    # then the sequence moves on to the wall clock by an empty delta, which the follower applies
    assert server.merge.global_seq > g_seq + 1
    (rebase,) = _rows(store, "global_log", "WHERE seq = ?", (server.merge.global_seq,))
    assert rebase[1] == g_seq + 1
    assert follower.receive(bytes(rebase[2])) == "applied" and follower.state.equals(expected)
    assert follower.seq == server.merge.global_seq
    server.close()


def test_restart_delta_tiles_are_newer_than_the_previous_sequence_for_region_queries(tmp_path):
    """The tiles the restart delta changed count as changed at its sequence (docs/fleet.md: tiles
    whose last change is after since_seq): a region query with since_seq = the sequence before the
    restart lists exactly the tiles vehicle2 now owns (not those vehicle1 keeps), with their
    Gaussians."""
    from gs_map_share.region import RegionAnswer, RegionRequest
    from gs_map_share.snapshot import decode_snapshot

    store, g_seq, maps = _store_with_vehicle_rows_ahead(tmp_path)
    server = _server(ReplayBus(), store)
    rule = _rule(maps)
    mine = rule.take(np.flatnonzero((rule.ids >> np.uint64(32)) == 2))  # what the delta changed
    want = {tuple(t) for t in (mine.pos >> PARAMS.tile_bits).tolist()}
    assert want and len(want) < len({tuple(t) for t in (maps[2].pos >> PARAMS.tile_bits).tolist()})
    req = RegionRequest(4.0, 2.0, 0.0, radius_m=1000.0, since_seq=g_seq)
    a = RegionAnswer.from_bytes(server.answer_region(req.to_bytes()))
    assert a.status == "ok" and {tuple(t) for t in a.tiles} == want
    assert decode_snapshot(a.container)[1].equals(mine)
    server.close()


def test_a_fresh_store_starts_the_global_sequence_at_the_wall_clock_in_microseconds(tmp_path):
    """docs/fleet.md: a fresh store starts the global sequence at the wall clock in microseconds
    (so receivers of an older store take its first snapshot as newer); the stored restart point
    is a snapshot at that sequence."""
    lo = time.time_ns() // 1000
    server = _server(ReplayBus(), tmp_path / "fleet.sqlite3")
    hi = time.time_ns() // 1000
    assert lo <= server.merge.global_seq <= hi
    (row,) = _rows(tmp_path / "fleet.sqlite3", "global_snapshot")
    assert row[1] == server.merge.global_seq
    server.close()


# ------------------------------------------------------------------------------------------------
# map_server_node: ingest, namespaces, acknowledgements


def test_a_namespace_is_bound_by_its_first_taken_container_not_a_rejected_one(tmp_path):
    """A namespace is bound by its first container that is *taken* (the node's rule): a rejected
    container (map 5 in a foreign frame) on vehicle1's namespace leaves it unbound, so vehicle map 1
    is then merged there; the rejection is counted against map 5."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    _send(bus, "vehicle1", _snap(_vmap(20), 5, 3, frame_id="odom"))
    assert server.merge.vehicles[5].counts["rejected"] == 1 and len(server.merge.global_map) == 0
    _send(bus, "vehicle1", _snap(_vmap(20), 1, 3))
    assert server.bindings["vehicle1"].map_id == 1
    assert server.merge.global_map.equals(_rule({1: _vmap(20)}))
    server.close()


def test_global_period_zero_commits_and_acknowledges_each_container_alone(tmp_path):
    """global_period_s = 0: "each alone" — a container is committed, merged, published and
    acknowledged when it arrives, with no timer; each ack names the global sequence holding it."""
    bus = ReplayBus()
    acks = []
    bus.subscribe("/map_server_node/ack", lambda m: acks.append(json.loads(m.data)))
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    seq0 = server.merge.global_seq
    stream, states = _stream(1, 2)
    for k, c in enumerate(stream):
        bus.inject(
            "/vehicle1/mapper_node/" + ("map_snapshot" if k == 0 else "map_delta"),
            bytes_to_uint8_multiarray(c),
            0,
        )
        assert acks[-1] == {"map_id": 1, "seq": 10 + k, "global_seq": seq0 + k + 1}
        assert len(_rows(tmp_path / "fleet.sqlite3", "vehicle_log")) == k + 1
    assert server.merge.global_map.equals(_rule({1: states[-1]}))
    server.close()


def test_containers_within_one_period_are_committed_and_acknowledged_together(tmp_path):
    """Group commit: two vehicles' snapshots arriving within global_period_s go out as one global
    delta; both are in the store and both acknowledged with that delta's sequence, once each."""
    bus = ReplayBus()
    acks = []
    bus.subscribe("/map_server_node/ack", lambda m: acks.append(json.loads(m.data)))
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.2)
    bus.advance(0)
    seq0 = server.merge.global_seq
    a, b = _vmap(20, seed=3), _vmap(25, seed=9, origin=(40.0, 0.0, 0.0))
    _send(bus, "vehicle1", _snap(a, 1, 7))
    _send(bus, "vehicle2", _snap(b, 2, 9))
    assert acks == [] and _rows(tmp_path / "fleet.sqlite3", "vehicle_log") == []
    bus.advance(int(0.25e9))
    assert sorted((x["map_id"], x["seq"], x["global_seq"]) for x in acks) == [
        (1, 7, seq0 + 1),
        (2, 9, seq0 + 1),
    ]
    assert sorted((r[0], r[1], r[2]) for r in _rows(tmp_path / "fleet.sqlite3", "vehicle_log")) == [
        (1, 7, 0),
        (2, 9, 0),
    ]
    assert server.merge.global_map.equals(_rule({1: a, 2: b}))
    server.close()


# ------------------------------------------------------------------------------------------------
# map_server_node: compaction and the global snapshot schedule


def test_vehicle_log_is_compacted_after_exactly_compact_after_deltas(tmp_path):
    """docs/fleet.md: after compact_after deltas a vehicle's log is replaced by a snapshot of its
    current map. compact_after 2: snapshot 10 → [10]; delta 11 → [10, 11]; delta 12 → one snapshot
    row at 12 that decodes to the vehicle's map; delta 13 → [12, 13]; a new snapshot (a restarted
    mapper) replaces the log."""
    from gs_map_share.snapshot import decode_snapshot

    store = tmp_path / "fleet.sqlite3"
    bus = ReplayBus()
    server = _server(bus, store, compact_after=2, global_period_s=0.0)
    stream, states = _stream(1, 3)

    def log():
        return [(r[1], r[2]) for r in _rows(store, "vehicle_log", "ORDER BY seq")]

    expect = [[(10, 0)], [(10, 0), (11, 10)], [(12, 0)], [(12, 0), (13, 12)]]
    for c, want in zip(stream, expect, strict=True):
        _send(bus, "vehicle1", c)
        assert log() == want
    (row,) = _rows(store, "vehicle_log", "WHERE seq = 12")
    assert decode_snapshot(bytes(row[3]))[1].equals(states[2])
    _send(bus, "vehicle1", _snap(states[0], 1, 20))
    assert log() == [(20, 0)]
    server.close()


def test_global_restart_point_moves_every_global_snapshot_every_deltas(tmp_path):
    """Every global_snapshot_every global deltas the restart point moves (a snapshot at that global
    sequence), keeping keep_global_deltas deltas before it: every 3, keep 1, six global deltas →
    snapshot at +3 (log: +3) then, unchanged through +4 and +5, at +6 (log: +6)."""
    from gs_map_share.snapshot import decode_snapshot

    store = tmp_path / "fleet.sqlite3"
    bus = ReplayBus()
    server = _server(bus, store, global_snapshot_every=3, keep_global_deltas=1, global_period_s=0.0)
    seq0 = server.merge.global_seq
    stream, _ = _stream(1, 5)
    seen = []
    for c in stream:
        _send(bus, "vehicle1", c)
        (snap,) = _rows(store, "global_snapshot")
        seen.append((snap[1] - seq0, [r[0] - seq0 for r in _rows(store, "global_log", "ORDER BY seq")]))
        assert decode_snapshot(bytes(snap[2]))[0].seq == snap[1]
    assert seen == [(0, [1]), (0, [1, 2]), (3, [3]), (3, [3, 4]), (3, [3, 4, 5]), (6, [6])]
    server.close()


def test_start_republishes_exactly_the_last_republish_on_start_global_deltas(tmp_path):
    """At start the server publishes its last republish_on_start stored global deltas again (then
    a snapshot): with 2, exactly the two newest, oldest first."""
    from gs_map_share.container import unpack_header

    store, _, _ = _store_with_vehicle(tmp_path, n_deltas=3, global_period_s=0.0)
    s = FleetStore(str(store), identity(GLOBAL_ID, "map", PARAMS, 0))
    last = s.load().global_rows[-1].seq
    s.close()
    bus = ReplayBus()
    got = []
    bus.subscribe("/map_server_node/map_delta", lambda m: got.append(bytes(m.data)))
    server = _server(bus, store, republish_on_start=2)
    bus.advance(1)
    # the newest two: the last one stored before, and the empty delta that moved the sequence on
    assert [unpack_header(d)[0].seq for d in got] == [last, server.merge.global_seq]
    assert unpack_header(got[1])[0].base_seq == last
    server.close()


def test_snapshot_period_zero_publishes_at_start_and_when_a_subscriber_joins_only(tmp_path):
    """snapshot_period_s = 0: ~/map_snapshot at start and when subscribers join, never on a period:
    ten seconds of timer ticks add nothing; a new subscriber adds exactly one."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", snapshot_period_s=0.0)
    topic = "/map_server_node/map_snapshot"
    bus.advance(0)
    assert bus.published[topic] == 1
    bus.advance(10 * 10**9)
    assert bus.published[topic] == 1
    bus.subscribe(topic, lambda m: None)
    bus.advance(11 * 10**9)
    assert bus.published[topic] == 2
    bus.advance(20 * 10**9)
    assert bus.published[topic] == 2
    server.close()


def test_snapshot_period_is_kept_within_a_second(tmp_path):
    """snapshot_period_s = 2: a snapshot 2 s after the last one (the timer ticks at most every
    second, docs: period of ~/map_snapshot), not before."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", snapshot_period_s=2.0)
    topic = "/map_server_node/map_snapshot"
    bus.advance(0)
    bus.advance(int(1.9e9))
    assert bus.published[topic] == 1
    bus.advance(int(3.0e9))
    assert bus.published[topic] == 2
    bus.advance(int(5.0e9))
    assert bus.published[topic] == 3
    server.close()


# ------------------------------------------------------------------------------------------------
# map_server_node: liveliness and silence (docs/fleet.md, "Liveliness")


def _token(ns: str, kind: str, topic: str = "mapper_node/map_delta") -> str:
    """rmw_zenoh's liveliness key of an entity of vehicle ``ns``'s mapper_node, built with the
    wire module (docs/design.md of rmw_zenoh)."""
    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import GraphEntity, RmwQos

    return GraphEntity(
        0, "aa11", "3", "7", kind, "/", f"/{ns}", "mapper_node", f"/{ns}/{topic}",
        "std_msgs::msg::dds_::UInt8MultiArray_", "RIHS01_" + "0" * 64, RmwQos(),
    ).keyexpr  # fmt: skip


def _vinfo(server, ns):
    server.on_diagnostics_timer()
    return json.loads(server.diag.values[f"vehicle {ns}"])


def test_a_vehicle_vanishes_when_its_delta_publisher_token_goes_and_only_then(tmp_path):
    """The vehicle's presence is its delta publisher (MP) token: a subscription token (MS) on the
    same topic changes nothing; MP appearing is alive, going is gone and counted once in vanished
    (a second 'gone' is not another vanishing); a token never seen alive vanishing counts nothing;
    a truncated MP token (10 parts; rmw_zenoh needs 13) is ignored."""
    server = _server(ReplayBus(), tmp_path / "fleet.sqlite3")
    server.on_liveliness(_token("vehicle1", "MS"), True)
    assert _vinfo(server, "vehicle1")["liveliness"] == "n/a"
    truncated = "/".join(_token("vehicle1", "MP").split("/")[:10])
    server.on_liveliness(truncated, True)
    assert _vinfo(server, "vehicle1")["liveliness"] == "n/a"
    server.on_liveliness(_token("vehicle1", "MP"), True)
    assert _vinfo(server, "vehicle1")["liveliness"] == "alive"
    server.on_liveliness(_token("vehicle1", "MS"), False)
    assert _vinfo(server, "vehicle1")["liveliness"] == "alive"
    server.on_liveliness(_token("vehicle1", "MP"), False)
    server.on_liveliness(_token("vehicle1", "MP"), False)
    info = _vinfo(server, "vehicle1")
    assert (info["liveliness"], info["vanished"]) == ("gone", 1)
    server.on_liveliness(_token("vehicle2", "MP"), False)
    info = _vinfo(server, "vehicle2")
    assert (info["liveliness"], info["vanished"]) == ("gone", 0)
    server.close()


def test_a_vehicle_is_silent_after_vehicle_timeout_s_and_before_it_is_heard(tmp_path):
    """'silent': never heard from, or not heard from for more than vehicle_timeout_s."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", vehicle_timeout_s=1.0, global_period_s=0.0)
    assert _vinfo(server, "vehicle1")["silent"] is True
    bus.advance(5 * 10**9)
    _send(bus, "vehicle1", _snap(_vmap(20), 1, 3))
    heard = bus.now_ns
    assert _vinfo(server, "vehicle1")["silent"] is False
    bus.now_ns = heard + 10**9
    assert _vinfo(server, "vehicle1")["silent"] is False
    bus.now_ns = heard + 10**9 + 1
    assert _vinfo(server, "vehicle1")["silent"] is True
    server.close()


# ------------------------------------------------------------------------------------------------
# fleet store: what is refused, what is atomic (docs/fleet.md, "Durability: the store")

IDENT = identity(GLOBAL_ID, "map", PARAMS, 0)


def _good_store(tmp_path, name: str = "good.sqlite3"):
    path = tmp_path / name
    FleetStore(str(path), IDENT).close()
    return path


def _edit(path, *stmts) -> bytes:
    db = sqlite3.connect(str(path))
    for s in stmts:
        db.execute(s)
    db.commit()
    db.close()
    return path.read_bytes()


def test_store_of_another_application_without_tables_is_refused_untouched(tmp_path):
    """An SQLite file of another application (its application id set, no tables yet) is not a new
    store: one FleetStoreError, and the file is never rewritten."""
    path = tmp_path / "other.sqlite3"
    before = _edit(path, "PRAGMA application_id = 4660")
    with pytest.raises(FleetStoreError, match=r"not a gs_mapping fleet store \(application id 0x1234"):
        FleetStore(str(path), IDENT)
    assert path.read_bytes() == before
    db = sqlite3.connect(str(path))
    assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
    db.close()


def test_store_with_our_application_id_but_a_missing_table_is_refused(tmp_path):
    """Our application id is not enough: every table of the schema must be there."""
    path = _good_store(tmp_path)
    before = _edit(path, "DROP TABLE tiles")
    with pytest.raises(FleetStoreError, match="not a gs_mapping fleet store"):
        FleetStore(str(path), IDENT)
    assert path.read_bytes() == before


@pytest.mark.parametrize("version", [0, 2])
def test_store_of_another_schema_version_is_refused(tmp_path, version):
    """PRAGMA user_version = 1 is the schema this server reads; older and newer are refused."""
    path = _good_store(tmp_path)
    _edit(path, f"PRAGMA user_version = {version}")
    with pytest.raises(FleetStoreError, match=f"schema version {version}, this server reads 1"):
        FleetStore(str(path), IDENT)


def test_store_failing_quick_check_is_refused(tmp_path):
    """A store whose rows break the schema's constraints (a global delta with base_seq 0 written
    past its CHECK) fails PRAGMA quick_check: one FleetStoreError, never opened as a map."""
    path = _good_store(tmp_path)
    _edit(
        path,
        "PRAGMA ignore_check_constraints = ON",
        "INSERT INTO global_log VALUES (99999999999999999, 0, x'00')",
    )
    db = sqlite3.connect(str(path))
    assert db.execute("PRAGMA quick_check").fetchone()[0] != "ok"  # (sqlite3 itself says so)
    db.close()
    with pytest.raises(FleetStoreError, match="integrity check failed"):
        FleetStore(str(path), IDENT)


def test_store_whose_identity_has_an_extra_field_is_another_fleet_map(tmp_path):
    """The identity record must be exactly this fleet's: a stored field the configuration does not
    have is a difference too, named in the error."""
    path = _good_store(tmp_path)
    stored = dict(IDENT, shard="r12_7")
    _edit(path, f"UPDATE meta SET value = '{json.dumps(stored, sort_keys=True)}' WHERE key = 'identity'")
    with pytest.raises(
        FleetStoreError, match="holds another fleet map \\(shard stored 'r12_7' vs configured None"
    ):
        FleetStore(str(path), IDENT)


def test_store_without_an_identity_record_is_one_clear_error(tmp_path):
    path = _good_store(tmp_path)
    before = _edit(path, "DELETE FROM meta")
    with pytest.raises(FleetStoreError, match="fleet store without an identity record"):
        FleetStore(str(path), IDENT)
    assert path.read_bytes() == before


def test_a_failing_commit_leaves_nothing_of_the_batch(tmp_path):
    """One ingest is one transaction: when its global row breaks the schema (base_seq 0), the
    vehicle rows of the same batch are not committed either."""
    path = tmp_path / "fleet.sqlite3"
    s = FleetStore(str(path), IDENT)
    with pytest.raises(FleetStoreError, match="cannot commit"):
        s.commit([(1, Row(5, 0, b"vehicle snapshot"))], Row(7, 0, b"global"), [(0, 0, 0)])
    s.close()
    assert _rows(path, "vehicle_log") == [] and _rows(path, "tiles") == []


def test_store_runs_wal_with_synchronous_full(tmp_path):
    """WAL journal, synchronous=FULL (2) on the store's connection: what makes a commit durable
    before the acknowledgement goes out."""
    s = FleetStore(str(tmp_path / "fleet.sqlite3"), IDENT)
    try:
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert s.db.execute("PRAGMA application_id").fetchone()[0] == 0x47534D46
    finally:
        s.close()


# ------------------------------------------------------------------------------------------------
# region requests and answers (docs/fleet.md, "Region queries")


def _req(**kw):
    from gs_map_share.region import RegionRequest

    return RegionRequest.from_bytes(json.dumps({"x": 0, "y": 0, **kw}).encode(), 100.0, 1 << 20)


def test_region_request_of_exactly_4_kb_is_taken_and_one_byte_more_refused():
    """Request: UTF-8 JSON, ≤ 4 kB (4096 bytes taken, 4097 refused)."""
    from gs_map_share.region import RegionError, RegionRequest

    body = json.dumps({"x": 1.0, "y": 2.0}).encode()
    exact = body + b" " * (4096 - len(body))
    assert RegionRequest.from_bytes(exact, 100.0, 1 << 20).y == 2.0
    with pytest.raises(RegionError, match="request of 4097 bytes"):
        RegionRequest.from_bytes(exact + b" ", 100.0, 1 << 20)


def test_region_request_bounds_radius_level_and_lattice():
    """radius 0 < R ≤ max, max_level 0..255, a pose more than 1e9 m out is absurd — each refused
    naming the field; the bounds themselves are taken; max_bytes is capped at the server's cap."""
    from gs_map_share.region import RegionError, RegionRequest

    assert _req(radius_m=100.0).radius_m == 100.0 and _req(max_level=255).max_level == 255
    assert _req(x=1e9).x == 1e9
    for kw, msg in (
        ({"radius_m": 0.0}, "radius_m 0.0 outside"),
        ({"radius_m": 100.5}, "radius_m 100.5 outside"),
        ({"max_level": 256}, "max_level must be an integer in 0..255"),
        ({"x": 2e9}, "x = 2000000000.0 m is outside the map lattice"),
        ({"z": -1.5e9}, "z = -1500000000.0 m is outside the map lattice"),
    ):
        with pytest.raises(RegionError, match=msg):
            _req(**kw)
    capped = RegionRequest.from_bytes(
        json.dumps({"x": 0, "y": 0, "max_bytes": 1 << 30}).encode(), 100.0, 4096
    )
    assert capped.max_bytes == 4096


def test_region_since_seq_lists_only_tiles_changed_after_it_and_a_page_past_the_end_is_empty():
    """Tiles whose last change is *after* since_seq (a tile changed at exactly since_seq is not
    listed); a cursor past the last tile is an ok, empty, last page that echoes the cursor."""
    from gs_map_share.region import RegionRequest, answer
    from gs_map_share.snapshot import decode_snapshot

    q = _vmap(40)
    tiles = sorted({tuple(t) for t in (q.pos >> PARAMS.tile_bits).tolist()})
    assert len(tiles) >= 2
    tile_seq = {t: (5 if i % 2 else 6) for i, t in enumerate(tiles)}
    newer = {t for t, s in tile_seq.items() if s > 5}
    req = RegionRequest(0.0, 0.0, 0.0, radius_m=1e4, since_seq=5)
    a = answer(req, q, PARAMS, map_id=GLOBAL_ID, seq=6, tile_seq=tile_seq)
    assert a.status == "ok" and {tuple(t) for t in a.tiles} == newer
    rows = np.flatnonzero([tuple(t) in newer for t in (q.pos >> PARAMS.tile_bits).tolist()])
    assert decode_snapshot(a.container)[1].equals(q.take(rows))
    past = RegionRequest(0.0, 0.0, 0.0, radius_m=1e4, cursor=len(tiles) + 3)
    e = answer(past, q, PARAMS, map_id=GLOBAL_ID, seq=6, tile_seq=tile_seq)
    assert (e.status, e.cursor, e.next_cursor, e.tiles, e.gaussians) == ("ok", len(tiles) + 3, None, [], 0)


def test_region_answer_holds_levels_up_to_and_including_max_level():
    """Gaussians with level ≤ max_level (the bound included)."""
    from gs_map_share.region import RegionRequest, answer
    from gs_map_share.snapshot import decode_snapshot

    q = _vmap(30)
    q.level = (np.arange(30) % 3).astype(q.level.dtype)
    tile_seq = dict.fromkeys({tuple(t) for t in (q.pos >> PARAMS.tile_bits).tolist()}, 1)
    a = answer(
        RegionRequest(0.0, 0.0, 0.0, radius_m=1e4, max_level=1),
        q,
        PARAMS,
        map_id=GLOBAL_ID,
        seq=2,
        tile_seq=tile_seq,
    )
    assert a.gaussians == 20
    assert decode_snapshot(a.container)[1].equals(q.take(np.flatnonzero(q.level <= 1)))


# ------------------------------------------------------------------------------------------------
# merge: bounds, replays, pending, attribution (docs/fleet.md, "Vehicles")


def test_vehicle_map_of_exactly_max_vehicle_gaussians_is_taken(tmp_path):
    """max_vehicle_gaussians is the largest vehicle map accepted: exactly that many is merged, one
    more is rejected before decoding."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", max_vehicle_gaussians=20, global_period_s=0.0)
    _send(bus, "vehicle1", _snap(_vmap(20), 1, 3))
    _send(bus, "vehicle2", _snap(_vmap(21, seed=5), 2, 3))
    assert server.merge.global_map.equals(_rule({1: _vmap(20)}))
    assert server.merge.vehicles[2].counts["rejected"] == 1
    assert "at most 20" in server.merge.vehicles[2].last_error
    server.close()


def test_a_corrupt_container_under_the_global_maps_id_is_unattributed(tmp_path):
    """A container failing its body CRC is attributed through its header, but not to the global
    map's own id (no vehicle of that id appears): it counts as unattributed_rejected."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    bad = bytearray(_snap(_vmap(20), GLOBAL_ID, 3))
    bad[-3] ^= 0xFF
    server.ingest(bytes(bad))
    server.on_diagnostics_timer()
    assert GLOBAL_ID not in server.merge.vehicles
    assert server.diag.values["unattributed_rejected"] == 1 and server.diag.values["vehicles"] == 0
    server.close()


def test_a_replayed_snapshot_or_delta_is_counted_and_not_acknowledged_again(tmp_path):
    """A snapshot or delta at the sequence the vehicle is at is a replay: counted 'replayed', not
    applied, buffered or acknowledged; the same future delta twice is one buffered, one replayed."""
    bus = ReplayBus()
    acks = []
    bus.subscribe("/map_server_node/ack", lambda m: acks.append(json.loads(m.data)))
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    stream, states = _stream(1, 3)
    for c in stream[:2] + stream[:2]:
        _send(bus, "vehicle1", c)
    _send(bus, "vehicle1", stream[3])
    _send(bus, "vehicle1", stream[3])
    other = _snap(_vmap(20, seed=5), 2, 40)
    _send(bus, "vehicle2", other)
    _send(bus, "vehicle2", other)  # at the sequence vehicle 2 is at
    assert server.merge.vehicles[2].counts["replayed"] == 1 and [a["map_id"] for a in acks].count(2) == 1
    v = server.merge.vehicles[1]
    assert (v.counts["snapshot"], v.counts["applied"], v.counts["replayed"], v.counts["buffered"]) == (
        1,
        1,
        3,
        1,
    )
    assert len(v.pending) == 1 and [a["seq"] for a in acks if a["map_id"] == 1] == [10, 11]
    _send(bus, "vehicle1", stream[2])
    assert [a["seq"] for a in acks if a["map_id"] == 1] == [10, 11, 12, 13] and v.state.equals(states[3])
    server.close()


def test_max_pending_bounds_the_buffer_and_drops_the_farthest_future(tmp_path):
    """max_pending 1: of deltas 12 and 13 waiting for 11, the farthest-future (13) is dropped;
    when 11 comes, 11 and 12 apply and the vehicle waits at 12."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", max_pending=1, global_period_s=0.0)
    stream, states = _stream(1, 3)
    for k in (0, 2, 3, 1):
        _send(bus, "vehicle1", stream[k])
    v = server.merge.vehicles[1]
    assert v.counts["dropped"] == 1 and v.seq == 12 and v.state.equals(states[2])
    server.close()


def test_a_restored_vehicle_is_not_alive_until_heard_from(tmp_path):
    """Restored from the store, a vehicle is not reported alive until a container of it arrives."""
    store, stream, _ = _store_with_vehicle(tmp_path, n_deltas=1)
    bus = ReplayBus()
    server = _server(bus, store, global_period_s=0.0)
    assert server.merge.vehicles[1].alive is False
    _send(bus, "vehicle1", _stream(1, 2)[0][2])
    assert server.merge.vehicles[1].alive is True and _vinfo(server, "vehicle1")["alive"] is True
    server.close()


def test_after_a_restart_a_tied_tile_still_goes_to_the_smaller_map_id(tmp_path):
    """Ties go to the smaller map id, also for the owners rebuilt at restart: vehicles 1 and 2 hold
    the same positions (every tile tied, vehicle 1 owns them); restarted, vehicle 1 drops one
    Gaussian, so that one tile goes to vehicle 2 — the global map is the rule again."""
    store = tmp_path / "fleet.sqlite3"
    q = _vmap(20)
    bus = ReplayBus()
    server = _server(bus, store, global_period_s=0.0)
    _send(bus, "vehicle1", _snap(q, 1, 10))
    _send(bus, "vehicle2", _snap(q, 2, 10))
    assert server.merge.global_map.equals(_rule({1: q, 2: q}))
    server.close()
    bus = ReplayBus()
    server = _server(bus, store, global_period_s=0.0)
    fewer = q.take(np.arange(19))
    _send(bus, "vehicle1", _delta(q, fewer, 1, 11))
    expected = _rule({1: fewer, 2: q})
    assert (expected.ids >> np.uint64(32) == 2).any()  # (the tile changed hands)
    assert server.merge.global_map.equals(expected)
    server.close()


def test_a_batch_that_leaves_the_global_map_as_it_was_makes_no_global_delta(tmp_path):
    """flush: 'one global delta, or None when nothing changed' — a vehicle's delta that adds rows and
    its next that removes them, within one period, are both committed and acknowledged, with no
    global delta published and the global sequence unchanged."""
    bus = ReplayBus()
    acks, deltas = [], []
    bus.subscribe("/map_server_node/ack", lambda m: acks.append(json.loads(m.data)))
    bus.subscribe("/map_server_node/map_delta", lambda m: deltas.append(m))
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.2)
    bus.advance(0)
    small, big = _vmap(20), _vmap(30)
    _send(bus, "vehicle1", _snap(small, 1, 10))
    bus.advance(int(0.3e9))
    seq, before = server.merge.global_seq, len(deltas)
    _send(bus, "vehicle1", _delta(small, big, 1, 11))
    _send(bus, "vehicle1", _delta(big, small, 1, 12))
    bus.advance(int(0.7e9))
    assert server.merge.global_seq == seq and len(deltas) == before
    assert [(a["seq"], a["global_seq"]) for a in acks[-2:]] == [(11, seq), (12, seq)]
    assert server.merge.global_map.equals(_rule({1: small}))
    server.close()


# ------------------------------------------------------------------------------------------------
# rmw_zenoh wire format (zenoh_wire's docstring, rmw_zenoh docs/design.md)


def test_topic_key_drops_leading_and_trailing_slashes():
    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import topic_keyexpr

    assert topic_keyexpr(3, "/a/b/", "T_", "RIHS01_x") == "3/a/b/T_/RIHS01_x"


def test_qos_depth_zero_is_rmw_zenohs_default_depth():
    from gs_mapping.nodes.context import QoS

    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import DEFAULT_DEPTH, RmwQos, qos_keyexpr

    q = RmwQos.from_qos(QoS(reliable=True, depth=0))
    assert q.depth == DEFAULT_DEPTH == 42 and qos_keyexpr(q) == "::,:,:,:,,"


@pytest.mark.parametrize(
    "bad",
    [
        "::,:,:,",  # 5 parts
        "::,:,:,:,",  # liveliness with 2 values
        "::,1x:,:,:,,",  # depth not a number
        "::,-1:,:,:,,",  # negative depth
        ":4:,:,:,:,,",  # durability 4
    ],
)
def test_qos_strings_rmw_zenoh_would_refuse_are_refused(bad):
    from gs_mapping.errors import MessageError

    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import parse_qos_keyexpr

    with pytest.raises(MessageError):
        parse_qos_keyexpr(bad)


def test_qos_string_policy_bounds_are_taken():
    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import parse_qos_keyexpr

    q = parse_qos_keyexpr("4:3:3,7:,:,:,,")
    assert (q.reliability, q.durability, q.history, q.depth) == (4, 3, 3, 7)


def test_tokens_with_a_bad_domain_or_a_missing_part_are_refused():
    from gs_mapping.errors import MessageError

    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import parse_liveliness

    good = _token("vehicle1", "MP")
    assert parse_liveliness(good).topic == "/vehicle1/mapper_node/map_delta"
    for bad in (good.replace("@ros2_lv/0/", "@ros2_lv/x/", 1), "/".join(good.split("/")[:12])):
        with pytest.raises(MessageError):
            parse_liveliness(bad)


def test_attachment_length_prefix_must_be_16():
    from gs_mapping.errors import MessageError

    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.runtime.zenoh_wire import decode_attachment, encode_attachment

    ok = encode_attachment(1, 2, bytes(16))
    assert decode_attachment(ok).gid == bytes(16)
    bad = ok[:16] + bytes([15]) + ok[17:]
    with pytest.raises(MessageError, match="expected 33 bytes"):
        decode_attachment(bad)


# ================================================================================================
# bugs this pass and an outside check of the fleet found (fixed)


def test_after_a_storage_failure_nothing_uncommitted_is_published(tmp_path):
    """docs/fleet.md: containers and their global delta are committed, *then* published; a storage
    failure stops ingest and a restart resumes from what was committed. A real failure: another
    SQLite connection holds the write lock, so the flush's commit fails (after SQLite's 5 s busy
    wait). Nothing published may carry a global sequence above what the store holds (read with
    sqlite3), and a receiver following the server before and after the restart must end up with
    the server's map."""
    from gs_map_share.container import unpack_header
    from gs_map_share.receiver import MapStore

    store = tmp_path / "fleet.sqlite3"
    rx, published = MapStore(), []

    def follow(bus):
        for topic in ("/map_server_node/map_snapshot", "/map_server_node/map_delta"):
            bus.subscribe(topic, lambda m: (published.append(bytes(m.data)), rx.receive(bytes(m.data))))

    bus = ReplayBus()
    follow(bus)
    server = _server(bus, store, global_period_s=0.2, snapshot_period_s=2.0)
    a, b, b2 = _vmap(20), _vmap(25, seed=9, origin=(40.0, 0, 0)), _vmap(35, seed=9, origin=(40.0, 0, 0))
    _send(bus, "vehicle1", _snap(a, 1, 10))
    bus.advance(bus.now_ns + int(0.3e9))
    assert rx.state.equals(server.merge.global_map)
    lock = sqlite3.connect(str(store), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # a real storage failure: the store cannot be written
    _send(bus, "vehicle2", _snap(b, 2, 10))
    bus.advance(bus.now_ns + int(0.3e9))
    assert server.storage_failed
    lock.execute("ROLLBACK")
    lock.close()
    bus.advance(bus.now_ns + int(3e9))  # the snapshot period passes
    server.close()
    first = published[:]
    committed = max(
        [r[0] for r in _rows(store, "global_log")] + [r[1] for r in _rows(store, "global_snapshot")]
    )

    bus2 = ReplayBus()  # the restarted server; vehicle2's mapper sends its next snapshot
    follow(bus2)
    server2 = _server(bus2, store, global_period_s=0.2)
    assert server2.merge.global_seq > committed  # (moved on to the wall clock, from committed)
    _send(bus2, "vehicle2", _snap(b2, 2, 11))
    bus2.advance(bus2.now_ns + int(0.3e9))
    assert server2.merge.global_map.equals(_rule({1: a, 2: b2}))
    server2.close()
    assert rx.state.equals(server2.merge.global_map), "the receiver holds a map the server never had"
    assert max(unpack_header(d)[0].seq for d in first) <= committed


def test_the_global_restart_point_schedule_counts_deltas_stored_before_a_restart(tmp_path):
    """docs/fleet.md: every global_snapshot_every global deltas the restart point moves (compaction
    keeps restarts short). Every 3: two global deltas, a restart (its empty delta moving the
    sequence on is the third) → the stored snapshot is there (read with sqlite3); a crash-looping
    server compacts too."""
    store = tmp_path / "fleet.sqlite3"
    stream, _ = _stream(1, 2)
    bus = ReplayBus()
    server = _server(bus, store, global_snapshot_every=3, global_period_s=0.0)
    seq0 = server.merge.global_seq
    for c in stream[:2]:
        _send(bus, "vehicle1", c)
    server.close()
    assert _rows(store, "global_snapshot")[0][1] == seq0
    bus = ReplayBus()
    server = _server(bus, store, global_snapshot_every=3, global_period_s=0.0)
    # the restart's empty delta (the sequence moved on to the wall clock) is the third stored
    moved_on = server.merge.global_seq
    assert _rows(store, "global_snapshot")[0][1] == moved_on
    _send(bus, "vehicle1", stream[2])
    assert server.merge.global_seq == moved_on + 1
    assert _rows(store, "global_snapshot")[0][1] == moved_on
    server.close()


def test_a_vehicle_with_a_live_delta_publisher_is_not_gone(tmp_path):
    """docs/fleet.md: the vehicle's delta publisher token (MP) disappearing — process gone, link
    cut — is 'gone'. A restarted mapper's new token (another Zenoh session id) appears before the
    old one's removal arrives: a publisher of the vehicle is alive, so it is not gone."""
    server = _server(ReplayBus(), tmp_path / "fleet.sqlite3")
    old = _token("vehicle1", "MP")
    new = old.replace("/aa11/", "/bb22/", 1)  # the restarted process: another session
    server.on_liveliness(old, True)
    server.on_liveliness(new, True)
    server.on_liveliness(old, False)
    info = _vinfo(server, "vehicle1")
    server.close()
    assert (info["liveliness"], info["vanished"]) == ("alive", 0)


def test_vehicle_diagnostics_carry_every_documented_field(tmp_path):
    """docs/fleet.md: diagnostics 'vehicle <ns>' is JSON with applied, snapshot, buffered, dropped,
    replayed, rejected, last_error, bytes_in, seq, gaussians, silent, liveliness, vanished: a
    vehicle that sent one snapshot reports them all (zeros included)."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    data = _snap(_vmap(20), 1, 3)
    _send(bus, "vehicle1", data)
    info = _vinfo(server, "vehicle1")
    server.close()
    documented = "applied snapshot buffered dropped replayed rejected last_error bytes_in seq gaussians"
    documented += " silent liveliness vanished"
    assert (info.get("snapshot"), info.get("bytes_in"), info.get("gaussians")) == (1, len(data), 20)
    assert set(documented.split()) <= set(info), sorted(set(documented.split()) - set(info))


@pytest.mark.parametrize("removed", [("",), ("-wal",), ("", "-wal", "-shm")], ids=["file", "wal", "all"])
def test_a_store_removed_while_running_stops_ingest_and_acknowledges_nothing_more(tmp_path, removed):
    """docs/fleet.md: 'a storage failure while running (disk full, file gone) stops ingest'. SQLite
    goes on writing into a removed file (or -wal), which a restart never sees: a container arriving
    after the removal must not be acknowledged, and the server says why."""
    import os

    store = tmp_path / "fleet.sqlite3"
    bus, acks = ReplayBus(), []
    bus.subscribe("/map_server_node/ack", lambda m: acks.append(json.loads(m.data)))
    server = _server(bus, store, global_period_s=0.0)
    stream, _ = _stream(1, 2)
    _send(bus, "vehicle1", stream[0])
    assert [a["seq"] for a in acks] == [10]
    for suffix in removed:
        os.unlink(f"{store}{suffix}")
    _send(bus, "vehicle1", stream[1])
    _send(bus, "vehicle1", stream[2])
    assert [a["seq"] for a in acks] == [10]
    assert "removed or replaced" in server.storage_failed
    server.close()


def test_a_store_that_cannot_be_written_is_not_called_corrupt(tmp_path):
    """A read-only store (permissions, a read-only mount, an immutable file) is a permission
    problem, not corruption: an operator told 'corrupt' may delete a good map. SQLite's own errors
    for it, made for real on a read-only connection, get the 'cannot write' line; a file that is
    no database keeps 'not a usable SQLite database'."""
    good = tmp_path / "good.sqlite3"
    sqlite3.connect(str(good)).execute("CREATE TABLE t (x)").connection.close()
    ro = sqlite3.connect(f"file:{good}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as readonly:
        ro.execute("INSERT INTO t VALUES (1)")
    ro.close()
    store = FleetStore(str(tmp_path / "fleet.sqlite3"), identity(GLOBAL_ID, "map", PARAMS, 0))
    try:
        assert "cannot write the store" in store._why(readonly.value, "corrupt fleet store")
        (tmp_path / "junk").write_bytes(b"not a database" * 100)
        with pytest.raises(sqlite3.DatabaseError) as junk:
            sqlite3.connect(str(tmp_path / "junk")).execute("SELECT * FROM sqlite_master").fetchall()
        assert store._why(junk.value, "not a usable SQLite database").endswith(
            "not a usable SQLite database (file is not a database)"
        )
    finally:
        store.close()


def test_an_immutable_store_file_is_refused_as_unwritable(tmp_path):
    """The whole path, where the file system lets root make a file immutable (chattr +i; mode bits
    do not stop root): one FleetStoreError saying it cannot be written."""
    import shutil
    import subprocess

    path = tmp_path / "fleet.sqlite3"
    path.write_bytes(b"")
    if (
        not shutil.which("chattr")
        or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode
    ):
        pytest.skip("chattr +i is not available here")
    try:
        with pytest.raises(FleetStoreError, match="cannot write the store"):
            FleetStore(str(path), identity(GLOBAL_ID, "map", PARAMS, 0))
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_restart_keeps_which_namespace_sends_which_map(tmp_path):
    """A namespace is bound to the map id of its first container taken, and that binding is stored
    with it: after a restart another namespace claiming the id (a copied vehicle config) is still
    refused and the global map is untouched (before, the restarted server let it replace the
    vehicle's map). Read back with sqlite3: one meta row per bound namespace. A namespace taken
    out of map_server_node.vehicles frees its id for a new one."""
    store = tmp_path / "fleet.sqlite3"
    a, b = _vmap(20), _vmap(25, seed=9)
    bus = ReplayBus()
    server = _server(bus, store, global_period_s=0.0)
    _send(bus, "vehicle1", _snap(a, 1, 10))
    server.close()
    assert _rows(store, "meta", "WHERE key LIKE 'binding %'") == [("binding /vehicle1", "1")]

    bus = ReplayBus()
    server = _server(bus, store, global_period_s=0.0)
    assert _vinfo(server, "vehicle1")["map_id"] == 1
    _send(bus, "vehicle2", _snap(b, 1, 20))  # vehicle2 claims vehicle1's map id
    assert server.merge.global_map.equals(_rule({1: a}))
    info = _vinfo(server, "vehicle2")
    assert (info["map_id"], info["rejected"]) == (None, 1) and "belongs to namespace vehicle1" in info[
        "last_error"
    ]
    server.close()

    bus = ReplayBus()
    server = _server(bus, store, global_period_s=0.0, vehicles=["vehicle2", "vehicle3"])
    _send(bus, "vehicle2", _snap(b, 1, 20))  # vehicle1 retired: its id may move
    assert server.merge.global_map.equals(_rule({1: b}))
    server.close()


def test_containers_refused_on_a_namespace_are_counted_in_its_own_diagnostics(tmp_path):
    """docs/fleet.md: a foreign frame or quantisation is 'counted per vehicle' (rejected,
    last_error in `vehicle <ns>`): a vehicle on another quality that never got a container in
    shows its rejections there, not only in the node's totals; it is no vehicle of the map yet."""
    from gs_map_share.snapshot import encode_snapshot

    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    data = encode_snapshot(_vmap(20), QuantParams.from_quality(1), map_id=3, seq=5, n_levels=1)[0]
    for _ in range(3):
        _send(bus, "vehicle3", data)
    info = _vinfo(server, "vehicle3")
    server.close()
    assert info["rejected"] == 3 and "quantisation" in info["last_error"], info
    assert server.diag.values["vehicles"] == 0 and len(server.merge.global_map) == 0


def test_a_region_query_since_a_sequence_the_map_never_reached_is_an_error_answer(tmp_path):
    """docs/fleet.md: absurd values are an error answer. since_seq beyond the map's sequence (a
    client holding another store's sequence) would otherwise read 'ok, nothing changed' and keep
    its stale map; since_seq equal to the map's sequence is an ok, empty answer."""
    from gs_map_share.region import RegionAnswer

    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    _send(bus, "vehicle1", _snap(_vmap(20), 1, 10))
    seq = server.merge.global_seq
    ask = {"x": 0.0, "y": 0.0, "z": 0.0, "radius_m": 100.0}
    ahead = RegionAnswer.from_bytes(server.answer_region(json.dumps({**ask, "since_seq": seq + 1}).encode()))
    now = RegionAnswer.from_bytes(server.answer_region(json.dumps({**ask, "since_seq": seq}).encode()))
    server.close()
    assert ahead.status == "error" and f"ahead of the map's sequence {seq}" in ahead.error
    assert (now.status, now.tiles) == ("ok", [])
