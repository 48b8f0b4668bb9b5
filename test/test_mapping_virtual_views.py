"""GS-Share's virtual-image enhancement: forward-warped targets (z-buffer, occlusion filter, several
sources), the views built around a keyframe, their use by the optimiser and by the mapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mapper_configs import small_cpu_config

from gs_mapping.camera import Camera
from gs_mapping.errors import ConfigError
from gs_mapping.mapping import Frame, IncrementalMapper, MapperConfig
from gs_mapping.mapping.optimizer import TrainView
from gs_mapping.mapping.virtual_views import displaced_pose, reproject, virtual_views

W, H, F = 48, 36, 40.0
K = np.array([[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1]])


def _cam(x: float = 0.0) -> Camera:
    T = np.eye(4)
    T[0, 3] = x
    return Camera(K, W, H, T)


def _wall(x: float = 0.0, z: float = 2.0):
    """A wall z metres ahead whose colour encodes the wall coordinate under each pixel."""
    v, u = np.mgrid[0:H, 0:W]
    xs = (u - K[0, 2]) / F * z + x
    rgb = np.stack([(xs + 2) / 4, v / H, np.full_like(xs, 0.25)], -1).astype(np.float32)
    return rgb, np.full((H, W), z, np.float32)


def test_displaced_pose_moves_along_camera_x():
    T = np.eye(4)
    T[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # optical frame of a car facing map +x
    D = displaced_pose(T, 2.0)
    np.testing.assert_allclose(D[:3, :3], T[:3, :3])
    np.testing.assert_allclose(D[:3, 3], 2.0 * T[:3, 0])  # camera x = the car's right = map -y


def test_reproject_identity_keeps_every_valid_pixel():
    rgb, depth = _wall()
    depth[5:9, 10:20] = 0  # invalid depth: no target there
    r, d, m = reproject(rgb, depth, _cam(), _cam())
    np.testing.assert_array_equal(m, depth > 0)
    np.testing.assert_allclose(r[m], rgb[m])
    np.testing.assert_allclose(d[m], depth[m])


def test_reproject_lateral_shift_moves_the_wall_by_focal_times_offset_over_depth():
    rgb, depth = _wall(z=2.0)
    r, d, m = reproject(rgb, depth, _cam(), _cam(0.5))  # 0.5 m right: the wall moves 10 px left
    shift = int(F * 0.5 / 2.0)
    assert not m[:, W - shift :].any() and m[:, : W - shift].all()
    np.testing.assert_allclose(r[:, : W - shift], rgb[:, shift:], atol=1e-6)
    np.testing.assert_allclose(d[m], 2.0, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(offset=st.floats(-1.0, 1.0), z=st.floats(1.0, 20.0))
def test_reproject_round_trip_through_a_displaced_view(offset, z):
    """Warping out to a displaced camera and back returns the same colours and depths where defined."""
    rgb, depth = _wall(z=z)
    r, d, m = reproject(rgb, depth, _cam(), _cam(offset))
    np.testing.assert_allclose(d[m], z, rtol=1e-5)
    assert m.mean() >= 1 - abs(offset) * F / z / W - 2 / W  # only the strip leaving the image is lost
    r2, d2, m2 = reproject(r, d, _cam(offset), _cam())
    np.testing.assert_allclose(r2[m2], rgb[m2], atol=1.5 / F * z / 4 + 1e-6)  # within a pixel's colour step
    np.testing.assert_allclose(d2[m2], z, rtol=1e-5)


def test_zbuffer_keeps_the_nearest_point_and_the_occlusion_filter_drops_background_in_cracks():
    rgb, depth = _wall(z=4.0)
    # a near post (1 m) in front, with a one-pixel crack of missing depth (background shows through)
    depth[:, 20:26] = 1.0
    rgb[:, 20:26] = [1.0, 0.0, 0.0]
    _, d, _ = reproject(rgb, depth, _cam(), _cam())
    assert np.all(d[:, 20:26] == 1.0)  # the post wins where both project
    depth2 = depth.copy()
    depth2[:, 23] = 4.0  # background through the crack
    _, _, m2 = reproject(rgb, depth2, _cam(), _cam())
    assert m2[:, 23].all()  # without the filter the background is a target inside the post
    _, d3, m3 = reproject(rgb, depth2, _cam(), _cam(), occlusion_tolerance=0.1)
    assert not m3[:, 23].any()
    assert m3[:, 20:23].all() and m3[:, 24:26].all()  # the post itself is kept
    assert m3[:, :18].all()  # and the wall away from the post's edge
    assert np.all(d3[~m3] == 0)


def test_several_sources_fill_what_one_did_not_see():
    sources = []
    for x in (0.0, -0.5):
        rgb, depth = _wall(x)
        depth[:, W // 2 :] = 0 if x == 0.0 else depth[:, W // 2 :]  # the newest saw only its left half
        sources.append(TrainView(_cam(x), torch.as_tensor(rgb), torch.as_tensor(depth)))
    sources.reverse()  # oldest first, newest (x = 0) last
    one = virtual_views(sources[-1:], [0.5], weight=1.0)[0]
    two = virtual_views(sources, [0.5], weight=1.0)[0]
    assert one.virtual and two.virtual
    assert float(two.mask.float().mean()) > float(one.mask.float().mean()) + 0.2
    np.testing.assert_allclose(two.camera.T_map_cam[:3, 3], [0.5, 0, 0])
    # targets from both sources agree where they overlap (same wall colour)
    rgb_true, _ = _wall(0.5)
    np.testing.assert_allclose(two.rgb.numpy()[two.mask.numpy()], rgb_true[two.mask.numpy()], atol=0.03)


def test_views_seeing_almost_nothing_are_left_out():
    rgb, depth = _wall(z=2.0)
    src = [TrainView(_cam(), torch.as_tensor(rgb), torch.as_tensor(depth))]
    vs = virtual_views(src, [-1.0, 1.0, 50.0], weight=0.5)
    assert len(vs) == 2 and all(v.weight == 0.5 for v in vs)


def _frame(x: float, i: int) -> Frame:
    rgb, depth = _wall(x)
    return Frame(rgb, depth, _cam(x), stamp_ns=i * 10**8, index=i)


def _mapper(enabled: bool, calls: list | None = None, **vv) -> IncrementalMapper:
    from gs_mapping.render import rasterize

    def recording(means, quats, scales, opac, sh, viewmat, K, w, h, **kw):
        if calls is not None:
            calls.append(-float(viewmat[0, 3]))  # camera x in the map (identity rotation)
        return rasterize(means, quats, scales, opac, sh, viewmat, K, w, h, **kw)

    cfg = small_cpu_config(8)
    cfg.optim.refine_iterations = 0
    cfg.virtual_views.enabled = enabled
    for k, v in vv.items():
        setattr(cfg.virtual_views, k, v)
    return IncrementalMapper(cfg, "cpu", rasterize=recording)


def test_mapper_supervises_virtual_views_every_nth_iteration_and_keeps_a_bounded_pool():
    calls: list[float] = []
    m = _mapper(True, calls, offsets_m=[-0.4, 0.4], every=2, keep=2, sources=2)
    for i in range(4):
        m.add_frame(_frame(0.05 * i, i))
    assert m.stats.keyframes == 4
    assert len(m.virtual) == 2 and all(len(vs) == 2 for vs in m.virtual)  # keep × offsets
    for vs, x in zip(m.virtual, (0.10, 0.15), strict=False):  # the pool holds the newest keyframes' views
        np.testing.assert_allclose(sorted(v.camera.T_map_cam[0, 3] for v in vs), [x - 0.4, x + 0.4])
    displaced = [x for x in calls if min(abs(x - 0.05 * i) for i in range(4)) > 0.2]
    assert len(displaced) == 4 * 8 // 2  # every 2nd of 8 iterations, on each of the 4 keyframes


def test_mapper_without_virtual_views_renders_only_real_poses():
    calls: list[float] = []
    m = _mapper(False, calls)
    for i in range(3):
        m.add_frame(_frame(0.05 * i, i))
    assert not m.virtual
    assert all(min(abs(x - 0.05 * i) for i in range(3)) < 1e-6 for x in calls)


@pytest.mark.parametrize("field,value", [("sources", 0), ("keep", 0), ("every", 0)])
def test_config_rejects_bad_values(field, value):
    cfg = MapperConfig()
    setattr(cfg.virtual_views, field, value)
    with pytest.raises(ConfigError, match=f"virtual_views.{field}"):
        cfg.__post_init__()
