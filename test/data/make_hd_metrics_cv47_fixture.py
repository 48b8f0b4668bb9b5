"""Regenerate ``hd_metrics_cv47_raster.json``: OpenCV 4.7 masks (as SHA-1s) of random shapes.

MapVR's toolkit rasterises with whatever OpenCV was installed; the MapVR-era releases (≤ 4.7) fill
polygons clipped by the image border differently from the OpenCV ≥ 4.11 that installs next to
numpy 2, so this fixture pins the ≤ 4.7 behaviour that ``gsmap_hd.metrics.raster`` reproduces.
It needs an environment with numpy 1.x and ``opencv-python-headless==4.7.0.72``:

    pip install --target /tmp/cv47 numpy==1.26.4 opencv-python-headless==4.7.0.72
    PYTHONPATH=/tmp/cv47 python test/data/make_hd_metrics_cv47_fixture.py
"""

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

H, W = 480, 240


def digest(mask: np.ndarray) -> str:
    return hashlib.sha1(np.packbits(mask.astype(bool)).tobytes()).hexdigest()


def main():
    rng = np.random.default_rng(2024)
    shapes = []
    for i in range(600):
        n = int(rng.integers(1, 12))
        mode = i % 4
        if mode == 0:  # around the image, partly outside
            pts = np.stack([rng.integers(-40, 280, n), rng.integers(-40, 520, n)], 1)
        elif mode == 1:  # far outside, long edges crossing the image
            pts = rng.integers(-3000, 3000, size=(n, 2))
        elif mode == 2:  # small shapes anywhere near the border
            pts = rng.integers(0, 12, size=(n, 2)) + np.array([rng.integers(-8, 245), rng.integers(-8, 485)])
        else:  # ped-crossing-like quads (closed) straddling a border
            c = np.array([rng.choice([0, 239, 240, 120]), rng.choice([0, 479, 480, 240])])
            c = c + rng.integers(-15, 16, 2)
            a = rng.uniform(0, np.pi)
            half = np.array([rng.uniform(3, 40), rng.uniform(2, 10)])
            corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]]) * half
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            pts = np.around(corners @ rot.T + c).astype(np.int64)
        p32 = pts.astype(np.int32)
        line = np.zeros((H, W))
        cv2.polylines(line, [p32], False, 1, 1)
        fill = np.zeros((H, W))
        cv2.fillPoly(fill, [p32], 1)
        shapes.append({"pts": pts.tolist(), "polylines": digest(line > 0), "fillPoly": digest(fill > 0)})
    out = {"opencv": cv2.__version__, "height": H, "width": W, "shapes": shapes}
    path = Path(__file__).with_name("hd_metrics_cv47_raster.json")
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({len(shapes)} shapes, OpenCV {cv2.__version__})")


if __name__ == "__main__":
    main()
