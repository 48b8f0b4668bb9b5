"""Ground-truth targets and the two-level Hungarian matching of GSMap/MapTR.

Instance level: predictions ↔ GT elements by ``scipy.optimize.linear_sum_assignment`` over
  cls_cost·focal(class) + pts_cost·L1(points) + iou_cost·(1 - IoU(rendered masks)),
where the point cost against a GT is the minimum over its permutation-equivalent orderings (a
polyline read either way; a closed ring — a crossing, or any element whose last point is its first
— from any start vertex, either way).
Point level: the ordering that attained that minimum is the matched target's point order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .errors import HDDataError
from .eval_io import MAX_ABS_COORD
from .gaussians2d import BEVGrid, clip_to_patch, orderings, resample
from .model_config import POLYGON_CLASSES, LossConfig, ModelConfig
from .raster import polyline_mask, rasterize


@dataclass
class FrameTargets:
    labels: torch.Tensor  # (G,) long
    points: torch.Tensor  # (G, K, 2) metres, canonical order
    orders: torch.Tensor  # (G, P, K, 2) metres, all equivalent orderings (padded)
    order_valid: torch.Tensor  # (G, P) bool
    masks: torch.Tensor  # (G, H, W) at the loss raster
    cost_masks: torch.Tensor  # (G, h, w) at the coarser matching raster

    def to(self, device) -> FrameTargets:
        return FrameTargets(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def loss_grid(m: ModelConfig, l: LossConfig) -> BEVGrid:
    return BEVGrid.with_resolution(m.x_range, m.y_range, l.raster_res)


def cost_grid(m: ModelConfig, l: LossConfig) -> BEVGrid:
    return BEVGrid.with_resolution(m.x_range, m.y_range, l.iou_cost_res)


def prepare_elements(elements, m: ModelConfig) -> list[tuple[int, np.ndarray]]:
    """GT (class, points) in the ego frame → clipped to the patch, resampled to K points."""
    grid = BEVGrid(tuple(m.x_range), tuple(m.y_range), m.bev_h, m.bev_w)
    out = []
    for cls, pts in elements:
        cls = int(cls)
        if not 0 <= cls < m.num_classes:
            raise HDDataError(f"unknown GT class {cls} (classes are 0..{m.num_classes - 1})")
        if not np.all(np.isfinite(np.asarray(pts, np.float64))):
            raise HDDataError(f"GT element of class {cls} has non-finite points")
        if np.abs(np.asarray(pts, np.float64)).max(initial=0.0) > MAX_ABS_COORD:
            # (ego frame: wrong units or garbage; clipping such a line to the patch loses it)
            raise HDDataError(f"GT element of class {cls} has a point beyond ±{MAX_ABS_COORD:g} m")
        for piece in clip_to_patch(cls, pts, grid, cls in POLYGON_CLASSES):
            out.append((cls, resample(piece, m.num_points, is_closed(cls, piece))))
    return out


def is_closed(cls: int, pts: np.ndarray) -> bool:
    """A ring: a polygon class, or any element whose last point is its first (MapTR's
    ``shift_fixed_num_sampled_points_v2`` decides by geometry, whatever the class: a road boundary
    round an island inside the patch is traced equally well from every start vertex)."""
    return cls in POLYGON_CLASSES or (len(pts) > 2 and np.allclose(pts[0], pts[-1]))


def build_targets(elements, m: ModelConfig, l: LossConfig) -> FrameTargets:
    """One frame's GT elements [(class, (P, 2) points), ...] → tensors for matching and losses."""
    prepared = prepare_elements(elements, m)
    k = m.num_points
    closed = [is_closed(c, pts) for c, pts in prepared]
    p_max = 2 * (k - 1) if any(closed) else 2
    g = len(prepared)
    orders = np.zeros((g, p_max, k, 2), np.float32)
    valid = np.zeros((g, p_max), bool)
    for i, (_, pts) in enumerate(prepared):
        o = orderings(pts, closed[i])
        orders[i, : len(o)] = o
        valid[i, : len(o)] = True
    points = torch.tensor(np.array([p for _, p in prepared], np.float32).reshape(g, k, 2))
    lg, cg = loss_grid(m, l), cost_grid(m, l)
    masks = (
        polyline_mask(points, lg, l.gt_line_width_px * lg.res[0])
        if g
        else torch.zeros(0, lg.height, lg.width)
    )
    cmasks = (
        polyline_mask(points, cg, l.gt_line_width_px * cg.res[0])
        if g
        else torch.zeros(0, cg.height, cg.width)
    )
    return FrameTargets(
        torch.tensor([c for c, _ in prepared], dtype=torch.long),
        points,
        torch.from_numpy(orders),
        torch.from_numpy(valid),
        masks,
        cmasks,
    )


def focal_cost(logits: torch.Tensor, labels: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """(E, C) logits, (G,) labels → (E, G): MapTR/Deformable-DETR focal classification cost."""
    p = logits.sigmoid()
    neg = (1 - alpha) * p**gamma * (-(1 - p + 1e-8).log())
    pos = alpha * (1 - p) ** gamma * (-(p + 1e-8).log())
    return (pos - neg)[:, labels]


def ordered_l1(
    pred_uv: torch.Tensor, orders_uv: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """pred (E, K, 2), orders (G, P, K, 2), valid (G, P) in normalised coords →
    (E, G) mean per-point L1 (|du| + |dv|) of the best ordering, and its index (E, G). MapTR's
    ``OrderedPtsL1Cost`` sums over the points: our pts_cost acts as pts_cost / K on its sum
    (``LossConfig``)."""
    d = (pred_uv[:, None, None] - orders_uv[None]).abs().sum(-1).mean(-1)  # (E, G, P)
    d = d.masked_fill(~valid[None], float("inf"))
    return d.min(-1)


def soft_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(E, H, W) x (G, H, W) masks in [0, 1] → (E, G) IoU (products for intersection)."""
    a, b = a.flatten(1), b.flatten(1)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return inter / union.clamp_min(1e-6)


@torch.no_grad()
def hungarian_match(
    logits: torch.Tensor, params: torch.Tensor, t: FrameTargets, grid: BEVGrid, cgrid: BEVGrid, l: LossConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One frame: logits (E, C), params (E, K, 5) → (pred_idx, gt_idx, ordering_idx) long tensors."""
    g = t.labels.numel()
    empty = torch.zeros(0, dtype=torch.long, device=logits.device)
    if g == 0:
        return empty, empty, empty
    cost = l.cls_cost * focal_cost(logits, t.labels, l.focal_alpha, l.focal_gamma)
    pts_cost, best = ordered_l1(grid.normalize(params[..., :2]), grid.normalize(t.orders), t.order_valid)
    cost = cost + l.pts_cost * pts_cost
    if l.iou_cost > 0:
        cost = cost + l.iou_cost * (1 - soft_iou(rasterize(params, cgrid), t.cost_masks))
    rows, cols = linear_sum_assignment(cost.double().cpu().numpy())
    rows = torch.as_tensor(rows, dtype=torch.long, device=logits.device)
    cols = torch.as_tensor(cols, dtype=torch.long, device=logits.device)
    return rows, cols, best[rows, cols]
