"""The cross-validation benchmark's outputs: crossval/summary.json, a headline file per model for `dvc metrics
show`, crossval/report.md and its figures, from the pooled statistics of bcmodels.evaluation.crossval; and
crossval/validation.json, the same statistics on the validation images, for choosing between recipes."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bcmodels.evaluation.crossval import COMMAND, SUMMARY_METRICS, OutOfFold, headline, load_out_of_fold, summarize
from bcmodels.evaluation.stats import LEVEL, reliability_bins
from bcmodels.io.files import write_json, write_text
from bcmodels.render.figures import DPI, draw_confusion, draw_reliability, save_figure
from bcmodels.render.tables import metric_label, number, table


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

## Calibration: accuracy per top-label confidence bin over all images

![Reliability diagrams](figures/reliability.png)
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


def reliability_figure(oofs: dict[str, OutOfFold], models: Sequence[str], bins: int, summary: dict) -> Figure:
    """One reliability diagram per model over all its out-of-fold predictions (every seed), titled with its ECE."""
    fig = Figure(figsize=(3.4 * len(models), 3.4), dpi=DPI, layout="constrained")
    for ax, m in zip(fig.subplots(1, len(models), squeeze=False)[0], models):
        oof = oofs[m]
        seeds = oof.probs.shape[1]
        labels = np.repeat(oof.labels, seeds)
        probs = oof.probs.reshape(len(labels), -1)
        ece = summary["models"][m]["ece"]["value"]
        calibration = reliability_bins(labels, probs, bins)
        draw_reliability(
            ax, calibration.edges, calibration.count, calibration.accuracy, f"{_two_lines(m)}\nECE {ece:.3f}"
        )
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
    save_figure(reliability_figure(oofs, models, bins, summary), out / "figures" / "reliability.png")
    return summary


def summarize_validation(
    models: Sequence[str], folds: Sequence[int], seeds: Sequence[int], root: Path, out: Path, **stats
) -> dict:
    """The validate stages' predictions below root (fold<k>-seed<s>/<model>.csv) pooled per model as the test
    predictions are, in the same JSON layout at out; stats: resamples, seed, bins. Every image is validated once
    over the folds (a fold's validation images are the next fold's test images)."""
    oofs = {m: load_out_of_fold(root, m, folds, seeds) for m in models}
    summary = summarize(models, oofs, **stats)
    write_json(out, {"split": "validation", **summary})
    return summary
