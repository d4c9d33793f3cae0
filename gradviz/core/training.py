"""One run of an experiment: its model, optimiser, loss, probe and the training step."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RunConfig
from .models import build_model
from .models import switches as sw
from .models.switches import blocks as switch_blocks
from .models.switches import supports as sw_supports
from .optim import ForeachOptimizer, make_optimizer
from .probes import Probe, StepMetrics, forward_order
from .recording import Recording

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: no CUDA device is available here; accepted values are auto, cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _targets_like(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Class labels become one-hot rows for a squared-error loss (the classic MSE classifier);
    real-valued targets pass unchanged."""
    if y.is_floating_point() or out.dim() != 2:
        return y
    return F.one_hot(y.long(), out.shape[1]).to(out.dtype)


def make_loss(name: str):
    """Returns f(output, target) -> (loss to optimise, per-example loss to record)."""
    if name == "mse":
        def mse(out, y):
            loss = F.mse_loss(out, _targets_like(out, y))
            return loss, loss
        return mse
    if name == "sse":  # seed 000: sum of squares, reported per example
        def sse(out, y):
            loss = ((out - _targets_like(out, y)) ** 2).sum()
            return loss, loss / out.shape[0]
        return sse
    if name == "cross_entropy":
        def ce(out, y):
            loss = F.cross_entropy(out, y)
            return loss, loss
        return ce
    raise ValueError(f"loss {name!r}: accepted values are mse, sse, cross_entropy")


def check_loss(name: str, task: str, data_name: str) -> None:
    """Cross-entropy needs class labels: on real-valued targets torch reads them as class
    probabilities and trains on nonsense without a word, so it is refused before the first step."""
    if name == "cross_entropy" and task != "classification":
        raise ValueError(
            f"train.loss = 'cross_entropy' needs class labels, but data set {data_name!r} has real-valued targets; "
            "accepted values here are auto, mse, sse"
        )


def examples_per_batch(batch_size: int, data) -> int | None:
    """How many examples each training batch holds (None when the data set does not say): the
    loaders drop a last partial batch, so it is the batch size, or the whole split when that is
    smaller (batch size 0 means full batch)."""
    n = getattr(data, "n_train", None)
    if n is None:
        return None
    return n if batch_size <= 0 or batch_size >= n else batch_size


EVAL_BATCH_MOST = 1024  # examples per evaluation batch, at most
EVAL_BATCHES_PER_TRAIN = 8  # and at most this many training batches' worth
EVAL_TELL_AFTER = 0.5  # seconds: an evaluation running longer says how far it has got


def eval_batch_size(batch_size: int, data) -> int:
    """Examples per evaluation batch: a few training batches' worth (no gradients are kept, so a
    forward pass of those needs less memory than the training step), at most `EVAL_BATCH_MOST`.
    A fixed 1024 asked a MaxViT trained in batches of 4 on 224 x 224 images for 13 GB of
    activations in one layer, and ran minutes with nothing to show for it."""
    train = examples_per_batch(batch_size, data) or EVAL_BATCH_MOST
    return max(1, min(EVAL_BATCH_MOST, EVAL_BATCHES_PER_TRAIN * train))


BATCH_OF_ONE = "BatchNorm needs at least 2 examples per batch and this run trains on 1; set train.batch_size to 2 or more, or model.norm_kind to layer or group"


def uses_batch_norm(model: nn.Module) -> bool:
    """Whether a BatchNorm layer is in the forward pass now (a switched-off norm is not)."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return has_bn and sw.state(model)["norm"]


def model_input_message(run: str, kind: str, shape: tuple, exc: BaseException) -> str:
    """One line for a model whose forward pass fails on the data's examples (torchvision's ViT needs
    224 x 224 images, Inception v3 at least 75 x 75; MNIST's are 28 x 28 or resized)."""
    from .experiment import one_line  # experiment imports this module

    if len(shape) == 1:  # an image model on the demo's points: say which images it can have here
        what = f"examples, vectors of {shape[0]} values (image models need images: data.name=shapes is built in, data.resize=N sizes it)"
    else:
        what = "x".join(str(s) for s in shape) + " examples" + (" (image sets take data.resize=N)" if len(shape) == 3 else "")
    return f"{run}: model {kind} cannot take this data's {what}: {one_line(exc)}"


@dataclass
class TrainingRun:
    cfg: RunConfig
    data: object  # DataBundle
    device: torch.device
    model: nn.Module = field(init=False)
    optimizer: ForeachOptimizer = field(init=False)
    probe: Probe = field(init=False)
    paused: bool = False
    pause_reason: str = ""
    local_step: int = 0
    base_lr: float = 0.0

    def __post_init__(self) -> None:
        self.name = self.cfg.name
        self.build()

    def build(self, switches: dict | None = None, lr: float | None = None) -> None:
        """(Re)build model and optimiser from the seed; `switches` keeps live toggles across restarts."""
        mc, tc = self.cfg.model, self.cfg.train
        loss_name = tc.loss if tc.loss != "auto" else self.data.default_loss
        check_loss(loss_name, self.data.task, self.cfg.data.name)
        dtype = DTYPES[mc.dtype]
        model = build_model(mc, self.data.input_shape, self.data.n_outputs, seed=tc.seed)
        model = model.to(device=self.device, dtype=dtype)
        if switches:
            sw.set_residual(model, switches["residual"])
            sw.set_norm(model, switches["norm"])
            sw.set_dropout(model, switches["dropout"])
        if uses_batch_norm(model) and examples_per_batch(tc.batch_size, self.data) == 1:
            # BatchNorm raises on it at the first step, which would end the session for every run
            raise ValueError(f"{self.name}: {BATCH_OF_ONE}")
        self.model = model
        self.supports = sw_supports(model)  # which switches act on it: fixed by its architecture
        self.base_lr = tc.lr if lr is None else lr
        self.optimizer = make_optimizer(tc.optimizer, model.parameters(), self.base_lr, tc.momentum, tc.weight_decay)
        self.loss_fn = make_loss(loss_name)
        example = torch.zeros((2, *self.data.input_shape), dtype=dtype, device=self.device)
        try:
            layers = forward_order(model, example)
        except Exception as exc:  # noqa: BLE001 - a model that cannot take the data: one line, not a traceback
            raise ValueError(model_input_message(self.name, mc.kind, self.data.input_shape, exc)) from exc
        if getattr(self, "probe", None) is not None:
            self.probe.remove()
        self.probe = Probe(
            model,
            layers,
            blocks=switch_blocks(model),
            activation=getattr(model, "activation", "relu"),
            hist_every=tc.hist_every,
            update_every=tc.update_every,
        )
        self.local_step = 0
        self.paused = False
        self.pause_reason = ""

    def lr_now(self) -> float:
        decay = self.cfg.train.lr_decay
        if decay <= 0:
            return self.base_lr
        epoch = self.local_step // max(1, self.data.steps_per_epoch(self.cfg.train.batch_size))
        return self.base_lr / (1.0 + epoch * decay)

    def train_step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> tuple[StepMetrics, float]:
        """One optimiser step with probes. On a non-finite value the optimiser step is skipped
        (weights stay usable) and `metrics.first_nonfinite` names the culprit."""
        model, opt, probe = self.model, self.optimizer, self.probe
        lr = self.lr_now()
        for g in opt.param_groups:
            g["lr"] = lr
        if not model.training:  # .train() walks every module: only when evaluation switched it off
            model.train()
        probe.begin_step(step)
        opt.zero_grad(set_to_none=True)
        try:
            out = model(x)
        except BaseException:
            # the forward never returned: the probe's function mode must not outlive it on this thread
            probe.feeds.disarm()
            raise
        loss, per_example = self.loss_fn(out, y)
        loss.backward()
        metrics = probe.after_backward(per_example)
        if metrics.first_nonfinite is None:
            if probe.is_update_step() and probe.params:
                # the optimiser reports its step: no copy of the weights is needed for update_ratio
                probe.weights_before()
                probe.after_update(metrics, opt.step(report=True), opt.params)
            else:
                opt.step()
        self.local_step += 1
        return metrics, lr

    @torch.no_grad()
    def evaluate(self, progress=None) -> dict[str, float]:
        """`eval_loss` (and `eval_accuracy`) over the evaluation split. `progress(text)`: told how
        far it has got while it runs past `EVAL_TELL_AFTER` seconds, and "" when done."""
        model = self.model
        was = model.training
        model.eval()
        total, correct, n = 0.0, 0, 0
        dtype = DTYPES[self.cfg.model.dtype]
        started, told = time.monotonic(), False
        for x, y in self.data.eval_batches(eval_batch_size(self.cfg.train.batch_size, self.data)):
            if progress is not None and (told or time.monotonic() - started > EVAL_TELL_AFTER):
                progress(f"evaluating {self.name}: {n:,} of {self.data.n_test:,} examples")
                told = True
            x = x.to(self.device, dtype=dtype)
            y = y.to(self.device) if not y.is_floating_point() else y.to(self.device, dtype=dtype)
            out = model(x)
            _, per_example = self.loss_fn(out, y)
            total += float(per_example) * x.shape[0]
            n += x.shape[0]
            if not y.is_floating_point():
                correct += int((out.argmax(1) == y).sum())
        model.train(was)
        if told:
            progress("")
        if n == 0:
            return {}
        result = {"eval_loss": total / n}
        if self.data.task == "classification":
            result["eval_accuracy"] = correct / n
        return result


def loss_message(step: int, where: str) -> str:
    """The event's words for a non-finite loss; `where` is the first bad gradient's place, or
    "the loss" when every gradient is finite (it read "(first bad gradient: the loss)")."""
    if where == "the loss":
        return f"loss became non-finite at step {step}"
    return f"loss became non-finite at step {step} (first bad gradient: {where})"


def record_step(
    recording: Recording,
    run: str,
    probe: Probe,
    step: int,
    metrics: StepMetrics,
    extra: dict | None = None,
    evaluate=None,
) -> None:
    """Append one step's measurements (and, on the cadence, activation statistics, histograms and
    evaluation) to the recording. Shared by the experiment, `watch` and the benchmarks."""
    values: dict = {"loss": metrics.loss, **(extra or {})}
    if len(probe.layer_names):  # a model without parameters has no layer: no per-layer series at all
        values["grad_norm"] = metrics.grad_norm
    if len(probe.block_names):
        values["act_grad_norm"] = metrics.act_grad_norm
    if metrics.weight_norm is not None and len(probe.layer_names):
        values["weight_norm"] = metrics.weight_norm
        values["update_ratio"] = metrics.update_ratio
    if probe.is_hist_step(step):
        stats, hists = probe.collect_cadence()
        for kind, layer, edges in probe.new_edges:
            recording.set_edges(run, kind, layer, edges)
        probe.new_edges.clear()
        values.update(stats)
        for kind, counts in hists.items():
            recording.append_histograms(run, step, kind, counts)
    if evaluate is not None:
        values.update(evaluate())
    recording.append(run, step, values)
