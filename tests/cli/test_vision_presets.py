"""The ResNet-18 presets on tiny data sets written in the real formats (MNIST IDX, CIFAR-10 python
batches, an image folder), trained a few steps through `gradviz run`."""

import hashlib
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradviz
from gradviz import cli
from gradviz.config import load_preset

pytest.importorskip("torchvision")


def gv(*args, tmp_path, timeout=240):
    env = dict(os.environ, GRADVIZ_HOME=str(tmp_path / "home"))
    return subprocess.run([sys.executable, "-m", "gradviz", *args], capture_output=True, text=True, timeout=timeout, env=env)


def write_idx(path: Path, arr: np.ndarray) -> None:
    """An uncompressed IDX file: magic (0x08 = uint8, number of dims), big-endian sizes, payload."""
    header = struct.pack(">I", 0x0800 | arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 24, n_test: int = 8) -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return root


def write_cifar(root: Path) -> Path:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, 4).tolist()}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}, f)
    return base


def write_image_folder(root: Path) -> Path:
    """Seed 002's layout: one folder of images per class."""
    from PIL import Image

    for cls, colour in (("cats", (230, 40, 20)), ("dogs", (20, 40, 230))):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (40 + i, 30), colour).save(root / cls / f"{cls[:-1]}.{i}.jpg")
    return root


def check_run_file(path: Path, steps: int = 3, n_blocks: int = 8) -> gradviz.core.recording.Recording:
    rec = gradviz.open_run(path)
    assert rec.runs == ["plain", "residual"]
    for run in rec.runs:
        assert rec.metric(run, "loss")[0].tolist() == list(range(steps))
        assert np.isfinite(rec.metric(run, "loss")[1]).all()
        assert rec.layers(run)[0] == "conv1" and "fc" in rec.layers(run)
        assert len(rec.blocks(run)) == n_blocks
        assert np.isfinite(rec.metric(run, "grad_norm")[1]).any()
    return rec


def test_presets_carry_the_lectures_settings():
    mnist = load_preset("resnet18-mnist")
    assert (mnist.data.name, mnist.data.resize, mnist.train.batch_size, mnist.train.optimizer) == ("mnist", 32, 64, "sgd")
    assert {r.name: (r.model.residual, r.train.lr) for r in mnist.runs} == {"plain": (False, 0.005), "residual": (True, 0.01)}
    fashion = load_preset("resnet18-fashion")
    assert (fashion.data.name, fashion.data.resize, fashion.train.batch_size, fashion.train.lr) == ("fashion-mnist", 96, 256, 0.05)
    assert [r.model.residual for r in fashion.runs] == [False, True]
    for cfg in (mnist, fashion):
        assert cfg.model.kind == "resnet18" and cfg.model.norm and cfg.note.strip()


def test_resnet18_mnist_on_idx_files(tmp_path):
    root = write_mnist(tmp_path / "data")
    out = tmp_path / "mnist.gradviz"
    res = gv("run", "--preset", "resnet18-mnist", "--data-root", str(root), "--steps", "3", "--quiet", "--out", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    rec = check_run_file(out)
    assert rec.meta["config"]["data"]["root"] == str(root)


def test_image_folder_cats_and_dogs(tmp_path):
    root = write_image_folder(tmp_path / "catsdogs")
    out = tmp_path / "folder.gradviz"
    res = gv("run", "--preset", "resnet18-mnist", "--set", "data.name=imagefolder", "--data-root", str(root),
             "--steps", "3", "--quiet", "--out", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    check_run_file(out)


def test_a_broken_image_is_left_out_said_and_recorded(tmp_path):
    root = write_image_folder(tmp_path / "catsdogs")
    broken = root / "dogs" / "dog.9.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    out = tmp_path / "folder.gradviz"
    res = gv("run", "--preset", "resnet18-mnist", "--set", "data.name=imagefolder", "--data-root", str(root),
             "--steps", "3", "--out", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.startswith("reading images: 1 of 11\n")  # a log's first progress line, before the header
    notes = [line for line in res.stdout.splitlines() if "left out" in line]
    assert notes == [f"  note: image folder: left out 1 of 11 images that cannot be read (first: '{broken}': "
                     + notes[0].split(f"'{broken}': ", 1)[1]]
    rec = check_run_file(out)
    assert [(s, r, k) for s, r, k, d in rec.events() if "left out 1 of 11" in d] == [(0, "", "note")]


def test_missing_data_folder_is_one_line_and_exit_2(tmp_path):
    res = gv("run", "--preset", "resnet18-mnist", "--data-root", str(tmp_path / "nowhere"), "--steps", "3", tmp_path=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "MNIST not found" in lines[0] and "--download" in lines[0], res.stderr


def test_fashion_preset_at_96_pixels(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    root = write_mnist(tmp_path / "data", folder="FashionMNIST", n_train=12, n_test=4)
    out = tmp_path / "fashion.gradviz"
    rc = cli.main(["run", "--preset", "resnet18-fashion", "--data-root", str(root), "--steps", "2",
                   "--set", "train.batch_size=4", "--quiet", "--out", str(out)])
    assert rc == 0
    rec = check_run_file(out, steps=2)
    assert rec.meta["config"]["data"]["resize"] == 96


def test_cifar10_python_batches(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    base = write_cifar(tmp_path / "data")
    # torchvision checks every file against the real CIFAR-10's md5: point it at these files
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in base.iterdir()}
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": md5["batches.meta"]})
    out = tmp_path / "cifar.gradviz"
    rc = cli.main(["run", "--preset", "resnet18-mnist", "--set", "data.name=cifar10", "--data-root", str(base.parent),
                   "--steps", "3", "--quiet", "--out", str(out)])
    assert rc == 0
    check_run_file(out)


def test_any_torchvision_model_with_the_residual_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    root = write_mnist(tmp_path / "data", n_train=8, n_test=4)
    out = tmp_path / "r34.gradviz"
    rc = cli.main(["run", "--preset", "resnet18-mnist", "--model", "torchvision:resnet34", "--data-root", str(root),
                   "--steps", "2", "--quiet", "--out", str(out)])
    assert rc == 0
    rec = check_run_file(out, steps=2, n_blocks=16)  # 3 + 4 + 6 + 3 BasicBlocks
    assert rec.meta["config"]["model"]["kind"] == "torchvision:resnet34"
    # same seed, same batch: the first losses differ only because the switch reached the blocks
    assert rec.metric("plain", "loss")[1][0] != rec.metric("residual", "loss")[1][0]


@pytest.mark.parametrize("command", ["run", "summary"])
def test_a_torchvision_model_too_big_for_the_images_is_one_line(tmp_path, command):
    """Inception v3 needs at least 75 x 75 pixels; on MNIST's (resized to 32) `gradviz run` and
    `gradviz summary` ended in a 40-line traceback. One line now, naming the run, the model, the
    examples' shape and the fix, and exit code 2."""
    root = write_mnist(tmp_path / "data", n_train=8, n_test=4)
    extra = ["--steps", "1", "--quiet", "--out", str(tmp_path / "x.gradviz")] if command == "run" else []
    res = gv(command, "--preset", "resnet18-mnist", "--model", "torchvision:inception_v3", "--data-root", str(root), *extra, tmp_path=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("gradviz: plain: model torchvision:inception_v3 cannot take this data's 1x32x32 examples")
    assert "data.resize=N" in lines[0] and "Kernel size can't be greater than actual input size" in lines[0]
    assert not (tmp_path / "x.gradviz").exists()


def test_an_image_model_on_the_demo_points_is_told_of_the_built_in_images(tmp_path):
    """`gradviz run --model torchvision:resnet34` on the demo's 2-D points said "cannot take this
    data's 2 examples"; it names the vectors and the built-in images now, and following that hint
    (with `data.resize`, which `shapes` ignored) trains."""
    res = gv("run", "--model", "torchvision:resnet34", "--steps", "1", "--quiet", "--out", str(tmp_path / "x.gradviz"), tmp_path=tmp_path)
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert line.startswith("gradviz: plain: model torchvision:resnet34 cannot take this data's examples, vectors of 2 values")
    assert "data.name=shapes is built in, data.resize=N sizes it" in line and "\n" not in line
    out = tmp_path / "big.gradviz"
    res = gv("run", "--model", "lenet", "--set", "data.name=shapes", "--set", "data.resize=40", "--steps", "2", "--quiet",
             "--out", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    run = gradviz.open_run(out)
    # rows (name, type, output shape, ...): LeNet's first 5x5 convolution (padding 2) keeps the
    # side, 40 and not the drawn 28
    first = next(r for r in run.meta["layer_table"]["plain"] if r[1] == "Conv2d")
    assert first[2] == [6, 40, 40], first
    assert len(run.metric("plain", "loss")[0]) == 2


def test_download_flag_maps_to_the_config(tmp_path):
    args = cli.make_parser().parse_args(["run", "--preset", "resnet18-mnist", "--data-root", str(tmp_path), "--download"])
    cfg = cli.build_config(args)
    assert all(r.data.download and r.data.root == str(tmp_path) for r in cfg.runs)


def test_a_watched_run_exports(tmp_path):
    """A file written by gradviz.watch is what `gradviz export` (and the GUI) read."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "mine.gradviz"
    with gradviz.watch(model, opt, path=path, name="mine", hist_every=2) as w:
        for _ in range(4):
            x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            w.log(loss=loss)
    res = gv("export", str(path), "--out", str(tmp_path / "slides"), "--format", "png,csv", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "slides" / "depth.png").stat().st_size > 0
    assert "mine" in (tmp_path / "slides" / "loss.csv").read_text()
