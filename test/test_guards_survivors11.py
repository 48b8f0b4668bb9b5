"""Guards for behaviours a mutation-testing pass over the map codec and receiver found unguarded
(eleventh round): the receiver's sequence rules (docs/format.md §5: apply only at base_seq = seq,
buffer later ones, drop earlier ones, replace by any newer snapshot, reject other maps and other
quantisation), its pending buffer's accounting, the SH palette's row order, octree tails, the
frequency tables' bounds and lane deltas. Each test drives the real components on hand-built
containers and compares them with an independent reference (the rule the docs or a docstring
state, a numpy re-computation or a hand-computed answer), so that breaking the line it guards makes
it fail."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_map_share.container import Header, pack, unpack
from gs_map_share.delta import MapSender
from gs_map_share.quantize import QuantParams

P = QuantParams()

# ------------------------------------------------------------------------------------------------
# the receiver: sequence rules (docs/format.md §5)


def _stream(n_deltas: int = 3, seed: int = 5, map_id: int = 7):
    """A sender's snapshot then ``n_deltas`` deltas (8 moved Gaussians each), with the sender's
    state checksum after each message."""
    rng = np.random.default_rng(seed)
    g = synthetic_map(400, 0, seed=seed)
    sender = MapSender.from_map(g, P, map_id=map_id)
    msgs, crcs = [sender.snapshot()], [sender.shadow.checksum()]
    for _ in range(n_deltas):
        ids = rng.choice(g.ids, 8, replace=False)
        g.update(ids, means=g.means[g.rows_of(ids)] + 0.03)
        msgs.append(sender.update(g, g.take_changes())[0])
        crcs.append(sender.shadow.checksum())
    return msgs, crcs


def _with_header(data: bytes, **changes) -> bytes:
    """The container re-packed with header fields changed (chunks as they are; CRCs valid)."""
    h, chunks = unpack(data)
    return pack(dataclasses.replace(h, **changes), list(chunks))


def _hdr(map_id: int, seq: int, base_seq: int) -> Header:
    return Header(map_id, seq, base_seq, 0, 0, 0, 1, P)


def test_delta_standing_follows_the_documented_sequence_rules():
    """docs/format.md §5 worked out by hand for a map 7 at seq 10: another map's delta is
    OTHER_MAP whatever its numbers, seq ≤ 10 is a duplicate, base 10 applies now, and any other
    base (later, or earlier with a seq from the future) waits."""
    from gs_map_share.receiver import BUFFERED, DUPLICATE, NEXT, OTHER_MAP, delta_standing

    assert delta_standing(_hdr(8, 11, 10), 7, 10) == OTHER_MAP
    assert delta_standing(_hdr(8, 5, 4), 7, 10) == OTHER_MAP
    assert delta_standing(_hdr(8, 13, 12), 7, 10) == OTHER_MAP
    assert delta_standing(_hdr(7, 10, 9), 7, 10) == DUPLICATE
    assert delta_standing(_hdr(7, 11, 10), 7, 10) == NEXT
    assert delta_standing(_hdr(7, 12, 11), 7, 10) == BUFFERED
    assert delta_standing(_hdr(7, 12, 9), 7, 10) == BUFFERED  # made from an older state: never NEXT
    assert delta_standing(_hdr(7, 12, 11), None, None) == BUFFERED


def test_store_reports_another_maps_delta_whatever_its_sequence():
    """A store bound to map 7 answers OTHER_MAP to map 8's deltas that would otherwise be a
    duplicate or from the future, and buffers neither."""
    from gs_map_share.receiver import OTHER_MAP, MapStore

    msgs, crcs = _stream(3)
    s0 = unpack(msgs[0])[0]
    store = MapStore()
    assert store.receive(msgs[0]) == "snapshot"
    old = _with_header(msgs[1], map_id=8, seq=s0.seq, base_seq=s0.seq - 1)
    future = _with_header(msgs[3], map_id=8)
    assert store.receive(old) == OTHER_MAP
    assert store.receive(future) == OTHER_MAP
    assert store.stats[OTHER_MAP] == 2 and store.pending == 0
    assert "map 8" in store.last_error


def test_delta_from_an_older_base_with_a_future_seq_waits_instead_of_being_applied():
    """A delta whose base is older than the store's state but whose seq is ahead is not applied
    (only base_seq = seq applies): it is buffered and the state is untouched."""
    from gs_map_share.receiver import BUFFERED, MapStore

    msgs, crcs = _stream(3)
    store = MapStore()
    store.receive(msgs[0])
    assert store.receive(msgs[1]) == "applied"
    seq = store.seq
    h2 = unpack(msgs[2])[0]
    assert h2.base_seq == seq
    stale_base = _with_header(msgs[2], base_seq=seq - 1)  # 1 → 3 made "from" the state before
    assert store.receive(stale_base) == BUFFERED
    assert store.seq == seq and store.state.checksum() == crcs[1]
    assert store.stats["rejected"] == 0 and store.pending == 1


def test_delta_with_other_quantisation_parameters_is_rejected_and_the_map_untouched():
    """A delta applies only on the map's own quantisation: the same (valid) delta re-labelled with
    other parameters is REJECTED naming them, the state stays the snapshot's, and the genuine
    delta still applies afterwards."""
    from gs_map_share.errors import DecodeError
    from gs_map_share.receiver import APPLIED, REJECTED, MapStore, apply_next

    msgs, crcs = _stream(1)
    other = dataclasses.replace(P, opacity_step=P.opacity_step / 2)
    relabelled = _with_header(msgs[1], params=other)
    store = MapStore()
    store.receive(msgs[0])
    assert store.receive(relabelled) == REJECTED
    assert "quantisation parameters" in store.last_error
    assert store.state.checksum() == crcs[0] and store.params == P
    h, chunks = unpack(relabelled)
    with pytest.raises(DecodeError, match="quantisation parameters"):
        apply_next(store.state, store.header, h, chunks, len(relabelled))
    assert store.receive(msgs[1]) == APPLIED
    assert store.state.checksum() == crcs[1]


def test_delta_in_another_frame_is_refused_by_the_receiver_and_by_apply(tmp_path, capsys):
    """A map's frame is its base's: the genuine delta relabelled into another frame (valid CRCs) is
    REJECTED by a live receiver naming both frames, the map stays the snapshot's (and the genuine
    delta applies after it); ``gs-mapping apply`` refuses it in one line, exit 2, no file written,
    and applies the genuine one into the map the sender holds."""
    from gs_map_share.receiver import APPLIED, REJECTED, MapStore
    from gs_map_share.snapshot import decode_snapshot
    from gs_mapping.cli import main
    from gs_mapping.ply import load_ply

    msgs, crcs = _stream(1)
    assert unpack(msgs[1])[0].frame_id == "map"
    moved = _with_header(msgs[1], frame_id="odom")
    store = MapStore()
    store.receive(msgs[0])
    assert store.receive(moved) == REJECTED
    assert "'odom'" in store.last_error and "'map'" in store.last_error
    assert store.state.checksum() == crcs[0] and store.seq == unpack(msgs[0])[0].seq
    assert store.receive(msgs[1]) == APPLIED and store.state.checksum() == crcs[1]

    for name, data in (("base.gsd", msgs[0]), ("odom.gsd", moved), ("d1.gsd", msgs[1])):
        (tmp_path / name).write_bytes(data)
    capsys.readouterr()
    assert (
        main(["apply", str(tmp_path / "base.gsd"), str(tmp_path / "odom.gsd"), str(tmp_path / "o.ply")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert "odom.gsd" in err and "'odom'" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o.ply").exists()
    assert main(["apply", str(tmp_path / "base.gsd"), str(tmp_path / "d1.gsd"), str(tmp_path / "o.ply")]) == 0
    got = load_ply(tmp_path / "o.ply")
    assert len(got) == len(store.state) and np.array_equal(np.sort(got.ids), np.sort(store.state.ids))
    want = store.gaussian_map()
    np.testing.assert_array_equal(got.means[np.argsort(got.ids)], want.means[np.argsort(want.ids)])
    assert decode_snapshot(msgs[0])[1].checksum() == crcs[0]


def test_apply_next_bounds_the_map_it_makes():
    """apply_next (the in-order rule ``gs-mapping apply`` shares) honours its ``max_gaussians``: a
    delta leaving a 400-Gaussian map at 400 applies under a bound of 400 and is refused under 399,
    the state untouched."""
    from gs_map_share.errors import DecodeError
    from gs_map_share.receiver import MapStore, apply_next

    msgs, crcs = _stream(1)
    store = MapStore()
    store.receive(msgs[0])
    h, chunks = unpack(msgs[1])
    assert h.gaussians == len(store.state) == 400
    with pytest.raises(DecodeError, match="more than the 399 allowed"):
        apply_next(store.state, store.header, h, chunks, len(msgs[1]), max_gaussians=399)
    assert store.state.checksum() == crcs[0]
    new = apply_next(store.state, store.header, h, chunks, len(msgs[1]), max_gaussians=400)
    assert new.checksum() == crcs[1]


# ------------------------------------------------------------------------------------------------
# the receiver: pending deltas (bounds and obsolete ones)


def test_pending_bytes_exactly_at_the_bound_are_kept():
    """The bound is on bytes *beyond* ``max_bytes``: 4 + 6 bytes under a 10-byte bound are both
    buffered; one more byte drops the latest arrival at the farthest base."""
    from gs_map_share.receiver import BUFFERED, DROPPED, PendingDeltas

    pend = PendingDeltas(max_count=10, max_bytes=10)
    assert pend.add(_hdr(7, 6, 5), b"aaaa") == (BUFFERED, 0)
    assert pend.add(_hdr(7, 3, 2), b"bbbbbb") == (BUFFERED, 0)
    assert (len(pend), pend.nbytes) == (2, 10)
    assert pend.add(_hdr(7, 4, 3), b"c") == (BUFFERED, 1)  # base 5's goes (farthest)
    assert (len(pend), pend.nbytes) == (2, 7)
    assert [p.data for p in pend.take(2)] == [b"bbbbbb"]
    pend = PendingDeltas(max_count=10, max_bytes=10)
    pend.add(_hdr(7, 3, 2), b"x" * 10)
    assert pend.add(_hdr(7, 4, 3), b"y") == (DROPPED, 0)


def test_taking_a_state_forgets_every_older_base():
    """take(seq) returns the candidates for seq and drops all those for older states (obsolete),
    the one just below included: nothing of them remains in count, bytes or a later take."""
    from gs_map_share.receiver import PendingDeltas

    pend = PendingDeltas(max_count=10)
    for base, data in ((3, b"b3"), (4, b"b4-"), (5, b"b5--"), (6, b"b6---")):
        pend.add(_hdr(7, base + 1, base), data)
    assert [p.data for p in pend.take(5)] == [b"b5--"]
    assert (len(pend), pend.nbytes) == (1, 5)
    assert pend.take(4) == [] and pend.take(3) == []
    assert [p.data for p in pend.take(6)] == [b"b6---"]
    assert (len(pend), pend.nbytes) == (0, 0)


def test_store_counts_the_deltas_it_drops_to_make_room():
    """Past max_pending the farthest future goes: a nearer delta arriving at a full buffer is
    BUFFERED and the one it pushed out counts as DROPPED; a farther one is itself DROPPED. Either
    way ``stats`` counts every delta the store let go, and the nearer one then fills the gap."""
    from gs_map_share.receiver import APPLIED, BUFFERED, DROPPED, MapStore

    msgs, crcs = _stream(4)
    store = MapStore(max_pending=1)
    store.receive(msgs[0])
    assert store.receive(msgs[3]) == BUFFERED
    assert store.receive(msgs[2]) == BUFFERED  # pushes msgs[3] out
    assert store.stats[DROPPED] == 1 and store.pending == 1
    assert store.receive(msgs[4]) == DROPPED  # farther than what is held: itself
    assert store.stats[DROPPED] == 2 and store.pending == 1
    assert store.receive(msgs[1]) == APPLIED  # then 2 from the buffer
    assert store.seq == unpack(msgs[2])[0].seq and store.state.checksum() == crcs[2]
    assert store.pending == 0


# ------------------------------------------------------------------------------------------------
# octree tails (docs/format.md §4, LEVEL k with tails)


def test_tail_paths_pair_octants_from_s_down_with_the_odd_one_last():
    """docs/format.md §4: ⌈(D − s)/2⌉ path streams, two octants a value (``o_d·8 + o_{d+1}``), the
    last stream one octant when D − s is odd. Two voxels in two tiles, each alone from depth 0 of
    a depth-3 tree, with octants (1, 2, 3) and (5, 0, 7): paths [1·8 + 2, 5·8 + 0] then [3, 7]."""
    from gs_map_share import tails

    assert [tails.parts(k) for k in range(1, 6)] == [[3], [6], [6, 3], [6, 6], [6, 6, 3]]
    D = 3
    code = np.array([(1 << 6) | (2 << 3) | 3, (5 << 6) | (0 << 3) | 7], np.uint64)
    tile = np.array([0, 1], np.int64)
    c = tails.shared_depths(tile, code, D)
    assert c.tolist() == [-1, -1, -1]
    out = tails.streams(tile, code, c, 0, D)
    assert (out[0][0], out[0][1].tolist()) == ("tail_branch", [0, 0])
    paths = [(values.tolist(), bits) for label, values, bits in out if label == "tail_path"]
    assert paths == [([10, 40], 6), ([3, 7], 3)]


@pytest.mark.parametrize("n,want", [(1024, 0), (1023, None)])
def test_tail_min_is_a_floor_of_nodes_that_counts(n, want):
    """ "At least TAIL_MIN nodes": n voxels each alone at every depth (all tails, c = −1) give n
    nodes per depth; 1,024 of them (exactly TAIL_MIN) take the shallowest depth, 1,023 take none."""
    from gs_map_share import tails

    assert tails.TAIL_MIN == 1024
    depth = 4
    c = np.full(n + 1, -1, np.int64)
    counts = [n] * (depth + 1)
    assert tails.choose(c, counts, 0, depth) == want


# ------------------------------------------------------------------------------------------------
# frequency tables (tables.py's format)


def test_table_precision_on_an_exact_tie_keeps_the_lower():
    """The encoder picks the precision of fewest table plus weighted data bits, "on a near tie the
    lower". Frequencies [5, 3] (bit lengths 3, 2) rebuild to [6, 3] at p = 1 and exactly at p ≥ 2;
    table bits (kept bits) are 0, 2, 3. A data weight of 2 / (data bits saved at p = 2) makes p = 1
    and p = 2 cost the same: both the plain and the compiled choice answer 1."""
    from math import log2

    from gs_map_share import jit, tables

    f = np.array([5, 3], np.int64)
    e = np.array([3, 2], np.int64)
    assert tables._rebuild(f, e, 1).tolist() == [6, 3] and tables._rebuild(f, e, 2).tolist() == [5, 3]
    data1 = 5 * log2(6 / 9) + 3 * log2(3 / 9)
    data2 = 5 * log2(5 / 8) + 3 * log2(3 / 8)
    scale = 2 / (data2 - data1)
    costs = [0 - data1 * scale, 2 - data2 * scale, 3 - data2 * scale]
    assert abs(costs[0] - costs[1]) < 1e-9 and costs[2] > costs[0] + 0.5
    assert tables._precision(f, e, scale) == 1
    kernels = jit.kernels()
    if kernels is not None:
        assert kernels.table_precision(f, e, scale, 3) == 1
    # off the tie the cheaper wins either way
    assert tables._precision(f, e, scale * 1.01) == 2
    assert tables._precision(f, e, scale * 0.99) == 1


@pytest.mark.parametrize("a", [1, 2, 5])
def test_table_blob_longer_than_a_symbols_entries_can_take_is_refused_before_reading(a):
    """A table of ``a`` symbols takes at most ⌈a · 27 / 8⌉ bytes (an entry: an exp-Golomb code of
    ≤ 11 bits and ≤ 16 kept bits): one byte more is refused by its length, naming it, before any
    entry is read; the longest legal length is read on (and then fails on its content)."""
    from gs_map_share.bitio import Reader, Writer
    from gs_map_share.errors import DecodeError
    from gs_map_share.tables import get_table

    limit = (a * 27 + 7) // 8

    def table(nbytes: int) -> bytes:
        w = Writer()
        w.u8(17)
        w.blob(b"\x01" * nbytes)  # entries of z = 0 (absent symbols), one bit each
        return w.getvalue()

    with pytest.raises(DecodeError, match=f"frequency table of {limit + 1} bytes for {a} symbols"):
        get_table(Reader(table(limit + 1), "test"), a)
    with pytest.raises(DecodeError) as err:
        get_table(Reader(table(limit), "test"), a)
    assert "frequency table of" not in str(err.value)


# ------------------------------------------------------------------------------------------------
# lane deltas (lanes.py)


def _lane_state(lanes: dict) -> object:
    from gs_map_share.lanes import LaneState

    return LaneState({i: (c, s, np.asarray(p, np.int64).reshape(-1, 2)) for i, (c, s, p) in lanes.items()})


def test_lane_checksum_tells_how_the_points_are_split_between_lanes():
    """The state checksum covers each lane's point count: the same point bytes split as (2, 0) or
    (0, 2) between lanes 1 and 2 are two states with two checksums, and a receiver holding one
    refuses a snapshot that claims the other's."""
    from gs_map_share.errors import DecodeError
    from gs_map_share.lanes import decode_lanes, encode_lanes

    pts = [[2, 0], [0, 0]]
    a = _lane_state({1: (0, 0, pts), 2: (0, 0, [])})
    b = _lane_state({1: (0, 0, []), 2: (0, 0, pts)})
    assert a.checksum() != b.checksum()
    snap = encode_lanes(None, a, map_id=3, seq=1, base_seq=0)
    liar = _with_header(snap, state_crc=b.checksum())
    with pytest.raises(DecodeError, match="does not match"):
        decode_lanes(liar, None)
    _, got = decode_lanes(snap, None)
    assert got.checksum() == a.checksum() and got.lanes[1][2].tolist() == pts


def test_lane_class_must_fit_a_byte():
    """Classes travel as bytes (0..255): 255 is quantised, 256 and −1 are refused when quantising
    (the receiver would refuse them as "lane fields out of range")."""
    from gs_map_share.errors import EncodeError
    from gs_map_share.lanes import Lane, quantize_lanes

    pts = np.array([[0.0, 0.0], [1.0, 0.5]])
    q = quantize_lanes([Lane(4, 255, 0.5, pts)])
    assert q.lanes[4][0] == 255 and q.lanes[4][2].tolist() == [[0, 0], [100, 50]]
    for cls in (256, -1):
        with pytest.raises(EncodeError, match="class or id out of range"):
            quantize_lanes([Lane(4, cls, 0.5, pts)])


def test_lane_ids_match_only_strictly_within_max_dist_and_first_on_a_tie():
    """assign_ids: a previous lane matches when the mean distance is *below* ``max_dist``. An
    element exactly 1 m beside a lane (every point's nearest is 1 m away) under max_dist 1 gets a
    new id; two previous lanes equally near (0.5 m either side): the first one listed keeps it."""
    from gs_map_share.lanes import Lane, assign_ids

    class Element:
        def __init__(self, pts):
            self.cls, self.score, self.points = 1, 0.8, np.asarray(pts, np.float64)

    line = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    prev = [Lane(10, 1, 0.9, line)]
    out, nxt = assign_ids(prev, [Element(line + [0.0, 1.0])], next_id=50, max_dist=1.0)
    assert [ln.id for ln in out] == [50] and nxt == 51
    out, nxt = assign_ids(prev, [Element(line + [0.0, 0.999])], next_id=50, max_dist=1.0)
    assert [ln.id for ln in out] == [10] and nxt == 50
    prev = [Lane(10, 1, 0.9, line + [0.0, 0.5]), Lane(11, 1, 0.9, line - [0.0, 0.5])]
    out, _ = assign_ids(prev, [Element(line)], next_id=50, max_dist=1.0)
    assert [ln.id for ln in out] == [10]


def _lanes_set(ids, cls, score, k, mode, first=(), diffs=(), resid=()) -> bytes:
    """A LANES_SET chunk written by hand (lanes.py's docstring): ids as REMOVED (count, first id,
    gaps − 1), unsigned class, score, point count and mode streams, then x and y streams of the
    absolute lanes' first points, their differences and the residual lanes' residuals."""
    from gs_map_share.bitio import Writer
    from gs_map_share.entropy import put_stream

    w = Writer()
    w.varint(len(ids))
    w.varint(ids[0])
    put_stream(w, np.diff(np.asarray(ids, np.int64)) - 1, signed=False)
    for values in (cls, score, k, mode):
        put_stream(w, np.asarray(values, np.int64), signed=False)
    for pts in (first, diffs, resid):
        pts = np.asarray(pts, np.int64).reshape(-1, 2)
        for j in range(2):
            put_stream(w, pts[:, j])
    return w.getvalue()


@pytest.mark.parametrize("mode,ok", [(0, True), (1, False), (2, False), (3, False)])
def test_lane_mode_other_than_absolute_or_residual_is_refused(mode, ok):
    """A lane's mode is 0 (absolute) or 1 (residual): a snapshot of one empty lane with mode 0
    decodes to it; mode 1 has no lane to be a residual against; modes 2 and 3 are "lane fields out
    of range", even where the header's count and checksum are the empty lane's."""
    from gs_map_share.container import Chunk
    from gs_map_share.errors import DecodeError
    from gs_map_share.lanes import LANES_SET, decode_lanes

    want = _lane_state({1: (0, 0, [])})
    chunk = Chunk(LANES_SET, 0, _lanes_set([1], [0], [0], [0], [mode]))
    h = Header(3, 1, 0, 1, want.checksum(), 0, 1, QuantParams(pos_step=0.01), 1.0, "map")
    data = pack(h, [chunk])
    if ok:
        _, got = decode_lanes(data, None)
        assert got.checksum() == want.checksum() and got.lanes[1][2].shape == (0, 2)
    else:
        with pytest.raises(DecodeError, match="out of range" if mode > 1 else "residual"):
            decode_lanes(data, None)


def test_lane_points_in_all_are_bounded_by_the_container_size():
    """Points are bounded like Gaussians, by the container's size (``max_gaussians_for``), in
    total as well as per lane: two lanes of 3,000 points (each within the bound, together past it)
    are "lane fields out of range", even with the header's count and checksum theirs; one of them
    alone decodes."""
    from gs_map_share.container import Chunk
    from gs_map_share.errors import DecodeError
    from gs_map_share.lanes import LANES_SET, decode_lanes
    from gs_map_share.section import max_gaussians_for

    k = 3000

    def container(n_lanes: int):
        want = _lane_state({i: (0, 0, np.zeros((k, 2))) for i in range(1, n_lanes + 1)})
        body = _lanes_set(
            list(range(1, n_lanes + 1)),
            [0] * n_lanes,
            [0] * n_lanes,
            [k] * n_lanes,
            [0] * n_lanes,
            first=np.zeros((n_lanes, 2)),
            diffs=np.zeros((n_lanes * (k - 1), 2)),
        )
        h = Header(3, 1, 0, n_lanes, want.checksum(), 0, 1, QuantParams(pos_step=0.01), 1.0, "map")
        return pack(h, [Chunk(LANES_SET, 0, body)]), want

    data, want = container(1)
    _, got = decode_lanes(data, None)
    assert got.checksum() == want.checksum()
    data, _ = container(2)
    assert k < max_gaussians_for(len(data)) < 2 * k
    with pytest.raises(DecodeError, match="lane fields out of range"):
        decode_lanes(data, None)


@pytest.mark.parametrize("x,ok", [((1 << 40) - 1, True), (1 << 40, False), (-(1 << 40), False)])
def test_decoded_lane_coordinates_stay_strictly_below_two_to_the_40(x, ok):
    """Lane coordinates lie strictly inside ±2**40 steps (what quantize_lanes lets through): a
    hand-built snapshot of one point at 2**40 − 1 decodes, one at ±2**40 is "coordinates out of
    range" even with the header's checksum its own."""
    from gs_map_share.container import Chunk
    from gs_map_share.errors import DecodeError
    from gs_map_share.lanes import LANES_SET, decode_lanes

    want = _lane_state({1: (2, 9, [[x, -5]])})
    body = _lanes_set([1], [2], [9], [1], [0], first=[[x, -5]])
    h = Header(3, 1, 0, 1, want.checksum(), 0, 1, QuantParams(pos_step=0.01), 1.0, "map")
    data = pack(h, [Chunk(LANES_SET, 0, body)])
    if ok:
        _, got = decode_lanes(data, None)
        assert got.lanes[1][2].tolist() == [[x, -5]] and got.checksum() == want.checksum()
    else:
        with pytest.raises(DecodeError, match="coordinates out of range"):
            decode_lanes(data, None)


@pytest.mark.parametrize("field", ["cls", "score"])
def test_lane_delta_carries_a_class_or_score_only_change(field):
    """A lane whose points stay but whose class or score changes is sent (LANES_SET holds "lanes
    added or changed"): the receiver's lane takes the new value, its points the same."""
    from gs_map_share.lanes import decode_lanes, encode_lanes

    pts = [[0, 0], [100, 3], [200, 9]]
    old = _lane_state({1: (1, 200, pts), 2: (0, 100, [[5, 5]])})
    new_val = {"cls": (4, 200), "score": (1, 17)}[field]
    new = _lane_state({1: (*new_val, pts), 2: (0, 100, [[5, 5]])})
    delta = encode_lanes(old, new, map_id=3, seq=2, base_seq=1)
    h, got = decode_lanes(delta, old)
    assert got.lanes[1][:2] == new_val and got.lanes[1][2].tolist() == pts
    assert got.checksum() == new.checksum() == h.state_crc
    assert old.lanes[1][:2] == (1, 200)  # the base is untouched


def test_pending_evictions_in_a_row_each_take_the_farthest_base_still_held():
    """A full buffer of one delta, fed ever nearer ones: each arrival pushes out the one held (the
    farthest base still held, never one already emptied), and the last one is what is left."""
    from gs_map_share.receiver import BUFFERED, PendingDeltas

    pend = PendingDeltas(max_count=1)
    assert pend.add(_hdr(7, 9, 8), b"d8") == (BUFFERED, 0)
    for base in (6, 4, 2):
        assert pend.add(_hdr(7, base + 1, base), b"d%d" % base) == (BUFFERED, 1)
        assert (len(pend), pend.nbytes) == (1, 2)
    assert [p.data for p in pend.take(2)] == [b"d2"]
    assert [pend.take(b) for b in (4, 6, 8)] == [[], [], []]


def test_a_deeper_depth_short_of_tails_stops_the_choice():
    """ "Every depth from s on" must have mostly tails: 1,100 lone voxels and 200 pairs that share
    one node at depth 3 of a depth-5 tree. Depth 3 has 1,100 tails of 1,101 nodes (enough), depth
    4 1,100 of 1,300 (85 %, not): no depth at or above 4 qualifies, so none is taken."""
    from gs_map_share import tails

    depth, lone, pairs = 5, 1100, 200
    c = np.full(lone + 2 * pairs + 1, -1, np.int64)
    group = lone + np.arange(1, 2 * pairs)  # boundaries inside the group
    c[group] = np.where((group - lone) % 2 == 1, 4, 3)  # pair partners part at 5, pairs at 4
    counts = [int(np.count_nonzero(c[:-1] < d)) for d in range(depth + 1)]
    alone = np.maximum(c[:-1], c[1:])
    tails_at = [int(np.count_nonzero(alone < d)) for d in range(depth + 1)]
    assert (counts[3], tails_at[3]) == (1101, 1100) and (counts[4], tails_at[4]) == (1300, 1100)
    assert tails.choose(c, counts, 2, depth) is None
    assert tails.choose(c[: lone + 1], [lone] * (depth + 1), 2, depth) == 2  # the lone ones alone
