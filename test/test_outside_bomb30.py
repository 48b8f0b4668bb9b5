"""Outside probe of hostile scene files (session #30's bomb30 review): what it found, each as a test.

- A PLY element count of more digits than Python's ``int()`` takes (4300) crashed every command
  with a traceback; it is refused in one line as too many rows (and a count padded with zeros is
  still its number).
- A ``.sog`` zip member compressed with bzip2 or LZMA under a false size inflated whole (4 kB →
  2 GB) before the size limit could tell: only stored and deflated members are read; a member
  that is in the zip twice is refused instead of one of them taken silently.
- An SPZ v4 stream of many tiny zstd frames took ~20 µs a frame (800,000 frames: 16 s): at most
  ``MAX_FRAMES`` frames a stream; skippable frames are stepped over without a decompressor.
- A ``.gsd`` was decoded whatever its header's Gaussian count needed (8 Gaussians a byte), where
  SPZ and SOG inputs are refused in one line when memory is short: the container's count is now
  checked the same way.
- A liveliness token whose domain id had thousands of digits raised ``int()``'s own ValueError.
- A writer out of memory said only "out of memory": the line now names the file being written.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from synthetic_maps import synthetic_map

from gs_mapping.cli import main
from gs_mapping.errors import MapError
from gs_mapping.ply import load_ply, save_ply
from gs_mapping.splat_formats import load_splats

FIXTURES = Path(__file__).parent / "data" / "splat_formats"


def _one_line_exit_2(capsys, argv, *words) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


# --- PLY: an element count beyond int()'s digits --------------------------------------------------


@pytest.mark.parametrize("digits", [11, 4301, 20_000])
def test_a_ply_count_of_thousands_of_digits_is_one_line(tmp_path, capsys, digits):
    g = synthetic_map(20, 0, seed=1)
    save_ply(g, tmp_path / "ok.ply")
    data = (
        (tmp_path / "ok.ply")
        .read_bytes()
        .replace(b"element vertex 20\n", b"element vertex " + b"7" * digits + b"\n")
    )
    (tmp_path / "long.ply").write_bytes(data)
    for cmd in (
        ["convert", str(tmp_path / "long.ply"), str(tmp_path / "o.spz")],
        ["encode", str(tmp_path / "long.ply"), str(tmp_path / "o.gsd")],
    ):
        _one_line_exit_2(capsys, cmd, "long.ply", "rows (at most")
    assert not (tmp_path / "o.spz").exists() and not (tmp_path / "o.gsd").exists()


def test_a_ply_count_padded_with_zeros_is_its_number(tmp_path):
    g = synthetic_map(20, 0, seed=1)
    save_ply(g, tmp_path / "ok.ply")
    padded = b"element vertex " + b"0" * 5000 + b"20\n"
    data = (tmp_path / "ok.ply").read_bytes().replace(b"element vertex 20\n", padded)
    (tmp_path / "padded.ply").write_bytes(data)
    assert np.array_equal(load_ply(tmp_path / "padded.ply").means, load_ply(tmp_path / "ok.ply").means)


# --- SOG zips: members inflated only by bounded methods -------------------------------------------


def _sog_members() -> dict[str, bytes]:
    with zipfile.ZipFile(FIXTURES / "scene.sog") as z:
        return {n: z.read(n) for n in z.namelist()}


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_a_sog_member_in_bzip2_or_lzma_is_refused_before_inflating(tmp_path, method):
    """The member's method is refused whatever size it states (zipfile would inflate it whole)."""
    files = _sog_members()
    path = tmp_path / "packed.sog"
    with zipfile.ZipFile(path, "w") as out:
        for name, d in files.items():
            out.writestr(name, d, compress_type=method if name == "meta.json" else zipfile.ZIP_DEFLATED)
    with pytest.raises(MapError, match=f"meta.json is compressed with zip method {method}") as exc:
        load_splats(path)
    assert "\n" not in str(exc.value) and "packed.sog" in str(exc.value)


def test_a_sog_of_stored_and_deflated_members_reads_as_the_fixture(tmp_path):
    files = _sog_members()
    path = tmp_path / "mixed.sog"
    with zipfile.ZipFile(path, "w") as out:
        for i, (name, d) in enumerate(files.items()):
            out.writestr(name, d, compress_type=zipfile.ZIP_STORED if i % 2 else zipfile.ZIP_DEFLATED)
    got, want = load_splats(path), load_splats(FIXTURES / "scene.sog")
    assert np.array_equal(got.means, want.means) and np.array_equal(got.sh, want.sh)


def test_a_sog_member_in_the_zip_twice_is_refused(tmp_path):
    files = _sog_members()
    meta = json.loads(files["meta.json"])
    path = tmp_path / "twice.sog"
    with zipfile.ZipFile(path, "w") as out, pytest.warns(UserWarning, match="Duplicate name"):
        for name, d in files.items():
            out.writestr(name, d)
        out.writestr("meta.json", json.dumps({**meta, "count": 1}))  # the one a reader taking the last gets
    with pytest.raises(MapError, match="meta.json is in the zip twice"):
        load_splats(path)


# --- zstd: frames a stream --------------------------------------------------------------------------


def test_zstd_streams_of_many_frames_are_refused_past_the_cap(monkeypatch):
    from gs_mapping.zstd_frames import MAX_FRAMES, ZstdError, inflate, zstd

    made = []
    plain = zstd.ZstdDecompressor

    def counted(*a, **k):  # skippable frames are stepped over, not inflated
        made.append(1)
        return plain(*a, **k)

    monkeypatch.setattr(zstd, "ZstdDecompressor", counted)

    real = zstd.compress(bytes(range(256)) * 40)
    skip = struct.pack("<II", 0x184D2A53, 3) + b"abc"  # a skippable frame (magic 0x184D2A5?) of 3 bytes
    assert inflate(skip * 100 + real + skip + real, 1 << 20) == (bytes(range(256)) * 40) * 2
    assert len(made) == 2
    assert inflate(skip * (MAX_FRAMES - 1) + real, 1 << 20) == bytes(range(256)) * 40
    assert len(made) == 3
    with pytest.raises(ZstdError, match=f"more than {MAX_FRAMES} zstd frames"):
        inflate(skip * MAX_FRAMES + real, 1 << 20)
    empty = zstd.compress(b"")  # real frames that inflate to nothing count as well
    with pytest.raises(ZstdError, match="zstd frames"):
        inflate(empty * (MAX_FRAMES + 1), 1 << 20)


# --- .gsd: its Gaussian count against free memory ---------------------------------------------------


def test_a_container_naming_more_gaussians_than_memory_holds_is_one_line(tmp_path, capsys, monkeypatch):
    import gs_mapping.input_files as input_files

    g = synthetic_map(3000, 1, seed=4)
    save_ply(g, tmp_path / "m.ply")
    assert main(["encode", str(tmp_path / "m.ply"), str(tmp_path / "m.gsd")]) == 0
    capsys.readouterr()
    need = input_files.peak_bytes(3000, 1)
    monkeypatch.setattr(input_files, "available_memory", lambda: need - 1)
    for cmd in (
        ["decode", str(tmp_path / "m.gsd"), str(tmp_path / "d.ply")],
        ["export", str(tmp_path / "m.gsd"), str(tmp_path / "e.spz")],
        ["convert", str(tmp_path / "m.gsd"), str(tmp_path / "c.ply")],
    ):
        _one_line_exit_2(capsys, cmd, "m.gsd", "3000 Gaussians", "GiB")
    monkeypatch.setattr(input_files, "available_memory", lambda: need)
    assert main(["decode", str(tmp_path / "m.gsd"), str(tmp_path / "d.ply")]) == 0
    assert len(load_ply(tmp_path / "d.ply")) == 3000


# --- zenoh liveliness tokens ------------------------------------------------------------------------


def test_a_liveliness_domain_id_of_thousands_of_digits_is_a_message_error():
    pytest.importorskip("xxhash")  # (zenoh_wire hashes with it; not in the numpy-1.26 venv)
    from gs_mapping.errors import MessageError
    from gs_mapping.runtime.zenoh_wire import parse_liveliness

    token = "@ros2_lv/" + "9" * 5000 + "/zid/1/2/NN/%/%/talker"
    with pytest.raises(MessageError, match="domain id"):
        parse_liveliness(token)


# --- a writer out of memory names its file ----------------------------------------------------------


@pytest.mark.parametrize("ext", ["ply", "spz", "splat"])
def test_a_writer_out_of_memory_names_its_output_and_leaves_it_as_it_was(tmp_path, capsys, monkeypatch, ext):
    import gs_mapping.splat_formats as formats

    g = synthetic_map(30, 1, seed=2)
    save_ply(g, tmp_path / "in.ply")
    out = tmp_path / f"out.{ext}"
    out.write_bytes(b"before")

    def no_room(*a, **k):
        raise MemoryError

    monkeypatch.setattr(
        formats, {"ply": "save_ply", "spz": "write_spz", "splat": "write_splat"}[ext], no_room
    )
    err = _one_line_exit_2(
        capsys, ["convert", str(tmp_path / "in.ply"), str(out), "--overwrite"], f"out.{ext}"
    )
    assert "out of memory while writing it" in err
    assert out.read_bytes() == b"before" and sorted(p.name for p in tmp_path.iterdir()) == [
        "in.ply",
        f"out.{ext}",
    ]
