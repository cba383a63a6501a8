"""What every training epoch shares, eager or graphed: its settings, the batches' order, their augmentation
draws and the training step itself (forward, loss, backward, the optimiser's step).

The random order and augmentation draws come from a CPU generator, so a seed gives the same run on any
device: bcmodels.training.eager runs the step batch by batch, bcmodels.training.graphed replays it from a
CUDA graph, and both draw the same numbers in the same sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bcmodels.config.schema import CLASSES, AugmentConfig, ModelConfig, TrainConfig
from bcmodels.models.inference import autocast
from bcmodels.runtime import autocast_dtype, memory_format
from bcmodels.training import augment


@dataclass(frozen=True)
class EpochSetup:
    """How one training epoch draws, augments and weighs its images."""

    batch_size: int
    augment: AugmentConfig
    augment_classes: torch.Tensor | None = None  # (classes,) bool, on the CPU: only these are augmented; None = all
    loss_weight: torch.Tensor | None = None  # (classes,) cross-entropy weights, on the device; None = unweighted
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


def epoch_batches(labels_cpu: torch.Tensor, setup: EpochSetup, generator: torch.Generator) -> list[torch.Tensor]:
    """The image indices of each batch of one epoch, in order."""
    return batch_indices(epoch_order(labels_cpu, generator, setup.balanced_sampler), setup.batch_size)


def batch_draws(
    idx: torch.Tensor, labels_cpu: torch.Tensor, setup: EpochSetup, generator: torch.Generator
) -> augment.AugmentDraws:
    """The augmentation draws of one batch. An epoch draws its batches first, then each batch's draws in
    batch order, from one CPU generator: the eager and the graphed loop see the same random numbers."""
    eligible = setup.augment_classes[labels_cpu[idx]] if setup.augment_classes is not None else None
    return augment.draw(setup.augment, len(idx), generator, eligible)


@dataclass(frozen=True)
class EpochTotals:
    """Loss and correct answers summed over an epoch's images, on the device: read once per epoch."""

    loss: torch.Tensor
    correct: torch.Tensor

    @classmethod
    def zeros(cls, device: torch.device) -> EpochTotals:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long))

    def mean(self, n: int) -> dict[str, float]:
        return {"loss": self.loss.item() / n, "accuracy": self.correct.item() / n}


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    setup: EpochSetup,
    totals: EpochTotals,
) -> torch.Tensor:
    """Forward, loss, backward and the optimiser's step on one ready batch; adds to totals (in place, so
    that a CUDA graph's replays add too). Returns the batch's loss, detached: a loss holding its autograd
    graph would keep the graph's gradient accumulators, and the CUDA stream they were made on, alive into
    the next step (torch then warns of a stream mismatch and synchronises)."""
    # Autocast's weight cache off: a CUDA graph cannot capture it, and one forward per step reuses nothing.
    with autocast(images.device, setup.amp_dtype, cache_enabled=False):
        logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, weight=setup.loss_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    loss = loss.detach()
    totals.loss.add_(loss * len(labels))
    totals.correct.add_((logits.argmax(1) == labels).sum())
    return loss


class LossReadout:
    """The training loss in a progress bar every `every` steps, read without draining the device's queue: the
    value shown is a copy made `every` steps earlier, which the device has finished while later steps wait
    behind it (reading the newest loss would leave the GPU idle until the CPU launched the next step)."""

    def __init__(self, bar, every: int = 10) -> None:
        self.bar, self.every = bar, every
        self.pending: torch.Tensor | None = None

    def step(self, step: int, loss: torch.Tensor) -> None:
        if step % self.every:
            return
        if self.pending is not None:
            self.bar.set_postfix(loss=f"{self.pending.item():.3f}")
        self.pending = loss.clone()  # a replayed graph overwrites its loss output at the next step


def epoch_setup(
    config: TrainConfig, model_config: ModelConfig, train_labels: torch.Tensor, device: torch.device
) -> EpochSetup:
    """The recipe's per-epoch settings with the model's answer to the class imbalance (none in the study)."""
    num_classes, imbalance = len(CLASSES), model_config.imbalance
    minority = imbalance == "minority_augment"
    return EpochSetup(
        batch_size=config.batch_size,
        augment=config.augment,
        augment_classes=minority_classes(train_labels, num_classes) if minority else None,
        loss_weight=inverse_frequency_weights(train_labels, num_classes).to(device)
        if imbalance == "class_weighted_loss"
        else None,
        balanced_sampler=imbalance == "balanced_sampler",
        amp_dtype=autocast_dtype(device, config.amp),
        memory_format=memory_format(device),
    )
