"""Session 34: the items session 33 noticed and left (note33.md, "Noticed, left alone").

- ``gs-mapping world --rate 1e-300`` was refused as "world length must be in (0, 50000] m" naming no
  option; every numeric option of ``world`` now names itself when refused.
- ``world_sample`` with a patch not centred on the vehicle (x −45…30 m) gave ground truth over the
  symmetric window (to +45 m): now exactly the patch.
- ``hd-train`` left ``.NAME.hd-train.lock`` behind after every run; took any existing folder as
  ``--out`` (a bag's).
- Topic choice paired a ZED's right colour image with the registered depth of its left camera (one
  namespace): the frame ids of the bag's first messages now say which camera a registered depth is of.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gs_mapping.cli import main


def _one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------------
# world: each numeric option refused by its name


WORLD_REFUSALS = [
    ("--rate", ["1e-300"]),  # (a drive longer than any world)
    ("--rate", ["5e-324"]),  # (its length overflows)
    ("--rate", ["0.0001"]),
    ("--rate", ["nan"]),
    ("--rate", ["inf"]),
    ("--rate", ["0"]),
    ("--rate", ["-10"]),
    ("--rate", ["1e300"]),
    ("--speed", ["nan"]),
    ("--speed", ["inf"]),
    ("--speed", ["0"]),
    ("--speed", ["-1"]),
    ("--speed", ["1e300"]),
    ("--frames", ["0"]),
    ("--frames", ["-3"]),
    ("--frames", ["99999999999999999999"]),
    ("--bev-range", ["nan", "15"]),
    ("--bev-range", ["30", "inf"]),
    ("--bev-range", ["0", "15"]),
    ("--bev-range", ["30", "-15"]),
    ("--supersample", ["0"]),
    ("--supersample", ["-1"]),
    ("--supersample", ["99999999999999999999"]),
    ("--workers", ["-1"]),
    ("--size", ["0x0"]),
    ("--size", ["99999999999999999999x10"]),
    ("--seed", ["-1"]),
    ("--seed", ["nan"]),
    ("--seed", ["1e300"]),
]


@pytest.mark.parametrize(("option", "values"), WORLD_REFUSALS, ids=lambda v: str(v))
def test_world_refuses_each_numeric_option_naming_it(tmp_path, capsys, option, values):
    """One line, exit 2, naming the option; nothing written. ``--rate 1e-300`` (with the default 100
    frames at 8 m/s: an 8e300 m drive) said only "world length must be in (0, 50000] m"."""
    out = tmp_path / "bag"
    argv = ["world", "--out", str(out), "--frames", "2", "--size", "32x24", "--no-progress"]
    try:
        rc = main([*argv, option, *values])
    except SystemExit as exc:  # (argparse's own refusals)
        rc = exc.code
    assert rc == 2
    _one_error_line(capsys, option)
    assert not out.exists()


def test_a_slow_rate_is_refused_where_the_drive_is_longer_than_a_world(tmp_path, capsys):
    """The bound is the world's (50 km of road, the margins included): 0.0016 Hz for 2 frames at
    8 m/s is 5,000 m + 100 m of margins, made; 0.00015 Hz is 53,333 m + 100 m, refused by --rate."""
    from gs_mapping.world.trajectory import route_length
    from gs_mapping.world.world import MAX_LENGTH

    assert route_length(2, 0.0016, 8.0) == pytest.approx(5_100.0)
    assert route_length(2, 0.00015, 8.0) == pytest.approx(8.0 / 0.00015 + 100.0)
    assert route_length(2, 0.00015, 8.0) > MAX_LENGTH == 50_000.0
    assert math.isinf(route_length(2, 5e-324, 8.0))
    argv = ["world", "--out", str(tmp_path / "b"), "--frames", "2", "--size", "32x24", "--no-progress"]
    assert main([*argv, "--rate", "0.00015"]) == 2
    said = _one_error_line(capsys, "--rate", "0.00015", "--frames 2", "--speed 8.0", "50000 m")
    assert "world length" not in said
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------------
# world_sample: the ground truth of a patch not centred on the vehicle


def test_clip_elements_cuts_a_lane_at_an_asymmetric_patchs_edges():
    """By hand: a straight divider 2 m left of the vehicle from x = −60 to 60 m is, in the patch
    x −45…30, y −15…15, the piece from (−45, 2) to (30, 2); a crossing from x 25 to 35 is its part
    up to x = 30 (5 x 4 m); a divider wholly at x 35…60 is none. The half-size form is unchanged."""
    from gs_mapping.world.roads import BOUNDARY, DIVIDER, PED_CROSSING, MapElement, clip_elements

    lane = MapElement(DIVIDER, np.array([[-60.0, 2.0], [0.0, 2.0], [60.0, 2.0]]))
    ring = np.array([[25.0, -2.0], [35.0, -2.0], [35.0, 2.0], [25.0, 2.0], [25.0, -2.0]])
    crossing = MapElement(PED_CROSSING, ring)
    ahead = MapElement(BOUNDARY, np.array([[35.0, 5.0], [60.0, 5.0]]))
    out = clip_elements([lane, crossing, ahead], np.eye(4), (-45.0, 30.0), (-15.0, 15.0))
    assert [e.cls for e in out] == [DIVIDER, PED_CROSSING]
    np.testing.assert_allclose(out[0].pts[[0, -1]], [[-45.0, 2.0], [30.0, 2.0]])
    assert set(out[0].pts[:, 0]) <= {-45.0, 0.0, 30.0}
    xs, ys = out[1].pts[:, 0], out[1].pts[:, 1]
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (25.0, 30.0, -2.0, 2.0)
    sym = clip_elements([lane], np.eye(4), 45.0, 15.0)
    np.testing.assert_allclose(sym[0].pts[[0, -1]], [[-45.0, 2.0], [45.0, 2.0]])


def test_world_sample_ground_truth_covers_exactly_an_asymmetric_patch():
    """x −45…30 m: the lanes went on to +45 m (the symmetric window holding the patch). Now they are
    the world's global map in the frame's base_link (the drive's true pose) clipped to the patch with
    shapely (pieces that meet end to end merged, as MapTR's GT does); a lane crosses the far edge (cut at x = 30) and the near one
    (the road runs 52 m behind frame 3)."""
    import shapely
    from shapely.geometry import LineString, Polygon, box

    from gs_mapping.world.roads import MIN_CLIPPED_AREA, MIN_CLIPPED_LENGTH, PED_CROSSING
    from gsmap_hd.world_data import _drive, world_sample

    patch = box(-45.0, -15.0, 30.0, 15.0)
    s = world_sample(7, 3, "front", (64, 32), x_range=(-45.0, 30.0), y_range=(-15.0, 15.0))
    drive = _drive(7 * 100_003, "front", (64, 32))  # (the same world and poses, whatever its GT range)
    T_base_map = np.linalg.inv(drive.pose(3))
    want = []
    for el in drive.world.map_elements():
        pts = el.pts @ T_base_map[:2, :2].T + T_base_map[:2, 3]
        if el.cls == PED_CROSSING:
            g = Polygon(pts).intersection(patch)
            parts = [
                p for p in getattr(g, "geoms", [g]) if p.geom_type == "Polygon" and p.area >= MIN_CLIPPED_AREA
            ]
        else:
            g = shapely.line_merge(LineString(pts).intersection(patch))  # (MapTR's linemerge)
            parts = [
                p
                for p in getattr(g, "geoms", [g])
                if p.geom_type == "LineString" and p.length >= MIN_CLIPPED_LENGTH
            ]
        want += [(el.cls, p) for p in parts]
    assert len(s.elements) == len(want)
    for (cls, pts), (wcls, wgeom) in zip(s.elements, want, strict=True):
        assert cls == wcls
        got = Polygon(pts) if cls == PED_CROSSING else LineString(pts)
        assert got.hausdorff_distance(wgeom) < 1e-6
        assert got.length == pytest.approx(wgeom.length)
    xs = np.concatenate([pts[:, 0] for _, pts in s.elements])
    assert xs.max() == pytest.approx(30.0) and xs.min() == pytest.approx(-45.0)
