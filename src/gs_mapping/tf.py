"""A TF buffer: the ``/tf`` + ``/tf_static`` tree, looked up through any chain and interpolated in time.

Each edge of the tree stores ``T_parent_child`` samples sorted by stamp. A lookup walks both frames up
to their common ancestor, samples every edge on the way at the requested stamp and composes:
``T_target_source = inv(T_anc_target) @ T_anc_source``. Between two samples translation is linear and
rotation is slerped; static edges (``/tf_static``) hold at every time (a recording's re-published
static value from the time it was logged, picked by the log time of the message looked up for:
:meth:`TFBuffer.add`, :meth:`TFBuffer.lookup`). Outside an edge's data the
nearest sample is used if the gap is within ``extrapolation_tolerance_s``; beyond it the lookup raises
:class:`ExtrapolationError` naming the frames, the stamp asked for and the range held.

A frame's transform may change parent, or switch between ``/tf_static`` and ``/tf`` (robot_state_publisher
given a new ``robot_description`` re-mounts a camera): as in tf2 (``BufferCore::setTransformImpl``) the
new one is taken and the frame's transforms start anew from it; a recording read whole keeps the
earlier ones for what was logged before it (:meth:`TFBuffer.add`). Refused: a loop, and two parents
for one frame in one message. Differences from tf2 (on purpose): small extrapolation is allowed by a
configurable tolerance (tf2 allows none). ``stamp_ns=None`` asks for the latest time all edges on the
path share (tf2's ``Time(0)``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, ExtrapolationError, TFError, UnknownFrameError
from .geometry import Transform, TransformStamped, check_quaternion, slerp

_NEWEST = 2**63 - 1  # a stamp after every other: a static edge's newest value


def _since(edge: _Edge) -> int:
    """When ``edge`` took its child over (before every other time when from the start)."""
    return -_NEWEST if edge.since is None else edge.since


@dataclass
class TFConfig:
    """TF buffer settings (section ``tf`` where a component embeds it)."""

    cache_time_s: float = 10.0  # dynamic samples older than newest − this are dropped; ≤ 0: keep all
    extrapolation_tolerance_s: float = 0.05  # lookups this far outside an edge's data use its end sample


@dataclass(frozen=True)
class EdgeInfo:
    """Summary of one edge: ``parent`` → ``child``, static or not, samples held and their span."""

    child: str
    parent: str
    static: bool
    count: int
    first_ns: int
    last_ns: int


# a moving edge whose samples all lie within this of its first (m; quaternion components, squared
# in 1 - |q.q0|) has not moved: float noise of a fixed transform re-sent on /tf
_STILL = 1e-6


class _Edge:
    """Samples of ``T_parent_child``: stamps ascending, with translations and rotations alongside.

    Held in growing numpy arrays (int64 stamps, (n, 3) translations, (n, 4) rotations: 64 bytes a
    sample, tf2's TransformStorage is 80), not a pair of small arrays a sample (~450 bytes): ``map``
    holds a bag's whole TF, an hour of a robot's /tf is millions of samples. ``[lo, hi)`` is live:
    pruning the oldest moves ``lo``, adding one moves ``hi`` (at the end: compacted, grown by half
    where more than half is live)."""

    __slots__ = (
        "parent",
        "child",
        "static",
        "since",
        "varies",
        "_first",
        "_stamps",
        "_trans",
        "_rots",
        "_lo",
        "_hi",
    )

    def __init__(self, parent: str, child: str, static: bool, since: int | None = None):
        self.parent, self.child, self.static = parent, child, static
        self.since = since  # log time this edge took the child over (a recording's; None: from the start)
        # whether a moving edge's value ever changed: a fixed extrinsic re-sent on /tf (realsense-ros'
        # tf_publish_rate, ROS 1's static_transform_publisher) is no motion (:func:`is_world_frame`)
        self.varies = False
        self._first: tuple[np.ndarray, np.ndarray] | None = None
        self.clear()

    def clear(self, capacity: int = 4) -> None:
        self._stamps = np.empty(capacity, np.int64)
        self._trans = np.empty((capacity, 3), np.float64)
        self._rots = np.empty((capacity, 4), np.float64)
        self._lo = self._hi = 0

    @property
    def stamps(self) -> np.ndarray:
        """The live samples' stamps (a view: read only)."""
        return self._stamps[self._lo : self._hi]

    def __len__(self) -> int:
        return self._hi - self._lo

    def _transform(self, i: int) -> Transform:  # (copies: the arrays change under a kept one)
        return Transform(self._trans[self._lo + i].copy(), self._rots[self._lo + i].copy())

    def insert(self, stamp: int, t: np.ndarray, q: np.ndarray, since_ns: int | None = None) -> None:
        if self.static and since_ns is None:  # latest static value wins; it holds at all times
            self._lo, self._hi = 0, 1
            self._put(0, stamp, t, q)
            return
        if self.static:  # (a recording's: each value kept from the time it was logged, :meth:`TFBuffer.add`)
            stamp = since_ns
        i = self._lo + int(np.searchsorted(self.stamps, stamp))
        if i < self._hi and self._stamps[i] == stamp:  # same stamp again: replace
            self._trans[i], self._rots[i] = t, q
            return
        if self._hi == len(self._stamps):  # full: compact, and grow by half when more than half is live
            n, cap = len(self), len(self._stamps)
            grow = cap + max(cap // 2, 1) if 2 * n > cap else cap
            for name in ("_stamps", "_trans", "_rots"):
                old = getattr(self, name)
                new = np.empty((grow, *old.shape[1:]), old.dtype)
                new[:n] = old[self._lo : self._hi]
                setattr(self, name, new)
            i -= self._lo
            self._lo, self._hi = 0, n
        if i < self._hi:  # (out of order: the later samples move up one)
            for a in (self._stamps, self._trans, self._rots):
                a[i + 1 : self._hi + 1] = a[i : self._hi].copy()
        self._hi += 1
        self._put(i, stamp, t, q)

    def _put(self, i: int, stamp: int, t: np.ndarray, q: np.ndarray) -> None:
        self._stamps[i], self._trans[i], self._rots[i] = stamp, t, q
        if self.static or self.varies:
            return
        if self._first is None:
            self._first = (np.array(t, np.float64), np.array(q, np.float64))
        else:  # (q and -q are one rotation)
            t0, q0 = self._first
            self.varies = bool(np.abs(t - t0).max() > _STILL or 1.0 - abs(float(np.dot(q, q0))) > _STILL**2)

    def prune(self, keep_after: int) -> None:
        i = int(np.searchsorted(self.stamps, keep_after))
        i = min(i, len(self) - 1)  # never drop the newest sample
        if i > 0:
            self._lo += i

    def no_sample(self, lookup: str) -> ExtrapolationError:
        """The error of a moving edge cleared when time went back and given no sample since."""
        return ExtrapolationError(
            f"{lookup}: edge {self.parent} -> {self.child} has no sample since time went back",
            future=True,
            gap_ns=0,
        )

    def sample(
        self, stamp: int, tolerance_ns: int, lookup: str, future_ns: int | None = None, logged: int = _NEWEST
    ) -> Transform:
        s = self.stamps
        if self.static:  # the value logged last at or before ``logged``; the first where none was
            i = max(int(np.searchsorted(s, logged, "right")) - 1, 0) if len(s) > 1 else 0
            return self._transform(i)
        if not len(s):
            raise self.no_sample(lookup)
        i = int(np.searchsorted(s, stamp))
        if i < len(s) and s[i] == stamp:
            return self._transform(i)
        if 0 < i < len(s):
            t0, t1 = int(s[i - 1]), int(s[i])  # (Python ints: no int64 overflow in the differences)
            a = (stamp - t0) / (t1 - t0)
            t, q = self._trans[self._lo :], self._rots[self._lo :]
            return Transform((1.0 - a) * t[i - 1] + a * t[i], slerp(q[i - 1], q[i], a))
        j = 0 if i == 0 else len(s) - 1
        gap = abs(stamp - int(s[j]))
        if i != 0 and future_ns is not None:  # (after the last sample: the next may be on its way)
            tolerance_ns = future_ns
        if gap <= tolerance_ns:
            return self._transform(j)
        side = "before the first" if i == 0 else "after the last"
        raise ExtrapolationError(
            f"{lookup}: extrapolation on edge {self.parent} -> {self.child}: stamp {stamp} ns is "
            f"{gap / 1e9:.6f} s {side} sample (data from {s[0]} to {s[-1]} ns, {len(s)} samples; "
            f"tolerance {tolerance_ns / 1e9:g} s)",
            future=i != 0,
            gap_ns=gap,
        )


class TFBuffer:
    """The TF tree. ``add`` edges (from ``/tf`` or ``/tf_static``), ``lookup(target, source, stamp)``."""

    def __init__(self, cache_time_s: float | None = 10.0, extrapolation_tolerance_s: float = 0.05):
        if extrapolation_tolerance_s < 0:
            raise TFError(f"extrapolation_tolerance_s must be ≥ 0, got {extrapolation_tolerance_s}")
        self.cache_ns = None if not cache_time_s or cache_time_s <= 0 else int(round(cache_time_s * 1e9))
        self.tolerance_ns = int(round(extrapolation_tolerance_s * 1e9))
        self._edges: dict[str, _Edge] = {}  # child → edge (its newest mount)
        # child → a recording's earlier mounts (their log times, the edges), by log time
        self._older: dict[str, tuple[list[int], list[_Edge]]] = {}
        self._frames: set[str] = set()
        self._refused: dict[str, str] = {}  # child frame never added → why its last transform was refused
        self.time_jumps = 0  # times time went back: moving transforms forgotten (:meth:`forget_moving`)

    @classmethod
    def from_config(cls, cfg: TFConfig) -> TFBuffer:
        return cls(cfg.cache_time_s, cfg.extrapolation_tolerance_s)

    # -- filling ---------------------------------------------------------------------------------
    def add(self, ts: TransformStamped, static: bool = False, since_ns: int | None = None) -> None:
        """Add one ``T_parent_child`` sample. Raises :class:`TFError` on an invalid or conflicting edge
        (remembered: a later lookup of a frame whose every transform was refused says why).

        A static value replaces the one before (tf2's rule, for a buffer filled as TF arrives), unless
        ``since_ns`` gives the time it was logged (a recording's TF read whole before its images):
        then every value is kept and a lookup uses the one logged last at or before the log time it
        is given (``logged_ns``: the message it poses was logged then; the first where none was yet),
        as tf2 fed the recording in its order would. Log times, not header stamps: a simulator's
        recording stamps its headers on the sim clock and logs on the wall clock.

        A sample with another parent or kind (static, dynamic) than the frame's is a new mount
        (:meth:`_mount`): the frame's transforms start anew from it; given ``since_ns`` (any sample of
        a recording: its log time) the earlier mount still serves lookups logged before it."""
        try:
            self._add(ts, static, since_ns)
        except TFError as exc:
            child = str(ts.child).lstrip("/")
            if child and child not in self._frames and (child in self._refused or len(self._refused) < 1024):
                self._refused[child] = str(exc)  # (bounded: a hostile stream of names cannot grow it)
            raise

    def _add(self, ts: TransformStamped, static: bool, since_ns: int | None) -> None:
        parent, child = str(ts.parent).lstrip("/"), str(ts.child).lstrip("/")
        where = f"transform {parent or '?'} -> {child or '?'} at {ts.stamp_ns} ns"
        if not parent or not child:
            raise TFError(f"{where}: empty frame id")
        if parent == child:
            raise TFError(f"{where}: a frame cannot be its own parent")
        q = check_quaternion(ts.transform.rotation, f"{where}: rotation")
        t = np.asarray(ts.transform.translation, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(t)):
            raise TFError(f"{where}: translation has a non-finite component: {t.tolist()}")
        stamp = int(ts.stamp_ns)
        edge = self._edges.get(child)
        if edge is None:
            self._check_no_cycle(parent, child, where)
            edge = self._edges[child] = _Edge(parent, child, bool(static), since_ns)
            self._frames.update((parent, child))
        else:
            edge = self._mount(edge, parent, bool(static), since_ns, where)
        if (
            not edge.static
            and self.cache_ns is not None
            and len(edge)
            and stamp < int(edge.stamps[-1]) - self.cache_ns
        ):
            # older than the cache keeps: time went back (a bag played in a loop on a clock that does
            # not jump itself); else the new samples were pruned as they came and no lookup worked again
            self.forget_moving()
        edge.insert(stamp, t, q, since_ns if static else None)
        if not edge.static and self.cache_ns is not None:
            edge.prune(int(edge.stamps[-1]) - self.cache_ns)

    def _mount(self, edge: _Edge, parent: str, static: bool, since_ns: int | None, where: str) -> _Edge:
        """The edge of ``edge.child`` a sample (``parent``, ``static``, logged at ``since_ns``) goes to.
        Another parent or kind is a new mount, taken as tf2 takes it: the child's transforms start
        anew. Live (``since_ns`` None) the old ones are dropped; a recording read whole keeps them for
        lookups logged before ``since_ns`` (its frames were posed through them when they arrived)."""
        child = edge.child
        at = edge if since_ns is None else self._mount_at(child, since_ns)  # (in force when logged)
        if at.parent == parent and at.static == static:
            return at
        if parent != edge.parent:
            self._check_no_cycle(parent, child, where)
        self._frames.add(parent)
        new = _Edge(parent, child, static, since_ns)
        if since_ns is None:
            self._older.pop(child, None)
            self._edges[child] = new
            return new
        keys, older = self._older.setdefault(child, ([], []))
        if since_ns >= _since(edge):  # the newest mount
            keys.append(_since(edge))
            older.append(edge)
            self._edges[child] = new
        else:  # (logged before the newest: a recording fed out of log order)
            i = bisect.bisect_right(keys, since_ns)
            keys.insert(i, since_ns)
            older.insert(i, new)
        return new

    def _mount_at(self, child: str, logged_ns: int | None) -> _Edge:
        """``child``'s mount in force at log time ``logged_ns`` (None: the newest; the first before all)."""
        edge = self._edges[child]
        if logged_ns is None or child not in self._older or logged_ns >= _since(edge):
            return edge
        keys, older = self._older[child]
        return older[max(bisect.bisect_right(keys, logged_ns) - 1, 0)]

    def forget_moving(self) -> None:
        """Forget every moving (``/tf``) transform, keeping the static ones: time went back (a
        simulator reset, a bag played in a loop), as tf2_ros clears its buffer on a backward jump of
        its clock. Counted in ``time_jumps``."""
        for e in [*self._edges.values(), *(e for _, older in self._older.values() for e in older)]:
            if not e.static:
                e.clear()
        self.time_jumps += 1

    def _check_no_cycle(self, parent: str, child: str, where: str) -> None:
        frame: str | None = parent
        while frame is not None:
            if frame == child:
                raise TFError(f"{where}: would close a loop ({child} is an ancestor of {parent})")
            edge = self._edges.get(frame)
            frame = edge.parent if edge is not None else None

    def add_message(self, msg, static: bool = False, since_ns: int | None = None) -> None:
        """Add every transform of a ``tf2_msgs/msg/TFMessage`` (rclpy or rosbags object).

        A bad transform (NaN, non-unit quaternion, conflicting parent) does not cost the good ones in
        the same message: they are added, then the first error is raised with a count of the others.
        ``since_ns``: see :meth:`add`."""
        from .messages import transform_stamped_from_msg

        errors: list[TFError] = []
        parents: dict[str, str] = {}  # child → its parent in this message
        for t in msg.transforms:
            try:
                ts = transform_stamped_from_msg(t)
                parent, child = str(ts.parent).lstrip("/"), str(ts.child).lstrip("/")
                if parents.setdefault(child, parent) != parent:  # (which is meant? neither is guessed)
                    raise TFError(
                        f"transform {parent} -> {child} at {ts.stamp_ns} ns: the same message gives "
                        f"{child} another parent, {parents[child]}; a frame has one parent at a time"
                    )
                self.add(ts, static, since_ns)
            except TFError as exc:
                errors.append(exc)
        if errors:
            more = f" (and {len(errors) - 1} more bad transforms in this message)" if len(errors) > 1 else ""
            raise type(errors[0])(f"{errors[0]}{more}") from errors[0]

    # -- queries ---------------------------------------------------------------------------------
    def frames(self) -> dict[str, str]:
        """``{child: parent}`` for every edge."""
        return {c: e.parent for c, e in sorted(self._edges.items())}

    def all_frames(self) -> list[str]:
        """Every frame seen, roots included."""
        return sorted(self._frames)

    def has_frame(self, frame: str) -> bool:
        return frame.lstrip("/") in self._frames

    def root(self, frame: str, logged_ns: int | None = None) -> str:
        """The top of ``frame``'s tree (``frame`` itself when it has no parent); ``logged_ns``: see
        :meth:`lookup`."""
        chain = self._chain(frame.lstrip("/"), logged_ns)
        return chain[-1].parent if chain else frame.lstrip("/")

    def edges(self) -> list[EdgeInfo]:
        return [
            EdgeInfo(
                c,
                e.parent,
                e.static,
                len(e),
                int(e.stamps[0]) if len(e) else 0,
                int(e.stamps[-1]) if len(e) else 0,
            )
            for c, e in sorted(self._edges.items())
        ]

    def is_static(self, child: str) -> bool:
        return self._edge(child).static

    def moves(self, frame: str, logged_ns: int | None = None) -> bool:
        """Whether a dynamic (``/tf``) transform lies between ``frame`` and its tree's root."""
        return any(not e.static for e in self._chain(frame.lstrip("/"), logged_ns))

    def _edge(self, child: str) -> _Edge:
        try:
            return self._edges[child]
        except KeyError:
            raise self._unknown(child) from None

    def _unknown(self, frame: str) -> UnknownFrameError:
        known = ", ".join(sorted(self._frames)) or "none (no transform received yet)"
        if frame in self._refused:
            return UnknownFrameError(
                f"frame {frame!r}: every transform to it was refused, the last: {self._refused[frame]} "
                f"(known frames: {known})"
            )
        return UnknownFrameError(
            f"frame {frame!r} never appeared in /tf or /tf_static (known frames: {known})"
        )

    def _chain(self, frame: str, logged_ns: int | None = None) -> list[_Edge]:
        """Edges from ``frame`` up to its root (child-most first): each frame's mount in force at
        ``logged_ns`` (None: the newest)."""
        if frame not in self._frames:
            raise self._unknown(frame)
        chain: list[_Edge] = []
        while frame in self._edges:
            edge = self._mount_at(frame, logged_ns)
            if len(chain) > len(self._edges):  # (mounts of different times can close a loop)
                raise TFError(f"TF of {chain[0].child} logged at {logged_ns} ns loops through {frame}")
            chain.append(edge)
            frame = edge.parent
        return chain

    def _path(
        self, target: str, source: str, logged_ns: int | None = None
    ) -> tuple[list[_Edge], list[_Edge]]:
        """Edges from source up to the common ancestor, and from target up to it."""
        target, source = target.lstrip("/"), source.lstrip("/")
        up_s, up_t = self._chain(source, logged_ns), self._chain(target, logged_ns)
        frames_s = [source] + [e.parent for e in up_s]
        frames_t = [target] + [e.parent for e in up_t]
        common = set(frames_s) & set(frames_t)
        if not common:
            raise TFError(
                f"frames {target} and {source} are not connected (roots {frames_t[-1]} and {frames_s[-1]})"
            )
        anc = next(f for f in frames_s if f in common)
        return up_s[: frames_s.index(anc)], up_t[: frames_t.index(anc)]

    def latest_common_stamp(self, target: str, source: str) -> int | None:
        """Latest stamp every dynamic edge between the frames has data for (None: all static).
        :class:`ExtrapolationError` when an edge has none (emptied when time went back)."""
        src, tgt = self._path(target, source)
        return self._latest(src + tgt, f"latest common time of {target} <- {source}")

    def earliest_common_stamp(self, target: str, source: str, logged_ns: int | None = None) -> int | None:
        """First stamp every dynamic edge between the frames has data for (None: all static)."""
        src, tgt = self._path(target, source, logged_ns)
        moving = [e for e in src + tgt if not e.static]
        for e in moving:
            if not len(e):
                raise e.no_sample(f"earliest common time of {target} <- {source}")
        return max(int(e.stamps[0]) for e in moving) if moving else None

    @staticmethod
    def _latest(edges: list[_Edge], what: str) -> int | None:
        moving = [e for e in edges if not e.static]
        for e in moving:
            if not len(e):
                raise e.no_sample(what)
        return min(int(e.stamps[-1]) for e in moving) if moving else None

    def lookup(
        self,
        target: str,
        source: str,
        stamp_ns: int | None,
        future_tolerance_ns: int | None = None,
        logged_ns: int | None = None,
    ) -> Transform:
        """``T_target_source`` at ``stamp_ns`` (maps points in ``source`` into ``target``).

        ``future_tolerance_ns``: how far past an edge's last sample its last sample still serves
        (default: the buffer's tolerance, as before its first); 0 for a live lookup that can wait
        for the next sample instead (tf2 never extrapolates into the future).

        ``logged_ns``: when the message looked up for was logged, which picks a recording's static
        values (:meth:`add`'s ``since_ns``, on the same clock); None: their newest.

        ``stamp_ns=None``: at the latest time every edge on the path has data for. A frame to itself
        is the identity, known or not (as in tf2: a camera needs no TF to its own frame).
        """
        if target.lstrip("/") == source.lstrip("/") and target.strip("/"):
            return Transform()
        src, tgt = self._path(target, source, logged_ns)
        if stamp_ns is None:  # (all static: 0, unused)
            stamp_ns = self._latest(src + tgt, f"lookup {target} <- {source} at the latest time") or 0
        stamp, logged = int(stamp_ns), _NEWEST if logged_ns is None else int(logged_ns)
        what = f"lookup {target} <- {source} at {stamp} ns"
        tol = self.tolerance_ns

        def up(chain: list[_Edge]) -> Transform | None:  # T_ancestor_frame; None: the identity
            out = None
            for edge in reversed(chain):
                sample = edge.sample(stamp, tol, what, future_tolerance_ns, logged)
                out = sample if out is None else out @ sample
            return out

        T_anc_source, T_anc_target = up(src), up(tgt)
        if T_anc_target is None:
            return T_anc_source if T_anc_source is not None else Transform()
        if T_anc_source is None:
            return T_anc_target.inverse()
        return T_anc_target.inverse() @ T_anc_source

    def can_transform(self, target: str, source: str, stamp_ns: int | None) -> bool:
        try:
            self.lookup(target, source, stamp_ns)
        except TFError:
            return False
        return True

    def __len__(self) -> int:
        return len(self._edges)


class RecordedTF:
    """A recording's TF messages added to ``buf`` as tf2 takes them (``BufferCore::setTransformImpl``):
    a bad transform (NaN, a non-unit quaternion such as a ROS 1 node's unset (0, 0, 0, 0), a second
    parent) is refused and every other one kept; the first refusal is said (``log``, prefixed
    ``where``), the others counted (:meth:`log_total`). ``strict``: the first is raised instead."""

    def __init__(self, buf: TFBuffer, log, where: str = "", strict: bool = False):
        self.buf, self.log, self.where, self.strict = buf, log, where, strict
        self.refused = 0  # messages with a bad transform

    def add(self, topic: str, msg, static: bool, since_ns: int | None = None) -> None:
        from .errors import GsMappingError

        try:
            self.buf.add_message(msg, static=static, since_ns=since_ns)
        except GsMappingError as exc:
            if self.strict:
                raise type(exc)(f"{self.where}{topic}: {exc}") from exc
            self.refused += 1
            if self.refused == 1:
                self.log.warning(f"{self.where}{topic}: bad transform message ignored: {exc}")

    def log_total(self) -> None:
        if self.refused > 1:
            self.log.warning(f"{self.where}{self.refused} bad transform messages ignored in all")


def lookup_in_map(
    tf: TFBuffer,
    map_frame: str,
    frame: str,
    stamp_ns: int | None,
    future_tolerance_ns: int | None = None,
    logged_ns: int | None = None,
) -> np.ndarray:
    """4x4 ``T_map_frame`` from TF (:meth:`TFBuffer.lookup`), a frame from before a localisation
    that started late held back through its first fix (:func:`held_back`); TF's error otherwise."""
    try:
        return tf.lookup(map_frame, frame, stamp_ns, future_tolerance_ns, logged_ns).matrix()
    except ExtrapolationError as exc:
        held = (
            None
            if exc.future or stamp_ns is None
            else held_back(tf, map_frame, frame, stamp_ns, future_tolerance_ns, logged_ns)
        )
        if held is None:
            raise
        return held


def first_fix(tf: TFBuffer, map_frame: str, child: str, logged_ns: int | None = None) -> np.ndarray:
    """4x4 ``T_map_child`` at the first stamp TF holds for every moving edge between them: the
    localisation's first fix (``map <- odom``). :class:`TFError` when there is none."""
    first = tf.earliest_common_stamp(map_frame, child, logged_ns)
    return tf.lookup(map_frame, child, first, logged_ns=logged_ns).matrix()


def held_back(
    tf: TFBuffer,
    map_frame: str,
    frame: str,
    stamp_ns: int,
    future_tolerance_ns: int | None = None,
    logged_ns: int | None = None,
) -> np.ndarray | None:
    """``T_map_frame`` of a frame from before ``map`` reached its tree: a localisation that started
    late (REP 105's ``map -> odom`` from some time on, odometry before). The frame's pose in the
    map's child (``odom``) at ``stamp_ns``, carried into the map by the first ``map <- odom``: the
    localisation's first fix holds for the odometry before it, so what is mapped before and after
    is one map. Only that edge is held back (odometry that starts late is no pose); None: not
    this case, the lookup's error stands. The odometry is looked up with the caller's
    ``future_tolerance_ns`` (:meth:`TFBuffer.lookup`): a stamp past its last sample raises, as the
    lookup in ``map`` would, so that a live node waits for the next (a fix stamped ahead of the
    frames, as nav2's AMCL stamps it, comes before the odometry of the frames it holds for)."""
    frame = frame.lstrip("/")
    below = _below_map(tf, map_frame, frame, logged_ns)
    if below is None or all(e.static for e in below):
        # (no odometry under the map's child: the moving ``map -> base_link`` of a SLAM or a
        # dataset's ground truth is the frame's own motion, which starting late is no pose)
        return None
    odom = below[-1].parent
    first = tf.earliest_common_stamp(map_frame, odom, logged_ns)
    if first is None or first <= stamp_ns:  # (map reaches odom by then: the error is elsewhere)
        return None
    try:
        T_odom_frame = tf.lookup(odom, frame, stamp_ns, future_tolerance_ns, logged_ns).matrix()
    except ExtrapolationError as exc:
        if exc.future:  # (the odometry after the stamp may be on its way: the caller waits for it)
            raise
        return None
    except TFError:
        return None
    return first_fix(tf, map_frame, odom, logged_ns) @ T_odom_frame


class MapPoses:
    """``T_map_frame`` from a :class:`TFBuffer`, or — when the tree has no ``map_frame`` — relative to
    the first pose asked for: the map is then the first frame's pose (said once, in the log).

    Robots often record only ``odom → base_link → …``; mapping in the first camera frame is then the
    only honest choice (odom drifts, but so would any other anchor). A localisation that starts
    later (AMCL, slam_toolbox: ``map -> odom``) ends the anchor, once: from the first lookup after
    ``map_frame`` reaches the anchor's root, every pose is TF's ``map <- frame`` (held back through
    the first fix before it, :func:`held_back`), and ``on_reanchor(T_map_anchor)`` is called first,
    before any such pose is returned, so that the owner moves what it built in the anchor's frame
    into TF's map by that one rigid transform (the first fix, composed as :func:`held_back` composes
    it: what was mapped before and after is one map). Later fixes (``map -> odom`` jumping as the
    localisation corrects the odometry) move the poses, never the map again. ``on_anchor()`` is
    called when the anchor is set, before its first pose is returned (what the owner holds in TF's
    map already, a loaded map, is not in the anchor's frame).

    ``live``: TF is still arriving (a node). A tree that only static transforms reach from the frame
    is then not anchored to: its root moves with the robot (``base_link``), and the ``map`` or
    ``odom`` transform may be a message behind (rclpy's executor serves the camera's subscriptions
    before /tf's); anchoring there froze every later pose at the first. The lookup fails as "may
    arrive" instead, so the node waits for it (``tf_wait_s``). A bag's TF is read whole first: a
    static-only tree there is a camera that does not move (a tripod), where the bag's TF has no
    moving tree; beside one that moves it is a camera not connected to the robot (tf2's "two or
    more unconnected trees": a URDF rooted at ``base_link`` beside ``odom -> base_footprint``),
    an error naming both roots."""

    def __init__(
        self, tf: TFBuffer, map_frame: str, log=None, live: bool = False, on_reanchor=None, on_anchor=None
    ):
        self.tf, self.map_frame, self.log, self.live = tf, map_frame.lstrip("/"), log, live
        self.on_reanchor = on_reanchor  # called with T_map_anchor (4x4) when a late map ends the anchor
        self.on_anchor = on_anchor  # called (no argument) when the anchor is set, before its first pose
        self.anchor: tuple[str, np.ndarray] | None = None  # (root frame, T_first_root)
        self.map_came_late = False  # TF gained map_frame after the anchor was set: the map moved into it
        self._said_unconnected = False

    def lookup(
        self,
        frame: str,
        stamp_ns: int | None,
        future_tolerance_ns: int | None = None,
        logged_ns: int | None = None,
    ) -> np.ndarray:
        """4x4 ``T_map_frame`` at ``stamp_ns``; :class:`TFError` naming the frames when unknown.
        ``future_tolerance_ns``, ``logged_ns``: see :meth:`TFBuffer.lookup`."""
        if self.anchor is not None and self.tf.has_frame(self.map_frame):
            self._reanchor(logged_ns)
        if self.anchor is None and self.tf.has_frame(self.map_frame):
            return lookup_in_map(self.tf, self.map_frame, frame, stamp_ns, future_tolerance_ns, logged_ns)
        if self.anchor is None:
            self._anchor(frame, stamp_ns, logged_ns)
        assert self.anchor is not None
        root, T_first_root = self.anchor
        return T_first_root @ self.tf.lookup(root, frame, stamp_ns, future_tolerance_ns, logged_ns).matrix()

    def _anchor(self, frame: str, stamp_ns: int | None, logged_ns: int | None) -> None:
        """Anchor the map to ``frame``'s pose at ``stamp_ns`` in its tree's root (no map frame)."""
        if not self.tf.has_frame(frame):
            raise UnknownFrameError(
                f"no TF for frame {frame!r} (and no {self.map_frame!r} frame); known frames: "
                f"{', '.join(self.tf.all_frames()) or 'none'}"
            )
        root = self.tf.root(frame, logged_ns)
        if self.live and not self.tf.moves(frame, logged_ns):
            raise UnknownFrameError(
                f"no {self.map_frame!r} frame, and only static transforms reach {frame!r} (root "
                f"{root}): waiting for the robot's moving transform (a camera that does not move: "
                f"set mapper.topics.map_frame to {root})"
            )
        static_only = not self.tf.moves(frame, logged_ns)
        moving = sorted({self.tf.root(e.child) for e in self.tf.edges() if not e.static} - {root})
        if static_only and moving:  # (a camera not connected to the robot, not a tripod)
            raise TFError(
                f"no {self.map_frame!r} frame, and TF has two or more unconnected trees: {frame} "
                f"reaches only static transforms (root {root}), the moving tree is rooted at "
                f"{', '.join(moving)}; publish the transform joining them (a camera that does not "
                f"move: set mapper.topics.map_frame to {root})"
            )
        T_root_first = self.tf.lookup(root, frame, stamp_ns, logged_ns=logged_ns).matrix()
        self.anchor = (root, np.linalg.inv(T_root_first))
        if self.log is not None:
            self.log.warning(
                f"TF has no frame {self.map_frame!r}: the map frame is the first frame's pose "
                f"({frame} at {stamp_ns} ns, tree root {root})"
            )
        if self.on_anchor is not None:
            self.on_anchor()

    def _reanchor(self, logged_ns: int | None) -> None:
        """End the anchor once ``map_frame`` reaches its root (a localisation started late):
        ``on_reanchor(T_map_anchor)``, then poses come from TF's map. A ``map`` not above the root
        (another tree), or no sample of its transform yet: the anchor stays (said once)."""
        assert self.anchor is not None
        root, T_first_root = self.anchor
        if self.map_frame not in [e.parent for e in self.tf._chain(root, logged_ns)]:
            if not self._said_unconnected and self.log is not None:
                self._said_unconnected = True
                self.log.warning(
                    f"TF has frame {self.map_frame!r}, but it does not reach {root} (the root this map "
                    f"is anchored in): the map stays in the first frame's pose until it does"
                )
            return
        try:
            T_map_root = first_fix(self.tf, self.map_frame, root, logged_ns)
        except TFError:  # (its samples cleared when time went back: the next one serves)
            return
        T_map_anchor = T_map_root @ np.linalg.inv(T_first_root)
        # The anchor ends before the move, so the map moves at most once: a move that raises (the
        # delta's publish after a Ctrl-C: rclpy's RCLError) is contained by the node, and tried again
        # at the next frame it would move what had moved (T·T·p). What such a failure leaves is the
        # owner's to say (mapper_node: the map moved, its delta lost as any lost delta, the next
        # snapshot brings the receivers along); poses come from TF's map from now on either way.
        self.anchor, self.map_came_late = None, True
        if self.on_reanchor is not None:
            self.on_reanchor(T_map_anchor)
        if self.log is not None:
            t = T_map_anchor[:3, 3]
            self.log.warning(
                f"TF gained frame {self.map_frame!r} (a localisation that started late) after the map was "
                f"anchored to the first frame's pose: the map built so far was moved into "
                f"{self.map_frame!r} by the localisation's first fix (translation "
                f"{t[0]:.3f} {t[1]:.3f} {t[2]:.3f} m); poses follow TF's {self.map_frame!r} from now on"
            )


def check_frame_id(option: str, frame: str) -> None:
    """ConfigError naming ``option`` for a frame id tf2 refuses (``BufferCore::validateFrameId``:
    empty, or starting with '/'), or one holding a NUL, which ends it for every C/C++ reader."""
    why = (
        "is empty"
        if not frame
        else "starts with '/' (tf2 refuses it: 'map', not '/map')"
        if frame.startswith("/")
        else "holds a NUL character"
        if "\0" in frame
        else ""
    )
    if why:
        raise ConfigError(f"{option}: the frame id {frame!r} {why}")


def odometry_frame(tf: TFBuffer, map_frame: str, frame: str, logged_ns: int | None = None) -> str | None:
    """The continuous frame to take ``frame``'s motion over a short time in (tf2's ``fixed_frame`` of
    ``lookupTransform(target, t, source, t_s, fixed_frame)``): REP 105's ``odom``, ``map_frame``'s
    child on ``frame``'s chain, found as :func:`held_back` finds it (``map`` jumps when a localisation
    corrects it; odometry does not). None where ``map``'s own poses serve: ``map_frame`` is not above
    ``frame`` (an anchored map, :class:`MapPoses`, whose root is continuous), or no moving transform
    lies below its child (a localisation or simulator publishing ``map -> base_link``: no odometry)."""
    frame, map_frame = frame.lstrip("/"), map_frame.lstrip("/")
    below = _below_map(tf, map_frame, frame, logged_ns)
    if not below or all(e.static for e in below):
        return None
    return below[-1].parent


def is_world_frame(
    tf: TFBuffer, frame: str, camera: str, map_frame: str = "map", logged_ns: int | None = None
) -> bool:
    """Whether ``frame`` is a world frame the ``camera`` moves in (``odom``, ``map``, FAST-LIO's
    ``camera_init``, a static child of one), not a sensor on the camera's rig. On the TF path
    between them, one side up to their common ancestor has a transform whose value changes (on
    /tf, not merely sent there: :attr:`_Edge.varies`) and the other none, and that ancestor is
    fixed in the world: nothing above it changes, or it is the odometry frame or above it
    (:func:`odometry_frame`: a localisation moves ``map -> odom``, not the world). So a tree with
    the camera moving under ``odom`` and one rooted at the robot with its world frames moving
    under it (the MRS UAV System's) both tell it, while a camera on a gimbal or a LiDAR on a
    spinning mount (their joints move under a body that moves in ``odom``) are sensors. A gimbal
    or spinning mount in a tree with no odometry above its body is taken for a world frame (the
    rule is then not applied: nothing wrong is dropped). False where the frames are unknown or not
    connected."""
    try:
        up_frame, up_camera = tf._path(camera, frame, logged_ns)
        ancestor = up_frame[-1].parent if up_frame else frame.lstrip("/")
        above = tf._chain(ancestor, logged_ns)
    except TFError:
        return False
    moving = [any(e.varies for e in side) for side in (up_frame, up_camera)]
    if moving[0] == moving[1]:
        return False
    if not any(e.varies for e in above):
        return True
    odom = odometry_frame(tf, map_frame, camera, logged_ns)
    return odom is not None and (
        ancestor == odom or ancestor in [e.parent for e in tf._chain(odom, logged_ns)]
    )


def _below_map(tf: TFBuffer, map_frame: str, frame: str, logged_ns: int | None) -> list | None:
    """The edges of ``frame``'s chain from it up to ``map_frame``'s child (the last edge's parent:
    ``odom``; none when ``frame`` is that child), or None where ``map_frame`` is not above ``frame``."""
    chain = tf._chain(frame, logged_ns)
    ups = [e.parent for e in chain]
    if map_frame not in ups:
        return None
    return chain[: ups.index(map_frame)]
