"""Mutation survey of session 35's merged code (6db718e..b916264): tests for the mutants that
survived the suite, each checked to fail with its mutant and pass without.

- ``> /dev/full`` was tested only with ``PYTHONUNBUFFERED=1`` (this box's environment): with
  Python's default block-buffered stdout a short output fails at the flush, not the write, and a
  failed write leaves its bytes buffered for the flush at exit (``Exception ignored … exit 120``).
- ``main()`` leaves ``sys.stdout`` as it found it (it wraps it while parsing and while running).
- A sparse stream whose one value is the last (its gap n − 1, the bound of the int32 gap reader).
- ``.splat``: gzip is told by its first three bytes and a flags byte with the reserved bits clear;
  a file of 3 bytes (no flags byte) is one line, not a traceback.
- A ``.splat`` with some zero scales (clamped) reads; only a file whose every scale is 0 is refused.
- ``map``'s refinement of one step reports it (1/1).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_maps import synthetic_map

import gs_mapping
from gs_mapping.cli import main

SRC = Path(gs_mapping.__file__).resolve().parents[1]  # (the subprocess runs the code imported here)


def _gs(*argv: str, stdout, unbuffered: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), *sys.path]))
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "gs_mapping", *argv]
    return subprocess.run(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
@pytest.mark.parametrize("unbuffered", [False, True])
@pytest.mark.parametrize("argv", [["params"], ["params", "--help"], ["--help"], ["info", "--help"]])
def test_a_full_stdout_is_one_line_naming_it_whether_or_not_stdout_is_buffered(argv, unbuffered):
    """Block-buffered (Python's default off a terminal): ``params`` (more than one buffer) failed
    twice, the second time at exit ('Exception ignored', exit 120), and ``--help`` (less than one
    buffer) only at exit. Either way: one line naming standard output, exit 2."""
    with open("/dev/full", "w") as full:
        r = _gs(*argv, stdout=full, unbuffered=unbuffered)
    lines = r.stderr.splitlines()
    assert (r.returncode, len(lines)) == (2, 1), r.stderr
    assert ": error: standard output: No space left on device" in lines[0], r.stderr


def test_output_to_a_pipe_is_whole_when_stdout_is_buffered():
    """The real output still arrives whole through the buffer (the flush on error changes nothing
    when writing succeeds)."""
    r = _gs("params", stdout=subprocess.PIPE, unbuffered=False)
    want = _gs("params", stdout=subprocess.PIPE, unbuffered=True)
    assert r.returncode == want.returncode == 0 and r.stdout == want.stdout and len(r.stdout) > 8192


@pytest.mark.parametrize("argv", [["params"], ["params", "--no-such-option"], ["--help"], ["nope"]])
def test_main_leaves_sys_stdout_as_it_found_it(argv, capsys):
    """main() in a longer-lived process (a test, a tool): a run, a usage error, --help."""
    before = sys.stdout
    try:
        main(argv)
    except SystemExit:
        pass
    assert sys.stdout is before


# ---------------------------------------------------------------------------------------------------
# sparse streams: the int32 gap reader's bound


@pytest.mark.parametrize("int32", [True, False])
@pytest.mark.parametrize("n", [1, 2, 300])
def test_a_sparse_stream_whose_one_value_is_the_last_decodes(n, int32):
    """k = 1, gap n − 1: the largest gap a stream of n values holds (the int32 gap reader's bound),
    read as the stream the encoder writes for it and as the hand-made mode 3 stream."""
    from test_share_streams import _decode, _sparse_bytes

    from gs_map_share import entropy
    from gs_map_share.bitio import Writer

    v = np.zeros(n, np.int64)
    v[-1] = -3
    hand = _sparse_bytes(1, [n - 1], [2 * 3 - 1 - 1])  # zig-zag(−3) = 5, stored as 5 − 1
    w = Writer()
    entropy.put_stream(w, v, signed=True)
    for data in (hand, w.getvalue()):
        kw = {"int32": True, "out": np.zeros(n, np.int32), "zeroed": True, "limit": 7} if int32 else {}
        got = _decode(data, n, True, **kw)
        assert np.array_equal(got, v)


def test_a_sparse_stream_read_without_int32_is_int64_as_its_dense_form():
    """``int32=False`` with a small ``limit``: the sparse decode gives int64 values, as the dense
    decode of the same values does (the int32 reader is for int32 streams only)."""
    from test_share_streams import _decode, _sparse_bytes

    n = 300
    v = np.zeros(n, np.int64)
    v[[3, 100, 250]] = [1, -2, 3]
    pos = np.flatnonzero(v)
    gaps = np.diff(np.concatenate([[-1], pos])) - 1
    zz = np.abs(v[pos]) * 2 - (v[pos] < 0)
    got = _decode(_sparse_bytes(3, gaps, zz - 1), n, True, limit=5)
    assert got.dtype == np.int64 and np.array_equal(got, v)


# ---------------------------------------------------------------------------------------------------
# map: a refinement of one step


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    """A 6-frame drive of the procedural world, 160x90 (as test_outside_readme35's)."""
    bag = tmp_path_factory.mktemp("drive") / "drive"
    argv = ["world", "--out", str(bag), "--frames", "6", "--size", "160x90", "--workers", "1"]
    assert main([*argv, "--no-progress"]) == 0
    return bag


def test_map_reports_a_refinement_of_one_step(drive, tmp_path):
    """``refine_iterations: 1`` runs one step (``IncrementalMapper.finish``): its line is 1/1."""
    pytest.importorskip("torch")
    from test_outside_long_runs import FAST
    from test_outside_readme35 import _progress_lines

    config = tmp_path / "fast.yaml"
    config.write_text(
        FAST.replace("refine_iterations: 0, refine_keep: 1", "refine_iterations: 1, refine_keep: 4")
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(SRC), *sys.path]), GS_MAPPING_PROGRESS_INTERVAL="0"
    )
    argv = ["map", str(drive), "--config", str(config), "--holdout-every", "0", "--out", str(tmp_path / "a")]
    p = subprocess.run(
        [sys.executable, "-m", "gs_mapping", *argv], env=env, capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 0, p.stderr[-2000:]
    refining = [x for x in _progress_lines(p.stderr) if x.startswith("refining: ")]
    assert [x.split()[1] for x in refining] == ["1/1"], p.stderr


# ---------------------------------------------------------------------------------------------------
# world --bev-range: the second extent's lower bound


@pytest.mark.parametrize("values", [["30", "0"], ["0", "15"], ["30", "-0"]])
def test_a_zero_bev_range_extent_is_refused(tmp_path, capsys, values):
    out = tmp_path / "bag"
    argv = ["world", "--out", str(out), "--frames", "1", "--size", "32x24", "--workers", "1", "--no-progress"]
    assert main([*argv, "--bev-range", *values]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--bev-range" in err[0], err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------
# .splat: gzip's magic is its first three bytes and a flags byte with the reserved bits clear


def _splat_with_first_x(tmp_path, head: bytes) -> tuple[Path, float]:
    from gs_mapping.splat_formats import write_splat
    from gs_mapping.splat_formats.antimatter_splat import RECORD

    g = synthetic_map(50, 0, seed=6)
    rec = np.frombuffer(write_splat(g), RECORD).copy()
    (x,) = struct.unpack("<f", head)
    rec["pos"][0, 0] = x
    path = tmp_path / "s.splat"
    path.write_bytes(rec.tobytes())
    assert path.read_bytes()[:4] == head
    return path, x


@pytest.mark.parametrize("head", [b"\x1f\x8b\x08\x20", b"\x1f\x8b\x07\x00", b"\x1f\x8b\x00\x1f"])
def test_a_splat_whose_first_bytes_are_no_gzip_header_reads(tmp_path, head):
    """1f 8b with another method than deflate (8), or a reserved flag bit (0x20) set: no gzip
    writer makes these, so they are a .splat's first x (tiny, but a float all the same)."""
    from gs_mapping.splat_formats import load_splats

    path, x = _splat_with_first_x(tmp_path, head)
    assert main(["convert", str(path), str(tmp_path / "s.ply")]) == 0
    assert x in load_splats(tmp_path / "s.ply").means[:, 0]


def test_a_splat_whose_first_bytes_are_a_gzip_header_is_refused_as_gzip(tmp_path, capsys):
    path, _ = _splat_with_first_x(tmp_path, b"\x1f\x8b\x08\x1f")  # every defined flag set
    assert main(["convert", str(path), str(tmp_path / "s.ply")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "gzip data" in err[0], err


@pytest.mark.parametrize("name", ["x.splat", "x.ply", "x.spz", "x.gsd"])
@pytest.mark.parametrize("data", [b"\x1f\x8b\x08", b"\x1f\x8b", b"\x1f"])
def test_a_file_shorter_than_a_gzip_header_is_one_line(tmp_path, capsys, name, data):
    """Three bytes or fewer of gzip's magic (no flags byte to read): the reader's own refusal."""
    src = tmp_path / name
    src.write_bytes(data)
    command = "decode" if name.endswith(".gsd") else "convert"
    out = tmp_path / ("o.ply" if command == "decode" else "o.splat")
    assert main([command, str(src), str(out)]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err and str(src) in lines[0], err


def test_a_splat_with_some_zero_scales_reads_them_clamped(tmp_path):
    """Only a file whose every scale is 0 is refused: a zero scale among others is a −inf
    log-scale, clamped as the suite clamps non-finite values."""
    from gs_mapping.splat_formats import load_splats, write_splat
    from gs_mapping.splat_formats.antimatter_splat import RECORD

    g = synthetic_map(50, 0, seed=7)
    rec = np.frombuffer(write_splat(g), RECORD).copy()
    rec["scale"][[3, 10]] = 0.0
    rec["scale"][20, 1] = 0.0
    path = tmp_path / "z.splat"
    path.write_bytes(rec.tobytes())
    assert main(["convert", str(path), str(tmp_path / "z.ply")]) == 0
    back = load_splats(tmp_path / "z.ply")
    assert len(back) == 50 and np.isfinite(back.log_scales).all()
    small = np.exp(back.log_scales).max(axis=1) < 1e-6
    assert small.sum() == 2  # the two records of zero scales, clamped to the smallest size
