"""Cost of `gradviz.watch` on a user's training step, measured interleaved in one run.

For each model two copies start from the same weights: one trains bare, the other with
`gradviz.watch` at its default settings (every step recorded, weight_norm / update_ratio every 5th
step, histograms and activation statistics every 50th). Steps alternate bare / watched / bare ...
so machine noise hits both alike; the means cover whole multiples of the 50-step cadence, so the
occasional histogram step is paid for in the figure. A third column shows `update_every=1` (weights
copied around every step) for reference.

    python bench/watch_overhead.py               # ResNet-18 (CPU, batch 32, 3x32x32, 10 classes) + MLP
    python bench/watch_overhead.py --steps 100 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import gradviz


def resnet18() -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(num_classes=10)


def user_mlp() -> nn.Module:
    """What a user writes: MNIST-sized input, three hidden ReLU layers with dropout."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(512, 256), nn.ReLU(),
        nn.Linear(256, 10),
    )


CASES = {
    # name: (builder, input shape, batch, optimizer)
    "resnet18": (resnet18, (3, 32, 32), 32, lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)),
    "mlp": (user_mlp, (1, 28, 28), 128, lambda p: torch.optim.Adam(p, lr=1e-3)),
}


def make_step(model, opt, w=None):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if w is not None:
            w.log(loss=loss)

    return step


def bench(name: str, steps: int, warmup: int, folder: Path) -> dict:
    build, shape, batch, make_opt = CASES[name]
    torch.manual_seed(0)
    base = build()
    variants = {}
    for label, kw in (("bare", None), ("watch", {}), ("watch, update_every=1", {"update_every": 1})):
        model = build()
        model.load_state_dict(base.state_dict())
        opt = make_opt(model.parameters())
        w = None if kw is None else gradviz.watch(model, opt, path=folder / f"{name}-{len(variants)}.gradviz", name=name, **kw)
        variants[label] = (make_step(model, opt, w), w, [])
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(batch, *shape, generator=g), torch.randint(0, 10, (batch,), generator=g)) for _ in range(8)]
    for i in range(warmup + steps):
        x, y = data[i % len(data)]
        for step, _, times in variants.values():  # interleaved: one step of each, in turn
            t0 = time.perf_counter()
            step(x, y)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times.append(dt)
    for _, w, _ in variants.values():
        if w is not None:
            w.close()
    return {label: times for label, (_, _, times) in variants.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=0, help="measured steps per variant (default: 100 ResNet-18, 500 MLP)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--models", default="resnet18,mlp")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"{'model':<10} {'variant':<24} {'steps':>6} {'mean ms/step':>13} {'median':>9} {'ratio (mean)':>13} {'ratio (median)':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            steps = args.steps or (100 if name == "resnet18" else 500)
            res = bench(name, steps, args.warmup, Path(tmp))
            bare = res["bare"]
            bm, bmed = statistics.fmean(bare), statistics.median(bare)
            for label, times in res.items():
                m, med = statistics.fmean(times), statistics.median(times)
                print(f"{name:<10} {label:<24} {len(times):>6} {m * 1e3:>13.2f} {med * 1e3:>9.2f} {m / bm:>13.3f} {med / bmed:>15.3f}")


if __name__ == "__main__":
    main()
