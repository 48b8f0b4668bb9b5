"""The small-scene speed work (bench/codec_small.py) changed no byte the encoder writes: sha256 of
encodes of real scene subsets, pinned from the encoder before it, and decode equality.

Subsets of guitar (real, SH 0), with synthetic higher SH (SH 1, SH 3: real scenes at those degrees
are not in shared/data), progressive (the CLI's 5 levels) and single level, quality 0/2/5, plus a
map whose Gaussians carry levels (the layered path) and a scene-relative (``--relative``) encode."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from gs_map_share.quantize import QuantParams, to_qmap
from gs_map_share.snapshot import decode_map, decode_snapshot, encode_map
from gs_mapping.gaussians import GaussianMap
from gs_mapping.splat_formats import load_splats

# (rows, SH degree, levels, quality, relative, levelled) → sha256[:16] of the encoded bytes
PINS = {
    (1000, 0, 5, 2, False, False): "d91b70a7d1726827",
    (1000, 0, 1, 2, False, False): "4f1bb62bcd18996d",
    (1000, 1, 5, 0, False, False): "b0f3d30ba490aa89",
    (2000, 3, 5, 2, False, False): "762bcf99f3159198",
    (2000, 3, 1, 5, False, False): "4410e2e32f7ff8fb",
    (1000, 3, 5, 2, True, False): "8eaf6d57fa57f03b",
    (1000, 0, 5, 4, True, False): "469c7a4828b034fa",
    (3000, 0, 5, 2, False, True): "36a1b348a82daf74",
    (3000, 3, 5, 2, False, True): "97d71f45a87c2229",
    (60, 3, 5, 2, False, False): "a81c0c5f0a3f094c",
    (5, 1, 1, 2, False, False): "f588fec61d3eedc1",
}


def _scene(shared_data, rows: int, degree: int, levelled: bool) -> GaussianMap:
    g = load_splats(shared_data / "splats" / "guitar.ply")
    g = g.subset(np.sort(np.random.default_rng(0).choice(len(g), rows, replace=False)))
    rest = (np.random.default_rng(1).standard_normal((rows, (degree + 1) ** 2 - 1, 3)) * 0.05).astype(np.float32)
    out = GaussianMap(
        sh_degree=degree,
        means=g.means,
        quats=g.quats,
        log_scales=g.log_scales,
        opacity_logits=g.opacity_logits,
        sh=np.concatenate([g.sh[:, :1], rest], axis=1),
        levels=(np.arange(rows) % 4).astype(np.uint8) if levelled else None,
        ids=np.arange(1, rows + 1, dtype=np.uint64) if levelled else None,
    )
    return out


@pytest.mark.parametrize("key", list(PINS), ids=lambda k: "-".join(map(str, k)))
def test_encode_bytes_pinned_and_decode_equal(shared_data, key):
    rows, degree, levels, quality, relative, levelled = key
    g = _scene(shared_data, rows, degree, levelled)
    p = QuantParams.from_quality(quality)
    if relative:
        p = p.relative_to(g).for_shared_sh(g)
    data, _ = encode_map(g, p, n_levels=levels)
    assert hashlib.sha256(data).hexdigest()[:16] == PINS[key]
    h, q = decode_snapshot(data)
    ref = to_qmap(g, p)
    assert len(q) == len(ref) == rows
    back = decode_map(data)
    assert back.sh_degree == degree and len(back) == rows
    assert q.checksum() == h.state_crc
