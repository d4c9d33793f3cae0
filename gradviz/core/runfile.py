"""Run files: a recording persisted in SQLite (WAL), written in chunks, read back safely.

Every flush writes one row per series holding that interval's steps and values as raw little-endian
arrays, so a 100 000-step run opens with a few thousand reads. Readers open the file read-only,
validate every blob's dtype and size, and parse metadata with `json` only: nothing stored in a file
is ever executed or unpickled. Any problem surfaces as one `RunFileError` line naming the file.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
import zlib
from pathlib import Path

import numpy as np

from .recording import Recording

APPLICATION_ID = 0x47524456  # "GRDV": tells a gradviz file from any other SQLite database
SCHEMA_VERSION = 1
FLUSH_SECONDS = 0.5  # a process killed mid-run loses at most this much
_DTYPES = {"f4": np.dtype("<f4"), "f8": np.dtype("<f8"), "u2": np.dtype("<u2")}
# Blobs are zlib-compressed ("z" suffix on the dtype tag): the NaN columns of switched-off layers
# and sparse histogram counts shrink several-fold, at ~0.1 ms per half-second flush.
_LEVEL = 1
_MAX_ROWS_PER_CHUNK = 10_000_000
_TABLES = ("meta", "runs", "chunks", "hist_edges", "hist_chunks", "events")  # what a reader SELECTs from

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, layers TEXT NOT NULL,
                  layer_types TEXT NOT NULL, blocks TEXT NOT NULL);
CREATE TABLE chunks(id INTEGER PRIMARY KEY, run INTEGER NOT NULL, name TEXT NOT NULL,
                    n INTEGER NOT NULL, width INTEGER NOT NULL, dtype TEXT NOT NULL,
                    steps BLOB NOT NULL, vals BLOB NOT NULL);
CREATE TABLE hist_edges(run INTEGER NOT NULL, kind TEXT NOT NULL, layer INTEGER NOT NULL,
                        edges BLOB NOT NULL, PRIMARY KEY(run, kind, layer));
CREATE TABLE hist_chunks(id INTEGER PRIMARY KEY, run INTEGER NOT NULL, kind TEXT NOT NULL,
                         layer INTEGER NOT NULL, n INTEGER NOT NULL, bins INTEGER NOT NULL,
                         dtype TEXT NOT NULL, steps BLOB NOT NULL, counts BLOB NOT NULL);
CREATE INDEX hist_key ON hist_chunks(run, kind, layer, id);
CREATE TABLE events(id INTEGER PRIMARY KEY, step INTEGER NOT NULL, run TEXT NOT NULL,
                    kind TEXT NOT NULL, detail TEXT NOT NULL);
"""


def _pack(arr: np.ndarray, tag: str) -> tuple[str, bytes]:
    """Compressed when that saves at least 30% (tag gets a "z"), else raw: inflating costs time
    at open, so it is only paid where it buys something."""
    raw = arr.tobytes()
    packed = zlib.compress(raw, _LEVEL)
    return (tag + "z", packed) if len(packed) < 0.7 * len(raw) else (tag, raw)


def _mask_columns(arr: np.ndarray) -> tuple[str, bytes]:
    """Per-layer chunks: drop the columns that are NaN throughout (layers switched off, e.g. a
    BatchNorm while norm is off) and prefix a one-byte-per-column mask. Cheaper to read back than
    zlib, and it catches most of what zlib would save on these floats."""
    keep = ~np.isnan(arr).all(axis=0)
    if keep.all():
        return "f4", arr.tobytes()
    return "f4m", keep.astype(np.uint8).tobytes() + np.ascontiguousarray(arr[:, keep]).tobytes()


def _unmask(blob: bytes, n: int, width: int) -> bytes | None:
    if len(blob) < width:
        return None
    keep = np.frombuffer(blob[:width], np.uint8)
    if keep.max(initial=0) > 1 or len(blob) - width != 4 * n * int(keep.sum()):
        return None
    out = np.full((n, width), np.nan, "<f4")
    out[:, keep.astype(bool)] = np.frombuffer(blob[width:], "<f4").reshape(n, int(keep.sum()))
    return out.tobytes()


def _unpack(blob: bytes, expected: int) -> bytes | None:
    """Inflate at most `expected` bytes; None for a damaged or oversized stream."""
    try:
        d = zlib.decompressobj()
        out = d.decompress(blob, expected)
        if d.unconsumed_tail or not d.eof:
            return None
        return out
    except zlib.error:
        return None


_METRIC_TAGS = ("f4", "f8", "f4m")


class _SeriesBytes:
    """One series' chunks as read: validated cheaply, turned into arrays once."""

    def __init__(self, width: int, base: str) -> None:
        self.width, self.base = width, base
        self.rows = 0
        self.steps: list[bytes] = []
        self.parts: list[tuple[int, int, bytes | None, bytes]] = []  # (row offset, n, mask, data)
        self._masks: dict[bytes, int] = {}  # mask bytes -> kept column count

    def add(self, n, width, dtype, steps, vals) -> bool:
        if not (isinstance(n, int) and 0 < n <= _MAX_ROWS_PER_CHUNK and width == self.width
                and isinstance(steps, bytes) and isinstance(vals, bytes) and len(steps) == 8 * n):
            return False
        if dtype == "f4m":
            if self.base != "f4" or width < 1 or len(vals) < width:
                return False
            mask = vals[:width]
            kept = self._masks.get(mask)
            if kept is None:
                m = np.frombuffer(mask, np.uint8)
                if m.max(initial=0) > 1:
                    return False
                kept = self._masks[mask] = int(m.sum())
            if len(vals) - width != 4 * n * kept:
                return False
            self.parts.append((self.rows, n, mask, vals[width:]))
        else:
            if dtype != self.base or len(vals) != _DTYPES[dtype].itemsize * n * max(width, 1):
                return False
            self.parts.append((self.rows, n, None, vals))
        self.steps.append(steps)
        self.rows += n
        return True

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        steps = np.frombuffer(b"".join(self.steps), "<i8").astype(np.int64, copy=False)
        dt = _DTYPES[self.base]
        if not self.width:
            return steps, np.frombuffer(b"".join(p[3] for p in self.parts), dt).astype(dt.newbyteorder("="), copy=False)
        if all(p[2] is None for p in self.parts):
            v = np.frombuffer(b"".join(p[3] for p in self.parts), dt).reshape(self.rows, self.width)
            return steps, v.astype(dt.newbyteorder("="), copy=False)
        out = np.full((self.rows, self.width), np.nan, np.float32)
        by_mask: dict[bytes | None, list] = {}
        for part in self.parts:
            by_mask.setdefault(part[2], []).append(part)
        for mask, parts in by_mask.items():
            cols = np.arange(self.width) if mask is None else np.flatnonzero(np.frombuffer(mask, np.uint8))
            rows = np.concatenate([np.arange(off, off + n) for off, n, _, _ in parts])
            data = np.frombuffer(b"".join(p[3] for p in parts), "<f4").reshape(len(rows), len(cols))
            out[rows[:, None], cols[None, :]] = data
        return steps, out


class RunFileError(Exception):
    """A run file cannot be read or written; the message is one line naming the file."""


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _locked(method):
    """One thread in the writer at a time: watches sharing a file (a GAN's two models) write from
    their own worker threads, and two transactions at once broke both ("cannot start a transaction
    within a transaction")."""

    @functools.wraps(method)
    def serialized(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return serialized


def _hold_path(path: Path) -> int | None:
    """Take the writer's lock of `path` (an advisory `flock` on `<path>-lock`, held until close and
    let go by the kernel if the process dies): a second writer used to unlink the file another
    process was writing, whose steps then went into a deleted file without a word (two scripts
    given one `path=`). None where there is no `flock` (Windows): no guard there."""
    try:
        import fcntl
    except ImportError:
        return None
    lock = Path(str(path) + "-lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip()
        os.close(fd)
        who = f"process {holder}" if holder.isdigit() else "another writer"
        raise RunFileError(f"{path}: {who} is writing this run file; give this one another path") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _release_path(path: Path, fd: int | None) -> None:
    if fd is None:
        return
    try:
        Path(str(path) + "-lock").unlink(missing_ok=True)
    except OSError:
        pass
    os.close(fd)  # closing lets the flock go


def writer_state(path: str | Path) -> str | None:
    """Whether a writer is at work on `path`, from its lock (see `_hold_path`): "writing", "closed"
    (no lock: the writer closed the file, or it was never written with one), "gone" (the lock of a
    process that no longer exists: killed before it could close), or None where it cannot be told
    (no `flock`, or the lock unreadable). Only reads: taking the lock, even briefly, could make a
    writer starting that instant refuse the file."""
    try:
        import fcntl  # noqa: F401 - only where writers take the lock
    except ImportError:
        return None
    try:
        holder = Path(str(path) + "-lock").read_text("ascii", "replace").strip()
    except FileNotFoundError:
        return "closed"
    except OSError:
        return None
    if not holder.isdigit():  # created, its pid not written yet: a writer is starting
        return "writing"
    try:
        os.kill(int(holder), 0)
    except ProcessLookupError:
        return "gone"
    except (PermissionError, OverflowError, ValueError):  # another user's process: alive
        return "writing"
    return "writing"


class RunFileWriter:
    """Listens to a Recording and persists every change, committing at least every 0.5 s.

    Used from the thread that writes the recording (the experiment's worker or the user's loop).
    A write that fails (a full disk, a vanished folder) raises `RunFileError`; with `on_error`, it
    is handed the one-line message instead, once, and the writer stops writing (what it committed
    stays, the recording in memory goes on): a lecture keeps training when the disk fills up.
    """

    def __init__(self, path: str | Path, recording: Recording, on_error=None) -> None:
        self.path = Path(path)
        self.on_error = on_error
        self.error: str | None = None  # why writing stopped, once it has
        self._lock = threading.RLock()
        self._held: int | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.is_dir():
                self._held = _hold_path(self.path)  # before the old file is replaced
            if self.path.exists():
                self.path.unlink()
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            _release_path(self.path, self._held)
            blocker = next((a for a in self.path.parents if a.exists() and not a.is_dir()), None)
            why = f"{blocker} is a file, not a folder" if blocker is not None else _one_line(exc)  # not "[Errno 17] File exists"
            raise RunFileError(f"{self.path}: cannot create run file ({why})") from None
        self._run_ids: dict[str, int] = {}
        self._pending: dict[tuple[str, str], tuple[list, list]] = {}
        self._pending_hist: dict[tuple[str, str, int], tuple[list, list]] = {}
        self._ops: list[tuple[str, tuple]] = []  # meta, runs, edges and events in order
        self._last_commit = time.monotonic()
        self.closed = False
        # Replay what the recording already holds, then follow it.
        if recording.meta:
            self._on("meta", (recording.meta,))
        for name in recording.runs:
            info = recording.info(name)
            self._on("run", (name, info.layers, info.layer_types, info.blocks))
        for ev in recording.event_objects():
            self._on("event", (ev,))
        recording.add_listener(self._on)
        recording.source = str(self.path)

    @_locked
    def _on(self, kind: str, payload: tuple) -> None:
        if self.closed:
            return
        if kind == "metrics":
            run, step, metrics = payload
            for name, value in metrics.items():
                steps, vals = self._pending.setdefault((run, name), ([], []))
                steps.append(step)
                vals.append(np.asarray(value))
        elif kind == "hist":
            run, step, hkind, counts = payload
            for layer, c in counts.items():
                steps, vals = self._pending_hist.setdefault((run, hkind, layer), ([], []))
                steps.append(step)
                vals.append(np.asarray(c, np.float32))
        else:
            self._ops.append((kind, payload))
            if kind in ("event", "run", "meta"):
                self.flush()  # rare and precious: write at once
                return
        self.flush_if_due()

    def flush_if_due(self) -> None:
        if time.monotonic() - self._last_commit >= FLUSH_SECONDS:
            self.flush()

    @_locked
    def flush(self) -> None:
        if self.closed:
            return
        db = self._db
        try:
            db.execute("BEGIN")
            for kind, payload in self._ops:
                self._write_op(kind, payload)
            self._ops.clear()
            for (run, name), (steps, vals) in self._pending.items():
                if not steps:
                    continue
                arr = np.stack(vals)
                width = 0 if arr.ndim == 1 else arr.shape[1]
                if width == 0:
                    tag, blob = "f8", arr.astype(_DTYPES["f8"]).tobytes()
                else:
                    tag, blob = _mask_columns(arr.astype(_DTYPES["f4"]))
                db.execute(
                    "INSERT INTO chunks(run, name, n, width, dtype, steps, vals) VALUES (?,?,?,?,?,?,?)",
                    (self._run_ids[run], name, len(steps), width, tag, np.asarray(steps, "<i8").tobytes(), blob),
                )
            self._pending.clear()
            for (run, hkind, layer), (steps, vals) in self._pending_hist.items():
                arr = np.stack(vals)
                whole = bool(np.all(arr == np.round(arr))) and arr.min(initial=0) >= 0 and arr.max(initial=0) < 65536
                dtype = "u2" if whole else "f4"  # counts from a bounded sample fit in 16 bits
                tag, blob = _pack(arr.astype(_DTYPES[dtype]), dtype)
                db.execute(
                    "INSERT INTO hist_chunks(run, kind, layer, n, bins, dtype, steps, counts) VALUES (?,?,?,?,?,?,?,?)",
                    (self._run_ids[run], hkind, layer, len(steps), arr.shape[1], tag,
                     np.asarray(steps, "<i8").tobytes(), blob),
                )
            self._pending_hist.clear()
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            msg = f"{self.path}: cannot write run file ({_one_line(exc)})"
            if self.on_error is None:
                raise RunFileError(msg) from None
            self._give_up(msg)
            return
        self._last_commit = time.monotonic()

    def _give_up(self, msg: str) -> None:
        """Stop writing after a failed write: drop what was pending (the recording in memory has
        it), keep the file as last committed, tell the owner once."""
        self.error = msg
        self._pending.clear()
        self._pending_hist.clear()
        self._ops.clear()
        self.closed = True  # not `close()`: it would try to write once more
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        self.on_error(msg)

    def _write_op(self, kind: str, payload: tuple) -> None:
        db = self._db
        if kind == "meta":
            for key, value in payload[0].items():
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))
        elif kind == "run":
            name, layers, types, blocks = payload
            cur = db.execute(
                "INSERT INTO runs(name, layers, layer_types, blocks) VALUES (?,?,?,?)",
                (name, json.dumps(layers), json.dumps(types), json.dumps(blocks)),
            )
            self._run_ids[name] = cur.lastrowid
        elif kind == "edges":
            run, hkind, layer, edges = payload
            db.execute(
                "INSERT OR REPLACE INTO hist_edges(run, kind, layer, edges) VALUES (?,?,?,?)",
                (self._run_ids[run], hkind, layer, np.asarray(edges, "<f8").tobytes()),
            )
        elif kind == "event":
            ev = payload[0]
            db.execute(
                "INSERT INTO events(step, run, kind, detail) VALUES (?,?,?,?)",
                (ev.step, ev.run, ev.kind, ev.detail),
            )

    @_locked
    def close(self) -> None:
        """Flush, checkpoint the WAL into the main file and leave a single self-contained file."""
        if self.closed:
            return
        try:
            self.flush()
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.Error:
            pass
        finally:
            self.closed = True
            self._db.close()
            _release_path(self.path, self._held)
            self._held = None


class RunFileReader:
    """Reads a run file into a Recording, now (`load`) and again as it grows (`poll`, for follow)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._last = {"chunks": 0, "hist_chunks": 0, "events": 0}
        self._runs: dict[int, str] = {}
        self._damaged_runs: dict[int, str] = {}  # run id -> why it is left out
        self._edges_seen: set[tuple] = set()
        self._hist_mark: int | None = None  # newest histogram chunk id taken into account
        self._hist_loaded: set[tuple[str, str, int]] = set()
        self._meta_seen = False
        self.warnings: list[str] = []
        p = self.path
        if not p.exists():
            raise RunFileError(f"{p}: no such file")
        if p.is_dir():
            raise RunFileError(f"{p}: is a folder, not a run file")
        try:
            with open(p, "rb") as fh:
                head = fh.read(100)
        except OSError as exc:
            raise RunFileError(f"{p}: cannot read ({exc.strerror or exc})") from None
        if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
            what = "empty" if not head else "truncated" if head.startswith(b"SQLite"[: len(head)]) else "not a gradviz run file"
            raise RunFileError(f"{p}: {what} (no SQLite header)")
        try:
            uri = p.resolve().as_uri() + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._db.text_factory = _lenient_text  # a name that is not UTF-8 reads, marked, not fails the file
            self._db.execute("PRAGMA trusted_schema=OFF")  # no side-effecting SQL functions from the file
            app = self._db.execute("PRAGMA application_id").fetchone()[0]
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise RunFileError(f"{p}: unreadable SQLite file ({_one_line(exc)})") from None
        if app != APPLICATION_ID:
            raise RunFileError(f"{p}: an SQLite database but not a gradviz run file")
        if version > SCHEMA_VERSION:
            raise RunFileError(
                f"{p}: written by a newer gradviz (schema {version}; this version reads up to {SCHEMA_VERSION}); upgrade gradviz"
            )
        if version < 1:
            raise RunFileError(f"{p}: gradviz run file without a schema version (incomplete or damaged)")
        self._check_schema()

    def _check_schema(self) -> None:
        """Refuse a file whose tables are not plain tables. Reading a view runs its query, and a
        virtual generated column computes on every read: a crafted file could make a plain SELECT
        loop for ever (a recursive view) or allocate a gigabyte per row. Nothing is executed but
        SQLite's own SELECTs over stored rows."""
        marks = ",".join("?" * len(_TABLES))
        rows = self._query(f"SELECT name, type, sql FROM sqlite_master WHERE name IN ({marks})", _TABLES)
        for name, kind, sql in rows:
            if kind != "table" or str(sql or "").lstrip().upper().startswith("CREATE VIRTUAL"):
                what = "a virtual table" if kind == "table" else f"a {kind}"
                raise RunFileError(f"{self.path}: not a gradviz run file ('{name}' is {what}, not a table)")
            for col in self._query(f"PRAGMA table_xinfo('{name}')"):
                if col[-1] in (1, 2):  # hidden: a virtual table's column, or a computed-on-read one
                    raise RunFileError(f"{self.path}: not a gradviz run file ('{name}.{col[1]}' is computed, not stored)")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise RunFileError(f"{self.path}: damaged run file ({_one_line(exc)})") from None

    def load(self, recording: Recording | None = None, bounded: bool = False) -> Recording:
        rec = recording if recording is not None else Recording(bounded=bounded)
        rec.source = str(self.path)
        self.poll(rec)
        if self._damaged_runs and not self._runs:  # nothing left to show
            raise RunFileError(next(iter(self._damaged_runs.values())))
        return rec

    def poll(self, rec: Recording) -> int:
        """Append everything written since the last call; returns how many chunks/events were new."""
        new = 0
        if not self._meta_seen or not rec.meta:
            meta = {}
            for key, value in self._query("SELECT key, value FROM meta"):
                try:
                    meta[str(key)] = json.loads(value)
                except (TypeError, ValueError, RecursionError):  # RecursionError: absurdly nested JSON
                    self.warnings.append(f"meta {key!r} unreadable")
            meta = _sane_meta(meta, self.warnings)
            if meta:
                rec.set_meta(meta)
                self._meta_seen = True
        for rid, name, layers, types, blocks in self._query(
            "SELECT id, name, layers, layer_types, blocks FROM runs ORDER BY id"
        ):
            if rid in self._runs or rid in self._damaged_runs:
                continue
            try:
                lay, typ, blk = json.loads(layers), json.loads(types), json.loads(blocks)
                if not all(isinstance(x, list) and all(isinstance(s, str) for s in x) for x in (lay, typ, blk)):
                    raise ValueError("layer lists must be lists of strings")
            except (TypeError, ValueError, RecursionError) as exc:
                # that run is left out, with its chunks; the other runs are read as they are
                self._damaged_runs[rid] = f"{self.path}: damaged run table for {name!r} ({_one_line(exc)})"
                self.warnings.append(f"run {name!r} left out: its layer lists are damaged ({_one_line(exc)})")
                continue
            rec.add_run(str(name), lay, typ, blk)
            self._runs[rid] = str(name)
            new += 1
        for run, kind, layer, edges in self._query("SELECT run, kind, layer, edges FROM hist_edges"):
            key = (run, kind, layer)
            if key in self._edges_seen or run not in self._runs:
                continue
            if not isinstance(edges, bytes) or len(edges) % 8 or len(edges) < 16 or not isinstance(layer, int):
                self.warnings.append(f"histogram edges {key} unreadable")
                continue
            rec.set_edges(self._runs[run], str(kind), layer, np.frombuffer(edges, "<f8"))
            self._edges_seen.add(key)
        # Collect raw bytes per series and convert once: a long run has tens of thousands of chunks,
        # so the per-chunk work is a few checks, and masked chunks are expanded per distinct mask.
        grouped: dict[tuple[str, str], _SeriesBytes] = {}
        for cid, run, name, n, width, dtype, steps, vals in self._query(
            "SELECT id, run, name, n, width, dtype, steps, vals FROM chunks WHERE id > ? ORDER BY id",
            (self._last["chunks"],),
        ):
            self._last["chunks"] = cid
            if run in self._damaged_runs:  # said once, for the run
                continue
            key = (self._runs.get(run), name)
            g = grouped.get(key)
            if g is None and key[0] is not None and isinstance(width, int) and dtype in _METRIC_TAGS:
                g = grouped[key] = _SeriesBytes(width, "f8" if dtype == "f8" else "f4")
            if g is None or not g.add(n, width, dtype, steps, vals):
                self.warnings.append(f"skipped a damaged chunk of run id {run!r}")
                continue
            new += 1
        for (run, name), g in grouped.items():
            if g.rows:
                steps, values = g.arrays()
                rec.extend(run, str(name), steps, values)
        # Histograms: only layers a view has asked for are kept up to date; the rest load on demand.
        if self._hist_mark is None:
            self._hist_mark = self._query("SELECT COALESCE(MAX(id), 0) FROM hist_chunks")[0][0]
            rec.set_hist_loader(lambda run, kind, layer: self._load_hist(rec, run, kind, layer))
        else:
            rows = self._query(
                "SELECT id, run, kind, layer, n, bins, dtype, steps, counts FROM hist_chunks WHERE id > ? ORDER BY id",
                (self._hist_mark,),
            )
            for cid, run, kind, layer, n, bins, dtype, steps, counts in rows:
                self._hist_mark = cid
                name = self._runs.get(run)
                if (name, kind, layer) in self._hist_loaded:
                    new += self._ingest_hist(rec, name, kind, layer, [(n, bins, dtype, steps, counts, run)])
        for eid, step, run, kind, detail in self._query(
            "SELECT id, step, run, kind, detail FROM events WHERE id > ? ORDER BY id", (self._last["events"],)
        ):
            self._last["events"] = eid
            if not isinstance(step, int):
                self.warnings.append(f"event {eid!r} unreadable (step {step!r})")
                continue
            rec.add_event(step, str(run), str(kind), str(detail))
            new += 1
        return new

    def _load_hist(self, rec: Recording, run: str, kind: str, layer: int) -> None:
        key = (run, kind, layer)
        if key in self._hist_loaded:
            return
        self._hist_loaded.add(key)
        rid = next((i for i, n in self._runs.items() if n == run), None)
        if rid is None:
            return
        try:
            rows = self._query(
                "SELECT n, bins, dtype, steps, counts, run FROM hist_chunks WHERE run=? AND kind=? AND layer=? AND id <= ? ORDER BY id",
                (rid, kind, layer, self._hist_mark or 0),
            )
        except (RunFileError, sqlite3.ProgrammingError) as exc:  # asked from a view: never raise there
            self.warnings.append(str(exc) if isinstance(exc, RunFileError) else f"{self.path}: closed")
            return
        self._ingest_hist(rec, run, kind, layer, rows)

    def _ingest_hist(self, rec: Recording, run: str, kind: str, layer: int, rows) -> int:
        steps, counts = [], []
        for n, bins, dtype, st, c, rid in rows:
            arrs = self._decode(rid, n, bins, dtype, st, c)
            if arrs is None or bins < 1:
                continue
            steps.append(arrs[0])
            counts.append(arrs[1])
        if steps:
            rec.extend_histograms(run, kind, layer, np.concatenate(steps), np.concatenate(counts))
        return len(steps)

    def _check(self, run, n, width, dtype, steps, vals):
        """Validate one chunk; returns (steps bytes, values bytes, dtype tag) or None."""
        tag = dtype[:-1] if isinstance(dtype, str) and dtype[-1:] in ("z", "m") else dtype
        ok = (
            run in self._runs
            and isinstance(n, int) and 0 < n <= _MAX_ROWS_PER_CHUNK
            and isinstance(width, int) and 0 <= width <= 1_000_000
            and tag in _DTYPES
            and isinstance(steps, bytes) and isinstance(vals, bytes)
        )
        if ok:
            want = _DTYPES[tag].itemsize * n * max(width, 1)
            if dtype == "f4m" and width > 0:
                vals = _unmask(vals, n, width)
            elif tag != dtype and dtype.endswith("z"):  # compressed: never inflate past the promised size
                vals = _unpack(vals, want)
            elif tag != dtype:
                vals = None
            ok = vals is not None and len(steps) == 8 * n and len(vals) == want
        if not ok:
            self.warnings.append(f"skipped a damaged chunk of run id {run!r}")
            return None
        return steps, vals, tag

    def _decode(self, run, n, width, dtype, steps, vals):
        """Validate one chunk; returns (steps, values) arrays or None (skipped with a warning)."""
        raw = self._check(run, n, width, dtype, steps, vals)
        if raw is None:
            return None
        s = np.frombuffer(raw[0], "<i8").astype(np.int64, copy=False)
        v = np.frombuffer(raw[1], _DTYPES[raw[2]]).astype(_DTYPES[raw[2]].newbyteorder("="), copy=False)
        return s, (v.reshape(n, width) if width else v)

    def close(self) -> None:
        self._db.close()


# the JSON type of each metadata entry the views, the exports and the replay read; an entry of
# another type (a hostile or damaged file: "config": [1, 2], "preset": {...}) is left out with a
# warning, so no reader of the recording meets a list where it expects an object
_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "kind": str, "preset": str, "name": str, "model": str, "optimizer": str, "activation": str,
    "device": str, "created": str, "gradviz_version": str, "torch_version": str,
    "config": dict, "layer_activation": dict, "watches": dict, "layer_table": dict,
    "scripted": bool, "fullgraph": bool,
}  # fmt: skip


def _json_kind(value) -> str:
    """What a JSON value is, in the file's own terms."""
    if isinstance(value, bool):
        return "true or false"
    for kind, words in ((dict, "an object"), (list, "a list"), (str, "a string"), ((int, float), "a number")):
        if isinstance(value, kind):
            return words
    return "null"


def _table_row_ok(row) -> bool:
    """A stored layer-table row: [name, type, output shape, params, flops(, tied)]."""
    if not isinstance(row, list) or len(row) not in (5, 6):
        return False
    name, typ, shape, *numbers = row
    return (
        isinstance(name, str) and isinstance(typ, str)
        and (shape is None or (isinstance(shape, list) and all(isinstance(d, int) for d in shape)))
        and all(n is None or (isinstance(n, int) and not isinstance(n, bool)) for n in numbers)
    )  # fmt: skip


def _sane_meta(meta: dict, warnings: list[str]) -> dict:
    """`meta` without the entries whose type no reader expects (each named in `warnings`); nested
    objects that are read (the config's model, each watch's settings, the layer table's rows) are
    checked the same way."""
    out = {}
    for key, value in meta.items():
        want = _META_TYPES.get(key)
        if want is not None and (not isinstance(value, want) or (want is str and isinstance(value, bool))):
            warnings.append(f"meta {key!r} is {_json_kind(value)}, not {_json_kind(want())}: left out")
            continue
        out[key] = value
    config = out.get("config")
    if config is not None and not all(isinstance(config.get(k, {}), dict) for k in ("model", "data", "train")):
        warnings.append("meta 'config' has a section that is not an object: left out")
        del out["config"]
    watches = out.get("watches")
    if watches is not None and not all(isinstance(w, dict) and isinstance(w.get("layer_kinds", {}), dict) for w in watches.values()):
        warnings.append("meta 'watches' holds settings that are not objects: left out")
        del out["watches"]
    table = out.get("layer_table")
    if table is not None:
        bad = [run for run, rows in table.items() if not (isinstance(rows, list) and all(_table_row_ok(r) for r in rows))]
        if bad:
            warnings.append(f"meta 'layer_table' of {', '.join(map(repr, bad))} unreadable: left out")
            out["layer_table"] = {run: rows for run, rows in table.items() if run not in bad}
    return out


def open_run(path: str | Path, bounded: bool = False) -> Recording:
    """Read a run file into a Recording (read-only; nothing stored in the file is executed).

    The returned object answers `runs`, `layers(run)`, `metric(run, name)`,
    `histograms(run, kind, layer)` (read from the file when first asked for) and `events()`;
    `warnings` lists chunks that were skipped as damaged.
    """
    reader = RunFileReader(path)
    try:
        rec = reader.load(bounded=bounded)
    except BaseException:
        reader.close()
        raise
    rec.warnings = reader.warnings  # type: ignore[attr-defined]
    rec.reader = reader  # type: ignore[attr-defined]  # keeps the read-only connection for histograms
    return rec
