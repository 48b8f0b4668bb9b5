"""Lines of the CLI's scene I/O and the scene readers whose breaking passed every test (session
#30's mut30b mutation survey), each now guarded by a test against an independent reading
(plyfile, antimatter15's formulas, splat-transform's rules) or the file written.

- ``convert --keep-ids`` to a .gsd, .splat or .spz is refused before any work, nothing written.
- ``convert``'s summary says the bytes of the file it wrote.
- ``.splat`` rotation bytes are antimatter15's ``rint(q / |q| · 128 + 128)`` for a quaternion not of
  unit length (a map built through the API).
- A SOG's ``meta.json`` naming a file outside its folder (a ``/``, ``\\``, a ``..`` climb) or a
  hidden one is refused, from a folder and from a zip; a streamed LOD SOG is refused whatever the
  case of its ``lod-meta.json``.
- PLY: a list whose count type is a float, an ASCII integer one past its type's range (plyfile
  refuses both), an ASCII file ending in a later element's row without its line end (plyfile reads
  it), a ``tile_size 0`` comment (the default, 2 m).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_mapping.cli import main
from gs_mapping.errors import MapError
from gs_mapping.gaussians import GaussianMap
from gs_mapping.ply import save_ply
from gs_mapping.splat_formats import load_splats
from gs_mapping.splat_formats.antimatter_splat import RECORD, write_splat

FIXTURES = Path(__file__).parent / "data" / "splat_formats"
NAMES = "x y z f_dc_0 f_dc_1 f_dc_2 opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3".split()
ROW = "1 2 3 0.1 0.2 0.3 0.5 -1 -1 -1 1 0 0 0"


# --- convert ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["gsd", "splat", "spz"])
def test_convert_keep_ids_to_a_format_without_ids_is_refused_before_any_work(tmp_path, capsys, ext):
    save_ply(synthetic_map(50, 1, seed=1), tmp_path / "in.ply")
    out = tmp_path / f"o.{ext}"
    assert main(["convert", str(tmp_path / "in.ply"), str(out), "--keep-ids"]) == 2
    err = capsys.readouterr().err
    assert "--keep-ids is for a .ply output" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("ext", ["ply", "splat", "spz"])
def test_convert_says_the_bytes_it_wrote(tmp_path, capsys, ext):
    save_ply(synthetic_map(50, 1, seed=1), tmp_path / "in.ply")
    out = tmp_path / f"o.{ext}"
    assert main(["convert", str(tmp_path / "in.ply"), str(out)]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["bytes"] == out.stat().st_size and info["gaussians"] == 50


# --- .splat ----------------------------------------------------------------------------------------


def test_splat_rotation_bytes_of_a_quaternion_not_of_unit_length():
    quats = np.array([[0.1, 0.2, 0.3, 0.9], [0.0, 0.0, 0.0, 2.0], [3.0, -1.0, 0.5, 0.2]])  # x y z w
    g = GaussianMap(
        sh_degree=0,
        means=[[1, 0, 0], [2, 0, 0], [3, 0, 0]],
        quats=quats,
        log_scales=np.full((3, 3), -2.0),
        opacity_logits=[1.0, 1.0, 1.0],
        sh=np.zeros((3, 1, 3)),
    )
    out = np.frombuffer(write_splat(g), RECORD)
    for i, q in enumerate(quats):
        (row,) = out[out["pos"][:, 0] == i + 1]  # (the writer orders the records by size)
        unit = q / np.linalg.norm(q)
        want = np.clip(np.rint(unit[[3, 0, 1, 2]] * 128 + 128), 0, 255)  # w x y z, antimatter15's convert.py
        assert np.array_equal(row["rot"], want), (q, row["rot"], want)


# --- SOG: the files its meta.json names --------------------------------------------------------------


def _sog_files() -> dict[str, bytes]:
    with zipfile.ZipFile(FIXTURES / "scene.sog") as z:
        return {n: z.read(n) for n in z.namelist()}


@pytest.mark.parametrize("name", ["x/{f}", "x\\{f}", "x/../../outside/{f}", "../{f}", ".{f}"])
@pytest.mark.parametrize("as_zip", [False, True])
def test_a_sog_naming_a_file_outside_its_folder_or_hidden_is_refused(tmp_path, name, as_zip):
    files = _sog_files()
    meta = json.loads(files["meta.json"])
    first = meta["means"]["files"][0]
    named = name.format(f=first)
    meta["means"]["files"][0] = named
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / first).write_bytes(files[first])  # where a climb would land
    folder = tmp_path / "sog"
    (folder / "x").mkdir(parents=True)
    (folder / "x" / first).write_bytes(files[first])
    (folder / ("." + first)).write_bytes(files[first])
    for n, d in files.items():
        (folder / n).write_bytes(json.dumps(meta).encode() if n == "meta.json" else d)
    path = folder / "meta.json"
    if as_zip:
        path = tmp_path / "s.sog"
        with zipfile.ZipFile(path, "w") as z:
            for n, d in files.items():
                z.writestr(n, json.dumps(meta).encode() if n == "meta.json" else d)
            z.writestr("x/" + first, files[first])
            z.writestr("." + first, files[first])
    with pytest.raises(MapError, match="invalid file"):
        load_splats(path)


@pytest.mark.parametrize("name", ["lod-meta.json", "LOD-META.JSON", "Lod-Meta.json"])
def test_a_streamed_lod_sog_is_refused_whatever_the_case_of_its_name(tmp_path, name):
    for n, d in _sog_files().items():
        (tmp_path / (name if n == "meta.json" else n)).write_bytes(d)
    with pytest.raises(MapError, match="streamed LOD SOG"):
        load_splats(tmp_path / name)


# --- PLY ---------------------------------------------------------------------------------------------


def _header(fmt: str, n: int, extra: str = "") -> str:
    props = "".join(f"property float {p}\n" for p in NAMES)
    return f"ply\nformat {fmt} 1.0\nelement vertex {n}\n{props}{extra}end_header\n"


def test_a_ply_list_counted_by_a_float_is_one_line_in_binary_and_ascii(tmp_path):
    face = "element face 1\nproperty list float int vertex_indices\n"
    binary = _header("binary_little_endian", 1, face).encode()
    binary += struct.pack("<14f", *map(float, ROW.split())) + struct.pack("<f3i", 3.0, 0, 0, 0)
    (tmp_path / "b.ply").write_bytes(binary)
    (tmp_path / "a.ply").write_text(_header("ascii", 1, face) + ROW + "\n3 0 0 0\n")
    for name in ("b.ply", "a.ply"):
        with pytest.raises(MapError, match="list property .* not supported here"):
            load_splats(tmp_path / name)


def test_an_ascii_integer_one_past_its_range_is_refused_as_plyfile_refuses_it(tmp_path):
    """A uchar holds 0..255: 256 would wrap to 0 (a dark colour, silently). plyfile refuses it
    where numpy does (numpy 2 raises on the out-of-range cast; numpy 1 wraps it)."""
    plyfile = pytest.importorskip("plyfile")
    props = "property uchar red\nproperty uchar green\nproperty uchar blue\n"
    props += "".join(f"property float {p}\n" for p in NAMES[6:])
    head = f"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n{props}end_header\n"
    for value, ok in ((255, True), (256, False), (-1, False)):
        path = tmp_path / f"c{value}.ply"
        path.write_text(head + f"1 2 3 {value} 0 64 0.5 -1 -1 -1 1 0 0 0\n")
        try:
            plyfile.PlyData.read(str(path))
            plyfile_reads = True
        except Exception:
            plyfile_reads = False
        if ok or int(np.__version__.split(".")[0]) >= 2:
            assert plyfile_reads == ok
        if ok:
            assert len(load_splats(path)) == 1
        else:
            with pytest.raises(MapError, match="cannot hold"):
                load_splats(path)


def test_an_ascii_ply_ending_in_a_later_elements_row_without_its_line_end(tmp_path):
    face = "element face 1\nproperty list uchar int vertex_indices\n"
    path = tmp_path / "f.ply"
    path.write_text(_header("ascii", 2, face) + (ROW + "\n") * 2 + "3 0 1 1")
    ref = pytest.importorskip("plyfile").PlyData.read(str(path))
    assert len(ref["vertex"]) == 2 and len(ref["face"]) == 1
    assert len(load_splats(path)) == 2


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf", "x"])
def test_a_tile_size_comment_that_is_no_size_gives_the_default(tmp_path, value):
    path = tmp_path / "t.ply"
    path.write_text(
        _header("ascii", 1).replace("end_header", f"comment gs_mapping tile_size {value}\nend_header")
        + ROW
        + "\n"
    )
    assert load_splats(path).tile_size == 2.0
