"""Issue 17 checked from outside with files made by real independent writers (session 38).

- SOGs written by PlayCanvas splat-transform 0.16.1 (the generation that wrote playbot's SOG) from
  tiny scenes: with fewer distinct values than 256, its k-means keeps one codebook entry per value,
  so ``scales``/``sh0``/``shN`` codebooks are shorter than 256 (a one-Gaussian scene: 3 entries).
  Our reader refused them ("must be 256 finite numbers"); the reference is splat-transform 3.10.2's
  decode of the same files (test/data/splat_formats38/, made by
  test/data/make_formats38_fixtures.py), its PLY parsed in this file. Likewise the compressed PLYs
  of gsplat's exporter (PyPI gsplat 1.5.3, its own packer), which read correctly already.
- Live, where splat-transform is installed (``GS_MAPPING_SPLAT_TRANSFORM`` names it, else
  ``splat-transform`` on PATH; skipped otherwise): scenes with chunk/texture edge counts (1, 257)
  and SH 0 and 3, written by it as compressed PLY, .sog, meta.json and SPZ and decoded by it back to
  a PLY, against our reading; and our .ply / SPZ v2-v4 read by it, against our reading.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gs_mapping.errors import MapError
from gs_mapping.splat_formats import load_splats, save_splats

pytest.importorskip("PIL.Image")

FIXTURES = Path(__file__).parent / "data" / "splat_formats38"


def _vertex_rows(path) -> np.ndarray:
    """The vertex rows of a binary little-endian PLY of float properties only (splat-transform's
    decode), parsed here from its header: not our reader."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    assert lines[1] == "format binary_little_endian 1.0", lines[1]
    (count,) = [int(x.split()[2]) for x in lines if x.startswith("element vertex ")]
    names = [x.split()[2] for x in lines if x.startswith("property ")]
    assert all(x.split()[1] == "float" for x in lines if x.startswith("property "))
    return np.frombuffer(data, np.dtype([(k, "<f4") for k in names]), count, end)


def _reference(path) -> dict:
    """A standard 3DGS PLY's values, read by :func:`_vertex_rows`: SH as (N, K, 3)."""
    d = _vertex_rows(path)
    n = len(d)
    k = sum(1 for x in d.dtype.names if x.startswith("f_rest_")) // 3
    sh = np.zeros((n, k + 1, 3))
    for c in range(3):
        sh[:, 0, c] = d[f"f_dc_{c}"]
        for j in range(k):
            sh[:, j + 1, c] = d[f"f_rest_{c * k + j}"]
    q = np.stack([d[f"rot_{i}"] for i in (1, 2, 3, 0)], 1).astype(np.float64)
    return {
        "means": np.stack([d[a] for a in "xyz"], 1),
        "log_scales": np.stack([d[f"scale_{i}"] for i in range(3)], 1),
        "opacity_logits": np.asarray(d["opacity"]),
        "sh": sh,
        "quats": q / np.linalg.norm(q, axis=1, keepdims=True),
    }


def _same(g, ref: dict, what: str, atol: float = 1e-6) -> None:
    assert len(g) == len(ref["means"]), what
    assert g.sh.shape[1] == ref["sh"].shape[1], what
    for f in ("means", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_allclose(getattr(g, f), ref[f], rtol=0, atol=atol, err_msg=f"{what}: {f}")
    q = g.quats / np.linalg.norm(g.quats, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs((q * ref["quats"]).sum(1)), 1.0, atol=1e-6, err_msg=f"{what}: quats")


# --- splat-transform 0.16's short codebooks (fixtures) ----------------------------------------------


@pytest.mark.parametrize("name", ["st0161_1g_sh0", "st0161_5g_sh3"])
def test_old_splat_transform_sog_with_short_codebooks_reads_as_splat_transform_decodes_it(name):
    sog = FIXTURES / f"{name}.sog"
    meta = json.loads(zipfile.ZipFile(sog).read("meta.json"))
    assert len(meta["scales"]["codebook"]) < 256  # what the fixture is about
    _same(load_splats(sog), _reference(FIXTURES / f"{name}.decoded.ply"), name)


@pytest.mark.parametrize("name", ["gsplat153_40g_sh0", "gsplat153_300g_sh3"])
def test_gsplat_exporter_compressed_ply_reads_as_splat_transform_decodes_it(name):
    """gsplat 1.5.3's own compressed-PLY packer (``export_splats(format="ply_compressed")``): its
    header differs from splat-transform's (an ``sh`` element with no properties at SH 0; 300
    Gaussians: two chunks, the last of 44)."""
    _same(
        load_splats(FIXTURES / f"{name}.compressed.ply"), _reference(FIXTURES / f"{name}.decoded.ply"), name
    )


def test_a_short_codebook_indexed_past_its_end_is_refused_in_one_line(tmp_path):
    """An index past a short codebook's entries: one line naming it (PlayCanvas' reader reads the
    missing entry as NaN), through ``convert`` with exit status 2."""
    from gs_mapping.cli import main

    src = zipfile.ZipFile(FIXTURES / "st0161_5g_sh3.sog")
    meta = json.loads(src.read("meta.json"))
    for key in ("scales", "sh0", "shN"):
        bad = dict(meta, **{key: dict(meta[key], codebook=meta[key]["codebook"][:2])})
        path = tmp_path / f"{key}.sog"
        with zipfile.ZipFile(path, "w") as out:
            for info in src.infolist():
                body = json.dumps(bad).encode() if info.filename == "meta.json" else src.read(info)
                out.writestr(info.filename, body)
        with pytest.raises(MapError, match=rf"{key}.codebook index \d+ is beyond its 2 entries") as exc:
            load_splats(path)
        assert "\n" not in str(exc.value)
        assert main(["convert", str(path), str(tmp_path / f"{key}.ply")]) == 2
        assert not (tmp_path / f"{key}.ply").exists()


# --- live: splat-transform writes and reads, at chunk / texture edges ------------------------------


def _splat_transform() -> str:
    tool = os.environ.get("GS_MAPPING_SPLAT_TRANSFORM") or shutil.which("splat-transform")
    if not tool or not shutil.which("node"):
        pytest.skip("PlayCanvas splat-transform (npm) not installed: set GS_MAPPING_SPLAT_TRANSFORM")
    return tool


def _run(tool: str, *args) -> None:
    subprocess.run(
        [tool, "-q", "-w", "-g", "cpu", *map(str, args)], check=True, timeout=300, capture_output=True
    )


def _synthetic_ply(path: Path, n: int, degree: int, seed: int) -> None:
    """A trainer's PLY written by plyfile: float32, normals in the middle, random typical values."""
    plyfile = pytest.importorskip("plyfile")
    rng = np.random.default_rng(seed)
    rest = 3 * ((degree + 1) ** 2 - 1)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(rest)] + ["opacity", "scale_0", "scale_1", "scale_2"]
    names += ["rot_0", "rot_1", "rot_2", "rot_3"]
    rows = np.zeros(n, [(k, "<f4") for k in names])
    for k in names:
        rows[k] = rng.uniform(-0.4, 0.4, n) if k.startswith("f_rest") else rng.uniform(-2, 2, n)
    for i in range(3):
        rows[f"scale_{i}"] = rng.uniform(-6, -1, n)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for i in range(4):
        rows[f"rot_{i}"] = q[:, i]
    for k in ("nx", "ny", "nz"):
        rows[k] = 0
    plyfile.PlyData([plyfile.PlyElement.describe(rows, "vertex")]).write(str(path))


@pytest.mark.slow
@pytest.mark.parametrize("n, degree", [(1, 0), (257, 3)])
def test_splat_transform_files_read_as_splat_transform_decodes_them(tmp_path, n, degree):
    tool = _splat_transform()
    src = tmp_path / "scene.ply"
    _synthetic_ply(src, n, degree, seed=n + degree)
    (tmp_path / "dir").mkdir()
    for out in ("scene.compressed.ply", "scene.sog", "dir/meta.json", "scene.spz"):
        _run(tool, src, tmp_path / out)
        _run(tool, tmp_path / out, tmp_path / "back.ply")
        _same(load_splats(tmp_path / out), _reference(tmp_path / "back.ply"), f"{out} (n={n}, SH {degree})")


@pytest.mark.slow
def test_our_files_read_by_splat_transform_as_we_read_them(tmp_path):
    tool = _splat_transform()
    src = tmp_path / "scene.ply"
    _synthetic_ply(src, 257, 2, seed=3)
    scene = load_splats(src)
    for name, version in (("ours.ply", 4), ("v2.spz", 2), ("v3.spz", 3), ("v4.spz", 4)):
        save_splats(scene, tmp_path / name, spz_version=version)
        _run(tool, tmp_path / name, tmp_path / "back.ply")
        _same(load_splats(tmp_path / name), _reference(tmp_path / "back.ply"), name)
