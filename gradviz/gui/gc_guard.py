"""Python's cyclic garbage collector, run on the GUI thread only.

A collection runs in whichever thread happens to allocate past the collector's threshold, and it
destroys every unreachable object, Qt wrappers included (pyqtgraph leaves plenty of them in
reference cycles). In the GUI process other threads allocate too: the process worker's receiver
replays the trainer's records, and the thread worker (`GRADVIZ_WORKER=thread`) trains. A Qt object
destroyed there while the GUI thread uses Qt can deadlock: the test suite hung with the training
thread inside `QObject::disconnect` (holding Qt's connection mutex, waiting for the GIL) and the
GUI thread inside `QMenu::addMenu` (holding the GIL, waiting for that mutex).

So `install()` switches automatic collection off and a timer on the GUI thread collects the young
generation every tick, and the older ones when the interpreter's own thresholds say so. Reference
counting still frees everything that is not in a cycle at once; cycles wait at most one tick.

Once the window is built (the first turn of the event loop), everything alive then (torch's,
Qt's and pyqtgraph's modules, the window's items: over 200 000 objects) is moved out of the
collector's sight with `gc.freeze()`. A full collection had to walk them all, about every ten
seconds: a 115 ms freeze of the window each time (`bench/gui_latency.py`'s longest stall).
Frozen objects are still freed by reference counting; only a cycle among them that becomes
garbage later is kept.
"""

from __future__ import annotations

import gc
import threading

from PySide6 import QtCore

TICK_MS = 100

_timer: QtCore.QTimer | None = None


def collect_due() -> int | None:
    """Collect the young objects made since the last tick (a few, so it is cheap), and the older
    generations when the interpreter's thresholds say they are due; returns the generation
    collected, None when nothing was allocated. Waiting for the first threshold instead (700 net
    allocations) could hold a cycle for good: the allocations that would have crossed it in
    another thread are gone by the next tick."""
    counts, limits = gc.get_count(), gc.get_threshold()
    if counts[0] <= 0:
        return None
    gen = 0
    if counts[1] >= limits[1]:
        gen = 2 if counts[2] >= limits[2] else 1
    gc.collect(gen)
    return gen


def install() -> None:
    """Once per process, from the GUI thread, after the QApplication exists."""
    global _timer
    app = QtCore.QCoreApplication.instance()
    if _timer is not None or app is None:
        return
    if threading.current_thread() is not threading.main_thread():  # gradviz's GUI thread
        raise RuntimeError("gc_guard.install() must run on the GUI thread")
    gc.disable()
    _timer = QtCore.QTimer(app)
    _timer.setInterval(TICK_MS)
    _timer.timeout.connect(collect_due)
    _timer.start()
    QtCore.QTimer.singleShot(0, freeze_long_lived)  # once the window that called install() is built


def freeze_long_lived() -> None:
    """Collect once, then keep what is left (the long-lived objects) out of later collections."""
    gc.collect()
    gc.freeze()


def installed() -> bool:
    return _timer is not None and not gc.isenabled()
