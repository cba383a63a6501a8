"""plots/history/<model>.csv: one row per training epoch (losses, accuracies, learning rate, seconds).
Written by training; read by the report and drawn by `dvc plots`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bcmodels.io.files import read_csv, write_csv

COLUMNS = ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds")


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    def cell(value: float | int) -> str:
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    write_csv(path, COLUMNS, ([cell(row[c]) for c in COLUMNS] for row in rows))


def read_history(path: Path, made_by: str) -> dict[str, np.ndarray]:
    """Column -> values per epoch."""
    rows = read_csv(path, COLUMNS, made_by)
    return {c: np.array([float(row[c]) for row in rows]) for c in COLUMNS}
