"""Training speed: `python -m bcmodels.bench [--models ...] [--device cpu|cuda] [--modes ...] [--fit [MODE ...]]`.

Per model, at the configured batch size (train.batch_size) and with the recipe's settings:
- step ceiling: images/s of the bare training step (forward, backward, the recipe's optimiser) on one batch
  that is already on the device, no augmentation: the most the loop could reach;
- epoch: images/s of one whole epoch of the real training loop (bcmodels.training.eager.train_one_epoch:
  shuffling, on-device augmentation, standardisation, the same step), after --warmup-epochs untimed ones
  (the first pays for cuDNN's algorithm search and first launches; with a CUDA graph, the second captures
  the graph of the epoch's last, smaller batch);
- their ratio: how much of the ceiling the real loop keeps.
Each in the modes (steps) asked for, side by side: eager (kernels launched one by one), and on CUDA graph
(the step captured in a CUDA graph: train.cuda_graph, bcmodels.training.graphed) and graph+compile (the same with
its augmentation compiled: train.compile_augmentation). The graph modes have one more column: the augmented
step, images/s of the captured step as the graphed loop replays it (indexing, fixed-shape augmentation,
standardisation and the same step, on one batch), which splits what the epoch loses against the ceiling
into the augmentation's cost and the loop's. Then a check that replays train as the step they captured and
as the eager loop (graph_agreement; --skip-agreement leaves it out) and, with graph+compile, the compiled
augmentation's values against the op-by-op ones (compiled_augmentation_agreement). --fit also trains each
model with the whole recipe (validation each epoch, early stopping) on the split's train and validation
sets, in each mode or those named, and reports the seconds.
Models are built without pretrained weights (the speed does not depend on the weight values, and nothing
is downloaded). Images: the training set of --store and --split when they exist, else random images of the
same count and size (--synthetic forces that). A benchmark, not a test: it asserts nothing; the CUDA
check (.ci/gpu_check) runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from torch import nn

from bcmodels.config.load import load_params
from bcmodels.config.schema import CLASSES, ModelConfig, Params
from bcmodels.data.subsets import Subset, load_subsets
from bcmodels.errors import ConfigError, run_stage
from bcmodels.models.inference import standardize, to_unit_float
from bcmodels.runtime import resolve_device
from bcmodels.training.fit import epoch_trainer, fit, make_optimizer
from bcmodels.training.graph_checks import MODES, compiled_augmentation_agreement, graph_agreement, ready_model
from bcmodels.training.graphed import GraphedTraining, capture, pack, warm_up
from bcmodels.training.step import EpochSetup, EpochTotals, batch_draws, training_step

STUDY_TRAIN_IMAGES = 563  # the study split's training set, for the synthetic stand-in


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_images(store: Path, split: Path, synthetic: bool, image_size: int) -> tuple[Subset, str]:
    """The real training subset when the pipeline has made it, else random images of its size."""
    if not synthetic and store.is_dir() and split.is_file():
        return load_subsets(store, split)["train"], f"{store} ({split}, train)"
    g = torch.Generator().manual_seed(0)
    n = STUDY_TRAIN_IMAGES
    images = torch.randint(0, 256, (n, 3, image_size, image_size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, len(CLASSES), (n,), generator=g)
    return Subset([f"synthetic{i}" for i in range(n)], images, labels), "random images"


def step_ceiling(
    model, optimizer, batch: torch.Tensor, labels: torch.Tensor, setup: EpochSetup, steps: int, warmup: int, graph: bool
) -> float:
    """Images/s of the bare training step on one batch already on the device, launched op by op or, with
    graph, captured once and replayed (after the same warm-up)."""
    device = batch.device
    images = standardize(to_unit_float(batch)).contiguous(memory_format=setup.memory_format)
    totals = EpochTotals.zeros(device)
    model.train()

    def step() -> None:
        training_step(model, optimizer, images, labels, setup, totals)

    if graph:
        for _ in range(warmup):
            warm_up(step, device)
        step = capture(step, optimizer)[0].replay
    else:
        for _ in range(warmup):
            step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * len(batch) / (time.perf_counter() - start)


def augmented_step_rate(
    model: nn.Module,
    model_config: ModelConfig,
    data: Subset,
    setup: EpochSetup,
    steps: int,
    warmup: int,
    compiled_augmentation: bool = False,
) -> float:
    """Images/s of the captured step as GraphedTraining replays it, on the first batch of data (on the device)
    with real draws: the step ceiling plus the batch's indexing, augmentation and standardisation."""
    optimizer = make_optimizer(model, model_config, capturable=True)
    runner = GraphedTraining(
        model, data, optimizer, setup, warmup_steps=warmup, compiled_augmentation=compiled_augmentation
    )
    idx = torch.arange(setup.batch_size)
    draws = batch_draws(idx, data.labels.cpu(), setup, torch.Generator().manual_seed(0))
    rows = pack(idx, draws).to(data.images.device)
    model.train()
    for _ in range(max(warmup, 1) + 1):  # eager steps (a size runs once before its capture), then the capture
        runner.step(rows)
    _sync(data.images.device)
    start = time.perf_counter()
    for _ in range(steps):
        runner.step(rows)
    _sync(data.images.device)
    return steps * len(rows) / (time.perf_counter() - start)


def bench_model(
    name: str,
    params: Params,
    train: Subset,
    device: torch.device,
    steps: int,
    warmup: int,
    warmup_epochs: int,
    mode: str = "eager",
) -> dict:
    """Step ceiling, one timed epoch and their ratio for model section name, in mode (MODES)."""
    config = params.train
    model_config = config.model_configs[name]
    graph, compiled = MODES[mode]
    model, setup = ready_model(name, params, train, device)
    on_device = train.to(device)
    batch, labels = on_device.images[: config.batch_size], on_device.labels[: config.batch_size]
    optimizer = make_optimizer(model, model_config, capturable=graph)
    ceiling = step_ceiling(model, optimizer, batch, labels, setup, steps, warmup, graph)
    augmented = augmented_step_rate(model, model_config, on_device, setup, steps, warmup, compiled) if graph else None
    # a fresh optimiser for the loop: each graph above holds on to its own optimiser's gradients
    optimizer = make_optimizer(model, model_config, capturable=graph)
    generator = torch.Generator().manual_seed(0)
    train_epoch = epoch_trainer(model, on_device, optimizer, setup, graphed=graph, compiled_augmentation=compiled)
    for _ in range(warmup_epochs):
        train_epoch(generator=generator, desc=f"{name} warm-up epoch")
    _sync(device)
    start = time.perf_counter()
    train_epoch(generator=generator, desc=f"{name} epoch")
    _sync(device)
    epoch_seconds = time.perf_counter() - start
    epoch_rate = len(train.labels) / epoch_seconds
    return {
        "model": name,
        "ceiling": ceiling,
        "augmented": augmented,
        "epoch": epoch_rate,
        "ratio": epoch_rate / ceiling,
        "epoch_s": epoch_seconds,
    }


def fit_model(name: str, params: Params, train: Subset, val: Subset, device: torch.device, mode: str = "eager") -> dict:
    """Train model section name with the whole recipe (as the train stage, weights: none) in mode (MODES);
    seconds and epochs."""
    graph, compiled = MODES[mode]
    config = dataclasses.replace(params.train, cuda_graph=graph, compile_augmentation=compiled)
    model, _ = ready_model(name, params, train, device)
    _sync(device)
    start = time.perf_counter()
    result = fit(model, train, val, name=name, model_config=config.model_configs[name], config=config, device=device)
    _sync(device)
    return {
        "seconds": time.perf_counter() - start,
        "epochs": result.epochs_run,
        "val_loss": result.history[result.best_epoch]["val_loss"],
    }


SPEED_HEADER = (
    f"{'model':<14}{'step':<15}{'step ceiling':>14}{'augmented step':>16}{'epoch':>8}{'ratio':>7}{'epoch s':>9}"
)
SPEED_FOOTER = "(images/s; ratio: epoch against step ceiling)"
AGREEMENT_HEADER = (
    "\ngraph against its uncaptured step and the eager loop: one epoch from the same start, same draws\n"
    f"{'model':<14}{'step':<15}{'capture max |diff|':>20}{'vs eager, relative':>20}{'eager loss':>12}"
    f"{'graph loss':>12}"
)


def speed_line(name: str, mode: str, row: dict) -> str:
    """One row of bench_model's table (SPEED_HEADER): printed as each model is done."""
    augmented = f"{row['augmented']:>16.1f}" if row["augmented"] is not None else f"{'-':>16}"
    return (
        f"{name:<14}{mode:<15}{row['ceiling']:>14.1f}{augmented}{row['epoch']:>8.1f}{row['ratio']:>7.2f}"
        f"{row['epoch_s']:>9.2f}"
    )


def agreement_line(name: str, mode: str, row: dict) -> str:
    """One row of graph_agreement's table (AGREEMENT_HEADER)."""
    return (
        f"{name:<14}{mode:<15}{row['capture_diff']:>20.3g}{row['relative_diff']:>20.3g}"
        f"{row['eager_loss']:>12.5f}{row['graph_loss']:>12.5f}"
    )


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="model sections of train in params.yaml (default: train.models)")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda (default: train.device)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps for the ceiling")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before the ceiling")
    parser.add_argument("--warmup-epochs", type=int, default=2, help="untimed epochs before the timed one")
    parser.add_argument("--store", type=Path, default=Path("data/processed"), help="the image store (dvc.yaml's)")
    parser.add_argument("--split", type=Path, default=Path("data/split.csv"), help="the split (dvc.yaml's)")
    parser.add_argument("--synthetic", action="store_true", help="random images even if the store exists")
    parser.add_argument(
        "--modes", nargs="+", choices=list(MODES), help="training steps to compare (default: all the device can run)"
    )
    parser.add_argument("--skip-agreement", action="store_true", help="leave out graph_agreement's check")
    parser.add_argument(
        "--fit", nargs="*", choices=list(MODES), help="also time whole trainings with the recipe (in --modes or these)"
    )
    args = parser.parse_args()
    params = load_params()
    device = resolve_device(args.device or params.train.device)
    models = args.models or list(params.train.models)
    unknown = [m for m in models if m not in params.train.model_configs]
    if unknown:
        raise ConfigError(f"--models: {unknown[0]} has no section train.{unknown[0]} in params.yaml")
    modes = args.modes or (list(MODES) if device.type == "cuda" else ["eager"])
    fit_modes = (args.fit or modes) if args.fit is not None else []
    graph_modes = [mode for mode in dict.fromkeys([*modes, *fit_modes]) if MODES[mode][0]]
    if device.type != "cuda" and graph_modes:
        raise ConfigError(f"--modes, --fit: {', '.join(graph_modes)} need a CUDA device; on {device.type} only eager")
    if fit_modes and not (args.store.is_dir() and args.split.is_file()):
        raise ConfigError(f"--fit: trains on {args.store} and {args.split}; make them with `dvc repro split`")
    train, source = training_images(args.store, args.split, args.synthetic, params.preprocess.image_size)
    print(
        f"device {describe(device)}, torch {torch.__version__}, batch {params.train.batch_size}, "
        f"deterministic {params.train.deterministic}, amp {params.train.amp}, "
        f"{len(train.labels)} training images from {source}"
        + ("" if device.type == "cuda" else "; CUDA graphs need a CUDA device: eager only")
    )
    # each row as soon as it is measured: a run stopped part way keeps what it measured
    print(SPEED_HEADER, flush=True)
    for name in models:
        for mode in modes:
            row = bench_model(name, params, train, device, args.steps, args.warmup, args.warmup_epochs, mode)
            print(speed_line(name, mode, row), flush=True)
    print(SPEED_FOOTER)
    if any(MODES[mode][0] for mode in modes) and not args.skip_agreement:
        print(AGREEMENT_HEADER, flush=True)
        for name in models:
            for mode, row in graph_agreement(name, params, train, device, modes).items():
                print(agreement_line(name, mode, row), flush=True)
        if "graph+compile" in modes:
            batches = 30
            row = compiled_augmentation_agreement(params, train, device, batches)
            print(
                f"\ncompiled augmentation against op by op, {batches} batches of {params.train.batch_size}: "
                f"{row['moved']:,} of {row['values']:,} values differ by more than 1e-5; the others by at most "
                f"{row['others_max']:.2g}"
            )
    if fit_modes:
        subsets = load_subsets(args.store, args.split)
        print(f"\nwhole training with the recipe on {args.split} ({len(subsets['train'].labels)} train images)")
        print(f"{'model':<14}{'step':<15}{'seconds':>10}{'epochs':>8}{'best val loss':>15}", flush=True)
        seconds = dict.fromkeys(fit_modes, 0.0)
        for name in models:
            for mode in fit_modes:
                row = fit_model(name, params, subsets["train"], subsets["val"], device, mode)
                seconds[mode] += row["seconds"]
                print(
                    f"{name:<14}{mode:<15}{row['seconds']:>10.1f}{row['epochs']:>8}{row['val_loss']:>15.4f}", flush=True
                )
        for mode, total in seconds.items():
            print(f"all {len(models)} models, {mode}: {total:.1f} s")


if __name__ == "__main__":
    run_stage(main)
