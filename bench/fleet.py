"""Fleet map sharing at scale: N simulated vehicles → Zenoh router(s) → one map server → a receiver.

    OMP_NUM_THREADS=1 PYTHONPATH=src:test .venv/bin/python bench/fleet.py [--vehicles 32] [--frames 8]

1. Record N vehicles' streams: real (tiny) mapper runs through one procedural world, starts 1.2 s
   apart along the route (test/fleet_drives.py), a delta per keyframe every 0.5 s of drive.
2. Server alone (no transport): every container through map_server_node on the replay bus with its
   SQLite store: ingest updates/s and MB/s on one core, the cost per update as the map grows — where
   one server saturates.
3. Over Zenoh, real processes: a router, the map server (`gs-mapping run map_server_node --transport
   zenoh`), one process holding the N vehicles' sessions publishing their recorded streams at the
   recorded rate, and this process as a receiver (MapStore on the global stream) and region querier:
   publish→apply latency (vehicle publish to the receiver's apply of the global delta that holds it,
   matched through the server's acks), server RSS as the map grows, region-query latency and size.
   Then the same with two routers in a chain (vehicles on router A, server and receiver on router B).
4. Wire bytes: vehicle deltas and global deltas vs re-sending each full map at every update.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "test"), str(ROOT / "bench")]

DOMAIN = 47
DRIVE_STEP_S = 0.5  # recorded drives: one frame (and keyframe delta) per 0.5 s of driving


# ---- the vehicles' process ------------------------------------------------------------------------
def run_vehicles(endpoint: str, streams_file: str, log_file: str, rate: float) -> None:
    """N Zenoh sessions (one per vehicle, as on N vehicles), each publishing its stream as
    mapper_node does; logs (map_id, seq, publish wall time) per container."""
    from gs_map_share.container import unpack_header
    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.context import LATCHED_QOS, QoS
    from gs_mapping.runtime.zenoh_runtime import ZenohContext

    streams = json.loads(Path(streams_file).read_text())
    vehicles = []
    for k, hexes in enumerate(streams):
        ctx = ZenohContext("mapper_node", f"vehicle{k + 1}", DOMAIN, connect=[endpoint])
        d = ctx.create_publisher("~/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(reliable=True, depth=100))
        s = ctx.create_publisher("~/map_snapshot", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS)
        vehicles.append((ctx, d, s, [bytes.fromhex(h) for h in hexes]))
    for ctx, _d, s, cs in vehicles:
        s.publish(bytes_to_uint8_multiarray(cs[0], ctx.factory))
    for ctx, d, _s, _cs in vehicles:
        ctx.spin(until=lambda d=d: d.subscription_count() > 0, timeout_s=60)
    print("ready", flush=True)
    log = open(log_file, "w")
    n = max(len(cs) for *_, cs in vehicles)
    t0 = time.monotonic()
    for i in range(1, n):
        # vehicle k publishes its i-th delta at i·step/rate, offset by k/N of a step (not in lockstep)
        for k, (ctx, d, _s, cs) in enumerate(vehicles):
            due = t0 + (i + k / len(vehicles)) * DRIVE_STEP_S / rate
            while time.monotonic() < due:
                time.sleep(min(0.005, max(0.0, due - time.monotonic())))
            if i < len(cs):
                h = unpack_header(cs[i])[0]
                d.publish(bytes_to_uint8_multiarray(cs[i], ctx.factory))
                log.write(f"{h.map_id} {h.seq} {time.time()} {len(cs[i])}\n")
                log.flush()
    print("done", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(0.5)


# ---- helpers ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return dict(
        os.environ,
        OMP_NUM_THREADS="1",
        OMP_WAIT_POLICY="PASSIVE",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "test"), str(ROOT / "bench")]),
    )


def _spawn(args: list[str], log) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=_env())


def _wait_line(p: subprocess.Popen, text: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.stdout.readline()
        if text in line:
            return
        if not line and p.poll() is not None:
            break
    raise RuntimeError(f"process {p.args[:4]} did not print {text!r}")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, float), q)) if len(values) else float("nan")


# ---- 1. recordings ------------------------------------------------------------------------------
def record(n: int, frames: int) -> list:
    from fleet_drives import fleet_world, record_drive

    world = fleet_world(seed=3, length=1.2 * 8.0 * n + frames * DRIVE_STEP_S * 8.0 + 120.0)
    return [
        record_drive(world, k + 1, 1.2 * k, frames, step_s=DRIVE_STEP_S, first_seq=1000 * (k + 1))
        for k in range(n)
    ]


# ---- 2. the server alone ------------------------------------------------------------------------
def server_alone(recs, tmp: Path, global_period_s: float) -> dict:
    """Every container through the server on the replay bus, at the recorded times (so the global
    flush batches as it would live), as fast as one core runs it."""
    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    cfg = MapServerNodeConfig(
        store_path=str(tmp / f"alone_{global_period_s}.sqlite3"),
        vehicles=[f"vehicle{r.map_id}" for r in recs],
        global_period_s=global_period_s,
    )
    node = MapServerNode(bus.context("map_server_node"), {"map_server_node": cfg})
    order = []  # (recorded time, map id, container), as the vehicles publish them
    for i in range(max(len(r.containers) for r in recs)):
        for k, r in enumerate(recs):
            if i < len(r.containers):
                order.append((int((i + k / len(recs)) * DRIVE_STEP_S * 1e9) + 1, r.map_id, r.containers[i]))
    seq0 = node.merge.global_seq
    per, growth, nbytes = [], [], 0
    rss0 = _rss_mb(os.getpid())
    t_all = time.perf_counter()
    for k, (t_ns, mid, c) in enumerate(order):
        topic = f"/vehicle{mid}/mapper_node/" + ("map_snapshot" if c[24:32] == bytes(8) else "map_delta")
        t0 = time.perf_counter()
        bus.inject(topic, bytes_to_uint8_multiarray(c), t_ns)
        per.append(time.perf_counter() - t0)
        nbytes += len(c)
        if k % max(1, len(order) // 8) == 0 or k == len(order) - 1:
            growth.append(
                {
                    "containers": k + 1,
                    "global_gaussians": len(node.merge.global_map),
                    "rss_mb_growth": _rss_mb(os.getpid()) - rss0,
                }
            )
    bus.advance(order[-1][0] + 10**9)
    wall = time.perf_counter() - t_all
    half = len(per) // 2
    t0 = time.perf_counter()
    node.close()
    node2 = MapServerNode(ReplayBus().context("map_server_node"), {"map_server_node": cfg})
    restart_s = time.perf_counter() - t0
    assert node2.merge.global_map.equals(node.merge.global_map)
    node2.close()
    return {
        "global_period_s": global_period_s,
        "containers": len(order),
        "global_deltas": node.merge.global_seq - seq0,
        "bytes": nbytes,
        "wall_s": wall,
        "updates_per_s": len(order) / wall,
        "mb_per_s": nbytes / wall / 1e6,
        "ms_per_update_p50": _pct(per, 50) * 1e3,
        "ms_per_update_p95": _pct(per, 95) * 1e3,
        "ms_per_update_first_half_mean": float(np.mean(per[:half])) * 1e3,
        "ms_per_update_second_half_mean": float(np.mean(per[half:])) * 1e3,
        "global_gaussians": len(node.merge.global_map),
        "vehicle_gaussians": sum(len(v.state) for v in node.merge.vehicles.values()),
        "tiles": len(node.merge.owner),
        "store_bytes": os.path.getsize(cfg.store_path),
        "restart_s": restart_s,
        "memory": growth,
    }


# ---- 3. over Zenoh ------------------------------------------------------------------------------
def over_zenoh(recs, tmp: Path, chain: bool, rate: float) -> dict:
    from gs_map_share.receiver import MapStore
    from gs_map_share.region import RegionAnswer, RegionRequest
    from gs_mapping.messages import uint8_multiarray_to_bytes
    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.zenoh_runtime import ZenohContext

    tag = f"{'chain' if chain else 'one'}_{rate:g}"
    log = open(tmp / f"stderr_{tag}.log", "w")
    procs = []
    a = f"tcp/127.0.0.1:{_free_port()}"
    b = f"tcp/127.0.0.1:{_free_port()}" if chain else a
    py = [sys.executable, "-m", "gs_mapping"]
    store = tmp / f"zenoh_{tag}.sqlite3"
    cfg = tmp / f"fleet_{tag}.yaml"
    names = ", ".join(f"vehicle{r.map_id}" for r in recs)
    cfg.write_text(
        "/**:\n  ros__parameters:\n    map_server_node:\n"
        f"      store_path: {store}\n      vehicles: [{names}]\n      snapshot_period_s: 30.0\n"
    )
    streams = tmp / "streams.json"
    streams.write_text(json.dumps([[c.hex() for c in r.containers] for r in recs]))
    pub_log = tmp / f"published_{tag}.txt"
    ctx = None
    try:
        procs.append(_spawn(py + ["router", "--listen", a], log))
        _wait_line(procs[-1], "ready")
        if chain:
            procs.append(_spawn(py + ["router", "--listen", b, "--connect", a], log))
            _wait_line(procs[-1], "ready")
        zargs = ["--transport", "zenoh", "--connect", b, "--domain-id", str(DOMAIN), "--config", str(cfg)]
        server = _spawn(py + ["run", "map_server_node", *zargs], log)
        procs.append(server)
        _wait_line(server, "ready")
        ctx = ZenohContext("fleet_bench", "", DOMAIN, connect=[b])
        store_rx = MapStore()
        applied_at: dict[int, float] = {}
        acks: dict[tuple, int] = {}
        wire_global = [0]

        def on_global(msg):
            data = uint8_multiarray_to_bytes(msg)
            wire_global[0] += len(data)
            if store_rx.receive(data) in ("applied", "snapshot"):
                applied_at.setdefault(store_rx.seq, time.time())

        def on_ack(msg):
            x = json.loads(msg.data)
            acks[(x["map_id"], x["seq"])] = x["global_seq"]

        ctx.create_subscription(
            "/map_server_node/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(True, False, 1000), on_global
        )
        ctx.create_subscription(
            "/map_server_node/map_snapshot", "std_msgs/msg/UInt8MultiArray", QoS(True, True, 1), on_global
        )
        ctx.create_subscription("/map_server_node/ack", "std_msgs/msg/String", QoS(True, False, 1000), on_ack)
        ctx.spin(until=lambda: store_rx.ready, timeout_s=30)
        vehicles = _spawn(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--vehicles-process",
                a,
                str(streams),
                str(pub_log),
                str(rate),
            ],
            log,
        )
        procs.append(vehicles)
        _wait_line(vehicles, "ready", timeout=180)
        t_start = time.time()
        rss, region = [], []
        poses = [T[:3, 3] for r in recs[::4] for T in r.poses]  # along the vehicles' routes
        qi = 0
        next_sample = time.monotonic()
        done = False
        total = sum(len(r.containers) for r in recs)  # every container is acknowledged once
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            ctx.spin_once(0.05)
            if time.monotonic() >= next_sample:
                next_sample += 1.0
                rss.append(
                    {
                        "t_s": time.time() - t_start,
                        "rss_mb": _rss_mb(server.pid),
                        "global_gaussians": len(store_rx.state),
                    }
                )
                p = poses[qi % len(poses)]
                qi += 1
                k = 1 if qi % 2 else 3  # alternately coarse (levels 0-1) and full detail
                req = RegionRequest(
                    float(p[0]), float(p[1]), 0.0, radius_m=30.0, max_level=k, max_bytes=256 << 10
                )
                t0 = time.perf_counter()
                rep = ctx.get("gs_mapping/fleet/region", req.to_bytes(), timeout_s=10)
                dt = time.perf_counter() - t0
                if rep and rep[0].ok:
                    ans = RegionAnswer.from_bytes(rep[0].payload)
                    region.append(
                        {
                            "ms": dt * 1e3,
                            "max_level": k,
                            "bytes": len(rep[0].payload),
                            "gaussians": ans.gaussians,
                            "tiles": len(ans.tiles or []),
                        }
                    )
            if not done and vehicles.stdout is not None:
                done = len(acks) >= total
            if done and store_rx.seq >= max(acks.values(), default=0):
                break
        t_end = time.time()
        pubs = [ln.split() for ln in pub_log.read_text().splitlines()]
        lat = []
        for mid, seq, t_pub, _n in pubs:
            g = acks.get((int(mid), int(seq)))
            # the ack names the global sequence holding the container; a container that changed no
            # tile of the global map (owned by another vehicle) has no delta of its own: skipped
            if g is not None and g in applied_at and applied_at[g] >= float(t_pub):
                lat.append(applied_at[g] - float(t_pub))
        t_first = min(float(p[2]) for p in pubs)
        ingest_s = max(1e-9, max(applied_at.values()) - t_first)
        vehicle_bytes = sum(int(p[3]) for p in pubs)
        return {
            "routers": 2 if chain else 1,
            "published": len(pubs),
            "acknowledged": len(acks),
            "offered_updates_per_s": len(pubs) / max(1e-9, max(float(p[2]) for p in pubs) - t_first),
            "ingest_updates_per_s": len(acks) / ingest_s,
            "ingest_mb_per_s": vehicle_bytes / ingest_s / 1e6,
            "latency_ms_p50": _pct(lat, 50) * 1e3,
            "latency_ms_p95": _pct(lat, 95) * 1e3,
            "latency_samples": len(lat),
            "receiver_seq_equals_server": store_rx.seq == max(acks.values(), default=-1),
            "receiver_gaussians": len(store_rx.state),
            "global_wire_bytes": wire_global[0],
            "vehicle_wire_bytes": vehicle_bytes,
            "server_rss": rss,
            "region_queries": region,
            "region_ms_p50": _pct([r["ms"] for r in region], 50),
            "region_ms_p95": _pct([r["ms"] for r in region], 95),
            "region_bytes_median": _pct([r["bytes"] for r in region if r["max_level"] == 3], 50),
            "region_bytes_median_levels_0_1": _pct([r["bytes"] for r in region if r["max_level"] == 1], 50),
            "run_s": t_end - t_start,
        }
    finally:
        if ctx is not None:
            ctx.close()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


# ---- 4. wire bytes vs full maps ---------------------------------------------------------------------
def full_map_bytes(recs) -> dict:
    """What re-sending each vehicle's whole map at each of its updates would cost, vs its deltas."""
    from gs_map_share.receiver import MapStore
    from gs_map_share.snapshot import encode_snapshot

    deltas = full = 0
    for r in recs:
        s = MapStore()
        for c in r.containers:
            s.receive(c)
            if c[24:32] != bytes(8):
                deltas += len(c)
                full += len(encode_snapshot(s.state, s.params, map_id=r.map_id, seq=s.seq)[0])
    return {"vehicle_delta_bytes": deltas, "vehicle_full_map_bytes": full, "ratio": full / max(deltas, 1)}


def markdown(res: dict) -> str:
    a, one, ch, w = res["server_alone"], res["zenoh_one_router"], res["zenoh_two_routers"], res["wire"]
    mem = a["memory"]
    lines = [
        "# fleet benchmark",
        "",
        f"{res['machine']['platform']}, {res['machine']['cpus']} CPUs (shared), load {res['machine']['load_avg_1m']:.1f}. "
        f"Size: {res['config']['vehicles']} vehicles × {res['config']['frames']} frames (tiny mapper runs, "
        f"{res['config']['camera']} camera, a delta per keyframe every {DRIVE_STEP_S} s of drive, replayed "
        f"at {', '.join(f'{r:g}' for r in res['config']['rates'])}× the recorded rate), quality {res['config']['quality']}.",
        "",
        "## Server alone (one core, SQLite WAL synchronous=FULL, no transport, containers at their recorded times)",
        "",
        "| global delta per | containers | MB | updates/s | MB/s | ms/update p50 | p95 | mean first → second half | global Gaussians | tiles | store | restart |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for a in (res["server_alone"], res["server_alone_unbatched"]):
        lines.append(
            f"| {'update' if a['global_period_s'] == 0 else str(a['global_period_s']) + ' s'} | {a['containers']} | "
            f"{a['bytes'] / 1e6:.2f} | {a['updates_per_s']:.0f} | {a['mb_per_s']:.2f} | {a['ms_per_update_p50']:.1f} | "
            f"{a['ms_per_update_p95']:.1f} | {a['ms_per_update_first_half_mean']:.1f} → {a['ms_per_update_second_half_mean']:.1f} | "
            f"{a['global_gaussians']} (of {a['vehicle_gaussians']}) | {a['tiles']} | {a['store_bytes'] / 1e6:.1f} MB | {a['restart_s']:.1f} s |"
        )
    a = res["server_alone"]
    lines += [
        "",
        "Process memory growth as the map grows (RSS): "
        + ", ".join(
            f"{m['global_gaussians']} G → +{m['rss_mb_growth']:.0f} MB" for m in mem[:: max(1, len(mem) // 5)]
        ),
        "",
        "## Over Zenoh (real processes on loopback)",
        "",
        "Latency: from a vehicle's publish to this process's receiver applying the global delta that holds the "
        "update (named in the server's ack); updates that changed no tile of the global map have no delta and are not counted.",
        "",
        "| routers | speed | published | acked | offered upd/s | ingest upd/s | ingest MB/s | latency p50 ms | p95 ms | region p50 ms | p95 ms | region answer, median: all levels / levels 0-1 | server RSS start → end |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for z in (*one, ch):
        rss = z["server_rss"]
        lines.append(
            f"| {z['routers']} | {z['rate']:g}× | {z['published']} | {z['acknowledged']} | {z['offered_updates_per_s']:.0f} | "
            f"{z['ingest_updates_per_s']:.0f} | {z['ingest_mb_per_s']:.2f} | {z['latency_ms_p50']:.0f} | "
            f"{z['latency_ms_p95']:.0f} | {z['region_ms_p50']:.0f} | {z['region_ms_p95']:.0f} | "
            f"{z['region_bytes_median'] / 1e3:.1f} / {z['region_bytes_median_levels_0_1'] / 1e3:.1f} kB | {rss[0]['rss_mb']:.0f} → {rss[-1]['rss_mb']:.0f} MB |"
        )
    lines += [
        "",
        f"Wire: vehicles sent {w['vehicle_delta_bytes'] / 1e6:.2f} MB of deltas where re-sending each vehicle's "
        f"full map at every update would be {w['vehicle_full_map_bytes'] / 1e6:.2f} MB ({w['ratio']:.1f}×); "
        f"the global stream to one receiver was {one[0]['global_wire_bytes'] / 1e6:.2f} MB.",
        "",
        res["notes"],
    ]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--vehicles-process":
        run_vehicles(*sys.argv[2:5], float(sys.argv[5]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=32)
    ap.add_argument(
        "--markdown-only", action="store_true", help="rewrite fleet.md from fleet.json (new notes)"
    )
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument(
        "--rates",
        type=lambda t: [float(x) for x in t.split(",")],
        default=[1.0, 2.0, 4.0],
        help="replay speeds relative to the recorded drive, one router (the first also with two)",
    )
    args = ap.parse_args()
    from common import RESULTS, machine_info, write_results

    if args.markdown_only:
        res = json.loads((RESULTS / "fleet.json").read_text())
        res["notes"] = NOTES
        write_results("fleet", res, markdown(res))
        return
    from fleet_drives import FLEET_QUALITY

    tmp = Path(tempfile.mkdtemp(prefix="fleet_bench_"))
    t0 = time.perf_counter()
    recs = record(args.vehicles, args.frames)
    print(f"recorded {args.vehicles} drives in {time.perf_counter() - t0:.0f} s", flush=True)
    res = {
        "machine": machine_info(),
        "config": {
            "vehicles": args.vehicles,
            "frames": args.frames,
            "rates": args.rates,
            "quality": FLEET_QUALITY,
            "camera": "40x24",
        },
    }
    res["server_alone"] = server_alone(recs, tmp, 0.2)
    print("server alone:", {k: v for k, v in res["server_alone"].items() if k != "memory"}, flush=True)
    res["server_alone_unbatched"] = server_alone(recs, tmp, 0.0)
    print("unbatched:", {k: v for k, v in res["server_alone_unbatched"].items() if k != "memory"}, flush=True)
    res["wire"] = full_map_bytes(recs)
    res["zenoh_one_router"] = []
    for rate in args.rates:
        z = over_zenoh(recs, tmp, chain=False, rate=rate)
        z["rate"] = rate
        res["zenoh_one_router"].append(z)
        print(
            "one router:",
            {k: v for k, v in z.items() if k not in ("server_rss", "region_queries")},
            flush=True,
        )
    z = over_zenoh(recs, tmp, chain=True, rate=args.rates[0])
    z["rate"] = args.rates[0]
    res["zenoh_two_routers"] = z
    print(
        "two routers:", {k: v for k, v in z.items() if k not in ("server_rss", "region_queries")}, flush=True
    )
    res["notes"] = NOTES
    write_results("fleet", res, markdown(res))
    print(markdown(res))


NOTES = """\
**Where one server saturates.** One server process applies vehicle updates one after another on one
thread; every `global_period_s` (0.2 s) the updates applied since the last flush and the one global
delta they make are committed in one SQLite transaction (group commit: one fsync per batch), then
published and acknowledged. On the replay bus (bench and server sharing a core, load ≈ 6 from other
engineers' jobs) that is 97 updates/s, 6.9 ms p50 per update of these ~0.7 kB deltas (decoding and
checking the vehicle's delta is most of it); one global delta and one commit per update instead: 25
updates/s — the codec's cost per delta and an fsync are mostly fixed, so batching is what scales.
Over Zenoh the server kept up at 64 and 129 offered updates/s (p50 0.15–0.17 s, p95 0.28 s from a
vehicle's publish to a receiver's apply: mostly the 0.2 s batching window) and fell behind at 256/s
(ingest 209/s, p50 0.30 s, p95 0.53 s, growing with the backlog): on this machine one server
saturates at about 200 updates/s of small deltas, i.e. about 100 vehicles mapping at 2 keyframes/s.
The cost follows the number of updates, not the size of the map (the global map is edited tile by
tile; RSS 77–94 → 111 MB over a run is mostly the process baseline). Earlier runs of this bench on a
busier machine (load ≈ 10), before group commit (one transaction per vehicle container): 35–54
updates/s alone, 43–100/s over Zenoh with latencies of seconds at 2×–4× — the fsync per container
was the bottleneck. Next steps inside one server: decoding vehicles' deltas in worker processes,
region queries from a separate reader of the store.

**Beyond one server: shard by key expression.** Each server subscribes to a range of vehicles' key
expressions — by region cell in the namespace (`/r12_7/vehicle3/mapper_node/map_delta`, server
subscribes `*/r12_*/…`) or by vehicle group — with its own SQLite store, its own global map id and
its own `region_key`; routers route by key expression and need no change. The merge rule is per
tile, so cells whose edges are tile edges merge independently; a vehicle on a cell edge publishes to
both.

Region queries are answered on the server's one thread between ingests: p50 40–160 ms here; answers
at levels 0–1 are a fraction of all levels (1.6–2.7 vs 3.2–3.6 kB on these tiny maps, where the fixed
container overhead dominates; the 4× row's 0.1 kB median is queries made before most tiles existed).

**Two routers in a chain** (vehicles on router A, server and receiver on router B): every update
acknowledged, the receiver identical, latency p50 0.20 s vs 0.15 s with one router at 1× — within
this machine's run-to-run spread; on loopback the extra hop is small next to the batching window.
"""

if __name__ == "__main__":
    main()
