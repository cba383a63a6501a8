"""Checks that the CUDA-graph training step trains as the eager one: what the benchmark and the CUDA check
(.ci/gpu_check) print beside the speeds. On the CPU nothing is captured, so the capture check is 0 there by
construction; the tests run these functions on the CPU for their plumbing, a GPU for their numbers.
"""

from __future__ import annotations

import torch
from torch import nn

from bcmodels.config.schema import CLASSES, Params, TrainConfig
from bcmodels.data.subsets import Subset
from bcmodels.models.registry import build_model
from bcmodels.runtime import seed_everything
from bcmodels.training import augment
from bcmodels.training.fit import epoch_trainer, make_optimizer
from bcmodels.training.graphed import GraphedTraining, augmented_batch, compiled_augmented_batch, pack
from bcmodels.training.step import EpochSetup, epoch_setup

# The training steps compared: mode -> (train.cuda_graph, train.compile_augmentation).
MODES = {"eager": (False, False), "graph": (True, False), "graph+compile": (True, True)}


def configured_mode(config: TrainConfig) -> str:
    """The mode (MODES) that train's settings select: what a train stage runs on CUDA."""
    graph = config.cuda_graph
    return next(mode for mode, flags in MODES.items() if flags == (graph, graph and config.compile_augmentation))


def ready_model(name: str, params: Params, train: Subset, device: torch.device) -> tuple[nn.Module, EpochSetup]:
    """Model section name built from scratch after seeding as the train stage does, on device in the memory
    layout the recipe uses there, with its epoch settings."""
    config = params.train
    model_config = config.model_configs[name]
    seed_everything(config.seed, config.deterministic)
    model = build_model(model_config.arch, num_classes=len(CLASSES), image_size=train.images.shape[-1])
    setup = epoch_setup(config, model_config, train.labels, device)
    return model.to(device, memory_format=setup.memory_format), setup


def graph_agreement(
    name: str, params: Params, train: Subset, device: torch.device, modes: list[str], epochs: int = 1
) -> dict[str, dict]:
    """Train model section name for `epochs` from the same start, with the same optimiser and draws: with the
    eager loop, then per graph mode of modes the graph's step run eagerly from its buffers (not captured), and
    captured and replayed. Returns per graph mode
    - capture_diff: the largest difference of any weight or buffer between the replayed and the uncaptured
      step, the check of the capture itself: 0 when the replays run the very kernels that were recorded
      (on the CPU nothing is captured, so it is 0 there by construction);
    - relative_diff: |graph - eager| / |eager| over all parameters (Euclidean norms), how far the fixed-shape
      augmentation's rounding (contrast's mean; rotation's midpoints when compiled) and what training grows
      it into separate the two loops;
    - eager_loss and graph_loss, both mean training losses."""
    model_config = params.train.model_configs[name]
    on_device = train.to(device)

    def train_from_start(run: str, compiled: bool = False) -> tuple[dict, torch.Tensor, float]:
        model, setup = ready_model(name, params, train, device)
        optimizer = make_optimizer(model, model_config, capturable=device.type == "cuda")
        generator = torch.Generator().manual_seed(0)
        if run == "eager":
            train_epoch = epoch_trainer(model, on_device, optimizer, setup, graphed=False)
        else:
            runner = GraphedTraining(
                model, on_device, optimizer, setup, capture=run == "graph", compiled_augmentation=compiled
            )
            train_epoch = runner.train_epoch
        for epoch in range(epochs):
            stats = train_epoch(generator=generator, desc=f"{name} {run} epoch {epoch}")
        parameters = torch.cat([p.detach().double().flatten() for p in model.parameters()])
        return model.state_dict(), parameters, stats["loss"]

    _, eager_parameters, eager_loss = train_from_start("eager")
    rows = {}
    for mode in modes:
        graph, compiled = MODES[mode]
        if not graph:
            continue
        uncaptured, _, _ = train_from_start("uncaptured", compiled)
        graphed, parameters, loss = train_from_start("graph", compiled)
        rows[mode] = {
            "capture_diff": max((graphed[k].double() - uncaptured[k].double()).abs().max().item() for k in graphed),
            "relative_diff": ((parameters - eager_parameters).norm() / eager_parameters.norm()).item(),
            "eager_loss": eager_loss,
            "graph_loss": loss,
        }
    return rows


def compiled_augmentation_agreement(params: Params, train: Subset, device: torch.device, batches: int) -> dict:
    """The compiled augmentation (train.compile_augmentation) against the op-by-op one on `batches` batches of
    train's images with real draws: how many augmented values differ by more than 1e-5 (where rounding moves
    a nearest-neighbour rotation's pick at an exact midpoint to the neighbouring pixel), out of how many, and
    the largest difference of the others."""
    config = params.train
    on_device = train.to(device)
    jitter_on = augment.jitter_on(config.augment)
    generator = torch.Generator().manual_seed(0)
    moved, values, others = 0, 0, 0.0
    for _ in range(batches):
        idx = torch.randperm(len(train.labels), generator=generator)[: config.batch_size]
        rows = pack(idx, augment.draw(config.augment, len(idx), generator)).to(device)
        compiled, _ = compiled_augmented_batch()(on_device.images, on_device.labels, rows, jitter_on)
        reference, _ = augmented_batch(on_device.images, on_device.labels, rows, jitter_on)
        diff = (compiled - reference).abs()
        far = diff > 1e-5
        moved, values = moved + int(far.sum()), values + diff.numel()
        others = max(others, diff[~far].max().item())
    return {"moved": moved, "values": values, "others_max": others}
