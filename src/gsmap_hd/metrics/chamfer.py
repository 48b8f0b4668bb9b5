"""Chamfer-distance AP of MapTR (``projects/mmdet3d_plugin/datasets/map_utils``).

Per class, over all frames (``mean_ap.py: eval_map`` + ``tpfp.py: custom_tpfp_gen`` +
``tpfp_chamfer.py: custom_polyline_score``):

1. every vector is resampled to 100 points (:mod:`.resample`);
2. per frame, score[p, g] = −(mean_p min_g d + mean_g min_p d) / 2 (scipy ``cdist``), computed only
   where the 2 m flat-cap / mitre-join shapely buffers of the two resampled lines intersect,
   else −100;
3. predictions of the frame in descending confidence each take their best-scoring GT (first on a
   tie); TP when score ≥ −threshold and that GT is not yet covered, else FP — there is no fallback
   to a second-best GT;
4. TP/FP flags of all frames are pooled, sorted by descending confidence, VOC 'area' AP (float32);
5. AP per threshold (0.5, 1.0, 1.5 m) and class; mAP = mean over thresholds and classes, a class
   without ground truth counting as AP 0 (MapTR's ``cls_aps.mean(0).mean()``).

Deviation, on purpose: MapTR sorts with numpy's default (unstable) quicksort, whose order of tied
confidences depends on the numpy build and CPU; we sort stably (input order among ties), one of
the orders the reference can produce, so results are deterministic. With distinct confidences the
two are identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from scipy.spatial.distance import cdist

from .ap import voc_area_ap

THRESHOLDS = (0.5, 1.0, 1.5)
BUFFER_M = 2.0
NO_OVERLAP = -100.0


def score_matrix(pred: np.ndarray, gt: np.ndarray, buffer_m: float = BUFFER_M) -> np.ndarray:
    """(P, G) matrix of −chamfer/2 between resampled lines ``pred`` (P, S, 2) and ``gt`` (G, S, 2).

    Pairs whose buffers do not intersect get −100.
    """
    out = np.full((len(pred), len(gt)), NO_OVERLAP)
    if len(pred) == 0 or len(gt) == 0:
        return out
    opts = dict(cap_style="flat", join_style="mitre")
    with np.errstate(all="ignore"):  # GEOS flags FP errors on degenerate (e.g. subnormal) input
        pbuf = shapely.buffer(shapely.linestrings(pred), buffer_m, **opts)
        gbuf = shapely.buffer(shapely.linestrings(gt), buffer_m, **opts)
    # The reference queries an STRtree of the prediction buffers and then tests ``intersects``;
    # the envelope query is only a prefilter, so this is the same set of pairs.
    gi, pi = shapely.STRtree(pbuf).query(gbuf, predicate="intersects")
    for p, g in zip(pi.tolist(), gi.tolist(), strict=False):
        d = cdist(pred[p], gt[g], "euclidean")
        ab = d.min(-1).mean()
        ba = d.min(-2).mean()
        out[p, g] = -(ba + ab) / 2
    return out


def tpfp(scores: np.ndarray, conf: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """TP/FP flags (float32, in input order) of one frame's predictions of one class."""
    num_pred, num_gt = scores.shape
    tp = np.zeros(num_pred, np.float32)
    fp = np.zeros(num_pred, np.float32)
    if num_gt == 0:
        fp[:] = 1
        return tp, fp
    if num_pred == 0:
        return tp, fp
    best = scores.max(axis=1)
    best_gt = scores.argmax(axis=1)
    covered = np.zeros(num_gt, bool)
    for i in np.argsort(-conf, kind="stable"):
        if best[i] >= -threshold and not covered[best_gt[i]]:
            covered[best_gt[i]] = True
            tp[i] = 1
        else:
            fp[i] = 1
    return tp, fp


@dataclass
class ClassFrame:
    """One frame's resampled vectors of one class."""

    pred: np.ndarray  # (P, S, 2)
    conf: np.ndarray  # (P,) float64
    gt: np.ndarray  # (G, S, 2)
    scores: np.ndarray = field(init=False)

    def __post_init__(self):
        self.scores = score_matrix(self.pred, self.gt)


@dataclass
class ChamferClassResult:
    ap: list[float]  # per threshold, float32 values as Python floats
    num_gts: int
    num_dets: int
    recall: list[float]  # final recall per threshold


def class_ap(frames: list[ClassFrame], thresholds=THRESHOLDS) -> ChamferClassResult:
    """AP of one class at each threshold, detections pooled over ``frames``."""
    num_gts = sum(len(f.gt) for f in frames)
    conf = np.concatenate([f.conf for f in frames]) if frames else np.zeros(0)
    order = np.argsort(-conf, kind="stable")
    aps, recalls = [], []
    for thr in thresholds:
        flags = [tpfp(f.scores, f.conf, thr) for f in frames]
        tp = np.concatenate([t for t, _ in flags])[order] if frames else np.zeros(0, np.float32)
        fp = np.concatenate([f for _, f in flags])[order] if frames else np.zeros(0, np.float32)
        aps.append(float(voc_area_ap(tp, fp, num_gts)))
        recalls.append(float(tp.sum() / num_gts) if num_gts else 0.0)
    return ChamferClassResult(aps, num_gts, len(conf), recalls)
