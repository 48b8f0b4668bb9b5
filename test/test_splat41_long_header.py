"""A PLY whose header runs past 64 kB (long provenance comments, obj_info) is read as plyfile reads
it; it was refused as "no end_header in the first 64 kB" (hostile40). The bound (1 MiB) stays: a
file without end_header is still one line, not a scan of gigabytes."""

from __future__ import annotations

import numpy as np
import pytest

from gs_mapping.cli import main
from gs_mapping.ply import load_ply

plyfile = pytest.importorskip("plyfile")

_NAMES = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2"]
_NAMES += [f"rot_{i}" for i in range(4)]


def _scene(path, comments):
    v = np.zeros(50, [(n, "<f4") for n in _NAMES])
    rng = np.random.default_rng(3)
    for n in _NAMES:
        v[n] = rng.normal(size=50)
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")], comments=comments).write(str(path))


def test_a_header_of_300_kb_reads_as_plyfile_reads_it(tmp_path):
    comments = [f"provenance step {i}: " + "x" * 290 for i in range(1000)]
    _scene(tmp_path / "long.ply", comments)
    head = (tmp_path / "long.ply").read_bytes()
    assert head.index(b"end_header") > 300_000
    ref = plyfile.PlyData.read(str(tmp_path / "long.ply"))
    v = ref["vertex"]
    g = load_ply(tmp_path / "long.ply")
    np.testing.assert_array_equal(g.means, np.stack([v["x"], v["y"], v["z"]], 1))
    np.testing.assert_array_equal(g.opacity_logits, v["opacity"])
    assert ref.comments == comments


def test_no_end_header_in_the_first_mib_is_one_line(tmp_path, capsys):
    bad = tmp_path / "endless.ply"
    bad.write_bytes(
        b"ply\nformat binary_little_endian 1.0\n" + b"comment " + b"y" * (2 << 20) + b"\nend_header\n"
    )
    assert main(["convert", str(bad), str(tmp_path / "out.ply")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no end_header in the first MiB" in err[0], err
