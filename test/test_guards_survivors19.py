"""Guards for behaviours a mutation-testing pass over the map codec core found unguarded (nineteenth
round): the quality presets against docs/format.md Appendix A (steps, rotation tiers, faint
thresholds and factors, the ~2 m codec tile), the round-trip error bounds each preset's lattices
imply (a numpy re-computation on a random map, faint rows on their coarser lattice), the
scale-relative mode and the rotation bit counts. Each test drives the real components and compares
them with an independent reference (the docs' table, parsed from the file; a numpy
re-computation; a hand-computed answer), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import math
import pathlib
import re
from fractions import Fraction

import numpy as np
import pytest
from test_share_speedpaths import _use_compiled

from gs_map_share.quantize import QuantParams, quantize, rotation_bits, to_qmap
from gs_mapping.gaussians import SH_C0, GaussianMap

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "format.md"


def _num(text: str) -> float:
    """'5.5 mm' → 0.0055, '1/16' → 0.0625, '0.85' → 0.85."""
    t = text.strip()
    scale = 1e-3 if t.endswith("mm") else 1.0
    t = t.removesuffix("mm").strip()
    return float(Fraction(t)) * scale


def _appendix_a() -> dict[int, dict]:
    """The preset table of docs/format.md Appendix A, parsed from the text."""
    text = DOC.read_text(encoding="utf-8")
    body = text[text.index("## Appendix A") : text.index("## Appendix B")]
    rows = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 8 or not re.match(r"^\d", cells[0]):
            continue
        q = int(cells[0].split()[0])
        bits = re.match(r"(\d+) \((?:\d+ tiers: )?(\d+)\.\.(\d+)\)", cells[4])
        faint = re.match(r"×(\d+) below ([0-9.]+); rotations (.*)$", cells[7])
        assert bits and faint, line
        rows[q] = dict(
            pos_step=_num(cells[1]),
            opacity_step=_num(cells[2]),
            scale_step=_num(cells[3]),
            rot_bits=int(bits.group(1)),
            rot_fewest=int(bits.group(2)),
            dc_colour=_num(cells[5]),
            rest_step=_num(cells[6]),
            faint_factor=int(faint.group(1)),
            faint_opacity=float(faint.group(2)),
            faint_rot=1 if "1 bit fewer" in faint.group(3) else 0,
        )
    assert sorted(rows) == [0, 1, 2, 3, 4, 5]
    return rows


TABLE = _appendix_a()


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ------------------------------------------------------------------------------------------------
# the presets (docs/format.md Appendix A)


@pytest.mark.parametrize("quality", range(6))
def test_quality_presets_match_the_documented_table(quality):
    want = TABLE[quality]
    p = QuantParams.from_quality(quality)
    for f in ("pos_step", "opacity_step", "scale_step", "rest_step"):
        assert getattr(p, f) == pytest.approx(want[f], rel=1e-9), f
    assert p.rot_bits == want["rot_bits"]
    # dc_step is stated in colour units: the stored step is that divided by SH_C0
    assert p.dc_step * SH_C0 == pytest.approx(want["dc_colour"], rel=1e-9)
    assert p.faint_factor == want["faint_factor"]
    assert p.faint_rot == want["faint_rot"]
    # 4 tiers at spreads 0.4, 0.8, 1.5, 2.5, each within half a scale step of spread / step
    assert len(p.rot_tiers) == want["rot_bits"] - want["rot_fewest"] == 4
    for t, v in zip(p.rot_tiers, (0.4, 0.8, 1.5, 2.5), strict=True):
        assert abs(t - v / p.scale_step) <= 0.5 + 1e-9, (t, v)
    # "below X": the largest opacity still faint (code faint_below − 1), rounded to 2 decimals
    assert round(_sigmoid((p.faint_below - 1) * p.opacity_step), 2) == pytest.approx(want["faint_opacity"])
    # the threshold is opacity 0.3 rounded to the opacity step
    assert abs(p.faint_below - math.log(0.3 / 0.7) / p.opacity_step) <= 0.5
    # the codec tile is about 2 m: 2**tile_bits steps within a factor √2 of it
    assert 2 / math.sqrt(2) <= (1 << p.tile_bits) * p.pos_step <= 2 * math.sqrt(2)


@pytest.mark.parametrize("pos_step", [0.0003, 0.002, 0.01, 0.05])
def test_a_preset_with_another_position_step_keeps_the_tile_near_two_metres(pos_step):
    p = QuantParams.from_quality(2, pos_step=pos_step)
    assert p.pos_step == pos_step
    assert 2 / math.sqrt(2) <= (1 << p.tile_bits) * pos_step <= 2 * math.sqrt(2)


# ------------------------------------------------------------------------------------------------
# round-trip error bounds: every attribute within half its (faint-scaled) step


def _random_map(n: int, seed: int) -> GaussianMap:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return GaussianMap(
        sh_degree=2,
        tile_size=2.0,
        ids=np.arange(1, n + 1, dtype=np.uint64),
        means=rng.uniform(-3, 3, (n, 3)).astype(np.float32),
        quats=q.astype(np.float32),
        log_scales=rng.uniform(-6, -1, (n, 3)).astype(np.float32),
        opacity_logits=rng.uniform(-4, 4, n).astype(np.float32),
        sh=(rng.normal(size=(n, 9, 3)) * np.array([1.0] + [0.3] * 8)[None, :, None]).astype(np.float32),
        levels=np.zeros(n, np.uint8),
    )


@pytest.mark.parametrize("quality", range(6))
def test_round_trip_errors_are_within_half_of_each_documented_step(quality):
    want = TABLE[quality]
    g = _random_map(600, seed=quality)
    p = QuantParams.from_quality(quality)
    d = quantize(g, p)
    assert np.array_equal(d.ids, g.ids)
    slack = 1e-5  # float32 storage of the decoded values
    # positions: no faint position lattice in a map preset
    assert np.abs(d.means.astype(np.float64) - g.means).max() <= want["pos_step"] / 2 + slack
    # opacity: the opacity step
    assert np.abs(d.opacity_logits - g.opacity_logits).max() <= want["opacity_step"] / 2 + slack
    # faint rows: opacity below the documented threshold; scales and colour factor × coarser
    faint = (
        _sigmoid_arr(d.opacity_logits)
        < (_sigmoid(p.faint_below * p.opacity_step) + _sigmoid((p.faint_below - 1) * p.opacity_step)) / 2
    )
    assert faint.any() and (~faint).any()
    f = np.where(faint, want["faint_factor"], 1)
    # scales: the least-turned frame may permute the axes, so compare the sorted log-scales
    ds, gs = np.sort(d.log_scales, axis=1), np.sort(g.log_scales, axis=1)
    assert (np.abs(ds - gs).max(axis=1) <= f * want["scale_step"] / 2 + slack).all()
    # DC in colour units
    dc = np.abs(d.sh[:, 0] - g.sh[:, 0]).max(axis=1) * SH_C0
    assert (dc <= f * want["dc_colour"] / 2 + slack).all()
    # higher SH: degree l on l × rest_step (not faint-scaled)
    for k, deg in ((1, 1), (3, 1), (4, 2), (8, 2)):
        err = np.abs(d.sh[:, k] - g.sh[:, k]).max()
        assert err <= deg * want["rest_step"] / 2 + slack, (k, deg, err)
        if quality >= 1:  # and not the next-coarser degree's step (rounding uses the full range)
            assert err > (deg - 0.5) * want["rest_step"] / 2 if deg > 1 else True
    # rotations: the same ellipsoid (covariance), to a tolerance the rotation bits allow
    cov_d, cov_g = _cov(d), _cov(g)
    rel = np.abs(cov_d - cov_g).max(axis=(1, 2)) / np.abs(cov_g).max(axis=(1, 2))
    assert np.median(rel) < 0.25


def _sigmoid_arr(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _cov(g: GaussianMap) -> np.ndarray:
    x, y, z, w = (g.quats[:, i].astype(np.float64) for i in range(4))
    n = np.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    r = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )
    s2 = np.exp(2 * g.log_scales.astype(np.float64))
    return np.einsum("nij,nj,nkj->nik", r, s2, r)


# ------------------------------------------------------------------------------------------------
# rotation bit counts: rot_bits − #{tiers t : spread < t}, faint ones faint_rot fewer


@pytest.mark.parametrize("compiled", [True, False])
def test_rotation_bits_follow_the_documented_rule_on_both_paths(monkeypatch, compiled):
    _use_compiled(compiled, monkeypatch)
    p = QuantParams.from_quality(3)
    t = p.rot_tiers
    # spreads exactly at, just below and above each tier; faint and not, at the threshold
    spreads = sorted({s for v in t for s in (v - 1, v, v + 1)} | {0})
    sc = np.array([[0, s // 2, s] for s in spreads] * 2, np.int32) - 7
    op = np.array([p.faint_below] * len(spreads) + [p.faint_below - 1] * len(spreads), np.int32)
    got = rotation_bits(sc, p, op)
    want = [
        p.rot_bits - sum(s < v for v in t) - (o < p.faint_below) * p.faint_rot
        for s, o in zip(spreads * 2, op, strict=True)
    ]
    assert got.tolist() == want


def test_rotation_bits_need_the_opacities_when_faint_rotations_are_coarser():
    p = QuantParams.from_quality(3)
    assert p.faint_rot == 1
    with pytest.raises(ValueError):
        rotation_bits(np.zeros((2, 3), np.int32), p)


# ------------------------------------------------------------------------------------------------
# scale-relative mode (QuantParams.relative_to's docstring)


def test_relative_to_scales_the_position_step_by_the_median_size():
    g = _random_map(301, seed=9)
    size = 0.4
    g.log_scales[:] = np.log(size)
    g.opacity_logits[:] = 3.0  # none faint: the median of the plain codes
    p = QuantParams.from_quality(2)
    r = p.relative_to(g)
    code = round(math.log(size) / p.scale_step)
    assert r.pos_step == pytest.approx(p.pos_step * math.exp(code * p.scale_step) / 0.1, rel=1e-9)
    assert r.tile_bits == min(20, p.tile_bits + 4)
    assert r.faint_pos == 2
    assert r.rot_bits == p.rot_bits - 1  # the tiers leave room for one bit fewer
    assert r.faint_rot == 1
    # the lattice is that step: decoded positions within half of it (faint ones twice that)
    d = quantize(g, r)
    assert np.abs(d.means.astype(np.float64) - g.means).max() <= r.pos_step / 2 + 1e-6


@pytest.mark.parametrize(("pos_step", "log_size"), [(1000.0, 6.0), (1e-9, -20.0)])
def test_relative_to_refuses_a_step_outside_the_lattice_bounds_in_the_scenes_terms(pos_step, log_size):
    from gs_map_share.errors import EncodeError

    g = _random_map(50, seed=2)
    g.log_scales[:] = log_size  # step = pos_step × e**log_size / 0.1: 4e6 or 2e-17, outside [1e-9, 1e6]
    g.opacity_logits[:] = 3.0
    with pytest.raises(EncodeError, match="outside"):
        QuantParams.from_quality(2, pos_step=pos_step).relative_to(g)


def test_positions_beyond_two_to_the_52_steps_are_refused():
    from gs_map_share.errors import EncodeError

    g = _random_map(4, seed=1)
    p = QuantParams(pos_step=2.0**-20)  # a power of two: 2**32 m is exactly 2**52 steps
    g.means[2, 1] = np.float32(2.0**32)
    with pytest.raises(EncodeError, match="2\\*\\*52"):
        to_qmap(g, p)
    g.means[2, 1] = np.float32(2.0**31)  # 2**51 steps: on the lattice
    assert int(to_qmap(g, p).pos[2, 1]) == 2**51


@pytest.mark.parametrize("quality", range(6))
def test_relative_rotations_are_one_bit_coarser_only_where_the_tiers_leave_room(quality):
    g = _random_map(101, seed=4)
    g.log_scales[:] = np.log(0.2)
    p = QuantParams.from_quality(quality)
    r = p.relative_to(g)
    n = len(p.rot_tiers)
    # one bit fewer where the fewest bits stay ≥ 2 (docs header: rot_bits − n_tiers − faint_rot ≥ 2)
    want = p.rot_bits - 1 if p.rot_bits - 1 - n >= 2 else p.rot_bits
    assert r.rot_bits == want
    assert r.faint_rot == min(1, want - n - 2)


def test_relative_tile_is_capped_at_twenty_bits():
    g = _random_map(101, seed=4)
    g.log_scales[:] = np.log(0.2)
    p = QuantParams.from_quality(2, pos_step=1e-6)
    assert p.tile_bits == 20  # log2(2 m / 1 µm) ≈ 21, clipped to the header's 1..20
    assert p.relative_to(g).tile_bits == 20


def test_relative_faint_positions_lie_on_the_twice_coarser_lattice():
    g = _random_map(400, seed=6)
    g.log_scales[:] = np.log(0.3)
    r = QuantParams.from_quality(2).relative_to(g)
    q = to_qmap(g, r)
    faint = q.op < r.faint_below
    assert faint.any() and (~faint).any()
    # docs §Faint rotations and positions: P = Q · rint(mean / (Q · pos_step)), Q = 2
    m = g.means.astype(np.float64)
    want = np.where(faint[:, None], 2 * np.rint(m / (2 * r.pos_step)), np.rint(m / r.pos_step))
    assert np.array_equal(q.pos, want.astype(np.int64))


def test_faint_positions_follow_faint_pos_even_without_a_faint_scale_lattice():
    g = _random_map(300, seed=8)
    p = QuantParams(faint_factor=1, faint_rot=0, faint_pos=2)  # "faint" is the same test, whatever F is
    q = to_qmap(g, p)
    faint = q.op < p.faint_below
    assert faint.any()
    m = g.means.astype(np.float64)
    want = np.where(faint[:, None], 2 * np.rint(m / (2 * p.pos_step)), np.rint(m / p.pos_step))
    assert np.array_equal(q.pos, want.astype(np.int64))


@pytest.mark.parametrize("quality", [0, 2, 3])
def test_faint_scale_and_colour_codes_follow_the_documented_formula(quality):
    g = _random_map(500, seed=quality + 20)
    p = QuantParams.from_quality(quality)
    q = to_qmap(g, p)
    faint = q.op < p.faint_below
    assert faint.any() and (~faint).any()
    f = np.where(faint, p.faint_factor, 1)[:, None]
    # v = F · rint(clip(x) / (F · step)) (docs §Faint Gaussians)
    dc = g.sh[:, 0].astype(np.float64)
    assert np.array_equal(q.dc, (f * np.rint(np.clip(dc, -64, 64) / (f * p.dc_step))).astype(np.int32))
    sc = f * np.rint(g.log_scales.astype(np.float64) / (f * p.scale_step))
    # the least-turned frame may permute a Gaussian's axes: the same codes, in some order
    assert np.array_equal(np.sort(q.scale, axis=1), np.sort(sc, axis=1).astype(np.int32))


# ------------------------------------------------------------------------------------------------
# SH palette step (QuantParams.for_shared_sh's docstring)


def _palette_map(n: int, k: int, deg: int = 1) -> GaussianMap:
    g = _random_map(n, seed=3)
    rng = np.random.default_rng(1)
    ns = (deg + 1) ** 2
    rows = rng.normal(size=(k, ns - 1, 3)).astype(np.float32) * 0.3
    sh = np.zeros((n, ns, 3), np.float32)
    sh[:, 0] = g.sh[:, 0]
    sh[:, 1:] = rows[np.arange(n) % k]
    return _with_sh(g, sh, deg)


def _with_sh(g: GaussianMap, sh: np.ndarray, degree: int) -> GaussianMap:
    """``g`` with another SH (of ``degree``), everything else shared."""
    return GaussianMap(
        sh_degree=degree,
        tile_size=2.0,
        ids=g.ids,
        means=g.means,
        quats=g.quats,
        log_scales=g.log_scales,
        opacity_logits=g.opacity_logits,
        sh=sh,
        levels=g.levels,
    )


@pytest.mark.parametrize(("k", "factor"), [(64, 1 / 32), (256, 1 / 32), (512, 1 / 16), (1024, 1 / 8)])
def test_shared_sh_step_is_k_over_n_at_most_sixteen_times_finer_then_halved(k, factor):
    n = 4096
    p = QuantParams.from_quality(2)
    got = p.for_shared_sh(_palette_map(n, k)).rest_step
    # K/n rounded to a power of two, not below 1/16, then halved
    assert got == pytest.approx(p.rest_step * factor)


def test_shared_sh_leaves_a_map_without_higher_sh_alone():
    g = _random_map(5000, seed=2)
    g0 = _with_sh(g, np.ascontiguousarray(g.sh[:, :1]), 0)
    p = QuantParams.from_quality(2)
    assert p.for_shared_sh(g0) == p


# ------------------------------------------------------------------------------------------------
# header field ranges (docs/format.md §3 header table)


@pytest.mark.parametrize(
    "kw",
    [
        dict(tile_bits=21),
        dict(tile_bits=0),
        dict(rot_bits=2, rot_tiers=(), faint_rot=0),
        dict(rot_bits=17, rot_tiers=(), faint_rot=0),
        dict(rot_tiers=(13, 13)),
        dict(rot_tiers=(26, 13)),
    ],
)
def test_parameters_outside_the_header_ranges_are_refused(kw):
    from gs_map_share.errors import EncodeError

    with pytest.raises(EncodeError):
        QuantParams(**kw)


# ------------------------------------------------------------------------------------------------
# decoding (docs/format.md §2): positions and rotations from the integers, on both paths


def test_decoded_positions_are_float32_of_the_float64_product():
    g = _random_map(200, seed=5)
    g.means[:] += np.float32(1000.0)  # large coordinates: float32 arithmetic would differ
    p = QuantParams(pos_step=0.0003)
    q = to_qmap(g, p)
    d = quantize(g, p)
    want = (q.pos.astype(np.float64) * 0.0003).astype(np.float32)
    assert np.array_equal(d.means, want)


def _docs_rotation(idx, c, b):
    """The decoding rule of docs/format.md §2 (Rotation), in float64."""
    m = np.maximum((1 << (b - 1)) - 1, 1)
    s = (1 / math.sqrt(2.0)) / m
    a = c.astype(np.float64) * s[:, None]
    ss = a[:, 0] * a[:, 0] + a[:, 1] * a[:, 1] + a[:, 2] * a[:, 2]
    big = np.maximum(np.sqrt(np.maximum(0.0, 1 - ss)), np.abs(a).max(axis=1) + s / 4)
    out = np.empty((len(c), 4))
    for r in range(len(c)):
        rest = list(a[r])
        rest.insert(int(idx[r]), big[r])
        out[r] = rest
    n = np.sqrt(out[:, 0] * out[:, 0] + out[:, 1] * out[:, 1] + out[:, 2] * out[:, 2] + out[:, 3] * out[:, 3])
    return (out / n[:, None]).astype(np.float32)


@pytest.mark.parametrize("compiled", [True, False])
def test_rotations_decode_by_the_documented_rule_near_ties_included(monkeypatch, compiled):
    from gs_map_share.quantize import dequantize_rotations

    _use_compiled(compiled, monkeypatch)
    p = QuantParams(rot_tiers=(), faint_rot=0)
    m = p.rot_max
    # near-ties: a kept component at the lattice's edge (the rebuilt one is then not larger)
    c = np.array([[m, 0, 0], [m, m, 0], [m, m, m], [3, -5, 7], [0, 0, 0], [-m, 2, -1]], np.int32)
    idx = np.array([0, 1, 2, 3, 3, 1], np.uint8)
    b = np.full(len(c), p.rot_bits)
    got = dequantize_rotations(idx, c, p)
    assert np.array_equal(got, _docs_rotation(idx, c, b))


@pytest.mark.parametrize("compiled", [True, False])
def test_rotation_lattice_check_looks_at_all_three_components(monkeypatch, compiled):
    from gs_map_share.quantize import rotations_within

    _use_compiled(compiled, monkeypatch)
    p = QuantParams(rot_tiers=(), faint_rot=0)
    m = p.rot_max
    for j in range(3):
        rot = np.zeros((2, 3), np.int32)
        rot[1, j] = m
        assert rotations_within(rot, None, p)
        rot[1, j] = -(m + 1)
        assert not rotations_within(rot, None, p), j
        bits = np.array([4, 4], np.int32)  # M = 7 at 4 bits
        rot[1, j] = 8
        assert not rotations_within(rot, bits, p), j
        rot[1, j] = 7
        assert rotations_within(rot, bits, p)


# ------------------------------------------------------------------------------------------------
# clamps and shapes that must survive a round trip


def test_spheroids_keep_their_rotation():
    # two equal scales and a third: not a sphere, its axis must survive (only full spheres get
    # the identity rotation)
    g = _random_map(200, seed=12)
    g.log_scales[:] = np.array([-3.0, -3.0, -1.0], np.float32)
    d = quantize(g, QuantParams.from_quality(3))
    rel = np.abs(_cov(d) - _cov(g)).max(axis=(1, 2)) / np.abs(_cov(g)).max(axis=(1, 2))
    assert rel.max() < 0.05


def test_values_inside_the_documented_clamps_round_trip():
    g = _random_map(10, seed=13)
    p = QuantParams()
    g.opacity_logits[:3] = [18.0, -19.5, 19.9]  # within ±20
    g.log_scales[3] = [11.0, 10.0, -29.0]  # within −30..12
    g.sh[4, 1] = [40.0, -50.0, 63.0]  # higher SH within ±64
    g.sh[5, 0] = [60.0, -60.0, 1.0]
    d = quantize(g, p)
    assert np.abs(d.opacity_logits - g.opacity_logits).max() <= p.opacity_step / 2 + 1e-5
    assert np.abs(np.sort(d.log_scales[3]) - np.sort(g.log_scales[3])).max() <= p.scale_step / 2 + 1e-5
    assert np.abs(d.sh[4, 1] - g.sh[4, 1]).max() <= p.rest_step / 2 + 1e-5
    assert np.abs(d.sh[5, 0] - g.sh[5, 0]).max() <= p.dc_step / 2 + 1e-5


def test_decoder_refuses_a_rotation_component_beyond_its_lattice():
    from gs_map_share.errors import DecodeError
    from gs_map_share.snapshot import decode_snapshot, encode_snapshot

    # docs §2: |c_j| ≤ M = 2^(b−1) − 1; a stream naming M + 1 (encoded from a hand-made QMap, the
    # sender's own checksum included) must be refused, not decoded to a turned Gaussian
    p = QuantParams(rot_tiers=(), faint_rot=0, faint_factor=1)
    q = to_qmap(_random_map(200, seed=1), p)
    q.rot[5, 1] = p.rot_max + 1
    data, _ = encode_snapshot(q, p, n_levels=1)
    with pytest.raises(DecodeError, match="rotation"):
        decode_snapshot(data)
    q.rot[5, 1] = p.rot_max  # at the edge: decoded as sent
    data, _ = encode_snapshot(q, p, n_levels=1)
    assert decode_snapshot(data)[1].equals(q)


def test_max_level_is_bounded_below_two_to_the_31():
    from gs_map_share.errors import DecodeError
    from gs_map_share.snapshot import decode_snapshot, encode_snapshot

    p = QuantParams()
    q = to_qmap(_random_map(50, seed=3), p)
    data, _ = encode_snapshot(q, p, n_levels=1)
    # docs: max level 0 … 2**31 − 1; one past it is refused with one line, not decoded
    decode_snapshot(data, max_level=2**31 - 1)
    with pytest.raises(DecodeError, match="max level"):
        decode_snapshot(data, max_level=2**31)
    with pytest.raises(DecodeError, match="max level"):
        decode_snapshot(data, max_level=-1)


def test_region_page_that_fits_max_bytes_exactly_is_sent():
    from gs_map_share.region import RegionRequest, answer

    p = QuantParams()
    g = _random_map(300, seed=7)
    g.means[:] = np.abs(g.means) / 4  # one codec tile (2.048 m at 1 mm)
    q = to_qmap(g, p)
    tiles = {tuple(int(v) for v in t): 1 for t in np.unique(q.pos >> p.tile_bits, axis=0)}
    assert len(tiles) == 1
    kw = dict(map_id=1, seq=1, tile_seq=tiles)
    full = answer(RegionRequest(0.5, 0.5), q, p, **kw)
    size = len(full.container)
    assert full.status == "ok" and size > 1024
    # "at most max_bytes": a page of exactly that many bytes is the answer, not an error
    exact = answer(RegionRequest(0.5, 0.5, max_bytes=size), q, p, **kw)
    assert exact.status == "ok" and exact.container == full.container
    short = answer(RegionRequest(0.5, 0.5, max_bytes=size - 1), q, p, **kw)
    assert short.status == "error"


def test_layers_out_of_level_order_are_refused():
    from gs_map_share.container import Chunk, pack, unpack
    from gs_map_share.errors import DecodeError
    from gs_map_share.snapshot import decode_snapshot, encode_snapshot

    # docs §5: a layered snapshot's sections are whole levels, coarsest first; two layers swapped
    # (the same Gaussians, so the same checksum) must be refused, not served as a coarse prefix
    p = QuantParams()
    g = _random_map(400, seed=11)
    g.levels[:] = np.arange(400) % 4 // 3  # levels 0 and 1 (3:1), so at least two layers
    q = to_qmap(g, p)
    data, _ = encode_snapshot(q, p)
    h, chunks = unpack(data)
    lv = [c.level for c in chunks]
    assert lv[:4] == [0, 0, 1, 1] and h.n_levels >= 2
    assert decode_snapshot(data)[1].equals(q)
    first_fine = next(i for i in range(h.n_levels) if (q.level[_rows_of_layer(q, i, h.n_levels)] == 1).all())
    swapped = list(chunks)
    a, b = 0, first_fine
    swapped[2 * a : 2 * a + 2], swapped[2 * b : 2 * b + 2] = (
        [Chunk(c.type, a, bytes(c.data)) for c in chunks[2 * b : 2 * b + 2]],
        [Chunk(c.type, b, bytes(c.data)) for c in chunks[2 * a : 2 * a + 2]],
    )
    with pytest.raises(DecodeError, match="level below"):
        decode_snapshot(pack(h, swapped))


def _rows_of_layer(q, i, n_layers):
    from gs_map_share.snapshot import _layers

    return _layers(q)[i]


# ------------------------------------------------------------------------------------------------
# entropy streams (docs/format.md §3 stream layout), hand-built


@pytest.mark.parametrize("n", [0, 65])
def test_plain_stream_outside_one_to_sixty_four_values_is_refused(n):
    from gs_map_share.bitio import Reader
    from gs_map_share.entropy import decode_stream
    from gs_map_share.errors import DecodeError

    # mode 7 (1 ≤ n ≤ 64): n × varint values
    data = bytes([7]) + bytes(max(n, 1))
    with pytest.raises(DecodeError, match="plain stream"):
        decode_stream(Reader(data), n)
    assert decode_stream(Reader(bytes([7, 4, 3])), 2).tolist() == [2, -2]  # zig-zag: 4 → 2, 3 → −2


def test_coded_stream_with_a_one_symbol_alphabet_is_refused():
    from gs_map_share.bitio import Reader
    from gs_map_share.entropy import decode_stream
    from gs_map_share.errors import DecodeError

    # mode 2, t = 2**0, C = 1, A = 1 (docs: "0 = no value in this context; else ≥ 2")
    with pytest.raises(DecodeError, match="alphabet"):
        decode_stream(Reader(bytes([2, 0, 1, 1]) + bytes(16)), 3)
