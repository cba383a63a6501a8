"""The training step captured once in a CUDA graph and replayed: `train.cuda_graph: true` in params.yaml.

At the study's batch size of 8 a GPU spends most of a step waiting for the CPU to launch the step's few
hundred small kernels (augmentation, forward, backward, Adam). A CUDA graph records the whole step once and
then replays it with one launch. Everything a replay touches keeps its address: the model, the optimiser's
state, the learning rate (a device tensor the scheduler updates in place), the training images on the
device, and one small input buffer into which each step's batch is written before its replay: per image its
index and its augmentation draws, packed in one float row (`pack`).

Each epoch draws its order and augmentation from the CPU generator in the same sequence as the eager loop
(bcmodels.training.eager.train_one_epoch), so a seed trains on the same batches with the same draws. Each batch's row
goes to the device from pinned memory without waiting, so the CPU draws the next batch while the GPU trains
on this one. The first `warmup_steps` steps run eagerly on a side stream (CUDA graphs need the libraries'
lazy set-up done before a capture); they are real training steps, not extra ones. A batch of another size
(an epoch's last) gets a graph of its own, captured after one eager step of that size. Without CUDA nothing
is captured and every step runs eagerly from the same buffers: how the tests check this module on the CPU.

Inside the graph the fixed-shape augmentation is still some 380 small kernels per batch, and a replay pays
a few microseconds for each. `train.compile_augmentation` compiles it with torch.compile (inductor; Triton
kernels on CUDA) into a few fused ones, once per batch size during that size's eager step, so the capture
records the compiled kernels. The same arithmetic, except where rounding differs (nearest-neighbour
rotation can then pick the neighbouring pixel at an exact midpoint; tests/test_cuda_graph.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from bcmodels.data.subsets import Subset
from bcmodels.errors import ConfigError
from bcmodels.io.progress import progress
from bcmodels.models.inference import standardize, to_unit_float
from bcmodels.training import augment
from bcmodels.training.step import (
    EpochSetup,
    EpochTotals,
    LossReadout,
    batch_draws,
    epoch_batches,
    training_step,
)

T = TypeVar("T")

# The 12 columns of a packed row: image index, applied, flip, angle, 4 jitter factors, 4 jitter positions.
# float32 holds each exactly (indices below 2**24, draws drawn as float32).


def pack(idx: torch.Tensor, draws: augment.AugmentDraws) -> torch.Tensor:
    """(n, 12) float32 rows: one batch's image indices and augmentation draws."""
    return torch.cat(
        [
            torch.stack([idx.float(), draws.applied.float(), draws.flip.float(), draws.angle_deg.float()], 1),
            draws.factors.float(),
            draws.order.float(),
        ],
        1,
    )


def unpack(rows: torch.Tensor, jitter_on: tuple[bool, bool, bool, bool]) -> tuple[torch.Tensor, augment.AugmentDraws]:
    """The image indices and draws of packed rows, on the rows' device."""
    draws = augment.AugmentDraws(
        applied=rows[:, 1] > 0,
        flip=rows[:, 2] > 0,
        angle_deg=rows[:, 3],
        factors=rows[:, 4:8],
        order=rows[:, 8:12].long(),
        jitter_on=jitter_on,
    )
    return rows[:, 0].long(), draws


def augmented_batch(
    images: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor, jitter_on: tuple[bool, bool, bool, bool]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch that rows describe, from the training set's uint8 images and labels on the device: its images
    scaled to [0, 1] and augmented with fixed shapes, and its labels."""
    idx, draws = unpack(rows, jitter_on)
    return augment.apply(to_unit_float(images[idx]), draws, fixed_shapes=True), labels[idx]


@functools.cache
def compiled_augmented_batch() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """augmented_batch compiled by torch.compile (made on first use: importing dynamo takes seconds). One graph
    (fullgraph), specialised to each batch size (dynamic=False), so the kernels a capture records stay fixed."""
    return torch.compile(augmented_batch, fullgraph=True, dynamic=False)


def warm_up(step: Callable[[], T], device: torch.device) -> T:
    """Run step on a side stream, as CUDA graphs need before a capture (the libraries' lazy set-up)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        result = step()
    torch.cuda.current_stream(device).wait_stream(side)
    return result


def capture(step: Callable[[], T], optimizer: torch.optim.Optimizer) -> tuple[torch.cuda.CUDAGraph, T]:
    """Record one training step in a new CUDA graph, with its gradients allocated in the graph's own memory;
    returns the graph and step's outputs. The capture runs nothing: each replay does."""
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        result = step()
    return graph, result


@dataclass
class _BatchSizeGraph:
    """The input buffer and, once captured, the graph and its loss output for one batch size."""

    rows: torch.Tensor
    warmed: bool = False  # one eager step of this size has run
    graph: torch.cuda.CUDAGraph | None = None
    loss: torch.Tensor | None = None


class GraphedTraining:
    """Runs training epochs of model on data (on one device) with the step captured in a CUDA graph.

    capture=False runs the same step eagerly from the same buffers, also on CUDA: the benchmark's check
    that replays train exactly as the step they captured. compiled_augmentation: the step's augmentation
    through compiled_augmented_batch (on any device, captured or not)."""

    def __init__(
        self,
        model: nn.Module,
        data: Subset,
        optimizer: torch.optim.Optimizer,
        setup: EpochSetup,
        *,
        warmup_steps: int = 3,
        capture: bool = True,
        compiled_augmentation: bool = False,
    ) -> None:
        self.model, self.data, self.optimizer, self.setup = model, data, optimizer, setup
        self.device = data.images.device
        self.capture = capture and self.device.type == "cuda"
        self.warmup_steps = warmup_steps
        self.augmented_batch = compiled_augmented_batch() if compiled_augmentation else augmented_batch
        self.labels_cpu = data.labels.cpu()
        self.jitter_on = augment.jitter_on(setup.augment)
        self.totals = EpochTotals.zeros(self.device)
        self.by_size: dict[int, _BatchSizeGraph] = {}
        self.eager_steps = 0
        self.lr = optimizer.param_groups[0]["lr"]  # a capture reads this tensor; the scheduler must fill it

    def _step(self, rows: torch.Tensor) -> torch.Tensor:
        """The whole training step on the batch that rows describe; what the graph captures."""
        images, labels = self.augmented_batch(self.data.images, self.data.labels, rows, self.jitter_on)
        images = standardize(images).contiguous(memory_format=self.setup.memory_format)
        return training_step(self.model, self.optimizer, images, labels, self.setup, self.totals)

    def step(self, rows: torch.Tensor) -> torch.Tensor:
        """One training step on the batch rows describe (on the device, or pinned on the CPU: copied without
        waiting); returns its loss (on the device)."""
        size = self.by_size.get(len(rows))
        if size is None:
            size = self.by_size[len(rows)] = _BatchSizeGraph(torch.zeros_like(rows, device=self.device))
        size.rows.copy_(rows, non_blocking=True)
        if size.graph is not None:
            size.graph.replay()
            return size.loss
        if not self.capture:
            return self._step(size.rows)
        # Captured once the libraries' lazy set-up is done (warmup_steps eager steps in all) and this size has run.
        if self.eager_steps < self.warmup_steps or not size.warmed:
            self.eager_steps += 1
            size.warmed = True
            return warm_up(lambda: self._step(size.rows), self.device)
        size.graph, size.loss = capture(lambda: self._step(size.rows), self.optimizer)
        size.graph.replay()  # the capture only recorded this step; now run it
        return size.loss

    def train_epoch(self, generator: torch.Generator, desc: str) -> dict[str, float]:
        """One pass over the training set; mean loss and accuracy, as bcmodels.training.eager.train_one_epoch."""
        if isinstance(self.lr, torch.Tensor) and self.optimizer.param_groups[0]["lr"] is not self.lr:
            raise ConfigError(
                f"train.cuda_graph: torch {torch.__version__}'s scheduler replaced the learning-rate tensor instead "
                "of updating it, so replays would keep the old rate; set train.cuda_graph: false"
            )
        self.model.train()
        batches = epoch_batches(self.labels_cpu, self.setup, generator)
        self.totals.loss.zero_()
        self.totals.correct.zero_()
        with progress(batches, desc=desc, unit="batch") as bar:
            readout = LossReadout(bar)
            for step, idx in enumerate(bar):
                rows = pack(idx, batch_draws(idx, self.labels_cpu, self.setup, generator))
                readout.step(step, self.step(rows.pin_memory() if self.device.type == "cuda" else rows))
        return self.totals.mean(len(self.labels_cpu))
