"""Guards for behaviours a mutation-testing pass (sixty-second round) over the modules earlier rounds
drew from least (``mapping/lidar_visibility.py``, ``mapping/deskew.py``, ``gs_map_share/kernels.py``,
``render/cpu.py``, ``render/api.py``, ``runtime/dds_discovery.py``, ``gsmap_hd/metrics/ap.py``) found
unguarded. Each test compares the real component with something outside it (a hand computation, the
reference toolkit's own code), so that breaking the line it guards makes it fail."""

from __future__ import annotations

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------------
# gs_map_share/kernels.py rotation_bits: a one-Gaussian map's faint rotation


def test_one_faint_gaussian_gets_its_faint_rotation_bits_compiled_too():
    """A map (or a fleet delta) of one faint Gaussian: the compiled rotation_bits takes ``faint_rot``
    off it as it does for many (``len(op) > 0``, not ``> 1``). By hand: codes (0, 0, 0) spread 0
    reach none of the 4 tiers, so 9 − 4 = 5 bits, and opacity code −20 < −14 takes 1 more: 4."""
    from gs_map_share import jit
    from gs_map_share.quantize import QuantParams, rotation_bits

    if jit.kernels() is None:
        pytest.skip("numba is not installed (or GS_MAP_SHARE_NUMBA=0): only the numpy path exists")
    p = QuantParams(rot_bits=9, rot_tiers=(13, 26, 48, 80), faint_rot=1, faint_below=-14)
    for n, want in ((1, [4]), (2, [4, 5])):
        sc = np.zeros((n, 3), np.int32)
        op = np.array([-20, 0][:n], np.int32)
        assert rotation_bits(sc, p, op).tolist() == want


# ------------------------------------------------------------------------------------------------
# mapping/lidar_visibility.py: a cloud of exactly 2000 returns in view (the spacing's sample size)


def test_a_scan_of_exactly_2000_returns_in_view_is_tested_and_keeps_every_return():
    """The typical spacing is measured on at most 2000 returns (``len(d) > 2000`` picks a slab; at
    exactly 2000 all are used: ``argpartition(…, 2000)`` of 2000 would raise). A 20-ring x
    100-column scan of a wall 10 m ahead, from a LiDAR at the camera's own origin: by hand, every
    return is the camera's first hit on its ray too, so none is hidden."""
    from gs_mapping.mapping.lidar_visibility import hidden_returns

    w, h, f = 1280, 720, 1000.0
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
    el, az = np.meshgrid(np.radians(np.arange(-5.0, 5.0, 0.5)), np.radians(np.arange(-10.0, 10.0, 0.2)))
    d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
    assert len(d) == 2000
    p = d * (10.0 / d[:, :1])  # on the wall x = 10 (LiDAR frame: x forward, y left, z up)
    T = np.eye(4)
    T[:3, :3] = [[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]  # into the optical frame
    q = p @ T[:3, :3].T
    uv = q[:, :2] / q[:, 2:] * f + [(w - 1) / 2, (h - 1) / 2]
    assert ((uv >= 0) & (uv < [w - 1, h - 1])).all()  # every return lands in the image
    hidden = hidden_returns(p, T, K, (w, h))
    assert hidden.shape == (2000,) and not hidden.any()


# ------------------------------------------------------------------------------------------------
# render/api.py rasterize: numpy arrays in (a map as read from a file), as for every other input


def test_rasterize_takes_numpy_arrays_as_it_takes_tensors():
    """``rasterize`` turns each argument into a tensor (``torch.as_tensor``), the means too: a
    scene given as float32 numpy arrays renders as the same scene in tensors does through the dense
    reference renderer (a separate implementation), within float32 rounding."""
    torch = pytest.importorskip("torch")
    from gs_mapping.render import rasterize

    rng = np.random.default_rng(62)
    n = 40
    means = (rng.normal(size=(n, 3)) * [0.6, 0.4, 0.3] + [0, 0, 3.0]).astype(np.float32)
    quats = rng.normal(size=(n, 4)).astype(np.float32)
    scales = np.exp(rng.normal(size=(n, 3)) * 0.4 - 2.5).astype(np.float32)
    opac = rng.uniform(0.2, 0.95, n).astype(np.float32)
    sh = rng.normal(size=(n, 1, 3)).astype(np.float32) * 0.5
    view = np.eye(4, dtype=np.float32)
    K = np.array([[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]], np.float32)
    got = rasterize(means, quats, scales, opac, sh, view, K, 32, 24, backend="cpu")
    ref = rasterize(
        *(torch.from_numpy(a) for a in (means, quats, scales, opac, sh, view, K)), 32, 24, backend="reference"
    )
    assert got.color.dtype == torch.float32 and got.color.shape == (24, 32, 3)
    assert float(ref.alpha.max()) > 0.5  # the scene is in view
    for name in ("color", "depth", "alpha"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------
# gs_map_share/kernels.py read_table_entries: a bit length below 0 (tables.py's format)


def _bits_to_bytes(bits: list[int]) -> bytes:
    """LSB-first, as the table blob is written."""
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        out[i // 8] |= b << (i % 8)
    return bytes(out)


@pytest.mark.parametrize("compiled", [True, False])
def test_a_table_whose_bit_length_drops_below_0_is_refused_by_both_paths(compiled, monkeypatch):
    """tables.py's format: each entry's exp-Golomb code gives the change of the frequency's bit
    length, which must stay within 0..17 (test_share_tables refuses 18). A hand-written first entry
    dz = −1 (z = zigzag(−1) = 1, z + 1 = 0b10: one zero, a one, then the bit below it, 0) takes it
    to −1: "frequency bit length -1 outside 0..17", compiled (``e < 0 or …``) or not."""
    from gs_map_share import jit
    from gs_map_share.bitio import Reader, Writer
    from gs_map_share.errors import DecodeError
    from gs_map_share.tables import get_table

    kernels = jit.kernels()
    if compiled and kernels is None:
        pytest.skip("numba is not installed (or GS_MAP_SHARE_NUMBA=0): only the plain path exists")
    monkeypatch.setattr(jit, "_kernels", kernels if compiled else False)
    w = Writer()
    w.u8(1)  # precision 1: no kept bits after an entry's code
    w.blob(_bits_to_bytes([0, 1, 0]))
    with pytest.raises(DecodeError, match="frequency bit length -1 outside 0..17"):
        get_table(Reader(w.getvalue(), "test"), 3)
