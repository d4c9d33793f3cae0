"""Training in a child process: the GUI's default session.

Why a process and not only a thread: the demo's training step is mostly Python dispatch of small
torch ops, so it needs the GIL almost all the time, and so does pyqtgraph drawing at 30 Hz. In one
process the two take turns: measured here, a GUI thread busy 43% of the time cut training to 0.50-0.59
of headless speed (bench/gil_contention.py). A child process has its own interpreter, so training
runs at headless speed on its own core, and the GUI process never imports torch (its window is up
while the child is still importing it).

The child runs the ordinary thread `Worker` (worker.py) over its own `Recording` and run file; a
listener on that recording forwards every change (metadata, runs, metrics, histogram edges and
counts, events) through a pipe, and the parent replays them into the GUI's `Recording`. So views,
exports and tests read exactly what the run file holds. Commands go the other way on a second pipe.
`ProcessWorker` has the thread worker's interface: `start`, `submit`, `set_max_rate`, `status`,
`stop`, `alive`, `ready`, `done`, `recording`, `cfg`, `path`.

No Qt here, and no torch in the parent: this module only imports the config and the recording.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path

from ..config import ExperimentConfig
from ..core.recording import Recording
from ..paths import QuietFileHandler
from .worker import Status, Worker, session_path

log = logging.getLogger("gradviz")
SEND_EVERY = 0.01  # seconds: the child batches recording changes at most this long
STATUS_EVERY = 0.1


# ---- child side ---------------------------------------------------------------------------------
class _Forwarder:
    """Recording listener in the child: collects changes from the training thread; the child's
    main thread sends them in batches (so pickling and pipe writes stay off the training thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: list[tuple[str, tuple]] = []

    def __call__(self, kind: str, payload: tuple) -> None:
        with self._lock:
            self._ops.append((kind, payload))

    def take(self) -> list[tuple[str, tuple]]:
        with self._lock:
            ops, self._ops = self._ops, []
        return ops


def _child_logging(log_path: str | None) -> None:
    root = logging.getLogger("gradviz")
    root.setLevel(logging.INFO)
    if log_path:
        try:
            handler: logging.Handler = QuietFileHandler(log_path, encoding="utf-8")
        except OSError:
            handler = logging.NullHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s[trainer]: %(message)s"))
        root.addHandler(handler)


def _child_signals() -> None:
    """Ctrl+C in a terminal reaches the whole process group: the GUI decides when training stops
    (it sends "stop", or its pipe closes), so the child ignores SIGINT. SIGTERM on its own
    (`kill`, a process manager) stops training and closes the run file, like the GUI's close."""

    def term(_signum, _frame) -> None:
        _TERM.set()

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, term)
    except (ValueError, OSError):
        pass


_TERM = threading.Event()


def child_main(cfg: ExperimentConfig, path: str | None, max_rate: float | None, out_conn, in_conn, log_path: str | None) -> None:
    """Entry point of the training process (spawned; imports torch, never Qt)."""
    _child_logging(log_path)
    _child_signals()
    log.info("training process up (pid %d)", os.getpid())
    forward = _Forwarder()
    rec = Recording()
    rec.add_listener(forward)
    worker = Worker(cfg, recording=rec, path=path, max_rate=max_rate, record=path is not None)
    worker.start()
    sent_ready = False
    last_status = 0.0
    parent_gone = False
    try:
        while True:
            # commands from the GUI; EOF means the GUI process is gone: stop and close the file
            try:
                while in_conn.poll(SEND_EVERY):
                    kind, arg = in_conn.recv()
                    if kind == "cmd":
                        worker.submit(arg)
                    elif kind == "rate":
                        worker.set_max_rate(arg)
                    elif kind == "stop":
                        worker.stop(timeout=0)
            except (EOFError, OSError):
                parent_gone = True
                worker.stop(timeout=0)
            if _TERM.is_set():
                worker.stop(timeout=0)
            finished = worker.done.is_set()
            ops = forward.take()
            now = time.monotonic()
            if not parent_gone:
                try:
                    if ops:
                        out_conn.send(("ops", ops))
                    if worker.ready.is_set() and not sent_ready:
                        # the status first: whoever waits on "ready" may read the switches at once
                        out_conn.send(("status", worker.status()))
                        out_conn.send(("ready", None))
                        sent_ready = True
                        last_status = now
                        log.info("training process ready")
                    if finished or now - last_status >= STATUS_EVERY:
                        out_conn.send(("status", worker.status()))
                        last_status = now
                except (BrokenPipeError, OSError):
                    parent_gone = True
                    worker.stop(timeout=0)
            if finished:
                break
            if parent_gone:
                worker.done.wait(5.0)
                break
    finally:
        if not parent_gone:
            try:
                out_conn.send(("done", None))
            except (BrokenPipeError, OSError):
                pass
    # The run file is closed: leave without the interpreter's teardown of torch (about a second).
    logging.shutdown()
    os._exit(0)


# ---- parent side --------------------------------------------------------------------------------
def _apply(rec: Recording, kind: str, payload: tuple) -> None:
    """Replay one change from the child's recording into ours."""
    if kind == "metrics":
        run, step, metrics = payload
        rec.append(run, step, metrics)
    elif kind == "hist":
        run, step, hkind, counts = payload
        rec.append_histograms(run, step, hkind, counts)
    elif kind == "edges":
        rec.set_edges(*payload)
    elif kind == "event":
        ev = payload[0]
        rec.add_event(ev.step, ev.run, ev.kind, ev.detail)
    elif kind == "run":
        rec.add_run(*payload)
    elif kind == "meta":
        rec.set_meta(payload[0])


class ProcessWorker:
    """One training session in a child process, seen through the thread worker's interface."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        recording: Recording | None = None,
        path: str | Path | None = None,
        max_rate: float | None = None,
        record: bool = True,
    ) -> None:
        self.cfg = cfg
        self.recording = recording if recording is not None else Recording()
        self.path = session_path(cfg, path, record)
        if self.path is not None:
            self.recording.source = str(self.path)
        self.max_rate = max_rate or None
        self.experiment = None  # the model lives in the child: the GUI never touches it
        self.ready = threading.Event()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._status = Status(path=str(self.path or ""))
        ctx = mp.get_context("spawn")  # never fork a process that holds Qt and threads
        self._from_child, child_out = ctx.Pipe(duplex=False)
        child_in, self._to_child = ctx.Pipe(duplex=False)
        from ..paths import log_file

        try:
            log_path = str(log_file())
        except Exception:  # noqa: BLE001 - logging is a nicety
            log_path = None
        self.process = ctx.Process(
            target=child_main,
            args=(cfg, str(self.path) if self.path else None, self.max_rate, child_out, child_in, log_path),
            name=f"gradviz-trainer-{cfg.name}",
            daemon=True,
        )
        self._child_ends = (child_out, child_in)
        self._receiver = threading.Thread(target=self._receive, name=f"gradviz-receiver-{cfg.name}", daemon=True)

    # ---- GUI side -------------------------------------------------------------------------
    def start(self) -> ProcessWorker:
        try:
            self.process.start()
        except Exception as exc:  # noqa: BLE001 - e.g. no way to start a process here
            self._fail(f"cannot start the training process ({type(exc).__name__}: {exc}); GRADVIZ_WORKER=thread trains inside the window instead")
            return self
        for end in self._child_ends:  # the child holds its own copies now
            end.close()
        self._receiver.start()
        return self

    def _send(self, msg) -> None:
        with self._lock:
            try:
                self._to_child.send(msg)
            except (BrokenPipeError, OSError, ValueError):
                pass  # the child has gone; status() says why

    def submit(self, cmd) -> None:
        self._send(("cmd", cmd))

    def set_max_rate(self, rate: float | None) -> None:
        self.max_rate = rate if rate and rate > 0 else None
        self._send(("rate", self.max_rate))

    def status(self) -> Status:
        with self._lock:
            return copy.deepcopy(self._status)

    def stop(self, timeout: float | None = 1.5) -> bool:
        """Ask the child to finish (it closes the run file); True when it has."""
        if self.process.pid is None:
            return True
        self._send(("stop", None))
        if timeout is None or timeout > 0:
            self.done.wait(timeout)
        return self.done.is_set()

    def kill(self) -> None:
        """Last resort when the child does not finish in time (the run file keeps its last commit)."""
        if self.process.is_alive():
            self.process.kill()

    @property
    def alive(self) -> bool:
        return self.process.pid is not None and not self.done.is_set()

    # ---- receiver thread ------------------------------------------------------------------
    def _fail(self, msg: str) -> None:
        log.error(msg)
        with self._lock:
            self._status.error = msg
            self._status.messages.append(msg)
            self._status.state = "error"
        self.ready.set()
        self.done.set()

    def _receive(self) -> None:
        rec = self.recording
        conn = self._from_child
        said_done = False
        try:
            while not said_done:
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    break
                if kind == "ops":
                    for op, args in payload:
                        try:
                            _apply(rec, op, args)
                        except Exception:  # noqa: BLE001 - one bad change must not stop the rest
                            log.exception("replaying %s from the training process failed", op)
                elif kind == "status":
                    with self._lock:
                        self._status = payload
                elif kind == "ready":
                    self.ready.set()
                elif kind == "done":
                    said_done = True
        finally:
            if not said_done:  # the child died without finishing: say so, keep what arrived
                self.process.join(2.0)
                msg = f"the training process ended unexpectedly (exit code {self.process.exitcode})"
                log.error(msg)
                with self._lock:
                    self._status.error = self._status.error or msg
                    self._status.messages.append(msg)
                    self._status.state = "error"
            self.ready.set()
            self.done.set()  # the child closed its run file before it said "done"
            self.process.join(5.0)
