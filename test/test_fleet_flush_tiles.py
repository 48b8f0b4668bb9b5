"""The fleet flush finds the changed tiles' rows from a record of which rows each tile holds
(kept for the map object it describes), not by hashing every row of the global map and of each
owner's map. Its output must be what the whole-map search gave: the same global deltas byte for
byte, the same global map, through tile deletes and re-adds, snapshots that replace a vehicle's
map, batched flushes, a restart from restored states, a vehicle restored again to an older state,
and a rolled-back flush (map_server_node sets ``global_map`` itself on a restart and a rollback).

The digest below was taken from the whole-map search (the code before the tile record, 6db718e)
on these very sequences; each step is also held against the merge rule written out plainly
(test/fleet_rule.py)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from fleet_rule import offline_merge
from synthetic_maps import synthetic_map

from gs_map_share.delta import MapSender
from gs_map_share.merge import FleetMerge
from gs_map_share.quantize import QuantParams

P = QuantParams.from_quality(3)  # map_server_node.quality's default
VEHICLES = 3

# sha256 of every flush's (delta, base, seq, tiles) and the final map, per seed, from 6db718e
DIGESTS = {
    0: "7461d3f0b9e61919d04b678d18c1ea74f2ba620330e9606cc4f93e63fccd6ea5",
    1: "6fe24a3479b715244a85dce0534851dc7ea9f1faed478d7701564279465bf6a8",
    2: "00f60e3f05c2144eddfd322100b7eb0e2a536481e69c081506acc53b2e3512fb",
    3: "54f7f8b0bb2bef6651b64c909dc28eeaafd93205803182acf022c8abc5ce5486",
    4: "98ff7297a9523e1a069f0f59e33f791be928d228dbc1b088fb6b8e41aeb7dc7b",
}


def _tile_of(means: np.ndarray) -> np.ndarray:
    return np.rint(means.astype(np.float64) / P.pos_step).astype(np.int64) >> P.tile_bits


def _run(seed: int) -> tuple[str, int]:
    """One randomized fleet sequence; (digest of every global output, steps held against the rule)."""
    rng = np.random.default_rng(seed)
    fm = FleetMerge(P, global_map_id=1 << 20)
    maps, senders, seqs = {}, {}, {}
    for v in range(1, VEHICLES + 1):  # overlapping maps: tiles change owners as vehicles edit
        maps[v] = synthetic_map(1500, 0, seed=10 * seed + v, extent=6.0, origin=(2.0 * v, 0.0, 0.0))
        senders[v] = MapSender.from_map(maps[v], P, map_id=v, first_seq=100)
        fm.offer(senders[v].snapshot())
    h = hashlib.sha256()

    def out(f) -> None:
        if f is not None:
            data, base, seq, tiles = f
            h.update(data + f"{base} {seq} {sorted(tiles)}".encode())

    checked, stale = 0, False  # stale: a rolled-back flush left the global map behind on purpose
    for step in range(40):
        v = int(rng.integers(1, VEHICLES + 1))
        g = maps[v]
        op = int(rng.integers(0, 5))
        if op == 0 and len(g) > 20:  # move some Gaussians, most across tiles
            ids = rng.choice(g.ids, 10, replace=False)
            g.update(ids, means=g.means[g.rows_of(ids)] + rng.normal(0, 2.0, (10, 3)).astype(np.float32))
        elif op == 1 and len(g) > 20:  # delete one whole tile of this vehicle
            t = _tile_of(g.means)
            pick = t[int(rng.integers(0, len(t)))]
            g.remove(g.ids[(t == pick).all(axis=1)])
        elif op == 2:  # (re-)add Gaussians somewhere in the shared region, deleted tiles included
            r = rng.integers(0, len(g), 40)
            shift = rng.uniform(-3.0, 3.0, 3).astype(np.float32)
            g.add(g.means[r] + shift, g.quats[r], g.log_scales[r], g.opacity_logits[r], g.sh[r])
        elif op == 3:  # recolour
            ids = rng.choice(g.ids, 10, replace=False)
            g.update(ids, opacity_logits=g.opacity_logits[g.rows_of(ids)] + 1.0)
        else:  # a new snapshot (a mapper restarted on a new map): the whole state replaced
            maps[v] = g = synthetic_map(int(rng.integers(300, 1500)), 0, seed=1000 * seed + step)
            seqs[v] = senders[v].seq + 10
            senders[v] = MapSender.from_map(g, P, map_id=v, first_seq=seqs[v])
        if op < 4:
            data = senders[v].update(g, g.take_changes())[0]
        else:
            data = senders[v].snapshot()
        res = fm.offer(data, flush=False)
        assert res.status in ("applied", "snapshot"), fm.vehicle(v).last_error
        if rng.random() < 0.6:  # flush now, or batch with the next vehicles' changes
            committed = fm.global_map, fm.global_seq
            out(fm.flush())
            if rng.random() < 0.1:  # the store refused the commit: map_server_node rolls back
                fm.global_map, fm.global_seq = committed
                stale = True
        if step == 20:  # a restart: the states from the store, the global map as stored
            new = FleetMerge(P, global_map_id=1 << 20, global_seq=fm.global_seq)
            for m, veh in sorted(fm.vehicles.items()):
                new.restore_vehicle(m, veh.seq, veh.state)
            new.global_map = fm.global_map
            ref = new.reference_merge()
            if not ref.equals(new.global_map):
                h.update(new.diff_to(ref))
            fm, stale = new, False
        if step == 10:
            saved, saved_map = (fm.vehicle(1).seq, fm.vehicle(1).state), maps[1].copy()
        if step == 30:  # vehicle 1 restored again, to an older state (a caller's own restart logic),
            # then its mapper goes on from that map: a snapshot of it with a few Gaussians moved
            fm.restore_vehicle(1, *saved)
            maps[1] = saved_map
            ids = rng.choice(saved_map.ids, 5, replace=False)
            saved_map.update(ids, means=saved_map.means[saved_map.rows_of(ids)] + np.float32(2.0))
            senders[1] = MapSender.from_map(maps[1], P, map_id=1, first_seq=senders[1].seq + 10)
            assert fm.offer(senders[1].snapshot(), flush=False).status == "snapshot"
            stale = True  # (a restore re-decides owners but leaves the global map to the next flushes)
        if not stale and not fm.pending_tiles:
            assert fm.global_map.equals(offline_merge({m: fm.vehicle(m).state for m in maps}, P.tile_bits))
            checked += 1
    out(fm.flush())
    h.update(fm.global_map.checksum().to_bytes(4, "little"))
    return h.hexdigest(), checked


@pytest.mark.parametrize("seed", sorted(DIGESTS))
def test_the_flush_gives_what_the_whole_map_search_gave(seed):
    digest, checked = _run(seed)
    assert checked >= 5  # (steps after a rolled-back flush are left behind on purpose)
    assert digest == DIGESTS[seed]
