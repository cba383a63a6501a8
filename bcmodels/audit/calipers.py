"""Caliper crosses: a '+' whose four arms are brighter than the pixels beside them, at each [gap, arm] scale of
overlays.calipers.scales (white crosses with a solid centre, grey cursors with a hollow one). A cross must be
thin and alone: bright from its start on every arm, little bright between the arms, and its arms must stop (a
letter's stroke runs on). A faint grey cursor beside bright tissue stands out less than that, but it is drawn
flat, its arms one grey as tissue never is: a '+' that flat needs less contrast (find_crosses). Dotted
measurement lines crossing each other look the same and count; a dotted line without its crosses is not looked
for.

Crosses whose arms would leave the frame are not looked for: the scanner's edge ticks and focus markers sit
there, and BUSI's frames are cropped inside them. No 'x' marks: on BUSI an 'x' template only fires on letters
(the O and Q of "UOQ").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from bcmodels.audit.boxes import inside
from bcmodels.config.schema import CaliperConfig
from bcmodels.formats.overlays import Box

PLUS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx) of a '+''s four arms (right, left, down, up)


def _mean_at(grey: np.ndarray, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per pixel, the mean of grey at the given (dy, dx) offsets from it (edges replicated)."""
    reach = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    kernel = np.zeros((2 * reach + 1, 2 * reach + 1), dtype=np.float32)
    for dy, dx in offsets:
        kernel[reach + dy, reach + dx] += 1.0 / len(offsets)
    return cv2.filter2D(grey, cv2.CV_32F, kernel, borderType=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class _Arms:
    """Per pixel, what the four arms of a '+' centred there look like ((4, H, W) or (H, W) arrays)."""

    means: np.ndarray  # (4, H, W) mean grey along each arm
    contrast: np.ndarray  # (4, H, W) each arm's mean less its brighter flank's
    contrast_mean: np.ndarray  # (4, H, W) each arm's mean less the mean of its two flanks
    spread: np.ndarray  # (H, W) the largest standard deviation along an arm, or range of the arms' means


def _arms(grey: np.ndarray, gap: int, arm: int, flank: int) -> _Arms:
    """The arms of a '+' of the given scale centred on each pixel, against what lies beside them."""
    means, squares, contrast, contrast_mean = [], [], [], []
    for dy, dx in PLUS:
        along = [(dy * d, dx * d) for d in range(gap, arm + 1)]
        mean = _mean_at(grey, along)
        squares.append(_mean_at(grey * grey, along))
        sides = [_mean_at(grey, [(oy + s * dx * flank, ox + s * dy * flank) for oy, ox in along]) for s in (1, -1)]
        means.append(mean)
        contrast.append(mean - np.maximum(*sides))
        contrast_mean.append(mean - (sides[0] + sides[1]) / 2)
    means_ = np.stack(means)
    deviation = np.sqrt(np.maximum(np.stack(squares) - means_**2, 0)).max(axis=0)
    spread = np.maximum(deviation, means_.max(axis=0) - means_.min(axis=0))
    return _Arms(means_, np.stack(contrast), np.stack(contrast_mean), spread)


def _is_cross(grey: np.ndarray, y: int, x: int, gap: int, arm: int, level: float, contrast: float,
              config: CaliperConfig) -> list[int] | None:  # fmt: skip
    """How far each arm of the '+' found at (y, x) reaches (right, left, down, up), or None if it is not a lone
    thin cross but part of a letter or of the tissue."""
    reach = arm + 3
    box = grey[y - reach : y + reach + 1, x - reach : x + reach + 1]
    middle = level - contrast / 2  # halfway between the arms and what lies beside them
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    ring = np.maximum(abs(yy), abs(xx))
    on_arms = ((abs(yy) <= 1) | (abs(xx) <= 1)) & (ring <= arm + 1)
    between = (ring <= arm) & (ring >= 1) & ~on_arms
    if (box[between] > middle).mean() > config.max_off_arm:
        return None
    ends, runs = 0, []
    for dy, dx in PLUS:
        beyond = np.mean([grey[y + dy * d, x + dx * d] for d in (arm + 2, arm + 3)])
        ends += level - beyond >= contrast / 2
        run = 0
        while gap + run <= reach and grey[y + dy * (gap + run), x + dx * (gap + run)] > middle:
            run += 1
        runs.append(run)
    if ends < config.min_ends or min(runs) < config.min_run:
        return None
    return [gap + run - 1 for run in runs]


def find_crosses(grey: np.ndarray, config: CaliperConfig, skip: Box | None = None) -> list[Box]:
    """Boxes of the caliper crosses on a (H, W) float32 frame; none inside `skip` (the logo).

    Two ways in: every arm min_contrast above its brighter flank; or, where the '+' is drawn flat (its arms one
    grey, within flat_spread) as a cursor is and tissue never is, flat_contrast above its flanks' mean: a faint
    grey cursor beside bright tissue. The flat ones are looked for once the others are found.
    """
    found: list[Box] = []
    height, width = grey.shape
    scales = [(gap, arm, _arms(grey, gap, arm, config.flank)) for gap, arm in config.scales]
    for flat in (False, True):
        for gap, arm, arms in scales:
            if flat:
                weakest = arms.contrast_mean.min(axis=0)
                weakest = np.where(arms.spread <= config.flat_spread, weakest, 0).astype(np.float32)
                least = config.flat_contrast
            else:
                weakest, least = arms.contrast.min(axis=0), config.min_contrast
            peaks = (weakest >= least) & (weakest == cv2.dilate(weakest, np.ones((2 * arm + 1,) * 2)))
            reach = arm + 3
            for y, x in zip(*np.nonzero(peaks)):
                if not (reach <= y < height - reach and reach <= x < width - reach):
                    continue  # the frame's edge: where the scanner's ticks are, and no whole cross fits
                if skip is not None and inside((x, y), skip):
                    continue
                if any(inside((x, y), b) for b in found):
                    continue  # the same cross at another scale, or found the other way
                level = float(arms.means[:, y, x].mean())
                reaches = _is_cross(grey, int(y), int(x), gap, arm, level, float(weakest[y, x]), config)
                if reaches is not None:
                    right, left, down, up = reaches
                    found.append((int(x) - left - 1, int(y) - up - 1, left + right + 3, up + down + 3))
    return found
