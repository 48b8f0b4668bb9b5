"""Per-Gaussian lattices: rotation precision by anisotropy, coarser scales and colour for faint Gaussians."""

from __future__ import annotations

import struct
from dataclasses import replace

import numpy as np
import pytest
from test_share_codec import _covariance_error, random_map

from gs_map_share.container import reseal, unpack
from gs_map_share.errors import DecodeError, EncodeError
from gs_map_share.quantize import (
    ROT_TIERS_LOG,
    QuantParams,
    dequantize,
    quantize,
    rotation_bits,
    rotation_max,
    to_qmap,
)
from gs_map_share.snapshot import decode_map, decode_snapshot, encode_map, encode_snapshot


def _with_spread(rng, n, spread):
    """Random rotations; log-scales (−4, −4 + spread/2, −4 + spread)."""
    g = random_map(rng, n, deg=0)
    g.log_scales[:] = np.array([-4.0, -4.0 + spread / 2, -4.0 + spread], np.float32)
    return g


def test_bits_follow_the_scale_spread():
    q0 = QuantParams.from_quality(0)  # scale step 0.15: the four tiers (0.4, 0.8, 1.5, 2.5), 2..6 bits
    assert q0.rot_tiers == (3, 5, 10, 17) and q0.rot_bits == 6
    p = replace(q0, rot_tiers=(2, 4, 8, 12))  # (a scale step of 1/5's tiers: round numbers below)
    scale = np.array([[0, 0, 0], [0, 1, 1], [-3, 0, -1], [5, 0, 2], [0, 8, 3], [0, 11, 3], [-20, -8, -9]])
    assert rotation_bits(scale, p).tolist() == [2, 2, 3, 4, 5, 5, 6]
    assert rotation_max(rotation_bits(scale, p)).tolist() == [1, 1, 3, 7, 15, 15, 31]
    flat = replace(p, rot_tiers=())
    assert rotation_bits(scale, flat) is None and flat.rot_max == 31
    assert rotation_bits(np.zeros((0, 3), np.int32), p).shape == (0,)


def test_preset_tiers_are_the_same_log_spreads_at_every_quality():
    for q in range(6):
        p = QuantParams.from_quality(q)
        assert len(p.rot_tiers) == len(ROT_TIERS_LOG)
        assert np.allclose(
            np.array(p.rot_tiers) * p.scale_step, ROT_TIERS_LOG[: len(p.rot_tiers)], atol=p.scale_step / 2
        )
    assert QuantParams() == QuantParams.from_quality(3)


@pytest.mark.parametrize(
    "tiers,bits",
    [((3, 2), 8), ((1, 2, 3, 4, 5), 9), ((0,), 8), ((70000,), 8), ((1, 2, 3), 4), ([1, 2], 8), ((1.5,), 8)],
)
def test_bad_tiers_are_refused(tiers, bits):
    with pytest.raises(EncodeError, match="rot_tiers"):
        QuantParams(rot_bits=bits, rot_tiers=tiers)


def test_needles_get_finer_rotations_than_near_spheres():
    rng = np.random.default_rng(4)
    p = replace(QuantParams.from_quality(2), faint_rot=0)  # the tiers alone (faint ones: below)
    errs = {}
    for spread in (0.1, 3.0):
        g = _with_spread(rng, 3000, spread)
        # scales on their lattice (the faint one too): the covariance error is the rotation's alone
        step = p.faint_factor * p.scale_step
        g.log_scales[:] = np.rint(g.log_scales / step) * step
        qg = quantize(g, p)
        b = rotation_bits(to_qmap(g, p).scale, p)
        assert len(np.unique(b)) == 1
        errs[spread] = (int(b[0]), _covariance_error(g.quats, qg.quats, g.log_scales, qg.log_scales))
    (b_sphere, e_sphere), (b_needle, e_needle) = errs[0.1], errs[3.0]
    assert (b_sphere, b_needle) == (p.rot_bits - 4, p.rot_bits)
    # the coarse lattice costs a near-sphere little: its covariance barely depends on the rotation
    assert e_sphere < 0.05 and e_needle < 0.05


def test_round_trip_and_reencode_with_mixed_tiers():
    g = random_map(np.random.default_rng(5), 2400, deg=0)
    for k, spread in enumerate((0.0, 0.6, 1.2, 2.0, 2.8)):  # 480 Gaussians per spread (tier)
        g.log_scales[480 * k : 480 * (k + 1)] = np.array([-4.0, -4.0 + spread / 2, -4.0 + spread])
    for quality in (0, 2, 5):
        p = QuantParams.from_quality(quality)
        q = to_qmap(g, p)
        bits, faint = rotation_bits(q.scale, p, q.op), q.op < p.faint_below
        assert len(np.unique(bits[~faint])) == len(p.rot_tiers) + 1
        data, _ = encode_map(g, p, n_levels=4)
        assert decode_map(data).equals(quantize(g, p))
        _, q = decode_snapshot(data)
        assert q.equals(to_qmap(dequantize(q, p), p))  # a decoded map re-encodes to itself


def test_untiered_params_still_round_trip():
    g = random_map(np.random.default_rng(6), 500, deg=1)
    p = QuantParams(rot_tiers=(), rot_bits=8)
    data, _ = encode_map(g, p)
    h, q = decode_snapshot(data)
    assert h.params == p and decode_map(data).equals(quantize(g, p))


def _edit_header(data: bytes, fmt: str, offset: int, *values) -> bytes:
    """Header fields rewritten at ``offset`` (docs/format.md §2), the CRCs made valid again."""
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, *values)
    return reseal(bytes(b))


def test_header_carries_the_tiers_and_refuses_bad_ones():
    g = random_map(np.random.default_rng(7), 200, deg=0)
    p = replace(QuantParams.from_quality(0), rot_bits=6, rot_tiers=(2, 4, 8, 12))
    data, _ = encode_map(g, p)
    h, _ = unpack(data)
    assert h.params.rot_tiers == (2, 4, 8, 12)
    for n, tiers, what in (
        (5, (2, 4, 8, 12), "rotation tiers"),
        (2, (2, 4, 8, 0), "rotation tiers"),
        (4, (4, 2, 8, 12), "rot_tiers"),
    ):
        with pytest.raises(DecodeError, match=what):
            decode_map(_edit_header(data, "<B4H", 96, n, *tiers))


def test_a_rotation_outside_its_tier_lattice_is_rejected():
    p = QuantParams.from_quality(0)
    g = _with_spread(np.random.default_rng(8), 300, 0.0)  # spheres: the 2-bit lattice, |c| ≤ 1
    q = to_qmap(g, p)
    q.rot[0] = (5, 0, 0)  # inside the finest lattice (31), outside this Gaussian's (1)
    data, _ = encode_snapshot(q, p)
    with pytest.raises(DecodeError, match="rotation component outside its lattice"):
        decode_map(data)


# --- faint Gaussians: scales and DC on a faint_factor × coarser lattice ---


def test_faint_rows_are_multiples_of_the_factor_and_others_are_not():
    g = random_map(np.random.default_rng(9), 4000, deg=1)
    for quality in (0, 2):
        p = QuantParams.from_quality(quality)
        q = to_qmap(g, p)
        faint = q.op < p.faint_below
        assert 0.1 < faint.mean() < 0.9
        f = p.faint_factor
        assert not (q.scale[faint] % f).any() and not (q.dc[faint] % f).any()
        assert (q.scale[~faint] % f).any() and (q.dc[~faint] % f).any()
        # the threshold is the preset's opacity, rounded to the opacity step
        op = 1 / (1 + np.exp(-q.op * p.opacity_step))
        assert op[faint].max() < 0.3 + p.opacity_step / 4 and op[~faint].min() > 0.3 - p.opacity_step / 2


def test_faint_factor_one_is_the_plain_lattice():
    g = random_map(np.random.default_rng(10), 2000, deg=0)
    p = replace(QuantParams(), faint_factor=1)
    q = to_qmap(g, p)
    plain = np.rint(np.clip(g.log_scales.astype(np.float64), -30, 12) / p.scale_step)
    assert np.array_equal(np.sort(q.scale, 1), np.sort(plain, 1))  # (axes may be relabelled)
    data, _ = encode_map(g, p)
    assert decode_snapshot(data)[0].params == p and decode_map(data).equals(quantize(g, p))


def test_faint_lattice_round_trips_at_every_level_and_reencodes():
    g = random_map(np.random.default_rng(11), 3000, deg=2)
    p = replace(QuantParams.from_quality(1), faint_factor=5)
    data, info = encode_map(g, p, n_levels=5)
    _, q = decode_snapshot(data)
    assert q.equals(to_qmap(g, p)) and q.equals(to_qmap(dequantize(q, p), p))
    for k in range(info.levels):  # coarse aggregates are on the same lattices
        decode_map(data, max_level=k).validate()


def test_encoder_refuses_a_faint_value_off_its_lattice():
    p = QuantParams()
    g = random_map(np.random.default_rng(12), 500, deg=0)
    q = to_qmap(g, p)
    row = int(np.flatnonzero(q.op < p.faint_below)[0])
    q.scale[row, 1] += 1
    with pytest.raises(EncodeError, match="faint"):
        encode_snapshot(q, p)


@pytest.mark.parametrize(
    "kw",
    [
        dict(faint_factor=0),
        dict(faint_factor=9),
        dict(faint_factor=2.0),
        dict(faint_below=40000),
        dict(faint_rot=4),
        dict(faint_rot=-1),
        dict(faint_pos=0),
        dict(faint_pos=9),
        dict(faint_pos=2.0),
    ],
)
def test_bad_faint_params_are_refused(kw):
    with pytest.raises(EncodeError, match="faint"):
        QuantParams(**kw)


def test_header_carries_the_faint_lattice_and_refuses_a_bad_factor():
    g = random_map(np.random.default_rng(13), 300, deg=0)
    p = QuantParams.from_quality(0)
    data, _ = encode_map(g, p)
    h, _ = unpack(data)
    assert (h.params.faint_factor, h.params.faint_below) == (5, -1)
    with pytest.raises(DecodeError, match="faint_factor"):
        decode_map(_edit_header(data, "<B", 105, 0))  # faint_factor 0


def test_deltas_move_gaussians_across_the_faint_threshold_bit_identically():
    from gs_map_share.delta import MapSender
    from gs_map_share.receiver import MapStore

    rng = np.random.default_rng(14)
    g = random_map(rng, 2000, deg=1)
    sender = MapSender.from_map(g, QuantParams.from_quality(2), map_id=3)
    store = MapStore()
    store.receive(sender.snapshot())
    for _step in range(3):  # fade some in, some out, and recolour faint ones
        ids = rng.choice(g.ids, 200, replace=False)
        rows = g.rows_of(ids)
        sh = g.sh[rows].copy()
        sh[:, 0] += 0.05
        g.update(ids, opacity_logits=-g.opacity_logits[rows], sh=sh)
        data, _ = sender.update(g, g.take_changes())
        assert store.receive(data) == "applied"
        assert store.gaussian_map().equals(quantize(g, sender.params))


@pytest.mark.parametrize("quality", [1, 3, 5])
def test_faint_rotations_are_coarser_and_round_trip(quality):
    """A faint Gaussian's rotation lattice has faint_rot bits fewer than its tier gives: its codes
    stay within that lattice, the map decodes to the map quantised and re-encodes to itself, and
    a tier's bits are unchanged for the others."""
    g = random_map(np.random.default_rng(quality), 3000, deg=0)
    g.opacity_logits[:] = np.random.default_rng(9).uniform(-4, 4, len(g)).astype(np.float32)
    p = QuantParams.from_quality(quality)
    assert p.faint_rot == 1
    q = to_qmap(g, p)
    faint = q.op < p.faint_below
    assert 0.2 < faint.mean() < 0.8
    bits = rotation_bits(q.scale, p, q.op)
    tier = rotation_bits(q.scale, replace(p, faint_rot=0))
    assert np.array_equal(bits, tier - faint)
    assert (np.abs(q.rot) <= rotation_max(bits)[:, None]).all()
    data, _ = encode_map(g, p, n_levels=4)
    assert decode_map(data).equals(quantize(g, p))
    _, back = decode_snapshot(data)
    assert back.equals(to_qmap(dequantize(back, p), p))
    with pytest.raises(ValueError, match="opacity codes"):
        rotation_bits(q.scale, p)
    with pytest.raises(EncodeError, match="faint_rot"):
        replace(QuantParams.from_quality(0), faint_rot=1)  # quality 0's tiers leave no room


def test_header_carries_faint_rotations_and_positions_and_refuses_bad_ones():
    """Version 6 header fields (docs/format.md §2, offsets 108-109): carried, checked on reading;
    a faint Gaussian's position is a multiple of faint_pos (the same lattice, rounded coarser)
    and the map decodes to the map quantised."""
    g = random_map(np.random.default_rng(14), 400, deg=0)
    g.opacity_logits[:] = np.random.default_rng(15).uniform(-4, 4, len(g)).astype(np.float32)
    p = replace(QuantParams.from_quality(2), faint_pos=3)
    data, _ = encode_map(g, p)
    h, q = decode_snapshot(data)
    assert (h.params.faint_rot, h.params.faint_pos) == (1, 3) and h.params == p
    faint = q.op < p.faint_below
    assert faint.any() and (q.pos[faint] % 3 == 0).all() and (q.pos[~faint] % 3 != 0).any()
    assert decode_map(data).equals(quantize(g, p))
    for offset, value, what in ((108, 4, "faint_rot"), (108, 3, "faint_rot"), (109, 0, "faint_pos")):
        with pytest.raises(DecodeError, match=what):
            decode_map(_edit_header(data, "<B", offset, value))
