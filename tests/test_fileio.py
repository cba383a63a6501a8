from __future__ import annotations

import os

import pytest

from bcmodels.io import files as fileio
from bcmodels.io.files import atomic_dir, atomic_path, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("stage crashed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_outputs_get_the_usual_permissions_not_private_ones(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "metrics.json", "{}")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755


def _folder(path, text: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (path / f"{i}.txt").write_text(f"{text} {i}")


def _contents(path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


class Killed(BaseException):
    """A kill, as KeyboardInterrupt or SystemExit: not an Exception, nothing catches it on the way."""


def test_a_failure_between_moving_the_old_folder_aside_and_the_new_one_in_puts_the_old_back(tmp_path, monkeypatch):
    target = tmp_path / "raw"
    _folder(target, "old")
    real_replace, calls = os.replace, []

    def replace(src, dst):  # the second rename of replace_dir (new -> target) fails
        calls.append((src, dst))
        if len(calls) == 2:
            raise Killed
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", replace)
    with pytest.raises(Killed), atomic_dir(target) as tmp:
        _folder(tmp, "new")
    assert _contents(target) == _contents_of_old()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_a_hard_kill_between_the_two_renames_is_undone_by_the_next_write(tmp_path):
    """What a SIGKILL there leaves (no cleanup runs): no target, the complete old folder aside."""
    _folder(tmp_path / ".raw.x1y2.old", "old")
    fileio.recover(tmp_path / "raw")  # the first thing every write of raw does
    assert _contents(tmp_path / "raw") == _contents_of_old()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def _contents_of_old() -> dict[str, str]:
    return {f"{i}.txt": f"old {i}" for i in range(3)}


def test_a_kill_while_writing_keeps_the_old_folder_and_the_next_run_cleans_up(tmp_path):
    target = tmp_path / "processed"
    _folder(target, "old")
    with pytest.raises(Killed), atomic_dir(target) as tmp:
        _folder(tmp, "half")
        raise Killed
    assert _contents(target) == _contents_of_old()
    # A kill -9 runs no cleanup at all: simulate what it leaves, then write again.
    (tmp_path / ".processed.abc.tmp").mkdir()
    (tmp_path / ".processed.def.old").mkdir()
    (tmp_path / ".out.txt.ghi.tmp").write_text("half")
    with atomic_dir(target) as tmp:
        _folder(tmp, "new")
    write_text(tmp_path / "out.txt", "done")
    assert _contents(target) == {f"{i}.txt": f"new {i}" for i in range(3)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "processed"]
