"""The cross-validation benchmark (crossval/dvc.yaml): every image tested once per seed, by a model that never
saw a near-copy of it (grouped folds), and the out-of-fold predictions pooled per model.

Intervals come from one bootstrap over images shared by all models: resample i draws every image a number of
times, and every statistic of every model is computed with those multiplicities as weights. Because the
draws are shared, the difference between two models in the same resample is a paired difference (same
images), and its percentiles are the paired interval. With several seeds per fold an image carries all its
seeds' predictions, so resampling images keeps the seeds of an image together.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bcmodels.errors import DataError
from bcmodels.evaluation.stats import (
    image_weights,
    percentile_interval,
    scores_from_confusions,
    weighted_auc,
    weighted_ece,
)
from bcmodels.formats.predictions import read_predictions

COMMAND = "dvc repro crossval/dvc.yaml"
SUMMARY_METRICS = ("accuracy", "macro_f1", "weighted_f1", "macro_auc", "ece")
MARK_FREE = "_mark_free"  # a model trained and tested on data/mark_free is summarized under its name + this


def summary_models(models: Sequence[str], mark_free_models: Sequence[str]) -> tuple[str, ...]:
    """The models the summary pools: crossval.models, then <model>_mark_free for each of crossval.mark_free_models
    (config.load checks that each is among crossval.models, so each is compared with itself)."""
    return (*models, *(f"{m}{MARK_FREE}" for m in mark_free_models))


@dataclass(frozen=True)
class OutOfFold:
    """One model's pooled test predictions: every image once per seed, images in file order."""

    files: list[str]
    classes: tuple[str, ...]
    labels: np.ndarray  # (N,) true class index
    fold: np.ndarray  # (N,) the fold that tested the image
    probs: np.ndarray  # (N, S, K) predicted probabilities, per seed


def predictions_path(root: Path, fold: int, seed: int, model: str) -> Path:
    """Where the evaluate stage of crossval/dvc.yaml writes a run's predictions (its --predictions)."""
    return root / f"fold{fold}-seed{seed}" / f"{model}.csv"


def load_out_of_fold(root: Path, model: str, folds: Sequence[int], seeds: Sequence[int]) -> OutOfFold:
    """Pool a model's predictions over folds, per seed; every image must be tested exactly once per seed."""
    by_seed = []
    for seed in seeds:
        rows: dict[str, tuple[int, int, np.ndarray]] = {}
        classes = None
        for fold in folds:
            p = read_predictions(predictions_path(root, fold, seed, model), COMMAND)
            classes = classes or p.classes
            for file, label, prob in zip(p.files, p.labels, p.probs):
                if file in rows:
                    raise DataError(
                        f"{model}, seed {seed}: {file} is tested by folds {rows[file][1]} and {fold}; "
                        "the folds overlap. Rerun the split stages of crossval/dvc.yaml"
                    )
                rows[file] = (int(label), fold, prob)
        by_seed.append((classes, rows))
    classes, first = by_seed[0]
    files = sorted(first)
    for seed, (_, rows) in zip(seeds, by_seed):
        if sorted(rows) != files:
            raise DataError(f"{model}: seed {seed} tested other images than seed {seeds[0]}; rerun `{COMMAND}`")
    return OutOfFold(
        files=files,
        classes=classes,
        labels=np.array([first[f][0] for f in files]),
        fold=np.array([first[f][1] for f in files]),
        probs=np.stack([np.stack([rows[f][2] for f in files]) for _, rows in by_seed], axis=1),
    )


def statistics(oof: OutOfFold, weights: np.ndarray, bins: int) -> dict[str, np.ndarray]:
    """Every pooled statistic of one model, one value per row of weights (R, N)."""
    n, seeds, k = oof.probs.shape
    rows = np.repeat(weights, seeds, axis=1)  # a row per image and seed; an image's seeds share its weight
    labels = np.repeat(oof.labels, seeds)
    probs = oof.probs.reshape(n * seeds, k)
    preds = probs.argmax(axis=1)
    cells = np.zeros((n * seeds, k * k))
    cells[np.arange(n * seeds), labels * k + preds] = 1.0
    confusions = (rows @ cells).reshape(-1, k, k)
    scores = scores_from_confusions(confusions)
    true_positives = np.diagonal(confusions, axis1=1, axis2=2)
    predicted = confusions.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0: a class never predicted (or absent) in a resample
        precision = true_positives / predicted
        f1 = 2 * true_positives / (confusions.sum(axis=2) + predicted)
    aucs = np.stack([weighted_auc(probs[:, c], labels == c, rows) for c in range(k)], axis=1)
    out = {name: scores[name] for name in ("accuracy", "macro_f1", "weighted_f1")}
    out["macro_auc"] = aucs.mean(axis=1)
    out["ece"] = weighted_ece(probs.max(axis=1), (preds == labels).astype(float), rows, bins)
    for c, name in enumerate(oof.classes):
        out[f"recall_{name}"] = scores["recall"][:, c]
        out[f"precision_{name}"] = precision[:, c]
        out[f"f1_{name}"] = f1[:, c]
        out[f"auc_{name}"] = aucs[:, c]
    return out


def _value(samples: np.ndarray) -> dict:
    """Row 0 is the estimate, the rest give the 95% percentile interval; None where it is undefined (a recall
    or AUC of a class that no tested image has)."""
    if np.isnan(samples[0]):
        return {"value": None, "ci95": None}
    return {"value": float(samples[0]), "ci95": percentile_interval(samples[1:])}


def per_fold(oof: OutOfFold, bins: int) -> dict[str, dict[str, float]]:
    """Mean, sample standard deviation, min and max over the folds (and seeds) of each fold's own metrics."""
    values: dict[str, list[float]] = {}
    for fold in np.unique(oof.fold):
        keep = oof.fold == fold
        part = OutOfFold(
            [f for f, k in zip(oof.files, keep) if k], oof.classes, oof.labels[keep], oof.fold[keep], oof.probs[keep]
        )
        for s in range(oof.probs.shape[1]):
            one_seed = OutOfFold(part.files, part.classes, part.labels, part.fold, part.probs[:, s : s + 1])
            for name, v in statistics(one_seed, np.ones((1, len(part.files))), bins).items():
                if name in SUMMARY_METRICS and not np.isnan(v[0]):  # AUC is undefined in a fold missing a class
                    values.setdefault(name, []).append(float(v[0]))
    return {
        name: {
            "mean": float(np.mean(v)),
            "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            "min": float(np.min(v)),
            "max": float(np.max(v)),
            "n": len(v),
        }
        for name, v in values.items()
    }


def summarize(models: Sequence[str], oofs: dict[str, OutOfFold], *, resamples: int, seed: int, bins: int) -> dict:
    """Pooled metrics with intervals, per-fold spread and confusion per model; paired differences per pair."""
    files = oofs[models[0]].files
    for model in models:
        if oofs[model].files != files:
            raise DataError(f"{model} was tested on other images than {models[0]}; rerun `{COMMAND}`")
    weights = image_weights(len(files), resamples, seed)
    samples = {m: statistics(oofs[m], weights, bins) for m in models}
    summary: dict = {
        "images": len(files),
        "seeds": oofs[models[0]].probs.shape[1],
        "resamples": resamples,
        "models": {},
        "paired": {},
    }
    for m in models:
        oof = oofs[m]
        preds = oof.probs.argmax(axis=2)  # (N, S)
        k = len(oof.classes)
        confusion = np.zeros((k, k), dtype=int)
        np.add.at(confusion, (np.repeat(oof.labels, preds.shape[1]), preds.ravel()), 1)
        summary["models"][m] = {
            **{name: _value(v) for name, v in samples[m].items()},
            "predicted": {c: int(confusion[:, i].sum()) for i, c in enumerate(oof.classes)},
            "confusion": {
                t: {p: int(confusion[i, j]) for j, p in enumerate(oof.classes)} for i, t in enumerate(oof.classes)
            },
            "per_fold": per_fold(oof, bins),
        }
    for a, b in itertools.combinations(models, 2):
        summary["paired"][f"{a}_vs_{b}"] = {
            name: _value(samples[a][name] - samples[b][name])
            for name in (*SUMMARY_METRICS, *(f"recall_{c}" for c in oofs[a].classes))
        }
    return summary


def headline(model_summary: dict, images: int, runs: int) -> dict:
    """A model's pooled numbers under the headline keys of a single run, so `dvc metrics show` lines them up."""
    return {**{name: model_summary[name]["value"] for name in SUMMARY_METRICS}, "images": images, "runs": runs}
