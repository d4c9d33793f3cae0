"""Probe values against an independent autograd computation on a copy of the model."""

import copy

import numpy as np
import pytest
import torch

from gradviz.config import load_preset
from gradviz.core import commands as C
from gradviz.core.experiment import Experiment


def small_demo(**over):
    base = {"model.depth": 6, "model.width": 8, "data.n_train": 256, "data.n_test": 64, "train.batch_size": 32,
            "train.hist_every": 1, "train.eval_every": 1}
    base.update(over)
    return load_preset("demo").with_overrides(base)


def manual_metrics(model, layers, blocks, x, y, lr):
    """grad_norm, act_grad_norm, weight_norm, update_ratio of one plain SGD step, by hand."""
    outs = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: outs.__setitem__(n, o)) for n, m in blocks]
    model.train()
    out = model(x)
    for h in hooks:
        h.remove()
    loss = torch.nn.functional.cross_entropy(out, y)
    block_outs = [outs[n] for n, _ in blocks]
    named = dict(model.named_modules())
    params = [p for n, _ in layers for p in named[n].parameters(recurse=False)]
    grads = torch.autograd.grad(loss, params + block_outs, allow_unused=True)
    pgrads, bgrads = grads[: len(params)], grads[len(params):]
    gn, wn, ur = [], [], []
    k = 0
    for n, _ in layers:
        ps = list(named[n].parameters(recurse=False))
        gs = pgrads[k : k + len(ps)]
        k += len(ps)
        if all(g is None for g in gs):
            for lst in (gn, wn, ur):
                lst.append(float("nan"))
            continue
        g2 = sum(float((g.double() ** 2).sum()) for g in gs if g is not None)
        w2 = sum(float((p.detach().double() ** 2).sum()) for p in ps)
        after2 = sum(float(((p.detach().double() - lr * (g.double() if g is not None else 0)) ** 2).sum()) for p, g in zip(ps, gs))
        gn.append(np.sqrt(g2))
        wn.append(np.sqrt(after2))
        ur.append(lr * np.sqrt(g2) / np.sqrt(w2))
    agn = [float(g.double().norm()) for g in bgrads]
    return float(loss.detach()), np.array(gn), np.array(agn), np.array(wn), np.array(ur)


@pytest.mark.parametrize("residual", [False, True])
def test_step_metrics_match_independent_autograd(residual):
    cfg = small_demo(**{"model.residual": residual})
    exp = Experiment(cfg)
    run = exp.runs[0]
    twin = copy.deepcopy(run.model)
    layers = [(n, None) for n in run.probe.layer_names]
    blocks = [(n, dict(twin.named_modules())[n]) for n in run.probe.block_names]
    x, y = next(run.data.train_batches(cfg.train.batch_size, seed=cfg.train.seed))
    loss, gn, agn, wn, ur = manual_metrics(twin, layers, blocks, x, y, cfg.train.lr)
    exp.step()
    rec = exp.recording
    _, rl = rec.metric(run.name, "loss")
    _, rg = rec.metric(run.name, "grad_norm")
    _, ra = rec.metric(run.name, "act_grad_norm")
    _, rw = rec.metric(run.name, "weight_norm")
    _, ru = rec.metric(run.name, "update_ratio")
    assert rl[0] == pytest.approx(loss, rel=1e-5)
    used = np.isfinite(gn)
    assert used.sum() == 2 + cfg.model.depth  # input, block linears, head; switched-off norms unused
    np.testing.assert_allclose(rg[0][used], gn[used], rtol=1e-4)
    assert np.isnan(rg[0][~used]).all()
    np.testing.assert_allclose(ra[0], agn, rtol=1e-4)
    np.testing.assert_allclose(rw[0][used], wn[used], rtol=1e-4)
    np.testing.assert_allclose(ru[0][used], ur[used], rtol=1e-3)


def test_layers_are_in_forward_order_with_module_names():
    exp = Experiment(small_demo())
    names = exp.recording.layers("plain")
    assert names[0] == "input" and names[-1] == "head"
    assert names.index("blocks.0.linear") < names.index("blocks.1.linear") < names.index("blocks.5.linear")
    assert exp.recording.blocks("plain") == [f"blocks.{i}" for i in range(6)]


def test_activation_statistics_and_histograms_match_the_layer_output():
    cfg = small_demo()
    exp = Experiment(cfg)
    run = exp.runs[0]
    twin = copy.deepcopy(run.model)
    x, y = next(run.data.train_batches(cfg.train.batch_size, seed=cfg.train.seed))
    out = {}
    lin = dict(twin.named_modules())["blocks.2.linear"]
    lin.register_forward_hook(lambda m, i, o: out.__setitem__("z", o.detach().double()))
    twin.train()
    twin(x)
    exp.step()
    rec = exp.recording
    i = rec.layers("plain").index("blocks.2.linear")
    _, mean = rec.metric("plain", "act_mean")
    _, std = rec.metric("plain", "act_std")
    _, sat = rec.metric("plain", "act_saturation")
    z = out["z"]
    assert mean[0][i] == pytest.approx(float(z.mean()), rel=1e-4, abs=1e-6)
    assert std[0][i] == pytest.approx(float(z.std()), rel=1e-4)
    assert sat[0][i] == pytest.approx(float((z.abs() > 2.65).double().mean()), abs=1e-9)
    steps, edges, counts = rec.histograms("plain", "activation", "blocks.2.linear")
    assert list(steps) == [0] and len(edges) == counts.shape[1] + 1
    expected, _ = np.histogram(np.clip(z.numpy().ravel(), edges[0], edges[-1]), bins=edges)
    assert counts[0].sum() == z.numel()
    np.testing.assert_allclose(counts[0], expected, atol=2)  # histc vs numpy differ only at bin edges
    _, wedges, wcounts = rec.histograms("plain", "weight", "blocks.2.linear")
    assert wcounts[0].sum() == lin.weight.numel()


def test_histogram_edges_stay_fixed_per_layer():
    exp = Experiment(small_demo(**{"train.hist_every": 2}))
    for _ in range(5):
        exp.step()
    steps, edges, counts = exp.recording.histograms("residual", "grad", "input")
    assert list(steps) == [0, 2, 4]
    assert counts.shape == (3, len(edges) - 1)


def test_nan_guard_pauses_only_that_run_and_names_the_first_layer_in_backward_order():
    exp = Experiment(small_demo())
    exp.step()
    w_before = {n: p.detach().clone() for n, p in exp.get_run("plain").model.named_parameters()}
    exp.submit(C.SetLR("plain", 1e30))
    exp.apply_commands()
    # poison the head's weights so the next backward goes non-finite from the top
    with torch.no_grad():
        exp.get_run("plain").model.head.weight[0, 0] = float("inf")
    exp.step()
    plain = exp.get_run("plain")
    assert plain.paused and not exp.get_run("residual").paused
    kinds = [(e[1], e[2]) for e in exp.recording.events()]
    assert ("plain", "nonfinite") in kinds
    detail = [e[3] for e in exp.recording.events() if e[2] == "nonfinite"][0]
    assert "head" in detail and "step 1" in detail
    # the optimiser step was skipped: nothing but the poisoned weight changed
    for n, p in plain.model.named_parameters():
        if n != "head.weight":
            assert torch.equal(p, w_before[n]), n
    before = exp.recording.last_step("residual")
    exp.step()
    assert exp.recording.last_step("residual") == before + 1
    assert exp.recording.last_step("plain") == 1  # the NaN step itself is recorded


def test_probe_hooks_are_removed_after_cadence_steps():
    exp = Experiment(small_demo(**{"train.hist_every": 3}))
    run = exp.runs[0]
    lin = dict(run.model.named_modules())["blocks.0.linear"]
    exp.step()  # step 0 is a cadence step
    assert len(lin._forward_hooks) == 0
