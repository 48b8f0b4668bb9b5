"""Training samples: camera images + calibration + lane ground truth in the ego frame, and batching.

A :class:`Sample` holds N camera images (uint8 RGB), their intrinsics K (N, 3, 3) for those images,
the extrinsics T_ego_cam (N, 4, 4) (optical frame → base_link) and GT elements [(class, (P, 2))] in
base_link (classes 0 divider, 1 ped_crossing (closed ring), 2 boundary). Sources: the driving world
(``gs_mapping.world``) and the built-in flat-road scenes (:mod:`gsmap_hd.synthetic`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .model_config import LossConfig, ModelConfig


@dataclass
class Sample:
    images: np.ndarray  # (N, H, W, 3) uint8
    K: np.ndarray  # (N, 3, 3)
    T_ego_cam: np.ndarray  # (N, 4, 4)
    elements: list = field(default_factory=list)


FITS = ("crop", "stretch")


def fit_to_aspect(h0: int, w0: int, h: int, w: int) -> tuple[int, int, int, int]:
    """The centred window (top, left, height, width) of an h0×w0 image that has the h×w aspect ratio
    (the whole image when it already has it)."""
    if w0 * h > h0 * w:  # wider than the model input: drop columns left and right
        wc = max(1, min(w0, round(h0 * w / h)))
        return 0, (w0 - wc) // 2, h0, wc
    hc = max(1, min(h0, round(w0 * h / w)))  # taller (e.g. 16:9 into 2:1): drop rows top and bottom
    return (h0 - hc) // 2, 0, hc, w0


def images_to_model(
    images: np.ndarray | torch.Tensor, K, size: tuple[int, int], fit: str = "crop", antialias: bool = False
):
    """(N, H, W, 3) uint8/float images + K for them → ((N, 3, h, w) float in [0, 1], K for those).

    The model's CNN saw square pixels (fx = fy) of world renders at its own input size (h, w). An image
    of another size is made to look like one of those:

    - ``fit="crop"`` (default) cuts the centred window of the model's aspect ratio (a 640×360 16:9
      frame loses 20 rows top and bottom for a 2:1 input), so the resize scales both axes alike and
      pixels stay square. ``"stretch"`` resizes the whole image anisotropically (fx ≠ fy: the
      geometry in K stays right, but the CNN sees every shape squashed — what made 640×360 bags score
      half the Chamfer mAP of direct renders with the shipped checkpoint, see bench/hd_bag.py).
    - ``antialias=False`` (default) samples the image bilinearly at each model pixel's centre ray,
      as the world renderer does for the training frames (one ray per pixel, no supersampling);
      ``True`` low-pass filters first (smoother, a different input distribution for the shipped
      model). Training frames already at the input size are passed through unchanged either way.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    x = torch.as_tensor(np.asarray(images))
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    x = x.float().permute(0, 3, 1, 2)
    h, w = size
    K = torch.as_tensor(np.asarray(K), dtype=torch.float32).clone()
    if fit == "crop" and tuple(x.shape[-2:]) != (h, w):
        top, left, hc, wc = fit_to_aspect(*x.shape[-2:], h, w)
        x = x[..., top : top + hc, left : left + wc]
        K[:, 0, 2] -= left
        K[:, 1, 2] -= top
    h0, w0 = x.shape[-2:]
    if (h0, w0) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=antialias)
        sx, sy = w / w0, h / h0
        # pixel centres at integers: u' = (u + 0.5) * s - 0.5
        K[:, 0, 0] *= sx
        K[:, 0, 1] *= sx
        K[:, 0, 2] = (K[:, 0, 2] + 0.5) * sx - 0.5
        K[:, 1, 1] *= sy
        K[:, 1, 2] = (K[:, 1, 2] + 0.5) * sy - 0.5
    return x.contiguous(), K


def collate(samples: list[Sample], m: ModelConfig, l: LossConfig | None = None):
    """Samples → (images (B, N, 3, H, W), K (B, N, 3, 3), T (B, N, 4, 4), targets or None)."""
    from .matching import build_targets

    ims, Ks = zip(*(images_to_model(s.images, s.K, tuple(m.image_size)) for s in samples), strict=False)
    T = torch.stack([torch.as_tensor(np.asarray(s.T_ego_cam), dtype=torch.float32) for s in samples])
    targets = [build_targets(s.elements, m, l) for s in samples] if l is not None else None
    return torch.stack(ims), torch.stack(Ks), T, targets


class SampleSource:
    """Deterministic samples by index: ``source[i]`` is always the same frame. ``x_range``,
    ``y_range``: the BEV patch the world's lanes are given for (the model's; the flat toy's road is
    ±45 m long whatever the patch)."""

    def __init__(
        self,
        kind: str = "flat",
        rig: str = "front",
        seed: int = 0,
        size: tuple[int, int] = (128, 256),
        x_range=(-30.0, 30.0),
        y_range=(-15.0, 15.0),
    ) -> None:
        self.kind, self.rig, self.seed, self.size = kind, rig, seed, tuple(size)
        self.x_range, self.y_range = tuple(x_range), tuple(y_range)
        self._world = None
        self._cache: dict[int, Sample] = {}

    def __getitem__(self, i: int) -> Sample:
        if i not in self._cache:
            self._cache[i] = self._make(i)
        return self._cache[i]

    def _make(self, i: int) -> Sample:
        h, w = self.size
        if self.kind == "flat":
            from .synthetic import generate

            return generate(self.seed * 1_000_003 + i, self.rig, w, h)
        if self.kind == "world":
            from .world_data import world_sample

            return world_sample(self.seed, i, self.rig, (w, h), self.x_range, self.y_range)
        raise ValueError(f"unknown data source {self.kind!r} (flat | world)")
