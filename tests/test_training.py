from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from bcmodels.config.schema import ModelConfig, TrainConfig
from bcmodels.data.subsets import Subset
from bcmodels.errors import ConfigError
from bcmodels.evaluation.evaluate import classification_metrics
from bcmodels.models.inference import predict_logits
from bcmodels.models.registry import build_model
from bcmodels.runtime import memory_format, resolve_device, seed_everything
from bcmodels.training.eager import train_one_epoch
from bcmodels.training.fit import EarlyStopping, evaluate_loss, fit
from bcmodels.training.step import (
    EpochSetup,
    LossReadout,
    batch_indices,
    epoch_order,
    inverse_frequency_weights,
    minority_classes,
)
from tests.conftest import project_params


def _run_epochs(stopper: EarlyStopping, losses: list[float]) -> int:
    model = torch.nn.Linear(1, 1)
    for epoch, loss in enumerate(losses):
        if stopper.update(epoch, loss, model):
            return epoch + 1
    return len(losses)


@pytest.mark.parametrize(
    "losses, epochs_run, best",
    [
        ([9, 8, 7, 6, 5, 4, 4.5, 4.6, 1, 1], 8, 5),  # the study's simple CNN: 8 epochs, best index 5
        ([9, 8, 7, 6, 5, 6, 7, 1], 7, 4),  # ResNet101: 7 epochs, best index 4
        ([5, 6, 7, 8, 9, 9, 9, 1], 6, 0),  # no stop before epoch index 5 even if nothing improves
        ([9, 8, 7, 6, 5, 4, 3, 2], 8, 7),  # always improving: runs to the end
    ],
)
def test_early_stopping_follows_the_studys_rule(losses, epochs_run, best):
    stopper = EarlyStopping(patience=2, start_epoch=5)
    assert _run_epochs(stopper, losses) == epochs_run
    assert stopper.best_epoch == best


def _subset(n: int, size: int, seed: int, pattern: tuple[int, ...] = (0, 1, 2)) -> Subset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor(pattern).repeat(n // len(pattern) + 1)[:n]
    images = (
        torch.randint(0, 100, (n, 3, size, size), generator=g, dtype=torch.uint8)
        + labels.view(-1, 1, 1, 1).to(torch.uint8) * 60
    )
    return Subset(files=[f"f{i}.png" for i in range(n)], images=images, labels=labels)


def _config(**overrides) -> TrainConfig:
    study = project_params().train
    base = dataclasses.replace(
        study,
        seed=7,
        device="cpu",
        batch_size=4,
        max_epochs=3,
        early_stopping=dataclasses.replace(study.early_stopping, patience=2, start_epoch=0),
        scheduler=dataclasses.replace(study.scheduler, step_size=1, gamma=0.5),
    )
    return dataclasses.replace(base, **overrides)


def _model_config(arch: str = "simple_cnn", imbalance: str = "none") -> ModelConfig:
    return ModelConfig(arch=arch, weights="none", lr=1e-3, weight_decay=0.0, imbalance=imbalance)


def _train_once(
    config: TrainConfig, arch: str = "simple_cnn", pattern: tuple[int, ...] = (0, 1, 2), imbalance: str = "none"
):
    seed_everything(config.seed, config.deterministic)
    model = build_model(arch, num_classes=3, image_size=32)
    train, val, test = _subset(24, 32, 0, pattern), _subset(9, 32, 1), _subset(9, 32, 2)
    result = fit(
        model,
        train,
        val,
        name=arch,
        model_config=_model_config(arch, imbalance),
        config=config,
        device=torch.device("cpu"),
    )
    probs = torch.softmax(predict_logits(model, test.images, batch_size=4), 1).numpy()
    metrics = classification_metrics(
        test.labels.numpy(), probs, ("benign", "malignant", "normal"), project_params().evaluate
    )
    return model, result, metrics, val


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["simple_cnn", "mobilenet"])
def test_two_cpu_runs_with_the_same_seed_give_identical_metrics(arch):
    _, first, metrics_a, _ = _train_once(_config(), arch)
    _, second, metrics_b, _ = _train_once(_config(), arch)
    assert metrics_a == metrics_b
    assert [row["val_loss"] for row in first.history] == [row["val_loss"] for row in second.history]


@pytest.mark.slow
def test_another_seed_gives_another_run():
    _, first, _, _ = _train_once(_config())
    _, second, _, _ = _train_once(_config(seed=8))
    assert [r["train_loss"] for r in first.history] != [r["train_loss"] for r in second.history]


@pytest.mark.slow
def test_fit_restores_the_best_epoch_and_steps_the_learning_rate():
    model, result, _, val = _train_once(_config())
    assert result.epochs_run == len(result.history) == 3
    best_loss = min(row["val_loss"] for row in result.history)
    assert result.history[result.best_epoch]["val_loss"] == best_loss
    restored = evaluate_loss(model, val, batch_size=4)["loss"]
    assert restored == pytest.approx(best_loss, rel=1e-5)
    assert [row["lr"] for row in result.history] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    assert all(row["seconds"] > 0 for row in result.history)


def test_batch_larger_than_the_training_set_is_refused():
    with pytest.raises(ConfigError, match=r"train\.batch_size: 64 is larger than the training set \(24 images\)"):
        _train_once(_config(batch_size=64))


def test_cuda_asked_for_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ConfigError, match=r"train\.device: cuda asked for, but torch sees no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_a_lone_last_image_is_folded_into_the_previous_batch():
    # 9 images in batches of 4 would leave one image alone, which BatchNorm cannot train on.
    seed_everything(0, True)
    model = build_model("mobilenet", num_classes=3, image_size=32)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    batches = []  # the size of each batch the model trains on (evaluation runs with model.training False)
    model.register_forward_pre_hook(lambda module, args: batches.append(len(args[0])) if module.training else None)
    result = fit(
        model,
        _subset(9, 32, 0),
        _subset(6, 32, 1),
        name="mobilenet",
        model_config=_model_config("mobilenet"),
        config=_config(batch_size=4, max_epochs=1),
        device=torch.device("cpu"),
    )
    assert batches == [4, 5]  # one epoch, every image once, the ninth in the second batch
    assert [row["epoch"] for row in result.history] == [0] and result.best_epoch == 0 and result.epochs_run == 1
    assert math.isfinite(result.history[0]["train_loss"]) and math.isfinite(result.history[0]["val_loss"])
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, start[name])]
    assert unchanged == []  # both steps reached every parameter, and fit kept the trained weights


def test_batches_fold_a_lone_last_image_and_cover_every_index_once():
    sizes = [len(b) for b in batch_indices(torch.arange(9), 4)]
    assert sizes == [4, 5]
    assert [len(b) for b in batch_indices(torch.arange(10), 4)] == [4, 4, 2]
    assert sorted(torch.cat(batch_indices(torch.randperm(17), 8)).tolist()) == list(range(17))


def test_class_weights_give_every_class_the_same_total_weight():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    weights = inverse_frequency_weights(labels, 3)
    per_class_total = torch.bincount(labels, weights=weights[labels], minlength=3)
    assert per_class_total.tolist() == pytest.approx([10 / 3] * 3)
    assert minority_classes(labels, 3).tolist() == [False, True, True]


def test_balanced_sampler_draws_every_class_about_equally():
    labels = torch.tensor([0] * 80 + [1] * 15 + [2] * 5)
    g = torch.Generator().manual_seed(0)
    drawn = torch.cat([labels[epoch_order(labels, g, balanced=True)] for _ in range(50)])
    shares = torch.bincount(drawn, minlength=3).float() / len(drawn)
    assert shares.tolist() == pytest.approx([1 / 3] * 3, abs=0.03)
    plain = epoch_order(labels, g, balanced=False)
    assert sorted(plain.tolist()) == list(range(100))  # a permutation: every image once


@pytest.mark.slow
@pytest.mark.parametrize("option", ["class_weighted_loss", "balanced_sampler", "minority_augment"])
def test_imbalance_options_change_the_run(option):
    imbalanced = (0, 0, 0, 0, 1, 1, 2, 0)
    _, plain, _, _ = _train_once(_config(max_epochs=1), pattern=imbalanced)
    _, changed, _, _ = _train_once(_config(max_epochs=1), pattern=imbalanced, imbalance=option)
    assert plain.history[0]["train_loss"] != changed.history[0]["train_loss"]


def test_the_cuda_settings_train_on_cpu_too():
    """bf16 autocast and channels-last (what CUDA uses) run through the same loop on the CPU."""
    seed_everything(0, True)
    model = build_model("simple_cnn", num_classes=3, image_size=32).to(memory_format=torch.channels_last)
    setup = EpochSetup(
        batch_size=4,
        augment=project_params().train.augment,
        amp_dtype=torch.bfloat16,
        memory_format=torch.channels_last,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    stats = train_one_epoch(
        model, _subset(12, 32, 0), optimizer, setup, generator=torch.Generator().manual_seed(0), desc="t"
    )
    assert 0 < stats["loss"] < 10 and 0 <= stats["accuracy"] <= 1
    logits = predict_logits(
        model, _subset(5, 32, 1).images, batch_size=4, amp_dtype=torch.bfloat16, memory_format=torch.channels_last
    )
    assert logits.dtype == torch.float32 and logits.shape == (5, 3) and torch.isfinite(logits).all()
    assert resolve_device("cpu").type == "cpu" and memory_format(torch.device("cpu")) == torch.contiguous_format
    assert memory_format(torch.device("cuda")) == torch.channels_last


def test_a_diverging_learning_rate_stops_with_the_key_to_change():
    with pytest.raises(ConfigError, match=r"train\.simple_cnn\.lr: the training loss diverged"):
        seed_everything(0, True)
        model = build_model("simple_cnn", num_classes=3, image_size=32)
        huge = dataclasses.replace(_model_config(), lr=1.0)
        with torch.no_grad():  # what a diverged step leaves behind: weights that are no longer numbers
            model.classifier[-1].weight.fill_(float("inf"))
        fit(
            model,
            _subset(12, 32, 0),
            _subset(6, 32, 1),
            name="simple_cnn",
            model_config=huge,
            config=_config(),
            device=torch.device("cpu"),
        )


def test_the_progress_bar_shows_the_loss_of_ten_steps_before_without_waiting_for_the_newest():
    class Bar:
        def __init__(self) -> None:
            self.shown: list[str] = []

        def set_postfix(self, loss: str) -> None:
            self.shown.append(loss)

    bar = Bar()
    readout = LossReadout(bar)
    loss = torch.zeros(())  # as a replayed graph's loss output: one tensor, overwritten at every step
    for step in range(25):
        loss.fill_(step)
        readout.step(step, loss)
    assert bar.shown == ["0.000", "10.000"]
