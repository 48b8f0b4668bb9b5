"""antimatter15's ``.splat``: the headerless 32-byte-per-Gaussian layout of the first WebGL splat
viewer, still what many web viewers load and what PlayCanvas splat-transform reads.

One little-endian record per Gaussian::

    float32 × 3   position
    float32 × 3   scale (linear: exp of the log-scale)
    uint8 × 4     colour R, G, B = (0.5 + SH_C0 · dc) · 255, A = sigmoid(opacity) · 255
    uint8 × 4     rotation (w, x, y, z) of the unit quaternion, each q · 128 + 128

No SH beyond the DC term, no ids (they are implicit on reading). Decoding follows the writer
(antimatter15's ``convert.py``): component = (byte − 128) / 128, renormalised. splat-transform
reads rotations as byte / 255 · 2 − 1 instead, half a step apart, which its renormalisation
mostly absorbs (under 1° on the test scene). Non-finite values follow the suite's rule
(:func:`gs_mapping.gaussians.clamp_nonfinite`): alpha 0 or 255 are ±inf logits, clamped; a zero
scale is a −inf log-scale, clamped; a zero rotation (bytes 128) is no rotation
(``ply.unit_rotations``); a negative scale is refused, and so is a file whose every scale is 0 (a
file of zeros reads as such: no writer makes a scene of points of no size). A file of another format named .splat is told by its magic (``cli.scene_io``).

Writing orders the Gaussians as ``convert.py`` does (largest ``volume × opacity`` first, so a
viewer that streams the file draws the big ones first) and rounds to the nearest byte. A linear
scale beyond float32 (log-scale above ~88.7) is written as the largest float32, not +inf.
"""

from __future__ import annotations

import numpy as np

from ..errors import MapError
from ..gaussians import SH_C0, GaussianMap, clamp_nonfinite
from ..ply import unit_rotations

RECORD = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
MAX_POINTS = 1 << 28
_LOG_F32_MAX = np.log(np.float64(np.finfo(np.float32).max))  # exp() of it rounds to float32 max


def read_splat(data: bytes, source: str = "splat") -> GaussianMap:
    """A ``.splat`` file's bytes → GaussianMap (implicit ids, SH degree 0)."""
    whole, over = divmod(len(data), RECORD.itemsize)
    if not data:
        raise MapError(f"{source}: an empty file (a .splat holds {RECORD.itemsize}-byte records)")
    if over:  # (a download stopped early, most likely: a cut at a record's end cannot be told)
        raise MapError(
            f"{source}: {len(data)} bytes is not a whole number of {RECORD.itemsize}-byte .splat "
            f"records ({whole} and {over} bytes): cut short mid-record, or not a .splat file"
        )
    rec = np.frombuffer(data, RECORD)
    if len(rec) > MAX_POINTS:
        raise MapError(f"{source}: {len(rec)} Gaussians, more than the {MAX_POINTS} we read")
    with np.errstate(invalid="ignore"):  # NaN bit patterns (signalling ones warn on the cast)
        scale = rec["scale"].astype(np.float64)
    if (scale < 0).any():
        row = int(np.flatnonzero((scale < 0).any(axis=1))[0])
        raise MapError(f"{source}: scale of Gaussian {row} (row in file) is negative")
    if not scale.any():  # (a file of zeros, say: no writer makes a scene of points of no size)
        raise MapError(f"{source}: not .splat records: every Gaussian's scale is 0 ({len(rec)} Gaussians)")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_scales = np.log(scale)  # 0 → −inf (clamped below), NaN stays NaN (refused below)
        alpha = rec["rgba"][:, 3].astype(np.float64) / 255.0
        logits = np.log(alpha) - np.log1p(-alpha)  # 0 → −inf, 255 → +inf: clamped
    dc = (rec["rgba"][:, :3].astype(np.float64) / 255.0 - 0.5) / SH_C0
    wxyz = (rec["rot"].astype(np.float64) - 128.0) / 128.0
    means, xyzw, log_scales, logits, sh = clamp_nonfinite(
        rec["pos"], wxyz[:, [1, 2, 3, 0]], log_scales, logits, dc[:, None, :], source
    )
    return GaussianMap(
        sh_degree=0,
        means=means,
        quats=unit_rotations(xyzw, source),
        log_scales=log_scales,
        opacity_logits=logits,
        sh=sh,
    )


def _byte(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def write_splat(gmap: GaussianMap) -> bytes:
    """``gmap`` as ``.splat`` bytes (DC colour only: higher SH are dropped, as the format has none)."""
    n = len(gmap)
    if n == 0:
        raise MapError(".splat cannot hold an empty scene (a file of no records is not read back)")
    ls = gmap.log_scales.astype(np.float64)
    log_alpha = -np.logaddexp(0.0, -gmap.opacity_logits.astype(np.float64))  # log sigmoid, no overflow
    alpha = np.exp(log_alpha)
    # volume × opacity compared in log space: exp of a large log-scale sum would overflow
    order = np.argsort(-(ls.sum(axis=1) + log_alpha), kind="stable")
    q = gmap.quats.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    rec = np.zeros(n, RECORD)
    rec["pos"] = gmap.means
    # a log-scale above ln(float32 max) ≈ 88.7 (finite, but no float32 scale) becomes the largest
    # float32 instead of +inf, which no reader (ours included) accepts
    rec["scale"] = np.exp(np.minimum(ls, _LOG_F32_MAX))
    rec["rgba"][:, :3] = _byte((0.5 + SH_C0 * gmap.sh[:, 0, :].astype(np.float64)) * 255.0)
    rec["rgba"][:, 3] = _byte(alpha * 255.0)
    rec["rot"] = _byte(q[:, [3, 0, 1, 2]] * 128.0 + 128.0)
    return rec[order].tobytes()
