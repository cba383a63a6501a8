"""Tesseract OCR (Debian's tesseract-ocr through pytesseract) of small text crops, read in one call per image.

Tesseract is a program, not a Python package: where it is missing, check_tesseract says how to install it
(one `error:` line) before any work starts, instead of a worker's traceback halfway through.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pytesseract

from bcmodels.errors import DataError

INSTALL = "install it with `apt-get update && apt-get install -y tesseract-ocr` (the .ci/run script does)"
BORDER = 20  # white pixels around a scaled crop: Tesseract misses glyphs that touch the edge


@dataclass(frozen=True)
class Word:
    """One word Tesseract read, the crop it came from, and its confidence (0-100)."""

    crop: int
    text: str
    confidence: float


def check_tesseract() -> str:
    """Tesseract's version; DataError saying how to install it where pytesseract cannot run it."""
    command = pytesseract.pytesseract.tesseract_cmd
    try:
        return str(pytesseract.get_tesseract_version())
    except (pytesseract.TesseractNotFoundError, OSError):
        found = shutil.which(command)
        where = f"{command!r} is not runnable" if found else f"{command!r} is not on PATH"
        raise DataError(
            f"Tesseract OCR not found ({where}): the overlays stage reads text with it; {INSTALL}"
        ) from None


def read_crops(crops: Sequence[np.ndarray], scale: int, whitelist: str) -> list[Word]:
    """The words Tesseract reads in each uint8 crop (dark text on white), one line each (psm 7); characters
    outside the whitelist are dropped from them. The crop is scaled up (cubic: smooth glyph edges read better
    than blocky ones) inside a white border."""
    words = []
    for k, crop in enumerate(crops):
        page = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        page = cv2.copyMakeBorder(page, BORDER, BORDER, BORDER, BORDER, cv2.BORDER_CONSTANT, value=255)
        # The whitelist is applied to what was read, not given to Tesseract: Tesseract 5's own
        # (tessedit_char_whitelist) joins words and reports confidence 0.
        try:
            data = pytesseract.image_to_data(page, config="--psm 7", output_type=pytesseract.Output.DICT)
        except pytesseract.TesseractNotFoundError:
            raise DataError(f"Tesseract OCR not found: {INSTALL}") from None
        for text, conf in zip(data["text"], data["conf"]):
            text = "".join(c for c in text if c in whitelist)
            if text and float(conf) >= 0:
                words.append(Word(k, text, float(conf)))
    return words
