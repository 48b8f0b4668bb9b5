"""Targets, permutation-equivalent matching and the losses."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gsmap_hd.errors import HDDataError
from gsmap_hd.gaussians2d import BEVGrid, gaussians_from_points
from gsmap_hd.losses import GSMapCriterion, raster_loss, sigmoid_focal
from gsmap_hd.matching import build_targets, cost_grid, focal_cost, hungarian_match, prepare_elements
from gsmap_hd.model_config import LossConfig, ModelConfig

torch.set_num_threads(1)
M = ModelConfig(num_points=8, num_instances=6)
L = LossConfig(raster_res=1.0, iou_cost_res=2.0)
PATCH = BEVGrid(M.x_range, M.y_range, M.bev_h, M.bev_w)

LINE = (0, np.array([[-20.0, 2.0], [20.0, 2.0]]))
BOUNDARY = (2, np.array([[-25.0, -6.0], [0.0, -7.0], [25.0, -6.0]]))
CROSSING = (1, np.array([[10.0, -5.0], [14.0, -5.0], [14.0, 5.0], [10.0, 5.0], [10.0, -5.0]]))


def _params_from(points: np.ndarray) -> torch.Tensor:
    return gaussians_from_points(torch.tensor(points, dtype=torch.float32), 0.6)


def test_targets_clip_resample_and_orderings():
    t = build_targets([LINE, CROSSING, (0, np.array([[40.0, 0], [50.0, 0]]))], M, L)
    assert t.labels.tolist() == [0, 1]  # the element outside the patch is dropped
    assert t.points.shape == (2, 8, 2)
    assert t.order_valid.sum(1).tolist() == [2, 14]  # polyline: 2; polygon ring of 7: 14
    assert torch.allclose(t.points[1, 0], t.points[1, -1])  # ring stays closed
    assert t.masks.shape == (2, 60, 30) and t.masks.sum() > 0


def test_clipping_cuts_lines_at_the_patch_edge():
    ((c, pts),) = prepare_elements([(0, np.array([[0.0, 0.0], [100.0, 0.0]]))], M)
    assert pts[0, 0] == pytest.approx(0.0) and pts[-1, 0] == pytest.approx(30.0)


def test_unknown_class_is_an_error():
    with pytest.raises(HDDataError, match="unknown GT class 7"):
        build_targets([(7, LINE[1])], M, L)
    with pytest.raises(HDDataError, match="non-finite"):
        build_targets([(0, np.array([[0.0, 0.0], [np.nan, 1.0]]))], M, L)


def test_matching_recovers_permuted_reversed_and_shifted_targets():
    t = build_targets([LINE, BOUNDARY, CROSSING], M, L)
    # predictions: the crossing ring started elsewhere and reversed, the line reversed, then the boundary
    ring = t.points[2, :-1].numpy()
    ring = np.roll(ring[::-1], 3, axis=0)
    ring = np.vstack([ring, ring[:1]])
    preds = np.stack(
        [
            ring,
            t.points[0].numpy()[::-1],
            np.zeros((8, 2)) + 29,
            t.points[1].numpy(),
            np.zeros((8, 2)) - 29,
            np.zeros((8, 2)),
        ]
    )
    params = _params_from(preds)
    logits = torch.full((6, 3), -4.0)
    logits[0, 1] = logits[1, 0] = logits[3, 2] = 4.0
    rows, cols, order = hungarian_match(logits, params, t, PATCH, cost_grid(M, L), L)
    assert dict(zip(rows.tolist(), cols.tolist(), strict=False)) == {0: 2, 1: 0, 3: 1}
    # the chosen orderings reproduce the predictions exactly (point-level matching)
    for r, c, o in zip(rows, cols, order, strict=False):
        assert torch.allclose(t.orders[c, o], params[r, :, :2], atol=1e-4)


def test_focal_cost_prefers_confident_right_class():
    logits = torch.tensor([[4.0, -4.0, -4.0], [-4.0, 4.0, -4.0]])
    c = focal_cost(logits, torch.tensor([0, 1]), 0.25, 2.0)
    assert c[0, 0] < c[1, 0] and c[1, 1] < c[0, 1]


def test_sigmoid_focal_matches_definition():
    x = torch.tensor([[2.0, -1.0]])
    y = torch.tensor([[1.0, 0.0]])
    p = torch.sigmoid(x)
    expect = -(0.25 * (1 - p[0, 0]) ** 2 * torch.log(p[0, 0])) - (
        0.75 * p[0, 1] ** 2 * torch.log(1 - p[0, 1])
    )
    assert sigmoid_focal(x, y, 0.25, 2.0) == pytest.approx(float(expect), rel=1e-5)


def test_raster_loss_zero_at_target_and_positive_elsewhere():
    gt = torch.zeros(1, 20, 20)
    gt[0, 5:15, 9:11] = 1
    bce, dssim = raster_loss(gt.clone(), gt, L)
    assert float(bce) < 1e-4 and float(dssim) < 1e-4
    bce2, dssim2 = raster_loss(torch.full_like(gt, 0.5), gt, L)
    assert float(bce2) > 0.5 and float(dssim2) > 0.1


def _outputs(params, logits):
    return {"logits": [logits[None]], "params": [params[None]]}


def test_loss_lower_for_exact_prediction_and_raster_term_switches_off():
    t = build_targets([LINE, BOUNDARY], M, L)
    good = _params_from(np.concatenate([t.points.numpy(), np.zeros((4, 8, 2))]))
    logits = torch.full((6, 3), -6.0)
    logits[0, 0] = logits[1, 2] = 6.0
    crit = GSMapCriterion(M, L)
    exact = crit(_outputs(good, logits), [t])
    noisy = good.clone()
    noisy[:2, :, :2] += 1.5
    worse = crit(_outputs(noisy, logits), [t])
    assert float(exact["pts"]) < 1e-5
    assert float(worse["loss"]) > float(exact["loss"]) and float(worse["bce"]) > float(exact["bce"])
    vec_only = GSMapCriterion(M, LossConfig(raster_res=1.0, iou_cost_res=2.0, raster_weight=0.0))
    assert float(vec_only(_outputs(noisy, logits), [t])["bce"]) == 0.0


def test_frame_without_gt_trains_class_only():
    t = build_targets([], M, L)
    params = _params_from(np.zeros((6, 8, 2)) + np.linspace(0, 5, 8)[None, :, None]).requires_grad_()
    logits = torch.zeros(6, 3, requires_grad=True)
    out = GSMapCriterion(M, L)(_outputs(params, logits), [t])
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and logits.grad.abs().sum() > 0


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.booleans(), st.booleans())
def test_any_equivalent_ordering_costs_nothing(seed, polygon, reverse):
    rng = np.random.default_rng(seed)
    if polygon:
        c = rng.uniform([-20, -10], [20, 10])
        w, h = rng.uniform(2, 6, 2)
        pts = c + np.array([[0, 0], [w, 0], [w, h], [0, h], [0, 0]])
        el = (1, pts)
    else:
        steps = np.stack([rng.uniform(0.5, 3, 6), rng.uniform(-1.5, 1.5, 6)], 1)  # stays inside the patch
        el = (int(rng.choice([0, 2])), np.cumsum(steps, 0) + rng.uniform([-25, -5], [10, 5]))
    t = build_targets([el], M, L)
    assert t.labels.numel() == 1
    p = t.points[0].numpy()
    if polygon:
        ring = np.roll(p[:-1], int(rng.integers(0, 7)), axis=0)
        ring = ring[::-1] if reverse else ring
        pred = np.vstack([ring, ring[:1]])
    else:
        pred = p[::-1] if reverse else p
    params = _params_from(np.stack([pred, np.zeros((8, 2)) + 25]))
    logits = torch.zeros(2, 3)
    rows, cols, order = hungarian_match(logits, params, t, PATCH, cost_grid(M, L), L)
    assert rows.tolist() == [0]
    assert torch.allclose(t.orders[0, order[0]], params[0, :, :2], atol=1e-4)
