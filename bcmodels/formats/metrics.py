"""The metrics of one evaluated run, in two files written together by evaluation:

- the headline (metrics/headline/<model>.json): a few numbers per model, so that `dvc metrics show` is one
  narrow row per model (the repeated study and cross-validation summaries use the same keys);
- the detail (metrics/detail/<model>.json): everything, per class and with intervals
  (`dvc metrics show metrics/detail/<model>.json`), read by the report and the summaries.
"""

from __future__ import annotations

from pathlib import Path

from bcmodels.errors import DataError
from bcmodels.io.files import read_json, write_json

HEADLINE_KEYS = ("accuracy", "macro_f1", "weighted_f1", "macro_auc", "ece", "images", "runs")
REQUIRED_DETAIL = ("accuracy", "accuracy_ci95", "macro", "weighted", "roc_auc", "calibration", "n_test")


def headline(detail: dict, runs: int = 1) -> dict:
    """The headline numbers of a detail dict (macro_auc is None where a class is absent from the test set)."""
    return {
        "accuracy": detail["accuracy"],
        "macro_f1": detail["macro"]["f1"],
        "weighted_f1": detail["weighted"]["f1"],
        "macro_auc": detail["roc_auc"].get("macro"),
        "ece": detail["calibration"]["ece"],
        "images": detail["n_test"],
        "runs": runs,
    }


def write_metrics(detail_path: Path, headline_path: Path | None, detail: dict) -> None:
    write_json(detail_path, detail)
    if headline_path is not None:
        write_json(headline_path, headline(detail))


def read_detail(path: Path, made_by: str) -> dict:
    detail = read_json(path, made_by)
    missing = [k for k in REQUIRED_DETAIL if k not in detail] if isinstance(detail, dict) else REQUIRED_DETAIL
    if missing:
        raise DataError(f"{path}: no {missing[0]!r}; it was written by an older evaluate stage. Rerun `{made_by}`")
    return detail
