"""The live window: clicks and keys reach the model through the worker, and the charts show it."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Qt

from gradviz.core.runfile import open_run
from gradviz.gui.app import MainWindow
from gradviz.gui.process_worker import ProcessWorker
from gradviz.gui.worker import Worker

# The GUI trains in a child process by default; the thread worker stays for debugging. Tests that
# matter for both run on both: "process" reads the model's state from the child's status reports.
KINDS = ["thread", "process"]


def switches(worker, run: str) -> dict:
    if worker.experiment is not None:
        return worker.experiment.switches(run)
    return worker.status().switches.get(run, {})


def paused(worker, run: str | None = None) -> bool:
    if worker.experiment is not None:
        exp = worker.experiment
        return exp.paused if run is None else exp.get_run(run).paused
    s = worker.status()
    return s.paused if run is None else s.run_paused.get(run, False)


def step_index(worker) -> int:
    return worker.experiment.step_index if worker.experiment is not None else worker.status().step


@pytest.fixture()
def live(qtbot, tmp_path, tiny):
    def make(cfg=None, max_rate=200.0, kind="thread"):
        cls = ProcessWorker if kind == "process" else Worker
        worker = cls(cfg or tiny(), path=tmp_path / "live.gradviz", max_rate=max_rate).start()
        win = MainWindow(worker.recording, session=worker)
        qtbot.addWidget(win)
        win.resize(1400, 900)
        win.show()
        qtbot.waitExposed(win)
        # shortcuts are window shortcuts: they need the window active
        win.windowHandle().requestActivate()
        qtbot.waitUntil(lambda: QtWidgets.QApplication.activeWindow() is win, timeout=5000)
        assert worker.ready.wait(60)
        qtbot.waitUntil(lambda: worker.recording.last_step() >= 3, timeout=30000)
        made.append(win)
        return win, worker

    made: list = []
    yield make
    for win in made:
        win.shutdown()


def click_box(qtbot, box):
    """Click a check box on its indicator (Qt ignores clicks beside the label)."""
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QtCore.QPoint(8, box.height() // 2))


def loss_markers(win):
    return [line.label.toPlainText() for line in win.views[2].markers.lines]


def test_window_title_and_layout(live):
    win, worker = live()
    assert win.windowTitle().startswith("gradviz")
    assert [v.name for v in win.views] == ["depth", "heatmap", "loss", "histograms", "activations", "layers"]
    assert win.current_view() in win.views
    assert "Two copies of the same deep network" in win.note.text()
    # the worker stored the layer table; the GUI never built a model for it
    layers = win.views[-1]
    win.tabs.setCurrentWidget(layers)
    win.refresh_all()
    assert layers.table.rowCount() == len(worker.recording.layers("plain"))
    assert "layer_table" in worker.recording.meta


def test_a_config_files_note_is_shown_as_written(live, tiny):
    """A lecture note from the lecturer's own TOML reading "<b>w</b> <- w - lr*g" would have been
    drawn as markup (a bold w, the arrow gone): the note is plain text."""
    import dataclasses

    note = "<b>w</b> <- w(1 - lr*lambda) - lr*g, and <i>that</i> is all"
    win, _worker = live(dataclasses.replace(tiny(), note=note, source="/lectures/week3.toml"))
    assert win.note.text() == note and win.note.textFormat() == QtCore.Qt.TextFormat.PlainText


def test_a_preset_changed_for_the_session_says_so_under_its_note(live, tiny):
    """The demo's note ("two copies of the same deep network ... flip residual") stayed as it was
    under `--model torchvision:mobilenet_v3_small --set data.name=shapes`, where neither holds: the
    note now opens with what the session changed. Cadences, folders and example counts are not named."""
    win, _worker = live(tiny(**{"model.activation": "relu", "plain.train.lr": 0.05}))
    head, text = win.note.text().split("\n\n", 1)
    assert text.startswith("Two copies of the same deep network")
    assert head == (
        'Changed from the preset for this session: model.depth = 6; model.width = 8; model.activation = "relu"; '
        "plain.train.lr = 0.05; train.batch_size = 32. The note describes the preset."
    ), head
    win2, _ = live(tiny(**{"model.depth": 30, "model.width": 128, "train.batch_size": 128}))
    assert win2.note.text().startswith("Two copies")  # n_train, cadences: not a change of story


@pytest.mark.parametrize("kind", KINDS)
def test_layer_table_follows_a_batchnorm_flip(live, qtbot, kind):
    """The table was taken once at start: after B its norm rows still read "-" with 0 FLOPs, as
    if BatchNorm were off. The worker takes that run's table again when its norm switch flips;
    the other run's rows stay as they were."""
    win, worker = live(kind=kind)
    layers = win.views[-1]
    win.tabs.setCurrentWidget(layers)

    def norm_cells(run):
        table = worker.recording.meta.get("layer_table", {}).get(run, [])
        return [(shape, flops) for _name, typ, shape, _p, flops, _tied in table if typ.startswith("BatchNorm")]

    qtbot.waitUntil(lambda: bool(norm_cells("plain")), timeout=10000)
    assert all(shape == [] and flops == 0 for shape, flops in norm_cells("plain"))  # off at start
    before = norm_cells("residual")
    click_box(qtbot, win.controls.runs["plain"].norm)
    width = 8  # tiny()'s model.width
    qtbot.waitUntil(lambda: all(shape == [width] and flops > 0 for shape, flops in norm_cells("plain")), timeout=10000)
    assert norm_cells("residual") == before
    row = next(i for i, r in enumerate(worker.recording.meta["layer_table"]["plain"]) if r[1].startswith("BatchNorm"))
    qtbot.waitUntil(lambda: layers.table.item(row, 3) is not None and layers.table.item(row, 3).text() == f"({width})", timeout=5000)
    assert "not in the forward pass" not in layers.total_label.text()
    # the run file has it too (it commits every 0.5 s)
    qtbot.waitUntil(lambda: open_run(worker.path).meta["layer_table"]["plain"][row][2] == [width], timeout=5000)


@pytest.mark.parametrize("kind", KINDS)
def test_clicking_toggles_changes_the_model_and_draws_a_marker(live, qtbot, kind):
    win, worker = live(kind=kind)
    win.tabs.setCurrentWidget(win.views[2])
    plain = win.controls.runs["plain"]
    assert switches(worker, "plain")["residual"] is False
    click_box(qtbot, plain.residual)
    qtbot.waitUntil(lambda: switches(worker, "plain")["residual"] is True, timeout=5000)
    qtbot.waitUntil(lambda: "plain: residual on" in loss_markers(win), timeout=5000)
    ev = [e for e in worker.recording.event_objects() if e.kind == "toggle"][-1]
    assert ev.run == "plain" and ev.detail == "residual on"
    line = [ln for ln in win.views[2].markers.lines if ln.label.toPlainText() == "plain: residual on"][0]
    assert line.value() == ev.step
    # BatchNorm and dropout on the other run
    res = win.controls.runs["residual"]
    click_box(qtbot, res.norm)
    res.dropout.setValue(0.3)
    qtbot.waitUntil(lambda: switches(worker, "residual")["norm"] is True, timeout=5000)
    qtbot.waitUntil(lambda: switches(worker, "residual")["dropout"] == pytest.approx(0.3), timeout=5000)
    qtbot.waitUntil(lambda: {"residual: norm on", "residual: dropout p=0.3"} <= set(loss_markers(win)), timeout=5000)


@pytest.mark.parametrize("kind", KINDS)
def test_keyboard_shortcuts(live, qtbot, kind):
    win, worker = live(kind=kind)
    c = win.controls
    assert c.selected == "plain"
    qtbot.keyClick(win, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: switches(worker, "plain")["residual"] is True, timeout=5000)
    qtbot.keyClick(win, Qt.Key.Key_Tab)
    assert c.selected == "residual"
    qtbot.keyClick(win, Qt.Key.Key_B)
    qtbot.keyClick(win, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: switches(worker, "residual")["norm"] is True, timeout=5000)
    qtbot.waitUntil(lambda: switches(worker, "residual")["dropout"] == pytest.approx(0.5), timeout=5000)
    assert switches(worker, "plain")["norm"] is False  # B acted on the selected run only
    qtbot.keyClick(win, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: paused(worker), timeout=5000)
    time.sleep(0.2)
    before = step_index(worker)
    qtbot.wait(300)
    assert step_index(worker) == before  # paused
    qtbot.keyClick(win, Qt.Key.Key_N)
    qtbot.waitUntil(lambda: step_index(worker) == before + 1, timeout=5000)
    qtbot.wait(200)
    assert step_index(worker) == before + 1 and paused(worker)
    qtbot.keyClick(win, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: not paused(worker) and step_index(worker) > before + 3, timeout=5000)
    n_restart = sum(e.kind == "restart" for e in worker.recording.event_objects())
    qtbot.keyClick(win, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: sum(e.kind == "restart" for e in worker.recording.event_objects()) == n_restart + 1, timeout=5000)
    assert switches(worker, "plain")["residual"] is True  # a restart keeps the switches
    assert "Resume" not in c.pause_btn.text()


def test_presentation_mode_and_theme_persist(live, qtbot):
    win, _ = live()
    depth = win.views[0]
    win.refresh_all()
    pen0 = depth.curves["plain"].opts["pen"].widthF()
    tick0 = depth.plot.getAxis("bottom").style["tickFont"].pointSizeF()
    read0 = win.readout.labels["plain"].font().pointSizeF()
    qtbot.keyClick(win, Qt.Key.Key_F5)
    assert win.theme.presentation
    assert depth.curves["plain"].opts["pen"].widthF() > pen0
    assert depth.plot.getAxis("bottom").style["tickFont"].pointSizeF() > tick0
    assert win.readout.labels["plain"].font().pointSizeF() > read0
    assert win.controls.present_box.isChecked()
    # the bigger fonts widen the controls dock instead of cutting its buttons off
    qtbot.waitUntil(lambda: win.controls_scroll.viewport().width() >= win.controls.sizeHint().width(), timeout=3000)
    btn = win.controls.pause_btn
    assert btn.visibleRegion().boundingRect().width() == btn.width()
    win.controls.theme_box.setCurrentText("dark")
    assert win.theme.name == "dark" and win.theme.presentation
    assert depth.widget.backgroundBrush().color().name() == "#000000"
    win.tabs.setCurrentIndex(3)
    win.close()
    s = QtCore.QSettings()
    assert s.value("theme") == "dark" and str(s.value("presentation")).lower() == "true"
    # a new window comes back the same
    w2 = MainWindow(win.recording)
    qtbot.addWidget(w2)
    assert w2.theme.name == "dark" and w2.theme.presentation
    assert w2.geometry_restored and w2.tabs.currentIndex() == 3
    w2.shutdown()


def contrast(a, b) -> float:
    """WCAG contrast ratio of two QColors (1 = none, 21 = black on white)."""

    def lum(c) -> float:
        ch = [(v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4) for v in (c.redF(), c.greenF(), c.blueF())]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("presentation", [False, True])
def test_controls_stay_legible_in_the_dark_theme(live, qtbot, presentation):
    """The run boxes' labels stayed dark grey on black after switching to the dark theme (their
    style sheets froze the light palette), and check boxes were drawn in the window's own colour."""
    from PySide6 import QtGui

    win, _ = live()
    win.set_theme("dark", presentation)
    role = QtGui.QPalette.ColorRole
    window = QtWidgets.QApplication.palette().color(role.Window)
    for box in win.controls.runs.values():
        texts = box.findChildren(QtWidgets.QLabel) + box.findChildren(QtWidgets.QCheckBox)
        assert len(texts) >= 4
        for w in texts:
            assert contrast(w.palette().color(role.WindowText), window) >= 7, w.text()
        for field in box.findChildren(QtWidgets.QLineEdit):
            pal = field.palette()
            assert contrast(pal.color(role.Text), pal.color(role.Base)) >= 7
        # the check box's square is filled with Base: it must stand out from the window
        assert contrast(box.residual.palette().color(role.Base), window) >= 1.4
    win.set_theme("light", presentation)
    light_window = QtWidgets.QApplication.palette().color(role.Window)
    box = next(iter(win.controls.runs.values()))
    assert contrast(box.residual.palette().color(role.WindowText), light_window) >= 7


def test_presentation_text_scales_with_the_screen(live, qtbot, monkeypatch):
    """At 20 pt on a 768-line laptop or projector the readout took five lines and squeezed the
    depth profile into a strip: presentation text is full size from 1080 lines up, and down to
    0.7 of it below. The window follows the screen it is on, also when moved to another one."""
    from gradviz.gui.theme import make_theme

    sizes = {h: make_theme("light", True, h).font_pt for h in (None, 600, 768, 900, 1080, 2160)}
    assert sizes == {None: 20, 600: 14, 768: 14, 900: 17, 1080: 20, 2160: 20}
    assert make_theme("light", True, 768).readout_pt == 18 and make_theme("light", False, 768).font_pt == 10

    win, _ = live()
    win.resize(1366, 768)
    screen_h = win.screen().availableGeometry().height()  # the offscreen screen: 800 lines
    win.set_presentation(True)
    assert win.theme.font_pt == make_theme("light", True, screen_h).font_pt < 20
    depth = win.views[0]
    win.refresh_all()
    qtbot.wait(50)
    assert depth.height() > 0.7 * win.height()  # at 20 pt the readout left it 0.6
    monkeypatch.setattr(win, "_screen_height", lambda: 1080)
    win._on_screen_changed(None)  # what Qt calls when the window lands on the full-HD projector
    assert win.theme.presentation and win.theme.font_pt == 20
    assert depth.plot.getAxis("bottom").style["tickFont"].pointSizeF() == 20


@pytest.mark.parametrize("kind", KINDS)
def test_nan_in_one_run_pauses_it_and_the_other_goes_on(live, qtbot, kind):
    win, worker = live(kind=kind)
    lr = win.controls.runs["residual"].lr
    lr.setFocus()
    lr.selectAll()
    # 1e30 on the residual twin: its skip paths carry the exploding gradient back to the input layer,
    # which overflows float32 within two steps. (A plain tanh stack saturates instead: tanh' is
    # exactly 0 there, its gradients vanish and stay finite, on some torch versions for good.)
    qtbot.keyClicks(lr, "1e30")
    qtbot.keyClick(lr, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: paused(worker, "residual"), timeout=15000)
    qtbot.waitUntil(lambda: "non-finite" in win.message_label.text(), timeout=5000)
    msg = win.message_label.text()
    assert "residual" in msg and "step" in msg and ("layer" in msg or "loss" in msg)
    assert "\n" not in msg
    nan_ev = [e for e in worker.recording.event_objects() if e.kind == "nonfinite"][0]
    assert f"step {nan_ev.step}" in msg
    win.tabs.setCurrentWidget(win.views[2])
    qtbot.waitUntil(lambda: any("non-finite" in t for t in loss_markers(win)), timeout=5000)
    # the plain run goes on and the GUI keeps drawing
    s0 = worker.recording.last_step("plain")
    frames = win.frame_count
    # both conditions waited for: ten tiny steps can take less than one 33 ms frame interval
    qtbot.waitUntil(lambda: worker.recording.last_step("plain") > s0 + 10 and win.frame_count > frames, timeout=10000)
    assert worker.recording.last_step("residual") < worker.recording.last_step("plain")
    win.refresh_all()
    assert "non-finite" in win.readout.labels["residual"].text()


def test_a_model_that_raises_stops_with_one_line(live, qtbot, monkeypatch):
    from gradviz.core import training

    real = training.TrainingRun.train_step

    def flaky(self, step, x, y):
        if step >= 8 and self.name == "residual":
            raise RuntimeError("boom in forward\nsecond line")
        return real(self, step, x, y)

    monkeypatch.setattr(training.TrainingRun, "train_step", flaky)
    win, worker = live()
    qtbot.waitUntil(lambda: worker.status().state == "error", timeout=15000)
    qtbot.waitUntil(lambda: "boom" in win.message_label.text(), timeout=5000)
    msg = win.message_label.text()
    assert "residual" in msg and "RuntimeError" in msg and "\n" not in msg
    assert win.isVisible()
    frames = win.frame_count
    qtbot.wait(200)
    assert win.frame_count > frames  # still drawing
    qtbot.waitUntil(lambda: worker.done.is_set(), timeout=5000)


@pytest.mark.parametrize("kind", KINDS)
def test_preset_and_session_fields_start_a_new_session(live, qtbot, kind, monkeypatch):
    monkeypatch.setenv("GRADVIZ_WORKER", kind)  # the sessions the window starts itself
    win, worker = live(kind=kind)
    old_rec = worker.recording
    win.controls.depth.setValue(3)
    win.controls.depth.editingFinished.emit()
    assert win.session is not worker
    new = win.session
    assert type(new) is type(worker)
    assert new.cfg.model.depth == 3 and new.recording is not old_rec and win.recording is new.recording
    assert new.path != worker.path
    qtbot.waitUntil(lambda: worker.done.is_set(), timeout=5000)  # the old session finished
    qtbot.waitUntil(lambda: new.recording.last_step() >= 2, timeout=30000)
    assert len([n for n in new.recording.layers("plain") if n.endswith("linear")]) == 3
    assert open_run(worker.path).last_step() >= 3  # the old run file is complete
    # the preset picker starts the preset again, with its note
    win.controls.preset.setCurrentText("demo")
    win.controls.preset.activated.emit(win.controls.preset.currentIndex())
    assert win.session.cfg.model.depth == 30
    assert "Two copies" in win.note.text()


@pytest.mark.parametrize("kind", KINDS)
def test_closing_mid_training_is_quick_and_leaves_a_complete_file(live, qtbot, kind):
    win, worker = live(max_rate=None, kind=kind)
    qtbot.waitUntil(lambda: worker.recording.last_step() >= 20, timeout=30000)
    t0 = time.perf_counter()
    win.close()
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0
    assert worker.done.is_set()
    rec = open_run(worker.path)
    steps, loss = rec.metric("plain", "loss")
    live_steps, _ = worker.recording.metric("plain", "loss")
    np.testing.assert_array_equal(steps, live_steps)
    assert rec.events() == worker.recording.events()
    assert not (worker.path.parent / (worker.path.name + "-wal")).exists()  # closed, not just committed


def test_a_batchnorm_the_training_cannot_run_is_refused_in_one_line(qtbot, tmp_path, tiny):
    """BatchNorm in training mode refuses a batch of one: the model used to raise inside the
    training process at its first step, with torch's "Expected more than 1 value per channel". The
    session is refused before it starts: the window shows one line naming the run and the fix,
    keeps drawing, and makes no run file."""
    worker = ProcessWorker(tiny(**{"train.batch_size": 1, "model.norm": True}), path=tmp_path / "raises.gradviz").start()
    win = MainWindow(worker.recording, session=worker)
    qtbot.addWidget(win)
    win.show()
    try:
        qtbot.waitUntil(lambda: worker.status().state == "error", timeout=60000)
        err = win.readout.error_label
        qtbot.waitUntil(lambda: err.isVisible(), timeout=5000)
        msg = err.text()
        assert "plain: BatchNorm needs at least 2 examples per batch" in msg and "train.batch_size" in msg and "\n" not in msg
        assert "ValueError" not in msg  # gradviz's own message, said as the command line says it
        frames = win.frame_count
        qtbot.wait(200)
        assert win.isVisible() and win.frame_count > frames
        assert worker.done.wait(10)
        assert not (tmp_path / "raises.gradviz").exists()
    finally:
        win.shutdown()


def test_the_status_bar_elides_on_a_1024_projector(live, qtbot):
    """At 1024 x 768 in presentation mode the status bar cut both "H shows them again" and the run
    file's path mid-word at their right ends. The message now shows whole, the path is elided in
    the middle (its file name stays), both fit their labels, and text() and the tooltip keep the
    whole path."""
    win, worker = live()
    win.resize(1024, 768)
    win.set_presentation(True)
    qtbot.keyClick(win, Qt.Key.Key_H)
    qtbot.waitUntil(lambda: win.path_label.text().startswith("recording to "), timeout=5000)
    qtbot.wait(200)
    msg, path = win.message_label, win.path_label
    assert msg.text() == msg.shown_text() and "H shows them again" in msg.text()
    fm = path.fontMetrics()
    shown = path.shown_text()
    assert fm.horizontalAdvance(path.text()) > path.contentsRect().width()  # the case is not trivial
    assert "…" in shown and fm.horizontalAdvance(shown) <= path.contentsRect().width()
    assert shown.startswith("recording to") and shown.endswith(".gradviz")
    assert path.text() == f"recording to {worker.path}" and path.toolTip() == str(worker.path)


def test_h_hides_the_controls_for_the_charts_and_the_keys_still_work(live, qtbot):
    """On a 1280 x 720 projector in presentation mode the controls dock and the lecture note took
    over a quarter of the width. H hides both (the charts take the room), the status bar says how to
    get them back, the switches' keys keep working, and H brings back both."""
    win, worker = live()
    win.resize(1280, 720)
    win.set_presentation(True)
    qtbot.wait(100)
    depth = win.views[0]
    assert win.dock.isVisible() and win.note_dock.isVisible()  # the demo has a lecture note
    width0 = depth.width()
    qtbot.keyClick(win, Qt.Key.Key_H)
    assert not win.dock.isVisible() and not win.note_dock.isVisible()
    assert not win.controls_action.isChecked()
    qtbot.waitUntil(lambda: depth.width() > width0 + 200, timeout=3000)
    assert "H shows them" in win.message_label.text()
    qtbot.keyClick(win, Qt.Key.Key_R)  # residual on the selected (plain) run, with the dock hidden
    qtbot.waitUntil(lambda: switches(worker, "plain")["residual"] is True, timeout=5000)
    qtbot.keyClick(win, Qt.Key.Key_H)
    assert win.dock.isVisible() and win.note_dock.isVisible() and win.controls_action.isChecked()
    qtbot.waitUntil(lambda: win.controls.runs["plain"].residual.isChecked(), timeout=3000)  # it followed R
    assert "controls hidden" not in win.message_label.text()
    win.controls_action.trigger()  # the View menu does the same
    assert not win.dock.isVisible()
    qtbot.waitUntil(lambda: depth.width() > width0 + 200, timeout=3000)


def test_check_boxes_grow_with_presentation_text(live, qtbot):
    """The style draws a 13 px square whatever the font: beside projector text it was a speck. In
    presentation mode every check box (the run switches and the depth view's fixed axis) has a
    square about its text's height and keeps the text size of its neighbours; normal mode gives
    back the style's own."""
    from PySide6 import QtGui

    win, _ = live()

    def square(box) -> int:
        opt = QtWidgets.QStyleOptionButton()
        box.initStyleOption(opt)
        return box.style().subElementRect(QtWidgets.QStyle.SubElement.SE_CheckBoxIndicator, opt, box).height()

    boxes = [win.controls.runs["plain"].residual, win.controls.runs["residual"].norm, win.views[0].fix_box]
    normal = [square(b) for b in boxes]
    win.set_presentation(True)
    qtbot.wait(50)
    for b, before in zip(boxes, normal, strict=True):
        line = QtGui.QFontMetrics(b.font()).height()
        assert square(b) >= 0.8 * line > before, (b.text(), square(b), line, before)
    # the text keeps the size of the labels beside it (a style sheet stops a widget following the app font)
    assert win.views[0].fix_box.font().pointSizeF() == win.views[0].to_label.font().pointSizeF()
    label = win.controls.runs["plain"].findChildren(QtWidgets.QLabel)[0]
    assert win.controls.runs["plain"].residual.font().pointSizeF() == label.font().pointSizeF()
    win.set_presentation(False)
    qtbot.wait(50)
    assert [square(b) for b in boxes] == normal
    assert win.views[0].fix_box.font().pointSizeF() == win.views[0].to_label.font().pointSizeF()


def test_session_fields_show_only_what_the_model_is_built_from(qtbot):
    """The rgb preset's net has three fixed 3->3 blocks, yet the session box offered "depth
    (blocks) 30", width and activation, none of which it reads. Only the fields the model kind uses
    are shown; switching back to the demo shows them again."""
    from gradviz.config import load_preset
    from gradviz.gui.controls import ControlPanel

    panel = ControlPanel()
    qtbot.addWidget(panel)
    panel.show()
    form = panel.session_form
    fields = {"depth": panel.depth, "width": panel.width_, "activation": panel.activation}
    for preset, shown in (("rgb", set()), ("batchnorm-init", {"activation"}), ("demo", {"depth", "width", "activation"})):
        panel.set_config(load_preset(preset), {})
        for name, w in fields.items():
            assert form.isRowVisible(w) == (name in shown), (preset, name)
            assert w.isVisible() == (name in shown), (preset, name)
        assert form.isRowVisible(panel.optimizer) and form.isRowVisible(panel.lr)


def _window_on(qtbot, worker):
    """A shown MainWindow over a started `worker`, once it has trained five steps."""
    win = MainWindow(worker.recording, session=worker)
    qtbot.addWidget(win)
    win.show()
    assert worker.ready.wait(60)
    qtbot.waitUntil(lambda: worker.recording.last_step() >= 5, timeout=30000)
    return win


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_file_that_cannot_be_created_is_said_and_training_goes_on(qtbot, tmp_path, kind, tiny):
    """A run file in a folder that cannot exist (its parent is a file): the status bar read
    "recording to not recorded". It says the session is not recorded, the tooltip says why, and
    the session trains on in memory."""
    (tmp_path / "blocker").write_text("")
    cls = ProcessWorker if kind == "process" else Worker
    worker = cls(tiny(), path=tmp_path / "blocker" / "x.gradviz", max_rate=200.0).start()
    win = _window_on(qtbot, worker)
    try:
        qtbot.waitUntil(lambda: win.path_label.text() != "", timeout=5000)
        assert win.path_label.text() == "not recorded (the run file could not be written)"
        assert win.path_label.toolTip() == f"{tmp_path / 'blocker' / 'x.gradviz'}: cannot create run file ({tmp_path / 'blocker'} is a file, not a folder)"
        assert any(m.startswith("not recorded: ") for m in worker.status().messages)  # kept, not overwritten
        assert win.device_label.text() == "cpu"
    finally:
        win.shutdown()


def test_a_disk_that_fills_up_mid_lecture_stops_the_recording_not_the_training(qtbot, tmp_path, tiny):
    """The run file stops taking writes mid-session (a full disk; a read-only database stands in):
    the training stopped with "run 'residual' failed ... cannot write run file". It goes on,
    unrecorded; the status bar says so and why, and the file keeps the steps written before."""
    path = tmp_path / "live.gradviz"
    worker = Worker(tiny(), path=path, max_rate=200.0).start()
    win = _window_on(qtbot, worker)
    try:
        worker.writer.flush()
        kept = len(open_run(path).metric("plain", "loss")[0])
        worker.writer._db.execute("PRAGMA query_only=ON")  # every write from here fails
        first = []  # the first status snapshot that says the recording stopped also says why, in its messages
        qtbot.waitUntil(lambda: first.append(worker.status()) or bool(first[-1].not_recorded), timeout=10000)
        assert any(m.startswith("recording stopped at step ") for m in first[-1].messages), first[-1].messages
        at = worker.recording.last_step()
        qtbot.waitUntil(lambda: worker.recording.last_step() >= at + 20, timeout=30000)  # still training
        qtbot.waitUntil(lambda: win.path_label.text() == "not recorded (the run file could not be written)", timeout=5000)
        assert "cannot write run file" in win.path_label.toolTip()
        assert worker.status().state != "error" and worker.status().error is None
        assert any(m.startswith("recording stopped at step ") and m.endswith("training goes on") for m in worker.status().messages), worker.status().messages
        assert len(open_run(path).metric("plain", "loss")[0]) >= kept > 0
    finally:
        win.shutdown()


def pet_folder(root, per_class: int):
    """An image folder of two classes (cats red, dogs blue), `per_class` small PNGs each."""
    pytest.importorskip("torchvision")
    from PIL import Image

    for cls, colour in (("cats", (230, 40, 20)), ("dogs", (20, 40, 230))):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (12, 12), colour).save(root / cls / f"{i}.png")
    return root


def test_notes_that_arrive_together_are_all_reachable(live, qtbot, tmp_path, tiny):
    """An image folder with an empty subfolder and a broken image starts with two notes at once;
    the status bar showed only the last. It now counts them in front (its right end elides) and
    its tooltip holds each whole."""
    root = pet_folder(tmp_path / "pets", 10)
    (root / "cats" / "3.png").write_bytes(b"GIF89a cut")
    (root / "unsorted").mkdir()
    win, _worker = live(tiny(**{"data.name": "imagefolder", "data.root": str(root), "data.resize": 4}))
    label = win.message_label
    qtbot.waitUntil(lambda: "hover for all" in label.text(), timeout=10000)
    tips = label.toolTip().split("\n")
    assert tips[0] == f"image folder: left out 1 folder(s) with no images in them: unsorted (in '{root}')"
    assert tips[1].startswith(f"image folder: left out 1 of 20 images that cannot be read (first: '{root / 'cats' / '3.png'}'")
    assert label.text() == f"(2 notes, hover for all) {tips[1]}"
    assert label.shown_text().startswith("(2 notes, hover for all) image folder")


def test_the_window_notes_a_runs_folder_grown_large(live, qtbot, tmp_path, monkeypatch):
    from gradviz.gui.launch import _note_runs_folder
    from gradviz.paths import runs_dir, runs_folder_note

    win, _worker = live()
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    _note_runs_folder(win, runs_folder_note())  # nothing to say: the folder does not exist
    qtbot.wait(100)
    assert "runs folder" not in win.message_label.text()
    runs_dir().mkdir(parents=True)
    with open(runs_dir() / "old.gradviz", "wb") as fh:
        fh.truncate(7 * 10**9)  # sparse
    _note_runs_folder(win, runs_folder_note())
    qtbot.waitUntil(lambda: "runs folder holds 7.0 GB in 1 recording" in win.message_label.toolTip() + win.message_label.text(), timeout=5000)


def test_a_slow_start_says_how_far_the_image_folder_has_been_read(qtbot, tmp_path, tiny, monkeypatch):
    """50 000 photos take a minute to decode; the status bar said only 'starting…' all that time.
    It now counts the images read, then shows the device once the session runs."""
    root = pet_folder(tmp_path / "pets", 40)
    from gradviz.core.data import vision

    decode = vision._decode

    def slow(*args):  # a large photo's decode, so the count can be watched
        time.sleep(0.04)
        return decode(*args)

    monkeypatch.setattr(vision, "_decode", slow)
    worker = Worker(tiny(**{"data.name": "imagefolder", "data.root": str(root), "data.resize": 4}), path=tmp_path / "x.gradviz").start()
    win = MainWindow(worker.recording, session=worker)
    qtbot.addWidget(win)
    win.show()
    try:
        seen: set[str] = set()

        def counted() -> bool:
            seen.add(win.device_label.text())
            return any(t.startswith("starting… reading images: ") and t.endswith(" of 80") and not t.endswith(" 80 of 80") for t in seen)

        qtbot.waitUntil(counted, timeout=20000)
        qtbot.waitUntil(lambda: win.device_label.text() == "cpu", timeout=30000)
        done = [int(t.split(": ")[1].split(" of ")[0]) for t in seen if "reading images" in t]
        assert 0 < min(done) < 80
    finally:
        win.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_a_session_that_cannot_start_says_why_in_the_large_text(qtbot, tmp_path, tiny, kind):
    """MNIST without a data folder: the reason is in the readout's large text (the status bar cut
    it off mid-word on a projector), the status bar says 'not started' rather than 'starting…' and
    'recording to …', and the empty depth profile shows no stray legend box."""
    cls = ProcessWorker if kind == "process" else Worker
    worker = cls(tiny(**{"data.name": "mnist", "data.root": str(tmp_path / "absent")}), path=tmp_path / "x.gradviz").start()
    win = MainWindow(worker.recording, session=worker)
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.show()
    try:
        qtbot.waitUntil(lambda: worker.status().state == "error", timeout=60000)
        err = win.readout.error_label
        qtbot.waitUntil(lambda: err.isVisible(), timeout=5000)
        assert "MNIST" in err.text() and str(tmp_path / "absent") in err.text() and "\n" not in err.text()
        assert err.height() >= 2 * err.fontMetrics().height()  # wrapped onto lines, not cut
        assert win.device_label.text() == "not started" and win.path_label.text() == ""
        assert not win.depth.plot.legend.isVisible()
        assert not (tmp_path / "x.gradviz").exists()
        # a session that starts clears the reason
        win.start_session(tiny())
        qtbot.waitUntil(lambda: not err.isVisible() and win.recording.last_step() >= 1, timeout=60000)
        qtbot.waitUntil(lambda: win.depth.plot.legend.isVisible(), timeout=5000)  # at the next frame
    finally:
        win.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_a_session_too_big_for_the_machine_is_refused_and_the_window_stays(qtbot, tmp_path, tiny, kind, monkeypatch):
    """The session box's largest width on convolutions (148 G parameters): the window said
    nothing and vanished (the out-of-memory killer); now the large text says how much is needed and
    what to lower, and a session that fits starts from the same window."""
    monkeypatch.setenv("GRADVIZ_WORKER", kind)
    cls = ProcessWorker if kind == "process" else Worker
    small = tiny(**{"model.kind": "conv", "data.name": "shapes", "model.width": 4})
    worker = cls(small, path=tmp_path / "x.gradviz").start()
    win = MainWindow(worker.recording, session=worker)
    qtbot.addWidget(win)
    win.show()
    try:
        qtbot.waitUntil(lambda: worker.recording.last_step() >= 1, timeout=60000)
        win.controls.width_.setValue(4096)  # 6 blocks of 4096-channel convolutions: 148 G parameters
        win.controls.width_.editingFinished.emit()
        big = win.session
        assert big is not worker and big.cfg.model.width == 4096
        qtbot.waitUntil(lambda: big.status().state == "error", timeout=60000)
        err = win.readout.error_label
        qtbot.waitUntil(lambda: err.isVisible(), timeout=5000)
        assert "training needs at least" in err.text() and "lower model.depth or model.width" in err.text()
        assert "\n" not in err.text() and win.isVisible()
        frames = win.frame_count
        qtbot.waitUntil(lambda: win.frame_count > frames, timeout=5000)  # still drawing
        win.controls.width_.setValue(4)
        win.controls.width_.editingFinished.emit()
        qtbot.waitUntil(lambda: win.recording.last_step() >= 1 and not err.isVisible(), timeout=60000)
    finally:
        win.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_switches_the_model_lacks_are_greyed_out_and_r_says_so(live, qtbot, kind, tiny):
    """LeNet's blocks change width, so it has no skip path: its residual box is greyed out with a
    tooltip, R names the reason instead of recording a toggle that changes nothing, and the switches
    it has (BatchNorm) still work."""
    win, worker = live(tiny(**{"model.kind": "lenet", "data.name": "shapes"}), kind=kind)
    c = win.controls
    rc = c.runs["plain"]
    qtbot.waitUntil(lambda: not rc.residual.isEnabled(), timeout=5000)
    assert "no skip path" in rc.residual.toolTip()
    assert rc.norm.isEnabled() and rc.dropout.isEnabled()
    from PySide6.QtGui import QPalette

    pal = rc.residual.palette()  # greyed: the palette's disabled text is not the live text colour
    role = QPalette.ColorRole.WindowText
    assert pal.color(QPalette.ColorGroup.Disabled, role) != pal.color(QPalette.ColorGroup.Active, role)
    qtbot.keyClick(win, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: "no skip path" in win.message_label.text(), timeout=5000)
    assert "plain" in win.message_label.text() and not rc.residual.isChecked()
    qtbot.keyClick(win, Qt.Key.Key_B)
    qtbot.waitUntil(lambda: switches(worker, "plain")["norm"] is True, timeout=5000)
    qtbot.wait(300)
    toggles = [e.detail for e in worker.recording.event_objects() if e.kind == "toggle"]
    assert toggles == ["norm on"]


def test_the_launch_machine_flags_hold_for_every_preset_picked_in_the_window(qtbot, tmp_path):
    """`gradviz --data-root DIR --device cpu`: the window was told to "pass --data-root DIR" for
    MNIST, but the launcher did not take that flag, and a preset picked from the list lost it. The
    launcher takes the `run` flags, and the machine's (data folder, download, device) carry over."""
    from gradviz.cli import _parse, build_config, machine_overrides
    from gradviz.gui.controls import ControlPanel

    args = _parse(["--preset", "demo", "--data-root", str(tmp_path), "--device", "cpu", "--seed", "7"])
    assert args.command is None
    cfg = build_config(args)
    assert cfg.data.root == str(tmp_path) and cfg.train.seed == 7 and all(r.train.device == "cpu" for r in cfg.runs)
    carried = machine_overrides(args)
    assert carried == {"data.root": str(tmp_path), "train.device": "cpu"}  # not the seed: that is the experiment's

    panel = ControlPanel()
    qtbot.addWidget(panel)
    panel.carried = carried
    with qtbot.waitSignal(panel.new_session, timeout=2000) as got:
        panel.preset.setCurrentText("resnet18-mnist")
        panel.preset.activated.emit(panel.preset.currentIndex())
    picked = got.args[0]
    assert picked.name == "resnet18-mnist" and picked.data.name == "mnist"
    assert picked.data.root == str(tmp_path) and all(r.data.root == str(tmp_path) and r.train.device == "cpu" for r in picked.runs)


def test_the_data_folder_is_chosen_in_the_window(qtbot, tmp_path, tiny):
    """A preset on MNIST without a folder stopped with "pass --data-root DIR", a flag of a command
    line already gone. The session panel has a data folder field for the data sets that need one:
    the error says so, and typing the folder starts the session on it (presets picked later keep it)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
    from test_vision_presets import write_mnist

    cfg = tiny(**{"data.name": "mnist", "model.depth": 2})
    worker = Worker(cfg, path=tmp_path / "none.gradviz", max_rate=200.0).start()
    assert worker.done.wait(60)
    assert "needs a folder" in worker.status().error and "Session: data folder" in worker.status().error
    win = MainWindow(worker.recording, session=worker)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    panel = win.controls
    assert panel.session_form.isRowVisible(panel.data_row) and panel.data_root.text() == ""
    root = write_mnist(tmp_path / "data", n_train=64, n_test=16)
    panel.data_root.setText(str(root))
    panel.data_root.editingFinished.emit()
    new = win.session
    assert new is not worker and new.cfg.data.root == str(root)
    assert all(r.data.root == str(root) for r in new.cfg.runs)
    qtbot.waitUntil(lambda: new.recording.last_step() >= 2, timeout=30000)
    assert panel.carried.get("data.root") == str(root)
    # a synthetic preset has no folder to ask for
    panel.preset.setCurrentText("demo")
    panel.preset.activated.emit(panel.preset.currentIndex())
    qtbot.waitUntil(lambda: win.session.cfg.name == "demo", timeout=5000)
    assert not panel.session_form.isRowVisible(panel.data_row)
    win.shutdown()


def test_the_wheel_scrolls_the_panel_past_its_boxes(qtbot):
    """Scrolling down the control panel with the wheel switched the preset under the cursor (the
    demo became weight-decay, a new session) or changed depth and dropout. A box it is not editing
    passes the wheel to the panel's scroll bar; a box with focus still takes it."""
    from PySide6 import QtGui

    from gradviz.config import load_preset
    from gradviz.gui.controls import ControlPanel

    panel = ControlPanel()
    area = QtWidgets.QScrollArea()
    area.setWidget(panel)
    area.setWidgetResizable(True)
    qtbot.addWidget(area)
    area.resize(320, 300)
    panel.set_config(load_preset("demo"), {"plain": "#d55e00", "residual": "#0072b2"})
    area.show()
    qtbot.waitExposed(area)
    started = []
    panel.new_session.connect(started.append)

    def wheel(widget, notches: int = -3) -> None:
        centre = QtCore.QPointF(widget.width() / 2, widget.height() / 2)
        ev = QtGui.QWheelEvent(centre, widget.mapToGlobal(centre), QtCore.QPoint(0, 0), QtCore.QPoint(0, 120 * notches),
                               Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QtWidgets.QApplication.sendEvent(widget, ev)

    bar = area.verticalScrollBar()
    assert bar.maximum() > 0
    before = (panel.preset.currentText(), panel.depth.value(), panel.runs["plain"].dropout.value(), bar.value())
    for box in (panel.preset, panel.depth, panel.runs["plain"].dropout, panel.optimizer):
        wheel(box)
    assert (panel.preset.currentText(), panel.depth.value(), panel.runs["plain"].dropout.value()) == before[:3]
    assert not started and bar.value() > before[3]  # the panel scrolled instead
    panel.depth.setFocus()
    qtbot.waitUntil(panel.depth.hasFocus, timeout=2000)
    wheel(panel.depth, notches=1)
    assert panel.depth.value() != before[1]  # a box being edited takes the wheel


def test_a_long_evaluation_says_so_in_the_status_bar(qtbot, tmp_path, tiny, monkeypatch):
    """An evaluation that takes seconds (a big model on CPU) froze the step counter with no word
    of why. The status bar says what the session is doing and how far it has got, and goes back
    to the bare step count when it is done."""
    from gradviz.core import training
    from gradviz.core.data.synthetic import DataBundle

    monkeypatch.setattr(training, "EVAL_TELL_AFTER", 0.0)
    own = DataBundle.eval_batches

    def slow(self, batch_size=1024):
        for batch in own(self, batch_size):
            time.sleep(0.25)
            yield batch

    monkeypatch.setattr(DataBundle, "eval_batches", slow)
    worker = Worker(tiny(**{"data.n_test": 256, "train.batch_size": 8, "train.eval_every": 40}), path=tmp_path / "e.gradviz").start()
    win = MainWindow(worker.recording, session=worker)
    qtbot.addWidget(win)
    win.show()
    try:
        seen: list[str] = []
        qtbot.waitUntil(lambda: seen.append(win.step_label.text()) or "evaluating" in seen[-1], timeout=30000)
        text = seen[-1]
        assert text.startswith("step 0  evaluating ") and text.endswith(" of 256 examples"), text
        qtbot.waitUntil(lambda: worker.recording.last_step() >= 3, timeout=30000)  # past it: training again
        qtbot.waitUntil(lambda: win.step_label.text().startswith("step ") and "evaluating" not in win.step_label.text(), timeout=5000)
        assert len(worker.recording.metric("plain", "eval_loss")[0]) >= 1
    finally:
        win.shutdown()
