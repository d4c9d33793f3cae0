"""The main window: the views, the readout, the controls and the status bar, wired together.

A 30 Hz frame timer asks every visible view to refresh from the recording (a view that sees no new
version does nothing); a 4 Hz timer reads the worker's status snapshot. Nothing here trains.
"""

from __future__ import annotations

import logging
import re
import time

from PySide6 import QtCore, QtGui, QtWidgets

from ..config import changed_from_preset
from . import gc_guard
from .controls import ControlPanel
from .elided_label import ElidedLabel
from .theme import Theme, apply_to_app, make_theme, size_check_boxes
from .tooltips import plain_tooltip
from .views import make_views
from .views.readout import Readout

log = logging.getLogger("gradviz")
FRAME_MS = 33  # about 30 Hz
STATUS_MS = 250
TAB_EVERY = 3  # frames between two refreshes of the view in the tabs


def ensure_app(argv: list[str] | None = None) -> QtWidgets.QApplication:
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(argv or ["gradviz"])
    app.setOrganizationName("gradviz")
    app.setApplicationName("gradviz")
    return app


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, recording, session=None, parent=None) -> None:
        super().__init__(parent)
        gc_guard.install()  # cycles of Qt objects are collected here, never in another thread
        self.recording = recording
        self.session = None
        self.upto_step: int | None = None
        self.theme: Theme = make_theme()
        self.frame_listeners: list = []  # fn(window) after every frame (the bench uses it)
        self.frame_count = 0
        self._retired: list = []  # workers of earlier sessions, finishing in the background
        self._shut = False
        self._seen_messages = 0
        self._note_wanted = False  # the preset has a lecture note to show beside the controls

        self.views = make_views()
        self.depth = self.views[0]
        self.readout = Readout()
        centre = QtWidgets.QWidget()
        cl = QtWidgets.QVBoxLayout(centre)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        cl.addWidget(self.readout)
        cl.addWidget(self.depth, 1)
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setUsesScrollButtons(True)
        self.tabs.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        for v in self.views[1:]:
            self.tabs.addTab(v, v.title.split(" (")[0])
        self.tabs.currentChanged.connect(lambda _i: self._refresh_current_tab())
        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.splitter.addWidget(centre)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.setCentralWidget(self.splitter)

        self.controls = ControlPanel()
        self.note = QtWidgets.QLabel("")
        self.note.setTextFormat(QtCore.Qt.TextFormat.PlainText)  # a config file's note: text, never markup
        self.note.setWordWrap(True)
        self.note.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(self.controls)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.controls_scroll = scroll
        self._fit_controls()
        features = QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable
        self.dock = QtWidgets.QDockWidget("Controls", self)
        self.dock.setObjectName("controls")
        self.dock.setWidget(scroll)
        self.dock.setFeatures(features)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        note_scroll = QtWidgets.QScrollArea()
        note_scroll.setWidget(self.note)
        note_scroll.setWidgetResizable(True)
        note_scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.note_dock = QtWidgets.QDockWidget("Lecture note", self)
        self.note_dock.setObjectName("note")
        self.note_dock.setWidget(note_scroll)
        self.note_dock.setFeatures(features | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, self.note_dock)
        self.resizeDocks([self.dock, self.note_dock], [4, 1], QtCore.Qt.Orientation.Vertical)

        self.menu_file = self.menuBar().addMenu("File")
        self.menu_view = self.menuBar().addMenu("View")
        self._build_status_bar()
        self._build_shortcuts()
        self._wire_controls()

        self._first_points_logged = False
        self._screen_watched = False  # screenChanged connected (the native window exists once shown)
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._frame)
        self.timer.start(FRAME_MS)
        self.status_timer = QtCore.QTimer(self)
        self.status_timer.timeout.connect(self._poll_status)
        self.status_timer.start(STATUS_MS)

        self.setWindowTitle("gradviz")
        self.resize(1500, 900)
        self._restore_settings()
        if session is not None:
            self.set_session(session)
        else:
            self.set_controls_shown(False)
            self.controls_action.setEnabled(False)
            self.set_recording(recording)

    # ---- building ---------------------------------------------------------------------
    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.step_label = QtWidgets.QLabel("step -")
        self.rate_label = QtWidgets.QLabel("")
        self.device_label = QtWidgets.QLabel("")
        # long paths and messages are elided (the path in the middle, keeping its file name), never
        # allowed to widen the window; their tooltips hold the whole text
        self.path_label = ElidedLabel(QtCore.Qt.TextElideMode.ElideMiddle)
        self.message_label = ElidedLabel(QtCore.Qt.TextElideMode.ElideRight)
        for lab in (self.step_label, self.rate_label, self.device_label):
            # run names and paths come from files: "<b>" in one is text, never markup
            lab.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.path_label.setMinimumWidth(200)
        sb.addWidget(self.step_label)
        sb.addWidget(self.rate_label)
        sb.addWidget(self.message_label, 3)  # a message matters more than where the file is
        sb.addPermanentWidget(self.device_label)
        sb.addPermanentWidget(self.path_label, 2)

    def _build_shortcuts(self) -> None:
        c = self.controls
        keys = {
            "R": c.toggle_residual,
            "B": c.toggle_norm,
            "D": c.toggle_dropout,
            "Tab": c.select_next_run,
            "Space": c.toggle_pause,
            "N": c.single_step,
            "Ctrl+R": c.restart,
            "F5": self.toggle_presentation,
            "F11": self.toggle_fullscreen,
            "H": self.toggle_controls,
        }
        self.shortcuts = {}
        for key, fn in keys.items():
            sc = QtGui.QShortcut(QtGui.QKeySequence(key), self)
            sc.setContext(QtCore.Qt.ShortcutContext.WindowShortcut)
            sc.activated.connect(fn)
            self.shortcuts[key] = sc
        act = self.menu_view.addAction("Presentation mode")
        act.setShortcutVisibleInContextMenu(True)
        act.setCheckable(True)
        act.triggered.connect(lambda on: self.set_presentation(bool(on)))
        self.presentation_action = act
        self.menu_view.addAction("Full screen (F11)", self.toggle_fullscreen)
        act = self.menu_view.addAction("Controls panel (H)")
        act.setCheckable(True)
        act.setChecked(True)
        act.triggered.connect(lambda on: self.set_controls_shown(bool(on)))
        self.controls_action = act
        self.menu_file.addAction("Quit", self.close)

    def _wire_controls(self) -> None:
        c = self.controls
        c.command.connect(self._submit)
        c.new_session.connect(self.start_session)
        c.rate_changed.connect(self._set_rate)
        c.theme_changed.connect(lambda name: self.set_theme(name, self.theme.presentation))
        c.presentation_changed.connect(self.set_presentation)
        c.fullscreen_requested.connect(self.toggle_fullscreen)
        c.message.connect(self.show_message)

    # ---- protocol for other modules (export, replay) -----------------------------------
    def set_recording(self, recording) -> None:
        self.recording = recording
        self.views[-1].live = self.session is not None and self.session.recording is recording
        self._frame()

    def set_upto_step(self, step: int | None) -> None:
        self.upto_step = step
        self._frame()

    def show_message(self, text: str, earlier: list[str] | tuple[str, ...] = ()) -> None:
        """One line in the status bar; `earlier`: messages that arrived with it (a session that
        starts with two notes), counted on the line and read whole in its tooltip."""
        line = " ".join(str(text).split())
        lines = [" ".join(str(t).split()) for t in earlier] + [line]
        # the count in front: the label elides its right end
        self.message_label.setText(f"({len(lines)} notes, hover for all) {line}" if earlier else line)
        self.message_label.setToolTip(plain_tooltip("\n".join(lines)))

    def current_view(self):
        focus = QtWidgets.QApplication.focusWidget()
        for v in self.views:
            if focus is not None and (focus is v or v.isAncestorOf(focus)):
                return v
        return self.depth if self.depth.underMouse() or not self.tabs.currentWidget() else self.tabs.currentWidget()

    def visible_views(self) -> list:
        out = [self.depth]
        cur = self.tabs.currentWidget()
        if cur is not None:
            out.append(cur)
        return [v for v in out if v.isVisible()]

    # ---- sessions ---------------------------------------------------------------------
    def set_session(self, worker) -> None:
        """Show a (new) worker's recording; an earlier worker is asked to stop and finish."""
        old = self.session
        if old is not None and old is not worker:
            old.stop(timeout=0)
            self._retired.append(old)
        self.session = worker
        self._note_wanted = bool(worker.cfg.note.strip())
        self.set_controls_shown(True)
        colors = {r.name: self.theme.run_color(i) for i, r in enumerate(worker.cfg.runs)}
        self.controls.set_config(worker.cfg, colors)
        # TOML notes are wrapped at 100 columns: let the label wrap them instead
        note = re.sub(r"(?<!\n)\n(?!\n)", " ", worker.cfg.note.strip())
        changed = changed_from_preset(worker.cfg)
        if note and changed:  # a note about a 30-block MLP under a swapped-in ResNet misleads the class
            note = f"Changed from the preset for this session: {'; '.join(changed)}. The note describes the preset.\n\n{note}"
        self.note.setText(note)
        self._seen_messages = 0
        self.show_message("")
        self.setWindowTitle(f"gradviz: {worker.cfg.name}")
        self.set_recording(worker.recording)
        if self.controls.rate.value():
            worker.set_max_rate(float(self.controls.rate.value()))
        QtCore.QSettings().setValue("preset", worker.cfg.name)

    def start_session(self, cfg) -> None:
        from .sessions import make_worker

        rate = float(self.controls.rate.value()) or None
        self.set_session(make_worker(cfg, max_rate=rate).start())

    def _submit(self, cmd) -> None:
        if self.session is not None:
            self.session.submit(cmd)

    def _set_rate(self, rate: float) -> None:
        if self.session is not None:
            self.session.set_max_rate(rate or None)
        QtCore.QSettings().setValue("max_rate", int(rate))

    # ---- frames -----------------------------------------------------------------------
    def _frame(self) -> None:
        rec = self.recording
        if rec is None:
            return
        t0 = time.perf_counter()
        replay = self.upto_step is not None
        for v in self.visible_views():
            # the depth profile (the centre of the lecture) gets every frame; the tab beside it
            # every third, which keeps the GUI's share of the GIL small while training runs
            if v is not self.depth and not replay and self.frame_count % TAB_EVERY:
                continue
            try:
                v.refresh(rec, self.upto_step)
            except Exception as exc:  # noqa: BLE001 - one broken chart must not stop the others
                log.exception("view %s failed", v.name)
                self.show_message(f"{v.title}: {type(exc).__name__}: {exc}")
        if self.frame_count % 4 == 0 or replay:
            self.readout.refresh(rec, self.upto_step)
        self.frame_count += 1
        self.last_frame_ms = (time.perf_counter() - t0) * 1000
        if not self._first_points_logged and (self.depth.drawn_upto or -1) >= 0:
            self._first_points_logged = True  # bench/startup.py reads this line
            log.info("first points drawn at %.3f (unix time)", time.time())
        for fn in self.frame_listeners:
            fn(self)

    def _refresh_current_tab(self) -> None:
        v = self.tabs.currentWidget()
        if v is not None and self.recording is not None:
            v.refresh(self.recording, self.upto_step)

    def refresh_all(self) -> None:
        """Every view, visible or not (export and tests)."""
        for v in self.views:
            v.refresh(self.recording, self.upto_step)
        self.readout.refresh(self.recording, self.upto_step)

    def _poll_status(self) -> None:
        w = self.session
        if w is None:
            rec = self.recording
            if rec is not None:
                last = rec.last_step()
                self.step_label.setText(f"step {last if self.upto_step is None else min(last, self.upto_step)}")
                self.path_label.setText(rec.source or "")
                self.path_label.setToolTip(plain_tooltip(rec.source or ""))
            return
        s = w.status()
        self.step_label.setText(f"step {s.step}" + (f"  {s.busy}" if s.busy else ""))  # a long evaluation says so
        self.rate_label.setText("   ".join(f"{run} {rate:.0f} steps/s" for run, rate in s.rates.items()))
        failed = bool(s.error) and not s.device  # the session never started
        self.device_label.setText(s.device or ("not started" if failed else f"starting… {s.starting}".strip()))
        if s.path and not failed:
            self.path_label.setText(f"recording to {s.path}")
        else:  # the status bar said "recording to not recorded" when the file could not be made
            self.path_label.setText("not recorded (the run file could not be written)" if s.not_recorded and not failed else "")
        self.path_label.setToolTip(plain_tooltip(s.path or s.not_recorded))
        self.readout.set_error(s.error if failed else None)
        self.controls.sync(s)
        for name, rc in self.controls.runs.items():
            paused = s.run_paused.get(name, False)
            rc.setTitle(f"{name}  (selected)" if self.controls.selected == name else name)
            if paused and not s.paused:
                rc.setTitle(rc.title() + "  - paused")
        if len(s.messages) > self._seen_messages:
            fresh = s.messages[self._seen_messages :]
            self.show_message(fresh[-1], fresh[:-1])
            self._seen_messages = len(s.messages)
        if s.error:
            self.show_message(s.error)

    # ---- display ----------------------------------------------------------------------
    def set_theme(self, name: str, presentation: bool) -> None:
        self.theme = make_theme(name, presentation, self._screen_height())
        app = QtWidgets.QApplication.instance()
        if app is not None:
            apply_to_app(app, self.theme)
        for v in self.views:
            v.apply_theme(self.theme)
        self.readout.apply_theme(self.theme)
        self.controls.apply_theme(self.theme)
        self._fit_controls()
        f = self.theme.font(0.8 if presentation else 1.0)
        self.statusBar().setFont(f)
        for lab in self.statusBar().findChildren(QtWidgets.QLabel):
            lab.setFont(f)
        self.message_label.setStyleSheet("color: #D55E00; font-weight: bold;")
        nf = self.theme.font(0.75 if presentation else 1.0)
        self.note.setFont(nf)
        self.tabs.tabBar().setFont(self.theme.font(0.8 if presentation else 1.0))
        for v in self.views:  # the views' own check boxes (the depth view's "fixed y axis")
            size_check_boxes(v, self.theme)
        for box, value in ((self.controls.present_box, presentation),):
            box.blockSignals(True)
            box.setChecked(value)
            box.blockSignals(False)
        self.controls.theme_box.blockSignals(True)
        self.controls.theme_box.setCurrentText(name)
        self.controls.theme_box.blockSignals(False)
        self.presentation_action.setChecked(presentation)
        s = QtCore.QSettings()
        s.setValue("theme", name)
        s.setValue("presentation", presentation)

    def _screen_height(self) -> int | None:
        screen = self.screen() or QtGui.QGuiApplication.primaryScreen()
        return screen.availableGeometry().height() if screen is not None else None

    def _on_screen_changed(self, _screen) -> None:
        """Dragged onto the projector (or back): presentation text follows the screen's size."""
        if self.theme.presentation:
            self.set_theme(self.theme.name, True)

    def showEvent(self, ev) -> None:  # noqa: N802 - Qt API
        super().showEvent(ev)
        handle = self.windowHandle()
        if handle is not None and not self._screen_watched:
            handle.screenChanged.connect(self._on_screen_changed)
            self._screen_watched = True

    def _fit_controls(self) -> None:
        """The controls dock as wide as its contents: presentation fonts must not cut the buttons."""
        self.controls.adjustSize()
        width = self.controls.sizeHint().width() + 24
        self.controls_scroll.setMinimumWidth(width)
        if hasattr(self, "dock"):
            self.resizeDocks([self.dock], [width], QtCore.Qt.Orientation.Horizontal)

    def set_presentation(self, on: bool) -> None:
        self.set_theme(self.theme.name, on)

    def toggle_presentation(self) -> None:
        self.set_presentation(not self.theme.presentation)

    def set_controls_shown(self, on: bool) -> None:
        """H hides the controls and the lecture note so the charts fill a projector (on a 1280-wide
        screen the dock took over a quarter of it); the keys R, B, D, Space and N still work."""
        if self.session is None:  # a replay has no controls to show
            on = False
        self.dock.setVisible(on)
        self.note_dock.setVisible(on and self._note_wanted)
        self.controls_action.setChecked(on)
        if not on and self.session is not None:
            self.show_message("controls hidden: H shows them again")
        elif self.message_label.text().startswith("controls hidden"):
            self.show_message("")

    def toggle_controls(self) -> None:
        self.set_controls_shown(not self.dock.isVisible())

    def toggle_fullscreen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
        else:
            self.showFullScreen()

    # ---- settings and shutdown ---------------------------------------------------------
    def _restore_settings(self) -> None:
        s = QtCore.QSettings()
        geo = s.value("geometry")
        self.geometry_restored = False
        if isinstance(geo, QtCore.QByteArray | bytes) and geo:
            self.geometry_restored = self.restoreGeometry(geo)
        if not self.geometry_restored and self.screen() is not None:
            avail = self.screen().availableGeometry()  # first start: fill the projector
            self.setGeometry(avail)
        state = s.value("window_state")
        if isinstance(state, QtCore.QByteArray | bytes) and state:
            self.restoreState(state)
        split = s.value("splitter")
        if isinstance(split, QtCore.QByteArray | bytes) and split:
            self.splitter.restoreState(split)
        try:
            self.tabs.setCurrentIndex(int(s.value("tab", 1)))
            rate = int(s.value("max_rate", 0))
        except (TypeError, ValueError):
            rate = 0
        self.controls.rate.blockSignals(True)
        self.controls.rate.setValue(rate)
        self.controls.rate.blockSignals(False)
        pres = str(s.value("presentation", "false")).lower() == "true"
        self.set_theme(str(s.value("theme", "light")) if s.value("theme") in ("light", "dark") else "light", pres)

    def save_settings(self) -> None:
        s = QtCore.QSettings()
        s.setValue("geometry", self.saveGeometry())
        s.setValue("window_state", self.saveState())
        s.setValue("splitter", self.splitter.saveState())
        s.setValue("tab", self.tabs.currentIndex())
        s.sync()

    def shutdown(self, timeout: float = 1.5) -> None:
        """Stop training and close every run file, within `timeout` seconds in all."""
        if self._shut:
            return
        self._shut = True
        self.timer.stop()
        self.status_timer.stop()
        try:
            self.save_settings()
        except Exception:  # noqa: BLE001 - never block closing over settings
            log.exception("saving settings failed")
        workers = [w for w in (*self._retired, self.session) if w is not None]
        for w in workers:
            w.stop(timeout=0)
        t0 = time.monotonic()
        deadline = t0 + timeout
        for w in workers:
            w.done.wait(max(0.0, deadline - time.monotonic()))
        for w in workers:
            if not w.done.is_set() and hasattr(w, "kill"):
                log.warning("a training process did not finish in %.1f s: killed (its run file keeps the last commit)", timeout)
                w.kill()
        log.info("shutdown: %d session(s) stopped in %.2f s", len(workers), time.monotonic() - t0)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.shutdown()
        super().closeEvent(event)
