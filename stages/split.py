"""Stage split: data/split.csv (file, class, split) for every image of the manifest.

`--seed S --out PATH` is the repeat pipeline's form: the grouped split then tests fold S mod split.folds
(each seed another fold of the same partition); the study split is the same for every seed.
"""

import argparse
import dataclasses
from collections import Counter
from pathlib import Path

from bcmodels.audit import read_groups
from bcmodels.cli import run_stage
from bcmodels.config import load_params
from bcmodels.download import read_manifest
from bcmodels.paths import GROUPS_CSV, SPLIT_CSV
from bcmodels.split import EXCLUDED, SPLITS, make_split, write_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, help="repeat seed: the grouped split tests fold seed mod split.folds")
    parser.add_argument("--out", type=Path, default=SPLIT_CSV, help=f"where to write the split (default {SPLIT_CSV})")
    args = parser.parse_args()
    params = load_params()
    config = params.split
    if args.seed is not None:
        config = dataclasses.replace(config, fold=args.seed % config.folds)
    manifest = read_manifest(params.download.manifest)
    files, labels = [e.file for e in manifest], [e.label for e in manifest]
    groups = None
    if config.strategy == "grouped":
        groups = {f: row.group for f, row in read_groups(GROUPS_CSV).items()}
    assignment = make_split(files, labels, config, groups)
    write_split(args.out, files, labels, assignment)
    counts = Counter(assignment.values())
    fold = f" (fold {config.fold} of {config.folds})" if config.strategy == "grouped" else ""
    print(f"{args.out}: {config.strategy}{fold}: " + " / ".join(f"{s} {counts[s]}" for s in SPLITS)
          + (f"; {counts[EXCLUDED]} images of label-conflict groups excluded" if counts[EXCLUDED] else ""))  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
