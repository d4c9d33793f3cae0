"""What finding the layers that feed an activation costs on a histogram step.

`act_saturation` is kept only for layers whose output an activation reads (`ActivationFeeds`).
A model with activation modules is watched through pre-hooks on them; one with functional
activations only (`F.relu` in its forward) through a torch function mode, which sees every torch
call of the forward. This times the demo twin's lockstep step with every step a histogram step:
no feeds, module hooks (what the demo uses), and the function mode forced, interleaved round by
round in one run, one torch thread. Last line: `feeds <module ratio> <mode ratio>`.

    python bench/activation_feeds.py [--rounds 6] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradviz.config import load_preset  # noqa: E402
from gradviz.core.activation_feeds import ActivationFeeds  # noqa: E402
from gradviz.core.experiment import Experiment  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    exp = Experiment(load_preset("demo").with_overrides({"train.hist_every": 1}))
    feeds = [r.probe.feeds for r in exp.runs]
    modules = [f.act_modules for f in feeds]
    real_arm = ActivationFeeds.arm
    for _ in range(5):
        exp.step()

    def configure(name: str) -> None:
        ActivationFeeds.arm = real_arm if name != "none" else (lambda self: None)
        for f, mods in zip(feeds, modules, strict=True):
            f.act_modules = [] if name == "function mode" else mods

    times: dict[str, list[float]] = {"none": [], "module hooks": [], "function mode": []}
    try:
        for _ in range(args.rounds):
            for name in times:
                configure(name)
                t = time.perf_counter()
                for _ in range(args.steps):
                    exp.step()
                times[name].append((time.perf_counter() - t) / args.steps * 1e3)
    finally:
        configure("module hooks")
    base = statistics.median(times["none"])
    print(f"{'configuration':<16} {'ms/step':>8} {'x none':>7}   (demo twin, 2 runs, every step a histogram step)")
    for name, ts in times.items():
        print(f"{name:<16} {statistics.median(ts):8.2f} {statistics.median(ts) / base:7.3f}")
    hooks, mode = (statistics.median(times[k]) / base for k in ("module hooks", "function mode"))
    print(f"feeds {hooks:.3f} {mode:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
