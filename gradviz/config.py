"""Experiment configuration: frozen dataclasses, loaded from TOML presets with line-numbered errors.

A preset has `[model]`, `[data]`, `[train]` tables that every run shares and a `[[runs]]` array whose
entries name a run and override fields of those tables, e.g.

    [[runs]]
    name = "residual"
    model = { residual = true }
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
PRESET_DIR = RESOURCES / "presets"


class ConfigError(ValueError):
    """A config or flag problem; the message is one line naming file, line, key and accepted values."""


# the shape settings each model kind is built from; the others are fixed by its architecture (the
# GUI offers only these, so the rgb net no longer showed "depth (blocks) 30" for its three blocks)
KIND_FIELDS = {"mlp": ("depth", "width", "activation"), "conv": ("depth", "width"), "lenet": ("activation",)}


def kind_fields(kind: str) -> tuple[str, ...]:
    """Which of `depth`, `width`, `activation` a model kind takes from its config."""
    return KIND_FIELDS.get(kind, ())


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "mlp"  # mlp | conv | resnet18 | rgb | lenet | torchvision:<name>
    depth: int = 30  # number of blocks (mlp: 1-200; conv: blocks per stage count)
    width: int = 32  # hidden units (mlp) or base channels (conv)
    activation: str = "tanh"  # tanh | sigmoid | relu
    init: str = "default"  # default | zeros | normal | xavier | he
    residual: bool = False  # additive skip path on every block
    norm: bool = False  # normalisation layer inside every block on or off
    norm_kind: str = "batch"  # batch | layer | group (fixed at build; `norm` flips it live)
    dropout: float = 0.0  # dropout probability 0-0.9 inside every block
    dtype: str = "float32"  # float32 | float64


@dataclass(frozen=True)
class DataConfig:
    name: str = "spiral"  # spiral | rgb | linear | shapes | mnist | fashion-mnist | cifar10 | imagefolder
    root: str = ""  # folder of a torchvision data set or an image folder
    download: bool = False  # let torchvision download a missing data set
    n_train: int = 2048  # synthetic sets: training points
    n_test: int = 512  # synthetic sets: evaluation points
    noise: float = 0.1  # synthetic sets: label / target noise
    classes: int = 4  # spiral: number of arms
    resize: int = 0  # image sets: resize to this side (0 keeps the native size)


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "sgd"  # sgd | momentum | rmsprop | adam
    lr: float = 0.05
    momentum: float = 0.9  # used by momentum (and as rmsprop's alpha is separate)
    weight_decay: float = 0.0  # L2 penalty through the optimiser
    lr_decay: float = 0.0  # seed 002's hyperbolic decay: lr0 / (1 + epoch * decay)
    loss: str = "auto"  # auto | mse | sse | cross_entropy
    batch_size: int = 128  # 0 = full batch
    steps: int = 1000  # default length of a headless run
    eval_every: int = 25  # evaluation cadence in steps
    hist_every: int = 25  # histogram and activation-statistics cadence in steps
    update_every: int = 5  # weight_norm / update_ratio cadence (they need a copy of the weights)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch threads in the training thread; 0 = leave one core to the GUI


@dataclass(frozen=True)
class RunConfig:
    name: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    description: str
    note: str  # lecture note shown beside the preset
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    runs: tuple[RunConfig, ...] = field(default_factory=tuple)
    source: str = ""  # file the config came from, for messages

    def run(self, name: str) -> RunConfig:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)

    def with_overrides(self, overrides: dict[str, Any]) -> ExperimentConfig:
        """Apply overrides: `section.key` sets the key for every run (replacing per-run values of
        that key, so `--set model.depth=20` really gives every run depth 20); `run.section.key`
        sets it for that run only (e.g. `plain.train.lr=0.1`)."""
        data = _to_dict(self)
        names = [r["name"] for r in data["runs"]]
        for key, value in overrides.items():
            parts = key.split(".")
            if len(parts) == 3 and parts[0] in names and parts[1] in SECTIONS:
                run = data["runs"][names.index(parts[0])]
                run.setdefault(parts[1], {})[parts[2]] = value
                continue
            section, _, name = key.partition(".")
            if section not in SECTIONS or not name or "." in name:
                raise ConfigError(
                    f"--set {key}: unknown key; use "
                    + ", ".join(f"{s}.<field>" for s in SECTIONS)
                    + f" or <run>.<section>.<field> with a run of {', '.join(names)}"
                )
            data[section][name] = value
            for run in data["runs"]:
                run.get(section, {}).pop(name, None)
        return _from_dict(data, source=self.source, text=None, origin="--set")


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}

CHOICES = {
    ("model", "activation"): ("tanh", "sigmoid", "relu"),
    ("model", "init"): ("default", "zeros", "normal", "xavier", "he"),
    ("model", "norm_kind"): ("batch", "layer", "group"),
    ("model", "dtype"): ("float32", "float64"),
    ("train", "optimizer"): ("sgd", "momentum", "rmsprop", "adam"),
    ("train", "loss"): ("auto", "mse", "sse", "cross_entropy"),
    ("train", "device"): ("auto", "cpu", "cuda"),
}

# the data sets read from a folder on disk (`data.root`): the window offers a folder field for them
FOLDER_DATASETS = ("mnist", "fashion-mnist", "cifar10", "imagefolder")

RANGES = {
    ("model", "depth"): (1, 200),
    ("model", "width"): (1, 4096),
    ("model", "dropout"): (0.0, 0.9),
    ("train", "lr"): (0.0, 1e6),
    ("train", "batch_size"): (0, 1 << 20),
    ("train", "steps"): (0, 1 << 40),
    ("train", "eval_every"): (1, 1 << 30),
    ("train", "hist_every"): (1, 1 << 30),
    ("train", "update_every"): (1, 1 << 30),
    # a negative weight decay, decay rate or noise, or momentum >= 1 (no decay at all) trained on
    # without a word, or diverged
    ("train", "momentum"): (0.0, 0.999),
    ("train", "weight_decay"): (0.0, 100.0),
    ("train", "lr_decay"): (0.0, 1e6),
    ("data", "noise"): (0.0, 100.0),
    # read only when the data set is built: a spiral of one class stopped there, without file or line
    ("data", "classes"): (2, 1000),
    ("data", "n_train"): (1, 1 << 30),
    ("data", "n_test"): (1, 1 << 30),
    ("data", "resize"): (0, 4096),
}


def _line_of(text: str | None, section: str | None, key: str, run: int | None = None) -> int | None:
    """Best-effort line number of `key` (inside `[section]` when given) in TOML source text;
    `run`: only inside the run-th `[[runs]]` table and its sub-tables (with several runs, the
    first `[runs.model]` that had the key was named for any run's error)."""
    if not text:
        return None
    current = None
    runs_seen = 0
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    inline = re.compile(rf"\b{re.escape(section or '')}\s*=\s*\{{.*\b{re.escape(key)}\s*=")
    for no, line in enumerate(text.splitlines(), 1):
        header = re.match(r"^\s*\[\[?\s*([\w.-]+)\s*\]\]?", line)
        if header:
            current = header.group(1)
            runs_seen += bool(re.match(r"^\s*\[\[\s*runs\s*\]\]", line))
            continue
        if run is not None and not (runs_seen - 1 == run and (current or "").split(".")[0] == "runs"):
            continue
        if section is None or current == section or (current or "").endswith("." + section):
            if pattern.match(line):
                return no
        if section and inline.search(line):
            return no
    return None


def _where(source: str, text: str | None, section: str | None, key: str, origin: str, shown: str | None = None, run: int | None = None) -> str:
    """Where a value came from, as the user wrote it: `file:line: section.key` or `--set ...`.
    `shown` is the table's name when it is not `section` (a run's own `[runs.model]`); `run`: the
    index of the `[[runs]]` table it is in."""
    label = shown or section
    if origin == "--set":
        return f"--set {label}.{key}" if label else f"--set {key}"
    line = _line_of(text, section, key, run)
    loc = f"{source}:{line}" if line else source
    return f"{loc}: {label + '.' if label else ''}{key}"


def _coerce(value: Any, ftype: Any, section: str, key: str, where: str) -> Any:
    choices = CHOICES.get((section, key))
    t = ftype if isinstance(ftype, type) else {"int": int, "float": float, "bool": bool, "str": str}.get(str(ftype), str)
    if t is bool:
        if not isinstance(value, bool):
            hint = ""
            if (section, key) == ("model", "norm") and value in CHOICES[("model", "norm_kind")]:
                hint = f" (it switches the norm on or off; model.norm_kind = {value!r} chooses which)"
            raise ConfigError(f"{where} = {value!r}: expected true or false{hint}")
    elif t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: expected an integer")
    elif t is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} = {value!r}: expected a number")
        value = float(value)
    elif t is str and not isinstance(value, str):
        raise ConfigError(f"{where} = {value!r}: expected a string")
    if choices and value not in choices and not (key == "kind"):
        raise ConfigError(f"{where} = {value!r}: accepted values are {', '.join(choices)}")
    lo_hi = RANGES.get((section, key))
    if lo_hi and not (lo_hi[0] <= value <= lo_hi[1]):
        raise ConfigError(f"{where} = {value!r}: accepted range is {lo_hi[0]} to {lo_hi[1]}")
    return value


def _build_section(
    section: str, values: dict, base: Any, source: str, text: str | None, origin: str, shown: str | None = None, run: int | None = None
) -> Any:
    cls = SECTIONS[section]
    known = {f.name: f for f in fields(cls)}
    out = {}
    for key, value in values.items():
        where = _where(source, text, section, key, origin, shown, run)
        if key not in known:
            raise ConfigError(f"{where}: unknown key; accepted keys are {', '.join(known)}")
        out[key] = _coerce(value, known[key].type, section, key, where)
    return replace(base, **out) if base is not None else cls(**out)


def _from_dict(data: dict, source: str, text: str | None, origin: str = "file") -> ExperimentConfig:
    allowed = {"name", "description", "note", "model", "data", "train", "runs"}
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{_where(source, text, None, key, origin)}: unknown key; accepted keys are {', '.join(sorted(allowed))}")
    tables = {}
    for section in SECTIONS:
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{_where(source, text, None, section, origin)}: expected a table")
        tables[section] = _build_section(section, raw, SECTIONS[section](), source, text, origin)
    runs_raw = data.get("runs") or [{"name": "main"}]
    if not isinstance(runs_raw, list) or not all(isinstance(r, dict) for r in runs_raw):
        raise ConfigError(f"{_where(source, text, None, 'runs', origin)}: expected [[runs]] tables")
    if not 1 <= len(runs_raw) <= 6:
        raise ConfigError(f"{_where(source, text, None, 'runs', origin)}: an experiment has 1 to 6 runs, got {len(runs_raw)}")
    runs = []
    seen = set()
    for index, raw in enumerate(runs_raw):
        name = raw.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name or ""):
            raise ConfigError(f"{_where(source, text, 'runs', 'name', origin, run=index)} = {name!r}: each run needs a name of letters, digits, '-', '_' or '.'")
        if name in seen:
            raise ConfigError(f"{_where(source, text, 'runs', 'name', origin, run=index)} = {name!r}: run names must be unique")
        seen.add(name)
        parts = {}
        for section in SECTIONS:
            # a run's own table is named as written: [runs.model] in a file, NAME.model in --set
            shown = f"{name}.{section}" if origin == "--set" else f"runs.{section}"
            parts[section] = _build_section(section, raw.get(section, {}), tables[section], source, text, origin, shown, index)
        for key in raw:
            if key not in ("name", *SECTIONS):
                raise ConfigError(f"{_where(source, text, 'runs', key, origin, run=index)}: unknown key in a run; accepted keys are name, model, data, train")
        runs.append(RunConfig(name=name, **parts))
    return ExperimentConfig(
        name=str(data.get("name", Path(source).stem if source else "experiment")),
        description=str(data.get("description", "")),
        note=str(data.get("note", "")),
        runs=tuple(runs),
        source=source,
        **tables,
    )


def _to_dict(cfg: ExperimentConfig) -> dict:
    shared = {s: dataclasses.asdict(getattr(cfg, s)) for s in SECTIONS}
    runs = []
    for r in cfg.runs:
        entry: dict[str, Any] = {"name": r.name}
        for s in SECTIONS:
            diff = {k: v for k, v in dataclasses.asdict(getattr(r, s)).items() if shared[s][k] != v}
            if diff:
                entry[s] = diff
        runs.append(entry)
    return {"name": cfg.name, "description": cfg.description, "note": cfg.note, **shared, "runs": runs}


def to_dict(cfg: ExperimentConfig) -> dict:
    """Plain-data form (for the run file's metadata); `from_dict` reverses it."""
    return _to_dict(cfg)


def from_dict(data: dict, source: str = "<run file>") -> ExperimentConfig:
    return _from_dict(data, source=source, text=None)


def loads(text: str, source: str = "<string>") -> ExperimentConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return _from_dict(data, source=source, text=text)


def load(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return loads(text, source=str(path))


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name: str) -> ExperimentConfig:
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; accepted values are {', '.join(preset_names())}")
    return load(path)


# fields a session may change without changing what its preset shows: where, how long, how often
# it measures, which folder, how many examples
_INCIDENTAL = {
    ("train", "steps"), ("train", "seed"), ("train", "device"),
    ("train", "eval_every"), ("train", "hist_every"), ("train", "update_every"),
    ("data", "root"), ("data", "download"), ("data", "n_train"), ("data", "n_test"),
}


def changed_from_preset(cfg: ExperimentConfig) -> list[str]:
    """`key = value` for each field of `cfg` that differs from the preset it was made from (with
    `--set`, `--model`), the run's name in front where not every run has the change: a preset's
    lecture note describes the preset, and a lecturer who swapped its model or data should read
    that it no longer does. [] for a config file of one's own, or an unchanged preset."""
    try:
        preset = load_preset(cfg.name)
    except ConfigError:
        return []
    if preset.source != cfg.source or [r.name for r in preset.runs] != [r.name for r in cfg.runs]:
        return []
    per_run: dict[tuple[str, str, str], list[str]] = {}  # (section, key, value) -> runs that have it
    for was, now in zip(preset.runs, cfg.runs, strict=True):
        for section in SECTIONS:
            old, new = dataclasses.asdict(getattr(was, section)), dataclasses.asdict(getattr(now, section))
            for key, value in new.items():
                if value != old[key] and (section, key) not in _INCIDENTAL:
                    per_run.setdefault((section, key, _toml_value(value)), []).append(now.name)
    everyone = len(cfg.runs)
    return [
        f"{section}.{key} = {value}" if len(runs) == everyone else ", ".join(f"{r}.{section}.{key} = {value}" for r in runs)
        for (section, key, value), runs in per_run.items()
    ]


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string: what `--set` takes back
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; values are TOML literals, bare words are strings."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item}: expected key=value, e.g. --set train.lr=0.1")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key.strip()] = value
    return out

