"""The runs folder: where sessions are recorded, and the note when it has grown large."""

import os

from gradviz.paths import new_run_path, runs_dir, runs_folder_note


def sparse(path, size: int) -> None:
    """A file of `size` bytes that takes no disk (the note reads the sizes a file manager shows)."""
    with open(path, "wb") as fh:
        fh.truncate(size)


def test_the_note_counts_recordings_only_and_only_above_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path))
    assert new_run_path("demo").parent == runs_dir() == tmp_path / "runs"
    assert runs_folder_note() == ""  # no folder yet
    runs_dir().mkdir()
    sparse(runs_dir() / "demo-1.gradviz", 3 * 10**9)
    sparse(runs_dir() / "demo-2.gradviz", 2 * 10**9)
    sparse(runs_dir() / "notes.bin", 9 * 10**9)  # not a recording
    (runs_dir() / "old.gradviz-lock").write_text("123")
    assert runs_folder_note() == ""  # exactly 5 GB: not above
    sparse(runs_dir() / "demo-2.gradviz-wal", 400 * 10**6)  # a killed session's log counts too
    assert runs_folder_note() == (
        f"the runs folder holds 5.4 GB in 2 recordings; gradviz never deletes them: clear old ones in {runs_dir()}"
    )
    assert runs_folder_note(limit=6 * 10**9) == ""
    os.remove(runs_dir() / "demo-1.gradviz")
    assert runs_folder_note(limit=10**9).startswith("the runs folder holds 2.4 GB in 1 recording;")
