"""Stage evaluate: the test set of a split, once, with a trained checkpoint; predictions and metrics."""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.evaluation.evaluate import EvaluationFiles, evaluate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--made-by", required=True, help="the command that makes the checkpoint (for errors)")
    for name in ("store", "split", "checkpoint", "predictions", "detail"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--headline", type=Path, help="the main run's headline metrics file")
    args = parser.parse_args()
    params = load_params()
    files = EvaluationFiles(
        args.store, args.split, args.checkpoint, args.predictions, args.detail, args.headline, args.made_by
    )
    m = evaluate_model(files, params.preprocess, params.train, params.evaluate)
    ci = m["accuracy_ci95"]
    print(
        f"{args.checkpoint}: test accuracy {m['accuracy']:.3f} (95% CI {ci['low']:.3f}-{ci['high']:.3f}), "
        f"weighted F1 {m['weighted']['f1']:.3f}, ECE {m['calibration']['ece']:.3f} on {m['n_test']} images"
    )


if __name__ == "__main__":
    run_stage(main)
