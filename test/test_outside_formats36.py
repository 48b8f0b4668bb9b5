"""Scene inputs and outputs a user really has (session #36): what the CLI said or did wrong.

1. ``gs-mapping --bogus info BAG`` said "gs-mapping info: error: unrecognized arguments: --bogus"
   (and pointed at ``gs-mapping info --help``): an option given before the command is the top
   parser's, which names itself, as argparse does. After the command it stays the command's.
2. ``gs-mapping encode scene.ply out.txt`` (or ``out.bin``, or ``out``; ``diff`` too) wrote a
   container with exit 0 under a name no other command reads as a snapshot (``convert``,
   ``encode``, ``diff`` and ``export`` take a snapshot by ``.gsd``): README now says outputs go by
   extension, and each command refuses another name in one line naming those it writes, exit 2,
   an existing file of that name left as it was.
"""

from __future__ import annotations

import pytest

from gs_mapping.ply import save_ply
from synthetic_maps import synthetic_map


@pytest.mark.parametrize(
    "argv, prog, extras",
    [
        (["--bogus", "info", "B"], "gs-mapping", "--bogus"),
        (["-v", "--bogus=3", "info", "B"], "gs-mapping", "--bogus=3"),
        (["--bogus", "info", "B", "--other"], "gs-mapping", "--bogus"),  # (the first, in argv's order)
        (["info", "--bogus", "B"], "gs-mapping info", "--bogus"),
        (["info", "B", "--bogus"], "gs-mapping info", "--bogus"),
        (["info", "B", "-v"], "gs-mapping info", "-v"),  # (-v is the top parser's, before the command)
    ],
)
def test_an_unknown_option_is_named_by_the_parser_it_was_given_to(argv, prog, extras, capsys):
    from gs_mapping.cli import main

    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{prog}: error: unrecognized arguments: {extras} (see {prog} --help)"]


@pytest.fixture()
def scene(tmp_path):
    path = tmp_path / "scene.ply"
    save_ply(synthetic_map(40, 1, seed=3), path)
    return path


# each command, the outputs it must refuse, and what its line must name
_REFUSED = {
    "encode": (["out.txt", "out.bin", "out", "out.ply"], [".gsd"]),
    "diff": (["out.txt", "out.bin", "out", "out.spz"], [".gsd"]),
    "convert": (["out.txt", "out.bin", "out", "out.sog"], [".ply", ".spz", ".splat", ".gsd"]),
    "export": (["out.txt", "out", "out.ply"], [".spz"]),
    "decode": (["out.txt", "out", "out.gsd"], [".ply", ".spz", ".splat"]),
    "apply": (["out.txt", "out", "out.spz"], [".ply"]),
}


@pytest.mark.parametrize("command", sorted(_REFUSED))
def test_an_output_name_a_command_does_not_write_is_refused_and_the_file_kept(command, scene, tmp_path, capsys):
    from gs_mapping.cli import main

    snap = tmp_path / "snap.gsd"
    assert main(["encode", str(scene), str(snap)]) == 0
    names, accepted = _REFUSED[command]
    for name in names:
        out = tmp_path / name
        out.write_bytes(b"kept")  # (an existing file: --overwrite must not make it replaceable)
        inputs = {"diff": [scene, scene], "decode": [snap], "apply": [snap]}.get(command, [scene])
        capsys.readouterr()
        rc = main([command, *map(str, inputs), str(out), "--overwrite"])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1, (command, name, err)
        assert all(a in err for a in accepted) and name in err, (command, name, err)
        assert out.read_bytes() == b"kept", (command, name)
        out.unlink()
        # and without a file there, nothing is made
        rc = main([command, *map(str, inputs), str(out)])
        assert rc == 2 and not out.exists(), (command, name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.ply", "snap.gsd"]


def test_a_gsd_output_of_any_case_is_written(scene, tmp_path):
    from gs_mapping.cli import main

    assert main(["encode", str(scene), str(tmp_path / "a.GSD")]) == 0
    assert main(["convert", str(tmp_path / "a.GSD"), str(tmp_path / "b.ply")]) == 0
