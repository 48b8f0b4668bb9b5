"""Session 34 (fix34b): what a ROS 2 fleet operator meets, left by the day's reviews.

- A fleet store that cannot be written any more (disk full, quota, a remount read-only) fails at a
  commit, not at open: its line gave SQLite's words alone ("cannot commit (disk I/O error)"), where
  the same cause met at open says what to check. Made for real: a file size limit (RLIMIT_FSIZE, the
  kernel refusing the write as a full disk or a quota does) in a process of its own.
- ``qos_overrides`` in a params file are applied only under rclpy; ``gs-mapping run`` / ``replay``
  (DDS, Zenoh, the replay bus) read the file and kept them unread without a word.
- Two processes publishing as one mapper (one name and namespace, launched twice): a
  map_receiver_node said nothing of it; its diagnostics now count the delta publishers.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")

# ------------------------------------------------------------------------------------------------
# a store that fills up while the server runs

_FILL_UP = r"""
import os, resource, signal, sys
from gs_map_share.fleet_store import FleetStore, Row, identity
from gs_map_share.quantize import QuantParams

path, fresh = sys.argv[1], sys.argv[2]
ident = identity(1_000_000, "map", QuantParams.from_quality(3), 0)
s = FleetStore(path, ident)
s.commit([(1, Row(5, 0, b"vehicle snapshot"))])
# from here the kernel refuses to grow any file past what the store holds now (EFBIG, as a full
# disk's ENOSPC or a quota's EDQUOT): the next commit's WAL pages do not fit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
room = os.path.getsize(path) + os.path.getsize(path + "-wal") + 4 * 4096
resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))
for what, do in (
    ("COMMIT", lambda: s.commit([(1, Row(6, 5, os.urandom(1 << 20)))])),
    # the same cause met at open: a new store on that disk (no room for its first page)
    ("OPEN", lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512)) or FleetStore(fresh, ident).close()),
):
    try:
        do()
        print(what, "ok")
    except Exception as exc:
        print(what, type(exc).__name__, exc)
"""


def test_a_store_that_fills_up_at_a_commit_says_what_to_check_as_at_open(tmp_path):
    store, fresh = tmp_path / "fleet.sqlite3", tmp_path / "fresh.sqlite3"
    r = subprocess.run(
        [sys.executable, "-c", _FILL_UP, str(store), str(fresh)],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    said = dict(ln.split(" ", 1) for ln in r.stdout.splitlines() if ln.startswith(("COMMIT", "OPEN")))
    assert "Traceback" not in r.stderr, r.stderr
    commit, at_open = said.get("COMMIT", ""), said.get("OPEN", "")
    assert commit.startswith(f"FleetStoreError {store}: cannot commit"), r.stdout + r.stderr
    assert at_open.startswith("FleetStoreError"), r.stdout + r.stderr
    # the line names the cause's class and what to check, in the words the open error uses
    hint = at_open.rsplit("; ", 1)[1]
    assert "permissions" in hint and "free space" in hint, at_open
    assert commit.endswith("; " + hint), commit
    assert "corrupt" not in commit
    # nothing acknowledged is lost, nothing half-written: the file, read with sqlite3, holds the
    # first commit alone
    db = sqlite3.connect(str(store))
    try:
        assert db.execute("SELECT * FROM vehicle_log").fetchall() == [(1, 5, 0, b"vehicle snapshot")]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


# ------------------------------------------------------------------------------------------------
# qos_overrides given to a runtime that does not apply them

_QOS_FILE = """/**:
  ros__parameters:
    qos_overrides:
      /map_receiver_node/map_cloud:
        publisher: {durability: volatile}
    qos_overrides./mapper_node/map_delta.subscription.reliability: best_effort
    map_receiver_node: {min_opacity: 0.1}
"""
_QOS_NAMES = (
    "qos_overrides./map_receiver_node/map_cloud.publisher.durability",
    "qos_overrides./mapper_node/map_delta.subscription.reliability",
)


def _qos_warnings(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "qos_overrides" in ln]


def test_gs_mapping_run_says_once_that_qos_overrides_are_not_applied(tmp_path):
    """``gs-mapping run`` (Cyclone DDS here) with the params file an rclpy launch uses: the node runs
    (the file is good), and one warning names every override and says the built-in QoS stays."""
    f = tmp_path / "qos.yaml"
    f.write_text(_QOS_FILE)
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "run", "map_receiver_node", "--config", str(f)]
        + ["--duration", "0.3", "--domain-id", "93"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert r.returncode == 0 and "map_receiver_node: ready" in r.stdout, r.stdout + r.stderr
    (said,) = _qos_warnings(r.stderr)
    assert all(n in said for n in _QOS_NAMES) and "built-in QoS" in said and str(f) in said, said


def test_replay_of_several_nodes_says_it_once(tmp_path, caplog):
    """``gs-mapping replay`` runs several nodes from one ``/**`` file: one warning, not one per node."""
    import logging

    import numpy as np

    from gs_mapping.bag import BagWriter
    from gs_mapping.cli import main
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.messages import transforms_to_tf_message
    from gs_mapping.say_once import forget

    forget()
    f, bag = tmp_path / "qos.yaml", tmp_path / "bag"
    f.write_text(_QOS_FILE)
    with BagWriter(bag) as w:
        w.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        t = Transform(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
        w.write("/tf", 10**9, transforms_to_tf_message([TransformStamped("map", "base_link", 10**9, t)]))
    argv = ["replay", str(bag), "--out", str(tmp_path / "out"), "--config", str(f)]
    with caplog.at_level(logging.WARNING, logger="gs_mapping"):
        assert main([*argv, "--nodes", "map_receiver_node,map_server_node", "--json"]) == 0
    said = [r.getMessage() for r in caplog.records if "qos_overrides" in r.getMessage()]
    assert len(said) == 1 and all(n in said[0] for n in _QOS_NAMES), said
