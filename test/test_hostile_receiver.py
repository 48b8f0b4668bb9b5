"""The receiver against hostile deltas: corrupt twins (CRCs resealed) arriving before the genuine one,
junk from the future, memory bound in bytes, another map's deltas. Outcome: the map converges to the
sender's, bit-identical, and a delta that fails its checks never makes the genuine one a "duplicate".
The fleet server's per-vehicle streams (:class:`FleetMerge`) obey the same rules: the orders run
through both."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_maps import synthetic_map

from gs_map_share.container import Chunk, Header, pack, reseal, unpack
from gs_map_share.delta import MapSender
from gs_map_share.merge import FleetMerge
from gs_map_share.quantize import QuantParams
from gs_map_share.receiver import APPLIED, DROPPED, OTHER_MAP, REJECTED, MapStore

P = QuantParams()


def _stream(n_deltas=5, seed=3):
    rng = np.random.default_rng(seed)
    g = synthetic_map(600, 0, seed=seed)
    sender = MapSender.from_map(g, P, map_id=5)
    msgs = [sender.snapshot()]
    for _ in range(n_deltas):
        ids = rng.choice(g.ids, 8, replace=False)
        g.update(ids, means=g.means[g.rows_of(ids)] + 0.03)
        msgs.append(sender.update(g, g.take_changes())[0])
    return msgs, sender.shadow.copy(), sender.seq


def _twin(data: bytes, salt: int) -> bytes:
    """Same header (seq, base_seq, map id, CRCs valid), damaged content."""
    h, chunks = unpack(data)
    bad = bytearray(data)
    start = len(data) - sum(len(c.data) for c in chunks)  # the chunk bodies sit at the end
    for k in range(3):
        bad[start + (salt * 7919 + k * 104729) % (len(data) - start)] ^= 0x20 << k
    twin = reseal(bytes(bad))
    h2, _ = unpack(twin)
    assert (h2.seq, h2.base_seq, h2.map_id) == (h.seq, h.base_seq, h.map_id)
    assert twin != data
    return twin


MSGS, FINAL, LAST = _stream()
TWINS = [None] + [_twin(d, i) for i, d in enumerate(MSGS[1:], 1)]


class _Vehicle:
    """The fleet server's view of the stream's vehicle (map 5), fed as a receiver is."""

    def __init__(self, max_pending: int = 64) -> None:
        self.fleet = FleetMerge(P, global_map_id=1, max_pending=max_pending)

    def receive(self, data: bytes) -> str:
        return self.fleet.offer(data).status

    def _v(self):
        return self.fleet.vehicle(5)

    seq = property(lambda self: self._v().seq)
    state = property(lambda self: self._v().state)
    pending = property(lambda self: len(self._v().pending))


RECEIVERS = {"receiver": MapStore, "fleet vehicle": _Vehicle}


@pytest.mark.parametrize("make", RECEIVERS.values(), ids=RECEIVERS.keys())
def test_corrupt_twin_first_then_genuine_in_order(make):
    store = make()
    store.receive(MSGS[0])
    for twin, genuine in zip(TWINS[1:], MSGS[1:], strict=True):
        assert store.receive(twin) == REJECTED
        assert store.receive(genuine) == APPLIED
    assert store.seq == LAST and store.state.equals(FINAL)


@pytest.mark.parametrize("make", RECEIVERS.values(), ids=RECEIVERS.keys())
def test_corrupt_twins_of_future_deltas_buffered_first(make):
    store = make()
    store.receive(MSGS[0])
    for twin in TWINS[2:]:
        store.receive(twin)  # all from the future: buffered
    for genuine in MSGS[2:]:
        store.receive(genuine)  # buffered beside their twins, not dropped as duplicates
    assert store.receive(MSGS[1]) == APPLIED  # closes the gap: each twin fails, each genuine applies
    assert store.seq == LAST and store.state.equals(FINAL) and store.pending == 0


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.permutations(list(range(1, 2 * len(MSGS) - 1))), st.lists(st.integers(0, len(MSGS) - 1), max_size=4)
)
def test_any_order_of_twins_genuine_and_repeats_converges(order, repeats):
    """Every genuine message arrives at least once, twins anywhere: the map ends bit-identical, in
    the receiver and in the fleet server's copy of the vehicle."""
    pool = MSGS + TWINS[1:]
    for make in RECEIVERS.values():
        store = make()
        for i in [0, *order] + list(repeats):
            store.receive(pool[i])
        assert store.seq == LAST and store.state.equals(FINAL), make.__name__
    assert store.pending == 0


@pytest.mark.parametrize("make", RECEIVERS.values(), ids=RECEIVERS.keys())
def test_genuine_delta_buffered_first_survives_a_twin_for_its_place(make):
    """Delta 2 waits for delta 1; a corrupt twin of delta 2 arrives and waits beside it (it does
    not replace it); when delta 1 comes, the twin fails and the genuine one applies."""
    store = make()
    store.receive(MSGS[0])
    store.receive(MSGS[2])
    store.receive(TWINS[2])
    assert store.receive(MSGS[2]) in ("duplicate", "replayed")  # the same bytes again: kept once
    assert store.pending == 2
    for m in MSGS[1:]:
        store.receive(m)
    assert store.seq == LAST and store.state.equals(FINAL)


@pytest.mark.parametrize("make", RECEIVERS.values(), ids=RECEIVERS.keys())
def test_beyond_the_pending_bound_the_farthest_future_goes_first(make):
    """Delta 1 is lost; deltas 2..5 arrive with room for 3: the farthest (5) is dropped, so the
    retransmitted delta 1 brings the map to 4 at once, and 5, sent again, to the end."""
    store = make(max_pending=3)
    store.receive(MSGS[0])
    for m in MSGS[2:]:
        store.receive(m)
    assert store.pending == 3
    assert store.receive(MSGS[1]) == APPLIED
    assert store.seq == LAST - 1 and store.pending == 0
    assert store.receive(MSGS[-1]) == APPLIED and store.state.equals(FINAL)


def test_another_maps_delta_buffered_before_the_first_snapshot_is_never_applied():
    """A delta of map 7 arrives before any snapshot (the store is not bound yet: it waits); map 5's
    snapshot then binds the store, and map 7's delta — whose base sequence matches — is refused as
    another map's, not applied: the store holds map 5's map, and map 5's deltas follow."""
    g = synthetic_map(600, 0, seed=3)
    other = MapSender.from_map(g, P, map_id=7, first_seq=unpack(MSGS[0])[0].seq)  # (same numbering)
    other.snapshot()
    g.update(g.ids[:50], means=g.means[:50] + 0.5)
    foreign = other.update(g, g.take_changes())[0]
    assert unpack(foreign)[0].base_seq == unpack(MSGS[1])[0].base_seq
    store = MapStore()
    assert store.receive(foreign) == "buffered"
    store.receive(MSGS[0])
    assert store.map_id == 5 and store.stats[OTHER_MAP] == 1 and store.pending == 0
    assert store.seq == unpack(MSGS[0])[0].seq
    for m in MSGS[1:]:
        assert store.receive(m) == APPLIED
    assert store.state.equals(FINAL)


def test_pending_memory_bounded_in_bytes_and_real_deltas_still_apply():
    h0, _ = unpack(MSGS[1])
    store = MapStore(max_pending_bytes=8 << 20)
    store.receive(MSGS[0])
    rng = np.random.default_rng(0)
    junk_bytes = rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    outcomes = []
    for i in range(300):  # 300 junk deltas of 1 MB from far in the future
        fake = Header(h0.map_id, h0.seq + 1000 + i, h0.seq + 999 + i, 1, 0, 0, 1, h0.params)
        outcomes.append(store.receive(pack(fake, [Chunk(1, 0, junk_bytes)])))
        assert store.pending_bytes <= 8 << 20
    assert outcomes.count(DROPPED) + store.stats[DROPPED] > 0
    for genuine in MSGS[1:][::-1]:  # newest first: the near-future ones must be kept
        store.receive(genuine)
    assert store.seq == LAST and store.state.equals(FINAL)
    assert store.pending_bytes <= 8 << 20


def test_store_bound_rejects_a_map_larger_than_it_holds_before_decoding(monkeypatch):
    """A store bounded to M Gaussians rejects a snapshot of more (counted from its header, before
    any decoding: the decoder is never called), and a delta that would grow its map past M; the
    map it holds is untouched, and a later delta within the bound applies."""
    from gs_map_share import receiver

    g = synthetic_map(600, 0, seed=4)
    sender = MapSender.from_map(g, P, map_id=5)
    snap = sender.snapshot()
    store = MapStore(max_gaussians=599)
    calls = []
    real = receiver.decode_snapshot
    monkeypatch.setattr(receiver, "decode_snapshot", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert store.receive(snap) == REJECTED and not calls and not store.ready
    assert "600 Gaussians" in store.last_error and "at most 599" in store.last_error

    store = MapStore(max_gaussians=610)
    assert store.receive(snap) == receiver.SNAPSHOT
    before = store.state.copy()
    grow = synthetic_map(20, 0, seed=5)
    g.add(grow.means, grow.quats, grow.log_scales, grow.opacity_logits, grow.sh)
    too_big = sender.update(g, g.take_changes())[0]
    assert store.receive(too_big) == REJECTED and store.state.equals(before)
    # (the sender moved on: a snapshot of 620 is refused too, one of 605 is taken)
    g.remove(g.ids[-15:])
    assert store.receive(sender.update(g, g.take_changes())[0]) in (REJECTED, receiver.BUFFERED)
    assert store.receive(sender.snapshot()) == receiver.SNAPSHOT and len(store.state) == 605


def test_a_delta_never_decodes_more_gaussians_than_its_header_leaves_room_for(monkeypatch):
    """A delta adding 50 Gaussians whose header claims the map keeps its size: the added section
    is decoded with a cap of the room the header leaves (0), so it is refused before a larger map
    exists, even for a moment."""
    from gs_map_share import delta as delta_mod

    g = synthetic_map(600, 0, seed=6)
    sender = MapSender.from_map(g, P, map_id=5)
    store = MapStore()
    store.receive(sender.snapshot())
    extra = synthetic_map(50, 0, seed=7)
    g.add(extra.means, extra.quats, extra.log_scales, extra.opacity_logits, extra.sh)
    data = sender.update(g, g.take_changes())[0]
    h, chunks = unpack(data)
    d = dict(h.__dict__)
    d["gaussians"] = 600
    lying = pack(Header(**d), chunks)
    caps = []
    real = delta_mod.decode_section
    monkeypatch.setattr(
        delta_mod,
        "decode_section",
        lambda sec, p, deg, cap, *a: caps.append(cap) or real(sec, p, deg, cap, *a),
    )
    before = store.state.copy()
    assert store.receive(lying) == REJECTED and caps == [0] and store.state.equals(before)
    assert store.receive(data) == APPLIED and caps[-1] == 50 and len(store.state) == 650
