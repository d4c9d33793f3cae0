"""The least any per-step probe could cost on this machine: a floor under `bench/overhead.py`'s ratio.

On the demo's plain model (30 blocks, batch 128, one torch thread), interleaved in one run:
- `bare`: the training step alone;
- `empty block hooks`: a Python pre-hook per block that does nothing: the hook mechanism alone
  (registering it in forward, calling it from backward), without the norm it would take;
- `block hooks only`: gradviz's `BlockGradNorms` (a Python hook per block in backward, which is the
  only way to see dL/d(block output) at all), nothing else;
- `norm arithmetic only`: the bare step plus the arithmetic every per-step probe must do, with no
  hook and no Python per tensor: one `_foreach_norm` over the parameter gradients and over 30 tensors
  shaped like the block outputs (stand-ins for dL/d(block output), made once). No mechanism, compiled
  or not, computes `grad_norm` and `act_grad_norm` for less on one core of this CPU;
- `param norms on a 2nd thread`: the parameter gradients handed after backward to a worker thread
  that takes their `_foreach_norm` and copies them to the host while the training thread goes on
  (the other core is idle here); it shows whether moving the arithmetic off the training thread
  could make it free: the hand-over (a queue, a wake-up, the GIL passed back and forth, gradients
  held a little longer) costs about as much as the norms themselves;
- `minimal measure`: the block hooks plus the smallest possible read-out: one `_foreach_norm` over every
  parameter gradient, one concatenation with the block norms and the loss, one host copy and one
  finiteness check; no per-layer grouping, no recording, no update or histogram cadence;
- `gradviz default`: the engine's real step (`TrainingRun.train_step` + `record_step`).

Whatever the engine's bookkeeping does, it cannot go below `minimal measure`; if that row is above a
target, the target needs a different mechanism (compiled hooks, a GPU), not tuning. Last line:
`floor <ratio of minimal measure>`.

    python bench/overhead_floor.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import bare_copy, demo_run, gradviz_step  # noqa: E402

from gradviz.core.models.switches import blocks as switch_blocks  # noqa: E402
from gradviz.core.probes import BlockGradNorms  # noqa: E402


class NormThread:
    """A worker thread that takes the norms of the gradient lists it is handed, in order."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        torch.set_num_threads(1)
        while (job := self.jobs.get()) is not None:
            grads, loss = job
            torch.stack([*torch._foreach_norm(grads), loss]).numpy()
            self.done += 1


def _empty_hook(_grads) -> None:
    return None


def _empty_hook_sink(_block, out) -> None:
    """What `BlockGradNorms` does per block, less the norm: a pre-hook on the output's node that
    does nothing, so the row shows what the hook mechanism alone costs."""
    out.grad_fn.register_prehook(_empty_hook)


def copy_step(run, measure: str):
    """A step on a hook-free copy of the run's model; `measure` is 'none', 'arithmetic', 'thread',
    'empty hooks', 'hooks' or 'minimal'."""
    model, opt = bare_copy(run)
    params = list(model.parameters())
    worker = NormThread() if measure == "thread" else None
    hooks = BlockGradNorms(switch_blocks(model)) if measure in ("hooks", "minimal") else None
    if measure == "empty hooks":
        for _, block in switch_blocks(model):
            block.gradviz_sink = _empty_hook_sink
    width, batch = run.cfg.model.width, run.cfg.train.batch_size
    stand_ins = [torch.randn(batch, width) for _ in switch_blocks(model)] if measure == "arithmetic" else []

    def step(_i, x, y):
        opt.zero_grad(set_to_none=True)
        loss = run.loss_fn(model(x), y)[0]
        loss.backward()
        if stand_ins:
            torch._foreach_norm([p.grad for p in params if p.grad is not None] + stand_ins)
        if worker is not None:
            worker.jobs.put(([p.grad for p in params if p.grad is not None], loss.detach()))
        if hooks is not None:
            if measure == "minimal":
                norms = torch._foreach_norm([p.grad for p in params if p.grad is not None])
                flat = torch.cat([torch.stack(norms), torch.stack(hooks.values()), loss.detach().reshape(1)]).cpu().numpy()
                if not np.isfinite(flat).all():
                    return  # the guard: no optimiser step on a non-finite value
            hooks.reset()
        opt.step()

    return step


def round_args() -> argparse.Namespace:
    """`--rounds` and `--per-round` of an interleaved comparison (also `bench/compiled_hooks.py`'s)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--per-round", type=int, default=20)
    return ap.parse_args()


def main() -> int:
    args = round_args()
    torch.set_num_threads(1)
    run = demo_run()
    with tempfile.TemporaryDirectory() as d:
        configs = {
            "bare": copy_step(run, "none"),
            "norm arithmetic only": copy_step(run, "arithmetic"),
            "param norms on a 2nd thread": copy_step(run, "thread"),
            "empty block hooks": copy_step(run, "empty hooks"),
            "block hooks only": copy_step(run, "hooks"),
            "minimal measure": copy_step(run, "minimal"),
            "gradviz default": gradviz_step(run, Path(d)),
        }
        batches = run.data.train_batches(run.cfg.train.batch_size, seed=0)
        data = [next(batches) for _ in range(args.per_round)]
        times: dict[str, list[float]] = {k: [] for k in configs}
        count = dict.fromkeys(configs, 0)
        for r in range(args.rounds + 1):  # round 0 warms every configuration up
            order = list(configs) if r % 2 == 0 else list(reversed(configs))
            for name in order:
                t0 = time.perf_counter()
                for x, y in data:
                    configs[name](count[name], x, y)
                    count[name] += 1
                if r:
                    times[name].append((time.perf_counter() - t0) / len(data) * 1e3)
        configs["gradviz default"].close()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'configuration':<28} {'ms/step':>9} {'x bare':>8}")
    for name, ms in med.items():
        print(f"{name:<28} {ms:9.3f} {ms / med['bare']:8.3f}")
    print(f"floor {med['minimal measure'] / med['bare']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
