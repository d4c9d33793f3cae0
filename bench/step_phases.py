"""Where the probes' overhead goes: the demo's training step split into phases, bare and probed.

`bench/overhead.py` gives the ratio; this gives its parts, as medians over interleaved steps on
the same batch (ms): forward, backward and optimiser step of a bare copy; then, for the probed run,
the start of the step, forward (block sinks), backward (block-output hooks), `after_backward`
(gradient norms, one host copy), the optimiser step and `record_step`. Cadence steps (updates every
`update_every`, histograms every `hist_every`) are timed separately.

    python bench/step_phases.py [--steps 400] [--model demo|resnet18]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import bare_copy, resnet_run  # noqa: E402

from gradviz.config import load_preset  # noqa: E402
from gradviz.core.experiment import Experiment  # noqa: E402
from gradviz.core.recording import Recording  # noqa: E402
from gradviz.core.training import record_step  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--model", choices=("demo", "resnet18"), default="demo", help="resnet18: batch 32, 3x32x32 (try --steps 75)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = Experiment(load_preset("demo")).runs[0] if args.model == "demo" else resnet_run()
    model, opt = bare_copy(run)
    probe = run.probe
    rec = Recording()
    rec.add_run(run.name, probe.layer_names, probe.layer_types, probe.block_names)
    x, y = next(run.data.train_batches(run.cfg.train.batch_size, seed=0))
    pc = time.perf_counter
    phases: dict[str, list[float]] = {}
    cadence: dict[str, list[float]] = {"plain step": [], "update step": [], "histogram step": []}

    def add(name: str, seconds: float) -> None:
        phases.setdefault(name, []).append(seconds)

    for step in range(1, args.steps + 1):
        t0 = pc()
        opt.zero_grad(set_to_none=True)
        loss = run.loss_fn(model(x), y)[0]
        t1 = pc()
        loss.backward()
        t2 = pc()
        opt.step()
        t3 = pc()
        add("bare: zero_grad + forward", t1 - t0)
        add("bare: backward", t2 - t1)
        add("bare: optimiser step", t3 - t2)

        t0 = pc()
        for g in run.optimizer.param_groups:
            g["lr"] = run.lr_now()
        probe.begin_step(step)
        run.optimizer.zero_grad(set_to_none=True)
        t1 = pc()
        out = run.model(x)
        loss, per_example = run.loss_fn(out, y)
        t2 = pc()
        loss.backward()
        t3 = pc()
        metrics = probe.after_backward(per_example)
        t4 = pc()
        if probe.is_update_step():  # as `TrainingRun.train_step` does it
            probe.weights_before()
            probe.after_update(metrics, run.optimizer.step(report=True), run.optimizer.params)
        else:
            run.optimizer.step()
        t5 = pc()
        record_step(rec, run.name, probe, step, metrics, {"lr": run.base_lr})
        t6 = pc()
        kind = "histogram step" if probe.is_hist_step(step) else "update step" if probe.is_update_step() else "plain step"
        cadence[kind].append(t6 - t0)
        if kind == "plain step":
            for name, dt in (("probed: start of step", t1 - t0), ("probed: forward", t2 - t1), ("probed: backward", t3 - t2),
                             ("probed: after_backward", t4 - t3), ("probed: optimiser step", t5 - t4), ("probed: record_step", t6 - t5)):
                add(name, dt)
    med = {k: float(np.median(v)) * 1000 for k, v in phases.items()}
    for k, v in med.items():
        print(f"{k:28s} {v:7.3f} ms")
    bare = sum(v for k, v in med.items() if k.startswith("bare"))
    probed = sum(v for k, v in med.items() if k.startswith("probed"))
    print(f"{'bare step (sum)':28s} {bare:7.3f} ms")
    print(f"{'probed plain step (sum)':28s} {probed:7.3f} ms   x{probed / bare:.3f}")
    for k, v in cadence.items():
        if v:
            print(f"{k + ' (whole, probed)':28s} {np.median(v) * 1000:7.3f} ms   n={len(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
