"""Large labels that shrink their text to fit their width before they wrap, alone or as a group
drawn at one size."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from PySide6 import QtCore, QtGui, QtWidgets


class FittedLabel(QtWidgets.QLabel):
    """Plain text drawn as large as it fits, by these rules in turn: on one line at a size from
    `set_base_font`'s down to `one_line_pt`; else a shorter form of it (`set_texts`) on one line;
    else on two lines at a size down to `least_pt`; else at `least_pt`, wrapped as it needs
    (`fit_together` applies them). The readout's lines at 16 pt took two lines each in a
    600 px wide depth panel (1366x768): four lines of headline for two runs where one each at 12 pt
    fit; in presentation mode in a 470 px panel they took three lines each, and left the depth
    profile a 130 px strip.

    `on_change`, when set, is called instead of fitting this label alone (its text or width
    changed): a group of labels (`fit_together`) takes one size, so that lines of different
    lengths do not come out in different sizes."""

    def __init__(self, text: str = "", parent=None, on_change: Callable[[], None] | None = None) -> None:
        super().__init__(text, parent)
        self._base: QtGui.QFont | None = None
        self._one_line_pt = self._least_pt = 0.0
        self.on_change = on_change
        self.texts: list[str] = [text]  # the text and shorter forms of it, longest first
        self.fit_state: tuple | None = None  # (room, size, form, lines, when) `fit_together` last chose
        self.setWordWrap(True)  # never let a long line widen the window past the screen
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)

    def set_base_font(self, font: QtGui.QFont, one_line_pt: float, least_pt: float) -> None:
        """The size to draw at where there is room, the least size for one line, the least size."""
        self._base = QtGui.QFont(font)
        base = font.pointSizeF()
        self._least_pt = min(float(least_pt), base)
        self._one_line_pt = min(max(float(one_line_pt), self._least_pt), base)
        self.fit_state = None
        self._fit()

    def base_point_size(self) -> float:
        return self._base.pointSizeF() if self._base is not None else self.font().pointSizeF()

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        self.texts = [text]
        self._show(text)
        self._fit()

    def set_texts(self, texts: list[str]) -> None:
        """The text and shorter forms of it, longest first: a shorter one is shown where it fits
        one line and the full one does not (the full one is then the tooltip)."""
        texts = [t for t in texts if t] or [""]
        if texts == self.texts:
            return
        self.texts = texts
        if self.text() not in texts:
            self._show(texts[0])
        self._fit()

    def full_text(self) -> str:
        return self.texts[0]

    def _show(self, text: str) -> None:
        if self.text() != text:
            super().setText(text)
        tip = self.texts[0] if text != self.texts[0] else ""
        if self.toolTip() != tip:
            self.setToolTip(tip)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._fit()

    def sizes(self, text: str | None = None) -> tuple[float | None, float]:
        """For `text` (default: the full text): (the largest size that fits one line, None if
        none from `one_line_pt` up does; the largest that fits two lines, or `least_pt`). Only
        a refit asks (`fit_together` keeps its choice while the texts still fit it)."""
        if self._base is None:
            return None, self.font().pointSizeF()
        text = self.texts[0] if text is None else text
        base, room = self._base.pointSizeF(), self._room()
        if not text or room <= 0:
            return base, base
        one = self._largest(self._one_line_pt, base, text, room, 1)
        two = self._largest(self._least_pt, base, text, room, 2) or self._least_pt
        return one, two

    def apply_size(self, pt: float, text: str | None = None) -> None:
        """Draw `text` (one of `texts`; default the full one) at `pt`."""
        if self._base is None:
            return
        self._show(self.texts[0] if text is None else text)
        f = self._at(pt)
        if f != self.font():
            self.setFont(f)

    def _fit(self) -> None:
        if self._base is None:
            return
        if self.on_change is not None:
            self.on_change()
            return
        fit_together([self])

    def _room(self) -> float:
        return float(self.contentsRect().width() - 2 * max(0, self.margin()) - max(0, self.indent()) - 2)

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


def _form(lab: FittedLabel, k: int) -> str:
    return lab.texts[min(k, len(lab.texts) - 1)]


REGROW_AFTER = 10.0  # s: a kept choice is checked against the texts' best fit this often
REGROW_GAIN = 1.1  # a larger size is taken only when this much larger (or a fuller form, fewer lines)
clock = time.monotonic  # tests move it on


def _choose(labels: list[FittedLabel]) -> tuple[float, int, int]:
    """(size, form, lines) that fit every label now, ignoring what was chosen before."""
    depth = max(len(lab.texts) for lab in labels)
    for k in range(depth):  # the full texts, then ever shorter forms
        ones = [lab.sizes(_form(lab, k))[0] for lab in labels]
        if all(one is not None for one in ones):
            return min(ones), k, 1
    return min(lab.sizes()[1] for lab in labels), 0, 2


def _better(new: tuple[float, int, int], old: tuple[float, int, int]) -> bool:
    """Whether a fresh choice is worth a visible change: fewer lines, a fuller form, or a clearly
    larger size (a small gain would only trade one jitter for another)."""
    (pt, k, lines), (old_pt, old_k, old_lines) = new, old
    if (lines, k) != (old_lines, old_k):
        return (lines, k) < (old_lines, old_k)
    return pt >= REGROW_GAIN * old_pt


def fit_together(labels: Iterable[FittedLabel]) -> float | None:
    """One size for all `labels`: where every label's full text fits one line, the smallest of
    their one-line sizes; else the same with each label's shortest form, where that fits; else
    the full texts at the smallest of their two-line sizes. Returns the size (None: no labels).

    A live readout's texts change a digit at a time: in the same room, the size and form chosen
    last are kept while every text still fits them, so the lines do not jump between sizes (or
    between long and short forms) as "0.43x" becomes "0.094x". A new room chooses afresh. Every
    `REGROW_AFTER` seconds a kept choice is weighed against a fresh one, which replaces it only
    when clearly better: after "1/1.5e7" became "1.3x" the line stayed small until a resize."""
    labels = list(labels)
    if not labels:
        return None
    rooms = [lab._room() for lab in labels]
    now = clock()
    states = {lab.fit_state for lab in labels}
    choice = None
    if len(states) == 1 and (last := states.pop()) is not None and all(r == last[0] for r in rooms):
        _room, pt, k, lines, when = last
        if all(lab._lines(pt, _form(lab, k), r) <= lines for lab, r in zip(labels, rooms, strict=True)):
            if now - when < REGROW_AFTER:
                for lab in labels:
                    lab.apply_size(pt, _form(lab, k))
                return pt
            fresh = _choose(labels)
            # not better: keep it, and look again in REGROW_AFTER
            choice = fresh if _better(fresh, (pt, k, lines)) else (pt, k, lines)
    if choice is None:
        choice = _choose(labels)
    pt, k, lines = choice
    for lab, r in zip(labels, rooms, strict=True):
        lab.apply_size(pt, _form(lab, k))
        lab.fit_state = (r, pt, k, lines, now)
    return pt
