"""Densify and prune on CPU (our own, after 3DGS's adaptive density control), and the hard cap.

During a keyframe's optimisation the mapper accumulates, per Gaussian, the norm of the gradient of
its mean. Afterwards Gaussians whose average gradient is high (under-reconstructed regions) are
cloned when small and split in two when large; then transparent and oversized ones are pruned;
finally the cap removes the least contributing Gaussians until the count fits.

Contribution (for the cap) is opacity × projected area proxy (product of the two largest scales),
a view-independent estimate of how much a Gaussian can cover: a faint, tiny Gaussian is the cheapest
to lose.
"""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import quat_to_matrix
from .levels import finer
from .mapper_config import DensifyConfig
from .params import TorchGaussians


class GradAccumulator:
    """Per-Gaussian statistics over one keyframe's optimisation: the mean norm of the gradient of
    the projected 2D mean (in NDC units, as 3DGS's threshold is stated) over the views that saw it,
    and the largest blending weight it had in any view (its contribution, for the cap).

    As gsplat's DefaultStrategy and 3DGS: x scaled by width / 2 and y by height / 2 before the norm,
    and every view where the Gaussian was drawn (radii > 0) counts, with its gradient or without
    (one hidden behind opaque ones in most views must not keep the average of the few it showed in).
    """

    def __init__(self, n: int):
        self.sum = np.zeros(n)
        self.count = np.zeros(n)
        self.weight = np.zeros(n)

    def add(
        self,
        grad_means2d: torch.Tensor | None,
        radii: torch.Tensor,
        width: int,
        height: int,
        weight_sum: torch.Tensor | None = None,
    ) -> None:
        """One view: the pixel gradient of rasterize's meta["means2d"] (None: no gradient reached
        it) and that render's meta["radii"] and image size."""
        # (N, 2) from the CPU backend, gsplat's own (1, N, 2) from CUDA (rasterize's meta).
        seen = (radii.detach().reshape(-1, 2) > 0).all(-1).cpu().numpy()
        if grad_means2d is not None:
            g = grad_means2d.detach().reshape(-1, 2).cpu().numpy() * [0.5 * width, 0.5 * height]
            self.sum[seen] += np.linalg.norm(g[seen], axis=-1)  # pixels → NDC
        self.count[seen] += 1
        if weight_sum is not None:
            self.weight = np.maximum(self.weight, weight_sum.detach().cpu().numpy())

    def mean(self) -> np.ndarray:
        return self.sum / np.maximum(self.count, 1)


def contribution(params: TorchGaussians) -> np.ndarray:
    """Blending weight (pixels' worth of colour) each Gaussian contributes, the largest seen in any
    optimised view; where never measured (new rows) a view-independent proxy opacity × area is used,
    scaled so it never loses against measured weights of old rows by accident."""
    w = params.contrib.copy()
    unknown = ~np.isfinite(w)
    if unknown.any():
        s = np.sort(params.numpy("log_scales")[unknown], axis=1)
        op = 1.0 / (1.0 + np.exp(-params.numpy("opacity_logits")[unknown].astype(np.float64)))
        w[unknown] = 1e9 * (1.0 + op * np.exp(s[:, 1] + s[:, 2]))
    return w


def densify(
    params: TorchGaussians,
    acc: GradAccumulator,
    cam_centre: np.ndarray,
    cfg: DensifyConfig,
    rng: np.random.Generator,
    level_count: int = 1,
) -> dict[str, int]:
    """Clone/split high-gradient Gaussians (appended as new rows); split parents are pruned.
    Octree levels (levels.py): a clone goes one level finer than its source; a split's first child
    takes the parent's level, the second one level finer."""
    n = len(params)
    if n == 0 or not cfg.enabled:
        return {"cloned": 0, "split": 0}
    g = acc.mean()
    cand = np.nonzero(g > cfg.grad_threshold)[0]
    limit = int(cfg.max_fraction * n)
    if len(cand) > limit:
        cand = cand[np.argsort(-g[cand])[:limit]]
    if len(cand) == 0:
        return {"cloned": 0, "split": 0}
    means = params.numpy("means")[cand]
    log_s = params.numpy("log_scales")[cand]
    dist = np.linalg.norm(means - cam_centre, axis=1)
    big = np.exp(log_s.max(axis=1)) > cfg.split_scale_ratio * np.maximum(dist, 1e-3)
    fields = {k: params.numpy(k)[cand] for k in ("means", "quats", "log_scales", "opacity_logits", "sh")}
    # Clones: same parameters; they separate as gradients differ. Splits: two samples from the
    # parent's distribution with scales / 1.6 (as in 3DGS); the parent goes.
    clone = {k: v[~big] for k, v in fields.items()}
    split = {k: np.concatenate([v[big], v[big]]) for k, v in fields.items()}
    if big.any():
        q = fields["quats"][big]
        rot = np.stack([quat_to_matrix(x / np.linalg.norm(x)) for x in q])
        std = np.exp(fields["log_scales"][big])
        offs = rng.standard_normal((2,) + std.shape) * std
        offs = np.einsum("nij,knj->kni", rot, offs).reshape(-1, 3)
        split["means"] = (split["means"] + offs).astype(np.float32)
        split["log_scales"] = (split["log_scales"] - np.log(1.6)).astype(np.float32)
    new = {k: np.concatenate([clone[k], split[k]]) for k in fields}
    lv = params.levels[cand]
    new_levels = np.concatenate([finer(lv[~big], level_count), lv[big], finer(lv[big], level_count)])
    keep = np.ones(n, bool)
    keep[cand[big]] = False
    params.keep(keep)
    params.append(**new)
    params.levels[n - int(big.sum()) :] = new_levels
    return {"cloned": int((~big).sum()), "split": int(big.sum())}


def prune(params: TorchGaussians, cfg: DensifyConfig) -> int:
    """Drop nearly transparent and oversized Gaussians."""
    if len(params) == 0:
        return 0
    op = 1.0 / (1.0 + np.exp(-params.numpy("opacity_logits").astype(np.float64)))
    size = np.exp(params.numpy("log_scales").max(axis=1))
    keep = (op >= cfg.min_opacity) & (size <= cfg.max_scale_m)
    params.keep(keep)
    return int((~keep).sum())


def enforce_cap(params: TorchGaussians, max_gaussians: int) -> int:
    """Remove the least contributing Gaussians until at most ``max_gaussians`` remain."""
    n = len(params)
    if n <= max_gaussians:
        return 0
    order = np.argsort(contribution(params), kind="stable")
    keep = np.ones(n, bool)
    keep[order[: n - max_gaussians]] = False
    params.keep(keep)
    return n - max_gaussians
