"""Stage leakage: the audit's counts, how many validation and test images have a near-copy in train, and how many
images carry marks."""

import argparse
from pathlib import Path

from bcmodels.audit.leakage import write_data_metrics
from bcmodels.config.load import load_params
from bcmodels.errors import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--audit", type=Path, required=True, help="the audit's folder (groups.csv, audit.json, overlays.csv)"
    )
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the metrics JSON to write")
    args = parser.parse_args()
    metrics = write_data_metrics(args.audit, args.split, args.out, load_params().split)
    test, leaked = metrics["split"]["test"], metrics["test_near_copy_in_train_or_val"]
    print(
        f"{args.out}: {leaked['total']} of {test} test images have a near-copy in train or val "
        f"({', '.join(f'{c} {n}' for c, n in leaked.items() if c != 'total')}); "
        f"{metrics['split']['excluded']} images excluded; benchmark folds' test images with one: "
        + ", ".join(str(f["test_near_copy_in_train_or_val"]["total"]) for f in metrics["benchmark_folds"].values())
    )


if __name__ == "__main__":
    run_stage(main)
