"""Sliding-window optimisation: L1 + D-SSIM on colour, L1 on valid depth.

Each iteration renders one view of the window (the newest keyframe more often, since it holds the
newest Gaussians) and takes one Adam step (:class:`~.params.RowAdam`: state kept across keyframes,
only the rows the view sees) on the Gaussians' parameters. A step whose loss or gradients
are not finite is rejected before it touches anything: parameters and optimiser state stay as they
were, so a bad frame cannot poison the map.

Optimisation may run at ``render_scale`` of the image size (full resolution by default: the CPU
rasteriser's cost is mostly per Gaussian, so half resolution saves little); evaluation always
renders at full resolution.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..camera import Camera
from .densify import GradAccumulator
from .levels import LevelSubset
from .mapper_config import LevelsConfig, OptimConfig
from .metrics import SsimTarget, ssim_map
from .params import RowAdam, TorchGaussians

log = logging.getLogger(__name__)


@dataclass
class TrainView:
    """One supervised view at optimisation resolution."""

    camera: Camera  # at optimisation resolution (K scaled)
    rgb: torch.Tensor  # (h, w, 3) in [0, 1]
    depth: torch.Tensor | None  # (h, w) metres, 0 = invalid
    mask: torch.Tensor | None = None  # (h, w) bool: pixels with a target (None = all)
    weight: float = 1.0
    virtual: bool = False


def scaled_camera(camera: Camera, scale: float) -> Camera:
    """The same camera rendering an image ``scale`` times the size (pixel centres kept consistent)."""
    if scale == 1.0:
        return camera
    w, h = int(round(camera.width * scale)), int(round(camera.height * scale))
    sx, sy = w / camera.width, h / camera.height
    K = camera.K.copy()
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return Camera(K, w, h, camera.T_map_cam, camera.frame_id)


def resize_rgb(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    if rgb.shape[:2] == (h, w):
        return rgb
    t = torch.as_tensor(np.ascontiguousarray(rgb), dtype=torch.float32).permute(2, 0, 1)[None]
    return F.interpolate(t, size=(h, w), mode="area")[0].permute(1, 2, 0).numpy()


def resize_depth(depth: np.ndarray, w: int, h: int) -> np.ndarray:
    """Depth is not averaged (it would blend across edges and with invalid zeros): nearest sample."""
    if depth.shape == (h, w):
        return depth
    H, W = depth.shape
    v = np.minimum(((np.arange(h) + 0.5) * H / h).astype(int), H - 1)
    u = np.minimum(((np.arange(w) + 0.5) * W / w).astype(int), W - 1)
    return depth[v[:, None], u[None, :]]


def make_view(rgb: np.ndarray, depth: np.ndarray, camera: Camera, scale: float, device) -> TrainView:
    cam = scaled_camera(camera, scale)
    r = resize_rgb(rgb, cam.width, cam.height)
    d = resize_depth(depth, cam.width, cam.height)
    return TrainView(
        cam,
        torch.as_tensor(r, dtype=torch.float32, device=device),
        torch.as_tensor(d, dtype=torch.float32, device=device),
    )


class SsimTargets:
    """Each training view's :class:`SsimTarget` (its half of SSIM), made on first use and kept for
    the iterations after, at most ``limit`` views (the least recently used goes first)."""

    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self._kept: OrderedDict[int, tuple[TrainView, SsimTarget]] = OrderedDict()

    def of(self, view: TrainView) -> SsimTarget:
        key = id(view)  # (the view is kept alongside, so its id is not reused while it is here)
        if key in self._kept:
            self._kept.move_to_end(key)
        else:
            self._kept[key] = (view, SsimTarget.of_image(view.rgb))
            if len(self._kept) > self.limit:
                self._kept.popitem(last=False)
        return self._kept[key][1]


def view_loss(
    color: torch.Tensor,
    depth: torch.Tensor,
    view: TrainView,
    cfg: OptimConfig,
    targets: SsimTargets | None = None,
) -> torch.Tensor:
    """The view's loss; ``targets``: where to keep the view's SSIM half between calls (None: made
    here each call)."""
    if view.mask is None:
        l1 = (color - view.rgb).abs().mean()
        loss = (1 - cfg.lambda_dssim) * l1
        if cfg.lambda_dssim > 0 and min(color.shape[:2]) >= 11:
            target = view.rgb if targets is None else targets.of(view)
            loss = loss + cfg.lambda_dssim * (1 - ssim_map(color, target).mean())
        valid = view.depth > 0 if view.depth is not None else None
    else:  # a partial target (virtual view): masked L1 only
        m = view.mask
        loss = (color - view.rgb).abs()[m].mean() if m.any() else color.sum() * 0
        valid = m & (view.depth > 0) if view.depth is not None else None
    if view.depth is not None and cfg.lambda_depth > 0 and valid.any():
        loss = loss + cfg.lambda_depth * (depth[valid] - view.depth[valid]).abs().mean()
    return loss * view.weight


class WindowOptimizer:
    def __init__(self, cfg: OptimConfig, render_fn, levels: LevelsConfig | None = None):
        """``render_fn(params, camera) -> RenderOutput`` (differentiable colour, depth, alpha, meta);
        ``levels``: the multi-level loss's settings (None = off)."""
        self.cfg = cfg
        self.render_fn = render_fn
        self.levels = levels
        self._coarse_renders = 0  # round-robin over the coarse levels, across runs

    def coarse_loss(
        self, params: TorchGaussians, view: TrainView, it: int, targets: SsimTargets | None = None
    ) -> torch.Tensor | None:
        """Multi-level loss (ProGS): every ``loss_every``-th iteration, the loss of the map restricted
        to levels <= l against the same target (l cycles over 0..count-2), weighted. None when off,
        not due, or level <= l is empty."""
        lv = self.levels
        if lv is None or not lv.multi_level_loss or lv.count <= 1 or lv.loss_weight <= 0:
            return None
        if it % lv.loss_every != lv.loss_every - 1:
            return None
        level = self._coarse_renders % (lv.count - 1)
        self._coarse_renders += 1
        sub = LevelSubset(params, level)
        if len(sub) == 0:
            return None
        out = self.render_fn(sub, view.camera)
        return lv.loss_weight * view_loss(out.color, out.depth, view, self.cfg, targets)

    def make_adam(self, params: TorchGaussians) -> RowAdam:
        c = self.cfg
        lrs = {
            "means": c.lr_means,
            "quats": c.lr_quats,
            "log_scales": c.lr_log_scales,
            "opacity_logits": c.lr_opacity,
            "sh": c.lr_sh,
        }
        return RowAdam(params, lrs)

    def pick(self, views: list[TrainView], rng: np.random.Generator) -> TrainView:
        if len(views) == 1 or rng.random() < self.cfg.newest_fraction:
            return views[-1]
        return views[int(rng.integers(0, len(views) - 1))]

    def run(
        self,
        params: TorchGaussians,
        views: list[TrainView],
        iterations: int,
        rng: np.random.Generator,
        acc: GradAccumulator | None = None,
        virtual: list[TrainView] | None = None,
        virtual_every: int = 0,
        on_step: Callable[[], object] | None = None,
    ) -> dict:
        """Optimise ``params`` in place; returns step statistics. ``on_step`` is called after each
        iteration, taken or rejected (a progress report of a long run)."""
        stats = {"steps": 0, "rejected": 0, "loss_first": None, "loss_last": None}
        if len(params) == 0 or not views or iterations <= 0:
            return stats
        opt = self.make_adam(params)
        tensors = list(params.parameters().values())
        # the views' SSIM halves, for the views a keyframe trains on (window and random history)
        targets = SsimTargets(self.cfg.window + self.cfg.random_history)
        for it in _counted(iterations, on_step):
            use_virtual = bool(virtual) and virtual_every and (it % virtual_every == virtual_every - 1)
            view = virtual[int(rng.integers(0, len(virtual)))] if use_virtual else self.pick(views, rng)
            opt.zero_grad()
            out = self.render_fn(params, view.camera)
            loss = view_loss(out.color, out.depth, view, self.cfg, targets)
            if not view.virtual:
                coarse = self.coarse_loss(params, view, it, targets)
                loss = loss if coarse is None else loss + coarse
            means2d = out.meta.get("means2d")
            track = acc is not None and not view.virtual and means2d is not None and means2d.requires_grad
            if track:
                means2d.retain_grad()
            if not torch.isfinite(loss):
                stats["rejected"] += 1
                log.warning(f"non-finite loss {float(loss.detach())}: step rejected, map unchanged")
                continue
            loss.backward()
            if not all(t.grad is None or bool(torch.isfinite(t.grad).all()) for t in tensors):
                stats["rejected"] += 1
                log.warning("non-finite gradient: step rejected, map unchanged")
                continue
            if track:
                cam = view.camera
                acc.add(means2d.grad, out.meta["radii"], cam.width, cam.height, out.meta.get("weight_sum"))
            opt.step()
            stats["steps"] += 1
            value = float(loss.detach())
            stats["loss_first"] = value if stats["loss_first"] is None else stats["loss_first"]
            stats["loss_last"] = value
        return stats


def _counted(iterations: int, on_step: Callable[[], object] | None):
    """``range(iterations)``, calling ``on_step`` as each iteration's body ends (a ``continue`` too)."""
    for it in range(iterations):
        yield it
        if on_step is not None:
            on_step()
