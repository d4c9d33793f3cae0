"""Replay and follow recorded sessions: `gradviz open RUN.gradviz [--follow]`, File → Open…, drops.

A run file is read into a `Recording` (read-only; nothing in the file is executed or unpickled) and
shown by the ordinary main window, so every view and event marker looks as it did live. A replay bar
under the charts holds a time slider over the recorded steps, play/pause and a speed choice; it only
ever calls `window.set_upto_step`. Following a file that another process still writes polls it with
`RunFileReader.poll` on a QTimer and keeps the slider's end live.

Every problem with a file is one line in the status bar; the app keeps running.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from ..core.runfile import RunFileError, RunFileReader, writer_state
from .tooltips import plain_tooltip

log = logging.getLogger("gradviz.replay")

SUFFIX = ".gradviz"
FOLLOW_INTERVAL_MS = 250
FRAME_MS = 33  # playback timer (about 30 Hz, like the live frame timer)
SPEEDS = (10, 25, 50, 100, 250, 1000, 5000)  # steps per second
DEFAULT_SPEED = 50


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def load_recording(path: str | Path, follow: bool = False):
    """(recording, reader or None). Raises RunFileError with one line for any unreadable file."""
    p = Path(path).expanduser()
    reader = RunFileReader(p)
    try:
        # Following keeps the recording bounded (it may grow for hours); a finished file loads whole.
        rec = reader.load(bounded=follow)
    except RunFileError:
        reader.close()
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a hostile file provokes, it is one line
        reader.close()
        log.exception("opening %s failed", p)
        raise RunFileError(f"{p}: cannot read run file ({_one_line(exc)})") from None
    rec.warnings = list(reader.warnings)  # type: ignore[attr-defined]
    rec.reader = reader  # type: ignore[attr-defined]  # histograms are read from it on demand
    return rec, (reader if follow else None)


def recorded_steps(rec) -> np.ndarray:
    """Every step at which something per-step was recorded (the slider's positions)."""
    parts = []
    for run in rec.runs:
        names = rec.metric_names(run)
        pick = "loss" if "loss" in names else ("grad_norm" if "grad_norm" in names else (names[0] if names else None))
        if pick is not None:
            parts.append(rec.metric(run, pick)[0])
    if not parts:
        return np.zeros(0, np.int64)
    if len(parts) == 1:
        return np.unique(parts[0])
    return np.unique(np.concatenate(parts))


class EventSlider(QtWidgets.QSlider):
    """A time slider with a small tick above the groove at every event (toggle, restart, …)."""

    def __init__(self, parent=None) -> None:
        super().__init__(QtCore.Qt.Orientation.Horizontal, parent)
        self.marks: list[tuple[int, QtGui.QColor, str]] = []  # (slider index, colour, tooltip)

    def set_marks(self, marks: list[tuple[int, QtGui.QColor, str]]) -> None:
        self.marks = marks
        tips = [m[2] for m in marks[:12]]
        more = f"\n… and {len(marks) - 12} more" if len(marks) > 12 else ""
        self.setToolTip(plain_tooltip("\n".join(tips) + more if tips else ""))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        if not self.marks or self.maximum() <= self.minimum():
            return
        opt = QtWidgets.QStyleOptionSlider()
        self.initStyleOption(opt)
        handle = self.style().subControlRect(
            QtWidgets.QStyle.ComplexControl.CC_Slider, opt, QtWidgets.QStyle.SubControl.SC_SliderHandle, self
        )
        span = self.width() - handle.width()
        p = QtGui.QPainter(self)
        for idx, color, _tip in self.marks:
            x = handle.width() / 2 + span * (idx - self.minimum()) / (self.maximum() - self.minimum())
            p.setPen(QtGui.QPen(color, 2))
            p.drawLine(QtCore.QPointF(x, 0), QtCore.QPointF(x, 4))
        p.end()


class ReplayBar(QtWidgets.QWidget):
    """Time slider, play/pause and speed for a recorded (or followed) session."""

    def __init__(self, window, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("replay_bar")
        self.window = window
        self.recording = None
        self.steps = np.zeros(0, np.int64)
        self.following = False
        self._version = None
        self._n_events = -1
        self._pos = 0.0  # playback position in steps (fractional)
        self._clock = QtCore.QElapsedTimer()

        self.play_button = QtWidgets.QToolButton()
        self.play_button.setObjectName("replay_play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play / pause the recorded session")
        self.play_button.toggled.connect(self._on_play)
        self.slider = EventSlider()
        self.slider.setObjectName("replay_slider")
        self.slider.setRange(0, 0)
        self.slider.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.slider.valueChanged.connect(self._on_slider)
        self.label = QtWidgets.QLabel()
        self.label.setObjectName("replay_step")
        self.label.setMinimumWidth(self.fontMetrics().horizontalAdvance("step 000000 / 000000 (live)") + 8)
        self.speed = QtWidgets.QComboBox()
        self.speed.setObjectName("replay_speed")
        self.speed.setToolTip("Playback speed")
        for s in SPEEDS:
            self.speed.addItem(f"{s} steps/s", s)
        self.speed.setCurrentIndex(SPEEDS.index(DEFAULT_SPEED))
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(self._tick)

        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.addWidget(self.play_button)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.label)
        lay.addWidget(self.speed)
        self._show_play_state(False)

    # ---- state --------------------------------------------------------------------------
    def set_recording(self, rec, following: bool = False) -> None:
        self.pause()
        self.recording = rec
        self.following = following
        self._version = None
        self._n_events = -1
        self.sync(force_end=True)

    def at_end(self) -> bool:
        return self.slider.value() >= self.slider.maximum()

    def current_step(self) -> int | None:
        """The step the charts show, or None for "everything" (the end, live when following)."""
        if not len(self.steps) or self.at_end():
            return None
        return int(self.steps[self.slider.value()])

    def sync(self, force_end: bool = False) -> None:
        """Pick up steps recorded since the last call (follow mode); keeps the position, or the
        end if the slider was at the end."""
        rec = self.recording
        if rec is None or (rec.version == self._version and not force_end):
            return
        self._version = rec.version
        was_end = force_end or self.at_end()
        keep = self.current_step()
        self.steps = recorded_steps(rec)
        n = len(self.steps)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        if was_end or keep is None:
            self.slider.setValue(max(0, n - 1))
        else:
            self.slider.setValue(int(np.searchsorted(self.steps, keep, side="right")) - 1)
        self.slider.blockSignals(False)
        self._update_marks()
        self._update_label()
        if was_end:
            self._apply()

    def _update_marks(self) -> None:
        events = self.recording.events() if self.recording is not None else []
        if len(events) == self._n_events:
            return
        self._n_events = len(events)
        marks = []
        colours = {"nonfinite": "#D55E00", "error": "#D55E00", "warning": "#E69F00", "restart": "#009E73", "pause": "#888888"}
        for step, run, kind, detail in events:
            if not len(self.steps):
                break
            idx = int(np.clip(np.searchsorted(self.steps, step), 0, len(self.steps) - 1))
            who = f"{run}: " if run else ""
            marks.append((idx, QtGui.QColor(colours.get(kind, "#0072B2")), f"step {step}: {who}{kind} {detail}".strip()))
        self.slider.set_marks(marks)

    def _update_label(self) -> None:
        if not len(self.steps):
            self.label.setText("no steps yet" + (" (live)" if self.following else ""))
            return
        step = int(self.steps[self.slider.value()])
        live = " (live)" if self.following and self.at_end() else ""
        self.label.setText(f"step {step} / {int(self.steps[-1])}{live}")

    # ---- slider and playback -----------------------------------------------------------------
    def seek_step(self, step: int) -> None:
        """Show the charts as they were at `step` (the nearest recorded step at or before it)."""
        if not len(self.steps):
            return
        idx = int(np.clip(np.searchsorted(self.steps, step, side="right") - 1, 0, len(self.steps) - 1))
        if idx == self.slider.value():
            self._apply()
        self.slider.setValue(idx)

    def _on_slider(self, _value: int) -> None:
        if not self.timer.isActive() and len(self.steps):
            self._pos = float(self.steps[self.slider.value()])
        self._update_label()
        self._apply()

    def _apply(self) -> None:
        try:
            self.window.set_upto_step(self.current_step())
        except Exception as exc:  # noqa: BLE001 - a view problem must not stop the replay bar
            log.exception("set_upto_step failed")
            _message(self.window, f"Replay: {_one_line(exc)}")

    def speed_steps_per_s(self) -> float:
        return float(self.speed.currentData() or DEFAULT_SPEED)

    def set_speed(self, steps_per_s: int) -> None:
        i = self.speed.findData(steps_per_s)
        if i < 0:
            self.speed.addItem(f"{steps_per_s} steps/s", steps_per_s)
            i = self.speed.count() - 1
        self.speed.setCurrentIndex(i)

    def play(self) -> None:
        self.play_button.setChecked(True)

    def pause(self) -> None:
        self.play_button.setChecked(False)

    def is_playing(self) -> bool:
        return self.timer.isActive()

    def _on_play(self, on: bool) -> None:
        if on:
            if len(self.steps) < 2:
                self.play_button.setChecked(False)
                return
            if self.at_end():
                self.slider.setValue(0)
            self._pos = float(self.steps[self.slider.value()])
            self._clock.start()
            self.timer.start()
        else:
            self.timer.stop()
        self._show_play_state(on)

    def _show_play_state(self, playing: bool) -> None:
        style = self.style()
        icon = QtWidgets.QStyle.StandardPixmap.SP_MediaPause if playing else QtWidgets.QStyle.StandardPixmap.SP_MediaPlay
        self.play_button.setIcon(style.standardIcon(icon))
        self.play_button.setText("Pause" if playing else "Play")

    def _tick(self) -> None:
        dt = self._clock.restart() / 1000.0
        if not len(self.steps):
            return
        self._pos += self.speed_steps_per_s() * min(dt, 0.5)
        idx = int(np.searchsorted(self.steps, self._pos, side="right")) - 1
        idx = max(0, min(idx, len(self.steps) - 1))
        if idx != self.slider.value():
            self.slider.setValue(idx)
        if idx >= len(self.steps) - 1 and not self.following:
            self.pause()


class Follower(QtCore.QObject):
    """Tails a run file that another process is writing into the window's recording."""

    def __init__(self, window, reader: RunFileReader, rec, bar: ReplayBar, path="", interval_ms: int = FOLLOW_INTERVAL_MS):
        super().__init__(window)
        self.window = window
        self.reader = reader
        self.recording = rec
        self.bar = bar
        self.polls = 0
        self.failed = False
        self.path = path
        self._runs = list(rec.runs)  # named in the message
        self._identity = _file_identity(path)  # the file being followed, not its name
        self.ended: str | None = None  # the writer's state once it stopped writing ("closed", "gone")
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def poll(self) -> int:
        if self._replaced():
            return 0
        state = writer_state(self.path) if self.path else None  # before the poll: then it read all the writer wrote
        try:
            new = self.reader.poll(self.recording)
        except Exception as exc:  # noqa: BLE001 - RunFileError, or anything a damaged file provokes
            if not self.failed:
                self.failed = True
                _message(self.window, f"Following stopped: {_one_line(exc)}")
            self.stop()
            return 0
        self.polls += 1
        if new:
            runs = list(self.recording.runs)
            if runs != self._runs:  # a run that joined later (a second watch of a shared file)
                self._runs = runs
                if self.window.message_label.text().startswith("Following "):  # never over a warning
                    _message(self.window, following_text(self.path, runs))
            self.bar.sync()
            if self.bar.at_end():
                self.bar._apply()
        elif state in ("closed", "gone") and self.ended is None:
            self._writer_stopped(state)
        return new

    def _writer_stopped(self, state: str) -> None:
        """The file is complete (its writer closed it) or will not grow (its writer died): the
        slider stops saying "(live)" and the status line says which. Polling goes on: the path may
        be written again (a new file in its place, which `_replaced` picks up)."""
        self.ended = state
        self.bar.following = False
        self.bar._update_label()
        if self.window.message_label.text().startswith("Following "):
            _message(self.window, ended_text(self.path, self.recording, state))

    def _replaced(self) -> bool:
        """Whether the path now names another file (a script run again: `gradviz.watch` and
        `gradviz run` write a new file in place of the old one) and that one could be opened: the
        window follows the new recording then. The old file is followed until the new one reads."""
        now = _file_identity(self.path)
        if now is None or self._identity is None or now == self._identity:
            return False
        try:
            rec, reader = load_recording(self.path, follow=True)
        except Exception:  # noqa: BLE001 - not readable yet (its writer is creating it): next poll
            return False
        if not rec.runs:  # created, nothing in it yet: the old recording stays on screen a moment longer
            reader.close()
            return False
        self._identity = now
        if _show(self.window, Path(self.path), rec, reader):  # a new follower takes over; this one stops
            _message(self.window, following_text(self.path, rec.runs) + " (the file was written again: a new recording)")
        return True

    def stop(self) -> None:
        self.timer.stop()
        if self.reader is not None:
            try:
                self.reader.close()
            except Exception:  # noqa: BLE001
                pass
            self.reader = None


def _file_identity(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return st.st_dev, st.st_ino


def following_text(path, runs) -> str:
    return f"Following {path} as it grows: runs {', '.join(runs) or 'no runs yet'}"


def ended_text(path, rec, state: str) -> str:
    last = rec.last_step()
    upto = f" at step {last}" if last is not None and last >= 0 else ""
    why = "its writer closed it" if state == "closed" else "its writer stopped without closing it (the process is gone)"
    return f"Followed {path} to its end{upto}: {why}"  # the legends name the runs: short enough for a laptop's status bar


def _message(window, text: str) -> None:
    try:
        window.show_message(text)
    except Exception:  # noqa: BLE001
        log.info(text)


def _bar_for(window) -> ReplayBar:
    bar = getattr(window, "replay_bar", None)
    if bar is None:
        bar = ReplayBar(window)
        tb = QtWidgets.QToolBar("Replay", window)
        tb.setObjectName("replay_toolbar")
        tb.setMovable(False)
        tb.addWidget(bar)
        window.addToolBar(QtCore.Qt.ToolBarArea.BottomToolBarArea, tb)
        window.replay_bar = bar
        window.replay_toolbar = tb
    window.replay_toolbar.show()
    return bar


def _attach(window, path: Path, rec, reader: RunFileReader | None) -> None:
    old = getattr(window, "follower", None)
    if old is not None:
        old.stop()
        old.deleteLater()
    window.follower = None
    bar = _bar_for(window)
    bar.set_recording(rec, following=reader is not None)
    if reader is not None:
        window.follower = Follower(window, reader, rec, bar, path)
    window.run_path = str(path)
    runs = ", ".join(rec.runs) or "no runs yet"
    n = len(bar.steps)
    if reader is not None:  # a count here went stale at once beside the live slider
        text = following_text(path, rec.runs)
    else:
        text = f"Replaying {path}: {n} steps, runs {runs}"
    warns = list(getattr(rec, "warnings", []) or [])
    if warns:
        text += f" (warning: {warns[0]}{f' and {len(warns) - 1} more' if len(warns) > 1 else ''})"
    _message(window, text)


def open_window(app, path: str | Path, follow: bool = False):
    """The main window over a recorded run (`gradviz open`); raises RunFileError (one line) when the
    file cannot be read, before any window exists."""
    from .app import MainWindow

    p = Path(path).expanduser()
    rec, reader = load_recording(p, follow)
    window = MainWindow(rec)
    _attach(window, p, rec, reader)
    from .export import install_export

    install_export(window)
    install_open(window)
    window.show()
    return window


def open_in_window(window, path: str | Path, follow: bool = False) -> bool:
    """Show a run file in an existing window; any problem is one status-bar line (returns False)."""
    p = Path(str(path)).expanduser()
    try:
        rec, reader = load_recording(p, follow)
    except RunFileError as exc:
        _message(window, _one_line(exc))
        return False
    except Exception as exc:  # noqa: BLE001
        log.exception("opening %s failed", p)
        _message(window, f"{p}: cannot open ({_one_line(exc)})")
        return False
    return _show(window, p, rec, reader)


def _show(window, p: Path, rec, reader: RunFileReader | None) -> bool:
    """Put a loaded recording in the window (and follow it with `reader`); one line on failure."""
    try:
        window.set_recording(rec)
    except Exception as exc:  # noqa: BLE001
        log.exception("set_recording failed")
        if reader is not None:
            reader.close()
        _message(window, f"{p}: cannot show ({_one_line(exc)})")
        return False
    _attach(window, p, rec, reader)
    from .export import install_view_menus

    install_view_menus(window)  # in case the window rebuilt its views
    return True


def _dropped_run(mime: QtCore.QMimeData) -> str | None:
    if mime is None or not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile() and url.toLocalFile().lower().endswith(SUFFIX):
            return url.toLocalFile()
    return None


class _DropFilter(QtCore.QObject):
    """Application-wide filter for drags over this window (charts accept drops themselves, so a
    filter on the window alone would miss drops landing on them)."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.dropped: list[str] = []

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        t = event.type()
        if t not in (QtCore.QEvent.Type.DragEnter, QtCore.QEvent.Type.DragMove, QtCore.QEvent.Type.Drop):
            return False
        if not isinstance(obj, QtWidgets.QWidget) or not (obj is self.window or self.window.isAncestorOf(obj)):
            return False
        path = _dropped_run(event.mimeData())
        if path is None:
            return False
        event.setDropAction(QtCore.Qt.DropAction.CopyAction)
        event.accept()
        if t == QtCore.QEvent.Type.Drop:
            self.dropped.append(path)
            # open after the drop finishes, so the drag source is not kept waiting
            QtCore.QTimer.singleShot(0, lambda: open_in_window(self.window, path))
        return True


def show_open_dialog(window) -> QtWidgets.QFileDialog:
    start = str(Path(getattr(window, "run_path", "") or "").parent) if getattr(window, "run_path", "") else ""
    if not start:
        from ..paths import runs_dir

        start = str(runs_dir())
    dlg = QtWidgets.QFileDialog(window, "Open a recorded run", start, f"gradviz runs (*{SUFFIX});;All files (*)")
    dlg.setObjectName("gradviz-open-dialog")
    dlg.setFileMode(QtWidgets.QFileDialog.FileMode.ExistingFile)
    dlg.setAcceptMode(QtWidgets.QFileDialog.AcceptMode.AcceptOpen)
    follow = QtWidgets.QCheckBox("Follow (the file is still being written)")
    lay = dlg.layout()
    if isinstance(lay, QtWidgets.QGridLayout):  # Qt's own dialog; native ones have no layout
        lay.addWidget(follow, lay.rowCount(), 0, 1, -1)
    dlg.fileSelected.connect(lambda p: open_in_window(window, p, follow=follow.isChecked()))
    dlg.open()
    window.open_dialog = dlg
    return dlg


def install_open(window) -> None:
    """File → Open… (Ctrl+O) and dropping .gradviz files on the window."""
    if getattr(window, "_gradviz_open_installed", False):
        return
    window._gradviz_open_installed = True
    act = QtGui.QAction("Open…", window)
    act.setObjectName("action_open_run")
    act.setShortcut(QtGui.QKeySequence.StandardKey.Open)
    act.setStatusTip("Open a recorded run to replay it")
    act.triggered.connect(lambda: show_open_dialog(window))
    menu = window.menu_file
    first = menu.actions()[0] if menu.actions() else None
    if first is not None:
        menu.insertAction(first, act)
        menu.insertSeparator(first)
    else:
        menu.addAction(act)
    window.addAction(act)
    window.action_open_run = act
    window.setAcceptDrops(True)
    filt = _DropFilter(window)
    app = QtWidgets.QApplication.instance()
    app.installEventFilter(filt)
    window.destroyed.connect(lambda *_: _remove_filter(app, filt))
    window.drop_filter = filt


def _remove_filter(app, filt) -> None:
    try:
        app.removeEventFilter(filt)
    except RuntimeError:
        pass
