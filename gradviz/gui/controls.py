"""The control panel: per-run switches, training controls, session settings and display options.

Widgets never call into training: every action becomes a command (emitted as `command`) or a new
session config (emitted as `new_session`); the window wires them to the worker.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from ..config import (
    FOLDER_DATASETS,
    ConfigError,
    ExperimentConfig,
    kind_fields,
    load_preset,
    preset_names,
)
from ..core import commands as C
from ..devices import cuda_available
from .theme import Theme, make_theme, size_check_boxes

HOLD_S = 0.6  # after a click, trust the widget over the worker's snapshot for this long
DROPOUT_ON = 0.5  # what D switches dropout to when it is off


class WheelGuard(QtCore.QObject):
    """Lets the mouse wheel scroll the panel past a combo or spin box it is not editing. By Qt's
    default the wheel changed whatever box was under the cursor: scrolling down the panel switched
    the preset and started a new session (the demo became weight-decay), or changed a depth or a
    dropout. A box takes the wheel once it has focus (a click or Tab)."""

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 - Qt API
        if ev.type() == QtCore.QEvent.Type.Wheel and isinstance(obj, QtWidgets.QWidget) and not obj.hasFocus():
            area = obj.parent()
            while area is not None and not isinstance(area, QtWidgets.QAbstractScrollArea):
                area = area.parent()
            if area is not None:
                QtCore.QCoreApplication.sendEvent(area.verticalScrollBar(), ev)
            return True
        return False


def guard_wheel(root: QtWidgets.QWidget, guard: WheelGuard) -> None:
    """Put `guard` on every combo and spin box under `root` (once each)."""
    for box in (*root.findChildren(QtWidgets.QComboBox), *root.findChildren(QtWidgets.QAbstractSpinBox)):
        if not box.property("gradviz_wheel_guard"):
            box.setProperty("gradviz_wheel_guard", True)
            box.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)  # the wheel alone does not focus it
            box.installEventFilter(guard)


class RunControls(QtWidgets.QGroupBox):
    """Residual, normalisation, dropout and learning rate of one run."""

    def __init__(self, run: str, color: str, norm_label: str, panel: ControlPanel) -> None:
        super().__init__(run)
        self.run, self.color, self.panel = run, color, panel
        self.residual = QtWidgets.QCheckBox("residual  (R)")
        self.norm = QtWidgets.QCheckBox(f"{norm_label}  (B)")
        self.dropout = QtWidgets.QDoubleSpinBox()
        self.dropout.setRange(0.0, 0.9)
        self.dropout.setSingleStep(0.1)
        self.dropout.setDecimals(2)
        self.dropout.setKeyboardTracking(False)
        self.lr = QtWidgets.QLineEdit()
        self.lr.setPlaceholderText("learning rate")
        self.lr.setToolTip(
            "Press Enter to apply at the next step. In the demo, 1e3 makes the residual twin blow up (its "
            "skip paths carry the huge gradient back) while the plain tanh stack saturates and its gradient dies"
        )
        self.hold_until = 0.0
        self.last_dropout = DROPOUT_ON
        form = QtWidgets.QGridLayout(self)
        form.addWidget(self.residual, 0, 0, 1, 2)
        form.addWidget(self.norm, 1, 0, 1, 2)
        form.addWidget(QtWidgets.QLabel("dropout p  (D)"), 2, 0)
        form.addWidget(self.dropout, 2, 1)
        form.addWidget(QtWidgets.QLabel("learning rate"), 3, 0)
        form.addWidget(self.lr, 3, 1)
        self.residual.toggled.connect(lambda on: self._send(C.SetResidual(run, bool(on))))
        self.norm.toggled.connect(lambda on: self._send(C.SetNorm(run, bool(on))))
        self.dropout.valueChanged.connect(self._on_dropout)
        self.lr.returnPressed.connect(self._on_lr)
        self.set_selected(False)

    def _send(self, cmd) -> None:
        self.hold_until = time.monotonic() + HOLD_S
        self.panel.command.emit(cmd)

    def _on_dropout(self, p: float) -> None:
        if p > 0:
            self.last_dropout = p
        self._send(C.SetDropout(self.run, round(float(p), 3)))

    def _on_lr(self) -> None:
        text = self.lr.text().strip()
        try:
            lr = float(text)
        except ValueError:
            self.panel.message.emit(f"learning rate {text!r}: type a positive number, e.g. 0.05 or 1e3")
            return
        if not (lr > 0 and math.isfinite(lr)):
            self.panel.message.emit(f"learning rate {text!r}: must be a positive number")
            return
        self._send(C.SetLR(self.run, lr))

    def set_selected(self, on: bool) -> None:
        width = 3 if on else 1
        style = f"QGroupBox {{ border: {width}px solid {self.color}; border-radius: 4px; margin-top: 1.4em; padding: 4px; }}"
        style += f" QGroupBox::title {{ color: {self.color}; subcontrol-origin: margin; left: 8px; font-weight: {'bold' if on else 'normal'}; }}"
        self.setStyleSheet(style)
        self.setTitle(f"{self.run}  (selected)" if on else self.run)

    def set_supported(self, supports: dict | None) -> None:
        """Grey out the switches this run's model does not have (LeNet has no skip path, the rgb
        net no normalisation): a live box that changes nothing misleads a class."""
        if not supports:
            return
        for key, widget, what in (
            ("residual", self.residual, "skip path"),
            ("norm", self.norm, "normalisation layer"),
            ("dropout", self.dropout, "dropout layer"),
        ):
            able = bool(supports.get(key, True))
            if widget.isEnabled() != able:
                widget.setEnabled(able)
                widget.setToolTip("" if able else f"this model has no {what} to switch")

    def sync(self, switches: dict, lr: float | None) -> None:
        if time.monotonic() < self.hold_until:
            return
        for box, value in ((self.residual, switches.get("residual")), (self.norm, switches.get("norm"))):
            if value is not None and box.isChecked() != bool(value):
                box.blockSignals(True)
                box.setChecked(bool(value))
                box.blockSignals(False)
        p = switches.get("dropout")
        if p is not None and abs(self.dropout.value() - p) > 1e-9 and not self.dropout.hasFocus():
            self.dropout.blockSignals(True)
            self.dropout.setValue(p)
            self.dropout.blockSignals(False)
        if lr is not None and not self.lr.hasFocus():
            text = f"{lr:g}"
            if self.lr.text() != text:
                self.lr.setText(text)


class ControlPanel(QtWidgets.QWidget):
    command = QtCore.Signal(object)  # a gradviz.core.commands object for the worker
    new_session = QtCore.Signal(object)  # an ExperimentConfig: restart from the seed
    rate_changed = QtCore.Signal(float)  # steps/s cap, 0 = none
    theme_changed = QtCore.Signal(str)
    presentation_changed = QtCore.Signal(bool)
    fullscreen_requested = QtCore.Signal()
    message = QtCore.Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.theme: Theme = make_theme()
        self.cfg: ExperimentConfig | None = None
        self.carried: dict = {}  # overrides every preset picked here gets (the launch's machine flags)
        self.runs: dict[str, RunControls] = {}
        self.selected: str | None = None
        self.paused = False

        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)

        # training
        train = QtWidgets.QGroupBox("Training")
        tl = QtWidgets.QGridLayout(train)
        self.pause_btn = QtWidgets.QPushButton("Pause  (Space)")
        self.step_btn = QtWidgets.QPushButton("Step  (N)")
        self.restart_btn = QtWidgets.QPushButton("Restart  (Ctrl+R)")
        self.rate = QtWidgets.QSpinBox()
        self.rate.setRange(0, 10000)
        self.rate.setSpecialValueText("no cap")
        self.rate.setSuffix(" steps/s")
        self.rate.setKeyboardTracking(False)
        tl.addWidget(self.pause_btn, 0, 0)
        tl.addWidget(self.step_btn, 0, 1)
        tl.addWidget(self.restart_btn, 1, 0, 1, 2)
        tl.addWidget(QtWidgets.QLabel("speed cap"), 2, 0)
        tl.addWidget(self.rate, 2, 1)
        self.pause_btn.clicked.connect(self.toggle_pause)
        self.step_btn.clicked.connect(self.single_step)
        self.restart_btn.clicked.connect(self.restart)
        self.rate.valueChanged.connect(lambda v: self.rate_changed.emit(float(v)))
        for b in (self.pause_btn, self.step_btn, self.restart_btn):
            b.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        outer.addWidget(train)

        # runs
        self.runs_box = QtWidgets.QWidget()
        self.runs_layout = QtWidgets.QVBoxLayout(self.runs_box)
        self.runs_layout.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.runs_box)

        # session: these restart from the seed
        sess = QtWidgets.QGroupBox("Session (changes restart from the seed)")
        sl = self.session_form = QtWidgets.QFormLayout(sess)
        self.preset = QtWidgets.QComboBox()
        self.preset.addItems(preset_names())
        self.depth = QtWidgets.QSpinBox()
        self.depth.setRange(1, 200)
        self.width_ = QtWidgets.QSpinBox()
        self.width_.setRange(1, 4096)
        self.activation = QtWidgets.QComboBox()
        self.activation.addItems(["tanh", "sigmoid", "relu"])
        self.optimizer = QtWidgets.QComboBox()
        self.optimizer.addItems(["sgd", "momentum", "rmsprop", "adam"])
        self.lr = QtWidgets.QLineEdit()
        self.batch = QtWidgets.QSpinBox()
        self.batch.setRange(0, 1 << 16)
        self.batch.setSpecialValueText("full batch")
        self.device = QtWidgets.QComboBox()
        self.device.addItem("cpu")
        if cuda_available():
            self.device.addItem("cuda")
        for w in (self.depth, self.width_, self.batch):
            w.setKeyboardTracking(False)
        # where an image data set lives (MNIST, CIFAR-10, an image folder): without it the window
        # could only say "pass --data-root DIR", a flag of a command line already gone
        self.data_root = QtWidgets.QLineEdit()
        self.data_root.setPlaceholderText("folder holding the data set")
        self.data_browse = QtWidgets.QToolButton()
        self.data_browse.setText("…")
        self.data_browse.setToolTip("choose the data folder")
        self.data_row = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(self.data_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.data_root, 1)
        row.addWidget(self.data_browse)
        sl.addRow("preset", self.preset)
        sl.addRow("depth (blocks)", self.depth)
        sl.addRow("width", self.width_)
        sl.addRow("activation", self.activation)
        sl.addRow("optimiser", self.optimizer)
        sl.addRow("learning rate", self.lr)
        sl.addRow("batch size", self.batch)
        sl.addRow("device", self.device)
        sl.addRow("data folder", self.data_row)
        self.data_root.editingFinished.connect(self._on_data_root)
        self.data_browse.clicked.connect(self._browse_data_root)
        self.preset.activated.connect(self._on_preset)
        for w in (self.depth, self.width_, self.batch):
            w.editingFinished.connect(self._on_session_field)
        for w in (self.activation, self.optimizer, self.device):
            w.activated.connect(self._on_session_field)
        self.lr.returnPressed.connect(self._on_session_field)
        outer.addWidget(sess)

        # display
        disp = QtWidgets.QGroupBox("Display")
        dl = QtWidgets.QGridLayout(disp)
        self.theme_box = QtWidgets.QComboBox()
        self.theme_box.addItems(["light", "dark"])
        self.present_box = QtWidgets.QCheckBox("presentation  (F5)")
        self.full_btn = QtWidgets.QPushButton("full screen  (F11)")
        self.full_btn.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        dl.addWidget(QtWidgets.QLabel("theme"), 0, 0)
        dl.addWidget(self.theme_box, 0, 1)
        dl.addWidget(self.present_box, 1, 0, 1, 2)
        dl.addWidget(self.full_btn, 2, 0, 1, 2)
        self.theme_box.currentTextChanged.connect(self.theme_changed.emit)
        self.present_box.toggled.connect(self.presentation_changed.emit)
        self.full_btn.clicked.connect(self.fullscreen_requested.emit)
        outer.addWidget(disp)
        outer.addStretch(1)
        self.wheel_guard = WheelGuard(self)
        guard_wheel(self, self.wheel_guard)

    # ---- session ----------------------------------------------------------------------
    def set_config(self, cfg: ExperimentConfig, run_colors: dict[str, str]) -> None:
        """Show a (new) session's settings and build one group per run."""
        self.cfg = cfg
        idx = self.preset.findText(cfg.name)
        if idx >= 0:
            self.preset.setCurrentIndex(idx)
        m, t = cfg.model, cfg.train
        for w, v in ((self.depth, m.depth), (self.width_, m.width), (self.batch, t.batch_size)):
            w.blockSignals(True)
            w.setValue(int(v))
            w.blockSignals(False)
        for w, v in ((self.activation, m.activation), (self.optimizer, t.optimizer)):
            w.setCurrentText(v)
        used = kind_fields(m.kind)
        for field, w in (("depth", self.depth), ("width", self.width_), ("activation", self.activation)):
            self.session_form.setRowVisible(w, field in used)
        self.lr.setText(f"{t.lr:g}")
        self.session_form.setRowVisible(self.data_row, cfg.data.name in FOLDER_DATASETS)
        self.data_root.setText(cfg.data.root or "")
        dev = "cuda" if t.device == "cuda" or (t.device == "auto" and cuda_available()) else "cpu"
        self.device.setCurrentText(dev)
        for rc in self.runs.values():
            rc.deleteLater()
        self.runs = {}
        norm_label = {"batch": "BatchNorm", "layer": "LayerNorm", "group": "GroupNorm"}.get(m.norm_kind, "norm")
        for r in cfg.runs:
            rc = RunControls(r.name, run_colors.get(r.name, "#888888"), norm_label, self)
            rc.sync({"residual": r.model.residual, "norm": r.model.norm, "dropout": r.model.dropout}, r.train.lr)
            self.runs_layout.addWidget(rc)
            self.runs[r.name] = rc
            guard_wheel(rc, self.wheel_guard)
        self.select_run(next(iter(self.runs), None))
        self.paused = False
        self.pause_btn.setText("Pause  (Space)")
        self.apply_theme(self.theme)

    def _fit(self) -> None:
        # a scroll area does not notice a new minimum height by itself: claim it
        self.runs_layout.activate()
        self.layout().activate()
        self.setMinimumHeight(self.layout().minimumSize().height())

    def _on_preset(self) -> None:
        name = self.preset.currentText()
        try:
            cfg = load_preset(name)
            if self.carried:  # the launch's --data-root, --download, --device hold for every preset
                cfg = cfg.with_overrides(self.carried)
        except ConfigError as exc:
            self.message.emit(str(exc))
            return
        self.new_session.emit(cfg)

    def session_overrides(self) -> dict:
        if self.cfg is None:
            return {}
        out = {}
        m, t = self.cfg.model, self.cfg.train
        wanted = {
            "model.depth": self.depth.value(),
            "model.width": self.width_.value(),
            "model.activation": self.activation.currentText(),
            "train.optimizer": self.optimizer.currentText(),
            "train.batch_size": self.batch.value(),
            "train.device": self.device.currentText(),
        }
        try:
            wanted["train.lr"] = float(self.lr.text())
        except ValueError:
            self.message.emit(f"learning rate {self.lr.text()!r}: type a positive number")
        current = {
            "model.depth": m.depth,
            "model.width": m.width,
            "model.activation": m.activation,
            "train.optimizer": t.optimizer,
            "train.batch_size": t.batch_size,
            "train.device": t.device if t.device != "auto" else self.device.itemText(self.device.count() - 1),
            "train.lr": t.lr,
        }
        for k, v in wanted.items():
            if current[k] != v:
                out[k] = v
        return out

    def _on_data_root(self) -> None:
        """A new data folder: the session starts again with it, and presets picked later keep it."""
        if self.cfg is None:
            return
        root = self.data_root.text().strip()
        if root == (self.cfg.data.root or ""):
            return
        if root:
            self.carried["data.root"] = root
        else:
            self.carried.pop("data.root", None)
        try:
            cfg = self.cfg.with_overrides({"data.root": root})
        except ConfigError as exc:
            self.message.emit(str(exc))
            return
        self.new_session.emit(cfg)

    def _browse_data_root(self) -> None:
        start = self.data_root.text().strip() or str(Path.home())
        chosen = QtWidgets.QFileDialog.getExistingDirectory(self, "Data folder", start)
        if chosen:
            self.data_root.setText(chosen)
            self._on_data_root()

    def _on_session_field(self) -> None:
        overrides = self.session_overrides()
        if not overrides or self.cfg is None:
            return
        try:
            cfg = self.cfg.with_overrides(overrides)
        except ConfigError as exc:
            self.message.emit(str(exc))
            return
        self.new_session.emit(cfg)

    # ---- actions (buttons and keys) ----------------------------------------------------
    def select_run(self, run: str | None) -> None:
        self.selected = run
        for name, rc in self.runs.items():
            rc.set_selected(name == run)

    def select_next_run(self) -> None:
        names = list(self.runs)
        if not names:
            return
        i = names.index(self.selected) if self.selected in names else -1
        self.select_run(names[(i + 1) % len(names)])

    def _switch_of_selected(self, attr: str):
        """The selected run's controls, or None (with a message when its model lacks the switch)."""
        rc = self.runs.get(self.selected or "")
        if rc is not None and not getattr(rc, attr).isEnabled():
            self.message.emit(f"{rc.run}: {getattr(rc, attr).toolTip()}")
            return None
        return rc

    def toggle_residual(self) -> None:
        rc = self._switch_of_selected("residual")
        if rc is not None:
            rc.residual.toggle()

    def toggle_norm(self) -> None:
        rc = self._switch_of_selected("norm")
        if rc is not None:
            rc.norm.toggle()

    def toggle_dropout(self) -> None:
        rc = self._switch_of_selected("dropout")
        if rc is not None:
            rc.dropout.setValue(0.0 if rc.dropout.value() > 0 else rc.last_dropout)

    def toggle_pause(self) -> None:
        self.set_paused(not self.paused)

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.pause_hold_until = time.monotonic() + HOLD_S
        self.command.emit(C.Pause() if paused else C.Resume())
        self.pause_btn.setText("Resume  (Space)" if paused else "Pause  (Space)")

    def single_step(self) -> None:
        if not self.paused:
            self.set_paused(True)
        self.command.emit(C.Step(1))

    def restart(self) -> None:
        self.command.emit(C.Restart())

    # ---- feedback ---------------------------------------------------------------------
    def sync(self, status) -> None:
        """Show what the worker actually did (switches, learning rates, pause)."""
        for name, rc in self.runs.items():
            rc.set_supported(getattr(status, "supports", {}).get(name))
            sw = status.switches.get(name)
            if sw is not None:
                rc.sync(sw, status.lrs.get(name))
        held = time.monotonic() < getattr(self, "pause_hold_until", 0.0)
        if not held and status.updated and status.paused != self.paused and status.state in ("training", "paused"):
            if status.paused or not any(status.run_paused.values()):
                self.paused = status.paused
                self.pause_btn.setText("Resume  (Space)" if self.paused else "Pause  (Space)")

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        f = QtGui.QFont(self.font())
        f.setPointSizeF(theme.font_pt * (0.75 if theme.presentation else 1.0))
        self.setFont(f)
        # The run boxes' style sheets (their coloured frames) froze their children's palette when
        # they were first polished: after a switch to the dark theme their labels stayed dark grey
        # on black. Hand every control the application's current palette.
        pal = QtWidgets.QApplication.palette()
        for w in self.findChildren(QtWidgets.QWidget):
            w.setFont(f)
            w.setPalette(pal)
        size_check_boxes(self, theme, f)
        self._fit()
