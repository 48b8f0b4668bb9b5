"""gs-mapping encode / decode / diff / apply / export, and their one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

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
    save_ply(g, tmp_path / "a.ply")
    rc, out, _ = run_cli(
        ["encode", str(tmp_path / "a.ply"), str(tmp_path / "a.gsd"), "--levels", "4"], capsys
    )
    info = json.loads(out)
    assert rc == 0 and info["gaussians"] == 3000 and info["levels"] == 4
    assert len(info["bytes_per_level"]) == 4 and info["bytes"] == (tmp_path / "a.gsd").stat().st_size
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
    save_ply(b, tmp_path / "b.ply")
    save_ply(c, tmp_path / "c.ply")
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
    save_ply(g, tmp_path / "a.ply")
    assert main(["encode", str(tmp_path / "a.ply"), str(tmp_path / "a.gsd")]) == 0
    good = (tmp_path / "a.gsd").read_bytes()
    other = synthetic_map(500, 0, seed=3)
    save_ply(other, tmp_path / "o.ply")
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
    save_ply(g, tmp_path / "a.ply")
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
