"""Regions of an image for the shortcut tests: the lesion mask grown by a margin, the black background outside
the scan, and the share of a Grad-CAM map's energy inside a region."""

from __future__ import annotations

import cv2
import numpy as np

from bcmodels.data.edits import grow as grow_mask

WINDOW = 5  # background: dark over a whole window this wide, which speckle is not


def grow(masks: np.ndarray, px: int) -> np.ndarray:
    """(N, S, S) masks grown by px pixels in every direction (a disc, as the edits grow theirs), as bool."""
    return np.stack([grow_mask(m, px) for m in masks]) if len(masks) else masks.astype(bool)


def cam_share(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N,) share of each map's energy (N, S, S, non-negative) inside its mask: NaN where the mask is empty or
    the map is zero everywhere (nothing to share)."""
    total = cams.reshape(len(cams), -1).sum(axis=1, dtype=np.float64)
    inside = (cams * masks).reshape(len(cams), -1).sum(axis=1, dtype=np.float64)
    defined = (total > 0) & masks.reshape(len(masks), -1).any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, inside / total, np.nan)


def background(images: np.ndarray, max_grey: int) -> np.ndarray:
    """(N, S, S) bool: the black outside the scan and below its depth. A pixel is dark at or below max_grey (the
    largest of R, G, B); background is every dark pixel of a WINDOW x WINDOW window dark all over (a morphological
    opening: a dark tissue's speckle rises above max_grey somewhere in any such window), connected to the image's
    border (a dark cyst inside the tissue is not background)."""
    out = np.zeros(images.shape[:3], dtype=bool)
    window = np.ones((WINDOW, WINDOW), np.uint8)
    for i, image in enumerate(images):
        dark = cv2.morphologyEx((image.max(axis=2) <= max_grey).astype(np.uint8), cv2.MORPH_OPEN, window)
        _, labels = cv2.connectedComponents(dark, connectivity=8)
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        out[i] = np.isin(labels, edge[edge > 0])
    return out
