"""Guards for mutants that survived the suite (mutation run 41: 40 lines drawn with seed 2512052 from
gs_map_share (the codec and the fleet store) and gs_mapping.splat_formats). Each test fails on the
mutant named in its docstring and passes on the code as it is, and checks the behaviour against
something outside the code under test: bytes counted by hand in a gzip stream built with zlib, a
SOG re-zipped by Python's zipfile with its meta.json padded to the byte, the formats docs/format.md
section 7 lists as read, the scale-relative step of docs/format.md worked by hand, and a container
whose chunk body is one byte longer than its content (docs/format.md section 2).

No known bug: every test here passes now.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from gs_map_share.quantize import QuantParams
from gs_mapping.errors import MapError
from gs_mapping.gaussians import GaussianMap
from gs_mapping.splat_formats import load_splats, spz
from gs_mapping.splat_formats.sog import MAX_META
from gs_mapping.splat_formats.spz import read_spz

FIXTURES = Path(__file__).parent / "data" / "splat_formats"


def _spz_v2_one_point(trailer: int) -> bytes:
    """A gzip SPZ v2 of one point (header and arrays laid out by hand from the byte layout in
    spz.py's docstring) followed, inside the same gzip stream, by ``trailer`` zero bytes."""
    head = struct.pack("<IIIBBBB", 0x5053474E, 2, 1, 0, 12, 0, 0)
    arrays = bytes(9) + bytes([128]) + bytes(3) + bytes(3) + bytes([128, 128, 128])
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(head + arrays) + c.compress(bytes(trailer)) + c.flush()


def test_spz_trailer_of_exactly_max_trailer_bytes_is_read(monkeypatch):
    """Mutant spz.py:427 ``extra, kept = 1, []`` (the trailer count starts one byte high).
    The rule (spz.py: "more than MAX_TRAILER bytes after the SPZ arrays" is refused) is checked at
    the byte: with the limit set to 1000, a gzip stream whose arrays are followed by exactly 1000
    bytes (counted here, zlib built the stream) is read, 1001 are refused. The existing guard
    (test_guards_survivors10) stays 1024 bytes below the real 2**26 limit, so an off-by-one there
    went unnoticed."""
    monkeypatch.setattr(spz, "MAX_TRAILER", 1000)
    assert len(read_spz(_spz_v2_one_point(0))) == 1
    assert len(read_spz(_spz_v2_one_point(1000))) == 1
    with pytest.raises(MapError, match="more than 1000 bytes after the SPZ arrays"):
        read_spz(_spz_v2_one_point(1001))


def test_sog_meta_json_of_exactly_max_meta_bytes_is_read(tmp_path):
    """Mutant sog.py:145 ``if len(data) >= limit:`` (a zip member of exactly the limit refused as
    "inflates beyond"). A SOG's meta.json may be up to MAX_META (16 MiB) bytes: the fixture SOG
    (test/data/splat_formats/scene.sog) re-zipped by zipfile with its meta.json padded by JSON
    whitespace to exactly 16 MiB (counted here) is the same scene; one byte more is refused."""
    assert MAX_META == 16 << 20
    with zipfile.ZipFile(FIXTURES / "scene.sog") as src:
        files = {n: src.read(n) for n in src.namelist()}
    ref = load_splats(FIXTURES / "scene.sog")
    meta = json.dumps(json.loads(files["meta.json"])).encode()

    def padded(size: int) -> Path:
        out = tmp_path / f"m{size}.sog"
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for n, d in files.items():
                z.writestr(n, meta + b" " * (size - len(meta)) if n == "meta.json" else d)
        return out

    assert load_splats(padded(MAX_META)).equals(ref)
    with pytest.raises(MapError, match="meta.json"):
        load_splats(padded(MAX_META + 1))


def test_unknown_scene_format_error_names_every_readable_format(tmp_path):
    """Mutant splat_formats/__init__.py:57 (``.splat`` dropped from READ_NAMES). docs/format.md
    section 7 lists the formats read: standard and compressed PLY, SOG (.sog or meta.json),
    antimatter15 .splat and SPZ. A file of another suffix is refused with one line that names every
    one of them, and each suffix it names does read (the fixtures in test/data/splat_formats)."""
    (tmp_path / "scene.xyz").write_bytes(b"\x00" * 64)
    with pytest.raises(MapError, match="unknown scene format") as exc:
        load_splats(tmp_path / "scene.xyz")
    msg = str(exc.value)
    assert "\n" not in msg
    for suffix in (".ply", ".compressed.ply", ".spz", ".sog", "meta.json", ".splat"):
        assert suffix in msg, (suffix, msg)
    for name in ("scene.compressed.ply", "scene.sog", "scene.splat"):
        assert len(load_splats(FIXTURES / name)) > 0


def test_relative_position_step_follows_the_largest_axis_of_each_gaussian():
    """Mutant quantize.py:214 (``codes.min(axis=1)``: the smallest axis instead of the largest).
    docs/format.md "Scale-relative presets": the position step is the metre preset's times "the
    scene's median largest-axis Gaussian size / 0.1". The suite's checks give every Gaussian three
    equal scales, where largest and smallest agree. Here every Gaussian is a needle of 0.4 along a
    random one of its axes (0.05 and 0.01 across), none faint: the step is the preset's times
    e^(c·scale_step) / 0.1 with c = round(ln 0.4 / scale_step), the size on the scale lattice."""
    n = 301
    rng = np.random.default_rng(41)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scales = np.array([rng.permutation([0.4, 0.05, 0.01]) for _ in range(n)])
    g = GaussianMap(
        sh_degree=0,
        tile_size=2.0,
        ids=np.arange(1, n + 1, dtype=np.uint64),
        means=rng.uniform(-3, 3, (n, 3)).astype(np.float32),
        quats=q.astype(np.float32),
        log_scales=np.log(scales).astype(np.float32),
        opacity_logits=np.full(n, 3.0, np.float32),
        sh=rng.normal(size=(n, 1, 3)).astype(np.float32),
        levels=np.zeros(n, np.uint8),
    )
    for quality in (1, 2):
        p = QuantParams.from_quality(quality)
        code = round(math.log(0.4) / p.scale_step)
        want = p.pos_step * math.exp(code * p.scale_step) / 0.1
        assert p.relative_to(g).pos_step == pytest.approx(want, rel=1e-9), quality


def test_a_chunk_body_longer_than_its_content_is_refused():
    """Mutant bitio.py:151 (``Reader.end`` no longer refusing bytes left over in a chunk body).
    docs/format.md section 2: a TOC entry's ``length`` is the bytes of the chunk body, and the
    container ends exactly after the last body. A snapshot of 300 Gaussians whose TILES or LEVEL
    chunk gets one extra zero byte appended (its length and CRC-32C resealed, so only the content
    is wrong) is a DecodeError naming the trailing byte, not a map: the untouched container
    decodes, and a PAD chunk (zeros, ignored by the format) still may take any length."""
    from dataclasses import replace as dc_replace

    from gs_map_share.container import LEVEL, PAD, TILES, Chunk, pack, unpack
    from gs_map_share.errors import DecodeError
    from gs_map_share.snapshot import decode_snapshot, encode_map

    n = 300
    rng = np.random.default_rng(7)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g = GaussianMap(
        sh_degree=0,
        tile_size=2.0,
        ids=np.arange(1, n + 1, dtype=np.uint64),
        means=rng.uniform(-3, 3, (n, 3)).astype(np.float32),
        quats=q.astype(np.float32),
        log_scales=rng.uniform(-5, -2, (n, 3)).astype(np.float32),
        opacity_logits=rng.uniform(-3, 3, n).astype(np.float32),
        sh=rng.normal(size=(n, 1, 3)).astype(np.float32),
        levels=np.zeros(n, np.uint8),
    )
    data, _ = encode_map(g, QuantParams.from_quality(2))
    h, chunks = unpack(data)
    assert len(decode_snapshot(pack(h, chunks))[1]) == n
    assert len(decode_snapshot(pack(h, [*chunks, Chunk(PAD, 0, bytes(7))]))[1]) == n
    kinds = [c.type for c in chunks]
    assert TILES in kinds and LEVEL in kinds
    for kind in (TILES, LEVEL):
        i = kinds.index(kind)
        bad = list(chunks)
        bad[i] = dc_replace(chunks[i], data=bytes(chunks[i].data) + b"\x00")
        with pytest.raises(DecodeError, match="trailing"):
            decode_snapshot(pack(h, bad))
