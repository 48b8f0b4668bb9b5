"""Outside review (session 24c): the second wave of session 24's command-line changes (SIGHUP handled
as SIGTERM, numba's cache placed only where it can be, forked render workers in their own process
group), each against something outside the project: coreutils' ``nohup``, the shell's Ctrl-C,
numba's own cache log (``NUMBA_DEBUG_CACHE``), the kernel's /proc view of orphaned processes.

Found here (xfail strict until fixed):
- the CLI installs its SIGHUP handler even where SIGHUP is ignored: ``nohup gs-mapping …`` now ends
  with "hangup", exit 129, when the terminal or ssh session goes away (it kept running before);
- ``router`` and ``run`` stop cleanly on SIGTERM and Ctrl-C (exit 0, the node closed from its spin
  loop) but a hang-up raises through their spin loop instead (exit 129): they set their own stop
  handler for SIGTERM only;
- a real hang-up (the terminal gone, stderr on it) exits 1, not the documented 129: printing
  "hangup" to the dead terminal raises EIO inside main()'s ``except Terminated``;
- ``gs-mapping --help >&-`` exits 0 having printed nothing (argparse swallows the write error of
  the new closed-stdout stand-in; before it, the help went to stderr); coreutils exit non-zero;
- ``run NODE --transport zenoh`` with stdout closed (``>&-``, new: print now raises) or piped into a
  reader that left (``| head``) prints its error and then never exits: the "ready" line is printed
  before the try/finally that closes the node and its Zenoh session, whose threads keep it alive;
- full.launch.py's RViz folder is removed by an OnShutdown handler, which real launch runs on Ctrl-C
  and a normal end only: on SIGTERM (``systemctl stop``, ``timeout``) launch cancels its run task and
  the ``gs_mapping_rviz_*`` folder stays (checked where launch is importable).
Fixed since (the tests above pass); the real-hang-up test now runs ``world``, as ``router`` stops
cleanly (exit 0) on a hang-up once the second bug is fixed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gs_mapping

SRC = Path(gs_mapping.__file__).resolve().parents[1]  # src/ (gs_mapping, gs_map_share, gsmap_hd)
REPO = SRC.parent


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def _start(args, *, prefix=(), cwd=None, env=None) -> subprocess.Popen:
    """``gs-mapping ARGS`` as its own process in its own session (signals reach it alone)."""
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "gs_mapping", *map(str, args)],
        cwd=cwd,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # (a test runner may ignore SIGINT in its children; a shell's foreground job takes it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _router_after(
    sig: int, tmp_path: Path, *, prefix=(), duration: float | None = None
) -> tuple[int, str, float]:
    """``gs-mapping router`` on a loopback port of the system's choice; ``sig`` once it says ready.
    (rc, stderr, seconds from the signal to the exit)."""
    pytest.importorskip("zenoh")
    args = ["router", "--listen", "tcp/127.0.0.1:0"]
    if duration is not None:
        args += ["--duration", duration]
    p = _start(args, prefix=prefix, cwd=tmp_path)
    try:
        line = p.stdout.readline()
        assert "ready" in line, (line, p.stderr.read() if p.poll() is not None else "")
        time.sleep(0.3)
        p.send_signal(sig)
        sent = time.monotonic()
        _, err = p.communicate(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, err, seconds


# --------------------------------------------------------------------------------------------------
# SIGHUP: coreutils' nohup, and the long-running commands' clean stop
# --------------------------------------------------------------------------------------------------


def test_nohup_keeps_a_command_running_through_a_hangup(tmp_path):
    """coreutils' ``nohup`` (its manual: 'run a command immune to hangups') sets SIGHUP to SIG_IGN
    and execs the command; a program that wants its own SIGHUP action keeps an inherited SIG_IGN
    (POSIX: ignored signals stay ignored across exec, and nohup relies on programs leaving them so,
    as Python's own startup does). Before SIGHUP was made to unwind (commit 041b6fe) ``nohup
    gs-mapping …`` survived the terminal's hang-up; now main() installs its handler unconditionally
    and the command ends with 'hangup', exit 129. Checked with ``router --duration``: it must run
    to its end (exit 0)."""
    nohup = shutil.which("nohup")
    if nohup is None:
        pytest.skip("no nohup (coreutils) here")
    rc, err, seconds = _router_after(signal.SIGHUP, tmp_path, prefix=(nohup,), duration=4)
    assert "Traceback" not in err, err[-2000:]
    assert rc == 0, (rc, err[-500:])
    assert "hangup" not in err
    assert seconds > 2.5, f"stopped {seconds:.1f} s after the hang-up, not at its --duration's end"


def test_a_hangup_stops_router_as_ctrl_c_does(tmp_path):
    """README, Reliability: 'SIGTERM and SIGHUP (the terminal or ssh session went away) unwind a
    command as Ctrl-C does'. For the long-running commands Ctrl-C (the shell's SIGINT, checked here
    first) is a clean stop: the loop ends, the router or node is closed from the loop and the
    command exits 0, as it does on SIGTERM (their own handler sets a stop flag). A hang-up instead
    goes to the CLI's handler, which raises wherever the main thread is (for ``run``: inside
    ``spin_once``, possibly inside a message callback) and exits 129 with 'hangup'."""
    rc_int, err_int, _ = _router_after(signal.SIGINT, tmp_path)
    rc_term, _, _ = _router_after(signal.SIGTERM, tmp_path)
    assert (rc_int, rc_term) == (0, 0), err_int[-500:]
    rc_hup, err_hup, _ = _router_after(signal.SIGHUP, tmp_path)
    assert "Traceback" not in err_hup, err_hup[-2000:]
    assert rc_hup == rc_int, (rc_hup, err_hup[-500:])


@pytest.mark.parametrize("buffered", [False, True], ids=["unbuffered", "buffered"])
def test_a_real_hangup_with_stderr_on_the_gone_terminal_exits_129(tmp_path, buffered):
    """What a hang-up is (POSIX, General Terminal Interface: 'If a modem disconnect is detected …
    the SIGHUP signal shall be sent to the controlling process'; afterwards reads and writes on the
    terminal fail, Linux answers EIO): the command's stderr is that terminal. Here a pseudo-terminal
    (Python's pty module) is the command's stderr, its master side is closed (the terminal emulator
    or sshd went away), then SIGHUP comes. README: 'SIGTERM and SIGHUP … (exit 143 and 129)'. main()
    printed 'gs-mapping world: hangup' to the gone terminal, the write failed with EIO inside its
    ``except Terminated`` branch and the process exited 1 (an uncaught OSError).
    (``world``, which unwinds on a hang-up; ``router`` and ``run`` stop cleanly on it, exit 0: see
    test_a_hangup_stops_router_as_ctrl_c_does.)
    Buffered (no PYTHONUNBUFFERED, what a user has): the failed 'hangup' line stayed in stderr's
    buffer, the flush at exit failed on it again and the process exited 120."""
    import pty

    env = _env(PYTHONUNBUFFERED="1")
    if buffered:
        del env["PYTHONUNBUFFERED"]

    master, slave = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-m", "gs_mapping", "world", "--out", str(tmp_path / "w")]
        + ["--frames", "400", "--size", "320x180", "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(tmp_path.glob(".w.*.partial")):
            time.sleep(0.1)
        assert any(tmp_path.glob(".w.*.partial")), "world started no bag"
        os.close(master)  # the terminal goes away
        master = -1
        time.sleep(0.3)
        p.send_signal(signal.SIGHUP)
        rc = p.wait(timeout=60)
    finally:
        if master >= 0:
            os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 128 + signal.SIGHUP
    assert list(tmp_path.iterdir()) == []  # (the partial bag removed as it unwound)


def test_help_with_stdout_closed_is_an_error_as_coreutils_make_it(tmp_path):
    """coreutils (here ``ls --help``, run first as the reference) answer ``--help >&-`` with 'write
    error: Bad file descriptor' and a non-zero status; README: 'a closed standard output (>&-) is
    an error for a command that prints'. gs-mapping's help is written by argparse, whose
    _print_message swallows OSError, so the new _ClosedStdout stand-in turns it into exit 0 with no
    output anywhere (before 041b6fe sys.stdout was None and argparse wrote the help to stderr)."""
    ls = shutil.which("ls")
    if ls is None:
        pytest.skip("no coreutils ls here")
    ref = subprocess.run([ls, "--help"], capture_output=True, text=True, preexec_fn=lambda: os.close(1))
    assert ref.returncode != 0 and "Bad file descriptor" in ref.stderr  # (the outside rule)
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "--help"],
        env=_env(),
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(1),
        timeout=60,
    )
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.returncode != 0, "exit 0 and the help went nowhere"
    assert r.stderr.strip(), "nothing said"


# --------------------------------------------------------------------------------------------------
# numba's on-disk cache for an ordinary, writable install (kernels._njit)
# --------------------------------------------------------------------------------------------------


def _write_3dgs_ply(path: Path, n: int = 200, seed: int = 0) -> Path:
    """A standard 3DGS PLY written by hand (INRIA's layout, binary little endian)."""
    rng = np.random.default_rng(seed)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    names += ["scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    rows = np.zeros(n, dtype=[(k, "<f4") for k in names])
    for k in ("x", "y", "z"):
        rows[k] = rng.uniform(-2, 2, n)
    for k in ("f_dc_0", "f_dc_1", "f_dc_2"):
        rows[k] = rng.normal(0, 0.5, n)
    rows["opacity"] = rng.normal(0, 1, n)
    for k in ("scale_0", "scale_1", "scale_2"):
        rows[k] = rng.uniform(-5, -3, n)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for i in range(4):
        rows[f"rot_{i}"] = q[:, i]
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
    header += "".join(f"property float {k}\n" for k in names) + "end_header\n"
    path.write_bytes(header.encode() + rows.tobytes())
    return path


@pytest.mark.slow
def test_a_second_encode_loads_every_kernel_from_numbas_cache(tmp_path):
    """kernels._njit now catches numba's RuntimeError and compiles without the cache where numba
    can place none; where it can (an ordinary writable install, here ``NUMBA_CACHE_DIR``, numba's
    documented override), the cache must still serve later processes: otherwise every ``encode``
    pays seconds of compilation (measured: 11.9 s cold vs 1.0 s cached for guitar.ply on 2 cores).
    numba's own cache log (``NUMBA_DEBUG_CACHE=1``: '[cache] data saved to' / 'data loaded from')
    says so: the first run saves index files into the folder, the second loads and saves nothing."""
    pytest.importorskip("numba")
    ply = _write_3dgs_ply(tmp_path / "s.ply")
    cache = tmp_path / "numba_cache"
    env = _env(NUMBA_CACHE_DIR=str(cache), NUMBA_DEBUG_CACHE="1")
    env.pop("GS_MAP_SHARE_NUMBA", None)
    runs = []
    for i in range(2):
        r = subprocess.run(
            [sys.executable, "-m", "gs_mapping", "encode", str(ply), str(tmp_path / f"o{i}.gsd")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append(r.stdout + r.stderr)
    assert "data saved to" in runs[0], runs[0][-2000:]
    assert any(cache.rglob("*.nbi")), "numba wrote no index into NUMBA_CACHE_DIR"
    assert "data loaded from" in runs[1], runs[1][-2000:]
    assert "data saved to" not in runs[1], "the second process compiled again"
    assert (tmp_path / "o0.gsd").read_bytes() == (tmp_path / "o1.gsd").read_bytes()


# --------------------------------------------------------------------------------------------------
# world's render workers in their own process group: orphaned when the parent is killed
# --------------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_world_workers_exit_when_the_parent_is_killed(tmp_path):
    """Since d607f4a each forked render worker leaves the parent's process group (setpgid), so a
    signal to the group (``kill -KILL -PGID``, an OOM kill of the parent, ``timeout -s KILL``) no
    longer reaches it; the commit says an orphaned worker reads the end of its task pipe and exits.
    Checked through the kernel's view (/proc): the workers are in a group of their own, and after
    SIGKILL of the parent alone none is still running 20 s later (a worker left rendering would hold
    a CPU and memory of a robot for good)."""
    if not Path("/proc/self/task").exists():
        pytest.skip("needs Linux /proc")
    p = _start(
        [
            "world",
            "--out",
            tmp_path / "w",
            "--frames",
            400,
            "--size",
            "320x180",
            "--workers",
            2,
            "--no-progress",
        ],
        cwd=tmp_path,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(workers) < 2:
            workers = _children(p.pid)
            time.sleep(0.2)
        assert len(workers) >= 2, "world started no workers"
        time.sleep(1.0)  # into the rendering
        assert p.poll() is None, "world finished before the kill: make the run longer"
        assert all(os.getpgid(w) != os.getpgid(p.pid) for w in workers)  # (the change under test)
        os.kill(p.pid, signal.SIGKILL)
        p.communicate(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(map(_alive, workers)):
            time.sleep(0.2)
        left = [w for w in workers if _alive(w)]
        assert left == [], f"workers {left} still running 20 s after their parent was killed"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for w in workers:
            if _alive(w):
                try:
                    os.kill(w, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# --------------------------------------------------------------------------------------------------
# run NODE --transport zenoh whose "ready" line cannot be written
# --------------------------------------------------------------------------------------------------


def _run_node_exits(tmp_path: Path, stdout_mode: str) -> tuple[int | None, str]:
    """``run map_server_node --transport zenoh --duration 2`` with stdout closed (``>&-``) or a pipe
    whose reader is gone (``| head`` after head exited). (rc or None if still running after 12 s,
    stderr)."""
    pytest.importorskip("zenoh")
    err_path = tmp_path / "stderr.txt"
    r, w = os.pipe()
    if stdout_mode == "broken_pipe":
        os.close(r)
    try:
        with open(err_path, "w") as err:
            p = subprocess.Popen(
                [sys.executable, "-m", "gs_mapping", "run", "map_server_node", "--transport", "zenoh"]
                + ["--listen", "tcp/127.0.0.1:0", "--duration", "2"],
                cwd=tmp_path,  # (the fleet store's file)
                env=_env(),
                stdout=w if stdout_mode == "broken_pipe" else None,
                stderr=err,
                start_new_session=True,
                preexec_fn=(lambda: os.close(1)) if stdout_mode == "closed" else None,
            )
    finally:
        os.close(w)
        if stdout_mode != "broken_pipe":
            os.close(r)
    try:
        rc = p.wait(timeout=12)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return rc, err_path.read_text()


def test_run_with_stdout_closed_says_so_and_exits(tmp_path):
    """coreutils' rule, which README now states for ``>&-`` ('an error for a command that prints
    (one line, exit 2)'): the command reports the write error and exits. ``run`` does print its
    error line, but its Zenoh session's threads (opened before the failing "ready" print, closed
    only in the finally block after it) keep the process alive: with ``--duration 2`` it was still
    running 12 s later (before 041b6fe the print went nowhere and the node ran)."""
    rc, err = _run_node_exits(tmp_path, "closed")
    assert "Traceback" not in err, err[-2000:]
    assert rc == 2, f"rc {rc} (None: still running 12 s later); stderr: {err[-500:]}"
    assert "gs-mapping run: error: " in err


def test_run_piped_into_a_reader_that_left_exits(tmp_path):
    """``gs-mapping run … | head -1`` once head has gone: the kernel answers the write with EPIPE
    (Python ignores SIGPIPE), which main() takes as 'the reader went away' (exit 141, quietly, as
    cat does). The node must then go too; with ``--transport zenoh`` the session opened before the
    print is never closed and the process stays (still running 12 s after a ``--duration 2``)."""
    rc, err = _run_node_exits(tmp_path, "broken_pipe")
    assert "Traceback" not in err, err[-2000:]
    assert rc is not None, f"still running 12 s later; stderr: {err[-500:]}"
    assert rc in (0, 141), (rc, err[-500:])


# --------------------------------------------------------------------------------------------------
# full.launch.py's RViz folder under real launch (ros2/launch), when launch is importable
# --------------------------------------------------------------------------------------------------

_LAUNCH_HARNESS = """
import importlib.util, os, signal, sys, tempfile, types
tempfile.tempdir = sys.argv[1]
import ament_index_python.packages as aip
aip.get_package_share_directory = lambda p: sys.argv[2]
import launch
from launch import LaunchDescriptionSource
from launch.actions import ExecuteProcess, IncludeLaunchDescription
lr, lra = types.ModuleType("launch_ros"), types.ModuleType("launch_ros.actions")
lra.Node = lambda **kw: ExecuteProcess(cmd=[sys.executable, "-c", "import time; time.sleep(60)"], name=kw.get("name"))
sys.modules["launch_ros"], sys.modules["launch_ros.actions"] = lr, lra  # (launch_ros needs rclpy's C part)
spec = importlib.util.spec_from_file_location("full_launch", os.path.join(sys.argv[2], "launch", "full.launch.py"))
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
ls = launch.LaunchService()
ls.include_launch_description(launch.LaunchDescription([IncludeLaunchDescription(
    LaunchDescriptionSource(m.generate_launch_description()),
    launch_arguments=[("namespace", "robot1"), ("rviz", "true")])]))
signal.signal(signal.SIGTERM, lambda *_: None)  # (a Python handler, so launch's own manager sees SIGTERM)
print("running", flush=True)
sys.exit(ls.run())
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_full_launch_rviz_folder_is_gone_after_launch_ends(tmp_path, sig):
    """ros2/launch's LaunchService (its launch_service.py): SIGINT shuts down and emits the Shutdown
    event that OnShutdown handlers see; SIGTERM (and SIGQUIT) only cancel the run task ('using
    SIGTERM can result in orphaned processes'), and SIGHUP is not handled at all. full.launch.py
    now removes its namespaced RViz config folder from an OnShutdown handler, so a launch stopped
    by a service manager (systemctl stop: SIGTERM) still leaves a ``gs_mapping_rviz_*`` folder in
    $TMPDIR at every stop, which is what de609aa meant to end. Nodes are stood in for by sleeping
    processes (launch_ros needs rclpy's C extension); launch itself is the real one.
    (Fixed: the namespaced config is one file per namespace in the user's runtime folder, replaced
    at each launch: however a launch ends, $TMPDIR keeps nothing and that folder that one file.)"""
    pytest.importorskip("launch")
    pytest.importorskip("ament_index_python")
    if not (REPO / "launch" / "full.launch.py").exists():
        pytest.skip("launch/ is not in this checkout")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    harness = tmp_path / "harness.py"
    harness.write_text(_LAUNCH_HARNESS)
    run = tmp_path / "run"  # (XDG_RUNTIME_DIR: where the namespaced RViz config goes)
    run.mkdir(mode=0o700)  # (the runtime folder exists, as the XDG spec has it)
    env = _env(
        PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), XDG_RUNTIME_DIR=str(run)
    )
    p = subprocess.Popen(
        [sys.executable, str(harness), str(tmp), str(REPO)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert "running" in p.stdout.readline()
        config = run / "gs_mapping" / "gs_mapping_robot1.rviz"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not config.exists():
            time.sleep(0.1)
        assert config.exists(), "no namespaced RViz config was written"
        time.sleep(1.0)  # (the processes started)
        p.send_signal(sig)
        p.communicate(timeout=40)
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # (stand-in nodes launch left behind, if any)
        except ProcessLookupError:
            pass
        p.wait()
    assert sorted(x.name for x in tmp.iterdir()) == []
    assert sorted(x.name for x in run.rglob("*")) == [
        "gs_mapping",
        "gs_mapping_robot1.rviz",
    ]  # (the one file)
