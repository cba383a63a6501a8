"""The edits stage: marks and lesions removed by inpainting, and stores aligned with the image store."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bcmodels.data.edits import (
    EditFiles,
    check_kinds,
    edit_raw,
    jobs_of,
    make_edits,
    mark_mask,
    measuring_lines,
    square,
)
from bcmodels.data.edits_figure import edits_figure
from bcmodels.data.preprocess import preprocess
from bcmodels.errors import ConfigError, DataError
from bcmodels.formats.manifest import ManifestEntry
from bcmodels.formats.masks import read_masks
from bcmodels.formats.overlays import OverlayRow
from bcmodels.formats.store import read_images, read_index
from tests.conftest import project_params
from tests.synthetic import add_speckle, make_scan

EDITS = dataclasses.replace(project_params().edits, workers=1)
GEOMETRY = dataclasses.replace(project_params().preprocess, image_size=64, resize_short_side=72, workers=1)
WHITE = 235


def _scan(seed: int, height: int = 120, width: int = 150) -> np.ndarray:
    """A speckled synthetic scan as (H, W, 3) uint8 grey, darker than the marks drawn on it."""
    grey = (add_speckle(make_scan(seed, height, width), seed) * 180).astype(np.uint8)
    return np.stack([grey] * 3, axis=-1)


def _cross(rgb: np.ndarray, x: int, y: int, arm: int = 5) -> tuple[int, int, int, int]:
    """Draw a white caliper '+' centred at (x, y); its box as the audit writes it."""
    rgb[y, x - arm : x + arm + 1] = WHITE
    rgb[y - arm : y + arm + 1, x] = WHITE
    return (x - arm - 1, y - arm - 1, 2 * arm + 3, 2 * arm + 3)


def _marks(label: str = "benign", calipers=(), text=(), colour=None, logo=None) -> OverlayRow:
    return OverlayRow(label, bool(calipers), bool(text), colour is not None, logo is not None, "unknown",
                      tuple(calipers), tuple(text), colour, logo, "")  # fmt: skip


def test_inpainting_removes_a_drawn_cross_and_leaves_every_other_pixel_as_it_was():
    clean = _scan(1)
    drawn = clean.copy()
    box = _cross(drawn, 70, 60)
    mask = mark_mask(drawn, _marks(calipers=[box]), EDITS)
    edited = edit_raw_of(drawn, mask)
    x, y, w, h = box
    m = EDITS.mark_margin_px
    assert mask[y - m : y + h + m, x : x + w].all() and mask[y : y + h, x - m : x + w + m].all()  # grown by m
    assert w * h < mask.sum() <= (w + 2 * m) * (h + 2 * m)  # by a disc: the corners are rounded
    assert np.array_equal(edited[~mask], drawn[~mask])  # nothing outside the mask moves
    cross = drawn[..., 0] == WHITE
    # the cross's pixels now look like the tissue around them, not like a white mark
    assert (
        np.abs(edited[cross].astype(int) - clean[cross]).mean()
        < 40
        < np.abs(drawn[cross].astype(int) - clean[cross]).mean()
    )
    assert edited[cross].max() < WHITE - 40


def edit_raw_of(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return cv2.inpaint(rgb, mask.astype(np.uint8), EDITS.radius, cv2.INPAINT_TELEA)


def test_a_dotted_measuring_line_between_two_calipers_is_found_and_repainted():
    rgb = _scan(2, 140, 200)
    a, b, c = _cross(rgb, 30, 40), _cross(rgb, 160, 100), _cross(rgb, 40, 115)
    for t in np.linspace(0, 1, 130)[::3]:  # dots every 3 pixels from a to b
        rgb[round(40 + 60 * t), round(30 + 130 * t)] = WHITE
    grey = rgb.max(axis=2)
    assert measuring_lines(grey, [a, b, c], EDITS.line_contrast, EDITS.line_share) == [(a, b)]
    mask = mark_mask(rgb, _marks(calipers=[a, b, c]), EDITS)
    assert mask[round(40 + 60 * 0.5), round(30 + 130 * 0.5)]  # the middle of the line
    assert not mask[round(40 + 60 * 0.5) + 20, round(30 + 130 * 0.5)]  # tissue beside it
    without = mark_mask(rgb, _marks(calipers=[a, b, c]), dataclasses.replace(EDITS, marks=("text",)))
    assert not without.any()  # kinds not asked for are left alone


def test_only_the_coloured_pixels_of_an_image_with_colour_are_repainted():
    rgb = _scan(3)
    rgb[50:54, 20:120] = (240, 200, 0)  # a yellow box edge over the tissue
    colour = _marks(colour=(20, 50, 100, 4))
    mask = mark_mask(rgb, colour, EDITS)
    m = EDITS.mark_margin_px
    assert mask[50:54, 20:120].all() and mask.sum() < (4 + 2 * m + 2) * (100 + 2 * m + 2)
    assert not mark_mask(rgb, _marks(), EDITS).any()  # the audit did not flag colour: nothing is looked for


def test_unknown_or_repeated_mark_kinds_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"edits\.marks\[1\]: invalid value 'ruler'"):
        check_kinds(["calipers", "ruler"])
    with pytest.raises(ConfigError, match=r"edits\.marks: names a kind twice"):
        check_kinds(["text", "text"])


def _tree(root: Path) -> tuple[list[ManifestEntry], dict[str, OverlayRow]]:
    """Four raw images of different sizes (two lesions, two normal) with masks beside them, the first with a cross."""
    entries, masks, marks = [], [], {}
    for i, (label, size) in enumerate([("benign", (150, 120)), ("malignant", (130, 170)), ("normal", (160, 110)),
                                       ("normal", (120, 120))]):  # fmt: skip
        file = f"{label}/{label} ({i + 1}).png"
        rgb = _scan(10 + i, size[1], size[0])
        lesion = np.zeros(size[::-1], dtype=np.uint8)
        if label != "normal":
            cv2.ellipse(lesion, (size[0] // 2, size[1] // 2), (25, 15), 0, 0, 360, 255, -1)
        crosses = [_cross(rgb, size[0] // 2 - 30, size[1] // 2)] if i == 0 else []
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / file)
        Image.fromarray(lesion).save(root / file.replace(".png", "_mask.png"))
        entries.append(ManifestEntry(file, label, hashlib.sha256((root / file).read_bytes()).hexdigest()))
        masks.append(ManifestEntry(file.replace(".png", "_mask.png"), label, "0" * 64, "mask"))
        marks[file] = _marks(label, calipers=crosses)
    return entries + masks, marks


def test_the_edited_stores_are_aligned_with_the_image_store_in_its_order(tmp_path):
    raw = tmp_path / "raw"
    entries, marks = _tree(raw)
    processed = preprocess(raw, entries, GEOMETRY, tmp_path / "processed", tmp_path / "masks")
    out = EditFiles(tmp_path / "overlays.csv", tmp_path / "mark_free", tmp_path / "lesion_free")
    counts = make_edits(raw, entries, marks, EDITS, GEOMETRY, out)
    assert {k: v for k, v in counts.items() if not k.endswith("_in_store")} == {
        "images": 4, "marks": 1, "lesions": 2, "shams": 2
    }  # fmt: skip
    assert counts["marks_in_store"] == 1 and counts["lesions_in_store"] == 2
    index = read_index(tmp_path / "processed")
    _, lesions = read_masks(tmp_path / "masks")
    for store in (out.mark_free, out.lesion_free):
        assert read_index(store) == index  # same files, same order
    mark_free, lesion_free = read_images(out.mark_free, 4), read_images(out.lesion_free, 4)
    assert mark_free.shape == lesion_free.shape == processed.shape
    assert np.array_equal(mark_free[1:], processed[1:])  # no marks: byte for byte the image store's
    assert not np.array_equal(mark_free[0], processed[0])
    for i in (0, 1):  # the lesion is gone where the mask store says it is, and nothing moved far from it
        changed = np.abs(lesion_free[i].astype(int) - processed[i]).max(axis=2) > 0
        reach = int(np.ceil(EDITS.lesion_margin_px * 72 / 120)) + 2  # the grown rim at the store's scale, resampling
        near = cv2.dilate(lesions[i], np.ones((2 * reach + 1,) * 2, np.uint8)) > 0
        assert changed[lesions[i] > 0].mean() > 0.7 and not changed[~near].any()
    assert all(not np.array_equal(lesion_free[i], processed[i]) for i in (2, 3))  # the sham patches
    jobs = jobs_of(raw, entries, marks, out.overlays)
    edits_figure(jobs, EDITS, GEOMETRY, tmp_path / "edits.png")
    assert (tmp_path / "edits.png").read_bytes()[:4] == b"\x89PNG"


def test_sham_edits_take_lesion_masks_spread_over_the_lesion_images(tmp_path):
    entries, marks = _tree(tmp_path)
    jobs = jobs_of(tmp_path, entries, marks, tmp_path / "overlays.csv")
    assert [bool(j.sham) for j in jobs] == [False, False, True, True]
    assert [j.sham[0].name for j in jobs[2:]] == ["benign (1)_mask.png", "malignant (2)_mask.png"]
    normal = edit_raw(jobs[2], EDITS)
    assert normal.lesion.any() and normal.lesion.shape == normal.raw.shape[:2]  # the donor's mask, stretched
    assert np.array_equal(square(normal.mark_free, GEOMETRY), square(normal.raw, GEOMETRY))


def test_an_image_missing_from_the_overlays_file_names_the_stage_to_rerun(tmp_path):
    entries, marks = _tree(tmp_path)
    del marks["normal/normal (4).png"]
    with pytest.raises(DataError, match=r"overlays\.csv: no row for normal/normal \(4\)\.png.*dvc repro overlays"):
        jobs_of(tmp_path, entries, marks, tmp_path / "overlays.csv")
