"""A new user's walk through README's command line (session #35): what it promised and the CLI did not.

1. README: "Progress of `map`, `hd-predict`, `world`, `replay`, `hd-train` and `demo`: a bar where
   stderr is a terminal; anywhere else … a plain line …; `--no-progress` silences both". ``replay``
   and ``demo`` reported progress but had no ``--no-progress`` (``replay w1 --out x --no-progress``:
   "unrecognized arguments"). Each command the sentence names must take it, and for ``replay`` and
   ``demo`` it must silence the lines their real runs write to a pipe.
2. ``hd-predict`` on a real recording (no ground truth) then ``hd-eval`` on its file: "missing key
   'GTs'", as if the file were damaged. The error now says there is no ground truth to score
   against and where ``hd-predict`` takes it from.
3. ``map``'s progress reached "mapping: 6/6 (100%) … ETA 00:00" and then said nothing through the
   final refinement (``mapper.optim.refine_iterations``, 800 by default: 169 s of the bench's 381 s
   kitchen run, minutes more on a loaded machine). It now reports it as ``refining: n/N``.
4. ``gs-mapping info BAG > /dev/full``: "error: No space left on device", naming nothing (the
   commands print with ``flush=True``, so the write fails inside them): it read as the disk of the
   bag. It now says "standard output: …", and so does ``>&-``.
5. ``gs-mapping play BAG --duration 1`` (an option of ``run``, not of ``play``): "gs-mapping: error:
   unrecognized arguments: --duration 1 (see gs-mapping --help)", whose help lists no command's
   options. Now the command's parser names itself and its own ``--help``, as its other errors do.
6. docs/hd_model.md gave two command lines a user would copy without their required ``--out``
   ("Trained with ``gs-mapping hd-train --steps 4400 …``", "``gs-mapping world --seed 424242 …``").
   Every ``gs-mapping`` command line of README and docs/ now parses with the real parser.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SRC = REPO / "src"


def _subparsers() -> dict:
    from gs_mapping.cli import build_parser

    parser = build_parser()
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices


def _progress_commands() -> list[str]:
    """The commands README's progress sentence names ("Progress of `a`, `b` … and `z`: …")."""
    text = " ".join(README.read_text().split())
    m = re.search(r"Progress of ((?:`[a-z-]+`(?:, | and ))*`[a-z-]+`):", text)
    assert m, "README no longer has its 'Progress of …:' sentence"
    return re.findall(r"`([a-z-]+)`", m.group(1))


def test_every_command_readme_says_reports_progress_takes_no_progress():
    commands = _progress_commands()
    assert {"map", "replay", "demo"} <= set(commands)
    subs = _subparsers()
    missing = [c for c in commands if "--no-progress" not in subs[c]._option_string_actions]
    assert not missing, f"README: --no-progress silences their progress; not an option of {missing}"


def _gs(tmp: Path, *argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``gs-mapping ARGV`` in a child with stderr to a pipe (no terminal) and a line at each tenth."""
    (tmp / "tmpdir").mkdir(exist_ok=True)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(SRC), *sys.path]),
        TMPDIR=str(tmp / "tmpdir"),
        GS_MAPPING_PROGRESS_INTERVAL="0",
        OMP_NUM_THREADS="1",
    )
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp,
    )


_LINE = re.compile(r"^[\w-]+: \d+/\d+ \(\d+%\), [\d:]+ elapsed, ETA ")


def _progress_lines(err: str) -> list[str]:
    return [x for x in err.splitlines() if _LINE.match(x)]


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    """A 6-frame drive of the procedural world, 160x90 (``world --no-progress``: no progress line)."""
    tmp = tmp_path_factory.mktemp("drive")
    bag = tmp / "drive"
    w = _gs(
        tmp,
        "world",
        "--out",
        str(bag),
        "--frames",
        "6",
        "--size",
        "160x90",
        "--workers",
        "1",
        "--no-progress",
    )
    assert w.returncode == 0, w.stderr[-2000:]
    assert not _progress_lines(w.stderr), w.stderr
    return bag


def test_replay_writes_progress_lines_and_no_progress_silences_them(drive, tmp_path):
    """The drive replayed through the receiver (it reads the bag's TF: 7 messages fed): progress
    lines to a pipe without the option, none with it, the same bag recorded either way."""
    bag = drive
    base = ["replay", str(bag), "--nodes", "map_receiver_node"]
    loud = _gs(tmp_path, *base, "--out", str(tmp_path / "a"))
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert any(x.startswith("replay: 7/7 (100%)") for x in _progress_lines(loud.stderr)), loud.stderr
    quiet = _gs(tmp_path, *base, "--out", str(tmp_path / "b"), "--no-progress")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not _progress_lines(quiet.stderr), quiet.stderr
    assert (tmp_path / "b" / "metadata.yaml").is_file()
    assert quiet.stdout.splitlines()[1:] == loud.stdout.splitlines()[1:]  # (line 0: wall time, path)


@pytest.mark.slow
def test_demo_no_progress_writes_no_progress_line(tmp_path):
    """The demo's world and replay steps report progress (lines to a pipe, a tenth each here);
    ``demo --no-progress`` writes none of them and still writes its report."""
    r = _gs(tmp_path, "demo", "--frames", "5", "--out", str(tmp_path / "out"), "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert not _progress_lines(r.stderr), r.stderr[-2000:]
    assert (tmp_path / "out" / "report.md").is_file()


def test_hd_eval_of_predictions_from_a_recording_without_ground_truth_says_so(shared_data, tmp_path):
    """The real RealSense kitchen bag (no /ground_truth/…): hd-predict writes predictions alone;
    hd-eval refuses them in one line (exit 2) that says there is no ground truth, not only that a
    key is missing."""
    pytest.importorskip("torch")  # (hd-predict runs the model)
    bag = shared_data / "realsense_kitchen_rgbd"
    pred = tmp_path / "pred.json"
    p = _gs(tmp_path, "hd-predict", str(bag), "--out", str(pred), "--max-frames", "1", "--no-progress")
    assert p.returncode == 0, p.stderr[-2000:]
    assert '"with_gt": false' in p.stdout
    e = _gs(tmp_path, "hd-eval", str(pred))
    assert e.returncode == 2 and e.stdout == ""
    lines = e.stderr.splitlines()
    assert len(lines) == 1, e.stderr
    assert (
        "missing key 'GTs'" in lines[0]
        and "no ground truth" in lines[0]
        and "/ground_truth/lanes_json" in lines[0]
    )


REFINE = 20  # final refinement iterations of the map run below: a line at each tenth, 2, 4, … 20


def test_map_reports_its_final_refinement_and_no_progress_silences_it(drive, tmp_path):
    """``map`` of the drive at the cheapest mapper settings but a final refinement of 20 steps:
    a ``refining`` line at each tenth to a pipe, ending at 20/20; none with ``--no-progress``."""
    pytest.importorskip("torch")
    from test_outside_long_runs import FAST

    config = tmp_path / "fast.yaml"
    config.write_text(
        FAST.replace("refine_iterations: 0, refine_keep: 1", f"refine_iterations: {REFINE}, refine_keep: 4")
    )
    argv = ["map", str(drive), "--config", str(config), "--holdout-every", "0"]
    p = _gs(tmp_path, *argv, "--out", str(tmp_path / "a"))
    assert p.returncode == 0, p.stderr[-2000:]
    refining = [x for x in _progress_lines(p.stderr) if x.startswith("refining: ")]
    assert [int(x.split()[1].split("/")[0]) for x in refining] == list(range(2, REFINE + 1, 2)), p.stderr
    assert all(f"/{REFINE} (" in x for x in refining)
    mapping = [i for i, x in enumerate(p.stderr.splitlines()) if x.startswith("mapping: ")]
    first = next(i for i, x in enumerate(p.stderr.splitlines()) if x.startswith("refining: "))
    assert mapping and max(mapping) < first  # after the frames, as the work runs
    quiet = _gs(tmp_path, *argv, "--out", str(tmp_path / "b"), "--no-progress")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not _progress_lines(quiet.stderr), quiet.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
@pytest.mark.parametrize("argv", [["params"], ["info", "--json", "KITCHEN"], ["--help"], ["info", "--help"]])
@pytest.mark.parametrize("stdout", ["/dev/full", "closed"])
def test_output_that_cannot_be_written_names_standard_output(shared_data, tmp_path, argv, stdout):
    """A command's output to a full device (``> /dev/full``) or a closed stdout (``>&-``): one line
    naming standard output, exit 2."""
    argv = [str(shared_data / "7scenes_kitchen_rgbd") if a == "KITCHEN" else a for a in argv]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), *sys.path]))
    cmd = [sys.executable, "-m", "gs_mapping", *argv]
    if stdout == "closed":
        r = subprocess.run(
            ["sh", "-c", '"$@" >&-', "sh", *cmd], env=env, stderr=subprocess.PIPE, text=True, timeout=120
        )
    else:
        with open(stdout, "w") as full:
            r = subprocess.run(cmd, env=env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and ": error: standard output: " in lines[0], r.stderr


def test_an_option_a_command_lacks_is_named_by_that_command(capsys):
    """Every command, given an option none of them has: one line "gs-mapping CMD: error:
    unrecognized arguments: …(see gs-mapping CMD --help)", exit 2, as argparse's other errors of a
    command read."""
    from gs_mapping.cli import main

    for cmd, sub in _subparsers().items():
        positionals = [
            a.choices[0] if a.choices else "x"
            for a in sub._actions
            if not a.option_strings and a.nargs != "?"
        ]
        required = [
            t for a in sub._actions if a.required and a.option_strings for t in (a.option_strings[0], "x")
        ]
        with pytest.raises(SystemExit) as done:
            main([cmd, *positionals, *required, "--no-such-option", "1"])
        assert done.value.code == 2
        err = capsys.readouterr().err.splitlines()
        assert err == [
            f"gs-mapping {cmd}: error: unrecognized arguments: --no-such-option 1 (see gs-mapping {cmd} --help)"
        ], (cmd, err)


def _doc_commands() -> list[tuple[str, str, bool]]:
    """(file, command, whole) for each ``gs-mapping …`` of README and docs/: a line of a code block
    (whole: a command to copy) or an inline code span (a command, or a mention such as
    ``gs-mapping run``); synopses with ``[…]``, ``|``, ``…`` or ``<…>`` left out."""
    found = []
    for path in [README, *sorted((REPO / "docs").glob("*.md"))]:
        text, block = path.read_text(), False
        for line in text.splitlines():
            if line.startswith("```"):
                block = not block
            elif block and (m := re.search(r"(?:^|\s)(gs-mapping \S.*)$", line)):
                found.append((path.name, m.group(1).split(" #")[0].strip(), True))
        prose = re.sub(r"```.*?```", "", text, flags=re.S).replace("\n", " ")
        found += [(path.name, m.group(1), False) for m in re.finditer(r"`(gs-mapping [^`]+)`", prose)]
    return [(f, c, w) for f, c, w in found if not any(ch in c for ch in "[|…<>") and "COMMAND" not in c]


def test_every_command_line_of_readme_and_docs_parses(capsys):
    """A code block's command parses whole; an inline one may be a mention (``gs-mapping run``,
    ``hd-export --onnx``) short of its required arguments, or a command with its required ones
    (more than one option or a positional): then whole too. Never an unknown option or value."""
    import shlex

    from gs_mapping.cli import build_parser

    parser, bad = build_parser(), []
    commands = _doc_commands()
    assert len(commands) > 40
    for name, cmd, whole in commands:
        argv = shlex.split(cmd)[1:]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            err = capsys.readouterr().err
            if exc.code == 0:  # (--help)
                continue
            mention = not whole and len(argv) <= 3 and ("required" in err or "expected one argument" in err)
            if not mention:
                bad.append(f"{name}: {cmd}: {err.strip()}")
    assert not bad, "\n".join(bad)
