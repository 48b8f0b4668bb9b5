"""Guards for behaviours a mutation-testing pass over gsmap_hd's model side found unguarded (sixteenth
round): the windowed Gaussian rasteriser's window cap and its finite log at a centre, GT clipping and
resampling, the Gaussians drawn along a polyline, the GT class check, the matching's focal cost,
camera-to-BEV lifting, inference post-processing and input checks, image fitting, augmentation,
checkpoints, evaluation files and config validation. Each test compares the component with an
independent reference (a numpy re-computation of exp(-½ dᵀΣ⁻¹d), the formula a docstring or
docs/hd_model.md states, a pinhole projection written out with numpy, a hand-built input with a
hand-computed answer), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def _dense_numpy(params: np.ndarray, grid, cutoff: float = 3.0) -> np.ndarray:
    """Occupancy 1 - Π(1 - G) of one element's Gaussians (K, 5) on ``grid``, G the cut-off kernel
    of raster.py's docstring, evaluated at every pixel with numpy (float64)."""
    rx, ry = grid.res
    xs = grid.x_range[1] - (np.arange(grid.height) + 0.5) * rx
    ys = grid.y_range[1] - (np.arange(grid.width) + 0.5) * ry
    px, py = np.meshgrid(xs, ys, indexing="ij")
    floor = math.exp(-0.5 * cutoff**2)
    keep = np.ones_like(px)
    for x, y, sx, sy, th in params:
        r = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        inv = np.linalg.inv(r @ np.diag([sx * sx, sy * sy]) @ r.T)
        d = np.stack([px - x, py - y], -1)
        m = np.einsum("...i,ij,...j->...", d, inv, d)
        g = np.clip(np.exp(-0.5 * m) - floor, 0.0, None) / (1.0 - floor)
        keep *= 1.0 - g
    return 1.0 - keep


# ------------------------------------------------------------------------------------------------
# gsmap_hd.raster


def test_windowed_raster_renders_a_gaussian_wider_than_a_quarter_of_the_window_cap():
    """rasterize: each Gaussian's window is the pixel box of its cut-off ellipse (once capped at
    129 px, a radius of 64 px). A 5 m Gaussian at 0.25 m/px reaches 3σ = 60 px from its centre: the
    windowed occupancy equals the dense numpy re-computation everywhere (none of it truncated)."""
    from gsmap_hd.gaussians2d import BEVGrid
    from gsmap_hd.raster import rasterize

    grid = BEVGrid.with_resolution((-20.0, 20.0), (-20.0, 20.0), 0.25)  # 160 x 160
    p = np.array([[0.3, -0.2, 5.0, 5.0, 0.0]])
    got = rasterize(torch.tensor(p, dtype=torch.float64)[None], grid)[0].numpy()
    want = _dense_numpy(p, grid)
    assert want[:, 80 - 58].max() > 0.0  # (the ring 58 px out is inside the 3σ cut)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_windowed_raster_renders_gaussians_larger_than_the_grid_centred_outside_it():
    """rasterize: the window never needs to exceed the grid (its centre pixel is clamped into the
    grid), and no cap cuts a Gaussian whose cut-off ellipse is many times the grid: rotated 4 m and
    6 m Gaussians on a 0.1 m, 40 x 30 px grid, centred inside it and up to 5 m beyond its corners,
    equal the dense numpy re-computation everywhere."""
    from gsmap_hd.gaussians2d import BEVGrid
    from gsmap_hd.raster import rasterize

    grid = BEVGrid.with_resolution((-2.0, 2.0), (-1.5, 1.5), 0.1)  # 40 x 30
    p = np.array([[0.2, 0.1, 4.0, 6.0, 0.4], [-7.0, 6.5, 6.0, 4.0, -1.0], [5.0, -4.0, 4.0, 4.0, 2.0]])
    got = rasterize(torch.tensor(p, dtype=torch.float64)[None], grid)[0].numpy()
    want = _dense_numpy(p, grid)
    assert want.min() > 0.5  # (every pixel lies inside the cut-off ellipses)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_windowed_raster_has_finite_gradients_for_a_gaussian_centred_on_a_pixel():
    """rasterize: 'G is scaled by (1 − 1e-6) so the log stays finite at a centre' — a Gaussian whose
    centre is exactly a pixel centre (G = 1 there) renders occupancy ≈ 1 there and its gradient
    is finite (log(1 − G) would be −inf and the gradient NaN)."""
    from gsmap_hd.gaussians2d import BEVGrid
    from gsmap_hd.raster import rasterize

    grid = BEVGrid((-5.0, 5.0), (-5.0, 5.0), 10, 10)  # pixel centres at ±0.5, ±1.5, ...
    p = torch.tensor([[[0.5, 0.5, 0.8, 0.6, 0.3]]], dtype=torch.float64, requires_grad=True)
    occ = rasterize(p, grid)
    assert float(occ.detach()[0, 4, 4]) == pytest.approx(1.0, abs=1e-5)  # row 4: x = 0.5, col 4: y = 0.5
    occ.sum().backward()
    assert torch.isfinite(p.grad).all()


# ------------------------------------------------------------------------------------------------
# gsmap_hd.gaussians2d


def test_a_grid_by_resolution_has_the_nearest_whole_number_of_cells():
    """BEVGrid.with_resolution: the patch's size over the resolution, to the nearest whole cell —
    a 0.7 m x 0.3 m patch at 0.1 m is 7 x 3 cells of 0.1 m (0.7 / 0.1 is 6.999… in floating point,
    which truncation would make 6 cells of 0.117 m), and the default 60 m x 30 m patch at 0.3 m
    200 x 100."""
    from gsmap_hd.gaussians2d import BEVGrid

    g = BEVGrid.with_resolution((0.0, 0.7), (0.0, 0.3), 0.1)
    assert (g.height, g.width) == (7, 3)
    np.testing.assert_allclose(g.res, (0.1, 0.1))
    g = BEVGrid.with_resolution((-30.0, 30.0), (-15.0, 15.0), 0.3)
    assert (g.height, g.width) == (200, 100)


def test_a_crossing_of_two_points_is_dropped_not_a_traceback():
    """clip_to_patch: a polygon needs three vertices, a line two; a ped_crossing GT of two points or
    a divider of one (degenerate annotations) yields no piece — shapely would raise on them."""
    from gsmap_hd.matching import prepare_elements
    from gsmap_hd.model_config import ModelConfig

    m = ModelConfig(num_points=8)
    line = (0, np.array([[0.0, 0.0], [10.0, 0.0]]))
    out = prepare_elements([(1, np.array([[0.0, 1.0], [4.0, 1.0]])), line], m)
    assert [c for c, _ in out] == [0]
    # likewise a divider of a single point (a line needs two)
    assert [c for c, _ in prepare_elements([(0, np.array([[3.0, 1.0]])), line], m)] == [0]


def test_resampling_an_open_ring_as_closed_walks_its_closing_edge_too():
    """resample(closed=True): 'pts is a ring; the result is closed too'. The unit square given as
    four corners (not repeated) has perimeter 4; 9 points evenly spaced along it from (0, 0) are
    every half metre round all four edges, the last back at the start."""
    from gsmap_hd.gaussians2d import resample

    sq = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    out = resample(sq, 9, closed=True)
    want = [[0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1], [0.5, 1], [0, 1], [0, 0.5], [0, 0]]
    np.testing.assert_allclose(out, want, atol=1e-12)


def test_gaussians_along_a_polyline_follow_its_tangent_and_take_half_the_spacing():
    """gaussians_from_points: θ along the local tangent, sx half the (mean) spacing, sy width/2.
    On evenly spaced points of a circle the tangent at an inner point is perpendicular to its
    radius (the chord from its predecessor to its successor is), and the spacing is the chord
    2r·sin(Δ/2)."""
    from gsmap_hd.gaussians2d import gaussians_from_points

    r, step = 10.0, math.radians(10.0)
    ang = np.arange(8) * step
    pts = np.stack([r * np.cos(ang), r * np.sin(ang)], 1)
    g = gaussians_from_points(torch.tensor(pts, dtype=torch.float64), 0.4).numpy()
    tangent = ang[1:-1] + math.pi / 2
    err = (g[1:-1, 4] - tangent + math.pi / 2) % math.pi - math.pi / 2  # θ is defined modulo π
    np.testing.assert_allclose(err, 0.0, atol=1e-9)
    np.testing.assert_allclose(g[:, 2], r * math.sin(step / 2), rtol=1e-9)  # 2r·sin(Δ/2) / 2
    np.testing.assert_allclose(g[:, 3], 0.2)
    np.testing.assert_allclose(g[:, :2], pts)


def test_gaussians_along_a_dense_polyline_are_no_thinner_than_its_width():
    """gaussians_from_points: sx is half the spacing but at least width/2 — points 0.1 m apart
    drawn 0.6 m wide give sx = sy = 0.3 (round blobs, no gaps between them)."""
    from gsmap_hd.gaussians2d import gaussians_from_points

    pts = torch.stack([torch.arange(6, dtype=torch.float64) * 0.1, torch.zeros(6, dtype=torch.float64)], 1)
    g = gaussians_from_points(pts, 0.6)
    torch.testing.assert_close(g[:, 2], torch.full((6,), 0.3, dtype=torch.float64))
    torch.testing.assert_close(g[:, 3], torch.full((6,), 0.3, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------
# gsmap_hd.matching


def test_a_gt_class_one_past_the_last_is_refused():
    """prepare_elements: classes are 0..num_classes-1 (divider, ped_crossing, boundary); class 3 is
    an HDDataError naming it, not a fourth class."""
    from gsmap_hd.errors import HDDataError
    from gsmap_hd.matching import prepare_elements
    from gsmap_hd.model_config import ModelConfig

    with pytest.raises(HDDataError, match="unknown GT class 3"):
        prepare_elements([(3, np.array([[0.0, 0.0], [10.0, 0.0]]))], ModelConfig(num_points=8))


def test_focal_cost_is_maptrs_formula():
    """focal_cost (MapTR / Deformable DETR FocalLossCost): for p = σ(logit),
    cost = α(1−p)^γ·(−log p) − (1−α)p^γ·(−log(1−p)) of the GT's class column."""
    from gsmap_hd.matching import focal_cost

    logits = torch.tensor([[1.5, -0.7, 0.2], [-2.0, 0.4, 3.0]], dtype=torch.float64)
    labels = torch.tensor([2, 0, 1])
    a, gm = 0.25, 2.0
    p = 1.0 / (1.0 + np.exp(-logits.numpy()))
    pos = a * (1 - p) ** gm * -np.log(p)
    neg = (1 - a) * p**gm * -np.log(1 - p)
    want = (pos - neg)[:, [2, 0, 1]]
    np.testing.assert_allclose(focal_cost(logits, labels, a, gm).numpy(), want, rtol=1e-6)


def test_soft_iou_is_intersection_over_union():
    """soft_iou: intersection Σ a·b over union Σa + Σb − Σ a·b — two 4-pixel masks sharing 2 pixels
    have IoU 2/6, a mask with itself 1."""
    from gsmap_hd.matching import soft_iou

    a = torch.zeros(1, 4, 4)
    b = torch.zeros(1, 4, 4)
    a[0, 0, :4] = 1
    b[0, 0, 2:4] = b[0, 1, 2:4] = 1
    iou = soft_iou(torch.cat([a, b]), torch.cat([b, a]))
    torch.testing.assert_close(iou, torch.tensor([[2 / 6, 1.0], [1.0, 2 / 6]]))


# ------------------------------------------------------------------------------------------------
# gsmap_hd.losses

_LINE = (0, np.array([[-20.0, 2.0], [20.0, 2.0]]))
_BOUNDARY = (2, np.array([[-25.0, -6.0], [0.0, -7.0], [25.0, -6.0]]))


def _loss_setup():
    from gsmap_hd.matching import build_targets
    from gsmap_hd.model_config import LossConfig, ModelConfig

    m = ModelConfig(num_points=8, num_instances=4)
    loss = LossConfig(raster_res=1.0, iou_cost_res=2.0)
    return m, loss, build_targets([_LINE, _BOUNDARY], m, loss)


def test_vector_loss_compares_with_the_matched_ordering_of_the_gt():
    """'vector: L1 between matched Gaussian centres and the GT points in the best ordering': a
    prediction that is each GT line exactly, read backwards, has vector loss 0."""
    from gsmap_hd.gaussians2d import gaussians_from_points
    from gsmap_hd.losses import GSMapCriterion

    m, loss, t = _loss_setup()
    pts = torch.cat([t.points.flip(1), torch.zeros(2, 8, 2) + 25.0])
    params = gaussians_from_points(pts, 0.6)
    logits = torch.full((4, 3), -6.0)
    logits[0, 0] = logits[1, 2] = 6.0
    out = GSMapCriterion(m, loss)({"logits": [logits[None]], "params": [params[None]]}, [t])
    assert float(out["pts"]) < 1e-6


def _good_shifted_logits(t):
    """Decoder-layer outputs for _loss_setup's targets: ``good`` the two GT lines exactly (two more
    instances far away), ``shifted`` the same lines moved 2 m, and the class logits that pick them."""
    from gsmap_hd.gaussians2d import gaussians_from_points

    good = gaussians_from_points(torch.cat([t.points, torch.zeros(2, 8, 2) + 25.0]), 0.6)
    shifted = good.clone()
    shifted[:2, :, :2] += 2.0
    logits = torch.full((4, 3), -6.0)
    logits[0, 0] = logits[1, 2] = 6.0
    return good, shifted, logits


def test_without_aux_loss_only_the_last_decoder_layer_is_supervised():
    """LossConfig.aux_loss False: 'supervise every decoder layer' is off, the final layer's loss
    alone counts — a perfect first layer and a shifted last layer give the shifted layer's loss (the
    same as a one-layer output of it), not 0."""
    import dataclasses

    from gsmap_hd.losses import GSMapCriterion

    m, loss, t = _loss_setup()
    loss = dataclasses.replace(loss, aux_loss=False)
    good, shifted, logits = _good_shifted_logits(t)
    crit = GSMapCriterion(m, loss)
    two = crit({"logits": [logits[None]] * 2, "params": [good[None], shifted[None]]}, [t])
    last = crit({"logits": [logits[None]], "params": [shifted[None]]}, [t])
    assert float(last["pts"]) > 0.01
    assert float(two["loss"]) == pytest.approx(float(last["loss"]), rel=1e-6)


def test_with_aux_loss_every_layer_adds_up_and_the_reported_parts_are_the_last_layers():
    """GSMapCriterion with aux_loss: the loss is the sum over decoder layers of each layer's loss;
    the parts it reports (cls, pts, ...) are the final layer's (what a log of the model shows)."""
    import dataclasses

    from gsmap_hd.losses import GSMapCriterion

    m, loss, t = _loss_setup()
    loss = dataclasses.replace(loss, raster_weight=0.0)
    good, shifted, logits = _good_shifted_logits(t)
    crit = GSMapCriterion(m, loss)
    two = crit({"logits": [logits[None]] * 2, "params": [shifted[None], good[None]]}, [t])
    first = crit({"logits": [logits[None]], "params": [shifted[None]]}, [t])
    last = crit({"logits": [logits[None]], "params": [good[None]]}, [t])
    assert float(two["loss"]) == pytest.approx(float(first["loss"]) + float(last["loss"]), rel=1e-6)
    assert float(two["pts"]) == pytest.approx(float(last["pts"]), abs=1e-9)
    assert float(first["pts"]) > 0.01


# ------------------------------------------------------------------------------------------------
# gsmap_hd.decoder


def test_inverse_sigmoid_is_the_logit():
    """inverse_sigmoid(x) = log(x / (1 − x)) (clamped to [eps, 1 − eps]): σ of it gives x back, so
    the decoder's first reference points are its reference head's outputs, not mirrored (1 − x)."""
    from gsmap_hd.decoder import inverse_sigmoid

    x = torch.tensor([0.1, 0.3, 0.5, 0.8, 0.99], dtype=torch.float64)
    torch.testing.assert_close(inverse_sigmoid(x), torch.log(x / (1 - x)))
    torch.testing.assert_close(torch.sigmoid(inverse_sigmoid(x)), x)


def test_deformable_attention_starts_sampling_on_square_rings_one_direction_per_head():
    """DeformableAttention init (Deformable DETR's): head h samples along direction
    (cos, sin)(2πh/H) scaled so its larger component is 1, point p at (p + 1) times that (in BEV
    cells)."""
    from gsmap_hd.decoder import DeformableAttention

    heads, points = 8, 3
    att = DeformableAttention(16, heads, points)
    got = att.offsets.bias.detach().reshape(heads, points, 2).numpy()
    for h in range(heads):
        a = 2 * math.pi * h / heads
        d = np.array([math.cos(a), math.sin(a)])
        d /= np.abs(d).max()
        for p in range(points):
            np.testing.assert_allclose(got[h, p], d * (p + 1), atol=1e-5)


def test_deformable_offsets_are_in_cells_of_each_bev_axis():
    """DeformableAttention: offsets are (du, dv) in BEV cells, normalised by the grid's rows (u, along
    x) and columns (v, along y) respectively. On a 10 x 5 grid an offset of one cell in u from the
    centre of cell (row 3, col 2) reads cell (row 2, col 2) (u grows towards the front, row 0); one
    cell in v reads (row 3, col 1)."""
    from gsmap_hd.decoder import DeformableAttention
    from gsmap_hd.gaussians2d import BEVGrid

    g = BEVGrid((0.0, 10.0), (0.0, 5.0), 10, 5)
    bev = torch.zeros(1, 2, 10, 5)
    bev[0, :, 2, 2] = 1.0
    bev[0, :, 3, 1] = 2.0
    ref = g.normalize(g.pixel_centres()[3, 2])[None, None]
    for off, want in (((1.0, 0.0), 1.0), ((0.0, 1.0), 2.0)):
        att = DeformableAttention(2, 1, 1)
        with torch.no_grad():
            att.offsets.bias.copy_(torch.tensor(off))
            att.value.weight.copy_(torch.eye(2))
            att.out.weight.copy_(torch.eye(2))
        out = att(torch.zeros(1, 1, 2), ref, bev)
        torch.testing.assert_close(out, torch.full((1, 1, 2), want), atol=1e-5, rtol=0)


def test_class_heads_start_at_the_focal_prior_and_read_the_mean_of_an_instances_points():
    """MapDecoder: 'the class head reads the mean of an instance's K point features' — the input of
    each layer's class head is the layer's output (B, E·K, C) averaged over the K points of each
    instance; and the heads' output bias starts at the focal-loss prior p = 0.01 (log(0.01/0.99))."""
    from gsmap_hd.decoder import MapDecoder

    torch.manual_seed(0)
    dec = MapDecoder(16, 3, 4, 3, 2, 4, 2, 32, 0.0, scale_init_logit=0.0).eval()
    for head in dec.cls:
        torch.testing.assert_close(head[-1].bias, torch.full((3,), math.log(0.01 / 0.99)))
    feats, heads_in = [], []
    hooks = [layer.register_forward_hook(lambda _m, _a, out: feats.append(out)) for layer in dec.layers]
    hooks += [h.register_forward_pre_hook(lambda _m, a: heads_in.append(a[0])) for h in dec.cls]
    try:
        with torch.no_grad():
            dec(torch.randn(2, 16, 6, 5))
    finally:
        for h in hooks:
            h.remove()
    assert len(feats) == len(heads_in) == 2
    for x, got in zip(feats, heads_in, strict=True):
        torch.testing.assert_close(got, x.reshape(2, 3, 4, 16).mean(2))


def test_a_fresh_model_starts_its_gaussians_at_scale_init_and_angle_zero():
    """ModelConfig.scale_init: the decoder's regression heads start at zero, so every Gaussian of a
    fresh model has sx = sy = scale_init (0.5 m by default, within [scale_min, scale_max]) and θ = 0,
    in every layer."""
    from gsmap_hd.model import GSMapModel
    from gsmap_hd.model_config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(image_size=(32, 64), bev_h=8, bev_w=4, num_instances=3, num_points=4, embed_dim=16)
    model = GSMapModel(cfg).eval()
    with torch.no_grad():
        bev = torch.randn(1, 16, 8, 4)
        states = [s for _, s in model.decoder(bev)]
    for s in states:
        p = model.state_to_params(s)
        torch.testing.assert_close(p[..., 2:4], torch.full_like(p[..., 2:4], cfg.scale_init))
        assert float(p[..., 4].abs().max()) == 0.0


# ------------------------------------------------------------------------------------------------
# gsmap_hd.bev


def _rz(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])


def test_lifting_samples_each_bev_cell_where_the_pinhole_projects_it():
    """lift: every BEV cell (x, y, z) is projected with K and T_ego_cam⁻¹ (optical frame, REP-103)
    and the feature map is sampled there, pixel centres at integer (u, v) (OpenCV/ROS). Features that
    are the pixel's own column and row index read back the projected (u, v) of numpy's pinhole
    projection; cells behind the camera or outside its image get 0; and a cell seen by one of three
    cameras (front, rear, and front pitched 60° up at the sky, whose image the ground lies below)
    gets that camera's value, not a third of it."""
    from gsmap_hd.bev import bev_points, lift
    from gsmap_hd.gaussians2d import BEVGrid

    h, w = 32, 64
    K = np.array([[40.0, 0, 31.5], [0, 40.0, 15.5], [0, 0, 1]])
    r_opt = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # optical → base_link, facing +x
    Ts = []
    up = np.array([[0.5, 0, -math.sqrt(0.75)], [0, 1, 0], [math.sqrt(0.75), 0, 0.5]])  # pitch 60° up
    for rot in (np.eye(3), _rz(math.pi), up):  # front, rear, skyward camera, 1.5 m up
        T = np.eye(4)
        T[:3, :3] = rot @ r_opt
        T[:3, 3] = [0.0, 0.0, 1.5]
        Ts.append(T)
    vv, uu = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    feat = torch.tensor(np.stack([uu, vv]))[None, None].expand(1, 3, 2, h, w).clone()
    feat[0, 1:] += 1000.0  # the other cameras' features are told apart
    grid = BEVGrid((-30.0, 30.0), (-15.0, 15.0), 30, 15)
    pts = bev_points(grid, torch.tensor([0.0]))
    Kt = torch.tensor(np.stack([K, K, K]), dtype=torch.float32)[None]
    Tt = torch.tensor(np.stack(Ts), dtype=torch.float32)[None]
    bev = lift(feat, Kt, Tt, (h, w), pts)[0].numpy()  # (2, 30, 15)
    P = pts[0].numpy().reshape(-1, 3).astype(np.float64)
    seen_by = np.zeros(len(P), int)
    near = np.zeros(len(P), bool)  # within a hair of a camera's image edge: left out of the 0 check
    want = np.zeros((len(P), 2))
    interior = np.zeros(len(P), bool)
    for c, T in enumerate(Ts):
        pc = (P - T[:3, 3]) @ T[:3, :3]  # R^T (p - t)
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[0, 0] * pc[:, 0] / z + K[0, 2]
            v = K[1, 1] * pc[:, 1] / z + K[1, 2]
        vis = (z > 0.2) & (u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5)
        seen_by += vis
        e = 1e-3
        near |= (z > 0.2) & (u >= -0.5 - e) & (u <= w - 0.5 + e) & (v >= -0.5 - e) & (v <= h - 0.5 + e)
        want[vis] = np.stack([u[vis], v[vis]], 1) + (1000.0 if c else 0.0)
        interior |= vis & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    got = bev.reshape(2, -1).T
    one = (seen_by == 1) & interior
    assert one.sum() > 20 and (seen_by[grid.pixel_centres().reshape(-1, 2)[:, 0].numpy() < 0] > 0).any()
    np.testing.assert_allclose(got[one], want[one], atol=2e-3)
    np.testing.assert_array_equal(got[(seen_by == 0) & ~near], 0.0)
    assert ((seen_by == 0) & ~near).sum() > 100


def test_lifting_ignores_points_closer_than_min_depth_to_the_camera():
    """lift: a point counts as seen only beyond ``min_depth`` (0.2 m) in front of the camera — one
    0.1 m ahead on the optical axis (it projects onto the principal point) is not sampled, one 0.3 m
    ahead is."""
    from gsmap_hd.bev import lift

    h, w = 8, 8
    K = torch.tensor([[[[10.0, 0, 3.5], [0, 10.0, 3.5], [0, 0, 1]]]])
    T = torch.eye(4)[None, None]  # camera frame = ego frame: depth along z
    feat = torch.ones(1, 1, 1, h, w)
    pts = torch.tensor([[[[0.0, 0.0, 0.1], [0.0, 0.0, 0.3]]]])  # (Z=1, H=1, W=2, 3)
    out = lift(feat, K, T, (h, w), pts)[0, 0, 0]
    assert out.tolist() == [0.0, 1.0]


# ------------------------------------------------------------------------------------------------
# gsmap_hd.infer


def test_postprocess_ranks_instance_class_pairs_and_closes_crossings():
    """postprocess (MapTR): scores σ(logit) over all (instance, class) pairs, best first, at most
    ``max_elements``; each element carries its instance's Gaussians and, for ped_crossing (class 1),
    a closed ring (last point = first). Hand-built logits: the pairs by score are (inst 2, class 1),
    (inst 0, class 2), (inst 1, class 0), ..."""
    from gsmap_hd.infer import postprocess

    logits = torch.full((3, 3), -5.0)
    logits[2, 1], logits[0, 2], logits[1, 0] = 3.0, 2.0, 1.0
    params = torch.zeros(3, 4, 5)
    for i in range(3):
        params[i, :, 0] = torch.arange(4.0) + 10 * i  # instance i's centres: x = 10i .. 10i + 3
        params[i, :, 2:4] = 0.5
    els = postprocess(logits, params, max_elements=2)
    assert [(e.cls, round(e.score, 6)) for e in els] == [
        (1, round(1 / (1 + math.exp(-3.0)), 6)),
        (2, round(1 / (1 + math.exp(-2.0)), 6)),
    ]
    np.testing.assert_allclose(els[0].gaussians, params[2].numpy())
    np.testing.assert_allclose(els[0].points[:, 0], [20.0, 21.0, 22.0, 20.0])  # closed ring
    np.testing.assert_allclose(els[1].points[:, 0], [0.0, 1.0, 2.0, 3.0])  # a boundary stays open
    assert len(postprocess(logits, params)) == 3  # default: as many as there are instances


def test_a_frame_without_cameras_is_an_input_error():
    """check_inputs: 'need one image, CameraInfo and extrinsic per camera' — zero cameras is an
    HDInputError (one line), not numpy's 'need at least one array to stack'."""
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.infer import check_inputs

    with pytest.raises(HDInputError, match="got 0 images"):
        check_inputs([], [], [])


# ------------------------------------------------------------------------------------------------
# gsmap_hd.augment


def _project(K, T, p):
    pc = np.linalg.inv(T) @ np.array([p[0], p[1], 0.0, 1.0])
    uvw = K @ pc[:3]
    return uvw[:2] / uvw[2]


def test_mirror_of_a_camera_with_skew_sees_the_mirrored_ground_at_the_mirrored_pixel():
    """mirror: u' = w − 1 − u for every pixel, so K's skew changes sign with cx' = w − 1 − cx; a
    ground point p seen at (u, v) is seen in the mirrored frame, at (y → −y), at (w − 1 − u, v) —
    here for a pinhole with skew 7 px (numpy projection)."""
    from gsmap_hd.augment import mirror
    from gsmap_hd.data import Sample

    h, w = 32, 64
    K = np.array([[40.0, 7.0, 30.0], [0, 42.0, 17.0], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = _rz(0.2) @ np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # yawed 0.2 rad left
    T[:3, 3] = [1.0, 0.5, 1.5]
    s = Sample(np.zeros((1, h, w, 3), np.uint8), K[None], T[None], [])
    m = mirror(s)
    for p in ([8.0, 1.0], [12.0, -3.0], [20.0, 4.0]):
        u, v = _project(K, T, p)
        np.testing.assert_allclose(_project(m.K[0], m.T_ego_cam[0], [p[0], -p[1]]), [w - 1 - u, v], atol=1e-9)


def test_colour_jitter_is_brightness_contrast_and_gain_rounded_to_the_nearest_value():
    """jitter_colour: per frame, contrast c about the image mean, then brightness b and a gain g per
    channel, each drawn from the generator in that order (b, c ∈ [1 − s, 1 + s], g ∈ [1 − s/2,
    1 + s/2]); the result is rounded to the nearest uint8 value and clipped to 0..255 (numpy
    re-computation from the same draws)."""
    from gsmap_hd.augment import jitter_colour
    from gsmap_hd.data import Sample

    rng = np.random.default_rng(3)
    ims = rng.integers(0, 256, (2, 16, 24, 3), dtype=np.uint8)
    s = Sample(ims, np.eye(3)[None].repeat(2, 0), np.eye(4)[None].repeat(2, 0), [])
    out = jitter_colour(s, 0.3, np.random.default_rng(0))
    draw = np.random.default_rng(0)
    b, c = draw.uniform(0.7, 1.3), draw.uniform(0.7, 1.3)
    g = draw.uniform(0.85, 1.15, size=3)
    x = ims.astype(np.float64)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    want = np.clip(np.floor(((x - mean) * c + mean) * b * g + 0.5), 0, 255)
    diff = np.abs(out.images.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99  # (float32 vs float64 at exact halves)


def test_a_float_image_in_0_to_255_is_refused():
    """check_inputs: float images are RGB in [0, 1]; one in 0..255 (a forgotten / 255) is an
    HDInputError that says to pass uint8, not a frame of saturated white."""
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.infer import check_inputs

    im = np.full((4, 6, 3), 200.0, np.float32)
    cam = {"K": [[5.0, 0, 3], [0, 5, 2], [0, 0, 1]], "width": 6, "height": 4}
    with pytest.raises(HDInputError, match=r"\[0, 1\]"):
        check_inputs([im], [cam], [np.eye(4)])
    check_inputs([im / 255.0], [cam], [np.eye(4)])  # the same image scaled is taken


def test_predictor_clips_its_elements_to_the_region_it_is_given():
    """Predictor(region="forward_half"): predictions are clipped to x ≥ 0 of the patch
    (docs/hd_model.md, Regions), each piece keeping its score; with region "patch" a fresh model's
    elements reach behind the car."""
    from gsmap_hd.infer import Predictor
    from gsmap_hd.model import GSMapModel
    from gsmap_hd.model_config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(image_size=(32, 64), bev_h=8, bev_w=4, num_instances=6, num_points=5, embed_dim=16)
    model = GSMapModel(cfg).eval()
    im = torch.rand(1, 1, 3, 32, 64)
    K = torch.tensor([[[[40.0, 0, 31.5], [0, 40.0, 15.5], [0, 0, 1]]]])
    T = torch.eye(4)[None, None].clone()
    T[..., :3, :3] = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    T[..., 2, 3] = 1.5
    whole = Predictor(model, region="patch").predict_tensors(im, K, T)[0]
    assert min(float(e.points[:, 0].min()) for e in whole) < -1.0
    half = Predictor(model, region="forward_half").predict_tensors(im, K, T)[0]
    assert half and all(float(e.points[:, 0].min()) >= -1e-6 for e in half)
    assert {round(e.score, 6) for e in half} <= {round(e.score, 6) for e in whole}


def test_a_batch_of_frames_with_different_camera_counts_is_an_input_error():
    """Predictor.predict_batch: 'frames ... with the same number of cameras' — a one-camera frame
    batched with a two-camera frame is an HDInputError, not torch.stack's RuntimeError."""
    from gsmap_hd.errors import HDInputError
    from gsmap_hd.infer import Predictor
    from gsmap_hd.model import GSMapModel
    from gsmap_hd.model_config import ModelConfig

    cfg = ModelConfig(image_size=(32, 64), bev_h=8, bev_w=4, num_instances=3, num_points=4, embed_dim=16)
    p = Predictor(GSMapModel(cfg), region="patch")
    im = np.zeros((32, 64, 3), np.uint8)
    cam = {"K": [[40.0, 0, 31.5], [0, 40.0, 15.5], [0, 0, 1]], "width": 64, "height": 32}
    one = ([im], [cam], [np.eye(4)])
    two = ([im, im], [cam, cam], [np.eye(4), np.eye(4)])
    with pytest.raises(HDInputError, match="same number of cameras"):
        p.predict_batch([one, two])


# ------------------------------------------------------------------------------------------------
# gsmap_hd.predict_bag, onnx_export, checkpoint


def test_the_shipped_model_for_one_camera_is_the_front_one_and_for_two_or_more_the_surround_one():
    """shipped_checkpoint: 'the front model for one camera, the surround model for several'."""
    from gsmap_hd.predict_bag import SHIPPED, SHIPPED_SURROUND, shipped_checkpoint

    assert shipped_checkpoint(1) == SHIPPED
    assert shipped_checkpoint(2) == SHIPPED_SURROUND
    assert shipped_checkpoint(6) == SHIPPED_SURROUND


class _Topic:
    def __init__(self, name, type_, count=1):
        self.name, self.type, self.count = name, type_, count  # (recorded with messages)


class _Bag:  # the attribute find_cameras reads of a BagReader: its topics' names, types and counts
    def __init__(self, topics):
        self.topics = [_Topic(n, t) for n, t in topics]


def test_cameras_found_in_a_bag_are_colour_images_with_a_camera_info_sibling():
    """find_cameras: image topics (raw or compressed) whose sibling …/camera_info is in the bag,
    depth images left out, sorted by name."""
    from gsmap_hd.predict_bag import find_cameras

    img, info = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"
    bag = _Bag(
        [
            ("/front/color/image_raw", img),
            ("/front/color/camera_info", info),
            ("/front/depth/image_raw", img),
            ("/front/depth/camera_info", info),
            ("/back/image_raw/compressed", "sensor_msgs/msg/CompressedImage"),
            ("/back/camera_info", info),
            ("/lonely/image_raw", img),  # no CameraInfo
        ]
    )
    assert find_cameras(bag) == ["/back/image_raw/compressed", "/front/color/image_raw"]
    # a bag recorded with -a: image_transport's compressed topic beside the raw one is the same
    # camera (one camera, the raw topic: the shipped model for one camera, not the surround one)
    both = _Bag(
        [
            *((t.name, t.type) for t in bag.topics),
            ("/front/color/image_raw/compressed", "sensor_msgs/msg/CompressedImage"),
        ]
    )
    assert find_cameras(both) == ["/back/image_raw/compressed", "/front/color/image_raw"]
    for transport in ("compressedDepth", "zstd", "theora"):  # every image_transport transport
        more = _Bag(
            [
                *((t.name, t.type) for t in both.topics),
                (f"/front/color/image_raw/{transport}", "sensor_msgs/msg/CompressedImage"),
            ]
        )
        assert find_cameras(more) == ["/back/image_raw/compressed", "/front/color/image_raw"], transport


def test_a_frames_ground_truth_is_at_its_stamp_else_the_nearest_within_the_slop():
    """_gt_for: the GT message of the frame's stamp; a rig of free-running cameras stamps its frame
    by its first camera, a GT stamped by another is taken when within the slop, the nearer of two."""
    from gsmap_hd.predict_bag import _gt_for

    gts = {100: "a", 130: "b", 200: "c"}
    st = sorted(gts)
    assert _gt_for(130, gts, st, 0) == "b"
    assert _gt_for(110, gts, st, 10) == "a" and _gt_for(111, gts, st, 10) is None
    assert _gt_for(120, gts, st, 20) == "b"  # 130 is 10 away, 100 is 20
    assert _gt_for(165, gts, st, 50) in ("b", "c") and _gt_for(170, gts, st, 50) == "c"
    assert _gt_for(90, gts, st, 10) == "a" and _gt_for(205, gts, st, 10) == "c"  # (either end)
    assert _gt_for(5, {}, [], 10**9) is None


def test_output_difference_measures_y_against_the_patch_width_and_scales_against_their_range():
    """output_difference: 'x, y relative to the patch extent, sx, sy relative to the scale range' —
    on the default 60 m x 30 m patch with scales in [0.05, 3], a 3 m difference in y is 0.1 and a
    0.59 m difference in sx is 0.2."""
    from gsmap_hd.model_config import ModelConfig
    from gsmap_hd.onnx_export import output_difference

    cfg = ModelConfig()
    params = torch.zeros(1, 2, 3, 5, dtype=torch.float64)
    a, b = params.clone(), params.clone()
    b[0, 1, 2, 1] = 3.0
    b[0, 0, 1, 2] = 0.59
    logits = torch.zeros(1, 2, 3)
    out = output_difference(cfg, {"logits": [logits], "params": [a]}, {"logits": [logits], "params": [b]})
    assert out["y_rel"] == pytest.approx(0.1)
    assert out["scale_rel"] == pytest.approx(0.2)
    assert out["x_rel"] == 0.0 and out["xy_m"] == pytest.approx(3.0)


def test_fit_reason_is_the_first_key_of_torchs_message_cut_at_200_characters():
    """fit_reason: torch's load_state_dict message without its 'Error(s) in loading' header line —
    the first missing/unexpected/mis-sized key — cut to 200 characters (197 + '...')."""
    from gsmap_hd.checkpoint import fit_reason

    msg = 'Error(s) in loading state_dict for GSMapModel:\n\tMissing key(s) in state_dict: "a.b".\n\tmore'
    assert fit_reason(RuntimeError(msg)) == 'Missing key(s) in state_dict: "a.b".'
    long = "x" * 250
    assert fit_reason(ValueError(long)) == "x" * 197 + "..."
    assert fit_reason(ValueError("y" * 200)) == "y" * 200


# ------------------------------------------------------------------------------------------------
# gsmap_hd.train


def test_weights_that_turn_non_finite_between_checkpoints_stop_training_in_one_line(tmp_path, monkeypatch):
    """train: a run whose update makes the weights non-finite stops with the one-line HDDataError
    'training diverged …' (as it does when the loss or the gradient turns non-finite, or when the
    weights do so just before a checkpoint) — here the first update of a 4-step run with
    checkpoints every 100 steps."""
    from test_hd_model_train import _cfg

    from gsmap_hd.errors import HDDataError
    from gsmap_hd.train import train

    real_step, calls = torch.optim.AdamW.step, []

    def blow_up(self, *a, **k):
        real_step(self, *a, **k)
        calls.append(1)
        if len(calls) == 1:
            with torch.no_grad():
                self.param_groups[1]["params"][0].fill_(float("inf"))

    monkeypatch.setattr(torch.optim.AdamW, "step", blow_up)
    with pytest.raises(HDDataError, match="diverged"):
        train(_cfg(steps=4, checkpoint_every=100, eval_every=0), tmp_path, progress=False)


def test_augment_mirrors_a_frame_with_probability_flip_p():
    """augment: 'probability of a left-right mirror of a frame' — flip_p 1 always mirrors (the image
    comes back flipped, GT y negated), 0 never does, and 0.25 mirrors about a quarter of 2,000
    frames (binomial: 500 ± 5σ, σ ≈ 19)."""
    from gsmap_hd.augment import augment
    from gsmap_hd.data import Sample

    ims = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(1, 2, 3, 3)
    K = np.array([[[5.0, 0, 1.0], [0, 5.0, 0.5], [0, 0, 1]]])
    s = Sample(ims, K, np.eye(4)[None], [(0, np.array([[1.0, 2.0], [3.0, 4.0]]))])
    rng = np.random.default_rng(0)
    m, flipped = augment(s, 1.0, 0.0, rng)
    assert flipped
    np.testing.assert_array_equal(m.images, ims[:, :, ::-1])
    np.testing.assert_allclose(m.elements[0][1], [[1.0, -2.0], [3.0, -4.0]])
    assert not any(augment(s, 0.0, 0.0, rng)[1] for _ in range(50))
    n = sum(augment(s, 0.25, 0.0, rng)[1] for _ in range(2000))
    assert abs(n - 500) < 5 * math.sqrt(2000 * 0.25 * 0.75)


def _tiny_model():
    from gsmap_hd.model import GSMapModel
    from gsmap_hd.model_config import ModelConfig, TrainConfig

    cfg = ModelConfig(image_size=(32, 64), bev_h=8, bev_w=4, num_instances=3, num_points=4, embed_dim=16)
    torch.manual_seed(0)
    return GSMapModel(cfg), TrainConfig(model=cfg)


def test_a_weights_only_checkpoint_holds_half_precision_and_loads_back_as_float(tmp_path):
    """checkpoint.save(weights_only=True) (the final model.pt): floating weights stored as float16
    (half the bytes) where they fit, as every one of a freshly initialised model does; integer
    buffers as they are; load_model returns a float32 model equal to the
    original up to fp16 rounding."""
    from gsmap_hd.checkpoint import load_model, save

    model, cfg = _tiny_model()
    path = save(tmp_path / "m.pt", model, cfg, step=7, weights_only=True)
    raw = torch.load(path, weights_only=True)
    loaded, _, _ = load_model(path)
    assert raw["half"] is True
    ref = model.state_dict()
    for k, v in raw["model"].items():
        assert v.dtype == (torch.float16 if ref[k].is_floating_point() else ref[k].dtype), k
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert b.dtype == a.dtype, k
        torch.testing.assert_close(b, a.half().to(a.dtype), msg=k)


def test_a_weights_only_checkpoint_keeps_float32_where_float16_would_lose_a_tensor(tmp_path):
    """checkpoint.save(weights_only=True): a tensor beyond float16's range (±65504, stored as inf) or
    all below its normal range (~6e-5, flushed or coarsened by underflow) stays float32 and loads back
    exactly; one tiny value beside larger ones is float16's rounding at the tensor's scale, so that
    tensor stays float16."""
    from gsmap_hd.checkpoint import load_model, save

    model, cfg = _tiny_model()
    bufs = dict(model.named_buffers())
    names = [k for k in bufs if k.endswith("running_var")][:3]
    bufs[names[0]].fill_(7.0e4)
    bufs[names[1]].fill_(3.0e-8)
    bufs[names[2]].fill_(0.5)[0] = 1e-9
    path = save(tmp_path / "m.pt", model, cfg, weights_only=True)
    raw = torch.load(path, weights_only=True)["model"]
    assert [raw[k].dtype for k in names] == [torch.float32, torch.float32, torch.float16]
    back = dict(load_model(path)[0].named_buffers())
    for k in names[:2]:
        assert torch.equal(back[k], bufs[k]), k
    assert torch.equal(back[names[2]], bufs[names[2]].half().float())


def test_a_checkpoint_is_an_ordinary_file_of_the_umasks_permissions(tmp_path):
    """checkpoint.save writes through a mkstemp file (mode 0600) and renames it: the checkpoint gets
    0666 & ~umask like any file the user writes — 0644 under umask 022, 0660 under 007."""
    from gsmap_hd.checkpoint import save

    model, cfg = _tiny_model()
    for umask, want in ((0o022, 0o644), (0o007, 0o660)):
        old = os.umask(umask)
        try:
            path = save(tmp_path / f"m{umask}.pt", model, cfg, weights_only=True)
        finally:
            os.umask(old)
        assert path.stat().st_mode & 0o777 == want


def test_a_checkpoint_whose_step_is_a_boolean_or_negative_is_refused(tmp_path):
    """load_state: the step is an integer; JSON/pickle booleans are ints to Python, so a step of True
    is refused as 'not a int' like any other wrong type (not read as step 1), and step −1 as negative."""
    from gsmap_hd.checkpoint import load_state, save
    from gsmap_hd.errors import CheckpointError

    model, cfg = _tiny_model()
    path = save(tmp_path / "m.pt", model, cfg, step=1, weights_only=True)
    state = torch.load(path, weights_only=True)
    torch.save({**state, "step": True}, path)
    with pytest.raises(CheckpointError, match="'step' is not a int"):
        load_state(path)
    torch.save({**state, "step": -1}, path)  # and a step before the first is no step
    with pytest.raises(CheckpointError, match="step -1 is negative"):
        load_state(path)


def test_a_model_trained_on_synthetic_scenes_is_described_as_outside_real_cameras_domain():
    """describe_training (logged by hd_map_node at start): a model trained on the driving world or
    on the built-in flat-road scenes — synthetic images only — carries the warning that real cameras
    are outside its domain; one trained on nuScenes does not."""
    from gsmap_hd.checkpoint import describe_training
    from gsmap_hd.model_config import TrainConfig

    for data in ("world", "flat"):
        text = describe_training(TrainConfig(data=data))
        assert "synthetic images only" in text and "Real cameras are outside this domain" in text, data
    assert "Real cameras" not in describe_training(TrainConfig(data="nuscenes"))


# ------------------------------------------------------------------------------------------------
# gsmap_hd.eval_io


def test_an_evaluation_vector_of_class_1_5_or_a_400_digit_coordinate_is_refused_in_one_line():
    """parse_vector: 'type' is 0, 1 or 2 — 1.5 is not read as class 1; a JSON integer of 400 digits is
    not a number a float holds — HDMapError naming the key, not an OverflowError."""
    from gsmap_hd.errors import HDMapError
    from gsmap_hd.eval_io import parse_vector

    good = {"pts": [[0, 0], [0, 10]], "type": 1, "confidence_level": 0.5}
    assert parse_vector(good, "v", True).cls == 1
    with pytest.raises(HDMapError, match=r"v\.type: unknown class 1\.5"):
        parse_vector({**good, "type": 1.5}, "v", True)
    with pytest.raises(HDMapError, match=r"v\.pts\[0\]"):
        parse_vector({**good, "pts": [[10**400, 0], [0, 10]]}, "v", True)


# ------------------------------------------------------------------------------------------------
# gsmap_hd.model_config


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"x_range": (5.0, 5.0)}, "empty BEV range"),
        ({"y_range": (2.0, 2.0)}, "empty BEV range"),
        ({"embed_dim": 30, "num_heads": 4}, "not divisible"),
        ({"num_points": 2}, "num_points must be >= 3"),
        ({"scale_min": 0.5, "scale_init": 0.5}, "scale_min < scale_init < scale_max"),
        ({"scale_init": 3.0, "scale_max": 3.0}, "scale_min < scale_init < scale_max"),
        ({"num_layers": True}, "num_layers: True is not an integer"),
        ({"dropout": 1.0}, "dropout: 1.0 is not a finite number in \\[0, 0.99\\]"),
        ({"bev_h": 4097}, "bev_h: 4097 is not an integer in \\[1, 4096\\]"),
        ({"bev_w": 2.0}, "bev_w: 2.0 is not an integer"),
    ],
)
def test_a_model_config_at_the_edge_of_its_ranges_is_refused(kw, message):
    """ModelConfig: an empty patch (x_min = x_max), embed_dim not a multiple of the heads, fewer than
    3 points (a ring needs them), scales not strictly scale_min < scale_init < scale_max, a boolean
    for a number, a value one past its range, a float for an integer field — a ConfigError naming
    it."""
    from gs_mapping.errors import ConfigError
    from gsmap_hd.model_config import ModelConfig

    with pytest.raises(ConfigError, match=message):
        ModelConfig(**kw)
    ModelConfig(embed_dim=32, num_heads=4, num_points=3, dropout=0.99, bev_h=4096)  # the edges inside
