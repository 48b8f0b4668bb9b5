"""Guards for behaviours a mutation-testing pass found unguarded (fourteenth round): registering
unregistered depth into the colour camera (invalid pixels, the centre's z, points behind the colour
camera, finer and 4x coarser depth, a shorter colour image), LiDAR clouds to depth, the projection's
far plane, opacity and image-edge culling, the renderer's size check and camera centre for
view-dependent colour, SH direction normalisation, and octree levels (nearest-to-centre winner,
depth normals at holes, coarse discs). Each test compares the component with an independent
reference (a per-pixel or per-point numpy re-computation, gsplat's culling rule, a hand-built
input with a hand-computed answer, the rule a docstring states), so that breaking the line it
guards makes it fail."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rz @ Ry @ Rx, written out."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def _K(fx, fy, cx, cy):
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


# ------------------------------------------------------------------------------------------------
# mapping: depth registration


def test_register_depth_ignores_zero_depth_pixels_of_a_translated_depth_camera():
    """0 marks invalid depth: with the depth camera 5 cm behind colour, a zero pixel lifted to
    3D would be the depth camera's own centre (z = 5 cm in the colour frame): it must not appear."""
    from gs_mapping.mapping.depth_registration import register_depth

    K = _K(100.0, 100.0, 15.5, 11.5)
    depth = np.zeros((24, 32), np.float32)
    depth[:, :16] = 2.0  # left half valid, right half invalid (0)
    depth[3, 20] = np.nan  # NaN is invalid too
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, 0.05]
    out = register_depth(depth, K, T, K, (32, 24))
    assert (out > 0).any()
    # every registered value is the wall's (2 m + 5 cm), never the 5 cm of a lifted zero
    np.testing.assert_allclose(out[out > 0], 2.05, atol=1e-5)


def test_register_depth_value_is_the_z_of_the_depth_pixels_centre():
    """A lone depth pixel lands with the z of its centre moved into the colour frame (per-pixel
    numpy back-project / rotate / translate), not the z of one of its corners."""
    from gs_mapping.mapping.depth_registration import register_depth

    K = _K(100.0, 100.0, 16.0, 12.0)
    depth = np.zeros((24, 32))
    u, v, z = 10, 8, 2.0
    depth[v, u] = z
    T = np.eye(4)
    T[:3, :3] = _rotation(0.04, 0.06, 0.02)
    T[:3, 3] = [0.02, -0.01, 0.03]
    out = register_depth(depth, K, T, K, (32, 24))
    p = np.array([(u - 16.0) / 100.0 * z, (v - 12.0) / 100.0 * z, z])
    q = T[:3, :3] @ p + T[:3, 3]
    cu, cv = int(np.rint(100.0 * q[0] / q[2] + 16.0)), int(np.rint(100.0 * q[1] / q[2] + 12.0))
    assert out[cv, cu] > 0
    # corners differ from the centre by ~0.6 mm in z here; float32 keeps ~0.2 µm
    np.testing.assert_allclose(out[out > 0], q[2], rtol=0, atol=2e-6)


def test_register_depth_drops_points_behind_the_colour_camera():
    """A colour camera 3 m in front of the depth camera (same direction) does not see a point 1 m in
    front of the depth camera: it is behind it, so nothing may be registered (no negative depth)."""
    from gs_mapping.mapping.depth_registration import register_depth

    K = _K(100.0, 100.0, 15.5, 11.5)
    depth = np.zeros((24, 32))
    depth[10:14, 12:18] = 1.0
    T = np.eye(4)
    T[2, 3] = -3.0  # colour optical frame = depth frame moved 3 m along +z
    out = register_depth(depth, K, T, K, (32, 24))
    assert (out == 0).all()


def test_register_depth_finer_than_colour_marks_the_nearest_colour_pixel():
    """Depth twice as fine as colour: a depth pixel whose box (2.35..2.85 colour px) holds no colour
    pixel centre still marks the nearest one, (3, 3) — hand-computed: centre 5/200*100 + 0.1 = 2.6."""
    from gs_mapping.mapping.depth_registration import register_depth

    Kd = _K(200.0, 200.0, 0.0, 0.0)
    Kc = _K(100.0, 100.0, 0.1, 0.1)
    depth = np.zeros((20, 20))
    depth[5, 5] = 1.0
    out = register_depth(depth, Kd, np.eye(4), Kc, (10, 10))
    want = np.zeros((10, 10), np.float32)
    want[3, 3] = 1.0
    np.testing.assert_array_equal(out, want)


def test_register_depth_four_times_coarser_depth_leaves_no_cracks():
    """'depth up to 4x coarser' leaves no cracks: each quarter-resolution pixel covers its 4x4 block
    of colour pixels, so a flat 2 m wall fills the whole colour image."""
    from gs_mapping.mapping.depth_registration import register_depth

    Kc = _K(100.0, 100.0, 15.5, 11.5)
    Kq = _K(25.0, 25.0, 3.5, 2.5)  # the same camera at a quarter of the resolution (8 x 6)
    out = register_depth(np.full((6, 8), 2.0), Kq, np.eye(4), Kc, (32, 24))
    np.testing.assert_array_equal(out, np.full((24, 32), 2.0, np.float32))


def test_register_depth_into_a_shorter_colour_image_crops_the_bottom_rows():
    """Same camera, colour image 4 rows shorter: the result is the depth image's top rows (depth
    landing below the last colour row is dropped, not written out of bounds)."""
    from gs_mapping.mapping.depth_registration import register_depth

    K = _K(100.0, 100.0, 15.5, 11.5)
    v, u = np.mgrid[0:24, 0:32]
    depth = (1.0 + 0.01 * v + 0.001 * u).astype(np.float32)
    out = register_depth(depth, K, np.eye(4), K, (32, 20))
    np.testing.assert_allclose(out, depth[:20], atol=1e-6)


def _reference_cloud_to_depth(xyz, T, K, size, min_range=0.1):
    w, h = size
    out = np.full((h, w), np.inf)
    for p in xyz:
        if not np.all(np.isfinite(p)) or np.linalg.norm(p) < min_range:  # (no return, in the sensor frame)
            continue
        q = T[:3, :3] @ p + T[:3, 3]
        if q[2] <= 1e-6:
            continue
        u = int(np.rint(K[0, 0] * q[0] / q[2] + K[0, 2]))
        v = int(np.rint(K[1, 1] * q[1] / q[2] + K[1, 2]))
        if 0 <= u < w and 0 <= v < h:
            out[v, u] = min(out[v, u], q[2])
    out[~np.isfinite(out)] = 0.0
    return out


def test_cloud_to_depth_matches_a_per_point_reference():
    """A rotated LiDAR, a colour camera with fx != fy, points beyond every image border and invalid
    (NaN/inf) returns and returns within 0.1 m of the sensor: equal to a per-point transform /
    project / round / nearest-wins loop, and no numpy warning from the invalid points."""
    from gs_mapping.mapping.depth_registration import cloud_to_depth

    rng = np.random.default_rng(14)
    xyz = np.column_stack([rng.uniform(-4, 4, 3000), rng.uniform(-4, 4, 3000), rng.uniform(-1, 6, 3000)])
    xyz = np.vstack([xyz, [[np.nan, 0.0, 2.0], [np.inf, 0.0, 2.0], [0.0, -np.inf, 3.0]]])
    T = np.eye(4)
    T[:3, :3] = _rotation(0.15, -0.25, 0.4)
    T[:3, 3] = [0.1, -0.2, 0.3]
    K = _K(80.0, 55.0, 19.5, 14.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = cloud_to_depth(xyz, T, K, (40, 30))
    want = _reference_cloud_to_depth(xyz, T, K, (40, 30))
    assert (want > 0).sum() > 100 and (want > 0).any(axis=1).all()  # rows all over the image
    np.testing.assert_allclose(got, want, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# render: projection culling


def _project(means, scales, opac, Kp, w, h, **kw):
    from gs_mapping.render.projection import project

    means = torch.as_tensor(means, dtype=torch.float64)
    n = len(means)
    quats = torch.tensor([[0.0, 0.0, 0.0, 1.0]] * n, dtype=torch.float64)
    scales = torch.as_tensor(scales, dtype=torch.float64).expand(n, 3)
    opac = torch.as_tensor(opac, dtype=torch.float64).expand(n)
    vm = torch.eye(4, dtype=torch.float64)
    return project(means, quats, scales, opac, vm, torch.as_tensor(Kp, dtype=torch.float64), w, h, **kw)


def test_projection_culls_gaussians_beyond_the_far_plane():
    """'depth outside [near, far]' is culled: with far = 5 m a Gaussian at 6 m has radius 0, one at
    3 m does not."""
    p = _project([[0.0, 0.0, 3.0], [0.0, 0.0, 6.0]], [0.05], [0.9], _K(64, 64, 16, 12), 32, 24, far=5.0)
    assert p.valid.tolist() == [True, False]
    assert (p.radii[0] > 0).all() and (p.radii[1] == 0).all()


def test_projection_opacity_exactly_the_threshold_has_radius_zero_and_is_not_valid():
    """At o = 1/255 the opacity-aware extent sqrt(2 ln(255 o)) is 0: radius 0 means 'not rendered',
    so the Gaussian must not be flagged valid (valid is radii > 0)."""
    p = _project([[0.0, 0.0, 2.0], [0.1, 0.0, 2.0]], [0.05], [1.0 / 255.0], _K(64, 64, 16, 12), 32, 24)
    assert (p.radii == 0).all()
    assert not p.valid.any()


def _radius_ref(c, f, size, s, z, o=1.0):
    """gsplat's per-axis radius of an isotropic Gaussian (std s) on the optical axis at depth z:
    Jacobian with the mean's x/z clamped to the 1.3x field of view, +0.3 px² blur, opacity-aware
    extent min(3.33, sqrt(2 ln(255 o)))."""
    tan = 0.5 * size / f
    lim_p, lim_n = (size - c) / f + 0.3 * tan, c / f + 0.3 * tan
    t = min(max(0.0, -lim_n), lim_p)  # x/z of the mean is 0, clamped
    var = s * s * ((f / z) ** 2 + (f * t / z) ** 2) + 0.3
    ext = min(3.33, math.sqrt(2 * math.log(255 * o)))
    r = ext * math.sqrt(var)
    assert abs(r - round(r)) > 0.05  # not at a rounding edge
    return math.ceil(r)


@pytest.mark.parametrize("axis", [0, 1])
def test_projection_edge_culling_follows_gsplats_open_box_rule(axis):
    """A Gaussian is kept iff its box (m - r, m + r) overlaps (0, size) — gsplat culls
    ``m + r <= 0`` and ``m - r >= size``: a box that ends exactly at the border touches no pixel.
    The mean sits on the optical axis, so its pixel position is the principal point itself."""
    w, h, f, s, z = 32, 24, 64.0, 0.05, 2.0
    size = (w, h)[axis]
    cases = 0
    for c in (-7.0, -6.5, -6.0, -5.5, -5.0, size + 5.0, size + 5.5, size + 6.0, size + 6.5, size + 7.0):
        cxy = [w / 2, h / 2]
        cxy[axis] = c
        Kp = _K(f, f, cxy[0], cxy[1])
        r = _radius_ref(c, f, size, s, z)
        p = _project([[0.0, 0.0, z]], [s], [1.0], Kp, w, h)
        assert int(p.radii[0, axis]) == r or not bool(p.valid[0])
        keep = (c + r > 0) and (c - r < size)
        cases += (c + r == 0) or (c - r == size)
        assert bool(p.valid[0]) == keep, (c, r)
    assert cases >= 2  # both exact-border cases were exercised


# ------------------------------------------------------------------------------------------------
# render: api and SH


def _one(n=1):
    return (
        torch.zeros(n, 3) + torch.tensor([0.0, 0.0, 2.0]),
        torch.tensor([[0.0, 0.0, 0.0, 1.0]] * n),
        torch.full((n, 3), 0.1),
        torch.full((n,), 0.9),
        torch.zeros(n, 1, 3),
        torch.eye(4),
        torch.tensor(_K(50.0, 50.0, 7.5, 7.5), dtype=torch.float32),
    )


@pytest.mark.parametrize("size", [(0, 16), (16, 0), (-3, 16)])
def test_rasterize_rejects_a_non_positive_image_size_with_a_render_error(size):
    """'image size must be positive': a zero or negative width or height is one RenderError."""
    from gs_mapping.render import RenderError, rasterize

    with pytest.raises(RenderError, match="image size must be positive"):
        rasterize(*_one(), size[0], size[1], backend="cpu")


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_view_dependent_colour_uses_the_camera_centre_of_a_rotated_camera(backend):
    """The SH direction is camera centre → mean in the map frame, with the centre -Rᵀt of
    T_cam_map = [R | t]: a rotated, translated camera looking at a degree-1 Gaussian on its optical
    axis sees the colour of the numpy SH evaluation along that direction."""
    from gs_mapping.render import rasterize

    C0, C1 = 0.28209479177387814, 0.4886025119029199
    T_map_cam = np.eye(4)
    T_map_cam[:3, :3] = _rotation(0.7, -0.4, 1.9)
    T_map_cam[:3, 3] = [1.0, -2.0, 0.5]
    centre = T_map_cam[:3, 3]
    mean = centre + T_map_cam[:3, :3] @ np.array([0.0, 0.0, 2.0])
    viewmat = np.linalg.inv(T_map_cam)
    sh = np.zeros((1, 4, 3))
    sh[0, 0] = [0.3, -0.2, 0.1]
    sh[0, 1:] = [[0.5, -0.3, 0.2], [-0.4, 0.6, 0.1], [0.3, 0.2, -0.5]]
    d = (mean - centre) / np.linalg.norm(mean - centre)
    basis = np.array([C0, -C1 * d[1], C1 * d[2], -C1 * d[0]])
    want = np.maximum(basis @ sh[0] + 0.5, 0.0)
    K = _K(60.0, 60.0, 8.0, 8.0)
    out = rasterize(
        torch.tensor(mean[None]),
        torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64),
        torch.full((1, 3), 0.3, dtype=torch.float64),
        torch.tensor([0.95], dtype=torch.float64),
        torch.tensor(sh),
        torch.tensor(viewmat),
        torch.tensor(K),
        17,
        17,
        backend=backend,
    )
    a = float(out.alpha[8, 8])
    assert a > 0.9
    np.testing.assert_allclose(out.color[8, 8].numpy() / a, want, atol=1e-6)


def test_sh_to_color_normalises_short_direction_vectors():
    """'dirs (any length, normalised here)': directions 10 cm long give the colour of the unit ones,
    equal to the written-out degree-1 basis."""
    from gs_mapping.render.sh import sh_to_color

    C0, C1 = 0.28209479177387814, 0.4886025119029199
    rng = np.random.default_rng(3)
    d = rng.normal(size=(5, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    coeffs = rng.normal(scale=0.3, size=(5, 4, 3))
    basis = np.stack([np.full(5, C0), -C1 * d[:, 1], C1 * d[:, 2], -C1 * d[:, 0]], axis=1)
    want = np.maximum(np.einsum("nk,nkc->nc", basis, coeffs) + 0.5, 0.0)
    got = sh_to_color(1, torch.tensor(0.1 * d), torch.tensor(coeffs))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


def test_sh_basis_rejects_degree_four():
    """SH degree must be 0..3: degree 4 is an error, not a silent degree-3 basis."""
    from gs_mapping.render.sh import sh_basis

    with pytest.raises(ValueError, match="0..3"):
        sh_basis(4, torch.tensor([[0.0, 0.0, 1.0]]))


# ------------------------------------------------------------------------------------------------
# mapping: levels


def test_assign_levels_gives_the_voxel_to_the_seed_nearest_its_centre():
    """Two new seeds in one free 1 m level-0 voxel: the one nearest the voxel centre (0.5, 0.5, 0.5)
    takes level 0 although the other is the earlier row; the other goes to the finest level."""
    from gs_mapping.mapping.levels import assign_levels
    from gs_mapping.mapping.mapper_config import LevelsConfig

    cfg = LevelsConfig(count=2, base_voxel_m=1.0)
    means = np.array([[0.05, 0.05, 0.05], [0.45, 0.55, 0.5]])
    assert assign_levels(means, cfg).tolist() == [1, 0]


def test_depth_normals_are_zero_beside_a_hole_and_set_one_pixel_further():
    """'zero where a neighbour has no depth' with step 1: the four pixels beside a 0-depth hole get
    no normal; the pixel two columns away, and pixel (1, 1) next to the border, get the wall's
    normal (a fronto-parallel plane: ±z)."""
    from gs_mapping.camera import Camera
    from gs_mapping.mapping.levels import depth_normals

    cam = Camera(_K(100.0, 100.0, 15.5, 11.5), 32, 24, np.eye(4))
    depth = np.full((24, 32), 2.0)
    depth[10, 10] = 0.0
    n = depth_normals(depth, cam, 1)
    for v, u in ((10, 9), (10, 11), (9, 10), (11, 10)):
        assert (n[v, u] == 0).all(), (v, u)
    for v, u in ((10, 12), (1, 1), (12, 10)):
        np.testing.assert_allclose(np.abs(n[v, u]), [0.0, 0.0, 1.0], atol=1e-9)


def _seeds(n):
    return {
        "quats": np.tile(np.array([0.0, 0.0, 0.0, 1.0], np.float32), (n, 1)),
        "log_scales": np.full((n, 3), np.log(0.01), np.float32),
        "opacity_logits": np.full(n, np.log(0.7 / 0.3), np.float32),
    }


def test_coarse_discs_with_coarse_scale_zero_leave_the_seeds_alone():
    """coarse_scale '0 = seeded like the rest': quaternions and scales stay as seeded."""
    from gs_mapping.mapping.levels import coarse_discs
    from gs_mapping.mapping.mapper_config import LevelsConfig

    seeds = _seeds(3)
    before = {k: v.copy() for k, v in seeds.items()}
    normals = np.array([[0.0, 0.6, 0.8], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, levels = coarse_discs(
            seeds, np.array([0, 1, 0], np.uint8), normals, LevelsConfig(count=4, coarse_scale=0.0)
        )
    assert levels.tolist() == [0, 1, 0]
    for k in seeds:
        np.testing.assert_array_equal(out[k], before[k])


def test_coarse_discs_for_normals_facing_away_are_finite_and_in_the_surface_plane():
    """A normal with n_z < 0 (e.g. exactly -z) still gives a unit quaternion whose local z axis is
    along ±n (a disc is symmetric): numpy rotation matrix of the quaternion, third column."""
    from gs_mapping.geometry import quat_to_matrix
    from gs_mapping.mapping.levels import coarse_discs
    from gs_mapping.mapping.mapper_config import LevelsConfig

    normals = np.array([[0.0, 0.0, -1.0], [0.6, 0.0, -0.8], [0.0, -0.6, 0.8]])
    seeds = _seeds(3)
    out, _ = coarse_discs(seeds, np.zeros(3, np.uint8), normals, LevelsConfig(count=4, coarse_scale=0.5))
    q = out["quats"][3:].astype(np.float64)  # the discs, appended after the seeds
    assert np.isfinite(q).all()
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
    z_axis = quat_to_matrix(q)[:, :, 2]
    np.testing.assert_allclose(np.abs(np.sum(z_axis * normals, axis=1)), 1.0, atol=1e-6)


def test_level_fractions_of_a_single_gaussian():
    """One Gaussian at level 0 of 2: fractions [1, 0] (the share of the Gaussians per level)."""
    from gs_mapping.mapping.levels import level_fractions

    assert level_fractions(np.array([0], np.uint8), 2) == [1.0, 0.0]


# ------------------------------------------------------------------------------------------------
# mapping: virtual views (forward warping) and metrics


def _reference_warp(rgbs, depths, srcs, dst):
    """Per-pixel forward warp: back-project valid (> 0) depth, project into dst, round to the
    nearest pixel, keep points in front (z > 1e-3) and inside; the nearest point wins."""
    out_rgb = np.zeros((dst.height, dst.width, 3), np.float32)
    out_d = np.full((dst.height, dst.width), np.inf)
    T_cam_map = np.linalg.inv(dst.T_map_cam)
    for rgb, depth, cam in zip(rgbs, depths, srcs, strict=True):
        for v in range(depth.shape[0]):
            for u in range(depth.shape[1]):
                z = depth[v, u]
                if not z > 0:
                    continue
                pc = np.array([(u - cam.K[0, 2]) / cam.K[0, 0] * z, (v - cam.K[1, 2]) / cam.K[1, 1] * z, z])
                pm = cam.T_map_cam[:3, :3] @ pc + cam.T_map_cam[:3, 3]
                q = T_cam_map[:3, :3] @ pm + T_cam_map[:3, 3]
                if q[2] <= 1e-3:
                    continue
                cu = int(np.rint(dst.K[0, 0] * q[0] / q[2] + dst.K[0, 2]))
                cv = int(np.rint(dst.K[1, 1] * q[1] / q[2] + dst.K[1, 2]))
                if 0 <= cu < dst.width and 0 <= cv < dst.height and q[2] <= out_d[cv, cu]:
                    out_d[cv, cu] = q[2]
                    out_rgb[cv, cu] = rgb[v, u]
    mask = np.isfinite(out_d)
    out_d[~mask] = 0.0
    return out_rgb, out_d.astype(np.float32), mask


@pytest.mark.parametrize(
    "dst_offset, dst_h", [((0.2, 0.1, -0.5), 18), ((0.0, 0.0, 2.0), 18), ((0.05, 0.0, 0.0), 14)]
)
def test_reproject_two_sources_matches_a_per_pixel_nearest_wins_reference(dst_offset, dst_h):
    """Two RGB-D keyframes (a wall at 3 m with a board at 1.5 m, holes of 0 depth) warped into a
    camera moved back (the depth cameras' centres are then in view) or moved forward past the board
    (the board is behind it), or a shorter image (points below its last row): equal to the per-pixel
    reference, nearest point winning."""
    from gs_mapping.camera import Camera
    from gs_mapping.mapping.virtual_views import reproject

    rng = np.random.default_rng(5)
    K = _K(30.0, 30.0, 11.5, 8.5)
    w, h = 24, 18
    rgbs, depths, srcs = [], [], []
    for x in (0.0, 0.3):
        T = np.eye(4)
        T[0, 3] = x
        d = 3.0 + rng.uniform(0, 0.01, (h, w))  # no exact ties
        d[5:12, 8:15] = 1.5 + rng.uniform(0, 0.01, (7, 7))
        d[rng.random((h, w)) < 0.1] = 0.0  # holes
        rgbs.append(rng.random((h, w, 3)).astype(np.float32))
        depths.append(d)
        srcs.append(Camera(K, w, h, T))
    Td = np.eye(4)
    Td[:3, :3] = _rotation(0.0, 0.05, 0.0)
    Td[:3, 3] = dst_offset
    dst = Camera(_K(28.0, 33.0, 11.5, 8.5), w, dst_h, Td)
    got_rgb, got_d, got_m = reproject(rgbs, depths, srcs, dst)
    want_rgb, want_d, want_m = _reference_warp(rgbs, depths, srcs, dst)
    assert want_m.sum() > 20
    np.testing.assert_array_equal(got_m, want_m)
    np.testing.assert_allclose(got_d, want_d, atol=1e-5)
    np.testing.assert_array_equal(got_rgb, want_rgb)


def test_reproject_occlusion_filter_clears_colour_where_it_drops_a_pixel():
    """'Pixels no point reaches carry no target': a background pixel dropped by the occlusion test
    (a 1 m point beside it) has mask False and zero depth and zero colour."""
    from gs_mapping.camera import Camera
    from gs_mapping.mapping.virtual_views import reproject

    K = _K(20.0, 20.0, 4.5, 4.5)
    cam = Camera(K, 10, 10, np.eye(4))
    depth = np.full((10, 10), 3.0)
    depth[4, 4] = 1.0  # a near point: its 3x3 neighbours (at 3 m) are 'seen through a crack'
    rgb = np.full((10, 10, 3), 0.7, np.float32)
    out_rgb, out_d, mask = reproject(rgb, depth, cam, cam, occlusion_tolerance=0.1)
    dropped = np.zeros((10, 10), bool)
    dropped[3:6, 3:6] = True
    dropped[4, 4] = False
    assert not mask[dropped].any() and mask[~dropped].all()
    assert (out_d[dropped] == 0).all() and (out_rgb[dropped] == 0).all()
    assert (out_rgb[~dropped] == np.float32(0.7)).all()


def test_psnr_over_an_empty_mask_is_nan_without_a_numpy_warning():
    """An empty mask has no pixels: PSNR is NaN, returned directly (no 'Mean of empty slice')."""
    from gs_mapping.mapping.metrics import psnr

    a = np.zeros((4, 5, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(psnr(a, a + 0.1, mask=np.zeros((4, 5), bool)))


# ------------------------------------------------------------------------------------------------
# mapping: densify


def _params(log_scales, logits=None, means=None):
    from gs_mapping.mapping.params import TorchGaussians

    ls = np.asarray(log_scales, np.float64)
    n = len(ls)
    p = TorchGaussians(0)
    p.append(
        np.arange(3 * n, dtype=np.float64).reshape(n, 3) if means is None else np.asarray(means),
        np.tile([0.0, 0.0, 0.0, 1.0], (n, 1)),
        ls,
        np.full(n, 2.0) if logits is None else np.asarray(logits, np.float64),
        np.zeros((n, 1, 3)),
    )
    return p


def test_grad_accumulator_averages_ndc_gradient_norms_over_the_views_that_saw_it():
    """Mean norm of the 2D-mean gradient in NDC units (x × width/2, y × height/2, as gsplat and
    3DGS) over the views where it was drawn (radii > 0), with a gradient or without; weight is the
    largest blending weight seen. Hand-computed for a 40 × 20 image."""
    from gs_mapping.mapping.densify import GradAccumulator

    acc = GradAccumulator(4)
    drawn = torch.tensor([[3, 3], [2, 2], [0, 0], [4, 4]])
    acc.add(
        torch.tensor([[0.15, 0.4], [0.05, 0.0], [0.0, 0.0], [0.0, 0.0]]),
        drawn,
        40,
        20,
        torch.tensor([2.0, 5.0, 0.0, 0.0]),
    )
    drawn[0] = 0  # the second view did not draw row 0
    acc.add(
        torch.tensor([[0.0, 0.0], [0.0, 0.3], [0.0, 0.0], [0.0, 0.0]]),
        drawn,
        40,
        20,
        torch.tensor([7.0, 1.0, 0.0, 0.0]),
    )
    # row 0: |(3, 4)| = 5 once; row 1: (1 + 3) / 2; row 2: never drawn; row 3: drawn twice, hidden
    np.testing.assert_allclose(acc.mean(), [5.0, 2.0, 0.0, 0.0])
    np.testing.assert_allclose(acc.count, [1, 2, 0, 2])
    np.testing.assert_allclose(acc.weight, [7.0, 5.0, 0.0, 0.0])


def test_densify_candidates_average_strictly_above_the_threshold_highest_first():
    """'averages above this': a gradient equal to the threshold is no candidate; with max_fraction
    limiting to one, the Gaussian with the highest gradient is the one cloned."""
    from gs_mapping.mapping.densify import GradAccumulator, densify
    from gs_mapping.mapping.mapper_config import DensifyConfig

    for frac, want_rows in ((1.0, [0, 2]), (0.25, [2])):
        p = _params(np.full((4, 3), np.log(0.001)))
        means = p.numpy("means").copy()
        acc = GradAccumulator(4)
        acc.sum[:], acc.count[:] = [0.5, 0.25, 0.9, 0.25], 1.0
        cfg = DensifyConfig(enabled=True, grad_threshold=0.25, max_fraction=frac, split_scale_ratio=0.5)
        out = densify(p, acc, np.array([0.0, 0.0, -10.0]), cfg, np.random.default_rng(0))
        assert out == {"cloned": len(want_rows), "split": 0}
        np.testing.assert_array_equal(p.numpy("means")[4:], means[want_rows])


def test_densify_splits_by_the_largest_scale_and_levels_follow_the_rule():
    """'larger than this fraction of their depth are split': a needle (0.2, 0.001, 0.001) m at 1 m
    with ratio 0.01 is split although its small axes are tiny. Levels: the first child keeps the
    parent's level 0, the second goes one finer (1); a clone of a level-1 Gaussian is level 2."""
    from gs_mapping.mapping.densify import GradAccumulator, densify
    from gs_mapping.mapping.mapper_config import DensifyConfig

    p = _params(
        np.log([[0.2, 0.001, 0.001], [0.001, 0.001, 0.001]]),
        means=[[0.0, 0.0, 1.0], [0.1, 0.0, 1.0]],
    )
    p.levels[:] = [0, 1]
    acc = GradAccumulator(2)
    acc.sum[:], acc.count[:] = 1.0, 1.0
    cfg = DensifyConfig(enabled=True, grad_threshold=0.1, max_fraction=1.0, split_scale_ratio=0.01)
    out = densify(p, acc, np.zeros(3), cfg, np.random.default_rng(0), level_count=3)
    assert out == {"cloned": 1, "split": 1}
    # rows: the kept small one (level 1), its clone (2), then the two children (0, 1)
    assert p.levels.tolist() == [1, 2, 0, 1]


def test_prune_keeps_gaussians_exactly_at_the_limits():
    """'more transparent than this' / 'larger than this' are pruned: opacity exactly min_opacity
    (logit 0 → 0.5) and size exactly max_scale_m (1 m) stay; just beyond either goes."""
    from gs_mapping.mapping.densify import prune
    from gs_mapping.mapping.mapper_config import DensifyConfig

    p = _params(
        [[0.0, -1.0, -1.0], [-1.0, -1.0, -1.0], [0.01, -1.0, -1.0], [-1.0, -1.0, -1.0]],
        logits=[3.0, 0.0, 3.0, -0.01],
    )
    assert prune(p, DensifyConfig(min_opacity=0.5, max_scale_m=1.0)) == 2
    np.testing.assert_allclose(p.numpy("opacity_logits"), [3.0, 0.0])


# ------------------------------------------------------------------------------------------------
# mapping: colour calibration


def test_color_camera_scales_both_focals_and_shifts_each_principal_point_axis():
    """focal_scale multiplies fx and fy, dcx shifts cx and dcy shifts cy (hand-computed K)."""
    from gs_mapping.camera import Camera
    from gs_mapping.mapping.calibration import ColorCalibration

    cam = Camera(_K(100.0, 80.0, 16.0, 12.0), 32, 24, np.eye(4))
    out = ColorCalibration(focal_scale=1.1, dcx=2.0, dcy=-3.0).color_camera(cam)
    np.testing.assert_allclose(out.K, _K(110.0, 88.0, 18.0, 9.0), atol=1e-12)


def test_photometric_cost_samples_every_fifth_pixel_at_320x240():
    """'about 3,000 sampled depth pixels per frame (every 5th pixel at 320x240)': the default step
    gives the cost of an explicit step of 5."""
    from gs_mapping.camera import Camera
    from gs_mapping.mapping.calibration import ColorCalibration, photometric_cost
    from gs_mapping.mapping.frames import Frame

    rng = np.random.default_rng(9)
    K = _K(250.0, 250.0, 159.5, 119.5)
    frames = []
    for i, x in enumerate((0.0, 0.05)):
        T = np.eye(4)
        T[0, 3] = x
        rgb = rng.random((240, 320, 3)).astype(np.float32)
        frames.append(Frame(rgb, np.full((240, 320), 2.0, np.float32), Camera(K, 320, 240, T), i, i))
    calib = ColorCalibration()
    got = photometric_cost(frames, [(0, 1)], calib)
    assert got == photometric_cost(frames, [(0, 1)], calib, step=5)
    assert got != photometric_cost(frames, [(0, 1)], calib, step=4)  # the step does matter here


def test_weight_sum_counts_only_pixels_inside_an_image_not_a_multiple_of_the_tile():
    """weight_sum is 'each Gaussian's total blending weight Σ_pixels w over the image': for one
    Gaussian near the bottom-right corner of a 14x10 image (edge tiles stick out of it) it equals the
    sum of the rendered alpha, not counting the tiles' padding rows and columns."""
    from gs_mapping.render import rasterize

    out = rasterize(
        torch.tensor([[0.06, 0.04, 1.0]], dtype=torch.float64),
        torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64),
        torch.full((1, 3), 0.03, dtype=torch.float64),
        torch.tensor([0.9], dtype=torch.float64),
        torch.zeros(1, 1, 3, dtype=torch.float64),
        torch.eye(4, dtype=torch.float64),
        torch.tensor(_K(100.0, 100.0, 6.5, 4.5)),
        14,
        10,
        backend="cpu",
    )
    assert float(out.alpha[-1, -1]) > 0.05  # it reaches the last row and column
    np.testing.assert_allclose(float(out.meta["weight_sum"][0]), float(out.alpha.sum()), rtol=1e-12)


def test_depth_in_color_registers_a_same_k_depth_camera_that_sits_elsewhere():
    """An unregistered depth camera with the colour camera's size and K but 5 cm to its left
    (TF) is not already registered: its depth is reprojected (the per-pixel numpy reference of a
    fronto-parallel 2 m wall: columns shift by fx·0.05/2 = 2.5 px), not passed through."""
    from gs_mapping.geometry import Transform, TransformStamped
    from gs_mapping.mapping.frames import depth_in_color
    from gs_mapping.messages.camera_info import CameraIntrinsics
    from gs_mapping.tf import MapPoses, TFBuffer

    K = _K(100.0, 100.0, 15.5, 11.5)
    color = CameraIntrinsics(32, 24, K, frame_id="color")
    depth_cam = CameraIntrinsics(32, 24, K, frame_id="depth")
    tf = TFBuffer(cache_time_s=0)
    identity = np.array([0.0, 0.0, 0.0, 1.0])
    tf.add(TransformStamped("map", "color", 0, Transform(np.zeros(3), identity)), static=True)
    tf.add(
        TransformStamped("color", "depth", 0, Transform(np.array([-0.05, 0.0, 0.0]), identity)), static=True
    )
    poses = MapPoses(tf, "map")
    depth = np.full((24, 32), 2.0, np.float32)
    depth[:, 16:] = 3.0  # a step, so that a shift shows in the values too
    out = depth_in_color(depth, "depth", 0, color, np.eye(4), poses, depth_intrinsics=depth_cam)
    # colour column of depth column u: u + 100 * (-0.05) / z (the depth camera is 5 cm to the left)
    want = np.zeros((24, 32), np.float32)
    for u in range(32):
        z = depth[0, u]
        c = int(np.rint(u - 100.0 * 0.05 / z))
        if 0 <= c < 32 and (want[0, c] == 0 or z < want[0, c]):
            want[:, c] = z
    both = (out > 0) & (want > 0)
    assert both.sum() >= 0.8 * (want > 0).sum()
    np.testing.assert_allclose(out[both], want[both], atol=1e-5)
    assert not np.array_equal(out, depth)
