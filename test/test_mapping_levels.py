"""Octree levels of detail (ProGS) in the mapper: level assignment invariants, levels through
densification, PLY and change tracking, the multi-level loss, config validation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mapper_configs import small_cpu_config

from gs_mapping.camera import Camera
from gs_mapping.config_file import from_dict
from gs_mapping.errors import ConfigError
from gs_mapping.mapping import Frame, IncrementalMapper, MapperConfig
from gs_mapping.mapping.densify import GradAccumulator, densify
from gs_mapping.mapping.levels import LevelSubset, assign_levels, level_fractions, voxel_keys
from gs_mapping.mapping.mapper_config import DensifyConfig, LevelsConfig
from gs_mapping.mapping.optimizer import WindowOptimizer, make_view
from gs_mapping.mapping.params import TorchGaussians
from gs_mapping.ply import load_ply, save_ply

W, H = 48, 36


def _frame(x: float, i: int = 0, f: float = 1.0) -> Frame:
    """A textured wall 1.5 m ahead (texture frequency × f), camera translated by x along its x axis."""
    K = np.array([[40.0, 0, (W - 1) / 2], [0, 40.0, (H - 1) / 2], [0, 0, 1]])
    T = np.eye(4)
    T[0, 3] = x
    v, u = np.mgrid[0:H, 0:W]
    xs = (u - K[0, 2]) / K[0, 0] * 1.5 + x
    rgb = np.stack(
        [
            0.5 + 0.4 * np.sin(9 * f * xs),
            0.5 + 0.4 * np.cos(7 * f * v / H * 3),
            0.3 + 0.2 * np.sin(5 * f * xs),
        ],
        -1,
    )
    return Frame(
        rgb.astype(np.float32),
        np.full((H, W), 1.5, np.float32),
        Camera(K, W, H, T),
        stamp_ns=i * 10**8,
        index=i,
    )


def _cfg(multi_level: bool = True, **levels) -> MapperConfig:
    cfg = small_cpu_config(3)
    cfg.levels.base_voxel_m = 0.4
    cfg.levels.multi_level_loss = multi_level
    for k, v in levels.items():
        setattr(cfg.levels, k, v)
    return cfg


points = st.integers(1, 400).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, 2**31 - 1)))


@settings(max_examples=30, deadline=None)
@given(points, st.integers(1, 5), st.sampled_from([0.05, 0.3, 1.0]))
def test_assignment_invariants(n_seed, count, base):
    n, seed = n_seed
    rng = np.random.default_rng(seed)
    cfg = LevelsConfig(count=count, base_voxel_m=base)
    old = rng.uniform(-1, 1, (n // 2, 3)).astype(np.float32)
    old_lv = assign_levels(old, cfg)
    new = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    lv = assign_levels(new, cfg, old, old_lv)
    assert lv.dtype == np.uint8 and len(lv) == n and lv.max(initial=0) <= count - 1
    np.testing.assert_array_equal(lv, assign_levels(new, cfg, old, old_lv))  # deterministic
    all_means, all_lv = np.concatenate([old, new]), np.concatenate([old_lv, lv])
    for lvl in range(count - 1):
        voxel = base / 2**lvl
        keys = voxel_keys(all_means[all_lv == lvl], voxel)
        assert len(np.unique(keys)) == len(keys), f"two level-{lvl} Gaussians share a voxel"
        # a Gaussian finer than lvl only where lvl's voxel was already held
        finer_keys = voxel_keys(all_means[all_lv > lvl], voxel)
        assert np.isin(finer_keys, keys).all()


def test_coarse_levels_sparse_on_a_dense_surface():
    """A dense plane (1 cm spacing): level l holds one Gaussian per occupied voxel of its size."""
    g = np.mgrid[0:1:0.01, 0:1:0.01].reshape(2, -1).T
    means = np.c_[g, np.full(len(g), 0.55)].astype(np.float32)
    cfg = LevelsConfig(count=4, base_voxel_m=0.4)
    lv = assign_levels(means, cfg)
    counts = np.bincount(lv, minlength=4)
    assert counts[0] == 9 and counts[1] == 25 and counts[2] == 100  # ⌈1/0.4⌉², (1/0.2)², (1/0.1)²
    frac = level_fractions(lv, 4)
    assert sum(frac[:3]) < 0.015 and abs(sum(frac) - 1) < 1e-9
    assert (assign_levels(means, LevelsConfig(count=1)) == 0).all()


def test_levels_survive_sync_ply_and_take_changes(tmp_path):
    torch.manual_seed(0)
    m = IncrementalMapper(_cfg(), "cpu")
    m.add_frame(_frame(0.0, 0))
    ch = m.gmap.take_changes()
    m.add_frame(_frame(0.4, 1))  # new wall on the right: new seeds with their own levels
    ch = m.gmap.take_changes()
    assert len(ch.added) > 0
    np.testing.assert_array_equal(m.gmap.levels, m.params.levels)
    counts = np.bincount(m.gmap.levels, minlength=4)
    assert (counts > 0).all() and counts[0] < counts[3]
    added_rows = m.gmap.rows_of(ch.added)
    assert len(np.unique(m.gmap.levels[added_rows])) > 1
    save_ply(m.gmap, tmp_path / "map.ply", keep_ids=True)
    loaded = load_ply(tmp_path / "map.ply")
    np.testing.assert_array_equal(loaded.levels, m.gmap.levels)
    np.testing.assert_array_equal(loaded.ids, m.gmap.ids)
    ev = m.evaluate(_frame(0.2, 2))
    assert len(ev["psnr_levels"]) == 4 and ev["psnr_levels"][-1] == ev["psnr"]
    assert ev["psnr_levels"][0] < ev["psnr"]  # level 0 alone is a sparse cover


def test_densify_keeps_coarse_counts():
    rng = np.random.default_rng(0)
    p = TorchGaussians(0)
    n = 40
    p.append(
        rng.normal(0, 1, (n, 3)),
        np.tile([0, 0, 0, 1.0], (n, 1)),
        np.log(np.r_[np.full(20, 0.001), np.full(20, 0.5)])[:, None].repeat(3, 1),
        np.zeros(n),
        rng.uniform(size=(n, 1, 3)),
    )
    p.levels[:] = np.arange(n) % 3
    before = np.bincount(p.levels, minlength=3)
    acc = GradAccumulator(n)
    acc.sum[:] = 1.0
    acc.count[:] = 1.0
    d = densify(
        p, acc, np.array([0, 0, -5.0]), DensifyConfig(enabled=True, max_fraction=1.0), rng, level_count=3
    )
    assert d["cloned"] == 20 and d["split"] == 20
    after = np.bincount(p.levels, minlength=3)
    assert after[0] == before[0]  # clones and second split children go finer; first children inherit
    assert len(p) == n + 20 + 20 and len(p.levels) == len(p)


def _coarse_psnr(params, view, cfg) -> float:
    with torch.no_grad():
        out = IncrementalMapper(cfg, "cpu").render_params(LevelSubset(params, 0), view.camera)
    mse = float(((out.color.clamp(0, 1) - view.rgb) ** 2).mean())
    return -10 * np.log10(mse)


def test_multi_level_loss_improves_the_coarse_render():
    """Same start, same views, same steps: with the multi-level loss the level-0-only render fits
    the images better; gradients of the coarse term reach exactly the coarse rows."""
    torch.manual_seed(0)
    cfg = _cfg(count=3, loss_every=1, loss_weight=1.0)
    m = IncrementalMapper(cfg, "cpu")
    m.add_frame(_frame(0.0, 0, f=0.3))  # smooth colours: what a coarse level can represent
    frames = [_frame(x, i, f=0.3) for i, x in enumerate([0.0, 0.1, -0.1])]
    views = [make_view(f.rgb, f.depth, f.camera, 1.0, "cpu") for f in frames]
    start = copy.deepcopy(m.params)
    assert 0 < (start.levels == 0).sum() < len(start) / 4

    # the coarse term alone: gradient on level-0 rows only
    opt = WindowOptimizer(cfg.optim, m.render_params, cfg.levels)
    p = copy.deepcopy(start)
    for t in p.parameters().values():
        t.grad = None  # (deepcopy keeps the last step's gradients)
    loss = opt.coarse_loss(p, views[0], 0)
    loss.backward()
    g = p.sh.grad.reshape(len(p), -1).abs().sum(1).numpy()
    assert (g[p.levels == 0] > 0).mean() > 0.9 and (g[p.levels > 0] == 0).all()

    before = _coarse_psnr(start, views[0], cfg)
    result = {}
    for on in (True, False):
        lv = copy.deepcopy(cfg.levels)
        lv.multi_level_loss = on
        p = copy.deepcopy(start)
        WindowOptimizer(cfg.optim, m.render_params, lv).run(p, views, 30, np.random.default_rng(1))
        result[on] = (_coarse_psnr(p, views[0], cfg), p)
    moved = np.abs(result[True][1].numpy("sh") - start.numpy("sh")).reshape(len(start), -1).sum(1)
    assert (moved[start.levels == 0] > 0).all()
    print("coarse PSNR before / with / without:", before, result[True][0], result[False][0])
    assert result[True][0] > result[False][0] + 1.0, result
    assert result[True][0] > before + 0.5


@pytest.mark.parametrize(
    "levels, match",
    [
        ({"count": 0}, "count"),
        ({"count": 17}, "count"),
        ({"base_voxel_m": 0.0}, "base_voxel_m"),
        ({"loss_weight": -1.0}, "loss_weight"),
        ({"loss_every": 0}, "loss_every"),
        ({"octree": 3}, "octree"),
    ],
)
def test_config_validation(levels, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(MapperConfig, {"levels": levels}, where="mapper")


def test_config_validation_in_code():
    with pytest.raises(ConfigError, match="levels.count"):
        MapperConfig(levels=LevelsConfig(count=0))
    with pytest.raises(ConfigError, match="levels.loss_every"):
        MapperConfig(levels=LevelsConfig(loss_every=0))
    cfg = from_dict(MapperConfig, {"levels": {"count": 2, "multi_level_loss": False}})
    assert cfg.levels.count == 2 and not cfg.levels.multi_level_loss
