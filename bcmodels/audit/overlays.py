"""What the sonographer and the scanner drew on each raw image: caliper crosses, text, colour, the logo, and
which view the text names. A model can learn a class from these marks instead of the lesion (Pawlowska,
Karwat and Zolek 2023 count 295 BUSI images with annotations and about 70 of the axilla).

How each is found (settings: overlays in params.yaml; the frame is the max of R, G, B, so yellow marks count):
- Calipers: a '+' whose four arms are brighter than the pixels beside them, at each [gap, arm] scale of
  overlays.calipers.scales (white crosses with a solid centre, grey cursors with a hollow one). A cross must
  be thin and alone: bright from its start on every arm, little bright between the arms, and its arms must
  stop (a letter's stroke runs on). Dotted measurement lines crossing each other look the same and count;
  a dotted line without its crosses is not looked for.
  Crosses whose arms would leave the frame are not looked for: the scanner's edge ticks and focus markers
  sit there, and BUSI's frames are cropped inside them. No 'x' marks: on BUSI an 'x' template only fires on
  letters (the O and Q of "UOQ").
- Text: glyph-sized strokes that stand out of a morphological opening of the frame (a top-hat), grouped into
  lines; each line is read by Tesseract from the frame's own grey glyphs, and a word of
  overlays.text.min_chars letters or digits read with at least overlays.text.min_confidence counts. A
  caliper number ("1", "2" at a cross's corner) is one glyph, which OCR cannot read alone with any surety:
  a glyph-sized stroke there, drawn flat in the cross's own grey, counts as text by its place.
- Colour: pixels whose R, G, B differ (a grey ultrasound has equal channels, up to compression noise).
- Logo: the scanner's logo is white glyphs in a black outline in the top-left corner: bright pixels with
  black on both sides, which tissue beside the black of a sector's corner does not have. Its box is left
  out of the search for calipers and text.
- View: axilla if a word read names the axilla, breast if one names a place in the breast, else unknown.
"""

from __future__ import annotations

import functools
import multiprocessing
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from bcmodels.audit import ocr
from bcmodels.config.schema import CaliperConfig, ColourConfig, LogoConfig, OverlaysConfig, TextConfig, ViewConfig
from bcmodels.errors import DataError
from bcmodels.formats.manifest import ManifestEntry
from bcmodels.formats.overlays import KINDS, Box, OverlayRow, write_overlays
from bcmodels.io.images import decode, to_rgb
from bcmodels.io.progress import progress
from bcmodels.render.contact_sheet import contact_sheet

PLUS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx) of a '+''s four arms


# --- Calipers -----------------------------------------------------------------------------------------


def _mean_at(grey: np.ndarray, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per pixel, the mean of grey at the given (dy, dx) offsets from it (edges replicated)."""
    reach = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    kernel = np.zeros((2 * reach + 1, 2 * reach + 1), dtype=np.float32)
    for dy, dx in offsets:
        kernel[reach + dy, reach + dx] += 1.0 / len(offsets)
    return cv2.filter2D(grey, cv2.CV_32F, kernel, borderType=cv2.BORDER_REPLICATE)


def _arm_contrast(grey: np.ndarray, gap: int, arm: int, flank: int) -> tuple[np.ndarray, np.ndarray]:
    """(4, H, W) mean of each arm of a '+' centred on each pixel, and how much brighter than its brighter flank."""
    means, contrast = [], []
    for dy, dx in PLUS:
        along = range(gap, arm + 1)
        mean = _mean_at(grey, [(dy * d, dx * d) for d in along])
        sides = [_mean_at(grey, [(dy * d + s * dx * flank, dx * d + s * dy * flank) for d in along]) for s in (1, -1)]
        means.append(mean)
        contrast.append(mean - np.maximum(*sides))
    return np.stack(means), np.stack(contrast)


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
    """Boxes of the caliper crosses on a (H, W) float32 frame; none inside `skip` (the logo)."""
    found: list[Box] = []
    height, width = grey.shape
    for gap, arm in config.scales:
        means, contrast = _arm_contrast(grey, gap, arm, config.flank)
        weakest = contrast.min(axis=0)
        peaks = (weakest >= config.min_contrast) & (weakest == cv2.dilate(weakest, np.ones((2 * arm + 1,) * 2)))
        reach = arm + 3
        for y, x in zip(*np.nonzero(peaks)):
            if not (reach <= y < height - reach and reach <= x < width - reach):
                continue  # the frame's edge: where the scanner's ticks are, and no whole cross fits
            if skip is not None and _inside((x, y), skip):
                continue
            if any(_inside((x, y), b) for b in found):
                continue  # the same cross at another scale
            level = float(means[:, y, x].mean())
            arms = _is_cross(grey, int(y), int(x), gap, arm, level, float(weakest[y, x]), config)
            if arms is not None:
                right, left, down, up = arms
                found.append((int(x) - left - 1, int(y) - up - 1, left + right + 3, up + down + 3))
    return found


def _inside(point: tuple[int, int], box: Box) -> bool:
    x, y = point
    return box[0] <= x < box[0] + box[2] and box[1] <= y < box[1] + box[3]


# --- Logo and colour ----------------------------------------------------------------------------------


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


# --- Text ---------------------------------------------------------------------------------------------


def glyphs(grey: np.ndarray, config: TextConfig) -> tuple[np.ndarray, list[Box]]:
    """The stroke mask (thin bright strokes out of a top-hat) and the boxes of its glyph-sized components."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (config.tophat_size, config.tophat_size))
    strokes = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel) >= config.min_contrast
    count, _, stats, _ = cv2.connectedComponentsWithStats(strokes.astype(np.uint8), connectivity=8)
    boxes = []
    for x, y, w, h, area in stats[1:count]:
        if config.min_height <= h <= config.max_height and w <= config.max_width and area >= 2 * h:
            boxes.append((int(x), int(y), int(w), int(h)))
    return strokes, boxes


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


def _union(boxes: Sequence[Box]) -> Box:
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _within(box: Box, outer: Box) -> bool:
    x, y, w, h = box
    return outer[0] <= x and outer[1] <= y and x + w <= outer[0] + outer[2] and y + h <= outer[1] + outer[3]


def _near(box: Box, cross: Box, radius: float) -> bool:
    cx, cy = cross[0] + cross[2] / 2, cross[1] + cross[3] / 2
    bx, by = box[0] + box[2] / 2, box[1] + box[3] / 2
    return abs(bx - cx) <= radius and abs(by - cy) <= radius


def _caliper_number(grey: np.ndarray, strokes: np.ndarray, cross: Box, others: Sequence[Box],
                    config: TextConfig) -> Box | None:  # fmt: skip
    """Box of a glyph beside the cross (touching it or not), drawn in its grey: the cross's arms and the dots
    of its measurement line are taken away first (a dot is smaller than a glyph)."""
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
        bx, by, bw, bh, _area = (int(v) for v in stats[k])
        box = (bx + x0, by + y0, bw, bh)
        if not (config.min_height <= bh <= config.max_height and bw <= 0.8 * bh):  # a digit is narrow
            continue
        if any(_inside((c[0] + c[2] // 2, c[1] + c[3] // 2), box) or _overlaps(box, c) for c in others):
            continue  # another cross
        ink = grey[y0 : y0 + window.shape[0], x0 : x0 + window.shape[1]][labels == k]
        middle = float(np.median(ink))
        if abs(middle - level) <= config.number_tolerance and np.abs(ink - middle).mean() <= config.number_tolerance:
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
    read: list[str]  # per box, what was read
    crosses: tuple[Box, ...]  # the caliper crosses, less those that were part of a line of text


def find_text(grey: np.ndarray, config: TextConfig, crosses: Sequence[Box], skip: Box | None) -> TextFound:
    """Lines of text read by OCR, and the caliper numbers beside crosses."""
    strokes, found = glyphs(grey, config)
    found = [b for b in found if skip is None or not _overlaps(b, skip)]
    centres = [(c[0] + c[2] // 2, c[1] + c[3] // 2) for c in crosses]
    # The cross's own strokes: the one through its centre, or (a hollow cursor's) arms inside its box.
    on_cross = [b for b in found if any(_inside(p, b) or _within(b, c) for p, c in zip(centres, crosses))]
    free = [b for b in found if b not in on_cross]
    lines = [line for line in text_lines(free, config) if len(line) >= config.min_glyphs]
    regions = [_union(line) for line in lines]
    # What is read is the frame's own grey glyphs, inverted (dark on white), with everything further than
    # a margin from the strokes whitened: Tesseract reads smooth grey glyphs more surely than the stroke
    # mask's blocky ones, and the tissue around them only lowers its confidence. Each margin is read; a word
    # counts if any reading is confident enough.
    words = []
    for margin in config.ink_margins:
        crops = []
        for x, y, w, h in regions:
            window = (slice(max(0, y - 3), y + h + 3), slice(max(0, x - 3), x + w + 3))
            near = cv2.dilate(strokes[window].astype(np.uint8), np.ones((2 * margin + 1,) * 2)) > 0
            crops.append(np.where(near, 255 - grey[window], 255).astype(np.uint8))
        words += ocr.read_crops(crops, config.ocr_scale, config.whitelist)
    boxes, read = [], []
    for k, region in enumerate(regions):
        kept = list(dict.fromkeys(w.text for w in words if w.crop == k and w.confidence >= config.min_confidence))
        if any(_alnum(t) >= config.min_chars for t in kept):
            boxes.append(region)
            read.append(" ".join(kept))
    # A '+' in or right beside a line of letters is a glyph's crossing ('t', the 4 of "LT 3-4"), not a caliper.
    letters = [(x - h, y, w + 2 * h, h) for (x, y, w, h), r in zip(boxes, read) if sum(c.isalpha() for c in r) >= 2]
    kept = tuple(c for c, p in zip(crosses, centres) if not any(_inside(p, b) for b in letters))
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


# --- One image, all images ----------------------------------------------------------------------------


def frame_of(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A raw image decoded by the project's rules: (H, W, 3) uint8 RGB and the (H, W) float32 max of R, G, B."""
    rgb = np.asarray(to_rgb(decode(path)), dtype=np.uint8)
    return rgb, rgb.max(axis=2).astype(np.float32)


def inspect(path: Path, label: str, config: OverlaysConfig) -> OverlayRow:
    """Everything drawn on one raw image."""
    rgb, grey = frame_of(path)
    logo = find_logo(grey, config.logo)
    colour = find_colour(rgb, config.colour)
    crosses = find_crosses(grey, config.calipers, skip=logo)
    text = find_text(grey, config.text, crosses, skip=logo)
    return OverlayRow(
        label=label,
        calipers=bool(text.crosses),
        text=bool(text.boxes),
        colour=colour is not None,
        logo=logo is not None,
        view=view_of(text.read, config.view),
        caliper_boxes=text.crosses,
        text_boxes=text.boxes,
        colour_box=colour,
        logo_box=logo,
        text_read=" | ".join(text.read),
    )


def _inspect_entry(entry: tuple[Path, str], config: OverlaysConfig) -> OverlayRow:
    return inspect(entry[0], entry[1], config)


def inspect_all(raw_dir: Path, entries: list[ManifestEntry], config: OverlaysConfig, workers: int) -> dict:
    """file -> OverlayRow for every manifest image, `workers` processes sharing the work."""
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir}: not found. Run `dvc repro download` first.")
    ocr.check_tesseract()
    jobs = [(raw_dir / e.file, e.label) for e in entries]
    one = functools.partial(_inspect_entry, config=config)
    bar = progress(total=len(jobs), desc="overlays", unit="image")
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            rows = []
            for row in pool.imap(one, jobs, chunksize=8):
                rows.append(row)
                bar.update(1)
    else:
        rows = []
        for job in jobs:
            rows.append(one(job))
            bar.update(1)
    bar.close()
    return {e.file: row for e, row in zip(entries, rows)}


# --- Summary and contact sheets -----------------------------------------------------------------------


def summarize(rows: dict[str, OverlayRow]) -> dict:
    """Per class, how many images have each kind of mark, any operator mark, and each view."""
    classes = sorted({r.label for r in rows.values()})
    out = {}
    for c in [*classes, "total"]:
        mine = [r for r in rows.values() if c in ("total", r.label)]
        counts = {k: sum(r.flag(k) for r in mine) for k in KINDS}
        counts["any_operator_mark"] = sum(r.calipers or r.text or r.colour for r in mine)
        counts.update({f"view_{v}": sum(r.view == v for r in mine) for v in ("breast", "axilla", "unknown")})
        out[c] = {"images": len(mine), **counts}
    return out


def _marked(path: Path, boxes: Sequence[Box], colour: tuple[int, int, int]) -> Image.Image:
    """The image with a rectangle around each box, drawn thick enough to survive the thumbnail."""
    image = to_rgb(decode(path))
    draw = ImageDraw.Draw(image)
    width = max(2, image.width // 160)
    for x, y, w, h in boxes:
        draw.rectangle([x - width, y - width, x + w + width, y + h + width], outline=colour, width=width)
    return image


def overlay_sheet(raw_dir: Path, rows: dict[str, OverlayRow], kind: str, path: Path, per_row: int = 8) -> None:
    """Every image flagged for one kind (calipers, text, colour, axilla), its marks boxed, in file order."""

    def boxes(r: OverlayRow) -> tuple[Box, ...]:
        if kind == "calipers":
            return r.caliper_boxes
        if kind == "colour":
            return (r.colour_box,) if r.colour_box else ()
        return r.text_boxes

    flagged = [(f, r) for f, r in rows.items() if (r.view == "axilla" if kind == "axilla" else r.flag(kind))]
    cells = [
        (_marked(raw_dir / f, boxes(r), (255, 0, 0)), f"{Path(f).name}\n{r.text_read[:28] if kind != 'colour' else ''}")
        for f, r in flagged
    ]
    rows_of_cells = [cells[i : i + per_row] for i in range(0, len(cells), per_row)]
    what = {
        "calipers": "caliper crosses (red boxes)",
        "text": "operator text (red boxes; the caption is what OCR read)",
        "colour": "colour (red box: around every coloured pixel)",
        "axilla": "views whose text names the axilla",
    }[kind]
    contact_sheet(rows_of_cells, path, f"Overlay audit: {len(flagged)} images with {what}", thumb=150)


@dataclass(frozen=True)
class OverlayFiles:
    """What the overlays stage writes (paths from dvc.yaml)."""

    table: Path
    sheets: dict[str, Path]  # calipers, text, colour, axilla -> PNG


def run_overlays(raw_dir: Path, entries: list[ManifestEntry], config: OverlaysConfig, out: OverlayFiles,
                 workers: int) -> dict:  # fmt: skip
    """Inspect every manifest image, write overlays.csv and the contact sheets; returns the per-class counts."""
    rows = inspect_all(raw_dir, entries, config, workers)
    write_overlays(out.table, rows)
    for kind, path in out.sheets.items():
        overlay_sheet(raw_dir, rows, kind, path)
    return summarize(rows)
