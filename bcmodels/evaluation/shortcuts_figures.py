"""The shortcuts stage's figures: crossval/figures/shortcuts.png (per model where its Grad-CAM maps lie and what
the two edits change, with 95% intervals) and crossval/figures/lowest_lesion_share.png (the images whose maps lie
least in the lesion, the map over the image and the lesion's outline)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from bcmodels.evaluation.shortcuts_summary import Images, Looks
from bcmodels.models.gradcam import overlay
from bcmodels.render.contact_sheet import contact_sheet
from bcmodels.render.figures import DPI, save_figure
from bcmodels.render.outline import draw_outline


def _points(ax: Axes, entries: Sequence[dict], y: np.ndarray, **style) -> None:
    """Estimates with their 95% intervals at heights y; undefined entries left out."""
    shown = [i for i, e in enumerate(entries) if e["value"] is not None and e["ci95"] is not None]
    if not shown:
        return
    values = np.array([entries[i]["value"] for i in shown])
    low = np.array([entries[i]["ci95"]["low"] for i in shown])
    high = np.array([entries[i]["ci95"]["high"] for i in shown])
    ax.errorbar(values, y[shown], xerr=[values - low, high - values], fmt=style.pop("fmt", "o"), capsize=3, **style)


def shortcuts_figure(summary: dict, models: Sequence[str], path: Path) -> None:
    """Four panels, one row per model: the Grad-CAM share in the lesion and in the grown lesion beside the area a
    uniform map would give; accuracy on the marked images before and after the marks are removed; how often
    lesion images are still called benign or malignant without their lesion, and normal images before and
    with a sham patch."""
    fig = Figure(figsize=(15, 0.55 * len(models) + 2.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 4, sharey=True)
    y = np.arange(len(models))[::-1].astype(float)
    area = "area (a uniform map)"
    panels = [
        ("Grad-CAM share in the lesion", [("map", "cam_in_lesion"), (area, "lesion_area")]),
        (f"... in the lesion grown {summary['grown_px']} px",
         [("map", "cam_in_lesion_grown"), (area, "lesion_area_grown")]),
        ("Accuracy on images with marks",
         [("as they are", "marks_removed.accuracy_before"), ("marks removed", "marks_removed.accuracy")]),
        ("Called benign or malignant",
         [("lesion images", "lesion_removed.lesion_before"), ("lesion removed", "lesion_removed.still_lesion"),
          ("normal images", "lesion_removed.sham.called_lesion_before"),
          ("normal, sham patch", "lesion_removed.sham.called_lesion")]),
    ]  # fmt: skip
    for ax, (title, series) in zip(axes, panels):
        for k, (label, key) in enumerate(series):
            entries = [_get(summary["models"][m], key) for m in models]
            offset = 0.2 - 0.4 * k / (len(series) - 1)  # the series of a model side by side in its row
            _points(ax, entries, y + offset, label=label, fmt="os^v"[k])
        ax.set_title(title)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.5, len(models) - 0.5)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize="small", ncol=2, frameon=False)
    axes[0].set_yticks(y, models)
    fig.suptitle(f"What the models look at: {summary['images']} out-of-fold test images, 95% intervals")
    save_figure(fig, path)


def _get(entries: dict, dotted: str) -> dict:
    for key in dotted.split("."):
        entries = entries[key]
    return entries


def _outlined(image: np.ndarray, cam: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The heat map over the image, the lesion's edge drawn on top."""
    return Image.fromarray(draw_outline(overlay(image, cam), mask))


def lowest_share_sheet(
    images: Images, looks: dict[str, Looks], originals: np.ndarray, masks: np.ndarray, path: Path
) -> None:
    """One row per model: its lesion images with the lowest Grad-CAM share inside the lesion, lowest first.
    originals and masks: the tested images in the order of images.files."""
    rows = []
    for model, look in looks.items():
        cells = []
        for share, p, seed, cam in look.lowest:
            called = images.classes[look.predicted[p, seed]]
            caption = f"{model}\n{Path(images.files[p]).name}\ncalled {called}, share {share:.2f}"
            cells.append((_outlined(originals[p], cam.astype(np.float32) / 255, masks[p]), caption))
        rows.append(cells)
    title = (
        "Lesion images on which each model's Grad-CAM map of its predicted class lies least inside the lesion "
        "(green edge), lowest first"
    )
    contact_sheet(rows, path, title, thumb=originals.shape[1] if len(originals) else 160)
