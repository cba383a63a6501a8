"""Duplicate audit of the raw images: exact copies, near-copies and label conflicts, and the leakage they cause.

Exact copies have identical decoded pixels in the raw file (the 224 x 224 store is not enough: its
centre crop can hide a difference at the edges). Near-copies are the same frame rescaled, cropped a
little or shifted in intensity: their perceptual hashes (imagehash.phash of the greyscale image) differ
in at most `audit.threshold` bits. Groups are the connected components over all such pairs, so copies
of copies land in one group; a group whose images carry different classes is a label conflict.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import multiprocessing
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from bcmodels.config import CLASSES, AuditConfig
from bcmodels.errors import DataError
from bcmodels.fileio import atomic_path, write_csv
from bcmodels.preprocess import decode, to_rgb

GROUP_COLUMNS = ["file", "class", "group", "group_size", "exact_group", "conflict"]


@dataclass(frozen=True)
class Audit:
    """Every image's groups, in the order of `files`; group ids are numbered in that order from 0."""

    files: list[str]
    labels: list[str]
    distances: np.ndarray  # (N, N) Hamming distances between the perceptual hashes
    group: list[int]  # near-duplicate group (exact copies included); a lone image is a group of one
    exact_group: list[int | None]  # group of identical-pixel copies; None for an image without one


@dataclass(frozen=True)
class GroupRow:
    """One row of groups.csv."""

    label: str
    group: int
    group_size: int
    exact_group: int | None
    conflict: bool


def fingerprint(path: Path, hash_size: int) -> tuple[str, np.ndarray]:
    """sha256 of the decoded pixels (with mode and size) and the perceptual hash bits of one raw image."""
    image = decode(path)  # the preprocess stage's rules: upright, and a broken or oversized file is refused
    # Mode and size go into the digest so that equal bytes of different shapes never match.
    pixels = hashlib.sha256(f"{image.mode} {image.size}".encode() + image.tobytes()).hexdigest()
    try:
        grey = to_rgb(image).convert("L")
    except ValueError as err:  # a mode the preprocess stage refuses as well
        raise DataError(f"{path}: {err}. Convert it to 8-bit RGB or grey, or leave it out of the manifest.") from err
    return pixels, imagehash.phash(grey, hash_size=hash_size).hash.ravel()


def hamming_distances(bits: np.ndarray) -> np.ndarray:
    """(N, B) bool hash bits to the (N, N) matrix of bit differences: popcount of XOR on packed uint64 words."""
    n, width = bits.shape
    padded = np.zeros((n, -(-width // 64) * 64), dtype=bool)
    padded[:, :width] = bits
    words = np.packbits(padded, axis=1).view(np.uint64)
    return np.bitwise_count(words[:, None, :] ^ words[None, :, :]).sum(axis=2, dtype=np.int64)


def _numbered_by_first_member(labels: Sequence) -> list[int]:
    """Relabel groups 0, 1, 2... in the order their first image appears, so ids follow the file order."""
    order = {label: k for k, label in enumerate(dict.fromkeys(labels))}
    return [order[label] for label in labels]


def exact_groups(digests: Sequence[str]) -> list[int | None]:
    """Per image, its group of identical-pixel copies, or None when no other image has its pixels."""
    copies = Counter(digests)
    ids = {d: k for k, d in enumerate(dict.fromkeys(d for d in digests if copies[d] > 1))}
    return [ids.get(d) for d in digests]


def near_groups(distances: np.ndarray, exact: Sequence[int | None], threshold: int) -> list[int]:
    """Per image, its group: connected components over all pairs within `threshold` bits or exact copies.

    Components are the transitive closure (what union-find computes): copies of copies share a group
    even when they are further apart than the threshold. Exact copies are linked explicitly rather
    than trusted to hash alike.
    """
    exact = np.array([-1 if g is None else g for g in exact])
    linked = (distances <= threshold) | ((exact[:, None] == exact[None, :]) & (exact[:, None] >= 0))
    _, components = connected_components(coo_matrix(linked), directed=False)
    return _numbered_by_first_member(components.tolist())


def audit_images(raw_dir: Path, files: list[str], labels: list[str], config: AuditConfig, workers: int = 1) -> Audit:
    """Fingerprint every raw image (decoding dominates: `workers` processes share it) and group copies."""
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir}: not found. Run `dvc repro download` first.")
    paths = [raw_dir / f for f in files]
    hash_one = functools.partial(fingerprint, hash_size=config.hash_size)
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            digests, bits = zip(*pool.map(hash_one, paths, chunksize=16))
    else:
        digests, bits = zip(*map(hash_one, paths))
    distances = hamming_distances(np.stack(bits))
    exact = exact_groups(digests)
    return Audit(
        files=list(files),
        labels=list(labels),
        distances=distances,
        group=near_groups(distances, exact, config.threshold),
        exact_group=exact,
    )


def conflict_groups(groups: Mapping[str, int], labels: Mapping[str, str]) -> set[int]:
    """Groups whose images (those in `labels`) carry more than one class."""
    classes = defaultdict(set)
    for file, label in labels.items():
        classes[groups[file]].add(label)
    return {g for g, found in classes.items() if len(found) > 1}


def group_rows(audit: Audit) -> dict[str, GroupRow]:
    """file -> its row of groups.csv."""
    sizes = Counter(audit.group)
    conflicts = conflict_groups(dict(zip(audit.files, audit.group)), dict(zip(audit.files, audit.labels)))
    return {
        f: GroupRow(label, g, sizes[g], exact, g in conflicts)
        for f, label, g, exact in zip(audit.files, audit.labels, audit.group, audit.exact_group)
    }


def write_groups(path: Path, rows: Mapping[str, GroupRow]) -> None:
    """groups.csv: one row per image; exact_group is empty for an image without an identical copy."""

    def cells(f: str, r: GroupRow) -> list:
        exact = "" if r.exact_group is None else r.exact_group
        return [f, r.label, r.group, r.group_size, exact, "yes" if r.conflict else "no"]

    write_csv(path, GROUP_COLUMNS, (cells(f, r) for f, r in rows.items()))


def read_groups(path: Path) -> dict[str, GroupRow]:
    """file -> its row of groups.csv; a missing or foreign file is a DataError that says to run the audit."""
    if not Path(path).is_file():
        raise DataError(f"{path}: not found. Run `dvc repro audit` (the grouped split needs its groups).")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != GROUP_COLUMNS:
            raise DataError(f"{path}: expected columns {', '.join(GROUP_COLUMNS)}. Run `dvc repro audit` again.")
        return {
            r["file"]: GroupRow(r["class"], int(r["group"]), int(r["group_size"]),
                                int(r["exact_group"]) if r["exact_group"] else None, r["conflict"] == "yes")
            for r in reader
        }  # fmt: skip


def pair_counts(distances: np.ndarray, thresholds: Sequence[int]) -> dict[str, int]:
    """Number of image pairs whose hashes differ in at most t bits, for each t."""
    upper = distances[np.triu_indices(len(distances), k=1)]
    return {str(t): int((upper <= t).sum()) for t in thresholds}


def _multi_member(groups: Sequence[int | None]) -> dict[str, int]:
    """Groups with two or more images, and the images in them."""
    sizes = Counter(g for g in groups if g is not None)
    big = [n for n in sizes.values() if n > 1]
    return {"groups": len(big), "images": sum(big)}


def summarize(audit: Audit, rows: Mapping[str, GroupRow], config: AuditConfig) -> dict:
    """The content of audit.json: counts, the label-conflict groups with their files, pair counts."""
    members = defaultdict(dict)
    for f, r in rows.items():
        if r.conflict:
            members[r.group][f] = r.label
    per_class = Counter(audit.labels)
    return {
        "hash": f"phash {config.hash_size}x{config.hash_size}",
        "threshold": config.threshold,
        "images": {**{c: per_class[c] for c in CLASSES}, "total": len(audit.files)},
        "exact_duplicates": _multi_member(audit.exact_group),
        "near_duplicates": _multi_member(audit.group),  # exact copies included
        "label_conflicts": {"groups": len(members), "images": sum(len(m) for m in members.values())},
        "pairs_within_bits": pair_counts(audit.distances, sorted({*config.report_thresholds, config.threshold})),
        "label_conflict_groups": [{"group": g, "members": m} for g, m in sorted(members.items())],
    }


def contact_sheet(rows: Sequence[Sequence[tuple[Path, str]]], path: Path, title: str, thumb: int = 160) -> None:
    """A PNG with one row of thumbnails per entry of rows; each (image, caption) captioned underneath.

    Drawn with Pillow's built-in font and saved without metadata, so the same input gives the same bytes.
    """
    font = ImageFont.load_default()
    line = 14
    caption_lines = max((caption.count("\n") + 1 for row in rows for _, caption in row), default=1)
    cell_w, cell_h = thumb + 10, thumb + 6 + line * caption_lines
    columns = max((len(row) for row in rows), default=1)
    sheet = Image.new("RGB", (max(cell_w * columns, 400), 2 * line + cell_h * max(len(rows), 1)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((5, 4), title if rows else f"{title}: none", fill="black", font=font)
    for r, row in enumerate(rows):
        for c, (image_path, caption) in enumerate(row):
            x, y = c * cell_w + 5, 2 * line + r * cell_h
            image = to_rgb(decode(image_path))
            image.thumbnail((thumb, thumb))
            sheet.paste(image, (x, y))
            draw.multiline_text((x, y + thumb + 3), caption, fill="black", font=font, spacing=2)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def conflict_sheet(raw_dir: Path, summary: dict, path: Path) -> None:
    """plots/audit/label_conflicts.png: one row per label-conflict group."""
    rows = [
        [(raw_dir / f, f"{Path(f).name}\n{label}") for f, label in group["members"].items()]
        for group in summary["label_conflict_groups"]
    ]
    contact_sheet(rows, path, "Label-conflict groups: one row per group of copies filed under different classes")


def _counts_per_class(files: list[str], rows: Mapping[str, GroupRow]) -> dict[str, int]:
    found = Counter(rows[f].label for f in files)
    return {**{c: found[c] for c in CLASSES}, "total": len(files)}


def leakage(rows: Mapping[str, GroupRow], assignment: Mapping[str, str]) -> dict:
    """Per split and class, the images with a near-copy (an image of their group) on another side.

    `excluded` images (split.EXCLUDED) are on no side. Returns nested dicts of numbers only, for `dvc metrics diff`.
    """
    unknown = sorted(set(assignment) - set(rows))
    if unknown:
        raise DataError(f"the split names {len(unknown)} images that the audit has no group for, e.g. {unknown[0]}. "
                        "Run `dvc repro audit` and then the split again.")  # fmt: skip
    sides = defaultdict(set)
    for f, side in assignment.items():
        sides[rows[f].group].add(side)
    by_split = defaultdict(list)
    for f, side in assignment.items():
        by_split[side].append(f)

    def with_copy_in(side: str, others: set[str]) -> dict[str, int]:
        hits = [f for f in by_split[side] if sides[rows[f].group] & others]
        return _counts_per_class(hits, rows)

    return {
        "split": {s: len(by_split[s]) for s in ("train", "val", "test", "excluded")},
        "near_copy_in_train": {"val": with_copy_in("val", {"train"}), "test": with_copy_in("test", {"train"})},
        "test_near_copy_in_train_or_val": with_copy_in("test", {"train", "val"}),
    }


def data_metrics(summary: dict, rows: Mapping[str, GroupRow], assignment: Mapping[str, str]) -> dict:
    """metrics/data.json: the audit's counts (without its file lists) and the leakage of this split."""
    counts = {k: v for k, v in summary.items() if k not in ("hash", "label_conflict_groups")}
    return {**counts, **leakage(rows, assignment)}
