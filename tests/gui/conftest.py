"""GUI test set-up: an offscreen Qt, a throwaway GRADVIZ_HOME and QSettings in a temp folder, and a
small recorded experiment every view test draws from."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GRADVIZ_HOME", tempfile.mkdtemp(prefix="gradviz-gui-home-"))

import pytest  # noqa: E402
from PySide6 import QtCore  # noqa: E402

_SETTINGS_DIR = tempfile.mkdtemp(prefix="gradviz-gui-settings-")
QtCore.QSettings.setDefaultFormat(QtCore.QSettings.Format.IniFormat)
QtCore.QSettings.setPath(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, _SETTINGS_DIR)
QtCore.QCoreApplication.setOrganizationName("gradviz-tests")
QtCore.QCoreApplication.setApplicationName("gradviz-tests")


def tiny_config(**overrides):
    """The demo twin, shrunk so a step takes a millisecond or two."""
    from gradviz.config import load_preset

    base = {
        "model.depth": 6,
        "model.width": 8,
        "data.n_train": 256,
        "data.n_test": 64,
        "train.batch_size": 32,
        "train.hist_every": 5,
        "train.eval_every": 5,
    }
    base.update(overrides)
    return load_preset("demo").with_overrides(base)


@pytest.fixture(autouse=True)
def _collect_on_the_gui_thread(qapp):
    """As in the app (`gc_guard`): no garbage collection in training or receiver threads, which
    deadlocked the suite once; what a test leaves in cycles is collected here, on the GUI thread."""
    import gc

    from gradviz.gui import gc_guard

    gc_guard.install()
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def _clean_settings():
    """Every test starts from empty settings in the temp folder (never the user's)."""
    s = QtCore.QSettings()
    assert _SETTINGS_DIR in s.fileName(), s.fileName()
    s.clear()
    s.sync()
    yield


@pytest.fixture(scope="session")
def recorded(tmp_path_factory):
    """(live Recording, run file path): 60 steps of a tiny twin with toggles, a pause and a restart."""
    from gradviz.core import commands as C
    from gradviz.core.experiment import Experiment
    from gradviz.core.recording import Recording
    from gradviz.core.runfile import RunFileWriter

    path = tmp_path_factory.mktemp("rec") / "tiny.gradviz"
    rec = Recording()
    exp = Experiment(tiny_config(), rec)
    writer = RunFileWriter(path, rec)
    exp.run(steps=20, threads=1)
    exp.submit(C.SetResidual("plain", True))
    exp.run(steps=10, threads=1)
    exp.submit(C.SetNorm("residual", True))
    exp.submit(C.Pause())
    exp.submit(C.Step(2))
    exp.run(steps=2, threads=1)
    exp.submit(C.Resume())
    exp.run(steps=10, threads=1)
    exp.submit(C.Restart())
    exp.run(steps=18, threads=1)
    writer.close()
    return rec, path


@pytest.fixture()
def tiny():
    """`tiny(**overrides)` -> the shrunk demo config."""
    return tiny_config
