"""GUI responsiveness, measured in one run and printed as figures and ratios.

1. steps/s headless (Experiment.run in a thread, no GUI) on the demo twin with 50 blocks, then the
   same preset in the GUI refreshing at 30 Hz: the ratio GUI / headless (target >= 0.9);
2. while those two 50-block twins train in the GUI: frame interval p50 / p95 (target p95 <= 40 ms)
   and the longest event-loop stall, seen by a 5 ms timer (target <= 100 ms);
3. toggle-to-visible on the demo: from a toggle command to the first frame whose data includes the
   step after the toggle (target median <= 100 ms). The last line is `toggle_latency_ms <median>`.

The GUI trains in a child process (the app's default); `--worker both` (default) also measures the
thread worker for comparison. Runs offscreen unless QT_QPA_PLATFORM says otherwise:
    python bench/gui_latency.py [--seconds 6] [--worker process|thread|both]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GRADVIZ_HOME", tempfile.mkdtemp(prefix="gradviz-bench-"))

import numpy as np  # noqa: E402
from PySide6 import QtCore, QtWidgets  # noqa: E402

from gradviz.config import load_preset  # noqa: E402

QtCore.QSettings.setDefaultFormat(QtCore.QSettings.Format.IniFormat)
QtCore.QSettings.setPath(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, os.environ["GRADVIZ_HOME"])


def headless_rate(cfg, seconds: float) -> float:
    from gradviz.core.experiment import Experiment

    exp = Experiment(cfg)
    stop = threading.Event()
    t = threading.Thread(target=exp.run, kwargs={"stop": stop})
    t.start()
    time.sleep(1.0)  # warm up
    s0, t0 = exp.step_index, time.perf_counter()
    time.sleep(seconds)
    rate = (exp.step_index - s0) / (time.perf_counter() - t0)
    stop.set()
    t.join()
    return rate


def run_app(app, window, seconds: float, during=None) -> None:
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(int(seconds * 1000), loop.quit)
    if during:
        during()
    loop.exec()


def gui_session(app, cfg, kind: str = "process"):
    from gradviz.gui.app import MainWindow
    from gradviz.gui.process_worker import ProcessWorker
    from gradviz.gui.worker import Worker

    worker = (ProcessWorker if kind == "process" else Worker)(cfg).start()
    win = MainWindow(worker.recording, session=worker)
    win.resize(1600, 1000)
    win.show()
    worker.ready.wait(120)
    deadline = time.monotonic() + 60
    while worker.recording.last_step() < 2 and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    return win, worker


def measure_frames(app, cfg, seconds: float, kind: str = "process") -> dict:
    win, worker = gui_session(app, cfg, kind)
    run_app(app, win, 1.0)  # warm up
    frames: list[float] = []
    ticks: list[float] = []
    win.frame_listeners.append(lambda _w: frames.append(time.perf_counter()))
    probe = QtCore.QTimer()
    probe.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe.start(5)
    rec = worker.recording  # the same count for both workers: steps that reached the GUI
    s0, t0 = rec.last_step(), time.perf_counter()
    run_app(app, win, seconds)
    rate = (rec.last_step() - s0) / (time.perf_counter() - t0)
    probe.stop()
    win.close()
    iv = np.diff(frames) * 1000
    stall = float(np.max(np.diff(ticks)) * 1000 - 5) if len(ticks) > 1 else float("nan")
    return {
        "rate": rate,
        "frames": len(frames),
        "p50": float(np.percentile(iv, 50)) if len(iv) else float("nan"),
        "p95": float(np.percentile(iv, 95)) if len(iv) else float("nan"),
        "stall": stall,
    }


def measure_toggle(app, cfg, n: int, kind: str = "process") -> list[float]:
    win, worker = gui_session(app, cfg, kind)
    rec = worker.recording
    run_app(app, win, 1.0)
    lat: list[float] = []
    state = {"t0": None, "events": 0, "step": None}

    def on_frame(w) -> None:
        if state["t0"] is None:
            return
        if state["step"] is None:
            toggles = [e for e in rec.event_objects() if e.kind == "toggle"]
            if len(toggles) > state["events"]:
                state["step"] = toggles[-1].step
        if state["step"] is not None and (w.depth.drawn_upto or -1) >= state["step"]:
            lat.append((time.perf_counter() - state["t0"]) * 1000)
            state["t0"] = None

    win.frame_listeners.append(on_frame)
    box = win.controls.runs["plain"].residual
    for _ in range(n):
        state["events"] = sum(e.kind == "toggle" for e in rec.event_objects())
        state["step"] = None
        state["t0"] = time.perf_counter()
        box.toggle()  # the same path as a click: a command to the worker
        deadline = time.monotonic() + 3
        while state["t0"] is not None and time.monotonic() < deadline:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 5)
        run_app(app, win, 0.25)
    win.close()
    return lat


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--toggles", type=int, default=15)
    ap.add_argument("--worker", choices=["process", "thread", "both"], default="both",
                    help="which GUI worker to measure (the app uses process); both: process first")
    args = ap.parse_args()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    deep = load_preset("demo").with_overrides({"model.depth": 50})
    print(f"machine: {os.cpu_count()} cores, Qt platform {os.environ['QT_QPA_PLATFORM']}, load {os.getloadavg()[0]:.1f}")
    head = headless_rate(deep, args.seconds)
    print(f"headless steps/s (demo, 50 blocks)      {head:8.1f}")
    kinds = ["process", "thread"] if args.worker == "both" else [args.worker]
    results = {k: measure_frames(app, deep, args.seconds, k) for k in kinds}
    for k, f in results.items():
        print(f"[{k} worker] GUI steps/s (50 blocks, 30 Hz) {f['rate']:8.1f}   ratio GUI / headless {f['rate'] / head:.2f}   (target >= 0.9)")
    f = results[kinds[0]]
    print(f"steps/s ratio GUI / headless            {f['rate'] / head:8.2f}   ({kinds[0]} worker, the app's default)")
    print(f"frames drawn                            {f['frames']:8d}")
    print(f"frame interval p50 ms                   {f['p50']:8.1f}")
    print(f"frame interval p95 ms                   {f['p95']:8.1f}   (target <= 40)")
    print(f"longest event-loop stall ms             {f['stall']:8.1f}   (target <= 100)")
    lat = measure_toggle(app, load_preset("demo"), args.toggles, kinds[0])
    med = float(np.median(lat)) if lat else float("nan")
    print(f"toggles measured                        {len(lat):8d} of {args.toggles}")
    if lat:
        print(f"toggle-to-visible ms p50 / max          {med:8.1f} / {max(lat):.1f}   (target median <= 100)")
    print(f"toggle_latency_ms {med:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
