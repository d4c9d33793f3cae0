"""A large one-line label that shrinks its text to fit its width before it wraps."""

from __future__ import annotations

from PySide6 import QtGui, QtWidgets


class FittedLabel(QtWidgets.QLabel):
    """Plain text drawn at `set_base_font`'s size where it fits on one line, else at the largest
    size down to `floor_pt` that does; only text too long even at the floor wraps. The readout's
    lines at 16 pt took two lines each in a 600 px wide depth panel (1366x768), four lines of
    headline for two runs; one line at 12 pt leaves the plot that room."""

    def __init__(self, text: str = "", parent=None) -> None:
        super().__init__(text, parent)
        self._base: QtGui.QFont | None = None
        self._floor_pt = 0.0
        self.setWordWrap(True)  # never let a long line widen the window past the screen
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)

    def set_base_font(self, font: QtGui.QFont, floor_pt: float) -> None:
        """The size to draw at where there is room, and the least size before wrapping."""
        self._base = QtGui.QFont(font)
        self._floor_pt = min(float(floor_pt), font.pointSizeF())
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
        base_pt, room, text = self._base.pointSizeF(), self._room(), self.text()
        pt = base_pt
        if text and room > 0:
            wide = QtGui.QFontMetricsF(self._base).horizontalAdvance(text)
            if wide > room:
                pt = max(self._floor_pt, base_pt * room / wide)
                # hinting makes width not quite proportional to size: step down until it fits
                for _ in range(8):
                    if pt <= self._floor_pt or self._width_at(pt, text) <= room:
                        break
                    pt = max(self._floor_pt, pt - 0.25)
        f = QtGui.QFont(self._base)
        f.setPointSizeF(pt)
        if f != self.font():
            self.setFont(f)

    def _width_at(self, pt: float, text: str) -> float:
        f = QtGui.QFont(self._base)
        f.setPointSizeF(pt)
        return QtGui.QFontMetricsF(f).horizontalAdvance(text)
