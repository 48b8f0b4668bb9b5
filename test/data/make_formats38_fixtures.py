"""Regenerate test/data/splat_formats38/: SOGs written by an old PlayCanvas splat-transform (0.16.1,
the generation that wrote playbot's SOG) from tiny synthetic scenes, and each one's decode by the
current splat-transform (3.10.2) — the reference test_formats38_outside_writers.py compares our
reader with. With fewer distinct values than 256, 0.16's k-means writes codebooks shorter than 256
entries (a one-Gaussian scene: 3 scales, 3 colours; five Gaussians of SH 3: 15, 15 and 180).
And compressed PLYs written by gsplat's exporter (PyPI gsplat 1.5.3, ``gsplat.exporter.export_splats``
in pure torch: its own packer, not splat-transform's; an ``sh`` element with no properties at SH 0),
decoded by splat-transform 3.10.2.

    npm install --prefix /tmp/st016 @playcanvas/splat-transform@0.16.1
    npm install --prefix /tmp/st @playcanvas/splat-transform@3.10.2
    pip install --target /tmp/gs --no-deps gsplat==1.5.3 jaxtyping wadler_lindig
    PYTHONPATH=/tmp/gs .venv/bin/python test/data/make_formats38_fixtures.py \
        /tmp/st016/node_modules/.bin/splat-transform /tmp/st/node_modules/.bin/splat-transform
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import plyfile

HERE = Path(__file__).resolve().parent / "splat_formats38"
SCENES = {"st0161_1g_sh0": (1, 0, 1), "st0161_5g_sh3": (5, 3, 2)}  # name: (Gaussians, SH degree, seed)
GSPLAT = {"gsplat153_40g_sh0": (40, 0, 3), "gsplat153_300g_sh3": (300, 3, 4)}


def scene_ply(path: Path, n: int, degree: int, seed: int) -> None:
    """A trainer's standard 3DGS PLY (plyfile, float32) of random values in typical ranges."""
    rng = np.random.default_rng(seed)
    rest = 3 * ((degree + 1) ** 2 - 1)
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    rows = np.zeros(n, [(k, "<f4") for k in names])
    for k in names:
        rows[k] = rng.uniform(-0.4, 0.4, n) if k.startswith("f_rest") else rng.uniform(-2, 2, n)
    for i in range(3):
        rows[f"scale_{i}"] = rng.uniform(-6, -1, n)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for i in range(4):
        rows[f"rot_{i}"] = q[:, i]
    plyfile.PlyData([plyfile.PlyElement.describe(rows, "vertex")]).write(str(path))


def main(old_tool: str, tool: str) -> None:
    HERE.mkdir(exist_ok=True)
    for name, (n, degree, seed) in SCENES.items():
        src = HERE / f"{name}.source.ply"
        scene_ply(src, n, degree, seed)
        sog = HERE / f"{name}.sog"
        subprocess.run([old_tool, "-q", "-w", "-g", "cpu", str(src), str(sog)], check=True)
        subprocess.run([tool, "-q", "-w", str(sog), str(HERE / f"{name}.decoded.ply")], check=True)
        src.unlink()
    import torch
    from gsplat.exporter import export_splats

    for name, (n, degree, seed) in GSPLAT.items():
        src = HERE / f"{name}.source.ply"
        scene_ply(src, n, degree, seed)
        d = plyfile.PlyData.read(str(src))["vertex"].data
        k = (degree + 1) ** 2 - 1

        def cols(names, d=d):
            return torch.tensor(np.stack([d[x] for x in names], 1).astype(np.float32))

        rest = [cols([f"f_rest_{c * k + j}" for c in range(3)]) for j in range(k)]
        export_splats(
            cols("xyz"),
            cols([f"scale_{i}" for i in range(3)]),
            cols([f"rot_{i}" for i in range(4)]),
            cols(["opacity"])[:, 0],
            cols([f"f_dc_{i}" for i in range(3)])[:, None, :],
            torch.stack(rest, 1) if k else torch.zeros(n, 0, 3),
            format="ply_compressed",
            save_to=str(HERE / f"{name}.compressed.ply"),
        )
        subprocess.run(
            [tool, "-q", "-w", str(HERE / f"{name}.compressed.ply"), str(HERE / f"{name}.decoded.ply")],
            check=True,
        )
        src.unlink()
    (HERE / "VERSION").write_text(
        "st0161_*: written by @playcanvas/splat-transform 0.16.1; gsplat153_*: by gsplat 1.5.3's exporter; "
        "decoded by splat-transform 3.10.2\n"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
