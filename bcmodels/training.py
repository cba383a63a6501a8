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

from bcmodels.augment import augment_batch, study_augmentation
from bcmodels.config import ModelConfig, TrainConfig
from bcmodels.data import Subset, normalize
from bcmodels.runtime import autocast_dtype

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


def train_one_epoch(
    model: nn.Module,
    data: Subset,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    augment,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    generator: torch.Generator,
    desc: str,
) -> dict[str, float]:
    """One pass over the training set in a fresh random order; mean loss and accuracy."""
    model.train()
    order = torch.randperm(len(data.labels), generator=generator)
    total_loss, correct = 0.0, 0
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        # BatchNorm cannot train on a single image: fold a lone last image into the batch before it.
        batches[-2:] = [torch.cat(batches[-2:])]
    with tqdm(batches, desc=desc, unit="batch", leave=False) as bar:
        for idx in bar:
            images = normalize(augment_batch(data.images[idx], augment).to(device, non_blocking=True))
            labels = data.labels[idx].to(device, non_blocking=True)
            with _autocast(device, amp_dtype):
                logits = model(images)
                loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == labels).sum().item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    n = len(order)
    return {"loss": total_loss / n, "accuracy": correct / n}


@torch.no_grad()
def predict(
    model: nn.Module, data: Subset, *, batch_size: int, device: torch.device, amp_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Logits (fp32, on CPU) for every image of data, in order, with the model in eval mode."""
    model.eval()
    outputs = []
    for start in range(0, len(data.labels), batch_size):
        images = normalize(data.images[start : start + batch_size].to(device))
        with _autocast(device, amp_dtype):
            outputs.append(model(images).float().cpu())
    return torch.cat(outputs)


def evaluate_loss(model: nn.Module, data: Subset, **kwargs) -> dict[str, float]:
    logits = predict(model, data, **kwargs)
    return {
        "loss": F.cross_entropy(logits, data.labels).item(),
        "accuracy": (logits.argmax(1) == data.labels).float().mean().item(),
    }


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
        raise ValueError(
            f"train.batch_size: {config.batch_size} is larger than the training set ({len(train.labels)} images)"
        )
    model.to(device)
    amp_dtype = autocast_dtype(device, config.amp)
    # fused Adam: one kernel over all parameters; on CPU about 8x faster than the default for the
    # study's 51M- and 206M-parameter heads, with the same update rule.
    optimizer = torch.optim.Adam(
        model.parameters(), lr=model_config.lr, weight_decay=model_config.weight_decay, fused=True
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=config.scheduler.step_size, gamma=config.scheduler.gamma
    )
    stopper = EarlyStopping(config.early_stopping.patience, config.early_stopping.start_epoch)
    augment = study_augmentation(config.augment)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in range(config.max_epochs):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_stats = train_one_epoch(
            model, train, optimizer, batch_size=config.batch_size, augment=augment, device=device,
            amp_dtype=amp_dtype, generator=generator, desc=f"{name} epoch {epoch}",
        )  # fmt: skip
        val_stats = evaluate_loss(model, val, batch_size=config.batch_size, device=device, amp_dtype=amp_dtype)
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
