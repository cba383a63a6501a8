"""data/processed/: the image store, every image at image_size x image_size RGB in one uint8 array
(images.npy, N x S x S x 3) with its index (index.csv: file, class, sha256 of the raw file), in manifest order.
Written by preprocess; read by training, evaluation and the benchmark. The lesion masks, in the same order and
geometry, are a store of their own (formats.masks), so that training does not depend on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bcmodels.errors import DataError
from bcmodels.io.files import atomic_dir, read_csv, write_csv

IMAGES_FILE = "images.npy"
INDEX_FILE = "index.csv"
INDEX_COLUMNS = ("file", "class", "sha256")
MADE_BY = "dvc repro preprocess"


@dataclass(frozen=True)
class IndexRow:
    file: str
    label: str
    sha256: str


def write_store(out_dir: Path, rows: list[IndexRow], images: np.ndarray) -> None:
    """Both files or neither: out_dir is replaced only when both are complete."""
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(rows):
        raise ValueError(f"expected {len(rows)} uint8 images of N x S x S x 3, got {images.dtype} {images.shape}")
    with atomic_dir(out_dir) as tmp:
        with (tmp / IMAGES_FILE).open("wb") as f:
            np.save(f, images)
        write_csv(tmp / INDEX_FILE, INDEX_COLUMNS, ([r.file, r.label, r.sha256] for r in rows))


def read_index(store_dir: Path) -> list[IndexRow]:
    rows = read_csv(Path(store_dir) / INDEX_FILE, INDEX_COLUMNS, MADE_BY)
    return [IndexRow(r["file"], r["class"], r["sha256"]) for r in rows]


def read_images(store_dir: Path, expected: int) -> np.ndarray:
    """The (N, S, S, 3) uint8 array; its length must match the index's."""
    path = Path(store_dir) / IMAGES_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; `{MADE_BY}` makes it")
    try:
        images = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable image store ({err}); rerun `{MADE_BY}`") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or len(images) != expected:
        raise DataError(
            f"{path}: {images.dtype} {images.shape} does not match its index of {expected} images; rerun `{MADE_BY}`"
        )
    return images
