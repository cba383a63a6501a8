"""data/busi_manifest.tsv: every image of the data set with its class and sha256 (committed, read by download
and preprocess)."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from bcmodels.config.schema import CLASSES
from bcmodels.errors import DataError, clip
from bcmodels.io.files import csv_text, write_text

COLUMNS = ("file", "class", "sha256")
# <class>/<name>.png with a plain name: no folder, no "..", no leading dot, nothing a file system treats specially.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _().,+-]{0,150}\.png")


@dataclass(frozen=True)
class ManifestEntry:
    file: str  # path inside Dataset_BUSI_with_GT/, e.g. "benign/benign (1).png"
    label: str
    sha256: str


def _check(path: Path, line: int, entry: ManifestEntry) -> None:
    label, _, name = entry.file.partition("/")
    problem = None
    if entry.label not in CLASSES:
        problem = f"class {clip(repr(entry.label))}; classes are {', '.join(CLASSES)}"
    elif label != entry.label or not FILE_NAME.fullmatch(name):
        problem = f"file {clip(repr(entry.file))} is not <class>/<name>.png with a plain file name"
    elif not re.fullmatch(r"[0-9a-f]{64}", entry.sha256):
        problem = "sha256 is not 64 lowercase hex digits"
    if problem:
        raise DataError(f"{path} line {line}: {problem}. Use the project's committed manifest.")


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """The manifest's entries in file order; every row checked, since file names become paths on disk."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (download.manifest in params.yaml)")
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise DataError(f"{path}: expected tab-separated columns {', '.join(COLUMNS)}")
        entries = []
        for line, row in enumerate(reader, start=2):
            if None in row or None in row.values():
                raise DataError(f"{path} line {line}: expected exactly {len(COLUMNS)} columns")
            entry = ManifestEntry(row["file"], row["class"], row["sha256"])
            _check(path, line, entry)
            entries.append(entry)
    files = [e.file for e in entries]
    if not entries or len(set(files)) != len(files):
        raise DataError(f"{path}: empty, or a file listed twice")
    return entries


def write_manifest(path: str | Path, entries: list[ManifestEntry]) -> None:
    write_text(path, csv_text(COLUMNS, ([e.file, e.label, e.sha256] for e in entries), delimiter="\t"))
