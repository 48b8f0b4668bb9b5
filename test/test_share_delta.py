"""gs_map_share deltas and the receiver: diff by id, live changes, sequencing, faults."""

from __future__ import annotations

import numpy as np
import pytest
from faulty_link import simulate
from synthetic_maps import synthetic_map

from gs_map_share.delta import MapSender, decode_delta, encode_delta
from gs_map_share.errors import DecodeError, EncodeError
from gs_map_share.quantize import QuantParams, quantize, to_qmap
from gs_map_share.receiver import APPLIED, BUFFERED, DUPLICATE, OTHER_MAP, REJECTED, SNAPSHOT, MapStore
from gs_map_share.snapshot import encode_map, encode_snapshot

P = QuantParams()


def edited(g, rng, frac=0.01):
    h = g.copy()
    k = max(1, int(len(h) * frac))
    ids = rng.choice(h.ids, k, replace=False)
    h.update(ids, means=h.means[h.rows_of(ids)] + 0.02)
    ids = rng.choice(h.ids, k, replace=False)
    sh = h.sh[h.rows_of(ids)].copy()
    sh[:, 0] += 0.5
    h.update(ids, sh=sh, opacity_logits=np.zeros(k, np.float32))
    h.remove(rng.choice(h.ids, k, replace=False))
    rows = rng.integers(0, len(h), k)
    h.add(h.means[rows] + 0.1, h.quats[rows], h.log_scales[rows], h.opacity_logits[rows], h.sh[rows])
    return h


def test_diff_apply_equals_new_quantised_map():
    rng = np.random.default_rng(0)
    old = synthetic_map(5000, 2, seed=0)
    new = edited(old, rng)
    data, info = encode_delta(to_qmap(old, P), to_qmap(new, P), P, map_id=1, seq=2, base_seq=1)
    assert info.added and info.updated and info.removed
    h, state = decode_delta(to_qmap(old, P), data)
    assert state.equals(to_qmap(new, P))
    assert (h.seq, h.base_seq) == (2, 1)


def test_delta_at_one_percent_is_small():
    rng = np.random.default_rng(1)
    old = synthetic_map(20000, 3, seed=1)
    new = old.copy()
    k = 200
    ids = rng.choice(new.ids, k, replace=False)
    new.update(ids, means=new.means[new.rows_of(ids)] + 0.01)
    full, _ = encode_map(new, P)
    data, _ = encode_delta(to_qmap(old, P), to_qmap(new, P), P, map_id=1, seq=2, base_seq=1)
    assert len(data) <= 0.02 * len(full)


def test_whole_tiles_cleared():
    old = synthetic_map(4000, 0, seed=2)
    new = old.subset(old.means[:, 0] > 4.2)  # everything left of x = 4.2 m removed
    data, info = encode_delta(to_qmap(old, P), to_qmap(new, P), P, map_id=1, seq=2, base_seq=1)
    assert info.cleared_tiles > 0
    _, state = decode_delta(to_qmap(old, P), data)
    assert state.equals(to_qmap(new, P))


def test_live_changes_and_receiver_bit_identical():
    rng = np.random.default_rng(3)
    g = synthetic_map(3000, 1, seed=3)
    sender = MapSender.from_map(g, P, map_id=5)
    store = MapStore()
    assert store.receive(sender.snapshot()) == SNAPSHOT
    for _ in range(5):
        k = 30
        ids = rng.choice(g.ids, k, replace=False)
        g.update(ids, log_scales=g.log_scales[g.rows_of(ids)] - 0.3)
        g.remove(rng.choice(g.ids, 10, replace=False))
        rows = rng.integers(0, len(g), 20)
        g.add(g.means[rows] + 0.2, g.quats[rows], g.log_scales[rows], g.opacity_logits[rows], g.sh[rows])
        data, _ = sender.update(g, g.take_changes())
        assert store.receive(data) == APPLIED, store.last_error
        assert store.gaussian_map().equals(quantize(g, P))


def test_a_snapshot_is_encoded_again_only_after_a_change(monkeypatch):
    """mapper_node sends its snapshot every period, changed or not: the same map and sequence are
    encoded once (a large map takes seconds), and an update gives a new snapshot of the new map."""
    from gs_map_share import snapshot as snapshot_mod

    calls = []
    real = snapshot_mod.encode_snapshot
    monkeypatch.setattr(snapshot_mod, "encode_snapshot", lambda *a, **k: calls.append(1) or real(*a, **k))
    g = synthetic_map(500, 1, seed=5)
    sender = MapSender.from_map(g, P, map_id=7)
    first = sender.snapshot()
    assert sender.snapshot() == first and len(calls) == 1
    g.update(g.ids[:20], means=g.means[:20] + 0.05)
    sender.update(g, g.take_changes())
    store = MapStore()
    assert store.receive(sender.snapshot()) == SNAPSHOT and len(calls) == 2
    assert store.gaussian_map().equals(quantize(g, P)) and store.seq == sender.seq


def test_change_record_overflow_falls_back_to_a_whole_map_diff(monkeypatch):
    """A map nobody took changes from for long keeps a bounded record: once removed ids outnumber the
    map (and the floor), the record is dropped and flagged; the sender then diffs the whole map and the
    receiver still ends bit-identical."""
    import gs_mapping.gaussians as gm

    monkeypatch.setattr(gm, "CHANGE_RECORD_MIN", 50)
    rng = np.random.default_rng(4)
    g = synthetic_map(200, 1, seed=4)
    sender = MapSender.from_map(g, P, map_id=6)
    store = MapStore()
    assert store.receive(sender.snapshot()) == SNAPSHOT
    for _ in range(8):  # 8 x 40 removals, nobody asks: more removed ids than the map holds
        g.remove(rng.choice(g.ids, 40, replace=False))
        rows = rng.integers(0, len(g), 40)
        g.add(g.means[rows] + 0.1, g.quats[rows], g.log_scales[rows], g.opacity_logits[rows], g.sh[rows])
    record_bytes = g.nbytes() - g.copy().nbytes()  # a copy starts with an empty change record
    assert record_bytes <= 64 * 2 * max(len(g), 50)  # dropped on overflow (unbounded here: 25.6 kB)
    changes = g.take_changes()
    assert changes.overflowed and not changes.empty
    data, _ = sender.update(g, changes)
    assert store.receive(data) == APPLIED, store.last_error
    assert store.gaussian_map().equals(quantize(g, P))
    assert not g.take_changes().overflowed  # taking the record resets the flag


def test_sequencing_gap_duplicate_reorder_other_map():
    g = synthetic_map(1000, 0, seed=4)
    sender = MapSender.from_map(g, P, map_id=9)
    snap = sender.snapshot()
    deltas, states = [], []
    for i in range(4):
        g.update(g.ids[i * 10 : (i + 1) * 10], means=g.means[i * 10 : (i + 1) * 10] + 0.05)
        deltas.append(sender.update(g, g.take_changes())[0])
        states.append(sender.shadow.copy())
    store = MapStore()
    assert store.receive(deltas[0]) == BUFFERED  # before any snapshot: wait for one
    assert store.receive(snap) == SNAPSHOT  # then the buffered delta applies
    s0 = store.seq - 1
    assert store.state.equals(states[0])
    assert store.receive(deltas[0]) == DUPLICATE
    assert store.receive(deltas[2]) == BUFFERED  # gap: 3 waits for 2
    assert store.receive(deltas[3]) == BUFFERED
    assert store.receive(deltas[1]) == APPLIED  # the gap closes, 3 and 4 follow
    assert store.seq == s0 + 4 and store.seq == sender.seq and store.state.equals(states[3])
    other = MapSender.from_map(g, P, map_id=10)
    assert store.receive(other.snapshot()) == OTHER_MAP
    assert store.state.equals(states[3])


def test_corrupt_delta_rejected_whole_map_untouched():
    g = synthetic_map(2000, 1, seed=5)
    sender = MapSender.from_map(g, P)
    store = MapStore()
    store.receive(sender.snapshot())
    g.update(g.ids[:50], means=g.means[:50] + 0.1)
    data, _ = sender.update(g, g.take_changes())
    before = store.state.copy()
    for i in range(0, len(data), max(1, len(data) // 40)):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        assert store.receive(bytes(bad)) in (REJECTED, BUFFERED, DUPLICATE, OTHER_MAP)
        assert store.state.equals(before) and store.seq == sender.seq - 1
    assert store.receive(data[:-3]) == REJECTED
    assert store.receive(data) == APPLIED
    assert store.gaussian_map().equals(quantize(g, P))


def test_delta_against_wrong_base_is_rejected():
    g = synthetic_map(1000, 0, seed=6)
    other = synthetic_map(1000, 0, seed=7)
    new = g.copy()
    new.update(new.ids[:5], means=new.means[:5] + 0.1)
    data, _ = encode_delta(to_qmap(g, P), to_qmap(new, P), P, map_id=1, seq=2, base_seq=1)
    with pytest.raises(DecodeError):
        decode_delta(to_qmap(other, P), data)  # applies, but the checksum says it is not the sender's map
    snap, _ = encode_snapshot(to_qmap(g, P), P)
    with pytest.raises(DecodeError):
        decode_delta(to_qmap(g, P), snap)


@pytest.mark.parametrize("seed", [0, 1])
def test_faulty_link_converges_bit_identical(seed):
    r = simulate(
        steps=60,
        seed=seed,
        n0=800,
        p_drop=0.08,
        p_dup=0.08,
        p_reorder=0.15,
        p_corrupt=0.08,
        snapshot_every=10,
    )
    assert r.final_equal
    assert r.wrong_state_seen == 0
    assert r.link["corrupted"] == 0 or r.receiver.get("rejected", 0) > 0


def _stream_of_messages(n_deltas=6, seed=0):
    rng = np.random.default_rng(seed)
    g = synthetic_map(400, 0, seed=seed)
    sender = MapSender.from_map(g, P, map_id=4)
    msgs = [sender.snapshot()]
    for _ in range(n_deltas):
        ids = rng.choice(g.ids, 5, replace=False)
        g.update(ids, opacity_logits=g.opacity_logits[g.rows_of(ids)] + 0.5)
        rows = rng.integers(0, len(g), 3)
        g.add(g.means[rows] + 0.05, g.quats[rows], g.log_scales[rows], g.opacity_logits[rows], g.sh[rows])
        msgs.append(sender.update(g, g.take_changes())[0])
    return msgs, sender.shadow, sender.seq


_MSGS, _FINAL, _LAST_SEQ = _stream_of_messages()


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(len(_MSGS)))), st.lists(st.integers(0, len(_MSGS) - 1), max_size=6))
def test_any_order_with_duplicates_converges(order, dups):
    store = MapStore()
    for i in list(order) + list(dups):
        store.receive(_MSGS[i])
    assert store.seq == _LAST_SEQ and store.state.equals(_FINAL)
    assert store.pending == 0


def test_restarted_sender_is_followed():
    """A sender that restarts (same map id, fresh state) numbers above its previous session."""
    g = synthetic_map(500, 0, seed=8)
    first = MapSender.from_map(g, P, map_id=3)
    store = MapStore()
    store.receive(first.snapshot())
    for _ in range(3):
        g.update(g.ids[:5], means=g.means[:5] + 0.01)
        assert store.receive(first.update(g, g.take_changes())[0]) == APPLIED
    h = g.subset(g.means[:, 0] > 3.0)  # the restarted mapper loaded a smaller map
    again = MapSender.from_map(h, P, map_id=3)
    assert again.seq > first.seq
    g2 = h.copy()
    g2.update(g2.ids[:5], means=g2.means[:5] + 0.02)
    delta = again.update(g2, g2.take_changes())[0]
    assert store.receive(delta) == BUFFERED  # its snapshot is still on the way
    assert store.receive(again.snapshot()) == SNAPSHOT
    assert store.seq == again.seq and store.gaussian_map().equals(quantize(g2, P))


def test_a_change_record_that_outlived_a_whole_map_update_is_harmless():
    """update(g) without the record, then update(g, g.take_changes()) with the record that still
    names the same additions: the shadow keeps each id once, the receiver stays equal to the
    sender's map, and later deltas apply. Encoding a map whose ids repeat is refused."""
    from gs_map_share.snapshot import check_ids

    g = synthetic_map(10, 0, seed=1)
    sender = MapSender.from_map(g, QuantParams.from_quality(2), first_seq=1)
    g.take_changes()
    store = MapStore()
    assert store.receive(sender.snapshot()) == "snapshot"
    a = synthetic_map(3, 0, seed=2)
    g.add(a.means, a.quats, a.log_scales, a.opacity_logits, a.sh)
    assert store.receive(sender.update(g)[0]) == "applied"
    assert store.receive(sender.update(g, g.take_changes())[0]) == "applied"
    assert sender.shadow.ids.tolist() == list(range(1, 14))
    g.update(np.array([1], np.uint64), opacity_logits=[3.0])
    assert store.receive(sender.update(g, g.take_changes())[0]) == "applied"
    assert store.state.equals(sender.shadow) and store.state.equals(to_qmap(g, sender.params))
    twice = sender.shadow.take(np.array([0, 1, 1, 2]))
    with pytest.raises(EncodeError, match="unique and sorted"):
        check_ids(twice)


def test_a_whole_map_update_resets_the_change_record():
    """update(g) without the record sends everything and resets it: a Gaussian added and sent
    that way, then removed, is removed at the receiver by the next recorded update (the record
    had cancelled its addition against its removal)."""
    g = synthetic_map(10, 0, seed=3)
    sender = MapSender.from_map(g, QuantParams.from_quality(2), first_seq=1)
    g.take_changes()
    store = MapStore()
    store.receive(sender.snapshot())
    a = synthetic_map(1, 0, seed=4)
    (new_id,) = g.add(a.means, a.quats, a.log_scales, a.opacity_logits, a.sh)
    assert store.receive(sender.update(g)[0]) == "applied"
    g.remove(np.array([new_id], np.uint64))
    assert store.receive(sender.update(g, g.take_changes())[0]) == "applied"
    assert store.state.equals(to_qmap(g, sender.params))


def test_a_delta_that_only_updates_leaves_the_map_it_was_applied_to_as_it_was():
    """The receiver applies a small delta without copying the whole map (the new map shares the
    old one's untouched fields). The map it was applied to must stay exactly as it was (a rejected
    delta, or a later one, falls back on it): compared with a copy made before, for a delta that
    updates every kind of field of a few Gaussians and removes none; the result is the sender's map."""
    rng = np.random.default_rng(31)
    old = synthetic_map(2000, 2, seed=31)
    new = old.copy()
    ids = rng.choice(new.ids, 40, replace=False)
    r = new.rows_of(ids)
    sh = new.sh[r].copy()
    sh += 0.3
    new.update(
        ids,
        means=new.means[r] + 0.05,
        log_scales=new.log_scales[r] - 0.4,
        quats=new.quats[r][:, [1, 0, 3, 2]],
        opacity_logits=new.opacity_logits[r] + 1.0,
        sh=sh,
        levels=(new.levels[r] + 1) % 3,
    )
    base = to_qmap(old, P)
    before = base.copy()
    data, info = encode_delta(base, to_qmap(new, P), P, map_id=1, seq=2, base_seq=1)
    assert info.updated == 40 and not info.added and not info.removed
    _, got = decode_delta(base, data)
    assert got.equals(to_qmap(new, P))
    assert base.equals(before)


@pytest.mark.parametrize("kept", ["first half", "every other"])
def test_added_gaussians_land_in_id_order_whether_or_not_their_ids_follow_the_map(kept):
    """A delta adds Gaussians whose ids are all above the map's (the mapper's case: appended) or
    interleaved with them (a map that lost every other Gaussian gets them back): either way the
    receiver's map is the sender's, rows in id order."""
    full = synthetic_map(3000, 1, seed=32)
    rows = np.arange(len(full))
    old = full.subset(rows < len(full) // 2 if kept == "first half" else rows % 2 == 0)
    data, info = encode_delta(to_qmap(old, P), to_qmap(full, P), P, map_id=1, seq=2, base_seq=1)
    assert info.added == len(full) - len(old)
    _, got = decode_delta(to_qmap(old, P), data)
    assert got.equals(to_qmap(full, P))
    assert np.all(np.diff(got.ids.astype(np.int64)) > 0)
