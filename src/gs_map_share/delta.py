"""Deltas: what changed between two quantised maps, by id (GS-Share: send only what changed).

A delta container (``base_seq`` = the sequence number it applies to) carries, in this order of
application: CLEAR_TILES (codec tiles whose Gaussians were all removed), REMOVED ids, UPDATED ids with
per-field residuals against the previous quantised values, and the added Gaussians as a section
(TILES + LEVEL chunks, usually one level). The header holds the resulting Gaussian count and state
checksum, so a receiver verifies it ends bit-identical to the sender, and rejects the delta whole
(its map untouched) otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from gs_mapping.gaussians import ChangeSet, GaussianMap

from .bitio import Reader, Writer
from .container import CLEAR_TILES, LEVEL, REMOVED, TILES, UPDATED, Chunk, Header, unpack
from .entropy import decode_stream
from .errors import DecodeError, EncodeError
from .quantize import QMap, QuantParams, find_ids, to_qmap
from .section import (
    _get_pred,
    _put,
    _put_pred,
    check_lattice,
    decode_section,
    encode_section,
    max_gaussians_for,
)
from .snapshot import DEFAULT_LEVELS, SnapshotCache, check_ids, finish, guarded

# field bits of an update mask
F_POS, F_OP, F_SCALE, F_ROT, F_DC, F_REST, F_LEVEL = 1, 2, 4, 8, 16, 32, 64


def _diff_mask(a: QMap, b: QMap) -> np.ndarray:
    """Per-row field-change mask between two QMaps with identical ids in identical order."""
    n = len(a)
    m = np.zeros(n, np.int64)

    def ne(x, y):
        return (x != y).reshape(n, -1).any(axis=1)

    m |= ne(a.pos, b.pos) * F_POS
    m |= ne(a.op, b.op) * F_OP
    m |= ne(a.scale, b.scale) * F_SCALE
    m |= (ne(a.rot, b.rot) | (a.rot_idx != b.rot_idx)) * F_ROT
    m |= ne(a.dc, b.dc) * F_DC
    if a.rest.shape[1]:
        m |= ne(a.rest, b.rest) * F_REST
    m |= (a.level != b.level) * F_LEVEL
    return m


def _put_ids(w: Writer, ids: np.ndarray) -> None:
    w.varint(len(ids))
    if len(ids):
        w.varint(int(ids[0]))
        _put(w, np.diff(ids.astype(np.int64)) - 1, signed=False)


def _get_ids(r: Reader, cap: int) -> np.ndarray:
    n = r.varint(cap)
    if n == 0:
        return np.zeros(0, np.uint64)
    first = r.varint((1 << 63) - 1)
    gaps = decode_stream(r, n - 1, signed=False)
    # any ids below 2**63 the encoder writes (vehicles' ids are 2**32 apart): summed in uint64, each
    # step at most 2**63, so a wrap would show as a step back
    # (int(): numpy before 1.25 compares an int64 with a Python int beyond 2**53 through float64)
    if n > 1 and (int(gaps.min()) < 0 or int(gaps.max()) >= (1 << 63) - 1):
        raise r.fail("id gap too large")
    at = np.cumsum(gaps.astype(np.uint64) + np.uint64(1), dtype=np.uint64)
    if n > 1 and (bool(np.any(at[1:] < at[:-1])) or int(at[-1]) > (1 << 63) - 1 - first):
        raise r.fail("id outside 0..2**63")
    return np.concatenate([np.zeros(1, np.uint64), at]) + np.uint64(first)


def _row_keys(q: QMap) -> np.ndarray:
    """Each row's quantised fields (not its id) as one opaque value: equal keys, equal Gaussians."""
    n = len(q)
    a = np.concatenate(
        [np.asarray(getattr(q, f)).reshape(n, -1).astype(np.int64) for f in QMap.FIELDS],
        axis=1,
    )
    return np.ascontiguousarray(a).view(np.dtype((np.void, 8 * a.shape[1]))).ravel()


def _ranks(groups: np.ndarray) -> np.ndarray:
    """Each row's place among the earlier rows of its group (0 for the first)."""
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    run = np.arange(len(g)) - np.repeat(start, np.diff(np.r_[start, len(g)]))
    out = np.empty(len(g), np.int64)
    out[order] = run
    return out


def match_ids(old: QMap, new: QMap) -> QMap:
    """``new`` (a scene without ids, quantised, rows in any order) numbered against ``old`` (the
    map a receiver holds): a Gaussian whose quantised fields equal one of ``old``'s gets that
    one's id (equal duplicates pair up in order), every other a fresh id above ``old``'s in
    ``new``'s row order; sorted by id. So a delta between two id-less files sends what changed
    (a moved Gaussian: removed and added), and nothing for what did not."""
    if not len(old) or not len(new):
        first = int(old.ids[-1]) + 1 if len(old) else 1
        return new.with_ids(np.arange(first, first + len(new), dtype=np.uint64))
    _, group = np.unique(np.concatenate([_row_keys(old), _row_keys(new)]), return_inverse=True)
    group = group.ravel().astype(np.int64)
    span = max(len(old), len(new)) + 1
    ko = group[: len(old)] * span + _ranks(group[: len(old)])
    kn = group[len(old) :] * span + _ranks(group[len(old) :])
    sorter = np.argsort(ko)
    at = np.minimum(np.searchsorted(ko, kn, sorter=sorter), len(ko) - 1)
    hit = ko[sorter[at]] == kn
    ids = np.empty(len(new), np.uint64)
    ids[hit] = old.ids[sorter[at[hit]]]
    fresh = np.flatnonzero(~hit)
    ids[fresh] = int(old.ids[-1]) + 1 + np.arange(len(fresh), dtype=np.uint64)
    out = new.take(np.argsort(ids, kind="stable"))
    out.ids = np.sort(ids)
    return out


@dataclass
class DeltaInfo:
    added: int
    updated: int
    removed: int
    cleared_tiles: int
    bytes: int


def encode_delta(
    old: QMap,
    new: QMap,
    params: QuantParams,
    *,
    map_id: int,
    seq: int,
    base_seq: int,
    frame_id: str = "map",
    tile_size: float = 2.0,
    n_levels: int = 1,
    touched: np.ndarray | None = None,
) -> tuple[bytes, DeltaInfo]:
    """The delta turning ``old`` into ``new`` (both sorted by id, same SH degree). ``touched``
    (sorted ids) limits the comparison to those ids — the caller guarantees nothing else differs
    (e.g. from ``GaussianMap.take_changes()``); then only large removals are checked for whole tiles."""
    if old.sh_degree != new.sh_degree:
        raise EncodeError("a delta cannot change the SH degree; send a snapshot")
    if not 1 <= base_seq < seq:
        raise EncodeError(f"delta needs 1 ≤ base_seq < seq (got {base_seq}, {seq})")
    check_ids(new)
    D = params.tile_bits
    if touched is None:
        r_new, in_new = find_ids(new.ids, old.ids)
        removed_rows = np.flatnonzero(~in_new)
        common_old = np.flatnonzero(in_new)
        common_new = r_new[in_new]
        r_old, in_old = find_ids(old.ids, new.ids)
        added_rows = np.flatnonzero(~in_old)
    else:
        touched = np.asarray(touched, np.uint64)
        ro, io = find_ids(old.ids, touched)
        rn, inn = find_ids(new.ids, touched)
        removed_rows = ro[io & ~inn]
        common_old, common_new = ro[io & inn], rn[io & inn]
        added_rows = rn[~io & inn]
    added = new.take(added_rows)
    mask = (
        _diff_mask(old.take(common_old), new.take(common_new)) if len(common_old) else np.zeros(0, np.int64)
    )
    upd = np.flatnonzero(mask)
    prev, cur, mask = old.take(common_old[upd]), new.take(common_new[upd]), mask[upd]

    # whole tiles emptied → one CLEAR_TILES entry instead of their ids
    cleared = np.zeros((0, 3), np.int64)
    rem_ids = old.ids[removed_rows]
    if len(removed_rows) and (touched is None or len(removed_rows) >= 64):
        tiles_old = old.pos >> D
        keys, inv, cnt = np.unique(tiles_old, axis=0, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
        rem_cnt = np.bincount(inv[removed_rows], minlength=len(keys))
        full = (rem_cnt == cnt) & (cnt >= 4)
        if full.any():
            cleared = keys[full]
            rem_ids = old.ids[removed_rows[~full[inv[removed_rows]]]]
    chunks: list[Chunk] = []
    if len(cleared):
        w = Writer()
        w.varint(len(cleared))
        w.raw(np.ascontiguousarray(cleared, "<i8").tobytes())
        chunks.append(Chunk(CLEAR_TILES, 0, w.getvalue()))
    if len(rem_ids):
        w = Writer()
        _put_ids(w, rem_ids)
        chunks.append(Chunk(REMOVED, 0, w.getvalue()))
    if len(cur):
        w = Writer()
        _put_ids(w, cur.ids)
        _put(w, mask, signed=False)
        _put_updates(w, prev, cur, mask)
        chunks.append(Chunk(UPDATED, 0, w.getvalue()))
    if len(added):
        sec, _ = encode_section(added, params, n_levels)
        chunks += sec
    h = Header(
        map_id,
        seq,
        base_seq,
        len(new),
        new.checksum(),
        new.sh_degree,
        max(1, sum(1 for c in chunks if c.type == LEVEL)),
        params,
        tile_size,
        frame_id,
    )
    data = finish(h, chunks, [len(added), len(cur), len(rem_ids)])
    return data, DeltaInfo(len(added), len(cur), len(rem_ids), len(cleared), len(data))


def _cols(name: str, i: int | None = None):
    def get(q: QMap, rows) -> np.ndarray:  # (rows first: converting whole columns made a delta cost the map)
        v = getattr(q, name)[rows]
        return (v if i is None else v.reshape(len(v), np.prod(v.shape[1:], dtype=int))[:, i]).astype(np.int64)

    return get


_WRITES = {F_POS: ("pos",), F_OP: ("op",), F_SCALE: ("scale",), F_ROT: ("rot_idx", "rot")}
_WRITES |= {F_DC: ("dc",), F_REST: ("rest",), F_LEVEL: ("level",)}  # the QMap fields each update bit writes
_WRITTEN = frozenset(f for fs in _WRITES.values() for f in fs)


def _update_fields(num_rest: int):
    return [
        (F_POS, [_cols("pos", i) for i in range(3)]),
        (F_OP, [_cols("op")]),
        (F_SCALE, [_cols("scale", i) for i in range(3)]),
        (F_ROT, [_cols("rot_idx")] + [_cols("rot", i) for i in range(3)]),
        (F_DC, [_cols("dc", i) for i in range(3)]),
        (F_REST, [_cols("rest", i) for i in range(num_rest)]),
        (F_LEVEL, [_cols("level")]),
    ]


def _put_updates(w: Writer, prev: QMap, cur: QMap, mask: np.ndarray) -> None:
    for bit, fields in _update_fields(3 * (prev.num_sh - 1)):
        sel = (mask & bit) != 0
        for get in fields:
            _put_pred(w, get(cur, sel), [0, get(prev, sel)])


def apply_delta(
    state: QMap,
    h: Header,
    chunks: list[Chunk],
    nbytes: int,
    max_gaussians: int | None = None,
    changed: list | None = None,
) -> QMap:
    """A new QMap: ``state`` with the delta applied. ``state`` is never modified. ``max_gaussians``
    bounds the map it makes (and what it decodes on the way) besides the container's size.
    ``changed``: the ids the delta cleared, removed, updated or added are appended to it (arrays;
    every row that differs between ``state`` and the result has one of them)."""
    if h.sh_degree != state.sh_degree:
        raise DecodeError(f"delta has SH degree {h.sh_degree}, the map {state.sh_degree}")
    if max_gaussians is not None and h.gaussians > max_gaussians:
        raise DecodeError(f"delta declares {h.gaussians} Gaussians, more than the {max_gaussians} allowed")
    p = h.params
    cap = (
        max_gaussians_for(nbytes) if max_gaussians is None else min(max_gaussians_for(nbytes), max_gaussians)
    )
    if h.gaussians > len(state) + cap:
        raise DecodeError(f"delta declares {h.gaussians} Gaussians, impossible for its size")
    keep = np.ones(len(state), bool)
    for c in chunks:
        if c.type == CLEAR_TILES:
            r = Reader(c.data, "CLEAR_TILES")
            n = r.varint(r.remaining // 24)
            tiles = r.array("<i8", 3 * n).reshape(n, 3).astype(np.int64)
            r.end()
            if n and len(state):
                st = state.pos >> p.tile_bits
                hit = (
                    (st[:, None, :] == tiles[None, :, :]).all(-1).any(1)
                    if n <= 64
                    else np.isin(_tile_key(st), _tile_key(tiles))
                )
                keep &= ~hit
                if changed is not None:
                    changed.append(state.ids[hit])
    for c in chunks:
        if c.type == REMOVED:
            r = Reader(c.data, "REMOVED")
            ids = _get_ids(r, cap)
            r.end()
            rows, ok = find_ids(state.ids, ids)
            if not ok.all():
                raise DecodeError(f"delta removes unknown Gaussian id {int(ids[~ok][0])}")
            keep[rows] = False
            if changed is not None:
                changed.append(ids)
    # The added Gaussians are decoded before the updates are applied (neither depends on the other:
    # updates may name kept Gaussians only) so the new map is allocated once, kept rows and added rows
    # in id order, instead of a copy of the kept rows and then a merged copy of them (a receiver's 1%
    # removed + 1% added delta at 512k: 72 → 20 ms, bench/delta_cost.py). A section's error is still
    # raised after the updates'.
    section = [c for c in chunks if c.type in (TILES, LEVEL)]
    added, late = None, None
    if section:
        try:
            added = _decode_added(section, state, keep, h, cap)
        except Exception as e:  # (every kind: guarded() judges it, after the updates have been checked)
            late = e
    # Nothing removed or added: the new map shares the old one's arrays and copies a field only when an
    # update writes to it (below), so a small delta does not copy the whole map; ``state`` stays untouched.
    shared = added is None and bool(keep.all())
    if shared:
        out, theirs = state.take(slice(None)), None
    else:
        out, theirs = _assemble(state, keep, added)
    own = set() if shared else set(_WRITTEN)  # the fields ``out`` holds arrays of its own for
    for c in chunks:
        if c.type == UPDATED:
            r = Reader(c.data, "UPDATED")
            ids = _get_ids(r, cap)
            n = len(ids)
            mask = decode_stream(r, n, signed=False).astype(np.int64)
            if n and (mask.min() < 1 or mask.max() > 127):
                raise r.fail("bad field mask")
            rows, ok = find_ids(out.ids, ids)
            if theirs is not None:  # an added Gaussian is not there yet for an update
                ok &= ~theirs[rows]
            if not ok.all():
                raise DecodeError(f"delta updates unknown Gaussian id {int(ids[~ok][0])}")
            _apply_updates(r, out, rows, mask, own)
            r.end()
            if changed is not None:
                changed.append(ids)
            # the values a section would refuse: the map must stay one a snapshot can carry
            check_lattice(out.take(rows), p, f"delta {h.seq}")
    if late is not None:
        raise late
    if added is not None and changed is not None:
        changed.append(added.ids)
    if len(out) != h.gaussians:
        raise DecodeError(
            f"delta {h.seq}: the map after applying holds {len(out)} Gaussians, the sender's {h.gaussians}"
        )
    if out.checksum() != h.state_crc:
        raise DecodeError(
            f"delta {h.seq}: the map after applying does not match the sender's checksum "
            "(a delta of another map, or a base that differs)"
        )
    return out


def _decode_added(section: list[Chunk], state: QMap, keep: np.ndarray, h: Header, cap: int) -> QMap:
    """The delta's added Gaussians, checked against the Gaussians ``keep`` leaves of ``state``."""
    # exactly the Gaussians the header leaves room for: never a larger map, even for a moment
    left = int(np.count_nonzero(keep))
    room = h.gaussians - left
    if room < 0:
        raise DecodeError(f"delta {h.seq}: {left} Gaussians remain, more than the {h.gaussians} it declares")
    added = decode_section(section, h.params, h.sh_degree, min(cap, room), None, "delta")
    rows, clash = find_ids(state.ids, added.ids)
    if len(keep):  # (an id of a removed Gaussian may come back)
        clash &= keep[rows]
    if clash.any():
        raise DecodeError(f"delta adds Gaussian id {int(added.ids[clash][0])} that already exists")
    return added


def _assemble(state: QMap, keep: np.ndarray, added: QMap | None) -> tuple[QMap, np.ndarray | None]:
    """``state``'s rows ``keep`` and ``added``'s (ids disjoint, ascending) in id order, as
    ``state.take(keep).merged(added)`` makes them (each field in ``state``'s dtype), with each field
    allocated and written once → (map, mask of the added rows; None without ``added``)."""
    if added is None:
        return state.take(keep), None
    kept = np.flatnonzero(keep)
    at = np.searchsorted(state.ids[kept], added.ids) + np.arange(len(added))  # added rows' places
    n = len(kept) + len(added)
    theirs = np.zeros(n, bool)
    theirs[at] = True
    src = np.zeros(n, np.intp)  # the row of ``state`` each row copies (added rows: overwritten)
    src[~theirs] = kept

    def place(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.take(a, src, 0) if len(a) else np.empty((n,) + a.shape[1:], a.dtype)
        out[at] = b
        return out

    q = QMap(
        state.sh_degree,
        place(state.ids, added.ids),
        *(place(getattr(state, f), getattr(added, f)) for f in QMap.FIELDS),
    )
    return q, theirs


def _tile_key(t: np.ndarray) -> np.ndarray:
    return (
        np.ascontiguousarray(t, np.int64)
        .view([("x", np.int64), ("y", np.int64), ("z", np.int64)])
        .reshape(-1)
    )


def _apply_updates(r: Reader, out: QMap, rows: np.ndarray, mask: np.ndarray, own: set) -> None:
    """Write the UPDATED chunk's values into ``out``. A field not in ``own`` is another map's array:
    it is copied before its first write (and added to ``own``)."""
    n_rest = 3 * (out.num_sh - 1)
    for bit, fields in _update_fields(n_rest):
        sel = (mask & bit) != 0
        rs = rows[sel]
        vals = [_get_pred(r, len(rs), [0, get(out, rs)], wide=bit == F_POS) for get in fields]
        if not len(rs):
            continue
        for f in set(_WRITES[bit]) - own:
            setattr(out, f, getattr(out, f).copy())
            own.add(f)
        if bit == F_POS:
            out.pos[rs] = np.stack(vals, 1)
        elif bit == F_OP:
            out.op[rs] = vals[0]
        elif bit == F_SCALE:
            out.scale[rs] = np.stack(vals, 1)
        elif bit == F_ROT:
            if vals[0].min() < 0 or vals[0].max() > 3:
                raise r.fail("rotation index outside 0..3")
            out.rot_idx[rs] = vals[0]
            out.rot[rs] = np.stack(vals[1:], 1)
        elif bit == F_DC:
            out.dc[rs] = np.stack(vals, 1)
        elif bit == F_REST:
            out.rest[rs] = np.stack(vals, 1).reshape(len(rs), -1, 3)
        elif bit == F_LEVEL:
            if vals[0].min() < 0 or vals[0].max() > 255:
                raise r.fail("level outside 0..255")
            out.level[rs] = vals[0]


def decode_delta(state: QMap, data) -> tuple[Header, QMap]:
    """Check and apply delta bytes to ``state`` → (header, new state). Raises DecodeError only."""
    h, chunks = unpack(data)
    if h.is_snapshot:
        raise DecodeError("container is a snapshot, not a delta")
    return h, guarded(lambda: apply_delta(state, h, chunks, len(data)))


class MapSender:
    """The sender side: keeps the quantised map the receivers hold (the shadow), numbers messages,
    and turns map changes into deltas and snapshots."""

    def __init__(
        self,
        params: QuantParams | None = None,
        *,
        map_id: int = 1,
        frame_id: str = "map",
        sh_degree: int = 0,
        tile_size: float = 2.0,
        n_levels: int = DEFAULT_LEVELS,
        delta_levels: int = 1,
        first_seq: int | None = None,
    ) -> None:
        self.params = params or QuantParams()
        self.map_id, self.frame_id, self.tile_size = map_id, frame_id, tile_size
        self.n_levels, self.delta_levels = n_levels, delta_levels
        self.shadow = QMap.empty(sh_degree)
        self._snapshots = SnapshotCache()
        # The first state's sequence number. By default the wall clock in microseconds, so a restarted
        # sender numbers above everything it sent before: receivers take its first snapshot as newer
        # instead of waiting forever for sequence numbers they have already passed.
        self.seq = int(first_seq) if first_seq is not None else time.time_ns() // 1000
        if not 1 <= self.seq < 1 << 62:
            raise EncodeError(f"first sequence number {self.seq} out of range")

    @classmethod
    def from_map(cls, gmap: GaussianMap, params: QuantParams | None = None, **kw) -> MapSender:
        """A sender whose receivers start from a snapshot of ``gmap`` as it is now (its first
        sequence number as in ``__init__``). The changes ``gmap`` recorded so far are taken: they
        are in that snapshot, and the next :meth:`update` carries what changes after it."""
        s = cls(params, sh_degree=gmap.sh_degree, tile_size=gmap.tile_size, **kw)
        s.shadow = to_qmap(gmap, s.params)
        gmap.take_changes()
        return s

    def snapshot(self) -> bytes:
        """The shadow as a snapshot container (encoded again only when it changed)."""
        return self._snapshots.encode(
            self.shadow,
            self.params,
            map_id=self.map_id,
            seq=self.seq,
            n_levels=self.n_levels,
            frame_id=self.frame_id,
            tile_size=self.tile_size,
        )

    def delta_to(self, new: QMap, touched: np.ndarray | None = None) -> tuple[bytes, DeltaInfo]:
        data, info = encode_delta(
            self.shadow,
            new,
            self.params,
            map_id=self.map_id,
            seq=self.seq + 1,
            base_seq=self.seq,
            frame_id=self.frame_id,
            tile_size=self.tile_size,
            n_levels=self.delta_levels,
            touched=touched,
        )
        self.shadow, self.seq = new, self.seq + 1
        return data, info

    def update(self, gmap: GaussianMap, changes: ChangeSet | None = None) -> tuple[bytes, DeltaInfo]:
        """Delta bringing receivers to ``gmap``. With ``changes`` (from ``gmap.take_changes()``)
        only the changed Gaussians are quantised; without (or when the record overflowed), the whole
        map is diffed by id, and ``gmap``'s change record is reset: receivers hold all of it now
        (a record kept from before would name additions they have, and miss their removal)."""
        self.tile_size = gmap.tile_size
        if changes is None or changes.overflowed or self.shadow.sh_degree != gmap.sh_degree:
            if changes is None:
                gmap.take_changes()
            return self.delta_to(to_qmap(gmap, self.params))
        # added ids too: a record taken after an update without it may name Gaussians the shadow
        # has already (they are replaced, and sent only if they differ)
        named = np.union1d(changes.added, changes.updated).astype(np.uint64)
        _, present = find_ids(gmap.ids, named)
        fresh = named[present]  # added then removed in the same interval: nothing to send
        touched = np.union1d(np.asarray(changes.removed, np.uint64), named)
        q = to_qmap(gmap.subset(gmap.rows_of(fresh)), self.params) if len(fresh) else None
        return self.delta_to(self.shadow.with_rows(q, np.setdiff1d(touched, fresh)), touched)
