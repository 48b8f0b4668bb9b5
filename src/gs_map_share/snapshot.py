"""Snapshots: a whole map as one container (the entry point for late joiners and files)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from gs_mapping.gaussians import GaussianMap

from .container import LEVEL, PAD, TILES, Chunk, Header, pack, unpack
from .errors import DecodeError, EncodeError
from .quantize import QMap, QuantParams, dequantize, sh_rest_codes, to_qmap
from .section import decode_section, encode_section, max_gaussians_for, octree_rows

DEFAULT_LEVELS = 5
MAX_LAYERS = 32  # the header's n_levels limit
# Layering of a levelled map (the reference encoder's choice; any grouping that keeps the levels in
# order decodes). The mapper's coarsest levels are tiny (the kitchen's level 0: 2 % of the map, 6 dB
# below full), so the first layer gathers coarse levels until it holds this share of the Gaussians
# (kitchen: levels 0-1, 9.5 % of the bytes at quality 2, 2.6 dB below full); the largest layer is
# then halved by id until there are MIN_LAYERS levels of detail (halves by id stay spatially
# coherent: the id-ordered geometry codes them as cheaply as one).
FIRST_LAYER_SHARE = 1 / 16
MIN_LAYERS = 4


@dataclass
class EncodeInfo:
    gaussians: int
    bytes: int
    levels: int
    bytes_per_level: list[int]

    def as_dict(self) -> dict:
        return {
            "gaussians": self.gaussians,
            "bytes": self.bytes,
            "bytes_per_gaussian": self.bytes / self.gaussians if self.gaussians else None,  # (empty map)
            "levels": self.levels,
            "bytes_per_level": self.bytes_per_level,
        }


def check_ids(q: QMap) -> None:
    if len(q) > 1 and bool((q.ids[1:] <= q.ids[:-1]).any()):
        raise EncodeError("Gaussian ids must be unique and sorted ascending to be encoded")
    if len(q) and int(q.ids[-1]) >= (1 << 63):
        raise EncodeError("Gaussian ids must be below 2**63 to be encoded")


def finish(header: Header, chunks: list[Chunk], section_counts: list[int]) -> bytes:
    """Pack, adding a PAD chunk if the container would be too small for its Gaussian counts (the
    decoder refuses counts above 8 × bytes + 4096, so a lying header cannot size an allocation)."""
    data = pack(header, chunks)
    need = max([0] + [int(c) for c in section_counts])
    short = 0
    while max_gaussians_for(len(data) + short) < need:
        short = (need - 4096) // 8 + 1 - len(data) + 16
    if short > 0:
        data = pack(header, chunks + [Chunk(PAD, 0, bytes(short))])
    return data


def encode_snapshot(
    q: QMap,
    params: QuantParams,
    *,
    map_id: int = 1,
    seq: int = 1,
    n_levels: int = DEFAULT_LEVELS,
    frame_id: str = "map",
    tile_size: float = 2.0,
    stats: dict | None = None,
) -> tuple[bytes, EncodeInfo]:
    """One snapshot container. A map whose Gaussians carry 2..32 distinct ``level`` values (the
    mapper's ProGS levels) is sent *layered*: sections of whole levels, coarsest first (see
    :func:`_layers`), so a prefix decodes to the Gaussians of the coarser levels (the maps the
    mapper's multi-level loss trained). Otherwise (all one level, or ``n_levels`` = 1 → flat) it is
    one section whose coarse levels are the encoder's aggregated Gaussians. ``stats``, when given,
    receives the bytes of each kind of stream (label → bytes; bench accounting)."""
    check_ids(q)
    if seq < 1:
        raise EncodeError("snapshot sequence numbers start at 1")
    layers = _layers(q) if n_levels > 1 else None
    if layers is None:
        chunks, sizes = encode_section(q, params, n_levels, stats)
        counts = [len(q)]
    else:
        chunks, sizes, counts = [], [], []
        for i, rows in enumerate(layers):
            sec, sz = encode_section(q.take(rows), params, 1, stats)
            chunks += [Chunk(TILES, i, sec[0].data), Chunk(LEVEL, i, sec[1].data)]
            sizes.append(sum(sz))
            counts.append(len(rows))
    n_lv = len(sizes)
    h = Header(map_id, seq, 0, len(q), q.checksum(), q.sh_degree, n_lv, params, tile_size, frame_id)
    data = finish(h, chunks, [len(q)])
    overhead = len(data) - sum(sizes)
    sizes[0] += overhead
    return data, EncodeInfo(len(q), len(data), n_lv, sizes)


class SnapshotCache:
    """:func:`encode_snapshot`'s bytes for the last map and arguments asked, encoded once: a sender
    sends its snapshot every period whether or not its map changed, and a map of millions of
    Gaussians takes seconds to encode (the fleet server's thread did little else). A change is a
    new map object or other arguments (a new sequence number): the holders (FleetMerge,
    MapSender) replace their map, never edit it in place."""

    def __init__(self) -> None:
        # (a weak reference: a replaced map is not kept alive for the cache's sake)
        self._last: tuple[weakref.ref[QMap], tuple, bytes] | None = None

    def encode(self, q: QMap, params: QuantParams, **kw) -> bytes:
        key = (params, sorted(kw.items()))
        if self._last is None or self._last[0]() is not q or self._last[1] != key:
            self._last = (weakref.ref(q), key, encode_snapshot(q, params, **kw)[0])
        return self._last[2]


def _layers(q: QMap) -> list[np.ndarray] | None:
    """Rows of each layer when the map is layered, else None: the coarsest levels up to
    FIRST_LAYER_SHARE of the Gaussians, then one level per layer, the largest layer halved (by
    level, then id) while there are fewer than MIN_LAYERS."""
    values, counts = np.unique(q.level, return_counts=True)
    if not 2 <= len(values) <= MAX_LAYERS:
        return None
    k = min(int(np.searchsorted(np.cumsum(counts), FIRST_LAYER_SHARE * len(q))) + 1, len(values))
    layers = [np.flatnonzero(q.level <= values[k - 1])] + [np.flatnonzero(q.level == v) for v in values[k:]]
    while len(layers) < MIN_LAYERS:
        i = max(range(len(layers)), key=lambda j: len(layers[j]))
        if len(layers[i]) < 2:
            break
        # halved coarse first (a layer of several levels: no level below the previous layer's, the
        # decoder's rule), each half in id order as the rows are
        rows = layers[i][np.argsort(q.level[layers[i]], kind="stable")]
        half = len(rows) // 2
        layers[i : i + 1] = [np.sort(rows[:half]), np.sort(rows[half:])]
    return layers


def encode_map(gmap: GaussianMap, params: QuantParams | None = None, **kw) -> tuple[bytes, EncodeInfo]:
    """Quantise and encode a whole map as a snapshot. A map whose ids are implicit (a scene read
    without ids) is renumbered 1..N in the codec's own spatial order first, so its ids cost
    nothing: the receiver gets the same Gaussians, numbered in that order."""
    params = params or QuantParams()
    kw.setdefault("tile_size", gmap.tile_size)
    if not gmap.ids_implicit:
        return encode_snapshot(to_qmap(gmap, params), params, **kw)
    # as spatial_ids(to_qmap(gmap, params)), with the higher SH (most of the data) quantised
    # straight into the spatial order rather than quantised, then reordered (a map-sized copy)
    q = to_qmap(gmap, params, rest=False)
    rows = octree_rows(q, params)
    q = q.take(rows)
    q.rest = sh_rest_codes(gmap, params, rows)
    q.ids = np.arange(1, len(q) + 1, dtype=np.uint64)
    return encode_snapshot(q, params, **kw)


def spatial_ids(q: QMap, params: QuantParams) -> QMap:
    """``q`` reordered as the octree visits it (tile, Morton code), with ids 1..N in that order."""
    out = q.take(octree_rows(q, params))
    out.ids = np.arange(1, len(out) + 1, dtype=np.uint64)
    return out


def decode_snapshot(data, max_level: int | None = None, max_gaussians: int = 1 << 26):
    """Decode a snapshot container. Returns (header, QMap) for a full decode, or (header,
    GaussianMap preview) when ``max_level`` stops early. Raises :class:`DecodeError` only."""
    if max_level is not None and not 0 <= max_level < 1 << 31:
        raise DecodeError(f"max level must be 0 … 2**31 - 1 (0 = coarsest), got {max_level}")
    h, chunks = unpack(data)
    if not h.is_snapshot:
        raise DecodeError(f"container is a delta (base sequence {h.base_seq}), not a snapshot")
    cap = min(max_gaussians, max_gaussians_for(len(data)))
    if h.gaussians > cap:
        raise DecodeError(
            f"snapshot declares {h.gaussians} Gaussians, more than {cap} allowed for {len(data)} bytes"
        )
    sections = _split_sections(chunks)
    if len(sections) == 1:
        out = guarded(lambda: decode_section(sections[0], h.params, h.sh_degree, cap, max_level, "snapshot"))
    else:
        out = guarded(lambda: _decode_layers(sections, h, cap, max_level))
    if isinstance(out, QMap):
        if len(out) != h.gaussians or out.checksum() != h.state_crc:
            raise DecodeError("snapshot: decoded map does not match the header's count/checksum")
    return h, out


def _split_sections(chunks: list[Chunk]) -> list[list[Chunk]]:
    """TILES/LEVEL chunks grouped into sections (each starts at a TILES chunk)."""
    sections: list[list[Chunk]] = []
    for c in chunks:
        if c.type == TILES:
            sections.append([c])
        elif c.type == LEVEL:
            if not sections:
                raise DecodeError("snapshot: LEVEL chunk before any TILES chunk")
            sections[-1].append(c)
    if not sections:
        raise DecodeError("snapshot: missing TILES chunk")
    return sections


def _decode_layers(sections: list[list[Chunk]], h: Header, cap: int, max_level: int | None):
    """A layered snapshot: section i = layer i (whole levels, or part of one), one LEVEL chunk each."""
    if len(sections) != h.n_levels:
        raise DecodeError(f"snapshot: {len(sections)} layers, the header says {h.n_levels}")
    stop = len(sections) - 1 if max_level is None else min(max_level, len(sections) - 1)
    parts, total, prev_level = [], 0, 0
    for i, sec in enumerate(sections[: stop + 1]):
        if [c.level for c in sec] != [i, i] or [c.type for c in sec] != [TILES, LEVEL]:
            raise DecodeError(f"snapshot: layer {i} is not one TILES and one LEVEL chunk of level {i}")
        part = decode_section(
            [sec[0], Chunk(LEVEL, 0, sec[1].data)],
            h.params,
            h.sh_degree,
            cap - total,
            None,
            f"snapshot layer {i}",
        )
        if len(part) == 0 or int(part.level.min()) < prev_level:
            raise DecodeError(f"snapshot: layer {i} holds a level below the previous layer's")
        prev_level = int(part.level.max())
        total += len(part)
        parts.append(part)
    out = QMap.concat(parts)
    if len(out) > 1 and np.any(out.ids[1:] == out.ids[:-1]):
        raise DecodeError("snapshot: a Gaussian id appears in two layers")
    if stop < len(sections) - 1:
        return dequantize(out, h.params, h.tile_size)
    return out


def decode_map(data, max_level: int | None = None) -> GaussianMap:
    """Snapshot bytes → the receiver's GaussianMap (or a coarse preview with ``max_level``)."""
    h, out = decode_snapshot(data, max_level)
    if isinstance(out, QMap):
        return dequantize(out, h.params, h.tile_size)
    out.tile_size = h.tile_size
    return out


def guarded(fn):
    """Run a decoding step; anything but our own error becomes a DecodeError (hostile input must
    never surface as another exception type). The explicit checks above come first; this is the net."""
    try:
        return fn()
    except DecodeError:
        raise
    except MemoryError:  # a valid container too large for this machine, or one that lies
        raise DecodeError("out of memory while decoding") from None
    except (
        ValueError,
        IndexError,
        OverflowError,
        TypeError,
        KeyError,
        ZeroDivisionError,
        FloatingPointError,
        RuntimeError,
    ) as exc:
        raise DecodeError(f"malformed data ({type(exc).__name__}: {exc})") from None
