"""The edits stage: two image stores in the format of data/processed (formats.store), made by inpainting the raw
images before they are made square, for the shortcut tests of the cross-validation benchmark (docs/shortcuts.md).

- data/mark_free: every mark the overlay audit found (data/audit/overlays.csv; edits.marks says which kinds)
  removed: the boxes of caliper crosses, of the operator's text and of the scanner's logo; the dotted measuring
  line between two crosses, which the audit does not box (found here: `measuring_lines`); and in an image with
  colour its coloured pixels (not its whole box, which for Doppler covers the lesion). Each grows by
  edits.mark_margin_px to take in anti-aliased edges. An image with nothing to remove comes out byte for byte as
  in data/processed.
- data/lesion_free: the lesion (the image's mask files joined, grown by edits.lesion_margin_px to take in the
  rim a hand tracing leaves out) removed; the marks are kept, so that a model reading calipers still can. A normal
  image gets a sham edit: the lesion mask of a benign or malignant image, stretched to its size, repainted on its
  tissue, so that a model's reaction to a repainted patch can be told from its reaction to a missing lesion.

Inpainting is OpenCV's cv2.inpaint with INPAINT_TELEA (Telea 2004, a fast marching method): each removed pixel
is filled from the known pixels within edits.radius, from the edge inwards. It fills thin marks convincingly; a
hole as large as a lesion becomes a smooth patch with radial streaks and no speckle (plots/audit/edits.png).
Edits work on the raw image, where the audit's boxes are; the result is made square by the geometry of preprocess
(io/images.py to_square), so the stores are aligned with data/processed and data/masks pixel for pixel.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bcmodels.config.schema import EditsConfig, PreprocessConfig
from bcmodels.errors import ConfigError, DataError
from bcmodels.formats.manifest import ManifestEntry, masks_by_image
from bcmodels.formats.overlays import KINDS, Box, OverlayRow
from bcmodels.formats.store import IndexRow, write_store
from bcmodels.io.images import decode, join_masks, to_rgb, to_square
from bcmodels.io.progress import progress

MARKS_MADE_BY = "dvc repro overlays"
TOPHAT = 5  # pixels: wider than a measuring line's dot (1-2), narrower than the tissue's bright layers


@dataclass(frozen=True)
class Job:
    """One image: its file, its mask files, what is drawn on it, and the masks of its sham edit (normal images)."""

    image: Path
    masks: tuple[Path, ...]
    marks: OverlayRow
    sham: tuple[Path, ...]


@dataclass(frozen=True)
class Edited:
    """One raw image, its two edits, and the masks that made them (raw pixels)."""

    raw: np.ndarray
    mark_free: np.ndarray
    lesion_free: np.ndarray
    marks: np.ndarray
    lesion: np.ndarray  # the lesion, or the sham patch of a normal image


def check_kinds(kinds: Sequence[str]) -> None:
    """edits.marks names kinds of the overlay audit, each once."""
    for i, kind in enumerate(kinds):
        if kind not in KINDS:
            raise ConfigError(f"edits.marks[{i}]: invalid value {kind!r}. Only {', '.join(KINDS)} are supported.")
    if len(set(kinds)) != len(kinds):
        raise ConfigError(f"edits.marks: names a kind twice: {list(kinds)}")


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    """mask (H, W) grown by px pixels in every direction (a disc), as bool."""
    if px == 0 or not mask.any():
        return mask.astype(bool)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), disc) > 0


def _centre(box: Box) -> np.ndarray:
    return np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])


def _inside(points: np.ndarray, box: Box) -> np.ndarray:
    x, y, w, h = box
    return (x <= points[:, 0]) & (points[:, 0] < x + w) & (y <= points[:, 1]) & (points[:, 1] < y + h)


def measuring_lines(grey: np.ndarray, crosses: Sequence[Box], contrast: float, share: float) -> list[tuple[Box, Box]]:
    """The pairs of caliper crosses joined by a dotted measuring line: along at least `share` of the straight way
    between their centres (outside the crosses), a pixel within one of it stands `contrast` grey levels out of a
    top-hat of the frame. Dots are 1-2 pixels with gaps as wide; the tissue between two crosses is rarely so."""
    kernel = np.ones((TOPHAT, TOPHAT), np.uint8)
    bright = cv2.dilate(cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel), np.ones((3, 3), np.uint8)) >= contrast
    lines = []
    for a, b in itertools.combinations(crosses, 2):
        start, end = _centre(a), _centre(b)
        steps = int(np.linalg.norm(end - start))
        points = start + np.outer(np.arange(steps) / max(steps, 1), end - start)
        points = points[~_inside(points, a) & ~_inside(points, b)]
        if len(points) < 3:
            continue  # crosses touching: no way between them to look at
        ys = np.clip(np.round(points[:, 1]).astype(int), 0, grey.shape[0] - 1)
        xs = np.clip(np.round(points[:, 0]).astype(int), 0, grey.shape[1] - 1)
        if bright[ys, xs].mean() >= share:
            lines.append((a, b))
    return lines


def _fill_boxes(mask: np.ndarray, boxes: Sequence[Box]) -> None:
    for x, y, w, h in boxes:
        mask[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)] = True


def mark_mask(rgb: np.ndarray, marks: OverlayRow, config: EditsConfig) -> np.ndarray:
    """(H, W) bool: the pixels of the raw image (H, W, 3) uint8 that removing the marks of config.marks repaints."""
    mask = np.zeros(rgb.shape[:2], dtype=bool)
    if "calipers" in config.marks:
        _fill_boxes(mask, marks.caliper_boxes)
        grey = rgb.max(axis=2)  # as the audit sees the frame: yellow marks count
        for a, b in measuring_lines(grey, marks.caliper_boxes, config.line_contrast, config.line_share):
            line = np.zeros(mask.shape, dtype=np.uint8)
            cv2.line(line, tuple(int(v) for v in _centre(a)), tuple(int(v) for v in _centre(b)), 1, thickness=1)
            mask |= line > 0
    if "text" in config.marks:
        _fill_boxes(mask, marks.text_boxes)
    if "logo" in config.marks and marks.logo_box is not None:
        _fill_boxes(mask, [marks.logo_box])
    if "colour" in config.marks and marks.colour:
        channels = rgb.astype(np.int16)
        mask |= channels.max(axis=2) - channels.min(axis=2) >= config.min_chroma
    return grow(mask, config.mark_margin_px)


def sham_mask(paths: Sequence[Path], size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: another image's lesion masks joined and stretched to `size` (width, height)."""
    donor = join_masks(paths, None).astype(np.uint8)
    return cv2.resize(donor, size, interpolation=cv2.INTER_NEAREST) > 0


def inpaint(rgb: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    """rgb (H, W, 3) uint8 with the pixels of mask filled by OpenCV's Telea inpainting; unchanged if mask is empty."""
    if not mask.any():
        return rgb
    return cv2.inpaint(np.ascontiguousarray(rgb), mask.astype(np.uint8), radius, cv2.INPAINT_TELEA)


def edit_raw(job: Job, config: EditsConfig) -> Edited:
    """A raw image with its marks removed, and with its lesion (or a sham patch) removed."""
    image = decode(job.image)
    raw = np.asarray(to_rgb(image), dtype=np.uint8)
    marks = mark_mask(raw, job.marks, config)
    lesion = join_masks(job.masks, image.size)
    if job.sham and not lesion.any():
        lesion = sham_mask(job.sham, image.size)
    lesion = grow(lesion, config.lesion_margin_px)
    return Edited(raw, inpaint(raw, marks, config.radius), inpaint(raw, lesion, config.radius), marks, lesion)


def square(rgb: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """A raw (H, W, 3) uint8 image made square as preprocess makes it."""
    return np.asarray(to_square(Image.fromarray(rgb), config.geometry, config.image_size, config.resize_short_side))


def _edit_square(job: Job, edits: EditsConfig, geometry: PreprocessConfig) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """Both edits made square, and whether each repainted anything and changed the square image."""
    e = edit_raw(job, edits)
    original, mark_free, lesion_free = (square(a, geometry) for a in (e.raw, e.mark_free, e.lesion_free))
    changed = [not np.array_equal(a, original) for a in (mark_free, lesion_free)]
    return mark_free, lesion_free, [bool(e.marks.any()), bool(e.lesion.any()), *changed]


def jobs_of(raw_dir: Path, entries: Sequence[ManifestEntry], marks: dict[str, OverlayRow], overlays: Path) -> list[Job]:
    """One job per image of the manifest, in its order; every image must have its row in overlays.csv. The i-th
    normal image's sham edit takes the masks of the lesion image i * (lesion images / normal images) along, so
    that the donors spread evenly over the benign and malignant images."""
    masks = masks_by_image(entries)
    images = [e for e in entries if e.kind == "image"]
    missing = [e.file for e in images if e.file not in marks]
    if missing:
        raise DataError(f"{overlays}: no row for {missing[0]} (and {len(missing) - 1} more); rerun `{MARKS_MADE_BY}`")
    donors = [e.file for e in images if e.label != "normal" and masks.get(e.file)]
    normal = [e.file for e in images if e.label == "normal"]
    sham = {f: donors[i * len(donors) // len(normal)] for i, f in enumerate(normal)} if donors else {}

    def paths(file: str | None) -> tuple[Path, ...]:
        return tuple(raw_dir / m.file for m in masks.get(file, [])) if file else ()

    return [Job(raw_dir / e.file, paths(e.file), marks[e.file], paths(sham.get(e.file))) for e in images]


@dataclass(frozen=True)
class EditFiles:
    """What the edits stage reads besides the raw images, and writes (paths from dvc.yaml)."""

    overlays: Path
    mark_free: Path
    lesion_free: Path


def make_edits(
    raw_dir: Path,
    entries: list[ManifestEntry],
    marks: dict[str, OverlayRow],
    config: EditsConfig,
    geometry: PreprocessConfig,
    out: EditFiles,
) -> dict[str, int]:
    """Write both stores (manifest order); returns how many images had marks, a lesion, a sham patch repainted,
    and how many of each edit changed the square image (the study geometry crops some marks away).

    Decoding and inpainting are spread over config.workers processes (spawned, so no torch import in them)."""
    check_kinds(config.marks)
    jobs = jobs_of(raw_dir, entries, marks, out.overlays)
    workers = min(config.workers or os.cpu_count() or 1, len(jobs))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        edited = list(
            progress(
                pool.imap(functools.partial(_edit_square, edits=config, geometry=geometry), jobs, chunksize=8),
                total=len(jobs),
                desc="edits",
                unit="image",
            )
        )
    rows = [IndexRow(e.file, e.label, e.sha256) for e in entries if e.kind == "image"]
    write_store(out.mark_free, rows, np.stack([e[0] for e in edited]))
    write_store(out.lesion_free, rows, np.stack([e[1] for e in edited]))
    flags = [e[2] for e in edited]
    return {
        "images": len(jobs),
        "marks": sum(f[0] for f in flags),
        "lesions": sum(f[1] and not j.sham for f, j in zip(flags, jobs)),
        "shams": sum(f[1] and bool(j.sham) for f, j in zip(flags, jobs)),
        "marks_in_store": sum(f[2] for f in flags),
        "lesions_in_store": sum(f[3] and not j.sham for f, j in zip(flags, jobs)),
        "shams_in_store": sum(f[3] and bool(j.sham) for f, j in zip(flags, jobs)),
    }
