"""Data: synthetic sets against their formulas, seeded batching, torchvision loaders on tiny real files."""

from __future__ import annotations

import hashlib
import math
import pickle
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gradviz.config import DataConfig
from gradviz.core.data import DataError, data_shape, load_data
from gradviz.core.data import vision as vision_mod


def _take(it, n):
    return [next(it) for _ in range(n)]


# --- synthetic sets ---------------------------------------------------------------------------------


def test_rgb_targets_follow_the_formulas():
    b = load_data(DataConfig(name="rgb", n_train=1000, n_test=300), seed=0, dtype=torch.float64)
    assert (b.name, b.task, b.default_loss) == ("rgb", "regression", "sse")
    assert b.input_shape == (3,) and b.n_outputs == 3 and b.n_train == 1000 and b.n_test == 300
    for x, y in ((b.train_x, b.train_y), (b.test_x, b.test_y)):
        assert x.dtype == torch.float64 and y.dtype == torch.float64
        assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.99 and x.max() > 0.99
        r, g, bl = x.unbind(1)
        assert torch.allclose(y[:, 0], r + 2 * g + 3 * bl)
        assert torch.allclose(y[:, 1], r * r + 2 * g * g + 3 * bl * bl)
        assert torch.allclose(y[:, 2], -3 * r - 4 * g - 5 * bl)
    assert abs(b.train_x.mean().item()) < 0.05  # uniform on [-1, 1]
    assert abs(b.train_x.var().item() - 1 / 3) < 0.03
    f32 = load_data(DataConfig(name="rgb"), seed=0)
    assert f32.train_x.dtype == torch.float32 and f32.train_y.dtype == torch.float32


@pytest.mark.parametrize("name", ["rgb", "spiral", "linear", "shapes"])
def test_synthetic_sets_are_deterministic_from_seed(name):
    cfg = DataConfig(name=name, n_train=200, n_test=50)
    a, b, c = load_data(cfg, 3), load_data(cfg, 3), load_data(cfg, 4)
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.train_x, c.train_x) or not torch.equal(a.train_y, c.train_y)
    assert a.train_x.shape == (200, *a.input_shape) and a.test_x.shape == (50, *a.input_shape)


def test_spiral():
    b = load_data(DataConfig(name="spiral", n_train=400, n_test=100, classes=5, noise=0.1), 0)
    assert b.task == "classification" and b.default_loss == "cross_entropy" and b.n_outputs == 5
    assert b.train_y.dtype == torch.int64
    assert torch.bincount(b.train_y, minlength=5).tolist() == [80] * 5
    radius = b.train_x.norm(dim=1)
    assert radius.max() <= 1.0 + 1e-6 and 0.2 < b.train_x.std().item() < 1.0
    # each arm winds outward: the angle minus the arm's offset grows with the radius
    arm = b.train_x[b.train_y == 0]
    angle = torch.atan2(arm[:, 1], arm[:, 0])
    r = arm.norm(dim=1)
    inner = r < 0.3
    expected = (4.0 * r[inner] + math.pi) % (2 * math.pi) - math.pi
    diff = (angle[inner] - expected + math.pi) % (2 * math.pi) - math.pi
    assert diff.abs().median() < 0.4


def test_linear_follows_seed_003():
    b = load_data(DataConfig(name="linear", n_train=4000, n_test=4000, noise=0.5), 0)
    assert (b.task, b.default_loss, b.input_shape, b.n_outputs) == ("regression", "mse", (1,), 1)
    assert torch.allclose(
        b.train_x[:, 0], torch.linspace(-1, 1, 4000, dtype=torch.float64).float(), atol=1e-7
    )
    res_train = b.train_y - 1.5 * b.train_x
    res_test = b.test_y - 1.5 * b.test_x
    assert abs(res_train.std().item() - 0.5) < 0.03 and abs(res_test.std().item() - 0.3) < 0.02


def test_shapes_labels_match_bar_orientation():
    b = load_data(DataConfig(name="shapes", n_train=64, n_test=16, noise=0.0), 0)
    assert b.input_shape == (1, 28, 28) and b.n_outputs == 2 and b.task == "classification"
    for img, label in zip(b.train_x, b.train_y, strict=True):
        mask = img[0] > img.mean()
        rows = mask.any(dim=1).sum().item()  # extent along the vertical axis
        cols = mask.any(dim=0).sum().item()
        assert (cols > rows) if label == 0 else (rows > cols)
    noisy = load_data(DataConfig(name="shapes", n_train=256, n_test=16), 0)
    assert abs(noisy.train_x.mean().item()) < 1e-4 and abs(noisy.train_x.std().item() - 1) < 1e-3


def test_shapes_take_data_resize_like_the_image_sets(monkeypatch):
    """`data.resize` was ignored by `shapes` while the error for a ViT on 28 x 28 images said
    "image sets take data.resize=N": the built-in images now resize too (bilinear, antialiased,
    as a torchvision set's), with the same bars and labels as at their own size."""
    import gradviz.core.data as data_mod

    cfg = DataConfig(name="shapes", n_train=64, n_test=16, noise=0.0)
    native = load_data(cfg, 0)
    big = load_data(replace(cfg, resize=56), 0)
    assert big.input_shape == (1, 56, 56) and tuple(big.train_x.shape) == (64, 1, 56, 56)
    assert tuple(big.test_x.shape) == (16, 1, 56, 56) and big.train_x.dtype == torch.float32
    assert torch.equal(big.train_y, native.train_y) and torch.equal(big.test_y, native.test_y)
    # 2 x 2 averages of the doubled image give back the drawn one (up to the filter's blur)
    down = big.train_x.reshape(64, 1, 28, 2, 28, 2).mean(dim=(3, 5))
    corr = np.corrcoef(down.flatten().numpy(), native.train_x.flatten().numpy())[0, 1]
    assert corr > 0.95, corr
    assert load_data(replace(cfg, resize=20), 0, dtype=torch.float64).train_x.shape[-2:] == (20, 20)
    assert data_shape(replace(cfg, resize=224), 0) == ((1, 224, 224), 2)
    # the shape of a 4096-side set comes without drawing one image of it
    monkeypatch.setattr(data_mod, "make_shapes", lambda *a, **k: pytest.fail("drawn for its shape"))
    assert data_shape(replace(cfg, resize=4096), 0) == ((1, 4096, 4096), 2)


def test_unknown_set_and_bad_sizes():
    with pytest.raises(DataError, match="accepted values are spiral, rgb, linear, shapes"):
        load_data(DataConfig(name="imagenet"), 0)
    with pytest.raises(DataError):
        load_data(DataConfig(name="rgb", n_train=0), 0)


# --- batching ---------------------------------------------------------------------------------------


def test_train_batches_are_seeded_and_reshuffle_each_epoch():
    b = load_data(DataConfig(name="rgb", n_train=100, n_test=10), 0)
    assert b.steps_per_epoch(32) == 3  # last partial batch dropped
    one = _take(b.train_batches(32, seed=5), 7)
    two = _take(b.train_batches(32, seed=5), 7)
    other = _take(b.train_batches(32, seed=6), 7)
    assert all(
        torch.equal(x1, x2) and torch.equal(y1, y2)
        for (x1, y1), (x2, y2) in zip(one, two, strict=True)
    )
    assert not torch.equal(one[0][0], other[0][0])
    # within an epoch no example repeats, and a batch is an exact set of dataset rows
    rows = {tuple(r.tolist()) for r in b.train_x}
    epoch = torch.cat([x for x, _ in one[:3]])
    assert len({tuple(r.tolist()) for r in epoch}) == 96
    assert all(tuple(r.tolist()) in rows for r in epoch)
    for x, y in one:
        assert x.shape == (32, 3) and x.device.type == "cpu"
        r, g, bl = x.unbind(1)
        assert torch.allclose(y[:, 0], r + 2 * g + 3 * bl)  # targets travel with their inputs
    assert not torch.equal(one[0][0], one[3][0])  # epoch 2 reshuffled


def test_full_batch_and_eval_batches():
    b = load_data(DataConfig(name="spiral", n_train=50, n_test=23), 0)
    assert b.steps_per_epoch(0) == 1 and b.steps_per_epoch(500) == 1
    for x, y in _take(b.train_batches(0, seed=1), 3):
        assert torch.equal(x, b.train_x) and torch.equal(y, b.train_y)
    ev = list(b.eval_batches(10))
    assert [len(x) for x, _ in ev] == [10, 10, 3]
    assert torch.equal(torch.cat([x for x, _ in ev]), b.test_x)
    assert torch.equal(torch.cat([y for _, y in ev]), b.test_y)
    again = list(b.eval_batches(10))  # deterministic: a second pass is the same
    assert all(torch.equal(a[0], c[0]) for a, c in zip(ev, again, strict=True))


# --- torchvision sets on tiny files in their real formats -------------------------------------------


def _idx(path: Path, arr: np.ndarray) -> None:
    """Write an uncompressed IDX file (the MNIST format: big-endian header, uint8 payload)."""
    header = struct.pack(">I", 0x0800 | arr.ndim) + b"".join(
        struct.pack(">I", d) for d in arr.shape
    )
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def _write_mnist(root: Path, folder: str, n_train: int, n_test: int, side: int = 28):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        _idx(raw / f"{split}-images-idx3-ubyte", images)
        _idx(raw / f"{split}-labels-idx1-ubyte", labels)
        data[split] = (images, labels)
    return data


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_mnist_style_sets_from_idx_files(tmp_path, name, folder):
    pytest.importorskip("torchvision")
    data = _write_mnist(tmp_path, folder, n_train=12, n_test=5)
    b = load_data(DataConfig(name=name, root=str(tmp_path)), seed=0)
    assert (b.task, b.default_loss, b.input_shape, b.n_outputs) == (
        "classification",
        "cross_entropy",
        (1, 28, 28),
        10,
    )
    assert b.n_train == 12 and b.n_test == 5
    # the shapes a layer table needs, known without the files, are the loader's
    assert data_shape(DataConfig(name=name), seed=0) == (b.input_shape, b.n_outputs)
    images, labels = data["train"]
    assert b.train_y.tolist() == labels.tolist()
    assert b.test_y.tolist() == data["t10k"][1].tolist()
    x, y = next(b.train_batches(0, seed=0))
    assert x.dtype == torch.float32 and torch.equal(y, b.train_y)
    # standardised with the training split's own mean and std, recoverable to the raw pixels
    pixels = torch.from_numpy(images).float().div(255).unsqueeze(1)
    assert abs(x.mean().item()) < 1e-4 and abs(x.std(unbiased=False).item() - 1) < 1e-3
    assert torch.allclose(x * b.std.float() + b.mean.float(), pixels, atol=1e-5)


def test_resizing_a_torchvision_set_reports_its_progress(tmp_path, monkeypatch):
    """Fashion-MNIST to 96 x 96 (seed 001) takes seconds: the window says how far it has got."""
    pytest.importorskip("torchvision")
    _write_mnist(tmp_path, "FashionMNIST", n_train=7, n_test=3)
    monkeypatch.setattr(vision_mod, "PROGRESS_EVERY", 0.0)
    heard: list[str] = []
    load_data(DataConfig(name="fashion-mnist", root=str(tmp_path), resize=12), seed=0, progress=heard.append)
    assert heard == ["resizing images: 7 of 10", "resizing images: 10 of 10"]  # a chunk at a time
    heard.clear()
    load_data(DataConfig(name="fashion-mnist", root=str(tmp_path)), seed=0, progress=heard.append)
    assert heard == []  # nothing to resize, nothing slow to say


def test_mnist_resize_and_bounded_eval(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    _write_mnist(tmp_path, "MNIST", n_train=6, n_test=9)
    monkeypatch.setattr(vision_mod, "EVAL_LIMIT", 4)
    b = load_data(DataConfig(name="mnist", root=str(tmp_path), resize=32), seed=0)
    assert b.input_shape == (1, 32, 32) and b.n_test == 4
    assert data_shape(DataConfig(name="mnist", resize=32), seed=0) == (b.input_shape, b.n_outputs)
    x, _ = next(b.eval_batches())
    assert x.shape == (4, 1, 32, 32)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_cifar(root: Path):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=2).tolist()
        with open(base / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, f)
        batches[name] = (data, labels)
    label_names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": label_names, "num_vis": 3072}, f)
    return base, batches, label_names


def test_cifar10_from_pickled_batches(tmp_path, monkeypatch):
    datasets = pytest.importorskip("torchvision.datasets")
    base, batches, label_names = _write_cifar(tmp_path)
    # torchvision checks each file's md5 against the real CIFAR-10's; the files here are ours, so
    # point its expected checksums at them and let its own integrity check run
    cls = datasets.CIFAR10
    monkeypatch.setattr(
        cls,
        "train_list",
        [[f"data_batch_{i}", _md5(base / f"data_batch_{i}")] for i in range(1, 6)],
    )
    monkeypatch.setattr(cls, "test_list", [["test_batch", _md5(base / "test_batch")]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(base / "batches.meta")})
    b = load_data(DataConfig(name="cifar10", root=str(tmp_path)), seed=0, dtype=torch.float64)
    assert b.input_shape == (3, 32, 32) and b.n_outputs == 10 and b.classes == tuple(label_names)
    assert data_shape(DataConfig(name="cifar10", root="/nowhere"), seed=0) == (b.input_shape, b.n_outputs)
    assert b.n_train == 10 and b.n_test == 2
    expected = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(
        -1, 3, 32, 32
    )
    assert torch.equal(b.train_x, torch.from_numpy(expected))  # CHW rows, as CIFAR stores them
    assert b.train_y.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    x, _ = next(b.eval_batches())
    assert x.dtype == torch.float64
    want = (
        torch.from_numpy(batches["test_batch"][0].reshape(-1, 3, 32, 32)).double() / 255 - b.mean
    ) / b.std
    assert torch.allclose(x, want)


def test_cifar10_checksum_mismatch_is_a_data_error(tmp_path):
    pytest.importorskip("torchvision")
    _write_cifar(tmp_path)  # real torchvision md5s will not match these files
    with pytest.raises(DataError) as err:
        load_data(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)
    assert "corrupted" in str(err.value) and "\n" not in str(err.value)


def _png(path: Path, colour: tuple[int, int, int], size=(20, 12)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_image_folder_split_80_20(tmp_path):
    pytest.importorskip("torchvision")
    for i in range(5):
        _png(tmp_path / "cats" / f"c{i}.png", (250, 10, 10))
        _png(tmp_path / "dogs" / f"d{i}.png", (10, 10, 250))
    b = load_data(DataConfig(name="imagefolder", root=str(tmp_path), resize=16), seed=0)
    assert b.classes == ("cats", "dogs") and b.n_outputs == 2
    assert b.input_shape == (3, 16, 16) and b.n_train == 8 and b.n_test == 2
    assert b.train_y.tolist() == [0] * 4 + [1] * 4 and sorted(b.test_y.tolist()) == [0, 1]
    red, blue = b.train_x[:, 0].float().mean(dim=(1, 2)), b.train_x[:, 2].float().mean(dim=(1, 2))
    assert ((red > blue) == (b.train_y == 0)).all()  # each image kept its own label
    default = load_data(DataConfig(name="imagefolder", root=str(tmp_path)), seed=0)
    assert default.input_shape == (3, 64, 64)


def test_sixteen_bit_grey_images_keep_their_contrast(tmp_path):
    """PIL's RGB conversion (torchvision's loader) clips 16-bit grey at 255: a microscope PNG of
    0..65535 came out almost all white (mean 254.5 of 255). Scaled 65535 -> 255 now; 8-bit images
    and a 32-bit image holding 8-bit values read as they are."""
    pytest.importorskip("torchvision")
    from PIL import Image

    ramp = (np.arange(16 * 16).reshape(16, 16) * 256 + 100).astype(np.uint16)  # 100 .. 65380
    (tmp_path / "a").mkdir()
    for i in range(5):
        Image.fromarray(ramp).save(tmp_path / "a" / f"{i}.png")
        _png(tmp_path / "b" / f"{i}.png", (40, 80, 120), size=(16, 16))
    Image.fromarray((ramp // 257).astype(np.int32), "I").save(tmp_path / "b" / "wide.tif")  # 8-bit values in 32 bits
    assert Image.open(tmp_path / "a" / "0.png").mode == "I;16"
    b = load_data(DataConfig(name="imagefolder", root=str(tmp_path), resize=16), seed=0)
    wide = b.train_x[b.train_y == 0]
    want = torch.from_numpy((ramp.astype(np.int64) // 257).astype(np.uint8))
    assert wide.shape[0] == 4 and all(torch.equal(img[c], want) for img in wide for c in range(3))
    rgb = b.train_x[b.train_y == 1]
    assert rgb.shape[0] == 5  # four PNGs and the TIFF (the fifth PNG went to the test split)
    assert sum(torch.equal(img[0], want) for img in rgb) == 1  # the 32-bit image of 8-bit values
    assert sum(img[:, 0, 0].tolist() == [40, 80, 120] for img in rgb) == 4


def test_image_folder_train_test_layout(tmp_path):
    pytest.importorskip("torchvision")
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            _png(tmp_path / split / "cat" / f"{i}.png", (200, 0, 0))
            _png(tmp_path / split / "dog" / f"{i}.png", (0, 0, 200))
    # a greyscale image must come out RGB
    from PIL import Image

    Image.new("L", (8, 8), 128).save(tmp_path / "train" / "dog" / "grey.png")
    b = load_data(DataConfig(name="imagefolder", root=str(tmp_path), resize=8), seed=0)
    assert b.n_train == 7 and b.n_test == 4 and b.classes == ("cat", "dog")
    assert b.test_y.tolist() == [0, 1, 0, 1]  # interleaved so a bounded eval holds every class


def test_unreadable_images_are_left_out_with_one_note(tmp_path):
    """A scraped folder holds a few broken files: they are skipped, named once, and the labels of the
    others stay theirs; a split none of whose images can be read is refused in one line."""
    pytest.importorskip("torchvision")
    from PIL import Image

    for i in range(6):
        _png(tmp_path / "cats" / f"c{i}.png", (250, 10, 10))
        _png(tmp_path / "dogs" / f"d{i}.png", (10, 10, 250))
    (tmp_path / "cats" / "c2.png").write_bytes(b"<html>404 Not Found</html>")  # a saved error page
    good = tmp_path / "dogs" / "d0.png"
    Image.new("RGB", (20, 12), (10, 10, 250)).save(tmp_path / "dogs" / "whole.jpg")
    data = (tmp_path / "dogs" / "whole.jpg").read_bytes()
    (tmp_path / "dogs" / "d5.jpg").write_bytes(data[: len(data) // 3])  # a download cut short
    (tmp_path / "dogs" / "whole.jpg").unlink()
    assert good.exists()
    b = load_data(DataConfig(name="imagefolder", root=str(tmp_path), resize=8), seed=0)
    # cats c0..c5 less c2: five, every fifth to test; dogs d0..d4 + d5.jpg less d5.jpg: six files listed
    listed = 12 + 1  # 6 cats + 6 dogs PNGs + the truncated JPEG
    assert b.n_train + b.n_test == listed - 2
    red, blue = b.train_x[:, 0].float().mean(dim=(1, 2)), b.train_x[:, 2].float().mean(dim=(1, 2))
    assert ((red > blue) == (b.train_y == 0)).all() and set(b.train_y.tolist()) == {0, 1}
    tred, tblue = b.test_x[:, 0].float().mean(dim=(1, 2)), b.test_x[:, 2].float().mean(dim=(1, 2))
    assert ((tred > tblue) == (b.test_y == 0)).all()
    assert len(b.notes) == 1 and "\n" not in b.notes[0]
    assert b.notes[0].startswith(f"image folder: left out 2 of {listed} images that cannot be read (first: '{tmp_path}")
    assert "c2.png" in b.notes[0] or "d5.jpg" in b.notes[0]
    clean = tmp_path / "clean"
    for i in range(5):
        _png(clean / "a" / f"{i}.png", (200, 0, 0))
        _png(clean / "b" / f"{i}.png", (0, 0, 200))
    assert load_data(DataConfig(name="imagefolder", root=str(clean), resize=8), seed=0).notes == ()
    for cls in ("a", "b"):  # every test image of a train/ test/ layout broken
        (clean / "test" / cls).mkdir(parents=True)
        for i in range(3):
            (clean / "test" / cls / f"{i}.png").write_bytes(b"not an image")
    (clean / "train").mkdir()
    for cls in ("a", "b"):
        (clean / cls).rename(clean / "train" / cls)
    with pytest.raises(DataError) as err:
        load_data(DataConfig(name="imagefolder", root=str(clean), resize=8), seed=0)
    msg = str(err.value)
    assert msg.startswith(f"image folder '{clean}': none of its 6 test images can be read (first: cannot read image '")
    assert "\n" not in msg


def test_hidden_and_imageless_folders_are_not_classes(tmp_path):
    """Jupyter leaves `.ipynb_checkpoints` in any folder it opens, and a folder may hold an emptied
    class or a notes folder: torchvision made the hidden one a class and refused the whole set over
    an empty one ("Found no valid file for the classes ...")."""
    pytest.importorskip("torchvision")
    for i in range(5):
        _png(tmp_path / "cats" / f"c{i}.png", (250, 10, 10))
        _png(tmp_path / "dogs" / "deeper" / f"d{i}.png", (10, 10, 250))  # images one level down count
    _png(tmp_path / ".ipynb_checkpoints" / "c0-checkpoint.png", (0, 250, 0))
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("labels from the 2024 scrape")
    b = load_data(DataConfig(name="imagefolder", root=str(tmp_path), resize=8), seed=0)
    assert b.classes == ("cats", "dogs") and b.n_outputs == 2 and b.n_train + b.n_test == 10
    assert b.notes == (f"image folder: left out 2 folder(s) with no images in them: empty, notes (in '{tmp_path}')",)
    split = tmp_path / "split"
    for part, n in (("train", 5), ("test", 2)):
        for cls, colour in (("cats", (250, 10, 10)), ("dogs", (10, 10, 250))):
            for i in range(n):
                _png(split / part / cls / f"{i}.png", colour)
    (split / "test" / "birds").mkdir()
    b = load_data(DataConfig(name="imagefolder", root=str(split), resize=8), seed=0)
    assert b.classes == ("cats", "dogs") and (b.n_train, b.n_test) == (10, 4)
    assert b.notes == (f"image folder: left out 1 folder(s) with no images in them: test/birds (in '{split}')",)
    only_empty = tmp_path / "nothing"
    (only_empty / "a").mkdir(parents=True)
    (only_empty / "b").mkdir()
    with pytest.raises(DataError) as err:
        load_data(DataConfig(name="imagefolder", root=str(only_empty)), seed=0)
    assert "no class folder with images in it" in str(err.value) and "\n" not in str(err.value)


def test_reading_a_folder_reports_its_progress(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    for i in range(6):
        _png(tmp_path / "cats" / f"c{i}.png", (250, 10, 10))
        _png(tmp_path / "dogs" / f"d{i}.png", (10, 10, 250))
    heard: list[str] = []
    load_data(DataConfig(name="imagefolder", root=str(tmp_path), resize=4), seed=0, progress=heard.append)
    assert heard[-1] == "reading images: 12 of 12" and len(heard) <= 2  # the end, and no flood
    monkeypatch.setattr(vision_mod, "PROGRESS_EVERY", 0.0)
    heard.clear()
    load_data(DataConfig(name="imagefolder", root=str(tmp_path), resize=4), seed=0, progress=heard.append)
    assert heard == [f"reading images: {k} of 12" for k in range(1, 13)]  # training and test images together


def test_an_image_folder_is_decoded_once_per_session(tmp_path, monkeypatch):
    """The memory check asked `data_shape` for the input shape, which read every image; then the
    session read them all again: a 50 000-photo folder took two minutes to start instead of one."""
    pytest.importorskip("torchvision")
    from gradviz.config import load_preset
    from gradviz.core.experiment import Experiment

    for i in range(5):
        _png(tmp_path / "cats" / f"c{i}.png", (250, 10, 10))
        _png(tmp_path / "dogs" / f"d{i}.png", (10, 10, 250))
        _png(tmp_path / "owls" / f"o{i}.png", (10, 250, 10))
    decoded: list[str] = []
    decode = vision_mod._decode
    monkeypatch.setattr(vision_mod, "_decode", lambda loader, path, side: decoded.append(path) or decode(loader, path, side))
    cfg = DataConfig(name="imagefolder", root=str(tmp_path), resize=6)
    assert data_shape(cfg, seed=0) == ((3, 6, 6), 3) and decoded == []
    exp_cfg = load_preset("demo").with_overrides({"model.depth": 2, "model.width": 4, "data.name": "imagefolder", "data.root": str(tmp_path), "data.resize": 6})
    exp = Experiment(exp_cfg)
    assert sorted(decoded) == sorted(str(p) for p in tmp_path.rglob("*.png"))  # each once, for both twins
    assert exp.runs[0].data.n_outputs == 3


def test_links_in_an_image_folder_are_followed_once_and_never_across_classes(tmp_path):
    """A class folder linked from elsewhere is read; a link back up (`dogs/up -> ..`) walked the
    whole tree again and again until the path grew too long, so 10 images became 410, cats among
    them labelled dogs."""
    pytest.importorskip("torchvision")
    root = tmp_path / "pets"
    for i in range(5):
        _png(root / "cats" / f"c{i}.png", (250, 10, 10))
        _png(tmp_path / "elsewhere" / "dogs" / f"d{i}.png", (10, 10, 250))
    (root / "dogs").symlink_to(tmp_path / "elsewhere" / "dogs", target_is_directory=True)  # a class kept on another disk
    (tmp_path / "elsewhere" / "dogs" / "up").symlink_to(root, target_is_directory=True)  # a loop through the root
    (root / "cats" / "more").symlink_to(root / "dogs", target_is_directory=True)  # into another class
    (root / "cats" / "self").symlink_to(root / "cats", target_is_directory=True)  # into itself
    b = load_data(DataConfig(name="imagefolder", root=str(root), resize=4), seed=0)
    assert b.classes == ("cats", "dogs") and (b.n_train, b.n_test) == (8, 2)
    x, y = torch.cat([b.train_x, b.test_x]), torch.cat([b.train_y, b.test_y])
    assert ((x[:, 0].float().mean(dim=(1, 2)) > x[:, 2].float().mean(dim=(1, 2))) == (y == 0)).all()


def test_missing_folders_give_one_line_errors(tmp_path):
    missing = tmp_path / "data"
    with pytest.raises(DataError) as err:
        load_data(DataConfig(name="mnist", root=str(missing)), seed=0)
    assert str(err.value) == (
        f"MNIST not found under '{missing}' "
        "(pass --download to fetch it, or --data-root DIR to point at it)"
    )
    missing.mkdir()
    pytest.importorskip("torchvision")
    for name, label in (
        ("mnist", "MNIST"),
        ("fashion-mnist", "Fashion-MNIST"),
        ("cifar10", "CIFAR-10"),
    ):
        with pytest.raises(DataError) as err:
            load_data(DataConfig(name=name, root=str(missing)), seed=0)
        assert str(err.value).startswith(f"{label} not found under '{missing}'")
    with pytest.raises(DataError, match="--data-root"):
        load_data(DataConfig(name="cifar10"), seed=0)
    with pytest.raises(DataError, match="--data-root"):
        load_data(DataConfig(name="imagefolder", root=str(tmp_path / "nope")), seed=0)
    with pytest.raises(DataError) as err:
        load_data(replace(DataConfig(name="imagefolder"), root=str(missing)), seed=0)
    assert "\n" not in str(err.value)


def test_without_torchvision_image_sets_say_why(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    (tmp_path / "MNIST").mkdir()
    with pytest.raises(DataError) as err:
        load_data(DataConfig(name="mnist", root=str(tmp_path)), seed=0)
    msg = str(err.value)
    assert msg.startswith("torchvision is not available (") and "spiral, rgb, linear, shapes" in msg
    assert load_data(DataConfig(name="spiral"), 0).n_train == 2048  # built-in sets still work
