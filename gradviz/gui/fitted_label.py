"""A large one-line label that shrinks its text to fit its width before it wraps."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets


class FittedLabel(QtWidgets.QLabel):
    """Plain text drawn as large as it fits, by three rules in turn: on one line at a size from
    `set_base_font`'s down to `one_line_pt`; else on two lines at a size down to `least_pt`; else
    at `least_pt`, wrapped as it needs. The readout's lines at 16 pt took two lines each in a
    600 px wide depth panel (1366x768): four lines of headline for two runs where one each at 12 pt
    fit; in presentation mode in a 470 px panel they took three lines each, and left the depth
    profile a 130 px strip."""

    def __init__(self, text: str = "", parent=None) -> None:
        super().__init__(text, parent)
        self._base: QtGui.QFont | None = None
        self._one_line_pt = self._least_pt = 0.0
        self._known: dict[tuple, tuple[float, int]] = {}  # (room, len(text), sizes) -> (pt, lines)
        self.setWordWrap(True)  # never let a long line widen the window past the screen
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)

    def set_base_font(self, font: QtGui.QFont, one_line_pt: float, least_pt: float) -> None:
        """The size to draw at where there is room, the least size for one line, the least size."""
        self._base = QtGui.QFont(font)
        base = font.pointSizeF()
        self._least_pt = min(float(least_pt), base)
        self._one_line_pt = min(max(float(one_line_pt), self._least_pt), base)
        self._known.clear()
        self._fit()

    def base_point_size(self) -> float:
        return self._base.pointSizeF() if self._base is not None else self.font().pointSizeF()

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._fit()

    def _room(self) -> float:
        return float(self.contentsRect().width() - 2 * max(0, self.margin()) - max(0, self.indent()) - 2)

    def _fit(self) -> None:
        if self._base is None:
            return
        base, room, text = self._base.pointSizeF(), self._room(), self.text()
        # a live readout changes a digit or two per refresh: the size found for a text of the same
        # length in the same room is kept while the text still fits it as it did
        key = (room, len(text), base, self._one_line_pt, self._least_pt)
        known = self._known.get(key)
        if known is not None and self._lines(known[0], text, room) <= known[1]:
            pt = known[0]
        else:
            pt, lines = base, 1
            if text and room > 0 and self._lines(base, text, room) > 1:
                pt = self._largest(self._one_line_pt, base, text, room, 1)
                if pt is None:
                    lines = 2
                    pt = self._largest(self._least_pt, base, text, room, 2)
                    if pt is None:
                        pt, lines = self._least_pt, 1 << 30
            if len(self._known) > 64:
                self._known.clear()
            self._known[key] = (pt, lines)
        f = self._at(pt)
        if f != self.font():
            self.setFont(f)

    def _at(self, pt: float) -> QtGui.QFont:
        f = QtGui.QFont(self._base)
        f.setPointSizeF(pt)
        return f

    def _lines(self, pt: float, text: str, room: float) -> int:
        """Lines `text` takes at `pt`, wrapped at word boundaries within `room` pixels."""
        fm = QtGui.QFontMetricsF(self._at(pt))
        if fm.horizontalAdvance(text) <= room:
            return 1
        box = fm.boundingRect(QtCore.QRectF(0, 0, room, 1e6), int(QtCore.Qt.TextFlag.TextWordWrap), text)
        return max(1, round(box.height() / fm.lineSpacing()))

    def _largest(self, lo: float, hi: float, text: str, room: float, lines: int) -> float | None:
        """The largest size in [lo, hi] (to 0.1 pt) at which `text` takes at most `lines` lines."""
        if self._lines(lo, text, room) > lines:
            return None
        if self._lines(hi, text, room) <= lines:
            return hi
        while hi - lo > 0.1:  # the lines grow with the size: bisect
            mid = (lo + hi) / 2
            if self._lines(mid, text, room) <= lines:
                lo = mid
            else:
                hi = mid
        return lo
