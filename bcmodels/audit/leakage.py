"""How much a split leaks: the validation and test images with a near-copy (an image of their audit group)
on another side, per class; and how many images, and test images, carry each kind of mark the overlay audit
finds. Written to metrics/data.json with the audit's counts."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path

from bcmodels.config.schema import CLASSES, SplitConfig
from bcmodels.data.partition import make_split
from bcmodels.errors import DataError
from bcmodels.formats.groups import GroupRow, read_groups, read_summary
from bcmodels.formats.overlays import KINDS, OverlayRow, read_overlays
from bcmodels.formats.split import EXCLUDED, SPLITS, read_split
from bcmodels.io.files import write_json


def _counts_per_class(files: list[str], rows: Mapping[str, GroupRow]) -> dict[str, int]:
    found = Counter(rows[f].label for f in files)
    return {**{c: found[c] for c in CLASSES}, "total": len(files)}


def leakage(rows: Mapping[str, GroupRow], assignment: Mapping[str, str]) -> dict:
    """Per split and class, the images with a near-copy on another side (excluded images are on none).

    Nested dicts of numbers only, for `dvc metrics diff`.
    """
    unknown = sorted(set(assignment) - set(rows))
    if unknown:
        raise DataError(
            f"the split names {len(unknown)} images that the audit has no group for, e.g. {unknown[0]}. "
            "Run `dvc repro audit` and then the split again."
        )
    sides = defaultdict(set)
    for f, side in assignment.items():
        sides[rows[f].group].add(side)
    by_split = defaultdict(list)
    for f, side in assignment.items():
        by_split[side].append(f)

    def with_copy_in(side: str, others: set[str]) -> dict[str, int]:
        return _counts_per_class([f for f in by_split[side] if sides[rows[f].group] & others], rows)

    return {
        "split": {s: len(by_split[s]) for s in (*SPLITS, EXCLUDED)},
        "near_copy_in_train": {"val": with_copy_in("val", {"train"}), "test": with_copy_in("test", {"train"})},
        "test_near_copy_in_train_or_val": with_copy_in("test", {"train", "val"}),
    }


def marks(overlays: Mapping[str, OverlayRow], files: list[str]) -> dict[str, dict[str, int]]:
    """Per kind of mark (and the axilla view), how many of files carry it, per class."""
    missing = [f for f in files if f not in overlays]
    if missing:
        raise DataError(f"the overlay audit has no row for {missing[0]}; run `dvc repro overlays`")
    found = {kind: [f for f in files if overlays[f].flag(kind)] for kind in KINDS}
    found["axilla_view"] = [f for f in files if overlays[f].view == "axilla"]
    found["any_mark"] = [f for f in files if any(overlays[f].flag(k) for k in ("calipers", "text", "colour"))]
    return {
        name: {**{c: sum(1 for f in chosen if overlays[f].label == c) for c in CLASSES}, "total": len(chosen)}
        for name, chosen in found.items()
    }


def _tested(assignment: Mapping[str, str]) -> list[str]:
    return [f for f, side in assignment.items() if side == "test"]


def benchmark_folds(rows: Mapping[str, GroupRow], overlays: Mapping[str, OverlayRow], config: SplitConfig) -> dict:
    """Per test fold of the grouped split (the cross-validation benchmark's folds, made here as its split stages
    make them): the test images with a near-copy in train or validation, and the marks on the test images."""
    files, labels = list(rows), [r.label for r in rows.values()]
    folds = {}
    for fold in range(config.folds):
        grouped = dataclasses.replace(config, strategy="grouped", fold=fold)
        assignment = make_split(files, labels, grouped, rows)
        folds[f"fold{fold}"] = {
            "test_near_copy_in_train_or_val": leakage(rows, assignment)["test_near_copy_in_train_or_val"],
            "marks": marks(overlays, _tested(assignment)),
        }
    return folds


def data_metrics(
    audit_summary: dict,
    rows: Mapping[str, GroupRow],
    overlays: Mapping[str, OverlayRow],
    assignment: Mapping[str, str],
    split_config: SplitConfig,
) -> dict:
    """metrics/data.json: the audit's counts (without its file lists), the leakage of this split, the marks on
    all images and on this split's test images, and both for every fold of the benchmark."""
    counts = {k: v for k, v in audit_summary.items() if k != "label_conflict_groups"}  # numbers only
    return {
        **counts,
        **leakage(rows, assignment),
        "marks": {"all": marks(overlays, list(rows)), "test": marks(overlays, _tested(assignment))},
        "benchmark_folds": benchmark_folds(rows, overlays, split_config),
    }


def write_data_metrics(audit_dir: Path, split: Path, out: Path, split_config: SplitConfig) -> dict:
    """Read the audit's groups.csv, audit.json and overlays.csv and a split; write and return metrics/data.json's
    content."""
    metrics = data_metrics(
        read_summary(audit_dir / "audit.json"),
        read_groups(audit_dir / "groups.csv"),
        read_overlays(audit_dir / "overlays.csv"),
        read_split(split),
        split_config,
    )
    write_json(out, metrics)
    return metrics
