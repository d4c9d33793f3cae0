"""Image data sets through torchvision, imported lazily inside the loaders.

MNIST, Fashion-MNIST and CIFAR-10 are read with torchvision's own dataset classes from `cfg.root`
(downloaded there when `cfg.download`), then turned once into uint8 tensors (N, C, H, W), resized when
`cfg.resize` > 0 (bilinear, antialiased; seed 001 uses 96). An image folder is read with
`torchvision.datasets.ImageFolder`: `root/train` and `root/test` when both exist, otherwise `root`
split per class, every fifth image (in file-name order) to the test side; images become RGB of side
`cfg.resize` (64 when 0). Hidden folders are not classes; folders without images and unreadable
images are left out, said in the bundle's `notes`. Pixels are scaled to [0, 1] and standardised per
channel with the training split's mean and std, batch by batch. Evaluation uses at most the first
`EVAL_LIMIT` test images so it stays cheap. Every failure becomes a one-line `DataError`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .synthetic import DataBundle, DataError, resize_images

EVAL_LIMIT = 2000
BUILTIN = "built-in data sets: spiral, rgb, linear, shapes"

# cfg name -> (torchvision class, name shown to the user)
TORCHVISION_SETS = {
    "mnist": ("MNIST", "MNIST"),
    "fashion-mnist": ("FashionMNIST", "Fashion-MNIST"),
    "cifar10": ("CIFAR10", "CIFAR-10"),
}
# the folder torchvision expects under the root
_SUBFOLDER = {"MNIST": "MNIST", "FashionMNIST": "FashionMNIST", "CIFAR10": "cifar-10-batches-py"}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


def _datasets() -> Any:
    try:
        import torchvision.datasets as tvd
    except Exception as exc:  # noqa: BLE001 - any import failure: say why in one line
        raise DataError(f"torchvision is not available ({_one_line(exc)}); {BUILTIN}") from None
    return tvd


def _not_found(label: str, root: Path) -> DataError:
    return DataError(
        f"{label} not found under '{root}' "
        "(pass --download to fetch it, or --data-root DIR to point at it)"
    )


PROGRESS_EVERY = 0.25  # seconds between two progress reports of a slow load


class _Counter:
    """Says `<doing> images: k of n` through `progress` (at most every `PROGRESS_EVERY` seconds, and
    once at the end): 50 000 photos take a minute to decode, Fashion-MNIST seconds to resize to 96,
    which read as a window stuck at 'starting...'."""

    def __init__(self, progress, total: int, doing: str = "reading") -> None:
        self.progress, self.total, self.doing, self.done, self._last = progress, total, doing, 0, 0.0

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY or self.done == self.total:
            self._last = now
            self.progress(f"{self.doing} images: {self.done:,} of {self.total:,}")


def _resize(x: Tensor, side: int, chunk: int = 2048, counter: _Counter | None = None) -> Tensor:
    """Resize uint8 images (N, C, H, W) to side x side, chunk by chunk, staying uint8."""
    return resize_images(x, side, torch.uint8, chunk, counter)


def _channel_stats(x: Tensor, chunk: int = 4096, most: int = 10_000) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of uint8 images on the [0, 1] scale, shape (C, 1, 1).

    Estimated from the first `most` images, which is plenty for standardising and keeps a large
    resized set from taking seconds here.
    """
    x = x[:most]
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, x.shape[0], chunk):
        part = x[i : i + chunk].double().div_(255.0)
        total += part.sum(dim=(0, 2, 3))
        total_sq += (part * part).sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0.0)
    std = var.sqrt().clamp_min(1e-6)
    return mean.view(c, 1, 1), std.view(c, 1, 1)


def _bundle(
    name: str,
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    classes: tuple[str, ...],
    dtype: torch.dtype,
) -> DataBundle:
    # clone so the slice does not keep the whole test split alive
    test_x, test_y = test_x[:EVAL_LIMIT].clone(), test_y[:EVAL_LIMIT].clone()
    mean, std = _channel_stats(train_x)
    return DataBundle(
        name=name,
        task="classification",
        input_shape=tuple(int(s) for s in train_x.shape[1:]),
        n_outputs=len(classes),
        default_loss="cross_entropy",
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        dtype=dtype,
        mean=mean,
        std=std,
        classes=classes,
    )


def _as_images(data: Any) -> Tensor:
    """torchvision's `.data`: MNIST gives a (N, H, W) tensor, CIFAR a (N, H, W, C) numpy array."""
    x = torch.as_tensor(data)
    if x.dim() == 3:
        return x.unsqueeze(1).contiguous()
    return x.permute(0, 3, 1, 2).contiguous()


def load_torchvision_set(cfg: Any, dtype: torch.dtype, progress=None) -> DataBundle:
    cls_name, label = TORCHVISION_SETS[cfg.name]
    if not cfg.root:
        raise DataError(
            f"{label} needs a folder: pass --data-root DIR (add --download to fetch it there)"
        )
    root = Path(cfg.root).expanduser()
    if not cfg.download and not root.is_dir():
        raise _not_found(label, root)
    cls = getattr(_datasets(), cls_name)
    try:
        train = cls(root=str(root), train=True, download=cfg.download)
        test = cls(root=str(root), train=False, download=cfg.download)
    except Exception as exc:  # noqa: BLE001 - torchvision raises RuntimeError, OSError, pickle errors...
        reason = _one_line(exc)
        if cfg.download:
            raise DataError(f"could not fetch {label} into '{root}': {reason}") from None
        sub = root / _SUBFOLDER[cls_name]
        if not sub.is_dir() or not any(sub.iterdir()):
            raise _not_found(label, root) from None
        raise DataError(
            f"{label} under '{root}' is incomplete or corrupted ({reason}); "
            "pass --download to fetch it again, or --data-root DIR to point elsewhere"
        ) from None
    try:
        counter = _Counter(progress, len(train.data) + len(test.data), "resizing")
        train_x = _resize(_as_images(train.data), cfg.resize, counter=counter)
        test_x = _resize(_as_images(test.data), cfg.resize, counter=counter)
        train_y = torch.as_tensor(train.targets, dtype=torch.long)
        test_y = torch.as_tensor(test.targets, dtype=torch.long)
        classes = tuple(str(c) for c in train.classes)
    except Exception as exc:  # noqa: BLE001 - malformed files give odd shapes or types
        raise DataError(
            f"{label} under '{root}' has an unexpected layout ({_one_line(exc)})"
        ) from None
    if train_x.shape[0] == 0 or test_x.shape[0] == 0:
        raise _not_found(label, root)
    return _bundle(cfg.name, train_x, train_y, test_x, test_y, classes, dtype)


_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PIL's modes for 16-bit (and 32-bit) grey


def _open_rgb(path: str):
    """An image file as an 8-bit RGB PIL image. torchvision's loader converts with PIL, which
    clips 16-bit grey (medical and microscope PNGs, TIFFs) at 255: an image of 0..65535 came out
    almost all white. Those keep their contrast here, scaled as 65535 -> 255 (PIL has no 16-bit
    RGB: it reads such files as 8-bit itself)."""
    from PIL import Image

    with open(path, "rb") as f:
        img = Image.open(f)
        if img.mode in _WIDE_GREY:
            a = np.asarray(img).astype(np.int64)
            if img.mode != "I" or a.max(initial=0) > 255:  # a 32-bit image of 8-bit values stays as it is
                a = np.clip(a, 0, 65535) // 257
            img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
        return img.convert("RGB")


def _decode(loader: Any, path: str, side: int) -> Tensor:
    """One image file as a (3, side, side) uint8 tensor."""
    from PIL import Image

    img = loader(path).convert("RGB").resize((side, side), Image.BILINEAR)
    return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(side, side, 3).permute(2, 0, 1)


def _read_images(samples: list[tuple[str, int]], loader: Any, side: int, counter: _Counter | None = None) -> tuple[Tensor, list[int], list[tuple[str, str]]]:
    """(the readable images, RGB of `side` x `side`; the indices in `samples` they came from; the
    (path, reason) of each one that could not be read). A scraped folder often holds a few broken or
    mislabelled files: they are left out, not allowed to refuse the other thousands."""
    out = torch.empty((len(samples), 3, side, side), dtype=torch.uint8)
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    for i, (path, _) in enumerate(samples):
        try:
            out[len(kept)] = _decode(loader, path, side)
            kept.append(i)
        except Exception as exc:  # noqa: BLE001 - a broken file names itself
            skipped.append((path, _one_line(exc)))
        if counter is not None:
            counter.step()
    return (out if len(kept) == len(samples) else out[: len(kept)].clone()), kept, skipped


def _readable(root: Path, split: str, samples: list[tuple[str, int]], loader: Any, side: int, counter: _Counter) -> tuple[Tensor, Tensor, list[tuple[str, str]]]:
    """The images of one split that can be read, their targets, and what was skipped; a split none
    of whose images can be read is refused in one line naming the first file."""
    x, kept, skipped = _read_images(samples, loader, side, counter)
    if not kept:
        path, reason = skipped[0]
        raise DataError(
            f"image folder '{root}': none of its {len(samples)} {split} images can be read "
            f"(first: cannot read image '{path}': {reason})"
        )
    return x, torch.tensor([samples[i][1] for i in kept], dtype=torch.long), skipped


def _dir_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _image_files(top: str, exts: tuple[str, ...], fenced: set) -> list[str]:
    """Image files under `top`, in torchvision's order (by folder path, then file name). Links are
    followed, but into no folder twice and none of `fenced` (the data set's root, the other classes'
    folders): torchvision walked a link back up (`dogs/up -> ..`) round the tree until the path grew
    too long, and counted every image again each time, under the class it was found in."""
    seen = set(fenced)
    seen.add(_dir_id(top))
    found = []
    for root, dirs, files in os.walk(top, followlinks=True):
        keep = []
        for d in dirs:
            ident = _dir_id(os.path.join(root, d))
            if ident is not None and ident not in seen:
                seen.add(ident)
                keep.append(d)
        dirs[:] = keep
        found.append((root, sorted(f for f in files if f.lower().endswith(exts))))
    return [os.path.join(root, f) for root, names in sorted(found) for f in names]


def _image_folder(tvd: Any, path: Path) -> tuple[Any, list[str]]:
    """torchvision's `ImageFolder` over `path`, and the subfolders it left out for holding no image.
    Hidden folders (`.ipynb_checkpoints`, which Jupyter leaves in any folder it opens) are not classes,
    and a folder without images (an emptied class, an output folder put there by mistake) is left out
    rather than refusing the whole data set, as torchvision does."""
    exts = tuple(tvd.folder.IMG_EXTENSIONS)
    empty: list[str] = []
    files: dict[str, list[str]] = {}  # class -> its image files, found once

    class Folder(tvd.ImageFolder):
        def find_classes(self, directory):
            names = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
            ids = {n: _dir_id(os.path.join(directory, n)) for n in names}
            root_id = _dir_id(str(directory))
            for n in names:
                fenced = {root_id} | {i for m, i in ids.items() if m != n and i != ids[n]}
                files[n] = _image_files(os.path.join(directory, n), exts, fenced)
            classes = [n for n in names if files[n]]
            empty.extend(n for n in names if not files[n])
            if not classes:
                raise FileNotFoundError(f"no class folder with images in it under '{directory}'")
            return classes, {c: i for i, c in enumerate(classes)}

        def make_dataset(self, directory, class_to_idx, *args, **kwargs):  # the files found above
            return [(f, class_to_idx[c]) for c in sorted(class_to_idx) for f in files[c]]

    return Folder(str(path)), empty


def _interleave(samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Round-robin over classes, so a bounded evaluation prefix holds every class."""
    by_class: dict[int, list[tuple[str, int]]] = {}
    for s in samples:
        by_class.setdefault(s[1], []).append(s)
    queues = [by_class[k] for k in sorted(by_class)]
    out = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


class _Listing(NamedTuple):
    root: Path
    classes: tuple[str, ...]
    train: list[tuple[str, int]]  # (path, class index)
    test: list[tuple[str, int]]
    loader: Any
    empty: list[str]  # subfolders left out for holding no image


def _list_image_folder(cfg: Any) -> _Listing:
    """An image folder's classes and files, split, without decoding any image; every layout problem
    is a one-line `DataError` here."""
    hint = "a folder with one subfolder of images per class, or train/ and test/ folders of those"
    if not cfg.root:
        raise DataError(f"imagefolder needs a folder: pass --data-root DIR ({hint})")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder not found: '{root}' (pass --data-root DIR: {hint})")
    tvd = _datasets()
    split_dirs = (root / "train", root / "test")
    try:
        if all(d.is_dir() for d in split_dirs):
            train_ds, empty = _image_folder(tvd, split_dirs[0])
            test_ds, test_empty = _image_folder(tvd, split_dirs[1])
            empty = [f"train/{n}" for n in empty] + [f"test/{n}" for n in test_empty]
            classes = tuple(train_ds.classes)
            unknown = sorted(set(test_ds.classes) - set(classes))
            if unknown:
                raise DataError(
                    f"image folder '{root}': test classes {', '.join(unknown)} are not in train/"
                )
            remap = {i: train_ds.class_to_idx[c] for i, c in enumerate(test_ds.classes)}
            train_samples = list(train_ds.samples)
            test_samples = [(p, remap[t]) for p, t in test_ds.samples]
            loader = _open_rgb
        else:
            ds, empty = _image_folder(tvd, root)
            classes = tuple(ds.classes)
            seen: dict[int, int] = {}
            train_samples, test_samples = [], []
            for path, target in ds.samples:  # sorted by class, then file name
                k = seen.get(target, 0)
                seen[target] = k + 1
                (test_samples if k % 5 == 4 else train_samples).append((path, target))
            loader = _open_rgb
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - FileNotFoundError "no class folder" and the like
        raise DataError(
            f"image folder '{root}' cannot be used ({_one_line(exc)}; {hint})"
        ) from None
    if len(classes) < 2:
        raise DataError(
            f"image folder '{root}' has {len(classes)} class folder(s); it needs 2 or more"
        )
    if not train_samples or not test_samples:
        raise DataError(
            f"image folder '{root}' is too small to split: put at least 5 images in a class folder"
        )
    return _Listing(root, classes, train_samples, test_samples, loader, empty)


def image_folder_size(cfg: Any) -> tuple[tuple[int, int, int], int, int]:
    """(one example's shape, number of classes, images the session will hold) of an image folder,
    from its listing: known before a single image is decoded (reading them all took as long as the
    load itself). The images held are the training ones and at most `EVAL_LIMIT` test ones."""
    side = cfg.resize if cfg.resize > 0 else 64
    listing = _list_image_folder(cfg)
    return (3, side, side), len(listing.classes), len(listing.train) + min(len(listing.test), EVAL_LIMIT)


def load_image_folder(cfg: Any, dtype: torch.dtype, progress=None) -> DataBundle:
    root, classes, train_samples, test_samples, loader, empty = _list_image_folder(cfg)
    side = cfg.resize if cfg.resize > 0 else 64
    test_samples = _interleave(test_samples)[:EVAL_LIMIT]
    counter = _Counter(progress, len(train_samples) + len(test_samples))
    train_x, train_y, skipped = _readable(root, "training", train_samples, loader, side, counter)
    test_x, test_y, test_skipped = _readable(root, "test", test_samples, loader, side, counter)
    skipped += test_skipped
    bundle = _bundle("imagefolder", train_x, train_y, test_x, test_y, classes, dtype)
    notes = []
    if empty:
        notes.append(f"image folder: left out {len(empty)} folder(s) with no images in them: {', '.join(empty)} (in '{root}')")
    if skipped:
        n = len(train_samples) + len(test_samples)
        path, reason = skipped[0]
        # the count first: a status bar elides the end
        notes.append(f"image folder: left out {len(skipped)} of {n} images that cannot be read (first: '{path}': {reason})")
    bundle.notes = tuple(notes)
    return bundle
