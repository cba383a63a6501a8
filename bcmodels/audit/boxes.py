"""Boxes (x, y, width, height in pixels of the raw image) of the marks the overlay audit finds: where a point
lies, whether two boxes meet, their union."""

from __future__ import annotations

from collections.abc import Sequence

from bcmodels.formats.overlays import Box


def centre(box: Box) -> tuple[int, int]:
    """The box's centre pixel (a cross's centre: its boxes are symmetric about it, up to a pixel)."""
    return box[0] + box[2] // 2, box[1] + box[3] // 2


def inside(point: tuple[int, int], box: Box) -> bool:
    """Whether the (x, y) pixel lies in the box."""
    x, y = point
    return box[0] <= x < box[0] + box[2] and box[1] <= y < box[1] + box[3]


def overlaps(a: Box, b: Box) -> bool:
    """Whether the two boxes share a pixel."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def within(box: Box, outer: Box) -> bool:
    """Whether the box lies wholly in outer."""
    x, y, w, h = box
    return outer[0] <= x and outer[1] <= y and x + w <= outer[0] + outer[2] and y + h <= outer[1] + outer[3]


def union(boxes: Sequence[Box]) -> Box:
    """The smallest box holding all of them."""
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)
