"""Why the GUI slows training: headless demo training beside a thread that holds the GIL a given
share of each 33 ms frame, the way pyqtgraph's Python painting does. Prints steps/s relative to no
competition. Measured here: 20% busy -> 0.77x, 43% busy (the GUI's share) -> 0.54x.

    python bench/gil_contention.py [--depth 50] [--seconds 5]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradviz.config import load_preset  # noqa: E402
from gradviz.core.experiment import Experiment  # noqa: E402

FRAME = 1 / 30


def rate(cfg, busy: float, seconds: float) -> float:
    exp = Experiment(cfg)
    stop = threading.Event()
    trainer = threading.Thread(target=exp.run, kwargs={"stop": stop})
    trainer.start()

    def hog() -> None:  # pure Python spinning holds the GIL, like a frame being painted
        while not stop.is_set():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < FRAME * busy:
                pass
            time.sleep(FRAME * (1 - busy))

    other = threading.Thread(target=hog)
    other.start()
    time.sleep(1.0)
    s0, t0 = exp.step_index, time.perf_counter()
    time.sleep(seconds)
    r = (exp.step_index - s0) / (time.perf_counter() - t0)
    stop.set()
    trainer.join()
    other.join()
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    cfg = load_preset("demo").with_overrides({"model.depth": args.depth})
    base = rate(cfg, 0.0, args.seconds)
    print(f"no competition: {base:.1f} steps/s")
    for busy in (0.1, 0.2, 0.43):
        print(f"GIL held {busy:.0%} of each frame: {rate(cfg, busy, args.seconds) / base:.2f}x")


if __name__ == "__main__":
    main()
