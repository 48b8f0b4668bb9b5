"""map_server_node: many vehicles' map streams → one durable global map, followed like any mapper.

Inputs: each configured vehicle's ``<ns>/mapper_node/map_delta`` and ``map_snapshot`` (every
vehicle its own map id and sequence, all in the shared ``map`` frame, on the fleet's quantisation).
They are merged by :class:`gs_map_share.merge.FleetMerge` (the per-tile rule in docs/fleet.md) and
made durable in one SQLite file (:class:`gs_map_share.fleet_store.FleetStore`) before anything is
acknowledged or published. Outputs:

- ``~/map_delta`` / ``~/map_snapshot``: the global map as an ordinary delta / snapshot stream, so
  ``map_receiver_node`` and :class:`gs_map_share.receiver.MapStore` follow it unchanged (point their
  topics at ``/map_server_node/…``). Restarted, the server resumes the same map, its sequence
  moved on to the wall clock by an empty delta (republished with the last ones): a receiver that is
  up to date applies it and continues with the next delta (the snapshot it sees again is recognised
  as a duplicate from its 48-byte header, nothing decoded); a store restored from a backup can then
  never show a receiver its old sequence with another map;
- ``~/ack`` (std_msgs/String, JSON ``{"map_id", "seq", "global_seq"}``): vehicle containers
  arriving within ``global_period_s`` are committed together with the one global delta they make
  (one transaction: group commit; the codec's cost per delta is mostly fixed, and so is an fsync),
  then the delta is published and each container acknowledged with the global sequence holding it;
  an acknowledged container survives ``kill -9``;
- region + level-of-detail queries (:mod:`gs_map_share.region`): a Zenoh queryable at
  ``region_key`` when the runtime offers queryables, and on every runtime the topic pair
  ``~/region_request`` → ``~/region_reply`` (UInt8MultiArray; the reply echoes the request ``id``);
  :meth:`MapServerNode.answer_region` is the same call for tests and tools;
- ``/diagnostics``: per vehicle its sequence, Gaussians, containers applied / buffered / replayed /
  rejected with the last reason, bytes in, liveliness (a Zenoh liveliness token of the vehicle's
  delta publisher where the runtime has them; silence beyond ``vehicle_timeout_s`` everywhere).

A storage failure (disk full, file removed) stops ingest (counted, logged, nothing acknowledged);
a restart resumes from what was committed.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..config_file import param
from ..errors import GsMappingError
from ..topics import resolve_namespace
from .base import NodeBase
from .context import LATCHED_QOS, RELIABLE_QOS, QoS, subscriptions_joined
from .context import resolve_topic as _resolve


@dataclass
class MapServerNodeConfig:
    vehicles: list[str] = param(
        ["vehicle1", "vehicle2", "vehicle3", "vehicle4"],
        "namespaces of the vehicles whose mapper_node streams are merged (one or more, each once)",
    )
    delta_topic: str = param(
        "mapper_node/map_delta",
        "each vehicle's delta topic, relative to its namespace (one topic per vehicle: not absolute)",
    )
    snapshot_topic: str = param("mapper_node/map_snapshot", "each vehicle's snapshot topic, relative to it")
    store_path: str = param(
        "fleet_map.sqlite3", "SQLite file of the global map (created when absent; not empty, not :memory:)"
    )
    map_id: int = param(1000000, "map id of the global map (the vehicles' ids must differ)", (1, 2**31 - 1))
    frame_id: str = param(
        "map", "the shared fixed frame every vehicle maps in (a tf2 frame id: not empty, no leading '/')"
    )
    quality: int = param(3, "codec quality of the fleet: every vehicle's mapper_node.quality", (0, 5))
    sh_degree: int = param(0, "SH degree of the fleet's maps (every vehicle's mapper.sh_degree)", (0, 3))
    levels: int = param(5, "levels of detail in global snapshots and region answers", (1, 12))
    global_period_s: float = param(
        0.2,
        "vehicle updates arriving within this period go out as one global delta (0 = each alone)",
        (0.0, 60.0),
    )
    snapshot_period_s: float = param(
        10.0, "period of ~/map_snapshot (0 = at start and when subscribers join)", (0.0, 3600.0)
    )
    delta_depth: int = param(100, "keep-last depth of ~/map_delta", (1, 10000))
    max_pending: int = param(64, "out-of-order containers buffered per vehicle", (1, 100000))
    max_vehicle_gaussians: int = param(
        1 << 22,
        "largest vehicle map accepted: a container that would make a larger one is rejected before decoding",
        (1, 1 << 26),
    )
    compact_after: int = param(
        64, "deltas logged per vehicle before its log is replaced by a snapshot", (1, 1000000)
    )
    global_snapshot_every: int = param(
        64, "global deltas between stored global snapshots (restart point)", (1, 1000000)
    )
    keep_global_deltas: int = param(256, "global deltas kept in the store for catching up", (0, 1000000))
    republish_on_start: int = param(
        8, "last global deltas published again at start (receivers a little behind catch up)", (0, 10000)
    )
    vehicle_timeout_s: float = param(30.0, "a vehicle silent this long is reported silent", (0.1, 86400.0))
    region_key: str = param(
        "gs_mapping/fleet/region",
        "Zenoh key of the region queryable, under the ROS domain id (<domain>/<key>): '/'-separated "
        "chunks, no leading or trailing '/', no wildcard (*, $*), # or ?",
    )
    max_region_radius_m: float = param(2000.0, "largest radius a region query may ask for", (1.0, 1e6))
    max_region_bytes: int = param(
        4 << 20, "largest region answer (a query's max_bytes is capped to it)", (1024, 1 << 30)
    )
    diagnostics_period_s: float = param(1.0, "period of /diagnostics", (0.05, 60.0))

    def __post_init__(self) -> None:
        _check_config(self)  # (wherever it is built: a file, -p, launch; before the store is created)


@dataclass
class _Binding:
    """A subscribed vehicle namespace: the map id seen on it and its publisher's liveliness."""

    namespace: str
    map_id: int | None = None
    waiting: int | None = None  # before it is bound: the map id of the deltas it holds back
    tokens: set[str] | None = None  # its delta publishers' live tokens; None: none seen (or no liveliness)
    vanished: int = 0
    shared_said: bool = False  # two sessions publishing its deltas at once: said once
    topics: list[str] = field(default_factory=list)
    rejected: int = 0  # containers refused on this namespace (whatever map id they claimed)
    last_error: str = ""

    @property
    def publishers(self) -> int | None:
        """Zenoh sessions (processes) whose delta publisher tokens are up; None: no liveliness."""
        return None if self.tokens is None else len({k.split("/")[2] for k in self.tokens})

    @property
    def token_alive(self) -> bool | None:
        """None: no token seen; True while any of its publishers' tokens is up (a restarted mapper's
        new token can arrive before the old one's removal)."""
        return None if self.tokens is None else bool(self.tokens)


class MapServerNode(NodeBase):
    name = "map_server_node"
    sections = {"map_server_node": MapServerNodeConfig}

    def __init__(self, ctx, config: dict[str, Any]):
        super().__init__(ctx, config)
        from gs_map_share.fleet_store import FleetStore, identity
        from gs_map_share.merge import FleetMerge, warm_up
        from gs_map_share.quantize import QuantParams

        self.cfg: MapServerNodeConfig = config["map_server_node"]
        c = self.cfg
        _check_config(c)  # (as it was built, and again: Python code may have set fields since)
        self.params = QuantParams.from_quality(c.quality)
        self.store = FleetStore(
            os.path.expanduser(c.store_path), identity(c.map_id, c.frame_id, self.params, c.sh_degree)
        )
        self.merge = FleetMerge(
            self.params,
            global_map_id=c.map_id,
            frame_id=c.frame_id,
            sh_degree=c.sh_degree,
            max_pending=c.max_pending,
            snapshot_levels=c.levels,
            max_vehicle_gaussians=c.max_vehicle_gaussians,
        )
        self.tile_seq: dict[tuple, int] = {}
        self._log_len: dict[int, int] = {}
        self._since_global_snapshot = 0
        self.storage_failed = ""
        self.region_queries = 0
        self._unacked: list = []  # vehicle containers committed, waiting for the global flush
        self._new_bindings: dict[str, int] = {}  # namespaces bound since the last commit
        self._stored_bindings: dict[str, int] = {}
        try:
            self._restore()
        except GsMappingError:
            self.store.close()
            raise

        self.pub_delta = ctx.create_publisher(
            "~/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(reliable=True, depth=c.delta_depth)
        )
        self.pub_snapshot = ctx.create_publisher(
            "~/map_snapshot", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS
        )
        self.pub_ack = ctx.create_publisher("~/ack", "std_msgs/msg/String", QoS(reliable=True, depth=1000))
        self.pub_region = ctx.create_publisher("~/region_reply", "std_msgs/msg/UInt8MultiArray", RELIABLE_QOS)
        self.bindings: dict[str, _Binding] = {}
        for ns in c.vehicles:
            # bound as the store says: a restart must not let another namespace take a map id
            b = self.bindings[ns] = _Binding(ns, self._stored_bindings.get(resolve_namespace(ns)))
            for rel, qos in (
                (c.delta_topic, QoS(reliable=True, depth=1000)),
                (c.snapshot_topic, LATCHED_QOS),
            ):
                topic = _resolve(rel, "", ns)
                b.topics.append(topic)
                ctx.create_subscription(
                    topic,
                    "std_msgs/msg/UInt8MultiArray",
                    qos,
                    self.guarded(topic, functools.partial(self.on_container, binding=b)),
                )
        ctx.create_subscription(
            "~/region_request",
            "std_msgs/msg/UInt8MultiArray",
            RELIABLE_QOS,
            self.guarded("~/region_request", self.on_region_request),
        )
        if hasattr(ctx, "declare_queryable"):  # Zenoh runtime: a real queryable
            ctx.declare_queryable(c.region_key, self.on_region_query)
        if hasattr(ctx, "subscribe_liveliness"):  # Zenoh runtime: the vehicles' publisher tokens
            ctx.subscribe_liveliness(f"@ros2_lv/{getattr(ctx, 'domain_id', 0)}/**", self.on_liveliness)
        self._subscribers_seen = 0
        self._last_snapshot_ns = 0
        self._said_beyond_receivers = False
        if c.global_period_s > 0:
            ctx.create_timer(c.global_period_s, self.flush_global)
        ctx.create_timer(max(0.2, min(1.0, c.snapshot_period_s or 1.0)), self.on_snapshot_timer)
        ctx.create_timer(c.diagnostics_period_s, self.on_diagnostics_timer)
        self.diag.values["device"] = "cpu"
        self.republish(c.republish_on_start)
        self.publish_snapshot()
        # the codec's compiled loops loaded (or, the first start after an install, compiled) before
        # the node is up and says so: else an empty store's first vehicle delta pays it (seconds)
        t0 = time.process_time()
        warm_up(self.params, frame_id=c.frame_id, sh_degree=c.sh_degree, snapshot_levels=c.levels)
        self.ctx.logger.debug(f"codec loops loaded in {time.process_time() - t0:.2f} s of CPU")

    # -- restart -----------------------------------------------------------------------------------
    def _restore(self) -> None:
        """Rebuild every vehicle's map and the global map from the store; the global sequence goes
        on from the wall clock in microseconds (a fresh store starts there; a restored map moves on
        to it by an empty delta): above anything an earlier server on this store, or on a copy of
        it, sent."""
        from gs_map_share.delta import decode_delta
        from gs_map_share.errors import DecodeError
        from gs_map_share.fleet_store import FleetStoreError, Row
        from gs_map_share.merge import Spans, changed_tiles
        from gs_map_share.snapshot import decode_snapshot

        def replay(rows, what: str):
            try:
                if not rows or rows[0].base_seq != 0:
                    raise DecodeError("no snapshot to start from")
                h, q = decode_snapshot(rows[0].data)
                seq = h.seq
                for r in rows[1:]:
                    if r.base_seq != seq:
                        raise DecodeError(f"delta {r.seq} applies to {r.base_seq}, the log is at {seq}")
                    h, q = decode_delta(q, r.data)
                    seq = h.seq
                return seq, q
            except DecodeError as exc:
                raise FleetStoreError(f"{self.store.path}: {what}: {exc}") from None

        stored = self.store.load()
        for mid, rows in sorted(stored.vehicles.items()):
            seq, q = replay(rows, f"vehicle map {mid}")
            sp = stored.spans.get(mid)
            self.merge.restore_vehicle(mid, seq, q, None if sp is None else Spans(sp["lo"], sp["past"]))
            self._log_len[mid] = len(rows) - 1
        self.tile_seq = dict(stored.tile_seq)
        self._stored_bindings = dict(stored.bindings)
        self._unissued = list(stored.unissued)  # (see Stored.unissued: region answers use them)
        if stored.global_rows:
            seq, g = replay(stored.global_rows, "global map")
            self.merge.global_map, self.merge.global_seq = g, seq
            self._since_global_snapshot = len(stored.global_rows) - 1  # the deltas after the restart point
        else:  # a new store, or vehicle logs without a global restart point (the merge below)
            start = time.time_ns() // 1000
            # no sequence below the start was issued by this map: a region client holding one
            # followed a store this one replaced (deleted, wiped, a new disk) and must start over
            self.store.commit([], unissued=(0, start))
            self._unissued.append((0, start))
            self.merge.global_seq = start
            self.store.compact_global(Row(self.merge.global_seq, 0, self.merge.snapshot()), 0)
        ref = self.merge.reference_merge()
        if not ref.equals(self.merge.global_map):  # e.g. the merge rule changed between versions
            base = self.merge.global_seq
            tiles = changed_tiles(self.merge.global_map, ref, self.params.tile_bits)
            data = self.merge.diff_to(ref)  # one delta to it
            self.store.commit([], Row(self.merge.global_seq, base, data), tiles)
            self.tile_seq.update({t: self.merge.global_seq for t in tiles})
            self._since_global_snapshot += 1
        now = time.time_ns() // 1000
        if stored.global_rows and now > self.merge.global_seq:
            # the sequence moves on to the wall clock, by an empty delta: a receiver that is up to
            # date applies it and goes on with deltas; one that followed another history of this
            # store (the server restarted on a backup, or without its lost -wal) never meets this
            # sequence with another map, and takes the next snapshot
            base = self.merge.global_seq
            data = self.merge.diff_to(self.merge.global_map, seq=now)
            self.store.commit([], Row(now, base, data), [], unissued=(base, now))
            self._unissued.append((base, now))
            self._compact_global()  # (a delta like any: a server restarting in a loop compacts too)
        self.ctx.logger.info(
            f"fleet store {self.store.path}: {len(stored.vehicles)} vehicles, global map "
            f"{len(self.merge.global_map)} Gaussians at sequence {self.merge.global_seq}"
        )

    # -- ingest ------------------------------------------------------------------------------------
    def on_container(self, msg: Any, binding: _Binding | None = None) -> None:
        from ..messages import uint8_multiarray_to_bytes

        self.ingest(uint8_multiarray_to_bytes(msg), binding)

    def ingest(self, data: bytes, binding: _Binding | None = None) -> str:
        """One vehicle container (what the subscriptions call; tests call it directly). Applied to
        the vehicle's map now; stored, merged and acknowledged at the next flush."""
        from gs_map_share.merge import REJECTED

        if self.storage_failed:
            self.diag.drop("containers_storage_failed", self.storage_failed)
            return REJECTED
        t0 = time.perf_counter()
        if binding is not None:
            why = self._binding_refuses(binding, data)
            if why:  # before the merge sees it: another map's container never touches the global map
                self._rejected(binding, why)
                return REJECTED
        r = self.merge.offer(data, self.ctx.now_ns(), flush=False)
        if binding is not None and binding.map_id is None and r.map_id is not None:
            if r.accepted:  # a namespace is bound by its first container taken (it changed a map)
                binding.map_id, binding.waiting = r.map_id, None
                self._new_bindings[binding.namespace] = r.map_id  # (stored with it, at the next commit)
            elif r.status != REJECTED and binding.waiting is None:
                binding.waiting = r.map_id  # a delta held for a snapshot: no proof of whose it is
        if r.status == REJECTED:
            self._rejected(binding, self.merge.last_error)
        if not r.accepted:
            return r.status
        self._unacked += r.accepted
        if self.cfg.global_period_s <= 0:
            self.flush_global()
        self.diag.latency("ingest", time.perf_counter() - t0)
        return r.status

    def _rejected(self, binding: _Binding | None, why: str) -> None:
        """Counted where it arrived: on its namespace (the vehicle's diagnostics), whatever map id
        the container claimed, and in the node's rejected counts."""
        if binding is not None:
            binding.rejected += 1
            binding.last_error = why
        self.diag.reject(binding.namespace if binding is not None else "vehicle_containers", why)

    def _binding_refuses(self, binding: _Binding, data: bytes) -> str:
        """Why a container on ``binding``'s namespace may not reach the merge: a map id other than
        the one the namespace is bound to, or one bound to another namespace ("" : it may; an
        unreadable header is the merge's to reject and count)."""
        from gs_map_share.container import unpack_header
        from gs_map_share.errors import DecodeError

        try:
            h = unpack_header(data)[0]
        except DecodeError:
            return ""
        map_id = h.map_id
        if binding.map_id is not None and map_id != binding.map_id:
            return f"map id {map_id} on a namespace bound to {binding.map_id}"
        if binding.map_id is None and binding.waiting not in (None, map_id) and not h.is_snapshot:
            # (what a namespace holds back is bounded as one vehicle's; a snapshot, decoded and
            # checked whole, may still bind it: a stray delta must not lock the vehicle out)
            return f"delta of map id {map_id} on a namespace holding deltas of map id {binding.waiting}"
        owner = next(
            (b.namespace for b in self.bindings.values() if b is not binding and b.map_id == map_id), None
        )
        if owner is not None:
            return f"map id {map_id} belongs to namespace {owner}"
        return ""

    def flush_global(self) -> None:
        """The vehicle containers applied since the last flush and the one global delta they make,
        committed in one transaction (one fsync for the batch: group commit), then the delta is
        published and every container acknowledged with the global sequence that holds it. A crash
        before the commit loses only unacknowledged containers; their vehicles' next snapshots
        bring the server back in step."""
        from gs_map_share.fleet_store import FleetStoreError, Row

        from ..messages import bytes_to_uint8_multiarray

        if self.storage_failed or not (self._unacked or self.merge.pending_tiles):
            return
        t0 = time.perf_counter()
        committed = self.merge.global_map, self.merge.global_seq  # (flush replaces, never edits, the map)
        f = self.merge.flush()
        rows = [(a.map_id, Row(a.seq, a.base_seq, a.data)) for a in self._unacked]
        changed, self.merge.spans_changed = self.merge.spans_changed, set()
        spans = {mid: self.merge.vehicles[mid].spans.as_json() for mid in sorted(changed)}
        try:
            if f is None:
                self.store.commit(rows, bindings=self._new_bindings, spans=spans)
            else:
                self.store.commit(rows, Row(f[2], f[1], f[0]), f[3], self._new_bindings, spans=spans)
        except FleetStoreError as exc:
            # what is published (snapshots, region answers) stays what the store holds: a restart
            # resumes from there, and would number different content with the uncommitted sequence
            self.merge.global_map, self.merge.global_seq = committed
            self._storage_failed(exc)
            return
        if f is not None:
            data, _base, seq, tiles = f
            self.tile_seq.update({t: seq for t in tiles})
            self.pub_delta.publish(bytes_to_uint8_multiarray(data, self.ctx.factory))
            self._compact_global()
            self._say_if_beyond_receivers()
        self._compact_vehicles(self._unacked)
        for a in self._unacked:
            ack = {"map_id": a.map_id, "seq": a.seq, "global_seq": self.merge.global_seq}
            self.pub_ack.publish(self.ctx.factory.make("std_msgs/msg/String", data=json.dumps(ack)))
        self._unacked, self._new_bindings = [], {}
        self.diag.latency("global_flush", time.perf_counter() - t0)

    def _say_if_beyond_receivers(self) -> None:
        """Once: the global map has outgrown what a map_receiver_node takes by default (each vehicle
        is bounded, the merge of several is not), so followers need a larger max_gaussians."""
        from gs_map_share.receiver import DEFAULT_MAX_GAUSSIANS

        n = len(self.merge.global_map)
        if n > DEFAULT_MAX_GAUSSIANS and not self._said_beyond_receivers:
            self._said_beyond_receivers = True
            self.ctx.logger.warning(
                f"the global map holds {n} Gaussians, more than map_receiver_node.max_gaussians' "
                f"default {DEFAULT_MAX_GAUSSIANS}: receivers following it need a larger max_gaussians"
            )

    def _storage_failed(self, exc) -> str:
        from gs_map_share.merge import REJECTED

        self.storage_failed = str(exc)
        self.diag.fail(f"storage failed, ingest stopped (restart resumes from the store): {exc}")
        self.ctx.logger.error(f"storage failed, ingest stopped (restart resumes from the store): {exc}")
        return REJECTED

    def _compact_vehicles(self, accepted) -> None:
        from gs_map_share.fleet_store import FleetStoreError, Row
        from gs_map_share.snapshot import encode_snapshot

        try:
            for a in accepted:
                self._log_len[a.map_id] = 0 if a.base_seq == 0 else self._log_len.get(a.map_id, 0) + 1
            for mid in {a.map_id for a in accepted}:
                if self._log_len[mid] >= self.cfg.compact_after:
                    v = self.merge.vehicles[mid]
                    if v.state is None:
                        continue
                    data, _ = encode_snapshot(
                        v.state, self.params, map_id=mid, seq=v.seq, n_levels=1, frame_id=self.cfg.frame_id
                    )
                    self.store.compact_vehicle(mid, Row(v.seq, 0, data))
                    self._log_len[mid] = 0
        except FleetStoreError as exc:  # compaction is an optimisation: the log is still complete
            self.diag.drop("compaction", str(exc))

    def _compact_global(self) -> None:
        from gs_map_share.fleet_store import FleetStoreError, Row

        self._since_global_snapshot += 1
        if self._since_global_snapshot < self.cfg.global_snapshot_every:
            return
        try:
            row = Row(self.merge.global_seq, 0, self.merge.snapshot())
            self.store.compact_global(row, self.cfg.keep_global_deltas)
            self._since_global_snapshot = 0
        except FleetStoreError as exc:
            self.diag.drop("compaction", str(exc))

    # -- outputs -----------------------------------------------------------------------------------
    def republish(self, n: int) -> None:
        """Publish the last ``n`` stored global deltas again: a receiver that missed the last few
        (the server died before it got them) applies them instead of waiting for a snapshot; one
        that has them drops them as duplicates from the header."""
        from ..messages import bytes_to_uint8_multiarray

        if n <= 0:
            return
        for row in self.store.last_global_deltas(n):
            self.pub_delta.publish(bytes_to_uint8_multiarray(row.data, self.ctx.factory))

    def publish_snapshot(self) -> None:
        from ..messages import bytes_to_uint8_multiarray

        data = self.merge.snapshot()
        self._last_snapshot_ns = self.ctx.now_ns()
        self.pub_snapshot.publish(bytes_to_uint8_multiarray(data, self.ctx.factory))
        self.diag.values["snapshot_bytes"] = len(data)

    def on_snapshot_timer(self) -> None:
        subs = subscriptions_joined(self.pub_snapshot)
        joined = subs > self._subscribers_seen  # (a count: one leaving as another joined shows)
        self._subscribers_seen = subs
        period = self.cfg.snapshot_period_s
        self._last_snapshot_ns = min(self._last_snapshot_ns, self.ctx.now_ns())  # (the clock went back)
        due = period > 0 and self.ctx.now_ns() - self._last_snapshot_ns >= period * 1e9
        if joined or due:
            self.publish_snapshot()

    # -- region queries ----------------------------------------------------------------------------
    def answer_region(self, request: bytes) -> bytes:
        """Region request bytes → answer bytes (docs/fleet.md); a bad request gets an error answer,
        and so does anything unexpected (a Zenoh query's handler must not raise: it has no
        subscription guard around it)."""
        from gs_map_share.region import RegionAnswer, RegionError

        self.region_queries += 1
        try:
            return self._answer_region(request)
        except RegionError as exc:
            why = str(exc)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            why = f"unexpected {type(exc).__name__}: {exc}"
        self.diag.reject("region_queries", why)
        return RegionAnswer("error", self.merge.global_seq, error=why).to_bytes()

    def _answer_region(self, request: bytes) -> bytes:
        from gs_map_share.region import RegionError, RegionRequest, answer

        c = self.cfg
        req = RegionRequest.from_bytes(request, c.max_region_radius_m, c.max_region_bytes)
        if any(lo < req.since_seq < hi for lo, hi in self._unissued):
            # the client's map is another history's (a store restored from a backup, a lost -wal):
            # "nothing changed since" would keep it, and no page can name the tiles it alone holds
            raise RegionError(
                f"since_seq {req.since_seq} is no sequence of this map (a store restored from a "
                "backup, or replaced?): drop the region's tiles and ask again with since_seq 0"
            )
        t0 = time.perf_counter()
        out = answer(
            req,
            self.merge.global_map,
            self.params,
            map_id=c.map_id,
            seq=self.merge.global_seq,
            tile_seq=self.tile_seq,
            frame_id=c.frame_id,
            levels=c.levels,
        )
        self.diag.latency("region_query", time.perf_counter() - t0)
        if out.status != "ok":
            self.diag.reject("region_queries", out.error)
        return out.to_bytes()

    def on_region_request(self, msg: Any) -> None:
        from ..messages import bytes_to_uint8_multiarray, uint8_multiarray_to_bytes

        reply = self.answer_region(uint8_multiarray_to_bytes(msg))
        self.pub_region.publish(bytes_to_uint8_multiarray(reply, self.ctx.factory))

    def on_region_query(self, payload: bytes) -> bytes:
        """Zenoh queryable handler: the request is the query's payload, the answer the reply's."""
        return self.answer_region(payload)

    # -- liveliness / diagnostics ------------------------------------------------------------------
    def on_liveliness(self, key: str, alive: bool) -> None:
        """A graph token appeared or vanished. rmw_zenoh's format (its docs/design.md):
        ``@ros2_lv/<domain>/<zid>/<node id>/<entity id>/<kind>/<enclave>/<ns>/<node>/<topic>/…``,
        names mangled with ``%`` for ``/``; the vehicle's presence is its delta publisher (``MP``)."""
        parts = key.split("/")
        if len(parts) < 13 or parts[0] != "@ros2_lv" or parts[5] != "MP":
            return
        topic = parts[9].replace("%", "/")
        for b in self.bindings.values():
            if topic == b.topics[0]:
                was, b.tokens = b.token_alive, b.tokens if b.tokens is not None else set()
                if alive:
                    b.tokens.add(key)
                else:
                    b.tokens.discard(key)
                if was and not b.token_alive:
                    b.vanished += 1
                    self.ctx.logger.warning(f"vehicle {b.namespace} vanished (liveliness token gone)")
                if (b.publishers or 0) <= 1:
                    b.shared_said = False
                elif not b.shared_said:
                    # one map stream per namespace: the newer numbering wins, the other's containers
                    # are replays, its map never merged (unless the other is a restarted mapper's
                    # old session, not timed out yet)
                    b.shared_said = True
                    self.ctx.logger.warning(
                        f"vehicle {b.namespace}: {b.publishers} processes publish its map deltas: two "
                        "vehicles in one namespace keep one map (the other's containers count as "
                        "replayed), unless one is a restarted mapper's old session not yet timed out"
                    )

    def on_diagnostics_timer(self) -> None:
        now = self.ctx.now_ns()
        timeout = self.cfg.vehicle_timeout_s * 1e9
        for b in self.bindings.values():
            mid = b.map_id if b.map_id is not None else b.waiting
            v = self.merge.vehicles.get(mid) if mid is not None else None
            info = v.summary() if v is not None else {"map_id": b.map_id}
            info.update(rejected=b.rejected, last_error=b.last_error)  # what arrived on this namespace
            info["silent"] = v is None or now - v.last_seen_ns > timeout
            info["liveliness"] = {None: "n/a", True: "alive", False: "gone"}[b.token_alive]
            info["vanished"] = b.vanished
            info["publishers"] = b.publishers  # (processes publishing its deltas; None: n/a)
            self.diag.values[f"vehicle {b.namespace}"] = json.dumps(info, default=str)
        self.diag.values.update(
            {
                "global_seq": self.merge.global_seq,
                "gaussians": len(self.merge.global_map),
                "vehicles": sum(v.state is not None for v in self.merge.vehicles.values()),
                "tiles": len(self.merge.owner),
                "region_queries": self.region_queries,
                "unattributed_rejected": self.merge.unknown.get("rejected", 0),
            }
        )
        if self.storage_failed:
            self.diag.values["storage_failed"] = self.storage_failed
        self.publish_diagnostics()

    def close(self) -> None:
        try:
            self.flush_global()  # a clean stop leaves nothing waiting for a flush
        finally:
            self.store.close()  # (its lock freed whatever the flush met)


def _check_config(c: MapServerNodeConfig, where: str = "") -> None:
    """What no ROS parameter range can say, before the store or any endpoint is created."""
    from ..errors import ConfigError
    from ..tf import check_frame_id

    if not c.vehicles:
        raise ConfigError(f"{where}map_server_node.vehicles: no vehicle namespaces configured")
    check_frame_id(f"{where}map_server_node.frame_id", c.frame_id)
    # (SQLite's temporary databases, kept nowhere; the store's own opening refuses them without
    # naming the parameter)
    if c.store_path.strip() in ("", ":memory:"):
        raise ConfigError(
            f"{where}map_server_node.store_path: {c.store_path!r} is no file to keep the global map in; "
            "give the path of an SQLite file"
        )
    _check_distinct_namespaces(c.vehicles, where)
    _check_vehicle_topics(c, where)
    _check_region_key(c.region_key, where)


def _check_vehicle_topics(c: MapServerNodeConfig, where: str = "") -> None:
    """ConfigError unless every vehicle's delta and snapshot topics are its own: an absolute name
    (``/mapper_node/map_delta``) resolves to one topic for all vehicles, which no namespaced mapper
    publishes on, and every binding would take what arrives there."""
    from ..errors import ConfigError

    seen: dict[str, tuple[str, str]] = {}  # topic → (parameter, vehicle)
    for name in ("delta_topic", "snapshot_topic"):
        value = getattr(c, name)
        for ns in c.vehicles:
            try:
                topic = _resolve(value, "", ns)
            except ConfigError as exc:
                raise ConfigError(f"{where}map_server_node.{name}: {exc}") from None
            if topic in seen:
                other, other_ns = seen[topic]
                why = (
                    f"for vehicles {other_ns} and {ns} alike (an absolute name ignores the namespace)"
                    if other == name
                    else f"(vehicle {other_ns}'s {other} too)"
                )
                raise ConfigError(
                    f"{where}map_server_node.{name}: {value!r} is {topic} {why}: each vehicle's "
                    "delta and snapshot topics are its own, relative to its namespace"
                )
            seen[topic] = (name, ns)


def _check_region_key(key: str, where: str = "") -> None:
    """ConfigError unless ``<domain>/<key>`` is one concrete Zenoh key: chunks between single
    slashes (ROS's leading ``/`` is an empty chunk to Zenoh), none holding ``#`` or ``?`` (forbidden)
    or a wildcard (``*``, ``**``, ``$*``: the queryable would answer, and reply, under a pattern,
    so a query over shards could not tell which one answered). Zenoh's own check, where installed,
    has the last word."""
    from ..errors import ConfigError

    why = (
        "has an empty chunk (a leading, trailing or double '/'; Zenoh keys are no ROS names)"
        if "" in key.split("/")
        else "holds a wildcard ('*', '$'): a server answers under its own concrete key"
        if "*" in key or "$" in key
        else "holds '#' or '?' (not allowed in a Zenoh key)"
        if "#" in key or "?" in key
        else ""
    )
    if not why:
        try:
            import zenoh
        except ImportError:  # (no Zenoh runtime here: the rule above is all that can be checked)
            return
        try:
            zenoh.KeyExpr(f"0/{key}")
        except zenoh.ZError as exc:  # (its message ends with the Rust source location)
            why = f"is no Zenoh key expression: {str(exc).split(' at /')[0]}"
    if why:
        raise ConfigError(f"{where}map_server_node.region_key: {key!r} {why}")


def _check_distinct_namespaces(vehicles: list[str], where: str = "") -> None:
    """ConfigError for one ROS namespace listed twice (``vehicle1`` and ``/vehicle1`` resolve to
    the same topics: a second binding would refuse every container of the real vehicle)."""
    from ..errors import ConfigError
    from .context import is_ros_namespace

    seen: dict[str, str] = {}
    for ns in vehicles:
        if ns and not is_ros_namespace(ns):  # (no vehicle can publish under truck-7; "/": the root)
            raise ConfigError(
                f"{where}map_server_node.vehicles: {ns!r} is not a vehicle's ROS namespace (such as "
                "/vehicle1: letters, digits and _, not a digit first)"
            )
        key = resolve_namespace(ns)
        if key in seen:
            raise ConfigError(
                f"{where}map_server_node.vehicles: {seen[key]!r} and {ns!r} are one namespace ({key})"
            )
        seen[key] = ns
