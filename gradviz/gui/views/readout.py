"""The plain-language readout: one large line per run saying what the gradient is doing.

`describe` is a pure function of the recording, so the readout, the tests and any export agree.
"""

from __future__ import annotations

import warnings

import numpy as np
from PySide6 import QtCore, QtWidgets

from ..fitted_label import REGROW_AFTER, FittedLabel, fit_together
from ..theme import Theme, make_theme
from .base import upto_count

VANISHING = 1e-2  # first-layer gradient below 1/100 of the last layer's
EXPLODING = 1e2
WINDOW = 10  # steps the ratio is a median over, so the line does not flicker
FIT_FLOOR = 0.6  # a line too long for its width shrinks down to this much of its size
# on one line, down to this much of the window's text size: bold and in its run's colour a line
# still leads the screen at 1.05x, and one line per run leaves the charts the most room
ONE_LINE_FLOOR = 1.05


def _fraction(r: float) -> str:
    x = 1.0 / r
    if x >= 1e7:
        return f"1/{x:.1e}".replace("e+0", "e").replace("e+", "e")
    return f"1/{float(f'{x:.2g}'):,.0f}"


def _times(r: float) -> str:
    if r >= 1e7:
        return f"{r:.1e}×".replace("e+0", "e").replace("e+", "e")
    return f"{float(f'{r:.2g}'):,.4g}×"


def gradient_ratio(recording, run: str, upto: int | None = None) -> tuple[float, int, int] | None:
    """(first / last layer gradient norm, first index, last index) over the newest steps."""
    steps, g = recording.metric(run, "grad_norm")
    n = upto_count(steps, upto)
    if n == 0 or g.ndim != 2:
        return None
    win = np.asarray(g[max(0, n - WINDOW) : n], np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(np.where(win > 0, win, np.nan), axis=0)
        # a layer whose gradient is exactly 0 (zero init: every unit gets the same nothing) counts
        # as a first layer with a ratio of 0, not as "no gradient yet"; NaN (never used) does not
        held = np.nanmedian(np.where(np.isfinite(win), win, np.nan), axis=0)
    cols = np.flatnonzero(np.isfinite(med))
    used = np.flatnonzero(np.isfinite(held))
    if len(used) and held[used[0]] == 0 and len(cols) and cols[-1] > used[0]:
        return 0.0, int(used[0]), int(cols[-1])
    if len(cols) < 2:
        return None
    a, b = int(cols[0]), int(cols[-1])
    return float(med[a] / med[b]), a, b


def describe(recording, run: str, upto: int | None = None, short: bool = False) -> str:
    """e.g. "plain: layer 0 receives 1/3,000 of layer 61's gradient: vanishing". `short`: the same
    facts in fewer words ("plain: layer 0 gets 1/3,000 of layer 61's gradient: vanishing"), for a
    pane where the long form takes two lines and the short one fits one."""
    return describe_both(recording, run, upto)[1 if short else 0]


def describe_both(recording, run: str, upto: int | None = None) -> tuple[str, str]:
    """(`describe`'s long form, its short form), from one look at the recording."""
    stop = None
    for e in recording.event_objects():
        if upto is not None and e.step > upto:
            continue
        if e.run in (run, "") and e.kind in ("nonfinite", "error"):
            stop = e
        elif e.run in (run, "") and e.kind in ("resume", "restart") and stop is not None and stop.kind == "nonfinite":
            stop = None
    if stop is not None:
        text = stop.detail if stop.detail.startswith(run) else f"{run}: {stop.detail}"
        return text, text
    got = gradient_ratio(recording, run, upto)
    if got is None:
        return (f"{run}: waiting for gradients",) * 2
    r, a, b = got
    if r == 0:
        return (
            f"{run}: layer {a} receives no gradient at all (exactly 0): it cannot learn",
            f"{run}: layer {a} gets no gradient (exactly 0): it cannot learn",
        )
    if r < VANISHING:
        amount, end = f"{_fraction(r)} of", "vanishing"
    elif r > EXPLODING:
        amount, end = _times(r), "exploding"
    else:
        amount, end = _times(r), "it flows back"
    return (
        f"{run}: layer {a} receives {amount} layer {b}'s gradient: {end}",
        f"{run}: layer {a} gets {amount} layer {b}'s gradient: {end.removeprefix('it ')}",
    )


def readout_size(theme: Theme, n_runs: int) -> float:
    """Point size of the readout's lines: two runs get the full size; more get smaller lines so
    the depth profile keeps its room, but never below 1.1x the window's text (four runs were
    headlined at 9.6 pt, under the 10 pt of the charts' labels)."""
    k = 1.0 if n_runs <= 2 else max(0.6, 1.15 - 0.1 * n_runs)
    return max(theme.readout_pt * k, min(theme.readout_pt, 1.1 * theme.font_pt))


class Readout(QtWidgets.QWidget):
    """Large text, one line per run, in the run's colour."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.theme: Theme = make_theme()
        self._lay = QtWidgets.QVBoxLayout(self)
        self._lay.setContentsMargins(8, 2, 8, 2)
        self._lay.setSpacing(0)
        self.labels: dict[str, FittedLabel] = {}
        self._key = None
        self._fitting = False
        self.recording = None
        # a session that could not start (a missing data folder, a model that will not build) has
        # no runs to describe: its one-line reason goes here, in the large text, not only in the
        # status bar, where a projector cut it off mid-word
        self.error_label = QtWidgets.QLabel("")
        self.error_label.setTextFormat(QtCore.Qt.TextFormat.PlainText)  # it may quote a file's names
        self.error_label.setWordWrap(True)
        self.error_label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.error_label.hide()
        self._lay.addWidget(self.error_label)
        # a kept size is weighed against a fresh fit when a text changes; a paused or finished
        # session's texts do not change, so this looks again now and then
        self._regrow = QtCore.QTimer(self)
        self._regrow.setInterval(int(REGROW_AFTER * 1000))
        self._regrow.timeout.connect(self._fit_lines)
        self._regrow.start()

    def set_error(self, text: str | None) -> None:
        """Show why the session could not start (None clears it)."""
        text = " ".join(str(text).split()) if text else ""
        if self.error_label.text() != text:
            self.error_label.setText(text)
        self.error_label.setVisible(bool(text))

    def lines(self) -> list[str]:
        """Each run's line in full (a narrow pane may show the short form)."""
        return [lab.full_text() for lab in self.labels.values()]

    def refresh(self, recording, upto: int | None = None) -> None:
        if recording is None:
            return
        key = (id(recording), recording.version, upto)
        if key == self._key:
            return
        self._key = key
        if recording is not self.recording or list(self.labels) != recording.runs:
            self.recording = recording
            for lab in self.labels.values():
                lab.deleteLater()
            self.labels = {}
            for run in recording.runs:
                lab = FittedLabel("", on_change=self._fit_lines)
                lab.setTextFormat(QtCore.Qt.TextFormat.PlainText)  # run and layer names: text, never markup
                lab.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.NoTextInteraction)
                self._lay.addWidget(lab)
                self.labels[run] = lab
            self.apply_theme(self.theme)
        for run, lab in self.labels.items():
            lab.set_texts(list(describe_both(recording, run, upto)))

    def _fit_lines(self) -> None:
        """All runs' lines at one size (a short line next to a long one came out smaller or
        larger than it, which read as a difference between the runs)."""
        if self._fitting or not self.labels:
            return
        self._fitting = True
        try:
            fit_together(self.labels.values())
        finally:
            self._fitting = False

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        runs = self.recording.runs if self.recording is not None else []
        font = theme.font()
        font.setPointSizeF(readout_size(theme, len(runs)))
        font.setBold(True)
        # shrunk to fit one line, but not below ONE_LINE_FLOOR x the window's text (bold and in its
        # run's colour it still leads the screen); else two lines, down to FIT_FLOOR of the size
        least = FIT_FLOOR * font.pointSizeF()
        for run, lab in self.labels.items():
            lab.set_base_font(font, max(least, ONE_LINE_FLOOR * theme.font_pt), least)
            color = theme.run_color(runs.index(run) if run in runs else 0)
            lab.setStyleSheet(f"color: {color};")
        err = theme.font()
        err.setPointSizeF(theme.readout_pt * 0.8)
        err.setBold(True)
        self.error_label.setFont(err)
        self.error_label.setStyleSheet("color: #D55E00;")
