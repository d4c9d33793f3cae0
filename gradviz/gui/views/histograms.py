"""Histograms over time: weights, gradients or activations of one layer as bins × steps per run
(like TensorBoard's distributions), and the latest histogram of every run overlaid on one axis."""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from .base import (
    LEGEND_MARGIN,
    Markers,
    RowBalancer,
    SpacedAxis,
    View,
    WrapBar,
    add_legend,
    add_title,
    fit_run_titles,
    fmt_num,
    follow_pointer_over,
    is_norm_layer,
    pool_rows,
    run_key,
    set_axis_label,
    share_step_axis,
    style_plot,
    style_widget,
    upto_count,
)

KINDS = (("weight", "weights"), ("grad", "gradients"), ("activation", "activations"))
MAX_COLUMNS = 600
LATEST_LABEL = "count (latest)"
# one run's peak this many times the next run's: the strip stops above the others' bins and says how
# high the clipped peak goes (the init preset's zeros run, 1024 values in one bin, flattened the
# other three runs' histograms into a line along the bottom); well above the 4-5x by which weight
# decay's concentrated weights outgrow the undecayed ones, a peak that lesson points at
CLIP_RATIO = 8.0


class HistogramsView(View):
    name = "histograms"
    title = "Histograms over time"
    time_based = True

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.kind = "weight"
        self.layer = 1
        self._layer_chosen = False  # until someone picks a layer, each recording gets `first_shown_layer`
        self.kind_box = QtWidgets.QComboBox()
        for key, label in KINDS:
            self.kind_box.addItem(label, key)
        self.layer_box = QtWidgets.QComboBox()
        self.layer_box.setMinimumContentsLength(18)
        self.kind_box.currentIndexChanged.connect(self._on_select)
        self.layer_box.currentIndexChanged.connect(self._on_pick)
        self.bar = WrapBar([[QtWidgets.QLabel("histogram of"), self.kind_box], [QtWidgets.QLabel("in layer"), self.layer_box]])

        self.widget = pg.GraphicsLayoutWidget()
        self.ci = self.widget.ci
        self.title_label = add_title(self.ci, self.title, row=0, col=0)
        self.rows_even = RowBalancer(self.widget, on_settled=self.redraw)  # the pooling follows the heights
        self.latest = self.ci.addPlot(row=99, col=0, axisItems={"bottom": SpacedAxis("bottom"), "left": SpacedAxis("left", integer=True)})
        self.latest.setMenuEnabled(False)
        self.latest.setLabel("bottom", "value")
        self.latest.getAxis("bottom").enableAutoSIPrefix(False)  # the same units as the runs' value axes
        self.latest.setLabel("left", LATEST_LABEL)
        add_legend(self.latest)
        self.cmap = pg.colormap.get("viridis")
        self.plots: dict[str, pg.PlotItem] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self.markers: dict[str, Markers] = {}
        self.latest_curves: dict[str, pg.PlotDataItem] = {}
        self.clip_label = pg.TextItem("", anchor=(0.0, 0.0))  # "↑ 1024" beside a clipped peak, at the top
        self.clip_label.setVisible(False)
        self.latest.addItem(self.clip_label, ignoreBounds=True)
        self._drawn: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # steps, edges, counts
        # an export resizes without a redraw; a bound method (not a lambda), so Qt drops the
        # connection with this view (a lambda outliving it crashed the interpreter's exit)
        self.latest.getViewBox().sigResized.connect(self._on_latest_resized)

        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.bar)
        lay.addWidget(self.widget, 1)
        self._apply_theme(self.theme)
        # which bin is under the pointer and how many values it holds: the colour of a cell (log
        # counts) and a bar's height give no number
        self.widget.scene().sigMouseMoved.connect(self.pointer_moved)

    def _on_hover(self, scene_pos) -> None:
        follow_pointer_over(self, {**self.plots, None: self.latest}, scene_pos, self.reading_at, self.ci)

    def reading_at(self, run: str | None, p) -> str:
        """Over a run's image (`run`; p = (step, value)): that column's step and the bin's count;
        over the latest histograms (`run` None; p.x() a value): the bin and each run's count."""
        if run is not None:
            if run not in self._drawn:
                return ""
            steps, edges, counts = self._drawn[run]
            col = int(np.clip(np.searchsorted(steps, p.x(), side="right") - 1, 0, len(steps) - 1))
            k = _bin_at(edges, p.y())
            return f"{run} · step {int(steps[col])}: {_bin_text(edges, k)}: {_count_text(counts[col], k)}"
        drawn = {r: v for r, v in self._drawn.items() if len(v[1]) > 1}
        if not drawn:
            return ""
        lines = []
        for r, (steps, edges, counts) in drawn.items():
            k = _bin_at(edges, p.x())
            lines.append(f"{r}: {_bin_text(edges, k)}: {_count_text(counts[-1], k)} at step {int(steps[-1])}")
        return "\n".join(lines)

    def set_selection(self, kind: str | None = None, layer: int | None = None) -> None:
        if kind is not None:
            self.kind_box.setCurrentIndex([k for k, _ in KINDS].index(kind))
        if layer is not None:
            self._layer_chosen = True
            self.layer = layer
            self.layer_box.setCurrentIndex(layer)
        self._on_select()

    def _on_pick(self) -> None:
        self._layer_chosen = True
        self._on_select()

    def _on_select(self) -> None:
        self.kind = self.kind_box.currentData() or "weight"
        if self.layer_box.count():
            self.layer = max(0, self.layer_box.currentIndex())
        self.invalidate()
        self.redraw()

    def _title(self) -> str:
        label = dict(KINDS)[self.kind]
        name = self.layer_box.currentText() or f"layer {self.layer}"
        return f"Histograms over time: {label} of {html.escape(name)}"  # rich text: a layer named "<b>" stays text

    def _on_new_recording(self, recording) -> None:
        for plot in self.plots.values():
            self.ci.removeItem(plot)
        for c in self.latest_curves.values():
            self.latest.removeItem(c)
        self.latest.legend.clear()
        self.plots, self.images, self.markers, self.latest_curves, self._drawn = {}, {}, {}, {}, {}
        self._fill_layers(recording)

    def _fill_layers(self, recording) -> None:
        runs = recording.runs
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        if runs:
            for i, name in enumerate(recording.layers(runs[0])):
                self.layer_box.addItem(f"{i}: {name}")
            if not self._layer_chosen:
                self.layer = first_shown_layer(recording.info(runs[0]).layer_types)
            self.layer = min(self.layer, max(0, self.layer_box.count() - 1))
            self.layer_box.setCurrentIndex(self.layer)
        self.layer_box.blockSignals(False)

    def _build(self, recording) -> None:
        runs = recording.runs
        if list(self.plots) == runs:
            return
        first = None
        for i, run in enumerate(runs):
            if run in self.plots:
                continue
            plot = self.ci.addPlot(row=1 + i, col=0, axisItems={"bottom": SpacedAxis("bottom", integer=True), "left": SpacedAxis("left")})
            plot.setMenuEnabled(False)
            plot.setLabel("left", html.escape(run))  # "run: value (x0.001)" was taller than the plot on a projector
            plot.getAxis("left").enableAutoSIPrefix(False)
            plot.setLabel("bottom", "step")
            plot.setMouseEnabled(x=False, y=False)
            img = pg.ImageItem(axisOrder="row-major")
            img.setLookupTable(self.cmap.getLookupTable(nPts=256))
            plot.addItem(img)
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            self.plots[run], self.images[run] = plot, img
            self.markers[run] = Markers(plot)
            color = self.run_color(recording, run)
            self.latest_curves[run] = pg.PlotDataItem(stepMode="center", pen=self.theme.pen(color), name=html.escape(run), antialias=False)
            self.latest.addItem(self.latest_curves[run])
        self._apply_theme(self.theme)

    def _draw(self, recording, upto: int | None) -> None:
        if not self.layer_box.count() and recording.runs:  # live: the runs arrive after the window opens
            self._fill_layers(recording)
        self._build(recording)
        events = recording.event_objects()
        self._drawn = {}
        title = self._title()
        self.title_label.setText(title, size=f"{int(self.theme.font_pt * 1.3)}pt", color=self.theme.foreground)
        fit_run_titles(self.plots, self.theme, {run: self.run_color(recording, run) for run in self.plots})
        for run in recording.runs:
            img, curve = self.images[run], self.latest_curves[run]
            try:
                steps, edges, counts = recording.histograms(run, self.kind, self.layer)
            except (KeyError, ValueError, IndexError):
                steps, edges, counts = np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 0))
            n = upto_count(steps, upto)
            self.markers[run].update(events, upto, run)
            if n == 0 or len(edges) < 2:
                img.clear()
                curve.setData([], [])
                continue
            steps, counts = steps[:n], counts[:n]
            s0, s1 = int(steps[0]), int(steps[-1])
            cols = min(n, MAX_COLUMNS)
            if cols > 1:
                grid = np.linspace(s0, s1, cols).round().astype(np.int64)
                idx = np.clip(np.searchsorted(steps, grid, side="right") - 1, 0, n - 1)
            else:
                idx = np.array([n - 1])
            image = np.log1p(counts[idx].T.astype(np.float32))  # (bins, cols)
            image, span = pool_rows(image, self.plots[run].getViewBox().height())
            top = float(image.max()) if image.size else 1.0
            img.setImage(image, levels=(0.0, max(top, 1e-6)), autoLevels=False)
            cadence = (s1 - s0) / max(n - 1, 1) if n > 1 else 1.0
            img.setRect(QtCore.QRectF(s0, edges[0], (s1 - s0) + cadence, (edges[-1] - edges[0]) * span))
            self.plots[run].setXRange(s0, s1 + cadence, padding=0)
            self.plots[run].setYRange(float(edges[0]), float(edges[-1]), padding=0)
            curve.setData(edges, counts[-1])
            self._drawn[run] = (steps[idx], edges, counts[idx])
        self._fit_latest()

    def _on_latest_resized(self, *_args) -> None:
        self._fit_latest()

    def _fit_latest(self) -> None:
        """Runs in one legend row, and headroom above the tallest bin for it: in the corner over
        the histogram's peak it hid the bins a lecturer points at."""
        tops = [float(np.nanmax(c[-1])) for _s, _e, c in self._drawn.values() if c.size]
        legend, vb = self.latest.legend, self.latest.getViewBox()
        # the rotated axis title no longer than the plot is high (the text item adds a margin of
        # 4 px at each end): "count (latest)" ran past a 70 px plot into the tick labels and the
        # step axis above; a plot too short for "count" has its tick values alone
        metrics = QtGui.QFontMetricsF(self.theme.font())
        left = next((t for t in (LATEST_LABEL, "count") if metrics.horizontalAdvance(t) + 10 <= vb.height()), "")
        if self.latest.getAxis("left").labelText != left:
            set_axis_label(self.latest.getAxis("left"), left, self.theme)
        legend.setColumnCount(max(1, len(self.latest_curves)))
        if not tops or not np.isfinite(max(tops)) or max(tops) <= 0:
            self.latest.enableAutoRange(y=True)
            return
        room = (legend.height() + 2 * LEGEND_MARGIN) / max(vb.height(), 1.0)
        # a plot too short to keep the legend above the bins (a 768-line projector) shows the key
        # in its axis label instead: the legend covered the bins there
        keyed = room > 0.5
        legend.setVisible(not keyed)
        self._set_key(keyed)
        ranked = sorted(tops, reverse=True)
        clipped = len(ranked) >= 2 and ranked[1] > 0 and ranked[0] > CLIP_RATIO * ranked[1]
        shown = 1.5 * ranked[1] if clipped else ranked[0]
        top = shown / (1.0 - (0.08 if keyed else room))
        self.latest.setYRange(0.0, top, padding=0)
        self._label_clip(top if clipped else None)

    def _label_clip(self, top: float | None) -> None:
        """"↑ count" in the clipped run's colour at the top of the strip, right of its peak bin (over
        it, the text hid the other runs' peaks around the same value)."""
        lab = self.clip_label
        if top is None or self.recording is None:
            lab.setVisible(False)
            return
        run, (_s, edges, counts) = max(self._drawn.items(), key=lambda kv: float(np.nanmax(kv[1][2][-1])) if kv[1][2].size else -1.0)
        k = int(np.nanargmax(counts[-1]))
        lab.setText(f"↑ {fmt_num(float(counts[-1][k]))}")
        lab.setColor(self.run_color(self.recording, run))
        lab.setFont(self.theme.font())
        lab.setPos(float(edges[k + 1]), top)
        lab.setVisible(True)

    def _set_key(self, on: bool) -> None:
        text = "value"
        if on and self.recording is not None:
            # the key alone (with "value" before it, it overflowed a narrow pane), and only where it
            # fits the axis; otherwise the runs' names, in their colours on the plots above, are the key
            plain = "  ".join(f"━ {run}" for run in self.latest_curves)
            wide = QtGui.QFontMetricsF(self.theme.font()).horizontalAdvance(plain)
            if wide <= self.latest.getAxis("bottom").width() * 0.95:
                text = run_key([(run, self.run_color(self.recording, run)) for run in self.latest_curves], "━")
        if self.latest.getAxis("bottom").labelText != text:
            set_axis_label(self.latest.getAxis("bottom"), text, self.theme)

    def csv(self) -> tuple[list[str], list[list]]:
        runs = list(self._drawn)
        header = ["step"]
        if not runs:
            return header, []
        ref = self._drawn[runs[0]][0]
        cols = []
        for run in runs:
            steps, edges, counts = self._drawn[run]
            # the layer in every column: a CSV read later has no layer picker beside it
            names = self.row_names([run]).get(run, [])
            layer = f"{self.layer}: {names[self.layer]}" if self.layer < len(names) else f"layer {self.layer}"
            for b in range(counts.shape[1]):
                header.append(f"{run} {self.kind} of {layer} [{edges[b]:.4g}, {edges[b + 1]:.4g})")
            idx = np.clip(np.searchsorted(steps, ref, side="right") - 1, 0, len(steps) - 1)
            cols.append(counts[idx])
        table = np.concatenate(cols, axis=1)
        return header, [[int(s), *(float(x) for x in row)] for s, row in zip(ref, table, strict=True)]

    def plot_items(self) -> list:
        return [self.widget]

    def export_widget(self) -> QtWidgets.QWidget:
        return self.widget

    def _apply_theme(self, theme) -> None:
        style_widget(self.widget, theme)
        self.title_label.setText(self._title(), size=f"{int(theme.font_pt * 1.3)}pt", color=theme.foreground)
        style_plot(self.latest, theme, "")
        self._fit_latest()  # the legend's height follows the font
        for run, plot in self.plots.items():
            style_plot(plot, theme, "")
            self.markers[run].set_theme(theme)
            if self.recording is not None:
                color = self.run_color(self.recording, run)
                self.latest_curves[run].setPen(theme.pen(color))
                # each run's name in its colour: the key to the latest histogram's lines below
                set_axis_label(plot.getAxis("left"), html.escape(run), theme, color)
        share_step_axis(list(self.plots.values()), theme)
        # a run plot without step labels must not take the room the latest histogram needs for its legend
        self.rows_even.share(self.ci, [(1 + i, p) for i, p in enumerate(self.plots.values())] + [(99, self.latest)])


def first_shown_layer(layer_types: list[str]) -> int:
    """The layer a histogram shows before one is picked: the first after the input layer that is
    not a normalisation layer (ConvNeXt's layer 1 is its stem's LayerNorm, whose weights start
    all at 1: a single bar that moves little); the input layer when there is no other."""
    return next((i for i, t in enumerate(layer_types) if i >= 1 and not is_norm_layer(t)), 0)


def _bin_at(edges: np.ndarray, value: float) -> int:
    return int(np.clip(np.searchsorted(edges, value, side="right") - 1, 0, len(edges) - 2))


def _bin_text(edges: np.ndarray, k: int) -> str:
    """A bin's range; the end bins also hold the values beyond the fixed range (clamped there)."""
    lo, hi = float(edges[k]), float(edges[k + 1])
    if k == 0:
        return f"below {hi:.3g}"
    if k == len(edges) - 2:
        return f"{lo:.3g} and above"
    return f"{lo:.3g} to {hi:.3g}"


def _count_text(counts: np.ndarray, k: int) -> str:
    total = float(np.nansum(counts))
    return f"{fmt_num(float(counts[k]))} of {fmt_num(total)} values"
