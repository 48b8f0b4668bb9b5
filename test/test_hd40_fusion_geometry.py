"""Lane fusion on outlines GEOS' floating-point overlay fails on (session 40).

A stamps39 replay once saw hd_map_node's fusion raise "TopologyException: side location conflict"
mid-frame (the frame's update stopped half done: some tracks aged, others not); it was not
reproduced then. 6,000 random six-frame sequences of hostile but possible outlines (random and
self-crossing rings, slivers a 1e-7 m wide, rectangles with repeated corners, random-walk lines;
camera regions that are boxes, self-crossing outlines or none) reproduced it in 4, each named below
by its trial number: three with a self-crossing region, one (1866) with a valid one. Each must now
fuse all six frames, as GEOS' own snap-rounding overlay of the same shapes does without failing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

shapely = pytest.importorskip("shapely")

from gsmap_hd.lane_map import LaneMap  # noqa: E402


def _frames(trial: int):
    """The fuzz's six frames for ``trial``: (elements, region) each."""
    from shapely.geometry import Polygon

    rng = np.random.default_rng([40, trial])
    center = rng.normal(0, 2, 2)
    for _ in range(6):
        elements = []
        for _ in range(rng.integers(1, 6)):
            cls, n, kind = int(rng.integers(0, 3)), int(rng.integers(3, 12)), rng.integers(0, 4)
            if kind == 0:  # a random (often self-crossing) outline
                pts = center + rng.normal(0, 3, (n, 2))
            elif kind == 1:  # a sliver
                t = np.linspace(0, 1, n)[:, None]
                pts = center + t * rng.normal(0, 5, 2) + rng.normal(0, 1e-7, (n, 2))
            elif kind == 2:  # a rectangle with repeated corners
                w, h = rng.uniform(0.01, 4, 2)
                corners = np.array([[0, 0], [w, 0], [w, 0], [w, h], [0, h], [0, h]])
                pts = center + corners + rng.normal(0, 1e-9, (6, 2))
            else:  # a random walk
                pts = center + np.cumsum(rng.normal(0, 1, (n, 2)), 0)
            elements.append(SimpleNamespace(cls=cls, score=float(rng.uniform(0.3, 1)), points=pts))
        kind = rng.integers(0, 3)
        if kind == 0:
            region = None
        elif kind == 1:  # an outline from outside that may cross itself
            region = Polygon(center + rng.normal(0, 6, (int(rng.integers(3, 7)), 2)))
        else:
            region = shapely.box(*(center - rng.uniform(1, 8)), *(center + rng.uniform(1, 8)))
        yield elements, region


@pytest.mark.parametrize("trial", [710, 1425, 1866, 2424])
def test_fusion_survives_outlines_the_float_overlay_fails_on(trial):
    lanes = LaneMap()
    for n, (elements, region) in enumerate(_frames(trial), 1):
        lanes.update(elements, region)
        assert lanes.frame == n
        for t in lanes.tracks.values():
            assert np.isfinite(t.points).all() and t.last_frame <= n
    assert lanes.tracks  # (something was fused)
