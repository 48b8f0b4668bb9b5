"""Regenerate ``hd_metrics_reference_doc.json``: a random HD-map evaluation file for the
reference cross-check in ``test/test_hd_metrics_reference.py``.

Scenes mix polylines (random walks) and rectangular ped crossings, partly outside the BEV range;
predictions are noisy, sometimes reversed, sometimes resampled to 20 or exactly 100 points, plus
pure false positives (some with one point, some below the 0.05 raster score cut). Confidences are
all distinct, because MapTR sorts with an unstable quicksort.
"""

import json
from pathlib import Path

import numpy as np
from shapely.geometry import LineString


def make(seed: int = 11, frames: int = 50) -> dict:
    rng = np.random.default_rng(seed)
    scores = iter(np.round(rng.permutation(np.linspace(0.01, 0.99, 5000)), 6))
    results, gts = [], []
    for _ in range(frames):
        gv, rv = [], []
        for _ in range(int(rng.integers(0, 9))):
            c = int(rng.integers(0, 3))
            if c == 1:
                ctr = rng.uniform([-17, -33], [17, 33])
                a = rng.uniform(0, np.pi)
                half = rng.uniform([1, 1], [6, 3])
                rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
                box = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]]) * half
                pts = box @ rot.T + ctr
            else:
                pts = rng.uniform([-16, -32], [16, 32]) + np.cumsum(
                    rng.normal(0, 4, (int(rng.integers(2, 8)), 2)), 0
                )
            pts = np.round(pts, 3)
            gv.append({"pts": pts.tolist(), "type": c})
            for _ in range(int(rng.integers(0, 3))):
                p = pts + rng.normal(0, rng.uniform(0, 1.2), pts.shape)
                if rng.random() < 0.3:
                    p = p[::-1]
                if rng.random() < 0.15:
                    line = LineString(p)
                    k = int(rng.choice([20, 100]))
                    p = np.array([line.interpolate(d).coords[0] for d in np.linspace(0, line.length, k)])
                rv.append(
                    {"pts": np.round(p, 3).tolist(), "type": c, "confidence_level": float(next(scores))}
                )
        for _ in range(int(rng.integers(0, 4))):
            n = int(rng.integers(1, 6))
            rv.append(
                {
                    "pts": np.round(rng.uniform([-16, -32], [16, 32], (n, 2)), 3).tolist(),
                    "type": int(rng.integers(0, 3)),
                    "confidence_level": float(next(scores)),
                }
            )
        rng.shuffle(rv)
        results.append({"vectors": rv})
        gts.append({"vectors": gv})
    return {"results": results, "GTs": gts}


if __name__ == "__main__":
    path = Path(__file__).with_name("hd_metrics_reference_doc.json")
    path.write_text(json.dumps(make(), separators=(",", ":")) + "\n")
    print(f"wrote {path}")
