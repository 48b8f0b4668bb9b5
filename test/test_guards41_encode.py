"""Mutation round 41 (cli/encode): breakages of encode's own option checks that passed every test,
each guarded by the container's decoder (gs_map_share.container.unpack_header) and docs/format.md's
bounds (a snapshot's seq at least 1; a frame id of at most MAX_FRAME_ID bytes)."""

from __future__ import annotations

from synthetic_maps import synthetic_map

from gs_map_share.container import MAX_FRAME_ID, unpack_header
from gs_mapping.cli import main
from gs_mapping.ply import save_ply


def _encode(tmp_path, capsys, *options):
    out = tmp_path / "a.gsd"
    out.unlink(missing_ok=True)
    rc = main(["encode", str(tmp_path / "a.ply"), str(out), "--levels", "2", *options])
    return rc, out, capsys.readouterr().err


def test_encode_refuses_seq_0_and_takes_a_frame_id_of_exactly_the_containers_bound(tmp_path, capsys):
    save_ply(synthetic_map(200, 0, seed=3), tmp_path / "a.ply", keep_ids=True)
    rc, out, err = _encode(tmp_path, capsys, "--seq", "0")
    assert rc == 2 and err.count("\n") == 1 and "--seq" in err, err
    assert not out.exists()
    rc, out, err = _encode(tmp_path, capsys, "--seq", "1")
    assert rc == 0, err
    assert unpack_header(out.read_bytes())[0].seq == 1
    longest = "f" * MAX_FRAME_ID
    rc, out, err = _encode(tmp_path, capsys, "--frame-id", longest)
    assert rc == 0, err
    assert unpack_header(out.read_bytes())[0].frame_id == longest
    rc, out, err = _encode(tmp_path, capsys, "--frame-id", longest + "f")
    assert rc == 2 and err.count("\n") == 1 and "--frame-id" in err, err
    assert not out.exists()
