"""A damaged SOG says how it is damaged. A ``.sog`` download stopped early (a zip without the
directory at its end) was "not a SOG (neither meta.json, a directory nor a zip: File is not a zip
file)", and a WebP image cut short "cannot be decoded (OSError)": now "a zip cut short or damaged"
and "cut short: n of m bytes" (outside user #32). Real files: PlayCanvas' playbot SOG."""

from __future__ import annotations

import shutil
import zipfile

import pytest

from gs_mapping.cli import main
from gs_mapping.errors import MapError
from gs_mapping.splat_formats import load_splats


@pytest.fixture(scope="module")
def playbot(shared_data):
    return shared_data / "splats" / "playbot_sog"


def _one_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_sog_zip_cut_short_says_so(playbot, tmp_path, capsys):
    whole = tmp_path / "playbot.sog"
    with zipfile.ZipFile(whole, "w") as z:
        for f in sorted(playbot.iterdir()):
            z.write(f, f.name)
    assert len(load_splats(whole)) == 500_000  # (the whole zip reads)
    cut = tmp_path / "cut.sog"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    line = _one_line(capsys, ["convert", str(cut), str(tmp_path / "out.ply")])
    assert "cut.sog: a zip cut short or damaged" in line
    junk = tmp_path / "junk.sog"
    junk.write_bytes(b"not a zip at all" * 8)
    with pytest.raises(MapError, match="junk.sog: not a SOG"):
        load_splats(junk)


def test_a_sog_image_cut_short_says_how_much_is_there(playbot, tmp_path, capsys):
    folder = tmp_path / "sog"
    shutil.copytree(playbot, folder)
    folder.chmod(0o755)
    image = folder / "scales.webp"
    (folder / "scales.webp").chmod(0o644)
    data = image.read_bytes()
    image.write_bytes(data[:1000])
    line = _one_line(capsys, ["convert", str(folder / "meta.json"), str(tmp_path / "out.ply")])
    assert f"SOG image scales.webp cannot be decoded (cut short: 1000 of {len(data)} bytes)" in line
