"""data/masks/: every image's lesion mask in the geometry of the image store, pixel for pixel aligned with it
(masks.npy, N x S x S uint8, 1 = lesion, the image's mask files joined; all 0 for a normal image), with its
index (index.csv: file, class, masks = how many mask files were joined), in manifest order like the store.
Written by preprocess; read by whatever asks where the lesion is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bcmodels.errors import DataError
from bcmodels.io.files import atomic_dir, read_csv, write_csv

MASKS_FILE = "masks.npy"
INDEX_FILE = "index.csv"
INDEX_COLUMNS = ("file", "class", "masks")
MADE_BY = "dvc repro preprocess"


@dataclass(frozen=True)
class MaskRow:
    file: str  # the image's file, as in the manifest
    label: str
    masks: int  # mask files joined


def write_masks(out_dir: Path, rows: list[MaskRow], masks: np.ndarray) -> None:
    """Both files or neither: out_dir is replaced only when both are complete."""
    if masks.dtype != np.uint8 or masks.ndim != 3 or len(masks) != len(rows) or masks.max(initial=0) > 1:
        raise ValueError(f"expected {len(rows)} uint8 masks of 0 and 1, N x S x S, got {masks.dtype} {masks.shape}")
    with atomic_dir(out_dir) as tmp:
        with (tmp / MASKS_FILE).open("wb") as f:
            np.save(f, masks)
        write_csv(tmp / INDEX_FILE, INDEX_COLUMNS, ([r.file, r.label, r.masks] for r in rows))


def read_masks(masks_dir: Path) -> tuple[list[MaskRow], np.ndarray]:
    """The index and the (N, S, S) uint8 masks; a missing, damaged or inconsistent store names the stage to run."""
    masks_dir = Path(masks_dir)
    index = read_csv(masks_dir / INDEX_FILE, INDEX_COLUMNS, MADE_BY)
    try:
        rows = [MaskRow(r["file"], r["class"], int(r["masks"])) for r in index]
    except ValueError:
        raise DataError(f"{masks_dir / INDEX_FILE}: a mask count is not a number; rerun `{MADE_BY}`") from None
    path = masks_dir / MASKS_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; `{MADE_BY}` makes it")
    try:
        masks = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable mask store ({err}); rerun `{MADE_BY}`") from None
    if masks.dtype != np.uint8 or masks.ndim != 3 or len(masks) != len(rows) or masks.max(initial=0) > 1:
        raise DataError(
            f"{path}: {masks.dtype} {masks.shape} is not {len(rows)} masks of 0 and 1 as its index says; "
            f"rerun `{MADE_BY}`"
        )
    return rows, masks
