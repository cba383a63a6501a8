from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bcmodels.config.schema import CLASSES
from bcmodels.errors import DataError, WeightsError
from bcmodels.evaluation.evaluate import EvaluationFiles, classification_metrics, evaluate_model
from bcmodels.evaluation.stats import bootstrap_intervals
from bcmodels.formats.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from bcmodels.formats.split import write_split
from bcmodels.formats.store import IndexRow, write_store
from bcmodels.training.train import train_model
from tests.conftest import project_params

EVALUATE = project_params().evaluate


def metrics_of(labels, probs, config=EVALUATE) -> dict:
    return classification_metrics(np.asarray(labels), probs, CLASSES, config)


def _probs(preds: list[int], n_classes: int = 3) -> np.ndarray:
    out = np.full((len(preds), n_classes), 0.1)
    out[np.arange(len(preds)), preds] = 0.8
    return out


def test_known_confusion_matrix_gives_the_known_metrics():
    # benign: 3 right, 1 called malignant; malignant: 2 right; normal: 1 right, 1 called benign.
    labels = [0, 0, 0, 0, 1, 1, 2, 2]
    preds = [0, 0, 0, 1, 1, 1, 2, 0]
    m = metrics_of(labels, _probs(preds))
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
    m = metrics_of(labels, _probs(labels.tolist()))
    assert m["accuracy"] == m["macro"]["f1"] == m["weighted"]["f1"] == 1.0
    assert m["roc_auc"] == {"benign": 1.0, "malignant": 1.0, "normal": 1.0, "macro": 1.0}


def test_roc_auc_uses_probabilities_not_just_the_argmax():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array(
        [[0.6, 0.3, 0.1], [0.4, 0.5, 0.1], [0.45, 0.45, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.5, 0.2, 0.3]]
    )
    m = metrics_of(labels, probs)
    # benign scores 0.6 and 0.4 against 0.45, 0.2, 0.3, 0.5: 0.6 beats all 4, 0.4 beats 2: 6 of 8 pairs
    assert m["roc_auc"]["benign"] == pytest.approx(6 / 8)


def test_a_class_absent_from_the_test_set_has_no_auc():
    labels = np.array([0, 0, 1, 1])
    m = metrics_of(labels, _probs([0, 1, 1, 1]))
    assert "normal" not in m["roc_auc"] and m["normal"]["support"] == 0


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_intervals_and_calibration_sit_beside_their_values_as_scalars():
    labels, preds = [0, 0, 0, 0, 1, 1, 2, 2] * 5, [0, 0, 0, 1, 1, 1, 2, 0] * 5
    m = metrics_of(labels, _probs(preds))
    for ci in (
        m["accuracy_ci95"],
        m["macro"]["f1_ci95"],
        m["weighted"]["f1_ci95"],
        *(m[c]["recall_ci95"] for c in ("benign", "malignant", "normal")),
    ):
        assert set(ci) == {"low", "high"} and 0.0 <= ci["low"] <= ci["high"] <= 1.0
    assert m["accuracy_ci95"]["low"] < m["accuracy"] < m["accuracy_ci95"]["high"]
    assert m["malignant"]["recall_ci95"]["high"] == 1.0  # every one of the 10 malignant images is right...
    assert m["malignant"]["recall_ci95"]["low"] == pytest.approx(0.6915, abs=1e-4)  # ...which bounds it below
    # every image at confidence 0.8, 30 of 40 right: ECE |0.75 - 0.8|
    assert m["calibration"] == {"ece": pytest.approx(0.05), "bins": 10}
    # dvc metrics diff compares numbers only: every leaf must be one
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for _, v in _leaves(m))


def test_bootstrap_and_calibration_follow_the_evaluate_settings():
    labels, preds = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2] * 3), np.array([0, 1, 2, 1, 1, 0, 0, 0, 2, 2] * 3)
    config = dataclasses.replace(EVALUATE, bootstrap_resamples=1500, bootstrap_seed=4, calibration_bins=5)
    m = metrics_of(labels, _probs(preds.tolist()), config)
    ci = bootstrap_intervals(labels, preds, 3, resamples=1500, seed=4)
    assert m["accuracy_ci95"] == ci["accuracy"] and m["macro"]["f1_ci95"] == ci["macro_f1"]
    assert m["weighted"]["f1_ci95"] == ci["weighted_f1"]
    assert m["calibration"]["bins"] == 5


def test_a_class_absent_from_the_test_set_has_no_recall_interval():
    m = metrics_of([0, 0, 1, 1], _probs([0, 1, 1, 1]))
    assert "recall_ci95" not in m["normal"] and "recall_ci95" in m["benign"]


def test_a_class_never_predicted_gets_an_honest_recall_interval_not_a_point():
    # 20 normal images, none called normal: recall 0, but 0 of 20 only bounds it below 0.168 (exact binomial)
    labels, preds = [2] * 20 + [0] * 20, [0] * 40
    m = metrics_of(labels, _probs(preds))
    assert m["normal"]["recall"] == 0.0 and m["normal"]["predicted"] == 0
    assert m["normal"]["recall_ci95"] == {"low": 0.0, "high": pytest.approx(0.1684, abs=1e-4)}
    assert m["benign"]["recall_ci95"] == {"low": pytest.approx(0.8316, abs=1e-4), "high": 1.0}


def _tiny_project(root: Path, size: int = 16) -> tuple[Path, Path]:
    """A store of 24 random images and a split with 6 test images, as preprocess and split write them."""
    rng = np.random.default_rng(0)
    files = [f"{c}/{c} ({i}).png" for c in CLASSES for i in range(8)]
    labels = [f.split("/")[0] for f in files]
    store = root / "processed"
    write_store(
        store,
        [IndexRow(f, c, "0" * 64) for f, c in zip(files, labels)],
        rng.integers(0, 256, size=(24, size, size, 3), dtype=np.uint8),
    )
    split = root / "split.csv"
    sides = ["train", "train", "val", "test", "train", "train", "val", "train"] * 3
    write_split(split, files, labels, dict(zip(files, sides)))
    return store, split


def _params(size: int = 16):
    params = project_params()
    pre = dataclasses.replace(params.preprocess, image_size=size, resize_short_side=size + 4)
    train = dataclasses.replace(params.train, max_epochs=1, batch_size=4, device="cpu")
    return dataclasses.replace(params, preprocess=pre, train=train)


def test_train_then_evaluate_write_every_file_and_the_checkpoint_records_the_preprocessing(tmp_path):
    store, split = _tiny_project(tmp_path)
    params = _params()
    checkpoint, history = tmp_path / "simple_cnn.pt", tmp_path / "history.csv"
    train_model(params, "simple_cnn", store=store, split=split, checkpoint=checkpoint, history=history, seed=3)
    saved = load_checkpoint(checkpoint, "train")
    assert (saved.geometry, saved.image_size, saved.resize_short_side) == ("study", 16, 20)
    assert saved.mean == (0.485, 0.456, 0.406) and saved.train_config["seed"] == 3
    assert saved.model_config["imbalance"] == "none" and saved.epochs_run == 1
    files = EvaluationFiles(
        store,
        split,
        checkpoint,
        tmp_path / "p.csv",
        tmp_path / "d.json",
        tmp_path / "h.json",
        "dvc repro train@simple_cnn",
    )
    metrics = evaluate_model(files, params.preprocess, params.train, params.evaluate)
    detail, headline = json.loads(files.detail.read_text()), json.loads(files.headline.read_text())
    assert detail == json.loads(json.dumps(metrics)) and detail["n_test"] == 3 and detail["epochs_run"] == 1
    assert headline == {
        "accuracy": detail["accuracy"],
        "macro_f1": detail["macro"]["f1"],
        "weighted_f1": detail["weighted"]["f1"],
        "macro_auc": detail["roc_auc"]["macro"],
        "ece": detail["calibration"]["ece"],
        "images": 3,
        "runs": 1,
    }
    with open(files.predictions, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [
        "benign/benign (3).png",
        "malignant/malignant (3).png",
        "normal/normal (3).png",
    ]
    assert all(abs(sum(float(r[f"p_{c}"]) for c in CLASSES) - 1) < 1e-5 for r in rows)


def test_evaluate_refuses_a_checkpoint_trained_on_other_preprocessing(tmp_path):
    store, split = _tiny_project(tmp_path)
    params = _params()
    checkpoint = tmp_path / "m.pt"
    train_model(params, "simple_cnn", store=store, split=split, checkpoint=checkpoint, history=tmp_path / "h.csv")
    letterbox = dataclasses.replace(params.preprocess, geometry="letterbox")
    files = EvaluationFiles(store, split, checkpoint, tmp_path / "p.csv", tmp_path / "d.json", None, "dvc repro x")
    with pytest.raises(DataError, match=r"trained on images made with \('study', 16, 20\).*retrain with `dvc repro x`"):
        evaluate_model(files, letterbox, params.train, params.evaluate)
    assert not files.predictions.exists() and not files.detail.exists()


def test_a_checkpoint_of_another_format_version_is_refused_with_what_to_run(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"state_dict": {}, "model_config": {"arch": "simple_cnn"}, "classes": list(CLASSES)}, path)
    with pytest.raises(
        WeightsError, match=r"old\.pt: not a checkpoint of this project\. Make it again with `dvc repro t`"
    ):
        load_checkpoint(path, "dvc repro t")
    with pytest.raises(DataError, match=r"missing\.pt: not found; `dvc repro t` makes it"):
        load_checkpoint(tmp_path / "missing.pt", "dvc repro t")


def _checkpoint_with(tmp_path: Path, **changes) -> Path:
    """A checkpoint of this project whose recorded values were then changed (damage, or another program)."""
    made = tmp_path / "made.pt"
    recipe = {"geometry": "study", "image_size": 16, "resize_short_side": 20, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    save_checkpoint(
        made,
        Checkpoint(
            "m",
            "simple_cnn",
            CLASSES,
            **recipe,
            model_config={},
            train_config={},
            best_epoch=0,
            epochs_run=1,
            state_dict={"w": torch.zeros(3)},
        ),
    )
    content = torch.load(made, weights_only=True)
    content.update(changes)
    path = tmp_path / "m.pt"
    torch.save(content, path)
    return path


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"image_size": 100_000, "resize_short_side": 100_000}, "image_size 100000 is outside [8, 1024]"),
        ({"image_size": 0}, "image_size 0 is outside [8, 1024]"),
        ({"resize_short_side": 10**12}, "resize_short_side 1000000000000 is outside [8, 2048]"),
        ({"image_size": 64, "resize_short_side": 32}, "resize_short_side 32 is smaller than image_size 64"),
        ({"image_size": True}, "image_size is not an integer"),
        ({"geometry": "crop"}, "unknown geometry 'crop'"),
        ({"geometry": ["study"]}, "unknown geometry ['study']"),
    ],
)
def test_a_checkpoint_recording_an_impossible_input_is_refused_naming_the_file(tmp_path, changes, problem):
    """Not a traceback or an out-of-memory error blaming params.yaml later on: the file and what to run."""
    path = _checkpoint_with(tmp_path, **changes)
    with pytest.raises(WeightsError, match=re.escape(f"{path}: {problem}. Make it again with `dvc repro t`")):
        load_checkpoint(path, "dvc repro t")


def test_a_checkpoint_at_the_edges_of_the_allowed_sizes_loads(tmp_path):
    loaded = load_checkpoint(_checkpoint_with(tmp_path, image_size=1024, resize_short_side=2048), "dvc repro t")
    assert (loaded.image_size, loaded.resize_short_side) == (1024, 2048)
    loaded = load_checkpoint(_checkpoint_with(tmp_path, image_size=8, resize_short_side=8), "dvc repro t")
    assert (loaded.image_size, loaded.resize_short_side) == (8, 8)
