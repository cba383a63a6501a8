"""plots/predictions/<model>.csv: every test image with its true class, predicted class and probabilities.
Written by evaluation; read by the report and summaries, drawn as a confusion matrix by `dvc plots`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bcmodels.errors import DataError
from bcmodels.io.files import read_csv, write_csv

COLUMNS = ("file", "actual", "predicted")  # then p_<class> for every class, in class order


@dataclass(frozen=True)
class Predictions:
    files: list[str]
    classes: tuple[str, ...]
    labels: np.ndarray  # (N,) index into classes of each image's true class
    probs: np.ndarray  # (N, K) predicted probabilities


def write_predictions(path: Path, predictions: Predictions) -> None:
    classes = predictions.classes
    rows = (
        [file, classes[label], classes[int(p.argmax())], *(f"{x:.6f}" for x in p)]
        for file, label, p in zip(predictions.files, predictions.labels.tolist(), predictions.probs)
    )
    write_csv(path, [*COLUMNS, *(f"p_{c}" for c in classes)], rows)


def read_predictions(path: Path, made_by: str) -> Predictions:
    rows = read_csv(path, COLUMNS, made_by)
    classes = tuple(c.removeprefix("p_") for c in (rows[0] if rows else {}) if c.startswith("p_"))
    try:
        labels = np.array([classes.index(r["actual"]) for r in rows], dtype=np.int64)
        probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows], dtype=np.float64)
    except ValueError as err:
        raise DataError(f"{path}: not a predictions file of this project ({err}); rerun `{made_by}`") from None
    return Predictions([r["file"] for r in rows], classes, labels, probs.reshape(len(rows), len(classes)))
