"""Guards for behaviours a mutation-testing pass over the HD-map side found unguarded (eighth round):
the persistent lane map's resampling, overlap, association, publication, merging, support and ageing
rules, the region's clipping, the metrics' matching and AP arithmetic, inference post-processing and
hd_map_node's frame handling. Each test compares the component with an independent reference (the
rule a docstring or docs/hd_model.md states, a hand-built input with a hand-computed answer, a
numpy or shapely re-computation), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import math

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# gsmap_hd.lane_map


class _Obs:
    def __init__(self, cls, score, points):
        self.cls, self.score, self.points = cls, score, np.asarray(points, np.float64)


def _line(x0, x1, y=0.0):
    x = np.arange(x0, x1 + 0.5)
    return np.stack([x, np.full_like(x, y)], 1)


def test_resample_spacing_never_leaves_a_gap_wider_than_the_spacing():
    """'Points every spacing m along the polyline (both ends kept)': a 2.5 m line at 1 m spacing
    needs ceil(2.5 / 1) = 3 gaps of 0.833 m (4 points), not 2 gaps of 1.25 m."""
    from gsmap_hd.lane_map import resample_spacing

    out = resample_spacing(np.array([[0.0, 0.0], [2.5, 0.0]]), 1.0)
    np.testing.assert_allclose(out[:, 0], np.linspace(0.0, 2.5, 4))
    gaps = np.linalg.norm(np.diff(out, axis=0), axis=1)
    assert gaps.max() <= 1.0


def test_a_line_at_40_degrees_to_a_track_does_not_overlap_it():
    """line_overlap: overlapping points must run along the track, 'direction within ~30°': a line
    through the track at 40° (cos 0.77) has no overlap, one at 25° (cos 0.91) has."""
    from gsmap_hd.lane_map import line_overlap

    track = _line(0, 20)
    s = np.arange(-5.0, 6.0)
    for deg, overlaps in ((40.0, False), (25.0, True)):
        a = math.radians(deg)
        obs = np.stack([10 + s * math.cos(a), s * math.sin(a)], 1)
        ov, _ = line_overlap(obs, track, 1.2, 1.0)
        assert (ov > 0) == overlaps, (deg, ov)


def test_an_observation_point_within_half_a_spacing_past_the_tracks_end_overlaps_it():
    """line_overlap: each densified point stands for the ``spacing`` m of line around it, so a point
    projecting up to half a spacing beyond an end of the track still overlaps: the track x ∈ [0, 20]
    read 0.4 m earlier (x = −0.4 … 19.6, 21 points) overlaps over 21 × 1 m; 0.6 m earlier the first
    point no longer does (20 m)."""
    from gsmap_hd.lane_map import line_overlap

    track = _line(0, 20)
    for shift, want in ((-0.4, 21.0), (0.4, 21.0), (-0.6, 20.0), (0.6, 20.0)):
        ov, _ = line_overlap(track + [shift, 0.0], track, 1.2, 1.0)
        assert ov == want, shift


def test_an_observation_along_a_track_over_4_m_then_turning_away_is_associated():
    """'a line's points within 1.2 m of a track over ≥ 4 m': an observation running 0.3 m beside a
    20 m track from x = 0 to x = 4 and then turning off at a right angle overlaps it over 4 m and
    goes to that track (no new track)."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    lm.update([_Obs(0, 0.8, _line(0, 20))])
    turning = np.array([[0.0, 0.3], [4.0, 0.3], [4.0, 15.3]])  # 19 m: resampled exactly every 1 m
    stats = lm.update([_Obs(0, 0.8, turning)])
    assert (stats["matched"], stats["new"]) == (1, 0)
    assert lm.tracks[1].hits == 2


def test_a_line_exactly_min_length_long_is_published():
    """'lines under 3 m are not published': a 3 m line seen twice is published."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    for _ in range(2):
        lm.update([_Obs(0, 0.8, [[0.0, 0.0], [3.0, 0.0]])])
    (t,) = lm.published()
    assert t.length() == pytest.approx(3.0)


def test_the_frames_best_observation_of_a_lane_founds_its_track():
    """Observations are taken best first: two pieces of one lane in one frame (scores 0.5 and 0.9)
    make one track whose sighting carries the better score 0.9 (confidence 0.9 × (1 − 2^−1))."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    stats = lm.update([_Obs(0, 0.5, _line(0, 20)), _Obs(0, 0.9, _line(0, 20, 0.2))])
    assert (stats["new"], stats["matched"]) == (1, 1)
    (t,) = lm.tracks.values()
    assert t.hits == 1 and t.score_sum == pytest.approx(0.9)


def test_a_lane_in_two_pieces_in_one_frame_is_one_sighting():
    """'one sighting per frame, however many pieces': a lane reported twice in one frame has one
    hit and is not yet published (min_hits 2)."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    lm.update([_Obs(0, 0.8, _line(0, 20)), _Obs(0, 0.7, _line(0, 20, 0.1))])
    assert [t.hits for t in lm.tracks.values()] == [1]
    assert lm.published() == []


def test_a_crossing_of_three_points_is_not_a_ring_and_is_ignored():
    """Crossings are closed rings (last point = first): three points ([a, b, a]) are no ring and no
    track is made of them; the closed triangle (four points) is one."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    assert lm.update([_Obs(1, 0.8, [[0.0, 0.0], [4.0, 0.0], [0.0, 0.0]])])["new"] == 0
    assert lm.tracks == {}
    assert lm.update([_Obs(1, 0.8, [[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 0.0]])])["new"] == 1


def test_confirmed_lane_is_removed_only_after_max_misses_consecutive_misses():
    """'a confirmed one after 8 consecutive misses in view': 7 misses, a sighting, 7 misses again
    keep it (the sighting restarts the count); the 8th consecutive miss removes it."""
    from shapely.geometry import box

    from gsmap_hd.lane_map import LaneMap, LaneMapConfig

    lm = LaneMap(LaneMapConfig(min_support=0.0))
    region = box(-5, -5, 25, 5)
    lane = _Obs(0, 0.9, _line(0, 20))
    for _ in range(2):
        lm.update([lane], region)
    for _ in range(7):
        lm.update([], region)
    lm.update([lane], region)
    for _ in range(7):
        lm.update([], region)
    assert len(lm.tracks) == 1 and lm.tracks[1].misses == 7
    lm.update([], region)
    assert lm.tracks == {}


def test_a_9_m_observation_overlapping_a_track_over_a_third_of_it_is_associated():
    """'needs min_overlap m of overlap (or a third of its own length when shorter)': a 9 m
    observation running beside a track for 3 m (then turning away) goes to that track."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    lm.update([_Obs(0, 0.8, _line(0, 20))])
    turning = np.array([[0.0, 0.3], [3.0, 0.3], [3.0, 6.3]])  # 9 m: resampled exactly every 1 m
    stats = lm.update([_Obs(0, 0.8, turning)])
    assert (stats["matched"], stats["new"]) == (1, 0)


def _square(x0, x1, y0, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def test_a_crossing_overlapping_a_track_with_iou_exactly_min_iou_is_associated():
    """'crossings by IoU ≥ min_iou': squares [0, 2]² and [1, 3] × [0, 2] overlap with IoU 2 / 6;
    with min_iou = 1/3 the second sighting goes to the first's track."""
    from shapely.geometry import Polygon

    from gsmap_hd.lane_map import LaneMap, LaneMapConfig

    a, b = _square(0, 2, 0, 2), _square(1, 3, 0, 2)
    iou = Polygon(a).intersection(Polygon(b)).area / Polygon(a).union(Polygon(b)).area
    assert iou == 1 / 3
    lm = LaneMap(LaneMapConfig(min_iou=1 / 3))
    lm.update([_Obs(1, 0.8, a)])
    stats = lm.update([_Obs(1, 0.8, b)])
    assert (stats["matched"], stats["new"]) == (1, 0)


def test_track_vertices_beyond_the_observations_end_do_not_move():
    """'where a line overlaps, each track vertex moves towards its projection onto the observation':
    a 10 m observation 0.5 m beside a 20 m track pulls the track's first 10 m, and the vertices past
    its end (x ≥ 11, 1.1 m from its end point) stay on y = 0."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    lm.update([_Obs(0, 0.8, _line(0, 20))])
    lm.update([_Obs(0, 0.8, _line(0, 10, 0.5))])
    (t,) = lm.tracks.values()
    assert t.points[:, 0].max() == pytest.approx(20.0)
    far = t.points[:, 0] >= 11.0
    assert far.sum() >= 8
    np.testing.assert_array_equal(t.points[far, 1], 0.0)
    np.testing.assert_allclose(t.points[t.points[:, 0] <= 9.0, 1], 0.25)


def test_the_part_of_an_observation_crossing_the_track_does_not_count_as_seeing_it():
    """Support counts the vertices an observation overlapped along the track: an observation that
    runs beside the track to x = 6 and then crosses it at right angles saw x ≤ 5 (two frames now),
    not the vertices past the corner that the crossing leg passes within 1.2 m of (x ∈ (6.5, 7.2):
    only the first frame)."""
    from shapely.geometry import box

    from gsmap_hd.lane_map import LaneMap

    lm, region = LaneMap(), box(-5, -20, 25, 20)
    lm.update([_Obs(0, 0.8, _line(0, 20))], region)
    lm.update([_Obs(0, 0.8, [[0.0, 0.3], [6.0, 0.3], [6.0, -14.7]])], region)
    (t,) = lm.tracks.values()
    x = t.points[:, 0]
    np.testing.assert_array_equal(t.seen[x <= 5.0], 2.0)
    assert ((x > 6.5) & (x < 7.2)).any()
    np.testing.assert_array_equal(t.seen[x > 6.5], 1.0)


def test_a_well_seen_lane_still_follows_new_evidence_at_the_capped_weight():
    """'weight capped at max_weight so an old map still follows new evidence': after 20 sightings
    at y = 0 one observation at y = 0.9 moves the lane by 1 / (max_weight + 1) of the way: 0.1 m."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    for _ in range(20):
        lm.update([_Obs(0, 0.8, _line(0, 20))])
    lm.update([_Obs(0, 0.8, _line(0, 20, 0.9))])
    (t,) = lm.tracks.values()
    np.testing.assert_allclose(t.points[:, 1], 0.9 / (8.0 + 1.0), atol=1e-9)


def test_support_counts_every_frame_that_saw_and_covered_a_vertex():
    """'each line vertex counts the frames that saw it … and the frames whose cameras covered it':
    a lane seen in view in three frames has seen = covered = 3 at every vertex."""
    from shapely.geometry import box

    from gsmap_hd.lane_map import LaneMap

    lm, region = LaneMap(), box(-5, -5, 25, 5)
    for _ in range(3):
        lm.update([_Obs(0, 0.8, _line(0, 20))], region)
    (t,) = lm.tracks.values()
    np.testing.assert_array_equal(t.seen, 3.0)
    np.testing.assert_array_equal(t.covered, 3.0)


def test_an_observation_one_metre_past_the_tracks_start_extends_it():
    """'the observation's parts beyond the track's ends extend it': a track x ∈ [0, 20] seen again
    as x ∈ [−1, 21] becomes x ∈ [−1, 21]."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    lm.update([_Obs(0, 0.8, _line(0, 20))])
    lm.update([_Obs(0, 0.8, _line(-1, 21))])
    (t,) = lm.tracks.values()
    assert t.points[0, 0] == pytest.approx(-1.0) and t.points[-1, 0] == pytest.approx(21.0)


def test_a_well_seen_crossing_still_follows_new_evidence_at_the_capped_weight():
    """The running average's weight cap holds for crossings too: after 20 sightings of a square,
    one sighting shifted 0.9 m moves the ring by 0.9 / (max_weight + 1) = 0.1 m."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    sq = np.array(_square(0, 4, 0, 4), np.float64)
    for _ in range(20):
        lm.update([_Obs(1, 0.8, sq)])
    (t,) = lm.tracks.values()
    before = t.points.copy()
    lm.update([_Obs(1, 0.8, sq + [0.9, 0.0])])
    np.testing.assert_allclose(t.points - before, np.tile([0.1, 0.0], (len(before), 1)), atol=1e-9)


def test_two_lanes_that_grow_together_keep_the_older_id_and_the_better_seen_sightings():
    """'Tracks that come to overlap each other … are merged into the older id' with 'the sightings
    of the better-seen piece': lane 1 seen once, lane 2 seen five times, then a frame bridges them:
    one lane, id 1, with the sightings of lane 2 (5; lane 1 had 2 with the bridging frame)."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    lm.update([_Obs(0, 0.8, _line(0, 10))])
    for _ in range(5):
        lm.update([_Obs(0, 0.6, _line(15, 25))])
    assert sorted((t.id, t.hits) for t in lm.tracks.values()) == [(1, 1), (2, 5)]
    stats = lm.update([_Obs(0, 0.8, _line(5, 20))])
    assert stats["merged"] == 1
    (t,) = lm.tracks.values()
    assert t.id == 1 and t.hits == 5
    assert t.score_sum == pytest.approx(5 * 0.6)
    assert t.points[0, 0] == pytest.approx(0.0) and t.points[-1, 0] == pytest.approx(25.0)


def _cut_lane(seen, covered):
    """A LaneMap holding one 60 m lane (x = 0..60, 1 m apart, 20 sightings) with the given per-vertex
    counts, after one frame without observations or region (no new counts: only the cut)."""
    from gsmap_hd.lane_map import LaneMap, Track

    lm = LaneMap()
    x = np.arange(61.0)
    t = Track(1, 0, np.stack([x, np.zeros_like(x)], 1), np.ones(61), False, hits=20, score_sum=20 * 0.8)
    t.seen, t.covered, t.now = seen(x), covered(x), np.zeros(61)
    lm.tracks[1], lm.next_id = t, 2
    lm.update([])
    return sorted(lm.tracks.values(), key=lambda p: p.id)


def test_a_vertex_seen_in_exactly_min_support_of_its_coverings_is_kept():
    """'vertices seen in under 40 % of them are cut': seen 2 of 5 (exactly 40 %) stays."""
    pieces = _cut_lane(lambda x: np.where((x > 20) & (x < 30), 2.0, 5.0), lambda x: np.full_like(x, 5.0))
    assert [(p.id, len(p.points)) for p in pieces] == [(1, 61)]
    pieces = _cut_lane(lambda x: np.where((x > 20) & (x < 30), 1.0, 5.0), lambda x: np.full_like(x, 5.0))
    assert [(p.id, p.points[0, 0], p.points[-1, 0]) for p in pieces] == [(1, 30.0, 60.0), (2, 0.0, 20.0)]


def test_a_piece_cut_off_shorter_than_min_length_is_dropped():
    """'pieces under min_length go': a cut leaving three vertices (2 m) between two unseen stretches
    drops them; the 30 m piece keeps the id."""
    bad = lambda x: ((x >= 30) & (x < 40)) | (x > 42)  # noqa: E731
    pieces = _cut_lane(lambda x: np.where(bad(x), 0.0, 12.0), lambda x: np.full_like(x, 12.0))
    assert [(p.id, p.points[0, 0], p.points[-1, 0]) for p in pieces] == [(1, 0.0, 29.0)]


def test_a_piece_cut_off_a_lane_seen_this_frame_counts_no_miss():
    """'a track … that no observation matched counts a miss': a lane observed this frame and cut
    in the middle by its support gives two pieces, neither with a miss."""
    from shapely.geometry import box

    from gsmap_hd.lane_map import LaneMap, Track

    lm = LaneMap()
    x = np.arange(61.0)
    pts = np.stack([x, np.zeros_like(x)], 1)
    t = Track(1, 0, pts.copy(), np.ones(61), False, hits=20, score_sum=20 * 0.8)
    t.seen = np.where((x >= 30) & (x < 40), 0.0, 10.0)
    t.covered, t.now = np.full(61, 10.0), np.zeros(61)
    lm.tracks[1], lm.next_id = t, 2
    stats = lm.update([_Obs(0, 0.8, pts)], box(-5, -5, 65, 5))
    assert stats["split"] == 1
    pieces = sorted(lm.tracks.values(), key=lambda p: p.id)
    assert [(p.id, p.points[0, 0], p.points[-1, 0], p.misses) for p in pieces] == [
        (1, 0.0, 29.0, 0),
        (2, 40.0, 60.0, 0),
    ]


def test_a_track_exactly_half_in_view_counts_a_miss():
    """'a track that the cameras covered (≥ half its length inside the frame's region) but that no
    observation matched counts a miss': 10 of its 20 vertices in view is half."""
    from shapely.geometry import box

    from gsmap_hd.lane_map import LaneMap, LaneMapConfig

    lm = LaneMap(LaneMapConfig(min_support=0.0))  # (no trimming of the unseen half)
    lm.update([_Obs(0, 0.8, _line(0, 19))])
    region = box(-5, -5, 9.5, 5)
    lm.update([], region)
    assert lm.tracks[1].misses == 1
    lm.update([], region)
    assert lm.tracks == {}  # tentative: gone after tentative_misses (2)


def test_a_tentative_track_goes_after_tentative_age_frames_without_a_second_sighting():
    """'or tentative_age frames without a second sighting': seen in frame 1 only (never in view
    again), it is there after 5 more frames and gone after the 6th."""
    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    lm.update([_Obs(0, 0.8, _line(0, 19))])
    for _ in range(5):
        lm.update([])
    assert list(lm.tracks) == [1]
    assert lm.update([])["removed"] == 1
    assert lm.tracks == {}


# ------------------------------------------------------------------------------------------------
# gsmap_hd.lane_map_eval


def test_per_frame_baseline_scores_only_what_the_map_fuses():
    """score(): '(a) the per-frame predictions the map fuses (score ≥ its min_score)': a perfect
    divider predicted at 0.2 (under min_score 0.3) is not in the baseline (mAP 0); at 0.3 it is
    (divider AP 1 at every threshold, mAP 1/3)."""
    from shapely.geometry import box

    from gsmap_hd.lane_map import LaneMap
    from gsmap_hd.lane_map_eval import FusedDrive, score
    from gsmap_hd.region import Region

    line = np.stack([np.linspace(2.0, 20.0, 10), np.zeros(10)], 1)
    for s, want in ((0.2, 0.0), (0.3, 1.0 / 3.0)):
        fd = FusedDrive(
            poses=[np.eye(4)],
            regions=[Region("patch", box(-30, -15, 30, 15))],
            frame_preds=[[(0, s, line)]],
            snapshots={1: []},
            lane_map=LaneMap(),
            gt_map=[(0, line)],
        )
        out = score(fd)
        assert out["per_frame_mAP"] == pytest.approx(want), s
        assert out["fused_mAP"] == 0.0


# ------------------------------------------------------------------------------------------------
# gsmap_hd.region


def test_clipping_a_convex_polygon_to_a_half_plane_keeps_vertices_on_its_border():
    """Sutherland–Hodgman 'the part of convex polygon poly where a·x + b·y ≥ c' (a closed half-plane):
    the square [0, 2]² clipped to x ≥ 0 is the whole square, clipped to x ≥ 1 its right half — the
    same areas as shapely's intersection."""
    from shapely.geometry import Polygon, box

    from gsmap_hd.region import _clip_halfplane

    sq = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    for c in (0.0, 1.0):
        out = _clip_halfplane(sq, 1.0, 0.0, c)
        want = Polygon(sq).intersection(box(c, -10, 10, 10))
        assert len(out) == 4
        assert Polygon(out).area == pytest.approx(want.area)
        assert Polygon(out).equals(want)


def test_a_level_camera_whose_top_edge_is_the_horizon_sees_the_ground_ahead():
    """camera_footprint with an image-edge plane parallel to the ground (the top image edge exactly
    on the horizon: cy = −½ for a level camera) keeps the ground below it: the footprint agrees with
    projecting ground points through the pinhole (numpy), away from its border."""
    from shapely import contains_xy
    from shapely.geometry import Polygon

    from gsmap_hd.region import camera_footprint

    w, h, f = 64, 48, 100.0
    K = np.array([[f, 0, (w - 1) / 2], [0, f, -0.5], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # optical (x right, y down, z fwd) → base_link
    T[:3, 3] = [0, 0, 1.5]
    fp = camera_footprint(K, T, w, h, (-30, 30), (-15, 15))
    assert len(fp) >= 3
    g = np.stack(np.meshgrid(np.linspace(-29.75, 29.75, 120), np.linspace(-14.75, 14.75, 60)), -1).reshape(
        -1, 2
    )
    pc = (np.c_[g, np.zeros(len(g))] - T[:3, 3]) @ T[:3, :3]  # camera frame
    z = pc[:, 2]
    u = f * pc[:, 0] / np.where(z > 0, z, 1) + (w - 1) / 2
    v = f * pc[:, 1] / np.where(z > 0, z, 1) - 0.5
    margin = np.minimum.reduce([u + 0.5, w - 0.5 - u, v + 0.5, h - 0.5 - v])
    inside = contains_xy(Polygon(fp), g[:, 0], g[:, 1])
    sure_in, sure_out = (z > 0) & (margin > 1.0), (z <= 0) | (margin < -1.0)
    assert sure_in.sum() > 100
    assert inside[sure_in].all() and not inside[sure_out].any()


def test_a_small_piece_of_a_crossing_inside_the_region_is_kept():
    """MapTR's rule: a crossing polygon is intersected with the region, one closed ring per part: a
    1 m square straddling the patch's front edge leaves a 0.5 m² ring (shapely's intersection)."""
    from shapely.geometry import Polygon

    from gsmap_hd.region import clip_element, make_region

    patch = make_region("patch", (-30, 30), (-15, 15))
    sq = np.array(_square(29.5, 30.5, 0, 1))
    pieces = clip_element(sq, True, patch)
    assert len(pieces) == 1
    assert Polygon(pieces[0]).area == pytest.approx(0.5)
    assert Polygon(pieces[0]).equals(Polygon(sq).intersection(patch.polygon))


def test_a_line_between_two_arms_of_a_non_convex_region_is_cut_at_the_notch():
    """'a polyline is cut where it leaves the region': an L-shaped region, a segment from one arm to
    the other through the notch — two pieces, the same as shapely's line ∩ polygon."""
    from shapely.geometry import LineString

    from gsmap_hd.region import Region, clip_element

    L = Region.from_coords("file", [[[0, 0], [10, 0], [10, 2], [2, 2], [2, 10], [0, 10], [0, 0]]])
    seg = np.array([[1.0, 9.0], [9.0, 1.0]])
    pieces = clip_element(seg, False, L)
    want = LineString(seg).intersection(L.polygon)
    assert len(pieces) == len(want.geoms) == 2
    got = sorted(float(np.linalg.norm(p[-1] - p[0])) for p in pieces)
    assert got == pytest.approx(sorted(g.length for g in want.geoms))


def test_a_crossing_given_open_inside_the_region_comes_back_closed():
    """clip_element: 'polygons as closed rings': four corners without the closing point, all inside
    the patch, come back as the ring (five points, last = first)."""
    from gsmap_hd.region import clip_element, make_region

    patch = make_region("patch", (-30, 30), (-15, 15))
    open_ring = np.array(_square(0, 4, 0, 2)[:4], np.float64)
    (ring,) = clip_element(open_ring, True, patch)
    np.testing.assert_array_equal(ring, np.vstack([open_ring, open_ring[:1]]))


# ------------------------------------------------------------------------------------------------
# gsmap_hd.metrics


def test_rep103_points_are_rotated_not_mirrored_into_the_maptr_frame():
    """FRAMES: 'rep103: ROS base_link, x forward, y left; rotated into "maptr" (x' = −y, y' = x)':
    (10, 5) → (−5, 10), (3, −2) → (2, 3); class and score kept."""
    from gsmap_hd.eval_io import Vector
    from gsmap_hd.metrics import to_maptr_frame

    v = Vector(np.array([[10.0, 5.0], [3.0, -2.0]]), 2, 0.7)
    ((out,),) = to_maptr_frame([[v]], "rep103")
    np.testing.assert_array_equal(out.pts, [[-5.0, 10.0], [2.0, 3.0]])
    assert (out.cls, out.score) == (2, 0.7)


# ------------------------------------------------------------------------------------------------
# gsmap_hd.matching


def test_matching_uses_the_raster_iou_cost():
    """Instance cost 'cls_cost·focal + pts_cost·L1 + iou_cost·(1 − IoU(rendered masks))': with the
    class and point costs at 0 the IoU term alone decides — each prediction goes to the line its
    Gaussians lie on (swapped order: prediction 0 on GT 1, prediction 1 on GT 0)."""
    import torch

    from gsmap_hd.gaussians2d import BEVGrid, gaussians_from_points
    from gsmap_hd.matching import build_targets, cost_grid, hungarian_match
    from gsmap_hd.model_config import LossConfig, ModelConfig

    m = ModelConfig(num_points=8, num_instances=2)
    loss = LossConfig(raster_res=1.0, iou_cost_res=2.0, cls_cost=0.0, pts_cost=0.0, iou_cost=1.0)
    a = np.stack([np.linspace(-20, 20, 8), np.full(8, 6.0)], 1)
    b = np.stack([np.linspace(-20, 20, 8), np.full(8, -6.0)], 1)
    t = build_targets([(0, a), (0, b)], m, loss)
    params = gaussians_from_points(torch.tensor(np.stack([b, a]), dtype=torch.float32), 2.0)
    logits = torch.zeros(2, 3)
    grid = BEVGrid(m.x_range, m.y_range, m.bev_h, m.bev_w)
    rows, cols, _ = hungarian_match(logits, params, t, grid, cost_grid(m, loss), loss)
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 1: 0}


def test_a_merged_lane_dates_from_its_earliest_part():
    """Merging keeps the older id and the earliest first sighting of the two parts (first_frame =
    min): a tentative piece later cut off the merged lane ages from there — 'tentative_age frames
    without a second sighting' counted from frame 1, not from frame 5 when the id's own part began."""
    from gsmap_hd.lane_map import LaneMap, Track

    lm = LaneMap()
    lm.frame, lm.next_id = 5, 4
    keep = Track(2, 0, _line(0, 10), np.ones(11), False, hits=1, first_frame=5, last_frame=5, score_sum=0.8)
    keep.seen, keep.covered, keep.now = np.full(11, 5.0), np.full(11, 5.0), np.zeros(11)
    # a piece cut off an older lane: first seen in frame 1; x 10..13 covered often but never seen
    # (cut away this frame), x 14..20 covered once (kept, as a tentative piece with one sighting)
    gone = Track(3, 0, _line(10, 20), np.ones(11), False, hits=1, first_frame=1, last_frame=4, score_sum=0.8)
    x = gone.points[:, 0]
    gone.seen, gone.covered, gone.now = np.zeros(11), np.where(x < 14, 10.0, 1.0), np.zeros(11)
    lm.tracks = {2: keep, 3: gone}
    stats = lm.update([_Obs(0, 0.8, _line(0, 20))])  # frame 6: bridges both
    assert (stats["merged"], stats["split"]) == (1, 1)
    assert sorted((t.id, t.hits, t.first_frame) for t in lm.tracks.values()) == [(2, 2, 1), (4, 1, 1)]
    assert lm.update([])["removed"] == 1  # frame 7: 7 − 1 = tentative_age
    assert sorted(lm.tracks) == [2]


# ------------------------------------------------------------------------------------------------
# gsmap_hd.infer


def test_an_element_scored_exactly_the_threshold_is_kept():
    """'elements below this confidence are not published' (hd_map_node.score_threshold, passed to
    postprocess): a logit of 0 scores sigmoid(0) = 0.5, kept at threshold 0.5, dropped above it."""
    import torch

    from gsmap_hd.infer import postprocess

    logits = torch.tensor([[0.0, -9.0, -9.0]])
    params = torch.zeros(1, 4, 5)
    params[0, :, 0] = torch.arange(4.0)
    (e,) = postprocess(logits, params, score_threshold=0.5)
    assert (e.cls, e.score) == (0, 0.5)
    assert postprocess(logits, params, score_threshold=float(np.nextafter(0.5, 1.0))) == []


def test_a_clipped_element_keeps_only_the_gaussians_inside_the_region():
    """clip_to_region: 'one element per piece, with its score and the Gaussians whose centres lie in
    the region': a divider from x = −9.5 to 10.5 clipped to the forward half keeps the piece
    x ∈ [0, 10.5] and the Gaussians at x > 0 (6 of 11)."""
    from gsmap_hd.infer import Element, clip_to_region
    from gsmap_hd.region import make_region

    x = np.linspace(-9.5, 10.5, 11)
    g = np.stack([x, np.full(11, 1.0), np.full(11, 0.5), np.full(11, 0.2), np.zeros(11)], 1)
    e = Element(0, 0.8, g[:, :2].copy(), g)
    (piece,) = clip_to_region([e], make_region("forward_half", (-30, 30), (-15, 15)))
    assert piece.score == 0.8 and piece.cls == 0
    np.testing.assert_allclose(piece.points[[0, -1], 0], [0.0, 10.5])
    np.testing.assert_array_equal(piece.gaussians, g[x > 0])


def test_a_mirroring_extrinsic_is_refused_as_not_a_rotation():
    """'Bad input raises HDInputError (… a non-rotation extrinsic …)': an orthonormal matrix with
    determinant −1 (a mirror) is no rotation; the identity passes."""
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.infer import check_inputs

    cam = {"K": [[50.0, 0, 15.5], [0, 50.0, 11.5], [0, 0, 1]], "width": 32, "height": 24}
    im = np.zeros((24, 32, 3), np.uint8)
    mirror = np.diag([1.0, 1.0, -1.0, 1.0])
    assert np.allclose(mirror[:3, :3] @ mirror[:3, :3].T, np.eye(3))
    with pytest.raises(HDInputError, match="not a rotation"):
        check_inputs([im], [cam], [mirror])
    K, T, _ = check_inputs([im], [cam], [np.eye(4)])
    assert K.shape == (1, 3, 3) and T.shape == (1, 4, 4)


def test_a_zero_focal_length_is_refused():
    """_intrinsics: 'focal lengths must be positive': fx = 0 (or fy = 0) is refused."""
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.infer import check_inputs

    im = np.zeros((24, 32, 3), np.uint8)
    for fx, fy in ((0.0, 50.0), (50.0, 0.0)):
        cam = {"K": [[fx, 0, 15.5], [0, fy, 11.5], [0, 0, 1]], "width": 32, "height": 24}
        with pytest.raises(HDInputError, match="focal lengths must be positive"):
            check_inputs([im], [cam], [np.eye(4)])


# ------------------------------------------------------------------------------------------------
# hd_map_node


@pytest.fixture(scope="module")
def hd_world_bag(tmp_path_factory):
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    out = tmp_path_factory.mktemp("hd8") / "world"
    write_bag(Drive.make(3, 3, "front", (256, 144)), out, progress=False)
    return out


def _hd_node(bag_path, before=None, **node):
    """The real HDMapNode on a ReplayBus with every message of the bag injected (``before(node)``
    called first); returns the node, the bus, the bag's messages and what it published on
    ~/lanes_json and ~/lanes_delta."""
    from test_guards_survivors22 import _bag_messages, _node

    hd, bus, out = _node(**node)
    msgs = _bag_messages(bag_path)
    if before is not None:
        before(hd)
    for topic, stamp, msg in msgs:
        bus.inject(topic, msg, stamp)
    return hd, bus, msgs, out["docs"], out["deltas"]


def test_hd_map_node_drops_a_frame_stamped_as_the_previous_one_as_not_after_it(hd_world_bag):
    """on_frame: a frame whose stamp is not after the previous frame's is dropped as such
    (dropped["frames"]), not as rate-limited, and nothing is published for it."""
    hd, bus, msgs, docs, _ = _hd_node(hd_world_bag)
    n = len(docs)
    assert n == 3 and not hd.diag.dropped
    topic, stamp, msg = [m for m in msgs if m[0] == hd.cameras[0]][-1]
    bus.inject(topic, msg, stamp)
    assert len(docs) == n
    assert dict(hd.diag.dropped) == {"frames": 1}


def _fused_mean_scores(hd, docs):
    published = [v["confidence_level"] for d in docs for v in d["vectors"]]
    return min(published), sorted(t.score_sum / t.hits for t in hd.lane_map.tracks.values())


def test_hd_map_node_fuses_every_prediction_it_publishes(hd_world_bag):
    """score_threshold: 'elements below this confidence are not published' — and the lane map fuses
    the frame's (published) predictions: at 0.05 the predictions scored under the lane map's default
    0.3 are published and fused too (tracks of mean score < 0.3)."""
    hd, _, _, docs, _ = _hd_node(hd_world_bag, score_threshold=0.05)
    lowest, fused = _fused_mean_scores(hd, docs)
    assert 0.05 <= lowest < 0.3
    assert hd.lane_map.config.min_score == 0.05
    assert fused[0] < 0.3


def test_hd_map_node_threshold_set_at_run_time_reaches_the_lane_map(hd_world_bag):
    """score_threshold is a runtime parameter: lowered from 0.3 to 0.05 before the frames, the
    predictions scored under 0.3 are published and fused as at start-up."""

    def lower(hd):
        hd.parameters_changed("hd_map_node", {"score_threshold": 0.05})

    hd, _, _, docs, _ = _hd_node(hd_world_bag, before=lower)
    lowest, fused = _fused_mean_scores(hd, docs)
    assert 0.05 <= lowest < 0.3
    assert hd.lane_map.config.min_score == 0.05
    assert fused[0] < 0.3


def _snapshots(deltas):
    from gs_map_share.lanes import decode_lanes

    flags, state = [], None
    for data in deltas:
        header, state = decode_lanes(data, state)
        flags.append(header.is_snapshot)
    return flags


def test_hd_map_node_sends_a_snapshot_every_n_th_lane_container(hd_world_bag):
    """snapshot_every: 'every n-th lane container is a snapshot (late joiners)': with n = 2 the
    1st and 3rd of three containers are snapshots, the 2nd a delta; with n = 3 only the 1st."""
    for n, want in ((2, [True, False, True]), (3, [True, False, False])):
        _, _, _, _, deltas = _hd_node(hd_world_bag, snapshot_every=n)
        assert _snapshots(deltas) == want, n


def test_hd_map_node_refuses_more_than_six_cameras():
    """'one to six cameras': seven camera topics are a configuration error (refused as the config
    is built, before any node starts: test_param_validation.py runs it through every runtime)."""
    from gs_mapping.errors import GsMappingError
    from gs_mapping.nodes.hd_map_node import HDMapNodeConfig

    with pytest.raises(GsMappingError, match="need 1 to 6 cameras, got 7"):
        HDMapNodeConfig(device="cpu", camera_topics=[f"/cameras/c{i}/image_raw" for i in range(7)])


# ------------------------------------------------------------------------------------------------
# round two: lane map rings, drives, raster detections, hd-predict and Predictor arguments


def test_a_crossing_seen_from_another_start_vertex_and_reversed_keeps_its_shape():
    """'Rings are averaged vertex by vertex in their best-aligned order': the same square given
    from another corner and the other way round leaves the track's ring where it was (area 16)."""
    from shapely.geometry import Polygon

    from gsmap_hd.lane_map import LaneMap

    lm = LaneMap()
    sq = np.array(_square(0, 4, 0, 4), np.float64)
    lm.update([_Obs(1, 0.8, sq)])
    (t,) = lm.tracks.values()
    before = t.points.copy()
    other = np.array([[4.0, 4.0], [4.0, 0.0], [0.0, 0.0], [0.0, 4.0], [4.0, 4.0]])  # reversed, from (4, 4)
    assert Polygon(other).equals(Polygon(sq))
    lm.update([_Obs(1, 0.8, other)])
    assert t.hits == 2
    assert Polygon(t.points).area == pytest.approx(16.0)
    assert {tuple(p) for p in np.round(t.points, 9)} == {tuple(p) for p in np.round(before, 9)}


def test_fuse_drive_stops_at_the_end_of_the_drive():
    """fuse_drive(frames=n): at most the drive's frames — asking for 5 of a 2-frame drive fuses 2
    (one pose, region and set of predictions per frame, the final snapshot at 2)."""
    import torch

    from gs_mapping.world import Drive
    from gsmap_hd.infer import Predictor
    from gsmap_hd.lane_map_eval import fuse_drive
    from gsmap_hd.model import GSMapModel
    from gsmap_hd.model_config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(
        bev_h=20, bev_w=10, image_size=[32, 64], small_channels=[8, 16, 16], embed_dim=32,
        num_instances=6, num_points=6, num_layers=2, num_heads=4, ffn_dim=32,
    )  # fmt: skip
    drive = Drive.make(3, 2, "front", (64, 32))
    fd = fuse_drive(Predictor(GSMapModel(cfg)), drive, frames=5)
    assert len(fd.poses) == len(fd.regions) == len(fd.frame_preds) == 2
    assert list(fd.snapshots) == [2]


def test_raster_eval_takes_at_most_max_dets_detections_per_frame_the_best_scored():
    """MapVR: 'per frame and class at most 100, the highest-scoring (stable sort)': with max_dets 2
    of three detections (0.5, 0.9, 0.7) the 0.9 and 0.7 ones are kept."""
    from gsmap_hd.metrics import raster

    line = np.array([[0.0, -10.0], [0.0, 10.0]])
    dts = [line + [k, 0.0] for k in (0.0, 3.0, 6.0)]
    ev = raster.evaluate_frame_class([line], dts, [0.5, 0.9, 0.7], False, raster.LINE_IOU_THRS, max_dets=2)
    np.testing.assert_array_equal(ev.scores, [0.9, 0.7])
    assert ev.dt_matches.shape == (len(raster.LINE_IOU_THRS), 2)


def test_hd_predict_refuses_max_frames_0_before_writing(hd_world_bag, tmp_path):
    """predict_bag: 'max_frames must be at least 1 (or none: every frame)': 0 is refused and no
    prediction file is written."""
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.predict_bag import predict_bag

    out = tmp_path / "pred.json"
    with pytest.raises(HDInputError, match="max_frames must be at least 1"):
        predict_bag(hd_world_bag, out, max_frames=0, progress=False)
    assert not out.exists()


def _tiny_model():
    import torch

    from gsmap_hd.model import GSMapModel
    from gsmap_hd.model_config import ModelConfig

    torch.manual_seed(0)
    return GSMapModel(
        ModelConfig(
            bev_h=20, bev_w=10, image_size=[32, 64], small_channels=[8, 16, 16], embed_dim=32,
            num_instances=6, num_points=6, num_layers=2, num_heads=4, ffn_dim=32,
        )
    )  # fmt: skip


def test_predictor_takes_score_threshold_1_and_refuses_max_elements_0():
    """Predictor: 'score threshold must be a number in [0, 1]' (1 included) and 'max_elements must
    be at least 1' (0 refused)."""
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.infer import Predictor

    model = _tiny_model()
    assert Predictor(model, score_threshold=1.0).score_threshold == 1.0
    assert Predictor(model, max_elements=1).max_elements == 1
    with pytest.raises(HDInputError, match="max_elements must be at least 1"):
        Predictor(model, max_elements=0)
    with pytest.raises(HDInputError, match="score threshold"):
        Predictor(model, score_threshold=float(np.nextafter(1.0, 2.0)))


def test_hd_eval_refuses_a_self_intersecting_region_by_name():
    """clip_documents: a result frame's region that crosses itself (a bow tie) is refused as 'not a
    valid polygon' (an HDMapError naming the frame), not left to fail inside GEOS."""
    from gsmap_hd.errors import HDMapError
    from gsmap_hd.region import clip_documents

    bowtie = [[[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0], [0.0, 0.0]]]
    res = [
        {"vectors": [{"pts": [[1.0, 1.0], [9.0, 1.0]], "type": 0, "confidence_level": 0.9}], "region": bowtie}
    ]
    gts = [{"vectors": [{"pts": [[1.0, 1.0], [9.0, 1.0]], "type": 0}]}]
    with pytest.raises(HDMapError, match=r"results\[0\]\.region: not a valid polygon"):
        clip_documents(res, gts, "pred.json")


# ------------------------------------------------------------------------------------------------
# a bug this pass found (fixed)


def test_hd_map_node_with_snapshot_every_1_sends_only_snapshots(hd_world_bag):
    """snapshot_every (range 1..100000): 'every n-th lane container is a snapshot': n = 1 — every
    container is a snapshot (a late joiner can start from any of them). It was the first only."""
    _, _, _, _, deltas = _hd_node(hd_world_bag, snapshot_every=1)
    assert len(deltas) == 3
    assert _snapshots(deltas) == [True, True, True]
