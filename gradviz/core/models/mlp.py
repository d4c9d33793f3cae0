"""A deep fully connected stack of switchable blocks: the default twin of the demo.

    input: Linear(in_features -> width)
    blocks: depth x [ Linear(width, width) -> norm -> activation -> Dropout ], skip `x + f(x)` when on
    head: Linear(width -> n_outputs)

The norm module always exists (so flipping it on needs no rebuild); the block skips it while
`norm_on` is False.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .switches import SwitchableBlock

ACTIVATIONS = ("tanh", "sigmoid", "relu")
NORM_KINDS = ("batch", "layer", "group")


def activation_module(name: str) -> nn.Module:
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}; accepted values are {', '.join(ACTIVATIONS)}")


def group_count(channels: int, most: int = 8) -> int:
    """The largest group count <= `most` that divides `channels`."""
    for g in range(min(most, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def norm_features(kind: str, features: int) -> nn.Module:
    """Normalisation over a feature vector (N, F)."""
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind == "layer":
        return nn.LayerNorm(features)
    if kind == "group":
        return nn.GroupNorm(group_count(features), features)
    raise ValueError(f"unknown norm_kind {kind!r}; accepted values are {', '.join(NORM_KINDS)}")


class MLPBlock(SwitchableBlock):
    """Linear -> [norm] -> activation -> Dropout; output x + f(x) when residual, else f(x)."""

    def __init__(
        self,
        width: int,
        activation: str,
        norm_kind: str,
        dropout: float,
        residual: bool,
        norm_on: bool,
        out_width: int | None = None,
    ) -> None:
        super().__init__(residual=residual, norm_on=norm_on)
        out = width if out_width is None else out_width
        self.linear = nn.Linear(width, out)
        self.norm = norm_features(norm_kind, out)
        self.act = activation_module(activation)
        self.dropout = nn.Dropout(dropout)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): the block without its skip path."""
        h = self.linear(x)
        if self.norm_on:
            h = self.norm(h)
        return self.dropout(self.act(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.transform(x)
        return x + h if self.residual else h


class MLP(nn.Module):
    def __init__(
        self,
        in_features: int,
        n_outputs: int,
        depth: int,
        width: int,
        activation: str,
        norm_kind: str,
        dropout: float,
        residual: bool,
        norm_on: bool,
    ) -> None:
        super().__init__()
        self.input = nn.Linear(in_features, width)
        self.blocks = nn.Sequential(
            *(
                MLPBlock(width, activation, norm_kind, dropout, residual, norm_on)
                for _ in range(depth)
            )
        )
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            x = x.flatten(1)
        return self.head(self.blocks(self.input(x)))


def build_mlp(cfg, input_shape: tuple[int, ...], n_outputs: int) -> MLP:
    return MLP(
        in_features=math.prod(input_shape),
        n_outputs=n_outputs,
        depth=cfg.depth,
        width=cfg.width,
        activation=cfg.activation,
        norm_kind=cfg.norm_kind,
        dropout=cfg.dropout,
        residual=cfg.residual,
        norm_on=cfg.norm,
    )
