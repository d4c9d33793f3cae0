"""`gradviz.watch`: record a user's own training loop into a run file.

    w = gradviz.watch(model, optimizer, path="runs/mine.gradviz", name="mine", hist_every=50)
    for x, y in loader:
        optimizer.zero_grad(); loss = loss_fn(model(x), y); loss.backward()
        optimizer.step()
        w.log(loss=loss)          # the only line added per step
    w.close()                     # or `with gradviz.watch(...) as w:`

How a step is measured without the user calling into gradviz between backward and step:
- a forward pre-hook on the model marks the start of a step (and, on histogram steps, arms
  activation hooks for that one forward pass);
- `optimizer.register_step_pre_hook` measures the gradients (`grad_norm` per layer, `act_grad_norm`
  per block) and, every `update_every` recorded steps, keeps the weights; with a `GradScaler` this runs inside `scaler.step`, after
  `unscale_`, so the gradients are the true ones; `register_step_post_hook` measures `weight_norm` and
  `update_ratio` after the real step; without an optimizer (an update written by hand) the
  gradients are measured as backward ends (a hook on the model's output queues an autograd
  callback), the weights are kept as an update step's forward pass begins and the change is
  measured at `log`;
- `w.log(loss=...)` closes the step: everything measured stays on the device until then and comes to
  the host in one copy (histogram steps add one more), then goes to a `Recording` that a
  `RunFileWriter` persists (committed at least every 0.5 s, so `gradviz open FILE --follow` shows it
  live).
On CPU (`background=True`) the measuring runs on a worker thread (`Background`): see `_record`.
When the optimizer step did not run (a `GradScaler` skipped it over inf/NaN gradients) the
gradients are measured in `log` instead and a `nonfinite` event names the first bad layer.
With a `GradScaler` the block-output gradients are caught during the backward of the *scaled* loss,
so `act_grad_norm` is divided by the scale that backward used. The scaler is found on the call stack
the first time `scaler.step` calls the optimizer (or given as `scaler=`); from then on its scale is
copied at the start of each step, before `scaler.update()` can change it.

Layers and metric definitions are the engine's (`param_layers`, `Probe`'s grouping, per-layer
combination and cadence statistics, `record_step`), so a watched run reads exactly like an
experiment's. The layer order is learned once, by watching the first forward pass that records
gradients (no example input is needed, and nothing is replayed), and fixed from then on.

Blocks (the `act_grad_norm` columns), first rule that finds any wins:
1. `blocks=` given: those modules (qualified names or module objects);
2. switchable blocks (`gradviz.core.models.switches.blocks`: gradviz models, or torchvision ResNets
   passed through `make_switchable`);
3. torchvision `BasicBlock` / `Bottleneck` instances, or modules whose class name says residual
   block: contains "Residual", "BasicBlock" or "Bottleneck", or "Res" + capital ... "Block"/"Unit"
   (ResBlock, PreActResBlock, ResNetUnit; not ResizeBlock).
4. the units of the model's stacks (`repeated_units`): modules of one class repeated in a
   `Sequential` / `ModuleList` / `ModuleDict`, each with sub-modules and parameters: transformer
   layers (torch's `TransformerEncoderLayer`, GPT or BERT layers, ViT blocks), ConvNeXt or
   EfficientNet blocks, DenseNet's dense layers, and the model's own children of a repeated class
   (Inception's modules, a U-Net's down and up blocks); a unit that keeps units of its own in a
   stack named `blocks`, `layers`, `block`, `layer` or `h` (timm's stages, T5's encoder and decoder)
   yields to them; a unit inside another is not a block.
   Without this a transformer had no `act_grad_norm` at all.
The gradient of a block's output is caught with a tensor hook registered on the output in a forward
hook; such hooks see the gradient of the value the block returned even when the caller later changes
that tensor in place (`out += identity`, `ReLU(inplace=True)`), unlike module full-backward hooks,
which make in-place changes of the output an error.

The model is left as it was: hooks never return a value (so outputs are untouched), activations are
cloned (an in-place ReLU after a layer would otherwise change the kept copy), and `close()` removes
every hook, including the optimizer's. Any error inside the watch (a hook, or `log` past its argument
checks) disables it with one `error` event and a warning instead of breaking the user's training.

Under `torchrun` / DistributedDataParallel only rank 0 records (`record_all_ranks=True`: every rank,
rank r > 0 to the path with `.rank<r>` before the suffix). Layer names come from the wrapped module,
so they carry no `module.` prefix.
"""

from __future__ import annotations

import datetime as _dt
import re
import sys
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .activation_feeds import ActivationFeeds, is_activation_module, module_kind
from .background import Background
from .probes import (
    HIST_SAMPLE,
    SATURATION,
    BlockGradNorms,
    Probe,
    StepMetrics,
    activation_summary,
    by_first_run,
    param_layers,
    saturated_counts,
)
from .recording import BLOCK_METRICS, LAYER_METRICS, Recording
from .runfile import RunFileWriter
from .summary import (
    borrowed_rows,
    computes_a_weight,
    example_shape,
    first_tensor,
    layer_flops,
    tied_counts,
)
from .training import loss_message, record_step

_NAN = float("nan")
_BLOCK_NAME = re.compile(r"Residual|Res(?=idual|[A-Z_]).*(Block|Unit)|(^|_)res(idual)?_?(block|unit)|BasicBlock|Bottleneck")


# ---- helpers ------------------------------------------------------------------------------------


def torch_optimizer(optimizer):
    """The torch optimizer inside a wrapper, whose step hooks run: accelerate's `AcceleratedOptimizer`
    (what Hugging Face's Trainer hands its callbacks; hooking it raised AttributeError) keeps it in
    `.optimizer`, Lightning's `LightningOptimizer` in `._optimizer`. Anything else is refused in one
    line, before any hook is placed."""
    given = optimizer
    for _ in range(4):
        if optimizer is None or hasattr(optimizer, "_optimizer_step_pre_hooks"):
            return optimizer
        optimizer = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if optimizer is None:
            break
    raise TypeError(f"gradviz.watch: optimizer: a {type(given).__name__} is not a torch.optim.Optimizer (pass the optimizer, or None)")


def sharded_by(model: nn.Module) -> str:
    """What shards the model's parameters, "" when nothing does: FSDP (`fully_shard`, whose
    parameters are DTensors outside a pass and views of a freed all-gather buffer inside one, or
    the FullyShardedDataParallel wrapper), or tensor parallelism's DTensors."""
    fsdp: tuple[type, ...] = ()
    try:
        from torch.distributed import fsdp as _fsdp

        fsdp = tuple(t for t in (getattr(_fsdp, "FSDPModule", None), getattr(_fsdp, "FullyShardedDataParallel", None)) if t)
    except Exception:  # noqa: BLE001 - a torch built without distributed has no FSDP either
        pass
    if fsdp and any(isinstance(m, fsdp) for m in model.modules()):
        return "FSDP"
    if any(type(p).__name__ == "DTensor" for p in model.parameters()):
        return "DTensor parameters"
    return ""


def unwrap(model: nn.Module) -> nn.Module:
    """The module that holds the layers: inside DistributedDataParallel / DataParallel and
    `torch.compile` wrappers, so layer names are those of the plain model."""
    for _ in range(8):
        inner = None
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            inner = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            inner = model._orig_mod
        if inner is None:
            return model
        model = inner
    return model


def runs_compiled(model: nn.Module) -> bool:
    """Whether `model` or any module in it runs through `torch.compile` (a wrapper, or
    `Module.compile()` in place); found without importing torch._dynamo."""
    return any(hasattr(m, "_orig_mod") or getattr(m, "_compiled_call_impl", None) is not None for m in (model, *model.modules()))


def compiled_fullgraph(model: nn.Module) -> bool:
    """Whether `model` or a module in it is compiled with `fullgraph=True`, where any graph break
    (a hook that registers hooks, or one run as plain Python) is an error in the user's forward."""
    for m in (model, *model.modules()):
        ctx = getattr(m, "dynamo_ctx", None)  # a torch.compile wrapper
        if getattr(ctx, "fullgraph", False):
            return True
        fn = getattr(m, "_compiled_call_impl", None)  # Module.compile(): its options live in the closure
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                if getattr(cell.cell_contents, "fullgraph", False) is True:
                    return True
            except ValueError:  # an empty cell
                continue
    return False


# the open watches of each model (id of the unwrapped module -> weak references): a notebook cell
# run again made a second watch while the first, never closed, kept recording every step into its file
_OPEN_WATCHES: dict[int, list[weakref.ref]] = {}


class _SharedFile:
    """One run file that several open watches record into, each its own run: a GAN's generator
    and discriminator, an actor and its critic. The second watch of the same path had opened a
    second writer that replaced the first's file (the generator's run was lost without a word)."""

    def __init__(self, path: Path) -> None:
        self.recording = Recording()
        self.writer = RunFileWriter(path, self.recording)
        self.names: set[str] = set()


_SHARED_FILES: dict[str, _SharedFile] = {}  # resolved path -> the file its open watches share


def _file_key(path) -> str:
    return str(Path(path).expanduser().resolve())


def _join_file(key: str, path: Path, name: str) -> _SharedFile:
    shared = _SHARED_FILES.get(key)
    if shared is not None and name in shared.names:
        raise ValueError(
            f"gradviz.watch: {path} already records a run named {name!r} for another watch; "
            "give this one another name= (one run per model in a shared file)"
        )
    if shared is None:
        shared = _SHARED_FILES[key] = _SharedFile(path)
    shared.names.add(name)
    return shared


def _leave_file(key: str, name: str, bg: Background | None) -> None:
    """This watch is done with its file: its worker stops; the last watch of the file closes it.
    `key` is the one taken when it joined: the working directory may have changed since."""
    if bg is not None:
        bg.stop()
    shared = _SHARED_FILES.get(key)
    if shared is None:
        return
    shared.names.discard(name)
    if not shared.names:
        del _SHARED_FILES[key]
        shared.writer.close()


def _watch_key(path, name: str) -> tuple[str, str]:
    """What makes two watches of one model the same recording: the file, or for watches given no
    path (each gets a new file) the run's name."""
    if path is None:
        return ("default", str(name))
    return ("path", _file_key(path))


def scripted(m: nn.Module) -> bool:
    """A TorchScript module (`torch.jit.script` / `trace`): it takes no Python hooks."""
    return isinstance(m, torch.jit.ScriptModule)


def dist_rank() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside an initialised process group."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:  # noqa: BLE001 - a broken distributed build means "not distributed"
        pass
    return 0, 1


def rank_path(path: str | Path, rank: int) -> Path:
    """`runs/mine.gradviz` -> `runs/mine.rank1.gradviz` (rank 0 keeps the path as given)."""
    p = Path(path)
    if rank == 0:
        return p
    return p.with_name(f"{p.stem}.rank{rank}{p.suffix}")


def is_grad_scaler(obj) -> bool:
    scaler_type = getattr(getattr(torch, "amp", None), "GradScaler", None)
    return scaler_type is not None and isinstance(obj, scaler_type)


def calling_scaler(depth: int = 8):
    """The GradScaler whose `step` is calling the optimizer right now, found on the call stack
    (`GradScaler.step` -> `_maybe_opt_step` -> `optimizer.step` -> the pre-step hook), or None."""
    f = sys._getframe(1)
    for _ in range(depth):
        f = f.f_back
        if f is None:
            return None
        if f.f_code.co_name in ("step", "_maybe_opt_step") and "self" in f.f_code.co_varnames:
            owner = f.f_locals.get("self")
            if is_grad_scaler(owner):
                return owner
    return None


def scaler_scale(scaler) -> torch.Tensor | None:
    """The scaler's current scale as a device tensor (no host sync), None when it does not scale."""
    if scaler is None or not scaler.is_enabled():
        return None
    scale = getattr(scaler, "_scale", None)  # None before the first `scale()` call
    return scale.detach() if isinstance(scale, torch.Tensor) else None


def find_blocks(model: nn.Module, explicit=None) -> list[tuple[str, nn.Module]]:
    """Residual blocks of `model`, by the rule in this module's docstring, in `named_modules()` order."""
    named = list(model.named_modules())
    if explicit is not None:
        by_name = dict(named)
        by_id = {id(m): n for n, m in named}
        out = []
        for b in explicit:
            if isinstance(b, str):
                if b not in by_name:
                    raise ValueError(f"gradviz.watch: blocks: no module named {b!r} in the model")
                out.append((b, by_name[b]))
            elif isinstance(b, nn.Module) and id(b) in by_id:
                out.append((by_id[id(b)], b))
            else:
                raise ValueError(f"gradviz.watch: blocks: {b!r} is not a module of the model (give names or modules)")
        return out
    from .models.switches import blocks as switch_blocks

    found = switch_blocks(model)
    if found:
        return found
    tv: tuple[type, ...] = ()
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck

        tv = (BasicBlock, Bottleneck)
    except Exception:  # noqa: BLE001 - no torchvision: class names still match below
        pass
    by_name = [(n, m) for n, m in named if n and ((tv and isinstance(m, tv)) or _BLOCK_NAME.search(type(m).__name__))]
    return outermost(by_name) or repeated_units(named)


def outermost(found: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """`found` less the modules inside another of them: RegNet's `ResBottleneckBlock` holds a
    `BottleneckTransform`, which is its residual branch, not a block of its own."""
    inner = {id(sub) for _, m in found for sub in m.modules() if sub is not m}
    return [(n, m) for n, m in found if id(m) not in inner]


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def repeated_units(named: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """The units of a model's stacks: children of a `Sequential` / `ModuleList` / `ModuleDict` whose
    class is repeated among such children (anywhere in the model: EfficientNet has stages of one
    block), that have sub-modules and own parameters below them. These are the layers of a
    transformer (`TransformerEncoderLayer`, a GPT block, a ViT `EncoderBlock`), the blocks of a
    ConvNeXt, or a DenseNet's dense layers (in a `ModuleDict`): their outputs are the residual (or
    dense) stream, whose gradient `act_grad_norm` follows. So are the repeated units among the
    model's own children (Inception's modules, a U-Net written with attributes). Leaf layers
    (`Linear`, `ReLU`) and plain containers are not units; a unit inside another is dropped."""
    boxes = [(name, box) for name, box in named if isinstance(box, _CONTAINERS)]
    units = _repeated(boxes)
    if named and not isinstance(named[0][1], _CONTAINERS):
        # the model's own children too: a GoogLeNet's Inception modules, not the pairs of convs in
        # their branches' Sequentials (the outermost wins)
        units |= _repeated(named[:1])
    by_id = {id(m): m for _, m in named}
    units = {i for i in units if not _is_stage(by_id[i], units)}
    return outermost([(n, m) for n, m in named if id(m) in units])


# where a module keeps a stack of its blocks, by the names PyTorch code gives them: timm's stages
# `blocks`, GPT-2's `h`, `layers`; a ModuleList `block` or `layer` (T5's stacks, BERT's encoder), where
# a Sequential `block` is a residual branch (torchvision's MBConv and CNBlock); a list of attention
# heads (`heads`) or a GoogLeNet branch (`branch2`) is no stack
_STACK_NAMES = frozenset(("blocks", "layers", "h"))
_LIST_NAMES = frozenset(("block", "layer"))


def _is_stage(module: nn.Module, units: set[int]) -> bool:
    """A unit that keeps units of its own in a stack: a stage of timm's ConvNeXt, Swin, CSPNet or
    MetaFormer (their stages had been the only blocks: 4 for ConvNeXt's 12), T5's encoder and
    decoder. Its own units are the blocks; the stage's output is every few blocks' stream only."""
    for name, sub in module.named_modules():
        if sub is module or not isinstance(sub, _CONTAINERS):
            continue
        last = name.rsplit(".", 1)[-1]
        inner = [type(k) for k in sub.children() if id(k) in units]
        if inner and last in _STACK_NAMES:
            return True
        # T5's block keeps its attention and feed-forward in a ModuleList `layer`: one of each, no stack
        if last in _LIST_NAMES and isinstance(sub, nn.ModuleList) and len(inner) > len(set(inner)):
            return True
    return False


def _repeated(boxes: list[tuple[str, nn.Module]]) -> set[int]:
    """ids of the children of `boxes` that are units (see `repeated_units`) of a repeated class."""
    kids = [
        k
        for _name, box in boxes
        for k in box.children()
        if not isinstance(k, _CONTAINERS) and any(True for _ in k.children()) and any(True for _ in k.parameters())
    ]
    count: dict[type, int] = {}
    for k in kids:
        count[type(k)] = count.get(type(k), 0) + 1
    return {id(k) for k in kids if count[type(k)] >= 2}


_PENDING = object()  # a layer output whose reading activation is not known yet


def guess_activation(model: nn.Module) -> str:
    """The non-linearity whose saturation `act_saturation` measures where no activation was seen
    reading a layer: the model's own `activation` attribute (gradviz models), else the most
    frequent kind among its activation modules, else ReLU's."""
    own = getattr(model, "activation", None)
    if own in ("tanh", "sigmoid", "relu"):
        return own
    counts: dict[str, int] = {}
    for m in model.modules():
        if is_activation_module(m):
            kind = module_kind(m)
            counts[kind] = counts.get(kind, 0) + 1
    return max(counts, key=counts.get) if counts else "relu"


# ---- the engine's metrics without its hooks -----------------------------------------------------


class _Metrics(Probe):
    """`Probe`'s layers, parameter grouping, per-layer combination, update and cadence statistics;
    the watch owns the hooks (it learns the forward order first, and must survive in-place changes
    of outputs), so this probe registers none and leaves its norms on the device until `log`.
    """

    def __init__(self, model, layers, blocks, activation, hist_every, update_every) -> None:
        super().__init__(
            model, layers, blocks=None, activation=activation, hist_every=hist_every, update_every=update_every
        )
        self.blocks = list(blocks)
        self.block_names = [n for n, _ in self.blocks]
        self.device = self.params[0].device if self.params else torch.device("cpu")
        devices = {p.device for p in self.params} | {p.device for _, b in self.blocks for p in b.parameters()}
        self.one_device = len(devices) <= 1
        self.owners = np.asarray(self._owner, np.int64)
        self.hist_now = False

    def is_hist_step(self, step: int) -> bool:
        return self.hist_now  # the watch decides (its cadence counts recorded steps)


# ---- the watch ----------------------------------------------------------------------------------


class Watch:
    """Records one model's training into a run file; see the module docstring.

    Options: `path` (default: a new file under the user data folder), `name` (the run's name),
    `hist_every` (histograms and activation statistics on this cadence), `every` (record every N-th
    step; the others cost only the hooks' checks), `record_all_ranks`, `blocks` (names or modules to
    treat as residual blocks), `activation` ("tanh" | "sigmoid" | "relu": how every layer's `act_saturation` counts; None:
    each layer for the activation seen reading its output),
    `update_every` (`weight_norm` / `update_ratio` on every N-th recorded step, as the engine's
    `train.update_every`: they need a copy of the weights around the step; 1 = every step),
    `scaler` (the `GradScaler`, if any; found on its own the first time `scaler.step` runs),
    `background` (measure on a worker thread; default: when the model is on the CPU, see
    `_record`).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        path: str | Path | None = None,
        name: str = "main",
        hist_every: int = 50,
        every: int = 1,
        record_all_ranks: bool = False,
        blocks=None,
        activation: str | None = None,
        update_every: int = 5,
        scaler=None,
        background: bool | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"gradviz.watch needs an nn.Module, got {type(model).__name__}")
        optimizer = torch_optimizer(optimizer)
        if min(int(every), int(hist_every), int(update_every)) < 1:
            raise ValueError(
                f"gradviz.watch: every, hist_every and update_every must be >= 1, got {every}, {hist_every}, {update_every}"
            )
        if scaler is not None and not is_grad_scaler(scaler):
            raise TypeError(f"gradviz.watch: scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")
        if activation is not None and activation not in ("tanh", "sigmoid", "relu"):
            raise ValueError(f"gradviz.watch: activation {activation!r}: accepted values are tanh, sigmoid, relu")
        self.model = model
        self.module = unwrap(model)
        # the same recording watched again (a notebook cell run twice): the earlier watch is closed;
        # watches of one model into different files (other settings) both go on
        self._key = _watch_key(path, name)
        others = [r() for r in _OPEN_WATCHES.get(id(self.module), [])]
        others = [w for w in others if w is not None and not getattr(w, "closed", True) and w.module is self.module]
        for earlier in others:
            if earlier._key == self._key:
                earlier_path = getattr(earlier, "path", None)
                where = f" ({earlier_path})" if earlier_path is not None else ""
                warnings.warn(
                    f"gradviz.watch: this model already had an open watch{where}; closed it so that one watch records it",
                    RuntimeWarning,
                    stacklevel=4,  # the user's `gradviz.watch(...)` line
                )
                earlier.close()
        _OPEN_WATCHES[id(self.module)] = [weakref.ref(w) for w in others if not w.closed] + [weakref.ref(self)]
        self.optimizer = optimizer
        self.name = str(name)
        self.every = int(every)
        self.hist_every = int(hist_every)
        self.update_every = int(update_every)
        self.rank, self.world_size = dist_rank()
        self.active = self.rank == 0 or bool(record_all_ranks)
        shards = sharded_by(self.module)
        if shards and self.active:
            warnings.warn(
                f"gradviz.watch: the model's parameters are sharded ({shards}): a layer's gradient norm needs "
                "every rank's shard, and the shards' storage is freed between passes; not supported yet, "
                "nothing is recorded (your training is not touched)",
                RuntimeWarning,
                stacklevel=4,  # the user's `gradviz.watch(...)` line
            )
            self.active = False
        self.step = 0
        self.closed = False
        self.recording: Recording | None = None
        self.path: Path | None = None
        self._handles: list = []
        self._act_handles: list = []
        self._metrics: _Metrics | None = None
        self._broken = False
        self._in_step = False
        self._hist_armed = False
        self._next_hist = 0
        # id(layer) -> (the kind it was counted for, `activation_summary` of its output), histogram
        # steps; (_PENDING, its summary with a count for every kind) while the activation that reads it
        # is unknown
        self._acts: dict[int, tuple] = {}
        self._forced_kind = activation is not None  # the user said which activation: every layer counts so
        self._layer_kind: dict[int, str | None] = {}  # id(layer) -> the activation that read it last time (None: none)
        self._grown_warned = False  # said once that the model gained parameters after the layers were fixed
        self._feeds = ActivationFeeds(self.module)  # keyed by id(layer): the layers are learnt in the first step
        self._compiled = runs_compiled(model)
        self._fullgraph = self._compiled and compiled_fullgraph(model)
        self._scripted = scripted(self.module)  # no hook at all: `log` marks where a step starts
        # where the step starts: a torch.compile wrapper runs its own hooks as Python, outside the
        # compiled frame (the inner module's hooks are traced into it)
        self._top = model if self._compiled and hasattr(model, "_orig_mod") and hasattr(model, "dynamo_ctx") else self.module
        if self._compiled:
            # A compiled forward keeps the hooks it was traced with: torch.compile does not guard on
            # module hooks, so the activation hooks armed on later histogram steps were never called
            # (statistics at step 0 only). It does guard on the torch function mode, which the feeds
            # then hold on every histogram step: those forwards get a graph of their own, traced with
            # the hooks, and the other steps one without.
            self._feeds.mixed = True
        self._order: dict[int, int] = {}  # id(layer) -> rank of first execution
        self._block_order: dict[int, int] = {}  # id(block) -> rank of first call
        self._block_perm: list[int] | None = None  # forward-order position -> index in `self._blocks`; None: the same
        self._shapes: dict[int, tuple[list, int]] = {}  # id(layer) -> (output shape, FLOPs) in that pass
        self._order_handles: list = []
        self._index: dict[int, int] = {}
        self._bgn: BlockGradNorms | None = None
        self._learn_handle = None
        self._pending: dict[str, Any] = {}
        self._end_queued = False  # without an optimizer: a measure queued for the end of backward
        self._bad_streak = False
        self._scaler = scaler
        self._scaler_looked = scaler is not None
        self._bg: Background | None = None
        if not self.active:
            return
        if path is None:
            from ..paths import new_run_path

            path = new_run_path(self.name)
        self.path = rank_path(path, self.rank) if record_all_ranks else Path(path)
        self._activation = activation or guess_activation(self.module)
        self._blocks = find_blocks(self.module, blocks)
        try:
            self._file = _file_key(self.path)
            shared = _join_file(self._file, self.path, self.name)  # another open watch's file, or a new one
        except ValueError:
            self.closed = True  # it never began: a later watch of this model has nothing to close
            raise
        self.recording, self._writer = shared.recording, shared.writer
        first_param = next(self.module.parameters(), None)
        if first_param is None:  # an activation or a functional wrapper passed by mistake: say it
            warnings.warn(
                f"gradviz.watch: {type(self.module).__name__} has no parameters: no layer to measure, "
                "only the loss and the scalars given to log are recorded",
                RuntimeWarning,
                stacklevel=4,  # the user's `gradviz.watch(...)` line
            )
        on_cpu = first_param is None or first_param.device.type == "cpu"
        if background if background is not None else on_cpu:
            self._bg = Background("gradviz-watch")
        self._finalizer = weakref.finalize(self, _leave_file, self._file, self.name, self._bg)
        from .. import __version__

        first = next(self.module.parameters(), None)
        settings = {
            "kind": "watch",
            "name": self.name,
            "model": type(self.module).__name__,
            "optimizer": type(optimizer).__name__ if optimizer is not None else "",
            "activation": self._activation,  # what act_saturation counts: saturated or dead units
            "hist_every": self.hist_every,
            "every": self.every,
            "update_every": self.update_every,
            "fullgraph": self._fullgraph,  # no hook inside the forward: no activation statistics
            "scripted": self._scripted,  # TorchScript: no hook at all, the same
            "rank": self.rank,
            "world_size": self.world_size,
            "device": str(first.device) if first is not None else "cpu",
            "gradviz_version": __version__,
            "torch_version": torch.__version__,
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
        }
        # a file shared with other watches keeps the first one's settings on top, and each
        # watch's own under "watches"
        meta = dict(self.recording.meta) or dict(settings)
        meta["watches"] = {**meta.get("watches", {}), self.name: settings}
        self.recording.set_meta(meta)
        self._all_layers = param_layers(self.module)
        self._layer_ids = {id(m) for _, m in self._all_layers}
        # a TorchScript part of the model (a scripted block) takes no Python hook: left out of the
        # layer hooks (torch raised "register_forward_pre_hook is not supported on ScriptModules")
        hookable = [(n, m) for n, m in self._all_layers if not scripted(m)]
        self._blocks = [(n, m) for n, m in self._blocks if not scripted(m)]
        if not self._scripted:
            self._handles.append(self._top.register_forward_pre_hook(self._guard(self._on_forward)))
        if self._fullgraph or self._scripted:
            # fullgraph: hooks inside the forward would break its one graph, which that mode makes an
            # error in the user's training; TorchScript takes none. No layer hooks at all, layers in
            # `named_modules()` order
            why = (
                "the model is compiled with fullgraph=True, where hooks inside its forward would break the graph"
                if self._fullgraph
                else "a TorchScript model takes no Python hooks"
            )
            fix = "compile without fullgraph=True" if self._fullgraph else "watch the nn.Module before torch.jit.script / trace"
            warnings.warn(
                f"gradviz.watch: {why}: recording grad_norm, weight_norm and update_ratio only (no act_grad_norm, "
                f"no activation statistics); {fix} for those",
                RuntimeWarning,
                stacklevel=4,  # the user's `gradviz.watch(...)` line
            )
            self._blocks = []
            self._learn_layers()
            self._in_step = self._scripted  # no forward hook says when a step starts: every step is one
        else:
            self._order_handles = [m.register_forward_pre_hook(self._guard(self._seen)) for _, m in hookable]
            # the layer table's output shapes and FLOPs, from the same first forward pass
            self._order_handles += [m.register_forward_hook(self._guard(self._shaped)) for _, m in hookable]
            # the blocks' forward order too: a diffusers U-Net registers its middle block after its
            # up blocks, and the block profile read "input -> output" in that order
            self._order_handles += [b.register_forward_pre_hook(self._guard(self._block_seen)) for _, b in self._blocks]
            learn = self._guard(self._after_forward)
            ends = self._guard(self._watch_output)
            if self._compiled and self._top is self.module:  # run as Python, not traced: dynamo warned that it cannot trace the run file's json
                learn, ends = torch.compiler.disable(learn), torch.compiler.disable(ends)
            self._learn_handle = self._top.register_forward_hook(learn)
            if optimizer is None:  # registered after `learn`: the layers are known when it runs
                self._handles.append(self._top.register_forward_hook(ends))
        if self._blocks:
            self._bgn = BlockGradNorms(self._blocks, on_error=self._fail)
            self._bgn.enabled = self._recorded()
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._guard(self._before_step)))
            self._handles.append(optimizer.register_step_post_hook(self._guard(self._after_step)))

    # ---- public ---------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        return list(self._metrics.layer_names) if self._metrics is not None else []

    @property
    def blocks(self) -> list[str]:
        """The blocks' names: in forward order once the first step ran, as found before."""
        if getattr(self, "_metrics", None) is not None:
            return list(self._metrics.block_names)
        return [n for n, _ in getattr(self, "_blocks", [])]

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def log(self, loss=None, **scalars) -> None:
        """Close the current step: record `loss` (a tensor or number) and any other scalars
        (e.g. `eval_loss=`, `eval_accuracy=`), with everything the hooks measured."""
        if self.closed:
            raise RuntimeError("gradviz.watch: log() after close()")
        for key in scalars:
            if key in LAYER_METRICS or key in BLOCK_METRICS or key == "loss":
                raise ValueError(f"gradviz.watch.log: {key!r} is measured by the watch; pass only scalars")
        for key, value in {"loss": loss, **scalars}.items():
            if isinstance(value, torch.Tensor) and value.numel() != 1:
                raise ValueError(f"gradviz.watch.log: {key} must be a scalar, got shape {tuple(value.shape)}")
            if value is not None and not isinstance(value, torch.Tensor | int | float | np.number):
                raise ValueError(f"gradviz.watch.log: {key} must be a number or a one-element tensor, got {value!r}")
        step = self.step
        self.step += 1
        try:
            if self.active and not self._broken and step % self.every == 0:
                self._record(step, loss, scalars)
        except Exception as exc:  # noqa: BLE001 - a failure of ours must not end the user's run
            self._fail(exc)
        finally:
            self._end_step()

    def close(self) -> None:
        """Remove every hook from the model and optimizer and finish the run file. Idempotent."""
        if self.closed:
            return
        self.closed = True
        rest = [r for r in _OPEN_WATCHES.get(id(self.module), []) if r() is not None and r() is not self]
        if rest:
            _OPEN_WATCHES[id(self.module)] = rest
        else:
            _OPEN_WATCHES.pop(id(self.module), None)
        self._remove_hooks()
        if self._bg is not None:
            try:
                self._drain()
            except Exception as exc:  # noqa: BLE001 - recorded as an error event, the file still closes
                self._fail(exc)
        if self._metrics is not None:
            self._metrics.release()
        self._pending.clear()
        if self.active:
            self._finalizer.detach()
            _leave_file(self._file, self.name, self._bg)

    # ---- hooks ----------------------------------------------------------------------------
    def _guard(self, fn):
        """Hooks never return a value (it would replace outputs) and never break training."""

        def hook(*args, **kwargs):
            if self._broken or self.closed:
                return None
            try:
                fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - disable the watch, keep the user's run going
                self._fail(exc)
            return None

        return hook

    def _fail(self, exc: BaseException) -> None:
        self._broken = True
        msg = f"gradviz.watch stopped recording at step {self.step}: {type(exc).__name__}: {' '.join(str(exc).split())}"
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        self._remove_hooks()
        try:
            if self.recording is not None:
                self.recording.add_event(self.step, self.name, "error", msg)
        except Exception:  # noqa: BLE001 - the event is best effort
            pass

    def _remove_hooks(self) -> None:
        for h in self._handles + self._act_handles + self._order_handles:
            h.remove()
        self._handles, self._act_handles, self._order_handles = [], [], []
        self._feeds.disarm()
        if self._learn_handle is not None:
            self._learn_handle.remove()
            self._learn_handle = None
        if self._bgn is not None:
            self._bgn.enabled = False
            self._bgn.remove()
            self._bgn.reset()

    def _recorded(self) -> bool:
        return self.active and not self._broken and self.step % self.every == 0

    def _on_forward(self, mod, _args) -> None:
        if mod is not self._top or not torch.is_grad_enabled():  # a deep copy, or evaluation
            return
        if self._in_step:
            return
        self._in_step = True
        if self._recorded():
            scale = scaler_scale(self._scaler)
            if scale is not None:  # a copy: `scaler.update()` changes the scale in place
                self._pending["scale"] = scale.clone()
            if self.step >= self._next_hist and not self._fullgraph:
                self._arm_activations()
            if self.optimizer is None and self._metrics is not None and self._metrics.params and self._update_due():
                self._keep_weights_for_hand_update()

    def _keep_weights_for_hand_update(self) -> None:
        """Without an optimizer (a course's `p -= lr * p.grad` under `no_grad`) there is no step to
        measure around: on an update step the weights are kept as the step's forward pass begins,
        and its `log` measures the change the hand-written update made (`weight_norm` and
        `update_ratio`, as around an optimizer's step). The first step is not measured: its
        forward pass is where the watch learns the layers."""
        self._drain()  # a step finishing on the worker may still read the update buffers' norms
        mt = self._metrics
        with torch.no_grad():
            mt.snapshot([j for j, q in enumerate(mt.params) if q.requires_grad])
        self._pending["hand_snap"] = True

    def _after_forward(self, mod, _args, _out) -> None:
        if mod is self._top and self._metrics is None and torch.is_grad_enabled():
            self._learn_layers()

    def _watch_output(self, mod, _args, out) -> None:
        """Without an optimizer: a hook on the output, so that backward says when it ends."""
        if mod is self._top and torch.is_grad_enabled() and self._recorded():
            t = first_tensor(out)
            if t is not None and t.requires_grad:
                t.register_hook(self._guard(self._on_output_grad))

    def _on_output_grad(self, _grad) -> None:
        """Without an optimizer no hook runs between backward and a hand-written update, and the
        tutorial loop (`w -= lr * w.grad; w.grad.zero_()`) zeroes the gradients before `log`: they
        read as exactly 0 there. So the gradients are measured as the backward pass ends (an
        autograd callback queued once the pass reaches the model's output); a later backward of the
        same step (gradient accumulation) measures the complete sum again."""
        if not self._end_queued:
            self._end_queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._guard(self._backward_done))

    def _backward_done(self) -> None:
        self._end_queued = False
        mt, p = self._metrics, self._pending
        if mt is None or not self._recorded():
            return
        self._drain()  # the last step may still be finishing on the worker with the same plans
        with torch.no_grad():
            p["grads"] = mt.grad_norms(self._block_norms(), p.get("scale"))
            if self._hist_armed or self.step >= self._next_hist:
                mt.take_grad_samples()

    def _seen(self, mod, _args) -> None:
        if torch.is_grad_enabled() and id(mod) in self._layer_ids:
            self._order.setdefault(id(mod), len(self._order))

    def _block_seen(self, mod, _args) -> None:
        if torch.is_grad_enabled():
            self._block_order.setdefault(id(mod), len(self._block_order))

    def _shaped(self, mod, _args, out) -> None:
        if torch.is_grad_enabled() and id(mod) in self._layer_ids and id(mod) not in self._shapes:
            t = first_tensor(out)
            batched = t is not None and t.dim() > 0
            self._shapes[id(mod)] = (list(example_shape(mod, t)) if batched else [], layer_flops(mod, t) if batched else 0)
            for used, shape, flops in borrowed_rows(mod, t) if batched else []:  # an attention's out_proj
                self._shapes.setdefault(id(used), (list(shape), flops))

    def _learn_layers(self) -> None:
        """Fix the layer list, once: `param_layers` sorted by first execution in the first forward
        pass that recorded gradients (the rule of `forward_order`: `by_first_run` places the layers
        that did not run). Watching that real pass, rather than replaying the batch
        as `forward_order` does, costs nothing and cannot touch arguments, caches or random state."""
        for h in self._order_handles:
            h.remove()
        self._order_handles = []
        if self._learn_handle is not None:  # its only job was this
            self._learn_handle.remove()
            self._learn_handle = None
        layers = by_first_run(self._all_layers, self._order)
        found = {id(b): i for i, (_, b) in enumerate(self._blocks)}
        blocks = by_first_run(self._blocks, self._block_order)
        # the block hooks keep their indices (the first backward is still to come); `_block_norms`
        # hands their values over in forward order
        perm = [found[id(b)] for _, b in blocks]
        self._block_perm = None if perm == sorted(perm) else perm
        self._metrics = _Metrics(self.module, layers, blocks, self._activation, self.hist_every, self.update_every)
        self._index = {id(m): i for i, (_, m) in enumerate(layers)}
        mt = self._metrics
        self.recording.add_run(self.name, mt.layer_names, mt.layer_types, mt.block_names)
        # the layer table as the engine's runs have it (a layer that did not run: "-", 0 FLOPs), so
        # the GUI's table tab shows shapes, parameters and FLOPs instead of empty columns
        rows = []
        for (name, m), tied in zip(layers, tied_counts([m for _, m in layers]), strict=True):
            shape, flops = self._shapes.get(id(m), ([], 0))
            rows.append([name, type(m).__name__, shape, sum(p.numel() for p in m.parameters(recurse=False)), int(flops), tied])
        self._shapes = {}
        meta = dict(self.recording.meta)
        meta["layer_table"] = {**meta.get("layer_table", {}), self.name: rows}  # other watches' runs too
        self.recording.set_meta(meta)

    def _arm_activations(self) -> None:
        self._hist_armed = True
        for _, m in self._all_layers:
            if not scripted(m):
                self._act_handles.append(m.register_forward_hook(self._guard(self._act_hook)))
        self._feeds.arm()

    def _act_hook(self, mod, _inp, out) -> None:
        if computes_a_weight(mod):  # its output is a weight, computed inside its layer's forward
            return
        key = id(mod)
        t = out[0] if isinstance(out, tuple | list) else out
        if key in self._layer_ids:
            self._feeds.layer_done(key)
        if key in self._layer_ids and isinstance(t, torch.Tensor) and t.is_floating_point() and key not in self._acts:
            kind = self._activation if self._forced_kind else self._layer_kind.get(key, _PENDING)
            if kind is _PENDING:
                # which activation reads this output (saturating tanh or dying ReLU) is seen only after
                # this hook: the first histogram step counts for every kind (a copy of the outputs
                # would hold a whole forward's activations, too much on a full GPU)
                v = activation_summary(t.detach(), None, HIST_SAMPLE)
                self._acts[key] = (_PENDING, (*v, saturated_counts(t.detach())))
            else:
                # summarised now, before an in-place op after this layer (ReLU(inplace=True)) changes it
                self._acts[key] = (kind, activation_summary(t.detach(), SATURATION.get(kind or self._activation), HIST_SAMPLE))

    def _check_new_parameters(self) -> None:
        """Once, on a histogram step: say so when the model gained parameters after its layers were
        fixed (a layer appended mid-training); they were measured nowhere, without a word."""
        if self._grown_warned:
            return
        known = {id(p) for p in self._metrics.params}
        new = [n for n, p in self.module.named_parameters() if id(p) not in known]
        if not new:
            return
        self._grown_warned = True
        msg = (
            f"gradviz.watch: the model has parameters it did not have when the watch began ({', '.join(new[:3])}"
            f"{', ...' if len(new) > 3 else ''}); they are not measured: start a new watch to include them"
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
        self.recording.add_event(self.step - 1, self.name, "warning", msg)

    def _settle_acts(self, fed: set | None) -> dict[int, tuple]:
        """This histogram step's activation summaries by layer index, each layer's saturation counted
        for the activation that read its output (a model may mix them: a BERT's GELU feed-forwards
        and its tanh pooler; `torch.tanh` in a forward has no module to guess from); tells the
        probe which layers count dead units, and the meta what was counted."""
        kinds = self._feeds.kinds if fed is not None else {}
        acts, dead = {}, {}
        for key, (used, v) in self._acts.items():
            if self._forced_kind:
                kind = self._activation
            elif fed is not None:
                kind = kinds.get(key)
            else:  # the feeds were not armed for this forward: what was known before
                kind = None if used is _PENDING else used
            counted = kind or self._activation
            if used is _PENDING:  # the count for the kind now known; the summary's own is of live units
                v = (v[0], v[1], v[5][counted], v[3], v[4]) if counted in SATURATION else v[:5]
            elif fed is not None and key in fed and used != kind:  # read by another activation than last time
                v = (v[0], v[1], torch.full_like(v[2], float("nan")), *v[3:])
            i = self._index[key]
            acts[i], dead[i] = v, counted not in SATURATION
            if fed is not None:
                self._layer_kind[key] = kind
        self._acts = {}
        self._metrics._acts_dead = dead
        if fed is not None and not self._forced_kind:
            self._note_kinds({self._metrics.layer_names[self._index[k]]: kinds[k] for k in fed if k in self._index})
        return acts

    def _note_kinds(self, by_layer: dict[str, str]) -> None:
        """Say in the meta what act_saturation counted, where it changed: one kind, or "mixed" with
        each layer's."""
        if not by_layer:
            return
        meta = dict(self.recording.meta)
        watches = {name: dict(v) for name, v in (meta.get("watches") or {}).items()}
        mine = watches.setdefault(self.name, {})
        if mine.get("layer_kinds") == by_layer:
            return
        mine["layer_kinds"] = by_layer  # this run's own (a shared file's runs may reuse layer names)
        meta["watches"] = watches
        merged: dict[str, str] = {}
        found: set[str] = set()
        for w in watches.values():
            merged.update(w.get("layer_kinds") or {})
            found.update((w.get("layer_kinds") or {}).values())
        kind = found.pop() if len(found) == 1 else "mixed"
        layer_kinds = merged if kind == "mixed" else None
        meta["activation"] = kind
        meta.pop("layer_activation", None)
        if layer_kinds:
            meta["layer_activation"] = layer_kinds
        self.recording.set_meta(meta)

    def _block_norms(self) -> list:
        if self._bgn is None:
            return []
        values = self._bgn.values()
        return values if self._block_perm is None else [values[i] for i in self._block_perm]

    def _update_due(self) -> bool:
        return (self.step // self.every) % self.update_every == 0

    def _before_step(self, _opt, args, kwargs) -> None:
        # only a step whose forward pass we saw: `log` before `step`, or a closure optimiser
        # (LBFGS) whose gradients come later, leave the measuring to `log`
        if not self._recorded() or self._metrics is None:
            return
        # torch hands the hook step's own arguments, the optimizer first: `step(closure)` is (opt, closure)
        closure = args[1] if len(args) > 1 else (kwargs or {}).get("closure")
        if closure is not None:
            # a closure step (LBFGS; PyTorch Lightning steps every optimizer so): a forward and
            # backward run inside `step`, so the gradients are read at `log`, complete (with
            # gradient accumulation the last micro-batch's backward is in the closure: read here,
            # they missed it); the weights before the step are these (update_ratio was never
            # recorded for such a loop)
            if self._update_due():
                self._drain()
                mt = self._metrics
                with torch.no_grad():
                    mt.snapshot([j for j, q in enumerate(mt.params) if q.requires_grad])
                self._pending["snap"] = True
            self._pending["closure"] = True
            return
        if not self._in_step:
            return
        if not self._scaler_looked and self._bgn is not None:
            # once: every optimizer step of a scaled loop runs inside `scaler.step`
            self._scaler_looked = True
            self._scaler = self._scaler or calling_scaler()
        if self._scaler is not None and self._pending.get("scale") is None:
            self._pending["scale"] = scaler_scale(self._scaler)  # the first step: `update()` has not run yet
        mt, p = self._metrics, self._pending
        if self._bg is None:
            with torch.no_grad():
                g = mt.grad_norms(self._block_norms(), p.get("scale"))
                p["grads"] = g
                if self._update_due():
                    mt.snapshot(g["present"])
                    p["snap"] = True
            return
        # on the worker: the norms, while the optimizer steps; the gradients are read here, on the
        # training thread, and `log` waits until the worker is done with them
        self._drain()  # the last step's jobs use the update buffers
        grads = [q.grad for q in mt.params]
        blocks, scale, read = list(self._block_norms()), p.get("scale"), threading.Event()
        p["grads"], p["read"] = None, read

        def norms() -> None:
            try:
                p["grads"] = mt.grad_norms(blocks, scale, grads)
            finally:
                read.set()

        self._bg.submit(norms)
        if self._update_due():
            with torch.no_grad():
                mt.snapshot([j for j, gr in enumerate(grads) if gr is not None])
            p["snap"] = True

    def _after_step(self, _opt, _args, _kwargs) -> None:
        if not self._recorded() or ("grads" not in self._pending and not self._pending.get("closure")):
            return
        p, mt = self._pending, self._metrics
        p["stepped"] = True
        if p.pop("snap", False):
            if self._bg is None:
                with torch.no_grad():
                    p["update"] = mt.update_norms()
            else:  # the weights stay as they are until the next step, which drains first
                params = [q.detach() for q in mt.params]

                def update() -> None:
                    p["update"] = mt.update_norms(params)

                self._bg.submit(update)

    def _drain(self) -> None:
        err = self._bg.drain() if self._bg is not None else None
        if err is not None:
            raise err

    # ---- closing a step -------------------------------------------------------------------
    def _record(self, step: int, loss, scalars: dict) -> None:
        """Close a recorded step. With a worker thread, a plain step (gradients taken in the
        pre-step hook, no histograms) is finished there: the host copy, the per-layer sums and the
        recording overlap the user's next step. `log` only waits until the worker has read the
        gradients, so the user may clear them in place. Other steps are finished here, after the
        worker has drained: histograms read `.grad`, which only the training thread may do."""
        if self._metrics is None:
            self._learn_layers()
        p = self._pending
        p["forward"] = self._in_step  # a forward pass ran in this step (not a `log` of its own)
        lr = None
        if "lr" not in scalars and self.optimizer is not None and self.optimizer.param_groups:
            lr = self.optimizer.param_groups[0].get("lr")  # read now: a scheduler may change it
        hist = self._hist_armed or step >= self._next_hist
        acts = {}
        if hist:
            self._check_new_parameters()
            fed = self._feeds.disarm()  # ids of the layers seen feeding an activation
            acts = self._settle_acts(fed)
            self._metrics._acts_fed = None if fed is None else {self._index[k] for k in fed if k in self._index}
            self._next_hist = (step // self.hist_every + 1) * self.hist_every
        if p.pop("hand_snap", False):  # no optimizer: the weights kept as this step began
            with torch.no_grad():
                p["update"] = self._metrics.update_norms()
        if self._bg is not None and not hist and "read" in p:
            self._bg.submit(lambda: self._finish(step, loss, scalars, p, lr, hist, acts))
            p["read"].wait()
            return
        self._drain()
        self._finish(step, loss, scalars, p, lr, hist, acts)

    def _finish(self, step: int, loss, scalars: dict, p: dict, lr, hist: bool, acts: dict) -> None:
        mt = self._metrics
        stepped = p.get("stepped", False)
        with torch.no_grad():
            g = p.get("grads")
            if g is None:  # no optimizer step ran (none given, or a GradScaler skipped it)
                g = mt.grad_norms(self._block_norms(), p.get("scale"))
            upd = p.get("update")
            named = ({"loss": loss} if loss is not None else {}) | scalars
            vals = {k: float(v) for k, v in named.items() if v is not None and not isinstance(v, torch.Tensor)}
            tens = {k: v for k, v in named.items() if isinstance(v, torch.Tensor)}
            dev = mt.device
            parts = [v.detach().reshape(1) for v in tens.values()] + g["parts"] + (upd or [])
            if parts:
                dtype = parts[0].dtype
                if any(t.dtype != dtype or t.device != dev for t in parts):
                    parts = [t.to(device=dev, dtype=torch.float64) for t in parts]
                flat = torch.cat(parts).cpu().numpy().astype(np.float64, copy=False)  # the one host copy
            else:
                flat = np.zeros(0)
        vals.update((k, float(flat[i])) for i, k in enumerate(tens))
        flat = flat[len(tens) :]
        present, bidx = g["present"], g["bidx"]
        param_norms, block_norms = mt.decode_grads(g, flat)
        grad_norm = mt.layer_grad_norms(present, param_norms)
        act = np.full(len(mt.blocks), np.nan)
        act[bidx] = block_norms
        metrics = StepMetrics(vals.pop("loss", _NAN), grad_norm, act)
        if upd:
            metrics.weight_norm, metrics.update_ratio = mt.layer_updates(flat[len(present) + len(bidx) :])
        if "lr" not in vals and isinstance(lr, int | float | torch.Tensor):
            vals["lr"] = float(lr)
        mt.hist_now = hist
        if hist:
            mt._acts = acts
        try:
            record_step(self.recording, self.name, mt, step, metrics, vals)
        finally:
            mt.hist_now = False
        loss_v = metrics.loss if loss is not None else None
        if (loss_v is None or np.isfinite(loss_v)) and np.isfinite(param_norms).all():
            self._bad_streak = False  # the common case; layers without a gradient are "not used"
        else:
            self._check_finite(step, loss_v, grad_norm, mt.owners[present], stepped, p.get("forward", True))

    def _check_finite(self, step: int, loss, grad_norm: np.ndarray, used: np.ndarray, stepped: bool, forward: bool = True) -> None:
        """The engine's NaN rule: the first layer in backward order whose gradient is non-finite,
        else the loss. One event per run of bad steps (training goes on: it is the user's loop)."""
        if (loss is None or np.isfinite(loss)) and np.isfinite(grad_norm).all():
            self._bad_streak = False
            return
        used_set = set(used.tolist())
        bad = [i for i in np.flatnonzero(~np.isfinite(grad_norm)) if i in used_set]
        where = None
        if bad:
            where = f"layer {self._metrics.layer_names[max(bad)]}"
        elif loss is not None and not np.isfinite(loss):
            where = "the loss"
        if where is None:
            self._bad_streak = False
            return
        if self._bad_streak:
            return
        self._bad_streak = True
        msg = f"{self.name}: non-finite gradient at step {step}, first in {where}"
        if loss is not None and not np.isfinite(loss):
            msg = f"{self.name}: {loss_message(step, where)}"
        if self.optimizer is not None and not stepped and forward:  # not a `log` with no step of its own
            msg += "; the optimizer step was skipped" + (" (by the GradScaler)" if self._scaler is not None else "")
        self.recording.add_event(step, self.name, "nonfinite", msg)

    def _end_step(self) -> None:
        for h in self._act_handles:
            h.remove()
        self._act_handles = []
        self._feeds.disarm()  # already read on a histogram step; this only makes sure
        self._hist_armed = False
        self._acts = {}
        self._pending = {}
        if self._bgn is not None:
            self._bgn.reset()
            self._bgn.enabled = self._recorded()
        self._in_step = self._scripted


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    path: str | Path | None = None,
    name: str = "main",
    hist_every: int = 50,
    every: int = 1,
    record_all_ranks: bool = False,
    blocks=None,
    activation: str | None = None,
    update_every: int = 5,
    scaler=None,
    background: bool | None = None,
) -> Watch:
    """Start recording `model` (and the steps of `optimizer`) into the run file `path`.

    Call `log(loss=loss)` once per training step, after `optimizer.step()`, and `close()` at the end
    (or use the returned object as a context manager). See `gradviz.core.watch` for what is measured.
    """
    return Watch(
        model,
        optimizer,
        path=path,
        name=name,
        hist_every=hist_every,
        every=every,
        record_all_ranks=record_all_ranks,
        blocks=blocks,
        activation=activation,
        update_every=update_every,
        scaler=scaler,
        background=background,
    )
