"""Bootstrap intervals, calibration and repeated-run summaries on cases whose answer is known by hand."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from bcmodels.stats import (
    bootstrap_confusions,
    bootstrap_intervals,
    compare_models,
    describe,
    expected_calibration_error,
    paired_difference,
    percentile_interval,
    reliability_bins,
    repeat_summary,
    run_scores,
    scores_from_confusions,
)

T_975_2DF = 4.302653  # Student's t, 97.5th percentile, 2 degrees of freedom (any t table)


def _noisy_predictions(n: int = 117, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Labels in the study's test proportions and predictions right about 70% of the time."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[66 / 117, 31 / 117, 20 / 117])
    preds = np.where(rng.random(n) < 0.7, labels, rng.integers(0, 3, size=n))
    return labels, preds


def test_a_perfect_classifier_has_the_degenerate_interval_one_to_one():
    labels = np.array([0, 1, 2] * 4)
    intervals = bootstrap_intervals(labels, labels, 3, resamples=1000, seed=0)
    assert set(intervals) == {"accuracy", "macro_f1", "weighted_f1", "recall_0", "recall_1", "recall_2"}
    for interval in intervals.values():
        assert interval == {"low": 1.0, "high": 1.0}


def test_a_known_confusion_matrix_gives_the_known_scores():
    # rows true, columns predicted: benign 3 right, 1 called malignant; malignant 2 right; normal 1 right, 1 benign
    confusion = np.array([[[3, 1, 0], [0, 2, 0], [1, 0, 1]]])
    scores = scores_from_confusions(confusion)
    f1 = np.array([0.75, 0.8, 2 / 3])
    assert scores["accuracy"] == pytest.approx([6 / 8])
    assert scores["recall"][0] == pytest.approx([3 / 4, 1.0, 1 / 2])
    assert scores["macro_f1"] == pytest.approx([f1.mean()])
    assert scores["weighted_f1"] == pytest.approx([np.average(f1, weights=[4, 2, 2])])


def test_each_resample_is_scored_as_scikit_learn_scores_the_resampled_images():
    labels, preds = _noisy_predictions()
    confusions = bootstrap_confusions(labels, preds, 3, resamples=5, seed=3)
    draws = np.random.default_rng(3).integers(0, len(labels), size=(5, len(labels)))  # the same draws
    scores = scores_from_confusions(confusions)
    for r, drawn in enumerate(draws):
        y, p = labels[drawn], preds[drawn]
        assert confusions[r].sum() == len(labels)
        assert scores["accuracy"][r] == pytest.approx(np.mean(y == p))
        assert scores["macro_f1"][r] == pytest.approx(f1_score(y, p, average="macro"))
        assert scores["weighted_f1"][r] == pytest.approx(f1_score(y, p, average="weighted"))
        assert scores["recall"][r] == pytest.approx(recall_score(y, p, average=None))


def test_the_intervals_contain_the_point_estimates_and_are_about_as_wide_as_theory_says():
    labels, preds = _noisy_predictions()
    intervals = bootstrap_intervals(labels, preds, 3, resamples=2000, seed=0)
    points = {"accuracy": np.mean(labels == preds), "macro_f1": f1_score(labels, preds, average="macro"),
              "weighted_f1": f1_score(labels, preds, average="weighted"),
              **{f"recall_{k}": r for k, r in enumerate(recall_score(labels, preds, average=None))}}  # fmt: skip
    for name, point in points.items():
        assert intervals[name]["low"] < point < intervals[name]["high"], name
    # binomial standard error of an accuracy near 0.75 on 117 images: about 0.04, so a 95% width near 0.16
    width = intervals["accuracy"]["high"] - intervals["accuracy"]["low"]
    assert 0.12 < width < 0.20


def test_the_seeded_bootstrap_is_identical_twice_and_another_seed_differs():
    labels, preds = _noisy_predictions()
    first = bootstrap_intervals(labels, preds, 3, resamples=1000, seed=7)
    assert bootstrap_intervals(labels, preds, 3, resamples=1000, seed=7) == first
    assert bootstrap_intervals(labels, preds, 3, resamples=1000, seed=8) != first


def test_2000_resamples_of_117_images_take_well_under_a_second():
    labels, preds = _noisy_predictions()
    start = time.perf_counter()
    bootstrap_intervals(labels, preds, 3, resamples=2000, seed=0)
    assert time.perf_counter() - start < 1.0


def test_a_class_missing_from_a_resample_is_left_out_not_scored_zero():
    # resample 0 has no normal image and predicts none: no recall and no F1 for normal there
    scores = scores_from_confusions(np.array([[[2, 0, 0], [0, 2, 0], [0, 0, 0]]]))
    assert np.isnan(scores["recall"][0, 2])
    assert scores["macro_f1"][0] == 1.0 and scores["weighted_f1"][0] == 1.0
    assert percentile_interval(np.array([np.nan, np.nan])) is None


def test_percentile_interval_is_the_central_95_percent():
    assert percentile_interval(np.arange(101.0)) == pytest.approx({"low": 2.5, "high": 97.5})


def test_a_perfectly_calibrated_toy_case_has_zero_ece():
    # ten images at confidence 0.8, eight of them right; ten at 0.6, six right
    labels = np.array([0] * 8 + [1] * 2 + [0] * 6 + [2] * 4)
    probs = np.array([[0.8, 0.1, 0.1]] * 10 + [[0.6, 0.3, 0.1]] * 10)
    assert expected_calibration_error(labels, probs, n_bins=10) == pytest.approx(0.0)


def test_confidently_wrong_everywhere_has_ece_one():
    labels = np.array([1, 2, 0, 1])
    probs = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert expected_calibration_error(labels, probs, n_bins=10) == pytest.approx(1.0)


def test_reliability_bins_and_ece_by_hand():
    # bin (0.3, 0.4]: two images at 0.35, one right; bin (0.9, 1]: two at 0.95 and 1.0, both right
    labels = np.array([0, 1, 2, 0])
    probs = np.array([[0.35, 0.33, 0.32], [0.35, 0.33, 0.32], [0.0, 0.05, 0.95], [1.0, 0.0, 0.0]])
    bins = reliability_bins(labels, probs, n_bins=10)
    assert bins.edges == pytest.approx(np.linspace(0, 1, 11))
    assert bins.count.tolist() == [0, 0, 0, 2, 0, 0, 0, 0, 0, 2]
    assert bins.confidence[3] == pytest.approx(0.35) and bins.confidence[9] == pytest.approx(0.975)
    assert bins.accuracy[3] == 0.5 and bins.accuracy[9] == 1.0
    assert np.isnan(bins.accuracy[0])
    # ECE = 2/4 * |0.5 - 0.35| + 2/4 * |1 - 0.975|
    assert expected_calibration_error(labels, probs, n_bins=10) == pytest.approx(0.5 * 0.15 + 0.5 * 0.025)


def test_describe_by_hand():
    # mean 0.65; deviations -0.05, 0.05, 0.15, -0.15: sum of squares 0.05, over n - 1 = 3
    assert describe([0.6, 0.7, 0.8, 0.5]) == pytest.approx(
        {"mean": 0.65, "std": np.sqrt(0.05 / 3), "min": 0.5, "max": 0.8, "n": 4})
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
        {"mean": 0.6, "std": 0.1, "min": 0.5, "max": 0.7, "n": 3})
    assert list(summary["paired"]) == ["simple_cnn_vs_mobilenet", "simple_cnn_vs_resnet101", "mobilenet_vs_resnet101"]
    assert summary["paired"]["simple_cnn_vs_mobilenet"]["accuracy"]["per_seed"] == pytest.approx(
        {"seed0": 0.1, "seed1": 0.0, "seed2": 0.2})
    assert compare_models({"simple_cnn": runs["simple_cnn"]}) == {}


def test_run_scores_reads_the_summarised_numbers_of_a_metrics_json():
    metrics = {"accuracy": 0.7, "macro": {"f1": 0.6}, "weighted": {"f1": 0.65}, "calibration": {"ece": 0.1},
               "benign": {"recall": 0.9}, "malignant": {"recall": 0.5}, "normal": {"recall": 0.2}}  # fmt: skip
    assert run_scores(metrics, ("benign", "malignant", "normal")) == {
        "accuracy": 0.7, "macro_f1": 0.6, "weighted_f1": 0.65, "recall_benign": 0.9, "recall_malignant": 0.5,
        "recall_normal": 0.2, "ece": 0.1}  # fmt: skip
