"""What the train stage runs: the split's images, the model, `fit`, then the checkpoint and history on disk."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bcmodels.config.load import to_dict
from bcmodels.config.schema import CLASSES, Params
from bcmodels.data.subsets import load_subsets
from bcmodels.errors import ConfigError, DataError, WeightsError
from bcmodels.formats.checkpoint import Checkpoint, save_checkpoint
from bcmodels.formats.history import write_history
from bcmodels.io.progress import Phases, say
from bcmodels.models.inference import IMAGENET_MEAN, IMAGENET_STD
from bcmodels.models.registry import build_model, count_parameters
from bcmodels.runtime import resolve_device, seed_everything
from bcmodels.training.fit import FitResult, fit


def train_model(
    params: Params, name: str, *, store: Path, split: Path, checkpoint: Path, history: Path, seed: int | None = None
) -> FitResult:
    """Train model section `name` on the split's train set (seed: train.seed unless given); write both files."""
    if name not in params.train.model_configs:
        raise ConfigError(
            f"train.{name}: no such model section. Sections: {', '.join(sorted(params.train.model_configs))}"
        )
    phases = Phases(f"train {name}")
    config = params.train if seed is None else dataclasses.replace(params.train, seed=seed)
    model_config = config.model_configs[name]
    device = resolve_device(config.device)
    seed_everything(config.seed, config.deterministic)
    with phases("data"):
        subsets = load_subsets(store, split)
    image_size = subsets["train"].images.shape[-1]
    if image_size != params.preprocess.image_size:
        raise DataError(
            f"{store}: images are {image_size} px but preprocess.image_size is "
            f"{params.preprocess.image_size}; run `dvc repro preprocess`"
        )
    try:
        with phases("model"):
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
    with phases("epochs"):
        result = fit(
            model, subsets["train"], subsets["val"], name=name, model_config=model_config, config=config, device=device
        )
    pre = params.preprocess
    with phases("writing"):
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
    seconds = [row["seconds"] for row in result.history]
    later = f", then {sum(seconds[1:]) / (len(seconds) - 1):.1f} s each" if len(seconds) > 1 else ""
    say(phases.line(epochs=f"{len(seconds)}: the first {seconds[0]:.1f} s{later}"))
    return result
