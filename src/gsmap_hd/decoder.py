"""DETR-style map decoder with hierarchical queries and our pure-PyTorch deformable attention.

Queries (MapTR's hierarchical scheme): E instance embeddings + K point embeddings, the query of
point k of instance e is their sum, so E*K queries share structure per instance and per position.
Each layer: self-attention over all E*K queries → deformable cross-attention into the BEV features
around each query's current Gaussian centre → FFN → a per-layer head that *refines* the Gaussian
state (x, y in inverse-sigmoid space of the normalised patch coordinates; sx, sy in logit space of
[scale_min, scale_max]; θ in radians) by adding a delta, as Deformable DETR refines boxes. The
reference for the next layer is the refined centre, detached. The class head reads the mean of an
instance's K point features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .gaussians2d import BEVGrid


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


class DeformableAttention(nn.Module):
    """Single-scale deformable attention (Zhu et al. 2021) with ``grid_sample``: each query samples
    ``points`` locations per head around its reference point, at learned offsets, and mixes them
    with learned softmax weights."""

    def __init__(self, dim: int, heads: int, points: int) -> None:
        super().__init__()
        self.heads, self.points, self.head_dim = heads, points, dim // heads
        self.offsets = nn.Linear(dim, heads * points * 2)
        self.weights = nn.Linear(dim, heads * points)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self._reset()

    def _reset(self) -> None:
        # Start sampling on rings around the reference, one direction per head (as Deformable DETR).
        nn.init.zeros_(self.offsets.weight)
        ang = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        d = torch.stack([ang.cos(), ang.sin()], -1)
        d = d / d.abs().max(-1, keepdim=True)[0]
        d = d[:, None, :].repeat(1, self.points, 1) * torch.arange(1, self.points + 1)[None, :, None]
        with torch.no_grad():
            self.offsets.bias.copy_(d.flatten())
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)
        nn.init.xavier_uniform_(self.value.weight)
        nn.init.zeros_(self.value.bias)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, query: torch.Tensor, ref_uv: torch.Tensor, bev: torch.Tensor) -> torch.Tensor:
        """query (B, Q, C); ref_uv (B, Q, 2) normalised patch coords; bev (B, C, H, W) → (B, Q, C)."""
        b, q, c = query.shape
        _, _, h, w = bev.shape
        hd, pn = self.heads, self.points
        value = self.value(bev.flatten(2).transpose(1, 2))  # (B, HW, C)
        value = value.transpose(1, 2).reshape(b * hd, self.head_dim, h, w)
        # offsets are in BEV cells: (du, dv) per head and point, normalised by the grid size
        off = self.offsets(query).reshape(b, q, hd, pn, 2)
        off = off / torch.tensor([h, w], dtype=off.dtype, device=off.device)
        loc = ref_uv[:, :, None, None, :] + off  # (B, Q, H, P, 2)
        grid = BEVGrid.uv_to_grid_sample(loc).permute(0, 2, 1, 3, 4).reshape(b * hd, q, pn, 2)
        sampled = F.grid_sample(
            value, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (B*H, D, Q, P)
        attn = self.weights(query).reshape(b, q, hd, pn).softmax(-1)
        attn = attn.permute(0, 2, 1, 3).reshape(b * hd, 1, q, pn)
        out = (sampled * attn).sum(-1)  # (B*H, D, Q)
        out = out.reshape(b, hd * self.head_dim, q).transpose(1, 2)
        return self.out(out)


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, points: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross = DeformableAttention(dim, heads, points)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.n1, self.n2, self.n3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pos, ref_uv, bev):
        qk = x + pos
        x = self.n1(x + self.drop(self.self_attn(qk, qk, x, need_weights=False)[0]))
        x = self.n2(x + self.drop(self.cross(x + pos, ref_uv, bev)))
        return self.n3(x + self.drop(self.ffn(x)))


class MapDecoder(nn.Module):
    """Outputs per layer: class logits (B, E, C) and Gaussian states (B, E, K, 5) (see module doc)."""

    def __init__(
        self,
        dim: int,
        num_instances: int,
        num_points: int,
        num_classes: int,
        layers: int,
        heads: int,
        points: int,
        ffn: int,
        dropout: float,
        scale_init_logit: float,
    ) -> None:
        super().__init__()
        self.E, self.K = num_instances, num_points
        self.instance = nn.Embedding(num_instances, 2 * dim)
        self.point = nn.Embedding(num_points, 2 * dim)
        self.ref = nn.Linear(dim, 2)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, points, ffn, dropout) for _ in range(layers))
        self.reg = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 5))
            for _ in range(layers)
        )
        self.cls = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU(), nn.Linear(dim, num_classes))
            for _ in range(layers)
        )
        self.scale_init_logit = scale_init_logit
        for head in self.reg:
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)
        prior = -math.log((1 - 0.01) / 0.01)  # focal-loss prior: initial p = 0.01
        for head in self.cls:
            nn.init.constant_(head[-1].bias, prior)
        nn.init.xavier_uniform_(self.ref.weight)
        nn.init.zeros_(self.ref.bias)

    def forward(self, bev: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        b = bev.shape[0]
        emb = self.instance.weight[:, None, :] + self.point.weight[None, :, :]  # (E, K, 2C)
        pos, x = emb.flatten(0, 1).chunk(2, dim=-1)
        pos = pos[None].expand(b, -1, -1)
        x = x[None].expand(b, -1, -1)
        ref = self.ref(pos).sigmoid()  # (B, Q, 2)
        state = torch.cat(
            [
                inverse_sigmoid(ref),
                torch.full_like(ref, self.scale_init_logit),
                torch.zeros_like(ref[..., :1]),
            ],
            -1,
        )  # (B, Q, 5)
        outs = []
        for layer, reg, cls in zip(self.layers, self.reg, self.cls, strict=False):
            x = layer(x, pos, state[..., :2].sigmoid().detach(), bev)
            state = state.detach() + reg(x)
            logits = cls(x.reshape(b, self.E, self.K, -1).mean(2))
            outs.append((logits, state.reshape(b, self.E, self.K, 5)))
        return outs
