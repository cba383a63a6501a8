"""One training epoch run eagerly, batch by batch: how the CPU trains, and CUDA with train.cuda_graph: false."""

from __future__ import annotations

import torch
from torch import nn

from bcmodels.data.subsets import Subset
from bcmodels.io.progress import progress
from bcmodels.models.inference import standardize, to_unit_float
from bcmodels.training import augment
from bcmodels.training.step import EpochSetup, EpochTotals, LossReadout, batch_draws, epoch_batches, training_step


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
    on any device. Which images may be augmented is looked up in CPU copies, and loss and accuracy are
    summed on the device and read once per epoch: no step waits for the device.
    """
    model.train()
    device = data.images.device
    labels_cpu = data.labels.cpu()
    batches = epoch_batches(labels_cpu, setup, generator)
    totals = EpochTotals.zeros(device)
    with progress(batches, desc=desc, unit="batch") as bar:
        readout = LossReadout(bar)
        for step, idx in enumerate(bar):
            draws = batch_draws(idx, labels_cpu, setup, generator)
            idx = idx.to(device, non_blocking=True)
            images = standardize(augment.apply(to_unit_float(data.images[idx]), draws))
            images = images.contiguous(memory_format=setup.memory_format)
            readout.step(step, training_step(model, optimizer, images, data.labels[idx], setup, totals))
    return totals.mean(len(labels_cpu))
