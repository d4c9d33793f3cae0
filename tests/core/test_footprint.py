"""The memory check before the models are built: counts from a shapes-only build, the verdict."""

import os

import pytest
import torch

from gradviz.config import load_preset
from gradviz.core.data import data_shape
from gradviz.core.experiment import Experiment
from gradviz.core.footprint import check_fits, free_bytes, parameter_count
from gradviz.core.models import build_model


@pytest.mark.parametrize("preset", ["demo", "rgb", "batchnorm-init", "resnet18-mnist", "depth"])
def test_the_shapes_only_count_equals_the_built_models(preset):
    cfg = load_preset(preset)
    for rc in cfg.runs:
        shape, outputs = data_shape(rc.data, seed=0)
        real = build_model(rc.model, shape, outputs, seed=0)
        assert parameter_count(rc.model, shape, outputs) == sum(p.numel() for p in real.parameters())


def _runs(cfg):
    out = []
    for rc in cfg.runs:
        shape, outputs = data_shape(rc.data, seed=0)
        out.append((rc, shape, outputs))
    return out


def test_the_verdict_weighs_weights_gradients_and_optimiser_state():
    cfg = load_preset("demo")  # SGD, float32, 503,940 parameters per twin
    runs = _runs(cfg)
    n = parameter_count(runs[0][0].model, runs[0][1], runs[0][2])
    need = 2 * n * 4 * 3  # two runs, 4 bytes, weight + gradient + the update step's copy
    check_fits(runs, torch.device("cpu"), free=need)  # exactly enough: no complaint
    with pytest.raises(ValueError) as info:
        check_fits(runs, torch.device("cpu"), free=need - 1)
    msg = str(info.value)
    assert "\n" not in msg and "2 runs" in msg and "1.01 M parameters" in msg and "lower model.depth or model.width" in msg
    adam = load_preset("demo").with_overrides({"train.optimizer": "adam"})
    with pytest.raises(ValueError):  # Adam keeps two more tensors per parameter
        check_fits(_runs(adam), torch.device("cpu"), free=need)
    check_fits(_runs(adam), torch.device("cpu"), free=2 * n * 4 * 5)
    check_fits(runs, torch.device("cpu"), free=n * 4, weights_only=True)  # a summary builds one at a time
    with pytest.raises(ValueError, match="the model needs at least 2.02 MB for its weights"):
        check_fits(runs, torch.device("cpu"), free=n * 4 - 1, weights_only=True)


def test_free_memory_is_read_from_the_host():
    free = free_bytes(torch.device("cpu"))
    assert free is not None and 0 < free <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_an_experiment_too_big_for_the_machine_is_refused_before_allocating(monkeypatch):
    """Width 4096 x depth 200 convolutions: 10 T parameters. The experiment says so in one line
    instead of allocating (on Linux the out-of-memory killer ended the process without a word)."""
    allocated = []
    real_empty = torch.empty

    def watched_empty(*args, **kw):  # what the real build would have asked for
        t = real_empty(*args, **kw)
        if t.device.type != "meta":
            allocated.append(t.numel())
        return t

    monkeypatch.setattr(torch, "empty", watched_empty)
    cfg = load_preset("demo").with_overrides({"model.kind": "conv", "data.name": "shapes", "model.width": 4096, "model.depth": 200})
    with pytest.raises(ValueError) as info:
        Experiment(cfg)
    assert "the models need at least" in str(info.value) and "TB" in str(info.value)
    assert sum(allocated) < 10_000_000  # the data, no weights
