"""The view protocol every chart follows, and the pieces the charts share.

A view pulls from a `Recording` when the window's frame timer asks (`refresh`), and redraws only
when the recording's version, the step limit or its own settings changed since the last frame.
pyqtgraph items are made once and fed with `setData` / `setImage`.
"""

from __future__ import annotations

import html
import math
import warnings

import numpy as np
import pyqtgraph as pg
from pyqtgraph.graphicsItems.LegendItem import ItemSample
from pyqtgraph.graphicsItems.ScatterPlotItem import drawSymbol
from PySide6 import QtCore, QtGui, QtWidgets

from ..theme import EVENT_KINDS_MARKED, Theme, make_theme
from ..tooltips import plain_tooltip
from . import symlog

pg.setConfigOptions(antialias=False, useNumba=False)


def upto_count(steps: np.ndarray, upto: int | None) -> int:
    """Rows of a series with step <= upto (all rows when upto is None)."""
    if upto is None:
        return len(steps)
    return int(np.searchsorted(steps, upto, side="right"))


def positive(values: np.ndarray) -> np.ndarray:
    """Values for a log axis: non-positive and non-finite become NaN (a gap, not a warning)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(v) & (v > 0), v, np.nan)


def index_names(names_by_run: dict[str, list[str]], width: int) -> list[str]:
    """A CSV's name column: each index's layer (or block) name; where runs name it differently
    (the depth preset's shallow and deep stacks), their names joined by " / "."""
    out = []
    for i in range(width):
        names = dict.fromkeys(names[i] for names in names_by_run.values() if i < len(names))
        out.append(" / ".join(names))
    return out


def is_norm_layer(layer_type: str) -> bool:
    """BatchNorm*, LayerNorm, GroupNorm, InstanceNorm*, RMSNorm: a module type naming a norm."""
    return "Norm" in layer_type


def layer_caption(recording, runs, i: int, blocks: bool = False) -> str:
    """"layer 4: ln (LayerNorm)" for index `i` of the depth profile's x axis (or a heatmap row), the
    name each run gives it, " / " between differing ones; for a hover readout, so that an index on
    the axis can be told apart without the layer table."""
    unit = "block" if blocks else "layer"
    parts: dict[str, None] = {}
    for run in runs:
        if recording is None or run not in recording.runs:
            continue
        info = recording.info(run)
        names = info.blocks if blocks else info.layers
        if i < len(names):
            kind = "" if blocks or i >= len(info.layer_types) else f" ({info.layer_types[i]})"
            parts[names[i] + kind] = None
    return f"{unit} {i}" + (": " + " / ".join(parts) if parts else "")


def nearest_drawn(x: float, rows: list[np.ndarray]) -> int:
    """The index nearest `x` at which any of `rows` (one per run) has a finite value, else the
    nearest index. Rounding alone put a pointer between two of the demo's Linear layers on the
    switched-off norm between them, "not used" for every run."""
    width = max((len(r) for r in rows), default=0)
    drawn = np.zeros(width, bool)
    for r in rows:
        drawn[: len(r)] |= np.isfinite(np.asarray(r, np.float64))
    at = np.flatnonzero(drawn)
    return int(at[np.argmin(np.abs(at - x))]) if len(at) else int(round(x))


def fmt_reading(x: float, missing: str = "not used", zero: str = "0 (exactly)") -> str:
    """A hover readout's value: 3 significant digits; a layer with no value is `missing` (a
    switched-off norm has no gradient: "not used"), a gradient of exactly 0 says so."""
    if x is None or math.isnan(x):
        return missing
    if x == 0:
        return zero
    return f"{x:.3g}"


def hollow_markers(item: pg.PlotDataItem, theme: Theme, color: str, size: float, width: float) -> None:
    """Circles on `item`'s points with the background inside and `color` around them."""
    item.setSymbol("o")
    item.setSymbolSize(size)
    item.setSymbolBrush(pg.mkBrush(theme.background))
    item.setSymbolPen(theme.pen(color, width))


def show_hover(widget: QtWidgets.QWidget, text: str, item: QtWidgets.QGraphicsItem) -> None:
    """The readout beside the pointer at once, or none when `text` is empty. `item` (the plot's
    view box under the pointer) gets it as its tooltip too: once the pointer rests, the scene
    shows the tooltip of the item under it and hid ours where that item had none (the heatmap's)."""
    tip = plain_tooltip(text)
    item.setToolTip(tip)
    if text:
        QtWidgets.QToolTip.showText(QtGui.QCursor.pos(), tip, widget)
    else:
        QtWidgets.QToolTip.hideText()


def follow_pointer_over(view, plots: dict, scene_pos, reading, idle: QtWidgets.QGraphicsItem) -> None:
    """A view's hover readout over several plots: `reading(key, point)` (the point in that plot's
    view coordinates) for the plot under the pointer, none elsewhere; the other plots' view boxes
    drop their copies, `idle` takes the empty one off every plot. `view.hover_text` keeps what is
    shown."""
    text, under = "", None
    for key, plot in plots.items():
        vb = plot.getViewBox()
        if vb.sceneBoundingRect().contains(scene_pos):
            text, under = reading(key, vb.mapSceneToView(scene_pos)), vb
            break
    if text != view.hover_text:
        view.hover_text = text
        for plot in plots.values():
            if plot.getViewBox() is not under:
                plot.getViewBox().setToolTip("")
        show_hover(view.widget, text, under if under is not None else idle)


def follow_pointer(view, plot: pg.PlotItem, scene_pos, reading) -> None:
    """A one-plot view's hover readout: `reading(x)` (x in view coordinates)."""
    follow_pointer_over(view, {0: plot}, scene_pos, lambda _key, p: reading(p.x()), plot.getViewBox())


def fmt_num(x: float) -> str:
    if x is None or not math.isfinite(x):
        return ""
    return f"{x:.6g}"


class View(QtWidgets.QWidget):
    """Base class: subclasses implement `_draw(recording, upto)` and the export hooks."""

    name = ""
    title = ""
    time_based = False  # charts with a step axis carry event markers

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme: Theme = make_theme()
        self._key: tuple | None = None
        self._settings_rev = 0  # bumped when a selector changes, to force a redraw
        self.draw_count = 0  # how many real redraws happened (tests and the bench read it)
        self.recording = None
        self.drawn_upto: int | None = None  # newest step the current drawing includes
        self.hover_text = ""  # the hover readout shown (views with one set it in `_on_hover`)
        self._pointer: QtCore.QPointF | None = None  # the pointer's last scene position over the chart

    # ---- hover readout -----------------------------------------------------------------
    def pointer_moved(self, scene_pos) -> None:
        """The chart scene's `sigMouseMoved`: the readout follows the pointer."""
        self._pointer = scene_pos
        self._on_hover(scene_pos)

    def _on_hover(self, scene_pos) -> None:
        """Views with a readout say there what is under `scene_pos`."""

    # ---- protocol ---------------------------------------------------------------------
    def refresh(self, recording, upto_step: int | None = None) -> None:
        if recording is None:
            return
        key = (id(recording), recording.version, upto_step, self._settings_rev)
        if key == self._key:
            return
        self._key = key
        new = recording is not self.recording
        self.recording = recording
        if new:
            self._on_new_recording(recording)
        self._draw(recording, upto_step)
        self.drawn_upto = recording.last_step() if upto_step is None else min(upto_step, recording.last_step())
        self.draw_count += 1
        if self.hover_text and self._pointer is not None and self.underMouse():
            self._on_hover(self._pointer)  # a readout under a resting pointer follows the training

    def invalidate(self) -> None:
        """Redraw at the next refresh even if the recording did not change."""
        self._settings_rev += 1

    def redraw(self) -> None:
        if self.recording is not None:
            upto = self._key[2] if self._key else None
            self.invalidate()
            self.refresh(self.recording, upto)

    def row_names(self, runs, blocks: bool = False) -> dict[str, list[str]]:
        """Each run's layer (or block) names, for a CSV's name column: read when it is written,
        not at every 30 Hz redraw."""
        rec = self.recording
        if rec is None:
            return {}
        return {run: list(rec.info(run).blocks if blocks else rec.info(run).layers) for run in runs if run in rec.runs}

    def csv(self) -> tuple[list[str], list[list]]:
        raise NotImplementedError

    def plot_items(self) -> list:
        raise NotImplementedError

    def export_widget(self) -> QtWidgets.QWidget:
        raise NotImplementedError

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._apply_theme(theme)
        self.redraw()

    # ---- for subclasses ----------------------------------------------------------------
    def _on_new_recording(self, recording) -> None:
        pass

    def _draw(self, recording, upto: int | None) -> None:
        raise NotImplementedError

    def _apply_theme(self, theme: Theme) -> None:
        pass

    def run_color(self, recording, run: str) -> str:
        runs = recording.runs
        return self.theme.run_color(runs.index(run) if run in runs else 0)


class WrapBar(QtWidgets.QWidget):
    """A view's row of selectors that puts its groups on rows of their own when one row is too
    narrow for them: squeezed into a projector pane, the depth view's row elided its metric and cut
    "fixed y axis from 1e" down to ":". Each group is a list of widgets (or ints: spacing)."""

    def __init__(self, groups: list[list], parent=None) -> None:
        super().__init__(parent)
        self.box = QtWidgets.QBoxLayout(QtWidgets.QBoxLayout.Direction.LeftToRight, self)
        self.box.setContentsMargins(0, 0, 0, 0)
        self.groups: list[QtWidgets.QWidget] = []
        for items in groups:
            g = QtWidgets.QWidget()
            lay = QtWidgets.QHBoxLayout(g)
            lay.setContentsMargins(0, 0, 0, 0)
            for it in items:
                if isinstance(it, int):
                    lay.addSpacing(it)
                else:
                    lay.addWidget(it)
            g.setSizePolicy(QtWidgets.QSizePolicy.Policy.Maximum, QtWidgets.QSizePolicy.Policy.Fixed)
            self.box.addWidget(g, 0, QtCore.Qt.AlignmentFlag.AlignLeft)
            self.groups.append(g)
        self.box.addStretch(1)
        # never widen the view (the pane decides the width); the height follows the rows
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)

    def one_row_width(self) -> int:
        return sum(g.sizeHint().width() for g in self.groups) + self.box.spacing() * (len(self.groups) - 1)

    def stacked(self) -> bool:
        return self.box.direction() == QtWidgets.QBoxLayout.Direction.TopToBottom

    def refit(self) -> None:
        want = QtWidgets.QBoxLayout.Direction.TopToBottom if self.width() < self.one_row_width() else QtWidgets.QBoxLayout.Direction.LeftToRight
        if self.box.direction() != want:
            self.box.setDirection(want)
            self.updateGeometry()

    def resizeEvent(self, ev) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(ev)
        self.refit()

    def event(self, ev) -> bool:
        # new fonts (presentation mode) or new items (a longer layer name) change the groups' widths
        done = super().event(ev)
        if ev.type() in (QtCore.QEvent.Type.LayoutRequest, QtCore.QEvent.Type.FontChange):
            self.refit()  # a change of direction asks for one more layout, which changes nothing
        return done


# ---- plots -------------------------------------------------------------------------------
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def decade_label(log10_value: float) -> str:
    """0.01 to 100 written out, other decades as 10ⁿ: one narrow style down the whole axis
    (pyqtgraph writes 1e-4 as "0.0001", the widest label on a gradient axis)."""
    n = int(round(log10_value))
    if -2 <= n <= 2:
        return f"{10.0 ** n:g}"
    return "10" + str(n).translate(_SUPERSCRIPT)


def nice_step(x: float) -> float:
    """The smallest 1-2-5 step (1, 2, 5, 10, 20, ...) times a power of ten that is >= x > 0."""
    base = 10.0 ** math.floor(math.log10(x))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= x * (1 - 1e-9))


class DecadeAxis(pg.AxisItem):
    """A log axis that labels only the decades once two or more are on screen: pyqtgraph also
    labels the minor ticks (2, 3, ..., 9) until the axis has three decades, which crowds them into
    an unreadable column on a projector. The minor ticks stay, unlabelled. With fewer than two
    decades visible the minor labels stay too, or the axis could be left with a single "1". With
    fewer than two log ticks on screen at all (a language model's loss between 4.55 and 4.8 has
    none: 4 and 5 are outside) the ticks are round values, 1-2-5 spaced, so the axis has numbers."""

    _fine: float | None = None  # the linear spacing of the fallback ticks, when they are used

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # pyqtgraph scales a log axis whose values are all below 1 to milli as a linear one: a loss
        # between 0.6 and 0.8 read "7·10²" and "8·10²" on an axis titled "loss (x0.001)"
        self.enableAutoSIPrefix(False)

    def logTickValues(self, minVal, maxVal, size, stdTicks):  # noqa: N802, N803 - pyqtgraph API
        ticks = super().logTickValues(minVal, maxVal, size, stdTicks)
        self._fine = None
        if not maxVal > minVal or not math.isfinite(maxVal - minVal):
            return ticks
        inside = [v for _, vals in ticks for v in vals if minVal <= v <= maxVal]
        span = maxVal - minVal
        # under a decade across a decade's boundary (a GAN's losses between 0.55 and 1.6) one side
        # can have no tick at all: 0.6 ... 0.9 and 1 labelled, nothing above 1
        bare_end = bool(inside) and span < 1 and max(min(inside) - minVal, maxVal - max(inside)) > span / 3
        if len(inside) >= 2 and not bare_end:
            return ticks
        lo, hi = 10.0**minVal, 10.0**maxVal
        step = nice_step((hi - lo) / 4)
        values = np.arange(math.ceil(lo / step) * step, hi + step * 1e-6, step)
        while len(values) < 3:  # 0.5 to 1.7 in steps of 0.5 left two labels: the next finer 1-2-5 step
            base = 10.0 ** math.floor(math.log10(step) + 1e-9)
            step = {1: 0.5, 2: 1.0, 5: 2.0}.get(round(step / base), 0.5) * base
            values = np.arange(math.ceil(lo / step) * step, hi + step * 1e-6, step)
        self._fine = step
        return [(None, [float(np.log10(v)) for v in values if v > 0])]

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph API
        if self._fine is not None:
            decimals = max(0, -math.floor(math.log10(self._fine) + 1e-9))
            return [f"{10.0**v:.{decimals}f}" for v in values]
        strings = [decade_label(v) if abs(v - round(v)) < 1e-9 else s
                   for v, s in zip(values, super().logTickStrings(values, scale, spacing), strict=True)]
        lo, hi = sorted(self.range)
        if spacing is None and math.floor(hi) - math.ceil(lo) >= 1:  # the minor level, 2+ decades on screen
            # this level also carries the decades themselves when pyqtgraph found no major level
            return [s if abs(v - round(v)) < 1e-9 else "" for v, s in zip(values, strings, strict=True)]
        return strings


class SpacedAxis(pg.AxisItem):
    """An axis whose labelled ticks leave room for their text: pyqtgraph picks about log(pixels)
    ticks whatever the font, so presentation fonts ran "0 200400600" together, and a narrow axis
    could keep only its "0". Here the labelled spacing is the smallest 1-2-5 step that leaves half a
    label between labels (and at most about eight of them); minor ticks in between stay unlabelled.
    A label's extent along the axis is its width on a horizontal axis and its line height on a
    vertical one (a short count axis stacked "10 8 6 4 2 0" into one column). `integer`: the axis
    counts something (layers, steps), so no tick falls between two whole numbers (a three-layer
    profile had ticks at 0.5 and 1.5)."""

    _labelled: float | None = None  # the labelled spacing, else None (pyqtgraph's own levels)
    _label_step: float | None = None  # what the labels' decimals follow, when not the spacing (0.5 at spacing 1)
    _digit_px: float | None = None  # width of a digit in the tick font, measured when it is set
    _line_px: float = 0.0  # height of a line of it

    def __init__(self, *args, integer: bool = False, **kw) -> None:
        super().__init__(*args, **kw)
        self.integer = integer
        if integer:  # layer indices and steps: a one-layer range read "layer index (x0.001)"
            self.enableAutoSIPrefix(False)

    def setTickFont(self, font) -> None:  # noqa: N802 - pyqtgraph API
        super().setTickFont(font)
        metrics = QtGui.QFontMetricsF(font or QtGui.QFont())
        self._digit_px = metrics.horizontalAdvance("0")
        self._line_px = metrics.height()

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802 - pyqtgraph API
        levels = self._spacing(minVal, maxVal, size)
        if self.integer and levels:
            whole = [(sp, off) for sp, off in levels if sp >= 1 and abs(sp - round(sp)) < 1e-9]
            if not whole:
                whole = [(1.0, 0)]
            if self._labelled is not None and self._labelled < 1:
                self._labelled = whole[0][0]
            levels = whole
        return levels

    def _spacing(self, minVal, maxVal, size):  # noqa: N803 - pyqtgraph's names
        levels = super().tickSpacing(minVal, maxVal, size)
        self._labelled = self._label_step = None
        span = maxVal - minVal
        if not levels or span <= 0 or size <= 0 or self.logMode or self._tickSpacing is not None:
            return levels
        if self._digit_px is None:
            self.setTickFont(self.style.get("tickFont"))
        whole = len(str(int(max(abs(minVal), abs(maxVal)))))
        sign = 1 if minVal < 0 and maxVal > 0 else 0  # then most labels carry a minus or none at all

        vertical = self.orientation in ("left", "right")

        def need(spacing: float, gap: float = 1.5) -> float:
            # a label is as long as its whole part, its sign and the decimals the spacing needs
            # ("-0.15" is five characters, not one); `gap`: labels from one tick to the next
            if vertical:
                return max(self._line_px * gap, size / 8)
            decimals = max(0, -math.floor(math.log10(spacing) + 1e-9))
            chars = whole + sign + (decimals + 1 if decimals else 0)
            return max(self._digit_px * chars * gap, size / 8)

        def labels(spacing: float, offset: float = 0.0) -> int:
            """How many labels at `offset + k * spacing` pyqtgraph will draw: on a horizontal axis
            it hides any whose text would stick out past either end (a 195 px step axis over
            0..2092 ticked 0, 1000 and 2000 but showed only "1000")."""
            first = math.ceil((minVal - offset) / spacing - 1e-9)
            last = math.floor((maxVal - offset) / spacing + 1e-9)
            if vertical:
                return max(0, last - first + 1)
            decimals = max(0, -math.floor(math.log10(offset or spacing) + 1e-9))
            shown = 0
            for k in range(first, last + 1):
                v = offset + k * spacing
                half = self._digit_px * len(f"{v:.{decimals}f}") / 2
                at = (v - minVal) / span * size
                shown += at - half >= 0 and at + half <= size
            return shown

        shortest = self._line_px if vertical else self._digit_px * whole
        base = 10 ** math.floor(math.log10(span * max(shortest * 1.5, size / 8) / size))
        steps = [m * base * 10**k for k in range(5) for m in (1, 2, 5)]
        for i, spacing in enumerate(steps):
            if size * spacing / span >= need(spacing):
                # one lone label says nothing about the scale: take the finer step if its labels
                # still clear each other (a tenth of a label between them instead of half)
                if labels(spacing) < 2 and i > 0:
                    finer = steps[i - 1]
                    if labels(spacing, spacing / 2) >= 2 and i % 3 != 2:
                        # halfway labels (500 and 1500 on a short 0..2092 step axis, -5 and 5 on a
                        # short -8..8 strip) where the round ones sit at the ends or alone; the
                        # round values keep unlabelled ticks. Not for a 5-step: 2.5 is not round
                        self._labelled, self._label_step = spacing, spacing / 2
                        return [(spacing, spacing / 2), (spacing / 2, 0)]
                    if labels(finer) >= 2 and size * finer / span >= need(finer, gap=1.1):
                        spacing = finer
                        i -= 1
                    elif vertical and minVal < 0 < maxVal:
                        # a short strip around 0 (-0.45..0.45 in 50 px): "-0.4" and "0.4" fit
                        # where "-0.5 0 0.5" do not; 0 keeps an unlabelled tick
                        v = self._one_digit_floor(min(-minVal, maxVal))
                        if v > 0 and size * 2 * v / span >= need(2 * v, gap=1.1):
                            self._labelled, self._label_step = 2 * v, v
                            return [(2 * v, v), (v, 0)]
                if not labels(spacing):
                    # none drawn at all (an 85 px step axis of six runs' heatmap: "0" and "1000"
                    # both stuck out past its ends): the coarsest finer step with one that fits
                    finer_steps = [steps[j] for j in range(i - 1, -1, -1)] + [steps[0] / d for d in (2, 5, 10)]
                    spacing = next((sp for sp in finer_steps if labels(sp) == 1 or (labels(sp) > 1 and size * sp / span >= need(sp, gap=1.1))), spacing)
                self._labelled = spacing
                two = round(spacing / 10 ** math.floor(math.log10(spacing) + 1e-9)) == 2
                return [(spacing, 0), (spacing / (2 if two else 5), 0)]  # a 2-step halves
        return levels

    @staticmethod
    def _one_digit_floor(x: float) -> float:
        """x rounded down to one significant digit (0.47 -> 0.4, 8.3 -> 8)."""
        if not x > 0 or not math.isfinite(x):
            return 0.0
        unit = 10.0 ** math.floor(math.log10(x))
        return math.floor(x / unit + 1e-9) * unit

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph API
        strings = super().tickStrings(values, scale, spacing)
        if self._label_step is not None and spacing == self._labelled:  # "-0.5", not "-0", at spacing 1
            return super().tickStrings(values, scale, self._label_step)
        if self._labelled is not None and spacing < self._labelled:
            return [""] * len(strings)
        return strings


class SymlogAxis(SpacedAxis):
    """A SpacedAxis that, while `c` is set, labels data drawn through `symlog.forward(v, c)` with
    the values they stand for: 0 and signed powers of ten, a line and a half apart."""

    c: float | None = None

    def set_threshold(self, c: float | None) -> None:
        if c != self.c:
            self.c = c
            self.picture = None
            self.update()

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803 - pyqtgraph API
        if self.c is None:
            return super().tickValues(minVal, maxVal, size)
        if self._digit_px is None:
            self.setTickFont(self.style.get("tickFont"))
        lo, hi = min(minVal, maxVal), max(minVal, maxVal)
        gap = 1.5 * self._line_px if self.orientation in ("left", "right") else 5 * self._digit_px
        return [(1.0, symlog.ticks(self.c, lo, hi, size, gap))]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph API
        if self.c is None:
            return super().tickStrings(values, scale, spacing)
        return [symlog.decade_label(float(v)) for v in symlog.inverse(np.asarray(values, np.float64), self.c)]


class LineSample(ItemSample):
    """A legend sample long enough to show a line's dash pattern: pyqtgraph draws 20 px, which is
    less than one dash of a thick presentation pen, so "eval (dashed)" looked solid. The length
    follows the pen's width (set again by `style_plot` when the theme changes)."""

    def __init__(self, item) -> None:
        super().__init__(item)
        self.fit()

    def fit(self) -> None:
        pen = pg.mkPen(self.item.opts.get("pen")) if isinstance(self.item, pg.PlotDataItem) else None
        width = pen.widthF() if pen is not None else 1.0
        solid = pen is not None and pen.style() == QtCore.Qt.PenStyle.SolidLine
        self.setFixedWidth(sample_length(width, solid))

    def boundingRect(self):  # noqa: N802 - Qt API
        return QtCore.QRectF(0, 0, self.width(), 20)

    def paint(self, p, *args) -> None:
        item = self.item
        if not isinstance(item, pg.PlotDataItem) or not item.isVisible():
            return super().paint(p, *args)
        p.setPen(pg.mkPen(item.opts["pen"]))
        p.drawLine(QtCore.QPointF(2, 11), QtCore.QPointF(self.width() - 2, 11))
        symbol = item.opts.get("symbol")
        if symbol is not None:  # the marker in the middle of the line, as on the curve
            # the item's own options: its scatter keeps the old ones while it has no data (the
            # depth key's "exactly 0" entry drew pyqtgraph's default small grey triangle)
            o = item.opts
            p.translate(self.width() / 2, 11)
            drawSymbol(p, symbol, o["symbolSize"], pg.mkPen(o["symbolPen"]), pg.mkBrush(o["symbolBrush"]))
        return None


def sample_length(pen_width: float, solid: bool = False) -> float:
    """Pixels for a legend line: about three periods of Qt's dash pattern (4 on, 2 off, in pen
    widths). A solid line needs no period to be recognised: 36 px, which lets a four-run key keep
    two columns in a 400 px pane."""
    if solid:
        return 36.0
    return float(min(80, max(36, round(18 * max(pen_width, 1.0)))))


def add_legend(plot: pg.PlotItem) -> pg.LegendItem:
    return plot.addLegend(offset=(-10, 10), sampleType=LineSample)


LEGEND_MARGIN = 10  # px between the legend and the view's edge


class FitLabel(pg.LabelItem):
    """A title that fits the width its layout gives it. pyqtgraph makes a label's text width its
    minimum width, so a long title in presentation fonts widened its whole layout past a narrow pane,
    which then cut off the right of the chart (the heatmap's colour bar, the latest histogram).
    Here only the height is a minimum: a view's title (`wrap`) breaks onto more lines, a plot's title
    (in pyqtgraph's fixed-height title row) is shortened with an ellipsis. `text` stays the full
    title; `item.toPlainText()` is what is drawn."""

    # shorter wordings of a title, tried in order before an ellipsis: "dead fraction (ReLU…" in a
    # narrow pane said less than "dead fraction"
    shorter: dict[str, tuple[str, ...]] = {}

    def __init__(self, text: str = " ", wrap: bool = True, **args) -> None:
        self.wrap = wrap
        self._showing = False  # True while the label sets an elided text of its own
        super().__init__(text, **args)
        option = QtGui.QTextOption(QtCore.Qt.AlignmentFlag.AlignHCenter)
        option.setWrapMode(QtGui.QTextOption.WrapMode.WordWrap)
        self.item.document().setDefaultTextOption(option)

    def setText(self, text, **args) -> None:  # noqa: N802 - pyqtgraph API
        super().setText(text, **args)
        if not self._showing:
            self.full_text = text
            self._fit()

    def updateMin(self) -> None:  # noqa: N802 - pyqtgraph API
        h = self.itemRect().height()
        self.setMinimumWidth(0)
        self.setMinimumHeight(h)
        self._sizeHint = {
            QtCore.Qt.SizeHint.MinimumSize: (0, h),
            QtCore.Qt.SizeHint.PreferredSize: (0, h),
            QtCore.Qt.SizeHint.MaximumSize: (-1, -1),
            QtCore.Qt.SizeHint.MinimumDescent: (0, 0),
        }
        self.updateGeometry()

    def resizeEvent(self, ev) -> None:  # noqa: N802 - Qt API
        if not self._showing and hasattr(self, "full_text"):
            self._fit()
        super().resizeEvent(ev)

    def _natural_width(self) -> float:
        self.item.setTextWidth(-1)
        return self.item.document().idealWidth()

    def _fit(self) -> None:
        room = self.rect().width()
        if self.wrap:
            if room > 0 and self._natural_width() > room:
                self.item.setTextWidth(room)
            return
        self._show(self.full_text)
        if room <= 0 or self._natural_width() <= room:
            return
        for short in self.shorter.get(self.full_text, ()):  # a shorter wording before an ellipsis
            self._show(short)
            if self._natural_width() <= room:
                return
        lo, hi = 0, len(self.full_text)  # the longest prefix that fits with its ellipsis
        while lo < hi:
            mid = (lo + hi + 1) // 2
            self._show(self.full_text[:mid].rstrip() + "…")
            if self._natural_width() <= room:
                lo = mid
            else:
                hi = mid - 1
        self._show(self.full_text[:lo].rstrip() + "…")

    def _show(self, text: str) -> None:
        """Draw `text` (the title or its elided form); `self.text` stays the full title."""
        self._showing = True
        try:
            pg.LabelItem.setText(self, text)
        finally:
            self._showing = False
            self.text = self.full_text


def add_title(layout: pg.GraphicsLayout, text: str, **where) -> FitLabel:
    """A view's title row in a `GraphicsLayout` (`where`: row, col, colspan) that wraps to fit."""
    label = FitLabel(text)
    layout.addItem(label, **where)
    return label


class KeyedChart(pg.GraphicsLayoutWidget):
    """A view's chart with its title and its key in rows of their own above the plot. A key inside
    the plot covered the curves' top right (with four runs, a third of the loss curves and the
    depth profiles' output ends), and in a narrow pane it was wider than the plot and lost its line
    samples off the left edge. The title wraps instead of being cut short; the key takes as many
    columns as the pane's width holds (fewer rows leave the plot more height)."""

    def __init__(self, title: str, axis_items: dict) -> None:
        super().__init__()
        # the whole chart each frame: with Qt's minimal updates a tick label or key sample drawn
        # outside its item's bounds stayed on an X screen after it moved (a stray "1" beside
        # "step", a key line without its marker) while `grab()` showed the chart right
        self.setViewportUpdateMode(QtWidgets.QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        ci = self.ci
        self.title_label = add_title(ci, title, row=0, col=0)
        self.legend = pg.LegendItem(sampleType=LineSample)
        ci.addItem(self.legend, row=1, col=0)
        # its own size, centred: stretched to the row, its entries drifted to the far corners
        policy = QtWidgets.QSizePolicy.Policy.Maximum
        self.legend.setSizePolicy(policy, QtWidgets.QSizePolicy.Policy.Fixed)
        ci.layout.setAlignment(self.legend, QtCore.Qt.AlignmentFlag.AlignHCenter)
        self.plot: pg.PlotItem = ci.addPlot(row=2, col=0, axisItems=axis_items)
        self.plot.setMenuEnabled(False)
        self.plot.legend = self.legend  # curves added with a name join it (PlotItem.addItem)
        self.plot.getViewBox().sigResized.connect(self.fit_key)  # the pane's width changed
        # entry names with a shorter wording, used when the full ones leave the key a single column
        # (the loss key of four runs beside the depth profile stacked one name per line)
        self.shorter: dict[str, str] = {}

    def resizeEvent(self, ev) -> None:  # noqa: N802 - Qt API
        # the key for the pane's new width first, then the chart laid out in it: narrowed from
        # one key row at 1400 px to 300 px (H to hide the controls, H again), the key's row kept
        # the chart 490 px wide, its plot never resized to refit the key, and the chart ran 190 px
        # past the pane's edge
        if hasattr(self, "legend"):  # pyqtgraph resizes while it builds the widget
            self.fit_key()
        super().resizeEvent(ev)

    def fit_key(self, *_args) -> None:
        """Columns for the pane's width; call again after the curves' pens change: a sample is
        not told when its curve changes, and under X the key kept a stale thin line without its
        marker for one run of three until something else repainted that spot."""
        lg = self.legend
        lg.setVisible(bool(lg.items))  # an empty key is a stray gap (a session that never started)
        if not lg.items:
            return
        for sample, _label in lg.items:
            if isinstance(sample, LineSample):
                sample.fit()
            sample.update()
        room = self.width() - 2 * LEGEND_MARGIN
        full = {label: getattr(label, "full_name", label.text) for _sample, label in lg.items}
        for label, name in full.items():
            label.full_name = name
        # the full wording; the shorter one where that alone leaves the key one column; the full
        # one again where neither gets past one column
        briefer = len(full) > 1 and any(name in self.shorter for name in full.values())
        for brief in (False, True, False) if briefer else (False,):
            for label, name in full.items():
                text = self.shorter.get(name, name) if brief else name
                if label.text != text:
                    label.setText(text)
            if self._columns(room) > 1:
                break
        lg.layout.activate()  # place the samples now, not at the next layout request

    def _columns(self, room: float) -> int:
        """The most columns (down to 1) in which the key fits `room`; the key is left laid out so."""
        lg = self.legend
        cols = len(lg.items)
        right = QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
        while True:
            lg.setColumnCount(cols)
            for sample, _label in lg.items:
                # next to its name: a column as wide as the dashed "eval" sample left the solid
                # ones 40 px from their names in a one-column key
                lg.layout.setAlignment(sample, right)
            lg.layout.invalidate()
            if cols == 1 or lg.layout.preferredWidth() <= room:
                return cols
            cols -= 1

    def apply_theme(self, theme: Theme, title: str) -> None:
        style_widget(self, theme)
        style_plot(self.plot, theme, "")
        self.plot.setTitle(None)  # the title row says it
        self.title_label.setText(title, size=f"{int(theme.font_pt * 1.3)}pt", color=theme.foreground)
        self.legend.setPen(None)  # a row of the chart, not a box over the data
        self.legend.setBrush(None)
        self.fit_key()  # the fonts changed its width


def fit_plot_title(plot: pg.PlotItem) -> None:
    """Swap a plot's title for a `FitLabel` that is elided rather than widening the plot."""
    old = plot.titleLabel
    label = FitLabel(old.text, wrap=False, size="11pt")
    label.setParentItem(plot)
    label.setVisible(old.isVisible())
    label.setMaximumHeight(old.maximumHeight())
    plot.layout.removeItem(old)
    old.setParentItem(None)
    if old.scene() is not None:
        old.scene().removeItem(old)
    plot.layout.addItem(label, 0, 1)
    plot.titleLabel = label


def live_curve(plot: pg.PlotItem, pen, name: str | None = None, **kw) -> pg.PlotDataItem:
    """A curve made once and fed with setData: no antialiasing, clipped to view, downsampled."""
    item = pg.PlotDataItem(
        pen=pen,
        name=name,
        antialias=False,
        clipToView=True,
        autoDownsample=True,
        downsampleMethod="peak",
        connect="finite",
        skipFiniteCheck=False,
        **kw,
    )
    plot.addItem(item)
    return item


def style_plot(plot: pg.PlotItem, theme: Theme, title: str | None = None) -> None:
    """Axis pens, fonts, title and legend for a theme."""
    fg = theme.foreground
    pt = theme.font_pt
    for side in ("left", "bottom", "right", "top"):
        ax = plot.getAxis(side)
        ax.setPen(pg.mkPen(fg, width=1.5 if theme.presentation else 1))
        ax.setTextPen(pg.mkPen(fg))
        ax.setTickFont(theme.font())
        label = ax.labelText
        if label:
            ax.setLabel(label, units=ax.labelUnits or None, **{"font-size": f"{pt}pt", "color": fg})
            ax.resizeEvent()  # centre the label again: its size changed
    # room for big tick labels in presentation mode
    plot.getAxis("left").setWidth(int(pt * 5))
    plot.getAxis("bottom").setHeight(int(pt * 3.6))
    plot.showGrid(x=False, y=False)
    text = title if title is not None else plot.titleLabel.text
    plot.setTitle(text, size=f"{int(pt * 1.3)}pt", color=fg)
    legend = plot.legend
    if legend is not None:
        legend.setLabelTextColor(fg)
        legend.setLabelTextSize(f"{pt}pt")
        bg = pg.mkColor(theme.background)
        bg.setAlpha(200)
        legend.setBrush(pg.mkBrush(bg))
        legend.setPen(pg.mkPen(fg, width=0.5))
        for sample, label in legend.items:
            label.setText(label.text, color=fg, size=f"{pt}pt")
            if isinstance(sample, LineSample):
                sample.fit()
        legend.updateSize()


def run_key(runs: list[tuple[str, str]], mark: str, gap: str = "&nbsp;&nbsp;") -> str:
    """Rich text naming each run (name, colour) in its colour after `mark` (a line or a dot, as its
    curve is drawn): a key for where a legend would cover the data."""
    return gap.join(f'<span style="color:{color}">{mark}&nbsp;{html.escape(run)}</span>' for run, color in runs)


def set_axis_label(ax: pg.AxisItem, text: str, theme: Theme, color: str | None = None) -> None:
    """An axis title in the theme's font (and `color`, else the foreground), centred again:
    pyqtgraph centres a label only when the axis resizes, so a new, longer text started where the
    old short one did and ran off the pane (the latest histogram's key)."""
    ax.setLabel(text, **{"font-size": f"{theme.font_pt}pt", "color": color or theme.foreground})
    ax.resizeEvent()


def run_title_fits(plot: pg.PlotItem, run: str, theme: Theme) -> bool:
    """Whether `run` fits as a rotated axis title beside `plot` (the text item adds 4 px at each end)."""
    height = plot.getViewBox().height()
    return height <= 0 or QtGui.QFontMetricsF(theme.font()).horizontalAdvance(run) + 8 <= height


def fit_run_titles(plots: dict[str, pg.PlotItem], theme: Theme, colors: dict[str, str]) -> None:
    """Stacked run plots' names: rotated axis titles where every one fits its plot, else tags
    above the plots' top-left corners, all of them alike (six runs left 25 px strips, and "d16-res"
    ran into the "d8-bn" below it; mixed, two of four looked unnamed)."""
    rotated = all(run_title_fits(p, run, theme) for run, p in plots.items())
    for run, plot in plots.items():
        _show_run_title(plot, run, theme, colors[run], rotated)


def _show_run_title(plot: pg.PlotItem, run: str, theme: Theme, color: str, rotated: bool) -> None:
    axis, vb = plot.getAxis("left"), plot.getViewBox()
    text = html.escape(run) if rotated else " "  # an axis title is rich text
    if axis.labelText != text:
        set_axis_label(axis, text, theme, color)
    tag = getattr(plot, "gradviz_run_tag", None)
    if tag is None:
        tag = pg.TextItem(anchor=(0, 1))  # just above the strip, in the gap between two strips
        # on the plot, not in its view: in the plot's pixels whatever the data range, and not cut
        # off by the view where a strip is lower than a line
        tag.setParentItem(plot)
        tag.setZValue(60)
        plot.gradviz_run_tag = tag
    if not rotated:
        look = (run, color, theme)  # restyled only when these change, not at every refresh
        if getattr(tag, "gradviz_look", None) != look:
            back = QtGui.QColor(theme.background)
            back.setAlpha(200)
            tag.fill = pg.mkBrush(back)
            tag.setFont(theme.font(0.85))
            tag.setText(run, color=color)
            tag.gradviz_look = look
        # its box ends a pixel above the strip: lower, its fill washed a pale bar over the image's top
        tag.setPos(vb.pos() + QtCore.QPointF(0, -1))
    tag.setVisible(not rotated)


def share_step_axis(plots: list[pg.PlotItem], theme: Theme) -> None:
    """Plots stacked one per run over the same steps: only the last one keeps its step labels and
    axis title. Four runs in a projector pane repeated "2000 4000 / step" under each and left their
    images a few pixels high. Call after `style_plot`, which sizes every axis for its labels."""
    for k, plot in enumerate(plots):
        ax = plot.getAxis("bottom")
        last = k == len(plots) - 1
        ax.setStyle(showValues=last)
        if last:
            set_axis_label(ax, "step", theme)
        else:
            ax.labelText = ""  # so `style_plot` does not bring the title back
            ax.showLabel(False)
            ax.setHeight(6)


def balance_rows(plots: list[pg.PlotItem]) -> bool:
    """Stacked plots' data areas the same height, from their laid-out sizes: with equal rows the
    plot with the step labels had the shorter image (in the demo's heatmap the residual twin's
    layers were drawn four fifths as tall as the plain twin's, and got other row labels). Each
    plot's preferred height becomes the common data height plus its own axes; the rows' total is
    unchanged, so the layout gives exactly those. Call after each layout change (a resize, a new
    theme: `RowBalancer` does); True when it changed anything (the layout then runs again)."""
    outer = [p.geometry().height() for p in plots]
    if len(plots) < 2 or min(outer) <= 0:
        return False
    chrome = [h - p.getViewBox().height() for h, p in zip(outer, plots, strict=True)]
    data = (sum(outer) - sum(chrome)) / len(plots)
    changed = False
    for p, c in zip(plots, chrome, strict=True):
        want = max(1.0, data + c)
        if abs(p.preferredHeight() - want) > 0.5:
            p.setPreferredHeight(want)
            changed = True
    return changed


class RowBalancer(QtCore.QObject):
    """Keeps stacked plots' data areas equally tall (`balance_rows`) after every layout change:
    a view box's resize (a new window size, font or run) asks for one pass, run once the layout
    has settled. `on_settled`, when given, is called when a pass finds nothing to change: for a
    view whose drawing depends on its plots' sizes (the heatmap's row labels), which a paused run
    does not redraw by itself."""

    def __init__(self, parent: QtCore.QObject, on_settled=None) -> None:
        super().__init__(parent)
        self.on_settled = on_settled
        self.plots: list[pg.PlotItem] = []
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.balance)

    def share(self, layout: pg.GraphicsLayout, rows: list[tuple[int, pg.PlotItem]]) -> None:
        """The plots stacked in `layout` (rows as (index, plot)) start from equal shares of its
        height (by preferred sizes, a plot with step labels was squeezed beside one without), and
        are kept evened out from then on."""
        for row, plot in rows:
            layout.layout.setRowStretchFactor(row, 1)
            plot.setPreferredHeight(1)  # all the height is shared out by the stretch factors
        self._track([plot for _, plot in rows])

    def _track(self, plots: list[pg.PlotItem]) -> None:
        for p in self.plots:
            try:
                p.getViewBox().sigResized.disconnect(self._timer.start)
            except (RuntimeError, TypeError):  # already gone with its plot
                pass
        self.plots = list(plots)
        for p in self.plots:
            p.getViewBox().sigResized.connect(self._timer.start)
        self._timer.start()

    def settle(self, lay_out) -> None:
        """The passes at once, for a painter that cannot wait for the timer (an export);
        `lay_out()` applies the new preferred heights."""
        for _ in range(4):
            lay_out()
            if not balance_rows(self.plots):
                break
        else:
            lay_out()
        if self.on_settled is not None:
            self.on_settled()

    def balance(self) -> bool:
        changed = balance_rows(self.plots)
        if changed:  # one more pass once laid out: the sizes may not move, and then no resize says so
            self._timer.start()
        elif self.on_settled is not None:
            self.on_settled()
        return changed


def pool_rows(image: np.ndarray, height_px: float, how: str = "max") -> tuple[np.ndarray, float]:
    """An image's rows -> at most one per pixel of the plot's height: drawn smaller than its rows,
    an image loses whole rows to Qt's scaling (the init preset's zeros run, all its weights in one
    of 64 histogram bins, showed a blank image; a 402-layer heatmap in 200 px skipped layers).
    `how`: "max" (a histogram: where any mass is) or "mean" (a heatmap: the layers' typical value;
    NaN cells are skipped). Returns the pooled image and the height it spans in units of the
    original rows (more than 1 when the last group is padded)."""
    rows = image.shape[0]
    k = int(np.ceil(rows / height_px)) if height_px > 0 else 1
    if k <= 1:
        return image, 1.0
    pad = (-rows) % k
    fill = 0.0 if how == "max" else np.nan
    if pad:
        image = np.vstack([image, np.full((pad, image.shape[1]), fill, image.dtype)])
    groups = image.reshape(-1, k, image.shape[1])
    if how == "max":
        pooled = groups.max(axis=1)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a group of NaN cells stays NaN
            pooled = np.nanmean(groups, axis=1).astype(image.dtype)
    return pooled, (rows + pad) / rows


def style_widget(widget: pg.GraphicsView, theme: Theme) -> None:
    widget.setBackground(theme.background)


class Markers:
    """Labelled vertical lines at event steps on one plot; rebuilt only when the events change."""

    def __init__(self, plot: pg.PlotItem) -> None:
        self.plot = plot
        self.lines: list[pg.InfiniteLine] = []
        self._sig: tuple | None = None
        self.theme = make_theme()
        vb = plot.getViewBox()
        vb.sigResized.connect(self.fit_labels)  # bound methods: Qt drops them with the view
        vb.sigXRangeChanged.connect(self.fit_labels)

    def count(self) -> int:
        return len(self.lines)

    def update(self, events, upto: int | None = None, run: str | None = None, force: bool = False) -> None:
        chosen = [
            e
            for e in events
            if e.kind in EVENT_KINDS_MARKED
            and (upto is None or e.step <= upto)
            and (run is None or e.run in ("", run))
        ]
        sig = tuple(chosen)
        if sig == self._sig and not force:
            return
        self._sig = sig
        for line in self.lines:
            self.plot.removeItem(line)
        self.lines = []
        t = self.theme
        for e in chosen:
            label = marker_label(e)
            color = t.event_color(e.kind)
            line = pg.InfiniteLine(
                pos=e.step,
                angle=90,
                movable=False,
                pen=t.pen(color, t.marker_width, alpha=200, dash=e.kind == "pause"),
                label=label,
                # the text's far end at the top, so it reads downward inside the plot: anchored by
                # its start there, it ran up past the top and showed "plai" of "plain: residual on"
                labelOpts={"position": 0.98, "color": color, "rotateAxis": (1, 0), "anchors": [(1, 0), (1, 0)]},
            )
            line.label.setFont(t.font(0.85))
            line.setZValue(50)
            line.gradviz_event = e
            # the whole message: a non-finite gradient's or a warning's sentence, shortened on the line
            line.setToolTip(plain_tooltip(f"step {e.step}: " + (f"{e.run}: {e.detail}" if e.run and not e.detail.startswith(f"{e.run}:") else e.detail)))
            self.plot.addItem(line, ignoreBounds=True)
            self.lines.append(line)
        self.fit_labels()

    def fit_labels(self, *_args) -> None:
        """Show a label only where it reads whole: no longer than the plot is high, and clear of
        the next marker's label (toggling B then D a second apart wrote "plain: norm on" over
        "plain: dropout p=0.5" in a 100 px histogram strip). The latest events keep theirs; a
        hidden label's text is the line's tooltip."""
        if not self.lines:
            return
        vb = self.plot.getViewBox()
        height = vb.height()
        metrics = QtGui.QFontMetricsF(self.lines[0].label.textItem.font())
        thick = metrics.height()
        next_x = math.inf
        for line in sorted(self.lines, key=lambda ln: ln.value(), reverse=True):
            x = vb.mapViewToScene(QtCore.QPointF(float(line.value()), 0.0)).x()
            fits = metrics.horizontalAdvance(line.label.toPlainText()) <= 0.98 * height - 4 and next_x - x >= thick + 2
            line.label.setVisible(fits)
            if fits:
                next_x = x

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        sig, self._sig = self._sig, None
        if sig is not None:
            self.update(list(sig), force=True)


def marker_label(e) -> str:
    detail = e.detail
    if e.kind == "nonfinite":
        detail = "non-finite"
    elif e.kind == "error":
        detail = "error"
    elif e.kind == "warning":  # a sentence (a watched model that grew): the marker's tooltip has it
        detail = "warning"
    elif e.kind == "pause":
        detail = "pause"
    elif e.kind == "restart":
        detail = "restart"
    return f"{e.run}: {detail}" if e.run else detail


class TitledExport(QtWidgets.QWidget):
    """A plain container used as an export widget: a title line above a chart."""

    def __init__(self, title: str, inner: QtWidgets.QWidget, parent=None) -> None:
        super().__init__(parent)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QtWidgets.QLabel(title)
        self.label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        lay.addWidget(self.label)
        lay.addWidget(inner, 1)
