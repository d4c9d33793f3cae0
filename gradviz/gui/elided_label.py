"""A one-line label that shortens its text with an ellipsis to fit, where a QLabel cuts the end off."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets


class ElidedLabel(QtWidgets.QLabel):
    """`text()` stays the whole text (the tooltip shows it); what is drawn is elided where `mode`
    says: a run file's path in the middle, so its file name stays readable in a narrow status bar
    (1024 px on a projector cut both the path and "H shows them again" mid-word)."""

    def __init__(self, mode: QtCore.Qt.TextElideMode = QtCore.Qt.TextElideMode.ElideMiddle, parent=None) -> None:
        super().__init__("", parent)
        self._mode = mode
        self.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        # a long text never widens the window: the label takes the room it is given
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)

    def shown_text(self) -> str:
        """The text as drawn at the label's present width."""
        return self.fontMetrics().elidedText(self.text(), self._mode, max(0, self.contentsRect().width()))

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        painter = QtGui.QPainter(self)
        align = QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter
        # drawn by the style, as QLabel draws: a style sheet's colour and weight apply
        self.style().drawItemText(painter, self.contentsRect(), int(align), self.palette(), self.isEnabled(), self.shown_text(), self.foregroundRole())
        painter.end()
