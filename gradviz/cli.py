"""Command line: `gradviz` (GUI demo), `run`, `presets`, `summary`, `export`, `open`.

Every user error is one line on stderr and exit code 2; a failed experiment exits 1.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
import time
from pathlib import Path

from . import __version__
from .config import ConfigError, ExperimentConfig, load, load_preset, parse_set, preset_names


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        # `main` prefixes "gradviz: "; name only the subcommand ("gradviz: gradviz: ..." before)
        where = self.prog.removeprefix(self.prog.split()[0]).strip()
        raise UsageError(f"{where}: {message}" if where else message)


def _setup_logging() -> None:
    from .paths import QuietFileHandler, log_file

    path = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = QuietFileHandler(path, encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("gradviz")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def machine_overrides(args) -> dict:
    """The flags about this machine rather than the experiment (where the data is, whether to
    download it, which device): the GUI keeps them when the lecturer picks another preset."""
    out: dict = {}
    if getattr(args, "device", None):
        out["train.device"] = args.device
    if getattr(args, "data_root", None):
        out["data.root"] = args.data_root
    if getattr(args, "download", False):
        out["data.download"] = True
    return out


def build_config(args) -> ExperimentConfig:
    """Preset (or --config file) plus flags, validated; raises ConfigError with one line."""
    cfg = load(args.config) if getattr(args, "config", None) else load_preset(args.preset or "demo")
    overrides = parse_set(getattr(args, "set", None) or [])
    if getattr(args, "seed", None) is not None:
        overrides["train.seed"] = args.seed
    if getattr(args, "steps", None) is not None:
        if args.steps < 0:  # named as typed: the config check would say "--set train.steps"
            raise ConfigError(f"--steps {args.steps}: accepted values are 0 or more")
        overrides["train.steps"] = args.steps
    overrides.update(machine_overrides(args))
    if getattr(args, "model", None):
        overrides["model.kind"] = args.model
    return cfg.with_overrides(overrides) if overrides else cfg


def _add_config_flags(p: argparse.ArgumentParser, steps: bool = True, gui: bool = False) -> None:
    starts = "the GUI starts with " if gui else ""
    p.add_argument("--preset", help=f"preset {starts}(one of: {', '.join(preset_names())}; default demo)")
    p.add_argument("--config", help=f"a TOML experiment file {starts}(instead of a preset)")
    if steps:
        p.add_argument("--steps", type=int, help="how many steps to train")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train")
    p.add_argument("--seed", type=int, help="seed for weights and batches")
    p.add_argument("--data-root", dest="data_root", help="folder holding a torchvision data set or image folder")
    p.add_argument("--download", action="store_true", help="let torchvision download a missing data set")
    p.add_argument("--model", help="model kind, e.g. mlp, resnet18, torchvision:resnet34")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. train.lr=0.1")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradviz", description="Watch gradients flow through deep networks.")
    parser.add_argument("--version", action="version", version=f"gradviz {__version__}")
    _add_config_flags(parser, steps=False, gui=True)  # the GUI takes the same flags as `run`
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="train a preset headless and record it")
    _add_config_flags(run)
    run.add_argument("--out", help="run file to write (default: under the user data folder)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("presets", help="list the presets")

    summ = sub.add_parser("summary", help="layer table: type, output shape, parameters, FLOPs")
    _add_config_flags(summ, steps=False)

    exp = sub.add_parser("export", help="export a recorded run's charts (no display needed)")
    exp.add_argument("run_file")
    exp.add_argument("--out", required=True, help="folder to write into")
    exp.add_argument("--format", default="png,svg,pdf,csv", help="comma list of png, svg, pdf, csv")
    exp.add_argument("--views", default="", help="comma list of views (default: all)")
    exp.add_argument("--step", type=int, help="show the charts as they were at this step")
    exp.add_argument("--scale", type=float, default=2.0, help="PNG scale 1-4")

    op = sub.add_parser("open", help="open a recorded run in the GUI")
    op.add_argument("run_file")
    op.add_argument("--follow", action="store_true", help="keep reading a file that is still being written")
    return parser


def cmd_presets() -> int:
    names = preset_names()
    width = max(len(n) for n in names)
    for name in names:
        try:
            desc = load_preset(name).description
        except ConfigError as exc:
            desc = f"(broken: {exc})"
        print(f"{name:<{width}}  {desc}")
    return 0


def cmd_summary(args) -> int:
    from .core.data import data_shape
    from .core.footprint import meta_model
    from .core.models import build_model
    from .core.summary import format_table, summarize
    from .core.training import model_input_message

    cfg = build_config(args)
    # one table per distinct model: the depth preset's shallow and deep stacks each get theirs (only
    # the first run's was shown), a twin that differs only by its skip paths shares one
    tables: dict[tuple, list[str]] = {}  # (input shape, outputs, rows) -> the runs with that model
    for rc in cfg.runs:
        shape, outputs = data_shape(rc.data, seed=rc.train.seed)  # no download: only the shapes matter
        # shapes only, on torch's meta device: a model far larger than the memory still gets its table;
        # where that build fails, the real one says what is wrong (or the model needs real tensors)
        model, device = meta_model(rc.model, shape, outputs, seed=rc.train.seed), "meta"
        if model is None:
            model, device = build_model(rc.model, shape, outputs, seed=rc.train.seed), "cpu"
        try:
            try:
                rows = summarize(model, shape, device=device)
            except NotImplementedError:  # an op without a meta kernel: the real model, then
                if device == "cpu":
                    raise
                model = build_model(rc.model, shape, outputs, seed=rc.train.seed)
                rows = summarize(model, shape)
        except Exception as exc:  # noqa: BLE001 - a model that cannot take the data: one line
            raise ValueError(model_input_message(rc.name, rc.model.kind, shape, exc)) from exc
        tables.setdefault((shape, outputs, tuple(rows)), []).append(rc.name)
    for k, ((shape, outputs, rows), names) in enumerate(tables.items()):
        who = f"run {names[0]!r}" if len(names) == 1 else "runs " + ", ".join(repr(n) for n in names)
        print(("\n" if k else "") + f"{cfg.name}: {who}, input {shape}, {outputs} outputs")
        print(format_table(rows))
    return 0


def _progress_line(exp, total: int, started: float, first_step: int) -> str:
    done = exp.step_index - first_step
    rate = done / max(time.perf_counter() - started, 1e-9)
    parts = [f"step {exp.step_index}/{first_step + total}", f"{rate:6.1f} steps/s"]
    for name in exp.run_names():
        _, loss = exp.recording.metric(name, "loss")
        parts.append(f"{name} {loss[-1]:.4g}" if len(loss) else f"{name} -")
    return "  ".join(parts)


def gradient_ratio(recording, run: str, last: int = 50) -> float:
    """Median over the last `last` steps of grad_norm(first layer) / grad_norm(last layer)."""
    import numpy as np

    _, g = recording.metric(run, "grad_norm")
    if not len(g):
        return float("nan")
    g = np.asarray(g[-last:], dtype=np.float64)
    cols = [i for i in range(g.shape[1]) if np.isfinite(g[:, i]).any()]
    if len(cols) < 2:
        return float("nan")
    with np.errstate(all="ignore"):
        return float(np.nanmedian(g[:, cols[0]] / g[:, cols[-1]]))


def cmd_run(args) -> int:
    from .core.experiment import Experiment, one_line
    from .core.recording import Recording
    from .core.runfile import RunFileWriter
    from .paths import new_run_path, runs_folder_note

    cfg = build_config(args)
    steps = cfg.train.steps
    out = Path(args.out) if args.out else new_run_path(cfg.name)
    note = "" if args.out else runs_folder_note()  # the recordings kept before this one
    rec = Recording()
    tty = sys.stderr.isatty()
    said: list[float] = []  # when the last progress line went out

    def starting(text: str) -> None:  # a slow start (an image folder being read); a log gets a line every 2 s
        now = time.perf_counter()
        if tty:
            print(f"\r{text}", end="", file=sys.stderr, flush=True)
        elif not said or now - said[-1] >= 2.0:
            print(text, file=sys.stderr, flush=True)
        else:
            return
        said.append(now)

    exp = Experiment(cfg, rec, progress=None if args.quiet else starting)
    if said and tty:
        print(file=sys.stderr)
    lost: list[str] = []

    def on_write_error(msg: str) -> None:  # the file is what `run` is for: stop, keep what was written
        lost.append(f"{msg}; training stopped at step {exp.step_index}, the file keeps what was written before")
        exp.stopped = True

    try:  # in the file, so that opening it never builds the models again (a 200 x 4096 stack, say)
        from .core.table import store_layer_table

        store_layer_table(rec, exp.runs)
    except Exception as exc:  # noqa: BLE001 - the table is a nicety, the run is not
        print(f"note: no layer table in the file ({one_line(exc)})", file=sys.stderr)
    replaced = out.is_file()  # --out names a file kept from before: said, it is gone once the writer opens
    writer = RunFileWriter(out, rec, on_error=on_write_error)
    started = last_print = time.perf_counter()
    first = exp.step_index

    def on_step(e, busy: str = "") -> None:
        nonlocal last_print
        now = time.perf_counter()
        if now - last_print >= (0.25 if tty else 2.0):
            last_print = now
            line = _progress_line(e, steps, started, first) + (f"  ({busy})" if busy else "")
            print(("\r\033[K" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    if not args.quiet:  # a long evaluation between two steps says how far it has got
        exp.on_busy = lambda text: on_step(exp, text) if text else None

    print(f"gradviz run {cfg.name}: {len(cfg.runs)} runs on {exp.device}, {steps} steps, recording to {out}", file=sys.stderr)
    if note:
        print(f"note: {note}", file=sys.stderr)
    if replaced:
        print(f"note: {out} held an earlier recording; this run replaces it (give another --out to keep both)", file=sys.stderr)
    try:
        exp.run(steps=steps, on_step=None if args.quiet else on_step, on_idle=writer.flush_if_due)
    except KeyboardInterrupt:
        print("\ninterrupted; the run file keeps everything so far", file=sys.stderr)
    finally:
        writer.close()
    if not args.quiet:
        print(("\r\033[K" if tty else "") + _progress_line(exp, steps, started, first), file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(f"{exp.step_index - first} steps in {elapsed:.1f} s ({(exp.step_index - first) / max(elapsed, 1e-9):.1f} steps/s)")
    width = max([12, *(len(n) for n in exp.run_names())])  # the columns line up under any run names
    for name in exp.run_names():
        _, loss = rec.metric(name, "loss")
        final = f"{loss[-1]:.6g}" if len(loss) else "-"
        ratio = gradient_ratio(rec, name)
        shown = f"{ratio:.3g}" if math.isfinite(ratio) else "-"  # no step, or under two layers with gradients
        print(f"  {name:<{width}} final loss {final:<12} first/last layer grad_norm {shown}")
    for msg in exp.messages:
        print(f"  note: {msg}")
    if lost:
        print(f"gradviz: {lost[0]}", file=sys.stderr)
        return 1
    print(f"recorded to {out}")
    if exp.error:
        print(f"gradviz: {exp.error}", file=sys.stderr)
        return 1
    return 0


def _parse(argv: list[str]) -> argparse.Namespace:
    """argparse, with one fix: an option the window does not take (`gradviz --steps 300`) made
    argparse read its value as a command ("invalid choice: '300'"); name the option instead."""
    try:
        return make_parser().parse_args(argv)
    except UsageError as exc:
        bad = re.match(r"argument command: invalid choice: '(.*?)'", str(exc))
        if bad and bad.group(1) in argv:
            at = argv.index(bad.group(1))
            if at > 0 and argv[at - 1].startswith("--"):
                raise UsageError(
                    f"the window does not take {argv[at - 1]}; 'gradviz run {argv[at - 1]} ...' trains headless "
                    "('gradviz --help' lists the window's options)"
                ) from None
        raise


def _drop_stdout() -> None:
    """Point stdout at the null device, so nothing more (the interpreter's last flush included)
    is written to a pipe whose reader has gone."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (an embedding host): nothing to do
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _setup_logging()
    try:
        args = _parse(argv)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "presets":
            return cmd_presets()
        if args.command == "summary":
            return cmd_summary(args)
        if args.command == "export":
            from .export_cli import cmd_export

            return cmd_export(args)
        from .gui.launch import launch  # GUI: no command, or `open`

        if args.command is None:
            args.config_obj = build_config(args)  # config errors: one line, before any window
            args.carried = machine_overrides(args)
        return launch(args)
    except (UsageError, ConfigError) as exc:
        print(f"gradviz: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`gradviz summary ... | head`): stop quietly, as `ls | head` does;
        # it printed "gradviz: [Errno 32] Broken pipe", and Python's flush at exit a traceback
        _drop_stdout()
        return 1
    except Exception as exc:  # noqa: BLE001 - user-facing errors from data, models, files
        from .core.data import DataError
        from .core.experiment import out_of_memory_text, user_text
        from .core.runfile import RunFileError

        memory = out_of_memory_text(exc)
        if memory or isinstance(exc, DataError | RunFileError | ValueError | KeyError | OSError):
            print(f"gradviz: {memory or user_text(exc) or type(exc).__name__}", file=sys.stderr)
            logging.getLogger("gradviz").exception("command failed")
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
