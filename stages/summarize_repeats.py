"""Stage summarize (repeats/dvc.yaml): every model of repeat.models over its runs, the main run (train.seed)
and repeat.seeds: mean, spread and paired comparisons by seed."""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.evaluation.repeats import summarize_repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, required=True, help="folder of seed<s>/<model>.json detail metrics")
    parser.add_argument("--out", type=Path, required=True, help="folder for summary.json, summary.md, summary/")
    args = parser.parse_args()
    params = load_params()
    seeds = [params.train.seed, *params.repeat.seeds]
    summarize_repeats(
        params.repeat.models, seeds, args.runs, args.out / "summary.json", args.out / "summary.md", args.out / "summary"
    )
    print(f"{len(seeds)} runs of {', '.join(params.repeat.models)} summarised in {args.out}")


if __name__ == "__main__":
    run_stage(main)
