"""The report from small hand-made metrics, history and prediction files, as the stages write them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bcmodels.config.schema import CLASSES
from bcmodels.errors import DataError
from bcmodels.evaluation.report import (
    STUDY_TABLE_I,
    RunFiles,
    available_results,
    confusion_figure,
    curves_figure,
    load_results,
    reliability_figure,
    roc_figure,
    save_figure,
    write_report,
)
from bcmodels.formats.history import write_history
from bcmodels.formats.predictions import Predictions, write_predictions
from bcmodels.io.files import write_json
from tests.test_evaluation import metrics_of

MODELS = ("simple_cnn", "mobilenet")
LABELS = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]
# Predicted class and top-label confidence per test image, per model: 7 and 6 of 10 right; mobilenet never says normal.
PREDICTIONS = {
    "simple_cnn": ([0, 0, 0, 0, 1, 1, 1, 0, 2, 0], [0.9, 0.8, 0.7, 0.9, 0.6, 0.8, 0.7, 0.5, 0.6, 0.4]),
    "mobilenet": ([0, 0, 0, 1, 0, 1, 1, 0, 0, 0], [0.6, 0.7, 0.8, 0.5, 0.9, 0.6, 0.7, 0.8, 0.5, 0.6]),
}
EPOCHS = {"simple_cnn": (3, 1), "mobilenet": (4, 2)}  # epochs run, best epoch index


def _probs(preds: list[int], confidence: list[float]) -> np.ndarray:
    probs = np.array([[(1 - c) / 2] * 3 for c in confidence])
    probs[np.arange(len(preds)), preds] = confidence
    return probs


def files_of(root: Path):
    return lambda m: RunFiles(root / "detail" / f"{m}.json", root / "history" / f"{m}.csv", root / "pred" / f"{m}.csv")


def write_main_run(root: Path, model: str) -> None:
    """Detail metrics, predictions and history of one model's main run, as evaluate and train write them."""
    files = files_of(root)(model)
    labels, probs = np.array(LABELS), _probs(*PREDICTIONS[model])
    epochs_run, best_epoch = EPOCHS[model]
    write_json(files.detail, {**metrics_of(labels, probs), "best_epoch": best_epoch, "epochs_run": epochs_run})
    write_predictions(files.predictions, Predictions([f"img{i}.png" for i in range(10)], CLASSES, labels, probs))
    write_history(
        files.history,
        [
            {
                "epoch": e,
                "train_loss": 1.0 / (e + 1),
                "val_loss": 1.2 / (e + 1),
                "train_accuracy": 0.5 + 0.1 * e,
                "val_accuracy": 0.45 + 0.1 * e,
                "lr": 0.001,
                "seconds": 1.0,
            }
            for e in range(epochs_run)
        ],
    )


@pytest.fixture
def runs(tmp_path) -> Path:
    for model in MODELS:
        write_main_run(tmp_path, model)
    return tmp_path


def _row(report_text: str, label: str) -> str:
    return next(line for line in report_text.splitlines() if line.startswith(f"| {label} |"))


def _report(root: Path, models=MODELS) -> str:
    results, missing = available_results(models, files_of(root))
    write_report(results, missing, root / "report", resamples=1000, bootstrap_seed=0)
    return (root / "report" / "report.md").read_text()


def test_the_report_shows_our_numbers_with_intervals_beside_the_studys(runs):
    text = _report(runs)
    ours = {m: json.loads((runs / "detail" / f"{m}.json").read_text()) for m in MODELS}
    assert _row(text, "") == "|  | simple_cnn, here | simple_cnn, study | mobilenet, here | mobilenet, study |"
    intervals = {m: ours[m]["accuracy_ci95"] for m in MODELS}
    accuracy = [f"{ours[m]['accuracy']:.2f} [{intervals[m]['low']:.2f}, {intervals[m]['high']:.2f}]" for m in MODELS]
    assert accuracy[0].startswith("0.70 [") and accuracy[1].startswith("0.60 [")
    assert _row(text, "accuracy") == f"| accuracy | {accuracy[0]} | 0.68 | {accuracy[1]} | 0.66 |"
    # benign precision 4/6 and 4/7; the study's 0.74 and 0.66
    assert _row(text, "precision benign") == "| precision benign | 0.67 | 0.74 | 0.57 | 0.66 |"
    recall = ours["simple_cnn"]["malignant"]["recall_ci95"]
    assert _row(text, "recall malignant").startswith(
        f"| recall malignant | 0.67 [{recall['low']:.2f}, {recall['high']:.2f}] | 0.58 |"
    )
    # mobilenet never predicts normal: its recall 0 has a real interval and a mark saying why
    normal = ours["mobilenet"]["normal"]["recall_ci95"]
    assert f"| 0.00 [0.00, {normal['high']:.2f}]† |" in _row(text, "recall normal") and normal["high"] > 0.5
    assert "† the model never predicted this class: mobilenet: normal." in text
    epochs = "epochs run (best epoch index)"
    assert _row(text, epochs) == f"| {epochs} | 3 (1) | 8 (5) | 4 (2) | 9 (6) |"
    ece = [f"{ours[m]['calibration']['ece']:.3f} (10 bins)" for m in MODELS]
    assert _row(text, "ECE (top-label confidence)") == f"| ECE (top-label confidence) | {ece[0]} | {ece[1]} |"
    assert "[repeats/summary.md](../../repeats/summary.md)" in text and "Not run" not in text
    assert "[docs/study.md](../../docs/study.md)" in text
    for figure in ("confusion.png", "curves.png", "roc.png", "reliability.png"):
        assert f"]({figure})" in text
        assert (runs / "report" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_studys_numbers_are_its_table_one():
    # spot checks against the study's Table I (docs/study.md)
    assert STUDY_TABLE_I["simple_cnn"]["recall"] == {"benign": 0.82, "malignant": 0.58, "normal": 0.40}
    assert STUDY_TABLE_I["mobilenet"]["weighted_f1"] == 0.62 and STUDY_TABLE_I["mobilenet"]["accuracy"] == 0.66
    assert STUDY_TABLE_I["resnet101"]["f1"]["normal"] == 0.80 and STUDY_TABLE_I["resnet101"]["epochs_run"] == 7


def test_a_model_without_results_is_reported_as_not_run_with_the_stage_that_makes_them(runs):
    (runs / "detail" / "mobilenet.json").unlink()
    text = _report(runs, ("simple_cnn", "mobilenet", "resnet101"))
    assert "simple_cnn, here" in text and "mobilenet, here" not in text
    assert "## Not run" in text
    assert "**resnet101** has no results:" in text and "`dvc repro evaluate@resnet101` makes it" in text
    assert "**mobilenet** has no results:" in text and "detail/mobilenet.json: not found" in text


def test_no_results_at_all_is_an_error_listing_each_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"no model has results to report:\n  .*simple_cnn\.csv: not found"):
        _report(tmp_path)
    assert not (tmp_path / "report").exists()


def test_metrics_from_an_older_evaluate_ask_for_a_rerun(runs):
    path = runs / "detail" / "simple_cnn.json"
    metrics = json.loads(path.read_text())
    del metrics["calibration"]
    write_json(path, metrics)
    with pytest.raises(DataError, match=r"no 'calibration'; it was written by an older evaluate stage\. Rerun `dvc"):
        load_results("simple_cnn", files_of(runs)("simple_cnn"))


def test_figures_have_one_panel_per_model_and_the_curves_a_log_loss_axis(runs):
    results = [load_results(m, files_of(runs)(m)) for m in MODELS]
    for draw in (confusion_figure, roc_figure, reliability_figure):
        assert len(draw(results).axes) == len(MODELS)
    loss_ax, accuracy_ax = curves_figure(results).axes
    assert loss_ax.get_yscale() == "log" and accuracy_ax.get_yscale() == "linear"
    assert len(loss_ax.get_lines()) == 2 * len(MODELS)  # train and validation per model
    assert len(roc_figure(results).axes[0].get_lines()) == len(CLASSES) + 1  # a curve per class, and the diagonal
    reliability = reliability_figure(results).axes[1]
    ece = results[1].metrics["calibration"]["ece"]
    assert reliability.get_title() == f"mobilenet: ECE {ece:.3f}"
    assert all(t.get_text().startswith("n=") for t in reliability.texts)  # bar labels say they are counts
    confusion_texts = [t.get_text() for t in confusion_figure(results).axes[1].texts]
    assert confusion_texts == ["4", "1", "0", "1", "2", "0", "2", "0", "0"]  # mobilenet: rows actual, normal column 0


def test_the_same_figure_gives_the_same_png_bytes(runs):
    results = [load_results(m, files_of(runs)(m)) for m in MODELS]
    save_figure(reliability_figure(results), runs / "a.png")
    save_figure(reliability_figure(results), runs / "b.png")
    assert (runs / "a.png").read_bytes() == (runs / "b.png").read_bytes()
