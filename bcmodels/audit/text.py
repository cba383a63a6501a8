"""Operator text: glyph-sized strokes that stand out of a morphological opening of the frame (a top-hat), grouped
into lines. A line counts as text where:
- Tesseract reads a word of overlays.text.min_chars letters or digits with min_confidence from the frame's own
  grey glyphs, or a word holding the first label_stem letters of a label word at any confidence (joined or
  clipped labels, "RTAXILLA", read right with confidence 0);
- or it is drawn flat: its glyphs' cores one grey (flat_spread), as drawn text is and tissue is not, so that a
  label OCR cannot read (a word clipped at the frame's edge) still counts.
Grey lines at saturated or brighter are saturated reflectors, flat by clipping, which OCR reads as words: they
count only if coloured (yellow text). Text drawn over a bright streak of tissue joins it into a component too
big for a glyph: there the streak is taken out and the rest looked at again.

A caliper number ("1", "2" at a cross's corner) is one glyph, which OCR cannot read alone with any surety: a
glyph-sized stroke there, its core drawn flat in the cross's own grey, counts as text by its place. The view:
axilla if a word read names the axilla, breast if one names a place in the breast, else unknown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from bcmodels.audit import ocr
from bcmodels.audit.boxes import inside, overlaps, union, within
from bcmodels.config.schema import TextConfig, ViewConfig
from bcmodels.formats.overlays import Box


def glyphs(grey: np.ndarray, config: TextConfig) -> tuple[np.ndarray, list[Box], list[Box]]:
    """The stroke mask (thin bright strokes out of a top-hat), the boxes of its glyph-sized components, and
    those of the glyphs found by taking streaks out of the components too big for a glyph.

    A glyph's strokes are 2 pixels wide or more (area at least twice its height: a hairline of tissue is
    one); one cut by the frame's left or right edge may keep a 1-pixel sliver of a stem, so it needs only to
    be more than a 1-pixel line or corner (area at least height + width). Text drawn over a bright streak of
    tissue joins it into a component too big for a glyph: there the streak is taken out (_without_streaks)
    and what is left is looked at again.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (config.tophat_size, config.tophat_size))
    strokes = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel) >= config.min_contrast
    boxes, oversize = _glyph_boxes(strokes, grey.shape[1], config)
    split = _glyph_boxes(oversize & _without_streaks(grey, config), grey.shape[1], config)[0] if oversize.any() else []
    return strokes, boxes, split


def _glyph_boxes(mask: np.ndarray, width: int, config: TextConfig) -> tuple[list[Box], np.ndarray]:
    """The boxes of the mask's glyph-sized components, and the mask of those too big for a glyph."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes, big = [], []
    for k, (x, y, w, h, area) in enumerate(stats[1:count], start=1):
        cut = x == 0 or x + w == width
        if config.min_height <= h <= config.max_height and w <= config.max_width and area >= (h + w if cut else 2 * h):
            boxes.append((int(x), int(y), int(w), int(h)))
        elif h > config.max_height or w > config.max_width:
            big.append(k)
    return boxes, np.isin(labels, big)


def _without_streaks(grey: np.ndarray, config: TextConfig) -> np.ndarray:
    """Where the frame stands min_contrast above every straight segment of streak_length pixels through it
    (at up to streak_angle degrees from horizontal, in 10 degree steps): a glyph's strokes are shorter than
    that, the streaks of tissue longer."""
    opened = np.zeros_like(grey)
    length, middle = config.streak_length, config.streak_length // 2
    for angle in range(-config.streak_angle, config.streak_angle + 1, 10):
        kernel = np.zeros((length, length), np.uint8)
        t = np.linspace(-middle, middle, 4 * length)
        theta = np.radians(angle)
        kernel[np.round(middle - t * np.sin(theta)).astype(int), np.round(middle + t * np.cos(theta)).astype(int)] = 1
        opened = np.maximum(opened, cv2.morphologyEx(grey, cv2.MORPH_OPEN, kernel))
    return grey - opened >= config.min_contrast


def text_lines(boxes: Sequence[Box], config: TextConfig) -> list[list[Box]]:
    """Glyph boxes grouped into lines: neighbours overlap in height, are of like size and close side by side."""
    order = sorted(boxes)
    parent = list(range(len(order)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(order):
        for j in range(i + 1, len(order)):
            b = order[j]
            tall = max(a[3], b[3])
            if b[0] - (a[0] + a[2]) > config.max_gap * tall:
                break  # sorted by x: every later box is further away
            overlap = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
            if overlap >= 0.5 * min(a[3], b[3]) and min(a[3], b[3]) * 2 >= tall:
                parent[root(j)] = root(i)
    lines: dict[int, list[Box]] = {}
    for i, box in enumerate(order):
        lines.setdefault(root(i), []).append(box)
    return list(lines.values())


def _caliper_number(grey: np.ndarray, strokes: np.ndarray, cross: Box, others: Sequence[Box],
                    config: TextConfig) -> Box | None:  # fmt: skip
    """Box of a glyph beside the cross (touching it or not), drawn in its grey: the cross's arms and the dots
    of its measurement line are taken away first (a dot is smaller than a glyph, and a run of dots is a stroke
    one dot wide, filling less than 2 pixels a row). A small glyph is mostly rim, its edge pixels blended
    with the tissue, so its grey is its core's: the ink at or above the ink's median."""
    x, y, w, h = cross
    cx, cy = x + w // 2, y + h // 2
    reach = round(max(w, h) * config.number_radius)
    x0, y0 = max(0, cx - reach), max(0, cy - reach)
    window = strokes[y0 : cy + reach + 1, x0 : cx + reach + 1].copy()
    arm = max(w, h) // 2 + 1
    rows, cols = slice(max(0, cy - 2 - y0), cy + 3 - y0), slice(max(0, cx - 2 - x0), cx + 3 - x0)
    window[rows, max(0, cx - arm - x0) : cx + arm + 1 - x0] = False
    window[max(0, cy - arm - y0) : cy + arm + 1 - y0, cols] = False
    count, labels, stats, _ = cv2.connectedComponentsWithStats(window.astype(np.uint8), connectivity=8)
    level = _cross_level(grey, cross)
    for k in range(1, count):
        bx, by, bw, bh, area = (int(v) for v in stats[k])
        box = (bx + x0, by + y0, bw, bh)
        if not (config.min_height <= bh <= config.max_height and bw <= 0.8 * bh and area >= 2 * bh):
            continue  # a digit is narrow, its strokes at least 2 pixels wide
        if any(inside((c[0] + c[2] // 2, c[1] + c[3] // 2), box) or overlaps(box, c) for c in others):
            continue  # another cross
        ink = grey[y0 : y0 + window.shape[0], x0 : x0 + window.shape[1]][labels == k]
        core = ink[ink >= np.median(ink)]
        middle = float(np.median(core))
        if abs(middle - level) <= config.number_tolerance and np.abs(core - middle).mean() <= config.number_tolerance:
            return box
    return None


def _cross_level(grey: np.ndarray, cross: Box) -> float:
    """The grey of a cross's arms: the median at the middle of each arm (its centre may be hollow)."""
    x, y, w, h = cross
    cx, cy, d = x + w // 2, y + h // 2, max(2, min(w, h) // 4)
    return float(np.median([grey[cy, cx + d], grey[cy, cx - d], grey[cy + d, cx], grey[cy - d, cx]]))


def _alnum(text: str) -> int:
    return sum(c.isalnum() for c in text)


@dataclass(frozen=True)
class TextFound:
    boxes: tuple[Box, ...]
    read: list[str]  # per box, what was read ("#": a caliper number, "?": drawn text that OCR did not read)
    crosses: tuple[Box, ...]  # the caliper crosses, less those that were part of a line of text


@dataclass(frozen=True)
class _Ink:
    """The grey of a line's strokes: each glyph's core (its ink at or above its median; the rim is blended)."""

    level: float  # the cores' median
    spread: float  # their mean absolute deviation from it
    coloured: bool  # most of the strokes are coloured (yellow text)


def _ink(grey: np.ndarray, strokes: np.ndarray, coloured: np.ndarray, line: Sequence[Box]) -> _Ink:
    cores, tinted = [], []
    for x, y, w, h in line:
        mask = strokes[y : y + h, x : x + w]
        ink = grey[y : y + h, x : x + w][mask]
        cores.append(ink[ink >= np.median(ink)])
        tinted.append(coloured[y : y + h, x : x + w][mask])
    core = np.concatenate(cores)
    level = float(np.median(core))
    return _Ink(level, float(np.abs(core - level).mean()), bool(np.concatenate(tinted).mean() >= 0.5))


def _read(grey: np.ndarray, strokes: np.ndarray, regions: Sequence[Box], config: TextConfig) -> list[list[ocr.Word]]:
    """Per region, the words OCR reads: from the frame's own grey glyphs, inverted (dark on white), with
    everything further than a margin from the strokes whitened. Tesseract reads smooth grey glyphs more surely
    than the stroke mask's blocky ones, and the tissue around them only lowers its confidence. Each margin is
    read."""
    words = []
    for margin in config.ink_margins:
        crops = []
        for x, y, w, h in regions:
            window = (slice(max(0, y - 3), y + h + 3), slice(max(0, x - 3), x + w + 3))
            near = cv2.dilate(strokes[window].astype(np.uint8), np.ones((2 * margin + 1,) * 2)) > 0
            crops.append(np.where(near, 255 - grey[window], 255).astype(np.uint8))
        words += ocr.read_crops(crops, config.ocr_scale, config.whitelist)
    return [[w for w in words if w.crop == k] for k in range(len(regions))]


def _counted(words: Sequence[ocr.Word], stems: set[str], config: TextConfig) -> list[str]:
    """The words that count: min_chars letters or digits read with min_confidence, or (at any confidence) a
    reading that holds the first label_stem letters of a label word."""
    sure = [w.text for w in words if w.confidence >= config.min_confidence and _alnum(w.text) >= config.min_chars]
    named = [w.text for w in words if any(stem in w.text.upper() for stem in stems)]
    return list(dict.fromkeys(sure + named))


def find_text(grey: np.ndarray, coloured: np.ndarray, config: TextConfig, crosses: Sequence[Box],
              skip: Box | None, labels: Sequence[str]) -> TextFound:  # fmt: skip
    """Lines of text (read by OCR, or drawn flat), and the caliper numbers beside crosses; `coloured` is the
    (H, W) mask of coloured pixels, `labels` the words operators write (the view's)."""
    stems = {w.upper()[: config.label_stem] for w in labels if len(w) >= config.label_stem}
    strokes, found, split = glyphs(grey, config)
    found = [b for b in found if skip is None or not overlaps(b, skip)]
    split = [b for b in split if skip is None or not overlaps(b, skip)]
    centres = [(c[0] + c[2] // 2, c[1] + c[3] // 2) for c in crosses]
    # The cross's own strokes: the one through its centre, or (a hollow cursor's) arms inside its box. A
    # line is read if it holds a glyph of its own: a '+' alone, or with its dotted line, is no text, but the
    # 't' of "rt3" looks like a '+' and belongs to its line.
    on_cross = {b for b in found if any(inside(p, b) or within(b, c) for p, c in zip(centres, crosses))}
    # Glyphs split from tissue make lines of their own, and join those of whole glyphs only as extra lines:
    # with a streak's remnants a line that reads surely alone ("BREA") may not.
    candidates = text_lines(found, config) + [
        line for line in text_lines(found + split, config) if set(line) & set(split)
    ]
    lines, inks = [], []
    for line in candidates:
        if len(line) < config.min_glyphs or all(b in on_cross for b in line) or union(line) in lines:
            continue
        ink = _ink(grey, strokes, coloured, line)
        if ink.level >= config.saturated and not ink.coloured:
            continue  # a saturated reflector, flat by clipping, which OCR reads as words ("am")
        lines.append(union(line))
        inks.append(ink)
    boxes, read = [], []
    for region, ink, words in zip(lines, inks, _read(grey, strokes, lines, config)):
        counted = _counted(words, stems, config)
        # Drawn text is flat, its strokes one grey (up to compression noise); tissue never is. A line drawn
        # so counts even where OCR cannot read it (a word clipped at the frame's edge).
        if counted or ink.spread <= config.flat_spread:
            boxes.append(region)
            read.append(" ".join(counted) or "?")
    # A '+' in or right beside a line of letters is a glyph's crossing ('t', the 4 of "LT 3-4"), not a caliper.
    letters = [(x - h, y, w + 2 * h, h) for (x, y, w, h), r in zip(boxes, read) if sum(c.isalpha() for c in r) >= 2]
    kept = tuple(c for c, p in zip(crosses, centres) if not any(inside(p, b) for b in letters))
    # A caliper number is one glyph at a cross's corner. OCR of a lone "1" is a guess (i, l, T, 7), so a
    # glyph-sized stroke there counts by its place (read as "#"): drawn flat in the cross's own grey.
    for cross in kept:
        number = _caliper_number(grey, strokes, cross, [c for c in kept if c != cross], config)
        if number is not None:
            boxes.append(number)
            read.append("#")
    return TextFound(tuple(boxes), read, kept)


def view_of(read: Sequence[str], config: ViewConfig) -> str:
    """axilla if a word read names the axilla, breast if one names a place in the breast, else unknown."""
    words = {w for line in read for w in re.findall(r"[A-Z]+", line.upper())}
    if words & {w.upper() for w in config.axilla_words}:
        return "axilla"
    if words & {w.upper() for w in config.breast_words}:
        return "breast"
    return "unknown"
