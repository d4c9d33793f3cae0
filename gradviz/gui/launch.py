"""Entry point of the GUI: `gradviz` (the live demo) and `gradviz open FILE` (replay)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger("gradviz")


def _install_extras(window) -> None:
    """Export and open/replay menus, written in their own modules; absent ones are skipped."""
    try:
        from . import export

        export.install_export(window)
    except ImportError:
        log.info("gradviz.gui.export not available")
    except Exception:  # noqa: BLE001 - a broken extra must not stop the app
        log.exception("installing export failed")
    try:
        from . import replay

        replay.install_open(window)
    except ImportError:
        log.info("gradviz.gui.replay not available")
    except Exception:  # noqa: BLE001
        log.exception("installing open failed")


def _handle_signals(app) -> None:
    """SIGTERM / SIGINT close the window like the close button (run file completed)."""
    from PySide6 import QtCore

    def quit_(signum, _frame) -> None:
        log.info("signal %d: closing", signum)
        QtCore.QTimer.singleShot(0, _close_all)

    def _close_all() -> None:
        for w in app.topLevelWidgets():
            if w.isWindow() and w.isVisible():
                w.close()
        app.quit()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, quit_)
        except (ValueError, OSError):
            pass
    # Python runs signal handlers only between bytecodes: wake the interpreter regularly
    timer = QtCore.QTimer(app)
    timer.timeout.connect(lambda: None)
    timer.start(200)
    app._gradviz_signal_timer = timer


def no_display_reason(env=os.environ, platform: str = sys.platform) -> str | None:
    """Why a window cannot open here, in one line, or None. Without it Qt aborts the process with
    a screenful about platform plugins (an SSH session, a container, a CI job)."""
    if not platform.startswith("linux"):
        return None
    qpa = env.get("QT_QPA_PLATFORM", "")
    if qpa and not qpa.startswith(("xcb", "wayland")):
        return None  # offscreen, vnc, eglfs ...: Qt needs no display server
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return (
        "no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset); "
        "'gradviz run' trains and records headless, 'gradviz export' draws a recorded run's charts"
    )


def launch(args) -> int:
    reason = no_display_reason()
    command = getattr(args, "command", None)
    if reason:
        if command == "open":  # a file that cannot be opened anywhere says so first (it read "no display")
            from ..core.runfile import RunFileError, RunFileReader

            try:
                RunFileReader(Path(args.run_file).expanduser()).close()
            except RunFileError as exc:
                print(f"gradviz: {exc}", file=sys.stderr)
                return 2
        print(f"gradviz: {reason}", file=sys.stderr)
        return 2
    if command == "open":
        return _open(args)
    cfg = getattr(args, "config_obj", None)
    if cfg is None:
        from ..config import load_preset

        cfg = load_preset(getattr(args, "preset", None) or "demo")  # a ConfigError is one line from the CLI
    return _demo(cfg, getattr(args, "carried", None) or {})


def _demo(cfg, carried: dict | None = None) -> int:
    """`carried`: overrides about this machine (data folder, download, device) that every preset
    picked later in the window keeps."""
    # Start training first: importing torch and building the models overlaps with building the window.
    from ..paths import new_run_path, runs_folder_note
    from .sessions import make_worker

    note = runs_folder_note()  # the recordings kept before this session's (a few ms)
    worker = make_worker(cfg, path=new_run_path(cfg.name)).start()

    from .app import MainWindow, ensure_app

    app = ensure_app(sys.argv[:1])
    _handle_signals(app)
    window = MainWindow(worker.recording, session=worker)
    window.controls.carried = dict(carried or {})
    _install_extras(window)
    app.aboutToQuit.connect(window.shutdown)
    window.show()
    log.info("window shown")
    _note_runs_folder(window, note)
    _screenshot_if_asked(app, window)
    code = int(app.exec() or 0)
    window.shutdown()
    _fast_exit(code, window)
    return code


def _note_runs_folder(window, note: str) -> None:
    """Say, once the window is up, that the recordings kept so far have grown large."""
    from PySide6 import QtCore

    if note:
        log.info(note)
        QtCore.QTimer.singleShot(0, lambda: window.show_message(note))  # after the first frame


def _fast_exit(code: int, window) -> None:
    """Leave without the interpreter's teardown (seconds of destructors with torch and Qt
    loaded), once every run file is closed and the settings are written."""
    if os.environ.get("GRADVIZ_NO_FAST_EXIT"):
        return
    workers = [w for w in (*window._retired, window.session) if w is not None]
    if not all(w.done.is_set() for w in workers):
        return  # a session still finishing its file: take the slow, safe way out
    log.info("exit %d", code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _open(args) -> int:
    from .app import ensure_app

    app = ensure_app(sys.argv[:1])
    _handle_signals(app)
    try:
        from . import replay
    except ImportError as exc:
        print(f"gradviz: cannot open {args.run_file}: the replay window is not installed ({exc})", file=sys.stderr)
        return 1
    window = replay.open_window(app, args.run_file, follow=getattr(args, "follow", False))
    if window is None and not any(w.isVisible() for w in app.topLevelWidgets()):
        return 1
    if hasattr(window, "shutdown"):
        app.aboutToQuit.connect(window.shutdown)
    return int(app.exec() or 0)


def _screenshot_if_asked(app, window) -> None:
    """GRADVIZ_SCREENSHOT=path: save the window once training shows (docs, debugging)."""
    path = os.environ.get("GRADVIZ_SCREENSHOT")
    if not path:
        return
    from PySide6 import QtCore

    delay = int(float(os.environ.get("GRADVIZ_SCREENSHOT_AFTER", "8")) * 1000)

    def shoot() -> None:
        window.refresh_all()
        window.grab().save(path)
        log.info("screenshot saved to %s", path)

    QtCore.QTimer.singleShot(delay, shoot)
