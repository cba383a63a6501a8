"""Stage leakage: metrics/data.json, the audit's counts and the val/test images with a near-copy on another side."""

import json

from bcmodels.audit import data_metrics, read_groups
from bcmodels.cli import run_stage
from bcmodels.errors import DataError
from bcmodels.fileio import write_json
from bcmodels.paths import AUDIT_SUMMARY, DATA_METRICS, GROUPS_CSV, SPLIT_CSV
from bcmodels.split import read_split


def main() -> None:
    for path, stage in ((AUDIT_SUMMARY, "audit"), (SPLIT_CSV, "split")):
        if not path.is_file():
            raise DataError(f"{path}: not found. Run `dvc repro {stage}` first.")
    summary = json.loads(AUDIT_SUMMARY.read_text())
    metrics = data_metrics(summary, read_groups(GROUPS_CSV), read_split(SPLIT_CSV))
    write_json(DATA_METRICS, metrics)
    test, leaked = metrics["split"]["test"], metrics["test_near_copy_in_train_or_val"]
    print(f"{DATA_METRICS}: {leaked['total']} of {test} test images have a near-copy in train or val "
          f"({', '.join(f'{c} {n}' for c, n in leaked.items() if c != 'total')}); "
          f"{metrics['split']['excluded']} images excluded")  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
