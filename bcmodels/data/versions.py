"""The three versions of every image that the shortcut tests compare, with the lesion masks: the image store
(data/processed), the same images with the marks removed and with the lesion removed (data/mark_free,
data/lesion_free, made by the edits stage), and data/masks; all in store order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bcmodels.config.schema import CLASSES
from bcmodels.errors import DataError
from bcmodels.formats.masks import read_masks
from bcmodels.formats.store import read_images, read_index


@dataclass(frozen=True)
class Stores:
    """The three versions of every image and the lesion masks, in store order."""

    files: list[str]
    labels: np.ndarray
    original: np.ndarray
    mark_free: np.ndarray
    lesion_free: np.ndarray
    masks: np.ndarray


def read_stores(store: Path, mark_free: Path, lesion_free: Path, masks_dir: Path) -> Stores:
    """The image store, its two edits and the masks; all must list the same images in the same order."""
    index = read_index(store)
    versions = [read_images(store, len(index))]
    for edited in (mark_free, lesion_free):
        if read_index(edited) != index:
            raise DataError(f"{edited}: lists other images than {store}; rerun `dvc repro edits`")
        versions.append(read_images(edited, len(index)))
    rows, masks = read_masks(masks_dir)
    if [r.file for r in rows] != [r.file for r in index] or masks.shape[1:] != versions[0].shape[1:3]:
        raise DataError(f"{masks_dir}: not aligned with {store}; rerun `dvc repro preprocess`")
    labels = np.array([CLASSES.index(r.label) for r in index])
    return Stores([r.file for r in index], labels, *versions, masks.astype(bool))
