"""The smallest GSMap model the HD tests build (20 x 10 BEV cells, 32 x 64 images, 6 instances of 6
points): one place for its sizes. torch is imported only when a config is made (test files of the
Humble run import this module without torch)."""

from __future__ import annotations

TINY = dict(
    bev_h=20,
    bev_w=10,
    image_size=(32, 64),
    small_channels=(8, 16, 16),
    embed_dim=32,
    num_instances=6,
    num_points=6,
    num_layers=2,
    num_heads=4,
    ffn_dim=32,
)


def tiny_config(**changes):
    """``ModelConfig`` of :data:`TINY`, with ``changes``."""
    from gsmap_hd.model_config import ModelConfig

    return ModelConfig(**{**TINY, **changes})
