"""The benchmark runs end to end on a tiny configuration (its numbers are reported, not tested)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bcmodels.bench import bench_model, training_images
from bcmodels.config import load_params
from tests.conftest import PROJECT_ROOT


def test_bench_measures_the_ceiling_and_a_real_epoch(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no data/processed here: the random stand-in is used
    params = load_params(PROJECT_ROOT / "params.yaml")
    train, source = training_images(synthetic=False, image_size=32)
    assert source == "random images" and train.images.shape == (563, 3, 32, 32)
    small = dataclasses.replace(train, files=train.files[:20], images=train.images[:20], labels=train.labels[:20])
    row = bench_model("simple_cnn", params, small, torch.device("cpu"), steps=2, warmup=1)
    assert row["ceiling"] > 0 and row["epoch"] > 0
    assert row["ratio"] == pytest.approx(row["epoch"] / row["ceiling"])
    assert row["epoch"] == pytest.approx(20 / row["epoch_s"])
