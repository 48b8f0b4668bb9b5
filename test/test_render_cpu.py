"""The CPU tile rasteriser equals the dense reference (forward and every gradient) to 1e-5."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gs_mapping.geometry import quat_to_matrix
from gs_mapping.render import cpu as cpu_mod
from gs_mapping.render import rasterize

F64 = torch.float64


def random_viewmat(gen, dtype=F64):
    """A random camera pose looking roughly at the origin region from ~4 m."""
    q = torch.randn(4, generator=gen, dtype=F64)
    R = torch.as_tensor(quat_to_matrix((q / q.norm()).numpy()), dtype=F64)
    view = torch.eye(4, dtype=F64)
    view[:3, :3] = R
    jitter = torch.randn(3, generator=gen, dtype=F64) * 0.3
    view[:3, 3] = torch.tensor([0.0, 0.0, 4.0], dtype=F64) - R @ jitter
    return view.to(dtype)


def random_scene(seed, n=60, sh_degree=1, dtype=F64, view=None):
    """Gaussians around the origin seen from ~4 m: some behind the camera, some off-screen, a few huge
    and a few tiny ones, unnormalised quaternions, opacities across (0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    view = random_viewmat(gen) if view is None else view
    means = torch.randn(n, 3, generator=gen, dtype=F64) * 1.5
    # A tenth near the camera: behind it, closer than the near plane, and just in front.
    near_cam = torch.randn(n // 10, 3, generator=gen, dtype=F64) * 0.5
    near_cam[:, 2] = torch.linspace(-1.0, 0.6, n // 10, dtype=F64)
    means[: n // 10] = (near_cam - view[:3, 3]) @ view[:3, :3]
    scales = torch.exp(torch.randn(n, 3, generator=gen, dtype=F64) * 0.7 - 2.0)
    scales[-3:] = torch.tensor([[2.0, 1.5, 0.1], [1e-4, 2e-4, 1e-4], [0.8, 0.8, 0.8]], dtype=F64)
    quats = torch.randn(n, 4, generator=gen, dtype=F64) * 2.0
    opac = torch.rand(n, generator=gen, dtype=F64)
    # ... and the huge / tiny / big ones in front of the camera, clearly visible.
    special = torch.tensor([[0.2, 0.1, 3.0], [0.1, 0.0, 2.0], [0.5, -0.2, 2.5]], dtype=F64)
    means[-3:] = (special - view[:3, 3]) @ view[:3, :3]
    opac[-3:] = torch.tensor([0.4, 0.9, 0.3], dtype=F64)
    sh = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=gen, dtype=F64) * 0.6
    return [t.to(dtype) for t in (means, quats, scales, opac, sh)], view.to(dtype)


def K_for(width, height, dtype=F64):
    f = 0.9 * width
    return torch.tensor(
        [[f, 0, (width - 1) / 2 + 0.3], [0, f * 1.05, (height - 1) / 2 - 0.2], [0, 0, 1]], dtype=dtype
    )


def run(backend, params, view, K, width, height, background=None, seed=7):
    ps = [p.clone().requires_grad_() for p in params]
    v = view.clone().requires_grad_()
    out = rasterize(*ps, v, K, width, height, backend=backend, background=background)
    gen = torch.Generator().manual_seed(seed)
    dt = out.color.dtype
    loss = (
        (out.color * torch.rand(out.color.shape, generator=gen, dtype=dt)).sum()
        + (out.depth * torch.rand(out.depth.shape, generator=gen, dtype=dt)).sum() * 0.1
        + (out.alpha * torch.rand(out.alpha.shape, generator=gen, dtype=dt)).sum()
    )
    loss.backward()
    grads = [p.grad for p in ps] + [v.grad]
    return out, grads


NAMES = ["means", "quats", "scales", "opacities", "sh", "viewmat"]


def assert_same(a, b, grads_a, grads_b, atol=1e-5, rtol=1e-5):
    for name in ("color", "depth", "alpha"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=atol, rtol=rtol, msg=name)
    for name, ga, gb in zip(NAMES, grads_a, grads_b, strict=False):
        torch.testing.assert_close(ga, gb, atol=atol, rtol=rtol, msg=lambda m, name=name: f"grad {name}: {m}")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    sh_degree=st.integers(0, 3),
    with_bg=st.booleans(),
    size=st.sampled_from([(40, 32), (45, 37), (16, 16), (33, 20)]),
)
def test_cpu_equals_reference_random_scenes(seed, sh_degree, with_bg, size):
    width, height = size
    params, view = random_scene(seed, sh_degree=sh_degree)
    K = K_for(width, height)
    bg = torch.tensor([0.1, 0.5, 0.9], dtype=F64) if with_bg else None
    a, ga = run("cpu", params, view, K, width, height, bg)
    b, gb = run("reference", params, view, K, width, height, bg)
    assert a.meta["visible"].any()
    assert_same(a, b, ga, gb)


@pytest.mark.parametrize("seed", [1, 2])
def test_blocked_compositing_equals_reference(monkeypatch, seed):
    """Long tile lists composited in blocks of 2 entries (carrying the transmittance) and 8×8 tiles."""
    monkeypatch.setattr(cpu_mod, "BLOCK", 2)
    monkeypatch.setattr(cpu_mod, "TILE_SIZE", 8)
    params, view = random_scene(seed, n=80, sh_degree=2)
    K = K_for(45, 37)
    a, ga = run("cpu", params, view, K, 45, 37)
    b, gb = run("reference", params, view, K, 45, 37)
    assert_same(a, b, ga, gb)


def test_scene_has_the_hard_cases():
    """The random scene really contains culled-behind, off-screen, huge and tiny Gaussians."""
    params, view = random_scene(3)
    width, height = 40, 32
    out = rasterize(*params, view, K_for(width, height), width, height, backend="cpu")
    z = out.meta["depths"]
    assert (z < 0).any() and not out.meta["visible"][z < 0].any()
    m2, r = out.meta["means2d"].detach(), out.meta["radii"]
    vis = out.meta["visible"]
    partly = vis & (
        (m2[:, 0] - r[:, 0] < 0)
        | (m2[:, 0] + r[:, 0] > width)
        | (m2[:, 1] - r[:, 1] < 0)
        | (m2[:, 1] + r[:, 1] > height)
    )
    assert partly.any()
    assert (r.max(1).values > width).any()  # a huge one
    assert out.meta["n_isects"] > 0


@pytest.mark.parametrize("block", [3, 32])
def test_early_termination_and_many_chunks(monkeypatch, block):
    """Many opaque overlapping Gaussians (transmittance cut at 1e-4, tiles saturating after different
    numbers of blocks) and a tiny chunk budget so that the image is composited in many chunks of
    different list lengths."""
    monkeypatch.setattr(cpu_mod, "CHUNK_BUDGET", 3000)
    monkeypatch.setattr(cpu_mod, "BLOCK", block)
    gen = torch.Generator().manual_seed(5)
    n = 80
    means = torch.randn(n, 3, generator=gen, dtype=F64) * torch.tensor([0.6, 0.4, 0.5], dtype=F64)
    means[:, 2] += 3.0
    quats = torch.randn(n, 4, generator=gen, dtype=F64)
    scales = torch.rand(n, 3, generator=gen, dtype=F64) * 0.5 + 0.05
    opac = 0.9 + 0.1 * torch.rand(n, generator=gen, dtype=F64)
    sh = torch.randn(n, 4, 3, generator=gen, dtype=F64)
    view = torch.eye(4, dtype=F64)
    K = K_for(48, 40)
    a, ga = run("cpu", [means, quats, scales, opac, sh], view, K, 48, 40)
    b, gb = run("reference", [means, quats, scales, opac, sh], view, K, 48, 40)
    assert a.alpha.max() > 0.9998  # saturated pixels exist
    assert_same(a, b, ga, gb)


@pytest.mark.parametrize("workers", [2, 3])
def test_worker_threads_give_bit_identical_results(monkeypatch, workers):
    """Tile chunks composited on worker threads (saturating tiles, many chunks) equal the one-thread
    result bit for bit, forward and every gradient."""
    monkeypatch.setattr(cpu_mod, "CHUNK_BUDGET", 3000)
    monkeypatch.setattr(cpu_mod, "BLOCK", 3)
    params, view = random_scene(11, n=120, sh_degree=2)
    K = K_for(48, 40)
    monkeypatch.setattr(cpu_mod, "_workers", 1)
    a, ga = run("cpu", params, view, K, 48, 40)
    monkeypatch.setattr(cpu_mod, "_workers", workers)
    b, gb = run("cpu", params, view, K, 48, 40)
    assert a.meta["n_isects"] > 0
    assert_same(a, b, ga, gb, atol=0, rtol=0)


def test_worker_exception_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(cpu_mod, "_workers", 2)

    def boom(chunk):
        if chunk == 3:
            raise ValueError("chunk 3 failed")

    with pytest.raises(ValueError, match="chunk 3"):
        cpu_mod._for_each(boom, range(6))


def test_float32():
    """float32 (the mapper's dtype): outputs within 2e-5 of float64; gradients equal the float32
    reference up to float32 rounding (not float64's: a pixel whose alpha sits at the 1/255 or
    transmittance cut-off can flip in float32, which legitimately changes that pixel's gradient)."""
    params, view = random_scene(11, n=80, sh_degree=3)
    K = K_for(40, 32)
    a = rasterize(*params, view, K, 40, 32, backend="cpu")
    p32 = [p.float() for p in params]
    a32, ga32 = run("cpu", p32, view.float(), K.float(), 40, 32)
    r32, gr32 = run("reference", p32, view.float(), K.float(), 40, 32)
    assert a32.color.dtype == torch.float32
    for name in ("color", "alpha", "depth"):
        torch.testing.assert_close(getattr(a32, name).double(), getattr(a, name), atol=2e-5, rtol=2e-5)
    for name, g, r in zip(NAMES, ga32, gr32, strict=False):
        assert (g - r).abs().max().item() <= 1e-4 * r.abs().max().item() + 1e-5, name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pair_alphas_from_far_above_to_far_below_exps_range(dtype):
    """A pair's alpha on its tile is min(exp(q · [1, x, y, x², y², xy]), 0.999), and 0 at or below
    1/255, for log-alphas from above 0 down to where exp underflows (the floor taken before exp,
    which spares x86 its slow subnormal path, must not change any of them), the padding entry too."""
    import numpy as np

    gen = torch.Generator().manual_seed(2)
    q = torch.randn(41, 6, generator=gen, dtype=F64) * 0.05
    q[:-1, 0] = torch.cat([torch.linspace(0.5, -7.0, 20, dtype=F64), -torch.logspace(1, 4, 20, dtype=F64)])
    q[-1] = 0.0
    q[-1, 0] = cpu_mod._DUMMY_LOG
    mono = cpu_mod._monomials(4, F64)
    idx = torch.arange(41).reshape(1, 41)
    want = np.exp(q.numpy() @ mono.numpy())  # float64: underflows to 0 far down, no floor
    want = np.where(want > 1 / 255, np.minimum(want, 0.999), 0.0)
    got = cpu_mod._alphas(q.to(dtype), idx, mono.to(dtype))[0].double().numpy()
    assert ((want > 0) == (got > 0)).all() and (want > 0).sum() > 100 and (want == 0).sum() > 300
    assert np.allclose(got, want, rtol=1e-6 if dtype == torch.float32 else 1e-15, atol=0)


def test_empty_and_fully_culled():
    K = K_for(20, 10)
    bg = torch.tensor([0.25, 0.5, 0.75], dtype=F64)
    empty = [
        torch.zeros(0, 3, dtype=F64),
        torch.zeros(0, 4, dtype=F64),
        torch.zeros(0, 3, dtype=F64),
        torch.zeros(0, dtype=F64),
        torch.zeros(0, 1, 3, dtype=F64),
    ]
    out = rasterize(*empty, torch.eye(4, dtype=F64), K, 20, 10, background=bg, backend="cpu")
    assert torch.equal(out.color, bg.expand(10, 20, 3)) and out.alpha.abs().sum() == 0
    behind = [
        torch.tensor([[0.0, 0.0, -2.0]], dtype=F64, requires_grad=True),
        torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=F64),
        torch.full((1, 3), 0.5, dtype=F64),
        torch.tensor([0.9], dtype=F64),
        torch.zeros(1, 1, 3, dtype=F64),
    ]
    out = rasterize(*behind, torch.eye(4, dtype=F64), K, 20, 10, backend="cpu")
    assert out.alpha.abs().sum() == 0 and out.depth.abs().sum() == 0
    out.color.sum().backward()
    assert torch.equal(behind[0].grad, torch.zeros(1, 3, dtype=F64))


def test_weight_sum_matches_alpha_total():
    params, view = random_scene(2, n=50)
    out = rasterize(*params, view, K_for(40, 32), 40, 32, backend="cpu")
    ws = out.meta["weight_sum"]
    assert ws.shape == (50,) and (ws[~out.meta["visible"]] == 0).all()
    assert math.isclose(ws.sum().item(), out.alpha.sum().item(), rel_tol=1e-9)


@pytest.mark.parametrize("rot_seed", [0, 1, 2])
def test_rotation_invariance_of_isotropic_gaussians(rot_seed):
    """Rotating isotropic Gaussians (any quaternion) changes nothing."""
    params, view = random_scene(9, n=40)
    means, quats, scales, opac, sh = params
    scales = scales[:, :1].expand(-1, 3).clone()
    a = rasterize(means, quats, scales, opac, sh, view, K_for(40, 32), 40, 32, backend="cpu")
    q2 = torch.randn(quats.shape, generator=torch.Generator().manual_seed(rot_seed), dtype=F64)
    b = rasterize(means, q2, scales, opac, sh, view, K_for(40, 32), 40, 32, backend="cpu")
    torch.testing.assert_close(a.color, b.color, atol=1e-9, rtol=0)


def test_means2d_gradient_for_densification():
    """meta["means2d"] is the autograd node of the projected means: retain_grad() gives the 2D
    gradient the densification statistics use (zero for culled Gaussians)."""
    params, view = random_scene(6, n=50)
    ps = [p.clone().requires_grad_() for p in params]
    out = rasterize(*ps, view, K_for(40, 32), 40, 32, backend="cpu")
    m2 = out.meta["means2d"]
    m2.retain_grad()
    out.color.sum().backward()
    vis = out.meta["visible"]
    assert m2.grad.shape == (50, 2)
    assert (m2.grad[~vis] == 0).all() and (m2.grad[vis].abs().sum(1) > 0).any()
    assert torch.isfinite(ps[0].grad).all()


@pytest.mark.parametrize("seed", range(6))
def test_candidate_cull_is_a_superset(seed):
    """The cheap pre-cull never drops a Gaussian the exact projection keeps (incl. huge, near, off-screen)."""
    from gs_mapping.render.projection import candidates, project

    params, view = random_scene(seed, n=300)
    means, quats, scales, opac, _ = params
    scales = scales * torch.exp(
        torch.randn(scales.shape, generator=torch.Generator().manual_seed(seed), dtype=F64) * 2.0
    )
    for w, h in ((40, 32), (7, 5)):
        Kp = K_for(w, h) + torch.tensor([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]], dtype=F64)
        keep = torch.nonzero(project(means, quats, scales, opac, view, Kp, w, h).valid).flatten()
        cand = candidates(means, scales, opac, view, Kp, w, h)
        assert len(keep) > 0 and set(keep.tolist()) <= set(cand.tolist())
