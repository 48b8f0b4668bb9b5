"""gs-mapping encode / decode / diff / apply / export, and their one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from synthetic_maps import synthetic_map

from gs_map_share.quantize import QuantParams, quantize
from gs_mapping.cli import main
from gs_mapping.ply import load_ply, save_ply


def run_cli(args, capsys):
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_encode_decode_diff_apply_export(tmp_path, capsys):
    g = synthetic_map(3000, 3, seed=1)
    save_ply(g, tmp_path / "a.ply", keep_ids=True)
    rc, out, _ = run_cli(
        ["encode", str(tmp_path / "a.ply"), str(tmp_path / "a.gsd"), "--levels", "4"], capsys
    )
    info = json.loads(out)
    assert rc == 0 and info["gaussians"] == 3000 and 2 <= info["levels"] <= 4  # (tiny levels left out)
    assert (
        len(info["bytes_per_level"]) == info["levels"]
        and info["bytes"] == (tmp_path / "a.gsd").stat().st_size
    )
    assert abs(info["bytes_per_gaussian"] - info["bytes"] / 3000) < 1e-9
    rc, out, _ = run_cli(["decode", str(tmp_path / "a.gsd"), str(tmp_path / "a_dec.ply")], capsys)
    dec = load_ply(tmp_path / "a_dec.ply")
    assert rc == 0 and dec.equals(quantize(g, QuantParams.from_quality(2)))
    rc, _, _ = run_cli(
        ["decode", str(tmp_path / "a.gsd"), str(tmp_path / "coarse.ply"), "--max-level", "0"], capsys
    )
    assert rc == 0 and 0 < len(load_ply(tmp_path / "coarse.ply")) < 3000

    b = g.copy()
    b.update(b.ids[:40], means=b.means[:40] + 0.05)
    b.remove(b.ids[100:120])
    b.add(g.means[:10] + 0.3, g.quats[:10], g.log_scales[:10], g.opacity_logits[:10], g.sh[:10])
    c = b.copy()
    c.remove(c.ids[200:230])
    save_ply(b, tmp_path / "b.ply", keep_ids=True)
    save_ply(c, tmp_path / "c.ply", keep_ids=True)
    rc, out, _ = run_cli(
        ["diff", str(tmp_path / "a.ply"), str(tmp_path / "b.ply"), str(tmp_path / "ab.gsd")], capsys
    )
    assert rc == 0 and json.loads(out)["added"] == 10
    rc, _, _ = run_cli(
        [
            "diff",
            str(tmp_path / "b.ply"),
            str(tmp_path / "c.ply"),
            str(tmp_path / "bc.gsd"),
            "--base-seq",
            "2",
        ],
        capsys,
    )
    assert rc == 0
    rc, out, _ = run_cli(
        [
            "apply",
            str(tmp_path / "a.gsd"),
            str(tmp_path / "ab.gsd"),
            str(tmp_path / "bc.gsd"),
            str(tmp_path / "c_dec.ply"),
            "--keep-ids",
        ],
        capsys,
    )
    assert rc == 0 and json.loads(out)["seq"] == 3
    assert load_ply(tmp_path / "c_dec.ply").equals(quantize(c, QuantParams.from_quality(2)))
    # out of order: a one-line error, non-zero exit
    rc, _, err = run_cli(
        ["apply", str(tmp_path / "a.gsd"), str(tmp_path / "bc.gsd"), str(tmp_path / "x.ply")], capsys
    )
    assert rc == 2 and "sequence" in err and len(err.strip().splitlines()) == 1
    rc, out, _ = run_cli(["export", str(tmp_path / "a.ply"), str(tmp_path / "a.spz")], capsys)
    assert rc == 0 and json.loads(out)["spz_version"] == 4
    assert (tmp_path / "a.spz").read_bytes()[:8] == b"NGSP\x04\x00\x00\x00"


def test_bad_inputs_exit_nonzero_with_one_line(tmp_path, capsys):
    g = synthetic_map(500, 0, seed=2)
    save_ply(g, tmp_path / "a.ply", keep_ids=True)
    assert main(["encode", str(tmp_path / "a.ply"), str(tmp_path / "a.gsd")]) == 0
    good = (tmp_path / "a.gsd").read_bytes()
    other = synthetic_map(500, 0, seed=3)
    save_ply(other, tmp_path / "o.ply", keep_ids=True)
    main(
        [
            "diff",
            str(tmp_path / "a.ply"),
            str(tmp_path / "o.ply"),
            str(tmp_path / "other_map.gsd"),
            "--map-id",
            "9",
        ]
    )
    capsys.readouterr()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    cases = {
        "truncated.gsd": good[: len(good) // 3],
        "flipped.gsd": bytes(flipped),
        "magic.gsd": b"NOPE" + good[4:],
        "empty.gsd": b"",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        rc, _, err = run_cli(["decode", str(tmp_path / name), str(tmp_path / "x.ply")], capsys)
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, (name, err)
    rc, _, err = run_cli(
        ["apply", str(tmp_path / "a.gsd"), str(tmp_path / "other_map.gsd"), str(tmp_path / "x.ply")], capsys
    )
    assert rc == 2 and "map" in err
    rc, _, err = run_cli(["decode", str(tmp_path / "missing.gsd"), str(tmp_path / "x.ply")], capsys)
    assert rc == 2 and "cannot read" in err
    assert not (tmp_path / "x.ply").exists()


def test_console_entry_point(tmp_path):
    g = synthetic_map(200, 0, seed=4)
    save_ply(g, tmp_path / "a.ply", keep_ids=True)
    p = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "encode", str(tmp_path / "a.ply"), str(tmp_path / "a.gsd")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["gaussians"] == 200
    (tmp_path / "bad.gsd").write_bytes(b"GSMD" + bytes(300))
    p = subprocess.run(
        [sys.executable, "-m", "gs_mapping", "decode", str(tmp_path / "bad.gsd"), str(tmp_path / "b.ply")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_diff_of_scenes_without_ids_applies_to_their_snapshots(tmp_path, capsys):
    """Two versions of a scene as trainers write them (no ids, rows in any order, a palette of
    higher SH, --relative): the delta applies to the snapshot ``encode`` made of the first, and
    the receiver ends holding the second, quantised as the encoder would (compared as sets of
    Gaussians: the first's are numbered in the codec's order, the second's matched by content).
    Unchanged Gaussians cost nothing: an identical NEW gives an empty delta."""
    from argparse import Namespace

    from test_share_scenes import _palette_scene, _rows, _scene

    from gs_mapping.cli.encode import snapshot_params
    from gs_mapping.gaussians import GaussianMap

    a = _palette_scene(6000, 300, seed=21)
    rng = np.random.default_rng(21)
    keep = np.flatnonzero(rng.random(len(a)) > 0.01)  # ~60 removed
    moved = rng.choice(len(keep), 100, replace=False)
    means = a.means[keep].copy()
    means[moved] += np.float32(0.02)
    extra = rng.choice(len(a), 20, replace=False)  # 20 added (copies moved far off)
    cat = lambda x, y: np.concatenate([x, y])  # noqa: E731
    b = GaussianMap(
        a.sh_degree,
        means=cat(means, a.means[extra] + np.float32(3.0)),
        quats=cat(a.quats[keep], a.quats[extra]),
        log_scales=cat(a.log_scales[keep], a.log_scales[extra]),
        opacity_logits=cat(a.opacity_logits[keep], a.opacity_logits[extra]),
        sh=cat(a.sh[keep], a.sh[extra]),
    )
    b = _scene(b, rng.permutation(len(b)))  # a trainer's own row order
    for name, m in (("a.ply", a), ("b.ply", b)):
        save_ply(m, tmp_path / name, keep_ids=True)
    t = lambda n: str(tmp_path / n)  # noqa: E731
    assert main(["encode", t("a.ply"), t("a.gsd"), "--relative"]) == 0
    for new, out in (("a.ply", "aa.gsd"), ("b.ply", "ab.gsd")):
        capsys.readouterr()
        assert main(["diff", t("a.ply"), t(new), t(out), "--relative"]) == 0
        info = json.loads(capsys.readouterr().out)
        if new == "a.ply":
            assert info["added"] == info["updated"] == info["removed"] == 0
        else:
            assert info["added"] == 120 and info["removed"] == len(a) - len(keep) + 100
        assert main(["apply", t("a.gsd"), t(out), t(out + ".ply")]) == 0
        got = load_ply(tmp_path / (out + ".ply"))
        want = load_ply(tmp_path / new)
        params = snapshot_params(Namespace(quality=2, pos_step=None, relative=True), load_ply(t("a.ply")))
        assert np.array_equal(_rows(got), _rows(quantize(want, params)))


def test_diff_refuses_ids_it_cannot_match(tmp_path, capsys):
    from test_share_scenes import _scene

    g = synthetic_map(500, 0, seed=2)
    save_ply(g, tmp_path / "with_ids.ply", keep_ids=True)
    save_ply(_scene(g, np.arange(len(g))), tmp_path / "no_ids.ply", keep_ids=True)
    rc, _, err = run_cli(
        ["diff", str(tmp_path / "no_ids.ply"), str(tmp_path / "with_ids.ply"), str(tmp_path / "d.gsd")],
        capsys,
    )
    assert rc == 2 and "cannot be matched by id" in err and err.count("\n") == 1
    assert not (tmp_path / "d.gsd").exists()


def test_diff_to_an_empty_scene_removes_everything(tmp_path, capsys):
    """An empty NEW (whose file may carry an id column: there are no ids to match) removes every
    Gaussian of an id-less OLD."""
    from test_share_scenes import _scene

    g = _scene(synthetic_map(300, 0, seed=1), np.arange(300))
    save_ply(g, tmp_path / "a.ply", keep_ids=True)
    save_ply(g.subset(np.zeros(len(g), bool)), tmp_path / "empty.ply", keep_ids=True)
    t = lambda n: str(tmp_path / n)  # noqa: E731
    assert main(["encode", t("a.ply"), t("a.gsd")]) == 0
    assert main(["diff", t("a.ply"), t("empty.ply"), t("d.gsd")]) == 0
    assert main(["apply", t("a.gsd"), t("d.gsd"), t("r.ply")]) == 0
    assert len(load_ply(tmp_path / "r.ply")) == 0


def test_a_chain_of_relative_diffs_takes_the_snapshot_parameters(tmp_path, capsys):
    """With --relative the step follows the scene, so a second delta derived from the edited map
    would carry other parameters: OLD given as the snapshot itself, or --params-from it with OLD
    the map apply wrote, makes a chain that applies and ends at the last scene quantised with the
    snapshot's parameters."""
    from test_share_scenes import _rows, _scene

    from gs_map_share.container import unpack_header

    a = _scene(synthetic_map(3000, 0, seed=8), np.arange(3000))
    b = _scene(a.subset(np.arange(3000) % 7 != 0), np.arange(2571)[::-1])  # 429 removed, rows reversed
    b.means[:300] *= np.float32(1.5)  # a larger scene: its own median step would differ
    c = _scene(b.subset(np.arange(len(b)) % 5 != 1), np.arange(len(b) - len(b) // 5 - 1))
    t = lambda n: str(tmp_path / n)  # noqa: E731
    for name, m in (("a.ply", a), ("b.ply", b), ("c.ply", c)):
        save_ply(m, tmp_path / name, keep_ids=True)
    assert main(["encode", t("a.ply"), t("a.gsd"), "--relative"]) == 0
    assert main(["diff", t("a.gsd"), t("b.ply"), t("ab.gsd")]) == 0  # OLD: the snapshot
    assert main(["apply", t("a.gsd"), t("ab.gsd"), t("mid.ply"), "--keep-ids"]) == 0
    args = ["diff", t("mid.ply"), t("c.ply"), t("bc.gsd"), "--base-seq", "2", "--params-from", t("a.gsd")]
    assert main(args) == 0
    assert main(["apply", t("a.gsd"), t("ab.gsd"), t("bc.gsd"), t("end.ply"), "--keep-ids"]) == 0
    params = unpack_header((tmp_path / "a.gsd").read_bytes())[0].params
    assert np.array_equal(_rows(load_ply(tmp_path / "end.ply")), _rows(quantize(c, params)))
    capsys.readouterr()
    assert main(["diff", t("ab.gsd"), t("c.ply"), t("x.gsd")]) == 2  # a delta is no base
    assert "not a snapshot" in capsys.readouterr().err


def _two_scenes(tmp_path):
    """OLD and NEW with ids: NEW moves 20 of OLD's 300 Gaussians and adds 10."""
    g = synthetic_map(310, 1, seed=4)
    old = g.subset(np.arange(300))
    new = g.subset(np.arange(310)).copy()
    new.means[:20] += 0.05
    save_ply(old, tmp_path / "old.ply", keep_ids=True)
    save_ply(new, tmp_path / "new.ply", keep_ids=True)
    return old, new


def test_diff_against_a_snapshot_takes_its_map_frame_and_sequence(tmp_path, capsys):
    """README: OLD may be 'the receivers' .gsd'. The delta is for that snapshot: its map id,
    frame and sequence (map 7, frame odom, sequence 5 here, none of them the defaults), whether
    --params-from names the same file in another spelling or not at all; `apply` then rebuilds NEW
    quantised. An option contradicting the snapshot is refused by name (the delta would not apply)."""
    from gs_map_share.container import unpack_header

    _, new = _two_scenes(tmp_path)
    base = tmp_path / "base.gsd"
    rc, _, err = run_cli(
        ["encode", str(tmp_path / "old.ply"), str(base), "--map-id", "7", "--seq", "5", "--frame-id", "odom"],
        capsys,
    )
    assert rc == 0, err
    for i, extra in enumerate(([], ["--params-from", f"{tmp_path}/./base.gsd"])):
        delta, out = tmp_path / f"d{i}.gsd", tmp_path / f"out{i}.ply"
        rc, _, err = run_cli(["diff", str(base), str(tmp_path / "new.ply"), str(delta), *extra], capsys)
        assert rc == 0, err
        h = unpack_header(delta.read_bytes())[0]
        assert (h.map_id, h.frame_id, h.base_seq, h.seq) == (7, "odom", 5, 6)
        rc, _, err = run_cli(["apply", str(base), str(delta), str(out)], capsys)
        assert rc == 0, err
        assert load_ply(out).equals(quantize(new, QuantParams.from_quality(2)))
    for option, value in (("--map-id", "3"), ("--frame-id", "map")):
        rc, _, err = run_cli(
            ["diff", str(base), str(tmp_path / "new.ply"), str(tmp_path / "x.gsd"), option, value], capsys
        )
        assert rc == 2 and err.count("\n") == 1 and option in err and "base.gsd" in err
        assert not (tmp_path / "x.gsd").exists()


def test_a_bad_snapshot_read_as_a_scene_or_as_parameters_is_named(tmp_path, capsys):
    """Every command taking a .gsd names it when it is broken (decode did; convert, export, encode,
    both of diff's inputs and --params-from did not), and --params-from is checked whole, not only
    its header (a truncated one was taken)."""
    _two_scenes(tmp_path)
    good = tmp_path / "good.gsd"
    assert run_cli(["encode", str(tmp_path / "old.ply"), str(good)], capsys)[0] == 0
    cut = tmp_path / "cut.gsd"
    cut.write_bytes(good.read_bytes()[:200])  # header whole, chunks missing
    old, new, x = str(tmp_path / "old.ply"), str(tmp_path / "new.ply"), str(tmp_path / "x.gsd")
    for argv in (
        ["convert", str(cut), str(tmp_path / "x.ply")],
        ["export", str(cut), str(tmp_path / "x.spz")],
        ["encode", str(cut), x],
        ["diff", str(cut), new, x],
        ["diff", str(good), str(cut), x],
        ["diff", old, new, x, "--params-from", str(cut)],
        ["decode", str(cut), str(tmp_path / "x.ply")],
        ["apply", str(cut), str(good), str(tmp_path / "x.ply")],
    ):
        rc, _, err = run_cli(argv, capsys)
        assert rc == 2 and err.count("\n") == 1 and f"error: {cut}: container" in err, (argv, err)
    assert not list(tmp_path.glob("x.*"))


def test_a_position_beyond_the_lattice_names_the_file_and_the_row(tmp_path, capsys):
    """'beyond 2**52 steps' said which file (of diff's two) and which Gaussian."""
    g = synthetic_map(50, 0, seed=2)
    far = g.copy()
    far.means[7, 0] = 1e16
    save_ply(g, tmp_path / "a.ply", keep_ids=True)
    save_ply(far, tmp_path / "far.ply", keep_ids=True)
    a, f, x = str(tmp_path / "a.ply"), str(tmp_path / "far.ply"), str(tmp_path / "x.gsd")
    for argv in (["encode", f, x], ["convert", f, x], ["diff", a, f, x], ["diff", f, a, x]):
        rc, _, err = run_cli(argv, capsys)
        assert rc == 2 and f"error: {f}: the Gaussian at row 7 lies more than 2**52" in err, (argv, err)


def test_an_error_line_stays_one_line_whatever_the_input_names(tmp_path, capsys):
    """A name holding a newline or an escape (a file's, or one inside a SOG's meta.json) is written
    escaped: input cannot add lines to the error (log forging) or drive the terminal."""
    from gs_mapping.cli import one_line

    assert one_line("a\nb\x1b[2Jc\td é×") == "a\\nb\\x1b[2Jc\\td é×"
    name = tmp_path / "scene\ngs-mapping encode: wrote.ply"
    rc, _, err = run_cli(["encode", str(name), str(tmp_path / "x.gsd")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "scene\\ngs-mapping encode: wrote.ply" in err


def test_apply_usage_names_one_output_after_the_deltas(capsys):
    """`apply`'s usage read 'DELTA… OUT [DELTA… OUT ...]', as if each group had an output."""
    import pytest

    with pytest.raises(SystemExit):
        main(["apply", "--help"])
    out = capsys.readouterr().out
    assert "BASE.gsd [DELTA.gsd ...] OUT.ply" in out and "OUT [" not in out
