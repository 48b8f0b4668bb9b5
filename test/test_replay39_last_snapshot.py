"""``gs-mapping replay`` ends with a snapshot of the final map: the last ``/mapper_node/map_snapshot``
of its output bag, read back by rosbags (the real reader) and decoded by gs_map_share's receiver,
holds the map the mapper saved at its close (its PLY, read by plyfile), id for id.

Why: a receiver, or a viewer, that reads a replay's output (or plays it and joins late) takes the
latched snapshot; deltas sent after the last periodic one are in no snapshot unless the replay's
last round of timers (``ReplayBus.fire_timers``, at the bag's end) is seen by the mapper as ROS time
standing still (``ReplayContext.clock_stopped``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")  # (mapper_node)
pytest.importorskip("plyfile")
pytest.importorskip("rosbags.rosbag2")

from conftest import KITCHEN_TOPICS_YAML  # noqa: E402

CONFIG = f"""
/**:
  ros__parameters:
    mapper:
      {KITCHEN_TOPICS_YAML}
      device: cpu
      max_gaussians: 20000
      seeding: {{stride: 4}}
      optim: {{iterations: 2, first_iterations: 4, refine_iterations: 0}}
      keyframe: {{max_gap: 4}}
    mapper_node:
      snapshot_period_s: 1.0
      save_path: SAVE
"""


def test_the_replays_last_snapshot_is_the_mappers_final_map(kitchen_bag, tmp_path):
    from plyfile import PlyData
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    from gs_map_share.receiver import MapStore

    saved = tmp_path / "final.ply"
    config = tmp_path / "replay.yaml"
    config.write_text(CONFIG.replace("SAVE", str(saved)))
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "replay", str(kitchen_bag), "--out", str(out)]
        + ["--nodes", "mapper_node", "--config", str(config), "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    ts = get_typestore(Stores.ROS2_HUMBLE)
    kinds: list[tuple[str, int, bytes]] = []  # (snapshot or delta, log time, data) in bag order
    with Reader(out) as r:
        conns = [c for c in r.connections if c.topic.startswith("/mapper_node/map_")]
        for c, t, raw in r.messages(connections=conns):
            data = bytes(ts.deserialize_cdr(raw, c.msgtype).data)
            kinds.append((c.topic.rsplit("_", 1)[1], t, data))
    snaps = [k for k in kinds if k[0] == "snapshot"]
    last_delta = max(i for i, k in enumerate(kinds) if k[0] == "delta")
    # (the case this guards: deltas after the last periodic snapshot)
    periodic = [i for i, k in enumerate(kinds) if k[0] == "snapshot"][-2]
    assert periodic < last_delta, "no delta after the periodic snapshots: nothing to test"
    assert snaps[-1][1] <= max(t for _, t, _ in kinds)  # (within the input's span)

    ply = PlyData.read(str(saved))
    ids = np.asarray(ply["gs_mapping"]["id"]).astype(np.uint64)
    v = ply["vertex"]
    xyz = np.stack([np.asarray(v["x"]), np.asarray(v["y"]), np.asarray(v["z"])], 1)
    store = MapStore()
    store.receive(snaps[-1][2])
    got = store.gaussian_map()
    assert np.array_equal(np.sort(got.ids), np.sort(ids)), (len(got), len(ids), len(snaps))
    order_s, order_g = np.argsort(ids), np.argsort(got.ids)
    assert np.abs(got.means[order_g] - xyz[order_s]).max() < 0.05
