"""Train / validation / test assignment of every image, written to data/split.csv."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from bcmodels.audit import conflict_groups
from bcmodels.config import CLASSES, SplitConfig
from bcmodels.errors import ConfigError, DataError
from bcmodels.fileio import write_csv

SPLITS = ("train", "val", "test")
EXCLUDED = "excluded"  # grouped split, conflicts: drop: an image of a label-conflict group, in no subset


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


def _majority_class(labels: list[str]) -> str:
    """The most frequent class; a tie goes to the class that comes first in CLASSES."""
    counts = Counter(labels)
    return max(CLASSES, key=lambda c: (counts[c], -CLASSES.index(c)))


def grouped_split(
    files: list[str], labels: list[str], groups: Mapping[str, int], config: SplitConfig
) -> dict[str, str]:
    """Every group of the audit whole on one side, stratified by class (StratifiedGroupKFold).

    Test is fold `fold`, validation fold `fold + 1` (mod folds), train the rest. A group is
    stratified by its majority class. Label-conflict groups (members of different classes) are
    `excluded` with conflicts: drop, or kept whole, each image with its own class, with conflicts: keep.
    Returns file -> split.
    """
    missing = [f for f in files if f not in groups]
    if missing:
        raise DataError(f"the audit's groups.csv has no group for {len(missing)} images, e.g. {missing[0]}. "
                        "Run `dvc repro audit` so that it covers every image of the manifest.")  # fmt: skip
    # Sorted by name so that the assignment does not depend on the order of the input.
    pairs = sorted(zip(files, labels))
    members = defaultdict(list)
    for f, label in pairs:
        members[groups[f]].append(label)
    conflicting = conflict_groups(groups, dict(pairs))
    assignment = {}
    if config.conflicts == "drop":
        assignment = {f: EXCLUDED for f, _ in pairs if groups[f] in conflicting}
        pairs = [(f, label) for f, label in pairs if groups[f] not in conflicting]
    group_of = np.array([groups[f] for f, _ in pairs])
    stratum = [_majority_class(members[g]) for g in group_of]
    folds = StratifiedGroupKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    fold_of = np.empty(len(pairs), dtype=int)
    try:
        for k, (_, held_out) in enumerate(folds.split(np.zeros(len(pairs)), stratum, group_of)):
            fold_of[held_out] = k
    except ValueError as err:  # too few images or groups for that many folds
        raise ConfigError(f"split.folds: cannot make {config.folds} grouped folds of these {len(pairs)} images "
                          f"({err}). Use fewer folds or split.strategy study.") from err  # fmt: skip
    val_fold = (config.fold + 1) % config.folds
    for (f, _), k in zip(pairs, fold_of):
        assignment[f] = "test" if k == config.fold else "val" if k == val_fold else "train"
    return assignment


def make_split(
    files: list[str], labels: list[str], config: SplitConfig, groups: Mapping[str, int] | None = None
) -> dict[str, str]:
    """Dispatch on split.strategy (validated in config); `groups` (file -> audit group) only for grouped."""
    if config.strategy == "study":
        return study_split(files, labels, config)
    if config.strategy == "grouped":
        if groups is None:
            raise ValueError("split.strategy grouped needs the audit's groups (file -> group id)")
        return grouped_split(files, labels, groups, config)
    raise ValueError(f"Invalid split.strategy {config.strategy!r}. Only study and grouped are supported.")


def write_split(path: Path, files: list[str], labels: list[str], assignment: dict[str, str]) -> None:
    """path as CSV (file, class, split), in the order of files."""
    write_csv(path, ["file", "class", "split"], ([f, label, assignment[f]] for f, label in zip(files, labels)))


def read_split(path) -> dict[str, str]:
    """file -> split (train, val, test or excluded) from data/split.csv."""
    with open(path, newline="") as f:
        return {row["file"]: row["split"] for row in csv.DictReader(f)}
