"""The report of the main run, from the metrics, history and prediction files alone (no checkpoints):
our numbers beside the study's Table I, and PNG figures (confusion matrices, training curves, ROC curves,
reliability diagrams)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import auc, roc_curve

from bcmodels.errors import DataError
from bcmodels.evaluation.stats import reliability_bins
from bcmodels.formats.history import read_history
from bcmodels.formats.metrics import read_detail
from bcmodels.formats.predictions import read_predictions
from bcmodels.io.files import write_text
from bcmodels.render.figures import DPI, draw_confusion, draw_reliability, save_figure
from bcmodels.render.tables import number, table

# Table I ("Reported results") of the 2024 course report this project reproduces (docs/study.md), keyed by
# our model names. Its ResNet101 was fine-tuned from ImageNet weights: a resnet101 trained here from
# scratch would sit beside pretrained numbers, so the column says what the study did.
STUDY_TABLE_I = {
    "simple_cnn": {
        "precision": {"benign": 0.74, "malignant": 0.62, "normal": 0.53},
        "recall": {"benign": 0.82, "malignant": 0.58, "normal": 0.40},
        "f1": {"benign": 0.78, "malignant": 0.60, "normal": 0.46},
        "weighted_f1": 0.68,
        "accuracy": 0.68,
        "epochs_run": 8,
        "best_epoch": 5,
    },
    "mobilenet": {
        "precision": {"benign": 0.66, "malignant": 0.59, "normal": 1.00},
        "recall": {"benign": 0.91, "malignant": 0.42, "normal": 0.20},
        "f1": {"benign": 0.76, "malignant": 0.49, "normal": 0.33},
        "weighted_f1": 0.62,
        "accuracy": 0.66,
        "epochs_run": 9,
        "best_epoch": 6,
    },
    "resnet101": {
        "precision": {"benign": 0.89, "malignant": 0.87, "normal": 0.80},
        "recall": {"benign": 0.89, "malignant": 0.87, "normal": 0.80},
        "f1": {"benign": 0.89, "malignant": 0.87, "normal": 0.80},
        "weighted_f1": 0.87,
        "accuracy": 0.87,
        "epochs_run": 7,
        "best_epoch": 4,
    },
}

NEVER_PREDICTED = "†"


@dataclass(frozen=True)
class RunFiles:
    """The files of one model's main run that the report reads (paths from dvc.yaml)."""

    detail: Path
    history: Path
    predictions: Path


@dataclass(frozen=True)
class ModelResults:
    """What the report needs of one model's main run."""

    name: str
    metrics: dict
    history: dict[str, np.ndarray]  # column of the history CSV -> one value per epoch
    classes: tuple[str, ...]
    labels: np.ndarray  # (N,) index into classes of each test image's true class
    probs: np.ndarray  # (N, K) predicted probabilities


def load_results(name: str, files: RunFiles) -> ModelResults:
    """A model's main run; a missing file is a DataError naming it and the stage that makes it."""
    made_by = f"dvc repro evaluate@{name}"
    predictions = read_predictions(files.predictions, made_by)
    return ModelResults(
        name=name,
        metrics=read_detail(files.detail, made_by),
        history=read_history(files.history, f"dvc repro train@{name}"),
        classes=predictions.classes,
        labels=predictions.labels,
        probs=predictions.probs,
    )


def available_results(models: Sequence[str], files_of) -> tuple[list[ModelResults], dict[str, str]]:
    """The results of every model whose files are there, and for the others why not (the error's text)."""
    results, missing = [], {}
    for name in models:
        try:
            results.append(load_results(name, files_of(name)))
        except DataError as err:
            missing[name] = str(err)
    return results, missing


# --- Markdown ---------------------------------------------------------------------------------------


def _recall(metrics: dict, cls: str) -> str:
    entry = metrics[cls]
    text = number(entry["recall"], entry.get("recall_ci95"))
    return text + (NEVER_PREDICTED if entry.get("predicted") == 0 else "")


def _table_one(results: Sequence[ModelResults]) -> str:
    """Our numbers beside the study's, rows in the order of its Table I; a study column only where it had the model."""
    classes = results[0].classes
    header, columns = [""], []
    for r in results:
        m = r.metrics
        ours = [number(m[c]["precision"]) for c in classes]
        ours += [_recall(m, c) for c in classes]
        ours += [number(m[c]["f1"]) for c in classes]
        ours += [
            number(m["weighted"]["f1"], m["weighted"]["f1_ci95"]),
            number(m["accuracy"], m["accuracy_ci95"]),
            f"{m['epochs_run']} ({m['best_epoch']})",
        ]
        header.append(f"{r.name}, here")
        columns.append(ours)
        study = STUDY_TABLE_I.get(r.name)
        if study:
            theirs = [number(study[k][c]) for k in ("precision", "recall", "f1") for c in classes]
            theirs += [
                number(study["weighted_f1"]),
                number(study["accuracy"]),
                f"{study['epochs_run']} ({study['best_epoch']})",
            ]
            header.append(f"{r.name}, study")
            columns.append(theirs)
    labels = [f"{k} {c}" for k in ("precision", "recall", "F1") for c in classes]
    labels += ["weighted F1", "accuracy", "epochs run (best epoch index)"]
    return table(header, [[label, *(column[i] for column in columns)] for i, label in enumerate(labels)])


def report_markdown(
    results: Sequence[ModelResults], missing: dict[str, str], *, resamples: int, bootstrap_seed: int
) -> str:
    """report.md: Table I of the study with our numbers beside it, then calibration, figures and what did not run."""
    n_test = sorted({r.metrics["n_test"] for r in results})
    m = [r.metrics for r in results]
    beyond = table(
        ["", *(r.name for r in results)],
        [
            ["macro F1", *(number(x["macro"]["f1"], x["macro"]["f1_ci95"]) for x in m)],
            ["macro ROC-AUC (one-vs-rest)", *(number(x["roc_auc"].get("macro")) for x in m)],
            [
                "ECE (top-label confidence)",
                *(f"{x['calibration']['ece']:.3f} ({x['calibration']['bins']} bins)" for x in m),
            ],
        ],
    )
    never = [f"{r.name}: {c}" for r in results for c in r.classes if r.metrics[c].get("predicted") == 0]
    not_run = "".join(f"- **{name}** has no results: {why}\n" for name, why in missing.items())
    return f"""# Results beside the study

Test set: {" / ".join(map(str, n_test))} images. "here" is this pipeline's main run (`metrics/detail/<model>.json`),
"study" the report's Table I ([docs/study.md](../../docs/study.md)). In brackets, 95% intervals: for accuracy and
weighted F1 the percentile bootstrap over the test images ({resamples} resamples, seed {bootstrap_seed}); for
recall the exact binomial (Clopper-Pearson) interval of the images of that class found.
{NEVER_PREDICTED} the model never predicted this class{": " + "; ".join(never) if never else ""}.

{_table_one(results)}

## Beyond the study

{beyond}

ECE is the expected calibration error: the gap between top-label confidence and accuracy, per equal-width
confidence bin, weighted by the images in the bin (0 is perfectly calibrated).
{"" if not missing else chr(10) + "## Not run" + chr(10) * 2 + not_run}
## More runs

One split and one training seed say little about a model. The repeated study
([repeats/summary.md](../../repeats/summary.md), `dvc repro repeats/dvc.yaml`) trains each model with more seeds;
the cross-validation benchmark ([crossval/report.md](../../crossval/report.md), `dvc repro crossval/dvc.yaml`)
tests every model on every image, leakage-free.

## Figures

![Confusion matrices](confusion.png)

![Training curves](curves.png)

![ROC curves](roc.png)

![Reliability diagrams](reliability.png)
"""


# --- Figures ----------------------------------------------------------------------------------------


def _axes_row(results: Sequence[ModelResults], width: float = 3.6, height: float = 3.4):
    fig = Figure(figsize=(width * len(results), height), dpi=DPI, layout="constrained")
    return fig, fig.subplots(1, len(results), squeeze=False)[0]


def confusion_figure(results: Sequence[ModelResults]) -> Figure:
    """One confusion matrix per model (rows actual, columns predicted), counts written in the cells."""
    fig, axes = _axes_row(results)
    for ax, r in zip(axes, results):
        matrix = np.array([[r.metrics["confusion"][t][p] for p in r.classes] for t in r.classes])
        draw_confusion(ax, matrix, r.classes)
        ax.set_title(f"{r.name}: accuracy {r.metrics['accuracy']:.2f}")
    return fig


def curves_figure(results: Sequence[ModelResults]) -> Figure:
    """Training (dashed) and validation (solid) loss, log scale, and accuracy per epoch; one colour per model."""
    fig = Figure(figsize=(10, 3.8), dpi=DPI, layout="constrained")
    loss_ax, accuracy_ax = fig.subplots(1, 2)
    for i, r in enumerate(results):
        color = f"C{i}"
        for ax, metric in ((loss_ax, "loss"), (accuracy_ax, "accuracy")):
            ax.plot(r.history["epoch"], r.history[f"train_{metric}"], "--", color=color, label=f"{r.name} train")
            ax.plot(r.history["epoch"], r.history[f"val_{metric}"], "-", color=color, label=f"{r.name} validation")
    loss_ax.set_yscale("log")
    loss_ax.set_ylabel("cross-entropy loss (log scale)")
    accuracy_ax.set_ylabel("accuracy")
    for ax in (loss_ax, accuracy_ax):
        ax.set_xlabel("epoch index")
        ax.legend(fontsize="small")
    return fig


def roc_figure(results: Sequence[ModelResults]) -> Figure:
    """One-vs-rest ROC curve of every class, one panel per model, from the test predictions."""
    fig, axes = _axes_row(results)
    for ax, r in zip(axes, results):
        for k, name in enumerate(r.classes):
            is_class = r.labels == k
            if is_class.all() or not is_class.any():  # a ROC curve needs both positives and negatives
                continue
            fpr, tpr, _ = roc_curve(is_class, r.probs[:, k])
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.2f})")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(r.name)
        ax.legend(loc="lower right", fontsize="small")
    return fig


def reliability_figure(results: Sequence[ModelResults]) -> Figure:
    """Accuracy per top-label confidence bin against perfect calibration, one panel per model."""
    fig, axes = _axes_row(results)
    for ax, r in zip(axes, results):
        calibration = r.metrics["calibration"]
        bins = reliability_bins(r.labels, r.probs, calibration["bins"])
        draw_reliability(ax, bins.edges, bins.count, bins.accuracy, f"{r.name}: ECE {calibration['ece']:.3f}")
    return fig


FIGURES = {
    "confusion.png": confusion_figure,
    "curves.png": curves_figure,
    "roc.png": roc_figure,
    "reliability.png": reliability_figure,
}


def write_report(
    results: Sequence[ModelResults], missing: dict[str, str], out_dir: Path, *, resamples: int, bootstrap_seed: int
) -> list[Path]:
    """report.md and the figures into out_dir; returns the paths written."""
    if not results:
        raise DataError("no model has results to report:\n  " + "\n  ".join(missing.values()))
    for name, draw in FIGURES.items():
        save_figure(draw(results), out_dir / name)
    markdown = report_markdown(results, missing, resamples=resamples, bootstrap_seed=bootstrap_seed)
    write_text(out_dir / "report.md", markdown)
    return [out_dir / "report.md", *(out_dir / name for name in FIGURES)]
