from __future__ import annotations

import dataclasses
import re
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytesseract
import pytest
from PIL import Image, ImageDraw, ImageFont

from bcmodels.audit import ocr, text
from bcmodels.audit.calipers import find_crosses
from bcmodels.audit.overlay_check import check_samples, draw_samples, score, summary_lines
from bcmodels.audit.overlays import OverlayFiles, frame_of, inspect, inspect_all, run_overlays
from bcmodels.data.busi import DATASET_DIR
from bcmodels.errors import DataError
from bcmodels.formats.manifest import ManifestEntry, read_manifest
from bcmodels.formats.overlays import (
    SAMPLES,
    LabelRow,
    OverlayRow,
    read_labels,
    read_overlays,
    write_labels,
    write_overlays,
)
from tests.conftest import PROJECT_ROOT, REAL_ZIP, project_params, requires_real_zip
from tests.synthetic import add_speckle, make_scan

CONFIG = project_params().overlays
LABELS = PROJECT_ROOT / "data" / "overlay_labels.csv"
SIZE = (560, 460)  # a typical BUSI frame


def _tissue(seed: int) -> Image.Image:
    """A speckled synthetic scan, grey in RGB like BUSI's frames; its brightest reflectors saturate at 255."""
    scan = add_speckle(make_scan(seed, height=SIZE[1], width=SIZE[0]), seed)
    return Image.fromarray((np.clip(scan, 0, 1) * 255).astype(np.uint8)).convert("RGB")


def _cross(draw: ImageDraw.ImageDraw, x: int, y: int, arm: int = 6, fill=(226, 226, 226)) -> None:
    draw.rectangle([x - arm, y - 1, x + arm, y], fill=fill)
    draw.rectangle([x - 1, y - arm, x, y + arm], fill=fill)


def _font(size: int = 15) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled FreeType font: a bold-ish sans like BUSI's


def _bold(image: Image.Image, xy: tuple[int, int], words: str, fill=(228, 228, 228), size: int = 15) -> None:
    """Text drawn like BUSI's labels: strokes 2-3 pixels wide, in one grey."""
    ImageDraw.Draw(image).text(xy, words, fill=fill, font=_font(size), stroke_width=1, stroke_fill=fill)


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


def _cursor(image: Image.Image, x: int, y: int, grey: int = 150, noise: float = 0.0) -> Image.Image:
    """A grey hollow-centre cursor '+' centred at (x, y), its arms one grey (or speckled by noise)."""
    pixels = np.asarray(image).copy()
    rng = np.random.default_rng(0)
    for x0, y0, x1, y1 in ((x - 7, y - 1, x - 2, y + 1), (x + 4, y - 1, x + 9, y + 1),
                           (x, y - 8, x + 2, y - 3), (x, y + 3, x + 2, y + 8)):  # fmt: skip
        arm = grey + rng.normal(0, noise, (y1 - y0 + 1, x1 - x0 + 1, 1))
        pixels[y0 : y1 + 1, x0 : x1 + 1] = np.clip(arm, 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def test_a_flat_grey_cursor_beside_bright_tissue_is_a_caliper_and_a_speckled_one_is_not(tmp_path):
    # Bright tissue right beside the upper arm: the cursor stands above its brighter flank by less than
    # min_contrast, so only its flatness (every arm one grey) finds it.
    image = _tissue(12)
    ImageDraw.Draw(image).rectangle([290, 186, 295, 195], fill=(205, 205, 205))
    path = _save(_cursor(image, 287, 200), tmp_path, "cursor")
    assert inspect(path, "malignant", CONFIG).calipers
    _, grey = frame_of(path)
    assert find_crosses(grey, dataclasses.replace(CONFIG.calipers, flat_contrast=255)) == []
    speckled = _save(_cursor(image, 287, 200, noise=15), tmp_path, "speckled")
    assert not inspect(speckled, "malignant", CONFIG).calipers


def test_a_lone_caliper_number_with_a_blended_rim_is_text(tmp_path):
    # A small "1" at a cross's corner, its rim blended into dark tissue as BUSI's are: over all its ink it
    # varies by about 35 grey levels, its core (the ink at or above its median) not at all.
    pixels = np.asarray(_tissue(11)).copy()
    pixels[170:215, 238:275] = 60
    one = np.zeros(pixels.shape[:2], np.uint8)
    one[182:195, 258:261] = 1  # the stem
    one[183:186, 256:258] = 1  # the flag
    rim = (cv2.dilate(one, np.ones((3, 3), np.uint8)) > 0) & (one == 0)
    pixels[rim], pixels[one > 0] = 150, 226
    image = Image.fromarray(pixels)
    _cross(ImageDraw.Draw(image), 250, 200)
    row = _inspect(image, tmp_path, "number")
    assert row.calipers and row.text and row.text_read == "#"
    (x, y, _w, h), *_ = row.text_boxes
    assert 254 <= x <= 256 and 180 <= y <= 182 and h >= 13
    # The same cross alone is no text: the '+' is not read as a glyph of its own.
    alone = _tissue(11)
    _cross(ImageDraw.Draw(alone), 250, 200)
    row = _inspect(alone, tmp_path, "alone")
    assert row.calipers and not row.text


def test_text_joined_to_a_bright_streak_of_tissue_is_found_by_taking_the_streak_out(tmp_path, monkeypatch):
    image = _tissue(13)
    ImageDraw.Draw(image).line([(20, 384), (330, 384)], fill=(215, 215, 215), width=3)  # along the letters' tops
    _bold(image, (60, 380), "RT AXILLA")
    path = _save(image, tmp_path, "joined")
    _, grey = frame_of(path)
    _strokes, _found, split = text.glyphs(grey, CONFIG.text)
    assert len(split) >= 2  # glyphs only found once the streak is out
    row = inspect(path, "benign", CONFIG)
    assert row.text
    (x, y, w, _h), *_ = row.text_boxes
    assert 55 <= x <= 65 and 380 <= y <= 392 and w > 50
    monkeypatch.setattr(text, "_without_streaks", lambda grey, config: np.zeros(grey.shape, bool))
    assert not inspect(path, "benign", CONFIG).text


def test_a_glyph_cut_by_the_frames_edge_keeps_a_one_pixel_stem_and_a_hairline_does_not():
    grey = np.full((60, 80), 40, np.float32)
    grey[20:23, 0:6] = 228  # the bar of a T whose stem the frame's left edge cuts to 1 pixel
    grey[20:36, 0] = 228
    grey[20:36, 40] = 228  # a 1-pixel hairline inside the frame
    grey[21:37, 60] = 228  # and the same touching nothing
    _strokes, boxes, _split = text.glyphs(grey, CONFIG.text)
    assert boxes == [(0, 20, 6, 16)]


def test_drawn_text_at_a_saturated_grey_is_tissue_unless_coloured(tmp_path):
    # Saturated reflectors are flat at 255, and OCR reads words in them; BUSI's white text is drawn at 227,
    # its yellow text at 255 in red and green.
    for fill, found in (((228, 228, 228), True), ((255, 255, 255), False), ((255, 255, 0), True)):
        image = _tissue(15)
        _bold(image, (60, 380), "RT UOQ", fill=fill)
        row = _inspect(image, tmp_path, f"text{fill[2]}")
        assert row.text == found, fill
        assert row.colour == (fill[2] == 0)


def test_a_word_naming_a_label_counts_at_any_confidence():
    stems = {"AXIL", "BREA", "RIGH"}
    words = [ocr.Word(0, "RTAXILLA", 0.0), ocr.Word(0, "am", 60.0), ocr.Word(0, "LT", 91.0), ocr.Word(0, "7", 95.0)]
    assert text._counted(words, stems, CONFIG.text) == ["LT", "RTAXILLA"]
    assert text._counted([ocr.Word(0, "am", 60.0), ocr.Word(0, "ee", 17.0)], stems, CONFIG.text) == []


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


def _label(calipers: bool, view: str, sample: str = "tuning") -> LabelRow:
    return LabelRow("benign", sample, calipers, False, False, False, view, "")


def test_scores_count_hits_misses_and_false_alarms_per_kind_and_sample():
    def found(calipers: bool, view: str) -> OverlayRow:
        return OverlayRow("benign", calipers, False, False, False, view, (), (), None, None, "")

    labels = {
        "a": _label(True, "axilla"),
        "b": _label(True, "unknown"),
        "c": _label(False, "unknown"),
        "d": _label(True, "unknown", "held_out"),
    }
    detected = {"a": found(True, "axilla"), "b": found(False, "unknown"), "c": found(True, "breast")}
    metrics = score({**detected, "d": found(True, "unknown")}, labels)
    tuning, held_out, both = metrics["tuning"], metrics["held_out"], metrics["both"]
    assert (tuning["images"], held_out["images"], both["images"]) == (3, 1, 4)
    assert tuning["calipers"]["true_positives"] == 1 and tuning["calipers"]["false_negatives"] == 1
    assert tuning["calipers"]["precision"] == 0.5 and tuning["calipers"]["recall"] == 0.5
    assert held_out["calipers"]["precision"] == 1.0 and both["calipers"]["true_positives"] == 2
    # Clopper-Pearson: 1 of 2 is [0.0126, 0.9874]; 1 of 1 is [0.025, 1]; nothing found has no precision.
    assert tuning["calipers"]["recall_95"] == {"low": 0.0126, "high": 0.9874}
    assert held_out["calipers"]["recall_95"] == {"low": 0.025, "high": 1.0}
    assert tuning["text"]["precision"] is None and tuning["text"]["precision_95"] is None
    assert tuning["view"]["agreement"] == round(2 / 3, 4)
    wrong = {(d["file"], d["sample"], d["kind"]) for d in metrics["disagreements"]}
    assert wrong == {("b", "tuning", "calipers"), ("c", "tuning", "calipers"), ("c", "tuning", "view")}
    assert any("held_out (1 images)" in line for line in summary_lines(metrics))
    with pytest.raises(DataError, match="dvc repro -s overlays"):
        score(detected, labels)  # "d" labelled but not in the table


def test_the_two_samples_are_seeded_draws_kept_apart():
    entries = read_manifest(PROJECT_ROOT / "data" / "busi_manifest.tsv")
    drawn = draw_samples(entries, CONFIG.check)
    assert drawn == draw_samples(entries, CONFIG.check)
    tuning, held_out = drawn["tuning"], drawn["held_out"]
    assert not set(tuning) & set(held_out)
    labels = read_labels(LABELS)
    check_samples(labels, drawn)
    for sample, draw in (("tuning", CONFIG.check.tuning), ("held_out", CONFIG.check.held_out)):
        mine = [r for r in labels.values() if r.sample == sample]
        assert len(mine) == 3 * draw.per_class
        assert {c: sum(r.label == c for r in mine) for c in ("benign", "malignant", "normal")} == dict.fromkeys(
            ("benign", "malignant", "normal"), draw.per_class
        )
    # The held-out draw depends on the tuning one (drawn from the rest), so another tuning seed moves it.
    other = draw_samples(entries, dataclasses.replace(CONFIG.check, tuning=dataclasses.replace(
        CONFIG.check.tuning, seed=CONFIG.check.tuning.seed + 1)))  # fmt: skip
    with pytest.raises(DataError, match="not the draw"):
        check_samples(labels, other)
    # An image labelled in the other sample is refused.
    moved = dict(labels)
    first = held_out[0]
    moved[first] = dataclasses.replace(labels[first], sample="tuning")
    with pytest.raises(DataError, match=re.escape(f"{first} is labelled but not drawn")):
        check_samples(moved, drawn)


def test_the_labels_file_keeps_each_image_in_one_named_sample(tmp_path):
    labels = {"benign/a.png": _label(True, "breast"), "normal/b.png": _label(False, "unknown", "held_out")}
    write_labels(tmp_path / "labels.csv", labels)
    assert read_labels(tmp_path / "labels.csv") == labels
    assert read_labels(LABELS)  # the project's file reads, in the same format
    assert {r.sample for r in read_labels(LABELS).values()} == set(SAMPLES)
    good = (tmp_path / "labels.csv").read_text()
    (tmp_path / "bad.csv").write_text(good.replace(",held_out,", ",test,"))
    with pytest.raises(DataError, match=r"bad\.csv.*sample must be one of tuning, held_out"):
        read_labels(tmp_path / "bad.csv")
    lines = good.splitlines()
    (tmp_path / "twice.csv").write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(DataError, match="labelled twice"):
        read_labels(tmp_path / "twice.csv")


# Real images of the tuning sample whose marks were checked by eye, with what is on them.
MARKS = ("calipers", "text", "colour", "logo")
REAL = {
    "benign/benign (141).png": ((1, 1, 0, 1), "unknown"),  # two crosses numbered 1 and 2, dotted lines
    "benign/benign (225).png": ((0, 1, 0, 1), "axilla"),  # LT AXILLA
    "benign/benign (277).png": ((0, 1, 1, 1), "breast"),  # Doppler box and flow, yellow RT UOQ
    "malignant/malignant (118).png": ((1, 0, 0, 1), "unknown"),  # one faint grey cursor cross
    "normal/normal (5).png": ((0, 0, 0, 1), "unknown"),  # the clipped logo only
    "normal/normal (46).png": ((0, 0, 0, 0), "unknown"),  # nothing
}


def _inspect_real(file: str, folder: Path):
    """The overlay row of one real BUSI image, read from the archive."""
    path = folder / Path(file).name
    with zipfile.ZipFile(REAL_ZIP) as archive:
        path.write_bytes(archive.read(f"{DATASET_DIR}/{file}"))
    return inspect(path, file.split("/")[0], CONFIG)


@requires_real_zip
@pytest.mark.parametrize("file", sorted(REAL))
def test_real_images_checked_by_eye(file, tmp_path):
    row = _inspect_real(file, tmp_path)
    marks, view = REAL[file]
    assert (tuple(int(row.flag(k)) for k in MARKS), row.view) == (marks, view)
    label = read_labels(LABELS)[file]
    assert (tuple(int(label.flag(k)) for k in MARKS), label.view) == (marks, view)


# The tuning sample's misses before the detector was tuned on them (calipers and text as labelled by eye).
TUNING_MISSES = {
    "benign/benign (246).png": "small caliper numbers with blended rims",
    "benign/benign (247).png": "RT AXILLA joined to a bright streak of tissue",
    "benign/benign (251).png": "rt3, its t taken for a cross and read with doubt; numbered calipers",
    "normal/normal (122).png": "T C, the T cut to a 1-pixel stem by the left edge",
    "malignant/malignant (87).png": "a flat grey cursor beside bright tissue",
    "malignant/malignant (104).png": "saturated tissue, which OCR read as 'am' (no text)",
}


@requires_real_zip
@pytest.mark.parametrize("file", sorted(TUNING_MISSES))
def test_the_tuning_samples_former_misses_agree_with_their_labels(file, tmp_path):
    row = _inspect_real(file, tmp_path)
    label = read_labels(LABELS)[file]
    assert label.sample == "tuning"
    assert (row.calipers, row.text) == (label.calipers, label.text), TUNING_MISSES[file]
