"""Outside review of issue 19 (fleet over Zenoh), fifth pass: what operators and users of a real fleet
bring that the earlier passes did not — a map server whose store was replaced by a fresh one while
region clients keep their tiles, a region pager across a server restart, region keys written the
way ROS users write names (a leading slash) or with Zenoh wildcards, Zenoh config files with
comments, vehicles and a server started before their router, and samples on a vehicle's key that
are no ROS message (an empty Zenoh DELETE, bytes that are no CDR).

Each test compares with something outside the project's own bookkeeping: eclipse-zenoh's own
reading of a config file and of key expressions, Zenoh's reply-key convention, rosbags' CDR reader,
a region client written here from docs/fleet.md ("the client replaces its content of exactly the
listed tiles") checked against a brute-force tile/ball distance in plain Python, or the README's
promise for bad input ("a bad message is counted, logged and skipped"; /diagnostics carries
"rejected and dropped messages"). Bugs are strict xfails whose reason names them."""

from __future__ import annotations

import math
import socket
import time

import numpy as np
import pytest

from gs_map_share.quantize import QMap, QuantParams, to_qmap
from gs_map_share.region import RegionAnswer, RegionRequest
from gs_map_share.snapshot import decode_snapshot, encode_snapshot
from gs_mapping.messages import bytes_to_uint8_multiarray
from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
from gs_mapping.runtime.replay import ReplayBus

PARAMS = QuantParams.from_quality(3)  # map_server_node.quality's default
TB = PARAMS.tile_bits
EDGE_M = (1 << TB) * PARAMS.pos_step  # a codec tile's edge in metres (docs/format.md §1)

# ------------------------------------------------------------------------------------------------
# helpers: vehicle maps, the server on the replay bus, a region client and the brute force


def _vmap(n: int, seed: int, origin) -> QMap:
    """A vehicle map of n Gaussians (local ids 1..n) on the fleet's quantisation, SH degree 0."""
    from synthetic_maps import synthetic_map

    q = to_qmap(synthetic_map(max(n, 50), 0, seed=seed, origin=origin), PARAMS).take(np.arange(n))
    q.ids = np.arange(1, n + 1, dtype=np.uint64)
    return q


def _server(store, bus: ReplayBus | None = None) -> tuple[ReplayBus, MapServerNode]:
    bus = bus or ReplayBus()
    cfg = MapServerNodeConfig(store_path=str(store), vehicles=["vehicle1"], global_period_s=0.0)
    return bus, MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})


def _send_snapshot(bus: ReplayBus, q: QMap, seq: int) -> None:
    data = encode_snapshot(q, PARAMS, map_id=1, seq=seq, n_levels=1, frame_id="map")[0]
    bus.inject("/vehicle1/mapper_node/map_snapshot", bytes_to_uint8_multiarray(data), bus.now_ns + 1000)


def _tile(p) -> tuple:
    return tuple(v >> TB for v in p)  # floor: negative coordinates round down


def _brute_region(g: QMap, centre, radius: float) -> dict[tuple, set]:
    """{tile: the global ids there} for the tiles whose cube [T·e, (T+1)·e]³ comes within radius
    of centre, in plain Python."""
    out: dict[tuple, set] = {}
    for gid, p in zip(g.ids.tolist(), g.pos.tolist(), strict=True):
        t = _tile(p)
        d2 = sum(max(k * EDGE_M - c, 0.0, c - (k + 1) * EDGE_M) ** 2 for k, c in zip(t, centre, strict=True))
        if math.sqrt(d2) <= radius:
            out.setdefault(t, set()).add(gid)
    return out


class _RegionClient:
    """docs/fleet.md, Region queries, as a vehicle uses them: pages until next_cursor is null; the
    client replaces its content of exactly the listed tiles; later updates ask since the first
    page's seq; if the map changed between pages (another seq), it asks again since the first
    page's seq; an error answer about since_seq means: drop the region's tiles, ask with 0."""

    def __init__(self, centre, radius: float):
        self.centre, self.radius = centre, radius
        self.tiles: dict[tuple, set] = {}
        self.seq = 0
        self.errors: list[str] = []

    def _ask(self, server, since: int, cursor: int) -> RegionAnswer:
        req = RegionRequest(
            *self.centre, radius_m=self.radius, since_seq=since, cursor=cursor, max_bytes=1500
        )
        return RegionAnswer.from_bytes(server.answer_region(req.to_bytes()))

    def update(self, servers) -> None:
        """servers: a callable giving the server to ask for each page (it may change between them)."""
        for _ in range(5):
            since, cursor, seqs = self.seq, 0, []
            while cursor is not None:
                a = self._ask(servers(), since, cursor)
                if a.status != "ok":
                    self.errors.append(a.error)
                    if since == 0:
                        return
                    self.tiles, self.seq = {}, 0  # the documented recovery: drop, ask with 0
                    break
                seqs.append(a.seq)
                got = decode_snapshot(a.container)[1] if a.container else QMap.empty(0)
                for t in a.tiles:
                    self.tiles[tuple(t)] = set()
                for gid, p in zip(got.ids.tolist(), got.pos.tolist(), strict=True):
                    self.tiles[_tile(p)].add(gid)
                cursor = a.next_cursor
            else:
                self.seq = seqs[0]
                if len(set(seqs)) == 1:
                    return
                # the map moved on between pages: again since the first page's seq
        raise AssertionError("the region never settled")

    def held(self) -> dict[tuple, set]:
        return {t: ids for t, ids in self.tiles.items() if ids}


# ------------------------------------------------------------------------------------------------
# a store replaced by a fresh one: region clients of the old store


def test_a_region_client_of_a_replaced_store_ends_with_the_new_maps_tiles(tmp_path):
    """docs/fleet.md: since_seq "one this map never had ... an error too: the client drops the
    region's tiles and asks again with 0", and "a fresh store starts the global sequence at the wall
    clock too, so receivers of an older store take its first snapshot as newer". An operator
    replaces the store (wiped after a bad merge, a new disk, a server moved): the vehicle sends its
    current map again, smaller than before. A region client that followed the old store asks since
    its last sequence — one the new map never had: it must end holding exactly the new map's tiles
    around it (brute force over the new server's global map), as the ordinary receiver does."""
    from gs_map_share.receiver import MapStore

    a = _vmap(60, 3, (0.0, 0.0, 0.0))
    b = _vmap(60, 9, (6.0, 0.0, 0.0))  # tiles a does not cover
    b.ids += np.uint64(60)
    both = QMap.concat([a, b])  # the vehicle's map before: a's Gaussians and b's (ids 61..120)
    store = tmp_path / "fleet.sqlite3"
    bus, old = _server(store)
    _send_snapshot(bus, both, 100)
    client = _RegionClient((3.0, 0.0, 0.0), 30.0)
    client.update(lambda: old)
    assert client.held() == _brute_region(old.merge.global_map, client.centre, client.radius)
    rx = MapStore()
    assert rx.receive(old.merge.snapshot()) == "snapshot"
    old.close()
    for extra in ("", "-wal", "-shm"):
        (tmp_path / f"fleet.sqlite3{extra}").unlink(missing_ok=True)
    time.sleep(0.002)  # (the new store's first sequence: the wall clock in µs, later than the old one's)
    bus, new = _server(store)
    _send_snapshot(bus, a, 200)
    assert rx.receive(new.merge.snapshot()) == "snapshot" and rx.state.equals(new.merge.global_map)
    client.update(lambda: new)
    want = _brute_region(new.merge.global_map, client.centre, client.radius)
    stale = sum(len(ids - want.get(t, set())) for t, ids in client.held().items())
    assert client.held() == want, f"{stale} Gaussians of the old store kept; answers' errors: {client.errors}"
    new.close()


def test_region_pages_across_a_server_restart_end_with_the_region(tmp_path):
    """A vehicle pages through its region (max_bytes 1500: several pages); between two pages the
    server is stopped and restarted on its store (its sequence moves on by an empty delta). Paging
    on as docs/fleet.md says (the next cursor; the map's seq changed, so again since the first
    page's seq), the client must end with exactly the tiles the brute force selects."""
    store = tmp_path / "fleet.sqlite3"
    bus, server = _server(store)
    q = _vmap(300, 4, (-4.0, -4.0, 0.0))  # tiles of both signs around the lattice origin
    _send_snapshot(bus, q, 100)
    want = _brute_region(server.merge.global_map, (-0.7, -1.3, 0.4), 6.0)
    held = {"server": server, "pages": 0}

    def servers():
        held["pages"] += 1
        if held["pages"] == 2:  # restart between the first and the second page
            held["server"].close()
            held["server"] = _server(store)[1]
        return held["server"]

    client = _RegionClient((-0.7, -1.3, 0.4), 6.0)
    client.update(servers)
    assert held["pages"] > 2 and not client.errors, client.errors
    assert client.held() == want
    held["server"].close()


# ------------------------------------------------------------------------------------------------
# the vehicles' topics: relative to each namespace, or all one topic


def test_an_absolute_delta_topic_is_refused_or_still_takes_each_vehicles_deltas(tmp_path):
    """ROS 2 name resolution (rcl): an absolute name ignores the namespace, so with delta_topic
    ``/mapper_node/map_delta`` both vehicles' bindings resolve to that one topic, while the
    vehicles (``vehicle1``, ``vehicle2`` namespaces) publish ``/vehicle1/mapper_node/map_delta``.
    map_server_node already refuses one namespace listed twice because two bindings on one topic
    cannot work; here either the parameter file is refused (GsMappingError) or vehicle1's delta,
    sent on its own delta topic after its snapshot, must be taken (the server's vehicle map is the
    vehicle's own map after the delta)."""
    from gs_map_share.delta import encode_delta
    from gs_mapping.errors import GsMappingError

    cfg_file = tmp_path / "fleet.yaml"
    cfg_file.write_text(
        "/**:\n  ros__parameters:\n    map_server_node:\n      vehicles: [vehicle1, vehicle2]\n"
        f"      store_path: {tmp_path / 'fleet.sqlite3'}\n      global_period_s: 0.0\n"
        "      delta_topic: /mapper_node/map_delta\n"
    )
    bus = ReplayBus()
    try:
        config = MapServerNode.load_config(str(cfg_file))
        server = MapServerNode(bus.context("map_server_node"), config)
    except GsMappingError:
        return
    old, new = _vmap(20, 3, (0.0, 0.0, 0.0)), _vmap(28, 3, (0.0, 0.0, 0.0))
    _send_snapshot(bus, old, 100)
    delta = encode_delta(old, new, PARAMS, map_id=1, seq=101, base_seq=100)[0]
    bus.inject("/vehicle1/mapper_node/map_delta", bytes_to_uint8_multiarray(delta), bus.now_ns + 2000)
    v = server.merge.vehicles.get(1)
    got = None if v is None else (v.seq, len(v.state))
    server.close()
    assert got == (101, 28), got


# ------------------------------------------------------------------------------------------------
# Zenoh: region keys, config files, the router, samples that are no message


@pytest.fixture
def zenoh():
    """eclipse-zenoh (the fleet transport); the tests that need it skip without it."""
    return pytest.importorskip("zenoh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("key", ["/gs_mapping/fleet/region", "gs_mapping/fleet/region/"])
def test_a_region_key_zenoh_refuses_is_one_line_and_exit_2(tmp_path, capsys, key, zenoh):
    """README: errors on bad input print one line naming the file or field and exit non-zero (the
    CLI: 2). ROS users write names with a leading slash; Zenoh refuses such key expressions (its
    own check: "empty chunks are forbidden, as well as leading and trailing slashes"). A params file
    with such a map_server_node.region_key must give `gs-mapping run map_server_node --transport
    zenoh` exit 2 and one error line naming region_key — not a traceback."""
    from gs_mapping.cli import main

    with pytest.raises(zenoh.ZError):  # what eclipse-zenoh itself says of the key the node declares
        zenoh.KeyExpr(f"76/{key}")
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(
        "/**:\n  ros__parameters:\n    map_server_node:\n      vehicles: [vehicle1]\n"
        f"      store_path: {tmp_path / 'fleet.sqlite3'}\n      region_key: {key}\n"
    )
    args = ["run", "map_server_node", "--transport", "zenoh", "--config", str(cfg), "--domain-id", "76"]
    args += ["--connect", f"tcp/127.0.0.1:{_free_port()}", "--duration", "0.3"]
    try:
        rc = main(args)
    except Exception as exc:  # noqa: BLE001 - what the user would see as a traceback
        rc = f"raised {type(exc).__name__}: {str(exc)[:120]}"
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert rc == 2, rc
    assert len(err) == 1 and "region_key" in err[0], err


def test_a_wildcard_region_key_is_refused_or_answers_under_a_concrete_key(tmp_path, zenoh):
    """docs/fleet.md, Scaling: shards answer under their own region_key and "each reply comes
    under the answering server's own key (a wildcard query over shards learns which one
    answered)". A server configured with region_key ``gs_mapping/fleet/*`` (an operator meaning
    "all cells") either refuses the key at start, or a query for one cell
    (``gs_mapping/fleet/r12_7``) gets replies whose key is a concrete key expression (zenoh's
    KeyExpr: no ``*``), as Zenoh's reply convention expects."""
    from gs_mapping.errors import GsMappingError
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    router = run_router(listen=[endpoint])
    ctx = ZenohContext("map_server_node", "", 77, connect=[endpoint])
    client = ZenohContext("vehicle_client", "vehicle9", 77, connect=[endpoint])
    srv = None
    try:
        try:  # (refused as the config is built, before the node: test_param_validation.py)
            cfg = MapServerNodeConfig(
                store_path=str(tmp_path / "f.sqlite3"), vehicles=["vehicle1"], region_key="gs_mapping/fleet/*"
            )
            srv = MapServerNode(ctx, {"map_server_node": cfg})
        except GsMappingError:
            return  # refused before it answers anything: fine
        import threading

        stop = threading.Event()
        spin = threading.Thread(target=lambda: [ctx.spin_once(0.05) for _ in iter(stop.is_set, True)])
        spin.start()
        try:
            keys: list[str] = []
            deadline = time.monotonic() + 10
            while not keys and time.monotonic() < deadline:  # (until the queryable is routed)
                replies = client.get(
                    "gs_mapping/fleet/r12_7", RegionRequest(0.0, 0.0).to_bytes(), timeout_s=5
                )
                keys = [r.key for r in replies if r.ok]
        finally:
            stop.set()
            spin.join(5)
        assert keys, "no answer at all"
        assert all("*" not in k for k in keys), keys
    finally:
        if srv is not None:
            srv.close()
        ctx.close()
        client.close()
        router.close()


def test_a_config_file_that_names_the_fragment_wait_only_in_a_comment_gets_the_suites_wait(tmp_path, zenoh):
    """zenoh_runtime.session_config: large map deltas may wait MAX_FRAGMENT_WAIT_US (5 s) for room
    on a slow link; "a config file that sets it keeps its own". A vehicle's JSON5 file (client mode,
    its depot router) mentions the setting only in a comment: eclipse-zenoh's own reading of the
    file leaves it at Zenoh's default (50 ms), i.e. the file does not set it, so the session must
    get the suite's 5 s — as a file that does set it keeps its value."""
    from gs_mapping.runtime.zenoh_runtime import _FRAGMENT_WAIT, MAX_FRAGMENT_WAIT_US, session_config

    commented = tmp_path / "vehicle.json5"
    commented.write_text(
        "// vehicle7: client of the depot router.\n"
        "// TODO: tune max_wait_before_drop_fragments once we have LTE figures\n"
        '{\n  mode: "client", /* no peer-to-peer on the vehicle */\n'
        '  connect: { endpoints: ["tcp/127.0.0.1:7447",], },\n}\n'
    )
    sets = tmp_path / "sets.json5"
    sets.write_text(
        '{ mode: "client", transport: { link: { tx: { queue: { congestion_control: { drop: '
        "{ max_wait_before_drop_fragments: 123456 } } } } } } }"
    )
    zenoh_default = zenoh.Config().get_json(_FRAGMENT_WAIT)
    assert zenoh.Config.from_file(str(commented)).get_json(_FRAGMENT_WAIT) == zenoh_default  # not set
    assert session_config("peer", None, None, str(sets)).get_json(_FRAGMENT_WAIT) == "123456"
    got = session_config("peer", None, None, str(commented)).get_json(_FRAGMENT_WAIT)
    assert got == str(MAX_FRAGMENT_WAIT_US), (got, zenoh_default)


def test_a_vehicle_and_the_server_started_before_their_router_meet_once_it_starts(zenoh):
    """README: nodes on Zenoh need a router (`gs-mapping router`); the runtime, unlike rmw_zenoh,
    does not wait for it but warns and goes on. In a depot the server and a vehicle can come up
    before the router (boot order): with multicast scouting off nothing flows, and once the router
    starts on the endpoint they were given, Zenoh's peer reconnection must bring them together —
    a vehicle delta published then reaches the server's subscription within a few seconds."""
    from gs_mapping.messages import uint8_multiarray_to_bytes
    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    server = ZenohContext("map_server_node", "", 78, connect=[endpoint])
    vehicle = ZenohContext("mapper_node", "vehicle1", 78, connect=[endpoint])
    router = None
    got: list[bytes] = []
    qos = QoS(reliable=True, depth=100)  # mapper_node's ~/map_delta
    try:
        server.create_subscription(
            "/vehicle1/mapper_node/map_delta", "std_msgs/msg/UInt8MultiArray", qos,
            lambda m: got.append(uint8_multiarray_to_bytes(m)),
        )  # fmt: skip
        pub = vehicle.create_publisher("~/map_delta", "std_msgs/msg/UInt8MultiArray", qos)
        pub.publish(bytes_to_uint8_multiarray(b"before", vehicle.factory))
        server.spin(timeout_s=0.5)
        assert got == []  # no router, no multicast: nothing can flow yet
        router = run_router(listen=[endpoint])
        deadline = time.monotonic() + 15
        while not got and time.monotonic() < deadline:
            pub.publish(bytes_to_uint8_multiarray(b"after", vehicle.factory))
            server.spin(timeout_s=0.5)
        assert got and set(got) == {b"after"}, got
    finally:
        vehicle.close()
        server.close()
        if router is not None:
            router.close()


@pytest.mark.parametrize("typename", ["std_msgs/msg/UInt8MultiArray", "std_msgs/msg/String"])
def test_an_empty_payload_is_no_cdr_message(typename):
    """A ROS 2 CDR payload starts with a 4-byte encapsulation header (rmw_zenoh's samples carry it
    too); rosbags' CDR reader refuses zero bytes. The Zenoh runtime hands every sample on a topic's
    key to this decoder, DELETE samples (empty payloads: `z_delete`, a key cleaned by a tool)
    included: zero bytes must be refused as rosbags does, not become an empty map container."""
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.errors import MessageError
    from gs_mapping.runtime import dds_types

    with pytest.raises(Exception):  # noqa: B017 - rosbags' SerdeError: the reference's verdict
        get_typestore(Stores.ROS2_HUMBLE).deserialize_cdr(b"", typename)
    with pytest.raises(MessageError):
        dds_types.deserialize(b"", typename)


def test_undecodable_samples_on_a_vehicles_key_show_in_the_servers_diagnostics(tmp_path, zenoh):
    """README: "A bad message is counted, logged and skipped", and every node's /diagnostics carries
    "rejected and dropped messages with the last reason". Two samples on vehicle1's delta key that
    are no CDR UInt8MultiArray (a script's raw `put`, a bridge of another serialisation; rosbags'
    CDR reader refuses both) reach the map server over a real router: its diagnostics (what
    /diagnostics and `gs-mapping run`'s summary line report) must count them."""
    from rosbags.typesys import Stores, get_typestore

    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    bad = [b"\x00\x01\x00\x00garbage", b"\x00\x01\x00\x00" + (10**6).to_bytes(4, "little")]
    ts = get_typestore(Stores.ROS2_HUMBLE)
    for payload in bad:
        with pytest.raises(Exception):  # noqa: B017 - the reference refuses them
            ts.deserialize_cdr(payload, "std_msgs/msg/UInt8MultiArray")
    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    router = run_router(listen=[endpoint])
    ctx = ZenohContext("map_server_node", "", 79, connect=[endpoint])
    vehicle = ZenohContext("mapper_node", "vehicle1", 79, connect=[endpoint])
    srv = None
    try:
        cfg = MapServerNodeConfig(store_path=str(tmp_path / "f.sqlite3"), vehicles=["vehicle1"])
        srv = MapServerNode(ctx, {"map_server_node": cfg})
        key = vehicle.topic_key("~/map_delta", "std_msgs/msg/UInt8MultiArray")
        ctx.spin(timeout_s=0.2)
        vehicle.spin(until=lambda: vehicle.graph_count("MS", key) > 0, timeout_s=10)  # the server's sub
        for payload in bad:
            vehicle.put(key, payload)
        ctx.spin(until=lambda: sum(ctx.bad_samples.values()) >= 2, timeout_s=5)
        assert sum(ctx.bad_samples.values()) == 2  # they did arrive and were skipped
        srv.on_diagnostics_timer()
        s = srv.diag.summary()
        counted = sum(s["rejected"].values()) + sum(s["dropped"].values())
        assert counted >= 2, s
    finally:
        if srv is not None:
            srv.close()
        ctx.close()
        vehicle.close()
        router.close()
