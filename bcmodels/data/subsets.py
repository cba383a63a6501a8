"""The image store and a split as tensors for training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bcmodels.config.schema import CLASSES
from bcmodels.errors import DataError
from bcmodels.formats.split import SPLITS, read_split
from bcmodels.formats.store import read_images, read_index


@dataclass(frozen=True)
class Subset:
    files: list[str]
    images: torch.Tensor  # (N, 3, S, S) uint8
    labels: torch.Tensor  # (N,) int64, indices into CLASSES

    def to(self, device: torch.device) -> Subset:
        """The same subset with images and labels on device (the whole store is small: 780 x 150 KB)."""
        return Subset(self.files, self.images.to(device), self.labels.to(device))


def load_subsets(store_dir: Path, split_path: Path) -> dict[str, Subset]:
    """train / val / test subsets of the store, in store order, as split_path assigns them.

    Images the split marks `excluded` (dropped label-conflict groups) are in none of them.
    """
    index = read_index(store_dir)
    images = torch.from_numpy(read_images(store_dir, len(index))).permute(0, 3, 1, 2)
    assignment = read_split(split_path)
    missing = [row.file for row in index if row.file not in assignment]
    if missing:
        raise DataError(f"{split_path}: no split for {missing[0]} (and {len(missing) - 1} more); rerun the split")
    subsets = {}
    for name in SPLITS:
        rows = [i for i, row in enumerate(index) if assignment[row.file] == name]
        subsets[name] = Subset(
            files=[index[i].file for i in rows],
            images=images[rows].contiguous(),
            labels=torch.tensor([CLASSES.index(index[i].label) for i in rows], dtype=torch.long),
        )
    return subsets
