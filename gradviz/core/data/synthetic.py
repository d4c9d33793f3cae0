"""The in-memory data bundle every data set becomes, and the built-in synthetic sets.

All synthetic sets are drawn from a `torch.Generator` seeded with the experiment seed, so twins built
from one seed see the same points; they live in memory as tensors in the requested dtype.

- `rgb` (seed 000): r, g, b ~ U[-1, 1]; targets x = r + 2g + 3b, y = r² + 2g² + 3b²,
  lv = -3r - 4g - 5b. Regression, default loss "sse" (the seed's sum of squares).
- `spiral`: `classes` interleaved arms in the plane, radius 0..1 along each arm, angular noise with
  std 2·noise radians (noise 0.1 gives the classic 0.2 rad). Classification.
- `linear` (seed 003): x evenly spaced on [-1, 1], y = 1.5·x + N(0, noise²) for training and
  N(0, (0.6·noise)²) for evaluation (the seed's 0.5 and 0.3). Regression, "mse".
- `shapes`: 1x28x28 images of a horizontal (class 0) or vertical (class 1) bar of random length,
  thickness and position, plus pixel noise of std `noise`, standardised by the training mean and
  std. Classification, for the LeNet presets without downloads. `resize` > 0 resizes the drawn
  images to resize x resize (bilinear, antialiased), as it does a torchvision set's: an image model
  that needs 224 x 224 (a ViT) trains on them without a download.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


class DataError(Exception):
    """A data set cannot be loaded; the message is one line that says what to do."""


@dataclass
class DataBundle:
    """A loaded data set: a training split and a (bounded) evaluation split, held as tensors.

    Image sets keep their pixels as uint8 and carry a per-channel `mean` and `std` (shape (C, 1, 1),
    on the [0, 1] scale); each batch is scaled to [0, 1] and standardised as it is yielded. Targets are
    int64 class indices (classification) or `dtype` values of shape (N, k) (regression).
    """

    name: str
    task: str  # "regression" | "classification"
    input_shape: tuple[int, ...]  # one example, no batch dim
    n_outputs: int
    default_loss: str  # "mse" | "sse" | "cross_entropy"
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    dtype: torch.dtype = torch.float32
    mean: Tensor | None = None
    std: Tensor | None = None
    classes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # one-line notices for the user (images skipped as unreadable)

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_x.shape[0])

    def _prepare(self, x: Tensor) -> Tensor:
        if x.dtype != torch.uint8:
            return x
        x = x.to(self.dtype).div_(255.0)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean.to(self.dtype)) / self.std.to(self.dtype)
        return x

    def _full_batch(self, batch_size: int) -> bool:
        return batch_size <= 0 or batch_size >= self.n_train

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches per pass over the training split; a last partial batch is dropped."""
        return 1 if self._full_batch(batch_size) else self.n_train // batch_size

    def train_batches(self, batch_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Endless (inputs, targets) batches on the CPU, reshuffled every epoch.

        The order comes from a generator seeded with `seed`, so two iterators with one seed yield the
        same batches. `batch_size` 0 (or at least `n_train`) means full batch: every step yields the
        whole training split in its stored order. A last partial batch of an epoch is dropped, so every
        batch has `batch_size` examples (BatchNorm never sees a batch of one).
        """
        if self._full_batch(batch_size):
            x, y = self._prepare(self.train_x), self.train_y
            while True:
                yield x, y
        gen = torch.Generator().manual_seed(int(seed))
        steps = self.steps_per_epoch(batch_size)
        while True:
            perm = torch.randperm(self.n_train, generator=gen)
            for i in range(steps):
                idx = perm[i * batch_size : (i + 1) * batch_size]
                yield self._prepare(self.train_x[idx]), self.train_y[idx]

    def eval_batches(self, batch_size: int = 1024) -> Iterator[tuple[Tensor, Tensor]]:
        """The evaluation split once, in order, in batches of `batch_size` (0 = all at once)."""
        n = self.n_test
        step = n if batch_size <= 0 else batch_size
        for i in range(0, n, step):
            yield self._prepare(self.test_x[i : i + step]), self.test_y[i : i + step]


def _gen(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1000003 + salt) % (1 << 63))


def _rgb_targets(x: Tensor) -> Tensor:
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return torch.stack(
        (r + 2 * g + 3 * b, r**2 + 2 * g**2 + 3 * b**2, -3 * r - 4 * g - 5 * b), dim=1
    )


def make_rgb(n_train: int, n_test: int, seed: int, dtype: torch.dtype) -> DataBundle:
    gen = _gen(seed, 1)

    def split(n: int) -> tuple[Tensor, Tensor]:
        x = (torch.rand(n, 3, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype)
        return x, _rgb_targets(x.double()).to(dtype)

    train_x, train_y = split(n_train)
    test_x, test_y = split(n_test)
    return DataBundle(
        "rgb", "regression", (3,), 3, "sse", train_x, train_y, test_x, test_y, dtype=dtype
    )


def make_spiral(
    n_train: int, n_test: int, classes: int, noise: float, seed: int, dtype: torch.dtype
) -> DataBundle:
    gen = _gen(seed, 2)

    def split(n: int) -> tuple[Tensor, Tensor]:
        labels = torch.arange(n) % classes
        t = torch.rand(n, generator=gen, dtype=torch.float64)
        theta = (
            2 * math.pi * labels / classes
            + 4.0 * t
            + 2.0 * noise * torch.randn(n, generator=gen, dtype=torch.float64)
        )
        r = t
        x = torch.stack((r * torch.cos(theta), r * torch.sin(theta)), dim=1)
        return x.to(dtype), labels.long()

    train_x, train_y = split(n_train)
    test_x, test_y = split(n_test)
    return DataBundle(
        "spiral",
        "classification",
        (2,),
        classes,
        "cross_entropy",
        train_x,
        train_y,
        test_x,
        test_y,
        dtype=dtype,
        classes=tuple(f"arm {i}" for i in range(classes)),
    )


def make_linear(
    n_train: int, n_test: int, noise: float, seed: int, dtype: torch.dtype
) -> DataBundle:
    gen = _gen(seed, 3)

    def split(n: int, std: float) -> tuple[Tensor, Tensor]:
        x = torch.linspace(-1.0, 1.0, n, dtype=torch.float64).unsqueeze(1)
        y = 1.5 * x + std * torch.randn(n, 1, generator=gen, dtype=torch.float64)
        return x.to(dtype), y.to(dtype)

    train_x, train_y = split(n_train, noise)
    test_x, test_y = split(n_test, 0.6 * noise)
    return DataBundle(
        "linear", "regression", (1,), 1, "mse", train_x, train_y, test_x, test_y, dtype=dtype
    )


def _bars(n: int, noise: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    side = SHAPES_SIDE
    labels = torch.arange(n) % 2
    length = torch.randint(10, 23, (n, 1, 1), generator=gen)
    thick = torch.randint(2, 5, (n, 1, 1), generator=gen)
    start = (torch.rand(n, 1, 1, generator=gen) * (side - length + 1)).long()
    across = (torch.rand(n, 1, 1, generator=gen) * (side - thick + 1)).long()
    rows = torch.arange(side).view(1, side, 1)
    cols = torch.arange(side).view(1, 1, side)
    horiz = labels.view(n, 1, 1) == 0
    along = torch.where(horiz, cols, rows)  # coordinate along the bar
    perp = torch.where(horiz, rows, cols)  # coordinate across the bar
    mask = (along >= start) & (along < start + length) & (perp >= across) & (perp < across + thick)
    img = mask.double() + noise * torch.randn(n, side, side, generator=gen, dtype=torch.float64)
    return img.unsqueeze(1), labels.long()


SHAPES_SIDE = 28  # the side `shapes` draws its images at


def resize_images(x: Tensor, side: int, dtype: torch.dtype, chunk: int = 1024, counter=None) -> Tensor:
    """Images (N, C, H, W) -> (N, C, side, side) in `dtype` (bilinear, antialiased), a chunk at a
    time: a whole set at 224 x 224 in float temporaries would take several times the result.
    uint8 stays uint8 (rounded, clamped); `side` <= 0 or the images' own side keeps them as they
    are. `counter.step(k)`, when given, hears each chunk done."""
    if side <= 0 or (x.shape[-2] == side and x.shape[-1] == side):
        return x.to(dtype)
    out = torch.empty((x.shape[0], x.shape[1], side, side), dtype=dtype)
    for i in range(0, x.shape[0], chunk):
        part = x[i : i + chunk].to(torch.float64 if dtype == torch.float64 else torch.float32)
        part = torch.nn.functional.interpolate(part, size=(side, side), mode="bilinear", antialias=True)
        out[i : i + chunk] = part.round_().clamp_(0, 255) if dtype == torch.uint8 else part
        if counter is not None:
            counter.step(part.shape[0])
    return out


def make_shapes(
    n_train: int, n_test: int, noise: float, seed: int, dtype: torch.dtype, resize: int = 0
) -> DataBundle:
    gen = _gen(seed, 4)
    train_x, train_y = _bars(n_train, noise, gen)
    test_x, test_y = _bars(n_test, noise, gen)
    mean, std = train_x.mean(), train_x.std().clamp_min(1e-8)
    train_x = resize_images((train_x - mean) / std, resize, dtype)
    test_x = resize_images((test_x - mean) / std, resize, dtype)
    return DataBundle(
        "shapes",
        "classification",
        tuple(train_x.shape[1:]),
        2,
        "cross_entropy",
        train_x,
        train_y,
        test_x,
        test_y,
        dtype=dtype,
        classes=("horizontal", "vertical"),
    )
