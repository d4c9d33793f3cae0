"""Activation statistics per layer at the newest recorded step: mean, std, and the saturated
(tanh / sigmoid near their bounds) or dead (ReLU at zero) fraction, every run overlaid."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from . import symlog
from .base import (
    FitLabel,
    SpacedAxis,
    SymlogAxis,
    View,
    add_title,
    fit_plot_title,
    fmt_reading,
    follow_pointer_over,
    index_names,
    layer_caption,
    live_curve,
    nearest_drawn,
    run_key,
    style_plot,
    style_widget,
    upto_count,
)

STATS = ("act_mean", "act_std", "act_saturation")
SCALED = ("act_mean", "act_std")  # any magnitude: a log scale when one run's values dwarf the others'
AXIS_LABEL = {"act_mean": "mean", "act_std": "std", "act_saturation": "fraction"}
NO_SATURATION = "no layer's output\ngoes into an activation"
NO_STATISTICS = "no activation statistics in this run"
# a `gradviz.watch` of a model compiled with fullgraph=True puts no hook inside its forward
NO_STATISTICS_FULLGRAPH = NO_STATISTICS + " (compiled with fullgraph=True: no hooks inside its forward)"
NO_STATISTICS_SCRIPTED = NO_STATISTICS + " (a TorchScript model takes no Python hooks)"


def saturation_label(recording) -> str:
    """What `act_saturation` counted: an engine run says so in its config, a `gradviz.watch` run in
    its meta (a user's ResNet was labelled "saturated fraction" while its values were dead units)."""
    meta = recording.meta or {}
    model = (meta.get("config") or {}).get("model") or {}
    act = meta.get("activation") or model.get("activation", "")
    kind = model.get("kind", "")
    if act == "mixed":  # a watched model whose layers feed different activations: each counted for its own
        kinds = set((meta.get("layer_activation") or {}).values())
        for w in (meta.get("watches") or {}).values():  # a shared file: each run's own kinds
            kinds |= set((w.get("layer_kinds") or {}).values())
        if "relu" in kinds and kinds - {"relu"}:
            return MIXED_LABEL
        act = "relu" if "relu" in kinds else "tanh"
    if act == "relu" or kind in ("conv", "resnet18"):
        return "dead fraction (ReLU = 0)"
    return "saturated fraction"


MIXED_LABEL = "saturated (tanh, sigmoid) or dead (ReLU) fraction"
# in such a run the saturated-counted layers are hollow triangles on a dashed line, the dead-counted
# dots on a solid one; the key says so
MIXED_NOTE = "△ - - saturated (tanh, sigmoid)  ● — dead (ReLU family)"
DEAD_KINDS = ("relu",)


def saturating_layers(recording, run: str) -> np.ndarray | None:
    """Per layer of `run`, whether its act_saturation counts saturated (not dead) units, in a
    watched run whose layers feed different activations; None otherwise."""
    meta = recording.meta or {}
    kinds = meta.get("layer_activation") if meta.get("activation") == "mixed" else None
    if not kinds or saturation_label(recording) != MIXED_LABEL:
        return None
    # a file that several watches share holds each run's own kinds (their layer names may collide)
    kinds = (((meta.get("watches") or {}).get(run) or {}).get("layer_kinds")) or kinds
    return np.array([kinds.get(name, "relu") not in DEAD_KINDS for name in recording.layers(run)], bool)


# the plot titles' shorter wordings for a narrow pane (the tab beside the depth profile)
SHORT_TITLES = {
    "dead fraction (ReLU = 0)": ("dead fraction", "dead"),
    "saturated fraction": ("saturated",),
    MIXED_LABEL: ("saturated or dead fraction", "saturated / dead", "sat. / dead"),
}


class ActivationsView(View):
    name = "activations"
    title = "Activation statistics per layer"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.widget = pg.GraphicsLayoutWidget()
        ci = self.widget.ci
        self.title_label = add_title(ci, self.title, row=0, col=0, colspan=3)
        # the runs' key, in a row of its own above the plots: a legend inside the mean plot covered
        # the last layers' points in a pane a hundred pixels high, whichever corner it took
        self.key = FitLabel(" ")
        ci.addItem(self.key, row=1, col=0, colspan=3)
        self._key_runs: tuple | None = None
        self.no_statistics = ""  # what the key says when no run recorded activation statistics
        self._recorded = True  # until a drawing finds none
        self.plots: dict[str, pg.PlotItem] = {}
        labels = {"act_mean": "mean", "act_std": "std", "act_saturation": "saturated fraction"}  # titles
        for i, stat in enumerate(STATS):
            axes = {"bottom": SpacedAxis("bottom", integer=True)}
            # spaced for the font: the fraction axis stacked "1.0 0.8 ... 0" into one column
            axes["left"] = SymlogAxis("left") if stat in SCALED else SpacedAxis("left")
            p = ci.addPlot(row=2, col=i, axisItems=axes)
            p.setMenuEnabled(False)
            p.setTitle(labels[stat])
            fit_plot_title(p)
            p.titleLabel.shorter = SHORT_TITLES
            p.setLabel("bottom", "layer index")
            p.setLabel("left", AXIS_LABEL[stat])
            # plain units: pyqtgraph rescales any axis under 1 to milli, and a class read a mean of
            # -0.4 as "-400" on an axis labelled "mean (x0.001)"
            p.getAxis("left").enableAutoSIPrefix(False)
            self.plots[stat] = p
        self.plots["act_saturation"].setYRange(0, 1, padding=0.02)
        # said inside the saturation plot when no layer's output goes into an activation (an LSTM's
        # gates are inside its kernel; a linear model has none): an empty plot looked broken
        self.no_saturation = pg.TextItem(NO_SATURATION, anchor=(0.5, 0.5))
        self.no_saturation.setVisible(False)
        self.plots["act_saturation"].addItem(self.no_saturation, ignoreBounds=True)
        self.stacked = False  # the plots side by side (False) or one above the other (True)
        self.widget.installEventFilter(self)
        self.curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        self.marks: dict[str, tuple] = {}  # run -> (dots on dead-counted layers, triangles on saturated ones): mixed runs
        self._drawn: dict[tuple[str, str], np.ndarray] = {}
        self._step: dict[str, int] = {}
        self.scale: dict[str, float | None] = dict.fromkeys(SCALED)  # symlog's linear range, None: linear
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.widget)
        self._apply_theme(self.theme)
        self.widget.scene().sigMouseMoved.connect(self.pointer_moved)

    def _on_hover(self, scene_pos) -> None:
        follow_pointer_over(self, self.plots, scene_pos, lambda _stat, p: self.reading_at(p.x()), self.widget.ci)

    def reading_at(self, x: float) -> str:
        """The nearest layer's name and, per run, its mean, std and saturated (or dead) fraction
        at the latest cadence step drawn; "" where no run has that layer."""
        i = nearest_drawn(x, list(self._drawn.values()))
        lines = []
        runs = []
        sat = getattr(self, "_sat_label", "saturated fraction").split(" (")[0]
        for run, step in self._step.items():
            vals = {stat: self._drawn.get((run, stat)) for stat in STATS}
            if not any(v is not None and 0 <= i < len(v) for v in vals.values()):
                continue
            runs.append(run)
            got = {stat: float(v[i]) if v is not None and 0 <= i < len(v) else float("nan") for stat, v in vals.items()}
            if all(np.isnan(v) for v in got.values()):  # a switched-off norm
                lines.append(f"{run}: not used at step {step}")
                continue
            f = {stat: fmt_reading(v, missing="none", zero="0") for stat, v in got.items()}  # none: no activation reads it
            lines.append(f"{run}: mean {f['act_mean']}, std {f['act_std']}, {sat} {f['act_saturation']} at step {step}")
        return "\n".join([layer_caption(self.recording, runs, i), *lines]) if runs else ""

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 - Qt API
        # the chart's own size decides, not the tab's: an export resizes the chart alone
        if obj is self.widget and ev.type() == QtCore.QEvent.Type.Resize:
            self.arrange(ev.size().width() < ev.size().height())
        return False

    def arrange(self, stacked: bool) -> None:
        """One above the other in a pane taller than wide (the tab beside the depth profile, where
        side by side made three slivers a few layers wide), side by side otherwise (a wide window,
        an export)."""
        if stacked == self.stacked:
            return
        self.stacked = stacked
        ci = self.widget.ci
        for item in (self.title_label, self.key, *self.plots.values()):
            ci.removeItem(item)
        ci.addItem(self.title_label, row=0, col=0, colspan=1 if stacked else 3)
        ci.addItem(self.key, row=1, col=0, colspan=1 if stacked else 3)
        for i, p in enumerate(self.plots.values()):
            ci.addItem(p, row=2 + i if stacked else 2, col=0 if stacked else i)

    def _on_new_recording(self, recording) -> None:
        for (_run, stat), c in self.curves.items():
            self.plots[stat].removeItem(c)
        for items in self.marks.values():
            for c in items:
                self.plots["act_saturation"].removeItem(c)
        self.curves, self._drawn, self._step, self.marks = {}, {}, {}, {}
        self._key_runs = None
        for stat in SCALED:
            self._set_scale(stat, None)
        self._label_saturation(recording)

    def _label_saturation(self, recording) -> None:
        sat = saturation_label(recording)
        self._sat_label = sat
        self.plots["act_saturation"].setTitle(sat)
        # the axis says only "fraction": "dead fraction (ReLU = 0)" rotated was longer than the
        # plot beside the depth profile and lost both ends ("ad fraction (ReLU..."); the title says it all
        self.plots["act_saturation"].setLabel("left", "fraction")
        self._apply_theme(self.theme)

    def _draw(self, recording, upto: int | None) -> None:
        if saturation_label(recording) != getattr(self, "_sat_label", None):  # live: meta may come late
            self._label_saturation(recording)
        self._drawn = {}
        self._recorded = False  # whether any run recorded activation statistics at all (the key's note)
        for run in recording.runs:
            color = self.run_color(recording, run)
            for stat in STATS:
                key = (run, stat)
                if key not in self.curves:
                    self.curves[key] = live_curve(
                        self.plots[stat],
                        self.theme.pen(color),
                        symbol="o",
                        symbolSize=3 + 2 * self.theme.line_width,
                        symbolBrush=pg.mkBrush(color),
                        symbolPen=None,
                    )
                steps, values = recording.metric(run, stat)
                self._recorded |= stat == "act_mean" and len(steps) > 0
                n = upto_count(steps, upto)
                if n == 0 or values.ndim != 2:
                    self.curves[key].setData([], [])
                    continue
                self._drawn[key] = np.asarray(values[n - 1], np.float64)
                self._step[run] = int(steps[n - 1])
        for stat in ("act_std", "act_mean"):  # SCALED, the std first
            shown = [v for (_run, s), v in self._drawn.items() if s == stat]
            c = symlog.threshold(np.concatenate(shown), self.scale[stat]) if shown else None
            if stat == "act_mean" and self.scale["act_std"] is None:
                # means sit near 0 by nature, so their spread over the median is large even when a
                # linear axis shows them well (the demo's +-0.15 went "log"); they follow the std,
                # which is large exactly when a run's values dwarf the others'
                c = None
            self._set_scale(stat, c)
        for key, v in self._drawn.items():
            ok = np.isfinite(v)
            c = self.scale.get(key[1])
            self.curves[key].setData(np.arange(len(v))[ok], v[ok] if c is None else symlog.forward(v[ok], c))
        self._mark_saturating(recording)
        measured = [self._drawn[(run, "act_mean")] for run in recording.runs if (run, "act_mean") in self._drawn]
        saturated = [self._drawn[(run, "act_saturation")] for run in recording.runs if (run, "act_saturation") in self._drawn]
        none_fed = any(np.isfinite(v).any() for v in measured) and not any(np.isfinite(v).any() for v in saturated)
        if none_fed:  # the middle of what the empty plot shows (its range follows no data)
            x0, x1 = self.plots["act_saturation"].viewRange()[0]
            self.no_saturation.setPos((x0 + x1) / 2, 0.5)
        self.no_saturation.setVisible(none_fed)
        self._show_key(recording)

    def _mark_saturating(self, recording) -> None:
        """In a run that counts saturated units for some layers and dead ones for others, two
        series instead of one curve: dead fractions as dots on a solid line, saturated ones as
        hollow triangles on a dashed line (one line through both joined two different measures)."""
        for run in recording.runs:
            curve = self.curves.get((run, "act_saturation"))
            v = self._drawn.get((run, "act_saturation"))
            which = saturating_layers(recording, run) if v is not None else None
            mixed = which is not None and len(which) == len(v)
            if curve is not None:
                curve.setVisible(not mixed)
            if not mixed:
                for item in self.marks.get(run, ()):
                    item.setVisible(False)
                continue
            if run not in self.marks:
                color, size = self.run_color(recording, run), 3 + 2 * self.theme.line_width
                plot = self.plots["act_saturation"]
                dots = live_curve(plot, self.theme.pen(color), symbol="o", symbolSize=size, symbolBrush=pg.mkBrush(color), symbolPen=None)
                tris = live_curve(
                    plot, self.theme.pen(color, dash=True), symbol="t1", symbolSize=2.5 * size,
                    symbolBrush=pg.mkBrush(self.theme.background), symbolPen=pg.mkPen(color, width=2),
                )
                self.marks[run] = (dots, tris)
            ok = np.isfinite(v)
            for item, at in zip(self.marks[run], (np.flatnonzero(ok & ~which), np.flatnonzero(ok & which)), strict=True):
                item.setData(at, v[at])
                item.setVisible(True)

    def _set_scale(self, stat: str, c: float | None) -> None:
        """Linear (None) or symlog with linear range `c`; the axis title says which."""
        if c == self.scale[stat] and self.plots[stat].getAxis("left").c == c:
            return
        self.scale[stat] = c
        plot = self.plots[stat]
        plot.getAxis("left").set_threshold(c)
        plot.setLabel("left", AXIS_LABEL[stat] + (" (log)" if c is not None else ""))
        style_plot(plot, self.theme, plot.titleLabel.text)
        plot.getAxis("left").setWidth(None)

    def _show_key(self, recording, force: bool = False) -> None:
        """Each run's name in its colour, after a dot like its points; set only when the runs or
        their colours change (a new text lays the chart out again)."""
        runs = tuple((run, self.run_color(recording, run)) for run in recording.runs)
        # a run that recorded none at all says so after the key: three empty plots said nothing
        meta = recording.meta or {}
        note = ""
        if runs and not self._recorded:  # from the series `_draw` just read
            note = NO_STATISTICS_FULLGRAPH if meta.get("fullgraph") else NO_STATISTICS_SCRIPTED if meta.get("scripted") else NO_STATISTICS
        elif any(c.isVisible() for items in self.marks.values() for c in items):
            note = MIXED_NOTE
        if (runs, note) == self._key_runs and not force:
            return
        self._key_runs = (runs, note)
        self.no_statistics = note
        t = self.theme
        text = run_key(list(runs), "●", "&nbsp;&nbsp;&nbsp; ") or " "
        self.key.setText(text + (f" &nbsp;·&nbsp; {note}" if note else ""), size=f"{t.font_pt}pt", color=t.foreground)

    def csv(self) -> tuple[list[str], list[list]]:
        keys = list(self._drawn)
        header = ["layer", "name"] + [f"{run} {stat} @ step {self._step.get(run, '')}" for run, stat in keys]
        width = max((len(v) for v in self._drawn.values()), default=0)
        names = index_names(self.row_names(dict.fromkeys(run for run, _ in keys)), width)
        rows = [[i, names[i], *(float(self._drawn[k][i]) if i < len(self._drawn[k]) else float("nan") for k in keys)] for i in range(width)]
        return header, rows

    def plot_items(self) -> list:
        return [self.widget]

    def export_widget(self) -> QtWidgets.QWidget:
        return self.widget

    def _apply_theme(self, theme) -> None:
        style_widget(self.widget, theme)
        self.title_label.setText(self.title, size=f"{int(theme.font_pt * 1.3)}pt", color=theme.foreground)
        for p in self.plots.values():
            style_plot(p, theme, p.titleLabel.text)
            # statistics have any magnitude (a std of 15000 in an N(0, 1)-initialised LeNet): the
            # axis sizes itself to its tick labels, or the widest ran into the axis title
            p.getAxis("left").setWidth(None)
        self.no_saturation.setColor(theme.foreground)
        self.no_saturation.setFont(theme.font())
        for items in self.marks.values():  # made again in the new colours
            for c in items:
                self.plots["act_saturation"].removeItem(c)
        self.marks = {}
        if self.recording is not None:
            self._mark_saturating(self.recording)
            self._show_key(self.recording, force=True)
            for (run, _stat), c in self.curves.items():
                color = self.run_color(self.recording, run)
                c.setPen(theme.pen(color))
                c.setSymbolSize(3 + 2 * theme.line_width)
                c.setSymbolBrush(pg.mkBrush(color))  # the dots kept the light palette's colour in the dark theme
