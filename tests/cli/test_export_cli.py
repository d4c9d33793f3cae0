"""`gradviz export` end to end in a subprocess without a display: files, exit codes, one-line errors."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from gradviz.core.runfile import open_run

ROOT = Path(__file__).resolve().parents[2]
STEPS = 120
VIEWS = ["depth", "heatmap", "loss", "histograms", "activations", "layers"]


def _bench():
    spec = importlib.util.spec_from_file_location("gradviz_bench_open_export", ROOT / "bench" / "open_export.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def run_file(tmp_path_factory) -> Path:
    return _bench().write_synthetic_run(tmp_path_factory.mktemp("run") / "synthetic.gradviz", STEPS)


def gradviz(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADVIZ_HOME=str(home))
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):  # headless: the command must cope
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "gradviz", *args], capture_output=True, text=True, env=env, timeout=120)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_export_everything(run_file, tmp_path):
    out = tmp_path / "pack"
    r = gradviz("export", str(run_file), "--out", str(out), home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == ""  # nothing from Qt or the views on the terminal
    names = {p.name for p in out.iterdir()}
    rec = open_run(run_file)
    layers = rec.layers(rec.runs[0])
    # the layer table does not fit one slide: it comes as pages layers-1, layers-2, ...
    pages = len([n for n in names if re.fullmatch(r"layers-\d+\.png", n)])
    assert pages >= 2 and len(layers) > 16
    stems = [v for v in VIEWS if v != "layers"] + [f"layers-{k + 1}" for k in range(pages)]
    assert names == {f"{s}.{f}" for s in stems for f in ("png", "svg", "pdf")} | {f"{v}.csv" for v in VIEWS} | {"index.html"}
    for s in stems:
        assert png_size(out / f"{s}.png") == (1920, 1080)  # 960x540 at the default scale 2
        assert (out / f"{s}.pdf").read_bytes()[:5] == b"%PDF-"
        assert b"<text" in (out / f"{s}.svg").read_bytes()
    # every layer's name on exactly one page, in order; the CSV holds them all
    drawn = []
    for k in range(pages):
        svg = (out / f"layers-{k + 1}.svg").read_text()
        drawn += [n for n in layers if f">{n}<" in svg]
    assert drawn == layers
    assert [row.split(",")[1] for row in (out / "layers.csv").read_text().splitlines()[1:]] == layers
    lines = (out / "loss.csv").read_text().splitlines()
    assert lines[0].startswith("step,") and len(lines) == 1 + STEPS
    assert f"exported {len(names)} files" in r.stdout


def test_export_some_views_some_formats_at_a_step(run_file, tmp_path):
    out = tmp_path / "some"
    r = gradviz("export", str(run_file), "--out", str(out), "--format", "png,csv", "--views", "loss,depth",
                "--step", "50", "--scale", "1", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} == {"loss.png", "loss.csv", "depth.png", "depth.csv", "index.html"}
    assert png_size(out / "depth.png") == (960, 540)
    lines = (out / "loss.csv").read_text().splitlines()
    assert len(lines) == 1 + 51 and lines[-1].startswith("50,")
    assert "@ step 50" in (out / "depth.csv").read_text().splitlines()[0]
    html = (out / "index.html").read_text()
    assert html.index("loss.png") < html.index("depth.png")  # in the order asked for


def _random(p: Path) -> Path:
    p.write_bytes(os.urandom(4096))
    return p


def _other_schema(p: Path) -> Path:
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE t(x)")
    db.commit()
    db.close()
    return p


def _too_new(src: Path, p: Path) -> Path:
    shutil.copy(src, p)
    db = sqlite3.connect(p)
    db.execute("PRAGMA user_version=42")
    db.commit()
    db.close()
    return p


@pytest.mark.parametrize(
    "case",
    ["missing", "random", "other-schema", "too-new", "truncated", "format", "view", "step", "scale", "out-is-file"],
)
def test_bad_input_is_one_line_and_exit_2(run_file, tmp_path, case):
    out = tmp_path / "out"
    path = run_file
    extra: list[str] = []
    expect = ""
    if case == "missing":
        path, expect = tmp_path / "nope.gradviz", "no such file"
    elif case == "random":
        path, expect = _random(tmp_path / "r.gradviz"), "not a gradviz run file"
    elif case == "other-schema":
        path, expect = _other_schema(tmp_path / "o.gradviz"), "not a gradviz run file"
    elif case == "too-new":
        path, expect = _too_new(run_file, tmp_path / "n.gradviz"), "newer gradviz"
    elif case == "truncated":
        path = tmp_path / "t.gradviz"
        path.write_bytes(run_file.read_bytes()[:60])
        expect = "truncated"
    elif case == "format":
        extra, expect = ["--format", "png,gif"], "unknown format 'gif'"
    elif case == "view":
        extra, expect = ["--views", "depth,pie"], "unknown view 'pie'"
    elif case == "step":
        extra, expect = ["--step", str(STEPS + 5)], "outside the recorded steps"
    elif case == "scale":
        extra, expect = ["--scale", "9"], "out of range"
    elif case == "out-is-file":
        out = tmp_path / "file"
        out.write_text("x")
        expect = "not a folder"
    r = gradviz("export", str(path), "--out", str(out), *extra, home=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradviz: "), r.stderr
    assert expect in lines[0] and "Traceback" not in r.stderr
    assert not (out / "index.html").exists()
