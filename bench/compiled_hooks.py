"""Would compiled hooks bring the probes under 1.05x? The per-step measurement in C++, on the demo's plain model.

`bench/overhead_floor.py` shows the Python floor (block hooks plus one `_foreach_norm`, ~1.2x).
This asks what C++ buys, with the hooks compiled by `torch.utils.cpp_extension.load_inline` (needs
g++ and ~25 s the first time; cached under ~/.cache/torch_extensions after). Interleaved, on the
demo's plain model, one torch thread, each row's median of its per-round ratios to `bare`:
- `python hooks`: gradviz's `BlockGradNorms` (a Python pre-hook per block that takes the norm of
  dL/d(block output)) and one `_foreach_norm` over the parameter gradients, one host copy;
- `C++ hooks, norm inline`: each block's output gets a C++ tensor hook that takes the norm where the
  gradient appears and writes it into a float buffer; the parameter norms as above;
- `C++ hooks, 2nd thread`: every gradient (block outputs' and parameters', both through C++ hooks)
  is handed to a C++ worker thread on the other core, which takes the norms while the training
  thread goes on; the step waits for the worker before the optimiser step (the NaN guard needs the
  norms first).
Last line: `compiled <ratio of the better C++ row>`.

    python bench/compiled_hooks.py [--rounds 40]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import bare_copy, demo_run  # noqa: E402
from overhead_floor import round_args  # noqa: E402

from gradviz.core.models.switches import blocks as switch_blocks  # noqa: E402
from gradviz.core.probes import BlockGradNorms  # noqa: E402

SOURCE = r"""
#include <torch/extension.h>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

// the norm where the gradient appears, written into the caller's float buffer
void norm_hook(at::Tensor out, at::Tensor buf, int64_t i) {
  float* dst = buf.data_ptr<float>() + i;
  out.register_hook([dst](const at::Tensor& g) { *dst = at::linalg_vector_norm(g, 2).item<float>(); });
}

// a worker on another core takes the norms; it spins a while before sleeping, as a wake-up per
// gradient (a futex call each) cost more than the norms
struct Job { at::Tensor g; float* dst; };
class Worker {
 public:
  Worker() : th_([this] { loop(); }) { th_.detach(); }
  void push(const at::Tensor& g, float* dst) {
    bool wake;
    { std::lock_guard<std::mutex> lk(mu_); q_.push_back({g, dst}); ++pending_; wake = sleeping_; }
    avail_.store(true, std::memory_order_release);
    if (wake) cv_.notify_one();
  }
  void drain() { std::unique_lock<std::mutex> lk(mu_); done_.wait(lk, [&] { return pending_ == 0; }); }
 private:
  void loop() {
    at::set_num_threads(1);
    std::vector<Job> batch;
    for (;;) {
      for (int k = 0; k < 20000 && !avail_.load(std::memory_order_acquire); ++k) __builtin_ia32_pause();
      {
        std::unique_lock<std::mutex> lk(mu_);
        sleeping_ = true;
        cv_.wait(lk, [&] { return !q_.empty(); });
        sleeping_ = false;
        batch.swap(q_);
        avail_.store(false);
      }
      {
        at::NoGradGuard ng;
        for (auto& j : batch) *j.dst = at::linalg_vector_norm(j.g, 2).item<float>();
      }
      long n = static_cast<long>(batch.size());
      batch.clear();
      { std::lock_guard<std::mutex> lk(mu_); pending_ -= n; if (pending_ == 0) done_.notify_all(); }
    }
  }
  std::mutex mu_;
  std::condition_variable cv_, done_;
  std::vector<Job> q_;
  long pending_ = 0;
  bool sleeping_ = false;
  std::atomic<bool> avail_{false};
  std::thread th_;
};
static Worker& worker() { static Worker* w = new Worker(); return *w; }

void thread_hook(at::Tensor t, at::Tensor buf, int64_t i) {
  float* dst = buf.data_ptr<float>() + i;
  t.register_hook([dst](const at::Tensor& g) { worker().push(g, dst); });
}
void drain() { pybind11::gil_scoped_release nogil; worker().drain(); }
"""


def compile_hooks():
    from torch.utils.cpp_extension import load_inline

    return load_inline("gradviz_bench_hooks", cpp_sources=SOURCE, functions=["norm_hook", "thread_hook", "drain"], extra_cflags=["-O2"])


def make_step(run, kind: str, ext):
    model, opt = bare_copy(run)
    params = list(model.parameters())
    blocks = [m for _, m in switch_blocks(model)]
    buf = torch.zeros(len(blocks) + len(params))
    hooks = BlockGradNorms(switch_blocks(model)) if kind == "python hooks" else None
    if kind == "C++ hooks, norm inline":
        for i, b in enumerate(blocks):
            b.gradviz_sink = lambda mod, out, i=i: ext.norm_hook(out, buf, i)
    elif kind == "C++ hooks, 2nd thread":
        for i, b in enumerate(blocks):
            b.gradviz_sink = lambda mod, out, i=i: ext.thread_hook(out, buf, i)
        for k, p in enumerate(params):  # leaf hooks: registered once, they fire every backward
            ext.thread_hook(p, buf, len(blocks) + k)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = run.loss_fn(model(x), y)[0]
        loss.backward()
        if hooks is not None:
            norms = torch._foreach_norm([p.grad for p in params if p.grad is not None])
            torch.cat([torch.stack(norms), torch.stack(hooks.values()), loss.detach().reshape(1)]).numpy()
            hooks.reset()
        elif kind == "C++ hooks, norm inline":
            norms = torch._foreach_norm([p.grad for p in params if p.grad is not None])
            torch.cat([torch.stack(norms), buf[: len(blocks)], loss.detach().reshape(1)]).numpy()
        elif kind == "C++ hooks, 2nd thread":
            ext.drain()
            buf.numpy().copy()
        opt.step()

    return step


def main() -> int:
    args = round_args()
    if shutil.which("g++") is None and shutil.which("c++") is None:
        print("compiled: no C++ compiler here (g++): nothing to measure")
        return 0
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ext = compile_hooks()
    print(f"hooks compiled (or loaded from the cache) in {time.perf_counter() - t0:.1f} s")
    run = demo_run()
    kinds = ["bare", "python hooks", "C++ hooks, norm inline", "C++ hooks, 2nd thread"]
    steps = {k: make_step(run, k, ext) for k in kinds}
    batches = run.data.train_batches(run.cfg.train.batch_size, seed=0)
    data = [next(batches) for _ in range(args.per_round)]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(args.rounds + 1):  # round 0 warms every configuration up
        for k in kinds if r % 2 == 0 else kinds[::-1]:
            t = time.perf_counter()
            for x, y in data:
                steps[k](x, y)
            if r:
                times[k].append((time.perf_counter() - t) / len(data) * 1e3)
    print(f"{'configuration':<26} {'ms/step':>8} {'x bare':>7}  (median of per-round ratios; quartiles)")
    ratio = {}
    for k in kinds:
        rs = [a / b for a, b in zip(times[k], times["bare"], strict=True)]
        q1, q2, q3 = statistics.quantiles(rs, n=4)
        ratio[k] = statistics.median(rs)
        print(f"{k:<26} {statistics.median(times[k]):8.3f} {ratio[k]:7.3f}  ({q1:.3f} to {q3:.3f})")
    print(f"compiled {min(ratio['C++ hooks, norm inline'], ratio['C++ hooks, 2nd thread']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
