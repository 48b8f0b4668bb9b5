"""The GSMap network: images from N cameras → per decoder layer, class logits and K Gaussians per
element instance, in metres in the ego BEV frame."""

from __future__ import annotations

import math

import torch
from torch import nn

from .backbone import build_backbone
from .bev import BEVEncoder, bev_points, lift
from .decoder import MapDecoder
from .gaussians2d import BEVGrid
from .model_config import ModelConfig

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class GSMapModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = BEVGrid(tuple(cfg.x_range), tuple(cfg.y_range), cfg.bev_h, cfg.bev_w)
        self.backbone = build_backbone(cfg.backbone, cfg.small_channels, cfg.embed_dim)
        self.register_buffer("heights", torch.tensor(cfg.lift_heights, dtype=torch.float32), persistent=False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.bev_encoder = BEVEncoder(cfg.embed_dim, len(cfg.lift_heights), self.grid, cfg.bev_encoder_layers)
        f = (cfg.scale_init - cfg.scale_min) / (cfg.scale_max - cfg.scale_min)
        self.decoder = MapDecoder(
            cfg.embed_dim,
            cfg.num_instances,
            cfg.num_points,
            cfg.num_classes,
            cfg.num_layers,
            cfg.num_heads,
            cfg.deform_points,
            cfg.ffn_dim,
            cfg.dropout,
            scale_init_logit=math.log(f / (1 - f)),
        )

    def state_to_params(self, state: torch.Tensor) -> torch.Tensor:
        """Decoder state (..., 5) → Gaussian parameters (x, y, sx, sy, θ) in metres/radians."""
        c = self.cfg
        xy = self.grid.denormalize(state[..., :2].sigmoid())
        s = c.scale_min + (c.scale_max - c.scale_min) * state[..., 2:4].sigmoid()
        return torch.cat([xy, s, state[..., 4:5]], dim=-1)

    def bev_features(self, images: torch.Tensor, K: torch.Tensor, T_ego_cam: torch.Tensor) -> torch.Tensor:
        b, n, _, h, w = images.shape
        x = (images.reshape(b * n, 3, h, w) - self.mean) / self.std
        feats = self.backbone(x)
        feats = feats.reshape(b, n, *feats.shape[1:])
        pts = bev_points(self.grid, self.heights)
        return self.bev_encoder(lift(feats, K, T_ego_cam, (h, w), pts))

    def forward(self, images: torch.Tensor, K: torch.Tensor, T_ego_cam: torch.Tensor) -> dict:
        """images (B, N, 3, H, W) RGB in [0, 1] at ``cfg.image_size``; K (B, N, 3, 3) intrinsics of those
        images; T_ego_cam (B, N, 4, 4) camera optical frame → base_link.

        Returns ``{"logits": [(B, E, C)] per layer, "params": [(B, E, K, 5)] per layer}``, last = final."""
        h, w = self.cfg.image_size
        if images.shape[-2:] != (h, w):
            raise ValueError(f"images are {tuple(images.shape[-2:])}, the model takes {(h, w)}")
        bev = self.bev_features(images, K, T_ego_cam)
        outs = self.decoder(bev)
        return {"logits": [o[0] for o in outs], "params": [self.state_to_params(o[1]) for o in outs]}


def count_parameters(model: nn.Module) -> dict[str, int]:
    parts = {name: sum(p.numel() for p in m.parameters()) for name, m in model.named_children()}
    parts["total"] = sum(p.numel() for p in model.parameters())
    return parts
