"""The one Gaussian container of the suite (mapper, renderer and codec all use it).

Structure of arrays, numpy, one row per Gaussian:

=================  ===============  ===================================================
field              shape / dtype    meaning
=================  ===============  ===================================================
``means``          (N, 3) float32   centre in the map frame, metres (float32 as rendered;
                                    the codec keeps float64 tile origins on the wire)
``quats``          (N, 4) float32   unit rotation, ROS order (x, y, z, w)
``log_scales``     (N, 3) float32   log of the per-axis standard deviation, metres
``opacity_logits`` (N,)   float32   logit of opacity
``sh``             (N, K, 3) f32    SH coefficients, K = (degree + 1)², ``sh[:, 0]`` = DC
``ids``            (N,)   uint64    stable id, never reused; rows are kept sorted by id
``levels``         (N,)   uint8     octree level of detail (0 = coarsest), for progressive coding
=================  ===============  ===================================================

Ids and levels are optional on construction: a scene read from a file that has none (every
trainer's PLY, SPZ, SOG) gets ids 1..N in file order and level 0, and ``ids_implicit`` says so —
nobody depends on those ids, so the codec may renumber them (in its own spatial order) for free.

Non-finite values (:func:`clamp_nonfinite`, used by every file reader): an opacity logit of ±inf
(what an 8-bit alpha of 0 or 255 converts to) is clamped to ±``OPACITY_LOGIT_LIMIT`` (20: sigmoid
is then 1 − 2e-9, identical in float32); a log-scale of −inf (a zero scale) to ``LOG_SCALE_MIN``.
Any other NaN or infinity (positions, rotations, SH, NaN opacities, +inf scales) is refused with one
line naming the field and the row. The container itself (:meth:`GaussianMap.validate`) holds finite
values only.

Tiles: each Gaussian belongs to the voxel-hashed cell ``floor(mean / tile_size)`` (GS-Share's
anchors). The container records what changed per tile since the last :meth:`take_changes` (added,
updated, removed ids), which is what the codec turns into deltas.

Rows stay sorted by id (ids are allocated increasing and removal compacts in order), so id → row is
a binary search, with no dictionary to keep in sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import MapError

SH_C0 = 0.28209479177387814  # Y_0^0; colour = SH_C0 * dc + 0.5

_TILE_BITS = 21
_TILE_OFFSET = 1 << (_TILE_BITS - 1)
_TILE_MASK = (1 << _TILE_BITS) - 1


def sh_coeffs(degree: int) -> int:
    if not 0 <= degree <= 3:
        raise MapError(f"SH degree must be 0..3, got {degree}")
    return (degree + 1) ** 2


def pack_tile(ijk: np.ndarray) -> np.ndarray:
    """(…, 3) integer cell coordinates → int64 keys (21 bits per axis, ±1M cells)."""
    ijk = np.asarray(ijk, dtype=np.int64)
    if ijk.size and (np.abs(ijk).max() >= _TILE_OFFSET):
        raise MapError("tile coordinate out of range (more than ±1,048,576 tiles from the origin)")
    u = (ijk + _TILE_OFFSET) & _TILE_MASK
    return (u[..., 0] << (2 * _TILE_BITS)) | (u[..., 1] << _TILE_BITS) | u[..., 2]


@dataclass
class ChangeSet:
    """What changed since the last :meth:`GaussianMap.take_changes` (ids sorted ascending)."""

    added: np.ndarray
    updated: np.ndarray
    removed: np.ndarray
    tiles: np.ndarray  # int64 keys of every tile touched (incl. the old tile of a moved Gaussian)
    # The record outgrew the map and was dropped (nobody asked for a long time): compare the whole map
    # by id instead (the lists above are then empty).
    overflowed: bool = False

    @property
    def empty(self) -> bool:
        return not (self.overflowed or len(self.added) or len(self.updated) or len(self.removed))


CHANGE_RECORD_MIN = 1 << 16  # removed ids / tiles the change record keeps at least (see _bound_record)
_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh", "levels")
OPACITY_LOGIT_LIMIT = 20.0  # |logit| beyond this renders identically in float32 (the codec clamps here too)
LOG_SCALE_MIN = -30.0  # a zero scale (log −inf) becomes e**−30: invisible, finite


def clamp_nonfinite(
    means: np.ndarray,
    quats: np.ndarray,
    log_scales: np.ndarray,
    opacity_logits: np.ndarray,
    sh: np.ndarray,
    source: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The suite's one rule for non-finite values read from a file (see the module docstring):
    float32 copies with opacity ±inf and log-scale −inf clamped; :class:`MapError` naming the field
    and row for any other NaN or infinity. ``source`` prefixes the message (a file name)."""
    where = f"{source}: " if source else ""
    op = np.array(opacity_logits, np.float32).reshape(-1)
    ls = np.array(log_scales, np.float32).reshape(len(op), 3)
    op[np.isposinf(op)] = OPACITY_LOGIT_LIMIT
    op[np.isneginf(op)] = -OPACITY_LOGIT_LIMIT
    ls[np.isneginf(ls)] = LOG_SCALE_MIN
    fields = {
        "position": np.asarray(means, np.float32).reshape(len(op), 3),
        "rotation": np.asarray(quats, np.float32).reshape(len(op), 4),
        "scale": ls,
        "opacity": op,
        "SH coefficient": _sh_rows(sh, len(op)),
    }
    for name, arr in fields.items():
        if not len(op):  # an empty map: nothing to check (and no -1 to infer in a reshape)
            break
        bad = ~np.isfinite(arr.reshape(len(op), -1)).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise MapError(
                f"{where}{name} of Gaussian {row} (row in file) is not finite "
                f"({int(bad.sum())} Gaussians affected); only ±inf opacities and zero scales are clamped"
            )
    return fields["position"], fields["rotation"], ls, op, fields["SH coefficient"]


def _sh_rows(sh, n: int) -> np.ndarray:
    """SH coefficients as (n, K, 3) float32, also for n = 0 (where a -1 in reshape is ambiguous)."""
    a = np.asarray(sh, np.float32)
    per_row = a.size // n if n else int(np.prod(a.shape[1:])) or 3
    return a.reshape(n, per_row // 3, 3)


def unit_quaternions(quats, n: int) -> np.ndarray:
    """Rotations as stored: float32 unit quaternions. Optimisers hand us unnormalised ones (the
    renderers normalise too), so the container normalises on the way in; unit inputs pass unchanged."""
    q = np.asarray(quats, np.float64).reshape(n, 4)
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    if n and not (np.all(np.isfinite(q)) and norms.min() > 1e-12):
        raise MapError("a rotation quaternion is zero or non-finite")
    off = np.abs(norms[:, 0] - 1.0) > 1e-6  # leave unit inputs bit-identical (codec round trips)
    q[off] /= norms[off]
    return q.astype(np.float32)


@dataclass
class GaussianMap:
    sh_degree: int = 0
    tile_size: float = 2.0
    means: np.ndarray = field(default=None)  # type: ignore[assignment]
    quats: np.ndarray = field(default=None)  # type: ignore[assignment]
    log_scales: np.ndarray = field(default=None)  # type: ignore[assignment]
    opacity_logits: np.ndarray = field(default=None)  # type: ignore[assignment]
    sh: np.ndarray = field(default=None)  # type: ignore[assignment]
    ids: np.ndarray = field(default=None)  # type: ignore[assignment]
    levels: np.ndarray = field(default=None)  # type: ignore[assignment]
    next_id: int = 1
    # ids were assigned 1..N on load (the source had none): the codec may renumber them
    ids_implicit: bool = False

    def __post_init__(self) -> None:
        k = sh_coeffs(self.sh_degree)
        if self.means is not None and len(self.means):
            n = len(np.asarray(self.means).reshape(-1, 3))
            if self.ids is None:  # a scene without ids: 1..N in the given order
                self.ids, self.ids_implicit = np.arange(1, n + 1, dtype=np.uint64), True
            if self.levels is None:
                self.levels = np.zeros(n, np.uint8)
        if not self.tile_size > 0:
            raise MapError(f"tile_size must be > 0, got {self.tile_size}")
        empty = {
            "means": np.zeros((0, 3), np.float32),
            "quats": np.zeros((0, 4), np.float32),
            "log_scales": np.zeros((0, 3), np.float32),
            "opacity_logits": np.zeros((0,), np.float32),
            "sh": np.zeros((0, k, 3), np.float32),
            "ids": np.zeros((0,), np.uint64),
            "levels": np.zeros((0,), np.uint8),
        }
        for name, default in empty.items():
            value = getattr(self, name)
            setattr(self, name, default if value is None else np.ascontiguousarray(value, default.dtype))
        self._check_shapes()
        if len(self.ids):
            if np.any(self.ids[1:] <= self.ids[:-1]):
                raise MapError("Gaussian ids must be unique and sorted ascending")
            self.next_id = max(self.next_id, int(self.ids[-1]) + 1)
        self._reset_changes()

    # -- basic -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_sh(self) -> int:
        return sh_coeffs(self.sh_degree)

    def _check_shapes(self) -> None:
        n = len(self.ids)
        want = {
            "means": (n, 3),
            "quats": (n, 4),
            "log_scales": (n, 3),
            "opacity_logits": (n,),
            "sh": (n, self.num_sh, 3),
            "levels": (n,),
        }
        for name, shape in want.items():
            got = getattr(self, name).shape
            if got != shape:
                raise MapError(f"field {name!r} has shape {got}, expected {shape}")

    def validate(self) -> None:
        """Raise :class:`MapError` if any value is non-finite or a rotation is not unit length."""
        self._check_shapes()
        for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            arr = getattr(self, name)
            if not np.all(np.isfinite(arr)):
                bad = int(np.argwhere((~np.isfinite(arr.reshape(len(arr), -1))).any(axis=1))[0, 0])
                raise MapError(f"field {name!r} has a non-finite value at Gaussian id {int(self.ids[bad])}")
        norms = np.linalg.norm(self.quats, axis=1)
        if len(norms) and np.abs(norms - 1).max() > 1e-3:
            bad = int(np.argmax(np.abs(norms - 1)))
            raise MapError(
                f"rotation of Gaussian id {int(self.ids[bad])} is not unit length (|q| = {norms[bad]:.4f})"
            )

    def copy(self) -> GaussianMap:
        return GaussianMap(
            self.sh_degree,
            self.tile_size,
            **{n: getattr(self, n).copy() for n in _FIELDS},
            ids=self.ids.copy(),
            next_id=self.next_id,
            ids_implicit=self.ids_implicit,
        )

    def subset(self, rows: np.ndarray) -> GaussianMap:
        """A new map with the given rows (bool mask or sorted row indices); ids are kept."""
        return GaussianMap(
            self.sh_degree,
            self.tile_size,
            **{n: getattr(self, n)[rows] for n in _FIELDS},
            ids=self.ids[rows],
            next_id=self.next_id,
            ids_implicit=self.ids_implicit,
        )

    def tile_coords(self) -> np.ndarray:
        return np.floor(self.means / self.tile_size).astype(np.int64)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row index of each id; :class:`MapError` if any id is not in the map."""
        ids = np.asarray(ids, dtype=np.uint64)
        rows = np.searchsorted(self.ids, ids)
        ok = rows < len(self.ids)
        ok[ok] = self.ids[rows[ok]] == ids[ok]
        if not ok.all():
            raise MapError(f"unknown Gaussian id {int(ids[~ok][0])}")
        return rows

    # -- edits (recorded for take_changes) ---------------------------------------------------------
    def add(self, means, quats, log_scales, opacity_logits, sh, levels=None, ids=None) -> np.ndarray:
        """Append Gaussians; returns their new ids. ``ids`` may be given (e.g. by a receiver
        rebuilding a sender's map) and must all exceed the current largest id."""
        means = np.asarray(means, np.float32).reshape(-1, 3)
        n = len(means)
        if ids is None:
            ids = np.arange(self.next_id, self.next_id + n, dtype=np.uint64)
        else:
            ids = np.asarray(ids, np.uint64)
            if len(ids) != n or (
                n and (np.any(ids[1:] <= ids[:-1]) or (len(self.ids) and ids[0] <= self.ids[-1]))
            ):
                raise MapError("explicit ids must be ascending and larger than every existing id")
        if n == 0:
            return ids
        new = {
            "means": means,
            "quats": unit_quaternions(quats, n),
            "log_scales": np.asarray(log_scales, np.float32).reshape(n, 3),
            "opacity_logits": np.asarray(opacity_logits, np.float32).reshape(n),
            "sh": np.asarray(sh, np.float32).reshape(n, self.num_sh, 3),
            "levels": np.zeros(n, np.uint8) if levels is None else np.asarray(levels, np.uint8).reshape(n),
        }
        for name, arr in new.items():
            setattr(self, name, np.concatenate([getattr(self, name), arr]))
        self.ids = np.concatenate([self.ids, ids])
        self.next_id = int(ids[-1]) + 1
        self.ids_implicit = False  # an edited map's ids are its own (a receiver may hold them)
        self._added.update(ids.tolist())
        self._touch(new["means"])
        return ids

    def update(self, ids, **fields) -> None:
        """Overwrite fields (``means=…``, ``sh=…``, …) of existing Gaussians by id."""
        rows = self.rows_of(ids)
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise MapError(f"cannot update unknown field {sorted(unknown)[0]!r}")
        if "means" in fields:
            self._touch(self.means[rows])  # the old tile changes too when a Gaussian moves
        if "quats" in fields:
            fields["quats"] = unit_quaternions(fields["quats"], len(rows))
        for name, value in fields.items():
            arr = getattr(self, name)
            arr[rows] = np.asarray(value, arr.dtype).reshape((len(rows),) + arr.shape[1:])
        self._touch(self.means[rows])
        fresh = np.asarray(ids, np.uint64).tolist()
        self._updated.update(i for i in fresh if i not in self._added)

    def remove(self, ids) -> None:
        rows = self.rows_of(ids)
        self._touch(self.means[rows])
        keep = np.ones(len(self.ids), bool)
        keep[rows] = False
        for name in _FIELDS:
            setattr(self, name, getattr(self, name)[keep])
        self.ids = self.ids[keep]
        self.ids_implicit = False  # the rest keep their ids: no longer 1..N in row order
        for i in np.asarray(ids, np.uint64).tolist():
            if i in self._added:
                self._added.discard(i)  # added and removed in the same interval: nothing to send
            else:
                self._removed.add(i)
            self._updated.discard(i)
        self._bound_record()

    def clear(self) -> None:
        self.remove(self.ids.copy())

    def take_changes(self) -> ChangeSet:
        """What changed since the previous call; resets the record."""

        def arr(s):
            return np.array(sorted(s), dtype=np.uint64)

        out = ChangeSet(
            arr(self._added),
            arr(self._updated),
            arr(self._removed),
            np.array(sorted(self._tiles), dtype=np.int64),
            self._overflowed,
        )
        self._reset_changes()
        return out

    def nbytes(self) -> int:
        """Bytes held: every field, the ids, and the change record (~64 bytes per set entry)."""
        record = sum(len(x) for x in (self._added, self._updated, self._removed, self._tiles))
        return sum(getattr(self, n).nbytes for n in _FIELDS + ("ids",)) + 64 * record

    def _bound_record(self) -> None:
        """Keep the change record's memory bounded when nobody takes it (an offline mapping run, a long
        drive): removed ids and touched tiles only grow, so once they outnumber the map (and a floor)
        the record is dropped and the next ChangeSet says ``overflowed``: a delta is then no smaller
        than comparing the whole map by id."""
        limit = max(len(self.ids), CHANGE_RECORD_MIN)
        if len(self._removed) > limit or len(self._tiles) > limit:
            self._reset_changes()
            self._overflowed = True

    def _reset_changes(self) -> None:
        self._overflowed = False
        self._added: set[int] = set()
        self._updated: set[int] = set()
        self._removed: set[int] = set()
        self._tiles: set[int] = set()

    def _touch(self, means: np.ndarray) -> None:
        if len(means):
            self._tiles.update(pack_tile(np.floor(means / self.tile_size).astype(np.int64)).tolist())
            self._bound_record()

    # -- derived quantities ------------------------------------------------------------------------
    def opacities(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.opacity_logits.astype(np.float64)))

    def scales(self) -> np.ndarray:
        return np.exp(self.log_scales.astype(np.float64))

    def colors(self) -> np.ndarray:
        """View-independent RGB in [0, 1] from the DC coefficient."""
        return np.clip(SH_C0 * self.sh[:, 0, :] + 0.5, 0.0, 1.0)

    def equals(self, other: GaussianMap) -> bool:
        """Bit-exact equality of every field and id (what a receiver must reproduce)."""
        if self.sh_degree != other.sh_degree or len(self) != len(other):
            return False
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in _FIELDS + ("ids",))
