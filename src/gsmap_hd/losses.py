"""GSMap's training losses, applied to every decoder layer (aux) after matching:

- classification: sigmoid focal loss (α 0.25, γ 2) over all E instances x C classes, normalised by
  the number of GT elements;
- vector: L1 between matched Gaussian centres and the GT points in the best ordering (normalised patch
  coordinates as MapTR, but a mean over the K points where MapTR's ``PtsL1Loss`` sums them: a
  weight acts as weight / K would on MapTR's, see :class:`gsmap_hd.model_config.LossConfig`), per
  GT element;
- raster: the matched elements' Gaussians are rendered (:func:`gsmap_hd.raster.rasterize`) and
  compared with the GT element masks by class-balanced BCE plus D-SSIM (1 - SSIM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .gaussians2d import BEVGrid
from .matching import FrameTargets, cost_grid, hungarian_match, loss_grid
from .model_config import LossConfig, ModelConfig
from .raster import rasterize, ssim


def sigmoid_focal(logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    w = alpha * target + (1 - alpha) * (1 - target)
    return (w * (1 - pt) ** gamma * ce).sum()


def raster_loss(pred: torch.Tensor, gt: torch.Tensor, l: LossConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """pred, gt (M, H, W) → (weighted BCE, D-SSIM), each a mean over the M masks."""
    pos = gt.flatten(1).sum(1)
    neg = gt[0].numel() - pos
    pw = (neg / pos.clamp_min(1)).clamp(1.0, l.bce_pos_weight_max)[:, None, None]
    p = pred.clamp(1e-6, 1 - 1e-6)
    bce = -(pw * gt * p.log() + (1 - gt) * (1 - p).log())
    bce = (bce.flatten(1).sum(1) / (pw[:, 0, 0] * pos + neg)).mean()
    dssim = (1 - ssim(pred, gt)).mean()
    return bce, dssim


class GSMapCriterion:
    def __init__(self, m: ModelConfig, l: LossConfig) -> None:
        self.m, self.l = m, l
        self.patch = BEVGrid(tuple(m.x_range), tuple(m.y_range), m.bev_h, m.bev_w)
        self.grid = loss_grid(m, l)
        self.cgrid = cost_grid(m, l)

    def layer_loss(
        self,
        logits: torch.Tensor,
        params: torch.Tensor,
        targets: list[FrameTargets],
        raster_scale: float = 1.0,
    ) -> dict:
        l = self.l
        num_gt = max(sum(t.labels.numel() for t in targets), 1)
        cls_target = torch.zeros_like(logits)
        pred_pts, gt_pts, pred_g, gt_masks = [], [], [], []
        for i, t in enumerate(targets):
            rows, cols, order = hungarian_match(logits[i], params[i], t, self.patch, self.cgrid, l)
            cls_target[i, rows, t.labels[cols]] = 1.0
            pred_pts.append(params[i, rows, :, :2])
            gt_pts.append(t.orders[cols, order])
            pred_g.append(params[i, rows])
            gt_masks.append(t.masks[cols])
        out = {"cls": sigmoid_focal(logits, cls_target, l.focal_alpha, l.focal_gamma) / num_gt}
        pp, gp = torch.cat(pred_pts), torch.cat(gt_pts)
        k = self.m.num_points  # a mean over the points: MapTR's sum / K (LossConfig says why)
        out["pts"] = (
            (self.patch.normalize(pp) - self.patch.normalize(gp)).abs().sum() / (num_gt * k)
            if pp.numel()
            else params.sum() * 0
        )
        if l.raster_weight > 0 and raster_scale > 0 and pp.numel():
            masks = rasterize(torch.cat(pred_g), self.grid)
            out["bce"], out["dssim"] = raster_loss(masks, torch.cat(gt_masks), l)
        else:
            out["bce"] = out["dssim"] = params.sum() * 0
        out["total"] = (
            l.cls_weight * out["cls"]
            + l.pts_weight * out["pts"]
            + raster_scale * l.raster_weight * (l.bce_weight * out["bce"] + l.dssim_weight * out["dssim"])
        )
        return out

    def raster_scale(self, step: int | None) -> float:
        """The raster term ramps in linearly over ``raster_warmup_steps`` (None = fully on): pixel
        losses on Gaussians far from any GT mostly pull scales, so centres are first placed by the
        vector loss."""
        w = self.l.raster_warmup_steps
        return 1.0 if step is None or w <= 0 else min(1.0, step / w)

    def __call__(self, outputs: dict, targets: list[FrameTargets], step: int | None = None) -> dict:
        layers = list(zip(outputs["logits"], outputs["params"], strict=False))
        if not self.l.aux_loss:
            layers = layers[-1:]
        rs = self.raster_scale(step)
        n = len(layers)
        per = [
            self.layer_loss(lg, pr, targets, rs if (self.l.raster_aux or i == n - 1) else 0.0)
            for i, (lg, pr) in enumerate(layers)
        ]
        total = sum(p["total"] for p in per)
        out = {f"{k}": per[-1][k].detach() for k in per[-1] if k != "total"}
        out["loss"] = total
        return out
