"""plots/audit/edits.png: example edits of the edits stage (data/edits.py), to judge them by eye."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bcmodels.config.schema import EditsConfig, PreprocessConfig
from bcmodels.data.edits import Job, edit_raw, square
from bcmodels.render.contact_sheet import contact_sheet

ZOOM = 3  # the close-ups: this many times the raw pixels
CLOSE_UP = 240  # pixels of a close-up panel


def example_jobs(jobs: Sequence[Job], count: int) -> list[Job]:
    """What the figure shows: the first image with colour and a lesion, the first normal image's sham edit, then
    the images with the most caliper and text boxes, each class in turn (the hardest edits, where a bad one would
    show)."""
    chosen = [j for j in (next((j for j in jobs if j.marks.colour and j.masks), None),) if j is not None]
    chosen += [j for j in (next((j for j in jobs if j.sham), None),) if j is not None]
    by_class: dict[str, list[Job]] = {}
    for job in sorted(jobs, key=lambda j: (-len(j.marks.caliper_boxes) - len(j.marks.text_boxes), str(j.image))):
        if (job.marks.caliper_boxes or job.marks.text_boxes) and job not in chosen:
            by_class.setdefault(job.marks.label, []).append(job)
    while len(chosen) < count and any(by_class.values()):
        for found in by_class.values():
            if found and len(chosen) < count:
                chosen.append(found.pop(0))
    return chosen[:count]


def _outlined(rgb: np.ndarray, marks: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """rgb with the repainted marks tinted red and the edge of the repainted lesion (or sham patch) drawn green."""
    shown = rgb.copy()
    shown[marks] = (0.5 * shown[marks] + [127, 0, 0]).astype(np.uint8)
    edge = lesion & ~(cv2.erode(lesion.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    shown[edge] = (0, 255, 0)
    return shown


def _close_ups(job: Job, before: np.ndarray, after: np.ndarray) -> tuple[Image.Image, Image.Image]:
    """The same raw window of both images around the image's first caliper (else its first text, else its
    centre), enlarged ZOOM times with nearest neighbours so that single pixels show."""
    boxes = job.marks.caliper_boxes or job.marks.text_boxes
    height, width = before.shape[:2]
    cx, cy = (boxes[0][0] + boxes[0][2] // 2, boxes[0][1] + boxes[0][3] // 2) if boxes else (width // 2, height // 2)
    side = min(CLOSE_UP // ZOOM, height, width)
    top, left = min(max(0, cy - side // 2), height - side), min(max(0, cx - side // 2), width - side)
    return tuple(  # type: ignore[return-value]
        Image.fromarray(a[top : top + side, left : left + side]).resize(
            (side * ZOOM, side * ZOOM), Image.Resampling.NEAREST
        )
        for a in (before, after)
    )


def edits_figure(jobs: Sequence[Job], config: EditsConfig, geometry: PreprocessConfig, path: Path) -> None:
    """Per example image: what is repainted, both edits as the models see them, a close-up of a mark before and
    after."""
    rows = []
    for job in example_jobs(jobs, config.examples):
        e = edit_raw(job, config)
        before, after = _close_ups(job, e.raw, e.mark_free)
        what = "sham patch" if job.sham else "lesion"
        rows.append(
            [
                (
                    Image.fromarray(square(_outlined(e.raw, e.marks, e.lesion), geometry)),
                    f"{job.image.name}\nrepainted",
                ),
                (Image.fromarray(square(e.mark_free, geometry)), "marks removed\n(data/mark_free)"),
                (Image.fromarray(square(e.lesion_free, geometry)), f"{what} removed\n(data/lesion_free)"),
                (before, f"raw, x{ZOOM}"),
                (after, "marks removed"),
            ]
        )
    title = (
        f"Edits by inpainting (OpenCV's Telea, radius {config.radius} px) of the raw image, made square as the "
        f"models see it. Red: marks repainted ({', '.join(config.marks)}, measuring lines; grown "
        f"{config.mark_margin_px} px).\nGreen: the edge of the lesion repainted (masks grown "
        f"{config.lesion_margin_px} px), or of a sham patch on a normal image. Rows: an image with colour, a sham "
        "edit, then the images with the most calipers and text."
    )
    contact_sheet(rows, path, title, thumb=max(geometry.image_size, CLOSE_UP))
