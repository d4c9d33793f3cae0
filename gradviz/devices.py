"""Which devices to offer, without importing torch (the GUI process never does; ~1.5 s)."""

from __future__ import annotations

import os
import sys


def cuda_available() -> bool:
    """True when an NVIDIA driver is present. torch's own answer where torch is already loaded;
    otherwise the driver's device node. Picking cuda where torch then cannot use it gives the
    training process's one-line error, never a crash."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return bool(torch.cuda.is_available())
        except Exception:  # noqa: BLE001 - a broken CUDA set-up is "no CUDA"
            return False
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")
