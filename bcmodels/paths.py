"""Where each stage reads and writes, relative to the project root (dvc.yaml and repeats/dvc.yaml name the same paths)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RAW_DIR = Path("data/raw/Dataset_BUSI_with_GT")
PROCESSED_DIR = Path("data/processed")
AUDIT_DIR = Path("data/audit")  # the audit's group table and summary
GROUPS_CSV = AUDIT_DIR / "groups.csv"
AUDIT_SUMMARY = AUDIT_DIR / "audit.json"
SPLIT_CSV = Path("data/split.csv")
CHECKPOINT_DIR = Path("data/checkpoints")
REPEATS_DIR = Path("data/repeats")  # one folder per repeat seed: its split, checkpoints, histories, predictions
HISTORY_DIR = Path("plots/history")
PREDICTIONS_DIR = Path("plots/predictions")
CONTACT_SHEET = Path("plots/audit/label_conflicts.png")
REPORT_DIR = Path("plots/report")  # report.md and the PNG figures of the main run
METRICS_DIR = Path("metrics")  # the main run's metrics only (the report depends on the whole folder)
DATA_METRICS = METRICS_DIR / "data.json"
# The repeated study (repeats/dvc.yaml) keeps its results apart, so that nothing of the plain
# `dvc repro` depends on them.
REPEAT_METRICS_DIR = Path("repeats/metrics")
# The summary reads each model's main run from a copy here (stage main_run@<model> of repeats/dvc.yaml),
# so that it depends on the main runs of repeat.models only, not on every model of train.models.
REPEAT_MAIN_RUN_DIR = REPEAT_METRICS_DIR / "main"
REPEAT_SUMMARY = Path("repeats/summary.json")
REPEAT_REPORT = Path("repeats/summary.md")


@dataclass(frozen=True)
class RunPaths:
    """Every file of one training run of one model."""

    split: Path
    checkpoint: Path
    history: Path
    predictions: Path
    metrics: Path


def run_paths(model: str, seed: int | None = None) -> RunPaths:
    """The main run of `dvc repro` (seed None), or the run with this seed of `dvc repro repeats/dvc.yaml`."""
    if seed is None:
        return RunPaths(
            split=SPLIT_CSV,
            checkpoint=CHECKPOINT_DIR / f"{model}.pt",
            history=HISTORY_DIR / f"{model}.csv",
            predictions=PREDICTIONS_DIR / f"{model}.csv",
            metrics=METRICS_DIR / f"{model}.json",
        )
    run = REPEATS_DIR / f"seed{seed}"
    return RunPaths(
        split=run / "split.csv",
        checkpoint=run / f"{model}.pt",
        history=run / f"{model}-history.csv",
        predictions=run / f"{model}-predictions.csv",
        metrics=REPEAT_METRICS_DIR / f"seed{seed}" / f"{model}.json",
    )
