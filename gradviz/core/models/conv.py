"""A convolutional stack of residual blocks in the style of d2l's `Residual` (seed 001).

    stem: Conv3x3(C -> w) -> BatchNorm -> ReLU            (always normalised: not a block)
    stages: 4 stages of `depth` blocks, channels w, 2w, 4w, 8w; the first block of stages 2-4 has
            stride 2 and a 1x1 conv + norm projection shortcut
    pool: adaptive average pool to 1x1, then head: Linear(8w -> n_outputs)

Block: conv1 3x3 (stride s) -> bn1 -> ReLU -> Dropout -> conv2 3x3 -> bn2, then
`relu(Y + shortcut(X))` when residual, else `relu(Y)`. `norm_on` toggles bn1, bn2 and the
shortcut's norm together (off means identity). The projection exists whether or not the skip is on,
so plain and residual twins hold the same parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from .mlp import NORM_KINDS, group_count
from .switches import SwitchableBlock


def norm_channels(kind: str, channels: int) -> nn.Module:
    """Normalisation over feature maps (N, C, H, W)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    raise ValueError(f"unknown norm_kind {kind!r}; accepted values are {', '.join(NORM_KINDS)}")


class ConvBlock(SwitchableBlock):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        norm_kind: str,
        dropout: float,
        residual: bool,
        norm_on: bool,
    ) -> None:
        super().__init__(residual=residual, norm_on=norm_on)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = norm_channels(norm_kind, out_channels)
        self.relu1 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = norm_channels(norm_kind, out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Sequential | None = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride),
                norm_channels(norm_kind, out_channels),
            )
        else:
            self.shortcut = None
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        if self.norm_on:
            y = self.bn1(y)
        y = self.dropout(self.relu1(y))
        y = self.conv2(y)
        if self.norm_on:
            y = self.bn2(y)
        if self.residual:
            if self.shortcut is None:
                s = x
            else:
                s = self.shortcut[0](x)
                if self.norm_on:
                    s = self.shortcut[1](s)
            y = y + s
        return self.relu2(y)


class ConvNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        n_outputs: int,
        depth: int,
        width: int,
        norm_kind: str,
        dropout: float,
        residual: bool,
        norm_on: bool,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        stages = []
        cin = width
        for i in range(4):
            cout = width * 2**i
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(ConvBlock(cin, cout, stride, norm_kind, dropout, residual, norm_on))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(self.pool(x).flatten(1))


def build_conv(cfg, input_shape: tuple[int, ...], n_outputs: int) -> ConvNet:
    return ConvNet(
        in_channels=input_shape[0],
        n_outputs=n_outputs,
        depth=cfg.depth,
        width=cfg.width,
        norm_kind=cfg.norm_kind,
        dropout=cfg.dropout,
        residual=cfg.residual,
        norm_on=cfg.norm,
    )
