"""The benchmark's validation predictions: each fold's checkpoint on that fold's validation images only, pooled so
that every image is validated once, for choosing between recipes without the test folds."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from bcmodels.config.schema import CLASSES
from bcmodels.errors import DataError
from bcmodels.evaluation.crossval_report import summarize_validation
from bcmodels.evaluation.validation import validation_predictions
from bcmodels.formats.checkpoint import Checkpoint, save_checkpoint
from bcmodels.formats.predictions import read_predictions
from bcmodels.formats.split import write_split
from bcmodels.formats.store import IndexRow, write_store
from bcmodels.models.inference import IMAGENET_MEAN, IMAGENET_STD, predict_logits
from tests.conftest import project_params
from tests.test_shortcuts import SIZE, _fold_model

FOLDS = (0, 1, 2)


@pytest.fixture
def runs(tmp_path):
    """12 images, three folds (test = fold k, validation = fold k+1, train the rest), a model per fold that calls
    every image class k."""
    rng = np.random.default_rng(1)
    labels = [CLASSES[(i // 2) % 3] for i in range(12)]
    files = [f"{c}/{c} ({i}).png" for i, c in enumerate(labels)]
    images = rng.integers(0, 255, (12, SIZE, SIZE, 3)).astype(np.uint8)
    write_store(tmp_path / "store", [IndexRow(f, c, "0" * 64) for f, c in zip(files, labels)], images)
    for fold in FOLDS:
        sides = {f: {fold: "test", (fold + 1) % 3: "val"}.get(i % 3, "train") for i, f in enumerate(files)}
        write_split(tmp_path / f"fold{fold}" / "split.csv", files, labels, sides)
        checkpoint = Checkpoint(
            "simple_cnn", "simple_cnn", CLASSES, "study", SIZE, 36, IMAGENET_MEAN, IMAGENET_STD, {}, {}, 0, 1,
            _fold_model("simple_cnn", fold).state_dict(),
        )  # fmt: skip
        save_checkpoint(tmp_path / f"fold{fold}" / "simple_cnn.pt", checkpoint)
    params = project_params()
    params = dataclasses.replace(
        params,
        preprocess=dataclasses.replace(params.preprocess, image_size=SIZE, resize_short_side=36, geometry="study"),
        crossval=dataclasses.replace(params.crossval, models=("simple_cnn",), folds=FOLDS, seeds=(0,)),
        evaluate=dataclasses.replace(params.evaluate, bootstrap_resamples=200, batch_size=5),
        train=dataclasses.replace(params.train, device="cpu"),
    )
    return {"root": tmp_path, "params": params, "files": files, "labels": labels, "images": images}


def test_each_fold_judges_only_its_validation_images_and_the_pool_holds_every_image_once(runs):
    root, params = runs["root"], runs["params"]
    for fold in FOLDS:
        out = root / "validation" / f"fold{fold}-seed0" / "simple_cnn.csv"
        run = root / f"fold{fold}"
        validation_predictions(root / "store", run / "split.csv", run / "simple_cnn.pt", out, params)
        p = read_predictions(out, "test")
        expected = [f for i, f in enumerate(runs["files"]) if i % 3 == (fold + 1) % 3]
        assert p.files == expected and set(p.probs.argmax(axis=1)) == {fold}
        x = torch.from_numpy(runs["images"][[runs["files"].index(f) for f in expected]]).permute(0, 3, 1, 2)
        by_hand = torch.softmax(predict_logits(_fold_model("simple_cnn", fold), x, batch_size=5), 1).numpy()
        np.testing.assert_allclose(p.probs, by_hand, atol=1e-6)
    cv, ev = params.crossval, params.evaluate
    stats = {"resamples": ev.bootstrap_resamples, "seed": ev.bootstrap_seed, "bins": ev.calibration_bins}
    summary = summarize_validation(cv.models, cv.folds, cv.seeds, root / "validation", root / "v.json", **stats)
    assert json.loads((root / "v.json").read_text())["split"] == "validation"
    # image i is validated by fold (i - 1) mod 3, whose model calls everything that class
    right = [CLASSES[(i % 3 - 1) % 3] == c for i, c in enumerate(runs["labels"])]
    assert summary["images"] == 12 and summary["models"]["simple_cnn"]["accuracy"]["value"] == pytest.approx(
        np.mean(right)
    )


def test_a_fold_without_validation_images_is_refused_by_name(runs):
    root, params = runs["root"], runs["params"]
    files, labels = runs["files"], runs["labels"]
    write_split(root / "odd.csv", files, labels, {f: "test" if i < 4 else "train" for i, f in enumerate(files)})
    with pytest.raises(DataError, match=r"odd\.csv: no validation image"):
        validation_predictions(
            root / "store", root / "odd.csv", root / "fold0" / "simple_cnn.pt", root / "o.csv", params
        )
    assert not (root / "o.csv").exists()
