"""Open and export figures on synthetic long runs (prints figures; no training involved).

    python bench/open_export.py [--pack-steps 10000] [--open-steps 100000] [--cache DIR]

1. Slide pack: `gradviz export RUN --out DIR` (all views, all formats) on a PACK_STEPS-step run, in a
   fresh headless process, wall clock including interpreter start. Target <= 10 s.
2. Open: a fresh process opens an OPEN_STEPS-step run in the main window (`replay.open_window`) and
   draws the first frame (every view refreshed, the window painted). Target <= 2 s, timed from
   before reading the file to after the first paint (imports reported apart).

The runs are written through `Recording` + `RunFileWriter` with realistic shapes: 62 layers, 30
blocks, 2 runs, eval and activation statistics and histograms every 25 steps, flushed every 25 steps
the way a live session at ~50 steps/s commits every 0.5 s. Files are cached in --cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_BLOCKS = 30
HIST_BINS = 64


def layer_names(blocks: int = N_BLOCKS) -> tuple[list[str], list[str], list[str]]:
    layers, types = ["input"], ["Linear"]
    for b in range(blocks):
        layers += [f"blocks.{b}.linear", f"blocks.{b}.norm"]
        types += ["Linear", "BatchNorm1d"]
    layers.append("head")
    types.append("Linear")
    return layers, types, [f"blocks.{b}" for b in range(blocks)]


def write_synthetic_run(
    path: str | Path,
    steps: int,
    blocks: int = N_BLOCKS,
    runs: tuple[str, ...] = ("plain", "residual"),
    every: int = 25,
    flush_every: int = 25,
    seed: int = 0,
    events: bool = True,
) -> Path:
    """A run file shaped like the demo preset's (2 runs x 62 layers), `steps` steps long."""
    from gradviz.core.recording import Recording
    from gradviz.core.runfile import RunFileWriter

    path = Path(path)
    rng = np.random.default_rng(seed)
    layers, types, blks = layer_names(blocks)
    L, B = len(layers), len(blks)
    rec = Recording(bounded=True)
    writer = RunFileWriter(path, rec)
    rec.set_meta({"kind": "experiment", "preset": "synthetic", "gradviz_version": "0.1.0", "steps": steps})
    depth = np.linspace(0.0, 1.0, L)
    is_norm = np.array([t.startswith("BatchNorm") for t in types])
    hist_layers = [i for i in range(L) if not is_norm[i]]
    for run in runs:
        rec.add_run(run, layers, types, blks)
        for kind, lo in (("weight", -0.4), ("grad", -1e-2), ("activation", -1.0)):
            for i in range(L) if kind == "weight" else hist_layers:
                rec.set_edges(run, kind, i, np.linspace(lo, -lo, HIST_BINS + 1))
    centres = np.linspace(-1, 1, HIST_BINS)
    block = 1000
    try:
        for start in range(0, steps, block):
            n = min(block, steps - start)
            t = np.arange(start, start + n)
            for r, run in enumerate(runs):
                plain = r == 0
                # plain stack: the gradient vanishes toward the input; residual stays near 1
                base = (-8.0 + 8.0 * depth) if plain else (-0.5 + 0.2 * np.sin(6 * depth))
                noise = rng.normal(0, 0.15, (n, L))
                grad = (10.0 ** (base[None, :] + noise)).astype(np.float32)
                grad[:, is_norm] = np.nan  # no BatchNorm in this variant: no gradient
                act_grad = (10.0 ** ((-7.0 + 7.0 * np.linspace(0, 1, B) if plain else -0.3) + rng.normal(0, 0.1, (n, B)))).astype(np.float32)
                wnorm = (3.0 + 0.001 * t[:, None] ** 0.5 + rng.normal(0, 0.01, (n, L))).astype(np.float32)
                upd = (grad * 0.05 / wnorm).astype(np.float32)
                floor = 1.38 if plain else 0.05
                loss = floor + 1.5 * np.exp(-t / (steps / 8 + 50)) + np.abs(rng.normal(0, 0.05, n))
                for k in range(n):
                    s = int(t[k])
                    m = {"loss": float(loss[k]), "lr": 0.05, "grad_norm": grad[k], "act_grad_norm": act_grad[k]}
                    if s % 5 == 0:  # the engine's default update_every
                        m.update(weight_norm=wnorm[k], update_ratio=upd[k])
                    if s % every == 0:
                        m["eval_loss"] = float(loss[k] * 1.05)
                        m["eval_accuracy"] = float(min(0.99, 0.25 + 0.7 * (1 - np.exp(-s / (steps / 6 + 50)))) if not plain else 0.25)
                        m["act_mean"] = rng.normal(0, 0.05, L).astype(np.float32)
                        m["act_std"] = np.abs(rng.normal(0.5 if not plain else 0.1, 0.05, L)).astype(np.float32)
                        m["act_saturation"] = np.clip(rng.normal(0.1, 0.05, L), 0, 1).astype(np.float32)
                    rec.append(run, s, m)
                    if s % every == 0:
                        width = 0.2 + 0.1 * np.tanh(s / 1000)
                        for kind, idx in (("weight", range(L)), ("grad", hist_layers), ("activation", hist_layers)):
                            shape = np.exp(-(centres / width) ** 2) * 1000
                            counts = {i: (shape * rng.uniform(0.9, 1.1, HIST_BINS)).astype(np.float32) for i in idx}
                            rec.append_histograms(run, s, kind, counts)
                    if (s + 1) % flush_every == 0:
                        # commit the way a live session does (every 0.5 s, ~25 steps at 50 steps/s)
                        writer.flush()
                if events and start <= steps // 2 < start + n and plain:
                    rec.add_event(steps // 2, run, "toggle", "residual on")
        writer.flush()
    finally:
        writer.close()
    return path


def cached_run(cache: Path, steps: int) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"synthetic-{steps}.gradviz"
    if not path.exists():
        t0 = time.perf_counter()
        tmp = path.with_suffix(".partial")
        write_synthetic_run(tmp, steps)
        tmp.rename(path)
        print(f"  wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
    return path


OPEN_SCRIPT = r"""
import os, sys, time
t_start = time.perf_counter()
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6 import QtWidgets
import pyqtgraph, numpy
app = QtWidgets.QApplication(["bench"])
from gradviz.gui.views import make_views  # noqa: F401 - imports, timed apart
from gradviz.core.runfile import open_run  # noqa: F401
t_imports = time.perf_counter() - t_start
path = sys.argv[1]
t0 = time.perf_counter()
try:
    from gradviz.gui.app import MainWindow  # noqa: F401
    from gradviz.gui.replay import open_window
    have_window = True
except ImportError:
    have_window = False
if have_window:
    t0 = time.perf_counter()
    window = open_window(app, path)
    t_open = time.perf_counter() - t0
    for v in window.views:
        v.refresh(window.recording, None)
    window.repaint()
    app.processEvents()
    img = window.grab()
    t_frame = time.perf_counter() - t0
    what = "open_window + refresh all views + first paint"
else:
    from gradviz.core.runfile import open_run
    views = make_views(None)
    t0 = time.perf_counter()
    rec = open_run(path)
    t_open = time.perf_counter() - t0
    host = QtWidgets.QTabWidget()
    for v in views:
        host.addTab(v, v.name)
    host.resize(1400, 900)
    host.show()
    for v in views:
        v.refresh(rec, None)
    app.processEvents()
    host.grab()
    t_frame = time.perf_counter() - t0
    what = "open_run + refresh all views + first paint (no MainWindow yet)"
print(f"RESULT imports={t_imports:.2f} open={t_open:.2f} first_frame={t_frame:.2f} what={what}")
"""


def bench_open(path: Path) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", OPEN_SCRIPT, str(path)], capture_output=True, text=True, env=env, cwd=ROOT)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise SystemExit(f"open bench failed (rc {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    fields = dict(kv.split("=", 1) for kv in line[len("RESULT "):].split(" ", 3))
    return fields


def bench_pack(path: Path) -> tuple[float, int]:
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("QT_QPA_PLATFORM", None)  # the export command must pick offscreen itself
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "gradviz", "export", str(path), "--out", tmp],
                             capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"export failed (rc {out.returncode}): {out.stderr.strip()}")
        n = len(list(Path(tmp).iterdir()))
    return wall, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack-steps", type=int, default=10_000)
    ap.add_argument("--open-steps", type=int, default=100_000)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "gradviz-bench"))
    ap.add_argument("--repeat", type=int, default=2, help="runs of each measurement (best is reported)")
    args = ap.parse_args()
    cache = Path(args.cache)
    print(f"gradviz open/export bench (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    pack_run = cached_run(cache, args.pack_steps)
    open_run_path = cached_run(cache, args.open_steps)

    walls = [bench_pack(pack_run) for _ in range(args.repeat)]
    wall, n = min(w for w, _ in walls), walls[0][1]
    print(f"slide pack, {args.pack_steps} steps, all views x png,svg,pdf,csv: {wall:.2f} s wall "
          f"(fresh headless process, {n} files; target <= 10 s) -> {'OK' if wall <= 10 else 'OVER'}")

    results = [bench_open(open_run_path) for _ in range(args.repeat)]
    best = min(results, key=lambda r: float(r["first_frame"]))
    frame = float(best["first_frame"])
    size = open_run_path.stat().st_size / 1e6
    print(f"open {args.open_steps} steps ({size:.0f} MB): read {float(best['open']):.2f} s, first frame "
          f"{frame:.2f} s ({best['what']}; imports {float(best['imports']):.2f} s apart; target <= 2 s) "
          f"-> {'OK' if frame <= 2 else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
