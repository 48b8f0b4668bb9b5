"""Hostile files a review found reading wrongly or loudly: each is read right, or refused with one
MapError naming what was wrong, without a numpy warning on the way (warnings are errors here)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import plyfile
import pytest
from synthetic_maps import synthetic_map

from gs_mapping.cli import main
from gs_mapping.errors import MapError
from gs_mapping.gaussians import OPACITY_LOGIT_LIMIT, GaussianMap
from gs_mapping.ply import load_ply, read_elements, save_ply, to_structured
from gs_mapping.splat_formats import load_splats, spz
from gs_mapping.splat_formats.antimatter_splat import read_splat
from gs_mapping.splat_formats.spz import read_spz, write_spz

FIXTURES = Path(__file__).parent / "data" / "splat_formats"
pytestmark = [
    pytest.mark.filterwarnings("error::RuntimeWarning"),
    pytest.mark.filterwarnings("error::UserWarning"),
]


def _refused(path, match: str) -> str:
    with pytest.raises(MapError, match=match) as exc:
        load_splats(path)
    msg = str(exc.value)
    assert "\n" not in msg and Path(path).name in msg, msg
    return msg


# --- SPZ ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 3])
def test_spz_gzip_crc_and_length_are_checked(version):
    """The arrays end before the gzip trailer: the reader inflates on to it, so a damaged CRC, a
    wrong length or a missing trailer is an error, not a quietly different scene."""
    data = write_spz(synthetic_map(200, 1, seed=1), version)
    assert len(read_spz(data)) == 200
    for at, what in ((-8, "incorrect data check"), (-3, "incorrect length check")):
        bad = bytearray(data)
        bad[at] ^= 0xFF
        with pytest.raises(MapError, match=what):
            read_spz(bytes(bad), "bad.spz")
    with pytest.raises(MapError, match="truncated gzip"):
        read_spz(data[:-5])
    assert len(read_spz(data + b"\0" * 10)) == 200  # bytes after the gzip stream: ignored (as the reference)


@pytest.mark.parametrize("version", [2, 3, 4])
def test_spz_of_one_gaussian_repeated_reads_back(version):
    """200k copies of one Gaussian compress past gzip's 1024:1 in zstd (version 4: ~375 bytes):
    what we write, we read (each version's point bound is its compressor's)."""
    one = synthetic_map(1, 0, seed=2)
    rep = lambda a: np.repeat(a, 200_000, axis=0)  # noqa: E731
    g = GaussianMap(
        sh_degree=0,
        means=rep(one.means),
        quats=rep(one.quats),
        log_scales=rep(one.log_scales),
        opacity_logits=rep(one.opacity_logits),
        sh=rep(one.sh),
    )
    h = read_spz(write_spz(g, version))
    assert len(h) == 200_000 and (h.means == h.means[0]).all() and (h.sh == h.sh[0]).all()
    assert read_spz(write_spz(one, version)).equals(h.subset(np.arange(len(h)) < 1))


def test_spz_of_a_scene_far_from_the_origin(tmp_path, caplog, capsys):
    """A georeferenced map (a Gaussian 5 km out) is written with fewer fractional bits, said in
    one warning naming the file, and reads back within that step; beyond SPZ's 24 bits at any
    step, one error line naming the file and no output."""
    g = synthetic_map(50, 0, seed=3)
    g.means[0] = (5002.0, -3.0, 0.25)
    save_ply(g, tmp_path / "far.ply")
    caplog.clear()
    assert main(["convert", str(tmp_path / "far.ply"), str(tmp_path / "far.spz")]) == 0
    assert "far.spz: positions with 10 fractional bits" in caplog.text
    h = read_spz((tmp_path / "far.spz").read_bytes())
    assert np.abs(h.means - g.means).max() <= 2.0**-11
    g.means[0, 0] = 1e7
    save_ply(g, tmp_path / "farther.ply")
    caplog.clear()
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "farther.ply"), str(tmp_path / "farther.spz")]) == 2
    assert not (tmp_path / "farther.spz").exists() and "fractional bits" not in caplog.text
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "farther.spz" in err and "SPZ cannot hold this scene" in err, err


def test_spz_extensions_are_skipped_and_a_bomb_behind_them_stops(monkeypatch):
    """Version 3 extension records after the arrays (flag 2) are read as version 4's: others
    skipped by their length, one that runs past the end of the stream refused; bytes there without
    flag 2 are ignored; more than MAX_TRAILER bytes is refused instead of inflated without end."""
    g = synthetic_map(50, 0, seed=2)
    raw = bytearray(gzip.decompress(write_spz(g, 3)))
    raw[14] |= 2
    ext = gzip.compress(bytes(raw) + _record(0xADBE0002, b"EXT" * 5000))
    assert read_spz(ext).equals(read_spz(write_spz(g, 3)))
    assert read_spz(gzip.compress(bytes(raw)), axes="rub").equals(spz.turn_axes(read_spz(ext)))
    garbage = bytes(raw) + b"EXT" * 5000
    with pytest.raises(MapError, match=f"record at byte {len(raw)} runs past the end of the gzip stream"):
        read_spz(gzip.compress(garbage))
    raw[14] &= ~2
    assert read_spz(gzip.compress(bytes(raw) + b"EXT" * 5000)).equals(read_spz(ext))
    monkeypatch.setattr(spz, "MAX_TRAILER", 1000)
    with pytest.raises(MapError, match="more than 1000 bytes after the SPZ arrays"):
        read_spz(ext)


def _with_extensions(data: bytes, zone: bytes) -> bytes:
    """A version-4 SPZ with ``zone`` as its extension records (flag 2, the table moved past them)."""
    head = bytearray(data[:32])
    head[14] |= spz.FLAG_EXTENSIONS
    struct.pack_into("<I", head, 16, 32 + len(zone))
    return bytes(head) + zone + data[32:]


def _record(kind: int, value: bytes) -> bytes:
    return struct.pack("<II", kind, len(value)) + value


def test_spz_coordinate_system_extension_records_are_checked():
    """Version 4's extension records: others skipped by length, the coordinate system found behind
    them; a record that runs past the table, a coordinate system of the wrong size, or one not RUB
    or RDF under --spz-axes rub is one line (stored axes read it as stored)."""
    g = synthetic_map(20, 1, seed=3)
    plain = write_spz(g)
    rdf = _record(spz.EXT_COORDINATE_SYSTEM, struct.pack("<I", spz.RDF))
    tagged = _with_extensions(plain, _record(0xADBE0002, b"x" * 36) + rdf)
    assert spz.stored_coordinate_system(tagged) == spz.RDF
    assert read_spz(tagged, axes="rub").equals(read_spz(plain))
    assert read_spz(_with_extensions(plain, b""), axes="rub").equals(spz.turn_axes(read_spz(plain)))
    bad = {
        "runs past the table of contents": [
            rdf[:-1],
            rdf + b"\0" * 7,
            struct.pack("<II", 1, 1 << 31) + b"ab",
        ],
        "coordinate-system extension of 2 bytes": [_record(spz.EXT_COORDINATE_SYSTEM, b"\6\0")],
    }
    for match, zones in bad.items():
        for zone in zones:
            for axes in ("stored", "rub"):
                with pytest.raises(MapError, match=match):
                    read_spz(_with_extensions(plain, zone), "s.spz", axes)
    ldb = _with_extensions(plain, _record(spz.EXT_COORDINATE_SYSTEM, struct.pack("<I", 1)))
    assert read_spz(ldb).equals(read_spz(plain))
    with pytest.raises(MapError, match="SPZ stored in LDB axes"):
        read_spz(ldb, "s.spz", "rub")
    lying = bytearray(tagged)
    struct.pack_into("<I", lying, 16, len(tagged) + 1000)  # a table beyond the file
    with pytest.raises(MapError, match="table of contents at .* outside the file"):
        read_spz(bytes(lying), "s.spz", "rub")


def test_spz_convert_keeps_the_coordinate_system_extension(tmp_path, capsys):
    """convert in.spz out.spz in the stored axes writes the input's coordinate-system extension
    back (without it, RDF data would read as RUB where the extension is honoured); version 2 cannot
    hold it: refused in one line; --spz-axes rub writes RUB without one (what none means)."""
    g = synthetic_map(20, 1, seed=4)
    plain = write_spz(g)
    src = tmp_path / "in.spz"
    src.write_bytes(_with_extensions(plain, _record(spz.EXT_COORDINATE_SYSTEM, struct.pack("<I", spz.RDF))))
    assert main(["convert", str(src), str(tmp_path / "out.spz")]) == 0
    out = (tmp_path / "out.spz").read_bytes()
    assert spz.stored_coordinate_system(out) == spz.RDF
    _same_scene(read_spz(out, axes="rub"), read_spz(plain))
    assert main(["convert", str(src), str(tmp_path / "v2.spz"), "--spz-version", "2"]) == 2
    err = capsys.readouterr().err
    assert "SPZ version 2 cannot keep the input's coordinate-system extension (RDF)" in err
    assert err.count(str(tmp_path / "v2.spz")) == 1, err  # (the writer names it: not twice)
    assert not (tmp_path / "v2.spz").exists()
    assert main(["convert", str(src), str(tmp_path / "rub.spz"), "--spz-axes", "rub"]) == 0
    rub = (tmp_path / "rub.spz").read_bytes()
    assert spz.stored_coordinate_system(rub) is None
    _same_scene(read_spz(rub), spz.turn_axes(read_spz(plain)))


def _gzip_with_extensions(data: bytes, zone: bytes) -> bytes:
    """A version 1-3 SPZ with ``zone`` as its extension records (flag 2, after the arrays)."""
    raw = bytearray(gzip.decompress(data))
    raw[14] |= spz.FLAG_EXTENSIONS
    return gzip.compress(bytes(raw) + zone)


def _coord(code: int) -> bytes:
    return _record(spz.EXT_COORDINATE_SYSTEM, struct.pack("<I", code))


def test_spz_coordinate_system_read_as_niantic_reads_it_in_both_framings(tmp_path, caplog, capsys):
    """One record loop for both framings (version 4's header zone, the gzip framing's records after
    the arrays), as Niantic's reader: the first record of a defined code wins, UNSPECIFIED is RUB
    and a code above 16 no record (both warned once under --spz-axes rub, read turned as RUB); a
    gzip SPZ's tag is kept by convert in the stored axes (version 4 out)."""
    g = synthetic_map(20, 1, seed=5)
    frames = {4: (write_spz(g), _with_extensions), 3: (write_spz(g, 3), _gzip_with_extensions)}
    for version, (plain, tag) in frames.items():
        stored = read_spz(plain)
        cases = {
            (6,): spz.RDF,
            (6, 1): spz.RDF,
            (17, 6): spz.RDF,
            (0, 6): spz.RUB,
            (0,): spz.RUB,
            (17,): None,
            (1 << 31,): None,
            (1,): 1,
        }
        for codes, want in cases.items():
            data = tag(plain, b"".join(_coord(c) for c in codes))
            assert spz.stored_coordinate_system(data) == want, (version, codes)
            assert read_spz(data).equals(stored)
            if want in (None, spz.RUB, spz.RDF):
                caplog.clear()
                turned = read_spz(data, "s.spz", "rub")
                assert turned.equals(stored if want == spz.RDF else spz.turn_axes(stored)), (version, codes)
                warned = [r.getMessage() for r in caplog.records if "coordinate-system" in r.getMessage()]
                assert len(warned) == (codes in ((0, 6), (0,), (17,), (1 << 31,))), (version, codes, warned)
        with pytest.raises(MapError, match="SPZ stored in LDB axes"):
            read_spz(tag(plain, _coord(1)), "s.spz", "rub")
    src = tmp_path / "in_v3.spz"
    src.write_bytes(_gzip_with_extensions(write_spz(g, 3), _coord(spz.RDF)))
    assert main(["convert", str(src), str(tmp_path / "out.spz")]) == 0
    assert spz.stored_coordinate_system((tmp_path / "out.spz").read_bytes()) == spz.RDF
    assert main(["convert", str(src), str(tmp_path / "v3.spz"), "--spz-version", "3"]) == 2
    assert (
        "SPZ version 3 cannot keep the input's coordinate-system extension (RDF)" in capsys.readouterr().err
    )
    unspecified = tmp_path / "unspecified.spz"  # (RUB: what a version 2-3 file without one means)
    unspecified.write_bytes(_with_extensions(write_spz(g), _coord(0)))
    assert main(["convert", str(unspecified), str(tmp_path / "v2.spz"), "--spz-version", "2"]) == 0


def _same_scene(a, b) -> None:
    """The same Gaussians up to SPZ's re-quantisation of a rotation (q or -q)."""
    assert np.array_equal(a.means, b.means) and np.array_equal(a.sh, b.sh)
    assert np.all(np.abs((a.quats * b.quats).sum(axis=1)) > 0.999)


def test_spz_reference_file_with_a_flipped_byte(spz_reference):
    for v in (2, 3):
        raw = bytearray((spz_reference / f"guitar_v{v}.spz").read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        with pytest.raises(MapError, match="corrupt gzip data"):
            read_spz(bytes(raw))


def test_spz_holds_no_empty_scene(tmp_path):
    """Niantic's reader refuses a point count of 0 (both framings), so we write no such file (one
    line instead) and read none with a message that says why."""
    g = synthetic_map(10, 0, seed=3)
    empty = g.subset(np.zeros(len(g), bool))
    for v in (2, 3, 4):
        with pytest.raises(MapError, match="empty scene"):
            write_spz(empty, v)
    save_ply(empty, tmp_path / "e.ply")
    assert main(["convert", str(tmp_path / "e.ply"), str(tmp_path / "e.spz")]) == 2
    assert not (tmp_path / "e.spz").exists()
    legacy = gzip.compress(struct.pack("<IIIBBBB", spz.MAGIC, 2, 0, 0, 12, 0, 0))
    ngsp = struct.pack("<IIIBBBBI12x", spz.MAGIC, 4, 0, 0, 12, 0, 0, 32)
    for data in (legacy, ngsp):
        with pytest.raises(MapError, match="point count 0"):
            read_spz(data)


def test_empty_scene_to_splat_or_spz_is_one_error_line(tmp_path, caplog):
    """An empty scene with SH is refused by both writers with nothing but the error (no 'SH degree
    dropped' warning first), and no output file."""
    g = synthetic_map(5, 1, seed=3)
    save_ply(g.subset(np.zeros(5, bool)), tmp_path / "e.ply")
    for out in ("e.splat", "e.spz"):
        caplog.clear()
        assert main(["convert", str(tmp_path / "e.ply"), str(tmp_path / out)]) == 2
        assert not (tmp_path / out).exists() and "SH degree" not in caplog.text


def test_spz_writer_saturates_huge_values_without_warnings():
    """Huge finite values saturate at the byte range as in the reference's float32 (no overflow
    warning); a position beyond SPZ's range is one MapError."""
    g = synthetic_map(6, 0, seed=4)
    g.opacity_logits[0], g.sh[1, 0, :], g.log_scales[2, :] = -1e38, 1e38, 1e38
    h = read_spz(write_spz(g, 4))
    assert h.opacity_logits[0] == -OPACITY_LOGIT_LIMIT
    assert np.allclose(h.sh[1, 0], (1 - 0.5) / 0.15, atol=1e-6)  # colour byte 255
    assert np.allclose(h.log_scales[2], 255 / 16 - 10)
    g.means[3, 0] = 1e38
    with pytest.raises(MapError, match="units from the origin"):
        write_spz(g, 4)


# --- .splat writer -------------------------------------------------------------------------------


def test_splat_writer_clamps_scales_beyond_float32(tmp_path):
    """exp(100) is no float32: the largest one is written (no +inf our reader would refuse), and an
    opacity logit of −1000 is alpha 0, both without an overflow warning."""
    g = synthetic_map(20, 0, seed=5)
    g.log_scales[4] = (100.0, 0.0, -1.0)
    g.opacity_logits[5] = -1000.0
    save_ply(g, tmp_path / "g.ply")
    assert main(["convert", str(tmp_path / "g.ply"), str(tmp_path / "g.splat")]) == 0
    h = read_splat((tmp_path / "g.splat").read_bytes())
    assert np.isclose(h.log_scales.max(), np.log(np.finfo(np.float32).max))
    assert h.opacity_logits.min() == -OPACITY_LOGIT_LIMIT
    assert main(["convert", str(tmp_path / "g.splat"), str(tmp_path / "back.ply")]) == 0


# --- PLY -----------------------------------------------------------------------------------------


def _ply_bytes(g, text: bool, face_first: bool = False, double: tuple = ()) -> bytes:
    data = to_structured(g)
    dt = [(n, "<f8" if n in double else data.dtype[n].str) for n in data.dtype.names]
    vert = np.empty(len(data), dt)
    for n in data.dtype.names:
        vert[n] = data[n]
    elements = [plyfile.PlyElement.describe(vert, "vertex")]
    if face_first:
        tri = np.empty(2, [("vertex_indices", "O")])
        tri["vertex_indices"] = [np.array([0, 1, 2], np.int32), np.array([1, 2, 3, 4], np.int32)]
        elements.insert(0, plyfile.PlyElement.describe(tri, "face"))
    buf = io.BytesIO()
    plyfile.PlyData(elements, text=text).write(buf)
    return buf.getvalue()


def test_ply_zero_rows_ascii(tmp_path):
    g = synthetic_map(5, 1, seed=6)
    (tmp_path / "e.ply").write_bytes(_ply_bytes(g.subset(np.zeros(5, bool)), text=True))
    h = load_ply(tmp_path / "e.ply")
    assert len(h) == 0 and h.sh_degree == 1


@pytest.mark.parametrize("text", [True, False])
def test_ply_doubles_beyond_float32_follow_the_inf_rule(tmp_path, text):
    """A double beyond float32 is ±inf in the map: an opacity or a −inf log-scale is clamped, a
    position refused naming it, and no numpy overflow warning on the way."""
    g = synthetic_map(8, 0, seed=7)
    raw = _ply_bytes(g, text, double=("x", "opacity", "scale_1"))
    (tmp_path / "ok.ply").write_bytes(raw)
    assert load_ply(tmp_path / "ok.ply").equals(g)
    ref = plyfile.PlyData.read(io.BytesIO(raw))
    v = ref["vertex"].data
    v["opacity"][2], v["scale_1"][3] = 1e300, -1e300
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")], text=text).write(str(tmp_path / "big.ply"))
    h = load_ply(tmp_path / "big.ply")
    assert h.opacity_logits[2] == OPACITY_LOGIT_LIMIT and h.log_scales[3, 1] == -30.0
    v["x"][4] = -1e300
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")], text=text).write(str(tmp_path / "pos.ply"))
    _refused(tmp_path / "pos.ply", "position of Gaussian 4")


def test_ply_faces_before_the_vertices(tmp_path):
    """The face rows are skipped, the vertices read: ASCII by lines, binary by walking the faces'
    list lengths (a triangle and a quad; this was refused before the walk)."""
    g = synthetic_map(12, 1, seed=8)
    (tmp_path / "a.ply").write_bytes(_ply_bytes(g, text=True, face_first=True))
    assert load_ply(tmp_path / "a.ply").equals(g)
    (tmp_path / "b.ply").write_bytes(_ply_bytes(g, text=False, face_first=True))
    assert load_ply(tmp_path / "b.ply").equals(g)


@pytest.mark.parametrize("order", ["<", ">"])
def test_ply_mesh_rows_walked_to_the_element_after_them(tmp_path, order):
    """Binary rows with lists of varying length (runs of triangles, quads, an empty list, a scalar
    before and a second list after) are walked to the element after them, which reads as plyfile
    reads it; a count that lies (more rows than the file holds, a negative length) is one line."""
    rng = np.random.default_rng(3)
    sizes = np.repeat(rng.integers(0, 5, 60), rng.integers(1, 100, 60))
    faces = np.empty(len(sizes), [("flag", order + "i2"), ("vertex_indices", "O"), ("uv", "O")])
    faces["flag"] = 7
    for i, k in enumerate(sizes):
        faces["vertex_indices"][i] = np.arange(k, dtype=order + "i4")
        faces["uv"][i] = np.zeros(k % 3, order + "f4")
    v = np.zeros(3, [(n, order + "f4") for n in ("x", "y", "z")])
    after = np.zeros(4, [("w", order + "f8")])
    after["w"] = [1.5, -2, 3, 1e300]
    ply = plyfile.PlyData(
        [
            plyfile.PlyElement.describe(faces, "face", len_types={"vertex_indices": "i1", "uv": "u2"}),
            plyfile.PlyElement.describe(v, "vertex"),
            plyfile.PlyElement.describe(after, "after"),
        ],
        byte_order=order,
    )
    ply.write(str(tmp_path / "m.ply"))
    raw = (tmp_path / "m.ply").read_bytes()
    elements, _ = read_elements(raw, "m.ply")
    assert set(elements) == {"vertex", "after"}
    assert np.array_equal(elements["after"]["w"], plyfile.PlyData.read(str(tmp_path / "m.ply"))["after"]["w"])
    head, body = raw.split(b"end_header\n")
    lying = head.replace(f"element face {len(sizes)}".encode(), b"element face 2000000000")
    (tmp_path / "lying.ply").write_bytes(lying + b"end_header\n" + body)
    _refused(tmp_path / "lying.ply", "element 'face'")  # (its walk ends in the vertices' bytes or after)
    (tmp_path / "cut.ply").write_bytes(raw[: len(raw) // 2])
    _refused(
        tmp_path / "cut.ply", f"truncated: element 'face' declares {len(sizes)} rows but the file ends in row"
    )
    at = len(head) + len(b"end_header\n") + 2  # the first row's count (after its short)
    (tmp_path / "neg.ply").write_bytes(raw[:at] + b"\xff" + raw[at + 1 :])
    _refused(tmp_path / "neg.ply", "element 'face': row 0 has a list of -1 values")


def test_ply_header_lines_with_trailing_blanks(tmp_path):
    g = synthetic_map(10, 0, seed=9)
    save_ply(g, tmp_path / "a.ply")
    raw = (tmp_path / "a.ply").read_bytes()
    (tmp_path / "b.ply").write_bytes(
        raw.replace(b"ply\n", b"ply \n", 1).replace(b"end_header\n", b"end_header \t\n")
    )
    assert load_ply(tmp_path / "b.ply").equals(g)


# --- compressed PLY -------------------------------------------------------------------------------


def _cply_with(tmp_path, **bounds) -> Path:
    src = plyfile.PlyData.read(str(FIXTURES / "scene.compressed.ply"))
    chunk = src["chunk"].data.copy()
    for name, value in bounds.items():
        chunk[name][0] = value
    els = [plyfile.PlyElement.describe(chunk, "chunk")] + [e for e in src.elements if e.name != "chunk"]
    out = tmp_path / "c.compressed.ply"
    plyfile.PlyData(els, comments=src.comments).write(str(out))
    return out


def test_compressed_ply_infinite_chunk_bounds(tmp_path):
    """A −inf min_scale is a −inf log-scale (clamped by the rule, not NaN from −inf · 0); infinite
    position bounds are refused naming the position; no numpy warning either way."""
    ref = load_splats(FIXTURES / "scene.compressed.ply")
    h = load_splats(_cply_with(tmp_path, min_scale_x=-np.inf))
    first = slice(0, 256)
    changed = h.log_scales[first, 0] != ref.log_scales[first, 0]
    assert changed.any() and (h.log_scales[first, 0][changed] == -30.0).all()
    assert np.array_equal(h.log_scales[256:], ref.log_scales[256:])
    _refused(_cply_with(tmp_path, min_x=-np.inf), "position of Gaussian")
    _refused(_cply_with(tmp_path, min_x=-np.inf, max_x=np.inf), "position of Gaussian")


# --- SOG -----------------------------------------------------------------------------------------


def _sog_files() -> dict[str, bytes]:
    z = zipfile.ZipFile(FIXTURES / "scene.sog")
    return {n: z.read(n) for n in z.namelist()}


def _sog(path: Path, meta=None, prefix: str = "", meta_name: str = "meta.json") -> Path:
    files = _sog_files()
    if meta is not None:
        files["meta.json"] = meta.encode() if isinstance(meta, str) else json.dumps(meta).encode()
    if path.suffix == ".sog":
        with zipfile.ZipFile(path, "w") as out:
            for n, d in files.items():
                out.writestr(prefix + (meta_name if n == "meta.json" else n), d)
        return path
    path.mkdir()
    for n, d in files.items():
        (path / (meta_name if n == "meta.json" else n)).write_bytes(d)
    return path / meta_name


def _v1_meta() -> dict:
    """The fixture's images described as SOG version 1 (ranges instead of codebooks)."""
    m = json.loads(_sog_files()["meta.json"])
    n = m["count"]
    return {
        "means": {
            "shape": [n, 3],
            "mins": m["means"]["mins"],
            "maxs": m["means"]["maxs"],
            "files": m["means"]["files"],
        },
        "scales": {
            "shape": [n, 3],
            "mins": [-10, -10, -10],
            "maxs": [-1, -1, -1],
            "files": m["scales"]["files"],
        },
        "quats": {"shape": [n, 4], "files": m["quats"]["files"]},
        "sh0": {
            "shape": [n, 1, 4],
            "mins": [-2, -2, -2, -6],
            "maxs": [2, 2, 2, 6],
            "files": m["sh0"]["files"],
        },
        "shN": {"shape": [n, 8, 3], "mins": -1.0, "maxs": 1.0, "files": m["shN"]["files"]},
    }


def _edit(meta: dict, keys: str, value) -> dict:
    m = json.loads(json.dumps(meta))
    *path, last = keys.split(".")
    d = m
    for k in path:
        d = d[k]
    d[last] = value
    return m


@pytest.mark.parametrize(
    ("keys", "value", "what"),
    [
        ("count", True, "count True"),
        ("version", True, "version True"),
        pytest.param("means.mins", [10**400, 0, 0], "means.mins must be 3 finite", id="means.mins-10**400"),
        ("scales.codebook", [True] * 256, "scales.codebook must be 1 to 256"),
        ("shN.bands", True, "shN.bands True"),
        ("shN.count", True, "shN.count True"),
        ("shN.count", 10, r"shN label \d+ of Gaussian \d+ is beyond the palette's 10 entries"),
        ("shN", "nope", "shN entry is not an object"),
    ],
)
def test_sog_meta_json_types(tmp_path, keys, value, what):
    meta = json.loads(_sog_files()["meta.json"])
    _refused(_sog(tmp_path / "m.sog", _edit(meta, keys, value)), what)


@pytest.mark.parametrize(
    ("keys", "value", "what"),
    [
        ("means.shape", [True, 3], "count True"),
        pytest.param("shN.mins", 10**400, "shN.mins must be 1 finite", id="shN.mins-10**400"),
        ("shN.mins", True, "shN.mins must be 1 finite"),
    ],
)
def test_sog_version_1_meta_json_types(tmp_path, keys, value, what):
    assert len(load_splats(_sog(tmp_path / "ok.sog", _v1_meta()))) == 400
    _refused(_sog(tmp_path / "m.sog", _edit(_v1_meta(), keys, value)), what)


def test_sog_meta_json_nested_too_deeply(tmp_path, capsys):
    p = _sog(tmp_path / "deep.sog", "[" * 100_000)
    _refused(p, "nests too deeply")
    assert main(["convert", str(p), str(tmp_path / "o.ply")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_sog_null_shn_is_no_sh(tmp_path):
    meta = json.loads(_sog_files()["meta.json"])
    h = load_splats(_sog(tmp_path / "m.sog", _edit(meta, "shN", None)))
    assert h.sh_degree == 0 and len(h) == 400


def test_sog_zip_of_its_folder_and_upper_case_meta_json(tmp_path):
    """A zip of the SOG's folder (every file under one folder) reads like the flat zip; a zip
    without meta.json says where it looked; META.JSON is read by its own name."""
    ref = load_splats(FIXTURES / "scene.sog")
    assert load_splats(_sog(tmp_path / "folder.sog", prefix="scene/")).equals(ref)
    _refused(
        _sog(tmp_path / "deeper.sog", prefix="a/b/"),
        "meta.json missing .at the top of the zip or in its one folder",
    )
    assert load_splats(_sog(tmp_path / "upper", meta_name="META.JSON")).equals(ref)


def test_sog_meta_file_named_as_splat_transform_names_it(tmp_path):
    """splat-transform reads and writes a SOG's meta file under any name ending in meta.json
    (``out/scene.meta.json``): read by that name or by its folder; a folder of two such files is
    refused naming them, and splat-transform 3's streamed LOD SOG (lod-meta.json) by its name."""
    ref = load_splats(FIXTURES / "scene.sog")
    meta = _sog(tmp_path / "named", meta_name="Scene.meta.json")
    assert load_splats(meta).equals(ref)
    assert load_splats(meta.parent).equals(ref)
    shutil.copy(meta, meta.parent / "other.meta.json")
    _refused(meta.parent, "2 SOG meta files .Scene.meta.json, other.meta.json.: name the one to read")
    assert load_splats(meta).equals(ref)  # (named, the other is no matter)
    lod = _sog(tmp_path / "lod", meta_name="lod-meta.json")
    for path in (lod, lod.parent):
        _refused(path, "a streamed LOD SOG .lod-meta.json")
    # meta.json is the one read where others lie beside it; names starting with '.' (macOS's
    # AppleDouble ._NAME files) are never meta files
    plain = _sog(tmp_path / "plain")
    for other in ("lod-meta.json", "Scene.meta.json", "._meta.json", "._lod-meta.json"):
        shutil.copy(meta, plain.parent / other)
    assert load_splats(plain.parent).equals(ref)
    (meta.parent / "other.meta.json").unlink()
    shutil.copy(meta, meta.parent / "._Scene.meta.json")
    assert load_splats(meta.parent).equals(ref)


def _webp(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(out, "WEBP", lossless=True)
    return out.getvalue()


def _decoded_images() -> dict[str, np.ndarray]:
    from PIL import Image

    return {
        n: np.asarray(Image.open(io.BytesIO(d)).convert("RGBA"))
        for n, d in _sog_files().items()
        if n.endswith(".webp")
    }


def test_sog_of_uniform_content_is_read(tmp_path):
    """Lossless WebP of uniform content (300k copies of one Gaussian, as a LiDAR-seeded map, and an
    all-zero higher-SH palette, as a scene trained with its DC term only) is far smaller than any
    ratio to its pixels: it is read, each Gaussian the fixture's first, every SH coefficient the
    codebook's entry for the palette's one value."""
    n = 300_000
    side = int(np.ceil(np.sqrt(n) / 4) * 4)  # splat-transform's layout
    images = _decoded_images()
    files = dict(_sog_files())
    for name, img in images.items():
        if name != "shN_centroids.webp":
            files[name] = _webp(np.broadcast_to(img[0, 0], (side, side, 4)).copy())
    files["shN_centroids.webp"] = _webp(np.full((1024, 512, 4), (7, 7, 7, 255), np.uint8))
    meta = json.loads(files["meta.json"])
    meta["count"], meta["shN"]["count"] = n, 65536
    files["meta.json"] = json.dumps(meta).encode()
    assert max(len(d) for n_, d in files.items() if n_.endswith(".webp")) < 2000
    with zipfile.ZipFile(tmp_path / "u.sog", "w") as out:
        for name, d in files.items():
            out.writestr(name, d)
    g, ref = load_splats(tmp_path / "u.sog"), load_splats(FIXTURES / "scene.sog")
    assert len(g) == n
    for f in ("means", "quats", "log_scales", "opacity_logits"):
        assert (getattr(g, f) == getattr(ref, f)[0]).all(), f
    assert (g.sh[:, 0] == ref.sh[0, 0]).all()
    assert (g.sh[:, 1:] == np.float32(meta["shN"]["codebook"][7])).all()


def test_sog_image_with_more_pixels_than_its_gaussians_justify(tmp_path):
    """An image far larger than the count (a lying header, a uniform WebP of a few bytes) is
    refused by its pixel count, before it is decoded."""
    files = dict(_sog_files())
    files["quats.webp"] = _webp(np.zeros((4096, 4096, 4), np.uint8))
    with zipfile.ZipFile(tmp_path / "big.sog", "w") as out:
        for name, d in files.items():
            out.writestr(name, d)
    _refused(tmp_path / "big.sog", "quats.webp is 4096×4096 for 400 Gaussians")


def test_sog_palette_of_the_wrong_width_says_its_width(tmp_path):
    """The SH palette's width is fixed by its band count (64 × coefficients): a wrong one is named
    with the width it must have (it read "is 256×32 for 0 Gaussians")."""
    files = dict(_sog_files())
    files["shN_centroids.webp"] = _webp(np.zeros((32, 256, 4), np.uint8))  # 2 bands: 512 wide
    with zipfile.ZipFile(tmp_path / "w.sog", "w") as out:
        for name, d in files.items():
            out.writestr(name, d)
    msg = _refused(tmp_path / "w.sog", "shN_centroids.webp is 256×32: its width must be 512")
    assert "for 0 Gaussians" not in msg


def test_sog_zip_bomb_is_not_inflated(tmp_path):
    """A member far larger than an image of the scene's pixels can take is refused before it is
    inflated (here 256 MB of zeros in 250 KB; zipfile stops at a member's stated size, so a
    member that understates it ends in a CRC error instead)."""
    files = dict(_sog_files())
    with zipfile.ZipFile(tmp_path / "bomb.sog", "w", zipfile.ZIP_DEFLATED) as out:
        for name, d in files.items():
            if name != "quats.webp":
                out.writestr(name, d)
        with out.open("quats.webp", "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(256):
                f.write(block)
    assert (tmp_path / "bomb.sog").stat().st_size < 1 << 20
    _refused(tmp_path / "bomb.sog", r"quats.webp is 268435456 bytes \(limit")


def test_sog_zip_needing_a_newer_zip_version_is_one_line(tmp_path):
    """zipfile raises NotImplementedError for a "version needed to extract" it does not know: one
    MapError line naming the file."""
    raw = bytearray((FIXTURES / "scene.sog").read_bytes())
    i = raw.index(b"PK\x01\x02")  # the first central-directory entry
    raw[i + 6 : i + 8] = struct.pack("<H", 84)  # version needed to extract: 8.4
    (tmp_path / "v84.sog").write_bytes(bytes(raw))
    _refused(tmp_path / "v84.sog", "v84.sog")


# --- sizes the input does not hold, and what cannot be read to its end ---------------------------


def test_a_scene_larger_than_the_free_memory_is_refused_before_reading(spz_reference, monkeypatch):
    """SPZ's gzip lets a 1 MB file name 170M points, a SOG of constant images of 2 kB 67M: a count
    is held to the memory available (here made 1 KiB) in one line before anything is decoded."""
    from gs_mapping import input_files

    monkeypatch.setattr(input_files, "available_memory", lambda: 1 << 10)
    msg = _refused(spz_reference / "guitar_v2.spz", "need about")
    assert "90854 Gaussians (SH degree 0)" in msg
    _refused(FIXTURES / "scene.sog", "need about")
    monkeypatch.setattr(input_files, "available_memory", lambda: None)  # not known: read on
    assert len(load_splats(spz_reference / "guitar_v2.spz")) == 90854


_PEAK_PROBE = """
import json, resource, sys
import numpy as np
from gs_mapping.input_files import peak_bytes
from gs_mapping.splat_formats import load_splats, save_splats
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
g = load_splats(sys.argv[1])
save_splats(g, sys.argv[2])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps([len(g), g.sh_degree, peak - before, peak_bytes(len(g), g.sh_degree)]))
"""


@pytest.mark.slow  # ~30 s: a million Gaussians read and written
@pytest.mark.parametrize(("sh", "out"), [(False, "spz"), (True, "spz"), (True, "ply")])
def test_the_memory_check_covers_what_reading_and_converting_take(tmp_path, sh, out):
    """check_room's estimate against the real peak of reading a SOG of constant images (the bomb it
    guards against: a few kB naming millions of Gaussians) and writing it, in a fresh process.
    3 × the map's bytes, the rule before, was under the real peak by ~2× at SH 0."""
    import subprocess
    import sys

    from PIL import Image

    n, d = 1_000_000, tmp_path / "const"
    d.mkdir()
    w = 1000
    h = n // w

    def const(name, rgba):
        Image.fromarray(np.broadcast_to(np.array(rgba, np.uint8), (h, w, 4)).copy()).save(
            d / name, lossless=True
        )

    const("means_l.webp", (1, 2, 3, 255))
    const("means_u.webp", (1, 2, 3, 255))
    const("quats.webp", (128, 128, 128, 252))
    const("scales.webp", (10, 10, 10, 255))
    const("sh0.webp", (10, 10, 10, 200))
    cb = np.linspace(-5, 5, 256).tolist()
    meta = {
        "version": 2,
        "count": n,
        "means": {"mins": [-1] * 3, "maxs": [1] * 3, "files": ["means_l.webp", "means_u.webp"]},
        "scales": {"codebook": cb, "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": cb, "files": ["sh0.webp"]},
    }
    if sh:
        Image.fromarray(np.full((1, 960, 4), 100, np.uint8)).save(d / "c.webp", lossless=True)
        const("l.webp", (0, 0, 0, 255))
        meta["shN"] = {"count": 64, "bands": 3, "codebook": cb, "files": ["c.webp", "l.webp"]}
    (d / "meta.json").write_text(json.dumps(meta))
    r = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE, str(d / "meta.json"), str(tmp_path / f"out.{out}")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    count, degree, used, estimate = json.loads(r.stdout.strip().splitlines()[-1])
    assert (count, degree) == (n, 3 if sh else 0)
    assert used <= estimate, (
        f"reading and converting took {used / n:.0f} B a Gaussian, the check allows {estimate / n:.0f}"
    )


_ASCII_PROBE = """
import json, resource, sys
from gs_mapping.ply import load_ply
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
g = load_ply(sys.argv[1])
print(json.dumps([len(g), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before]))
"""


@pytest.mark.slow  # ~10 s: 5M rows
def test_ascii_ply_memory_is_a_few_times_the_file(tmp_path):
    """An ASCII PLY of many short rows (here an extra element of 5M one-byte rows before one
    Gaussian) took ~29 × its size as Python strings; rows are now found by their line ends and
    parsed element by element, in a fresh process."""
    import subprocess
    import sys

    n = 5_000_000
    props = "x y z f_dc_0 f_dc_1 f_dc_2 opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3".split()
    head = f"ply\nformat ascii 1.0\nelement foo {n}\nproperty uchar a\nelement vertex 1\n"
    head += "".join(f"property float {p}\n" for p in props) + "end_header\n"
    path = tmp_path / "rows.ply"
    path.write_bytes(head.encode() + b"10\n" * n + b"1 2 3 0.1 0.2 0.3 0 -3 -3 -3 1 0 0 0\n")
    r = subprocess.run(
        [sys.executable, "-c", _ASCII_PROBE, str(path)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    count, used = json.loads(r.stdout.strip().splitlines()[-1])
    assert count == 1
    assert used < 6 * path.stat().st_size, f"{used / path.stat().st_size:.1f} x the file"  # 3.5 here


@pytest.mark.parametrize("name", ["zero.ply", "zero.spz", "zero.splat", "zero.compressed.ply", "zero.sog"])
def test_a_device_named_like_a_scene_is_not_read(tmp_path, name):
    (tmp_path / name).symlink_to("/dev/zero")
    _refused(tmp_path / name, "not a regular file")


@pytest.mark.parametrize("name", ["pipe.spz", "pipe.sog"])
def test_a_pipe_named_like_a_scene_neither_blocks_nor_is_read(tmp_path, name):
    os.mkfifo(tmp_path / name)  # no writer: a blocking open would wait forever
    _refused(tmp_path / name, "not a regular file")


def test_a_sog_image_that_is_a_device_is_not_read(tmp_path):
    meta = _sog(tmp_path / "dev", None)
    image = json.loads(meta.read_text())["quats"]["files"][0]
    (meta.parent / image).unlink()
    (meta.parent / image).symlink_to("/dev/zero")
    _refused(meta.parent, f"{image}: not a regular file")
    (meta.parent / image).unlink()
    _refused(meta.parent, f"{image} missing")


def test_ply_of_sh_degree_4_keeps_degrees_0_to_3(tmp_path, caplog):
    """72 f_rest (channel-major, 24 a channel): each channel's first 15 coefficients are kept in
    place, the fifth band dropped with a warning, as for an SPZ of degree 4."""
    g = synthetic_map(50, 3, seed=5)
    data = to_structured(g)
    rng = np.random.default_rng(0)
    rest = rng.normal(size=(len(g), 3, 24)).astype(np.float32)  # (Gaussian, channel, coefficient)
    names = [n for n in data.dtype.names if not n.startswith("f_rest_") and n not in ("id", "level")]
    vert = np.empty(len(g), [(n, "<f4") for n in names] + [(f"f_rest_{i}", "<f4") for i in range(72)])
    for n in names:
        vert[n] = data[n]
    for i in range(72):
        vert[f"f_rest_{i}"] = rest[:, i // 24, i % 24]
    plyfile.PlyData([plyfile.PlyElement.describe(vert, "vertex")]).write(str(tmp_path / "d4.ply"))
    with caplog.at_level("WARNING"):
        m = load_splats(tmp_path / "d4.ply")
    assert m.sh_degree == 3 and "fifth band is dropped" in caplog.text
    assert np.array_equal(m.sh[:, 1:, :], rest[:, :, :15].transpose(0, 2, 1))
    assert np.array_equal(m.sh[:, 0, :], g.sh[:, 0, :])


def test_a_point_cloud_ply_is_named_as_one(tmp_path):
    vert = np.zeros(
        4, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + [(c, "u1") for c in ("red", "green", "blue")]
    )
    plyfile.PlyData([plyfile.PlyElement.describe(vert, "vertex")]).write(str(tmp_path / "cloud.ply"))
    _refused(tmp_path / "cloud.ply", "a point cloud .* not a 3DGS scene")


def test_ply_header_messages_name_the_limit_and_not_the_parser(tmp_path):
    (tmp_path / "huge.ply").write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 1099511627776\nproperty float x\nend_header\n"
    )
    msg = _refused(tmp_path / "huge.ply", "1099511627776 rows")
    assert str(1 << 31) in msg
    (tmp_path / "rows.ply").write_bytes(
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n1\n"
    )
    msg = _refused(tmp_path / "rows.ply", "a row does not match")
    assert "usecols" not in msg
