"""Renderer conventions: pixel positions, depth, SH basis, map/camera entry point, input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gs_mapping.camera import Camera
from gs_mapping.errors import GsMappingError
from gs_mapping.gaussians import SH_C0, GaussianMap
from gs_mapping.geometry import Transform, quat_to_matrix
from gs_mapping.render import RenderError, rasterize, render, sh_basis, sh_to_color

K = np.array([[200.0, 0, 79.5], [0, 200.0, 59.5], [0, 0, 1]])


def camera_pose():
    q = np.array([0.1, -0.2, 0.05, 0.97])
    q /= np.linalg.norm(q)
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(q)
    T[:3, 3] = [1.0, -0.5, 0.3]
    return T


def one_gaussian_map(point, scale, opacity_logit=4.0, rgb=(0.8, 0.4, 0.2), degree=0, quat=(0, 0, 0, 1)):
    gmap = GaussianMap(sh_degree=degree)
    sh = np.zeros((1, (degree + 1) ** 2, 3), np.float32)
    sh[0, 0] = (np.asarray(rgb) - 0.5) / SH_C0
    gmap.add(
        np.asarray(point, np.float32)[None],
        np.asarray(quat, np.float32)[None],
        np.log(np.asarray(scale, np.float32))[None],
        [opacity_logit],
        sh,
    )
    return gmap


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("uv", [(37.0, 21.0), (120.0, 90.0), (0.0, 0.0)])
def test_gaussian_renders_at_projected_pixel(backend, uv):
    cam = Camera(K, 160, 120, camera_pose())
    z = 2.5
    ray = np.array([(uv[0] - K[0, 2]) / K[0, 0] * z, (uv[1] - K[1, 2]) / K[1, 1] * z, z])
    point = cam.T_map_cam[:3, :3] @ ray + cam.T_map_cam[:3, 3]
    proj_uv, proj_z = cam.project(point)
    np.testing.assert_allclose(proj_uv, uv, atol=1e-9)
    color, depth, alpha = render(one_gaussian_map(point, [0.01] * 3), cam, backend=backend).numpy()
    row, col = np.unravel_index(np.argmax(alpha), alpha.shape)
    assert (col, row) == (int(uv[0]), int(uv[1]))
    # Symmetric around the centre pixel (the mean is exactly on a pixel centre).
    u, v = int(uv[0]), int(uv[1])
    if 0 < u < 159 and 0 < v < 119:
        assert alpha[v, u - 1] == pytest.approx(alpha[v, u + 1], rel=1e-4)
        assert alpha[v - 1, u] == pytest.approx(alpha[v + 1, u], rel=1e-4)
    assert depth[v, u] == pytest.approx(proj_z, rel=1e-5)
    np.testing.assert_allclose(color[v, u], np.array([0.8, 0.4, 0.2]) * alpha[v, u], atol=1e-5)


def test_subpixel_position_shifts_the_splat():
    """A mean at u = 40.25 puts more weight on pixel 40 than 41 and the centroid near 40.25."""
    cam = Camera(K, 160, 120)
    z = 2.0
    point = np.array([(40.25 - K[0, 2]) / K[0, 0] * z, (30.0 - K[1, 2]) / K[1, 1] * z, z])
    _, _, alpha = render(one_gaussian_map(point, [0.02] * 3, opacity_logit=-1.0), cam, backend="cpu").numpy()
    cols = np.arange(160)
    centroid = (alpha[30] * cols).sum() / alpha[30].sum()
    assert centroid == pytest.approx(40.25, abs=0.02)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_depth_of_large_opaque_gaussian_is_its_z(backend):
    pose = camera_pose()
    cam = Camera(K, 160, 120, pose)
    point = pose[:3, :3] @ np.array([0.1, -0.05, 3.0]) + pose[:3, 3]
    # A flat disc facing the camera: rotation of the camera, scales 30 m × 30 m × 1 mm.
    q = Transform.from_matrix(pose).rotation
    gmap = one_gaussian_map(point, [30.0, 30.0, 0.001], opacity_logit=12.0, quat=q)
    color, depth, alpha = render(gmap, cam, backend=backend).numpy()
    assert alpha.min() > 0.99
    np.testing.assert_allclose(depth, 3.0, rtol=1e-5)


def test_background_and_empty_map():
    cam = Camera(K, 32, 24)
    bg = [0.2, 0.4, 0.6]
    color, depth, alpha = render(GaussianMap(sh_degree=2), cam, backend="cpu", background=bg).numpy()
    assert color.shape == (24, 32, 3) and color.dtype == np.float32
    np.testing.assert_allclose(color, np.broadcast_to(bg, color.shape), atol=0)
    assert not depth.any() and not alpha.any()
    gmap = one_gaussian_map([0, 0, 2.0], [0.05] * 3, opacity_logit=0.0, rgb=(1, 1, 1))
    color, depth, alpha = render(gmap, cam, backend="cpu", background=bg).numpy()
    expect = alpha[..., None] * 1.0 + (1 - alpha[..., None]) * np.array(bg)
    np.testing.assert_allclose(color, expect, atol=1e-6)
    assert (depth[alpha == 0] == 0).all() and np.allclose(depth[alpha > 0], 2.0)


def test_sh_basis_orthonormal():
    """∫ Y_i Y_j dΩ = δ_ij, checked with a quadrature exact for these polynomial degrees."""
    x, wx = np.polynomial.legendre.leggauss(12)
    phi = np.arange(24) * 2 * np.pi / 24
    ct, ph = np.meshgrid(x, phi, indexing="ij")
    st = np.sqrt(1 - ct**2)
    dirs = torch.tensor(np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1).reshape(-1, 3))
    w = torch.tensor((wx[:, None] * np.full(24, 2 * np.pi / 24)[None]).reshape(-1))
    Y = sh_basis(3, dirs)
    gram = (Y * w[:, None]).T @ Y
    torch.testing.assert_close(gram, torch.eye(16, dtype=gram.dtype), atol=1e-10, rtol=0)


def test_sh_signs_match_3dgs():
    """3DGS/gsplat order and signs: Y_1 = -C1 y, Y_2 = C1 z, Y_3 = -C1 x."""
    e = torch.eye(3, dtype=torch.float64)
    Y = sh_basis(1, e)
    c1 = 0.4886025119029199
    assert Y[0, 3] == pytest.approx(-c1) and Y[1, 1] == pytest.approx(-c1) and Y[2, 2] == pytest.approx(c1)
    coeffs = torch.zeros(1, 4, 3, dtype=torch.float64)
    coeffs[0, 2] = 1.0  # colour brighter when seen from below (+z direction)
    up = sh_to_color(1, torch.tensor([[0, 0, 1.0]], dtype=torch.float64), coeffs)
    assert up[0, 0] == pytest.approx(0.5 + c1)
    down = sh_to_color(1, torch.tensor([[0, 0, -5.0]], dtype=torch.float64), coeffs)
    assert down[0, 0] == pytest.approx(0.5 - c1)


def test_view_dependent_colour_uses_camera_to_mean_direction():
    """Degree-1 colour of a Gaussian straight ahead of a camera looking along map +x."""
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # optical z = map +x
    cam = Camera(K, 160, 120, pose)
    gmap = one_gaussian_map([3.0, 0, 0], [0.3] * 3, opacity_logit=12.0, rgb=(0.5, 0.5, 0.5), degree=1)
    gmap.sh[0, 3] = [0.5, 0.0, -0.5]  # Y_3 = -C1 x, direction +x → -C1
    color, _, alpha = render(gmap, cam, backend="cpu").numpy()
    c1 = 0.4886025119029199
    expect = [0.5 - 0.5 * c1, 0.5, 0.5 + 0.5 * c1]
    np.testing.assert_allclose(color[59, 79] / alpha[59, 79], expect, atol=1e-4)


def test_input_errors():
    n = 2
    args = [
        torch.zeros(n, 3),
        torch.tensor([[0, 0, 0, 1.0]] * n),
        torch.ones(n, 3),
        torch.ones(n),
        torch.zeros(n, 4, 3),
        torch.eye(4),
        torch.tensor(K, dtype=torch.float32),
        8,
        8,
    ]
    with pytest.raises(RenderError, match="backend"):
        rasterize(*args, backend="vulkan")
    with pytest.raises(RenderError, match="quats"):
        rasterize(*(args[:1] + [torch.zeros(n, 3)] + args[2:]), backend="cpu")
    with pytest.raises(RenderError, match="K = 5"):
        rasterize(*(args[:4] + [torch.zeros(n, 5, 3)] + args[5:]), backend="cpu")
    with pytest.raises(RenderError, match="sh_degree 2"):
        rasterize(*args, sh_degree=2, backend="cpu")
    assert issubclass(RenderError, GsMappingError)
    if not torch.cuda.is_available():
        with pytest.raises(RenderError, match="cuda"):
            rasterize(*args, backend="cuda")
    with pytest.raises(RenderError, match="dense"):
        rasterize(*args[:7], 8000, 8000, backend="reference")
    out = rasterize(*args, sh_degree=0, backend="auto")  # fewer bands than given is fine
    assert out.color.shape == (8, 8, 3)
    # numpy / float64 inputs mixed with float32 means: everything follows the means' dtype.
    mixed = rasterize(
        args[0],
        args[1].numpy(),
        args[2].double(),
        args[3].numpy(),
        args[4].double(),
        np.eye(4),
        K,
        8,
        8,
        backend="cpu",
        background=[0.1, 0.2, 0.3],
    )
    assert mixed.color.dtype == torch.float32
    assert torch.allclose(mixed.color[0, 0], torch.tensor([0.1, 0.2, 0.3]))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_isotropic_gaussian_alpha_closed_form(backend):
    """On the optical axis: 2D covariance (f σ / z)² + 0.3 px² (EWA + gsplat's low-pass), so
    α(d) = o · exp(−d² / (2 (s² + 0.3))) at a pixel d px from the centre (below the 0.999 clamp)."""
    f, z, sigma, o = 200.0, 2.0, 0.012, 0.8
    cam = Camera(np.array([[f, 0, 40.0], [0, f, 30.0], [0, 0, 1]]), 81, 61)
    gmap = one_gaussian_map([0, 0, z], [sigma] * 3, opacity_logit=float(np.log(o / (1 - o))))
    _, _, alpha = render(gmap, cam, backend=backend).numpy()
    var = (f * sigma / z) ** 2 + 0.3
    for d in range(0, 6):
        expect = o * np.exp(-d * d / (2 * var))
        want = expect if expect >= 1 / 255 else 0.0
        assert alpha[30, 40 + d] == pytest.approx(want, rel=1e-5, abs=1e-7)
        assert alpha[30 - d, 40] == pytest.approx(want, rel=1e-5, abs=1e-7)
