"""The training process: what the GUI sees is what the run file holds, commands reach the child's
model, failures arrive as one line, and no process or file is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gradviz.core import commands as C
from gradviz.core.runfile import open_run
from gradviz.gui.process_worker import ProcessWorker


def wait_for(cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_mirrors_the_run_file_and_applies_commands(tmp_path, tiny):
    path = tmp_path / "p.gradviz"
    w = ProcessWorker(tiny(), path=path, max_rate=300).start()
    try:
        assert w.ready.wait(60)
        wait_for(lambda: w.recording.last_step() >= 10)
        assert w.status().switches["plain"]["residual"] is False
        w.submit(C.SetResidual("plain", True))
        w.submit(C.SetDropout("residual", 0.4))
        wait_for(lambda: w.status().switches["plain"]["residual"] is True, 10)
        wait_for(lambda: w.status().switches["residual"]["dropout"] == pytest.approx(0.4), 10)
        w.submit(C.Pause())
        wait_for(lambda: w.status().paused, 10)
        time.sleep(0.3)
        frozen = w.recording.last_step()
        time.sleep(0.3)
        assert w.recording.last_step() == frozen  # paused in the child, nothing more arrives
        w.submit(C.Step(2))
        wait_for(lambda: w.recording.last_step() == frozen + 2, 10)
        w.submit(C.Resume())
        wait_for(lambda: w.recording.last_step() >= frozen + 10, 10)
    finally:
        assert w.stop(5)
    assert not w.alive
    rec = open_run(path)
    assert rec.runs == w.recording.runs == ["plain", "residual"]
    assert rec.events() == w.recording.events()
    kinds = [(run, detail) for _, run, kind, detail in rec.events() if kind == "toggle"]
    assert ("plain", "residual on") in kinds and ("residual", "dropout p=0.4") in kinds
    for run in rec.runs:
        assert rec.layers(run) == w.recording.layers(run)
        for name in ("loss", "grad_norm", "act_grad_norm", "eval_loss", "act_std"):
            s1, v1 = rec.metric(run, name)
            s2, v2 = w.recording.metric(run, name)
            assert len(s1) > 0
            np.testing.assert_array_equal(s1, s2)
            np.testing.assert_allclose(v1, v2, rtol=1e-6, equal_nan=True)
        st1, e1, c1 = rec.histograms(run, "weight", 0)
        st2, e2, c2 = w.recording.histograms(run, "weight", 0)
        assert len(st1) > 0
        np.testing.assert_array_equal(st1, st2)
        np.testing.assert_array_equal(e1, e2)
        np.testing.assert_array_equal(c1, c2)
    assert "layer_table" in w.recording.meta and w.recording.source == str(path)


def test_a_session_that_cannot_start_says_so_in_one_line(tmp_path, tiny):
    cfg = tiny(**{"data.name": "mnist", "data.root": str(tmp_path / "no-such-folder")})
    w = ProcessWorker(cfg, path=tmp_path / "bad.gradviz").start()
    assert w.done.wait(60)
    s = w.status()
    assert s.state == "error" and "no-such-folder" in s.error and "\n" not in s.error


def test_a_killed_training_process_is_reported_and_keeps_what_arrived(tmp_path, tiny):
    w = ProcessWorker(tiny(), path=tmp_path / "k.gradviz", max_rate=200).start()
    wait_for(lambda: w.recording.last_step() >= 5)
    time.sleep(1.0)  # past the run file's 0.5 s commit interval
    os.kill(w.process.pid, signal.SIGKILL)
    assert w.done.wait(10)
    s = w.status()
    assert s.state == "error" and "ended unexpectedly" in s.error
    assert w.recording.last_step() >= 5  # nothing already shown is lost
    assert open_run(tmp_path / "k.gradviz").last_step() >= 0  # the file keeps its last commit


def test_the_gui_process_never_imports_torch_and_an_orphan_closes_its_file(tmp_path):
    """The parent's window must not wait for torch; if the parent dies, the child finishes the file."""
    path = tmp_path / "orphan.gradviz"
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        from gradviz.config import load_preset
        from gradviz.gui.process_worker import ProcessWorker

        if __name__ == "__main__":
            cfg = load_preset("demo").with_overrides({{"model.depth": 4, "model.width": 8}})
            w = ProcessWorker(cfg, path={str(path)!r}).start()
            deadline = time.monotonic() + 60
            while w.recording.last_step() < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            print("steps", w.recording.last_step(), "torch", "torch" in sys.modules, "pid", w.process.pid, flush=True)
            os._exit(0)  # no stop(): the child must notice and close the run file itself
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert int(words[1]) >= 5 and words[3] == "False"
    pid = int(words[5])
    wait_for(lambda: not _alive(pid), 15)
    assert not (tmp_path / "orphan.gradviz-wal").exists()
    rec = open_run(path)
    assert rec.last_step() >= 5 and rec.runs == ["plain", "residual"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_the_window_trains_in_a_process_unless_told_otherwise(monkeypatch, tiny, tmp_path):
    from gradviz.gui.sessions import make_worker
    from gradviz.gui.worker import Worker

    monkeypatch.delenv("GRADVIZ_WORKER", raising=False)
    assert type(make_worker(tiny(), path=tmp_path / "a.gradviz")) is ProcessWorker
    monkeypatch.setenv("GRADVIZ_WORKER", "thread")
    assert type(make_worker(tiny(), path=tmp_path / "b.gradviz")) is Worker
