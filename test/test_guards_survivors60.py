"""Guards for behaviours a mutation survey (session 33) of gsmap_hd's augmentation, lane-map
evaluation, world training data, evaluation-file reader, 2D Gaussians and backbones found unguarded:
each test compares with an independent reference (the GT of the world in another frame, a drive fused
over fewer frames, MapTR's Chamfer AP worked by hand, a Gaussian's covariance and density written out
from its definition, the geometry of known points), so that breaking the line it guards makes it
fail. Needs torch (each test skips without it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# gsmap_hd.lane_map_eval


@pytest.fixture(scope="module")
def shipped_front():
    pytest.importorskip("torch")
    from gsmap_hd.infer import Predictor
    from gsmap_hd.predict_bag import shipped_checkpoint

    return Predictor.from_checkpoint(shipped_checkpoint(1))


def _drive(frames):
    from gs_mapping.world import Drive

    return Drive.make(3, frames, "front", (256, 144))


def test_fused_drive_gt_map_is_the_worlds_map_in_the_map_frame(shipped_front):
    """fuse_drive: gt_map is the world's global GT (map frame, x, y): brought into frame i's
    base_link with the drive's pose, every point of the world's own ego-frame GT for that frame
    (``Frame.lanes``, clipped to the BEV window by the world) lies on a gt_map element of its class."""
    from shapely.geometry import LineString

    from gsmap_hd.lane_map import to_frame
    from gsmap_hd.lane_map_eval import fuse_drive

    drive = _drive(3)
    fd = fuse_drive(shipped_front, drive)
    checked = 0
    for i in range(3):
        fr = drive.frame(i)
        T_base_map = np.linalg.inv(fd.poses[i])
        gt = [(c, LineString(to_frame(p, T_base_map))) for c, p in fd.gt_map]
        for e in fr.lanes:
            for q in np.asarray(e.pts, np.float64)[:, :2]:
                d = min(g.distance(LineString([q, q + 1e-9])) for c, g in gt if c == int(e.cls))
                assert d < 1e-6, (i, int(e.cls), q, d)
                checked += 1
    assert checked > 20


def test_fused_map_lies_in_the_map_frame_where_the_gt_map_is(shipped_front):
    """fuse_drive fuses 'in the map frame with the drive's true poses': the vehicle starts 40 m
    along the map's x, so the shipped front model's dividers and boundaries, fused over 4 frames,
    score as well as the frames themselves do against the global GT (AP > 0.5 for both classes);
    left in base_link they would miss the GT by 40 m (AP 0)."""
    from gsmap_hd.lane_map_eval import fuse_drive, score

    fd = fuse_drive(shipped_front, _drive(4))
    assert abs(fd.poses[0][0, 3]) > 10  # (the test needs a pose far from identity)
    out = score(fd)
    assert out["per_frame_class_ap"][0] > 0.5 and out["per_frame_class_ap"][2] > 0.5
    assert out["fused_class_ap"][0] > 0.5 and out["fused_class_ap"][2] > 0.5


def test_snapshot_at_n_and_its_score_are_those_of_a_drive_fused_over_n_frames(shipped_front):
    """fuse_drive(snapshot_every=2) over 5 frames keeps the map after 2, 4 and 5 frames ('the map after
    n frames'), and score(fd, n=2) is the score of the same drive fused over its first 2 frames
    only: the same map, the same windows (frames 0..1), the same numbers."""
    from gsmap_hd.lane_map_eval import fuse_drive, score

    drive = _drive(5)
    fd = fuse_drive(shipped_front, drive, snapshot_every=2)
    assert sorted(fd.snapshots) == [2, 4, 5]
    fd2 = fuse_drive(shipped_front, drive, frames=2)
    assert len(fd.snapshots[2]) == len(fd2.snapshots[2]) > 0
    for (c, s, p), (c2, s2, p2) in zip(fd.snapshots[2], fd2.snapshots[2], strict=True):
        assert c == c2 and s == pytest.approx(s2)
        np.testing.assert_allclose(p, p2)
    assert score(fd, 2) == score(fd2)
    assert score(fd, 2)["frames"] == 2 and score(fd)["frames"] == 5


def test_per_frame_baseline_of_each_frame_is_clipped_to_that_frames_region():
    """score(): each frame's predictions are clipped to its own region. Frame 0 sees the front half
    (x ≥ 0) and predicts the divider ahead; frame 1 sees the rear half and predicts the divider
    behind. Both are exact: divider AP 1 (2 TPs of 2 GT windows), mAP ⅓ by hand. Clipped to frame
    0's region, frame 1's detection would vanish: recall ½, AP ½."""
    pytest.importorskip("torch")
    from shapely.geometry import box

    from gsmap_hd.lane_map import LaneMap
    from gsmap_hd.lane_map_eval import FusedDrive, score
    from gsmap_hd.region import Region

    ahead = np.stack([np.linspace(2.0, 20.0, 10), np.zeros(10)], 1)
    behind = np.stack([np.linspace(-20.0, -2.0, 10), np.full(10, 3.0)], 1)
    fd = FusedDrive(
        poses=[np.eye(4), np.eye(4)],
        regions=[Region("front", box(0, -15, 30, 15)), Region("rear", box(-30, -15, 0, 15))],
        frame_preds=[[(0, 0.5, ahead)], [(0, 0.5, behind)]],
        snapshots={2: []},
        lane_map=LaneMap(),
        gt_map=[(0, ahead), (0, behind)],
    )
    out = score(fd)
    assert out["per_frame_class_ap"] == pytest.approx([1.0, 0.0, 0.0])
    assert out["per_frame_mAP"] == pytest.approx(1.0 / 3.0)


# ------------------------------------------------------------------------------------------------
# gsmap_hd.world_data


def test_samples_of_a_data_seed_are_distinct_frames_across_drives_and_seeds():
    """world_sample: frame i of a data seed is frame i % 24 of drive i // 24, each drive its own
    world seeded from the data seed and the drive number: the first frames of drives 0 and 1, the
    last frame of drive 0, and the first frame of data seed 1 are four different pictures."""
    pytest.importorskip("torch")
    from gsmap_hd.world_data import world_sample

    ims = {
        k: world_sample(*k, "front", (64, 32)).images.astype(int) for k in ((0, 0), (0, 23), (0, 24), (1, 0))
    }
    keys = list(ims)
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            assert np.abs(ims[keys[a]] - ims[keys[b]]).mean() > 5, (keys[a], keys[b])


def test_world_sample_lanes_cover_an_asymmetric_patch():
    """world_sample: 'the lanes cover the patch x_range × y_range': a patch reaching 45 m behind the
    car (x_range (−45, 30)) gets GT out to x = −45 (the world's window holds the whole patch), not
    only out to the 30 m of its forward edge."""
    pytest.importorskip("torch")
    from gsmap_hd.world_data import world_sample

    s = world_sample(0, 5, "front", (64, 32), x_range=(-45.0, 30.0))
    assert min(p[:, 0].min() for _, p in s.elements) == pytest.approx(-45.0, abs=0.5)


# ------------------------------------------------------------------------------------------------
# gsmap_hd.eval_io


def test_a_point_with_three_coordinates_is_refused_not_reread_as_pairs():
    """eval_io: a point is '[x, y]'. Points [x, y, z] (a 3D export) are refused naming the first one,
    not flattened and re-read as pairs ([[1, 2, 0], [3, 4, 0]] would become (1, 2), (0, 3), (4, 0):
    a different line)."""
    pytest.importorskip("torch")
    from gsmap_hd.errors import HDMapError
    from gsmap_hd.eval_io import parse_vector

    for need_score in (False, True):
        v = {"pts": [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0]], "type": 0, "confidence_level": 0.5}
        with pytest.raises(HDMapError, match=r"v\.pts\[0\]: expected \[x, y\] numbers"):
            parse_vector(v, "v", need_score)


def test_a_coordinate_of_exactly_the_limit_is_accepted_and_one_beyond_it_refused(tmp_path):
    """eval_io: coordinates 'beyond' MAX_ABS_COORD (1e5 m) are refused: ±1e5 itself is a valid
    coordinate (read back as given), 100000.5 is refused naming the point."""
    pytest.importorskip("torch")
    from gsmap_hd.errors import HDMapError
    from gsmap_hd.eval_io import load_submission

    doc = {
        "results": [
            {"vectors": [{"pts": [[-1.0e5, 0.0], [1.0e5, 2.0]], "type": 2, "confidence_level": 0.5}]}
        ],
        "GTs": [{"vectors": [{"pts": [[-1.0e5, 0.0], [1.0e5, 2.0]], "type": 2}]}],
    }
    f = tmp_path / "ok.json"
    f.write_text(json.dumps(doc))
    res, gts = load_submission(f)
    np.testing.assert_array_equal(gts[0][0].pts, [[-1.0e5, 0.0], [1.0e5, 2.0]])
    np.testing.assert_array_equal(res[0][0].pts, gts[0][0].pts)
    doc["GTs"][0]["vectors"][0]["pts"][1][0] = 100000.5
    f.write_text(json.dumps(doc))
    with pytest.raises(HDMapError, match=r"GTs\[0\]\.vectors\[0\]\.pts\[1\]: coordinate beyond"):
        load_submission(f)


def test_sample_tokens_are_compared_only_when_both_frames_carry_one():
    """eval_io: 'when both frames at one position carry a sample_token they must agree': a token on
    the results side only (or the GT side only) is accepted; two different tokens are refused,
    naming the frame and both tokens."""
    pytest.importorskip("torch")
    from gsmap_hd.errors import HDMapError
    from gsmap_hd.eval_io import parse_submission

    v = {"pts": [[0.0, 1.0], [0.0, 5.0]], "type": 0}
    r = {"vectors": [dict(v, confidence_level=0.5)]}
    for res, gt in (
        (dict(r, sample_token="a"), {"vectors": [v]}),
        (r, {"vectors": [v], "sample_token": "b"}),
    ):
        results, gts = parse_submission({"results": [res], "GTs": [gt]})
        np.testing.assert_array_equal(results[0][0].pts, gts[0][0].pts)
    with pytest.raises(HDMapError, match=r"frame 0: results sample_token 'a' != GTs 'b'"):
        parse_submission(
            {"results": [dict(r, sample_token="a")], "GTs": [{"vectors": [v], "sample_token": "b"}]}
        )


def test_a_json_file_nested_too_deeply_is_one_named_error(tmp_path):
    """read_json: '[' × 100,000 is JSON the parser cannot descend: an HDMapError naming the file
    ('nested too deeply'), not a RecursionError traceback."""
    pytest.importorskip("torch")
    from gsmap_hd.errors import HDMapError
    from gsmap_hd.eval_io import load_submission

    f = tmp_path / "deep.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(HDMapError, match=r"deep\.json: JSON nested too deeply"):
        load_submission(f)


def test_integers_a_float_holds_are_numbers_beyond_32_bits():
    """eval_io: 'a JSON number a float holds': an integer confidence of 2**40 is a score of 2**40,
    and an integer coordinate of 5,000,000,000 is refused as beyond ±1e5 m (a number, wrong units),
    not as 'not a number'."""
    pytest.importorskip("torch")
    from gsmap_hd.errors import HDMapError
    from gsmap_hd.eval_io import parse_vector

    v = parse_vector({"pts": [[0, 1], [0, 5]], "type": 0, "confidence_level": 2**40}, "v", True)
    assert v.score == float(2**40)
    with pytest.raises(HDMapError, match=r"v\.pts\[1\]: coordinate beyond"):
        parse_vector({"pts": [[0, 1], [5_000_000_000, 5]], "type": 0}, "v", False)


def test_sample_i_is_frame_i_mod_24_of_its_drive_at_2_hz():
    """world_data: sample i is frame i % 24 of drive i // 24, at 2 Hz; docs/world.md: the vehicle
    drives at 8 m/s and 'frames at --rate Hz starting 40 m into the route'. So the start of the road
    lies 40 + 4·(i % 24) m behind the car in sample i's GT: 40, 44, 48 m in samples 0, 1, 2, and again
    40, 44 m in samples 24, 25 (the next drive's first frames), whatever the data seed."""
    pytest.importorskip("torch")
    from gsmap_hd.world_data import world_sample

    for seed in (0, 1):
        for i in (0, 1, 2, 24, 25):
            s = world_sample(seed, i, "front", (64, 32), x_range=(-60.0, 30.0))
            behind = -min(p[:, 0].min() for _, p in s.elements)
            assert behind == pytest.approx(40.0 + 4.0 * (i % 24), abs=0.3), (seed, i)


# ------------------------------------------------------------------------------------------------
# gsmap_hd.gaussians2d: clipping GT to the patch


def _shoelace(r):
    r = np.asarray(r, np.float64)
    return 0.5 * abs(np.dot(r[:-1, 0], r[1:, 1]) - np.dot(r[1:, 0], r[:-1, 1]))


def test_a_triangular_crossing_inside_the_patch_is_kept_whole():
    """clip_to_patch: a polygon needs 3 vertices; a triangle (0, 0), (4, 0), (0, 3) wholly inside the
    patch comes back as one closed ring with the same three corners and area 6 m² (½·4·3)."""
    pytest.importorskip("torch")
    from gsmap_hd.gaussians2d import BEVGrid, clip_to_patch

    g = BEVGrid((-30.0, 30.0), (-15.0, 15.0), 200, 100)
    (ring,) = clip_to_patch(1, np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]]), g, True)
    np.testing.assert_array_equal(ring[0], ring[-1])
    assert {tuple(p) for p in ring} == {(0.0, 0.0), (4.0, 0.0), (0.0, 3.0)}
    assert _shoelace(ring) == pytest.approx(6.0)


def test_gt_that_only_grazes_the_patch_edge_gives_no_element():
    """clip_to_patch: a crossing reaching 10 nm into the patch (a 3 × 10⁻⁸ m² sliver) and a divider
    ending 0.1 mm inside it are outside the patch for training: no piece (a degenerate GT element
    would be a target the model cannot draw); one reaching 1 m in is kept, 1 m long / 3 m² in area."""
    pytest.importorskip("torch")
    from gsmap_hd.gaussians2d import BEVGrid, clip_to_patch

    g = BEVGrid((-30.0, 30.0), (-15.0, 15.0), 200, 100)
    for inside, want in ((1e-8, 0), (1.0, 1)):
        sq = np.array([[30 - inside, 0.0], [34.0, 0.0], [34.0, 3.0], [30 - inside, 3.0]])
        pieces = clip_to_patch(1, sq, g, True)
        assert len(pieces) == want
        if want:
            assert _shoelace(pieces[0]) == pytest.approx(3.0 * inside)
    for inside, want in ((1e-4, 0), (1.0, 1)):
        pieces = clip_to_patch(0, np.array([[30 - inside, 2.0], [40.0, 2.0]]), g, False)
        assert len(pieces) == want
        if want:
            assert np.linalg.norm(np.diff(pieces[0], axis=0), axis=1).sum() == pytest.approx(inside)


def test_resampling_a_nearly_closed_ring_gives_an_exactly_closed_one():
    """resample(closed=True): 'point K−1 == point 0'. A 4 × 4 m square ring whose last vertex misses
    the first by 10⁻¹⁰ m (a ring read back from text) resampled to 9 points: every 2 m along the
    16 m outline from (0, 0) — the corners and edge midpoints, worked by hand — and the last point is
    the first one exactly."""
    pytest.importorskip("torch")
    from gsmap_hd.gaussians2d import resample

    ring = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0], [1e-10, 0.0]])
    out = resample(ring, 9, closed=True)
    want = [[0, 0], [2, 0], [4, 0], [4, 2], [4, 4], [2, 4], [0, 4], [0, 2], [0, 0]]
    np.testing.assert_allclose(out, want, atol=1e-9)
    np.testing.assert_array_equal(out[-1], out[0])


# ------------------------------------------------------------------------------------------------
# gsmap_hd.backbone


def test_bottleneck_block_ends_in_a_relu_after_the_shortcut_add():
    """He et al. 2016 (fig. 5, right) and torchvision's ``Bottleneck``:
    ``out = relu(bn3(conv3(…)) + x)``. Hand computation in eval mode with conv3's weights zero and
    bn3's shift −10: the branch is −10 everywhere, so an input of ones maps to relu(1 − 10) = 0 (−9
    without the closing ReLU); with the shift +0.5 to 1.5."""
    torch = pytest.importorskip("torch")
    from gsmap_hd.backbone import Bottleneck

    block = Bottleneck(8, 2, 1).eval()  # 8 → width 2 → 8 channels: the identity shortcut
    conv3, bn3 = block.body[2][0], block.body[2][1]
    for shift, want in ((-10.0, 0.0), (0.5, 1.5)):
        with torch.no_grad():
            conv3.weight.zero_()
            bn3.bias.fill_(shift)
            out = block(torch.ones(1, 8, 5, 5))
        torch.testing.assert_close(out, torch.full_like(out, want))


def test_resnet50_trunk_has_the_published_parameter_count():
    """ResNet-50 (He et al. 2016, table 1: bottlenecks 3-4-6-3): torchvision's resnet50 has
    25,557,032 parameters, of which its 1000-way fc layer holds 2048·1000 + 1000 = 2,049,000; the
    convolutional trunk (stem + four stages, batch norms included) is the remaining 23,508,032 —
    ours, without its projection to embed_dim, must be that network."""
    pytest.importorskip("torch")
    from gsmap_hd.backbone import ResNet50

    m = ResNet50(32)
    trunk = sum(p.numel() for mod in (m.stem, m.stages) for p in mod.parameters())
    assert trunk == 25_557_032 - 2_049_000
    assert sum(p.numel() for p in m.proj.parameters()) == 2048 * 32 + 32
