"""Outside user #32's probe of the scene/codec commands (encode, decode, export, convert, diff,
apply) on the real splats of ../shared/data: what it found, each as a test.

- ``--frame-id`` longer than a container holds (128 bytes), or not UTF-8, was refused only after the
  whole scene was read and coded (seconds on a 500,000-Gaussian SOG), and in the *scene's* name
  ("guitar.ply: frame id longer than 128 bytes"); ``diff`` named nothing. Now it is the option's own
  fault, said before any work, as for ``--levels``, ``--map-id`` and ``--seq``.
"""

from __future__ import annotations

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
