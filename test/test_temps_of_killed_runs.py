"""Temps a run killed with SIGKILL leaves, in three places the writer's own sweep did not reach: the
locks a forked child inherited, a scratch folder in ``$TMPDIR``, and a rerun refused because the
output exists. Every writer is a real OS process killed with SIGKILL; the truth is the kernel's
directory listing and process states."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from writer_runs import start_until_partial

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))

# Writes a bag, a file and a folder in argv[1] (out/bag, out/notes.txt, out/run), then forks a child
# that sleeps (a renderer busy with its frame: no exec, so it holds every descriptor it inherited);
# prints "writing CHILD_PID" and waits for a line on stdin.
_FORKING_WRITER = textwrap.dedent(
    """
    import contextlib, os, sys, time
    from pathlib import Path
    from gs_mapping.bag import BagWriter
    from gs_mapping.messages.std import string_message
    from gs_mapping.output_files import open_output, output_directory
    out = Path(sys.argv[1])
    with contextlib.ExitStack() as stack:
        bag = stack.enter_context(BagWriter(out / "bag", overwrite=True))
        bag.add_topic("/note", "std_msgs/msg/String")
        bag.write("/note", 1, string_message("new"))
        stack.enter_context(open_output(out / "notes.txt", "w", overwrite=True)).write("new")
        (stack.enter_context(output_directory(out / "run", overwrite=True)) / "note.txt").write_text("new")
        child = os.fork()
        if child == 0:
            time.sleep(120)
            os._exit(0)
        print("writing", child, flush=True)
        sys.stdin.readline()
        os.kill(child, 9)
        os.waitpid(child, 0)
    print("done", flush=True)
    """
)

# Holds a scratch folder (output_files.scratch_directory) of the name argv[1]; prints its path, then
# waits for a line on stdin.
_SCRATCH_HOLDER = textwrap.dedent(
    """
    import sys
    from gs_mapping.output_files import scratch_directory
    with scratch_directory(sys.argv[1]) as folder:
        (folder / "fleet.sqlite3").write_text("in use")
        print(folder, flush=True)
        sys.stdin.readline()
    """
)


def _state(pid: int) -> str:
    """The process's state letter as the kernel gives it (/proc/PID/stat)."""
    return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0].decode()


def _start(code: str, *argv: str, env=ENV) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = p.stdout.readline().strip()
    if not line:
        p.kill()
        pytest.fail(f"the writer did not start: {p.communicate()[1][-2000:]}")
    return p, line


def _kill(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=30) == -signal.SIGKILL


def _hidden(folder: Path) -> set[str]:
    return {n for n in os.listdir(folder) if n.startswith(".")}


def _sweep(out: Path) -> None:
    from gs_mapping.output_files import sweep_stale_temps

    for name in ("bag", "notes.txt", "run"):
        sweep_stale_temps(out / name)


def test_a_forked_child_neither_frees_nor_keeps_its_parents_temps(tmp_path):
    """A writer forks a child that keeps running (no exec). While the writer lives, its temps stay
    locked (the child closing its copies freed nothing of the parent's); once it is killed, a sweep
    removes all three at once though the child still runs."""
    p, line = _start(_FORKING_WRITER, str(tmp_path))
    child = int(line.split()[1])
    try:
        temps = _hidden(tmp_path)
        assert len(temps) == 3, temps  # the bag's .partial, the file's and the folder's temp
        _sweep(tmp_path)
        assert _hidden(tmp_path) == temps  # the live writer's: kept
        _kill(p)
        assert _state(child) in "RS"  # the child still runs, holding whatever it inherited
        _sweep(tmp_path)
        assert os.listdir(tmp_path) == []  # nothing was finished, every temp removed
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        if p.poll() is None:
            p.kill()
            p.wait()


def test_the_forked_writer_left_alone_finishes_its_outputs(tmp_path):
    """The same writer, not killed: the child's closing its copies took nothing from the parent,
    which installs the three outputs whole."""
    from gs_mapping.bag import BagReader

    p, _ = _start(_FORKING_WRITER, str(tmp_path))
    out, err = p.communicate("finish\n", timeout=60)
    assert p.returncode == 0 and out == "done\n", err[-2000:]
    assert sorted(os.listdir(tmp_path)) == ["bag", "notes.txt", "run"]
    assert (tmp_path / "notes.txt").read_text() == "new" and (
        tmp_path / "run" / "note.txt"
    ).read_text() == "new"
    with BagReader(tmp_path / "bag") as r:
        assert [m.data for _, _, m in r.messages(["/note"])] == ["new"]


def test_a_killed_runs_scratch_folder_goes_a_live_runs_stays(tmp_path, monkeypatch, caplog):
    """Two runs hold a scratch folder of one name in $TMPDIR; one is killed. The next run's scratch
    removes the killed one's (saying so), leaves the live one's, and its own is gone at its end."""
    import tempfile

    from gs_mapping.output_files import scratch_directory

    env = dict(ENV, TMPDIR=str(tmp_path))
    live, live_dir = _start(_SCRATCH_HOLDER, "gs_mapping_replay", env=env)
    killed, killed_dir = _start(_SCRATCH_HOLDER, "gs_mapping_replay", env=env)
    try:
        _kill(killed)
        assert sorted(os.listdir(tmp_path)) == sorted([Path(live_dir).name, Path(killed_dir).name])
        assert Path(live_dir).name.startswith(".gs_mapping_replay.tmp-")
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        with scratch_directory("gs_mapping_replay") as own:
            assert own.parent == tmp_path and own.is_dir()
            assert sorted(os.listdir(tmp_path)) == sorted([Path(live_dir).name, own.name])
        assert os.listdir(tmp_path) == [Path(live_dir).name]
        assert (Path(live_dir) / "fleet.sqlite3").read_text() == "in use"
        assert f"{killed_dir}: removed: the scratch folder of a run that was killed" in caplog.text
        out, err = live.communicate("finish\n", timeout=60)
        assert live.returncode == 0, err[-2000:]
        assert os.listdir(tmp_path) == []
    finally:
        for p in (live, killed):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_rerun_refused_for_an_existing_output_still_sweeps_a_killed_runs_partial(tmp_path, capsys):
    """``world --out w --overwrite`` killed while it writes leaves ``.w.*.partial``; ``world --out w``
    without ``--overwrite`` is refused (exit 2, ``w`` as it was), and the killed run's temp goes."""
    from gs_mapping.cli import main

    world = [sys.executable, "-m", "gs_mapping", "world", "--out", "w", "--size", "160x90", "--no-progress"]
    r = subprocess.run([*world, "--frames", "3"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "w").iterdir()}
    p, _ = start_until_partial([*world, "--frames", "2000", "--overwrite"], tmp_path, ENV, cwd=tmp_path)
    try:
        _kill(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    (partial,) = tmp_path.glob(".w.????????.partial")
    assert main(["world", "--out", str(tmp_path / "w"), "--frames", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'w'}: exists already" in err
    assert os.listdir(tmp_path) == ["w"]  # the partial swept
    assert {p.name: p.read_bytes() for p in (tmp_path / "w").iterdir()} == before
