"""A lesion's edge drawn on an image: the heat maps of the shortcut tests and of predict --masks show it."""

from __future__ import annotations

import cv2
import numpy as np

OUTLINE = (0, 255, 0)  # green: apart from the heat map's blue-to-red scale


def draw_outline(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = OUTLINE) -> np.ndarray:
    """A copy of the (H, W, 3) uint8 image with the one-pixel inner edge of the (H, W) mask in colour."""
    mask = mask.astype(bool)
    edge = mask & ~(cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    shown = image.copy()
    shown[edge] = colour
    return shown
