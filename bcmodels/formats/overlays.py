"""The overlay audit's files: data/audit/overlays.csv (what is drawn on every raw image, written by the
overlays stage) and data/overlay_labels.csv (two samples labelled by hand, read by the overlays check).

overlays.csv has one row per image: 0/1 columns calipers, text, colour, logo; view (breast, axilla or
unknown); where the marks are, as boxes `x y w h` (pixels of the raw image) joined by `;`; and the text read.

overlay_labels.csv holds the same columns for two random samples drawn by overlays.check in params.yaml
(`python -m stages.overlays_check --draw` lists them), told apart by its `sample` column:
  tuning    50 images of each class (seed 23); the detector's thresholds were set looking at its misses
  held_out  80 of each class drawn from the other images (seed 2024), labelled before the detector was run
            on them and never used to set anything
Each image was labelled by eye, looked at whole at its native size and zoomed (2-4x) where a mark could hide:
the four corners (the top-left 4x: the logo), the lesion (a faint grey caliper cross), a clipped word at an edge:
  calipers  a caliper cross ('+') or a dotted measurement line, operator-placed; a body-marker pictogram is not one
            (nor is a biopsy needle's straight line)
  text      letters or digits placed by the operator: labels (RIGHT BREAST, RT UOQ, LT AXILLA, rt3), caliper
            numbers, readouts, a word clipped at the frame's edge; not the scanner's logo, not a pictogram
  colour    colour where a grey image should be grey: Doppler flow or its box, coloured text or marks
  logo      any part of the scanner's LOGIQ E9 logo (white glyphs in a black outline, top-left); a black sliver
            at the edge with no white glyph is not counted
  view      axilla where the operator's text names the axilla or its nodes (AXILLA, AX, AX TAIL, nodes),
            breast where it names a place in the breast (BREAST, a side with a clock position or quadrant),
            unknown where no text says (most images: the picture alone does not tell; a side alone, RT or LT,
            names no place)
  note      what was seen, free text
"""

from __future__ import annotations

from dataclasses import dataclass

from bcmodels.errors import DataError
from bcmodels.io.files import read_csv, write_csv

KINDS = ("calipers", "text", "colour", "logo")
VIEWS = ("breast", "axilla", "unknown")
SAMPLES = ("tuning", "held_out")  # the labelled samples: the detector tuned on the first, measured on both
OVERLAY_COLUMNS = (
    "file",
    "class",
    *KINDS,
    "view",
    "caliper_boxes",
    "text_boxes",
    "colour_box",
    "logo_box",
    "text_read",
)
LABEL_COLUMNS = ("file", "class", "sample", *KINDS, "view", "note")
MADE_BY = "dvc repro overlays"
LABELLED_BY = "labelling the samples by hand (see bcmodels/formats/overlays.py)"

Box = tuple[int, int, int, int]  # x, y, width, height in pixels of the raw image


@dataclass(frozen=True)
class OverlayRow:
    """What is drawn on one image."""

    label: str
    calipers: bool
    text: bool
    colour: bool
    logo: bool
    view: str
    caliper_boxes: tuple[Box, ...]
    text_boxes: tuple[Box, ...]
    colour_box: Box | None
    logo_box: Box | None
    text_read: str  # the words read, ` | ` between lines

    def flag(self, kind: str) -> bool:
        return bool(getattr(self, kind))


@dataclass(frozen=True)
class LabelRow:
    """One image of a hand-labelled sample."""

    label: str
    sample: str  # tuning or held_out
    calipers: bool
    text: bool
    colour: bool
    logo: bool
    view: str
    note: str

    def flag(self, kind: str) -> bool:
        return bool(getattr(self, kind))


def boxes_text(boxes: tuple[Box, ...]) -> str:
    return ";".join(" ".join(map(str, b)) for b in boxes)


def parse_boxes(text: str) -> tuple[Box, ...]:
    boxes = []
    for part in filter(None, text.split(";")):
        values = tuple(int(v) for v in part.split())
        if len(values) != 4:
            raise ValueError(f"a box has four numbers, got {part!r}")
        boxes.append(values)
    return tuple(boxes)


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise ValueError(f"expected 0 or 1, got {value!r}")
    return value == "1"


def _sample(value: str) -> str:
    if value not in SAMPLES:
        raise ValueError(f"sample must be one of {', '.join(SAMPLES)}, got {value!r}")
    return value


def _view(value: str) -> str:
    if value not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {value!r}")
    return value


def write_overlays(path, rows: dict[str, OverlayRow]) -> None:
    def cells(file: str, r: OverlayRow) -> list:
        one = lambda b: "" if b is None else boxes_text((b,))  # noqa: E731
        flags = [int(r.flag(k)) for k in KINDS]
        boxes = [boxes_text(r.caliper_boxes), boxes_text(r.text_boxes), one(r.colour_box), one(r.logo_box)]
        return [file, r.label, *flags, r.view, *boxes, r.text_read]

    write_csv(path, OVERLAY_COLUMNS, (cells(f, r) for f, r in rows.items()))


def read_overlays(path) -> dict[str, OverlayRow]:
    """file -> its row of overlays.csv."""
    try:
        rows = {}
        for r in read_csv(path, OVERLAY_COLUMNS, MADE_BY):
            colour, logo = parse_boxes(r["colour_box"]), parse_boxes(r["logo_box"])
            rows[r["file"]] = OverlayRow(
                r["class"],
                *(_flag(r[k]) for k in KINDS),
                _view(r["view"]),
                parse_boxes(r["caliper_boxes"]),
                parse_boxes(r["text_boxes"]),
                colour[0] if colour else None,
                logo[0] if logo else None,
                r["text_read"],
            )
        return rows
    except ValueError as err:
        raise DataError(f"{path}: not an overlays file of this project ({err}); rerun `{MADE_BY}`") from None


def write_labels(path, labels: dict[str, LabelRow]) -> None:
    def cells(file: str, r: LabelRow) -> list:
        return [file, r.label, r.sample, *(int(r.flag(k)) for k in KINDS), r.view, r.note]

    write_csv(path, LABEL_COLUMNS, (cells(f, r) for f, r in labels.items()))


def read_labels(path) -> dict[str, LabelRow]:
    """file -> its hand label (the samples apart by LabelRow.sample)."""
    try:
        labels: dict[str, LabelRow] = {}
        for r in read_csv(path, LABEL_COLUMNS, LABELLED_BY):
            if r["file"] in labels:
                raise ValueError(f"{r['file']} is labelled twice")
            labels[r["file"]] = LabelRow(
                r["class"], _sample(r["sample"]), *(_flag(r[k]) for k in KINDS), _view(r["view"]), r["note"]
            )
        return labels
    except ValueError as err:
        raise DataError(f"{path}: a label is not valid ({err}); fix that row") from None
