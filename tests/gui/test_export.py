"""Export: every file read back (PNG decoded, SVG parsed, PDF rendered, CSV parsed), slide packs,
and the GUI entry points (menu + Ctrl+E, dialog, right-click) on the real views and main window."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import csv
import importlib.util
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from gradviz.core.runfile import open_run
from gradviz.gui import export as ex
from gradviz.gui.views import make_views

ROOT = Path(__file__).resolve().parents[2]
STEPS = 300
VIEW_NAMES = ["depth", "heatmap", "loss", "histograms", "activations", "layers"]


def _bench():
    spec = importlib.util.spec_from_file_location("gradviz_bench_open_export", ROOT / "bench" / "open_export.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def run_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("run") / "synthetic.gradviz"
    return _bench().write_synthetic_run(path, STEPS)


@pytest.fixture(scope="module")
def recording(run_file):
    return open_run(run_file)


@pytest.fixture(scope="module")
def all_views(qapp, recording):
    vs = make_views(None)
    yield {v.name: v for v in vs}
    for v in vs:
        v.close()
        v.deleteLater()
    qapp.processEvents()


@pytest.fixture()
def views(all_views, recording):
    """The six real views, drawn up to the end of the recording."""
    for v in all_views.values():
        v.refresh(recording, None)
    return all_views


def num(cell: str) -> float:
    return float(cell) if cell != "" else float("nan")  # the CSV leaves non-finite cells empty


# ---- reading files back -------------------------------------------------------------------------
def image_stats(img: QtGui.QImage) -> tuple[int, float, np.ndarray]:
    """(distinct colours, fraction of pixels that differ from the corner, RGBA array)."""
    img = img.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, : img.width() * 4].copy()
    arr = arr.reshape(img.height(), img.width(), 4)
    flat = arr.reshape(-1, 4).view(np.uint32).ravel()
    distinct = len(np.unique(flat[:: max(1, len(flat) // 200_000)]))
    differs = float(np.mean(flat != flat[0]))
    return distinct, differs, arr.copy()


def assert_png(path: Path, width: int, height: int) -> np.ndarray:
    img = QtGui.QImage(str(path))
    assert not img.isNull(), f"{path} does not decode"
    assert (img.width(), img.height()) == (width, height)
    distinct, differs, arr = image_stats(img)
    # a blank export draws nothing but the background; a loss chart of two thin curves with axes
    # and its key (no longer a filled box over the plot) inks under 2% of a 960 x 540 slide
    assert distinct > 20 and differs > 0.01, f"{path} looks blank ({distinct} colours, {differs:.3f} drawn)"
    return arr


def slide_size(view) -> tuple[int, int]:
    """960 x 540, except a layer table with more rows than that holds: it grows taller."""
    size = ex.DEFAULT_SIZE
    if hasattr(view, "export_size"):
        size = view.export_size(size)
        assert size.width() == 960 and size.height() >= 540
    return size.width(), size.height()


def pack_stems(view, size=ex.DEFAULT_SIZE) -> list[str]:
    """The file stems of a view's slides in a slide pack: a table too long for one slide is paged."""
    pages = view.page_count(size) if hasattr(view, "page_count") else 1
    return [view.name] if pages == 1 else [f"{view.name}-{k + 1}" for k in range(pages)]


def svg_texts(path: Path) -> tuple[ET.Element, list[str]]:
    root = ET.parse(path).getroot()
    texts = ["".join(el.itertext()).strip() for el in root.iter() if el.tag.endswith("}text") or el.tag == "text"]
    return root, texts


def assert_svg(path: Path, must_contain: list[str], shapes: tuple[str, ...] = ("path",)) -> None:
    root, texts = svg_texts(path)
    tags = {el.tag.split("}")[-1] for el in root.iter()}
    assert "text" in tags and tags & set(shapes), f"{path}: no {shapes}/text elements ({sorted(tags)})"
    joined = " | ".join(texts)
    for s in must_contain:
        assert s in joined, f"{path}: {s!r} not among the SVG texts: {joined[:300]}"


def render_pdf(path: Path, out_dir: Path) -> Path:
    assert path.read_bytes()[:5] == b"%PDF-"
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed: cannot render the PDF")
    prefix = out_dir / path.stem
    subprocess.run(["pdftoppm", "-png", "-r", "72", "-singlefile", str(path), str(prefix)], check=True, timeout=60)
    return prefix.with_suffix(".png")


def pdf_text(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    return subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True, timeout=60).stdout


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def drawn_title(view) -> str:
    """The part of the view's title every export shows (titles may carry a ': detail' suffix)."""
    return re.split(r" \(|: ", view.title)[0]


# ---- one view, each format ----------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_png_size_scale_and_white_background(views, tmp_path, scale):
    files = ex.export_view(views["depth"], tmp_path, "png", scale=scale)
    assert files == [tmp_path / "depth.png"]
    w, h = ex.DEFAULT_SIZE.width(), ex.DEFAULT_SIZE.height()
    arr = assert_png(files[0], round(w * scale), round(h * scale))
    assert tuple(arr[0, 0]) == (255, 255, 255, 255)  # white, opaque corner
    # both runs' colours (theme: plain vermillion, residual blue) are on the chart
    rgb = arr[..., :3].reshape(-1, 3)
    for colour in ((0xD5, 0x5E, 0x00), (0x00, 0x72, 0xB2)):
        assert np.any(np.all(np.abs(rgb.astype(int) - colour) < 12, axis=1)), f"no pixel of colour {colour}"


def test_png_transparent_background(views, tmp_path):
    (path,) = ex.export_view(views["loss"], tmp_path / "loss-clear.png", "png", scale=1, transparent=True)
    assert path.name == "loss-clear.png"
    arr = assert_png(path, ex.DEFAULT_SIZE.width(), ex.DEFAULT_SIZE.height())
    alpha = arr[..., 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0  # corners see through
    assert (alpha == 0).mean() > 0.5  # mostly background
    assert (alpha == 255).any()  # but curves and text are opaque


def test_heatmap_export_draws_the_twins_equally_tall(views, tmp_path):
    """Each run's heatmap image in an exported slide is as tall as the other's. With equal rows the
    residual twin's image (the one above the step labels) was about four fifths of the plain one's,
    so their layers did not line up; the window evens the rows out a layout pass after a resize,
    later than an export paints."""
    (path,) = ex.export_view(views["heatmap"], tmp_path, "png", scale=1, size=(960, 720))
    rgb = assert_png(path, 960, 720)[..., :3].astype(int)
    plots = rgb[:, : int(rgb.shape[1] * 0.7)]  # left of the colour bar
    coloured = (plots.max(axis=2) - plots.min(axis=2)) > 40  # viridis, not white, grey or black
    rows = np.flatnonzero(coloured.sum(axis=1) > 100)  # rows crossing an image (labels are narrow)
    spans = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    heights = [len(sp) for sp in spans if len(sp) > 20]
    assert len(heights) == 2, [len(sp) for sp in spans]
    assert abs(heights[0] - heights[1]) <= 2, heights


def test_explicit_size(views, tmp_path):
    (path,) = ex.export_view(views["activations"], tmp_path, "png", scale=1, size=(800, 600))
    assert_png(path, 800, 600)


def test_svg_is_vectors_with_title_axes_legend(views, tmp_path):
    (path,) = ex.export_view(views["depth"], tmp_path, "svg")
    assert_svg(path, [drawn_title(views["depth"]), "layer index", "plain", "residual"])
    root, _ = svg_texts(path)
    paths = [el for el in root.iter() if el.tag.endswith("}path")]
    assert len(paths) >= 10  # curves, axes, ticks: drawn as paths, not one big picture
    images = [el for el in root.iter() if el.tag.endswith("}image")]
    assert not images, "the depth profile should hold no bitmaps"


def test_pdf_renders_and_holds_text(views, tmp_path):
    (path,) = ex.export_view(views["loss"], tmp_path, "pdf")
    png = render_pdf(path, tmp_path)
    img = QtGui.QImage(str(png))
    # 960x540 logical pixels at 96 dpi = 720x405 pt; rendered at 72 dpi
    assert abs(img.width() - 720) <= 2 and abs(img.height() - 405) <= 2
    distinct, differs, _ = image_stats(img)
    assert distinct > 20 and differs > 0.02
    text = pdf_text(path)
    assert drawn_title(views["loss"]) in text and "step" in text and "plain" in text


def test_csv_layers_and_steps(views, recording, tmp_path):
    ex.export_view(views["depth"], tmp_path, "csv")
    ex.export_view(views["loss"], tmp_path, "csv")
    header, rows = read_csv(tmp_path / "depth.csv")
    assert header == [str(h) for h in views["depth"].csv()[0]]
    assert header[0] == "layer" and len(rows) == len(recording.layers("plain"))
    # each row names its layer (a transformer's "layer 37" says little read later)
    assert header[1] == "name" and [r[1] for r in rows] == recording.layers("plain")
    _, grad = recording.metric("residual", "grad_norm")
    col = header.index(next(h for h in header if h.startswith("residual")))
    np.testing.assert_allclose([num(r[col]) for r in rows], grad[-1], rtol=1e-6, equal_nan=True)
    header, rows = read_csv(tmp_path / "loss.csv")
    assert header[0] == "step" and len(header) >= 3
    steps, _ = recording.metric("plain", "loss")
    assert len(rows) == len(steps) == STEPS
    assert [int(r[0]) for r in rows] == list(steps)


def test_histogram_csv_names_its_layer(views, recording, tmp_path):
    """The histograms CSV's columns read "plain weight [-0.1, -0.09)": which layer was not said
    anywhere in the file. Every column names the run's layer, and its counts are that layer's
    histograms as the file holds them."""
    view = views["histograms"]
    view.layer_box.setCurrentIndex(3)
    view.refresh(recording)
    ex.export_view(view, tmp_path, "csv")
    header, rows = read_csv(tmp_path / "histograms.csv")
    for run in recording.runs:
        name = recording.layers(run)[3]
        cols = [i for i, h in enumerate(header) if h.startswith(f"{run} ")]
        assert cols and all(header[i].startswith(f"{run} weight of 3: {name} [") for i in cols)
        steps, _, counts = recording.histograms(run, "weight", 3)
        assert [int(r[0]) for r in rows] == list(steps)
        np.testing.assert_allclose([[num(r[i]) for i in cols] for r in rows], counts)


def test_export_at_a_step(views, recording, tmp_path):
    k = 120
    views["depth"].refresh(recording, upto_step=k)
    views["loss"].refresh(recording, upto_step=k)
    ex.export_view(views["depth"], tmp_path, "csv")
    ex.export_view(views["loss"], tmp_path, "csv")
    header, rows = read_csv(tmp_path / "depth.csv")
    _, grad = recording.metric("plain", "grad_norm")
    col = header.index(next(h for h in header if h.startswith("plain")))
    got = np.array([num(r[col]) for r in rows])
    assert np.isfinite(got).sum() > 20
    np.testing.assert_allclose(got, grad[k], rtol=1e-6, equal_nan=True)
    _, rows = read_csv(tmp_path / "loss.csv")
    assert len(rows) == k + 1


def test_bad_requests_are_one_line_errors(views, tmp_path):
    with pytest.raises(ex.ExportError, match="unknown format 'gif'"):
        ex.export_view(views["depth"], tmp_path, "png,gif")
    with pytest.raises(ex.ExportError, match="out of range"):
        ex.export_view(views["depth"], tmp_path, "png", scale=5)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ex.ExportError, match="not a folder"):
        ex.export_slide_pack(list(views.values()), blocker, "png")


# ---- slide pack ----------------------------------------------------------------------------------
def test_slide_pack_every_view_every_format(views, recording, tmp_path):
    order = [views[n] for n in VIEW_NAMES]
    stems = {v.name: pack_stems(v) for v in order}
    files = ex.export_slide_pack(order, tmp_path, scale=1)
    expected = {f"{s}.{f}" for n in VIEW_NAMES for s in stems[n] for f in ex.FORMATS if f != "csv"}
    expected |= {f"{n}.csv" for n in VIEW_NAMES} | {"index.html"}
    assert {f.name for f in files} == expected
    assert {p.name for p in tmp_path.iterdir()} == expected
    for view in order:
        name = view.name
        for stem in stems[name]:
            assert_png(tmp_path / f"{stem}.png", *ex.DEFAULT_SIZE.toTuple())
            # a table is drawn with lines and rectangles; every chart has paths
            shapes = ("path", "polyline", "rect") if name == "layers" else ("path",)
            assert_svg(tmp_path / f"{stem}.svg", [drawn_title(view)], shapes)
            assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        header, rows = read_csv(tmp_path / f"{name}.csv")
        assert header == [str(x) for x in view.csv()[0]] and rows
    # index.html shows the PNGs in view order
    html = (tmp_path / "index.html").read_text()
    assert re.findall(r'<img src="([^"]+)"', html) == [f"{s}.png" for n in VIEW_NAMES for s in stems[n]]
    # charts with a step axis hold one CSV row per recorded step
    for name in ("loss", "heatmap"):
        _, rows = read_csv(tmp_path / f"{name}.csv")
        assert len(rows) == STEPS


def test_slide_pack_pdfs_render(views, tmp_path):
    order = [views[n] for n in VIEW_NAMES]
    ex.export_slide_pack(order, tmp_path / "pack", "pdf")
    for stem in (s for v in order for s in pack_stems(v)):
        png = render_pdf(tmp_path / "pack" / f"{stem}.pdf", tmp_path)
        distinct, differs, _ = image_stats(QtGui.QImage(str(png)))
        assert distinct > 10 and differs > 0.02, f"{stem}.pdf renders blank"


# ---- GUI: menu, shortcut, dialog, right-click --------------------------------------------------------
@pytest.fixture()
def window(qtbot, recording, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    QtCore.QStandardPaths.setTestModeEnabled(True)
    from gradviz.gui.app import MainWindow

    w = MainWindow(recording)
    qtbot.addWidget(w)
    ex.install_export(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.shutdown() if hasattr(w, "shutdown") else None


def _find_action(window, text: str) -> QtGui.QAction:
    for act in window.menu_file.actions():
        if act.text() == text:
            return act
    raise AssertionError(f"no File menu entry {text!r}: {[a.text() for a in window.menu_file.actions()]}")


def _dialog(qtbot) -> ex.ExportDialog:
    found: list = []

    def visible():
        found[:] = [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, ex.ExportDialog) and w.isVisible()]
        return bool(found)

    qtbot.waitUntil(visible, timeout=3000)
    return found[-1]


def test_menu_and_ctrl_e_export_current_view(window, qtbot, tmp_path):
    act = _find_action(window, "Export view…")
    assert act.shortcut().toString() == "Ctrl+E"
    assert _find_action(window, "Export slide pack…")
    window.depth.setFocus()
    qtbot.keyClick(window, QtCore.Qt.Key.Key_E, QtCore.Qt.KeyboardModifier.ControlModifier)
    dlg = _dialog(qtbot)
    assert not dlg.isModal() or dlg.windowModality() != QtCore.Qt.WindowModality.ApplicationModal
    dlg.folder.setText(str(tmp_path / "out"))
    for fmt, box in dlg.format_boxes.items():
        box.setChecked(fmt in ("png", "csv"))
    dlg.scale.setValue(1.5)
    dlg.background.setCurrentIndex(1)  # transparent
    dlg.accept()
    out = tmp_path / "out"
    qtbot.waitUntil(lambda: (out / "depth.png").exists(), timeout=5000)
    arr = assert_png(out / "depth.png", 1440, 810)
    assert arr[0, 0, 3] == 0
    assert (out / "depth.csv").exists() and not (out / "depth.svg").exists()
    assert "Exported" in window.message_label.text() and "depth.png" in window.message_label.text()


def test_gui_slide_pack_includes_hidden_tabs(window, qtbot, tmp_path):
    window.set_upto_step(150)
    _find_action(window, "Export slide pack…").trigger()
    dlg = _dialog(qtbot)
    dlg.folder.setText(str(tmp_path / "pack"))
    for fmt, box in dlg.format_boxes.items():
        box.setChecked(fmt in ("png", "csv"))
    dlg.scale.setValue(1)
    dlg.accept()
    pack = tmp_path / "pack"
    qtbot.waitUntil(lambda: (pack / "index.html").exists(), timeout=10000)
    for view in window.views:
        with ex._themed(view, ex._slide_theme(view)):  # the pack's fonts decide a table's pages
            stems = pack_stems(view)
        for stem in stems:  # also the views in tabs nobody looked at
            assert_png(pack / f"{stem}.png", *(slide_size(view) if len(stems) == 1 else ex.DEFAULT_SIZE.toTuple()))
    _, rows = read_csv(pack / "loss.csv")
    assert len(rows) == 151  # as shown: up to step 150
    assert "Slide pack" in window.message_label.text()


def drawn_extent(arr: np.ndarray) -> tuple[float, float]:
    """(right, bottom) edge of what differs from the corner's colour, as fractions of the image."""
    ink = np.any(arr != arr[0, 0], axis=2)
    cols, rows = np.flatnonzero(ink.any(axis=0)), np.flatnonzero(ink.any(axis=1))
    return (cols[-1] + 1) / arr.shape[1], (rows[-1] + 1) / arr.shape[0]


@pytest.mark.parametrize("name", ["heatmap", "histograms", "activations", "loss"])
def test_hidden_tab_export_fills_the_slide(window, tmp_path, name):
    """A tab nobody opened still had its first 640 x 480 layout: its 960 x 540 export was drawn in
    the top-left corner with a blank strip right and below (its page's layout put the old size
    back as soon as the chart was painted)."""
    view = next(v for v in window.views if v.name == name)
    if view is window.tabs.currentWidget():  # the page the window opened on: look at another one
        window.tabs.setCurrentWidget(next(v for v in window.views if v.name == "layers"))
    assert not view.isVisible()
    view.refresh(window.recording, None)
    (png,) = ex.export_view(view, tmp_path, "png", scale=1.0, size=(960, 540))
    right, bottom = drawn_extent(assert_png(png, 960, 540))
    assert right > 0.9 and bottom > 0.9, (right, bottom)
    assert not view.isVisible()


def test_failed_export_is_one_status_line(window, qtbot, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    window._gradviz_exporter._do_view(window.depth, {"folder": str(blocker / "sub"), "name": "depth", "formats": ["png"],
                                                    "scale": 1.0, "transparent": False, "size": None})
    msg = window.message_label.text()
    assert msg.startswith("Export failed") and "\n" not in msg
    assert window.isVisible()


def test_right_click_offers_export(window, qtbot):
    view = window.depth
    plot = view.export_widget()
    target = plot.viewport() if isinstance(plot, QtWidgets.QAbstractScrollArea) else plot
    pos = QtCore.QPoint(target.width() // 2, target.height() // 2)
    ev = QtGui.QContextMenuEvent(QtGui.QContextMenuEvent.Reason.Mouse, pos, target.mapToGlobal(pos))
    QtWidgets.QApplication.sendEvent(target, ev)
    menus: list = []

    def shown():
        menus[:] = [m for m in QtWidgets.QApplication.topLevelWidgets() if isinstance(m, QtWidgets.QMenu) and m.isVisible()]
        return bool(menus)

    qtbot.waitUntil(shown, timeout=3000)
    texts = [a.text() for m in menus for a in m.actions()]
    assert "Export view…" in texts
    export_act = next(a for m in menus for a in m.actions() if a.text() == "Export view…")
    for m in menus:
        m.close()
    export_act.trigger()
    dlg = _dialog(qtbot)
    assert view.title.split(":")[0] in dlg.windowTitle()
    dlg.reject()


@pytest.mark.parametrize("rows", [5, 62])
def test_an_exported_layer_table_shows_every_row(qtbot, tmp_path, rows):
    """A 960 x 540 slide held 14 of the demo's 62 rows behind a scroll bar. The export grows taller
    where the rows need it (a slide can be cropped, a hidden row cannot be read); a short table
    keeps the asked size."""
    from gradviz.core.recording import Recording
    from gradviz.gui.views.layers import LayersView

    table = [[f"blocks.{i}.linear", "Linear", [128], 16512, 32896] for i in range(rows - 1)] + [["head", "Linear", [4], 516, 1028]]
    rec = Recording()
    rec.add_run("plain", [r[0] for r in table], [r[1] for r in table], [])
    rec.set_meta({"layer_table": {"plain": table}})
    view = LayersView()
    qtbot.addWidget(view)
    view.refresh(rec)
    png, svg = ex.export_view(view, tmp_path, "png,svg", scale=1.0, size=(960, 540))
    img = QtGui.QImage(str(png))
    row_h = view.table.verticalHeader().defaultSectionSize()
    if rows == 5:
        assert (img.width(), img.height()) == (960, 540)
    else:
        assert img.width() == 960 and img.height() >= rows * row_h, (img.height(), rows * row_h)
    # the table's frame ends at its last row and the totals line follows it: a 5-row table was
    # a framed grid running 360 px down the slide with nothing in it
    arr = image_stats(img)[2]
    inked = np.flatnonzero(np.any(arr[:, :, :3] < 250, axis=(1, 2)))
    total_h = view.total_label.sizeHint().height()
    assert inked.max() <= view.title_label.sizeHint().height() + view._rows_height() + total_h + 16, (inked.max(), img.height())
    _, texts = svg_texts(svg)
    assert "head" in texts and f"blocks.{rows - 2}.linear" in texts  # the last rows are drawn


def test_an_exported_layer_table_names_its_run_instead_of_showing_the_selector(qtbot, tmp_path):
    """An exported slide showed the "run [plain ▾]" drop-down, a control that means nothing on
    paper. The export leaves it out and says in the title which run's table it is; the view on
    screen keeps its selector."""
    from gradviz.core.recording import Recording
    from gradviz.gui.views.layers import LayersView

    rec = Recording()
    for run in ("plain", "residual"):
        table = [["blocks.0.linear", "Linear", [128], 16512, 32896], ["head", "Linear", [4], 516, 1028]]
        rec.add_run(run, [r[0] for r in table], [r[1] for r in table], [])
    rec.set_meta({"layer_table": {"plain": table, "residual": table}})
    view = LayersView()
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    view.refresh(rec)
    view.run_box.setCurrentText("residual")
    # the theme's fonts from the start (`gradviz export` applies none): the title stands out
    assert view.title_label.font().pointSizeF() == view.theme.font(1.3).pointSizeF() > view.table.font().pointSizeF()
    policies = (view.table.verticalScrollBarPolicy(), view.table.horizontalScrollBarPolicy())
    files = {p.suffix: p for p in ex.export_view(view, tmp_path, "svg,png", scale=1.0, size=(960, 540))}
    svg, png = files[".svg"], files[".png"]
    _, texts = svg_texts(svg)
    assert "Layer table: residual" in texts and "head" in texts
    assert "run" not in texts and "plain" not in texts  # neither the selector's label nor its items
    assert view.run_box.isVisible() and view.run_label.isVisible() and view.title_label.text() == "Layer table"
    # the table is as wide as its columns, not the slide: its header bar and grid stopped running
    # on past the last column; every column is drawn
    assert {"#", "name", "type", "shape", "params", "FLOPs"} <= set(texts)
    arr = image_stats(QtGui.QImage(str(png)))[2]
    band = arr[40:200]  # below the title, across the header and the first rows
    ink = np.any(band[:, :, :3] < 250, axis=(0, 2))  # columns with anything not white in them
    right = int(np.flatnonzero(ink).max())
    assert right < 0.6 * arr.shape[1], right
    assert view.table.maximumWidth() > 10**6 and view.table.minimumWidth() == 0
    assert view.table.maximumHeight() > 10**6 and view.table.minimumHeight() == 0  # the pane scrolls again
    assert (view.table.verticalScrollBarPolicy(), view.table.horizontalScrollBarPolicy()) == policies
    # one run: nothing to name
    one = Recording()
    one.add_run("solo", ["head"], ["Linear"], [])
    one.set_meta({"layer_table": {"solo": [["head", "Linear", [4], 516, 1028]]}})
    view.refresh(one)
    (svg,) = ex.export_view(view, tmp_path / "one", "svg", size=(960, 540))
    _, texts = svg_texts(svg)
    assert "Layer table" in texts and "run" not in texts


def _render_svg(path: Path) -> np.ndarray:
    from PySide6 import QtSvg

    r = QtSvg.QSvgRenderer(str(path))
    img = QtGui.QImage(r.defaultSize(), QtGui.QImage.Format.Format_ARGB32)
    img.fill(QtCore.Qt.GlobalColor.white)
    p = QtGui.QPainter(img)
    r.render(p)
    p.end()
    ptr = img.constBits()
    return np.frombuffer(ptr, np.uint8, img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())[:, : img.width() * 4].copy()


@pytest.mark.parametrize("name", ["depth", "activations", "loss"])
def test_svg_curves_are_in_pixels_so_any_renderer_draws_them_thin(views, tmp_path, monkeypatch, name):
    """Qt writes each curve in data coordinates under a data-to-pixel transform (a y scale of -375)
    and keeps it a hairline with `vector-effect="non-scaling-stroke"`; renderers without that
    attribute (ImageMagick, some slide programs) painted 375 px bands over the chart. The export
    maps those points to pixels: no hairline keeps a stretching transform, every point is its
    original under the old transform, and Qt's own renderer draws the file as before."""
    import re

    from gradviz.gui import svg_flatten

    if name == "depth":  # an axis from 1e-1 up: the smaller gradients' curves leave the plot
        views[name].set_fixed(True, -1, 2)
        views[name].refresh(views[name].recording)
    raw_dir, flat_dir = tmp_path / "raw", tmp_path / "flat"
    monkeypatch.setattr(ex, "flatten_svg", lambda path, clips=None: 0)
    (raw,) = ex.export_view(views[name], raw_dir, "svg")
    monkeypatch.undo()
    used = []
    real = ex.flatten_svg
    monkeypatch.setattr(ex, "flatten_svg", lambda path, clips=None: used.append(clips) or real(path, clips))
    (flat,) = ex.export_view(views[name], flat_dir, "svg")
    (clips,) = used
    assert clips and all(x1 > x0 and y1 > y0 for x0, y0, x1, y1 in clips)

    def inside(pts, r, tol=1.0):
        return bool(((pts[:, 0] >= r[0] - tol) & (pts[:, 0] <= r[2] + tol) & (pts[:, 1] >= r[1] - tol) & (pts[:, 1] <= r[3] + tol)).all())
    ns = "{http://www.w3.org/2000/svg}"

    def hairline_groups(path):
        out = []
        for g in ET.parse(path).getroot().iter(f"{ns}g"):
            kids = [ch for ch in g if ch.get("vector-effect") == "non-scaling-stroke" and ch.tag in (f"{ns}path", f"{ns}polyline")]
            if kids:
                out.append((svg_flatten._matrix(g.get("transform")), kids))
        return out

    before, after = hairline_groups(raw), hairline_groups(flat)
    assert len(before) == len(after) and any(svg_flatten._scales(m) for m, _ in before)
    assert not any(svg_flatten._scales(m) for m, _ in after)
    number = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
    cut = []
    for (m, kids0), (_m, kids1) in zip(before, after, strict=True):
        if not svg_flatten._scales(m):  # a translation: left as it is
            continue
        a, b, c, d, e, f = m
        for k0, k1 in zip(kids0, kids1, strict=True):
            p0 = np.array([float(v) for v in number.findall(k0.get("d") or k0.get("points"))]).reshape(-1, 2)
            p1 = np.array([float(v) for v in number.findall(k1.get("d") or k1.get("points"))]).reshape(-1, 2)
            want = np.stack([a * p0[:, 0] + c * p0[:, 1] + e, b * p0[:, 0] + d * p0[:, 1] + f], axis=1)
            def some_inside(pts, r):
                return bool(((pts[:, 0] >= r[0]) & (pts[:, 0] <= r[2]) & (pts[:, 1] >= r[1]) & (pts[:, 1] <= r[3])).any())

            if k1.get("visibility") == "hidden":  # wholly outside the plot its group is drawn in
                assert not any(inside(want, r) for r in clips)
            elif any(inside(want, r) for r in clips) or not any(some_inside(want, r) for r in clips):
                np.testing.assert_allclose(p1, want, atol=2e-3)  # inside its plot, or in none (a key): only mapped
            else:
                # cut to its plot (SVG Tiny has no clip paths): nothing drawn outside it
                assert any(inside(p1, r) for r in clips), (p1.min(axis=0), p1.max(axis=0), clips)
                cut.append(k1)
    assert cut or name != "depth"  # the depth case did leave its plot
    img0, img1 = _render_svg(raw), _render_svg(flat)
    assert img0.shape == img1.shape
    differs = np.abs(img0.astype(int) - img1.astype(int)).reshape(img0.shape[0], -1, 4).max(axis=-1) > 40
    # the same picture, to antialiasing, except where the unmapped file drew outside its plots
    keep = np.zeros_like(differs)
    for x0, y0, x1, y1 in clips:
        keep[int(y0) + 2 : int(y1) - 1, int(x0) + 2 : int(x1) - 1] = True
    outside = np.ones_like(differs)
    for _x0, y0, _x1, y1 in clips:
        outside[max(0, int(y0) - 40) : int(y1) + 40, :] = False  # rows near a plot: where cut lines were
    assert differs[keep].mean() < 0.002, differs[keep].mean()
    assert differs[outside].mean() < 0.002, differs[outside].mean()


def test_csv_never_hands_a_spreadsheet_a_formula(qtbot, tmp_path):
    """A run file's names go into the CSV: a layer called "=HYPERLINK(...)" or a run called
    "+cmd" ran as formulas where the lecturer opened the export in a spreadsheet. Such text gets a
    leading apostrophe; numbers, negative ones too, stay numbers."""
    from gradviz.core.recording import Recording

    rec = Recording()
    run, layer = "+cmd", '=HYPERLINK("http://example.invalid","x")'
    rec.add_run(run, [layer, "-tail", "ok"], ["Linear"] * 3, [])
    for i in range(3):
        rec.append(run, i, {"loss": -0.5 * (i + 1), "grad_norm": np.array([0.1, -0.0, 2.0], np.float32)})
    views = {v.name: v for v in make_views()}
    for v in views.values():
        qtbot.addWidget(v)
        v.resize(800, 500)
        v.refresh(rec)
    ex.export_view(views["depth"], tmp_path, "csv")
    ex.export_view(views["loss"], tmp_path, "csv")
    header, rows = read_csv(tmp_path / "depth.csv")
    assert [r[1] for r in rows] == ["'" + layer, "'-tail", "ok"]
    assert header[2] == f"'{run} grad_norm @ step 2"
    header, rows = read_csv(tmp_path / "loss.csv")
    assert header[:2] == ["step", f"'{run} loss"]
    assert [float(r[1]) for r in rows] == [-0.5, -1.0, -1.5]  # numbers as numbers
    cells = [c for path in ("depth.csv", "loss.csv") for row in csv.reader(open(tmp_path / path, encoding="utf-8")) for c in row]
    assert not any(c.startswith(("=", "+", "@")) for c in cells)


def test_slide_pack_gives_each_distinct_layer_table_a_slide(qtbot, tmp_path):
    """The layer table shows one run at a time: the depth preset's slide pack held the shallow
    stack's 10 layers and none of the deep stacks' 62. Every run whose table differs gets its own
    files (a residual twin's identical table none), named after the run, also where the name holds
    characters a file name must not; the view shows the run it showed before."""
    from gradviz.core.recording import Recording
    from gradviz.gui.views.layers import LayersView

    shallow = [["blocks.0.linear", "Linear", [32], 1056, 2080], ["head", "Linear", [4], 132, 260]]
    deep = [[f"blocks.{i}.linear", "Linear", [32], 1056, 2080] for i in range(6)] + [["head", "Linear", [4], 132, 260]]
    tables = {"shallow": shallow, "deep/plain": deep, "deep-residual": deep}
    rec = Recording()
    for run, table in tables.items():
        rec.add_run(run, [r[0] for r in table], [r[1] for r in table], [])
    rec.set_meta({"layer_table": tables})
    view = LayersView()
    qtbot.addWidget(view)
    view.refresh(rec)
    assert view.current_run() == "shallow"
    files = ex.export_slide_pack([view], tmp_path, "csv,svg,png", scale=1.0)
    assert {f.name for f in files} == {f"{s}.{x}" for s in ("layers", "layers-deep_plain") for x in ("csv", "svg", "png")} | {"index.html"}
    for stem, run in (("layers", "shallow"), ("layers-deep_plain", "deep/plain")):
        _, rows = read_csv(tmp_path / f"{stem}.csv")
        assert [r[1] for r in rows] == [r[0] for r in tables[run]]
        _, texts = svg_texts(tmp_path / f"{stem}.svg")
        assert f"Layer table: {run}" in texts
    html = (tmp_path / "index.html").read_text()
    assert re.findall(r"<h2>([^<]+)</h2>", html) == ["Layer table: shallow", "Layer table: deep/plain"]
    assert re.findall(r'<img src="([^"]+)"', html) == ["layers.png", "layers-deep_plain.png"]
    assert view.current_run() == "shallow" and view.table.rowCount() == len(shallow)
    # the twins alone: one table, one slide
    twins = Recording()
    for run in ("plain", "residual"):
        twins.add_run(run, [r[0] for r in deep], [r[1] for r in deep], [])
    twins.set_meta({"layer_table": {"plain": deep, "residual": deep}})
    view.refresh(twins)
    files = ex.export_slide_pack([view], tmp_path / "twins", "csv", scale=1.0)
    assert {f.name for f in files} == {"layers.csv", "index.html"}


def test_slide_pack_splits_a_long_layer_table_into_pages(qtbot, tmp_path):
    """Drawn whole, the demo's 62-layer table made one 960 x 1,462 slide, unreadable on a
    projector. In a slide pack a table that does not fit becomes pages of the asked size, rows
    spread evenly, each page titled with its layers and carrying the header and the totals; the
    CSV keeps every row; the view shows every row again after. A table that fits stays one slide,
    and a single-view export still draws every row on one."""
    from gradviz.core.recording import Recording
    from gradviz.gui.views.layers import LayersView

    table = [[f"blocks.{i}.linear", "Linear", [128], 16512, 32896] for i in range(61)] + [["head", "Linear", [4], 516, 1028]]
    rec = Recording()
    for run in ("plain", "residual"):
        rec.add_run(run, [r[0] for r in table], [r[1] for r in table], [])
    rec.set_meta({"layer_table": {"plain": table, "residual": table}})
    view = LayersView()
    qtbot.addWidget(view)
    view.refresh(rec)
    size = QtCore.QSize(960, 540)
    pages = view.page_count(size)
    per = view.page_rows(size)
    assert pages == -(-62 // per) and pages >= 2 and per >= 5
    files = ex.export_slide_pack([view], tmp_path, "png,svg,csv", scale=1.0, size=(960, 540))
    stems = [f"layers-{k + 1}" for k in range(pages)]
    assert {f.name for f in files} == {f"{s}.{x}" for s in stems for x in ("png", "svg")} | {"layers.csv", "index.html"}
    even = -(-62 // pages)
    drawn = []
    for k, stem in enumerate(stems):
        assert_png(tmp_path / f"{stem}.png", 960, 540)  # the slide's size: nothing grew taller
        _, texts = svg_texts(tmp_path / f"{stem}.svg")
        first, last = k * even, min(62, (k + 1) * even) - 1
        assert f"Layer table: plain, layers {first}\u2013{last} of 62" in texts
        names = [r[0] for r in table if r[0] in texts]
        assert names == [r[0] for r in table[first : last + 1]], (k, names)
        assert any(t.startswith("62 layers, 1,007,748 parameters") for t in texts)  # the totals on every page
        drawn += names
    assert drawn == [r[0] for r in table]  # every row on exactly one page, in order
    _, rows = read_csv(tmp_path / "layers.csv")
    assert [r[1] for r in rows] == [r[0] for r in table]
    html = (tmp_path / "index.html").read_text()
    assert re.findall(r"<h2>([^<]+)</h2>", html) == [f"Layer table ({k + 1} of {pages})" for k in range(pages)]
    assert re.findall(r'<img src="([^"]+)"', html) == [f"{s}.png" for s in stems]
    assert html.count('href="layers.csv"') == 1
    # the view on screen: every row, its own title
    assert not any(view.table.isRowHidden(i) for i in range(62)) and view.title_label.text() == "Layer table"
    # one view exported alone: the whole table on one tall image, as before
    (png,) = ex.export_view(view, tmp_path / "single", "png", scale=1.0, size=(960, 540))
    assert QtGui.QImage(str(png)).height() > 540
    # a table that fits: one slide
    short = Recording()
    short.add_run("plain", [r[0] for r in table[:4]], ["Linear"] * 4, [])
    short.set_meta({"layer_table": {"plain": table[:4]}})
    view.refresh(short)
    files = ex.export_slide_pack([view], tmp_path / "short", "png", scale=1.0, size=(960, 540))
    assert {f.name for f in files} == {"layers.png", "index.html"}
    # a run called "1" beside a paged table: its slide must not overwrite page 1
    clash = Recording()
    for run, rows in (("plain", table), ("1", table[:3])):
        clash.add_run(run, [r[0] for r in rows], ["Linear"] * len(rows), [])
    clash.set_meta({"layer_table": {"plain": table, "1": table[:3]}})
    view.refresh(clash)
    files = ex.export_slide_pack([view], tmp_path / "clash", "svg", scale=1.0, size=(960, 540))
    assert {f.name for f in files} == {f"{s}.svg" for s in stems} | {"layers-1-2.svg", "index.html"}
    assert f"Layer table: plain, layers 0\u2013{even - 1} of 62" in svg_texts(tmp_path / "clash" / "layers-1.svg")[1]
    assert "Layer table: 1" in svg_texts(tmp_path / "clash" / "layers-1-2.svg")[1]
