from __future__ import annotations

import dataclasses

import pytest
import torch

from bcmodels.augment import augment_batch, study_augmentation
from bcmodels.config import AugmentConfig, EarlyStoppingConfig, ModelConfig, SchedulerConfig, TrainConfig
from bcmodels.data import Subset
from bcmodels.evaluation import classification_metrics
from bcmodels.models import build_model
from bcmodels.runtime import resolve_device, seed_everything
from bcmodels.training import EarlyStopping, evaluate_loss, fit, predict
from bcmodels.errors import ConfigError


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


def _subset(n: int, size: int, seed: int) -> Subset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 100, (n, 3, size, size), generator=g, dtype=torch.uint8) + labels.view(-1, 1, 1, 1).to(torch.uint8) * 60
    return Subset(files=[f"f{i}.png" for i in range(n)], images=images, labels=labels)


def _config(**overrides) -> TrainConfig:
    base = TrainConfig(
        models=("simple_cnn",),
        model={"simple_cnn": ModelConfig(arch="simple_cnn", lr=1e-3)},
        seed=7,
        device="cpu",
        batch_size=4,
        max_epochs=3,
        early_stopping=EarlyStoppingConfig(patience=2, start_epoch=0),
        scheduler=SchedulerConfig(step_size=1, gamma=0.5),
    )
    return dataclasses.replace(base, **overrides)


def _train_once(config: TrainConfig, arch: str = "simple_cnn"):
    seed_everything(config.seed, config.deterministic)
    model = build_model(arch, num_classes=3, image_size=32)
    train, val, test = _subset(24, 32, 0), _subset(9, 32, 1), _subset(9, 32, 2)
    result = fit(model, train, val, name=arch, model_config=ModelConfig(arch=arch, lr=1e-3), config=config,
                 device=torch.device("cpu"))  # fmt: skip
    probs = torch.softmax(predict(model, test, batch_size=4, device=torch.device("cpu")), 1).numpy()
    return model, result, classification_metrics(test.labels.numpy(), probs), val


@pytest.mark.parametrize("arch", ["simple_cnn", "mobilenet"])
def test_two_cpu_runs_with_the_same_seed_give_identical_metrics(arch):
    _, first, metrics_a, _ = _train_once(_config(), arch)
    _, second, metrics_b, _ = _train_once(_config(), arch)
    assert metrics_a == metrics_b
    assert [row["val_loss"] for row in first.history] == [row["val_loss"] for row in second.history]


def test_another_seed_gives_another_run():
    _, first, _, _ = _train_once(_config())
    _, second, _, _ = _train_once(_config(seed=8))
    assert [r["train_loss"] for r in first.history] != [r["train_loss"] for r in second.history]


def test_fit_restores_the_best_epoch_and_steps_the_learning_rate():
    model, result, _, val = _train_once(_config())
    assert result.epochs_run == len(result.history) == 3
    best_loss = min(row["val_loss"] for row in result.history)
    assert result.history[result.best_epoch]["val_loss"] == best_loss
    restored = evaluate_loss(model, val, batch_size=4, device=torch.device("cpu"))["loss"]
    assert restored == pytest.approx(best_loss, rel=1e-5)
    assert [row["lr"] for row in result.history] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    assert all(row["seconds"] > 0 for row in result.history)


def test_batch_larger_than_the_training_set_is_refused():
    with pytest.raises(ValueError, match=r"train\.batch_size: 64 is larger than the training set \(24 images\)"):
        _train_once(_config(batch_size=64))


def test_cuda_asked_for_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ConfigError, match="train.device: cuda asked for, but torch sees no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_augmentation_off_is_identity_and_full_flip_mirrors():
    images = _subset(4, 16, 3).images
    off = study_augmentation(AugmentConfig(p=0.0))
    assert torch.equal(augment_batch(images, off), images)
    flip_only = AugmentConfig(p=1.0, hflip_p=1.0, rotation_deg=0, brightness=0, contrast=0, saturation=0, hue=0)
    assert torch.equal(augment_batch(images, study_augmentation(flip_only)), images.flip(-1))


def test_augmentation_draws_per_image():
    images = _subset(1, 16, 4).images.repeat(64, 1, 1, 1)
    torch.manual_seed(0)
    out = augment_batch(images, study_augmentation(AugmentConfig()))
    unchanged = sum(torch.equal(o, images[0]) for o in out)
    assert 16 <= unchanged <= 48  # p = 0.5 per image, not one draw for the whole batch


def test_a_lone_last_image_is_folded_into_the_previous_batch():
    # 9 images in batches of 4 would leave one image alone, which BatchNorm cannot train on.
    seed_everything(0, True)
    model = build_model("mobilenet", num_classes=3, image_size=32)
    config = _config(batch_size=4, max_epochs=1)
    result = fit(model, _subset(9, 32, 0), _subset(6, 32, 1), name="mobilenet",
                 model_config=ModelConfig(arch="mobilenet", lr=1e-3), config=config, device=torch.device("cpu"))  # fmt: skip
    assert result.epochs_run == 1
