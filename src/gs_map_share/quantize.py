"""Quantisation: the part of the format that decides which map a receiver rebuilds.

A map is turned into integers (:class:`QMap`) on fixed lattices; :func:`dequantize` turns them back
into a :class:`~gs_mapping.gaussians.GaussianMap` with plain IEEE operations (multiply, add, sqrt,
divide — all exactly rounded, so identical on every platform). ``quantize(map, params)`` is exactly
the map a receiver holds after decoding, so "receiver equals sender" is ``GaussianMap.equals``.

Lattices
- position: global integer lattice ``P = rint(mean / pos_step)`` (int64, float64 arithmetic): no
  range limit short of ±2**52 steps (±4.5e9 km at 1 mm); decoded ``mean = float32(P * pos_step)``.
- opacity logit, log-scales, SH DC, higher SH: uniform steps (``v = rint(x / step)``), clamped.
- rotation: "smallest three": index of the largest |component| (made positive) plus the other three
  on a lattice of ``2**(b-1) - 1`` steps per 1/sqrt(2); decoded by ``sqrt(1 - Σc²)`` and a
  normalisation. ``b`` is per Gaussian (:func:`rotation_bits`): ``rot_bits`` minus one bit per
  anisotropy tier the Gaussian falls below — a near-sphere renders almost the same under any
  rotation, a needle needs its axis to the finest step. The encoder then moves every code to the
  equivalent quaternion whose dropped component is w (:func:`canonical_rotations`), so the index is
  always 3; before that it relabels the Gaussian's axes (scales permuted with them) into the frame
  that turns least from the world's (:func:`canonical_axes`), which makes the components small,
  and last moves a code to a lattice neighbour whose ellipsoid fits the source's better
  (:func:`refine_rotations`; a needle's spin about its own axis hardly shows).
- faint Gaussians (opacity code below ``faint_below``) keep their log-scales and DC colour on a
  lattice ``faint_factor`` times coarser: the integers stay in the normal steps (multiples of the
  factor, so dequantisation is the same everywhere) and the coder sends them divided by it. A faint
  Gaussian's colour and size move a pixel by at most its opacity, so the error costs little. Its
  rotation lattice has ``faint_rot`` bits fewer, and its position may be rounded to a multiple of
  ``faint_pos`` steps (both version 6).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np

from gs_mapping.gaussians import SH_C0, GaussianMap
from gs_mapping.geometry import quat_multiply, quat_to_matrix

from . import jit
from .bitio import crc32c
from .errors import EncodeError
from .palette import PALETTE_MIN_ROWS, palette_of

MAX_LATTICE = 1 << 52
_OPACITY_CLAMP = 20.0  # logits beyond ±20 are indistinguishable from 0/1 in float32
_SCALE_MIN, _SCALE_MAX = -30.0, 12.0
_SH_CLAMP = 64.0


@dataclass(frozen=True)
class QuantParams:
    """Lattice steps (part of every container header)."""

    pos_step: float = 0.001  # metres
    tile_bits: int = 11  # codec tile = 2**tile_bits position steps per axis (2.048 m at 1 mm)
    opacity_step: float = 1 / 16  # logit units
    scale_step: float = 1 / 32  # natural-log units (≈3 % per step)
    rot_bits: int = 9  # per smallest-three component, sign included (finest tier)
    dc_step: float = 1 / (128 * SH_C0)  # SH DC units: 1/128 of the colour range
    rest_step: float = 1 / 16  # higher SH coefficients (degree 1); degree l uses l × this
    # anisotropy tiers, ascending, in scale steps: a Gaussian whose quantised log-scale spread
    # (max − min) is below k of them gets rot_bits − k bits (see rotation_bits)
    rot_tiers: tuple[int, ...] = (13, 26, 48, 80)  # ROT_TIERS_LOG at scale_step 1/32
    # Gaussians with opacity code < faint_below: scales and DC on a faint_factor × coarser lattice
    faint_factor: int = 2
    faint_below: int = -14  # logit −0.875: opacity below 0.29 (FAINT_OPACITY at 1/16)
    # container version 6: faint Gaussians' rotations this many bits coarser (their anisotropy
    # tier's bits less this, at least 2), and their positions on a faint_pos × coarser lattice
    # (multiples of it in the normal steps: only the encoder's rounding changes)
    faint_rot: int = 1
    faint_pos: int = 1

    def __post_init__(self) -> None:
        for f, lo in (
            ("pos_step", 1e-9),
            ("opacity_step", 1e-6),
            ("scale_step", 1e-6),
            ("dc_step", 1e-6),
            ("rest_step", 1e-6),
        ):
            v = getattr(self, f)
            if not (np.isfinite(v) and lo <= v <= 1e6):
                raise EncodeError(f"quantisation step {f} must be in [{lo}, 1e6], got {v}")
        if not 1 <= self.tile_bits <= 20:
            raise EncodeError(f"tile_bits must be 1..20, got {self.tile_bits}")
        if not 3 <= self.rot_bits <= 16:
            raise EncodeError(f"rot_bits must be 3..16, got {self.rot_bits}")
        if not (isinstance(self.faint_rot, (int, np.integer)) and 0 <= self.faint_rot <= 3):
            raise EncodeError(f"faint_rot must be an integer 0..3, got {self.faint_rot!r}")
        t = self.rot_tiers
        if (
            not isinstance(t, tuple)
            or len(t) > MAX_ROT_TIERS
            or self.rot_bits - len(t) - self.faint_rot < 2
            or any(not isinstance(v, (int, np.integer)) or not 1 <= v <= 65535 for v in t)
            or any(a >= b for a, b in zip(t, t[1:], strict=False))
        ):
            raise EncodeError(
                f"rot_tiers must be at most {MAX_ROT_TIERS} ascending integers in 1..65535 "
                f"leaving rot_bits − len − faint_rot ≥ 2, got {t!r} with rot_bits {self.rot_bits} "
                f"and faint_rot {self.faint_rot}"
            )
        if not (isinstance(self.faint_factor, (int, np.integer)) and 1 <= self.faint_factor <= 8):
            raise EncodeError(f"faint_factor must be an integer 1..8, got {self.faint_factor!r}")
        if not (isinstance(self.faint_below, (int, np.integer)) and -32768 <= self.faint_below <= 32767):
            raise EncodeError(f"faint_below must be an integer -32768..32767, got {self.faint_below!r}")
        if not (isinstance(self.faint_pos, (int, np.integer)) and 1 <= self.faint_pos <= 8):
            raise EncodeError(f"faint_pos must be an integer 1..8, got {self.faint_pos!r}")

    @staticmethod
    def from_quality(quality: int = 2, pos_step: float | None = None) -> QuantParams:
        """Quality 0 (smallest) … 5 (finest). 2 is the CLI default (1 mm positions; its rendering
        distortion is far below a fitted map's error, see bench/results/codec.md); the dataclass
        defaults are quality 3. Quality 0 is for thin links: 7 mm positions and coarse attributes
        (sizes and held-out PSNR per quality on the mapper's kitchen map: bench/results/codec.md).
        Every preset spends rotation bits by anisotropy (ROT_TIERS_LOG; quality 0 2..6 bits) and
        keeps faint Gaussians on a coarser lattice (FAINT_OPACITY; quality 0 5× for scales and
        colour, whose step is finer instead). Quality 0 was chosen on two fits of the kitchen map
        (a sweep of ~600 presets; 2026-12-03): from 6 mm, 2/3, 2..5 bits, colour 1/12 and faint 3×,
        5.82 → 5.87 B/G and a held-out drop of 0.52 → 0.36 dB (the second fit: 5.87 → 5.93 B/G,
        0.44 → 0.30 dB); the fourth tier was the cheapest of it, 1.7 dB a B/G, by giving the extra
        bit to needles only. Drops move by ±0.03 dB between neighbouring steps and by ~0.1 dB
        between fits of the same bag. Retuned on three fits (2026-12-06), as the mapper's fit of
        that week dropped 0.58 dB under the old steps (5.5 mm, opacity 0.85, scale 1/5, colour
        1/15: 5.51 B/G; the other two fits 0.39 and 0.46 dB): finer scales (0.15) and colour
        (1/24), opacity 0.64, positions 7 mm: 5.80 B/G, drops 0.37 / 0.35 / 0.36 dB (about 30
        presets tried; single changes move a drop by ±0.05 dB between fits). A fourth fit, not used
        in the choice (31 iterations a keyframe, 25.52 dB held out): 5.87 B/G at −0.44 dB (the
        old steps: 5.56 at −0.56)."""
        table = {
            0: dict(
                pos_step=0.007,
                opacity_step=0.64,
                scale_step=0.15,
                rot_bits=6,
                dc_step=1 / (24 * SH_C0),
                rest_step=1 / 4,
                faint_factor=5,
            ),
            1: dict(
                pos_step=0.004,
                opacity_step=1 / 6,
                scale_step=1 / 10,
                rot_bits=7,
                dc_step=1 / (40 * SH_C0),
                rest_step=1 / 5,
            ),
            2: dict(
                pos_step=0.001,
                opacity_step=1 / 10,
                scale_step=1 / 16,
                rot_bits=8,
                dc_step=1 / (64 * SH_C0),
                rest_step=1 / 8,
            ),
            3: dict(
                pos_step=0.001,
                opacity_step=1 / 16,
                scale_step=1 / 32,
                rot_bits=9,
                dc_step=1 / (128 * SH_C0),
                rest_step=1 / 16,
            ),
            4: dict(
                pos_step=0.0005,
                opacity_step=1 / 32,
                scale_step=1 / 64,
                rot_bits=10,
                dc_step=1 / (256 * SH_C0),
                rest_step=1 / 32,
            ),
            5: dict(
                pos_step=0.00025,
                opacity_step=1 / 64,
                scale_step=1 / 128,
                rot_bits=12,
                dc_step=1 / (512 * SH_C0),
                rest_step=1 / 64,
            ),
        }
        if quality not in table:
            raise EncodeError(f"quality must be 0..5, got {quality}")
        entry: dict[str, Any] = table[quality]
        p = QuantParams(**entry, rot_tiers=(), faint_rot=0)  # tiers follow, in this preset's steps
        if pos_step is not None:
            p = replace(p, pos_step=float(pos_step))
        # keep the codec tile around 2 m whatever the position step
        bits = int(np.clip(np.round(np.log2(2.0 / p.pos_step)), 1, 20))
        p = replace(p, tile_bits=bits).with_rot_tiers(ROT_TIERS_LOG).with_faint(FAINT_OPACITY, p.faint_factor)
        return p.with_faint_rotations(FAINT_ROT)

    def relative_to(self, gmap: GaussianMap) -> QuantParams:
        """These parameters for a scene in arbitrary units: the position step scaled by the scene's
        median Gaussian size over ``REFERENCE_SIZE``, and the codec tile ``SCENE_TILE_BITS`` bits
        wider (16× per axis). Every other step is in log or colour units already, so it does not
        depend on the unit. Tiles are a map's unit of streaming and change; a scene is one object,
        and with tiles of the map presets' size its octree has no room above them for coarse
        levels of detail: playbot (500k) had 1,072 tiles at quality 1, its coarsest levels were
        forced to 95k/22k/4.5k/1k nodes and progressive cost 13.84 B/G against 12.25 single-level;
        with the wider tile 12.51 against 12.20 (guitar quality 2: 10.30 → 10.22, single 10.16 →
        10.15; two more bits gained nothing further).

        Rotations get one bit fewer (where the tiers leave room): on trained scenes a rotation bit
        buys the least render PSNR per byte of any step (bench/codec_real.py, single level,
        least-turned frames; at the anchors' PSNR: guitar 0.696 → 0.685× SPZ v4, 0.747 → 0.740×
        SOG; playbot 0.567 → 0.558× SPZ v4), then faint ones one more (``FAINT_ROT``).

        Faint Gaussians' positions go on a ``SCENE_FAINT_POS`` × coarser lattice: a faint
        Gaussian moves a pixel by at most its opacity, and a scene's octree codes the low bits
        they no longer have for less (guitar quality 2: −0.12 B/G for −0.09 dB). A map's
        id-ordered positions gain nothing from it (kitchen: −0.004 B/G), so its presets keep 1."""
        if not len(gmap):
            return self
        # the median from the scale codes these parameters give, not the floats: a decoded map has
        # the same codes, so re-encoding it derives the same step (and stays lossless)
        op, codes, _ = attribute_lattices(gmap.opacity_logits, gmap.log_scales, gmap.sh[:, 0, :], self)
        faint = faint_rows(op, self)
        cell = np.where(faint, self.faint_factor, 1) if faint is not None else np.ones(len(op), np.int64)
        # each row's largest axis, column by column (a row-wise max takes ~6× the time)
        largest = np.maximum(np.maximum(codes[:, 0], codes[:, 1]), codes[:, 2])
        size = float(np.exp(_cell_median(largest, cell) * self.scale_step))
        if not np.isfinite(size) or size <= 0:
            return self
        step = self.pos_step * size / REFERENCE_SIZE
        if not 1e-9 <= step <= 1e6:  # (QuantParams' own bounds, said here in the scene's terms)
            raise EncodeError(
                f"the scale-relative position step {step:.3g} (the step {self.pos_step:g} × the "
                f"scene's median Gaussian size {size:.3g} / {REFERENCE_SIZE:g}) is outside [1e-9, 1e6]"
            )
        rot = self.rot_bits - (self.rot_bits - 1 - len(self.rot_tiers) >= 2)
        return replace(
            replace(self, rot_bits=rot, faint_rot=0).with_faint_rotations(FAINT_ROT),  # where room is left
            pos_step=step,
            tile_bits=min(20, self.tile_bits + SCENE_TILE_BITS),
            faint_pos=SCENE_FAINT_POS,
        )

    def for_shared_sh(self, gmap: GaussianMap) -> QuantParams:
        """These parameters with finer higher-SH and DC steps when the scene's SH is a palette (a source
        that was vector-quantised, as SOG's 64k-entry one): K distinct rows shared by n Gaussians
        are coded once each (``section``'s palette), so an entry's bits are spread over n/K
        Gaussians while its error lands on all of them — the step becomes step × K/n (at most
        16× finer; rounded to a power of two, see below), then halved (``SHARED_SH_FINER``).
        Balancing rate against users × step² alone gives sqrt(K/n); the full K/n was measured
        better on playbot (500k Gaussians, 64k rows, quality 1: ×0.36 → 43.1 dB at 11.67 B/G,
        ×0.2 → 46.5 / 12.01, ×0.1 → 48.9 / 12.40, ×0.05 → 49.8 / 12.76; bench/codec_real.py):
        its view-dependent colour weighs more in a render than the presets' per-Gaussian step
        assumes. Since container version 11 codes an entry's colour channels from one another (its
        entries 22 % smaller), half that step again gains: playbot 0.47 % (quality 2) and 0.70 %
        (quality 3) fewer bytes at equal render PSNR. The DC step is then halved too
        (``SHARED_DC_FINER``: the DC's error becomes the larger one). A scene without a palette
        (K > n/4, the palette coder's own limit) keeps its steps."""
        n = len(gmap)
        if n < PALETTE_MIN_ROWS or gmap.sh.shape[1] < 2:
            return self
        palette = palette_of(np.asarray(gmap.sh[:, 1:], np.float32).reshape(n, -1))
        if palette is None:
            return self
        k = len(palette[0])
        # the factor rounded to a power of two: a decoded map, whose quantisation may have merged
        # entries (fewer rows: the same or a finer step) or made a palette of rows that were none,
        # re-encodes to the same values, as a finer power-of-two lattice holds the coarser exactly
        # (and to the same bytes unless the merges moved K/n across a rounding boundary)
        factor = 2.0 ** round(float(np.log2(max(k / n, 1 / 16)))) / SHARED_SH_FINER
        return replace(
            self,
            rest_step=float(max(self.rest_step * factor, 1e-6)),
            dc_step=float(max(self.dc_step / SHARED_DC_FINER, 1e-6)),
        )

    def with_rot_tiers(self, log_spreads) -> QuantParams:
        """These parameters with anisotropy tiers at the given log-scale spreads (natural-log units,
        ascending), rounded to this scale step; tiers that round to the same step merge."""
        t = sorted({max(1, min(65535, int(round(v / self.scale_step)))) for v in log_spreads})
        # the tiers first: faint rotations keep what is left
        return replace(self, rot_tiers=tuple(t), faint_rot=0).with_faint_rotations(self.faint_rot)

    def with_faint_rotations(self, fewer: int) -> QuantParams:
        """These parameters with faint Gaussians' rotations ``fewer`` bits coarser, as far as the
        tiers leave their fewest bits at 2 or more."""
        room = self.rot_bits - len(self.rot_tiers) - 2
        return replace(self, faint_rot=max(0, min(fewer, room)))

    def with_faint(self, opacity: float, factor: int) -> QuantParams:
        """These parameters with Gaussians below ``opacity`` (sigmoid) on a ``factor`` × coarser
        scale and DC lattice (the threshold is rounded to this opacity step)."""
        logit = float(np.log(opacity / (1.0 - opacity)))
        below = int(np.clip(np.round(logit / self.opacity_step), -32768, 32767))
        return replace(self, faint_factor=int(factor), faint_below=below)

    @property
    def rot_max(self) -> int:
        """Largest component code at the finest tier (rot_bits)."""
        return int(_ROT_M[self.rot_bits])

    @property
    def rot_step(self) -> float:
        return float(_ROT_S[self.rot_bits])

    def rest_steps(self, num_sh: int) -> np.ndarray:
        """Step per SH coefficient 1..K-1: degree l uses l × rest_step."""
        deg = np.floor(np.sqrt(np.arange(1, num_sh))).astype(np.int64)
        return deg * self.rest_step

    def as_tuple(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self))


def _cell_median(codes: np.ndarray, cells: np.ndarray) -> float:
    """The median of values spread evenly over each code's lattice cell (``codes[i]`` ± half of
    ``cells[i]`` steps), in steps: close to the median of the values the codes were rounded from
    (guitar: within ~0.001 log units from quality 1 on, 0.025 at quality 0, whose steps are 0.15
    and, faint, 0.75, where the median code itself is 0.027 off; playbot within 0.015), and a
    function of the codes alone. Bisected over the distinct (code, cell) pairs; rounded to 2**-20
    steps, so that the last bits of a sum cannot move it."""
    # one int64 key per pair, in (code, cell) order (cells are 1..8: faint_factor): a 1-D unique
    # sorts ~10x faster than unique rows (playbot: 0.03 s against 0.28, a third of an encode)
    key, count = np.unique(np.asarray(codes, np.int64) * 16 + np.asarray(cells, np.int64), return_counts=True)
    code, cell = np.divmod(key, 16)
    width = cell.astype(np.float64)
    lo = code - width / 2
    half = count.sum() / 2
    a, b = float(lo.min()), float((lo + width).max())
    for _ in range(64):
        m = 0.5 * (a + b)
        if (count * np.clip((m - lo) / width, 0.0, 1.0)).sum() < half:
            a = m
        else:
            b = m
    return round(0.5 * (a + b) * (1 << 20)) / (1 << 20)


MAX_ROT_TIERS = 4
# QuantParams.relative_to scales the metre presets' position steps by a scene's median Gaussian size
# (largest axis) over this: quality 2-3 then step by 1 % of that size (guitar: 0.24 mm, SPZ's step),
# quality 0 by 7 %. Calibrated on guitar against its uncompressed render (bench/codec_real.py):
# position precision is the cheapest PSNR there (4× finer: +0.8 B/G, +5 dB at quality 3).
REFERENCE_SIZE = 0.1
SCENE_TILE_BITS = 4  # QuantParams.relative_to: a scene's codec tile is 2**4 times a map's per axis
SCENE_FAINT_POS = 2  # QuantParams.relative_to: faint Gaussians' positions on a 2× coarser lattice
SHARED_SH_FINER = 2  # QuantParams.for_shared_sh: an SH palette's step, this much below step × K/n
# QuantParams.for_shared_sh: a palette scene's DC step this much finer. Its higher SH being that
# much finer, the DC becomes the render's largest error: on playbot, single level, ÷2 codes 2.3 %
# fewer bytes at SOG's PSNR (13.13 → 12.83 B/G at 54.28 dB); ÷4 1.1 %; ÷2 with the SH step
# doubled or halved besides: +0.6 % / −1.5 %. A power of two, so a decoded scene's DC is on it.
SHARED_DC_FINER = 2
# log-scale spreads (max − min of the three log-scales) of the presets' tiers: below 0.4 (scales
# within 1.5×) a Gaussian gets 4 bits fewer than above 2.5 (12×). Measured on the mapper's kitchen
# map at quality 0 (from 4 bits for all): rotation 1.22 → 0.96 B/G and +0.23 dB held-out PSNR —
# the precision moves from near-spheres to the needles and discs that need it.
ROT_TIERS_LOG = (0.4, 0.8, 1.5, 2.5)
# the presets' faint lattice: below opacity 0.3 (a third of the kitchen map) scales and DC at twice
# the step — on the kitchen map −0.14 B/G at quality 0 (then 3×), −0.21 at quality 2, for ≤ 0.02 dB
# of held-out PSNR; quality 0 has 5× since its finer colour step (from_quality)
FAINT_OPACITY = 0.3
# faint Gaussians' rotations one bit coarser where the tiers leave room (every preset but quality
# 0): kitchen map quality 2 9.66 → 9.54 B/G at the same held-out PSNR (±0.001 dB); guitar quality 2
# (scale-relative) −0.21 B/G for −0.38 dB, where a finer step anywhere buys ~3 dB a B/G
FAINT_ROT = 1
# refine_rotations: rounds of six lattice neighbours tried per code, and the blur both shapes are
# compared under, in each Gaussian's largest axis. guitar quality 2, single level: one round
# +0.31 dB of render PSNR for +0.004 B/G, two +0.40 dB for 0.06 µs a Gaussian more (one kept: the
# encoder's speed); a blur of 0.5 to 8 median sizes for all within 0.05 dB of this, unblurred
# −1.5 dB; all 26 neighbours +0.03 dB over six for four times the work; a search along each
# needle's own spin found no more and made codes dearer; the same refinement of scale codes moved
# 5 % of them for no gain)
REFINE_ROUNDS = 1
SHAPE_BLUR = 1.5


def _rot_lattices():
    """M (largest code) and step s per bit count b = 0..16 (entries below 2 unused): the float64
    values ``(1/√2) / M`` that every encoder and decoder compute the same way."""
    m = np.array([max((1 << max(b - 1, 0)) - 1, 1) for b in range(17)], np.int64)
    return m, (1.0 / np.sqrt(2.0)) / m.astype(np.float64)


_ROT_M, _ROT_S = _rot_lattices()


def rotation_bits(scale, params: QuantParams, op: np.ndarray | None = None) -> np.ndarray | None:
    """Bits per rotation component of each Gaussian, from its quantised log-scales and opacity
    (known to a decoder before the rotation; scales an (N, 3) array or its three columns):
    ``rot_bits − #{tiers t : max(scale) − min(scale) < t}``, less ``faint_rot`` for a faint
    Gaussian (``op``, its opacity codes, are needed then). None when that is ``rot_bits`` for all
    (no tiers, no faint rotations; the scalar fast path)."""
    if params.faint_rot and op is None:
        raise ValueError("rotation_bits needs the opacity codes when faint rotations are coarser")
    if not params.rot_tiers and not params.faint_rot:
        return None
    c0, c1, c2 = scale if isinstance(scale, (list, tuple)) else (scale[:, 0], scale[:, 1], scale[:, 2])
    kernels = jit.kernels()
    if kernels is not None:  # compiled, one pass: the same bits (tests compare)
        out = np.empty(len(c0), np.int32)
        tiers = list(params.rot_tiers) + [1 << 62] * (MAX_ROT_TIERS - len(params.rot_tiers))  # unreached
        kernels.rotation_bits(
            *(np.ascontiguousarray(c) for c in (c0, c1, c2)),
            *tiers,
            params.rot_bits - len(params.rot_tiers),
            np.asarray(op) if params.faint_rot else _NO_CODES,
            params.faint_below,
            params.faint_rot,
            out,
        )
        return out
    # column-wise in int32 (|codes| < 2**30, so the spread fits): a reduction over 3 columns is slow
    spread = np.maximum(np.maximum(c0, c1), c2).astype(np.int32)
    spread -= np.minimum(np.minimum(c0, c1), c2).astype(np.int32)
    bits = np.full(len(spread), params.rot_bits - len(params.rot_tiers), np.int32)
    for t in params.rot_tiers:
        bits += spread >= t
    if params.faint_rot:
        bits -= (np.asarray(op) < params.faint_below).astype(np.int32) * np.int32(params.faint_rot)
    return bits


_NO_CODES = np.zeros(0, np.int32)


def rotation_contexts(bits: np.ndarray, params: QuantParams) -> tuple[np.ndarray, int]:
    """The coding context of each rotation component: its Gaussian's bit count (its lattice), from
    the fewest any Gaussian can have (``rotation_bits`` not None), and the number of contexts."""
    low = params.rot_bits - len(params.rot_tiers) - params.faint_rot
    return bits - low, params.rot_bits - low + 1


def rotation_max(bits: np.ndarray) -> np.ndarray:
    """Largest component code for each of :func:`rotation_bits`."""
    return _ROT_M[bits]


def rotations_within(rot: np.ndarray, bits: np.ndarray | None, params: QuantParams) -> bool:
    """Whether every rotation component lies within its row's lattice (``bits`` from
    :func:`rotation_bits`; None: ``rot_bits`` for all). Compiled in one pass where numba is."""
    kernels = jit.kernels()
    if kernels is not None and rot.dtype == np.int32:
        return bool(
            kernels.rotations_within(rot, _NO_CODES if bits is None else bits, _ROT_M, params.rot_max)
        )
    a = np.abs(rot)
    lim = params.rot_max if bits is None else rotation_max(bits)
    return not bool((np.maximum(np.maximum(a[:, 0], a[:, 1]), a[:, 2]) > lim).any())


_QFIELDS = ("pos", "level", "op", "scale", "rot_idx", "rot", "dc", "rest")


@dataclass
class QMap:
    """A quantised map: integers on the lattices of :class:`QuantParams`, rows sorted by id."""

    FIELDS: ClassVar[tuple[str, ...]] = _QFIELDS  # the per-row fields besides the id

    sh_degree: int
    ids: np.ndarray  # (N,) uint64, ascending
    pos: np.ndarray  # (N, 3) int64
    level: np.ndarray  # (N,) uint8
    op: np.ndarray  # (N,) int32
    scale: np.ndarray  # (N, 3) int32
    rot_idx: np.ndarray  # (N,) uint8, index (x, y, z, w) of the dropped largest component
    rot: np.ndarray  # (N, 3) int32, the other three in x, y, z, w order
    dc: np.ndarray  # (N, 3) int32
    rest: np.ndarray  # (N, K-1, 3) int32

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_sh(self) -> int:
        return (self.sh_degree + 1) ** 2

    @staticmethod
    def empty(sh_degree: int) -> QMap:
        k = (sh_degree + 1) ** 2
        return QMap(
            sh_degree,
            np.zeros(0, np.uint64),
            np.zeros((0, 3), np.int64),
            np.zeros(0, np.uint8),
            np.zeros(0, np.int32),
            np.zeros((0, 3), np.int32),
            np.zeros(0, np.uint8),
            np.zeros((0, 3), np.int32),
            np.zeros((0, 3), np.int32),
            np.zeros((0, k - 1, 3), np.int32),
        )

    def take(self, rows) -> QMap:
        """The rows ``rows`` (indices, a boolean mask or a slice) as a new QMap."""
        if isinstance(rows, np.ndarray) and rows.dtype.kind in "iu":  # np.take: ~3× fancy indexing on 2-D/3-D
            return QMap(
                self.sh_degree, self.ids[rows], *(np.take(getattr(self, f), rows, 0) for f in _QFIELDS)
            )
        return QMap(self.sh_degree, self.ids[rows], *(getattr(self, f)[rows] for f in _QFIELDS))

    def copy(self) -> QMap:
        """A copy with arrays of its own (``take(slice(None))`` shares them)."""
        return QMap(self.sh_degree, self.ids.copy(), *(getattr(self, f).copy() for f in _QFIELDS))

    def with_ids(self, ids: np.ndarray) -> QMap:
        """These rows under other ids; the other arrays are shared, not copied."""
        out = self.take(slice(None))
        out.ids = ids
        return out

    def equals(self, other: QMap) -> bool:
        return (
            self.sh_degree == other.sh_degree
            and np.array_equal(self.ids, other.ids)
            and all(np.array_equal(getattr(self, f), getattr(other, f)) for f in _QFIELDS)
        )

    def checksum(self) -> int:
        """CRC-32C of the canonical little-endian serialisation (sent in each header; the receiver
        checks it after every snapshot/delta, so "bit-identical to the sender" is verified)."""
        c = crc32c(np.ascontiguousarray(self.ids, "<u8"))
        for f, dt in zip(_QFIELDS, ("<i8", "u1", "<i4", "<i4", "u1", "<i4", "<i4", "<i4"), strict=False):
            a = getattr(self, f)
            if a.flags.c_contiguous or len(a) <= _BLOCK:
                c = crc32c(np.ascontiguousarray(a, dt), c)
            else:  # e.g. a decoded map's SH, a transposed view: serialise block by block
                for s in range(0, len(a), _BLOCK):
                    c = crc32c(np.ascontiguousarray(a[s : s + _BLOCK], dt), c)
        return c

    @staticmethod
    def concat(parts: list[QMap]) -> QMap:
        """Rows of all parts, re-sorted by id (ids must be disjoint)."""
        deg = parts[0].sh_degree
        ids = np.concatenate([p.ids for p in parts])
        if len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()):  # already in order (new ids above the map's)
            return QMap(deg, ids, *(np.concatenate([getattr(p, f) for p in parts]) for f in _QFIELDS))
        order = np.argsort(ids, kind="stable")
        cat = {f: np.take(np.concatenate([getattr(p, f) for p in parts]), order, 0) for f in _QFIELDS}
        return QMap(deg, ids[order], **cat)

    def with_rows(self, q: QMap | None, drop: np.ndarray) -> QMap:
        """This map with the rows of ``q`` (sorted by id) put in, replacing those of the same id,
        and the ids ``drop`` taken out; ``self`` itself when that changes nothing. Only what changes
        is copied and nothing is sorted again (``self`` is untouched): a few changed Gaussians of a
        large map cost a pass over the fields they change, not a re-sort of the map."""
        out, changed = self.take(slice(None)), False
        if q is not None and len(q):
            rows, inside = find_ids(self.ids, q.ids)
            if inside.any():
                r, src = rows[inside], q.take(inside)
                for f in _QFIELDS:
                    a, b = getattr(out, f), getattr(src, f)
                    if not np.array_equal(a[r], b):
                        a = a.copy()
                        a[r] = b
                        setattr(out, f, a)
                        changed = True
                q = q.take(~inside)
        rows, hit = find_ids(out.ids, np.asarray(drop, np.uint64))
        if hit.any():
            keep = np.ones(len(out), bool)
            keep[rows[hit]] = False
            out, changed = out.take(keep), True
        if q is not None and len(q):
            out, changed = out.merged(q), True
        return out if changed else self

    def merged(self, q: QMap) -> QMap:
        """Rows of both maps (ids disjoint) in id order, each put in its place without a sort."""
        at = np.searchsorted(self.ids, q.ids) + np.arange(len(q))  # q's rows' places in the result
        theirs = np.zeros(len(self) + len(q), bool)
        theirs[at] = True

        def place(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            out = np.empty((len(theirs),) + a.shape[1:], a.dtype)
            out[~theirs], out[theirs] = a, b
            return out

        return QMap(
            self.sh_degree,
            place(self.ids, q.ids),
            *(place(getattr(self, f), getattr(q, f)) for f in _QFIELDS),
        )


def find_ids(ids: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row of each wanted id in sorted ``ids``, clipped into range; found mask)."""
    r = np.searchsorted(ids, want)
    ok = r < len(ids)
    ok[ok] = ids[r[ok]] == want[ok]
    return np.minimum(r, max(len(ids) - 1, 0)), ok


def to_qmap(gmap: GaussianMap, params: QuantParams, least_turned: bool = True, *, rest: bool = True) -> QMap:
    """Quantise a map onto the lattices (the encoder's first step). ``least_turned``: each
    Gaussian in its least-turned frame (:func:`canonical_axes`); False keeps its own frame, as
    encoders before 2026-12-03 did (the stored containers of test_guards_format). ``rest=False``:
    the higher SH left out (``rest`` of shape (N, 0, 3)), for a caller that quantises them
    itself in another row order (:func:`sh_rest_codes`)."""
    gmap.validate()
    op, scale, dc = attribute_lattices(gmap.opacity_logits, gmap.log_scales, gmap.sh[:, 0, :], params)
    means = gmap.means.astype(np.float64)
    pos = np.rint(means / params.pos_step)
    faint = faint_rows(op, params) if params.faint_pos > 1 else None
    if faint is not None and faint.any():  # multiples of faint_pos: the same lattice, rounded coarser
        f = params.faint_pos
        pos[faint] = np.rint(means[faint] / (f * params.pos_step)) * f
    if len(pos) and np.abs(pos).max() >= MAX_LATTICE:
        row = int(np.argmax(np.abs(pos).max(axis=1)))
        raise EncodeError(
            f"the Gaussian at row {row} lies more than 2**52 position steps ({params.pos_step} m) from the "
            f"origin: {means[row].tolist()}"
        )
    pos = pos.astype(np.int64)
    bits = rotation_bits(scale, params, op)
    if least_turned:  # the log-scale codes follow their axes into that frame (the same ellipsoid)
        rot_idx, rot, scale, turns = canonical_axes(gmap.quats, scale, params, bits)
        rot = refine_rotations(gmap.quats, rot, scale, turns, params, bits)
    else:
        rot_idx, rot = canonical_rotations(*stable_rotations(gmap.quats, params, bits))
    # a Gaussian whose three quantised scales are equal is a sphere: every rotation renders the same,
    # so it gets the identity, which the entropy coder makes almost free (common in fitted maps)
    sphere = (scale[:, 0] == scale[:, 1]) & (scale[:, 1] == scale[:, 2])
    rot[sphere] = 0  # (the index is already 3: canonical_rotations)
    ids, levels = gmap.ids.copy(), gmap.levels.copy()
    codes = sh_rest_codes(gmap, params) if rest else np.zeros((len(ids), 0, 3), np.int32)
    return QMap(gmap.sh_degree, ids, pos, levels, op, scale, rot_idx, rot, dc, codes)


def sh_rest_codes(gmap: GaussianMap, params: QuantParams, rows: np.ndarray | None = None) -> np.ndarray:
    """:func:`to_qmap`'s higher-SH codes (N, K − 1, 3) int32, of the rows ``rows`` of ``gmap`` in
    that order where given (a gather and the quantising in one pass: no map-sized copy between)."""
    # higher SH (most of the data) in float32: quantising is the encoder's choice, the decoder only
    # reads the integers; float32(v·s)/s rounds back to v, so re-encoding stays lossless
    k = gmap.num_sh
    n = len(gmap.ids) if rows is None else len(rows)
    rest = np.empty((n, k - 1, 3), np.int32)
    if k > 1 and n:  # block by block over whole rows (the same float32 operations, cache-sized pieces)
        steps = np.repeat(params.rest_steps(k).astype(np.float32), 3)
        src = np.ascontiguousarray(gmap.sh, np.float32).reshape(len(gmap.ids), 3 * k)
        dst = rest.reshape(n, 3 * (k - 1))
        kernels = jit.kernels()
        if kernels is not None:  # the same float32 operations, in one pass
            idx = np.zeros(0, np.int64) if rows is None else np.asarray(rows, np.int64)
            kernels.sh_codes(src, idx, steps, _SH_CLAMP, dst)
        else:
            tmp = np.empty((min(n, _BLOCK), 3 * (k - 1)), np.float32)
            for s in range(0, n, _BLOCK):
                t = tmp[: min(n - s, _BLOCK)]
                part = src[s : s + _BLOCK, 3:] if rows is None else src[rows[s : s + _BLOCK], 3:]
                np.clip(part, -_SH_CLAMP, _SH_CLAMP, out=t)
                np.divide(t, steps, out=t)
                np.rint(t, out=t)
                dst[s : s + _BLOCK] = t
    return rest


def beyond_clamps(gmap: GaussianMap) -> str:
    """What of ``gmap`` the lattices keep at their bounds ('' when nothing): log-scales beyond
    −30..12 and colour coefficients beyond ±64 (opacity logits beyond ±20 are not named: their
    sigmoid is 0 or 1 in float32 either way). A scene trained in other units can reach them."""
    ls, sh = np.asarray(gmap.log_scales), np.asarray(gmap.sh)
    said = []
    if len(ls) and (ls.min() < _SCALE_MIN or ls.max() > _SCALE_MAX):
        n = int(np.count_nonzero((ls < _SCALE_MIN) | (ls > _SCALE_MAX)))
        said.append(f"{n} log-scale value(s) beyond {_SCALE_MIN:g}..{_SCALE_MAX:g}")
    if sh.size and np.abs(sh).max() > _SH_CLAMP:
        said.append(
            f"{int(np.count_nonzero(np.abs(sh) > _SH_CLAMP))} colour coefficient(s) beyond ±{_SH_CLAMP:g}"
        )
    return " and ".join(said)


def _lattice(x, lo: float, hi: float, step: float) -> np.ndarray:
    return np.rint(np.clip(np.asarray(x, np.float64), lo, hi) / step).astype(np.int32)


def faint_rows(op: np.ndarray, params: QuantParams) -> np.ndarray | None:
    """Faint rows (from the opacity codes, which a decoder has first); None = no faint lattice."""
    if params.faint_factor == 1 and params.faint_rot == 0 and params.faint_pos == 1:
        return None
    return np.asarray(op) < params.faint_below


def attribute_lattices(opacity_logits, log_scales, dc_values, params: QuantParams):
    """Opacity, log-scale and DC codes (int32); faint rows' scales and DC as multiples of the factor.
    Compiled in one pass where numba is there (:func:`.kernels.attribute_lattices`: the same codes)."""
    kernels = jit.kernels()
    if kernels is not None and len(opacity_logits):
        opl, ls, dc_in = (np.asarray(a) for a in (opacity_logits, log_scales, dc_values))
        if (
            all(a.dtype in (np.float32, np.float64) for a in (opl, ls, dc_in))
            and opl.ndim == 1
            and ls.shape == dc_in.shape == (len(opl), 3)
        ):
            n, f = len(opl), params.faint_factor
            op, scale, dc = np.empty(n, np.int32), np.empty((n, 3), np.int32), np.empty((n, 3), np.int32)
            lims = np.array([-_OPACITY_CLAMP, _OPACITY_CLAMP, _SCALE_MIN, _SCALE_MAX, -_SH_CLAMP, _SH_CLAMP])
            steps = np.array(
                [
                    params.opacity_step,
                    params.scale_step,
                    params.dc_step,
                    f * params.scale_step,
                    f * params.dc_step,
                ]
            )
            if kernels.attribute_lattices(opl, ls, dc_in, lims, steps, params.faint_below, f, op, scale, dc):
                return op, scale, dc
    op = _lattice(opacity_logits, -_OPACITY_CLAMP, _OPACITY_CLAMP, params.opacity_step)
    scale = _lattice(log_scales, _SCALE_MIN, _SCALE_MAX, params.scale_step)
    dc = _lattice(dc_values, -_SH_CLAMP, _SH_CLAMP, params.dc_step)
    faint = faint_rows(op, params)
    if faint is not None and params.faint_factor > 1 and faint.any():
        f = params.faint_factor
        scale[faint] = (
            _lattice(np.asarray(log_scales)[faint], _SCALE_MIN, _SCALE_MAX, f * params.scale_step) * f
        )
        dc[faint] = _lattice(np.asarray(dc_values)[faint], -_SH_CLAMP, _SH_CLAMP, f * params.dc_step) * f
    return op, scale, dc


def canonical_rotations(rot_idx: np.ndarray, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each smallest-three code replaced by the code, of the four quaternions that render the same
    Gaussian (q, q·i, q·j, q·k: a half-turn about one of its own axes maps the ellipsoid onto
    itself), whose dropped component is w. Exact on the lattice (the kept components are only
    permuted and negated; the rebuilt one lands in w), so the index stream becomes constant and a
    code that survives re-encoding (:func:`stable_rotations`) still does."""
    idx = np.asarray(rot_idx).copy()
    out = np.asarray(rot).copy()
    a, b, c = (out[:, j].copy() for j in range(3))  # the kept components, in x, y, z, w order
    # largest x: q·i, then −q (w ≥ 0): (−w, −z, y); largest y: q·j, −q: (z, −w, −x);
    # largest z: q·k, −q: (−y, x, −w)
    for k, comps in ((0, (-c, -b, a)), (1, (b, -c, -a)), (2, (-b, a, -c))):
        m = idx == k
        if m.any():
            out[m] = np.stack([v[m] for v in comps], 1)
    idx[:] = 3
    return idx, out


def _octahedral():
    """The 24 rotations that map the coordinate axes onto themselves (signed axis permutations of
    determinant +1), as unit quaternions (x, y, z, w), the identity first, one of each ± pair.
    Returns them with, for each, the old axis that becomes new axis i (a Gaussian's log-scales
    follow their axes); an index from the signs of either ±q (``code = Σ (s_i + 1)·3^i``); and
    the group's table (``mul[a, b]``: the index of p_a ⊗ p_b)."""
    cands = []
    for v in np.stack(np.meshgrid(*[[-1, 0, 1]] * 4, indexing="ij"), -1).reshape(-1, 4):
        nz = int(np.count_nonzero(v))
        if nz in (1, 2, 4) and v[np.flatnonzero(v)[-1]] > 0:  # the last nonzero positive: one of ±q
            cands.append(v / np.sqrt(nz))
    cands.sort(key=lambda q: -abs(q[3]))  # the identity (0, 0, 0, 1) first
    quats = np.array(cands)
    axes = np.abs(quat_to_matrix(quats)).argmax(axis=1)  # R e_i = ±e_axes[i]
    signs = np.sign(np.round(quats, 6)).astype(np.int64)
    index = np.full(81, -1, np.int64)
    index[(signs + 1) @ _SIGN_DIGITS] = np.arange(24)
    index[(1 - signs) @ _SIGN_DIGITS] = np.arange(24)
    mul = np.abs(np.einsum("abi,ci->abc", quat_multiply(quats[:, None], quats[None]), quats)).argmax(-1)
    return quats, axes, index, mul


_SIGN_DIGITS = np.array([1, 3, 9, 27])
_OCT_Q, _OCT_AXES, _OCT_INDEX, _OCT_MUL = _octahedral()
# canonical_rotations' half-turns about the Gaussian's own x, y, z (for a code whose largest
# component was x, y, z) and none (w), as indices into _OCT_Q
_HALF_TURN = _OCT_INDEX[(np.eye(4, dtype=np.int64) + 1) @ _SIGN_DIGITS]


def _closest_to_identity(q: np.ndarray, margin: np.ndarray | float) -> np.ndarray:
    """Per unit quaternion (float64, (N, 4)), the index of the octahedral rotation p for which
    q ⊗ p turns least (largest |w|); the identity (0) unless another beats it by ``margin``.

    |w| of q ⊗ p is |q · conj(p)|, and the group's conj(p) are, up to sign, the unit vectors with
    one, two or four nonzero entries in {±1}: so the best is the largest |component|, the two
    largest summed over √2, or all four summed over 2, with the signs of q (no 24-way product).
    Column by column (half the time of row-wise argmax and fancy indexing); ties go to the first
    component, as argmax would."""
    a = [np.abs(q[:, j]) for j in range(4)]
    v1, i1 = a[0].copy(), np.zeros(len(q), np.int8)  # the largest |component| and its index
    for j in (1, 2, 3):
        i1[a[j] > v1] = j
        np.maximum(v1, a[j], out=v1)
    v2, i2 = np.full(len(q), -1.0), np.zeros(len(q), np.int8)  # the second largest
    for j in range(4):
        c = np.where(i1 == j, -1.0, a[j])
        i2[c > v2] = j
        np.maximum(v2, c, out=v2)
    pair = (v1 + v2) * np.sqrt(0.5)
    every = (a[0] + a[1] + a[2] + a[3]) * 0.5
    kind = (pair > v1).astype(np.int8)  # nonzero components of conj(p): 0 → one, 1 → two, 2 → four
    best = np.maximum(v1, pair)
    kind[every > best] = 2
    np.maximum(best, every, out=best)
    code = np.zeros(len(q), np.int64)  # Σ (s_j + 1)·3^j of p's signs s_j (conj: x, y, z negated)
    for j in range(4):
        used = (i1 == j) | ((kind >= 1) & (i2 == j)) | (kind == 2)
        s = np.where(q[:, j] < 0, -1, 1) * used
        code += ((s if j == 3 else -s) + 1) * _SIGN_DIGITS[j]
    return np.where(best > a[3] + margin, _OCT_INDEX[code], 0)


def canonical_axes(
    quats: np.ndarray, scale: np.ndarray, params: QuantParams, bits: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rotation codes (index, components) and log-scale codes of each Gaussian in the frame, of
    the 24 that describe the same ellipsoid (its axes relabelled and flipped), that turns least
    from the world frame; and that relabelling (an index into the 24, uint8: the code's rotation
    is the source's times it, up to the lattice). A Gaussian's rotation is then within 63° of the
    identity instead of anywhere: its three coded components span a sixth of the volume, ~2.6
    bits fewer (guitar, quality 2: rotation 2.68 → 2.43 B/G). Encoder-only: a decoder reads
    whatever frame it is sent.

    Stable under decode and re-encode: the choice is checked again on the rotation a decoder
    rebuilds, and a frame is left only for one that turns less by more than a lattice step, so a
    decoded map stays in its frame and re-encodes to the same codes. Compiled row by row where
    numba is there (:func:`.kernels.canonical_axes`, the same codes: ~4× faster on playbot)."""
    q = np.asarray(quats, np.float64)  # not renormalised: an unmoved row quantises as before
    scale = np.asarray(scale).copy()
    n = len(q)
    m, s = _lattice_of(params, bits, n)
    margin = np.broadcast_to(s, n).astype(np.float64)  # a frame must win by the row's lattice step
    kernels = jit.kernels()
    if kernels is not None and n:  # compiled, row by row: the same codes (tests compare)
        idx, rot, turns = np.empty(n, np.uint8), np.empty((n, 3), np.int32), np.empty(n, np.uint8)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        kernels.canonical_axes(
            np.ascontiguousarray(q),
            qn,
            scale,
            np.broadcast_to(m, n).astype(np.int64),
            margin,
            _OCT_Q,
            _OCT_AXES,
            _OCT_INDEX,
            _OCT_MUL,
            _HALF_TURN,
            idx,
            rot,
            turns,
        )
        return idx, rot, scale, turns
    turn = np.zeros(n, np.int64)  # the octahedral rotation applied so far (index into _OCT_Q)
    idx, rot = np.full(n, 3, np.uint8), np.zeros((n, 3), np.int32)
    half = np.full(n, 3, np.uint8)  # the smallest-three index before canonical_rotations
    todo = np.arange(n)
    k = _closest_to_identity(q / np.linalg.norm(q, axis=1, keepdims=True), margin)
    for it in range(4):
        moved, km = todo[k != 0], k[k != 0]
        turn[moved] = _OCT_MUL[turn[moved], km]
        scale[moved] = np.take_along_axis(scale[moved], _OCT_AXES[km], axis=1)
        todo = todo if it == 0 else moved
        if not len(todo):
            break
        b = None if bits is None else np.asarray(bits)[todo]
        frame = quat_multiply(q[todo], _OCT_Q[turn[todo]])  # from the source: no error compounds
        half[todo], r = stable_rotations(frame, params, b)
        idx[todo], rot[todo] = canonical_rotations(half[todo], r)
        k = _closest_to_identity(
            dequantize_rotations(idx[todo], rot[todo], params, b).astype(np.float64), margin[todo]
        )
    return idx, rot, scale, _OCT_MUL[turn, _HALF_TURN[half]].astype(np.uint8)


def refine_rotations(
    quats: np.ndarray, rot: np.ndarray, scale: np.ndarray, turns: np.ndarray, params: QuantParams, bits
) -> np.ndarray:
    """W-form rotation codes (:func:`canonical_rotations`) moved, ``REFINE_ROUNDS`` times, to the
    best of their six lattice neighbours (one component ±1) where that shape is nearer the
    source's. Rounding each component alone minimises the quaternion's error, not the
    ellipsoid's: a needle turned about its own axis, or a disc about its normal, renders almost the
    same, so a neighbour may fit the directions that show much better. Encoder-only (a decoder
    reads the codes it is sent).

    Nearness: the L2 distance between two unit-peak Gaussians (as a splat is drawn) of the same
    scales, one turned by δ against the other, grows to second order as Σ_k w_k δ_k², with
    w_k = (p_i − p_j)² / (p_i p_j) for the precisions p_i, p_j of the two axes a turn about axis k
    mixes, and δ the vector part of the turn's quaternion in the Gaussian's own frame. The
    precisions are blurred by ``SHAPE_BLUR`` × the Gaussian's largest axis (a pixel sees no finer
    detail, and the renderer's low-pass filter widens thin splats; unblurred, the thinnest axes
    dominated and the render got worse), and each Gaussian's codes depend on it alone, as a delta
    of a few Gaussians needs. ``quats`` are the source rotations, ``scale`` the codes' log-scales
    in the codes' frame and ``turns`` that frame (both from :func:`canonical_axes`).

    Stable under decode and re-encode: a decoded code is its own source, a neighbour must be
    nearer by a relative 1e-9, and it must leave the decoded rotation in its frame. Compiled row
    by row where numba is there (:func:`.kernels.refine_rotations`, the same float64 operations:
    the same codes)."""
    rot = np.array(rot, np.int32)
    sc = np.ascontiguousarray(scale, np.int32)
    n = len(rot)
    if not n or REFINE_ROUNDS == 0:
        return rot
    # precisions in units of each Gaussian's largest axis (a common factor of all three, which
    # leaves the choice as it is), as a table over the codes below the row's largest
    top = np.maximum(np.maximum(sc[:, 0], sc[:, 1]), sc[:, 2])
    lo = int((sc - top[:, None]).min())
    vtab = np.exp(2.0 * params.scale_step * np.arange(lo, 1, dtype=np.float64)) + SHAPE_BLUR**2
    ptab = 1.0 / vtab
    m, s = _lattice_of(params, bits, n)
    m = np.ascontiguousarray(np.broadcast_to(m, n), np.int64)
    s = np.ascontiguousarray(np.broadcast_to(s, n), np.float64)
    kernels = jit.kernels()
    if kernels is not None:
        q = np.ascontiguousarray(quats)
        tr = np.ascontiguousarray(turns, np.uint8)
        kernels.refine_rotations(q, sc, rot, s, m, ptab, vtab, -lo, _OCT_Q, _OCT_INDEX, tr, REFINE_ROUNDS)
        return rot
    rows = np.flatnonzero((sc[:, 0] != sc[:, 1]) | (sc[:, 1] != sc[:, 2]))  # a sphere's is zeroed
    t, wts = turn_terms(quats, sc, turns, ptab, vtab, lo, rows)
    cur = rot[rows].astype(np.int64)
    sr = s[rows]
    best = _turn_costs(cur, sr, t, wts)
    keep = np.arange(len(rows))  # rows still moving, as positions in ``rows``
    for _ in range(REFINE_ROUNDS):
        start = cur[keep]
        sub = (sr[keep], tuple(v[keep] for v in t), tuple(v[keep] for v in wts))
        to, to_cost = start.copy(), best[keep]
        for k in range(6):  # in the kernel's order: each nearer neighbour replaces the last
            cand = start.copy()
            cand[:, k // 2] += 1 if k & 1 else -1
            v = _turn_costs(cand, *sub)
            v[np.abs(cand).max(axis=1) > m[rows[keep]]] = np.inf  # off the lattice: not a code
            better = v < to_cost * (1.0 - 1e-9)
            if better.any():  # and its decoded rotation stays in its frame (canonical_axes)
                r = rows[keep][better]
                back = dequantize_rotations(
                    np.full(len(r), 3, np.uint8), cand[better], params, _rows_of(bits, r)
                )
                better[better] = _closest_to_identity(back.astype(np.float64), s[r]) == 0
            to_cost, to[better] = np.where(better, v, to_cost), cand[better]
        moved = (to != start).any(axis=1)
        cur[keep], best[keep] = to, to_cost
        keep = keep[moved]
        if not len(keep):
            break
    rot[rows] = cur
    return rot


def turn_terms(quats, sc, turns, ptab, vtab, lo: int, rows):
    """What :func:`_turn_costs` takes for ``rows`` of :func:`refine_rotations`' numpy path: the
    conjugate source quaternion in its code's frame, t = conj(turn) ⊗ conj(source), and the three
    axis-pair weights of the shape error from the scale codes ``sc`` (``ptab`` / ``vtab``: the
    precision / variance a code ``lo`` below its row's largest has)."""
    top = sc[rows].max(1)
    at = [sc[rows, j] - top - lo for j in range(3)]
    p0, p1, p2 = (ptab[a] for a in at)
    v0, v1, v2 = (vtab[a] for a in at)
    wts = (
        (p1 - p2) * (p1 - p2) * (v1 * v2),
        (p0 - p2) * (p0 - p2) * (v0 * v2),
        (p0 - p1) * (p0 - p1) * (v0 * v1),
    )
    q = np.asarray(quats)[rows].astype(np.float64)
    x, y, z, w = (q[:, j] for j in range(4))
    inv = 1.0 / np.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x * inv, y * inv, z * inv, w * inv
    b0, b1, b2, b3 = _OCT_Q[np.asarray(turns)[rows]].T
    b0, b1, b2 = -b0, -b1, -b2
    t = (
        -b3 * x + b0 * w - b1 * z + b2 * y,
        -b3 * y + b0 * z + b1 * w - b2 * x,
        -b3 * z - b0 * y + b1 * x + b2 * w,
        b3 * w + b0 * x + b1 * y + b2 * z,
    )
    return t, wts


def _rows_of(bits, rows):
    return None if bits is None else np.asarray(bits)[rows]


def _turn_costs(c: np.ndarray, s: np.ndarray, t: tuple, wts: tuple) -> np.ndarray:
    """:func:`.kernels._turn_cost` on arrays (its operations, in order)."""
    x, y, z = (c[:, j].astype(np.float64) * s for j in range(3))
    amax = np.abs(c).max(axis=1).astype(np.float64) * s + 0.25 * s
    w = np.sqrt(np.maximum(1.0 - (x * x + y * y + z * z), 0.0))
    t0, t1, t2, t3 = t
    dx = t3 * x + t0 * w + t1 * z - t2 * y
    dy = t3 * y - t0 * z + t1 * w + t2 * x
    dz = t3 * z + t0 * y - t1 * x + t2 * w
    cost = wts[0] * dx * dx + wts[1] * dy * dy + wts[2] * dz * dz
    return np.where(w < amax, np.inf, cost)


def quantize_rotations(
    quats: np.ndarray, params: QuantParams, bits: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest-three codes; ``bits`` per row (:func:`rotation_bits`), default ``rot_bits`` for all."""
    # column by column (the same float64 operations as a row-wise norm / argmax / gather)
    q = np.asarray(quats)
    q0, q1, q2, q3 = (q[:, j].astype(np.float64) for j in range(4))
    norm = np.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3)
    for c in (q0, q1, q2, q3):
        np.divide(c, norm, out=c)
    best = np.abs(q0)
    idx = np.zeros(len(q0), np.uint8)
    for j, c in ((1, q1), (2, q2), (3, q3)):  # index of the largest |component|, first on ties
        a = np.abs(c)
        m = a > best
        idx[m] = j
        np.maximum(best, a, out=best)
    neg = np.where(idx == 0, q0, np.where(idx == 1, q1, np.where(idx == 2, q2, q3))) < 0
    sign = np.where(neg, -1.0, 1.0)
    kept = (np.where(idx == 0, q1, q0), np.where(idx <= 1, q2, q1), np.where(idx <= 2, q3, q2))
    m, s = _lattice_of(params, bits, len(q0))
    rot = np.empty((len(q0), 3), np.int32)
    for j, c in enumerate(kept):
        c *= sign
        c /= s
        rot[:, j] = np.clip(np.rint(c), -m, m)
    return idx, rot


def _lattice_of(params: QuantParams, bits, n: int):
    """(M, s) as scalars (one lattice) or per-row arrays."""
    if bits is None:
        return params.rot_max, params.rot_step
    b = _row_bits(bits, n)
    return _ROT_M[b], _ROT_S[b]


def _row_bits(bits, n: int) -> np.ndarray:
    """``bits`` (:func:`rotation_bits`) as an array, one per rotation."""
    b = np.asarray(bits)
    if len(b) != n:
        raise ValueError(f"{len(b)} rotation bit counts for {n} rotations")
    return b


def stable_rotations(
    quats: np.ndarray, params: QuantParams, bits: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest-three codes that survive a decode/re-encode unchanged: where the dropped component,
    once rebuilt, is no longer the largest (near-ties), move to the code the decoded rotation
    quantises to (a fixed point, reached in one or two steps), so re-encoding a decoded map is lossless."""
    idx, rot = quantize_rotations(quats, params, bits)
    rows = None  # rows still moving (a row that did not change is a fixed point and stays one)
    for _ in range(4):
        i0, r0 = (idx, rot) if rows is None else (idx[rows], rot[rows])
        b0 = bits if bits is None or rows is None else np.asarray(bits)[rows]
        idx2, rot2 = quantize_rotations(dequantize_rotations(i0, r0, params, b0), params, b0)
        ch = (idx2 != i0) | (rot2 != r0).any(axis=1)
        if not ch.any():
            break
        rows = np.flatnonzero(ch) if rows is None else rows[ch]
        idx[rows], rot[rows] = idx2[ch], rot2[ch]
    return idx, rot


def dequantize_rotations(
    rot_idx: np.ndarray, rot: np.ndarray, params: QuantParams, bits: np.ndarray | None = None
) -> np.ndarray:
    r = np.asarray(rot)
    kernels = jit.kernels()
    if kernels is not None and len(r):  # compiled: the same floats (tests compare)
        out = np.empty((len(r), 4), np.float32)
        b, steps = (
            (_NO_CODES, np.array([params.rot_step])) if bits is None else (_row_bits(bits, len(r)), _ROT_S)
        )
        kernels.dequantize_rotations(np.asarray(rot_idx), r, b, steps, out)
        return out
    _, s = _lattice_of(params, bits, len(r))
    c0, c1, c2 = (r[:, j].astype(np.float64) * s for j in range(3))
    ss = c0 * c0
    ss += c1 * c1
    ss += c2 * c2
    # the dropped component stays strictly the largest (near-ties would otherwise flip the code on
    # re-encoding a decoded map); the normalisation below absorbs the nudge.
    # max_j |c_j| = float64(max_j |r_j|) * s exactly (rounding is monotonic), so take it on integers
    ar = np.abs(r)
    amax = np.maximum(np.maximum(ar[:, 0], ar[:, 1]), ar[:, 2]).astype(np.float64) * s
    amax += 0.25 * s
    np.subtract(1.0, ss, out=ss)
    np.maximum(ss, 0.0, out=ss)
    np.sqrt(ss, out=ss)
    big = np.maximum(ss, amax, out=ss)
    # output component j is the rebuilt one where j == idx, else kept component j (j < idx) or
    # j − 1 (j > idx)
    idx = np.asarray(rot_idx)
    i0, i3 = idx == 0, idx == 3
    q0 = np.where(i0, big, c0)
    q1 = np.where(idx == 1, big, np.where(i0, c0, c1))
    q2 = np.where(idx == 2, big, np.where(i3, c2, c1))
    q3 = np.where(i3, big, c2)
    norm = q0 * q0
    norm += q1 * q1
    norm += q2 * q2
    norm += q3 * q3
    np.sqrt(norm, out=norm)
    out = np.empty((len(r), 4), np.float32)
    for col, qc in enumerate((q0, q1, q2, q3)):
        np.divide(qc, norm, out=qc)
        out[:, col] = qc
    return out


_BLOCK = 16384  # rows per block in dequantisation (cache-sized pieces)


def dequantize_fields(q: QMap, params: QuantParams, rest: bool = True) -> dict:
    """Float fields of :func:`dequantize`, in ``q``'s row order (no sorting requirement).

    Attributes are ``float32(v) * float32(step)`` (one exactly rounded float32 product); positions
    ``float32(float64(P) * pos_step)``.
    """
    n = len(q)
    k = q.num_sh if rest else 1
    sh = np.empty((n, k, 3), np.float32)
    flat = sh.reshape(n, 3 * k)
    # all coefficients block by block (cache-sized pieces, DC with the rest: one pass over the
    # output). int32 → float32 is exact (|v| < 2**24) and the float32 product the same single
    # rounding as float32(v) · float32(step)
    steps = np.full(3 * k, np.float32(params.dc_step), np.float32)
    if k > 1:
        steps[3:] = np.repeat(params.rest_steps(k).astype(np.float32), 3)
    rest2 = q.rest.reshape(n, 3 * (k - 1)) if k > 1 else None
    kernels = jit.kernels() if rest2 is not None and n else None
    if kernels is not None and rest2.dtype == np.int32 and q.dc.dtype == np.int32:  # type: ignore[union-attr]
        kernels.dequantize_sh(q.dc, rest2, steps, flat)  # (the same floats: tests compare)
    elif rest2 is not None and n and rest2.strides[0] == rest2.itemsize:
        # column-major (a decoded map's SH): fill a (3k, B) block column by column (contiguous
        # reads), scale it, and write it out row-major in one transposing copy
        steps = steps[:, None]
        dc_t, rest_t = q.dc.T, rest2.T
        # rows padded off a power-of-two stride: the transposing copy reads one float from each of
        # the 3k rows in turn, and rows 64 KB apart share cache sets (3.8 s → 0.05 s for 1M SH3)
        tmp = np.empty((3 * k, min(n, _BLOCK) + 16), np.float32)
        for s in range(0, n, _BLOCK):
            e = min(n, s + _BLOCK)
            t = tmp[:, : e - s]
            t[:3] = dc_t[:, s:e]
            t[3:] = rest_t[:, s:e]
            t *= steps
            flat[s:e] = t.T
    else:
        for s in range(0, n, _BLOCK):
            e = min(n, s + _BLOCK)
            # (one scalar step: ~8× faster than broadcasting a 3-vector along short rows)
            np.multiply(q.dc[s:e], steps[0], out=flat[s:e, :3], dtype=np.float32, casting="same_kind")
            if rest2 is not None:
                np.multiply(rest2[s:e], steps[3:], out=flat[s:e, 3:], dtype=np.float32, casting="same_kind")
    return dict(
        means=(q.pos.astype(np.float64) * params.pos_step).astype(np.float32),
        quats=dequantize_rotations(q.rot_idx, q.rot, params, rotation_bits(q.scale, params, q.op)),
        log_scales=q.scale.astype(np.float32) * np.float32(params.scale_step),
        opacity_logits=q.op.astype(np.float32) * np.float32(params.opacity_step),
        sh=sh,
    )


def dequantize(q: QMap, params: QuantParams, tile_size: float = 2.0) -> GaussianMap:
    """The map a receiver holds (float32 fields from the integer lattices)."""
    return GaussianMap(
        sh_degree=q.sh_degree,
        tile_size=tile_size,
        ids=q.ids.copy(),
        levels=q.level.copy(),
        **dequantize_fields(q, params),
    )


def quantize(gmap: GaussianMap, params: QuantParams | None = None) -> GaussianMap:
    """Exactly the map a receiver rebuilds from an encoding of ``gmap`` with ``params``."""
    params = params or QuantParams()
    return dequantize(to_qmap(gmap, params), params, gmap.tile_size)
