"""Which layers' outputs go straight into an activation: `act_saturation` is kept for those only.

Found afresh on every cadence step, because a norm switch moves it between two steps.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

# the calls whose input `act_saturation` is about: saturating or dying non-linearities, as
# functions (`F.relu` in a forward) and as the modules that call them (`nn.ReLU` calls F.relu)
ACTIVATION_FUNCTIONS = frozenset((
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardtanh, F.tanh, F.sigmoid,
    F.hardswish, F.hardsigmoid, F.selu, F.celu, F.mish, F.softplus, F.prelu, F.rrelu,
    torch.relu, torch.relu_, torch.tanh, torch.tanh_, torch.sigmoid, torch.sigmoid_,
    torch.Tensor.relu, torch.Tensor.relu_, torch.Tensor.tanh, torch.Tensor.tanh_, torch.Tensor.sigmoid, torch.Tensor.sigmoid_,
))  # fmt: skip

# what a layer's `act_saturation` counts, by the activation that reads its output: tanh, sigmoid and
# hardtanh, hardsigmoid saturate near their bounds, the ReLU family (GELU, SiLU, Hardswish, ...) dies at zero
_KIND = {F.tanh: "tanh", F.sigmoid: "sigmoid", F.hardtanh: "hardtanh", F.hardsigmoid: "hardsigmoid"}
_KIND |= {f: "tanh" for f in (torch.tanh, torch.tanh_, torch.Tensor.tanh, torch.Tensor.tanh_)}
_KIND |= {f: "sigmoid" for f in (torch.sigmoid, torch.sigmoid_, torch.Tensor.sigmoid, torch.Tensor.sigmoid_)}
FUNCTION_KIND = {f: _KIND.get(f, "relu") for f in ACTIVATION_FUNCTIONS}


def module_kind(m: nn.Module) -> str:
    """`FUNCTION_KIND` for an activation module (ReLU6 is a Hardtanh that dies at zero)."""
    if isinstance(m, nn.Tanh):
        return "tanh"
    if isinstance(m, nn.Sigmoid):
        return "sigmoid"
    if isinstance(m, nn.Hardtanh) and not isinstance(m, nn.ReLU6):
        return "hardtanh"
    if isinstance(m, nn.Hardsigmoid):
        return "hardsigmoid"
    return "relu"


# the same as modules: a pre-hook on each costs microseconds a step, where the function mode costs
# every torch call of the forward (1.6 ms per cadence step of the demo's 30 blocks)
ACTIVATION_MODULES = (
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardsigmoid,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.SELU, nn.CELU,
    nn.Mish, nn.Softplus,
)  # fmt: skip

# activation modules of other libraries, known by their class names: Hugging Face's GPT-2, T5 and
# GPT-J `NewGELUActivation`, BLOOM's `BloomGelu`, CLIP's `QuickGELUActivation` write GELU as its
# tanh or sigmoid approximation, so the call inside them read as a tanh (or sigmoid) saturating and
# their layers' dead fractions were counted as saturated ones
_RELU_FAMILY_NAME = re.compile(r"gelu|silu|swish|mish|softplus", re.IGNORECASE)


def is_activation_module(m: nn.Module) -> bool:
    """An activation module: torch's, or a parameter-free leaf whose class name says GELU, SiLU,
    Swish, Mish or Softplus (a `SwiGLU` feed-forward holds Linear layers, so it is not one)."""
    if isinstance(m, ACTIVATION_MODULES):
        return True
    return (
        _RELU_FAMILY_NAME.search(type(m).__name__) is not None
        and not any(True for _ in m.children())
        and not any(True for _ in m.parameters(recurse=False))
    )


class _ActivationSpy(TorchFunctionMode):
    """Sees every torch function call of a forward pass (on a cadence step only: a few µs each)."""

    def __init__(self, feeds: ActivationFeeds) -> None:
        super().__init__()
        self.feeds = feeds

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kind = FUNCTION_KIND.get(func)
        if kind is not None:
            self.feeds.on_activation(kind, functional=True)
        return func(*args, **(kwargs or {}))


class ActivationFeeds:
    """Which layers' outputs go straight into an activation, seen on each cadence step.
    `act_saturation` (tanh or sigmoid near its bounds, dead ReLU) means something only for what an
    activation receives: the demo's input layer feeds the first block's Linear and its head gives the
    logits, and the optimizers preset showed their outputs as "dead fraction 0.5-0.7"; in a
    Transformer only the feed-forward's first Linear meets a ReLU, not the embeddings, attention and
    norms. A layer feeds an activation when it is the last layer to finish before an activation
    function is called: a Linear while its norm is off, else the norm after it, so a norm flip
    between two steps moves it. A model with activation modules (`nn.ReLU`, `nn.Tanh`, ...) is
    watched through pre-hooks on them; one without any (`F.relu` in its forward, a Transformer's
    feed-forward) through a torch function mode during its forward, which sees every call but costs
    a few microseconds per op. A model with modules is watched both ways on its first cadence step:
    if it also calls activations outside them (`nn.ReLU` in one block, `F.relu` in another), the
    mode stays, else the modules alone do. Activations inside C++ kernels (an LSTM's gates) are not
    seen. `kinds` maps each fed layer to the kind of the first activation that read it ("tanh",
    "sigmoid", "hardtanh" or "relu"), so a model that mixes them (a BERT's GELU feed-forwards and
    tanh pooler) can count saturated units for some layers and dead ones for others."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.act_modules = [m for m in model.modules() if is_activation_module(m)]
        self._act_handles: list = []
        self.last: object | None = None
        self.fed: set = set()
        self.kinds: dict = {}  # fed layer -> kind of the activation that read it
        self._mode: _ActivationSpy | None = None
        self._exit_hook = None
        self._armed = False
        # None: not yet known (modules and the mode both watch the next forward); True: the model
        # also calls activations outside its activation modules, so the mode watches it (and the
        # modules, which own the calls inside them)
        self.mixed: bool | None = None if self.act_modules else True
        self._inside = 0  # how deep the forward is in activation modules
        self._outside_seen = False

    def arm(self) -> None:
        """Call right before the model's forward: watching ends when that forward returns."""
        self.disarm()  # a step that never reached its collection (a forward that raised)
        self.last, self.fed, self.kinds, self._armed = None, set(), {}, True
        if self.mixed is not False:
            # the discovery (which calls happen outside the modules) and a mixed model: a call inside
            # an activation module is the module's own (GPT-2's GELU has a torch.tanh inside)
            self._inside, self._outside_seen = 0, False
            for m in self.act_modules:
                self._act_handles.append(m.register_forward_pre_hook(self._enter_module))
                self._act_handles.append(m.register_forward_hook(self._leave_module))
        else:  # the activations are all modules: a pre-hook on each does
            self._act_handles = [m.register_forward_pre_hook(self._on_module) for m in self.act_modules]
            return
        self._mode = _ActivationSpy(self)
        self._mode.__enter__()
        self._exit_hook = self.model.register_forward_hook(self._forward_done)

    def layer_done(self, key) -> None:
        self.last = key

    def on_activation(self, kind: str = "relu", functional: bool = False) -> None:
        if functional:
            if self._inside:  # inside an activation module, which counted already
                return
            self._outside_seen = True
        if self.last is not None:
            self.fed.add(self.last)
            self.kinds.setdefault(self.last, kind)

    def _on_module(self, mod, _args) -> None:  # a pre-hook's return value would replace the input
        self.on_activation(module_kind(mod))

    def _enter_module(self, mod, _args) -> None:
        self.on_activation(module_kind(mod))
        self._inside += 1

    def _leave_module(self, *_args) -> None:  # returns None: the output is left as it is
        self._inside = max(0, self._inside - 1)

    def _forward_done(self, *_args) -> None:  # returns None: the output is left as it is
        if self.mixed is None:
            self.mixed = self._outside_seen
        self._leave()

    def _leave(self) -> None:
        if self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)
        if self._exit_hook is not None:
            self._exit_hook.remove()
            self._exit_hook = None
        for h in self._act_handles:
            h.remove()
        self._act_handles = []

    def disarm(self) -> set | None:
        """The layers seen feeding an activation since `arm`; None when nothing was armed."""
        self._leave()
        armed, self._armed = self._armed, False
        return self.fed if armed else None
