"""Crash-safe output: a reader sees the complete old file or folder or the complete new one, never half.

New output is written beside its target under a temporary name and moved into place only when complete.
A folder is replaced in three steps (old renamed aside, new moved in, old deleted); if the process dies
between the first two, the next write of that folder moves the old one back before it starts. Leftover
temporaries of a killed run are deleted by the next run that writes the same target.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bcmodels.errors import DataError

TMP_SUFFIX = ".tmp"  # a write in progress
OLD_SUFFIX = ".old"  # a replaced folder, about to be deleted


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
        yield tmp_path
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
        yield tmp
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
