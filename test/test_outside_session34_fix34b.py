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
