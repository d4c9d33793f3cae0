"""Replay and follow: the real main window over run files, the time slider against the file's values,
a writer in another process, hostile files, File → Open… and drops."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import importlib.util
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from gradviz.core.runfile import RunFileError, open_run
from gradviz.gui import replay

ROOT = Path(__file__).resolve().parents[2]
STEPS = 200


def _bench():
    spec = importlib.util.spec_from_file_location("gradviz_bench_open_export", ROOT / "bench" / "open_export.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def run_file(tmp_path_factory) -> Path:
    return _bench().write_synthetic_run(tmp_path_factory.mktemp("run") / "synthetic.gradviz", STEPS)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    QtCore.QStandardPaths.setTestModeEnabled(True)


@pytest.fixture()
def opened(qapp, qtbot, run_file):
    windows = []

    def open_(path, follow=False):
        w = replay.open_window(qapp, path, follow=follow)
        qtbot.addWidget(w)
        windows.append(w)
        return w

    yield open_
    for w in windows:
        if getattr(w, "follower", None) is not None:
            w.follower.stop()
        if hasattr(w, "shutdown"):
            w.shutdown()


# ---- replay -----------------------------------------------------------------------------------------
def test_open_window_shows_the_recorded_session(opened, run_file):
    w = opened(run_file)
    assert w.isVisible()
    assert w.recording.runs == ["plain", "residual"]
    bar = w.replay_bar
    assert len(bar.steps) == STEPS and bar.slider.maximum() == STEPS - 1
    assert bar.at_end() and w.upto_step is None
    assert "Replaying" in w.message_label.text() and str(run_file) in w.message_label.text()
    # the event recorded at the middle of the run is a tick on the slider
    assert [m[0] for m in bar.slider.marks] == [STEPS // 2]
    assert "residual on" in bar.slider.toolTip()


@pytest.mark.parametrize("k", [0, 37, 150])
def test_slider_at_step_k_shows_the_files_values(opened, run_file, qtbot, k):
    w = opened(run_file)
    expected = open_run(run_file)  # read independently of the window
    bar = w.replay_bar
    bar.slider.setValue(int(np.searchsorted(bar.steps, k)))  # what dragging the slider does
    qtbot.waitUntil(lambda: w.depth.drawn_upto == k, timeout=3000)
    assert w.upto_step == k
    assert f"step {k} / {STEPS - 1}" in bar.label.text()
    for run in ("plain", "residual"):
        steps, grad = expected.metric(run, "grad_norm")
        row = grad[int(np.searchsorted(steps, k))]
        curve = w.depth.curves[run]
        x, y = curve.getData()
        ok = np.isfinite(row) & (row > 0)
        np.testing.assert_array_equal(x, np.arange(len(row))[ok])
        # the depth profile plots log10 values on its log axis (pyqtgraph keeps the linear data too)
        lin = curve.yData if curve.yData is not None else y
        np.testing.assert_allclose(lin, row[ok], rtol=1e-6)


def test_seek_and_back_to_the_end(opened, run_file, qtbot):
    w = opened(run_file)
    bar = w.replay_bar
    bar.seek_step(60)
    assert w.upto_step == 60
    bar.slider.setValue(bar.slider.maximum())
    assert w.upto_step is None and bar.at_end()


def test_play_at_a_chosen_speed(opened, run_file, qtbot):
    w = opened(run_file)
    bar = w.replay_bar
    bar.seek_step(0)
    bar.set_speed(25)
    bar.play()
    assert bar.is_playing()
    qtbot.wait(400)
    slow = w.upto_step
    assert slow is not None and 0 < slow < 40  # ~25 steps/s
    bar.set_speed(5000)
    qtbot.waitUntil(lambda: not bar.is_playing(), timeout=5000)  # stops at the end
    assert bar.at_end() and w.upto_step is None
    bar.seek_step(10)
    bar.pause()
    assert not bar.is_playing()


# ---- follow --------------------------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from gradviz.core.recording import Recording
    from gradviz.core.runfile import RunFileWriter
    path, go = Path(sys.argv[1]), Path(sys.argv[2])
    rec = Recording()
    w = RunFileWriter(path, rec)
    rec.add_run("plain", ["a", "b", "c"], ["Linear"] * 3, ["blk"])
    def step(s):
        rec.append("plain", s, {"loss": 1.0 / (s + 1), "grad_norm": np.array([s + 1.0, 2.0, 3.0], np.float32)})
        w.flush()
    for s in range(10):
        step(s)
    print("ready", flush=True)
    deadline = time.time() + 30
    while not go.exists() and time.time() < deadline:
        time.sleep(0.02)
    for s in range(10, 60):
        step(s)
        time.sleep(0.01)
    w.close()
    print("done", flush=True)
    """
)


def test_following_names_a_run_that_joins_later(opened, qtbot, tmp_path):
    """A GAN's discriminator watch writes first, its generator's joins the shared file later: the
    views drew the new run, but the status line kept saying "runs D". It names both now."""
    from gradviz.core import runfile
    from gradviz.core.recording import Recording

    path = tmp_path / "gan.gradviz"
    rec = Recording()
    writer = runfile.RunFileWriter(path, rec)
    rec.add_run("D", ["0", "2"], ["Linear", "Linear"], [])
    for s in range(5):
        rec.append("D", s, {"loss": 1.0, "grad_norm": np.ones(2, np.float32)})
    writer.flush()
    w = opened(path, follow=True)
    assert w.message_label.text() == f"Following {path} as it grows: runs D"
    rec.add_run("G", ["0", "2"], ["Linear", "Linear"], [])
    for s in range(5):
        rec.append("G", s, {"loss": 0.5, "grad_norm": np.ones(2, np.float32)})
    writer.flush()
    qtbot.waitUntil(lambda: "G" in w.recording.runs, timeout=5000)
    qtbot.waitUntil(lambda: w.message_label.text() == f"Following {path} as it grows: runs D, G", timeout=3000)
    writer.close()


def test_following_picks_up_a_script_run_again(opened, qtbot, tmp_path):
    """Run a watched script, follow its file, run the script again: the writer puts a new file in
    place of the old one, and the window went on showing the first run's last step for ever. It
    follows the new recording now, and says so."""
    from gradviz.core import runfile
    from gradviz.core.recording import Recording

    path = tmp_path / "mine.gradviz"

    def write(name: str, steps: int):
        rec = Recording()
        writer = runfile.RunFileWriter(path, rec)
        rec.add_run(name, ["0", "2"], ["Linear", "Linear"], [])
        for s in range(steps):
            rec.append(name, s, {"loss": float(steps), "grad_norm": np.full(2, float(steps), np.float32)})
        writer.flush()
        return writer

    write("first", 5).close()
    w = opened(path, follow=True)
    assert w.recording.runs == ["first"] and w.recording.last_step() == 4
    qtbot.wait(600)  # a few polls of the same file: nothing changes
    assert w.recording.runs == ["first"]
    second = write("second", 12)
    qtbot.waitUntil(lambda: w.recording.runs == ["second"], timeout=5000)
    qtbot.waitUntil(lambda: w.recording.last_step() == 11, timeout=5000)
    assert w.message_label.text() == f"Following {path} as it grows: runs second (the file was written again: a new recording)"
    assert w.follower is not None and w.follower.reader is not None
    qtbot.waitUntil(lambda: w.depth.latest_values("second") is not None, timeout=5000)
    np.testing.assert_allclose(w.depth.latest_values("second"), [12.0, 12.0])
    second.close()


def test_follow_a_file_another_process_writes(opened, qtbot, tmp_path):
    path, go = tmp_path / "live.gradviz", tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(go)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        w = opened(path, follow=True)
        assert w.recording.last_step() == 9
        assert w.follower is not None and "Following" in w.message_label.text()
        qtbot.waitUntil(lambda: w.depth.drawn_upto == 9, timeout=3000)
        seen: list[int] = []
        w.frame_listeners.append(lambda win: seen.append(win.depth.drawn_upto))
        go.touch()  # the writer goes on while the window follows
        qtbot.waitUntil(lambda: w.depth.drawn_upto == 59, timeout=15000)
        assert proc.wait(timeout=15) == 0
        # the message names no step count, which would have gone stale beside the live slider
        assert "as it grows" in w.message_label.text() and "10 steps" not in w.message_label.text()
    finally:
        if proc.poll() is None:
            proc.kill()
    steps, grad = w.recording.metric("plain", "grad_norm")
    assert list(steps) == list(range(60))
    np.testing.assert_allclose(w.depth.latest_values("plain"), [60.0, 2.0, 3.0])
    assert any(9 < s < 59 for s in seen if s is not None), "the views never showed an intermediate step"
    # the writer closed the file: it said "(live)" and "as it grows" for ever after
    done = f"Followed {path} to its end at step 59: its writer closed it"
    qtbot.waitUntil(lambda: w.message_label.text() == done, timeout=3000)
    assert w.replay_bar.at_end() and w.replay_bar.label.text() == "step 59 / 59"
    assert w.follower.ended == "closed" and w.follower.timer.isActive()  # it still watches the path


def test_following_a_file_whose_writer_was_killed_says_it_will_not_grow(opened, qtbot, tmp_path):
    """A training killed mid-run (out of memory, Ctrl+\\) leaves its lock behind; the window said
    "as it grows" and "(live)" over a file that never would."""
    from gradviz.core.runfile import writer_state

    path, go = tmp_path / "killed.gradviz", tmp_path / "never"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(go)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert writer_state(path) == "writing"
        w = opened(path, follow=True)
        qtbot.wait(600)  # polls while the writer is alive but idle: still live
        assert w.follower.ended is None and "(live)" in w.replay_bar.label.text()
        assert w.message_label.text().startswith("Following ")
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert writer_state(path) == "gone"
    want = f"Followed {path} to its end at step 9: its writer stopped without closing it (the process is gone)"
    qtbot.waitUntil(lambda: w.message_label.text() == want, timeout=3000)
    assert w.replay_bar.label.text() == "step 9 / 9" and len(w.recording.metric("plain", "loss")[0]) == 10


# ---- hostile files -------------------------------------------------------------------------------------
def _truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 3])
    return dst


def _random(_src: Path, dst: Path) -> Path:
    dst.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return dst


def _other_schema(_src: Path, dst: Path) -> Path:
    db = sqlite3.connect(dst)
    db.execute("CREATE TABLE people(name TEXT, age INTEGER)")
    db.execute("INSERT INTO people VALUES ('ada', 36)")
    db.commit()
    db.close()
    return dst


def _too_new(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    db = sqlite3.connect(dst)
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    return dst


def _bad_blob(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    db = sqlite3.connect(dst)
    cid = db.execute("SELECT min(id) FROM chunks WHERE name = 'grad_norm'").fetchone()[0]
    db.execute("UPDATE chunks SET vals = randomblob(13) WHERE id = ?", (cid,))
    db.commit()
    db.close()
    return dst


FATAL = {"truncated": _truncated, "random bytes": _random, "other schema": _other_schema, "too new": _too_new}


@pytest.mark.parametrize("kind", list(FATAL))
def test_hostile_file_is_one_line_and_the_app_keeps_running(opened, run_file, tmp_path, qtbot, kind):
    w = opened(run_file)
    before = w.recording
    bad = FATAL[kind](run_file, tmp_path / f"{kind.replace(' ', '_')}.gradviz")
    assert replay.open_in_window(w, bad) is False
    msg = w.message_label.text()
    assert msg and "\n" not in msg and bad.name in msg and "Traceback" not in msg
    if kind == "too new":
        assert "newer gradviz" in msg
    # still alive and still showing the previous run
    assert w.isVisible() and w.recording is before
    w.replay_bar.seek_step(50)
    qtbot.waitUntil(lambda: w.depth.drawn_upto == 50, timeout=3000)
    # `gradviz open` of the same file: one RunFileError line before any window exists
    with pytest.raises(RunFileError) as err:
        replay.open_window(QtWidgets.QApplication.instance(), bad)
    assert "\n" not in str(err.value) and bad.name in str(err.value)


def test_damaged_chunk_opens_with_a_warning(opened, run_file, tmp_path):
    bad = _bad_blob(run_file, tmp_path / "bad_blob.gradviz")
    w = opened(bad)
    msg = w.message_label.text()
    assert "warning" in msg and "damaged chunk" in msg and "\n" not in msg
    steps, _ = w.recording.metric("plain", "grad_norm")
    assert 0 < len(steps) < STEPS  # the rest of the file is still shown


def test_nothing_in_a_file_is_executed(opened, run_file, tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "evil.gradviz"
    shutil.copy(run_file, bad)
    db = sqlite3.connect(bad)
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('x', ?)", (pickle.dumps(Evil()),))
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('y', ?)", (f'__import__("os").system("touch {marker}")',))
    cid = db.execute("SELECT min(id) FROM chunks").fetchone()[0]
    db.execute("UPDATE chunks SET vals = ? WHERE id = ?", (pickle.dumps(Evil()), cid))
    db.commit()
    db.close()
    w = opened(bad)
    assert w.recording.runs == ["plain", "residual"]
    assert not marker.exists()


# ---- File → Open… and drops ----------------------------------------------------------------------------
def test_file_open_dialog_opens_a_run(opened, run_file, tmp_path, qtbot):
    other = _bench().write_synthetic_run(tmp_path / "other.gradviz", 40, seed=3)
    w = opened(run_file)
    act = w.action_open_run
    assert act in w.menu_file.actions() and act.shortcut().toString() == "Ctrl+O"
    act.trigger()
    dlg = w.open_dialog
    assert dlg.isVisible()
    dlg.fileSelected.emit(str(other))
    assert len(w.replay_bar.steps) == 40 and w.recording.last_step() == 39
    assert str(other) in w.message_label.text()


def _drop(widget: QtWidgets.QWidget, path: Path) -> bool:
    from PySide6 import QtGui

    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(path))])
    pos = QtCore.QPointF(widget.width() / 2, widget.height() / 2)
    buttons, mods = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier
    enter = QtGui.QDragEnterEvent(pos.toPoint(), QtCore.Qt.DropAction.CopyAction, mime, buttons, mods)
    QtWidgets.QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QtGui.QDropEvent(pos, QtCore.Qt.DropAction.CopyAction, mime, buttons, mods)
    QtWidgets.QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def test_dropping_files_on_the_window(opened, run_file, tmp_path, qtbot):
    other = _bench().write_synthetic_run(tmp_path / "dropped.gradviz", 30, seed=5)
    w = opened(run_file)
    chart = w.depth.export_widget()
    target = chart.viewport() if isinstance(chart, QtWidgets.QAbstractScrollArea) else chart
    assert _drop(target, other)  # onto a chart, which accepts drops itself
    qtbot.waitUntil(lambda: w.recording.last_step() == 29, timeout=3000)
    assert str(other) in w.message_label.text()
    # a hostile file dropped: one line, nothing else changes
    junk = _random(run_file, tmp_path / "junk.gradviz")
    before = w.recording
    assert _drop(w.centralWidget(), junk)
    qtbot.waitUntil(lambda: "junk.gradviz" in w.message_label.text(), timeout=3000)
    assert w.recording is before and w.isVisible()
    # other files are not ours to take
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    assert not _drop(w.centralWidget(), txt)
