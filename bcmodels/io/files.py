"""Crash-safe output: a reader sees the complete old file or folder or the complete new one, never half.

New output is written beside its target under a temporary name and moved into place only when complete.
A folder is replaced in three steps (old renamed aside, new moved in, old deleted); if the process dies
between the first two, the next write of that folder moves the old one back before it starts. Leftover
temporaries of a killed run are deleted by the next run that writes the same target.

A write that the file system refuses (a full disk above all) ends as an OSError naming the target, which
bcmodels.errors.run_stage prints as one line saying what to do: libraries report a full disk in their own
ways (numpy's short-write OSError has no errno; torch raises a RuntimeError chaining the system's OSError),
and a temporary's name would mean nothing to the user.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bcmodels.errors import EXPECTED_ERRORS, OS_ADVICE, DataError

TMP_SUFFIX = ".tmp"  # a write in progress
OLD_SUFFIX = ".old"  # a replaced folder, about to be deleted
FULL_BELOW = 1 << 20  # bytes free under which a file system counts as full (a failed write leaves < a block)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _leftovers(path: Path, suffix: str) -> list[Path]:
    """Temporaries of earlier writes of path: .<name>.<random><suffix> beside it."""
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.") and p.name.endswith(suffix))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def recover(path: str | Path) -> None:
    """Undo what a killed write of path left: restore a folder renamed aside, delete temporaries."""
    path = Path(path)
    old = _leftovers(path, OLD_SUFFIX)
    if old and not path.exists():
        os.replace(old.pop(), path)  # the kill came between renaming the old aside and moving the new in
    for leftover in old + _leftovers(path, TMP_SUFFIX):
        _remove(leftover)


def _system_errno(err: BaseException | None) -> int | None:
    """The errno the system gave for err, also where a library wrapped its OSError in an error of its own."""
    seen: set[int] = set()  # `raise e from e` makes a loop
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno is not None:
            return err.errno
        seen.add(id(err))
        err = err.__cause__ if err.__cause__ is not None or err.__suppress_context__ else err.__context__
    return None


def _disk_full(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < FULL_BELOW
    except OSError:
        return False


def _raise_write_error(err: OSError | RuntimeError, path: Path, tmp: Path) -> None:
    """Raise, instead of err (a failure while writing tmp, which stands for path), an OSError naming path
    if the system refused the write; return if err is something else (a bug keeps its traceback)."""
    if isinstance(err, EXPECTED_ERRORS):
        return
    filename = getattr(err, "filename", None)
    if isinstance(filename, (str, bytes)):
        named, written = Path(os.fsdecode(filename)).absolute(), tmp.absolute()
        if named != written and written not in named.parents:
            return  # about another file (an input read while writing): the error names it already
    code = _system_errno(err)
    if code is None and _disk_full(tmp.parent):
        code = errno.ENOSPC  # a library reported a short write without the reason: the disk is full
    if code in OS_ADVICE:
        raise OSError(code, os.strerror(code), str(path)) from err


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes it private (0600); give it the mode open() would
    try:
        try:
            yield tmp_path
        except (OSError, RuntimeError) as err:
            _raise_write_error(err, path, tmp_path)  # before the temporary goes: it may be what fills the disk
            raise
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def replace_dir(new: Path, path: Path) -> None:
    """Move the complete folder `new` onto `path`; at every step one complete version can be had."""
    if not path.exists():
        os.replace(new, path)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=OLD_SUFFIX, dir=path.parent))
    os.replace(path, aside)  # a folder can only be renamed onto an empty one: mkdtemp made it empty
    try:
        os.replace(new, path)  # a kill between these two lines is undone by recover()
    except BaseException:
        os.replace(aside, path)  # a failure, unlike a kill, can put the old folder back at once
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private (0700); give it the mode mkdir would
    try:
        try:
            yield tmp
        except (OSError, RuntimeError) as err:
            _raise_write_error(err, path, tmp)
            raise
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]], delimiter: str = ",") -> str:
    """A comma-separated (or delimiter-separated) table with a header line and "\\n" line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    write_text(path, csv_text(header, rows))


def read_csv(path: str | Path, columns: Sequence[str], made_by: str) -> list[dict[str, str]]:
    """The rows of a CSV file written by write_csv; a missing file or other columns name the stage to run."""
    path = Path(path)
    if not path.is_file():
        raise_missing(path, made_by)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or list(reader.fieldnames[: len(columns)]) != list(columns):
            raise DataError(f"{path}: expected the columns {', '.join(columns)}; rerun `{made_by}`")
        return list(reader)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: str | Path, made_by: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise_missing(path, made_by)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); rerun `{made_by}`") from None


def raise_missing(path: Path, made_by: str) -> None:
    raise DataError(f"{path}: not found; `{made_by}` makes it")
