"""Outside check of issue 21 (nothing lost, nothing crashes): cases the team's hostile harness does not
try. Classes of input: output names the OS accepts, signals and file-size limits as a shell user sees
them, two writers at once, numbers too long for Python's int parser in every text format we read
(YAML, hd-eval JSON, SOG meta.json), ground-truth JSON inside a bag that parses but lies, bag
metadata that disagrees with the storage's own schema, and numeric arguments at their edges.

Outcome rule (the issue's): a correct result, or exit status 2 with one line naming the file / field /
argument — never a traceback, a memory blow-up, a changed input or a lost output. References are
independent of the component: open(2) and NAME_MAX, the MCAP summary read with the ``mcap`` library,
the sqlite ``topics`` table, plyfile's reading of the output, and the CLI's own sibling options.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from hostile_cases import hd_doc, make_assets, run_cli
from test_hostile_cli import _check as _ok  # (the outcome rule, one place)

from gs_mapping.errors import GsMappingError, OutputError
from gs_mapping.output_files import write_bytes

HUGE_INT = "1" + "0" * 5000  # valid JSON/YAML; Python's int() refuses more than 4300 digits by default
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def A(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("outside21"))


def _cli(argv, timeout=60, **kw):
    return subprocess.run(
        [sys.executable, "-m", "gs_mapping", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        **kw,
    )


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.replace("\r", "\n").splitlines() if " error: " in ln]


# ------------------------------------------------------------------------------------------------
# output names and file-system faults


def test_a_long_but_legal_output_name_can_be_written(tmp_path):
    name = "m" * 246 + ".ply"  # 250 bytes: within NAME_MAX (255) of every Linux file system
    with open(tmp_path / "probe", "wb"):
        pass
    (tmp_path / "probe").rename(tmp_path / name)  # the OS itself takes this name (reference)
    (tmp_path / name).unlink()
    write_bytes(tmp_path / name, b"map")
    assert (tmp_path / name).read_bytes() == b"map"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_sigterm_or_sigint_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    """A signal while the temp file is being written (caught as it appears, process frozen with
    SIGSTOP so the moment is not missed): either the old output and 143/130, or the complete new one
    (exit 0, or the signal's status when it came after the rename); one line, no hidden temp file
    left beside it."""
    plyfile = pytest.importorskip("plyfile")
    from synthetic_maps import synthetic_map

    from gs_mapping.ply import save_ply

    src = tmp_path / "big.ply"
    save_ply(synthetic_map(120_000, 3, seed=1), src)
    n_src = plyfile.PlyData.read(str(src))["vertex"].count
    for sig, want_rc, word in ((signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")):
        d = tmp_path / sig.name
        d.mkdir()
        out = d / "out.ply"
        out.write_bytes(b"OLD")
        p = subprocess.Popen(
            [sys.executable, "-m", "gs_mapping", "convert", str(src), str(out), "--overwrite"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            if any(x.name.startswith(".out.ply.") for x in d.iterdir()):
                p.send_signal(signal.SIGSTOP)
                break
            time.sleep(0.002)
        p.send_signal(sig)
        p.send_signal(signal.SIGCONT)
        _, err = p.communicate(timeout=60)
        assert "Traceback" not in err, err
        if out.read_bytes()[:3] == b"OLD":
            assert p.returncode == want_rc and err.strip().endswith(f"convert: {word}"), (p.returncode, err)
        else:  # it had installed the new file (the signal may land after the rename): that file whole
            assert p.returncode in (0, want_rc) and plyfile.PlyData.read(str(out))["vertex"].count == n_src
        assert sorted(x.name for x in d.iterdir()) == ["out.ply"]  # no temp litter


def test_a_file_size_limit_as_a_shell_sets_it_is_one_line_and_keeps_the_old_file(A, tmp_path):
    """``ulimit -f`` in the user's shell (RLIMIT_FSIZE with SIGXFSZ at its default, not ignored by a
    test fixture): EFBIG, one line, exit 2, the previous output intact, no temp file."""
    from synthetic_maps import synthetic_map

    from gs_mapping.ply import save_ply

    src = tmp_path / "big.ply"
    save_ply(synthetic_map(20_000, 3, seed=2), src)  # ~5 MB, beyond the 1 MB limit
    d = tmp_path / "out"
    d.mkdir()
    (d / "x.ply").write_bytes(b"OLD")

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    r = _cli(["convert", src, d / "x.ply", "--overwrite"], preexec_fn=cap)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and "x.ply" in lines[0] and "too large" in lines[0], r.stderr
    assert (d / "x.ply").read_bytes() == b"OLD" and sorted(x.name for x in d.iterdir()) == ["x.ply"]


def test_two_writers_of_one_new_output_one_wins_whole_the_other_is_refused(A, tmp_path):
    plyfile = pytest.importorskip("plyfile")
    from synthetic_maps import synthetic_map

    from gs_mapping.ply import save_ply

    srcs = {}
    for n in (60_000, 500):
        srcs[n] = tmp_path / f"s{n}.ply"
        save_ply(synthetic_map(n, 1, seed=n), srcs[n])
    out = tmp_path / "same.ply"
    procs = {
        n: subprocess.Popen(
            [sys.executable, "-m", "gs_mapping", "convert", str(s), str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for n, s in srcs.items()
    }
    res = {n: (p.wait(timeout=120), p.stderr.read()) for n, p in procs.items()}
    winners = [n for n, (rc, _) in res.items() if rc == 0]
    assert len(winners) == 1, res
    (loser,) = set(res) - set(winners)
    assert res[loser][0] == 2 and "exists already" in res[loser][1]
    assert plyfile.PlyData.read(str(out))["vertex"].count == winners[0]  # the winner's map, whole
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(
        ["same.ply", *(s.name for s in srcs.values())]
    )


# ------------------------------------------------------------------------------------------------
# text inputs that parse but hold an integer too long for Python's int()


def test_parameter_yaml_with_an_integer_of_5000_digits_is_one_config_error(tmp_path):
    from gs_mapping.nodes.registry import node_class

    f = tmp_path / "p.yaml"
    f.write_text(f"/**:\n  ros__parameters:\n    mapper:\n      max_gaussians: {HUGE_INT}\n")
    assert yaml.safe_load  # (the text is valid YAML: an int scalar)
    with pytest.raises(GsMappingError, match="p.yaml"):
        node_class("mapper_node").load_config(str(f))


def test_hd_eval_json_with_an_integer_of_5000_digits(A, tmp_path):
    doc = json.dumps(hd_doc()).replace('"type": 0}]}]', f'"type": {HUGE_INT}}}]}}]')
    assert HUGE_INT in doc
    f = tmp_path / "hd.json"
    f.write_text(doc)
    o = _ok(run_cli(["hd-eval", f], "hd-eval-json", inputs=[f], must_name=["hd.json"]))
    assert o.result == "error"


def test_sog_meta_json_with_an_integer_of_5000_digits(tmp_path):
    sog = tmp_path / "scene"
    zipfile.ZipFile(Path(__file__).parent / "data" / "splat_formats" / "scene.sog").extractall(sog)
    meta = json.loads((sog / "meta.json").read_text())
    meta["count"] = 0  # placeholder, replaced by the long literal below
    (sog / "meta.json").write_text(json.dumps(meta).replace('"count": 0', f'"count": {HUGE_INT}'))
    o = _ok(run_cli(["convert", sog / "meta.json", tmp_path / "o.ply"], "sog", inputs=[sog]))
    assert o.result == "error" and not (tmp_path / "o.ply").exists()


# ------------------------------------------------------------------------------------------------
# a bag whose ground-truth JSON parses but is not what it should be (hd-predict)


@pytest.fixture(scope="module")
def world_bag(tmp_path_factory):
    from gs_mapping.bag import BagReader
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    d = tmp_path_factory.mktemp("outside21_world")
    write_bag(Drive.make(3, 3, "front", (256, 144)), d / "world", progress=False)
    with BagReader(d / "world") as b:
        topics = [(t.name, t.type, t.latched) for t in b.topics]
        raw = list(b.raw_messages())
    return d, topics, raw


def _with_first_gt(world_bag, name, text):
    """The world bag with its first /ground_truth/lanes_json String's data replaced by ``text``."""
    from gs_mapping.bag import BagWriter
    from gs_mapping.messages import RosbagsFactory, string_message

    d, topics, raw = world_bag
    out = d / name
    if out.exists():
        shutil.rmtree(out)
    with BagWriter(out) as w:
        for n, ty, latched in topics:
            w.add_topic(n, ty, latched=latched)
        done = False
        for topic, stamp, data in raw:
            if topic == "/ground_truth/lanes_json" and not done:
                w.write(topic, stamp, string_message(text, RosbagsFactory()))
                done = True
            else:
                w.write_raw(topic, stamp, data)
    assert done
    return out


@pytest.mark.parametrize(
    "text",
    ["[1]", '{"stamp_ns": "x"}', '{"stamp_ns": NaN}', f'{{"stamp_ns": {HUGE_INT}}}'],
    ids=["list", "stamp-string", "stamp-nan", "stamp-5001-digits"],
)
def test_hd_predict_with_a_ground_truth_string_that_parses_but_lies(world_bag, text):
    bag = _with_first_gt(world_bag, "gt_lies", text)
    out = bag.parent / "pred.json"
    if out.exists():
        out.unlink()
    _ok(run_cli(["hd-predict", bag, "--out", out, "--max-frames", "1"], "bag-gt", inputs=[bag]))


# ------------------------------------------------------------------------------------------------
# bag metadata that disagrees with the storage's own schema / topic names


def _lying_copy(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    meta = yaml.safe_load((dst / "metadata.yaml").read_text())
    for t in meta["rosbag2_bagfile_information"]["topics_with_message_count"]:
        if t["topic_metadata"]["name"] == "/tf":
            edit(t["topic_metadata"])
    (dst / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return dst


def _mcap_truth(bag: Path) -> dict[str, tuple[str, int]]:
    """topic → (schema name, message count) from the MCAP summary itself (the mcap library)."""
    mcap_reader = pytest.importorskip("mcap.reader")
    (f,) = bag.glob("*.mcap")
    with open(f, "rb") as fh:
        s = mcap_reader.make_reader(fh).get_summary()
    return {
        ch.topic: (s.schemas[ch.schema_id].name, s.statistics.channel_message_counts.get(cid, 0))
        for cid, ch in s.channels.items()
    }


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_topic_type_in_metadata_that_the_storage_contradicts(A, tmp_path, storage):
    from gs_mapping.bag import BagReader

    bag = _lying_copy(A[storage], tmp_path / "lie", lambda tm: tm.update(type="sensor_msgs/msg/Image"))
    if storage == "mcap":
        truth = _mcap_truth(bag)["/tf"][0]
    else:
        (db,) = bag.glob("*.db3")
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            truth = dict(c.execute("select name, type from topics").fetchall())["/tf"]
    assert truth == "tf2_msgs/msg/TFMessage"
    try:
        with BagReader(bag) as b:
            said = b.topic("/tf").type
    except GsMappingError:
        return  # refusing the contradiction in one line is as good
    assert said == truth


def test_a_topic_renamed_in_metadata_loses_no_message(A, tmp_path):
    from gs_mapping.bag import BagReader

    bag = _lying_copy(A["mcap"], tmp_path / "lie", lambda tm: tm.update(name="tf"))
    truth = _mcap_truth(bag)
    assert truth["/tf"][1] == 20
    try:
        with BagReader(bag) as b:
            got = sum(1 for t, _, _ in b.raw_messages() if t in ("/tf", "tf"))
    except GsMappingError:
        return  # an error naming the disagreement is acceptable
    assert got == truth["/tf"][1]


# ------------------------------------------------------------------------------------------------
# numeric arguments at their edges


def test_hd_eval_indent_beyond_any_use_is_refused_naming_it(A, tmp_path):
    o = _ok(run_cli(["hd-eval", A["json"], "--indent", str(2**64)], "argument", inputs=[A["json"]]))
    assert o.result == "error" and "--indent" in o.stderr

    def cap():  # the 10**9 case under a 3 GB address space: today "out of memory", not the argument
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    r = _cli(["hd-eval", A["json"], "--indent", "1000000000"], preexec_fn=cap, timeout=120)
    lines = _error_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1 and "--indent" in lines[0], r.stderr


def test_play_with_a_denormal_rate_is_one_line_naming_rate(A):
    r = _cli(["play", A["mcap"], "--rate", "1e-320", "--wait-for-subscribers", "0", "--domain-id", "97"])
    assert "Traceback" not in r.stderr, r.stderr[-600:]
    lines = _error_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1 and "--rate" in lines[0], r.stderr[-600:]


@pytest.mark.parametrize("value", ["nan", "-5"])
def test_router_duration_is_checked_like_run(value):
    ref = _cli(["run", "map_receiver_node", "--duration", value])  # the sibling option's rule
    assert ref.returncode == 2 and "--duration" in ref.stderr
    r = _cli(["router", "--listen", "tcp/127.0.0.1:0", "--duration", value], timeout=30)
    assert r.returncode == 2 and "--duration" in r.stderr, (r.returncode, r.stderr[-300:])


def test_yaml_alias_bomb_in_a_config_is_refused_fast(tmp_path):
    """Billion laughs under ros__parameters: PyYAML builds shared references; nothing here may expand
    them (an unknown section is named before any walk)."""
    from gs_mapping.nodes.registry import node_class

    lines = ["/**:", "  ros__parameters:", '    a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"    {cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(GsMappingError, match="bomb.yaml"):
        node_class("mapper_node").load_config(str(f))
    assert time.perf_counter() - t0 < 5


def test_output_spellings_of_an_input_through_a_symlinked_parent_are_refused(A, tmp_path):
    """``alias/../x``-style spellings: a symlinked parent directory and '..' resolve to the input."""
    d = tmp_path / "real"
    d.mkdir()
    inp = d / "in.ply"
    inp.write_bytes(A["ply"].read_bytes())
    (tmp_path / "alias").symlink_to(d)
    (d / "sub").mkdir()
    before = inp.read_bytes()
    for spelling in (tmp_path / "alias" / "in.ply", tmp_path / "alias" / "sub" / ".." / "in.ply"):
        with pytest.raises(OutputError, match="input"):
            write_bytes(spelling, b"x", overwrite=True, inputs=[inp])
        o = _ok(run_cli(["convert", inp, spelling, "--overwrite"], "argument", inputs=[inp]))
        assert o.result == "error"
    assert inp.read_bytes() == before


@pytest.mark.parametrize("frame", ["", "/map", "ma\x00p"], ids=["empty", "leading-slash", "nul"])
def test_a_frame_id_tf2_would_refuse_is_refused_at_encode(A, tmp_path, frame):
    out = tmp_path / "f.gsd"
    o = _ok(run_cli(["encode", A["ply"], out, "--frame-id", frame], "argument", inputs=[A["ply"]]))
    assert o.result == "error" and "frame" in o.stderr and not out.exists()


@pytest.mark.parametrize(
    "argv, naming",
    [
        (["hd-eval", "JSON", "--out", ""], "not a usable output name"),  # once taken for "no --out"
        (["convert", "", "OUT.ply"], "input path is empty"),  # once "lies inside the input"
        (["map", "BAG", "--out", "m", "--config", ""], "parameter file path is empty"),  # once ". : dir"
    ],
)
def test_an_empty_path_argument_is_named_not_taken_for_the_working_directory(A, tmp_path, argv, naming):
    """Path("") is ".", the working directory: an empty path given for a file is one line saying
    so, exit 2, and nothing written."""
    argv = [{"JSON": A["json"], "OUT.ply": tmp_path / "o.ply", "BAG": A["mcap"]}.get(a, a) for a in argv]
    r = _cli(argv, cwd=tmp_path)
    lines = _error_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1 and naming in lines[0], r.stderr[-400:]
    assert not (tmp_path / "o.ply").exists() and not (tmp_path / "m").exists()
