"""The receiver's map store: applies snapshots and deltas strictly in sequence.

The in-order rules live here once (:func:`delta_standing`, :func:`apply_next`); ``gs-mapping apply``
uses them too.

- A delta applies only to the state it was made from (``base_seq == seq``). One from the future
  (a gap: something was lost or is late) is buffered until the missing ones arrive or a snapshot
  makes it usable or obsolete; one from the past is a duplicate and is dropped.
- A snapshot newer than the state replaces it (late joiners and recovery after losses).
- Anything that fails its CRC, decoding, or the post-apply checksum is rejected whole; the stored
  map is untouched (deltas are applied to a copy that replaces the state only on success).
- A delta that fails its checks never marks its sequence as seen: a corrupt twin (valid CRCs, bad
  content) arriving first does not make the genuine one a "duplicate". Buffered candidates for the
  same place are kept side by side (identical bytes once) and tried in arrival order.
- Pending memory is bounded in bytes and in count; beyond either, the farthest-future deltas go
  first (the nearest ones are what fills a gap).
- Containers for another map id are rejected once the store is bound to a map.
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
    state: QMap, params: QuantParams, h: Header, chunks, nbytes: int, max_gaussians: int | None = None
) -> QMap:
    """The map after the NEXT delta ``h``; :class:`DecodeError` (state untouched) if it fails."""
    if h.params != params:
        raise DecodeError(f"delta {h.seq} uses other quantisation parameters than the map")
    return guarded(lambda: apply_delta(state, h, chunks, nbytes, max_gaussians))


# the most Gaussians a store holds unless told otherwise: a container may decode to 8 Gaussians a
# byte (a dense, uniform map compresses that far), so its size alone lets a 1 MB message claim 8M
# Gaussians (~2 GB at SH degree 3); 4M (~1 GB at SH 3, 0.25 GB at SH 0) is twenty times the
# mapper's default map (config: max_gaussians 200000)
DEFAULT_MAX_GAUSSIANS = 1 << 22


@dataclass
class _Pending:
    header: Header
    data: bytes


@dataclass
class MapStore:
    map_id: int | None = None  # bound on the first good snapshot when None
    max_pending: int = 256  # buffered future deltas (farthest-future dropped beyond this)
    max_pending_bytes: int = 64 << 20  # their bytes in all (same rule)
    max_gaussians: int = DEFAULT_MAX_GAUSSIANS  # a container whose map would be larger is rejected
    state: QMap | None = None
    params: QuantParams | None = None
    header: Header | None = None  # of the container that produced the state
    seq: int = 0
    stats: Counter = field(default_factory=Counter)
    last_error: str = ""

    def __post_init__(self) -> None:
        self._pending: dict[int, list[_Pending]] = {}  # base_seq → candidates, in arrival order
        self._pending_bytes = 0
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
        same_place = self._pending.setdefault(h.base_seq, [])
        if any(p.data == data for p in same_place):
            return DUPLICATE  # the very same bytes again (a retransmission)
        same_place.append(_Pending(h, data))
        self._pending_bytes += len(data)
        dropped_self = False
        while self._pending and (
            self.pending > self.max_pending or self._pending_bytes > self.max_pending_bytes
        ):
            far = max(self._pending)
            victim = self._pending[far].pop()  # the latest arrival at the farthest place
            if not self._pending[far]:
                del self._pending[far]
            self._pending_bytes -= len(victim.data)
            self.stats[DROPPED] += 1
            dropped_self = dropped_self or victim.data is data
        if not same_place and h.base_seq in self._pending:
            del self._pending[h.base_seq]
        if dropped_self:
            self.stats[DROPPED] -= 1  # counted by the caller
            self.last_error = (
                f"delta {h.seq} not buffered: pending deltas are at their bound "
                f"({self.max_pending} deltas, {self.max_pending_bytes} bytes)"
            )
            return DROPPED
        return BUFFERED

    def _apply(self, h: Header, chunks, nbytes: int) -> str:
        if self.params is None:  # a delta before any snapshot is never applied (it is buffered)
            return self._reject(DecodeError(f"delta {h.seq} before any snapshot"))
        assert self.state is not None  # a snapshot set params and state together
        try:
            new = apply_next(self.state, self.params, h, chunks, nbytes, self.max_gaussians)
        except DecodeError as exc:
            return self._reject(exc)
        self._set(new, h)
        self.stats[APPLIED] += 1
        return APPLIED

    def _drain(self) -> None:
        for base in [b for b in self._pending if b < self.seq]:
            self._pending_bytes -= sum(len(p.data) for p in self._pending.pop(base))
        while self.seq in self._pending:
            candidates = self._pending.pop(self.seq)
            self._pending_bytes -= sum(len(p.data) for p in candidates)
            # in arrival order; one that fails is rejected and the next twin gets its chance
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
        return sum(len(c) for c in self._pending.values())

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def gaussian_map(self) -> GaussianMap:
        """The rebuilt map (dequantised; cached until the state changes)."""
        if self.state is None:
            raise DecodeError("no snapshot received yet")
        if self._map_cache is None:
            assert self.params is not None and self.header is not None  # set with the state
            self._map_cache = dequantize(self.state, self.params, self.header.tile_size)
        return self._map_cache
