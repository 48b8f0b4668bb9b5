"""Guards for behaviours a random-sample mutation pass (round 31e, seed 3105, over the CLI commands,
the synthetic world (world/), the demo (demo/), output_files, input_files, progress, cpu_threads and
device; 70 lines drawn with ``random.Random(3105)``, weighted by file length, 41 of them mutated)
found unguarded: ProgressLines resuming from ``initial``, ``apply``'s usage without an output,
Objects.add_box, primitives straddling the camera plane, the box and pole normals, value noise
continuity, usable_cores without an affinity mask, the demo report's
captions, ``map``'s --holdout-views default, and run_node's stdout on EIO.
Each test compares the component with an independent reference (tqdm's own counting, a hand-computed
answer, the rule a doc or docstring states), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import io

import pytest

# ------------------------------------------------------------------------------------------------
# progress: the plain-lines fallback (stderr not a terminal)


def test_progress_lines_resume_from_initial_as_tqdm_counts(monkeypatch):
    """progress.py:67 ``initial=initial`` -> ``initial=0``: where stderr is no terminal, progress()
    gives ProgressLines, which must count from ``initial`` as tqdm's bar does (a resumed run at 5 of
    10 that did one more step is at 6/10, 60 %). The reference: tqdm itself, given the same
    arguments."""
    from tqdm import tqdm

    from gs_mapping import progress as P

    err = io.StringIO()  # (not a terminal)
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setenv(P.INTERVAL_ENV, "0")
    bar = P.progress(total=10, initial=5, desc="work")
    bar.update(1)
    bar.close()
    ref = tqdm(total=10, initial=5, file=io.StringIO())
    ref.update(1)
    ref.close()
    assert ref.n == 6
    lines = err.getvalue().splitlines()
    assert lines, "a new tenth with interval 0 writes a line"
    assert lines[-1].startswith("work: 6/10 (60%)"), lines


# ------------------------------------------------------------------------------------------------
# cli apply: its usage needs the output after the base


def test_apply_without_an_output_is_a_usage_error(tmp_path, capsys):
    """cli/apply.py:20 ``nargs="+"`` -> ``nargs="*"``: README's usage is ``apply BASE.gsd
    DELTA.gsd… OUT.ply``, so ``apply BASE.gsd`` alone lacks the output: argparse's usage error
    (exit status 2, the missing argument named on stderr) before any file is read. With the mutant
    the command ran and failed unpacking an empty list (a ValueError, a traceback)."""
    from gs_mapping.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["apply", str(tmp_path / "base.gsd")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "required" in err and "OUT.ply" in err, err


# ------------------------------------------------------------------------------------------------
# world.scene.Objects.add_box: a copy with one more box, the others unchanged


def test_add_box_keeps_each_box_footprint_as_given():
    """world/scene.py:130 field names ``"hx", "hy"`` -> ``"hy", "hx"``: add_box must append the new
    box's half sizes to the matching fields and leave the boxes already there as they were. The
    reference: the footprints written out by hand (a box at (cx, cy) with half sizes hx, hy and
    yaw 0 covers cx ± hx by cy ± hy); the mutant swapped every existing box's half sizes and gave
    the new one the other's."""
    import numpy as np

    from gs_mapping.world.scene import BUILDING, Boxes, Cylinders, Ellipsoids, Objects, _pack

    objs = Objects(
        _pack(Boxes, [(0.0, 0.0, 0.0, 5.0, 2.0, 4.0, 0.0, BUILDING, (1, 2, 3))]),
        _pack(Cylinders, []),
        _pack(Ellipsoids, []),
    )
    out = objs.add_box(10.0, 0.0, 0.0, 8.0, 1.0, 3.0, 0.0)
    c = out.boxes.corners()
    assert len(out.boxes) == 2 and len(objs.boxes) == 1
    # box 0: x -2..2, y -4..4; box 1: x 9..11, y -3..3; heights 0..5 and 0..8
    np.testing.assert_allclose([c[0, :, 0].min(), c[0, :, 0].max()], [-2, 2])
    np.testing.assert_allclose([c[0, :, 1].min(), c[0, :, 1].max()], [-4, 4])
    np.testing.assert_allclose([c[1, :, 0].min(), c[1, :, 0].max()], [9, 11])
    np.testing.assert_allclose([c[1, :, 1].min(), c[1, :, 1].max()], [-3, 3])
    np.testing.assert_allclose(c[:, :, 2].max(1), [5, 8])


# ------------------------------------------------------------------------------------------------
# world.render.camera_regions: a primitive straddling the camera plane


def _one_scene(walls=(), poles=()):
    """A seeded world's ground with only the given boxes (cx, cy, z0, z1, hx, hy, yaw) and cylinders
    (cx, cy, r, z0, z1), and a 64 x 48 front camera at (0, 0, 1.5) looking along map +x."""
    import numpy as np

    from gs_mapping.world import World
    from gs_mapping.world.rig import rig_cameras
    from gs_mapping.world.scene import BUILDING, POLE, Boxes, Cylinders, Ellipsoids, Objects, _pack

    objs = Objects(
        _pack(Boxes, [(*w, BUILDING, (150, 150, 150)) for w in walls]),
        _pack(Cylinders, [(*c, POLE, (90, 90, 90)) for c in poles]),
        _pack(Ellipsoids, []),
    )
    world = World.generate(seed=1, length=60.0).with_objects(objs)
    T = np.eye(4)  # optical frame: x right, y down, z forward = map (0, -1, 0), (0, 0, -1), (1, 0, 0)
    T[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    T[:3, 3] = [0.0, 0.0, 1.5]
    return world, rig_cameras("front", 64, 48)[0].with_pose(T), T


def test_wall_reaching_behind_the_camera_has_its_ray_plane_depth():
    """world/render.py:237 ``if front[i]:`` -> ``if not front[i]:``: a primitive that straddles the
    camera plane (part of it behind the camera: a long wall beside the car) must be tested over the
    whole image; its corners behind the camera project to meaningless pixels. The reference: the
    depth written out by hand, each pixel's ray (K⁻¹ (u, v, 1) in the optical frame, so z-depth = the
    ray parameter) met with the wall's face plane y = 5. With the mutant the wall's rectangle came
    from those projections and most of the wall was missing (ground or sky there instead)."""
    import numpy as np

    world, cam, T = _one_scene(walls=[(0.0, 6.0, 0.0, 40.0, 30.0, 1.0, 0.0)])
    _, depth = world.render(cam)
    K = np.asarray(cam.K, np.float64)
    v, u = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float64)  # pixel centres: integer (u, v)
    ray_opt = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    ray_map = ray_opt @ T[:3, :3].T
    with np.errstate(divide="ignore"):
        t = 5.0 / ray_map[..., 1]  # the camera at y = 0: y(t) = t · d_y = 5
    z = 1.5 + t * ray_map[..., 2]
    on_wall = (ray_map[..., 1] > 0.05) & (z > 0.05) & (z < 39.0) & (np.abs(t * ray_map[..., 0]) < 29.0)
    assert on_wall.sum() > 200  # the left part of the image sees the wall
    np.testing.assert_allclose(depth[on_wall], t[on_wall], rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------------------------------
# cpu_threads.usable_cores: where the OS has no affinity mask (macOS, Windows)


@pytest.mark.parametrize("count, expected", [(1, 1), (None, 1), (3, 3)])
def test_usable_cores_without_an_affinity_mask_is_the_cpu_count(monkeypatch, count, expected):
    """cpu_threads.py:33 ``max(1, os.cpu_count() or 1)`` -> ``max(2, ...)``: where
    os.sched_getaffinity does not exist, the cores are os.cpu_count() (None, 'undetermined' in
    Python's docs, counts as one): a 1-core machine gets 1 raster worker, not 2."""
    import os

    from gs_mapping import cpu_threads

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: count)
    assert cpu_threads.usable_cores() == expected
    assert cpu_threads.default_raster_workers() == expected


# ------------------------------------------------------------------------------------------------
# world.render value noise: smooth (continuous) across its lattice cells


def _steps_along(axis: int, dims: int, n: int = 4001):
    """Points on a line along ``axis`` over 4 lattice cells (scale 1), the others at a fixed
    fraction, and the spacing between them."""
    import numpy as np

    t = np.linspace(-2.0, 2.0, n)
    p = np.tile(np.array([0.37, -1.61, 2.23][:dims]), (n, 1))
    p[:, axis] = t
    return p, t[1] - t[0]


@pytest.mark.parametrize("axis", [0, 1])
def test_value_noise2_has_no_seams_at_cell_borders(axis):
    """world/render.py:95 ``fx * fx * (3 - 2 * fx)`` -> ``(3 - 2 * fy)``: docs/world.md's textures are
    'hashed value noise', and value_noise2 is 'smooth': a smoothstep blend of the lattice values, so
    it is continuous, with slope at most 1.5 × (largest lattice difference < 1) per cell. Walking
    across four cells in steps of 0.001 cell, no step changes it by more than 1.5 × 0.001 (+ float32
    rounding). The mutant's blend weight jumped at each x border (a seam in every texture); the
    reference is that calculus bound, written out here."""
    import numpy as np

    from gs_mapping.world.render import value_noise2

    p, h = _steps_along(axis, 2)
    v = value_noise2(p[:, 0], p[:, 1], 1.0, seed=11).astype(np.float64)
    assert np.all((v >= 0) & (v < 1))
    assert np.abs(np.diff(v)).max() <= 1.5 * h + 1e-5


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_value_noise3_has_no_seams_at_cell_borders(axis):
    """world/render.py:109 ``for dy in (0, 1):`` -> ``for dy in (0,):``: value_noise3 (the trees'
    leaf clumps) is the trilinear smoothstep blend of its eight lattice corners, whose weights sum
    to 1: continuous, in [0, 1), with slope at most 1.5 per cell along each axis. Dropping the dy = 1
    corners made the weights sum to 1 - fy: a drop to 0 at every y border (and values halved). The
    reference: the same calculus bound as for value_noise2, over steps of 0.001 cell."""
    import numpy as np

    from gs_mapping.world.render import value_noise3

    p, h = _steps_along(axis, 3)
    v = value_noise3(p, 1.0, seed=7).astype(np.float64)
    assert np.all((v >= 0) & (v < 1))
    assert np.abs(np.diff(v)).max() <= 1.5 * h + 1e-5


def _surface_seen(world, cam):
    """render.surface over the camera's rays, with the hit kind of each hit pixel."""
    from gs_mapping.world import render as R
    from gs_mapping.world.world import camera_rays

    o, d = camera_rays(cam)
    regions = R.camera_regions(world.objects, cam.T_cam_map, cam.K, cam.width, cam.height, 200.0)
    hits = R.cast(world.objects, o, d, regions, 200.0)
    mask, p, normal, *_ = R.surface(world, o, d, hits)
    return hits.kind[mask], p, normal


def test_box_and_pole_normals_are_the_outward_unit_normals():
    """world/render.py:329 ``nl = np.zeros(...)`` -> ``np.ones(...)`` (box normals) and
    render.py:390 ``normal[sel] = n`` -> ``-n`` (cylinder normals): render.surface promises the
    'unit normal' of each hit, which lights it (Lambert) and sets LiDAR intensity. The reference,
    written out by hand: the wall's face y = 5 seen from the origin has outward normal (0, -1, 0);
    a pole of radius 0.5 at (12, -3) has at a side hit p the outward normal (p - axis) / 0.5 in xy,
    z 0. The mutants gave (1, -1, 1)-like non-unit normals and inward pole normals."""
    import numpy as np

    from gs_mapping.world import render as R

    world, cam, _ = _one_scene(
        walls=[(0.0, 6.0, 0.0, 40.0, 30.0, 1.0, 0.0)], poles=[(12.0, -3.0, 0.5, 0.0, 30.0)]
    )
    kind, p, normal = _surface_seen(world, cam)
    box, cyl = kind == R.BOX, kind == R.CYL
    assert box.sum() > 100 and cyl.sum() > 10
    np.testing.assert_allclose(normal[box], np.tile([0.0, -1.0, 0.0], (box.sum(), 1)), atol=1e-6)
    side = cyl & (p[:, 2] < 29.9)
    expected = np.stack([(p[side, 0] - 12.0) / 0.5, (p[side, 1] + 3.0) / 0.5, np.zeros(side.sum())], 1)
    np.testing.assert_allclose(normal[side], expected, atol=2e-3)


# ------------------------------------------------------------------------------------------------
# demo report: the held-out views' captions


def test_report_captions_each_view_with_its_whole_image_psnr(tmp_path, monkeypatch):
    """demo/report.py:119 caption ``p_all`` -> ``_p_in``: the report's text gives the held-out PSNR
    'over all pixels' first and 'within 60 m' second; each view's caption in map_vs_camera.png
    ('shared map (X dB)') shows the view's whole-image PSNR. The reference: PSNR written out by hand,
    10 log10(1 / MSE) over every pixel of a view whose map image is off by 0.1 everywhere (20.0 dB)
    and exact below row 4 (the in-range value passed is a different 40.0 dB); the mutant captioned
    the in-range one."""
    import numpy as np

    from gs_mapping.demo import report

    truth = np.full((8, 8, 3), 0.5, np.float32)
    color = truth + 0.1
    p_all = 10 * np.log10(1.0 / np.mean((color - truth) ** 2))
    assert abs(p_all - 20.0) < 1e-3
    texts = []
    real_label = report._label
    monkeypatch.setattr(report, "_label", lambda img, text: texts.append(text) or real_label(img, text))
    metrics = {"world": {"frames": 2, "size": [8, 8], "seed": 0}, "device": "cpu", "seconds": {"total": 1.0}}
    report.write_report(tmp_path, metrics, [], [(float(p_all), 40.0, color, truth)], [], [])
    assert (tmp_path / "map_vs_camera.png").exists()
    assert "shared map (20.0 dB)" in texts, texts


# ------------------------------------------------------------------------------------------------
# cli map: what it hands the mapper without --holdout-views / with a parameter file's value


def _mapper_config_of_map(kitchen_bag, tmp_path, monkeypatch, extra):
    """The MapperConfig ``gs-mapping map`` hands to map_bag (replaced by a stand-in that records it)."""
    pytest.importorskip("torch")
    import gs_mapping.mapping.run as run_mod
    from gs_mapping.cli import main

    seen = []

    def fake_map_bag(bag, out, cfg, **kw):
        seen.append(cfg)
        h = {"psnr": None, "ssim": None, "depth_l1_m": None}
        return {"heldout": h, "gaussians": 0, "keyframes": 0, "frames": 0, "skipped": 0, "device": "cpu",
                "seconds_per_keyframe_p50": 0.0}  # fmt: skip

    monkeypatch.setattr(run_mod, "map_bag", fake_map_bag)
    assert main(["map", str(kitchen_bag), "--out", str(tmp_path / "o"), "--no-progress", *extra]) == 0
    (cfg,) = seen
    return cfg


def test_map_without_holdout_views_keeps_the_documented_default_and_the_files(
    kitchen_bag, tmp_path, monkeypatch
):
    """cli/map.py:39 ``--holdout-views`` ``default=None`` -> ``default=0``: README: 'at most
    --holdout-views of them (mapper.holdout_views, default 32; 0: none) are evaluated'. Without the
    option, the mapper gets 32, and a parameter file's ``holdout_views: 3`` stands; the mutant made
    every run without the option evaluate no held-out view at all."""
    cfg = _mapper_config_of_map(kitchen_bag, tmp_path, monkeypatch, [])
    assert cfg.holdout_views == 32
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("/**:\n  ros__parameters:\n    mapper:\n      holdout_views: 3\n")
    cfg = _mapper_config_of_map(kitchen_bag, tmp_path, monkeypatch, ["--config", str(yaml_file)])
    assert cfg.holdout_views == 3


# ------------------------------------------------------------------------------------------------
# cli run: a node's stdout lines when the output fails


class _FailingOut:
    """A stdout whose writes fail with ``err`` and whose descriptor is ``fd``."""

    def __init__(self, err: int, fd: int):
        self.err, self.fd = err, fd

    def write(self, _text):
        import os

        raise OSError(self.err, os.strerror(self.err))

    def flush(self):
        pass

    def fileno(self):
        return self.fd


def test_run_node_line_on_a_gone_terminal_sends_stdout_to_devnull(monkeypatch):
    """cli/run_node.py ``to_devnull(sys.stdout)`` (was ``stdout_to_devnull()``) -> ``pass``: _say's docstring: a terminal that
    went away (EIO) ends the output, not the node, and 'what stays buffered goes to /dev/null (main's
    last flush would fail again)'. The reference: os.stat of /dev/null itself, against what the
    descriptor behind stdout (a pipe here) is afterwards; the mutant left it on the dead output."""
    import errno
    import os

    from gs_mapping.cli.run_node import _say

    r, w = os.pipe()
    try:
        monkeypatch.setattr("sys.stdout", _FailingOut(errno.EIO, w))
        stop = []
        _say("node up", stop)
        assert stop == [1]
        now, null = os.fstat(w), os.stat(os.devnull)
        assert (now.st_rdev, now.st_ino, now.st_dev) == (null.st_rdev, null.st_ino, null.st_dev)
    finally:
        os.close(r)
        os.close(w)
