"""`gs-mapping run map_server_node` under numba's ``NUMBA_DISABLE_JIT=1`` (its debugging switch: the
compiled loops run as Python, where their intrinsics raise NotImplementedError). The codec takes its
plain paths then, as with ``GS_MAP_SHARE_NUMBA=0``: the server says "ready" (its warm-up, session 38,
raised 'leading_zeros is not usable in pure-python' and the node never started) and merges a
vehicle's snapshot and delta, each decoded to the sender's own map (its CRC checked by the merge)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")
pytest.importorskip("zenoh")

from test_fleet38_ready_warm import HERE, SCRIPT, SRC  # noqa: E402


@pytest.mark.slow
def test_map_server_under_numba_disable_jit_starts_and_merges(tmp_path):
    import numpy as np
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams

    full = synthetic_map(1500, 0, seed=38)
    sender = MapSender.from_map(full.subset(np.arange(1000)), QuantParams.from_quality(3), map_id=5)
    paths = [tmp_path / "snapshot.bin", tmp_path / "delta.bin"]
    paths[0].write_bytes(sender.snapshot())
    paths[1].write_bytes(sender.update(full)[0])
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(
        "/**:\n  ros__parameters:\n    map_server_node:\n"
        f"      store_path: {tmp_path / 'fleet.sqlite3'}\n      vehicles: [vehicle1]\n"
        "      global_period_s: 0.0\n"
    )
    argv = ["run", "map_server_node", "--transport", "zenoh", "--listen", "tcp/127.0.0.1:0",
            "--connect", "tcp/127.0.0.1:1", "--domain-id", "39", "--config", str(cfg)]  # fmt: skip
    env = dict(
        os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{HERE}", PYTHONDONTWRITEBYTECODE="1", NUMBA_DISABLE_JIT="1"
    )
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, *map(str, paths), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    probe = [line for line in r.stdout.splitlines() if line.startswith("PROBE ")]
    assert r.returncode == 0 and probe, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert json.loads(probe[0][6:])["status"] == ["snapshot", "applied"]
