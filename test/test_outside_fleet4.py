"""Outside review of issue 19 (fleet map sharing), fourth pass: long random histories of a fleet
compared with an independent model of docs/fleet.md, and the region client's replica after the
server's store is restored from a backup.

The model is written here from docs/fleet.md and docs/format.md §5 alone: each vehicle's map as the
server must hold it is what the codec's own receiver (gs_map_share.receiver.MapStore: "per vehicle,
containers are applied exactly as a receiver does") rebuilds from the same containers in the same
order; the global map is docs/fleet.md's merge rule computed here per Gaussian (the owner of a tile
is the vehicle with most Gaussians there, ties to the smaller map id; ids map_id << 32 | local id);
a region client keeps a replica by "replacing its content of exactly the listed tiles", checked
against a brute-force tile/ball distance in plain Python. Histories: 3-4 vehicles adding, moving
(inside and across tiles), editing and removing Gaussians over overlapping tiles; containers lost,
duplicated and delayed; vehicles restarting with an older map or with their clock set back into
their own past sequence numbers; the server restarted cleanly or killed before its batch was
committed; receivers joining late; region pages asked while the map changes between pages.
Where the code is wrong the test is a strict xfail whose reason names the bug."""

from __future__ import annotations

import json
import math
import random
import shutil
import time
import types
from collections import Counter

import numpy as np
import pytest

from gs_map_share.container import unpack_header
from gs_map_share.delta import encode_delta
from gs_map_share.errors import DecodeError
from gs_map_share.quantize import QMap, QuantParams, to_qmap
from gs_map_share.receiver import MapStore
from gs_map_share.region import RegionAnswer, RegionRequest
from gs_map_share.snapshot import decode_snapshot, encode_snapshot
from gs_mapping.messages import bytes_to_uint8_multiarray, uint8_multiarray_to_bytes
from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
from gs_mapping.runtime.replay import ReplayBus

PARAMS = QuantParams.from_quality(3)  # map_server_node.quality's default
TB = PARAMS.tile_bits
TILE = 1 << TB  # a codec tile's edge in lattice steps (2.048 m)

# ------------------------------------------------------------------------------------------------
# the model: Gaussians, vehicles, the merge rule, a region client — all written here


_TEMPLATES: dict[int, QMap] = {}


def _template(sh: int) -> QMap:
    """Valid quantised attribute rows (opacity, scale, rotation, colour) to draw Gaussians from."""
    if sh not in _TEMPLATES:
        from synthetic_maps import synthetic_map

        _TEMPLATES[sh] = to_qmap(synthetic_map(400, sh, seed=5), PARAMS)
    return _TEMPLATES[sh]


def _rows(ids, pos, rng, sh: int, levels: int) -> QMap:
    t = _template(sh)
    q = t.take(np.array([rng.randrange(len(t)) for _ in ids], np.int64)).copy()
    q.ids = np.array(ids, np.uint64)
    q.pos = np.array(pos, np.int64).reshape(-1, 3)
    q.level = np.array([rng.randrange(levels) for _ in ids], np.uint8)
    return q.take(np.argsort(q.ids, kind="stable").astype(np.int64))


def _tile(p) -> tuple:
    return tuple(v >> TB for v in p)  # floor: negative coordinates round down


def _rule(maps: dict[int, QMap], sh: int) -> QMap:
    """docs/fleet.md, Merge rule: per tile the vehicle with the most Gaussians there owns it (ties:
    the smaller map id); the global map holds exactly the owners' Gaussians, id map_id << 32 | local."""
    counts: dict[tuple, dict[int, int]] = {}
    for mid, q in maps.items():
        for p in q.pos.tolist():
            per = counts.setdefault(_tile(p), {})
            per[mid] = per.get(mid, 0) + 1
    owner = {}
    for t, per in counts.items():
        most = max(per.values())
        owner[t] = min(m for m, c in per.items() if c == most)
    parts = [QMap.empty(sh)]
    for mid, q in maps.items():
        keep = [i for i, p in enumerate(q.pos.tolist()) if owner[_tile(p)] == mid]
        part = q.take(np.array(keep, np.int64)).copy()
        part.ids = (np.uint64(mid) << np.uint64(32)) | part.ids
        parts.append(part)
    return QMap.concat(parts)


def _brute_region(g: QMap, centre, radius: float, max_level: int) -> QMap:
    """Gaussians of level ≤ max_level whose tile's cube comes within radius of centre."""
    e = TILE * PARAMS.pos_step
    keep = []
    for i, (p, lvl) in enumerate(zip(g.pos.tolist(), g.level.tolist(), strict=True)):
        d2 = sum(max(t * e - c, 0.0, c - (t + 1) * e) ** 2 for t, c in zip(_tile(p), centre, strict=True))
        if math.sqrt(d2) <= radius and lvl <= max_level:
            keep.append(i)
    return g.take(np.array(keep, np.int64))


class _Vehicle:
    """A mapper's own map and the containers it sends (snapshot / delta, docs/format.md)."""

    def __init__(self, mid: int, rng: random.Random, area, sh: int, levels: int, offset=(0, 0)):
        self.mid, self.rng, self.area, self.sh, self.levels, self.offset = mid, rng, area, sh, levels, offset
        self.seq = 1000 * (mid % 1000) + 500 + rng.randrange(100)
        self.next_id = 1
        self.state = QMap.empty(sh)
        self.history = [self.state]

    def _pos(self):
        (x0, x1), (y0, y1) = self.area
        r = self.rng
        return [
            self.offset[0] + r.randrange(x0, x1),
            self.offset[1] + r.randrange(y0, y1),
            r.randrange(0, 500),
        ]

    def snapshot(self) -> bytes:
        return encode_snapshot(self.state, PARAMS, map_id=self.mid, seq=self.seq, n_levels=1, frame_id="map")[
            0
        ]

    def step(self) -> bytes:
        r, old = self.rng, self.state
        new = old.copy()
        kind = r.choice(["add", "add", "move", "edit", "remove", "mix"])
        if kind in ("add", "mix") or len(new) < 3:
            ids = list(range(self.next_id, self.next_id + r.randrange(1, 6)))
            self.next_id += len(ids)
            new = QMap.concat([new, _rows(ids, [self._pos() for _ in ids], r, self.sh, self.levels)])
        if kind in ("move", "mix"):
            for i in r.sample(range(len(new)), min(len(new), r.randrange(1, 4))):
                if r.random() < 0.5:
                    new.pos[i] = self._pos()  # (mostly into another tile)
                else:
                    new.pos[i] += [r.randrange(-3, 4) for _ in range(3)]
        if kind in ("edit", "mix"):
            t = _template(self.sh)
            for i in r.sample(range(len(new)), min(len(new), r.randrange(1, 4))):
                j = r.randrange(len(t))
                for f in ("op", "scale", "rot_idx", "rot", "dc", "rest"):
                    getattr(new, f)[i] = getattr(t, f)[j]
        if kind in ("remove", "mix") and len(new) > 1:
            drop = set(r.sample(range(len(new)), r.randrange(1, min(4, len(new)))))
            new = new.take(np.array([i for i in range(len(new)) if i not in drop], np.int64))
        base, self.seq, self.state = self.seq, self.seq + 1, new
        self.history.append(new)
        return encode_delta(old, new, PARAMS, map_id=self.mid, seq=self.seq, base_seq=base)[0]

    def restart(self, older: bool, clock_back: bool) -> bytes:
        """A restarted mapper: maybe with an older saved map; numbered above its past (the wall
        clock) or, with its clock set back, into its own past sequence numbers."""
        if older:
            self.state = self.rng.choice(self.history)
        self.seq += -self.rng.randrange(0, 4) if clock_back else 10000 + self.rng.randrange(1000)
        return self.snapshot()


class _RegionClient:
    """docs/fleet.md, Region queries: asks since its last answer's sequence, page by page, and
    replaces its content of exactly the listed tiles."""

    def __init__(self, centre, radius: float, max_level: int = 255, sh: int = 0):
        self.centre, self.radius, self.max_level, self.sh = centre, radius, max_level, sh
        self.tiles: dict[tuple, QMap] = {}
        self.seq = 0

    def update(self, server: MapServerNode, max_bytes: int = 1 << 20, between=None) -> None:
        cursor, first_seq = 0, None
        while cursor is not None:
            req = RegionRequest(
                *self.centre, radius_m=self.radius, max_level=self.max_level, since_seq=self.seq,
                cursor=cursor, max_bytes=max_bytes,
            )  # fmt: skip
            a = RegionAnswer.from_bytes(server.answer_region(req.to_bytes()))
            if a.status == "error" and "ask again with since_seq 0" in a.error:  # (docs: another history)
                self.tiles, self.seq, cursor = {}, 0, 0
                continue
            assert a.status == "ok", a.error
            first_seq = a.seq if first_seq is None else first_seq
            q = decode_snapshot(a.container)[1] if a.container else QMap.empty(self.sh)
            tiles = [_tile(p) for p in q.pos.tolist()]
            for t in map(tuple, a.tiles):
                self.tiles[t] = q.take(np.array([i for i, u in enumerate(tiles) if u == t], np.int64))
            cursor = a.next_cursor
            if between is not None and cursor is not None:
                between()  # the map changes between pages
        self.seq = first_seq  # (docs: ask again with since_seq = the first page's seq)

    def replica(self) -> QMap:
        return QMap.concat([QMap.empty(self.sh), *self.tiles.values()])

    def want(self, g: QMap) -> QMap:
        return _brute_region(g, self.centre, self.radius, self.max_level)


def _send(bus: ReplayBus, mid: int, data: bytes) -> None:
    topic = "map_snapshot" if data[24:32] == bytes(8) else "map_delta"  # base_seq 0: a snapshot
    bus.inject(f"/vehicle{mid}/mapper_node/{topic}", bytes_to_uint8_multiarray(data), bus.now_ns + 1_000_000)


class _Receiver:
    """A map_receiver_node's store following the global stream (it survives server restarts)."""

    def __init__(self):
        self.store = MapStore()

    def attach(self, bus: ReplayBus) -> None:
        for topic in ("/map_server_node/map_delta", "/map_server_node/map_snapshot"):
            bus.subscribe(topic, lambda m: self.store.receive(uint8_multiarray_to_bytes(m)))


def _model_store(mid: int, max_pending: int, state: QMap | None = None, seq: int = 0) -> MapStore:
    s = MapStore(map_id=mid, max_pending=max_pending)
    if state is not None:  # (what a restarted server rebuilds from its store: nothing pending)
        s.receive(encode_snapshot(state, PARAMS, map_id=mid, seq=seq, n_levels=1, frame_id="map")[0])
    return s


class _VehicleModel:
    """docs/fleet.md, "Vehicles": the codec's receiver fed the vehicle's containers, and the spans
    of sequences the server held the map at (each snapshot taken starts one at its sequence, each
    delta applied extends it): a snapshot outside every span below the held sequence replaces the
    map (a restart on a clock set back: a new receiver takes it), and a delta of an earlier span is
    a replay, where the receiver would buffer it."""

    def __init__(self, mid: int, max_pending: int, state: QMap | None = None, seq: int = 0, spans=None):
        self.mid, self.max_pending = mid, max_pending
        self.rx = _model_store(mid, max_pending, state, seq)
        self.lo, self.past = (spans[0], list(spans[1])) if spans is not None else (seq, [])
        self.counted: Counter = Counter()  # receivers replaced at a restart, and the spans' replays

    state = property(lambda self: self.rx.state)
    seq = property(lambda self: self.rx.seq)
    stats = property(lambda self: self.counted + self.rx.stats)

    def spans(self) -> tuple:
        return self.lo, list(self.past)

    def _in_past(self, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self.past)

    def receive(self, data: bytes) -> None:
        try:
            h = unpack_header(data)[0]
        except DecodeError:
            h = None  # (the receiver rejects it)
        held = self.rx.state is not None
        if held and h is not None and h.is_snapshot and h.seq < self.seq:
            if not (self.lo <= h.seq or self._in_past(h.seq)):  # outside every span: a restart
                fresh = MapStore(map_id=self.mid, max_pending=self.max_pending)
                if fresh.receive(data) == "snapshot":
                    self.past.append((self.lo, self.seq))
                    self.counted += self.rx.stats + Counter(clock_back=1)
                    self.lo, self.rx = h.seq, fresh
                else:
                    self.counted += fresh.stats
                return
        if (
            held
            and h is not None
            and h.seq > self.seq
            and (self._in_past(h.seq) or (not h.is_snapshot and self._in_past(h.base_seq)))
        ):
            self.counted["stale"] += 1
            return
        was = self.seq
        if self.rx.receive(data) == "snapshot" and h is not None:
            if held:
                self.past.append((self.lo, was))
            self.lo = h.seq


# ------------------------------------------------------------------------------------------------
# long random histories


def _history(tmp_path, seed: int, n_steps: int, mids, sh: int, levels: int, offset, cfg: dict) -> None:
    rng = random.Random(seed)
    areas = [((0, 3 * TILE), (0, 2 * TILE)), ((TILE // 2, 3 * TILE), (0, 2 * TILE)),
             ((-TILE, 2 * TILE), (0, TILE)), ((0, 2 * TILE), (-TILE, TILE))]  # fmt: skip
    vehicles = [_Vehicle(m, rng, areas[k], sh, levels, offset) for k, m in enumerate(mids)]
    max_pending = cfg.get("max_pending", 64)
    model = {v.mid: _VehicleModel(v.mid, max_pending) for v in vehicles}
    acked: dict[int, int] = {}  # each vehicle's last acknowledged sequence, in the order of the acks
    seen: dict[tuple[int, int], QMap] = {}  # the model's map of each vehicle at each sequence
    store = tmp_path / "fleet.sqlite3"
    ox, oy = offset[0] * PARAMS.pos_step, offset[1] * PARAMS.pos_step
    clients = [
        _RegionClient((ox + 1.0, oy + 1.0, 0.2), 1.5, sh=sh),
        _RegionClient((ox + 4.5, oy + 0.5, 0.0), 2.0, max_level=1, sh=sh),
        _RegionClient((ox, oy, 0.0), 10.0, sh=sh),
    ]
    receivers = [_Receiver()]
    bus = ReplayBus()
    bus.advance(10**9)

    def start() -> MapServerNode:
        c = MapServerNodeConfig(
            store_path=str(store), vehicles=[f"vehicle{m}" for m in mids], sh_degree=sh, **cfg
        )
        return MapServerNode(bus.context("map_server_node"), {"map_server_node": c})

    def on_ack(m):
        a = json.loads(m.data)
        acked[a["map_id"]] = a["seq"]

    receivers[0].attach(bus)
    bus.subscribe("/map_server_node/ack", on_ack)
    server = start()
    inflight: list[tuple[int, int, bytes]] = []
    trace: list[str] = []

    def deliver(mid: int, data: bytes) -> None:
        model[mid].receive(data)
        if model[mid].state is not None:
            seen[(mid, model[mid].seq)] = model[mid].state, model[mid].spans()
        _send(bus, mid, data)

    def check(where: str) -> None:
        maps = {m: s.state for m, s in model.items() if s.state is not None}
        for m, s in model.items():
            v = server.merge.vehicles.get(m)
            if s.state is not None:
                assert v is not None and v.seq == s.seq and v.state.equals(s.state), (where, m, trace[-8:])
        assert server.merge.global_map.equals(_rule(maps, sh)), (where, trace[-8:])
        for k, rx in enumerate(receivers):  # a receiver at the server's sequence holds its map
            if rx.store.ready and rx.store.seq == server.merge.global_seq:
                assert rx.store.state.equals(server.merge.global_map), (where, f"receiver {k}", trace[-8:])

    for v in vehicles:
        deliver(v.mid, v.snapshot())
    for step in range(n_steps):
        r, v = rng.random(), rng.choice(vehicles)
        if r < 0.06:
            data = v.restart(older=rng.random() < 0.5, clock_back=rng.random() < 0.4)
            trace.append(f"vehicle {v.mid} restarts at {v.seq}")
        elif r < 0.12:
            data = v.snapshot()
        elif r < 0.16:  # the server stops: cleanly, or killed before its batch is committed
            if cfg["global_period_s"] > 0 and rng.random() < 0.5:
                for _ in range(rng.randrange(1, 4)):
                    w = rng.choice(vehicles)
                    deliver(w.mid, w.step())
                server.store.close()  # (no flush: what a kill -9 leaves)
                # what was acknowledged was committed, and nothing else (docs/fleet.md)
                model = {m: _VehicleModel(m, max_pending, seen[(m, acked[m])][0], acked[m], seen[(m, acked[m])][1])
                         if m in acked else _VehicleModel(m, max_pending) for m in model}  # fmt: skip
                trace.append("server killed")
            else:
                bus.advance(bus.now_ns + 10**9)
                server.close()
                model = {
                    m: _VehicleModel(m, max_pending, s.state, s.seq, s.spans()) for m, s in model.items()
                }
                trace.append("server restarted")
            bus = ReplayBus()
            bus.advance(10**10 * (step + 2))
            for rx in receivers:
                rx.attach(bus)
            bus.subscribe("/map_server_node/ack", on_ack)
            server = start()
            bus.advance(bus.now_ns + 1)
            continue
        elif r < 0.19:
            receivers.append(_Receiver())
            receivers[-1].attach(bus)
            bus.advance(bus.now_ns + 1)
            trace.append("a receiver joins")
            continue
        elif r < 0.24:

            def between(srv=server):
                if rng.random() < 0.5:
                    w = rng.choice(vehicles)
                    deliver(w.mid, w.step())
                    srv.flush_global()

            for c in clients:
                c.update(server, rng.choice([1024, 1500, 4000, 1 << 20]), between)
                c.update(server, rng.choice([1024, 1500, 1 << 20]))
                assert c.replica().equals(c.want(server.merge.global_map)), (step, c.centre, trace[-8:])
            trace.append("region clients update")
            continue
        else:
            data = v.step()
        t = rng.random()
        if t < 0.08:
            trace.append(f"vehicle {v.mid}: a container lost")
        elif t < 0.16:
            inflight.append((rng.randrange(1, 4), v.mid, data))
            trace.append(f"vehicle {v.mid}: a container delayed")
        else:
            deliver(v.mid, data)
            if t > 0.93:
                deliver(v.mid, data)  # duplicated in transit
            trace.append(f"vehicle {v.mid}: delivered {'x2' if t > 0.93 else ''}")
        late = [(d - 1, m, x) for d, m, x in inflight]
        for _, m, x in [i for i in late if i[0] <= 0]:
            deliver(m, x)
        inflight = [i for i in late if i[0] > 0]
        if rng.random() < 0.3:
            bus.advance(bus.now_ns + int(0.3e9))
        server.flush_global()
        bus.advance(bus.now_ns + 1)
        check(f"step {step}")

    for _, m, x in inflight:
        deliver(m, x)
    bus.advance(bus.now_ns + int(2.5e9))  # flushes and a periodic snapshot for late receivers
    check("end")
    for k, rx in enumerate(receivers):
        assert rx.store.ready and rx.store.state.equals(server.merge.global_map), (k, rx.store.last_error)
    for c in clients:
        c.update(server, 1500)
        assert c.replica().equals(c.want(server.merge.global_map)), c.centre
    want = server.merge.global_map
    server.close()
    again = MapServerNode(
        ReplayBus().context("map_server_node"),
        {"map_server_node": MapServerNodeConfig(store_path=str(store), vehicles=[f"vehicle{m}" for m in mids],
                                                sh_degree=sh)},
    )  # fmt: skip
    assert again.merge.global_map.equals(want)
    again.close()


@pytest.mark.parametrize(
    "seed, mids, sh, levels, offset, cfg",
    [
        (11, (1, 2, 3), 0, 3, (0, 0),
         dict(global_period_s=0.0, compact_after=1, global_snapshot_every=1, keep_global_deltas=0, republish_on_start=0)),
        (12, (1, 2, 3, 4), 0, 1, (0, 0),
         dict(global_period_s=0.2, compact_after=2, global_snapshot_every=3, keep_global_deltas=2, republish_on_start=3,
              max_pending=2)),
        (13, (2**30 - 1, 3_000_000, 7), 1, 4, (-5_000_000, 12_345_678),
         dict(global_period_s=0.2, compact_after=5, global_snapshot_every=2, keep_global_deltas=5, republish_on_start=1,
              snapshot_period_s=0.0)),
    ],
    ids=["flush_each_compact_each", "batched_small_pending", "large_ids_sh1_far_negative"],
)  # fmt: skip
def test_long_random_fleet_histories_match_the_documented_merge_and_receiver_rules(
    tmp_path, seed, mids, sh, levels, offset, cfg
):
    """docs/fleet.md: the server holds each vehicle's map as its own receivers would (checked
    against the codec's MapStore fed the same containers, with the spans rule: _VehicleModel;
    including losses, duplicates, delays,
    restarts with an older map and clock-back restarts into the vehicle's own past numbers), the
    global map is the per-tile rule over those maps (written here), any receiver at the server's
    sequence holds the global map, late receivers converge, region clients that replace exactly
    the listed tiles hold the region's Gaussians (also when the map changes between pages and
    they ask again from the first page's sequence), and what was committed survives a clean
    restart and a kill before the batch's commit. Vehicle map id 2**30 - 1 makes global ids near
    2**62 (up to 2**31 - 1 they fail today: see the id-gap tests below); far negative coordinates
    exercise the tile floor."""
    cfg = {"snapshot_period_s": 1.0, **cfg}
    _history(tmp_path, seed, 120, mids, sh, levels, offset, cfg)


# ------------------------------------------------------------------------------------------------
# per-vehicle diagnostics against the receiver's own counts


def test_per_vehicle_counts_are_what_a_receiver_counts_on_the_same_stream(tmp_path):
    """docs/fleet.md: per vehicle, containers are applied exactly as a receiver does and counted
    (`applied`, `snapshot`, `buffered`, `dropped`, `replayed`, `rejected`), but for the spans rule
    (_VehicleModel). Lossy, duplicating, reordering streams with restarts (older maps, clock set
    back) and max_pending 3: the server's diagnostics equal the codec receiver's own stats on the
    same bytes (replayed = its duplicate + stale, clock_back the model's restarts), and its
    sequence and map are the receiver's; over the seeds every path is taken."""
    paths: Counter = Counter()
    for seed in (9, 10, 16):
        paths += _counts_against_the_model(tmp_path / f"fleet{seed}.sqlite3", random.Random(seed))
    assert min(paths[k] for k in ("replayed", "dropped", "rejected", "buffered", "clock_back")) > 0


def _counts_against_the_model(store, rng: random.Random) -> Counter:
    bus = ReplayBus()
    cfg = MapServerNodeConfig(
        store_path=str(store), vehicles=["vehicle1"], global_period_s=0.2, max_pending=3
    )
    server = MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})
    v = _Vehicle(1, rng, ((0, 3 * TILE), (0, 2 * TILE)), 0, 1)
    rx = _VehicleModel(1, 3)
    made = [v.snapshot()]
    for _ in range(40):
        r = rng.random()
        made.append(
            v.restart(rng.random() < 0.5, rng.random() < 0.5)
            if r < 0.1
            else v.snapshot()
            if r < 0.2
            else v.step()
        )
    sent = []
    for data in made:
        if rng.random() < 0.1:
            continue
        sent += [data] * (2 if rng.random() < 0.1 else 1)
    for i in range(len(sent) - 1):
        if rng.random() < 0.15:
            sent[i], sent[i + 1] = sent[i + 1], sent[i]
    for data in sent:
        rx.receive(data)
        _send(bus, 1, data)
    bus.advance(bus.now_ns + 10**9)
    server.on_diagnostics_timer()
    info = json.loads(server.diag.values["vehicle vehicle1"])
    st = rx.stats
    want = {
        "applied": st["applied"], "snapshot": st["snapshot"], "buffered": st["buffered"],
        "dropped": st["dropped"], "replayed": st["duplicate"] + st["stale"], "rejected": st["rejected"],
        "clock_back": st["clock_back"], "seq": rx.seq,
    }  # fmt: skip
    assert {k: info.get(k, 0) for k in want} == want
    assert server.merge.vehicles[1].state.equals(rx.state)
    server.close()
    return Counter({k: n for k, n in want.items() if k != "seq"})


# ------------------------------------------------------------------------------------------------
# restarts: the host clock behind the stored sequence; a store restored from a backup


def _one_vehicle_server(bus: ReplayBus, store) -> MapServerNode:
    cfg = MapServerNodeConfig(store_path=str(store), vehicles=["vehicle1"], global_period_s=0.0)
    return MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})


def test_a_restart_with_the_host_clock_an_hour_behind_never_moves_the_sequence_back(tmp_path, monkeypatch):
    """docs/fleet.md: restarted, the server resumes the same global map and moves its sequence *on*
    to the wall clock. On a host whose clock is an hour behind the stored sequence (a store moved
    to another machine, an RTC reset), the sequence must not go back: a current receiver stays
    current without decoding a snapshot, and follows the next vehicle delta."""
    import gs_mapping.nodes.map_server_node as msn

    store = tmp_path / "fleet.sqlite3"
    rng = random.Random(1)
    v = _Vehicle(1, rng, ((0, 3 * TILE), (0, 2 * TILE)), 0, 1)
    rx = _Receiver()
    bus = ReplayBus()
    rx.attach(bus)
    server = _one_vehicle_server(bus, store)
    bus.advance(1)
    _send(bus, 1, v.snapshot())
    for _ in range(3):
        _send(bus, 1, v.step())
    seq0, snaps = server.merge.global_seq, rx.store.stats["snapshot"]
    assert rx.store.seq == seq0
    server.close()
    real = time.time_ns
    fake = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    fake.time_ns = lambda: real() - 3600 * 10**9
    monkeypatch.setattr(msn, "time", fake)
    bus = ReplayBus()
    rx.attach(bus)
    server = _one_vehicle_server(bus, store)
    bus.advance(10**9)
    assert server.merge.global_seq >= seq0 and rx.store.seq == server.merge.global_seq
    _send(bus, 1, v.step())
    bus.advance(3 * 10**9)
    assert server.merge.global_seq > seq0 and rx.store.seq == server.merge.global_seq
    assert rx.store.state.equals(_rule({1: v.state}, 0)) and rx.store.stats["snapshot"] == snaps
    server.close()


def test_a_region_client_after_the_store_is_restored_from_a_backup_holds_the_restored_map(tmp_path):
    """docs/fleet.md: a store restored from a backup (or one whose -wal was lost) never numbers a
    different map with a sequence its receivers already hold. A vehicle doing region queries along
    its route holds its tiles at the sequence of its last answer (since_seq); the server is
    stopped, its file restored from the operator's backup taken 6 vehicle deltas earlier, and
    restarted. The ordinary receiver takes the restored snapshot as newer (checked: it is fixed);
    the region client asking since its sequence must likewise end with the restored map's tiles
    (brute force over the server's global map) — not keep Gaussians of a map the server no longer
    has, while the answer says nothing changed."""
    store = tmp_path / "fleet.sqlite3"
    rng = random.Random(1)
    v = _Vehicle(1, rng, ((0, 3 * TILE), (0, 2 * TILE)), 0, 1)
    bus = ReplayBus()
    server = _one_vehicle_server(bus, store)
    _send(bus, 1, v.snapshot())
    for _ in range(3):
        _send(bus, 1, v.step())
    server.close()
    shutil.copy(store, tmp_path / "backup.sqlite3")  # (a stopped server: the file is the whole store)
    bus = ReplayBus()
    server = _one_vehicle_server(bus, store)
    for _ in range(6):
        _send(bus, 1, v.step())
    client = _RegionClient((3.0, 2.0, 0.0), 20.0)
    client.update(server)
    assert client.replica().equals(client.want(server.merge.global_map))
    rx = MapStore()
    assert rx.receive(server.merge.snapshot()) == "snapshot"
    server.close()
    for extra in ("-wal", "-shm"):
        (tmp_path / f"fleet.sqlite3{extra}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "backup.sqlite3", store)  # the operator restores the backup
    server = _one_vehicle_server(ReplayBus(), store)
    restored = server.merge.global_map
    assert not restored.equals(rx.state)  # (the backup is another map)
    assert rx.receive(server.merge.snapshot()) == "snapshot" and rx.state.equals(restored)
    client.update(server)
    assert client.replica().equals(client.want(restored)), (len(client.replica()), len(client.want(restored)))
    server.close()


# ------------------------------------------------------------------------------------------------
# map ids 2**30 apart: global ids more than 2**62 apart in one global delta


def test_a_delta_removing_ids_far_apart_decodes_as_encoded():
    """docs/format.md: Gaussian ids are 0 .. 2**63 - 1 (ids beyond are refused by the encoder), and a
    delta's REMOVED / UPDATED ids are the first id and the gaps between them. A delta between two
    valid maps — ids 1 and 2**63 - 1, both removed — must decode on the codec's own receiver into
    the new (empty) map, as the same delta does for ids 1 and 2**62."""
    rng = random.Random(0)
    for far in (1 << 62, (1 << 63) - 1):
        old = _rows([1, far], [[0, 0, 0], [5, 5, 5]], rng, 0, 1)
        rx = MapStore()
        assert rx.receive(encode_snapshot(old, PARAMS, map_id=5, seq=1, n_levels=1)[0]) == "snapshot"
        delta = encode_delta(old, QMap.empty(0), PARAMS, map_id=5, seq=2, base_seq=1)[0]
        assert rx.receive(delta) == "applied", (far, rx.last_error)
        assert len(rx.state) == 0


def test_two_vehicles_with_map_ids_far_apart_removing_in_one_period(tmp_path):
    """docs/fleet.md: a vehicle's map id is 1 .. 2**31 - 1, global ids map_id << 32 | local id, and
    updates within global_period_s (default 0.2 s) go out as one global delta. Vehicles 1 and
    2**31 - 1 (ids from a VIN hash, say) each remove one Gaussian in the same period: the receiver
    of the global stream must apply the global delta (not reject it and wait for a snapshot), and
    the server must restart on the store it wrote itself with the rule over the vehicles' maps."""
    from gs_map_share.fleet_store import FleetStoreError

    big = 2**31 - 1
    rng = random.Random(0)
    store = tmp_path / "fleet.sqlite3"
    cfg = MapServerNodeConfig(store_path=str(store), vehicles=["vehicle1", "vehicle2"])  # defaults: 0.2 s
    bus = ReplayBus()
    rx = _Receiver()
    rx.attach(bus)
    server = MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})
    bus.advance(1)
    a = _rows([1, 2], [[0, 0, 0], [10, 0, 0]], rng, 0, 1)
    b = _rows([1, 2], [[5000, 0, 0], [5010, 0, 0]], rng, 0, 1)

    def send(ns, data):
        topic = "map_snapshot" if data[24:32] == bytes(8) else "map_delta"
        bus.inject(f"/{ns}/mapper_node/{topic}", bytes_to_uint8_multiarray(data), bus.now_ns + 1_000_000)

    send("vehicle1", encode_snapshot(a, PARAMS, map_id=1, seq=10, n_levels=1)[0])
    send("vehicle2", encode_snapshot(b, PARAMS, map_id=big, seq=10, n_levels=1)[0])
    bus.advance(bus.now_ns + 10**9)
    assert rx.store.state.equals(server.merge.global_map)
    a2, b2 = a.take(np.array([1])), b.take(np.array([1]))
    send("vehicle1", encode_delta(a, a2, PARAMS, map_id=1, seq=11, base_seq=10)[0])
    send("vehicle2", encode_delta(b, b2, PARAMS, map_id=big, seq=11, base_seq=10)[0])
    bus.advance(bus.now_ns + 10**9)
    want = _rule({1: a2, big: b2}, 0)
    assert server.merge.global_map.equals(want)
    server.close()
    try:
        again = MapServerNode(ReplayBus().context("map_server_node"), {"map_server_node": cfg})
    except FleetStoreError as exc:
        pytest.fail(f"the server refuses its own store: {exc}")
    assert again.merge.global_map.equals(want)
    again.close()
    assert rx.store.seq == server.merge.global_seq and rx.store.state.equals(want), rx.store.last_error


# ------------------------------------------------------------------------------------------------
# levels of detail: a global map whose coarse Gaussians belong to a vehicle with a larger map id


def test_a_snapshot_whose_coarsest_gaussian_has_the_highest_id_decodes():
    """docs/format.md §4: a layered snapshot's layers never go back to a coarser level, and the
    decoder refuses one that does. 16 Gaussians of level 1 (ids 1..16) and one of level 0 (id
    17, added last, as a Gaussian of another vehicle is in the global map's id order): the
    snapshot the codec writes must decode to the same map on its own receiver."""
    rng = random.Random(1)
    q = _rows(list(range(1, 18)), [[100 * i, 0, 0] for i in range(17)], rng, 0, 1)
    q.level[:] = 1
    q.level[-1] = 0
    data = encode_snapshot(q, PARAMS, map_id=1, seq=5, n_levels=5)[0]
    rx = MapStore()
    assert rx.receive(data) == "snapshot", rx.last_error
    assert rx.state.equals(q)


def test_a_late_receiver_and_a_restart_take_a_global_map_whose_coarse_level_is_another_vehicles(tmp_path):
    """docs/fleet.md: the global map goes out as an ordinary snapshot stream that MapStore follows
    unchanged, late receivers start from the global snapshot, and a restart resumes from the
    stored restart point (global_snapshot_every). vehicle1 maps 16 Gaussians of level 1, vehicle2
    one Gaussian of level 0 in another tile (global ids 1 << 32 | 1..16 and 2 << 32 | 1): a
    receiver joining late must take the global snapshot, a region query's answer (docs/fleet.md:
    an ordinary snapshot container, layered) must decode, and the server must restart on the store
    it wrote with the rule over both maps."""
    from gs_map_share.fleet_store import FleetStoreError

    rng = random.Random(0)
    store = tmp_path / "fleet.sqlite3"
    cfg = MapServerNodeConfig(
        store_path=str(store), vehicles=["vehicle1", "vehicle2"], global_period_s=0.0, global_snapshot_every=1
    )
    bus = ReplayBus()
    server = MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})
    a = _rows(list(range(1, 17)), [[100 * i, 0, 0] for i in range(16)], rng, 0, 1)
    a.level[:] = 1
    b = _rows([1], [[5000, 0, 0]], rng, 0, 1)  # (another tile)
    _send(bus, 1, encode_snapshot(a, PARAMS, map_id=1, seq=10, n_levels=1)[0])
    _send(bus, 2, encode_snapshot(b, PARAMS, map_id=2, seq=10, n_levels=1)[0])
    want = _rule({1: a, 2: b}, 0)
    assert server.merge.global_map.equals(want)
    late = _Receiver()
    late.attach(bus)  # (the latched snapshot, or the one sent when a subscriber joins)
    bus.advance(bus.now_ns + 2 * 10**9)
    problems = []
    if not (late.store.ready and late.store.state.equals(want)):
        problems.append(f"late receiver: {late.store.last_error}")
    answer = RegionAnswer.from_bytes(
        server.answer_region(RegionRequest(2.0, 0.0, 0.0, radius_m=20.0).to_bytes())
    )
    rx = MapStore()
    if answer.status != "ok" or rx.receive(answer.container) != "snapshot" or not rx.state.equals(want):
        problems.append(f"region answer: {answer.error or rx.last_error}")
    server.close()
    try:
        again = MapServerNode(ReplayBus().context("map_server_node"), {"map_server_node": cfg})
        if not again.merge.global_map.equals(want):
            problems.append("restart: another global map")
        again.close()
    except FleetStoreError as exc:
        problems.append(f"the server refuses its own store: {exc}")
    assert not problems, problems
