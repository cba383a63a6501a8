"""How much a split leaks: the validation and test images with a near-copy (an image of their audit group)
on another side, per class. Written to metrics/data.json with the audit's counts."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path

from bcmodels.config.schema import CLASSES
from bcmodels.errors import DataError
from bcmodels.formats.groups import GroupRow, read_groups, read_summary
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


def data_metrics(audit_summary: dict, rows: Mapping[str, GroupRow], assignment: Mapping[str, str]) -> dict:
    """metrics/data.json: the audit's counts (without its file lists) and the leakage of this split."""
    counts = {k: v for k, v in audit_summary.items() if k != "label_conflict_groups"}  # numbers only
    return {**counts, **leakage(rows, assignment)}


def write_data_metrics(audit_dir: Path, split: Path, out: Path) -> dict:
    """Read the audit's groups.csv and audit.json and a split; write and return metrics/data.json's content."""
    metrics = data_metrics(
        read_summary(audit_dir / "audit.json"), read_groups(audit_dir / "groups.csv"), read_split(split)
    )
    write_json(out, metrics)
    return metrics
