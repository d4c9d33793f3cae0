"""Per-layer measurements taken around a training step, cheap and on the device.

Per step: `grad_norm` (per layer) from the parameter gradients after backward (one grouped
`torch._foreach_norm`, small tensors stacked by shape) and `act_grad_norm` (per block), taken inside
backward as each block's output gradient appears (`BlockGradNorms`), then one host copy; every
`update_every` steps (default 5) `weight_norm` and `update_ratio`, which need a copy of the weights
around the optimiser step (`_UpdatePlan`). On a cadence: `act_mean`, `act_std`, `act_saturation`
(summed in the layer's forward hook) and histograms of `weight`, `grad` and `activation` with fixed
bin edges per layer, from a bounded sample.

On CPU each torch op costs microseconds of dispatch however small its tensor, and memory that is kept
alive past its natural end costs page faults on the next step (the allocator hands it back to the
system), so the code below counts ops and avoids holding gradients or activations.

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

from .activation_feeds import ActivationFeeds

# |z| beyond which an activation is flat: |tanh| > 0.99, sigmoid within 0.01 of 0 or 1, hardtanh and
# hardsigmoid clipped
SATURATION = {"tanh": 2.65, "sigmoid": 4.6, "hardtanh": 1.0, "hardsigmoid": 3.0}
HIST_BINS = 64
HIST_SAMPLE = 1024  # values per layer per histogram: plenty for 64 bins, and cheap


# the name of the model itself as a layer (a ViT's class token, a learnt scale on the top module):
# `named_modules()` calls it "", which left blank names in the table, the heatmap's rows and the
# NaN guard's message ("first in layer ; run paused")
ROOT_LAYER = "(model)"


def param_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly, in `named_modules()` order (deduplicated); the model
    itself, when it owns some, is `ROOT_LAYER`."""
    seen: set[int] = set()
    out = []
    for name, m in model.named_modules(remove_duplicate=True):
        if any(True for _ in m.parameters(recurse=False)) and id(m) not in seen:
            seen.add(id(m))
            out.append((name or ROOT_LAYER, m))
    return out


def forward_order(model: nn.Module, example: torch.Tensor | tuple, run_forward=None) -> list[tuple[str, nn.Module]]:
    """Parameter-owning layers sorted by first execution in one forward pass.

    Switchable norm layers are traced with normalisation on so they have a place even while off;
    the pass runs in eval mode under no_grad, so weights and running statistics are untouched.
    Layers that never run are placed by `by_first_run`.
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
    return by_first_run(layers, order)


def by_first_run(layers: list[tuple[str, nn.Module]], order: dict[int, int]) -> list[tuple[str, nn.Module]]:
    """`layers` (in `named_modules()` order) sorted by first execution (`order`: id(module) ->
    rank). A layer that never ran goes right after the layer before it in `named_modules()` order:
    `MultiheadAttention` uses its `out_proj`'s weight without calling it, and a plain ResNet skips
    its shortcut convolutions; at the end of the list they put a twin's layers out of step with its
    residual twin's on the depth profile. The layer table (`summary`) follows the same rule."""
    placed = [layers[i] for _, i in sorted((order[id(m)], i) for i, (_, m) in enumerate(layers) if id(m) in order)]
    done = {id(m) for _, m in placed}
    for i, (name, m) in enumerate(layers):
        if id(m) in done:
            continue
        prev = next((layers[j][1] for j in range(i - 1, -1, -1) if id(layers[j][1]) in done), None)
        at = 0 if prev is None else next(k for k, (_, pm) in enumerate(placed) if pm is prev) + 1
        placed.insert(at, (name, m))
        done.add(id(m))
    return placed


# ---- grouped norms and the one host copy ---------------------------------------------------------

_LOW = (torch.float16, torch.bfloat16)
_vector_norm = torch.linalg.vector_norm


def grouped_norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-tensor L2 norms in grouped `_foreach_norm` calls; half-precision tensors accumulate in
    float32 (and give float32 norms)."""
    if not tensors:
        return []
    low = [k for k, t in enumerate(tensors) if t.dtype in _LOW]
    if not low:
        return list(torch._foreach_norm(tensors))
    if len(low) == len(tensors):
        return list(torch._foreach_norm(tensors, 2, dtype=torch.float32))
    out: list = [None] * len(tensors)
    high = [k for k, t in enumerate(tensors) if t.dtype not in _LOW]
    for ks, kw in ((low, {"dtype": torch.float32}), (high, {})):
        for k, n in zip(ks, torch._foreach_norm([tensors[k] for k in ks], 2, **kw), strict=True):
            out[k] = n
    return out


GRAD_STACK_MAX = 4096  # numel: gradients this small are stacked by shape for their norms
WEIGHT_STACK_MAX = 1 << 16  # numel: weights this small are kept and measured stacked by shape


def stacked_norms(stack: torch.Tensor) -> torch.Tensor:
    """L2 norm of each slice along the first dimension (float32 accumulation for half precision)."""
    kw = {"dtype": torch.float32} if stack.dtype in _LOW else {}
    if stack.dim() == 1:  # 0-d tensors stacked
        return stack.abs().to(**kw) if kw else stack.abs()
    return _vector_norm(stack, dim=tuple(range(1, stack.dim())), **kw)


class NormPlan:
    """Per-tensor L2 norms of tensors whose shapes stay the same from call to call, in few
    dispatches: on CPU every op costs microseconds of dispatch however small its tensor, so small
    tensors of one shape, dtype and device are stacked and reduced in one call, and the others go
    through one `_foreach_norm`. `parts(tensors)` gives 1-D tensors on the device; their
    concatenation, `order`-indexed, is the norms in the tensors' order (`unpack`)."""

    def __init__(self, tensors: list[torch.Tensor], limit: int) -> None:
        by_kind: dict[tuple, list[int]] = {}
        rest = []
        for k, t in enumerate(tensors):
            if t.numel() <= limit:
                by_kind.setdefault((tuple(t.shape), t.dtype, t.device), []).append(k)
            else:
                rest.append(k)
        self.groups = [ks for ks in by_kind.values() if len(ks) > 1]
        self.rest = sorted(rest + [ks[0] for ks in by_kind.values() if len(ks) == 1])
        self.order = np.asarray(self.rest + [k for ks in self.groups for k in ks], np.int64)
        self.n = len(tensors)
        self.device = tensors[0].device if tensors else None
        self.one_device = all(t.device == self.device for t in tensors)

    def parts(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """1-D norm tensors, all on the first tensor's device."""
        out = []
        if self.rest:
            norms = grouped_norms([tensors[k] for k in self.rest])
            if not self.one_device:
                norms = [n.to(self.device) for n in norms]
            out.append(torch.stack(norms))
        for ks in self.groups:
            out.append(stacked_norms(torch.stack([tensors[k] for k in ks])))
        if not self.one_device:
            out = [t.to(self.device) for t in out]
        return out

    def fits(self, tensors: list[torch.Tensor]) -> bool:
        """Whether `parts` can take these tensors (the same count, and each stacked group still
        of one shape, dtype and device); False once a model was cast or moved."""
        if len(tensors) != self.n:
            return False
        for ks in self.groups:
            a = tensors[ks[0]]
            for k in ks[1:]:
                b = tensors[k]
                if b.shape != a.shape or b.dtype != a.dtype or b.device != a.device:
                    return False
        return not self.one_device or all(tensors[k].device == self.device for k in self.rest)

    def unpack(self, flat: np.ndarray) -> np.ndarray:
        values = np.empty(self.n)
        values[self.order] = flat[: self.n]
        return values


def _sparse_norm(grad: torch.Tensor) -> torch.Tensor:
    """A sparse gradient's L2 norm as a one-element dense tensor (the same shape every step, so the
    norm plans keep it): its values after summing duplicate indices, which an embedding's gradient
    has for every repeated token."""
    return _vector_norm(grad.coalesce().values()).reshape(1)


def to_host(parts: list[torch.Tensor]) -> np.ndarray:
    """1-D tensors (one device) -> one float64 array, in one concatenation and one host copy."""
    if not parts:
        return np.zeros(0)
    flat = parts[0] if len(parts) == 1 else torch.cat(parts)
    return flat.cpu().numpy().astype(np.float64, copy=False)


def _output_tensor(out):
    t = out[0] if isinstance(out, tuple | list) and out else out
    return t if isinstance(t, torch.Tensor) else None


class BlockGradNorms:
    """`act_grad_norm`: the L2 norm of dL/d(block output) for each of a fixed list of blocks.

    The norm is taken inside backward, by a pre-hook on the autograd node that produced the block's
    output, the moment that gradient exists: it is still in cache, and it is freed at once. Keeping
    the gradients alive until after backward measured no better: `retain_grad` 1.15x the bare demo
    step against 1.13x for these hooks (it clones each gradient), and one `autograd.grad` call over
    the parameters and the blocks' gradient edges, with every norm after it, 1.307x against the
    engine's 1.316x end to end (within the noise; the mechanism alone, an empty Python hook per
    block, is 1.057x). A hook on the producing node sees the gradient of the
    value the block returned, even if the caller later changes that tensor in place
    (`out += identity`, `ReLU(inplace=True)`).

    A `SwitchableBlock` hands over its output through its `gradviz_sink` slot; any other module gets
    a forward hook. A block that runs several times between two `reset()`s (gradient accumulation,
    two views of a batch, a block applied in a loop) gets the norm over all its outputs' gradients,
    as one batch of all of them would give (the last call alone read 1/sqrt(2) of it over two
    micro-batches); each call keeps one value, so a second backward pass over the same graph (a
    gradient penalty's `autograd.grad` before the loss's backward) replaces, not adds. Activation
    checkpointing recomputes a block inside backward: without reentrancy the recomputed output's
    node never runs (the first call's hook gives the value); with it, the forward ran without a
    graph and the recomputed call's hook gives it.
    `values()` gives a 0-d tensor per block after backward, None for a block whose output got no
    gradient; `reset()` clears them. `on_error(exc)`, when given, receives any exception a hook
    raises instead of letting it break the forward or backward pass.
    """

    def __init__(self, blocks: list[tuple[str, nn.Module]], on_error=None) -> None:
        from .models.switches import SwitchableBlock

        self.modules = [m for _, m in blocks]
        self.norms: list[torch.Tensor | None] = [None] * len(self.modules)  # each block's first call
        self._none = [None] * len(self.modules)
        self._calls = [0] * len(self.modules)  # forward calls since `reset`
        self._zeros = [0] * len(self.modules)
        self._extra: dict[int, dict[int, torch.Tensor]] = {}  # block -> {call: norm}, calls after the first
        self.enabled = True
        self.on_error = on_error
        self._node_hooks = [self._make_node_hook(i, 0, 0) for i in range(len(self.modules))]
        self._handles: list = []
        self._leaf_handles: list = []  # hooks on leaf tensors outlive the graph: removed by `reset`
        self._sunk: list[tuple[nn.Module, object]] = []
        for i, m in enumerate(self.modules):
            if isinstance(m, SwitchableBlock) and m.__dict__.get("gradviz_sink") is None:
                sink = self._make_sink(i)
                m.gradviz_sink = sink
                self._sunk.append((m, sink))
            else:
                self._handles.append(m.register_forward_hook(self._make_forward_hook(i)))

    def values(self) -> list[torch.Tensor | None]:
        """Per block, the norm over the gradients of all its outputs since `reset`."""
        if not self._extra:
            return self.norms
        out = list(self.norms)
        for i, parts in self._extra.items():
            ns = [n for n in (out[i], *parts.values()) if n is not None]
            out[i] = _vector_norm(torch.stack(ns)) if len(ns) > 1 else (ns[0] if ns else None)
        return out

    def reset(self) -> None:
        self.norms[:] = self._none
        self._calls[:] = self._zeros
        if self._extra:
            self._extra = {}
        if self._leaf_handles:
            for h in self._leaf_handles:
                h.remove()
            self._leaf_handles = []

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        for m, sink in self._sunk:
            if m.__dict__.get("gradviz_sink") is sink:
                del m.gradviz_sink
        self._handles, self._sunk = [], []

    def _make_sink(self, i: int):
        block = self.modules[i]
        catch = self._catch
        hook = self._node_hooks[i]
        calls = self._calls

        def sink(mod, out) -> None:
            if mod is not block or not self.enabled:
                return
            c = calls[i]
            calls[i] = c + 1
            # the common case inline (a block's one call, its tensor made by a node's first output)
            fn = out.grad_fn if isinstance(out, torch.Tensor) else None
            if c == 0 and fn is not None and out.output_nr == 0:
                try:
                    fn.register_prehook(hook)
                except Exception as exc:  # noqa: BLE001
                    if self.on_error is None:
                        raise
                    self.on_error(exc)
            else:
                catch(i, out, c)

        return sink

    def _make_forward_hook(self, i: int):
        block = self.modules[i]
        catch = self._catch
        calls = self._calls

        def on_forward(mod, _inp, out) -> None:  # returns None: the output is left as it is
            # `mod is block`: a deep copy of the model carries the hook along
            if mod is block and self.enabled:
                c = calls[i]
                calls[i] = c + 1
                catch(i, out, c)

        return on_forward

    def _catch(self, i: int, out, c: int) -> None:
        try:
            t = _output_tensor(out)
            if t is None or not t.requires_grad:  # evaluation, no_grad, or a frozen path
                return
            fn = t.grad_fn
            if fn is None:  # the block returned a leaf (its own input, say)
                self._leaf_handles.append(t.register_hook(self._make_tensor_hook(i, c)))
            elif t.output_nr == 0 and c == 0:
                fn.register_prehook(self._node_hooks[i])
            else:
                fn.register_prehook(self._make_node_hook(i, t.output_nr, c))
        except Exception as exc:  # noqa: BLE001 - handed to the owner, who decides
            if self.on_error is None:
                raise
            self.on_error(exc)

    def _make_node_hook(self, i: int, nr: int, c: int):
        """The hook for call `c` of block `i`, whose output is output `nr` of its node."""
        norms, on_error = self.norms, self.on_error

        def hook(grads) -> None:  # the gradients of the node's outputs; returns None: unchanged
            try:
                g = grads[nr]
                if g is not None:
                    n = _vector_norm(g, dtype=torch.float32) if g.dtype in _LOW else _vector_norm(g)
                    if c == 0:
                        norms[i] = n
                    else:
                        self._extra.setdefault(i, {})[c] = n
            except Exception as exc:  # noqa: BLE001
                if on_error is None:
                    raise
                on_error(exc)

        return hook

    def _make_tensor_hook(self, i: int, c: int):
        node_hook = self._make_node_hook(i, 0, c)
        return lambda g: node_hook((g,))


def histogram_parameter(m: nn.Module) -> torch.Tensor:
    """The parameter a layer's weight and gradient histograms show: its own `weight`, else its
    largest own parameter. Never `m.weight` read as an attribute: under a parametrization
    (`weight_norm`, `spectral_norm`) that recomputes the weight, a non-leaf whose `.grad` torch
    warns about on every histogram step; its own tensors there are `weight_orig`, or the
    parametrization's `original0`/`original1`, which is a layer of its own."""
    own = dict(m.named_parameters(recurse=False))  # a TorchScript module's `_parameters` has no `get`
    w = own.get("weight")
    if isinstance(w, torch.Tensor):
        return w
    return max(own.values(), key=lambda p: p.numel())


def strided_sample(t: torch.Tensor, sample: int) -> torch.Tensor:
    """Every k-th value of `t` flattened, at most `sample` of them (a view where `t` is contiguous)."""
    n = t.numel()
    if n <= sample:
        return t.reshape(-1)
    if t.is_contiguous():  # one op instead of three
        return torch.as_strided(t, (sample,), (n // sample,))
    return t.reshape(-1)[:: n // sample][:sample]


def activation_summary(a: torch.Tensor, threshold: float | None, sample: int) -> tuple:
    """Sums for `act_mean`, `act_std` and `act_saturation` of one layer's output, taken in its
    forward hook while the output is in cache (nothing keeps the output itself), and a copy of a
    bounded sample for the histogram: (sum, sqrt(sum (z - mean)^2), count, numel, sample).

    `count` is the number of saturated values, |z| > threshold, or for ReLU (`threshold` None) the
    number of positive ones (dead = numel - count). Cheap forms on purpose, as std_mean and
    comparisons are slow on CPU: the deviation is two-pass (exact, not E[z^2] - E[z]^2), and
    sign(max(|z| - threshold, 0)) is 1 exactly where |z| > threshold; a NaN output gives NaN.
    Computed as a stack of one (`stacked_activation_summary`), so both paths share one formula."""
    total, dev, count, n, samples = stacked_activation_summary(a.reshape(1, -1), threshold, sample)
    return total[0], dev[0], count[0], n, samples[0].clone()


def saturated_counts(a: torch.Tensor) -> dict[str, torch.Tensor]:
    """The saturated count |z| > threshold of one output for every kind of `SATURATION`, in the
    cheap form of `activation_summary` (for an output whose reading activation is not known yet)."""
    with torch.no_grad():
        flat = a.reshape(-1).float() if a.dtype in _LOW else a.reshape(-1)
        mag = flat.abs()
        return {kind: _beyond(mag - thr).sum() for kind, thr in SATURATION.items()}


def _beyond(excess: torch.Tensor) -> torch.Tensor:
    """1 where `excess` (|z| - threshold, a temporary) is positive, else 0, in place: sign(max(x, 0))."""
    return excess.clamp_(min=0).sign_()


def stacked_activation_summary(stack: torch.Tensor, threshold: float | None, sample: int) -> tuple:
    """`activation_summary` (its forms are explained there) for k same-shaped outputs stacked along
    dim 0, in a handful of ops for all of them: (sums (k,), deviations (k,), counts (k,), numel per output, samples (k, <= sample))."""
    with torch.no_grad():
        flat = stack.reshape(stack.shape[0], -1)
        if flat.dtype in _LOW:
            flat = flat.float()
        n = flat.shape[1]
        total = flat.sum(1)
        dev = _vector_norm(flat - (total / n).unsqueeze(1), dim=1) if n > 1 else torch.zeros_like(total)
        if threshold is not None:
            count = _beyond(flat.abs().sub_(threshold)).sum(1)
        else:
            count = flat.clamp(min=0).sign_().sum(1)
        samples = flat if n <= sample else flat[:, :: n // sample][:, :sample]
        return total, dev, count, n, samples


class ActivationCapture:
    """The layers' outputs on a cadence step, for `act_mean`, `act_std`, `act_saturation` and the
    activation histograms. Each output is copied in its layer's forward hook (so an in-place op after
    the layer, such as `ReLU(inplace=True)`, cannot change what is measured) into its slot of a stack
    of same-shaped outputs; the statistics of a whole stack then take a handful of ops instead of ten
    per layer (on CPU each op costs microseconds of dispatch). Outputs without a slot yet (the first
    cadence step, or a changed shape) are cloned and measured one by one, and get slots for next time.
    The stacks are kept between cadence steps: new memory every time would cost page faults."""

    def __init__(self, threshold: float | None, sample: int) -> None:
        self.threshold, self.sample = threshold, sample
        self.stacks: list[torch.Tensor] = []
        self.members: list[list[int]] = []  # per stack: layer of each slot
        self.views: dict[int, torch.Tensor] = {}  # layer -> its slot (a view into its stack)
        self.loose: dict[int, torch.Tensor] = {}
        self.seen: set[int] = set()

    def capture(self, i: int, t: torch.Tensor) -> None:
        if i in self.seen:  # a layer called twice in one forward: its first output counts
            return
        self.seen.add(i)
        view = self.views.get(i)
        if view is not None and view.shape == t.shape and view.dtype == t.dtype and view.device == t.device:
            view.copy_(t)
        else:
            self.loose[i] = t.detach().clone()

    def summarise(self) -> tuple[list[int], torch.Tensor | None, dict[int, torch.Tensor], dict[int, int]]:
        """(layers in order, their (sum, deviation, count) as a (k, 3) float64 tensor, samples per
        layer, numel per layer); clears the capture for the next cadence step."""
        seen, loose = self.seen, self.loose
        self.seen, self.loose = set(), {}
        layers: list[int] = []
        rows: list[torch.Tensor] = []
        samples: dict[int, torch.Tensor] = {}
        numel: dict[int, int] = {}
        with torch.no_grad():
            for stack, members in zip(self.stacks, self.members, strict=True):
                keep = [j for j, i in enumerate(members) if i >= 0 and i in seen and i not in loose]
                if not keep:
                    continue
                total, dev, count, n, smp = stacked_activation_summary(stack, self.threshold, self.sample)
                row = torch.stack([total, dev, count], 1).double()
                rows.append(row[keep] if len(keep) < len(members) else row)
                per_row = smp.unbind(0)
                for j in keep:
                    layers.append(members[j])
                    samples[members[j]] = per_row[j]
                    numel[members[j]] = n
            for i, t in loose.items():
                total, dev, count, n, smp = activation_summary(t, self.threshold, self.sample)
                rows.append(torch.stack([total, dev, count]).double().reshape(1, 3))
                layers.append(i)
                samples[i] = smp
                numel[i] = n
            self._plan(loose)
        return layers, (torch.cat(rows) if rows else None), samples, numel

    def _plan(self, loose: dict[int, torch.Tensor]) -> None:
        """Give slots to outputs that came without one: same shape, dtype and device share a stack."""
        if not loose:
            return
        self.members = [[-1 if i in loose else i for i in ms] for ms in self.members]  # -1: slot given up
        for i in loose:
            self.views.pop(i, None)
        by_kind: dict[tuple, list[int]] = {}
        for i, t in loose.items():
            by_kind.setdefault((tuple(t.shape), t.dtype, t.device), []).append(i)
        for (shape, dtype, device), layers in by_kind.items():
            if len(layers) < 2:
                continue
            stack = torch.empty((len(layers), *shape), dtype=dtype, device=device)
            self.stacks.append(stack)
            self.members.append(layers)
            for j, i in enumerate(layers):
                self.views[i] = stack[j]
        live = [k for k, ms in enumerate(self.members) if any(i >= 0 for i in ms)]  # drop emptied stacks
        self.stacks = [self.stacks[k] for k in live]
        self.members = [self.members[k] for k in live]


def activation_stats(numel: list[int], values: np.ndarray, relu) -> tuple[np.ndarray, ...]:
    """(act_mean, act_std, act_saturation) from each output's size and the first three values of
    its `activation_summary` on the host (`values`, shape (k, 3)); `relu`, one flag or one per
    output: the count is of live units (saturation = the dead fraction)."""
    n = np.array(numel, np.float64)
    with np.errstate(all="ignore"):
        mean = values[:, 0] / n
        std = np.where(n > 1, values[:, 1] / np.sqrt(np.maximum(n - 1, 1)), 0.0)
        sat = np.where(relu, n - values[:, 2], values[:, 2]) / n
    return mean, std, sat


class _UpdatePlan:
    """The weights around one optimiser step: ||w_before||, ||w_after|| and ||w_after - w_before||
    per parameter, in few dispatches. Small parameters of one shape, dtype and device are copied
    stacked (`torch.stack(..., out=)`, one op per group) and measured stacked; large ones are
    copied one by one, and only those that have a gradient (the others do not move). Buffers are
    kept from one update step to the next."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        plan = NormPlan([p.detach() for p in params], WEIGHT_STACK_MAX)
        self.groups = plan.groups
        self.large = plan.rest
        self.n = len(params)
        with torch.no_grad():
            self.snaps = [torch.empty((len(ks), *params[ks[0]].shape), dtype=params[ks[0]].dtype, device=params[ks[0]].device) for ks in self.groups]
            self.now = [torch.empty_like(s) for s in self.snaps]
        self.bufs: dict[int, torch.Tensor] = {}
        self.kept: list[int] = []  # large parameters copied at the last snapshot
        self.before: list[torch.Tensor] = []
        self.pending = False

    def fits(self, params: list[torch.Tensor]) -> bool:
        """False once the model was moved or cast (the stacked buffers no longer fit)."""
        return len(params) == self.n and all(
            params[ks[0]].shape == snap.shape[1:] and params[ks[0]].dtype == snap.dtype and params[ks[0]].device == snap.device
            for ks, snap in zip(self.groups, self.snaps, strict=True)
        )

    def snapshot(self, params: list[torch.Tensor], present: list[int]) -> None:
        with torch.no_grad():
            before = []
            for ks, snap in zip(self.groups, self.snaps, strict=True):
                torch.stack([params[k].detach() for k in ks], out=snap)
                before.append(stacked_norms(snap))
            have = set(present)
            self.kept = [k for k in self.large if k in have]
            src, dst = [], []
            for k in self.kept:
                p = params[k].detach()
                b = self.bufs.get(k)
                if b is None or b.shape != p.shape or b.dtype != p.dtype or b.device != p.device:
                    b = self.bufs[k] = torch.empty_like(p)
                src.append(p)
                dst.append(b)
            if src:
                torch._foreach_copy_(dst, src)
                before.append(torch.stack(grouped_norms(dst)))
        self.before = before
        self.pending = True

    def measure(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """[before..., after..., moved...] as 1-D tensors; `unpack` knows the layout."""
        self.pending = False
        after, moved = [], []
        with torch.no_grad():
            for ks, snap, now in zip(self.groups, self.snaps, self.now, strict=True):
                torch.stack([params[k].detach() for k in ks], out=now)
                after.append(stacked_norms(now))
                moved.append(stacked_norms(now.sub_(snap)))
            if self.large:
                after.append(torch.stack(grouped_norms([params[k].detach() for k in self.large])))
            if self.kept:
                prev = [self.bufs[k] for k in self.kept]
                torch._foreach_sub_(prev, [params[k].detach() for k in self.kept])  # now -Δw
                moved.append(torch.stack(grouped_norms(prev)))
        return self.before + after + moved

    def unpack(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per parameter (before, after, moved); a large parameter that was not kept did not move."""
        grouped = [k for ks in self.groups for k in ks]
        g, kept, large = len(grouped), len(self.kept), len(self.large)
        before_v, flat = flat[: g + kept], flat[g + kept :]
        after_v, flat = flat[: g + large], flat[g + large :]
        moved_v = flat[: g + kept]
        after = np.empty(self.n)
        after[grouped + self.large] = after_v
        before = after.copy()
        before[grouped + self.kept] = before_v
        moved = np.zeros(self.n)
        moved[grouped + self.kept] = moved_v
        return before, after, moved


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
        self.bins = bins
        self.sample = sample
        self.params: list[nn.Parameter] = []
        owner: list[int] = []
        index: dict[int, int] = {}
        pairs: list[tuple[int, int]] = []  # (parameter, layer): a tied weight belongs to both its layers
        for i, (_, m) in enumerate(layers):
            for p in m.parameters(recurse=False):
                k = index.get(id(p))
                if k is None:  # measured once, at its first layer
                    k = index[id(p)] = len(self.params)
                    self.params.append(p)
                    owner.append(i)
                if (k, i) not in pairs:
                    pairs.append((k, i))
        self.n_layers = len(layers)
        self._owner = owner
        self._owner_arr = np.asarray(owner, np.int64)  # parameter -> its first layer (the NaN guard's)
        # every (parameter, layer) pair, for the per-layer sums: a language model's output layer
        # whose weight is the embedding's read NaN ("not used") when only the first layer counted
        self._pair_param = np.asarray([k for k, _ in pairs], np.int64)
        self._pair_layer = np.asarray([i for _, i in pairs], np.int64)
        # for the parameters that had a gradient at the last step: (their indices, how to take their
        # norms, and `_owners`' three arrays); rebuilt when that set changes
        self._grad_plan: tuple[list[int], NormPlan, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._update_plan: _UpdatePlan | None = None
        # the engine's reporting optimiser: norm plans for the weights and the update directions,
        # the weights' norms before the step, and optimiser index -> position in `params`
        self._weight_plan: NormPlan | None = None
        self._dir_plan: NormPlan | None = None
        self._before: list[torch.Tensor] | None = None
        self._opt_where: tuple | None = None
        self._host_grads: tuple[list[int], np.ndarray] = ([], np.zeros(0))  # (present, their grad norms)
        self._sparse: bool | None = None  # whether any of those gradients is sparse (an embedding's)
        self.block_grads = BlockGradNorms(self.blocks) if self.blocks else None
        self._act_hooks: list = []
        self._acts: dict[int, tuple] = {}  # layer -> activation_summary, on cadence steps (watch)
        self.capture = ActivationCapture(SATURATION.get(activation), sample)  # the engine's hooks
        self.feeds = ActivationFeeds(model)  # which layers' saturation means something
        self._acts_fed: set[int] | None = None  # with `_acts`: the caller's own `ActivationFeeds` result
        self._acts_dead: dict[int, bool] = {}  # with `_acts`: layers whose activation dies at 0 (ReLU) rather than saturates
        # gradient samples for the histograms taken before the step (`take_grad_samples`), used
        # instead of `.grad` once: a hand-written loop may zero `.grad` before the step is closed
        self.grad_samples: dict[int, torch.Tensor] | None = None
        self.edges: dict[tuple[str, int], torch.Tensor] = {}  # (kind, layer) -> fixed bin edges
        self.new_edges: list[tuple[str, int, np.ndarray]] = []  # edges fixed since last collected
        self._hist_plans: dict[str, tuple] = {}  # kind -> (key, per-value offsets and scales)
        self._enabled = True

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self._enabled = bool(on)
        if self.block_grads is not None:
            self.block_grads.enabled = self._enabled

    # ---- hooks ---------------------------------------------------------------------------
    def remove(self) -> None:
        if self.block_grads is not None:
            self.block_grads.remove()
        for h in self._act_hooks:
            h.remove()
        self._act_hooks = []

    def is_hist_step(self, step: int) -> bool:
        return step % self.hist_every == 0

    def begin_step(self, step: int) -> None:
        """Before the forward pass: arm activation capture on cadence steps only."""
        self._step = step
        if self.block_grads is not None:
            self.block_grads.reset()
        if self._enabled and self.is_hist_step(step) and not self._act_hooks:
            for i, (_, m) in enumerate(self.layers):
                self._act_hooks.append(m.register_forward_hook(self._make_act_hook(i)))
            self.feeds.arm()

    def _make_act_hook(self, i: int):
        capture = self.capture.capture
        feeds = self.feeds

        def on_forward(_mod, _inp, out):
            feeds.layer_done(i)
            t = _output_tensor(out)
            if t is not None and t.is_floating_point():
                capture(i, t.detach())

        return on_forward

    # ---- after backward -----------------------------------------------------------------
    def _per_layer(self, norms: np.ndarray) -> np.ndarray:
        """Combine per-parameter norms (all parameters, in `params` order) into per-layer norms
        (sqrt of summed squares); NaN where a layer has no parameter. Done on the host: the norms
        are already there, and it saves a handful of tiny device ops per step."""
        sq = np.bincount(self._pair_layer, weights=norms.astype(np.float64)[self._pair_param] ** 2, minlength=self.n_layers)
        have = np.bincount(self._pair_layer, minlength=self.n_layers) > 0
        out = np.sqrt(sq)
        out[~have] = np.nan
        return out

    def _owners(self, present: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the parameters in `present`: (the layer of each (parameter, layer) pair, the
        parameter's position in `present`, the layers none of them belongs to)."""
        where = np.full(len(self.params), -1, np.int64)
        where[present] = np.arange(len(present))
        keep = where[self._pair_param] >= 0
        layers = self._pair_layer[keep]
        return layers, where[self._pair_param[keep]], np.bincount(layers, minlength=self.n_layers) == 0

    def layer_grad_norms(self, present: list[int], norms: np.ndarray) -> np.ndarray:
        """`grad_norm` per layer from the norms of the parameters in `present`; the grouping is
        kept from the last step (the same parameters get gradients step after step)."""
        plan = self._grad_plan
        if plan is not None and plan[0] == present:
            layers, pick, missing = plan[2], plan[3], plan[4]
        else:
            layers, pick, missing = self._owners(present)
        out = np.sqrt(np.bincount(layers, weights=np.square(norms)[pick], minlength=self.n_layers))
        out[missing] = np.nan
        return out

    def grad_norms(
        self, block_norms: list[torch.Tensor | None], scale: torch.Tensor | None = None, grads: list | None = None
    ) -> dict:
        """Norms (on the device) of the parameter gradients, then of the blocks' output gradients
        caught in backward: {"present", "bidx", "parts", "plan"}; `parts` are 1-D tensors, decoded
        on the host by `decode_grads`. `scale`: the loss scale the backward ran with (a GradScaler's),
        which the block norms are divided by; parameter gradients are unscaled already. `grads`: the
        parameters' `.grad` as read by the caller (a thread other than the training thread must not
        read `.grad` while autograd may be writing it)."""
        if grads is None:
            grads = [p.grad for p in self.params]
        present = [j for j, g in enumerate(grads) if g is not None]
        if len(present) != len(grads):
            grads = [grads[j] for j in present]
        if self._sparse is None or self._grad_plan is None or self._grad_plan[0] != present:
            self._sparse = any(g.is_sparse for g in grads)  # checked when the set changes, not every step
        if self._sparse:
            grads = [_sparse_norm(g) if g.is_sparse else g for g in grads]
        if self._grad_plan is None or self._grad_plan[0] != present:
            self._grad_plan = (present, NormPlan(grads, GRAD_STACK_MAX), *self._owners(present))
        plan = self._grad_plan[1]
        parts = plan.parts(grads)
        bidx = [i for i, n in enumerate(block_norms) if n is not None]
        if bidx:
            caught = [block_norms[i] for i in bidx]
            if not plan.one_device or (plan.device is not None and caught[0].device != plan.device):
                caught = [n.to(plan.device or caught[0].device) for n in caught]
            stacked = torch.stack(caught)
            if scale is not None:
                stacked = stacked / scale.to(stacked.device)
            parts.append(stacked)
        return {"present": present, "bidx": bidx, "parts": parts, "plan": plan}

    @staticmethod
    def decode_grads(g: dict, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(norms of the present parameters' gradients in `present` order, block norms in `bidx`
        order) from the host copy of `g["parts"]` concatenated (more values may follow)."""
        k = len(g["present"])
        return g["plan"].unpack(flat[:k]), flat[k : k + len(g["bidx"])]

    def after_backward(self, loss: torch.Tensor) -> StepMetrics:
        """Measure gradients; one host copy. Call before `optimizer.step()` (the NaN guard needs it)."""
        bg = self.block_grads
        g = self.grad_norms(bg.values() if bg is not None else [])
        if bg is not None:
            bg.reset()
        present, bidx = g["present"], g["bidx"]
        flat = to_host(g["parts"] + [loss.detach().reshape(1)])  # the loss rides along in the same copy
        loss_v = float(flat[-1])
        param_norms, block_norms = self.decode_grads(g, flat)
        self._host_grads = (present, param_norms)
        grad_norm = self.layer_grad_norms(present, param_norms)
        act_grad = np.full(len(self.blocks), np.nan)
        act_grad[bidx] = block_norms
        first_bad = None
        if not np.isfinite(flat).all():
            # a NaN from a layer that got no gradient at all means "not used", not "non-finite"
            used = set(self._owner_arr[present].tolist())
            bad = [i for i in np.flatnonzero(~np.isfinite(grad_norm)) if i in used]
            if bad:
                first_bad = self.layer_names[max(bad)]  # backward runs from the last layer to the first
            elif not np.isfinite(loss_v):
                first_bad = "(loss)"
        return StepMetrics(loss_v, grad_norm, act_grad, first_nonfinite=first_bad)

    # ---- around the optimiser step (update cadence) ----------------------------------------
    def is_update_step(self) -> bool:
        return self._enabled and self._step % self.update_every == 0

    def before_step(self) -> None:
        """Keep the weights as they are before the optimiser step (for `update_ratio`), on the
        update cadence only. Large tensors are kept only when they have a gradient: optimisers leave
        the others alone, so their update is exactly zero."""
        if not self.is_update_step() or not self.params:
            return
        self.snapshot(self._grad_plan[0] if self._grad_plan is not None else [])

    def after_step(self, metrics: StepMetrics) -> StepMetrics:
        """`weight_norm` and `update_ratio` after the optimiser step; one host copy."""
        if self._update_plan is None or not self._update_plan.pending:
            return metrics
        metrics.weight_norm, metrics.update_ratio = self.layer_updates(to_host(self.update_norms()))
        return metrics

    def snapshot(self, present: list[int]) -> None:
        """Before the optimiser step: copy the weights (into buffers kept from one update step to
        the next: fresh ones every time would cost the allocator's page faults) and take their norms
        while they are in cache."""
        if self._update_plan is None or not self._update_plan.fits(self.params):
            self._update_plan = _UpdatePlan(self.params)
        self._update_plan.snapshot(self.params, present)

    def update_norms(self, params: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """After the step: 1-D tensors with the norms of the weights before, of all weights after
        and of the change (see `_UpdatePlan`); decoded by `layer_updates`. `params`: the parameters
        detached by the training thread, for a caller on another thread."""
        return self._update_plan.measure(self.params if params is None else params)

    def layer_updates(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(`weight_norm`, `update_ratio`) per layer from `update_norms`' values on the host."""
        before, after, moved = self._update_plan.unpack(flat)
        weight = self._per_layer(after)
        with np.errstate(all="ignore"):
            ratio = self._per_layer(moved) / self._per_layer(before)
        return weight, ratio

    # ---- the engine's optimiser, which reports its own step (update cadence) -----------------
    def weights_before(self) -> None:
        """Before an update step of an optimiser that reports its step (`ForeachOptimizer`): the
        weights' norms, left on the device for `after_update`. Nothing is copied."""
        ps = [p.detach() for p in self.params]
        plan = self._weight_plan
        if plan is None or not plan.fits(ps):
            # only small weights are stacked: a norm needs no copy, and stacking big ones would be one
            plan = self._weight_plan = NormPlan(ps, GRAD_STACK_MAX)
        self._before = plan.parts(ps)

    def after_update(self, metrics: StepMetrics, report, opt_params: list[torch.Tensor]) -> StepMetrics:
        """`weight_norm` and `update_ratio` from the optimiser's `UpdateReport` (parameter
        `opt_params[idx[k]]` moved by `scales[k] * directions[k]`): the norms of the weights before
        (`weights_before`) and after, and of the directions, in one host copy. This is the update
        the optimiser computed; where a step is far below a weight's float resolution (the first
        layers of a deep plain stack) the stored weight may not change at all, and the ratio still
        shows how small the step was."""
        before, self._before = self._before, None
        if before is None or self._weight_plan is None:
            return metrics
        ps = [p.detach() for p in self.params]
        wplan = self._weight_plan
        parts = before + wplan.parts(ps)
        where = self._opt_positions(report.idx, opt_params)
        dplan = None
        if report.directions and not report.of_grads:
            dirs = [d.detach() for d in report.directions]
            dplan = self._dir_plan
            if dplan is None or not dplan.fits(dirs):
                dplan = self._dir_plan = NormPlan(dirs, GRAD_STACK_MAX)
            parts += dplan.parts(dirs)
        flat = to_host(parts)
        n = wplan.n
        w_before, w_after = wplan.unpack(flat[:n]), wplan.unpack(flat[n : 2 * n])
        moved = np.zeros(len(self.params))
        if report.directions:
            if dplan is not None:
                dir_norms = dplan.unpack(flat[2 * n :])
            else:  # plain SGD: the directions are the gradients, measured after backward
                grad_norms = np.zeros(len(self.params))
                present, norms = self._host_grads
                grad_norms[present] = norms
                dir_norms = grad_norms[where]
            keep = where >= 0  # a parameter the probe does not measure (none of its layers) is left out
            moved[where[keep]] = np.abs(np.asarray(report.scales, np.float64)[keep]) * dir_norms[keep]
        metrics.weight_norm = self._per_layer(w_after)
        with np.errstate(all="ignore"):
            metrics.update_ratio = self._per_layer(moved) / self._per_layer(w_before)
        return metrics

    def _opt_positions(self, idx: list[int], opt_params: list[torch.Tensor]) -> np.ndarray:
        """For each optimiser index in `idx`: the position of that parameter in `params`, or -1."""
        cached = self._opt_where
        if cached is not None and cached[0] == idx and cached[1] is opt_params:
            return cached[2]
        index = {id(p): k for k, p in enumerate(self.params)}
        where = np.asarray([index.get(id(opt_params[i]), -1) for i in idx], np.int64)
        self._opt_where = (list(idx), opt_params, where)
        return where

    def release(self) -> None:
        """Drop the kept weights and any captured activations."""
        self._update_plan = None
        self._before = None
        self._acts = {}
        self.capture = ActivationCapture(self.capture.threshold, self.capture.sample)

    # ---- cadence: activation statistics and histograms ------------------------------------
    def collect_cadence(self) -> tuple[dict[str, np.ndarray], dict[str, dict[int, np.ndarray]]]:
        """Activation statistics per layer and histogram counts per kind; call after the step.

        Returns ({"act_mean": (L,), ...}, {"weight": {layer: counts}, ...}); new fixed edges are
        left in `self.new_edges` for the recording.
        """
        for h in self._act_hooks:
            h.remove()
        self._act_hooks = []
        fed = self.feeds.disarm()
        acts, self._acts = self._acts, {}
        dead: bool | np.ndarray = self.activation not in SATURATION
        if acts:  # summaries taken by the caller's hooks (`gradviz.watch`), which has its own feeds
            fed, self._acts_fed = self._acts_fed, None
            act_layers = sorted(acts)
            per_layer, self._acts_dead = self._acts_dead, {}
            dead = np.array([per_layer.get(i, dead) for i in act_layers], bool)
            act_values = torch.stack([v.double() for i in act_layers for v in acts[i][:3]]).reshape(-1, 3)
            act_samples = {i: acts[i][4] for i in act_layers}
            act_numel = {i: acts[i][3] for i in act_layers}
        else:
            act_layers, act_values, act_samples, act_numel = self.capture.summarise()
        if not act_layers and not self.params:
            return {}, {}
        samples: dict[str, dict[int, torch.Tensor]] = {"weight": {}, "grad": {}, "activation": {}}
        shown = [histogram_parameter(m) for _, m in self.layers]
        for i, w in enumerate(shown):
            samples["weight"][i] = self._sample(w.detach())
        early, self.grad_samples = self.grad_samples, None
        samples["grad"] = early if early is not None else self._grad_samples(shown)
        for i in sorted(act_samples):
            samples["activation"][i] = act_samples[i]
        hists = {kind: self._batched_histogram(kind, per) for kind, per in samples.items() if per}
        # one host copy for everything measured on this cadence step
        parts = [h.reshape(-1).double() for h in hists.values()]
        if act_layers:
            parts.insert(0, act_values.reshape(-1))
        packed = torch.cat(parts).cpu().numpy()
        stat_out: dict[str, np.ndarray] = {}
        off = 0
        if act_layers:
            off = 3 * len(act_layers)
            values = activation_stats([act_numel[i] for i in act_layers], packed[:off].reshape(-1, 3), dead)
            for key, v in zip(("act_mean", "act_std", "act_saturation"), values, strict=True):
                stat_out[key] = np.full(self.n_layers, np.nan)
                stat_out[key][act_layers] = v
            if fed is not None:  # a layer that feeds no activation has no saturation to speak of
                unfed = np.setdiff1d(np.arange(self.n_layers), np.fromiter(fed, np.int64, len(fed)))
                stat_out["act_saturation"][unfed] = np.nan
        hist_out: dict[str, dict[int, np.ndarray]] = {}
        for kind in hists:
            per = hist_out.setdefault(kind, {})
            for i in samples[kind]:
                per[i] = packed[off : off + self.bins].astype(np.float32)
                off += self.bins
        return stat_out, hist_out

    def _grad_samples(self, shown: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        """Per layer with a gradient: the sample of the `.grad` of its histogram parameter
        (`shown`, one per layer), as views."""
        out = {}
        for i, w in enumerate(shown):
            if w.grad is not None:
                g = w.grad.detach()
                # a sparse gradient (`nn.Embedding(sparse=True)`): the rows it touched; the others are
                # implicit zeros, left out as they are by the optimiser
                out[i] = self._sample(g.coalesce().values() if g.is_sparse else g)
        return out

    def take_grad_samples(self) -> None:
        """Keep copies of the gradient samples now, for this cadence step's histograms."""
        shown = [histogram_parameter(m) for _, m in self.layers]
        self.grad_samples = {i: t.clone() for i, t in self._grad_samples(shown).items()}

    def _batched_histogram(self, kind: str, per_layer: dict[int, torch.Tensor]) -> torch.Tensor:
        """Histograms of every layer of one kind with a single bincount: each value becomes
        layer_slot * bins + its bin under that layer's fixed edges (clamped into the end bins).
        The per-value offsets and scales depend only on which layers and how many values, so
        they are kept from one cadence step to the next."""
        layers = list(per_layer)
        for i in layers:
            if (kind, i) not in self.edges:
                self.edges[(kind, i)] = self._fix_edges(per_layer[i])
                self.new_edges.append((kind, i, self.edges[(kind, i)].numpy()))
        xs = [per_layer[i].reshape(-1) for i in layers]
        dev = xs[0].device
        key = (dev, tuple(layers), tuple(x.numel() for x in xs))
        plan = self._hist_plans.get(kind)
        if plan is None or plan[0] != key:
            sizes = torch.tensor(key[2], device=dev)
            lo = torch.tensor([float(self.edges[(kind, i)][0]) for i in layers], dtype=torch.float64)
            hi = torch.tensor([float(self.edges[(kind, i)][-1]) for i in layers], dtype=torch.float64)
            scale = self.bins / (hi - lo)
            # a range of denormals (the first layers of a 200-block plain stack) has a scale past
            # float32's largest value: inf * 0 would give NaN bins, so such plans map in float64
            wide = bool((scale.abs() > 1e30).any())
            per_value = torch.stack([scale, -lo * scale]).to(torch.float64 if wide else torch.float32).to(dev)
            scale_e, shift_e = torch.repeat_interleave(per_value, sizes, dim=1).unbind()
            offs = torch.repeat_interleave(torch.arange(len(layers), device=dev) * self.bins, sizes)
            plan = self._hist_plans[kind] = (key, scale_e, shift_e, offs)
        _, scale_e, shift_e, offs = plan
        x = torch.cat(xs)
        if x.dtype != scale_e.dtype:
            x = x.to(scale_e.dtype)
        b = torch.addcmul(shift_e, x, scale_e)
        # NaN / inf values are counted nowhere; on CPU a finite sum (one cheap reduction; isfinite
        # over every value is slow there) proves there are none, on a GPU the check would cost a sync
        clean = x.device.type == "cpu" and bool(torch.isfinite(x.sum()))
        if not clean:
            b.nan_to_num_(0.0)
        idx = b.floor_().clamp_(0, self.bins - 1).long().add_(offs)
        if not clean:
            idx = idx[torch.isfinite(x)]
        return torch.bincount(idx, minlength=len(layers) * self.bins).reshape(len(layers), self.bins)

    def _sample(self, t: torch.Tensor) -> torch.Tensor:
        if t.is_complex():  # a complex layer's histogram is of magnitudes (a cast kept the real part, with a warning)
            t = t.abs()
        return strided_sample(t, self.sample)

    def _fix_edges(self, x: torch.Tensor) -> torch.Tensor:
        """Symmetric range of twice the first sample's largest magnitude (values beyond are clamped
        into the end bins), so later columns of the same layer compare."""
        finite = x[torch.isfinite(x)]
        m = float(finite.abs().max()) if finite.numel() else 0.0
        r = 2.0 * m if m > 0 else 1.0
        return torch.linspace(-r, r, self.bins + 1, dtype=torch.float64)
