"""The repeated study (repeats/dvc.yaml): each model trained once more per seed on the same split, summarised
over seeds (mean, spread) with paired comparisons of every pair of models, seed by seed."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from bcmodels.config.schema import CLASSES
from bcmodels.evaluation.stats import LEVEL
from bcmodels.formats.metrics import HEADLINE_KEYS, read_detail
from bcmodels.io.files import write_json, write_text
from bcmodels.render.tables import metric_label, number, table

COMMAND = "dvc repro repeats/dvc.yaml"


def run_scores(metrics: Mapping) -> dict[str, float]:
    """The numbers of one run's detail metrics that are summarised over runs."""
    scores = {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro"]["f1"],
        "weighted_f1": metrics["weighted"]["f1"],
        **{f"recall_{c}": metrics[c]["recall"] for c in CLASSES},
        "ece": metrics["calibration"]["ece"],
    }
    if "macro" in metrics["roc_auc"]:
        scores["macro_auc"] = metrics["roc_auc"]["macro"]
    return scores


def describe(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation (ddof=1), min, max and n of at least two values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        raise ValueError(f"a spread needs at least two runs, got {values.size}")
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)),
        "min": float(values.min()),
        "max": float(values.max()),
        "n": int(values.size),
    }


def summarize_runs(runs: Mapping[int, Mapping[str, float]]) -> dict[str, dict[str, float | int]]:
    """Per metric that every run has, describe() over runs (seed -> run_scores)."""
    names = [name for name in next(iter(runs.values())) if all(name in scores for scores in runs.values())]
    return {name: describe([scores[name] for scores in runs.values()]) for name in names}


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> dict:
    """a - b over the seeds both have: mean, 95% t-interval over seeds, n, and each seed's difference.

    Pairing by seed removes what both runs of a seed share (its split, when the split follows the seed).
    """
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        raise ValueError(f"a paired comparison needs at least two shared seeds, got {seeds}")
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    mean, n = float(diffs.mean()), len(diffs)
    half_width = scipy_stats.t.ppf(0.5 + LEVEL / 2, df=n - 1) * diffs.std(ddof=1) / np.sqrt(n)
    return {
        "mean": mean,
        "ci95": {"low": float(mean - half_width), "high": float(mean + half_width)},
        "n": n,
        "per_seed": {f"seed{s}": float(d) for s, d in zip(seeds, diffs)},
    }


def compare_models(runs: Mapping[str, Mapping[int, Mapping[str, float]]]) -> dict[str, dict[str, dict]]:
    """Every pair of models (in the given order), keyed "<a>_vs_<b>": paired_difference of a - b per metric."""
    comparisons = {}
    for a, b in itertools.combinations(runs, 2):
        names = [n for n in next(iter(runs[a].values())) if all(n in r for m in (a, b) for r in runs[m].values())]
        comparisons[f"{a}_vs_{b}"] = {
            name: paired_difference({s: r[name] for s, r in runs[a].items()}, {s: r[name] for s, r in runs[b].items()})
            for name in names
        }
    return comparisons


def repeat_summary(runs: Mapping[str, Mapping[int, Mapping[str, float]]]) -> dict:
    """model -> seed -> run_scores, summarised: {"models": per model and metric, "paired": per pair and metric}."""
    return {
        "models": {model: summarize_runs(by_seed) for model, by_seed in runs.items()},
        "paired": compare_models(runs),
    }


def headline(spread: Mapping[str, Mapping], images: int) -> dict:
    """A model's means over runs under the headline keys of a single run, so `dvc metrics show` lines them up."""
    means = {name: spread[name]["mean"] if name in spread else None for name in HEADLINE_KEYS[:5]}
    return {**means, "images": images, "runs": spread["accuracy"]["n"]}


def markdown(summary: Mapping, seeds: Sequence[int], summary_path: Path) -> str:
    """The repeat report from repeat_summary(); seeds[0] is the main run's."""
    models = list(summary["models"])
    names = list(summary["models"][models[0]])
    spread = table(
        ["", *models],
        [
            [
                metric_label(name),
                *(
                    f"{s['mean']:.3f} ± {s['std']:.3f} ({s['min']:.3f}-{s['max']:.3f})"
                    for s in (summary["models"][m][name] for m in models)
                ),
            ]
            for name in names
        ],
    )
    sections = []
    for pair, comparison in summary["paired"].items():
        a, b = pair.split("_vs_", 1)
        pair_seeds = list(next(iter(comparison.values()))["per_seed"])
        rows = [
            [
                metric_label(name),
                number(d["mean"], d["ci95"], digits=3, sign=True),
                *(f"{d['per_seed'][s]:+.3f}" for s in pair_seeds),
            ]
            for name, d in comparison.items()
        ]
        header = ["", "mean difference [95% t-interval]", *(s.replace("seed", "seed ") for s in pair_seeds)]
        sections.append(f"### {a} - {b}\n\n{table(header, rows)}")
    paired = "\n\n".join(sections) if sections else "(one model only: nothing to compare)"
    return f"""# Repeated runs

Each model trained and evaluated once per training seed: {", ".join(map(str, seeds))} (seed {seeds[0]} is the
main run of `dvc repro`). Produced by `{COMMAND}`; the numbers are in `{summary_path}`.

## Per model: mean ± standard deviation (min-max) over the runs

{spread}

## Paired differences, same seed

Each difference is the first model's number minus the second's, run against run of the same seed: positive
means the first scored higher (better, except for ECE). The interval is a 95% t-interval over seeds; it covers
the variation between training runs, not the uncertainty of the finite test set.

{paired}
"""


def summarize_repeats(
    models: Sequence[str],
    seeds: Sequence[int],
    runs_dir: Path,
    summary_json: Path,
    summary_md: Path,
    headline_dir: Path,
) -> dict:
    """Read every run's detail metrics (runs_dir/seed<seed>/<model>.json), write the summary, report, headlines."""
    runs: dict[str, dict[int, dict]] = {}
    images = {}
    for model in models:
        runs[model] = {}
        for seed in seeds:
            detail = read_detail(runs_dir / f"seed{seed}" / f"{model}.json", COMMAND)
            runs[model][seed] = run_scores(detail)
            images[model] = detail["n_test"]
    summary = repeat_summary(runs)
    write_json(summary_json, summary)
    write_text(summary_md, markdown(summary, seeds, summary_json))
    for model in models:
        write_json(headline_dir / f"{model}.json", headline(summary["models"][model], images[model]))
    return summary
