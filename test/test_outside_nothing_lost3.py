"""Outside check (third round) of issue 21 (nothing lost) and issue 19 (fleet sharing): classes of
failure the suite and the two earlier outside reviews do not bring.

- Output names the kernel takes but that are not UTF-8 (a file copied from a Latin-1 system: Linux
  names are bytes; Python hands them over as surrogate escapes).
- An output directory given as a symlink to a directory (``out -> /data/run7``): the up-front check
  and the final swap must agree, so that a refusal comes before the work, not after it.
- A full disk (``ulimit -f``) under ``hd-train``'s checkpoints and under the repaired copy that
  reading a recording cut short makes in TMPDIR.
- Checkpoints replacing the previous one without fsync (rename(2) is atomic, the data is not
  durable without fsync(2): the zero-length-file-after-power-loss case ext4 documents).
- ``map``'s rescue file after a full disk, named by the process id alone: the same pid again (a
  container's pid 1, a reboot) finds the earlier rescue there.
- The fleet server restarted on a backup copy of its store (docs/fleet.md says how to copy one):
  its receivers must never say they hold the server's sequence while holding another map.

References are independent of the code under test: the kernel's own acceptance of a name (open(2)
with bytes), the symlink's target as ``os.path.realpath`` reads it, the bytes of the previous
outputs, fsync calls observed on the inode that rename(2) installs, and the merge rule of
docs/fleet.md written out per Gaussian (test_guards_survivors7._rule) over the vehicle's own map.
Where the code is wrong the test is a strict xfail whose reason names the bug.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
LATIN1_NAME = b"caf\xe9"  # "café" as a Latin-1 system writes it: a legal Linux name, not UTF-8


def _cli(argv, timeout=120, **kw):
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", *argv],
        capture_output=True,
        timeout=timeout,
        env=kw.pop("env", ENV),
        **kw,
    )


def _error_lines(stderr: bytes | str) -> list[str]:
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    return [ln for ln in text.replace("\r", "\n").splitlines() if " error: " in ln]


def _file_limit(nbytes: int):
    """``ulimit -f`` as a shell sets it (Python itself ignores SIGXFSZ, so writes fail with EFBIG)."""

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return cap


@pytest.fixture(scope="module")
def small_ply(tmp_path_factory) -> Path:
    from synthetic_maps import synthetic_map

    from gs_mapping.ply import save_ply

    p = tmp_path_factory.mktemp("outside21c") / "in.ply"
    save_ply(synthetic_map(300, 0, seed=5), p)
    return p


# ------------------------------------------------------------------------------------------------
# output names that are bytes, not UTF-8


def test_an_output_name_that_is_not_utf8_is_written_like_any_other(small_ply, tmp_path):
    """Linux file names are bytes; the kernel takes b'caf\\xe9.ply' (checked here with open(2)),
    and Python passes such an argv entry on as a surrogate escape. ``convert`` to that name must
    write the same bytes it writes under an ASCII name, with no temp file left — today it is a
    traceback (exit 1)."""
    d = os.fsencode(tmp_path)
    with open(d + b"/probe-" + LATIN1_NAME, "wb") as fh:  # the OS's own answer: the name is legal
        fh.write(b"x")
    os.unlink(d + b"/probe-" + LATIN1_NAME)
    ref = _cli(["convert", str(small_ply), str(tmp_path / "ascii.ply")])
    assert ref.returncode == 0, ref.stderr[-400:]
    r = _cli(["convert", str(small_ply), d + b"/" + LATIN1_NAME + b".ply"])
    assert b"Traceback" not in r.stderr, r.stderr[-600:]
    assert r.returncode == 0, r.stderr[-400:]
    with open(d + b"/" + LATIN1_NAME + b".ply", "rb") as fh:
        assert fh.read() == (tmp_path / "ascii.ply").read_bytes()
    assert sorted(os.listdir(d)) == sorted([b"ascii.ply", LATIN1_NAME + b".ply"])  # no temp left


def test_a_bag_directory_name_that_is_not_utf8_is_written(tmp_path):
    """The same name as a rosbag2 directory (``world --out``): the kernel takes it, so the bag is
    written under it — today a one-line refusal quoting the UnicodeEncodeError, of a name that is
    legal. The reference is the same command under an ASCII name (same seed: the same message
    count in metadata.yaml)."""
    d = os.fsencode(tmp_path)
    argv = ["world", "--frames", "2", "--size", "64x32", "--no-progress", "--workers", "1"]
    ref = _cli([*argv, "--out", str(tmp_path / "ascii")])
    assert ref.returncode == 0, ref.stderr[-400:]
    r = _cli([*argv, "--out", d + b"/" + LATIN1_NAME])
    assert r.returncode == 0, r.stderr[-400:]
    with open(d + b"/" + LATIN1_NAME + b"/metadata.yaml", "rb") as fh:
        got = yaml.safe_load(fh)["rosbag2_bagfile_information"]
    want = yaml.safe_load((tmp_path / "ascii" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert got["message_count"] == want["message_count"] > 0
    assert sorted(os.listdir(d + b"/" + LATIN1_NAME)) == [LATIN1_NAME + b".mcap", b"metadata.yaml"]


# ------------------------------------------------------------------------------------------------
# an output directory that is a symlink to a directory


def test_a_symlinked_output_directory_is_refused_before_the_work_or_replaced(tmp_path):
    """``out -> real/`` (a run folder on a bigger disk, linked into the project): the outcome rule
    is a correct result or one line *before the work*. output_directory's block is the work (a map
    run, a bag being written): if it ran, the result must be installed — the new files where the
    link leads (or the link replaced, as documented) — never an error after it."""
    from gs_mapping.errors import OutputError
    from gs_mapping.output_files import output_directory

    real = tmp_path / "real"
    real.mkdir()
    (real / "map.ply").write_text("old")
    link = tmp_path / "out"
    link.symlink_to(real)
    ran = False
    try:
        with output_directory(link, overwrite=True, allowed=["map.ply"]) as tmp:
            ran = True
            (tmp / "map.ply").write_text("new")
    except OutputError as exc:
        assert not ran, f"refused after the work: {exc}"
        assert (real / "map.ply").read_text() == "old"  # refused before: nothing changed
        return
    assert (Path(os.path.realpath(link)) / "map.ply").read_text() == "new"


# ------------------------------------------------------------------------------------------------
# a full disk under hd-train's checkpoints


def test_hd_train_on_a_full_disk_is_one_line_and_keeps_the_previous_run(tmp_path):
    """``ulimit -f 4096`` (4 MB; last.pt is ~7 MB): ``hd-train --overwrite`` over a finished run
    must end with exit status 2 and one line naming the file and the reason, and the previous
    run's files must still be there byte for byte (the staging rule of --overwrite)."""
    pytest.importorskip("torch")
    out = tmp_path / "run"
    argv = ["hd-train", "--out", str(out), "--frames", "1", "--batch-size", "1", "--eval-every", "0"]
    argv += ["--threads", "1", "--no-progress"]
    first = _cli([*argv, "--steps", "1"])
    assert first.returncode == 0, first.stderr[-400:]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(before["last.pt"]) > 4 << 20  # (the limit below is hit by the checkpoint)
    r = _cli([*argv, "--steps", "2", "--overwrite"], preexec_fn=_file_limit(4 << 20))
    assert b"Traceback" not in r.stderr, r.stderr[-800:]
    lines = _error_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1 and str(out) in lines[0], r.stderr[-400:]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_checkpoint_is_fsynced_before_it_replaces_the_previous_one(tmp_path, monkeypatch):
    """rename(2) makes the switch atomic, not the new file's data durable: without fsync(2) of the
    temp file first, a power cut can leave last.pt renamed but empty (the ext4 'zero-length file'
    case; output_files fsyncs for exactly this). Watched here: the inode that os.replace installs
    must have been fsynced before the replace."""
    torch = pytest.importorskip("torch")
    from gsmap_hd import checkpoint as ckpt
    from gsmap_hd.model_config import TrainConfig

    synced: set[tuple[int, int]] = set()
    installed: list[bool] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))
        return real_fsync(fd)

    def replace(src, dst, *a, **kw):
        st = os.stat(src)
        installed.append((st.st_dev, st.st_ino) in synced)
        return real_replace(src, dst, *a, **kw)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 2)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    (tmp_path / "last.pt").write_bytes(b"the previous checkpoint")
    ckpt.save(tmp_path / "last.pt", Tiny(), TrainConfig(), step=3)
    assert installed == [True], "checkpoint renamed over the previous one without fsync"


# ------------------------------------------------------------------------------------------------
# a recording cut short, read with no room for its repaired copy


@pytest.fixture(scope="module")
def cut_bag(tmp_path_factory) -> Path:
    """A world bag (~2.5 MB) whose MCAP lost its last 3000 bytes (``ros2 bag record`` killed)."""
    d = tmp_path_factory.mktemp("outside21c_cut")
    r = _cli(["world", "--out", str(d / "bag"), "--frames", "6", "--size", "320x180", "--no-progress"])
    assert r.returncode == 0, r.stderr[-400:]
    (f,) = (d / "bag").glob("*.mcap")
    os.truncate(f, f.stat().st_size - 3000)
    return d / "bag"


def test_a_cut_recording_with_no_room_for_its_copy_is_not_called_damaged(cut_bag, tmp_path):
    """Read without a limit, the cut bag opens (the reference: its messages read by scanning).
    Under ``ulimit -f 256`` the repaired copy cannot be written: one line, exit 2, the bag
    untouched, TMPDIR left empty — and the line must not call a good recording damaged (a user
    would throw it away); it says the copy could not be written."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = dict(ENV, TMPDIR=str(tmpdir))
    ok = _cli(["info", str(cut_bag)], env=env)
    assert ok.returncode == 0 and b"recording cut short" in ok.stderr, ok.stderr[-400:]
    before = {p.name: p.read_bytes() for p in cut_bag.iterdir()}
    r = _cli(["info", str(cut_bag)], env=env, preexec_fn=_file_limit(256 << 10))
    lines = _error_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-400:]
    assert {p.name: p.read_bytes() for p in cut_bag.iterdir()} == before
    assert list(tmpdir.iterdir()) == []
    assert "damaged" not in lines[0], lines[0]


# ------------------------------------------------------------------------------------------------
# map's rescue after a full disk: the same process id again


def test_maps_rescue_is_not_refused_by_an_earlier_rescue_of_the_same_pid(tmp_path, monkeypatch):
    """README: 'a full disk at the end of map saves the map to the temp directory and says where'.
    In a container every run is pid 1 (and pids repeat after a reboot), so the earlier run's rescue
    is there under the name this run picks; this run's map must still be saved (under another
    name), and the earlier rescue left as it was."""
    import tempfile

    from synthetic_maps import synthetic_map

    from gs_mapping.mapping.run import _rescue_map

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    earlier = tmp_path / f"gs-mapping-rescued-map-{os.getpid()}.ply"
    earlier.write_bytes(b"an earlier run's rescued map")
    said = _rescue_map(synthetic_map(50, 0, seed=1))
    assert earlier.read_bytes() == b"an earlier run's rescued map"
    assert "saved to" in said and "could not" not in said, said
    assert len(list(tmp_path.iterdir())) == 2


# ------------------------------------------------------------------------------------------------
# the fleet server restarted on a backup copy of its store: what its receivers hold


def test_receivers_never_claim_the_servers_sequence_with_another_map_after_a_store_restore(tmp_path):
    """docs/fleet.md: the store may be copied (file + -wal, or with the server stopped); a
    receiver 'replaces its state by any newer snapshot' and 'rebuilds exactly' the sender's map.
    The server runs, its store is copied, it goes on (three more global deltas, a receiver
    follows), then it is restarted on the copy (a disk replaced, the backup restored) and the
    vehicle goes on (its periodic snapshot, then deltas). Whenever the receiver's sequence equals
    the server's, their maps must be equal; at the end both equal docs/fleet.md's rule over the
    vehicle's own map (built here)."""
    from test_guards_survivors7 import _rule
    from test_outside_fleet import _send, _server, _snap, _stream

    from gs_map_share.receiver import MapStore
    from gs_mapping.runtime.replay import ReplayBus

    store = tmp_path / "fleet.sqlite3"
    rx = MapStore()

    def bus_followed() -> ReplayBus:
        bus = ReplayBus()
        for topic in ("/map_server_node/map_snapshot", "/map_server_node/map_delta"):
            bus.subscribe(topic, lambda m: rx.receive(bytes(m.data)))
        return bus

    stream, states = _stream(1, 8, seed=3, origin=(0.0, 0.0, 0.0), first_seq=100)
    bus = bus_followed()
    server = _server(bus, store, global_period_s=0.0)
    _send(bus, "vehicle1", stream[0])
    server.close()  # stopped: the file alone holds everything (docs/fleet.md's way to copy it)
    shutil.copy(store, tmp_path / "backup.sqlite3")
    bus = bus_followed()
    server = _server(bus, store, global_period_s=0.0)
    for c in stream[1:4]:
        _send(bus, "vehicle1", c)
    assert rx.seq == server.merge.global_seq and rx.state.equals(server.merge.global_map)
    server.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "backup.sqlite3", store)  # the backup restored

    bus = bus_followed()
    server = _server(bus, store, global_period_s=0.0)
    sends = [_snap(states[104], 1, 104), *stream[5:]]  # the vehicle's periodic snapshot, then deltas
    for k, c in enumerate(sends):
        _send(bus, "vehicle1", c)
        server.publish_snapshot()
        bus.advance(bus.now_ns + 1000)
        if rx.seq == server.merge.global_seq:
            assert rx.state.equals(server.merge.global_map), f"after container {k}: same seq, other map"
    assert server.merge.global_map.equals(_rule({1: states[108]}))
    assert rx.seq == server.merge.global_seq and rx.state.equals(server.merge.global_map)
    server.close()


# ------------------------------------------------------------------------------------------------
# ~/save naming a file that is not a map: the node's own parameter file


def test_save_topic_never_replaces_the_nodes_own_parameter_file(tmp_path):
    """Issue 21: an existing output is replaced only when asked, an input never, even then. A
    ``~/save`` path is free text from the network (a typo: ``params.yaml`` for ``params.ply``);
    naming the very parameter file the node was started with, or any file that is not a PLY map
    (its first bytes are not PLY's ``ply`` magic line), it must be refused in one line, counted
    in ~/save's rejections, the file left byte for byte and the node's map kept."""
    from synthetic_maps import synthetic_map

    from gs_mapping.messages import string_message
    from gs_mapping.nodes.mapper_node import MapperNode
    from gs_mapping.ply import save_ply
    from gs_mapping.runtime.replay import ReplayBus

    start = tmp_path / "start.ply"
    save_ply(synthetic_map(60, 0, seed=2), start)
    params = tmp_path / "params.yaml"
    params.write_text(
        f'/**:\n  ros__parameters:\n    mapper:\n      device: cpu\n    mapper_node:\n      load_path: "{start}"\n'
    )
    before = params.read_bytes()
    assert yaml.safe_load(before)["/**"]["ros__parameters"]["mapper_node"]["load_path"] == str(start)
    bus = ReplayBus()
    node = MapperNode(bus.context("mapper_node"), MapperNode.load_config(str(params)))
    try:
        assert len(node.mapper.gmap) == 60
        bus.inject("/mapper_node/save", string_message(str(params), bus.factory), 1)
        assert params.read_bytes() == before, params.read_bytes()[:40]
        assert node.diag.summary()["rejected"].get("~/save", 0) == 1
        assert len(node.mapper.gmap) == 60
    finally:
        node.close()


# ------------------------------------------------------------------------------------------------
# the fleet over real Zenoh: a vehicle and the server drop out, the vehicle comes back first with an
# older map, the server after it, a receiver joins late


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_zenoh_vehicle_back_with_an_older_map_before_the_server_a_late_receiver_gets_the_rule(tmp_path):
    """Real router and map server processes, vehicle and receiver sessions here (mapper_node's QoS:
    deltas reliable volatile, snapshots latched). vehicle1 sends snapshot 100 + deltas 101, 102
    (acknowledged); it drops out, and the server is killed with SIGKILL. vehicle1 comes back (a
    restarted mapper loading an older saved map: its map at 101, numbered from the wall clock, 5000
    here) and latches its snapshot while no server runs; the server restarts on its store and must
    take that snapshot from the vehicle's cache (docs/fleet.md: 'the server's latched subscription
    fetches [it] on restart'), then the vehicle's next delta. A receiver joining last must hold
    docs/fleet.md's rule over the vehicle's own final map (built here), at the server's sequence."""
    pytest.importorskip("zenoh")
    import json
    import signal
    import time

    import numpy as np
    from test_guards_survivors7 import _rule
    from test_outside_fleet import _delta, _snap, _vmap

    from gs_map_share.receiver import MapStore
    from gs_mapping.messages import bytes_to_uint8_multiarray
    from gs_mapping.nodes.context import LATCHED_QOS, QoS
    from gs_mapping.runtime.zenoh_runtime import ZenohContext

    domain, endpoint = 157, f"tcp/127.0.0.1:{_free_port()}"
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(
        "/**:\n  ros__parameters:\n    map_server_node:\n"
        f"      store_path: {tmp_path / 'fleet.sqlite3'}\n      snapshot_period_s: 1.0\n"
        "      vehicles: [vehicle1]\n"
    )
    log = open(tmp_path / "stderr.log", "w")  # (closed in finally)
    procs: list[subprocess.Popen] = []
    ctxs: list = []

    def start(*argv):
        p = subprocess.Popen(
            [sys.executable, "-m", "gs_mapping", *argv],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=ENV,
        )
        procs.append(p)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            line = p.stdout.readline()
            if "ready" in line:
                return p
            if not line and p.poll() is not None:
                break
        raise AssertionError(f"{argv[0]} did not start (see {log.name})")

    server_argv = ["run", "map_server_node", "--transport", "zenoh", "--connect", endpoint]
    server_argv += ["--domain-id", str(domain), "--config", str(cfg)]
    full = _vmap(60, seed=3)
    states = {s: full.take(np.arange(20 + 10 * k)) for k, s in enumerate((100, 101, 102))}
    older, newer = states[101], full.take(np.arange(35))
    try:
        start("router", "--listen", endpoint)
        server = start(*server_argv)
        obs = ZenohContext("observer", "", domain, connect=[endpoint])
        ctxs.append(obs)
        acks: list[dict] = []
        obs.create_subscription(
            "/map_server_node/ack", "std_msgs/msg/String", QoS(reliable=True, depth=1000),
            lambda m: acks.append(json.loads(m.data)),
        )  # fmt: skip

        def acked(seq: int) -> None:
            obs.spin(until=lambda: any(a["seq"] == seq for a in acks), timeout_s=30)
            assert any(a["seq"] == seq for a in acks), (seq, acks)

        def vehicle():
            v = ZenohContext("mapper_node", "vehicle1", domain, connect=[endpoint])
            ctxs.append(v)
            dq = QoS(reliable=True, depth=20)
            return (
                v,
                v.create_publisher("~/map_delta", "std_msgs/msg/UInt8MultiArray", dq),
                v.create_publisher("~/map_snapshot", "std_msgs/msg/UInt8MultiArray", LATCHED_QOS),
            )

        v, pd, ps = vehicle()
        v.spin(until=lambda: pd.subscription_count() > 0, timeout_s=30)
        ps.publish(bytes_to_uint8_multiarray(_snap(states[100], 1, 100), v.factory))
        for s in (101, 102):
            pd.publish(bytes_to_uint8_multiarray(_delta(states[s - 1], states[s], 1, s), v.factory))
        acked(102)
        v.close()  # the vehicle drops out ...
        server.send_signal(signal.SIGKILL)  # ... and so does the server
        server.wait()
        v, pd, ps = vehicle()  # back, with its older saved map, while no server runs
        ps.publish(bytes_to_uint8_multiarray(_snap(older, 1, 5000), v.factory))
        start(*server_argv)
        acked(5000)  # fetched from the vehicle's latched cache
        v.spin(until=lambda: pd.subscription_count() > 0, timeout_s=30)
        pd.publish(bytes_to_uint8_multiarray(_delta(older, newer, 1, 5001), v.factory))
        acked(5001)
        gseq = max(a["global_seq"] for a in acks if a["seq"] == 5001)
        rxc = ZenohContext("map_receiver_node", "rx", domain, connect=[endpoint])
        ctxs.append(rxc)
        rx = MapStore()
        for topic, qos in (
            ("/map_server_node/map_snapshot", LATCHED_QOS),
            ("/map_server_node/map_delta", QoS(reliable=True, depth=100)),
        ):
            rxc.create_subscription(
                topic, "std_msgs/msg/UInt8MultiArray", qos, lambda m: rx.receive(bytes(m.data))
            )
        rxc.spin(until=lambda: rx.ready and rx.seq >= gseq, timeout_s=30)
        assert rx.ready and rx.seq == gseq, (rx.seq, gseq, dict(rx.stats))
        assert rx.state.equals(_rule({1: newer}))
    finally:
        for c in ctxs:
            c.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
        log.close()


# ------------------------------------------------------------------------------------------------
# hd-train killed between a log line and the next checkpoint, then --resume


def test_hd_train_resumed_after_a_kill_logs_each_step_once(tmp_path):
    """A run is killed with SIGKILL (OOM killer, pre-emption) after logging steps its last
    checkpoint does not hold; ``--resume`` continues from last.pt's step (read here with torch.load
    itself). Issue 21: never a mix of an interrupted run and the new one. metrics.jsonl must then
    be one line per step, steps increasing, 1 … the final step — not the lost steps' lines
    followed by the same steps again."""
    torch = pytest.importorskip("torch")
    import json
    import signal
    import time

    out = tmp_path / "run"
    cfg = tmp_path / "train.yaml"
    rare = tmp_path / "rare.yaml"
    yaml_text = "/**:\n  ros__parameters:\n    hd_train:\n      log_every: 1\n      checkpoint_every: {}\n"
    cfg.write_text(yaml_text.format(2))
    rare.write_text(yaml_text.format(1000))
    base = ["hd-train", "--out", str(out), "--frames", "1", "--batch-size", "1", "--eval-every", "0"]
    base += ["--threads", "1", "--no-progress"]
    first = _cli([*base, "--config", str(cfg), "--steps", "2"])
    assert first.returncode == 0, first.stderr[-400:]
    log = out / "metrics.jsonl"
    p = subprocess.Popen(
        [sys.executable, "-m", "gs_mapping", *base, "--config", str(rare), "--steps", "400", "--resume"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end and p.poll() is None and log.read_text().count("\n") < 5:
            time.sleep(0.005)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert log.read_text().count("\n") >= 5  # steps 3, 4, … logged; last.pt still at step 2
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=True)["step"] == 2
    again = _cli([*base, "--config", str(cfg), "--steps", "6", "--resume"])
    assert again.returncode == 0, again.stderr[-400:]
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6], steps


# ------------------------------------------------------------------------------------------------
# the fleet server fed every truncation of a vehicle's snapshot and delta before the real ones


def test_every_truncation_of_a_vehicles_containers_arriving_first_is_refused_and_acknowledges_nothing(
    tmp_path,
):
    """A link that cuts messages (a vehicle's process killed mid-send, a broken bridge): every prefix
    of vehicle1's snapshot and first delta arrives on its namespace before the genuine containers.
    docs/fleet.md: a corrupt container is counted on its namespace, never applied, never
    acknowledged, and (as at a receiver) never marks its sequence seen. The genuine stream then
    applies whole: the vehicle's map is its own (built here), the global map docs/fleet.md's rule
    over it, each genuine sequence acknowledged once and every prefix counted."""
    import json

    from test_guards_survivors7 import _rule
    from test_outside_fleet import _acks, _send, _server, _stream

    from gs_mapping.runtime.replay import ReplayBus

    stream, states = _stream(1, 3, seed=3, origin=(0.0, 0.0, 0.0))
    cuts = [c[:n] for c in stream[:2] for n in range(1, len(c))]
    bus = ReplayBus()
    acks = _acks(bus)
    server = _server(bus, tmp_path / "fleet.sqlite3", global_period_s=0.0)
    try:
        for data in [*cuts, *stream]:
            _send(bus, "vehicle1", data)
        v = server.merge.vehicles[1]
        assert v.seq == 103 and v.state.equals(states[103])
        assert server.merge.global_map.equals(_rule({1: states[103]}))
        assert sorted(a["seq"] for a in acks) == [100, 101, 102, 103]
        server.on_diagnostics_timer()
        info = json.loads(server.diag.values["vehicle vehicle1"])
        assert info["rejected"] == len(cuts) and info["replayed"] == 0, info
    finally:
        server.close()


# ------------------------------------------------------------------------------------------------
# a command that fails leaves no folder behind


@pytest.mark.parametrize("command", ["convert", "encode", "export"])
def test_a_command_failing_on_its_input_leaves_no_folder_it_created(tmp_path, command):
    """README: bad input → one line, exit 2, nothing written. An output under folders that do not
    exist yet (``new/deep/out``) and an input that is not a PLY: the answer is one line naming the
    input, and the tree is as it was before (listed with os.walk)."""
    bad = tmp_path / "bad.ply"
    bad.write_text("not a ply\n")
    before = sorted(os.walk(tmp_path))
    out = tmp_path / "new" / "deep" / {"convert": "o.spz", "encode": "o.gsd", "export": "o.spz"}[command]
    r = _cli([command, str(bad), str(out)])
    lines = _error_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1 and "bad.ply" in lines[0], r.stderr[-400:]
    assert sorted(os.walk(tmp_path)) == before, sorted(os.walk(tmp_path))
