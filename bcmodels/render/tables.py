"""Markdown tables and numbers as the reports print them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

METRIC_LABELS = {
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "weighted_f1": "weighted F1",
    "macro_auc": "macro ROC-AUC",
    "ece": "ECE",
}


def metric_label(name: str) -> str:
    """accuracy, macro F1, ..., recall normal: how a metric key reads in a table."""
    return METRIC_LABELS.get(name, name.replace("_", " "))


def number(
    value: float | None, interval: Mapping[str, float] | None = None, digits: int = 2, sign: bool = False
) -> str:
    """0.71 [0.62, 0.79]; with sign, +0.04 [-0.01, +0.09]; "-" for a value that does not exist."""
    if value is None:
        return "-"
    fmt = f"{'+' if sign else ''}.{digits}f"
    text = f"{value:{fmt}}"
    return f"{text} [{interval['low']:{fmt}}, {interval['high']:{fmt}}]" if interval else text


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
