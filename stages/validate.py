"""Stage validate (crossval/dvc.yaml): one benchmark checkpoint's probabilities for its fold's validation images,
for choosing between models and recipes without the test folds."""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.evaluation.validation import validation_predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", type=Path, required=True, help="the image store (data/processed)")
    parser.add_argument("--split", type=Path, required=True, help="the fold's split.csv")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the fold's checkpoint of one model and seed")
    parser.add_argument("--predictions", type=Path, required=True, help="the output CSV")
    args = parser.parse_args()
    p = validation_predictions(args.store, args.split, args.checkpoint, args.predictions, load_params())
    correct = int((p.probs.argmax(axis=1) == p.labels).sum())
    print(f"{args.checkpoint}: {correct} of {len(p.files)} validation images right ({correct / len(p.files):.3f})")


if __name__ == "__main__":
    run_stage(main)
