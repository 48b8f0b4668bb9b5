"""Guards for lines a random-sample mutation pass (26th round, seed 2403) found unguarded: the
trainable Gaussians' activated opacities, the optimiser's area resize of colour images, the keyframe
view overlap's last pixel row, the loss weights' lower bound, a two-vertex polygon in clip_element,
the Predictor's 4x4 extrinsic check and its RGB channel order, the CPU rasteriser's ``tile``
argument, the mapper's final-refinement timing and the nuScenes reader's list of scenes.
Each test compares the component with an independent reference (a numpy re-computation, the
pixel-edge convention, a hand-computed tile count, a docstring's rule, a clock read around the
call, hand-built nuScenes tables), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from hd_tiny import tiny_config

# ------------------------------------------------------------------------------------------------
# mapping.params: activated() gives the renderer opacities in (0, 1), not raw logits


def test_activated_opacities_are_the_sigmoid_of_the_logits():
    """activated(): '(means, unit quats xyzw, scales, opacities, sh) as the renderer takes them' —
    opacity = 1 / (1 + exp(-logit)), scale = exp(log_scale), re-computed here with numpy."""
    from gs_mapping.mapping.params import TorchGaussians

    p = TorchGaussians(0)
    logits = np.array([-3.0, 0.0, 0.7, 4.0])
    log_scales = np.log(np.array([[0.1, 0.2, 0.3]] * 4))
    p.append(
        np.zeros((4, 3)),
        np.tile([0.0, 0.0, 0.0, 2.0], (4, 1)),  # not unit: activated() normalises
        log_scales,
        logits,
        np.zeros((4, 1, 3)),
    )
    _, q, scales, opac, _ = (t.detach().numpy() for t in p.activated())
    assert np.allclose(opac, 1.0 / (1.0 + np.exp(-logits)), atol=1e-6)
    assert np.allclose(scales, np.exp(log_scales), atol=1e-6)
    assert np.allclose(q, [[0, 0, 0, 1.0]] * 4)


# ------------------------------------------------------------------------------------------------
# mapping.optimizer: colour is averaged when shrunk (depth is not: resize_depth's docstring)


def test_resize_rgb_averages_each_block_of_pixels():
    """Shrinking by 2 in each axis: each output pixel is the mean of its 2x2 block (area resampling,
    as OpenCV's INTER_AREA); a nearest-sample resize would keep one of the four."""
    from gs_mapping.mapping.optimizer import resize_rgb

    rng = np.random.default_rng(3)
    rgb = rng.random((6, 8, 3)).astype(np.float32)
    out = resize_rgb(rgb, 4, 3)
    want = rgb.reshape(3, 2, 4, 2, 3).mean(axis=(1, 3))
    assert out.shape == (3, 4, 3)
    assert np.allclose(out, want, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# mapping.keyframes: the image spans [-0.5, H - 0.5) in rows (pixel centres at integers)


def test_view_overlap_ends_at_the_lower_edge_of_the_last_row():
    """A 640x480 camera: rows 479.4 (inside the last pixel) count, rows 479.5 (its lower edge, the
    half-open end) and 480.0 (the centre of a row that does not exist) do not."""
    from gs_mapping.camera import Camera
    from gs_mapping.mapping.keyframes import view_overlap

    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    cam = Camera(K, 640, 480)
    z = 2.0

    def pts(v):
        return np.array([[(320 - 319.5) / 500 * z, (v - 239.5) / 500 * z, z]])

    assert view_overlap(pts(479.4), cam) == 1.0
    assert view_overlap(pts(479.5), cam) == 0.0
    assert view_overlap(pts(480.0), cam) == 0.0


# ------------------------------------------------------------------------------------------------
# model_config: a loss weight is a non-negative number (0 = that term off, "the vector only ablation")


@pytest.mark.parametrize("name", ["cls_weight", "pts_weight", "raster_weight", "bce_weight", "dssim_weight"])
def test_a_negative_loss_weight_is_refused(name):
    """A negative weight would make training maximise that loss: ConfigError naming the field;
    0 (the ablation) is accepted."""
    from gs_mapping.errors import ConfigError
    from gsmap_hd.model_config import LossConfig

    LossConfig(**{name: 0.0})
    with pytest.raises(ConfigError, match=name):
        LossConfig(**{name: -1.0})


# ------------------------------------------------------------------------------------------------
# region.clip_element: a polygon needs three vertices


@pytest.mark.parametrize("pts", [[[0.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [40.0, 0.0]]])
def test_a_two_vertex_polygon_clips_to_nothing(pts):
    """Two vertices enclose no area: no piece, whether it lies inside the patch or crosses its edge
    (a 40 m segment leaves the ±30 m patch)."""
    from gsmap_hd.region import clip_element, make_region

    region = make_region("patch", (-30.0, 30.0), (-15.0, 15.0))
    assert clip_element(np.array(pts), True, region) == []


# ------------------------------------------------------------------------------------------------
# infer.Predictor: its inputs


def _tiny_predictor():
    from gsmap_hd.infer import Predictor
    from gsmap_hd.model import GSMapModel

    torch.manual_seed(0)
    cfg = tiny_config()
    return Predictor(GSMapModel(cfg))


def _front_camera():
    from gs_mapping.camera import Camera

    K = np.array([[40.0, 0, 31.5], [0, 40.0, 15.5], [0, 0, 1]])
    return Camera(K, 64, 32)


def _T_base_optical():
    T = np.eye(4)
    T[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # REP-103 optical frame → base_link
    T[2, 3] = 1.5
    return T


def test_predictor_refuses_an_extrinsic_that_is_not_4x4():
    """'extrinsic T_ego_cam must be 4x4': a 3x4 [R|t] is an input error naming the shape."""
    from gsmap_hd.errors import HDInputError

    im = np.zeros((32, 64, 3), np.uint8)
    with pytest.raises(HDInputError, match="4x4"):
        _tiny_predictor().predict([im], [_front_camera()], [_T_base_optical()[:3]])


def test_predictor_model_inputs_keep_the_rgb_channel_order():
    """model_inputs: 'images (N, 3, h, w) in [0, 1]' of the RGB images given: a pure red image at the
    model's size is 1 in channel 0 and 0 in channels 1 and 2."""
    red = np.zeros((32, 64, 3), np.uint8)
    red[..., 0] = 255
    x, _, T = _tiny_predictor().model_inputs([red], [_front_camera()], [_T_base_optical()])
    assert x.shape == (1, 3, 32, 64)
    assert torch.allclose(x[0, 0], torch.ones(32, 64), atol=1e-6)
    assert torch.allclose(x[0, 1:], torch.zeros(2, 32, 64), atol=1e-6)
    assert np.allclose(T[0].numpy(), _T_base_optical())


# ------------------------------------------------------------------------------------------------
# render.cpu.rasterize_tiles: ``tile`` sets the tile size (n_pairs counts (Gaussian, tile) pairs)


def test_rasterize_tiles_uses_the_tile_size_it_is_given():
    """One round Gaussian (σ = 1 px, radius 2 px) centred at (12, 12) in a 32x32 image: its box
    [10, 14]² lies in one 8x8 tile (tile 1, 1) but spans 2x2 tiles of 4x4 (2..3 each way). The
    image is the same whatever the tile size."""
    from gs_mapping.render.cpu import rasterize_tiles

    args = (
        torch.tensor([[12.0, 12.0]]),
        torch.tensor([[1.0, 0.0, 1.0]]),
        torch.tensor([0.9]),
        torch.tensor([[1.0, 0.5, 0.25]]),
        torch.tensor([[2, 2]], dtype=torch.int32),
        torch.tensor([1.0]),
        32,
        32,
    )
    img8, n8, _ = rasterize_tiles(*args, tile=8)
    img4, n4, _ = rasterize_tiles(*args, tile=4)
    assert (n8, n4) == (1, 4)
    assert torch.allclose(img8, img4, atol=1e-6)
    # the centre pixel's weight is the opacity at distance (0.5, 0.5): 0.9·exp(-0.25)
    assert img8[12, 12, 0].item() == pytest.approx(0.9 * math.exp(-0.25), rel=1e-5)


# ------------------------------------------------------------------------------------------------
# mapping.mapper: stats.refine_seconds is the wall time finish() took


def test_refine_seconds_is_the_time_finish_took():
    """refine_seconds (run_mapping's seconds_refine) is the duration of the final refinement: between
    0 and the wall time read around finish()."""
    from mapper_configs import small_cpu_config

    from gs_mapping.camera import Camera
    from gs_mapping.mapping import Frame, IncrementalMapper

    W, H = 24, 18
    K = np.array([[20.0, 0, (W - 1) / 2], [0, 20.0, (H - 1) / 2], [0, 0, 1]])
    v, u = np.mgrid[0:H, 0:W]
    rgb = np.stack([0.5 + 0.4 * np.sin(u / 3), 0.5 + 0.4 * np.cos(v / 3), 0.3 + 0 * u], -1)
    cfg = small_cpu_config(2)
    cfg.optim.render_scale = 1.0
    cfg.optim.refine_iterations = 2
    torch.manual_seed(0)
    m = IncrementalMapper(cfg, "cpu")
    for i in range(2):
        T = np.eye(4)
        T[0, 3] = 0.05 * i
        depth = np.full((H, W), 1.5, np.float32)
        m.add_frame(Frame(rgb.astype(np.float32), depth, Camera(K, W, H, T), stamp_ns=i * 10**8, index=i))
    assert m.stats.keyframes >= 1
    t0 = time.perf_counter()
    m.finish()
    wall = time.perf_counter() - t0
    assert 0.0 < m.stats.refine_seconds <= wall


# ------------------------------------------------------------------------------------------------
# nuscenes.NuScenesMapGT.sample_tokens: every scene of the tables, in their order


def test_sample_tokens_cover_every_scene_in_table_order(tmp_path):
    """The tiny dataset of test_hd_nuscenes, its two samples split into two scenes (scene-0061: sm_a,
    scene-0103: sm_b): all samples come scene by scene, and each scene can be asked for by name."""
    pytest.importorskip("nuscenes", reason="nuscenes-devkit not installed")
    import json

    from test_hd_nuscenes import write_dataset

    from gsmap_hd import nuscenes as nu

    write_dataset(tmp_path)
    tables = tmp_path / "v1.0-mini"
    scene = json.loads((tables / "scene.json").read_text())[0]
    scenes = [
        {**scene, "nbr_samples": 1, "last_sample_token": "sm_a"},
        {
            **scene,
            "token": "sc1",
            "nbr_samples": 1,
            "first_sample_token": "sm_b",
            "last_sample_token": "sm_b",
            "name": "scene-0103",
        },
    ]
    samples = json.loads((tables / "sample.json").read_text())
    samples[0]["next"] = samples[1]["prev"] = ""
    samples[1]["scene_token"] = "sc1"
    (tables / "scene.json").write_text(json.dumps(scenes))
    (tables / "sample.json").write_text(json.dumps(samples))
    gt = nu.NuScenesMapGT(tmp_path, "v1.0-mini")
    assert gt.scenes() == ["scene-0061", "scene-0103"]
    assert gt.sample_tokens() == ["sm_a", "sm_b"]
    assert gt.sample_tokens(["scene-0103"]) == ["sm_b"]
    assert gt.sample_tokens(["scene-0103", "scene-0061"]) == ["sm_b", "sm_a"]
