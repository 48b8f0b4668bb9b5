"""Arc-length resampling of map polylines, as MapTR's evaluation does it.

MapTR (``map_utils/mean_ap.py: get_cls_results`` with ``eval_use_same_gt_sample_num_flag=True``,
the setting of all its configs) resamples every vector to ``NUM_SAMPLES`` points at
``np.linspace(0, length, NUM_SAMPLES)`` along the shapely ``LineString`` of its points, with two
asymmetries we keep:

* a *prediction* that already has exactly ``NUM_SAMPLES`` points is used unchanged;
* a *ground-truth* vector is always resampled.

Polygons (ped crossings) are not treated specially: a vector is the polyline through its points as
given, so a polygon must be written as a closed ring (last point == first point) by its producer —
the GSMap vectoriser does that. We use shapely's ``line_interpolate_point`` (the same GEOS call as
``LineString.interpolate``) so the samples are bit-identical to the reference's.
"""

from __future__ import annotations

import numpy as np
import shapely

NUM_SAMPLES = 100


def resample(pts: np.ndarray, num: int = NUM_SAMPLES, keep_if_num: bool = False) -> np.ndarray:
    """``num`` points evenly spaced by arc length along the polyline ``pts`` (N, 2), N ≥ 2.

    ``keep_if_num``: return ``pts`` unchanged when it already has ``num`` points (MapTR's rule for
    predictions). A zero-length line gives ``num`` copies of its point.
    """
    pts = np.asarray(pts, dtype=np.float64)
    if keep_if_num and pts.shape[0] == num:
        return pts.copy()
    line = shapely.linestrings(pts)
    dist = np.linspace(0, shapely.length(line), num)
    return shapely.get_coordinates(shapely.line_interpolate_point(line, dist)).reshape(num, 2)
