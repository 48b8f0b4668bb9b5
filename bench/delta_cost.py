"""What one small delta costs as the map grows: the sender, a receiver, and the fleet server.

    OMP_NUM_THREADS=1 PYTHONPATH=src:test .venv/bin/python bench/delta_cost.py [--sizes 8000,32000,128000,512000]
        [--baseline-src DIR]

A mapper refining a few Gaussians of a large map sends small deltas all the time; a receiver that has
followed it for hours, and a fleet server holding many vehicles' maps, apply each one. Their cost
should follow the change, not the map. For each map size (synthetic maps of SH degree 0, quality 3,
as map_server_node's default) the median CPU time of 20 deltas that each move 10 Gaussians by 1 cm:

- sender: ``MapSender.update`` with the map's change record;
- receiver: ``MapStore.receive`` of that delta;
- fleet: ``FleetMerge.offer`` of one vehicle's delta (the global map made of 4 vehicles of size/4),
  then ``flush``, the global delta it makes: map_server_node offers each container as it comes and
  flushes once every ``global_period_s`` (0.2 s) for all of them; and ``FleetMerge.offer`` of a
  vehicle's snapshot one delta ahead of the server's map (a periodic snapshot after a lost delta).

What stays proportional to the map is the format's state checksum (CRC-32C over the whole map,
docs/format.md §6) and one copy of each field a delta writes. ``--baseline-src``: the same
measurements with another checkout's ``src/`` (e.g. a worktree of the code before a change), run
in a separate process, side by side in the results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MOVED, DELTAS, VEHICLES = 10, 20, 4
CHURN, CHURN_DELTAS = 0.01, 5
SNAPSHOTS = 8  # the fleet: snapshots offered (each one delta ahead of the server's map)  # the churn case: deltas removing 1% of the map and adding 1%


def measure(sizes: list[int], churn_sizes: list[int] = ()) -> dict:
    """{size: {sender, receiver, fleet: median CPU ms a delta}} with the gs_map_share on sys.path;
    for ``churn_sizes`` also receiver_churn, fleet_offer_churn: a delta removing and adding CHURN."""
    import time

    from synthetic_maps import synthetic_map

    from gs_map_share import MapSender, MapStore
    from gs_map_share.merge import FleetMerge
    from gs_map_share.quantize import QuantParams

    params = QuantParams.from_quality(3)

    def timed(fn, *args) -> float:
        t = time.process_time()
        fn(*args)
        return time.process_time() - t

    def one_delta(g, sender, rng) -> tuple[bytes, float]:
        """Move MOVED Gaussians of ``g`` by 1 cm: the sender's delta and its CPU seconds."""
        ids = rng.choice(g.ids, MOVED, replace=False)
        g.update(ids, means=g.means[g.rows_of(ids)] + 0.01)
        changes = g.take_changes()
        t = time.process_time()
        data = sender.update(g, changes)[0]
        return data, time.process_time() - t

    def churn_delta(g, sender, rng) -> bytes:
        """Remove CHURN of ``g``'s Gaussians and add as many (new ids, beside existing ones)."""
        k = max(1, int(CHURN * len(g)))
        g.remove(rng.choice(g.ids, k, replace=False))
        r = rng.choice(len(g), k, replace=False)
        g.add(g.means[r] + 0.05, g.quats[r], g.log_scales[r], g.opacity_logits[r], g.sh[r])
        return sender.update(g, g.take_changes())[0]

    results = {}
    for n in sizes:
        rng = np.random.default_rng(n)
        g = synthetic_map(n, 0, seed=1)
        sender = MapSender.from_map(g, params, map_id=1, first_seq=1)
        store = MapStore()
        store.receive(sender.snapshot())
        send, recv = [], []
        for _ in range(DELTAS):
            data, dt = one_delta(g, sender, rng)
            send.append(dt)
            recv.append(timed(store.receive, data))
        churn = n in churn_sizes
        recv_churn = [
            timed(store.receive, churn_delta(g, sender, rng)) for _ in range(CHURN_DELTAS if churn else 0)
        ]
        fleet = FleetMerge(params, global_map_id=1 << 20)
        vehicles = []
        for v in range(1, VEHICLES + 1):
            gv = synthetic_map(n // VEHICLES, 0, seed=v, origin=(30.0 * v, 0.0, 0.0))
            sv = MapSender.from_map(gv, params, map_id=v, first_seq=100)
            fleet.offer(sv.snapshot())
            vehicles.append((gv, sv))
        offer, flush, offer_churn = [], [], []
        for k in range(DELTAS):
            gv, sv = vehicles[k % VEHICLES]
            data, _ = one_delta(gv, sv, rng)
            offer.append(timed(fleet.offer, data, 0, False))  # (now_ns, flush=False)
            flush.append(timed(fleet.flush))
        offer_snapshot = []
        for k in range(SNAPSHOTS):  # a vehicle's snapshot after a delta the server missed
            gv, sv = vehicles[k % VEHICLES]
            one_delta(gv, sv, rng)
            offer_snapshot.append(timed(fleet.offer, sv.snapshot(), 0, False))
            fleet.flush()
        for k in range(CHURN_DELTAS if churn else 0):
            gv, sv = vehicles[k % VEHICLES]
            offer_churn.append(timed(fleet.offer, churn_delta(gv, sv, rng), 0, False))
            fleet.flush()
        results[n] = {
            "sender": 1e3 * float(np.median(send)),
            "receiver": 1e3 * float(np.median(recv)),
            "fleet_offer": 1e3 * float(np.median(offer)),
            "fleet_flush": 1e3 * float(np.median(flush)),
            "fleet_offer_snapshot": 1e3 * float(np.median(offer_snapshot)),
        }
        if churn:
            results[n]["receiver_churn"] = 1e3 * float(np.median(recv_churn))
            results[n]["fleet_offer_churn"] = 1e3 * float(np.median(offer_churn))
        print(f"{n}: {results[n]}", file=sys.stderr, flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="8000,32000,128000,512000")
    ap.add_argument("--churn-sizes", default="128000,512000", help="sizes also measured with churn deltas")
    ap.add_argument("--baseline-src", type=Path, default=None)
    ap.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)  # (the baseline's process)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    churn_sizes = [int(s) for s in args.churn_sizes.split(",") if s]
    if args.measure_only:
        print(json.dumps(measure(sizes, churn_sizes)))
        return 0
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "test"), str(ROOT / "bench")]
    from common import log, machine_info, write_results

    ours = measure(sizes, churn_sizes)
    base = None
    if args.baseline_src is not None:
        log(f"baseline: {args.baseline_src}")
        env = dict(os.environ, PYTHONPATH=f"{args.baseline_src}:{ROOT / 'test'}")
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure-only",
                "--sizes",
                args.sizes,
                "--churn-sizes",
                args.churn_sizes,
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        base = {int(k): v for k, v in json.loads(out.stdout).items()}
    rows = []
    for n in sizes:
        cells = [f"{n:,}"]
        for k in ("sender", "receiver", "fleet_offer", "fleet_flush", "fleet_offer_snapshot"):
            cells.append(f"{ours[n][k]:.2f}" + (f" (was {base[n][k]:.2f})" if base else ""))
        rows.append("| " + " | ".join(cells) + " |")
    churn_rows = []
    for n in sizes:
        if n in churn_sizes:
            cells = [f"{n:,}"]
            for k in ("receiver_churn", "fleet_offer_churn"):
                cells.append(f"{ours[n][k]:.2f}" + (f" (was {base[n][k]:.2f})" if base else ""))
            churn_rows.append("| " + " | ".join(cells) + " |")
    small, large = ours[sizes[0]], ours[sizes[-1]]
    growth = {k: large[k] / small[k] for k in ("sender", "receiver", "fleet_offer", "fleet_flush")}
    info = machine_info()
    md = "\n".join(
        [
            "# What one small delta costs as the map grows",
            "",
            f"{info['platform']}, {info['cpus']} CPUs (shared), load {info['load_avg_1m']:.1f}, {info['date_utc']}.",
            f"Median CPU ms of {DELTAS} deltas each moving {MOVED} Gaussians by 1 cm; synthetic maps, SH 0,"
            f" quality 3; the fleet: {VEHICLES} vehicles of size/{VEHICLES} each; a snapshot offered:"
            f" median of {SNAPSHOTS}, a vehicle's snapshot one delta ahead of the server's map (decoding included)."
            + (f' Baseline ("was"): `{args.baseline_src}`, same run.' if base else ""),
            "",
            "| map Gaussians | sender ms | receiver ms | fleet server: offer ms | fleet server: flush ms"
            " | fleet server: offer of a snapshot ms |",
            "|---:|---|---|---|---|---|",
            *rows,
            "",
            f"From {sizes[0]:,} to {sizes[-1]:,} Gaussians ({sizes[-1] / sizes[0]:.0f}x): sender"
            f" {growth['sender']:.1f}x, receiver {growth['receiver']:.1f}x, fleet offer"
            f" {growth['fleet_offer']:.1f}x, flush {growth['fleet_flush']:.1f}x.",
            "What still grows with the map: the state checksum (CRC-32C of the whole map, docs/format.md"
            " §6) and one copy of each field a delta writes. The fleet's flush finds the changed tiles' rows"
            " from a per-tile record of ids (it hashed every global row's tile before 2026-12-07), and so does"
            " the offer for a vehicle's delta: the rows the delta touched, its tiles' counts from the"
            " vehicle's record (it hashed every row of the vehicle's map before session 36).",
            *(
                [
                    "",
                    f"Churn: median CPU ms of {CHURN_DELTAS} deltas each removing {CHURN:.0%} of the map and"
                    f" adding {CHURN:.0%} (the fleet: of one vehicle's map, size/{VEHICLES}). apply_delta builds"
                    " the new map in one pass (it copied the kept rows, then all rows again to merge the added"
                    " ones, before session 36).",
                    "",
                    "| map Gaussians | receiver ms | fleet server: offer ms |",
                    "|---:|---|---|",
                    *churn_rows,
                ]
                if churn_rows
                else []
            ),
        ]
    )
    data = {
        "machine": info,
        "sizes": sizes,
        "ms": ours,
        "baseline_ms": base,
        "baseline_src": str(args.baseline_src),
    }
    log(f"wrote {write_results('delta_cost', data, md)}")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
