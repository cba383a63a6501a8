"""Test-set metrics from true labels and predicted class probabilities, with their uncertainty."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

from bcmodels.config import CLASSES, EvaluateConfig
from bcmodels.stats import bootstrap_intervals, expected_calibration_error


def classification_metrics(labels: np.ndarray, probs: np.ndarray, classes=CLASSES,
                           config: EvaluateConfig = EvaluateConfig()) -> dict:  # fmt: skip
    """Accuracy; per-class, macro and weighted precision/recall/F1; one-vs-rest ROC-AUC; confusion matrix;
    bootstrap 95% intervals (`<name>_ci95`) for accuracy, recall per class and macro and weighted F1;
    expected calibration error.

    Nested dicts of scalars, so that `dvc metrics diff` can compare every number.
    """
    labels = np.asarray(labels)
    preds = probs.argmax(axis=1)
    ids = list(range(len(classes)))
    ci = bootstrap_intervals(labels, preds, len(classes), resamples=config.bootstrap_resamples,
                             seed=config.bootstrap_seed)  # fmt: skip
    p, r, f1, support = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    metrics: dict = {"n_test": int(len(labels)), "accuracy": float(accuracy_score(labels, preds)),
                     "accuracy_ci95": ci["accuracy"]}  # fmt: skip
    for i, name in enumerate(classes):
        metrics[name] = {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]), "support": int(support[i])}
        if ci[f"recall_{i}"] is not None:  # a class absent from the test set has no recall to resample
            metrics[name]["recall_ci95"] = ci[f"recall_{i}"]
    for average in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(labels, preds, labels=ids, average=average, zero_division=0)
        metrics[average] = {"precision": float(ap), "recall": float(ar), "f1": float(af), "f1_ci95": ci[f"{average}_f1"]}
    present = np.unique(labels)
    auc = {}
    for i, name in enumerate(classes):  # one-vs-rest AUC is undefined for a class absent from the test set
        if i in present and len(present) > 1:
            auc[name] = float(roc_auc_score(labels == i, probs[:, i]))
    if auc:
        auc["macro"] = float(np.mean(list(auc.values())))
    metrics["roc_auc"] = auc
    matrix = confusion_matrix(labels, preds, labels=ids)
    metrics["confusion"] = {
        true: {pred: int(matrix[i, j]) for j, pred in enumerate(classes)} for i, true in enumerate(classes)
    }
    metrics["calibration"] = {"ece": expected_calibration_error(labels, probs, config.calibration_bins),
                              "bins": config.calibration_bins}  # fmt: skip
    return metrics
