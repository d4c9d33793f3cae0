"""Layer table: name, type, output shape, parameters and FLOPs of every layer.

The rows come from the recording, never from a live model: the worker stores the summary in
`recording.meta["layer_table"]` at session start (so it is saved in the run file too). A file
recorded without it gets its model rebuilt from `meta["config"]` once; when that fails (a data set
that is not on this machine, say) the table shows the names and types the recording holds.
"""

from __future__ import annotations

import contextlib
import logging

from PySide6 import QtCore, QtWidgets

from ...core.summary import params_cell, params_total
from ...core.table import SKIPPED_NOTE, row_fields, summary_rows
from ..tooltips import plain_tooltip
from .base import View

QWIDGETSIZE_MAX = (1 << 24) - 1  # Qt's "no maximum"
log = logging.getLogger("gradviz")
HEADER = ["layer", "name", "type", "output shape", "params", "FLOPs", "tied params"]  # the CSV's
# on screen the index column is as narrow as its numbers, and "shape" leaves the column as narrow
# as "(128)" (the tooltip and the CSV say "output shape")
SHOWN_HEADER = ["#", "name", "type", "shape", "params", "FLOPs"]
# Columns a narrow pane drops, first to last (names are elided before the output shape goes): at
# 1024 x 768 in presentation fonts the table's 660 px met a 245 px pane and only the index, name and
# type were visible. Each name's tooltip keeps the whole row.
NARROW_DROPS = (2, 5, 3)  # type, FLOPs, output shape
NAME_MIN_PX = 90
PAGE_ROWS_MIN = 5  # rows on a slide pack's page of the table, however small the slide


# parameters: a recorded model larger than this is tabled from a shapes-only build (a file's
# config of 200 blocks x 4096 asked the window for 2 x 13 GB of weights, and froze or ended it)
REBUILD_LIMIT = 50_000_000


def rows_from_config(config: dict) -> dict[str, list[list]]:
    """Rebuild each run's model from a recorded config (weights do not matter for the table): a
    real one up to `REBUILD_LIMIT` parameters, else on torch's meta device (shapes only)."""
    from ...config import from_dict
    from ...core.data import data_shape
    from ...core.footprint import meta_model
    from ...core.models import build_model

    cfg = from_dict(config)
    out: dict[str, list[list]] = {}
    shapes: dict = {}
    for rc in cfg.runs:
        if rc.data.name == "imagefolder":  # a folder named in a file (even "/") is not walked for it
            raise ValueError("an image folder is not read to rebuild a recording's table")
        key = repr(rc.data)
        if key not in shapes:  # a torchvision set's shapes need none of its files
            shapes[key] = data_shape(rc.data, seed=rc.train.seed)
        shape, outputs = shapes[key]
        shapes_only = meta_model(rc.model, shape, outputs, seed=rc.train.seed)  # no memory
        if shapes_only is None or sum(p.numel() for p in shapes_only.parameters()) <= REBUILD_LIMIT:
            out[rc.name] = summary_rows(build_model(rc.model, shape, outputs, seed=rc.train.seed), shape)
        else:
            out[rc.name] = summary_rows(shapes_only, shape, device="meta")
    return out


def _shape(s) -> str:
    if not s:
        return "-"
    return "(" + ", ".join(str(int(x)) for x in s) + ")"


class LayersView(View):
    name = "layers"
    title = "Layer table"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        bar = QtWidgets.QHBoxLayout()
        self.run_box = QtWidgets.QComboBox()
        self.run_box.currentIndexChanged.connect(self._on_run)
        self.title_label = QtWidgets.QLabel(self.title)
        bar.addWidget(self.title_label)
        bar.addStretch(1)
        self.run_label = QtWidgets.QLabel("run")
        bar.addWidget(self.run_label)
        bar.addWidget(self.run_box)
        self.table = QtWidgets.QTableWidget(0, len(SHOWN_HEADER))
        self.table.setHorizontalHeaderLabels(SHOWN_HEADER)
        # a narrow pane keeps a name's end, its most specific part: "…12.linear", "…0.conv1"
        self.table.setTextElideMode(QtCore.Qt.TextElideMode.ElideLeft)
        self.table.viewport().installEventFilter(self)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        # no stretched last column: a wide pane (an exported slide) made FLOPs 900 px wide
        self.table.horizontalHeader().setStretchLastSection(False)
        self.total_label = QtWidgets.QLabel("")
        self.total_label.setWordWrap(True)  # presentation fonts in a narrow pane cut it off
        self.note = ""  # why the table is incomplete, when it is
        self._export = QtWidgets.QWidget()
        ex = QtWidgets.QVBoxLayout(self._export)
        ex.setContentsMargins(0, 0, 0, 0)
        ex.addLayout(bar)
        ex.addWidget(self.table, 1)
        ex.addWidget(self.total_label)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self._export)
        self._tables: dict[str, list[list]] = {}
        self._source = ""  # "meta" | "config" | "names"
        self._rows: list[list] = []
        self._meta_table = None  # the recording's table these rows came from
        self._natural: list[int] = []  # column widths the contents want, every column shown
        self.hidden_columns: list[str] = []
        self._export_width = 0  # the width an export asked for (`export_size`)
        self._page: tuple[int, int] | None = None  # (first row, end) while a page is shown (`showing_page`)
        self._tried_config = False
        self.live = False  # set by the window while a worker trains into the recording
        # its fonts from the start, as the charts do: `gradviz export` never applies a theme, and
        # its layer table came out with a title no larger than the rows
        self._apply_theme(self.theme)

    def _on_new_recording(self, recording) -> None:
        self._tables, self._source, self._tried_config = {}, "", False
        self._meta_table = None
        self.run_box.blockSignals(True)
        self.run_box.clear()
        self.run_box.addItems(recording.runs)
        self.run_box.blockSignals(False)

    def _on_run(self) -> None:
        self.invalidate()
        self.redraw()

    def _load(self, recording) -> None:
        meta = recording.meta or {}
        table = meta.get("layer_table")
        if isinstance(table, dict) and table:
            # a new table object: the session started, or a run's norm switch flipped
            if self._source != "meta" or table is not self._meta_table:
                self._tables, self._source = {str(k): v for k, v in table.items()}, "meta"
                self._meta_table = table
            return
        if self._source:
            return
        # live: the worker is about to store the table; never rebuild a model in the GUI for it
        if not self.live and not self._tried_config and isinstance(meta.get("config"), dict):
            self._tried_config = True
            try:
                self._tables, self._source = rows_from_config(meta["config"]), "config"
                return
            except Exception as exc:  # noqa: BLE001 - any failure falls back to names and types
                self.note = f"model not rebuilt ({type(exc).__name__}: {exc}); names and types only"
                log.info("layer table: %s", self.note)
        self._tables = {}
        for run in recording.runs:
            info = recording.info(run)
            self._tables[run] = [[n, t, None, None, None] for n, t in zip(info.layers, info.layer_types, strict=False)]
        if not self.live:
            self._source = "names"

    def _draw(self, recording, upto: int | None) -> None:
        if self.run_box.count() != len(recording.runs):
            self._on_new_recording(recording)
        self._load(recording)
        run = self.run_box.currentText() or (recording.runs[0] if recording.runs else "")
        rows = self._tables.get(run) or next(iter(self._tables.values()), [])
        if rows == self._rows:
            return
        self._rows = rows
        t = self.table
        t.setUpdatesEnabled(False)
        t.setRowCount(len(rows))
        right = QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
        for i, row in enumerate(rows):
            name, typ, shape, params, flops, tied = row_fields(row)
            cells = [str(i), name, typ, _shape(shape) if shape is not None else "", params_cell(params, tied) if params is not None else "", f"{flops:,}" if flops is not None else ""]
            for j, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                if j in (0, 4, 5):
                    item.setTextAlignment(right)
                if j == 1:
                    item.setToolTip(plain_tooltip(" · ".join(c for c in (f"layer {i}", *cells[1:3], cells[3] and f"output {cells[3]}", cells[4] and f"{cells[4]} params", cells[5] and f"{cells[5]} FLOPs") if c)))
                t.setItem(i, j, item)
        t.setUpdatesEnabled(True)
        self._measure()

    def _measure(self) -> None:
        """The columns' natural widths (every column shown), then fit them to the pane."""
        t = self.table
        for j in range(t.columnCount()):
            t.setColumnHidden(j, False)
        t.resizeColumnsToContents()
        self._natural = [t.columnWidth(j) for j in range(t.columnCount())]
        self._fit_columns()

    def _fit_columns(self) -> None:
        t = self.table
        if not self._natural:
            return
        room = t.viewport().width()
        used = sum(self._natural)
        hidden = []
        give = self._natural[1] - NAME_MIN_PX  # what eliding the names can save
        for j in NARROW_DROPS:
            # the output shape matters more than the names' full length: elide before dropping it
            t.setColumnHidden(j, False)
            if used > room and not (j == 3 and used - give <= room):
                t.setColumnHidden(j, True)
                used -= self._natural[j]
                hidden.append(j)
        name_w = self._natural[1]
        if used > room:  # still too wide: the name column gives way, elided in the middle
            name_w = max(NAME_MIN_PX, name_w - (used - room))
        t.setColumnWidth(1, name_w)
        self.hidden_columns = [SHOWN_HEADER[j] for j in sorted(hidden)]
        self._update_total()

    def _update_total(self) -> None:
        rows = self._rows
        if rows and rows[0][3] is not None:
            fields = [row_fields(r) for r in rows]
            tied = sum(f[5] for f in fields)
            total_p = sum(f[3] for f in fields) - tied
            total_f = sum(f[4] for f in fields)
            text = f"{len(rows)} layers, {params_total(format(total_p, ','), tied)}, {total_f:,} FLOPs per example (a multiply-add counts 2)"
            if any(not r[2] for r in rows) and not self.table.isColumnHidden(3):
                text += ". " + SKIPPED_NOTE
        else:
            text = self.note or "names and types only"
        if self.hidden_columns:
            text += f". Too narrow for {', '.join(self.hidden_columns)}: see a name's tooltip"
        self.total_label.setText(text)

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 - Qt API
        # the viewport's own width: it narrows again when the vertical scroll bar appears
        if ev.type() == QtCore.QEvent.Type.Resize and obj is self.table.viewport():
            self._fit_columns()
        return False

    def csv(self) -> tuple[list[str], list[list]]:
        rows = []
        for i, row in enumerate(self._rows):
            name, typ, shape, params, flops, tied = row_fields(row)
            known = params is not None
            rows.append([i, name, typ, _shape(shape) if shape is not None else "", params if known else "", flops if flops is not None else "", tied if known else ""])
        return list(HEADER), rows

    def _rows_height(self) -> int:
        """The table's height with every row shown and nothing below the last one."""
        t = self.table
        return t.horizontalHeader().sizeHint().height() + t.verticalHeader().length() + 2 * t.frameWidth()

    def _around_rows(self, width: int) -> int:
        """An export's height less its visible rows': title, table header and frame, totals line
        (at `width`), and the layout's spacing and margins."""
        t = self.table
        return (
            self.title_label.sizeHint().height()
            + self._rows_height() - t.verticalHeader().length()
            + self.total_label.heightForWidth(width)
            + 24
        )

    def export_size(self, size: QtCore.QSize) -> QtCore.QSize:
        """An exported table shows every row: the export grows taller where the rows need it. A
        960 x 540 slide held 14 of the demo's 62 rows behind a scroll bar; the slide can be cropped,
        a hidden row cannot be read."""
        need = self._around_rows(size.width()) + self.table.verticalHeader().length()
        self._export_width = size.width()
        return QtCore.QSize(size.width(), max(size.height(), need))

    def page_rows(self, size: QtCore.QSize) -> int:
        """How many rows an export of `size` holds without growing taller (`export_size`)."""
        room = size.height() - self._around_rows(size.width())
        return max(PAGE_ROWS_MIN, room // max(1, self.table.verticalHeader().defaultSectionSize()))

    def page_count(self, size: QtCore.QSize) -> int:
        """Slides the table needs at `size` in a slide pack: 1 where every row fits on one."""
        return max(1, -(-len(self._rows) // self.page_rows(size)))

    @contextlib.contextmanager
    def showing_page(self, k: int, pages: int):
        """Only the rows of page `k` of `pages` (rows spread evenly) for the duration, and the
        title says which; every row after."""
        n = len(self._rows)
        per = -(-n // max(1, pages))
        first, end = min(n, k * per), min(n, (k + 1) * per)
        t = self.table
        for i in range(n):
            t.setRowHidden(i, not first <= i < end)
        self._page = (first, end)
        try:
            yield
        finally:
            for i in range(n):
                t.setRowHidden(i, False)
            self._page = None

    def other_runs(self) -> list[str]:
        """The runs, other than the one shown, whose tables differ from it and from each other's,
        in run order: a slide pack gives each a slide of its own (a twin's identical tables one)."""
        shown = self.current_run()
        seen = [self._tables.get(shown)]
        out = []
        for run in self._runs():
            table = self._tables.get(run)
            if run != shown and table and all(table != s for s in seen):
                seen.append(table)
                out.append(run)
        return out

    def current_run(self) -> str:
        return self.run_box.currentText()

    def _runs(self) -> list[str]:
        return [self.run_box.itemText(i) for i in range(self.run_box.count())]

    @contextlib.contextmanager
    def showing_run(self, run: str):
        """Draw `run`'s table for the duration; the run shown before comes back after."""
        before = self.current_run()
        self.run_box.setCurrentText(run)
        try:
            yield
        finally:
            self.run_box.setCurrentText(before)

    @contextlib.contextmanager
    def export_mode(self):
        """On paper the run selector (a control) is left out, and the title names the run shown
        where there is more than one: an exported slide showed a "run [plain ▾]" drop-down."""
        runs = self._runs()
        run = self.current_run()
        title = f"{self.title}: {run}" if len(runs) > 1 and run else self.title
        if self._page is not None:
            # in the numbering of the table's first column
            title += f", layers {self._page[0]}–{self._page[1] - 1} of {len(self._rows)}"
        hidden = [w for w in (self.run_label, self.run_box) if not w.isHidden()]
        for w in hidden:
            w.hide()
        self.title_label.setText(title)
        # the table no wider than its columns: on a 960 px slide its grey header bar and grid ran
        # on for 600 px past the last column
        # (every column where the export is wide enough, as the pane on screen may not have been)
        t = self.table
        natural = sum(self._natural) + 2 * t.frameWidth() + 2
        bars = (t.verticalScrollBarPolicy(), t.horizontalScrollBarPolicy())
        if self._natural:
            off = QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff  # every row is shown (`export_size`)
            t.setVerticalScrollBarPolicy(off)
            t.setHorizontalScrollBarPolicy(off)
            t.setFixedWidth(min(natural, self._export_width) if self._export_width else natural)
        lay = self._export.layout()
        lay.setAlignment(t, QtCore.Qt.AlignmentFlag.AlignLeft)
        # and no taller than its rows: a 5-row table on a 960 x 540 slide was a framed grid with
        # 360 px of nothing in it; the room left over goes below the totals line, blank
        if self._natural:
            t.setFixedHeight(self._rows_height())
        lay.setStretchFactor(t, 0)
        rest = QtWidgets.QSpacerItem(0, 0, QtWidgets.QSizePolicy.Policy.Minimum, QtWidgets.QSizePolicy.Policy.Expanding)
        lay.addItem(rest)
        try:
            yield
        finally:
            lay.removeItem(rest)
            lay.setStretchFactor(t, 1)
            lay.setAlignment(t, QtCore.Qt.AlignmentFlag(0))
            t.setMinimumSize(0, 0)
            t.setMaximumSize(QWIDGETSIZE_MAX, QWIDGETSIZE_MAX)
            t.setVerticalScrollBarPolicy(bars[0])
            t.setHorizontalScrollBarPolicy(bars[1])
            self.title_label.setText(self.title)
            for w in hidden:
                w.show()

    def plot_items(self) -> list:
        return [self._export]

    def export_widget(self) -> QtWidgets.QWidget:
        return self._export

    def _apply_theme(self, theme) -> None:
        f = theme.font()
        self.table.setFont(f)
        self.table.horizontalHeader().setFont(f)
        self.table.verticalHeader().setDefaultSectionSize(int(theme.font_pt * 2.2))
        tf = theme.font(1.3)
        self.title_label.setFont(tf)
        self.total_label.setFont(f)
        self._measure()
