"""Ground truth with points absurdly far away (wrong units, garbage: ~1e300 m).

shapely/GEOS has no precision left to cut a line of ±1e300 m to a 60 m patch: the element vanished
silently (checked below on shapely itself), so a model was scored, or trained, against a map without
it. Such points are refused in one line naming the bound, while far but sane coordinates (a UTM
map frame, a road running kilometres past the patch) still clip to exactly the patch.
"""

import re

import numpy as np
import pytest

from gs_mapping.errors import MessageError
from gs_mapping.world.roads import MapElement, clip_elements
from gsmap_hd.errors import HDDataError
from gsmap_hd.matching import prepare_elements
from gsmap_hd.model_config import ModelConfig
from gsmap_hd.predict_bag import MAX_MAP_COORD, _map_elements


def test_shapely_itself_loses_a_line_of_1e300_metres():
    """The reason for the rule: the real clip (shapely) returns nothing for a line through the patch
    whose ends lie at ±1e300 m, and the whole line for ends at ±1e6 m."""
    far = [MapElement(0, np.array([[-1e300, 0.0], [1e300, 0.0]]))]
    near = [MapElement(0, np.array([[-1e6, 0.0], [1e6, 0.0]]))]
    assert clip_elements(far, np.eye(4), 30.0, 15.0) == []
    (piece,) = clip_elements(near, np.eye(4), 30.0, 15.0)
    np.testing.assert_allclose(piece.pts[[0, -1], 0], [-30.0, 30.0])


@pytest.mark.parametrize("big", [2e9, 1e300, -1e300])
def test_the_world_map_message_refuses_a_point_past_the_earth(big):
    good = {"type": 0, "pts": [[5.0e6, 4.0e6], [5.0e6 + 5, 4.0e6]]}  # UTM-sized: kept
    assert len(_map_elements({"vectors": [good]})["elements"]) == 1
    with pytest.raises(
        MessageError, match=re.escape(f"vector 1: a point beyond ±{MAX_MAP_COORD:g} m")
    ) as exc:
        _map_elements({"vectors": [good, {"type": 2, "pts": [[0.0, 0.0], [big, 1.0]]}]})
    assert "\n" not in str(exc.value)


def test_training_ground_truth_refuses_absurd_points_and_clips_far_ones_to_the_patch():
    m = ModelConfig()
    (x0, x1), (y0, y1) = m.x_range, m.y_range
    # a divider running 50 km each way through the patch: clipped to the patch, end to end
    ((cls, pts),) = prepare_elements([(0, np.array([[-5e4, 0.0], [5e4, 0.0]]))], m)
    assert cls == 0
    np.testing.assert_allclose([pts[:, 0].min(), pts[:, 0].max()], [x0, x1])
    for bad in (1e6, 1e300):
        with pytest.raises(HDDataError, match=r"class 2 has a point beyond ±100000 m"):
            prepare_elements([(2, np.array([[-bad, 0.0], [bad, 0.0]]))], m)
    assert y0 < 0 < y1
