"""Temps that a killed writer leaves beside its output (``kill -9``, out of memory) are removed by
the next writer of that output, each with one line; a live writer's are never touched.

Every writer is a real OS process: one is killed with SIGKILL while it writes (its temps stay, as
they would on a robot), another writes the same outputs at the same time and finishes afterwards.
The truth is the kernel's directory listing and the bytes each output holds."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from writer_runs import start_until_partial

SRC = Path(__file__).resolve().parents[1] / "src"

# A writer of three outputs in the folder argv[1]: a bag (BagWriter), a file (open_output) and a
# folder (output_directory); it says "writing" once all three temps exist, then waits for a line on
# stdin before it finishes them, each holding argv[2].
_WRITER = textwrap.dedent(
    """
    import contextlib, sys
    from pathlib import Path
    from gs_mapping.bag import BagWriter
    from gs_mapping.messages.std import string_message
    from gs_mapping.output_files import open_output, output_directory
    out, text = Path(sys.argv[1]), sys.argv[2]
    with contextlib.ExitStack() as stack:
        bag = stack.enter_context(BagWriter(out / "bag", overwrite=True))
        bag.add_topic("/note", "std_msgs/msg/String")
        bag.write("/note", 1, string_message(text))
        stack.enter_context(open_output(out / "notes.txt", "w", overwrite=True)).write(text)
        (stack.enter_context(output_directory(out / "run", overwrite=True)) / "note.txt").write_text(text)
        print("writing", flush=True)
        sys.stdin.readline()
    print("done", flush=True)
    """
)


def _writer(out: Path, text: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(out), text],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = p.stdout.readline()
    if line != "writing\n":
        p.kill()
        pytest.fail(f"the writer did not start: {line!r} {p.communicate()[1]}")
    return p


def _hidden(folder: Path) -> set[str]:
    return {n for n in os.listdir(folder) if n.startswith(".")}


def _bag_note(bag: Path) -> str:
    from gs_mapping.bag import BagReader

    with BagReader(bag) as r:
        return [m.data for _, _, m in r.messages(["/note"])][0]


def test_a_killed_writers_temps_go_and_a_live_writers_stay(tmp_path, caplog):
    from gs_mapping.bag import BagWriter
    from gs_mapping.messages.std import string_message
    from gs_mapping.output_files import output_directory, write_text

    live = _writer(tmp_path, "live")
    try:
        live_temps = _hidden(tmp_path)
        dead = _writer(tmp_path, "dead")
        dead_temps = _hidden(tmp_path) - live_temps
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=30)
        # one of each kind: .bag.XXXXXXXX.partial, .notes.txt.XXXXXXXX.tmp.txt, .run.tmp-XXXXXXXX
        for temps in (live_temps, dead_temps):
            assert len(temps) == 3, temps
            assert sum(n.startswith(".bag.") and n.endswith(".partial") for n in temps) == 1
            assert sum(n.startswith(".notes.txt.") and n.endswith(".tmp.txt") for n in temps) == 1
            assert sum(n.startswith(".run.tmp-") for n in temps) == 1
        assert _hidden(tmp_path) == live_temps | dead_temps  # (SIGKILL: nothing of its own removed)

        # this process writes each output now, as a next run would
        with caplog.at_level(logging.WARNING):
            with BagWriter(tmp_path / "bag", overwrite=True) as bag:
                bag.add_topic("/note", "std_msgs/msg/String")
                bag.write("/note", 1, string_message("next"))
            write_text(tmp_path / "notes.txt", "next", overwrite=True)
            with output_directory(tmp_path / "run", overwrite=True) as d:
                (d / "note.txt").write_text("next")
        assert _hidden(tmp_path) == live_temps  # the killed writer's gone, the live writer's kept
        removed = [r.getMessage() for r in caplog.records if "removed" in r.getMessage()]
        assert sorted(removed) == sorted(
            f"{tmp_path / n}: removed: the unfinished output of a run that was killed (no process writes it)"
            for n in dead_temps
        )
        assert _bag_note(tmp_path / "bag") == "next"
        assert (tmp_path / "notes.txt").read_text() == "next"

        out, err = live.communicate("finish\n", timeout=60)  # the live writer finishes as if alone
        assert live.returncode == 0 and out == "done\n", err
    finally:
        for p in (live, locals().get("dead")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert sorted(os.listdir(tmp_path)) == ["bag", "notes.txt", "run"]
    assert _bag_note(tmp_path / "bag") == "live"
    assert (tmp_path / "notes.txt").read_text() == "live"
    assert (tmp_path / "run" / "note.txt").read_text() == "live"


def test_world_killed_mid_bag_leaves_a_partial_folder_the_next_world_removes(tmp_path):
    """``gs-mapping world`` killed with SIGKILL while it writes its bag: its ``.w.*.partial`` folder
    stays (nothing runs after SIGKILL); the next ``world --out w`` removes it, saying so in one line
    on stderr, and writes the bag; nothing else is left beside it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "gs_mapping", "world", "--out", str(tmp_path / "w"), "--size", "320x180"]
    p, _ = start_until_partial(
        [*cmd, "--frames", "400", "--no-progress"], tmp_path, env, pattern=".w.*.partial", timeout=90
    )
    try:
        (partial,) = tmp_path.glob(".w.*.partial")
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert os.listdir(tmp_path) == [partial.name]
    r = subprocess.run([*cmd, "--frames", "2", "--no-progress"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{partial}: removed: the unfinished output of a run that was killed" in r.stderr
    assert os.listdir(tmp_path) == ["w"]
