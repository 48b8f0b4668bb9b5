"""Hostile-input harness, part 1: every CLI command and argument, and the file system.

Each case runs ``gs-mapping …`` in-process (see ``hostile_cases.run_cli``) and checks the outcome
rule: exit 0 with a correct result, or exit 2 with one error line naming what was wrong — never a
traceback, a hang, a memory blow-up or a changed input. A few cases run as real processes for the
exit status and stderr a shell sees.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hostile_cases import make_assets, run_cli
from hostile_fs import full_disk_dir, read_only_dir


@pytest.fixture(scope="module")
def A(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("assets"))


def _check(o):
    assert not o.violation, f"{o.argv}: {o.violation}\n{o.extra.get('traceback', '')}"
    return o


def _arg_cases(A, t):
    """(argv, inputs, must_name, want) — want: 'error', 'ok' or None (either, by the rule)."""
    ply, ply2, snap, delta = A["ply"], A["ply2"], A["snapshot"], A["delta"]
    bag, sq, text, hd = A["mcap"], A["sqlite3"], A["text"], A["json"]
    missing = t / "missing.ply"
    cases = [
        # --- info
        (["info", bag], [bag], [], "ok"),
        (["info", sq], [sq], [], "ok"),
        (["info", "--json", bag], [bag], [], "ok"),
        (["info", missing], [], ["missing.ply"], "error"),
        (["info", text], [text], ["notes.txt"], "error"),
        (["info", t], [], [str(t)], "error"),
        # --- encode / decode / export / convert
        (["encode", ply, t / "e.gsd"], [ply], [], "ok"),
        (["encode", missing, t / "x.gsd"], [], ["missing.ply"], "error"),
        (["encode", text, t / "x.gsd"], [text], ["notes.txt"], "error"),
        (["encode", ply, t / "x.gsd", "--quality", "99"], [ply], ["quality"], "error"),
        (["encode", ply, t / "x.gsd", "--quality", "-1"], [ply], ["quality"], "error"),
        (["encode", ply, t / "x.gsd", "--pos-step", "nan"], [ply], ["pos"], "error"),
        (["encode", ply, t / "x.gsd", "--pos-step", "0"], [ply], ["pos"], "error"),
        (["encode", ply, t / "x.gsd", "--pos-step", "-1e300"], [ply], ["pos"], "error"),
        (["encode", ply, t / "x.gsd", "--levels", "0"], [ply], ["levels"], "error"),
        (["encode", ply, t / "x.gsd", "--levels", "100000"], [ply], ["levels"], "error"),
        (["encode", ply, t / "x.gsd", "--map-id", str(2**64)], [ply], ["map"], "error"),
        (["encode", ply, t / "x.gsd", "--map-id", "-1"], [ply], ["map"], "error"),
        (["encode", ply, t / "x.gsd", "--seq", str(2**64)], [ply], ["seq"], "error"),
        (["encode", ply, t / "x.gsd", "--seq", "0"], [ply], ["seq"], None),
        (["encode", ply, t / "x.gsd", "--frame-id", "x" * 1000], [ply], ["frame"], "error"),
        (["encode", ply, t / "x.gsd", "--frame-id", "\udcff"], [ply], ["frame id must be UTF-8"], "error"),
        (["diff", ply, ply2, t / "x.gsd", "--frame-id", "\udcff"], [ply, ply2], ["UTF-8"], "error"),
        (["encode", ply, ply, "--overwrite"], [ply], ["input"], "error"),
        (["encode", ply, t], [ply], ["directory"], "error"),
        (["encode", ply, text / "sub.gsd"], [ply, text], ["not a directory"], "error"),
        (["decode", snap, t / "d.ply"], [snap], [], "ok"),
        (["decode", snap, t / "d.ply"], [snap], ["exists"], "error"),  # second time: exists
        (["decode", snap, t / "d.ply", "--overwrite"], [snap], [], "ok"),
        (["decode", snap, t / "d2.ply", "--max-level", "-1"], [snap], ["level"], None),
        (["decode", snap, t / "d3.ply", "--max-level", str(2**70)], [snap], ["level", "2**31"], "error"),
        (["decode", delta, t / "d4.ply"], [delta], ["delta.gsd"], "error"),
        (["decode", ply, t / "d5.ply"], [ply], ["map.ply"], "error"),
        (["decode", snap, snap, "--overwrite"], [snap], [str(snap)], "error"),
        (["decode", snap, t / "d6.xyz"], [snap], ["d6.xyz"], "error"),
        (["export", ply, t / "x.spz"], [ply], [], "ok"),
        (["export", ply, t / "x.spz"], [ply], ["exists"], "error"),
        (["export", ply, ply, "--overwrite"], [ply], [str(ply)], "error"),
        (["export", snap, t / "y.spz"], [snap], [], None),
        (["convert", ply, t / "c.ply"], [ply], [], "ok"),
        (["convert", ply, t / "c.unknownext"], [ply], ["unknownext"], "error"),
        (["convert", ply, t / "c.compressed.ply"], [ply], [], None),
        (["encode", ply, t / "e2.ply"], [ply], ["e2.ply", ".gsd"], "error"),  # a container named .ply
        (["diff", ply, ply2, t / "e3.spz"], [ply, ply2], ["e3.spz", ".gsd"], "error"),
        (["encode", ply, "-"], [ply], ["standard output"], "error"),
        (["decode", snap, t / "e4.GSD"], [snap], ["e4.GSD"], "error"),
        (["convert", ply, t / "c2.gsd.spz"], [ply], [], "ok"),  # named .spz: an SPZ
        (["convert", ply, t / ("a" * 300 + ".ply")], [ply], ["name too long"], "error"),
        (["convert", t / ("a" * 300 + ".ply"), t / "c3.ply"], [], ["name too long"], "error"),
        (["encode", t / ("a" * 300), t / "c4.gsd"], [], ["unknown scene format"], "error"),
        (["decode", t / ("a" * 300 + ".gsd"), t / "c5.ply"], [], ["name too long"], "error"),
        # --- diff / apply
        (["diff", ply, ply2, t / "d.gsd"], [ply, ply2], [], "ok"),
        (["diff", ply, ply2, ply2, "--overwrite"], [ply, ply2], ["input"], "error"),
        (["diff", ply, ply2, t / "x.gsd", "--base-seq", "0"], [ply, ply2], ["base-seq"], "error"),
        (["diff", ply, ply2, t / "x.gsd", "--base-seq", str(2**64)], [ply, ply2], ["base-seq"], "error"),
        (["diff", ply, ply2, t / "x.gsd", "--map-id", str(2**64)], [ply, ply2], ["map-id"], "error"),
        (["diff", ply, text, t / "x.gsd"], [ply, text], ["notes.txt"], "error"),
        (["apply", snap, delta, t / "a.ply"], [snap, delta], [], "ok"),
        (["apply", snap, delta], [snap, delta], ["delta.gsd"], "error"),  # OUT forgotten
        (["apply", snap, t / "only.ply"], [snap], [], "ok"),
        (["apply", snap, delta, delta, t / "b.ply"], [snap, delta], ["delta.gsd"], "error"),
        (["apply", delta, delta, t / "a2.ply"], [delta], ["delta.gsd"], "error"),
        (["apply", snap, snap, t / "a3.ply"], [snap], ["snap.gsd"], "error"),
        (["apply", snap, text, t / "a4.ply"], [snap, text], ["notes.txt"], "error"),
        (["apply", snap, delta, delta, "--overwrite"], [snap, delta], ["delta.gsd"], "error"),
        (["apply", snap, delta, snap, "--overwrite"], [snap, delta], [str(snap)], "error"),
        # --- hd-eval
        (["hd-eval", hd], [hd], [], "ok"),
        (["hd-eval", text], [text], ["notes.txt"], "error"),
        (["hd-eval", missing], [], ["missing.ply"], "error"),
        (["hd-eval", hd, "--out", hd], [hd], ["input"], "error"),
        (["hd-eval", hd, "--indent", "-5"], [hd], [], None),
        # --- world (small), replay, map, play, run, params, demo, hd-*
        (["world", "--out", t / "w", "--frames", "0"], [], ["frames"], "error"),
        (["world", "--out", t / "w", "--size", "1x1"], [], ["size"], "error"),
        (["world", "--out", t / "w", "--size", "99999x2"], [], ["size"], "error"),
        (["world", "--out", t / "w", "--rate", "nan"], [], ["rate"], "error"),
        (["world", "--out", t / "w", "--speed", "inf"], [], ["speed"], "error"),
        (["world", "--out", t / "w", "--rig", "nope"], [], ["rig"], "error"),
        (["world", "--out", t / "w", "--supersample", "9"], [], ["supersample"], "error"),
        (["world", "--out", t / "w", "--bev-range", "-1", "5"], [], ["bev-range"], "error"),
        (["world", "--out", bag], [bag], ["exists"], "error"),
        (["world", "--out", t, "--overwrite", "--frames", "2"], [ply], ["refusing"], "error"),
        (["world", "--out", text / "w"], [text], ["not a directory"], "error"),
        (["replay", bag, "--out", bag, "--overwrite"], [bag], ["input"], "error"),
        (["replay", bag, "--out", t / "r", "--nodes", "nope"], [bag], ["nope"], "error"),
        (["replay", missing, "--out", t / "r"], [], ["missing.ply"], "error"),
        (["replay", bag, "--out", t / "r", "--config", text], [bag, text], ["notes.txt"], "error"),
        (["map", bag, "--out", t / "m"], [bag], [], "error"),  # no camera topics in this bag
        (["map", missing, "--out", t / "m"], [], ["missing.ply"], "error"),
        (["map", bag, "--out", t / "m", "--holdout-every", "1"], [bag], ["holdout"], "error"),
        (["map", bag, "--out", t / "m", "--max-frames", "0"], [bag], ["max-frames"], "error"),
        (["map", bag, "--out", t / "m", "--config", text], [bag, text], ["notes.txt"], "error"),
        (["play", bag, "--rate", "0"], [bag], ["rate"], "error"),
        (["play", bag, "--rate", "nan"], [bag], ["rate"], "error"),
        (["params", "nope_node"], [], ["nope_node"], "error"),
        (["params"], [], [], "ok"),
        (["demo", "--frames", "0", "--out", t / "demo"], [], ["frames"], "error"),
        (["demo", "--out", text / "demo"], [text], ["not a directory"], "error"),
        (["hd-predict", bag, "--out", bag], [bag], [], "error"),
        (["hd-predict", bag, "--out", t / "p.json"], [bag], [], "error"),  # no cameras in this bag
        (["hd-train", "--epochs", "-1", "--out", t / "ck"], [], [], "error"),
        (["nonsense-command"], [], [], "error"),
        (["encode"], [], [], "error"),
    ]
    return cases


def test_every_command_and_argument(A, tmp_path):
    outcomes = []
    for argv, inputs, names, want in _arg_cases(A, tmp_path):
        o = _check(run_cli(argv, "argument", inputs=inputs, must_name=[str(n) for n in names]))
        if want is not None:
            assert o.result == want, f"{argv}: {o.result} (want {want}): {o.stderr[-400:]}"
        outcomes.append(o)
    assert len(outcomes) > 80


def _writers(A, out):
    """Every command writing a file, aimed at ``out``."""
    return [
        (["encode", A["ply"], out / "x.gsd"], [A["ply"]]),
        (["decode", A["snapshot"], out / "x.ply"], [A["snapshot"]]),
        (["export", A["ply"], out / "x.spz"], [A["ply"]]),
        (["convert", A["ply"], out / "x.ply"], [A["ply"]]),
        (["diff", A["ply"], A["ply2"], out / "x.gsd"], [A["ply"], A["ply2"]]),
        (["apply", A["snapshot"], A["delta"], out / "x.ply"], [A["snapshot"], A["delta"]]),
        (["hd-eval", A["json"], "--out", out / "x.json"], [A["json"]]),
        (["replay", A["mcap"], "--out", out / "rb", "--nodes", "map_receiver_node"], [A["mcap"]]),
    ]


def test_outputs_on_a_read_only_file_system(A, tmp_path):
    with read_only_dir(tmp_path) as ro:
        for argv, inputs in _writers(A, ro):
            o = _check(run_cli(argv, "read-only", inputs=inputs, must_name=[str(ro)]))
            assert o.result == "error", (argv, o.stderr)
        o = _check(run_cli(["world", "--out", ro / "w", "--frames", "2"], "read-only", must_name=[str(ro)]))
        assert o.result == "error"


def test_outputs_on_a_full_disk_keep_the_previous_file(A, tmp_path):
    from gs_mapping.ply import load_ply, save_ply

    bigmap = load_ply(A["ply"])
    for _ in range(5):  # 1,920 Gaussians: about 190 KB of PLY, twice what the disk holds
        bigmap = bigmap.copy()
        bigmap.add(bigmap.means + 1.0, bigmap.quats, bigmap.log_scales, bigmap.opacity_logits, bigmap.sh)
    src = tmp_path / "big.ply"
    save_ply(bigmap, src)
    with full_disk_dir(tmp_path, 96 * 1024) as (d, kind):
        (d / "x.ply").write_bytes(A["ply"].read_bytes())  # a previous output in place
        previous = (d / "x.ply").read_bytes()
        o = _check(
            run_cli(
                ["convert", src, d / "x.ply", "--overwrite"], "full-disk", inputs=[src], must_name=["x.ply"]
            )
        )
        assert o.result == "error" and ("no space" in o.stderr or kind == "rlimit"), o.stderr
        assert (d / "x.ply").read_bytes() == previous
        o = _check(
            run_cli(
                ["decode", A["snapshot"], d / "x.ply", "--overwrite"], "full-disk", inputs=[A["snapshot"]]
            )
        )
        assert o.result == "ok"  # a small output still fits
        assert not [p.name for p in d.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize(
    "argv, want_in_err",
    [
        (["decode", "/nonexistent/x.gsd", "/tmp/never.ply"], "x.gsd"),
        (["info", "/nonexistent/bag"], "/nonexistent/bag"),
        (["encode", "--quality", "zz", "a", "b"], "quality"),
    ],
)
def test_exit_status_and_stderr_as_a_shell_sees_them(argv, want_in_err):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", *argv], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if " error: " in ln]
    assert len(lines) == 1 and want_in_err in lines[0], r.stderr


def test_encode_keeps_an_existing_scene_it_was_misdirected_to(A, tmp_path):
    """``encode SCENE OUT.ply --overwrite``: a container is not written under a scene's name, and
    the scene already there is left as it was."""
    out = tmp_path / "kept.ply"
    out.write_bytes(A["ply"].read_bytes())
    o = _check(
        run_cli(
            ["encode", A["ply"], out, "--overwrite"], "argument", inputs=[A["ply"]], must_name=["kept.ply"]
        )
    )
    assert o.result == "error" and out.read_bytes() == A["ply"].read_bytes()


def test_out_of_memory_is_one_line_as_a_shell_sees_it(tmp_path):
    """A valid SPZ whose 8M points do not fit the address space the process is given (ulimit -v
    1.5 GB; gzip lets 0.5 MB name them): exit 2 and one line, not a traceback."""
    import gzip
    import resource

    from gs_mapping.splat_formats import spz

    n = 8 << 20
    body = bytes(sum(spz._sizes(n, 3, 2)))
    (tmp_path / "big.spz").write_bytes(
        gzip.compress(spz._LEGACY.pack(spz.MAGIC, 2, n, 3, 12, 0, 0) + body, 1)
    )
    del body
    limit = 1536 << 20

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "convert", str(tmp_path / "big.spz"), str(tmp_path / "o.splat")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        preexec_fn=cap,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if " error: " in ln]
    assert len(lines) == 1 and "out of memory" in lines[0] and "big.spz" in lines[0], r.stderr
    assert not (tmp_path / "o.splat").exists()


def test_nothing_is_written_into_a_sog_named_by_its_meta_json(tmp_path):
    """A SOG is its folder: named by its meta.json or by the folder, nothing is written inside it."""
    import zipfile
    from pathlib import Path

    sog = tmp_path / "scene"
    zipfile.ZipFile(Path(__file__).parent / "data" / "splat_formats" / "scene.sog").extractall(sog)
    for src in (sog / "meta.json", sog):
        o = _check(run_cli(["convert", src, sog / "out.spz"], "argument", inputs=[src], must_name=["inside"]))
        assert o.result == "error" and not (sog / "out.spz").exists()
    assert _check(run_cli(["convert", sog / "meta.json", tmp_path / "out.spz"], "argument")).result == "ok"


def test_convert_names_snapshot_options_it_does_not_use(A, tmp_path, caplog):
    o = _check(
        run_cli(["convert", A["ply"], tmp_path / "q.spz", "--quality", "4", "--levels", "1"], "argument")
    )
    assert o.result == "ok" and "--quality, --levels: for .gsd outputs only" in caplog.text
