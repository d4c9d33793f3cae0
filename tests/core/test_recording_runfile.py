"""Recording (bounded, thread-safe views) and run file (round trip, follow, hostile files)."""

import json
import os
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest

import gradviz
from gradviz.core import runfile
from gradviz.core.recording import SERIES_BYTES, Recording
from gradviz.core.runfile import RunFileError, RunFileReader, RunFileWriter


def filled(rec: Recording, steps=50, layers=5):
    rec.set_meta({"kind": "test", "config": {"a": 1}})
    rec.add_run("plain", [f"l{i}" for i in range(layers)], ["Linear"] * layers, ["b0", "b1"])
    rec.add_run("residual", [f"l{i}" for i in range(layers)], ["Linear"] * layers, ["b0", "b1"])
    rng = np.random.default_rng(0)
    for s in range(steps):
        for r in ("plain", "residual"):
            rec.append(r, s, {"loss": 1.0 / (s + 1), "grad_norm": rng.random(layers), "act_grad_norm": rng.random(2)})
            if s % 10 == 0:
                if s == 0:
                    rec.set_edges(r, "weight", 1, np.linspace(-1, 1, 9))
                rec.append_histograms(r, s, "weight", {1: rng.integers(0, 9, 8).astype(np.float32)})
    rec.add_event(7, "plain", "toggle", "residual on")
    return rec


def test_round_trip_equals_memory(tmp_path):
    rec = Recording()
    path = tmp_path / "a.gradviz"
    w = RunFileWriter(path, rec)
    filled(rec)
    w.close()
    back = gradviz.open_run(path)
    assert back.runs == ["plain", "residual"]
    assert back.layers("plain") == [f"l{i}" for i in range(5)]
    for r in back.runs:
        for name in ("loss", "grad_norm", "act_grad_norm"):
            s0, v0 = rec.metric(r, name)
            s1, v1 = back.metric(r, name)
            np.testing.assert_array_equal(s0, s1)
            np.testing.assert_allclose(v0, v1, rtol=1e-6)
    s, e, c = back.histograms("plain", "weight", "l1")
    assert list(s) == [0, 10, 20, 30, 40] and len(e) == 9 and c.shape == (5, 8)
    np.testing.assert_array_equal(c, rec.histograms("plain", "weight", 1)[2])
    assert back.events() == [(7, "plain", "toggle", "residual on")]
    assert back.meta["config"] == {"a": 1}


def test_writer_commits_within_half_a_second_and_follow_sees_it(tmp_path, monkeypatch):
    rec = Recording()
    path = tmp_path / "f.gradviz"
    w = RunFileWriter(path, rec)
    rec.add_run("r", ["a"], ["Linear"], [])
    reader = RunFileReader(path)
    mirror = reader.load()
    clock = [0.0]
    monkeypatch.setattr(runfile.time, "monotonic", lambda: clock[0])
    w._last_commit = 0.0
    rec.append("r", 0, {"loss": 1.0})
    clock[0] = 0.2
    rec.append("r", 1, {"loss": 0.5})
    reader.poll(mirror)
    assert len(mirror.metric("r", "loss")[0]) == 0  # not due yet: still buffered
    clock[0] = 0.6
    rec.append("r", 2, {"loss": 0.25})  # 0.6 s since last commit: flushes all three
    reader.poll(mirror)
    np.testing.assert_array_equal(mirror.metric("r", "loss")[1], [1.0, 0.5, 0.25])
    w.close()


def test_a_write_that_fails_is_handed_to_the_owner_once_and_the_file_keeps_its_steps(tmp_path):
    """A full disk mid-session raised out of the recording's listener and stopped the lecture's
    training. With `on_error` the writer hands over one line, once, stops writing, and leaves the
    file as last committed; the recording in memory carries on. (A read-only database stands in
    for the full disk: sqlite refuses the write the same way.)"""
    rec = Recording()
    got: list[str] = []
    path = tmp_path / "f.gradviz"
    writer = RunFileWriter(path, rec, on_error=got.append)
    filled(rec, steps=20)
    writer.flush()
    writer._db.execute("PRAGMA query_only=ON")  # every write from here fails
    for s in range(20, 40):
        rec.append("plain", s, {"loss": 0.5, "grad_norm": np.ones(5), "act_grad_norm": np.ones(2)})
    writer.flush()
    rec.add_event(30, "plain", "toggle", "norm on")  # an event flushes at once: no second message
    assert len(got) == 1 and got[0].startswith(f"{path}: cannot write run file (") and "\n" not in got[0]
    assert writer.error == got[0] and writer.closed
    assert rec.metric("plain", "loss")[0][-1] == 39  # memory goes on
    back = gradviz.open_run(path)
    assert back.metric("plain", "loss")[0].tolist() == list(range(20))  # the file keeps what it had
    with pytest.raises(RunFileError, match="cannot write run file"):  # without on_error: raised, as before
        w2 = RunFileWriter(tmp_path / "g.gradviz", Recording())
        w2._db.execute("PRAGMA query_only=ON")
        w2._on("event", (rec.event_objects()[0],))


def test_the_log_file_never_prints_tracebacks(tmp_path, capsys):
    """On a full disk every log record printed "--- Logging error ---" and two tracebacks over the
    terminal (`gradviz run` showed them between its progress lines). The log is best effort."""
    import logging

    from gradviz.paths import QuietFileHandler

    handler = QuietFileHandler(tmp_path / "gradviz.log", encoding="utf-8")
    handler.stream = open("/dev/full", "w")  # noqa: SIM115 - every flush fails with ENOSPC
    log = logging.getLogger("gradviz-test-quiet")
    log.addHandler(handler)
    try:
        log.error("cannot write")
        log.error("again")
    finally:
        log.removeHandler(handler)
    assert capsys.readouterr().err == ""


def test_two_threads_appending_share_one_writer(tmp_path, monkeypatch):
    """Watches that share a file (a GAN's generator and discriminator) append from their own worker
    threads: two transactions at once failed both ("cannot start a transaction within a
    transaction", "cannot commit - no transaction is active") and the watches stopped recording.
    With a commit at every append, both threads' steps all reach the file."""
    monkeypatch.setattr(runfile, "FLUSH_SECONDS", 0.0)
    rec = Recording()
    path = tmp_path / "shared.gradviz"
    writer = RunFileWriter(path, rec)
    for run in ("G", "D"):
        rec.add_run(run, ["a", "b"], ["Linear", "Linear"], [])
    errors = []

    def steps(run):
        try:
            for k in range(300):
                rec.append(run, k, {"loss": float(k), "grad_norm": np.full(2, k, np.float32)})
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=steps, args=(run,)) for run in ("G", "D")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writer.error is None and not errors
    writer.close()
    back = gradviz.open_run(path)
    for run in ("G", "D"):
        got_steps, loss = back.metric(run, "loss")
        assert got_steps.tolist() == list(range(300)) and loss.tolist() == [float(k) for k in range(300)]


def writer_script(path, run: str, steps: int, then: str) -> str:
    """A child process's source: a writer of `path` records `steps` losses of `run`, flushes, then
    runs the lines `then`."""
    return f"""
import os, pathlib, time
from gradviz.core.recording import Recording
from gradviz.core.runfile import RunFileWriter
rec = Recording(); w = RunFileWriter({str(path)!r}, rec)
rec.add_run({run!r}, ['a'], ['Linear'], [])
for s in range({steps}):
    rec.append({run!r}, s, {{'loss': float(s)}})
    time.sleep(0.001)
w.flush()
{then}
"""


def test_killed_writer_leaves_a_readable_file(tmp_path):
    path = tmp_path / "k.gradviz"
    code = writer_script(path, "r", 200, "os._exit(9)  # killed: no close(), WAL left behind")
    res = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert res.returncode == 9
    back = gradviz.open_run(path)
    steps, _ = back.metric("r", "loss")
    assert len(steps) == 200


def test_a_file_another_process_writes_is_not_replaced(tmp_path):
    """Two scripts given one path: the second writer unlinked the file the first was writing, whose
    400 steps went on into a deleted file without a word. It is refused in one line naming the
    writing process; once that process is gone (killed, even), the path can be written again."""
    path = tmp_path / "shared.gradviz"
    go = tmp_path / "go"
    code = writer_script(path, "first", 50, f"""print('writing', flush=True)
while not pathlib.Path({str(go)!r}).exists():
    time.sleep(0.02)
if os.environ.get('DIE'):
    os._exit(9)  # killed: the kernel lets its lock go
w.close()""")
    for die in ("", "1"):
        go.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "DIE": die})
        try:
            assert proc.stdout.readline().strip() == "writing"
            with pytest.raises(RunFileError) as info:
                RunFileWriter(path, Recording())
            msg = str(info.value)
            assert msg == f"{path}: process {proc.pid} is writing this run file; give this one another path"
        finally:
            go.touch()
            proc.wait(timeout=60)
        assert gradviz.open_run(path).runs == ["first"] and len(gradviz.open_run(path).metric("first", "loss")[0]) == 50
        rec = Recording()
        w = RunFileWriter(path, rec)  # the writer has gone: the path is free again
        rec.add_run("second", ["a"], ["Linear"], [])
        w.close()
        assert gradviz.open_run(path).runs == ["second"]
        assert not (tmp_path / "shared.gradviz-lock").exists()  # a closed writer leaves no lock behind


def hostile(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_hostile_files_give_one_line_errors(tmp_path):
    good = tmp_path / "good.gradviz"
    rec = Recording()
    w = RunFileWriter(good, rec)
    filled(rec)
    w.close()
    raw = good.read_bytes()
    cases = {
        "empty": hostile(tmp_path, "empty.gradviz", b""),
        "random": hostile(tmp_path, "rand.gradviz", np.random.default_rng(1).bytes(5000)),
        "truncated": hostile(tmp_path, "trunc.gradviz", raw[: len(raw) // 3]),
        "header only": hostile(tmp_path, "head.gradviz", raw[:60]),
    }
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t(x)")
    db.commit()
    db.close()
    cases["other schema"] = other
    newer = tmp_path / "newer.gradviz"
    newer.write_bytes(raw)
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    cases["newer"] = newer
    cases["missing"] = tmp_path / "nope.gradviz"
    cases["folder"] = tmp_path
    for what, path in cases.items():
        with pytest.raises(RunFileError) as info:
            gradviz.open_run(path)
        msg = str(info.value)
        assert "\n" not in msg and str(path) in msg, (what, msg)
    assert "newer gradviz" in str(pytest.raises(RunFileError, gradviz.open_run, newer).value)
    assert "not a gradviz run file" in str(pytest.raises(RunFileError, gradviz.open_run, other).value)


def crafted(tmp_path, name, *statements):
    """A good run file altered by SQL statements, as someone crafting a file to share could."""
    path = tmp_path / name
    rec = Recording()
    w = RunFileWriter(path, rec)
    filled(rec)
    w.close()
    db = sqlite3.connect(path)
    for sql in statements:
        db.execute(sql)
    db.commit()
    db.close()
    return path


def test_a_crafted_schema_is_refused_before_any_query_runs(tmp_path):
    """A view runs its query when read: a recursive one made open_run loop for ever, its memory
    growing; a virtual generated column would allocate what it likes on every row read."""
    view = crafted(
        tmp_path,
        "view.gradviz",
        "DROP TABLE meta",
        "CREATE VIEW meta AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT 'k' || x AS key, '1' AS value FROM c",
    )
    computed = crafted(
        tmp_path,
        "computed.gradviz",
        "ALTER TABLE chunks RENAME TO stored",
        "CREATE TABLE chunks(id INTEGER PRIMARY KEY, run INTEGER, name TEXT, n INTEGER, width INTEGER, dtype TEXT,"
        " steps BLOB, raw BLOB, vals BLOB AS (zeroblob(900000000)) VIRTUAL)",
        "INSERT INTO chunks(id, run, name, n, width, dtype, steps, raw) SELECT id, run, name, n, width, dtype, steps, vals FROM stored",
        "DROP TABLE stored",
    )
    # a subprocess: with the old reader, opening the view never returned
    code = "import sys, gradviz\ntry:\n    gradviz.open_run(sys.argv[1])\nexcept gradviz.RunFileError as e:\n    print(e)"
    for path, what in ((view, "'meta' is a view"), (computed, "'chunks.vals' is computed")):
        res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
        out = res.stdout.strip()
        assert res.returncode == 0 and "\n" not in out and str(path) in out and what in out, (out, res.stderr[-500:])


def test_crafted_fields_are_skipped_with_a_warning_and_the_rest_is_read(tmp_path):
    path = crafted(
        tmp_path,
        "fields.gradviz",
        "INSERT INTO events(step, run, kind, detail) VALUES ('soon', 'plain', 'toggle', 'x')",
        "UPDATE hist_edges SET layer = 'one'",
        "UPDATE runs SET name = CAST(x'ff706c61696e' AS TEXT) WHERE name = 'plain'",  # not UTF-8
        "UPDATE meta SET value = '" + "[" * 100_000 + "]" * 100_000 + "' WHERE key = 'kind'",
    )
    back = gradviz.open_run(path)
    assert back.runs == ["\ufffdplain", "residual"]
    assert len(back.metric("residual", "grad_norm")[0]) == 50
    assert [e[:3] for e in back.events()] == [(7, "plain", "toggle")]  # the unreadable one skipped
    assert back.meta["config"] == {"a": 1} and "kind" not in back.meta
    said = " ".join(back.warnings)
    assert "event" in said and "histogram edges" in said and "meta 'kind' unreadable" in said


def test_metadata_of_the_wrong_type_is_left_out_and_the_file_still_exports(tmp_path):
    """A crafted file's "config": [1, 2], "preset": {...}, a layer table row of one field: `gradviz
    export` stopped with a 23-line AttributeError traceback (the views read them as objects and
    strings). The reader leaves such entries out, one warning each, and keeps the rest."""
    good_row = ["l0", "Linear", [4], 20, 40]
    path = crafted(
        tmp_path,
        "meta.gradviz",
        "UPDATE meta SET value = '[1, 2]' WHERE key = 'config'",
        """INSERT INTO meta(key, value) VALUES ('preset', '{"a": 1}'), ('activation', '5'),
           ('watches', '{"w": [1]}'), ('scripted', '"yes"'), ('created', '"2026-12-01"'), ('custom', '[1]')""",
        "INSERT INTO meta(key, value) VALUES ('layer_table', '" + json.dumps({"plain": [["l0"]], "residual": [good_row]}) + "')",
    )
    back = gradviz.open_run(path)
    assert back.meta == {"kind": "test", "created": "2026-12-01", "layer_table": {"residual": [good_row]}, "custom": [1]}
    said = back.warnings
    assert "meta 'config' is a list, not an object: left out" in said
    assert "meta 'preset' is an object, not a string: left out" in said
    assert "meta 'activation' is a number, not a string: left out" in said
    assert "meta 'scripted' is a string, not true or false: left out" in said
    assert "meta 'watches' holds settings that are not objects: left out" in said
    assert "meta 'layer_table' of 'plain' unreadable: left out" in said
    assert len(back.metric("plain", "grad_norm")[0]) == 50  # the measurements are all there
    res = subprocess.run([sys.executable, "-m", "gradviz", "export", str(path), "--out", str(tmp_path / "out"), "--format", "png,csv"],
                         capture_output=True, text=True, timeout=240, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and (tmp_path / "out" / "depth.csv").exists()


def test_a_run_with_damaged_layer_lists_is_left_out_and_the_others_are_read(tmp_path):
    """One run's layer list damaged ('{"a": 1}' where a list of names belongs) refused the whole
    file; the twin's 50 steps were there all along. That run is left out with one warning (its
    chunks with it); a file none of whose runs can be read is still one line."""
    path = crafted(tmp_path, "run.gradviz", """UPDATE runs SET layers = '{"a": 1}' WHERE name = 'plain'""")
    back = gradviz.open_run(path)
    assert back.runs == ["residual"] and len(back.metric("residual", "grad_norm")[0]) == 50
    assert back.warnings == ["run 'plain' left out: its layer lists are damaged (layer lists must be lists of strings)"]
    both = crafted(tmp_path, "both.gradviz", "UPDATE runs SET blocks = '5'")
    with pytest.raises(runfile.RunFileError) as err:
        gradviz.open_run(both)
    assert str(err.value) == f"{both}: damaged run table for 'plain' (layer lists must be lists of strings)"


def test_damaged_chunk_is_skipped_and_the_rest_is_read(tmp_path):
    path = tmp_path / "d.gradviz"
    rec = Recording()
    w = RunFileWriter(path, rec)
    filled(rec)
    w.close()
    db = sqlite3.connect(path)
    cid = db.execute("SELECT id FROM chunks WHERE name='grad_norm' LIMIT 1").fetchone()[0]
    db.execute("UPDATE chunks SET vals = x'00010203' WHERE id = ?", (cid,))
    db.execute("INSERT INTO chunks(run, name, n, width, dtype, steps, vals) VALUES (1, 'loss', 1, 0, 'pickle', x'00', x'00')")
    db.commit()
    db.close()
    back = gradviz.open_run(path)
    assert back.warnings and "damaged chunk" in back.warnings[0]
    assert len(back.metric("residual", "grad_norm")[0]) == 50
    assert len(back.metric("plain", "loss")[0]) == 50


def test_memory_stays_bounded_over_100k_steps():
    rec = Recording()
    rec.add_run("r", [f"l{i}" for i in range(60)], ["Linear"] * 60, [])
    row = np.ones(60, np.float32)
    for s in range(100_000):
        rec.append("r", s, {"loss": float(s), "grad_norm": row})
    grad = rec._series[("r", "grad_norm")]
    size_100k = grad.nbytes()
    for s in range(100_000, 150_000):
        rec.append("r", s, {"loss": float(s), "grad_norm": row})
    assert grad.decimated and grad.nbytes() == size_100k  # no growth once the budget is reached
    assert rec.nbytes() <= 2 * SERIES_BYTES * 1.05  # every series lives within its budget
    steps, loss = rec.metric("r", "loss")
    assert steps[-1] == 149_999 and steps[0] == 0 and np.all(np.diff(steps) > 0)
    lo, hi = rec.envelope("r", "loss")
    assert lo[0] == 0 and hi[0] >= steps[1] - 1  # the first row's envelope spans its steps
    assert np.all(np.diff(steps[-100:]) == 1)  # newest rows at full resolution


def test_views_stay_valid_while_another_thread_appends():
    rec = Recording()
    rec.add_run("r", ["a", "b"], ["Linear"] * 2, [])
    stop = threading.Event()

    def writer():
        s = 0
        while not stop.is_set():
            rec.append("r", s, {"loss": float(s), "grad_norm": np.array([s, s], np.float32)})
            s += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(2000):
            steps, vals = rec.metric("r", "grad_norm")
            if len(steps):
                assert len(steps) == len(vals)
                np.testing.assert_array_equal(vals[-1], [steps[-1], steps[-1]])
    finally:
        stop.set()
        t.join()
