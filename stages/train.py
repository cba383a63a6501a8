"""Stage train: fit one model with the study's recipe; writes its checkpoint and per-epoch history."""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.training.train import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a model section of train in params.yaml")
    parser.add_argument("--seed", type=int, help="training seed (default: train.seed)")
    parser.add_argument("--store", type=Path, required=True, help="the image store folder")
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True, help="where to write the trained model")
    parser.add_argument("--history", type=Path, required=True, help="where to write the per-epoch CSV")
    args = parser.parse_args()
    result = train_model(
        load_params(),
        args.model,
        seed=args.seed,
        store=args.store,
        split=args.split,
        checkpoint=args.checkpoint,
        history=args.history,
    )
    print(f"{args.model}: best epoch {result.best_epoch} of {result.epochs_run}; saved {args.checkpoint}")


if __name__ == "__main__":
    run_stage(main)
