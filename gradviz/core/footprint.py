"""Whether the runs' models fit in memory, said before any weight is allocated.

Asking for more than the machine holds (depth 200 × width 4096 is 3.4 G parameters per run) did
not fail cleanly: Linux hands out the pages lazily and its out-of-memory killer then ends the
whole process, the lecturer's window with it, without a word. So the models are first built on
torch's `meta` device (shapes only, a few ms), and their weights, gradients and optimiser state are
weighed against the memory free on the device. It is a lower bound (activations come on top), so a
refusal is certain to be right.
"""

from __future__ import annotations

import dataclasses
import os

import torch

# tensors of a parameter's size per parameter: the weight, its gradient, the copy an update step
# keeps for ‖Δw‖, and the optimiser's own state
_STATE = {"sgd": 0, "momentum": 1, "rmsprop": 1, "adam": 2}
_PER_PARAMETER = 3


def parameter_count(model_cfg, input_shape: tuple[int, ...], n_outputs: int) -> int | None:
    """The model's parameter count from a shapes-only build; None when it cannot be built so (the
    real build then says why)."""
    from .models import build_model

    try:
        with torch.device("meta"):
            model = build_model(model_cfg, input_shape, n_outputs, seed=0)
    except Exception:  # noqa: BLE001 - the real build reports the problem
        return None
    return sum(p.numel() for p in model.parameters())


def free_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on `device`: MemAvailable on a Linux host, the free memory of
    a CUDA device; None where it cannot be told."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:  # noqa: BLE001
            return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _scaled(n: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}{unit}"
    return f"{n:.0f} {unit}"


def check_fits(runs: list[tuple], device: torch.device, free: int | None = None, weights_only: bool = False) -> None:
    """Raise ValueError (one line) if the runs' parameters alone need more memory than is free.

    `runs`: (run config, input shape, outputs) per run; twins that differ only by their switches
    are built once. Training holds every run's weights, gradients and optimiser state at once;
    `weights_only` (`gradviz summary`, one model built at a time) asks only that the largest
    model's weights fit."""
    counts: dict[tuple, int | None] = {}
    sizes = []  # (bytes, parameters) per run
    for rc, shape, outputs in runs:
        m = rc.model
        key = (repr(dataclasses.replace(m, residual=False, norm=False, dropout=0.0)), tuple(shape), outputs)
        if key not in counts:
            counts[key] = parameter_count(m, tuple(shape), outputs)
        n = counts[key]
        if n is None:
            return
        per = 1 if weights_only else _PER_PARAMETER + _STATE.get(rc.train.optimizer, 2)
        sizes.append((n * (8 if m.dtype == "float64" else 4) * per, n))
    need, params = max(sizes) if weights_only else (sum(b for b, _ in sizes), sum(n for _, n in sizes))
    free = free_bytes(device) if free is None else free
    if free is None or need <= free:
        return
    where = "on the GPU" if device.type == "cuda" else "here"
    sized = {rc.model.kind for rc, _, _ in runs} <= {"mlp", "conv"}  # the kinds whose size is set by depth and width
    hint = "lower model.depth or model.width" if sized else "choose a smaller model"
    if weights_only:
        what = f"the model needs at least {_scaled(need, 'B')} for its weights ({_scaled(params, '')} parameters)"
    else:
        what = (
            f"the models need at least {_scaled(need, 'B')} for their weights, gradients and optimiser state "
            f"({len(runs)} run{'s' if len(runs) != 1 else ''}, {_scaled(params, '')} parameters in all)"
        )
    raise ValueError(f"{what}, more than the {_scaled(free, 'B')} free {where}; {hint}")
