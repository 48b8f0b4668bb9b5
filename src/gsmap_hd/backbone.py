"""Image backbones written here (no torchvision): a small residual CNN (stride 16) for CPU training
and a ResNet-50-class bottleneck network (stride 32) for the paper-size config. Both return one
feature map projected to ``embed_dim`` channels."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, 3, stride), _conv_bn(cout, cout, 3, 1, relu=False))
        self.skip = (
            nn.Identity() if stride == 1 and cin == cout else _conv_bn(cin, cout, 1, stride, relu=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            _conv_bn(cin, width, 1), _conv_bn(width, width, 3, stride), _conv_bn(width, cout, 1, relu=False)
        )
        self.skip = (
            nn.Identity() if stride == 1 and cin == cout else _conv_bn(cin, cout, 1, stride, relu=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class SmallBackbone(nn.Module):
    """Stem (stride 2) + one residual block per stage, each stride 2: output stride 2^len(channels)."""

    def __init__(self, channels: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        self.stem = _conv_bn(3, channels[0], 3, 2)
        blocks = [BasicBlock(a, b, 2) for a, b in zip(channels[:-1], channels[1:], strict=False)]
        self.stages = nn.Sequential(*blocks)
        self.proj = nn.Conv2d(channels[-1], out_dim, 1)
        self.stride = 2 ** len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stages(self.stem(x)))


class ResNet50(nn.Module):
    """ResNet-50 layout (bottlenecks 3-4-6-3, widths 64..512, C5 at stride 32), randomly initialised."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for width, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(n):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * Bottleneck.expansion
        self.stages = nn.Sequential(*layers)
        self.proj = nn.Conv2d(cin, out_dim, 1)
        self.stride = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stages(self.stem(x)))


def build_backbone(kind: str, channels: tuple[int, ...], out_dim: int) -> nn.Module:
    if kind == "small":
        return SmallBackbone(tuple(channels), out_dim)
    if kind == "resnet50":
        return ResNet50(out_dim)
    raise ValueError(f"unknown backbone {kind!r}")
