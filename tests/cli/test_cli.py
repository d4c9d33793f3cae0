"""`gradviz run / presets / summary` end to end in a subprocess, from a clean environment."""

import os
import subprocess
import sys

import numpy as np

import gradviz


def gv(*args, tmp_path, timeout=300):
    env = dict(os.environ, GRADVIZ_HOME=str(tmp_path / "home"))
    return subprocess.run([sys.executable, "-m", "gradviz", *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_run_records_a_file_and_prints_a_summary(tmp_path):
    out = tmp_path / "demo.gradviz"
    res = gv("run", "--preset", "demo", "--steps", "60", "--set", "model.depth=8", "--out", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "step 60/60" in res.stderr and "steps/s" in res.stderr
    run = gradviz.open_run(out)
    assert run.runs == ["plain", "residual"]
    for name in run.runs:
        steps, loss = run.metric(name, "loss")
        assert list(steps) == list(range(60))
        line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith(name))
        assert f"final loss {loss[-1]:.6g}" in line
        _, g = run.metric(name, "grad_norm")
        ratio = float(np.median(g[-50:, 0] / g[-50:, -1]))
        assert f"grad_norm {ratio:.3g}" in line


def test_the_summary_columns_line_up_under_long_run_names(tmp_path):
    """The depth preset's 'shallow-plain' and 'deep-residual' ran into "final loss" (names were
    padded to 12), so the summary's columns went ragged."""
    res = gv("run", "--preset", "depth", "--steps", "2", "--quiet", "--set", "model.width=8", "--out", str(tmp_path / "d.gradviz"), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if " final loss " in ln]
    assert [ln.split()[0] for ln in lines] == ["shallow-plain", "deep-plain", "deep-residual"], res.stdout
    assert len({ln.index(" final loss ") for ln in lines}) == 1, res.stdout
    assert len({ln.index(" first/last ") for ln in lines}) == 1, res.stdout
    assert all(ln.index(" final loss ") > len("  deep-residual") - 1 for ln in lines)


def test_a_run_of_no_steps_says_so_instead_of_nan(tmp_path):
    """`--steps 0` printed "first/last layer grad_norm nan" for a ratio that was never measured."""
    out = tmp_path / "none.gradviz"
    res = gv("run", "--preset", "rgb", "--steps", "0", "--quiet", "--out", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = [ln.split() for ln in res.stdout.splitlines() if ln.strip().startswith(("plain", "residual"))]
    assert len(lines) == 2 and all(ln[-2] == "grad_norm" for ln in lines)
    assert [ln[3] for ln in lines] == ["-", "-"] and [ln[-1] for ln in lines] == ["-", "-"], res.stdout
    assert "nan" not in res.stdout and gradviz.open_run(out).runs == ["plain", "residual"]


def test_a_run_over_an_earlier_recording_says_it_replaces_it(tmp_path):
    """`gradviz run --out FILE` over a kept recording replaced it without a word."""
    out = tmp_path / "lecture.gradviz"
    first = gv("run", "--preset", "rgb", "--steps", "3", "--quiet", "--out", str(out), tmp_path=tmp_path)
    assert first.returncode == 0 and "replaces" not in first.stderr, first.stderr
    again = gv("run", "--preset", "rgb", "--steps", "2", "--quiet", "--out", str(out), tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"note: {out} held an earlier recording; this run replaces it (give another --out to keep both)" in again.stderr.splitlines()
    assert len(gradviz.open_run(out).metric("plain", "loss")[0]) == 2


def test_run_default_out_goes_to_the_data_folder(tmp_path):
    res = gv("run", "--preset", "rgb", "--steps", "5", "--quiet", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    files = list((tmp_path / "home" / "runs").glob("rgb-*.gradviz"))
    assert len(files) == 1 and str(files[0]) in res.stdout


def test_run_notes_a_runs_folder_grown_large(tmp_path):
    """Recording into the runs folder, `run` says when the recordings there pass 5 GB (about eight
    hours of sessions): gradviz never deletes them, and a laptop filled up without a word."""
    runs = tmp_path / "home" / "runs"
    runs.mkdir(parents=True)
    for k in range(3):
        with open(runs / f"old-{k}.gradviz", "wb") as fh:
            fh.truncate(2 * 10**9)  # sparse: the size a file manager shows, no disk taken
    res = gv("run", "--preset", "demo", "--steps", "2", "--set", "model.depth=2", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"note: the runs folder holds 6.0 GB in 3 recordings; gradviz never deletes them: clear old ones in {runs}\n" in res.stderr
    res = gv("run", "--preset", "demo", "--steps", "2", "--set", "model.depth=2", "--out", str(tmp_path / "x.gradviz"), tmp_path=tmp_path)
    assert res.returncode == 0 and "runs folder" not in res.stderr  # recording elsewhere: not its business


def test_presets_lists_names_with_one_line_each(tmp_path):
    res = gv("presets", tmp_path=tmp_path)
    assert res.returncode == 0
    lines = res.stdout.strip().splitlines()
    names = [ln.split()[0] for ln in lines]
    assert "demo" in names and "rgb" in names
    assert all(len(ln.split(None, 1)) == 2 for ln in lines)


def test_summary_of_an_image_preset_needs_no_data_folder(tmp_path):
    """Seed 004's table (ResNet-18 on 32x32 MNIST) asked for MNIST's folder: the shapes follow
    from the data set's format, so `gradviz summary` prints it with no data at all."""
    from gradviz.config import load_preset
    from gradviz.core.models import build_model

    res = gv("summary", "--preset", "resnet18-mnist", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "resnet18-mnist: run 'plain', input (1, 32, 32), 10 outputs"
    rc = load_preset("resnet18-mnist").runs[0]
    model = build_model(rc.model, (1, 32, 32), 10, seed=0)
    total = next(ln for ln in lines if ln.startswith("total"))
    assert f"{sum(p.numel() for p in model.parameters()):,}" in total
    conv1 = next(ln for ln in lines if ln.startswith("conv1 "))
    # a 7x7 stride-2 conv of 1 -> 64 channels on 32x32: 16x16 outputs, no bias
    assert "(64, 16, 16)" in conv1 and f"{2 * 7 * 7 * 64 * 16 * 16:,}" in conv1


def test_summary_table(tmp_path):
    res = gv("summary", "--preset", "demo", "--set", "model.depth=3", "--set", "model.width=32", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "blocks.0.linear" in res.stdout and "Linear" in res.stdout
    # 2->32, 3x(32->32 + BN 32), 32->4
    params = (2 * 32 + 32) + 3 * (32 * 32 + 32 + 2 * 32) + (32 * 4 + 4)
    assert f"{params:,}" in res.stdout or str(params) in res.stdout
    # the demo's norms are off: their rows read "-" and the table says what that means
    norm_rows = [line for line in res.stdout.splitlines() if line.startswith("blocks.0.norm")]
    assert norm_rows and norm_rows[0].split()[2] == "-"
    assert res.stdout.rstrip().splitlines()[-1].startswith("- : not in the forward pass")
    on = gv("summary", "--preset", "demo", "--set", "model.depth=3", "--set", "model.norm=true", tmp_path=tmp_path)
    assert on.returncode == 0, on.stderr
    assert "not in the forward pass" not in on.stdout


def test_summary_has_a_table_per_distinct_model(tmp_path):
    """The depth preset compares a 4-block stack with two 30-block ones: `summary` showed the first
    run's table alone. Each distinct model gets its table, headed by the runs that share it; the
    parameter totals are the built models'."""
    from gradviz.config import load_preset
    from gradviz.core.models import build_model

    res = gv("summary", "--preset", "depth", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    heads = [ln for ln in lines if ln.startswith("depth: ")]
    assert heads == ["depth: run 'shallow-plain', input (2,), 4 outputs", "depth: runs 'deep-plain', 'deep-residual', input (2,), 4 outputs"]
    totals = [ln for ln in lines if ln.startswith("total")]
    runs = {rc.name: rc for rc in load_preset("depth").runs}
    for total, name in zip(totals, ("shallow-plain", "deep-plain"), strict=True):
        model = build_model(runs[name].model, (2,), 4, seed=0)
        assert f"{sum(p.numel() for p in model.parameters()):,}" in total, (name, total)


def test_a_run_file_that_stops_taking_writes_ends_the_run_in_one_line(tmp_path, monkeypatch, capsys):
    """The disk fills up mid-run: `gradviz run` printed "--- Logging error ---" tracebacks (its log
    was on the same disk), blamed run 'residual' for the file, and said "recorded to" a file that
    was not. Now: one line naming the file, why, and the step; exit code 1; the file keeps the
    steps written before. (A read-only database stands in for the full disk.)"""
    from gradviz import cli
    from gradviz.core.runfile import RunFileWriter

    flush = RunFileWriter.flush

    def flush_then_fill_up(self):
        flush(self)
        if not self.closed and self._db.execute("SELECT count(*) FROM chunks WHERE name = 'loss'").fetchone()[0] >= 10:
            self._db.execute("PRAGMA query_only=ON")  # after a few steps of each run

    monkeypatch.setattr(RunFileWriter, "flush", flush_then_fill_up)
    monkeypatch.setattr("gradviz.core.runfile.FLUSH_SECONDS", 0.0)  # a commit at every step
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    out = tmp_path / "r.gradviz"
    rc = cli.main(["run", "--preset", "demo", "--steps", "40", "--set", "model.depth=3", "--out", str(out), "--quiet"])
    cap = capsys.readouterr()
    assert rc == 1
    assert "Logging error" not in cap.err and "Traceback" not in cap.err and "recorded to" not in cap.out
    lines = [ln for ln in cap.err.splitlines() if ln.startswith("gradviz: ")]
    assert len(lines) == 1 and f"{out}: cannot write run file (" in lines[0] and "training stopped at step" in lines[0], cap.err
    kept = gradviz.open_run(out).metric("plain", "loss")[0]
    assert 0 < len(kept) < 40


def test_a_switch_the_model_lacks_is_noted_when_it_sets_runs_apart(tmp_path, monkeypatch, capsys):
    """Twins told apart by a switch their model does not have are the same network: a torchvision
    MobileNet under the ResNet-18 preset kept its skip connections in the "plain" twin too, and
    nothing said so. LeNet has no skip path: two of its runs set apart by model.residual get a note
    in the summary (and in the window's status line, which shows the experiment's messages); runs
    that agree on a switch their model lacks get none."""
    from gradviz import cli

    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    argv = ["run", "--preset", "batchnorm-init", "--steps", "2", "--quiet", "--out", str(tmp_path / "b.gradviz")]
    assert cli.main([*argv, "--set", "lenet-normal.model.residual=true"]) == 0
    notes = [ln.strip() for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("note:")]
    assert notes == [
        "note: model.residual changes nothing in lenet (no skip path gradviz can switch): "
        "runs lenet-default, lenet-normal and lenet-bn-normal have the same layers either way"
    ]
    assert cli.main([*argv, "--set", "model.residual=true", "--out", str(tmp_path / "c.gradviz")]) == 0
    assert "note:" not in capsys.readouterr().out


def test_summary_of_a_model_larger_than_the_memory_is_told_from_shapes_alone(tmp_path):
    """3.4 G parameters (13 GB a twin): `summary` built both twins for real and the out-of-memory
    killer ended it (exit 137 here, after 24 GB). Built on torch's meta device, nothing is allocated."""
    import resource

    w, d = 4096, 200
    res = gv("summary", "--preset", "demo", "--set", f"model.width={w}", "--set", f"model.depth={d}", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    # input Linear 2->w, per block a w x w Linear and a BatchNorm (weight, bias), head w->4
    params = (2 * w + w) + d * (w * w + w + 2 * w) + (4 * w + 4)
    total = next(ln for ln in res.stdout.splitlines() if ln.startswith("total"))
    assert f"{params:,}" in total.split() and "total (402 layers)" in total
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 3 * 1024 * 1024  # KiB: under 3 GiB


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nactivation = "swish"\n')
    huge = ("--preset", "demo", "--set", "model.kind=conv", "--set", "data.name=shapes", "--set", "model.width=4096")
    cases = [
        (("run", "--config", str(bad)), f"{bad}:2: model.activation"),
        (("run", "--preset", "nope"), "unknown preset 'nope'"),
        (("run", "--set", "model.depth=999"), "--set model.depth"),
        (("run", "--steps", "many"), "invalid int value"),
        (("run", "--steps", "-3"), "--steps -3: accepted values are 0 or more"),
        (("run", "--preset", "demo", "--set", "data.name=mnist", "--steps", "1"), "--data-root"),
        (("bogus",), "invalid choice"),
        # an option only `run` takes: argparse read "3" as a command ("invalid choice: '3'")
        (("--preset", "demo", "--steps", "3"), "the window does not take --steps"),
        (("summary", "--preset", "rgb", "--out", "x"), "unrecognized arguments: --out x"),
        (("run", "--preset", "rgb", "--set", "train.loss=cross_entropy", "--steps", "1"), "needs class labels"),
        # BatchNorm on batches of one raised at step 0 with torch's "Expected more than 1 value per channel"
        (("run", "--set", "train.batch_size=1", "--set", "model.norm=true", "--steps", "1"), "BatchNorm needs at least 2 examples per batch"),
        # 148 G parameters: Linux's out-of-memory killer ended the process without a word
        (("run", *huge, "--steps", "1"), "training needs at least"),
    ]
    for args, words in cases:
        res = gv(*args, tmp_path=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        err = res.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (args, err)
        assert words in err, (args, err)
        assert err.startswith("gradviz: ") and not err.startswith("gradviz: gradviz"), (args, err)


def test_the_gui_without_a_display_says_so_in_one_line(tmp_path):
    """Over SSH or in a container Qt would abort with a screenful about platform plugins."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["GRADVIZ_HOME"] = str(tmp_path / "home")
    from gradviz.core.recording import Recording
    from gradviz.core.runfile import RunFileWriter

    run_file = tmp_path / "r.gradviz"
    rec = Recording()
    writer = RunFileWriter(run_file, rec)
    rec.add_run("a", ["l0"], ["Linear"], [])
    rec.append("a", 0, {"loss": 1.0})
    writer.close()
    for args in ((), ("open", str(run_file))):
        res = subprocess.run([sys.executable, "-m", "gradviz", *args], capture_output=True, text=True, timeout=120, env=env)
        err = res.stderr.strip()
        assert res.returncode == 2, (args, err)
        assert len(err.splitlines()) == 1 and "no display" in err and "gradviz run" in err, (args, err)
    # a file that cannot be opened anywhere says so first, not "no display"
    res = subprocess.run([sys.executable, "-m", "gradviz", "open", str(tmp_path / "missing.gradviz")], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2 and res.stderr.strip() == f"gradviz: {tmp_path / 'missing.gradviz'}: no such file", res.stderr


def test_display_check_follows_the_platform_settings():
    from gradviz.gui.launch import no_display_reason

    assert no_display_reason({}, "linux") is not None
    assert no_display_reason({"QT_QPA_PLATFORM": "xcb"}, "linux") is not None
    assert no_display_reason({"DISPLAY": ":0"}, "linux") is None
    assert no_display_reason({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert no_display_reason({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert no_display_reason({}, "darwin") is None and no_display_reason({}, "win32") is None


def test_summary_falls_back_to_the_real_model_where_meta_tensors_fail(monkeypatch, capsys):
    """An op without a meta kernel raises NotImplementedError on shapes-only tensors: the table
    then comes from the real model, the same table."""
    from gradviz import cli
    from gradviz.core import summary

    assert cli.main(["summary", "--preset", "resnet18-mnist"]) == 0
    expected = capsys.readouterr().out
    real = summary.summarize
    devices = []

    def no_meta(model, shape, device="cpu"):
        devices.append(str(device))
        if str(device) == "meta":
            raise NotImplementedError("Could not run 'aten::something' with arguments from the 'Meta' backend")
        return real(model, shape, device)

    monkeypatch.setattr(summary, "summarize", no_meta)
    assert cli.main(["summary", "--preset", "resnet18-mnist"]) == 0
    assert capsys.readouterr().out == expected and devices == ["meta", "cpu", "meta", "cpu"]


def test_run_stores_the_layer_table_so_opening_the_file_builds_nothing(tmp_path):
    """The window's layer table of a `gradviz run` file was rebuilt from the file's config, models
    and all; the file now carries the table, as the window's own recordings do."""
    import gradviz
    from gradviz.config import load_preset
    from gradviz.core.probes import param_layers

    out = tmp_path / "d.gradviz"
    res = gv("run", "--preset", "demo", "--steps", "2", "--quiet", "--set", "model.depth=3", "--out", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    table = gradviz.open_run(out).meta["layer_table"]
    assert sorted(table) == ["plain", "residual"]
    from gradviz.core.models import build_model

    rc = load_preset("demo").with_overrides({"model.depth": 3}).run("plain")
    model = build_model(rc.model, (2,), 4, seed=0)
    expect = [(name or "(model)", sum(p.numel() for p in m.parameters(recurse=False))) for name, m in param_layers(model)]
    assert sorted((r[0], r[3]) for r in table["plain"]) == sorted(expect)


def test_a_reader_that_stops_early_gets_no_error(tmp_path):
    """`gradviz summary ... | head` printed "gradviz: [Errno 32] Broken pipe": a reader that has
    read enough and gone is no error to report. The pipe is closed before the command writes
    (importing torch takes a second), so its first line hits a closed pipe."""
    env = dict(os.environ, GRADVIZ_HOME=str(tmp_path / "home"))
    for args in (["summary", "--preset", "demo"], ["presets"]):
        p = subprocess.Popen([sys.executable, "-m", "gradviz", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 1
        assert err == "", err
    # an open pipe still gets everything
    res = gv("presets", tmp_path=tmp_path)
    assert res.returncode == 0 and res.stdout.splitlines()[1].startswith("demo")
