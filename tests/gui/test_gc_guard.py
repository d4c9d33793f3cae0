"""Garbage collection of Qt objects happens on the GUI thread, never in a training thread."""

from __future__ import annotations

import gc
import threading

from PySide6 import QtCore

from gradviz.gui import gc_guard


class Cyclic(QtCore.QObject):
    """A Qt object in a reference cycle: only the cyclic collector can free it."""

    died_in: list[str] = []

    def __init__(self) -> None:
        super().__init__()
        self.me = self

    def __del__(self) -> None:
        Cyclic.died_in.append(threading.current_thread().name)


def _allocate_in(name: str) -> None:
    def work() -> None:
        keep = [[] for _ in range(20000)]  # far past the collector's first threshold (700)
        del keep

    t = threading.Thread(target=work, name=name)
    t.start()
    t.join()


def test_a_window_hands_garbage_collection_to_the_gui_thread(qtbot):
    from gradviz.core.recording import Recording
    from gradviz.gui.app import MainWindow

    win = MainWindow(Recording())
    qtbot.addWidget(win)
    assert gc_guard.installed() and not gc.isenabled()
    gc.collect()
    Cyclic.died_in.clear()
    Cyclic()  # dropped at once: unreachable, but alive until a collection
    _allocate_in("trainer")
    assert Cyclic.died_in == []  # the trainer's allocations collected nothing
    qtbot.waitUntil(lambda: bool(Cyclic.died_in), timeout=2000)  # the GUI thread's next tick
    assert Cyclic.died_in == ["MainThread"]


def test_the_interpreter_would_have_collected_in_the_training_thread():
    """What the guard prevents: with automatic collection on, the allocating thread collects."""
    gc.collect()
    Cyclic.died_in.clear()
    gc.enable()
    try:
        Cyclic()
        _allocate_in("trainer")
    finally:
        gc.disable()
    assert Cyclic.died_in == ["trainer"]


def test_collect_due_takes_the_young_generation_and_the_older_ones_by_threshold():
    gc.collect()
    assert gc_guard.collect_due() is None  # nothing allocated since
    keep = [[] for _ in range(50)]
    assert gc_guard.collect_due() == 0
    for _ in range(gc.get_threshold()[1]):  # gen-0 collections count towards a gen-1 one
        keep.append([])
        gc.collect(0)
    keep.append([])
    assert gc_guard.collect_due() == 1
    del keep


def test_the_app_window_installs_the_guard_itself(tmp_path):
    """In a fresh process (no test fixture): opening the window turns automatic collection off."""
    import os
    import subprocess
    import sys

    code = (
        "import gc; from gradviz.core.recording import Recording; from gradviz.gui.app import ensure_app, MainWindow; "
        "app = ensure_app(); before = gc.isenabled(); w = MainWindow(Recording()); print(before, gc.isenabled())"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path), "GRADVIZ_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-800:]
    assert out.stdout.split()[-2:] == ["True", "False"]


def test_the_window_freezes_what_lives_at_its_start_out_of_later_collections(qtbot):
    """A full collection walked every object of torch, Qt, pyqtgraph and the window (over 200 000),
    about every ten seconds: a 115 ms freeze of the GUI each time. Once the window is built, what
    is alive is frozen out of the collector's sight; reference counting still frees it, and a
    cycle made later is still collected on the GUI thread."""
    import weakref

    from gradviz.core.recording import Recording
    from gradviz.gui.app import MainWindow

    win = MainWindow(Recording())
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=2000)  # the first turn of the loop

    class Plain:
        pass

    kept = Plain()
    gc_guard.freeze_long_lived()
    assert not any(o is kept for o in gc.get_objects())  # out of the collector's walk
    ref = weakref.ref(kept)
    del kept
    assert ref() is None  # freed by its reference count all the same
    Cyclic.died_in.clear()
    Cyclic()
    qtbot.waitUntil(lambda: bool(Cyclic.died_in), timeout=2000)
    assert Cyclic.died_in == ["MainThread"]
