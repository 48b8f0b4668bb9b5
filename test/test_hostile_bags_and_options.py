"""The bag commands from outside (a hostile review, 2026-12-04): what is not a bag, a parameter file
that is not YAML text, options outside their domain, a --strict replay that fails, an interrupted
one. Each is one line naming what was wrong, exit status 2 (143 when terminated), and no output
written or replaced."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import KITCHEN_BAG

from gs_mapping.cli import main


def _one_error(capsys, code: int, naming: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if " error: " in ln]
    assert code == 2 and len(errors) == 1 and naming in errors[0], err
    assert not any("Traceback" in ln for ln in err)


def test_what_is_not_a_bag_never_blocks(tmp_path, capsys):
    """A FIFO named like a bag, one inside a bag folder, a name too long to look at: one line each
    (reading a FIFO would block forever)."""
    os.mkfifo(tmp_path / "pipe.mcap")
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "x.mcap")
    old = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("blocked on a FIFO"))
    signal.alarm(20)
    try:
        _one_error(
            capsys, main(["info", str(tmp_path / "pipe.mcap")]), "neither a regular file nor a directory"
        )
        _one_error(capsys, main(["info", str(folder)]), "x.mcap: not a regular file")
        _one_error(capsys, main(["info", str(tmp_path / ("n" * 300))]), "cannot read")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_parameter_file_that_is_not_yaml_text(kitchen_bag, tmp_path, capsys):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01 not text")
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 20000 + "]" * 20000)
    for config, naming in ((binary, "not a YAML text file"), (deep, "cannot read YAML")):
        code = main(["map", str(kitchen_bag), "--out", str(tmp_path / "o"), "--config", str(config)])
        _one_error(capsys, code, naming)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, env, naming",
    [
        (["--domain-id", "233"], {}, "--domain-id: the ROS domain must be 0..232"),
        (["--domain-id", "-1"], {}, "--domain-id"),
        ([], {"ROS_DOMAIN_ID": "abc"}, "ROS_DOMAIN_ID: expected an integer"),
        ([], {"ROS_DOMAIN_ID": "999"}, "ROS_DOMAIN_ID: the ROS domain"),
        (["--wait-for-subscribers", "nan"], {}, "--wait-for-subscribers"),
        (["--wait-for-subscribers", "-1"], {}, "--wait-for-subscribers"),
        (["--wait-for-subscribers", "inf"], {}, "--wait-for-subscribers"),
    ],
)
def test_play_options_outside_their_domain(kitchen_bag, capsys, monkeypatch, argv, env, naming):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _one_error(capsys, main(["play", str(kitchen_bag), *argv]), naming)


def test_an_option_parse_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["map", "bag", "--out", "o", "--max-frames", "abc"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--max-frames" in err[0] and "usage" not in err[0]


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_replay_refusals_write_nothing(kitchen_bag, tmp_path, capsys, monkeypatch):
    """--nodes without a node, or one twice; --strict on a bag holding none of the nodes' inputs:
    no output, and an existing one (--overwrite) kept byte for byte. The fleet server's store goes to
    the replay's scratch, not into the working directory."""
    monkeypatch.chdir(tmp_path)
    for nodes in ("", ",", "map_receiver_node,map_receiver_node"):
        _one_error(capsys, main(["replay", str(kitchen_bag), "--out", "r", "--nodes", nodes]), "--nodes")
    assert main(["replay", str(kitchen_bag), "--out", "kept", "--nodes", "map_receiver_node"]) == 0
    before = _digest(tmp_path / "kept")
    strict = ["replay", str(kitchen_bag), "--nodes", "map_receiver_node", "--strict"]
    _one_error(capsys, main([*strict, "--out", "new"]), "no input topic of map_receiver_node")
    _one_error(capsys, main([*strict, "--out", "kept", "--overwrite"]), "no input topic")
    assert not (tmp_path / "new").exists() and _digest(tmp_path / "kept") == before
    assert main(["replay", str(kitchen_bag), "--out", "fleet", "--nodes", "map_server_node"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet", "kept"]


@pytest.mark.shared_data
def test_a_terminated_replay_leaves_no_partial_output(kitchen_bag, tmp_path):
    """SIGTERM mid-replay unwinds as Ctrl-C does: the half-written bag folder is removed."""
    bag = tmp_path / "in"
    shutil.copytree(kitchen_bag, bag)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gs_mapping",
            "replay",
            str(bag),
            "--out",
            str(tmp_path / "out"),
            "--nodes",
            "mapper_node",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.*.partial")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert list(tmp_path.glob(".out.*.partial")), "the replay never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_a_bag_whose_every_camera_info_is_invalid_says_so(kitchen_bag, tmp_path, capsys):
    """Every CameraInfo with fx = NaN: the error names the invalid intrinsics, not a missing topic."""
    from gs_mapping.bag import BagReader, BagWriter

    bag = tmp_path / "nan_fx"
    with BagReader(kitchen_bag) as r, BagWriter(bag) as w:
        for t in r.topics:
            w.add_topic(t.name, t.type, latched=t.latched)
        for topic, stamp, msg in r.messages():
            if topic.endswith("camera_info"):
                k = msg.k.copy()
                k[0] = float("nan")
                msg.k = k
            w.write(topic, stamp, msg)
    code = main(["map", str(bag), "--out", str(tmp_path / "m"), "--max-frames", "2"])
    _one_error(capsys, code, "no valid CameraInfo on /camera/color/camera_info")
    assert not (tmp_path / "m").exists()


BAD_SECTION = "/**:\n  ros__parameters:\n    mapper_nod: {tf_wait_s: 0}\n"  # a typo of mapper_node


@pytest.mark.parametrize(
    "argv, naming",
    [
        (["world", "--out", "w", "--frames", "2", "--seed", "-1"], "--seed"),
        (["run", "mapper_node", "--name", "bad name!"], "--name"),
        (["run", "mapper_node", "--namespace", "bad ns//"], "--namespace"),
        (["run", "mapper_node", "--duration", "nan"], "--duration"),
        (["run", "mapper_node", "--duration", "-1"], "--duration"),
        # (--duration: were the section let through, the node would stop after 1 s, not run on)
        (["run", "mapper_node", "--config", "bad.yaml", "--duration", "1"], "unknown section 'mapper_nod'"),
        # (small runs: were the section let through, each would end soon, not run for minutes)
        (["map", "BAG", "--out", "m", "--config", "bad.yaml", "--max-frames", "1"], "unknown section"),
        (
            ["replay", "BAG", "--out", "r", "--config", "bad.yaml", "--nodes", "map_receiver_node"],
            "unknown section",
        ),
        (
            [
                "hd-train",
                "--out",
                "h",
                "--config",
                "bad.yaml",
                "--steps",
                "1",
                "--frames",
                "1",
                "--data",
                "flat",
            ],
            "unknown section",
        ),
        (["run", "mapper_node", "--transport", "zenoh", "--zenoh-config", "z.json5"], "zenoh configuration"),
    ],
)
def test_options_and_parameter_files_refused_before_any_work(
    kitchen_bag, tmp_path, capsys, monkeypatch, argv, naming
):
    """Each is one line and exit 2 before a node starts (a node that started would run on) or any
    output exists; a misspelt section of a parameter file is refused, not silently left unread."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(BAD_SECTION)
    (tmp_path / "z.json5").write_text("not: [json")
    try:
        code = main([str(kitchen_bag) if a == "BAG" else a for a in argv])
    except SystemExit as exc:  # (refused as the options are parsed: --seed's own type)
        code = exc.code
    _one_error(capsys, code, naming)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "z.json5"]


def test_the_known_sections_are_the_nodes_and_hd_train():
    from gs_mapping.nodes.registry import NODES, SECTIONS, node_class

    nodes = {s for n in NODES for s in node_class(n).sections}
    assert sorted(nodes | {"hd_train"}) == sorted(SECTIONS)


@pytest.mark.parametrize(
    "command", [["params"], ["info", str(KITCHEN_BAG)], ["info", "--json", str(KITCHEN_BAG)]]
)
def test_standard_output_that_fails(tmp_path, command):
    """A full disk under the report: one line, exit 2; a reader that went away (| head): quiet, 141
    (128 + SIGPIPE, as cat gives), the same for every command (``info`` once returned 0)."""
    if command[0] == "info" and not KITCHEN_BAG.is_dir():
        pytest.skip("needs ../shared/data")
    cmd = [sys.executable, "-m", "gs_mapping", *command]
    with open("/dev/full", "w") as full:
        r = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "No space left" in r.stderr
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(cmd, stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    os.close(read_end)  # the reader is gone before the first line (as after head's first line)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err and not err.strip()


def test_an_interrupt_while_the_output_bag_opens_leaves_no_partial_folder(tmp_path, monkeypatch):
    """SIGTERM or Ctrl-C can land while the bag writer opens (the folder exists, `open` has not
    returned); `with` does not exit what `__enter__` failed, so open() removes it itself. The
    signal is stood in for at rosbags' own open (a KeyboardInterrupt, as Ctrl-C raises); the
    test above met this under load."""
    from rosbags.rosbag2 import Writer

    from gs_mapping.bag import BagWriter

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Writer, "open", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with BagWriter(tmp_path / "out"):
            pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "section, key",
    [("mapper_node", "color_topic"), ("hd_map_node", "nonsense"), ("map_receiver_node", "min_opacty")],
)
def test_map_refuses_a_typo_in_any_nodes_section_as_replay_does(kitchen_bag, tmp_path, capsys, section, key):
    """`map --config` read only the `mapper` section: `mapper_node: {color_topic: …}` (a topic the
    user thinks they chose; topics live under mapper.topics) was ignored and another topic mapped.
    Every node's section is checked, as `replay` and the nodes check it: one line, exit 2, after
    the quick topic checks and before any mapping."""
    from gs_mapping.cli import main

    cfg = tmp_path / "typo.yaml"
    cfg.write_text(f"/**:\n  ros__parameters:\n    {section}:\n      {key}: 1\n")
    argv = ["map", str(kitchen_bag), "--out", str(tmp_path / "out"), "--config", str(cfg)]
    rc = main([*argv, "--max-frames", "1", "--holdout-every", "0", "--no-progress"])  # (short if it maps)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"{section}: unknown key '{key}'" in err
    assert not (tmp_path / "out").exists()
