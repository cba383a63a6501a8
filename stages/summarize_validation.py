"""Stage summarize_validation (crossval/dvc.yaml): every model's validation predictions pooled over the folds,
with intervals and paired differences, to choose between models and recipes on validation data only."""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.evaluation.crossval_report import summarize_validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--predictions", type=Path, required=True, help="folder of fold<k>-seed<s>/<model>.csv")
    parser.add_argument("--out", type=Path, required=True, help="the summary's JSON file")
    args = parser.parse_args()
    params = load_params()
    cv, ev = params.crossval, params.evaluate
    summary = summarize_validation(
        cv.models, cv.folds, cv.seeds, args.predictions, args.out,
        resamples=ev.bootstrap_resamples, seed=ev.bootstrap_seed, bins=ev.calibration_bins,
    )  # fmt: skip
    for model, m in summary["models"].items():
        print(
            f"{model}: validation accuracy {m['accuracy']['value']:.3f}, macro F1 {m['macro_f1']['value']:.3f}, "
            f"macro ROC-AUC {m['macro_auc']['value']:.3f} on {summary['images']} images"
        )


if __name__ == "__main__":
    run_stage(main)
