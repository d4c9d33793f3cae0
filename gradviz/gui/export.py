"""Charts for slides: any view to PNG (1-4x, white or transparent), SVG and PDF (vectors), and CSV.

Everything is painted by Qt itself: the view's `export_widget()` is rendered with `QWidget.render`
into a QImage, a QSvgGenerator or a QPdfWriter. pyqtgraph's own exporters are not used (its
SVGExporter raises on PySide6 6.11). Rendering through a QPainter keeps curves as paths and labels as
text in the SVG and PDF files, so they stay sharp at any size on a slide.

`export_view` and `export_slide_pack` are plain functions (the headless `gradviz export` uses them);
`install_export(window)` adds the menu entries, the Ctrl+E shortcut and the right-click entry.
"""

from __future__ import annotations

import contextlib
import csv
import html
import logging
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtSvg import QSvgGenerator

from .svg_flatten import flatten_svg

log = logging.getLogger("gradviz.export")

FORMATS = ("png", "svg", "pdf", "csv")
DEFAULT_SIZE = QtCore.QSize(960, 540)  # logical pixels; 16:9 like a slide
SIZES = {  # the export dialog's choices (None = as on screen)
    "960 × 540 (16:9)": (960, 540),
    "1280 × 720 (16:9)": (1280, 720),
    "800 × 600 (4:3)": (800, 600),
    "As on screen": None,
}
MIN_SCALE, MAX_SCALE = 1.0, 4.0


class ExportError(ValueError):
    """A bad export request (format, scale, folder); the message is one line."""


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    """'png,svg' or ['png', 'svg'] -> ['png', 'svg'] in canonical order; ExportError when unknown."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    wanted = [f.strip().lower().lstrip(".") for f in items if f.strip()]
    bad = [f for f in wanted if f not in FORMATS]
    if bad:
        raise ExportError(f"unknown format {bad[0]!r}; choose from {', '.join(FORMATS)}")
    if not wanted:
        raise ExportError(f"no format given; choose from {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in wanted]


def check_scale(scale: float) -> float:
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise ExportError(f"scale {scale!r} is not a number (1 to 4)") from None
    if not math.isfinite(s) or not MIN_SCALE <= s <= MAX_SCALE:
        raise ExportError(f"scale {scale} is out of range (1 to 4)")
    return s


# ---- preparing the widget ----------------------------------------------------------------------
def _graphics_views(widget: QtWidgets.QWidget) -> list[QtWidgets.QGraphicsView]:
    found = widget.findChildren(QtWidgets.QGraphicsView)
    if isinstance(widget, QtWidgets.QGraphicsView):
        found.insert(0, widget)
    return found


class _Prepared:
    """Context manager: lay the widget out at its export size and switch the chart backgrounds to
    white / transparent (and caching off, so nothing is drawn as a cached bitmap); undo on exit."""

    def __init__(self, widget: QtWidgets.QWidget, transparent: bool, size: QtCore.QSize | None):
        self.w = widget
        self.transparent = transparent
        self.size = size
        self._saved: list[tuple] = []
        self._scatter: list = []
        self._filled: list[QtWidgets.QWidget] = []
        self._shown = False
        self._old_size: QtCore.QSize | None = None
        self._page: QtWidgets.QWidget | None = None  # a hidden tab page resized for the export
        self._page_size: QtCore.QSize | None = None

    def __enter__(self) -> QtCore.QSize:
        w = self.w
        top = w.window()
        if not top.isVisible():
            # Never shown (headless export): show the whole window off screen so every layout has
            # real geometry, then grow the window until the chart has the wanted size.
            want = self.size or DEFAULT_SIZE
            top.setAttribute(QtCore.Qt.WidgetAttribute.WA_DontShowOnScreen, True)
            top.show()
            self._shown = True
            _settle(top)
            if w.size() != want:
                top.resize(top.size() + (want - w.size()))
                _settle(top)
            if w.size() != want:
                self._old_size = w.size()
                w.resize(want)
        elif not w.isVisible() or (self.size is not None and self.size != w.size()):
            # A page the user is not looking at (or an explicit size): size it for the export only.
            want = self.size
            if want is None:
                want = w.size() if w.width() >= 200 and w.height() >= 150 else DEFAULT_SIZE
            QtWidgets.QApplication.processEvents()
            # no event processing after this: the parent's layout would put the old size back
            self._old_size = w.size()
            # Size the whole hidden page so that its own layout gives the chart the wanted size:
            # resizing the chart alone was undone by the page's layout as soon as the chart was
            # painted (QWidget.render delivers the pending layout requests).
            page = w
            while page.parentWidget() is not None and not page.parentWidget().isVisible():
                page = page.parentWidget()
            if page is not w:
                self._page, self._page_size = page, page.size()
                page.resize(page.size() + (want - w.size()))
                _activate_layouts(page)
            if w.size() != want:
                w.resize(want)
                _activate_layouts(w)
            _deliver_pending_resizes(page)
        else:
            QtWidgets.QApplication.processEvents()
        _even_rows(w)
        brush = QtGui.QBrush(QtCore.Qt.BrushStyle.NoBrush) if self.transparent else QtGui.QBrush(QtGui.QColor("white"))
        if self.transparent:
            # widgets that fill their own background (a scroll area's viewport does) would paint
            # over the see-through image
            for child in [w, *w.findChildren(QtWidgets.QWidget)]:
                if child.autoFillBackground():
                    self._filled.append(child)
                    child.setAutoFillBackground(False)
        for gv in _graphics_views(w):
            self._saved.append((gv, gv.backgroundBrush(), gv.cacheMode(), gv.renderHints()))
            gv.setBackgroundBrush(brush)
            gv.setCacheMode(QtWidgets.QGraphicsView.CacheModeFlag.CacheNone)
            gv.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
            gv.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing, True)
            gv.resetCachedContent()
            scene = gv.scene()
            for item in scene.items() if scene is not None else ():
                opts = getattr(item, "opts", None)
                # pyqtgraph scatter symbols come from a pixmap atlas; draw them as paths instead
                if isinstance(opts, dict) and opts.get("useCache") is True:
                    self._scatter.append(item)
                    opts["useCache"] = False
        return w.size()

    def __exit__(self, *exc) -> None:
        for item in self._scatter:
            item.opts["useCache"] = True
        for child in self._filled:
            child.setAutoFillBackground(True)
        for gv, brush, cache, hints in self._saved:
            gv.setBackgroundBrush(brush)
            gv.setCacheMode(cache)
            gv.setRenderHints(hints)
        if self._page is not None:
            self._page.resize(self._page_size)
        if self._old_size is not None:
            self.w.resize(self._old_size)
        if self._shown:
            top = self.w.window()
            top.hide()
            top.setAttribute(QtCore.Qt.WidgetAttribute.WA_DontShowOnScreen, False)


def _settle(top: QtWidgets.QWidget) -> None:
    _activate_layouts(top)
    QtWidgets.QApplication.processEvents()
    _activate_layouts(top)


def _activate_layouts(w: QtWidgets.QWidget) -> None:
    for child in [w, *w.findChildren(QtWidgets.QWidget)]:
        lay = child.layout()
        if lay is not None:
            lay.activate()


def _deliver_pending_resizes(w: QtWidgets.QWidget) -> None:
    """A page that was never shown keeps its resize events pending, and a chart lays its items out
    only when it gets one: a hidden tab's export was drawn at its old 640 x 480 layout in the
    corner of the 960 x 540 image. Qt does not deliver them to a hidden widget, so lay each chart
    out by hand: the scroll area's viewport (`event`), pyqtgraph's range (`resizeEvent`, which
    Qt calls only for the viewport's own events), then the scene's layout."""
    for gv in _graphics_views(w):
        ev = QtGui.QResizeEvent(gv.size(), QtCore.QSize())
        gv.event(ev)
        gv.resizeEvent(ev)
        scene = gv.scene()
        if scene is None:
            continue
        # parents before children: each layout gives the next its geometry (Qt would do this
        # from posted layout requests, later than the export paints)
        widgets = [it for it in scene.items(QtCore.Qt.SortOrder.AscendingOrder) if isinstance(it, QtWidgets.QGraphicsWidget)]
        widgets.sort(key=_depth)
        for item in widgets:
            layout = QtWidgets.QGraphicsWidget.layout(item)  # pyqtgraph shadows `layout` with an attribute
            if layout is not None:
                layout.activate()


def _even_rows(w: QtWidgets.QWidget) -> None:
    """Plots stacked one per run get equal data areas a layout pass after each resize (a
    `RowBalancer`, on a timer); an export paints before that timer fires, so run the passes here."""
    from .views.base import RowBalancer

    for balancer in w.findChildren(RowBalancer):
        balancer.settle(lambda: _deliver_pending_resizes(w))  # lays out the heights each pass sets


def _depth(item: QtWidgets.QGraphicsItem) -> int:
    n = 0
    while item.parentItem() is not None:
        item, n = item.parentItem(), n + 1
    return n


_RENDER_FLAGS = QtWidgets.QWidget.RenderFlag.DrawChildren


def _paint(widget: QtWidgets.QWidget, painter: QtGui.QPainter, size: QtCore.QSize, transparent: bool) -> None:
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
    painter.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing, True)
    painter.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform, True)
    if not transparent:
        painter.fillRect(QtCore.QRect(QtCore.QPoint(0, 0), size), QtGui.QColor("white"))
    # QWidget.render, not a QGraphicsView's own render (which draws only the scene)
    QtWidgets.QWidget.render(widget, painter, QtCore.QPoint(0, 0), QtGui.QRegion(), _RENDER_FLAGS)


# ---- the four formats ---------------------------------------------------------------------------
def _write_png(widget, path: Path, size: QtCore.QSize, scale: float, transparent: bool) -> None:
    img = QtGui.QImage(
        max(1, round(size.width() * scale)),
        max(1, round(size.height() * scale)),
        QtGui.QImage.Format.Format_ARGB32_Premultiplied,
    )
    img.setDevicePixelRatio(scale)
    img.fill(QtCore.Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(img)
    try:
        _paint(widget, painter, size, transparent)
    finally:
        painter.end()
    if not img.save(str(path), "PNG"):
        raise OSError(f"{path}: cannot write PNG")


def _write_svg(widget, path: Path, size: QtCore.QSize, title: str, transparent: bool) -> None:
    # SVG Tiny 1.2, without clip paths: Qt's 1.1 output loses track of the clip after a text item
    # restores its own (curves then get the label's clip and vanish in browsers and Inkscape).
    gen = QSvgGenerator(QSvgGenerator.SvgVersion.SvgTiny12)
    gen.setFileName(str(path))
    gen.setSize(size)
    gen.setViewBox(QtCore.QRect(QtCore.QPoint(0, 0), size))
    gen.setResolution(round(widget.logicalDpiX()) or 96)
    gen.setTitle(title)
    gen.setDescription("Exported by gradviz")
    painter = QtGui.QPainter()
    if not painter.begin(gen):
        raise OSError(f"{path}: cannot write SVG")
    try:
        _paint(widget, painter, size, transparent)
    finally:
        painter.end()
    # hairlines drawn thin by renderers without `non-scaling-stroke` too, and cut to their plots
    flatten_svg(path, _plot_rects(widget))


def _plot_rects(widget: QtWidgets.QWidget) -> list[tuple[float, float, float, float]]:
    """Every plot's data area (its ViewBox) in the export's pixels: `widget` is painted at (0, 0)."""
    import pyqtgraph as pg

    views = [widget] if isinstance(widget, pg.GraphicsView) else []
    views += widget.findChildren(pg.GraphicsView)
    out = []
    for gv in views:
        scene = gv.scene()
        if scene is None:
            continue
        for item in scene.items():
            if isinstance(item, pg.ViewBox) and item.isVisible():
                poly = gv.mapFromScene(item.sceneBoundingRect())
                r = poly.boundingRect()
                tl = gv.viewport().mapTo(widget, r.topLeft()) if gv is not widget else r.topLeft()
                out.append((float(tl.x()), float(tl.y()), float(tl.x() + r.width()), float(tl.y() + r.height())))
    return out


def _write_pdf(widget, path: Path, size: QtCore.QSize, title: str, transparent: bool) -> None:
    dpi = round(widget.logicalDpiX()) or 96
    pdf = QtGui.QPdfWriter(str(path))
    pdf.setResolution(dpi)  # one device unit = one logical pixel, so fonts keep their layout size
    page = QtGui.QPageSize(
        QtCore.QSizeF(size.width() * 72.0 / dpi, size.height() * 72.0 / dpi),
        QtGui.QPageSize.Unit.Point,
        title or "chart",
        QtGui.QPageSize.SizeMatchPolicy.ExactMatch,
    )
    pdf.setPageLayout(
        QtGui.QPageLayout(page, QtGui.QPageLayout.Orientation.Portrait, QtCore.QMarginsF(0, 0, 0, 0), QtGui.QPageLayout.Unit.Point)
    )
    pdf.setTitle(title)
    pdf.setCreator("gradviz")
    painter = QtGui.QPainter()
    if not painter.begin(pdf):
        raise OSError(f"{path}: cannot write PDF")
    try:
        _paint(widget, painter, size, transparent)
    finally:
        painter.end()


# what a spreadsheet reads as the start of a formula: a name from a run file starting so
# ("=HYPERLINK(...)", a run called "+cmd") would run as one when the CSV is opened
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(s: str) -> str:
    """A text cell as a spreadsheet shows it, never as a formula (a leading apostrophe, the usual
    guard, which spreadsheets hide)."""
    return "'" + s if s.startswith(_FORMULA_START) else s


def _cell(x):
    if x is None:
        return ""
    if isinstance(x, np.generic):
        x = x.item() if not isinstance(x, np.floating) or x.dtype == np.float64 else float(str(x))
    if isinstance(x, float):
        return "" if not math.isfinite(x) else repr(x)
    if isinstance(x, str):
        return _text(x)
    return x


def write_csv(view, path: Path) -> int:
    """The data behind a view: header row, then one row per step (or layer); returns the row count.
    Text from the recording (run and layer names) that a spreadsheet would take for a formula gets
    a leading apostrophe; numbers are written as numbers."""
    header, rows = view.csv()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow([_text(str(h)) for h in header])
        n = 0
        for row in rows:
            out.writerow([_cell(x) for x in row])
            n += 1
    return n


# ---- public API ---------------------------------------------------------------------------------
def _title(view) -> str:
    return str(getattr(view, "title", "") or getattr(view, "name", "chart"))


def export_view(
    view,
    folder_or_path: str | Path,
    formats: str | Iterable[str] = FORMATS,
    scale: float = 2.0,
    transparent: bool = False,
    size: QtCore.QSize | tuple[int, int] | None = None,
    theme=None,
    stem: str | None = None,
) -> list[Path]:
    """Write one view in each format; returns the files written.

    `folder_or_path` is a folder (files are named after the view: depth.png, depth.csv, ...) or a
    file path whose suffix is dropped and replaced by each format's. `size` is the chart's size in
    logical pixels (default: as on screen, or 960x540 for a view that was never shown); a PNG is
    `scale` times that. `theme` (a gui.theme.Theme) recolours the view for the export only.
    `stem` names the files inside the folder `folder_or_path` (default: the view's name).
    """
    fmts = parse_formats(formats)
    scale = check_scale(scale)
    target = Path(folder_or_path)
    if stem is not None:
        folder = target
    elif target.suffix.lower().lstrip(".") in FORMATS:
        folder, stem = target.parent, target.stem
    else:
        folder, stem = target, str(getattr(view, "name", "chart"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{folder}: cannot create folder ({exc.strerror or exc})") from None
    if isinstance(size, tuple):
        size = QtCore.QSize(*size)
    written: list[Path] = []
    if "csv" in fmts:
        p = folder / f"{stem}.csv"
        write_csv(view, p)
        written.append(p)
    painted = [f for f in fmts if f != "csv"]
    if not painted:
        return written
    # a view that shows something else on paper than on screen (the layer table drops its run
    # selector, a control, and names the run in its title instead)
    export_mode = getattr(view, "export_mode", None) or contextlib.nullcontext
    with _themed(view, theme):
        widget = view.export_widget()
        title = _title(view)
        fit = getattr(view, "export_size", None)  # a view whose content needs more room than asked
        if fit is not None:
            size = fit(_asked_size(widget, size))
        with export_mode(), _Prepared(widget, transparent, size) as wsize:
            for fmt in painted:
                p = folder / f"{stem}.{fmt}"
                if fmt == "png":
                    _write_png(widget, p, wsize, scale, transparent)
                elif fmt == "svg":
                    _write_svg(widget, p, wsize, title, transparent)
                else:
                    _write_pdf(widget, p, wsize, title, transparent)
                written.append(p)
    order = {f: i for i, f in enumerate(fmts)}
    return sorted(written, key=lambda p: order[p.suffix[1:]])


@contextlib.contextmanager
def _themed(view, theme):
    """`view` in `theme` for the duration (None: as it is), its own theme back after."""
    old = getattr(view, "theme", None)
    swap = theme is not None and theme != old
    if swap:
        view.apply_theme(theme)
    try:
        yield
    finally:
        if swap and old is not None:
            view.apply_theme(old)


def _asked_size(widget: QtWidgets.QWidget, size: QtCore.QSize | None) -> QtCore.QSize:
    """The size an export is drawn at: `size`, else the view's on screen, else `DEFAULT_SIZE` (a
    view never shown, or squeezed to nothing)."""
    if size is not None:
        return size
    shown = widget.isVisible() and widget.width() >= 200 and widget.height() >= 150
    return widget.size() if shown else DEFAULT_SIZE


def export_slide_pack(
    views: Sequence,
    folder: str | Path,
    formats: str | Iterable[str] = FORMATS,
    scale: float = 2.0,
    transparent: bool = False,
    size: QtCore.QSize | tuple[int, int] | None = None,
    theme=None,
    title: str = "gradviz slide pack",
    progress=None,
) -> list[Path]:
    """Every view into `folder`, one file per view and format named after the view, plus an
    index.html showing the PNGs in order. `progress(i, n, view_name)` is called before each view."""
    fmts = parse_formats(formats)
    check_scale(scale)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{folder}: cannot create folder ({exc.strerror or exc})") from None
    written: list[Path] = []
    per_view: list[tuple[object, list[Path]]] = []
    for i, view in enumerate(views):
        if progress is not None:
            progress(i, len(views), view.name)
        # a view that shows one run at a time (the layer table) gives every other run whose
        # content differs a slide of its own: the depth preset's pack held the shallow stack's
        # 10 layers and not the deep ones' 62
        others = getattr(view, "other_runs", lambda: [])()
        heading = f"{_title(view)}: {view.current_run()}" if others else _title(view)
        stems = {str(view.name)}
        slides = _view_slides(view, folder, fmts, scale, transparent, size, theme, str(view.name), heading, stems)
        for run in others:
            stem = _unique_stem(f"{view.name}-{_file_part(run)}", stems)
            with view.showing_run(run):
                slides += _view_slides(view, folder, fmts, scale, transparent, size, theme, stem, f"{_title(view)}: {run}", stems)
        per_view.extend(slides)
        written.extend(f for _, files in slides for f in files)
    index = folder / "index.html"
    index.write_text(_index_html(per_view, title), encoding="utf-8")
    written.append(index)
    return written


def _view_slides(
    view, folder: Path, fmts: list[str], scale, transparent, size, theme, stem: str, heading: str, used: set[str]
) -> list[tuple[str, list[Path]]]:
    """(heading, files) for each slide of one view. A table too long for one slide becomes pages
    `stem-1`, `stem-2`, ... (names not yet in `used`, which records them), its rows spread evenly,
    each page with the header and the totals line: drawn whole, the demo's 62 layers made one slide
    1,462 px tall, unreadable on a projector. The CSV (`stem.csv`, linked from the first page)
    holds every row."""
    count = getattr(view, "page_count", None)
    painted = [f for f in fmts if f != "csv"]
    if isinstance(size, tuple):
        size = QtCore.QSize(*size)
    with _themed(view, theme):  # the theme's fonts decide how many rows fit
        pages = count(_asked_size(view.export_widget(), size)) if count is not None and painted else 1
        if pages <= 1:
            return [(heading, export_view(view, folder, fmts, scale, transparent, size, theme, stem=stem))]
        table = export_view(view, folder, ["csv"], scale, transparent, size, theme, stem=stem) if "csv" in fmts else []
        slides = []
        for k in range(pages):
            with view.showing_page(k, pages):
                page = _unique_stem(f"{stem}-{k + 1}", used)  # not a run called "1"'s file
                files = export_view(view, folder, painted, scale, transparent, size, theme, stem=page)
            slides.append((f"{heading} ({k + 1} of {pages})", files + (table if k == 0 else [])))
        return slides


def _file_part(name: str) -> str:
    """A run's name as part of a file name: anything but letters, digits, '.', '_' and '-' becomes
    '_' (a run called "a/b" must not write into a folder)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "run"


def _unique_stem(stem: str, used: set[str]) -> str:
    out, k = stem, 2
    while out in used:
        out, k = f"{stem}-{k}", k + 1
    used.add(out)
    return out


def _index_html(per_view, title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#202020}"
        "section{margin-bottom:3em}img{max-width:100%;border:1px solid #ddd}"
        "nav a{margin-right:1em}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, files in per_view:
        name = files[0].stem if files else heading
        parts.append(f'<section id="{html.escape(name)}"><h2>{html.escape(heading)}</h2>')
        png = [f for f in files if f.suffix == ".png"]
        if png:
            parts.append(f'<img src="{html.escape(png[0].name)}" alt="{html.escape(heading)}">')
        links = " ".join(f'<a href="{html.escape(f.name)}">{f.suffix[1:].upper()}</a>' for f in files)
        parts.append(f"<nav>{links}</nav></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---- GUI: menu, shortcut, dialog, right-click ------------------------------------------------------
def default_export_folder() -> Path:
    pics = QtCore.QStandardPaths.writableLocation(QtCore.QStandardPaths.StandardLocation.PicturesLocation)
    return Path(pics or Path.home()) / "gradviz"


def _slide_theme(view):
    """Light colours for slides (keeping presentation mode), or None if the view is light already."""
    current = getattr(view, "theme", None)
    if current is None or getattr(current, "name", "light") == "light":
        return None
    try:
        from .theme import make_theme

        return make_theme("light", presentation=bool(getattr(current, "presentation", False)))
    except Exception:  # noqa: BLE001 - a theme problem must not block an export
        return None


class ExportDialog(QtWidgets.QDialog):
    """Format, scale, background and destination; opened with `open()` so nothing blocks."""

    def __init__(self, parent: QtWidgets.QWidget, title: str, name: str | None, settings: dict):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setObjectName("gradviz-export-dialog")
        form = QtWidgets.QFormLayout(self)
        self.folder = QtWidgets.QLineEdit(str(settings.get("folder", default_export_folder())))
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        form.addRow("Folder", row)
        self.name = None
        if name is not None:
            self.name = QtWidgets.QLineEdit(name)
            form.addRow("File name", self.name)
        fmt_row = QtWidgets.QHBoxLayout()
        self.format_boxes: dict[str, QtWidgets.QCheckBox] = {}
        chosen = settings.get("formats", ["png"] if name is not None else list(FORMATS))
        for fmt in FORMATS:
            box = QtWidgets.QCheckBox(fmt.upper())
            box.setChecked(fmt in chosen)
            self.format_boxes[fmt] = box
            fmt_row.addWidget(box)
        form.addRow("Formats", fmt_row)
        self.scale = QtWidgets.QDoubleSpinBox()
        self.scale.setRange(MIN_SCALE, MAX_SCALE)
        self.scale.setSingleStep(0.5)
        self.scale.setSuffix("×")
        self.scale.setValue(float(settings.get("scale", 2.0)))
        form.addRow("PNG scale", self.scale)
        self.background = QtWidgets.QComboBox()
        self.background.addItems(["White", "Transparent"])
        self.background.setCurrentIndex(1 if settings.get("transparent") else 0)
        form.addRow("Background", self.background)
        self.size_choice = QtWidgets.QComboBox()
        self.size_choice.addItems(list(SIZES))
        self.size_choice.setCurrentText(settings.get("size_label", next(iter(SIZES))))
        self.size_choice.setToolTip("Chart size in points; the PNG is this times the scale")
        form.addRow("Size", self.size_choice)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        dlg = QtWidgets.QFileDialog(self, "Export into folder", self.folder.text())
        dlg.setFileMode(QtWidgets.QFileDialog.FileMode.Directory)
        dlg.setOption(QtWidgets.QFileDialog.Option.ShowDirsOnly, True)
        dlg.fileSelected.connect(self.folder.setText)
        dlg.open()

    def values(self) -> dict:
        return {
            "folder": self.folder.text().strip(),
            "name": self.name.text().strip() if self.name is not None else None,
            "formats": [f for f, b in self.format_boxes.items() if b.isChecked()],
            "scale": self.scale.value(),
            "transparent": self.background.currentIndex() == 1,
            "size_label": self.size_choice.currentText(),
            "size": SIZES.get(self.size_choice.currentText()),
        }


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _Exporter(QtCore.QObject):
    """Per-window export state (last folder and choices) and the actions."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.settings: dict = {}
        self.dialog: ExportDialog | None = None

    def _message(self, text: str) -> None:
        try:
            self.window.show_message(text)
        except Exception:  # noqa: BLE001
            log.info(text)

    def export_view_dialog(self, view=None) -> ExportDialog | None:
        view = view if view is not None else self.window.current_view()
        if view is None:
            self._message("Export: no view selected")
            return None
        dlg = ExportDialog(self.window, f"Export {_title(view)}", str(view.name), self.settings)
        dlg.accepted.connect(lambda: self._do_view(view, dlg.values()))
        self._show(dlg)
        return dlg

    def export_pack_dialog(self) -> ExportDialog:
        dlg = ExportDialog(self.window, "Export slide pack", None, {**self.settings, "formats": list(FORMATS)})
        dlg.accepted.connect(lambda: self._do_pack(dlg.values()))
        self._show(dlg)
        return dlg

    def _show(self, dlg: ExportDialog) -> None:
        if self.dialog is not None:
            self.dialog.close()
            self.dialog.deleteLater()
        self.dialog = dlg
        dlg.open()

    def _remember(self, v: dict) -> None:
        self.settings.update({k: v[k] for k in ("folder", "scale", "transparent", "size_label") if k in v})

    def _refresh(self, views) -> None:
        """Views in hidden tabs are not drawn by the frame timer: bring them up to date first."""
        rec = getattr(self.window, "recording", None)
        upto = getattr(self.window, "upto_step", None)
        if rec is None:
            return
        for v in views:
            v.refresh(rec, upto)

    def _do_view(self, view, v: dict) -> list[Path]:
        self._remember(v)
        self.settings["formats"] = v["formats"]
        try:
            if not v["folder"]:
                raise ExportError("no folder given")
            name = v["name"] or str(view.name)
            if "/" in name or "\\" in name:
                raise ExportError(f"file name {name!r} must not contain a folder")
            folder = Path(v["folder"]).expanduser()
            with _busy():
                self._refresh([view])
                files = export_view(
                    view, folder, v["formats"], v["scale"], v["transparent"], v.get("size"),
                    theme=_slide_theme(view), stem=name,
                )
        except Exception as exc:  # noqa: BLE001 - the GUI reports, never crashes
            log.exception("export failed")
            self._message(f"Export failed: {_one_line(exc)}")
            return []
        self._message(f"Exported {', '.join(f.name for f in files)} to {files[0].parent}")
        return files

    def _do_pack(self, v: dict) -> list[Path]:
        self._remember(v)
        try:
            if not v["folder"]:
                raise ExportError("no folder given")
            folder = Path(v["folder"]).expanduser()
            views = list(self.window.views)
            with _busy():
                self._refresh(views)
                files = export_slide_pack(
                    views, folder, v["formats"], v["scale"], v["transparent"], v.get("size"),
                    theme=_slide_theme(views[0]) if views else None,
                    title=_pack_title(self.window),
                )
        except Exception as exc:  # noqa: BLE001
            log.exception("slide pack failed")
            self._message(f"Slide pack failed: {_one_line(exc)}")
            return []
        self._message(f"Slide pack: {len(files)} files in {folder} (open index.html)")
        return files


def _pack_title(window) -> str:
    rec = getattr(window, "recording", None)
    meta = getattr(rec, "meta", None) or {}
    preset = meta.get("preset") or (meta.get("config") or {}).get("name") if isinstance(meta, dict) else None
    return f"gradviz — {preset}" if preset else "gradviz slide pack"


class _busy:
    def __enter__(self):
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)

    def __exit__(self, *exc):
        QtWidgets.QApplication.restoreOverrideCursor()


def install_view_menus(window) -> None:
    """Right-click on any view offers "Export view…"; inside pyqtgraph charts the chart menu's own
    "Export..." entry (pyqtgraph's exporters, broken on this Qt) is redirected to ours."""
    exporter: _Exporter | None = getattr(window, "_gradviz_exporter", None)
    if exporter is None:
        return
    for view in window.views:
        if view.property("gradviz_export_menu"):
            continue
        view.setProperty("gradviz_export_menu", True)
        view.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        view.customContextMenuRequested.connect(
            lambda pos, v=view: _context_menu(exporter, v, v.mapToGlobal(pos))
        )
        for gv in _graphics_views(view):
            scene = gv.scene()
            actions = getattr(scene, "contextMenu", None)
            if not isinstance(actions, list):
                continue
            for act in actions:
                if isinstance(act, QtGui.QAction) and act.text().replace("&", "").startswith("Export"):
                    try:
                        act.triggered.disconnect()
                    except (RuntimeError, TypeError):
                        pass
                    act.setText("Export view…")
                    act.triggered.connect(lambda _=False, v=view: exporter.export_view_dialog(v))


def _context_menu(exporter: _Exporter, view, global_pos: QtCore.QPoint) -> QtWidgets.QMenu:
    menu = QtWidgets.QMenu(view)
    menu.addAction("Export view…", lambda: exporter.export_view_dialog(view))
    menu.addAction("Export slide pack…", exporter.export_pack_dialog)
    menu.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose, True)
    menu.popup(global_pos)
    return menu


def install_export(window) -> None:
    """File → Export view… (Ctrl+E), File → Export slide pack…, and right-click on every view."""
    if getattr(window, "_gradviz_exporter", None) is not None:
        install_view_menus(window)  # views may have been rebuilt
        return
    exporter = _Exporter(window)
    window._gradviz_exporter = exporter
    menu = window.menu_file
    act_view = QtGui.QAction("Export view…", window)
    act_view.setObjectName("action_export_view")
    act_view.setShortcut(QtGui.QKeySequence("Ctrl+E"))
    act_view.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
    act_view.setStatusTip("Export the current chart as PNG, SVG, PDF or CSV")
    act_view.triggered.connect(lambda: exporter.export_view_dialog())
    act_pack = QtGui.QAction("Export slide pack…", window)
    act_pack.setObjectName("action_export_pack")
    act_pack.setShortcut(QtGui.QKeySequence("Ctrl+Shift+E"))
    act_pack.setStatusTip("Every chart in every format into one folder, with an index.html")
    act_pack.triggered.connect(lambda: exporter.export_pack_dialog())
    menu.addAction(act_view)
    menu.addAction(act_pack)
    window.addAction(act_view)
    window.addAction(act_pack)
    exporter.actions = (act_view, act_pack)
    install_view_menus(window)
