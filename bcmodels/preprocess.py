"""Decode the 780 BUSI images once into one uint8 array (N, S, S, 3) plus an index CSV."""

from __future__ import annotations

import csv
import functools
import multiprocessing
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from bcmodels.config import PreprocessConfig
from bcmodels.download import ManifestEntry
from bcmodels.errors import DataError
from bcmodels.fileio import atomic_path, write_csv

IMAGES_FILE = "images.npy"
INDEX_FILE = "index.csv"


def _study_resize_crop(image: Image.Image, short_side: int, size: int) -> Image.Image:
    """torchvision's Resize(short_side) then CenterCrop(size) on a PIL image, with its rounding rules.

    Written out in PIL so the worker processes need not import torch (which costs seconds per process).
    """
    w, h = image.size
    if w <= h:
        new_w, new_h = short_side, int(short_side * h / w)
    else:
        new_w, new_h = int(short_side * w / h), short_side
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def to_square(image: Image.Image, config: PreprocessConfig) -> Image.Image:
    """Apply the configured geometry: an RGB image of image_size x image_size."""
    image = image.convert("RGB")
    size = config.image_size
    if config.geometry == "study":
        return _study_resize_crop(image, config.resize_short_side, size)
    if config.geometry == "resize":
        return image.resize((size, size), Image.Resampling.BILINEAR)
    # letterbox: the long side to `size`, centred on black, so nothing is cut and nothing distorted.
    scale = size / max(image.size)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    canvas = Image.new("RGB", (size, size))
    canvas.paste(image.resize((w, h), Image.Resampling.BILINEAR), ((size - w) // 2, (size - h) // 2))
    return canvas


def load_image(path: Path, config: PreprocessConfig) -> np.ndarray:
    """One image file to a (S, S, 3) uint8 array; the error names the file if it cannot be decoded."""
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(to_square(image, config), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot decode image ({err}). Re-run the download stage to restore it.") from err


def preprocess(raw_dir: Path, entries: list[ManifestEntry], config: PreprocessConfig, out_dir: Path) -> np.ndarray:
    """Write out_dir/images.npy and out_dir/index.csv for the manifest's images, in manifest order."""
    paths = [raw_dir / e.file for e in entries]
    workers = config.workers or os.cpu_count() or 1
    load = functools.partial(load_image, config=config)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        images = list(tqdm(pool.imap(load, paths, chunksize=8), total=len(paths), desc="preprocess", unit="image"))
    array = np.stack(images)
    with atomic_path(out_dir / IMAGES_FILE) as tmp:
        with tmp.open("wb") as f:
            np.save(f, array)
    write_csv(out_dir / INDEX_FILE, ["file", "class", "sha256"], ([e.file, e.label, e.sha256] for e in entries))
    return array


def read_index(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
