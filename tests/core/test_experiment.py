"""Experiment: twins, lockstep batches, commands between steps, errors."""

import numpy as np
import pytest
import torch

from gradviz.config import load_preset
from gradviz.core import commands as C
from gradviz.core.experiment import Experiment
from gradviz.core.optim import Adam


def small(**over):
    base = {"model.depth": 5, "model.width": 8, "data.n_train": 256, "data.n_test": 64, "train.batch_size": 32}
    base.update(over)
    return load_preset("demo").with_overrides(base)


def test_twins_start_from_identical_weights_and_differ_only_in_the_skip():
    exp = Experiment(small())
    a, b = (dict(r.model.state_dict()) for r in exp.runs)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert exp.switches("plain")["residual"] is False and exp.switches("residual")["residual"] is True


def test_runs_see_identical_batches():
    exp = Experiment(small())
    seen = {}
    for run in exp.runs:
        run.model.register_forward_pre_hook(lambda m, args, n=run.name: seen.setdefault(n, []).append(args[0].clone()))
    for _ in range(3):
        exp.step()
    for x0, x1 in zip(seen["plain"], seen["residual"]):
        assert torch.equal(x0, x1)
    assert not torch.equal(seen["plain"][0], seen["plain"][1])


def test_toggle_changes_the_next_forward_and_keeps_the_weights():
    exp = Experiment(small())
    exp.step()
    run = exp.get_run("plain")
    x = torch.randn(4, *run.data.input_shape)
    run.model.eval()
    before = run.model(x).detach()
    weights = {k: v.clone() for k, v in run.model.state_dict().items()}
    opt = run.optimizer
    exp.submit(C.SetResidual("plain", True))
    exp.submit(C.SetNorm("plain", True))
    exp.submit(C.SetDropout("plain", 0.3))
    exp.apply_commands()
    assert run.optimizer is opt  # no rebuild
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    run.model.eval()
    after = run.model(x).detach()
    assert not torch.allclose(before, after)
    assert exp.switches("plain") == {"residual": True, "norm": True, "dropout": 0.3}
    events = [e for e in exp.recording.events() if e[2] == "toggle"]
    assert [e[0] for e in events] == [1, 1, 1]  # marked at the first step that uses them
    assert {e[3] for e in events} == {"residual on", "norm on", "dropout p=0.3"}
    # the switched-on norm layers now get gradients at the next step
    exp.step()
    _, g = exp.recording.metric("plain", "grad_norm")
    layers = exp.recording.layers("plain")
    bn = layers.index("blocks.0.norm")
    assert np.isnan(g[0][bn]) and np.isfinite(g[1][bn])


def test_pause_step_resume_and_restart():
    exp = Experiment(small())
    exp.submit(C.Pause())
    exp.apply_commands()
    assert not exp.step()
    exp.submit(C.Step(2))
    exp.apply_commands()
    assert exp.step() and exp.step() and not exp.step()
    exp.submit(C.Resume())
    exp.submit(C.SetResidual("plain", True))
    exp.apply_commands()
    exp.step()
    w0 = exp.get_run("plain").model.head.weight.detach().clone()
    exp.submit(C.Restart())
    exp.apply_commands()
    assert exp.switches("plain")["residual"] is True  # restart keeps the current switches
    fresh = Experiment(small())
    assert torch.equal(exp.get_run("plain").model.head.weight, fresh.get_run("plain").model.head.weight)
    assert not torch.equal(exp.get_run("plain").model.head.weight, w0)
    step_before = exp.step_index
    exp.step()
    assert exp.recording.last_step("plain") == step_before  # steps keep counting after a restart
    kinds = [e[2] for e in exp.recording.events()]
    assert kinds == ["pause", "resume", "toggle", "restart"]


def test_an_exception_in_the_model_stops_with_one_line():
    depth = torch._C._len_torch_function_stack()
    exp = Experiment(small(**{"train.hist_every": 1}))  # every step watches its forward for activations
    exp.step()

    def boom(*_):
        raise RuntimeError("shapes do not match\n(second line)")

    exp.get_run("residual").model.register_forward_pre_hook(boom)
    exp.run(steps=5, threads=1)
    assert exp.stopped and exp.error
    assert "\n" not in exp.error and "residual" in exp.error and "RuntimeError" in exp.error
    assert exp.recording.last_step("plain") >= 0  # what was recorded stays
    assert ("residual", "error") in [(e[1], e[2]) for e in exp.recording.events()]
    # the forward never returned: the probe's torch function mode left with it, not stayed on this thread
    assert torch._C._len_torch_function_stack() == depth


def test_bad_command_is_a_note_not_a_crash():
    exp = Experiment(small())
    exp.submit(C.SetResidual("nobody", True))
    exp.submit(C.SetDropout("plain", 2.0))
    exp.apply_commands()
    assert len(exp.messages) == 2 and "nobody" in exp.messages[0]
    assert exp.step()


def test_rgb_preset_follows_seed_000():
    cfg = load_preset("rgb").with_overrides({"train.eval_every": 10})
    exp = Experiment(cfg)
    run = exp.get_run("residual")
    assert next(run.model.parameters()).dtype == torch.float64
    assert run.data.n_train == 1000 and run.cfg.train.batch_size == 0
    assert isinstance(run.optimizer, Adam) and run.optimizer.param_groups[0]["lr"] == 1e-3
    exp.run(steps=200, threads=1)
    _, lp = exp.recording.metric("plain", "loss")
    _, lr_ = exp.recording.metric("residual", "loss")
    assert lp[-1] < lp[0] and lr_[-1] < lr_[0]


def test_hyperbolic_decay():
    cfg = small(**{"train.lr_decay": 1.0, "train.lr": 0.1})
    exp = Experiment(cfg)
    spe = exp.runs[0].data.steps_per_epoch(32)
    for _ in range(spe * 2 + 1):
        exp.step()
    _, lr = exp.recording.metric("plain", "lr")
    assert lr[0] == pytest.approx(0.1) and lr[spe] == pytest.approx(0.05) and lr[2 * spe] == pytest.approx(0.1 / 3)


def test_demo_preset_shows_vanishing_gradients():
    """The demo's promise (issue 3): over steps 150-200 the plain twin's first layer gets at most
    1/100 of its last layer's grad_norm, the residual twin at least 1/10; residual loss lower at 300."""
    exp = Experiment(load_preset("demo"))
    exp.run(steps=301, threads=1)
    ratios = {}
    for run in ("plain", "residual"):
        steps, g = exp.recording.metric(run, "grad_norm")
        sel = (steps >= 150) & (steps <= 200)
        ratios[run] = float(np.median(g[sel, 0] / g[sel, -1]))
    assert ratios["plain"] <= 1e-2
    assert ratios["residual"] >= 1e-1
    loss = {r: exp.recording.metric(r, "loss")[1][300] for r in ("plain", "residual")}
    assert loss["residual"] < loss["plain"]


def _flushes_denormals() -> bool:
    return float(torch.tensor([1e-40], dtype=torch.float32).mul(1.0)) == 0.0


def test_training_flushes_denormals_and_puts_the_mode_back():
    """Denormal arithmetic is about a hundred times slower on x86; the training thread flushes it
    (see `Experiment.run`) and leaves the thread as it found it."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    assert not _flushes_denormals()
    seen = []
    exp = Experiment(load_preset("demo").with_overrides({"model.depth": 3, "model.width": 8, "train.batch_size": 16}))
    exp.run(steps=2, threads=1, on_step=lambda e: seen.append(_flushes_denormals()))
    assert seen == [True, True]
    assert not _flushes_denormals()


def test_squared_error_on_class_labels_trains_against_one_hot_rows():
    import copy

    import torch.nn.functional as F

    cfg = load_preset("demo").with_overrides({"model.depth": 3, "model.width": 8, "train.batch_size": 16, "train.loss": "mse"})
    exp = Experiment(cfg)
    run = exp.get_run("plain")
    twin = copy.deepcopy(run.model)
    x, y = next(run.data.train_batches(cfg.train.batch_size, seed=cfg.train.seed))
    assert not y.is_floating_point()  # the spiral's labels
    exp.step()
    twin.train()
    out = twin(x)
    expected = F.mse_loss(out, F.one_hot(y, out.shape[1]).to(out.dtype))
    _, loss = exp.recording.metric("plain", "loss")
    assert loss[0] == pytest.approx(float(expected.detach()), rel=1e-5)


def test_batchnorm_on_a_batch_of_one_is_refused_with_a_note_and_training_goes_on():
    cfg = load_preset("demo").with_overrides({"model.depth": 3, "model.width": 8, "train.batch_size": 1})
    exp = Experiment(cfg)
    exp.step()
    exp.submit(C.SetNorm("plain", True))
    exp.apply_commands()
    exp.step()
    assert exp.error is None and not exp.switches("plain")["norm"]
    assert exp.messages and "BatchNorm needs at least 2 examples" in exp.messages[-1]
    notes = [e for e in exp.recording.events() if e[2] == "note"]
    assert notes and "SetNorm" in notes[-1][3]
    exp.step()
    assert exp.recording.last_step("plain") == 2
    # LayerNorm has no such limit
    exp2 = Experiment(cfg.with_overrides({"model.norm_kind": "layer"}))
    exp2.submit(C.SetNorm("plain", True))
    exp2.apply_commands()
    exp2.step()
    assert exp2.error is None and exp2.switches("plain")["norm"]


def test_batchnorm_on_from_the_start_with_a_batch_of_one_is_refused_before_training():
    """Configured (not toggled) the same way, the session used to stop at step 0 with torch's
    "Expected more than 1 value per channel when training"."""
    cfg = load_preset("demo").with_overrides({"model.depth": 3, "model.width": 8, "train.batch_size": 1, "model.norm": True})
    with pytest.raises(ValueError, match=r"^plain: BatchNorm needs at least 2 examples per batch"):
        Experiment(cfg)
    for ok in ({"model.norm_kind": "layer"}, {"train.batch_size": 2}, {"model.norm": False}):
        exp = Experiment(cfg.with_overrides(ok))
        exp.step()
        assert exp.error is None, ok


def test_a_switch_the_model_lacks_is_refused_with_a_note():
    """LeNet's blocks change width (no skip path) and seed 000's rgb net has no normalisation: a
    toggle there would record an event that changed nothing."""
    from gradviz.core.models import switches as sw

    lenet = Experiment(load_preset("batchnorm-init").with_overrides({"train.batch_size": 8, "data.n_train": 64}))
    assert sw.supports(lenet.runs[0].model) == {"residual": False, "norm": True, "dropout": True}
    for cmd in (C.SetResidual("lenet-default", True), C.SetResidual(None, True)):
        lenet.submit(cmd)
        lenet.apply_commands()
        assert "has no skip path" in lenet.messages[-1] or "has a skip path" in lenet.messages[-1]
    assert not [e for e in lenet.recording.events() if e[2] == "toggle"]
    lenet.submit(C.SetNorm("lenet-default", True))  # what LeNet does have still switches
    lenet.apply_commands()
    assert lenet.switches("lenet-default")["norm"]
    rgb = Experiment(load_preset("rgb"))
    assert sw.supports(rgb.runs[0].model) == {"residual": True, "norm": False, "dropout": True}
    rgb.submit(C.SetNorm("plain", True))
    rgb.apply_commands()
    assert rgb.messages[-1] == "plain: RGBNet has no normalisation layer to switch"
    demo = Experiment(load_preset("demo").with_overrides({"model.depth": 2, "model.width": 4}))
    assert sw.supports(demo.runs[0].model) == {"residual": True, "norm": True, "dropout": True}


def test_evaluation_goes_in_batches_of_a_few_training_batches_and_says_how_far_it_got(monkeypatch):
    """Evaluation took the whole split in batches of 1024 whatever the model: a MaxViT trained in
    batches of 4 on 224 x 224 images asked for 13 GB of activations in one layer and ran for
    minutes at step 0 with nothing on screen. It now goes in batches of at most 8 training batches,
    gives the same numbers as one pass over the split (checked here by hand), and tells
    `on_busy` how far it has got."""
    from gradviz.core import training

    exp = Experiment(small(**{"data.n_test": 300, "train.batch_size": 16, "train.eval_every": 3}))
    run = exp.runs[0]
    sizes: list[int] = []
    own = run.data.eval_batches

    def counted(batch_size=1024):
        for x, y in own(batch_size):
            sizes.append(len(x))
            yield x, y

    monkeypatch.setattr(run.data, "eval_batches", counted)
    monkeypatch.setattr(training, "EVAL_TELL_AFTER", -1.0)  # tell from the first batch on
    told: list[str] = []
    exp.on_busy = told.append
    for _ in range(4):  # steps 0..3: evaluations at 0 and 3
        exp.step()
    assert sizes == [128, 128, 44] * 4  # 8 x 16 per batch, the rest last; both runs, twice (they share the data)
    assert told == [f"evaluating plain: {n} of 300 examples" for n in (0, 128, 256)] + [""] + [
        f"evaluating residual: {n} of 300 examples" for n in (0, 128, 256)] + [""] + [
        f"evaluating plain: {n} of 300 examples" for n in (0, 128, 256)] + [""] + [
        f"evaluating residual: {n} of 300 examples" for n in (0, 128, 256)] + [""]
    steps, recorded = exp.recording.metric("plain", "eval_loss")
    assert list(steps) == [0, 3]
    model = run.model
    model.eval()
    with torch.no_grad():
        x = run.data._prepare(run.data.test_x)
        mine = torch.nn.functional.cross_entropy(model(x), run.data.test_y).item()
        accuracy = (model(x).argmax(1) == run.data.test_y).float().mean().item()
    model.train()
    assert recorded[-1] == pytest.approx(mine, rel=1e-5)
    assert exp.recording.metric("plain", "eval_accuracy")[1][-1] == pytest.approx(accuracy)
    assert training.eval_batch_size(0, run.data) == training.EVAL_BATCH_MOST  # full batch: 256 examples, capped
    assert training.eval_batch_size(1000, run.data) == 1024
