"""Fleet merge: many vehicles' map streams → one global tiled map (docs/fleet.md, "Merge rule").

Each vehicle publishes its own map (its own ``map_id``, sequence numbers, snapshots and deltas, all
in the shared ``map`` frame, on the fleet's quantisation). Per vehicle, containers are applied
strictly in sequence exactly as :class:`gs_map_share.receiver.MapStore` does (gaps buffered in its
:class:`~gs_map_share.receiver.PendingDeltas`, replays dropped, anything corrupt rejected whole), so
the server holds each vehicle's map bit-identical to the vehicle's own. One exception: a snapshot
below the vehicle's sequence outside every span of sequences the server has held its map at is
that vehicle restarted on a clock set back, and replaces its map (:class:`Spans`); a container
inside an earlier span is a replay, whichever way its number lies.

**Merge rule (per codec tile).** The global map is a pure function of the vehicles' current maps:
each codec tile (``pos >> tile_bits``) is *owned* by the vehicle holding the most Gaussians in it
(ties: the smaller map id); the global map is, for every tile, the owner's Gaussians in that tile,
with global id ``map_id << 32 | local id``. Keeping one vehicle per tile (instead of several side by
side) keeps a surface seen by two vehicles from being drawn twice (double opacity); the vehicle
that observed a tile most densely is the best single source. Because the rule depends only on the
vehicles' states, which depend only on each vehicle's own stream, any interleaving of the vehicles'
containers gives the same global map bytes.

A container that must not touch the global map — a foreign frame or quantisation, another SH degree,
a map id out of the fleet's range, a local id ≥ 2^32, a corrupt or replayed container — is counted
per vehicle (and the reason kept), never applied.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .container import Header, unpack, unpack_header
from .delta import apply_delta, encode_delta
from .errors import DecodeError
from .quantize import QMap, QuantParams, find_ids
from .receiver import DEFAULT_MAX_GAUSSIANS, DROPPED, DUPLICATE, MAX_PENDING_BYTES, PendingDeltas
from .snapshot import SnapshotCache, decode_snapshot, guarded

log = logging.getLogger(__name__)

LOCAL_ID_BITS = 32  # global id = map_id << 32 | local id (< 2**63: map ids < 2**31)
MAX_LOCAL_ID = (1 << LOCAL_ID_BITS) - 1
MAX_VEHICLE_MAP_ID = (1 << 31) - 1
MAX_STORED_SEQ = (1 << 63) - 1  # SQLite's INTEGER: the fleet store records every sequence (u64 on the wire)
MAX_PENDING = 64  # future deltas buffered per vehicle by default (map_server_node.max_pending)

# outcomes of one container (counted per vehicle); DROPPED: a future delta beyond the pending bound
APPLIED, SNAPSHOT, BUFFERED, REPLAYED, REJECTED = "applied", "snapshot", "buffered", "replayed", "rejected"
COUNTED = (APPLIED, SNAPSHOT, BUFFERED, DROPPED, REPLAYED, REJECTED)  # per vehicle, in its diagnostics
CLOCK_BACK = "clock_back"  # snapshots taken below the vehicle's sequence: its clock came back (counted too)
MAX_SPANS = 64  # earlier spans kept per vehicle; beyond, the nearest two join (refusing more, never less)


def global_ids(map_id: int, local_ids: np.ndarray) -> np.ndarray:
    return (np.uint64(map_id) << np.uint64(LOCAL_ID_BITS)) | local_ids.astype(np.uint64)


def tiles_of(q: QMap, tile_bits: int) -> np.ndarray:
    """(N, 3) int64 codec tile of each row."""
    return q.pos >> tile_bits


_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], np.uint64)


def _tile_hash(tiles: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each tile row (tiles span up to 2**51 a side: three do not pack into one
    integer); equal tiles hash equal, and a shared hash is checked exactly where it matters."""
    t = np.ascontiguousarray(tiles, np.int64).reshape(-1, 3).view(np.uint64)
    h = t[:, 0] * _MIX[0]  # (column by column: a sum over the short axis is several times slower)
    h += t[:, 1] * _MIX[1]
    h += t[:, 2] * _MIX[2]
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    return h


def _tile_index(tiles: np.ndarray, want: np.ndarray) -> np.ndarray:
    """For each row of ``tiles`` (N, 3), its row in ``want`` (K, 3 distinct tiles), or -1. A few
    tiles against a large map: one hash a row and a binary search, candidates checked exactly (a
    sort of the map's tiles made every small vehicle delta cost the whole global map)."""
    out = np.full(len(tiles), -1, np.int64)
    if not len(tiles) or not len(want):
        return out
    hw = _tile_hash(want)
    order = np.argsort(hw)
    hs = hw[order]
    if len(hs) > 1 and bool((hs[1:] == hs[:-1]).any()):  # two wanted tiles share a hash: look exactly
        _, inv = np.unique(np.concatenate([want, tiles]), axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        slot = np.full(len(want) + len(tiles), -1, np.int64)
        slot[inv[: len(want)]] = np.arange(len(want))
        return slot[inv[len(want) :]]
    h = _tile_hash(tiles)
    j = np.minimum(np.searchsorted(hs, h), len(hs) - 1)
    rows = np.flatnonzero(hs[j] == h)
    k = order[j[rows]]
    exact = (tiles[rows] == want[k]).all(axis=1)
    out[rows[exact]] = k[exact]
    return out


def _in_tiles(tiles: np.ndarray, tile_set) -> np.ndarray:
    """Mask of the rows of ``tiles`` (N, 3) whose tile is in ``tile_set`` (iterable of 3-tuples)."""
    return _tile_index(tiles, _tile_array(tile_set)) >= 0


def _tile_array(tile_set) -> np.ndarray:
    return np.array(sorted(tile_set), np.int64).reshape(-1, 3)


def _by_tile(ids: np.ndarray, at: np.ndarray, k: int) -> list[np.ndarray]:
    """``ids`` (ascending) split by their tile's index ``at`` (0 … k − 1), ascending within each."""
    if not k:  # (no tiles, no rows: np.split would still give one empty part)
        return []
    order = np.argsort(at, kind="stable")
    return np.split(ids[order], np.cumsum(np.bincount(at, minlength=k))[:-1])


class TileRows:
    """Which ids of one map lie in each codec tile: the rows of a few tiles without a pass over the
    whole map. It describes the map object it was made or last updated for (``of``): maps are never
    edited in place, so a map set from outside (a restore, a rolled-back flush) is told by identity
    and the record is made again from its rows."""

    def __init__(self, q: QMap, tile_bits: int):
        self.of = q
        self.ids: dict[tuple[int, int, int], np.ndarray] = {}  # tile → its ids, ascending
        if len(q):
            keys, inv = np.unique(tiles_of(q, tile_bits), axis=0, return_inverse=True)
            inv = inv.reshape(-1)
            grouped = q.ids[np.argsort(inv, kind="stable")]  # (stable: ascending within a tile)
            ends = np.cumsum(np.bincount(inv, minlength=len(keys)))[:-1]
            self.ids = {_tile(k): a for k, a in zip(keys, np.split(grouped, ends), strict=True)}

    def ids_in(self, tiles) -> np.ndarray:
        """The ids in these tiles, ascending."""
        parts = [self.ids[t] for t in tiles if t in self.ids]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)

    def set(self, tile, ids: np.ndarray | None) -> None:
        if ids is None or not len(ids):
            self.ids.pop(tile, None)
        else:
            self.ids[tile] = ids


def tile_counts(q: QMap, tile_bits: int) -> dict[tuple[int, int, int], int]:
    if not len(q):
        return {}
    keys, counts = np.unique(tiles_of(q, tile_bits), axis=0, return_counts=True)
    return {_tile(k): int(c) for k, c in zip(keys, counts, strict=True)}


def _tile(k) -> tuple[int, int, int]:
    return (int(k[0]), int(k[1]), int(k[2]))


def relabel(map_id: int, q: QMap) -> QMap:
    """A vehicle's rows with global ids (order kept: local ids ascending → global ascending)."""
    return q.with_ids(global_ids(map_id, q.ids))


def merge_maps(vehicles: dict[int, QMap], tile_bits: int, sh_degree: int) -> QMap:
    """The merge rule computed from scratch (the reference the incremental merge must equal)."""
    owner: dict[tuple, tuple[int, int]] = {}  # tile → (-count, map_id): min is the owner
    for mid, q in vehicles.items():
        for t, c in tile_counts(q, tile_bits).items():
            cand = (-c, mid)
            if t not in owner or cand < owner[t]:
                owner[t] = cand
    parts = [QMap.empty(sh_degree)]
    for mid in sorted(vehicles):
        q = vehicles[mid]
        mine = {t for t, (_, m) in owner.items() if m == mid}
        if mine:
            parts.append(relabel(mid, q.take(_in_tiles(tiles_of(q, tile_bits), mine))))
    return QMap.concat(parts)


def _same(x: np.ndarray, y: np.ndarray) -> bool:
    """The same memory seen the same way: equal without a look (a map made from another by a delta
    shares the arrays the delta did not change, and no map's arrays are written after it is made)."""
    return x is y or (
        x.shape == y.shape
        and x.dtype == y.dtype
        and x.strides == y.strides
        and x.__array_interface__["data"][0] == y.__array_interface__["data"][0]
    )


def changed_tiles(old: QMap, new: QMap, tile_bits: int) -> set[tuple[int, int, int]]:
    """Tiles whose content differs between two states of one vehicle (added, removed, edited rows)."""
    if _same(old.ids, new.ids):  # the same rows (a delta that only updated): compare what it changed
        differs = np.zeros(len(old), bool)
        for f in QMap.FIELDS:
            x, y = getattr(old, f), getattr(new, f)
            if not _same(x, y):
                differs |= (x != y).reshape(len(old), -1).any(axis=1)
        rows = np.flatnonzero(differs)
        both = np.concatenate([old.pos[rows], new.pos[rows]]) >> tile_bits
        return {_tile(k) for k in np.unique(both, axis=0)}
    r = np.searchsorted(new.ids, old.ids)
    ok = r < len(new.ids)
    ok[ok] = new.ids[r[ok]] == old.ids[ok]
    same = np.zeros(len(old), bool)
    if ok.any():
        a, b = old.take(np.flatnonzero(ok)), new.take(r[ok])
        eq = np.ones(len(a), bool)
        for f in QMap.FIELDS:
            x, y = getattr(a, f), getattr(b, f)
            eq &= (x == y).reshape(len(a), -1).all(axis=1)
        same[np.flatnonzero(ok)] = eq
    kept_new = np.zeros(len(new), bool)
    kept_new[r[ok][same[ok]]] = True
    t_old = tiles_of(old, tile_bits)[~same]
    t_new = tiles_of(new, tile_bits)[~kept_new]
    both = np.concatenate([t_old, t_new])
    if not len(both):
        return set()
    return {_tile(k) for k in np.unique(both, axis=0)}


def changed_rows(old: QMap, new: QMap, ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``old``, rows of ``new``) that differ between two states of one vehicle, looked for
    among ``ids`` only (every id a delta touched: the rest are the same rows), or among every id of
    both (None: a snapshot): an id in one state only, or in both with some field changed.
    Ascending, as the ids."""
    if ids is None:  # (old's ids looked up in new's: no union of both sorted)
        r, in_new = find_ids(new.ids, old.ids)
        both = np.flatnonzero(in_new)
        same = np.zeros(len(old), bool)
        if len(both):
            a, b = old.take(both), new.take(r[both])
            eq = np.ones(len(both), bool)
            for f in QMap.FIELDS:
                eq &= (getattr(a, f) == getattr(b, f)).reshape(len(both), -1).all(axis=1)
            same[both[eq]] = True
        kept = np.zeros(len(new), bool)
        kept[r[same]] = True
        return np.flatnonzero(~same), np.flatnonzero(~kept)
    ids = np.unique(ids)
    ro, in_old = find_ids(old.ids, ids)
    rn, in_new = find_ids(new.ids, ids)
    both = np.flatnonzero(in_old & in_new)
    differs = in_old ^ in_new
    if len(both):
        a, b = old.take(ro[both]), new.take(rn[both])
        eq = np.ones(len(both), bool)
        for f in QMap.FIELDS:
            eq &= (getattr(a, f) == getattr(b, f)).reshape(len(both), -1).all(axis=1)
        differs[both[~eq]] = True
    return ro[differs & in_old], rn[differs & in_new]


@dataclass
class Spans:
    """The sequences the server has held one vehicle's map at (docs/fleet.md, "Vehicles"): every
    snapshot taken starts a span at its sequence, every delta applied extends it to its own. The
    current span is [``lo``, the vehicle's sequence]; ``past`` holds the earlier ones, [lo, hi]
    each, ascending. Sequences are the mapper's wall clock at its start, so the spans of two runs
    are far apart whichever clock was wrong: a snapshot inside a span is a replay, any other one
    is newer or a restart on a clock set back, and no clock (the server's included) is trusted."""

    lo: int = 0
    past: list[tuple[int, int]] = field(default_factory=list)

    def in_past(self, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self.past)

    def holds(self, seq: int, held: int) -> bool:
        return self.lo <= seq <= held or self.in_past(seq)

    def start(self, seq: int, held: int | None) -> None:
        """A snapshot at ``seq`` taken; the current span, which ended at ``held``, becomes past."""
        if held is not None:
            self.past = sorted([*self.past, (self.lo, held)])
        self.lo = seq
        while len(self.past) > MAX_SPANS:  # join the two nearest earlier spans not around the current
            gaps = [
                (self.past[i + 1][0] - self.past[i][1], i)
                for i in range(len(self.past) - 1)
                if not self.past[i][1] < seq < self.past[i + 1][0]
            ]
            i = min(gaps)[1]
            self.past[i : i + 2] = [(self.past[i][0], self.past[i + 1][1])]

    def as_json(self) -> dict:
        return {"lo": self.lo, "past": [list(p) for p in self.past]}


@dataclass
class Vehicle:
    """One vehicle as the server knows it: its map (in sequence), counters, liveliness."""

    map_id: int
    seq: int = 0
    state: QMap | None = None
    counts: Counter = field(default_factory=Counter)
    last_error: str = ""
    bytes_in: int = 0
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    alive: bool = True
    # future deltas, buffered as the receiver buffers them (FleetMerge gives each vehicle its bound)
    pending: PendingDeltas = field(default_factory=lambda: PendingDeltas(MAX_PENDING, MAX_PENDING_BYTES))
    tiles: TileRows | None = None  # its state's ids by tile (for the flush), kept by _remerge
    spans: Spans = field(default_factory=Spans)  # the sequences its map was held at (replays)

    def summary(self) -> dict:
        return {
            "map_id": self.map_id,
            "seq": self.seq,
            "gaussians": 0 if self.state is None else len(self.state),
            "alive": self.alive,
            "bytes_in": self.bytes_in,
            "pending": len(self.pending),
            "last_seen_ns": self.last_seen_ns,
            **{k: self.counts.get(k, 0) for k in COUNTED},  # zeros too: every documented field
            **{k: v for k, v in sorted(self.counts.items()) if k not in COUNTED},
            "last_error": self.last_error,
        }


@dataclass
class Accepted:
    """A vehicle container that changed that vehicle's map (in the order applied)."""

    map_id: int
    seq: int
    base_seq: int  # 0: snapshot
    data: bytes


@dataclass
class Ingest:
    """What one :meth:`FleetMerge.offer` did: the vehicle containers applied and, if the global
    map changed, the global delta that brings followers from ``global_base`` to ``global_seq``."""

    status: str
    map_id: int | None
    accepted: list[Accepted] = field(default_factory=list)
    global_delta: bytes | None = None
    global_base: int = 0
    global_seq: int = 0
    touched_tiles: set = field(default_factory=set)


class FleetMerge:
    """Vehicles' streams in, one global map out (incrementally: only the tiles a vehicle's container
    changed are re-decided; equal to :func:`merge_maps` of the vehicles' states at every step)."""

    def __init__(
        self,
        params: QuantParams,
        *,
        global_map_id: int,
        frame_id: str = "map",
        sh_degree: int = 0,
        global_seq: int = 1,
        max_pending: int = MAX_PENDING,
        delta_levels: int = 1,
        snapshot_levels: int = 5,
        max_vehicle_gaussians: int = DEFAULT_MAX_GAUSSIANS,
    ):
        self.params, self.frame_id, self.sh_degree = params, frame_id, sh_degree
        self.global_map_id = int(global_map_id)
        self.max_pending = max_pending
        self.max_vehicle_gaussians = max_vehicle_gaussians  # a vehicle's map: bounded before decoding
        self.delta_levels, self.snapshot_levels = delta_levels, snapshot_levels
        self.vehicles: dict[int, Vehicle] = {}
        self.global_map = QMap.empty(sh_degree)
        self.global_seq = int(global_seq)
        self.tile_vehicles: dict[tuple, dict[int, int]] = {}  # tile → {map_id: count}
        self.owner: dict[tuple, int] = {}
        self.dirty: set[tuple] = set()  # tiles whose owner or owner's content changed since the flush
        self._global_tiles: TileRows | None = None  # the global map's ids by tile
        self.unknown: Counter = Counter()  # containers that could not be attributed to a vehicle
        self.last_error = ""
        self._snapshots = SnapshotCache()
        self.spans_changed: set[int] = set()  # vehicles whose spans changed since the store took them

    # -- checks ------------------------------------------------------------------------------------
    def _check(self, h: Header) -> str | None:
        """Why this vehicle container may not be merged (None: it may)."""
        if h.map_id == self.global_map_id:
            return f"map id {h.map_id} is the global map's own"
        if not 1 <= h.map_id <= MAX_VEHICLE_MAP_ID:
            return f"vehicle map id {h.map_id} outside 1..{MAX_VEHICLE_MAP_ID}"
        if h.frame_id != self.frame_id:
            return f"frame {h.frame_id!r}, the fleet map is in {self.frame_id!r}"
        if h.params != self.params:
            return "quantisation parameters differ from the fleet's"
        if h.sh_degree != self.sh_degree:
            return f"SH degree {h.sh_degree}, the fleet map has {self.sh_degree}"
        if h.gaussians > self.max_vehicle_gaussians:
            return f"declares {h.gaussians} Gaussians, a vehicle's map holds at most {self.max_vehicle_gaussians}"
        if max(h.seq, h.base_seq) > MAX_STORED_SEQ:
            # the header's u64 beyond SQLite's signed INTEGER: the store could not record it
            return f"sequence {max(h.seq, h.base_seq)} beyond the fleet store's {MAX_STORED_SEQ}"
        return None

    def vehicle(self, map_id: int) -> Vehicle:
        if map_id not in self.vehicles:
            self.vehicles[map_id] = Vehicle(
                map_id, pending=PendingDeltas(self.max_pending, MAX_PENDING_BYTES)
            )
        return self.vehicles[map_id]

    # -- ingest ------------------------------------------------------------------------------------
    def offer(self, data: bytes, now_ns: int = 0, flush: bool = True) -> Ingest:
        """One vehicle container. Never raises on bad input: the outcome is counted per vehicle.
        With ``flush`` the global map follows at once (its delta in the result); without, the
        tiles wait for :meth:`flush` (several vehicles' updates in one global delta)."""
        data = bytes(data)
        try:
            h, chunks = unpack(data)
        except DecodeError as exc:
            try:  # the header has its own CRC: a corrupt body is still counted against its vehicle
                h = unpack_header(data)[0]
            except DecodeError:
                self.unknown[REJECTED] += 1
                self.last_error = f"unreadable container: {exc}"
                return Ingest(REJECTED, None)
            if 1 <= h.map_id <= MAX_VEHICLE_MAP_ID and h.map_id != self.global_map_id:
                return self._reject(self.vehicle(h.map_id), str(exc))
            self.unknown[REJECTED] += 1
            self.last_error = f"unreadable container: {exc}"
            return Ingest(REJECTED, None)
        why = self._check(h)
        # no vehicle is made for an id that cannot be one (the global map's own: as for a corrupt one)
        if why is not None and (not 1 <= h.map_id <= MAX_VEHICLE_MAP_ID or h.map_id == self.global_map_id):
            self.unknown[REJECTED] += 1
            self.last_error = why
            return Ingest(REJECTED, None)
        v = self.vehicle(h.map_id)
        v.bytes_in += len(data)
        v.last_seen_ns = now_ns
        v.first_seen_ns = v.first_seen_ns or now_ns
        v.alive = True
        if why is not None:
            return self._reject(v, why)
        old = v.state
        accepted: list[Accepted] = []
        # the ids the deltas of this offer touched (None: a snapshot replaced the map)
        touched_ids: list | None = None if h.is_snapshot else []
        if h.is_snapshot:
            if v.state is not None and v.spans.holds(h.seq, v.seq):
                v.counts[REPLAYED] += 1
                return Ingest(REPLAYED, v.map_id)
            back = v.state is not None and h.seq < v.seq  # (outside every span held: a restart)
            try:
                _, q = decode_snapshot(data, max_gaussians=self.max_vehicle_gaussians)
                self._check_ids(q)
            except DecodeError as exc:
                return self._reject(v, str(exc))
            if back:  # the deltas held for the old numbering can never follow the new one
                v.pending = PendingDeltas(self.max_pending, MAX_PENDING_BYTES)
                v.counts[CLOCK_BACK] += 1
                log.warning(
                    f"vehicle map {v.map_id}: snapshot {h.seq} taken below sequence {v.seq}, outside "
                    "every sequence held (the vehicle restarted on a clock set back)"
                )
            v.spans.start(h.seq, None if v.state is None else v.seq)
            self.spans_changed.add(v.map_id)
            v.state, v.seq = q, h.seq
            v.counts[SNAPSHOT] += 1
            accepted.append(Accepted(v.map_id, h.seq, 0, data))
            status = SNAPSHOT
        elif v.state is not None and (
            h.seq <= v.seq or v.spans.in_past(h.seq) or v.spans.in_past(h.base_seq)
        ):  # (at or below the map, or of a numbering left behind: a restart on a clock set back)
            v.counts[REPLAYED] += 1
            return Ingest(REPLAYED, v.map_id)
        elif v.state is None or h.base_seq != v.seq:
            status, dropped = v.pending.add(h, data)
            status = REPLAYED if status == DUPLICATE else status  # the same bytes buffered again
            v.counts[DROPPED] += dropped
            v.counts[status] += 1
            return Ingest(status, v.map_id)
        else:
            if not self._apply(v, h, chunks, data, accepted, touched_ids):
                return Ingest(REJECTED, v.map_id)
            status = APPLIED
        self._drain(v, accepted, touched_ids)
        return self._remerge(status, v, old, accepted, flush, touched_ids)

    def _check_ids(self, q: QMap) -> None:
        if len(q) and int(q.ids[-1]) > MAX_LOCAL_ID:
            raise DecodeError(f"local Gaussian id {int(q.ids[-1])} ≥ 2^{LOCAL_ID_BITS} (fleet id space)")

    def _apply(
        self, v: Vehicle, h: Header, chunks, data: bytes, accepted: list, touched: list | None
    ) -> bool:
        state = v.state
        assert state is not None  # deltas are applied only after the vehicle's first snapshot
        try:
            new = guarded(
                lambda: apply_delta(state, h, chunks, len(data), self.max_vehicle_gaussians, touched)
            )
            self._check_ids(new)
        except DecodeError as exc:
            self._reject(v, str(exc))
            return False
        v.state, v.seq = new, h.seq
        v.counts[APPLIED] += 1
        accepted.append(Accepted(v.map_id, h.seq, h.base_seq, data))
        return True

    def _drain(self, v: Vehicle, accepted: list, touched: list | None) -> None:
        # in arrival order: a twin that fails gives the next its chance (as the receiver)
        while candidates := v.pending.take(v.seq):
            if not any(
                self._apply(v, p.header, unpack(p.data)[1], p.data, accepted, touched) for p in candidates
            ):
                return

    def _reject(self, v: Vehicle, why: str) -> Ingest:
        v.counts[REJECTED] += 1
        v.last_error = why
        self.last_error = f"vehicle map {v.map_id}: {why}"
        # debug only, as the receiver's: the caller counts and says it (map_server_node: one line per
        # reason); a warning here doubled that line and added one per corrupt container (up to 5)
        log.debug(f"vehicle map {v.map_id}: container rejected ({why})")
        return Ingest(REJECTED, v.map_id)

    # -- merge -------------------------------------------------------------------------------------
    def _remerge(
        self, status: str, v: Vehicle, old: QMap | None, accepted: list, flush: bool, ids: list | None
    ) -> Ingest:
        """Re-decide the owners of the tiles this vehicle's change touched; the global map follows
        at :meth:`flush` (now, or batched by the caller). ``ids``: those the applied deltas touched
        (None: a snapshot replaced the map)."""
        tb = self.params.tile_bits
        state = v.state
        assert state is not None  # set by the container just applied
        rec = v.tiles if v.tiles is not None and v.tiles.of is old else None
        before = old if old is not None else QMap.empty(self.sh_degree)
        # the changed rows: among the ids the deltas touched (the rest are the same rows: cost follows
        # the change, not the vehicle's map), or among every id of both maps (a snapshot)
        ro, rn = changed_rows(
            before, state, None if ids is None else np.concatenate([np.zeros(0, np.uint64), *ids])
        )
        t_old, t_new = before.pos[ro] >> tb, state.pos[rn] >> tb
        touched = _tile_array({_tile(k) for k in np.concatenate([t_old, t_new])})
        if rec is None:  # (a first map, or one set from outside: a restore; made again once, whole)
            rec = TileRows(state, tb)
        else:  # each touched tile's ids from the record, less those gone from it, with those come
            gone = _by_tile(before.ids[ro], _tile_index(t_old, touched), len(touched))
            came = _by_tile(state.ids[rn], _tile_index(t_new, touched), len(touched))
            for row, g, c in zip(touched, gone, came, strict=True):
                t = _tile(row)
                was = rec.ids.get(t, np.zeros(0, np.uint64))
                at, hit = find_ids(was, g)
                kept = np.delete(was, at[hit])
                rec.set(t, np.insert(kept, np.searchsorted(kept, c), c))
        rec.of = state
        counts = np.array([len(rec.ids.get(_tile(row), ())) for row in touched], np.int64)
        v.tiles = rec
        for row, c in zip(touched, counts, strict=True):
            t = _tile(row)
            per = self.tile_vehicles.setdefault(t, {})
            if c:
                per[v.map_id] = int(c)
            else:
                per.pop(v.map_id, None)
            prev = self.owner.get(t)
            now = min(per, key=lambda m: (-per[m], m)) if per else None
            if now is None:
                self.owner.pop(t, None)
                self.tile_vehicles.pop(t, None)
            else:
                self.owner[t] = now
            if prev == v.map_id or now == v.map_id or prev != now:
                self.dirty.add(t)
        out = Ingest(status, v.map_id, accepted, global_seq=self.global_seq)
        if flush:
            f = self.flush()
            if f is not None:
                out.global_delta, out.global_base, out.global_seq, out.touched_tiles = f
        return out

    @property
    def pending_tiles(self) -> int:
        return len(self.dirty)

    def flush(self) -> tuple[bytes, int, int, set] | None:
        """Bring the global map up to the vehicles' states in the dirty tiles: one global delta
        (data, base_seq, seq, tiles changed), or None when nothing changed."""
        changed, self.dirty = self.dirty, set()
        if not changed:
            return None
        g = self.global_map
        grec = self._tiles(g, self._global_tiles)
        leaving = grec.ids_in(changed)
        by_owner: dict[int, set] = {}
        for t in changed:
            if t in self.owner:
                by_owner.setdefault(self.owner[t], set()).add(t)
        parts = [QMap.empty(self.sh_degree)]
        now: dict[tuple, np.ndarray] = {}  # each changed tile's global ids after this flush
        for mid, ts in sorted(by_owner.items()):
            v = self.vehicles[mid]
            q = v.state
            assert q is not None  # an owner holds Gaussians in its tiles
            v.tiles = rec = self._tiles(q, v.tiles)
            parts.append(relabel(mid, q.take(find_ids(q.ids, rec.ids_in(ts))[0])))
            now.update({t: global_ids(mid, rec.ids[t]) for t in ts})
        coming = QMap.concat(parts)  # the changed tiles' rows now (few: not the whole map)
        new = g.with_rows(coming, leaving[~find_ids(coming.ids, leaving)[1]])
        self._global_tiles = grec
        if new is g:
            return None
        arriving = coming.ids[~find_ids(leaving, coming.ids)[1]]  # ids not in the changed tiles before
        touched_ids = np.sort(np.concatenate([leaving, arriving]))  # (the union: both sets of unique ids)
        base = self.global_seq
        data, _ = encode_delta(
            g,
            new,
            self.params,
            map_id=self.global_map_id,
            seq=base + 1,
            base_seq=base,
            frame_id=self.frame_id,
            n_levels=self.delta_levels,
            touched=touched_ids,
        )
        self.global_map, self.global_seq = new, base + 1
        # a row of another tile taking an id of the changed tiles' (only after a rolled-back flush
        # left the global map behind its vehicles) leaves its old tile's record
        r, elsewhere = find_ids(g.ids, arriving)
        for row in r[elsewhere]:
            t = _tile(g.pos[row] >> self.params.tile_bits)
            grec.set(t, grec.ids[t][grec.ids[t] != g.ids[row]])
        for t in changed:
            grec.set(t, now.get(t))
        grec.of = new
        return data, base, base + 1, changed

    def _tiles(self, q: QMap, rec: TileRows | None) -> TileRows:
        """``rec`` if it describes ``q``, else a record made from ``q``'s rows."""
        return rec if rec is not None and rec.of is q else TileRows(q, self.params.tile_bits)

    # -- restore / publish -------------------------------------------------------------------------
    def restore_vehicle(self, map_id: int, seq: int, state: QMap, spans: Spans | None = None) -> None:
        """Set a vehicle's state from the store (no global delta: the global map is restored too).
        Spans that do not hold ``seq`` in the current one (none stored: a store of a server before
        them) give way to one span from 0: every older container is a replay, as for a receiver."""
        v = self.vehicle(map_id)
        ok = spans is not None and spans.lo <= seq and not spans.in_past(seq)
        v.spans = spans if spans is not None and ok else Spans()
        if v.state is not None:  # restored again: its counts are the new state's, not added to the old
            for t in tile_counts(v.state, self.params.tile_bits):
                self.tile_vehicles.get(t, {}).pop(map_id, None)
        v.state, v.seq, v.alive = state, seq, False  # alive again when it is heard from
        for t, c in tile_counts(state, self.params.tile_bits).items():
            self.tile_vehicles.setdefault(t, {})[map_id] = c
        for t, per in list(self.tile_vehicles.items()):
            if per:
                self.owner[t] = min(per, key=lambda m: (-per[m], m))
            else:
                self.owner.pop(t, None)
                del self.tile_vehicles[t]

    def reference_merge(self) -> QMap:
        return merge_maps(
            {m: v.state for m, v in self.vehicles.items() if v.state is not None},
            self.params.tile_bits,
            self.sh_degree,
        )

    def snapshot(self) -> bytes:
        """The global map as a snapshot container (encoded again only when the map changed)."""
        return self._snapshots.encode(
            self.global_map,
            self.params,
            map_id=self.global_map_id,
            seq=self.global_seq,
            n_levels=self.snapshot_levels,
            frame_id=self.frame_id,
        )

    def diff_to(self, new: QMap, seq: int | None = None) -> bytes:
        """Global delta from the current global map to ``new`` at sequence ``seq`` (default: the
        next); used after a restart, whose recomputed merge may differ from the stored map and whose
        sequence moves on to the wall clock."""
        base = self.global_seq
        seq = base + 1 if seq is None else int(seq)
        data, _ = encode_delta(
            self.global_map,
            new,
            self.params,
            map_id=self.global_map_id,
            seq=seq,
            base_seq=base,
            frame_id=self.frame_id,
            n_levels=self.delta_levels,
        )
        self.global_map, self.global_seq = new, seq
        return data


def warm_up(
    params: QuantParams, *, frame_id: str = "map", sh_degree: int = 0, snapshot_levels: int = 5
) -> None:
    """The codec's compiled loops (:mod:`.kernels`) loaded or compiled now: a small vehicle map
    (random Gaussians in a few tiles, some faint) is encoded as a snapshot (of ``snapshot_levels``,
    as the server's global snapshots) and a delta, merged by a throwaway :class:`FleetMerge`
    (decoding both). (No global snapshot is encoded: it runs the vehicle snapshot's loops, none
    more; measured in session 39: 0 loops loaded by it, 8-30 ms of start-up.) A server
    that says it is ready after this pays no compilation on its first vehicle container (cold,
    that is seconds: numba compiles each loop the first time a process calls it, or loads it from
    its cache). Nothing without numba, or with the loops switched off."""
    from gs_mapping.gaussians import GaussianMap

    from .delta import MapSender
    from .jit import kernels

    if kernels() is None:
        return
    rng = np.random.default_rng(38)
    # (over tails.TAIL_MIN in one tile, so the octree's tails are coded too; a few in its neighbours)
    n = 2400
    q = rng.normal(size=(n, 4)).astype(np.float32)
    means = rng.uniform(0.05, 1.95, (n, 3)) * [1, 1, 0.5]
    means[: n // 8] += rng.integers(-1, 2, (n // 8, 3)) * [2.0, 2.0, 0.0]
    gmap = GaussianMap(
        sh_degree=sh_degree,
        means=means.astype(np.float32),
        quats=q / np.linalg.norm(q, axis=1, keepdims=True),
        log_scales=rng.uniform(-4.5, -1.5, (n, 3)).astype(np.float32),
        opacity_logits=rng.choice([-6.0, -1.0, 3.0], n).astype(np.float32)
        + rng.normal(0, 0.5, n).astype(np.float32),
        sh=rng.normal(0, 0.2, (n, (sh_degree + 1) ** 2, 3)).astype(np.float32),
    )
    sender = MapSender.from_map(
        gmap.subset(np.arange(n * 2 // 3)), params, map_id=1, frame_id=frame_id, n_levels=snapshot_levels
    )
    containers = [sender.snapshot(), sender.update(gmap)[0]]
    merge = FleetMerge(
        params, global_map_id=2, frame_id=frame_id, sh_degree=sh_degree, snapshot_levels=snapshot_levels
    )
    for data in containers:
        merge.offer(data)
