"""The engine's foreach optimisers against torch.optim, step by step."""

import subprocess
import sys

import pytest
import torch

from gradviz.core.optim import make_optimizer


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3), torch.nn.Linear(3, 2))


def _reference(name: str, params, lr: float, momentum: float, wd: float):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, foreach=False)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd, foreach=False)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, foreach=False)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd, foreach=False)


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_matches_torch_optim(name, wd):
    ours, ref = _model(), _model()
    opt = make_optimizer(name, ours.parameters(), lr=0.05, momentum=0.9, weight_decay=wd)
    ref_opt = _reference(name, ref.parameters(), 0.05, 0.9, wd)
    gen = torch.Generator().manual_seed(1)
    for step in range(12):
        x = torch.randn(8, 5, generator=gen)
        lr = 0.05 / (1 + 0.1 * step)  # the engine changes lr between steps (hyperbolic decay)
        opt.param_groups[0]["lr"] = lr
        for g in ref_opt.param_groups:
            g["lr"] = lr
        # every third step the last layer is left out, so its state must wait (as torch.optim's does)
        skip_last = step % 3 == 2
        report = None
        for m, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad(set_to_none=True)
            out = m[2](m[1](m[0](x))) if skip_last else m(x)
            out.pow(2).mean().backward()
            if o is opt and step % 2:  # every other step reports what it did (the update cadence's form)
                before = [p.detach().double().clone() for p in ours.parameters()]
                report = o.step(report=True)
            else:
                o.step()
        for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        if report is not None:
            params = list(ours.parameters())
            assert report.idx == [i for i, p in enumerate(params) if p.grad is not None]
            assert report.of_grads == (name == "sgd" and wd == 0.0)
            for i, d, s in zip(report.idx, report.directions, report.scales, strict=True):
                moved = params[i].detach().double() - before[i]
                torch.testing.assert_close(-s * d.double(), moved, rtol=1e-4, atol=1e-7)
            untouched = set(range(len(params))) - set(report.idx)
            for i in untouched:  # the layer left out this step did not move
                assert torch.equal(params[i].detach().double(), before[i])


def test_zero_grad_and_unknown_name():
    m = _model()
    opt = make_optimizer("sgd", m.parameters(), lr=0.1, momentum=0.0, weight_decay=0.0)
    m(torch.randn(2, 5)).sum().backward()
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in m.parameters())
    with pytest.raises(ValueError, match="accepted values are sgd, momentum, rmsprop, adam"):
        make_optimizer("lion", m.parameters(), 0.1, 0.0, 0.0)


def test_engine_step_does_not_import_dynamo():
    """The launch budget: training the demo's first steps must not pull in torch._dynamo (~1.3 s)."""
    code = (
        "import sys\n"
        "from gradviz.config import load_preset\n"
        "from gradviz.core.experiment import Experiment\n"
        "Experiment(load_preset('demo')).run(3)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
