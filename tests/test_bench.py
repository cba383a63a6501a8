"""The benchmark runs end to end on a tiny configuration (its numbers are reported, not tested)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bcmodels.bench import bench_model, training_images
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
