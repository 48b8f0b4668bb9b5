"""The persistent lane map (gsmap_hd.lane_map) against the world's global ground truth: noisy,
incomplete per-frame observations with one-off false positives, fused over a drive in the map frame,
give a map closer to the GT than the frames were, with stable ids and without the false positives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from gs_mapping.world import Drive
from gsmap_hd.eval_io import parse_frames
from gsmap_hd.lane_map import LaneMap, region_in_map, to_frame
from gsmap_hd.lane_map_eval import windows
from gsmap_hd.metrics import evaluate_chamfer
from gsmap_hd.region import clip_elements, rig_region


@dataclass
class Obs:
    cls: int
    score: float
    points: np.ndarray


@pytest.fixture(scope="module")
def drive():
    return Drive.make(7, 40, "front", (64, 32), rate_hz=2.0)


def _observe(drive, rng, region, i, miss=0.25, noise=0.15):
    """Frame i's GT in its camera region, as a detector might report it (base_link)."""
    T = drive.pose(i)
    gt = [(e.cls, e.pts) for e in drive.world.elements_in_ego(T)]
    obs = []
    for c, p in clip_elements(gt, region):
        if rng.random() < miss:
            continue
        shift = rng.normal(0, noise, 2)
        obs.append(Obs(c, float(rng.uniform(0.4, 0.9)), p + shift + rng.normal(0, noise, p.shape)))
    return obs


def _fuse(drive, n, seed=0, false_positives=True):
    rng = np.random.default_rng(seed)
    region = rig_region("frustum", "front", (-30, 30), (-15, 15), (128, 256))
    lm, per_frame, fps = LaneMap(), [], []
    for i in range(n):
        T = drive.pose(i)
        obs = _observe(drive, rng, region, i)
        if false_positives and i % 3 == 1:  # a one-off phantom divider in view, never seen again
            a = np.array([rng.uniform(8, 20), rng.uniform(-3, 3)])
            ph = Obs(0, 0.8, np.stack([a, a + [6.0, 0.3]]))
            obs.append(ph)
            fps.append(to_frame(ph.points, T))
        per_frame.append(obs)
        lm.update([Obs(o.cls, o.score, to_frame(o.points, T)) for o in obs], region_in_map(region, T))
    return lm, per_frame, fps, region


def _map_ap(drive, lm, per_frame, region, n):
    poses = [drive.pose(i) for i in range(n)]
    gt_map = [(e.cls, e.pts) for e in drive.world.map_elements()]
    fused = [(t.cls, t.confidence, t.points) for t in lm.published()]
    res, gts = windows(fused, gt_map, poses, [region] * n)
    frames = [
        {"vectors": [{"pts": o.points.tolist(), "type": o.cls, "confidence_level": o.score} for o in obs]}
        for obs in per_frame
    ]
    g = parse_frames(gts, "gt", False)
    return (
        evaluate_chamfer(parse_frames(res, "fused", True), g)["mAP"],
        evaluate_chamfer(parse_frames(frames, "frames", True), g)["mAP"],
    )


def test_fused_map_beats_the_frames_against_global_gt(drive):
    n = 40
    lm, per_frame, _, region = _fuse(drive, n)
    fused, single = _map_ap(drive, lm, per_frame, region, n)
    # frames miss a quarter of the elements and carry phantoms; the map recovers them
    assert fused > single + 0.1, (fused, single)
    assert fused > 0.7


def test_one_off_false_positives_are_not_in_the_map(drive):
    lm, _, fps, _ = _fuse(drive, 30)
    assert len(fps) >= 8
    for t in lm.published():
        for ph in fps:
            d = np.linalg.norm(t.points[:, None] - ph[None], axis=-1).min()
            close = np.linalg.norm(t.points - ph.mean(0), axis=1).min()
            assert not (d < 0.2 and close < 1.0 and t.length() < 8.0), "a phantom made it into the map"


def test_every_published_lane_lies_on_ground_truth(drive):
    lm, _, _, _ = _fuse(drive, 30)
    gt = [(e.cls, e.pts) for e in drive.world.map_elements()]
    assert len(lm.published()) >= 5
    for t in lm.published():
        same = [p for c, p in gt if c == t.cls]
        d = min(_mean_dist(t.points, p) for p in same)
        assert d < 0.6, (t.id, t.cls, d)


def test_ids_stay_and_confidence_grows_with_sightings(drive):
    rng = np.random.default_rng(1)
    region = rig_region("frustum", "front", (-30, 30), (-15, 15), (128, 256))
    lm = LaneMap()
    ids_at = {}
    for i in range(24):
        T = drive.pose(i)
        obs = _observe(drive, rng, region, i, miss=0.0, noise=0.1)
        lm.update([Obs(o.cls, 0.6, to_frame(o.points, T)) for o in obs], region_in_map(region, T))
        ids_at[i] = {t.id for t in lm.published()}
    # a lane seen from frame 4 on keeps its id to the end (it is extended, not replaced)
    assert ids_at[4] & ids_at[23]
    long = max(lm.published(), key=lambda t: t.hits)
    short = min(lm.published(), key=lambda t: t.hits)
    assert long.hits > short.hits and long.confidence > short.confidence
    assert long.confidence < 0.6 + 1e-9  # never above the detector's own score


def _mean_dist(a, b):
    from gsmap_hd.lane_map import project

    d, _, _, _ = project(a, b)
    return float(d.mean())


def test_a_line_across_a_lane_is_not_merged_into_it():
    """A divider seen crossing a boundary (an intersection) is its own lane, and the boundary keeps
    its shape; the same divider seen again along itself is merged."""
    lm = LaneMap()
    along = Obs(0, 0.8, np.stack([np.linspace(0, 30, 31), np.zeros(31)], 1))
    across = Obs(0, 0.8, np.stack([np.full(7, 15.0), np.linspace(-3, 3, 7)], 1))
    for _ in range(2):
        lm.update([along, across])
    tracks = lm.published()
    assert len(tracks) == 2
    straight = max(tracks, key=lambda t: t.length())
    np.testing.assert_allclose(straight.points[:, 1], 0.0, atol=1e-9)
    shifted = Obs(0, 0.8, along.points + [5.0, 0.3])
    lm.update([shifted])
    assert len(lm.published()) == 2 and max(t.length() for t in lm.published()) == pytest.approx(35, abs=1.0)
