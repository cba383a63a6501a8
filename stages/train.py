"""Stage train@<model>: fit one model with the study's recipe; writes its checkpoint and per-epoch history."""

import argparse

import torch

from bcmodels.cli import run_stage
from bcmodels.config import CLASSES, load_params, to_dict
from bcmodels.errors import ConfigError, WeightsError
from bcmodels.data import load_subsets
from bcmodels.fileio import atomic_path, write_csv
from bcmodels.models import build_model, count_parameters
from bcmodels.paths import PROCESSED_DIR, SPLIT_CSV, checkpoint_path, history_path
from bcmodels.runtime import resolve_device, seed_everything
from bcmodels.training import HISTORY_COLUMNS, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a model section of train in params.yaml")
    name = parser.parse_args().model
    params = load_params()
    config = params.train
    if name not in config.model:
        raise ConfigError(f"train.{name}: no such model section. Sections: {', '.join(sorted(config.model))}")
    model_config = config.model[name]
    device = resolve_device(config.device)
    seed_everything(config.seed, config.deterministic)
    subsets = load_subsets(PROCESSED_DIR, SPLIT_CSV)
    image_size = subsets["train"].images.shape[-1]
    try:
        model = build_model(model_config.arch, num_classes=len(CLASSES), image_size=image_size,
                            weights=model_config.weights)  # fmt: skip
    except WeightsError as err:
        raise WeightsError(f"train.{name}.weights: {err}") from err
    print(f"{name}: {model_config.arch}, {count_parameters(model):,} parameters, weights {model_config.weights}, "
          f"{len(subsets['train'].labels)} train / {len(subsets['val'].labels)} val images on {device}")  # fmt: skip
    result = fit(model, subsets["train"], subsets["val"], name=name, model_config=model_config,
                 config=config, device=device)  # fmt: skip
    recipe = {k: v for k, v in to_dict(config).items() if k not in ("models", "model")}
    checkpoint = {
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "name": name,
        "model_config": to_dict(model_config),
        "train_config": recipe,
        "classes": list(CLASSES),
        "image_size": image_size,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
    }
    with atomic_path(checkpoint_path(name)) as tmp:
        torch.save(checkpoint, tmp)
    write_csv(
        history_path(name),
        HISTORY_COLUMNS,
        ([f"{v:.6g}" if isinstance(v, float) else v for v in (row[c] for c in HISTORY_COLUMNS)] for row in result.history),
    )
    print(f"{name}: best epoch {result.best_epoch} of {result.epochs_run}; saved {checkpoint_path(name)}")


if __name__ == "__main__":
    run_stage(main)
