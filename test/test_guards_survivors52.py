"""Lines of the mapper, renderer, camera/geometry, Gaussian map and sync whose breaking passed every
test (session #31's mut31a mutation survey: ``random.Random(3101)`` over the non-blank,
non-comment, non-docstring, non-import lines of src/gs_mapping/mapping/*.py, render/*.py,
camera.py, rectify.py, geometry.py, gaussians.py and sync.py, weighted by file length), each now
guarded by a test against something outside the code's own bookkeeping:

- every ranged mapper parameter refuses a value just outside the range config/full.yaml documents;
- metrics.json: ``seconds_per_keyframe_p50`` is numpy's median of known keyframe times, and
  ``color_calibration.t_depth_color`` the known (x, y, z) offset;
- the colour calibration keeps the start of lowest cost; its photometric cost uses only pixels
  with depth (hand-computed 0.1).
"""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import numpy as np
import pytest

from gs_mapping.config_file import from_dict
from gs_mapping.errors import ConfigError
from gs_mapping.mapping.mapper_config import MapperConfig

REPO = Path(__file__).resolve().parents[1]


def _mapper_ranges() -> list[tuple[tuple[str, ...], bool, float, float]]:
    """(key path under ``mapper``, integer?, lo, hi) of every mapper parameter whose comment in
    config/full.yaml states a range ``[lo, hi]`` (the documented bounds the user reads); integer
    where the file's value is written as one."""
    out, in_mapper, sub, comment = [], False, None, ""
    for line in (REPO / "config" / "full.yaml").read_text().splitlines():
        if re.match(r"^    \S", line):
            in_mapper, sub = line.strip() == "mapper:", None
            continue
        if not in_mapper:
            continue
        if line.strip().startswith("#"):
            comment = line
            continue
        m = re.match(r"^(      |        )(\w+):\s*(.*?)\s*$", line)
        if m and len(m.group(1)) == 6:
            sub = None if m.group(3) else m.group(2)
        path = None if not m else (m.group(2),) if len(m.group(1)) == 6 else (sub, m.group(2))
        r = re.search(r"\[(-?[\d.e+-]+), (-?[\d.e+-]+)\]\s*$", comment)
        if path and None not in path and m.group(3) and r:
            is_int = re.fullmatch(r"-?\d+", m.group(3)) is not None
            out.append((path, is_int, float(r.group(1)), float(r.group(2))))
        comment = ""
    return out


def _nested(path, value):
    return {path[0]: value} if len(path) == 1 else {path[0]: {path[1]: value}}


def test_full_yaml_documented_mapper_ranges_refuse_values_just_outside_them():
    """mapper_config.py:153 (newest_fraction's range (0.0, 1.0) → (0.0, 2.0)) and :223
    (occlusion_tolerance's (0.0, 10.0) → (0.0, 20.0)): config/full.yaml tells the user each range
    (``[0.0, 1.0]``: newest_fraction is a probability); for every ranged mapper parameter the file
    documents, a value just past either end is refused as outside it, and the ends themselves are
    not (a cross-field check may still refuse one, for another reason)."""
    ranges = _mapper_ranges()
    named = {p for p, _, _, _ in ranges}
    assert {("optim", "newest_fraction"), ("virtual_views", "occlusion_tolerance"), ("sh_degree",)} <= named
    for path, is_int, lo, hi in ranges:
        ends = (int(lo), int(hi)) if is_int else (lo, hi)
        past = (
            (ends[0] - 1, ends[1] + 1) if is_int else (lo - 1e-3 * (1 + abs(lo)), hi + 1e-3 * (1 + abs(hi)))
        )
        for end in ends:
            try:
                from_dict(MapperConfig, _nested(path, end))
            except ConfigError as exc:
                assert "outside" not in str(exc), exc
        for value in past:
            with pytest.raises(ConfigError, match=rf"{path[-1]}: .* is outside"):
                from_dict(MapperConfig, _nested(path, value))


def _tiny_run(tmp_path, **cfg_changes):
    """metrics of map_bag over a 6-frame world drive (40×24), with the given MapperConfig fields."""
    from fleet_drives import tiny_config

    from gs_mapping.mapping.run import map_bag
    from gs_mapping.world import Drive
    from gs_mapping.world.record import write_bag

    bag = tmp_path / "world"
    write_bag(Drive.make(5, 6, "front", (40, 24)), bag, progress=False)
    cfg = tiny_config(1)
    cfg.topics.color = "/cameras/front/image_raw"
    cfg.topics.depth = "/cameras/front/depth"
    cfg.topics.camera_info = "/cameras/front/camera_info"
    for k, v in cfg_changes.items():
        setattr(cfg, k, v)
    map_bag(bag, tmp_path / "out", cfg, device="cpu", progress=False, write_pngs=False)
    return json.loads((tmp_path / "out" / "metrics.json").read_text())


def test_metrics_seconds_per_keyframe_p50_is_the_median_of_the_keyframe_times(tmp_path, monkeypatch):
    """mapping/run.py:284 (``np.median(ks)`` → ``np.mean(ks)``): metrics.json's
    ``seconds_per_keyframe_p50`` is the 50th percentile (the median) of the keyframes' wall times,
    as its name says, and ``_max`` their maximum. Each keyframe is made to take a known time (a
    mapper clock that a keyframe advances by 1, 2, 30, 4, 50, … s), so the expected values are
    numpy's median and max of those times."""
    pytest.importorskip("torch")  # (the mapper: not in the Humble run)
    import time

    from gs_mapping.mapping import mapper as mapper_mod

    durations = [1.0, 2.0, 30.0, 4.0, 50.0, 6.0, 70.0, 8.0]
    clock = {"now": 0.0, "k": 0}
    monkeypatch.setattr(
        mapper_mod,
        "time",
        types.SimpleNamespace(perf_counter=lambda: clock["now"], process_time=time.process_time),
    )
    real = mapper_mod.IncrementalMapper._map_keyframe

    def timed(self, *a, **kw):
        out = real(self, *a, **kw)
        clock["now"] += durations[clock["k"]]
        clock["k"] += 1
        return out

    monkeypatch.setattr(mapper_mod.IncrementalMapper, "_map_keyframe", timed)
    m = _tiny_run(tmp_path)
    k = m["keyframes"]
    assert k == clock["k"] and k >= 3
    assert np.median(durations[:k]) != np.mean(durations[:k])
    assert m["seconds_per_keyframe_p50"] == pytest.approx(np.median(durations[:k]))
    assert m["seconds_per_keyframe_max"] == pytest.approx(max(durations[:k]))


def test_metrics_json_reports_the_colour_offset_in_x_y_z_order(tmp_path, monkeypatch):
    """mapping/run.py:298 (``list(calibration.t_depth_color)`` → reversed): metrics.json's
    ``color_calibration.t_depth_color`` is the fitted depth→colour offset (x, y, z) in metres. With
    the fit replaced by a known calibration (offset x = 0.01 m, y = −0.02 m, z = 0.003 m, focal
    ×1.05, principal point +1.5/−0.5 px), the file read back with ``json`` holds exactly those."""
    pytest.importorskip("torch")  # (the mapper: not in the Humble run)
    from gs_mapping.mapping import run as run_mod
    from gs_mapping.mapping.calibration import ColorCalibration

    known = ColorCalibration(1.05, 1.5, -0.5, (0.01, -0.02, 0.003), 0.2, 0.1)
    monkeypatch.setattr(run_mod, "estimate_color_calibration", lambda frames: known)
    m = _tiny_run(tmp_path, calibrate_color=True, calibration_frames=3)
    cc = m["color_calibration"]
    assert cc["t_depth_color"] == [0.01, -0.02, 0.003]
    assert (cc["focal_scale"], cc["dcx"], cc["dcy"]) == (1.05, 1.5, -0.5)
    assert cc["photometric_inconsistency"] == [0.2, 0.1]


def test_colour_calibration_keeps_the_lowest_cost_of_its_starts(monkeypatch):
    """mapping/calibration.py:150 (``best = r`` → ``best = best or r``: the first start's fit kept
    whatever the others found). estimate_color_calibration starts Nelder–Mead from focal ×0.85,
    ×0.9 and ×1.0 and must keep the fit of lowest photometric cost. With the optimiser replaced by
    one that ends each start at a known point and cost (×0.85 → cost 0.5, ×0.9 → 0.3, ×1.0 → 0.4;
    the identity costs 1.0), the calibration taken is the ×0.9 start's: focal ×0.9·1.02, principal
    point +2/−1 px, offset (0.01, 0.02, 0) m, cost 1.0 → 0.3."""
    pytest.importorskip("torch")  # (the mapper: not in the Humble run)
    import math

    import scipy.optimize

    from gs_mapping.camera import Camera
    from gs_mapping.mapping import calibration as cal

    ends = {0.85: 0.5, 0.9: 0.3, 1.0: 0.4}  # start's focal scale → the cost its fit ends at

    def fake_minimize(cost, x0, **kw):
        s0 = round(math.exp(x0[0]), 2)
        x = np.array([math.log(s0 * 1.02), 2.0, -1.0, 0.01, 0.02])
        return scipy.optimize.OptimizeResult(x=x, fun=ends[s0])

    monkeypatch.setattr(scipy.optimize, "minimize", fake_minimize)
    monkeypatch.setattr(cal, "photometric_cost", lambda frames, pairs, calib: 1.0)
    cam = Camera(np.array([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]]), 80, 60)
    frames = [types.SimpleNamespace(camera=cam) for _ in range(8)]
    out = cal.estimate_color_calibration(frames)
    assert out.cost_before == 1.0 and out.cost_after == 0.3
    assert out.focal_scale == pytest.approx(0.9 * 1.02)
    assert (out.dcx, out.dcy) == pytest.approx((2.0, -1.0))
    assert out.t_depth_color == pytest.approx((0.01, 0.02, 0.0))


def test_photometric_cost_uses_only_pixels_with_depth():
    """mapping/calibration.py:87 (``np.zeros_like(A.depth)`` → ``np.ones_like``: every pixel off the
    sampling grid taken as a point 1 m away). photometric_cost is the mean colour difference of
    *depth points* seen in both frames (Frame: depth 0 is invalid). Two frames at one pose, 160×120
    (every 2nd pixel sampled), depth 2 m on the right half only; frame B is brighter than A by 0.1
    on the right half and by 0.3 on the left: only the right half has points, so the cost is 0.1 by
    hand. With no valid depth at all there is no point, and no cost (NaN)."""
    pytest.importorskip("torch")  # (the mapper: not in the Humble run)
    from gs_mapping.camera import Camera
    from gs_mapping.mapping.calibration import ColorCalibration, photometric_cost
    from gs_mapping.mapping.frames import Frame

    cam = Camera(np.array([[120.0, 0, 79.5], [0, 120.0, 59.5], [0, 0, 1]]), 160, 120)
    depth = np.zeros((120, 160), np.float32)
    depth[:, 80:] = 2.0
    a = np.full((120, 160, 3), 0.2, np.float32)
    b = a + 0.3
    b[:, 80:] = 0.3
    frames = [Frame(a, depth, cam, 0), Frame(b, depth, cam, 1)]
    got = photometric_cost(frames, [(0, 1)], ColorCalibration(), step=2)
    assert got == pytest.approx(0.1, abs=2e-3)
    none = [Frame(a, np.zeros_like(depth), cam, 0), Frame(b, np.zeros_like(depth), cam, 1)]
    assert np.isnan(photometric_cost(none, [(0, 1)], ColorCalibration(), step=2))
