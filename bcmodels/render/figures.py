"""What the report and the cross-validation summary draw alike: a confusion matrix and a reliability diagram on
an axis, and a PNG written so that the same inputs give the same bytes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bcmodels.io.files import atomic_path

DPI = 100


def draw_confusion(ax: Axes, matrix: np.ndarray, classes: Sequence[str]) -> None:
    """Rows actual, columns predicted, the count written in each cell."""
    ax.imshow(matrix, cmap="Blues", vmin=0)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")


def draw_reliability(ax: Axes, edges: np.ndarray, count: np.ndarray, accuracy: np.ndarray, title: str) -> None:
    """Accuracy per top-label confidence bin (edges (B + 1,), images and accuracy per bin, NaN where empty)
    against the diagonal of perfect calibration; each bar is labelled with the number of images in its bin."""
    width = np.diff(edges)
    accuracy = np.nan_to_num(accuracy)
    ax.bar(
        edges[:-1],
        accuracy,
        width=width,
        align="edge",
        edgecolor="black",
        label="accuracy in the bin (n = images)",
    )
    for left, w, n, height in zip(edges[:-1], width, count, accuracy):
        if n:
            ax.text(left + w / 2, height + 0.01, f"n={n}", ha="center", va="bottom", fontsize="xx-small")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1.08), xlabel="top-label confidence", ylabel="accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")


def save_figure(fig: Figure, path: Path) -> None:
    """PNG at a fixed dpi without the version stamp, so the same inputs give the same bytes."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
