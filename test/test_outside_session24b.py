"""Outside review (session 24b, hostile review of the fix24-* changes): the lane map's "a crossing
seen whole is taken with its corners" (lane_map._sharp_corners) measured against the true crossing
polygon (shapely IoU) on crossings of ordinary sizes, an L-shaped one and model output that is not
exact to the centimetre; and output_files.install_directory's re-check at the swap against
check_output's own contract for ``allowed`` (a folder holding anything else is refused even with
``overwrite``).

Known bugs are ``xfail(strict=True)``.
"""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# the persistent lane map: a crossing seen whole, frame after frame (the harness of
# test_outside_hd_map7.test_a_crossing_seen_whole_every_frame_is_mapped_at_least_as_well_as_one_frame_sees_it)


def _fuse_whole_views(outline: np.ndarray, noise_m: float, seed: int = 0, frames: int = 30):
    """``frames`` whole views of the crossing ``outline`` (closed), each predicted as the model
    predicts a crossing: K = 20 Gaussian centres evenly spaced along the outline from a random start
    and in a random direction, last = first, plus isotropic noise of ``noise_m`` (0: exact).
    Returns (worst single view's IoU, fused track's IoU), both with the true polygon (shapely)."""
    pytest.importorskip("shapely")
    pytest.importorskip("torch")
    from shapely.geometry import LineString, Polygon, box

    from gsmap_hd.lane_map import LaneMap

    Obs = namedtuple("Obs", "cls score points")
    truth = Polygon(outline)
    line = LineString(outline)

    def iou(p: Polygon) -> float:
        p = p.buffer(0)
        return p.intersection(truth).area / p.union(truth).area

    rng = np.random.default_rng(seed)
    lanes = LaneMap()
    seen = []
    for _ in range(frames):
        d = (np.linspace(0.0, line.length, 20) + rng.uniform(0.0, line.length)) % line.length
        pts = np.array([line.interpolate(s).coords[0] for s in d]) + rng.normal(0.0, noise_m, (20, 2))
        pts[-1] = pts[0]
        if rng.integers(2):
            pts = pts[::-1].copy()
        seen.append(iou(Polygon(pts)))
        lanes.update([Obs(1, 0.8, pts)], box(-30, -15, 30, 15))
    (track,) = lanes.published()
    return min(seen), iou(Polygon(track.points))


def _rect(w: float, l: float) -> np.ndarray:
    return np.array([[10.0, -3.0], [10.0 + w, -3.0], [10.0 + w, -3.0 + l], [10.0, -3.0 + l], [10.0, -3.0]])


def test_a_square_crossing_seen_whole_keeps_its_corners():
    """Where _sharp_corners does restore the corners (every edge several spacings long, exact
    views), the fused 5 x 5 m crossing is the true square (IoU with it ≥ 0.995), above every single
    view: a guard for the case the fix was made for, on a shape other than the 4 x 8 m of
    test_outside_hd_map7."""
    worst, fused = _fuse_whole_views(_rect(5.0, 5.0), 0.0)
    assert worst < 0.99 and fused >= 0.995


def test_a_3_by_10_m_crossing_seen_whole_is_mapped_at_least_as_well_as_one_frame_sees_it():
    """docs/hd_model.md: 'A crossing seen whole is taken with its corners before it is averaged in
    (averaging rings resampled evenly tended to the worst cut …; now 1.00)'. The same measurement
    as test_outside_hd_map7's 4 x 8 m crossing, on a 3 x 10 m one (a common zebra crossing: 3 m
    deep across a 10 m road): K = 20 centres along 26 m are
    1.37 m apart, so a 3 m edge, once both its corners are cut by chords, holds no straight run of
    1.5 spacings and _sharp_corners leaves the ring as it is; averaged, the cuts tend to the
    worst again. Measured: worst view 0.978, fused map 0.964 (4 x 12 m: 0.978 / 0.966)."""
    worst, fused = _fuse_whole_views(_rect(3.0, 10.0), 0.0)
    assert worst >= 0.97
    assert fused >= worst - 0.01


def test_an_l_shaped_crossing_seen_whole_is_mapped_at_least_as_well_as_one_frame_sees_it():
    """The brief of the change: whole crossing views, concave and L-shaped ones included. An L of
    8 x 8 m with 3 m arms (perimeter 36 m, centres 1.9 m apart): of its six corners, those beside
    the 3 m edges keep their chords (no run of 1.5 spacings either side), so the fused ring is
    again the average of cuts. Measured: worst view 0.958, fused 0.926."""
    outline = np.array([[10, -3], [18, -3], [18, 0], [13, 0], [13, 5], [10, 5], [10, -3]], float)
    worst, fused = _fuse_whole_views(outline, 0.0)
    assert worst >= 0.95
    assert fused >= worst - 0.01


def test_a_crossing_seen_whole_with_centimetre_noise_is_mapped_at_least_as_well_as_one_frame_sees_it():
    """A real model's centres are never exact: the fix is measured in docs/hd_model.md on exact
    views only (0.943 → 1.00). With isotropic noise of σ = 1 cm (far below any trained model's
    error), Polygon.simplify(0.01) keeps every noisy centre, every 'run' is one spacing long, and
    _sharp_corners returns the ring unchanged; _ring_with_corners then sees 20 'corners' > 16 and
    resamples evenly, as before the fix. Measured: worst view 0.977, fused 0.934 (σ = 5 cm: 0.954
    / 0.945; averaging 30 noisy views should gain on one view, not lose)."""
    worst, fused = _fuse_whole_views(_rect(4.0, 8.0), 0.01)
    assert worst >= 0.97
    assert fused >= worst - 0.01


# ------------------------------------------------------------------------------------------------
# output_files.install_directory: the re-check at the swap


def _racing_install(tmp_path: Path, monkeypatch, *, overwrite: bool):
    """install_directory of a built map folder onto ``out``, which does not exist when the call
    starts; while the call flushes (``_fsync_tree``) another program makes ``out`` holding a file of
    its own (``thesis.tex``). Returns (the exception raised or None, the names in ``out`` after)."""
    import gs_mapping.output_files as of

    built = tmp_path / ".out.tmp-1"
    built.mkdir()
    (built / "map.ply").write_text("ply\n")
    out = tmp_path / "out"
    real = of._fsync_tree

    def flush_while_another_writes(root):
        real(root)
        out.mkdir()
        (out / "thesis.tex").write_text("mine")

    monkeypatch.setattr(of, "_fsync_tree", flush_while_another_writes)
    try:
        of.install_directory(built, out, overwrite=overwrite, allowed=["*.ply", "metrics.json"])
        err = None
    except Exception as exc:  # noqa: BLE001
        err = exc
    return err, sorted(p.name for p in out.iterdir())


def test_the_same_foreign_folder_present_before_the_call_is_refused_even_with_overwrite(tmp_path):
    """check_output's contract (output_files.py): 'allowed: for a directory, the names an existing
    one may hold to be replaced; one holding anything else is refused even with overwrite (--out ~
    must never be deleted)'. The reference for the next test: the same folder present before the
    call is refused, its file kept."""
    from gs_mapping.output_files import OutputError, install_directory

    built = tmp_path / ".out.tmp-1"
    built.mkdir()
    (built / "map.ply").write_text("ply\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(OutputError, match="not only outputs"):
        install_directory(built, out, overwrite=True, allowed=["*.ply", "metrics.json"])
    assert (out / "thesis.tex").read_text() == "mine"


def test_a_folder_made_by_another_program_while_flushing_is_refused_without_overwrite(tmp_path, monkeypatch):
    """The fix of 7be1a16 as it stands (a guard): without --overwrite the folder that appeared
    during the flush is refused in one line and its file kept."""
    from gs_mapping.output_files import OutputError

    err, names = _racing_install(tmp_path, monkeypatch, overwrite=False)
    assert isinstance(err, OutputError) and "exists already" in str(err) and "\n" not in str(err)
    assert names == ["thesis.tex"]


def test_a_foreign_folder_made_while_flushing_is_not_deleted_even_with_overwrite(tmp_path, monkeypatch):
    """7be1a16 re-checks the target at the swap only for ``overwrite=False``. With
    ``overwrite=True`` and ``allowed`` given (map, demo, bag outputs: MAP_OUTPUTS, BAG_FILES), the
    contract of the previous reference test is that a folder holding anything else is never
    replaced; a folder that another program made during the flush (the same window the fix closes)
    is replaced and its thesis.tex deleted. Expected: the OutputError of the reference test, and
    thesis.tex still there."""
    from gs_mapping.output_files import OutputError

    err, names = _racing_install(tmp_path, monkeypatch, overwrite=True)
    assert "thesis.tex" in names
    assert isinstance(err, OutputError)
