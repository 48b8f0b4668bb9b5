"""Outside check of issue 17 (read and write what users have): 3DGS files as another tool writes
them, and ours as another tool reads them. The reference is PlayCanvas splat-transform's own decode
(test/data/outside_splat_files/, made by make_outside_splat_fixtures.py; the version is in VERSION)
of tiny hand-made scenes with what the team's fixture lacks: SH degrees 1 and 3 (its fixture is
degree 2), SOG unbundled as meta.json + WebP, splat-transform's SPZ writer, alpha bytes 0 and 255,
log-scales of -20 and 5, two identical Gaussians. Our writers' files (SPZ v2 in stored axes, v4 in
RUB, .splat) are compared with what splat-transform read from them, and with the scene within the
formats' documented steps. Trainer PLY headers of kinds the suite does not write, and double
positions at map (UTM) magnitudes, are built by hand with numpy. No npm needed here."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from gs_mapping.cli import main
from gs_mapping.ply import load_ply
from gs_mapping.splat_formats import load_splats, save_splats

plyfile = pytest.importorskip("plyfile")

DATA = Path(__file__).parent / "data" / "outside_splat_files"
SH_C0 = 0.28209479177387814


def _ply_vertex(path) -> np.ndarray:
    """A PLY's vertex rows read by plyfile (not by our reader)."""
    return plyfile.PlyData.read(str(path))["vertex"].data


def _same_as_reference(ours, ref, exact=True) -> None:
    """Our reading of a file against splat-transform's decode of the same file (its own order)."""
    assert len(ours) == len(ref) and ours.sh_degree == ref.sh_degree
    for f in ("means", "log_scales", "sh"):
        a, b = getattr(ours, f), getattr(ref, f)
        assert np.array_equal(a, b) if exact else np.abs(a - b).max() < 1e-6, f
    # alpha 255 / 0: splat-transform writes the ±inf logit (or its own clamp), we the suite's limit;
    # the opacities they stand for agree
    assert np.abs(ours.opacities() - ref.opacities()).max() < 1e-6
    dots = np.abs((ours.quats.astype(np.float64) * ref.quats).sum(1))
    assert np.degrees(2 * np.arccos(np.clip(dots, 0, 1))).max() < 0.1


@pytest.mark.parametrize(
    ("name", "ref", "axes"),
    [
        ("s1.compressed.ply", "s1_compressed_ply", "stored"),
        ("s3.compressed.ply", "s3_compressed_ply", "stored"),
        ("s3.sog", "s3_sog", "stored"),
        ("s1_sog", "s1_sog", "stored"),  # unbundled: the folder ...
        ("s1_sog/meta.json", "s1_sog", "stored"),  # ... or its meta.json
        ("s1.spz", "s1_spz", "rub"),  # splat-transform writes SPZ in its RUB axes
        ("s3.spz", "s3_spz", "rub"),
    ],
)
def test_splat_transforms_files_read_as_it_decodes_them(name, ref, axes):
    ours = load_splats(DATA / name, spz_axes=axes)
    theirs = load_ply(DATA / f"{ref}.decoded.ply")
    assert ours.ids_implicit and ours.sh_degree == int(name[1])
    _same_as_reference(ours, theirs)


def test_the_two_identical_gaussians_stay_identical_through_sog_and_compressed_ply():
    """The scene's last two rows are equal; palettes (k-means) and chunk bounds must not split them."""
    src = _ply_vertex(DATA / "s3.ply")
    for name in ("s3.sog", "s3.compressed.ply"):
        g = load_splats(DATA / name)
        # rows are in splat-transform's order: find the pair by position (the source's last row)
        want = np.array([src["x"][-1], src["y"][-1], src["z"][-1]])
        rows = np.flatnonzero(np.linalg.norm(g.means - want, axis=1) < 1e-2)
        assert len(rows) == 2, name
        a, b = rows
        for f in ("means", "log_scales", "sh", "opacity_logits", "quats"):
            assert np.array_equal(getattr(g, f)[a], getattr(g, f)[b]), (name, f)


def _turned(v: np.ndarray) -> np.ndarray:
    """A position in SPZ's RUB axes from the PLY's RDF ones (the spec's half turn about x)."""
    return v * np.array([1.0, -1.0, -1.0])


@pytest.mark.parametrize("deg", [1, 3])
@pytest.mark.parametrize(
    ("suffix", "kw"), [("ours_v2", {"spz_version": 2}), ("ours_v4rub", {"spz_axes": "rub"})]
)
def test_splat_transform_reads_our_spz_as_we_do_and_within_spz_steps(tmp_path, deg, suffix, kw):
    """Our SPZ (written now) read by us equals splat-transform's decode of the same bytes (it reads
    SPZ as RUB: a stored-axes file reads turned, as format.md says), and that decode is the scene
    within the steps of spz.py's docstring: positions 2**-12, log-scales 1/16 (in [-10, 5.9]),
    alpha 1/255, DC 1/(0.15 · 255)."""
    g = load_ply(DATA / f"s{deg}.ply")
    out = tmp_path / "ours.spz"
    save_splats(g, out, **kw)
    theirs = load_ply(DATA / f"s{deg}_{suffix}_spz.decoded.ply")
    _same_as_reference(load_splats(out, spz_axes="rub"), theirs)
    src = _ply_vertex(DATA / f"s{deg}.ply")
    xyz = np.stack([src[a] for a in "xyz"], axis=1).astype(np.float64)
    if "rub" not in suffix:  # stored axes: splat-transform turned the stored (RDF) values
        xyz = _turned(xyz)
    # (the v4 RUB file holds turned values, and splat-transform turns them back: the scene)
    assert np.abs(theirs.means - xyz).max() <= 2.0**-13 + 1e-6
    ls = np.stack([src[f"scale_{i}"] for i in range(3)], axis=1)
    inside = (ls >= -10) & (ls <= 5.9)
    assert np.abs(theirs.log_scales - ls)[inside].max() <= 1 / 32 + 1e-5
    alpha = 1 / (1 + np.exp(-src["opacity"].astype(np.float64)))
    assert np.abs(theirs.opacities() - alpha).max() <= 0.5 / 255 + 1e-6
    dc = np.stack([src[f"f_dc_{c}"] for c in range(3)], axis=1)
    assert np.abs(theirs.sh[:, 0, :] - dc).max() <= 0.5 / (0.15 * 255) + 1e-4


def test_splat_transform_honours_our_lowered_fractional_bits_far_from_the_origin(tmp_path, caplog):
    """A scene 5 km out: our SPZ writer drops to 10 fractional bits rather than wrap (and says so);
    splat-transform reads the file at that step, not at the usual 12 (which would wrap by 4096)."""
    g = load_ply(DATA / "far.ply")
    out = tmp_path / "far.spz"
    with caplog.at_level(logging.WARNING):
        save_splats(g, out, spz_axes="rub")
    assert "10 fractional bits" in caplog.text
    theirs = load_ply(DATA / "far_ours_spz.decoded.ply")
    _same_as_reference(load_splats(out, spz_axes="rub"), theirs)
    src = _ply_vertex(DATA / "far.ply")
    xyz = np.stack([src[a] for a in "xyz"], axis=1).astype(np.float64)
    assert np.abs(theirs.means - xyz).max() <= 2.0**-11 + 1e-4  # half of the 2**-10 step (+ float32 at 5 km)


def test_splat_transform_reads_our_splat_as_we_do():
    """Our .splat (largest first) read by splat-transform: the same positions, scales and colours as
    our reader gives, and rotations within its documented byte-scale difference (< 1°)."""
    g = load_ply(DATA / "s1.ply")
    from gs_mapping.splat_formats import read_splat, write_splat

    ours = read_splat(write_splat(g))
    theirs = load_ply(DATA / "s1_ours_splat.decoded.ply")
    assert len(ours) == len(theirs) == len(g)
    for f in ("means", "log_scales", "sh"):
        assert np.array_equal(getattr(ours, f), getattr(theirs, f)), f
    assert np.abs(ours.opacities() - theirs.opacities()).max() < 1e-6
    dots = np.abs((ours.quats.astype(np.float64) * theirs.quats).sum(1))
    assert np.degrees(2 * np.arccos(np.clip(dots, 0, 1))).max() < 1.0


@pytest.mark.parametrize("src", ["s1_sog", "s3.sog", "s3.compressed.ply"])
def test_cli_convert_of_splat_transforms_files_equals_its_decode_by_plyfile(tmp_path, src):
    """`gs-mapping convert` of splat-transform's files to PLY, both read back by plyfile (not by our
    reader): the columns splat-transform's decode has are equal (alpha rows aside, by opacity)."""
    out = tmp_path / "out.ply"
    assert main(["convert", str(DATA / src), str(out)]) == 0
    ref_name = src.replace(".", "_")
    a, b = _ply_vertex(out), _ply_vertex(DATA / f"{ref_name}.decoded.ply")
    assert len(a) == len(b)
    for name in b.dtype.names:
        if name.startswith(("x", "y", "z", "f_", "scale_")) and name in a.dtype.names:
            assert np.array_equal(a[name], b[name]), name
    sig = lambda v: 1 / (1 + np.exp(-np.clip(v.astype(np.float64), -50, 50)))  # noqa: E731
    assert np.abs(sig(a["opacity"]) - sig(b["opacity"])).max() < 1e-6


def _write_header_ply(path, head: list[str], rows: np.ndarray, sep: str = "\n") -> None:
    path.write_bytes((sep.join(head + ["end_header"]) + sep).encode("utf-8") + rows.tobytes())


def test_a_trainer_header_of_many_kinds_at_once(tmp_path):
    """What several exporters put in one file (gsplat, nerfstudio, SuperSplat, Postshot, Brush):
    UTF-8 comments, obj_info, tabs between words, an element before the vertices (a camera), extra
    vertex properties (uchar colours, splat-transform's float ``lod``), big-endian binary with
    double positions, half SH and float the rest, shuffled order. Values against numpy's."""
    rng = np.random.default_rng(17)
    n = 7
    props = [("red", "u1"), ("rot_2", ">f4"), ("x", ">f8"), ("f_rest_2", ">f2"), ("opacity", ">f4")]
    props += [("f_dc_1", ">f4"), ("y", ">f8"), ("scale_1", ">f4"), ("lod", ">f4"), ("rot_0", ">f4")]
    props += [("f_rest_1", ">f2"), ("z", ">f8"), ("f_dc_0", ">f4"), ("scale_0", ">f4"), ("green", "u1")]
    props += [("f_rest_0", ">f2"), ("rot_3", ">f4"), ("f_dc_2", ">f4"), ("scale_2", ">f4"), ("rot_1", ">f4")]
    props += [(f"f_rest_{i}", ">f2") for i in range(3, 9)]
    v = np.zeros(n, props)
    for name, t in props:
        v[name] = rng.integers(0, 255, n) if t == "u1" else rng.normal(0, 1, n)
    types = {"u1": "uchar", ">f4": "float", ">f8": "double", ">f2": "half"}
    cam = np.array([(0.5, 1.5)], [("fx", ">f4"), ("fy", ">f4")])
    head = ["ply", "format\tbinary_big_endian 1.0", "comment Generated by Jawset Postshot — ©2025"]
    head += ["obj_info exported by ns-export", "element camera 1", "property float fx", "property float fy"]
    head += [f"element\tvertex {n}"] + [f"property\t{types[t]}\t{name}" for name, t in props]
    _write_header_ply(tmp_path / "t.ply", head, np.frombuffer(cam.tobytes() + v.tobytes(), np.uint8))
    g = load_splats(tmp_path / "t.ply")
    assert g.sh_degree == 1 and len(g) == n and g.ids_implicit
    assert np.array_equal(g.means, np.stack([v[a] for a in "xyz"], 1).astype(np.float32))
    assert np.array_equal(g.log_scales, np.stack([v[f"scale_{i}"] for i in range(3)], 1).astype(np.float32))
    # f_rest is channel-major: red's 3 coefficients, then green's, then blue's
    rest = np.stack([v[f"f_rest_{i}"] for i in range(9)], 1).astype(np.float32).reshape(n, 3, 3)
    assert np.array_equal(g.sh[:, 1:, :], rest.transpose(0, 2, 1))
    q = np.stack([v[f"rot_{i}"] for i in (1, 2, 3, 0)], 1).astype(np.float64)  # (x, y, z, w)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    assert np.abs(np.abs((g.quats * q).sum(1)) - 1).max() < 1e-6


def test_double_positions_at_utm_magnitude_are_kept_or_the_loss_is_said(tmp_path, caplog):
    n = 100
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    names += ["scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    v = np.zeros(n, [(m, "<f8") for m in names])
    v["x"] = 4.5e6 + 0.07 * np.arange(n)  # easting of a UTM zone, 7 cm apart
    v["y"] = 5.4e5 + 0.03 * np.arange(n)
    v["scale_0"] = v["scale_1"] = v["scale_2"] = -3.0
    v["rot_0"] = 1.0
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")]).write(str(tmp_path / "geo.ply"))
    with caplog.at_level(logging.WARNING):
        g = load_splats(tmp_path / "geo.ply")
    error = np.abs(g.means[:, 0].astype(np.float64) - v["x"]).max()
    said = any("precision" in r.getMessage() or "float32" in r.getMessage() for r in caplog.records)
    assert error < 0.01 or said, f"positions off by {error} m, nothing logged"


def test_a_scene_a_few_metre_steps_wide_is_told_to_use_relative_steps(tmp_path, caplog):
    """The presets are in metres (1 mm at quality 2): a trained object in millimetres, 13 mm across,
    spans 13 steps, and encode merged its 300 positions onto about 200 lattice points without a
    word. It now says so and names --relative; with --relative it says nothing and the positions
    stay apart."""
    from gs_map_share.snapshot import decode_snapshot
    from gs_mapping.gaussians import GaussianMap

    rng = np.random.default_rng(3)
    n = 300
    g = GaussianMap(
        means=rng.uniform(0, 0.013, (n, 3)).astype(np.float32),
        log_scales=np.full((n, 3), -8.0, np.float32),
        quats=np.tile(np.float32([0, 0, 0, 1]), (n, 1)),
        opacity_logits=np.zeros(n, np.float32),
        sh=np.zeros((n, 1, 3), np.float32),
    )
    save_splats(g, tmp_path / "tiny.ply")
    for relative in (False, True):
        out = tmp_path / f"t{relative}.gsd"
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            argv = ["encode", str(tmp_path / "tiny.ply"), str(out)] + (["--relative"] if relative else [])
            assert main(argv) == 0
        said = [r.getMessage() for r in caplog.records if "--relative" in r.getMessage()]
        _, q = decode_snapshot(out.read_bytes())
        distinct = len(np.unique(q.pos, axis=0))
        if relative:
            assert not said and distinct == n
        else:
            assert len(said) == 1 and "13 position steps" in said[0] and distinct < n


def test_a_scene_saved_by_cloudcompare_reads_as_the_trainer_wrote_it(tmp_path):
    """CloudCompare saves every property but x, y, z and the normals as ``scalar_<name>``: such a
    3DGS PLY was refused as 'a point cloud, not a 3DGS scene'. Its values read as plyfile holds
    them under the trainer's names."""
    names = ["x", "y", "z", "nx", "ny", "nz"]
    gs = ["f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2"]
    gs += ["rot_0", "rot_1", "rot_2", "rot_3"]
    rng = np.random.default_rng(5)
    v = np.zeros(7, [(n, "<f4") for n in names + [f"scalar_{n}" for n in gs]])
    for n in v.dtype.names:
        v[n] = rng.normal(size=7)
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")]).write(str(tmp_path / "cc.ply"))
    g = load_ply(tmp_path / "cc.ply")
    np.testing.assert_array_equal(g.means, np.stack([v["x"], v["y"], v["z"]], 1))
    np.testing.assert_array_equal(g.opacity_logits, v["scalar_opacity"])
    np.testing.assert_allclose(g.log_scales, np.stack([v[f"scalar_scale_{i}"] for i in range(3)], 1))
    np.testing.assert_allclose(g.sh[:, 0], np.stack([v[f"scalar_f_dc_{i}"] for i in range(3)], 1))


def test_a_tiny_but_nonzero_rotation_is_a_direction_and_zero_is_no_rotation(tmp_path, caplog):
    """A quaternion is a direction (every reader normalises it): (1e-20, 0, 0, 1e-20) is a turn of
    90 degrees about x, as splat-transform reads it. An all-zero one is drawn by the 3DGS CUDA
    rasterizer (after the trainers' F.normalize, which leaves it zero) with the rotation matrix its
    formula gives for q = 0: the identity. So it reads as no rotation, said in one warning line."""
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2"]
    v = np.zeros(3, [(n, "<f4") for n in names + ["rot_0", "rot_1", "rot_2", "rot_3"]])
    v["rot_0"], v["rot_1"] = 1e-20, 1e-20  # w, x
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")]).write(str(tmp_path / "q.ply"))
    g = load_ply(tmp_path / "q.ply")
    np.testing.assert_allclose(np.abs(g.quats), [[0.5**0.5, 0, 0, 0.5**0.5]] * 3, atol=1e-6)
    v["rot_0"][1:] = v["rot_1"][1:] = 0
    plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")]).write(str(tmp_path / "z.ply"))
    caplog.clear()
    g = load_ply(tmp_path / "z.ply")
    w, x, y, z = 0.0, 0.0, 0.0, 0.0  # graphdeco's computeCov3D: R from q = (r, x, y, z), unnormalised
    r_cuda = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
    from scipy.spatial.transform import Rotation

    np.testing.assert_allclose(Rotation.from_quat(g.quats[1:]).as_matrix(), [r_cuda] * 2, atol=0)
    np.testing.assert_allclose(np.abs(g.quats[0]), [0.5**0.5, 0, 0, 0.5**0.5], atol=1e-6)
    lines = [r.getMessage() for r in caplog.records if "zero rotation" in r.getMessage()]
    assert len(lines) == 1 and "2 zero rotation(s)" in lines[0] and "Gaussian 1" in lines[0], lines
