"""An experiment: several runs trained in lockstep on identical batches, steered by commands.

The loop reads top to bottom: drain commands, fetch one batch per data stream, step every active
run, record. Commands are applied only between steps, so a toggle takes effect at the next step and
becomes an event at that step.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from .. import __version__
from ..config import ExperimentConfig, to_dict
from . import commands as C
from .data import load_data
from .footprint import check_fits, check_step_fits, run_shape, scaled
from .models import switches as sw
from .recording import Recording
from .training import (
    BATCH_OF_ONE,
    DTYPES,
    TrainingRun,
    examples_per_batch,
    loss_message,
    record_step,
    resolve_device,
)

log = logging.getLogger("gradviz")


def one_line(exc: BaseException) -> str:
    memory = out_of_memory_text(exc)
    if memory:
        return memory
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_CPU_ALLOC = re.compile(r"can't allocate memory: you tried to allocate (\d+) bytes")
_GPU_ALLOC = re.compile(r"out of memory\. Tried to allocate ([\d.]+ [KMGT]?i?B)")


def out_of_memory_text(exc: BaseException) -> str:
    """A failed allocation said as such: "out of memory (tried to allocate 8.00 GB more)", not the
    allocator's "[enforce fail at alloc_cpu.cpp:127] err == 0 ..."; "" for any other error."""
    text = str(exc)
    if (m := _CPU_ALLOC.search(text)) is not None:
        return f"out of memory (tried to allocate {scaled(int(m.group(1)), 'B')} more)"
    if (m := _GPU_ALLOC.search(text)) is not None:
        return f"out of memory on the GPU (tried to allocate {m.group(1)} more)"
    if isinstance(exc, MemoryError):
        return "out of memory"
    return ""


def user_text(exc: BaseException) -> str:
    """A message gradviz wrote for the user, as one line without the type name (a KeyError's
    quotes dropped); "" when it has none. The command line and the window say it so."""
    return " ".join(str(exc).strip("'\"").split())


def unswitched_notes(runs: list) -> list[str]:
    """A line for each switch the runs are set apart by that their model does not have: a
    torchvision MobileNet under the ResNet-18 preset keeps its own skip connections in the "plain"
    twin too, so the twins differed only by their learning rates, without a word."""
    notes = []
    for key, what in (("residual", "skip path"), ("norm", "normalisation layer"), ("dropout", "dropout layer")):
        values = {getattr(run.cfg.model, key) for run in runs}
        stuck = [run for run in runs if not run.supports.get(key, True)]
        if len(values) > 1 and stuck:
            kinds = ", ".join(dict.fromkeys(run.cfg.model.kind for run in stuck))
            names = [run.name for run in stuck]
            who = " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]
            notes.append(f"model.{key} changes nothing in {kinds} (no {what} gradviz can switch): runs {who} have the same layers either way")
    return notes


def default_threads() -> int:
    """Leave one core to the GUI (and to the OS when headless on a small machine)."""
    return max(1, (os.cpu_count() or 2) - 1)


class Experiment:
    def __init__(self, cfg: ExperimentConfig, recording: Recording | None = None, device: str | None = None, progress=None) -> None:
        self.cfg = cfg
        self.progress = progress  # progress(text): how a slow start goes (an image folder being read)
        self.on_busy = None  # on_busy(text): what a long stretch between two steps is doing ("" when done)
        self.recording = recording if recording is not None else Recording()
        self.device = resolve_device(device or cfg.train.device)
        self.commands: queue.Queue = queue.Queue()
        self._wake = threading.Event()
        self.step_index = 0  # global step counter, monotonic across restarts
        self.paused = False
        self.stopped = False
        self.error: str | None = None
        self.messages: list[str] = []  # one-line notices for the user (NaN pauses, errors)
        self._single_steps = 0
        self._data: dict = {}
        self._streams: dict = {}
        self.runs: list[TrainingRun] = []
        self._build()

    # ---- construction ---------------------------------------------------------------------
    def _build(self, keep: dict | None = None) -> None:
        self._streams = {}
        shapes = [run_shape(rc) for rc in self.cfg.runs] if keep is None else None  # a restart fitted before
        if shapes:
            check_fits(shapes, self.device)  # before the data are drawn and the models built
        runs = []
        notes: list[str] = []  # the data sets' notices, said once per session (the data are kept across restarts)
        for rc in self.cfg.runs:
            key = (rc.data, rc.model.dtype)
            if key not in self._data:
                self._data[key] = load_data(rc.data, seed=rc.train.seed, dtype=DTYPES[rc.model.dtype], progress=self.progress)
                notes += [n for n in self._data[key].notes if n not in notes]
            old = keep.get(rc.name) if keep else None
            run = TrainingRun(rc, self._data[key], self.device)
            if old:
                run.build(switches=old["switches"], lr=old["lr"])
            runs.append(run)
        if shapes:
            check_step_fits(runs, self.device)  # what is left, with the models built
        self.runs = runs
        if keep is None:  # said once per session, not at every restart
            self.messages += unswitched_notes(runs)
        rec = self.recording
        if not rec.meta:
            rec.set_meta({
                "kind": "experiment",
                "preset": self.cfg.name,
                "config": to_dict(self.cfg),
                "gradviz_version": __version__,
                "created": _dt.datetime.now().isoformat(timespec="seconds"),
                "device": str(self.device),
            })
        for run in runs:
            rec.add_run(run.name, run.probe.layer_names, run.probe.layer_types, run.probe.block_names)
        for note in notes:  # in the window's status, the CLI's closing lines and the run file's events
            self.messages.append(note)
            self._event("", "note", note)

    def _batches(self, run: TrainingRun):
        tc = run.cfg.train
        key = (run.cfg.data, run.cfg.model.dtype, tc.batch_size, tc.seed)
        it = self._streams.get(key)
        if it is None:
            it = self._streams[key] = run.data.train_batches(tc.batch_size, seed=tc.seed)
        return key, it

    def run_names(self) -> list[str]:
        return [r.name for r in self.runs]

    def get_run(self, name: str) -> TrainingRun:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(f"no run named {name!r}; runs are {', '.join(self.run_names())}")

    def switches(self, name: str) -> dict:
        return sw.state(self.get_run(name).model)

    # ---- commands -------------------------------------------------------------------------
    def submit(self, cmd) -> None:
        """Thread-safe: queue a command for the next step boundary."""
        self.commands.put(cmd)
        self._wake.set()

    def _targets(self, run: str | None) -> list[TrainingRun]:
        return self.runs if run is None else [self.get_run(run)]

    def _event(self, run: str, kind: str, detail: str) -> None:
        self.recording.add_event(self.step_index, run, kind, detail)

    def apply_commands(self) -> None:
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return
            try:
                self._apply(cmd)
            except (KeyError, ValueError) as exc:
                msg = str(exc).strip("'\"")
                self.messages.append(msg)
                self._event("", "note", f"ignored {type(cmd).__name__}: {msg}")

    def _switchable(self, run: str | None, switch: str, what: str) -> list[TrainingRun]:
        """The runs a switch command reaches: a switch the model lacks (LeNet's skip path, the rgb
        net's normalisation) would record a toggle that changed nothing, so a command naming such a
        run is refused with a note, and one for every run skips it."""
        targets = self._targets(run)
        able = [r for r in targets if r.supports[switch]]
        if not able and run is None:
            raise ValueError(f"no run's model has a {what} to switch")
        if not able:
            raise ValueError(f"{run}: {type(targets[0].model).__name__} has no {what} to switch")
        return able

    def _apply(self, cmd) -> None:
        if isinstance(cmd, C.SetResidual):
            for r in self._switchable(cmd.run, "residual", "skip path"):
                sw.set_residual(r.model, cmd.on)
                self._event(r.name, "toggle", f"residual {'on' if cmd.on else 'off'}")
        elif isinstance(cmd, C.SetNorm):
            targets = self._switchable(cmd.run, "norm", "normalisation layer")
            for r in targets if cmd.on else []:
                if r.cfg.model.norm_kind == "batch" and examples_per_batch(r.cfg.train.batch_size, r.data) == 1:
                    # BatchNorm raises on a batch of one at the next step, which would end the session
                    raise ValueError(f"{r.name}: {BATCH_OF_ONE}")
            for r in targets:
                sw.set_norm(r.model, cmd.on)
                self._event(r.name, "toggle", f"norm {'on' if cmd.on else 'off'}")
        elif isinstance(cmd, C.SetDropout):
            for r in self._switchable(cmd.run, "dropout", "dropout layer"):
                sw.set_dropout(r.model, cmd.p)
                self._event(r.name, "toggle", f"dropout p={cmd.p:g}")
        elif isinstance(cmd, C.SetLR):
            if not (cmd.lr > 0 and np.isfinite(cmd.lr)):
                raise ValueError(f"learning rate {cmd.lr!r}: must be a positive number")
            for r in self._targets(cmd.run):
                r.base_lr = float(cmd.lr)
                self._event(r.name, "toggle", f"lr {cmd.lr:g}")
        elif isinstance(cmd, C.Pause):
            if cmd.run is None:
                self.paused = True
            else:
                self.get_run(cmd.run).paused = True
            self._event(cmd.run or "", "pause", "paused")
        elif isinstance(cmd, C.Resume):
            if cmd.run is None:
                self.paused = False
                for r in self.runs:  # resuming everything also lifts NaN pauses
                    r.paused, r.pause_reason = False, ""
            else:
                r = self.get_run(cmd.run)
                r.paused, r.pause_reason = False, ""
            self._event(cmd.run or "", "resume", "resumed")
        elif isinstance(cmd, C.Step):
            self._single_steps += max(1, int(cmd.n))
        elif isinstance(cmd, C.Restart):
            keep = {r.name: {"switches": sw.state(r.model), "lr": r.base_lr} for r in self.runs}
            self._build(keep)
            self._event("", "restart", "restarted from the seed")
        elif isinstance(cmd, C.Stop):
            self.stopped = True
            self._event("", "stop", "stopped")

    # ---- stepping -------------------------------------------------------------------------
    def active_runs(self) -> list[TrainingRun]:
        return [r for r in self.runs if not r.paused]

    def can_step(self) -> bool:
        if self.stopped or self.error:
            return False
        if not self.active_runs():
            return False
        return not self.paused or self._single_steps > 0

    def step(self) -> bool:
        """One lockstep step of every active run. Returns False when nothing could step."""
        if not self.can_step():
            return False
        if self.paused:
            self._single_steps -= 1
        step = self.step_index
        batches = {}
        for run in self.active_runs():
            key, it = self._batches(run)
            if key not in batches:
                batches[key] = next(it)
            x, y = batches[key]
            dtype = DTYPES[run.cfg.model.dtype]
            x = x.to(run.device, dtype=dtype, non_blocking=True)
            y = y.to(run.device, dtype=dtype) if y.is_floating_point() else y.to(run.device)
            try:
                self._step_run(run, step, x, y)
            except Exception as exc:  # a model, loss or data problem stops the experiment
                self.error = f"run {run.name!r} failed at step {step}: {one_line(exc)}"
                log.exception("experiment stopped: %s", self.error)
                self.messages.append(self.error)
                self._event(run.name, "error", self.error)
                self.stopped = True
                return False
        self.step_index += 1
        return True

    def _step_run(self, run: TrainingRun, step: int, x, y) -> None:
        metrics, lr = run.train_step(step, x, y)
        evaluate = step % run.cfg.train.eval_every == 0 and metrics.first_nonfinite is None
        busy = self.on_busy
        record_step(self.recording, run.name, run.probe, step, metrics, {"lr": lr}, (lambda: run.evaluate(busy)) if evaluate else None)
        if metrics.first_nonfinite is not None:
            where = "the loss" if metrics.first_nonfinite == "(loss)" else f"layer {metrics.first_nonfinite}"
            msg = f"{run.name}: non-finite gradient at step {step}, first in {where}; run paused"
            if not np.isfinite(metrics.loss):
                msg = f"{run.name}: {loss_message(step, where)}; run paused"
            run.paused, run.pause_reason = True, msg
            self.messages.append(msg)
            self._event(run.name, "nonfinite", msg)

    def run(
        self,
        steps: int | None = None,
        stop: threading.Event | None = None,
        max_rate: float | None = None,
        on_step: Callable[[Experiment], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        threads: int | None = None,
    ) -> None:
        """Train until `steps` more steps ran, `stop` is set, a Stop command, or an error.

        Call from the thread that should train (torch's thread count is set here for that thread).
        `max_rate` caps steps per second (a lecture pace); `on_idle` runs while paused.

        The thread trains with denormal floats flushed to zero: a deep plain stack's vanishing
        gradients go below 1e-38, where x86 arithmetic is about a hundred times slower, and a
        200-block demo twin stepped 5.6 times slower (446 against 80 ms, `bench/denormals.py`) for
        numbers that round to zero anyway. The thread's mode is set back afterwards.
        """
        torch.set_num_threads(threads or self.cfg.train.threads or default_threads())
        flushed = torch.set_flush_denormal(True)  # False where the CPU cannot (then nothing changed)
        try:
            self._loop(steps, stop, max_rate, on_step, on_idle)
        finally:
            if flushed:
                torch.set_flush_denormal(False)

    def _loop(self, steps, stop, max_rate, on_step, on_idle) -> None:
        target = None if steps is None else self.step_index + steps
        next_time = time.perf_counter()
        while True:
            self.apply_commands()
            if self.stopped or self.error or (stop is not None and stop.is_set()):
                break
            if target is not None and self.step_index >= target:
                break
            if not self.can_step():
                if steps is not None and not self.active_runs():
                    break  # headless: every run paused by the NaN guard, nothing more will happen
                if on_idle:
                    on_idle()
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            if max_rate:
                delay = next_time - time.perf_counter()
                if delay > 0:
                    self._wake.wait(delay)
                    self._wake.clear()
                    continue
                next_time = max(next_time, time.perf_counter() - 1.0) + 1.0 / max_rate
            self.step()
            if on_step:
                on_step(self)
