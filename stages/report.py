"""Stage report: plots/report/report.md (our numbers beside the study's Table I) and four PNG figures,
from the main run's metrics, histories and predictions only (no checkpoints)."""

import argparse

from bcmodels.cli import run_stage
from bcmodels.config import load_params
from bcmodels.paths import REPORT_DIR
from bcmodels.report import load_results, select_models, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", metavar="MODEL", help="models to report (default: train.models)")
    args = parser.parse_args()
    params = load_params()
    results = [load_results(model) for model in select_models(args.models, params.train.models, params.train)]
    written = write_report(results, REPORT_DIR, resamples=params.evaluate.bootstrap_resamples,
                           bootstrap_seed=params.evaluate.bootstrap_seed)  # fmt: skip
    print(f"report of {', '.join(r.name for r in results)}: {', '.join(map(str, written))}")


if __name__ == "__main__":
    run_stage(main)
