"""The CUDA-graph training path (train.cuda_graph), checked on the CPU as far as torch allows.

torch cannot capture a graph without CUDA, so on the CPU GraphedTraining runs its step eagerly from the same
fixed input buffer the graph reads. What is checked here: the packed batch rows, the fixed-shape augmentation
and that buffered step train exactly as the eager loop; the augmentation compiled by torch.compile
(train.compile_augmentation, inductor's C++ kernels here) gives the same batches and training; which steps
run eagerly and which are captured and replayed, per batch size (with a stand-in for the capture that re-runs
the recorded step on replay); the learning rate a capture reads follows the schedule; and train.cuda_graph
leaves CPU training unchanged. The
capture and replay themselves are checked on a GPU by `bash .ci/gpu_check` (bcmodels.bench's
graph_agreement: the replayed against the uncaptured step and the eager loop, from the same start).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bcmodels.errors import ConfigError
from bcmodels.models.inference import standardize
from bcmodels.models.registry import build_model
from bcmodels.runtime import seed_everything
from bcmodels.training import augment
from bcmodels.training import graphed as cuda_graph
from bcmodels.training.eager import train_one_epoch
from bcmodels.training.fit import make_optimizer
from bcmodels.training.graphed import GraphedTraining, pack, unpack
from bcmodels.training.step import EpochTotals, epoch_setup, training_step
from tests.conftest import project_params
from tests.test_training import _config, _model_config, _subset, _train_once

CPU = torch.device("cpu")


def _draws(n: int, seed: int, config=None, eligible=None) -> augment.AugmentDraws:
    return augment.draw(config or project_params().train.augment, n, torch.Generator().manual_seed(seed), eligible)


def test_packed_rows_give_back_every_index_and_draw_exactly():
    idx = torch.randperm(600, generator=torch.Generator().manual_seed(0))[:64]
    config = dataclasses.replace(project_params().train.augment, hflip_p=0.5)
    draws = _draws(64, 0, config, eligible=torch.arange(64) % 3 > 0)
    assert not torch.equal(draws.flip, draws.applied) and not torch.equal(draws.applied, torch.arange(64) % 3 > 0)
    got_idx, got = unpack(pack(idx, draws), draws.jitter_on)
    assert torch.equal(got_idx, idx)
    for name in ("applied", "flip", "angle_deg", "factors", "order"):
        assert torch.equal(getattr(got, name), getattr(draws, name)), name
    assert got.jitter_on == draws.jitter_on


def _unit_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8).float() / 255


def test_fixed_shape_augmentation_gives_the_same_pixels():
    config = project_params().train.augment
    no_contrast = dataclasses.replace(config, contrast=0.0)
    for seed in range(6):
        images = _unit_images(8, seed)
        draws = _draws(8, seed, no_contrast)
        # every operation but contrast works pixel by pixel: bit for bit
        assert torch.equal(augment.apply(images, draws), augment.apply(images, draws, fixed_shapes=True))
        draws = _draws(8, seed, config)
        selective, fixed = augment.apply(images, draws), augment.apply(images, draws, fixed_shapes=True)
        # contrast's per-image mean may round differently in the last bit
        torch.testing.assert_close(fixed, selective, rtol=0, atol=1e-6)
        assert not torch.equal(selective, images)


def _setup_and_model(imbalance: str, labels: torch.Tensor):
    config = _config(augment=dataclasses.replace(project_params().train.augment, contrast=0.0, p=0.7))
    seed_everything(0, True)
    model = build_model("mobilenet", num_classes=3, image_size=32)
    return config, epoch_setup(config, _model_config("mobilenet", imbalance), labels, CPU), model


@pytest.mark.slow
@pytest.mark.parametrize("imbalance", ["class_weighted_loss", "minority_augment"])
def test_the_buffered_step_trains_exactly_as_the_eager_loop(imbalance):
    # 10 images in batches of 4: two full batches through the buffer, the last of 2 eagerly; BatchNorm,
    # dropout, class weights or per-class augmentation, and two epochs of the same generator.
    data = _subset(10, 32, 0, pattern=(0, 0, 0, 1, 2))
    results = []
    for graphed in (False, True):
        _, setup, model = _setup_and_model(imbalance, data.labels)
        optimizer = make_optimizer(model, _model_config("mobilenet", imbalance))
        generator = torch.Generator().manual_seed(3)
        runner = GraphedTraining(model, data, optimizer, setup) if graphed else None
        stats = [
            runner.train_epoch(generator, "t")
            if runner
            else train_one_epoch(model, data, optimizer, setup, generator=generator, desc="t")
            for _ in range(2)
        ]
        results.append((stats, model.state_dict()))
    (eager_stats, eager_state), (graph_stats, graph_state) = results
    assert graph_stats == eager_stats
    assert eager_state.keys() == graph_state.keys()
    for key in eager_state:
        assert torch.equal(eager_state[key], graph_state[key]), key


@pytest.mark.slow
def test_the_compiled_augmentation_gives_the_same_batches_and_training():
    # torch.compile on the CPU (inductor's C++ kernels) of what a CUDA graph captures with
    # train.compile_augmentation; on CUDA the same graph becomes Triton kernels (checked by bash .ci/gpu_check).
    data = _subset(8, 32, 0, pattern=(0, 0, 0, 1, 2))  # two batches of 4: one shape, one compile
    config = _config(augment=dataclasses.replace(project_params().train.augment, p=0.9))
    jitter_on = augment.jitter_on(config.augment)
    idx = torch.tensor([5, 0, 7, 2])
    rows = pack(idx, _draws(4, 0, config.augment))
    seed_everything(0, True)  # deterministic algorithms, as the training below runs (a compile depends on it)
    torch._dynamo.reset()  # forget what other tests compiled, so that this one counts its own graphs
    torch._dynamo.utils.counters.clear()
    images, labels = cuda_graph.compiled_augmented_batch()(data.images, data.labels, rows, jitter_on)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # one graph: nothing fell back to Python
    reference, reference_labels = cuda_graph.augmented_batch(data.images, data.labels, rows, jitter_on)
    assert torch.equal(labels, reference_labels) and torch.equal(labels, data.labels[idx])
    assert not torch.equal(reference, data.images[idx].float() / 255)
    # the same arithmetic; rounding may move a nearest-neighbour rotation's pick at an exact midpoint
    moved = (images - reference).abs() > 1e-5
    assert moved.float().mean() < 1e-3
    torch.testing.assert_close(images[~moved], reference[~moved], rtol=0, atol=1e-5)
    results = []
    for compiled in (False, True):
        seed_everything(0, True)
        model = build_model("simple_cnn", num_classes=3, image_size=32)
        setup = epoch_setup(config, _model_config(), data.labels, CPU)
        runner = GraphedTraining(
            model, data, make_optimizer(model, _model_config()), setup, compiled_augmentation=compiled
        )
        results.append(([runner.train_epoch(torch.Generator().manual_seed(3), "t") for _ in range(2)], model))
    (plain_stats, plain_model), (compiled_stats, compiled_model) = results
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # the same compiled graph, reused
    for plain, compiled in zip(plain_stats, compiled_stats, strict=True):
        assert compiled == pytest.approx(plain, rel=1e-4)
    # inductor's kernels sum in another order than the eager ops, and two epochs of updates carry that on: a
    # weight ends up to 1.8e-5 away (torch 2.14.1 on this x86 CPU), other augmentation draws move one by 8e-3
    for a, b in zip(plain_model.parameters(), compiled_model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


class _ReplayedStep:
    """Stands in for a captured CUDA graph on the CPU: replay() re-runs the recorded step, which reads its
    batch from the buffer at replay time and writes its loss into the same output, as a real replay does."""

    def __init__(self, step, events: list[str]) -> None:
        self.step, self.events, self.loss = step, events, torch.zeros(())

    def replay(self) -> None:
        self.events.append("replay")
        self.loss.copy_(self.step())


@pytest.mark.slow
def test_each_batch_size_is_captured_after_its_warm_up_and_replays_its_own_buffer(monkeypatch):
    events: list[str] = []

    def record(step, optimizer):  # a capture records the step without running it
        events.append("capture")
        graph = _ReplayedStep(step, events)
        return graph, graph.loss

    def eager(step, device):
        events.append("eager")
        return step()

    monkeypatch.setattr(cuda_graph, "capture", record)
    monkeypatch.setattr(cuda_graph, "warm_up", eager)
    data = _subset(10, 32, 0, pattern=(0, 0, 0, 1, 2))  # batches of 4, 4 and 2
    results = []
    for graphed in (False, True):
        _, setup, model = _setup_and_model("none", data.labels)
        optimizer = make_optimizer(model, _model_config("mobilenet"))
        generator = torch.Generator().manual_seed(3)
        runner = GraphedTraining(model, data, optimizer, setup, warmup_steps=3)
        runner.capture = graphed  # what CUDA would set
        results.append(([runner.train_epoch(generator, "t") for _ in range(3)], model.state_dict()))
    # three eager steps in all, the last size once eagerly; each size captured on its next step, then replayed
    assert events == ["eager"] * 3 + ["capture", "replay", "replay", "capture", "replay"] + ["replay"] * 3
    (eager_stats, eager_state), (graph_stats, graph_state) = results
    assert graph_stats == eager_stats
    for key in eager_state:
        assert torch.equal(eager_state[key], graph_state[key]), key


def test_a_training_step_returns_its_loss_without_the_autograd_graph():
    # On CUDA a returned loss that held its graph kept the gradient accumulators, and the stream they were
    # made on, alive into the next step: torch warned of a stream mismatch in every graphed training.
    data = _subset(4, 32, 0)
    _, setup, model = _setup_and_model("none", data.labels)
    images = standardize(data.images.float() / 255)
    loss = training_step(
        model,
        make_optimizer(model, _model_config("mobilenet")),
        images,
        data.labels,
        setup,
        EpochTotals.zeros(CPU),
    )
    assert loss.grad_fn is None and not loss.requires_grad
    assert loss.item() > 0


def test_a_capturable_optimizer_keeps_one_learning_rate_tensor_that_follows_the_schedule():
    model = torch.nn.Linear(4, 3)
    optimizer = make_optimizer(model, _model_config(), capturable=True)
    lr = optimizer.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and optimizer.param_groups[0]["capturable"]
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for expected in (5e-4, 2.5e-4):
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]["lr"] is lr  # the very tensor a captured step reads
        assert lr.item() == pytest.approx(expected)


def test_a_replaced_learning_rate_tensor_is_refused():
    data = _subset(8, 32, 0)
    _, setup, model = _setup_and_model("none", data.labels)
    optimizer = make_optimizer(model, _model_config("mobilenet"), capturable=True)
    runner = GraphedTraining(model, data, optimizer, setup)
    optimizer.param_groups[0]["lr"] = 1e-3  # what a scheduler that assigns floats would do
    with pytest.raises(ConfigError, match=r"train\.cuda_graph: .* set train\.cuda_graph: false"):
        runner.train_epoch(torch.Generator().manual_seed(0), "t")


@pytest.mark.slow
def test_cuda_graph_leaves_cpu_training_unchanged():
    _, eager, metrics_eager, _ = _train_once(_config(cuda_graph=False))
    _, graphed, metrics_graphed, _ = _train_once(_config(cuda_graph=True))
    assert metrics_graphed == metrics_eager
    without_time = [{k: v for k, v in row.items() if k != "seconds"} for row in eager.history]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in graphed.history] == without_time
