"""A drive through the world, predicted frame by frame and fused into a :class:`LaneMap`, scored
against the world's global ground-truth map.

Scoring windows: the fused map is a map, not a frame, so it is scored where frames were: for each
frame of the drive, the fused map and the global GT are brought into that frame's base_link and
clipped to the region its cameras covered (:mod:`gsmap_hd.region`); MapTR's Chamfer AP is taken
over all these windows. The per-frame predictions, scored in the same windows against the same GT,
are the baseline. "Growth": the map after n frames, scored in the windows of frames 0..n−1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .lane_map import LaneMap, LaneMapConfig, region_in_map, to_frame
from .model_config import POLYGON_CLASSES
from .region import Region, clip_vectors


@dataclass
class _Obs:
    cls: int
    score: float
    points: np.ndarray


@dataclass
class FusedDrive:
    """What :func:`fuse_drive` collected."""

    poses: list = field(default_factory=list)  # T_map_base per frame
    regions: list = field(default_factory=list)  # Region (base_link) per frame
    frame_preds: list = field(default_factory=list)  # per frame: [(cls, score, pts base_link)]
    snapshots: dict = field(default_factory=dict)  # n frames → [(cls, conf, pts map)] published
    lane_map: LaneMap | None = None
    gt_map: list = field(default_factory=list)  # [(cls, pts map)]


def published(lm: LaneMap) -> list:
    return [(t.cls, t.confidence, t.points.copy()) for t in lm.published()]


def fuse_drive(
    predictor,
    drive,
    frames: int | None = None,
    config: LaneMapConfig | None = None,
    snapshot_every: int = 0,
    progress: bool = False,
) -> FusedDrive:
    """Predict each frame of a :class:`gs_mapping.world.Drive` (its rendered images, K, rig
    extrinsics), fuse in the map frame with the drive's true poses."""
    from gs_mapping.progress import progress as progress_report

    n = min(frames or len(drive), len(drive))
    lm = LaneMap(config or LaneMapConfig())
    out = FusedDrive(lane_map=lm)
    out.gt_map = [(int(e.cls), np.asarray(e.pts, np.float64)[:, :2]) for e in drive.world.map_elements()]
    for i in progress_report(range(n), desc="fuse", enabled=progress, leave=False):
        fr = drive.frame(i)
        ims = [fr.images[c.frame_id.removesuffix("_optical_frame")][0] for c in drive.cameras]
        els = predictor.predict(ims, drive.cameras, [c.T_map_cam for c in drive.cameras])
        region = predictor.last_regions[0]
        T = fr.T_map_base
        out.poses.append(T)
        out.regions.append(region)
        out.frame_preds.append([(e.cls, e.score, e.points) for e in els])
        lm.update([_Obs(e.cls, e.score, to_frame(e.points, T)) for e in els], region_in_map(region, T))
        if snapshot_every and ((i + 1) % snapshot_every == 0 or i + 1 == n):
            out.snapshots[i + 1] = published(lm)
    out.snapshots.setdefault(n, published(lm))
    return out


def windows(map_vectors, gt_map, poses, regions, frames=None) -> tuple[list, list]:
    """Eval frames (hd-eval dicts, base_link) of a map-frame element list and the GT map in the
    windows of the given frames (default all)."""
    results, gts = [], []
    for i in frames if frames is not None else range(len(poses)):
        T_base_map = np.linalg.inv(np.asarray(poses[i], np.float64))
        res = [
            {"pts": to_frame(p, T_base_map).tolist(), "type": int(c), "confidence_level": float(s)}
            for c, s, p in map_vectors
        ]
        gt = [{"pts": to_frame(p, T_base_map).tolist(), "type": int(c)} for c, p in gt_map]
        results.append({"vectors": clip_vectors(_near(res, regions[i]), regions[i], POLYGON_CLASSES)})
        gts.append({"vectors": clip_vectors(_near(gt, regions[i]), regions[i], POLYGON_CLASSES)})
    return results, gts


def _near(vectors: list[dict], region: Region) -> list[dict]:
    x0, y0, x1, y1 = region.polygon.bounds
    out = []
    for v in vectors:
        p = np.asarray(v["pts"])
        if p[:, 0].max() >= x0 and p[:, 0].min() <= x1 and p[:, 1].max() >= y0 and p[:, 1].min() <= y1:
            out.append(v)
    return out


def score(fd: FusedDrive, n: int | None = None) -> dict:
    """Chamfer AP of (a) the per-frame predictions the map fuses (score ≥ its ``min_score``), (b) the
    map fused over the first n frames (the snapshot at n), both in the windows of frames 0..n−1
    against the global GT map."""
    from .eval_io import parse_frames as parse
    from .metrics import evaluate_chamfer

    n = n or len(fd.poses)
    idx = list(range(n))
    res_map, gts = windows(fd.snapshots[n], fd.gt_map, fd.poses, fd.regions, idx)
    res_frame = []
    floor = fd.lane_map.config.min_score if fd.lane_map is not None else 0.0
    for i in idx:  # the frames as the map saw them: the predictions it fuses (score ≥ its min_score)
        vecs = [
            {"pts": np.asarray(p).tolist(), "type": int(c), "confidence_level": float(s)}
            for c, s, p in fd.frame_preds[i]
            if s >= floor
        ]
        res_frame.append({"vectors": clip_vectors(vecs, fd.regions[i], POLYGON_CLASSES)})
    g = parse(gts, "gt", False)
    fused = evaluate_chamfer(parse(res_map, "fused", True), g)
    single = evaluate_chamfer(parse(res_frame, "frames", True), g)
    return {
        "frames": n,
        "fused_mAP": fused["mAP"],
        "fused_class_ap": fused["class_ap"],
        "per_frame_mAP": single["mAP"],
        "per_frame_class_ap": single["class_ap"],
        "map_elements": len(fd.snapshots[n]),
    }
