"""The preprocessed image store and the split, as tensors ready for training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bcmodels.config import CLASSES
from bcmodels.preprocess import IMAGES_FILE, INDEX_FILE, read_index
from bcmodels.split import read_split

# The study normalised every model's input with ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Subset:
    files: list[str]
    images: torch.Tensor  # (N, 3, S, S) uint8
    labels: torch.Tensor  # (N,) int64, indices into CLASSES

    def to(self, device: torch.device) -> Subset:
        """The same subset with images and labels on device (the whole store is small: 780 x 150 KB)."""
        return Subset(self.files, self.images.to(device), self.labels.to(device))


def load_subsets(processed_dir: Path, split_path: Path) -> dict[str, Subset]:
    """train / val / test subsets of the uint8 store, in store order, as assigned by split.csv.

    Images the split marks `excluded` (dropped label-conflict groups) are in none of them.
    """
    index = read_index(processed_dir / INDEX_FILE)
    images = torch.from_numpy(np.load(processed_dir / IMAGES_FILE)).permute(0, 3, 1, 2)
    if len(index) != len(images):
        raise ValueError(f"{processed_dir}: {len(index)} index rows but {len(images)} images; rerun preprocess")
    assignment = read_split(split_path)
    missing = [row["file"] for row in index if row["file"] not in assignment]
    if missing:
        raise ValueError(f"{split_path}: no split for {missing[0]} (and {len(missing) - 1} more); rerun split")
    subsets = {}
    for name in ("train", "val", "test"):
        rows = [i for i, row in enumerate(index) if assignment[row["file"]] == name]
        subsets[name] = Subset(
            files=[index[i]["file"] for i in rows],
            images=images[rows].contiguous(),
            labels=torch.tensor([CLASSES.index(index[i]["class"]) for i in rows], dtype=torch.long),
        )
    return subsets


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, S, S) to float32 in [0, 1], on the images' device."""
    return images.float().div_(255.0)


def standardize(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] standardised with the ImageNet mean and std."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
