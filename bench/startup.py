"""Launch-to-first-points: start `python -m gradviz` (offscreen), wait for the log line the window
writes when its depth profile first draws data, and print the seconds from launch (target <= 3 s).
Also prints `python -c "import torch"` alone in the same run, for scale.

    python bench/startup.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def launch_once() -> float:
    home = Path(tempfile.mkdtemp(prefix="gradviz-startup-"))
    env = dict(os.environ, GRADVIZ_HOME=str(home), QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    log = home / "gradviz.log"
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "gradviz"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if log.exists():
                m = re.search(r"first points drawn at ([0-9.]+)", log.read_text())
                if m:
                    return float(m.group(1)) - t0
            time.sleep(0.02)
        raise RuntimeError("no first points within 60 s")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    t = time.time()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    torch_s = time.time() - t
    runs = [launch_once() for _ in range(args.repeat)]
    print(f"python -c 'import torch': {torch_s:.2f} s")
    print("launch to first points: " + ", ".join(f"{r:.2f}" for r in runs) + " s")
    print(f"first_points_s {statistics.median(runs):.2f}")


if __name__ == "__main__":
    main()
