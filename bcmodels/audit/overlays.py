"""What the sonographer and the scanner drew on each raw image: caliper crosses, text, colour, the logo, and
which view the text names. A model can learn a class from these marks instead of the lesion (Pawlowska,
Karwat and Zolek 2023 count 295 BUSI images with annotations and about 70 of the axilla).

This module runs the overlays stage: each image through the finders, the table, the per-class counts and the
contact sheets. How each mark is found (settings: overlays in params.yaml; the frame is the max of R, G, B,
so yellow marks count): calipers in bcmodels/audit/calipers.py, text and the view in bcmodels/audit/text.py
(read by bcmodels/audit/ocr.py), the logo and colour in bcmodels/audit/colour_logo.py.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bcmodels.audit import ocr
from bcmodels.audit.calipers import find_crosses
from bcmodels.audit.colour_logo import find_colour, find_logo
from bcmodels.audit.text import find_text, view_of
from bcmodels.config.schema import OverlaysConfig
from bcmodels.errors import DataError
from bcmodels.formats.manifest import ManifestEntry
from bcmodels.formats.overlays import KINDS, Box, OverlayRow, write_overlays
from bcmodels.io.images import decode, to_rgb
from bcmodels.io.progress import progress
from bcmodels.render.contact_sheet import contact_sheet


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
    chroma = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    labels = (*config.view.axilla_words, *config.view.breast_words)
    text = find_text(grey, chroma >= config.colour.min_chroma, config.text, crosses, skip=logo, labels=labels)
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
