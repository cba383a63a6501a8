"""predict's output: the CSV file and the table of the rows, the Grad-CAM figures and their contact sheet, and
the check that --out is a folder predict may replace."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from bcmodels.errors import ConfigError
from bcmodels.models.gradcam import heatmap_figure, overlay
from bcmodels.predict.classify import HeatMap, LoadedModel, Row
from bcmodels.render.contact_sheet import contact_sheet
from bcmodels.render.outline import draw_outline

CSV_NAME = "predictions.csv"
GRADCAM_DIR = "gradcam"
SHEET_NAME = "contact_sheet.png"
OWN_ENTRIES = {CSV_NAME, GRADCAM_DIR}  # what predict writes in --out: anything else there is not its own
MAX_SHEET_IMAGES = 120  # images on the contact sheet: BUSI's test set fits
SHEET_CELLS = 6  # thumbnails per contact-sheet row (at least one image per row)
SHEET_THUMB = 160  # pixels


# ---------------------------------------------------------------------------------------------- --out


def check_out_dir(out: Path) -> None:
    """--out must be a new folder or one predict wrote (it is replaced as a whole), and not a link: replacing
    a link's target would write where the link points, replacing the link would leave the target stale."""
    if out.is_symlink():
        raise ConfigError(
            f"--out {out}: a symbolic link; predict replaces its folder as a whole, so name a real folder (a new "
            "one, or one of its earlier runs)"
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: not a folder")
    blocked = next((p for p in out.parents if p.exists() or p.is_symlink()), None)
    if blocked is not None and not blocked.is_dir():
        raise ConfigError(f"--out {out}: {blocked} is not a folder; name a folder --out can be made in")
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise ConfigError(f"--out {out}: the current folder or one above it; name a folder of its own")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OWN_ENTRIES)
        if foreign:
            raise ConfigError(
                f"--out {out}: holds files predict did not write ({', '.join(foreign[:3])}); it replaces its "
                "folder as a whole, so name a new folder or one of its earlier runs"
            )


# ---------------------------------------------------------------------------------------------- CSV and table


def csv_header(models: Sequence[LoadedModel], explained: bool, masked: bool = False) -> list[str]:
    header = ["file"]
    for m in models:
        header += [f"{m.label}/predicted", *(f"{m.label}/p_{c}" for c in m.checkpoint.classes)]
        if explained:
            header.append(f"{m.label}/heatmap")
        if masked:
            header.append(f"{m.label}/lesion_share")
    return [*header, "error"]


def _share(value: float | None) -> str:
    """A lesion share as a CSV cell: empty where there is none (no mask files, no lesion, an empty map)."""
    return "" if value is None or np.isnan(value) else f"{value:.4f}"


def csv_rows(
    rows: Sequence[Row], models: Sequence[LoadedModel], explained: bool, masked: bool = False
) -> Iterator[list[str]]:
    for row in rows:
        cells = [row.name]
        for m in models:
            p = row.probs.get(m.label)
            k = len(m.checkpoint.classes)
            if p is None:
                cells += [""] * (k + 1)
            else:
                cells += [m.checkpoint.classes[int(p.argmax())], *(f"{x:.6f}" for x in p)]
            if explained:
                cells.append(row.heatmaps.get(m.label, ""))
            if masked:
                cells.append(_share(row.lesion_share.get(m.label)))
        yield [*cells, row.error or ""]


def format_table(rows: Sequence[Row], models: Sequence[LoadedModel]) -> str:
    """The predictions as aligned text: file, then per model the class and the probabilities, then errors."""
    header = ["file"]
    for m in models:
        header += [m.label, *m.checkpoint.classes]
    header.append("error")
    body = []
    for row in rows:
        cells = [row.name]
        for m in models:
            p = row.probs.get(m.label)
            k = len(m.checkpoint.classes)
            cells += ["-"] * (k + 1) if p is None else [m.checkpoint.classes[int(p.argmax())], *(f"{x:.3f}" for x in p)]
        body.append([*cells, row.error or ""])
    if not any(row[-1] for row in body):
        header, body = header[:-1], [row[:-1] for row in body]
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]
    numeric = {j for j in range(1, len(header)) if body and all(_is_number(r[j]) for r in body)}
    lines = [
        "  ".join(
            cell.rjust(w) if j in numeric else cell.ljust(w) for j, (cell, w) in enumerate(zip(r, widths))
        ).rstrip()
        for r in [header, *body]
    ]
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    return text == "-" or re.fullmatch(r"\d+\.\d+", text) is not None


# ---------------------------------------------------------------------------------------------- Grad-CAM


@dataclass
class SheetCell:
    image: Image.Image
    caption: str


def _file_stem(name: str) -> str:
    base = PurePosixPath(name.replace("\\", "/").rsplit(":", 1)[-1]).name
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return re.sub(r"[^A-Za-z0-9._()-]+", "_", stem).strip("._")[:80] or "image"


def _heatmap_path(label: str, index: int, total: int, name: str) -> str:
    digits = max(4, len(str(total)))
    return f"{GRADCAM_DIR}/{label}/{index + 1:0{digits}d}_{_file_stem(name)}.png"


def _caption(name: str, label: str, classes: tuple[str, ...], p: np.ndarray, share: float | None) -> str:
    base = _file_stem(name)
    base = base if len(base) <= 24 else base[:23] + "~"
    k = int(p.argmax())
    lesion = f", in lesion {_share(share)}" if _share(share) else ""
    return f"{base}\n{label}\n{classes[k]} {p[k]:.2f}{lesion}"


class HeatMapFiles:
    """Writes each heat map below out as it is computed (a classify.HeatMapWriter), titled with the predicted
    class and its probability (and the map's share inside the lesion, whose edge is drawn in green, where the
    input has mask files), and keeps thumbnails of the first MAX_SHEET_IMAGES rows for the contact sheet."""

    def __init__(self, out: Path, rows: int) -> None:
        self.out, self.rows = out, rows
        self.sheet: list[list[SheetCell]] = [[] for _ in range(min(rows, MAX_SHEET_IMAGES))]

    def __call__(self, h: HeatMap) -> str:
        c, label = h.model.checkpoint, h.model.label
        k = int(h.probs.argmax())
        relative = _heatmap_path(label, h.index, self.rows, h.name)
        layer = h.model.layer.name if h.model.layer else "?"
        title = f"{h.name}\n{label}: {c.classes[k]} {h.probs[k]:.3f} (Grad-CAM on {layer})"
        image = h.image
        if h.mask is not None:
            share = _share(h.lesion_share)
            title += f"\nshare of the map inside the lesion (green edge): {share or 'none (no lesion in the input)'}"
            image = draw_outline(image, h.mask)
        target = self.out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        heatmap_figure(image, h.cam, title).save(target, format="PNG")
        if h.index < MAX_SHEET_IMAGES:
            shown = overlay(h.image, h.cam)
            thumb = Image.fromarray(shown if h.mask is None else draw_outline(shown, h.mask))
            small = thumb.width < SHEET_THUMB
            thumb = thumb.resize(
                (SHEET_THUMB, SHEET_THUMB), Image.Resampling.NEAREST if small else Image.Resampling.BOX
            )
            self.sheet[h.index].append(SheetCell(thumb, _caption(h.name, label, c.classes, h.probs, h.lesion_share)))
        return relative

    def write_sheet(self, models: Sequence[LoadedModel], classified: int) -> None:
        """gradcam/contact_sheet.png below out: the kept thumbnails, one image's models side by side."""
        groups = [cells for cells in self.sheet if cells]
        per_row = max(1, SHEET_CELLS // max(1, len(models)))
        rows = [
            [(cell.image, cell.caption) for cells in groups[start : start + per_row] for cell in cells]
            for start in range(0, len(groups), per_row)
        ]
        layers = ", ".join(f"{m.label} on {m.layer.name}" for m in models if m.layer)
        shown = (
            f"the first {len(groups)} of {classified} images" if classified > len(groups) else f"{len(groups)} images"
        )
        title = f"Grad-CAM heat maps of the predicted class ({layers}), {shown}; red: most evidence"
        contact_sheet(rows, self.out / GRADCAM_DIR / SHEET_NAME, title, thumb=SHEET_THUMB)
