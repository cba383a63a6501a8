from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytesseract
import pytest
from PIL import Image, ImageDraw, ImageFont

from bcmodels.audit import ocr
from bcmodels.audit.overlay_check import check_sample, draw_sample, score
from bcmodels.audit.overlays import OverlayFiles, inspect, inspect_all, run_overlays
from bcmodels.data.busi import DATASET_DIR
from bcmodels.errors import DataError
from bcmodels.formats.manifest import ManifestEntry, read_manifest
from bcmodels.formats.overlays import LabelRow, OverlayRow, read_labels, read_overlays, write_overlays
from tests.conftest import PROJECT_ROOT, REAL_ZIP, project_params, requires_real_zip
from tests.synthetic import add_speckle, make_scan

CONFIG = project_params().overlays
LABELS = PROJECT_ROOT / "data" / "audit" / "overlay_labels.csv"
SIZE = (560, 460)  # a typical BUSI frame


def _tissue(seed: int) -> Image.Image:
    """A speckled synthetic scan, grey in RGB like BUSI's frames."""
    scan = add_speckle(make_scan(seed, height=SIZE[1], width=SIZE[0]), seed)
    return Image.fromarray((np.clip(scan, 0, 1) * 200).astype(np.uint8)).convert("RGB")


def _cross(draw: ImageDraw.ImageDraw, x: int, y: int, arm: int = 6, fill=(226, 226, 226)) -> None:
    draw.rectangle([x - arm, y - 1, x + arm, y], fill=fill)
    draw.rectangle([x - 1, y - arm, x, y + arm], fill=fill)


def _font(size: int = 15) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled FreeType font: a bold-ish sans like BUSI's


def _save(image: Image.Image, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    image.save(path)
    return path


def _inspect(image: Image.Image, tmp_path: Path, name: str) -> OverlayRow:
    return inspect(_save(image, tmp_path, name), "benign", CONFIG)


def test_a_clean_scan_has_no_marks(tmp_path):
    for seed in (1, 2, 3):
        row = _inspect(_tissue(seed), tmp_path, f"clean{seed}")
        assert (row.calipers, row.text, row.colour, row.logo, row.view) == (False, False, False, False, "unknown")


def test_caliper_crosses_are_found_where_they_were_drawn(tmp_path):
    image = _tissue(4)
    draw = ImageDraw.Draw(image)
    _cross(draw, 200, 150)
    _cross(draw, 320, 260)
    row = _inspect(image, tmp_path, "calipers")
    assert row.calipers and not row.colour
    centres = sorted((x + w // 2, y + h // 2) for x, y, w, h in row.caliper_boxes)
    assert len(centres) == 2
    for (cx, cy), (x, y) in zip(centres, [(200, 150), (320, 260)]):
        assert abs(cx - x) <= 2 and abs(cy - y) <= 2


def test_a_faint_grey_cursor_cross_with_a_hollow_centre_is_a_caliper(tmp_path):
    image = _tissue(5)
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in ((280, 199, 285, 201), (291, 199, 296, 201), (287, 192, 289, 197), (287, 203, 289, 208)):
        draw.rectangle([x0, y0, x1, y1], fill=(200, 200, 200))  # four arms around an empty centre
    row = _inspect(image, tmp_path, "cursor")
    assert row.calipers


def test_operator_text_is_read_and_names_the_view(tmp_path):
    for words, view in (("RIGHT BREAST", "breast"), ("LT AXILLA", "axilla")):
        image = _tissue(6)
        ImageDraw.Draw(image).text((60, 380), words, fill=(228, 228, 228), font=_font())
        row = _inspect(image, tmp_path, view)
        assert row.text and not row.calipers, words
        assert words.split()[-1] in row.text_read
        assert row.view == view
        (x, y, w, _), *_ = row.text_boxes
        assert 50 <= x <= 70 and 375 <= y <= 395 and w > 60


def test_a_colour_patch_is_colour_and_a_grey_one_is_not(tmp_path):
    image = _tissue(7)
    ImageDraw.Draw(image).rectangle([300, 100, 310, 110], fill=(200, 30, 20))
    row = _inspect(image, tmp_path, "colour")
    assert row.colour and row.colour_box == (300, 100, 11, 11)
    image = _tissue(7)
    ImageDraw.Draw(image).rectangle([300, 100, 310, 110], fill=(120, 120, 120))
    assert not _inspect(image, tmp_path, "grey").colour


def test_the_scanners_outlined_logo_in_the_corner_is_logo_not_text(tmp_path):
    image = _tissue(8)
    ImageDraw.Draw(image).text((-8, -3), "GIQ", fill=(230, 230, 230), font=_font(16), stroke_width=2, stroke_fill=0)
    row = _inspect(image, tmp_path, "logo")
    assert row.logo and not row.text and not row.calipers
    x, y, w, _ = row.logo_box
    assert x == 0 and y == 0 and w < 60
    # The same glyphs without the outline are the operator's text, not the logo.
    plain = _tissue(8)
    ImageDraw.Draw(plain).text((200, 300), "GIQ", fill=(230, 230, 230), font=_font(16))
    assert not _inspect(plain, tmp_path, "plain").logo


def test_overlays_csv_round_trip(tmp_path):
    rows = {
        "benign/benign (1).png": OverlayRow(
            "benign", True, True, False, True, "axilla", ((1, 2, 3, 4), (5, 6, 7, 8)), ((9, 9, 40, 12),), None,
            (0, 0, 30, 20), "LT AXILLA | #",
        ),
        "normal/normal (2).png": OverlayRow(
            "normal", False, False, True, False, "unknown", (), (), (1, 1, 2, 2), None, ""
        ),
    }  # fmt: skip
    write_overlays(tmp_path / "overlays.csv", rows)
    assert read_overlays(tmp_path / "overlays.csv") == rows
    (tmp_path / "bad.csv").write_text((tmp_path / "overlays.csv").read_text().replace(",axilla,", ",armpit,"))
    with pytest.raises(DataError, match=r"bad\.csv.*view"):
        read_overlays(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="dvc repro overlays"):
        read_overlays(tmp_path / "missing.csv")


def test_a_missing_tesseract_is_one_error_saying_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", str(tmp_path / "no-such-tesseract"))
    with pytest.raises(DataError, match="apt-get install -y tesseract-ocr"):
        ocr.check_tesseract()
    raw = tmp_path / "raw"
    (raw / "benign").mkdir(parents=True)
    _tissue(1).save(raw / "benign" / "a.png")
    with pytest.raises(DataError, match="Tesseract OCR not found"):
        inspect_all(raw, [ManifestEntry("benign/a.png", "benign", "0" * 64)], CONFIG, workers=1)


def test_the_stage_writes_the_table_and_a_sheet_per_kind(tmp_path):
    raw = tmp_path / "raw"
    (raw / "benign").mkdir(parents=True)
    marked = _tissue(9)
    _cross(ImageDraw.Draw(marked), 250, 200)
    marked.save(raw / "benign" / "marked.png")
    _tissue(10).save(raw / "benign" / "clean.png")
    entries = [ManifestEntry(f"benign/{n}.png", "benign", "0" * 64) for n in ("marked", "clean")]
    sheets = {k: tmp_path / f"{k}.png" for k in ("calipers", "text", "colour", "axilla")}
    counts = run_overlays(raw, entries, CONFIG, OverlayFiles(tmp_path / "overlays.csv", sheets), workers=2)
    rows = read_overlays(tmp_path / "overlays.csv")
    assert [r.calipers for r in rows.values()] == [True, False]
    assert counts["benign"]["calipers"] == 1 and counts["total"]["images"] == 2
    assert all(p.is_file() for p in sheets.values())


def test_scores_count_hits_misses_and_false_alarms_per_kind():
    def found(calipers: bool, view: str) -> OverlayRow:
        return OverlayRow("benign", calipers, False, False, False, view, (), (), None, None, "")

    def label(calipers: bool, view: str) -> LabelRow:
        return LabelRow("benign", calipers, False, False, False, view, "")

    labels = {"a": label(True, "axilla"), "b": label(True, "unknown"), "c": label(False, "unknown")}
    metrics = score({"a": found(True, "axilla"), "b": found(False, "unknown"), "c": found(True, "breast")}, labels)
    assert metrics["calipers"]["true_positives"] == 1 and metrics["calipers"]["false_negatives"] == 1
    assert metrics["calipers"]["precision"] == 0.5 and metrics["calipers"]["recall"] == 0.5
    assert metrics["text"]["precision"] is None  # nothing found, nothing to be precise about
    assert metrics["view"]["agreement"] == round(2 / 3, 4)
    wrong = {(d["file"], d["kind"]) for d in metrics["disagreements"]}
    assert wrong == {("b", "calipers"), ("c", "calipers"), ("c", "view")}


def test_the_labelled_sample_is_the_seeded_draw_of_the_manifest():
    entries = read_manifest(PROJECT_ROOT / "data" / "busi_manifest.tsv")
    drawn = draw_sample(entries, CONFIG.check)
    assert drawn == draw_sample(entries, CONFIG.check)
    labels = read_labels(LABELS)
    check_sample(labels, drawn)
    assert len(labels) == 3 * CONFIG.check.per_class
    other = draw_sample(entries, dataclasses.replace(CONFIG.check, seed=CONFIG.check.seed + 1))
    with pytest.raises(DataError, match="not the draw"):
        check_sample(labels, other)


# Real images whose marks were checked by eye (and are in the labelled sample), with what is on them.
MARKS = ("calipers", "text", "colour", "logo")
REAL = {
    "benign/benign (141).png": ((1, 1, 0, 1), "unknown"),  # two crosses numbered 1 and 2, dotted lines
    "benign/benign (225).png": ((0, 1, 0, 1), "axilla"),  # LT AXILLA
    "benign/benign (277).png": ((0, 1, 1, 1), "breast"),  # Doppler box and flow, yellow RT UOQ
    "malignant/malignant (118).png": ((1, 0, 0, 1), "unknown"),  # one faint grey cursor cross
    "normal/normal (5).png": ((0, 0, 0, 1), "unknown"),  # the clipped logo only
    "normal/normal (46).png": ((0, 0, 0, 0), "unknown"),  # nothing
}


@requires_real_zip
@pytest.mark.parametrize("file", sorted(REAL))
def test_real_images_checked_by_eye(file, tmp_path):
    with zipfile.ZipFile(REAL_ZIP) as archive:
        path = tmp_path / Path(file).name
        path.write_bytes(archive.read(f"{DATASET_DIR}/{file}"))
    row = inspect(path, file.split("/")[0], CONFIG)
    marks, view = REAL[file]
    assert (tuple(int(row.flag(k)) for k in MARKS), row.view) == (marks, view)
    label = read_labels(LABELS)[file]
    assert (tuple(int(label.flag(k)) for k in MARKS), label.view) == (marks, view)
