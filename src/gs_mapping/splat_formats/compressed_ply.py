"""PlayCanvas compressed PLY (SuperSplat, splat-transform): read.

Three elements: ``chunk`` (one row per 256 Gaussians: float bounds ``min_x..max_z``,
``min_scale_x..max_scale_z`` and optionally ``min_r..max_b``), ``vertex`` (four uint32 per
Gaussian: ``packed_position`` and ``packed_scale`` as 11-10-11 bit fractions between the chunk's
bounds, ``packed_rotation`` as smallest three — 2 bits index of the largest of (w, x, y, z), three
10-bit values mapped to ±sqrt(1/2) — and ``packed_color`` as 8-bit r, g, b (fractions of the chunk's
colour bounds, or colour itself without them) and alpha = opacity), and optionally ``sh``
(uint8 ``f_rest_*``, 0 → −4, 255 → +4, else (byte + 0.5) / 256 · 8 − 4). Formulas as PlayCanvas'
own reader (splat-transform's ``read-ply``); opacities of 0 and 255 follow the suite's ±inf rule.
"""

from __future__ import annotations

import numpy as np

from ..errors import MapError
from ..gaussians import SH_C0, GaussianMap, clamp_nonfinite
from ..ply import read_elements, read_file, unit_rotations

CHUNK = 256
_ROT_NORM = 1.0 / (np.sqrt(2.0) * 0.5)


def is_compressed_ply(elements: dict) -> bool:
    v = elements.get("vertex")
    return v is not None and "packed_position" in (v.dtype.names or ())


def _unorm(v: np.ndarray, shift: int, bits: int) -> np.ndarray:
    return ((v >> np.uint32(shift)) & np.uint32((1 << bits) - 1)).astype(np.float64) / ((1 << bits) - 1)


def _lerp(lo, hi, t):
    # exactly the bound at t = 0 or 1, an infinite one too (inf · 0 is NaN): a chunk's −inf
    # log-scale bound then reads as −inf and is clamped by the ±inf rule, as in a standard PLY
    return np.where(t == 0, lo, np.where(t == 1, hi, lo * (1 - t) + hi * t))


def load_compressed_ply(path) -> GaussianMap:
    elements, _ = read_elements(read_file(path), path)
    return from_elements(elements, str(path))


# Infinite chunk bounds give ±inf and NaN between them (refused or clamped by clamp_nonfinite, in
# one line): numpy's overflow and invalid-value warnings would be extra lines.
@np.errstate(over="ignore", invalid="ignore")
def from_elements(elements: dict, source: str) -> GaussianMap:
    if "chunk" not in elements or "vertex" not in elements:
        raise MapError(f"{source}: compressed PLY without 'chunk' and 'vertex' elements")
    chunk, vert = elements["chunk"], elements["vertex"]
    n = len(vert)
    need = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
    bounds = [f"{m}_{a}" for m in ("min", "max") for a in "xyz"]
    bounds += [f"{m}_scale_{a}" for m in ("min", "max") for a in "xyz"]
    for names, el, what in ((need, vert, "vertex"), (bounds, chunk, "chunk")):
        missing = [p for p in names if p not in (el.dtype.names or ())]
        if missing:
            raise MapError(f"{source}: compressed PLY {what} element lacks {missing[0]!r}")
    if len(chunk) < (n + CHUNK - 1) // CHUNK:
        raise MapError(f"{source}: {len(chunk)} chunk rows for {n} Gaussians (need one per {CHUNK})")
    ci = np.arange(n) // CHUNK
    c = {name: chunk[name].astype(np.float64)[ci] for name in chunk.dtype.names}
    # a tool that wrote floats here: garbage in, no exception
    pp, pr, ps, pc = (np.nan_to_num(vert[p]).astype(np.uint32) for p in need)
    means = np.stack(
        [
            _lerp(c["min_x"], c["max_x"], _unorm(pp, 21, 11)),
            _lerp(c["min_y"], c["max_y"], _unorm(pp, 11, 10)),
            _lerp(c["min_z"], c["max_z"], _unorm(pp, 0, 11)),
        ],
        axis=1,
    )
    scales = np.stack(
        [
            _lerp(c["min_scale_x"], c["max_scale_x"], _unorm(ps, 21, 11)),
            _lerp(c["min_scale_y"], c["max_scale_y"], _unorm(ps, 11, 10)),
            _lerp(c["min_scale_z"], c["max_scale_z"], _unorm(ps, 0, 11)),
        ],
        axis=1,
    )
    abc = np.stack([(_unorm(pr, s, 10) - 0.5) * _ROT_NORM for s in (20, 10, 0)], axis=1)
    m = np.sqrt(np.maximum(0.0, 1.0 - (abc**2).sum(axis=1)))
    largest = (pr >> np.uint32(30)).astype(np.int64)
    wxyz = np.empty((n, 4))
    rows = np.arange(n)
    for slot in range(4):  # the three stored values fill the other slots in order
        others = np.where(slot < largest, slot, slot - 1)
        wxyz[:, slot] = np.where(largest == slot, m, abc[rows, np.clip(others, 0, 2)])
    rgb = np.stack([_unorm(pc, s, 8) for s in (24, 16, 8)], axis=1)
    if all(f"{m}_{a}" in c for m in ("min", "max") for a in "rgb"):
        lo = np.stack([c[f"min_{a}"] for a in "rgb"], axis=1)
        hi = np.stack([c[f"max_{a}"] for a in "rgb"], axis=1)
        rgb = _lerp(lo, hi, rgb)
    alpha = _unorm(pc, 0, 8)
    with np.errstate(divide="ignore"):
        opacity = -np.log(1.0 / alpha - 1.0)
    k = 1
    rest = None
    if "sh" in elements:
        sh_el = elements["sh"]
        n_rest = len(sh_el.dtype.names or ())
        if n_rest not in (9, 24, 45) or len(sh_el) != n:
            raise MapError(f"{source}: compressed PLY sh element has {n_rest} properties × {len(sh_el)} rows")
        absent = [f"f_rest_{i}" for i in range(n_rest) if f"f_rest_{i}" not in sh_el.dtype.names]
        if absent:
            raise MapError(f"{source}: compressed PLY sh element lacks {absent[0]!r}")
        k = n_rest // 3 + 1
        b = np.stack([sh_el[f"f_rest_{i}"].astype(np.float64) for i in range(n_rest)], axis=1)
        nrm = np.where(b == 0, 0.0, np.where(b == 255, 1.0, (b + 0.5) / 256.0))
        rest = ((nrm - 0.5) * 8.0).reshape(n, 3, k - 1).transpose(0, 2, 1)
    sh = np.zeros((n, k, 3), np.float32)
    sh[:, 0] = (rgb - 0.5) / SH_C0
    if rest is not None:
        sh[:, 1:] = rest
    means, xyzw, scales, opacity, sh = clamp_nonfinite(
        means, wxyz[:, [1, 2, 3, 0]], scales, opacity, sh, source
    )
    return GaussianMap(
        sh_degree=int(round(k**0.5)) - 1,
        means=means,
        quats=unit_rotations(xyzw, source),
        log_scales=scales,
        opacity_logits=opacity,
        sh=sh,
    )
