"""The layer table: every layer's type, output shape, parameter count and FLOPs, in forward order.

A layer is a module that owns parameters directly. The order is found with forward hooks during one
dummy forward of a batch of 2 in eval mode (no gradients, so no running statistic moves); the model's
train/eval flags are restored afterwards. A layer the forward skipped (a norm switched off, an
unused shortcut) is listed after the layer before it in `named_modules()` order, with output shape
() and 0 FLOPs.

FLOPs are per example, counting a multiply-add as 2 (so they are twice the "MACs" some tools print):
- Linear: 2·in·out per output row, plus `out` for the bias.
- Conv: 2·(Cin/groups)·prod(kernel)·Cout·prod(output spatial), plus Cout·prod(output spatial) for the
  bias.
- BatchNorm / LayerNorm / GroupNorm / InstanceNorm: 2·numel(output) (a scale and a shift per value).
- MultiheadAttention: its input projections, 2·L·E·(E + kdim + vdim) plus 3·L·E for the biases, and
  the scores and their weighted sum, 4·L²·E, for L positions (key length taken as L: self-attention).
  Its `out_proj` is never called as a module (the attention's functional form uses its weight), so
  it is reported with the attention's output shape and a Linear's FLOPs on it.
- RNN / LSTM / GRU: per position, 2 FLOPs per weight plus one per bias, over every layer and direction.
- A parametrization (`weight_norm`, `spectral_norm`): 0; its shape is that of the weight it computes.
- Any other layer type: 0 (not modelled).

Shapes are per example: dim 0 is the batch, except for sequence modules that take (L, N, ...) by
default (`batch_first=False` attention and recurrent layers), whose batch is dim 1, and their
unbatched 2-D calls, which are one example.
For ResNet-18 on 3x224x224 this gives about 3.6 GFLOPs (1.8 G multiply-adds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .probes import by_first_run, param_layers
from .table import SKIPPED_NOTE

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    output_shape: tuple[int, ...]  # one example, no batch dim; () when the forward skipped it
    params: int
    flops: int  # per example, see the module docstring
    tied: int = 0  # of `params`, those an earlier row owns too (a tied embedding and output layer)


def first_tensor(out: object) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for item in out:
            t = first_tensor(item)
            if t is not None:
                return t
    if isinstance(out, dict):
        for item in out.values():
            t = first_tensor(item)
            if t is not None:
                return t
    return None


_SEQUENCE = (nn.MultiheadAttention, nn.RNNBase)


def computes_a_weight(m: nn.Module) -> bool:
    """A parametrization (`weight_norm`, `spectral_norm`): a layer whose output is the weight it
    computes for the layer it belongs to, not an activation, and has no batch dimension."""
    return isinstance(m, nn.utils.parametrize.ParametrizationList)


def one_example(m: nn.Module, out: torch.Tensor) -> torch.Tensor | None:
    """The part of `m`'s output that belongs to one example (see the module docstring); None for a
    0-d output."""
    if out.dim() == 0:
        return None
    if computes_a_weight(m):
        return out
    if isinstance(m, _SEQUENCE):
        if out.dim() == 2:  # an unbatched sequence: (L, E)
            return out
        if out.dim() == 3 and not getattr(m, "batch_first", False):
            return out[:, 0]
    return out[0]


def example_shape(m: nn.Module, out: torch.Tensor) -> tuple[int, ...]:
    ex = one_example(m, out)
    return () if ex is None else tuple(ex.shape)


def _linear_flops(m: nn.Linear, per_example: torch.Tensor) -> int:
    rows = per_example.numel() // m.out_features
    bias = m.out_features if m.bias is not None else 0
    return rows * (2 * m.in_features * m.out_features + bias)


def _is_hf_conv1d(m: nn.Module, per_example: torch.Tensor) -> bool:
    """Hugging Face's `Conv1D` (GPT, GPT-2): weight (in, out), `nf` outputs; it counted 0 FLOPs."""
    w = getattr(m, "weight", None)
    return (
        type(m).__name__ == "Conv1D"
        and isinstance(w, torch.Tensor)
        and w.dim() == 2
        and getattr(m, "nf", None) == w.shape[1]
        and per_example.dim() > 0
        and per_example.shape[-1] == w.shape[1]
    )


def _attention_flops(m: nn.MultiheadAttention, per_example: torch.Tensor) -> int:
    length = per_example.shape[0] if per_example.dim() == 2 else 1
    e = m.embed_dim
    bias = 3 * e if m.in_proj_bias is not None else 0
    return length * (2 * e * (e + m.kdim + m.vdim) + bias) + 4 * length * length * e


def _recurrent_flops(m: nn.RNNBase, per_example: torch.Tensor) -> int:
    length = per_example.shape[0] if per_example.dim() == 2 else 1
    per_step = sum(2 * p.numel() if name.startswith("weight") else p.numel() for name, p in m.named_parameters(recurse=False))
    return length * per_step


def borrowed_rows(m: nn.Module, out: torch.Tensor) -> list[tuple[nn.Module, tuple[int, ...], int]]:
    """Layers that a layer's forward uses without calling them, with the (shape, FLOPs) they get
    from that call: a MultiheadAttention's `out_proj`."""
    if isinstance(m, nn.MultiheadAttention) and isinstance(m.out_proj, nn.Linear):
        ex = one_example(m, out)
        if ex is not None:
            return [(m.out_proj, tuple(ex.shape), _linear_flops(m.out_proj, ex))]
    return []


def layer_flops(m: nn.Module, out: torch.Tensor) -> int:
    """FLOPs per example for one call of `m` whose batched output is `out`."""
    per_example = one_example(m, out)
    if per_example is None or computes_a_weight(m):
        return 0
    if isinstance(m, nn.MultiheadAttention):
        return _attention_flops(m, per_example)
    if isinstance(m, nn.RNNBase):
        return _recurrent_flops(m, per_example)
    if isinstance(m, nn.Linear):
        return _linear_flops(m, per_example)
    if _is_hf_conv1d(m, per_example):  # GPT-2's layers: a Linear with its weight transposed
        bias = m.nf if getattr(m, "bias", None) is not None else 0
        return per_example.numel() // m.nf * (2 * m.weight.numel() + bias)
    if isinstance(m, _CONVS):
        spatial = math.prod(per_example.shape[1:])
        kernel = math.prod(m.kernel_size)
        macs = (m.in_channels // m.groups) * kernel * m.out_channels * spatial
        bias = m.out_channels * spatial if m.bias is not None else 0
        return 2 * macs + bias
    if isinstance(m, _TRANSPOSED):  # every input position spreads over a kernel of every output channel
        spatial = math.prod(per_example.shape[1:])
        macs = m.in_channels * (m.out_channels // m.groups) * math.prod(m.kernel_size) * _transposed_input_size(m, per_example.shape[1:])
        return 2 * macs + (m.out_channels * spatial if m.bias is not None else 0)
    if isinstance(m, _NORMS):
        return 2 * per_example.numel()
    return 0


def _transposed_input_size(m: nn.Module, out_spatial) -> int:
    """Input positions of a transposed convolution from its output's size: its size rule,
    out = (in - 1) stride - 2 padding + dilation (kernel - 1) + output_padding + 1, solved for in."""
    n = 1
    for k, size in enumerate(out_spatial):
        span = m.dilation[k] * (m.kernel_size[k] - 1) + m.output_padding[k] + 1
        n *= (size - span + 2 * m.padding[k]) // m.stride[k] + 1
    return n


def summarize(
    model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device = "cpu"
) -> list[LayerRow]:
    """One row per layer of `model` (modules owning parameters directly), in forward order.

    `input_shape` is one example's shape; the dummy input is a batch of 2 zeros in the model's
    floating dtype on `device`. A module called more than once is reported at its first call.
    """
    layers = param_layers(model)  # the probes' layers and names
    seen: dict[str, tuple[tuple[int, ...], int]] = {}
    order: list[str] = []
    names = {id(m): name for name, m in layers}

    def started(name: str):
        # the order is that of calls, as the probes take it: a layer that owns parameters and
        # holds others (the model itself, an attention) comes before what runs inside it
        def pre_hook(_m: nn.Module, _inputs: object) -> None:  # returns None: the input is left as it is
            if name not in order:
                order.append(name)

        return pre_hook

    def hook_for(name: str):
        def hook(m: nn.Module, _inputs: object, out: object) -> None:
            if name in seen:
                return
            t = first_tensor(out)
            batched = t is not None and t.dim() > 0
            seen[name] = (example_shape(m, t), layer_flops(m, t)) if batched else ((), 0)
            for used, shape, flops in borrowed_rows(m, t) if batched else []:  # placed after `m`: it never runs
                other = names.get(id(used))
                if other is not None and other not in seen:
                    seen[other] = (shape, flops)

        return hook

    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_pre_hook(started(name)) for name, m in layers]
    handles += [m.register_forward_hook(hook_for(name)) for name, m in layers]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((2, *input_shape), dtype=dtype, device=device))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode

    # skipped layers after their predecessor in named_modules() order: the probes' rule
    modules = dict(layers)
    placed = [name for name, _ in by_first_run(layers, {id(modules[n]): k for k, n in enumerate(order)})]

    rows = []
    tied = tied_counts([modules[name] for name in placed])
    for name, shared in zip(placed, tied, strict=True):
        m = modules[name]
        shape, flops = seen.get(name, ((), 0))
        params = sum(p.numel() for p in m.parameters(recurse=False))
        rows.append(LayerRow(name, type(m).__name__, shape, params, flops, shared))
    return rows


def tied_counts(layers: list[nn.Module]) -> list[int]:
    """For each layer, how many of its own parameters' elements an earlier layer owns too: a GPT's
    output layer tied to its embedding, T5's `shared` embedding. A total counts each once."""
    seen: set[int] = set()
    out = []
    for m in layers:
        own = list(m.parameters(recurse=False))
        out.append(sum(p.numel() for p in own if id(p) in seen))
        seen.update(id(p) for p in own)
    return out


def params_cell(params: int, tied: int) -> str:
    """"19,200", or "19,200 (tied)" for a layer whose weights an earlier layer owns too."""
    if not tied:
        return f"{params:,}"
    return f"{params:,} (tied)" if tied == params else f"{params:,} ({tied:,} tied)"


def params_total(total: str, tied: int) -> str:
    """The table's parameter total (`total` as the table writes numbers), each tied one counted once."""
    return f"{total} parameters" + (" (tied ones counted once)" if tied else "")


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} "


def format_table(rows: list[LayerRow]) -> str:
    """An aligned text table of `rows` with a total line."""
    header = ("layer", "type", "output shape", "params", "FLOPs")
    body = [
        (
            r.name,
            r.type,
            "(" + ", ".join(str(s) for s in r.output_shape) + ")" if r.output_shape else "-",
            params_cell(r.params, r.tied),
            f"{r.flops:,}",
        )
        for r in rows
    ]
    tied = sum(r.tied for r in rows)
    total_params = sum(r.params for r in rows) - tied
    total_flops = sum(r.flops for r in rows)
    total = (
        f"total ({len(rows)} layers)",
        "",
        "",
        f"{total_params:,}",
        f"{total_flops:,}",
    )
    widths = [max(len(row[i]) for row in (header, *body, total)) for i in range(5)]
    right = (False, False, False, True, True)

    def fmt(row: tuple[str, ...]) -> str:
        cells = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    lines = [fmt(header), rule, *(fmt(row) for row in body), rule, fmt(total)]
    lines.append(
        f"{params_total(_human(total_params).rstrip(), tied)}, "
        f"{_human(total_flops)}FLOPs per example (a multiply-add counts 2)"
    )
    if any(not r.output_shape for r in rows):
        lines.append(SKIPPED_NOTE)
    return "\n".join(lines)
