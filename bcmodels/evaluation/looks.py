"""The looks stage of the benchmark (crossval/dvc.yaml, docs/shortcuts.md): what one checkpoint looks at.

A fold's checkpoint judges its own out-of-fold test images (never one it trained on) in three versions from the
edits stage: the original (data/processed), with the marks removed (data/mark_free) and with the lesion removed
(data/lesion_free). On the original, the Grad-CAM map of the predicted class (models/gradcam.py) is measured
against the lesion mask (data/masks, aligned pixel for pixel): its energy share inside the lesion,
sum(map * mask) / sum(map), and inside the mask grown by crossval.shortcuts.grown_px; a uniform map would give the
lesion's area share, which the shortcuts stage reports beside it. The same share on the background tells whether
a model reads the black outside the scan. One run per stage, written to git-tracked files (formats/looks.py), so
that the shortcuts stage pools them without the checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bcmodels.config.schema import CLASSES, Params
from bcmodels.data.versions import Stores, read_stores
from bcmodels.errors import DataError
from bcmodels.evaluation.regions import background, cam_share, grow
from bcmodels.formats.checkpoint import Checkpoint, load_checkpoint
from bcmodels.formats.looks import RunLooks, write_looks
from bcmodels.formats.split import read_split
from bcmodels.models.gradcam import explain, target_layer
from bcmodels.models.inference import predict_logits
from bcmodels.models.registry import restore
from bcmodels.runtime import resolve_device

COMMAND = "dvc repro crossval/dvc.yaml"


@dataclass(frozen=True)
class LookFiles:
    """What the looks stage reads and writes (paths from crossval/dvc.yaml)."""

    store: Path
    mark_free: Path
    lesion_free: Path
    masks: Path
    split: Path  # the fold's split.csv
    checkpoint: Path  # that fold's checkpoint of one model and seed
    looks: Path
    lowest: Path


def _predict(model, images: np.ndarray, checkpoint: Checkpoint, batch_size: int, device) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    logits = predict_logits(model, x, batch_size=batch_size, mean=checkpoint.mean, std=checkpoint.std)
    return logits.argmax(dim=1).numpy()


def _check_geometry(checkpoint: Checkpoint, params: Params, path: Path) -> None:
    made = (checkpoint.geometry, checkpoint.image_size, checkpoint.resize_short_side)
    pre = params.preprocess
    if made != (pre.geometry, pre.image_size, pre.resize_short_side):
        raise DataError(f"{path}: trained on images made with {made}, not as the store is made; rerun `{COMMAND}`")


def judge_run(checkpoint: Checkpoint, rows: np.ndarray, stores: Stores, params: Params) -> RunLooks:
    """One checkpoint on its test images (store rows, in file order): predictions on the three versions, where its
    Grad-CAM map of the predicted class lies on the original, and the maps of the lowest shares in the lesion."""
    shortcuts, batch_size = params.crossval.shortcuts, params.evaluate.batch_size
    device = resolve_device(params.train.device)
    model = restore(checkpoint).to(device)
    layer = target_layer(
        model, num_classes=len(checkpoint.classes), image_size=checkpoint.image_size, arch=checkpoint.arch
    )
    original = stores.original[rows]
    predicted = _predict(model, original, checkpoint, batch_size, device)
    calls = {"predicted": predicted}
    for name, edited in (("mark_free", stores.mark_free[rows]), ("lesion_free", stores.lesion_free[rows])):
        changed = (edited != original).reshape(len(rows), -1).any(axis=1)
        calls[f"predicted_{name}"] = called = predicted.copy()  # an unchanged input keeps its own prediction
        if changed.any():
            called[changed] = _predict(model, edited[changed], checkpoint, batch_size, device)
    x = torch.from_numpy(original).permute(0, 3, 1, 2).contiguous().to(device)
    cams = explain(
        model, x, torch.from_numpy(predicted), layer, batch_size=batch_size, mean=checkpoint.mean, std=checkpoint.std
    ).numpy()
    masks = stores.masks[rows]
    shares = {
        "cam_in_lesion": cam_share(cams, masks),
        "cam_in_grown": cam_share(cams, grow(masks, shortcuts.grown_px)),
        "cam_on_background": cam_share(cams, background(original, shortcuts.background_max)),
    }
    lesion_share = shares["cam_in_lesion"]
    files = [stores.files[i] for i in rows]
    defined = [k for k in range(len(rows)) if not np.isnan(lesion_share[k])]
    lowest = sorted(defined, key=lambda k: (lesion_share[k], files[k]))[: shortcuts.sheet_per_model]
    return RunLooks(
        files=files,
        calls=calls,
        shares=shares,
        empty_map=cams.reshape(len(rows), -1).max(axis=1) == 0,
        lowest_files=[files[k] for k in lowest],
        lowest_maps=(cams[lowest] * 255 + 0.5).astype(np.uint8),
    )


def run_looks(files: LookFiles, params: Params) -> RunLooks:
    """The whole stage: the fold's test images judged by its checkpoint; both output files written."""
    stores = read_stores(files.store, files.mark_free, files.lesion_free, files.masks)
    split = read_split(files.split)
    order = sorted((f, i) for i, f in enumerate(stores.files) if split.get(f) == "test")
    if not order:
        raise DataError(f"{files.split}: no test image of {files.store}; rerun the split stages of `{COMMAND}`")
    checkpoint = load_checkpoint(files.checkpoint, COMMAND)
    _check_geometry(checkpoint, params, files.checkpoint)
    looks = judge_run(checkpoint, np.array([i for _, i in order], dtype=int), stores, params)
    write_looks(files.looks, files.lowest, looks, CLASSES)
    return looks
