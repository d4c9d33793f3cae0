"""A worker thread that runs measuring jobs in order, off the training thread.

Torch ops release the GIL while they run, so on a CPU with a core to spare the jobs (gradient
norms, host copies, recording) overlap the user's optimizer step and next forward pass instead of
adding to them. The caller decides when it must wait (`drain`), e.g. before tensors a job reads are
changed. A job's exception is kept and handed back by the next `drain`; jobs queued after a failure
are skipped, since they usually depend on the one that failed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import torch


class Background:
    def __init__(self, name: str = "gradviz-measure") -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._pending = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            self._pending += 1
        self._jobs.put(job)

    def drain(self) -> BaseException | None:
        """Wait until every submitted job has run; returns (and clears) the first error, if any."""
        with self._cond:
            while self._pending:
                self._cond.wait()
            err, self._error = self._error, None
        return err

    def stop(self) -> None:
        """Let the queued jobs finish, then end the thread (idempotent)."""
        if self._thread.is_alive():
            self._jobs.put(None)
            if threading.current_thread() is not self._thread:
                self._thread.join()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if self._error is None:
                    with torch.no_grad():  # grad mode is per thread
                        job()
            except BaseException as exc:  # noqa: BLE001 - handed to the owner by `drain`
                self._error = exc
            finally:
                with self._cond:
                    self._pending -= 1
                    if not self._pending:
                        self._cond.notify_all()
