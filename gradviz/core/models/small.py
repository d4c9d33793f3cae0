"""Two small models from the seeds: the rgb net (seed 000) and LeNet / LeNet-BN (seed 003).

rgb net: three blocks of Linear(3,3) -> tanh -> Linear(3,3), each adding its input when residual,
with tanh between blocks but not after the last one:

    x1 = B1(x); x2 = B2(tanh(x1)); out = B3(tanh(x2)),   B(x) = lin2(tanh(lin1(x))) [+ x]

It only fits the rgb data set (3 inputs, 3 outputs). A Dropout (p = cfg.dropout, 0 in the seed)
sits after the inner tanh; the blocks have no normalisation, so `norm_on` has no effect there.

LeNet: conv(6, 5x5, pad 2) -> act -> maxpool 2 -> conv(16, 5x5) -> act -> maxpool 2 -> fc 120 -> act
-> fc 84 -> act -> fc n_outputs (28x28 input gives seed 003's 16*5*5 flatten size; other sizes are
measured with a dummy forward). LeNet-BN is the same net with a norm after each conv and each hidden
fc, expressed as `norm_on`, so BatchNorm flips live. The four hidden units are switchable blocks so
`set_norm` reaches them; they change shape, so `residual` has no effect on LeNet. The two fc blocks
hold a Dropout after their activation.
"""

from __future__ import annotations

import torch
from torch import nn

from .conv import norm_channels
from .mlp import MLPBlock, activation_module
from .resnet import ModelError
from .switches import SwitchableBlock

# --- rgb net (seed 000) ---------------------------------------------------------------------------


class RGBBlock(SwitchableBlock):
    switches_norm = False  # seed 000's blocks have no normalisation layer

    def __init__(self, dropout: float, residual: bool) -> None:
        super().__init__(residual=residual, norm_on=False)
        self.lin1 = nn.Linear(3, 3)
        self.act = nn.Tanh()
        self.dropout = nn.Dropout(dropout)
        self.lin2 = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin2(self.dropout(self.act(self.lin1(x))))
        return h + x if self.residual else h


class RGBNet(nn.Module):
    def __init__(self, dropout: float, residual: bool) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(RGBBlock(dropout, residual) for _ in range(3)))
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < last:
                x = self.act(x)
        return x


def build_rgb(cfg, input_shape: tuple[int, ...], n_outputs: int) -> RGBNet:
    if tuple(input_shape) != (3,) or n_outputs != 3:
        raise ModelError(
            f"the rgb model takes 3 inputs and gives 3 outputs (the rgb data set); "
            f"got input shape {tuple(input_shape)} and {n_outputs} outputs"
        )
    return RGBNet(cfg.dropout, cfg.residual)


# --- LeNet / LeNet-BN (seed 003) ------------------------------------------------------------------


class LeNetConv(SwitchableBlock):
    """conv -> [norm] -> activation -> 2x2 max pool."""

    switches_residual = False  # its width changes: there is no identity to add

    def __init__(
        self,
        cin: int,
        cout: int,
        padding: int,
        activation: str,
        norm_kind: str,
        residual: bool,
        norm_on: bool,
    ) -> None:
        super().__init__(residual=residual, norm_on=norm_on)  # residual is kept but never read
        self.conv = nn.Conv2d(cin, cout, 5, padding=padding)
        self.norm = norm_channels(norm_kind, cout)
        self.act = activation_module(activation)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if self.norm_on:
            h = self.norm(h)
        return self.pool(self.act(h))


class LeNetFC(MLPBlock):
    """linear -> [norm] -> activation -> Dropout; widths change, so `residual` is kept but never read."""

    switches_residual = False

    def __init__(self, fin: int, fout: int, activation: str, norm_kind: str, dropout: float, residual: bool, norm_on: bool) -> None:
        super().__init__(fin, activation, norm_kind, dropout, residual, norm_on, out_width=fout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x)


class LeNet(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, int, int],
        n_outputs: int,
        activation: str,
        norm_kind: str,
        dropout: float,
        residual: bool,
        norm_on: bool,
    ) -> None:
        super().__init__()
        cin = input_shape[0]
        self.features = nn.Sequential(
            LeNetConv(cin, 6, 2, activation, norm_kind, residual, norm_on),
            LeNetConv(6, 16, 0, activation, norm_kind, residual, norm_on),
        )
        self.flatten = nn.Flatten()
        # measure the flatten size in eval mode so no running statistic moves
        self.features.eval()
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *input_shape)).numel()
        self.features.train()
        self.classifier = nn.Sequential(
            LeNetFC(flat, 120, activation, norm_kind, dropout, residual, norm_on),
            LeNetFC(120, 84, activation, norm_kind, dropout, residual, norm_on),
        )
        self.head = nn.Linear(84, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.classifier(self.flatten(self.features(x))))


def build_lenet(cfg, input_shape: tuple[int, ...], n_outputs: int) -> LeNet:
    if len(input_shape) != 3 or min(input_shape[1:]) < 12:
        raise ModelError(
            f"lenet needs image input (C, H, W) of at least 12x12; got input shape {tuple(input_shape)}"
        )
    return LeNet(
        tuple(input_shape),
        n_outputs,
        cfg.activation,
        cfg.norm_kind,
        cfg.dropout,
        cfg.residual,
        cfg.norm,
    )
