"""Each view drawn over a real recording: what is plotted equals what was recorded."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradviz.core.recording import Recording
from gradviz.core.runfile import open_run
from gradviz.gui.theme import EVENT_KINDS_MARKED, make_theme
from gradviz.gui.views import make_views
from gradviz.gui.views.base import decade_label
from gradviz.gui.views.depth import METRICS, DepthView
from gradviz.gui.views.readout import describe

NAMES = ["depth", "heatmap", "loss", "histograms", "activations", "layers"]


@pytest.fixture()
def views(qtbot, recorded):
    rec, _ = recorded
    vs = make_views()
    for v in vs:
        qtbot.addWidget(v)
        v.resize(900, 600)
        v.refresh(rec)
    return {v.name: v for v in vs}


def marked(rec, run=None, upto=None):
    return [
        e
        for e in rec.event_objects()
        if e.kind in EVENT_KINDS_MARKED and (run is None or e.run in ("", run)) and (upto is None or e.step <= upto)
    ]


def finite_positive(row):
    row = np.asarray(row, np.float64)
    ok = np.isfinite(row) & (row > 0)
    return np.flatnonzero(ok), row[ok]


def test_make_views_follows_the_protocol(views):
    assert list(views) == NAMES
    for v in views.values():
        assert v.title
        header, rows = v.csv()
        assert header and rows, v.name
        assert all(len(r) == len(header) for r in rows), v.name
        assert v.plot_items()
        assert v.export_widget() is not None


def test_depth_profile_plots_the_latest_step_of_every_run(views, recorded):
    """The line joins the layers that are not normalisation layers; the norm layers (BatchNorm is
    on in the residual run) are hollow markers off it: on the line they made a saw-tooth."""
    rec, _ = recorded
    depth = views["depth"]
    for run in rec.runs:
        steps, g = rec.metric(run, "grad_norm")
        norm = np.array(["Norm" in t for t in rec.info(run).layer_types])
        x, y = depth.curves[run].getOriginalDataset()
        ex, ey = finite_positive(np.where(norm, np.nan, g[-1]))
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_allclose(y, ey, rtol=1e-6)
        nx, ny = (np.asarray([] if a is None else a, np.float64) for a in depth.norm_dots[run].getOriginalDataset())
        want_x, want_y = finite_positive(np.where(norm, g[-1], np.nan))
        np.testing.assert_array_equal(nx, want_x)
        np.testing.assert_allclose(ny, want_y, rtol=1e-6)
        assert (len(nx) > 0) == (run == "residual")  # only there is BatchNorm in the forward pass
        # the near trail holds the profiles 1, 2 and 3 strides older, NaN-separated, in that order
        tx, ty = depth.trails[run][0].getOriginalDataset()
        pieces = np.split(ty, np.flatnonzero(np.isnan(ty)))
        older = [p[~np.isnan(p)] for p in pieces if np.isfinite(p).any()]
        assert len(older) == 3
        for k, prof in enumerate(older, 1):
            np.testing.assert_allclose(prof, finite_positive(np.where(norm, np.nan, g[-1 - 4 * k]))[1], rtol=1e-6)
    assert depth.norm_entry is not None and depth.norm_entry.opts["symbol"] == "o"
    assert "norm layers" in [label.text for _sample, label in depth.plot.legend.items]
    header, rows = depth.csv()  # the export keeps every layer, norm layers too
    assert header[0] == "layer" and len(rows) == len(rec.layers("plain"))
    depth.set_metric("act_grad_norm")  # blocks: one line, no hollow markers
    assert all(d.getOriginalDataset()[0] is None or len(d.getOriginalDataset()[0]) == 0 for d in depth.norm_dots.values())
    assert depth.norm_entry is None


def test_depth_profile_selector_and_step_limit(views, recorded):
    rec, _ = recorded
    depth = views["depth"]
    depth.set_metric("act_grad_norm")
    steps, a = rec.metric("plain", "act_grad_norm")
    x, y = depth.curves["plain"].getOriginalDataset()
    np.testing.assert_allclose(y, finite_positive(a[-1])[1], rtol=1e-6)
    depth.set_metric("update_ratio")
    depth.refresh(rec, upto_step=10)
    steps, u = rec.metric("residual", "update_ratio")
    row = int(np.searchsorted(steps, 10, side="right")) - 1
    assert steps[row] == 10
    np.testing.assert_allclose(depth.curves["residual"].getOriginalDataset()[1], finite_positive(u[row])[1], rtol=1e-6)
    assert depth.drawn_upto == 10
    assert f"@ step {steps[row]}" in depth.csv()[0][2]
    depth.set_metric("act_grad_norm")  # a block profile's rows are blocks, named
    header, rows = depth.csv()
    assert header[:2] == ["block", "name"] and [r[1] for r in rows] == rec.blocks("plain")


def test_depth_profile_axes_fixed_by_default_and_vanishing_band(views, recorded):
    depth = views["depth"]
    lo, hi = METRICS["grad_norm"][2]
    vr = depth.plot.getViewBox().viewRange()[1]
    assert vr == pytest.approx([lo, hi])
    assert depth.band.isVisible()
    r = depth.band.rect()
    assert r.y() + r.height() == pytest.approx(math.log10(METRICS["grad_norm"][3]))
    depth.set_fixed(True, -4, 0)
    assert depth.plot.getViewBox().viewRange()[1] == pytest.approx([-4, 0])
    depth.set_fixed(False)
    assert depth.plot.getViewBox().autoRangeEnabled()[1]


def test_refresh_is_cheap_when_nothing_changed(views, recorded):
    rec, _ = recorded
    for v in views.values():
        n = v.draw_count
        v.refresh(rec)
        assert v.draw_count == n, v.name
        v.refresh(rec, upto_step=5)
        assert v.draw_count == n + 1, v.name


def test_heatmap_is_log10_grad_norm_with_one_shared_scale(views, recorded):
    rec, _ = recorded
    hm = views["heatmap"]
    for run in rec.runs:
        steps, g = rec.metric(run, "grad_norm")
        with np.errstate(divide="ignore", invalid="ignore"):
            expect = np.log10(np.where(g > 0, g, np.nan)).T
        rows = np.flatnonzero(np.isfinite(expect).any(axis=1))
        img = hm.images[run].image
        assert (g[np.isfinite(g)] > 0).all()  # nothing vanished to exactly 0 here (a test below)
        assert img.shape == (len(rows), len(steps))
        measured = np.isfinite(expect[rows])
        np.testing.assert_allclose(img[measured], expect[rows][measured], rtol=1e-5)
        # a layer unused at a step (BatchNorm switched off) is filled, not transparent (a test below)
        assert not np.isnan(img).any()
        assert tuple(hm.images[run].levels) == hm.levels
        assert hm.markers[run].count() == len(marked(rec, run))
    levels = {tuple(img.levels) for img in hm.images.values()}
    assert len(levels) == 1


def test_heatmap_draws_a_vanished_gradient_darkest_and_leaves_out_unused_layers(qtbot):
    """A gradient of exactly 0 (the first layers of a 200-block plain stack: below float32's range)
    is the darkest row, not a missing one; a layer with no gradient at all (NaN: a switched-off
    BatchNorm) is left out. The CSV says -inf and nan."""
    from gradviz.core.recording import Recording
    from gradviz.gui.views.heatmap import HeatmapView

    rec = Recording()
    rec.add_run("plain", ["input", "norm", "head"], ["Linear", "BatchNorm1d", "Linear"], [])
    for step in range(6):
        rec.append("plain", step, {"loss": 1.0, "grad_norm": np.array([0.0, np.nan, 0.5 + step], np.float32)})
    view = HeatmapView()
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.refresh(rec)
    img = view.images["plain"].image
    assert img.shape == (2, 6)  # rows: input, head
    np.testing.assert_array_equal(img[0], np.full(6, view.levels[0], np.float32))
    np.testing.assert_allclose(img[1], np.log10(0.5 + np.arange(6)), rtol=1e-6)
    ticks = view.plots["plain"].getAxis("left")._tickLevels[0]
    assert [t[1] for t in ticks] == ["0", "2"]  # the layer indices of the depth profile
    header, rows = view.csv()
    assert header[1:] == ["plain input log10 grad_norm", "plain norm log10 grad_norm", "plain head log10 grad_norm"]
    assert all(r[1] == -np.inf and np.isnan(r[2]) for r in rows)


def test_loss_curves_and_event_markers(views, recorded):
    import pyqtgraph as pg

    rec, _ = recorded
    loss = views["loss"]
    for run in rec.runs:
        steps, values = rec.metric(run, "loss")
        x, y = loss.curves[(run, "loss")].getOriginalDataset()
        np.testing.assert_array_equal(x, steps)
        np.testing.assert_allclose(y, values)
        es, ev = rec.metric(run, "eval_loss")
        np.testing.assert_allclose(loss.curves[(run, "eval_loss")].getOriginalDataset()[1], ev)
    # the legend names each run once (eval is the dashed line in the run's colour)
    assert [label.text for _sample, label in loss.plot.legend.items] == [*rec.runs, "eval (dashed)"]
    events = marked(rec)
    kinds = {e.kind for e in events}
    assert {"toggle", "pause", "restart"} <= kinds
    assert loss.markers.count() == len(events)
    assert sorted(line.value() for line in loss.markers.lines) == sorted(e.step for e in events)
    labels = [line.label.toPlainText() for line in loss.markers.lines]
    assert "plain: residual on" in labels and "restart" in labels
    # each label reads whole inside the plot, beside its line: it ran up past the top ("plai")
    loss.grab()
    box = loss.plot.getViewBox().sceneBoundingRect()
    for line in loss.markers.lines:
        text = line.label.sceneBoundingRect()
        x = loss.plot.getViewBox().mapViewToScene(pg.Point(line.value(), 0)).x()
        assert box.top() - 1 <= text.top() and text.bottom() <= box.bottom() + 1, (line.label.toPlainText(), text, box)
        assert text.height() > text.width() and abs(text.left() - x) < 3  # vertical, just right of the line
    # a step limit hides later markers
    loss.refresh(rec, upto_step=25)
    assert loss.markers.count() == len(marked(rec, upto=25)) < len(events)
    assert loss.curves[("plain", "loss")].getOriginalDataset()[0][-1] == 25


def test_histograms_over_time_and_latest_overlay(views, recorded):
    rec, _ = recorded
    h = views["histograms"]
    h.set_selection("grad", 1)
    for run in rec.runs:
        steps, edges, counts = rec.histograms(run, "grad", 1)
        img = h.images[run].image
        np.testing.assert_allclose(img, np.log1p(counts.T), rtol=1e-6)
        x, y = h.latest_curves[run].getOriginalDataset()
        np.testing.assert_allclose(x, edges)
        np.testing.assert_allclose(y, counts[-1])
        assert h.markers[run].count() == len(marked(rec, run))
    assert "gradients of 1:" in h.title_label.text
    header, rows = h.csv()
    assert len(rows) == len(rec.histograms("plain", "grad", 1)[0])


def test_activation_statistics_per_layer(views, recorded):
    rec, _ = recorded
    a = views["activations"]
    for run in rec.runs:
        for stat in ("act_mean", "act_std", "act_saturation"):
            steps, v = rec.metric(run, stat)
            row = np.asarray(v[-1], np.float64)
            ok = np.isfinite(row)
            x, y = a.curves[(run, stat)].getOriginalDataset()
            np.testing.assert_array_equal(x, np.flatnonzero(ok))
            np.testing.assert_allclose(y, row[ok], rtol=1e-6)
    assert a.plots["act_saturation"].titleLabel.text == "saturated fraction"  # tanh demo


def test_layer_table_rebuilt_from_the_config_of_a_file(qtbot, recorded):
    from gradviz.config import from_dict
    from gradviz.core.data import load_data
    from gradviz.core.models import build_model
    from gradviz.core.summary import summarize

    _, path = recorded
    rec = open_run(path)
    assert "layer_table" not in rec.meta
    (layers,) = [v for v in make_views() if v.name == "layers"]
    qtbot.addWidget(layers)
    layers.refresh(rec)
    rc = from_dict(rec.meta["config"]).runs[0]
    data = load_data(rc.data, seed=rc.train.seed)
    expect = summarize(build_model(rc.model, data.input_shape, data.n_outputs, seed=rc.train.seed), data.input_shape)
    header, rows = layers.csv()
    assert header == ["layer", "name", "type", "output shape", "params", "FLOPs", "tied params"]
    assert [r[1] for r in rows] == [e.name for e in expect]
    assert [r[4] for r in rows] == [e.params for e in expect]
    assert [r[5] for r in rows] == [e.flops for e in expect]
    assert layers.table.rowCount() == len(expect)
    assert layers.table.item(1, 1).text() == expect[1].name


@pytest.mark.parametrize("width", [265, 480, 1100])
def test_layer_table_fits_a_narrow_pane_without_scrolling_sideways(qtbot, width):
    """ResNet-18's table in presentation fonts is ~780 px wide; a 1024 x 768 projector gives it
    ~265. Only the index, name and type used to be visible. A narrow pane drops type, then FLOPs,
    then (after eliding names from the left) the output shape; it says so under the table, and a
    name's tooltip has the whole row. A wide pane shows every column; the CSV always has them."""
    from gradviz.core.models.resnet import ResNet18
    from gradviz.core.table import summary_rows
    from gradviz.gui.views.layers import LayersView

    rows = summary_rows(ResNet18(in_channels=1, n_outputs=10, residual=True, norm_on=True), (1, 28, 28))
    rec = Recording()
    rec.add_run("plain", [r[0] for r in rows], [r[1] for r in rows], [])
    rec.set_meta({"layer_table": {"plain": rows}})
    view = LayersView()
    qtbot.addWidget(view)
    view.apply_theme(make_theme("light", presentation=True, screen_height=768))
    view.resize(width, 600)
    view.show()
    view.refresh(rec)
    qtbot.wait(10)
    t = view.table
    shown = [j for j in range(t.columnCount()) if not t.isColumnHidden(j)]
    assert sum(t.columnWidth(j) for j in shown) <= t.viewport().width() + 1, (width, [t.columnWidth(j) for j in shown])
    assert not t.horizontalScrollBar().isVisible()
    names = [t.horizontalHeaderItem(j).text() for j in shown]
    assert names[:2] == ["#", "name"] and "params" in names  # the index, the name and its size stay
    assert view.hidden_columns == [h for h in ("type", "shape", "FLOPs") if h not in names]
    if width < 1000:
        assert view.hidden_columns and "Too narrow for " + ", ".join(view.hidden_columns) in view.total_label.text()
    else:
        assert view.hidden_columns == [] and "narrow" not in view.total_label.text()
    if width == 480:
        assert "shape" in names  # names are elided before the shape goes
    name, typ, shape, params, flops, _tied = rows[5]
    tip = t.item(5, 1).toolTip()
    assert all(part in tip for part in (name, typ, f"{params:,}", f"{flops:,}", "(" + ", ".join(map(str, shape)) + ")")), tip
    header, csv_rows = view.csv()
    assert len(header) == 7 and [r[5] for r in csv_rows] == [r[4] for r in rows]
    assert "not in the forward pass" not in view.total_label.text()  # every layer of this one runs
    rows = [list(r) for r in rows]  # a new table, as the worker stores after a switch flips
    rows[2][2] = []  # as a switched-off norm reads
    rec.set_meta({"layer_table": {"plain": rows}})
    view.refresh(rec)
    # the note explains the "-" in the shape column, so it comes only where that column is shown
    assert ("- : not in the forward pass" in view.total_label.text()) == (not t.isColumnHidden(3)), width


def test_layer_table_without_a_buildable_model_shows_names_and_types(qtbot, recorded):
    rec0, _ = recorded
    rec = Recording()
    rec.set_meta({"config": {"model": {"kind": "no-such-model"}}})
    info = rec0.info("plain")
    rec.add_run("plain", info.layers, info.layer_types, info.blocks)
    (layers,) = [v for v in make_views() if v.name == "layers"]
    qtbot.addWidget(layers)
    layers.refresh(rec)
    header, rows = layers.csv()
    assert [r[1] for r in rows] == info.layers
    assert [r[2] for r in rows] == info.layer_types
    assert all(r[4] == "" for r in rows)
    assert "names and types only" in layers.total_label.text()


def test_layer_table_prefers_the_table_the_worker_stored(qtbot, recorded):
    rec0, _ = recorded
    rec = Recording()
    rec.set_meta({"layer_table": {"plain": [["a", "Linear", [4], 12, 24], ["b", "Linear", [2], 10, 18]]}})
    rec.add_run("plain", ["a", "b"], ["Linear", "Linear"], [])
    (layers,) = [v for v in make_views() if v.name == "layers"]
    qtbot.addWidget(layers)
    layers.refresh(rec)
    # rows of five fields (files of earlier versions): nothing tied
    assert layers.csv()[1] == [[0, "a", "Linear", "(4)", 12, 24, 0], [1, "b", "Linear", "(2)", 10, 18, 0]]
    assert "22 parameters" in layers.total_label.text()


def test_layer_table_counts_tied_weights_once(qtbot):
    """A tied output layer (a GPT's, T5's `shared` embedding) says "(tied)" and the total counts
    its weight once: GPT-2's read 163 M parameters for 124 M. The CSV has a tied column."""
    rec = Recording()
    rows = [["emb", "Embedding", [8], 400, 0, 0], ["mid", "Linear", [8], 72, 128, 0], ["out", "Linear", [50], 450, 800, 400]]
    rec.set_meta({"layer_table": {"lm": rows}})
    rec.add_run("lm", ["emb", "mid", "out"], ["Embedding", "Linear", "Linear"], [])
    (layers,) = [v for v in make_views() if v.name == "layers"]
    qtbot.addWidget(layers)
    layers.resize(900, 500)
    layers.refresh(rec)
    assert [layers.table.item(i, 4).text() for i in range(3)] == ["400", "72", "450 (400 tied)"]
    assert "522 parameters (tied ones counted once)" in layers.total_label.text()
    header, csv_rows = layers.csv()
    assert header[-1] == "tied params" and [r[-1] for r in csv_rows] == [0, 0, 400]


def _synthetic(first_over_last: float, steps: int = 12) -> Recording:
    rec = Recording()
    names = [f"l{i}" for i in range(30)]
    rec.add_run("plain", names, ["Linear"] * 30, [])
    for s in range(steps):
        g = np.geomspace(first_over_last, 1.0, 30) * 0.01
        rec.append("plain", s, {"loss": 1.0, "grad_norm": g.astype(np.float32)})
    return rec


def test_readout_in_plain_language():
    assert describe(_synthetic(1 / 3000), "plain") == "plain: layer 0 receives 1/3,000 of layer 29's gradient: vanishing"
    assert describe(_synthetic(1.0), "plain").endswith("receives 1× layer 29's gradient: it flows back")
    assert describe(_synthetic(5000.0), "plain").endswith("exploding")
    rec = _synthetic(1.0)
    rec.add_event(11, "plain", "nonfinite", "plain: non-finite gradient at step 11, first in layer l3; run paused")
    assert describe(rec, "plain") == "plain: non-finite gradient at step 11, first in layer l3; run paused"
    assert describe(rec, "plain", upto=10).endswith("it flows back")
    # the short forms say the same in fewer words; a stop reads the same in both
    assert describe(_synthetic(1 / 3000), "plain", short=True) == "plain: layer 0 gets 1/3,000 of layer 29's gradient: vanishing"
    assert describe(_synthetic(1.0), "plain", short=True) == "plain: layer 0 gets 1× layer 29's gradient: flows back"
    assert describe(_synthetic(5000.0), "plain", short=True).endswith("gets 5,000× layer 29's gradient: exploding")
    assert describe(rec, "plain", short=True) == describe(rec, "plain")


def test_readout_on_the_recording(recorded):
    rec, _ = recorded
    text = describe(rec, "plain")
    assert text.startswith("plain: layer 0 receives") and text.split(": ")[-1] in ("vanishing", "it flows back", "exploding")


def test_readout_lines_shrink_to_one_line_before_they_wrap(qtbot):
    """At 16 pt each readout line took two lines in the 600 px depth panel of a 1366x768 screen:
    four lines of headline for two runs; in presentation mode in a narrow panel, three lines each.
    A line now shrinks to fit one line, down to 1.05x the window's text size; else two lines, down
    to 0.6 of its size; only a line too long even then wraps further. With room it is full size."""
    from PySide6 import QtGui

    from gradviz.gui.fitted_label import FittedLabel
    from gradviz.gui.views.readout import FIT_FLOOR, ONE_LINE_FLOOR, Readout

    theme = make_theme("light")
    readout = Readout()
    qtbot.addWidget(readout)
    readout.refresh(_synthetic(1 / 1.2e7))
    readout.apply_theme(theme)
    lab = readout.labels["plain"]
    text = lab.text()
    assert text == "plain: layer 0 receives 1/1.2e7 of layer 29's gradient: vanishing"
    base = lab.base_point_size()
    assert base == theme.readout_pt

    def shown(width: int):
        readout.resize(width, 300)
        readout.show()
        qtbot.wait(20)
        pt = lab.font().pointSizeF()
        wide = QtGui.QFontMetricsF(lab.font()).horizontalAdvance(text)
        lines = round(lab.heightForWidth(lab.width()) / QtGui.QFontMetricsF(lab.font()).lineSpacing())
        return pt, wide, lines

    pt, full_width, lines = shown(1600)  # room to spare: full size, one line
    assert pt == base and lines == 1
    pt, wide, lines = shown(int(full_width * 0.8) + 20)  # a narrower panel: smaller, still one line
    assert ONE_LINE_FLOOR * theme.font_pt <= pt < base and wide <= lab.contentsRect().width() and lines == 1
    assert pt > 0.75 * base  # no smaller than it has to be
    pt, wide, lines = shown(int(full_width * 0.6))  # one line would take less than 1.05x the text: two
    assert lines == 2 and FIT_FLOOR * base <= pt <= base
    two_lines_pt = pt
    pt, wide, lines = shown(int(full_width * 0.2))  # a sliver: the least size, wrapped
    assert pt == pytest.approx(FIT_FLOOR * base) and lines >= 3
    pt, _, lines = shown(int(full_width * 0.6))  # and back, through the sizes it found before
    assert lines == 2 and pt == two_lines_pt
    pt, _, lines = shown(1600)
    assert pt == base and lines == 1
    # a new text of the same length in the same room (a digit changed) is checked, not assumed
    shown(int(full_width * 0.8) + 20)
    for other in (text.replace("1.2e7", "1.1e7"), ("WWWW " * 20)[: len(text)]):
        lab.setText(other)
        fresh = FittedLabel(other)  # one that never saw the first text
        qtbot.addWidget(fresh)
        fresh.resize(lab.size())
        fresh.set_base_font(lab._base, ONE_LINE_FLOOR * theme.font_pt, FIT_FLOOR * base)
        assert lab.font().pointSizeF() == fresh.font().pointSizeF(), other
    assert lab.heightForWidth(lab.width()) > 1.5 * QtGui.QFontMetricsF(lab.font()).lineSpacing()  # the Ws: two lines
    lab.setText(text)
    shown(1600)
    # a live readout: a digit changes, the line keeps fitting
    readout.refresh(_synthetic(1 / 3.4e7))
    lab = readout.labels["plain"]
    assert lab.text() != text and len(lab.text()) == len(text)
    qtbot.waitUntil(lambda: lab.font().pointSizeF() == base, timeout=2000)  # once the new line is laid out


def test_readout_lines_of_different_lengths_share_one_size(qtbot):
    """On a 1280x720 laptop the depth preset's "deep-plain" line fitted one line at 10.7 pt while
    "shallow-plain" and "deep-residual" took two lines at 13.6: a size difference that read as a
    difference between the runs. All lines now take one size, at every width; where the full lines
    take two lines and the short forms ("gets", "flows back") fit one, the short forms are shown."""
    from PySide6 import QtGui

    from gradviz.gui.views.readout import Readout

    rec = Recording()
    for run, ratio in (("shallow-plain", 0.69), ("deep-plain", 1.3), ("deep-residual", 0.075)):
        rec.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
        rec.append(run, 0, {"loss": 1.0, "grad_norm": np.array([ratio, 1.0], np.float32)})
    readout = Readout()
    qtbot.addWidget(readout)
    readout.apply_theme(make_theme("light"))
    readout.refresh(rec)
    readout.show()
    labels = list(readout.labels.values())
    assert len({len(lab.text()) for lab in labels}) == 3
    seen = set()
    for width in range(300, 1700, 25):
        readout.resize(width, 300)
        qtbot.wait(5)
        sizes = {lab.font().pointSizeF() for lab in labels}
        assert len(sizes) == 1, (width, sizes)
        room = labels[0].contentsRect().width()
        wide = [QtGui.QFontMetricsF(lab.font()).horizontalAdvance(lab.text()) for lab in labels]
        pt = sizes.pop()
        full = [lab.sizes(lab.texts[0])[0] for lab in labels]
        short = [lab.sizes(lab.texts[-1])[0] for lab in labels]
        shown = [lab.text() for lab in labels]
        if all(s is not None for s in full):  # every full line fits one line: full, as large as the longest allows
            assert shown == [lab.texts[0] for lab in labels] and pt == pytest.approx(min(full)) and max(wide) <= room
        elif all(s is not None for s in short):  # the short forms do: they are shown, on one line each
            assert shown == [lab.texts[-1] for lab in labels] and pt == pytest.approx(min(short)) and max(wide) <= room
            assert all(lab.toolTip() == lab.texts[0] for lab in labels)  # the full line on hover
        else:  # two lines: the full texts at the smallest of the sizes that fit two lines
            assert shown == [lab.texts[0] for lab in labels] and pt <= min(lab.sizes()[1] for lab in labels) + 1e-9
        seen.add("full" if all(s is not None for s in full) else "short" if all(s is not None for s in short) else "two")
    assert seen == {"full", "short", "two"}  # the sweep passed through all three


def test_readout_lines_keep_their_size_while_digits_change(qtbot, monkeypatch):
    """A live line changes a digit at a time ("0.43x" becomes "0.094x"): refitting each text drew
    the lines a little larger or smaller at every change. In the same room the size and form are
    kept while the texts still fit them; a text that no longer fits, or a new width, refits; and
    every few seconds a clearly larger fit replaces the kept one (the line stayed small after its
    text got shorter, until the window was resized)."""
    from PySide6 import QtGui, QtWidgets

    from gradviz.gui import fitted_label
    from gradviz.gui.fitted_label import FittedLabel, fit_together

    now = [1000.0]
    monkeypatch.setattr(fitted_label, "clock", lambda: now[0])

    box = QtWidgets.QWidget()
    qtbot.addWidget(box)
    lay = QtWidgets.QVBoxLayout(box)
    labels: list[FittedLabel] = []
    for _ in range(2):
        lab = FittedLabel("", on_change=lambda: fit_together(labels))
        lay.addWidget(lab)
        labels.append(lab)
    font = QtGui.QFont()
    font.setPointSizeF(16)
    font.setBold(True)
    for lab in labels:
        lab.set_base_font(font, 10.5, 9.6)

    def texts(a: str, b: str) -> None:
        labels[0].set_texts([f"plain: layer 0 receives {a} layer 61's gradient: it flows back", f"plain: layer 0 gets {a} layer 61's gradient: flows back"])
        labels[1].set_texts([f"residual: layer 0 receives {b} layer 61's gradient: it flows back", f"residual: layer 0 gets {b} layer 61's gradient: flows back"])

    texts("0.43×", "1.6×")
    full = QtGui.QFontMetricsF(font).horizontalAdvance(labels[1].texts[0])
    box.resize(int(full * 0.85), 200)
    box.show()
    qtbot.wait(20)
    pt = labels[0].font().pointSizeF()
    assert pt < 16 and labels[1].text() == labels[1].texts[0]  # shrunk, full form, one line
    texts("0.4×", "1×")  # shorter texts would fit larger: kept
    assert [lab.font().pointSizeF() for lab in labels] == [pt, pt]
    texts("0.094×", "1.6×")  # a digit longer, still shorter than the residual line: kept
    assert [lab.font().pointSizeF() for lab in labels] == [pt, pt]
    now[0] += fitted_label.REGROW_AFTER + 1
    texts("0.4×", "1×")  # later: a fit a little larger is not worth the jump
    assert labels[0].sizes()[0] > pt and [lab.font().pointSizeF() for lab in labels] == [pt, pt]
    labels[0].set_texts(["plain: layer 0 receives 1×"])
    labels[1].set_texts(["residual: layer 0 receives 1×"])
    assert [lab.font().pointSizeF() for lab in labels] == [pt, pt]  # much shorter, but just now
    now[0] += fitted_label.REGROW_AFTER + 1
    labels[0].set_texts(["plain: layer 0 receives 2×"])
    assert [lab.font().pointSizeF() for lab in labels] == [16, 16]  # a while later: grown back
    texts("0.094×", "1.6×")  # the long lines again: shrunk to fit at once
    assert [lab.font().pointSizeF() for lab in labels] == [pt, pt]
    texts("0.0000094×", "1.6×")  # no longer fits: refitted, and it fits
    lab = labels[0]
    assert QtGui.QFontMetricsF(lab.font()).horizontalAdvance(lab.text()) <= lab.contentsRect().width()
    assert lab.font().pointSizeF() < pt or lab.text() != lab.texts[0]
    box.resize(1600, 200)  # a new width: chosen afresh, full size
    qtbot.wait(20)
    assert [lab.font().pointSizeF() for lab in labels] == [16, 16]


@pytest.mark.parametrize("presentation", [False, True])
def test_readout_lines_of_many_runs_stay_larger_than_the_charts_text(qtbot, presentation):
    """Four runs were headlined at 9.6 pt, under the charts' 10 pt: the lines of more than two runs
    shrink less now (their width is fitted anyway), and never below 1.1x the window's text."""
    from gradviz.gui.views.readout import Readout, readout_size

    theme = make_theme("light", presentation)
    sizes = {n: readout_size(theme, n) for n in range(1, 9)}
    assert sizes[1] == sizes[2] == theme.readout_pt
    assert all(sizes[n] >= sizes[n + 1] for n in range(1, 8))  # more runs, smaller or equal
    assert all(s >= 1.1 * theme.font_pt - 1e-9 for s in sizes.values())
    assert sizes[4] >= 0.75 * theme.readout_pt - 1e-9
    rec = Recording()
    runs = [f"run{i}" for i in range(4)]
    for run in runs:
        rec.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
        rec.append(run, 0, {"loss": 1.0, "grad_norm": np.array([0.1, 1.0], np.float32)})
    readout = Readout()
    qtbot.addWidget(readout)
    readout.apply_theme(theme)
    readout.refresh(rec)
    readout.resize(1600, 200)
    readout.show()
    qtbot.wait(20)
    assert [readout.labels[r].font().pointSizeF() for r in runs] == [sizes[4]] * 4  # room: the full size


def test_presentation_mode_makes_fonts_and_pens_bigger(views, recorded):
    depth, loss = views["depth"], views["loss"]
    pen0 = depth.curves["plain"].opts["pen"].widthF()
    font0 = depth.plot.getAxis("left").style["tickFont"].pointSizeF()
    marker_pen0 = loss.markers.lines[0].pen.widthF()
    big = make_theme("light", presentation=True)
    for v in views.values():
        v.apply_theme(big)
    assert depth.curves["plain"].opts["pen"].widthF() > pen0
    assert depth.plot.getAxis("left").style["tickFont"].pointSizeF() > font0
    assert loss.markers.lines[0].pen.widthF() > marker_pen0
    assert views["layers"].table.font().pointSizeF() == big.font_pt
    assert loss.curves[("plain", "loss")].opts["pen"].widthF() == big.line_width
    # dark theme changes the background, and the Okabe-Ito run colours stay
    dark = make_theme("dark")
    depth.apply_theme(dark)
    assert depth.widget.backgroundBrush().color().name().upper() == dark.background.upper()
    assert depth.curves["plain"].opts["pen"].color().name().upper() == dark.run_color(0).upper()


def test_fixed_depth_axis_grows_for_exploding_values_but_never_shrinks(qtbot):
    from gradviz.core.recording import Recording
    from gradviz.gui.views.depth import DepthView

    rec = Recording()
    rec.add_run("big", ["a", "b", "c"], ["Linear"] * 3, [])
    rec.append("big", 0, {"grad_norm": np.array([1e-9, 1e1, 3e4], np.float32)})
    view = DepthView()
    qtbot.addWidget(view)
    lo0, hi0 = view.decades["grad_norm"]
    view.refresh(rec)
    lo, hi = view.decades["grad_norm"]
    assert (lo, hi) == (lo0, 6) and view.hi_spin.value() == 6  # a decade above 3e4 for the legend
    rec.append("big", 1, {"grad_norm": np.array([1e-9, 1e-3, 1e-2], np.float32)})
    view.refresh(rec)
    assert view.decades["grad_norm"] == (lo0, 6)  # no shrinking back: small values stay small


def test_depth_profile_marks_exact_zeros_on_its_floor(qtbot):
    """A zero gradient has no place on a log axis, yet zeros init gives its hidden layers exactly
    that (and the demo's plain twin's first weights do not move in float32). Such layers get a
    triangle on the chart's floor, a row per run, and the key says "exactly 0"; unused (NaN)
    layers get nothing, and a profile without zeros has no such key entry."""
    from PySide6 import QtCore, QtGui

    from gradviz.gui.views.depth import ZERO_KEY, DepthView

    rec = Recording()
    for run in ("zeros", "normal"):
        rec.add_run(run, [f"l{i}" for i in range(5)], ["Linear"] * 5, [])
    rec.append("zeros", 0, {"grad_norm": np.array([0.0, 0.0, np.nan, 0.0, 0.3], np.float32)})
    rec.append("normal", 0, {"grad_norm": np.array([0.0, 1e-3, 1e-2, 1e-1, 1.0], np.float32)})
    view = DepthView()
    qtbot.addWidget(view)
    view.apply_theme(make_theme("light", presentation=True, screen_height=720))
    view.resize(600, 320)  # a short chart: rows a third of a decade apart used to overlap here
    view.show()
    view.refresh(rec)
    view.grab()
    vb = view.plot.getViewBox()
    bottom = vb.sceneBoundingRect().bottom()
    size = view.zeros["zeros"].opts["symbolSize"]
    rows = []
    for k, (run, xs) in enumerate((("zeros", [0, 1, 3]), ("normal", [0]))):
        x, y = view.zeros[run].getData()  # y in log10 units: the plot is in log mode
        assert list(x) == xs, run
        assert len(set(np.round(y, 9))) == 1, run  # one row per run
        rows.append(vb.mapViewToScene(QtCore.QPointF(float(x[0]), float(y[0]))).y())
        assert view.zeros[run].opts["symbolBrush"].color().name() == view.theme.run_color(k).lower()
    # on the floor, the first row whole inside the plot; the second a symbol above, not on top of it
    assert bottom - size <= rows[0] <= bottom - size / 2, (rows, bottom, size)
    assert rows[0] - rows[1] >= size, (rows, size)
    assert [label.text for _s, label in view.plot.legend.items] == ["zeros", "normal", ZERO_KEY]
    # the key's triangle is drawn as on the chart, in the foreground colour (it stands for every
    # run's): pyqtgraph's scatter kept its default small grey one for an item without data
    qtbot.wait(50)  # the key's row settles at the next layout pass
    img = view.widget.grab().toImage()
    sample = view.widget.mapFromScene(view.plot.legend.items[-1][0].sceneBoundingRect()).boundingRect()
    fg = QtGui.QColor(view.theme.foreground)
    inked = sum(
        1
        for px in range(int(sample.left()), int(sample.right()))
        for py in range(int(sample.top()), int(sample.bottom()))
        if sum(abs(a - b) for a, b in zip(QtGui.QColor(img.pixel(px, py)).getRgb()[:3], fg.getRgb()[:3], strict=True)) < 60
    )
    assert inked >= 0.25 * size * size, (inked, size)
    # auto-scaled: a decade below the least positive value (1e-3 here), not the moving axis floor
    view.set_fixed(False)
    y0 = view.zeros["zeros"].getData()[1][0]
    assert y0 == pytest.approx(-4.0), y0
    # no zeros left: no triangles and no key entry
    for run in ("zeros", "normal"):
        rec.append(run, 1, {"grad_norm": np.full(5, 0.5, np.float32)})
    view.refresh(rec)
    assert all(z.getData()[0] is None or len(z.getData()[0]) == 0 for z in view.zeros.values())
    assert [label.text for _s, label in view.plot.legend.items] == ["zeros", "normal"]


def test_activations_say_so_when_no_layer_feeds_an_activation(qtbot):
    """An LSTM's gates are inside its kernel and a linear model has none: every layer's saturation
    is NaN, and the empty plot used to look broken. It says why; with one value it says nothing."""
    from gradviz.gui.views.activations import NO_SATURATION, ActivationsView

    rec = Recording()
    rec.add_run("lstm", ["emb", "lstm", "fc"], ["Embedding", "LSTM", "Linear"], [])
    stats = {"act_mean": np.array([0.1, 0.0, -0.2]), "act_std": np.ones(3), "act_saturation": np.full(3, np.nan)}
    rec.append("lstm", 0, stats)
    view = ActivationsView()
    qtbot.addWidget(view)
    view.refresh(rec)
    note = view.no_saturation
    assert note.isVisible() and note.toPlainText() == NO_SATURATION
    x0, x1 = view.plots["act_saturation"].viewRange()[0]
    assert x0 <= note.pos().x() <= x1
    rec.append("lstm", 1, {**stats, "act_saturation": np.array([np.nan, np.nan, 0.4])})
    view.refresh(rec)
    assert not note.isVisible()


@pytest.mark.parametrize("presentation", [False, True])
def test_depth_legend_leaves_the_profile_visible(qtbot, presentation):
    """The demo's shapes on the default fixed axis: the legend used to sit on the residual twin's
    output-end layers (values near 1). It is a row above the plot now: no drawn point falls under it."""
    from PySide6 import QtCore

    from gradviz.gui.views.depth import DepthView

    n = 62
    rec = Recording()
    for run in ("plain", "residual"):
        rec.add_run(run, [f"l{i}" for i in range(n)], ["Linear"] * n, [])
    rec.append("plain", 0, {"grad_norm": np.logspace(-8, -1.2, n).astype(np.float32)})
    rec.append("residual", 0, {"grad_norm": np.linspace(1.5, 3.5, n).astype(np.float32)})
    view = DepthView()
    qtbot.addWidget(view)
    view.apply_theme(make_theme("light", presentation=presentation))
    view.resize(870, 560)
    view.show()
    view.refresh(rec)
    view.grab()
    legend = view.plot.legend.sceneBoundingRect()
    vb = view.plot.getViewBox()
    assert legend.bottom() <= vb.sceneBoundingRect().top() + 1, (legend, vb.sceneBoundingRect())
    for run, curve in view.curves.items():
        xs, ys = curve.getData()
        for x, y in zip(xs, ys, strict=True):
            at = vb.mapViewToScene(QtCore.QPointF(float(x), float(y)))
            assert not legend.contains(at), (run, x, 10 ** y)


def test_log_axes_label_decades_only_once_two_are_on_screen(views):
    """Minor ticks (2..9) lose their labels when two or more decades are on screen, and keep them
    otherwise (0.42 to 4.2 shows only the decade "1": its minor labels must stay)."""
    plot = views["loss"].plot
    axis = plot.getAxis("left")
    plot.setYRange(math.log10(0.03), math.log10(15), padding=0)
    for size in (400, 2000):  # a tall axis may put the decades on pyqtgraph's minor level too
        levels = axis.tickValues(*axis.range, size)
        shown = {}
        for spacing, vals in levels:
            for v, text in zip(vals, axis.tickStrings(vals, 1.0, spacing), strict=True):
                shown[round(float(v), 9)] = shown.get(round(float(v), 9)) or text
        decades = {v: t for v, t in shown.items() if abs(v - round(v)) < 1e-9}
        minors = {v: t for v, t in shown.items() if abs(v - round(v)) >= 1e-9}
        assert sorted(decades) == [-1.0, 0.0, 1.0] and all(decades.values()), shown
        assert minors and not any(minors.values()), shown
    for lo, hi in ((0.2, 0.9), (0.42, 4.2)):  # inside one decade; across one decade tick only
        plot.setYRange(math.log10(lo), math.log10(hi), padding=0)
        axis.range = plot.getViewBox().viewRange()[1]
        minor = [v for sp, vals in axis.tickValues(*axis.range, 400) if sp is None for v in vals]
        assert minor and all(axis.tickStrings(minor, 1.0, None)), (lo, hi)


def test_decade_labels_are_narrow_and_uniform():
    assert [decade_label(n) for n in (-10, -4, -3, -2, -1, 0, 1, 2, 3)] == [
        "10⁻¹⁰", "10⁻⁴", "10⁻³", "0.01", "0.1", "1", "10", "100", "10³"]


def test_step_axis_spaces_its_labels_for_the_font(qtbot):
    """Presentation fonts on a narrow axis: fewer labelled ticks, never overlapping ones."""
    from PySide6 import QtGui

    from gradviz.gui.views.base import SpacedAxis

    axis = SpacedAxis("bottom")
    small, big = QtGui.QFont(), QtGui.QFont()
    small.setPointSizeF(9)
    big.setPointSizeF(22)
    spacing = {}
    for name, font in (("small", small), ("big", big)):
        axis.setTickFont(font)
        levels = axis.tickSpacing(0.0, 800.0, 300.0)
        major = levels[0][0]
        spacing[name] = major
        label_px = QtGui.QFontMetricsF(font).horizontalAdvance("800")
        # room for half a label between two labels, or a tenth where that is what gives two
        # labels that pyqtgraph draws (it hides a label sticking out past either end: "0", "800")
        assert 300.0 * major / 800.0 >= label_px * 1.1
        assert round(major / 10 ** math.floor(math.log10(major)), 6) in (1, 2, 5)  # a 1-2-5 step
        inside = [v for v in np.arange(0.0, 800.0 + 1, major) if 300.0 * v / 800.0 >= label_px / 2 and 300.0 * (800.0 - v) / 800.0 >= label_px / 2]
        assert len(inside) >= 2  # two labels drawn
        if name == "small":
            assert 300.0 * major / 800.0 >= label_px * 1.5
        if len(levels) > 1:  # minor ticks between, unlabelled
            assert set(axis.tickStrings([levels[1][0]], 1.0, levels[1][0])) <= {""} or name == "small"
    assert spacing["big"] > spacing["small"]


def test_counting_axes_put_ticks_on_whole_numbers_only(qtbot):
    """A three-layer depth profile, a short loss curve: pyqtgraph would tick 0.5 and 1.5 (a half
    layer); the layer and step axes keep whole numbers, and still label more than one of them."""
    from gradviz.gui.views.base import SpacedAxis
    from gradviz.gui.views.depth import DepthView

    rec = Recording()
    rec.add_run("tiny", ["a", "b", "c"], ["Linear"] * 3, [])
    rec.append("tiny", 0, {"loss": 1.0, "grad_norm": np.array([1e-3, 1e-2, 1e-1], np.float32)})
    depth = DepthView()
    qtbot.addWidget(depth)
    depth.resize(900, 600)
    depth.refresh(rec)
    depth.grab()
    axis = depth.plot.getAxis("bottom")
    lo, hi = depth.plot.getViewBox().viewRange()[0]
    assert hi - lo < 4
    for size in (300.0, 900.0, 2000.0):
        levels = axis.tickValues(lo, hi, size)
        values = [float(v) for _, vals in levels for v in vals]
        assert values and all(abs(v - round(v)) < 1e-9 for v in values), (size, levels)
        labelled = [t for sp, vals in levels for t in axis.tickStrings(vals, 1.0, sp) if t]
        assert len(labelled) >= 2, (size, levels)
    plain, counting = SpacedAxis("bottom"), SpacedAxis("bottom", integer=True)
    assert plain.tickSpacing(-0.5, 2.5, 900.0)[-1][0] < 1  # what the counting axis prevents
    assert plain.tickSpacing(0.0, 800.0, 300.0) == counting.tickSpacing(0.0, 800.0, 300.0)  # long axes unchanged


@pytest.mark.parametrize("presentation", [False, True])
def test_eval_legend_sample_shows_its_dashes(views, recorded, presentation):
    """pyqtgraph's 20 px legend line held less than one dash of the thick presentation pen, so
    "eval (dashed)" looked solid. Paint the sample and count the dashes along its line."""
    from PySide6 import QtGui

    from gradviz.gui.views.base import LineSample

    view = views["loss"]
    view.apply_theme(make_theme("light", presentation=presentation))
    view.refresh(recorded[0])
    samples = {label.text: sample for sample, label in view.plot.legend.items}
    sample = samples["eval (dashed)"]
    assert isinstance(sample, LineSample)
    w = int(sample.width())
    img = QtGui.QImage(w, 20, QtGui.QImage.Format.Format_ARGB32)
    img.fill(QtGui.QColor("white"))
    painter = QtGui.QPainter(img)
    sample.paint(painter, None, None)
    painter.end()
    row = [QtGui.QColor(img.pixel(x, 11)).lightness() < 128 for x in range(w)]
    dashes = sum(1 for x in range(1, w) if row[x] and not row[x - 1]) + int(row[0])
    assert dashes >= 2, (presentation, w, row)
    solid = samples[next(iter(recorded[0].runs))]
    assert isinstance(solid, LineSample) and solid.width() >= 36


def test_presentation_axis_labels_fit_beside_their_ticks(views, recorded):
    """On a projector: each histogram plot's rotated value label fits the plot's height (the run's
    label ran into its neighbour's), and the heatmap colour bar's label starts right of its
    widest tick label (it was drawn across them)."""
    from PySide6 import QtGui

    theme = make_theme("light", presentation=True)
    rec = recorded[0]
    hist, heat = views["histograms"], views["heatmap"]
    for v in (hist, heat):
        v.apply_theme(theme)
        v.resize(1600, 900)
        v.refresh(rec)
        v.grab()
    for run, plot in hist.plots.items():
        axis = plot.getAxis("left")
        assert axis.label.sceneBoundingRect().height() <= axis.sceneBoundingRect().height(), run
    axis = heat.bar.axis
    lo, hi = axis.range
    shown = [t for sp, vals in axis.tickValues(lo, hi, axis.geometry().height()) for t in axis.tickStrings(vals, 1.0, sp)]
    widest = max(QtGui.QFontMetricsF(theme.font()).horizontalAdvance(t) for t in shown if t)
    label = axis.label.sceneBoundingRect()
    assert label.left() >= axis.sceneBoundingRect().left() + widest, (label, widest)


@pytest.mark.parametrize("presentation", [False, True])
def test_heatmap_images_keep_most_of_a_narrow_pane(views, recorded, presentation):
    """A 1024 x 768 projector gives the heatmap a pane about 265 px wide: with fixed axis widths the
    run and colour-bar axes took 200 px of it and left the images 40. Narrow, the bar drops its label
    (the title states the unit) and the axes are sized from the font; wide, the label is back."""
    theme = make_theme("light", presentation=presentation, screen_height=768 if presentation else None)
    heat = views["heatmap"]
    heat.apply_theme(theme)
    for width, narrow in ((265, True), (1200, False)):
        heat.resize(width, 600)
        heat.refresh(recorded[0])
        heat.grab()
        image_w = min(p.getViewBox().width() for p in heat.plots.values())
        label = heat.bar.axis.label
        if narrow:
            assert image_w >= 0.3 * width, (presentation, width, image_w)
            assert not (label.isVisible() and label.toPlainText())
        else:
            assert image_w >= 0.6 * width, (presentation, width, image_w)
            assert label.isVisible() and "log10" in label.toPlainText()


@pytest.mark.parametrize("width", [280, 1200])
def test_loss_key_sits_above_the_curves_and_fits_the_pane(views, recorded, width):
    """Inside the plot the legend covered the curves' top right (a third of them with four runs),
    and in a narrow pane it was wider than the plot and lost its line samples off the left edge. It
    is a row between the title and the plot now, as many columns as fit, every entry inside the pane."""
    view = views["loss"]
    view.apply_theme(make_theme("light", presentation=True, screen_height=768))
    view.resize(width, 600)
    view.refresh(recorded[0])
    view.grab()
    legend, vb = view.legend, view.plot.getViewBox()
    names = [label.text for _sample, label in legend.items]
    # the shorter "eval" only where the full wording would leave the key one column
    assert names[:-1] == recorded[0].runs and names[-1] in ("eval (dashed)", "eval")
    assert names[-1] == "eval (dashed)" or legend.columnCount >= 2
    key = legend.sceneBoundingRect()
    data = vb.sceneBoundingRect()
    assert key.bottom() <= data.top() + 1, (key, data)
    for sample, label in legend.items:
        for item in (sample, label):
            r = item.sceneBoundingRect()
            assert r.left() >= -1 and r.right() <= view.widget.width() + 1, (width, label.text, r)
    if width >= 1200:
        assert legend.columnCount == len(names) and names[-1] == "eval (dashed)"  # one row where it fits
    # every sample sits next to its name, however wide the dashed "eval" sample makes the column
    for sample, label in legend.items:
        gap = label.sceneBoundingRect().left() - sample.sceneBoundingRect().right()
        assert -1 <= gap <= 12, (width, label.text, gap)


def _draw_view(qtbot, view, rec, size: tuple[int, int], theme=None):
    """`view` in `theme`, resized to `size`, drawn from `rec`; returned."""
    qtbot.addWidget(view)
    if theme is not None:
        view.apply_theme(theme)
    view.resize(*size)
    view.refresh(rec)
    view.grab()
    return view


def test_the_vanishing_label_sits_at_the_output_end_of_its_band(qtbot):
    """The band's "vanishing" sat at its top left, where a deep plain stack's profiles enter the
    band: six runs' curves covered it. It sits at the top right now, inside the plot, where the
    profiles run high above the band."""
    from gradviz.gui.views.depth import DepthView

    rec = Recording()
    rec.add_run("deep", [f"l{i}" for i in range(20)], ["Linear"] * 20, [])
    rec.append("deep", 0, {"loss": 1.0, "grad_norm": np.logspace(-9, -1, 20).astype(np.float32)})
    depth = _draw_view(qtbot, DepthView(), rec, (800, 500))
    label, band = depth.band_label, depth.band.rect()
    assert label.isVisible() and label.toPlainText() == "vanishing"
    assert label.pos().x() == pytest.approx(19.5) and label.pos().y() == pytest.approx(-5.0)  # log10 of 1e-5
    box = label.mapRectToView(label.boundingRect())
    (x0, x1), (y0, y1) = depth.plot.viewRange()
    assert x0 <= box.left() and box.right() <= x1  # inside the plot
    assert min(box.top(), box.bottom()) >= -5.0 - 1e-6 and max(box.top(), box.bottom()) <= y1  # just above the band
    assert box.right() <= band.right() + 1e-9 and box.center().x() > 10  # the output half


def _hover_recording() -> Recording:
    rec = Recording()
    names, types = ["emb", "gru", "attn", "attn.out_proj", "ln", "head"], ["Embedding", "GRU", "MultiheadAttention", "Linear", "LayerNorm", "Linear"]
    rec.add_run("mine", names, types, [])
    rec.add_run("twin", ["e", "g", "a", "o", "n", "h"], types, [])
    for step in range(5):
        g = np.array([0.03, 0.6, 0.2, 0.0, np.nan, 0.4 + step], np.float32)
        rec.append("mine", step, {"loss": 1.0, "grad_norm": g})
        rec.append("twin", step, {"loss": 1.0, "grad_norm": np.where(np.isnan(g), 0.7, g * 2)})
    return rec


def test_depth_profile_names_the_layer_under_the_pointer(qtbot):
    """The x axis gives layer indices; hovering says which layer (name and type, both runs'
    names where they differ) and each run's latest value."""
    from PySide6 import QtCore

    rec = _hover_recording()
    depth = _draw_view(qtbot, DepthView(), rec, (800, 500))
    vb = depth.plot.getViewBox()
    at = lambda x, y: vb.mapViewToScene(QtCore.QPointF(x, y))  # noqa: E731
    depth._on_hover(at(5.2, -1.0))
    assert "head (Linear)" in vb.toolTip()  # what the scene shows once the pointer rests
    assert depth.hover_text.splitlines() == [
        "layer 5: head (Linear) / h (Linear)",
        f"mine: ‖∂L/∂W‖ = {np.float32(4.4):.3g} at step 4",
        f"twin: ‖∂L/∂W‖ = {np.float32(8.8):.3g} at step 4",
    ]
    depth._on_hover(at(3.9, -1.0))
    assert "layer 4: ln (LayerNorm) / n (LayerNorm)" in depth.hover_text and "mine: ‖∂L/∂W‖ = not used" in depth.hover_text
    depth._on_hover(at(3.0, -1.0))
    assert "mine: ‖∂L/∂W‖ = 0 (exactly) at step 4" in depth.hover_text
    assert depth.reading_at(3.8).startswith("layer 4:")  # the twin has a value there
    depth._on_hover(QtCore.QPointF(-50.0, -50.0))  # off the plot
    assert depth.hover_text == ""
    # a resting pointer's readout follows the training at each redraw, while over the chart
    depth.pointer_moved(at(5.2, -1.0))
    rec.append("mine", 5, {"loss": 1.0, "grad_norm": np.array([0.03, 0.6, 0.2, 0.0, np.nan, 9.5], np.float32)})
    depth.refresh(rec)
    assert "at step 4" in depth.hover_text  # the pointer is not over the window: left as it was
    depth.setAttribute(QtCore.Qt.WidgetAttribute.WA_UnderMouse, True)
    rec.append("mine", 6, {"loss": 1.0, "grad_norm": np.array([0.03, 0.6, 0.2, 0.0, np.nan, 9.75], np.float32)})
    depth.refresh(rec)
    assert "mine: ‖∂L/∂W‖ = 9.75 at step 6" in depth.hover_text
    # an index no run has a value at (a switched-off norm between two layers) is passed over for
    # the nearest one that has
    for run in ("mine", "twin"):
        rec.append(run, 7, {"loss": 1.0, "grad_norm": np.array([0.03, 0.6, 0.2, 0.0, np.nan, 0.4], np.float32)})
    depth.refresh(rec)
    assert depth.reading_at(3.8).startswith("layer 3:") and depth.reading_at(4.6).startswith("layer 5:")


def test_activations_name_the_layer_under_the_pointer(qtbot):
    from PySide6 import QtCore

    from gradviz.gui.views.activations import ActivationsView

    rec = _hover_recording()
    rec.set_meta({"config": {"model": {"activation": "tanh", "kind": "mlp"}}})
    nan = np.nan
    stats = {"act_mean": np.array([0.1, -0.2, 0.0, 0.3, 0.05, nan]), "act_std": np.array([0.5] * 5 + [nan]), "act_saturation": np.array([0.25, 0.5, nan, 0.0, 0.1, nan])}
    rec.append("mine", 5, {"loss": 1.0, **stats})
    rec.append("twin", 5, {"loss": 1.0, "act_mean": np.zeros(6), "act_std": np.ones(6), "act_saturation": np.zeros(6)})
    acts = _draw_view(qtbot, ActivationsView(), rec, (900, 500))
    vb = acts.plots["act_std"].getViewBox()
    acts._on_hover(vb.mapViewToScene(QtCore.QPointF(1.1, 0.5)))
    assert acts.hover_text == "layer 1: gru (GRU) / g (GRU)\nmine: mean -0.2, std 0.5, saturated fraction 0.5 at step 5\ntwin: mean 0, std 1, saturated fraction 0 at step 5"
    assert "gru (GRU)" in vb.toolTip()
    acts._on_hover(acts.plots["act_saturation"].getViewBox().mapViewToScene(QtCore.QPointF(2.0, 0.5)))
    assert "mine: mean 0, std 0.5, saturated fraction none at step 5" in acts.hover_text
    assert vb.toolTip() == ""  # the plot left behind drops its readout
    # a layer with none of the three (a switched-off norm; here past the plots' drawn range)
    assert acts.reading_at(5.2).splitlines()[:2] == ["layer 5: head (Linear) / h (Linear)", "mine: not used at step 5"]
    acts._on_hover(QtCore.QPointF(-50.0, -50.0))
    assert acts.hover_text == ""


def test_loss_chart_reads_each_run_at_the_step_under_the_pointer(qtbot):
    from PySide6 import QtCore

    from gradviz.gui.views.loss import LossView

    rec = Recording()
    for run in ("plain", "residual"):
        rec.add_run(run, ["l0"], ["Linear"], [])
    for step in range(10):
        rec.append("plain", step, {"loss": step + 1.0, **({"eval_loss": 0.5 + step} if step % 5 == 0 else {})})
        rec.append("residual", step, {"loss": 0.1 * (step + 1)})
    view = _draw_view(qtbot, LossView(), rec, (700, 500))
    vb = view.plot.getViewBox()
    view._on_hover(vb.mapViewToScene(QtCore.QPointF(6.4, 0.0)))
    assert view.hover_text.splitlines() == ["plain: loss 7 at step 6, eval 5.5 at step 5", "residual: loss 0.7 at step 6"]
    assert "eval 5.5" in vb.toolTip()
    assert view.reading_at(-3.0).splitlines()[0] == "plain: loss 1 at step 0, eval 0.5 at step 0"
    assert view.reading_at(40.0).splitlines()[1] == "residual: loss 1 at step 9"
    view._on_hover(QtCore.QPointF(-50.0, -50.0))
    assert view.hover_text == ""


def test_histograms_read_the_bin_under_the_pointer(qtbot):
    from PySide6 import QtCore

    from gradviz.gui.views.histograms import HistogramsView

    rec = Recording()
    edges = np.linspace(-1.0, 1.0, 5)  # bins: below -0.5 | -0.5 to 0 | 0 to 0.5 | 0.5 and above
    for run in ("plain", "residual"):
        rec.add_run(run, ["l0", "l1"], ["Linear", "Linear"], [])
        rec.set_edges(run, "weight", 1, edges)
    for step in (0, 10, 20):
        rec.append_histograms("plain", step, "weight", {1: np.array([1.0, 2.0 + step, 3.0, 4.0])})
        rec.append_histograms("residual", step, "weight", {1: np.array([0.0, 5.0, 5.0, step])})
        for run in ("plain", "residual"):
            rec.append(run, step, {"loss": 1.0})
    hist = _draw_view(qtbot, HistogramsView(), rec, (700, 800))
    assert hist.layer == 1
    vb = hist.plots["plain"].getViewBox()
    hist._on_hover(vb.mapViewToScene(QtCore.QPointF(12.0, -0.25)))
    assert hist.hover_text == "plain · step 10: -0.5 to 0: 12 of 20 values"
    assert "step 10" in vb.toolTip()
    lv = hist.latest.getViewBox()
    hist._on_hover(lv.mapViewToScene(QtCore.QPointF(0.9, 1.0)))
    assert hist.hover_text.splitlines() == ["plain: 0.5 and above: 4 of 30 values at step 20", "residual: 0.5 and above: 20 of 30 values at step 20"]
    assert vb.toolTip() == ""
    assert hist.reading_at(None, QtCore.QPointF(-3.0, 0.0)).startswith("plain: below -0.5: 1 of 30")
    hist._on_hover(QtCore.QPointF(-50.0, -50.0))
    assert hist.hover_text == ""


def test_heatmap_names_the_cell_under_the_pointer(qtbot):
    from PySide6 import QtCore

    from gradviz.gui.views.heatmap import HeatmapView

    rec = _hover_recording()
    heat = _draw_view(qtbot, HeatmapView(), rec, (700, 600))
    rows = list(heat._rows["twin"][0])
    assert 4 not in heat._rows["mine"][0] and 4 in rows  # a layer that never had a gradient has no row
    vb = heat.plots["twin"].getViewBox()
    heat._on_hover(vb.mapViewToScene(QtCore.QPointF(3.4, rows.index(5) + 0.5)))
    assert heat.hover_text == f"twin · layer 5: h (Linear)\nstep 3: ‖∂L/∂W‖ = {np.float32(6.8):.3g}"
    # the strip's own tooltip too: the scene shows the item's tooltip once the pointer rests,
    # and hid the readout where the item had none
    assert "step 3" in vb.toolTip() and heat.plots["mine"].getViewBox().toolTip() == ""
    heat._on_hover(vb.mapViewToScene(QtCore.QPointF(0.2, rows.index(3) + 0.5)))
    assert heat.hover_text.endswith("step 0: ‖∂L/∂W‖ = 0 (exactly)")
    vb = heat.plots["mine"].getViewBox()
    heat._on_hover(vb.mapViewToScene(QtCore.QPointF(1.5, rows.index(0) + 0.5)))
    assert heat.hover_text.startswith("mine · layer 0: emb (Embedding)\nstep 1: ")
    heat._on_hover(QtCore.QPointF(-50.0, -50.0))
    assert heat.hover_text == ""


def test_eval_loss_is_drawn_above_the_training_curve_and_marked(qtbot):
    """The eval curve, dashed in its run's colour, was lost among the noisy per-batch training
    curve of the same colour (the demo's residual twin). It is drawn above the training curves,
    each evaluation a hollow marker while there are few enough to tell apart."""
    from PySide6 import QtGui

    from gradviz.gui.views.loss import EVAL_MARKERS_UPTO, LossView

    rec = Recording()
    rec.add_run("residual", ["l0"], ["Linear"], [])
    rng = np.random.default_rng(0)
    for step in range(200):
        row = {"loss": float(np.exp(rng.normal(-3, 1)))}
        if step % 25 == 0:
            row["eval_loss"] = 0.05
        rec.append("residual", step, row)
    view = _draw_view(qtbot, LossView(), rec, (700, 500))
    train, ev = view.curves[("residual", "loss")], view.curves[("residual", "eval_loss")]
    assert ev.zValue() > train.zValue()
    assert ev.opts["symbol"] == "o" and train.opts["symbol"] is None
    assert ev.opts["symbolPen"].color().name() == train.opts["pen"].color().name()  # the run's colour
    assert ev.opts["symbolBrush"].color().name() == QtGui.QColor(view.theme.background).name()  # hollow
    np.testing.assert_array_equal(ev.getData()[0], np.arange(0, 200, 25))
    for step in range(200, 25 * (EVAL_MARKERS_UPTO + 1)):  # many evaluations: the line alone
        rec.append("residual", step, {"loss": 0.1, **({"eval_loss": 0.05} if step % 25 == 0 else {})})
    view.refresh(rec)
    assert ev.opts["symbol"] is None and ev.zValue() > train.zValue()


def test_a_four_run_loss_key_keeps_two_columns_in_a_narrow_pane(qtbot):
    """The init preset's four runs in the pane beside the depth profile (370 px, presentation
    text): "eval (dashed)" made every column too wide, and the key stacked one name per line, a
    third of the pane. It says "eval" there (its sample is dashed) and keeps two columns; given the
    room again it says "eval (dashed)"."""
    from gradviz.gui.views.loss import LossView

    rec = Recording()
    for run in ("zeros", "normal", "xavier", "he"):
        rec.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
        for i in range(10):
            rec.append(run, i, {"loss": 1.0 / (i + 1), **({"eval_loss": 1.2 / (i + 1)} if i % 5 == 0 else {})})
    view = _draw_view(qtbot, LossView(), rec, (370, 600), make_theme("light", presentation=True, screen_height=720))
    legend = view.legend
    assert [label.text for _s, label in legend.items] == [*rec.runs, "eval"]
    assert legend.columnCount >= 2
    assert legend.sceneBoundingRect().right() <= view.widget.width() + 1
    view.resize(1400, 600)
    view.grab()
    assert [label.text for _s, label in legend.items] == [*rec.runs, "eval (dashed)"]


def test_pool_rows_keeps_each_pixel_row_the_largest_of_its_bins():
    from gradviz.gui.views.base import pool_rows

    image = np.arange(64 * 3, dtype=np.float32).reshape(64, 3) % 7
    same, span = pool_rows(image, 200.0)
    assert same is image and span == 1.0
    pooled, span = pool_rows(image, 25.0)  # 3 bins a row, the last row padded
    assert pooled.shape == (22, 3) and span == pytest.approx(66 / 64)
    for r in range(22):
        np.testing.assert_array_equal(pooled[r], image[3 * r : 3 * r + 3].max(axis=0))
    logs = image.copy()
    logs[5:7, 0] = np.nan  # a layer without a gradient at that step
    logs[6:9, 1] = np.nan  # a whole group of them
    means, span = pool_rows(logs, 25.0, "mean")
    assert means.shape == (22, 3)
    assert means[1, 0] == pytest.approx(float(logs[3, 0] + logs[4, 0]) / 2) and np.isnan(means[2, 1])
    np.testing.assert_allclose(means[10], logs[30:33].mean(axis=0))


def test_heatmap_rows_are_labelled_with_round_layer_numbers():
    """A DenseNet's 242 layers were labelled 0, 31, 62, 93, ...; the demo's 62, whose switched-off
    norms have no row, 0, 7, 15, 23, .... Many layers get round numbers (0, 50, 100 / 0, 10, 20) at
    their place among the rows; a few keep the rows' own indices."""
    from gradviz.gui.views.heatmap import row_ticks

    dense = row_ticks(np.arange(242), 31)
    assert [t for _y, t in dense] == ["0", "50", "100", "150", "200"]
    assert [y for y, _t in dense] == [0.5, 50.5, 100.5, 150.5, 200.5]
    demo = np.array([0, *range(1, 61, 2), 61])  # input, 30 Linear rows, head: the norms have none
    ticks = row_ticks(demo, 4)
    assert [t for _y, t in ticks] == ["0", "10", "20", "30", "40", "50", "60"]
    for y, t in ticks:  # each at its layer's place: between the rows of the layers around it
        below = np.searchsorted(demo, int(t), side="right") - 1
        assert below + 0.5 <= y <= below + 1.5, (t, y)
    assert [t for _y, t in row_ticks(np.array([0, 2]), 1)] == ["0", "2"]  # a few rows: their own indices
    assert [t for _y, t in row_ticks(np.arange(12), 2)] == ["0", "2", "4", "6", "8", "10"]


def test_heatmap_fills_a_layer_switched_off_for_part_of_the_window(qtbot):
    """BatchNorm switched on and off again: while off, its layer has no gradient (NaN). Drawn
    transparent, those cells striped the plain twin's whole image with background; the image gives
    them the value of the layer below, the CSV keeps the NaN."""
    from gradviz.core.recording import Recording
    from gradviz.gui.views.heatmap import HeatmapView

    rec = Recording()
    rec.add_run("plain", ["fc0", "norm0", "fc1"], ["Linear", "BatchNorm1d", "Linear"], [])
    on = {2, 3}
    for step in range(6):
        norm = 0.02 if step in on else np.nan
        rec.append("plain", step, {"loss": 1.0, "grad_norm": np.array([0.001 * (step + 1), norm, 0.5], np.float32)})
    view = HeatmapView()
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.refresh(rec)
    img = view.images["plain"].image
    assert img.shape == (3, 6)
    assert not np.isnan(img).any()
    fc0 = np.log10(0.001 * (np.arange(6) + 1))
    expect_norm = np.where(np.isin(np.arange(6), list(on)), np.log10(0.02), fc0)
    np.testing.assert_allclose(img[1], expect_norm, rtol=1e-5)
    np.testing.assert_allclose(img[0], fc0, rtol=1e-5)
    header, rows = view.csv()
    assert [np.isnan(r[2]) for r in rows] == [s not in on for s in range(6)]


def test_fill_unused_cells_takes_the_row_below_else_above():
    from gradviz.gui.views.heatmap import fill_unused_cells

    nan = np.nan
    logv = np.array([[nan, 1.0, nan], [nan, nan, nan], [3.0, 2.0, nan]], np.float32)
    out = fill_unused_cells(logv)
    # column 0: rows 0 and 1 have nothing below, so take row 2; column 1: row 1 takes row 0;
    # column 2: nothing at all, left transparent
    np.testing.assert_array_equal(out[:, 0], [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(out[:, 1], [1.0, 1.0, 2.0])
    assert np.isnan(out[:, 2]).all()
    assert np.isnan(logv[1, 1])  # the caller's array is left as it was


def test_heatmap_with_more_layers_than_pixels_draws_their_means(qtbot):
    """A 200-block twin has 402 layers: in a plot 200 px high the image lost half its rows to Qt's
    scaling. It is handed over pooled, one row per pixel at most, each the mean of its layers."""
    from gradviz.gui.views.heatmap import HeatmapView

    rec = Recording()
    n = 402
    rec.add_run("plain", [f"l{i}" for i in range(n)], ["Linear"] * n, [])
    for step in range(8):
        rec.append("plain", step, {"loss": 1.0, "grad_norm": np.logspace(-9, 0, n).astype(np.float32)})
    view = HeatmapView()
    qtbot.addWidget(view)
    view.resize(500, 300)
    view.show()
    view.refresh(rec)
    vb = view.plots["plain"].getViewBox()
    qtbot.waitUntil(lambda: 0 < view.images["plain"].image.shape[0] <= vb.height() + 1, timeout=3000)
    drawn = view.images["plain"].image
    k = int(np.ceil(n / vb.height()))
    logs = np.log10(np.logspace(-9, 0, n).astype(np.float32))
    np.testing.assert_allclose(drawn[0], np.full(drawn.shape[1], logs[:k].mean()), rtol=1e-5)
    header, rows = view.csv()
    assert len(header) == 1 + n  # the CSV keeps every layer


@pytest.mark.parametrize("height", [400, 450, 500, 540])
def test_a_histogram_in_one_bin_stays_visible_in_a_short_plot(qtbot, height):
    """The zeros-initialised run's weights all sit in one of 64 bins: in a plot thirty-odd pixels
    high Qt's scaling dropped that row under X and the image was blank. Every height shows it."""
    from PySide6 import QtGui

    from gradviz.gui.views.histograms import HistogramsView

    rec = Recording()
    for run in ("zeros", "b", "c", "d"):
        rec.add_run(run, ["l0"], ["Linear"], [])
        rec.set_edges(run, "weight", 0, np.linspace(-1, 1, 65))
        for step in range(0, 500, 25):
            counts = np.zeros(64, np.float32)
            counts[33 if run == "zeros" else slice(20, 44)] = 1024 if run == "zeros" else 40
            rec.append_histograms(run, step, "weight", {0: counts})
            rec.append(run, step, {"loss": 1.0})
    view = HistogramsView()
    qtbot.addWidget(view)
    view.apply_theme(make_theme("dark", presentation=True, screen_height=720))
    view.resize(370, height)
    view.show()
    view.refresh(rec)
    vb = view.plots["zeros"].getViewBox()
    # the rows settle, then the view draws again for the heights they got: what Qt is handed has
    # no more rows than the plot has pixels
    qtbot.waitUntil(lambda: 0 < view.images["zeros"].image.shape[0] <= vb.height() + 1, timeout=3000)
    image = view.grab().toImage()
    rect = vb.mapRectToScene(vb.boundingRect()).toRect()
    assert rect.height() < 64  # fewer pixels than bins: the case that lost the row under X
    assert view.images["zeros"].image.max() == pytest.approx(np.log1p(1024.0))  # the bin's peak kept
    bright = max(
        QtGui.QColor(image.pixel(x, y)).lightness()
        for y in range(rect.top() + 1, rect.bottom() - 1)
        for x in range(rect.left() + 5, rect.right() - 5, 7)
    )
    assert bright > 150, (height, rect, bright)


def test_views_fill_their_selectors_when_runs_arrive_after_the_window(qtbot):
    """Live sessions: the window shows the recording before the training process adds its runs."""
    from gradviz.gui.views.activations import ActivationsView
    from gradviz.gui.views.histograms import HistogramsView

    rec = Recording()
    hist, acts = HistogramsView(), ActivationsView()
    for v in (hist, acts):
        qtbot.addWidget(v)
        v.refresh(rec)
    assert hist.layer_box.count() == 0
    rec.set_meta({"config": {"model": {"activation": "relu", "kind": "mlp"}}})
    rec.add_run("plain", ["0.linear", "1.linear"], ["Linear", "Linear"], [])
    rec.set_edges("plain", "weight", 1, np.linspace(-1, 1, 5))
    rec.append_histograms("plain", 0, "weight", {1: np.array([1.0, 2.0, 3.0, 4.0])})
    rec.append("plain", 0, {"loss": 1.0, "act_std": np.array([0.5, 0.4])})
    for v in (hist, acts):
        v.refresh(rec)
    assert [hist.layer_box.itemText(i) for i in range(2)] == ["0: 0.linear", "1: 1.linear"]
    assert acts.plots["act_saturation"].titleLabel.text.startswith("dead fraction")


def test_histograms_start_on_the_first_layer_that_is_not_a_norm(qtbot):
    """ConvNeXt's layer 1 is its stem's LayerNorm: the default "layer 1" showed its weights, all 1
    at the start, as one bar. The view starts on the first layer after the input that is not a
    norm; a layer the user picks stays picked when a new recording arrives."""
    from gradviz.gui.views.histograms import HistogramsView

    def recording(types):
        rec = Recording()
        rec.add_run("r", [f"l{i}" for i in range(len(types))], types, [])
        rec.append("r", 0, {"loss": 1.0})
        return rec

    hist = HistogramsView()
    qtbot.addWidget(hist)
    hist.refresh(recording(["Conv2d", "LayerNorm2d", "LayerNorm", "Conv2d", "Linear"]))
    assert hist.layer == 3 and hist.layer_box.currentText() == "3: l3"
    hist.refresh(recording(["Linear", "Linear", "BatchNorm1d"]))  # the demo's order: layer 1 as before
    assert hist.layer == 1 and "l1" in hist._title()
    hist.refresh(recording(["Linear", "GroupNorm"]))  # nothing else: the input layer
    assert hist.layer == 0
    hist.refresh(recording(["Conv2d", "LayerNorm2d", "Conv2d", "Conv2d"]))
    hist.layer_box.setCurrentIndex(1)  # the user's pick, a norm layer on purpose
    hist.refresh(recording(["Conv2d", "LayerNorm2d", "Conv2d", "Conv2d", "Linear"]))
    assert hist.layer == 1 and hist.layer_box.currentIndex() == 1


def test_activation_axis_titles_fit_their_plots_on_a_projector(qtbot):
    """Stacked beside the depth profile each plot is about a hundred pixels high: the rotated
    "dead fraction (ReLU = 0)" was longer and lost both ends. The axis says "fraction", the plot's
    title the whole."""
    from gradviz.gui.views.activations import ActivationsView

    rec = Recording()
    rec.set_meta({"config": {"model": {"kind": "mlp", "activation": "relu"}}})
    rec.add_run("mine", ["a", "b", "c"], ["Linear"] * 3, [])
    for step in range(3):
        rec.append("mine", step, {"loss": 1.0, "act_mean": np.ones(3), "act_std": np.ones(3), "act_saturation": np.full(3, 0.5)})
    view = _draw_view(qtbot, ActivationsView(), rec, (330, 640), make_theme("light", presentation=True, screen_height=768))
    sat = view.plots["act_saturation"]
    assert sat.titleLabel.text == "dead fraction (ReLU = 0)"
    for stat, plot in view.plots.items():
        axis = plot.getAxis("left")
        assert axis.label.sceneBoundingRect().height() <= axis.sceneBoundingRect().height() + 1, stat
    # a narrow pane shows a shorter wording whole, not "dead fraction (ReLU…"
    drawn = sat.titleLabel.item.toPlainText()
    assert drawn in ("dead fraction (ReLU = 0)", "dead fraction", "dead"), drawn
    view.resize(250, 640)
    view.grab()
    assert sat.titleLabel.item.toPlainText() in ("dead fraction", "dead"), sat.titleLabel.item.toPlainText()
    assert sat.titleLabel.item.document().idealWidth() <= sat.titleLabel.rect().width() + 1
    view.resize(1400, 640)  # room again: the whole title
    view.grab()
    assert sat.titleLabel.item.toPlainText() == "dead fraction (ReLU = 0)"


@pytest.mark.parametrize(("meta", "label"), [
    ({"kind": "watch", "activation": "relu"}, "dead fraction (ReLU = 0)"),
    ({"kind": "watch", "activation": "tanh"}, "saturated fraction"),
    ({"config": {"model": {"kind": "mlp", "activation": "relu"}}}, "dead fraction (ReLU = 0)"),
    ({"config": {"model": {"kind": "mlp", "activation": "sigmoid"}}}, "saturated fraction"),
    # a watched BERT: GELU feed-forwards counted dead, a tanh pooler saturated, each layer for its own
    ({"kind": "watch", "activation": "mixed", "layer_activation": {"a": "relu", "b": "tanh"}}, "saturated (tanh, sigmoid) or dead (ReLU) fraction"),
    ({"kind": "watch", "activation": "mixed", "layer_activation": {"a": "sigmoid", "b": "tanh"}}, "saturated fraction"),
])
def test_saturation_plot_names_what_was_counted(qtbot, meta, label):
    """A `gradviz.watch` run of a ReLU network counts dead units: its plot says so, as an engine
    run's does from its config."""
    from gradviz.gui.views.activations import ActivationsView

    rec = Recording()
    rec.set_meta(meta)
    rec.add_run("mine", ["a", "b"], ["Conv2d", "Linear"], [])
    rec.append("mine", 0, {"loss": 1.0, "act_saturation": np.array([0.5, 0.4])})
    acts = ActivationsView()
    qtbot.addWidget(acts)
    acts.refresh(rec)
    plot = acts.plots["act_saturation"]
    assert plot.titleLabel.text == label and plot.getAxis("left").labelText == "fraction"


def test_a_mixed_run_marks_which_layers_count_saturated_units(qtbot):
    """A watched MobileNet counts dead units before its Hardswish layers and saturated ones before
    its Hardsigmoid gates: one line joined both. Two series now: the dead-counted layers as dots on
    a solid line, the saturated-counted ones as hollow triangles on a dashed one, and the key says
    which is which; a run of one kind keeps its one curve."""
    import pyqtgraph as pg
    from PySide6 import QtCore

    from gradviz.gui.views.activations import MIXED_NOTE, ActivationsView

    rec = Recording()
    rec.set_meta({"kind": "watch", "activation": "mixed", "layer_activation": {"a": "relu", "b": "hardsigmoid", "c": "relu"}})
    rec.add_run("mine", ["a", "b", "c", "d"], ["Conv2d"] * 4, [])
    rec.append("mine", 0, {"loss": 1.0, "act_mean": np.zeros(4), "act_saturation": np.array([0.5, 0.1, 0.4, np.nan])})
    acts = ActivationsView()
    qtbot.addWidget(acts)
    acts.refresh(rec)
    dots, tris = acts.marks["mine"]
    assert not acts.curves[("mine", "act_saturation")].isVisible()  # two series instead of one curve
    assert dots.opts["pen"].style() == QtCore.Qt.PenStyle.SolidLine and tris.opts["pen"].style() != QtCore.Qt.PenStyle.SolidLine
    assert dots.isVisible() and list(dots.xData) == [0, 2] and list(dots.yData) == pytest.approx([0.5, 0.4])
    assert tris.isVisible() and list(tris.xData) == [1] and list(tris.yData) == pytest.approx([0.1]) and tris.opts["symbol"] == "t1"
    assert MIXED_NOTE in acts.key.full_text
    from gradviz.gui.theme import make_theme

    acts.apply_theme(make_theme("dark"))  # made again in the new colours
    dots, tris = acts.marks["mine"]
    assert list(tris.xData) == [1] and tris.opts["symbolBrush"].color().name() == "#111111"
    # every dot in the dark palette's colour, as its line (the mean's dots kept the light one's)
    line = acts.curves[("mine", "act_mean")].opts["pen"].color().name()
    assert pg.mkBrush(acts.curves[("mine", "act_mean")].opts["symbolBrush"]).color().name() == line == dots.opts["symbolBrush"].color().name()

    one = Recording()
    one.set_meta({"kind": "watch", "activation": "relu"})
    one.add_run("mine", ["a", "b"], ["Conv2d"] * 2, [])
    one.append("mine", 0, {"loss": 1.0, "act_mean": np.zeros(2), "act_saturation": np.array([0.5, 0.4])})
    acts.refresh(one)
    assert acts.curves[("mine", "act_saturation")].isVisible() and acts.curves[("mine", "act_saturation")].opts["symbol"] == "o"
    assert not any(c.isVisible() for items in acts.marks.values() for c in items)
    assert MIXED_NOTE not in acts.key.full_text


def test_an_event_marker_says_short_and_its_tooltip_says_all(qtbot):
    """A watch's warning (a sentence) and a non-finite gradient's message were the markers' labels
    and tooltips both, or "non-finite" in both: the label stays short, the tooltip has the sentence."""
    import pyqtgraph as pg

    from gradviz.core.recording import Event
    from gradviz.gui.views.base import Markers

    w = pg.GraphicsLayoutWidget()
    qtbot.addWidget(w)
    plot = w.addPlot()
    plot.setXRange(0, 100, padding=0)
    markers = Markers(plot)
    markers.theme = make_theme("light")
    grown = "gradviz.watch: the model has parameters it did not have when the watch began (extra.0.weight)"
    bad = "plain: non-finite gradient at step 40, first in layer blocks.3.linear"
    markers.update([Event(30, "mine", "warning", grown), Event(40, "plain", "nonfinite", bad), Event(50, "plain", "toggle", "norm on")], force=True)
    got = {ln.label.toPlainText(): ln.toolTip() for ln in markers.lines}
    assert got == {"mine: warning": f"step 30: mine: {grown}", "plain: non-finite": f"step 40: {bad}", "plain: norm on": "step 50: plain: norm on"}


def test_close_event_markers_do_not_write_over_each_other(qtbot):
    """B then D a second apart in a 100 px histogram strip: "plain: norm on" was drawn over
    "plain: dropout p=0.5", and both ran off the bottom. A label shows only where it reads whole
    and clear of the next one (the later event keeps its label); the line's tooltip has the text."""
    import pyqtgraph as pg

    from gradviz.core.recording import Event
    from gradviz.gui.views.base import Markers

    w = pg.GraphicsLayoutWidget()
    qtbot.addWidget(w)
    plot = w.addPlot()
    plot.setXRange(0, 700, padding=0)
    plot.setYRange(0, 1, padding=0)
    markers = Markers(plot)
    markers.theme = make_theme("light", True, 768)
    events = [Event(505, "plain", "toggle", "norm on"), Event(520, "plain", "toggle", "dropout p=0.5"), Event(100, "plain", "toggle", "residual on")]

    def shown() -> dict[str, bool]:
        return {ln.label.toPlainText(): ln.label.isVisible() for ln in markers.lines}

    for size, want in (((300, 160), {"plain: norm on": False, "plain: dropout p=0.5": False, "plain: residual on": False}),
                       ((300, 420), {"plain: norm on": False, "plain: dropout p=0.5": True, "plain: residual on": True}),
                       ((1800, 420), {"plain: norm on": True, "plain: dropout p=0.5": True, "plain: residual on": True})):
        w.resize(*size)
        w.show()
        markers.update(events, force=True)
        w.grab()
        assert shown() == want, (size, shown())
        vb = plot.getViewBox().sceneBoundingRect()
        for ln in markers.lines:
            assert ln.toolTip() == f"step {ln.value():.0f}: {ln.label.toPlainText()}"
            if ln.label.isVisible():
                box = ln.label.sceneBoundingRect()
                assert vb.top() - 1 <= box.top() and box.bottom() <= vb.bottom() + 1
        visible = sorted((ln.label.sceneBoundingRect() for ln in markers.lines if ln.label.isVisible()), key=lambda r: r.left())
        assert all(not a.intersects(b) for a, b in zip(visible, visible[1:]))


@pytest.mark.parametrize("height", [560, 640, 720, 1200])
def test_latest_histogram_axis_title_fits_its_plot(views, recorded, height, qtbot):
    """A 1920x1080 export of four runs left the latest histogram 70 px high, and its rotated
    "count (latest)" ran past it into the tick labels; a short plot says "count"."""
    from PySide6 import QtGui

    from gradviz.gui.views.histograms import LATEST_LABEL

    view = views["histograms"]
    theme = make_theme("light", presentation=True, screen_height=1080)
    view.apply_theme(theme)
    view.resize(900, height)
    view.refresh(recorded[0])
    for _ in range(3):  # the rows settle their heights over a layout or two
        view.grab()
        qtbot.wait(20)
    axis, vb = view.latest.getAxis("left"), view.latest.getViewBox()
    text = axis.labelText
    metrics = QtGui.QFontMetricsF(theme.font())
    want = next((t for t in (LATEST_LABEL, "count") if metrics.horizontalAdvance(t) + 10 <= vb.height()), "")
    assert text == want, (height, vb.height(), text)
    if text:
        assert axis.label.sceneBoundingRect().height() <= vb.sceneBoundingRect().height() + 2
    if height >= 1200:
        assert text == LATEST_LABEL


def test_loss_legend_keeps_the_eval_entry_last_as_runs_arrive(qtbot):
    from gradviz.gui.views.loss import LossView

    rec = Recording()
    loss = LossView()
    qtbot.addWidget(loss)
    for i, run in enumerate(["plain", "residual"]):
        rec.add_run(run, ["0.linear"], ["Linear"], [])
        rec.append(run, 0, {"loss": 1.0 + i})
        loss.refresh(rec)
        # no evaluation yet (or ever, in a `gradviz.watch` run): no entry for curves that are not there
        assert [label.text for _s, label in loss.plot.legend.items] == (rec.runs if i == 0 else [*rec.runs, "eval (dashed)"])
        rec.append(run, 1, {"loss": 1.0 + i, "eval_loss": 1.5 + i})
        loss.refresh(rec)
        assert [label.text for _s, label in loss.plot.legend.items] == [*rec.runs, "eval (dashed)"]


def overflow(view) -> list[float]:
    """How far each chart's laid-out scene reaches past its viewport (px, width then height)."""
    import pyqtgraph as pg

    out = []
    for gv in view.findChildren(pg.GraphicsView):
        r = gv.centralWidget.geometry()
        out += [r.width() - gv.viewport().width(), r.height() - gv.viewport().height()]
    return out


@pytest.mark.parametrize("name", ["depth", "heatmap", "loss", "histograms", "activations"])
def test_charts_follow_a_pane_that_narrows(views, recorded, name, qtbot):
    """H hides the controls (the charts take the room), H again brings them back: the loss chart,
    its key one row wide at 1400 px, stayed 490 px wide in a 300 px pane and ran past its edge
    (its plot never shrank, so it never refit its key). Every chart follows the pane down."""
    view = views[name]
    view.apply_theme(make_theme("light", presentation=True, screen_height=768))
    view.show()
    for width in (1400, 300, 1400, 300):
        view.resize(width, 700)
        view.refresh(recorded[0])
        for _ in range(2):
            view.grab()
            qtbot.wait(10)
        assert max(overflow(view)) <= 1, (name, width, overflow(view))


@pytest.mark.parametrize("name", ["depth", "heatmap", "loss", "histograms", "activations"])
def test_charts_fit_a_narrow_pane_in_presentation_mode(views, recorded, name):
    """The tab pane beside the depth profile on a 1920 x 1080 projector is about 560 px wide in
    presentation mode. pyqtgraph made each title's text width a minimum, so the heatmap's layout
    was 400 px wider than its pane and the colour bar was cut off (histograms: 350 px, activations:
    260 px). Every chart now fits; long titles wrap and keep their whole text."""
    view = views[name]
    view.apply_theme(make_theme("light", presentation=True))
    view.resize(560, 950)
    view.refresh(recorded[0])
    view.grab()
    assert max(overflow(view)) <= 1, overflow(view)
    title = getattr(view, "title_label", None)
    if title is not None and hasattr(title, "full_text"):
        assert title.text == title.full_text and title.item.toPlainText() == title.text


def test_long_titles_wrap_and_plot_titles_elide(qtbot):
    """A view title breaks onto a second line when narrow and is one line when wide; a plot title
    (pyqtgraph's fixed 30 px title row) is shortened with an ellipsis and keeps its full `text`."""
    import pyqtgraph as pg

    from gradviz.gui.views.base import add_title, fit_plot_title

    w = pg.GraphicsLayoutWidget()
    qtbot.addWidget(w)
    text = "Gradient norm heatmap (log10 ‖∂L/∂W‖, layer × step)"
    label = add_title(w.ci, text, row=0, col=0)
    label.setText(text, size="26pt")
    plot = w.ci.addPlot(row=1, col=0)
    plot.setTitle("saturated fraction of every unit", size="26pt")
    fit_plot_title(plot)
    plot.setTitle("saturated fraction of every unit", size="26pt")
    heights = {}
    for width in (1800, 300):
        w.resize(width, 700)
        w.show()
        qtbot.waitExposed(w)
        w.grab()
        heights[width] = label.itemRect().height()
        assert w.ci.geometry().width() <= w.viewport().width() + 1, width
        shown = plot.titleLabel.item.toPlainText()
        assert plot.titleLabel.text == "saturated fraction of every unit"
        if width == 1800:
            assert shown == plot.titleLabel.text
        else:
            assert shown.endswith("…") and len(shown) < len(plot.titleLabel.text)
            assert plot.titleLabel.itemRect().width() <= plot.titleLabel.geometry().width() + 1
    assert heights[300] > 1.5 * heights[1800]  # two lines or more, not cut off
    assert label.text == text


def test_activation_plots_stack_in_a_tall_pane_and_sit_side_by_side_in_a_wide_one(views):
    """Three slivers a few layers wide in the portrait tab pane; one above the other there, side by
    side in a landscape window or export."""
    acts = views["activations"]
    for (w, h), stacked in (((560, 950), True), ((1600, 700), False), ((560, 950), True)):
        acts.resize(w, h)
        acts.grab()
        assert acts.stacked is stacked
        rects = [p.sceneBoundingRect() for p in acts.plots.values()]
        lefts, tops = [r.left() for r in rects], [r.top() for r in rects]
        if stacked:
            assert max(lefts) - min(lefts) < 2 and tops == sorted(tops) and tops[0] < tops[1] - 50
            assert all(r.width() > 0.8 * w for r in rects)
        else:
            assert max(tops) - min(tops) < 2 and lefts == sorted(lefts) and lefts[0] < lefts[1] - 50
        assert max(overflow(acts)) <= 1


def test_fractional_tick_labels_leave_room_between_them(qtbot):
    """The latest histogram's value axis ran "-0.15-0.10-0.05" together in presentation fonts: the
    spacing counted only the whole part of a label. Every labelled tick now has its label's width
    and half more to the next one."""
    from PySide6 import QtGui

    from gradviz.gui.views.base import SpacedAxis

    font = QtGui.QFont()
    font.setPointSizeF(20)
    metrics = QtGui.QFontMetricsF(font)
    axis = SpacedAxis("bottom")
    axis.setTickFont(font)
    for lo, hi, size in ((-0.18, 0.18, 420.0), (-0.0035, 0.0041, 500.0), (0.0, 2.5, 300.0), (-250.0, 250.0, 400.0)):
        levels = axis.tickSpacing(lo, hi, size)
        major = levels[0][0]
        values = [v for v in np.arange(math.ceil(lo / major) * major, hi + major / 2, major) if lo <= v <= hi]
        labels = [t for t in axis.tickStrings(values, 1.0, major) if t]
        assert len(labels) >= 2, (lo, hi, labels)
        widest = max(metrics.horizontalAdvance(t) for t in labels)
        gap = size * major / (hi - lo)
        assert gap >= 1.1 * widest * 0.999, (lo, hi, major, labels)  # never touching
        if (lo, hi) == (-0.18, 0.18):  # the histogram axis of the report: half a label between
            assert gap >= 1.5 * widest * 0.999, (major, labels)


def points_under(legend, curve) -> int:
    """How many of a curve's drawn points lie under the legend, in scene coordinates."""
    from PySide6 import QtCore

    xs, ys = curve.getData()
    if len(xs) == len(ys) + 1:  # a step curve: each bin's top runs from its left to its right edge
        xs, ys = np.concatenate([xs[:-1], xs[1:]]), np.concatenate([ys, ys])
    box = legend.sceneBoundingRect()
    vb = curve.getViewBox()
    return sum(box.contains(vb.mapViewToScene(QtCore.QPointF(float(x), float(y)))) for x, y in zip(xs, ys, strict=True))


def test_activation_std_goes_log_when_one_run_dwarfs_the_others(qtbot):
    """The init preset: the normal(0, 1) run's std reached 4e4 in one layer while the other runs'
    were near 0.5, and on a linear axis they all lay flat on zero. Mean and std switch to a signed
    log scale then (0 stays 0, signs stay apart), label decades, and export the measured values;
    calm values bring the linear axis back."""
    from gradviz.gui.views import symlog
    from gradviz.gui.views.activations import ActivationsView

    rec = Recording()
    layers = [f"l{i}" for i in range(8)]
    for run in ("normal", "xavier", "zeros"):
        rec.add_run(run, layers, ["Linear"] * 8, [])
    std = {"normal": np.array([3.0, 4e4, 900.0, 300.0, 80.0, 20.0, 5.0, 1.0]), "xavier": np.linspace(0.3, 0.7, 8), "zeros": np.zeros(8)}
    mean = {"normal": np.array([1.0, -8e3, 50.0, -20.0, 3.0, -1.0, 0.2, 0.1]), "xavier": np.linspace(-0.05, 0.05, 8), "zeros": np.zeros(8)}
    for run in rec.runs:
        rec.append(run, 0, {"loss": 1.0, "act_mean": mean[run], "act_std": std[run], "act_saturation": np.full(8, 0.1)})
    acts = ActivationsView()
    qtbot.addWidget(acts)
    acts.apply_theme(make_theme("light", True, 768))
    acts.resize(1200, 420)
    acts.refresh(rec)
    acts.grab()
    for stat, values in (("act_std", std), ("act_mean", mean)):
        c = acts.scale[stat]
        assert c is not None, stat
        plot = acts.plots[stat]
        assert plot.getAxis("left").labelText.endswith("(log)")
        for run in rec.runs:
            x, y = acts.curves[(run, stat)].getOriginalDataset()
            v = values[run].astype(np.float32).astype(np.float64)  # as recorded
            np.testing.assert_allclose(y, np.sign(v) * np.log10(1 + np.abs(v) / c), rtol=1e-9, atol=1e-12)
        # xavier's spread is visible: a hundred times the share of the height a linear axis gave it
        x, y = acts.curves[("xavier", stat)].getOriginalDataset()
        lo, hi = plot.getViewBox().viewRange()[1]
        every = np.concatenate(list(values.values()))
        linear_share = np.ptp(values["xavier"]) / np.ptp(every)
        assert (y.max() - y.min()) / (hi - lo) > max(100 * linear_share, 0.01), stat
        axis = plot.getAxis("left")
        ticks = [v for _sp, vals in axis.tickValues(lo, hi, plot.getViewBox().height()) for v in vals]
        labels = axis.tickStrings(ticks, 1.0, 1.0)
        assert len(labels) >= 2 and all(labels), labels
        assert set(labels) <= {symlog.decade_label(v) for v in symlog.inverse(np.array(ticks), c)}
    assert "0" in labels or any(t.startswith("-") for t in labels)
    header, rows = acts.csv()
    col = header.index("normal act_std @ step 0")
    assert [r[col] for r in rows] == pytest.approx(list(std["normal"]))  # the export keeps measured values
    for run in rec.runs:  # calm again: linear axes, raw values
        rec.append(run, 1, {"loss": 1.0, "act_mean": np.linspace(-0.1, 0.1, 8), "act_std": np.linspace(0.2, 0.9, 8), "act_saturation": np.full(8, 0.1)})
    acts.refresh(rec)
    assert acts.scale == {"act_mean": None, "act_std": None}
    assert acts.plots["act_std"].getAxis("left").labelText == "std"
    x, y = acts.curves[("xavier", "act_std")].getOriginalDataset()
    np.testing.assert_allclose(y, np.linspace(0.2, 0.9, 8))
    # the demo's means: most within 1e-3 of zero, a few at +-0.15, stds of one order: a linear axis
    # shows them (their spread over the median alone put the mean on a log scale)
    for run in rec.runs:
        m = np.full(8, 1e-4)
        m[[2, 6]] = (0.15, -0.12)
        rec.append(run, 2, {"loss": 1.0, "act_mean": m, "act_std": np.linspace(0.1, 2.0, 8), "act_saturation": np.full(8, 0.1)})
    acts.refresh(rec)
    assert acts.scale == {"act_mean": None, "act_std": None}
    assert acts.plots["act_mean"].getAxis("left").labelText == "mean"


@pytest.mark.parametrize("size", [(380, 900), (1400, 500)])
def test_activation_key_sits_above_the_plots(qtbot, size):
    """The runs' key is a row of its own above the three plots, each run's name in its colour: a
    legend inside the mean plot covered the last layers' points in a pane a hundred pixels high
    (the tab beside the depth profile), whichever corner it moved to."""
    from gradviz.gui.views.activations import ActivationsView

    rec = Recording()
    for run in ("plain", "residual"):
        rec.add_run(run, [f"l{i}" for i in range(30)], ["Linear"] * 30, [])
    for k, run in enumerate(rec.runs):
        rec.append(run, 0, {"loss": 1.0, "act_mean": np.linspace(0.0, 1.0 + 0.1 * k, 30), "act_std": np.ones(30), "act_saturation": np.zeros(30)})
    acts = ActivationsView()
    qtbot.addWidget(acts)
    acts.apply_theme(make_theme("light", True, 768))
    acts.resize(*size)
    acts.refresh(rec)
    acts.grab()
    assert acts.stacked is (size[0] < size[1])
    assert acts.plots["act_mean"].legend is None
    text = acts.key.item.toHtml()
    for run in rec.runs:
        assert run in acts.key.item.toPlainText()
        assert acts.run_color(rec, run).lower() in text.lower(), (run, text)
    key = acts.key.sceneBoundingRect()
    for stat, plot in acts.plots.items():
        box = plot.getViewBox().sceneBoundingRect()
        assert key.bottom() <= box.top() and not key.intersects(box), (stat, key, box)
    assert key.top() >= acts.title_label.sceneBoundingRect().bottom() - 1
    rec.add_run("deep", [f"l{i}" for i in range(30)], ["Linear"] * 30, [])  # a run arrives: the key follows
    rec.append("deep", 0, {"loss": 1.0, "act_mean": np.zeros(30)})
    acts.refresh(rec)
    assert "deep" in acts.key.item.toPlainText()


@pytest.mark.parametrize("presentation", [False, True])
def test_latest_histogram_keeps_its_peak_clear_of_the_legend(qtbot, presentation):
    """Counts that peak at the right end, under the top-right legend: the runs sit in one row, with
    headroom above the tallest bin."""
    from gradviz.gui.views.histograms import HistogramsView

    rec = Recording()
    for k, run in enumerate(("plain", "residual")):
        rec.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
        rec.set_edges(run, "weight", 1, np.linspace(-1, 1, 65))
        rec.append_histograms(run, 0, "weight", {1: np.linspace(1.0, 50.0 + k, 64)})
        rec.append(run, 0, {"loss": 1.0})
    hist = HistogramsView()
    qtbot.addWidget(hist)
    hist.apply_theme(make_theme("light", presentation=presentation))
    hist.resize(600, 950)
    hist.refresh(rec)
    hist.set_selection("weight", 1)
    hist.grab()
    legend = hist.latest.legend
    for curve in hist.latest_curves.values():
        assert points_under(legend, curve) == 0
    assert len(legend.items) == 2 and legend.columnCount == 2



def test_one_runs_spike_is_clipped_so_the_others_histograms_show(qtbot):
    """The init preset: the zeros run's weights are 1024 values in one bin, the other runs' peak
    near 60; scaled to the spike, their histograms were a line along the bottom. The strip stops a
    little above the others' peaks and says, in the spike's colour beside it, how high it goes;
    without a spike (or with weight decay's peak, 4-5 times the other run's) the strip shows every
    bin."""
    from gradviz.gui.views.histograms import HistogramsView

    rec = Recording()
    edges = np.linspace(-1, 1, 65)
    peaked = np.zeros(64)
    peaked[32] = 1024
    counts = {"zeros": peaked, "xavier": 60 * np.exp(-np.linspace(-3, 3, 64) ** 2), "he": 45 * np.exp(-np.linspace(-2, 2, 64) ** 2)}
    for run, c in counts.items():
        rec.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
        rec.set_edges(run, "weight", 1, edges)
        rec.append_histograms(run, 0, "weight", {1: c})
        rec.append(run, 0, {"loss": 1.0})
    hist = HistogramsView()
    qtbot.addWidget(hist)
    hist.resize(900, 900)
    hist.refresh(rec)
    hist.set_selection("weight", 1)
    hist.grab()
    lo, hi = hist.latest.getViewBox().viewRange()[1]
    assert 60 < hi < 0.2 * 1024  # the xavier peak fills most of the height
    lab = hist.clip_label
    assert lab.isVisible() and lab.toPlainText() == "↑ 1024"
    assert lab.color.name() == hist.run_color(rec, "zeros").lower()
    assert lab.pos().x() == pytest.approx(edges[33]) and lab.pos().y() == pytest.approx(hi)
    rec2 = Recording()
    for run in ("xavier", "he"):
        rec2.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
        rec2.set_edges(run, "weight", 1, edges)
        rec2.append_histograms(run, 0, "weight", {1: counts[run]})
        rec2.append(run, 0, {"loss": 1.0})
    hist.refresh(rec2)
    hist.set_selection("weight", 1)
    hist.grab()
    assert not hist.clip_label.isVisible()
    assert hist.latest.getViewBox().viewRange()[1][1] >= 60
    rec3 = Recording()
    for run, peak in (("no-decay", 45.0), ("weight-decay", 200.0)):  # the weight-decay lesson's peak
        rec3.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
        rec3.set_edges(run, "weight", 1, edges)
        rec3.append_histograms(run, 0, "weight", {1: peak * np.exp(-np.linspace(-3, 3, 64) ** 2)})
        rec3.append(run, 0, {"loss": 1.0})
    hist.refresh(rec3)
    hist.set_selection("weight", 1)
    hist.grab()
    assert not hist.clip_label.isVisible() and hist.latest.getViewBox().viewRange()[1][1] >= 200


def test_names_from_a_file_are_shown_as_text_never_markup(qtbot):
    """A run named "<b>r&amp;</b>" and a layer named "<b>out</b>" (both legal in a watch) were
    rendered as markup: a bold "r&" in the keys, the strips' titles and the readout, a bold "out"
    in the histogram title. Every place shows the names as written. Also: a one-layer model's
    "layer index" axis read "(x0.001)"."""
    from PySide6 import QtCore

    from gradviz.gui.views import make_views
    from gradviz.gui.views.readout import Readout

    run, layer = "<b>r&amp;</b>", "<b>out</b>"
    rec = Recording()
    rec.add_run(run, [layer], ["Linear"], [])
    rec.set_edges(run, "weight", 0, np.linspace(-1, 1, 65))
    for i in range(3):
        rec.append(run, i, {"loss": 0.5, "grad_norm": np.full(1, 0.1, np.float32), "act_mean": np.zeros(1), "act_std": np.ones(1), "act_saturation": np.full(1, 0.2)})
        rec.append_histograms(run, i, "weight", {0: np.arange(64.0)})
    views = {v.name: v for v in make_views()}
    for v in views.values():
        qtbot.addWidget(v)
        v.resize(900, 600)
        v.refresh(rec)
        v.grab()
    views["histograms"].set_selection("weight", 0)
    views["histograms"].grab()
    shown = []
    for name in ("depth", "loss"):
        shown += [label.item.toPlainText() for _s, label in views[name].plot.legend.items]
    hist = views["histograms"]
    shown += [label.item.toPlainText() for _s, label in hist.latest.legend.items]
    shown += [p.getAxis("left").label.toPlainText() for p in hist.plots.values()]
    shown += [p.getAxis("left").label.toPlainText() for p in views["heatmap"].plots.values()]
    assert shown and all(t.strip() == run for t in shown), shown  # (an axis title ends in a space)
    assert hist.title_label.item.toPlainText().endswith(f"of 0: {layer}")
    readout = Readout()
    qtbot.addWidget(readout)
    readout.refresh(rec)
    lab = readout.labels[run]
    assert lab.textFormat() == QtCore.Qt.TextFormat.PlainText and lab.text().startswith(run)
    axis = views["activations"].plots["act_saturation"].getAxis("bottom")
    assert "x0.001" not in axis.labelString() and axis.labelText == "layer index"


def test_views_let_the_interpreter_exit_cleanly():
    """The crash this guards against comes after the last test, when the interpreter tears down
    views that the tests' widgets left behind: a signal connected to a lambda that outlived its
    view segfaulted there, turning a green run red (exit code 139). So run this module's other
    tests in a fresh process and check how it exits."""
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__)), "-k", "not exit_cleanly"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, (done.returncode, done.stdout[-1500:], done.stderr[-1500:])


def test_vertical_count_axis_leaves_a_line_between_labels(qtbot):
    """The latest histogram's count axis in a short presentation plot stacked "10 8 6 4 2 0" into
    one column: on a vertical axis a label takes its line height, and labelled ticks are at least a
    line and a half apart."""
    from PySide6 import QtGui

    from gradviz.gui.views.base import SpacedAxis

    font = QtGui.QFont()
    font.setPointSizeF(14)
    line = QtGui.QFontMetricsF(font).height()
    axis = SpacedAxis("left", integer=True)
    axis.setTickFont(font)
    for hi, size in ((10.0, 90.0), (12.0, 120.0), (300.0, 400.0), (3.0, 70.0)):
        levels = axis.tickSpacing(0.0, hi, size)
        major = levels[0][0]
        assert major >= 1 and abs(major - round(major)) < 1e-9  # counts: whole numbers
        labelled = [t for t in axis.tickStrings(list(np.arange(0.0, hi + major / 2, major)), 1.0, major) if t]
        assert len(labelled) >= 2, (hi, size, major)
        assert size * major / hi >= 1.5 * line * 0.999, (hi, size, major)
    # pyqtgraph's own spacing is what it replaces: 2 per 90 px at this font
    assert pg_major(0.0, 10.0, 90.0) * 90.0 / 10.0 < 1.5 * line


def test_short_value_axis_around_zero_labels_both_sides(qtbot):
    """A histogram strip of four runs is about 60 px tall: its value axis (-8..8) kept only "0",
    which says nothing about the scale. It now labels -5 and 5 (0 keeps an unlabelled tick), clear
    of each other."""
    from PySide6 import QtGui

    from gradviz.gui.views.base import SpacedAxis

    font = QtGui.QFont()
    font.setPointSizeF(14)
    line = QtGui.QFontMetricsF(font).height()
    axis = SpacedAxis("left")
    axis.setTickFont(font)
    for lo, hi, size in ((-8.0, 8.0, 60.0), (-7.9, 7.9, 60.0), (-3.0, 3.0, 50.0), (-8.0, 8.0, 40.0), (-0.45, 0.45, 55.0), (-0.6, 0.6, 60.0), (-0.55, 0.55, 50.0)):
        levels = axis.tickValues(lo, hi, size)
        pairs = [(float(v), t) for sp, vals in levels for v, t in zip(vals, axis.tickStrings(vals, 1.0, sp), strict=True) if t]
        for v, t in pairs:  # each label says its value ("-0" for -0.5 at spacing 1 did not)
            assert float(t) == pytest.approx(v, abs=1e-9), (lo, hi, pairs)
        labelled = sorted(v for v, _t in pairs)
        assert len(labelled) >= 2 and labelled[0] < 0 < labelled[-1], (lo, hi, levels)
        assert all(lo <= v <= hi for v in labelled)
        gaps = np.diff(labelled) * size / (hi - lo)
        assert gaps.min() >= 1.1 * line * 0.999, (lo, hi, labelled)
        assert 0.0 in [float(v) for _, vals in levels for v in vals]  # 0 still has its tick


@pytest.mark.parametrize("width", [105, 125])
def test_a_very_narrow_step_axis_still_draws_a_label(qtbot, width):
    """Six runs' heatmap at 1024x768 left each strip about 90 px wide: "0" and "1000" both stuck
    out past the ends and pyqtgraph drew no step label at all. A finer step with one that fits
    ("500") stands in."""
    import pyqtgraph as pg

    from gradviz.gui.views.base import SpacedAxis

    theme = make_theme("light", True, 768)
    w = pg.GraphicsLayoutWidget()
    qtbot.addWidget(w)
    w.resize(width, 200)
    plot = w.addPlot(axisItems={"bottom": SpacedAxis("bottom", integer=True)})
    plot.hideAxis("left")
    axis = plot.getAxis("bottom")
    axis.setTickFont(theme.font())
    plot.setXRange(0.0, 1271.0, padding=0)
    w.show()
    w.grab()
    assert 70 < axis.width() < 110, axis.width()
    drawn = drawn_labels(axis)
    assert drawn, (width, axis.width())
    assert all(float(t) == int(float(t)) for t in drawn)


@pytest.mark.parametrize("hi", [2092.0, 1500.0, 3000.0, 780.0])
def test_narrow_step_axis_draws_two_labels(qtbot, hi):
    """The loss plot beside the depth profile at 1024x768 (195 px wide) ticked 0, 1000 and 2000, but
    pyqtgraph hides a horizontal label that sticks out past either end, so only "1000" (or "0")
    showed. Labels are counted as drawn; halfway values (500, 1500) stand in when the round ones
    sit at the ends. Checked on the texts pyqtgraph actually draws."""
    import pyqtgraph as pg
    from PySide6 import QtGui

    from gradviz.gui.views.base import SpacedAxis

    theme = make_theme("light", True, 768)
    w = pg.GraphicsLayoutWidget()
    qtbot.addWidget(w)
    w.resize(250, 300)
    plot = w.addPlot(axisItems={"bottom": SpacedAxis("bottom", integer=True)})
    axis = plot.getAxis("bottom")
    axis.setTickFont(theme.font())
    plot.setXRange(0.0, hi, padding=0)
    w.show()
    w.grab()
    assert 150 < axis.width() < 230
    drawn = drawn_labels(axis)
    assert len(drawn) >= 2, (hi, drawn)
    values = sorted(float(t) for t in drawn)
    assert all(abs(v - round(v)) < 1e-9 for v in values)
    gaps = np.diff(values) * axis.width() / hi
    widest = QtGui.QFontMetricsF(theme.font()).horizontalAdvance(max(drawn, key=len))
    assert gaps.min() >= 1.1 * widest * 0.999, (drawn, gaps)


def pg_major(lo: float, hi: float, size: float) -> float:
    import pyqtgraph as pg

    return pg.AxisItem("left").tickSpacing(lo, hi, size)[0][0]


@pytest.mark.parametrize("presentation", [False, True])
def test_selector_bars_wrap_instead_of_cutting_their_text(qtbot, presentation):
    """In a 560 px projector pane the depth view's row squeezed "fixed y axis from 1e" down to ":"
    and elided the metric; the row now puts its groups on two rows when one is too narrow, and
    every control keeps its full width. A wide view keeps one row."""
    from PySide6 import QtWidgets

    from gradviz.gui.views.depth import DepthView
    from gradviz.gui.views.histograms import HistogramsView

    app = QtWidgets.QApplication.instance()
    old_font = app.font()
    theme = make_theme("light", presentation, 1080)
    font = app.font()
    font.setPointSizeF(theme.font_pt * (0.8 if presentation else 1.0))
    app.setFont(font)
    try:
        for cls, controls in ((DepthView, ("fix_box", "selector", "lo_spin", "to_label", "hi_spin")), (HistogramsView, ("kind_box", "layer_box"))):
            view = cls()
            qtbot.addWidget(view)
            view.apply_theme(theme)
            view.resize(1600, 700)
            view.show()
            qtbot.waitExposed(view)
            qtbot.waitUntil(lambda v=view: v.bar.width() > 1000)
            assert not view.bar.stacked()
            one_row = view.bar.height()
            narrow = view.bar.one_row_width() - 40
            view.resize(narrow, 700)
            qtbot.waitUntil(lambda v=view: v.bar.stacked())
            qtbot.wait(20)
            assert view.bar.height() > 1.6 * one_row  # two rows, the chart below them
            for name in controls:
                w = getattr(view, name)
                assert w.width() >= w.sizeHint().width(), (cls.__name__, name, w.width(), w.sizeHint().width())
                assert w.visibleRegion().boundingRect().width() == w.width(), (cls.__name__, name)
            view.resize(1600, 700)
            qtbot.waitUntil(lambda v=view: not v.bar.stacked())
    finally:
        app.setFont(old_font)


def _drawn_loss_view(qtbot, losses, run: str = "lm"):
    """A shown 700x500 LossView of one run's `losses`, drawn; (view, its recording)."""
    from gradviz.gui.views.loss import LossView

    rec = Recording()
    rec.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
    for i, v in enumerate(losses):
        rec.append(run, i, {"loss": float(v)})
    view = LossView()
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    qtbot.waitExposed(view)
    view.refresh(rec)
    view.grab()
    return view, rec


def test_a_loss_within_one_decade_still_has_numbers_on_its_axis(qtbot):
    """A 100-class language model's loss moves between 4.55 and 4.8: no log tick (4 or 5) falls in
    that range, and the loss axis had no label at all. It gets round values, 1-2-5 spaced, each at
    its own height; a loss spanning decades keeps the decade labels."""
    view, rec = _drawn_loss_view(qtbot, 4.55 + 0.25 * (0.5 + 0.5 * np.sin(np.arange(60) / 5.0)))
    axis = view.plot.getAxis("left")
    lo, hi = view.plot.getViewBox().viewRange()[1]
    size = float(axis.geometry().height())
    levels = axis.tickValues(lo, hi, size)
    pairs = [(v, t) for sp, vals in levels for v, t in zip(vals, axis.tickStrings(vals, 1.0, sp), strict=True) if t and lo <= v <= hi]
    assert len(pairs) >= 2, levels
    for v, t in pairs:
        assert float(t) == pytest.approx(10.0**v, rel=1e-9), (v, t)  # each label sits at its value
        assert 4.4 <= float(t) <= 4.95
    # pyqtgraph's own log ticks are what this replaces: none in this range
    import pyqtgraph as pg

    plain = [v for _, vals in pg.AxisItem.logTickValues(axis, lo, hi, size, []) for v in vals if lo <= v <= hi]
    assert len(plain) < 2
    # several decades: back to the decade labels
    for i, v in enumerate(np.geomspace(10.0, 0.01, 60)):
        rec.append("lm", 60 + i, {"loss": float(v)})
    view.refresh(rec)
    view.grab()
    lo, hi = view.plot.getViewBox().viewRange()[1]
    levels = axis.tickValues(lo, hi, size)
    labels = [t for sp, vals in levels for t in axis.tickStrings(vals, 1.0, sp) if t]
    assert {"0.1", "1", "10"} <= set(labels), labels


def test_a_loss_under_a_decade_across_one_is_labelled_on_both_sides(qtbot):
    """A GAN's discriminator loss between 0.55 and 1.6: pyqtgraph's log ticks labelled 0.6 ... 0.9
    and 1, and the upper two fifths of the axis (1 to 1.6) had no label. Round values, 1-2-5
    spaced, now label both sides, each at its own height."""
    view, _rec = _drawn_loss_view(qtbot, 1.075 + 0.525 * np.sin(np.arange(80) / 6.0), run="D")
    axis = view.plot.getAxis("left")
    lo, hi = view.plot.getViewBox().viewRange()[1]
    levels = axis.tickValues(lo, hi, float(axis.geometry().height()))
    pairs = [(v, t) for sp, vals in levels for v, t in zip(vals, axis.tickStrings(vals, 1.0, sp), strict=True) if t and lo <= v <= hi]
    values = [float(t) for _, t in pairs]
    for v, t in pairs:
        assert float(t) == pytest.approx(10.0**v, rel=1e-9), (v, t)
    assert any(x > 1.1 for x in values) and any(x < 0.9 for x in values), values
    assert max(values) - min(values) >= 0.6 * (10.0**hi - 10.0**lo)  # labels spread over the axis


def test_a_loss_below_one_is_labelled_in_its_own_units(qtbot):
    """A watched model's loss between 0.6 and 0.8: pyqtgraph scaled the log axis to milli, as it
    does a linear one, and labelled 0.7 "7·10²" on an axis titled "loss (x0.001)". The labels, as
    drawn (with the axis's own scale), read the values they sit at, and the title is "loss"."""
    view, _rec = _drawn_loss_view(qtbot, 0.7 + 0.1 * np.sin(np.arange(80) / 4.0), run="k")
    axis = view.plot.getAxis("left")
    assert axis.labelString().count("loss") == 1 and "x0.001" not in axis.labelString() and "(m" not in axis.labelString()
    lo, hi = view.plot.getViewBox().viewRange()[1]
    levels = axis.tickValues(lo, hi, float(axis.geometry().height()))
    shown = [(v, t) for sp, vals in levels for v, t in zip(vals, axis.tickStrings(vals, axis.autoSIPrefixScale * axis.scale, sp), strict=True) if t and lo <= v <= hi]
    assert len(shown) >= 2, levels
    for v, t in shown:
        assert float(t.replace("·10", "e").replace("²", "2")) == pytest.approx(10.0**v, rel=1e-6), (v, t)


def test_depth_profile_says_what_was_not_recorded(qtbot):
    """A watch without an optimizer has no update ratio before its second update step, a model
    without blocks no block gradient:
    the depth profile showed an empty plot under a "vanishing" band. It says which metric is
    missing and why, in the middle of the plot, and shows the band and the profile again once the
    metric is there; an empty session (no step yet) says nothing."""
    from gradviz.gui.views.depth import DepthView

    rec = Recording()
    rec.set_meta({"kind": "watch", "optimizer": ""})
    rec.add_run("kw", ["a", "b"], ["Linear", "Linear"], [])
    depth = _draw_view(qtbot, DepthView(), rec, (800, 500))
    assert not depth.nothing.isVisible()  # nothing trained yet: nothing to explain
    rec.append("kw", 0, {"loss": 1.0, "grad_norm": np.full(2, 0.1, np.float32)})
    depth.set_metric("update_ratio")
    depth.refresh(rec)
    assert depth.nothing.isVisible() and not depth.band.isVisible()
    assert depth.nothing.toPlainText() == "no update / weight per layer recorded\n(watched without an optimizer: measured from step 5 on)"
    (x0, x1), (y0, y1) = depth.plot.viewRange()
    assert depth.nothing.pos().x() == pytest.approx((x0 + x1) / 2) and depth.nothing.pos().y() == pytest.approx((y0 + y1) / 2)
    depth.set_metric("act_grad_norm")
    depth.refresh(rec)
    assert depth.nothing.toPlainText().endswith("(no blocks in this model: pass blocks= to gradviz.watch)")
    depth.set_metric("grad_norm")
    depth.refresh(rec)
    assert not depth.nothing.isVisible() and depth.band.isVisible()
    # a model without parameters: no layer at all, said so; its empty heatmap strip keeps a plain title
    from gradviz.gui.views.heatmap import HeatmapView

    bare = Recording()
    bare.set_meta({"kind": "watch", "optimizer": ""})
    bare.add_run("r", [], [], [])
    bare.append("r", 0, {"loss": 1.0})
    depth.refresh(bare)
    assert depth.nothing.toPlainText() == "no gradient norm per layer recorded\n(the model has no parameters: no layer to measure)"
    heat = _draw_view(qtbot, HeatmapView(), bare, (600, 400))
    assert [p.getAxis("left").labelString().count("x0.001") for p in heat.plots.values()] == [0]
    # `w.log()` with no loss: the loss view says so rather than showing an empty plot
    from gradviz.gui.views.loss import NO_LOSS, LossView

    rec2 = Recording()
    rec2.add_run("kw", ["a"], ["Linear"], [])
    for i in range(3):
        rec2.append("kw", i, {"loss": float("nan")})
    loss = _draw_view(qtbot, LossView(), rec2, (600, 400))
    assert loss.nothing.isVisible() and loss.nothing.toPlainText() == NO_LOSS
    rec2.append("kw", 3, {"loss": 0.5})
    loss.refresh(rec2)
    assert not loss.nothing.isVisible()


def test_depth_axis_follows_the_metric_between_layers_and_blocks(qtbot):
    """Six layers, three blocks: switching the profile to "gradient reaching each block" kept the
    six-layer x axis, and the blocks' profile sat in its left half (a transformer's three blocks in
    the first sixth of a twenty-layer axis)."""
    from gradviz.gui.views.depth import DepthView

    rec = Recording()
    rec.add_run("r", [f"l{i}" for i in range(6)], ["Linear"] * 6, ["b0", "b1", "b2"])
    rec.append("r", 0, {"loss": 1.0, "grad_norm": np.full(6, 0.1, np.float32), "act_grad_norm": np.full(3, 0.2, np.float32)})
    depth = DepthView()
    qtbot.addWidget(depth)
    depth.resize(800, 500)
    depth.refresh(rec)
    x0, x1 = depth.plot.getViewBox().viewRange()[0]
    assert x0 < 0 and 5 < x1 < 6
    depth.set_metric("act_grad_norm")
    depth.refresh(rec)
    x0, x1 = depth.plot.getViewBox().viewRange()[0]
    assert x0 < 0 and 2 < x1 < 3, (x0, x1)
    depth.set_metric("grad_norm")
    depth.refresh(rec)
    assert 5 < depth.plot.getViewBox().viewRange()[0][1] < 6


def assert_label_centred(ax) -> None:
    """The axis title lies within its axis and is centred on it."""
    box, room = ax.label.mapRectToScene(ax.label.boundingRect()), ax.sceneBoundingRect()
    assert room.left() <= box.left() and box.right() <= room.right(), (box, room)
    assert abs(box.center().x() - room.center().x()) <= 2, (box, room)


def test_the_key_is_centred_when_it_replaces_the_axis_title_without_a_resize(qtbot):
    """Live, the latest histogram gets its key when the first histograms arrive, not on a resize:
    pyqtgraph centres a label only on resizes, so the key started where "value" had and ran off a
    1366 x 768 projector pane."""
    from gradviz.gui.views.histograms import HistogramsView

    rec = Recording()
    for run in ("no-decay", "weight-decay"):
        rec.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
        rec.set_edges(run, "weight", 1, np.linspace(-1, 1, 65))
        rec.append(run, 0, {"loss": 1.0})
    hist = HistogramsView()
    qtbot.addWidget(hist)
    hist.apply_theme(make_theme("light", presentation=True, screen_height=768))
    hist.set_selection("weight", 1)
    hist.resize(400, 460)
    hist.show()
    qtbot.waitExposed(hist)
    hist.refresh(rec)  # no histograms yet: the axis says "value"
    qtbot.wait(50)
    assert hist.latest.getAxis("bottom").labelText == "value"
    for k, run in enumerate(rec.runs):
        rec.append_histograms(run, 1, "weight", {1: 40.0 - np.abs(np.linspace(-30.0, 30.0 + k, 64))})
        rec.append(run, 1, {"loss": 1.0})
    hist.refresh(rec)
    qtbot.wait(50)
    ax = hist.latest.getAxis("bottom")
    assert "no-decay" in ax.labelText and not hist.latest.legend.isVisible()
    assert_label_centred(ax)


@pytest.mark.parametrize("presentation", [False, True])
def test_a_short_latest_histogram_puts_its_key_in_the_axis_label(qtbot, presentation):
    """On a 768-line projector the latest histogram is ~90 px high and its legend needed more than
    half of it: the headroom stopped at half and the legend covered the bins. Such a plot hides the
    legend and names the runs, in their colours, in its axis label; a tall one keeps the legend."""
    from gradviz.gui.views.histograms import HistogramsView

    rec = Recording()
    for k, run in enumerate(("plain", "residual")):
        rec.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
        rec.set_edges(run, "weight", 1, np.linspace(-1, 1, 65))
        rec.append_histograms(run, 0, "weight", {1: 40.0 - np.abs(np.linspace(-30.0, 30.0 + k, 64))})
        rec.append(run, 0, {"loss": 1.0})
    hist = HistogramsView()
    qtbot.addWidget(hist)
    hist.apply_theme(make_theme("light", presentation=presentation))
    hist.set_selection("weight", 1)
    for height, keyed in ((950, False), (460 if presentation else 330, True), (950, False)):
        hist.resize(600, height)
        hist.refresh(rec)
        hist.grab()
        legend, label = hist.latest.legend, hist.latest.getAxis("bottom").labelText
        assert legend.isVisible() is not keyed, height
        if keyed:
            colors = {run: hist.run_color(rec, run) for run in rec.runs}
            for run, color in colors.items():
                assert run in label and color in label, label
            assert_label_centred(hist.latest.getAxis("bottom"))
        else:
            assert label == "value"
            for curve in hist.latest_curves.values():
                assert points_under(legend, curve) == 0
        top = max(float(c.getData()[1].max()) for c in hist.latest_curves.values())
        assert top <= hist.latest.getViewBox().viewRange()[1][1]  # every bin stays in view


def test_activation_axes_keep_plain_units(qtbot):
    """Means between -0.5 and 0.1: pyqtgraph's automatic SI prefix labelled the axis "mean (x0.001)"
    and ticked -400; the axis keeps plain units and fractional ticks."""
    from gradviz.gui.views.activations import ActivationsView

    rec = Recording()
    rec.add_run("r", [f"l{i}" for i in range(10)], ["Linear"] * 10, [])
    rec.append("r", 0, {"loss": 1.0, "act_mean": np.linspace(0.1, -0.5, 10), "act_std": np.linspace(0.05, 0.4, 10), "act_saturation": np.zeros(10)})
    view = ActivationsView()
    qtbot.addWidget(view)
    view.resize(1200, 500)
    view.refresh(rec)
    view.grab()
    for stat in ("act_mean", "act_std"):
        axis = view.plots[stat].getAxis("left")
        assert axis.autoSIPrefixScale == 1.0 and "x0.0" not in axis.labelString()
        lo, hi = view.plots[stat].getViewBox().viewRange()[1]
        labels = [t for sp, vals in axis.tickValues(lo, hi, 300.0) for t in axis.tickStrings(vals, axis.autoSIPrefixScale, sp) if t]
        assert labels and all(abs(float(t)) <= 1.0 for t in labels), labels


def test_readout_names_a_layer_whose_gradient_is_exactly_zero():
    """Zero init (the `init` preset): every layer but the output's gets a gradient of exactly 0,
    step after step. The readout said "waiting for gradients" for ever; it says the layer gets none
    and cannot learn. A layer that was never used (NaN, a switched-off BatchNorm) is still skipped,
    and a recording with no gradients yet still waits."""
    from gradviz.config import load_preset
    from gradviz.core.experiment import Experiment

    rec = Recording()
    rec.add_run("zeros", ["bn", "a", "b", "head"], ["BatchNorm1d", "Linear", "Linear", "Linear"], [])
    for s in range(12):
        rec.append("zeros", s, {"loss": 1.0, "grad_norm": np.array([np.nan, 0.0, 0.0, 0.3], np.float32)})
    assert describe(rec, "zeros") == "zeros: layer 1 receives no gradient at all (exactly 0): it cannot learn"
    empty = Recording()
    empty.add_run("zeros", ["a"], ["Linear"], [])
    assert describe(empty, "zeros") == "zeros: waiting for gradients"
    # the real preset: its zeros run after a few steps
    cfg = load_preset("init").with_overrides({"model.depth": 3, "model.width": 8, "train.batch_size": 16})
    exp = Experiment(cfg)
    for _ in range(3):
        exp.step()
    assert describe(exp.recording, "zeros") == "zeros: layer 0 receives no gradient at all (exactly 0): it cannot learn"
    assert "receives" in describe(exp.recording, "he") and "exactly 0" not in describe(exp.recording, "he")


def _four_runs(layers: int = 20) -> Recording:
    rec = Recording()
    names = [f"l{i}" for i in range(layers)]
    for k, run in enumerate(("sgd", "momentum", "rmsprop", "adam")):
        rec.add_run(run, names, ["Linear"] * layers, [])
        rec.set_edges(run, "weight", 1, np.linspace(-2, 2, 65))
        for s in range(0, 40, 5):
            rec.append(run, s, {"loss": 1.0 / (1 + s + k), "grad_norm": np.geomspace(1e-3, 1.0, layers).astype(np.float32) * (k + 1)})
            rec.append_histograms(run, s, "weight", {1: 40.0 - np.abs(np.linspace(-30.0, 30.0, 64))})
    return rec


def test_a_four_run_depth_legend_fits_its_pane_above_the_curves(qtbot):
    """The `optimizers` preset on a 1366 x 768 projector: four runs in one legend row were wider
    than the depth plot, and the first run's entry was cut off at its left edge; at 1024 x 768 the
    two-row legend inside the plot hid the SGD and Momentum profiles' output ends. The key is a row
    above the plot, two rows where one does not fit, one row where it does, every entry in the pane,
    and the title wraps rather than being cut short."""
    from gradviz.gui.views.depth import DepthView

    rec = _four_runs()
    depth = DepthView()
    qtbot.addWidget(depth)
    depth.apply_theme(make_theme("light", True, 768))
    for width, rows in ((380, 2), (1700, 1)):
        depth.resize(width, 600)
        depth.refresh(rec)
        depth.grab()
        legend, vb = depth.plot.legend, depth.plot.getViewBox()
        assert len(legend.items) == 4
        assert legend.rowCount == rows, (width, legend.columnCount)
        box, view = legend.sceneBoundingRect(), vb.sceneBoundingRect()
        assert box.bottom() <= view.top() + 1, (width, box, view)
        for sample, label in legend.items:
            for item in (sample, label):
                r = item.sceneBoundingRect()
                assert r.left() >= -1 and r.right() <= depth.widget.width() + 1, (width, label.text, r)
        assert all(points_under(legend, c) == 0 for c in depth.curves.values()), width
        title = depth.widget.title_label
        assert title.full_text == "Depth profile: gradient norm per layer"
        assert "…" not in title.item.toPlainText() and title.sceneBoundingRect().right() <= depth.widget.width() + 1


@pytest.mark.parametrize("name", ["heatmap", "histograms"])
def test_stacked_run_plots_share_one_step_axis_and_readable_labels(qtbot, name):
    """Four runs stacked in a projector pane repeated "2000 4000 / step" under every plot, left the
    images a few pixels high, and stacked the heatmap's layer labels on top of each other. Only the
    last plot has step labels; row labels are a line and a half apart; each run's axis title is in
    the run's colour (the key to the lines of the latest histogram)."""
    from PySide6 import QtGui

    from gradviz.gui.views.heatmap import HeatmapView
    from gradviz.gui.views.histograms import HistogramsView

    rec = _four_runs()
    view = HeatmapView() if name == "heatmap" else HistogramsView()
    qtbot.addWidget(view)
    theme = make_theme("light", True, 768)
    view.apply_theme(theme)
    view.resize(420, 700)
    view.refresh(rec)
    if name == "histograms":
        view.set_selection("weight", 1)
    view.grab()
    plots = list(view.plots.values())
    assert len(plots) == 4

    def spread() -> float:  # equal data areas: the last plot's step axis comes on top of its share
        heights = [p.getViewBox().height() for p in plots]
        return max(heights) - min(heights)

    qtbot.waitUntil(lambda: spread() <= 2, timeout=3000)  # evened out by itself once laid out
    view.resize(420, 560)  # and again after a resize, with no new data: the row labels follow
    view.grab()
    qtbot.wait(50)
    qtbot.waitUntil(lambda: spread() <= 2 and not view.rows_even._timer.isActive(), timeout=3000)
    for k, (run, plot) in enumerate(view.plots.items()):
        bottom = plot.getAxis("bottom")
        last = k == len(plots) - 1
        assert bottom.style["showValues"] is last
        assert (bottom.labelText == "step") is last and bottom.label.isVisible() is last
        if not last:
            assert bottom.height() <= 6
        left = plot.getAxis("left")
        color = view.run_color(rec, run).lower()
        if left.labelText.strip():  # "deep-residual: layer" was taller than its plot
            assert color in left.labelStyle.get("color", "").lower(), (run, left.labelStyle)
            assert left.labelText == run
        else:  # too long for its strip: a tag above it, in the run's colour
            tag = plot.gradviz_run_tag
            assert tag.isVisible() and tag.textItem.toPlainText() == run
            assert tag.color.name().lower() == color, (run, tag.color.name())
            box = tag.mapRectToParent(tag.boundingRect())  # its filled box stays off the strip's image
            assert box.bottom() <= plot.getViewBox().pos().y(), (run, box.bottom(), plot.getViewBox().pos().y())
        if name == "heatmap":
            ticks = left._tickLevels[0]
            line = QtGui.QFontMetricsF(theme.font()).height()
            rows_px = plot.getViewBox().height() / 20
            gaps = [(b[0] - a[0]) * rows_px for a, b in zip(ticks, ticks[1:])]
            assert ticks and all(g >= 1.5 * line * 0.999 for g in gaps), (run, gaps, line)


def settled(qtbot, view, rec, size, theme, rounds: int = 3):
    """`view` in `theme`, resized, fed `rec` and painted a few times: an axis learns its labels'
    width at a paint, and a layout follows at the next one."""
    qtbot.addWidget(view)
    view.apply_theme(theme)
    view.resize(*size)
    view.refresh(rec)
    for _ in range(rounds):
        view.grab()
        qtbot.wait(20)
    return view


def drawn_labels(axis) -> list[str]:
    """The tick texts pyqtgraph actually draws on `axis` (it hides those that stick out)."""
    from PySide6 import QtGui

    img = QtGui.QImage(10, 10, QtGui.QImage.Format.Format_ARGB32)
    painter = QtGui.QPainter(img)
    try:
        return [text for _rect, _flags, text in axis.generateDrawSpecs(painter)[2]]
    finally:
        painter.end()


@pytest.mark.parametrize("name", ["heatmap", "histograms"])
def test_every_stacked_run_plot_names_its_run_readably(qtbot, name):
    """Six runs at 1024x768: the rotated run names were longer than their 25 px strips and ran into
    each other ("d8-bnd16-res"). When a name does not fit its strip, every run's name becomes a tag
    just above its strip, in the gap between strips (mixed, two of four looked unnamed); tall strips
    keep their rotated titles."""
    from gradviz.gui.views.heatmap import HeatmapView
    from gradviz.gui.views.histograms import HistogramsView

    rec = Recording()
    names = [f"l{i}" for i in range(18)]
    runs = ("d2", "d4", "d8", "d16", "d16-res", "d8-bn")
    for run in runs:
        rec.add_run(run, names, ["Linear"] * 18, [])
        rec.set_edges(run, "weight", 1, np.linspace(-2, 2, 65))
        for step in range(0, 400, 20):
            rec.append(run, step, {"loss": 1.0, "grad_norm": np.geomspace(1e-3, 1.0, 18).astype(np.float32)})
            rec.append_histograms(run, step, "weight", {1: 40.0 - np.abs(np.linspace(-30.0, 30.0, 64))})
    theme = make_theme("light", True, 768)
    view = settled(qtbot, HeatmapView() if name == "heatmap" else HistogramsView(), rec, (270, 680), theme, rounds=4)
    boxes, tags = [], []
    for run, plot in view.plots.items():
        axis, vb = plot.getAxis("left"), plot.getViewBox()
        tag = getattr(plot, "gradviz_run_tag", None)
        if axis.labelText.strip():
            assert axis.labelText == run and (tag is None or not tag.isVisible())
            assert axis.label.sceneBoundingRect().height() <= vb.sceneBoundingRect().height() + 2, run
        else:
            assert tag is not None and tag.isVisible() and tag.textItem.toPlainText() == run, run
            box = tag.sceneBoundingRect()
            # above its strip: its filled box washed a pale bar over the image's top rows when lower
            assert box.bottom() <= vb.sceneBoundingRect().top(), (run, box.bottom(), vb.sceneBoundingRect().top())
            tags.append(box)
        boxes.append(vb.sceneBoundingRect())
    assert len(tags) == len(runs), "six runs in 680 px: all named alike, by tags"
    for box in tags:
        assert not any(box.intersects(b.adjusted(0, 2, 0, -2)) for b in boxes), box  # over no strip
    assert all(not a.intersects(b) for i, a in enumerate(tags) for b in tags[i + 1 :])
    view.resize(270, 2400)  # tall strips: every name rotated again
    for _ in range(4):
        view.grab()
        qtbot.wait(20)
    assert all(p.getAxis("left").labelText == run for run, p in view.plots.items())
    assert not any(getattr(p, "gradviz_run_tag", None) is not None and p.gradviz_run_tag.isVisible() for p in view.plots.values())


def test_short_heatmap_strips_label_their_first_and_last_layer(qtbot):
    """Six runs at 1024x768 leave each heatmap strip about a line and a half high: it kept only "0",
    so nothing said how many layers it held. Its first and last layers are labelled, clear of each
    other; and the shared step axis under the last strip still has a number."""
    from PySide6 import QtGui

    from gradviz.gui.views.heatmap import HeatmapView

    rec = Recording()
    names = [f"l{i}" for i in range(18)]
    for run in ("a", "b", "c", "d", "e", "f"):
        rec.add_run(run, names, ["Linear"] * 18, [])
        for step in range(0, 1280, 20):
            rec.append(run, step, {"loss": 1.0, "grad_norm": np.geomspace(1e-3, 1.0, 18).astype(np.float32)})
    theme = make_theme("light", True, 768)
    view = settled(qtbot, HeatmapView(), rec, (270, 650), theme)
    line = QtGui.QFontMetricsF(theme.font()).height()
    for run, plot in view.plots.items():
        height = plot.getViewBox().height()
        assert height < 3 * line, (run, height)  # the strips are short, as on the projector
        ticks = plot.getAxis("left")._tickLevels[0]
        assert [t[1] for t in ticks] == ["0", "17"], (run, ticks)
        assert (ticks[1][0] - ticks[0][0]) * height / 18 >= 1.1 * line * 0.999
    bottom = list(view.plots.values())[-1].getAxis("bottom")
    assert drawn_labels(bottom), bottom.width()


def test_activation_axis_makes_room_for_wide_tick_labels(qtbot):
    """An N(0, 1)-initialised LeNet's activation std reaches 15000: at presentation size the fixed
    axis width put "15000" under the axis title. The axis now sizes itself to its labels."""
    from PySide6 import QtGui

    from gradviz.gui.views.activations import ActivationsView

    rec = Recording()
    rec.add_run("lenet-normal", [f"l{i}" for i in range(9)], ["Conv2d"] * 9, [])
    rec.append("lenet-normal", 0, {"loss": 1.0, "act_mean": np.linspace(0, -30000, 9), "act_std": np.linspace(5000, 15000, 9), "act_saturation": np.full(9, 0.5)})
    theme = make_theme("light", True, 1080)
    view = settled(qtbot, ActivationsView(), rec, (1400, 600), theme)
    font = QtGui.QFontMetricsF(theme.font())
    for stat, widest in (("act_std", "15000"), ("act_mean", "-30000")):
        axis = view.plots[stat].getAxis("left")
        assert axis.width() >= font.horizontalAdvance(widest) + font.height() * 0.8, (stat, axis.width())


def test_activations_view_says_when_a_run_recorded_no_statistics(qtbot):
    """A watched model compiled with fullgraph=True records no activation statistics: the view
    showed three empty plots and nothing else. Its key now says there are none, and why when the
    run's meta says; a run with statistics shows no such line."""
    from gradviz.gui.views.activations import NO_STATISTICS, ActivationsView

    def rec_with(stats: bool, meta: dict) -> Recording:
        rec = Recording()
        rec.set_meta(meta)
        rec.add_run("c", ["0", "1"], ["Linear", "Linear"], [])
        values = {"loss": 1.0, "grad_norm": np.ones(2, np.float32)}
        if stats:
            values.update({k: np.full(2, 0.5) for k in ("act_mean", "act_std", "act_saturation")})
        rec.append("c", 0, values)
        return rec

    for stats, meta, said in (
        (False, {"kind": "watch", "fullgraph": True}, "fullgraph=True"),
        (False, {"kind": "watch", "scripted": True}, "TorchScript"),
        (False, {"kind": "watch"}, NO_STATISTICS),
        (True, {"kind": "watch"}, None),
    ):
        view = ActivationsView()
        qtbot.addWidget(view)
        view.resize(700, 500)
        view.refresh(rec_with(stats, meta))
        text = view.key.full_text
        if said is None:
            assert NO_STATISTICS not in text and view.no_statistics == ""
            assert len(view.curves[("c", "act_mean")].getOriginalDataset()[0]) == 2
        else:
            assert NO_STATISTICS in text and said in text and view.no_statistics in text


def shown_as_tooltip(tip: str) -> str:
    """The text a tooltip draws for `tip`, decided as Qt decides it (rich text when the first line
    looks like markup)."""
    from PySide6 import QtGui

    doc = QtGui.QTextDocument()
    if QtGui.Qt.mightBeRichText(tip):
        doc.setHtml(tip)
    else:
        doc.setPlainText(tip)
    return doc.toPlainText()


def test_tooltips_show_names_and_messages_from_a_file_as_written(qtbot):
    """An event reading "a < b and <b>c</b>" drew "a  and c" in bold in its marker's tooltip, and a
    layer named "<i>x</i>" lost its brackets in the layer table's; text that is not markup to begin
    with is left exactly as it was."""
    from PySide6 import QtGui

    from gradviz.gui.replay import EventSlider

    rec = Recording()
    run, layer = "<b>r</b>", "<i>x</i>"
    rec.set_meta({"layer_table": {run: [[layer, "Linear", [4], 12, 24]]}})
    rec.add_run(run, [layer], ["Linear"], [])
    for i in range(4):
        rec.append(run, i, {"loss": 1.0 / (i + 1), "grad_norm": np.full(1, 0.1, np.float32)})
    detail = "a < b and <b>c</b> & d"
    rec.add_event(2, run, "warning", detail)
    views = {v.name: v for v in make_views()}
    for v in views.values():
        qtbot.addWidget(v)
        v.resize(900, 600)
        v.refresh(rec)
    (line,) = views["loss"].markers.lines
    assert shown_as_tooltip(line.toolTip()) == f"step 2: {run}: {detail}"
    cell = views["layers"].table.item(0, 1)
    assert cell.text() == layer and shown_as_tooltip(cell.toolTip()).split(" · ")[:2] == ["layer 0", layer]
    slider = EventSlider()
    qtbot.addWidget(slider)
    slider.set_marks([(2, QtGui.QColor("red"), detail), (3, QtGui.QColor("red"), "plain words")])
    assert shown_as_tooltip(slider.toolTip()) == f"{detail}\nplain words"
    plain = "step 3: plain: residual on"
    rec.add_event(3, "plain", "toggle", "residual on")
    views["loss"].refresh(rec)
    assert plain in [ln.toolTip() for ln in views["loss"].markers.lines]  # untouched


def test_a_files_config_too_big_to_build_gets_its_table_from_shapes(qtbot):
    """A file without a stored table whose config is 200 blocks x 4096 (3.4 G parameters a twin)
    made the window build both models for the layer table: 27 GB asked for, the window frozen or
    killed. Past `REBUILD_LIMIT` parameters the table comes from a shapes-only build."""
    import resource

    import torch

    from gradviz.config import load_preset, to_dict
    from gradviz.gui.views import layers as layers_mod

    cfg = load_preset("demo").with_overrides({"model.depth": 200, "model.width": 4096})
    rec = Recording()
    rec.set_meta({"kind": "experiment", "config": to_dict(cfg)})
    names = ["input"] + [n for i in range(200) for n in (f"blocks.{i}.linear", f"blocks.{i}.norm")] + ["head"]
    for run in ("plain", "residual"):
        rec.add_run(run, names, ["Linear"] * len(names), [])
    real_empty, allocated = torch.empty, []

    def watched_empty(*args, **kw):
        t = real_empty(*args, **kw)
        if t.device.type != "meta":
            allocated.append(t.numel())
        return t

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.empty = watched_empty
    try:
        (layers,) = [v for v in make_views() if v.name == "layers"]
        qtbot.addWidget(layers)
        layers.refresh(rec)
    finally:
        torch.empty = real_empty
    assert sum(allocated) < 10_000_000 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 2_000_000  # KB
    _, rows = layers.csv()
    assert len(rows) == len(names) and rows[1][1] == "blocks.0.linear" and rows[1][4] == 4096 * 4096 + 4096
    assert sum(r[4] for r in rows) > layers_mod.REBUILD_LIMIT
    assert "parameters" in layers.total_label.text()


def test_a_files_image_folder_is_not_walked_for_its_table(qtbot, monkeypatch):
    """A recording's config naming an image folder (an old file, or one that says "/") would have
    had the window list that whole tree for the classes; the table falls back to names and types."""
    from gradviz.config import load_preset, to_dict
    from gradviz.core.data import vision

    listed: list = []

    def walked(cfg):
        listed.append(cfg.root)
        raise FileNotFoundError("stands for minutes of walking")

    monkeypatch.setattr(vision, "_list_image_folder", walked)
    cfg = load_preset("resnet18-mnist").with_overrides({"data.name": "imagefolder", "data.root": "/"})
    rec = Recording()
    rec.set_meta({"kind": "experiment", "config": to_dict(cfg)})
    rec.add_run("plain", ["conv1", "fc"], ["Conv2d", "Linear"], [])
    (layers,) = [v for v in make_views() if v.name == "layers"]
    qtbot.addWidget(layers)
    layers.refresh(rec)
    assert [r[1] for r in layers.csv()[1]] == ["conv1", "fc"] and "names and types only" in layers.total_label.text() + layers.note
    assert listed == []


def test_a_still_readout_grows_back_without_a_new_text(qtbot, monkeypatch):
    """A paused or finished session's lines do not change, so a size chosen for longer texts was
    kept for good; the readout looks again every `REGROW_AFTER` seconds on its own."""
    from PySide6 import QtGui

    from gradviz.gui import fitted_label
    from gradviz.gui.views.readout import Readout

    now = [1000.0]
    monkeypatch.setattr(fitted_label, "clock", lambda: now[0])
    rec = Recording()
    for run in ("plain", "residual"):
        rec.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
        rec.append(run, 0, {"loss": 1.0, "grad_norm": np.array([1e-7, 1.0], np.float32)})
    readout = Readout()
    qtbot.addWidget(readout)
    readout.refresh(rec)
    assert readout._regrow.isActive() and readout._regrow.interval() == fitted_label.REGROW_AFTER * 1000
    labels = list(readout.labels.values())
    base = labels[0].base_point_size()
    long = [f"{run}: layer 0 receives 1/1.0e7 of layer 1's gradient: vanishing, and this line goes on" for run in readout.labels]
    for lab, text in zip(labels, long, strict=True):
        lab.set_texts([text])
    width = QtGui.QFontMetricsF(labels[0].font()).horizontalAdvance(long[0])
    readout.resize(int(width * 0.3), 300)
    readout.show()
    qtbot.wait(20)
    small = labels[0].font().pointSizeF()
    assert small < base
    for lab, run in zip(labels, readout.labels, strict=True):
        lab.set_texts([f"{run}: fine"])  # much shorter, but just after the fit: kept
    assert [lab.font().pointSizeF() for lab in labels] == [small, small]
    now[0] += fitted_label.REGROW_AFTER + 1
    readout._regrow.timeout.emit()  # no text changed since
    assert [lab.font().pointSizeF() for lab in labels] == [base, base]
