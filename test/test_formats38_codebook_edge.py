"""A short SOG codebook at its edge: splat-transform 0.16's 5-Gaussian SH-3 SOG (test/data/
splat_formats38) with each codebook cut to just past its largest index still reads as
splat-transform 3.10.2 decodes the whole file (the cut entries are unused), and cut to exactly its
largest index (that index one past the end) is refused in one line naming it, as for any index
past the end (not numpy's IndexError)."""

from __future__ import annotations

import json
import zipfile

import pytest

from gs_mapping.errors import MapError
from gs_mapping.splat_formats import load_splats

pytest.importorskip("PIL.Image")

from test_formats38_outside_writers import FIXTURES, _reference, _same  # noqa: E402

NAME = "st0161_5g_sh3"


def _cut(tmp_path, key: str, n: int):
    src = zipfile.ZipFile(FIXTURES / f"{NAME}.sog")
    meta = json.loads(src.read("meta.json"))
    bad = dict(meta, **{key: dict(meta[key], codebook=meta[key]["codebook"][:n])})
    path = tmp_path / f"{key}_{n}.sog"
    with zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            out.writestr(
                info.filename, json.dumps(bad).encode() if info.filename == "meta.json" else src.read(info)
            )
    return path, len(meta[key]["codebook"])


@pytest.mark.parametrize("key", ["scales", "sh0", "shN"])
def test_a_codebook_cut_at_its_largest_index(tmp_path, key):
    ref = _reference(FIXTURES / f"{NAME}.decoded.ply")
    _, full = _cut(tmp_path, key, 1)
    # the largest index used: the longest cut that is refused (every shorter one is too)
    for n in range(full, 0, -1):
        path, _ = _cut(tmp_path, key, n)
        try:
            g = load_splats(path)
        except MapError as exc:
            assert str(exc).endswith(f"SOG {key}.codebook index {n} is beyond its {n} entries"), exc
            break
        _same(g, ref, f"{key} cut to {n}")  # unused entries cut: splat-transform's decode still
    else:
        pytest.fail(f"{key}: no cut refused")
    assert n < full  # (the fixture's codebooks hold entries past the largest index: a real edge)
