"""The preprocess stage: every image of the manifest, decoded once, into the image store (formats.store)."""

from __future__ import annotations

import functools
import multiprocessing
import os
from pathlib import Path

import numpy as np

from bcmodels.config.schema import PreprocessConfig
from bcmodels.formats.manifest import ManifestEntry
from bcmodels.formats.store import IndexRow, write_store
from bcmodels.io.images import load_square
from bcmodels.io.progress import progress


def preprocess(raw_dir: Path, entries: list[ManifestEntry], config: PreprocessConfig, out_dir: Path) -> np.ndarray:
    """Write the store of the manifest's images to out_dir, in manifest order; returns the array.

    Decoding dominates, so it is spread over config.workers processes (spawned, so no torch import in them).
    """
    paths = [raw_dir / e.file for e in entries]
    workers = min(config.workers or os.cpu_count() or 1, len(paths))
    load = functools.partial(
        load_square, geometry=config.geometry, size=config.image_size, short_side=config.resize_short_side
    )
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        images = list(progress(pool.imap(load, paths, chunksize=8), total=len(paths), desc="preprocess", unit="image"))
    array = np.stack(images)
    write_store(out_dir, [IndexRow(e.file, e.label, e.sha256) for e in entries], array)
    return array
