"""The benchmark runs end to end on a tiny configuration (its numbers are reported, not tested)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bcmodels.bench import (
    AGREEMENT_HEADER,
    SPEED_HEADER,
    agreement_line,
    augmented_step_rate,
    bench_model,
    fit_model,
    speed_line,
    training_images,
)
from bcmodels.data.subsets import Subset
from bcmodels.training.graph_checks import (
    compiled_augmentation_agreement,
    configured_mode,
    graph_agreement,
    ready_model,
)
from tests.conftest import project_params


@pytest.mark.slow
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


@pytest.mark.slow
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
    row = fit_model("simple_cnn", params, *subsets, torch.device("cpu"), "eager")
    assert row["epochs"] == 2 and row["seconds"] > 0 and row["val_loss"] > 0


@pytest.mark.slow
def test_graph_agreement_compares_the_graphed_and_the_eager_loop_from_the_same_start():
    params = project_params()
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, batch_size=4))
    g = torch.Generator().manual_seed(1)
    train = Subset(
        [f"{i}.png" for i in range(10)],
        torch.randint(0, 256, (10, 3, 32, 32), generator=g, dtype=torch.uint8),
        torch.arange(10) % 3,
    )
    rows = graph_agreement("mobilenet", params, train, torch.device("cpu"), ["eager", "graph"])
    assert list(rows) == ["graph"]  # one row per graph mode
    row = rows["graph"]
    # on the CPU nothing is captured, and only contrast's last-bit rounding separates graph and eager loop
    assert row["capture_diff"] == 0
    assert row["relative_diff"] < 1e-5
    assert row["graph_loss"] == pytest.approx(row["eager_loss"], rel=1e-5)
    no_contrast = dataclasses.replace(
        params, train=dataclasses.replace(params.train, augment=dataclasses.replace(params.train.augment, contrast=0))
    )
    exact = graph_agreement("mobilenet", no_contrast, train, torch.device("cpu"), ["graph"])["graph"]
    assert exact["relative_diff"] == 0 and exact["graph_loss"] == exact["eager_loss"]


def test_the_augmented_step_trains_the_model_on_the_first_batch():
    params = project_params()
    train, _ = training_images(Path("missing"), Path("missing.csv"), synthetic=True, image_size=32)
    model, setup = ready_model("simple_cnn", params, train, torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    rate = augmented_step_rate(model, params.train.model_configs["simple_cnn"], train, setup, steps=2, warmup=1)
    assert rate > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_the_tables_show_each_mode_in_its_columns():
    # the graph rows' shape as a CUDA run makes them (a row of bench_model with graph, graph_agreement's row)
    eager = {"ceiling": 20.0, "augmented": None, "epoch": 19.0, "ratio": 0.95, "epoch_s": 29.6}
    graph = {"ceiling": 4580.7, "augmented": 3000.5, "epoch": 2393.3, "ratio": 0.52, "epoch_s": 0.25}
    for mode, row, expected in [
        ("eager", eager, ["simple_cnn", "eager", "20.0", "-", "19.0", "0.95", "29.60"]),
        ("graph+compile", graph, ["simple_cnn", "graph+compile", "4580.7", "3000.5", "2393.3", "0.52", "0.25"]),
    ]:
        line = speed_line("simple_cnn", mode, row)
        assert line.split() == expected
        assert len(line) == len(SPEED_HEADER)  # right-aligned under the header's columns
    agreement = {"capture_diff": 0.0, "relative_diff": 1.5e-3, "eager_loss": 1.14338, "graph_loss": 1.14328}
    line = agreement_line("resnet101", "graph", agreement)
    assert line.split() == ["resnet101", "graph", "0", "0.0015", "1.14338", "1.14328"]
    assert len(line) == len(AGREEMENT_HEADER.splitlines()[-1])


@pytest.mark.slow
def test_graph_modes_are_refused_without_cuda():
    run = subprocess.run(
        [sys.executable, "-m", "bcmodels.bench", "--device", "cpu", "--modes", "eager", "--fit", "graph+compile"],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert "--modes, --fit: graph+compile need a CUDA device" in run.stderr


@pytest.mark.slow
def test_the_compiled_augmentation_is_compared_value_by_value_with_the_op_by_op_one():
    params = project_params()
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, batch_size=4))
    train, _ = training_images(Path("missing"), Path("missing.csv"), synthetic=True, image_size=32)
    train = dataclasses.replace(train, files=train.files[:8], images=train.images[:8], labels=train.labels[:8])
    row = compiled_augmentation_agreement(params, train, torch.device("cpu"), batches=3)
    assert row["values"] == 3 * 4 * 3 * 32 * 32
    assert row["moved"] / row["values"] < 1e-3
    assert 0 <= row["others_max"] <= 1e-5


def test_the_configured_mode_is_the_one_whose_settings_train_has():
    train = project_params().train
    for cuda_graph, compile_augmentation, mode in [
        (False, False, "eager"),
        (False, True, "eager"),  # compiling applies to the graph's augmentation only
        (True, False, "graph"),
        (True, True, "graph+compile"),
    ]:
        config = dataclasses.replace(train, cuda_graph=cuda_graph, compile_augmentation=compile_augmentation)
        assert configured_mode(config) == mode
