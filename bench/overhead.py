"""Cost of watching a training step: bare vs gradviz vs wandb.watch vs TensorBoard histograms.

Measured interleaved in one run (the machine is shared and noisy, so only ratios taken side by side
mean anything), on the demo's plain model and on ResNet-18 (CPU, batch 32, 3x32x32 input), one torch
thread. Then `gradviz.watch` on a user's own loop (torch.optim, `bench/watch_overhead.py`): ResNet-18
and a user-style MLP, bare vs watched at default settings. Also: run-file bytes per step of the demo
twin, and the recording's memory over 100 000 steps. The last line is `overhead <ratio>` for the demo
at default settings.

    python bench/overhead.py [--rounds 7] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradviz.config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_preset  # noqa: E402
from gradviz.core import training  # noqa: E402
from gradviz.core.data import load_data  # noqa: E402
from gradviz.core.experiment import Experiment  # noqa: E402
from gradviz.core.recording import Recording  # noqa: E402
from gradviz.core.runfile import RunFileWriter  # noqa: E402
from gradviz.core.training import TrainingRun, record_step  # noqa: E402


class RandomImages:
    """Stand-in data bundle for ResNet-18: the bench measures steps, not learning."""

    task, default_loss, n_outputs, input_shape = "classification", "cross_entropy", 10, (3, 32, 32)

    def steps_per_epoch(self, batch_size):
        return 100

    def train_batches(self, batch_size, seed):
        g = torch.Generator().manual_seed(seed)
        while True:
            yield torch.randn(batch_size, 3, 32, 32, generator=g), torch.randint(0, 10, (batch_size,), generator=g)


def bare_step(model, opt, loss_fn):
    def step(i, x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    return step


def gradviz_step(run: TrainingRun, tmp: Path):
    rec = Recording()
    rec.add_run(run.name, run.probe.layer_names, run.probe.layer_types, run.probe.block_names)
    writer = RunFileWriter(tmp / f"{run.name}.gradviz", rec)

    def step(i, x, y):
        metrics, lr = run.train_step(i, x, y)
        record_step(rec, run.name, run.probe, i, metrics, {"lr": lr})

    step.close = writer.close
    return step


def wandb_step(model, opt, loss_fn, tmp: Path):
    try:
        import wandb
    except ImportError:
        return None
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    wrun = wandb.init(project="gradviz-bench", dir=str(tmp), reinit="finish_previous", settings=wandb.Settings(console="off"))
    wandb.watch(model, log="all", log_freq=1)

    def step(i, x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        wrun.log({"loss": loss.item()}, step=i)

    step.close = wrun.finish
    return step


def tensorboard_step(model, opt, loss_fn, tmp: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    tb = SummaryWriter(str(tmp / "tb"))
    named = list(model.named_parameters())

    def step(i, x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        tb.add_scalar("loss", loss.item(), i)
        for name, p in named:
            tb.add_histogram(name, p, i)
            if p.grad is not None:
                tb.add_histogram(name + "/grad", p.grad, i)

    step.close = tb.close
    return step


def bare_copy(run: TrainingRun):
    """A copy of the run's model without gradviz's hooks (a deep copy would carry forward hooks
    along; the blocks' probe sinks are dropped by `SwitchableBlock.__getstate__`), and an optimiser
    from the engine's own `make_optimizer`, so the rows differ only by the probes."""
    m = copy.deepcopy(run.model)
    for mod in m.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs"):
            getattr(mod, attr, {}).clear()
        assert getattr(mod, "gradviz_sink", None) is None
    tc = run.cfg.train
    return m, training.make_optimizer(tc.optimizer, m.parameters(), run.base_lr, tc.momentum, tc.weight_decay)


def measure(label: str, run: TrainingRun, rounds: int, per_round: int, tmp: Path) -> dict[str, tuple[float, float]]:
    """Per configuration, interleaved round by round on the same batches: (median ms per step over
    the rounds, median of its per-round ratios to `bare`). A round's mean covers the cadence steps;
    the ratios taken round by round follow the machine's drift, which a ratio of medians does not."""
    loss_fn = lambda out, y: run.loss_fn(out, y)[0]  # noqa: E731
    configs = {"bare": None, "gradviz": None, "wandb.watch(all, 1)": None, "tensorboard hist": None}

    def fresh():
        return bare_copy(run)

    configs["bare"] = bare_step(*fresh(), loss_fn)
    configs["gradviz"] = gradviz_step(run, tmp)
    configs["wandb.watch(all, 1)"] = wandb_step(*fresh(), loss_fn, tmp)
    configs["tensorboard hist"] = tensorboard_step(*fresh(), loss_fn, tmp)
    configs = {k: v for k, v in configs.items() if v is not None}
    batches = run.data.train_batches(run.cfg.train.batch_size, seed=0)
    data = [next(batches) for _ in range(per_round)]
    times: dict[str, list[float]] = {k: [] for k in configs}
    counter = {k: 0 for k in configs}
    for r in range(rounds + 1):  # round 0 warms up every configuration
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        for name in order:
            fn = configs[name]
            t0 = time.perf_counter()
            for x, y in data:
                fn(counter[name], x, y)
                counter[name] += 1
            if r:
                times[name].append((time.perf_counter() - t0) / per_round * 1e3)
    for fn in configs.values():
        if hasattr(fn, "close"):
            fn.close()
    return {
        k: (statistics.median(v), statistics.median(a / b for a, b in zip(v, times["bare"], strict=True)))
        for k, v in times.items()
    }


def demo_run() -> TrainingRun:
    cfg = load_preset("demo")
    rc = cfg.run("plain")
    return TrainingRun(rc, load_data(rc.data, seed=0), torch.device("cpu"))


def resnet_run() -> TrainingRun:
    rc = RunConfig(
        "resnet18",
        ModelConfig(kind="resnet18", norm=True, residual=True),
        DataConfig(name="spiral"),
        TrainConfig(lr=0.01, batch_size=32),
    )
    return TrainingRun(rc, RandomImages(), torch.device("cpu"))


def bytes_per_step(tmp: Path, steps: int) -> float:
    rec = Recording()
    exp = Experiment(load_preset("demo"), rec)
    path = tmp / "twin.gradviz"
    writer = RunFileWriter(path, rec)
    exp.run(steps=steps, threads=1)
    writer.close()
    return path.stat().st_size / steps


def recording_memory(steps: int) -> list[tuple[int, int]]:
    """Demo-shaped appends (2 runs, 62 layers, 30 blocks, histograms every 25 steps) without training."""
    rec = Recording()
    L, B = 62, 30
    for r in ("plain", "residual"):
        rec.add_run(r, [f"l{i}" for i in range(L)], ["Linear"] * L, [f"b{i}" for i in range(B)])
        for kind in ("weight", "grad", "activation"):
            for i in range(L):
                rec.set_edges(r, kind, i, np.linspace(-1, 1, 65))
    vec, blk = np.ones(L, np.float32), np.ones(B, np.float32)
    counts = {i: np.ones(64, np.float32) for i in range(L)}
    out = []
    for s in range(steps):
        for r in ("plain", "residual"):
            m = {"loss": 1.0, "lr": 0.05, "grad_norm": vec, "act_grad_norm": blk, "weight_norm": vec, "update_ratio": vec}
            if s % 25 == 0:
                m.update(act_mean=vec, act_std=vec, act_saturation=vec, eval_loss=1.0, eval_accuracy=0.5)
                for kind in ("weight", "grad", "activation"):
                    rec.append_histograms(r, s, kind, counts)
            rec.append(r, s, m)
        if s + 1 in (1_000, 10_000, 50_000, 100_000) or s + 1 == steps:
            out.append((s + 1, rec.nbytes()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and steps (smoke run)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rounds = 2 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results = {
            "demo plain (30-block MLP, batch 128)": measure("demo", demo_run(), rounds, 25 if not args.quick else 5, tmp),
            "ResNet-18 (batch 32, 3x32x32)": measure("resnet", resnet_run(), rounds, 4 if not args.quick else 2, tmp),
        }
        import watch_overhead  # noqa: PLC0415 - a sibling script

        for case, label in (("resnet18", "ResNet-18, user loop (SGD momentum)"), ("mlp", "user MLP 784-512-512-256-10 (Adam)")):
            steps = (100 if case == "resnet18" else 500) if not args.quick else 20
            times = watch_overhead.bench(case, steps, 5, tmp)
            # means, not medians: a median step is one without the update and histogram cadences
            means = {k.replace("watch", "gradviz.watch"): statistics.fmean(v) * 1e3 for k, v in times.items()}
            results[label] = {k: (ms, ms / means["bare"]) for k, ms in means.items()}
        print(f"{'model':<38} {'configuration':<32} {'ms/step':>9} {'x bare':>8}")
        for model, res in results.items():
            for name, (ms, ratio) in res.items():
                print(f"{model:<38} {name:<32} {ms:9.2f} {ratio:8.3f}")
        bps = bytes_per_step(tmp, 200 if args.quick else 1000)
        print(f"run file: {bps:,.0f} bytes per step (demo twin, 2 runs, histograms every 25 steps)")
    mem = recording_memory(20_000 if args.quick else 100_000)
    print("recording memory: " + ", ".join(f"{s:,} steps {b / 2**20:.1f} MiB" for s, b in mem))
    demo = results["demo plain (30-block MLP, batch 128)"]
    print(f"overhead {demo['gradviz'][1]:.3f}")


if __name__ == "__main__":
    main()
