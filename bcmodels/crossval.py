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
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bcmodels.errors import DataError
from bcmodels.figures import DPI, draw_confusion, save_figure
from bcmodels.fileio import write_json, write_text
from bcmodels.formats.predictions import read_predictions
from bcmodels.stats import LEVEL, calibration_bin, percentile_interval, scores_from_confusions
from bcmodels.tables import metric_label, number, table

COMMAND = "dvc repro crossval/dvc.yaml"
SUMMARY_METRICS = ("accuracy", "macro_f1", "weighted_f1", "macro_auc", "ece")


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


def image_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(1 + resamples, n): row 0 all ones (the data as it is), then how often each bootstrap resample draws
    each image."""
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    counts = np.zeros((resamples, n))
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1.0)
    return np.vstack([np.ones((1, n)), counts])


def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC-AUC per row of weights (R, n): the weighted Mann-Whitney statistic, ties counted half.

    Equal to scikit-learn's roc_auc_score on the data with each item repeated weight times.
    """
    _, group = np.unique(scores, return_inverse=True)  # items with equal scores share a group, in score order
    onehot = np.zeros((len(scores), group.max() + 1))
    onehot[np.arange(len(scores)), group] = 1.0
    pos = (weights * positive) @ onehot  # (R, groups) weight of positives per score group
    neg = (weights * ~positive) @ onehot
    below = np.cumsum(neg, axis=1) - neg  # negatives with a lower score than the group
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def weighted_ece(confidence: np.ndarray, correct: np.ndarray, weights: np.ndarray, bins: int) -> np.ndarray:
    """Top-label ECE per row of weights (R, n): stats.expected_calibration_error with every image weighted."""
    bin_of = calibration_bin(confidence, bins)
    onehot = np.zeros((len(confidence), bins))
    onehot[np.arange(len(confidence)), bin_of] = 1.0
    count, conf, right = weights @ onehot, (weights * confidence) @ onehot, (weights * correct) @ onehot
    return np.abs(right - conf).sum(axis=1) / count.sum(axis=1)


def statistics(oof: OutOfFold, weights: np.ndarray, bins: int) -> dict[str, np.ndarray]:
    """Every pooled statistic of one model, one value per row of weights (R, N)."""
    n, seeds, k = oof.probs.shape
    rows = np.repeat(weights, seeds, axis=1)  # a row per image and seed; an image's seeds share its weight
    labels = np.repeat(oof.labels, seeds)
    probs = oof.probs.reshape(n * seeds, k)
    preds = probs.argmax(axis=1)
    cells = np.zeros((n * seeds, k * k))
    cells[np.arange(n * seeds), labels * k + preds] = 1.0
    scores = scores_from_confusions((rows @ cells).reshape(-1, k, k))
    aucs = np.stack([weighted_auc(probs[:, c], labels == c, rows) for c in range(k)], axis=1)
    out = {name: scores[name] for name in ("accuracy", "macro_f1", "weighted_f1")}
    out["macro_auc"] = aucs.mean(axis=1)
    out["ece"] = weighted_ece(probs.max(axis=1), (preds == labels).astype(float), rows, bins)
    for c, name in enumerate(oof.classes):
        out[f"recall_{name}"] = scores["recall"][:, c]
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


# --- Report ------------------------------------------------------------------------------------------


def _cell(entry: dict, digits: int = 2) -> str:
    return number(entry["value"], entry["ci95"], digits=digits)  # "-" where undefined


def markdown(summary: dict, models: Sequence[str], folds: Sequence[int], seeds: Sequence[int], classes) -> str:
    """crossval/report.md: the pooled table, recall per class, paired differences, spread over folds."""
    ms = summary["models"]
    pooled = table(
        ["model", *(metric_label(n) for n in SUMMARY_METRICS)],
        [[m, *(_cell(ms[m][n], 3 if n == "ece" else 2) for n in SUMMARY_METRICS)] for m in models],
    )
    recall = table(
        ["model", *(f"recall {c}" for c in classes), *(f"predicted {c}" for c in classes)],
        [
            [m, *(_cell(ms[m][f"recall_{c}"]) for c in classes), *(str(ms[m]["predicted"][c]) for c in classes)]
            for m in models
        ],
    )
    paired_names = ("accuracy", "macro_f1", "weighted_f1", "macro_auc", *(f"recall_{c}" for c in classes))
    paired = table(
        ["first - second", *(metric_label(n) for n in paired_names)],
        [
            [pair.replace("_vs_", " - "), *(number(d[n]["value"], d[n]["ci95"], sign=True) for n in paired_names)]
            for pair, d in summary["paired"].items()
        ],
    )
    spread = table(
        ["model", *(metric_label(n) for n in SUMMARY_METRICS)],
        [
            [
                m,
                *(
                    f"{s['mean']:.2f} ± {s['std']:.2f} ({s['min']:.2f}-{s['max']:.2f})"
                    for s in (ms[m]["per_fold"][n] for n in SUMMARY_METRICS)
                ),
            ]
            for m in models
        ],
    )
    level = int(LEVEL * 100)
    return f"""# Cross-validation: every image tested, leakage-free

Grouped {len(folds)}-fold cross-validation (`{COMMAND}`): folds {", ".join(map(str, folds))} of the grouped split,
each tested by a model trained on the other folds but the next (validation); no near-copy group of the audit
crosses train and test. {summary["images"]} images tested, {len(seeds)} training seed(s) per fold
({", ".join(map(str, seeds))}). Numbers are pooled over all out-of-fold predictions; in brackets {level}%
percentile bootstrap intervals over images ({summary["resamples"]} resamples).

## Pooled over all images

{pooled}

![Pooled metrics with {level}% intervals](figures/metrics.png)

## Recall per class, and how often each class was predicted

{recall}

![Recall per class](figures/recall.png)

## Paired differences (same images)

Each difference is the first model's number minus the second's on the same images, with a {level}% paired
bootstrap interval: an interval that excludes 0 means the first is better (or worse) on BUSI beyond what the
choice of images explains. It does not cover the variation between training seeds.

{paired}

## Spread over folds: mean ± standard deviation (min-max) of each fold's own numbers

{spread}

## Confusion matrices over all images

![Confusion matrices](figures/confusion.png)
"""


def metrics_figure(summary: dict, models: Sequence[str], names: Sequence[str], title: str) -> Figure:
    """One panel per metric: every model's estimate with its interval."""
    fig = Figure(figsize=(3.2 * len(names), 0.45 * len(models) + 1.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    y = np.arange(len(models))[::-1]
    for ax, name in zip(axes, names):
        entries = [summary["models"][m][name] for m in models]
        shown = [i for i, e in enumerate(entries) if e["value"] is not None and e["ci95"] is not None]
        values = np.array([entries[i]["value"] for i in shown])
        low = np.array([entries[i]["ci95"]["low"] for i in shown])
        high = np.array([entries[i]["ci95"]["high"] for i in shown])
        ax.errorbar(values, y[shown], xerr=[values - low, high - values], fmt="o", capsize=3)
        ax.set_title(metric_label(name))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, models)
    fig.suptitle(title)
    return fig


def confusion_figure(summary: dict, models: Sequence[str], classes: Sequence[str]) -> Figure:
    fig = Figure(figsize=(3.4 * len(models), 3.3), dpi=DPI, layout="constrained")
    for ax, m in zip(fig.subplots(1, len(models), squeeze=False)[0], models):
        matrix = np.array([[summary["models"][m]["confusion"][t][p] for p in classes] for t in classes])
        draw_confusion(ax, matrix, classes)
        ax.set_title(_two_lines(m))
    return fig


def _two_lines(name: str, width: int = 18) -> str:
    """A long model name broken at underscores onto lines of at most `width` characters, so that a title no
    wider than its panel stays inside the figure."""
    return "\n".join(line.replace(" ", "_") for line in textwrap.wrap(name.replace("_", " "), width))


def summarize_crossval(
    models: Sequence[str],
    folds: Sequence[int],
    seeds: Sequence[int],
    predictions: Path,
    out: Path,
    *,
    resamples: int,
    seed: int,
    bins: int,
) -> dict:
    """Read every run's predictions, write out/summary.json, out/summary/<model>.json, out/report.md, figures."""
    oofs = {m: load_out_of_fold(predictions, m, folds, seeds) for m in models}
    summary = summarize(models, oofs, resamples=resamples, seed=seed, bins=bins)
    classes = oofs[models[0]].classes
    write_json(out / "summary.json", summary)
    for m in models:
        write_json(
            out / "summary" / f"{m}.json", headline(summary["models"][m], summary["images"], len(folds) * len(seeds))
        )
    write_text(out / "report.md", markdown(summary, models, folds, seeds, classes))
    save_figure(
        metrics_figure(summary, models, SUMMARY_METRICS[:4], "Pooled over all images, 95% intervals"),
        out / "figures" / "metrics.png",
    )
    save_figure(
        metrics_figure(summary, models, [f"recall_{c}" for c in classes], "Recall per class, 95% intervals"),
        out / "figures" / "recall.png",
    )
    save_figure(confusion_figure(summary, models, classes), out / "figures" / "confusion.png")
    return summary
