"""Guards for behaviours a mutation-testing pass found unguarded (sixth round): keyframe and seeding
bounds, the optimiser's loss, view choice and resize rules, the projection's culling bounds, depth
L1, the HD training schedule, loss normalisation and raster warm-up, and node diagnostics. Each test
compares the component with an independent reference (the rule a docstring or parameter help
states, a hand-built input, a numpy or torch re-computation), so that breaking the line it guards
makes it fail."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

# ------------------------------------------------------------------------------------------------
# mapping: keyframes


def _camera(T=None, fx=100.0, fy=100.0, w=32, h=24):
    from gs_mapping.camera import Camera

    K = np.array([[fx, 0, (w - 1) / 2], [0, fy, (h - 1) / 2], [0, 0, 1]])
    return Camera(K, w, h, np.eye(4) if T is None else T)


def _translated(x: float) -> np.ndarray:
    T = np.eye(4)
    T[0, 3] = x
    return T


def test_a_frame_that_moved_exactly_min_translation_is_a_keyframe():
    """'a frame that moved this far from the last keyframe is a keyframe': 0.5 m with
    min_translation_m 0.5 (rotation, overlap and gap rules off) is a translation keyframe."""
    from gs_mapping.mapping.keyframes import KeyframeSelector
    from gs_mapping.mapping.mapper_config import KeyframeConfig

    cfg = KeyframeConfig(min_translation_m=0.5, min_rotation_deg=180.0, min_overlap=0.0, max_gap=0)
    sel = KeyframeSelector(cfg)
    depth = np.full((24, 32), 4.0)
    assert sel.decide(_camera(), depth).reason == "first"
    d = sel.decide(_camera(_translated(0.5)), depth)
    assert d.translation_m == 0.5
    assert (d.is_keyframe, d.reason) == (True, "translation")


def test_a_view_that_still_sees_everything_is_covered_at_overlap_one():
    """min_overlap is the fraction *below which* a view is new: the same view again (overlap 1.0)
    with min_overlap 1.0 is not a keyframe."""
    from gs_mapping.mapping.keyframes import KeyframeSelector
    from gs_mapping.mapping.mapper_config import KeyframeConfig

    cfg = KeyframeConfig(min_translation_m=100.0, min_rotation_deg=180.0, min_overlap=1.0, max_gap=0)
    sel = KeyframeSelector(cfg)
    depth = np.full((24, 32), 4.0)
    sel.decide(_camera(), depth)
    d = sel.decide(_camera(), depth)
    assert d.overlap == 1.0
    assert (d.is_keyframe, d.reason) == (False, "covered")


# ------------------------------------------------------------------------------------------------
# mapping: seeding


def test_depth_at_exactly_max_depth_is_seeded():
    """'farthest depth seeded from': depth == max_depth_m is valid, a hair above is not."""
    from gs_mapping.mapping.mapper_config import SeedingConfig
    from gs_mapping.mapping.seeding import unexplained_mask

    cfg = SeedingConfig(min_depth_m=0.5, max_depth_m=8.0)
    depth = np.array([[0.5, 8.0, np.nextafter(8.0, 9.0), 0.4]])
    assert unexplained_mask(None, None, depth, cfg).tolist() == [[True, True, False, False]]


def test_seed_sigma_uses_the_mean_of_fx_and_fy():
    """σ = scale_factor · stride · z / f with f the mean focal length ((fx + fy) / 2), here fx 400,
    fy 600: f = 500."""
    from gs_mapping.mapping.mapper_config import SeedingConfig
    from gs_mapping.mapping.seeding import seed_gaussians

    cfg = SeedingConfig(stride=2, scale_factor=0.7)
    cam = _camera(fx=400.0, fy=600.0, w=8, h=6)
    depth = np.full((6, 8), 2.0)
    rgb = np.full((6, 8, 3), 0.5)
    mask = np.ones((6, 8), bool)
    out = seed_gaussians(rgb, depth, cam, mask, cfg)
    want = math.log(0.7 * 2 * 2.0 / 500.0)
    np.testing.assert_allclose(out["log_scales"], want, rtol=1e-6)


def test_fill_holes_reaches_exactly_max_px():
    """Invalid pixels 'within max_px of a valid one' are filled: distance 2 with max_px 2 is
    filled, distance 3 is not."""
    from gs_mapping.mapping.seeding import fill_holes

    depth = np.zeros((1, 6), np.float32)
    depth[0, 0] = 3.0
    out = fill_holes(depth, 2)
    assert out.tolist() == [[3.0, 3.0, 3.0, 0.0, 0.0, 0.0]]


# ------------------------------------------------------------------------------------------------
# mapping: optimiser


def test_view_loss_of_an_11_pixel_image_includes_dssim():
    """An 11×11 image holds one full SSIM window: the colour loss is (1 − λ)·L1 + λ·(1 − SSIM)."""
    from gs_mapping.mapping.mapper_config import OptimConfig
    from gs_mapping.mapping.metrics import ssim_map
    from gs_mapping.mapping.optimizer import TrainView, view_loss

    g = torch.Generator().manual_seed(0)
    a = torch.rand(11, 11, 3, generator=g, dtype=torch.float64)
    b = torch.rand(11, 11, 3, generator=g, dtype=torch.float64)
    cfg = OptimConfig(lambda_dssim=0.2, lambda_depth=0.0)
    got = view_loss(a, torch.zeros(11, 11), TrainView(None, b, None), cfg)
    want = 0.8 * (a - b).abs().mean() + 0.2 * (1 - ssim_map(a, b).mean())
    assert ssim_map(a, b).shape == (1, 1)
    assert float(got) == pytest.approx(float(want), rel=1e-9)


def test_newest_fraction_zero_never_picks_the_newest_view():
    """'The newest keyframe is sampled this often (the rest of the window shares the remainder)':
    with newest_fraction 0 every pick is one of the older views, each of them picked."""
    from gs_mapping.mapping.mapper_config import OptimConfig
    from gs_mapping.mapping.optimizer import WindowOptimizer

    opt = WindowOptimizer(OptimConfig(newest_fraction=0.0), render_fn=None)
    views = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    picks = {opt.pick(views, rng) for _ in range(300)}
    assert picks == {"a", "b"}


def test_resized_depth_takes_the_pixel_under_each_output_pixels_centre():
    """Nearest sample: output pixel i reads input pixel floor((i + 0.5) · H / h)."""
    from gs_mapping.mapping.optimizer import resize_depth

    depth = np.arange(36, dtype=np.float32).reshape(6, 6)
    out = resize_depth(depth, 3, 2)
    rows = [int((i + 0.5) * 6 / 2) for i in range(2)]  # 1, 4
    cols = [int((j + 0.5) * 6 / 3) for j in range(3)]  # 1, 3, 5
    assert out.tolist() == depth[np.ix_(rows, cols)].tolist()


class _LevelParams:
    def __init__(self, levels):
        self.levels = np.asarray(levels)
        self.device = "cpu"


class _Out:
    def __init__(self):
        self.color = torch.zeros(4, 4, 3)
        self.depth = torch.zeros(4, 4)


def test_coarse_loss_comes_on_every_loss_every_th_iteration():
    """'Every n-th optimisation iteration adds one coarse render': with loss_every 3 the coarse
    loss is due at iterations 2, 5, 8 (the 3rd, 6th, 9th), not at 0."""
    from gs_mapping.mapping.mapper_config import LevelsConfig, OptimConfig
    from gs_mapping.mapping.optimizer import TrainView, WindowOptimizer

    levels = LevelsConfig(count=2, multi_level_loss=True, loss_weight=1.0, loss_every=3)
    opt = WindowOptimizer(OptimConfig(lambda_depth=0.0), render_fn=lambda p, c: _Out(), levels=levels)
    view = TrainView(None, torch.ones(4, 4, 3), None)
    params = _LevelParams([0, 1])
    due = [it for it in range(9) if opt.coarse_loss(params, view, it) is not None]
    assert due == [2, 5, 8]


# ------------------------------------------------------------------------------------------------
# render: projection culling


def _project_one(mean, width=64, height=64, near=0.01, opacity=0.99, scale=0.001):
    from gs_mapping.render.projection import project

    K = torch.tensor([[100.0, 0, 31.5], [0, 100.0, 31.5], [0, 0, 1]])
    return project(
        torch.tensor([mean], dtype=torch.float32),
        torch.tensor([[0.0, 0, 0, 1]]),
        torch.full((1, 3), scale),
        torch.tensor([opacity]),
        torch.eye(4),
        K,
        width,
        height,
        near=near,
    )


def test_gaussian_at_exactly_the_near_plane_is_rendered():
    """Culled when depth is *outside* [near, far]: z == near is kept."""
    pr = _project_one([0.0, 0.0, 0.5], near=0.5)
    assert bool(pr.valid[0])
    assert not bool(_project_one([0.0, 0.0, 0.49], near=0.5).valid[0])


def test_gaussian_whose_box_reaches_into_the_last_column_is_rendered():
    """Culled only when its box is *entirely* outside the image: a mean right of the image whose
    box's left edge (mean − rx) lies at width − 0.5 is kept; at width + 0.5 it is culled. rx from
    the documented rule: ceil(extend · sqrt(cov_xx)), extend = min(3.33, sqrt(2 ln(255 o))),
    cov_xx = 0.3 + (fx s / z)² (1 + (x / z)²) for a tiny isotropic Gaussian."""
    fx, cx, s, o, width = 100.0, 31.5, 0.001, 0.99, 64
    extend = min(3.33, math.sqrt(2 * math.log(255 * o)))

    def rx_at(u):
        x = (u - cx) / fx
        return math.ceil(extend * math.sqrt(0.3 + (fx * s) ** 2 * (1 + x * x)))

    assert rx_at(width + 1.5) == 2
    inside = _project_one([(width - 0.5 + 2 - cx) / fx, 0.0, 1.0], width=width)
    assert bool(inside.valid[0])
    assert inside.radii[0].tolist() == [2, 2]
    outside = _project_one([(width + 0.5 + 2 - cx) / fx, 0.0, 1.0], width=width)
    assert not bool(outside.valid[0])


# ------------------------------------------------------------------------------------------------
# mapping: metrics


def test_depth_l1_ignores_pixels_with_zero_measured_depth():
    """'over pixels with valid (> 0, finite) measured depth': a 0 measurement is left out."""
    from gs_mapping.mapping.metrics import depth_l1

    rendered = np.array([5.0, 1.0, 7.0])
    measured = np.array([0.0, 2.0, np.nan])
    assert depth_l1(rendered, measured) == 1.0


# ------------------------------------------------------------------------------------------------
# gsmap_hd: training schedule and losses


def test_lr_warmup_starts_above_zero_and_reaches_one_at_its_last_step():
    """Linear warm-up: step 0 already learns (1 / warmup), the last warm-up step is at full rate,
    and the cosine starts from 1."""
    from gsmap_hd.model_config import TrainConfig
    from gsmap_hd.train import lr_factor

    cfg = TrainConfig(steps=100, warmup_steps=10)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)


def test_lr_stays_at_its_floor_after_the_last_step():
    """The cosine ends at the 1e-3 floor and stays there past cfg.steps (it does not rise again)."""
    from gsmap_hd.model_config import TrainConfig
    from gsmap_hd.train import lr_factor

    cfg = TrainConfig(steps=100, warmup_steps=10)
    assert lr_factor(99, cfg) == pytest.approx(1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * 89 / 90)))
    for step in (100, 140, 190):
        assert lr_factor(step, cfg) == pytest.approx(1e-3)


def test_backbone_parameters_learn_at_lr_times_backbone_lr_mult():
    from gsmap_hd.model_config import TrainConfig
    from gsmap_hd.train import _param_groups

    class Stand(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Linear(2, 2)
            self.head = torch.nn.Linear(2, 1)

    m = Stand()
    cfg = TrainConfig(lr=6e-4, backbone_lr_mult=0.1)
    bb, rest = _param_groups(m, cfg)
    assert bb["lr"] == pytest.approx(6e-5)
    assert rest["lr"] == pytest.approx(6e-4)
    assert {id(p) for p in bb["params"]} == {id(p) for p in m.backbone.parameters()}
    assert {id(p) for p in rest["params"]} == {id(p) for p in m.head.parameters()}


def test_raster_scale_ramps_to_one_and_stays_there():
    """'ramps in linearly over raster_warmup_steps': half way 0.5, after it 1.0 (never above)."""
    from gsmap_hd.losses import GSMapCriterion
    from gsmap_hd.model_config import LossConfig

    crit = object.__new__(GSMapCriterion)
    crit.l = LossConfig(raster_warmup_steps=200)
    assert crit.raster_scale(100) == 0.5
    assert crit.raster_scale(200) == 1.0
    assert crit.raster_scale(1000) == 1.0
    assert crit.raster_scale(None) == 1.0


def test_raster_term_without_raster_aux_goes_to_the_last_decoder_layer_only(monkeypatch):
    """raster_aux False: 'raster term on ... the last [layer] only'."""
    from gsmap_hd.losses import GSMapCriterion
    from gsmap_hd.model_config import LossConfig

    crit = object.__new__(GSMapCriterion)
    crit.l = LossConfig(raster_aux=False, aux_loss=True, raster_warmup_steps=0)
    seen = []

    def layer_loss(lg, pr, targets, raster_scale=1.0):
        seen.append((int(lg), raster_scale))
        return {"total": torch.tensor(1.0), "cls": torch.tensor(0.0)}

    monkeypatch.setattr(crit, "layer_loss", layer_loss, raising=False)
    crit({"logits": [0, 1, 2], "params": [0, 1, 2]}, [])
    assert seen == [(0, 0.0), (1, 0.0), (2, 1.0)]


def test_vector_loss_is_the_l1_per_gt_point_in_normalised_patch_coordinates(monkeypatch):
    """'vector: L1 between matched Gaussian centres and the GT points ... (normalised patch
    coordinates)': the sum of |Δu| + |Δv| divided by (GT elements · points per element)."""
    import gsmap_hd.losses as losses
    from gsmap_hd.losses import GSMapCriterion
    from gsmap_hd.matching import FrameTargets
    from gsmap_hd.model_config import LossConfig, ModelConfig

    m = ModelConfig()
    crit = GSMapCriterion(m, LossConfig(raster_weight=0.0))
    k = m.num_points
    E, C = 3, 3
    g = torch.Generator().manual_seed(1)
    params = torch.rand(1, E, k, 6, generator=g)
    params[..., 0] = params[..., 0] * 10 - 5
    params[..., 1] = params[..., 1] * 10 - 5
    gt_pts = torch.rand(2, k, 2, generator=g) * 8 - 4
    t = FrameTargets(
        labels=torch.tensor([0, 1]),
        points=gt_pts,
        orders=gt_pts[:, None],
        order_valid=torch.ones(2, 1, dtype=torch.bool),
        masks=torch.zeros(2, 4, 4),
        cost_masks=torch.zeros(2, 2, 2),
    )
    rows, cols = torch.tensor([2, 0]), torch.tensor([0, 1])
    monkeypatch.setattr(losses, "hungarian_match", lambda *a: (rows, cols, torch.tensor([0, 0])))
    out = crit.layer_loss(torch.zeros(1, E, C), params, [t])
    sx = m.x_range[1] - m.x_range[0]
    sy = m.y_range[1] - m.y_range[0]
    d = params[0, rows, :, :2] - gt_pts[cols]
    want = ((d[..., 0].abs() / sx).sum() + (d[..., 1].abs() / sy).sum()) / (2 * k)
    assert float(out["pts"]) == pytest.approx(float(want), rel=1e-5)


# ------------------------------------------------------------------------------------------------
# nodes: diagnostics


def test_latency_p95_is_the_95th_percentile():
    from gs_mapping.nodes.diagnostics import NodeDiagnostics as Diagnostics

    diag = Diagnostics("t")
    values = np.random.default_rng(3).uniform(0.0, 1.0, 50)
    for v in values:
        diag.latency("map", float(v))
    st = diag.latency_stats("map")
    assert st["p95_ms"] == pytest.approx(float(np.percentile(values, 95)) * 1e3)
    assert st["p50_ms"] == pytest.approx(float(np.median(values)) * 1e3)


def test_a_dropped_input_alone_raises_the_level_to_warn():
    """The status says 'inputs rejected or dropped': a drop alone is a WARN."""
    from gs_mapping.nodes.diagnostics import OK, WARN
    from gs_mapping.nodes.diagnostics import NodeDiagnostics as Diagnostics

    diag = Diagnostics("t")
    assert diag.level() == OK
    diag.drop("frame", "queue full")
    assert diag.level() == WARN


# ------------------------------------------------------------------------------------------------
# mapping: levels and calibration


def test_finer_stops_at_the_finest_level():
    """'One level finer (capped at the finest)': with 4 levels the finest is 3."""
    from gs_mapping.mapping.levels import finer

    assert finer(np.array([0, 1, 2, 3]), 4).tolist() == [1, 2, 3, 3]
    assert finer(np.array([0]), 1).tolist() == [0]


def _disc_seeds(n, thick):
    return {
        "quats": np.tile(np.array([0, 0, 0, 1], np.float32), (n, 1)),
        "log_scales": np.full((n, 3), thick, np.float32),
        "opacity_logits": np.full(n, math.log(0.7 / 0.3), np.float32),
    }


def test_coarse_discs_leave_finest_level_seeds_alone():
    """A finest-level seed gets no disc; a level-0 seed with a normal gets one (appended, at level 0,
    in-plane σ coarse_scale · base_voxel_m, opacity coarse_opacity) and itself goes to the finest
    level unchanged. (It used to be reshaped into the disc in place, which biased the full map's
    depth toward the camera: test_outside_map_quality.py.)"""
    from gs_mapping.mapping.levels import coarse_discs
    from gs_mapping.mapping.mapper_config import LevelsConfig

    cfg = LevelsConfig(count=3, base_voxel_m=0.4, coarse_scale=0.5, coarse_opacity=0.2)
    seeds = _disc_seeds(2, math.log(0.01))
    normals = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out, levels = coarse_discs(seeds, np.array([0, 2], np.uint8), normals, cfg)
    assert levels.tolist() == [2, 2, 0]
    np.testing.assert_allclose(
        out["log_scales"][2], [math.log(0.2), math.log(0.2), math.log(0.01)], rtol=1e-6
    )
    np.testing.assert_allclose(out["opacity_logits"][2], math.log(0.2 / 0.8), rtol=1e-6)
    for k in seeds:  # the seeds themselves as they were
        np.testing.assert_array_equal(out[k][:2], seeds[k])


def test_coarse_disc_is_never_thinner_in_plane_than_the_seed():
    """The disc's in-plane σ is coarse_scale · voxel, but never below the seed's own thickness (a
    seed larger than the disc keeps its size in the plane)."""
    from gs_mapping.mapping.levels import coarse_discs
    from gs_mapping.mapping.mapper_config import LevelsConfig

    cfg = LevelsConfig(count=3, base_voxel_m=0.4, coarse_scale=0.5)
    thick = math.log(0.3)  # larger than 0.5 · 0.4 = 0.2
    seeds = _disc_seeds(1, thick)
    out, _ = coarse_discs(seeds, np.array([0], np.uint8), np.array([[0.0, 0.0, 1.0]]), cfg)
    np.testing.assert_allclose(out["log_scales"][1], [thick] * 3, rtol=1e-6)


def test_bilinear_read_at_the_last_column_is_valid():
    """A sample exactly on the last pixel column (u = w − 1) lies inside the image: it is valid
    and reads that pixel."""
    from gs_mapping.mapping.calibration import _bilinear

    img = np.arange(36, dtype=np.float64).reshape(3, 4, 3)
    val, ok = _bilinear(img, np.array([[3.0, 1.0], [3.5, 1.0], [1.5, 2.0]]))
    assert ok.tolist() == [True, False, True]
    np.testing.assert_allclose(val[0], img[1, 3])
    np.testing.assert_allclose(val[2], 0.5 * (img[2, 1] + img[2, 2]))


# ------------------------------------------------------------------------------------------------
# world: painted lane lines


def test_only_the_centre_line_of_a_yellow_centre_road_is_yellow():
    """Three lanes, one forward: the line between the directions (k = 1) is solid and yellow, the
    line between the two same-direction lanes (k = 2) dashed and white."""
    from gs_mapping.world.roads import PAINT_WHITE, PAINT_YELLOW, Road

    pts = np.array([[0.0, 0.0], [10.0, 0.0]])
    road = Road("r", pts, np.zeros(2), n_lanes=3, lane_width=3.0, n_forward=1, yellow_centre=True)
    assert road.dividers() == [(-1.5, False, PAINT_YELLOW), (1.5, True, PAINT_WHITE)]


def test_dashes_leave_out_a_stub_of_less_than_half_a_metre_at_the_end():
    """Dashes start every DASH + GAP metres; one that would start within 0.5 m of the line's end is
    not painted (no stub shorter than 0.5 m)."""
    from shapely.geometry import LineString

    from gs_mapping.world.roads import DASH, GAP, _dashes

    period = DASH + GAP
    stub = _dashes(LineString([(0.0, 0.0), (period + 0.3, 0.0)]))
    assert [round(d.length, 9) for d in stub] == [DASH]
    longer = _dashes(LineString([(0.0, 0.0), (period + 0.7, 0.0)]))
    assert [round(d.length, 9) for d in longer] == [DASH, 0.7]


# ------------------------------------------------------------------------------------------------
# gsmap_hd: lane map fusion


class _Obs:
    def __init__(self, cls, score, points):
        self.cls, self.score, self.points = cls, score, points


def _straight_line():
    return np.stack([np.linspace(0.0, 20.0, 21), np.zeros(21)], 1)


def test_an_observation_scored_exactly_min_score_is_fused():
    """'observations below this are ignored': a score equal to min_score is used."""
    from gsmap_hd.lane_map import LaneMap, LaneMapConfig

    lm = LaneMap(LaneMapConfig(min_score=0.5))
    stats = lm.update([_Obs(0, 0.5, _straight_line())])
    assert stats["new"] == 1 and len(lm.tracks) == 1
    lm2 = LaneMap(LaneMapConfig(min_score=0.5))
    lm2.update([_Obs(0, np.nextafter(0.5, 0.0), _straight_line())])
    assert len(lm2.tracks) == 0


def test_a_track_seen_min_hits_times_is_confirmed_and_outlives_tentative_misses():
    """A track with min_hits sightings is confirmed ('a tentative track (fewer than min_hits
    sightings)'): unseen inside the covered region it goes after max_misses misses, not after
    tentative_misses."""
    from shapely.geometry import box

    from gsmap_hd.lane_map import LaneMap, LaneMapConfig

    cfg = LaneMapConfig(min_hits=2, tentative_misses=2, tentative_age=100, max_misses=5, min_support=0.0)
    lm = LaneMap(cfg)
    region = box(-5, -5, 25, 5)
    for _ in range(2):
        lm.update([_Obs(0, 0.9, _straight_line())], region)
    (t,) = lm.tracks.values()
    assert t.hits == 2 and len(lm.published()) == 1
    for _ in range(4):
        lm.update([], region)
    assert len(lm.tracks) == 1 and lm.tracks[t.id].misses == 4
    lm.update([], region)
    assert len(lm.tracks) == 0


# ------------------------------------------------------------------------------------------------
# rendering


def test_reference_backend_takes_exactly_its_element_limit(monkeypatch):
    """The dense reference backend refuses N × H × W *above* REFERENCE_MAX_ELEMENTS: at the limit
    it renders (here the limit set to 2 × 4 × 4)."""
    import gs_mapping.render.api as api

    monkeypatch.setattr(api, "REFERENCE_MAX_ELEMENTS", 2 * 4 * 4)

    def go(n):
        K = torch.tensor([[4.0, 0, 1.5], [0, 4.0, 1.5], [0, 0, 1]])
        return api.rasterize(
            torch.tensor([[0.0, 0.0, 2.0]] * n),
            torch.tensor([[0.0, 0, 0, 1]] * n),
            torch.full((n, 3), 0.2),
            torch.full((n,), 0.9),
            torch.full((n, 1, 3), 0.5),
            torch.eye(4),
            K,
            4,
            4,
            backend="reference",
        )

    assert go(2).color.shape == (4, 4, 3)
    with pytest.raises(api.RenderError, match="dense"):
        go(3)


# ------------------------------------------------------------------------------------------------
# runtime: replay clock


def test_replay_timer_fires_at_exactly_its_due_stamp_and_the_clock_never_goes_back():
    """A timer of period 1 s created at t = 0 fires when bag time reaches 1 s exactly; an older
    stamp after that does not move 'now' back."""
    from gs_mapping.runtime.replay import ReplayBus

    bus = ReplayBus()
    ctx = bus.context("n")
    fired = []
    ctx.create_timer(1.0, lambda: fired.append(bus.now_ns))
    bus.advance(0)
    bus.advance(999_999_999)
    assert fired == []
    bus.advance(1_000_000_000)
    assert fired == [1_000_000_000]
    bus.advance(500_000_000)
    assert ctx.now_ns() == bus.now_ns == 1_000_000_000
    bus.advance(2_000_000_000)
    assert fired == [1_000_000_000, 2_000_000_000]
