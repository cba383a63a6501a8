"""Train / validation / test assignment of every image, written to data/split.csv."""

from __future__ import annotations

import csv
from pathlib import Path

from sklearn.model_selection import train_test_split

from bcmodels.config import CLASSES, SplitConfig
from bcmodels.fileio import write_csv

SPLITS = ("train", "val", "test")


def study_split(files: list[str], labels: list[str], config: SplitConfig) -> dict[str, str]:
    """The study's split: names sorted per class (plain string sort), classes in CLASSES order,
    then two stratified train_test_split calls with the same seed (test first, then validation
    from the rest). Returns file -> split.
    """
    by_class = {c: sorted(f for f, label in zip(files, labels) if label == c) for c in CLASSES}
    ordered = [(f, c) for c in CLASSES for f in by_class[c]]
    xs, ys = [f for f, _ in ordered], [c for _, c in ordered]
    rest_x, test_x, rest_y, _ = train_test_split(
        xs, ys, test_size=config.test_fraction, stratify=ys, random_state=config.seed
    )
    train_x, val_x = train_test_split(
        rest_x, test_size=config.val_fraction, stratify=rest_y, random_state=config.seed
    )
    assignment = {f: "train" for f in train_x}
    assignment.update({f: "val" for f in val_x})
    assignment.update({f: "test" for f in test_x})
    return assignment


def make_split(files: list[str], labels: list[str], config: SplitConfig) -> dict[str, str]:
    """Dispatch on split.strategy (validated in config)."""
    if config.strategy == "study":
        return study_split(files, labels, config)
    raise ValueError(f"Invalid split.strategy {config.strategy!r}. Only study is supported.")


def write_split(path: Path, files: list[str], labels: list[str], assignment: dict[str, str]) -> None:
    """path as CSV (file, class, split), in the order of files."""
    write_csv(path, ["file", "class", "split"], ([f, label, assignment[f]] for f, label in zip(files, labels)))


def read_split(path) -> dict[str, str]:
    """file -> split from data/split.csv."""
    with open(path, newline="") as f:
        return {row["file"]: row["split"] for row in csv.DictReader(f)}
