"""The cross-validation summary: pooled metrics equal those computed by hand from the fold predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from bcmodels.config.schema import CLASSES
from bcmodels.errors import DataError
from bcmodels.evaluation.crossval import load_out_of_fold, predictions_path, statistics, summarize
from bcmodels.evaluation.crossval_report import reliability_figure, summarize_crossval
from bcmodels.evaluation.stats import (
    expected_calibration_error,
    image_weights,
    reliability_bins,
    weighted_auc,
    weighted_ece,
)
from bcmodels.formats.predictions import Predictions, write_predictions

FOLDS, N = (0, 1, 2), 60


def _probs(rng: np.random.Generator, labels: np.ndarray, skill: float) -> np.ndarray:
    logits = rng.normal(size=(len(labels), 3))
    logits[np.arange(len(labels)), labels] += skill
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


@pytest.fixture
def folds(tmp_path):
    """Out-of-fold predictions of two models, 20 images per fold, and the pooled truth built by hand."""
    rng = np.random.default_rng(0)
    files = [f"img{i:02d}.png" for i in range(N)]
    labels = rng.choice(3, size=N, p=[0.55, 0.3, 0.15])
    probs = {"a": _probs(rng, labels, 2.0), "b": _probs(rng, labels, 0.5)}
    for model, p in probs.items():
        for fold in FOLDS:
            rows = slice(20 * fold, 20 * fold + 20)
            predictions = Predictions(files[rows], CLASSES, labels[rows], p[rows])
            write_predictions(predictions_path(tmp_path, fold, 0, model), predictions)
    return {"root": tmp_path, "files": files, "labels": labels, "probs": probs}


def test_pooled_metrics_equal_those_of_all_out_of_fold_predictions_by_hand(folds):
    oof = load_out_of_fold(folds["root"], "a", FOLDS, [0])
    assert oof.files == folds["files"] and oof.fold.tolist() == [0] * 20 + [1] * 20 + [2] * 20
    labels, probs = folds["labels"], folds["probs"]["a"]
    preds = probs.argmax(axis=1)
    point = {name: v[0] for name, v in statistics(oof, np.ones((1, N)), bins=10).items()}
    assert point["accuracy"] == pytest.approx(np.mean(preds == labels))
    assert point["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro"))
    assert point["weighted_f1"] == pytest.approx(f1_score(labels, preds, average="weighted"))
    for c, name in enumerate(CLASSES):
        assert point[f"recall_{name}"] == pytest.approx(recall_score(labels, preds, average=None)[c])
        assert point[f"precision_{name}"] == pytest.approx(precision_score(labels, preds, average=None)[c])
        assert point[f"f1_{name}"] == pytest.approx(f1_score(labels, preds, average=None)[c])
        assert point[f"auc_{name}"] == pytest.approx(roc_auc_score(labels == c, probs[:, c]))
    assert point["ece"] == pytest.approx(expected_calibration_error(labels, probs, 10))


def test_weighted_statistics_equal_the_plain_ones_on_the_resampled_images():
    rng = np.random.default_rng(3)
    scores, positive = rng.random(40).round(1), rng.random(40) < 0.4  # rounding makes ties
    weights = image_weights(40, 5, seed=1)
    aucs = weighted_auc(scores, positive, weights)
    confidence, correct = rng.uniform(0.5, 1.0, 40), (rng.random(40) < 0.6).astype(float)
    eces = weighted_ece(confidence, correct, weights, bins=10)
    for row in range(1, 6):
        drawn = np.repeat(np.arange(40), weights[row].astype(int))
        assert aucs[row] == pytest.approx(roc_auc_score(positive[drawn], scores[drawn]))
        labels = np.where(correct[drawn] == 1, 0, 1)  # top label 0, right exactly when correct
        probs = np.stack([confidence[drawn], 1 - confidence[drawn]], axis=1)
        assert eces[row] == pytest.approx(expected_calibration_error(labels, probs, 10))
    assert aucs[0] == pytest.approx(roc_auc_score(positive, scores))


def test_paired_differences_use_the_same_images_and_bracket_the_difference(folds):
    oofs = {m: load_out_of_fold(folds["root"], m, FOLDS, [0]) for m in ("a", "b")}
    summary = summarize(["a", "b"], oofs, resamples=1000, seed=0, bins=10)
    pair = summary["paired"]["a_vs_b"]["accuracy"]
    a, b = summary["models"]["a"]["accuracy"]["value"], summary["models"]["b"]["accuracy"]["value"]
    assert pair["value"] == pytest.approx(a - b) and pair["ci95"]["low"] < a - b < pair["ci95"]["high"]
    # pairing: the interval of the difference is narrower than the two intervals taken apart would allow
    spread = [summary["models"][m]["accuracy"]["ci95"] for m in ("a", "b")]
    assert pair["ci95"]["high"] - pair["ci95"]["low"] < sum(s["high"] - s["low"] for s in spread)
    assert summary["models"]["a"]["per_fold"]["accuracy"]["n"] == 3
    confusion = summary["models"]["a"]["confusion"]
    assert sum(sum(row.values()) for row in confusion.values()) == N


def test_an_image_tested_twice_or_missing_is_refused(folds):
    root = folds["root"]
    duplicate = Predictions(["img00.png"], CLASSES, np.array([0]), np.array([[0.5, 0.3, 0.2]]))
    write_predictions(predictions_path(root, 1, 0, "a"), duplicate)
    with pytest.raises(DataError, match=r"a, seed 0: img00\.png is tested by folds 0 and 1; the folds overlap"):
        load_out_of_fold(root, "a", FOLDS, [0])
    with pytest.raises(DataError, match=r"fold2-seed1/a\.csv: not found; `dvc repro crossval/dvc.yaml` makes it"):
        load_out_of_fold(root, "a", (2,), [1])


def test_summarize_crossval_writes_headlines_report_and_figures(folds, tmp_path):
    out = tmp_path / "out"
    summary = summarize_crossval(["a", "b"], FOLDS, [0], folds["root"], out, resamples=1000, seed=0, bins=10)
    assert (out / "summary" / "a.json").is_file() and (out / "report.md").is_file()
    report = (out / "report.md").read_text()
    assert "| a - b |" in report and f"{summary['images']} images tested" in report
    for figure in ("metrics", "recall", "confusion", "reliability"):
        assert (out / "figures" / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"
    assert "figures/reliability.png" in report


def test_the_reliability_figure_shows_each_models_out_of_fold_accuracy_per_confidence_bin(folds):
    oofs = {m: load_out_of_fold(folds["root"], m, FOLDS, [0]) for m in ("a", "b")}
    summary = summarize(["a", "b"], oofs, resamples=10, seed=0, bins=10)
    axes = reliability_figure(oofs, ["a", "b"], 10, summary).axes
    for ax, m in zip(axes, ("a", "b")):
        probs = folds["probs"][m]
        bins = reliability_bins(folds["labels"], probs, 10)
        assert [bar.get_height() for bar in ax.patches] == pytest.approx(np.nan_to_num(bins.accuracy))
        assert ax.get_title().endswith(f"ECE {summary['models'][m]['ece']['value']:.3f}")
        assert sum(int(t.get_text()[2:]) for t in ax.texts) == N  # every image in one bin
