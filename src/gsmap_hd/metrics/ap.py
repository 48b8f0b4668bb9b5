"""Average-precision arithmetic shared by the two HD-map metrics.

* :func:`voc_area_ap` — MapTR's ``average_precision(recalls, precisions, mode='area')`` after its
  ``eval_map`` (``map_utils/mean_ap.py``): TP/FP flags pooled over frames, cumulated in float32,
  recall = TP / max(num_gts, eps32), precision = TP / max(TP + FP, eps32), precision envelope, area
  under the step curve summed where recall changes, the result stored as float32. We keep the
  float32 dtypes so the APs are bit-identical, not just close.
* :func:`coco_precision` — the COCO-style 101-point interpolated precision of MapVR's toolkit
  (``map_evaluator.py: InstanceIOUEval._accumulate``): float64 cumsums, precision
  TP / (FP + TP + spacing(1)), envelope, ``searchsorted(recall, recThrs, 'left')``, recall points
  beyond the last detection's recall read as 0.
"""

from __future__ import annotations

import numpy as np

_EPS32 = np.finfo(np.float32).eps

#: MapVR/COCO recall points: ``np.linspace(0, 1, 101)`` exactly as the toolkit builds them (the
#: values must be the same doubles, since ``searchsorted`` compares recall against them).
REC_THRS = np.linspace(0.00, 1.00, int(np.round((1.00 - 0.00) / 0.01)) + 1)


def voc_area_ap(tp: np.ndarray, fp: np.ndarray, num_gts: int) -> np.float32:
    """VOC 'area' AP of detections already sorted by descending score.

    ``tp``/``fp``: 0/1 flags per detection (one of them 1). ``num_gts``: ground truths of the class
    over all frames. No detections or no ground truth gives 0.
    """
    tp = np.cumsum(np.asarray(tp, dtype=np.float32))
    fp = np.cumsum(np.asarray(fp, dtype=np.float32))
    recalls = tp / np.maximum(np.float32(num_gts), _EPS32)
    precisions = tp / np.maximum(tp + fp, _EPS32)
    mrec = np.concatenate([np.zeros(1, np.float32), recalls, np.ones(1, np.float32)])
    mpre = np.concatenate([np.zeros(1, np.float32), precisions, np.zeros(1, np.float32)])
    # Precision envelope: each point takes the best precision at any higher recall.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    ind = np.where(mrec[1:] != mrec[:-1])[0]
    return np.float32(np.sum((mrec[ind + 1] - mrec[ind]) * mpre[ind + 1]))


def coco_precision(matched: np.ndarray, num_gts: int, rec_thrs: np.ndarray = REC_THRS) -> np.ndarray:
    """Interpolated precision at ``rec_thrs`` for detections sorted by descending score.

    ``matched``: bool per detection (True = matched a ground truth). ``num_gts`` must be > 0 (the
    toolkit skips classes without ground truth: their precision stays -1, "absent").
    """
    matched = np.asarray(matched, dtype=bool)
    tp = np.cumsum(matched).astype(np.float64)
    fp = np.cumsum(~matched).astype(np.float64)
    nd = len(tp)
    rc = tp / num_gts
    pr = tp / (fp + tp + np.spacing(1))
    if nd:
        pr = np.maximum.accumulate(pr[::-1])[::-1]
    q = np.zeros(len(rec_thrs))
    inds = np.searchsorted(rc, rec_thrs, side="left")
    ok = inds < nd  # the toolkit stops filling at the first recall point it cannot reach
    first_bad = int(np.argmin(ok)) if not ok.all() else len(ok)
    q[:first_bad] = pr[inds[:first_bad]]
    return q
