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

import torch

NAMES = ("sgd", "momentum", "rmsprop", "adam")


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
    def step(self) -> None:
        idx, params, grads = self._with_grads()
        if params:
            self._update(idx, params, grads)

    def _update(self, idx, params, grads) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(ForeachOptimizer):
    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, weight_decay)
        self.momentum = float(momentum)

    def _update(self, idx, params, grads) -> None:
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


class RMSprop(ForeachOptimizer):
    alpha = 0.99
    eps = 1e-8

    def _update(self, idx, params, grads) -> None:
        lr = self.param_groups[0]["lr"]
        square_avg = self._buffers("square_avg", idx, params)
        torch._foreach_mul_(square_avg, self.alpha)
        torch._foreach_addcmul_(square_avg, grads, grads, value=1 - self.alpha)
        avg = torch._foreach_sqrt(square_avg)
        torch._foreach_add_(avg, self.eps)
        torch._foreach_addcdiv_(params, grads, avg, value=-lr)


class Adam(ForeachOptimizer):
    betas = (0.9, 0.999)
    eps = 1e-8

    def _update(self, idx, params, grads) -> None:
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
        for n, ks in by_step.items():
            bc1 = 1 - b1**n
            bc2_sqrt = math.sqrt(1 - b2**n)
            denom = torch._foreach_sqrt([exp_avg_sq[k] for k in ks])
            torch._foreach_div_(denom, bc2_sqrt)
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_([params[k] for k in ks], [exp_avg[k] for k in ks], denom, value=-lr / bc1)


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
