"""The study's training loop: Adam, StepLR per epoch, early stopping on validation loss, best weights restored."""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bcmodels import augment
from bcmodels.config import CLASSES, AugmentConfig, ModelConfig, TrainConfig
from bcmodels.data import Subset, standardize, to_unit_float
from bcmodels.errors import ConfigError
from bcmodels.runtime import autocast_dtype, memory_format

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds")


@dataclass
class EarlyStopping:
    """Track the lowest validation loss; stop once epoch >= start_epoch and patience epochs brought none."""

    patience: int
    start_epoch: int
    best_loss: float = float("inf")
    best_epoch: int = -1
    best_state: dict = field(default_factory=dict)

    def update(self, epoch: int, val_loss: float, model: nn.Module) -> bool:
        """Record this epoch; returns True when training should stop."""
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch = val_loss, epoch
            self.best_state = copy.deepcopy(model.state_dict())
        return epoch >= self.start_epoch and epoch - self.best_epoch >= self.patience


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


@dataclass(frozen=True)
class EpochSetup:
    """How one training epoch draws, augments and weighs its images."""

    batch_size: int
    augment: AugmentConfig
    augment_classes: torch.Tensor | None = None  # (classes,) bool: only these are augmented; None = all
    loss_weight: torch.Tensor | None = None  # (classes,) cross-entropy weights; None = unweighted
    balanced_sampler: bool = False
    amp_dtype: torch.dtype | None = None
    memory_format: torch.memory_format = torch.contiguous_format


def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(labels.cpu(), minlength=num_classes)


def inverse_frequency_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (classes * count_c): every class carries the same total weight (a class absent from train gets 0)."""
    counts = class_counts(labels, num_classes).float()
    return torch.where(counts > 0, len(labels) / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))


def minority_classes(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(classes,) bool: every class with fewer training images than the largest one."""
    counts = class_counts(labels, num_classes)
    return counts < counts.max()


def epoch_order(labels: torch.Tensor, generator: torch.Generator, balanced: bool) -> torch.Tensor:
    """The image indices of one epoch: a random permutation, or, balanced, len(labels) draws with
    replacement where every class is equally likely (as torch's WeightedRandomSampler)."""
    n = len(labels)
    if not balanced:
        return torch.randperm(n, generator=generator)
    per_image = inverse_frequency_weights(labels, len(CLASSES))[labels.cpu()]
    return torch.multinomial(per_image, n, replacement=True, generator=generator)


def batch_indices(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Consecutive batches of order; a lone last image is folded into the batch before it
    (BatchNorm cannot train on a single image)."""
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def train_one_epoch(
    model: nn.Module,
    data: Subset,
    optimizer: torch.optim.Optimizer,
    setup: EpochSetup,
    *,
    generator: torch.Generator,
    desc: str,
) -> dict[str, float]:
    """One pass over the training set (data already on the model's device); mean loss and accuracy.

    The random order and augmentation draws come from generator (CPU), so a seed gives the same run
    on any device. Loss and accuracy are summed on the device and read once per epoch.
    """
    model.train()
    device = data.images.device
    order = epoch_order(data.labels, generator, setup.balanced_sampler)
    eligible_per_class = setup.augment_classes.to(device) if setup.augment_classes is not None else None
    loss_weight = setup.loss_weight.to(device) if setup.loss_weight is not None else None
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with tqdm(batch_indices(order, setup.batch_size), desc=desc, unit="batch", leave=False) as bar:
        for step, idx in enumerate(bar):
            idx = idx.to(device, non_blocking=True)
            labels = data.labels[idx]
            eligible = eligible_per_class[labels].cpu() if eligible_per_class is not None else None
            draws = augment.draw(setup.augment, len(idx), generator, eligible)
            images = standardize(augment.apply(to_unit_float(data.images[idx]), draws))
            images = images.contiguous(memory_format=setup.memory_format)
            with _autocast(device, setup.amp_dtype):
                logits = model(images)
                loss = F.cross_entropy(logits.float(), labels, weight=loss_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(idx)
            correct += (logits.argmax(1) == labels).sum()
            if step % 10 == 0:  # reading the loss waits for the device; not on every step
                bar.set_postfix(loss=f"{loss.item():.3f}")
    n = len(order)
    return {"loss": total_loss.item() / n, "accuracy": correct.item() / n}


@torch.no_grad()
def predict(
    model: nn.Module,
    data: Subset,
    *,
    batch_size: int,
    amp_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Logits (fp32, on CPU) for every image of data (on the model's device), in order, in eval mode."""
    model.eval()
    outputs = []
    device = data.images.device
    for start in range(0, len(data.labels), batch_size):
        images = standardize(to_unit_float(data.images[start : start + batch_size]))
        with _autocast(device, amp_dtype):
            outputs.append(model(images.contiguous(memory_format=memory_format)).float())
    return torch.cat(outputs).cpu()


def evaluate_loss(model: nn.Module, data: Subset, **kwargs) -> dict[str, float]:
    logits = predict(model, data, **kwargs)
    labels = data.labels.cpu()
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "accuracy": (logits.argmax(1) == labels).float().mean().item(),
    }


def epoch_setup(config: TrainConfig, train_labels: torch.Tensor, device: torch.device) -> EpochSetup:
    """The recipe's per-epoch settings, with the class-imbalance options (all off in the study)."""
    num_classes = len(CLASSES)
    return EpochSetup(
        batch_size=config.batch_size,
        augment=config.augment,
        augment_classes=minority_classes(train_labels, num_classes) if config.augment.minority_only else None,
        loss_weight=inverse_frequency_weights(train_labels, num_classes) if config.class_weighted_loss else None,
        balanced_sampler=config.balanced_sampler,
        amp_dtype=autocast_dtype(device, config.amp),
        memory_format=memory_format(device),
    )


@dataclass(frozen=True)
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    epochs_run: int


def fit(
    model: nn.Module,
    train: Subset,
    val: Subset,
    *,
    name: str,
    model_config: ModelConfig,
    config: TrainConfig,
    device: torch.device,
) -> FitResult:
    """Train with the study's recipe; on return model holds the weights of the best validation epoch."""
    if config.batch_size > len(train.labels):
        raise ConfigError(
            f"train.batch_size: {config.batch_size} is larger than the training set ({len(train.labels)} images); "
            "lower it (the study used 8)"
        )
    model.to(device)
    setup = epoch_setup(config, train.labels, device)
    model.to(memory_format=setup.memory_format)
    train, val = train.to(device), val.to(device)
    # fused Adam: one kernel over all parameters; on CPU about 8x faster than the default for the
    # study's 51M- and 206M-parameter heads, with the same update rule.
    optimizer = torch.optim.Adam(
        model.parameters(), lr=model_config.lr, weight_decay=model_config.weight_decay, fused=True
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=config.scheduler.step_size, gamma=config.scheduler.gamma
    )
    stopper = EarlyStopping(config.early_stopping.patience, config.early_stopping.start_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in range(config.max_epochs):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_stats = train_one_epoch(model, train, optimizer, setup, generator=generator, desc=f"{name} epoch {epoch}")
        val_stats = evaluate_loss(
            model, val, batch_size=config.batch_size, amp_dtype=setup.amp_dtype, memory_format=setup.memory_format
        )
        scheduler.step()
        history.append({
            "epoch": epoch, "train_loss": train_stats["loss"], "val_loss": val_stats["loss"],
            "train_accuracy": train_stats["accuracy"], "val_accuracy": val_stats["accuracy"],
            "lr": lr, "seconds": time.perf_counter() - start,
        })  # fmt: skip
        stop = stopper.update(epoch, val_stats["loss"], model)
        tqdm.write(
            f"{name} epoch {epoch}: train loss {train_stats['loss']:.4f} acc {train_stats['accuracy']:.3f} | "
            f"val loss {val_stats['loss']:.4f} acc {val_stats['accuracy']:.3f} | "
            f"{history[-1]['seconds']:.1f}s" + (" (best)" if stopper.best_epoch == epoch else "")
        )
        if stop:
            break
    if stopper.best_epoch < 0:
        raise RuntimeError(f"{name}: the validation loss was never finite; lower train.{name}.lr")
    model.load_state_dict(stopper.best_state)
    return FitResult(history=history, best_epoch=stopper.best_epoch, epochs_run=len(history))
