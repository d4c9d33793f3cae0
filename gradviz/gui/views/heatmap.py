"""Heatmap: layer × step of log10 gradient norm, one image per run, one shared colour scale.

Each image is an `ImageItem` with fixed levels and a lookup table, resampled onto at most
`MAX_COLUMNS` evenly spaced steps (so older, decimated rows land at their true step and a long run
costs the same per frame as a short one). Layers that got no gradient in the window (e.g. a
switched-off BatchNorm) are left out; a layer that was in use for part of the window takes, where
it was not, the colour of the layer below it (`fill_unused_cells`); the CSV keeps its NaN.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from .base import (
    Markers,
    RowBalancer,
    SpacedAxis,
    View,
    add_title,
    fit_run_titles,
    fmt_reading,
    follow_pointer_over,
    layer_caption,
    nice_step,
    pool_rows,
    set_axis_label,
    share_step_axis,
    style_plot,
    style_widget,
    upto_count,
)

MAX_COLUMNS = 1200
LEVELS = (-10.0, 1.0)  # log10 gradient norm: 1e-10 (dark) to 10 (bright)
NARROW_EM = 30  # a pane narrower than this many font points gives its images the colour bar's label room


def row_ticks(rows: np.ndarray, every: int) -> list[tuple[float, str]]:
    """Row labels: every `every`-th row by its layer index; with many layers, round layer numbers
    (0, 50, 100, ...) at their place among the rows instead (a DenseNet's 242 layers read 0, 31,
    62, 93; the demo's, whose switched-off norms have no row, 0, 7, 15, 23)."""
    first, last = int(rows[0]), int(rows[-1])
    step = int(nice_step(every * (last - first + 1) / len(rows))) if every > 1 else 1  # in layers
    if step < 5 or every >= len(rows) - 1:
        return [(i + 0.5, str(int(rows[i]))) for i in range(0, len(rows), every)]
    marks = range(-(-first // step) * step, last + 1, step)
    return [(float(np.interp(m, rows, np.arange(len(rows)))) + 0.5, str(m)) for m in marks]


class HeatmapView(View):
    name = "heatmap"
    title = "Gradient norm heatmap (log10 ‖∂L/∂W‖, layer × step)"
    time_based = True

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.metric_name = "grad_norm"
        self._narrow: bool | None = None  # the axes' layout last chosen by `_fit_axes`
        self.levels = LEVELS
        self.widget = pg.GraphicsLayoutWidget()
        self.layout_ = self.widget.ci
        self.title_label = add_title(self.layout_, self.title, row=0, col=0, colspan=2)
        self.cmap = pg.colormap.get("viridis")
        self.bar = pg.ColorBarItem(
            values=self.levels, colorMap=self.cmap, interactive=False, width=18
        )
        self.plots: dict[str, pg.PlotItem] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self.markers: dict[str, Markers] = {}
        self._drawn: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # run -> (steps, log10 (L, n))
        self._rows: dict[str, tuple[np.ndarray, int]] = {}  # run -> (layer indices shown as image rows, label stride)
        self.rows_even = RowBalancer(self.widget, on_settled=self.redraw)  # the row labels follow the plots' heights
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.widget)
        self._apply_theme(self.theme)
        self.widget.scene().sigMouseMoved.connect(self.pointer_moved)

    def _on_hover(self, scene_pos) -> None:
        def reading(run, p):
            return self.reading_at(run, p.x(), p.y()) if run in self._drawn else ""

        follow_pointer_over(self, self.plots, scene_pos, reading, self.layout_)

    def reading_at(self, run: str, x: float, y: float) -> str:
        """What the hover readout says at (step x, row y) of a run's image: the layer's name and
        its gradient norm in the column there (as recorded: a switched-off layer is "not used")."""
        steps, logv = self._drawn[run]
        rows = self._rows.get(run, (np.arange(logv.shape[0]), 1))[0]
        r = int(np.floor(y))
        if not (0 <= r < len(rows)) or len(steps) == 0:
            return ""
        layer = int(rows[r])
        col = int(np.clip(np.searchsorted(steps, x, side="right") - 1, 0, len(steps) - 1))
        with np.errstate(over="ignore"):
            value = float(10.0 ** logv[layer, col])
        return f"{run} · {layer_caption(self.recording, [run], layer)}\nstep {int(steps[col])}: ‖∂L/∂W‖ = {fmt_reading(value)}"

    def _on_new_recording(self, recording) -> None:
        for plot in self.plots.values():
            self.layout_.removeItem(plot)
        if self.bar.scene() is not None:
            self.layout_.removeItem(self.bar)
        self.plots, self.images, self.markers, self._drawn, self._rows = {}, {}, {}, {}, {}

    def _build(self, recording) -> None:
        runs = recording.runs
        if list(self.plots) == runs:
            return
        self._on_new_recording(recording)
        first = None
        for i, run in enumerate(runs):
            plot = self.layout_.addPlot(row=1 + i, col=0, axisItems={"bottom": SpacedAxis("bottom", integer=True)})
            # layer rows, labelled by `row_ticks`: no SI prefix (an empty strip's title read "r (x0.001)")
            plot.getAxis("left").enableAutoSIPrefix(False)
            plot.setMenuEnabled(False)
            plot.setLabel("left", html.escape(run))  # "run: layer" was taller than a plot of three runs; the title says layer × step
            plot.setMouseEnabled(x=False, y=False)
            if i == len(runs) - 1:
                plot.setLabel("bottom", "step")
            img = pg.ImageItem(axisOrder="row-major")
            plot.addItem(img)
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            self.plots[run], self.images[run] = plot, img
            self.markers[run] = Markers(plot)
            self.markers[run].set_theme(self.theme)
        self.layout_.addItem(self.bar, row=1, col=1, rowspan=max(1, len(runs)))
        self.bar.setImageItem(list(self.images.values()))
        self.bar.setLevels(self.levels)
        self._apply_theme(self.theme)

    def _draw(self, recording, upto: int | None) -> None:
        self._build(recording)
        events = recording.event_objects()
        self._drawn = {}
        fit_run_titles(self.plots, self.theme, {run: self.run_color(recording, run) for run in self.plots})
        for run in recording.runs:
            steps, values = recording.metric(run, self.metric_name)
            n = upto_count(steps, upto)
            img = self.images[run]
            if n == 0 or values.ndim != 2:
                img.clear()
                self.markers[run].update(events, upto, run)
                continue
            steps, values = steps[:n], values[:n]
            s0, s1 = int(steps[0]), int(steps[-1])
            cols = min(n, MAX_COLUMNS, s1 - s0 + 1)
            grid = np.linspace(s0, s1, cols).round().astype(np.int64) if cols > 1 else steps[-1:]
            idx = np.clip(np.searchsorted(steps, grid, side="right") - 1, 0, n - 1)
            sub = values[idx].astype(np.float32)
            with np.errstate(divide="ignore", invalid="ignore"):
                logv = np.log10(np.where(sub >= 0, sub, np.nan)).T  # (layers, cols); 0 -> -inf
            # rows that never got a gradient (NaN: a switched-off BatchNorm) are left out; the axis
            # keeps the layer indices of the depth profile. A gradient of exactly 0 (vanished past
            # float32's range, as in a 200-block plain stack's first layers) is a row in the
            # darkest colour: dropping it hid the very layers the heatmap is there to show.
            missing = np.isnan(logv)
            rows = np.flatnonzero(~missing.all(axis=1))
            if len(rows) == 0:
                rows = np.arange(logv.shape[0])
            shown = fill_unused_cells(logv[rows], missing[rows])
            if np.isneginf(shown).any():
                shown = np.where(np.isneginf(shown), np.float32(self.levels[0]), shown)
            shown, tall = pool_rows(shown, self.plots[run].getViewBox().height(), "mean")
            img.setImage(shown, levels=self.levels, autoLevels=False)
            span = max(s1 - s0, 1)
            width = span + span / max(cols - 1, 1)
            img.setRect(QtCore.QRectF(s0, 0, width, len(rows) * tall))
            plot = self.plots[run]
            plot.setXRange(s0, s0 + width, padding=0)
            plot.setYRange(0, len(rows), padding=0)
            # at most 8 row labels, and no more than fit the plot's height a line and a half apart
            # (four runs in a projector pane stacked "19 15 11 7 3 0" on top of each other)
            height = plot.getViewBox().height()
            fit = int(height / (1.5 * self._line_px)) if height > 0 else 8
            every = max(1, int(np.ceil(len(rows) / max(1, min(8, fit)))))
            if fit < 2 and len(rows) > 1 and height * (len(rows) - 1) / len(rows) >= 1.1 * self._line_px:
                # a strip one and a half lines high (six runs at 1024x768) kept only "0": its first
                # and last layers, a tenth of a line apart, say which layers it spans
                every = len(rows) - 1
            shown_rows = self._rows.get(run)
            if shown_rows is None or shown_rows[1] != every or not np.array_equal(shown_rows[0], rows):
                self._rows[run] = (rows, every)
                plot.getAxis("left").setTicks([row_ticks(rows, every), []])
            self._drawn[run] = (steps[idx], logv)
            self.markers[run].update(events, upto, run)

    def csv(self) -> tuple[list[str], list[list]]:
        runs = list(self._drawn)
        if not runs:
            return ["step"], []
        ref_steps = self._drawn[runs[0]][0]
        header = ["step"]
        cols = []
        for run in runs:
            steps, logv = self._drawn[run]
            names = self.recording.layers(run) if self.recording is not None else []
            for i in range(logv.shape[0]):
                layer = names[i] if i < len(names) else str(i)
                header.append(f"{run} {layer} log10 {self.metric_name}")
            idx = np.clip(np.searchsorted(steps, ref_steps, side="right") - 1, 0, len(steps) - 1)
            cols.append(logv[:, idx])
        table = np.concatenate(cols, axis=0).T  # (cols, all layers)
        rows = [[int(s), *(float(x) for x in r)] for s, r in zip(ref_steps, table, strict=True)]
        return header, rows

    def plot_items(self) -> list:
        return [self.widget]

    def export_widget(self) -> QtWidgets.QWidget:
        return self.widget

    def _apply_theme(self, theme) -> None:
        style_widget(self.widget, theme)
        self.title_label.setText(self.title, size=f"{int(theme.font_pt * 1.3)}pt", color=theme.foreground)
        for run, plot in self.plots.items():
            style_plot(plot, theme, "")
            if self.recording is not None:  # the run's name in its colour, as on every other chart
                color = self.run_color(self.recording, run)
                set_axis_label(plot.getAxis("left"), html.escape(run), theme, color)
        share_step_axis(list(self.plots.values()), theme)
        self.rows_even.share(self.layout_, [(1 + i, p) for i, p in enumerate(self.plots.values())])
        self._line_px = QtGui.QFontMetricsF(theme.font()).height()  # for the row labels' spacing
        for m in self.markers.values():
            m.set_theme(theme)
        ax = self.bar.axis
        ax.setPen(pg.mkPen(theme.foreground))
        ax.setTextPen(pg.mkPen(theme.foreground))
        ax.setTickFont(theme.font())
        self._narrow = None
        self._fit_axes()

    def _fit_axes(self) -> None:
        """Axis widths from the font, and in a narrow pane (a 1024 x 768 projector in presentation
        mode) no label on the colour bar, whose unit the title states: with fixed widths the run and
        bar axes took 200 of the pane's 265 px and left the images 40."""
        theme = self.theme
        narrow = self.width() < NARROW_EM * theme.font_pt
        if narrow == self._narrow:
            return
        self._narrow = narrow
        fm = QtGui.QFontMetricsF(theme.font())
        # the run's name (rotated, one line) beside layer numbers of up to three digits
        left = int(fm.horizontalAdvance("000") + fm.height() * (1.6 if narrow else 2.2) + 8)
        for plot in self.plots.values():
            plot.getAxis("left").setWidth(left)
        ax = self.bar.axis
        ax.setLabel("" if narrow else "log10 ‖∂L/∂W‖", **{"font-size": f"{theme.font_pt}pt", "color": theme.foreground})
        ax.showLabel(not narrow)
        # room for the tick labels and the rotated label beside them: the bar's own narrow axis
        # drew the presentation-size label across the tick labels
        digits = fm.horizontalAdvance("−10")
        ax.setWidth(int(digits + (fm.height() * 0.6 if narrow else theme.font_pt * 2.6)))

    def resizeEvent(self, ev) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(ev)
        self._fit_axes()


def fill_unused_cells(logv: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """`logv` (rows, columns) with each NaN cell given the value of the nearest row below it in the
    same column that has one (above it for the bottom rows). A BatchNorm switched off for part of the
    window has no gradient there: drawn transparent, each such layer striped the whole image with
    background between the layers that carry the gradient; filled, a switched-off layer reads as part
    of the layer feeding it, and the event markers say when the switch flipped. `missing`:
    `np.isnan(logv)` where the caller has it already."""
    if missing is None:
        missing = np.isnan(logv)
    partial = np.flatnonzero(missing.any(axis=1))
    if len(partial) == 0:
        return logv
    # row by row over the rows with gaps only (a 400-layer image at 30 Hz: whole-image index
    # arithmetic took 7 to 17 ms a frame, this about 1)
    out = logv.copy()
    for i in partial:  # upwards: a gap takes the row below, itself filled already
        if i > 0:
            np.copyto(out[i], out[i - 1], where=missing[i])
    for i in partial[::-1]:  # downwards: what had nothing below takes the row above
        if i + 1 < len(out):
            np.copyto(out[i], out[i + 1], where=np.isnan(out[i]))
    return out  # a column with no value at all stays NaN (transparent)
