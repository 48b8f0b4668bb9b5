"""Regenerate test/data/splat_formats/: a small synthetic scene (ours, no third-party data) written
by PlayCanvas splat-transform (npm @playcanvas/splat-transform, the version below) as SOG and
compressed PLY, and splat-transform's own decode of each back to a standard PLY — the reference our
readers are compared with (test_formats_readers.py). splat-transform does not write antimatter15's
``.splat``: ours writes it (``scene.splat``) and splat-transform's decode of it is the reference.

    npm install --prefix /tmp/st @playcanvas/splat-transform@3.10.2
    .venv/bin/python test/data/make_splat_format_fixtures.py /tmp/st/node_modules/.bin/splat-transform
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent / "src")]

from synthetic_maps import synthetic_map  # noqa: E402

from gs_mapping.ply import save_ply  # noqa: E402
from gs_mapping.splat_formats import save_splats  # noqa: E402

VERSION = "3.10.2"


def main(tool: str) -> None:
    out = HERE / "splat_formats"
    out.mkdir(exist_ok=True)
    scene = synthetic_map(400, 2, seed=7)
    save_ply(scene, out / "scene.ply", overwrite=True)
    save_splats(scene, out / "scene.splat", overwrite=True)
    run = [tool, "-q", "-w"]
    subprocess.run(run + [str(out / "scene.splat"), str(out / "scene_splat.decoded.ply")], check=True)
    for target, back in (
        ("scene.sog", "scene_sog.decoded.ply"),
        ("scene.compressed.ply", "scene_cply.decoded.ply"),
    ):
        subprocess.run(run + ["-g", "cpu", str(out / "scene.ply"), str(out / target)], check=True)
        subprocess.run(run + [str(out / target), str(out / back)], check=True)
    (out / "scene.ply").unlink()  # the input: synthetic_map(400, 2, seed=7)
    (out / "VERSION").write_text(f"@playcanvas/splat-transform {VERSION}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "splat-transform")
