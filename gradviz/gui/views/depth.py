"""Depth profile: a per-layer value against layer index, every run overlaid, log y.

The latest step is drawn bold; a fading trail shows where the profile was a few steps ago. The y
axis is fixed by default (auto-scaling would stretch a 1e-9 gradient to fill the chart and hide that
it vanished); the lecturer can change the decades or let it auto-scale. A shaded band marks the
values that count as vanishing.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtGui, QtWidgets

from .base import (
    DecadeAxis,
    KeyedChart,
    SpacedAxis,
    View,
    WrapBar,
    fmt_reading,
    follow_pointer,
    hollow_markers,
    index_names,
    is_norm_layer,
    layer_caption,
    live_curve,
    nearest_drawn,
    positive,
    upto_count,
)

METRICS = {
    # name: (label, y axis label, fixed decades, vanishing threshold or None)
    "grad_norm": ("gradient norm per layer", "‖∂L/∂W‖", (-10, 2), 1e-5),
    "act_grad_norm": ("gradient reaching each block", "‖∂L/∂h‖", (-10, 1), 1e-5),
    # the engine's update is the step its optimiser computed: in the demo's plain twin about 1e-11
    # of the first layers' weights (below float32's resolution, so those weights barely move)
    "update_ratio": ("update / weight per layer", "‖ΔW‖ / ‖W‖", (-12, 1), 1e-6),
    "weight_norm": ("weight norm per layer", "‖W‖", (-1, 2), None),
}
TRAIL = 6  # faded profiles behind the latest one
TRAIL_STRIDE = 4  # rows between two trail profiles
# The trail is drawn as two items per run (near and far half, fading): one setData each with
# NaN breaks between profiles, instead of one item per profile (the frame budget is ~30 ms).
TRAIL_TIERS = ((1, 2, 3), (4, 5, 6))
TIER_ALPHA = (110, 45)
# An exact 0 has no place on a log axis, yet it is the lesson: zeros init gives the hidden layers no
# gradient at all, and a layer the forward skips (a norm switched off) gets no update (update_ratio 0).
# Such layers get a down-pointing triangle on the chart's floor, and the key says what it means.
ZERO_SYMBOL = "t"  # pyqtgraph's downward triangle
ZERO_KEY = "exactly 0"
AUTO_ZERO_STEP = 0.33  # decades between two runs' rows on an auto-scaled axis
# A normalisation layer's two small vectors (scale and shift) get gradients and updates of another
# size than the weight matrix beside it: on one line with them, BatchNorm switched on turned the
# profile into a saw-tooth that hid the trend through depth. The line joins the other layers; norm
# layers are hollow markers of the run's colour off the line, and the key says so.
NORM_KEY = "norm layers"  # short: the key of a 300 px pane in presentation mode fits it


class DepthView(View):
    name = "depth"
    title = "Depth profile"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.metric_name = "grad_norm"
        self.fixed = True
        self.decades = {k: v[2] for k, v in METRICS.items()}

        self.selector = QtWidgets.QComboBox()
        for key, (label, *_rest) in METRICS.items():
            self.selector.addItem(label, key)
        self.selector.currentIndexChanged.connect(self._on_metric)
        self.fix_box = QtWidgets.QCheckBox("fixed y axis from 1e")
        self.fix_box.setChecked(True)
        self.fix_box.setToolTip("Auto-scaling can make a vanishing gradient look healthy: keep the axis fixed")
        self.fix_box.toggled.connect(self._on_axes)
        self.lo_spin = QtWidgets.QSpinBox()
        self.hi_spin = QtWidgets.QSpinBox()
        for s in (self.lo_spin, self.hi_spin):
            s.setRange(-30, 10)
            s.valueChanged.connect(self._on_axes)
        self.to_label = QtWidgets.QLabel("to 1e")
        self.bar = WrapBar([[QtWidgets.QLabel("show"), self.selector, 12], [self.fix_box, self.lo_spin, self.to_label, self.hi_spin]])

        self.widget = KeyedChart(self.title, {"left": DecadeAxis("left"), "bottom": SpacedAxis("bottom", integer=True)})
        self.plot: pg.PlotItem = self.widget.plot
        self.plot.setLabel("bottom", "layer index (input → output)")
        self.plot.setLabel("left", "‖∂L/∂W‖")
        self.plot.setLogMode(x=False, y=True)
        # a plain rectangle in data coordinates: LinearRegionItem is interactive and costs ~4 ms a paint
        self.band = QtWidgets.QGraphicsRectItem()
        self.band.setPen(QtGui.QPen(QtGui.QColor(0, 0, 0, 0)))
        self.band.setZValue(-20)
        self.plot.addItem(self.band, ignoreBounds=True)
        # at the band's top right: the output end, where profiles run high above the band (at
        # the top left, where a deep plain stack's profile enters it, the curves hid the word)
        self.band_label = pg.TextItem("vanishing", anchor=(1, 1))
        self.plot.addItem(self.band_label, ignoreBounds=True)
        # said in the plot when the runs trained but recorded none of the chosen metric (a watch
        # without an optimizer has no update ratio; a model without blocks no block gradient): an
        # empty plot looked broken
        self.nothing = pg.TextItem("", anchor=(0.5, 0.5))
        self.nothing.setVisible(False)
        self.plot.addItem(self.nothing, ignoreBounds=True)

        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.bar)
        lay.addWidget(self.widget, 1)

        self.curves: dict[str, pg.PlotDataItem] = {}
        self.trails: dict[str, list[pg.PlotDataItem]] = {}
        self.zeros: dict[str, pg.PlotDataItem] = {}  # per run: its exact-0 layers on the floor
        self.zero_entry: pg.PlotDataItem | None = None  # key only: what the triangles mean
        self.norm_dots: dict[str, pg.PlotDataItem] = {}  # per run: its norm layers, hollow, unjoined
        self.norm_entry: pg.PlotDataItem | None = None  # key only: what the hollow markers mean
        self._norm_cols: dict[str, tuple[int, np.ndarray]] = {}  # run -> (layer count, norm layers' mask)
        self._zero_x: dict[str, np.ndarray] = {}  # per run: the layers drawn as exact zeros
        self._least = np.inf  # log10 of the least positive value drawn
        self._width = 0  # layers (or blocks) on the x axis
        self._latest: dict[str, tuple[int, np.ndarray]] = {}  # run -> (step, values) drawn bold
        self._sync_spins()
        self._apply_theme(self.theme)
        self.plot.getViewBox().sigResized.connect(self._place_zeros)  # rows are a symbol apart on screen
        # the layer under the pointer, named, with each run's value: the axis gives only indices,
        # and an engineer's own model is known by its layers' names
        self.plot.scene().sigMouseMoved.connect(self.pointer_moved)

    # ---- settings ---------------------------------------------------------------------
    def set_metric(self, metric: str) -> None:
        self.selector.setCurrentIndex(list(METRICS).index(metric))

    def set_fixed(self, fixed: bool, lo: int | None = None, hi: int | None = None) -> None:
        if lo is not None and hi is not None:
            self.decades[self.metric_name] = (lo, hi)
            self._sync_spins()
        self.fix_box.setChecked(fixed)
        self._on_axes()

    def _on_metric(self) -> None:
        self.metric_name = self.selector.currentData()
        label, ylabel, _dec, _thr = METRICS[self.metric_name]
        self.plot.setLabel("left", ylabel)
        self.plot.setLabel("bottom", "block index (input → output)" if self.metric_name == "act_grad_norm" else "layer index (input → output)")
        self._width = 0  # blocks and layers differ in number: the x axis follows the new metric
        self._sync_spins()
        self.widget.apply_theme(self.theme, f"{self.title}: {label}")
        self.invalidate()
        self.redraw()

    def _sync_spins(self) -> None:
        lo, hi = self.decades[self.metric_name]
        for s, v in ((self.lo_spin, lo), (self.hi_spin, hi)):
            s.blockSignals(True)
            s.setValue(v)
            s.blockSignals(False)
        self._apply_axes()

    def _on_axes(self) -> None:
        lo, hi = self.lo_spin.value(), self.hi_spin.value()
        if hi <= lo:
            hi = lo + 1
        self.decades[self.metric_name] = (lo, hi)
        self.fixed = self.fix_box.isChecked()
        self._apply_axes()

    def _apply_axes(self) -> None:
        vb = self.plot.getViewBox()
        if self.fixed:
            lo, hi = self.decades[self.metric_name]
            vb.enableAutoRange(axis=pg.ViewBox.YAxis, enable=False)
            self.plot.setYRange(lo, hi, padding=0)
            if self._width:  # both axes fixed: no bounds to recompute at every paint
                vb.enableAutoRange(axis=pg.ViewBox.XAxis, enable=False)
                self.plot.setXRange(-0.5, self._width - 0.5, padding=0.02)
        else:
            vb.enableAutoRange(axis=pg.ViewBox.XYAxes, enable=True)
        self.lo_spin.setEnabled(self.fixed)
        self.hi_spin.setEnabled(self.fixed)
        thr = METRICS[self.metric_name][3]
        self.band.setVisible(thr is not None)
        self.band_label.setVisible(thr is not None)
        if thr is not None:
            lo = self.decades[self.metric_name][0] if self.fixed else -40
            # inside the plotted area only: exported SVGs are not clipped
            w = self._width
            x0, x1 = (-0.5 - 0.02 * w, w - 0.5 + 0.02 * w) if (self.fixed and w) else (-1e3, 1e3)
            self.band.setRect(x0, lo, x1 - x0, math.log10(thr) - lo)
            self.band_label.setAnchor((1, 1) if w else (0, 1))
            self.band_label.setPos(w - 0.5 if w else 0, math.log10(thr))
        self._place_zeros()  # they sit on the axis's floor, which may have moved

    # ---- drawing ----------------------------------------------------------------------
    def _on_new_recording(self, recording) -> None:
        for items in (
            *self.curves.values(), *self.zeros.values(), *self.norm_dots.values(), *(t for ts in self.trails.values() for t in ts)
        ):
            self.plot.removeItem(items)
        for entry in (self.zero_entry, self.norm_entry):
            if entry is not None:
                self.plot.removeItem(entry)
        self.curves, self.trails, self._latest, self.zeros, self.zero_entry = {}, {}, {}, {}, None
        self.norm_dots, self.norm_entry, self._norm_cols = {}, None, {}
        self._zero_x, self._least = {}, np.inf
        self._width = 0
        self.plot.legend.clear()
        self._fit_legend()

    def _ensure(self, recording, run: str) -> None:
        if run in self.curves:
            return
        color = self.run_color(recording, run)
        trail = [live_curve(self.plot, self.theme.pen(color, self.theme.line_width, a)) for a in TIER_ALPHA]
        self.trails[run] = trail
        self.curves[run] = live_curve(
            self.plot,
            self.theme.pen(color, self.theme.bold_width),
            name=html.escape(run),  # the key is rich text: a run named "<b>" stays text
            symbol="o",
            symbolSize=4 + 2 * self.theme.bold_width,
            symbolBrush=pg.mkBrush(color),
            symbolPen=None,
        )
        self.curves[run].setZValue(10)
        self.norm_dots[run] = live_curve(self.plot, None)
        self._restyle_norm(self.norm_dots[run], color)
        self.norm_dots[run].setZValue(10)
        self.zeros[run] = live_curve(self.plot, None, symbol=ZERO_SYMBOL, symbolBrush=pg.mkBrush(color), symbolPen=None)
        self.zeros[run].setZValue(11)
        self._size_zero_symbols()
        self._fit_legend()

    def _norm_mask(self, recording, run: str, width: int) -> np.ndarray:
        """Which of the run's `width` columns are norm layers (none for blocks)."""
        if self.metric_name == "act_grad_norm":
            return np.zeros(width, bool)
        got = self._norm_cols.get(run)
        if got is None or got[0] != width:
            types = list(recording.info(run).layer_types)[:width]
            mask = np.zeros(width, bool)
            mask[: len(types)] = [is_norm_layer(t) for t in types]
            got = self._norm_cols[run] = (width, mask)
        return got[1]

    def _fit_legend(self, *_args) -> None:
        self.widget.fit_key()

    def _floor(self, least: float) -> float:
        """Where exact zeros are drawn (log10 units): just above the bottom of a fixed axis; on an
        auto-scaled one a decade below the least positive value (`least`, log10), which the axis
        then takes in (from the data, not from the axis: no creeping)."""
        if self.fixed:
            return float(self.decades[self.metric_name][0])
        return (math.floor(least) if np.isfinite(least) else 0.0) - 1.0

    def _zero_size(self) -> float:
        return 8.0 + self.theme.bold_width

    def _place_zeros(self, *_args) -> None:
        """A row per run, a symbol's size apart on screen: two runs' zeros in one layer both show,
        and the rows neither overlap in a short chart nor drift apart in a tall one."""
        size = self._zero_size()
        if self.fixed:
            vb = self.plot.getViewBox()
            lo, hi = self.decades[self.metric_name]
            per_px = (hi - lo) / vb.height() if vb.height() > 0 else 0.02  # decades per pixel
            first, step = 0.7 * size * per_px, 1.1 * size * per_px
        else:  # the axis follows the data here, so its scale cannot place the data: fixed steps
            first, step = 0.0, AUTO_ZERO_STEP
        floor = self._floor(self._least) + first
        for k, (run, xs) in enumerate(self._zero_x.items()):
            self.zeros[run].setData(xs, np.full(len(xs), 10 ** (floor + step * k)))

    def _size_zero_symbols(self) -> None:
        size = self._zero_size()
        for item in (*self.zeros.values(), *([self.zero_entry] if self.zero_entry is not None else [])):
            item.setSymbolSize(size)

    def _draw(self, recording, upto: int | None) -> None:
        self._latest = {}
        top, least = -np.inf, np.inf
        any_norm = False
        zero_x: dict[str, np.ndarray] = {}
        for run in recording.runs:
            self._ensure(recording, run)
            steps, values = recording.metric(run, self.metric_name)
            n = upto_count(steps, upto)
            curve, trail = self.curves[run], self.trails[run]
            if n == 0 or values.ndim != 2:
                curve.setData([], [])
                self.zeros[run].setData([], [])
                self.norm_dots[run].setData([], [])
                for t in trail:
                    t.setData([], [])
                continue
            width = values.shape[1]
            x_all = np.arange(width)
            norm = self._norm_mask(recording, run, width)
            v = positive(values[n - 1])
            ok = np.isfinite(v)
            line = ok & ~norm
            curve.setData(x_all[line], v[line])
            self.norm_dots[run].setData(x_all[ok & norm], v[ok & norm])
            any_norm = any_norm or bool((ok & norm).any())
            zero_x[run] = x_all[values[n - 1] == 0]
            if ok.any():
                top = max(top, float(np.log10(v[ok].max())))
                least = min(least, float(np.log10(v[ok].min())))
            self._latest[run] = (int(steps[n - 1]), values[n - 1])
            for tier, t in zip(TRAIL_TIERS, trail):
                rows = [n - 1 - k * TRAIL_STRIDE for k in tier if n - 1 - k * TRAIL_STRIDE >= 0]
                if not rows:
                    t.setData([], [])
                    continue
                # profiles one after another, each with its NaN gaps dropped and a NaN break after it
                xs, ys = [], []
                for row in rows:
                    v = positive(values[row])
                    ok = np.isfinite(v) & ~norm
                    xs += [x_all[ok], [np.nan]]
                    ys += [v[ok], [np.nan]]
                t.setData(np.concatenate(xs), np.concatenate(ys))
            if width > self._width:
                self._width = width
                self._apply_axes()
        self._zero_x, self._least = zero_x, least
        self._place_zeros()
        self._say_nothing(recording, upto, drawn=bool(self._latest))
        any_zero = any(len(xs) for xs in zero_x.values())
        if any_zero != (self.zero_entry is not None):
            if any_zero:  # after the runs' entries: the key names the runs first
                self.zero_entry = live_curve(self.plot, None, name=ZERO_KEY, symbol=ZERO_SYMBOL, symbolPen=None)
                self._style_zero_entry()
            else:
                self.plot.removeItem(self.zero_entry)
                self.zero_entry = None
            self._fit_legend()
        if any_norm != (self.norm_entry is not None):
            if any_norm:
                self.norm_entry = live_curve(self.plot, None, name=NORM_KEY)
                self._restyle_norm(self.norm_entry, self.theme.foreground)
            else:
                self.plot.removeItem(self.norm_entry)
                self.norm_entry = None
            self._fit_legend()
        lo, hi = self.decades[self.metric_name]
        if self.fixed and np.isfinite(top) and top > hi - 1:
            # a fixed axis may grow to show exploding values (keeping a decade above them, so the
            # markers stay off the frame), never shrink to hide vanishing ones
            self.decades[self.metric_name] = (lo, int(math.ceil(top)) + 1)
            self._sync_spins()

    def _say_nothing(self, recording, upto: int | None, drawn: bool) -> None:
        """Name what is missing, and why where the file says, when the runs trained but recorded
        none of this metric."""
        has_band = METRICS[self.metric_name][3] is not None
        # `drawn` first: the common case costs no look at the recording, at every refresh
        if drawn or not any(upto_count(recording.metric(run, "loss")[0], upto) for run in recording.runs):
            self.nothing.setVisible(False)
            self.band.setVisible(has_band)
            self.band_label.setVisible(has_band)
            return
        self.band.setVisible(False)  # a "vanishing" band over no data said something it could not
        self.band_label.setVisible(False)
        label = METRICS[self.metric_name][0]
        meta = recording.meta or {}
        why = ""
        if not any(recording.layers(run) for run in recording.runs):
            why = "\n(the model has no parameters: no layer to measure)"
        elif self.metric_name in ("update_ratio", "weight_norm") and meta.get("kind") == "watch" and not meta.get("optimizer"):
            # measured around the hand-written update from the second update step on (the first
            # forward pass is where the watch learns the layers)
            first = int(meta.get("every") or 1) * int(meta.get("update_every") or 5)
            why = f"\n(watched without an optimizer: measured from step {first} on)"
        elif self.metric_name == "act_grad_norm" and not any(recording.info(run).blocks for run in recording.runs):
            why = "\n(no blocks in this model: pass blocks= to gradviz.watch)"
        self.nothing.setText(f"no {label} recorded{why}")
        self.nothing.setColor(self.theme.foreground)
        self.nothing.setFont(self.theme.font())
        (x0, x1), (y0, y1) = self.plot.viewRange()
        self.nothing.setPos((x0 + x1) / 2, (y0 + y1) / 2)  # view coordinates: log10 on this axis
        self.nothing.setVisible(True)

    def _on_hover(self, scene_pos) -> None:
        follow_pointer(self, self.plot, scene_pos, self.reading_at)

    def reading_at(self, x: float) -> str:
        """What the hover readout says at x (view coordinates): the nearest index's name and each
        drawn run's latest value there; "" off the profile."""
        i = nearest_drawn(x, [vals for _step, vals in self._latest.values()])
        runs = [r for r, (_step, vals) in self._latest.items() if 0 <= i < len(vals)]
        if not runs:
            return ""
        blocks = self.metric_name == "act_grad_norm"
        symbol = METRICS[self.metric_name][1]
        lines = [layer_caption(self.recording, runs, i, blocks)]
        for run in runs:
            step, vals = self._latest[run]
            lines.append(f"{run}: {symbol} = {fmt_reading(float(vals[i]))} at step {step}")
        return "\n".join(lines)

    # ---- export -----------------------------------------------------------------------
    def csv(self) -> tuple[list[str], list[list]]:
        runs = list(self._latest)
        unit = "block" if self.metric_name == "act_grad_norm" else "layer"
        header = [unit, "name"] + [f"{r} {self.metric_name} @ step {self._latest[r][0]}" for r in runs]
        width = max((len(self._latest[r][1]) for r in runs), default=0)
        names = index_names(self.row_names(runs, blocks=self.metric_name == "act_grad_norm"), width)
        rows = []
        for i in range(width):
            row: list = [i, names[i]]
            for r in runs:
                vals = self._latest[r][1]
                row.append(float(vals[i]) if i < len(vals) else float("nan"))
            rows.append(row)
        return header, rows

    def plot_items(self) -> list:
        return [self.plot]

    def export_widget(self) -> QtWidgets.QWidget:
        return self.widget

    def _apply_theme(self, theme) -> None:
        label = METRICS[self.metric_name][0]
        self.widget.apply_theme(theme, f"{self.title}: {label}")
        band = pg.mkColor(theme.band)
        band.setAlpha(45 if theme.name == "light" else 70)
        self.band.setBrush(pg.mkBrush(band))
        self.band_label.setColor(theme.band)
        self.band_label.setFont(theme.font(0.9))
        self._style_zero_entry()  # and every triangle's size
        if self.norm_entry is not None:
            self._restyle_norm(self.norm_entry, theme.foreground)
        for run, curve in self.curves.items():
            color = self.run_color(self.recording, run) if self.recording else theme.run_color(0)
            self._restyle_norm(self.norm_dots[run], color)
            self.zeros[run].setSymbolBrush(pg.mkBrush(color))
            curve.setPen(theme.pen(color, theme.bold_width))
            curve.setSymbolSize(4 + 2 * theme.bold_width)
            curve.setSymbolBrush(pg.mkBrush(color))
            for a, t in zip(TIER_ALPHA, self.trails[run]):
                t.setPen(theme.pen(color, theme.line_width, a))
        self._fit_legend()  # the key's samples follow the new pens
        self._apply_axes()

    def _restyle_norm(self, item: pg.PlotDataItem, color: str) -> None:
        bold = self.theme.bold_width
        hollow_markers(item, self.theme, color, 6 + 2 * bold, max(1.5, bold / 2))

    def _style_zero_entry(self) -> None:
        """The key's triangle in the foreground colour: it stands for every run's."""
        if self.zero_entry is not None:
            self.zero_entry.setSymbolBrush(pg.mkBrush(self.theme.foreground))
        self._size_zero_symbols()

    def latest_values(self, run: str) -> np.ndarray | None:
        got = self._latest.get(run)
        return None if got is None else got[1]

