"""A compact delta for vector lanes (the HD map's elements: class, score, ordered 2D points).

Lanes travel in the same container as Gaussian maps (header, CRC-checked chunks, sequence numbers,
state checksum) with two chunk types of their own:

- LANES_REMOVED (8): lane ids (as REMOVED).
- LANES_SET (9): lanes added or changed: ids; unsigned streams of class, score (u8, score·255) and
  point count; a per-lane mode stream (0 = absolute, 1 = residual against the receiver's lane of the
  same id and point count); absolute lanes: first point x, y then consecutive differences (signed,
  on the ``pos_step`` lattice, 1 cm by default); residual lanes: point residuals x, y.

Lanes are identified by ids the sender keeps stable (:func:`assign_ids` matches a new frame's
elements to the previous lanes). Deltas pay off in a fixed frame (map, odom); in base_link every
lane moves each frame and the delta degenerates to re-sending the (still compactly coded) points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bitio import Reader, Writer, crc32c
from .container import Chunk, Header, unpack
from .delta import _get_ids, _put_ids
from .entropy import decode_stream
from .errors import DecodeError, EncodeError
from .quantize import QuantParams
from .section import _put, max_gaussians_for
from .snapshot import finish, guarded

LANES_REMOVED, LANES_SET = 8, 9
_MAX_COORD = 1 << 40


@dataclass
class Lane:
    id: int
    cls: int
    score: float
    points: np.ndarray  # (K, 2) metres


@dataclass
class LaneState:
    """Quantised lanes by id (what sender and receiver hold)."""

    lanes: dict = field(default_factory=dict)  # id → (cls, score_u8, (K, 2) int64)

    def checksum(self) -> int:
        c = 0
        for i in sorted(self.lanes):
            cls, sc, pts = self.lanes[i]
            c = crc32c(np.array([i, cls, sc, len(pts)], "<i8").tobytes(), c)
            c = crc32c(np.ascontiguousarray(pts, "<i8").tobytes(), c)
        return c

    def to_lanes(self, step: float) -> list[Lane]:
        return [
            Lane(i, cls, sc / 255.0, pts.astype(np.float64) * step)
            for i, (cls, sc, pts) in sorted(self.lanes.items())
        ]

    def copy(self) -> LaneState:
        return LaneState({k: (c, s, p.copy()) for k, (c, s, p) in self.lanes.items()})


def quantize_lanes(lanes: list[Lane], step: float = 0.01) -> LaneState:
    out = {}
    for ln in lanes:
        pts = np.asarray(ln.points, np.float64).reshape(-1, 2)
        if not np.all(np.isfinite(pts)) or np.isnan(ln.score):  # (an infinite score clips to 0 or 1)
            raise EncodeError(f"lane {ln.id}: non-finite points or a NaN score")
        # the bound the decoder checks, on the rounded lattice values (a point just under it rounds onto it)
        codes = np.rint(pts / step)
        if len(pts) and np.abs(codes).max() >= _MAX_COORD:
            raise EncodeError(
                f"lane {ln.id}: out-of-range points ({_MAX_COORD} lattice steps of {step} m or more)"
            )
        if not 0 <= ln.cls < 256 or ln.id < 0 or ln.id >= 1 << 63:
            raise EncodeError(f"lane {ln.id}: class or id out of range")
        out[int(ln.id)] = (
            int(ln.cls),
            int(np.clip(np.rint(ln.score * 255), 0, 255)),
            codes.astype(np.int64),
        )
    return LaneState(out)


def assign_ids(prev: list[Lane], elements, next_id: int, max_dist: float = 1.0) -> tuple[list[Lane], int]:
    """Give a new frame's elements (objects with ``cls``, ``score``, ``points``) the ids of the
    previous lanes they match (same class, mean distance from each point to the other polyline's
    points < ``max_dist``), greedily by score; new ids for the rest."""
    taken, out = set(), []
    for e in sorted(elements, key=lambda e: -float(e.score)):
        pts = np.asarray(e.points, np.float64).reshape(-1, 2)
        best, best_d = None, max_dist
        for p in prev:
            if p.cls != e.cls or p.id in taken or not len(p.points) or not len(pts):
                continue
            d = np.linalg.norm(pts[:, None, :] - p.points[None, :, :], axis=2)
            dist = 0.5 * (d.min(1).mean() + d.min(0).mean())
            if dist < best_d:
                best, best_d = p.id, dist
        if best is None:
            best, next_id = next_id, next_id + 1
        taken.add(best)
        out.append(Lane(best, int(e.cls), float(e.score), pts))
    return out, next_id


def encode_lanes(
    old: LaneState | None,
    new: LaneState,
    *,
    map_id: int,
    seq: int,
    base_seq: int,
    frame_id: str = "map",
    step: float = 0.01,
) -> bytes:
    """A lane delta (``base_seq`` ≥ 1, against ``old``) or snapshot (``base_seq`` = 0)."""
    old = old if (old is not None and base_seq) else LaneState()
    removed = np.array(sorted(set(old.lanes) - set(new.lanes)), np.uint64)
    changed = sorted(
        i
        for i, v in new.lanes.items()
        if i not in old.lanes or old.lanes[i][:2] != v[:2] or not np.array_equal(old.lanes[i][2], v[2])
    )
    chunks = []
    if len(removed):
        w = Writer()
        _put_ids(w, removed)
        chunks.append(Chunk(LANES_REMOVED, 0, w.getvalue()))
    if changed:
        w = Writer()
        _put_ids(w, np.array(changed, np.uint64))
        lanes = [new.lanes[i] for i in changed]
        _put(w, np.array([c for c, _, _ in lanes]), signed=False)
        _put(w, np.array([s for _, s, _ in lanes]), signed=False)
        _put(w, np.array([len(p) for _, _, p in lanes]), signed=False)
        mode = np.array(
            [int(i in old.lanes and len(old.lanes[i][2]) == len(new.lanes[i][2])) for i in changed]
        )
        _put(w, mode, signed=False)
        absl = [p for (_, _, p), m in zip(lanes, mode, strict=False) if m == 0 and len(p)]
        res = [new.lanes[i][2] - old.lanes[i][2] for i, m in zip(changed, mode, strict=False) if m == 1]
        first = np.array([p[0] for p in absl]).reshape(-1, 2)
        diffs = np.concatenate([np.diff(p, axis=0) for p in absl] + [np.zeros((0, 2), np.int64)])
        resid = np.concatenate(res + [np.zeros((0, 2), np.int64)])
        for arr in (first, diffs, resid):
            for j in range(2):
                _put(w, arr[:, j])
        chunks.append(Chunk(LANES_SET, 0, w.getvalue()))
    h = Header(
        map_id, seq, base_seq, len(new.lanes), new.checksum(), 0, 1, QuantParams(pos_step=step), 1.0, frame_id
    )
    # padded as a map's container is: the decoder caps lanes, points and removals at 8 · bytes + 4096,
    # which a long straight lane (constant differences) or many empty ones would otherwise exceed
    points = sum(len(new.lanes[i][2]) for i in changed)
    return finish(h, chunks, [len(new.lanes), points, len(removed)])


def decode_lanes(data, old: LaneState | None) -> tuple[Header, LaneState]:
    """Apply lane container bytes to ``old`` (ignored for a snapshot). Raises DecodeError only;
    ``old`` is not modified."""
    h, chunks = unpack(data)
    return h, guarded(lambda: _apply(h, chunks, len(data), old))


def _apply(h: Header, chunks, nbytes: int, old: LaneState | None) -> LaneState:
    if h.is_snapshot:
        state = LaneState()
    elif old is None:
        raise DecodeError("lane delta without a base state")
    else:
        state = old.copy()
    cap = max_gaussians_for(nbytes)
    for c in chunks:
        if c.type == LANES_REMOVED:
            r = Reader(c.data, "LANES_REMOVED")
            for i in _get_ids(r, cap).tolist():
                if i not in state.lanes:
                    raise DecodeError(f"lane delta removes unknown lane {i}")
                del state.lanes[i]
            r.end()
    for c in chunks:
        if c.type != LANES_SET:
            continue
        r = Reader(c.data, "LANES_SET")
        ids = _get_ids(r, cap).tolist()
        n = len(ids)
        cls = decode_stream(r, n, signed=False)
        score = decode_stream(r, n, signed=False)
        k = decode_stream(r, n, signed=False)
        mode = decode_stream(r, n, signed=False)
        if n and (
            cls.max() > 255 or score.max() > 255 or mode.max() > 1 or int(k.sum()) > cap or k.max() > cap
        ):
            raise r.fail("lane fields out of range")
        k = k.astype(np.int64)
        absolute = (mode == 0) & (k > 0)
        n_abs = int(absolute.sum())
        n_diff = int(k[absolute].sum()) - n_abs
        n_res = int(k[mode == 1].sum())
        first = np.stack([decode_stream(r, n_abs) for _ in range(2)], 1)
        diffs = np.stack([decode_stream(r, n_diff) for _ in range(2)], 1)
        resid = np.stack([decode_stream(r, n_res) for _ in range(2)], 1)
        r.end()
        fa = da = ra = 0
        for j, i in enumerate(ids):
            kk = int(k[j])
            if mode[j] == 1:
                if i not in state.lanes or len(state.lanes[i][2]) != kk:
                    raise DecodeError(f"lane {i}: residual against a lane the receiver does not hold")
                pts = state.lanes[i][2] + resid[ra : ra + kk]
                ra += kk
            elif kk:
                pts = np.cumsum(np.concatenate([first[fa : fa + 1], diffs[da : da + kk - 1]]), axis=0)
                fa += 1
                da += kk - 1
            else:
                pts = np.zeros((0, 2), np.int64)
            if len(pts) and np.abs(pts).max() >= _MAX_COORD:
                raise DecodeError(f"lane {i}: coordinates out of range")
            state.lanes[int(i)] = (int(cls[j]), int(score[j]), pts.astype(np.int64))
    if len(state.lanes) != h.gaussians or state.checksum() != h.state_crc:
        raise DecodeError(f"lane container {h.seq}: result does not match the sender's lanes")
    return state
