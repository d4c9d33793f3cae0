"""What a busy second thread costs the training step: the question behind "measure on a worker".

The demo's bare training step (one torch thread) is timed in interleaved rounds while a second
thread is idle, runs compute-bound torch work (512x512 matmuls, which hold the GIL only between
ops) or memory-bound torch work (32 MiB copies). If the machine's two cores shared nothing, both
busy rows would read 1.00: whatever the probes move to a worker would then be free. Where the
memory-bound row is well above 1, a worker that reads gradients and weights (which is what
measuring them is) slows the step by a good part of what it took off it. Measured on the 2-core
development machine: compute-bound 1.017 and 1.023, memory-bound 1.25 and 1.09 (two runs).

    python bench/neighbour_cost.py [--rounds 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import bare_copy, bare_step, demo_run  # noqa: E402

KINDS = ("idle", "compute-bound neighbour", "memory-bound neighbour")


class Neighbour:
    def __init__(self) -> None:
        self.kind = "idle"
        self.busy = threading.Event()
        self.quit = False
        self.thread = threading.Thread(target=self._loop, name="neighbour")
        self.thread.start()

    def _loop(self) -> None:
        torch.set_num_threads(1)
        a = torch.randn(512, 512)
        src, dst = torch.randn(8 << 20), torch.empty(8 << 20)
        while not self.quit:
            if not self.busy.wait(0.05):
                continue
            if self.kind == KINDS[1]:
                torch.mm(a, a)
            elif self.kind == KINDS[2]:
                dst.copy_(src)

    def set(self, kind: str) -> None:
        self.kind = kind
        if kind == "idle":
            self.busy.clear()
        else:
            self.busy.set()

    def stop(self) -> None:
        self.quit = True
        self.busy.set()
        self.thread.join()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = demo_run()
    step = bare_step(*bare_copy(run), lambda out, y: run.loss_fn(out, y)[0])
    batches = run.data.train_batches(run.cfg.train.batch_size, seed=0)
    data = [next(batches) for _ in range(25)]
    neighbour = Neighbour()
    ms: dict[str, list[float]] = {k: [] for k in KINDS}
    try:
        for r in range(args.rounds + 1):  # round 0 warms up
            for kind in KINDS if r % 2 == 0 else tuple(reversed(KINDS)):
                neighbour.set(kind)
                time.sleep(0.02)
                t0 = time.perf_counter()
                for i, (x, y) in enumerate(data):
                    step(i, x, y)
                if r:
                    ms[kind].append((time.perf_counter() - t0) / len(data) * 1e3)
    finally:
        neighbour.stop()
    idle = statistics.median(ms["idle"])
    print(f"{'second thread':26s} {'ms/step':>8s} {'ratio':>6s}")
    for kind in KINDS:
        m = statistics.median(ms[kind])
        print(f"{kind:26s} {m:8.2f} {m / idle:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
