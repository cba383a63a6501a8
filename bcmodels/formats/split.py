"""data/split.csv (and one per repeat seed or cross-validation fold): every image's side, train, val, test or
excluded. Written by the split stage; read by leakage, training, evaluation and the benchmark."""

from __future__ import annotations

from pathlib import Path

from bcmodels.errors import DataError
from bcmodels.io.files import read_csv, write_csv

COLUMNS = ("file", "class", "split")
SPLITS = ("train", "val", "test")
EXCLUDED = "excluded"  # an image of a dropped label-conflict group: on no side
MADE_BY = "dvc repro split"


def write_split(path: Path, files: list[str], labels: list[str], assignment: dict[str, str]) -> None:
    """path as CSV (file, class, split), in the order of files."""
    write_csv(path, COLUMNS, ([f, label, assignment[f]] for f, label in zip(files, labels)))


def read_split(path: Path) -> dict[str, str]:
    """file -> split."""
    rows = read_csv(path, COLUMNS, MADE_BY)
    sides = {*SPLITS, EXCLUDED}
    for row in rows:
        if row["split"] not in sides:
            raise DataError(f"{path}: {row['file']} has split {row['split']!r}; expected one of {', '.join(sides)}")
    return {row["file"]: row["split"] for row in rows}
