"""Hostile outside review (host5) of ea8c82c (merged as 118ca44), each check against a thing outside
the code: the kernel's own directory listing and process states, real OS processes killed with
SIGKILL, OpenCV's libtiff and TIFFs written byte by byte from the TIFF 6.0 specification, hand
counts of held-out frames, the process's real stderr.

* output_files: every temp beside an output is made by ``writing_temp`` holding an flock while it is
  written; ``sweep_stale_temps`` removes those no process holds. Odd names (Windows-style, glob
  characters, non-UTF-8, 240 bytes, in the working directory), a killed writer left a zombie, its
  exec'd child still running, a stopped writer, a writer in another mount namespace, user files
  near the temps' names, symlinks, FIFOs, other users' folders, ``world`` killed at random moments;
  ``world``'s forked renderers and ``replay``'s scratch folder after a SIGKILL.
* ``map --holdout-views N``: which held-out frames are evaluated, counted by hand.
* ``/theora`` refused in one line: by type under a plain name, in ``map`` and ``replay``.
* TIFF colour through Pillow's libtiff reader: tiled, planar, big-endian, LZW / deflate / PackBits,
  threads decoding at once, 32-bit float depth, a file cut short.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pytest
from writer_runs import start_until_partial

from gs_mapping.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))


# ---------------------------------------------------------------------------------------------
# output_files: temps beside an output, swept when no process holds them
# ---------------------------------------------------------------------------------------------

# A writer of one bag (BagWriter), one file (open_output) and one folder (output_directory) for each
# base name in argv[1] (hex of the name's bytes), relative to its working directory; argv[2] "child":
# it also starts `sleep` (fork + exec) once they exist. It prints "writing PID" (the child's, or 0),
# then waits for a line on stdin before it finishes them.
_WRITER = textwrap.dedent(
    """
    import contextlib, json, os, subprocess, sys
    from gs_mapping.bag import BagWriter
    from gs_mapping.messages.std import string_message
    from gs_mapping.output_files import open_output, output_directory
    bases = [os.fsdecode(bytes.fromhex(h)) for h in json.loads(sys.argv[1])]
    with contextlib.ExitStack() as stack:
        for base in bases:
            bag = stack.enter_context(BagWriter(base, overwrite=True))
            bag.add_topic("/note", "std_msgs/msg/String")
            bag.write("/note", 1, string_message("bag " + ascii(base)))
            stack.enter_context(open_output(base + ".ply", "w", overwrite=True)).write("file " + ascii(base))
            folder = stack.enter_context(output_directory(base + ".d", overwrite=True))
            (folder / "note.txt").write_text("folder " + ascii(base))
        child = subprocess.Popen(["sleep", "120"]) if sys.argv[2] == "child" else None
        print("writing", child.pid if child else 0, flush=True)
        sys.stdin.readline()
    print("done", flush=True)
    """
)

# Windows-style, glob characters, accents, 240 bytes (the temp names are cut to fit), not UTF-8
# (legal on Linux), a trailing dot, a leading dash: all relative, in the writer's working folder
ODD_NAMES = [
    os.fsencode("C:\\maps\\run"),
    os.fsencode("scan [1]*?"),
    os.fsencode("carte été"),
    b"x" * 240,
    b"map\xff\xfe",
    b"run.",
    b"-run",
]


def _start_writer(folder: Path, bases: list[bytes], child: bool = False, prefix=()) -> tuple:
    p = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-c",
            _WRITER,
            json.dumps([b.hex() for b in bases]),
            "child" if child else "",
        ],
        cwd=folder,
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    line = p.stdout.readline().decode()
    if not line.startswith("writing "):
        p.kill()
        pytest.fail(f"the writer did not start: {line!r} {p.communicate()[1].decode()[-2000:]}")
    return p, int(line.split()[1])


def _state(pid: int) -> str:
    """The process's state letter as the kernel gives it (/proc/PID/stat: R, S, T, Z, ...)."""
    return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0].decode()


def _zombie(pid: int) -> bool:
    """Whether the kernel says ``pid`` is dead but unreaped: its leader a zombie (Z) and no thread
    of it left (until its last thread has gone, its files, and so its locks, are still open)."""
    return _state(pid) == "Z" and os.listdir(f"/proc/{pid}/task") == [str(pid)]


def _sweep_all(folder: Path, bases: list[bytes]) -> None:
    from gs_mapping.output_files import sweep_stale_temps

    with _chdir(folder):
        for b in bases:
            for out in (b, b + b".ply", b + b".d"):
                sweep_stale_temps(os.fsdecode(out))  # (relative: outputs in the working directory)


@contextlib.contextmanager
def _chdir(folder: Path):  # (contextlib.chdir: Python 3.11 on)
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def _listing(folder: Path) -> set[bytes]:
    return set(os.listdir(os.fsencode(folder)))


def _user_files(folder: Path) -> dict[bytes, object]:
    """Files a user keeps beside the outputs, named near (or, for a link, a FIFO and another user's
    folder, exactly like) the temps: (name → what must stay)."""
    keep = folder / "keep"
    keep.mkdir()
    (keep / "data.txt").write_text("precious")
    made: dict[bytes, object] = {}

    def file(name: str, text: str = "mine") -> None:
        (folder / name).write_text(text)
        made[os.fsencode(name)] = text

    file(".run.tmp-1234567")  # 7 characters where tempfile puts 8
    file(".run.d.tmp-123456789")  # 9
    file(".run.12345678.partial.bak")
    file(".run.ply.12345678.tmp")  # (a file temp keeps the output's suffix: .tmp.ply)
    file("run.12345678.partial")  # (not hidden)
    os.symlink(keep, folder / ".run.d.tmp-linklink")  # exactly a folder temp's name: a link
    made[b".run.d.tmp-linklink"] = "link"
    os.mkfifo(folder / ".run.d.tmp-fifofifo")  # exactly a temp's name: a FIFO
    made[b".run.d.tmp-fifofifo"] = "fifo"
    if os.geteuid() == 0:  # exactly a folder temp's name, another user's
        (folder / ".run.d.tmp-otheruid").mkdir()
        (folder / ".run.d.tmp-otheruid" / "theirs.txt").write_text("theirs")
        os.chown(folder / ".run.d.tmp-otheruid", 4242, 4242)
        made[b".run.d.tmp-otheruid"] = "other user"
    return made


def _check_user_files(folder: Path, made: dict[bytes, object]) -> None:
    for name, what in made.items():
        p = folder / os.fsdecode(name)
        if what == "link":
            assert p.is_symlink() and os.readlink(p) == str(folder / "keep")
        elif what == "fifo":
            assert stat.S_ISFIFO(p.lstat().st_mode)
        elif what == "other user":
            assert (p / "theirs.txt").read_text() == "theirs"
        else:
            assert p.read_text() == what
    assert (folder / "keep" / "data.txt").read_text() == "precious"


def test_a_killed_writer_left_a_zombie_with_a_child_running_its_odd_named_temps_go_user_files_stay(
    tmp_path,
):
    """A writer of odd-named outputs in its working folder starts a child (fork + exec: ``sleep``)
    and is killed with SIGKILL; unreaped, it is a zombie (the kernel says Z), its child still runs.
    Neither holds a lock (a zombie has closed its files; the child's exec closed the inherited
    ones): every temp goes, each odd name's, and nothing of the user's beside them (near names, a
    link, a FIFO and another user's folder named exactly like temps, the link's target)."""
    bases = [*ODD_NAMES, b"run"]
    made = _user_files(tmp_path)
    before = _listing(tmp_path)
    p, child = _start_writer(tmp_path, bases, child=True)
    try:
        temps = _listing(tmp_path) - before
        assert len(temps) == 3 * len(bases), sorted(temps)  # one bag, file and folder temp a name
        p.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not _zombie(p.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _zombie(p.pid) and _state(child) in "RS"  # a zombie; its child alive
        _sweep_all(tmp_path, bases)
        assert _listing(tmp_path) == before  # the killed writer's temps gone, nothing else
        _check_user_files(tmp_path, made)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        p.kill()
        p.wait()


def test_a_stopped_writer_and_one_in_another_mount_namespace_keep_their_temps(tmp_path):
    """A writer stopped (Ctrl-Z, a frozen container) and one in another mount namespace that
    writes the same folder under another path (a container's bind mount, ``unshare -rm``) are alive:
    a sweep from here leaves their temps, and each finishes its outputs as if alone."""
    shared, view = tmp_path / "shared", tmp_path / "view"
    shared.mkdir()
    view.mkdir()
    ns = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    bind = (
        ["unshare", "-rm", "sh", "-c", f'mount --bind "{shared}" "{view}" && cd "{view}" && exec "$@"', "sh"]
        if ns.returncode == 0
        else None
    )
    writers = []
    try:
        stopped, _ = _start_writer(shared, [b"stopped"])
        writers.append(stopped)
        stopped.send_signal(signal.SIGSTOP)
        if bind is not None:
            contained, _ = _start_writer(view, [b"contained"], prefix=bind)
            writers.append(contained)
        temps = {n for n in _listing(shared) if n.startswith(b".")}
        assert len(temps) == 3 * len(writers)
        _sweep_all(shared, [b"stopped", b"contained"])
        assert {n for n in _listing(shared) if n.startswith(b".")} == temps  # all kept
        stopped.send_signal(signal.SIGCONT)
        for w in writers:
            out, err = w.communicate(b"finish\n", timeout=60)
            assert w.returncode == 0 and out == b"done\n", err.decode()[-2000:]
    finally:
        for w in writers:
            if w.poll() is None:
                w.send_signal(signal.SIGCONT)
                w.kill()
                w.wait()
    names = ["stopped", *(["contained"] if bind is not None else [])]
    assert sorted(os.listdir(shared)) == sorted(f"{n}{s}" for n in names for s in ("", ".d", ".ply"))
    for n in names:
        assert (shared / f"{n}.ply").read_text() == f"file {n!a}"
        assert (shared / f"{n}.d" / "note.txt").read_text() == f"folder {n!a}"
    if bind is None:
        pytest.skip(f"no user + mount namespace here (unshare -rm: {ns.stderr.decode().strip()})")


def test_a_writing_thread_of_this_process_keeps_its_temp(tmp_path):
    """Another thread of this process writing the same output: its lock is held by another open
    file, so this thread's sweep leaves the temp, and the output comes out whole."""
    from gs_mapping.output_files import output_directory, sweep_stale_temps

    started, finish = threading.Event(), threading.Event()

    def write():
        with output_directory(tmp_path / "run") as d:
            (d / "note.txt").write_text("thread")
            started.set()
            finish.wait(30)

    t = threading.Thread(target=write)
    t.start()
    try:
        assert started.wait(30)
        (temp,) = os.listdir(tmp_path)
        sweep_stale_temps(tmp_path / "run")
        assert os.listdir(tmp_path) == [temp]
    finally:
        finish.set()
        t.join(30)
    assert os.listdir(tmp_path) == ["run"] and (tmp_path / "run" / "note.txt").read_text() == "thread"


def _world(out: str, frames: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gs_mapping", "world", "--out", out, "--frames", str(frames), *extra]


def _tf_count(bag: Path) -> int:
    from gs_mapping.bag import BagReader

    with BagReader(bag) as r:
        return sum(1 for _ in r.messages(["/tf"]))


def test_world_killed_at_random_moments_then_rerun_loses_nothing_and_leaves_no_temp(tmp_path):
    """``world --out w --overwrite`` over a good bag, killed with SIGKILL at random moments (seeded)
    while it writes its bag: after each, ``w`` is the old bag, whole, beside the killed run's
    ``.w.*.partial``; the rerun finishes, and then the folder holds the new ``w`` and the user's
    files, as they were, and nothing else."""
    rng = random.Random(5)
    size = ["--size", "160x90", "--workers", "1", "--no-progress"]
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".w.tmp-mine").write_text("mine too")  # (not tempfile's 8 characters)
    (tmp_path / ".w.backup.partial").mkdir()
    users = set(os.listdir(tmp_path))
    r = subprocess.run(_world("w", 3, *size), cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    partials: set[Path] = set()
    for _ in range(3):
        p, _ = start_until_partial(
            _world("w", 2000, *size, "--overwrite"), tmp_path, ENV, cwd=tmp_path, known=partials
        )
        try:
            time.sleep(rng.uniform(0.0, 1.5))
            p.send_signal(signal.SIGKILL)
            assert p.wait(timeout=30) == -signal.SIGKILL  # (killed while it wrote)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert _tf_count(tmp_path / "w") == 3  # the old bag, whole
        # its own .partial left (nothing runs after SIGKILL); the one killed before swept at its start
        (partial,) = set(tmp_path.glob(".w.????????.partial"))
        assert partial not in partials
        partials.add(partial)
        assert set(os.listdir(tmp_path)) == users | {"w", partial.name}
    r = subprocess.run(
        _world("w", 2, *size, "--overwrite"), cwd=tmp_path, env=ENV, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert set(os.listdir(tmp_path)) == users | {"w"}
    assert _tf_count(tmp_path / "w") == 2
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / ".w.tmp-mine").read_text() == "mine too"


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, as the kernel lists them (/proc/*/stat)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat_file.read_bytes().rsplit(b")", 1)[1].split()[1]) == pid:
                found.append(int(stat_file.parent.name))
    return found


def test_world_killed_its_forked_renderers_do_not_keep_its_partial_bag_locked(tmp_path):
    """``world --workers 2`` renders in forked processes, made while the ``.w.*.partial`` bag is
    held. Killed with SIGKILL (the OOM killer takes the biggest process), the writer is gone: a
    sweep at once must see no writer. The renderers, still busy with a frame, hold its lock."""
    from gs_mapping.output_files import sweep_stale_temps

    big = ["--size", "1280x720", "--lidar", "--workers", "2", "--no-progress"]
    p = subprocess.Popen(
        _world(str(tmp_path / "w"), 200, *big), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(tmp_path.glob(".w.*.partial")):
            time.sleep(0.02)
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.05)
            workers = _children(p.pid)
        time.sleep(0.5)  # (rendering: every worker takes the next frame as soon as one is done)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        if not any(os.path.exists(f"/proc/{w}") and _state(w) in "RSD" for w in workers):
            pytest.skip("the renderers had finished before the sweep (nothing to show)")
        sweep_stale_temps(tmp_path / "w")  # the writer is dead: no process writes the bag
        assert not list(tmp_path.glob(".w.*.partial"))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)


def test_replay_killed_then_rerun_leaves_no_scratch_folder(tmp_path, kitchen_bag):
    """Killed once its scratch folder (``.gs_mapping_replay.tmp-XXXXXXXX`` in $TMPDIR) or its output
    bag exists; a rerun sweeps the killed run's scratch and partial bag: TMPDIR ends empty.

    Not killed at the first thing in TMPDIR (before session 39, a flake under load: an 8-character
    file with no prefix was left): that is CPython's own probe, not ours. The first
    ``tempfile.gettempdir()`` of a process tests each candidate folder by creating a file of 8
    random characters (no prefix), writing b"blat" into it and unlinking it (``tempfile.
    _get_default_tempdir``); a SIGKILL in those microseconds leaves it, and nothing can tell it
    from a user's file to sweep. Seen under strace (the probe is the replay's first entry in
    TMPDIR, before its scratch and its output bag) and made certain by slowing the child's
    os.unlink: the old trigger then killed within the probe and left e.g. ``mhbv3arg``
    holding b"blat"."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(ENV, TMPDIR=str(tmpdir))
    cmd = [sys.executable, "-m", "gs_mapping", "replay", str(kitchen_bag), "--out", str(tmp_path / "r")]
    cmd += ["--nodes", "map_server_node,map_receiver_node"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            # (its scratch, or its bag begun: both after CPython's probe, see above)
            if any(tmpdir.glob(".gs_mapping_replay.tmp-*")) or any(tmp_path.glob(".r.*")):
                break
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if p.returncode != -signal.SIGKILL:
        pytest.skip("the replay had finished before the kill")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["r", "tmp"]  # (the killed run's .r.*.partial swept)
    assert os.listdir(tmpdir) == []


# ---------------------------------------------------------------------------------------------
# map --holdout-views N
# ---------------------------------------------------------------------------------------------

_FAST = (
    "/**:\n  ros__parameters:\n    mapper:\n      backend: cpu\n      seeding: {stride: 8}\n"
    "      optim: {iterations: 1, first_iterations: 1, refine_iterations: 0}\n"
)


def _map(kitchen_bag, tmp_path, capsys, frames: int, views: int) -> dict:
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(_FAST)
    out = tmp_path / f"out{views}"
    argv = ["map", str(kitchen_bag), "--out", str(out), "--device", "cpu", "--config", str(cfg)]
    argv += ["--max-frames", str(frames), "--holdout-every", "2", "--holdout-views", str(views)]
    assert main([*argv, "--no-progress"]) == 0, capsys.readouterr().err
    return json.loads((out / "metrics.json").read_text())


def test_holdout_views_three_of_five_are_the_ends_and_the_middle(kitchen_bag, tmp_path, capsys):
    """10 frames, every 2nd held out: 1, 3, 5, 7, 9 (by hand). Three evenly spaced over them are
    the first, the middle and the last: 1, 5, 9; the other five frames are mapped."""
    pytest.importorskip("torch")
    m = _map(kitchen_bag, tmp_path, capsys, 10, 3)
    h = m["heldout"]
    assert h["held_out_frames"] == 5 and m["mapping_frames"] == 5
    assert [v["index"] for v in h["per_view"]] == [1, 5, 9] and h["views"] == 3
    assert sorted(os.listdir(tmp_path / "out3" / "heldout")) == ["000001.png", "000005.png", "000009.png"]
    assert all(np.isfinite(v["psnr"]) for v in h["per_view"])


def test_holdout_views_zero_still_withholds_the_frames(kitchen_bag, tmp_path, capsys):
    """``--holdout-views 0``: none evaluated, but frames 1, 3, 5 are still withheld from the mapper
    (3 of 6 mapped), and metrics.json is valid JSON with no score to give (null, not NaN)."""
    pytest.importorskip("torch")
    m = _map(kitchen_bag, tmp_path, capsys, 6, 0)
    h = m["heldout"]
    assert (h["views"], h["held_out_frames"], h["per_view"], h["psnr"]) == (0, 3, [], None)
    assert m["mapping_frames"] == 3
    assert sorted(os.listdir(tmp_path / "out0")) == ["map.ply", "metrics.json"]


# ---------------------------------------------------------------------------------------------
# /theora refused in one line
# ---------------------------------------------------------------------------------------------

CAM = "/camera/camera/color"
PACKET_MSG = (  # theora_image_transport's msg/Packet.msg (ROS 2 branches)
    "std_msgs/Header header\nuint8[] data\nint32 b_o_s\nint32 e_o_s\nint64 granulepos\nint64 packetno\n"
)


def _theora_bag(path: Path, colour: str) -> None:
    """A RealSense recording whose colour is theora packets on ``colour`` (its own ``…/theora``, or
    remapped to a plain name), with its CameraInfo and raw depth."""
    from gs_mapping.bag import BagWriter
    from gs_mapping.messages import RosbagsFactory, intrinsics_to_camera_info, numpy_to_image
    from gs_mapping.messages.camera_info import CameraIntrinsics

    with BagWriter(path) as bag:
        bag.register_msg("theora_image_transport/msg/Packet", PACKET_MSG)
        fac = RosbagsFactory(bag.typestore)
        bag.add_topic(colour, "theora_image_transport/msg/Packet")
        bag.add_topic(f"{CAM}/camera_info", "sensor_msgs/msg/CameraInfo")
        bag.add_topic("/camera/camera/depth/image_rect_raw", "sensor_msgs/msg/Image")
        ts = bag.typestore.types
        for k in range(3):
            ns = (1 + k) * 10**8
            stamp = ts["builtin_interfaces/msg/Time"](sec=0, nanosec=ns)
            header = ts["std_msgs/msg/Header"](stamp=stamp, frame_id="c")
            packet = ts["theora_image_transport/msg/Packet"](
                header=header,
                data=np.frombuffer(b"\x80theora" if k == 0 else b"\x00frame", np.uint8),
                b_o_s=int(k == 0),
                e_o_s=0,
                granulepos=k,
                packetno=k,
            )
            bag.write(colour, ns, packet)
            cam = CameraIntrinsics(160, 120, [[300.0, 0, 80.0], [0, 300.0, 60.0], [0, 0, 1]], frame_id="c")
            bag.write(f"{CAM}/camera_info", ns, intrinsics_to_camera_info(cam, fac, ns, "c"))
            depth = numpy_to_image(np.full((120, 160), 1000, np.uint16), "16UC1", ns, "c", fac)
            bag.write("/camera/camera/depth/image_rect_raw", ns, depth)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("named", [False, True])
def test_map_refuses_a_theora_stream_remapped_to_a_plain_name_by_its_type(tmp_path, capsys, named):
    """``ros2 bag record --remap`` put the theora packets on ``…/image_raw``: the type says what the
    name does not. Found (the only colour recorded) or named, one line, exit 2, no output."""
    plain = f"{CAM}/image_raw"
    _theora_bag(tmp_path / "bag", plain)
    argv = ["map", str(tmp_path / "bag"), "--out", str(tmp_path / "out")]
    assert main([*argv, *(["--color-topic", plain] if named else [])]) == 2
    err = _one_line(capsys)
    assert f"colour topic {plain} is theora_image_transport's video stream" in err
    assert not (tmp_path / "out").exists()


def test_an_image_topic_named_theora_raw_is_no_theora_stream():
    """``/cam/theora_raw`` (a camera named so, sensor_msgs/Image) is not theora_image_transport's
    ``…/theora``: found as the colour, and taken when named."""
    from gs_mapping.topics import discover

    types = {
        "/cam/theora_raw": "sensor_msgs/msg/Image",
        "/cam/camera_info": "sensor_msgs/msg/CameraInfo",
        "/cam/depth/image_rect_raw": "sensor_msgs/msg/Image",
    }
    for named in (None, "/cam/theora_raw"):
        t = discover(types, color=named)
        assert (t.color, t.camera_info, t.depth) == (
            "/cam/theora_raw",
            "/cam/camera_info",
            "/cam/depth/image_rect_raw",
        )


def test_replay_refuses_a_bag_whose_only_colour_is_theora(tmp_path, capsys):
    pytest.importorskip("torch")
    _theora_bag(tmp_path / "bag", f"{CAM}/image_raw/theora")
    rc = main(["replay", str(tmp_path / "bag"), "--out", str(tmp_path / "r"), "--nodes", "mapper_node"])
    assert rc == 2
    err = _one_line(capsys)
    assert f"colour topic {CAM}/image_raw/theora is theora_image_transport's video stream" in err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------
# TIFF colour through Pillow's libtiff reader
# ---------------------------------------------------------------------------------------------


def _packbits(b: bytes) -> bytes:
    """TIFF 6.0 section 9: literal runs of at most 128 bytes (a count byte n-1, then the bytes)."""
    return b"".join(bytes([len(b[i : i + 128]) - 1]) + b[i : i + 128] for i in range(0, len(b), 128))


def _lzw(data: bytes) -> bytes:
    """TIFF 6.0 section 13's LZW: codes MSB first, Clear 256, EndOfInformation 257, the code width
    growing one code early (at 511, 1023, 2047 entries), a Clear before the table is full."""
    out, acc, nbits = bytearray(), 0, 0

    def emit(code: int, width: int) -> None:
        nonlocal acc, nbits
        acc, nbits = (acc << width) | code, nbits + width
        while nbits >= 8:
            nbits -= 8
            out.append((acc >> nbits) & 0xFF)
        acc &= (1 << nbits) - 1

    def width_for(nxt: int) -> int:
        return 9 if nxt < 512 else 10 if nxt < 1024 else 11 if nxt < 2048 else 12

    table, nxt = {bytes([i]): i for i in range(256)}, 258
    emit(256, 9)
    w = b""
    for c in data:
        wc = w + bytes([c])
        if wc in table:
            w = wc
            continue
        emit(table[w], width_for(nxt))
        table[wc], nxt = nxt, nxt + 1
        if nxt == 4094:
            emit(256, 12)
            table, nxt = {bytes([i]): i for i in range(256)}, 258
        w = bytes([c])
    emit(table[w], width_for(nxt))
    emit(257, width_for(nxt + 1))
    if nbits:
        out.append((acc << (8 - nbits)) & 0xFF)
    return bytes(out)


_CODECS = {
    "none": (1, bytes),
    "lzw": (5, _lzw),
    "deflate": (8, zlib.compress),
    "packbits": (32773, _packbits),
}


def _tiff(arr: np.ndarray, order: str = "<", planar=False, tile=None, rows=None, codec="none") -> bytes:
    """A baseline TIFF 6.0 file of ``arr`` (H, W[, C]) uint8/uint16/float32, byte order ``order``
    ('<' II, '>' MM), chunky or planar (PlanarConfiguration 2), in strips of ``rows`` rows or in
    ``tile`` (W, H) tiles (section 15), each compressed by ``codec``."""
    a = arr if arr.ndim == 3 else arr[:, :, None]
    h, w, c = a.shape
    a = a.astype(a.dtype.newbyteorder(order))
    scheme, enc = _CODECS[codec]
    planes = [a[:, :, k : k + 1] for k in range(c)] if planar else [a]
    blocks = []
    for p in planes:
        if tile:
            for y in range(0, h, tile[1]):
                for x in range(0, w, tile[0]):
                    t = np.zeros((tile[1], tile[0], p.shape[2]), p.dtype)
                    part = p[y : y + tile[1], x : x + tile[0]]
                    t[: part.shape[0], : part.shape[1]] = part
                    blocks.append(enc(t.tobytes()))
        else:
            blocks += [
                enc(np.ascontiguousarray(p[y : y + (rows or h)]).tobytes()) for y in range(0, h, rows or h)
            ]
    SHORT, LONG = 3, 4
    entries = [
        (256, LONG, [w]),
        (257, LONG, [h]),
        (258, SHORT, [a.dtype.itemsize * 8] * c),
        (259, SHORT, [scheme]),
        (262, SHORT, [2 if c >= 3 else 1]),  # RGB or BlackIsZero
        (277, SHORT, [c]),
        (284, SHORT, [2 if planar else 1]),
        (339, SHORT, [{"u": 1, "f": 3}[a.dtype.kind]] * c),
        *([(338, SHORT, [2])] if c == 4 else []),  # unassociated alpha
    ]
    if tile:
        entries += [(322, LONG, [tile[0]]), (323, LONG, [tile[1]]), (324, LONG, None), (325, LONG, None)]
    else:
        entries += [(273, LONG, None), (278, LONG, [rows or h]), (279, LONG, None)]
    entries.sort(key=lambda e: e[0])
    counts = [len(b) for b in blocks]
    size = {tag: len(v or blocks) * (2 if kind == SHORT else 4) for tag, kind, v in entries}
    extra_at = 8 + 2 + 12 * len(entries) + 4
    offsets, at = [], extra_at + sum(s for s in size.values() if s > 4)
    for b in blocks:
        offsets.append(at)
        at += len(b)
    ifd, extra = struct.pack(f"{order}H", len(entries)), b""
    for tag, kind, values in entries:
        values = values or (offsets if tag in (273, 324) else counts)
        packed = struct.pack(f"{order}{len(values)}{'H' if kind == SHORT else 'I'}", *values)
        if len(packed) <= 4:
            ifd += struct.pack(f"{order}HHI", tag, kind, len(values)) + packed.ljust(4, b"\0")
        else:
            ifd += struct.pack(f"{order}HHII", tag, kind, len(values), extra_at + len(extra))
            extra += packed
    head = (b"II" if order == "<" else b"MM") + struct.pack(f"{order}HI", 42, 8)
    return head + ifd + struct.pack(f"{order}I", 0) + extra + b"".join(blocks)


def _msg(data: bytes, encoding: str) -> NS:
    return NS(format=f"{encoding}; tiff compressed ", data=np.frombuffer(data, np.uint8))


RNG = np.random.default_rng(28)
RGB16 = RNG.integers(0, 65536, (21, 37, 3), dtype=np.uint16)  # the file's R, G, B (37: tiles cut)


def _true_colour(in_file: np.ndarray) -> np.ndarray:
    """An rgb16 message's TIFF holds its channels reversed (OpenCV stores its BGR Mat as RGB): the
    true colour is the file's reversed, in its high bytes (what a raw rgb16 Image gives)."""
    return (in_file[:, :, ::-1] >> 8).astype(np.uint8)


LAYOUTS = [
    (order, planar, tile, codec)
    for order in "<>"
    for planar in (False, True)
    for tile in (None, (16, 16))
    for codec in _CODECS
]


def test_hand_written_lzw_is_what_libtiff_reads():
    """The LZW above against an independent reader: OpenCV's libtiff, on chunky tiles and strips."""
    cv2 = pytest.importorskip("cv2")
    for tile in (None, (16, 16)):
        data = _tiff(RGB16, ">", tile=tile, rows=5, codec="lzw")
        got = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(got[:, :, ::-1], RGB16)  # (OpenCV gives BGR)


@pytest.mark.parametrize("order,planar,tile,codec", LAYOUTS)
def test_16_bit_colour_tiff_of_every_layout_reads_as_its_high_bytes(order, planar, tile, codec):
    from gs_mapping.messages.camera_image import color_to_rgb

    data = _tiff(RGB16, order, planar, tile, rows=5, codec=codec)
    np.testing.assert_array_equal(color_to_rgb(_msg(data, "rgb16")), _true_colour(RGB16))


@pytest.mark.parametrize("compression", [1, 8, 32773])
def test_opencv_16_bit_tiffs_of_other_compressions_read_as_their_high_bytes(compression):
    """cv::imencode(".tiff") with IMWRITE_TIFF_COMPRESSION none, deflate, PackBits (the transport's
    default, LZW, is test_tiff16_colour's)."""
    cv2 = pytest.importorskip("cv2")
    from gs_mapping.messages.camera_image import color_to_rgb

    ok, buf = cv2.imencode(".tiff", RGB16, [cv2.IMWRITE_TIFF_COMPRESSION, compression])  # (the Mat)
    assert ok
    np.testing.assert_array_equal(color_to_rgb(_msg(buf.tobytes(), "rgb16")), (RGB16 >> 8).astype(np.uint8))


def test_threads_decoding_tiffs_at_once_each_get_their_own_image():
    """Eight threads decode TIFFs of every layout at once (nodes of one process, each on its own
    executor thread); each image is right, and Pillow's module-wide switch is as it was."""
    from PIL import TiffImagePlugin

    from gs_mapping.messages.camera_image import color_to_rgb

    was = TiffImagePlugin.READ_LIBTIFF
    images = [RNG.integers(0, 65536, (9, 11, 3), dtype=np.uint16) for _ in LAYOUTS]
    files = [
        _tiff(im, *layout[:2], layout[2], 4, layout[3]) for im, layout in zip(images, LAYOUTS, strict=True)
    ]
    wrong: list[tuple[int, int]] = []
    barrier = threading.Barrier(8)

    def decode(t: int) -> None:
        barrier.wait()
        for k in range(len(files)):
            j = (k + 5 * t) % len(files)
            if not np.array_equal(color_to_rgb(_msg(files[j], "rgb16")), _true_colour(images[j])):
                wrong.append((t, j))

    threads = [threading.Thread(target=decode, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert wrong == [] and TiffImagePlugin.READ_LIBTIFF == was


@pytest.mark.parametrize("codec", ["none", "deflate"])
def test_big_endian_float_depth_tiff_reads_its_metres(codec):
    from gs_mapping.messages.compressed_image import compressed_image_to_numpy

    metres = (RNG.random((21, 37), dtype=np.float32) * 10).astype(np.float32)
    data = _tiff(metres, ">", codec=codec)
    with contextlib.suppress(ImportError):  # (the file as an independent reader, OpenCV's libtiff, reads it)
        import cv2

        np.testing.assert_array_equal(
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), metres
        )
    np.testing.assert_array_equal(compressed_image_to_numpy(_msg(data, "32FC1")), metres)


def _cut(data: bytes) -> bytes:
    return data[: len(data) - 40]  # (the last strip's end)


@pytest.mark.parametrize("codec", ["none", "lzw"])
def test_a_tiff_cut_short_is_one_line(codec):
    from gs_mapping.errors import MessageError
    from gs_mapping.messages.camera_image import color_to_rgb

    with pytest.raises(MessageError) as e:
        color_to_rgb(_msg(_cut(_tiff(RGB16, planar=True, codec=codec)), "rgb16"))
    assert "\n" not in str(e.value) and "cannot decode tiff" in str(e.value)


@pytest.mark.parametrize("codec", ["none", "lzw"])
def test_a_tiff_cut_short_writes_nothing_on_stderr(tmp_path, codec):
    """In its own process, whose stderr (file descriptor 2, where C libraries write) is read whole."""
    (tmp_path / "cut.tif").write_bytes(_cut(_tiff(RGB16, planar=True, codec=codec)))
    code = (
        "import sys, numpy as np; from types import SimpleNamespace as NS\n"
        "from gs_mapping.errors import MessageError\n"
        "from gs_mapping.messages.camera_image import color_to_rgb\n"
        "data = np.fromfile(sys.argv[1], np.uint8)\n"
        "try:\n    color_to_rgb(NS(format='rgb16; tiff compressed ', data=data))\n"
        "except MessageError:\n    print('refused')\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cut.tif")], env=ENV, capture_output=True)
    assert r.stdout == b"refused\n"
    assert r.stderr.decode() == ""
