"""Session 35: items earlier sessions noticed and left (note34.md, "Noticed, left alone").

- ``gs-mapping world --bev-range 1e300 1`` was accepted (ground truth over the whole world): each
  extent is now bounded (``cli.world.MAX_BEV_RANGE``, said in ``--help``), refused in one line
  naming ``--bev-range``, exit 2, nothing written.
- A ``.splat`` has no header: a file of another format under that name was read as records where its
  bytes happened to pass (an ASCII PLY: every float positive and finite, every rotation byte
  non-zero; ``convert`` wrote 4 Gaussians, exit 0), and so was a file of zeros (every scale 0,
  clamped). Another format's magic is now checked before a ``.splat`` is read, and a file whose
  every scale is 0 is refused: one line, exit 2, nothing written, from ``convert`` and ``encode``.
"""

from __future__ import annotations

import gzip
import zipfile

import numpy as np
import pytest
from hostile_cases import one_error_line
from synthetic_maps import synthetic_map

from gs_mapping.cli import main
from gs_mapping.cli.world import MAX_BEV_RANGE


def _world(tmp_path, *extra: str) -> tuple[int, object]:
    out = tmp_path / "bag"
    argv = ["world", "--out", str(out), "--frames", "1", "--size", "32x24", "--workers", "1", "--no-progress"]
    return main([*argv, *extra]), out


@pytest.mark.parametrize("values", [["1e300", "1"], ["1", "1e300"], ["1000.5", "15"], ["30", "1e308"]])
def test_a_bev_range_beyond_the_bound_is_refused_naming_it(tmp_path, capsys, values):
    rc, out = _world(tmp_path, "--bev-range", *values)
    assert rc == 2
    one_error_line(capsys, "--bev-range", f"{MAX_BEV_RANGE:.0f}")
    assert not out.exists()


def test_the_bound_itself_is_accepted_and_said_in_help(tmp_path, capsys):
    """1000 m a side is a bag (the world's GT reaches that far); --help states the bound."""
    assert MAX_BEV_RANGE == 1000.0
    rc, out = _world(tmp_path, "--bev-range", "1000", "1000")
    assert rc == 0 and (out / "metadata.yaml").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["world", "--help"])
    assert "(0, 1000]" in " ".join(capsys.readouterr().out.split())


# ---------------------------------------------------------------------------------------------------
# .splat: files that are no .splat records


def _splat_cases(tmp_path) -> dict[str, tuple[bytes, str]]:
    """name → (the bytes of a file named .splat, what its one error line must say)."""
    from gs_map_share.delta import MapSender
    from gs_map_share.quantize import QuantParams
    from gs_mapping.splat_formats import save_splats, write_splat
    from gs_mapping.splat_formats.antimatter_splat import RECORD

    g = synthetic_map(200, 0, seed=3)
    pad = lambda b: b + bytes(-len(b) % 32)  # noqa: E731  (a multiple of 32: the size check passes)
    files = {}
    for name, kw in (("b.ply", {}), ("v4.spz", {}), ("v3.spz", {"spz_version": 3})):
        save_splats(g, tmp_path / name, **kw)
        files[name] = (tmp_path / name).read_bytes()
    ascii_ply = b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
    ascii_ply += b"property float z\nend_header\n0 0 0\n1 1 1\n"
    sog = tmp_path / "s.zip"
    with zipfile.ZipFile(sog, "w") as z:
        z.writestr("meta.json", "{}")
    gsd = MapSender.from_map(g, QuantParams.from_quality(3), map_id=1, first_seq=1).snapshot()
    rec = np.frombuffer(write_splat(g), RECORD).copy()
    nan, inf, flat = rec.copy(), rec.copy(), rec.copy()
    nan["pos"][7, 0], inf["pos"][9, 2], flat["scale"] = np.nan, -np.inf, 0.0
    return {
        "binary PLY": (pad(files["b.ply"]), "a PLY file under another name"),
        "ASCII PLY": (pad(ascii_ply), "a PLY file under another name"),
        "SPZ v4": (pad(files["v4.spz"]), "an SPZ file under another name"),
        "SPZ v3 (gzip)": (pad(files["v3.spz"]), "gzip data"),
        "plain gzip": (pad(gzip.compress(bytes(1000))), "gzip data"),
        "SOG zip": (pad(sog.read_bytes()), "a zip"),
        "our .gsd": (pad(gsd), "a .gsd snapshot"),
        "zeros": (bytes(32 * 100), "every Gaussian's scale is 0"),
        "zero scales": (flat.tobytes(), "every Gaussian's scale is 0"),
        "NaN position": (nan.tobytes(), "position of Gaussian 7"),
        "inf position": (inf.tobytes(), "position of Gaussian 9"),
    }


CASES = [
    "binary PLY",
    "ASCII PLY",
    "SPZ v4",
    "SPZ v3 (gzip)",
    "plain gzip",
    "SOG zip",
    "our .gsd",
    "zeros",
    "zero scales",
    "NaN position",
    "inf position",
]


@pytest.mark.parametrize("command", ["convert", "encode"])
@pytest.mark.parametrize("case", CASES)
def test_a_splat_that_is_no_splat_records_is_one_line_and_exit_2(tmp_path, capsys, case, command):
    data, said = _splat_cases(tmp_path)[case]
    assert len(data) % 32 == 0  # (the size check alone lets each through)
    src = tmp_path / "scene.splat"
    src.write_bytes(data)
    out = tmp_path / ("out.ply" if command == "convert" else "out.gsd")
    capsys.readouterr()
    assert main([command, str(src), str(out)]) == 2
    one_error_line(capsys, str(src), said)
    assert not out.exists()


def test_real_splats_still_read_and_a_misnamed_file_under_its_own_name_reads(tmp_path, capsys):
    """A .splat written by us converts, and so do ones whose first x is 0 or 2.13 m (bytes 1f 8b 08 40:
    gzip's first three, but no gzip flags byte); a PLY converts to .splat and back."""
    from gs_mapping.splat_formats import load_splats, save_splats, write_splat

    g = synthetic_map(300, 0, seed=4)
    a = tmp_path / "a.splat"
    a.write_bytes(write_splat(g))
    assert main(["convert", str(a), str(tmp_path / "a.ply")]) == 0
    assert len(load_splats(tmp_path / "a.ply")) == 300
    first = np.argmax(g.log_scales.sum(axis=1) - np.logaddexp(0.0, -g.opacity_logits))  # (written first)
    for x in (b"\0\0\0\0", b"\x1f\x8b\x08\x40"):  # x = 0; x = 2.13 m, whose bytes open as gzip's do
        g.means[first] = (np.frombuffer(x, "<f4")[0], 0.0, 0.0)
        b = tmp_path / "b.splat"
        b.write_bytes(write_splat(g))
        assert b.read_bytes()[:4] == x
        assert main(["encode", str(b), str(tmp_path / "b.gsd"), "--overwrite"]) == 0
    save_splats(g, tmp_path / "c.ply")
    assert main(["convert", str(tmp_path / "c.ply"), str(tmp_path / "c.splat")]) == 0
    assert main(["convert", str(tmp_path / "c.splat"), str(tmp_path / "d.ply")]) == 0
    capsys.readouterr()
