"""Session 33a, an outside user of play, hd-predict, hd-train and hd-export (and the checkpoint loader
they share), with hostile paths and topic names. Each case runs the real command in-process
(``gs_mapping.cli.main``) and checks the promise: a useful result, or one line naming what was wrong
and exit status 2.

- hd-train's run directory under a file, or with a name too long: the OS error came out as one line
  that did not say which path ("error: Not a directory", "error: File name too long").
- A checkpoint path that is a directory or a FIFO was "checkpoint not found"; an empty file
  "cannot read checkpoint (EOFError: )"; a name too long an unnamed "File name too long".
- ``play --topics`` looked a relative name (``camera/color/image_raw``) up as written, where
  hd-predict's ``--cameras`` resolves it as ROS does; an empty entry (``--topics /tf,``,
  ``--cameras ""``) was looked up as a topic with no name ("no topic  in bag").
"""

from __future__ import annotations

import os

import pytest
from hostile_cases import one_error_line

from gs_mapping.cli import main

TRAIN = ["--frames", "1", "--batch-size", "1", "--eval-every", "0", "--threads", "1", "--steps", "1"]


def _too_long(tmp_path) -> str:
    return str(tmp_path / ("a" * 300))


def test_hd_train_run_directory_that_cannot_be_made_is_one_line_naming_it(tmp_path, capsys):
    pytest.importorskip("torch")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("kept")
    for out in (a_file / "run", _too_long(tmp_path), os.path.join(_too_long(tmp_path), "run")):
        assert main(["hd-train", "--out", str(out), *TRAIN, "--no-progress"]) == 2
        one_error_line(capsys, f"{out}: ")
    assert main(["hd-train", "--out", str(a_file / "run"), *TRAIN, "--resume", "--no-progress"]) == 2
    one_error_line(capsys, f"{a_file / 'run'}: ", "not a directory")
    assert a_file.read_text() == "kept"


@pytest.mark.shared_data
def test_a_checkpoint_path_that_is_no_checkpoint_file_is_named_for_what_it_is(tmp_path, capsys, kitchen_bag):
    """hd-predict and hd-train --init-from on a real bag: a directory, a FIFO (refused, not opened:
    that would wait for a writer), an empty file and a name too long each get a line saying which."""
    pytest.importorskip("torch")
    folder = tmp_path / "model.pt"
    folder.mkdir()
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    long_name = _too_long(tmp_path)
    cases = [
        (folder, "is a directory"),
        (fifo, "not a regular file"),
        (empty, "empty file"),
        (long_name, "name too long"),
        (tmp_path / "missing.pt", "checkpoint not found"),
    ]
    out = tmp_path / "lanes.json"
    for path, why in cases:
        argv = ["hd-predict", str(kitchen_bag), "--out", str(out), "--checkpoint", str(path), "--no-progress"]
        assert main(argv) == 2
        one_error_line(capsys, f"{path}: ", why)
        argv = ["hd-train", "--out", str(tmp_path / "run"), *TRAIN, "--init-from", str(path), "--no-progress"]
        assert main(argv) == 2
        one_error_line(capsys, f"{path}: ", why)
    assert not out.exists() and not (tmp_path / "run").exists()


@pytest.mark.shared_data
def test_play_topics_resolve_relative_names_and_refuse_empty_ones(capsys, kitchen_bag):
    """``play --topics camera/color/image_raw`` plays the bag's /camera/color/image_raw (as many
    messages as the storage holds on it, counted by the bag reader), as hd-predict resolves
    ``--cameras``; an empty entry is one line naming the option, nothing played."""
    from gs_mapping.bag import BagReader

    with BagReader(kitchen_bag) as bag:
        stored = sum(1 for _ in bag.messages(["/camera/color/image_raw"]))
    assert stored == 50
    argv = ["play", str(kitchen_bag), "--wait-for-subscribers", "0", "--rate", "1000"]
    assert main([*argv, "--topics", "camera/color/image_raw"]) == 0
    assert capsys.readouterr().out.startswith(f"played {stored} messages from {kitchen_bag}")
    for topics in ("/tf,", ",,", ""):
        assert main([*argv, "--topics", topics]) == 2
        one_error_line(capsys, "--topics: an empty topic name")


@pytest.mark.shared_data
def test_hd_predict_refuses_an_empty_camera_name(tmp_path, capsys, kitchen_bag):
    pytest.importorskip("torch")
    out = tmp_path / "lanes.json"
    argv = ["hd-predict", str(kitchen_bag), "--out", str(out), "--no-progress", "--cameras"]
    assert main([*argv, "camera/color/image_raw", ""]) == 2
    one_error_line(capsys, "--cameras: an empty topic name")
    assert not out.exists()


# -- a pipe named as a middleware's config file --------------------------------------------------
# Zenoh (Rust) and Cyclone DDS (C) read their config files themselves: a FIFO there blocked the
# read past Ctrl-C and SIGTERM (timeout's TERM did not end play in 10 minutes). Run as a process,
# each under a time limit, so that the old hang fails the test instead of stopping the suite.


def _cli_process(args, extra_env, timeout=120):
    import subprocess
    import sys

    env = {**os.environ, **extra_env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gs_mapping", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"gs-mapping {' '.join(map(str, args))} still ran after {timeout} s (a read that blocks)")
    return proc.returncode, out, err


def _assert_one_line(rc, err, *needles):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (rc, err)
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.shared_data
def test_play_refuses_a_pipe_as_the_zenoh_config_file_instead_of_blocking_on_it(tmp_path, kitchen_bag):
    pytest.importorskip("zenoh")
    fifo = tmp_path / "zenoh.json5"
    os.mkfifo(fifo)
    args = ["play", str(kitchen_bag), "--wait-for-subscribers", "0", "--transport", "zenoh"]
    rc, _, err = _cli_process([*args, "--zenoh-config", str(fifo)], {})
    _assert_one_line(rc, err, str(fifo), "not a regular file")
    rc, _, err = _cli_process(args, {"ZENOH_SESSION_CONFIG_URI": str(fifo)})  # as rmw_zenoh reads it
    _assert_one_line(rc, err, str(fifo), "not a regular file")


@pytest.mark.shared_data
def test_play_refuses_a_pipe_named_by_cyclonedds_uri_instead_of_blocking_on_it(tmp_path, kitchen_bag):
    fifo = tmp_path / "cyclonedds.xml"
    os.mkfifo(fifo)
    args = ["play", str(kitchen_bag), "--wait-for-subscribers", "0", "--topics", "/tf_static"]
    rc, _, err = _cli_process(args, {"CYCLONEDDS_URI": f"file://{fifo}"})
    _assert_one_line(rc, err, "CYCLONEDDS_URI", str(fifo), "not a regular file")
    good = tmp_path / "loopback.xml"  # a real config file beside it still works
    good.write_text(
        '<CycloneDDS><Domain><General><Interfaces><NetworkInterface address="127.0.0.1"/>'
        "</Interfaces></General></Domain></CycloneDDS>"
    )
    rc, out, err = _cli_process(args, {"CYCLONEDDS_URI": f"<Discovery/>,file://{good}"})
    assert rc == 0 and out.startswith(f"played 1 messages from {kitchen_bag}"), (rc, out, err)


def test_hd_eval_keeps_the_interrupted_mark_of_a_rescued_prediction_file(tmp_path, capsys):
    """README: Ctrl-C during hd-predict keeps the frames predicted in a file "marked
    "interrupted": true, which hd-eval reads". hd-eval's figures of such a file cover those frames
    only: the result says so (it dropped the mark), and the figures are those of the same frames."""
    import json

    pytest.importorskip("torch")
    bag, pred = tmp_path / "drive", tmp_path / "pred.json"
    assert main(["world", "--out", str(bag), "--frames", "2", "--size", "64x32", "--no-progress"]) == 0
    assert main(["hd-predict", str(bag), "--out", str(pred), "--no-progress"]) == 0
    capsys.readouterr()
    doc = json.loads(pred.read_text())
    rescued = tmp_path / "rescued.json"
    rescued.write_text(json.dumps({**doc, "interrupted": True}))  # the rescue's mark (predict_bag.document)
    assert main(["hd-eval", str(pred)]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert main(["hd-eval", str(rescued)]) == 0
    part = json.loads(capsys.readouterr().out)
    assert "interrupted" not in whole and part.pop("interrupted") is True
    assert part == whole


def test_an_os_error_no_command_names_is_reported_with_its_file(tmp_path, capsys):
    """What reaches the CLI's last resort (an OSError no command turned into its own line) names the
    file the system call was about, as the kernel's error gives it: one line, exit 2."""
    from gs_mapping.cli import _write_failed

    missing = tmp_path / "no" / "such.ply"
    with pytest.raises(OSError) as got:
        open(missing, "rb")  # the real error of the real call
    assert _write_failed("gs-mapping x", got.value) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gs-mapping x: error: {missing}: No such file or directory", err
    with pytest.raises(OSError) as got:
        os.rename(missing, tmp_path / "there.ply")  # a call about two files: both named
    assert _write_failed("gs-mapping x", got.value) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gs-mapping x: error: {missing} -> {tmp_path / 'there.ply'}: No such file or directory", (
        err
    )
    assert _write_failed("gs-mapping x", OSError(28, "No space left on device")) == 2
    assert capsys.readouterr().err.strip() == "gs-mapping x: error: No space left on device"
