"""Probe values against an independent autograd computation on a copy of the model."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

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


@pytest.mark.parametrize(("optimizer", "wd"), [("sgd", 0.0), ("sgd", 1e-3), ("momentum", 0.0), ("rmsprop", 0.0), ("adam", 1e-3)])
def test_engine_update_ratio_is_the_weights_actual_change(optimizer, wd):
    """The engine takes update_ratio from what its optimiser reports (no copy of the weights): it
    must equal ||w_after - w_before|| / ||w_before|| per layer, measured here on copies of the
    weights around each step, for every update rule, over steps where momentum and moments build up."""
    cfg = small_demo(**{"train.optimizer": optimizer, "train.lr": 1e-3 if optimizer in ("rmsprop", "adam") else 0.05,
                        "train.weight_decay": wd, "train.update_every": 2, "model.residual": True})
    exp = Experiment(cfg)
    run = exp.runs[0]
    named = dict(run.model.named_modules())
    layers = [list(named[n].parameters(recurse=False)) for n in run.probe.layer_names]
    expect_w, expect_u = {}, {}
    for step in range(7):
        before = [[p.detach().double().clone() for p in ps] for ps in layers]
        exp.step()
        if step % 2:
            continue
        after = [[p.detach().double() for p in ps] for ps in layers]
        expect_w[step] = [float(torch.cat([p.flatten() for p in ps]).norm()) for ps in after]
        expect_u[step] = [
            float(torch.cat([(p - q).flatten() for p, q in zip(ps, qs, strict=True)]).norm()) / float(torch.cat([q.flatten() for q in qs]).norm())
            for ps, qs in zip(after, before, strict=True)
        ]
    ws, w = exp.recording.metric(run.name, "weight_norm")
    us, u = exp.recording.metric(run.name, "update_ratio")
    assert ws.tolist() == us.tolist() == sorted(expect_u)
    used = np.isfinite(exp.recording.metric(run.name, "grad_norm")[1][-1])
    for row, step in enumerate(us.tolist()):
        np.testing.assert_allclose(w[row], expect_w[step], rtol=1e-5)
        np.testing.assert_allclose(u[row][used], np.asarray(expect_u[step])[used], rtol=2e-3)
        assert (u[row][~used] == 0).all()  # switched-off norms: no gradient, no step


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


def test_histograms_of_denormal_gradients_count_every_value():
    """The first layers of a 200-block plain stack get gradients near 1e-42 (float32 denormals):
    the bin scale for such a range is past float32's largest value, which once gave NaN bins and
    a bincount error that stopped the run at step 0."""
    from gradviz.core.probes import Probe, param_layers

    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    probe = Probe(model, param_layers(model), activation="tanh", hist_every=1)
    probe.begin_step(0)
    model(torch.randn(8, 4)).sum().backward()
    tiny = torch.linspace(-4e-42, 4e-42, 16, dtype=torch.float32).reshape(4, 4)
    assert 0 < float(tiny.abs().max()) < torch.finfo(torch.float32).tiny  # really denormal
    model[0].weight.grad = tiny.clone()
    _, hists = probe.collect_cadence()
    edges = probe.edges[("grad", 0)].numpy()
    assert edges[-1] == pytest.approx(2 * float(tiny.abs().max()))
    expected, _ = np.histogram(tiny.double().numpy().ravel(), bins=edges)
    np.testing.assert_array_equal(hists["grad"][0], expected)
    # the ordinary layer beside it is binned as before
    g = model[2].weight.grad.double().numpy().ravel()
    expected, _ = np.histogram(g, bins=probe.edges[("grad", 1)].numpy())
    assert hists["grad"][1].sum() == g.size
    # float32 binning may move a value lying on an edge to the bin below: compare cumulatively
    np.testing.assert_allclose(np.cumsum(hists["grad"][1]), np.cumsum(expected), atol=2)


def test_a_200_block_plain_stack_records_its_first_steps():
    cfg = small_demo(**{"model.depth": 200, "model.width": 8})
    exp = Experiment(cfg)
    exp.run(steps=2, threads=1)
    assert exp.error is None
    steps, grad = exp.recording.metric("plain", "grad_norm")
    assert list(steps) == [0, 1]
    _, _, counts = exp.recording.histograms("plain", "grad", "input")
    assert counts.shape[0] == 2 and counts[0].sum() > 0


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


# ---- the machinery behind the numbers ------------------------------------------------------------

def test_blocks_report_through_their_sink_and_copies_run_bare():
    """The engine's blocks hand their output to the probe without forward hooks; a deep copy or a
    pickle of the model drops the sink, so a copy trains bare and reports nothing."""
    import io

    exp = Experiment(small_demo())
    run = exp.runs[0]
    blocks = [m for _, m in run.probe.blocks]
    assert all(b.gradviz_sink is not None and not b._forward_hooks for b in blocks)
    twin = copy.deepcopy(run.model)
    assert all(m.__dict__.get("gradviz_sink") is None for m in twin.modules())
    torch.save(run.model, io.BytesIO())  # a closure in the model would not pickle
    x, y = next(run.data.train_batches(32, seed=0))
    run.probe.begin_step(1)
    torch.nn.functional.cross_entropy(twin(x), y).backward()
    assert all(n is None for n in run.probe.block_grads.norms)
    with torch.no_grad():  # evaluation registers nothing either
        run.model(x)
    assert all(n is None for n in run.probe.block_grads.norms)
    run.probe.remove()
    assert all(b.__dict__.get("gradviz_sink") is None for b in blocks)


class _Pair(torch.nn.Module):
    """Returns a tuple whose first element is the second output of a chunk (output_nr 1)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 8)

    def forward(self, x):
        a, b = self.fc(x).chunk(2, dim=1)
        return b, a


def test_block_grad_norms_on_plain_modules_tuple_outputs_and_leaves():
    from gradviz.core.probes import BlockGradNorms

    torch.manual_seed(0)
    pair, ident = _Pair(), torch.nn.Identity()
    bgn = BlockGradNorms([("pair", pair), ("ident", ident)])
    x = torch.randn(5, 4, requires_grad=True)  # a leaf: the identity block returns it as it is
    b, a = pair(ident(x))
    loss = (b.sin() * a).sum()
    gb, gx = torch.autograd.grad(loss, [b, x], retain_graph=True)
    loss.backward()
    assert float(bgn.values()[0]) == pytest.approx(float(gb.norm()), rel=1e-6)
    assert float(bgn.values()[1]) == pytest.approx(float(gx.norm()), rel=1e-6)
    bgn.reset()  # also drops the hook on the leaf, which would outlive the graph
    bgn.remove()
    pair(x)[0].sum().backward()
    assert bgn.norms == [None, None] and not pair._forward_hooks and not x._backward_hooks


def test_norm_plan_matches_per_tensor_norms():
    from gradviz.core.probes import GRAD_STACK_MAX, NormPlan, to_host

    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (3, 4), (), (), (7,), (70, 80), (3, 4), (5,), (5,)]
    tensors = [torch.randn(s, generator=g) for s in shapes] + [torch.randn(6, generator=g).to(torch.bfloat16)] * 2
    plan = NormPlan(tensors, GRAD_STACK_MAX)
    assert plan.groups  # something was stacked
    got = plan.unpack(to_host(plan.parts(tensors)))
    want = [float(t.double().norm()) for t in tensors]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_update_metrics_with_large_frozen_and_small_parameters():
    """weight_norm and update_ratio per layer for stacked small parameters, large ones copied one by
    one, and a large frozen one (never copied: it does not move)."""
    from gradviz.core.probes import WEIGHT_STACK_MAX, Probe

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 300), torch.nn.Tanh(), torch.nn.Linear(300, 300), torch.nn.Linear(300, 300),
        torch.nn.Linear(300, 4), torch.nn.Linear(4, 4),
    )
    model[3].requires_grad_(False)
    assert model[2].weight.numel() > WEIGHT_STACK_MAX
    layers = [(n, m) for n, m in model.named_children() if isinstance(m, torch.nn.Linear)]
    probe = Probe(model, layers, update_every=1)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    for step in range(3):
        x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
        probe.begin_step(step)
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        metrics = probe.after_backward(loss)
        before = [[p.detach().double().clone() for p in m.parameters()] for _, m in layers]
        probe.before_step()
        opt.step()
        probe.after_step(metrics)
        after = [[p.detach().double() for p in m.parameters()] for _, m in layers]
        wn = [float(torch.cat([p.flatten() for p in ps]).norm()) for ps in after]
        moved = [float(torch.cat([(p - q).flatten() for p, q in zip(ps, qs, strict=True)]).norm()) for ps, qs in zip(after, before, strict=True)]
        ur = [m / float(torch.cat([q.flatten() for q in qs]).norm()) for m, qs in zip(moved, before, strict=True)]
        np.testing.assert_allclose(metrics.weight_norm, wn, rtol=1e-5)
        np.testing.assert_allclose(metrics.update_ratio, ur, rtol=1e-4, atol=1e-12)
        frozen = [n for n, _ in layers].index("3")
        assert metrics.update_ratio[frozen] == 0.0 and np.isnan(metrics.grad_norm[frozen])
        assert np.isfinite(np.delete(metrics.grad_norm, frozen)).all()


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_activation_summary_matches_torch(activation):
    from gradviz.core.probes import SATURATION, activation_stats, activation_summary

    thr = SATURATION.get(activation)
    g = torch.Generator().manual_seed(1)
    for z in (torch.randn(64, 300, generator=g) * 3 + 0.5, torch.tensor([[1.5]]), torch.randn(7, generator=g)):
        summary = activation_summary(z, thr, 1024)
        values = np.array([[float(v) for v in summary[:3]]])
        mean, std, sat = (float(v[0]) for v in activation_stats([summary[3]], values, relu=thr is None))
        zd = z.double()
        want_sat = (zd.abs() > thr) if thr is not None else (zd <= 0)
        assert mean == pytest.approx(float(zd.mean()), rel=1e-5, abs=1e-7)
        assert std == pytest.approx(float(zd.std()) if z.numel() > 1 else 0.0, rel=1e-5)
        assert sat == pytest.approx(float(want_sat.double().mean()), abs=1e-12)
        assert summary[4].numel() == min(z.numel(), 1024)


def test_activation_statistics_on_later_cadence_steps_match_every_layer():
    """From the second cadence step on, same-shaped outputs are copied into one stack and measured
    together: every layer's statistics and activation histogram must still be its own output's."""
    cfg = small_demo(**{"train.hist_every": 2, "train.eval_every": 100})
    exp = Experiment(cfg)
    run = exp.runs[0]
    names = exp.recording.layers("plain")
    mods = dict(run.model.named_modules())
    outs: dict[str, torch.Tensor] = {}
    def keep(n, o) -> None:  # returns None: the output stays as it is
        outs.setdefault(n, o.detach().double().clone())

    for n in names:  # the test's own hooks see the same outputs as the probe's
        mods[n].register_forward_hook(lambda m, i, o, n=n: keep(n, o))
    seen = {}
    for step in range(5):
        outs.clear()
        exp.step()
        seen[step] = dict(outs)
    rec = exp.recording
    steps, mean = rec.metric("plain", "act_mean")
    _, std = rec.metric("plain", "act_std")
    _, sat = rec.metric("plain", "act_saturation")
    rows = {int(s): k for k, s in enumerate(steps) if np.isfinite(mean[k]).any()}
    assert sorted(rows) == [0, 2, 4]
    for step, k in rows.items():
        ran = [n for n in names if n in seen[step]]
        assert len(ran) == 2 + cfg.model.depth  # input, block linears, head: the norms are switched off
        for j, n in enumerate(names):
            if n not in ran:
                assert np.isnan(mean[k][j]), (step, n)
                continue
            z = seen[step][n]
            assert mean[k][j] == pytest.approx(float(z.mean()), rel=1e-4, abs=1e-6), (step, n)
            assert std[k][j] == pytest.approx(float(z.std()), rel=1e-4), (step, n)
            if n in ("input", "head"):  # they feed a Linear and the loss: no activation to saturate
                assert np.isnan(sat[k][j]), (step, n)
                continue
            assert sat[k][j] == pytest.approx(float((z.abs() > 2.65).double().mean()), abs=1e-9), (step, n)
    for n in ("input", "blocks.0.linear", "blocks.4.linear", "head"):
        hs, edges, counts = rec.histograms("plain", "activation", n)
        assert list(hs) == [0, 2, 4]
        for row, step in enumerate(hs):
            z = seen[int(step)][n].numpy().ravel()
            expected, _ = np.histogram(np.clip(z, edges[0], edges[-1]), bins=edges)
            assert counts[row].sum() == z.size
            np.testing.assert_allclose(counts[row], expected, atol=2)


def test_activation_capture_copies_and_regroups_when_shapes_change():
    """The capture copies each output at hook time (a later in-place change does not reach it),
    counts a layer's first output only, and re-plans its stacks when a shape changes."""
    from gradviz.core.probes import ActivationCapture

    cap = ActivationCapture(None, 1024)
    g = torch.Generator().manual_seed(0)

    def measure(outputs):
        for i, t in outputs.items():
            cap.capture(i, t)
        expected = {i: (float(t.double().mean()), float(t.double().std()), float((t <= 0).double().mean())) for i, t in outputs.items()}
        for t in outputs.values():
            t.relu_()  # an in-place op after the layer, as ReLU(inplace=True) would do
        layers, values, samples, numel = cap.summarise()
        assert sorted(layers) == sorted(outputs)
        v = values.numpy()
        for row, i in enumerate(layers):
            n = numel[i]
            mean, std, dead = v[row, 0] / n, v[row, 1] / np.sqrt(n - 1), (n - v[row, 2]) / n
            assert (mean, std, dead) == pytest.approx(expected[i], rel=1e-5, abs=1e-7), i
            assert samples[i].numel() == min(n, 1024)

    shapes = {0: (16, 8), 1: (16, 8), 2: (16, 8), 3: (16, 3)}
    for _ in range(2):  # first time one by one, then stacked
        measure({i: torch.randn(*s, generator=g) for i, s in shapes.items()})
    assert len(cap.stacks) == 1 and cap.members == [[0, 1, 2]]
    shapes[1] = (4, 8)  # layer 1 changes shape: measured alone, then re-planned
    measure({i: torch.randn(*s, generator=g) for i, s in shapes.items()})
    measure({i: torch.randn(*s, generator=g) for i, s in shapes.items()})
    assert cap.members == [[0, -1, 2]]
    first = torch.full((16, 8), 2.0)
    cap.capture(0, first)
    cap.capture(0, torch.zeros(16, 8))  # the same layer again in one forward: ignored
    layers, values, _, _ = cap.summarise()
    assert layers == [0] and float(values[0, 0]) == pytest.approx(2.0 * 128)


def test_layers_that_never_run_follow_the_layer_before_them():
    """A plain ResNet-18 skips its shortcut convolutions and `MultiheadAttention` uses its out_proj's
    weight without calling it. Such layers came last, after the head: the plain twin's layer k was
    not the residual twin's layer k on the depth profile. They now follow the layer before them in
    `named_modules()` order, so the twins line up layer for layer, as the layer table lists them."""
    from gradviz.config import ModelConfig
    from gradviz.core.models import build_model
    from gradviz.core.probes import forward_order
    from gradviz.core.summary import summarize

    orders = []
    for residual in (False, True):
        m = build_model(ModelConfig(kind="resnet18", residual=residual, norm=True), (1, 28, 28), 10, seed=0)
        names = [n for n, _ in forward_order(m, torch.zeros(2, 1, 28, 28))]
        assert names == [r.name for r in summarize(m, (1, 28, 28))]  # the layer table agrees
        orders.append(names)
    assert orders[0] == orders[1]
    names = orders[0]
    assert names.index("layer2.0.downsample.0") == names.index("layer2.0.bn2") + 1 and names[-1] == "fc"
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 2)
    lm = nn.Sequential(nn.Embedding(10, 8), enc, nn.Linear(8, 10))
    names = [n for n, _ in forward_order(lm, torch.zeros(2, 5, dtype=torch.long))]
    assert names.index("1.layers.0.self_attn.out_proj") == names.index("1.layers.0.self_attn") + 1
    assert names.index("1.layers.1.self_attn.out_proj") < names.index("2") == len(names) - 1


def test_saturation_is_kept_only_for_layers_that_feed_an_activation():
    """`act_saturation` is about what a tanh receives. With norms off each block's Linear feeds its
    tanh; switched on between two steps, the norm after it does instead. The input layer (into the
    first Linear) and the head (the logits) never do: their values are NaN, while their mean and
    std are still measured."""
    from gradviz.core.commands import SetNorm

    cfg = small_demo(**{"train.hist_every": 1, "train.eval_every": 100})
    exp = Experiment(cfg)
    names = exp.recording.layers("plain")
    exp.step()
    exp.submit(SetNorm("plain", True))
    exp.apply_commands()
    exp.step()
    assert exp.switches("plain")["norm"] is True
    steps, sat = exp.recording.metric("plain", "act_saturation")
    _, mean = exp.recording.metric("plain", "act_mean")
    for k, norm_on in ((0, False), (1, True)):
        for j, n in enumerate(names):
            fed = n.startswith("blocks.") and n.endswith(".norm" if norm_on else ".linear")
            assert np.isfinite(sat[k][j]) == fed, (int(steps[k]), n, sat[k][j])
            if n in ("input", "head"):
                assert np.isfinite(mean[k][j])


def test_activation_feeds_keep_the_function_mode_only_for_models_that_need_it():
    """A model with activation modules is watched both ways on its first cadence step; the torch
    function mode (a few µs per op) stays only if activations are also called outside the modules."""
    import torch.nn.functional as F

    from gradviz.core.activation_feeds import ActivationFeeds

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.act, self.b = nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3)

        def forward(self, x):
            return F.relu(self.b(self.act(self.a(x))))

    x = torch.randn(2, 3)
    for model, mixed, fed in ((nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3)), False, {"0"}), (Mixed(), True, {"a", "b"})):
        feeds = ActivationFeeds(model)
        names = {id(m): n for n, m in model.named_modules()}
        hooks = [m.register_forward_hook(lambda m, _i, _o, f=feeds, n=names: f.layer_done(n[id(m)])) for m in model.modules() if isinstance(m, nn.Linear)]
        assert feeds.mixed is None
        for step in range(3):
            depth = torch._C._len_torch_function_stack()
            feeds.arm()
            assert (torch._C._len_torch_function_stack() > depth) is (step == 0 or mixed)  # the mode, when on
            model(x)
            assert torch._C._len_torch_function_stack() == depth
            assert feeds.disarm() == fed, (model, step)
            assert feeds.mixed is mixed
        for h in hooks:
            h.remove()
        assert not model._forward_hooks and all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules() if m is not model)
