"""Stage split: every image of the manifest to train, val, test (or excluded), written to --out.

--fold K: the grouped split with test fold K (cross-validation); --seed S: a repeat run's split (grouped:
test fold S mod split.folds; the study split is the same for every seed).
"""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.data.partition import write_split_file
from bcmodels.errors import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=Path, required=True, help="the audit's groups.csv (used by grouped)")
    parser.add_argument("--out", type=Path, required=True, help="the split CSV to write")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--fold", type=int, help="grouped split with this test fold")
    choice.add_argument("--seed", type=int, help="the split of the repeat run with this seed")
    args = parser.parse_args()
    print(write_split_file(load_params(), args.groups, args.out, fold=args.fold, seed=args.seed))


if __name__ == "__main__":
    run_stage(main)
