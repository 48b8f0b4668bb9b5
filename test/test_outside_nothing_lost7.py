"""Outside check (seventh round) of issue 21 (nothing lost): the machine running out of something
other than disk bytes, and a recording that changes while it is read.

- Descriptors (``ulimit -n``, RLIMIT_NOFILE): a service unit's ``LimitNOFILE=``, a container's
  ``--ulimit nofile=``, or a process that already holds many. No earlier test sets this limit.
- Inodes: a disk with bytes free and no inode left (``df -i`` at 100 %, a small tmpfs, an ext4
  full of small files) under ``world``'s bag writer, which builds its bag in a ``.partial`` folder.
- A sqlite3 bag still being recorded (rosbag2's ``resilient`` preset: WAL mode, SQLite's automatic
  checkpoint every 1000 pages): ``info`` / ``map`` on it while ``ros2 bag record`` runs. The
  recorder's checkpoint may fall between the reader's copy of the ``.db3`` and its copy of the
  ``-wal`` (the copies of a growing camera recording take seconds; a checkpoint comes every ~4 MB).

References are independent of the code under test: the kernel's own limits and counts (``statvfs``
``f_ffree``), the directory listing beside the output, the bytes of the previous output, and
SQLite itself reading the live database (``mode=ro``, which replays the WAL as rosbag2 does).
Where the code is wrong the test is a strict xfail whose reason names the bug.
"""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")


def _cli(argv, timeout=180, **kw):
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kw.pop("env", ENV),
        **kw,
    )


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.replace("\r", "\n").splitlines() if " error: " in ln]


def _nofile(n: int):
    """``ulimit -n n`` as a shell (or ``LimitNOFILE=n`` in a systemd unit) sets it for the command."""

    def cap():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return cap


@pytest.fixture()
def small_ply(tmp_path):
    from synthetic_maps import synthetic_map

    from gs_mapping.ply import save_ply

    p = tmp_path / "in.ply"
    save_ply(synthetic_map(200, 0, seed=2), p)
    return p


# ------------------------------------------------------------------------------------------------
# descriptors


def test_encode_under_a_dozen_descriptors_writes_the_same_bytes(small_ply, tmp_path):
    """``ulimit -n 12`` (stdin/out/err, the input, the temp output, the directory fsync, the
    libraries' few): the reference is the same command without the limit. The snapshot must be
    byte-identical, and nothing but it is left beside it."""
    ref, out = tmp_path / "ref.gsd", tmp_path / "lim" / "o.gsd"
    out.parent.mkdir()
    r = _cli(["encode", small_ply, ref])
    assert r.returncode == 0, r.stderr
    r = _cli(["encode", small_ply, out], preexec_fn=_nofile(12))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert out.read_bytes() == ref.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["o.gsd"]


def test_world_with_workers_out_of_descriptors_leaves_nothing_beside_its_output(tmp_path):
    """``ulimit -n 10`` with ``world --workers 2``: the pool's pipes and semaphores cannot be made.
    Issue 21's outcome rule: one line, exit 2, and the temp files removed. The reference is the
    directory listing beside ``--out`` (``os.listdir``): it held nothing before the command, so it
    must hold nothing after it (the command made no output). Today a ``.out.XXXX.partial`` folder
    (holding an ``out/`` folder) is left for good: the cleanup's ``shutil.rmtree`` needs descriptors
    too, fails with EMFILE, and ``ignore_errors=True`` hides it; every retry leaves another."""
    runs = tmp_path / "runs"
    runs.mkdir()
    r = _cli(
        [
            "world",
            "--out",
            runs / "out",
            "--frames",
            "4",
            "--size",
            "64x48",
            "--workers",
            "2",
            "--no-progress",
        ],
        preexec_fn=_nofile(10),
        timeout=120,
    )
    assert "Traceback" not in r.stderr, r.stderr
    if r.returncode == 0:  # (the limit was enough after all: then the bag must be whole)
        assert sorted(os.listdir(runs)) == ["out"]
        return
    assert r.returncode == 2 and len(_error_lines(r.stderr)) == 1, r.stderr
    assert "open files" in r.stderr.lower() or "descriptor" in r.stderr.lower(), r.stderr
    assert os.listdir(runs) == [], f"left behind: {os.listdir(runs)}"


# ------------------------------------------------------------------------------------------------
# inodes


def _tmpfs(where: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, timeout=10
    )
    return r.returncode == 0


def test_world_overwrite_on_a_disk_with_no_inode_left_keeps_the_previous_bag(tmp_path):
    """A disk with megabytes free but no inode left (``df -i`` 100 %; the kernel's count is
    ``statvfs().f_ffree == 0``). ``world --out bag --overwrite`` over a previous good bag: one line
    naming the bag, exit 2, the previous bag byte for byte, and no temp folder beside it."""
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "size=4m,nr_inodes=64,mode=0755"):
        pytest.skip("needs root to mount a tmpfs")
    try:
        r = _cli(
            [
                "world",
                "--out",
                disk / "bag",
                "--frames",
                "2",
                "--size",
                "32x24",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        assert r.returncode == 0, r.stderr
        before = {p.name: p.read_bytes() for p in (disk / "bag").iterdir()}
        st = os.statvfs(disk)
        used = st.f_files - st.f_ffree  # then no inode more: the disk shrunk to what it holds
        subprocess.run(["mount", "-o", f"remount,nr_inodes={used}", str(disk)], check=True, timeout=10)
        st = os.statvfs(disk)
        assert st.f_ffree == 0 and st.f_bavail * st.f_frsize > 1 << 20  # bytes free, no inode
        r = _cli(
            [
                "world",
                "--out",
                disk / "bag",
                "--frames",
                "3",
                "--size",
                "32x24",
                "--workers",
                "1",
                "--no-progress",
                "--overwrite",
            ]
        )
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        lines = _error_lines(r.stderr)
        assert len(lines) == 1 and "bag" in lines[0], r.stderr
        assert {p.name: p.read_bytes() for p in (disk / "bag").iterdir()} == before
        assert sorted(os.listdir(disk)) == ["bag"]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10)


# ------------------------------------------------------------------------------------------------
# a sqlite3 bag still being recorded


def _live_recording(tmp_path):
    """A sqlite3 bag as ``ros2 bag record --storage-preset-profile resilient`` holds it while it
    records: WAL mode, the recorder's connection open, rows in the ``-wal``. Returns (the bag folder,
    a function that records ``n`` more 2 kB messages on the open connection, the connection)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    string = ts.types["std_msgs/msg/String"]
    src = tmp_path / "src"
    with Writer(src, version=8, storage_plugin=StoragePlugin.SQLITE3) as w:
        c = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        w.write(c, 100, ts.serialize_cdr(string(data="first"), "std_msgs/msg/String"))
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(next(src.glob("*.db3")), rec / "rec.db3")  # (no metadata.yaml yet: still recording)
    con = sqlite3.connect(rec / "rec.db3", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")  # rosbag2's resilient preset; autocheckpoint left at 1000 pages
    blob = ts.serialize_cdr(string(data="x" * 2000), "std_msgs/msg/String")
    stamp = [1000]

    def record(n):
        for _ in range(n):
            stamp[0] += 1
            con.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (1, ?, ?)", (stamp[0], blob))

    return rec, record, con


def _rows(db: Path) -> int:
    """SQLite's own reading of the live file (WAL replayed, as rosbag2's reader opens it)."""
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return c.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        c.close()


def test_a_sqlite3_bag_being_recorded_is_read_when_the_recorder_checkpoints_meanwhile(tmp_path, monkeypatch):
    """``gs-mapping info`` on a bag ``ros2 bag record`` (resilient preset) is still writing. The
    reader copies the ``.db3`` and then the ``-wal`` with two ``shutil.copyfile`` calls; the recorder
    goes on between them (here: 800 more messages, past SQLite's 1000-page automatic checkpoint,
    which folds the log into the file and then restarts the log from its start). The reference is
    SQLite itself on the live file: the recording is sound at every instant (it reads 1101 rows).
    So the reader must read at least the 301 messages there were when it started, none of them
    damaged; today the copy pairs the old file with the restarted log and the bag is refused as
    'truncated or corrupt? … database disk image is malformed'. (SQLite's backup API, or a
    read-only connection on the live file, takes a consistent snapshot.)"""
    from gs_mapping.bag import BagReader

    rec, record, con = _live_recording(tmp_path)
    try:
        record(300)  # ~3.7 MB of log: below the automatic checkpoint
        db = rec / "rec.db3"
        assert (rec / "rec.db3-wal").stat().st_size > 0
        at_start = _rows(db)
        assert at_start == 301

        real_copyfile = shutil.copyfile
        copies = []

        def copyfile(src, dst, *a, **kw):
            r = real_copyfile(src, dst, *a, **kw)
            copies.append(os.fspath(src))
            if len(copies) == 1 and os.fspath(src) == os.fspath(db):
                record(800)  # the recorder goes on while the reader copies
            return r

        monkeypatch.setattr(shutil, "copyfile", copyfile)
        with BagReader(rec) as bag:
            got = [m for m in bag.raw_messages(["/chatter"])]
        monkeypatch.undo()
        # (a reader that takes its snapshot another way, SQLite's backup API, copies nothing here:
        # no race is injected then, and the count below must hold all the same)
        assert at_start <= len(got) <= _rows(db)
    finally:
        con.close()


def test_a_sqlite3_bag_being_recorded_reads_what_sqlite_reads_when_it_holds_still(tmp_path):
    """The same live recording, read while the recorder pauses (no checkpoint in between): the
    count is SQLite's own count of the live file, and the recording's files are untouched (the
    reader writes nothing beside a bag that another process is recording)."""
    from gs_mapping.bag import BagReader

    rec, record, con = _live_recording(tmp_path)
    try:
        record(50)
        want = _rows(rec / "rec.db3")
        before = {p.name: p.read_bytes() for p in rec.iterdir()}
        with BagReader(rec) as bag:
            got = [m for m in bag.raw_messages(["/chatter"])]
        assert len(got) == want == 51
        assert {p.name: p.read_bytes() for p in rec.iterdir()} == before
    finally:
        con.close()


# ------------------------------------------------------------------------------------------------
# the fleet store out of descriptors

_OPEN_STORE_AT_THE_LIMIT = """
import errno, os, resource, sys
from gs_map_share.fleet_store import FleetStore, identity
from gs_map_share.quantize import QuantParams
ident = identity(1_000_000, "map", QuantParams.from_quality(3), 0)
n = len(os.listdir("/proc/self/fd")) - 1  # (the listing's own descriptor is closed again)
resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
try:  # the kernel's word on this process: one more descriptor is refused, and why
    os.close(os.open(sys.argv[1], os.O_RDONLY))
    print("KERNEL ok")
except OSError as exc:
    print("KERNEL", errno.errorcode[exc.errno])
try:
    FleetStore(sys.argv[1], ident).close()
    print("STORE opened")
except Exception as exc:
    print("STORE", type(exc).__name__, exc)
"""


def test_a_fleet_store_opened_with_no_descriptor_left_names_descriptors_not_permissions(tmp_path):
    """``gs-mapping run map_server_node`` under a service unit's ``LimitNOFILE=`` that its many
    subscriptions and sockets already use up: opening the store fails. The reference is the
    kernel's answer in the same process at the same instant (``os.open`` fails with EMFILE, 'Too
    many open files'). The one line must name that resource, not send the operator to check the
    store's permissions, its mount and free space (all fine here), and the store is left as it was."""
    from gs_map_share.fleet_store import FleetStore, identity
    from gs_map_share.quantize import QuantParams

    store = tmp_path / "fleet.sqlite3"
    FleetStore(str(store), identity(1_000_000, "map", QuantParams.from_quality(3), 0)).close()
    before = store.read_bytes()
    r = subprocess.run(
        [sys.executable, "-c", _OPEN_STORE_AT_THE_LIMIT, str(store)],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    lines = dict(ln.split(" ", 1) for ln in r.stdout.splitlines() if ln.startswith(("KERNEL", "STORE")))
    assert lines.get("KERNEL") == "EMFILE", r.stdout + r.stderr
    said = lines.get("STORE", "")
    assert said != "opened", said
    assert "Traceback" not in r.stderr, r.stderr
    assert "open files" in said.lower() or "descriptor" in said.lower(), said
    assert store.read_bytes() == before


def test_a_bag_whose_partial_folder_cannot_be_removed_names_it_in_the_one_line(tmp_path, monkeypatch):
    """Where the temp folder still cannot be removed, the error line says where it stays (it was
    ignored: every retry left another for good)."""
    import errno

    from gs_mapping import output_files
    from gs_mapping.bag import BagWriter
    from gs_mapping.errors import BagError

    def rmtree(path, *a, **kw):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(output_files.shutil, "rmtree", rmtree)
    with pytest.raises(BagError) as err, BagWriter(tmp_path / "bag"):
        raise OSError(errno.EMFILE, "Too many open files")
    (left,) = tmp_path.glob(".bag*.partial")
    assert str(tmp_path / "bag") in str(err.value) and f"{left} is left behind" in str(err.value)
    assert "too many open files" in str(err.value)


# ------------------------------------------------------------------------------------------------
# the free-memory check in a container (a cgroup memory limit: MemAvailable is the host's)


def _cgroup_tree(tmp_path, self_cgroup: str, files: dict[str, str]):
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "self_cgroup"
    proc.write_text(self_cgroup)
    return root, proc


def test_cgroup_v2_limit_less_usage_is_the_room_and_a_tighter_parent_wins(tmp_path):
    from gs_mapping.input_files import cgroup_memory_room

    mib = 1 << 20
    root, proc = _cgroup_tree(
        tmp_path,
        "0::/system.slice/map.service\n",
        {
            "system.slice/map.service/memory.max": f"{1024 * mib}\n",
            "system.slice/map.service/memory.current": f"{600 * mib}\n",
            "system.slice/map.service/memory.stat": f"anon {500 * mib}\ninactive_file {100 * mib}\n",
            "system.slice/memory.max": "max\n",
            "system.slice/memory.current": f"{5000 * mib}\n",
        },
    )
    assert cgroup_memory_room(root, proc) == 524 * mib  # 1024 - (600 - 100 reclaimable)
    (root / "system.slice/memory.max").write_text(f"{5200 * mib}\n")
    assert cgroup_memory_room(root, proc) == 200 * mib  # the slice's limit holds too
    (root / "system.slice/map.service/memory.max").write_text("max\n")
    (root / "system.slice/memory.max").write_text("max\n")
    assert cgroup_memory_room(root, proc) is None  # no limit anywhere


def test_cgroup_v1_limit_and_a_container_namespace_root(tmp_path):
    from gs_mapping.input_files import cgroup_memory_room

    mib = 1 << 20
    # a container's view (cgroup namespace): its /proc/self/cgroup names a path its mount lacks
    root, proc = _cgroup_tree(
        tmp_path,
        "12:pids:/docker/abc\n4:memory:/docker/abc\n0::/\n",
        {
            "memory/memory.limit_in_bytes": f"{512 * mib}\n",
            "memory/memory.usage_in_bytes": f"{400 * mib}\n",
        },
    )
    assert cgroup_memory_room(root, proc) == 112 * mib
    assert cgroup_memory_room(root, tmp_path / "no such file") is None


def test_check_room_refuses_what_the_cgroup_cannot_hold(tmp_path, monkeypatch):
    """MemAvailable (the host's) has room; the container's limit has not: one MapError line."""
    from gs_mapping import input_files
    from gs_mapping.errors import MapError

    root, proc = _cgroup_tree(
        tmp_path, "0::/\n", {"memory.max": f"{64 << 20}\n", "memory.current": f"{32 << 20}\n"}
    )
    real = input_files.cgroup_memory_room
    monkeypatch.setattr(input_files, "cgroup_memory_room", lambda: real(root, proc))
    monkeypatch.setattr(input_files, "_mem_available", lambda: 64 << 30)
    assert input_files.available_memory() == 32 << 20
    with pytest.raises(MapError, match="0.0 GiB of memory is available"):
        input_files.check_room(1_000_000, 3, "bomb.spz")


def test_this_machines_own_cgroup_parses():
    from gs_mapping.input_files import _mem_available, available_memory, cgroup_memory_room

    room = cgroup_memory_room()
    assert room is None or isinstance(room, int)
    if (free := _mem_available()) is not None:
        assert available_memory() <= free


def test_a_temp_folder_removed_meanwhile_is_not_reported_left_behind(tmp_path, monkeypatch):
    from gs_mapping import output_files

    d = tmp_path / ".x.partial"
    (d / "sub").mkdir(parents=True)
    real = shutil.rmtree

    def rmtree(path, *a, **kw):  # another cleaner got there first
        real(path)
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(output_files.shutil, "rmtree", rmtree)
    assert output_files.remove_temp(d) is None
