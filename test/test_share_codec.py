"""gs_map_share snapshots: exact round trips, quantisation contract, levels of detail."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic_maps import synthetic_map

from gs_map_share.container import unpack
from gs_map_share.errors import DecodeError, EncodeError
from gs_map_share.quantize import (
    QuantParams,
    canonical_rotations,
    dequantize,
    dequantize_rotations,
    quantize,
    quantize_rotations,
    stable_rotations,
    to_qmap,
)
from gs_map_share.section import MIN_LEVEL_NODES, _choose_depths
from gs_map_share.snapshot import decode_map, decode_snapshot, encode_map
from gs_mapping.gaussians import GaussianMap


def random_map(rng, n, deg=1, spread=3.0, origin=0.0, ids=None):
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = (deg + 1) ** 2
    return GaussianMap(
        sh_degree=deg,
        means=(rng.normal(size=(n, 3)) * spread + origin).astype(np.float32),
        quats=q.astype(np.float32),
        log_scales=rng.normal(-4, 1, (n, 3)).astype(np.float32),
        opacity_logits=rng.normal(0, 3, n).astype(np.float32),
        sh=(rng.normal(size=(n, k, 3)) * 0.3).astype(np.float32),
        ids=np.arange(1, n + 1, dtype=np.uint64) * 7 if ids is None else ids,
        levels=rng.integers(0, 3, n).astype(np.uint8),
    )


@pytest.mark.parametrize("deg", [0, 1, 2, 3])
def test_round_trip_equals_quantised_map(deg):
    g = synthetic_map(3000, deg, seed=deg)
    p = QuantParams()
    data, info = encode_map(g, p)
    out = decode_map(data)
    want = quantize(g, p)
    assert out.equals(want)
    assert np.array_equal(out.ids, g.ids)
    assert info.gaussians == 3000 and info.bytes == len(data) and sum(info.bytes_per_level) == len(data)
    assert info.levels >= 4


def test_quantisation_error_bounds():
    g = synthetic_map(2000, 3, seed=5)
    p = QuantParams()
    qg = quantize(g, p)
    assert np.abs(qg.means - g.means).max() <= p.pos_step / 2 + 1e-6
    assert np.abs(qg.opacity_logits - g.opacity_logits).max() <= p.opacity_step / 2 + 1e-6
    # faint Gaussians keep scales and DC on a faint_factor × coarser lattice
    faint = to_qmap(g, p).op < p.faint_below
    assert 0.05 < faint.mean() < 0.95
    f = np.where(faint, p.faint_factor, 1)[:, None]
    # a Gaussian's axes may be relabelled (canonical_axes): its scales as a set are within the step
    scale_err = np.abs(np.sort(qg.log_scales, 1) - np.sort(g.log_scales, 1))
    assert (scale_err <= f * p.scale_step / 2 + 1e-6).all()
    assert (np.abs(qg.sh[:, 0] - g.sh[:, 0]) <= f * p.dc_step / 2 + 1e-6).all()
    assert scale_err[faint].max() > p.scale_step / 2
    # the same ellipsoid, in whichever of its frames
    assert _covariance_error(g.quats, qg.quats, g.log_scales, qg.log_scales) < 0.1
    qg.validate()


def _covariance_error(qa, qb, log_scales, log_scales_b=None) -> float:
    """Largest relative difference of R S² Rᵀ between two Gaussians' rotations and scales (the
    second's scales default to the first's)."""
    from gs_mapping.geometry import quat_to_matrix

    def cov(q, ls):
        s2 = np.exp(2 * ls.astype(np.float64))
        r = quat_to_matrix(q.astype(np.float64) / np.linalg.norm(q.astype(np.float64), axis=1, keepdims=True))
        return np.einsum("nij,nj,nkj->nik", r, s2, r), s2

    (ca, s2), (cb, _) = cov(qa, log_scales), cov(qb, log_scales if log_scales_b is None else log_scales_b)
    return float((np.abs(ca - cb).max(axis=(1, 2)) / s2.max(1)).max())


def test_canonical_rotation_is_the_same_ellipsoid_with_w_dropped():
    rng = np.random.default_rng(7)
    q = rng.normal(size=(5000, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[:50, 1] = q[:50, 3]  # exact ties of the largest components
    ls = rng.normal(-3, 1, (5000, 3))
    p = QuantParams()
    idx, rot = quantize_rotations(q, p)
    ci, cr = canonical_rotations(idx, rot)
    assert np.all(ci == 3) and np.abs(cr).max() <= p.rot_max
    a, b = dequantize_rotations(idx, rot, p), dequantize_rotations(ci, cr, p)
    assert _covariance_error(a, b, ls) < 1e-6  # the same ellipsoid, only permuted and negated
    assert np.all(np.abs(b[:, 3]) > np.abs(b[:, :3]).max(1))
    # a code that survives re-encoding still does once canonical
    si, sr = canonical_rotations(*stable_rotations(q, p))
    ri2, rr2 = quantize_rotations(dequantize_rotations(si, sr, p), p)
    assert np.all(ri2 == 3) and np.array_equal(rr2, sr)


def test_quantize_is_idempotent_on_typical_maps():
    g = synthetic_map(2000, 1, seed=3)
    p = QuantParams()
    once = quantize(g, p)
    assert quantize(once, p).equals(once)


def test_far_from_origin_no_wrap():
    rng = np.random.default_rng(0)
    g = random_map(rng, 500, deg=0, spread=2.0, origin=-3.0e5)  # 300 km: float64 tile origins
    p = QuantParams(pos_step=0.01)
    out = decode_map(encode_map(g, p)[0])
    assert out.equals(quantize(g, p))
    assert np.abs(out.means - g.means).max() < 0.05


def test_empty_map_and_single_gaussian():
    for n in (0, 1):
        g = random_map(np.random.default_rng(1), n, deg=2)
        data, info = encode_map(g)
        out = decode_map(data)
        assert out.equals(quantize(g)) and len(out) == n


def test_duplicate_voxels_and_sparse_ids():
    rng = np.random.default_rng(2)
    ids = np.sort(rng.choice(1 << 40, 400, replace=False)).astype(np.uint64)
    g = random_map(rng, 400, deg=1, spread=0.002, ids=ids)  # many share a 1 mm voxel
    out = decode_map(encode_map(g)[0])
    assert out.equals(quantize(g))


def test_levels_of_detail_are_valid_growing_maps():
    g = synthetic_map(20000, 3, seed=1)
    data, info = encode_map(g, n_levels=5)
    assert 3 <= info.levels <= 5  # (coarse levels below MIN_LEVEL_NODES are left out)
    sizes = []
    for k in range(info.levels):
        pv = decode_map(data, max_level=k)
        pv.validate()
        assert pv.sh_degree == 3 and len(pv) >= MIN_LEVEL_NODES
        sizes.append(len(pv))
    assert sizes == sorted(sizes) and sizes[-1] == len(g)
    assert sizes[0] <= len(g) / 20
    assert info.bytes_per_level[0] <= 0.1 * info.bytes
    # prefix decoding needs only the prefix's chunks to be correct
    h, chunks = unpack(data)
    assert [c.level for c in chunks if c.type == 2] == list(range(info.levels))


def test_levels_keep_to_the_ratio_and_leave_out_the_tiny():
    """Depths: each coarse level's node count nearest its target (1/16 per level up), strictly
    increasing to the tile depth; a coarse level of fewer than MIN_LEVEL_NODES nodes is left out."""
    big = [1, 8, 64, 512, 4096, 32768, 262144, 1 << 20]  # 8× a depth: every target has a depth
    # targets 1M / 16³ = 256 (512 nearer than 64), 4096, 65536 (32768 nearer than 262144)
    assert _choose_depths(big, 4) == [3, 4, 5, 7]
    small = [1, 5, 20, 70, 300, 1200, 3000]
    # targets 0.05, 0.7, 12, 188 at depths 0, 1, 2 (20) and 4 (300): the three below 64 left out
    assert _choose_depths(small, 5) == [4, 6]
    assert _choose_depths(small, 1) == [6]
    assert _choose_depths([1, 3, 9, 27], 4) == [3]  # nothing coarse is big enough: one level


def test_coarse_gaussians_cover_their_children():
    g = synthetic_map(5000, 0, seed=4)
    data, _ = encode_map(g, n_levels=4)
    pv = decode_map(data, max_level=0)
    # every fine Gaussian lies within a few sigmas of some coarse one
    from scipy.spatial import cKDTree

    _, idx = cKDTree(pv.means).query(g.means)
    d = np.linalg.norm(g.means - pv.means[idx], axis=1)
    assert np.percentile(d / pv.scales().max(axis=1)[idx], 95) < 3.0


def test_rejects_bad_params_and_huge_ids():
    with pytest.raises(EncodeError):
        QuantParams(pos_step=0.0)
    g = random_map(np.random.default_rng(3), 3, ids=np.array([1, 2, 1 << 63], np.uint64))
    with pytest.raises(EncodeError):
        encode_map(g)


def test_snapshot_header_fields():
    g = synthetic_map(1000, 0, seed=6)
    data, _ = encode_map(g, map_id=77, seq=5, frame_id="odom")
    h, q = decode_snapshot(data)
    assert (h.map_id, h.seq, h.base_seq, h.frame_id, h.gaussians) == (77, 5, 0, "odom", 1000)
    assert q.checksum() == h.state_crc
    with pytest.raises(DecodeError):
        decode_snapshot(data[:-1])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 60),
    deg=st.integers(0, 3),
    seed=st.integers(0, 2**16),
    spread=st.sampled_from([0.001, 0.5, 50.0]),
    levels=st.integers(1, 6),
    quality=st.integers(0, 5),
)
def test_round_trip_property(n, deg, seed, spread, levels, quality):
    g = random_map(np.random.default_rng(seed), n, deg=deg, spread=spread)
    p = QuantParams.from_quality(quality)
    data, info = encode_map(g, p, n_levels=levels)
    assert decode_map(data).equals(quantize(g, p))
    h, q = decode_snapshot(data)
    assert q.equals(to_qmap(dequantize(q, p), p))  # re-encoding a decoded map is lossless
    for k in range(info.levels):
        decode_map(data, max_level=k).validate()
