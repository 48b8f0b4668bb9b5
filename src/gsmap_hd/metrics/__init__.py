"""HD-map evaluation metrics that reproduce the published references exactly.

* :mod:`.chamfer` — MapTR's Chamfer-distance AP (thresholds 0.5 / 1.0 / 1.5 m);
* :mod:`.raster` — MapVR's rasterised-IoU AP (480 × 240 masks, 0.125 m/px);
* :mod:`.ap` — the AP arithmetic both share; :mod:`.resample` — arc-length resampling.

:func:`evaluate` runs both on matching lists of prediction and ground-truth frames and returns the
JSON-ready dict that ``gs-mapping hd-eval`` prints::

    {"num_frames": N, "frame": "maptr",
     "chamfer": {"thresholds": [0.5, 1.0, 1.5], "classes": [...],
                 "ap": [[divider, ped_crossing, boundary] per threshold],   # float32 values
                 "class_ap": [...], "mAP": m, "num_gts": [...], "num_dets": [...],
                 "recall": [[...] per threshold]},
     "raster": {"line_ap": ..., "ped_ap": ..., "mAP": ...,
                "divider_ap": ..., "boundary_ap": ..., "opencv_fill": "4.7",
                "line_iou_thresholds": [...],
                "ped_iou_thresholds": [...], "ap_per_threshold": {class: [...]},
                "recall": {class: [...]}, "num_gts": {...}, "num_dets": {...}}}

Chamfer: mAP is the mean over thresholds and all three classes (a class without any GT counts 0),
as MapTR reports it. Raster: ``line_ap`` is the toolkit's AP over both line classes (divider,
boundary), ``ped_ap`` its polygon AP; per-class APs are −1 when the class has no GT anywhere
(the toolkit's "absent"); ``mAP`` is the mean of the defined per-class APs (−1 if none).
"""

from __future__ import annotations

import numpy as np

from ..errors import HDMapError
from ..eval_io import CLASSES, Vector, parse_frames
from . import chamfer, raster
from .resample import NUM_SAMPLES, resample

__all__ = ["evaluate", "evaluate_chamfer", "evaluate_raster", "CLASSES"]

LINE_CLASSES = (0, 2)
POLYGON_CLASSES = (1,)


def _frames(frames, name: str, need_score: bool) -> list:
    """Accept parsed frames (lists of :class:`Vector`) or raw JSON-like frame dicts."""
    if isinstance(frames, list) and frames and isinstance(frames[0], dict):
        return parse_frames(frames, name, need_score)
    if not isinstance(frames, list):
        raise HDMapError(f"{name}: expected a list of frames, got {type(frames).__name__}")
    for i, fr in enumerate(frames):
        if not (isinstance(fr, list) and all(isinstance(v, Vector) for v in fr)):
            raise HDMapError(f"{name}[{i}]: expected a list of Vector or a frame dict")
    return frames


def evaluate_chamfer(results: list, gts: list, thresholds=chamfer.THRESHOLDS) -> dict:
    """MapTR Chamfer AP over parsed frames."""
    per_class = []
    for c in range(len(CLASSES)):
        frames = []
        for res, gt in zip(results, gts, strict=False):
            preds = [v for v in res if v.cls == c and len(v.pts) >= 2]
            pred = np.array([resample(v.pts, NUM_SAMPLES, keep_if_num=True) for v in preds])
            conf = np.array([v.score for v in preds], dtype=np.float64)
            g = np.array([resample(v.pts, NUM_SAMPLES) for v in gt if v.cls == c])
            frames.append(
                chamfer.ClassFrame(pred.reshape(-1, NUM_SAMPLES, 2), conf, g.reshape(-1, NUM_SAMPLES, 2))
            )
        per_class.append(chamfer.class_ap(frames, thresholds))
    ap = np.array([r.ap for r in per_class], dtype=np.float64).T  # (T, C), float32 values
    return {
        "thresholds": [float(t) for t in thresholds],
        "classes": list(CLASSES),
        "ap": ap.tolist(),
        "class_ap": ap.mean(0).tolist(),
        "mAP": float(ap.mean(0).mean()) if ap.size else 0.0,
        "num_gts": [r.num_gts for r in per_class],
        "num_dets": [r.num_dets for r in per_class],
        "recall": np.array([r.recall for r in per_class]).T.tolist(),
    }


def evaluate_raster(results: list, gts: list, fill_variant: str = "4.7") -> dict:
    """MapVR toolkit rasterised-IoU AP over parsed frames.

    ``fill_variant``: which OpenCV's polygon fill to reproduce, "4.7" (≤ 4.7, the MapVR era,
    default) or "4.11" (≥ 4.11); they differ only for ped crossings clipped by the BEV border.
    """
    out_cls = {}
    for c in range(len(CLASSES)):
        polygon = c in POLYGON_CLASSES
        thrs = raster.POLY_IOU_THRS if polygon else raster.LINE_IOU_THRS
        evs = []
        for res, gt in zip(results, gts, strict=False):
            dts = [v for v in res if v.cls == c and v.score >= raster.SCORE_THRESHOLD and len(v.pts) >= 2]
            evs.append(
                raster.evaluate_frame_class(
                    [v.pts for v in gt if v.cls == c],
                    [v.pts for v in dts],
                    [v.score for v in dts],
                    polygon,
                    thrs,
                    fill_variant=fill_variant,
                )
            )
        out_cls[c] = raster.accumulate(evs, thrs)

    def mean_defined(values):
        vals = [v for v in values if v > -1]
        return float(np.mean(vals)) if vals else -1.0

    # The toolkit's line AP ("AP, all, all, 100") averages the precision entries of both line
    # classes together.
    line_ap = raster.summarize([out_cls[c] for c in LINE_CLASSES])
    ped_ap = out_cls[1].ap
    names = {c: CLASSES[c] for c in out_cls}
    return {
        "line_ap": line_ap,
        "ped_ap": ped_ap,
        "mAP": mean_defined([out_cls[c].ap for c in range(len(CLASSES))]),
        "divider_ap": out_cls[0].ap,
        "boundary_ap": out_cls[2].ap,
        "opencv_fill": fill_variant,
        "line_iou_thresholds": [float(t) for t in raster.LINE_IOU_THRS],
        "ped_iou_thresholds": [float(t) for t in raster.POLY_IOU_THRS],
        "ap_per_threshold": {names[c]: r.ap_per_threshold for c, r in out_cls.items()},
        "recall": {names[c]: r.recall for c, r in out_cls.items()},
        "num_gts": {names[c]: r.num_gts for c, r in out_cls.items()},
        "num_dets": {names[c]: r.num_dets for c, r in out_cls.items()},
    }


#: Input coordinate conventions. "maptr": MapTR / nuScenes-lidar BEV, x to the right (±15 m,
#: the raster's 240 columns), y forward (±30 m, its 480 rows) — what the references expect.
#: "rep103": ROS base_link, x forward, y left; rotated into "maptr" (x' = −y, y' = x) before
#: evaluating. The Chamfer AP does not depend on it; the raster window does.
FRAMES = ("maptr", "rep103")


def to_maptr_frame(frames: list, frame: str) -> list:
    if frame not in FRAMES:
        raise HDMapError(f"unknown BEV frame {frame!r} (expected one of {FRAMES})")
    if frame == "maptr":
        return frames
    return [
        [Vector(np.stack([-v.pts[:, 1], v.pts[:, 0]], axis=1), v.cls, v.score) for v in fr] for fr in frames
    ]


def evaluate(
    results,
    gts,
    chamfer_metric: bool = True,
    raster_metric: bool = True,
    fill_variant: str = "4.7",
    frame: str = "maptr",
) -> dict:
    """Both metrics on matching prediction / ground-truth frame lists (see module docstring).

    ``frame``: the coordinate convention of the points, see :data:`FRAMES`.
    """
    results = to_maptr_frame(_frames(results, "results", need_score=True), frame)
    gts = to_maptr_frame(_frames(gts, "GTs", need_score=False), frame)
    if len(results) != len(gts):
        raise HDMapError(f"{len(results)} result frames but {len(gts)} GT frames")
    out = {"num_frames": len(results), "frame": frame}
    if chamfer_metric:
        out["chamfer"] = evaluate_chamfer(results, gts)
    if raster_metric:
        out["raster"] = evaluate_raster(results, gts, fill_variant)
    return out
