"""Outside user #32's probe of the scene/codec commands (encode, decode, export, convert, diff,
apply) on the real splats of ../shared/data: what it found, each as a test.

- ``--frame-id`` longer than a container holds (128 bytes), or not UTF-8, was refused only after the
  whole scene was read and coded (seconds on a 500,000-Gaussian SOG), and in the *scene's* name
  ("guitar.ply: frame id longer than 128 bytes"); ``diff`` named nothing. Now it is the option's own
  fault, said before any work, as for ``--levels``, ``--map-id`` and ``--seq``.
- A scene file under another format's name was refused in the words of the reader its name picked:
  a PLY named ``.splat`` (a headerless format) for "scale of Gaussian 19 is negative", an SPZ named
  ``.ply`` as "not a PLY file", a PLY given to ``decode`` or ``apply`` as "container: wrong magic
  b'ply\\n'". Now the line says what the file holds and the name that reads it.
- ``diff`` from a base snapshot (OLD as a ``.gsd``, or ``--params-from``) dropped ``--quality``,
  ``--pos-step`` and ``--relative`` without a word (the delta must take the base's quantisation),
  and took a ``--quality 9`` or ``--pos-step -3`` that encode refuses. Now the bad ones are refused
  and the others said to be ignored.
"""

from __future__ import annotations

import logging
import shutil

import pytest

from gs_map_share.container import MAX_FRAME_ID, unpack_header
from gs_mapping.cli import main


def _one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "WARNING" not in line]
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def guitar(shared_data):
    return shared_data / "splats" / "guitar.ply"


@pytest.mark.parametrize("command", ["encode", "convert", "diff"])
@pytest.mark.parametrize(
    "frame, said",
    [
        ("f" * (MAX_FRAME_ID + 1), f"is {MAX_FRAME_ID + 1} bytes, a container holds at most"),
        ("m\udcff", "UTF-8"),
    ],
)
def test_a_frame_id_no_container_holds_is_the_options_fault(tmp_path, capsys, guitar, command, frame, said):
    out = tmp_path / "out.gsd"
    scenes = [str(guitar), str(guitar)] if command == "diff" else [str(guitar)]
    assert main([command, *scenes, str(out), "--relative", "--frame-id", frame]) == 2
    err = _one_error(capsys)
    assert f"gs-mapping {command}: error: --frame-id:" in err and said in err, err
    assert str(guitar) not in err, err  # (the scene is not at fault)
    assert not out.exists()


def test_a_frame_id_of_the_containers_size_is_written(tmp_path, guitar):
    frame = "f" * MAX_FRAME_ID
    out = tmp_path / "out.gsd"
    assert main(["encode", str(guitar), str(out), "--relative", "--frame-id", frame]) == 0
    assert unpack_header(out.read_bytes())[0].frame_id == frame


def _padded(src, dst) -> str:
    """``src``'s bytes at ``dst``, zero-padded to a multiple of 32 where ``dst`` is a .splat (whose
    reader would otherwise stop at the size; a real mislabelled file may well have one)."""
    data = src.read_bytes()
    if str(dst).endswith(".splat"):
        data += bytes(-len(data) % 32)
    dst.write_bytes(data)
    return str(dst)


@pytest.mark.parametrize(
    "source, name, holds, suffix",
    [
        ("guitar.ply", "scene.splat", "a PLY file", ".ply"),
        ("guitar.compressed.ply", "scene.splat", "a PLY file", ".ply"),
        ("spz_reference/guitar_v4.spz", "scene.ply", "an SPZ file", ".spz"),
        ("spz_reference/guitar_v2.spz", "scene.splat", "gzip data (as SPZ up to version 3)", ".spz"),
        ("spz_reference/guitar_v3.spz", "scene", "gzip data (as SPZ up to version 3)", ".spz"),
    ],
)
def test_a_scene_under_another_formats_name_is_said(
    tmp_path, capsys, shared_data, source, name, holds, suffix
):
    src = _padded(shared_data / "splats" / source, tmp_path / name)
    for command, out in (("convert", "out.spz"), ("encode", "out.gsd"), ("export", "out.spz")):
        assert main([command, src, str(tmp_path / out)]) == 2
        err = _one_error(capsys)
        assert f"{src}: {holds} under another name: rename it to end in {suffix}" in err, err
        assert not (tmp_path / out).exists()
    renamed = tmp_path / ("renamed" + suffix)
    shutil.copy(shared_data / "splats" / source, renamed)
    assert main(["convert", str(renamed), str(tmp_path / "out.spz")]) == 0  # (what the line says works)


def test_a_snapshot_under_a_scenes_name_and_a_scene_given_as_a_snapshot(tmp_path, capsys, guitar):
    gsd = tmp_path / "guitar.gsd"
    assert main(["encode", str(guitar), str(gsd), "--relative"]) == 0
    as_spz = tmp_path / "guitar.spz"
    shutil.copy(gsd, as_spz)
    assert main(["convert", str(as_spz), str(tmp_path / "out.ply")]) == 2
    assert "a .gsd snapshot under another name: rename it to end in .gsd" in _one_error(capsys)
    # decode and apply read containers only: a scene there is named as what it is, whatever its name
    assert main(["decode", str(guitar), str(tmp_path / "out.ply")]) == 2
    err = _one_error(capsys)
    assert f"{guitar}: a PLY file, not a .gsd container ('gs-mapping convert' reads scenes)" in err, err
    for order in ([gsd, guitar], [guitar, gsd]):  # as a delta, as the base
        assert main(["apply", *map(str, order), str(tmp_path / "out.ply")]) == 2
        assert f"{guitar}: a PLY file, not a .gsd container" in _one_error(capsys)
    assert not (tmp_path / "out.ply").exists()


def test_a_damaged_file_under_its_own_name_keeps_its_readers_words(tmp_path, capsys, guitar):
    cut = tmp_path / "cut.ply"
    cut.write_bytes(guitar.read_bytes()[:100_000])
    assert main(["convert", str(cut), str(tmp_path / "out.spz")]) == 2
    err = _one_error(capsys)
    assert "truncated: element 'vertex' declares 90854 rows" in err and "rename" not in err, err


def test_diff_from_a_snapshot_says_its_quantisation_options_are_not_used(tmp_path, capsys, caplog, guitar):
    gsd = tmp_path / "guitar.gsd"
    assert main(["encode", str(guitar), str(gsd), "--relative"]) == 0
    plain, asked = tmp_path / "plain.gsd", tmp_path / "asked.gsd"
    for bad, said in (
        (["--quality", "9"], "quality must be 0..5"),
        (["--pos-step", "-3"], "pos_step must be"),
    ):
        assert main(["diff", str(gsd), str(guitar), str(asked), *bad]) == 2
        assert said in _one_error(capsys)
        assert not asked.exists()
    assert main(["diff", str(gsd), str(guitar), str(plain)]) == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["diff", str(gsd), str(guitar), str(asked), "--quality", "4", "--relative"]) == 0
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [
        f"--quality, --relative: ignored: the delta takes the quantisation of {gsd}, which the receivers hold"
    ]
    assert asked.read_bytes() == plain.read_bytes()  # (ignored indeed)
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # from a scene, the options make the quantisation: no word
        assert (
            main(["diff", str(guitar), str(guitar), str(tmp_path / "s.gsd"), "--quality", "4", "--relative"])
            == 0
        )
    assert not [r for r in caplog.records if "ignored" in r.getMessage()]
