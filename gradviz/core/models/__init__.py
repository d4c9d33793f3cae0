"""Models whose residual path, normalisation and dropout flip live between two training steps.

`build_model(cfg, input_shape, n_outputs, seed)` is the one entry point. It draws every initial
weight from a forked RNG seeded with `seed`, and the switches never change which modules exist, so
two builds that differ only in `residual` (the plain and residual twins) hold identical weights.
Every model gets `model.activation` ("tanh" | "sigmoid" | "relu"), the non-linearity whose
saturation the probes measure.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .conv import build_conv
from .init import INIT_SCHEMES, init_weights
from .mlp import ACTIVATIONS, NORM_KINDS, build_mlp
from .resnet import ModelError, build_resnet18, build_torchvision, make_switchable
from .small import build_lenet, build_rgb
from .switches import SwitchableBlock, blocks, set_dropout, set_norm, set_residual, state

__all__ = [
    "KINDS",
    "ModelError",
    "SwitchableBlock",
    "blocks",
    "build_model",
    "make_switchable",
    "set_dropout",
    "set_norm",
    "set_residual",
    "state",
]

KINDS = ("mlp", "conv", "resnet18", "rgb", "lenet", "torchvision:<name>")

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

# models whose non-linearity is fixed, whatever cfg.activation says
_FIXED_ACTIVATION = {"conv": "relu", "resnet18": "relu", "rgb": "tanh"}

_IMAGE_KINDS = ("conv", "resnet18", "lenet")


def _check(cfg: Any, input_shape: tuple[int, ...], n_outputs: int) -> None:
    kind = cfg.kind
    if kind not in KINDS[:-1] and not kind.startswith("torchvision:"):
        raise ModelError(f"unknown model kind {kind!r}; accepted kinds are {', '.join(KINDS)}")
    if cfg.dtype not in _DTYPES:
        raise ModelError(f"model dtype {cfg.dtype!r}: accepted values are {', '.join(_DTYPES)}")
    if cfg.init not in INIT_SCHEMES:
        raise ModelError(f"model init {cfg.init!r}: accepted values are {', '.join(INIT_SCHEMES)}")
    if cfg.activation not in ACTIVATIONS:
        raise ModelError(
            f"model activation {cfg.activation!r}: accepted values are {', '.join(ACTIVATIONS)}"
        )
    if cfg.norm_kind not in NORM_KINDS:
        raise ModelError(
            f"model norm_kind {cfg.norm_kind!r}: accepted values are {', '.join(NORM_KINDS)}"
        )
    if not 0.0 <= cfg.dropout <= 0.9:
        raise ModelError(f"model dropout {cfg.dropout}: accepted range is 0 to 0.9")
    if cfg.depth < 1 or cfg.width < 1:
        raise ModelError(
            f"model depth and width must be at least 1, got {cfg.depth} and {cfg.width}"
        )
    if n_outputs < 1:
        raise ModelError(f"a model needs at least one output, got {n_outputs}")
    if kind in _IMAGE_KINDS and len(input_shape) != 3:
        raise ModelError(
            f"model kind {kind!r} needs image input (C, H, W); the data gives shape "
            f"{tuple(input_shape)} (use kind 'mlp' for vector data)"
        )


def build_model(cfg: Any, input_shape: tuple[int, ...], n_outputs: int, seed: int) -> nn.Module:
    """Build the model `cfg` (a `gradviz.config.ModelConfig`) describes, in `cfg.dtype`, on the CPU.

    `input_shape` is one example's shape (no batch dim). The global torch RNG is left as it was.
    Raises `ModelError` (one line) for an unknown kind or a shape the kind cannot take.
    """
    input_shape = tuple(int(s) for s in input_shape)
    _check(cfg, input_shape, n_outputs)
    kind = cfg.kind
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "mlp":
            model = build_mlp(cfg, input_shape, n_outputs)
        elif kind == "conv":
            model = build_conv(cfg, input_shape, n_outputs)
        elif kind == "resnet18":
            model = build_resnet18(cfg, input_shape, n_outputs)
        elif kind == "rgb":
            model = build_rgb(cfg, input_shape, n_outputs)
        elif kind == "lenet":
            model = build_lenet(cfg, input_shape, n_outputs)
        else:
            model = build_torchvision(kind.partition(":")[2], cfg, input_shape, n_outputs)
        model = model.to(_DTYPES[cfg.dtype])
        # after the cast, so float64 schemes draw float64 samples
        init_weights(model, cfg.init)
    if kind.startswith("torchvision:"):
        model.activation = "relu"
    else:
        model.activation = _FIXED_ACTIVATION.get(kind, cfg.activation)
    return model
