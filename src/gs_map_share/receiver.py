"""The receiver's map store: applies snapshots and deltas strictly in sequence.

- A delta applies only to the state it was made from (``base_seq == seq``). One from the future
  (a gap: something was lost or is late) is buffered, bounded, until the missing ones arrive or a
  snapshot makes it usable or obsolete; one from the past is a duplicate and is dropped.
- A snapshot newer than the state replaces it (late joiners and recovery after losses).
- Anything that fails its CRC, decoding, or the post-apply checksum is rejected whole; the stored
  map is untouched (deltas are applied to a copy that replaces the state only on success).
- Containers for another map id are rejected once the store is bound to a map.
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

APPLIED, SNAPSHOT, BUFFERED, DUPLICATE, STALE, REJECTED, OTHER_MAP = (
    "applied",
    "snapshot",
    "buffered",
    "duplicate",
    "stale",
    "rejected",
    "other_map",
)


@dataclass
class _Pending:
    header: Header
    data: bytes


@dataclass
class MapStore:
    map_id: int | None = None  # bound on the first good snapshot when None
    max_pending: int = 256  # buffered future deltas (oldest dropped beyond this)
    state: QMap | None = None
    params: QuantParams | None = None
    header: Header | None = None  # of the container that produced the state
    seq: int = 0
    stats: Counter = field(default_factory=Counter)
    last_error: str = ""

    def __post_init__(self) -> None:
        self._pending: dict[int, _Pending] = {}  # base_seq → delta
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
        if self.map_id is not None and h.map_id != self.map_id:
            self.stats[OTHER_MAP] += 1
            self.last_error = f"container for map {h.map_id}, this store holds map {self.map_id}"
            return OTHER_MAP
        if h.is_snapshot:
            if self.state is not None and h.seq <= self.seq:
                self.stats[DUPLICATE if h.seq == self.seq else STALE] += 1
                return DUPLICATE if h.seq == self.seq else STALE
            try:
                _, q = decode_snapshot(data)
            except DecodeError as exc:
                return self._reject(exc)
            self._set(q, h)
            self.stats[SNAPSHOT] += 1
            self._drain()
            return SNAPSHOT
        if self.state is not None and h.seq <= self.seq:
            self.stats[DUPLICATE] += 1
            return DUPLICATE
        if self.state is None or h.base_seq != self.seq:
            if h.base_seq in self._pending and self._pending[h.base_seq].header.seq == h.seq:
                self.stats[DUPLICATE] += 1
                return DUPLICATE
            self._pending[h.base_seq] = _Pending(h, data)
            while len(self._pending) > self.max_pending:
                self._pending.pop(min(self._pending))
            self.stats[BUFFERED] += 1
            return BUFFERED
        status = self._apply(h, chunks, len(data))
        if status == APPLIED:
            self._drain()
        return status

    def _apply(self, h: Header, chunks, nbytes: int) -> str:
        if self.params is not None and h.params != self.params:
            return self._reject(DecodeError(f"delta {h.seq} uses other quantisation parameters"))
        try:
            new = guarded(lambda: apply_delta(self.state, h, chunks, nbytes))
        except DecodeError as exc:
            return self._reject(exc)
        self._set(new, h)
        self.stats[APPLIED] += 1
        return APPLIED

    def _drain(self) -> None:
        for base in [b for b in self._pending if b < self.seq]:
            del self._pending[base]
        while self.seq in self._pending:
            p = self._pending.pop(self.seq)
            h, chunks = unpack(p.data)
            if self._apply(h, chunks, len(p.data)) != APPLIED:
                break

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
        return len(self._pending)

    def gaussian_map(self) -> GaussianMap:
        """The rebuilt map (dequantised; cached until the state changes)."""
        if self.state is None:
            raise DecodeError("no snapshot received yet")
        if self._map_cache is None:
            self._map_cache = dequantize(self.state, self.params, self.header.tile_size)
        return self._map_cache
