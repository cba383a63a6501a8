"""Where each stage reads and writes, relative to the project root (dvc.yaml names the same paths)."""

from pathlib import Path

RAW_DIR = Path("data/raw/Dataset_BUSI_with_GT")
PROCESSED_DIR = Path("data/processed")
SPLIT_CSV = Path("data/split.csv")
CHECKPOINT_DIR = Path("data/checkpoints")
HISTORY_DIR = Path("plots/history")
PREDICTIONS_DIR = Path("plots/predictions")
METRICS_DIR = Path("metrics")


def checkpoint_path(model: str) -> Path:
    return CHECKPOINT_DIR / f"{model}.pt"


def history_path(model: str) -> Path:
    return HISTORY_DIR / f"{model}.csv"


def predictions_path(model: str) -> Path:
    return PREDICTIONS_DIR / f"{model}.csv"


def metrics_path(model: str) -> Path:
    return METRICS_DIR / f"{model}.json"
