"""Stage train@<model>: fit one model with the study's recipe; writes its checkpoint and per-epoch history.

`--seed S` is a repeat run (repeats/dvc.yaml): training seed S, that run's split and output files.
"""

import argparse
import dataclasses

import torch

from bcmodels.cli import run_stage
from bcmodels.config import CLASSES, load_params, to_dict
from bcmodels.errors import ConfigError, WeightsError
from bcmodels.data import load_subsets
from bcmodels.fileio import atomic_path, write_csv
from bcmodels.models import build_model, count_parameters
from bcmodels.paths import PROCESSED_DIR, run_paths
from bcmodels.runtime import resolve_device, seed_everything
from bcmodels.training import HISTORY_COLUMNS, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a model section of train in params.yaml")
    parser.add_argument("--seed", type=int, help="a repeat run: this training seed instead of train.seed")
    args = parser.parse_args()
    name = args.model
    params = load_params()
    config = params.train if args.seed is None else dataclasses.replace(params.train, seed=args.seed)
    paths = run_paths(name, args.seed)
    if name not in config.model:
        raise ConfigError(f"train.{name}: no such model section. Sections: {', '.join(sorted(config.model))}")
    model_config = config.model[name]
    device = resolve_device(config.device)
    seed_everything(config.seed, config.deterministic)
    subsets = load_subsets(PROCESSED_DIR, paths.split)
    image_size = subsets["train"].images.shape[-1]
    try:
        model = build_model(model_config.arch, num_classes=len(CLASSES), image_size=image_size,
                            weights=model_config.weights)  # fmt: skip
    except WeightsError as err:
        raise WeightsError(f"train.{name}.weights: {err}") from err
    print(f"{name}: {model_config.arch}, {count_parameters(model):,} parameters, weights {model_config.weights}, "
          f"{len(subsets['train'].labels)} train / {len(subsets['val'].labels)} val images, seed {config.seed}, on {device}")  # fmt: skip
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
    with atomic_path(paths.checkpoint) as tmp:
        torch.save(checkpoint, tmp)
    write_csv(
        paths.history,
        HISTORY_COLUMNS,
        ([f"{v:.6g}" if isinstance(v, float) else v for v in (row[c] for c in HISTORY_COLUMNS)] for row in result.history),
    )
    print(f"{name}: best epoch {result.best_epoch} of {result.epochs_run}; saved {paths.checkpoint}")


if __name__ == "__main__":
    run_stage(main)
