"""The receiver's map store: applies snapshots and deltas strictly in sequence.

The in-order rules live here once (:func:`delta_standing`, :func:`apply_next`); ``gs-mapping apply``
uses them too.

- A delta applies only to the state it was made from (``base_seq == seq``), on its lattice and in its frame. One from the future
  (a gap: something was lost or is late) is buffered until the missing ones arrive or a snapshot
  makes it usable or obsolete; one from the past is a duplicate and is dropped.
- A snapshot newer than the state replaces it (late joiners and recovery after losses).
- Anything that fails its CRC, decoding, or the post-apply checksum is rejected whole; the stored
  map is untouched (deltas are applied to a copy that replaces the state only on success).
- A delta that fails its checks never marks its sequence as seen: a corrupt twin (valid CRCs, bad
  content) arriving first does not make the genuine one a "duplicate". Buffered candidates for the
  same place are kept side by side (identical bytes once) and tried in arrival order.
- Pending memory is bounded in bytes and in count; beyond either, the farthest-future deltas go
  first (the nearest ones are what fills a gap). :class:`PendingDeltas` keeps these rules for the
  fleet server's vehicles too.
- Containers for another map id are rejected once the store is bound to a map, deltas buffered
  before the snapshot that bound it included.
- A container whose map would hold more than ``max_gaussians`` is rejected before it is decoded,
  and nothing it decodes may exceed that (memory is bounded by the store, not by the sender).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from gs_mapping.gaussians import GaussianMap

from .container import Header, unpack
from .delta import apply_delta
from .errors import DecodeError
from .quantize import QMap, QuantParams, dequantize
from .snapshot import decode_snapshot, guarded

log = logging.getLogger(__name__)

APPLIED, SNAPSHOT, BUFFERED, DUPLICATE, STALE, REJECTED, OTHER_MAP, NEXT, DROPPED = (
    "applied",
    "snapshot",
    "buffered",
    "duplicate",
    "stale",
    "rejected",
    "other_map",
    "next",
    "dropped",  # not buffered: beyond the pending bounds
)


def delta_standing(h: Header, map_id: int | None, seq: int | None) -> str:
    """Where delta ``h`` stands against a map ``map_id`` at ``seq`` (None: no state yet).

    OTHER_MAP (another map), DUPLICATE (the map has it already), BUFFERED (from the future: it
    needs deltas not applied yet), or NEXT (it applies now)."""
    if map_id is not None and h.map_id != map_id:
        return OTHER_MAP
    if seq is None:
        return BUFFERED
    if h.seq <= seq:
        return DUPLICATE
    return NEXT if h.base_seq == seq else BUFFERED


def apply_next(
    state: QMap, base: Header, h: Header, chunks, nbytes: int, max_gaussians: int | None = None
) -> QMap:
    """The map after the NEXT delta ``h`` to ``state`` (made by the container ``base``);
    :class:`DecodeError` (state untouched) if it fails. A delta must keep its base's lattice and
    frame: one in another frame would move the map's Gaussians into it unseen."""
    if h.params != base.params:
        raise DecodeError(f"delta {h.seq} uses other quantisation parameters than the map")
    if h.frame_id != base.frame_id:
        raise DecodeError(f"delta {h.seq} is in frame {h.frame_id!r}, the map in {base.frame_id!r}")
    return guarded(lambda: apply_delta(state, h, chunks, nbytes, max_gaussians))


# the most Gaussians a store holds unless told otherwise: a container may decode to 8 Gaussians a
# byte (a dense, uniform map compresses that far), so its size alone lets a 1 MB message claim 8M
# Gaussians (~2 GB at SH degree 3); 4M (~1 GB at SH 3, 0.25 GB at SH 0) is twenty times the
# mapper's default map (config: max_gaussians 200000)
DEFAULT_MAX_GAUSSIANS = 1 << 22
MAX_PENDING_BYTES = 64 << 20  # future deltas buffered, bytes in all (a receiver's, each fleet vehicle's)


@dataclass
class _Pending:
    header: Header
    data: bytes


class PendingDeltas:
    """Deltas from the future, waiting for their base (the receiver's and each fleet vehicle's).

    Candidates for the same base are kept side by side in arrival order (identical bytes once): a
    corrupt twin with valid CRCs must not push out the genuine one. Beyond ``max_count`` deltas or
    ``max_bytes`` bytes, the latest arrival at the farthest base goes first: the nearest deltas are
    the ones that fill a gap."""

    def __init__(self, max_count: int, max_bytes: int | None = None) -> None:
        self.max_count, self.max_bytes = max_count, max_bytes
        self._at: dict[int, list[_Pending]] = {}  # base_seq → candidates, in arrival order
        self.count = 0
        self.nbytes = 0

    def __len__(self) -> int:
        return self.count

    def add(self, h: Header, data: bytes) -> tuple[str, int]:
        """Buffer delta ``h``: (BUFFERED, DUPLICATE for the same bytes again, or DROPPED when it
        is itself beyond the bounds; the number of other deltas dropped to make room)."""
        same_place = self._at.setdefault(h.base_seq, [])
        if any(p.data == data for p in same_place):
            return DUPLICATE, 0
        same_place.append(_Pending(h, data))
        self.count += 1
        self.nbytes += len(data)
        dropped, dropped_self = 0, False
        while self.count > self.max_count or (self.max_bytes is not None and self.nbytes > self.max_bytes):
            far = max(self._at)
            victim = self._at[far].pop()
            if not self._at[far]:
                del self._at[far]
            self.count -= 1
            self.nbytes -= len(victim.data)
            if victim.data is data:
                dropped_self = True
            else:
                dropped += 1
        return (DROPPED if dropped_self else BUFFERED), dropped

    def take(self, seq: int) -> list[_Pending]:
        """The candidates that apply to state ``seq`` (removed), in arrival order; those for older
        states are dropped as obsolete."""
        for base in [b for b in self._at if b < seq]:
            self._forget(self._at.pop(base))
        out = self._at.pop(seq, [])
        self._forget(out)
        return out

    def _forget(self, gone: list[_Pending]) -> None:
        self.count -= len(gone)
        self.nbytes -= sum(len(p.data) for p in gone)


@dataclass
class MapStore:
    map_id: int | None = None  # bound on the first good snapshot when None
    max_pending: int = 256  # buffered future deltas (farthest-future dropped beyond this)
    max_pending_bytes: int = MAX_PENDING_BYTES  # their bytes in all (same rule)
    max_gaussians: int = DEFAULT_MAX_GAUSSIANS  # a container whose map would be larger is rejected
    state: QMap | None = None
    params: QuantParams | None = None
    header: Header | None = None  # of the container that produced the state
    seq: int = 0
    stats: Counter = field(default_factory=Counter)
    last_error: str = ""

    def __post_init__(self) -> None:
        self._pending = PendingDeltas(self.max_pending, self.max_pending_bytes)
        self._map_cache: GaussianMap | None = None

    @property
    def ready(self) -> bool:
        return self.state is not None

    def receive(self, data) -> str:
        """Feed one container; returns what happened (see module constants). Never raises on bad
        input: rejections are counted in ``stats`` and described in ``last_error``."""
        data = bytes(data)
        try:
            h, chunks = unpack(data)
        except DecodeError as exc:
            return self._reject(exc)
        if h.is_snapshot and self.map_id is not None and h.map_id != self.map_id:
            self.stats[OTHER_MAP] += 1
            self.last_error = f"container for map {h.map_id}, this store holds map {self.map_id}"
            return OTHER_MAP
        if h.gaussians > self.max_gaussians:  # before any decoding (a delta's: before buffering)
            return self._reject(
                DecodeError(
                    f"container declares {h.gaussians} Gaussians, this store holds at most {self.max_gaussians}"
                )
            )
        if h.is_snapshot:
            if self.state is not None and h.seq <= self.seq:
                self.stats[DUPLICATE if h.seq == self.seq else STALE] += 1
                return DUPLICATE if h.seq == self.seq else STALE
            try:
                _, q = decode_snapshot(data, max_gaussians=self.max_gaussians)
            except DecodeError as exc:
                return self._reject(exc)
            self._set(q, h)
            self.stats[SNAPSHOT] += 1
            self._drain()
            return SNAPSHOT
        standing = delta_standing(h, self.map_id, self.seq if self.state is not None else None)
        if standing == OTHER_MAP:
            self.stats[OTHER_MAP] += 1
            self.last_error = f"container for map {h.map_id}, this store holds map {self.map_id}"
            return OTHER_MAP
        if standing == DUPLICATE:
            self.stats[DUPLICATE] += 1
            return DUPLICATE
        if standing == BUFFERED:
            status = self._buffer(h, data)
            self.stats[status] += 1
            return status
        status = self._apply(h, chunks, len(data))
        if status == APPLIED:
            self._drain()
        return status

    def _buffer(self, h: Header, data: bytes) -> str:
        status, dropped = self._pending.add(h, data)
        self.stats[DROPPED] += dropped
        if status == DROPPED:
            self.last_error = (
                f"delta {h.seq} not buffered: pending deltas are at their bound "
                f"({self.max_pending} deltas, {self.max_pending_bytes} bytes)"
            )
        return status

    def _apply(self, h: Header, chunks, nbytes: int) -> str:
        if self.params is None:  # a delta before any snapshot is never applied (it is buffered)
            return self._reject(DecodeError(f"delta {h.seq} before any snapshot"))
        if h.map_id != self.map_id:  # buffered before the first snapshot bound the store
            self.stats[OTHER_MAP] += 1
            self.last_error = f"container for map {h.map_id}, this store holds map {self.map_id}"
            return OTHER_MAP
        assert self.state is not None and self.header is not None  # a snapshot set them together
        try:
            new = apply_next(self.state, self.header, h, chunks, nbytes, self.max_gaussians)
        except DecodeError as exc:
            return self._reject(exc)
        self._set(new, h)
        self.stats[APPLIED] += 1
        return APPLIED

    def _drain(self) -> None:
        # in arrival order; one that fails (or is another map's) and the next twin gets its chance
        while candidates := self._pending.take(self.seq):
            if not any(self._apply(p.header, unpack(p.data)[1], len(p.data)) == APPLIED for p in candidates):
                return

    def _set(self, q: QMap, h: Header) -> None:
        self.state, self.header, self.params, self.seq = q, h, h.params, h.seq
        if self.map_id is None:
            self.map_id = h.map_id
        self._map_cache = None

    def _reject(self, exc: DecodeError) -> str:
        self.stats[REJECTED] += 1
        self.last_error = str(exc)
        log.debug(f"rejected container: {exc}")
        return REJECTED

    @property
    def pending(self) -> int:
        """Buffered future deltas (all candidates)."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._pending.nbytes

    def gaussian_map(self) -> GaussianMap:
        """The rebuilt map (dequantised; cached until the state changes)."""
        if self.state is None:
            raise DecodeError("no snapshot received yet")
        if self._map_cache is None:
            assert self.params is not None and self.header is not None  # set with the state
            self._map_cache = dequantize(self.state, self.params, self.header.tile_size)
        return self._map_cache
