"""The benchmark's validation predictions, for choosing between models and recipes without the test folds
(crossval/dvc.yaml: `validate@<model>-<fold>-<seed>`; `summarize_validation` pools them, crossval_report.py).

A fold's validation images are the next fold's test images, so over the folds every image of the benchmark is
validated once, by a checkpoint that did not train on it. That checkpoint did stop at its epoch of lowest loss on
those images (early stopping), so validation scores lean optimistic for every recipe alike: they rank recipes, and
the test folds, looked at once, give the numbers a recipe is reported with.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bcmodels.config.schema import Params
from bcmodels.data.subsets import load_subsets
from bcmodels.errors import DataError
from bcmodels.formats.checkpoint import load_checkpoint
from bcmodels.formats.predictions import Predictions, write_predictions
from bcmodels.models.inference import predict_logits
from bcmodels.models.registry import restore
from bcmodels.runtime import resolve_device

COMMAND = "dvc repro crossval/dvc.yaml"


def validation_predictions(store: Path, split: Path, checkpoint_path: Path, out: Path, params: Params) -> Predictions:
    """The checkpoint's probabilities for the split's validation images, written to out (predictions format)."""
    checkpoint = load_checkpoint(checkpoint_path, COMMAND)
    pre = params.preprocess
    made = (checkpoint.geometry, checkpoint.image_size, checkpoint.resize_short_side)
    if made != (pre.geometry, pre.image_size, pre.resize_short_side):
        raise DataError(f"{checkpoint_path}: trained on images made with {made}, not as {store} is; rerun `{COMMAND}`")
    val = load_subsets(store, split)["val"]
    if not val.files:
        raise DataError(f"{split}: no validation image; rerun the split stages of `{COMMAND}`")
    device = resolve_device(params.train.device)
    model = restore(checkpoint).to(device)
    logits = predict_logits(
        model, val.images.to(device), batch_size=params.evaluate.batch_size, mean=checkpoint.mean, std=checkpoint.std
    )
    predictions = Predictions(val.files, checkpoint.classes, val.labels.numpy(), torch.softmax(logits, 1).numpy())
    write_predictions(out, predictions)
    return predictions
