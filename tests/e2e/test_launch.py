"""End to end: the real `python -m gradviz` in a real X server (Xvfb), checked on its framebuffer.

Xvfb dumps its screen to a file (`-fbdir`, XWD format) that we decode with numpy: the check is on
what X shows, not on what the app says it drew.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not on PATH (apt-get install xvfb)"),
]

W, H = 1600, 1000
# Okabe-Ito run colours of the light theme: plain (vermillion) and residual (blue)
PLAIN, RESIDUAL = (0xD5, 0x5E, 0x00), (0x00, 0x72, 0xB2)


def read_xwd(path: Path) -> np.ndarray:
    """An XWD screen dump (TrueColor, 32 bits per pixel) as an (H, W, 3) uint8 RGB array."""
    raw = path.read_bytes()
    head = np.frombuffer(raw[:100], ">u4")
    header_size, _ver, _fmt, depth, width, height = (int(x) for x in head[:6])
    byte_order, bpp, bytes_per_line = int(head[7]), int(head[11]), int(head[12])
    ncolors = int(head[19])
    assert bpp == 32 and depth == 24, (bpp, depth)
    start = header_size + 12 * ncolors
    px = np.frombuffer(raw[start : start + bytes_per_line * height], np.uint8).reshape(height, bytes_per_line)
    px = px[:, : width * 4].reshape(height, width, 4)
    if byte_order == 0:  # LSBFirst: B, G, R, X
        return px[:, :, [2, 1, 0]].copy()
    return px[:, :, [1, 2, 3]].copy()


def free_display() -> int:
    for n in range(90, 200):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return n
    raise RuntimeError("no free X display number")


@pytest.fixture()
def xvfb(tmp_path):
    fb = tmp_path / "fb"
    fb.mkdir()
    n = free_display()
    proc = subprocess.Popen(
        ["Xvfb", f":{n}", "-screen", "0", f"{W}x{H}x24", "-fbdir", str(fb), "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail("Xvfb did not start")
        time.sleep(0.05)
    yield f":{n}", fb / "Xvfb_screen0"
    proc.terminate()
    proc.wait(5)


def exited(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def count_color(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> int:
    return int((np.abs(img.astype(int) - np.array(rgb)).max(axis=2) <= tol).sum())


def test_gradviz_opens_trains_and_closes_cleanly(xvfb, tmp_path):
    display, screen = xvfb
    home = tmp_path / "home"
    env = dict(os.environ)
    env.update(
        DISPLAY=display,
        QT_QPA_PLATFORM="xcb",
        GRADVIZ_HOME=str(home),
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # QSettings go here, not to the user's
        HOME=str(tmp_path),
    )
    env.pop("WAYLAND_DISPLAY", None)
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gradviz"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        import gradviz

        runs = home / "runs"
        rec = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            files = sorted(runs.glob("demo-*.gradviz")) if runs.exists() else []
            if files:
                try:
                    rec = gradviz.open_run(files[-1])
                    if len(rec.metric("plain", "loss")[0]) >= 30:
                        break
                except Exception:  # noqa: BLE001 - the file may be mid-write; try again
                    pass
            time.sleep(0.5)
        assert rec is not None and len(rec.metric("plain", "loss")[0]) >= 30, log.read_text()[-3000:]
        time.sleep(1.5)  # a few frames at 30 Hz after the data arrived

        # the window is on the X server, titled gradviz
        tree = subprocess.run(["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True, timeout=10)
        if tree.returncode == 0:
            assert '"gradviz' in tree.stdout, tree.stdout[:2000]

        img = read_xwd(screen)
        shutil.copy(screen, tmp_path / "screen.xwd")
        assert img.shape == (H, W, 3)
        assert img.std() > 20, "the screen is blank"
        assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 50
        # both runs' curves are drawn in their colours (the depth profile and the readout)
        assert count_color(img, PLAIN) > 200, count_color(img, PLAIN)
        assert count_color(img, RESIDUAL) > 200, count_color(img, RESIDUAL)
        if os.environ.get("GRADVIZ_E2E_SCREENSHOT"):
            from PySide6 import QtGui

            h, w, _ = img.shape
            qimg = QtGui.QImage(img.tobytes(), w, h, 3 * w, QtGui.QImage.Format.Format_RGB888)
            qimg.save(os.environ["GRADVIZ_E2E_SCREENSHOT"])

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5)
        assert time.monotonic() - t0 < 3.0
        assert code == 0, log.read_text()[-3000:]
        # training ran in a child process: it finished the run file and left no process behind
        app_log = (home / "gradviz.log").read_text()
        pid = int(re.search(r"training process up \(pid (\d+)\)", app_log).group(1))
        deadline = time.monotonic() + 5
        while not exited(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert exited(pid), "the training process outlived the window"
        final = sorted(runs.glob("demo-*.gradviz"))[-1]
        assert not Path(str(final) + "-wal").exists(), "the run file was left mid-write"
        assert gradviz.open_run(final).last_step() >= rec.last_step()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    # the run file is complete and closed: no WAL left, every step readable
    path = sorted((home / "runs").glob("demo-*.gradviz"))[-1]
    assert not Path(str(path) + "-wal").exists()
    final = gradviz.open_run(path)
    steps, loss = final.metric("plain", "loss")
    assert len(steps) >= 30 and np.isfinite(loss).all()
    assert final.last_step("residual") == final.last_step("plain")
