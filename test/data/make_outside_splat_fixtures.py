"""Regenerate test/data/outside_splat_files/ (test_outside_splat_files.py): tiny hand-made scenes
(random values from a fixed seed, extreme scales and opacities, two identical Gaussians, SH degrees
1 and 3 — the team's own fixture is degree 2 only) written by PlayCanvas splat-transform as
compressed PLY, bundled .sog, unbundled meta.json + WebP and SPZ, each with splat-transform's own
decode back to a plain PLY; and our SPZ (v2, v4 in RUB axes) and .splat outputs with
splat-transform's decode of them (does the other tool read what we write, and to the same values?).

    npm install --prefix /tmp/st @playcanvas/splat-transform   # (2.7.1 was what the registry gave)
    .venv/bin/python test/data/make_outside_splat_fixtures.py /tmp/st/node_modules/.bin/splat-transform
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import plyfile

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent / "src")]

from gs_mapping.ply import load_ply  # noqa: E402
from gs_mapping.splat_formats import save_splats  # noqa: E402

N = 20


def scene(n: int, deg: int, seed: int) -> np.ndarray:
    """A standard 3DGS PLY's vertex rows (x y z nx ny nz f_dc f_rest opacity scale rot, float)."""
    rng = np.random.default_rng(seed)
    k = (deg + 1) ** 2
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    a = np.zeros(n, [(m, "<f4") for m in names])
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for ax in "xyz":
        a[ax] = rng.normal(0, 2, n)
    for i in range(3):
        a[f"f_dc_{i}"] = rng.normal(0, 1, n)
        a[f"scale_{i}"] = rng.uniform(-6, 1, n)
    for i in range(3 * (k - 1)):
        a[f"f_rest_{i}"] = rng.normal(0, 0.3, n)
    a["opacity"] = rng.normal(0, 3, n)
    for i in range(4):
        a[f"rot_{i}"] = q[:, i]
    a["opacity"][:4] = [30.0, -30.0, 9.0, -9.0]  # alpha bytes 255 and 0, and near them
    a["scale_0"][4:6] = [-20.0, 5.0]  # far outside the usual range
    a[n - 1] = a[n - 2]  # two identical Gaussians
    return a


def main(tool: str) -> None:
    out = HERE / "outside_splat_files"
    out.mkdir(exist_ok=True)
    run = [tool, "-q", "-w"]
    for deg in (1, 3):
        src = out / f"s{deg}.ply"
        plyfile.PlyData([plyfile.PlyElement.describe(scene(N, deg, deg), "vertex")]).write(str(src))
        targets = [f"s{deg}.compressed.ply", f"s{deg}.spz"]
        targets += [f"s{deg}.sog"] if deg == 3 else [f"s{deg}_sog/meta.json"]
        for t in targets:
            (out / t).parent.mkdir(exist_ok=True)
            subprocess.run(run + ["-g", "cpu", str(src), str(out / t)], check=True)
            back = out / (t.replace("/meta.json", "").replace(".", "_") + ".decoded.ply")
            subprocess.run(run + [str(out / t), str(back)], check=True)
        g = load_ply(src)
        for name, kw in (("ours_v2.spz", dict(spz_version=2)), ("ours_v4rub.spz", dict(spz_axes="rub"))):
            t = out / f"s{deg}_{name}"
            save_splats(g, t, overwrite=True, **kw)
            subprocess.run(run + [str(t), str(out / (t.name.replace(".", "_") + ".decoded.ply"))], check=True)
            t.unlink()  # the test writes it again (our writer of today)
        if deg == 1:
            t = out / "s1_ours.splat"
            save_splats(g, t, overwrite=True)
            subprocess.run(run + [str(t), str(out / "s1_ours_splat.decoded.ply")], check=True)
            t.unlink()
    # far from the origin (a map's scale): our writer lowers the fractional bits; does the other tool
    # honour them?
    far = scene(N, 0, 5)
    far["x"] += 5000.0
    src = out / "far.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(far, "vertex")]).write(str(src))
    t = out / "far_ours.spz"
    save_splats(load_ply(src), t, overwrite=True, spz_axes="rub")
    subprocess.run(run + [str(t), str(out / "far_ours_spz.decoded.ply")], check=True)
    t.unlink()
    version = subprocess.run([tool, "--version"], capture_output=True, text=True)
    (out / "VERSION").write_text(f"@playcanvas/splat-transform {(version.stdout + version.stderr).strip()}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "splat-transform")
