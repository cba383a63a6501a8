"""The report and the repeat summary from small hand-made metrics and CSV files, as the stages write them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from bcmodels.config import CLASSES
from bcmodels.errors import ConfigError, DataError
from bcmodels.evaluation import classification_metrics
from bcmodels.fileio import write_csv, write_json
from bcmodels.paths import REPEAT_MAIN_RUN_DIR, REPEAT_REPORT, REPEAT_SUMMARY, REPORT_DIR, run_paths
from bcmodels.report import (
    STUDY_TABLE_I,
    confusion_figure,
    curves_figure,
    load_results,
    reliability_figure,
    roc_figure,
    save_figure,
)
from stages import report, summarize_repeats
from tests.conftest import PROJECT_ROOT
from tests.test_stages import _stage

MODELS = ("simple_cnn", "mobilenet")
LABELS = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]
# Predicted class and top-label confidence per test image, per model: 7 and 6 of 10 right.
PREDICTIONS = {
    "simple_cnn": ([0, 0, 0, 0, 1, 1, 1, 0, 2, 0], [0.9, 0.8, 0.7, 0.9, 0.6, 0.8, 0.7, 0.5, 0.6, 0.4]),
    "mobilenet": ([0, 0, 0, 1, 0, 1, 0, 0, 2, 0], [0.6, 0.7, 0.8, 0.5, 0.9, 0.6, 0.7, 0.8, 0.5, 0.6]),
}
EPOCHS = {"simple_cnn": (3, 1), "mobilenet": (4, 2)}  # epochs run, best epoch index


def _probs(preds: list[int], confidence: list[float]) -> np.ndarray:
    probs = np.array([[(1 - c) / 2] * 3 for c in confidence])
    probs[np.arange(len(preds)), preds] = confidence
    return probs


def _write_main_run(model: str) -> None:
    """metrics, predictions and history of one model's main run, as evaluate and train write them."""
    run = run_paths(model)
    labels, probs = np.array(LABELS), _probs(*PREDICTIONS[model])
    epochs_run, best_epoch = EPOCHS[model]
    metrics = classification_metrics(labels, probs)
    for path in (run.metrics, REPEAT_MAIN_RUN_DIR / f"{model}.json"):  # the second: what main_run@<model> does
        write_json(path, {**metrics, "best_epoch": best_epoch, "epochs_run": epochs_run})
    write_csv(run.predictions, ["file", "actual", "predicted", *(f"p_{c}" for c in CLASSES)],
              ([f"img{i}.png", CLASSES[y], CLASSES[int(p.argmax())], *(f"{x:.6f}" for x in p)]
               for i, (y, p) in enumerate(zip(labels, probs))))  # fmt: skip
    write_csv(run.history, ["epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds"],
              ([e, 1.0 / (e + 1), 1.2 / (e + 1), 0.5 + 0.1 * e, 0.45 + 0.1 * e, 0.001, 1.0]
               for e in range(epochs_run)))  # fmt: skip


def _write_params(root: Path, train_models: list[str], repeat_models: list[str]) -> None:
    """The project's params.yaml with these model lists and repeat.seeds [1, 2]."""
    yaml = YAML()
    params = yaml.load(PROJECT_ROOT / "params.yaml")
    params["train"]["models"] = train_models
    params["repeat"]["models"] = repeat_models
    params["repeat"]["seeds"] = [1, 2]
    yaml.dump(params, root / "params.yaml")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A minimal project: params.yaml (both model lists: the two study models) and their main runs."""
    _write_params(tmp_path, list(MODELS), list(MODELS))
    monkeypatch.chdir(tmp_path)
    for model in MODELS:
        _write_main_run(model)
    return tmp_path


def _run(stage, monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [stage.__name__, *args])
    stage.main()


def _row(report_text: str, label: str) -> str:
    return next(line for line in report_text.splitlines() if line.startswith(f"| {label} |"))


def test_the_report_shows_our_numbers_with_intervals_beside_the_studys(project, monkeypatch):
    _run(report, monkeypatch)
    text = (REPORT_DIR / "report.md").read_text()
    ours = {m: json.loads(run_paths(m).metrics.read_text()) for m in MODELS}
    assert _row(text, "") == "|  | simple_cnn, here | simple_cnn, study | mobilenet, here | mobilenet, study |"
    intervals = {m: ours[m]["accuracy_ci95"] for m in MODELS}
    accuracy = [f"{ours[m]['accuracy']:.2f} [{intervals[m]['low']:.2f}, {intervals[m]['high']:.2f}]" for m in MODELS]
    assert accuracy[0].startswith("0.70 [") and accuracy[1].startswith("0.60 [")
    assert _row(text, "accuracy") == f"| accuracy | {accuracy[0]} | 0.68 | {accuracy[1]} | 0.66 |"
    # benign precision 4/6 and 4/7; the study's 0.74 and 0.66
    assert _row(text, "precision benign") == "| precision benign | 0.67 | 0.74 | 0.57 | 0.66 |"
    recall = ours["simple_cnn"]["malignant"]["recall_ci95"]
    assert _row(text, "recall malignant").startswith(
        f"| recall malignant | 0.67 [{recall['low']:.2f}, {recall['high']:.2f}] | 0.58 |")
    epochs = "epochs run (best epoch index)"
    assert _row(text, epochs) == f"| {epochs} | 3 (1) | 8 (5) | 4 (2) | 9 (6) |"
    assert _row(text, "weighted F1").count("|") == 6
    ece = [f"{ours[m]['calibration']['ece']:.3f} (10 bins)" for m in MODELS]
    assert _row(text, "ECE (top-label confidence)") == f"| ECE (top-label confidence) | {ece[0]} | {ece[1]} |"
    link = os.path.relpath(REPEAT_REPORT, REPORT_DIR)
    assert f"[{REPEAT_REPORT}]({link})" in text and "`dvc repro repeats/dvc.yaml`" in text
    assert (REPORT_DIR / link).resolve() == REPEAT_REPORT.resolve()
    for figure in ("confusion.png", "curves.png", "roc.png", "reliability.png"):
        assert f"]({figure})" in text
        assert (REPORT_DIR / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_studys_numbers_are_its_table_one():
    # spot checks against ../shared/STUDY.md, "Reported results"
    assert STUDY_TABLE_I["simple_cnn"]["recall"] == {"benign": 0.82, "malignant": 0.58, "normal": 0.40}
    assert STUDY_TABLE_I["mobilenet"]["weighted_f1"] == 0.62 and STUDY_TABLE_I["mobilenet"]["accuracy"] == 0.66
    assert STUDY_TABLE_I["resnet101"]["f1"]["normal"] == 0.80 and STUDY_TABLE_I["resnet101"]["epochs_run"] == 7


def test_missing_metrics_stop_the_report_naming_the_file_and_what_makes_it(project):
    run_paths("mobilenet").metrics.unlink()
    result = _stage(["stages.report"], project)
    assert result.returncode == 1
    assert result.stderr == (
        "error: metrics/mobilenet.json: not found; `dvc repro evaluate@mobilenet` makes it. To leave mobilenet out, "
        "pass --models with the other models or remove it from train.models in params.yaml\n")
    assert not (project / REPORT_DIR / "report.md").exists()


def test_the_models_option_leaves_a_model_without_results_out(project, monkeypatch):
    run_paths("mobilenet").history.unlink()
    with pytest.raises(DataError, match=r"^plots/history/mobilenet.csv: not found; `dvc repro evaluate@mobilenet`"):
        _run(report, monkeypatch)
    _run(report, monkeypatch, "--models", "simple_cnn")
    text = (REPORT_DIR / "report.md").read_text()
    assert "simple_cnn, study" in text and "mobilenet" not in text


def test_metrics_from_before_the_intervals_ask_for_a_rerun(project):
    path = run_paths("simple_cnn").metrics
    metrics = json.loads(path.read_text())
    del metrics["calibration"]
    write_json(path, metrics)
    with pytest.raises(DataError, match=r"no 'calibration'; it was written by an older evaluate stage. Rerun "
                                        r"`dvc repro evaluate@simple_cnn`"):  # fmt: skip
        load_results("simple_cnn")


def test_an_unknown_model_name_lists_the_model_sections(project, monkeypatch):
    with pytest.raises(ConfigError, match=r"^--models: unknown model 'vgg'. Sections of train: mobilenet, "):
        _run(report, monkeypatch, "--models", "vgg")


def test_figures_have_one_panel_per_model_and_the_curves_a_log_loss_axis(project):
    results = [load_results(m) for m in MODELS]
    for draw in (confusion_figure, roc_figure, reliability_figure):
        assert len(draw(results).axes) == len(MODELS)
    assert len(confusion_figure(results[:1]).axes) == 1
    loss_ax, accuracy_ax = curves_figure(results).axes
    assert loss_ax.get_yscale() == "log" and accuracy_ax.get_yscale() == "linear"
    assert len(loss_ax.get_lines()) == 2 * len(MODELS)  # train and validation per model
    assert len(roc_figure(results).axes[0].get_lines()) == len(CLASSES) + 1  # a curve per class, and the diagonal
    ece = results[1].metrics["calibration"]["ece"]
    assert reliability_figure(results).axes[1].get_title() == f"mobilenet: ECE {ece:.3f}"
    confusion_texts = [t.get_text() for t in confusion_figure(results).axes[0].texts]
    assert confusion_texts == ["4", "1", "0", "1", "2", "0", "1", "0", "1"]  # simple CNN, rows actual


def test_the_same_figure_gives_the_same_png_bytes(project):
    results = [load_results(m) for m in MODELS]
    save_figure(reliability_figure(results), project / "a.png")
    save_figure(reliability_figure(results), project / "b.png")
    assert (project / "a.png").read_bytes() == (project / "b.png").read_bytes()


def _repeat_metrics(accuracy: float, ece: float) -> dict:
    """The numbers summarize_repeats reads, plus the keys every metrics JSON of evaluate now has."""
    return {"accuracy": accuracy, "accuracy_ci95": {"low": accuracy - 0.1, "high": accuracy + 0.1},
            "macro": {"f1": accuracy - 0.1}, "weighted": {"f1": accuracy - 0.05},
            "calibration": {"ece": ece, "bins": 10}, **{c: {"recall": accuracy} for c in CLASSES}}  # fmt: skip


def _write_repeat_runs(accuracies: dict[str, list[float]]) -> None:
    """Seed 0 (train.seed, the main run) and seeds 1 and 2 of each model."""
    for model, values in accuracies.items():
        write_json(REPEAT_MAIN_RUN_DIR / f"{model}.json", _repeat_metrics(values[0], ece=values[0] / 10))
        for seed, accuracy in zip((1, 2), values[1:]):
            write_json(run_paths(model, seed).metrics, _repeat_metrics(accuracy, ece=accuracy / 10))


def test_summarize_repeats_writes_spread_and_paired_differences(project, monkeypatch):
    _write_repeat_runs({"simple_cnn": [0.6, 0.7, 0.8], "mobilenet": [0.5, 0.7, 0.6]})
    _write_params(project, [*MODELS, "resnet101"], list(MODELS))  # repeat.models decides; resnet101 has no runs
    _run(summarize_repeats, monkeypatch)
    summary = json.loads(REPEAT_SUMMARY.read_text())
    assert summary["models"]["simple_cnn"]["accuracy"] == pytest.approx(
        {"mean": 0.7, "std": 0.1, "min": 0.6, "max": 0.8, "n": 3})
    assert summary["models"]["mobilenet"]["ece"]["mean"] == pytest.approx(0.06)
    assert set(summary["models"]["mobilenet"]) == {"accuracy", "macro_f1", "weighted_f1", "recall_benign",
                                                   "recall_malignant", "recall_normal", "ece"}  # fmt: skip
    # differences 0.1, 0.0, 0.2: mean 0.1, sd 0.1, half width t(0.975, 2) * 0.1 / sqrt(3) = 0.2484
    paired = summary["paired"]["simple_cnn_vs_mobilenet"]["accuracy"]
    assert paired["mean"] == pytest.approx(0.1) and paired["n"] == 3
    assert paired["ci95"] == pytest.approx({"low": 0.1 - 0.248414, "high": 0.1 + 0.248414}, abs=1e-6)
    assert paired["per_seed"] == pytest.approx({"seed0": 0.1, "seed1": 0.0, "seed2": 0.2})
    text = REPEAT_REPORT.read_text()
    assert "| accuracy | 0.700 ± 0.100 (0.600-0.800) | 0.600 ± 0.100 (0.500-0.700) |" in text
    assert "### simple_cnn - mobilenet" in text
    assert "| accuracy | 0.100 [-0.148, 0.348] | +0.100 | +0.000 | +0.200 |" in text
    assert "training seed: 0, 1, 2 (seed 0 is the" in text


def test_summarize_repeats_names_a_missing_seed_and_the_command_that_makes_it(project, monkeypatch):
    _write_repeat_runs({"simple_cnn": [0.6, 0.7, 0.8], "mobilenet": [0.5, 0.7]})
    with pytest.raises(DataError) as error:
        _run(summarize_repeats, monkeypatch)
    assert str(error.value) == (
        f"{run_paths('mobilenet', 2).metrics}: not found; `dvc repro repeats/dvc.yaml` makes it. To leave "
        "mobilenet out, pass --models with the other models or remove it from repeat.models in params.yaml")
    _run(summarize_repeats, monkeypatch, "--models", "simple_cnn")
    summary = json.loads(REPEAT_SUMMARY.read_text())
    assert list(summary["models"]) == ["simple_cnn"] and summary["paired"] == {}
