"""Outside review (cli7): the command line as users run it, against issue 21's outcome rule (a correct
result, or one line naming what was wrong and exit status 2; never a traceback; an input never
written over, even with --overwrite; Ctrl-C leaves no half-written output).

Each test runs ``gs-mapping`` as its own process, the way a shell, a service manager or a script
starts it, and compares with something outside the project: numba's own cache rules, Python's
documented ``sys.stderr is None`` for a closed descriptor, coreutils' answer to a closed stdout,
numpy's seed rule, the checkpoint bytes as they were, the world's own byte-identical bag.

Found here (xfail strict until fixed):
- codec commands die with numba's ``RuntimeError: cannot cache function`` where the package is
  installed read-only and $HOME is not writable (a system install run by a service user);
- ``2>&-`` (stderr closed): ``show_progress`` calls ``sys.stderr.isatty()`` on None: exit 1, nothing
  written (world, map, hd-train, hd-predict, demo);
- ``demo --seed -1`` is a numpy traceback (``world --seed -1`` is one line);
- ``hd-predict --out CKPT --checkpoint CKPT --overwrite`` writes the JSON over the checkpoint;
- ``hd-train --out RUN --overwrite --init-from RUN/model.pt`` replaces the checkpoint it starts from;
- ``>&-`` (stdout closed): ``params``/``info --json``/``hd-eval`` print nothing and exit 0;
- full.launch.py leaves an empty ``gs_mapping_rviz_*`` folder in $TMPDIR on every launch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pytest

import gs_mapping

SRC = Path(gs_mapping.__file__).resolve().parents[1]  # src/ (gs_mapping, gs_map_share, gsmap_hd)
REPO = SRC.parent
SHIPPED_CKPT = SRC / "gsmap_hd" / "assets" / "gsmap_small_world.pt"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def _gs(args, *, cwd=None, env=None, close_fds_in_child=(), timeout=120, prefix=(), **kw):
    """``gs-mapping ARGS`` as its own process (the console script's body). ``close_fds_in_child``:
    descriptors closed before exec, as a shell's ``2>&-`` / ``>&-`` does."""

    def pre():
        for fd in close_fds_in_child:
            os.close(fd)

    cmd = [*prefix, sys.executable, "-m", "gs_mapping", *map(str, args)]
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=env or _env(),
        timeout=timeout,
        preexec_fn=pre if close_fds_in_child else None,
        **kw,
    )


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _write_3dgs_ply(path: Path, n: int = 50, seed: int = 0) -> Path:
    """A standard 3DGS PLY written by hand (INRIA's layout: x y z, normals, f_dc, opacity, scale,
    rot; binary little endian), independent of the project's writer."""
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


def _world(out: Path, frames: int = 2, *extra) -> Path:
    r = _gs(
        [
            "world",
            "--out",
            out,
            "--frames",
            frames,
            "--size",
            "64x36",
            "--workers",
            0,
            "--no-progress",
            *extra,
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return out


def _one_error_line(stderr: str, command: str) -> str:
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith(f"gs-mapping {command}: error: ")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


# --------------------------------------------------------------------------------------------------
# numba's on-disk cache where nothing may be written: a system install run by a service user
# --------------------------------------------------------------------------------------------------


def _cannot_write_as_this_user_prefix() -> list[str]:
    """A prefix under which permission bits bind: as root, setpriv drops CAP_DAC_OVERRIDE (root
    otherwise writes through chmod a-w); as anyone else, nothing."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is absent: read-only folders would not bind")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def test_encode_from_a_read_only_install_with_an_unwritable_home_is_the_plain_paths_bytes(tmp_path):
    """A package installed where its user cannot write (a Debian/ROS package under /opt, a container
    with a read-only root file system) run by a service user whose $HOME is not writable (systemd's
    nobody, /nonexistent). numba's own rule (numba/core/caching.py, _CacheImpl: the in-tree
    __pycache__, then the user-wide cache dir, else ``RuntimeError: cannot cache function``) makes
    ``@njit(cache=True)`` fail at import there. jit.py promises a plain path beside every compiled
    loop with the same bytes (GS_MAP_SHARE_NUMBA=0): the reference here. The outcome rule: the
    encode succeeds with those bytes (or, at worst, one line), never a traceback."""
    pytest.importorskip("numba")
    prefix = _cannot_write_as_this_user_prefix()
    site = tmp_path / "site"
    shutil.copytree(SRC, site, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    scene = _write_3dgs_ply(tmp_path / "scene.ply")
    for p in [site, *site.rglob("*")]:
        p.chmod(stat.S_IMODE(p.stat().st_mode) & ~0o222)
    home.chmod(0o555)
    drop = ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "GS_MAP_SHARE_NUMBA", "NUMBA_DISABLE_JIT")
    env = {k: v for k, v in _env().items() if k not in drop}
    env |= {"HOME": str(home), "PYTHONPATH": str(site)}
    try:
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", f"open({str(site / 'probe')!r}, 'w')"],
            env=env,
            capture_output=True,
        )
        assert probe.returncode != 0, "the copy is writable after all: the case is not set up"
        plain = _gs(
            ["encode", scene, out / "plain.gsd"],
            env=env | {"GS_MAP_SHARE_NUMBA": "0"},
            prefix=prefix,
            capture_output=True,
            text=True,
        )
        assert plain.returncode == 0, plain.stderr[-2000:]
        r = _gs(["encode", scene, out / "jit.gsd"], env=env, prefix=prefix, capture_output=True, text=True)
    finally:
        home.chmod(0o755)
        for p in [site, *site.rglob("*")]:
            p.chmod(stat.S_IMODE(p.stat().st_mode) | 0o200)
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    assert r.returncode == 0, r.stderr[-1500:]
    assert (out / "jit.gsd").read_bytes() == (out / "plain.gsd").read_bytes()


# --------------------------------------------------------------------------------------------------
# closed standard descriptors: 2>&- and >&-
# --------------------------------------------------------------------------------------------------


def test_world_with_stderr_closed_writes_the_same_bag(tmp_path):
    """Python's documentation (sys.__stderr__): 'Under some conditions stdin, stdout and stderr …
    can be None', which is what a process started with descriptor 2 closed gets (``cmd 2>&-`` in a
    script, a daemon started without a terminal). print() then discards, logging stays silent. The
    reference: the same seeded world with stderr open, byte-identical (README: 'same seed,
    byte-identical bag'). Without --no-progress, so the progress rule is what is asked."""
    ref = _world(tmp_path / "ref" / "w")
    (tmp_path / "closed").mkdir()
    r = _gs(
        ["world", "--out", tmp_path / "closed" / "w", "--frames", 2, "--size", "64x36", "--workers", 0],
        close_fds_in_child=(2,),
        stdout=subprocess.DEVNULL,
    )
    assert r.returncode == 0
    assert (tmp_path / "closed" / "w" / "w.mcap").read_bytes() == (ref / "w.mcap").read_bytes()


def test_with_stderr_closed_no_log_text_lands_in_an_output_opened_on_descriptor_2(tmp_path):
    """With descriptor 2 closed, the first file the process opens gets number 2 (open(2) takes the
    lowest free one), so anything that still writes to descriptor 2 (a C library, a worker process)
    writes into an output. The reference: the seeded world with stderr open; the closed-stderr run
    (workers on, --no-progress to step around the bug above) must give the same bytes."""
    ref = _world(tmp_path / "ref" / "w")
    (tmp_path / "closed").mkdir()
    r = _gs(
        [
            "world",
            "--out",
            tmp_path / "closed" / "w",
            "--frames",
            2,
            "--size",
            "64x36",
            "--workers",
            2,
            "--no-progress",
        ],
        close_fds_in_child=(2,),
        stdout=subprocess.DEVNULL,
    )
    assert r.returncode == 0
    for name in ("w.mcap", "metadata.yaml"):
        assert (tmp_path / "closed" / "w" / name).read_bytes() == (ref / name).read_bytes(), name


@pytest.mark.parametrize("command", ["params", "info", "hd-eval"])
def test_a_closed_stdout_is_an_error_as_coreutils_make_it(tmp_path, command):
    """coreutils' answer to ``cmd >&-`` (here: /usr/bin/printf or sh's echo, run first as the
    reference): 'write error: Bad file descriptor', non-zero status. The suite already says
    'error: No space left on device', exit 2, for ``> /dev/full``; a closed stdout loses the output
    the same way and must not report success."""
    ref = subprocess.run(["sh", "-c", "echo x >&-"], capture_output=True)
    assert ref.returncode != 0  # the reference behaviour on this machine
    if command == "params":
        args = ["params"]
    elif command == "info":
        bag = _world(tmp_path / "w")
        args = ["info", "--json", bag]
    else:
        hd = tmp_path / "hd.json"
        hd.write_text(
            '{"results": [{"stamp_ns": 1, "vectors": [{"pts": [[0, 0], [5, 0]], "type": 0, "confidence_level": 0.9}]}],'
            ' "GTs": [{"stamp_ns": 1, "vectors": [{"pts": [[0, 0], [5, 0]], "type": 0}]}]}'
        )
        probe = _gs(["hd-eval", hd], capture_output=True, text=True)
        assert probe.returncode == 0 and probe.stdout.strip(), probe.stderr
        args = ["hd-eval", hd]
    r = _gs(args, close_fds_in_child=(1,), stderr=subprocess.PIPE, text=True)
    assert r.returncode != 0
    _one_error_line(r.stderr, command)


# --------------------------------------------------------------------------------------------------
# Ctrl-C as a terminal sends it: to the whole foreground process group, workers included
# --------------------------------------------------------------------------------------------------


def _signal_world_group(tmp_path: Path, sig: int) -> tuple[int, str, list[str]]:
    """``world`` with 2 rendering workers in its own session; ``sig`` to the whole group once the
    bag is being written (its hidden ``.w.*.partial`` folder is there). (rc, stderr, names left)."""
    out = tmp_path / "w"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gs_mapping",
            "world",
            "--out",
            str(out),
            "--frames",
            "400",
            "--workers",
            "2",
            "--size",
            "320x180",
            "--no-progress",
        ],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(x.name.startswith(".w.") for x in tmp_path.iterdir()):
            time.sleep(0.1)
        time.sleep(0.7)  # into the rendering
        assert p.poll() is None, "world finished before the signal: make the run longer"
        os.killpg(p.pid, sig)
        _, err = p.communicate(timeout=60)
        time.sleep(0.5)  # (orphaned workers, if any, finish dying)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode, err, sorted(x.name for x in tmp_path.iterdir())


@pytest.mark.parametrize(
    "sig, rc, line", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_ctrl_c_or_sigterm_to_the_process_group_of_world_with_workers_leaves_nothing(tmp_path, sig, rc, line):
    """A terminal's Ctrl-C is SIGINT to every process of the foreground group (termios ISIG), and
    ``systemctl stop`` / ``docker stop`` / ``timeout`` send SIGTERM to the group or the cgroup, so
    world's rendering workers get it too, not only the parent (the existing tests signal the one
    pid). README: 'SIGTERM unwinds a command as Ctrl-C does (exit 143, no half-written output
    left)'. The rule: 130 / 143, the one line, no worker's traceback, no bag and no hidden partial
    folder left."""
    got, err, left = _signal_world_group(tmp_path, sig)
    # (after "interrupted", CPython sometimes ends the process by SIGINT itself, as a program that
    # was interrupted should: a shell shows that as 130 too. Seen under load, 1 run in 3 with 2
    # workers, at 8d718da too; strace shows the process sending itself SIGINT as it exits, which
    # CPython does when it counted a KeyboardInterrupt as unhandled somewhere; cause not found)
    assert got == rc or (sig == signal.SIGINT and got == -signal.SIGINT), err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    assert [ln for ln in err.splitlines() if ln.strip()] == [f"gs-mapping world: {line}"], err[-2000:]
    assert left == []


def test_a_hangup_of_the_terminal_unwinds_world_as_sigterm_does(tmp_path):
    """When the terminal or ssh session of a foreground job goes away, the kernel sends SIGHUP to
    the foreground process group (POSIX, General Terminal Interface: modem disconnect) and bash to
    every job it started; a long ``world`` or ``map`` over ssh meets it whenever the link drops.
    The reference is the same run stopped with SIGTERM (the test above): nothing left behind. Here:
    no hidden partial folder left and no traceback, whatever the exit status (129 by the shell's
    rule)."""
    got, err, left = _signal_world_group(tmp_path, signal.SIGHUP)
    assert got != 0
    assert "Traceback" not in err, err[-1500:]
    assert left == [], left


# --------------------------------------------------------------------------------------------------
# numeric options: the seed
# --------------------------------------------------------------------------------------------------


def test_demo_with_a_negative_seed_is_one_line_naming_seed(tmp_path):
    """numpy's SeedSequence (checked here first) takes only non-negative integers; ``world`` says so
    in one line for its --seed (its check is the reference). ``demo --seed`` feeds the same world:
    exit 2, one line naming --seed, nothing left in --out."""
    with pytest.raises(ValueError):
        np.random.SeedSequence([-1])
    w = _gs(["world", "--out", tmp_path / "w", "--seed", "-1"], capture_output=True, text=True)
    assert w.returncode == 2 and "--seed" in _one_error_line(w.stderr, "world")
    r = _gs(["demo", "--seed", "-1", "--out", tmp_path / "demo"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-1500:]
    assert "--seed" in _one_error_line(r.stderr, "demo")
    assert not (tmp_path / "demo").exists()


# --------------------------------------------------------------------------------------------------
# an input is never written over, even with --overwrite: the checkpoints
# --------------------------------------------------------------------------------------------------


def test_hd_predict_never_writes_over_the_checkpoint_it_reads(tmp_path):
    """README, Reliability: 'an existing output is replaced only with --overwrite, an input never'.
    The checkpoint is an input of hd-predict as much as the bag is (the bag inside --out is already
    refused). A slip of the tab key (``--out model.pt``) with --overwrite in the shell history must
    keep the model: exit 2, one line naming it, bytes as they were (the shipped file's)."""
    if not SHIPPED_CKPT.exists():
        pytest.skip(f"{SHIPPED_CKPT}: the shipped checkpoint is absent")
    bag = _world(tmp_path / "w")
    ckpt = tmp_path / "model.pt"
    shutil.copyfile(SHIPPED_CKPT, ckpt)
    before = _sha(ckpt)
    r = _gs(
        [
            "hd-predict",
            bag,
            "--out",
            ckpt,
            "--checkpoint",
            ckpt,
            "--overwrite",
            "--max-frames",
            1,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert _sha(ckpt) == before == _sha(SHIPPED_CKPT)
    assert r.returncode == 2, r.stderr[-1500:]
    assert str(ckpt) in _one_error_line(r.stderr, "hd-predict")


def test_hd_train_overwrite_keeps_the_checkpoint_it_fine_tunes_from(tmp_path):
    """output_files' own rule for folders: 'a directory holding an input' is never replaced, even
    with --overwrite ('holds the input …; refusing to replace it'); the README: 'an input never'.
    ``--init-from run/model.pt`` in ``run/`` with ``--overwrite`` (fine-tune the last result in
    place) reads the weights and then swaps the folder, so the model the user started from is gone.
    Wanted: refused in one line before training, or the file kept as it was."""
    pytest.importorskip("torch")  # (hd-train reads the checkpoint with it)
    if not SHIPPED_CKPT.exists():
        pytest.skip(f"{SHIPPED_CKPT}: the shipped checkpoint is absent")
    run = tmp_path / "run"
    run.mkdir()
    ckpt = run / "model.pt"
    shutil.copyfile(SHIPPED_CKPT, ckpt)
    before = _sha(ckpt)
    r = _gs(
        [
            "hd-train",
            "--out",
            run,
            "--overwrite",
            "--init-from",
            ckpt,
            "--steps",
            1,
            "--frames",
            2,
            "--eval-every",
            0,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    if r.returncode == 2:
        assert "init-from" in r.stderr or str(ckpt) in _one_error_line(r.stderr, "hd-train")
    assert ckpt.exists() and _sha(ckpt) == before


# --------------------------------------------------------------------------------------------------
# ros2 launch: what each launch leaves behind
# --------------------------------------------------------------------------------------------------


def _full_launch_actions(args: dict[str, str]) -> list:
    """full.launch.py's ``_actions`` with stand-ins for launch, launch_ros and ament_index_python
    (as test_outside_ff4 does): each Node is the dict of its keyword arguments."""
    import importlib.util

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context.launch_configurations[self.name]

    fakes = {
        "ament_index_python": types.ModuleType("ament_index_python"),
        "ament_index_python.packages": types.SimpleNamespace(get_package_share_directory=lambda p: str(REPO)),
        "launch": types.SimpleNamespace(LaunchDescription=list),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=None, OpaqueFunction=None),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=LaunchConfiguration),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.SimpleNamespace(Node=lambda **kw: kw),
    }
    saved = {k: sys.modules.get(k) for k in fakes}
    sys.modules.update(fakes)  # type: ignore[arg-type]
    try:
        spec = importlib.util.spec_from_file_location("full_launch_cli7", REPO / "launch" / "full.launch.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module._actions(types.SimpleNamespace(launch_configurations=args))
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_a_launch_without_namespace_leaves_nothing_in_tmpdir(tmp_path, monkeypatch):
    """Without ``namespace:=`` RViz is handed the package's own ``config/gs_mapping.rviz`` (checked
    here from the Node's arguments), so nothing needs writing; yet each launch made a
    ``gs_mapping_rviz_*`` folder that nothing removes (this machine's /tmp held 120 of them from
    test runs). A robot launched at every boot collects them for good."""
    if not (REPO / "launch" / "full.launch.py").exists():
        pytest.skip("launch/ is not in this checkout")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    args = {"params_file": str(REPO / "config" / "full.yaml"), "use_sim_time": "", "device": ""}
    args |= {"namespace": "", "rviz": "true"}
    rviz = [a for a in _full_launch_actions(args) if a.get("executable") == "rviz2"]
    assert len(rviz) == 1
    config = rviz[0]["arguments"][rviz[0]["arguments"].index("-d") + 1]
    assert Path(config).resolve() == (REPO / "config" / "gs_mapping.rviz").resolve()
    assert list(tmp_path.iterdir()) == []
