"""The preprocess stage: every image of the manifest, decoded once, into the image store (formats.store), and
its lesion masks, joined and made square by the same geometry, into the mask store (formats.masks)."""

from __future__ import annotations

import functools
import multiprocessing
import os
from pathlib import Path

import numpy as np

from bcmodels.config.schema import PreprocessConfig
from bcmodels.formats.manifest import ManifestEntry, masks_by_image
from bcmodels.formats.masks import MaskRow, write_masks
from bcmodels.formats.store import IndexRow, write_store
from bcmodels.io.images import load_square_with_mask
from bcmodels.io.progress import progress


def _load(job: tuple[Path, list[Path]], config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    image, masks = job
    return load_square_with_mask(image, masks, config.geometry, config.image_size, config.resize_short_side)


def preprocess(
    raw_dir: Path, entries: list[ManifestEntry], config: PreprocessConfig, out_dir: Path, masks_dir: Path
) -> np.ndarray:
    """Write the store of the manifest's images to out_dir and of their masks to masks_dir, both in manifest
    order; returns the image array. entries: the manifest's images and masks (an image may have none).

    Decoding dominates, so it is spread over config.workers processes (spawned, so no torch import in them).
    """
    images = [e for e in entries if e.kind == "image"]
    masks = masks_by_image(entries)
    jobs = [(raw_dir / e.file, [raw_dir / m.file for m in masks.get(e.file, [])]) for e in images]
    workers = min(config.workers or os.cpu_count() or 1, len(jobs))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        loaded = list(
            progress(
                pool.imap(functools.partial(_load, config=config), jobs, chunksize=8),
                total=len(jobs),
                desc="preprocess",
                unit="image",
            )
        )
    array = np.stack([image for image, _ in loaded])
    write_store(out_dir, [IndexRow(e.file, e.label, e.sha256) for e in images], array)
    rows = [MaskRow(e.file, e.label, len(masks.get(e.file, []))) for e in images]
    write_masks(masks_dir, rows, np.stack([mask for _, mask in loaded]))
    return array
