"""Outside check of issue 17, sixth pass (read and write the 3DGS files users have; encode/decode),
from angles the first five passes (test_outside_splat_files.py ... 5.py) and test_formats_*.py do
not take. Each reference is a real, independent thing:

- PlayCanvas' playbot scene as it ships (``../shared/data/splats/playbot_sog``, SOG v2 written by
  splat-transform 0.16.0, 500k Gaussians, SH 2): the suite only checked its count, degree and
  bounds. The reference is splat-transform 3.10.2's own decode of it (``splat-transform
  playbot_sog/meta.json playbot.ply``, read with plyfile): six rows in full and every column's sum;
  and the SPZ that splat-transform writes from it through Niantic's packer (``@adobe/spz`` 0.2.3,
  the WebAssembly build of nianticlabs/spz), whose six attribute arrays ``gs-mapping convert``
  must write byte for byte (their SHA-256 below).
- SOG version 1 as PlayCanvas' original Python compressor writes it (playcanvas/sogs 2d88b6a,
  ``src/sogs/sogs_compression.py``: ``_compress_16bit`` means of ``log_transform``, ``_compress``
  8-bit scales, ``_compress_sh0_with_opacity`` (DC clamped to ±3 and the opacity logit as alpha),
  ``pack_quaternion_to_rgba_tensor``, ``_compress_kmeans`` palette sorted by ``np.lexsort`` into its
  64-wide atlas with remapped labels, shN clamped to ±6), ported step by step to numpy (its k-means
  and PLAS sort need CUDA; the scene here is a 64-row palette, which k-means returns as it is, in
  file order). The suite built v1 only by relabelling v2 images and never checked values. The same
  files decode identically in splat-transform 3.10.2 (checked when this was written).
- Niantic's SPZ library (nianticlabs/spz 21715c3, ``ply_to_spz`` with ``PackOptions.version`` 3 and
  4) writing a scene of SH degree 4 (72 ``f_rest``), and its ``spz_to_ply`` decode: the suite's
  degree-4 test builds the file by hand. The bytes and the decode are below.
- docs/format.md section 1 (what a receiver rebuilds: each field's integer and decoded value, the
  clip ranges) and its header table (the steps read from their byte offsets), applied by hand to
  what ``gs-mapping encode`` / ``decode`` make of a scene with values at and beyond every clip
  (opacity logits ±30, log-scales −40 and 13, DC and SH ±100, denormal and −0 positions,
  unnormalised quaternions) and of the real guitar scene with ``--relative`` (faint positions on
  the ``faint_pos`` times coarser lattice).
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from gs_mapping.cli import main
from gs_mapping.splat_formats import load_splats
from gs_mapping.splat_formats.spz import read_spz

plyfile = pytest.importorskip("plyfile")
PIL_Image = pytest.importorskip("PIL.Image")


def _ply_rows(path) -> np.ndarray:
    """A PLY's vertex rows as plyfile reads them (not our reader)."""
    return plyfile.PlyData.read(str(path))["vertex"].data


def _write_ply(path: Path, cols: dict) -> None:
    """A trainer's binary PLY of float32 columns, written by plyfile."""
    n = len(next(iter(cols.values())))
    rows = np.zeros(n, [(k, "<f4") for k in cols])
    for k, v in cols.items():
        rows[k] = v
    plyfile.PlyData([plyfile.PlyElement.describe(rows, "vertex")]).write(str(path))


# --- PlayCanvas' playbot SOG as splat-transform decodes it -------------------------------------------

_PLAYBOT_COLS = ["x", "y", "z", "scale_0", "scale_1", "scale_2", "opacity", "f_dc_0", "f_dc_1", "f_dc_2"]
_PLAYBOT_COLS += [f"f_rest_{i}" for i in range(24)] + ["rot_0", "rot_1", "rot_2", "rot_3"]
# fmt: off
_PLAYBOT_ROWS = {
    0: [
        -1.0203501, -0.025434477, -1.0190351, -5.7989736, -6.124993, -9.155435, -1.5404451,
        -1.0582345, -1.1080165, -1.1855805, 0.31603387, 0.6480199, -0.64722455, -0.16144583,
        0.092858404, -0.0835811, -0.18163453, 0.03537149, 0.23806846, 0.7071242, -0.5990509,
        -0.115249135, 0.04034821, -0.07193135, -0.23889312, 0.05083416, 0.18651088, 0.7071242,
        -0.53820163, -0.090077974, 0.020996086, -0.06185116, -0.22163014, 0.04034821, 0.28561568,
        -0.12478355, 0.64055556, 0.70181286,
    ],
    1: [
        -1.020219, -0.025055239, -1.0145164, -5.8887014, -6.6913543, -9.129941, 0.19671029,
        -0.7605711, -0.8082093, -0.87287986, -0.06660746, 0.2119983, -0.115249135, -0.06185116,
        0.25070786, 0.10760396, -0.07193135, 0.020996086, -0.046559893, 0.19889799, -0.10577799,
        -0.046559893, 0.2119983, 0.0657524, -0.06660746, 0.014130172, -0.04082326, 0.18651088,
        -0.090077974, -0.046559893, 0.18651088, 0.05591143, -0.06660746, 0.010600698, -0.37435064,
        -0.5351828, -0.48526937, 0.58133864,
    ],
    77777: [
        0.5924646, -0.009867588, -1.0259863, -8.973751, -7.24602, -5.1738954, -0.72865385,
        -0.8975612, -0.9580779, -1.0371338, -0.4094347, 0.22516167, 0.05083416, 0.027305061,
        0.03537149, -0.26390603, 0.05591143, 0.0073161833, -0.34453234, 0.2119983, 0.06082607,
        0.03097779, 0.05591143, -0.22657913, 0.04034821, 0.03097779, -0.34453234, 0.17527103,
        0.06082607, 0.03097779, 0.045580413, -0.21017975, 0.03097779, 0.045580413, -0.44644782,
        0.52963686, 0.55292034, -0.46308562,
    ],
    123456: [
        -0.48894048, -0.5927741, -0.16462691, -4.9961305, -5.5018897, -5.5332355, 3.099273,
        1.3581295, 1.2010564, 0.8520408, 0.0657524, 0.28746095, 0.48748988, 0.099892445,
        -0.05781086, 0.014130172, 0.12342932, -0.025614118, 0.075915135, 0.30065218, 0.48748988,
        0.0657524, -0.06185116, 0.020996086, 0.13076247, -0.046559893, 0.075915135, 0.33472615,
        0.46055493, 0.027305061, -0.05781086, 0.017662093, 0.15749387, -0.010876282, 0.6990904,
        0.21906446, 0.64055556, 0.23015633,
    ],
    250000: [
        -0.15401466, -1.0444653, 0.14475983, -4.877103, -4.3108835, -8.523483, 1.1569843,
        0.47466964, 0.4223854, 0.4223854, 0.03097779, -0.06660746, 0.075915135, 0.0707726,
        -0.0013249357, -0.077617146, -0.03367462, -0.017667497, 0.017662093, -0.05781086, 0.0707726,
        0.0707726, 0.001560886, -0.07193135, -0.04082326, -0.017667497, 0.017662093, -0.04082326,
        0.0707726, 0.0707726, -0.0013249357, -0.06185116, -0.025614118, -0.017667497, -0.6793771,
        0.71531284, -0.1636051, 0.0027729678,
    ],
    499999: [
        1.0178996, -0.020844134, 1.0042895, -8.005219, -8.896487, -4.8478284, -2.1335087,
        -0.94079196, -1.0582345, -1.0825055, -0.010876282, -0.28768635, 0.25070786, -0.0054815556,
        0.081121355, -0.0054815556, -0.19228178, 0.06082607, -0.0013249357, -0.26390603, 0.23806846,
        -0.0054815556, 0.08664729, 0.001560886, -0.19228178, 0.05083416, 0.001560886, -0.26390603,
        0.2119983, -0.017667497, 0.081121355, 0.001560886, -0.20209561, 0.024126614, 0.91981894,
        0.11369168, -0.29670754, -0.23015633,
    ],
}
_PLAYBOT_SUMS = {
    'x': -3920.512,
    'y': -34648.863,
    'z': 614.239,
    'scale_0': -3320649.761,
    'scale_1': -3315745.018,
    'scale_2': -3318091.402,
    'opacity': 553538.304,
    'f_dc_0': -477376.034,
    'f_dc_1': -497218.678,
    'f_dc_2': -537689.389,
    'f_rest_0': -19900.987,
    'f_rest_1': -2848.104,
    'f_rest_2': 948.787,
    'f_rest_3': 761.347,
    'f_rest_4': 671.716,
    'f_rest_5': -1842.961,
    'f_rest_6': 239.408,
    'f_rest_7': -2028.449,
    'f_rest_8': -25991.79,
    'f_rest_9': -766.723,
    'f_rest_10': 991.496,
    'f_rest_11': 732.421,
    'f_rest_12': 114.853,
    'f_rest_13': -834.87,
    'f_rest_14': -335.007,
    'f_rest_15': -364.288,
    'f_rest_16': -29881.336,
    'f_rest_17': -227.129,
    'f_rest_18': 1008.277,
    'f_rest_19': 501.568,
    'f_rest_20': 238.637,
    'f_rest_21': -769.307,
    'f_rest_22': -398.102,
    'f_rest_23': -386.975,
}
# fmt: on


def test_playbot_sog_as_it_ships_reads_as_splat_transform_decodes_it(shared_data):
    """The SOG users are pointed to (issue 17: "the format playbot ships in"), read by us, equals
    splat-transform 3.10.2's decode of the same folder: six rows in full (float32 values equal,
    rotations up to sign within 1e-6: the two normalise differently) and each column's sum (every
    Gaussian: a wrong codebook index, label or channel anywhere moves a sum)."""
    g = load_splats(shared_data / "splats" / "playbot_sog")
    assert len(g) == 500_000 and g.sh_degree == 2
    cols = {a: g.means[:, i] for i, a in enumerate("xyz")}
    cols.update({f"scale_{i}": g.log_scales[:, i] for i in range(3)})
    cols["opacity"] = g.opacity_logits
    cols.update({f"f_dc_{c}": g.sh[:, 0, c] for c in range(3)})
    cols.update({f"f_rest_{c * 8 + j - 1}": g.sh[:, j, c] for c in range(3) for j in range(1, 9)})
    for row, want in _PLAYBOT_ROWS.items():
        got = np.array([cols[c][row] for c in _PLAYBOT_COLS[:34]], np.float32)
        assert np.array_equal(got, np.array(want[:34], np.float32)), row
        wxyz = np.array(want[34:], np.float64)
        q = g.quats[row, [3, 0, 1, 2]].astype(np.float64)
        assert abs(abs(q @ (wxyz / np.linalg.norm(wxyz))) - 1) < 1e-6, row
    for c, want in _PLAYBOT_SUMS.items():
        got = float(cols[c].astype(np.float64).sum())
        assert abs(got - want) <= 2e-3 + 1e-9 * abs(want), (c, got, want)


# SHA-256 (first 32 hex digits) of each attribute array of the version-4 SPZ that splat-transform
# 3.10.2 writes through Niantic's packer (@adobe/spz 0.2.3, the WebAssembly build of nianticlabs/spz)
# from playbot_sog (``splat-transform playbot_sog/meta.json playbot.spz``), each stream inflated.
_PLAYBOT_SPZ_ARRAYS = {
    "positions": "b07adca31957fa8c43b7307a462bbb2b",
    "alphas": "92cca59b1b3b79b0ca16e9329be6eba7",
    "colours": "d510b7449fb636719546799e2ef12373",
    "scales": "973f0a40ae68335e13d196c187160ade",
    "rotations": "f1daca1b1c43c7c386d9b519087230ea",
    "sh": "dd7a6e1c54cd17abe1ee6bc21002b765",
}


def test_convert_of_playbot_to_spz_packs_what_niantics_packer_packs(shared_data, tmp_path):
    """format.md / README: our SPZ bytes equal Niantic's "up to rounding ties", checked by the suite
    on the guitar vectors (SH 0) and on hand-made rows. On the real SH-2 scene users convert
    (playbot, 500k Gaussians, 12 M SH bytes), ``gs-mapping convert playbot_sog out.spz`` holds the
    same six attribute arrays, byte for byte, as the file Niantic's packer writes from the same SOG
    (read by Niantic's layout: 32-byte header, table of (compressed, raw) u64 sizes, zstd frames)."""
    import hashlib

    try:  # Python 3.14+ ships zstd; before, the backport of the same module
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        zstd = pytest.importorskip("backports.zstd")
    out = tmp_path / "playbot.spz"
    assert main(["convert", str(shared_data / "splats" / "playbot_sog"), str(out)]) == 0
    data = out.read_bytes()
    magic, version, n, degree, bits, flags, streams, toc = struct.unpack_from("<IIIBBBBI", data)
    assert (magic, version, n, degree, bits, streams) == (0x5053474E, 4, 500_000, 2, 12, 6)
    at, got = toc + 16 * streams, {}
    for name, i in zip(_PLAYBOT_SPZ_ARRAYS, range(streams), strict=True):
        size, raw = struct.unpack_from("<QQ", data, toc + 16 * i)
        array = zstd.decompress(data[at : at + size])
        assert len(array) == raw
        got[name] = hashlib.sha256(array).hexdigest()[:32]
        at += size
    assert got == _PLAYBOT_SPZ_ARRAYS


# --- SOG version 1 as PlayCanvas' sogs compressor writes it ------------------------------------------


def _sogs_webp(folder: Path, name: str, img: np.ndarray) -> str:
    """sogs' ``write_image``: Pillow, lossless WebP, ``exact=True`` (method 0 here: same pixels)."""
    PIL_Image.fromarray(img).save(
        folder / f"{name}.webp", format="webp", lossless=True, quality=100, method=0, exact=True
    )
    return f"{name}.webp"


def _sogs_norm(grid: np.ndarray, axis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mins, maxs = grid.min(axis=axis), grid.max(axis=axis)
    return (grid - mins) / (maxs - mins), mins, maxs


def _sogs_v1(folder: Path, means, scales, wxyz, dc, opacity, palette, labels) -> None:
    """playcanvas/sogs ``run_compression`` step by step (float32 as its torch tensors), the scene
    already in grid order (its PLAS sort only permutes), ``palette`` (64, coeffs, 3) the k-means
    centroids and ``labels`` each Gaussian's."""
    n = len(means)
    side = int(n**0.5)
    assert side * side == n and len(palette) == 64
    f32 = np.float32
    meta: dict = {}
    # means: log_transform, then _compress_16bit (per-channel mins/maxs over the grid)
    logm = (np.sign(means) * np.log1p(np.abs(means))).astype(f32).reshape(side, side, 3)
    norm, lo, hi = _sogs_norm(logm, (0, 1))
    img = np.round(norm * (2**16 - 1)).astype(np.uint16)
    files = [_sogs_webp(folder, "means_l", (img & 0xFF).astype(np.uint8))]
    files.append(_sogs_webp(folder, "means_u", ((img >> 8) & 0xFF).astype(np.uint8)))
    meta["means"] = {
        "shape": [n, 3],
        "dtype": "float32",
        "mins": lo.tolist(),
        "maxs": hi.tolist(),
        "files": files,
    }
    # scales: _compress (8 bits between per-channel mins/maxs)
    norm, lo, hi = _sogs_norm(scales.astype(f32).reshape(side, side, 3), (0, 1))
    img = np.round(norm * 255).astype(np.uint8)
    meta["scales"] = {
        "shape": [n, 3],
        "dtype": "float32",
        "mins": lo.tolist(),
        "maxs": hi.tolist(),
        "files": [_sogs_webp(folder, "scales", img)],
    }
    # quats: F.normalize, then pack_quaternion_to_rgba_tensor
    q = (wxyz / np.linalg.norm(wxyz, axis=1, keepdims=True)).astype(f32)
    big = np.abs(q).argmax(axis=1)
    sign = np.sign(q[np.arange(n), big])
    sign[sign == 0] = 1
    q = q * sign[:, None]
    small = np.stack([np.delete(q[i], big[i]) for i in range(n)]) * f32(np.sqrt(2.0))
    rgba = np.concatenate([small * 0.5 + 0.5, ((252.0 + big) / 255.0)[:, None]], axis=1)
    img = np.round(rgba.reshape(side, side, 4) * 255.0).astype(np.uint8)
    meta["quats"] = {
        "shape": [n, 4],
        "dtype": "uint8",
        "encoding": "quaternion_packed",
        "files": [_sogs_webp(folder, "quats", img)],
    }
    # sh0 clamped to ±3, the opacity logit as a fourth channel: _compress_sh0_with_opacity
    grid = np.concatenate([np.clip(dc, -3, 3), opacity[:, None]], axis=1).astype(f32).reshape(side, side, 4)
    norm, lo, hi = _sogs_norm(grid, (0, 1))
    img = np.round(norm * 255).astype(np.uint8)
    meta["sh0"] = {
        "shape": [n, 1, 4],
        "dtype": "float32",
        "mins": lo.tolist(),
        "maxs": hi.tolist(),
        "files": [_sogs_webp(folder, "sh0", img)],
    }
    # shN clamped to ±6: _compress_kmeans (scalar mins/maxs, lexsort atlas, remapped labels)
    cen = np.clip(palette, -6, 6).astype(f32).reshape(64, -1)  # (coefficient, channel) per centroid
    dim = cen.shape[1]
    norm, lo, hi = _sogs_norm(cen, None)
    quant = np.round(norm * 255).astype(np.uint8)
    order = np.lexsort(quant.T).reshape(64, -1).T.reshape(-1)
    inverse = np.argsort(order)
    packed = quant[order].reshape(-1, dim * 64 // 3, 3)
    lab = inverse[labels].astype(np.uint16).reshape(side, side)
    lab_img = np.zeros((side, side, 3), np.uint8)
    lab_img[..., 0], lab_img[..., 1] = lab & 0xFF, (lab >> 8) & 0xFF
    meta["shN"] = {
        "shape": [n, dim],
        "dtype": "float32",
        "mins": float(lo),
        "maxs": float(hi),
        "quantization": 8,
        "files": [_sogs_webp(folder, "shN_centroids", packed), _sogs_webp(folder, "shN_labels", lab_img)],
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))


@pytest.mark.parametrize("deg", [1, 3])
def test_sog_version_1_as_playcanvas_sogs_writes_it(tmp_path, deg):
    """A SOG v1 folder made as the original compressor makes it is the scene it was given, within
    each field's quantisation: positions within half a 16-bit step of the log-transformed range,
    log-scales, DC (clamped to ±3) and opacity logits within half an 8-bit step of their ranges,
    rotations within the 8-bit smallest-three step, and each Gaussian's higher SH its palette row
    (clamped to ±6) within half an 8-bit step of the palette's one range, through the sorted atlas."""
    rng = np.random.default_rng(17 + deg)
    n, k = 256, (deg + 1) ** 2
    means = rng.normal(0, 3, (n, 3)).astype(np.float32)
    means[0] = (-0.0, 1e-42, 250.0)  # −0, a denormal, far out (the log transform's point)
    scales = rng.normal(-4, 1.5, (n, 3)).astype(np.float32)
    wxyz = rng.normal(size=(n, 4)).astype(np.float32) * 3  # unnormalised, as trainers leave them
    dc = rng.normal(0, 1.5, (n, 3)).astype(np.float32)
    opacity = rng.normal(0, 4, n).astype(np.float32)
    palette = rng.normal(0, 2.5, (64, k - 1, 3)).astype(np.float32)  # some beyond ±6
    labels = rng.permutation(np.arange(n) % 64)
    folder = tmp_path / "sogs"
    folder.mkdir()
    _sogs_v1(folder, means, scales, wxyz, dc, opacity, palette, labels)

    g = load_splats(folder / "meta.json")
    assert len(g) == n and g.sh_degree == deg and g.ids_implicit

    def half_step(x, levels):
        return (x.max(axis=0) - x.min(axis=0)) / levels / 2 * 1.0001 + 1e-6

    logm = np.sign(means) * np.log1p(np.abs(means))
    ours = np.sign(g.means) * np.log1p(np.abs(g.means))
    assert np.all(np.abs(ours - logm) <= half_step(logm, 65535))
    assert np.all(np.abs(g.log_scales - scales) <= half_step(scales, 255))
    assert np.all(np.abs(g.sh[:, 0] - np.clip(dc, -3, 3)) <= half_step(np.clip(dc, -3, 3), 255))
    assert np.all(np.abs(g.opacity_logits - opacity) <= half_step(opacity, 255))
    q = wxyz[:, [1, 2, 3, 0]] / np.linalg.norm(wxyz, axis=1, keepdims=True)
    angle = 2 * np.degrees(np.arccos(np.clip(np.abs((g.quats * q).sum(axis=1)), 0, 1)))
    assert angle.max() < 1.0
    want = np.clip(palette, -6, 6)[labels]
    span = float(np.clip(palette, -6, 6).max() - np.clip(palette, -6, 6).min())
    assert np.abs(g.sh[:, 1:] - want).max() <= span / 255 / 2 * 1.0001 + 1e-6


# --- Niantic's SPZ of SH degree 4 ----------------------------------------------------------------

# nianticlabs/spz 21715c3 ply_to_spz (PackOptions.version 3: gzip; 4: NGSP + zstd) of 3 Gaussians of
# SH degree 4 (72 f_rest, float32 PLY written by plyfile); the header says degree 4 in both.
_NIANTIC_D4_V3 = (
    "H4sIAAAAAAAAAxWOoUqEURCFL7iaDFsE46/JeJvaLhoUVnREwxqEQcufZLBoPEVYFHEQwyII8wgTxXTjxvsI+whr0QXD"
    "791w0vm+wzk+OKOlEMIivdUQlkPI391PCJNe+Jp3t2vh46/bnHXNvHsZ/Lbvd69HJ883j1d716eDS97fWdl6237YeGrO"
    "dy+oXR/H0eGQW4jAJCFHYoanxqUvZq6YphIdIO4LiyEKR4FKIqlgmTkjQSBtO0ufI3VhUKXNPU0ZSG5eCpnEUmczuUEX"
    "gksRU6FElEktJjS1sBHd03AyHIPNAGRVaFXM1NEkdkdOUq0cG0LOJKg3gJqipiriZjEy/gHVFxEHJAEAAA=="
)
_NIANTIC_D4_V4 = (
    "TkdTUAQAAAADAAAABAwABiAAAAAAAAAAAAAAAAAAAAAkAAAAAAAAABsAAAAAAAAADAAAAAAAAAADAAAAAAAAABIAAAAA"
    "AAAACQAAAAAAAAASAAAAAAAAAAkAAAAAAAAAFQAAAAAAAAAMAAAAAAAAAJUAAAAAAAAA2AAAAAAAAAAotS/9IBvZAAAF"
    "AADA8f/2AADIBAC6+P9yFQCd+/8i8P8g+P8otS/9IAMZAACPS/cotS/9IAlJAABomneSTE+NboootS/9IAlJAABiQmNR"
    "S11gQzgotS/9IAxhAAAGKJQ3hSGLIFQ5WVAotS/9INhlBACCDSIdoCVJBw98Udm37Hcz957PUvfO2flsfr/NbWa9a47b"
    "DGK2d3hl61vrFiEXMYSqJXKmEXEe4pj3HfkR7UExUFRAHfhNTINXpIqqhy3NTt+YRXIrU6xSEpPeCJSJ9bU17xCggmH0"
    "TlsWymYt6t2xzljrYPU5hQhfInZoEpSb1ZCpeLthBcAxA4ERAA=="
)
# Niantic's spz_to_ply of either file (the same PLY): f_rest_0..71 (channel-major, 24 per channel)
# as bytes b (the value is (b - 128) / 128), and the other columns
# fmt: off
_NIANTIC_D4_REST = [
    [
        104, 48, 88, 128, 128, 64, 48, 96, 64, 112, 160, 144, 64, 176, 80, 112, 160, 112, 112, 112, 112, 128, 176, 64,
        24, 136, 96, 112, 160, 128, 80, 128, 32, 16, 160, 128, 208, 128, 96, 96, 128, 96, 128, 64, 96, 208, 96, 128,
        152, 72, 104, 112, 112, 192, 96, 176, 176, 112, 176, 224, 48, 128, 16, 112, 48, 48, 144, 80, 96, 240, 128, 112,
    ],
    [
        128, 104, 184, 176, 128, 128, 176, 224, 128, 160, 208, 112, 96, 192, 160, 128, 112, 208, 144, 64, 192, 160, 128, 144,
        112, 240, 136, 112, 80, 80, 176, 96, 64, 176, 80, 48, 128, 80, 128, 64, 176, 112, 112, 80, 80, 48, 32, 128,
        104, 64, 144, 96, 128, 160, 64, 128, 176, 208, 160, 208, 176, 176, 144, 128, 112, 160, 80, 80, 144, 64, 128, 160,
    ],
    [
        136, 80, 88, 96, 128, 192, 128, 160, 160, 128, 96, 128, 112, 64, 32, 192, 112, 112, 128, 128, 160, 112, 160, 48,
        80, 88, 152, 160, 128, 144, 144, 128, 144, 32, 176, 192, 112, 192, 80, 192, 128, 96, 112, 208, 144, 112, 160, 96,
        120, 200, 128, 160, 128, 144, 176, 160, 176, 64, 176, 64, 80, 48, 128, 80, 80, 128, 96, 144, 144, 176, 48, 128,
    ],
]
# fmt: on
_NIANTIC_D4_COLS = {
    "x": [0.0012207031, 0.29882812, -0.27416992],
    "y": [-0.890625, -0.45458984, -0.9916992],
    "z": [0.060058594, 1.340332, -0.4921875],
    "f_dc_0": [-0.61437905, 0.48366028, 0.35294133],
    "f_dc_1": [0.6928106, -1.3464051, -0.45751628],
    "f_dc_2": [-0.2222222, -1.2679738, 0.27450997],
    "opacity": [0.24434586, -0.8754686, 3.429947],
    "scale_0": [-3.875, -4.9375, -4.0],
    "scale_1": [-5.875, -5.3125, -5.8125],
    "scale_2": [-3.8125, -4.1875, -6.5],
    "rot_0": [0.008302623, 0.5382868, 0.47048202],
    "rot_1": [0.7696067, 0.7959472, 0.36116412],
    "rot_2": [-0.5216815, -0.011070165, 0.7978454],
    "rot_3": [0.36808297, -0.2767541, -0.1079341],
}


@pytest.mark.parametrize("version", [3, 4])
def test_niantics_own_sh_degree_4_spz_reads_as_its_decoder_reads_it(version, caplog):
    """SPZ of SH degree 4 as Niantic's writer lays it out (24 coefficients a point, colour inner, in
    both framings): read as degree 3 with the fifth band dropped and a warning (spz.py), bands 1-3
    exactly Niantic's decode, band 4 nowhere (the first 15 of each channel's 24, not a shifted
    window), and every other field Niantic's decode."""
    raw = base64.b64decode("".join(_NIANTIC_D4_V3 if version == 3 else _NIANTIC_D4_V4))
    g = read_spz(raw, f"d4_v{version}.spz")
    assert "fifth band is dropped" in caplog.text
    assert len(g) == 3 and g.sh_degree == 3
    rest = (np.array(_NIANTIC_D4_REST, np.float32).reshape(3, 3, 24) - 128) / 128  # (point, channel, coeff)
    assert np.array_equal(g.sh[:, 1:], rest[:, :, :15].transpose(0, 2, 1))
    ref = {k: np.array(v, np.float32) for k, v in _NIANTIC_D4_COLS.items()}
    assert np.allclose(g.means, np.stack([ref[a] for a in "xyz"], 1), rtol=0, atol=1e-7)
    assert np.allclose(g.sh[:, 0], np.stack([ref[f"f_dc_{c}"] for c in range(3)], 1), rtol=0, atol=1e-6)
    assert np.allclose(g.opacity_logits, ref["opacity"], rtol=0, atol=1e-6)
    assert np.array_equal(g.log_scales, np.stack([ref[f"scale_{i}"] for i in range(3)], 1))
    wxyz = np.stack([ref[f"rot_{i}"] for i in range(4)], 1)
    assert np.allclose(np.abs((g.quats[:, [3, 0, 1, 2]] * wxyz).sum(axis=1)), 1, atol=1e-6)


# --- encode / decode against docs/format.md section 1 -----------------------------------------------


def _header_steps(gsd: bytes) -> dict:
    """The quantisation parameters at their byte offsets in format.md's header table."""
    assert struct.unpack_from("<H", gsd, 4)[0] >= 6  # faint_rot / faint_pos exist from version 6
    step = dict(
        zip(
            ("pos", "tile", "opacity", "scale", "dc", "rest"), struct.unpack_from("<6d", gsd, 48), strict=True
        )
    )
    step["faint_factor"], step["faint_below"] = struct.unpack_from("<Bh", gsd, 105)
    step["faint_pos"] = gsd[109]
    return step


def _format_md_rows(src: dict, s: dict) -> np.ndarray:
    """What format.md section 1 says a receiver holds for each source row, one float32 row per
    Gaussian: position (faint on the faint_pos lattice), opacity, the three log-scales sorted (the
    encoder may exchange axes, moving the rotation with them: the ellipsoid is the same), DC, and
    the higher SH. Integers: rint (half to even) of the clipped value over the step; values
    float32(v) · float32(step), positions float32(float64(P) · pos_step)."""
    f32 = np.float32
    op = np.rint(np.clip(src["opacity"].astype(np.float64), -20, 20) / s["opacity"])
    faint = op < s["faint_below"]
    q = np.where(faint, s["faint_pos"], 1)[:, None]
    mean = np.stack([src[a] for a in "xyz"], 1).astype(np.float64)
    pos = (q * np.rint(mean / (q * s["pos"])) * s["pos"]).astype(f32)
    f = np.where(faint, s["faint_factor"], 1)[:, None]
    ls = np.stack([src[f"scale_{i}"] for i in range(3)], 1).astype(np.float64)
    ls = np.sort((f * np.rint(np.clip(ls, -30, 12) / (f * s["scale"]))).astype(f32) * f32(s["scale"]), axis=1)
    dc = np.stack([src[f"f_dc_{c}"] for c in range(3)], 1).astype(np.float64)
    dc = (f * np.rint(np.clip(dc, -64, 64) / (f * s["dc"]))).astype(f32) * f32(s["dc"])
    n_rest = sum(1 for k in src if k.startswith("f_rest_"))
    rest = []
    for i in range(n_rest):  # f_rest_i: channel i // per, coefficient i % per + 1
        degree = int(np.floor(np.sqrt(i % (n_rest // 3) + 1)))
        st = degree * s["rest"]
        rest.append(
            np.rint(np.clip(src[f"f_rest_{i}"].astype(np.float64), -64, 64) / st).astype(f32) * f32(st)
        )
    opv = op.astype(f32) * f32(s["opacity"])
    return np.column_stack([pos, opv, ls, dc, *rest]).astype(f32)


def _decoded_rows(rows: np.ndarray) -> np.ndarray:
    """The decoded PLY's rows (plyfile) in the layout of :func:`_format_md_rows`."""
    names = rows.dtype.names
    rest = [rows[f"f_rest_{i}"] for i in range(sum(1 for k in names if k.startswith("f_rest_")))]
    ls = np.sort(np.stack([rows[f"scale_{i}"] for i in range(3)], 1), axis=1)
    cols = [
        rows["x"],
        rows["y"],
        rows["z"],
        rows["opacity"],
        *ls.T,
        *(rows[f"f_dc_{c}"] for c in range(3)),
        *rest,
    ]
    return np.column_stack(cols).astype(np.float32)


def _as_set(a: np.ndarray) -> np.ndarray:
    """Rows in a canonical order (the decoder's order is its own), -0 as 0."""
    a = a + np.float32(0)
    return a[np.lexsort(a.T[::-1])]


def test_cli_encode_decode_of_values_at_and_beyond_every_clip_is_format_md_section_1(tmp_path):
    """``gs-mapping encode`` then ``decode`` of a trainer's PLY (SH degree 2) whose rows hit every
    clip of format.md section 1 — opacity logits ±30 (clip ±20), log-scales −40 and 13 (clip
    [−30, 12]), DC and SH ±100 (clip ±64) — with a −0 and a denormal position, quaternions of norm 5
    and 1e−3: every decoded row (plyfile) is the table's value, row set for row set."""
    rng = np.random.default_rng(23)
    n, k = 96, 9
    cols = {a: rng.normal(0, 2, n) for a in "xyz"}
    cols.update({f"scale_{i}": rng.normal(-4, 1, n) for i in range(3)})
    cols["opacity"] = rng.normal(0, 3, n)
    cols.update({f"f_dc_{c}": rng.normal(0, 1, n) for c in range(3)})
    cols.update({f"f_rest_{i}": rng.normal(0, 0.3, n) for i in range(3 * (k - 1))})
    wxyz = rng.normal(size=(n, 4))
    cols["opacity"][:4] = (30.0, -30.0, 20.04, -29.0)
    cols["scale_0"][4], cols["scale_1"][5], cols["scale_2"][6] = -40.0, 13.0, -30.5
    cols["f_dc_0"][7], cols["f_dc_2"][8] = 100.0, -100.0
    cols["f_rest_0"][9], cols["f_rest_15"][10], cols["f_rest_23"][11] = -100.0, 100.0, 64.5
    cols["x"][12], cols["y"][12], cols["z"][12] = -0.0, 1e-42, 1e-45
    wxyz[13], wxyz[14] = (3.0, 4.0, 0.0, 0.0), (1e-3, 0.0, 0.0, 0.0)
    cols.update({f"rot_{i}": wxyz[:, i] for i in range(4)})
    src = tmp_path / "scene.ply"
    _write_ply(src, cols)
    assert main(["encode", str(src), str(tmp_path / "s.gsd"), "--levels", "1"]) == 0
    assert main(["decode", str(tmp_path / "s.gsd"), str(tmp_path / "back.ply")]) == 0
    steps = _header_steps((tmp_path / "s.gsd").read_bytes())
    want = _format_md_rows({c: np.asarray(v, np.float32) for c, v in cols.items()}, steps)
    got = _decoded_rows(_ply_rows(tmp_path / "back.ply"))
    assert got.shape == want.shape
    assert np.array_equal(_as_set(got), _as_set(want))


def test_relative_encode_of_the_guitar_is_format_md_section_1(shared_data, tmp_path):
    """The real guitar scene (91k Gaussians, SH 0), ``encode --relative --levels 1`` then
    ``decode``: the scale-relative preset puts faint Gaussians' positions on a ``faint_pos`` times
    coarser lattice and their log-scales and DC on a ``faint_factor`` times coarser one (format.md,
    "Faint rotations and positions"); every decoded row is that, computed by hand from the header's
    steps, row set for row set."""
    src = shared_data / "splats" / "guitar.ply"
    gsd, back = tmp_path / "g.gsd", tmp_path / "g.ply"
    assert main(["encode", str(src), str(gsd), "--relative", "--levels", "1"]) == 0
    assert main(["decode", str(gsd), str(back)]) == 0
    steps = _header_steps(gsd.read_bytes())
    assert steps["faint_pos"] > 1  # (the preset this checks)
    rows = _ply_rows(src)
    want = _format_md_rows({c: rows[c] for c in rows.dtype.names}, steps)
    got = _decoded_rows(_ply_rows(back))
    assert got.shape == want.shape
    assert np.array_equal(_as_set(got), _as_set(want))
