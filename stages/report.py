"""Stage report: --out/report.md (our numbers beside the study's Table I) and four figures, from the main
run's metrics, histories and predictions; models without results are listed as not run."""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.evaluation.report import RunFiles, available_results, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, required=True, help="folder of the detail metrics, <model>.json")
    parser.add_argument("--history", type=Path, required=True, help="folder of the histories, <model>.csv")
    parser.add_argument("--predictions", type=Path, required=True, help="folder of the predictions, <model>.csv")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    results, missing = available_results(
        params.train.models,
        lambda m: RunFiles(args.metrics / f"{m}.json", args.history / f"{m}.csv", args.predictions / f"{m}.csv"),
    )
    write_report(
        results,
        missing,
        args.out,
        resamples=params.evaluate.bootstrap_resamples,
        bootstrap_seed=params.evaluate.bootstrap_seed,
    )
    print(f"{args.out}: report of {', '.join(r.name for r in results)}" + "".join(f"; {m} not run" for m in missing))


if __name__ == "__main__":
    run_stage(main)
