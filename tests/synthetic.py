"""Small synthetic BUSI look-alikes in the real archive layout, for tests that must not need the real data."""

from __future__ import annotations

import csv
import hashlib
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from bcmodels.download import DATASET_DIR, ManifestEntry

DEFAULT_COUNTS = {"benign": 12, "malignant": 10, "normal": 8}


def make_busi_tree(root: Path, counts: dict[str, int] = DEFAULT_COUNTS, seed: int = 0) -> list[ManifestEntry]:
    """Write root/Dataset_BUSI_with_GT/<class>/<class> (i).png with masks beside them, as BUSI does.

    Images are RGB of varying size (portrait and landscape), grey in all three channels like most of
    BUSI, with a per-class brightness so that a model can learn something. The first image of each
    class also gets _mask_1.png, like BUSI's multi-lesion images. Returns the manifest, sorted by file.
    """
    rng = np.random.default_rng(seed)
    entries = []
    for k, (label, n) in enumerate(counts.items()):
        folder = root / DATASET_DIR / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            w, h = int(rng.integers(40, 80)), int(rng.integers(40, 80))
            grey = rng.integers(0, 256, (h, w), dtype=np.uint8) // 2 + 40 * k
            path = folder / f"{label} ({i}).png"
            Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB").save(path)
            mask = Image.fromarray((rng.random((h, w)) > 0.7).astype(np.uint8) * 255, "L").convert("1")
            mask.save(folder / f"{label} ({i})_mask.png")
            if i == 1:
                mask.save(folder / f"{label} ({i})_mask_1.png")
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            entries.append(ManifestEntry(f"{label}/{path.name}", label, digest))
    return sorted(entries, key=lambda e: e.file)


def relative_files(folder: Path) -> set[str]:
    """The files below folder, as "/"-separated paths relative to it."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def parent_of(data: dict, dotted: str) -> tuple[dict, str]:
    """The mapping that holds a dotted params key (train.simple_cnn.lr) and the key's last part."""
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    return data, last


def write_manifest(path: Path, entries: list[ManifestEntry]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "class", "sha256"])
        writer.writerows([e.file, e.label, e.sha256] for e in entries)


def zip_tree(root: Path, archive: Path, prefix: str = "") -> Path:
    """Zip everything under root (paths relative to root, optionally under prefix/)."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, f"{prefix}{path.relative_to(root).as_posix()}")
    return archive


def tar_tree(root: Path, archive: Path, prefix: str = "", mode: str = "w:gz") -> Path:
    """Tar everything under root, like zip_tree; mode "w" for a plain tar, "w:gz" for tar.gz."""
    with tarfile.open(archive, mode) as tf:
        for path in sorted(root.rglob("*")):
            tf.add(path, f"{prefix}{path.relative_to(root).as_posix()}", recursive=False)
    return archive
