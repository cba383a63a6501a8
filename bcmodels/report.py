"""The report, from the metrics JSON and plot CSVs alone (no checkpoints): Markdown tables beside the
study's own numbers, and PNG figures (confusion matrices, training curves, ROC curves, reliability)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import auc, roc_curve

from bcmodels.config import TrainConfig
from bcmodels.errors import ConfigError, DataError
from bcmodels.fileio import atomic_path, write_text
from bcmodels.paths import REPEAT_REPORT, REPEAT_SUMMARY, REPORT_DIR, run_paths
from bcmodels.stats import reliability_bins

# Table I ("Reported results") of the 2024 course report this project reproduces, as transcribed in
# ../shared/STUDY.md; keyed by our model names. Its ResNet101 was fine-tuned from ImageNet weights.
STUDY_TABLE_I = {
    "simple_cnn": {
        "precision": {"benign": 0.74, "malignant": 0.62, "normal": 0.53},
        "recall": {"benign": 0.82, "malignant": 0.58, "normal": 0.40},
        "f1": {"benign": 0.78, "malignant": 0.60, "normal": 0.46},
        "weighted_f1": 0.68, "accuracy": 0.68, "epochs_run": 8, "best_epoch": 5,
    },
    "mobilenet": {
        "precision": {"benign": 0.66, "malignant": 0.59, "normal": 1.00},
        "recall": {"benign": 0.91, "malignant": 0.42, "normal": 0.20},
        "f1": {"benign": 0.76, "malignant": 0.49, "normal": 0.33},
        "weighted_f1": 0.62, "accuracy": 0.66, "epochs_run": 9, "best_epoch": 6,
    },
    "resnet101": {
        "precision": {"benign": 0.89, "malignant": 0.87, "normal": 0.80},
        "recall": {"benign": 0.89, "malignant": 0.87, "normal": 0.80},
        "f1": {"benign": 0.89, "malignant": 0.87, "normal": 0.80},
        "weighted_f1": 0.87, "accuracy": 0.87, "epochs_run": 7, "best_epoch": 4,
    },
}  # fmt: skip

DPI = 100
REPEATS_COMMAND = "dvc repro repeats/dvc.yaml"
CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy")  # of the history CSV
METRIC_LABELS = {"accuracy": "accuracy", "macro_f1": "macro F1", "weighted_f1": "weighted F1", "ece": "ECE"}


# --- Inputs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelResults:
    """What the report needs of one model's main run."""

    name: str
    metrics: dict
    history: dict[str, np.ndarray]  # CURVE_COLUMNS of plots/history/<model>.csv, one value per epoch
    classes: tuple[str, ...]
    labels: np.ndarray  # (N,) index into classes of each test image's true class
    probs: np.ndarray  # (N, K) predicted probabilities


def select_models(requested: Sequence[str] | None, default: Sequence[str], train: TrainConfig) -> tuple[str, ...]:
    """--models if given (each must have a section in train), else the default list (train.models, repeat.models)."""
    for name in requested or ():
        if name not in train.model:
            raise ConfigError(f"--models: unknown model {name!r}. Sections of train: {', '.join(sorted(train.model))}")
    return tuple(requested or default)


def _require_file(path: Path, model: str, command: str, models_key: str) -> None:
    if not path.is_file():
        raise DataError(f"{path}: not found; `{command}` makes it. To leave {model} out, pass --models with the "
                        f"other models or remove it from {models_key} in params.yaml")  # fmt: skip


def read_metrics(path: Path, model: str, command: str, models_key: str = "train.models") -> dict:
    """A metrics JSON written by evaluate; `command` makes it, `models_key` lists the model (named in errors)."""
    _require_file(path, model, command, models_key)
    metrics = json.loads(path.read_text())
    for key in ("accuracy_ci95", "calibration"):
        if key not in metrics:
            raise DataError(f"{path}: no {key!r}; it was written by an older evaluate stage. Rerun `{command}`")
    return metrics


def _read_columns(path: Path) -> dict[str, list[str]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {column: [row[column] for row in rows] for column in (rows[0] if rows else {})}


def load_results(model: str) -> ModelResults:
    """The main run's metrics, training history and test predictions; a missing file is a DataError."""
    run, command = run_paths(model), f"dvc repro evaluate@{model}"
    for path in (run.metrics, run.history, run.predictions):
        _require_file(path, model, command, "train.models")
    history, predictions = _read_columns(run.history), _read_columns(run.predictions)
    classes = tuple(column.removeprefix("p_") for column in predictions if column.startswith("p_"))
    return ModelResults(
        name=model,
        metrics=read_metrics(run.metrics, model, command),
        history={column: np.array(history[column], dtype=float) for column in CURVE_COLUMNS},
        classes=classes,
        labels=np.array([classes.index(c) for c in predictions["actual"]], dtype=np.int64),
        probs=np.array([predictions[f"p_{c}"] for c in classes], dtype=float).T,
    )


# --- Markdown ---------------------------------------------------------------------------------------


def _number(value: float, interval: Mapping[str, float] | None = None, digits: int = 2) -> str:
    text = f"{value:.{digits}f}"
    return f"{text} [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]" if interval else text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _table_one(results: Sequence[ModelResults]) -> str:
    """Our numbers beside the study's, rows in the order of its Table I; a study column only where it had the model."""
    classes = results[0].classes
    header, columns = [""], []
    for r in results:
        m = r.metrics
        ours = [_number(m[c]["precision"]) for c in classes]
        ours += [_number(m[c]["recall"], m[c].get("recall_ci95")) for c in classes]
        ours += [_number(m[c]["f1"]) for c in classes]
        ours += [_number(m["weighted"]["f1"], m["weighted"]["f1_ci95"]), _number(m["accuracy"], m["accuracy_ci95"]),
                 f"{m['epochs_run']} ({m['best_epoch']})"]  # fmt: skip
        header.append(f"{r.name}, here")
        columns.append(ours)
        study = STUDY_TABLE_I.get(r.name)
        if study:
            theirs = [_number(study[k][c]) for k in ("precision", "recall", "f1") for c in classes]
            theirs += [_number(study["weighted_f1"]), _number(study["accuracy"]),
                       f"{study['epochs_run']} ({study['best_epoch']})"]  # fmt: skip
            header.append(f"{r.name}, study")
            columns.append(theirs)
    labels = [f"{k} {c}" for k in ("precision", "recall", "F1") for c in classes]
    labels += ["weighted F1", "accuracy", "epochs run (best epoch index)"]
    return _table(header, [[label, *(column[i] for column in columns)] for i, label in enumerate(labels)])


def report_markdown(results: Sequence[ModelResults], *, resamples: int, bootstrap_seed: int) -> str:
    """plots/report/report.md: Table I of the study with our numbers beside it, then calibration and figures."""
    n_test = sorted({r.metrics["n_test"] for r in results})
    macro_f1 = [_number(r.metrics["macro"]["f1"], r.metrics["macro"]["f1_ci95"]) for r in results]
    macro_auc = [_number(r.metrics["roc_auc"]["macro"]) if "macro" in r.metrics["roc_auc"] else "-" for r in results]
    ece = [f"{r.metrics['calibration']['ece']:.3f} ({r.metrics['calibration']['bins']} bins)" for r in results]
    beyond = _table(["", *(r.name for r in results)], [
        ["macro F1", *macro_f1], ["macro ROC-AUC (one-vs-rest)", *macro_auc], ["ECE (top-label confidence)", *ece],
    ])  # fmt: skip
    return f"""# Results beside the study

Test set: {' / '.join(map(str, n_test))} images. "here" is this pipeline's main run (`metrics/<model>.json`),
"study" the report's Table I (`STUDY_TABLE_I` in `bcmodels/report.py`, from ../shared/STUDY.md). In brackets:
95% percentile bootstrap intervals over the test images ({resamples} resamples, seed {bootstrap_seed}); precision
and per-class F1 have none here.

{_table_one(results)}

## Beyond the study

{beyond}

ECE is the expected calibration error: the gap between top-label confidence and accuracy, per equal-width
confidence bin, weighted by the images in the bin (0 is perfectly calibrated).

## Repeated runs

One training seed says little about a model. [{REPEAT_REPORT}]({os.path.relpath(REPEAT_REPORT, REPORT_DIR)}) gives each
metric's mean, spread and paired model comparisons over several training seeds; it is produced by `{REPEATS_COMMAND}`.

## Figures

![Confusion matrices](confusion.png)

![Training curves](curves.png)

![ROC curves](roc.png)

![Reliability diagrams](reliability.png)
"""


def _metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " "))


def repeats_markdown(summary: Mapping, seeds: Sequence[int]) -> str:
    """The repeat report (paths.REPEAT_REPORT) from the summary of stats.repeat_summary; seeds[0] is the main run's."""
    models = list(summary["models"])
    names = list(summary["models"][models[0]])
    spread = _table(["", *models], [
        [_metric_label(name), *(f"{s['mean']:.3f} ± {s['std']:.3f} ({s['min']:.3f}-{s['max']:.3f})"
                                for s in (summary["models"][m][name] for m in models))]
        for name in names
    ])  # fmt: skip
    sections = []
    for pair, comparison in summary["paired"].items():
        a, b = pair.split("_vs_", 1)
        pair_seeds = list(next(iter(comparison.values()))["per_seed"])
        rows = [[_metric_label(name), _number(d["mean"], d["ci95"], digits=3),
                 *(f"{d['per_seed'][s]:+.3f}" for s in pair_seeds)] for name, d in comparison.items()]  # fmt: skip
        header = ["", "mean difference [95% t-interval]", *(s.replace("seed", "seed ") for s in pair_seeds)]
        sections.append(f"### {a} - {b}\n\n{_table(header, rows)}")
    paired = "\n\n".join(sections) if sections else "(one model only: nothing to compare)"
    return f"""# Repeated runs

Each model trained and evaluated once per training seed: {', '.join(map(str, seeds))} (seed {seeds[0]} is the
main run of `dvc repro`). Produced by `{REPEATS_COMMAND}`; the numbers are in `{REPEAT_SUMMARY}`.

## Per model: mean ± standard deviation (min-max) over the runs

{spread}

## Paired differences, same seed

Each difference is the first model's number minus the second's, run against run of the same seed: positive
means the first scored higher (better, except for ECE). The interval is a 95% t-interval over seeds; it covers
the variation between training runs, not the uncertainty of the finite test set.

{paired}
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
        ax.imshow(matrix, cmap="Blues", vmin=0)
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
        ax.set_xticks(range(len(r.classes)), r.classes)
        ax.set_yticks(range(len(r.classes)), r.classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
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
    """Accuracy per top-label confidence bin against the diagonal of perfect calibration, one panel per model."""
    fig, axes = _axes_row(results)
    for ax, r in zip(axes, results):
        calibration = r.metrics["calibration"]
        bins = reliability_bins(r.labels, r.probs, calibration["bins"])
        width = np.diff(bins.edges)
        ax.bar(bins.edges[:-1], np.nan_to_num(bins.accuracy), width=width, align="edge", edgecolor="black",
               label="accuracy")  # fmt: skip
        for left, w, count, height in zip(bins.edges[:-1], width, bins.count, np.nan_to_num(bins.accuracy)):
            if count:
                ax.text(left + w / 2, height + 0.01, str(count), ha="center", va="bottom", fontsize="x-small")
        ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 1.08), xlabel="top-label confidence", ylabel="accuracy")
        ax.set_title(f"{r.name}: ECE {calibration['ece']:.3f}")
        ax.legend(loc="upper left", fontsize="small")
    return fig


FIGURES = {"confusion.png": confusion_figure, "curves.png": curves_figure, "roc.png": roc_figure,
           "reliability.png": reliability_figure}  # fmt: skip


def save_figure(fig: Figure, path: Path) -> None:
    """PNG at a fixed dpi without the version stamp, so the same inputs give the same bytes."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def write_report(results: Sequence[ModelResults], out_dir: Path, *, resamples: int, bootstrap_seed: int) -> list[Path]:
    """report.md and the figures into out_dir; returns the paths written."""
    for name, draw in FIGURES.items():
        save_figure(draw(results), out_dir / name)
    write_text(out_dir / "report.md", report_markdown(results, resamples=resamples, bootstrap_seed=bootstrap_seed))
    return [out_dir / "report.md", *(out_dir / name for name in FIGURES)]
