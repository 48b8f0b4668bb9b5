"""Each Gaussian coded in its least-turned frame (quantize.canonical_axes): the same ellipsoid, a
rotation near the identity (fewer bits), and a decoded map that re-encodes to itself."""

from __future__ import annotations

import numpy as np
import pytest
from test_share_codec import _covariance_error, random_map

from gs_map_share.quantize import QuantParams, dequantize, rotation_bits, to_qmap
from gs_map_share.snapshot import decode_map, decode_snapshot, encode_map
from gs_mapping.geometry import quat_multiply


def _octahedral_turns(q: np.ndarray) -> np.ndarray:
    """|w| of q ⊗ p for each of the 24 rotations p that permute and flip the axes, computed here
    from scratch (every (x, y, z, w) with entries in {0, ±1} and 1, 2 or 4 of them nonzero)."""
    grid = np.stack(np.meshgrid(*[[-1.0, 0.0, 1.0]] * 4, indexing="ij"), -1).reshape(-1, 4)
    nz = np.count_nonzero(grid, axis=1)
    group = grid[np.isin(nz, (1, 2, 4))] / np.sqrt(nz[np.isin(nz, (1, 2, 4))])[:, None]
    assert len(group) == 48  # 24 rotations, each as ±q
    return np.abs(quat_multiply(q[:, None, :], group[None])[..., 3])


def _scene_like(n: int, seed: int):
    """Random rotations, anisotropic scales on the faint and the plain lattice of quality 3."""
    g = random_map(np.random.default_rng(seed), n, deg=0)
    p = QuantParams.from_quality(3)
    rng = np.random.default_rng(seed + 1)
    step = p.faint_factor * p.scale_step
    g.log_scales[:] = np.rint(rng.normal(-4.0, 0.8, (n, 3)) / step) * step
    return g, p


@pytest.mark.parametrize("quality", [0, 2, 5])
def test_the_same_ellipsoid_in_the_frame_that_turns_least(quality):
    g, _ = _scene_like(4000, quality)
    p = QuantParams.from_quality(quality)
    q = to_qmap(g, p)
    qg = dequantize(q, p)
    own = dequantize(to_qmap(g, p, least_turned=False), p)
    # covariance error no larger than in each Gaussian's own frame (the rotation lattice's alone)
    err = _covariance_error(g.quats, qg.quats, g.log_scales, qg.log_scales)
    assert err <= _covariance_error(g.quats, own.quats, g.log_scales, own.log_scales) * 1.5 + 1e-6
    assert np.array_equal(np.sort(qg.log_scales, 1), np.sort(own.log_scales, 1))
    # no other frame of the decoded rotation turns less by more than one step of its lattice
    bits = rotation_bits(q.scale, p, q.op)
    step = np.sqrt(0.5) / (2.0 ** (bits - 1) - 1)
    turns = _octahedral_turns(qg.quats.astype(np.float64))
    here = np.abs(qg.quats[:, 3].astype(np.float64))
    assert (turns.max(1) <= here + step + 1e-9).all()
    # so every rotation is within the group's covering angle of the identity (some frame has
    # |w| ≥ (2 + √2)/4, i.e. turns ≤ 62.8°), up to that step
    assert (here >= (2 + np.sqrt(2)) / 4 - step - 1e-9).all()
    # and a random rotation (not turned) is often far from it
    assert np.degrees(2 * np.arccos(np.abs(own.quats[:, 3]))).max() > 100.0


def test_fewer_rotation_bytes_and_exact_round_trip(monkeypatch):
    g, p = _scene_like(20000, 7)
    turned, own = {}, {}
    data, _ = encode_map(g, p, n_levels=1, stats=turned)
    # the same map through the same coder with every Gaussian kept in its own frame
    import gs_map_share.snapshot as snapshot

    plain = snapshot.to_qmap
    monkeypatch.setattr(snapshot, "to_qmap", lambda gm, pp: plain(gm, pp, least_turned=False))
    encode_map(g, p, n_levels=1, stats=own)
    saved_bits = 8 * (own["rot"] - turned["rot"]) / len(g)
    assert saved_bits > 1.5, saved_bits  # a sixth of the volume: ~2.6 bits for uniform rotations
    assert abs(own["scale"] - turned["scale"]) < 0.02 * own["scale"]  # scales cost the same
    monkeypatch.undo()
    assert decode_map(data).equals(dequantize(to_qmap(g, p), p))


@pytest.mark.parametrize("quality", [0, 1, 3, 5])
def test_a_decoded_map_re_encodes_to_itself(quality):
    g, _ = _scene_like(5000, 20 + quality)
    p = QuantParams.from_quality(quality)
    data, _ = encode_map(g, p, n_levels=4)
    _, q = decode_snapshot(data)
    assert q.equals(to_qmap(dequantize(q, p), p))
    again, _ = encode_map(decode_map(data), p, n_levels=4)
    assert decode_snapshot(again)[1].equals(q)


def test_the_frame_turns_compose_as_quaternions():
    """Two turns applied one after the other are the table's single turn (a row moved twice)."""
    from gs_map_share.quantize import _OCT_MUL, _OCT_Q

    a, b = np.meshgrid(np.arange(24), np.arange(24), indexing="ij")
    both = quat_multiply(_OCT_Q[a], _OCT_Q[b])
    one = _OCT_Q[_OCT_MUL[a, b]]
    assert np.allclose(np.abs(np.sum(both * one, -1)), 1.0)  # the same rotation (q or −q)
    assert len({tuple(np.round(q, 6)) for q in _OCT_Q}) == 24 and np.allclose(_OCT_Q[0], [0, 0, 0, 1])


@pytest.mark.parametrize("quality", [0, 1, 3, 5])
def test_compiled_frames_equal_the_numpy_path(quality, monkeypatch):
    """The compiled row-by-row choice (kernels.canonical_axes) gives numpy's codes and scales, bit
    for bit: on random rotations, on rotations with exact ties (small integers), on decoded
    (lattice) rotations, with one lattice and with per-row rotation bits."""
    from gs_map_share import jit
    from gs_map_share.quantize import canonical_axes, dequantize_rotations

    compiled = jit.kernels()
    if compiled is None:
        pytest.skip("numba is not installed (or GS_MAP_SHARE_NUMBA=0): only the numpy path exists")
    rng = np.random.default_rng(quality)
    p = QuantParams.from_quality(quality)
    ties = rng.integers(-3, 4, (20000, 4)).astype(np.float32)
    cases = [rng.normal(size=(30000, 4)).astype(np.float32), ties[np.abs(ties).sum(1) > 0]]
    idx0, rot0, _, _ = canonical_axes(cases[0], np.zeros((30000, 3), np.int32), p, None)
    cases.append(dequantize_rotations(idx0, rot0, p))
    # near-ties of w with another component, within a few lattice steps: rows that stay in their
    # own frame (the margin) and whose code must be made stable under decode and re-encode
    near = rng.normal(0, 0.02, (30000, 4))
    near[:, 3] = 1.0
    near[np.arange(30000), rng.integers(0, 3, 30000)] = 1.0 + rng.uniform(-3, 3, 30000) * p.rot_step
    cases.append(near.astype(np.float32))
    for quats in cases:
        sc = rng.integers(-60, 20, (len(quats), 3)).astype(np.int32)
        for bits in (None, rotation_bits(sc, p, rng.integers(-30, 30, len(quats)))):
            monkeypatch.setattr(jit, "_kernels", compiled)
            fast = canonical_axes(quats, sc, p, bits)
            monkeypatch.setattr(jit, "_kernels", False)
            plain = canonical_axes(quats, sc, p, bits)
            for a, b in zip(fast, plain, strict=True):
                assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("quality", [0, 2, 5])
def test_compiled_rotation_rebuild_equals_the_numpy_path(quality, monkeypatch):
    """The decoder's rotations from their codes (kernels.dequantize_rotations): numpy's float32s
    bit for bit, for every dropped component, with one lattice and per-row bits."""
    from gs_map_share import jit
    from gs_map_share.quantize import dequantize_rotations, rotation_max

    compiled = jit.kernels()
    if compiled is None:
        pytest.skip("numba is not installed (or GS_MAP_SHARE_NUMBA=0): only the numpy path exists")
    rng = np.random.default_rng(quality)
    p = QuantParams.from_quality(quality)
    n = 40000
    idx = rng.integers(0, 4, n).astype(np.uint8)
    bits = rotation_bits(rng.integers(-60, 20, (n, 3)).astype(np.int32), p, rng.integers(-30, 30, n))
    for b in (None, bits):
        m = p.rot_max if b is None else rotation_max(b)[:, None]
        rot = np.clip(rng.integers(-(1 << 12), 1 << 12, (n, 3)), -m, m).astype(np.int32)
        monkeypatch.setattr(jit, "_kernels", compiled)
        fast = dequantize_rotations(idx, rot, p, b)
        monkeypatch.setattr(jit, "_kernels", False)
        plain = dequantize_rotations(idx, rot, p, b)
        assert fast.dtype == plain.dtype == np.float32 and np.array_equal(fast, plain)
