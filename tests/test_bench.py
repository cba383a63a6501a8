"""The benchmark runs end to end on a tiny configuration (its numbers are reported, not tested)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bcmodels.bench import bench_model, fit_model, graph_agreement, training_images
from bcmodels.data import Subset
from tests.conftest import project_params


def test_bench_measures_the_ceiling_and_a_real_epoch(tmp_path):
    params = project_params()
    # no store at these paths: the random stand-in is used
    train, source = training_images(tmp_path / "processed", tmp_path / "split.csv", synthetic=False, image_size=32)
    assert source == "random images" and train.images.shape == (563, 3, 32, 32)
    small = dataclasses.replace(train, files=train.files[:20], images=train.images[:20], labels=train.labels[:20])
    row = bench_model("simple_cnn", params, small, torch.device("cpu"), steps=2, warmup=1, warmup_epochs=1)
    assert row["ceiling"] > 0 and row["epoch"] > 0
    assert row["ratio"] == pytest.approx(row["epoch"] / row["ceiling"])
    assert row["epoch"] == pytest.approx(20 / row["epoch_s"])


def test_bench_times_a_whole_training_with_the_recipe():
    params = project_params()
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, max_epochs=2, batch_size=4))
    g = torch.Generator().manual_seed(0)
    subsets = [
        Subset(
            [f"{i}.png" for i in range(n)],
            torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
            torch.arange(n) % 3,
        )
        for n in (12, 6)
    ]
    row = fit_model("simple_cnn", params, *subsets, torch.device("cpu"), graph=False)
    assert row["epochs"] == 2 and row["seconds"] > 0 and row["val_loss"] > 0


def test_graph_agreement_compares_the_graphed_and_the_eager_loop_from_the_same_start():
    params = project_params()
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, batch_size=4))
    g = torch.Generator().manual_seed(1)
    train = Subset(
        [f"{i}.png" for i in range(10)],
        torch.randint(0, 256, (10, 3, 32, 32), generator=g, dtype=torch.uint8),
        torch.arange(10) % 3,
    )
    row = graph_agreement("mobilenet", params, train, torch.device("cpu"))
    # on the CPU nothing is captured: only contrast's last-bit rounding separates the two
    assert row["max_weight_diff"] < 1e-4
    assert row["graph_loss"] == pytest.approx(row["eager_loss"], rel=1e-5)
    no_contrast = dataclasses.replace(
        params, train=dataclasses.replace(params.train, augment=dataclasses.replace(params.train.augment, contrast=0))
    )
    exact = graph_agreement("mobilenet", no_contrast, train, torch.device("cpu"))
    assert exact["max_weight_diff"] == 0 and exact["graph_loss"] == exact["eager_loss"]
