"""The only bridge between the GUI thread and training.

A `Worker` owns one session: an `Experiment` and its `RunFileWriter`, built and run in a background
thread. The GUI talks to it only through `submit(command)` (queued, applied between two steps) and
reads back only through the `Recording` the views poll and the small `Status` snapshot below. The
worker never touches a Qt object, and the GUI never touches the model.

This module imports no Qt, so a session can also be driven headless (the bench does).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import FOLDER_DATASETS, ConfigError, ExperimentConfig
from ..core.recording import Recording

log = logging.getLogger("gradviz")
STATUS_EVERY = 0.1  # seconds between two status snapshots


@dataclass
class Status:
    state: str = "starting"  # starting | training | paused | stopped | error
    step: int = 0
    rates: dict[str, float] = field(default_factory=dict)  # steps/s per run over the last second
    device: str = ""
    path: str = ""
    paused: bool = False  # the whole experiment
    run_paused: dict[str, bool] = field(default_factory=dict)
    switches: dict[str, dict] = field(default_factory=dict)  # residual / norm / dropout per run
    supports: dict[str, dict] = field(default_factory=dict)  # which of those each run's model has
    lrs: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)  # one-line notices, oldest first
    not_recorded: str = ""  # why the session has no run file (it could not be created), if it has none
    starting: str = ""  # what a session that has not started yet is doing ("reading images: 2,300 of 50,000")
    busy: str = ""  # what a long stretch between two steps is doing ("evaluating plain: 1,024 of 2,000 examples")
    error: str | None = None
    updated: float = 0.0  # time.monotonic() of this snapshot


def session_path(cfg: ExperimentConfig, path: str | Path | None, record: bool) -> Path | None:
    """Where a session is recorded: the given path, a new one under GRADVIZ_HOME, or nowhere."""
    if path is None and record:
        from ..paths import new_run_path

        path = new_run_path(cfg.name)
    return Path(path) if path else None


def _one_line(exc: BaseException) -> str:
    from ..core.experiment import one_line

    return one_line(exc)


def _user_line(exc: BaseException) -> str:
    """`_one_line`, less the type name where the message is gradviz's own, written for the user
    (a config, data or model that cannot be used: "ValueError: plain: model ... cannot take ...");
    the command line prints those the same way."""
    from ..core.data import DataError
    from ..core.experiment import user_text
    from ..core.runfile import RunFileError

    text = user_text(exc)
    return text if text and isinstance(exc, ConfigError | DataError | RunFileError | ValueError) else _one_line(exc)


class Worker:
    """One training session in a background thread."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        recording: Recording | None = None,
        path: str | Path | None = None,
        max_rate: float | None = None,
        threads: int | None = None,
        record: bool = True,
    ) -> None:
        self.cfg = cfg
        self.recording = recording if recording is not None else Recording()
        self.path = session_path(cfg, path, record)
        self.max_rate = max_rate or None
        self.threads = threads
        self.experiment = None  # set in the worker thread once built
        self.writer = None
        self._pending: list = []  # commands submitted before the experiment exists
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._break = threading.Event()  # leaves Experiment.run: stop, or a new rate cap
        self.ready = threading.Event()  # the experiment is built (or failed to build)
        self.done = threading.Event()  # the thread finished and the run file is closed
        self._status = Status(path=str(self.path or ""))
        self._last_status = 0.0
        self._rate_mark: tuple[float, dict[str, int]] | None = None
        self._counts: dict[str, int] = {}
        self._local: dict[str, int] = {}
        self._table_norm: dict[str, bool] = {}  # each run's norm switch when its layer table was taken
        self.thread = threading.Thread(target=self._main, name=f"gradviz-worker-{cfg.name}", daemon=True)

    # ---- GUI side (thread-safe) ----------------------------------------------------------
    def start(self) -> Worker:
        self.thread.start()
        return self

    def submit(self, cmd) -> None:
        with self._lock:
            exp = self.experiment
            if exp is None:
                self._pending.append(cmd)
                return
        exp.submit(cmd)

    def set_max_rate(self, rate: float | None) -> None:
        self.max_rate = rate if rate and rate > 0 else None
        self._break.set()
        exp = self.experiment
        if exp is not None:
            exp._wake.set()

    def status(self) -> Status:
        with self._lock:
            return copy.deepcopy(self._status)

    def stop(self, timeout: float | None = 1.5) -> bool:
        """Ask the thread to finish (the run file is closed by it); True when it has."""
        self._stop.set()
        self._break.set()
        exp = self.experiment
        if exp is not None:
            exp._wake.set()
        if timeout is None or timeout > 0:
            self.thread.join(timeout)
        return not self.thread.is_alive() if self.thread.ident else True

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    # ---- worker thread -----------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._session()
        except Exception as exc:  # noqa: BLE001 - never let the thread die silently
            msg = f"session stopped: {_one_line(exc)}"
            log.exception(msg)
            with self._lock:
                self._status.error = msg
                self._status.messages.append(msg)
                self._status.state = "error"
        finally:
            if self.writer is not None:
                try:
                    self.writer.close()
                except Exception as exc:  # noqa: BLE001
                    log.warning("closing the run file failed: %s", exc)
            self.ready.set()
            self.done.set()

    def _recording_stopped(self, msg: str) -> None:
        """The run file could not be written (a full disk): the lecture trains on, unrecorded from
        here; the file keeps what it had."""
        exp = self.experiment
        note = f"recording stopped at step {exp.step_index if exp is not None else 0}: {msg}; training goes on"
        with self._lock:
            if exp is not None:
                exp.messages.append(note)  # the status's messages are the experiment's
                self._status.messages = list(exp.messages)  # now, with not_recorded: one snapshot says both
            else:
                self._status.messages.append(note)
            self._status.not_recorded = msg
            self._status.path = ""

    def _starting(self, text: str) -> None:
        with self._lock:
            self._status.starting = text

    def _busy(self, text: str) -> None:
        with self._lock:
            self._status.busy = text

    def _session(self) -> None:
        from ..core.experiment import Experiment
        from ..core.runfile import RunFileError, RunFileWriter

        try:
            exp = Experiment(self.cfg, self.recording, progress=self._starting)
        except Exception as exc:  # noqa: BLE001 - a bad config, model or data set: one line
            msg = f"cannot start {self.cfg.name}: {_user_line(exc)}"
            if type(exc).__name__ == "DataError" and self.cfg.data.name in FOLDER_DATASETS:
                msg += "; or choose it under Session: data folder"  # the window's own way
            log.exception(msg)
            with self._lock:
                self._status.error = msg
                self._status.messages.append(msg)
                self._status.state = "error"
            return
        if self.path is not None:
            try:
                self.writer = RunFileWriter(self.path, self.recording, on_error=self._recording_stopped)
            except RunFileError as exc:
                with self._lock:
                    exp.messages.append(f"not recorded: {exc}")  # the status's messages are the experiment's
                    self._status.not_recorded = str(exc)
                self.path = None
        self._store_layer_table(exp)
        exp.on_busy = self._busy
        with self._lock:
            self.experiment = exp
            for cmd in self._pending:
                exp.submit(cmd)
            self._pending.clear()
            self._status.device = str(exp.device)
            self._status.path = str(self.path) if self.path is not None else ""
        self._update_status(exp, force=True)
        self.ready.set()
        writer = self.writer
        on_idle = self._on_idle
        while not self._stop.is_set():
            self._break.clear()
            exp.run(stop=self._break, max_rate=self.max_rate, on_step=self._on_step, on_idle=on_idle)
            if exp.stopped or exp.error:
                break
        if writer is not None:
            writer.flush()
        self._update_status(exp, force=True)

    def _store_layer_table(self, exp, runs=None) -> None:
        """The layer table is computed here, so the GUI never needs the model: for every run at the
        start, and again for a run whose norm switch flipped (its norm layers join or leave the
        forward pass: output shape and FLOPs change). `runs` None: all of them."""
        try:
            from ..core.models import switches as sw
            from ..core.table import store_layer_table

            for run in exp.runs if runs is None else runs:
                self._table_norm[run.name] = sw.state(run.model)["norm"]  # not retried if it fails
            store_layer_table(self.recording, exp.runs if runs is None else runs, fresh=runs is None)
        except Exception as exc:  # noqa: BLE001 - the table is a nicety, training is not
            log.warning("layer table not computed: %s", _one_line(exc))

    def _on_idle(self) -> None:
        if self.writer is not None:
            self.writer.flush_if_due()
        exp = self.experiment
        if exp is not None:
            self._update_status(exp)

    def _on_step(self, exp) -> None:
        for r in exp.runs:
            last = self._local.get(r.name, 0)
            delta = r.local_step - last if r.local_step >= last else r.local_step
            self._local[r.name] = r.local_step
            self._counts[r.name] = self._counts.get(r.name, 0) + delta
        self._update_status(exp)

    def _update_status(self, exp, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status < STATUS_EVERY:
            return
        self._last_status = now
        from ..core.models import switches as sw

        rates = {}
        if self._rate_mark is None:
            self._rate_mark = (now, dict(self._counts))
        mark_t, mark_counts = self._rate_mark
        dt = now - mark_t
        if dt > 0:
            for r in exp.runs:
                rates[r.name] = (self._counts.get(r.name, 0) - mark_counts.get(r.name, 0)) / dt
        if dt >= 1.0:
            self._rate_mark = (now, dict(self._counts))
        if dt < 0.2:
            rates = dict(self._status.rates)  # too short a window to say anything new
        state = "training"
        if exp.error:
            state = "error"
        elif exp.stopped or self._stop.is_set():
            state = "stopped"
        elif exp.paused or not exp.active_runs():
            state = "paused"
        with self._lock:
            s = self._status
            s.state = state
            s.step = exp.step_index
            s.rates = rates
            s.paused = exp.paused
            s.run_paused = {r.name: r.paused for r in exp.runs}
            s.switches = {r.name: sw.state(r.model) for r in exp.runs}
            s.supports = {r.name: r.supports for r in exp.runs}
            s.lrs = {r.name: r.base_lr for r in exp.runs}
            s.messages = list(exp.messages)
            s.error = exp.error
            s.updated = now
            flipped = [r for r in exp.runs if r.name in self._table_norm and s.switches[r.name]["norm"] != self._table_norm[r.name]]
        if flipped:  # between two steps, on the training thread: the model is free
            self._store_layer_table(exp, flipped)
