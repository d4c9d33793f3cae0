"""Which worker trains a GUI session: a child process by default, a thread on request.

`GRADVIZ_WORKER=thread` keeps training in a thread of the GUI process (one process to debug, and
what the tests that inspect the model use); anything else, or unset, uses a child process, which
trains at headless speed because it does not share the GUI's GIL (see process_worker.py).
"""

from __future__ import annotations

import os

from ..config import ExperimentConfig


def make_worker(cfg: ExperimentConfig, **kwargs):
    if os.environ.get("GRADVIZ_WORKER", "process").strip().lower() == "thread":
        from .worker import Worker

        return Worker(cfg, **kwargs)
    from .process_worker import ProcessWorker

    return ProcessWorker(cfg, **kwargs)
