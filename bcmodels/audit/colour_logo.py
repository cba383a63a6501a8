"""The scanner's logo and colour on a grey frame.

- Logo: the scanner's logo is white glyphs in a black outline in the top-left corner: bright pixels with
  black on both sides, which tissue beside the black of a sector's corner does not have. Its box is left out
  of the search for calipers and text.
- Colour: pixels whose R, G, B differ (a grey ultrasound has equal channels, up to compression noise).
"""

from __future__ import annotations

import numpy as np

from bcmodels.config.schema import ColourConfig, LogoConfig
from bcmodels.formats.overlays import Box


def find_logo(grey: np.ndarray, config: LogoConfig) -> Box | None:
    """Box of the scanner's logo: bright pixels with its black outline on both sides, in the top-left corner."""
    width, height = config.box
    corner = grey[:height, :width]
    bright = corner >= config.min_value
    dark = (corner <= config.max_outline).astype(np.uint8)
    k = config.outline_px
    padded = np.pad(dark, k, constant_values=0)
    h, w = corner.shape

    def dark_towards(dy: int, dx: int) -> np.ndarray:
        near = np.zeros_like(bright)
        for d in range(1, k + 1):
            near |= padded[k + dy * d : k + dy * d + h, k + dx * d : k + dx * d + w].astype(bool)
        return near

    outlined = bright & ((dark_towards(0, -1) & dark_towards(0, 1)) | (dark_towards(-1, 0) & dark_towards(1, 0)))
    if outlined.sum() < config.min_pixels:
        return None
    ys, xs = np.nonzero(outlined)
    margin = 2 * k  # the outline itself
    x0, y0 = max(0, int(xs.min()) - margin), max(0, int(ys.min()) - margin)
    return (x0, y0, int(xs.max()) + margin + 1 - x0, int(ys.max()) + margin + 1 - y0)


def find_colour(rgb: np.ndarray, config: ColourConfig) -> Box | None:
    """Box around the pixels whose channels differ by at least min_chroma, if there are min_pixels of them."""
    channels = rgb.astype(np.int16)
    coloured = channels.max(axis=2) - channels.min(axis=2) >= config.min_chroma
    if coloured.sum() < config.min_pixels:
        return None
    ys, xs = np.nonzero(coloured)
    return (int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1)
