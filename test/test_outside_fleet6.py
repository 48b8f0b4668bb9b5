"""Outside review of fleet map sharing (docs/fleet.md, issue 19), sixth pass: the server's restart
when the global restart point moves at that very restart, a vehicle namespace respelled between two
runs of the server, the Zenoh router's start line with a config file, a fleet on quality 0's
1.792 m tiles, and a real trained scene (splats/guitar.ply, tiles of up to 44,000 Gaussians) split
between two vehicles, merged and paged through by a vehicle on a small link.

Each test drives the real code (MapServerNode on the in-process ReplayBus over real SQLite files and
real codec containers, `gs-mapping router` through the CLI's own main) and compares with something
outside it: the container header layout of docs/format.md read by hand, the store's tables read
with the standard library's sqlite3, ROS 2 name resolution as docs/fleet.md states it, the
operating system's own answer to a TCP connect, and docs/fleet.md's merge rule and tile cubes
written out here per Gaussian with Python integers. Where the code is wrong the test is a strict
xfail whose reason names the bug."""

from __future__ import annotations

import contextlib
import io
import re
import socket
import sqlite3
import struct
import threading
import time

import numpy as np
import pytest

from gs_map_share.quantize import QMap, QuantParams, to_qmap
from gs_mapping.messages import bytes_to_uint8_multiarray
from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
from gs_mapping.runtime.replay import ReplayBus

PARAMS = QuantParams.from_quality(3)  # map_server_node.quality's default
GLOBAL_ID = 1000000  # map_server_node.map_id's default

# ------------------------------------------------------------------------------------------------
# helpers: vehicle maps and streams built here, the server on the replay bus


def _vmap(n: int, seed: int, origin=(0.0, 0.0, 0.0)) -> QMap:
    """A vehicle map of n Gaussians (local ids 1..n) on the fleet's quantisation, SH degree 0."""
    from synthetic_maps import synthetic_map

    q = to_qmap(synthetic_map(max(n, 50), 0, seed=seed, origin=origin), PARAMS).take(np.arange(n))
    q.ids = np.arange(1, n + 1, dtype=np.uint64)
    return q


def _snap(q: QMap, map_id: int, seq: int) -> bytes:
    from gs_map_share.snapshot import encode_snapshot

    return encode_snapshot(q, PARAMS, map_id=map_id, seq=seq, n_levels=1, frame_id="map")[0]


def _stream(map_id: int, n_deltas: int, seed: int, origin=(0.0, 0.0, 0.0), first_seq: int = 100):
    """A vehicle's containers: a snapshot of 20 Gaussians, then deltas adding 8 each."""
    from gs_map_share.delta import encode_delta

    full = _vmap(20 + 8 * n_deltas, seed=seed, origin=origin)
    states = [full.take(np.arange(20 + 8 * k)) for k in range(n_deltas + 1)]
    out = [_snap(states[0], map_id, first_seq)]
    for k in range(1, n_deltas + 1):
        s = first_seq + k
        out.append(encode_delta(states[k - 1], states[k], PARAMS, map_id=map_id, seq=s, base_seq=s - 1)[0])
    return out


def _header_seqs(container: bytes) -> tuple[int, int]:
    """(seq, base_seq) read by hand from the 48-byte header (docs/format.md: u64 LE at 16 and 24;
    base_seq 0 = a snapshot)."""
    return struct.unpack_from("<QQ", container, 16)


def _server(bus: ReplayBus, store, **kw) -> MapServerNode:
    cfg = MapServerNodeConfig(store_path=str(store), **kw)
    return MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})


def _send(bus: ReplayBus, ns: str, data: bytes) -> None:
    topic = "map_snapshot" if _header_seqs(data)[1] == 0 else "map_delta"
    bus.inject(f"/{ns.strip('/')}/mapper_node/{topic}", bytes_to_uint8_multiarray(data), bus.now_ns + 1000)


# ------------------------------------------------------------------------------------------------
# the restart point moving at the restart itself


def test_a_restart_that_moves_the_restart_point_still_republishes_the_last_deltas(tmp_path):
    """docs/fleet.md, Restart: the server "republishes its last republish_on_start global deltas
    (that one last) and a snapshot, so ... one a few deltas behind applies them — no full resend";
    the store keeps "the global deltas published after (and up to keep_global_deltas before)" the
    restart point. The restart's own empty delta counts towards global_snapshot_every, so with the
    default 64 one restart in 64 (here: global_snapshot_every 8, the first run leaving 7 deltas)
    moves the restart point at the restart. Checked by hand: the republished deltas' headers
    (docs/format.md offsets) must chain from the sequence a receiver two deltas behind holds, and
    the store (read with sqlite3) must still hold the deltas before the restart (7 < 256 kept)."""
    store = tmp_path / "fleet.sqlite3"
    every = 8
    bus = ReplayBus()
    server = _server(bus, store, global_period_s=0.0, snapshot_period_s=0.0, global_snapshot_every=every)
    published: list[bytes] = []
    bus.subscribe("/map_server_node/map_delta", lambda m: published.append(bytes(m.data)))
    for c in _stream(1, 6, seed=5):
        _send(bus, "vehicle1", c)
    before = [_header_seqs(d) for d in published]
    assert len(before) == every - 1  # (7 global deltas since the fresh store's restart point)
    behind = before[-3][0]  # a receiver that missed the last two global deltas holds this sequence
    server.close()

    bus = ReplayBus()
    again: list[bytes] = []
    bus.subscribe("/map_server_node/map_delta", lambda m: again.append(bytes(m.data)))
    server = _server(
        bus,
        store,
        global_period_s=0.0,
        snapshot_period_s=0.0,
        global_snapshot_every=every,
        republish_on_start=3,
    )
    bus.advance(bus.now_ns + 1000)
    new_seq = server.merge.global_seq
    server.close()

    republished = [_header_seqs(d) for d in again]
    # what a receiver at `behind` can apply, one after the other, from what was republished
    seq = behind
    for s, base in republished:
        if base == seq:
            seq = s
    assert seq == new_seq, f"receiver at {behind} stuck; republished (seq, base): {republished}"
    db = sqlite3.connect(store)
    logged = {s for (s,) in db.execute("SELECT seq FROM global_log")}
    db.close()
    assert {s for s, _ in before} <= logged, sorted(logged)


def test_a_receiver_behind_a_restart_names_the_delta_after_its_sequence_not_seq_plus_1():
    """(added with the fix) A receiver at sequence S that missed a restarted server's empty delta
    (S on to the wall clock) holds the next delta buffered; what it waits for is the delta on S, and
    that delta's sequence is not S + 1: the diagnostics must not name S + 1."""
    from gs_map_share.delta import encode_delta
    from gs_mapping.nodes.map_receiver_node import MapReceiverNode, MapReceiverNodeConfig

    bus = ReplayBus()
    rx = MapReceiverNode(
        bus.context("map_receiver_node"), {"map_receiver_node": MapReceiverNodeConfig(delta_topic="d")}
    )
    a, b = _vmap(20, seed=1), _vmap(28, seed=1)
    s, now = 100, 1_765_000_000_000_000
    rx.on_container(bytes_to_uint8_multiarray(_snap(a, GLOBAL_ID, s)))
    later = encode_delta(a, b, PARAMS, map_id=GLOBAL_ID, seq=now + 1, base_seq=now)[0]
    rx.on_container(bytes_to_uint8_multiarray(later))  # (the restart's delta s → now was missed)
    (waiting,) = rx.waiting_for()
    assert f"after {s}" in waiting and str(s + 1) not in waiting, waiting


# ------------------------------------------------------------------------------------------------
# a vehicle namespace spelled differently in the next run's configuration


def test_a_binding_survives_the_namespace_spelled_with_a_leading_slash_after_a_restart(tmp_path):
    """docs/fleet.md: "A namespace is bound to the map id of its first container taken, and the
    binding is stored with it (it survives restarts): another namespace's containers claiming that
    id are refused (a copied vehicle configuration)", and "vehicle1 and /vehicle1 are the same
    topics" (ROS 2 name resolution: a namespace is absolute either way). vehicle1 sends map id 1;
    the server is restarted with the same two vehicles written /vehicle1, /vehicle5 (as a launch
    file or `ros2 param dump` writes them); vehicle5, a copied configuration, then sends a newer
    snapshot claiming map id 1. It must be refused: the global map stays vehicle1's."""
    store = tmp_path / "fleet.sqlite3"
    bus = ReplayBus()
    server = _server(bus, store, vehicles=["vehicle1", "vehicle5"], global_period_s=0.0)
    for c in _stream(1, 2, seed=5):
        _send(bus, "vehicle1", c)
    first = server.merge.global_map
    assert len(first) == 36
    server.close()

    bus = ReplayBus()
    server = _server(bus, store, vehicles=["/vehicle1", "/vehicle5"], global_period_s=0.0)
    impostor = _vmap(5, seed=9, origin=(50.0, 0.0, 0.0))
    _send(bus, "/vehicle5", _snap(impostor, 1, 500))  # newer than vehicle1's 102: it would replace it
    try:
        assert server.merge.global_map.equals(first), (
            f"global map now {len(server.merge.global_map)} Gaussians; bindings "
            f"{ {k: b.map_id for k, b in server.bindings.items()} }"
        )
        assert server.bindings["/vehicle5"].rejected == 1
    finally:
        server.close()


def test_a_binding_stored_under_the_configured_spelling_is_read_as_its_namespace(tmp_path):
    """(added with the fix) A store written before bindings were keyed by the resolved namespace
    holds 'binding vehicle1'; read back it binds /vehicle1 however the config spells it now."""
    store = tmp_path / "fleet.sqlite3"
    bus = ReplayBus()
    server = _server(bus, store, vehicles=["vehicle1", "vehicle5"], global_period_s=0.0)
    _send(bus, "vehicle1", _stream(1, 0, seed=5)[0])
    server.close()
    db = sqlite3.connect(store)
    with db:
        db.execute("UPDATE meta SET key = 'binding vehicle1' WHERE key LIKE 'binding %'")
    db.close()
    bus = ReplayBus()
    server = _server(bus, store, vehicles=["/vehicle1", "/vehicle5"], global_period_s=0.0)
    try:
        assert server.bindings["/vehicle1"].map_id == 1 and server.bindings["/vehicle5"].map_id is None
    finally:
        server.close()


# ------------------------------------------------------------------------------------------------
# gs-mapping router with a Zenoh config file: the start line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", ["option", "env"])
def test_the_router_start_line_names_the_endpoint_of_its_config_file(tmp_path, monkeypatch, how):
    """README: `router [--listen EP]` is the fleet's rendezvous, and ``--zenoh-config`` (or
    $ZENOH_ROUTER_CONFIG_URI, as rmw_zenohd) gives it a full Zenoh config file. An operator reads the
    port a router listens on from its start line. The config file here says listen on
    tcp/127.0.0.1:P (P a free port); the operating system confirms the router accepts TCP there
    (a connect from a thread while it runs); the start line must name that endpoint, not
    rmw_zenohd's default 7447 the router does not listen on."""
    pytest.importorskip("zenoh")
    from gs_mapping.cli import main

    port = _free_port()
    cfg = tmp_path / "router.json5"
    cfg.write_text(
        f'{{ mode: "router", listen: {{ endpoints: ["tcp/127.0.0.1:{port}"] }}, '
        "scouting: { multicast: { enabled: false } } }\n"
    )
    args = ["router", "--duration", "2.5"]
    if how == "option":
        args += ["--zenoh-config", str(cfg)]
    else:
        monkeypatch.setenv("ZENOH_ROUTER_CONFIG_URI", str(cfg))
    accepted: list = []

    def probe() -> None:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not accepted:
            with socket.socket() as c:
                c.settimeout(0.5)
                try:
                    c.connect(("127.0.0.1", port))
                    accepted.append(True)
                except OSError:
                    time.sleep(0.1)

    t = threading.Thread(target=probe)
    t.start()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(args)
    t.join()
    assert rc == 0 and accepted, "the router did not listen where its config file says"
    line = out.getvalue().strip()
    assert f"tcp/127.0.0.1:{port}" in line and "7447" not in line, line


def _router_line(args: list[str], port: int | None = None) -> tuple[str, bool]:
    """`gs-mapping router ARGS` run through the CLI's main: (its start line, whether a TCP connect
    to 127.0.0.1:port succeeded while it ran; port None: the port the line names)."""
    from gs_mapping.cli import main

    out, accepted = io.StringIO(), []

    def probe() -> None:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not accepted:
            p = port
            if p is None:
                m = re.search(r"tcp/127\.0\.0\.1:(\d+)", out.getvalue())
                p = int(m.group(1)) if m else None
            with socket.socket() as c:
                c.settimeout(0.5)
                try:
                    if p:
                        c.connect(("127.0.0.1", p))
                        accepted.append(p)
                        continue
                except OSError:
                    pass
            time.sleep(0.1)

    t = threading.Thread(target=probe)
    t.start()
    with contextlib.redirect_stdout(out):
        rc = main(args)
    t.join()
    assert rc == 0
    return out.getvalue().strip(), bool(accepted)


def test_the_router_start_line_names_the_port_bound_for_port_0_where_zenoh_tells_it(tmp_path):
    """(added with the fix) Listening on port 0 the system picks the port; Zenoh tells it through
    its admin space where the config enables it: the start line then names that port (the
    operating system confirms a connect there). With the admin space off (the built-in config)
    the line says port 0 is the system's choice rather than naming a port nobody listens on."""
    pytest.importorskip("zenoh")
    cfg = tmp_path / "router.json5"
    cfg.write_text(
        '{ mode: "router", listen: { endpoints: ["tcp/127.0.0.1:0"] }, adminspace: { enabled: true }, '
        "scouting: { multicast: { enabled: false } } }\n"
    )
    line, accepted = _router_line(["router", "--duration", "2.5", "--zenoh-config", str(cfg)])
    assert accepted and ":0" not in line, line
    line, _ = _router_line(["router", "--duration", "0.3", "--listen", "tcp/127.0.0.1:0"], port=0)
    assert "tcp/127.0.0.1:0 (port 0: the system's choice" in line, line


# ------------------------------------------------------------------------------------------------
# a fleet on quality 0: tiles of 1.792 m (256 steps of 7 mm), not the default 2.048 m


def test_a_quality_0_fleet_merges_and_answers_regions_on_its_own_tile_edge(tmp_path):
    """docs/fleet.md: tiles are the codec's (T = P >> tile_bits, docs/format.md §1), "2.048 m at the
    default 1 mm step"; quality 0's lattice is 7 mm with 256-step tiles, 1.792 m. Two vehicles
    mapping overlapping boxes across x = y = 0 on a quality-0 fleet; written out here per Gaussian
    with Python's integer floor division (not the code's shift): per tile the vehicle with the most
    Gaussians owns it (ties: smaller map id), global id map_id << 32 | local id; and a region
    (pose near a tile corner, radius 1.5 m) must list exactly the tiles whose 1.792 m cube comes
    within the radius (closest point of the cube, by hand), with exactly their Gaussians."""
    import math

    from gs_map_share.region import RegionAnswer, RegionRequest
    from gs_map_share.snapshot import decode_snapshot

    p0 = QuantParams.from_quality(0)
    assert (p0.pos_step, p0.tile_bits) == (0.007, 8)
    edge = 256 * 0.007
    from synthetic_maps import synthetic_map

    def vmap(n, seed, origin):
        q = to_qmap(synthetic_map(n, 0, seed=seed, origin=origin), p0)
        q.ids = np.arange(1, n + 1, dtype=np.uint64)
        return q

    maps = {3: vmap(400, 1, (-4.0, -4.0, -1.0)), 7: vmap(300, 2, (-2.5, -3.0, -1.0))}
    from gs_map_share.snapshot import encode_snapshot

    bus = ReplayBus()
    server = _server(
        bus, tmp_path / "fleet.sqlite3", vehicles=["vehicle3", "vehicle7"], quality=0, global_period_s=0.0
    )
    try:
        for mid, q in maps.items():
            data = encode_snapshot(q, p0, map_id=mid, seq=10, n_levels=1, frame_id="map")[0]
            _send(bus, f"vehicle{mid}", data)

        def tile(pos):
            return tuple(int(v) // 256 for v in pos)

        counts: dict = {}
        for mid, q in maps.items():
            for pos in q.pos:
                counts.setdefault(tile(pos), {}).setdefault(mid, 0)
                counts[tile(pos)][mid] += 1
        owner = {t: min(c, key=lambda m: (-c[m], m)) for t, c in counts.items()}
        want = {}
        for mid, q in maps.items():
            for i, pos in enumerate(q.pos):
                if owner[tile(pos)] == mid:
                    want[(mid << 32) | int(q.ids[i])] = tuple(int(v) for v in pos)
        g = server.merge.global_map
        got = {int(i): tuple(int(v) for v in pos) for i, pos in zip(g.ids, g.pos, strict=True)}
        assert len(set(owner.values())) == 2 and got == want

        pose = (edge * 0.02, -edge * 0.97, 0.3)  # near the corner of four tiles
        radius = 1.5

        def near(t):
            d2 = 0.0
            for c, k in zip(pose, t, strict=True):
                lo, hi = k * edge, (k + 1) * edge
                d2 += (lo - c) ** 2 if c < lo else (c - hi) ** 2 if c > hi else 0.0
            return math.sqrt(d2) <= radius

        tiles_near = {t for t in owner if near(t)}
        req = RegionRequest(x=pose[0], y=pose[1], z=pose[2], radius_m=radius, max_bytes=1 << 20)
        ans = RegionAnswer.from_bytes(server.answer_region(req.to_bytes()))
        assert ans.status == "ok" and ans.next_cursor is None, ans.error
        assert {tuple(t) for t in ans.tiles} == tiles_near
        _, sub = decode_snapshot(ans.container)
        assert sorted(int(i) for i in sub.ids) == sorted(
            i for i, pos in want.items() if tile(pos) in tiles_near
        )
    finally:
        server.close()


# ------------------------------------------------------------------------------------------------
# a real trained scene as two vehicles' maps: dense tiles (44 k Gaussians in one 2.048 m tile)


@pytest.fixture(scope="module")
def guitar_fleet(shared_data, tmp_path_factory):
    """The real trained 3DGS scene splats/guitar.ply (90,854 Gaussians) on the fleet's lattice, cut
    into two overlapping vehicle maps (x < 0.2 and x > -0.1: both hold the middle), each sent as a
    snapshot to one server. Yields (server, {map_id: vehicle map})."""
    from gs_map_share.snapshot import encode_snapshot
    from gs_mapping.splat_formats import load_splats

    g = load_splats(shared_data / "splats" / "guitar.ply")
    q = to_qmap(g, PARAMS)
    x = g.means[:, 0]
    maps = {}
    for mid, keep in ((1, x < 0.2), (2, x > -0.1)):
        m = q.take(np.flatnonzero(keep))
        m.ids = np.arange(1, len(m) + 1, dtype=np.uint64)
        maps[mid] = m
    bus = ReplayBus()
    server = _server(bus, tmp_path_factory.mktemp("guitar") / "fleet.sqlite3", global_period_s=0.0)
    for mid, m in maps.items():
        _send(
            bus,
            f"vehicle{mid}",
            encode_snapshot(m, PARAMS, map_id=mid, seq=10, n_levels=1, frame_id="map")[0],
        )
    yield server, maps
    server.close()


def test_a_real_scene_from_two_vehicles_merges_by_the_documented_rule(guitar_fleet):
    """docs/fleet.md, Merge rule, written out here per Gaussian (tile = floor(P / 2048) with
    Python integers, counts per vehicle, owner = most Gaussians then smaller map id, global id
    map_id << 32 | local id, every field unchanged) on a real trained scene whose tiles hold up to
    ~44,000 Gaussians and where both vehicles hold the overlap: the server's global map is exactly
    that set of (id, lattice position, opacity code)."""
    server, maps = guitar_fleet
    step = 1 << PARAMS.tile_bits
    counts: dict = {}
    tiles_of = {}
    for mid, m in maps.items():
        tiles_of[mid] = [tuple(int(v) // step for v in p) for p in m.pos.tolist()]
        for t in tiles_of[mid]:
            counts.setdefault(t, {}).setdefault(mid, 0)
            counts[t][mid] += 1
    owner = {t: min(c, key=lambda k: (-c[k], k)) for t, c in counts.items()}
    want = {}
    for mid, m in maps.items():
        for i, t in enumerate(tiles_of[mid]):
            if owner[t] == mid:
                want[(mid << 32) | int(m.ids[i])] = (tuple(int(v) for v in m.pos[i]), int(m.op[i]))
    g = server.merge.global_map
    got = {int(i): (tuple(int(v) for v in p), int(o)) for i, p, o in zip(g.ids, g.pos, g.op, strict=True)}
    assert sum(len(c) == 2 for c in counts.values()) >= 2 and len(set(owner.values())) == 2
    assert got == want


def test_region_paging_on_a_small_link_reaches_every_tile_that_fits_a_page(guitar_fleet):
    """docs/fleet.md: a vehicle asks for "the tiles around it at the level of detail its link
    allows"; "a page holds as many tiles as fit max_bytes", the client follows next_cursor until it
    is null. On the real scene (13 tiles of 533 .. 44,095 Gaussians) a vehicle on a slow link asks
    with max_bytes 64 kB (a page is ~11 B per Gaussian here): a tile too big for any page may be
    refused, but paging must go on past it, so every tile of ≤ 3,000 Gaussians (≤ ~35 kB) in the
    region arrives. Tiles are counted here from the global map's lattice positions."""
    from gs_map_share.region import RegionAnswer, RegionRequest

    server, _ = guitar_fleet
    g = server.merge.global_map
    t, c = np.unique(g.pos >> PARAMS.tile_bits, axis=0, return_counts=True)
    small = {tuple(int(v) for v in k) for k, n in zip(t, c, strict=True) if n <= 3000}
    assert len(small) >= 5 and c.max() > 20000  # (radius 10 m around the scene covers every tile)
    got, cursor, pages = set(), 0, 0
    while cursor is not None and pages < 50:
        req = RegionRequest(x=0.0, y=-2.0, z=0.0, radius_m=10.0, max_bytes=65536, cursor=cursor)
        ans = RegionAnswer.from_bytes(server.answer_region(req.to_bytes()))
        got |= {tuple(k) for k in ans.tiles or []}
        cursor, pages = ans.next_cursor, pages + 1
    assert small <= got, f"{len(small - got)} of {len(small)} small tiles never arrived ({pages} pages)"


def test_region_paging_names_each_skipped_tile_and_covers_the_region(guitar_fleet):
    """(added with the fix) Paged at 64 kB, every tile of the region either arrives on a page or is
    named by an error page whose next_cursor goes on past it (one page each, never two tiles), and
    the skipped ones are the tiles too big for a page; the last page's next_cursor is null."""
    from gs_map_share.region import RegionAnswer, RegionRequest

    server, _ = guitar_fleet
    g = server.merge.global_map
    t, c = np.unique(g.pos >> PARAMS.tile_bits, axis=0, return_counts=True)
    every = {tuple(int(v) for v in k) for k in t}
    got, skipped, cursor, pages = set(), [], 0, 0
    while cursor is not None and pages < 50:
        req = RegionRequest(x=0.0, y=-2.0, z=0.0, radius_m=10.0, max_bytes=65536, cursor=cursor)
        ans = RegionAnswer.from_bytes(server.answer_region(req.to_bytes()))
        if ans.status == "ok":
            got |= {tuple(k) for k in ans.tiles}
        else:
            assert ans.next_cursor in (cursor + 1, None) and "skipped" in ans.error, ans.error
            skipped.append(next(k for k in every if f"tile {k} alone needs" in ans.error))
        cursor, pages = ans.next_cursor, pages + 1
    assert cursor is None and skipped and not got & set(skipped)
    assert got | set(skipped) == every and len(skipped) == len(set(skipped))
    assert all(n > 3000 for k, n in zip(t, c, strict=True) if tuple(int(v) for v in k) in skipped)
