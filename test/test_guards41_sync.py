"""Mutation round 41 (sync): a breakage that passed every test, guarded by an independent
computation of the documented rule."""

from __future__ import annotations

from gs_mapping.sync import RecordingPairer


def _mutual_nearest_within(a: list[int], b: list[int], slop: int) -> list[tuple[int, int]]:
    """The rule RecordingPairer documents, written out: each stamp's mutually nearest partner of the
    other stream, within ``slop`` (inclusive, as ApproximateTimeSynchronizer's 'max - min <= slop')."""
    out = []
    for x in a:
        y = min(b, key=lambda s: abs(s - x))
        if min(a, key=lambda s: abs(s - y)) == x and abs(x - y) <= slop:
            out.append((x, y))
    return out


def test_a_pair_exactly_a_slop_apart_is_made_as_the_rule_says():
    """Colour and depth 10 ms apart with a 10 ms slop pair, as the synchroniser's spread of exactly a
    slop does (test_guards_survivors9); with 'apart by slop or more: partnerless' every colour was
    dropped and no test saw it (every pairing test has pairs nearer than their slop)."""
    slop = 10_000_000
    colour = [k * 100_000_000 for k in range(6)]
    depth = [c + slop for c in colour]
    want = _mutual_nearest_within(colour, depth, slop)
    assert len(want) == 6
    p = RecordingPairer(slop)
    got = []
    for c, d in zip(colour, depth, strict=True):
        got += p.add(0, c, c)
        got += p.add(1, d, d)
    got += p.finish()
    assert got == want
    assert p.dropped == 0


def test_past_queue_size_a_message_exactly_wait_ns_old_still_waits():
    """ApproximateTimeSynchronizer's ``wait_ns`` (a camera frame waiting for the cloud that comes a
    scan after it) keeps, past ``queue_size``, the messages within ``wait_ns`` of the input's
    newest, the end included as the slop's is: a frame exactly 100 ms older than the newest still
    pairs with a cloud of its stamp; 1 ns older it is dropped. Fails with the bound at ``>`` (mut41's
    mutant Y3, which passed every test)."""
    from gs_mapping.sync import ApproximateTimeSynchronizer

    wait = 100_000_000
    for oldest, pairs in ((0, True), (-1, False)):
        got = []
        sync = ApproximateTimeSynchronizer(
            ["camera", "cloud"], 1, 0.0, lambda *m, got=got: got.append(m), wait_ns=wait
        )
        for stamp in (oldest, 50_000_000, wait):
            sync.add("camera", stamp, f"frame {stamp}")
        assert sync.dropped_per_input == [0 if pairs else 1, 0]
        sync.add("cloud", oldest, "scan")
        assert got == ([(f"frame {oldest}", "scan")] if pairs else []), (oldest, got)
