"""Mutation round 41 (SOG): breakages that passed every test, each guarded against the real thing
(PlayCanvas' playbot SOG in ../shared/data, read directly)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from gs_mapping.splat_formats import load_splats


@pytest.fixture(scope="module")
def playbot(shared_data):
    return shared_data / "splats" / "playbot_sog"


def test_a_hidden_folder_beside_the_sog_folder_is_not_a_second_sog(playbot, tmp_path):
    """An unpacked zip's folder read from the folder above (sog._meta_in) counts only visible
    sub-folders, as it counts only visible meta files: a hidden copy beside it (a user's
    ``.previous/`` backup, a sync tool's hidden folder) neither makes the folder ambiguous nor is
    read. Counting hidden folders too made this 'no meta.json; 2 folders ... name one'."""
    shutil.copytree(playbot, tmp_path / "download" / "playbot")
    hidden = tmp_path / "download" / ".previous"
    hidden.mkdir()
    shutil.copy(playbot / "meta.json", hidden / "meta.json")
    got, want = load_splats(tmp_path / "download"), load_splats(playbot)
    assert len(got) == len(want) == 500_000
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
