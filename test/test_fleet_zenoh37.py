"""The fleet over Zenoh as an operator runs it, session 37: the map server as its own process
(`gs-mapping run map_server_node`), vehicles as Zenoh sessions of this process publishing as
mapper_node does (``<ns>/mapper_node/map_delta`` reliable, ``map_snapshot`` latched), a late
receiver as another session. Checked against docs/fleet.md's merge rule written out in
test/fleet_rule.py over each vehicle's own final map, and against ``merge_maps`` itself: the store's
global map after a restart, and the map a late receiver rebuilds from the latched snapshot.
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
from fleet_rule import offline_merge

pytest.importorskip("zenoh")

HERE = Path(__file__).resolve().parent
QUALITY = 3  # map_server_node.quality's default


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    src = HERE.parent / "src"
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{src}{os.pathsep}{HERE}")


def _stream(map_id: int, n: int, origin, steps: int):
    """A mapper's containers: a snapshot of n Gaussians, then ``steps`` deltas adding 20 each; and
    the vehicle's map after each container."""
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import encode_delta
    from gs_map_share.quantize import QuantParams, to_qmap
    from gs_map_share.snapshot import encode_snapshot

    p = QuantParams.from_quality(QUALITY)
    full = to_qmap(synthetic_map(n + 20 * steps, 0, seed=map_id, origin=origin), p)
    full.ids = np.arange(1, len(full) + 1, dtype=np.uint64)
    states = [full.take(np.arange(n + 20 * k)) for k in range(steps + 1)]
    out = [encode_snapshot(states[0], p, map_id=map_id, seq=100, n_levels=1, frame_id="map")[0]]
    for k in range(1, steps + 1):
        out.append(encode_delta(states[k - 1], states[k], p, map_id=map_id, seq=100 + k, base_seq=99 + k)[0])
    return out, states


def _expected(maps: dict):
    """The rule, written out (fleet_rule), and the project's merge_maps agree on these maps."""
    from gs_map_share.merge import merge_maps
    from gs_map_share.quantize import QuantParams

    tb = QuantParams.from_quality(QUALITY).tile_bits
    ref = offline_merge(maps, tb)
    assert merge_maps(maps, tb, 0).equals(ref)
    return ref


class Fleet:
    """A map server process on ``endpoint`` and vehicle sessions of this process."""

    def __init__(self, tmp_path: Path, vehicles: list[str], domain: int, *, router: bool):
        self.tmp, self.domain = tmp_path, domain
        self.endpoint = f"tcp/127.0.0.1:{_free_port()}"
        self.store = tmp_path / "fleet.sqlite3"
        self.cfg = tmp_path / "fleet.yaml"
        self.cfg.write_text(
            "/**:\n  ros__parameters:\n    map_server_node:\n"
            f"      store_path: {self.store}\n      vehicles: [{', '.join(vehicles)}]\n"
            "      global_period_s: 0.1\n      snapshot_period_s: 1.0\n"
        )
        self.procs: list[subprocess.Popen] = []
        self.sessions: list = []
        self.runs = 0
        self.router = router
        if router:
            p = subprocess.Popen(
                [sys.executable, "-m", "gs_mapping", "router", "--listen", self.endpoint],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(),
            )  # fmt: skip
            self.procs.append(p)
            assert "ready" in p.stdout.readline()

    def start_server(self) -> subprocess.Popen:
        """`gs-mapping run map_server_node` (peer mode; without a router it listens on the endpoint
        the vehicles connect to). Its stderr goes to server<k>.err."""
        self.runs += 1
        listen = [] if self.router else ["--listen", self.endpoint]
        out = self.tmp / f"server{self.runs}.out"
        p = subprocess.Popen(
            [sys.executable, "-m", "gs_mapping", "run", "map_server_node", "--transport", "zenoh",
             "--connect", self.endpoint, *listen, "--domain-id", str(self.domain), "--config", str(self.cfg)],
            stdout=open(out, "w"), stderr=open(self.tmp / f"server{self.runs}.err", "w"), env=_env(),
        )  # fmt: skip
        self.procs.append(p)
        end = time.monotonic() + 90
        while "ready" not in out.read_text():
            assert p.poll() is None and time.monotonic() < end, (
                self.tmp / f"server{self.runs}.err"
            ).read_text()
            time.sleep(0.2)
        return p

    def session(self, name: str, ns: str = ""):
        from gs_mapping.runtime.zenoh_runtime import ZenohContext

        ctx = ZenohContext(name, ns, self.domain, connect=[self.endpoint])
        self.sessions.append(ctx)
        return ctx

    def vehicle(self, ns: str) -> Vehicle:
        return Vehicle(self.session("mapper_node", ns))

    def close(self) -> None:
        for ctx in self.sessions:
            ctx.close()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()

    def stored_global_map(self):
        """The global map a server restarted on the store holds (rebuilt from its rows)."""
        from gs_mapping.nodes.map_server_node import MapServerNode, MapServerNodeConfig
        from gs_mapping.runtime.replay import ReplayBus

        cfg = MapServerNodeConfig(store_path=str(self.store), vehicles=["vehicle1"])
        node = MapServerNode(ReplayBus().context("map_server_node"), {"map_server_node": cfg})
        try:
            return node.merge.global_map
        finally:
            node.close()


class Vehicle:
    def __init__(self, ctx):
        from gs_mapping.nodes.context import LATCHED_QOS, QoS

        self.ctx = ctx
        self.delta = ctx.create_publisher(
            "~/map_delta", "std_msgs/msg/UInt8MultiArray", QoS(reliable=True, depth=20)
        )
        self.snapshot = ctx.create_publisher("~/map_snapshot", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS)

    def send(self, pub, data: bytes) -> None:
        from gs_mapping.messages import bytes_to_uint8_multiarray

        pub.publish(bytes_to_uint8_multiarray(data, self.ctx.factory))


def _acks(ctx) -> dict[int, int]:
    from gs_mapping.nodes.context import QoS

    acked: dict[int, int] = {}

    def on_ack(msg):
        a = json.loads(msg.data)
        acked[a["map_id"]] = max(acked.get(a["map_id"], 0), a["seq"])

    ctx.create_subscription(
        "/map_server_node/ack", "std_msgs/msg/String", QoS(reliable=True, depth=1000), on_ack
    )
    return acked


def _late_receiver_map(fleet: Fleet, expected, timeout_s: float = 120.0):
    """A receiver joining now (a new session, as map_receiver_node follows the global stream):
    the map the codec's receiver rebuilds from the server's latched snapshot and deltas."""
    from gs_map_share.receiver import MapStore
    from gs_mapping.messages import uint8_multiarray_to_bytes
    from gs_mapping.nodes.context import LATCHED_QOS, QoS

    rx = fleet.session("map_receiver_node", "rx")
    store = MapStore(max_gaussians=1 << 22)
    for topic, qos in (
        ("/map_server_node/map_snapshot", LATCHED_QOS),
        ("/map_server_node/map_delta", QoS(reliable=True, depth=100)),
    ):
        rx.create_subscription(
            topic, "std_msgs/msg/UInt8MultiArray", qos, lambda m: store.receive(uint8_multiarray_to_bytes(m))
        )
    rx.spin(until=lambda: store.ready and store.state.equals(expected), timeout_s=timeout_s)
    return store


@pytest.mark.slow
def test_a_corrupt_container_repeated_on_a_vehicles_topic_is_one_server_log_line(tmp_path):
    """docs/fleet.md: a corrupt container is counted per vehicle, never applied, the global map
    untouched; README: a bad message is counted, logged once per reason and skipped. Over a real
    router to a server process: vehicle 1 sends the first half of its snapshot (valid CDR, a
    container cut short) five times between its good containers. The server's log names it on
    one line (the merge also logged each of the first five itself: six lines), keeps running
    (vehicle 1's next delta is acknowledged), and its store and a late receiver hold the rule over
    both vehicles' maps; it stops with status 0 on SIGTERM."""
    c1, m1 = _stream(1, 300, (0.0, 0.0, 0.0), 2)
    c2, m2 = _stream(2, 300, (4.0, 0.0, 0.0), 1)
    expected = _expected({1: m1[-1], 2: m2[-1]})
    fleet = Fleet(tmp_path, ["vehicle1", "vehicle2"], 61, router=True)
    try:
        server = fleet.start_server()
        v1, v2 = fleet.vehicle("vehicle1"), fleet.vehicle("vehicle2")
        acked = _acks(v1.ctx)
        v1.ctx.spin(
            until=lambda: v1.delta.subscription_count() and v2.delta.subscription_count(), timeout_s=30
        )
        v1.send(v1.snapshot, c1[0])
        v2.send(v2.snapshot, c2[0])
        v1.send(v1.delta, c1[1])
        v2.send(v2.delta, c2[1])
        v1.ctx.spin(until=lambda: acked == {1: 101, 2: 101}, timeout_s=120)
        assert acked == {1: 101, 2: 101}
        cut = c1[0][: len(c1[0]) // 2]
        for _ in range(5):
            v1.send(v1.delta, cut)
        v1.send(v1.delta, c1[2])
        v1.ctx.spin(until=lambda: acked.get(1) == 102, timeout_s=120)
        assert acked.get(1) == 102, "the server stopped taking vehicle 1's containers"
        rx = _late_receiver_map(fleet, expected)
        assert rx.state.equals(expected)
        server.send_signal(signal.SIGTERM)  # (as a service manager stops it)
        assert server.wait(30) == 0
    finally:
        fleet.close()
    log = (tmp_path / "server1.err").read_text()
    assert "Traceback" not in log
    said = [ln for ln in log.splitlines() if "chunks declare" in ln]
    assert len(said) == 1, said
    assert "rejected message #1 on vehicle1" in said[0]
    summary = json.loads((tmp_path / "server1.out").read_text().split("summary: ")[1])
    assert json.loads(summary["vehicle vehicle1"])["rejected"] == 5
    assert fleet.stored_global_map().equals(expected)


@pytest.mark.slow
def test_eight_vehicles_before_their_peer_server_a_copied_id_and_a_kill_9(tmp_path):
    """Eight vehicles (overlapping maps: tiles contended) come up before the map server, each
    publishing its latched snapshot; no router: the server listens (Zenoh peer mode) where the
    vehicles connect. Once it is up they send their deltas; a ninth namespace then replays vehicle
    2's snapshot (a copied configuration: map id 2 again) and is refused on one log line. The server
    is killed with SIGKILL and restarted on its store and port; each vehicle sends one more delta.
    End: every vehicle's last container acknowledged; the store's global map and a late
    receiver's map are the rule over the eight vehicles' own maps, vehicle 9 in neither."""
    streams = {k: _stream(k, 150, (4.0 * (k % 3), 3.0 * (k // 3), 0.0), 3) for k in range(1, 9)}
    expected = _expected({k: s[-1] for k, (_, s) in streams.items()})
    fleet = Fleet(tmp_path, [f"vehicle{k}" for k in range(1, 10)], 62, router=False)
    try:
        vs = {k: fleet.vehicle(f"vehicle{k}") for k in streams}
        for k, v in vs.items():
            v.send(v.snapshot, streams[k][0][0])
        server = fleet.start_server()
        acked = _acks(vs[1].ctx)
        vs[1].ctx.spin(until=lambda: all(v.delta.subscription_count() for v in vs.values()), timeout_s=120)
        for step in (1, 2):
            for k, v in vs.items():
                v.send(v.delta, streams[k][0][step])
        vs[1].ctx.spin(until=lambda: acked == {k: 102 for k in vs}, timeout_s=120)
        assert acked == {k: 102 for k in vs}
        dup = fleet.vehicle("vehicle9")
        dup.ctx.spin(until=lambda: dup.delta.subscription_count() > 0, timeout_s=120)
        dup.send(dup.snapshot, streams[2][0][0])
        dup.ctx.spin(timeout_s=1.0)
        joined = {k: v.delta.subscriptions_joined() for k, v in vs.items()}
        server.send_signal(signal.SIGKILL)
        server.wait()
        server = fleet.start_server()
        # the new server's subscription seen by every vehicle (the killed one's token may linger)
        new = lambda: all(v.delta.subscriptions_joined() > joined[k] for k, v in vs.items())  # noqa: E731
        vs[1].ctx.spin(until=new, timeout_s=120)
        assert new()
        for k, v in vs.items():
            v.send(v.delta, streams[k][0][3])
        vs[1].ctx.spin(until=lambda: acked == {k: 103 for k in vs}, timeout_s=120)
        assert acked == {k: 103 for k in vs}
        rx = _late_receiver_map(fleet, expected)
        assert rx.state.equals(expected)
        assert rx.state.checksum() == expected.checksum()
        server.send_signal(signal.SIGTERM)  # (as a service manager stops it)
        assert server.wait(30) == 0
    finally:
        fleet.close()
    for run in (1, 2):  # (the restarted server fetches vehicle 9's latched snapshot again: its line)
        log = (tmp_path / f"server{run}.err").read_text()
        assert "Traceback" not in log
        said = [ln for ln in log.splitlines() if "map id 2 belongs to namespace" in ln]
        assert said == [
            "WARNING gs_mapping.map_server_node: rejected message #1 on vehicle9: map id 2 belongs to "
            "namespace vehicle2"
        ] or (run == 2 and not said), said
    stored = fleet.stored_global_map()
    assert stored.equals(expected)
    assert not np.any((stored.ids >> np.uint64(32)) == 9)


@pytest.mark.parametrize(
    "text, said",
    [
        # json5's caret diagram (" --> 2:1", "2 | ", "  | ^---", "  = expected …") was printed as
        # "> 2:1; 2; expected identifier or string"
        ('{ mode: "peer",\n', "line 2, column 1: expected identifier or string"),
        ('{ mode: "router2" }', "line 1, column 9: unknown variant `router2`, expected one of"),
        # serde's message carries an inner Rust location: the text after it was cut off with it
        ('{ connect: { endpoints: ["nonsense"] } }', "line 1, column 26: Endpoints must be of the form"),
    ],
)
@pytest.mark.parametrize("command", [["run", "map_server_node", "--transport", "zenoh"], ["router"]])
def test_a_zenoh_config_file_zenoh_refuses_is_one_line_naming_where(tmp_path, capsys, text, said, command):
    """A vehicle's or router's Zenoh config file with a mistake: one line naming the file, the line
    and column Zenoh's own parser reports and its message (no caret diagram, no Rust source
    location), exit status 2, before any session opens or store is made."""
    import zenoh

    from gs_mapping.cli import main

    path = tmp_path / "vehicle.json5"
    path.write_text(text)
    with pytest.raises(zenoh.ZError):  # the reference: Zenoh refuses the file itself
        zenoh.Config.from_file(str(path))
    store = tmp_path / "fleet.sqlite3"
    opts = ["--zenoh-config", str(path)]
    if command[0] == "run":
        cfg = tmp_path / "fleet.yaml"
        cfg.write_text(f"/**:\n  ros__parameters:\n    map_server_node:\n      store_path: {store}\n")
        opts += ["--config", str(cfg)]
    assert main([*command, *opts, "--duration", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"gs-mapping {command[0]}: error: zenoh configuration ({path}): {said}"), err
    assert ".rs:" not in err[0] and "-->" not in err[0]
    if "nonsense" in text:
        assert err[0].endswith(": nonsense")  # (the message goes on past Zenoh's inner location)
    assert not store.exists()
