"""Nodes as real OS processes on Cyclone DDS (loopback): player → mapper → receivers, including a
receiver that joins late and one that is killed and restarted mid-stream. Everything is observed
through the nodes' own /diagnostics, as a ROS 2 user would; at the end each receiver's saved map is
compared with the mapper's saved map quantised (``to_qmap`` with the mapper's codec quality): the map
itself, not the sender's checksum of what it sent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from gs_mapping.nodes.context import RELIABLE_QOS
from gs_mapping.runtime.dds import DdsContext

DOMAIN = 23


def _spawn(*args, name=None):
    cmd = [sys.executable, "-m", "gs_mapping", "run", *args, "--domain-id", str(DOMAIN)]
    if name:
        cmd += ["--name", name]
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)


class Diagnostics:
    """Latest /diagnostics key/values per node name, read over DDS."""

    def __init__(self):
        self.ctx = DdsContext("test_observer", domain_id=DOMAIN)
        self.latest: dict[str, dict[str, str]] = {}
        self.ctx.create_subscription(
            "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", RELIABLE_QOS, self._on
        )

    def _on(self, msg):
        for st in msg.status:
            self.latest[st.name] = {kv.key: kv.value for kv in st.values}

    def wait(self, cond, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.ctx.spin_once(0.1)
            if cond():
                return True
        return False

    def seq(self, node):
        return int(self.latest.get(node, {}).get("seq", -1))


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    line = [ln for ln in out.splitlines() if ln.startswith("summary: ")]
    return json.loads(line[-1][len("summary: ") :]) if line else None


def _config_saving(base, tmp_path, name: str, section: str):
    """``base`` with ``section.save_path`` set: the node writes its map there on shutdown."""
    path = tmp_path / f"{name}.yaml"
    doc = yaml.safe_load(base.read_text())
    doc["/**"]["ros__parameters"].setdefault(section, {})["save_path"] = str(tmp_path / f"{name}.ply")
    path.write_text(yaml.safe_dump(doc))
    return path, tmp_path / f"{name}.ply"


def _assert_receiver_holds_the_mappers_map(mapper_ply, receiver_ply, quality: int, name: str):
    import numpy as np

    from gs_map_share.quantize import QuantParams, dequantize, to_qmap
    from gs_mapping.ply import load_ply

    mapped = load_ply(mapper_ply)
    params = QuantParams.from_quality(quality)
    want = dequantize(to_qmap(mapped, params), params, mapped.tile_size)
    got = load_ply(receiver_ply)
    assert len(got) == len(want) == len(mapped), name
    assert np.array_equal(got.ids, want.ids), name
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert np.array_equal(getattr(got, f), getattr(want, f)), f"{name}: {f} differs from the mapper's map"


@pytest.mark.slow
def test_mapper_to_receivers_over_dds_with_late_joiner_and_restart(kitchen_bag, fast_nodes_config, tmp_path):
    from gs_mapping.nodes.mapper_node import MapperNodeConfig

    cfg = fast_nodes_config
    cfg_mapper, mapper_ply = _config_saving(cfg, tmp_path, "mapper", "mapper_node")
    cfg_a, a_ply = _config_saving(cfg, tmp_path, "receiver_a", "map_receiver_node")
    cfg_b, b_ply = _config_saving(cfg, tmp_path, "receiver_b", "map_receiver_node")
    obs = Diagnostics()
    mapper = _spawn("mapper_node", "--config", str(cfg_mapper))
    rx_a = _spawn("map_receiver_node", "--config", str(cfg_a), name="receiver_a")
    procs = [mapper, rx_a]
    try:
        assert obs.wait(lambda: "mapper_node" in obs.latest and "receiver_a" in obs.latest, 120), (
            "nodes did not come up"
        )
        env = dict(os.environ, OMP_NUM_THREADS="1")
        player = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gs_mapping",
                "play",
                str(kitchen_bag),
                "--rate",
                "0.1",
                "--domain-id",
                str(DOMAIN),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(player)
        # mid-stream: once a few deltas went out, kill receiver A hard and restart it at once
        assert obs.wait(lambda: obs.seq("mapper_node") >= 3, 120), "mapper published no deltas"
        rx_a.kill()
        rx_a.wait()
        rx_a2 = _spawn("map_receiver_node", "--config", str(cfg_a), name="receiver_a")
        procs.append(rx_a2)
        assert player.poll() is None, "the stream ended before the restart: slow the player down"
        assert player.wait(timeout=300) == 0
        # a late joiner starts after the stream
        rx_b = _spawn("map_receiver_node", "--config", str(cfg_b), name="receiver_b")
        procs.append(rx_b)

        def converged():
            s = obs.seq("mapper_node")
            crc = obs.latest.get("mapper_node", {}).get("state_crc")
            return (
                s > 0
                and all(
                    obs.seq(n) == s and obs.latest[n].get("state_crc") == crc
                    for n in ("receiver_a", "receiver_b")
                    if n in obs.latest
                )
                and {"receiver_a", "receiver_b"} <= set(obs.latest)
            )

        # the mapper may still be working through queued frames: wait until all agree and stay so
        assert obs.wait(converged, 180), f"receivers did not converge: {obs.latest}"
        time.sleep(2.0)
        assert obs.wait(converged, 120)
        # the mapper first (it saves its map), then the receivers once they hold its last state
        mapper_summary = _stop(mapper)
        final = mapper_summary["seq"]
        assert obs.wait(lambda: all(obs.seq(n) == final for n in ("receiver_a", "receiver_b")), 60), (
            f"receivers did not reach the mapper's last state {final}: {obs.latest}"
        )
        summaries = {n: _stop(p) for n, p in (("receiver_b", rx_b), ("receiver_a", rx_a2))}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert mapper_summary["keyframes"] >= 2
    for name, s in summaries.items():
        assert s["seq"] == mapper_summary["seq"], name
        assert s["state_crc"] == mapper_summary["state_crc"], name
        assert sum(s["rejected"].values()) == 0, name
    quality = MapperNodeConfig().quality  # the fast config leaves the codec quality at its default
    for name, ply in (("receiver_a", a_ply), ("receiver_b", b_ply)):
        _assert_receiver_holds_the_mappers_map(mapper_ply, ply, quality, name)
