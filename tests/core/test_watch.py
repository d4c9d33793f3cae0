"""gradviz.watch on users' own loops: values against an independent computation in the same loop,
the model left exactly as it was, and the awkward things real models contain."""

import copy
import math
import threading
import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradviz
from gradviz.core import watch as watch_mod
from gradviz.core.runfile import RunFileReader
from gradviz.core.watch import find_blocks, rank_path


class ResBlock(nn.Module):
    """A residual unit with what real blocks do: BatchNorm, an in-place ReLU right after it and an
    in-place `out += identity` on a layer's output."""

    def __init__(self, width: int, inplace: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.bn = nn.BatchNorm1d(width)
        self.relu = nn.ReLU(inplace=inplace)
        self.fc2 = nn.Linear(width, width)
        self.inplace = inplace

    def forward(self, x):
        out = self.fc2(self.relu(self.bn(self.fc1(x))))
        if self.inplace:
            out += x
        else:
            out = out + x
        return out


class Awkward(nn.Module):
    """Shared parameters, a frozen layer, a layer used every other step, an in-place ReLU applied by
    the parent to a block's output, dropout (random numbers) and a BN layer the user keeps in eval."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.stem = nn.Linear(6, 12)
        self.blocks = nn.Sequential(ResBlock(12, inplace), ResBlock(12, inplace))
        self.post = nn.ReLU(inplace=inplace)
        self.drop = nn.Dropout(0.2)
        self.frozen = nn.Linear(12, 12)
        self.frozen.requires_grad_(False)
        self.sometimes = nn.Linear(12, 12)
        self.tied = nn.Linear(12, 12, bias=False)
        self.tied2 = nn.Linear(12, 12)
        self.tied2.weight = self.tied.weight  # one parameter, two modules
        self.head = nn.Linear(12, 3)
        self.use_sometimes = True

    def forward(self, x, taps=None):
        x = torch.tanh(self.stem(x))
        for b in self.blocks:
            x = b(x)
            if taps is not None:
                taps.append(x)
        x = self.drop(self.post(x))
        x = self.frozen(x)
        if self.use_sometimes:
            x = self.sometimes(x)
        return self.head(self.tied2(torch.relu(self.tied(x))))


def batches(n, seed=0, batch=16):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 6, generator=g), torch.randint(0, 3, (batch,), generator=g)) for _ in range(n)]


def owned_params(model, layer_names):
    """Each layer's own parameters; a parameter shared by two layers belongs to both (a language
    model's output layer tied to its embedding is not "unused")."""
    named = dict(model.named_modules())
    return [list(named[n].parameters(recurse=False)) for n in layer_names]


def norm_of(tensors):
    if not tensors:
        return math.nan
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def assert_no_hooks(model, opt):
    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                     "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs"):
            assert not getattr(m, attr, {}), f"{name or 'model'}.{attr} left behind"
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


@pytest.mark.parametrize("background", [True, False], ids=["worker-thread", "in-line"])
def test_a_hand_written_update_without_an_optimizer_is_measured(tmp_path, background):
    """A course's loop updates by hand (`p -= lr * p.grad` under `no_grad`) and watches without an
    optimizer: `weight_norm` and `update_ratio` were never recorded, as there was no step to hook.
    The weights are kept as an update step's forward pass begins and the change is measured at
    its `log`: equal to the change computed here, from the second update step on."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
    path = tmp_path / "hand.gradviz"
    w = gradviz.watch(model, None, path=path, name="hand", update_every=2, background=background)
    want_u, want_w = {}, {}
    for step in range(9):
        x = torch.randn(16, 3)
        model.zero_grad()
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            model.eval()(x)  # an evaluation pass between backward and update changes nothing
        model.train()
        layers = owned_params(model, w.layers)
        before = [[p.detach().clone() for p in ps] for ps in layers]
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
        want_u[step] = [norm_of([p.detach() - b for p, b in zip(ps, bs, strict=True)]) / norm_of(bs) for ps, bs in zip(layers, before, strict=True)]
        want_w[step] = [norm_of([p.detach() for p in ps]) for ps in layers]
        w.log(loss=loss)
    w.close()
    rec = gradviz.open_run(path)
    steps, ur = rec.metric("hand", "update_ratio")
    assert steps.tolist() == [2, 4, 6, 8]  # update steps; step 0's forward pass learns the layers
    close(ur, [want_u[s] for s in steps])
    ws, wn = rec.metric("hand", "weight_norm")
    assert ws.tolist() == [2, 4, 6, 8]
    close(wn, [want_w[s] for s in ws])
    assert (ur > 0).all()


@pytest.mark.parametrize("background", [True, False], ids=["worker-thread", "in-line"])
def test_the_tutorial_loop_that_zeroes_gradients_before_log_is_measured(tmp_path, background):
    """PyTorch's own tutorial loop updates by hand and zeroes each `.grad` right after
    (`w -= lr * w.grad; w.grad.zero_()`), before `log`: the watch, which had no optimizer step to
    hook, read the gradients at `log` and recorded every `grad_norm` as exactly 0, and gradient
    histograms of zeros: a class would read "vanished". They are taken as backward ends now."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    path = tmp_path / "tut.gradviz"
    w = gradviz.watch(model, None, path=path, name="tut", hist_every=2, background=background)
    want, first_grads = [], {}
    for step in range(6):
        x = torch.randn(32, 3)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        loss.backward()
        layers = owned_params(model, w.layers)
        want.append([norm_of([p.grad for p in ps]) for ps in layers])
        if step == 2:
            first_grads = {name: layer.weight.grad.detach().clone().flatten().numpy() for name, layer in zip(w.layers, (model[0], model[2], model[4]), strict=True)}
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.05 * p.grad
                p.grad.zero_()
        w.log(loss=loss)
    w.close()
    rec = gradviz.open_run(path)
    steps, gn = rec.metric("tut", "grad_norm")
    assert steps.tolist() == list(range(6)) and (gn > 0).all()
    close(gn, want)
    for name, grad in first_grads.items():
        hs, edges, counts = rec.histograms("tut", "grad", name)
        assert hs.tolist() == [0, 2, 4]
        row = counts[1]  # step 2
        ref, _ = np.histogram(np.clip(grad, edges[0], edges[-1]), bins=edges)
        assert row.sum() == grad.size and np.abs(row - ref).sum() <= 2, (name, row, ref)  # bin-edge ties at most


def close(a, b, rtol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=1e-9, equal_nan=True)


@pytest.mark.parametrize("background", [True, False], ids=["worker-thread", "in-line"])
def test_values_equal_an_independent_computation_in_the_same_loop(tmp_path, monkeypatch, background):
    torch.manual_seed(0)
    slow = watch_mod._Metrics.grad_norms

    def late_grad_norms(*args, **kwargs):  # a slow worker: `log` must still wait for it
        time.sleep(0.02)
        return slow(*args, **kwargs)

    monkeypatch.setattr(watch_mod._Metrics, "grad_norms", late_grad_norms)
    model = Awkward()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9, weight_decay=1e-3)
    path = tmp_path / "mine.gradviz"
    expect = {"grad_norm": [], "update_ratio": [], "weight_norm": [], "act_mean": {}}
    fc2_out = {}
    spy = model.blocks[1].fc2.register_forward_hook(lambda m, i, o: fc2_out.__setitem__("v", o.detach().clone()))
    w = gradviz.watch(model, opt, path=path, name="mine", hist_every=2, update_every=1, background=background)
    assert (w._bg is not None) == background
    assert w.blocks == ["blocks.0", "blocks.1"]  # found by class name ("ResBlock")
    for step, (x, y) in enumerate(batches(5)):
        model.use_sometimes = step % 2 == 0
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        layers = owned_params(model, w.layers)
        expect["grad_norm"].append([norm_of([p.grad for p in ps if p.grad is not None]) if any(p.grad is not None for p in ps) else math.nan for ps in layers])
        before = [[p.detach().clone() for p in ps] for ps in layers]
        opt.step()
        expect["update_ratio"].append([norm_of([p.detach() - b for p, b in zip(ps, bs, strict=True)]) / norm_of(bs) for ps, bs in zip(layers, before, strict=True)])
        expect["weight_norm"].append([norm_of([p.detach() for p in ps]) for ps in layers])
        if step % 2 == 0:
            expect["act_mean"][step] = float(fc2_out["v"].double().mean())
        w.log(loss=loss)
        opt.zero_grad(set_to_none=False)  # zeroed in place: the watch must have read them already
    w.close()
    spy.remove()
    assert not [t for t in threading.enumerate() if t.name == "gradviz-watch"]
    rec = gradviz.open_run(path)
    assert rec.runs == ["mine"] and rec.meta["kind"] == "watch"
    names = rec.layers("mine")
    assert names[:3] == ["stem", "blocks.0.fc1", "blocks.0.bn"]  # forward order
    steps, gn = rec.metric("mine", "grad_norm")
    assert steps.tolist() == [0, 1, 2, 3, 4]
    close(gn, expect["grad_norm"])
    _, ur = rec.metric("mine", "update_ratio")
    close(ur, expect["update_ratio"])
    close(rec.metric("mine", "weight_norm")[1], expect["weight_norm"])
    i_frozen, i_some, i_tied2 = names.index("frozen"), names.index("sometimes"), names.index("tied2")
    assert np.isnan(gn[:, i_frozen]).all() and (ur[:, i_frozen] == 0).all()  # frozen: no gradient, no update
    assert np.isnan(gn[1::2, i_some]).all() and np.isfinite(gn[::2, i_some]).all()  # used every other step
    assert np.isfinite(gn[:, names.index("tied")]).all() and np.isfinite(gn[:, i_tied2]).all()
    # activations on the cadence are the layer's own output, taken before `out += x` changed it
    st, am = rec.metric("mine", "act_mean")
    assert st.tolist() == [0, 2, 4]
    j = names.index("blocks.1.fc2")
    close([am[k, j] for k in range(3)], [expect["act_mean"][s] for s in (0, 2, 4)], rtol=1e-6)
    hs, edges, counts = rec.histograms("mine", "grad", "stem")
    assert hs.tolist() == [0, 2, 4] and len(edges) == counts.shape[1] + 1
    assert not rec.events()


def test_block_output_gradients_survive_in_place_ops(tmp_path):
    """act_grad_norm is dL/d(block output) even when the block does `out += x` and the parent then
    applies ReLU(inplace=True) to that output; checked against autograd on an out-of-place twin."""
    torch.manual_seed(1)
    model = Awkward()
    model.drop.p = 0.0
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    w = gradviz.watch(model, opt, path=tmp_path / "b.gradviz", update_every=1)
    want = []
    for x, y in batches(3, seed=3):
        twin = copy.deepcopy(model)
        for mod in twin.modules():
            if hasattr(mod, "inplace"):
                mod.inplace = False
        taps = []
        ref_loss = F.cross_entropy(twin(x, taps=taps), y)
        want.append([float(g.double().norm()) for g in torch.autograd.grad(ref_loss, taps)])
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        w.log(loss=loss)
        assert abs(float(loss.detach()) - float(ref_loss.detach())) < 1e-6
    w.close()
    rec = gradviz.open_run(tmp_path / "b.gradviz")
    assert rec.blocks("main") == ["blocks.0", "blocks.1"]
    close(rec.metric("main", "act_grad_norm")[1], want, rtol=1e-5)


def _train(model, opt, data, w=None, scaler=None):
    outs = []
    for x, y in data:
        opt.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        if w is not None:
            w.log(loss=loss)
        outs.append(out.detach())
    return outs


def test_scaler_must_be_a_grad_scaler(tmp_path):
    with pytest.raises(TypeError, match="GradScaler"):
        gradviz.watch(nn.Linear(2, 2), path=tmp_path / "x.gradviz", scaler=object())


def test_model_unchanged_and_no_hooks_left(tmp_path):
    torch.manual_seed(2)
    a = Awkward()
    a.blocks[0].bn.eval()  # a user's choice (frozen statistics) that must survive the order trace
    b = copy.deepcopy(a)
    opt_a = torch.optim.Adam([p for p in a.parameters() if p.requires_grad], lr=1e-2)
    opt_b = torch.optim.Adam([p for p in b.parameters() if p.requires_grad], lr=1e-2)
    data = batches(4, seed=5)
    torch.manual_seed(42)
    with gradviz.watch(a, opt_a, path=tmp_path / "a.gradviz", hist_every=1, update_every=1) as w:
        outs_a = _train(a, opt_a, data, w)
    torch.manual_seed(42)  # same dropout masks: the watch drew no random numbers
    outs_b = _train(b, opt_b, data)
    for oa, ob in zip(outs_a, outs_b, strict=True):
        assert torch.equal(oa, ob)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [m.training for m in a.modules()] == [m.training for m in b.modules()]
    assert not a.blocks[0].bn.training
    assert_no_hooks(a, opt_a)
    x = data[0][0]
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))
    with pytest.raises(RuntimeError):
        w.log(loss=1.0)


def test_torchvision_resnet18(tmp_path):
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(3)
    model = tvm.resnet18(num_classes=10)
    twin = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    opt_t = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(2)]
    path = tmp_path / "r18.gradviz"
    w = gradviz.watch(model, opt, path=path, name="r18", hist_every=1, update_every=1)
    grads = []
    for x, y in data:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        grads.append([norm_of([p.grad for p in ps]) for ps in owned_params(model, w.layers)])
        opt.step()
        w.log(loss=loss)
    w.close()
    _train(twin, opt_t, data)
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), twin.state_dict().values(), strict=True))
    assert_no_hooks(model, opt)
    rec = gradviz.open_run(path)
    names = rec.layers("r18")
    assert len(names) == 41 and names[0] == "conv1" and names[-1] == "fc"
    assert rec.blocks("r18") == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    close(rec.metric("r18", "grad_norm")[1], grads, rtol=1e-4)  # float32 norms of 2M-element tensors
    agn = rec.metric("r18", "act_grad_norm")[1]
    assert agn.shape == (2, 8) and np.isfinite(agn).all() and (agn > 0).all()
    for name in ("weight_norm", "update_ratio", "act_mean", "act_std"):
        assert np.isfinite(rec.metric("r18", name)[1]).all(), name
    # dead-ReLU fractions only where a ReLU reads the layer's output: the stem's bn1, each block's
    # bn1, and its bn2, or with a projection shortcut the shortcut's norm, the last layer before
    # the ReLU after the sum. Convolutions (into a norm) and fc (the logits) have none.
    blocks = [(i, j) for i in range(1, 5) for j in range(2)]
    fed = {"bn1", *(f"layer{i}.{j}.bn1" for i, j in blocks)}
    fed |= {f"layer{i}.{j}.downsample.1" if (i > 1 and j == 0) else f"layer{i}.{j}.bn2" for i, j in blocks}
    sat = rec.metric("r18", "act_saturation")[1]
    for k in range(2):  # the first step too, before gradviz knew the layers' order
        assert {n for n, v in zip(names, sat[k], strict=True) if np.isfinite(v)} == fed, k
    assert set(rec.metric_names("r18")) >= {"loss", "lr", "grad_norm", "act_grad_norm", "weight_norm", "update_ratio"}
    assert rec.meta["activation"] == "relu"  # act_saturation counted dead units, and says so


@pytest.mark.parametrize("given", [False, True], ids=["scaler-found", "scaler-given"])
def test_autocast_bfloat16_with_grad_scaler(tmp_path, given):
    """GradScaler.step unscales before optimizer.step, so the pre-hook sees the true gradients; a
    step it skips over an inf gradient becomes a nonfinite event, and training goes on. The block
    output gradients come from the backward of the scaled loss: act_grad_norm must be divided by the
    scale that backward used (1024, then 512 after the skipped step halves it)."""
    torch.manual_seed(4)
    model = Awkward()
    model.drop.p = 0.0
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    path = tmp_path / "amp.gradviz"
    w = gradviz.watch(model, opt, path=path, hist_every=1, update_every=1, scaler=scaler if given else None)
    expect, weights_at_skip, want_act = [], None, []
    for step, (x, y) in enumerate(batches(4, seed=6)):
        twin = copy.deepcopy(model)
        for mod in twin.modules():
            if hasattr(mod, "inplace"):
                mod.inplace = False
        taps = []
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref_loss = F.cross_entropy(twin(x, taps=taps), y)
        want_act.append([float(g.double().norm()) for g in torch.autograd.grad(ref_loss, taps)])
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        if step == 2:
            model.head.weight.grad[0, 0] = float("inf")
            weights_at_skip = model.head.weight.detach().clone()
        scaler.step(opt)
        scaler.update()
        # after scaler.step the gradients are unscaled in place: what the watch must have seen
        expect.append([norm_of([p.grad for p in ps if p.grad is not None]) if any(p.grad is not None for p in ps) else math.nan
                       for ps in owned_params(model, w.layers)])
        if step == 2:
            assert torch.equal(model.head.weight.detach(), weights_at_skip)  # the scaler skipped it
        w.log(loss=loss)
    w.close()
    rec = gradviz.open_run(path)
    names = rec.layers("main")
    gn = rec.metric("main", "grad_norm")[1]
    ok = [0, 1, 3]
    close(gn[ok], np.asarray(expect)[ok], rtol=1e-4)
    assert np.isinf(gn[2, names.index("head")])
    assert scaler.get_scale() == 512.0
    close(rec.metric("main", "act_grad_norm")[1], want_act, rtol=1e-3)  # the skipped step too
    ws, _ = rec.metric("main", "update_ratio")
    assert ws.tolist() == [0, 1, 3]  # no update on the skipped step
    events = rec.events()
    assert len(events) == 1 and events[0][:3] == (2, "main", "nonfinite")
    assert "layer head" in events[0][3] and "skipped (by the GradScaler)" in events[0][3]
    assert np.isfinite(rec.metric("main", "act_grad_norm")[1]).all()


def test_nonfinite_messages_say_what_happened(tmp_path):
    """A user loop that skips `optimizer.step()` on a NaN loss: the event says the step was skipped
    (it blamed "e.g. a GradScaler" there is none of); a `log` of a NaN with no step of its own does
    not claim a skipped step; a loss that is inf while every gradient is finite read "(first bad
    gradient: the loss)"."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with gradviz.watch(model, opt, path=tmp_path / "n.gradviz", name="n") as w:
        loss = F.cross_entropy(model(x * float("nan")), y)  # NaN loss, NaN gradients
        opt.zero_grad()
        loss.backward()
        if torch.isfinite(loss):
            opt.step()
        w.log(loss=loss)
        for _ in range(2):  # good steps end the run of bad ones
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
        w.log(loss=float("inf"))  # a number with no forward and no step: gradients are the last ones, finite
    msgs = [e[3] for e in gradviz.open_run(tmp_path / "n.gradviz").events() if e[2] == "nonfinite"]
    assert len(msgs) == 2
    assert msgs[0].startswith("n: loss became non-finite at step 0 (first bad gradient: layer ") and msgs[0].endswith("; the optimizer step was skipped")
    assert msgs[1] == "n: loss became non-finite at step 3"


def test_every_hist_every_and_update_every(tmp_path):
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "e.gradviz"
    with gradviz.watch(model, opt, path=path, every=2, hist_every=4, update_every=2) as w:
        _train(model, opt, batches(9, seed=7), w)
        assert w.step == 9 and w.layers == ["0", "2"]
    rec = gradviz.open_run(path)
    assert rec.metric("main", "grad_norm")[0].tolist() == [0, 2, 4, 6, 8]
    assert rec.metric("main", "update_ratio")[0].tolist() == [0, 4, 8]
    assert rec.metric("main", "act_saturation")[0].tolist() == [0, 4, 8]
    assert rec.meta["hist_every"] == 4


def test_file_is_readable_while_being_written(tmp_path):
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "live.gradviz"
    w = gradviz.watch(model, opt, path=path)
    reader = RunFileReader(path)  # what `gradviz open --follow` does
    follow = gradviz.core.recording.Recording()
    reader.poll(follow)
    data = batches(3, seed=8)
    _train(model, opt, data[:2], w)
    time.sleep(0.6)  # past the 0.5 s commit interval: the next step commits
    _train(model, opt, data[2:], w)
    w._bg.drain()  # a plain step lands from the worker thread, a moment after `log` returns
    reader.poll(follow)
    assert follow.runs == ["main"] and follow.metric("main", "loss")[0].tolist() == [0, 1, 2]
    assert gradviz.open_run(path).metric("main", "grad_norm")[1].shape == (3, 2)
    w.close()
    reader.poll(follow)
    reader.close()


def test_a_failing_hook_disables_the_watch_not_the_training(tmp_path, monkeypatch):
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "f.gradviz"
    w = gradviz.watch(model, opt, path=path)
    _train(model, opt, batches(1), w)

    def boom(*_a, **_k):
        raise RuntimeError("probe broke")

    monkeypatch.setattr(watch_mod._Metrics, "grad_norms", boom)
    with pytest.warns(RuntimeWarning, match="probe broke"):
        _train(model, opt, batches(2, seed=1), w)
    assert_no_hooks(model, opt)
    w.close()
    rec = gradviz.open_run(path)
    assert rec.metric("main", "loss")[0].tolist() == [0]
    assert [e[2] for e in rec.events()] == ["error"]


def test_a_failure_on_the_worker_thread_disables_the_watch_not_the_training(tmp_path, monkeypatch):
    """A plain step is finished on the worker thread; its failure reaches the user as the same
    one-line warning and `error` event at the next step, and what was recorded stays."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "g.gradviz"
    w = gradviz.watch(model, opt, path=path, hist_every=100)
    _train(model, opt, batches(2), w)
    w._bg.drain()  # step 1 is finished on the worker: let it land before the patch below
    calls = []

    def boom(*_a, **_k):
        calls.append(threading.current_thread().name)
        raise RuntimeError("sum broke")

    monkeypatch.setattr(watch_mod._Metrics, "layer_grad_norms", boom)
    with pytest.warns(RuntimeWarning, match="sum broke"):
        outs = _train(model, opt, batches(3, seed=1), w)
    assert calls == ["gradviz-watch"] and len(outs) == 3
    assert_no_hooks(model, opt)
    w.close()
    rec = gradviz.open_run(path)
    assert rec.metric("main", "loss")[0].tolist() == [0, 1]
    assert [e[2] for e in rec.events()] == ["error"]


def test_other_ranks_record_nothing_by_default(tmp_path, monkeypatch):
    monkeypatch.setattr(watch_mod, "dist_rank", lambda: (1, 2))
    model = nn.Sequential(nn.Linear(6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradviz.watch(model, opt, path=tmp_path / "d.gradviz") as w:
        _train(model, opt, batches(2), w)
        assert not w.active and w.step == 2
    assert not (tmp_path / "d.gradviz").exists() and not (tmp_path / "d.rank1.gradviz").exists()
    assert_no_hooks(model, opt)
    with gradviz.watch(model, opt, path=tmp_path / "d.gradviz", record_all_ranks=True) as w:
        _train(model, opt, batches(2), w)
    assert gradviz.open_run(tmp_path / "d.rank1.gradviz").meta["rank"] == 1
    assert rank_path("runs/mine.gradviz", 3).as_posix() == "runs/mine.rank3.gradviz"
    assert rank_path("runs/mine.gradviz", 0).as_posix() == "runs/mine.gradviz"


def test_block_rule():
    class ResidualUnit(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return x + self.fc(x)

    m = nn.Sequential(nn.Linear(2, 2), ResidualUnit(), nn.Sequential(ResidualUnit()))
    assert [n for n, _ in find_blocks(m)] == ["1", "2.0"]
    assert [n for n, _ in find_blocks(m, ["0"])] == ["0"]
    assert [n for n, _ in find_blocks(m, [m[1]])] == ["1"]
    with pytest.raises(ValueError, match="no module named"):
        find_blocks(m, ["nope"])
    from gradviz.core.models import make_switchable

    tvm = pytest.importorskip("torchvision.models")
    r = tvm.resnet18(num_classes=3)
    plain = [n for n, _ in find_blocks(r)]
    make_switchable(r)
    assert [n for n, _ in find_blocks(r)] == plain and len(plain) == 8


class _T5Part(nn.Module):
    """A T5 sub-layer: x + f(norm(x))."""

    def __init__(self, e: int) -> None:
        super().__init__()
        self.layer_norm, self.ff = nn.LayerNorm(e), nn.Linear(e, e)

    def forward(self, x):
        return x + self.ff(self.layer_norm(x))


class _T5Attention(_T5Part):
    pass


class _T5Block(nn.Module):
    """T5's block: its attention and feed-forward parts in a ModuleList `layer`, one of each."""

    def __init__(self, e: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList([_T5Attention(e), _T5Part(e)])

    def forward(self, x):
        for part in self.layer:
            x = part(x)
        return x


class _Stack(nn.Module):
    """T5's `T5Stack`: blocks in a ModuleList `block`, a final norm."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList(_T5Block(8) for _ in range(2))
        self.final_layer_norm = nn.LayerNorm(8)

    def forward(self, x):
        for b in self.block:
            x = b(x)
        return self.final_layer_norm(x)


class _ConvBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

    def forward(self, x):
        return x + self.norm(self.conv(x))


class _Stage(nn.Module):
    """timm's `ConvNeXtStage`: a downsampling conv, then its blocks in a Sequential `blocks`."""

    def __init__(self, c: int, depth: int) -> None:
        super().__init__()
        self.downsample = nn.Conv2d(c, c, 2, stride=2)
        self.blocks = nn.Sequential(*[_ConvBlock(c) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


class _Head(nn.Module):
    def __init__(self, e: int) -> None:
        super().__init__()
        self.key, self.query, self.value = nn.Linear(e, e), nn.Linear(e, e), nn.Linear(e, e)

    def forward(self, x):
        w = (self.query(x) @ self.key(x).transpose(-2, -1)).softmax(-1)
        return w @ self.value(x)


class _MultiHead(nn.Module):
    def __init__(self, e: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(_Head(e) for _ in range(2))
        self.proj = nn.Linear(2 * e, e)

    def forward(self, x):
        return self.proj(torch.cat([h(x) for h in self.heads], -1))


class _LectureBlock(nn.Module):
    def __init__(self, e: int) -> None:
        super().__init__()
        self.sa, self.ffwd = _MultiHead(e), nn.Sequential(nn.Linear(e, 4 * e), nn.ReLU(), nn.Linear(4 * e, e))

    def forward(self, x):
        x = x + self.sa(x)
        return x + self.ffwd(x)


class _LectureGPT(nn.Module):
    """The GPT of the "let's build GPT" lecture: heads in a ModuleList, blocks in a Sequential."""

    def __init__(self, e: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, e)
        self.blocks = nn.Sequential(*[_LectureBlock(e) for _ in range(3)])
        self.head = nn.Linear(e, 10)

    def forward(self, idx):
        return self.head(self.blocks(self.emb(idx)))


class _EncoderDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.decoder, self.lm_head = _Stack(), _Stack(), nn.Linear(8, 10)

    def forward(self, x):
        return self.lm_head(self.decoder(self.encoder(x)))


def test_block_rule_finds_the_units_of_stacks():
    """Transformers, EfficientNet and ConvNeXt name their blocks otherwise ("EncoderLayer", "MBConv",
    "CNBlock"): the repeated units of their stacks are the blocks. Leaf layers and plain containers
    are not, and a match inside another match (RegNet's bottleneck transform) is not a block."""
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 3)
    lm = nn.Sequential(nn.Embedding(10, 8), enc, nn.Linear(8, 10))
    assert [n for n, _ in find_blocks(lm)] == ["1.layers.0", "1.layers.1", "1.layers.2"]
    mlp = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(3)], nn.Linear(4, 2))
    assert find_blocks(mlp) == []  # plain containers of leaf layers: no blocks
    # T5's encoder and decoder are one class among the model's own children: stacks, not units,
    # because each keeps its blocks in a stack (`block`; the two stacks had been its only blocks)
    encdec = _EncoderDecoder()
    assert [n for n, _ in find_blocks(encdec)] == ["encoder.block.0", "encoder.block.1", "decoder.block.0", "decoder.block.1"]
    # timm's stages (ConvNeXt, Swin, CSPNet, MetaFormer) keep their blocks in `blocks`: the blocks,
    # not the 4 stages, are the units; a GPT written as in a lecture keeps its attention heads in a
    # ModuleList `heads`: its blocks stay the units, not the heads
    staged = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(_Stage(4, 2), _Stage(4, 3)))
    assert [n for n, _ in find_blocks(staged)] == ["1.0.blocks.0", "1.0.blocks.1", "1.1.blocks.0", "1.1.blocks.1", "1.1.blocks.2"]
    gpt = _LectureGPT()
    assert [n for n, _ in find_blocks(gpt)] == ["blocks.0", "blocks.1", "blocks.2"]
    tvm = pytest.importorskip("torchvision.models")
    for name, want, kinds in (
        ("efficientnet_b0", 16, {"MBConv"}),  # one of its stages holds a single block
        ("convnext_tiny", 18, {"CNBlock"}),
        ("regnet_y_400mf", 16, {"ResBottleneckBlock"}),  # not its BottleneckTransform inside
        ("vgg11", 0, set()),
        ("densenet121", 58, {"_DenseLayer"}),  # its dense blocks are ModuleDicts
        # attributes of the model, not a stack: the Inception modules and the stem's convs, not
        # the pairs of convs inside the branches' Sequentials
        ("inception_v3", 14, {"BasicConv2d", "InceptionA", "InceptionC", "InceptionE"}),
        ("googlenet", 14, {"BasicConv2d", "Inception", "InceptionAux"}),
    ):
        kw = {"init_weights": False} if name in ("inception_v3", "googlenet") else {}
        found = find_blocks(getattr(tvm, name)(**kw))
        assert len(found) == want and {type(m).__name__ for _, m in found} == kinds, name


class _DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        return F.relu(self.b(F.relu(self.a(x))))


class _TinyUNet(nn.Module):
    """A U-Net written with attributes (no stack of blocks): two levels, a skip concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.down1, self.down2 = _DoubleConv(1, 4), _DoubleConv(4, 8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.dec1 = _DoubleConv(8, 4)
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(F.max_pool2d(d1, 2))
        return self.out(self.dec1(torch.cat([self.up(d2), d1], 1)))


class _MidLastUNet(_TinyUNet):
    """A U-Net whose middle block is registered after its up path (as diffusers' `UNet2DModel`
    does): named_modules() order is down1, dec1, down2; the forward runs down1, down2, dec1."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.down1 = _DoubleConv(1, 4)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.dec1 = _DoubleConv(8, 4)
        self.out = nn.Conv2d(4, 2, 1)
        self.down2 = _DoubleConv(4, 8)


def test_blocks_are_recorded_in_forward_order(tmp_path):
    """diffusers registers a U-Net's middle block after its up blocks: the block columns (and the
    block profile, drawn "input -> output") followed named_modules(), the middle block last. They
    follow the first forward pass now, each with its own gradient (checked against autograd)."""
    torch.manual_seed(0)
    model = _MidLastUNet()
    assert [n for n, _ in find_blocks(model)] == ["down1", "dec1", "down2"]
    x, y = torch.randn(2, 1, 8, 8), torch.randint(0, 2, (2, 8, 8))
    twin = copy.deepcopy(model)
    taps = {}
    for name in ("down1", "down2", "dec1"):
        twin.get_submodule(name).register_forward_hook(lambda _m, _i, o, name=name: taps.__setitem__(name, o))
    loss = F.cross_entropy(twin(x), y)
    want = dict(zip(taps, (float(g.norm()) for g in torch.autograd.grad(loss, list(taps.values()))), strict=True))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with gradviz.watch(model, opt, path=tmp_path / "u.gradviz", name="u") as w:
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            w.log(loss=1.0)
        assert w.blocks == ["down1", "down2", "dec1"]
    rec = gradviz.open_run(tmp_path / "u.gradviz")
    assert rec.blocks("u") == ["down1", "down2", "dec1"]
    _, agn = rec.metric("u", "act_grad_norm")
    for k in range(2):
        close(agn[k], [want[n] for n in ("down1", "down2", "dec1")])


def test_a_unet_of_attributes_gets_act_grad_norm_per_block(tmp_path):
    """A U-Net's DoubleConv blocks are attributes of the model: no block at all was found. They are
    now, and their act_grad_norm (down1's gradient arrives by the skip concatenation and through
    the bottleneck) equals autograd's on a copy."""
    torch.manual_seed(0)
    model = _TinyUNet()
    assert [n for n, _ in find_blocks(model)] == ["down1", "down2", "dec1"]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(2, 1, 8, 8), torch.randint(0, 2, (2, 8, 8))
    twin = copy.deepcopy(model)
    taps = []
    for name in ("down1", "down2", "dec1"):
        twin.get_submodule(name).register_forward_hook(lambda _m, _i, o: taps.append(o))
    want = [float(t.norm()) for t in torch.autograd.grad(F.cross_entropy(twin(x), y), taps)]
    with gradviz.watch(model, opt, path=tmp_path / "u.gradviz", name="u") as w:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.log(loss=loss)
    got = gradviz.open_run(tmp_path / "u.gradviz").metric("u", "act_grad_norm")[1]
    close(got[0], want, rtol=1e-5)


def test_watching_a_transformer_gives_act_grad_norm_per_layer(tmp_path):
    """The gradient reaching each transformer layer's output, against autograd on a copy."""
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), 3)
    model = nn.Sequential(nn.Embedding(20, 16), enc, nn.Linear(16, 20))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    want = []
    with gradviz.watch(model, opt, path=tmp_path / "t.gradviz", name="lm") as w:
        assert w.blocks == ["1.layers.0", "1.layers.1", "1.layers.2"]
        for _ in range(3):
            x, y = torch.randint(0, 20, (4, 6), generator=g), torch.randint(0, 20, (4, 6), generator=g)
            twin = copy.deepcopy(model)
            taps = []
            hs = [b.register_forward_hook(lambda m, i, o, taps=taps: taps.append(o)) for b in twin[1].layers]
            ref = F.cross_entropy(twin(x).reshape(-1, 20), y.reshape(-1))
            want.append([float(t.double().norm()) for t in torch.autograd.grad(ref, taps)])
            for h in hs:
                h.remove()
            opt.zero_grad()
            loss = F.cross_entropy(model(x).reshape(-1, 20), y.reshape(-1))
            loss.backward()
            opt.step()
            w.log(loss=loss)
    assert_no_hooks(model, opt)
    run = gradviz.open_run(tmp_path / "t.gradviz")
    steps, got = run.metric("lm", "act_grad_norm")
    assert got.shape == (3, 3)
    close(got, want, rtol=1e-5)
    names = run.layers("lm")  # out_proj is used, never called: it follows its attention, not the head
    assert names.index("1.layers.2.self_attn.out_proj") == names.index("1.layers.2.self_attn") + 1
    assert names[-1] == "2"


def test_log_arguments(tmp_path):
    model = nn.Sequential(nn.Linear(6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradviz.watch(model, opt, path=tmp_path / "l.gradviz") as w:
        for x, y in batches(2):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            w.log(loss=loss, eval_accuracy=0.5, eval_loss=torch.tensor(1.25))
        with pytest.raises(ValueError, match="measured by the watch"):
            w.log(grad_norm=1.0)
    rec = gradviz.open_run(tmp_path / "l.gradviz")
    assert rec.metric("main", "eval_loss")[1].tolist() == [1.25, 1.25]
    assert rec.metric("main", "lr")[1].tolist() == [0.1, 0.1]
    with pytest.raises(ValueError):
        gradviz.watch(model, opt, path=tmp_path / "x.gradviz", every=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_with_float16_autocast_and_grad_scaler(tmp_path):
    torch.manual_seed(8)
    model = Awkward().cuda()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    scaler = torch.amp.GradScaler("cuda")
    path = tmp_path / "cuda.gradviz"
    expect = []
    with gradviz.watch(model, opt, path=path, hist_every=1, update_every=1) as w:
        for x, y in batches(3, seed=9):
            opt.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16):
                loss = F.cross_entropy(model(x.cuda()), y.cuda())
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            expect.append([norm_of([p.grad for p in ps if p.grad is not None]) if any(p.grad is not None for p in ps) else math.nan
                           for ps in owned_params(model, w.layers)])
            w.log(loss=loss)
    rec = gradviz.open_run(path)
    assert rec.meta["device"].startswith("cuda")
    gn = rec.metric("main", "grad_norm")[1]
    close(gn, expect, rtol=1e-3)  # a step the scaler skipped is measured in log(), from the same grads
    assert_no_hooks(model, opt)


def test_watching_a_gradviz_model_uses_its_block_sinks_and_gives_them_back(tmp_path):
    """gradviz's own blocks report their outputs through a sink instead of forward hooks; the
    values match autograd, and `close()` leaves the blocks as they were."""
    from gradviz.config import ModelConfig
    from gradviz.core.models import build_model

    model = build_model(ModelConfig(kind="mlp", depth=3, width=8, activation="tanh", residual=True), (2,), 3, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = gradviz.watch(model, opt, path=tmp_path / "m.gradviz", update_every=1)
    blocks = [m for _, m in w._blocks]
    assert w.blocks == ["blocks.0", "blocks.1", "blocks.2"]
    assert all(b.gradviz_sink is not None and not b._forward_hooks for b in blocks)
    want = []
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(16, 2, generator=g), torch.randint(0, 3, (16,), generator=g)
        twin = copy.deepcopy(model)  # the copy has no sink: it runs bare
        taps = []
        hs = [b.register_forward_hook(lambda m, i, o, taps=taps: taps.append(o)) for _, b in find_blocks(twin)]
        ref = F.cross_entropy(twin(x), y)
        want.append([float(t.double().norm()) for t in torch.autograd.grad(ref, taps)])
        for h in hs:
            h.remove()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        w.log(loss=loss)
    w.close()
    assert all(b.__dict__.get("gradviz_sink") is None for b in blocks)
    assert_no_hooks(model, opt)
    close(gradviz.open_run(tmp_path / "m.gradviz").metric("main", "act_grad_norm")[1], want, rtol=1e-5)


def _logged_steps(model, opt, x, y, w, steps: int, after_step=None) -> None:
    """`steps` plain cross-entropy steps, each closed by `w.log`; `after_step()` must be true after each."""
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        w.log(loss=loss)
        assert after_step is None or after_step()


def _watched_steps(model, opt, x, y, path, steps=2, before=None, after_step=None):
    """`steps` cross-entropy steps under `gradviz.watch` (run "m", histograms every step); the run
    file read back. `before(w)` runs first inside the watch; `after_step()` must be true after each."""
    with gradviz.watch(model, opt, path=path, name="m", hist_every=1) as w:
        if before is not None:
            before(w)
        _logged_steps(model, opt, x, y, w, steps, after_step)
    return gradviz.open_run(path)


class _TanhSkip(nn.Module):
    """x + tanh(lin(x)): the smallest residual block, its one layer named `lin`."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)

    def forward(self, x):
        return x + torch.tanh(self.lin(x))


class _FunctionalNet(nn.Module):
    """Its ReLU is `F.relu` in forward: no module says so; the torch function mode sees the call."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.b(F.relu(self.a(x)))


class _MixedNet(nn.Module):
    """An `nn.ReLU` after one layer and `F.relu` after another: the modules alone miss "b"."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.b, self.c = nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.c(F.relu(self.b(self.act(self.a(x)))))


@pytest.mark.parametrize("kind", ["modules", "functional", "mixed", "none"])
def test_watch_saturation_only_where_an_activation_reads_the_layer(tmp_path, kind):
    """A dead fraction of the logits says nothing: only the layers whose output a ReLU reads keep
    `act_saturation` (checked against the output's own fraction <= 0), whether the ReLU is a module
    or `F.relu`; a model without any activation has none at all."""
    torch.manual_seed(0)
    model, fed = {
        "modules": (nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 2)), {"0"}),  # "2" feeds a Linear, "3" the loss
        "functional": (_FunctionalNet(), {"a"}),
        "mixed": (_MixedNet(), {"a", "b"}),
        "none": (nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)), set()),
    }[kind]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    outs = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            m.register_forward_hook(lambda _m, _i, o, name=name: outs.__setitem__(name, o.detach()))
    rec = _watched_steps(model, opt, torch.randn(16, 4), torch.randint(0, 2, (16,)), tmp_path / "f.gradviz")
    names = rec.layers("m")
    _, sat = rec.metric("m", "act_saturation")
    _, mean = rec.metric("m", "act_mean")
    for k in range(2):  # the first step too, before gradviz knew the layers' order
        assert {n for n, v in zip(names, sat[k], strict=True) if np.isfinite(v)} == fed, k
        assert np.isfinite(mean[k]).all()
    if fed:
        dead = float((outs[names[0]] <= 0).double().mean())  # the last step's output of the first layer
        assert sat[1][0] == pytest.approx(dead, abs=1e-6)


class _PoolerNet(nn.Module):
    """A BERT in miniature: a feed-forward Linear read by `F.gelu`, a pooler Linear read by
    `torch.tanh`, a sigmoid gate as a module; no activation module says what the first two are."""

    def __init__(self) -> None:
        super().__init__()
        self.ff, self.pool, self.gate, self.gate_act, self.out = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 2)
        with torch.no_grad():
            for lin in (self.pool, self.gate):
                lin.weight.mul_(8)  # large pre-activations: some units saturate

    def forward(self, x):
        h = torch.tanh(self.pool(F.gelu(self.ff(x))))
        return self.out(h * self.gate_act(self.gate(h)))


@pytest.mark.parametrize("forced", [None, "relu"])
def test_watch_counts_each_layer_for_the_activation_that_reads_it(tmp_path, forced):
    """`act_saturation` of a layer read by tanh is its saturated fraction (|z| > 2.65), by sigmoid
    |z| > 4.6, by GELU its dead fraction (z <= 0), from the first histogram step on, checked against
    the layers' outputs. The model's activations were guessed from its one module (sigmoid), so
    the GELU layer's dead units were counted as saturated ones. The meta says "mixed" and each layer's
    kind; `activation="relu"` from the user still counts every layer as dead-or-alive."""
    torch.manual_seed(0)
    model = _PoolerNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    outs: dict[str, list] = {}
    for name in ("ff", "pool", "gate"):
        getattr(model, name).register_forward_hook(lambda _m, _i, o, name=name: outs.setdefault(name, []).append(o.detach().clone()))
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    path = tmp_path / "p.gradviz"
    with gradviz.watch(model, opt, path=path, name="m", hist_every=1, activation=forced) as w:
        _logged_steps(model, opt, x, y, w, 3)
    rec = gradviz.open_run(path)
    names = rec.layers("m")
    _, sat = rec.metric("m", "act_saturation")
    rule = {"ff": lambda z: z <= 0, "pool": lambda z: z.abs() > 2.65, "gate": lambda z: z.abs() > 4.6}
    for step in range(3):
        for name, counts in rule.items():
            z = outs[name][step]
            expected = float((z <= 0 if forced else counts(z)).double().mean())
            assert sat[step][names.index(name)] == pytest.approx(expected, abs=1e-6), (name, step)
    assert 0 < sat[0][names.index("pool")] < 1 and 0 < sat[0][names.index("gate")] < 1  # the case is not trivial
    if forced:
        assert rec.meta["activation"] == "relu" and "layer_activation" not in rec.meta
    else:
        assert rec.meta["activation"] == "mixed"
        assert rec.meta["layer_activation"] == {"ff": "relu", "pool": "tanh", "gate": "sigmoid"}


def test_watch_sees_the_mobile_activations(tmp_path):
    """MobileNetV3's Hardswish and Hardsigmoid (and Mish, Softplus) were not activations to the
    watch: their layers had no act_saturation. Hardsigmoid saturates beyond |z| = 3, the others are
    of the ReLU family (dead fraction z <= 0); checked against the layers' outputs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Hardswish(), nn.Linear(16, 16), nn.Hardsigmoid(), nn.Linear(16, 16), nn.Mish(), nn.Linear(16, 2))
    with torch.no_grad():
        model[2].weight.mul_(6)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    outs: dict[str, torch.Tensor] = {}
    for name in ("0", "2", "4"):
        model.get_submodule(name).register_forward_hook(lambda _m, _i, o, name=name: outs.__setitem__(name, o.detach().clone()))
    rec = _watched_steps(model, opt, torch.randn(64, 4), torch.randint(0, 2, (64,)), tmp_path / "m.gradviz")
    names = rec.layers("m")
    _, sat = rec.metric("m", "act_saturation")
    expected = {"0": float((outs["0"] <= 0).double().mean()), "2": float((outs["2"].abs() > 3).double().mean()), "4": float((outs["4"] <= 0).double().mean())}
    assert {n: v for n, v in zip(names, sat[-1], strict=True) if np.isfinite(v)} == pytest.approx(expected, abs=1e-6)
    assert 0 < expected["2"] < 1
    assert rec.meta["layer_activation"] == {"0": "relu", "2": "hardsigmoid", "4": "relu"}


def test_two_models_watched_into_one_file_each_keep_their_run(tmp_path):
    """A GAN's generator and discriminator watched into one file: the second watch opened a second
    writer that replaced the first's file, and the generator's run was gone without a word. Both
    runs are kept now (gradients checked against autograd), whichever watch closes first; each
    run's layer table and activation kinds are its own although their layer names collide; a
    second run of the same name in the file is refused in one line, and the first goes on."""
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    disc = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    og, od = torch.optim.SGD(gen.parameters(), lr=0.05), torch.optim.SGD(disc.parameters(), lr=0.05)
    path = tmp_path / "gan.gradviz"
    wg = gradviz.watch(gen, og, path=path, name="G", hist_every=1)
    wd = gradviz.watch(disc, od, path=path, name="D", hist_every=1)
    with pytest.raises(ValueError, match=r"already records a run named 'D' for another watch; give this one another name="):
        gradviz.watch(nn.Linear(2, 1), None, path=path, name="D")
    bce = nn.BCEWithLogitsLoss()
    want = {"G": [], "D": []}
    for step in range(4):
        real, z = torch.randn(16, 2) + 2, torch.randn(16, 4)
        od.zero_grad()
        loss_d = bce(disc(real), torch.ones(16, 1)) + bce(disc(gen(z).detach()), torch.zeros(16, 1))
        loss_d.backward()
        want["D"].append([float(disc[0].weight.grad.square().sum().add(disc[0].bias.grad.square().sum()).sqrt())])
        od.step()
        wd.log(loss=loss_d)
        og.zero_grad()
        loss_g = bce(disc(gen(z)), torch.ones(16, 1))
        loss_g.backward()
        want["G"].append([float(gen[0].weight.grad.square().sum().add(gen[0].bias.grad.square().sum()).sqrt())])
        og.step()
        if not wg.closed:
            wg.log(loss=loss_g)
        if step == 2:
            wg.close()  # the generator's watch ends first; the file stays open for the other
    wd.close()
    rec = gradviz.open_run(path)
    assert sorted(rec.runs) == ["D", "G"]
    assert rec.metric("G", "loss")[0].tolist() == [0, 1, 2] and rec.metric("D", "loss")[0].tolist() == [0, 1, 2, 3]
    close(rec.metric("G", "grad_norm")[1][:, :1], want["G"][:3])
    close(rec.metric("D", "grad_norm")[1][:, :1], want["D"])
    assert set(rec.meta["layer_table"]) == {"G", "D"} and set(rec.meta["watches"]) == {"G", "D"}
    assert rec.meta["watches"]["G"]["layer_kinds"] == {"0": "tanh"} and rec.meta["watches"]["D"]["layer_kinds"] == {"0": "relu"}
    assert rec.meta["activation"] == "mixed"
    from gradviz.gui.views.activations import saturating_layers

    assert saturating_layers(rec, "G").tolist() == [True, False] and saturating_layers(rec, "D").tolist() == [False, False]


def test_a_relative_path_is_finished_after_a_change_of_directory(tmp_path, monkeypatch):
    """The shared-file registry is keyed by the resolved path: resolved again at close, after the
    notebook's `os.chdir`, the key missed and the file was never finished (its WAL left beside it)."""
    from gradviz.core import watch as watch_module

    monkeypatch.chdir(tmp_path)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = gradviz.watch(model, opt, path="rel.gradviz", name="a")
    for _ in range(3):
        opt.zero_grad()
        loss = model(torch.randn(4, 2)).square().mean()
        loss.backward()
        opt.step()
        w.log(loss=loss)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    w.close()
    assert str(tmp_path / "rel.gradviz") not in watch_module._SHARED_FILES
    assert not (tmp_path / "rel.gradviz-wal").exists()
    assert gradviz.open_run(tmp_path / "rel.gradviz").metric("a", "loss")[0].tolist() == [0, 1, 2]


class AcceleratedOptimizer(torch.optim.Optimizer):
    """accelerate's wrapper, as Hugging Face's Trainer hands it to callbacks: an Optimizer subclass
    that never ran `Optimizer.__init__`, its torch optimizer in `.optimizer`."""

    def __init__(self, optimizer) -> None:
        self.optimizer = optimizer

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none=True):
        self.optimizer.zero_grad(set_to_none)

    def step(self, closure=None):
        self.optimizer.step(closure)


class LightningOptimizer:
    """Lightning's wrapper: no Optimizer at all, the optimizer in `._optimizer`."""

    def __init__(self, optimizer) -> None:
        self._optimizer = optimizer

    def step(self, closure=None):
        return self._optimizer.step(closure)


@pytest.mark.parametrize("wrapper", [AcceleratedOptimizer, LightningOptimizer])
def test_an_optimizer_wrapper_is_watched_through_its_optimizer(tmp_path, wrapper):
    """Hugging Face's Trainer gives its callbacks accelerate's `AcceleratedOptimizer`: gradviz.watch
    raised AttributeError ('_optimizer_step_pre_hooks') in the user's training. The optimizer inside
    is hooked: the update ratio is the weights' real change, the meta names the real optimizer; a
    thing that is no optimizer at all is refused in one line."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    inner = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt = wrapper(inner)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    want = []
    with gradviz.watch(model, opt, path=tmp_path / "w.gradviz", name="m", update_every=1) as w:
        for _ in range(3):
            inner.zero_grad()
            F.cross_entropy(model(x), y).backward()
            before = torch.cat([p.detach().flatten().double() for p in model[0].parameters()])
            opt.step()
            after = torch.cat([p.detach().flatten().double() for p in model[0].parameters()])
            want.append(float((after - before).norm() / before.norm()))
            w.log(loss=1.0)
    rec = gradviz.open_run(tmp_path / "w.gradviz")
    _, ur = rec.metric("m", "update_ratio")
    close(ur[:, 0], want)
    assert rec.meta["optimizer"] == "SGD"
    with pytest.raises(TypeError, match=r"^gradviz.watch: optimizer: a dict is not a torch.optim.Optimizer"):
        gradviz.watch(model, {"lr": 0.1}, path=tmp_path / "x.gradviz")


class NewGELUActivation(nn.Module):
    """Hugging Face's GPT-2 (and T5, GPT-J) activation, written as there: GELU's tanh approximation."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class QuickGELUActivation(nn.Module):
    """CLIP's activation: GELU as x * sigmoid(1.702 x)."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class SwiGLU(nn.Module):
    """A LLaMA-style feed-forward: its name says SiLU, but it holds layers, so it is no activation."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.gate, self.up = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x):
        return F.silu(self.gate(x)) * self.up(x)


def test_watch_knows_gelu_written_as_its_approximations(tmp_path):
    """GPT-2's `NewGELUActivation` computes GELU with a `torch.tanh` inside and CLIP's
    `QuickGELUActivation` with a sigmoid: their layers were counted as saturating tanh (|z| > 2.65)
    and sigmoid units (GPT-2, T5, BLOOM, CLIP: "saturated 0.0", meta activation "tanh"). They are of
    the ReLU family (dead fraction z <= 0), as are PReLU and RReLU; a `SwiGLU` block, which holds
    Linear layers, is not an activation. Checked against the layers' outputs."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 16), NewGELUActivation(), nn.Linear(16, 16), QuickGELUActivation(),
        nn.Linear(16, 16), nn.PReLU(), SwiGLU(16), nn.Linear(16, 16), nn.RReLU(), nn.Linear(16, 2),
    )  # fmt: skip
    with torch.no_grad():
        model[2].weight.mul_(6)  # large pre-activations: saturated and dead fractions differ
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    outs: dict[str, torch.Tensor] = {}
    for name in ("0", "2", "4", "6.gate", "7"):
        model.get_submodule(name).register_forward_hook(lambda _m, _i, o, name=name: outs.__setitem__(name, o.detach().clone()))
    rec = _watched_steps(model, opt, torch.randn(64, 4), torch.randint(0, 2, (64,)), tmp_path / "g.gradviz")
    names = rec.layers("m")
    _, sat = rec.metric("m", "act_saturation")
    expected = {name: float((out <= 0).double().mean()) for name, out in outs.items()}
    assert {n: v for n, v in zip(names, sat[-1], strict=True) if np.isfinite(v)} == pytest.approx(expected, abs=1e-6)
    for name, bound in (("0", 2.65), ("2", 4.6)):  # counted as tanh or sigmoid units they would differ
        assert abs(float((outs[name].abs() > bound).double().mean()) - expected[name]) > 0.3
    assert rec.meta["activation"] == "relu"


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("background", [False, True])
def test_a_closure_step_records_the_update(tmp_path, background, accumulate):
    """PyTorch Lightning steps every optimizer with a closure (`optimizer.step(closure)`, as LBFGS
    needs): forward and backward run inside `step`, and update_ratio was never recorded. The
    weights are taken before the step; from the second step on (the layers are learnt in the
    first forward, inside the first closure) update_ratio and grad_norm equal the weights' actual
    change and the gradients, per layer. With gradient accumulation as Lightning does it (the first
    micro-batch's backward outside `step`, the last one's inside the closure) the gradients were read
    before the closure ran, without the last micro-batch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    want_u, want_g = [], []
    with gradviz.watch(model, opt, path=tmp_path / "c.gradviz", name="c", update_every=1, background=background) as w:
        for _ in range(4):
            x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))

            if accumulate:  # the first micro-batch, outside the step
                opt.zero_grad()
                F.cross_entropy(model(x[:4]), y[:4]).backward()

            def closure(x=x, y=y):
                if not accumulate:
                    opt.zero_grad()
                loss = F.cross_entropy(model(x[4:] if accumulate else x), y[4:] if accumulate else y)
                loss.backward()
                return loss

            before = [[q.detach().clone() for q in model[k].parameters()] for k in (0, 2)]
            loss = opt.step(closure)
            want_g.append([float(torch.cat([q.grad.flatten() for q in model[k].parameters()]).norm()) for k in (0, 2)])
            want_u.append([
                float(torch.cat([(q.detach() - b).flatten() for q, b in zip(model[k].parameters(), bs, strict=True)]).norm() / torch.cat([b.flatten() for b in bs]).norm())
                for k, bs in zip((0, 2), before, strict=True)
            ])
            w.log(loss=loss)
    rec = gradviz.open_run(tmp_path / "c.gradviz")
    steps, upd = rec.metric("c", "update_ratio")
    first = 0 if accumulate else 1  # accumulating, the first forward (and the layers) come before the step
    assert steps.tolist() == list(range(first, 4))
    close(upd, np.asarray(want_u)[first:], rtol=1e-5)
    close(rec.metric("c", "grad_norm")[1], want_g, rtol=1e-5)


def test_a_model_without_parameters_is_said_at_once(tmp_path):
    """`gradviz.watch(nn.ReLU())` (the wrong module passed) said nothing and broke at its second step
    (an empty per-layer series). A warning says so, pointing at the user's line, and the loss of
    every step is recorded."""
    import warnings

    model = nn.ReLU()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with gradviz.watch(model, path=tmp_path / "r.gradviz", name="r", hist_every=1) as w:
            for i in range(3):  # the second step broke the watch: "could not broadcast ... (0,) into (1,)"
                model(torch.randn(3, requires_grad=True))
                w.log(loss=float(i))
    ours = [m for m in seen if "has no parameters" in str(m.message)]
    assert len(ours) == 1 and ours[0].filename == __file__
    assert str(ours[0].message).startswith("gradviz.watch: ReLU has no parameters")
    assert not [m for m in seen if "stopped recording" in str(m.message)]
    rec = gradviz.open_run(tmp_path / "r.gradviz")
    assert rec.metric("r", "loss")[1].tolist() == [0.0, 1.0, 2.0] and rec.layers("r") == [] and rec.events() == []


def test_a_model_that_grows_mid_training_is_said_once(tmp_path):
    """A layer appended after the watch began (and given to the optimizer) was measured nowhere,
    without a word. The watch says so once, by a warning and an event naming the new parameters;
    frozen, tied and later-unfrozen parameters are not new."""
    import warnings

    class Growing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.extra, self.out = nn.Linear(4, 8), nn.ModuleList(), nn.Linear(8, 2)
            self.a.bias.requires_grad_(False)

        def forward(self, x):
            h = torch.relu(self.a(x))
            for e in self.extra:
                h = torch.relu(e(h))
            return self.out(h)

    model = Growing()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with gradviz.watch(model, opt, path=tmp_path / "g.gradviz", name="g", hist_every=2) as w:
            for i in range(8):
                if i == 3:
                    model.a.bias.requires_grad_(True)  # unfrozen: not new
                    model.extra.append(nn.Linear(8, 8))
                    opt.add_param_group({"params": list(model.extra[-1].parameters()) + [model.a.bias]})
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.log(loss=loss)
    ours = [str(m.message) for m in seen if "did not have" in str(m.message)]
    assert len(ours) == 1 and "extra.0.weight, extra.0.bias" in ours[0] and "a.bias" not in ours[0].replace("extra.0.bias", "")
    events = [e for e in gradviz.open_run(tmp_path / "g.gradviz").events() if e[2] == "warning"]
    assert len(events) == 1 and events[0][1] == "g" and events[0][0] == 4 and "extra.0.weight" in events[0][3]


def test_a_forward_that_raises_leaves_no_function_mode_behind(tmp_path):
    """On a histogram step a torch function mode watches the forward for activations; it leaves
    when the forward returns. A forward that raises never returns: the next step clears it, and
    after `close` nothing of gradviz is on the torch function mode stack."""

    class Flaky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)
            self.fail = True

        def forward(self, x):
            h = F.relu(self.a(x))
            if self.fail:
                self.fail = False
                raise RuntimeError("bad batch")
            return self.b(h)

    depth = torch._C._len_torch_function_stack()
    model = Flaky()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))

    def fail_first(w) -> None:
        with pytest.raises(RuntimeError, match="bad batch"):
            model(x)

    rec = _watched_steps(model, opt, x, y, tmp_path / "r.gradviz", before=fail_first, after_step=lambda: torch._C._len_torch_function_stack() == depth)
    assert torch._C._len_torch_function_stack() == depth
    names = rec.layers("m")
    _, sat = rec.metric("m", "act_saturation")
    assert [n for n, v in zip(names, sat[-1], strict=True) if np.isfinite(v)] == ["a"]


def test_a_weight_tied_output_layer_reads_its_shared_gradient(tmp_path):
    """GPT-style weight tying: the output layer's only parameter is the embedding's. Counted for the
    first layer alone, the output layer read NaN ("not used") in every view; it now reads the shared
    parameter's gradient norm, as does the embedding, and its update ratio."""

    class TiedLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.mid = nn.Linear(8, 8)
            self.out = nn.Linear(8, 20, bias=False)
            self.out.weight = self.emb.weight

        def forward(self, x):
            return self.out(torch.tanh(self.mid(self.emb(x).mean(1))))

    torch.manual_seed(0)
    model = TiedLM()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randint(0, 20, (8, 5)), torch.randint(0, 20, (8,))
    want_gn, want_ur = [], []

    with gradviz.watch(model, opt, path=tmp_path / "lm.gradviz", name="m", update_every=1) as w:
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            shared = model.emb.weight.grad.double().norm().item()
            before = model.emb.weight.detach().clone()
            opt.step()
            want_gn.append(shared)
            want_ur.append((model.emb.weight.detach() - before).double().norm().item() / before.double().norm().item())
            w.log(loss=torch.tensor(1.0))
    rec = gradviz.open_run(tmp_path / "lm.gradviz")
    names = rec.layers("m")
    assert names == ["emb", "mid", "out"]
    _, gn = rec.metric("m", "grad_norm")
    _, ur = rec.metric("m", "update_ratio")
    close(gn[:, names.index("out")], want_gn)
    close(gn[:, names.index("emb")], want_gn)
    close(ur[:, names.index("out")], want_ur)
    # the layer table says the output layer's weight is the embedding's (its total counts it once)
    table = {row[0]: row for row in rec.meta["layer_table"]["m"]}
    assert [table[n][3:] for n in names] == [[160, 0, 0], [72, 2 * 64 + 8, 0], [160, 2 * 160, 160]]


def test_sparse_embedding_gradients_are_measured(tmp_path):
    """`nn.Embedding(sparse=True)` gives sparse gradients with a duplicate index per repeated token:
    the watch stopped at step 1 ("reshape is not implemented for sparse tensors"). Its norm is the
    dense gradient's (duplicates summed) and its grad histogram holds the touched rows' values."""

    class Bag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(50, 4, sparse=True)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.emb(x).sum(1))

    torch.manual_seed(0)
    model = Bag()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.tensor([[1, 1, 2], [3, 1, 4], [5, 9, 2], [6, 5, 3]])  # repeated tokens
    y = torch.tensor([0, 1, 0, 1])
    want, rows = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the watch must not stop with a warning
        with gradviz.watch(model, opt, path=tmp_path / "s.gradviz", name="m", hist_every=1) as w:
            for _ in range(3):
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                assert model.emb.weight.grad.is_sparse
                want.append(model.emb.weight.grad.to_dense().double().norm().item())
                rows.append(int((model.emb.weight.grad.to_dense().abs().sum(1) > 0).sum()))
                opt.step()
                w.log(loss=torch.tensor(1.0))
    rec = gradviz.open_run(tmp_path / "s.gradviz")
    assert rec.layers("m") == ["emb", "head"]
    steps, gn = rec.metric("m", "grad_norm")
    assert steps.tolist() == [0, 1, 2]
    close(gn[:, 0], want)
    hs, _edges, counts = rec.histograms("m", "grad", "emb")
    assert hs.tolist() == [0, 1, 2]
    assert counts.sum(axis=1).tolist() == [r * 4 for r in rows]  # each touched row's 4 values, once
    assert not rec.events()


def test_complex_layers_get_magnitude_histograms_without_warnings(tmp_path):
    """A complex-valued layer's histograms were its values cast to real, with torch's "discards the
    imaginary part" warning on every cadence step; they are of magnitudes now."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that complex modules are experimental
        model = nn.Linear(4, 2).to(torch.complex64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with gradviz.watch(model, opt, path=tmp_path / "c.gradviz", name="c", hist_every=1) as w:
            for _ in range(2):
                opt.zero_grad()
                loss = model(torch.randn(8, 4, dtype=torch.complex64)).abs().pow(2).mean()
                loss.backward()
                opt.step()
                w.log(loss=loss)
    assert not [m for m in seen if "imaginary" in str(m.message) or "gradviz" in str(m.message)]
    rec = gradviz.open_run(tmp_path / "c.gradviz")
    _, edges, counts = rec.histograms("c", "weight", 0)
    assert counts.sum(axis=1).tolist() == [8, 8]  # every weight, once
    centres = (edges[:-1] + edges[1:]) / 2
    assert (centres[counts[-1] > 0] > 0).all()  # magnitudes: the positive bins only (real parts fell on both sides)
    close(rec.metric("c", "grad_norm")[1][-1], [float(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).abs().pow(2).sum().sqrt())])


def test_a_watched_run_carries_its_layer_table(tmp_path):
    """The GUI's layer table showed a watched run's names with empty shape, params and FLOPs columns:
    the watch now takes them from the first forward pass it watches (as `gradviz summary` defines
    them), and a layer that did not run reads "-" with 0 FLOPs."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 8 * 8, 10)
            self.spare = nn.Linear(10, 10)  # never called

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(5, 3, 8, 8), torch.randint(0, 10, (5,))
    with gradviz.watch(model, opt, path=tmp_path / "t.gradviz", name="m") as w:
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            w.log(loss=torch.tensor(1.0))
    rec = gradviz.open_run(tmp_path / "t.gradviz")
    table = rec.meta["layer_table"]["m"]
    assert [r[0] for r in table] == rec.layers("m") == ["conv", "fc", "spare"]
    conv, fc, spare = table
    assert conv == ["conv", "Conv2d", [4, 8, 8], 3 * 4 * 9 + 4, 2 * 3 * 9 * 4 * 64 + 4 * 64, 0]
    assert fc == ["fc", "Linear", [10], 256 * 10 + 10, 2 * 256 * 10 + 10, 0]
    assert spare == ["spare", "Linear", [], 110, 0, 0]


def test_a_watched_transformer_layer_table_has_attention_shapes_and_flops(tmp_path):
    """In a watched Transformer the attention read 0 FLOPs and its out_proj '-' (the attention uses
    that Linear's weight without calling it): both now carry the attention's per-example output
    shape (L, E) and FLOPs by hand, as `gradviz summary` counts them."""
    torch.manual_seed(0)
    length, e, ff = 7, 16, 32
    model = nn.TransformerEncoderLayer(e, 4, dim_feedforward=ff, dropout=0.0, batch_first=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(3, length, e)
    with gradviz.watch(model, opt, path=tmp_path / "tr.gradviz", name="tr") as w:
        for _ in range(2):
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    rec = gradviz.open_run(tmp_path / "tr.gradviz")
    table = {r[0]: r for r in rec.meta["layer_table"]["tr"]}
    assert rec.layers("tr")[:2] == ["self_attn", "self_attn.out_proj"]
    assert table["self_attn"][2:5] == [[length, e], 3 * e * e + 3 * e, length * (2 * e * 3 * e + 3 * e) + 4 * length * length * e]
    assert table["self_attn.out_proj"][2:5] == [[length, e], e * e + e, length * (2 * e * e + e)]
    assert table["linear1"][2:5] == [[length, ff], e * ff + ff, length * (2 * e * ff + ff)]
    assert all(r[2] for r in table.values())  # every layer ran or was used: none reads "-"


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointed_blocks_and_a_layer_called_three_times(tmp_path, reentrant):
    """Activation checkpointing runs each block's forward again inside backward (its hooks fire a
    second time) and a shared layer runs three times a pass: the norms must still be those of the
    one backward pass, checked against autograd on an unhooked, uncheckpointed pass of the same weights."""
    from torch.utils.checkpoint import checkpoint

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([_TanhSkip(16) for _ in range(4)])
            self.shared = nn.Linear(16, 16)
            self.head = nn.Linear(16, 3)

        def forward(self, x, ckpt: bool = True):
            outs = []
            for b in self.blocks:
                x = checkpoint(b, x, use_reentrant=reentrant) if ckpt else b(x)
                outs.append(x)
            for _ in range(3):
                x = torch.relu(self.shared(x))
            return self.head(x), outs

    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    # the reentrant form sends no gradient into a segment none of whose inputs needs one
    x, y = torch.randn(32, 16).requires_grad_(reentrant), torch.randint(0, 3, (32,))
    layers = [*(b.lin for b in model.blocks), model.shared, model.head]
    want_g, want_a = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gradviz.watch(model, opt, path=tmp_path / "ck.gradviz", name="ck", hist_every=2, blocks=list(model.blocks)) as w:
            for _ in range(4):
                twin = copy.deepcopy(model)  # the reference: the same weights, its hooks inert on a copy
                out, outs = twin(x, ckpt=False)
                loss = F.cross_entropy(out, y)
                twin_layers = [*(b.lin for b in twin.blocks), twin.shared, twin.head]
                grads = torch.autograd.grad(loss, [p for m in twin_layers for p in m.parameters(recurse=False)] + outs)
                want_g.append([float(torch.cat([g.flatten() for g in grads[2 * k : 2 * k + 2]]).norm()) for k in range(len(layers))])
                want_a.append([float(g.norm()) for g in grads[2 * len(layers) :]])
                opt.zero_grad()
                loss = F.cross_entropy(model(x)[0], y)
                loss.backward()
                opt.step()
                w.log(loss=loss)
    rec = gradviz.open_run(tmp_path / "ck.gradviz")
    assert rec.layers("ck") == ["blocks.0.lin", "blocks.1.lin", "blocks.2.lin", "blocks.3.lin", "shared", "head"]
    close(rec.metric("ck", "grad_norm")[1], want_g)
    close(rec.metric("ck", "act_grad_norm")[1], want_a)
    steps, mean = rec.metric("ck", "act_mean")
    assert steps.tolist() == [0, 2] and np.isfinite(mean).all()
    assert rec.events() == []


@pytest.mark.parametrize("how", ["torch.compile", "Module.compile"])
def test_a_compiled_model_gets_activation_statistics_on_every_histogram_step(tmp_path, how):
    """torch.compile keeps the hooks a forward was traced with (it does not guard on module hooks):
    on a model with nn.Tanh modules the activation hooks armed on later histogram steps were never
    called, so act_mean, act_std, act_saturation and the activation histograms stopped after step 0.
    A compiled run must record what the same model records uncompiled, at every histogram step."""

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))

    x, y = torch.randn(32, 16), torch.randint(0, 3, (32,))

    def record(compiled: bool, path):
        model = make()
        run = model
        if compiled and how == "torch.compile":
            run = torch.compile(model, backend="aot_eager")
        elif compiled:
            model.compile(backend="aot_eager")
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with gradviz.watch(run, opt, path=path, name="m", hist_every=2) as w:
                _logged_steps(run, opt, x, y, w, 6)
        # dynamo warned "does not know how to trace the builtin `_json.encode_basestring_ascii`":
        # the watch's first-step bookkeeping was traced into the user's graph
        assert not [str(m.message) for m in seen if "json" in str(m.message) or "gradviz" in str(m.message)]
        return gradviz.open_run(path)

    try:
        eager = record(False, tmp_path / "eager.gradviz")
        comp = record(True, tmp_path / "compiled.gradviz")
    finally:
        torch._dynamo.reset()
    assert comp.layers("m") == eager.layers("m") == ["0", "2", "4"]
    for metric in ("grad_norm", "act_mean", "act_std", "act_saturation"):
        cs, cv = comp.metric("m", metric)
        es, ev = eager.metric("m", metric)
        assert cs.tolist() == es.tolist(), metric
        close(cv, ev)
    assert eager.metric("m", "act_mean")[0].tolist() == [0, 2, 4]
    for layer in range(3):
        cs, _, cc = comp.histograms("m", "activation", layer)
        es, _, ec = eager.histograms("m", "activation", layer)
        assert cs.tolist() == es.tolist() == [0, 2, 4]
        np.testing.assert_array_equal(cc, ec)
    assert comp.events() == []


@pytest.mark.parametrize("how", ["torch.compile", "Module.compile"])
def test_a_fullgraph_compiled_model_keeps_training_and_records_what_needs_no_layer_hook(tmp_path, how):
    """With fullgraph=True any graph break is an error in the user's forward, and the watch's hooks
    (registering activation hooks from the model's pre-hook) made one: the first step raised
    "setattr() on unsupported type". The watch now says so in one warning and records, with no
    hook inside the forward, the gradient norms (checked against the gradients), weights, updates
    and weight histograms."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 3))
    run = model
    if how == "torch.compile":
        run = torch.compile(model, backend="aot_eager", fullgraph=True)
    else:
        model.compile(backend="aot_eager", fullgraph=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 16), torch.randint(0, 3, (32,))
    want = []
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with gradviz.watch(run, opt, path=tmp_path / "fg.gradviz", name="fg", hist_every=2) as w:
                for _ in range(5):
                    opt.zero_grad()
                    loss = F.cross_entropy(run(x), y)
                    loss.backward()
                    want.append([float(torch.cat([p.grad.flatten() for p in m.parameters()]).norm()) for m in (model[0], model[2])])
                    opt.step()
                    w.log(loss=loss)
    finally:
        torch._dynamo.reset()
    notes = [str(m.message) for m in seen if "gradviz" in str(m.message)]
    assert len(notes) == 1 and "fullgraph=True" in notes[0] and "no act_grad_norm" in notes[0]
    rec = gradviz.open_run(tmp_path / "fg.gradviz")
    assert rec.layers("fg") == ["0", "2"]
    assert set(rec.metric_names("fg")) == {"loss", "lr", "grad_norm", "weight_norm", "update_ratio"}
    steps, g = rec.metric("fg", "grad_norm")
    assert steps.tolist() == [0, 1, 2, 3, 4]
    close(g, want)
    assert rec.histograms("fg", "weight", 0)[0].tolist() == [0, 2, 4]
    assert rec.events() == []


def test_parametrized_layers_are_left_alone_and_measured(tmp_path):
    """weight_norm and spectral_norm compute a layer's weight from other tensors. The histogram
    step read `layer.weight`, which ran the parametrization again (a spectral norm's power
    iteration moved its state, so a watched model trained differently from an unwatched one) and
    asked a non-leaf for `.grad` (a torch warning each histogram step). Now the watched model
    trains exactly as its unwatched twin, no warning is raised, the parametrization's own
    tensors are its layer, and that layer has a weight's shape and no activation statistics."""
    from torch.nn.utils import parametrizations

    def make():
        torch.manual_seed(0)
        return nn.Sequential(
            parametrizations.weight_norm(nn.Linear(8, 16)), nn.ReLU(),
            parametrizations.spectral_norm(nn.Linear(16, 16)), nn.ReLU(),
            nn.utils.spectral_norm(nn.Linear(16, 3)),
        )  # fmt: skip

    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    bare = make()
    opt = torch.optim.SGD(bare.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(bare(x), y).backward()
        opt.step()
    watched = make()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rec = _watched_steps(watched, torch.optim.SGD(watched.parameters(), lr=0.05), x, y, tmp_path / "p.gradviz", steps=5)
    assert [str(m.message) for m in seen] == []
    for (name, a), b in zip(bare.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # power-iteration vectors included
    assert rec.layers("m") == ["0", "0.parametrizations.weight", "2", "2.parametrizations.weight", "4"]
    table = {r[0]: r for r in rec.meta["layer_table"]["m"]}
    assert table["0.parametrizations.weight"][1:] == ["ParametrizationList", [16, 8], 16 + 16 * 8, 0, 0]
    assert table["0"][1:] == ["ParametrizedLinear", [16], 16, 2 * 8 * 16 + 16, 0]
    _, mean = rec.metric("m", "act_mean")
    assert np.isnan(mean[:, [1, 3]]).all() and np.isfinite(mean[:, [0, 2, 4]]).all()
    steps, _, counts = rec.histograms("m", "weight", 1)  # weight_norm's direction v, 16 x 8
    assert steps.tolist() == [0, 1, 2, 3, 4] and counts[-1].sum() == 16 * 8
    assert rec.histograms("m", "weight", 4)[2][-1].sum() == 3 * 16  # old-style spectral_norm: weight_orig


def test_gradient_accumulation_and_two_views_give_the_whole_batch_block_gradient(tmp_path):
    """A block that runs more than once in a step: act_grad_norm was the last run's alone, 1/sqrt(2)
    of the truth over two micro-batches. Now two micro-batches (each loss halved) record exactly
    what one step on both batches together records, and two views of one batch through the model
    give the norm over both views' block gradients (autograd on both outputs)."""

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), _TanhSkip(8), _TanhSkip(8), nn.Linear(8, 2))

    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))

    def record(path, micro: int):
        model = make()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with gradviz.watch(model, opt, path=path, name="m", blocks=[model[1], model[2]]) as w:
            for _ in range(3):
                opt.zero_grad()
                total = 0.0
                for xs, ys in zip(x.chunk(micro), y.chunk(micro), strict=True):
                    loss = F.cross_entropy(model(xs), ys) / micro
                    loss.backward()
                    total += float(loss.detach())
                opt.step()
                w.log(loss=total)
        return gradviz.open_run(path)

    whole, parts = record(tmp_path / "whole.gradviz", 1), record(tmp_path / "parts.gradviz", 2)
    for metric in ("act_grad_norm", "grad_norm"):
        close(parts.metric("m", metric)[1], whole.metric("m", metric)[1])

    noisy = x + 0.1 * torch.randn_like(x)
    twin, outs = make(), []  # the reference, on an unwatched copy
    for b in (twin[1], twin[2]):
        b.register_forward_hook(lambda _m, _i, o: outs.append(o))
    loss = F.cross_entropy(twin(x), y) + F.cross_entropy(twin(noisy), y)
    grads = torch.autograd.grad(loss, outs)  # view 1: block 1, 2; view 2: block 1, 2
    want = [math.hypot(float(grads[k].norm()), float(grads[k + 2].norm())) for k in (0, 1)]
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradviz.watch(model, opt, path=tmp_path / "views.gradviz", name="v", blocks=[model[1], model[2]]) as w:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + F.cross_entropy(model(noisy), y)
        loss.backward()
        opt.step()
        w.log(loss=loss)
    close(gradviz.open_run(tmp_path / "views.gradviz").metric("v", "act_grad_norm")[1], [want])


def test_a_model_that_owns_parameters_itself_is_a_named_layer(tmp_path):
    """A ViT's class token (a parameter of the top module) made a layer named "": blank in the
    table and the heatmap, and the NaN guard said "first in layer ; ...". It is "(model)"."""
    from gradviz.core.probes import ROOT_LAYER
    from gradviz.core.summary import summarize

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) * self.scale

    torch.manual_seed(0)
    model = Scaled()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with gradviz.watch(model, opt, path=tmp_path / "s.gradviz", name="s") as w:
        for step in range(2):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if step == 1:
                model.scale.grad.fill_(float("nan"))  # only the model's own parameter goes bad
            opt.step()
            w.log(loss=loss)
    rec = gradviz.open_run(tmp_path / "s.gradviz")
    assert ROOT_LAYER == "(model)" and rec.layers("s") == ["(model)", "fc"]
    assert [r[0] for r in rec.meta["layer_table"]["s"]] == ["(model)", "fc"]
    assert [r.name for r in summarize(Scaled(), (4,))] == ["(model)", "fc"]
    [event] = [e for e in rec.events() if e[2] == "nonfinite"]
    assert event[0] == 1 and "first in layer (model)" in event[3]


@pytest.mark.parametrize("whole", [True, False], ids=["scripted model", "scripted layer"])
def test_torchscript_models_and_layers_are_watched_without_hooks(tmp_path, whole):
    """`gradviz.watch(torch.jit.script(model))` raised "register_forward_pre_hook is not supported
    on ScriptModules" at the watch's construction. A scripted model now gets one warning and the
    measurements that need no hook (gradient norms against the gradients, weights, updates); a
    scripted layer inside a Python model is measured like any other, without activation statistics."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated in newer torch
        if whole:
            model = torch.jit.script(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
            layers = [model[0], model[2]]
        else:
            model = nn.Sequential(nn.Linear(4, 8), torch.jit.script(nn.Linear(8, 8)), nn.ReLU(), nn.Linear(8, 2))
            layers = [model[0], model[1], model[3]]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    want_g, want_u = [], []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with gradviz.watch(model, opt, path=tmp_path / "j.gradviz", name="j", hist_every=1, update_every=1) as w:
            for _ in range(3):
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                want_g.append([float(torch.cat([p.grad.flatten() for p in m.parameters()]).norm()) for m in layers])
                before = [torch.cat([p.detach().flatten() for p in m.parameters()]).clone() for m in layers]
                opt.step()
                after = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in layers]
                want_u.append([float((a - b).norm() / b.norm()) for a, b in zip(after, before, strict=True)])
                w.log(loss=loss)
    notes = [str(m.message) for m in seen if "gradviz" in str(m.message)]
    assert len(notes) == int(whole) and all("a TorchScript model takes no Python hooks" in n for n in notes)
    rec = gradviz.open_run(tmp_path / "j.gradviz")
    assert rec.events() == [] and rec.meta["scripted"] is whole
    close(rec.metric("j", "grad_norm")[1], want_g)
    close(rec.metric("j", "update_ratio")[1], want_u, rtol=1e-4)
    names = set(rec.metric_names("j"))
    if whole:
        assert names == {"loss", "lr", "grad_norm", "weight_norm", "update_ratio"}
    else:
        _, mean = rec.metric("j", "act_mean")
        assert np.isfinite(mean[:, [0, 2]]).all() and np.isnan(mean[:, 1]).all()


@pytest.mark.parametrize("paths", ["given", "default"])
def test_a_second_watch_of_a_model_closes_the_first(tmp_path, monkeypatch, paths):
    """A notebook cell run twice made a second watch while the first, never closed, went on
    recording every step (hooks twice, two files growing). A watch of the same recording (the same
    file, or no path and the same name) now closes the earlier one with a warning naming its file;
    another model's watch, and a watch of this model into another file, are left alone."""
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    model, other = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))

    def cell(path):
        w = gradviz.watch(model, opt, path=path if paths == "given" else None, name="c")
        _logged_steps(model, opt, x, y, w, 3)
        return w

    same = tmp_path / "mine.gradviz"
    first = cell(same)
    bystander = gradviz.watch(other, None, path=tmp_path / "other.gradviz", name="o")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # this model into another file, on purpose: no word, both record
        elsewhere = gradviz.watch(model, opt, path=tmp_path / "elsewhere.gradviz", name="c")
    with pytest.warns(RuntimeWarning, match=r"already had an open watch \(.*\.gradviz\); closed it"):
        second = cell(same)
    assert first.closed and not bystander.closed and not second.closed and not elsewhere.closed
    assert len(model._forward_pre_hooks) == 2 and len(opt._optimizer_step_pre_hooks) == 2  # second's and elsewhere's
    files = [first.path, second.path]
    for w in (second, bystander, elsewhere):
        w.close()
    for f in files:
        assert gradviz.open_run(f).metric("c", "loss")[0].tolist() == [0, 1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # after a close, a new watch says nothing
        gradviz.watch(model, opt, path=same if paths == "given" else None, name="c").close()
