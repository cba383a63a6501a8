"""Duplicate audit of the raw images: exact copies, near-copies by two detectors of different kinds, groups
and label conflicts.

- Exact copies have identical decoded pixels (mode, size and bytes) in the raw file; the 224 x 224 store is
  not enough, its centre crop can hide a difference at the edges.
- Perceptual hash: imagehash's phash of the greyscale image; near-copies differ in at most
  audit.phash.threshold bits. Good at rescaled and re-cropped copies of one frame.
- Deep features: pooled feature maps of an ImageNet MobileNetV2 (a mid-level and the last block) of the
  whole frame; near-copies have a similarity of at least audit.features.threshold. It also sees what a
  hash of the whole frame misses: shifted crops, other zooms, neighbouring frames of one sweep.
- By eye: pairs of one lesion that neither detector links at its threshold, listed in params.yaml
  (audit.linked_by_eye) after they were found independently and checked by eye.
Groups are the connected components over all pairs linked by either detector, by eye or by exact copy, so
copies of copies share a group; a group whose images carry different classes is a label conflict.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import multiprocessing
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from bcmodels.config.schema import CLASSES, AuditConfig
from bcmodels.errors import DataError, clip
from bcmodels.formats.groups import GroupRow, Pair, write_groups, write_pairs, write_summary
from bcmodels.formats.manifest import ManifestEntry
from bcmodels.io.images import decode, to_rgb
from bcmodels.render.contact_sheet import contact_sheet


@dataclass(frozen=True)
class Fingerprint:
    """What the audit needs of one raw image, computed where it is decoded."""

    pixels: str  # sha256 of the decoded pixels, with mode and size
    phash: np.ndarray  # (hash_size ** 2,) bool
    frame: np.ndarray  # (S, S, 3) uint8: the whole frame, resized square, for the feature network


@dataclass(frozen=True)
class Audit:
    """Every image's detector scores and groups, in the order of `files`; group ids follow that order from 0."""

    files: list[str]
    labels: list[str]
    phash_bits: np.ndarray  # (N, N) Hamming distances between the perceptual hashes
    cosine: np.ndarray  # (N, N) cosine similarities of the deep features
    exact_group: list[int | None]  # group of identical-pixel copies; None for an image without one
    group: list[int]  # near-copy group (exact copies included); a lone image is a group of one


def fingerprint(path: Path, hash_size: int, frame_size: int) -> Fingerprint:
    """One raw image, decoded by the project's rules (a broken or oversized file is refused, naming it)."""
    image = decode(path)
    # Mode and size go into the digest so that equal bytes of different shapes never match.
    pixels = hashlib.sha256(f"{image.mode} {image.size}".encode() + image.tobytes()).hexdigest()
    rgb = to_rgb(image)
    bits = imagehash.phash(rgb.convert("L"), hash_size=hash_size).hash.ravel()
    # The whole frame, stretched to a square: a centre crop would hide what makes crops of one frame alike.
    frame = np.asarray(rgb.resize((frame_size, frame_size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return Fingerprint(pixels, bits, frame)


def hamming_distances(bits: np.ndarray) -> np.ndarray:
    """(N, B) bool hash bits to the (N, N) matrix of bit differences: popcount of XOR on packed uint64 words."""
    n, width = bits.shape
    padded = np.zeros((n, -(-width // 64) * 64), dtype=bool)
    padded[:, :width] = bits
    words = np.packbits(padded, axis=1).view(np.uint64)
    return np.bitwise_count(words[:, None, :] ^ words[None, :, :]).sum(axis=2, dtype=np.int64)


def feature_vectors(frames: np.ndarray, weights: Path, mid_block: int, batch_size: int = 32) -> np.ndarray:
    """(N, S, S, 3) uint8 frames to unit descriptors whose dot product is the mean of two cosine similarities:
    of the pooled output of MobileNetV2's features[:mid_block] (mid-level texture and shape) and of its final
    pooled 1280 features (what the image shows). The mid level is what ties neighbouring frames and
    re-framed crops of one scan together; the final level alone confuses unrelated normal tissue earlier.
    """
    import torch  # the audit's only use of torch: keep it out of the hashing worker processes
    import torch.nn.functional as F

    from bcmodels.models.inference import standardize, to_unit_float
    from bcmodels.models.registry import build_model

    model = build_model("mobilenet_v2", num_classes=1000, image_size=frames.shape[1], weights=str(weights)).eval()
    model.to(memory_format=torch.channels_last)  # oneDNN's faster layout for these convolutions on the CPU
    early, late = model.features[:mid_block], model.features[mid_block:]
    vectors = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            batch = torch.from_numpy(frames[start : start + batch_size]).permute(0, 3, 1, 2)
            middle = early(standardize(to_unit_float(batch)).contiguous(memory_format=torch.channels_last))
            final = late(middle)
            parts = [F.normalize(x.mean(dim=(2, 3)), dim=1) for x in (middle, final)]
            vectors.append(torch.cat(parts, dim=1) / 2**0.5)
    return torch.cat(vectors).numpy().astype(np.float64)


def exact_groups(digests: Sequence[str]) -> list[int | None]:
    """Per image, its group of identical-pixel copies, or None when no other image has its pixels."""
    copies = Counter(digests)
    ids = {d: k for k, d in enumerate(dict.fromkeys(d for d in digests if copies[d] > 1))}
    return [ids.get(d) for d in digests]


def _exact_links(exact: Sequence[int | None]) -> np.ndarray:
    codes = np.array([-1 if g is None else g for g in exact])
    return (codes[:, None] == codes[None, :]) & (codes[:, None] >= 0)


def near_groups(linked: np.ndarray) -> list[int]:
    """Per image, its group: the connected components of the (N, N) link matrix, numbered in file order.

    Components are the transitive closure (what union-find computes): copies of copies share a group
    even when the two ends are further apart than a threshold.
    """
    _, components = connected_components(coo_matrix(linked), directed=False)
    order = {label: k for k, label in enumerate(dict.fromkeys(components.tolist()))}
    return [order[label] for label in components.tolist()]


def _eye_links(files: Sequence[str], config: AuditConfig) -> np.ndarray:
    """(N, N) bool: the pairs of audit.linked_by_eye; a file the manifest does not list is an error naming it."""
    index = {f: i for i, f in enumerate(files)}
    linked = np.zeros((len(files), len(files)), dtype=bool)
    for k, link in enumerate(config.linked_by_eye):
        for key, file in (("a", link.a), ("b", link.b)):
            if file not in index:
                raise DataError(
                    f"audit.linked_by_eye[{k}].{key}: {clip(repr(file))} is not an image of the manifest; "
                    "write it as <class>/<name>.png, as in data/busi_manifest.tsv"
                )
        if link.a == link.b:
            raise DataError(f"audit.linked_by_eye[{k}]: links {link.a!r} with itself")
        i, j = index[link.a], index[link.b]
        linked[i, j] = linked[j, i] = True
    return linked


def links(audit: Audit, config: AuditConfig) -> dict[str, np.ndarray]:
    """(N, N) bool matrices of the pairs each detector links, of the pairs linked by eye, and of exact copies."""
    return {
        "phash": audit.phash_bits <= config.phash.threshold,
        "features": audit.cosine >= config.features.threshold,
        "eye": _eye_links(audit.files, config),
        "exact": _exact_links(audit.exact_group),
    }


def audit_images(raw_dir: Path, files: list[str], labels: list[str], config: AuditConfig, workers: int = 1) -> Audit:
    """Fingerprint every raw image (decoding dominates: `workers` processes share it), embed, and group."""
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir}: not found. Run `dvc repro download` first.")
    paths = [raw_dir / f for f in files]
    one = functools.partial(fingerprint, hash_size=config.phash.hash_size, frame_size=config.features.image_size)
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            prints = pool.map(one, paths, chunksize=16)
    else:
        prints = list(map(one, paths))
    phash_bits = hamming_distances(np.stack([p.phash for p in prints]))
    features = config.features
    vectors = feature_vectors(np.stack([p.frame for p in prints]), Path(features.weights), features.mid_block)
    cosine = np.clip(vectors @ vectors.T, -1.0, 1.0)
    exact = exact_groups([p.pixels for p in prints])
    scored = Audit(list(files), list(labels), phash_bits, cosine, exact, group=[])
    linked = np.logical_or.reduce(list(links(scored, config).values()))
    return dataclasses.replace(scored, group=near_groups(linked))


def conflict_groups(groups: Sequence[int], labels: Sequence[str]) -> set[int]:
    """Groups whose images carry more than one class."""
    classes = defaultdict(set)
    for group, label in zip(groups, labels):
        classes[group].add(label)
    return {g for g, found in classes.items() if len(found) > 1}


def group_rows(audit: Audit) -> dict[str, GroupRow]:
    """file -> its row of groups.csv."""
    sizes = Counter(audit.group)
    conflicts = conflict_groups(audit.group, audit.labels)
    return {
        f: GroupRow(label, g, sizes[g], exact, g in conflicts)
        for f, label, g, exact in zip(audit.files, audit.labels, audit.group, audit.exact_group)
    }


def linked_pairs(audit: Audit, config: AuditConfig) -> list[Pair]:
    """Every pair that a detector links, with both scores and which detector(s) found it."""
    found = links(audit, config)
    pairs = []
    for i, j in zip(*np.nonzero(np.triu(np.logical_or.reduce(list(found.values())), k=1))):
        by = [name for name in ("phash", "features") if found[name][i, j]]
        if found["exact"][i, j]:
            label = "exact"
        elif by:
            label = "both" if len(by) == 2 else by[0]
        else:
            label = "eye"
        pairs.append(
            Pair(audit.files[i], audit.files[j], int(audit.phash_bits[i, j]), float(audit.cosine[i, j]), label)
        )
    return pairs


def _multi_member(groups: Sequence[int | None]) -> dict[str, int]:
    """Groups with two or more images, and the images in them."""
    sizes = Counter(g for g in groups if g is not None)
    big = [n for n in sizes.values() if n > 1]
    return {"groups": len(big), "images": sum(big), "largest": max(big, default=1)}


def _pair_counts(scores: np.ndarray, thresholds: Sequence[float], at_most: bool) -> dict[str, int]:
    upper = scores[np.triu_indices(len(scores), k=1)]
    return {f"{t:g}": int(((upper <= t) if at_most else (upper >= t)).sum()) for t in thresholds}


def summarize(audit: Audit, rows: dict[str, GroupRow], pairs: list[Pair], config: AuditConfig) -> dict:
    """The content of audit.json: counts per detector, groups, the label-conflict groups with their files."""
    members = defaultdict(dict)
    for f, r in rows.items():
        if r.conflict:
            members[r.group][f] = r.label
    per_class = Counter(audit.labels)
    found_by = Counter(p.found_by for p in pairs)
    return {
        "images": {**{c: per_class[c] for c in CLASSES}, "total": len(audit.files)},
        "pairs": {
            "phash_only": found_by["phash"],
            "features_only": found_by["features"],
            "both": found_by["both"],
            "exact": found_by["exact"],
            "by_eye": found_by["eye"],
            "total": len(pairs),
        },
        "exact_duplicates": _multi_member(audit.exact_group),
        "near_duplicates": _multi_member(audit.group),  # exact copies included
        "label_conflicts": {"groups": len(members), "images": sum(len(m) for m in members.values())},
        "phash_pairs_within_bits": _pair_counts(
            audit.phash_bits, sorted({*config.phash.report_thresholds, config.phash.threshold}), at_most=True
        ),
        "feature_pairs_at_cosine": _pair_counts(
            audit.cosine, sorted({*config.features.report_thresholds, config.features.threshold}), at_most=False
        ),
        "label_conflict_groups": [{"group": g, "members": m} for g, m in sorted(members.items())],
    }


# --- Contact sheets, to check the groups and the detectors by eye -----------------------------------


def conflict_sheet(raw_dir: Path, summary: dict, path: Path) -> None:
    """One row per label-conflict group, every member captioned with its file and class."""
    rows = [
        [(raw_dir / f, f"{Path(f).name}\n{label}") for f, label in group["members"].items()]
        for group in summary["label_conflict_groups"]
    ]
    contact_sheet(rows, path, "Label-conflict groups: one row per group of copies filed under different classes")


def disagreement_sheet(raw_dir: Path, pairs: list[Pair], path: Path, per_row: int = 3) -> None:
    """The pairs only one detector links, side by side: deep features only first (most similar first), then
    phash only (closest first)."""
    only = sorted(
        (p for p in pairs if p.found_by in ("features", "phash")),
        key=lambda p: (p.found_by == "phash", -p.cosine if p.found_by == "features" else p.phash_bits),
    )
    cells = [
        (raw_dir / f, f"{Path(f).name}\n{p.found_by} only: {p.phash_bits} bits, cos {p.cosine:.3f}")
        for p in only
        for f in (p.file_a, p.file_b)
    ]
    rows = [cells[i : i + 2 * per_row] for i in range(0, len(cells), 2 * per_row)]
    title = (
        f"Pairs only one detector links ({len(only)}), two images per pair, {per_row} pairs per row:\n"
        "'features only' = deep-feature cosine at or above its threshold, phash beyond its; 'phash only' the reverse"
    )
    contact_sheet(rows, path, title, thumb=150)


def eye_sheet(raw_dir: Path, config: AuditConfig, path: Path) -> None:
    """One row per pair of audit.linked_by_eye, captioned with why it is linked."""
    rows = [
        [(raw_dir / link.a, Path(link.a).name), (raw_dir / link.b, f"{Path(link.b).name}\n{link.why}")]
        for link in config.linked_by_eye
    ]
    contact_sheet(rows, path, "Pairs linked by eye (audit.linked_by_eye): one lesion, below both detectors' thresholds")


@dataclass(frozen=True)
class AuditFiles:
    """What the audit writes (paths from dvc.yaml)."""

    groups: Path
    pairs: Path
    summary: Path
    conflicts_sheet: Path
    disagreements_sheet: Path
    eye_sheet: Path


def run_audit(raw_dir: Path, entries: list[ManifestEntry], config: AuditConfig, out: AuditFiles, workers: int) -> dict:
    """Audit the manifest's raw images and write every output; returns the summary."""
    audit = audit_images(raw_dir, [e.file for e in entries], [e.label for e in entries], config, workers)
    rows = group_rows(audit)
    pairs = linked_pairs(audit, config)
    summary = summarize(audit, rows, pairs, config)
    write_groups(out.groups, rows)
    write_pairs(out.pairs, pairs)
    write_summary(out.summary, summary)
    conflict_sheet(raw_dir, summary, out.conflicts_sheet)
    disagreement_sheet(raw_dir, pairs, out.disagreements_sheet)
    eye_sheet(raw_dir, config, out.eye_sheet)
    return summary
