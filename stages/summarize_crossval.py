"""Stage summarize (crossval/dvc.yaml): every model's out-of-fold predictions pooled over the folds, with
bootstrap intervals, paired differences, the spread over folds, a report and figures; the runs on the mark-free
images (crossval.mark_free_models) as models of their own, <model>_mark_free."""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.evaluation.crossval import summary_models
from bcmodels.evaluation.crossval_report import summarize_crossval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--predictions", type=Path, required=True, help="folder of fold<k>-seed<s>/<model>.csv")
    parser.add_argument("--out", type=Path, required=True, help="folder for summary.json, summary/, report.md")
    args = parser.parse_args()
    params = load_params()
    cv, ev = params.crossval, params.evaluate
    models = summary_models(cv.models, cv.mark_free_models)
    summary = summarize_crossval(
        models,
        cv.folds,
        cv.seeds,
        args.predictions,
        args.out,
        resamples=ev.bootstrap_resamples,
        seed=ev.bootstrap_seed,
        bins=ev.calibration_bins,
    )
    for model in models:
        m = summary["models"][model]
        print(
            f"{model}: accuracy {m['accuracy']['value']:.3f}, macro F1 {m['macro_f1']['value']:.3f} "
            f"on {summary['images']} images"
        )


if __name__ == "__main__":
    run_stage(main)
