"""Switches that flip in place between two training steps.

A `SwitchableBlock` is a residual unit (or its plain counterpart). Its residual path, its
normalisation and its dropout are plain attributes read in `forward`, so flipping them changes the
next forward pass without rebuilding the model or the optimiser and without touching any weight.
Normalisation layers are built once (their parameters stay in the optimiser); when switched off a
block skips them, so they get no gradient and the optimiser leaves them alone.
"""

from __future__ import annotations

from torch import nn


class SwitchableBlock(nn.Module):
    """Base class: subclasses read `self.residual`, `self.norm_on` and their `nn.Dropout` modules.

    `gradviz_sink` is where a probe (`gradviz.core.probes.BlockGradNorms`) asks for each output:
    None, or a callable `sink(block, output)` called after every forward. It stands in for a forward
    hook, which would take every call of the block off `nn.Module.__call__`'s fast path and cost a
    Python hook frame besides. The sink is never copied: `copy.deepcopy` and pickling drop it, so a
    copy of a probed model runs bare.
    """

    gradviz_block = True  # marks a block for `blocks()`; torchvision blocks get it when patched
    gradviz_sink = None  # class default; a probe sets it per instance
    # which switches do anything in this block: a block whose width changes has no skip path
    # (LeNet), one without a normalisation layer nothing to normalise (seed 000's rgb net)
    switches_residual = True
    switches_norm = True

    def __init__(self, residual: bool = False, norm_on: bool = False) -> None:
        super().__init__()
        self.residual = bool(residual)
        self.norm_on = bool(norm_on)

    def __call__(self, *args, **kwargs):
        out = nn.Module.__call__(self, *args, **kwargs)
        sink = self.gradviz_sink
        if sink is not None:
            sink(self, out)
        return out

    def __getstate__(self) -> dict:
        state = super().__getstate__()  # a copy of __dict__
        state.pop("gradviz_sink", None)
        return state


def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every switchable block with its qualified name, in `named_modules()` order."""
    return [(n, m) for n, m in model.named_modules() if getattr(m, "gradviz_block", False)]


def supports(model: nn.Module) -> dict[str, bool]:
    """Which switches change this model's forward pass: {"residual", "norm", "dropout"}."""
    bl = [m for _, m in blocks(model)]
    return {
        "residual": any(getattr(m, "switches_residual", True) for m in bl),
        "norm": any(hasattr(m, "norm_on") and getattr(m, "switches_norm", True) for m in bl),
        "dropout": any(isinstance(m, nn.Dropout) for m in model.modules()),
    }


def set_residual(model: nn.Module, on: bool) -> int:
    """Turn every block's skip path on or off; returns how many blocks changed."""
    changed = 0
    for _, m in blocks(model):
        if m.residual != bool(on):
            m.residual = bool(on)
            changed += 1
    return changed


def set_norm(model: nn.Module, on: bool) -> int:
    changed = 0
    for _, m in blocks(model):
        if hasattr(m, "norm_on") and m.norm_on != bool(on):
            m.norm_on = bool(on)
            changed += 1
    return changed


def set_dropout(model: nn.Module, p: float) -> int:
    if not 0.0 <= p <= 0.9:
        raise ValueError(f"dropout p={p}: accepted range is 0 to 0.9")
    changed = 0
    for m in model.modules():
        if isinstance(m, nn.Dropout) and m.p != p:
            m.p = float(p)
            changed += 1
    return changed


def state(model: nn.Module) -> dict:
    """Current switch positions: residual / norm (True when every block has it), dropout p."""
    bl = [m for _, m in blocks(model)]
    res = [m.residual for m in bl]
    norms = [m.norm_on for m in bl if hasattr(m, "norm_on")]
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    return {
        "residual": bool(res) and all(res),
        "norm": bool(norms) and all(norms),
        "dropout": max(drops) if drops else 0.0,
    }
