"""Whether a session fits in memory, said before anything big is allocated.

Asking for more than the machine holds (depth 200 × width 4096 is 3.4 G parameters a run; a full
batch of a million examples through 4096-wide layers is 16 GB a layer) did not fail cleanly: Linux
hands out pages lazily and its out-of-memory killer then ends the whole process, the lecturer's
window with it, without a word. So before the data are drawn and the models built, each model is
built on torch's `meta` device (shapes only, a few ms) and every run's weights, gradients, update
copy and optimiser state, with what drawing the synthetic data sets takes, are weighed against the
memory free (the data against the host's, the rest against the device's); once the models exist, one batch's activations are weighed against what is left
(the runs step one after another). Each part is a lower bound; a session may count on 90 % of
the free memory.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, NamedTuple

import torch

# tensors of a parameter's size per parameter: the weight, its gradient, the copy an update step
# keeps for ‖Δw‖, and the optimiser's own state
_STATE = {"sgd": 0, "momentum": 1, "rmsprop": 1, "adam": 2}
_PER_PARAMETER = 3
_SIZED_KINDS = {"mlp", "conv"}  # the kinds whose size depth and width set
# bytes per input value a synthetic set takes while it is drawn (float64 arithmetic, index and
# mask tensors), a little under what was measured (peak RSS over the float32 inputs: spiral 6.9x,
# shapes 10x): 1 M shapes images hold 3 GB but took 31 GB to draw
_DRAW_BYTES = {"spiral": 24, "shapes": 36, "rgb": 16, "linear": 16}
# bytes per value a data set read from disk keeps: images are held as uint8 and scaled batch by
# batch (decoding or resizing a chunk at a time takes little besides)
_HELD_BYTES = {"imagefolder": 1, "mnist": 1, "fashion-mnist": 1, "cifar10": 1}
# the share of the free memory a session may count on: the parts weighed are lower bounds, and a
# data set drawn into 24.0 of 24.2 GB free was still ended by the out-of-memory killer (drawing it
# takes temporaries, torch and Python take their own)
USABLE = 0.9


class RunShape(NamedTuple):
    cfg: Any  # a RunConfig
    input_shape: tuple[int, ...]
    n_outputs: int
    data_examples: int  # examples the data set holds in memory (0: not known before it is read)


def run_shape(rc) -> RunShape:
    """A run config's shapes, without drawing or reading its data set (an image folder is listed:
    its file count is known before any image is decoded)."""
    from .data import SET_EXAMPLES, SYNTHETIC, data_shape, image_folder_size

    d = rc.data
    if d.name == "imagefolder":
        shape, outputs, images = image_folder_size(d)
        return RunShape(rc, shape, outputs, images)
    shape, outputs = data_shape(d, seed=rc.train.seed)
    return RunShape(rc, shape, outputs, SET_EXAMPLES.get(d.name) or (d.n_train + d.n_test if d.name in SYNTHETIC else 0))


def meta_model(model_cfg, input_shape: tuple[int, ...], n_outputs: int, seed: int = 0) -> torch.nn.Module | None:
    """The model built on torch's meta device: shapes only, any size, no memory; None when it
    cannot be built so (the real build says why)."""
    from .models import build_model

    try:
        with torch.device("meta"):
            return build_model(model_cfg, input_shape, n_outputs, seed=seed)
    except Exception:  # noqa: BLE001 - the real build reports the problem
        return None


def parameter_count(model_cfg, input_shape: tuple[int, ...], n_outputs: int) -> int | None:
    """The model's parameter count from a build on the meta device (shapes only; a forward pass
    there would import torch._dynamo, over a second of launch time); None when it cannot be built
    so (the real build says why)."""
    model = meta_model(model_cfg, input_shape, n_outputs)
    return None if model is None else sum(p.numel() for p in model.parameters())


def activation_elements(model: torch.nn.Module, input_shape: tuple[int, ...], device: torch.device) -> int:
    """Elements the modules' outputs hold per example, from a forward pass over 2 examples
    without a graph (the modules' own outputs are what backward keeps, at the least)."""
    seen: dict[int, torch.Tensor] = {}  # kept alive, so no id is reused; an identity adds nothing

    def count(_m, _inp, out) -> None:
        if isinstance(out, torch.Tensor):
            seen[id(out)] = out

    hooks = [m.register_forward_hook(count) for m in model.modules() if next(m.children(), None) is None]
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    modes = [(m, m.training) for m in model.modules()]  # put back module by module
    try:
        x = torch.zeros((2, *input_shape), dtype=dtype, device=device)
        with torch.no_grad():
            model.eval()  # BatchNorm's running statistics untouched, no dropout draws from the RNG
            model(x)
    finally:
        for m, training in modes:
            m.training = training
        for h in hooks:
            h.remove()
    seen.pop(id(x), None)
    return sum(t.numel() for t in seen.values()) // 2


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


def scaled(n: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:  # three figures, zeros kept: 24.0 GB needed against 23.9 GB free reads apart
            v = n / scale
            return f"{v:.{0 if v >= 100 else 1 if v >= 10 else 2}f} {prefix}{unit}"
    return f"{n:.0f} {unit}"


def needs(runs: list[RunShape]) -> dict[str, int] | None:
    """Bytes the runs hold before their first step, at least: {"state", "data", "parameters"};
    None when a model cannot be built on the meta device."""
    from .data import SHAPES_SIDE

    counts: dict[tuple, int | None] = {}
    state = parameters = 0
    data: dict[tuple, int] = {}  # a data set shared by runs is drawn once
    for r in runs:
        m, itemsize = r.cfg.model, 8 if r.cfg.model.dtype == "float64" else 4
        # the switches change no module, so twins are built once
        key = (repr(dataclasses.replace(m, residual=False, norm=False, dropout=0.0)), tuple(r.input_shape), r.n_outputs)
        if key not in counts:
            counts[key] = parameter_count(m, tuple(r.input_shape), r.n_outputs)
        n = counts[key]
        if n is None:
            return None
        parameters += n
        state += n * itemsize * (_PER_PARAMETER + _STATE.get(r.cfg.train.optimizer, 2))
        per_value = _HELD_BYTES.get(r.cfg.data.name) or max(itemsize, _DRAW_BYTES.get(r.cfg.data.name, itemsize))
        held = r.data_examples * math.prod(r.input_shape)
        if _resized_shapes(r.cfg.data):  # drawn at its own side, then resized into the held tensor
            drawn = r.data_examples * SHAPES_SIDE**2 * _DRAW_BYTES["shapes"]
            data[(repr(r.cfg.data), m.dtype)] = drawn + held * itemsize
        else:
            data[(repr(r.cfg.data), m.dtype)] = held * per_value
    return {"state": state, "data": sum(data.values()), "parameters": parameters}


def _resized_shapes(d) -> bool:
    return d.name == "shapes" and d.resize > 0


def check_fits(runs: list[RunShape], device: torch.device, free: int | None = None) -> None:
    """Before anything is built: raise ValueError (one line) if the runs' weights, gradients,
    optimiser state and data need more memory than is free. The data stay in host memory (a batch
    goes to the device each step), so with a GPU the two are weighed where each lives; `free`
    stands for the device's free memory (tests)."""
    need = needs(runs)
    if need is None:
        return
    n = len(runs)
    state = f"weights, gradients and optimiser state ({n} run{'s' if n != 1 else ''}, {scaled(need['parameters'], '')} parameters)"
    model_hint = "lower model.depth or model.width" if {r.cfg.model.kind for r in runs} <= _SIZED_KINDS else "choose a smaller model"
    names = {r.cfg.data.name for r in runs}
    data_hint = "lower data.n_train or data.n_test"
    if names & _HELD_BYTES.keys() or any(_resized_shapes(r.cfg.data) for r in runs):
        data_hint = "lower data.resize (each image is kept at resize x resize)" + (" or use fewer images" if "imagefolder" in names else "")
    parts = [(need["state"], state, model_hint), (need["data"], "the data", data_hint)]
    if device.type == "cuda":
        _refuse_above(parts[:1], free_bytes(device) if free is None else free, "on the GPU")
        _refuse_above(parts[1:], free_bytes(torch.device("cpu")), "in host memory")
    else:
        _refuse_above(parts, free_bytes(device) if free is None else free, "here")


def _refuse_above(parts: list[tuple[int, str, str]], free: int | None, where: str) -> None:
    """Raise if the parts' bytes add up to more than `free`, naming the parts that matter and the
    hint of the largest."""
    total = sum(b for b, _, _ in parts)
    if free is None or total <= free * USABLE:
        return
    said = " and ".join(f"{scaled(b, 'B')} for {what}" for b, what, _ in parts if b * 100 >= total)  # under 1 %: noise
    hint = max(parts)[2]
    raise ValueError(f"training needs at least {said}, more than {USABLE:.0%} of the {scaled(free, 'B')} free {where}; {hint}")


def check_step_fits(runs: list, device: torch.device, free: int | None = None) -> None:
    """Once the models are built (`runs`: TrainingRuns): raise ValueError (one line) if one batch's
    activations need more memory than is left free (the runs step one after another, so the
    largest counts)."""
    from .training import examples_per_batch

    worst, batch = 0, 0
    for run in runs:
        b = examples_per_batch(run.cfg.train.batch_size, run.data) or 0
        itemsize = 8 if run.cfg.model.dtype == "float64" else 4
        need = activation_elements(run.model, tuple(run.data.input_shape), device) * b * itemsize
        if need > worst:
            worst, batch = need, b
    free = free_bytes(device) if free is None else free
    if free is None or worst <= free * USABLE:
        return
    hint = "lower train.batch_size" + (" or model.width" if {r.cfg.model.kind for r in runs} <= _SIZED_KINDS else "")
    where = "on the GPU" if device.type == "cuda" else "here"
    raise ValueError(
        f"a training step needs at least {scaled(worst, 'B')} for a batch's activations ({batch:,} examples), "
        f"more than {USABLE:.0%} of the {scaled(free, 'B')} free {where}; {hint}"
    )
