"""ApproximateTimeSynchronizer: message_filters semantics (slop, queue size, nearest-first choice)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_mapping.sync import ApproximateTimeSynchronizer

MS = 1_000_000


def test_triples_with_jitter_match_in_order():
    got = []
    sync = ApproximateTimeSynchronizer(
        ["color", "depth", "info"], queue_size=5, slop=0.010, callback=lambda *m: got.append(m)
    )
    for k in range(20):
        t = k * 33 * MS
        sync.add("depth", t + 3 * MS, ("d", k))
        sync.add("info", t, ("i", k))
        sync.add("color", t - 2 * MS, ("c", k))
    assert got == [(("c", k), ("d", k), ("i", k)) for k in range(20)]
    assert sync.matched == 20 and sync.dropped == 0 and sync.pending() == 0


def test_add_returns_the_set_and_indices_work():
    sync = ApproximateTimeSynchronizer(2, queue_size=3, slop=0.001)
    assert sync.add(0, 100, "a") is None
    assert sync.add(1, 100 + MS, "b") == ("a", "b")  # spread exactly == slop matches (≤)
    assert sync.add(1, 5 * MS, "c") is None
    assert sync.add(0, 3 * MS, "d") is None  # 2 ms apart > 1 ms slop: both wait
    assert sync.pending() == 2


def test_zero_slop_is_exact_sync():
    sync = ApproximateTimeSynchronizer(2, queue_size=3, slop=0.0)
    sync.add(0, 10, "a")
    assert sync.add(1, 11, "b") is None
    assert sync.add(1, 10, "c") == ("a", "c")


def test_nearest_candidate_is_chosen():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.050)
    for t in (0, 20, 40):
        sync.add(0, t * MS, t)
    assert sync.add(1, 27 * MS, "x") == (20, "x")
    assert sync.pending() == 2  # 0 and 40 ms still queued (message_filters keeps older messages)


def test_new_message_completes_a_set_only_with_itself():
    """Like message_filters, one arrival emits at most one set and is always part of it."""
    sync = ApproximateTimeSynchronizer(3, queue_size=10, slop=0.005)
    sync.add(0, 0, "a0")
    sync.add(1, 1 * MS, "b0")
    sync.add(0, 100 * MS, "a1")
    sync.add(1, 101 * MS, "b1")
    assert sync.add(2, 102 * MS, "c1") == ("a1", "b1", "c1")
    assert sync.add(2, 2 * MS, "c0") == ("a0", "b0", "c0")


def test_queue_overflow_drops_oldest_and_counts():
    sync = ApproximateTimeSynchronizer(["a", "b"], queue_size=3, slop=0.001)
    for k in range(5):
        sync.add("a", k * 100 * MS, k)
    assert sync.dropped_per_input == [2, 0] and sync.pending() == 3
    assert sync.add("b", 0, "late") is None  # its partner was dropped
    assert sync.add("b", 400 * MS, "b4") == (4, "b4")
    # a message with a stamp already queued on that input replaces it
    sync.add("a", 200 * MS, "again")
    assert sync.dropped_per_input == [3, 0]
    assert sync.add("b", 200 * MS, "b2") == ("again", "b2")


@pytest.mark.parametrize("queue_size", [1, 3])
def test_stamps_far_ahead_of_their_input_leave_its_queue(queue_size):
    """A colour image stamped an hour ahead (a camera clock glitch), once per second: message_filters
    evicts the oldest stamp, so each glitch would hold a queue slot for good and, the queue full of
    them, every later image would fall out unmatched. A stamp far behind the queued ones drops them
    (as after a clock reset: nothing to come matches them), and each frame but the glitched pairs."""
    hour = 3600 * 10**9
    sync = ApproximateTimeSynchronizer(["color", "depth"], queue_size=queue_size, slop=0.010)
    pairs = []
    for k in range(40):
        t = k * 100 * MS
        glitch = k % 10 == 5
        sync.add("color", t + (hour if glitch else 0), ("c", k))
        pairs.append(sync.add("depth", t + 2 * MS, ("d", k)))
    assert pairs == [None if k % 10 == 5 else (("c", k), ("d", k)) for k in range(40)]
    # (the glitched colour images dropped; their depth images, partnerless, dropped or waiting)
    assert sync.dropped_per_input[0] == 4 and sync.dropped_per_input[1] + sync.pending() == 4


def test_a_stamp_far_back_keeps_the_frames_whose_partners_are_in_flight():
    """Colour delivered 100 ms before depth; one colour message stamped 5 s back (a stale frame)
    must not drop the colour frames queued behind it: their depth is on its way, and each pairs."""
    sync = ApproximateTimeSynchronizer(["color", "depth"], queue_size=5, slop=0.010)
    events = []
    for k in range(30):
        events += [(k * 33, "color", k * 33 * MS), (k * 33 + 100, "depth", k * 33 * MS + MS)]
    events.append((15 * 33 + 1, "color", 15 * 33 * MS - 5 * 10**9))
    for _, key, stamp in sorted(events):
        sync.add(key, stamp, stamp)
    assert sync.matched == 30 and sync.dropped + sync.pending() == 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(1, 3, 0.1)
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(["a", "a"], 3, 0.1)
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(2, 0, 0.1)
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(2, 3, -1)
    sync = ApproximateTimeSynchronizer(["x", "y"], 3, 0.1)
    with pytest.raises(KeyError, match="'z'"):
        sync.add("z", 0, None)


events = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 60)), min_size=1, max_size=80)


@settings(max_examples=150, deadline=None)
@given(events, st.integers(1, 6), st.integers(0, 12))
def test_invariants_on_random_streams(evts, queue_size, slop_ms):
    """Every set is within slop, uses each message once and contains the arrival; nothing is lost
    unaccounted; a message that completes no set really had no partners within slop."""
    sync = ApproximateTimeSynchronizer(3, queue_size=queue_size, slop=slop_ms / 1000)
    queues = [dict() for _ in range(3)]  # shadow of what should be queued: stamp → msg id
    emitted_ids = set()
    for n, (i, t_ms) in enumerate(evts):
        stamp = t_ms * MS
        out = sync.add(i, stamp, (n, i, stamp))
        # mirror queue insertion/overflow
        queues[i][stamp] = (n, i, stamp)
        while len(queues[i]) > queue_size:
            del queues[i][min(queues[i])]
        if out is None:
            if stamp in queues[i]:
                others = [sorted(q) for j, q in enumerate(queues) if j != i]
                for combo in itertools.product(*others):
                    stamps = list(combo) + [stamp]
                    assert max(stamps) - min(stamps) > slop_ms * MS, "a valid set was missed"
            continue
        assert (n, i, stamp) in out
        assert [m[1] for m in out] == [0, 1, 2]
        stamps = [m[2] for m in out]
        assert max(stamps) - min(stamps) <= slop_ms * MS
        for m in out:
            assert m[0] not in emitted_ids
            emitted_ids.add(m[0])
            assert queues[m[1]].get(m[2]) == m
            del queues[m[1]][m[2]]
        assert all(len(q) <= queue_size for q in queues)
    assert sync.pending() == sum(len(q) for q in queues)
    assert 3 * sync.matched + sync.dropped + sync.pending() == len(evts)


def _mutual_nearest(a: list[int], b: list[int], slop_ns: int) -> list[tuple[int, int]]:
    """RecordingPairer's documented rule by brute force over the whole recording: pair every (i, j)
    that are each other's nearest among the messages still unpaired and within slop, until none."""
    free_a, free_b, out = set(range(len(a))), set(range(len(b))), []
    while True:
        found = [
            (i, j)
            for i in free_a
            for j in [min(free_b, key=lambda k: abs(a[i] - b[k]), default=None)]
            if j is not None
            and abs(a[i] - b[j]) <= slop_ns
            and min(free_a, key=lambda k: abs(a[k] - b[j])) == i
        ]
        if not found:
            return sorted(out)
        for i, j in found:
            out.append((i, j))
            free_a.discard(i)
            free_b.discard(j)


@pytest.mark.parametrize(
    "stream,first,count,by_s,late_ms",
    [
        (0, 0, 1, 3600, 0),  # the recording's first message an hour ahead
        (1, 0, 1, 3600, 0),  # the second stream's first
        (1, 2, 2, 5, 0),  # two in a row, 5 s ahead
        (0, 20, 3, 1.5, 0),  # three in a row, 1.5 s ahead: among the stamps of frames 35-37
        (0, 0, 1, 5, 500),  # depth logged 0.5 s late: the first colour message has no partner yet
        (1, 7, 1, 1.5, 500),  # a late depth message glitched among the colour of frame 22
        (1, 20, 2, 2, 900),  # two in a row on a stream 0.9 s late: colour is past their base + 1 s
        (1, 20, 1, 1.2, 1500),  # 1.5 s late: colour there already (taken for a jump, then back)
        (1, 20, 3, 1.2, 1500),  # three of them: colour between waits for the step back
    ],
)
def test_recording_pairer_stamps_glitched_ahead_pair_as_the_rule(stream, first, count, by_s, late_ms):
    """Stamps glitched ahead cost only their own messages (or, by the rule, take a partner they are
    nearest to), wherever they fall: at the start, several in a row, on a stream logged late."""
    from gs_mapping.sync import RecordingPairer

    rng = np.random.default_rng(first)
    colour = [10**18 + k * 100 * MS + int(rng.integers(-3 * MS, 3 * MS)) for k in range(60)]
    depth = [s + int(rng.integers(0, 5 * MS)) for s in colour]
    glitched = (colour, depth)[stream]
    for k in range(first, first + count):
        glitched[k] += int(by_s * 1e9)
    log = sorted([(k * 100, 0, k) for k in range(60)] + [(k * 100 + late_ms, 1, k) for k in range(60)])
    p, got = RecordingPairer(20 * MS), []
    for _, s, k in log:  # (each message logged in its place, whatever its stamp)
        got += p.add(s, (colour, depth)[s][k], k)
    got += p.finish()
    assert sorted(got) == _mutual_nearest(colour, depth, 20 * MS)
    assert len(got) >= 60 - count


@pytest.mark.parametrize("seed", range(12))
def test_recording_pairer_pairs_as_the_rule_on_random_recordings(seed):
    """A seeded fuzz against the brute-force rule: 30, 15 or 10 Hz, one stream logged up to 1.5 s
    late (within ``keep``), and stamps glitched 1.2 s to an hour ahead (1-3 in a row, after the
    first messages), both clocks stepped ahead (or both drivers paused), or the recording looped.
    (Left out: a stream's slow message rarer than ``keep`` of the other's, glitches landing on
    each other, glitches far back: the pairer drops those, the brute force may pair them.)"""
    from gs_mapping.sync import RecordingPairer

    rng = np.random.default_rng(seed)
    for case in range(12):
        n, dt = int(rng.integers(60, 160)), 10**9 // int(rng.choice([10, 15, 30]))
        colour = [10**18 + k * dt + int(rng.integers(-2 * MS, 2 * MS)) for k in range(n)]
        depth = [s + int(rng.integers(-6 * MS, 6 * MS)) for s in colour]
        kind = case % 3
        if kind == 0:  # a glitch ahead: 1-3 messages in a row
            stream, first, by = (colour, depth)[int(rng.integers(2))], int(rng.integers(5, n)), rng.choice([1.2, 2, 5, 3600])  # fmt: skip
            for k in range(first, min(n, first + int(rng.integers(1, 4)))):
                stream[k] += int(by * 1e9)
        elif kind == 1:  # both clocks set ahead (or both drivers paused) from one frame on
            at, by = int(rng.integers(1, n)), int(rng.choice([1.2, 3, 3600]) * 1e9)
            colour, depth = ([s + (by if k >= at else 0) for k, s in enumerate(x)] for x in (colour, depth))
        else:  # the recording played twice, its stamps the second time before the first's
            span = n * dt + 5 * 10**9
            colour, depth = ([s - loop * span for loop in range(2) for s in x] for x in (colour, depth))
        late = int(rng.choice([0, 500, 1100, 1500])) * MS
        log = sorted([(k * dt, 0, k) for k in range(len(colour))] + [(k * dt + late, 1, k) for k in range(len(depth))])  # fmt: skip
        p, got = RecordingPairer(20 * MS), []
        for _, s, k in log:
            got += p.add(s, (colour, depth)[s][k], k)
        got += p.finish()
        assert sorted(got) == _mutual_nearest(colour, depth, 20 * MS), (seed, case)


@pytest.mark.parametrize("back_ms", [1100, 1300, 1500])
def test_recording_pairer_step_back_of_a_stream_logged_ahead_is_not_taken_for_its_return(back_ms):
    """Depth logged 1.1 s late; colour glitched 1.2 s ahead once, then later stamped ``back_ms``
    back once (near depth's newest, which is 1.1 s behind: that is where a stream logged earlier
    is, not a glitch ahead it comes back from). Both glitches cost their own message only."""
    from gs_mapping.sync import RecordingPairer

    colour = [10**18 + k * 33 * MS for k in range(200)]
    depth = [s - 3 * MS for s in colour]  # (each depth image 3 ms before its colour)
    colour[35] += 1200 * MS
    colour[131] -= back_ms * MS
    log = sorted([(k * 33, 0, k) for k in range(200)] + [(k * 33 + 1100, 1, k) for k in range(200)])
    p, got = RecordingPairer(20 * MS), []
    for _, s, k in log:
        got += p.add(s, (colour, depth)[s][k], k)
    got += p.finish()
    assert sorted(got) == _mutual_nearest(colour, depth, 20 * MS)
    assert len(got) == 198
