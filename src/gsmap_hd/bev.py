"""Parameter-free geometric lifting of N camera feature maps into the ego BEV grid.

Every BEV cell centre (x, y) is placed at each of a few heights z (``lift_heights``), projected into
every camera with its intrinsics K and extrinsics T_ego_cam (optical frame, REP-103), and the image
features there are bilinearly sampled. Samples are averaged over the cameras that see the point
(in front of the camera and inside the image) and the heights are stacked as channels, so a learned
1x1 convolution can weigh them. Works for any number of cameras (1 front, 6 surround, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .gaussians2d import BEVGrid


def bev_points(grid: BEVGrid, heights: torch.Tensor) -> torch.Tensor:
    """(Z, H, W, 3) ego-frame points of the BEV cells at each height."""
    xy = grid.pixel_centres(dtype=heights.dtype, device=heights.device)
    z = heights[:, None, None, None].expand(-1, grid.height, grid.width, 1)
    return torch.cat([xy[None].expand(len(heights), -1, -1, -1), z], dim=-1)


def lift(
    features: torch.Tensor,
    K: torch.Tensor,
    T_ego_cam: torch.Tensor,
    image_hw: tuple[int, int],
    points: torch.Tensor,
    min_depth: float = 0.2,
) -> torch.Tensor:
    """features (B, N, C, h, w) of images of size image_hw; K (B, N, 3, 3) for those images;
    T_ego_cam (B, N, 4, 4); points (Z, H, W, 3) → BEV (B, Z*C, H, W)."""
    b, n, c, fh, fw = features.shape
    zc, hb, wb, _ = points.shape
    # T_cam_ego of a rigid T_ego_cam (Rᵀ, −Rᵀt; inputs are checked to be rotations), in plain matmuls:
    # ONNX has no matrix inverse and TensorRT prefers MatMul to Einsum
    R_t = T_ego_cam[..., :3, :3].transpose(-1, -2)  # (B, N, 3, 3) = R_cam_ego
    t = -(R_t @ T_ego_cam[..., :3, 3:4])  # (B, N, 3, 1)
    p = points.reshape(-1, 3)
    pc = torch.matmul(p, R_t.transpose(-1, -2)) + t.transpose(-1, -2)  # (B, N, P, 3)
    depth = pc[..., 2]
    uvw = torch.matmul(pc, K.transpose(-1, -2))
    uv = uvw[..., :2] / depth.clamp_min(1e-3)[..., None]
    ih, iw = image_hw
    gx = (uv[..., 0] + 0.5) / iw * 2 - 1  # pixel centres at integer u (OpenCV/ROS convention)
    gy = (uv[..., 1] + 0.5) / ih * 2 - 1
    valid = (depth > min_depth) & (gx.abs() <= 1) & (gy.abs() <= 1)  # (B, N, P)
    grid = torch.stack([gx, gy], -1).reshape(b * n, zc * hb, wb, 2)
    sampled = F.grid_sample(
        features.reshape(b * n, c, fh, fw), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (B*N, C, Z*H, W)
    sampled = sampled.reshape(b, n, c, zc, hb, wb)
    m = valid.reshape(b, n, 1, zc, hb, wb).to(sampled.dtype)
    fused = (sampled * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, C, Z, H, W)
    return fused.reshape(b, c * zc, hb, wb)


class BEVEncoder(nn.Module):
    """Heights → channels (1x1), learned BEV position embedding, a few residual 3x3 conv blocks."""

    def __init__(self, dim: int, num_heights: int, grid: BEVGrid, layers: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(dim * num_heights, dim, 1), nn.BatchNorm2d(dim), nn.ReLU())
        self.pos = nn.Parameter(torch.zeros(1, dim, grid.height, grid.width))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(dim, dim, 3, padding=1, bias=False),
                nn.BatchNorm2d(dim),
                nn.ReLU(),
                nn.Conv2d(dim, dim, 3, padding=1, bias=False),
                nn.BatchNorm2d(dim),
            )
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x) + self.pos
        for blk in self.blocks:
            x = torch.relu(x + blk(x))
        return x
