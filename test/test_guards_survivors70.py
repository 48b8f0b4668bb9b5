"""Hostile review and mutation round (review36) over the day's changes: tests for the mutants that
survived the nearby suites, each checked to fail with its mutant and pass without.

- fleet offer (merge._remerge / changed_rows): a twin of another history tried first in a drain and
  rejected at its checksum has already put its ids in the offer's list; rows among them that did not
  change must not enter the per-tile record (``rn[in_new]`` instead of ``rn[differs & in_new]``
  doubled them there, and the tile counts with them).
- (the fleet clock-back rule's 60 s edges went with the rule: its spans' edges are in
  test_fleet37_replays.py)
- encode/diff outputs (scene_io.check_container_output): a name ending "gsd" without the dot; which
  suffixes the line names (up to 16 characters); the pointer to convert only for scene names.
- SOG reader: an animated PNG (Pillow's frame count, not the WebP flag); a still VP8X WebP with
  alpha is read (the animation bit, not any flag); the palette's own message for a too-tall
  centroids image; shN.count one past the palette's entries.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from synthetic_maps import synthetic_map
from test_outside_formats36 import _hostile_sog

from gs_map_share.delta import MapSender
from gs_map_share.merge import FleetMerge, TileRows, merge_maps, tile_counts
from gs_map_share.quantize import QuantParams
from gs_mapping.cli import main
from gs_mapping.ply import save_ply

P = QuantParams.from_quality(3)


def _tile_counts_from_scratch(fm: FleetMerge) -> dict:
    return {(t, m): c for m, v in fm.vehicles.items() for t, c in tile_counts(v.state, P.tile_bits).items()}


def test_a_twin_of_another_history_rejected_in_a_drain_leaves_the_record_and_counts_right():
    """The ids a rejected twin touched reach the offer's list (apply_delta appends as it goes, and
    the checksum fails last): unchanged rows among them are not changes. Vehicle 1 holds seq 100;
    deltas 102 of two histories wait (the other history's first, so the drain tries it first: it
    updates rows the true history left alone, then fails its checksum), then 101 arrives."""
    g = synthetic_map(600, 0, seed=70, extent=6.0)
    fm = FleetMerge(P, global_map_id=1 << 20)
    other = MapSender.from_map(synthetic_map(500, 0, seed=71, extent=6.0), P, map_id=2, first_seq=100)
    fm.offer(other.snapshot())
    sender = MapSender.from_map(g, P, map_id=1, first_seq=100)
    fm.offer(sender.snapshot())
    fork_g, fork = copy.deepcopy(g), copy.deepcopy(sender)
    rng = np.random.default_rng(70)
    ids = rng.choice(g.ids, 40, replace=False)
    mine, theirs = ids[:20], ids[20:]

    def move(gmap, which, s):
        gmap.update(which, means=gmap.means[gmap.rows_of(which)] + np.float32(s))

    move(g, mine, 1.5)
    d101 = sender.update(g, g.take_changes())[0]
    move(g, mine, -0.7)
    d102 = sender.update(g, g.take_changes())[0]
    move(fork_g, theirs, 2.5)
    fork.update(fork_g, fork_g.take_changes())
    move(fork_g, theirs, 1.0)
    twin102 = fork.update(fork_g, fork_g.take_changes())[0]
    assert [fm.offer(d).status for d in (twin102, d102)] == ["buffered", "buffered"]
    res = fm.offer(d101)
    assert res.status == "applied" and [a.seq for a in res.accepted] == [101, 102]
    assert fm.vehicle(1).counts["rejected"] == 1  # (the twin: tried first, refused)
    v = fm.vehicle(1)
    assert v.state.equals(sender.shadow)
    fresh = TileRows(v.state, P.tile_bits).ids
    assert v.tiles.of is v.state and sorted(v.tiles.ids) == sorted(fresh)
    assert all(np.array_equal(v.tiles.ids[t], fresh[t]) for t in fresh)
    held = {(t, m): c for t, per in fm.tile_vehicles.items() for m, c in per.items() if c}
    assert held == _tile_counts_from_scratch(fm)
    fm.flush()
    assert fm.global_map.equals(merge_maps({1: sender.shadow, 2: other.shadow}, P.tile_bits, 0))


@pytest.mark.parametrize(
    "name, named, hint",
    [
        ("outgsd", None, False),  # ends in "gsd" without the dot: not a .gsd name
        ("out.gsd.partial", ".partial", False),  # a suffix of 8: named
        ("out." + "a" * 20, None, False),  # a long tail is no format: not named
        ("out.tmp", ".tmp", False),  # not a scene format: no pointer to convert
        ("out.splat", ".splat", True),  # a scene format: convert writes it
    ],
)
def test_a_container_output_not_named_gsd_is_refused_naming_what_it_is(name, named, hint, tmp_path, capsys):
    scene = tmp_path / "scene.ply"
    save_ply(synthetic_map(30, 0, seed=74), scene)
    out = tmp_path / name
    capsys.readouterr()
    assert main(["encode", str(scene), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a .gsd container is written here" in err and not out.exists(), err
    assert (f", not {named} (" in err) if named else (", not " not in err), err
    assert ("'gs-mapping convert' writes scene formats" in err) == hint, err


PLAYBOT = SHARED_DATA / "splats" / "playbot_sog"
needs_playbot = pytest.mark.skipif(not (PLAYBOT / "meta.json").is_file(), reason="no playbot SOG here")


def _playbot_copy(tmp_path, edit_meta=None, images=None) -> Path:
    """A writable copy of the real playbot SOG, meta.json edited, images replaced (name → RGBA
    array → the bytes to write)."""
    from PIL import Image

    def saver(name, make):
        def save(path: Path) -> None:
            with Image.open(PLAYBOT / name) as im:
                path.write_bytes(make(np.asarray(im.convert("RGBA"))))

        return save

    return _hostile_sog(tmp_path, "playbot", edit_meta, {n: saver(n, m) for n, m in (images or {}).items()})


def _encoded(a: np.ndarray, fmt: str, **kw) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(a, "RGBA").save(b, fmt, **kw)
    return b.getvalue()


def _refused(d: Path, capsys, *want: str) -> None:
    capsys.readouterr()
    assert main(["convert", str(d), str(d.parent / "out.ply")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in want), err
    assert not (d.parent / "out.ply").exists()


@needs_playbot
def test_an_animated_png_in_a_sog_is_refused(tmp_path, capsys):
    """Pillow counts an APNG's frames (n_frames); the WebP animation flag does not apply to it."""
    from PIL import Image

    def apng(a):
        b = io.BytesIO()
        Image.fromarray(a, "RGBA").save(
            b, "PNG", save_all=True, append_images=[Image.fromarray(255 - a, "RGBA")]
        )
        return b.getvalue()

    _refused(
        _playbot_copy(tmp_path, images={"sh0.webp": apng}), capsys, "sh0.webp", "animated PNG (2 frames)"
    )


@needs_playbot
def test_a_still_webp_with_an_extended_header_and_alpha_is_read(tmp_path):
    """A still lossless WebP carrying EXIF has a VP8X header whose flags set alpha (0x10), not
    animation (0x02): it is read as the original."""
    from gs_mapping.splat_formats import load_splats

    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"
    d = _playbot_copy(tmp_path, images={"sh0.webp": lambda a: _encoded(a, "WEBP", lossless=True, exif=exif)})
    raw = (d / "sh0.webp").read_bytes()
    assert raw[12:16] == b"VP8X" and raw[20] & 0x10 and not raw[20] & 0x02
    got, want = load_splats(str(d)), load_splats(str(PLAYBOT))
    assert np.array_equal(got.sh, want.sh) and np.array_equal(got.opacity_logits, want.opacity_logits)


@needs_playbot
def test_a_palette_image_taller_than_the_format_allows_is_named_a_palette(tmp_path, capsys):
    def tall(a):  # 1025 rows of 64 entries: past shN.count's 65536
        return _encoded(np.concatenate([a, a[:1]]), "WEBP", lossless=True)

    d = _playbot_copy(tmp_path, images={"shN_centroids.webp": tall})
    _refused(d, capsys, "shN_centroids.webp", "a palette of more than 65536 entries")


@needs_playbot
def test_a_palette_one_entry_short_of_shn_count_is_refused(tmp_path, capsys):
    def short(a):  # 1000 rows: 64000 entries
        return _encoded(a[:1000], "WEBP", lossless=True)

    d = _playbot_copy(
        tmp_path,
        edit_meta=lambda m: m["shN"].__setitem__("count", 64001),
        images={"shN_centroids.webp": short},
    )
    _refused(d, capsys, "64000 palette entries for shN.count 64001")
