"""What flushing denormals saves on a deep plain stack (`Experiment.run` trains with them flushed).

The demo twin at 200 blocks: the plain twin's gradients vanish below float32's smallest normal
value (1.2e-38) in its first layers, where x86 arithmetic on denormals is about a hundred times
slower. Lockstep steps (both twins) with denormals kept and flushed, interleaved round by round in
one run, one torch thread. Last line: `denormal slowdown <ratio>`.

    python bench/denormals.py [--depth 200] [--rounds 5]
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
from gradviz.core.experiment import Experiment  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not torch.set_flush_denormal(False):
        print("this CPU cannot flush denormals: nothing to measure")
        return 0
    cfg = load_preset("demo").with_overrides({"model.depth": args.depth})
    exps = {"kept": Experiment(cfg), "flushed": Experiment(cfg)}
    times: dict[str, list[float]] = {k: [] for k in exps}
    for r in range(args.rounds + 1):  # round 0 warms up (and takes the plain twin's gradients down)
        for name in (list(exps) if r % 2 == 0 else list(reversed(exps))):
            torch.set_flush_denormal(name == "flushed")
            t0 = time.perf_counter()
            for _ in range(args.per_round):
                exps[name].step()
            if r:
                times[name].append((time.perf_counter() - t0) / args.per_round * 1e3)
    torch.set_flush_denormal(False)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"demo twin, {args.depth} blocks, ms per lockstep step (both runs):")
    for name, ms in med.items():
        print(f"  denormals {name:<8} {ms:8.1f}")
    print(f"denormal slowdown {med['kept'] / med['flushed']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
