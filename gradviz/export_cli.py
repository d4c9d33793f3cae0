"""`gradviz export RUN.gradviz --out DIR`: a recorded run's charts as files, without a display.

Bad input (file, format, view, step, scale, folder) is one line on stderr and exit code 2. Qt's own
chatter (platform plugin notes) goes to the log file, not to the terminal.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("gradviz.export")

VIEW_NAMES = ("depth", "heatmap", "loss", "histograms", "activations", "layers")


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip("'\"") or type(exc).__name__
    return " ".join(msg.split())


def ensure_headless_platform() -> None:
    """Use Qt's offscreen platform when there is no display (before any QApplication exists)."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


def _qt_messages_to_log() -> None:
    from PySide6 import QtCore

    def handler(mode, context, message):  # noqa: ARG001 - Qt's signature
        log.info("qt: %s", message)

    QtCore.qInstallMessageHandler(handler)


def _parse_views(text: str) -> list[str] | None:
    names = [v.strip().lower() for v in (text or "").split(",") if v.strip()]
    if not names:
        return None
    seen: list[str] = []
    for n in names:
        if n not in seen:
            seen.append(n)
    return seen


def run_export(args) -> tuple[list[Path], list[str]]:
    """Do the export; returns (files written, warnings). Raises RunFileError / ValueError / OSError."""
    from .core.runfile import RunFileError, open_run
    from .gui.export import check_scale, parse_formats

    formats = parse_formats(args.format or "")
    scale = check_scale(args.scale if getattr(args, "scale", None) is not None else 2.0)
    wanted = _parse_views(getattr(args, "views", "") or "")
    if wanted:
        bad = [v for v in wanted if v not in VIEW_NAMES]
        if bad:
            raise ValueError(f"unknown view {bad[0]!r}; choose from {', '.join(VIEW_NAMES)}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    path = Path(args.run_file)
    rec = open_run(path)
    warnings = list(getattr(rec, "warnings", []) or [])
    if not rec.runs:
        raise RunFileError(f"{path}: no runs recorded")
    last = rec.last_step()
    step = getattr(args, "step", None)
    if step is not None:
        if last < 0:
            raise ValueError(f"--step {step}: {path} holds no steps yet")
        if step < 0 or step > last:
            raise ValueError(f"--step {step} is outside the recorded steps (0 to {last})")

    ensure_headless_platform()
    from PySide6 import QtWidgets

    _qt_messages_to_log()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["gradviz-export"])
    from .gui.export import export_slide_pack
    from .gui.views import make_views

    views = make_views(None)
    by_name = {v.name: v for v in views}
    if wanted:
        missing = [v for v in wanted if v not in by_name]
        if missing:
            raise ValueError(f"unknown view {missing[0]!r}; choose from {', '.join(by_name)}")
        chosen = [by_name[v] for v in wanted]
    else:
        chosen = views
    try:
        for view in chosen:
            view.refresh(rec, upto_step=step)
        meta = rec.meta if isinstance(rec.meta, dict) else {}
        preset = meta.get("preset") or ""
        title = f"gradviz — {preset + ': ' if preset else ''}{path.name}"
        if step is not None:
            title += f" at step {step}"
        files = export_slide_pack(chosen, out, formats, scale=scale, title=title)
    finally:
        for view in views:
            view.deleteLater()
        app.processEvents()
    return files, warnings


def cmd_export(args) -> int:
    from .core.runfile import RunFileError

    started = time.perf_counter()
    try:
        files, warnings = run_export(args)
    except (RunFileError, ValueError, OSError, KeyError) as exc:
        print(f"gradviz: {_one_line(exc)}", file=sys.stderr)
        log.info("export failed: %s", exc)
        return 2
    for w in warnings[:1]:
        more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
        print(f"gradviz: warning: {args.run_file}: {w}{more}", file=sys.stderr)
    folder = Path(args.out)
    print(f"exported {len(files)} files to {folder} in {time.perf_counter() - started:.1f} s (open {folder / 'index.html'})")
    return 0
