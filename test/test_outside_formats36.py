"""Scene inputs and outputs a user really has (session #36): what the CLI said or did wrong.

1. ``gs-mapping --bogus info BAG`` said "gs-mapping info: error: unrecognized arguments: --bogus"
   (and pointed at ``gs-mapping info --help``): an option given before the command is the top
   parser's, which names itself, as argparse does. After the command it stays the command's.
2. ``gs-mapping encode scene.ply out.txt`` (or ``out.bin``, or ``out``; ``diff`` too) wrote a
   container with exit 0 under a name no other command reads as a snapshot (``convert``,
   ``encode``, ``diff`` and ``export`` take a snapshot by ``.gsd``): README now says outputs go by
   extension, and each command refuses another name in one line naming those it writes, exit 2,
   an existing file of that name left as it was.
3. SOG (the real playbot SOG, splat-transform 0.16's, made hostile): a ``count`` in meta.json
   larger than the images hold (up to the padding of the near-square images) read padding pixels
   as Gaussians, exit 0; an animated WebP was read as its frame 0; an SH palette image with fewer
   rows than ``shN.count`` needs was cut to them (and refused only for a label beyond, in words
   that blamed the label). Each is now one line, exit 2. The count is told by the quats image:
   each Gaussian's alpha is 252 + the index of its largest component ("must be 252..255",
   PlayCanvas' specification), the padding's 0 (splat-transform zero-fills). A ``count`` smaller
   than the images hold read a prefix silently: the specification says pixels past the count are
   ignored (a valid file), so it is read as before and said in one warning, as rows past a PLY
   header's count are.
4. A binary PLY with bytes after its declared rows, or cut before their end: the rule docs/format.md
   states is plyfile's (trailing bytes are not read, an early end of file is refused), with a
   warning of ours where the bytes past the rows are one whole row or more. Checked on the real
   guitar scene at the row's edges (already so: no change).
5. A ``.splat`` (no header) cut mid-record was "not a .splat file (N bytes is not a positive
   multiple of 32)": now it says cut short, with its whole records and the bytes over. One cut at a
   record boundary cannot be told (docs/format.md): it reads as the Gaussians before the cut, which
   in ``convert.py``'s order (ours) are all but the least visible.
6. ``convert IN OUT`` across every format read × every format written, on the real guitar scene
   (PLY, compressed PLY, Niantic's SPZ v2/v3/v4 reference vectors, our .splat and .gsd of it) and
   the playbot SOG (SH degree 2): each
   output read back equals its input up to the output format's documented precision (no change
   needed). And ``kill -9`` of a ``convert --overwrite`` while its temp file holds half the new
   output leaves the old output whole (the next run removes the temp, saying so).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from synthetic_maps import synthetic_map

from gs_mapping.ply import save_ply


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
def test_an_output_name_a_command_does_not_write_is_refused_and_the_file_kept(
    command, scene, tmp_path, capsys
):
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


PLAYBOT = SHARED_DATA / "splats" / "playbot_sog"
needs_playbot = pytest.mark.skipif(not (PLAYBOT / "meta.json").is_file(), reason="no playbot SOG here")


def _hostile_sog(tmp_path, name: str, edit_meta=None, images=None) -> Path:
    """A writable copy of the playbot SOG with meta.json edited and images replaced."""
    d = tmp_path / name
    shutil.copytree(PLAYBOT, d)
    for f in d.iterdir():
        os.chmod(f, 0o644)
    meta = json.loads((d / "meta.json").read_text())
    if edit_meta:
        edit_meta(meta)
    (d / "meta.json").write_text(json.dumps(meta))
    for fname, save in (images or {}).items():
        save(d / fname)
    return d


def _refused_sog(d: Path, capsys, *want: str) -> None:
    from gs_mapping.cli import main

    capsys.readouterr()
    out = d.parent / f"{d.name}.ply"
    assert main(["convert", str(d), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in want), err
    assert not out.exists()


@needs_playbot
def test_the_real_sog_is_read_whole():
    from gs_mapping.splat_formats import load_splats

    assert len(load_splats(PLAYBOT)) == json.loads((PLAYBOT / "meta.json").read_text())["count"] == 500_000


@needs_playbot
@pytest.mark.parametrize("count", [500_001, 708 * 708])
def test_a_sog_count_past_its_gaussians_is_refused(count, tmp_path, capsys):
    d = _hostile_sog(tmp_path, f"c{count}", lambda m: m.update(count=count))
    _refused_sog(d, capsys, f"SOG count {count} (meta.json), but quats.webp holds 500000 Gaussians")


@needs_playbot
@pytest.mark.parametrize("count", [499_999, 250_000])
def test_a_sog_count_short_of_its_gaussians_reads_the_count_and_says_so(count, tmp_path, caplog):
    import logging

    from gs_mapping.splat_formats import load_splats

    d = _hostile_sog(tmp_path, f"c{count}", lambda m: m.update(count=count))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        g = load_splats(d)
    assert len(g) == count
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and f"SOG count {count} (meta.json), but quats.webp holds 500000" in said[0], said


@needs_playbot
@pytest.mark.parametrize("frames", [2, 1])
def test_an_animated_webp_in_a_sog_is_refused(frames, tmp_path, capsys):
    """Two frames (Pillow read frame 0 alone), or one frame in an animation (Pillow merges a repeated
    frame: what its flag says, a frame's own VP8 chunk, is not where the lossy check looks)."""
    from PIL import Image

    def animated(path):
        first = Image.open(path).convert("RGBA")
        second = Image.fromarray(np.asarray(first)[::-1].copy()) if frames == 2 else first
        first.save(path, "WEBP", lossless=True, save_all=True, append_images=[second], duration=100)
        assert Image.open(path).n_frames == frames

    d = _hostile_sog(tmp_path, "anim", images={"quats.webp": animated})
    _refused_sog(d, capsys, f"SOG image quats.webp is an animated WEBP ({frames} frame")


@needs_playbot
def test_a_sog_palette_shorter_than_its_count_is_refused(tmp_path, capsys):
    from PIL import Image

    def short(path):
        rows = np.asarray(Image.open(path).convert("RGBA"))[:1000]  # 64000 of 65536 entries
        Image.fromarray(rows.copy()).save(path, "WEBP", lossless=True)

    d = _hostile_sog(tmp_path, "pal", images={"shN_centroids.webp": short})
    _refused_sog(d, capsys, "shN_centroids.webp is 512×1000: 64000 palette entries for shN.count 65536")


GUITAR = SHARED_DATA / "splats" / "guitar.ply"
needs_guitar = pytest.mark.skipif(not GUITAR.is_file(), reason="no guitar scene here")
ROW = 14 * 4  # guitar.ply: 14 float properties a vertex


@needs_guitar
@pytest.mark.parametrize("extra", [1, ROW - 1, ROW, ROW + 3])
def test_bytes_after_a_plys_rows_are_not_read_and_a_whole_row_is_said(extra, tmp_path, caplog):
    import logging

    from gs_mapping.splat_formats import load_splats

    raw = GUITAR.read_bytes()
    ref = load_splats(GUITAR)
    junk = tmp_path / "junk.ply"
    junk.write_bytes(raw + bytes(range(7, 7 + extra)))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        g = load_splats(junk)
    assert len(g) == len(ref) == 90854 and np.array_equal(g.means, ref.means) and np.array_equal(g.sh, ref.sh)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == ([] if extra < ROW else [said[0]]) and all("1 more row(s)" in m for m in said), said


@needs_guitar
@pytest.mark.parametrize("cut", [1, ROW - 1, ROW, ROW + 1])
def test_a_ply_cut_before_its_rows_end_is_refused_naming_the_bytes(cut, tmp_path, capsys):
    from gs_mapping.cli import main

    raw = GUITAR.read_bytes()
    body = len(raw) - (raw.index(b"end_header\n") + len("end_header\n"))
    (tmp_path / "cut.ply").write_bytes(raw[:-cut])
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "cut.ply"), str(tmp_path / "out.spz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (
        f"declares 90854 rows ({body} bytes) but only {body - cut} bytes remain" in err
    ), err
    assert not (tmp_path / "out.spz").exists()


@needs_guitar
def test_a_splat_cut_mid_record_is_named_cut_and_one_cut_at_a_record_reads_its_records(tmp_path, capsys):
    from gs_mapping.cli import main
    from gs_mapping.splat_formats import load_splats

    whole = tmp_path / "g.splat"
    assert main(["convert", str(GUITAR), str(whole)]) == 0
    raw = whole.read_bytes()
    assert len(raw) == 90854 * 32
    for cut in (1, 31):
        (tmp_path / "cut.splat").write_bytes(raw[:-cut])
        capsys.readouterr()
        assert main(["convert", str(tmp_path / "cut.splat"), str(tmp_path / "out.ply")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and (
            f"{len(raw) - cut} bytes is not a whole number of 32-byte .splat records "
            f"(90853 and {32 - cut} bytes): cut short mid-record" in err
        ), err
    (tmp_path / "cut.splat").write_bytes(raw[:-32])
    g, cut = load_splats(whole), load_splats(tmp_path / "cut.splat")
    assert len(cut) == 90853 and np.array_equal(cut.means, g.means[:-1])
    visible = g.log_scales.sum(axis=1) + np.log(g.opacities())  # (convert.py's order)
    assert visible[-1] == visible.min()
    (tmp_path / "empty.splat").write_bytes(b"")
    assert main(["convert", str(tmp_path / "empty.splat"), str(tmp_path / "out.ply")]) == 2
    assert "an empty file (a .splat holds 32-byte records)" in capsys.readouterr().err
    assert not (tmp_path / "out.ply").exists()


SPZ_REF = SHARED_DATA / "splats" / "spz_reference"
needs_spz_ref = pytest.mark.skipif(not (SPZ_REF / "guitar_v4.spz").is_file(), reason="no SPZ vectors here")
# output format → (file name, options)
_WRITTEN = {
    "ply": ("o.ply", []),
    "spz2": ("o2.spz", ["--spz-version", "2"]),
    "spz3": ("o3.spz", ["--spz-version", "3"]),
    "spz4": ("o4.spz", []),
    "splat": ("o.splat", []),
    "gsd": ("o.gsd", ["--relative"]),
}


def _written_order(a, out: Path) -> np.ndarray:
    """The rows of ``a`` in the order a writer puts them: .splat largest volume × opacity first
    (antimatter15's convert.py), .gsd in its octree's order (docs/format.md), the others as read."""
    if out.suffix == ".splat":
        ls = a.log_scales.astype(np.float64)
        return np.argsort(
            -(ls.sum(axis=1) - np.logaddexp(0.0, -a.opacity_logits.astype(np.float64))), kind="stable"
        )
    if out.suffix == ".gsd":
        from gs_map_share.quantize import to_qmap
        from gs_map_share.snapshot import octree_rows
        from gs_mapping.cli.encode import container_params

        params = container_params(str(out))
        return octree_rows(to_qmap(a, params), params)
    return np.arange(len(a))


def _aligned(qa: np.ndarray, qb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit quaternions, ``qb`` given the sign nearer ``qa`` (q and −q are one rotation)."""
    qa, qb = (q.astype(np.float64) / np.linalg.norm(q, axis=1, keepdims=True) for q in (qa, qb))
    return qa, qb * np.where((qa * qb).sum(axis=1) < 0, -1.0, 1.0)[:, None]


def _chord(qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
    """|qa − qb| of unit quaternions, signs aligned. Where the components stored differ by a
    vector of length d and the reader rebuilds the rest on the unit sphere, it is at most 2·d."""
    qa, qb = _aligned(qa, qb)
    return np.linalg.norm(qb - qa, axis=1)


def _within(what: str, got, want, bound: float) -> None:
    err = float(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)).max(initial=0.0))
    assert err <= bound, f"{what}: off by {err:.3g}, the format's precision is {bound:.3g}"


def _equal_up_to_precision(a, b, out: Path) -> None:
    """``b`` (read from ``out``) is ``a`` up to the precision and range the output's format
    documents (docs/format.md; splat_formats/spz.py and antimatter_splat.py say how each is stored)."""
    from types import SimpleNamespace

    from gs_mapping.gaussians import SH_C0

    rows = _written_order(a, out)
    op_a, op_b = a.opacities()[rows].astype(np.float64), b.opacities().astype(np.float64)
    fields = ("means", "quats", "log_scales", "opacity_logits", "sh")
    a = SimpleNamespace(**{f: getattr(a, f)[rows] for f in fields})  # (a GaussianMap keeps ids sorted)
    assert len(b.means) == len(a.means) and b.sh.shape[1] in (1, a.sh.shape[1])
    kind = out.suffix
    if kind == ".ply":  # float32 as read
        for f in ("means", "log_scales", "opacity_logits", "sh"):
            assert np.array_equal(getattr(b, f), getattr(a, f)), f
        _within("rotation", _chord(a.quats, b.quats), 0, 1e-6)
    elif kind == ".splat":  # float32 position and scale; colour, alpha, rotation bytes; no SH rest
        assert np.array_equal(b.means, a.means) and b.sh_degree == 0
        _within("log-scale", b.log_scales, a.log_scales, 2e-6)
        colour = lambda g: 0.5 + SH_C0 * g.sh[:, 0].astype(np.float64)  # noqa: E731
        _within("colour", colour(b), np.clip(colour(a), 0, 1), 0.5 / 255 + 1e-6)
        _within("opacity", op_b, op_a, 0.5 / 255 + 1e-6)
        _within("rotation", _chord(a.quats, b.quats), 0, 2 * 2 * (0.5 / 128))  # (4 bytes, ±128)
    elif kind == ".spz":  # 24-bit positions (12 fraction bits), u8 scale, alpha, colour, rotation
        version = {"o2.spz": 2, "o3.spz": 3}.get(out.name, 4)
        _within("position", b.means, a.means, 0.5 / 4096 + 1e-6)
        _within("log-scale", b.log_scales, np.clip(a.log_scales, -10, 5.9375), 0.5 / 16 + 1e-6)
        _within("opacity", op_b, op_a, 0.5 / 255 + 1e-6)
        lim = 127.5 / (0.15 * 255)
        _within("DC", b.sh[:, 0], np.clip(a.sh[:, 0], -lim, lim), 0.5 / (0.15 * 255) + 1e-6)
        for k in range(1, b.sh.shape[1]):  # a byte c · 128 + 128, then a bucket of 8 (degree 1) or 16
            bucket = 8 if k < 4 else 16
            _within(f"SH {k}", b.sh[:, k], np.clip(a.sh[:, k], -1, 127 / 128), (bucket + 1) / 2 / 128 + 1e-6)
        if version == 2:  # bytes of x, y, z (w >= 0; w rebuilt, and x, y, z shrunk where |x, y, z| > 1)
            qa, qb = _aligned(a.quats, b.quats)  # (x, y, z, w)
            half = 0.5 / 127.5
            _within("rotation x, y, z", qb[:, :3], qa[:, :3], half * (1 + np.sqrt(3)) + 1e-6)
        else:  # the smallest three, steps of sqrt(1/2) / 511
            _within("rotation", _chord(a.quats, b.quats), 0, 2 * np.sqrt(3) * np.sqrt(0.5) / 511 / 2 + 1e-6)
    else:  # .gsd: the lattice its header names (docs/format.md), scene-relative here
        from gs_mapping.cli.encode import container_params

        p = container_params(str(out))
        ff, fp = p.faint_factor, p.faint_pos
        _within("position", b.means, a.means, fp * p.pos_step / 2 * (1 + 1e-3))
        # (the log-scales as a set: a Gaussian may come back with its axes permuted, rotated to match)
        ls_a = np.sort(np.clip(a.log_scales, -30, 12), axis=1)
        _within("log-scales", np.sort(b.log_scales, axis=1), ls_a, ff * p.scale_step / 2 + 1e-6)
        _within(
            "opacity logit", b.opacity_logits, np.clip(a.opacity_logits, -20, 20), p.opacity_step / 2 + 1e-6
        )
        _within("DC", b.sh[:, 0], np.clip(a.sh[:, 0], -64, 64), ff * p.dc_step / 2 + 1e-6)
        for k in range(1, b.sh.shape[1]):  # degree l on a step of l · rest_step
            step = int(np.sqrt(k)) * p.rest_step
            _within(f"SH {k}", b.sh[:, k], np.clip(a.sh[:, k], -64, 64), step / 2 + 1e-6)


@needs_guitar
@needs_spz_ref
@pytest.mark.parametrize(
    "source", ["ply", "compressed.ply", "v2.spz", "v3.spz", "v4.spz", "splat", "gsd", "sog"]
)
def test_convert_between_every_pair_of_formats_reads_back_within_the_formats_precision(
    source, tmp_path, capsys
):
    from gs_mapping.cli import main
    from gs_mapping.cli.scene_io import load_scene

    given = {"ply": GUITAR, "compressed.ply": GUITAR.with_name("guitar.compressed.ply"), "sog": PLAYBOT}
    given.update({v: SPZ_REF / f"guitar_{v}" for v in ("v2.spz", "v3.spz", "v4.spz")})
    src = given.get(source, tmp_path / f"in.{source}")
    if source in ("splat", "gsd"):  # ours, of the guitar
        assert main(["convert", str(GUITAR), str(src), *(["--relative"] if source == "gsd" else [])]) == 0
    if source == "sog" and not (PLAYBOT / "meta.json").is_file():
        pytest.skip("no playbot SOG here")
    a = load_scene(str(src))
    assert len(a) == (500_000 if source == "sog" else 90854)  # (playbot: SH degree 2, the one with SH)
    for name, options in _WRITTEN.values():
        out = tmp_path / name
        assert main(["convert", str(src), str(out), *options]) == 0, capsys.readouterr().err
        _equal_up_to_precision(a, load_scene(str(out)), out)


@needs_playbot
@pytest.mark.parametrize("name", ["o.ply", "o.spz", "o.splat", "o.gsd"])
def test_convert_killed_while_writing_leaves_the_old_output_whole(name, tmp_path):
    """kill -9 when the temp beside OUT holds half the new output (the real playbot SOG: 7–82 MB)."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / name
    out.write_bytes(b"the old output")
    whole = {"o.ply": 82_001_051, "o.spz": 9_484_951, "o.splat": 16_000_000, "o.gsd": 6_000_000}[name]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    argv = [sys.executable, "-m", "gs_mapping", "convert", str(PLAYBOT), str(out), "--overwrite"]
    argv += ["--relative"] if name == "o.gsd" else []
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    held = 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        temps = [p for p in tmp_path.iterdir() if p.name.startswith("." + name)]
        try:
            held = temps[0].stat().st_size if temps else 0
        except FileNotFoundError:
            held = 0
        if held >= whole // 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and held >= whole // 2, (proc.returncode, held)
    assert out.read_bytes() == b"the old output"
    # the next run removes the killed one's temp, saying so, and writes OUT
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "removed: the unfinished output of a run that was killed" in r.stderr, (
        r.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [name] and out.stat().st_size > whole // 2
