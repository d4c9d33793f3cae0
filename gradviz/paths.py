"""Where gradviz keeps things on the user's machine."""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path


def data_dir() -> Path:
    """User data folder (GRADVIZ_HOME overrides, e.g. in tests)."""
    env = os.environ.get("GRADVIZ_HOME")
    if env:
        return Path(env)
    try:
        from platformdirs import user_data_dir

        return Path(user_data_dir("gradviz", appauthor=False))
    except ImportError:  # platformdirs is a dependency, but never fail over a folder name
        return Path.home() / ".local" / "share" / "gradviz"


def new_run_path(preset: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return data_dir() / "runs" / f"{preset}-{stamp}.gradviz"


def log_file() -> Path:
    return data_dir() / "gradviz.log"


class QuietFileHandler(logging.FileHandler):
    """The log file is best effort: on a full disk Python's handler printed "--- Logging error ---"
    and two tracebacks over the user's terminal for every record."""

    def handleError(self, record) -> None:  # noqa: N802 - logging API
        pass
