"""Outside probe of the scene formats (session #29's fmt29 review): what it found, each as a test.

- A PLY whose header declares fewer rows than its data holds (a count edited or written short): the
  header rules, as in every PLY reader, but the rows past it are said in one warning, where they
  were dropped without a word (binary and ASCII; a trailing newline or padding is not a row).
- A scene whose log-scales or colour coefficients lie beyond the codec's range (−30..12, ±64) is
  encoded with them at those bounds, now said in one warning line.
- An SPZ writer's refusal names the output once (it was printed twice: the writer's and the
  caller's prefix).
- A SOG meta.json that says version 1 without version 1's ``means.shape`` is refused by naming that,
  not as a Gaussian count of None.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_mapping.cli import main
from gs_mapping.ply import load_ply, save_ply

PROPS = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2"]
PROPS += ["rot_0", "rot_1", "rot_2", "rot_3"]


def _with_count(data: bytes, old: int, new: int) -> bytes:
    head = f"element vertex {old}\n".encode()
    assert data.count(head) == 1
    return data.replace(head, f"element vertex {new}\n".encode())


def _ascii_ply(rows: np.ndarray, declared: int, tail: str = "") -> bytes:
    header = "ply\nformat ascii 1.0\n" + f"element vertex {declared}\n"
    header += "".join(f"property float {p}\n" for p in PROPS) + "end_header\n"
    body = "".join(" ".join(f"{v:.6g}" for v in r) + "\n" for r in rows)
    return (header + body + tail).encode()


def _rows(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    r = rng.normal(0, 1, (n, len(PROPS)))
    r[:, 7:10] = -3.0
    r[:, 10:] = [1, 0, 0, 0]
    return r


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_binary_rows_past_the_header_count_are_said(tmp_path, caplog):
    g = synthetic_map(40, 1, seed=3)
    path = tmp_path / "full.ply"
    save_ply(g, path)
    full = path.read_bytes()
    caplog.clear()
    assert len(load_ply(path)) == 40 and not _warnings(caplog)  # a whole file: nothing said
    (tmp_path / "nl.ply").write_bytes(full + b"\n")  # (a trailing newline is no row)
    caplog.clear()
    assert len(load_ply(tmp_path / "nl.ply")) == 40 and not _warnings(caplog)
    short = tmp_path / "short.ply"
    short.write_bytes(_with_count(full, 40, 35))
    caplog.clear()
    assert len(load_ply(short)) == 35  # the header rules
    said = _warnings(caplog)
    assert len(said) == 1 and "5 more row(s) of element 'vertex'" in said[0] and str(short) in said[0], said
    head = full.index(b"end_header\n")  # a last element without properties: no rows to count past it
    empty = full[:head] + b"element note 2\n" + full[head:] + b"\n"
    (tmp_path / "empty.ply").write_bytes(empty)
    caplog.clear()
    assert len(load_ply(tmp_path / "empty.ply")) == 40 and not _warnings(caplog)


def test_ascii_rows_past_the_header_count_are_said(tmp_path, caplog):
    rows = _rows(12)
    whole = tmp_path / "whole.ply"
    whole.write_bytes(_ascii_ply(rows, 12, tail="\n\n"))  # (blank lines after the rows: no row)
    caplog.clear()
    assert len(load_ply(whole)) == 12 and not _warnings(caplog)
    short = tmp_path / "short.ply"
    short.write_bytes(_ascii_ply(rows, 9))
    caplog.clear()
    back = load_ply(short)
    assert len(back) == 9 and np.allclose(back.means, rows[:9, :3], atol=1e-5)
    said = _warnings(caplog)
    assert len(said) == 1 and "3 more row(s) of element 'vertex'" in said[0], said


def test_values_beyond_the_codecs_range_are_said_on_encode(tmp_path, caplog):
    g = synthetic_map(30, 0, seed=5)
    g.log_scales[0, 1] = 20.0
    g.log_scales[1, 0] = -45.0
    g.sh[2, 0, 2] = 100.0
    src, out = tmp_path / "far.ply", tmp_path / "far.gsd"
    save_ply(g, src)
    caplog.clear()
    assert main(["encode", str(src), str(out)]) == 0
    said = [m for m in _warnings(caplog) if "beyond" in m]
    assert len(said) == 1 and str(src) in said[0], said
    assert "2 log-scale value(s) beyond -30..12 and 1 colour coefficient(s) beyond ±64" in said[0]
    assert main(["decode", str(out), str(tmp_path / "back.ply")]) == 0
    dec = load_ply(tmp_path / "back.ply")
    assert dec.log_scales.max() == pytest.approx(12.0, abs=0.1) and dec.log_scales.min() >= -30.0
    save_ply(synthetic_map(30, 0, seed=5), tmp_path / "plain.ply")
    caplog.clear()
    assert main(["encode", str(tmp_path / "plain.ply"), str(tmp_path / "plain.gsd")]) == 0
    assert not [m for m in _warnings(caplog) if "beyond" in m]


def test_values_beyond_the_codecs_range_are_said_on_diff(tmp_path, caplog):
    """``diff`` quantises both scenes with the snapshot's steps: a value beyond the codec's range
    in either is said as encode says it (session #30: diff said nothing), and only for that file."""
    old = synthetic_map(30, 0, seed=5)
    new = synthetic_map(30, 0, seed=5)
    new.sh[3, 0, 1] = -80.0
    save_ply(old, tmp_path / "old.ply")
    save_ply(new, tmp_path / "new.ply")
    caplog.clear()
    assert main(["diff", str(tmp_path / "old.ply"), str(tmp_path / "new.ply"), str(tmp_path / "d.gsd")]) == 0
    said = [m for m in _warnings(caplog) if "beyond" in m]
    assert len(said) == 1 and str(tmp_path / "new.ply") in said[0], said
    assert "1 colour coefficient(s) beyond ±64" in said[0]


def test_sog_version_1_without_its_means_shape_is_named(tmp_path, capsys, shared_data):
    src = shared_data / "splats" / "playbot_sog"
    sog = tmp_path / "sog"
    shutil.copytree(src, sog)
    meta = json.loads((sog / "meta.json").read_text())
    meta["version"] = 1  # (a version 2 layout: its count is in "count", version 1's in means.shape)
    (sog / "meta.json").write_text(json.dumps(meta))
    assert main(["convert", str(sog / "meta.json"), str(tmp_path / "out.spz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "means.shape" in err[0] and "None" not in err[0], err
    assert not (tmp_path / "out.spz").exists()
