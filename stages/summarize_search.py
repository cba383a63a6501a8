"""Stage summarize_search (crossval/dvc.yaml): every recipe tried on the validation folds (crossval/search/, filled
by `make search`), against the model it changes as params.yaml trains it, on the same images."""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params, read_yaml
from bcmodels.errors import run_stage
from bcmodels.evaluation.search import summarize_search, write_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--validation", type=Path, required=True, help="the validate stages' predictions")
    parser.add_argument("--search", type=Path, required=True, help="one folder per recipe")
    parser.add_argument("--out", type=Path, required=True, help="the comparison's JSON file")
    parser.add_argument("--table", type=Path, required=True, help="the comparison as a Markdown table")
    args = parser.parse_args()
    params = load_params()
    cv, ev = params.crossval, params.evaluate
    result = summarize_search(
        args.validation, args.search, cv.folds, cv.seeds, read_yaml(Path("params.yaml")),
        resamples=ev.bootstrap_resamples, seed=ev.bootstrap_seed, bins=ev.calibration_bins,
    )  # fmt: skip
    write_search(result, args.out, args.table)
    if not result["recipes"]:
        print(f"no recipe in {args.search} yet: `make search RECIPE=<name>` (docs/search.md)")
    for model, own in result["models"].items():
        print(f"{model} as params.yaml trains it: validation accuracy {own['accuracy']['value']:.3f}")
    for name, r in result["recipes"].items():
        d = r["minus_params_yaml"]["accuracy"]
        print(
            f"{name} (seeds {', '.join(map(str, r['seeds']))}): validation accuracy {r['accuracy']['value']:.3f}, "
            f"{d['value']:+.3f} [{d['ci95']['low']:+.3f}, {d['ci95']['high']:+.3f}] against it"
        )


if __name__ == "__main__":
    run_stage(main)
