"""The audit's files: data/audit/groups.csv (every image's near-copy group) and data/audit/pairs.csv (every
pair of images that a detector links). Written by the audit; groups.csv is read by the split and leakage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bcmodels.errors import DataError
from bcmodels.io.files import read_csv, read_json, write_csv, write_json

GROUP_COLUMNS = ("file", "class", "group", "group_size", "exact_group", "conflict")
PAIR_COLUMNS = ("file_a", "file_b", "phash_bits", "cosine", "found_by")
MADE_BY = "dvc repro audit"


@dataclass(frozen=True)
class GroupRow:
    """One image: its group of near-copies (a lone image is a group of one) and whether that group mixes classes."""

    label: str
    group: int
    group_size: int
    exact_group: int | None  # group of identical-pixel copies; None for an image without one
    conflict: bool


@dataclass(frozen=True)
class Pair:
    file_a: str
    file_b: str
    phash_bits: int
    cosine: float
    found_by: str  # phash, features, both, eye (audit.linked_by_eye) or exact


def write_groups(path: Path, rows: dict[str, GroupRow]) -> None:
    def cells(file: str, r: GroupRow) -> list:
        exact = "" if r.exact_group is None else r.exact_group
        return [file, r.label, r.group, r.group_size, exact, "yes" if r.conflict else "no"]

    write_csv(path, GROUP_COLUMNS, (cells(f, r) for f, r in rows.items()))


def read_groups(path: Path) -> dict[str, GroupRow]:
    """file -> its row of groups.csv."""
    rows = read_csv(path, GROUP_COLUMNS, MADE_BY)
    try:
        return {
            r["file"]: GroupRow(
                label=r["class"],
                group=int(r["group"]),
                group_size=int(r["group_size"]),
                exact_group=int(r["exact_group"]) if r["exact_group"] else None,
                conflict=r["conflict"] == "yes",
            )
            for r in rows
        }
    except ValueError as err:
        raise DataError(f"{path}: not a groups file of this project ({err}); rerun `{MADE_BY}`") from None


def write_pairs(path: Path, pairs: list[Pair]) -> None:
    rows = ([p.file_a, p.file_b, p.phash_bits, f"{p.cosine:.4f}", p.found_by] for p in pairs)
    write_csv(path, PAIR_COLUMNS, rows)


def read_pairs(path: Path) -> list[Pair]:
    rows = read_csv(path, PAIR_COLUMNS, MADE_BY)
    return [Pair(r["file_a"], r["file_b"], int(r["phash_bits"]), float(r["cosine"]), r["found_by"]) for r in rows]


def write_summary(path: Path, summary: dict) -> None:
    """data/audit/audit.json: the audit's counts and its label-conflict groups (bcmodels.audit.duplicates.summarize)."""
    write_json(path, summary)


def read_summary(path: Path) -> dict:
    summary = read_json(path, MADE_BY)
    if not isinstance(summary, dict) or "label_conflict_groups" not in summary or "pairs" not in summary:
        raise DataError(f"{path}: not an audit summary of this version; rerun `{MADE_BY}`")
    return summary
