"""Live plots repainted from real training at 30 Hz for about 5 s, every view in turn.

Guards against crashes in live repainting (PySide6 6.12's none_dealloc abort in AxisItem.drawPicture
killed the process this way)."""

from __future__ import annotations

import time

from gradviz.gui.app import MainWindow
from gradviz.gui.worker import Worker


def test_live_repaint_for_five_seconds(qtbot, tmp_path, tiny):
    worker = Worker(tiny(**{"model.depth": 12}), path=tmp_path / "live.gradviz").start()
    win = MainWindow(worker.recording, session=worker)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    assert worker.ready.wait(60)
    qtbot.waitUntil(lambda: worker.recording.last_step() >= 2, timeout=30000)
    drawn = {v.name: 0 for v in win.views}
    start_frames, start_step = win.frame_count, worker.recording.last_step()
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 5.0:
        win.tabs.setCurrentIndex(i % win.tabs.count())  # every view gets live frames
        if i % 7 == 3:
            win.toggle_presentation()
        qtbot.wait(250)
        win.repaint()
        i += 1
    for v in win.views:
        drawn[v.name] = v.draw_count
    frames = win.frame_count - start_frames
    assert frames >= 25, frames  # 30 Hz asked; a loaded 2-core machine gives less, never none
    assert worker.recording.last_step() > start_step + 20
    assert all(n > 0 for n in drawn.values()), drawn
    assert win.views[0].drawn_upto >= worker.recording.last_step() - 50
    assert worker.alive
    win.close()
    assert worker.done.wait(3)
