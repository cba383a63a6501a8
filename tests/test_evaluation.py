from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bcmodels.cli import run_stage
from bcmodels.config import CLASSES, EvaluateConfig
from bcmodels.evaluation import classification_metrics
from bcmodels.fileio import write_csv
from bcmodels.models import build_model
from bcmodels.paths import PROCESSED_DIR, run_paths
from bcmodels.preprocess import IMAGES_FILE, INDEX_FILE
from bcmodels.stats import bootstrap_intervals
from stages import evaluate
from tests.conftest import PROJECT_ROOT
from tests.test_stages import _stage


def _probs(preds: list[int], n_classes: int = 3) -> np.ndarray:
    out = np.full((len(preds), n_classes), 0.1)
    out[np.arange(len(preds)), preds] = 0.8
    return out


def test_known_confusion_matrix_gives_the_known_metrics():
    # benign: 3 right, 1 called malignant; malignant: 2 right; normal: 1 right, 1 called benign.
    labels = [0, 0, 0, 0, 1, 1, 2, 2]
    preds = [0, 0, 0, 1, 1, 1, 2, 0]
    m = classification_metrics(np.array(labels), _probs(preds))
    assert m["n_test"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["confusion"]["benign"] == {"benign": 3, "malignant": 1, "normal": 0}
    assert m["confusion"]["normal"] == {"benign": 1, "malignant": 0, "normal": 1}
    assert m["benign"]["precision"] == pytest.approx(3 / 4) and m["benign"]["recall"] == pytest.approx(3 / 4)
    assert m["malignant"]["precision"] == pytest.approx(2 / 3) and m["malignant"]["recall"] == 1.0
    assert m["normal"]["precision"] == 1.0 and m["normal"]["recall"] == pytest.approx(1 / 2)
    assert m["malignant"]["f1"] == pytest.approx(0.8)
    f1 = [0.75, 0.8, 2 / 3]
    assert m["macro"]["f1"] == pytest.approx(np.mean(f1))
    assert m["weighted"]["f1"] == pytest.approx(np.average(f1, weights=[4, 2, 2]))
    assert m["benign"]["support"] == 4


def test_perfect_classifier_scores_one_everywhere():
    labels = np.array([0, 1, 2, 0, 1, 2])
    m = classification_metrics(labels, _probs(labels.tolist()))
    assert m["accuracy"] == m["macro"]["f1"] == m["weighted"]["f1"] == 1.0
    assert m["roc_auc"] == {"benign": 1.0, "malignant": 1.0, "normal": 1.0, "macro": 1.0}


def test_roc_auc_uses_probabilities_not_just_the_argmax():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[0.6, 0.3, 0.1], [0.4, 0.5, 0.1], [0.45, 0.45, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.5, 0.2, 0.3]])
    m = classification_metrics(labels, probs)
    # benign scores 0.6 and 0.4 against 0.45, 0.2, 0.3, 0.5: 0.6 beats all 4, 0.4 beats 2: 6 of 8 pairs
    assert m["roc_auc"]["benign"] == pytest.approx(6 / 8)


def test_a_class_absent_from_the_test_set_has_no_auc():
    labels = np.array([0, 0, 1, 1])
    m = classification_metrics(labels, _probs([0, 1, 1, 1]))
    assert "normal" not in m["roc_auc"] and m["normal"]["support"] == 0


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_intervals_and_calibration_sit_beside_their_values_as_scalars():
    labels, preds = [0, 0, 0, 0, 1, 1, 2, 2] * 5, [0, 0, 0, 1, 1, 1, 2, 0] * 5
    m = classification_metrics(np.array(labels), _probs(preds))
    for ci in (m["accuracy_ci95"], m["macro"]["f1_ci95"], m["weighted"]["f1_ci95"],
               *(m[c]["recall_ci95"] for c in ("benign", "malignant", "normal"))):  # fmt: skip
        assert set(ci) == {"low", "high"} and 0.0 <= ci["low"] <= ci["high"] <= 1.0
    assert m["accuracy_ci95"]["low"] < m["accuracy"] < m["accuracy_ci95"]["high"]
    assert m["malignant"]["recall_ci95"] == {"low": 1.0, "high": 1.0}  # every malignant image is right
    # every image at confidence 0.8, 30 of 40 right: ECE |0.75 - 0.8|
    assert m["calibration"] == {"ece": pytest.approx(0.05), "bins": 10}
    # dvc metrics diff compares numbers only: every leaf must be one
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for _, v in _leaves(m))


def test_bootstrap_and_calibration_follow_the_evaluate_settings():
    labels, preds = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2] * 3), np.array([0, 1, 2, 1, 1, 0, 0, 0, 2, 2] * 3)
    config = EvaluateConfig(bootstrap_resamples=1500, bootstrap_seed=4, calibration_bins=5)
    m = classification_metrics(labels, _probs(preds.tolist()), config=config)
    ci = bootstrap_intervals(labels, preds, 3, resamples=1500, seed=4)
    assert m["accuracy_ci95"] == ci["accuracy"] and m["macro"]["f1_ci95"] == ci["macro_f1"]
    assert m["weighted"]["f1_ci95"] == ci["weighted_f1"] and m["normal"]["recall_ci95"] == ci["recall_2"]
    assert m["calibration"]["bins"] == 5


def test_a_class_absent_from_the_test_set_has_no_recall_interval():
    m = classification_metrics(np.array([0, 0, 1, 1]), _probs([0, 1, 1, 1]))
    assert "recall_ci95" not in m["normal"] and "recall_ci95" in m["benign"]


def _tiny_repeat_run(root: Path, model: str, seed: int) -> None:
    """A processed store of 12 random 16x16 images, the seed run's split (6 test images) and an untrained checkpoint."""
    shutil.copy(PROJECT_ROOT / "params.yaml", root)
    rng = np.random.default_rng(0)
    files = [f"{c}/{c} ({i}).png" for c in CLASSES for i in range(4)]
    processed = root / PROCESSED_DIR
    processed.mkdir(parents=True)
    np.save(processed / IMAGES_FILE, rng.integers(0, 256, size=(12, 16, 16, 3), dtype=np.uint8))
    write_csv(processed / INDEX_FILE, ["file", "class", "sha256"], ([f, f.split("/")[0], "0" * 64] for f in files))
    run = run_paths(model, seed)
    splits = ["train", "val", "test", "test"] * 3
    write_csv(root / run.split, ["file", "class", "split"], ([f, f.split("/")[0], s] for f, s in zip(files, splits)))
    torch.manual_seed(0)
    net = build_model("simple_cnn", num_classes=3, image_size=16)
    torch.save({"state_dict": net.state_dict(), "model_config": {"arch": "simple_cnn"}, "classes": list(CLASSES),
                "image_size": 16, "best_epoch": 1, "epochs_run": 3}, root / run.checkpoint)  # fmt: skip


def test_evaluate_with_a_seed_reads_and_writes_that_runs_files(tmp_path):
    _tiny_repeat_run(tmp_path, "simple_cnn", seed=3)
    result = _stage(["stages.evaluate", "--model", "simple_cnn", "--seed", "3"], tmp_path)
    assert result.returncode == 0, result.stderr
    run = run_paths("simple_cnn", 3)
    metrics = json.loads((tmp_path / run.metrics).read_text())
    assert metrics["n_test"] == 6 and metrics["epochs_run"] == 3
    assert {"accuracy_ci95", "calibration"} <= set(metrics) and "f1_ci95" in metrics["weighted"]
    with open(tmp_path / run.predictions, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "actual", "predicted", "p_benign", "p_malignant", "p_normal"] and len(rows) == 7
    assert not (tmp_path / run_paths("simple_cnn").metrics).exists()  # the main run is untouched


def test_evaluate_without_the_seed_runs_checkpoint_says_what_makes_it(tmp_path, monkeypatch, capsys):
    _tiny_repeat_run(tmp_path, "simple_cnn", seed=3)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["evaluate", "--model", "simple_cnn", "--seed", "4"])
    with pytest.raises(SystemExit) as exit_info:
        run_stage(evaluate.main)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        "error: data/repeats/seed4/simple_cnn.pt: not found; `dvc repro repeats/dvc.yaml` makes it\n")
