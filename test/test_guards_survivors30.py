"""Guards for behaviours a mutation-testing pass over randomly drawn source lines found unguarded
(30th round, seed 20261205):

- ``gs-mapping run --namespace``: a namespace with spaces around it, which ROS 2 refuses, passed as
  valid and then used unstripped in every topic name;
- ``gs-mapping encode``: the coarse-lattice warning says whether the step it judges is the user's own
  ``--pos-step`` or the metre presets;
- gsmap_hd.region.clip_elements: the last element's clipped pieces;
- the mapper's ``seeded`` counter (metrics.json) against the Gaussians it put in the map;
- the demo's rate–distortion table (run only by ``make demo`` before) against the CLI's files.

Each test drives the real component and compares it with an independent reference: rcl's topic
and namespace name rules written out here, a hand-clipped geometry, a hand count of seeded pixels,
the CLI's own encode/decode files with the textbook PSNR, the rule a docstring states."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

# -- ROS namespaces with spaces ---------------------------------------------------------------------


def _rcl_valid_full_topic_name(name: str) -> bool:
    """rmw_validate_full_topic_name's rules, written out: starts with '/', does not end with one
    (unless it is '/'), only [A-Za-z0-9_/], no '//', no token starting with a digit."""
    if not name.startswith("/") or (len(name) > 1 and name.endswith("/")) or "//" in name:
        return False
    if not re.fullmatch(r"[A-Za-z0-9_/]+", name):
        return False
    return all(not tok[:1].isdigit() for tok in name.split("/") if tok)


@pytest.mark.parametrize("namespace", [" robot1", "/robot1 ", "\t/fleet/car_2"])
def test_a_namespace_with_spaces_is_refused_or_gives_valid_topic_names(namespace):
    """rcl refuses a namespace with spaces (``ros2 run … --ros-args -r __ns:=' /robot1'`` fails with
    an invalid-namespace error): `run --namespace` must either refuse it as ROS does (ConfigError) or
    use it so that every topic it resolves is a valid ROS 2 topic name. Checked here with the topic
    resolution the DDS and Zenoh runtimes use on the namespace they are given."""
    from gs_mapping.errors import ConfigError
    from gs_mapping.nodes.context import check_ros_names, resolve_topic

    try:
        check_ros_names("mapper_node", namespace)
    except ConfigError:
        return
    for topic in ("~/map_delta", "camera/image_raw", "/tf"):
        full = resolve_topic(topic, "mapper_node", namespace)
        assert _rcl_valid_full_topic_name(full), (namespace, topic, full)


# -- encode's warning for a scene narrower than the lattice ---------------------------------------


def _narrow_scene(path):
    from synthetic_maps import synthetic_map

    from gs_mapping.ply import save_ply

    g = synthetic_map(400, 0, seed=2)
    g.means = (np.asarray(g.means, np.float64) * (0.2 / 16.0)).astype(np.float32)  # spans ~0.2 units
    save_ply(g, path)


@pytest.mark.parametrize(
    "extra, names",
    [([], "the presets are in metres"), (["--pos-step", "0.002"], "--pos-step")],
)
def test_encode_says_which_step_is_too_coarse_for_the_scene(tmp_path, capsys, caplog, extra, names):
    """_warn_coarse_for_scene's rule: a scene spanning fewer than 1000 position steps is probably not
    in metres; the warning names where the step came from: the metre presets when none was given,
    the user's own --pos-step when one was (then --relative or a finer step is the way out). A
    ~0.2-unit scene is about 200 steps of the default preset's 1 mm and 100 of a given 2 mm."""
    from gs_mapping.cli import main

    scene = tmp_path / "narrow.ply"
    _narrow_scene(scene)
    with caplog.at_level(logging.WARNING, logger="gs_mapping.encode"):
        assert main(["encode", str(scene), str(tmp_path / "n.gsd"), *extra]) == 0
    capsys.readouterr()
    said = [r.getMessage() for r in caplog.records if "position steps" in r.getMessage()]
    assert len(said) == 1, said
    assert f"({names})" in said[0]
    other = "--pos-step" if names != "--pos-step" else "the presets are in metres"
    assert f"({other})" not in said[0]


# -- gsmap_hd.region: every clipped piece is kept -------------------------------------------------


def test_region_clip_keeps_every_piece_of_every_element():
    """clip_elements' docstring: [(class, points)] → the same clipped to the region, pieces split out.
    A 10 m × 10 m square region; by hand: a line inside is kept whole; a line across it is cut at
    x = 0 and x = 10; a U that leaves through the top and comes back gives two pieces; a line wholly
    outside gives none; a crossing (class 1) half outside is its inside half, a closed ring. The
    last element's pieces count as much as the first's."""
    pytest.importorskip("shapely")
    from gsmap_hd.region import Region, clip_elements

    region = Region.from_coords("square", [[[0, 0], [10, 0], [10, 10], [0, 10]]])
    elements = [
        (0, np.array([[1.0, 1.0], [5.0, 1.0]])),  # inside
        (2, np.array([[-5.0, 5.0], [15.0, 5.0]])),  # across
        (1, np.array([[8.0, 2.0], [12.0, 2.0], [12.0, 4.0], [8.0, 4.0], [8.0, 2.0]])),  # half out
        (0, np.array([[20.0, 20.0], [30.0, 20.0]])),  # outside
        (2, np.array([[2.0, 8.0], [2.0, 14.0], [6.0, 14.0], [6.0, 8.0]])),  # a U through the top
    ]
    out = clip_elements(elements, region)
    assert [c for c, _ in out] == [0, 2, 1, 2, 2]
    np.testing.assert_allclose(out[0][1], [[1, 1], [5, 1]])
    np.testing.assert_allclose(out[1][1], [[0, 5], [10, 5]])
    ring = out[2][1]
    assert np.allclose(ring[0], ring[-1])
    assert {tuple(np.round(p, 9) + 0.0) for p in ring} == {(8.0, 2.0), (10.0, 2.0), (10.0, 4.0), (8.0, 4.0)}
    np.testing.assert_allclose(out[3][1], [[2, 8], [2, 10]])
    np.testing.assert_allclose(out[4][1], [[6, 10], [6, 8]])


# -- the mapper's counters against the map it built -----------------------------------------------


def test_mapper_seeded_count_is_the_gaussians_it_put_in_the_map():
    """metrics.json's ``seeded``: Gaussians seeded from depth. By hand: a 48×36 frame seeded every
    2nd pixel (mapper_configs.small_cpu_config) with all depth valid gives 24 × 18 = 432 seeds, and
    with no optimisation step nothing is densified, pruned or capped, so the map holds exactly them
    (coarse discs off; with them, the discs besides, counted as seeded too).
    After more frames the map's size is what was added (seeded, cloned, split) less what was removed
    (pruned, capped): each clone adds one Gaussian, each split turns one into two."""
    torch = pytest.importorskip("torch")
    from test_mapping_mapper import _cfg, _frame

    from gs_mapping.mapping import IncrementalMapper

    torch.manual_seed(0)
    cfg = _cfg(iterations=0, first_iterations=0)
    cfg.levels.coarse_scale = 0.0  # (no coarse discs: each is one more Gaussian beside its seed)
    m = IncrementalMapper(cfg, "cpu")
    m.add_frame(_frame(0.0, 0))
    assert m.stats.seeded == 24 * 18 == len(m.gmap)
    # with them (the default), each coarse seed with a surface normal brings one disc, counted as seeded
    m = IncrementalMapper(_cfg(iterations=0, first_iterations=0), "cpu")
    m.add_frame(_frame(0.0, 0))
    assert m.stats.seeded == len(m.gmap) > 24 * 18

    m = IncrementalMapper(_cfg(iterations=2, first_iterations=2), "cpu")
    for i, x in enumerate([0.0, 0.4]):
        m.add_frame(_frame(x, i))
    s = m.stats
    assert s.seeded > 24 * 18
    assert s.seeded + s.cloned + s.split - s.pruned - s.capped == len(m.gmap)


# -- the demo's rate–distortion table against the CLI's own files ----------------------------------


def test_demo_rate_distortion_is_what_encode_and_decode_files_give(tmp_path, capsys):
    """The demo's report (README: 'the codec's rate–distortion curve'): for each quality, bytes and
    PSNR of the decoded map against the uncompressed map's rendering. Checked against the files the
    real CLI writes for the same scene (`gs-mapping encode --quality q`, then `decode` to PLY): the
    bytes are that file's size, the PSNR is the textbook 10·log10(1/MSE) of the decoded PLY's
    rendering against the original's (colours clipped to [0, 1]); and a finer quality costs more
    bytes for a higher PSNR. (Only `make demo` ran this table before.)"""
    from synthetic_maps import synthetic_map

    from gs_mapping.camera import Camera
    from gs_mapping.cli import main
    from gs_mapping.demo.measure import rate_distortion
    from gs_mapping.ply import load_ply, save_ply
    from gs_mapping.render import render

    g = synthetic_map(300, 1, seed=4)  # in [0, 8] × [0, 8] × [0, 3]
    K = np.array([[40.0, 0, 31.5], [0, 40.0, 23.5], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # optical z along map +x, image down map -z
    T[:3, 3] = (-6.0, 4.0, 1.5)
    cam = Camera(K, 64, 48, T)
    rd = rate_distortion(g, [cam], qualities=(1, 5))
    assert [r["quality"] for r in rd] == [1, 5]

    save_ply(g, tmp_path / "a.ply", keep_ids=True)  # (the map as the mapper saves it: ids, levels)
    ref = np.clip(render(g, cam, backend="cpu").numpy()[0], 0, 1)
    for r in rd:
        q = r["quality"]
        gsd, ply = tmp_path / f"q{q}.gsd", tmp_path / f"q{q}.ply"
        assert main(["encode", str(tmp_path / "a.ply"), str(gsd), "--quality", str(q)]) == 0
        assert main(["decode", str(gsd), str(ply)]) == 0
        capsys.readouterr()
        assert r["bytes"] == gsd.stat().st_size
        assert r["bytes_per_gaussian"] == pytest.approx(gsd.stat().st_size / 300)
        got = np.clip(render(load_ply(ply), cam, backend="cpu").numpy()[0], 0, 1)
        mse = float(np.mean((got.astype(np.float64) - ref) ** 2))
        assert r["psnr_vs_uncompressed"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)
    assert rd[1]["bytes"] > rd[0]["bytes"] and rd[1]["psnr_vs_uncompressed"] > rd[0]["psnr_vs_uncompressed"]
