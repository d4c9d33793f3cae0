"""Data sets as in-memory `DataBundle`s: synthetic sets built in, image sets through torchvision.

`load_data(cfg, seed, dtype)` is the one entry point; `cfg` is a `gradviz.config.DataConfig`.
torchvision is imported only inside the image loaders, so the built-in sets work without it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .synthetic import (
    SHAPES_SIDE,
    DataBundle,
    DataError,
    make_linear,
    make_rgb,
    make_shapes,
    make_spiral,
)
from .vision import TORCHVISION_SETS, image_folder_size, load_image_folder, load_torchvision_set

__all__ = ["DATASETS", "DataBundle", "DataError", "data_shape", "load_data"]

SYNTHETIC = ("spiral", "rgb", "linear", "shapes")
DATASETS = (*SYNTHETIC, *TORCHVISION_SETS, "imagefolder")

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def load_data(cfg: Any, seed: int, dtype: torch.dtype | str = torch.float32, progress=None) -> DataBundle:
    """Load the data set `cfg.name`; synthetic sets are drawn deterministically from `seed`.
    `progress(text)`, when given, hears how a slow load goes ("reading images: 2,300 of 50,000", "resizing images: ...").

    Raises `DataError` with a one-line message for an unknown name, a missing folder, a missing
    torchvision or unreadable files.
    """
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise DataError(f"data dtype {dtype!r}: accepted values are {', '.join(_DTYPES)}")
        dtype = _DTYPES[dtype]
    name = cfg.name
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; accepted values are {', '.join(DATASETS)}")
    if name in SYNTHETIC:
        if cfg.n_train < 1 or cfg.n_test < 1:
            raise DataError(
                f"data set {name!r} needs n_train and n_test of at least 1, "
                f"got {cfg.n_train} and {cfg.n_test}"
            )
        if name == "rgb":
            return make_rgb(cfg.n_train, cfg.n_test, seed, dtype)
        if name == "linear":
            return make_linear(cfg.n_train, cfg.n_test, cfg.noise, seed, dtype)
        if name == "shapes":
            return make_shapes(cfg.n_train, cfg.n_test, cfg.noise, seed, dtype, cfg.resize)
        if cfg.classes < 2:
            raise DataError(f"spiral needs at least 2 classes, got {cfg.classes}")
        return make_spiral(cfg.n_train, cfg.n_test, cfg.classes, cfg.noise, seed, dtype)
    if name == "imagefolder":
        return load_image_folder(cfg, dtype, progress)
    return load_torchvision_set(cfg, dtype, progress)


# what a torchvision set gives a model, fixed by its format: (channels, side before any resize, classes)
SET_SHAPES = {"mnist": (1, 28, 10), "fashion-mnist": (1, 28, 10), "cifar10": (3, 32, 10)}
# images a torchvision set holds once loaded (training and test splits, resized before the test
# split is cut to its evaluation prefix), fixed by the format too
SET_EXAMPLES = {"mnist": 70_000, "fashion-mnist": 70_000, "cifar10": 60_000}


def data_shape(cfg: Any, seed: int) -> tuple[tuple[int, ...], int]:
    """(one example's shape, number of model outputs) of data set `cfg`, as `load_data` would
    give them. A torchvision set's follow from its format, so a model's layer table needs no
    download (`gradviz summary --preset resnet18-mnist` asked for MNIST's folder); the built-in
    sets are drawn (cheap), and an image folder is listed (its classes), not read."""
    if cfg.name in SET_SHAPES:
        channels, side, classes = SET_SHAPES[cfg.name]
        side = cfg.resize if cfg.resize > 0 else side
        return (channels, side, side), classes
    if cfg.name == "imagefolder":
        return image_folder_size(cfg)[:2]
    if cfg.name == "shapes":  # not drawn: at data.resize=4096 even 64 examples would take GBs
        side = cfg.resize if cfg.resize > 0 else SHAPES_SIDE
        return (1, side, side), 2
    if cfg.name in SYNTHETIC:  # a few examples tell the shape; a million-example set is not drawn for it
        cfg = dataclasses.replace(cfg, n_train=min(cfg.n_train, 64), n_test=min(cfg.n_test, 64))
    data = load_data(cfg, seed)
    return tuple(data.input_shape), int(data.n_outputs)
