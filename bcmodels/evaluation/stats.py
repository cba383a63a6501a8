"""Uncertainty of test metrics: bootstrap and exact binomial intervals, and calibration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

LEVEL = 0.95  # every interval here is a 95% interval


# --- Bootstrap over test images -------------------------------------------------------------------


def bootstrap_confusions(
    labels: np.ndarray, preds: np.ndarray, n_classes: int, resamples: int, seed: int
) -> np.ndarray:
    """Confusion matrices (resamples, true, predicted) of the test images drawn with replacement.

    One (true, predicted) cell code per image, a (resamples, n) array of draws, and one bincount with
    each resample offset into its own block: 2000 x 117 draws take milliseconds.
    """
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    cells = labels * n_classes + preds
    draws = np.random.default_rng(seed).integers(0, len(cells), size=(resamples, len(cells)))
    block = n_classes * n_classes
    codes = cells[draws] + block * np.arange(resamples)[:, None]
    return np.bincount(codes.ravel(), minlength=resamples * block).reshape(resamples, n_classes, n_classes)


def scores_from_confusions(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro F1, weighted F1 (each shape (R,)) and recall per class (shape (R, K)).

    Same definitions as scikit-learn's, except where a ratio is 0/0 in a resample: a class with no true
    image there has no recall (NaN, left out of its interval), and a class neither true nor predicted
    there has no F1 (left out of that resample's macro mean), rather than counting either as 0.
    """
    confusions = np.asarray(confusions, dtype=np.float64)
    true_positives = np.diagonal(confusions, axis1=1, axis2=2)
    support = confusions.sum(axis=2)
    predicted = confusions.sum(axis=1)
    n = support.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = true_positives / support
        f1 = 2 * true_positives / (support + predicted)
    return {
        "accuracy": true_positives.sum(axis=1) / n,
        "macro_f1": np.nanmean(f1, axis=1),
        "weighted_f1": np.nansum(f1 * support, axis=1) / n,
        "recall": recall,
    }


def percentile_interval(samples: np.ndarray) -> dict[str, float] | None:
    """The central 95% of the samples (NaNs ignored) as {"low", "high"}; None when no sample is defined."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return None
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return {"low": float(low), "high": float(high)}


def binomial_interval(successes: int, trials: int) -> dict[str, float]:
    """The exact (Clopper-Pearson) 95% interval of a proportion successes / trials (trials > 0).

    Unlike a percentile bootstrap, it does not collapse to a point at 0 or at 1: 0 of 20 gives [0, 0.168].
    """
    tail = (1 - LEVEL) / 2
    low = 0.0 if successes == 0 else float(scipy_stats.beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(scipy_stats.beta.ppf(1 - tail, successes + 1, trials - successes))
    return {"low": low, "high": high}


def bootstrap_intervals(
    labels: np.ndarray, preds: np.ndarray, n_classes: int, *, resamples: int, seed: int
) -> dict[str, dict[str, float] | None]:
    """Percentile 95% intervals of accuracy, macro_f1 and weighted_f1."""
    scores = scores_from_confusions(bootstrap_confusions(labels, preds, n_classes, resamples, seed))
    return {name: percentile_interval(scores[name]) for name in ("accuracy", "macro_f1", "weighted_f1")}


# --- Calibration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReliabilityBins:
    """Top-label confidence in equal-width bins ((i-1)/B, i/B]; empty bins have NaN means."""

    edges: np.ndarray  # (B + 1,)
    count: np.ndarray  # (B,) images per bin
    confidence: np.ndarray  # (B,) mean top-label probability
    accuracy: np.ndarray  # (B,) fraction of those images whose top label is right


def calibration_bin(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """The bin of each confidence: n_bins of equal width, right-closed as in Guo et al. 2017, so that a
    confidence of exactly 1.0 lands in the top bin."""
    return np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> ReliabilityBins:
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    bin_of = calibration_bin(confidence, n_bins)
    count = np.bincount(bin_of, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(bin_of, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(bin_of, weights=correct, minlength=n_bins) / count
    return ReliabilityBins(np.linspace(0.0, 1.0, n_bins + 1), count, mean_confidence, accuracy)


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    """Sum over bins of |accuracy - mean confidence|, weighted by the share of images in the bin."""
    bins = reliability_bins(labels, probs, n_bins)
    filled = bins.count > 0
    gaps = np.abs(bins.accuracy[filled] - bins.confidence[filled])
    return float(np.sum(bins.count[filled] * gaps) / bins.count.sum())


# --- Weighted bootstrap: one set of image draws shared by every statistic and model ---


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
