"""Outside check (session 37) of issue 21 (nothing lost): a disk that really fills up (a tmpfs, as
root) under every command that writes, the fleet store's SQLite commit on that disk, and `map`
stopped by the signals a service manager or a dropped ssh link sends rather than by Ctrl-C.

References are independent of the code under test: the kernel's own ENOSPC (a tmpfs with a few KiB
left), each command's output on a roomy disk (its size says whether it can fit), the previous
output's bytes, SQLite's own reading of the store after a restart, and plyfile's reading of a
rescued map.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_cases import make_assets
from hostile_fs import _mount, _umount

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
FREE = 4096  # bytes left on the full disk: a page of the tmpfs


def _cli(argv, timeout=300, **kw):
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kw.pop("env", ENV),
        **kw,
    )


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _fill(disk: Path, leave: int) -> None:
    """Take all of ``disk`` but ``leave`` bytes (a tmpfs counts in pages)."""
    st = os.statvfs(disk)
    with open(disk / ".filler", "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))


@pytest.fixture(scope="module")
def tiny_disk(tmp_path_factory):
    """A function mounting a fresh tmpfs of ``size`` under a folder of its own; all unmounted at the end."""
    base = tmp_path_factory.mktemp("disks")
    made = []

    def mount(size: str) -> Path:
        where = base / f"d{len(made)}"
        if not _mount(where, f"size={size},mode=0755"):
            pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): no real full disk")
        made.append(where)
        return where

    yield mount
    for where in made:
        _umount(where)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """make_assets' inputs and a 8,000-Gaussian map (PLY ~0.5 MB, its snapshot and the delta to a
    moved copy well over a page), its snapshot, the moved copy."""
    from synthetic_maps import synthetic_map

    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams
    from gs_mapping.ply import save_ply

    d = tmp_path_factory.mktemp("inputs")
    a = make_assets(d)
    big = synthetic_map(8000, 1, seed=5)
    save_ply(big, d / "big.ply", keep_ids=True)
    moved = big.copy()
    moved.update(moved.ids, means=moved.means + 0.05)
    save_ply(moved, d / "big2.ply", keep_ids=True)
    (d / "big.gsd").write_bytes(MapSender.from_map(big, QuantParams.from_quality(2), map_id=1).snapshot())
    return {**a, "big": d / "big.ply", "big2": d / "big2.ply", "bigsnap": d / "big.gsd"}


def _writers(i):
    """(argv with OUT for the output, output name, whether the output is a folder): every command
    that writes a file or a bag folder, on inputs large enough that most outputs exceed a page."""
    return [
        (["encode", i["big"], "OUT"], "x.gsd"),
        (["decode", i["bigsnap"], "OUT"], "x.ply"),
        (["export", i["big"], "OUT"], "x.spz"),
        (["convert", i["big"], "OUT"], "x.ply"),
        (["convert", i["big"], "OUT"], "x.splat"),
        (["diff", i["big"], i["big2"], "OUT"], "x.gsd"),
        (["apply", i["bigsnap"], "OUT"], "x.ply"),
        (["hd-eval", i["json"], "--out", "OUT"], "x.json"),
        (["replay", i["mcap"], "--out", "OUT", "--nodes", "map_receiver_node"], "rb"),
        (["world", "--out", "OUT", "--frames", "3", "--size", "160x90", "--workers", "1"], "w"),
    ]


def test_every_writer_on_a_really_full_disk_keeps_the_previous_output_whole(inputs, tiny_disk):
    """Issue 21: a full disk mid-write is one line (exit 2) naming the output and the cause, the
    previous output stays byte for byte, and no temp is left beside it. The suite's own full-disk
    test runs `convert` and `decode`; here every writer, `replay` and `world` with a previous bag
    of their own to lose. The reference for "could not fit" is the same command's earlier output on
    that disk before it filled: larger than what is left must fail; smaller may succeed (then it is
    the new output, whole)."""
    pytest.importorskip("torch")  # (world renders with it)
    outcomes = {}
    for k, (argv, name) in enumerate(_writers(inputs)):
        # an earlier run on a disk with room: the output to keep, and how much the command needs
        disk = tiny_disk("16m")
        out = disk / name
        argv = [out if a == "OUT" else a for a in argv]
        prev = _cli(argv)
        assert prev.returncode == 0, (argv, prev.stderr[-800:])
        need = sum(len(b) for b in _tree(out).values()) if out.is_dir() else out.stat().st_size
        before = _tree(disk)
        _fill(disk, FREE)
        p = _cli(argv + ["--overwrite"])
        outcomes[f"{k}:{argv[0]}"] = p.returncode
        assert "Traceback" not in p.stderr, (argv, p.stderr[-2000:])
        left = sorted(set(x.name for x in disk.iterdir()) - {".filler"})
        assert left == [name], (argv, left)  # no hidden temp file or folder beside it
        if p.returncode == 0:  # it fitted: the new output, whole
            assert need <= FREE or out.is_dir(), (argv, need)
            continue
        assert p.returncode == 2, (argv, p.returncode, p.stderr[-800:])
        errors = [ln for ln in p.stderr.splitlines() if ln.startswith("gs-mapping")]
        assert len(errors) == 1 and str(out) in errors[0], (argv, p.stderr[-800:])
        assert errors[0].endswith(": no space left on device"), errors  # (the words of every writer)
        assert _tree(disk) | {".filler": b""} == before | {".filler": b""}, argv  # the previous output
    # (hd-eval's small JSON and the receiver's small bag may fit in the page left)
    assert list(outcomes.values()).count(2) >= 8, outcomes


def test_a_fleet_store_filling_its_disk_stops_ingest_and_keeps_every_acknowledged_container(tiny_disk):
    """docs/fleet.md: a container is acknowledged only once the store holds it, and a storage
    failure while running stops ingest until a restart, which resumes from the store. The suite
    makes the store fail by deleting it; here its disk really fills (SQLite's own SQLITE_FULL from
    a tmpfs with a page left): the node says so in one line naming the store and the cause, no
    exception reaches the subscriber, and a server restarted on the store once room is made holds
    every container it acknowledged, and no later one."""
    from test_guards_survivors7 import _send, _server, _stream

    from gs_mapping.runtime.replay import ReplayBus

    disk = tiny_disk("400k")
    store = disk / "fleet.sqlite3"
    bus = ReplayBus()
    acks: list[dict] = []
    bus.subscribe("/map_server_node/ack", lambda m: acks.append(json.loads(m.data)))
    server = _server(bus, store, global_period_s=0.0)
    _fill(disk, 40 * 1024)  # room for the first containers' pages, not for all
    stream, _ = _stream(1, 38)
    for data in stream:
        _send(bus, "vehicle1", data)  # (an exception out of the node's callback fails here)
        if server.storage_failed:
            break
    assert server.storage_failed, "the disk never filled"
    assert str(store) in server.storage_failed and "full" in server.storage_failed, server.storage_failed
    assert "\n" not in server.storage_failed
    assert acks, "nothing was acknowledged before the disk filled"
    server.close()
    os.unlink(disk / ".filler")
    restarted = _server(ReplayBus(), store, global_period_s=0.0)
    try:
        assert restarted.merge.vehicles[1].seq == acks[-1]["seq"]  # every acknowledged one, no later
    finally:
        restarted.close()


# -- map stopped by SIGTERM or a hang-up -----------------------------------------------------------

# the mapper cheap and slow enough to be stopped mid-run: a keyframe a frame, 3 steps each
SLOW = """
/**:
  ros__parameters:
    mapper:
      device: cpu
      max_gaussians: 2000
      keyframe: {min_translation_m: 100.0, min_rotation_deg: 180.0, min_overlap: 0.0, max_gap: 1}
      seeding: {stride: 8}
      optim: {iterations: 3, first_iterations: 3, refine_iterations: 0, refine_keep: 1, random_history: 0, window: 1}
"""


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    """A 40-frame drive of the procedural world with small images, and the mapper's slow config."""
    pytest.importorskip("torch")
    pytest.importorskip("plyfile")  # (the tests' reader of the rescued map: skip before the drive)
    d = tmp_path_factory.mktemp("drive")
    p = _cli(
        ["world", "--out", d / "bag", "--frames", "40", "--size", "160x90", "--workers", "1", "--no-progress"]
    )
    assert p.returncode == 0, p.stderr[-2000:]
    (d / "slow.yaml").write_text(SLOW)
    return d


@pytest.mark.parametrize(
    "sig, rc, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGHUP, 129, "hangup")]
)
def test_map_stopped_by_sigterm_or_a_hangup_keeps_the_map_made_so_far_as_ctrl_c_does(
    drive, tmp_path, sig, rc, word
):
    """README: SIGTERM unwinds a command as Ctrl-C does; `map` stopped by Ctrl-C saves the map made
    so far to the temp directory and says where (the suite's test of that sends SIGINT, and is
    marked slow). systemctl/docker stop send SIGTERM, a dropped ssh link SIGHUP. Stopped a fifth of
    the way in, with an earlier run's OUT in place and --overwrite: exit 128 + the signal, the last
    line the signal's word, the rescued PLY named on stderr holds the Gaussians the line counts
    (plyfile reads it), and OUT is the earlier run's, byte for byte, nothing beside it."""
    plyfile = pytest.importorskip("plyfile")
    out = tmp_path / "out"
    (tmp_path / "tmpdir").mkdir()
    out.mkdir()
    (out / "map.ply").write_bytes(b"an earlier run's map")
    before = _tree(out)
    env = dict(ENV, GS_MAPPING_PROGRESS_INTERVAL="0", TMPDIR=str(tmp_path / "tmpdir"))
    p = subprocess.Popen(
        [sys.executable, "-m", "gs_mapping", "map", str(drive / "bag"), "--out", str(out)]
        + ["--config", str(drive / "slow.yaml"), "--overwrite"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        seen = []
        while True:
            line = p.stderr.readline()
            seen.append(line)
            done = re.match(r"mapping: (\d+)/(\d+) ", line)
            if not line or (done and 5 * int(done[1]) >= int(done[2])):
                break
        assert p.poll() is None and line, f"the run ended before it could be stopped: {seen[-3:]}"
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == rc, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == f"gs-mapping map: {word}", err[-2000:]
    m = re.search(  # (the rescue line names the stop as the last line does)
        rf": {word}: the map made so far \(\d+ keyframes, (\d+) Gaussians\) was saved to (\S+\.ply) instead",
        err,
    )
    assert m, err[-2000:]
    rescued = Path(m[2])
    assert rescued.parent == tmp_path / "tmpdir"
    assert plyfile.PlyData.read(str(rescued))["vertex"].count == int(m[1]) > 0
    assert _tree(out) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out", "tmpdir"]  # no hidden partial folder
