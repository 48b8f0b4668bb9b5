"""Training augmentation that keeps images, calibration and ground truth consistent.

- Mirror: the frame as it would look in a world mirrored left-right about base_link's x-z plane.
  Each image is flipped horizontally (u' = w − 1 − u, so cx' = w − 1 − cx), each extrinsic becomes
  S_ego · T_ego_cam · S_cam with S_ego = diag(1, −1, 1) (y → −y) and S_cam = diag(−1, 1, 1) (optical
  x → −x), which keeps it a rotation; GT y → −y. For a camera on the symmetry plane (the front camera)
  the extrinsic is unchanged. Mirrored traffic drives on the left: the classes are symmetric.
- Colour: per-frame brightness, contrast and per-channel gain in [1 − s, 1 + s].
"""

from __future__ import annotations

import numpy as np

from .data import Sample

S_EGO = np.diag([1.0, -1.0, 1.0, 1.0])
S_CAM = np.diag([-1.0, 1.0, 1.0, 1.0])


def mirror(s: Sample) -> Sample:
    w = s.images.shape[2]
    K = np.array(s.K, np.float64, copy=True)
    K[:, 0, 2] = (w - 1) - K[:, 0, 2]
    K[:, 0, 1] = -K[:, 0, 1]  # skew (0 for our cameras) changes sign with the flipped u axis
    T = S_EGO[None] @ np.asarray(s.T_ego_cam, np.float64) @ S_CAM[None]
    els = [(c, np.asarray(p, np.float64) * np.array([1.0, -1.0])) for c, p in s.elements]
    return Sample(np.ascontiguousarray(s.images[:, :, ::-1]), K, T, els)


def jitter_colour(s: Sample, strength: float, rng: np.random.Generator) -> Sample:
    im = s.images.astype(np.float32)
    bright = rng.uniform(1 - strength, 1 + strength)
    contrast = rng.uniform(1 - strength, 1 + strength)
    gain = rng.uniform(1 - strength / 2, 1 + strength / 2, size=3).astype(np.float32)
    mean = im.mean(axis=(1, 2, 3), keepdims=True)
    im = ((im - mean) * contrast + mean) * bright * gain
    return Sample(np.clip(im + 0.5, 0, 255).astype(np.uint8), s.K, s.T_ego_cam, s.elements)


def augment(s: Sample, flip_p: float, colour: float, rng: np.random.Generator) -> tuple[Sample, bool]:
    """(augmented sample, whether it was mirrored)."""
    flipped = bool(flip_p > 0 and rng.random() < flip_p)
    if flipped:
        s = mirror(s)
    if colour > 0:
        s = jitter_colour(s, colour, rng)
    return s, flipped
