"""Tooltips that show their text as written.

Qt draws a tooltip as rich text when its first line looks like markup: an event from a run file
reading "<b>boom</b>", a layer or run named "<i>x</i>" (both legal in a watch), even "a < b and
c > d" lost their brackets or came out bold. Such text is escaped into rich text that spells it out.
"""

from __future__ import annotations

import html

from PySide6 import QtGui


def plain_tooltip(text: str) -> str:
    """`text` for `setToolTip`, so that the tooltip shows it character for character."""
    if not text or not QtGui.Qt.mightBeRichText(text):
        return text
    return "<p style='white-space:pre-wrap'>" + html.escape(text, quote=False) + "</p>"
