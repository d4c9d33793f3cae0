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


def runs_dir() -> Path:
    """Where every live session is recorded unless told otherwise."""
    return data_dir() / "runs"


def new_run_path(preset: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return runs_dir() / f"{preset}-{stamp}.gradviz"


RUNS_NOTE_BYTES = 5 * 10**9  # above this, the runs folder is worth a word at launch


def runs_folder_note(folder: Path | None = None, limit: int = RUNS_NOTE_BYTES) -> str:
    """A line when the recordings in the runs folder add up to more than `limit` bytes, else "".
    Every session records about 10 MB a minute and gradviz never deletes one, so a lecturer's
    laptop filled up over a term without a word."""
    folder = runs_dir() if folder is None else folder
    total = count = 0
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.endswith((".gradviz", ".gradviz-wal")) and entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
                    count += entry.name.endswith(".gradviz")
    except OSError:
        return ""
    if total <= limit:
        return ""
    # the path last: a status bar on a projector elides the end of a long line
    return (f"the runs folder holds {total / 1e9:.1f} GB in {count} recording{'s' if count != 1 else ''}; "
            f"gradviz never deletes them: clear old ones in {folder}")


def log_file() -> Path:
    return data_dir() / "gradviz.log"


class QuietFileHandler(logging.FileHandler):
    """The log file is best effort: on a full disk Python's handler printed "--- Logging error ---"
    and two tracebacks over the user's terminal for every record."""

    def handleError(self, record) -> None:  # noqa: N802 - logging API
        pass
