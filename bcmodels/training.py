"""The study's training recipe: Adam, StepLR per epoch, early stopping on validation loss, best weights restored;
and `train_model`, what the train stage runs: data, model, fit, checkpoint and history on disk."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bcmodels.config import CLASSES, ModelConfig, Params, TrainConfig, to_dict
from bcmodels.cuda_graph import epoch_trainer
from bcmodels.data import Subset, load_subsets
from bcmodels.epoch import epoch_setup
from bcmodels.errors import ConfigError, DataError, WeightsError
from bcmodels.formats.checkpoint import Checkpoint, save_checkpoint
from bcmodels.formats.history import write_history
from bcmodels.inference import IMAGENET_MEAN, IMAGENET_STD, predict_logits
from bcmodels.models import build_model, count_parameters
from bcmodels.progress import say
from bcmodels.runtime import resolve_device, seed_everything


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


def evaluate_loss(model: nn.Module, data: Subset, **kwargs) -> dict[str, float]:
    """Unweighted cross-entropy and accuracy of data (on the model's device)."""
    logits = predict_logits(model, data.images, **kwargs)
    labels = data.labels.cpu()
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "accuracy": (logits.argmax(1) == labels).float().mean().item(),
    }


def make_optimizer(model: nn.Module, model_config: ModelConfig, *, capturable: bool = False) -> torch.optim.Optimizer:
    """The study's optimiser: Adam with the model's lr and weight decay.

    fused: one kernel over all parameters; on the CPU about 8x faster than the default for the study's
    51M- and 206M-parameter heads, with the same update rule.
    capturable (for a CUDA graph): the step counts and the learning rate live on the parameters' device,
    the rate as a tensor that the scheduler updates in place, so a replayed step follows the schedule.
    """
    lr = model_config.lr
    if capturable:
        lr = torch.tensor(lr, device=next(model.parameters()).device)
    return torch.optim.Adam(
        model.parameters(), lr=lr, weight_decay=model_config.weight_decay, fused=True, capturable=capturable
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
    setup = epoch_setup(config, model_config, train.labels, device)
    model.to(memory_format=setup.memory_format)
    train, val = train.to(device), val.to(device)
    graphed = config.cuda_graph and device.type == "cuda"  # the CPU always trains eagerly
    optimizer = make_optimizer(model, model_config, capturable=graphed)
    train_epoch = epoch_trainer(
        model, train, optimizer, setup, graphed=graphed, compiled_augmentation=config.compile_augmentation
    )
    if graphed:
        compiled = ", its augmentation compiled (train.compile_augmentation)" if config.compile_augmentation else ""
        say(f"{name}: the training step is captured in a CUDA graph and replayed (train.cuda_graph){compiled}")
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=config.scheduler.step_size, gamma=config.scheduler.gamma
    )
    stopper = EarlyStopping(config.early_stopping.patience, config.early_stopping.start_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in range(config.max_epochs):
        start = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])  # a tensor when capturable
        train_stats = train_epoch(generator=generator, desc=f"{name} epoch {epoch}")
        if not math.isfinite(train_stats["loss"]):
            raise ConfigError(f"train.{name}.lr: the training loss diverged (not finite) in epoch {epoch}; lower it")
        val_stats = evaluate_loss(
            model, val, batch_size=config.batch_size, amp_dtype=setup.amp_dtype, memory_format=setup.memory_format
        )
        scheduler.step()
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_stats["loss"],
                "val_loss": val_stats["loss"],
                "train_accuracy": train_stats["accuracy"],
                "val_accuracy": val_stats["accuracy"],
                "lr": lr,
                "seconds": time.perf_counter() - start,
            }
        )
        stop = stopper.update(epoch, val_stats["loss"], model)
        say(
            f"{name} epoch {epoch}: train loss {train_stats['loss']:.4f} acc {train_stats['accuracy']:.3f} | "
            f"val loss {val_stats['loss']:.4f} acc {val_stats['accuracy']:.3f} | "
            f"{history[-1]['seconds']:.1f}s" + (" (best)" if stopper.best_epoch == epoch else "")
        )
        if stop:
            break
    if stopper.best_epoch < 0:
        raise ConfigError(f"train.{name}.lr: the validation loss was never finite; lower it")
    model.load_state_dict(stopper.best_state)
    return FitResult(history=history, best_epoch=stopper.best_epoch, epochs_run=len(history))


def train_model(
    params: Params, name: str, *, store: Path, split: Path, checkpoint: Path, history: Path, seed: int | None = None
) -> FitResult:
    """Train model section `name` on the split's train set (seed: train.seed unless given); write both files."""
    if name not in params.train.model_configs:
        raise ConfigError(
            f"train.{name}: no such model section. Sections: {', '.join(sorted(params.train.model_configs))}"
        )
    config = params.train if seed is None else dataclasses.replace(params.train, seed=seed)
    model_config = config.model_configs[name]
    device = resolve_device(config.device)
    seed_everything(config.seed, config.deterministic)
    subsets = load_subsets(store, split)
    image_size = subsets["train"].images.shape[-1]
    if image_size != params.preprocess.image_size:
        raise DataError(
            f"{store}: images are {image_size} px but preprocess.image_size is "
            f"{params.preprocess.image_size}; run `dvc repro preprocess`"
        )
    try:
        model = build_model(
            model_config.arch, num_classes=len(CLASSES), image_size=image_size, weights=model_config.weights
        )
    except (WeightsError, ConfigError) as err:
        key = "weights" if isinstance(err, WeightsError) else "arch"
        raise type(err)(f"train.{name}.{key}: {err}") from None
    say(
        f"{name}: {model_config.arch}, {count_parameters(model):,} parameters, weights {model_config.weights}, "
        f"imbalance {model_config.imbalance}, {len(subsets['train'].labels)} train / {len(subsets['val'].labels)} "
        f"val images, seed {config.seed}, on {device}"
    )
    result = fit(
        model, subsets["train"], subsets["val"], name=name, model_config=model_config, config=config, device=device
    )
    pre = params.preprocess
    save_checkpoint(
        checkpoint,
        Checkpoint(
            model=name,
            arch=model_config.arch,
            classes=CLASSES,
            geometry=pre.geometry,
            image_size=image_size,
            resize_short_side=pre.resize_short_side,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            model_config=to_dict(model_config),
            train_config={k: v for k, v in to_dict(config).items() if k not in ("models", "model_configs")},
            best_epoch=result.best_epoch,
            epochs_run=result.epochs_run,
            state_dict=model.state_dict(),
        ),
    )
    write_history(history, result.history)
    return result
