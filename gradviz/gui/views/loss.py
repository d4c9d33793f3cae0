"""Loss curves: train (solid) and eval (dashed) for every run, log y, with event markers."""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

from .base import (
    DecadeAxis,
    KeyedChart,
    Markers,
    SpacedAxis,
    View,
    fmt_reading,
    follow_pointer,
    hollow_markers,
    live_curve,
    positive,
    upto_count,
)

SERIES = ("loss", "eval_loss")  # train solid, eval dashed
EVAL_ENTRY = "eval (dashed)"
# The eval curve in its run's colour, dashed, lay under or among the noisy per-batch training curve of
# the same colour and could not be seen (the demo's residual twin). It is drawn above the training
# curves, and while few enough of its points are on the chart each gets a hollow marker.
EVAL_Z = 5
EVAL_MARKERS_UPTO = 80  # evaluations drawn; beyond this the markers would merge into a band
NO_LOSS = "no loss recorded\n(gradviz.watch: pass it to log, w.log(loss=loss))"


class LossView(View):
    name = "loss"
    title = "Loss"  # the legend names each run once, plus one "eval" entry: 3 entries, not 4 (9 of 4 runs)
    time_based = True

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.widget = KeyedChart(self.title, {"left": DecadeAxis("left"), "bottom": SpacedAxis("bottom", integer=True)})
        self.plot: pg.PlotItem = self.widget.plot
        self.widget.shorter = {EVAL_ENTRY: "eval"}  # a dashed sample says the rest
        self.legend = self.widget.legend
        self.title_label = self.widget.title_label
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.setLogMode(x=False, y=True)
        self.markers = Markers(self.plot)
        # said in the plot when steps were recorded without a loss (`w.log()` with no loss=): an
        # empty plot looked broken
        self.nothing = pg.TextItem(NO_LOSS, anchor=(0.5, 0.5))
        self.nothing.setVisible(False)
        self.plot.addItem(self.nothing, ignoreBounds=True)
        self.curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        self._drawn: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.eval_entry: pg.PlotDataItem | None = None  # legend only: "eval (dashed)", after the runs
        self._had_eval = False
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.widget)
        self._apply_theme(self.theme)
        self.plot.scene().sigMouseMoved.connect(self.pointer_moved)

    def _on_hover(self, scene_pos) -> None:
        follow_pointer(self, self.plot, scene_pos, self.reading_at)

    def reading_at(self, x: float) -> str:
        """Per run, the training loss at the recorded step nearest x and the last evaluation at or
        before it; "" where no run has a step."""
        lines = []
        for (run, metric), (steps, values) in self._drawn.items():
            if metric != "loss" or len(steps) == 0:
                continue
            i = int(np.clip(np.searchsorted(steps, x), 1, len(steps) - 1)) if len(steps) > 1 else 0
            if i and abs(steps[i - 1] - x) <= abs(steps[i] - x):
                i -= 1
            line = f"{run}: loss {fmt_reading(float(values[i]), missing='not finite')} at step {int(steps[i])}"
            ev_steps, ev = self._drawn.get((run, "eval_loss"), (np.zeros(0), np.zeros(0)))
            j = int(np.searchsorted(ev_steps, steps[i], side="right")) - 1
            if j >= 0:
                line += f", eval {fmt_reading(float(ev[j]), missing='not finite')} at step {int(ev_steps[j])}"
            lines.append(line)
        return "\n".join(lines)

    def _on_new_recording(self, recording) -> None:
        for c in [*self.curves.values(), self.eval_entry]:
            if c is not None:
                self.plot.removeItem(c)
        self.curves, self._drawn, self.eval_entry = {}, {}, None
        self._had_eval = False
        self.plot.legend.clear()
        self._fit_legend()

    def _pen(self, recording, run: str, metric: str):
        color = self.run_color(recording, run)
        return self.theme.pen(color, self.theme.line_width * (1 if metric == "loss" else 1.5), dash=metric != "loss")

    def _draw(self, recording, upto: int | None) -> None:
        self._drawn = {}
        new_run = False
        for run in recording.runs:
            for metric in SERIES:
                key = (run, metric)
                if key not in self.curves:
                    new_run = True
                    name = html.escape(run) if metric == "loss" else None  # eval curves share the run's colour; the key is rich text
                    self.curves[key] = live_curve(self.plot, self._pen(recording, run, metric), name=name)
                    if metric != "loss":
                        self.curves[key].setZValue(EVAL_Z)
                steps, values = recording.metric(run, metric)
                n = upto_count(steps, upto)
                steps, values = steps[:n], values[:n]
                curve = self.curves[key]
                if metric != "loss" and (n <= EVAL_MARKERS_UPTO) != (curve.opts["symbol"] is not None):
                    self._mark(curve, self.run_color(recording, run), n <= EVAL_MARKERS_UPTO)
                curve.setData(steps, positive(values))
                self._drawn[key] = (steps, values)
        # one legend entry for every dashed curve, in the foreground colour, kept last; none while
        # no run has an evaluation (a `gradviz.watch` run, the first steps of a session)
        has_eval = any(len(v[0]) for (_run, metric), v in self._drawn.items() if metric == "eval_loss")
        if self.eval_entry is not None and (new_run or not has_eval):
            self.plot.removeItem(self.eval_entry)
            self.eval_entry = None
        if has_eval and self.eval_entry is None:
            self.eval_entry = live_curve(self.plot, self._eval_pen(), name=EVAL_ENTRY)
        if new_run or (self.eval_entry is not None) != self._had_eval:
            self._had_eval = self.eval_entry is not None
            self._apply_theme(self.theme)  # the new entries' fonts
            self._fit_legend()
        self.markers.update(recording.event_objects(), upto)
        # the newest value first: at every refresh a recorded loss ends the look there, not after a
        # pass over the whole series
        stepped = any(len(steps) for steps, _v in self._drawn.values())
        empty = stepped and not any(len(v) and (np.isfinite(v[-1]) or np.isfinite(v).any()) for _s, v in self._drawn.values())
        if empty:
            (x0, x1), (y0, y1) = self.plot.viewRange()
            self.nothing.setPos((x0 + x1) / 2, (y0 + y1) / 2)
            self.nothing.setColor(self.theme.foreground)
            self.nothing.setFont(self.theme.font())
        self.nothing.setVisible(empty)

    def _fit_legend(self, *_args) -> None:
        self.widget.fit_key()

    def _mark(self, curve: pg.PlotDataItem, color: str, on: bool) -> None:
        """Hollow markers (the background inside, the run's colour around) on an eval curve, or none."""
        if not on:
            curve.setSymbol(None)
            return
        hollow_markers(curve, self.theme, color, 4 + 2.5 * self.theme.line_width, self.theme.line_width)

    def _eval_pen(self):
        return self.theme.pen(self.theme.foreground, self.theme.line_width * 1.5, dash=True)

    def csv(self) -> tuple[list[str], list[list]]:
        keys = list(self._drawn)
        header = ["step"] + [f"{run} {metric}" for run, metric in keys]
        if not keys:
            return header, []
        all_steps = np.unique(np.concatenate([self._drawn[k][0] for k in keys]))
        cols = []
        for k in keys:
            steps, values = self._drawn[k]
            col = np.full(len(all_steps), np.nan)
            col[np.searchsorted(all_steps, steps)] = values
            cols.append(col)
        rows = [[int(s), *(float(c[i]) for c in cols)] for i, s in enumerate(all_steps)]
        return header, rows

    def plot_items(self) -> list:
        return [self.plot]

    def export_widget(self) -> QtWidgets.QWidget:
        return self.widget

    def _apply_theme(self, theme) -> None:
        self.widget.apply_theme(theme, self.title)
        self.markers.set_theme(theme)
        if self.recording is not None:
            for (run, metric), c in self.curves.items():
                c.setPen(self._pen(self.recording, run, metric))
                if metric != "loss" and c.opts["symbol"] is not None:  # the theme's sizes and colours
                    self._mark(c, self.run_color(self.recording, run), True)
        if self.eval_entry is not None:
            self.eval_entry.setPen(self._eval_pen())
        self._fit_legend()  # the key's samples follow the new pens
