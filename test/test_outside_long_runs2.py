"""Outside review (long runs, loose ends): what a user of an hour's run meets.

1. Progress where stderr is no terminal (``nohup``, systemd, ``docker logs``, CI): plain lines, at
   each tenth of the work and at most one every ``GS_MAPPING_PROGRESS_INTERVAL`` seconds (default
   30), whichever is rarer; ``--no-progress`` silences them. The real CLI runs as a child with
   stderr to a pipe; the interval is set to 0 there (each tenth), and the 30 s rule is checked by
   hand on :class:`ProgressLines` with a clock of our own.
2. A node's final save rescues through ``output_files.rescue``: an interrupt during the rescue
   leaves no empty map where a log would point.
3. The temp folder a ``kill -9`` left beside a folder output: the next run writing that output
   removes it, in one line, while the folder of a live writer (another process) is left alone.
4. ``mapper.holdout_views``: the held-out views ``map`` evaluates, a parameter (0 = none).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_outside_long_runs import FAST  # the mapper at its cheapest: one keyframe, one step

SRC = Path(__file__).resolve().parents[1] / "src"
FRAMES = 12  # the drive's frames: each tenth of 12 is reached by a frame of its own


# "NAME: n/total (p%), MM:SS elapsed, ETA MM:SS[, rate unit/s][, postfix]"
LINE = re.compile(
    r"^(?P<desc>[\w-]+): (?P<n>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\), "
    r"(?P<elapsed>[\d:]+) elapsed, ETA (?P<eta>[\d:]+)(, .*)?$"
)


def _env(tmp: Path, **extra: str) -> dict:
    (tmp / "tmpdir").mkdir(exist_ok=True)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(SRC), *sys.path]),
        TMPDIR=str(tmp / "tmpdir"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("GS_MAPPING_PROGRESS_INTERVAL", None)
    env.update(extra)
    return env


def _gs(tmp: Path, *argv: str, **extra: str) -> subprocess.CompletedProcess:
    """``gs-mapping ARGV`` in a child, stdout and stderr to pipes (no terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", *argv],
        env=_env(tmp, **extra),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _progress_lines(err: str, desc: str) -> list[re.Match]:
    lines = [x for x in err.splitlines() if x.startswith(f"{desc}: ")]
    matched = [LINE.match(x) for x in lines]
    assert all(matched), lines
    return matched  # type: ignore[return-value]


def _check_tenths(err: str, desc: str, total: int) -> None:
    """One line at each tenth of ``total`` (interval 0), each naming n/total, its percent, elapsed
    and an ETA; the last at total; plain text: no carriage return, no escape sequence."""
    assert "\r" not in err and "\x1b" not in err, repr(err[-300:])
    got = _progress_lines(err, desc)
    ns = [int(m["n"]) for m in got]
    # by hand: the first n of each tenth, 10 * n // total stepping by one
    expected = [n for n in range(1, total + 1) if 10 * n // total > 10 * (n - 1) // total]
    assert ns == expected, (ns, expected)
    assert all(int(m["total"]) == total and int(m["pct"]) == 100 * int(m["n"]) // total for m in got)
    assert got[-1]["eta"] == "00:00"


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> tuple[Path, str]:
    """A 12-frame drive of the procedural world (`gs-mapping world`, 160x90) and the world
    command's stderr, written with progress lines at each tenth."""
    tmp = tmp_path_factory.mktemp("drive")
    bag = tmp / "drive"
    argv = ["world", "--out", str(bag), "--frames", str(FRAMES), "--size", "160x90", "--workers", "1"]
    p = _gs(tmp, *argv, GS_MAPPING_PROGRESS_INTERVAL="0")
    assert p.returncode == 0, p.stderr[-2000:]
    return bag, p.stderr


@pytest.fixture(scope="module")
def fast_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "fast.yaml"
    path.write_text(FAST)
    return path


def _config(tmp: Path, **mapper: object) -> Path:
    """FAST with more ``mapper`` parameters."""
    path = tmp / "config.yaml"
    path.write_text(FAST + "".join(f"      {k}: {v}\n" for k, v in mapper.items()))
    return path


# -- 1. progress lines --------------------------------------------------------------------------


def _lines_of(run, capsys) -> list[str]:
    run()
    return capsys.readouterr().err.splitlines()


def test_progress_lines_come_at_each_tenth_or_every_30_s_whichever_is_rarer(capsys):
    """The rule by hand, with a clock of our own (seconds). (a) 1000 steps of 1 s: a tenth takes
    100 s, rarer than 30 s: a line each 100 steps. (b) 20 steps of 10 s: a tenth takes 20 s, 30 s
    is rarer: a line at the first new tenth 30 s after the last line (steps 3, 6, …, 18), and the
    last state at close (20). (c) no total (a generator): every 30 s alone."""
    from gs_mapping.progress import ProgressLines

    def run(total, steps, dt, iterable=None):
        now = [0.0]
        bar = ProgressLines(
            iterable, total=total, desc="x", unit="frame", interval_s=30, clock=lambda: now[0]
        )
        if iterable is not None:
            for _ in bar:
                now[0] += dt
        else:
            for _ in range(steps):
                now[0] += dt
                bar.update(1)
        bar.close()

    got = _lines_of(lambda: run(1000, 1000, 1.0), capsys)
    assert [int(LINE.match(x)["n"]) for x in got] == list(range(100, 1001, 100))
    assert got[0] == "x: 100/1000 (10%), 01:40 elapsed, ETA 15:00, 1 frame/s"  # 100 s x 900/100

    got = _lines_of(lambda: run(20, 20, 10.0), capsys)
    assert [int(LINE.match(x)["n"]) for x in got] == [3, 6, 9, 12, 15, 18, 20]
    assert got[1] == "x: 6/20 (30%), 01:00 elapsed, ETA 02:20, 0.1 frame/s"  # 60 s x 14/6 = 140 s

    got = _lines_of(lambda: run(None, 0, 7.0, iterable=(i for i in range(20))), capsys)
    assert got == [
        "x: 5, 00:35 elapsed, 0.143 frame/s",  # the first step at >= 30 s: 5 x 7 s
        "x: 10, 01:10 elapsed, 0.143 frame/s",
        "x: 15, 01:45 elapsed, 0.143 frame/s",
        "x: 20, 02:20 elapsed, 0.143 frame/s",  # (at 140 s, 35 s after the last: no close line)
    ]


def test_a_short_run_writes_no_progress_line(capsys):
    """Under 30 s of work: no line at all (a short command's stderr stays as it was)."""
    from gs_mapping.progress import ProgressLines

    now = [0.0]
    with ProgressLines(total=10, desc="x", interval_s=30, clock=lambda: now[0]) as bar:
        for _ in range(10):
            now[0] += 2.9
            bar.update(1)
    assert capsys.readouterr().err == ""


def test_world_writes_progress_lines_to_a_pipe(drive):
    _check_tenths(drive[1], "world", FRAMES)


def test_map_writes_progress_lines_to_a_pipe_and_no_progress_silences_them(drive, fast_config, tmp_path):
    pytest.importorskip("torch")
    argv = ["map", str(drive[0]), "--config", str(fast_config)]
    p = _gs(tmp_path, *argv, "--out", str(tmp_path / "a"), GS_MAPPING_PROGRESS_INTERVAL="0")
    assert p.returncode == 0, p.stderr[-2000:]
    _check_tenths(p.stderr, "mapping", FRAMES)
    assert all("kf=" in m.group(0) for m in _progress_lines(p.stderr, "mapping"))  # (the bar's postfix)

    quiet = _gs(
        tmp_path, *argv, "--out", str(tmp_path / "b"), "--no-progress", GS_MAPPING_PROGRESS_INTERVAL="0"
    )
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not [x for x in quiet.stderr.splitlines() if x.startswith("mapping")], quiet.stderr


def test_hd_predict_writes_progress_lines_to_a_pipe(drive, tmp_path):
    pytest.importorskip("torch")
    p = _gs(
        tmp_path,
        "hd-predict",
        str(drive[0]),
        "--out",
        str(tmp_path / "p.json"),
        GS_MAPPING_PROGRESS_INTERVAL="0",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    _check_tenths(p.stderr, "hd-predict", FRAMES)
    assert len(json.loads((tmp_path / "p.json").read_text())["results"]) == FRAMES


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_bad_progress_interval_is_one_line_before_the_work(tmp_path, value):
    """A value that is no number of seconds >= 0: one line naming the variable, exit 2, and no
    output begun (no bag, no hidden partial folder)."""
    argv = ["world", "--out", str(tmp_path / "w"), "--frames", "2", "--size", "64x36"]
    p = _gs(tmp_path, *argv, GS_MAPPING_PROGRESS_INTERVAL=value)
    assert p.returncode == 2
    assert p.stderr.splitlines() == [
        f"gs-mapping world: error: GS_MAPPING_PROGRESS_INTERVAL={value!r}: must be a number of seconds >= 0"
    ]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["tmpdir"]


# -- 2. a node's final save: the one rescue -------------------------------------------------------


def test_an_interrupt_during_a_final_saves_rescue_leaves_no_empty_map(tmp_path, monkeypatch):
    """A node stopped a second time (Ctrl-C again, SIGTERM) while its final save, refused at its
    path, is being rescued to the temp directory: the interrupt goes on, and no 0-byte
    ``NODE-map-*.ply`` is left there (an empty file that looks like a saved map)."""
    import tempfile

    from synthetic_maps import synthetic_map

    from gs_mapping import ply
    from gs_mapping.nodes.map_saving import final_save

    rescue_dir = tmp_path / "temp"
    rescue_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue_dir))
    real_save = ply.save_ply

    def interrupted_in_the_temp_dir(gmap, path, **kw):
        if Path(path).parent == rescue_dir:
            raise KeyboardInterrupt  # (the signal's handler raises where the write is)
        real_save(gmap, path, **kw)

    monkeypatch.setattr(ply, "save_ply", interrupted_in_the_temp_dir)
    (tmp_path / "afile").write_bytes(b"x")  # the save path's folder is a file: the save fails
    with pytest.raises(KeyboardInterrupt):
        final_save(
            synthetic_map(50, 0, seed=1), str(tmp_path / "afile" / "map.ply"), logging.getLogger("t"), "rx"
        )
    assert list(rescue_dir.iterdir()) == []


# -- 3. a killed writer's temp folder --------------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from gs_mapping.output_files import output_directory
with output_directory(Path(sys.argv[1]), overwrite=True) as tmp:
    (tmp / "map.ply").write_bytes(sys.argv[2].encode())
    print(tmp, flush=True)
    sys.stdin.readline()  # writing until told to finish (or killed)
"""


def _writer(tmp: Path, target: Path, content: str) -> tuple[subprocess.Popen, Path]:
    """A process writing the folder output ``target`` (its temp folder beside, one file in it)."""
    p = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), content],
        env=_env(tmp),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = p.stdout.readline().strip()  # type: ignore[union-attr]
    assert line, p.stderr.read()  # type: ignore[union-attr]
    return p, Path(line)


def test_the_next_map_removes_a_killed_writers_temp_folder_and_leaves_a_live_ones(
    drive, fast_config, tmp_path
):
    """Two writers of ``out`` as real processes: one killed by SIGKILL mid-write (its temp folder
    stays: nothing of it could run), one alive. The next ``map --out out`` removes the killed
    one's folder, saying so in one line naming it, and leaves the live one's as it is; the live
    writer then finishes and installs its output."""
    pytest.importorskip("torch")
    out = tmp_path / "out"
    live, writing = _writer(tmp_path, out, "live")  # (first: a writer starting sweeps too)
    try:
        killed, stale = _writer(tmp_path, out, "killed")
        killed.kill()
        killed.wait(timeout=60)
        assert (stale / "map.ply").read_bytes() == b"killed"  # left behind by the kill
        p = _gs(
            tmp_path, "map", str(drive[0]), "--out", str(out), "--config", str(fast_config), "--no-progress"
        )
        assert p.returncode == 0, p.stderr[-2000:]
        said = [x for x in p.stderr.splitlines() if "removed" in x]
        assert len(said) == 1 and str(stale) in said[0], p.stderr
        assert str(writing) not in p.stderr
        assert not stale.exists()
        assert (writing / "map.ply").read_bytes() == b"live"
        assert (out / "metrics.json").is_file()  # (map wrote its output all the same)
        _, err = live.communicate("\n", timeout=60)
    finally:
        if live.poll() is None:
            live.kill()
    assert live.returncode == 0, err
    assert (out / "map.ply").read_bytes() == b"live"
    assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".out")) == []


def test_a_writer_starting_removes_only_the_temp_folders_no_live_process_holds(tmp_path):
    """As above without the mapper (no torch needed): three processes write ``out`` in turn, the
    second killed by SIGKILL mid-write; the third, starting, removes the second's folder (its
    one line on stderr names it) and not the first's, which is still being written."""
    out = tmp_path / "out"
    live, writing = _writer(tmp_path, out, "live")
    try:
        killed, stale = _writer(tmp_path, out, "killed")
        killed.kill()
        killed.wait(timeout=60)
        third, _ = _writer(tmp_path, out, "third")
        _, err = third.communicate("\n", timeout=60)
        assert third.returncode == 0, err
        assert [x for x in err.splitlines() if "removed" in x] == [
            f"{stale}: removed: the unfinished output of a run that was killed (no process writes it)"
        ]
        assert not stale.exists() and (writing / "map.ply").read_bytes() == b"live"
        _, err = live.communicate("\n", timeout=60)
    finally:
        if live.poll() is None:
            live.kill()
    assert live.returncode == 0 and (out / "map.ply").read_bytes() == b"live", err


# -- 4. mapper.holdout_views ----------------------------------------------------------------------


def _map_metrics(drive: Path, tmp: Path, config: Path, *extra: str) -> dict:
    out = tmp / "m"
    p = _gs(tmp, "map", str(drive), "--out", str(out), "--config", str(config), "--no-progress", *extra)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads((out / "metrics.json").read_text())["heldout"]


def test_holdout_views_bounds_the_views_evaluated_evenly_spaced(drive, tmp_path):
    """--holdout-every 2 over 12 frames holds out frames 1, 3, 5, 7, 9, 11 (index % 2 == 1). With
    ``holdout_views: 3`` by the documented rule (every 2**k-th of those held out): 1, 3, 5, then
    7 makes four, so every other one goes (1, 5) and the spacing doubles; 9 is kept, 11 is not."""
    pytest.importorskip("torch")
    h = _map_metrics(drive[0], tmp_path, _config(tmp_path, holdout_views=3), "--holdout-every", "2")
    assert h["held_out_frames"] == 6
    assert [v["index"] for v in h["per_view"]] == [1, 5, 9] and h["views"] == 3


def test_holdout_views_zero_evaluates_none(drive, tmp_path):
    pytest.importorskip("torch")
    h = _map_metrics(drive[0], tmp_path, _config(tmp_path, holdout_views=0), "--holdout-every", "2")
    assert h["held_out_frames"] == 6 and h["views"] == 0 and h["per_view"] == []
    assert h["psnr"] is None
    assert not (tmp_path / "m" / "heldout").exists() or not list((tmp_path / "m" / "heldout").iterdir())


@pytest.mark.parametrize("value", ["-1", "2.5", "many"])
def test_a_bad_holdout_views_is_one_line(drive, tmp_path, value):
    p = _gs(
        tmp_path,
        "map",
        str(drive[0]),
        "--out",
        str(tmp_path / "m"),
        "--config",
        str(_config(tmp_path, holdout_views=value)),
    )
    assert p.returncode == 2, p.stderr[-2000:]
    (line,) = p.stderr.splitlines()
    assert line.startswith("gs-mapping map: error: ") and "holdout_views" in line, line
    assert not (tmp_path / "m").exists()


def test_holdout_views_is_checked_where_the_config_is_built():
    from gs_mapping.errors import ConfigError
    from gs_mapping.mapping.mapper_config import MapperConfig

    assert MapperConfig().holdout_views == 32 and MapperConfig(holdout_views=0).holdout_views == 0
    for bad in (-1, True, 2.0):
        with pytest.raises(ConfigError, match="holdout_views must be an integer >= 0"):
            MapperConfig(holdout_views=bad)  # type: ignore[arg-type]


def test_holdout_views_is_in_full_yaml_and_its_comment():
    """config/full.yaml documents every parameter (a test keeps its values the defaults); the new
    one is there with its description, and holdout_every's names it."""
    text = (Path(__file__).resolve().parents[1] / "config" / "full.yaml").read_text()
    assert re.search(
        r"\n      # Held-out frames evaluated .*0 = evaluate none.*\n      holdout_views: 32\n", text
    )
    assert "at most holdout_views of them evaluated" in text
