"""One module per chart; every view follows `gradviz.gui.views.base.View`."""

from __future__ import annotations

from .activations import ActivationsView
from .base import View
from .depth import DepthView
from .heatmap import HeatmapView
from .histograms import HistogramsView
from .layers import LayersView
from .loss import LossView

VIEW_CLASSES = (DepthView, HeatmapView, LossView, HistogramsView, ActivationsView, LayersView)


def make_views(parent=None) -> list[View]:
    """All six views, in display order: depth, heatmap, loss, histograms, activations, layers."""
    return [cls(parent) for cls in VIEW_CLASSES]


__all__ = [
    "VIEW_CLASSES",
    "ActivationsView",
    "DepthView",
    "HeatmapView",
    "HistogramsView",
    "LayersView",
    "LossView",
    "View",
    "make_views",
]
