"""The repeated study's summary: spread over seeds and paired comparisons, on cases known by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bcmodels.evaluation.repeats import (
    compare_models,
    describe,
    markdown,
    paired_difference,
    repeat_summary,
    run_scores,
    summarize_repeats,
)
from bcmodels.formats.metrics import HEADLINE_KEYS
from tests.test_evaluation import _probs, metrics_of

T_975_2DF = 4.302653  # Student's t, 97.5th percentile, 2 degrees of freedom (any t table)


def test_describe_by_hand():
    # mean 0.65; deviations -0.05, 0.05, 0.15, -0.15: sum of squares 0.05, over n - 1 = 3
    assert describe([0.6, 0.7, 0.8, 0.5]) == pytest.approx(
        {"mean": 0.65, "std": np.sqrt(0.05 / 3), "min": 0.5, "max": 0.8, "n": 4}
    )
    with pytest.raises(ValueError, match="at least two runs"):
        describe([0.6])


def test_paired_difference_by_hand_uses_only_the_shared_seeds():
    a = {0: 0.70, 1: 0.80, 2: 0.60}
    b = {0: 0.60, 1: 0.65, 2: 0.55, 3: 0.90}  # seed 3 has no partner in a
    d = paired_difference(a, b)
    # differences 0.10, 0.15, 0.05: mean 0.10, sd 0.05, half width t(0.975, 2) * 0.05 / sqrt(3)
    half = T_975_2DF * 0.05 / np.sqrt(3)
    assert d["mean"] == pytest.approx(0.10) and d["n"] == 3
    assert d["ci95"] == pytest.approx({"low": 0.10 - half, "high": 0.10 + half}, rel=1e-6)
    assert d["per_seed"] == pytest.approx({"seed0": 0.10, "seed1": 0.15, "seed2": 0.05})
    with pytest.raises(ValueError, match="at least two shared seeds"):
        paired_difference({0: 1.0, 1: 1.0}, {1: 0.5})


def test_repeat_summary_describes_each_model_and_compares_each_pair_in_order():
    runs = {
        "simple_cnn": {0: {"accuracy": 0.6}, 1: {"accuracy": 0.7}, 2: {"accuracy": 0.8}},
        "mobilenet": {0: {"accuracy": 0.5}, 1: {"accuracy": 0.7}, 2: {"accuracy": 0.6}},
        "resnet101": {0: {"accuracy": 0.9}, 1: {"accuracy": 0.8}, 2: {"accuracy": 0.85}},
    }
    summary = repeat_summary(runs)
    assert summary["models"]["mobilenet"]["accuracy"] == pytest.approx(
        {"mean": 0.6, "std": 0.1, "min": 0.5, "max": 0.7, "n": 3}
    )
    assert list(summary["paired"]) == ["simple_cnn_vs_mobilenet", "simple_cnn_vs_resnet101", "mobilenet_vs_resnet101"]
    assert summary["paired"]["simple_cnn_vs_mobilenet"]["accuracy"]["per_seed"] == pytest.approx(
        {"seed0": 0.1, "seed1": 0.0, "seed2": 0.2}
    )
    assert compare_models({"simple_cnn": runs["simple_cnn"]}) == {}


def test_run_scores_reads_the_summarised_numbers_of_a_metrics_json():
    metrics = {
        "accuracy": 0.7,
        "macro": {"f1": 0.6},
        "weighted": {"f1": 0.65},
        "calibration": {"ece": 0.1},
        "roc_auc": {"macro": 0.8},
        "benign": {"recall": 0.9},
        "malignant": {"recall": 0.5},
        "normal": {"recall": 0.2},
    }
    assert run_scores(metrics) == {
        "accuracy": 0.7,
        "macro_f1": 0.6,
        "weighted_f1": 0.65,
        "recall_benign": 0.9,
        "recall_malignant": 0.5,
        "recall_normal": 0.2,
        "ece": 0.1,
        "macro_auc": 0.8,
    }


def test_summarize_repeats_writes_summary_report_and_one_headline_per_model(tmp_path):
    labels = [0, 0, 0, 1, 1, 2] * 3
    runs = tmp_path / "metrics"
    for seed, shift in ((0, 0), (1, 1), (2, 2)):
        for model, offset in (("simple_cnn", 0), ("mobilenet", 1)):
            preds = [(y + (i + shift + offset) % 3 // 2) % 3 for i, y in enumerate(labels)]
            path = runs / f"seed{seed}" / f"{model}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(metrics_of(labels, _probs(preds))))
    summary = summarize_repeats(
        ["simple_cnn", "mobilenet"],
        [0, 1, 2],
        runs,
        tmp_path / "summary.json",
        tmp_path / "summary.md",
        tmp_path / "summary",
    )
    headline = json.loads((tmp_path / "summary" / "simple_cnn.json").read_text())
    assert tuple(headline) == HEADLINE_KEYS and headline["runs"] == 3 and headline["images"] == 18
    assert headline["accuracy"] == pytest.approx(summary["models"]["simple_cnn"]["accuracy"]["mean"])
    report = (tmp_path / "summary.md").read_text()
    difference = summary["paired"]["simple_cnn_vs_mobilenet"]["accuracy"]["mean"]
    assert f"{difference:+.3f} [" in report  # differences carry their sign


def test_the_report_signs_every_mean_difference():
    runs = {"a": {0: {"accuracy": 0.6}, 1: {"accuracy": 0.7}}, "b": {0: {"accuracy": 0.7}, 1: {"accuracy": 0.8}}}
    text = markdown(repeat_summary(runs), [0, 1], "summary.json")
    assert "-0.100 [" in text and "| -0.100 | -0.100 |" in text
