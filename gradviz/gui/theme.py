"""Colours, fonts and pens: light and dark themes, and a presentation mode for the projector.

Every run colour comes from the Okabe-Ito palette (safe for the common colour-vision deficiencies).
Presentation mode keeps the palette and raises font sizes, line widths and contrast so a class can
read the charts from the back row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6 import QtGui, QtWidgets

# Okabe & Ito (2008), "Color Universal Design"
OKABE_ITO = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}

# run colours in order: plain first, residual second, then the others
_RUNS_LIGHT = ("#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
_RUNS_DARK = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#F0E442", "#D55E00")

EVENT_KINDS_MARKED = ("toggle", "restart", "pause", "nonfinite", "error", "warning")


@dataclass(frozen=True)
class Theme:
    name: str = "light"  # light | dark
    presentation: bool = False
    background: str = "#FFFFFF"
    foreground: str = "#202020"
    grid_alpha: float = 0.15
    runs: tuple[str, ...] = _RUNS_LIGHT
    band: str = "#CC79A7"  # the vanishing-gradient band
    font_pt: int = 10  # chart text, labels, tables
    readout_pt: int = 16  # the plain-language readout
    line_width: float = 1.0  # live curves (width 1 is the fast path)
    bold_width: float = 2.5  # the depth profile's latest step
    marker_width: float = 1.0

    def run_color(self, index: int) -> str:
        return self.runs[index % len(self.runs)]

    def event_color(self, kind: str) -> str:
        if kind in ("nonfinite", "error"):
            return OKABE_ITO["vermillion"]
        if kind == "restart":
            return OKABE_ITO["bluish_green"]
        if kind == "pause":
            return "#888888"
        if kind == "warning":
            return OKABE_ITO["orange"]
        return self.foreground

    def pen(self, color: str, width: float | None = None, alpha: int = 255, dash: bool = False):
        c = QtGui.QColor(color)
        c.setAlpha(alpha)
        pen = QtGui.QPen(c)
        pen.setWidthF(self.line_width if width is None else width)
        pen.setCosmetic(True)
        if dash:
            pen.setStyle(QtGui.Qt.PenStyle.DashLine)
        return pen

    def font(self, scale: float = 1.0) -> QtGui.QFont:
        f = QtGui.QFont()
        f.setPointSizeF(self.font_pt * scale)
        return f


PRESENTATION_FULL_HD = 1080  # screen height (logical px) the presentation sizes are made for


def presentation_scale(screen_height: int | None) -> float:
    """How much of the presentation text size a screen has room for: full size from 1080 logical
    pixels up, down to 0.7 on a 768-line laptop or projector (at 20 pt the readout took five lines
    there and squeezed the depth profile to a strip)."""
    if not screen_height or screen_height <= 0:
        return 1.0
    return min(1.0, max(0.7, screen_height / PRESENTATION_FULL_HD))


def make_theme(name: str = "light", presentation: bool = False, screen_height: int | None = None) -> Theme:
    """`screen_height`: the window's screen in logical pixels; presentation text scales with it."""
    t = Theme()
    if name == "dark":
        t = replace(t, name="dark", background="#111111", foreground="#E8E8E8", runs=_RUNS_DARK)
    if presentation:
        # high contrast: pure black on white (or white on black), thick lines, large text
        bg, fg = ("#000000", "#FFFFFF") if name == "dark" else ("#FFFFFF", "#000000")
        k = presentation_scale(screen_height)
        t = replace(
            t,
            presentation=True,
            background=bg,
            foreground=fg,
            grid_alpha=0.25,
            font_pt=round(20 * k),
            readout_pt=round(26 * k),
            line_width=3.0,
            bold_width=6.0,
            marker_width=2.5,
        )
    return t


def apply_to_app(app: QtWidgets.QApplication, theme: Theme) -> None:
    """Widget palette and base font for the whole application."""
    pal = QtGui.QPalette()
    bg, fg = QtGui.QColor(theme.background), QtGui.QColor(theme.foreground)
    # dark: a grey clearly above the window colour, or check boxes and fields vanish into it
    base = bg if theme.name == "light" else QtGui.QColor("#3a3a3a")
    window = QtGui.QColor("#F2F2F2") if theme.name == "light" else QtGui.QColor("#181818")
    if theme.presentation:
        window = bg
    R = QtGui.QPalette.ColorRole
    for role, col in (
        (R.Window, window),
        (R.WindowText, fg),
        (R.Base, base),
        (R.AlternateBase, window),
        (R.Text, fg),
        (R.Button, window),
        (R.ButtonText, fg),
        (R.ToolTipBase, base),
        (R.ToolTipText, fg),
        (R.Highlight, QtGui.QColor(OKABE_ITO["blue"])),
        (R.HighlightedText, QtGui.QColor("#FFFFFF")),
    ):
        pal.setColor(role, col)
    # setColor(role, ...) sets every colour group, so a disabled control (a switch the model does
    # not have) looked exactly like a live one: disabled text gets a grey of its own
    muted = QtGui.QColor("#9A9A9A" if theme.name == "light" else "#6E6E6E")
    for role in (R.WindowText, R.Text, R.ButtonText):
        pal.setColor(QtGui.QPalette.ColorGroup.Disabled, role, muted)
    app.setPalette(pal)
    font = app.font()
    font.setPointSizeF(max(9.0, theme.font_pt * (0.8 if theme.presentation else 1.0)))
    app.setFont(font)


def size_check_boxes(widget: QtWidgets.QWidget, theme: Theme, font: QtGui.QFont | None = None) -> None:
    """Check boxes under `widget` with their square sized to their text in presentation mode: the
    style draws it 13 px whatever the font, a speck beside projector text. Normal mode keeps the
    style's own size. `font`: the boxes' text font (default the application's). A widget with a
    style sheet no longer follows the application font, so the font is set here as well."""
    font = QtGui.QFont(font if font is not None else QtWidgets.QApplication.font())
    side = round(QtGui.QFontMetrics(font).height() * 0.9) if theme.presentation else 0
    sheet = f"QCheckBox::indicator {{ width: {side}px; height: {side}px; }}" if side else ""
    for box in widget.findChildren(QtWidgets.QCheckBox):
        box.setStyleSheet(sheet)
        box.setFont(font)
