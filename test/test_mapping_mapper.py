"""IncrementalMapper on small synthetic RGB-D frames (real renderer, CPU): NaN rejection, the cap,
change tracking through keyframes, invalid-depth skipping, keyframe selection."""

from __future__ import annotations

import numpy as np
import torch
from mapper_configs import small_cpu_config

from gs_mapping.camera import Camera
from gs_mapping.mapping import Frame, IncrementalMapper, MapperConfig
from gs_mapping.mapping.keyframes import KeyframeSelector
from gs_mapping.mapping.mapper_config import KeyframeConfig
from gs_mapping.mapping.params import FIELDS

W, H = 48, 36


def _frame(x: float, i: int = 0) -> Frame:
    """A textured wall 1.5 m ahead, camera translated by x along its x axis."""
    K = np.array([[40.0, 0, (W - 1) / 2], [0, 40.0, (H - 1) / 2], [0, 0, 1]])
    T = np.eye(4)
    T[0, 3] = x
    v, u = np.mgrid[0:H, 0:W]
    xs = (u - K[0, 2]) / K[0, 0] * 1.5 + x  # wall coordinate under each pixel
    rgb = np.stack([0.5 + 0.4 * np.sin(6 * xs), 0.5 + 0.4 * np.cos(5 * v / H * 3), 0.3 + 0 * xs], -1)
    depth = np.full((H, W), 1.5, np.float32)
    return Frame(rgb.astype(np.float32), depth, Camera(K, W, H, T), stamp_ns=i * 10**8, index=i)


def _cfg(**optim) -> MapperConfig:
    cfg = small_cpu_config()
    cfg.optim.iterations = optim.get("iterations", 3)
    cfg.optim.first_iterations = optim.get("first_iterations", 3)
    cfg.optim.render_scale = 1.0
    return cfg


def _snapshot(m: IncrementalMapper):
    return m.gmap.copy(), {n: m.params.numpy(n).copy() for n in FIELDS}


def test_keyframes_change_tracking():
    torch.manual_seed(0)
    cfg = _cfg(iterations=4, first_iterations=0)
    cfg.densify.enabled = True
    cfg.densify.grad_threshold = 0.0  # every seen Gaussian is a candidate: exercise clone/split
    m = IncrementalMapper(cfg, "cpu")
    f0 = _frame(0.0, 0)
    m.add_frame(f0)
    ch = m.gmap.take_changes()
    assert len(ch.added) == len(m.gmap) > 0 and len(ch.updated) == 0 and len(ch.removed) == 0
    m.add_frame(_frame(0.0, 1))  # same view: optimise, nothing new to seed
    ch = m.gmap.take_changes()
    assert len(ch.updated) > 0 and len(ch.added) == m.stats.cloned + 2 * m.stats.split > 0
    assert len(ch.removed) == m.stats.split + m.stats.pruned + m.stats.capped
    m.add_frame(_frame(0.3, 2))  # moved: new wall seen on the right → new Gaussians
    ch = m.gmap.take_changes()
    assert len(ch.added) > 0
    assert set(ch.added.tolist()) <= set(m.gmap.ids.tolist())
    assert not set(ch.removed.tolist()) & set(m.gmap.ids.tolist())
    assert np.array_equal(m.gmap.ids, m.params.ids)


def test_nan_loss_rejects_step_and_leaves_map_unchanged(caplog):
    m = IncrementalMapper(_cfg(iterations=3, first_iterations=0), "cpu")
    m.add_frame(_frame(0.0, 0))
    m.gmap.take_changes()
    gmap_before, params_before = _snapshot(m)
    bad = _frame(0.0, 1)
    bad.rgb[5, 5, 1] = np.nan  # a NaN in the target → NaN loss on every step
    m.window.clear()
    m.history.clear()
    m.add_frame(bad)
    assert m.stats.rejected_steps == 3 and m.stats.steps == 0
    assert "step rejected" in caplog.text
    for n in FIELDS:
        np.testing.assert_array_equal(m.params.numpy(n), params_before[n])
    assert m.gmap.equals(gmap_before)
    assert m.gmap.take_changes().empty


def test_cap_is_respected():
    cfg = _cfg(iterations=2, first_iterations=2)
    cfg.max_gaussians = 150
    m = IncrementalMapper(cfg, "cpu")
    for i, x in enumerate([0.0, 0.4, 0.8, 1.2]):
        m.add_frame(_frame(x, i))
        assert len(m.gmap) <= 150 and len(m.params) <= 150
    assert m.stats.capped > 0


def test_invalid_depth_is_skipped_and_counted():
    m = IncrementalMapper(_cfg(), "cpu")
    f = _frame(0.0, 0)
    f.depth[:] = 0.0
    d = m.add_frame(f)
    assert not d.is_keyframe and m.stats.skipped_invalid_depth == 1 and len(m.gmap) == 0
    # the reason goes back with the decision (the node counts and says it once, map's summary too)
    assert d.reason.startswith("depth unusable: 0% of its pixels within [")
    g = _frame(0.0, 1)
    g.depth[:] = np.nan
    m.add_frame(g)
    assert m.stats.skipped_invalid_depth == 2 and m.stats.frames == 0
    mm = _frame(0.0, 9)
    mm.depth *= 1000.0  # millimetres in a 32FC1 (metres) image: every pixel beyond max_depth_m
    dm = IncrementalMapper(_cfg(), "cpu").add_frame(mm)
    assert not dm.is_keyframe
    assert "(millimetres in a 32FC1 image?" in dm.reason and "median depth 1.5e+03 m" in dm.reason
    assert m.stats.invalid_depth_reason.startswith("0% of its pixels")


def test_keyframe_selection_by_motion_and_overlap():
    sel = KeyframeSelector(
        KeyframeConfig(min_translation_m=0.1, min_rotation_deg=10, min_overlap=0.8, max_gap=0)
    )
    f = _frame(0.0)
    assert sel.decide(f.camera, f.depth).reason == "first"
    assert not sel.decide(_frame(0.02).camera, f.depth).is_keyframe
    assert sel.decide(_frame(0.15).camera, f.depth).reason == "translation"
    rot = _frame(0.15).camera
    c, s = np.cos(np.radians(15)), np.sin(np.radians(15))
    T = rot.T_map_cam.copy()
    T[:3, :3] = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    assert sel.decide(rot.with_pose(T), f.depth).reason == "rotation"
    sel2 = KeyframeSelector(
        KeyframeConfig(min_translation_m=10, min_rotation_deg=90, min_overlap=0.75, max_gap=0)
    )
    sel2.decide(f.camera, f.depth)
    # 0.09 m sideways at 1.5 m, f = 40 px: 2.4 px; one of six sampled columns leaves → 0.83 covered
    assert not sel2.decide(_frame(0.09).camera, f.depth).is_keyframe
    assert sel2.decide(_frame(0.5).camera, f.depth).reason == "overlap"


def test_seed_order_makes_snapshot_ids_cheap():
    """Seeds appended in spatial_order get ascending ids along the codec's octree walk: the snapshot's
    id stream shrinks several-fold against pixel-row order (real codec, byte accounting)."""
    from gs_map_share.snapshot import encode_map
    from gs_mapping.gaussians import GaussianMap
    from gs_mapping.mapping.seeding import spatial_order

    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:60, 0:80]  # a seed grid in pixel-row order on a tilted wall, 4 levels
    means = np.stack([u.ravel() * 0.03, v.ravel() * 0.03, 2 + 0.01 * u.ravel()], 1)
    levels = rng.integers(0, 4, len(means)).astype(np.uint8)

    def id_bytes(order):
        g = GaussianMap(0)
        n = len(order)
        g.add(
            means[order],
            np.tile([0, 0, 0, 1.0], (n, 1)),
            np.full((n, 3), -4.0),
            np.zeros(n),
            np.zeros((n, 1, 3)),
            levels=levels[order],
        )
        stats: dict = {}
        encode_map(g, stats=stats)
        return stats["ids"]

    rows, sorted_ = id_bytes(np.arange(len(means))), id_bytes(spatial_order(means, levels))
    assert sorted_ * 4 < rows, (sorted_, rows)


def test_memory_bytes_counts_what_the_mapper_holds():
    cfg = _cfg()
    cfg.optim.window, cfg.optim.refine_keep = 2, 2
    m = IncrementalMapper(cfg, "cpu")
    sizes = []
    for i in range(5):
        m.add_frame(_frame(0.3 * i, i))
        sizes.append(m.memory_bytes())
    n = len(m.params)
    # parameters + 2 Adam moments (float32): at least 3 x (3 + 4 + 3 + 1 + 3) floats per Gaussian
    assert sizes[-1]["params"] >= 3 * 14 * 4 * n
    assert sizes[-1]["map"] >= len(m.gmap) * (12 + 16 + 12 + 4 + 12 + 8)
    # the kept keyframes are bounded by refine_keep / window: two colour + depth images
    assert sizes[-1]["keyframes"] == sizes[1]["keyframes"] == 2 * W * H * (3 + 1) * 4


def test_a_map_held_apart_is_not_drawn_optimised_nor_moved_and_joins_at_the_move():
    """A map loaded in TF's map while the mapper is given poses in another frame (mapper_node
    anchored to its first frame's pose): held apart, the loaded wall is not drawn (the view renders
    empty, so the frame seeds a wall of its own) and no step changes it; move_map moves only what
    was built meanwhile (R p + t, by hand), and the loaded wall is drawn again after it."""
    from scipy.spatial.transform import Rotation

    torch.manual_seed(0)
    cfg = _cfg(iterations=4, first_iterations=4)
    yesterday = IncrementalMapper(cfg, "cpu")
    yesterday.add_frame(_frame(0.0, 0))
    loaded = yesterday.gmap.copy()
    m = IncrementalMapper(cfg, "cpu")
    m.load_map(loaded.copy())
    view = _frame(0.0, 1)
    assert m.render(view.camera)[2].mean() > 0.5  # (the loaded wall fills the view)
    m.hold_apart(loaded.ids)
    assert m.render(view.camera)[2].max() == 0
    m.add_frame(view)
    assert m.stats.seeded > 0 and m.stats.steps > 0
    rows = m.gmap.rows_of(loaded.ids)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(m.gmap, name)[rows], getattr(loaded, name), err_msg=name)
    built = np.setdiff1d(np.arange(len(m.gmap)), rows)
    means = m.gmap.means[built].copy()
    R = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, (100.0, 5.0, 0.0)  # (today's wall far out of the view)
    m.move_map(T)
    rows = m.gmap.rows_of(loaded.ids)
    np.testing.assert_array_equal(m.gmap.means[rows], loaded.means)
    np.testing.assert_allclose(
        m.gmap.means[np.setdiff1d(np.arange(len(m.gmap)), rows)], means @ R.T + T[:3, 3], atol=1e-4
    )
    assert m.render(view.camera)[2].mean() > 0.5
