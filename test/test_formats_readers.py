"""Readers of what users have: standard PLY in any layout, PlayCanvas compressed PLY and SOG
(compared with PlayCanvas splat-transform's own decode of the same files), the ±inf/NaN rule, and
hostile files (truncated, bit-flipped, lying headers) → one MapError."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import plyfile
import pytest
from synthetic_maps import synthetic_map

from gs_mapping.cli import main
from gs_mapping.errors import MapError
from gs_mapping.gaussians import OPACITY_LOGIT_LIMIT
from gs_mapping.ply import load_ply, save_ply, to_structured
from gs_mapping.splat_formats import load_splats

FIXTURES = Path(__file__).parent / "data" / "splat_formats"  # make_splat_format_fixtures.py
_NAMES = {"<f4": "float", "<f8": "double", "<f2": "half", "u1": "uchar", ">f4": "float", ">f8": "double"}


def _write_ply(path, columns: dict, big_endian=False) -> None:
    """A PLY with the given columns in the given order and dtypes (what other tools write)."""
    order = ">" if big_endian else "<"
    dtype = [
        (n, a.dtype.str.replace("<", order) if a.dtype.itemsize > 1 else a.dtype.str)
        for n, a in columns.items()
    ]
    data = np.empty(len(next(iter(columns.values()))), dtype=dtype)
    for n, a in columns.items():
        data[n] = a
    head = [
        "ply",
        f"format binary_{'big' if big_endian else 'little'}_endian 1.0",
        f"element vertex {len(data)}",
    ]
    head += [
        f"property {_NAMES[a.dtype.str.replace('>', '<') if a.dtype.itemsize > 1 else a.dtype.str]} {n}"
        for n, a in columns.items()
    ]
    Path(path).write_bytes(("\n".join(head + ["end_header"]) + "\n").encode() + data.tobytes())


def _columns(g, dtype="<f4", order=None, normals=False, extra=()):
    s = to_structured(g)
    names = [n for n in s.dtype.names if n not in ("id", "level", "nx", "ny", "nz")]
    if normals:
        names += ["nx", "ny", "nz"]
    names += list(extra)
    if order is not None:
        names = [names[i] for i in order(len(names))]
    return {n: s[n].astype(dtype if n not in ("level",) else "u1") for n in names}


@pytest.mark.parametrize("deg", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", ["<f4", "<f8", "<f2"])
def test_standard_ply_any_order_width_and_degree(tmp_path, deg, dtype):
    g = synthetic_map(200, deg, seed=deg)
    rng = np.random.default_rng(deg)
    cols = _columns(g, dtype, order=lambda n: rng.permutation(n), normals=deg % 2 == 0)
    _write_ply(tmp_path / "a.ply", cols, big_endian=dtype == "<f8")
    h = load_ply(tmp_path / "a.ply")
    tol = 0 if dtype != "<f2" else 2e-3 * 8
    assert h.sh_degree == deg and h.ids_implicit and np.array_equal(h.ids, np.arange(1, 201))
    assert np.abs(h.means - g.means.astype(dtype)).max() <= tol
    assert np.abs(h.sh - g.sh.astype(dtype)).max() <= tol
    assert np.abs(h.log_scales - g.log_scales.astype(dtype)).max() <= tol
    assert (h.levels == 0).all()


def test_ids_and_levels_are_kept_when_present(tmp_path):
    g = synthetic_map(100, 0, seed=1)
    g.levels[:] = np.arange(100) % 3
    save_ply(g, tmp_path / "ours.ply", keep_ids=True)
    h = load_ply(tmp_path / "ours.ply")
    assert h.equals(g) and not h.ids_implicit


def test_fleet_ids_beyond_a_double_round_trip_as_two_uint_halves(tmp_path):
    """A fleet's global map has ids map_id << 32 | local (≥ 2**53 from map id 2**21 on): written
    as id_hi / id_lo (uint), which plyfile reads as such, and read back exactly; below 2**53 the
    file keeps its double ``id``. The CLI decodes such a map to PLY."""
    from gs_map_share.merge import global_ids

    g = synthetic_map(100, 0, seed=2)
    g.ids = global_ids((1 << 31) - 1, np.arange(1, 101, dtype=np.uint64) * 977)
    save_ply(g, tmp_path / "fleet.ply", keep_ids=True)
    v = plyfile.PlyData.read(str(tmp_path / "fleet.ply"))["gs_mapping"]  # (after the vertex rows)
    names = [p.name for p in v.properties]
    assert "id" not in names and v["id_hi"].dtype == np.uint32 and v["id_lo"].dtype == np.uint32
    assert np.array_equal((v["id_hi"].astype(np.uint64) << np.uint64(32)) | v["id_lo"], g.ids)
    h = load_ply(tmp_path / "fleet.ply")
    assert h.equals(g) and h.ids.dtype == np.uint64 and int(h.ids.max()) > 1 << 62
    g.ids = np.arange(1, 101, dtype=np.uint64)
    save_ply(g, tmp_path / "local.ply", keep_ids=True)
    local = plyfile.PlyData.read(str(tmp_path / "local.ply"))
    assert [p.name for p in local["gs_mapping"].properties] == ["id"]
    assert all(p.val_dtype == "f4" for p in local["vertex"].properties)  # (the reference layout)
    # through the codec and the CLI: encode with the fleet ids, decode to PLY
    from gs_map_share.quantize import QuantParams
    from gs_map_share.snapshot import encode_map

    g.ids = global_ids(1 << 21, np.arange(1, 101, dtype=np.uint64))
    (tmp_path / "global.gsd").write_bytes(encode_map(g, QuantParams())[0])
    assert main(["decode", str(tmp_path / "global.gsd"), str(tmp_path / "global.ply"), "--keep-ids"]) == 0
    assert np.array_equal(load_ply(tmp_path / "global.ply").ids, g.ids)


@pytest.mark.parametrize(
    "props, values, message",
    [
        (["id"], [-2.0], "'id' of Gaussian 99 (row in file) is negative"),
        (["id"], [2.5], "is not an integer"),
        (["id"], [float(1 << 53)], "beyond 9007199254740992"),
        (
            ["id_hi", "id_lo"],
            [float(1 << 31), 0.0],
            "'id_hi' of Gaussian 99 (row in file) is 2147483648, beyond",
        ),
    ],
)
def test_ids_that_are_not_exact_non_negative_integers_are_named(tmp_path, props, values, message):
    g = synthetic_map(100, 0, seed=3)
    data = to_structured(g)
    dt = [(n, "<f8") for n in props] + [(n, data.dtype[n]) for n in data.dtype.names if n != "id"]
    wide = np.zeros(len(data), dtype=dt)
    for n in data.dtype.names:
        if n != "id":
            wide[n] = data[n]
    for n in props:
        wide[n] = np.arange(len(data)) + 1.0
    for n, v in zip(props, values, strict=True):
        wide[n][-1] = v
    head = ["ply", "format binary_little_endian 1.0", f"element vertex {len(data)}"]
    head += [
        f"property {'double' if wide.dtype[n].kind == 'f' and wide.dtype[n].itemsize == 8 else 'float' if wide.dtype[n].kind == 'f' else 'uchar'} {n}"
        for n in wide.dtype.names
    ]
    f = tmp_path / "ids.ply"
    f.write_bytes(("\n".join(head + ["end_header"]) + "\n").encode() + wide.tobytes())
    with pytest.raises(MapError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_ply(f)


def test_nonfinite_rule(tmp_path):
    """±inf opacities (8-bit alpha 0/255 converted) are clamped; a zero scale (log −inf) too; a NaN
    position, rotation or colour is refused with one line naming field and row."""
    g = synthetic_map(50, 0, seed=2)
    cols = _columns(g)
    cols["opacity"][3], cols["opacity"][4], cols["scale_1"][5] = np.inf, -np.inf, -np.inf
    _write_ply(tmp_path / "inf.ply", cols)
    h = load_ply(tmp_path / "inf.ply")
    assert h.opacity_logits[3] == OPACITY_LOGIT_LIMIT and h.opacity_logits[4] == -OPACITY_LOGIT_LIMIT
    assert h.log_scales[5, 1] == -30.0
    for field, row, what in (
        ("y", 7, "position of Gaussian 7"),
        ("rot_2", 9, "rotation of Gaussian 9"),
        ("f_dc_0", 11, "SH coefficient of Gaussian 11"),
        ("opacity", 2, "opacity of Gaussian 2"),
    ):
        bad = {k: v.copy() for k, v in cols.items()}
        bad[field][row] = np.nan
        _write_ply(tmp_path / "nan.ply", bad)
        with pytest.raises(MapError, match=what):
            load_ply(tmp_path / "nan.ply")


def _plyfile_scene(g, text: bool, faces: bool) -> plyfile.PlyData:
    """``g`` as plyfile (an independent PLY library) writes it: permuted properties, doubles for
    some, ids and levels, and optionally a mesh's face element with a list property after it."""
    cols = _columns(g, order=lambda n: np.random.default_rng(5).permutation(n), normals=True)
    cols = {n: (a.astype("<f8") if n in ("x", "opacity", "f_dc_1") else a) for n, a in cols.items()}
    cols["id"], cols["level"] = g.ids.astype(np.uint32), g.levels
    vert = np.empty(len(g), [(n, a.dtype.str) for n, a in cols.items()])
    for n, a in cols.items():
        vert[n] = a
    elements = [plyfile.PlyElement.describe(vert, "vertex")]
    if faces:
        tri = np.empty(2, [("vertex_indices", "O")])
        tri["vertex_indices"] = [np.array([0, 1, 2], np.int32), np.array([1, 2, 3], np.int32)]
        elements.append(plyfile.PlyElement.describe(tri, "face"))
    return plyfile.PlyData(elements, text=text)


@pytest.mark.parametrize("text", [True, False])
@pytest.mark.parametrize("faces", [False, True])
def test_ply_written_by_plyfile(tmp_path, text, faces):
    """ASCII and binary PLY from another library, a mesh's faces after the vertices: every
    property equals what plyfile itself reads back from the same file."""
    g = synthetic_map(60, 2, seed=7)
    g.levels[:] = np.arange(60) % 4
    g.ids[:] = 3 * np.arange(60) + 5
    _plyfile_scene(g, text, faces).write(str(tmp_path / "a.ply"))
    ref = plyfile.PlyData.read(str(tmp_path / "a.ply"))["vertex"].data
    h = load_ply(tmp_path / "a.ply")
    assert h.sh_degree == 2 and not h.ids_implicit
    assert np.array_equal(h.ids, ref["id"]) and np.array_equal(h.levels, ref["level"])
    assert np.array_equal(h.means, np.stack([ref[a] for a in "xyz"], 1).astype(np.float32))
    assert np.array_equal(h.opacity_logits, ref["opacity"].astype(np.float32))
    assert np.array_equal(h.sh[:, 0, 1], ref["f_dc_1"].astype(np.float32))
    assert np.array_equal(h.sh[:, 3, 2], ref["f_rest_18"])  # blue (channel-major), coefficient 3
    wxyz = np.stack([ref[f"rot_{i}"] for i in range(4)], 1)
    assert np.allclose(
        h.quats, wxyz[:, [1, 2, 3, 0]] / np.linalg.norm(wxyz, axis=1, keepdims=True), atol=1e-6
    )


def test_ply_header_with_windows_line_ends(tmp_path):
    g = synthetic_map(40, 1, seed=2)
    save_ply(g, tmp_path / "a.ply", keep_ids=True)
    head, body = (tmp_path / "a.ply").read_bytes().split(b"end_header\n", 1)
    (tmp_path / "crlf.ply").write_bytes(head.replace(b"\n", b"\r\n") + b"end_header\r\n" + body)
    assert load_ply(tmp_path / "crlf.ply").equals(g)


def test_ascii_ply_hostile_rows(tmp_path):
    """Each way an ASCII body can disagree with its header is one MapError naming it."""
    g = synthetic_map(20, 0, seed=3)
    _plyfile_scene(g, True, False).write(str(tmp_path / "a.ply"))
    raw = (tmp_path / "a.ply").read_bytes()
    head, body = raw.split(b"end_header\n")
    rows = body.split(b"\n")
    cases = {
        "missing value": rows[:3] + [rows[3].rsplit(b" ", 1)[0]] + rows[4:],
        "extra value": rows[:3] + [rows[3] + b" 1"] + rows[4:],
        "not a number": rows[:3] + [rows[3].replace(b" ", b" x", 1)] + rows[4:],
        "level 300": rows[:3] + [b" ".join(rows[3].split()[:-1] + [b"300"])] + rows[4:],
        "blank row": rows[:3] + [b""] + rows[4:],
        "truncated": rows[:10],
        "non-ASCII": rows[:3] + [b"\xff\xfe"] + rows[4:],
    }
    for what, bad in cases.items():
        (tmp_path / "b.ply").write_bytes(head + b"end_header\n" + b"\n".join(bad))
        with pytest.raises(MapError) as exc:
            load_ply(tmp_path / "b.ply")
        assert "\n" not in str(exc.value) and "b.ply" in str(exc.value), what
    listed = raw.replace(b"property double x\n", b"property list uchar double x\n")
    assert listed != raw
    (tmp_path / "c.ply").write_bytes(listed)
    with pytest.raises(MapError, match="list property"):
        load_ply(tmp_path / "c.ply")


def test_cli_encode_export_decode_a_trainers_ply(tmp_path):
    """The issue's failure: encode/export on a PLY without 'level'/'id' (every trainer's)."""
    g = synthetic_map(500, 1, seed=4)
    _write_ply(tmp_path / "t.ply", _columns(g))
    assert main(["encode", str(tmp_path / "t.ply"), str(tmp_path / "t.gsd"), "--levels", "1"]) == 0
    assert main(["export", str(tmp_path / "t.ply"), str(tmp_path / "t.spz")]) == 0
    assert main(["decode", str(tmp_path / "t.gsd"), str(tmp_path / "d.ply")]) == 0
    assert main(["convert", str(tmp_path / "t.spz"), str(tmp_path / "s.ply")]) == 0
    assert main(["convert", str(tmp_path / "s.ply"), str(tmp_path / "v2.spz"), "--spz-version", "2"]) == 0
    d, s = load_ply(tmp_path / "d.ply"), load_ply(tmp_path / "s.ply")
    assert len(d) == len(s) == 500
    # never over an existing output without --overwrite, never over the input
    assert main(["convert", str(tmp_path / "t.spz"), str(tmp_path / "s.ply")]) == 2
    assert main(["convert", str(tmp_path / "s.ply"), str(tmp_path / "s.ply"), "--overwrite"]) == 2
    assert main(["convert", str(tmp_path / "t.spz"), str(tmp_path / "x.sog")]) == 2


@pytest.mark.parametrize(
    ("name", "ref"),
    [("scene.sog", "scene_sog.decoded.ply"), ("scene.compressed.ply", "scene_cply.decoded.ply")],
)
def test_playcanvas_formats_equal_splat_transforms_decode(name, ref):
    ours, theirs = load_splats(FIXTURES / name), load_ply(FIXTURES / ref)
    assert ours.sh_degree == theirs.sh_degree == 2 and len(ours) == len(theirs) == 400
    for f in ("means", "log_scales", "sh"):
        assert np.array_equal(getattr(ours, f), getattr(theirs, f)), f
    assert np.abs(ours.opacities() - theirs.opacities()).max() < 1e-6
    assert np.abs(np.abs((ours.quats.astype(np.float64) * theirs.quats).sum(1)) - 1).max() < 1e-6


def test_splat_equals_splat_transforms_decode():
    """antimatter15 .splat (ours wrote the fixture; splat-transform decoded it to a PLY): the same
    Gaussians, in the same order. Rotations differ by splat-transform's other byte scale
    (b / 255 · 2 − 1 against the writer's (b − 128) / 128): under a degree."""
    ours, theirs = load_splats(FIXTURES / "scene.splat"), load_ply(FIXTURES / "scene_splat.decoded.ply")
    assert ours.sh_degree == theirs.sh_degree == 0 and len(ours) == len(theirs) == 400 and ours.ids_implicit
    for f in ("means", "log_scales", "sh", "opacity_logits"):
        assert np.array_equal(getattr(ours, f), getattr(theirs, f)), f
    turn = 2 * np.degrees(np.arccos(np.clip(np.abs((ours.quats * theirs.quats).sum(1)), 0, 1)))
    assert turn.max() < 1.0


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_splat_writer_against_the_scene(tmp_path, caplog):
    """What our .splat holds, read back, is the scene within a byte step of colour, opacity and
    rotation (exact positions and scales); largest Gaussians first; alpha 0/255 and a zero scale
    follow the ±inf rule; a size that is no multiple of 32 is one MapError."""
    g = synthetic_map(300, 1, seed=8)
    g.opacity_logits[:2] = [40.0, -40.0]
    assert main(["convert", _save(g, tmp_path / "g.ply"), str(tmp_path / "g.splat")]) == 0
    assert "SH degree 1 is dropped" in caplog.text
    h = load_splats(tmp_path / "g.splat")
    vol = g.log_scales.sum(1) + np.log(g.opacities())
    order = np.argsort(-vol, kind="stable")
    assert np.array_equal(h.means, g.means[order])
    assert np.abs(h.log_scales - g.log_scales[order]).max() < 1e-6
    assert np.abs(h.sh[:, 0] - g.sh[order, 0]).max() <= 0.5 / 255 / 0.2820948 + 1e-6
    assert np.abs(h.opacities() - g.opacities()[order]).max() <= 0.5 / 255 + 1e-6
    turn = 2 * np.degrees(np.arccos(np.clip(np.abs((h.quats * g.quats[order]).sum(1)), 0, 1)))
    assert turn.max() < 1.0
    assert h.opacity_logits.max() == OPACITY_LOGIT_LIMIT and h.opacity_logits.min() == -OPACITY_LOGIT_LIMIT
    raw = bytearray((tmp_path / "g.splat").read_bytes())
    raw[12:16] = np.float32(0).tobytes()  # a zero scale: log −inf, clamped
    (tmp_path / "z.splat").write_bytes(bytes(raw))
    assert load_splats(tmp_path / "z.splat").log_scales[0, 0] == -30.0
    for bad, what in ((bytes(raw[:-5]), "not a whole number of 32-byte"), (b"", "an empty file")):
        (tmp_path / "b.splat").write_bytes(bad)
        with pytest.raises(MapError, match=what):
            load_splats(tmp_path / "b.splat")
    raw[16:20] = np.float32(-1).tobytes()
    (tmp_path / "n.splat").write_bytes(bytes(raw))
    with pytest.raises(MapError, match="scale of Gaussian 0"):
        load_splats(tmp_path / "n.splat")
    raw[16:20] = b"\x01\x00\x80\x7f"  # a signalling NaN: refused, without a warning on the way
    (tmp_path / "s.splat").write_bytes(bytes(raw))
    with pytest.raises(MapError, match="scale of Gaussian 0"):
        load_splats(tmp_path / "s.splat")


def _save(g, path) -> str:
    save_ply(g, path, keep_ids=True)
    return str(path)


def test_2dgs_ply_gets_the_thinnest_third_scale(tmp_path):
    """A 2D Gaussian splatting PLY (no scale_2, as splat-transform writes 2DGS): flat discs."""
    g = synthetic_map(30, 1, seed=9)
    cols = _columns(g)
    del cols["scale_2"]
    _write_ply(tmp_path / "flat.ply", cols)
    h = load_splats(tmp_path / "flat.ply")
    assert np.array_equal(h.log_scales[:, :2], g.log_scales[:, :2]) and (h.log_scales[:, 2] == -30.0).all()
    del cols["scale_1"]
    _write_ply(tmp_path / "bad.ply", cols)
    with pytest.raises(MapError, match="scale_1"):
        load_splats(tmp_path / "bad.ply")


def test_antialiased_tags_are_warned(tmp_path, caplog):
    """A mip-splatting scene's tag (Brush's and Postshot's PLY comments, SOG's model): values read,
    a warning that the tag is not kept; the last comment decides."""
    g = synthetic_map(20, 0, seed=2)
    save_ply(g, tmp_path / "a.ply", keep_ids=True)
    raw = (tmp_path / "a.ply").read_bytes()
    for comments, tagged in (
        (["SplatRenderMode: mip"], True),
        (["antialiased 1"], True),
        (["antialiased 1", "SplatRenderMode: default"], False),
        (["comment about antialiased things"], False),
    ):
        caplog.clear()
        head = "".join(f"comment {c}\n" for c in comments).encode()
        (tmp_path / "t.ply").write_bytes(raw.replace(b"element vertex", head + b"element vertex", 1))
        assert load_splats(tmp_path / "t.ply").equals(g)
        assert ("antialiased (mip-splatting)" in caplog.text) == tagged, comments
    z = zipfile.ZipFile(FIXTURES / "scene.sog")
    files = {n: z.read(n) for n in z.namelist()}
    files["meta.json"] = json.dumps({**json.loads(files["meta.json"]), "model": "antialiased"}).encode()
    with zipfile.ZipFile(tmp_path / "aa.sog", "w") as out:
        for n, d in files.items():
            out.writestr(n, d)
    caplog.clear()
    assert load_splats(tmp_path / "aa.sog").equals(load_splats(FIXTURES / "scene.sog"))
    assert "antialiased (mip-splatting)" in caplog.text


def test_damaged_sog_zips_are_one_map_error(tmp_path):
    """A re-zipped (deflated) SOG with corrupt data, and member names that are not UTF-8 though
    the zip says they are: MapError, not zlib's or the codec's exception."""
    z = zipfile.ZipFile(FIXTURES / "scene.sog")
    with zipfile.ZipFile(tmp_path / "d.sog", "w", zipfile.ZIP_DEFLATED) as out:
        for n in z.namelist():
            out.writestr(n, z.read(n))
    b = bytearray((tmp_path / "d.sog").read_bytes())
    info = zipfile.ZipFile(tmp_path / "d.sog").getinfo("meta.json")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    b[start + 2 : start + 10] = bytes(x ^ 0xA5 for x in b[start + 2 : start + 10])
    (tmp_path / "bad_deflate.sog").write_bytes(bytes(b))
    raw = bytearray((FIXTURES / "scene.sog").read_bytes())
    i = raw.index(b"PK\x01\x02")  # the first central-directory entry: UTF-8 flag, a 0xFF name byte
    raw[i + 9] |= 0x08  # general-purpose flag bit 11: names are UTF-8
    raw[i + 46] = 0xFF
    (tmp_path / "bad_name.sog").write_bytes(bytes(raw))
    for name in ("bad_deflate.sog", "bad_name.sog"):
        with pytest.raises(MapError) as exc:
            load_splats(tmp_path / name)
        assert name in str(exc.value) and "\n" not in str(exc.value)


def test_shared_scenes(shared_data):
    """guitar.ply is splat-transform's decode of guitar.compressed.ply; playbot ships as SOG."""
    s = shared_data / "splats"
    c, p = load_splats(s / "guitar.compressed.ply"), load_splats(s / "guitar.ply")
    assert np.array_equal(c.means, p.means) and np.array_equal(c.sh, p.sh)
    assert np.abs(c.opacities() - p.opacities()).max() < 1e-6
    b = load_splats(s / "playbot_sog")
    assert len(b) == 500_000 and b.sh_degree == 2 and b.ids_implicit
    assert np.all(np.abs(b.means) < 1.1)  # the meta's log-space bounds, ±0.73 → ±1.08


def _mutate(data: bytes, rng) -> bytes:
    b = bytearray(data)
    kind = rng.integers(3)
    if kind == 0:
        return bytes(b[: rng.integers(len(b))])
    if kind == 1:
        for _ in range(rng.integers(1, 6)):
            b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        return bytes(b)
    head = bytes(b).find(b"end_header")
    pos = rng.integers(max(head, 8))
    b[pos] = int(rng.choice(list(b"0123456789 x\n")))  # a lying header: counts, names, types
    return bytes(b)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a damaged file is an error, never a warning
@pytest.mark.parametrize(
    "name", ["scene_cply.decoded.ply", "scene.compressed.ply", "scene.splat", "ascii.ply"]
)
def test_fuzz_file_readers(tmp_path, name):
    if name == "ascii.ply":  # an ASCII PLY as plyfile writes it, faces included
        _plyfile_scene(synthetic_map(40, 1, seed=4), True, True).write(str(tmp_path / name))
        data = (tmp_path / name).read_bytes()
    else:
        data = (FIXTURES / name).read_bytes()
    rng = np.random.default_rng(len(name))
    for i in range(150):
        p = tmp_path / f"m{i % 4}{Path(name).suffix}"
        p.write_bytes(_mutate(data, rng))
        try:
            load_splats(p)
        except MapError:
            pass


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_fuzz_sog_reader(tmp_path):
    z = zipfile.ZipFile(FIXTURES / "scene.sog")
    files = {n: z.read(n) for n in z.namelist()}
    rng = np.random.default_rng(9)
    meta = json.loads(files["meta.json"])
    lies = [("count", 1 << 40), ("count", 10**6), ("count", -1), ("count", "x"), ("version", 9)]
    for i in range(60):
        f = dict(files)
        if i < len(lies):
            f["meta.json"] = json.dumps({**meta, lies[i][0]: lies[i][1]}).encode()
        elif i % 3 == 0:
            m = json.loads(files["meta.json"])
            m["shN"]["files"] = ["../../etc/passwd", "x"] if i % 2 else [1, 2]
            f["meta.json"] = json.dumps(m).encode()
        else:
            name = sorted(f)[rng.integers(len(f))]
            f[name] = _mutate(f[name], rng)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as out:
            for n, d in f.items():
                out.writestr(n, d)
        p = tmp_path / "m.sog"
        p.write_bytes(buf.getvalue()[: None if i % 7 else rng.integers(10, len(buf.getvalue()))])
        try:
            load_splats(p)
        except MapError:
            pass
    # an unzipped SOG directory reads like the zip
    d = tmp_path / "dir"
    d.mkdir()
    for n, data in files.items():
        (d / n).write_bytes(data)
    assert load_splats(d / "meta.json").equals(load_splats(FIXTURES / "scene.sog"))
    shutil.rmtree(d)


def test_a_scene_without_ids_is_written_without_them_until_edited(tmp_path):
    """A scene read without ids is written as trainers write it (no ``id`` column) and reads back
    id-less; once Gaussians are removed or added its ids are its own (a receiver may hold them)
    and are written."""
    from gs_mapping.gaussians import GaussianMap
    from gs_mapping.ply import load_ply, save_ply

    g = synthetic_map(20, 1, seed=6)
    scene = GaussianMap(
        1, means=g.means, quats=g.quats, log_scales=g.log_scales, opacity_logits=g.opacity_logits, sh=g.sh
    )
    save_ply(scene, tmp_path / "s.ply", keep_ids=True)
    assert b"property double id" not in (tmp_path / "s.ply").read_bytes()[:2000]
    back = load_ply(tmp_path / "s.ply")
    assert back.ids_implicit and back.ids.tolist() == list(range(1, 21))
    back.remove(np.array([2, 3], np.uint64))
    back.add(g.means[:1], g.quats[:1], g.log_scales[:1], g.opacity_logits[:1], g.sh[:1])
    save_ply(back, tmp_path / "e.ply", keep_ids=True)
    again = load_ply(tmp_path / "e.ply")
    assert not again.ids_implicit and again.ids.tolist() == back.ids.tolist() == [1, *range(4, 22)]


def test_mip_splatting_3d_filter_is_folded_in(tmp_path, caplog):
    """Mip-Splatting's PLYs carry ``filter_3D``, a smoothing its renderer adds to every Gaussian
    (variance + filter² on each axis, opacity × √(det Σ / det(Σ + filter² I))). It was dropped, so
    such a scene rendered sharper and more opaque. Checked against the rule's consequences: each
    axis' variance grows by exactly filter², the Gaussian's mass (opacity × the product of its
    scales) is kept, and a zero filter changes nothing."""
    g = synthetic_map(300, 1, seed=7)
    f = np.random.default_rng(7).uniform(0.0, 0.05, 300).astype(np.float32)
    f[:10] = 0.0
    cols = _columns(g)
    _write_ply(tmp_path / "plain.ply", cols)
    _write_ply(tmp_path / "mip.ply", {**cols, "filter_3D": f})
    plain = load_ply(tmp_path / "plain.ply")
    with caplog.at_level("INFO"):
        mip = load_ply(tmp_path / "mip.ply")
    assert "3D filter folded" in caplog.text
    var0, var1 = (
        np.exp(2.0 * plain.log_scales.astype(np.float64)),
        np.exp(2.0 * mip.log_scales.astype(np.float64)),
    )
    assert np.allclose(var1, var0 + (f.astype(np.float64) ** 2)[:, None], rtol=1e-5)
    mass0 = plain.opacities().astype(np.float64) * np.sqrt(var0.prod(1))
    mass1 = mip.opacities().astype(np.float64) * np.sqrt(var1.prod(1))
    assert np.allclose(mass1, mass0, rtol=1e-4)
    assert np.allclose(mip.opacity_logits[:10], plain.opacity_logits[:10], atol=1e-5)
    assert np.array_equal(mip.sh, plain.sh) and np.array_equal(mip.means, plain.means)
    f[3] = -0.01
    _write_ply(tmp_path / "bad.ply", {**cols, "filter_3D": f})
    with pytest.raises(MapError, match=r"'filter_3D' of Gaussian 3 \(row in file\) is -0.01"):
        load_ply(tmp_path / "bad.ply")
