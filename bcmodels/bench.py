"""Training throughput: `python -m bcmodels.bench [--models ...] [--device cpu|cuda]`.

Per model, at the configured batch size (train.batch_size) and with the recipe's settings:
- step ceiling: images/s of the bare training step (forward, backward, the recipe's optimiser) on one batch
  that is already on the device, no augmentation: the most the loop could reach;
- epoch: images/s of one whole epoch of the real training loop (bcmodels.training.train_one_epoch:
  shuffling, on-device augmentation, standardisation, the same step), after --warmup-epochs untimed ones
  (on CUDA the first epoch also pays for cuDNN's algorithm search and first launches, once per shape);
- their ratio: how much of the ceiling the real loop keeps.
Models are built without pretrained weights (the speed does not depend on the weight values, and nothing
is downloaded). Images: the training set of --store and --split when they exist, else random images of the
same count and size (--synthetic forces that). A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bcmodels.cli import run_stage
from bcmodels.config import CLASSES, Params, load_params
from bcmodels.data import Subset, load_subsets
from bcmodels.errors import ConfigError
from bcmodels.inference import autocast, standardize, to_unit_float
from bcmodels.models import build_model
from bcmodels.runtime import resolve_device, seed_everything
from bcmodels.training import EpochSetup, epoch_setup, make_optimizer, train_one_epoch

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
    model, optimizer, batch: torch.Tensor, labels: torch.Tensor, setup: EpochSetup, steps: int, warmup: int
) -> float:
    """Images/s of the bare training step on one batch already on the device."""
    device = batch.device
    images = standardize(to_unit_float(batch)).contiguous(memory_format=setup.memory_format)
    model.train()

    def step() -> None:
        with autocast(device, setup.amp_dtype):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * len(batch) / (time.perf_counter() - start)


def bench_model(
    name: str, params: Params, train: Subset, device: torch.device, steps: int, warmup: int, warmup_epochs: int
) -> dict:
    config = params.train
    model_config = config.model_configs[name]
    seed_everything(config.seed, config.deterministic)
    model = build_model(model_config.arch, num_classes=len(CLASSES), image_size=train.images.shape[-1])
    setup = epoch_setup(config, model_config, train.labels, device)
    model.to(device, memory_format=setup.memory_format)
    optimizer = make_optimizer(model, model_config)
    on_device = train.to(device)
    batch = on_device.images[: config.batch_size]
    ceiling = step_ceiling(model, optimizer, batch, on_device.labels[: config.batch_size], setup, steps, warmup)
    generator = torch.Generator().manual_seed(0)
    for _ in range(warmup_epochs):
        train_one_epoch(model, on_device, optimizer, setup, generator=generator, desc=f"{name} warm-up epoch")
    _sync(device)
    start = time.perf_counter()
    train_one_epoch(model, on_device, optimizer, setup, generator=generator, desc=f"{name} epoch")
    _sync(device)
    epoch_seconds = time.perf_counter() - start
    epoch_rate = len(train.labels) / epoch_seconds
    return {
        "model": name,
        "ceiling": ceiling,
        "epoch": epoch_rate,
        "ratio": epoch_rate / ceiling,
        "epoch_s": epoch_seconds,
    }


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
    parser.add_argument("--warmup-epochs", type=int, default=1, help="untimed epochs before the timed one")
    parser.add_argument("--store", type=Path, default=Path("data/processed"), help="the image store (dvc.yaml's)")
    parser.add_argument("--split", type=Path, default=Path("data/split.csv"), help="the split (dvc.yaml's)")
    parser.add_argument("--synthetic", action="store_true", help="random images even if the store exists")
    args = parser.parse_args()
    params = load_params()
    device = resolve_device(args.device or params.train.device)
    models = args.models or list(params.train.models)
    unknown = [m for m in models if m not in params.train.model_configs]
    if unknown:
        raise ConfigError(f"--models: {unknown[0]} has no section train.{unknown[0]} in params.yaml")
    train, source = training_images(args.store, args.split, args.synthetic, params.preprocess.image_size)
    print(
        f"device {describe(device)}, torch {torch.__version__}, batch {params.train.batch_size}, "
        f"deterministic {params.train.deterministic}, amp {params.train.amp}, "
        f"{len(train.labels)} training images from {source}"
    )
    print(f"{'model':<14}{'step ceiling img/s':>20}{'epoch img/s':>14}{'ratio':>8}{'epoch s':>10}")
    for name in models:
        row = bench_model(name, params, train, device, args.steps, args.warmup, args.warmup_epochs)
        print(
            f"{name:<14}{row['ceiling']:>20.1f}{row['epoch']:>14.1f}{row['ratio']:>8.2f}{row['epoch_s']:>10.1f}",
            flush=True,
        )


if __name__ == "__main__":
    run_stage(main)
