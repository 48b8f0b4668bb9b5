"""A vehicle container's offer finds the counts of the tiles it changed from the vehicle's per-tile
record of ids (merge.TileRows, kept as containers change the map), not by hashing every row of the
vehicle's map. What it decides must be what the whole-map search decided: after every offer the
same status, dirty tiles, tile owners and per-tile counts, and the same global deltas, over
randomized sequences of moves, tile deletes, re-adds, recolours, snapshots, deltas arriving out of
order (buffered, then drained several at once), vehicles restored from the store and rolled-back
flushes. The digests were taken from the whole-map search (the code before the record reached the
offer, 4af5db3) on these very sequences. The record itself is held against one made afresh from the
vehicle's map after every offer, and after a restore (made again once, over the whole map)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_map_share.delta import MapSender
from gs_map_share.merge import FleetMerge, TileRows
from gs_map_share.quantize import QuantParams

P = QuantParams.from_quality(3)
VEHICLES = 3

DIGESTS = {
    0: "43a1e74eacfa4087b1b7fd616e8ef8ed9a3aa6b9161005c1ed7ec300c4a44777",
    1: "838f6136902a6dff3a4b71fe0db185ec0ee89820e37dd38c9df084989b04deab",
    2: "936b14c61d194ad9b88156815daddf358308beb07a08b4f2f3ecdc2625c6513d",
}


def _tile_of(means: np.ndarray) -> np.ndarray:
    return np.rint(means.astype(np.float64) / P.pos_step).astype(np.int64) >> P.tile_bits


def _same_record(rec: TileRows, q) -> None:
    fresh = TileRows(q, P.tile_bits).ids
    assert sorted(rec.ids) == sorted(fresh)
    for t, ids in fresh.items():
        assert rec.ids[t].dtype == ids.dtype and np.array_equal(rec.ids[t], ids)


def _record_is_the_maps(fm: FleetMerge) -> int:
    """Every record that describes its map (the vehicles', the global map's) equals one made
    afresh; how many did."""
    n = 0
    for rec, q in [(v.tiles, v.state) for v in fm.vehicles.values()] + [(fm._global_tiles, fm.global_map)]:
        if rec is not None and rec.of is q:
            _same_record(rec, q)
            n += 1
    return n


def _run(seed: int) -> tuple[str, int]:
    rng = np.random.default_rng(seed)
    fm = FleetMerge(P, global_map_id=1 << 20)
    maps, senders = {}, {}
    for v in range(1, VEHICLES + 1):  # overlapping maps: tiles change owners as vehicles edit
        maps[v] = synthetic_map(1200, 0, seed=10 * seed + v, extent=6.0, origin=(2.0 * v, 0.0, 0.0))
        senders[v] = MapSender.from_map(maps[v], P, map_id=v, first_seq=100)
        fm.offer(senders[v].snapshot())
    h = hashlib.sha256()
    held: dict[int, list[bytes]] = {}  # deltas held back, to arrive later in reverse order
    checked, stale = 0, False  # stale: a rolled-back flush left the global map behind on purpose

    def note(res) -> None:
        h.update(f"{res.status} {res.map_id} {[a.seq for a in res.accepted]}".encode())
        h.update(repr(sorted(fm.dirty)).encode())
        h.update(repr(sorted(fm.owner.items())).encode())
        h.update(repr(sorted((t, sorted(p.items())) for t, p in fm.tile_vehicles.items())).encode())

    for step in range(45):
        v = int(rng.integers(1, VEHICLES + 1))
        g = maps[v]
        op = int(rng.integers(0, 6))
        if op == 0 and len(g) > 20:  # move some Gaussians, most across tiles
            ids = rng.choice(g.ids, 10, replace=False)
            g.update(ids, means=g.means[g.rows_of(ids)] + rng.normal(0, 2.0, (10, 3)).astype(np.float32))
        elif op == 1 and len(g) > 20:  # delete one whole tile of this vehicle
            t = _tile_of(g.means)
            pick = t[int(rng.integers(0, len(t)))]
            g.remove(g.ids[(t == pick).all(axis=1)])
        elif op == 2:  # add Gaussians somewhere in the shared region
            r = rng.integers(0, len(g), 30)
            shift = rng.uniform(-3.0, 3.0, 3).astype(np.float32)
            g.add(g.means[r] + shift, g.quats[r], g.log_scales[r], g.opacity_logits[r], g.sh[r])
        elif op == 3:  # recolour, and a small move within a tile
            ids = rng.choice(g.ids, 10, replace=False)
            g.update(ids, opacity_logits=g.opacity_logits[g.rows_of(ids)] + 1.0)
            g.update(ids[:3], means=g.means[g.rows_of(ids[:3])] + np.float32(0.01))
        elif op == 4 and step % 7 == 3:  # a new snapshot: the whole state replaced
            maps[v] = g = synthetic_map(int(rng.integers(300, 1200)), 0, seed=1000 * seed + step)
            senders[v] = MapSender.from_map(g, P, map_id=v, first_seq=senders[v].seq + 10)
        if op == 4 and step % 7 == 3:
            data = senders[v].snapshot()
        else:
            data = senders[v].update(g, g.take_changes())[0]
        if op == 5 or (v in held and rng.random() < 0.5):  # held back: a later one arrives first
            held.setdefault(v, []).append(data)
            continue
        if v in held:
            for d in [data, *reversed(held.pop(v))]:  # the newest first (buffered), then the rest
                note(fm.offer(d, flush=False))
        else:
            note(fm.offer(data, flush=False))
        checked += _record_is_the_maps(fm)
        if rng.random() < 0.6:
            committed = fm.global_map, fm.global_seq
            f = fm.flush()
            if f is not None:
                h.update(f[0] + f"{f[1]} {f[2]} {sorted(f[3])}".encode())
            if rng.random() < 0.15:  # the store refused the commit: map_server_node rolls back
                fm.global_map, fm.global_seq = committed
                stale = True
        if step in (15, 30):  # a restart: every vehicle restored from the store, the global map too
            new = FleetMerge(P, global_map_id=1 << 20, global_seq=fm.global_seq)
            for m, veh in sorted(fm.vehicles.items()):
                new.restore_vehicle(m, veh.seq, veh.state)
                new.vehicle(m).pending = veh.pending
            new.global_map = fm.global_map
            fm = new
    for _v, ds in sorted(held.items()):
        for d in reversed(ds):
            note(fm.offer(d, flush=False))
    checked += _record_is_the_maps(fm)
    f = fm.flush()
    if f is not None:
        h.update(f[0])
    assert stale or fm.global_map.equals(fm.reference_merge())
    return h.hexdigest(), checked


@pytest.mark.parametrize("seed", sorted(DIGESTS))
def test_the_offer_decides_what_the_whole_map_search_decided(seed):
    digest, checked = _run(seed)
    assert checked >= 40
    assert digest == DIGESTS[seed]


def test_a_restored_vehicles_record_is_made_again_once_from_its_whole_map(monkeypatch):
    """After a restore (a server restart: the state comes from the store) the vehicle's record no
    longer describes its map; the next delta makes it again from the whole map, once, and it is
    right; the deltas after it follow it (no more whole-map records)."""
    from gs_map_share import merge

    made = []

    class Counted(TileRows):
        def __init__(self, q, tile_bits):
            made.append(len(q))
            super().__init__(q, tile_bits)

    g = synthetic_map(3000, 0, seed=5, extent=8.0)
    sender = MapSender.from_map(g, P, map_id=7, first_seq=100)
    fm = FleetMerge(P, global_map_id=1 << 20)
    fm.offer(sender.snapshot())
    restarted = FleetMerge(P, global_map_id=1 << 20, global_seq=fm.global_seq)
    restarted.restore_vehicle(7, fm.vehicle(7).seq, fm.vehicle(7).state)
    restarted.global_map = fm.global_map
    monkeypatch.setattr(merge, "TileRows", Counted)
    rng = np.random.default_rng(1)
    for _ in range(4):
        ids = rng.choice(g.ids, 10, replace=False)
        g.update(ids, means=g.means[g.rows_of(ids)] + rng.normal(0, 2.0, (10, 3)).astype(np.float32))
        assert restarted.offer(sender.update(g, g.take_changes())[0], flush=False).status == "applied"
        v = restarted.vehicle(7)
        assert v.tiles is not None and v.tiles.of is v.state
        _same_record(v.tiles, v.state)
    assert made == [3000]
    restarted.flush()  # (the global map was set from outside too: its record is made once, whole)
    assert made == [3000, len(restarted.global_map)]
    assert restarted.global_map.equals(restarted.reference_merge())
