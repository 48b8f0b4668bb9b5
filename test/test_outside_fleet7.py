"""Outside review of issue 19 (fleet over Zenoh), seventh pass: the fleet on a real Zenoh network that
misbehaves — a receiver process frozen (SIGSTOP: a laptop suspended, a process stuck in swap, a
vehicle whose stack hangs) while the server keeps publishing megabyte deltas; and the whole fleet
in real processes with the boot order reversed (receiver, then server, then router), one vehicle in
Zenoh client mode and one in peer mode, a map delta of megabytes (Zenoh fragments it far above its
64 KiB batch), the router killed with SIGKILL and restarted on its port, and the receiver frozen for
longer than Zenoh's 10 s lease.

Each test compares with something outside the project's own bookkeeping: eclipse-zenoh itself run
with its own default fragment wait (50 ms) on the same network, the operating system's process
states and exit statuses, and the merge rule of docs/fleet.md written out here per Gaussian with
Python integers over maps built here (the receiver's own state checksum must be that map's).
Bugs are strict xfails whose reason names them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zenoh")

from gs_map_share.quantize import QMap, QuantParams, to_qmap  # noqa: E402

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
PARAMS = QuantParams.from_quality(3)  # map_server_node.quality's default
TB = PARAMS.tile_bits


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    return dict(
        os.environ,
        OMP_NUM_THREADS="1",
        OMP_WAIT_POLICY="PASSIVE",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=f"{SRC}{os.pathsep}{HERE}",
        **extra,
    )


# ------------------------------------------------------------------------------------------------
# a frozen receiver next to a healthy one

# A map_receiver_node's subscription to the server's deltas, in a process of its own (so that it
# can be frozen with SIGSTOP), on the project's Zenoh runtime (session settings: the suite's own, or
# the file in $ZENOH_SESSION_CONFIG_URI, as `gs-mapping run` reads it).
_FROZEN_RECEIVER = """
import sys
from gs_mapping.nodes.context import QoS
from gs_mapping.runtime.zenoh_runtime import ZenohContext
ctx = ZenohContext("map_receiver_node", "frozen", int(sys.argv[2]), connect=[sys.argv[1]])
ctx.create_subscription("/map_server_node/map_delta", "std_msgs/msg/UInt8MultiArray",
                        QoS(reliable=True, depth=100), lambda m: None)
print("ready", flush=True)
while True:
    ctx.spin_once(0.1)
"""


def _zenoh_file(path: Path, mode: str, fragment_wait_us: int | None) -> str:
    """A Zenoh config file (rmw_zenoh's settings that matter here); with ``fragment_wait_us`` it
    names max_wait_before_drop_fragments (50001 µs stands for Zenoh's own 50 ms: a file naming
    exactly Zenoh's default gets the suite's 5 s, zenoh_runtime.session_config)."""
    wait = (
        ", transport: { link: { tx: { queue: { congestion_control: { drop: {"
        f" max_wait_before_drop_fragments: {fragment_wait_us} }} }} }} }} }} }}"
        if fragment_wait_us
        else ""
    )
    path.write_text(
        f'{{ mode: "{mode}", scouting: {{ multicast: {{ enabled: false }} }}, timestamping: {{ enabled: true }}{wait} }}'
    )
    return str(path)


def _frozen_receiver_run(tmp_path, mode: str, zenoh_default: bool) -> tuple[float, dict[int, float | None]]:
    """The server's ~/map_delta publisher (the project's ZenohContext, reliable, keep-last 100 as
    map_server_node.delta_depth) sends 3 MB deltas every 0.15 s to two receivers: one healthy in this
    process, one in a process frozen with SIGSTOP after the first deltas; all sessions in Zenoh
    ``mode`` (peer: the suite's default, sessions link to each other directly; client: every
    sample goes through the router, `gs-mapping router`'s settings). Returns (the longest publish
    call in s, {delta: its latency at the healthy receiver in s, None if it never came}). With
    ``zenoh_default`` the one that forwards to the frozen receiver (peer: the server's session;
    client: the router) keeps Zenoh's own 50 ms fragment wait instead of the suite's 5 s."""
    from gs_mapping.messages import bytes_to_uint8_multiarray, uint8_multiarray_to_bytes
    from gs_mapping.nodes.context import QoS
    from gs_mapping.runtime.zenoh_runtime import ZenohContext, run_router

    domain = {("peer", True): 90, ("peer", False): 91, ("client", True): 94, ("client", False): 95}[
        mode, zenoh_default
    ]
    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    ref = 50001 if zenoh_default else None
    tag = f"{mode}_{int(zenoh_default)}"
    router_cfg = _zenoh_file(tmp_path / f"router_{tag}.json5", "router", ref) if mode == "client" else None
    session_cfg = _zenoh_file(tmp_path / f"session_{tag}.json5", mode, ref if mode == "peer" else None)
    router = run_router(listen=[endpoint], config_file=router_cfg)
    qos = QoS(reliable=True, depth=100)
    server = ZenohContext("map_server_node", "", domain, connect=[endpoint], config_file=session_cfg)
    healthy = ZenohContext("map_receiver_node", "rx1", domain, connect=[endpoint], config_file=session_cfg)
    frozen_cfg = _zenoh_file(tmp_path / f"frozen_{tag}.json5", mode, None)  # (the suite's own 5 s)
    frozen = subprocess.Popen(
        [sys.executable, "-c", _FROZEN_RECEIVER, endpoint, str(domain)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=_env(ZENOH_SESSION_CONFIG_URI=frozen_cfg),
    )  # fmt: skip
    got: dict[int, float] = {}

    def on_delta(m):
        got[int.from_bytes(uint8_multiarray_to_bytes(m)[:4], "little")] = time.monotonic()

    healthy.create_subscription("/map_server_node/map_delta", "std_msgs/msg/UInt8MultiArray", qos, on_delta)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            healthy.spin_once(0.02)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    sent: dict[int, float] = {}
    longest = 0.0
    try:
        assert frozen.stdout.readline().strip() == "ready"
        pub = server.create_publisher("~/map_delta", "std_msgs/msg/UInt8MultiArray", qos)
        server.spin(until=lambda: pub.subscription_count() >= 2, timeout_s=15)
        assert pub.subscription_count() >= 2
        body = os.urandom(3 << 20)
        after_block = None
        for k in range(70):
            if k == 3:
                frozen.send_signal(signal.SIGSTOP)
            t = time.monotonic()
            sent[k] = t
            pub.publish(bytes_to_uint8_multiarray(k.to_bytes(4, "little") + body, server.factory))
            took = time.monotonic() - t
            longest = max(longest, took)
            if took > 2.0 and after_block is None:
                after_block = k + 6  # the stall is there: a few more deltas, then stop
            if after_block is not None and k >= after_block:
                break
            server.spin_once(max(0.0, 0.15 - (time.monotonic() - t)))
        end = time.monotonic() + 10
        while len(got) < len(sent) and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        stop.set()
        spinner.join(5)
        frozen.kill()  # (SIGKILL ends a stopped process too)
        frozen.wait()
        healthy.close()
        server.close()
        router.close()
    return longest, {k: (got[k] - sent[k]) if k in got else None for k in sent}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["peer", "client"])
def test_a_frozen_receiver_neither_blocks_the_server_nor_costs_a_healthy_receiver_its_deltas(tmp_path, mode):
    """zenoh_runtime.session_config raises Zenoh's max_wait_before_drop_fragments from 50 ms to 5 s
    on every session and on `gs-mapping router` (for a vehicle's slow uplink, test_outside_fleet3).
    Whoever forwards the server's deltas to a receiver that stopped reading (SIGSTOP here: a
    suspended laptop, a hung process) then waits up to 5 s per fragmented delta once that link's
    buffers are full: in peer mode the server's own session, inside ``publish``; in client mode the
    router, which stops forwarding everything the server sends, so the server's link fills and its
    ``publish`` waits too. The server's one thread (ingest, acks, region answers) stands still.
    Measured here: a 3-5 s publish in every run, and in some runs the healthy receiver's deltas
    4-7 s late and some never delivered (reliable topic, nothing counted). The same network with
    Zenoh's own 50 ms at that hop does neither stall (checked first: eclipse-zenoh's reference
    behaviour; in client mode it too loses a delta now and then under DROP congestion control, so
    losses are reported, not asserted). A frozen receiver must not stall the others: no publish
    call over 1 s, no delta at the healthy receiver 3 s late."""
    ref_longest, ref_lat = _frozen_receiver_run(tmp_path, mode, zenoh_default=True)
    ref_late = {k: round(v, 2) for k, v in ref_lat.items() if v is not None and v >= 3.0}
    if ref_longest >= 1.0 or ref_late:  # (losses alone are Zenoh's DROP under congestion: not asserted)
        pytest.skip(
            f"the reference (Zenoh's 50 ms) stalled too on this machine now: {ref_longest:.1f} s, {ref_late}"
        )
    longest, lat = _frozen_receiver_run(tmp_path, mode, zenoh_default=False)
    lost = [k for k, v in lat.items() if v is None]
    late = {k: round(v, 2) for k, v in lat.items() if v is not None and v >= 3.0}
    assert longest < 1.0 and not late, f"publish blocked {longest:.1f} s; late {late}; (never came: {lost})"


# ------------------------------------------------------------------------------------------------
# the whole fleet, real processes, on a network that misbehaves


def _vmap(n: int, seed: int, origin) -> QMap:
    """A vehicle map of n Gaussians (local ids 1..n) on the fleet's quantisation, SH degree 0."""
    from synthetic_maps import synthetic_map

    q = to_qmap(synthetic_map(n, 0, seed=seed, origin=origin), PARAMS)
    q.ids = np.arange(1, n + 1, dtype=np.uint64)
    return q


def _stream(map_id: int, full: QMap, sizes: list[int], first_seq: int = 100):
    """A mapper's containers (docs/format.md): a snapshot of the first sizes[0] Gaussians, then
    deltas growing the map to each next size; and the vehicle's final map."""
    from gs_map_share.delta import encode_delta
    from gs_map_share.snapshot import encode_snapshot

    states = [full.take(np.arange(s)) for s in sizes]
    out = [encode_snapshot(states[0], PARAMS, map_id=map_id, seq=first_seq, n_levels=1, frame_id="map")[0]]
    for k in range(1, len(states)):
        s = first_seq + k
        out.append(encode_delta(states[k - 1], states[k], PARAMS, map_id=map_id, seq=s, base_seq=s - 1)[0])
    return out, states[-1]


def _rule(maps: dict[int, QMap]) -> QMap:
    """docs/fleet.md, Merge rule, per Gaussian with Python integers: tile = P >> tile_bits; the
    vehicle with the most Gaussians in a tile owns it (ties: the smaller map id); the global map
    holds exactly the owners' Gaussians, id map_id << 32 | local id."""
    counts: dict[tuple, dict[int, int]] = {}
    for mid, q in maps.items():
        for p in q.pos.tolist():
            per = counts.setdefault(tuple(v >> TB for v in p), {})
            per[mid] = per.get(mid, 0) + 1
    owner = {t: min(m for m, c in per.items() if c == max(per.values())) for t, per in counts.items()}
    parts = [QMap.empty(0)]
    for mid, q in maps.items():
        keep = [i for i, p in enumerate(q.pos.tolist()) if owner[tuple(v >> TB for v in p)] == mid]
        part = q.take(np.array(keep, np.int64)).copy()
        part.ids = (np.uint64(mid) << np.uint64(32)) | part.ids
        parts.append(part)
    return QMap.concat(parts)


def _wait_for(path: Path, text: str, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in path.read_text():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_a_megabyte_delta_reaches_a_receiver_through_reversed_boot_a_router_kill_and_a_freeze(tmp_path):
    """docs/fleet.md: the global map goes out as an ordinary delta/snapshot stream that today's
    map_receiver_node follows, and every receiver ends bit-identical to the server's global map.
    Here, all through `gs-mapping run`/`router` in their own processes: the receiver starts first,
    then the server, then the router (a depot's boot order); vehicle 1 (Zenoh peer, as the suite
    makes sessions) sends a delta of ~1.4 MB (150,000 Gaussians: Zenoh fragments it into ~22 of
    its 64 KiB batches), vehicle 2 is a Zenoh *client* (the mode a vehicle on a cellular link
    uses); the router is killed with SIGKILL while they map and restarted on its port 3 s later;
    the receiver is frozen with SIGSTOP for 12 s (beyond Zenoh's 10 s lease: the router drops its
    session) and resumed. End: the receiver's own state checksum and size are those of the merge
    rule computed here over the vehicles' maps; the server, router and receiver end with status 0
    on SIGINT, with no traceback."""
    from gs_map_share.container import unpack_header

    n_big = 150_000
    m1_full = _vmap(n_big + 40, seed=1, origin=(0.0, 0.0, 0.0))
    c1, m1 = _stream(1, m1_full, [20, n_big, n_big + 8, n_big + 16, n_big + 24, n_big + 40])
    c2, m2 = _stream(2, _vmap(100, seed=2, origin=(30.0, 0.0, 0.0)), [20, 28, 36, 44, 52, 60, 68])
    assert len(c1[1]) > 20 * 65536  # far above Zenoh's batch: fragmented
    expected = _rule({1: m1, 2: m2})
    for k, c in ((1, c1), (2, c2)):
        (tmp_path / f"v{k}.hex").write_text("\n".join(x.hex() for x in c))
        assert unpack_header(c[0])[0].map_id == k
    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(
        "/**:\n  ros__parameters:\n"
        f"    map_server_node:\n      store_path: {tmp_path / 'fleet.sqlite3'}\n      snapshot_period_s: 3.0\n"
        "      vehicles: [vehicle1, vehicle2]\n"
        "    map_receiver_node:\n      delta_topic: /map_server_node/map_delta\n"
        "      snapshot_topic: /map_server_node/map_snapshot\n"
    )
    client = tmp_path / "client.json5"
    client.write_text(
        '{ mode: "client", scouting: { multicast: { enabled: false } }, timestamping: { enabled: true } }'
    )
    common = ["--transport", "zenoh", "--connect", endpoint, "--domain-id", "92", "--config", str(cfg)]
    procs: dict[str, subprocess.Popen] = {}

    def start(name, args, **env):
        out = open(tmp_path / f"{name}.out", "w")
        err = open(tmp_path / f"{name}.err", "w")
        procs[name] = subprocess.Popen(args, stdout=out, stderr=err, env=_env(**env))

    def cli(name, *args):
        start(name, [sys.executable, "-m", "gs_mapping", *args])

    def vehicle(name, k, **env):  # the suite's recorded-stream vehicle (test/fleet_vehicle.py)
        start(name, [sys.executable, str(HERE / "fleet_vehicle.py"), endpoint, "92", f"vehicle{k}",
                     str(tmp_path / f"v{k}.hex"), "0.5", "1.5"], **env)  # fmt: skip

    def out(name) -> Path:
        return tmp_path / f"{name}.out"

    try:
        cli("receiver", "run", "map_receiver_node", "--namespace", "rx1", *common)
        cli("server", "run", "map_server_node", *common)
        assert _wait_for(out("server"), "ready", 60) and _wait_for(out("receiver"), "ready", 60)
        cli("router", "router", "--listen", endpoint)
        assert _wait_for(out("router"), "ready", 30)
        vehicle("v1", 1)
        vehicle("v2", 2, ZENOH_SESSION_CONFIG_URI=str(client))
        assert _wait_for(out("v1"), "sent 102", 60), "the megabyte delta was never sent"
        procs["router"].send_signal(signal.SIGKILL)
        procs["router"].wait()
        time.sleep(3.0)
        cli("router2", "router", "--listen", endpoint)
        assert _wait_for(out("router2"), "ready", 30)
        assert _wait_for(out("v1"), "done", 60) and _wait_for(out("v2"), "done", 60)
        time.sleep(3.0)  # vehicle snapshots (1.5 s) bring back what the router's death lost
        procs["receiver"].send_signal(signal.SIGSTOP)
        time.sleep(12.0)
        procs["receiver"].send_signal(signal.SIGCONT)
        time.sleep(
            15.0
        )  # the server's snapshot period is 3 s (the session's re-join is slower on a loaded machine)
    finally:
        for name in ("v1", "v2"):  # stand-ins for mapper_node, not under review here
            if name in procs:
                procs[name].kill()
        status = {}
        for name in ("receiver", "server", "router2", "router"):
            p = procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGINT)
            try:
                status[name] = p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                status[name] = "hang"
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    assert status == {"receiver": 0, "server": 0, "router2": 0}, status
    for name in status:
        assert "Traceback" not in (tmp_path / f"{name}.err").read_text(), name
    summary = [ln for ln in out("receiver").read_text().splitlines() if ln.startswith("summary: ")]
    assert summary, "the receiver printed no summary"
    rx = json.loads(summary[-1][len("summary: ") :])
    assert (rx["gaussians"], rx["state_crc"]) == (len(expected), expected.checksum()), rx
