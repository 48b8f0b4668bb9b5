"""`gs-mapping run map_server_node` says "ready" once the codec's compiled loops are loaded.

Before session 38 an empty fleet store started without calling them (an empty map encodes without
them): the first vehicle container then paid numba's compilation, ~4 s on a loaded 2-core machine
with a cold cache (a probe: 10.2 s of CPU for a first snapshot and delta at load 9), while the
server already said it was ready. Now the node runs a small map through the codec first
(:func:`gs_map_share.merge.warm_up`).

Timing-free: at the "ready" line (the CLI's own), every numba dispatcher of :mod:`gs_map_share.kernels`
is read; a vehicle's snapshot and delta (a surface map, as a mapper sends) are then merged and the
global delta flushed, then a global snapshot published (session 39: warm_up no longer encodes
one, its vehicle snapshot loading the same loops); no dispatcher may gain a signature (a loop
called for the first time, compiled or loaded from numba's cache, gains one). The process is a fresh one, so nothing was loaded before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba")
pytest.importorskip("zenoh")

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from numba.core.registry import CPUDispatcher

    import gs_mapping.cli.run_node as run_node
    from gs_mapping.cli import main
    from gs_mapping.nodes.map_server_node import MapServerNode

    nodes, out, containers = [], {}, sys.argv[1:3]
    init = MapServerNode.__init__

    def keep(self, *a, **k):
        init(self, *a, **k)
        nodes.append(self)

    MapServerNode.__init__ = keep

    def loaded():
        from gs_map_share import kernels
        return {n: len(d.signatures) for n, d in vars(kernels).items() if isinstance(d, CPUDispatcher)}

    say = run_node._say

    def hook(line, stop):
        say(line, stop)
        if line.endswith(": ready"):
            node = nodes[0]
            out["at_ready"] = loaded() if "gs_map_share.kernels" in sys.modules else {}
            b = node.bindings["vehicle1"]
            out["status"] = [node.ingest(open(p, "rb").read(), b) for p in containers]
            node.flush_global()
            out["global_seq_moved"] = node.merge.global_seq
            out["after_work"] = loaded()
            node.publish_snapshot()  # (the global snapshot a joiner, or the period, brings)
            out["after"] = loaded()
            print("PROBE " + json.dumps(out), flush=True)
            stop.append(1)

    run_node._say = hook
    sys.argv = ["gs-mapping", *sys.argv[3:]]
    sys.exit(main())
    """
)


def test_ready_comes_after_the_codec_loops_are_loaded(tmp_path):
    import numpy as np
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams

    full = synthetic_map(4000, 0, seed=38)  # (map_server_node's defaults: quality 3, SH degree 0)
    sender = MapSender.from_map(full.subset(np.arange(3000)), QuantParams.from_quality(3), map_id=5)
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
            "--connect", "tcp/127.0.0.1:1", "--domain-id", "38", "--config", str(cfg)]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{HERE}", PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, *map(str, paths), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    probe = [line for line in r.stdout.splitlines() if line.startswith("PROBE ")]
    assert r.returncode == 0 and probe, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    out = json.loads(probe[0][6:])
    assert out["status"] == ["snapshot", "applied"], out["status"]
    at_ready, after = out["at_ready"], out["after"]
    called = {n for n, k in after.items() if k}
    assert len(called) >= 20, sorted(called)  # (the merge's decoding and the global delta's encoding)
    work = out["after_work"]
    late = sorted(n for n in work if work[n] > at_ready.get(n, 0))
    assert late == [], f"loaded only after 'ready', by the first vehicle containers: {late}"
    late = sorted(n for n in after if after[n] > work.get(n, 0))
    assert late == [], f"loaded only after 'ready', by the first global snapshot: {late}"
