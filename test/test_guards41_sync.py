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
