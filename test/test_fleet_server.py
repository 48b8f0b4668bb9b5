"""map_server_node on the in-process replay bus and as a real process killed with SIGKILL.

Vehicles' recorded streams (tiny real mapper drives, test/fleet_drives.py) go in on their
namespaces' mapper topics; map_receiver_node instances (today's, unchanged) follow the server's
global stream; the end state is compared with the rule computed offline from the vehicles' maps as
their own receivers rebuild them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fleet_drives import fleet_recordings
from test_fleet_merge import _offline_merge, _own_maps

from gs_map_share.fleet_store import FleetStore, FleetStoreError, identity
from gs_map_share.receiver import MapStore
from gs_map_share.region import RegionAnswer, RegionRequest
from gs_map_share.snapshot import decode_snapshot
from gs_mapping.messages import bytes_to_uint8_multiarray
from gs_mapping.nodes.map_receiver_node import MapReceiverNode, MapReceiverNodeConfig
from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
from gs_mapping.runtime.replay import ReplayBus

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def recs():
    return fleet_recordings()


def _server(bus, store, **kw):
    cfg = MapServerNodeConfig(store_path=str(store), **kw)
    return MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})


def _receiver(bus, ns):
    cfg = MapReceiverNodeConfig(
        delta_topic="/map_server_node/map_delta", snapshot_topic="/map_server_node/map_snapshot"
    )
    return MapReceiverNode(bus.context("map_receiver_node", ns), {"map_receiver_node": cfg})


def _feed(bus, rec, containers, t):
    ns = f"/vehicle{rec.map_id}/mapper_node/"
    for c in containers:
        h_is_snap = c[24:32] == bytes(8)
        t[0] += 10_000_000
        bus.inject(ns + ("map_snapshot" if h_is_snap else "map_delta"), bytes_to_uint8_multiarray(c), t[0])


def test_receivers_follow_the_global_map_through_a_restart(recs, tmp_path):
    store = tmp_path / "fleet.sqlite3"
    bus = ReplayBus()
    acks = []
    bus.subscribe("/map_server_node/ack", lambda m: acks.append(json.loads(m.data)))
    server = _server(bus, store, compact_after=4, global_snapshot_every=3)
    rx1 = _receiver(bus, "rx1")
    t = [0]
    half = [len(r.containers) // 2 for r in recs]
    for r, h in zip(recs, half, strict=True):
        _feed(bus, r, r.containers[:h], t)
    rx2 = _receiver(bus, "rx2")  # late joiner: a fresh snapshot when the server sees it join
    t[0] += 2 * 10**9
    bus.advance(t[0])
    assert rx2.store.state.equals(server.merge.global_map)
    seq_before, map_before = server.merge.global_seq, server.merge.global_map
    snaps_rx1 = rx1.store.stats["snapshot"]

    # the server goes away and comes back on the same file (its subscriptions leave with it)
    server.close()
    for topic in list(bus.subscribers):
        bus.subscribers[topic] = [
            cb for cb in bus.subscribers[topic] if getattr(cb, "__self__", None) is not server
        ]
        if topic.startswith("/vehicle") or topic == "/map_server_node/region_request":
            bus.subscribers[topic] = []
    server = _server(bus, store)
    t[0] += 10**6
    bus.advance(t[0])
    # the same map; the sequence moved on to the wall clock by an empty delta, which rx1, up to
    # date, applied: it holds the server's sequence without a full resend
    assert server.merge.global_map.equals(map_before)
    assert server.merge.global_seq > seq_before
    assert rx1.store.seq == server.merge.global_seq and rx1.store.stats["snapshot"] == snaps_rx1
    for r, h in zip(recs, half, strict=True):
        _feed(bus, r, r.containers[h:], t)
    bus.advance(t[0] + 10**9)

    expected = _offline_merge(_own_maps(recs))
    assert server.merge.global_map.equals(expected)
    for rx in (rx1, rx2):
        assert rx.store.state.equals(expected), rx.store.last_error
        assert rx.store.header.map_id == 1000000
    assert rx1.store.stats["snapshot"] == snaps_rx1  # no full resend decoded after the restart
    assert rx1.store.stats["applied"] > 0
    # every container of every vehicle was acknowledged exactly once
    assert sorted((a["map_id"], a["seq"]) for a in acks) == sorted(
        (r.map_id, int.from_bytes(c[16:24], "little")) for r in recs for c in r.containers
    )
    # per-vehicle diagnostics
    server.on_diagnostics_timer()
    info = json.loads(server.diag.values["vehicle vehicle2"])
    assert info["map_id"] == 2 and info["gaussians"] == len(_own_maps(recs)[2])
    server.close()


@pytest.mark.parametrize(
    "estimate, level", [(None, 1), (1, 3)], ids=["levels_0_1", "all_levels_optimistic_estimate"]
)
def test_region_queries_are_bounded_progressive_and_exact(recs, tmp_path, monkeypatch, estimate, level):
    """Pages within max_bytes whose union is exactly the global Gaussians near the pose at levels
    <= k; with a far too optimistic first size guess, the answer must be re-cut to fit."""
    import gs_map_share.region as region

    if estimate is not None:
        monkeypatch.setattr(region, "ESTIMATE_BYTES", estimate)
        monkeypatch.setattr(region, "ESTIMATE_TILE_BYTES", estimate)
    bus = ReplayBus()
    server = _server(bus, tmp_path / "f.sqlite3")
    t = [0]
    for r in recs:
        _feed(bus, r, r.containers, t)
    bus.advance(t[0] + 10**9)
    g = server.merge.global_map
    pose = recs[1].poses[2][:3, 3]
    tb = server.params.tile_bits
    edge = (1 << tb) * server.params.pos_step

    def ask(**kw):
        req = RegionRequest(float(pose[0]), float(pose[1]), 0.0, **kw)
        return RegionAnswer.from_bytes(server.answer_region(req.to_bytes()))

    # all pages together = exactly the global Gaussians in tiles within R with level <= k
    got, cursor, pages, tiles = [], 0, 0, []
    while cursor is not None:
        a = ask(radius_m=12.0, max_level=level, max_bytes=2048, cursor=cursor)
        assert a.status == "ok", a.error
        assert len(a.container) <= 2048
        if a.container:
            h, q = decode_snapshot(a.container)
            assert h.map_id == 1000000 and h.seq == server.merge.global_seq
            got.append(q)
        tiles += a.tiles
        cursor, pages = a.next_cursor, pages + 1
    assert pages > 1
    import numpy as np

    from gs_map_share.quantize import QMap

    t_all = g.pos >> tb
    lo = t_all * edge
    near = np.clip(np.array([pose[0], pose[1], 0.0]), lo, lo + edge)
    near_enough = np.linalg.norm(near - np.array([pose[0], pose[1], 0.0]), axis=1) <= 12.0
    want = g.take(np.flatnonzero(near_enough & (g.level <= level)))
    assert len(want) and QMap.concat(got).equals(want)
    assert {0, 1} <= set(want.level.tolist())
    if level < 3:
        assert (g.level[near_enough] > level).any()  # the level cut is real
    assert {tuple(x) for x in (want.pos >> tb).tolist()} <= set(map(tuple, tiles))
    # progressive: the answer is layered, coarse levels first
    a = ask(radius_m=30.0, max_level=3, max_bytes=1 << 20)
    h, q = decode_snapshot(a.container)
    assert h.n_levels >= 2
    # nothing newer than the current sequence
    b = ask(radius_m=30.0, since_seq=server.merge.global_seq)
    assert b.status == "ok" and b.tiles == [] and b.next_cursor is None
    # absurd requests: one error answer each, counted; the map untouched
    for bad in (
        b'{"x": 0, "y": 0, "radius_m": -1}',
        b'{"x": 1e300, "y": 0}',
        b'{"x": "a", "y": 0}',
        b"\xff\xfe",
        b'{"x": 0, "y": 0, "radius_m": 1e9}',
        b'{"x": 0, "y": 0, "max_bytes": 10}',
        b'{"x": 0, "y": 0, "bogus": 1}',
        b'{"x": 1' + b"0" * 400 + b', "y": 0}',  # beyond a float
        b'{"x": 0, "y": 0, "cursor": 1' + b"0" * 400 + b"}",
        b"[" * 2000 + b"]" * 2000,  # deeper than the JSON parser recurses (within MAX_REQUEST)
    ):
        a = RegionAnswer.from_bytes(server.answer_region(bad))
        assert a.status == "error" and a.error and len(a.error) < 300 and "unexpected" not in a.error
    assert server.diag.rejected["region_queries"] == 10
    # anything unexpected in answering is an error answer too (a Zenoh query handler must not raise)
    monkeypatch.setattr(server, "_answer_region", lambda req: 1 / 0)
    a = RegionAnswer.from_bytes(server.answer_region(b'{"x": 0, "y": 0}'))
    assert a.status == "error" and "ZeroDivisionError" in a.error
    assert server.merge.global_map.equals(g)
    server.close()


def test_a_foreign_or_corrupt_store_is_one_clear_error(tmp_path):
    from gs_map_share.quantize import QuantParams

    ident = identity(7, "map", QuantParams.from_quality(3), 0)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(FleetStoreError, match="junk.sqlite3"):
        FleetStore(str(junk), ident)
    assert junk.read_bytes() == b"not a database at all" * 100  # never reset
    import sqlite3

    foreign = tmp_path / "foreign.sqlite3"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(FleetStoreError, match="not a gs_mapping fleet store"):
        FleetStore(str(foreign), ident)
    good = tmp_path / "good.sqlite3"
    FleetStore(str(good), ident).close()
    with pytest.raises(FleetStoreError, match="global_map_id"):
        FleetStore(str(good), identity(8, "map", QuantParams.from_quality(3), 0))
    # an identity record that is not JSON, or not an object: one clear error, the store untouched
    for bad_ident in ("not json", "[1, 2]", None):
        copy = tmp_path / "ident.sqlite3"
        copy.write_bytes(good.read_bytes())
        db = sqlite3.connect(copy)
        db.execute("UPDATE meta SET value = ? WHERE key = 'identity'", (bad_ident or b"\xff",))
        db.commit()
        db.close()
        before = copy.read_bytes()
        with pytest.raises(FleetStoreError, match="identity record is not a JSON object"):
            FleetStore(str(copy), ident)
        assert copy.read_bytes() == before
    # a flipped page in the middle of the file
    s = FleetStore(str(good), ident)
    from gs_map_share.fleet_store import Row

    s.commit([(1, Row(5, 0, os.urandom(50000)))])
    s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s.close()
    raw = bytearray(good.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 4096] = bytes(4096)
    raw[4096 : 4096 + 100] = os.urandom(100)
    good.write_bytes(bytes(raw))
    with pytest.raises(FleetStoreError):
        FleetStore(str(good), ident)


def test_kill_9_mid_ingest_loses_nothing_acknowledged(recs, tmp_path):
    store = tmp_path / "fleet.sqlite3"
    inputs = tmp_path / "in.hex"
    order = [c for group in zip(*[r.containers for r in recs], strict=False) for c in group]
    inputs.write_text("\n".join(c.hex() for c in order))
    env = dict(os.environ, PYTHONPATH=f"{HERE.parent / 'src'}{os.pathsep}{HERE}", OMP_NUM_THREADS="1")
    acked: dict[int, int] = {}
    follower = MapStore()
    published: list[bytes] = []
    rng = random.Random(7)
    for _round in range(2):
        p = subprocess.Popen(
            [sys.executable, str(HERE / "fleet_server_child.py"), str(store), str(inputs)],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        kill_after = rng.randint(3, len(order) // 2)
        n = 0
        for line in p.stdout:
            kind, _, body = line.strip().partition(" ")
            if kind == "ACK":
                a = json.loads(body)
                acked[a["map_id"]] = max(acked.get(a["map_id"], 0), a["seq"])
                n += 1
                if n >= kill_after:
                    os.kill(p.pid, signal.SIGKILL)  # mid-ingest: the next container is being applied
                    break
            elif kind in ("DELTA", "SNAPSHOT"):
                follower.receive(bytes.fromhex(body))
                published.append(bytes.fromhex(body))
            elif kind == "DONE":
                break
        p.kill()
        _, err = p.communicate()
        assert p.returncode == -signal.SIGKILL, err[-2000:]
    # a second receiver missed the last global delta the killed server published
    behind = MapStore()
    last_delta = max(i for i, c in enumerate(published) if c[24:32] != bytes(8))
    for i, c in enumerate(published):
        if i != last_delta:
            behind.receive(c)
    assert behind.seq < follower.seq
    bus_receivers = [follower, behind]
    # restart in this process, the receivers already listening: nothing acknowledged is missing,
    # the global map is the rule's, and both receivers continue without a full resend
    bus = ReplayBus()
    for rx in bus_receivers:
        bus.subscribe("/map_server_node/map_delta", lambda m, rx=rx: rx.receive(bytes(m.data)))
    server = _server(bus, store)
    for mid, seq in acked.items():
        assert server.merge.vehicles[mid].seq >= seq
    assert server.merge.global_map.equals(server.merge.reference_merge())
    assert server.merge.global_seq >= follower.seq
    snaps = [rx.stats["snapshot"] for rx in bus_receivers]
    bus._drain()  # the server's start: its last global deltas again (and a snapshot, not listened to)
    assert behind.seq == follower.seq == server.merge.global_seq
    t = [0]
    for r in recs:
        _feed(bus, r, r.containers, t)
    bus.advance(t[0] + 10**9)  # the global flush timer
    assert [rx.stats["snapshot"] for rx in bus_receivers] == snaps  # no full resend decoded
    expected = _offline_merge(_own_maps(recs))
    assert server.merge.global_map.equals(expected)
    assert follower.state.equals(expected) and behind.state.equals(expected)
    server.close()


def test_server_on_a_foreign_file_is_one_line_and_exit_2(tmp_path):
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"junk" * 100)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"/**:\n  ros__parameters:\n    map_server_node:\n      store_path: {junk}\n")
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"), OMP_NUM_THREADS="1")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "gs_mapping",
            "run",
            "map_server_node",
            "--config",
            str(cfg),
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "junk.sqlite3" in lines[0] and "Traceback" not in p.stderr
    assert junk.read_bytes() == b"junk" * 100


@pytest.mark.parametrize(
    "meta",
    [
        b"[1, 2]",
        b'{"seq": 1}',
        b'{"status": "ok", "seq": 1, "bogus": 2}',
        b'{"status": 3, "seq": 1}',
        b'{"status": "ok", "seq": "1"}',
        b'{"status": "ok", "seq": 1, "container": "x"}',
        b"[" * 5000,
    ],
)
def test_a_malformed_region_answer_is_a_decode_error(meta):
    """A client reading an answer: a JSON that is not an answer's is our DecodeError, not a TypeError."""
    import struct

    from gs_map_share.errors import DecodeError
    from gs_map_share.region import MAGIC, VERSION

    with pytest.raises(DecodeError, match="region answer"):
        RegionAnswer.from_bytes(MAGIC + struct.pack("<HI", VERSION, len(meta)) + meta)
    good = RegionAnswer("ok", 3, tiles=[], id="q").to_bytes()
    assert RegionAnswer.from_bytes(good) == RegionAnswer("ok", 3, tiles=[], id="q")


def test_a_namespace_carries_only_its_own_map(recs, tmp_path):
    """A container of another map on a bound vehicle namespace, or of a map bound to another
    namespace, is refused before the merge sees it: the global map and the vehicles it holds stay
    as they were (a hostile review had map 2 merged through vehicle1's topics, counted as rejected)."""
    bus = ReplayBus()
    server = _server(bus, tmp_path / "fleet.sqlite3")
    a, b = recs[0], recs[1]
    t = [0]
    _feed(bus, a, a.containers[:2], t)
    bus.advance(t[0] + 10**9)
    before = server.merge.global_map.copy()
    assert sorted(server.merge.vehicles) == [a.map_id]
    hijack = type(b)(**{**b.__dict__, "map_id": a.map_id})  # b's containers on a's namespace
    _feed(bus, hijack, b.containers[:1], t)
    takeover = type(a)(**{**a.__dict__, "map_id": b.map_id})  # a's containers on b's namespace
    _feed(bus, takeover, a.containers[2:3], t)
    bus.advance(t[0] + 10**9)
    assert server.merge.global_map.equals(before) and sorted(server.merge.vehicles) == [a.map_id]
    assert server.diag.rejected[f"vehicle{a.map_id}"] == 1
    assert server.diag.rejected[f"vehicle{b.map_id}"] == 1
    # on its own namespace, b's map is merged as ever
    _feed(bus, b, b.containers[:1], t)
    bus.advance(t[0] + 10**9)
    assert sorted(server.merge.vehicles) == sorted([a.map_id, b.map_id])
    server.close()


def test_one_server_per_store(tmp_path):
    """A second server on a store another holds is refused in one line (two servers on one file
    committed the same global sequence with different maps); once the first closes, it opens."""
    from gs_map_share.quantize import QuantParams

    ident = identity(7, "map", QuantParams.from_quality(3), 0)
    first = FleetStore(str(tmp_path / "fleet.sqlite3"), ident)
    with pytest.raises(FleetStoreError, match="another map server holds this store"):
        FleetStore(str(tmp_path / "fleet.sqlite3"), ident)
    first.close()
    FleetStore(str(tmp_path / "fleet.sqlite3"), ident).close()


@pytest.mark.parametrize("with_zenoh", [True, False])
@pytest.mark.parametrize(
    "key", ["/gs_mapping/fleet/region", "gs/a//b", "gs/*", "gs/**/x", "gs/r$*", "gs/a#b", "gs/a?b", ""]
)
def test_a_region_key_that_is_no_concrete_zenoh_key_is_refused_before_the_store(
    tmp_path, monkeypatch, key, with_zenoh
):
    """The character rule refuses what Zenoh refuses and wildcards (a server answers under its own
    key), with zenoh installed or not (the numpy-1 venv has none), before the store is created; a
    concrete key such as docs/fleet.md's shard key is taken."""
    from gs_mapping.errors import ConfigError

    if with_zenoh:
        pytest.importorskip("zenoh")
    else:
        monkeypatch.setitem(sys.modules, "zenoh", None)  # import zenoh: ImportError
    store = tmp_path / "f.sqlite3"
    with pytest.raises(ConfigError, match="map_server_node.region_key"):  # (as the config is built)
        MapServerNodeConfig(store_path=str(store), vehicles=["vehicle1"], region_key=key)
    assert not store.exists()
    cfg = MapServerNodeConfig(
        store_path=str(store), vehicles=["vehicle1"], region_key="gs_mapping/fleet/r12_7/region"
    )
    MapServerNode(ReplayBus().context("map_server_node"), {"map_server_node": cfg}).close()
