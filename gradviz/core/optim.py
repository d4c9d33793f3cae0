"""The engine's optimisers: SGD, momentum, RMSProp and Adam as a few grouped `torch._foreach_*` ops.

Why not `torch.optim`: its first use imports `torch._dynamo` (about 1.3 s on the demo machine, more
than the whole demo model takes to build and train its first step), which the app's launch cannot
afford. The update rules are torch.optim's defaults exactly (tests compare them step by step):
weight decay added to the gradient, momentum without dampening, RMSProp alpha 0.99 and eps 1e-8,
Adam betas (0.9, 0.999), eps 1e-8 with bias correction. `gradviz.watch` is not affected: it hooks
whatever optimiser the user brings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

NAMES = ("sgd", "momentum", "rmsprop", "adam")


@dataclass
class UpdateReport:
    """The step the optimiser just took, for `update_ratio`: parameter `idx[k]` (an index into
    `ForeachOptimizer.params`) moved by `scales[k] * directions[k]`. The directions are tensors the
    update rule computes anyway (the gradients themselves for plain SGD), so measuring the update
    costs one norm per tensor instead of a copy of every weight and a difference."""

    idx: list[int]
    directions: list[torch.Tensor]
    scales: list[float]
    of_grads: bool = False  # the directions are the parameters' own `.grad`, whose norms are known


class ForeachOptimizer:
    """The subset of the `torch.optim.Optimizer` interface the engine uses: `param_groups[i]["lr"]`,
    `zero_grad(set_to_none=True)` and `step()`."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0) -> None:
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        self.params = params
        self.param_groups = [{"params": params, "lr": float(lr), "weight_decay": float(weight_decay)}]
        self.state: dict[str, list] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_()
                p.grad.zero_()

    def _with_grads(self) -> tuple[list[int], list[torch.Tensor], list[torch.Tensor]]:
        idx = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in idx]
        grads = [p.grad for p in params]
        wd = self.param_groups[0]["weight_decay"]
        if wd:
            grads = torch._foreach_add(grads, params, alpha=wd)
        return idx, params, grads

    def _buffers(self, name: str, idx: list[int], params: list[torch.Tensor], init=None) -> list[torch.Tensor]:
        """Per-parameter state, created on a parameter's first gradient (as torch.optim does)."""
        store = self.state.setdefault(name, [None] * len(self.params))
        out = []
        for i, p in zip(idx, params, strict=True):
            if store[i] is None:
                store[i] = init(i) if init is not None else torch.zeros_like(p, memory_format=torch.preserve_format)
            out.append(store[i])
        return out

    @torch.no_grad()
    def step(self, report: bool = False) -> UpdateReport | None:
        """One update; with `report`, also what it was (`UpdateReport`), else None."""
        idx, params, grads = self._with_grads()
        if not params:
            return UpdateReport([], [], []) if report else None
        moved = self._update(idx, params, grads, report)
        return UpdateReport(idx, *moved) if report else None

    def _update(self, idx, params, grads, report: bool):  # pragma: no cover - abstract
        """Apply the step; with `report`, return (directions, scales, of_grads) as `UpdateReport` holds them."""
        raise NotImplementedError


class SGD(ForeachOptimizer):
    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, weight_decay)
        self.momentum = float(momentum)

    def _update(self, idx, params, grads, report: bool):
        lr = self.param_groups[0]["lr"]
        if self.momentum:
            store = self.state.setdefault("momentum_buffer", [None] * len(self.params))
            fresh = [store[i] is None for i in idx]
            bufs = []
            for i, g, new in zip(idx, grads, fresh, strict=True):
                if new:  # torch.optim starts the buffer at the first gradient itself
                    store[i] = torch.clone(g).detach()
                bufs.append(store[i])
            old = [b for b, new in zip(bufs, fresh, strict=True) if not new]
            old_g = [g for g, new in zip(grads, fresh, strict=True) if not new]
            if old:
                torch._foreach_mul_(old, self.momentum)
                torch._foreach_add_(old, old_g)
            grads = bufs
        torch._foreach_add_(params, grads, alpha=-lr)
        # without momentum or weight decay the direction is the gradient itself
        return (grads, [lr] * len(grads), not self.momentum and not self.param_groups[0]["weight_decay"]) if report else None


class RMSprop(ForeachOptimizer):
    alpha = 0.99
    eps = 1e-8

    def _update(self, idx, params, grads, report: bool):
        lr = self.param_groups[0]["lr"]
        square_avg = self._buffers("square_avg", idx, params)
        torch._foreach_mul_(square_avg, self.alpha)
        torch._foreach_addcmul_(square_avg, grads, grads, value=1 - self.alpha)
        avg = torch._foreach_sqrt(square_avg)
        torch._foreach_add_(avg, self.eps)
        if not report:
            torch._foreach_addcdiv_(params, grads, avg, value=-lr)
            return None
        direction = torch._foreach_div(grads, avg)  # what addcdiv would scale and add, kept
        torch._foreach_add_(params, direction, alpha=-lr)
        return direction, [lr] * len(direction), False


class Adam(ForeachOptimizer):
    betas = (0.9, 0.999)
    eps = 1e-8

    def _update(self, idx, params, grads, report: bool):
        lr = self.param_groups[0]["lr"]
        b1, b2 = self.betas
        exp_avg = self._buffers("exp_avg", idx, params)
        exp_avg_sq = self._buffers("exp_avg_sq", idx, params)
        steps = self.state.setdefault("step", [0] * len(self.params))
        for i in idx:
            steps[i] += 1
        torch._foreach_lerp_(exp_avg, grads, 1 - b1)
        torch._foreach_mul_(exp_avg_sq, b2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - b2)
        # Parameters that skipped steps (unused layers) have their own step counts, so group by count.
        by_step: dict[int, list[int]] = {}
        for k, i in enumerate(idx):
            by_step.setdefault(steps[i], []).append(k)
        directions: list = [None] * len(idx)
        scales = [0.0] * len(idx)
        for n, ks in by_step.items():
            bc1 = 1 - b1**n
            bc2_sqrt = math.sqrt(1 - b2**n)
            denom = torch._foreach_sqrt([exp_avg_sq[k] for k in ks])
            torch._foreach_div_(denom, bc2_sqrt)
            torch._foreach_add_(denom, self.eps)
            if not report:
                torch._foreach_addcdiv_([params[k] for k in ks], [exp_avg[k] for k in ks], denom, value=-lr / bc1)
                continue
            direction = torch._foreach_div([exp_avg[k] for k in ks], denom)
            torch._foreach_add_([params[k] for k in ks], direction, alpha=-lr / bc1)
            for k, d in zip(ks, direction, strict=True):
                directions[k], scales[k] = d, lr / bc1
        return (directions, scales, False) if report else None


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float) -> ForeachOptimizer:
    if name == "sgd":
        return SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "rmsprop":
        return RMSprop(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer {name!r}: accepted values are {', '.join(NAMES)}")
