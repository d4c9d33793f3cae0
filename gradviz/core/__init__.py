"""The Qt-free engine: models, data, probes, experiments, recordings and run files.

Nothing under this package may import PySide6, shiboken6 or pyqtgraph (tests/core/test_no_qt.py).
"""
