"""Per-layer measurements taken around a training step, cheap and on the device.

Per step: `grad_norm` (per layer) and `act_grad_norm` (per block) from one grouped
`torch._foreach_norm` call and one host copy; every `update_every` steps (default 5) `weight_norm` and
`update_ratio`, which need a copy of the weights around the optimiser step. On a cadence: `act_mean`, `act_std`, `act_saturation` and histograms of `weight`, `grad` and
`activation` with fixed bin edges per layer, from a bounded sample.

Definitions (shared by the engine and `gradviz.watch`):
- a layer is a module owning parameters directly, in forward-execution order;
- `grad_norm` = L2 norm of all of a layer's parameter gradients together; NaN if none got a gradient;
- `weight_norm` likewise over the parameters; `update_ratio` = ||w_after - w_before|| / ||w_before||;
- `act_grad_norm` = L2 norm of dL/d(block output);
- a layer's activation is its output tensor; `act_saturation` is the fraction of outputs where the
  model's nonlinearity saturates: |z| > 2.65 for tanh (|tanh z| > 0.99), |z| > 4.6 for sigmoid
  (within 0.01 of 0 or 1), z <= 0 for relu (dead unit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

SATURATION = {"tanh": 2.65, "sigmoid": 4.6}
HIST_BINS = 64
HIST_SAMPLE = 1024  # values per layer per histogram: plenty for 64 bins, and cheap


def param_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly, in `named_modules()` order (deduplicated)."""
    seen: set[int] = set()
    out = []
    for name, m in model.named_modules(remove_duplicate=True):
        if any(True for _ in m.parameters(recurse=False)) and id(m) not in seen:
            seen.add(id(m))
            out.append((name, m))
    return out


def forward_order(model: nn.Module, example: torch.Tensor | tuple, run_forward=None) -> list[tuple[str, nn.Module]]:
    """Parameter-owning layers sorted by first execution in one forward pass.

    Switchable norm layers are traced with normalisation on so they have a place even while off;
    the pass runs in eval mode under no_grad, so weights and running statistics are untouched.
    Layers that never run come last, in `named_modules()` order.
    """
    from .models.switches import blocks as switch_blocks

    layers = param_layers(model)
    order: dict[int, int] = {}
    hooks = []

    def seen(mod, _args) -> None:  # a pre-hook's return value would replace the input
        order.setdefault(id(mod), len(order))

    for _, m in layers:
        hooks.append(m.register_forward_pre_hook(seen))
    saved_norm = [(b, b.norm_on) for _, b in switch_blocks(model) if hasattr(b, "norm_on")]
    modes = [(m, m.training) for m in model.modules()]  # per module: a user's eval-mode layer stays so
    try:
        for b, _ in saved_norm:
            b.norm_on = True
        model.eval()
        with torch.no_grad():
            if run_forward is not None:
                run_forward(model, example)
            elif isinstance(example, tuple):
                model(*example)
            else:
                model(example)
    finally:
        for h in hooks:
            h.remove()
        for b, on in saved_norm:
            b.norm_on = on
        for m, mode in modes:
            m.training = mode
    rank = {id(m): order.get(id(m), len(order) + i) for i, (_, m) in enumerate(layers)}
    return sorted(layers, key=lambda nm: rank[id(nm[1])])


@dataclass
class StepMetrics:
    """What one step measured, already on the host."""

    loss: float
    grad_norm: np.ndarray
    act_grad_norm: np.ndarray
    weight_norm: np.ndarray | None = None
    update_ratio: np.ndarray | None = None
    first_nonfinite: str | None = None  # first layer in backward order with a non-finite gradient


class Probe:
    """Hooks a model; call the step methods in order around `loss.backward()` and `optimizer.step()`."""

    def __init__(
        self,
        model: nn.Module,
        layers: list[tuple[str, nn.Module]],
        blocks: list[tuple[str, nn.Module]] | None = None,
        activation: str = "relu",
        hist_every: int = 25,
        update_every: int = 5,
        bins: int = HIST_BINS,
        sample: int = HIST_SAMPLE,
    ) -> None:
        self.model = model
        self.layers = layers
        self.layer_names = [n for n, _ in layers]
        self.layer_types = [type(m).__name__ for _, m in layers]
        self.blocks = blocks or []
        self.block_names = [n for n, _ in self.blocks]
        self.activation = activation
        self.hist_every = max(1, int(hist_every))
        self.update_every = max(1, int(update_every))
        self._step = 0
        self._have_prev = False
        self.bins = bins
        self.sample = sample
        self.params: list[nn.Parameter] = []
        owner: list[int] = []
        seen: set[int] = set()
        for i, (_, m) in enumerate(layers):
            for p in m.parameters(recurse=False):
                if id(p) in seen:  # a parameter shared by two layers counts for the first
                    continue
                seen.add(id(p))
                self.params.append(p)
                owner.append(i)
        self.n_layers = len(layers)
        self._owner = owner
        self._owner_arr = np.asarray(owner, np.int64)  # parameter -> layer index, for the per-step sums
        self._block_grads: list[torch.Tensor | None] = [None] * len(self.blocks)
        self._block_hooks = [
            m.register_forward_hook(self._make_block_hook(i)) for i, (_, m) in enumerate(self.blocks)
        ]
        self._act_hooks: list = []
        self._acts: dict[int, torch.Tensor] = {}
        self._prev: list[torch.Tensor] | None = None
        self.edges: dict[tuple[str, int], torch.Tensor] = {}  # (kind, layer) -> fixed bin edges
        self.new_edges: list[tuple[str, int, np.ndarray]] = []  # edges fixed since last collected
        self.enabled = True

    # ---- hooks ---------------------------------------------------------------------------
    def _make_block_hook(self, i: int):
        def on_forward(_mod, _inp, out):
            if not self.enabled or not torch.is_grad_enabled():
                return
            t = out[0] if isinstance(out, tuple | list) else out
            if isinstance(t, torch.Tensor) and t.requires_grad:
                def keep(g):
                    self._block_grads[i] = g  # the norm is taken for all blocks at once later

                t.register_hook(keep)

        return on_forward

    def remove(self) -> None:
        for h in self._block_hooks + self._act_hooks:
            h.remove()
        self._block_hooks, self._act_hooks = [], []

    def is_hist_step(self, step: int) -> bool:
        return step % self.hist_every == 0

    def begin_step(self, step: int) -> None:
        """Before the forward pass: arm activation capture on cadence steps only."""
        self._step = step
        self._block_grads = [None] * len(self.blocks)
        if self.enabled and self.is_hist_step(step) and not self._act_hooks:
            for i, (_, m) in enumerate(self.layers):
                self._act_hooks.append(m.register_forward_hook(self._make_act_hook(i)))

    def _make_act_hook(self, i: int):
        def on_forward(_mod, _inp, out):
            t = out[0] if isinstance(out, tuple | list) else out
            if isinstance(t, torch.Tensor) and t.is_floating_point() and i not in self._acts:
                self._acts[i] = t.detach()

        return on_forward

    # ---- after backward -----------------------------------------------------------------
    def _per_layer(self, norms: np.ndarray, owners: np.ndarray) -> np.ndarray:
        """Combine per-tensor norms into per-layer norms (sqrt of summed squares); NaN where a
        layer had no tensor. Done on the host: the norms are already there, and it saves a
        handful of tiny device ops per step."""
        sq = np.bincount(owners, weights=norms.astype(np.float64) ** 2, minlength=self.n_layers)
        have = np.bincount(owners, minlength=self.n_layers) > 0
        out = np.sqrt(sq)
        out[~have] = np.nan
        return out

    @staticmethod
    def _stack(tensors: list[torch.Tensor]) -> np.ndarray:
        """One grouped norm call, one stack, one host copy."""
        norms = torch._foreach_norm(tensors)
        dtypes = {n.dtype for n in norms}
        if len(dtypes) > 1:  # mixed precision: bring every norm to float32 first
            norms = [n.float() for n in norms]
        return torch.stack(norms).cpu().numpy()

    def after_backward(self, loss: torch.Tensor) -> StepMetrics:
        """Measure gradients; one host copy. Call before `optimizer.step()` (the NaN guard needs it)."""
        present = [j for j, p in enumerate(self.params) if p.grad is not None]
        bidx = [i for i, g in enumerate(self._block_grads) if g is not None]
        tensors = [self.params[j].grad for j in present] + [self._block_grads[i] for i in bidx]
        tensors.append(loss.detach().reshape(1))  # the loss rides along in the same copy
        flat = self._stack(tensors).astype(np.float64)
        self._block_grads = [None] * len(self.blocks)
        loss_v = float(flat[-1])
        owners = self._owner_arr[present]
        grad_norm = self._per_layer(flat[: len(present)], owners)
        act_grad = np.full(len(self.blocks), np.nan)
        act_grad[bidx] = flat[len(present) : len(present) + len(bidx)]
        first_bad = None
        # a NaN from a layer that got no gradient at all means "not used", not "non-finite"
        used = set(owners.tolist())
        bad = [i for i in np.flatnonzero(~np.isfinite(grad_norm)) if i in used]
        if bad:
            first_bad = self.layer_names[max(bad)]  # backward runs from the last layer to the first
        elif not np.isfinite(loss_v):
            first_bad = "(loss)"
        return StepMetrics(loss_v, grad_norm, act_grad, first_nonfinite=first_bad)

    def is_update_step(self) -> bool:
        return self.enabled and self._step % self.update_every == 0

    def before_step(self) -> None:
        """Keep the weights as they are before the optimiser step (for `update_ratio`), on the
        update cadence only: the copy and three norms cost about as much as the backward of a
        small MLP."""
        if not self.is_update_step() or not self.params:
            return
        with torch.no_grad():
            if self._prev is None or len(self._prev) != len(self.params) or self._prev[0].device != self.params[0].device:
                self._prev = [p.detach().clone() for p in self.params]
            else:
                torch._foreach_copy_(self._prev, self.params)
        self._have_prev = True

    def after_step(self, metrics: StepMetrics) -> StepMetrics:
        """`weight_norm` and `update_ratio` after the optimiser step; one host copy."""
        if not self._have_prev:
            return metrics
        self._have_prev = False
        with torch.no_grad():
            params = list(self.params)
            delta = torch._foreach_sub(params, self._prev)
            flat = self._stack(list(self._prev) + params + list(delta))
        n = len(params)
        owners = self._owner_arr
        before = self._per_layer(flat[:n], owners)
        after = self._per_layer(flat[n : 2 * n], owners)
        moved = self._per_layer(flat[2 * n :], owners)
        metrics.weight_norm = after
        with np.errstate(all="ignore"):
            metrics.update_ratio = moved / before
        return metrics

    # ---- cadence: activation statistics and histograms ------------------------------------
    def collect_cadence(self) -> tuple[dict[str, np.ndarray], dict[str, dict[int, np.ndarray]]]:
        """Activation statistics per layer and histogram counts per kind; call after the step.

        Returns ({"act_mean": (L,), ...}, {"weight": {layer: counts}, ...}); new fixed edges are
        left in `self.new_edges` for the recording.
        """
        for h in self._act_hooks:
            h.remove()
        self._act_hooks = []
        acts, self._acts = self._acts, {}
        if not acts and not self.params:
            return {}, {}
        dev = self.params[0].device if self.params else torch.device("cpu")
        thr = SATURATION.get(self.activation)
        stats = torch.full((3, self.n_layers), float("nan"), dtype=torch.float64, device=dev)
        samples: dict[str, dict[int, torch.Tensor]] = {"weight": {}, "grad": {}, "activation": {}}
        for i, (_, m) in enumerate(self.layers):
            w = getattr(m, "weight", None)
            if not isinstance(w, torch.Tensor):
                w = next(m.parameters(recurse=False))
            samples["weight"][i] = self._sample(w.detach())
            if w.grad is not None:
                samples["grad"][i] = self._sample(w.grad.detach())
            a = acts.get(i)
            if a is not None:
                a = a.float() if a.dtype in (torch.float16, torch.bfloat16) else a
                sat = (a.abs() > thr) if thr is not None else (a <= 0)
                stats[0, i] = a.mean()
                stats[1, i] = a.std() if a.numel() > 1 else 0.0
                stats[2, i] = sat.float().mean()
                samples["activation"][i] = self._sample(a)
        hists: dict[str, torch.Tensor] = {}
        for kind, per_layer in samples.items():
            if per_layer:
                hists[kind] = self._batched_histogram(kind, per_layer)
        # one host copy for everything measured on this cadence step
        order = [(k, i) for k in hists for i in samples[k]]
        packed = torch.cat([stats.flatten()] + [hists[k].double().reshape(-1) for k in hists]).cpu().numpy()
        L = self.n_layers
        stat_out = {"act_mean": packed[:L], "act_std": packed[L : 2 * L], "act_saturation": packed[2 * L : 3 * L]}
        if not acts:
            stat_out = {}
        hist_out: dict[str, dict[int, np.ndarray]] = {}
        off = 3 * L
        for k, i in order:
            hist_out.setdefault(k, {})[i] = packed[off : off + self.bins].astype(np.float32)
            off += self.bins
        return stat_out, hist_out

    def _batched_histogram(self, kind: str, per_layer: dict[int, torch.Tensor]) -> torch.Tensor:
        """Histograms of every layer of one kind with a single bincount: each value becomes
        layer_slot * bins + its bin under that layer's fixed edges (clamped into the end bins)."""
        layers = list(per_layer)
        for i in layers:
            if (kind, i) not in self.edges:
                self.edges[(kind, i)] = self._fix_edges(per_layer[i])
                self.new_edges.append((kind, i, self.edges[(kind, i)].numpy()))
        xs = [per_layer[i].reshape(-1) for i in layers]
        dev = xs[0].device
        sizes = torch.tensor([x.numel() for x in xs], device=dev)
        lo = torch.tensor([float(self.edges[(kind, i)][0]) for i in layers], dtype=torch.float64, device=dev)
        hi = torch.tensor([float(self.edges[(kind, i)][-1]) for i in layers], dtype=torch.float64, device=dev)
        x = torch.cat([t.float() for t in xs])
        lo_e = torch.repeat_interleave(lo.float(), sizes)
        scale = torch.repeat_interleave((self.bins / (hi - lo)).float(), sizes)
        b = ((x - lo_e) * scale).nan_to_num(0.0).floor().clamp_(0, self.bins - 1).long()
        slot = torch.repeat_interleave(torch.arange(len(layers), device=dev), sizes)
        keep = torch.isfinite(x)  # NaN / inf gradients are counted nowhere
        idx = (slot * self.bins + b)[keep]
        return torch.bincount(idx, minlength=len(layers) * self.bins).reshape(len(layers), self.bins)

    def _sample(self, t: torch.Tensor) -> torch.Tensor:
        flat = t.reshape(-1)
        if flat.numel() > self.sample:
            flat = flat[:: flat.numel() // self.sample][: self.sample]
        return flat

    def _fix_edges(self, x: torch.Tensor) -> torch.Tensor:
        """Symmetric range of twice the first sample's largest magnitude (values beyond are clamped
        into the end bins), so later columns of the same layer compare."""
        finite = x[torch.isfinite(x)]
        m = float(finite.abs().max()) if finite.numel() else 0.0
        r = 2.0 * m if m > 0 else 1.0
        return torch.linspace(-r, r, self.bins + 1, dtype=torch.float64)

