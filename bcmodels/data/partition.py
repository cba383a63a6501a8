"""Which images train, validate and test: the study's own split, or a grouped split that keeps every
near-copy group of the audit whole on one side."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from bcmodels.config.schema import CLASSES, Params, SplitConfig
from bcmodels.errors import ConfigError, DataError
from bcmodels.formats.groups import GroupRow, read_groups
from bcmodels.formats.manifest import read_manifest
from bcmodels.formats.split import EXCLUDED, SPLITS, write_split


def study_split(files: list[str], labels: list[str], config: SplitConfig) -> dict[str, str]:
    """The study's split: names sorted per class (plain string sort), classes in CLASSES order,
    then two stratified train_test_split calls with the same seed (test first, then validation
    from the rest). Returns file -> split.
    """
    by_class = {c: sorted(f for f, label in zip(files, labels) if label == c) for c in CLASSES}
    ordered = [(f, c) for c in CLASSES for f in by_class[c]]
    xs, ys = [f for f, _ in ordered], [c for _, c in ordered]
    try:
        rest_x, test_x, rest_y, _ = train_test_split(
            xs, ys, test_size=config.test_fraction, stratify=ys, random_state=config.seed
        )
        train_x, val_x = train_test_split(
            rest_x, test_size=config.val_fraction, stratify=rest_y, random_state=config.seed
        )
    except ValueError as err:  # a fraction that leaves a set too small to hold every class
        raise ConfigError(
            f"split.test_fraction, split.val_fraction: cannot split {len(xs)} images that way ({str(err)[:200]})"
        ) from None
    assignment = {f: "train" for f in train_x}
    assignment.update({f: "val" for f in val_x})
    assignment.update({f: "test" for f in test_x})
    return assignment


def _majority_class(labels: list[str]) -> str:
    """The most frequent class; a tie goes to the class that comes first in CLASSES."""
    counts = Counter(labels)
    return max(CLASSES, key=lambda c: (counts[c], -CLASSES.index(c)))


def grouped_split(
    files: list[str], labels: list[str], groups: Mapping[str, GroupRow], config: SplitConfig
) -> dict[str, str]:
    """Every group of the audit whole on one side, stratified by class (StratifiedGroupKFold).

    Test is fold `fold`, validation fold `fold + 1` (mod folds), train the rest. A group is stratified by
    its majority class. Label-conflict groups are `excluded` with conflicts: drop, or kept whole, each
    image with its own class, with conflicts: keep. Returns file -> split.
    """
    missing = [f for f in files if f not in groups]
    if missing:
        raise DataError(
            f"the audit's groups have no row for {len(missing)} images, e.g. {missing[0]}. "
            "Run `dvc repro audit` so that they cover every image of the manifest."
        )
    # Sorted by name so that the assignment does not depend on the order of the input.
    pairs = sorted(zip(files, labels))
    assignment = {}
    if config.conflicts == "drop":
        assignment = {f: EXCLUDED for f, _ in pairs if groups[f].conflict}
        pairs = [(f, label) for f, label in pairs if not groups[f].conflict]
    members = defaultdict(list)
    for f, label in pairs:
        members[groups[f].group].append(label)
    group_of = np.array([groups[f].group for f, _ in pairs])
    stratum = [_majority_class(members[g]) for g in group_of]
    folds = StratifiedGroupKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    fold_of = np.empty(len(pairs), dtype=int)
    try:
        for k, (_, held_out) in enumerate(folds.split(np.zeros(len(pairs)), stratum, group_of)):
            fold_of[held_out] = k
    except ValueError as err:  # too few images or groups for that many folds
        raise ConfigError(
            f"split.folds: cannot make {config.folds} grouped folds of these {len(pairs)} images "
            f"({str(err)[:200]}). Use fewer folds or split.strategy study."
        ) from None
    val_fold = (config.fold + 1) % config.folds
    for (f, _), k in zip(pairs, fold_of):
        assignment[f] = "test" if k == config.fold else "val" if k == val_fold else "train"
    return assignment


def fold_of_repeat(seed: int, folds: int) -> int:
    """The test fold of the repeat run with this seed: seed mod folds, so repeats cover folds as well as seeds."""
    return seed % folds


def make_split(
    files: list[str], labels: list[str], config: SplitConfig, groups: Mapping[str, GroupRow] | None
) -> dict[str, str]:
    """Dispatch on split.strategy (validated in config); groups are the audit's, needed by grouped only."""
    if config.strategy == "study":
        assignment = study_split(files, labels, config)
    else:
        if groups is None:
            raise DataError("split.strategy grouped needs the audit's groups; run `dvc repro audit`")
        assignment = grouped_split(files, labels, groups, config)
    empty = [s for s in SPLITS if s not in assignment.values()]
    if empty:
        raise ConfigError(f"split: these settings leave the {empty[0]} set empty; change split.* in params.yaml")
    return assignment


def write_split_file(
    params: Params, groups_path: Path, out: Path, *, fold: int | None = None, seed: int | None = None
) -> str:
    """Split the manifest's images by params.split and write out; fold (cross-validation) forces the grouped
    split with that test fold, seed (a repeat run) picks fold_of_repeat. Returns a one-line summary."""
    config = params.split
    if fold is not None:
        if not 0 <= fold < config.folds:
            raise ConfigError(f"--fold: must be from 0 to split.folds - 1 ({config.folds - 1}), got {fold}")
        config = dataclasses.replace(config, strategy="grouped", fold=fold)
    elif seed is not None:
        config = dataclasses.replace(config, fold=fold_of_repeat(seed, config.folds))
    entries = read_manifest(params.download.manifest)
    files, labels = [e.file for e in entries], [e.label for e in entries]
    groups = read_groups(groups_path) if config.strategy == "grouped" else None
    assignment = make_split(files, labels, config, groups)
    write_split(out, files, labels, assignment)
    counts = Counter(assignment.values())
    where = f" (fold {config.fold} of {config.folds})" if config.strategy == "grouped" else ""
    excluded = f"; {counts[EXCLUDED]} images of label-conflict groups excluded" if counts[EXCLUDED] else ""
    return f"{out}: {config.strategy}{where}: " + " / ".join(f"{s} {counts[s]}" for s in SPLITS) + excluded
