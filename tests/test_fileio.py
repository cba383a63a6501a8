from __future__ import annotations

import errno
import os
import shutil
from types import SimpleNamespace

import pytest

from bcmodels.errors import DataError, describe_os_error
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


def _a_full_disk(monkeypatch) -> None:
    """The file system reports no free space (what a write that filled it leaves)."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=0))


def test_a_short_write_on_a_full_disk_names_the_target_and_says_the_disk_is_full(tmp_path, monkeypatch):
    """numpy reports a short write as an OSError without errno: the disk's free space tells what it was."""
    target = tmp_path / "images.npy"
    write_text(target, "old")
    _a_full_disk(monkeypatch)
    with pytest.raises(OSError) as caught, atomic_path(target) as tmp:
        tmp.write_text("half")
        raise OSError("3000000 requested and 2097024 written")
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(target))
    assert describe_os_error(caught.value) == f"{target}: the disk is full; free some space and run again"
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.npy"]


def test_a_full_disk_under_a_folder_write_names_the_folder(tmp_path, monkeypatch):
    target = tmp_path / "processed"
    _folder(target, "old")
    _a_full_disk(monkeypatch)
    with pytest.raises(OSError) as caught, atomic_dir(target) as tmp:
        _folder(tmp, "half")
        raise OSError("3000000 requested and 2097024 written")
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(target))
    assert _contents(target) == _contents_of_old()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["processed"]


def test_the_systems_reason_is_found_inside_a_librarys_own_error(tmp_path):
    """torch.save raises a RuntimeError while handling the OSError of the failed write (here: a quota)."""
    target = tmp_path / "model.pt"
    with pytest.raises(OSError) as caught, atomic_path(target):
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError:  # torch's C++ raises while the OSError is handled: its context, not a cause
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904
    assert (caught.value.errno, caught.value.filename) == (errno.EDQUOT, str(target))
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_refused_write_of_the_temporary_is_told_about_the_target(tmp_path):
    """A plain write to a full disk names no file (or the temporary's name, which means nothing to the user)."""
    target = tmp_path / "metrics.json"
    with pytest.raises(OSError) as caught, atomic_path(target) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(target))
    with pytest.raises(OSError) as caught, atomic_dir(tmp_path / "out") as tmp:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp / "figures" / "a.png"))
    assert (caught.value.errno, caught.value.filename) == (errno.EACCES, str(tmp_path / "out"))


def test_other_failures_inside_a_write_are_left_as_they_are(tmp_path, monkeypatch):
    """A bug keeps its traceback, a project error its message, an error about an input its file name."""
    target = tmp_path / "out.txt"
    bug = OSError("cannot write mode I;16 as JPEG")  # no errno, and the disk has room: not the disk
    with pytest.raises(OSError) as caught, atomic_path(target):
        raise bug
    assert caught.value is bug
    unreadable = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "input.png"))
    with pytest.raises(OSError) as caught, atomic_dir(tmp_path / "folder"):
        raise unreadable
    assert caught.value is unreadable
    _a_full_disk(monkeypatch)
    refusal = DataError("busi.zip: not a zip archive")
    with pytest.raises(DataError) as caught, atomic_dir(tmp_path / "raw"):
        raise refusal
    assert caught.value is refusal
    assert list(tmp_path.iterdir()) == []
