"""Bootstrap and binomial intervals and calibration on cases whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from bcmodels.evaluation.stats import (
    binomial_interval,
    bootstrap_confusions,
    bootstrap_intervals,
    expected_calibration_error,
    percentile_interval,
    reliability_bins,
    scores_from_confusions,
)


def _noisy_predictions(n: int = 117, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Labels in the study's test proportions and predictions right about 70% of the time."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[66 / 117, 31 / 117, 20 / 117])
    preds = np.where(rng.random(n) < 0.7, labels, rng.integers(0, 3, size=n))
    return labels, preds


def test_a_perfect_classifier_has_the_degenerate_interval_one_to_one():
    labels = np.array([0, 1, 2] * 4)
    intervals = bootstrap_intervals(labels, labels, 3, resamples=1000, seed=0)
    assert set(intervals) == {"accuracy", "macro_f1", "weighted_f1"}
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
    points = {
        "accuracy": np.mean(labels == preds),
        "macro_f1": f1_score(labels, preds, average="macro"),
        "weighted_f1": f1_score(labels, preds, average="weighted"),
    }
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


def test_2000_resamples_are_the_confusions_of_the_drawn_images_and_the_intervals_their_percentiles():
    """The study's size (2000 x 117): no resample's counts spill into another's block of the one bincount."""
    labels, preds = _noisy_predictions()
    draws = np.random.default_rng(0).integers(0, len(labels), size=(2000, len(labels)))  # the same draws
    by_hand = np.zeros((2000, 3, 3), dtype=np.int64)
    np.add.at(by_hand, (np.arange(2000)[:, None], labels[draws], preds[draws]), 1)
    assert np.array_equal(bootstrap_confusions(labels, preds, 3, resamples=2000, seed=0), by_hand)
    accuracy = np.mean(labels[draws] == preds[draws], axis=1)
    low, high = np.percentile(accuracy, [2.5, 97.5])
    intervals = bootstrap_intervals(labels, preds, 3, resamples=2000, seed=0)
    assert intervals["accuracy"] == pytest.approx({"low": low, "high": high})


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


def test_binomial_interval_by_the_beta_quantiles_and_never_a_point_at_the_ends():
    assert binomial_interval(0, 20) == {"low": 0.0, "high": pytest.approx(1 - 0.025 ** (1 / 20))}
    assert binomial_interval(20, 20) == {"low": pytest.approx(0.025 ** (1 / 20)), "high": 1.0}
    middle = binomial_interval(10, 20)
    assert middle == pytest.approx({"low": 0.2720, "high": 0.7280}, abs=1e-4)  # Clopper-Pearson tables
