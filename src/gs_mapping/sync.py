"""Approximate-time synchronisation of several message streams (colour, depth, camera_info, …).

Semantics follow ``message_filters.ApproximateTimeSynchronizer`` of ROS 2's Python message_filters:

* each input keeps a queue ``{stamp: message}`` of at most ``queue_size`` entries; when it overflows
  the oldest stamp is dropped, and a second message with a stamp already queued on that input replaces
  the first;
* when a message arrives on input *i*, every other input contributes its queued stamps within ``slop``
  of the new stamp, nearest first; if some input has none, nothing happens (the message waits);
* the candidate combinations are tried in that nearest-first order (product over the inputs in input
  order) and the first one whose stamps all lie within ``slop`` of each other is emitted: the callback
  gets the messages in input order and they leave their queues. At most one set is emitted per message,
  and the arriving message is always part of it.

Deviations, on purpose:

* stamps are given explicitly (``add(input, stamp_ns, msg)``, integer nanoseconds) instead of being read
  from ``msg.header.stamp``: the caller decides which stamp counts, and headerless messages need no
  special mode (no ``allow_headerless``);
* the spread test is ``max − min ≤ slop`` where message_filters uses ``< slop``, so ``slop = 0`` means
  exact synchronisation instead of never matching;
* messages that leave a queue unmatched (overflow or replaced stamp) are counted in :attr:`dropped`
  (per input in :attr:`dropped_per_input`), and :meth:`pending` says how many still wait;
* each input's stamps are taken to come in order, give or take :data:`STEP_BACK_NS`, and a queued
  message that nothing to come can match is dropped (counted in :attr:`dropped`; message_filters
  evicts by oldest stamp, so there it holds a queue slot for good, and a full queue of them every
  new message):

  - a stamp glitched ahead: a jump of a few messages (at most 3, or twice those before it since the
    input's last step back) more than :data:`STEP_BACK_NS` past its input's newest (its first
    message: the other inputs' newest) once the input steps back to near that newest; an input's
    lone first message followed by a step back the next message keeps to;
  - a stamp every input has left behind, and all of them more than :data:`STEP_BACK_NS` behind it:
    an input leaves it behind by stepping back that far (a clock reset, ``ros2 bag play --loop``)
    after it reached the stamp (since it came, or already when it came, in the same loop) or never
    came within :data:`STEP_BACK_NS` of it. A step back followed by a jump to near the stamps
    before it was a stamp glitched back, not a reset.

  Until then it waits as any message does: an input delivered later, however late, may still bring
  its partner;
* no locking: one thread feeds it (the replay runtime and rclpy's single-threaded executor do).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

# a stream's stamps going back by more than this: a clock reset, a new take or a stamp glitch, not
# messages delivered out of order
STEP_BACK_NS = 1_000_000_000
# How long a message may wait for its partner where one stream is a LiDAR cloud: a cloud is stamped
# with its first point and published after its last, a scan later (up to 4 s:
# mapping.deskew.MAX_SKEW_S), and a recording's pairer knows a frame partnerless only once the next
# cloud is in, a cloud period (a scan) after that; plus 1 s for transport and slop.
CLOUD_WAIT_NS = 9_000_000_000
# ... and at most this many messages a stream (decoded images: 300 rgb8 frames are 276 MB at 640x480,
# 1.9 GB at 1920x1080; 5 s of a 60 Hz camera)
MAX_WAITING = 300


class SyncConfigError(ConfigError, ValueError):
    """A synchroniser set up wrongly (e.g. one topic as two inputs): a one-line configuration error
    for the CLI and nodes, still a ValueError for callers that catch that."""


class ApproximateTimeSynchronizer:
    """Match one message from every input with stamps within ``slop`` seconds of each other.

    ``inputs`` is a number of inputs (addressed by index) or a list of names (e.g. topics; addressed by
    name or index). ``callback(*messages)`` is called for each matched set; :meth:`add` also returns it.
    ``wait_ns``: past ``queue_size``, an input still keeps the messages within ``wait_ns`` of its
    newest stamp, up to :data:`MAX_WAITING` (:data:`CLOUD_WAIT_NS`: a camera's frames wait for a
    cloud that comes a scan after its stamp), and a matched set takes every message older than it
    along (:meth:`_drop_before`).
    """

    def __init__(
        self,
        inputs: int | Iterable[Hashable],
        queue_size: int,
        slop: float,
        callback: Callable[..., Any] | None = None,
        wait_ns: int = 0,
    ):
        names = list(range(inputs)) if isinstance(inputs, int) else list(inputs)
        if len(names) < 2:
            raise SyncConfigError(f"need at least two inputs to synchronise, got {len(names)}")
        if len(set(names)) != len(names):
            twice = sorted({str(n) for n in names if names.count(n) > 1})
            raise SyncConfigError(
                f"synchroniser inputs must be distinct: {', '.join(twice)} given more than once"
            )
        if queue_size < 1:
            raise SyncConfigError(f"queue_size must be ≥ 1, got {queue_size}")
        if slop < 0:
            raise SyncConfigError(f"slop must be ≥ 0 seconds, got {slop}")
        self.names = names
        self.queue_size = int(queue_size)
        self.wait_ns = int(wait_ns)
        self.slop_ns = int(round(slop * 1e9))
        self._index = {n: i for i, n in enumerate(names)}
        self._queues: list[dict[int, list]] = [{} for _ in names]
        self._callbacks: list[Callable[..., Any]] = [callback] if callback is not None else []
        self.matched = 0
        self.dropped_per_input = [0] * len(names)
        # per input: its newest stamp since it last stepped back; (newest, messages, first stamp)
        # of a jump ahead no other input has made yet; (newest, messages) before its last step back
        self._newest: list[int | None] = [None] * len(names)
        self._base: list[tuple[int, int, int] | None] = [None] * len(names)
        self._back: list[tuple[int, int] | None] = [None] * len(names)
        self._run = [0] * len(names)  # messages since it last stepped back
        self._lone: list[int | None] = [None] * len(names)  # a lone message's stamp it stepped back from
        self._resets = [0] * len(names)  # its step backs (not glitches): the loops it is in

    @property
    def dropped(self) -> int:
        """Messages that left a queue without being matched."""
        return sum(self.dropped_per_input)

    def register_callback(self, callback: Callable[..., Any]) -> None:
        self._callbacks.append(callback)

    def pending(self) -> int:
        """Messages still waiting for partners."""
        return sum(len(q) for q in self._queues)

    def _follow(self, i: int, stamp: int) -> None:
        """Track input ``i``'s order (see above) and drop what it leaves behind."""
        newest, base, back = self._newest[i], self._base[i], self._back[i]
        self._run[i] += 1
        if newest is not None and stamp < newest - STEP_BACK_NS:  # a step back
            self._base[i] = None
            # to before a jump ahead of a few messages (at most 3, or twice those before it): a glitch
            if (
                base is not None
                and abs(stamp - base[0]) <= STEP_BACK_NS
                and self._run[i] - 1 - base[1] <= max(3, 2 * base[1])
            ):
                self._newest[i] = back_to = max(base[0], stamp)
                self._drop(i, lambda s: s > back_to + STEP_BACK_NS and s >= base[2] - STEP_BACK_NS)
                return
            # a clock reset (or a stamp glitched back; from a lone message: a glitch ahead, unless
            # its next message goes back there)
            self._lone[i] = newest if self._run[i] == 2 else None
            self._back[i], self._newest[i], self._run[i] = (newest, self._run[i]), stamp, 1
            self._resets[i] += 1
            self._leave(i, stamp, newest)
            return
        if (
            newest is not None
            and stamp > newest + STEP_BACK_NS
            and back
            and abs(stamp - back[0]) <= STEP_BACK_NS
        ):
            # back to its stamps before the step back: that was a stamp glitched back
            self._newest[i], self._run[i], self._back[i] = max(back[0], stamp), back[1] + 1, None
            self._lone[i] = None
            self._resets[i] -= 1
            self._reach(i, back[0], stamp)
            return
        if (lone := self._lone[i]) is not None and lone > stamp + STEP_BACK_NS:
            self._drop(i, lambda s: s == lone)
            self._back[i] = None  # (no reset then)
            self._resets[i] -= 1
        self._lone[i] = None
        self._reach(i, newest, stamp)
        others = [t for j, t in enumerate(self._newest) if j != i and t is not None]
        ref = newest if newest is not None else max(others, default=None)
        if base is None and ref is not None and stamp > ref + STEP_BACK_NS:
            self._base[i] = (ref, self._run[i] - 1 if newest is not None else 1, stamp)
        self._newest[i] = stamp if newest is None else max(newest, stamp)
        for j, b in enumerate(self._base):  # a jump the other inputs made too: not a glitch
            if b is not None and all(t is not None and t > b[0] + STEP_BACK_NS for t in self._newest):
                self._base[j] = None

    def _leave(self, i: int, stamp: int, newest: int) -> None:
        """Input ``i`` stepped back to ``stamp`` from a run up to ``newest`` (see above)."""
        for queue in self._queues:
            for s, entry in queue.items():
                if s > stamp + STEP_BACK_NS and (entry[0] & (1 << i) or s > newest + STEP_BACK_NS):
                    entry[1] |= 1 << i
        everyone, limit = (1 << len(self.names)) - 1, max(t for t in self._newest if t is not None)
        for j in range(len(self.names)):
            self._drop(j, lambda s: s > limit + STEP_BACK_NS and self._queues[j][s][1] == everyone)  # noqa: B023

    def _reach(self, i: int, since: int | None, stamp: int) -> None:
        """Input ``i`` went on from ``since`` to ``stamp``: it reached the queued stamps between
        (those it is past already when they come, :meth:`add` marks)."""
        for queue in self._queues:
            for s, entry in queue.items():
                if (since is None or s > since) and s <= stamp:
                    entry[0] |= 1 << i

    def _drop(self, i: int, left: Callable[[int], bool]) -> None:
        queue = self._queues[i]
        for s in [s for s in queue if left(s)]:
            del queue[s]
            self.dropped_per_input[i] += 1

    def _resolve(self, key: Hashable) -> int:
        if key in self._index:
            return self._index[key]
        if isinstance(key, int) and 0 <= key < len(self.names):
            return key
        raise KeyError(f"unknown synchroniser input {key!r} (inputs: {self.names})")

    def add(self, key: Hashable, stamp_ns: int, msg: Any) -> tuple | None:
        """Queue ``msg`` on input ``key``; return the matched messages (input order) or None."""
        i = self._resolve(key)
        stamp = int(stamp_ns)
        queue = self._queues[i]
        self._follow(i, stamp)
        if stamp in queue:
            self.dropped_per_input[i] += 1
        # (the inputs that reached it: past it already in the same loop, or since; those that left it
        # behind; the message)
        past = (
            j
            for j, t in enumerate(self._newest)
            if t is not None and t >= stamp and self._resets[j] >= self._resets[i]
        )
        queue[stamp] = [sum(1 << j for j in past), 0, msg]
        while len(queue) > self.queue_size:
            oldest = min(queue)
            if len(queue) <= MAX_WAITING and oldest >= (self._newest[i] or stamp) - self.wait_ns:
                break
            del queue[oldest]
            self.dropped_per_input[i] += 1
        if stamp not in queue:  # the new message itself was the oldest and fell out
            return None

        slop = self.slop_ns
        candidates: list[list[int]] = []
        for j, other in enumerate(self._queues):
            if j == i:
                continue
            near = sorted((s for s in other if abs(s - stamp) <= slop), key=lambda s: abs(s - stamp))
            if not near:
                return None
            candidates.append(near)

        for combo in itertools.product(*candidates):
            stamps = list(combo)
            stamps.insert(i, stamp)
            if max(stamps) - min(stamps) <= slop:
                msgs = tuple(q.pop(s)[2] for q, s in zip(self._queues, stamps, strict=False))
                self.matched += 1
                if self.wait_ns:  # (a cloud's wait: what is older than this set no later cloud pairs)
                    self._drop_before(min(stamps) - slop)
                for cb in self._callbacks:
                    cb(*msgs)
                return msgs
        return None

    def _drop_before(self, stamp_ns: int) -> None:
        """Drop every input's messages stamped before ``stamp_ns``: with a cloud's long wait
        (``wait_ns``) they would otherwise stay the whole wait (270 decoded frames of a 30 Hz camera
        for 10 Hz clouds, where message_filters' queue of 10 held them), while streams come in stamp
        order, so no later message pairs with them."""
        for i, queue in enumerate(self._queues):
            for s in [s for s in queue if s < stamp_ns]:
                del queue[s]
                self.dropped_per_input[i] += 1


def info_at(items, stamp_ns: int):
    """Of ``(stamp, info)`` items in time order, the latest at or before ``stamp_ns``; the first
    one for a stamp before them all (a driver publishes image and CameraInfo together, and a bag's
    order within one stamp is arbitrary); None without items."""
    if not items:
        return None
    best = items[0][1]
    for s, info in items:
        if s > stamp_ns:
            break
        best = info
    return best


class CameraInfoHistory:
    """A camera's recent CameraInfos by header stamp, to pair each image with the CameraInfo of its
    stamp as image_transport's CameraSubscriber does. A driver publishes the image first and its
    CameraInfo just after (CameraPublisher), and a camera that changes resolution or zoom changes
    both at one stamp, so "the latest CameraInfo" describes the previous image.

    :meth:`for_image` gives the CameraInfo of the image's stamp; where none has it (a driver that
    publishes CameraInfo at a lower rate, or with other stamps) :func:`info_at`'s (the rule of the
    mapper's bag path too). It says wait
    (None) only while the exact one may still come: once this camera's CameraInfos have carried
    their images' stamps, and none newer than the image has arrived yet. ``final``: no waiting.
    """

    def __init__(self, keep: int = 64):
        from collections import deque

        self._items: deque = deque(maxlen=keep)  # (stamp_ns, info), in arrival order
        self._paired = False  # a CameraInfo had an image's stamp: wait for the exact one

    def add(self, stamp_ns: int, info) -> None:
        self._items.append((int(stamp_ns), info))

    def __bool__(self) -> bool:
        return bool(self._items)

    def for_image(self, stamp_ns: int, final: bool = False):
        """The CameraInfo for an image of ``stamp_ns``; None to wait (or, ``final``, none at all)."""
        items = self._items
        for s, info in reversed(items):
            if s == stamp_ns:
                self._paired = True
                return info
        if not items or (not final and self._paired and all(s < stamp_ns for s, _ in items)):
            return None
        return info_at(items, stamp_ns)


@dataclass
class _Jump:
    """A stream's stamps since they jumped more than STEP_BACK_NS ahead of its newest."""

    base: int  # the stream's newest before the jump (for its first message, the other stream's)
    since: int  # the first stamp of the jump
    count: int = 0  # messages since
    confirmed: bool = False  # the other stream has stamps there too: a jump, not a glitch


class RecordingPairer:
    """Pairs the messages of two streams of a finished recording (colour and depth) by header
    stamp: each with its mutually nearest partner within ``slop_ns``, each message used once.

    Unlike :class:`ApproximateTimeSynchronizer` (message_filters' Python rule: pair with the nearest
    message queued so far, as soon as one is), a pair waits until no message still to come could be
    nearer: a dropped colour frame does not shift every later pair by one, and a stream logged late
    (a second behind the other) still pairs, up to ``keep`` messages waiting on one stream.

    Each stream's stamps are taken to arrive in order, give or take a swap: a message is called
    partnerless once the other stream has two messages beyond its slop. A stream whose stamps step
    back by more than :data:`STEP_BACK_NS` (a recording of several takes, a clock reset) starts a
    new take: its messages wait aside until the other stream steps back too (its last messages of
    the old take may still come), then the old take is decided as at the end. A lone message far
    back followed by the old take's stamps is a glitch: dropped. Messages stamped more than
    :data:`STEP_BACK_NS` beyond the stream's newest (for its first, the other stream's) are a
    jump ahead. Until the other stream has a stamp within slop of them (and past that newest by
    more than :data:`STEP_BACK_NS`: both clocks set ahead, both drivers paused, a stream with a
    message a second or rarer; logged late or not) the pairs wait as if they had not come, and
    for ``keep`` messages they do not make the other stream's messages partnerless. A step back
    near that newest within ``keep`` messages makes them a glitch (confirmed or not: a stream
    logged later than they are ahead has stamps there): the stream's order goes on from there,
    and they wait at their stamps as partners by the rule (unpaired at the end, they count as
    dropped; over ``keep`` messages, they leave a queue first). A step back still more than
    :data:`STEP_BACK_NS` past that newest is a glitch within the jump: the jump stands, and the
    stream's order goes on from its stamps before the glitch. :meth:`add` and :meth:`finish`
    return the pairs decided, as (first, second). ``wait_ns``: past ``keep``, a stream's messages
    within ``wait_ns`` of its newest stamp still wait, up to :data:`MAX_WAITING`
    (:data:`CLOUD_WAIT_NS`: frames wait for a cloud logged a scan after its stamp).
    """

    STEP_BACK_NS = STEP_BACK_NS

    def __init__(self, slop_ns: int, keep: int = 60, wait_ns: int = 0):  # (keep: 2 s at 30 Hz)
        self.slop_ns = int(slop_ns)
        self.keep = keep
        self.wait_ns = int(wait_ns)
        self._queues: tuple[list, list] = ([], [])  # per stream: (stamp, seq, msg), stamp order
        self._newest: list[int | None] = [None, None]  # per stream, this take
        self._next: tuple[list, list] = ([], [])  # per stream: (stamp, msg) of a take not begun yet
        # per stream, since its stamps jumped ahead (for keep messages; see above)
        self._ahead: list[_Jump | None] = [None, None]
        self._seq = 0
        self.dropped = 0  # messages that left without a partner

    def pending(self) -> int:
        return sum(len(q) for q in self._queues) + sum(len(n) for n in self._next)

    def add(self, stream: int, stamp_ns: int, msg) -> list[tuple]:
        stamp_ns = int(stamp_ns)
        if self._stepped(stream, stamp_ns):
            self._back_from_ahead(stream, stamp_ns)
        nxt = self._next[stream]
        stepped = self._stepped(stream, stamp_ns)
        if nxt and not stepped:  # back in the old take's stamps: what went aside was a glitch
            self.dropped += len(nxt)
            nxt.clear()
        if stepped:
            nxt.append((stamp_ns, msg))
            other = self._next[1 - stream]
            if not other and len(nxt) <= self.keep:  # (the other stream's old take may still come)
                return []
            return self._new_take()
        return self._queue(stream, stamp_ns, msg)

    def _stepped(self, stream: int, stamp_ns: int) -> bool:
        newest = self._newest[stream]
        return newest is not None and stamp_ns < newest - self.STEP_BACK_NS

    def _back_from_ahead(self, stream: int, stamp_ns: int) -> None:
        """A step back to near the stream's newest before it jumped ahead (or, its first message
        ahead, to near the other stream's; the recording's first message, to anywhere): the stamps
        since were a glitch, and its newest goes back there (a step back still past it by more than
        STEP_BACK_NS: a glitch within the jump, the stream's newest goes back to its stamps before
        the glitch, and the jump stands). Those messages stay queued at
        their stamps (the rule may still pair them, as any other); the waits of :meth:`_decide`
        go by the newest, so they do not hold it up."""
        ahead, mine, other = self._ahead[stream], self._queues[stream], self._newest[1 - stream]
        if ahead is not None:
            base = ahead.base
        elif other is not None and mine and mine[0][0] > other + self.STEP_BACK_NS:
            base = other  # (all it holds is ahead: not a stream logged a second before the other)
        elif other is None and len(mine) == 1:  # (the recording's first message)
            base = stamp_ns
        else:
            return
        if abs(stamp_ns - base) <= self.STEP_BACK_NS:
            self._newest[stream] = base
            self._ahead[stream] = None
        elif stamp_ns > base:  # a glitch within the jump: it goes on from its stamps before the glitch
            first = bisect.bisect_right(mine, stamp_ns + self.STEP_BACK_NS, key=lambda it: it[0])
            self._newest[stream] = max(stamp_ns, mine[first - 1][0]) if first else stamp_ns

    def _queue(self, stream: int, stamp_ns: int, msg) -> list[tuple]:
        newest, ahead = self._newest[stream], self._ahead[stream]
        ref = newest if newest is not None else self._newest[1 - stream]  # (its first: the other's)
        if ref is not None and stamp_ns > ref + self.STEP_BACK_NS and (ahead is None or ahead.confirmed):
            self._ahead[stream] = ahead = _Jump(ref, stamp_ns)
        if ahead is not None:  # (a forward jump that lasts, both clocks set ahead: not a glitch)
            ahead.count += 1
            if ahead.count > self.keep:
                self._ahead[stream] = None
        self._newest[stream] = stamp_ns if newest is None else max(newest, stamp_ns)
        bisect.insort(self._queues[stream], (stamp_ns, self._seq, msg), key=lambda item: item[:2])
        self._seq += 1
        for s in (0, 1):
            self._confirm(s)
        return self._decide(final=False)

    def _confirm(self, stream: int) -> None:
        """Confirm the stream's jump ahead (see the class): the other stream's queued stamps, not its
        newest (logged a second earlier, it is past them), and within slop, not STEP_BACK_NS (a
        stream logged 0.9 s late with a glitch 2 s ahead: the other is past the base by 1 s)."""
        jump, here, there = self._ahead[stream], self._newest[stream], self._queues[1 - stream]
        if jump is None or jump.confirmed or here is None:
            return
        lo = max(jump.base + self.STEP_BACK_NS, jump.since - self.slop_ns - 1)  # (stamps > lo)
        first = bisect.bisect_right(there, lo, key=lambda it: it[0])
        jump.confirmed = first < len(there) and there[first][0] <= here + self.slop_ns

    def _new_take(self) -> list[tuple]:
        """Both streams stepped back (or one stepped back for longer than ``keep`` messages): the old
        take is decided as at the end, and the messages set aside begin the new one."""
        aside = [list(n) for n in self._next]
        for n in self._next:
            n.clear()
        out = self.finish()
        for stream, items in enumerate(aside):
            for stamp_ns, msg in items:
                out += self._queue(stream, stamp_ns, msg)
        return out

    def finish(self) -> list[tuple]:
        """The pairs still to decide, the recording read to its end; the rest count as dropped."""
        out = self._decide(final=True)
        self.dropped += self.pending()
        for q in (*self._queues, *self._next):
            q.clear()
        self._newest = [None, None]
        self._ahead = [None, None]
        return out

    def _decide(self, final: bool) -> list[tuple]:
        out = []
        queues = self._queues
        while all(queues):
            # the oldest message: its nearest partner is the other stream's first (every later
            # message of that stream has a later stamp)
            s = 0 if queues[0][0][:2] <= queues[1][0][:2] else 1
            mine, other = queues[s], queues[1 - s]
            a, b = mine[0], other[0]
            # (by the streams' newest, not their last queued: a stamp glitched ahead tells no order;
            # nor do stamps since a jump ahead not known yet for a glitch or a jump)
            my_newest, jump = self._newest[s], self._ahead[1 - s]
            other_newest = self._newest[1 - s] if jump is None or jump.confirmed else jump.base
            assert my_newest is not None and other_newest is not None  # (both hold this take's)
            if b[0] - a[0] > self.slop_ns:  # partnerless, unless its own arrives out of order
                beyond = other_newest if jump is None else jump.base  # (a glitch may be confirmed)
                if not final and bisect.bisect_right(other, beyond, key=lambda it: it[0]) < 2:
                    break
                mine.pop(0)
                self.dropped += 1
                continue
            # b's nearest in a's stream is known once that stream has a message at or after b (and
            # b is the nearest of its own once its stream is past it: b may be a stamp glitched ahead)
            if not final and (my_newest < b[0] or other_newest < b[0]):
                break
            nearest = min(mine, key=lambda item: (abs(item[0] - b[0]), item[0]))
            mine.pop(0)
            if nearest is a:
                other.pop(0)
                out.append((a[2], b[2]) if s == 0 else (b[2], a[2]))
            else:  # b is nearer another of a's stream: a has no partner
                self.dropped += 1
        for stream, q in enumerate(queues):  # (a stream gone quiet: the other's waiting stay bounded)
            while len(q) > self.keep:
                # glitches ahead first: they wait at their stamps for the whole take, real ones do not
                newest = self._newest[stream]
                if newest is not None and q[-1][0] > newest + self.STEP_BACK_NS:
                    q.pop(-1)
                elif len(q) > MAX_WAITING or newest is None or q[0][0] < newest - self.wait_ns:
                    q.pop(0)
                else:
                    break
                self.dropped += 1
        return out
