"""Device offers without importing torch (the GUI process never loads it)."""

import subprocess
import sys

import torch

from gradviz import devices


def test_uses_torch_when_loaded(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.cuda_available() is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.cuda_available() is False


def test_without_torch_it_looks_for_the_driver_and_never_imports_torch():
    code = (
        "import os, sys\n"
        "from gradviz import devices\n"
        "real = os.path.exists\n"
        "os.path.exists = lambda p: p == '/dev/nvidiactl' or real(p)\n"
        "a = devices.cuda_available()\n"
        "os.path.exists = lambda p: False\n"
        "b = devices.cuda_available()\n"
        "print(a, b, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False"]
