"""gradviz.watch inside a real `torchrun --nproc_per_node=2` DistributedDataParallel job (gloo, CPU)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import gradviz

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch, torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP
    import gradviz

    out = sys.argv[1]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(inplace=True), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    default = gradviz.watch(ddp, opt, path=f"{out}/default.gradviz", name="ddp", hist_every=2, update_every=1)
    every = gradviz.watch(ddp, opt, path=f"{out}/all.gradviz", name="ddp", record_all_ranks=True)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own shard of the data
    expect = []
    for step in range(3):
        x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        loss = F.cross_entropy(ddp(x), y)
        loss.backward()  # DDP averages the gradients over the ranks here
        expect.append([float(torch.cat([p.grad.double().flatten() for p in m.parameters()]).norm())
                       for m in model if any(True for _ in m.parameters())])
        opt.step()
        default.log(loss=loss)
        every.log(loss=loss)
    default.close()
    every.close()
    with open(f"{out}/expect{rank}.json", "w") as f:
        json.dump({"grad_norm": expect, "active": [default.active, every.active]}, f)
    dist.destroy_process_group()
    """
)


def _torchrun() -> str | None:
    exe = Path(sys.executable).with_name("torchrun")
    return str(exe) if exe.exists() else shutil.which("torchrun")


def _two_process_job(tmp_path: Path, source: str) -> None:
    """Run `source` under `torchrun --nproc_per_node=2` with `tmp_path` as its argument."""
    torchrun = _torchrun()
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    script = tmp_path / "job.py"
    script.write_text(source)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADVIZ_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available in this torch build")
@pytest.mark.skipif(
    torch.distributed.is_available() and not torch.distributed.is_gloo_available(), reason="no gloo backend"
)
def test_watch_in_a_two_process_ddp_job(tmp_path):
    _two_process_job(tmp_path, SCRIPT)
    expect = [json.loads((tmp_path / f"expect{r}.json").read_text()) for r in (0, 1)]
    assert expect[0]["active"] == [True, True] and expect[1]["active"] == [False, True]
    # rank 0 records by default; no file for rank 1 unless asked
    assert not (tmp_path / "default.rank1.gradviz").exists()
    rec = gradviz.open_run(tmp_path / "default.gradviz")
    assert rec.layers("ddp") == ["0", "2", "4"]  # no `module.` prefix: the single-process names
    assert rec.meta["world_size"] == 2 and rec.meta["rank"] == 0
    steps, gn = rec.metric("ddp", "grad_norm")
    assert steps.tolist() == [0, 1, 2]
    np.testing.assert_allclose(gn, expect[0]["grad_norm"], rtol=1e-5)
    assert np.isfinite(rec.metric("ddp", "update_ratio")[1]).all()
    assert rec.metric("ddp", "act_mean")[0].tolist() == [0, 2]
    # every rank to its own file: the averaged gradients agree, the local losses differ
    r0 = gradviz.open_run(tmp_path / "all.gradviz")
    r1 = gradviz.open_run(tmp_path / "all.rank1.gradviz")
    assert r1.meta["rank"] == 1 and r1.layers("ddp") == ["0", "2", "4"]
    np.testing.assert_allclose(r1.metric("ddp", "grad_norm")[1], expect[1]["grad_norm"], rtol=1e-5)
    np.testing.assert_allclose(r0.metric("ddp", "grad_norm")[1], r1.metric("ddp", "grad_norm")[1], rtol=1e-5)
    assert not np.allclose(r0.metric("ddp", "loss")[1], r1.metric("ddp", "loss")[1])


FSDP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, warnings
    import torch, torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn
    from torch.distributed.fsdp import fully_shard
    import gradviz

    out = sys.argv[1]
    dist.init_process_group("gloo")
    rank = dist.get_rank()

    def train(watched):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
        for layer in (model[0], model[2]):
            fully_shard(layer)
        fully_shard(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        w = gradviz.watch(model, opt, path=f"{out}/fsdp.gradviz", name="f", hist_every=1) if watched else None
        g = torch.Generator().manual_seed(100 + rank)
        losses = []
        for _ in range(3):
            x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if w is not None:
                w.log(loss=loss)
            losses.append(float(loss))
        if w is not None:
            w.close()
        return losses

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        watched = train(True)
    bare = train(False)
    with open(f"{out}/fsdp{rank}.json", "w") as f:
        json.dump({"watched": watched, "bare": bare, "warnings": [str(m.message) for m in seen if "gradviz" in str(m.message)]}, f)
    dist.barrier()
    # FSDP2 over gloo aborted now and then at the end ("terminate called without an active
    # exception", 1 run in 8 here; the watch is inactive for FSDP: no thread, no hook): the
    # results are written, leave without the teardown (12 runs in 12 passed so)
    os._exit(0)
    """
)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available in this torch build")
@pytest.mark.skipif(
    torch.distributed.is_available() and not torch.distributed.is_gloo_available(), reason="no gloo backend"
)
def test_watch_of_an_fsdp_model_says_it_cannot_and_leaves_training_alone(tmp_path):
    """FSDP2 (`fully_shard`) shards every parameter: the watch stopped at step 0 with "aten.stack.out
    got mixed torch.Tensor and DTensor", and measuring the unsharded parameters of a pass reads
    storage FSDP frees afterwards (a segfault, tried). It now says so once, on rank 0, records
    nothing, and the training is exactly the unwatched one."""
    pytest.importorskip("torch.distributed.fsdp", reason="no FSDP in this torch build")
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        pytest.skip("this torch has no fully_shard (FSDP2)")
    _two_process_job(tmp_path, FSDP_SCRIPT)
    results = [json.loads((tmp_path / f"fsdp{r}.json").read_text()) for r in (0, 1)]
    assert [len(r["warnings"]) for r in results] == [1, 0]
    assert "sharded (FSDP)" in results[0]["warnings"][0] and "nothing is recorded" in results[0]["warnings"][0]
    assert not list(tmp_path.glob("*.gradviz")) and not (tmp_path / "home").exists()
    for r in results:
        assert r["watched"] == r["bare"]
