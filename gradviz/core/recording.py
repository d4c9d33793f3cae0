"""The in-memory recording: append-only columnar numpy series, one per (run, metric).

Live training appends to it, opening a run file fills it, following a file tails into it; every view
and export reads it through the same few methods, so none of them knows which of the three it shows.

Readers get array views, not copies: the writer never changes a row it has already published (growth
and decimation build new arrays), so a view taken under the lock stays valid after it is released.
Memory stays bounded: when a series reaches its row budget the older half is halved by pairing rows
(mean value, min/max envelope kept), so the newest rows keep full resolution.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

SCALAR_METRICS = ("loss", "eval_loss", "eval_accuracy", "lr")
LAYER_METRICS = ("grad_norm", "weight_norm", "update_ratio", "act_mean", "act_std", "act_saturation")
BLOCK_METRICS = ("act_grad_norm",)
HIST_KINDS = ("weight", "grad", "activation")

# Per-series memory budget: a 62-layer vector series keeps ~5 600 rows (values + envelope).
SERIES_BYTES = 4 << 20


def _group(a: np.ndarray, k: int, how: str) -> np.ndarray:
    """Reduce consecutive groups of k rows (len(a) must be a multiple of k)."""
    if k == 1 or len(a) == 0:
        return a.copy()
    g = a.reshape(len(a) // k, k, *a.shape[1:])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN groups stay NaN
        if how == "mean":
            return np.nanmean(g.astype(np.float64), axis=1).astype(a.dtype)
        return (np.nanmin if how == "min" else np.nanmax)(g, axis=1)


@dataclass(frozen=True)
class Event:
    step: int
    run: str  # run name, or "" for the whole experiment
    kind: str  # toggle | restart | pause | resume | nonfinite | error | stop | note
    detail: str


class Series:
    """Append-only rows (step, value[, envelope]) with a row budget."""

    def __init__(self, width: int, dtype, max_rows: int | None, envelope: bool = True) -> None:
        self.width = width  # 0 = scalar series
        self.keep_envelope = envelope
        self.dtype = np.dtype(dtype)
        self.max_rows = max_rows
        self.n = 0
        self.decimated = False
        shape = (64,) if width == 0 else (64, width)
        self.steps = np.zeros(64, np.int64)
        self.values = np.zeros(shape, self.dtype)
        self.lo = self.hi = None  # envelopes, allocated on first decimation
        self.n_old = 0  # rows in the decimated tier
        self.stride = 1  # steps per row in the decimated tier

    def _grow(self, need: int) -> None:
        cap = len(self.steps)
        if need <= cap:
            return
        new = max(need, cap * 2)
        if self.max_rows:
            new = min(max(new, need), max(self.max_rows, need))
        for name in ("steps", "values", "lo", "hi"):
            arr = getattr(self, name)
            if arr is None:
                continue
            grown = np.zeros((new, *arr.shape[1:]), arr.dtype)
            grown[: self.n] = arr[: self.n]
            setattr(self, name, grown)

    def extend(self, steps: np.ndarray, values: np.ndarray) -> None:
        k = len(steps)
        if k == 0:
            return
        if self.max_rows and k > self.max_rows // 2:  # a bulk load: in pieces, so it decimates too
            piece = max(1, self.max_rows // 4)
            for i in range(0, k, piece):
                self.extend(steps[i : i + piece], values[i : i + piece])
            return
        if self.max_rows and self.n + k > self.max_rows:
            self._decimate(self.n + k)
        self._grow(self.n + k)
        self.steps[self.n : self.n + k] = steps
        self.values[self.n : self.n + k] = values
        if self.lo is not None:
            self.lo[self.n : self.n + k] = values
            self.hi[self.n : self.n + k] = values
        self.n += k

    def _decimate(self, need: int) -> None:
        """Make room for `need` rows. Rows live in two tiers in one array: an old tier whose rows
        each stand for `stride` steps, then the newest rows at full resolution. The older half of
        the full-resolution tier moves to the old tier in groups of `stride`; when the old tier
        outgrows half the budget it is paired and the stride doubles. New arrays every time, so
        published views stay valid."""
        half_budget = self.max_rows // 2
        while need > self.max_rows:
            fresh = self.n - self.n_old
            move = (fresh // 2) // self.stride * self.stride
            if move == 0:
                return  # a bulk append larger than the budget: `_grow` makes room this once
            lo = self.lo if self.lo is not None else self.values
            hi = self.hi if self.hi is not None else self.values
            old = slice(0, self.n_old)
            mv = slice(self.n_old, self.n_old + move)
            st = np.concatenate([self.steps[old], self.steps[mv][:: self.stride]])
            v = np.concatenate([self.values[old], _group(self.values[mv], self.stride, "mean")])
            env = self.keep_envelope
            lv = np.concatenate([lo[old], _group(lo[mv], self.stride, "min")]) if env else None
            hv = np.concatenate([hi[old], _group(hi[mv], self.stride, "max")]) if env else None
            while len(st) > half_budget and len(st) >= 2:
                even = len(st) & ~1
                tail = slice(even, len(st))
                st = np.concatenate([st[:even:2], st[tail]])
                v = np.concatenate([_group(v[:even], 2, "mean"), v[tail]])
                if env:
                    lv = np.concatenate([_group(lv[:even], 2, "min"), lv[tail]])
                    hv = np.concatenate([_group(hv[:even], 2, "max"), hv[tail]])
                self.stride *= 2
            keep = slice(self.n_old + move, self.n)
            if not self.keep_envelope:
                lv = hv = None
            m = len(st) + (self.n - self.n_old - move)
            cap = max(self.max_rows, m)
            steps = np.zeros(cap, np.int64)
            vals = np.zeros((cap, *self.values.shape[1:]), self.dtype)
            steps[:m] = np.concatenate([st, self.steps[keep]])
            vals[:m] = np.concatenate([v, self.values[keep]])
            los = his = None
            if lv is not None:
                los, his = np.zeros_like(vals), np.zeros_like(vals)
                los[:m] = np.concatenate([lv, lo[keep]])
                his[:m] = np.concatenate([hv, hi[keep]])
            need -= self.n - m
            self.n_old = len(st)
            self.steps, self.values, self.lo, self.hi, self.n = steps, vals, los, his, m
            self.decimated = True

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self.steps[: self.n], self.values[: self.n]

    def envelope(self) -> tuple[np.ndarray, np.ndarray]:
        if self.lo is None:
            v = self.values[: self.n]
            return v, v
        return self.lo[: self.n], self.hi[: self.n]

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.steps, self.values, self.lo, self.hi) if a is not None)


@dataclass
class RunInfo:
    name: str
    layers: list[str]  # parameter-owning modules, forward order
    layer_types: list[str]
    blocks: list[str]  # residual units, forward order (act_grad_norm columns)


class Recording:
    """Thread-safe store of every run's metrics, histograms and events."""

    def __init__(self, bounded: bool = True) -> None:
        self._lock = threading.RLock()
        self._bounded = bounded
        self._runs: dict[str, RunInfo] = {}
        self._series: dict[tuple[str, str], Series] = {}
        self._hists: dict[tuple[str, str, int], Series] = {}
        self._edges: dict[tuple[str, str, int], np.ndarray] = {}
        self._events: list[Event] = []
        self._listeners: list[Callable[[str, tuple], None]] = []
        self._hist_loader: Callable[[str, str, int], None] | None = None
        self.meta: dict = {}
        self.version = 0  # bumps on every change; views redraw only when it moved
        self.source = ""  # where the data comes from: a run file path, or "" while unsaved

    # ---- writing -------------------------------------------------------------------------
    def add_listener(self, fn: Callable[[str, tuple], None]) -> None:
        """`fn(kind, payload)` is called, in the writing thread, for every change (the run file uses it)."""
        self._listeners.append(fn)

    def _emit(self, kind: str, payload: tuple) -> None:
        for fn in self._listeners:
            fn(kind, payload)

    def set_meta(self, meta: dict) -> None:
        with self._lock:
            self.meta = dict(meta)
            self.version += 1
        self._emit("meta", (dict(meta),))

    def add_run(self, name: str, layers: list[str], layer_types: list[str], blocks: list[str]) -> None:
        with self._lock:
            if name in self._runs:
                old = self._runs[name]
                if old.layers == list(layers) and old.blocks == list(blocks):
                    return
                raise ValueError(f"run {name!r} already recorded with other layers")
            self._runs[name] = RunInfo(name, list(layers), list(layer_types), list(blocks))
            self.version += 1
        self._emit("run", (name, list(layers), list(layer_types), list(blocks)))

    def _series_for(self, run: str, name: str, width: int) -> Series:
        key = (run, name)
        s = self._series.get(key)
        if s is None:
            dtype = np.float64 if width == 0 else np.float32
            rows = None
            if self._bounded:
                rows = max(4096, SERIES_BYTES // (max(width, 1) * np.dtype(dtype).itemsize * 3))
            s = self._series[key] = Series(width, dtype, rows)
        elif s.width != width:
            raise ValueError(f"{run}/{name}: width {width} != recorded {s.width}")
        return s

    def append(self, run: str, step: int, metrics: dict) -> None:
        """One step of one run: scalars (float) and per-layer / per-block vectors (1-D arrays)."""
        with self._lock:
            if run not in self._runs:
                raise KeyError(f"unknown run {run!r}")
            for name, value in metrics.items():
                arr = np.asarray(value)
                s = self._series_for(run, name, 0 if arr.ndim == 0 else arr.shape[0])
                s.extend(np.array([step], np.int64), arr[None] if arr.ndim else np.array([arr]))
            self.version += 1
        self._emit("metrics", (run, step, metrics))

    def extend(self, run: str, name: str, steps: np.ndarray, values: np.ndarray) -> None:
        """Bulk append of one series (used when reading a run file)."""
        with self._lock:
            width = 0 if values.ndim == 1 else values.shape[1]
            self._series_for(run, name, width).extend(np.asarray(steps, np.int64), values)
            self.version += 1

    def set_edges(self, run: str, kind: str, layer: int, edges: np.ndarray) -> None:
        with self._lock:
            self._edges[(run, kind, layer)] = np.asarray(edges, np.float64)
            self.version += 1
        self._emit("edges", (run, kind, layer, np.asarray(edges, np.float64)))

    def append_histograms(self, run: str, step: int, kind: str, counts: dict[int, np.ndarray]) -> None:
        """Counts per layer index for one step; edges must have been set with `set_edges`."""
        with self._lock:
            for layer, c in counts.items():
                self._hist_series(run, kind, layer, len(c)).extend(np.array([step], np.int64), np.asarray(c, np.float32)[None])
            self.version += 1
        self._emit("hist", (run, step, kind, counts))

    def extend_histograms(self, run: str, kind: str, layer: int, steps: np.ndarray, counts: np.ndarray) -> None:
        with self._lock:
            self._hist_series(run, kind, layer, counts.shape[1]).extend(steps, counts.astype(np.float32))
            self.version += 1

    def _hist_series(self, run: str, kind: str, layer: int, bins: int) -> Series:
        key = (run, kind, layer)
        s = self._hists.get(key)
        if s is None:
            # counts need no envelope; 512 rows = 12 800 steps at full resolution at cadence 25
            s = self._hists[key] = Series(bins, np.float32, 512 if self._bounded else None, envelope=False)
        return s

    def add_event(self, step: int, run: str, kind: str, detail: str) -> Event:
        ev = Event(int(step), run, kind, detail)
        with self._lock:
            self._events.append(ev)
            self.version += 1
        self._emit("event", (ev,))
        return ev

    # ---- reading (the public reader API, shared with gradviz.open_run) -----------------
    @property
    def runs(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def info(self, run: str) -> RunInfo:
        with self._lock:
            return self._runs[run]

    def layers(self, run: str) -> list[str]:
        return list(self.info(run).layers)

    def blocks(self, run: str) -> list[str]:
        return list(self.info(run).blocks)

    def metric_names(self, run: str) -> list[str]:
        with self._lock:
            return [name for (r, name) in self._series if r == run]

    def metric(self, run: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps (n,), values (n,) or (n, n_layers)); empty arrays when nothing is recorded yet."""
        with self._lock:
            if run not in self._runs:
                raise KeyError(f"unknown run {run!r}; runs are {', '.join(self._runs) or 'none'}")
            s = self._series.get((run, name))
            if s is None:
                return np.zeros(0, np.int64), np.zeros(0)
            return s.view()

    def envelope(self, run: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) per row: equal to the values except where old rows were decimated."""
        with self._lock:
            s = self._series.get((run, name))
            if s is None:
                return np.zeros(0), np.zeros(0)
            return s.envelope()

    def set_hist_loader(self, fn: Callable[[str, str, int], None] | None) -> None:
        """A run file opened from disk loads a layer's histograms when first asked for (they are
        most of a long run's bytes, and a view shows one layer at a time)."""
        self._hist_loader = fn

    def histograms(self, run: str, kind: str, layer: str | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps (n,), edges (bins+1,), counts (n, bins)) for one layer (name or index)."""
        with self._lock:
            idx = layer if isinstance(layer, int) else self.info(run).layers.index(layer)
            if self._hist_loader is not None:
                self._hist_loader(run, kind, idx)
            edges = self._edges.get((run, kind, idx))
            s = self._hists.get((run, kind, idx))
            if s is None or edges is None:
                return np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 0), np.float32)
            steps, counts = s.view()
            return steps, edges, counts

    def events(self) -> list[tuple[int, str, str, str]]:
        with self._lock:
            return [(e.step, e.run, e.kind, e.detail) for e in self._events]

    def event_objects(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def last_step(self, run: str | None = None) -> int:
        """Newest step recorded for `run` (any run when None); -1 when empty."""
        with self._lock:
            best = -1
            for (r, _), s in self._series.items():
                if (run is None or r == run) and s.n:
                    best = max(best, int(s.steps[s.n - 1]))
            return best

    def nbytes(self) -> int:
        with self._lock:
            return sum(s.nbytes() for s in self._series.values()) + sum(s.nbytes() for s in self._hists.values())

    def hist_layers(self, run: str, kind: str) -> Iterable[int]:
        """Layers with histogram edges of this kind (their counts may still be on disk)."""
        with self._lock:
            return sorted(i for (r, k, i) in self._edges if r == run and k == kind)
