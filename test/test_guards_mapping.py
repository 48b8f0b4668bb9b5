"""The mapper's loss against hand-computed values: L1 + D-SSIM on colour, L1 on valid depth (the
terms of the 3DGS / GS-Share objective), and SSIM against an independent implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from gs_mapping.camera import Camera
from gs_mapping.mapping.mapper_config import OptimConfig
from gs_mapping.mapping.metrics import psnr, ssim
from gs_mapping.mapping.optimizer import TrainView, view_loss


def _view(rgb, depth, mask=None):
    K = np.array([[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]])
    cam = Camera(K, rgb.shape[1], rgb.shape[0], np.eye(4), "cam")
    m = None if mask is None else torch.as_tensor(mask)
    return TrainView(cam, torch.as_tensor(rgb), torch.as_tensor(depth), m)


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    rgb = rng.random((12, 16, 3)).astype(np.float32)
    color = np.clip(rgb + rng.normal(0, 0.1, rgb.shape), 0, 1).astype(np.float32)
    depth = rng.uniform(1, 4, (12, 16)).astype(np.float32)
    depth[::3, ::2] = 0  # invalid measurements
    rendered = (depth + rng.normal(0, 0.2, depth.shape)).astype(np.float32)
    return rgb, color, depth, rendered


def test_depth_term_is_l1_over_valid_depth(images):
    rgb, _, depth, rendered = images
    cfg = OptimConfig()
    assert cfg.lambda_depth > 0
    loss = view_loss(torch.as_tensor(rgb), torch.as_tensor(rendered), _view(rgb, depth), cfg)
    valid = depth > 0
    want = cfg.lambda_depth * np.abs(rendered[valid] - depth[valid]).mean()
    assert float(loss) == pytest.approx(want, rel=1e-5)  # identical colour: only the depth term


def test_colour_terms_are_weighted_l1_and_dssim(images):
    rgb, color, depth, _ = images
    cfg = OptimConfig()
    loss = view_loss(torch.as_tensor(color), torch.as_tensor(depth), _view(rgb, depth), cfg)
    l1 = np.abs(color - rgb).mean()
    want = (1 - cfg.lambda_dssim) * l1 + cfg.lambda_dssim * (1 - reference_ssim(color, rgb))
    assert float(loss) == pytest.approx(want, rel=1e-4)


def test_masked_view_uses_masked_l1_and_masked_depth(images):
    rgb, color, depth, rendered = images
    cfg = OptimConfig()
    mask = np.zeros(depth.shape, bool)
    mask[2:9, 3:12] = True
    view = _view(rgb, depth, mask)
    view.weight = 0.5
    loss = view_loss(torch.as_tensor(color), torch.as_tensor(rendered), view, cfg)
    valid = mask & (depth > 0)
    want = np.abs(color - rgb)[mask].mean() + cfg.lambda_depth * np.abs(rendered - depth)[valid].mean()
    assert float(loss) == pytest.approx(0.5 * want, rel=1e-5)


def test_depth_gradient_reaches_only_valid_pixels(images):
    rgb, _, depth, rendered = images
    d = torch.as_tensor(rendered).requires_grad_(True)
    view_loss(torch.as_tensor(rgb), d, _view(rgb, depth), OptimConfig()).backward()
    g = d.grad.numpy()
    assert np.all(g[depth == 0] == 0) and np.all(g[depth > 0] != 0)


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 with scipy's Gaussian filter (σ 1.5, 11 taps), valid windows, channel mean."""
    a, b = a.astype(np.float64), b.astype(np.float64)

    def blur(x):
        for axis in (0, 1):
            x = gaussian_filter1d(x, 1.5, axis=axis, truncate=5 / 1.5, mode="constant")
        return x[5:-5, 5:-5]

    mx, my = blur(a), blur(b)
    sxx, syy, sxy = blur(a * a) - mx * mx, blur(b * b) - my * my, blur(a * b) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def test_ssim_and_psnr_match_independent_formulas(images):
    rgb, color, _, _ = images
    assert ssim(color, rgb) == pytest.approx(reference_ssim(color, rgb), abs=1e-6)
    assert ssim(rgb, rgb) == pytest.approx(1.0)
    mse = np.mean((color.astype(np.float64) - rgb) ** 2)
    assert psnr(color, rgb) == pytest.approx(-10 * np.log10(mse))


def test_hd_mask_ssim_is_the_same_ssim_with_zero_padding():
    """gsmap_hd's mask SSIM (N, H, W) is this module's SSIM with zeros beyond the border."""
    from gsmap_hd.raster import ssim as mask_ssim

    rng = np.random.default_rng(1)
    a = rng.random((3, 20, 24))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    got = mask_ssim(torch.as_tensor(a), torch.as_tensor(b)).numpy()

    def ref(x, y):
        def blur(z):
            for axis in (0, 1):
                z = gaussian_filter1d(z, 1.5, axis=axis, truncate=5 / 1.5, mode="constant")
            return z

        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        c1, c2 = 0.01**2, 0.03**2
        return (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean()

    assert np.allclose(got, [ref(x, y) for x, y in zip(a, b, strict=True)], atol=1e-9)


def _ssim_through_conv(x, y, zero_pad):
    """SSIM of (B, C, H, W) batches as the formula reads, blurred with a depthwise convolution, so that
    autograd differentiates it term by term: the reference for the closed-form gradient."""
    t = torch.arange(11, dtype=x.dtype) - 5
    g = torch.exp(-t * t / (2 * 1.5**2))
    g = g / g.sum()
    c, pad = x.shape[1], 5 if zero_pad else 0

    def blur(z):
        z = torch.nn.functional.conv2d(z, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c, padding=(0, pad))
        return torch.nn.functional.conv2d(
            z, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c, padding=(pad, 0)
        )

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))


@pytest.mark.parametrize("zero_pad", [False, True])
def test_ssim_gradient_in_closed_form_equals_autograd_through_the_formula(zero_pad):
    """SSIM's gradient (written out, metrics._SsimFn) equals autograd through the formula, for both
    images (the second through its blurred mean and variance too), valid windows and zero padding."""
    from gs_mapping.mapping.metrics import ssim_nchw

    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 19, 23, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 3, 19, 23, generator=gen, dtype=torch.float64, requires_grad=True)
    got, want = ssim_nchw(x, y, zero_pad=zero_pad), _ssim_through_conv(x, y, zero_pad)
    assert got.shape == want.shape and torch.allclose(got, want, rtol=0, atol=1e-12)
    up = torch.randn(got.shape, generator=gen, dtype=torch.float64)
    gx, gy = torch.autograd.grad(got, (x, y), up)
    wx, wy = torch.autograd.grad(want, (x, y), up)
    assert torch.allclose(gx, wx, rtol=0, atol=1e-12) and torch.allclose(gy, wy, rtol=0, atol=1e-12)
    assert gx.abs().max() > 1e-3 and gy.abs().max() > 1e-3
    # and against finite differences, on a small case
    xs, ys = x[:1, :1, :13, :14].detach(), y[:1, :1, :13, :14].detach()
    assert torch.autograd.gradcheck(
        lambda a, b: ssim_nchw(a, b, zero_pad=zero_pad), (xs.requires_grad_(), ys.requires_grad_())
    )


def test_view_loss_keeps_each_views_ssim_target_and_drops_the_least_recently_used(images):
    """The loss with the views' SSIM halves kept between calls is the loss made from scratch (value
    and gradient, bit for bit); the cache holds ``limit`` views and drops the least recently used."""
    from gs_mapping.mapping.optimizer import SsimTargets

    rgb, color, depth, rendered = images
    views = [_view(np.roll(rgb, i, axis=1), depth) for i in range(3)]
    cfg = OptimConfig()
    kept = SsimTargets(limit=2)
    for v in [*views, views[0], views[2]]:
        grads = []
        for targets in (None, kept):
            c = torch.as_tensor(color).requires_grad_(True)
            loss = view_loss(c, torch.as_tensor(rendered), v, cfg, targets)
            loss.backward()
            grads.append((loss.detach(), c.grad))
        assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    t2 = kept.of(views[2])
    t0 = kept.of(views[0])
    assert kept.of(views[2]) is t2  # kept, not made again; now the most recently used
    t1 = kept.of(views[1])  # comes in: 0, the least recently used, goes
    assert kept.of(views[2]) is t2 and kept.of(views[1]) is t1
    assert kept.of(views[0]) is not t0  # made again
