"""Region + level-of-detail queries on a tiled map (docs/fleet.md, "Region queries").

Request (UTF-8 JSON): ``{"x", "y", "z"}`` the pose in the map frame (metres), ``radius_m``,
``max_level`` (Gaussians with ``level`` ≤ this), ``since_seq`` (only tiles changed after this
global sequence; 0 = all), ``cursor`` (0 first, then the previous answer's ``next_cursor``),
``max_bytes`` (answer cap), optional ``id`` (echoed).

Answer: ``b"GSRQ"``, u16 version 1, u32 JSON length, the JSON (``status``, ``seq``, ``cursor``,
``next_cursor`` (null: last page), ``tiles``: the codec tiles this page covers — the client
replaces its contents of exactly these tiles, an empty one included — ``gaussians``, ``error``),
then one ordinary snapshot container (layered by level: coarse levels first, so a prefix decodes
to a coarser map) holding the Gaussians of those tiles with level ≤ ``max_level``. Tiles are taken
in order of distance from the pose (then tile key); a page holds as many as fit ``max_bytes``, and
the cursor is an offset into that order (stateless: nothing is kept per client). A tile too big
for ``max_bytes`` alone is an error page naming it whose ``next_cursor`` goes on past it; an error
with ``next_cursor`` null ends the paging.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

import numpy as np

from .errors import DecodeError
from .quantize import QMap, QuantParams
from .snapshot import encode_snapshot

MAGIC = b"GSRQ"
VERSION = 1
MAX_REQUEST = 4096


class RegionError(ValueError):
    """A region request that cannot be answered (named field and why)."""


@dataclass
class RegionRequest:
    x: float
    y: float
    z: float = 0.0
    radius_m: float = 50.0
    max_level: int = 255
    since_seq: int = 0
    cursor: int = 0
    max_bytes: int = 1 << 20
    id: str = ""

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    @staticmethod
    def from_bytes(data: bytes, max_radius_m: float, max_bytes: int) -> RegionRequest:
        if len(data) > MAX_REQUEST:
            raise RegionError(f"request of {len(data)} bytes (at most {MAX_REQUEST})")
        try:
            d = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # (deep nesting: recursion)
            raise RegionError(f"request is not UTF-8 JSON ({type(exc).__name__}: {exc})") from None
        if not isinstance(d, dict):
            raise RegionError("request is not a JSON object")
        unknown = set(d) - set(RegionRequest.__dataclass_fields__)
        if unknown:
            raise RegionError(f"unknown request field {sorted(unknown)[0]!r}")
        try:
            r = RegionRequest(**d)
        except TypeError as exc:
            raise RegionError(f"request fields: {exc}") from None
        for f in ("x", "y", "z", "radius_m"):
            v = getattr(r, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
                raise RegionError(f"{f} must be a finite number, got {_short(v)}")
            if f != "radius_m" and abs(v) > 1e9:
                raise RegionError(f"{f} = {v} m is outside the map lattice")
        if not 0 < r.radius_m <= max_radius_m:
            raise RegionError(f"radius_m {r.radius_m} outside (0, {max_radius_m}]")
        for f, lo, hi in (("max_level", 0, 255), ("since_seq", 0, 1 << 63), ("cursor", 0, 1 << 40)):
            v = getattr(r, f)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise RegionError(f"{f} must be an integer in {lo}..{hi}, got {_short(v)}")
        if isinstance(r.max_bytes, bool) or not isinstance(r.max_bytes, int) or not 1024 <= r.max_bytes:
            raise RegionError(f"max_bytes must be an integer ≥ 1024, got {_short(r.max_bytes)}")
        r.max_bytes = min(r.max_bytes, max_bytes)
        if not isinstance(r.id, str) or len(r.id) > 64:
            raise RegionError("id must be a string of at most 64 characters")
        return r


def _finite(v: int | float) -> bool:
    """Whether a JSON number is finite as a float (an integer of 400 digits is not)."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _short(v) -> str:
    """A field's value for a message, cut short (a request may hold a huge number or list)."""
    t = repr(v) if not isinstance(v, int) or abs(v) < 10**30 else f"an integer of {len(str(abs(v)))} digits"
    return t if len(t) <= 40 else t[:37] + "..."


@dataclass
class RegionAnswer:
    status: str
    seq: int
    cursor: int = 0
    next_cursor: int | None = None
    tiles: list | None = None
    gaussians: int = 0
    error: str = ""
    id: str = ""
    container: bytes = b""

    def to_bytes(self) -> bytes:
        meta = {k: v for k, v in self.__dict__.items() if k != "container"}
        j = json.dumps(meta).encode()
        return MAGIC + struct.pack("<HI", VERSION, len(j)) + j + self.container

    @staticmethod
    def from_bytes(data: bytes) -> RegionAnswer:
        data = bytes(data)
        if len(data) < 10 or data[:4] != MAGIC:
            raise DecodeError("region answer: wrong magic")
        version, n = struct.unpack_from("<HI", data, 4)
        if version != VERSION or 10 + n > len(data):
            raise DecodeError(f"region answer: version {version} or JSON length {n} invalid")
        try:
            meta = json.loads(data[10 : 10 + n].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise DecodeError(f"region answer: bad JSON ({type(exc).__name__}: {exc})") from None
        if not isinstance(meta, dict):
            raise DecodeError("region answer: its JSON is not an object")
        known = set(RegionAnswer.__dataclass_fields__) - {"container"}
        if set(meta) - known or not {"status", "seq"} <= set(meta):
            bad = sorted(set(meta) - known) or sorted({"status", "seq"} - set(meta))
            raise DecodeError(f"region answer: unknown or missing field {bad[0]!r}")
        for f, types in _ANSWER_TYPES.items():
            if f in meta and (isinstance(meta[f], bool) or not isinstance(meta[f], types)):
                raise DecodeError(f"region answer: field {f!r} has the wrong type")
        return RegionAnswer(**meta, container=data[10 + n :])


# what each field of an answer's JSON may hold (None where the field may be null)
_ANSWER_TYPES: dict[str, type | tuple[type, ...]] = {
    "status": str,
    "seq": int,
    "cursor": int,
    "next_cursor": (int, type(None)),
    "tiles": (list, type(None)),
    "gaussians": int,
    "error": str,
    "id": str,
}


def tile_order(tiles: np.ndarray, centre: np.ndarray, radius: float, params: QuantParams) -> np.ndarray:
    """Indices of the tiles (N, 3) whose cube lies within ``radius`` of ``centre`` (metres), nearest
    first (ties: tile key order)."""
    if not len(tiles):
        return np.zeros(0, np.int64)
    edge = float(1 << params.tile_bits) * params.pos_step
    lo = tiles.astype(np.float64) * edge
    nearest = np.clip(centre[None, :], lo, lo + edge)  # closest point of each tile cube
    dist = np.linalg.norm(nearest - centre[None, :], axis=1)
    inside = np.flatnonzero(dist <= radius)
    order = np.lexsort((tiles[inside, 2], tiles[inside, 1], tiles[inside, 0], dist[inside]))
    return inside[order]


def answer(
    req: RegionRequest,
    gmap: QMap,
    params: QuantParams,
    *,
    map_id: int,
    seq: int,
    tile_seq: dict,
    frame_id: str = "map",
    levels: int = 5,
) -> RegionAnswer:
    """One page of the answer on ``gmap`` at global sequence ``seq``, from tile ``req.cursor`` of
    the ordered tile list. ``tile_seq`` gives each tile's last-changed sequence (emptied tiles
    included), for ``since_seq``. Stateless: the next page is asked with ``cursor = next_cursor``."""
    if req.since_seq > seq:  # "nothing changed" would leave the client's stale map unnoticed
        raise RegionError(
            f"since_seq {req.since_seq} is ahead of the map's sequence {seq} (another store's?)"
        )
    keys = np.array(sorted(t for t, s in tile_seq.items() if s > req.since_seq), np.int64).reshape(-1, 3)
    order = keys[tile_order(keys, np.array([req.x, req.y, req.z], np.float64), req.radius_m, params)]
    order = order[req.cursor :]
    if not len(order):
        return RegionAnswer("ok", seq, req.cursor, None, [], 0, "", req.id, b"")
    rows_tiles = gmap.pos >> params.tile_bits
    rk = _as_keys(rows_tiles)
    wanted = gmap.level <= req.max_level
    uniq, counts = np.unique(rk[wanted], return_counts=True)
    # first guess from ESTIMATE_BYTES per Gaussian (+ per tile), then shrink to what really fits
    est = ESTIMATE_BYTES * _count_in(uniq, counts, _as_keys(order)) + ESTIMATE_TILE_BYTES
    n = max(1, int(np.searchsorted(np.cumsum(est), req.max_bytes - 1024, side="right")))
    sel = order[:n]
    for _ in range(12):
        sub = gmap.take(np.flatnonzero(np.isin(rk, _as_keys(sel)) & wanted))
        data = _encode(sub, params, map_id, seq, frame_id, levels)
        if len(data) <= req.max_bytes:
            break
        if len(sel) == 1:
            # (pages shrink to a prefix, so a tile too big for any page always starts one) skipped,
            # not the end: the tiles after it still reach a client on this link
            nxt = req.cursor + 1 if len(order) > 1 else None
            return RegionAnswer(
                "error", seq, req.cursor, nxt, None, 0,
                f"tile {tuple(int(v) for v in sel[0])} alone needs {len(data)} bytes > max_bytes "
                f"{req.max_bytes}: skipped (a larger max_bytes or a lower max_level takes it)", req.id,
            )  # fmt: skip
        sel = sel[: max(1, min(len(sel) - 1, int(len(sel) * req.max_bytes / len(data) * 0.9)))]
    else:
        return RegionAnswer("error", seq, req.cursor, None, None, 0, "could not fit max_bytes", req.id)
    end = req.cursor + len(sel)
    nxt = end if len(sel) < len(order) else None
    return RegionAnswer("ok", seq, req.cursor, nxt, sel.tolist(), len(sub), "", req.id, data)


ESTIMATE_BYTES = 10  # per Gaussian, a first guess of a page's size (quality 2 maps: 6..10 B/G)
ESTIMATE_TILE_BYTES = 64  # per tile (small sections cost more per Gaussian)


def _count_in(uniq: np.ndarray, counts: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if not len(uniq):
        return np.zeros(len(keys), np.int64)
    pos = np.minimum(np.searchsorted(uniq, keys), len(uniq) - 1)
    return np.where(uniq[pos] == keys, counts[pos], 0)


def _as_keys(t: np.ndarray) -> np.ndarray:
    t = np.ascontiguousarray(t, np.int64).reshape(-1, 3)
    return t.view([("x", np.int64), ("y", np.int64), ("z", np.int64)]).reshape(-1)


def _encode(sub: QMap, params: QuantParams, map_id: int, seq: int, frame_id: str, levels: int) -> bytes:
    data, _ = encode_snapshot(sub, params, map_id=map_id, seq=max(seq, 1), n_levels=levels, frame_id=frame_id)
    return data
