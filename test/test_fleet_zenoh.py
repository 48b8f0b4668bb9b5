"""The fleet on loopback, real processes over Zenoh: one router, one map server, four vehicles
(replays of recorded tiny mapper drives, as mapper_node publishes them), two late receivers
(today's map_receiver_node), this process querying regions along a route; the server killed with
SIGKILL and restarted mid-run, then the router too. End state: each receiver's map (its own
verified checksum, read from its /diagnostics) is the server's global map, which equals the merge
rule computed offline from the vehicles' own maps; every acknowledged container is in the store.

Not covered: lossy or reordering links (our map topics are reliable, as mapper_node's are; Zenoh
offers no loss injection on loopback), and several hosts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fleet_drives import fleet_recordings
from test_fleet_merge import _offline_merge, _own_maps

from gs_map_share.region import RegionAnswer, RegionRequest
from gs_map_share.snapshot import decode_snapshot
from gs_mapping.nodes.context import RELIABLE_QOS

pytest.importorskip("zenoh")
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
DOMAIN = 43


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    return dict(
        os.environ,
        OMP_NUM_THREADS="1",
        OMP_WAIT_POLICY="PASSIVE",
        PYTHONPATH=f"{HERE.parent / 'src'}{os.pathsep}{HERE}",
    )


def _cli(*args, log=None):
    return subprocess.Popen(
        [sys.executable, "-m", "gs_mapping", *args],
        stdout=subprocess.PIPE,
        stderr=log or subprocess.DEVNULL,
        text=True,
        env=_env(),
    )


def _wait_line(proc, text, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if text in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"process did not print {text!r}")


def test_fleet_of_processes_over_zenoh(tmp_path):
    from gs_mapping.runtime.zenoh_runtime import ZenohContext

    recs = fleet_recordings()
    expected = _offline_merge(_own_maps(recs))
    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    store = tmp_path / "fleet.sqlite3"
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(
        "/**:\n  ros__parameters:\n"
        f"    map_server_node:\n      store_path: {store}\n      snapshot_period_s: 2.0\n"
        "      diagnostics_period_s: 0.5\n"
        "    map_receiver_node:\n      delta_topic: /map_server_node/map_delta\n"
        "      snapshot_topic: /map_server_node/map_snapshot\n      diagnostics_period_s: 0.5\n"
    )
    common = ["--transport", "zenoh", "--connect", endpoint, "--domain-id", str(DOMAIN), "--config", str(cfg)]
    procs = []
    ctx = None
    log = open(tmp_path / "stderr.log", "w")
    try:
        router = _cli("router", "--listen", endpoint, log=log)
        procs.append(router)
        _wait_line(router, "ready")
        server = _cli("run", "map_server_node", *common, log=log)
        procs.append(server)
        _wait_line(server, "ready")
        ctx = ZenohContext("fleet_test", "", DOMAIN, connect=[endpoint])
        acked: dict[int, int] = {}
        diag: dict[str, dict[str, str]] = {}

        def on_ack(msg):
            a = json.loads(msg.data)
            acked[a["map_id"]] = max(acked.get(a["map_id"], 0), a["seq"])

        def on_diag(msg):
            for st in msg.status:  # by node name, and receivers also by their namespaced name
                diag[st.name] = diag[st.hardware_id] = {kv.key: kv.value for kv in st.values}

        ctx.create_subscription("/map_server_node/ack", "std_msgs/msg/String", RELIABLE_QOS, on_ack)
        ctx.create_subscription("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", RELIABLE_QOS, on_diag)
        vehicles = []
        for r in recs:
            path = tmp_path / f"vehicle{r.map_id}.hex"
            path.write_text("\n".join(c.hex() for c in r.containers))
            v = subprocess.Popen(
                [sys.executable, str(HERE / "fleet_vehicle.py"), endpoint, str(DOMAIN), f"vehicle{r.map_id}",
                 str(path), "1.0", "2.0"],
                stdout=subprocess.PIPE, stderr=log, text=True, env=_env(),
            )  # fmt: skip
            vehicles.append(v)
            procs.append(v)
        ctx.spin(until=lambda: sum(acked.values()) > 0 and len(acked) >= 2, timeout_s=40)
        assert acked, "the server acknowledged nothing"

        # kill -9 the server mid-run, restart it on the same store
        server.send_signal(signal.SIGKILL)
        server.wait()
        acked_before_kill = dict(acked)
        server = _cli("run", "map_server_node", *common, log=log)
        procs.append(server)
        _wait_line(server, "ready")

        # kill the router, bring it back on the same port: sessions reconnect
        router.send_signal(signal.SIGKILL)
        router.wait()
        time.sleep(1.0)
        router = _cli("router", "--listen", endpoint, log=log)
        procs.append(router)
        _wait_line(router, "ready")
        acks_at_router_restart = sum(acked.values())

        # region queries along vehicle 2's route, while the fleet maps
        answers = []
        for T in recs[1].poses[::2]:
            req = RegionRequest(float(T[0, 3]), float(T[1, 3]), 0.0, radius_m=15.0, max_level=3)
            replies = ctx.get("gs_mapping/fleet/region", req.to_bytes(), timeout_s=10)
            assert replies and replies[0].ok
            answers.append(RegionAnswer.from_bytes(replies[0].payload))
            ctx.spin_once(0.5)
        assert all(a.status == "ok" for a in answers)

        # two late receivers
        for k in (1, 2):
            rx = _cli("run", "map_receiver_node", "--namespace", f"rx{k}", *common, log=log)
            procs.append(rx)
            _wait_line(rx, "ready")

        crc = str(expected.checksum())

        def converged():
            s = diag.get("map_server_node", {})
            rxs = [diag.get(f"/rx{k}/map_receiver_node", {}) for k in (1, 2)]  # both late receivers
            return s.get("gaussians") == str(len(expected)) and all(
                d.get("state_crc") == crc and d.get("seq") == s.get("global_seq") for d in rxs
            )

        ctx.spin(until=converged, timeout_s=60)
        assert converged(), (
            f"no convergence: server {diag.get('map_server_node')}, rx1 {diag.get('/rx1/map_receiver_node')}, "
            f"rx2 {diag.get('/rx2/map_receiver_node')}"
        )
        for v in vehicles:
            assert v.poll() is None, "a vehicle died"
        # vehicles, server and this process reconnected through the new router: acks kept coming
        assert sum(acked.values()) > acks_at_router_restart

        # a vehicle vanishes mid-stream: its liveliness token goes, the server says so, the map stays
        def vehicle4():
            raw = diag.get("map_server_node", {}).get("vehicle vehicle4")
            return json.loads(raw) if raw else {}

        assert vehicle4().get("liveliness") == "alive"
        vehicles[3].send_signal(signal.SIGKILL)
        ctx.spin(until=lambda: vehicle4().get("liveliness") == "gone", timeout_s=30)
        assert vehicle4().get("vanished") == 1, vehicle4()
        assert diag["map_server_node"]["gaussians"] == str(len(expected))
    finally:
        if ctx is not None:
            ctx.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        summaries = []
        for p in procs:
            try:
                out, _ = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            summaries += [ln for ln in (out or "").splitlines() if ln.startswith("summary: ")]
        log.close()

    rx_summaries = [json.loads(s[9:]) for s in summaries if '"map_receiver_node"' in s]
    assert len(rx_summaries) == 2
    for s in rx_summaries:  # both late receivers hold the global map, verified by their own checksums
        assert str(s["state_crc"]) == crc, s
    # the store after all of it: the offline merge; nothing acknowledged lost across the kill
    from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
    from gs_mapping.runtime.replay import ReplayBus

    node = MapServerNode(
        ReplayBus().context("map_server_node"),
        {"map_server_node": MapServerNodeConfig(store_path=str(store))},
    )
    assert node.merge.global_map.equals(expected)
    for mid, seq in acked_before_kill.items():
        assert node.merge.vehicles[mid].seq >= seq
    # a region answer from mid-run decodes to a subset of that moment's global map (levels ≤ 3)
    some = [a for a in answers if a.container]
    assert some
    h, q = decode_snapshot(some[-1].container)
    assert int(q.level.max()) <= 3 and h.map_id == 1000000
    final = node.answer_region(
        RegionRequest(float(recs[1].poses[0][0, 3]), float(recs[1].poses[0][1, 3]), radius_m=15.0).to_bytes()
    )
    h, q = decode_snapshot(RegionAnswer.from_bytes(final).container)
    assert np.isin(q.ids, expected.ids).all()
    node.close()
