"""Outside review of fleet map sharing (docs/fleet.md): map_server_node, its SQLite store, the merge
and region queries, with inputs the fleet suite does not bring: vehicle sequence numbers beyond
SQLite's signed 64-bit INTEGER, a store held by another process, store rows of the wrong SQLite type,
a store cut short or without its global restart point, the server killed with SIGKILL while it
commits, large future deltas, a global map larger than one vehicle's bound, one namespace spelled
two ways, a vehicle restarted with an older sequence, the server's clock stepping back, and region
queries around the lattice origin, far away and with non-finite or mistyped fields.

Every test drives the real MapServerNode (on the in-process ReplayBus, or as a child process of this
file) on real SQLite files and real codec containers, and compares with an independent reference:
docs/fleet.md's merge rule written out here per Gaussian, each vehicle's own map state as built
here, a brute-force tile/ball distance in plain Python, the receiver's documented bounds, ROS 2 name
resolution, or the rule a docstring states. Where the code is wrong the test is a strict xfail
whose reason names the bug."""

from __future__ import annotations

import fcntl
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # (the child server below runs this file as a script)
    sys.path[:0] = [str(HERE.parent / "src"), str(HERE)]

from test_guards_survivors7 import _rule  # noqa: E402  (docs/fleet.md's merge rule, written out)

from gs_map_share.fleet_store import FleetStoreError  # noqa: E402
from gs_map_share.quantize import QMap, QuantParams, to_qmap  # noqa: E402
from gs_mapping.messages import bytes_to_uint8_multiarray  # noqa: E402
from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig  # noqa: E402
from gs_mapping.runtime.replay import ReplayBus  # noqa: E402

PARAMS = QuantParams.from_quality(3)  # map_server_node.quality's default
GLOBAL_ID = 1000000  # map_server_node.map_id's default

# ------------------------------------------------------------------------------------------------
# helpers: vehicle maps and streams built here, the server on the replay bus, the rule written out


def _vmap(n: int, seed: int = 3, origin=(0.0, 0.0, 0.0)) -> QMap:
    """A vehicle map of n Gaussians (local ids 1..n) on the fleet's quantisation, SH degree 0."""
    from synthetic_maps import synthetic_map

    q = to_qmap(synthetic_map(max(n, 50), 0, seed=seed, origin=origin), PARAMS).take(np.arange(n))
    q.ids = np.arange(1, n + 1, dtype=np.uint64)
    return q


def _snap(q: QMap, map_id: int, seq: int) -> bytes:
    from gs_map_share.snapshot import encode_snapshot

    return encode_snapshot(q, PARAMS, map_id=map_id, seq=seq, n_levels=1, frame_id="map")[0]


def _delta(old: QMap, new: QMap, map_id: int, seq: int) -> bytes:
    from gs_map_share.delta import encode_delta

    return encode_delta(old, new, PARAMS, map_id=map_id, seq=seq, base_seq=seq - 1)[0]


def _stream(map_id: int, n_deltas: int, seed: int, origin, first_seq: int = 100):
    """(containers, {seq: the vehicle's own map at seq}): a snapshot of 20 Gaussians, then deltas
    adding 8 each and moving none."""
    full = _vmap(20 + 8 * n_deltas, seed=seed, origin=origin)
    states = {first_seq + k: full.take(np.arange(20 + 8 * k)) for k in range(n_deltas + 1)}
    out = [_snap(states[first_seq], map_id, first_seq)]
    out += [
        _delta(states[s - 1], states[s], map_id, s) for s in range(first_seq + 1, first_seq + n_deltas + 1)
    ]
    return out, states


def _server(bus: ReplayBus, store, **kw) -> MapServerNode:
    cfg = MapServerNodeConfig(store_path=str(store), **kw)
    return MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})


def _send(bus: ReplayBus, ns: str, data: bytes) -> None:
    is_snapshot = data[24:32] == bytes(8)  # base_seq 0 (docs/format.md header layout)
    topic = "map_snapshot" if is_snapshot else "map_delta"
    bus.inject(f"/{ns}/mapper_node/{topic}", bytes_to_uint8_multiarray(data), bus.now_ns + 1000)


def _acks(bus: ReplayBus) -> list[dict]:
    acks: list[dict] = []
    bus.subscribe("/map_server_node/ack", lambda m: acks.append(json.loads(m.data)))
    return acks


# ------------------------------------------------------------------------------------------------
# a vehicle sequence number beyond SQLite's INTEGER (u64 in the container, i64 in SQLite)


@pytest.mark.parametrize("period", [0.2, 0.0], ids=["timer_flush", "flush_each"])
def test_a_vehicle_sequence_beyond_sqlite_integer_does_not_wedge_the_fleet(tmp_path, period):
    """docs/fleet.md: a container that cannot be merged is counted per vehicle, never applied; a
    storage failure stops ingest, counted and logged. Whatever the server does with vehicle1's
    snapshot numbered 2**63 (a clock far in the future, or hostile bytes), vehicle2's ordinary
    snapshot must then be committed, acknowledged, and the global map must be the rule over the
    vehicles acknowledged — and no exception may leave the flush timer."""
    bus = ReplayBus()
    acks = _acks(bus)
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=period)
    bus.advance(0)
    a, b = _vmap(20, seed=3), _vmap(25, seed=9, origin=(40.0, 0.0, 0.0))
    _send(bus, "vehicle1", _snap(a, 1, 1 << 63))
    bus.advance(int(0.5e9))  # (raises OverflowError out of the flush timer today)
    _send(bus, "vehicle2", _snap(b, 2, 10))
    bus.advance(int(1.0e9))
    acked = {(x["map_id"], x["seq"]) for x in acks}
    assert (2, 10) in acked
    maps = {2: b} | ({1: a} if (1, 1 << 63) in acked else {})
    assert server.merge.global_map.equals(_rule(maps))
    server.close()
    # what was acknowledged is what a restart finds
    again = _server(ReplayBus(), tmp_path / "fleet.sqlite3")
    assert again.merge.global_map.equals(_rule(maps))
    again.close()


# ------------------------------------------------------------------------------------------------
# the store: held by another process, wrong SQLite types, no global restart point

_LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA locking_mode=EXCLUSIVE")  # (a tool holding the file: readers are shut out)
db.execute("BEGIN IMMEDIATE"); db.execute("SELECT count(*) FROM meta").fetchone(); db.execute("COMMIT")
print("locked", flush=True)
time.sleep(30)
"""


def _store_with_vehicle(tmp_path: Path, name: str = "fleet.sqlite3") -> tuple[Path, dict]:
    """A store holding vehicle1's snapshot and 3 deltas (committed, acknowledged, server closed)."""
    store = tmp_path / name
    bus = ReplayBus()
    server = _server(bus, store, global_period_s=0.0)
    stream, states = _stream(1, 3, seed=3, origin=(0.0, 0.0, 0.0))
    for c in stream:
        _send(bus, "vehicle1", c)
    server.close()
    return store, states


def test_a_store_held_by_another_process_is_not_called_unusable(tmp_path):
    """FleetStore._why's rule: a store that cannot be used for a reason outside the file (here: a
    tool in another process holding SQLite's lock) is not called corrupt or not-SQLite — an
    operator might delete a good map. The file is left untouched either way."""
    store, _ = _store_with_vehicle(tmp_path)
    before = store.read_bytes()
    p = subprocess.Popen([sys.executable, "-c", _LOCKER, str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(FleetStoreError) as err:  # (after SQLite's 5 s busy timeout)
            _server(ReplayBus(), store)
    finally:
        p.kill()
        p.wait()
    assert store.read_bytes() == before
    msg = str(err.value)
    assert "not a usable SQLite database" not in msg and "corrupt" not in msg, msg


def _flock_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE vehicle_log SET container = CAST(container AS TEXT)",
        "UPDATE vehicle_log SET seq = 'abc' WHERE seq = (SELECT max(seq) FROM vehicle_log)",
        "INSERT INTO meta VALUES ('binding vehicle9', 'xyz')",
        "UPDATE global_snapshot SET container = 'hello'",
    ],
    ids=["container_text", "seq_text", "binding_text", "global_snapshot_text"],
)
def test_a_store_row_of_the_wrong_type_is_one_store_error(tmp_path, tamper):
    """docs/fleet.md, "Bad files": a log that does not decode is one FleetStoreError naming the
    file (gs-mapping run prints it and exits 2); the server that refused it holds nothing (the
    file's flock is free for the next try)."""
    store, _ = _store_with_vehicle(tmp_path)
    db = sqlite3.connect(store)
    db.execute(tamper)
    db.commit()
    db.close()
    with pytest.raises(FleetStoreError, match=store.name):
        _server(ReplayBus(), store)
    assert _flock_free(store)


def test_a_store_without_its_global_restart_point_rebuilds_the_global_map_from_the_vehicles(tmp_path):
    """docs/fleet.md, Restart: every vehicle map is rebuilt from its log, then the merge rule is
    recomputed from the vehicles' maps and the global map brought to it. A store whose global
    restart point is missing (written by another version, or edited) still holds vehicle1's log:
    the global map must be the rule over vehicle1's own map."""
    store, states = _store_with_vehicle(tmp_path)
    db = sqlite3.connect(store)
    db.execute("DELETE FROM global_snapshot")
    db.execute("DELETE FROM global_log")
    db.commit()
    db.close()
    bus = ReplayBus()
    server = _server(bus, store, global_period_s=0.0)
    assert server.merge.vehicles[1].state.equals(states[max(states)])  # the vehicle is restored...
    want = _rule({1: states[max(states)]})
    # ...and the vehicle resending its current map must at the latest bring the global map to it
    _send(bus, "vehicle1", _snap(states[max(states)], 1, max(states) + 1))
    assert server.merge.global_map.equals(want)
    server.close()


def test_a_truncated_store_is_one_store_error_or_the_whole_map(tmp_path):
    """A store file cut short (a copy interrupted, a full disk while copying): at every 1 KiB and
    at odd lengths, the server either refuses it with one FleetStoreError naming the file, or
    opens it with the whole map — vehicle1's own map at its last sequence and the rule over it —
    never a silently smaller map. (A 0-byte file is a new store by docs/fleet.md; not cut here.)"""
    store, states = _store_with_vehicle(tmp_path)
    raw = store.read_bytes()
    assert not Path(str(store) + "-wal").exists() or Path(str(store) + "-wal").stat().st_size == 0
    want_vehicle = states[max(states)]
    cuts = sorted(set(range(1024, len(raw), 1024)) | {100, 4095, 4097, len(raw) - 1})
    refused = 0
    for cut in cuts:
        f = tmp_path / f"cut{cut}.sqlite3"
        f.write_bytes(raw[:cut])
        try:
            server = _server(ReplayBus(), f)
        except FleetStoreError as exc:
            assert f.name in str(exc)
            refused += 1
            continue
        assert server.merge.vehicles[1].state.equals(want_vehicle), cut
        assert server.merge.global_map.equals(_rule({1: want_vehicle})), cut
        server.close()
    assert refused >= len(cuts) - 2  # (only a cut inside the last page's unused bytes can open)


def test_one_namespace_spelled_two_ways_is_one_vehicle(tmp_path):
    """ROS 2 name resolution: 'vehicle1' and '/vehicle1' are the same namespace (both subscribe
    /vehicle1/mapper_node/...). Either the configuration is refused at start, or the vehicle's
    containers are taken with nothing rejected and no phantom second vehicle in /diagnostics."""
    from gs_mapping.errors import GsMappingError

    bus = ReplayBus()
    try:
        server = _server(
            bus, tmp_path / "fleet.sqlite3", global_period_s=0.0, vehicles=["vehicle1", "/vehicle1"]
        )
    except GsMappingError:
        return
    stream, states = _stream(1, 2, seed=3, origin=(0.0, 0.0, 0.0))
    for c in stream:
        _send(bus, "vehicle1", c)
    assert server.merge.global_map.equals(_rule({1: states[max(states)]}))
    assert sum(server.diag.rejected.values()) == 0, dict(server.diag.rejected)
    server.close()


# ------------------------------------------------------------------------------------------------
# SIGKILL while committing: acknowledged containers kept, global map = rule over the vehicles' maps


def _child(store: str, inputs: str) -> None:
    """The server in a process of its own: ingests hex containers (one per line, 'ns hex'), one
    commit per container (global_period_s 0), prints each acknowledgement."""
    bus = ReplayBus()
    cfg = MapServerNodeConfig(store_path=store, global_period_s=0.0, compact_after=3, global_snapshot_every=2)
    node = MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})
    bus.subscribe("/map_server_node/ack", lambda m: print("ACK " + m.data, flush=True))
    print("READY", flush=True)
    with open(inputs) as f:
        for line in f:
            ns, data = line.split()
            _send(bus, ns, bytes.fromhex(data))
    print("DONE", flush=True)
    sys.stdin.read()  # wait to be killed
    node.close()


def test_sigkill_during_commits_keeps_every_ack_and_the_rule_over_the_vehicles_maps(tmp_path):
    """The server process is killed with SIGKILL at random moments while it commits (no wait for
    an ack line: the kill lands inside ingest, commit or compaction), restarted, killed again.
    Each time the restarted server must hold, for every vehicle, at least the last acknowledged
    sequence, with exactly the vehicle's own map at that sequence (built here, not read from the
    server), and a global map equal to the rule computed here over those maps."""
    streams = {
        1: _stream(1, 12, seed=3, origin=(0.0, 0.0, 0.0)),
        2: _stream(2, 12, seed=9, origin=(1.0, 1.0, 0.0)),  # overlapping: tiles change owner
    }
    lines = [
        f"vehicle{mid} {c.hex()}" for k in range(13) for mid in (1, 2) for c in streams[mid][0][k : k + 1]
    ]
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(lines))
    store = tmp_path / "fleet.sqlite3"
    env = dict(os.environ, PYTHONPATH=f"{HERE.parent / 'src'}{os.pathsep}{HERE}", OMP_NUM_THREADS="1")
    rng = random.Random(20)
    acked: dict[int, int] = {}
    for _round in range(2):
        p = subprocess.Popen(
            [sys.executable, __file__, str(store), str(inputs)],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert p.stdout.readline().strip() == "READY", p.stderr.read()[-2000:]
        kill_at = rng.randint(4, 14)
        n = 0
        for line in p.stdout:
            if line.startswith("DONE"):
                break
            if line.startswith("ACK "):
                a = json.loads(line[4:])
                acked[a["map_id"]] = max(acked.get(a["map_id"], 0), a["seq"])
                n += 1
                if n == kill_at:
                    time.sleep(rng.uniform(0.0, 0.03))  # somewhere inside the next containers' work
                    os.kill(p.pid, signal.SIGKILL)
                    break
        p.kill()
        p.communicate()
        server = _server(ReplayBus(), store)
        maps = {}
        for mid, (_, states) in streams.items():
            v = server.merge.vehicles.get(mid)
            if mid in acked:
                assert v is not None and v.seq >= acked[mid]
            if v is not None:
                assert v.state.equals(states[v.seq]), f"vehicle {mid} at {v.seq}"
                maps[mid] = states[v.seq]
        assert maps and server.merge.global_map.equals(_rule(maps))
        server.close()


# ------------------------------------------------------------------------------------------------
# region queries: around the lattice origin, far away, non-finite


def _brute_region(g: QMap, centre, radius: float, max_level: int) -> QMap:
    """The Gaussians whose codec tile's cube [T·e, (T+1)·e]³ (metres, e = tile edge) comes within
    radius of centre, level ≤ max_level — per Gaussian, per axis, in plain Python."""
    e = (1 << PARAMS.tile_bits) * PARAMS.pos_step
    keep = []
    for i, (p, lvl) in enumerate(zip(g.pos.tolist(), g.level.tolist(), strict=True)):
        d2 = 0.0
        for k in range(3):
            t = p[k] >> PARAMS.tile_bits  # floor division: negative coordinates round down
            lo, hi = t * e, (t + 1) * e
            d2 += max(lo - centre[k], 0.0, centre[k] - hi) ** 2
        if math.sqrt(d2) <= radius and lvl <= max_level:
            keep.append(i)
    return g.take(np.array(keep, np.int64))


def test_region_pages_around_the_lattice_origin_are_the_brute_force_set(tmp_path):
    """A vehicle map straddling x = y = 0 (tiles of both signs), a pose on the negative side near
    the origin: all pages together are exactly the Gaussians the brute-force tile/ball distance
    selects, each page within max_bytes."""
    from gs_map_share.region import RegionAnswer, RegionRequest
    from gs_map_share.snapshot import decode_snapshot

    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    q = _vmap(300, seed=4, origin=(-4.0, -4.0, 0.0))
    assert (q.pos[:, 0] < 0).any() and (q.pos[:, 0] > 0).any()
    _send(bus, "vehicle1", _snap(q, 1, 5))
    g = server.merge.global_map
    assert g.equals(_rule({1: q}))
    centre = (-0.7, -1.3, 0.4)
    got, cursor = [], 0
    while cursor is not None:
        req = RegionRequest(*centre, radius_m=2.5, cursor=cursor, max_bytes=1500)
        a = RegionAnswer.from_bytes(server.answer_region(req.to_bytes()))
        assert a.status == "ok", a.error
        assert len(a.container) <= 1500
        if a.container:
            got.append(decode_snapshot(a.container)[1])
        cursor = a.next_cursor
    want = _brute_region(g, centre, 2.5, 255)
    assert len(want) and len(want) < len(g)
    assert QMap.concat([QMap.empty(0), *got]).equals(want)
    server.close()


@pytest.mark.parametrize(
    "body",
    [
        b'{"x": NaN, "y": 0}',
        b'{"x": 0, "y": -Infinity}',
        b'{"x": 0, "y": 0, "z": 0, "radius_m": NaN}',
        b'{"x": 0, "y": 0, "radius_m": 0}',
        b'{"x": 0, "y": 0, "radius_m": -5}',
        b'{"x": 0, "y": 0, "max_level": -1}',
        b'{"x": 0, "y": 0, "max_level": 2.0}',
        b'{"x": 0, "y": 0, "since_seq": -1}',
        b'{"x": 0, "y": 0, "cursor": true}',
        b'{"x": 0, "y": 0, "id": 5}',
        b'{"x": [0], "y": 0}',
        b'{"y": 0}',
        b"",
        b"null",
        b'"x"',
    ],
)
def test_non_finite_inverted_or_mistyped_region_requests_are_one_error_answer_each(tmp_path, body):
    """docs/fleet.md: non-finite or absurd values, a radius outside (0, max], wrong types, missing
    fields: one error answer (GSRQ framing, status error, a reason), counted; the map untouched."""
    from gs_map_share.region import RegionAnswer

    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    q = _vmap(40)
    _send(bus, "vehicle1", _snap(q, 1, 5))
    raw = server.answer_region(body)
    assert raw[:4] == b"GSRQ"
    a = RegionAnswer.from_bytes(raw)
    assert a.status == "error" and a.error and "unexpected" not in a.error, a.error
    assert a.container == b""
    assert server.diag.rejected["region_queries"] == 1
    assert server.merge.global_map.equals(_rule({1: q}))
    server.close()


def test_a_region_far_from_the_map_and_at_the_lattice_bound_is_an_empty_last_page(tmp_path):
    """A pose 1e9 m away (the request's lattice bound, accepted) and one just beyond it (refused):
    the first is ok with no tiles and no next page, the second one error answer."""
    from gs_map_share.region import RegionAnswer, RegionRequest

    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    _send(bus, "vehicle1", _snap(_vmap(40), 1, 5))
    far = RegionAnswer.from_bytes(
        server.answer_region(RegionRequest(-1e9, 1e9, 0.0, radius_m=2000.0).to_bytes())
    )
    assert (far.status, far.tiles, far.next_cursor, far.gaussians) == ("ok", [], None, 0)
    beyond = RegionAnswer.from_bytes(server.answer_region(RegionRequest(-1.0000001e9, 0.0).to_bytes()))
    assert beyond.status == "error" and "lattice" in beyond.error
    server.close()


# ------------------------------------------------------------------------------------------------
# a vehicle restarted with an older sequence (a clock set back): what the operator sees


def test_a_vehicle_restarted_with_an_older_sequence_rejoins_and_its_old_run_is_a_replay(tmp_path):
    """docs/fleet.md/format.md §5 assume a restarted mapper numbers above its past (wall clock
    in µs). A vehicle whose clock went back restarts below it, outside every sequence the server
    held its map at (docs/fleet.md, "Vehicles": spans): its new snapshot is taken (counted
    `clock_back`) and its deltas follow; its old run's containers are then replays (counted,
    visible in its diagnostics), the global map is the rule over what was taken, and the store
    after a restart says the same."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    stream, _ = _stream(1, 2, seed=3, origin=(0.0, 0.0, 0.0), first_seq=5000)
    for c in stream:
        _send(bus, "vehicle1", c)
    restarted, states = _stream(1, 2, seed=11, origin=(0.0, 0.0, 0.0), first_seq=4000)
    for c in restarted + stream:
        _send(bus, "vehicle1", c)
    server.on_diagnostics_timer()
    info = json.loads(server.diag.values["vehicle vehicle1"])
    kept = states[4002]
    assert (info["seq"], info["replayed"], info["applied"], info["snapshot"], info["clock_back"]) == (
        4002,
        3,
        4,
        2,
        1,
    )
    assert server.merge.global_map.equals(_rule({1: kept}))
    server.close()
    again = _server(ReplayBus(), tmp_path / "fleet.sqlite3")
    assert again.merge.global_map.equals(_rule({1: kept}))
    again.close()


# ------------------------------------------------------------------------------------------------
# future deltas: buffered "exactly as a receiver does" — the receiver bounds their bytes too


def _padded_future_delta(map_id: int, base_seq: int, pad: int) -> bytes:
    """A structurally valid delta (every CRC right) for a base not reached yet, made large by a PAD
    chunk (docs/format.md: padding, ignored): what a buggy or hostile vehicle can send."""
    from gs_map_share.container import PAD, Chunk, Header, pack

    h = Header(map_id, base_seq + 1, base_seq, 20, 0, 0, 1, PARAMS)
    return pack(h, [Chunk(PAD, 0, bytes(pad))])


def test_a_vehicles_buffered_future_deltas_are_bounded_in_bytes_as_a_receivers(tmp_path):
    """docs/fleet.md: per vehicle, containers are applied exactly as a receiver does, later ones
    buffered. gs_map_share.receiver.MapStore (the receiver) bounds what it buffers at 64 MB
    (max_pending_bytes) and drops the farthest beyond it. Nine 8 MB future deltas (72 MB): the
    receiver drops at least one; the server's vehicle must too (its diagnostics' "dropped")."""
    from gs_map_share.receiver import MapStore

    q = _vmap(20)
    snap = _snap(q, 1, 1000)
    future = [_padded_future_delta(1, 1002 + k, 8 << 20) for k in range(9)]  # base 1001 never comes
    rx = MapStore()
    for c in [snap, *future]:
        rx.receive(c)
    assert rx.stats["dropped"] >= 1  # the receiver's own rule, on the same bytes
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    binding = server.bindings["vehicle1"]
    for c in [snap, *future]:
        server.ingest(c, binding)
    server.on_diagnostics_timer()
    info = json.loads(server.diag.values["vehicle vehicle1"])
    assert info["seq"] == 1000 and info["buffered"] + info["dropped"] == 9
    assert info["dropped"] >= 1, info
    server.close()


# ------------------------------------------------------------------------------------------------
# the server's own clock stepping back (the live runtimes' now_ns is the wall clock)


def test_periodic_snapshots_go_on_after_the_clock_steps_back(tmp_path):
    """map_server_node.snapshot_period_s: the period of ~/map_snapshot. The node's clock (the
    wall clock under DDS and Zenoh) steps back 90 s, as a host with a skewed clock does when NTP
    corrects it: within the next 5 periods at least one snapshot must still go out."""
    bus = ReplayBus()
    stamps: list[int] = []
    bus.subscribe("/map_server_node/map_snapshot", lambda m: stamps.append(bus.now_ns))
    server = _server(bus, tmp_path / "fleet.sqlite3", snapshot_period_s=1.0)
    for k in range(1, 21):  # 10 s at the normal pace: about one snapshot a second
        bus.advance(100 * 10**9 + k * 5 * 10**8)
    assert len(stamps) >= 9
    n = len(stamps)
    # The clock steps back by 90 s (a clock injection, no component state). The live runtimes'
    # timers run on the monotonic clock, the replay bus's on its own: the node's timer is called
    # at its period here, as a live runtime would.
    for k in range(1, 11):
        bus.now_ns = 20 * 10**9 + k * 5 * 10**8
        server.on_snapshot_timer()
        bus.advance(bus.now_ns)
    assert len(stamps) > n
    server.close()


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])


def test_a_global_map_beyond_the_receivers_default_bound_is_said_once(tmp_path, monkeypatch, caplog):
    """Each vehicle's map is bounded on the server (max_vehicle_gaussians), the merge of several is
    not, and map_receiver_node.max_gaussians defaults to one vehicle's bound: a global map beyond it
    is refused by every default receiver. The server says so once, naming the parameter. Scaled
    down: the receivers' default bound 30, two vehicles of 25 Gaussians each in different tiles."""
    import logging

    import gs_map_share.receiver as receiver

    monkeypatch.setattr(receiver, "DEFAULT_MAX_GAUSSIANS", 30)
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    a, b = _vmap(25, seed=3), _vmap(25, seed=9, origin=(40.0, 0.0, 0.0))
    with caplog.at_level(logging.WARNING):
        _send(bus, "vehicle1", _snap(a, 1, 7))
        assert not [r for r in caplog.records if "max_gaussians" in r.getMessage()]
        _send(bus, "vehicle2", _snap(b, 2, 9))
        _send(bus, "vehicle2", _snap(_vmap(26, seed=9, origin=(40.0, 0.0, 0.0)), 2, 10))
    said = [r.getMessage() for r in caplog.records if "max_gaussians" in r.getMessage()]
    assert len(server.merge.global_map) > 30
    assert len(said) == 1 and "map_receiver_node.max_gaussians" in said[0], said
    server.close()
