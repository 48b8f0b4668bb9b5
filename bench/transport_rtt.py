"""Round trip of a std_msgs/UInt8MultiArray between two processes: Cyclone DDS vs Zenoh.

An echo process (the runtime under test) republishes every ``/bench/ping`` on ``/bench/pong``; this
process sends one message, waits for its echo, and repeats. Zenoh goes through a `gs-mapping router`
process (rmw_zenoh's topology: sessions connect to a router, then talk peer to peer). Loopback only.

    .venv/bin/python bench/transport_rtt.py [--count 40]

writes bench/results/transport_rtt.json and transport_rtt.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, write_results  # noqa: E402

ECHO = textwrap.dedent("""
    import sys
    from gs_mapping.cli.run_node import make_context
    from gs_mapping.nodes.context import QoS
    import argparse
    a = argparse.Namespace(transport=sys.argv[1], domain_id=61, network=False, ros_distro="jazzy",
                           connect=[sys.argv[2]] if sys.argv[2] != "-" else None, listen=None, zenoh_config=None)
    ctx = make_context(a, "bench_echo")
    qos = QoS(reliable=True, depth=10)
    pub = ctx.create_publisher("/bench/pong", "std_msgs/msg/UInt8MultiArray", qos)
    ctx.create_subscription("/bench/ping", "std_msgs/msg/UInt8MultiArray", qos, pub.publish)
    print("ready", flush=True)
    while True:
        ctx.spin_once(0.05)
""")

SIZES = [1 << 10, 100 << 10, 1 << 20, 4 << 20]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(transport: str, count: int) -> dict[str, dict[str, float]]:
    import argparse as ap

    from gs_mapping.cli.run_node import make_context
    from gs_mapping.nodes.context import QoS

    procs, endpoint = [], "-"
    if transport == "zenoh":
        endpoint = f"tcp/127.0.0.1:{_free_port()}"
        router = subprocess.Popen(
            [sys.executable, "-m", "gs_mapping", "router", "--listen", endpoint],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(router)
        router.stdout.readline()
    echo = subprocess.Popen(
        [sys.executable, "-c", ECHO, transport, endpoint], stdout=subprocess.PIPE, text=True
    )
    procs.append(echo)
    try:
        assert echo.stdout.readline().strip() == "ready"
        args = ap.Namespace(
            transport=transport,
            domain_id=61,
            network=False,
            ros_distro="jazzy",
            connect=[endpoint] if transport == "zenoh" else None,
            listen=None,
            zenoh_config=None,
        )
        ctx = make_context(args, "bench_client")
        qos = QoS(reliable=True, depth=10)
        got: list[bytes] = []
        pub = ctx.create_publisher("/bench/ping", "std_msgs/msg/UInt8MultiArray", qos)
        ctx.create_subscription(
            "/bench/pong", "std_msgs/msg/UInt8MultiArray", qos, lambda m: got.append(m.data)
        )
        ctx.spin(until=lambda: pub.subscription_count() > 0, timeout_s=30)
        time.sleep(1.0)
        out = {}
        for size in SIZES:
            payload = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
            rtts = []
            for i in range(count + 3):  # 3 warm-up rounds
                got.clear()
                payload[:4] = np.frombuffer(np.uint32(i).tobytes(), np.uint8)
                t0 = time.perf_counter()
                pub.publish(ctx.factory.make("std_msgs/msg/UInt8MultiArray", data=payload))
                ctx.spin(until=lambda: got, timeout_s=10)
                if not got:
                    raise RuntimeError(f"{transport}: no echo for {size} bytes")
                if i >= 3:
                    rtts.append(time.perf_counter() - t0)
                assert bytes(got[0]) == payload.tobytes()
            ms = np.array(rtts) * 1e3
            out[str(size)] = {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}
        ctx.close()
        return out
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=40)
    args = ap.parse_args()
    results = {t: measure(t, args.count) for t in ("dds", "zenoh")}
    data = {"machine": machine_info(), "count": args.count, "rtt": results}
    lines = [
        "# Round trip between two processes on loopback: Cyclone DDS vs Zenoh (via a router)",
        "",
        f"`bench/transport_rtt.py`, {args.count} round trips per size, std_msgs/UInt8MultiArray, reliable,"
        " the echo in its own process (Python runtimes on both sides). Machine: "
        f"{data['machine']['cpus']} CPUs, load {data['machine']['load_avg_1m']:.1f}.",
        "",
        "| payload | DDS p50 ms | DDS p95 ms | Zenoh p50 ms | Zenoh p95 ms |",
        "|---|---|---|---|---|",
    ]
    for size in SIZES:
        d, z = results["dds"][str(size)], results["zenoh"][str(size)]
        label = f"{size >> 10} KiB" if size < (1 << 20) else f"{size >> 20} MiB"
        lines.append(
            f"| {label} | {d['p50_ms']:.2f} | {d['p95_ms']:.2f} | {z['p50_ms']:.2f} | {z['p95_ms']:.2f} |"
        )
    path = write_results("transport_rtt", data, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
