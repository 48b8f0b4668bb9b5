"""A ``.gsd`` given to ``encode`` or ``convert … OUT.gsd`` (to change its levels, map id or frame) is
re-encoded on the lattice it was sent on unless a quantisation option is given: its decoded map lies
on that lattice exactly, so the new container holds the same map. It was requantised with the
presets' steps in metres: a ``--relative`` scene (guitar: a 9.2e-5 step) went onto 1 mm, ~11× coarser,
with only a warning (found by outside user #32)."""

from __future__ import annotations

import numpy as np
import pytest

from gs_map_share.container import unpack_header
from gs_map_share.snapshot import decode_map
from gs_mapping.cli import main
from gs_mapping.splat_formats import load_splats


@pytest.fixture(scope="module")
def scene(shared_data, tmp_path_factory):
    """3,000 Gaussians of the real guitar scene (its units are not metres), as a PLY."""
    from gs_mapping.ply import save_ply

    g = load_splats(shared_data / "splats" / "guitar.ply")
    path = tmp_path_factory.mktemp("reencode") / "part.ply"
    save_ply(g.subset(np.arange(3000)), path)
    return path


def _encode(capsys, *argv) -> None:
    assert main(list(argv)) == 0
    capsys.readouterr()


@pytest.mark.parametrize("command", ["encode", "convert"])
def test_a_gsd_reencoded_without_options_keeps_its_map(scene, tmp_path, capsys, command):
    first, again = tmp_path / "first.gsd", tmp_path / "again.gsd"
    _encode(capsys, "encode", str(scene), str(first), "--relative")
    _encode(capsys, command, str(first), str(again), "--levels", "1", "--map-id", "7")
    a, b = first.read_bytes(), again.read_bytes()
    ha, hb = unpack_header(a)[0], unpack_header(b)[0]
    assert hb.params == ha.params and (hb.map_id, hb.n_levels) == (7, 1)
    # the real thing: the map a receiver rebuilds from each container is the same map
    assert decode_map(b).equals(decode_map(a))


def test_a_quantisation_option_requantises(scene, tmp_path, capsys):
    first, again = tmp_path / "first.gsd", tmp_path / "again.gsd"
    _encode(capsys, "encode", str(scene), str(first), "--relative")
    _encode(capsys, "encode", str(first), str(again), "--quality", "0", "--relative")
    pa, pb = unpack_header(first.read_bytes())[0].params, unpack_header(again.read_bytes())[0].params
    assert pb.pos_step > pa.pos_step and pb.rot_bits < pa.rot_bits


def test_the_default_quality_given_requantises_too(scene, tmp_path, capsys):
    """``--quality 2`` is the default's value but given: the .gsd goes onto that preset (in metres),
    as the help says ("unless --quality … is given"), not kept on its own lattice."""
    first, again = tmp_path / "first.gsd", tmp_path / "again.gsd"
    _encode(capsys, "encode", str(scene), str(first), "--relative")
    _encode(capsys, "encode", str(first), str(again), "--quality", "2")
    assert unpack_header(again.read_bytes())[0].params.pos_step == pytest.approx(0.001)
    assert unpack_header(first.read_bytes())[0].params.pos_step < 0.0005
