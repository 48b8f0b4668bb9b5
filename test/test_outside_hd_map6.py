"""Outside review of issue 18 (GSMap), sixth round: the training side against MapTR's own code —
what ground truth and loss a model is trained on when the map holds a closed road boundary (an
island, a roundabout's centre, a block between two roads: nuScenes' drivable-area holes, the world's
drivable interiors), when a boundary ring is cut by the BEV patch, what scale the vector term has
next to the classification term, and what ground truth a model with a longer BEV range than
MapTR's 60 x 30 m (StreamMapNet's 100 x 50 m) is given.

Each test compares the project with an independent reference, transcribed from MapTR
(hustvl/MapTR, ``projects/mmdet3d_plugin``): ``LiDARInstanceLines.shift_fixed_num_sampled_points_v2``
(an instance is a polygon when its first point equals its last, whatever its class: every start
vertex is an equivalent ordering), ``VectorizedLocalMap.poly_geoms_to_instances`` (a ring cut by
the patch is ``ops.linemerge``'d, so its start vertex is no cut), ``OrderedPtsL1Cost``
(``torch.cdist(p=1)`` over the K x 2 flattened normalised points) and ``PtsL1Loss`` with
``avg_factor=num_total_pos`` (the L1 summed over the K points and 2 coordinates, per GT), and, for
the BEV range, the world's global map clipped to the model's patch with shapely. The bugs this
review found are fixed; each test fails without its fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gsmap_hd.gaussians2d import BEVGrid, resample
from gsmap_hd.model_config import LossConfig, ModelConfig

torch.set_num_threads(1)

M = ModelConfig()  # the small preset's model: patch x ±30 m, y ±15 m, K = 20 points
L = LossConfig()
K = M.num_points
GRID = BEVGrid(tuple(M.x_range), tuple(M.y_range), M.bev_h, M.bev_w)
DIVIDER, CROSSING, BOUNDARY = 0, 1, 2
# normalised L1 a point under which two orderings are the same (~0.1 m: the targets re-resample
# the ring after shapely's clip, which moves its points by a few centimetres)
TOL = 2e-3


def _maptr_shifts_v2(ring: np.ndarray, fixed_num: int) -> np.ndarray:
    """MapTR's ``shift_fixed_num_sampled_points_v2`` for one closed instance (first == last): the
    ring rolled to start at each of its vertices, each resampled to ``fixed_num`` points by
    shapely's ``interpolate`` along its length — (P, fixed_num, 2)."""
    from shapely.geometry import LineString

    assert np.array_equal(ring[0], ring[-1])
    pts_to_shift = ring[:-1]
    out = []
    for shift_right_i in range(len(ring) - 1):
        shift_pts = np.roll(pts_to_shift, shift_right_i, axis=0)
        shift_pts = np.concatenate([shift_pts, shift_pts[:1]], axis=0)
        line = LineString(shift_pts)
        distances = np.linspace(0, line.length, fixed_num)
        out.append(np.array([line.interpolate(d).coords[0] for d in distances]))
    return np.stack(out)


def _island(cx=12.0, cy=1.0, rx=5.0, ry=3.0) -> np.ndarray:
    """A closed ring of K evenly spaced points (last == first): a traffic island's kerb, inside the
    patch, as nuScenes' loader gives a drivable-area hole (``nuscenes._rings``) and the world its
    drivable interiors (``roads.py``: ``[self.drivable.exterior, *self.drivable.interiors]``)."""
    t = np.linspace(0, 2 * np.pi, K)
    ring = resample(np.c_[cx + rx * np.cos(t), cy + ry * np.sin(t)], K, True)
    ring[-1] = ring[0]
    return ring


# ------------------------------------------------------------------------------------------------
# permutation equivalence of a closed road boundary


def test_a_closed_crossing_is_matched_from_any_start_as_maptr():
    """The yardstick of the test below: for a ped crossing (class 1) every one of MapTR's shifted
    target orderings is among ours (within a few centimetres), so a prediction that starts the ring
    elsewhere costs nothing."""
    from gsmap_hd.matching import build_targets, ordered_l1

    ring = _island()
    t = build_targets([(CROSSING, ring)], M, L)
    ref = torch.tensor(_maptr_shifts_v2(ring, K), dtype=torch.float32)
    d, _ = ordered_l1(GRID.normalize(ref), GRID.normalize(t.orders), t.order_valid)
    assert float(d.max()) < TOL


def test_a_closed_road_boundary_is_matched_from_any_start_as_maptr():
    """MapTR decides permutation equivalence by geometry: ``is_poly = np.equal(start_pts,
    end_pts).all()`` in ``shift_fixed_num_sampled_points_v2``, for any label. A road boundary around
    an island lying inside the patch is such a closed instance in MapTR's nuScenes ground truth (an
    interior ring of the drivable union, ``inter.intersection(local_patch)`` leaves it whole), and in
    ours (``gsmap_hd.nuscenes`` emits holes as closed class-2 rings). A prediction that traces the
    island from another start vertex must cost what MapTR's matching and loss charge it: nothing.
    ``matching.build_targets`` calls ``orderings(pts, cls in POLYGON_CLASSES)``: the island gets the
    two polyline orderings only, and the same ring started 5 vertices later costs a normalised L1
    of ~0.14 a point (several metres) — the model is pulled towards an arbitrary start vertex."""
    from gsmap_hd.matching import build_targets, ordered_l1

    ring = _island()
    t = build_targets([(BOUNDARY, ring)], M, L)
    ref = torch.tensor(_maptr_shifts_v2(ring, K), dtype=torch.float32)
    d, _ = ordered_l1(GRID.normalize(ref), GRID.normalize(t.orders), t.order_valid)
    worst = int(d[:, 0].argmax())
    assert float(d.max()) < TOL, f"MapTR ordering {worst} costs {float(d.max()):.3f} against ours"


# ------------------------------------------------------------------------------------------------
# a boundary ring cut by the patch


def test_a_boundary_ring_cut_by_the_patch_is_one_piece_as_maptrs_linemerge():
    """A kerb ring (an island, a block) that the patch's front edge cuts, its first vertex inside
    the patch — what ``build_targets`` is handed whenever the GT reaches beyond the model's patch: a
    model patch smaller than ±30 x ±15 m (the world and the nuScenes loader clip there whatever
    ``model.x_range`` says), or a user's own loader of global map elements. MapTR
    (``poly_geoms_to_instances``): ``lines = ext.intersection(patch)``, then ``ops.linemerge(lines)``
    for a MultiLineString, so the ring's start, which is no cut, does not split it: one piece. The world's own clip (``roads.clip_elements``) does the same
    (``shapely.line_merge``). ``matching.prepare_elements`` (training targets) and
    ``train.gt_to_eval`` (the in-training evaluation's GT) go through ``clip_to_patch``, which keeps
    shapely's two pieces: two GT instances where MapTR has one."""
    from shapely import ops
    from shapely.geometry import LineString, MultiLineString, box

    from gsmap_hd.matching import prepare_elements

    t = np.linspace(0, 2 * np.pi, 41)
    ring = np.c_[27.0 + 6.0 * np.cos(t), 1.0 + 3.0 * np.sin(t)][:-1]
    ring = np.roll(ring, 20, axis=0)  # start at the far-left vertex (x = 21 m), inside the patch
    ring = np.vstack([ring, ring[:1]])
    assert abs(ring[0, 0]) < 30 and ring[:, 0].max() > 30

    patch = box(M.x_range[0], M.y_range[0], M.x_range[1], M.y_range[1])
    lines = LineString(ring).intersection(patch)
    if isinstance(lines, MultiLineString):
        lines = ops.linemerge(lines)
    maptr = [lines] if lines.geom_type == "LineString" else list(lines.geoms)
    assert len(maptr) == 1  # the reference: one open piece from (30, −y) round to (30, +y)

    ours = prepare_elements([(BOUNDARY, ring)], M)
    assert len(ours) == len(maptr), f"{len(ours)} GT pieces, MapTR has {len(maptr)}"
    ref = resample(np.asarray(maptr[0].coords), K, False)
    got = ours[0][1]
    assert min(np.abs(got - ref).max(), np.abs(got[::-1] - ref).max()) < 1e-6


# ------------------------------------------------------------------------------------------------
# the scale of the vector term


def _one_matched_line(offset_m: float):
    """A frame with one divider and a model output of one instance: the divider's K points shifted
    ``offset_m`` forward, confident in the right class (so the match is that instance, forward)."""
    from gsmap_hd.matching import build_targets

    gt = np.c_[np.linspace(-20.0, 20.0, K), np.full(K, 2.0)]
    t = build_targets([(DIVIDER, gt)], M, L)
    params = torch.zeros(1, 1, K, 5)
    params[0, 0, :, :2] = t.points[0] + torch.tensor([offset_m, 0.0])
    params[0, 0, :, 2:4] = 0.5
    logits = torch.full((1, 1, M.num_classes), -4.0)
    logits[0, 0, DIVIDER] = 4.0
    return logits, params, t


# Kept (documented in LossConfig and docs/hd_model.md): MapTR's scale, tried on the short run
# (600 steps, 128 world frames, both with the GT fixes), dropped the in-training Chamfer mAP from
# 0.266 to 0.201 and raster mAP from 0.163 to 0.064; the shipped models and every bench figure are
# trained at the per-point mean. Re-balancing the recipe at MapTR's scale needs runs at its budget.
SCALE_KEPT = (
    "design kept, not a silent bug: the point term is the per-point mean (MapTR's weight / K, "
    "documented); MapTR's sum was measured worse on the short run (Chamfer mAP 0.201 vs 0.266)"
)


@pytest.mark.xfail(strict=True, reason=SCALE_KEPT)
def test_the_point_loss_has_maptrs_scale():
    """``LossConfig``: "the vector weights are MapTR's/the paper's (cls 2.0, pts 5.0)". In MapTR the
    5.0 multiplies ``PtsL1Loss(pred, target, weight, avg_factor=num_total_pos)``: |Δ| summed over
    every point and coordinate, divided by the number of matched GTs (mmdet's weight_reduce_loss),
    while the focal classification term is divided by the same count — as ours is. Hand computation:
    one GT, the prediction 0.6 m forward at each of its K = 20 points: Δu = 0.6 / 60 = 0.01 a point,
    MapTR's unweighted pts loss = 20 x 0.01 = 0.2. Ours divides by num_gt x K: 0.01."""
    from gsmap_hd.losses import GSMapCriterion

    logits, params, t = _one_matched_line(0.6)
    out = GSMapCriterion(M, L).layer_loss(logits, params, [t])
    du = 0.6 / (M.x_range[1] - M.x_range[0])
    maptr = K * du / 1  # sum over K points of |du| + |dv| (dv = 0), avg_factor = 1 GT
    assert float(out["pts"]) == pytest.approx(maptr, rel=1e-4)


@pytest.mark.xfail(strict=True, reason=SCALE_KEPT)
def test_the_matching_point_cost_has_maptrs_scale():
    """MapTR's ``OrderedPtsL1Cost``: ``bbox_pred.view(num_query, -1)``, ``gt.flatten(2).view(num_gts *
    num_orders, -1)``, ``torch.cdist(bbox_pred, gt_bboxes, p=1)`` then the minimum over the orders —
    the L1 summed over all K x 2 normalised coordinates, weighed 5 against the focal class cost's 2.
    Ours (``matching.ordered_l1``) takes the mean over the K points, so with the same weights a
    point error counts K times less against the class cost than in MapTR's matching."""
    from gsmap_hd.matching import ordered_l1

    _, params, t = _one_matched_line(0.6)
    pred = GRID.normalize(params[0, :, :, :2])
    orders = GRID.normalize(t.orders)
    g, p = orders.shape[:2]
    ref = torch.cdist(pred.reshape(1, -1).double(), orders.reshape(g * p, -1).double(), p=1)
    ref = ref.reshape(1, g, p).masked_fill(~t.order_valid[None], float("inf")).amin(-1)
    ours, _ = ordered_l1(pred, orders, t.order_valid)
    assert float(ours[0, 0]) == pytest.approx(float(ref[0, 0]), rel=1e-4)


# ------------------------------------------------------------------------------------------------
# a longer BEV range than MapTR's


def test_a_model_with_a_longer_range_is_trained_on_ground_truth_out_to_its_range(tmp_path, monkeypatch):
    """ModelConfig accepts any patch, e.g. StreamMapNet's long range (x ±50 m, y ±25 m), and the
    model predicts over all of it. The ground truth it is trained on must cover the same patch.
    Reference: the world's global map (``World.map_elements``) in the training frame's base_link
    (the drive's true pose), clipped to the model's patch with shapely: the road goes on past 30 m.
    The real training loop is run for one step and the elements it builds its targets from are
    captured. ``world_data.world_sample`` makes its ``Drive`` with the default ``bev_range`` (30, 15)
    and ``train`` never passes the model's range (nor to ``NuScenesSamples``/``MapExtractor``, whose
    patch is fixed at ±30 x ±15 m too): nothing beyond x = 30 m, silently."""
    from shapely.geometry import LineString, Polygon, box

    from gs_mapping.config_file import from_dict
    from gsmap_hd import train as train_mod
    from gsmap_hd.model_config import TrainConfig
    from gsmap_hd.world_data import FRAMES_PER_DRIVE, _drive

    tiny = dict(
        x_range=[-50.0, 50.0],
        y_range=[-25.0, 25.0],
        bev_h=20,
        bev_w=10,
        image_size=[32, 64],
        small_channels=[8, 16, 16],
        embed_dim=32,
        num_instances=6,
        num_points=6,
        num_layers=1,
        num_heads=4,
        ffn_dim=32,
    )
    cfg = from_dict(
        TrainConfig,
        {
            "model": tiny,
            "loss": {"raster_weight": 0.0, "iou_cost": 0.0},
            "steps": 1,
            "batch_size": 1,
            "train_frames": 1,
            "data": "world",
            "rig": "front",
            "region": "patch",
            "eval_every": 0,
            "log_every": 1,
            "checkpoint_every": 1,
        },
    )
    seen = []
    real = train_mod.build_targets

    def spy(elements, m, l):
        seen.append([(int(c), np.asarray(p, np.float64)) for c, p in elements])
        return real(elements, m, l)

    monkeypatch.setattr(train_mod, "build_targets", spy)
    train_mod.train(cfg, tmp_path / "run", progress=False)
    assert seen, "the training loop built no targets"
    idx = int(train_mod.batch_indices(cfg, 0)[0])

    drive = _drive(cfg.data_seed * 100_003 + idx // FRAMES_PER_DRIVE, "front", (64, 32))
    T_base_map = np.linalg.inv(drive.frame(idx % FRAMES_PER_DRIVE).T_map_base)
    patch = box(-50.0, -25.0, 50.0, 25.0)
    far_ref = 0.0  # metres of reference map element beyond |x| = 31 m inside the patch
    for e in drive.world.map_elements():
        p = np.asarray(e.pts, np.float64)[:, :2] @ T_base_map[:2, :2].T + T_base_map[:2, 3]
        g = (Polygon(p).exterior if e.cls == CROSSING else LineString(p)).intersection(patch)
        far_ref += g.difference(box(-31.0, -60.0, 31.0, 60.0)).length
    assert far_ref > 10.0  # the yardstick: the road really goes on past 30 m here

    far_ours = max(float(np.abs(p[:, 0]).max()) for c, p in seen[0])
    assert far_ours > 31.0, f"training GT stops at |x| = {far_ours:.1f} m in a ±50 m patch"
