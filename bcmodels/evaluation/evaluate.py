"""Test-set metrics with their uncertainty, and `evaluate_model`, what the evaluate stage runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

from bcmodels.config.schema import EvaluateConfig, PreprocessConfig, TrainConfig
from bcmodels.data.subsets import load_subsets
from bcmodels.errors import DataError
from bcmodels.evaluation.stats import binomial_interval, bootstrap_intervals, expected_calibration_error
from bcmodels.formats.checkpoint import load_checkpoint
from bcmodels.formats.metrics import write_metrics
from bcmodels.formats.predictions import Predictions, write_predictions
from bcmodels.io.progress import Phases, say
from bcmodels.models.inference import predict_logits
from bcmodels.models.registry import restore
from bcmodels.runtime import resolve_device


def classification_metrics(
    labels: np.ndarray, probs: np.ndarray, classes: tuple[str, ...], config: EvaluateConfig
) -> dict:
    """Accuracy; per class precision, recall, F1, support and times predicted; macro and weighted averages;
    one-vs-rest ROC-AUC; confusion matrix; expected calibration error; 95% intervals (`<name>_ci95`):
    percentile bootstrap over the test images for accuracy and macro/weighted F1, and the exact binomial
    (Clopper-Pearson) interval for each class's recall, which stays honest when a class is never predicted.

    Nested dicts of scalars, so that `dvc metrics diff` can compare every number.
    """
    labels = np.asarray(labels)
    preds = probs.argmax(axis=1)
    ids = list(range(len(classes)))
    ci = bootstrap_intervals(
        labels, preds, len(classes), resamples=config.bootstrap_resamples, seed=config.bootstrap_seed
    )
    p, r, f1, support = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    matrix = confusion_matrix(labels, preds, labels=ids)
    metrics: dict = {
        "n_test": len(labels),
        "accuracy": float(accuracy_score(labels, preds)),
        "accuracy_ci95": ci["accuracy"],
    }
    for i, name in enumerate(classes):
        metrics[name] = {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int(matrix[:, i].sum()),
        }
        if support[i]:  # a class absent from the test set has no recall to bound
            metrics[name]["recall_ci95"] = binomial_interval(int(matrix[i, i]), int(support[i]))
    for average in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(labels, preds, labels=ids, average=average, zero_division=0)
        metrics[average] = {
            "precision": float(ap),
            "recall": float(ar),
            "f1": float(af),
            "f1_ci95": ci[f"{average}_f1"],
        }
    present = np.unique(labels)
    auc = {}
    for i, name in enumerate(classes):  # one-vs-rest AUC is undefined for a class absent from the test set
        if i in present and len(present) > 1:
            auc[name] = float(roc_auc_score(labels == i, probs[:, i]))
    if auc:
        auc["macro"] = float(np.mean(list(auc.values())))
    metrics["roc_auc"] = auc
    metrics["confusion"] = {
        true: {pred: int(matrix[i, j]) for j, pred in enumerate(classes)} for i, true in enumerate(classes)
    }
    metrics["calibration"] = {
        "ece": expected_calibration_error(labels, probs, config.calibration_bins),
        "bins": config.calibration_bins,
    }
    return metrics


@dataclass(frozen=True)
class EvaluationFiles:
    """What one evaluation reads and writes (paths from dvc.yaml)."""

    store: Path
    split: Path
    checkpoint: Path
    predictions: Path
    detail: Path
    headline: Path | None  # only the main run has a headline file of its own
    made_by: str  # the command that makes the checkpoint, for error messages


def evaluate_model(
    files: EvaluationFiles, preprocess: PreprocessConfig, train: TrainConfig, config: EvaluateConfig
) -> dict:
    """The test set of the split, once, with the checkpoint's model; writes predictions and metrics."""
    phases = Phases(f"evaluate {files.checkpoint}")
    with phases("model"):
        checkpoint = load_checkpoint(files.checkpoint, files.made_by)
    made = (checkpoint.geometry, checkpoint.image_size, checkpoint.resize_short_side)
    stored = (preprocess.geometry, preprocess.image_size, preprocess.resize_short_side)
    if made != stored:
        raise DataError(
            f"{files.checkpoint}: trained on images made with {made} (geometry, size, short side), but "
            f"the store is made with {stored}; retrain with `{files.made_by}`"
        )
    device = resolve_device(train.device)
    with phases("data"):
        test = load_subsets(files.store, files.split)["test"]
    with phases("model"):
        model = restore(checkpoint).to(device)
    with phases("predictions"):
        logits = predict_logits(
            model, test.images.to(device), batch_size=config.batch_size, mean=checkpoint.mean, std=checkpoint.std
        )
    probs = torch.softmax(logits, dim=1).numpy()
    labels = test.labels.numpy()
    with phases("metrics"):
        metrics = classification_metrics(labels, probs, checkpoint.classes, config)
    metrics["best_epoch"] = checkpoint.best_epoch
    metrics["epochs_run"] = checkpoint.epochs_run
    with phases("writing"):
        write_predictions(files.predictions, Predictions(test.files, checkpoint.classes, labels, probs))
        write_metrics(files.detail, files.headline, metrics)
    say(phases.line())
    return metrics
