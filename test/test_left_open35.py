"""Session 35: items earlier sessions noticed and left (note34.md, "Noticed, left alone").

- ``gs-mapping world --bev-range 1e300 1`` was accepted (ground truth over the whole world): each
  extent is now bounded (``cli.world.MAX_BEV_RANGE``, said in ``--help``), refused in one line
  naming ``--bev-range``, exit 2, nothing written.
"""

from __future__ import annotations

import pytest

from gs_mapping.cli import main
from gs_mapping.cli.world import MAX_BEV_RANGE


def _one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _world(tmp_path, *extra: str) -> tuple[int, object]:
    out = tmp_path / "bag"
    argv = ["world", "--out", str(out), "--frames", "1", "--size", "32x24", "--workers", "1", "--no-progress"]
    return main([*argv, *extra]), out


@pytest.mark.parametrize("values", [["1e300", "1"], ["1", "1e300"], ["1000.5", "15"], ["30", "1e308"]])
def test_a_bev_range_beyond_the_bound_is_refused_naming_it(tmp_path, capsys, values):
    rc, out = _world(tmp_path, "--bev-range", *values)
    assert rc == 2
    _one_error_line(capsys, "--bev-range", f"{MAX_BEV_RANGE:.0f}")
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
