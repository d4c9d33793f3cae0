"""The lecture presets: each one shows its phenomenon, in the direction its seed reports.

Every test runs the preset as shipped (same seed, data and hyper-parameters) headless, for a bounded
number of steps, and asserts on what the recording holds, so a preset that stops showing its lesson
fails here. The thresholds are set well inside what seeds 0 to 3 give (see docs/lecture.md).
"""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from gradviz.config import load_preset, preset_names
from gradviz.core.data import DataError
from gradviz.core.experiment import Experiment

LECTURE_PRESETS = ("weight-decay", "dropout", "batchnorm-init", "optimizers", "init", "depth")
ALL_PRESETS = (*LECTURE_PRESETS, "rgb", "demo", "resnet18-mnist", "resnet18-fashion")


def trained(name: str, steps: int, **overrides) -> Experiment:
    cfg = load_preset(name)
    if overrides:
        cfg = cfg.with_overrides(overrides)
    exp = Experiment(cfg, device="cpu")
    exp.run(steps=steps, threads=1)
    assert exp.error is None, exp.error
    assert exp.step_index == steps, exp.messages
    return exp


def tail(exp: Experiment, run: str, metric: str, n: int) -> float:
    """Mean of the last `n` recorded values of a scalar metric."""
    _, values = exp.recording.metric(run, metric)
    assert len(values) >= n, (run, metric, len(values))
    return float(np.mean(values[-n:]))


def last_row(exp: Experiment, run: str, metric: str) -> dict[str, float]:
    """The last recorded per-layer values of `metric`, by layer name."""
    _, values = exp.recording.metric(run, metric)
    assert len(values), (run, metric)
    return dict(zip(exp.recording.layers(run), values[-1].tolist()))


def hist_std(exp: Experiment, run: str, kind: str, layer: str) -> float:
    """Spread of the last recorded histogram of `layer`, from its bin centres and counts."""
    steps, edges, counts = exp.recording.histograms(run, kind, layer)
    assert len(steps), (run, kind, layer)
    centres = (edges[:-1] + edges[1:]) / 2
    c = counts[-1].astype(float)
    mean = float((c * centres).sum() / c.sum())
    return math.sqrt(float((c * (centres - mean) ** 2).sum() / c.sum()))


# ---- every preset ----------------------------------------------------------------------------


def test_gradviz_presets_lists_every_preset():
    out = subprocess.run(
        [sys.executable, "-m", "gradviz", "presets"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    for name in LECTURE_PRESETS:
        assert name in listed
        assert name in preset_names()
    assert "broken" not in out.stdout


@pytest.mark.parametrize("name", LECTURE_PRESETS)
def test_lecture_preset_is_a_comparison_with_a_note(name):
    cfg = load_preset(name)
    assert cfg.name == name
    assert 2 <= len(cfg.runs) <= 6
    assert len(cfg.description) > 20 and len(cfg.note.split()) > 40
    assert cfg.data.name in ("spiral", "linear", "shapes")  # built in: no download in class
    # identical seed and batches in every run, so the runs differ only in their overrides
    assert len({(r.train.seed, r.train.batch_size, r.data) for r in cfg.runs}) == 1


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_every_preset_builds_and_steps_once(name):
    if name not in preset_names():
        pytest.skip(f"preset {name} is not in this checkout")
    cfg = load_preset(name)
    try:
        exp = Experiment(cfg, device="cpu")
    except DataError:
        # torchvision sets are not on a machine without downloads: check the model and training
        # set-up on the built-in images instead, in small batches
        exp = Experiment(
            cfg.with_overrides(
                {
                    "data.name": "shapes",
                    "data.n_train": 64,
                    "data.n_test": 16,
                    "train.batch_size": 8,
                }
            ),
            device="cpu",
        )
    exp.run(steps=1, threads=1)
    assert exp.error is None, exp.error
    for run in exp.run_names():
        steps, loss = exp.recording.metric(run, "loss")
        assert list(steps) == [0]
        assert np.isfinite(loss[0]) or name == "batchnorm-init"


# ---- seed 003: weight decay --------------------------------------------------------------------


def test_weight_decay_keeps_the_weights_small_and_concentrated():
    exp = trained("weight-decay", 500)
    plain, decay = (
        last_row(exp, "no-decay", "weight_norm"),
        last_row(exp, "weight-decay", "weight_norm"),
    )
    hidden = [n for n in plain if n.endswith(".linear")]
    assert len(hidden) == 3
    for layer in hidden:
        assert decay[layer] < 0.95 * plain[layer], (layer, decay[layer], plain[layer])
    # the weight histograms: the decayed run's distribution is narrower
    for layer in hidden:
        assert hist_std(exp, "weight-decay", "weight", layer) < 0.95 * hist_std(
            exp, "no-decay", "weight", layer
        )
    # without decay the net memorises the ten noisy points; with decay it cannot
    assert tail(exp, "no-decay", "loss", 20) < tail(exp, "weight-decay", "loss", 20)


# ---- seed 003: dropout ---------------------------------------------------------------------------


def test_dropout_closes_the_gap_between_training_and_evaluation_loss():
    exp = trained("dropout", 600)
    train0, eval0 = tail(exp, "p0", "loss", 100), tail(exp, "p0", "eval_loss", 5)
    train5, eval5 = tail(exp, "p0.5", "loss", 100), tail(exp, "p0.5", "eval_loss", 5)
    # no dropout: the ten points are memorised, evaluation far worse than training
    assert train0 < 0.05 and eval0 - train0 > 0.1
    # dropout (loss measured with units dropped): it cannot memorise, the gap is gone
    assert train5 > 5 * train0
    assert eval5 - train5 < 0.8 * (eval0 - train0), (eval5, train5, eval0, train0)


def test_dropout_scales_the_kept_units_by_one_over_one_minus_p():
    exp = Experiment(load_preset("dropout"), device="cpu")
    model = exp.get_run("p0.5").model
    drop = model.blocks[0].dropout
    assert drop.p == 0.5
    x = torch.ones(10000)
    drop.train()
    y = drop(x)
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 2.0))  # 1 / (1 - 0.5)
    assert abs(float(y.mean()) - 1.0) < 0.05  # same expectation as in evaluation
    drop.eval()
    assert torch.equal(drop(x), x)


# ---- seed 003: BatchNorm rescues a bad initialisation -----------------------------------------


def test_batchnorm_lets_lenet_train_from_normal_init():
    exp = trained("batchnorm-init", 300)
    normal = tail(exp, "lenet-normal", "loss", 100)
    bn = tail(exp, "lenet-bn-normal", "loss", 100)
    default = tail(exp, "lenet-default", "loss", 100)
    _, first = exp.recording.metric("lenet-normal", "loss")
    assert first[0] > 100  # N(0, 1) weights: logits in the thousands
    assert bn < 1.0 and bn < 0.01 * normal, (bn, normal)
    assert default < 0.1
    acc = {r: tail(exp, r, "eval_accuracy", 10) for r in exp.run_names()}
    assert acc["lenet-default"] > 0.95 and acc["lenet-bn-normal"] > acc["lenet-normal"], acc
    # runs 2 and 3 start from identical weights: the difference is BatchNorm alone
    a = Experiment(load_preset("batchnorm-init"), device="cpu")
    sd_n, sd_bn = (
        a.get_run("lenet-normal").model.state_dict(),
        a.get_run("lenet-bn-normal").model.state_dict(),
    )
    assert all(torch.equal(sd_n[k], sd_bn[k]) for k in sd_n)


# ---- seed 002: optimisers and the hyperbolic decay --------------------------------------------


def test_optimizers_all_learn_and_follow_the_hyperbolic_decay():
    exp = trained("optimizers", 300)
    cfg = load_preset("optimizers")
    per_epoch = cfg.data.n_train // cfg.train.batch_size
    ends = {}
    for run in ("sgd", "momentum", "rmsprop", "adam"):
        _, loss = exp.recording.metric(run, "loss")
        ends[run] = float(np.mean(loss[-30:]))
        assert ends[run] < 0.8 * float(np.mean(loss[:10])), (run, ends[run])
        steps, lr = exp.recording.metric(run, "lr")
        expected = cfg.train.lr / (1 + (steps // per_epoch) * cfg.train.lr_decay)
        np.testing.assert_allclose(lr, expected, rtol=1e-6)
        assert lr[-1] < 0.6 * lr[0]
    # at one lr, plain SGD is far behind the other three, and Adam beats momentum
    for run in ("momentum", "rmsprop", "adam"):
        assert ends[run] < 0.5 * ends["sgd"], ends
    assert ends["adam"] < ends["momentum"], ends


# ---- seeds 002/003: initialisation ----------------------------------------------------------------


def test_init_zeros_never_breaks_symmetry_and_xavier_he_train():
    exp = trained("init", 300)
    zeros = exp.get_run("zeros").model
    linears = [m for m in zeros.modules() if isinstance(m, torch.nn.Linear) and m is not zeros.head]
    assert len(linears) == 11
    for lin in linears:  # every hidden unit of a layer keeps the same incoming weights and bias
        w, b = lin.weight.detach(), lin.bias.detach()
        assert torch.equal(w, w[:1].expand_as(w)) and torch.equal(b, b[:1].expand_as(b))
    head = zeros.head.weight.detach()  # so the output layer sees identical units too
    assert torch.equal(head, head[:, :1].expand_as(head))
    assert abs(tail(exp, "zeros", "loss", 30) - math.log(4)) < 0.02
    assert tail(exp, "zeros", "eval_accuracy", 1) == pytest.approx(0.25)

    # normal(0, 1) saturates tanh: the first layer's gradient all but vanishes, the loss barely moves
    first = exp.recording.layers("normal").index("input")
    g_normal = np.median(exp.recording.metric("normal", "grad_norm")[1][-50:, first])
    g_he = np.median(exp.recording.metric("he", "grad_norm")[1][-50:, first])
    assert g_normal < 1e-2 * g_he, (g_normal, g_he)
    assert tail(exp, "normal", "loss", 30) > 1.2
    for run in ("xavier", "he"):
        assert tail(exp, run, "loss", 30) < 0.5, run
        assert tail(exp, run, "eval_accuracy", 1) > 0.8, run


# ---- He et al. 2016: depth -------------------------------------------------------------------------


def test_deep_plain_trains_worse_than_shallow_and_residual_does_not():
    exp = trained("depth", 400)
    shallow = tail(exp, "shallow-plain", "loss", 130)
    deep = tail(exp, "deep-plain", "loss", 130)
    residual = tail(exp, "deep-residual", "loss", 130)
    assert deep > 2 * shallow, (deep, shallow)
    assert residual < 1.2 * shallow and residual < 0.5 * deep, (residual, shallow, deep)
    # not vanishing gradients (BatchNorm + He init): the deep plain stack's first layer still learns
    g = last_row(exp, "deep-plain", "grad_norm")
    assert g["input"] > 1e-3
