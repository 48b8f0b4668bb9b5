"""Outside check (fourth round) of issue 21 (nothing lost): crash consistency of the stores and
outputs the suite keeps when its process is killed (SIGKILL: the OOM killer, a pre-empted job, a
power cut) at chosen points and restarted, and when two processes use one output at once. Classes
the suite and the three earlier outside reviews do not bring:

- ``hd-train --overwrite`` installs a started-over run's staged files one rename at a time: a kill
  between two of them (every crash point tried, deterministically) must leave the old run or the
  new one, never the new config beside the old checkpoint;
- two ``hd-train`` processes on one fresh ``--out`` (a training launched twice), made deterministic
  by freezing one (SIGSTOP) at a chosen point while the other runs;
- a replaced output's permission bits (what ``open(2)`` with O_TRUNC, i.e. a shell's ``>``, keeps);
- the repaired copy of a cut recording in ``$TMPDIR`` after repeated kills (bounded, or not);
- the bench's result files (``bench/results``) rewritten in place under a file-size limit;
- durability as the kernel sees it (strace): a staged file renamed over a previous run's file must
  have been fsynced first (rename(2) orders names, not data), and a folder an output creates must
  be followed by an fsync of the folder holding it.

References are independent of the code under test: SIGKILL itself (the process dies at the chosen
call; the kernel does the rest), the previous outputs' bytes, torch.load of the checkpoints (the
config stored inside last.pt against config.json beside it), os.stat and the umask, RLIMIT_FSIZE,
and the system calls strace records. Where the code is wrong the test is a strict xfail whose
reason names the bug.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
TRAIN = [
    "hd-train",
    "--frames",
    "1",
    "--batch-size",
    "1",
    "--eval-every",
    "0",
    "--threads",
    "1",
    "--no-progress",
]

# A child that runs the CLI and sends itself SIGKILL (or SIGSTOP) at a chosen os.replace (before it,
# or just after it returned): the process dies (or freezes) exactly there, as under the OOM killer (or
# a descheduled job); nothing of the suite is changed.
_KILLING_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    dst_name, src_part, nth, when = os.environ["KILL_AT"].split("|")
    nth, seen, real = int(nth), [0], os.replace
    sig = getattr(signal, os.environ.get("KILL_SIGNAL", "SIGKILL"))

    def replace(src, dst, *a, **kw):
        src, dst = os.fspath(src), os.fspath(dst)  # (src_part: in the source's path, not the target's)
        hit = os.path.basename(dst) == dst_name and src_part in src and src_part not in dst
        if hit:
            seen[0] += 1
        if hit and seen[0] == nth and when == "before":
            os.kill(os.getpid(), sig)
        out = real(src, dst, *a, **kw)
        if hit and seen[0] == nth and when == "after":
            os.kill(os.getpid(), sig)
        return out

    os.replace = replace
    import gs_mapping.output_files as output_files  # (a folder swapped whole: renameat2's exchange)
    real2 = output_files._renameat2

    def renameat2(src, dst, flags):
        src, dst = os.fspath(src), os.fspath(dst)
        hit = os.path.basename(dst) == dst_name and src_part in src
        if hit and when == "before":
            os.kill(os.getpid(), sig)
        out = real2(src, dst, flags)
        if hit and when == "after":
            os.kill(os.getpid(), sig)
        return out

    output_files._renameat2 = renameat2
    from gs_mapping.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _cli(argv, timeout=120, **kw):
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kw.pop("env", ENV),
        **kw,
    )


def _killed_at(argv, dst_name, src_part, nth, when, timeout=120):
    env = dict(ENV, KILL_AT=f"{dst_name}|{src_part}|{nth}|{when}")
    return subprocess.run(
        [sys.executable, "-c", _KILLING_CHILD, *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _config(tmp: Path, name: str, **train) -> Path:
    body = "".join(f"      {k}: {v}\n" for k, v in train.items())
    p = tmp / name
    p.write_text(f"/**:\n  ros__parameters:\n    hd_train:\n{body}")
    return p


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _strace(argv, log: Path, cwd: Path, calls: str):
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    r = subprocess.run(
        [strace, "-f", "-qq", "-y", "-e", f"trace={calls}", "-o", str(log), *map(str, argv)],
        capture_output=True, text=True, timeout=180, env=ENV, cwd=cwd,
    )  # fmt: skip
    if r.returncode != 0 and "ptrace" in r.stderr:
        pytest.skip(f"strace cannot trace here: {r.stderr.strip()[:200]}")
    return r


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished one-step hd-train run (config.json, last.pt, model.pt, metrics.jsonl)."""
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("outside21d_run")
    r = _cli([*TRAIN, "--out", d / "run", "--steps", "1"])
    assert r.returncode == 0, r.stderr[-600:]
    assert sorted(_files(d / "run")) == ["config.json", "last.pt", "metrics.jsonl", "model.pt"]
    return d / "run"


# ------------------------------------------------------------------------------------------------
# hd-train --overwrite killed while the new run's files take the old one's places


def test_hd_train_overwrite_killed_between_its_renames_leaves_the_old_run_or_the_new_one(
    finished_run, tmp_path
):
    """README: 'an interrupted run leaves either the old outputs or the complete new ones, never a
    mix'. A one-step run is started over with ``--overwrite --steps 2 --lr …`` and killed (SIGKILL)
    at each of the renames that install its first checkpoint's files, before and after each. After
    every kill the folder must be the old run byte for byte, or a run whose files agree with each
    other: the config stored inside last.pt (read with torch.load) is config.json's, and a model.pt
    present is not the old run's."""
    torch = pytest.importorskip("torch")
    old = _files(finished_run)
    mixes = []
    # (the new run's folder takes the old one's place in one exchange: killed before and after it)
    for name in ("run",):
        for when in ("before", "after"):
            run = tmp_path / f"{name}-{when}"
            shutil.copytree(finished_run, run)
            r = _killed_at(
                [*TRAIN, "--out", run, "--steps", "2", "--lr", "0.0003", "--overwrite"],
                run.name,
                ".hd-train-",
                1,
                when,
            )
            assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-600:])
            now = _files(run)
            if now == old:
                continue
            cfg = json.loads(now["config.json"])
            inside = torch.load(run / "last.pt", map_location="cpu", weights_only=True)["config"]
            if inside != cfg or now.get("model.pt") == old["model.pt"]:
                mixes.append(
                    f"killed {when} installing {name}: config.json steps {cfg.get('steps')}, "
                    f"last.pt's steps {inside.get('steps')}, old model.pt kept: "
                    f"{now.get('model.pt') == old['model.pt']}"
                )
    assert not mixes, mixes


# ------------------------------------------------------------------------------------------------
# durability as the kernel sees it: the staged log renamed over the previous run's without fsync


def test_every_file_hd_train_overwrite_renames_into_out_was_fsynced_first(finished_run, tmp_path):
    """rename(2) makes the switch of names atomic, not the new file's data durable: a power cut
    after it can leave the name pointing at an empty file (the ext4 zero-length case; output_files
    fsyncs for exactly this, and the earlier review checked last.pt alone). Recorded with strace
    (``-y`` names each fsync's file): every rename into OUT must have a source whose data was
    fsynced, under its own name or a name it was renamed from."""
    pytest.importorskip("torch")
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    log = tmp_path / "trace.txt"
    argv = [sys.executable, "-m", "gs_mapping", *TRAIN, "--out", run, "--steps", "2", "--overwrite"]
    r = _strace(argv, log, tmp_path, "rename,renameat,renameat2,fsync,fdatasync")
    assert r.returncode == 0, r.stderr[-600:]
    synced: set[str] = set()
    unsynced = []
    for line in log.read_text().splitlines():
        m = re.search(r"\b(?:fsync|fdatasync)\(\d+<(.*)>\)\s+=\s+0", line)
        if m:
            synced.add(m.group(1))
            continue
        m = re.search(r'\brename(?:at2?)?\((?:[^"]*)"([^"]+)",\s*(?:[^"]*)"([^"]+)".*=\s+0$', line)
        if m:
            src, dst = (os.path.normpath(os.path.join(tmp_path, x)) for x in m.groups())
            if src in synced:
                synced.add(dst)
            elif Path(dst).parent == run:
                unsynced.append(Path(dst).name)
    assert not unsynced, f"renamed into {run.name}/ without an fsync of their data: {unsynced}"


# ------------------------------------------------------------------------------------------------
# two hd-train processes on one fresh --out (a training launched twice)


def test_two_hd_trains_on_one_fresh_out_never_mix_their_files(tmp_path):
    """A training launched twice (two terminals, a job scheduler retrying) on the same new
    ``--out``, with different seeds and lengths. Made deterministic: the first run is frozen
    (SIGSTOP, as a descheduled process) just before it installs its config.json, the second runs
    to its end, then the first is let go (SIGCONT). Issue 21: never a mix. Whatever each exit
    status, the folder must hold one run: metrics.jsonl is steps 1 … N once, where N is the
    ``steps`` of config.json, and the config stored inside last.pt (torch.load) is config.json's."""
    torch = pytest.importorskip("torch")
    cfg = _config(tmp_path, "log.yaml", log_every=1)
    out = tmp_path / "run"
    argv = [*TRAIN, "--config", str(cfg), "--out", str(out)]
    first = subprocess.Popen(
        [sys.executable, "-c", _KILLING_CHILD, *argv, "--steps", "3", "--seed", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(ENV, KILL_AT="config.json|.config.json.|1|before", KILL_SIGNAL="SIGSTOP"),
    )  # fmt: skip
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and first.poll() is None:
            with open(f"/proc/{first.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":  # stopped
                    break
            time.sleep(0.01)
        assert first.poll() is None, first.stderr.read()[-600:]
        second = _cli([*argv, "--steps", "4", "--seed", "2"], timeout=400)
    finally:
        first.send_signal(signal.SIGCONT)
    err_first = first.communicate(timeout=400)[1]
    errs = [err_first, second.stderr]
    assert all("Traceback" not in e for e in errs), errs
    assert 0 in (first.returncode, second.returncode), [e[-300:] for e in errs]
    cfg_json = json.loads((out / "config.json").read_text())
    inside = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["config"]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert (inside == cfg_json, steps) == (True, list(range(1, cfg_json["steps"] + 1))), (
        f"exit {first.returncode}/{second.returncode}; config.json steps {cfg_json['steps']}, "
        f"last.pt's {inside['steps']}; metrics.jsonl steps {steps}"
    )


# ------------------------------------------------------------------------------------------------
# a replaced output's permission bits


@pytest.mark.parametrize("mode", [0o600, 0o664])
def test_overwrite_keeps_the_permissions_the_user_gave_the_file(tmp_path, mode):
    """A user makes a map private (``chmod 600``) or shares it with a group (``chmod 664``) and then
    rewrites it with ``convert … --overwrite``. Writing over an existing file the way a shell's
    ``>`` or ``open(path, 'wb')`` does (O_TRUNC, done here on a twin with the same mode: the
    reference) keeps its mode; the output written through the temp file and rename must keep it too."""
    from synthetic_maps import synthetic_map

    from gs_mapping.ply import save_ply

    src = tmp_path / "in.ply"
    save_ply(synthetic_map(200, 0, seed=2), src)
    out, twin = tmp_path / "out.spz", tmp_path / "twin.spz"
    for p in (out, twin):
        p.write_bytes(b"an earlier output")
        p.chmod(mode)
    with open(twin, "wb") as f:  # the reference: writing over an existing file
        f.write(b"new")
    r = _cli(["convert", src, out, "--overwrite"])
    assert r.returncode == 0, r.stderr[-400:]
    assert stat.S_IMODE(twin.stat().st_mode) == mode  # (the reference does keep it)
    assert oct(stat.S_IMODE(out.stat().st_mode)) == oct(mode)


# ------------------------------------------------------------------------------------------------
# the repaired copy of a cut recording after repeated kills


def _copy_under_way(tmpdir, before):
    """Whether a new folder in ``tmpdir`` holds a non-empty file. The copy's folder is renamed once
    whole, so it may vanish between listing and walking: that reads as "not yet"."""
    try:
        new = [x for x in tmpdir.iterdir() if x not in before]
        return bool(new) and any(f.is_file() and f.stat().st_size > 0 for f in new[0].rglob("*"))
    except FileNotFoundError:
        return False


def test_repeated_kills_while_reading_a_cut_recording_do_not_fill_tmpdir(tmp_path):
    """Reading a recording cut short (``ros2 bag record`` killed) makes a repaired copy in $TMPDIR,
    often a RAM-backed tmpfs. A user's ``map`` on such a bag killed by the OOM killer, then run
    again, three times: after the last run ends, $TMPDIR must not hold the copies of the killed
    runs (what one run may leave behind is bounded, not one bag's size per kill)."""
    bag = tmp_path / "bag"
    r = _cli(["world", "--out", bag, "--frames", "6", "--size", "320x180", "--no-progress"])
    assert r.returncode == 0, r.stderr[-400:]
    (mcap,) = bag.glob("*.mcap")
    os.truncate(mcap, mcap.stat().st_size - 3000)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = dict(ENV, TMPDIR=str(tmpdir))
    for _ in range(3):
        before = set(tmpdir.iterdir())
        p = subprocess.Popen([sys.executable, "-m", "gs_mapping", "info", str(bag)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        end = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < end:  # killed once its copy is under way
            if _copy_under_way(tmpdir, before):
                break
            time.sleep(0.001)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    ok = _cli(["info", bag], env=env)
    assert ok.returncode == 0 and "cut short" in ok.stderr, ok.stderr[-400:]
    left = sum(f.stat().st_size for f in tmpdir.rglob("*") if f.is_file())
    assert left == 0, f"{len(list(tmpdir.iterdir()))} folders, {left} bytes left in TMPDIR"


# ------------------------------------------------------------------------------------------------
# bench results rewritten in place


def test_a_bench_result_that_cannot_be_written_whole_leaves_the_previous_one(tmp_path):
    """bench/results holds the figures the README cites. A bench run whose results cannot be
    written whole (``ulimit -f`` as a shell sets it: EFBIG past 64 kB, the same moment a kill or a
    full disk makes) must leave the previous results file as it was, not a truncated JSON. Run in
    a child process with RESULTS pointed into tmp_path; read back with json (the reference)."""
    import gs_mapping

    common = Path(gs_mapping.__file__).resolve().parents[2] / "bench" / "common.py"
    if not common.is_file():
        pytest.skip(f"{common} not found")
    results = tmp_path / "results"
    results.mkdir()
    (results / "x.json").write_text('{"previous": true}\n')
    (results / "x.md").write_text("previous\n")
    code = textwrap.dedent(
        f"""
        import importlib.util, pathlib
        spec = importlib.util.spec_from_file_location("bench_common", {str(common)!r})
        c = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(c)
        c.RESULTS = pathlib.Path({str(results)!r})
        c.write_results("x", {{"v": list(range(50000))}}, "# new")
        """
    )

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                       preexec_fn=cap, timeout=60)  # fmt: skip
    assert r.returncode != 0  # (the limit was hit)
    text = (results / "x.json").read_text()
    try:
        json.loads(text)
    except ValueError:
        pytest.fail(f"x.json is now {len(text)} bytes of a cut JSON, the previous results are gone")
    assert text == '{"previous": true}\n'


# ------------------------------------------------------------------------------------------------
# durability of the folders an output creates


def test_an_output_in_new_folders_is_durable_with_those_folders(tmp_path):
    """``convert in.ply new/deep/o.spz`` makes ``new`` and ``new/deep``. The file is fsynced and so
    is ``new/deep`` after the rename (output_files' rule: a name survives a power cut only once
    the directory holding it is fsynced). The same holds for the new folders' own names: each
    folder the command created must be followed by an fsync of the folder holding it (fsync(2),
    POSIX; what SQLite and PostgreSQL do for a new directory). Recorded with strace."""
    from synthetic_maps import synthetic_map

    from gs_mapping.ply import save_ply

    save_ply(synthetic_map(100, 0, seed=3), tmp_path / "in.ply")
    log = tmp_path / "trace.txt"
    r = _strace([sys.executable, "-m", "gs_mapping", "convert", "in.ply", "new/deep/o.spz"], log, tmp_path,
                "mkdir,mkdirat,fsync,fdatasync")  # fmt: skip
    assert r.returncode == 0 and (tmp_path / "new" / "deep" / "o.spz").is_file(), r.stderr[-400:]
    made: list[Path] = []
    synced_after: dict[Path, bool] = {}
    for line in log.read_text().splitlines():
        m = re.search(r'\bmkdir(?:at)?\((?:[^"]*)"([^"]+)",.*=\s+0$', line)
        if m:
            d = Path(os.path.normpath(os.path.join(tmp_path, m.group(1))))
            made.append(d)
            synced_after[d.parent] = False
            continue
        m = re.search(r"\b(?:fsync|fdatasync)\(\d+<(.*)>\)\s+=\s+0", line)
        if m and Path(m.group(1)) in synced_after:
            synced_after[Path(m.group(1))] = True
    assert [d.relative_to(tmp_path).as_posix() for d in made] == ["new", "new/deep"], made
    missing = [str(p.relative_to(tmp_path.parent)) for p, ok in synced_after.items() if not ok]
    assert not missing, f"folders holding a new folder, never fsynced: {missing}"
