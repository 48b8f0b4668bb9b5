"""A small change to a large map costs the change, not the map: the sender's and the receiver's maps
after a delta share the arrays the delta did not touch, rows are put in place without a re-sort,
and the fleet merge finds the changed tiles' rows by a hash of each tile. Each shortcut is compared
here with a plain computation of the same answer (Python dicts and sets over the rows), whatever
path it takes; docs/format.md §5 (a delta's result) and docs/fleet.md (the merge rule) are what
they must keep."""

from __future__ import annotations

import numpy as np
import pytest
from fleet_rule import offline_merge
from synthetic_maps import synthetic_map

import gs_map_share.merge as merge
from gs_map_share.delta import MapSender, decode_delta
from gs_map_share.merge import FleetMerge, changed_tiles
from gs_map_share.quantize import QMap, QuantParams, to_qmap
from gs_map_share.receiver import MapStore

P = QuantParams.from_quality(3)  # map_server_node.quality's default
FIELDS = ("pos", "level", "op", "scale", "rot_idx", "rot", "dc", "rest")


def _rows(q: QMap) -> dict[int, tuple]:
    """Each Gaussian as plain Python values, by id."""
    return {
        int(i): tuple(tuple(np.ravel(getattr(q, f)[r]).tolist()) for f in FIELDS) for r, i in enumerate(q.ids)
    }


def test_with_rows_is_the_map_with_those_rows_put_in_and_those_ids_taken_out():
    """QMap.with_rows against a dict: replaced ids (some with equal values, some changed), new ids
    interleaved with the map's and above them, dropped ids; the map it was called on unchanged, and
    a call that changes nothing returns that map itself."""
    rng = np.random.default_rng(5)
    base = to_qmap(synthetic_map(3000, 1, seed=5), P)
    before = base.copy()
    other = to_qmap(synthetic_map(400, 1, seed=6), P)
    same = rng.choice(base.ids, 50, replace=False)
    changed = rng.choice(np.setdiff1d(base.ids, same), 50, replace=False)
    gaps = np.setdiff1d(np.arange(1, int(base.ids.max()) + 300, dtype=np.uint64), base.ids)
    new_ids = np.sort(rng.choice(gaps, 80, replace=False))
    ids = np.concatenate([same, changed, new_ids])
    q = other.take(np.arange(len(ids))).with_ids(ids)
    q.pos, q.dc = q.pos.copy(), q.dc.copy()
    r = np.searchsorted(base.ids, same)
    for f in FIELDS:  # the first 50 rows: exactly the base's values
        getattr(q, f)[:50] = getattr(base, f)[r]
    q = q.take(np.argsort(q.ids))
    drop = rng.choice(np.setdiff1d(base.ids, np.concatenate([same, changed])), 70, replace=False)

    want = _rows(base)
    want.update(_rows(q))
    for i in drop.tolist():
        del want[i]
    got = base.with_rows(q, drop)
    assert list(got.ids.tolist()) == sorted(want)
    assert _rows(got) == want
    assert base.equals(before)
    assert base.with_rows(base.take(np.flatnonzero(np.isin(base.ids, same))), np.zeros(0, np.uint64)) is base
    only_drop = base.with_rows(None, drop)  # nothing put in, some taken out
    assert _rows(only_drop) == {i: v for i, v in _rows(base).items() if i not in set(drop.tolist())}


@pytest.mark.parametrize("hash_", ["real", "x only", "one bit"])
def test_the_changed_tiles_rows_are_found_exactly_whatever_the_hash(monkeypatch, hash_):
    """The rows whose tile is one of a few tiles, against a Python set of those tiles, whatever the
    hash: with a hash of x alone (wanted tiles hash apart, but many other rows share a wanted
    tile's hash: the exact check of each candidate) and with one bit of x (wanted tiles share a
    hash: the exact fallback)."""
    weak = {
        "x only": lambda t: np.asarray(t)[:, 0].astype(np.uint64),
        "one bit": lambda t: (np.asarray(t)[:, 0] & 1).astype(np.uint64),
    }
    if hash_ in weak:
        monkeypatch.setattr(merge, "_tile_hash", weak[hash_])
    rng = np.random.default_rng(7)
    tiles = rng.integers(-6, 6, (5000, 3)).astype(np.int64)
    tiles[:5] = [(2**50, -(2**50), 3), (-(2**50), 2**50, 3), (0, 0, 0), (1, 0, 0), (0, 1, 0)]
    want = {(x, int(rng.integers(-6, 6)), int(rng.integers(-6, 6))) for x in range(-6, 6, 2)} | {
        (2**50, -(2**50), 3)
    }
    got = merge._in_tiles(tiles, want)
    assert got.tolist() == [tuple(map(int, t)) in want for t in tiles]
    order = merge._tile_array(want)
    at = merge._tile_index(tiles, order)
    assert [tuple(map(int, order[a])) if a >= 0 else None for a in at] == [
        tuple(map(int, t)) if tuple(map(int, t)) in want else None for t in tiles
    ]


def _plain_changed_tiles(old: QMap, new: QMap, tile_bits: int) -> set:
    a, b = _rows(old), _rows(new)
    tile = {}
    for q in (old, new):
        for i, p in zip(q.ids.tolist(), (q.pos >> tile_bits).tolist(), strict=True):
            tile.setdefault(i, set()).add(tuple(p))
    out = set()
    for i in set(a) | set(b):
        if a.get(i) != b.get(i):
            out |= tile[i]
    return out


def test_changed_tiles_of_an_update_only_delta_are_those_its_rows_left_and_entered():
    """A vehicle delta that only updates: the receiver's new map shares the old one's ids (the
    merge's short path). Its changed tiles against a plain row-by-row comparison: the tiles moved
    Gaussians left and entered, and the tiles of Gaussians whose colour or opacity changed."""
    g = synthetic_map(4000, 0, seed=8)
    sender = MapSender.from_map(g, P, map_id=3, first_seq=10)
    old = to_qmap(g, P)
    rng = np.random.default_rng(8)
    moved = rng.choice(g.ids, 15, replace=False)
    g.update(moved, means=g.means[g.rows_of(moved)] + np.array([3.0, 0.0, 0.0]))
    recoloured = rng.choice(np.setdiff1d(g.ids, moved), 15, replace=False)
    g.update(recoloured, opacity_logits=g.opacity_logits[g.rows_of(recoloured)] + 2.0)
    data, info = sender.update(g, g.take_changes())
    assert info.updated == 30 and not info.added and not info.removed
    _, new = decode_delta(old, data)
    assert np.shares_memory(new.ids, old.ids)  # (the short path is the one under test)
    want = _plain_changed_tiles(old, new, P.tile_bits)
    assert len(want) > 2
    assert changed_tiles(old, new, P.tile_bits) == want


def test_a_fleet_of_large_vehicle_maps_follows_small_deltas_by_the_rule():
    """Four vehicles of 6,000 Gaussians each, overlapping, then small deltas (moves across tiles,
    recolours, removals, additions) from each in turn: after every one the incremental global map
    equals the rule written out plainly over the vehicles' maps (test/fleet_rule.py),
    a receiver of the global stream holds that map, and the vehicles' maps are their senders'."""
    fm = FleetMerge(P, global_map_id=1 << 20)
    maps, senders = {}, {}
    for v in range(1, 5):
        g = synthetic_map(6000, 0, seed=20 + v, origin=(1.5 * v, 0.0, 0.0))
        senders[v] = MapSender.from_map(g, P, map_id=v, first_seq=100)
        maps[v] = g
        assert fm.offer(senders[v].snapshot()).status == "snapshot"
    follower = MapStore()
    assert follower.receive(fm.snapshot()) == "snapshot"
    rng = np.random.default_rng(9)
    for step in range(12):
        v = 1 + step % 4
        g = maps[v]
        ids = rng.choice(g.ids, 8, replace=False)
        g.update(ids[:4], means=g.means[g.rows_of(ids[:4])] + rng.normal(0, 1.5, (4, 3)))
        g.update(ids[4:], opacity_logits=g.opacity_logits[g.rows_of(ids[4:])] - 1.0)
        if step % 3 == 1:
            g.remove(rng.choice(np.setdiff1d(g.ids, ids), 6, replace=False))
        if step % 3 == 2:
            r = rng.integers(0, len(g), 5)
            g.add(g.means[r] + 2.1, g.quats[r], g.log_scales[r], g.opacity_logits[r], g.sh[r])
        out = fm.offer(senders[v].update(g, g.take_changes())[0])
        assert out.status == "applied", fm.vehicle(v).last_error
        assert fm.vehicle(v).state.equals(to_qmap(g, P))
        assert fm.global_map.equals(offline_merge({m: fm.vehicle(m).state for m in maps}, P.tile_bits)), step
        if out.global_delta is not None:
            assert follower.receive(out.global_delta) == "applied", follower.last_error
        assert follower.state.equals(fm.global_map)


def test_arrays_are_the_same_only_when_read_the_same_way():
    """The merge's short path takes two arrays for equal without a look only when they are the same
    memory read the same way: a transposed view of the same memory (same shape, other strides)
    differs, and so does the same memory read as another type; a view of all of it does not."""
    a = np.arange(9, dtype=np.int64).reshape(3, 3)
    assert merge._same(a, a[:]) and not merge._same(a, a.T) and not merge._same(a, a.copy())
    assert not merge._same(a, a.view(np.uint64)) and not merge._same(a, a.view(np.float64))  # other values


def test_a_vehicle_restored_twice_counts_only_its_last_state():
    """``restore_vehicle`` for a vehicle already restored (a store read twice, a caller's own
    restart logic): its tiles are counted from the state given last, not added to the first's.
    Vehicle 1 first restored with a dense map where vehicle 2 has a sparse one, then with a map
    elsewhere; after vehicle 2's next delta the global map is the rule over the current maps
    (vehicle 2 owns the region vehicle 1 left)."""
    here = synthetic_map(3000, 0, seed=40)
    elsewhere = synthetic_map(3000, 0, seed=41, origin=(40.0, 0.0, 0.0))
    g2 = synthetic_map(300, 0, seed=42)
    s2 = MapSender.from_map(g2, P, map_id=2, first_seq=5)
    fm = FleetMerge(P, global_map_id=1 << 20)
    fm.restore_vehicle(1, 3, to_qmap(here, P))
    fm.restore_vehicle(1, 4, to_qmap(elsewhere, P))
    fm.restore_vehicle(2, 5, s2.shadow)
    fm.diff_to(fm.reference_merge())
    ids = g2.ids[:3]
    g2.update(ids, opacity_logits=g2.opacity_logits[g2.rows_of(ids)] + 1.0)
    assert fm.offer(s2.update(g2, g2.take_changes())[0]).status == "applied"
    current = {1: to_qmap(elsewhere, P), 2: to_qmap(g2, P)}
    assert fm.global_map.equals(offline_merge(current, P.tile_bits))
    assert ((fm.global_map.ids >> np.uint64(32)) == 2).sum() == len(g2)
