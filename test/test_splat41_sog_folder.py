"""A folder one level above a SOG (an unpacked zip of the SOG's folder: ``playbot/`` inside
``playbot_download/``) reads as that SOG, as the zip itself does; it said "meta.json missing"
(hostile40). Two SOG folders inside: one line naming them. Real files: PlayCanvas' playbot SOG."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from gs_mapping.cli import main
from gs_mapping.splat_formats import load_splats


@pytest.fixture(scope="module")
def playbot(shared_data):
    return shared_data / "splats" / "playbot_sog"


def _copy(src, dst):
    shutil.copytree(src, dst)
    dst.chmod(0o755)


def test_a_folder_above_one_sog_reads_as_that_sog(playbot, tmp_path):
    _copy(playbot, tmp_path / "download" / "playbot")
    (tmp_path / "download" / "README.txt").write_text("unpacked from playbot.zip\n")
    got, want = load_splats(tmp_path / "download"), load_splats(playbot)
    assert len(got) == len(want) == 500_000
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_two_sogs_in_a_folder_or_none_is_one_line(playbot, tmp_path, capsys):
    for sub in ("a", "b"):
        _copy(playbot, tmp_path / "two" / sub)
    (tmp_path / "two" / ".hidden").mkdir()
    assert main(["convert", str(tmp_path / "two"), str(tmp_path / "out.ply")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"gs-mapping convert: error: {tmp_path / 'two'}: no meta.json; 2 folders in it hold a SOG (a, b): name one"
    ], err
    (tmp_path / "none" / "empty").mkdir(parents=True)
    assert main(["convert", str(tmp_path / "none"), str(tmp_path / "out.ply")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "meta.json missing" in err[0], err
    assert not (tmp_path / "out.ply").exists()
