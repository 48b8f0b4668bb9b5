"""The encoder's rotation refinement (quantize.refine_rotations): on a real trained scene the
decoded map renders nearer the source than with each component rounded alone, the codes stay
codes a decoder rebuilds as written, and the compiled path gives the plain path's codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gs_map_share import jit
from gs_map_share import quantize as qz
from gs_map_share.quantize import QuantParams, dequantize, dequantize_rotations, quantize_rotations, to_qmap
from gs_mapping.camera import Camera
from gs_mapping.gaussians import GaussianMap
from gs_mapping.render import render
from gs_mapping.splat_formats import load_splats


@pytest.fixture(scope="module")
def guitar(shared_data) -> GaussianMap:
    """A third of PlayCanvas' guitar (every third Gaussian: the whole object, thinned)."""
    g = load_splats(shared_data / "splats" / "guitar.ply")
    return g.subset(np.arange(0, len(g), 3))


def _views(g: GaussianMap, n: int = 3) -> list[Camera]:
    c = np.median(g.means, axis=0).astype(np.float64)
    r = 1.6 * float(np.percentile(np.linalg.norm(g.means - c, axis=1), 90))
    cams = []
    for i in range(n):
        a = 2 * np.pi * i / n
        eye = c + r * np.array([np.cos(a), 0.3, np.sin(a)])
        z = (c - eye) / np.linalg.norm(c - eye)
        x = np.cross(z, [0, -1.0, 0])
        x /= np.linalg.norm(x)
        T = np.eye(4)
        T[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
        T[:3, 3] = eye
        cams.append(Camera(np.array([[200.0, 0, 99.5], [0, 200.0, 74.5], [0, 0, 1]]), 200, 150, T))
    return cams


def _mse(a: GaussianMap, b: GaussianMap, cams) -> float:
    torch.set_num_threads(1)

    def image(g, cam):
        return np.clip(render(g, cam, backend="cpu").numpy()[0], 0, 1)  # the colour image

    return float(np.mean([np.mean((image(a, c) - image(b, c)) ** 2) for c in cams]))


def _shapes(g: GaussianMap, q: qz.QMap, p: QuantParams) -> GaussianMap:
    """The source with the decoded rotations and scales only (the error the refinement acts on)."""
    out, d = g.copy(), dequantize(q, p)
    assert np.array_equal(out.ids, d.ids)
    out.quats[:], out.log_scales[:] = d.quats, d.log_scales
    return out


def _quantised(g: GaussianMap, p: QuantParams, rounds: int, monkeypatch) -> qz.QMap:
    monkeypatch.setattr(qz, "REFINE_ROUNDS", rounds)
    return to_qmap(g, p)


@pytest.mark.parametrize("quality, gain_db", [(0, 0.07), (2, 0.3)])  # measured 0.14 and 0.56 dB
def test_refined_rotations_render_nearer_the_source(guitar, quality, gain_db, monkeypatch):
    """The render against the unquantised scene (not the refinement's own distance), with the
    decoded rotations and scales in it: refined rotations lower the error. Quality 0's coarse
    scale step (1/5) leaves them less to gain."""
    p = QuantParams.from_quality(quality).relative_to(guitar)
    plain = _quantised(guitar, p, 0, monkeypatch)
    refined = _quantised(guitar, p, 1, monkeypatch)
    moved = (plain.rot != refined.rot).any(axis=1)
    assert moved.mean() > 0.3  # most needles and discs have a nearer neighbour
    # only rotations moved, each by one lattice step of one component
    assert np.array_equal(plain.scale, refined.scale) and np.array_equal(plain.rot_idx, refined.rot_idx)
    assert np.abs(plain.rot.astype(int) - refined.rot).sum(axis=1).max() == 1
    cams = _views(guitar)
    before, after = (
        _mse(guitar, _shapes(guitar, plain, p), cams),
        _mse(guitar, _shapes(guitar, refined, p), cams),
    )
    assert 10 * np.log10(before / after) > gain_db, (before, after)


def test_refined_codes_are_rebuilt_as_written_and_re_encode_to_themselves(guitar):
    """Every refined code is a fixed point of decode and re-quantise (w stays the largest
    component), so a decoded map re-encodes to the same codes."""
    p = QuantParams.from_quality(2).relative_to(guitar)
    q = to_qmap(guitar, p)
    bits = qz.rotation_bits(q.scale, p, q.op)
    idx, rot = quantize_rotations(dequantize_rotations(q.rot_idx, q.rot, p, bits), p, bits)
    assert np.array_equal(idx, q.rot_idx) and np.array_equal(rot, q.rot)
    again = to_qmap(dequantize(q, p), p)
    assert again.equals(q)


@pytest.mark.parametrize("quality", [0, 3, 5])
def test_compiled_refinement_equals_the_plain_path(guitar, quality, monkeypatch):
    compiled = jit.kernels()
    if compiled is None:
        pytest.skip("numba is not installed (or GS_MAP_SHARE_NUMBA=0): only the numpy path exists")
    p = QuantParams.from_quality(quality).relative_to(guitar)
    fast = to_qmap(guitar, p)
    monkeypatch.setattr(jit, "_kernels", False)
    plain = to_qmap(guitar, p)
    assert fast.equals(plain)
    for rounds in (2, 3):  # more rounds: rows that move again, and rows that stop
        monkeypatch.setattr(qz, "REFINE_ROUNDS", rounds)
        monkeypatch.setattr(jit, "_kernels", False)
        plain = to_qmap(guitar, p)
        monkeypatch.setattr(jit, "_kernels", compiled)
        assert to_qmap(guitar, p).equals(plain)


def test_compiled_refinement_equals_the_plain_path_near_ties(monkeypatch):
    """Rotations within a few lattice steps of a tie between w and another component (where a
    neighbour's w may no longer be the largest, or its frame another): the same codes."""
    compiled = jit.kernels()
    if compiled is None:
        pytest.skip("numba is not installed (or GS_MAP_SHARE_NUMBA=0): only the numpy path exists")
    rng = np.random.default_rng(3)
    p = QuantParams.from_quality(1)
    n = 30000
    near = rng.normal(0, 0.02, (n, 4))
    near[:, 3] = 1.0
    near[np.arange(n), rng.integers(0, 3, n)] = 1.0 + rng.uniform(-3, 3, n) * p.rot_step
    near = near.astype(np.float32)
    sc = rng.integers(-60, 20, (n, 3)).astype(np.int32)
    bits = qz.rotation_bits(sc, p, rng.integers(-30, 30, n))
    _, rot, frame_sc, turns = qz.canonical_axes(near, sc, p, bits)
    out = []
    for k in (compiled, False):
        monkeypatch.setattr(jit, "_kernels", k)
        out.append(qz.refine_rotations(near, rot, frame_sc, turns, p, bits))
    assert (out[0] != rot).any(axis=1).mean() > 0.2
    assert np.array_equal(out[0], out[1])


def test_a_gaussians_codes_depend_on_it_alone(guitar):
    """A delta quantises only the Gaussians that changed: each one's codes must be those it gets
    in the whole map (the refinement's blur is its own size, not the batch's)."""
    p = QuantParams.from_quality(2).relative_to(guitar)
    rows = np.arange(0, len(guitar), 97)
    assert to_qmap(guitar, p).take(rows).equals(to_qmap(guitar.subset(rows), p))
