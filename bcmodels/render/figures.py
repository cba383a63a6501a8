"""What the report and the cross-validation summary draw alike: a confusion matrix on an axis, and a PNG
written so that the same inputs give the same bytes."""

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


def save_figure(fig: Figure, path: Path) -> None:
    """PNG at a fixed dpi without the version stamp, so the same inputs give the same bytes."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
