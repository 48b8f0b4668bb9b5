"""The Gaussian rasteriser: Eq. 6 semantics, cut-off, windowed == dense, float64 gradcheck."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gsmap_hd.gaussians2d import BEVGrid, covariance, gaussians_from_points, orderings, resample
from gsmap_hd.raster import polyline_mask, rasterize, rasterize_dense, ssim

torch.set_num_threads(1)
GRID = BEVGrid((-30.0, 30.0), (-15.0, 15.0), 200, 100)


def test_grid_axes_follow_base_link():
    pix = GRID.pixel_centres()
    assert pix.shape == (200, 100, 2)
    assert pix[0, 0, 0] > pix[-1, 0, 0]  # row 0 is the front (x max)
    assert pix[0, 0, 1] > pix[0, -1, 1]  # column 0 is the left (y max)
    assert torch.allclose(pix[0, 0], torch.tensor([29.85, 14.85]))
    uv = GRID.normalize(torch.tensor([[30.0, 15.0], [-30.0, -15.0]]))
    assert torch.allclose(uv, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))


def test_covariance_formula():
    p = torch.tensor([0.0, 0.0, 2.0, 0.5, math.pi / 6])
    R = torch.tensor(
        [[math.cos(math.pi / 6), -math.sin(math.pi / 6)], [math.sin(math.pi / 6), math.cos(math.pi / 6)]]
    )
    expect = R @ torch.diag(torch.tensor([4.0, 0.25])) @ R.T
    assert torch.allclose(covariance(p), expect, atol=1e-6)


def test_single_gaussian_values_and_cutoff():
    g = BEVGrid((-5.0, 5.0), (-5.0, 5.0), 100, 100)  # 0.1 m pixels, a centre at (0.05, 0.05)
    p = torch.tensor([[[0.05, 0.05, 1.0, 0.5, 0.0]]], dtype=torch.float64)
    occ = rasterize_dense(p, g)[0]
    pix = g.pixel_centres(torch.float64)
    m = ((pix[..., 0] - 0.05) / 1.0) ** 2 + ((pix[..., 1] - 0.05) / 0.5) ** 2
    floor = math.exp(-4.5)
    expect = torch.clamp(torch.exp(-0.5 * m) - floor, min=0) / (1 - floor)
    assert torch.allclose(occ, expect)
    assert occ.max() == pytest.approx(1.0)
    assert torch.all(occ[m > 9.0] == 0)  # nothing beyond 3 sigma
    assert torch.all(occ[m < 8.9] > 0)


def test_union_is_one_minus_product():
    g = BEVGrid((-5.0, 5.0), (-5.0, 5.0), 40, 40)
    p = torch.tensor([[[0.0, 0.0, 1.0, 1.0, 0.0], [1.0, 0.5, 0.7, 0.4, 0.3]]], dtype=torch.float64)
    both = rasterize_dense(p, g)[0]
    a = rasterize_dense(p[:, :1], g)[0]
    b = rasterize_dense(p[:, 1:], g)[0]
    assert torch.allclose(both, 1 - (1 - a) * (1 - b))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(1, 5))
def test_windowed_matches_dense(seed, frames, elements):
    gen = torch.Generator().manual_seed(seed)
    g = BEVGrid((-30.0, 30.0), (-15.0, 15.0), 60, 30)
    p = torch.rand(frames, elements, 6, 5, generator=gen, dtype=torch.float64)
    p[..., 0] = p[..., 0] * 70 - 35  # some centres outside the patch
    p[..., 1] = p[..., 1] * 36 - 18
    p[..., 2:4] = p[..., 2:4] * 3 + 0.1
    p[..., 4] = p[..., 4] * 7 - 3.5
    assert rasterize(p, g).shape == (frames, elements, 60, 30)
    assert torch.allclose(rasterize(p, g), rasterize_dense(p, g), atol=1e-5)


def test_windowed_gradients_match_dense():
    gen = torch.Generator().manual_seed(1)
    g = BEVGrid((-10.0, 10.0), (-10.0, 10.0), 40, 40)
    p = torch.rand(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    p[..., :2] = p[..., :2] * 12 - 6
    p[..., 2:4] += 0.5
    w = torch.rand(2, 3, 40, 40, generator=gen, dtype=torch.float64)
    ga = torch.autograd.grad((rasterize(p.requires_grad_(), g) * w).sum(), p)[0]
    gb = torch.autograd.grad((rasterize_dense(p, g) * w).sum(), p)[0]
    assert torch.allclose(ga, gb, atol=1e-4, rtol=1e-4)


def test_gradcheck_float64():
    g = BEVGrid((-3.0, 3.0), (-3.0, 3.0), 12, 12)
    p = torch.tensor(
        [
            [[0.3, -0.2, 1.2, 0.6, 0.4], [-0.9, 0.8, 0.7, 0.9, -1.1]],
            [[1.1, 0.1, 0.8, 0.5, 2.0], [0.0, -1.3, 1.5, 0.4, 0.2]],
        ],
        dtype=torch.float64,
    )
    p.requires_grad_()
    assert torch.autograd.gradcheck(lambda q: rasterize_dense(q[None], g), (p,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(lambda q: rasterize(q[None], g), (p,), eps=1e-6, atol=1e-5)


def test_polyline_mask_and_gaussians_along_it_overlap():
    g = BEVGrid((-30.0, 30.0), (-15.0, 15.0), 120, 60)
    pts = torch.tensor(resample(np.array([[-20.0, 3.0], [20.0, -3.0]]), 20, False), dtype=torch.float32)
    mask = polyline_mask(pts[None], g, 1.0)[0]
    assert mask.sum() > 0
    occ = rasterize(gaussians_from_points(pts, 0.5)[None], g)[0]
    inter = (occ * mask).sum() / mask.sum()
    assert inter > 0.5


def test_ssim_identity_and_penalty():
    a = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(a, a), torch.ones(2), atol=1e-5)
    assert torch.all(ssim(a, 1 - a) < 0.5)


def test_orderings_are_permutation_equivalent():
    ring = resample(np.array([[0.0, 0], [4, 0], [4, 2], [0, 2]]), 9, closed=True)
    o = orderings(ring, closed=True)
    assert o.shape == (16, 9, 2)
    assert np.allclose(o[:, 0], o[:, -1])  # every ordering stays closed
    assert len({tuple(np.round(x, 6).ravel()) for x in o}) == 16
    line = resample(np.array([[0.0, 0], [10, 0]]), 5, closed=False)
    assert np.allclose(orderings(line, False)[1], line[::-1])
