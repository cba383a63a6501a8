from __future__ import annotations

import dataclasses
import re
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torchvision.transforms as T
from PIL import Image

import bcmodels.formats.store
from bcmodels.data.busi import DATASET_DIR, install_dataset
from bcmodels.data.preprocess import preprocess
from bcmodels.errors import DataError, run_stage
from bcmodels.formats.manifest import masks_by_image, read_manifest
from bcmodels.formats.masks import read_masks
from bcmodels.formats.store import IMAGES_FILE, INDEX_FILE, read_images, read_index
from bcmodels.io.images import join_masks, to_square
from tests.conftest import PROJECT_ROOT, REAL_ZIP, project_params, requires_real_zip

SMALL = dataclasses.replace(project_params().preprocess, image_size=32, resize_short_side=36, workers=2)


@pytest.mark.parametrize("size", [(70, 45), (45, 70), (64, 64), (563, 474), (20, 12), (3, 5), (1, 1)])
def test_study_geometry_equals_torchvision_resize_then_center_crop(size):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    expected = T.Compose([T.Resize(36), T.CenterCrop(32)])(image)
    assert np.array_equal(np.asarray(to_square(image, "study", 32, 36)), np.asarray(expected))


def test_letterbox_keeps_the_whole_image_undistorted():
    out = np.asarray(to_square(Image.new("RGB", (80, 40), (200, 200, 200)), "letterbox", 32, 32))
    assert out.shape == (32, 32, 3)
    assert (out[:8] == 0).all() and (out[-8:] == 0).all()  # black bars above and below
    assert (out[8:24] == 200).all()  # the image, scaled to 32 x 16, in the middle


def test_resize_geometry_fills_the_square():
    out = np.asarray(to_square(Image.new("RGB", (80, 40), (90, 90, 90)), "resize", 32, 32))
    assert out.shape == (32, 32, 3) and (out == 90).all()


def test_grey_and_palette_images_become_rgb():
    out = np.asarray(to_square(Image.new("L", (50, 60), 77), "study", 32, 36))
    assert out.shape == (32, 32, 3) and (out == 77).all()


def test_preprocess_writes_store_and_index_in_manifest_order(busi, tmp_path):
    out = tmp_path / "processed"
    array = preprocess(busi["tree"] / DATASET_DIR, busi["entries"], SMALL, out, tmp_path / "masks")
    images = [e for e in busi["entries"] if e.kind == "image"]
    stored = read_images(out, len(images))
    assert stored.shape == (30, 32, 32, 3) and stored.dtype == np.uint8
    assert np.array_equal(stored, array)
    index = read_index(out)
    assert [r.file for r in index] == [e.file for e in images]
    assert not any("_mask" in r.file for r in index)
    first = Image.open(busi["tree"] / DATASET_DIR / busi["entries"][0].file)
    assert np.array_equal(stored[0], np.asarray(to_square(first, "study", 32, 36)))
    assert sorted(p.name for p in out.iterdir()) == [IMAGES_FILE, INDEX_FILE]  # no temporary files left


def test_undecodable_image_is_named(busi, tmp_path):
    broken = busi["tree"] / DATASET_DIR / "benign" / "benign (2).png"
    broken.write_bytes(broken.read_bytes()[:100])
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"benign \(2\)\.png: cannot decode image"):
        preprocess(
            busi["tree"] / DATASET_DIR, busi["entries"], dataclasses.replace(SMALL, workers=1), out / "p", out / "m"
        )
    assert not out.exists() or list(out.iterdir()) == []  # no output, no temporary folder


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_failure_mid_preprocess_keeps_the_previous_output_whole(busi, tmp_path):
    out = tmp_path / "out" / "processed"
    preprocess(busi["tree"] / DATASET_DIR, busi["entries"], SMALL, out, tmp_path / "masks")
    before = _contents(out)
    last = busi["tree"] / DATASET_DIR / busi["entries"][29].file  # the last image: the others are decoded before it
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(DataError, match=re.escape(f"{last}: cannot decode image (image file is truncated)")):
        preprocess(
            busi["tree"] / DATASET_DIR,
            busi["entries"],
            dataclasses.replace(SMALL, image_size=24),
            out,
            tmp_path / "masks",
        )
    assert _contents(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["processed"]  # no temporary folder beside it


def test_a_full_disk_while_writing_leaves_neither_file_half_new(busi, tmp_path, monkeypatch):
    one = dataclasses.replace(SMALL, workers=1)
    out = tmp_path / "out" / "processed"
    preprocess(busi["tree"] / DATASET_DIR, busi["entries"][:3], one, out, tmp_path / "masks")
    before = _contents(out)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out / INDEX_FILE))

    monkeypatch.setattr(bcmodels.formats.store, "write_csv", disk_full)  # images.npy is written, index.csv fails
    with pytest.raises(OSError, match="No space left"):
        preprocess(
            busi["tree"] / DATASET_DIR,
            busi["entries"][:3],
            dataclasses.replace(one, image_size=24),
            out,
            tmp_path / "masks",
        )
    assert _contents(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["processed"]


def test_a_disk_that_fills_during_the_array_write_ends_in_one_line_naming_the_store(
    busi, tmp_path, monkeypatch, capsys
):
    """numpy reports the short write of a full disk as an OSError without errno (measured on a 2 MB tmpfs)."""
    one = dataclasses.replace(SMALL, workers=1)
    out = tmp_path / "out" / "processed"
    preprocess(busi["tree"] / DATASET_DIR, busi["entries"][:3], one, out, tmp_path / "masks")
    before = _contents(out)

    def fills_the_disk(f, array, *args, **kwargs):
        f.write(array.tobytes()[:100])
        raise OSError(f"{array.nbytes} requested and 100 written")

    monkeypatch.setattr(bcmodels.formats.store.np, "save", fills_the_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=0))
    bigger = dataclasses.replace(one, image_size=24)
    with pytest.raises(SystemExit) as exited:
        run_stage(lambda: preprocess(busi["tree"] / DATASET_DIR, busi["entries"][:3], bigger, out, tmp_path / "masks"))
    assert exited.value.code == 1
    # Under load the progress bar may have written its own line first; the error is the one error line, last.
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    assert lines[-1] == f"error: {out}: the disk is full; free some space and run again"
    assert _contents(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["processed"]


def test_a_store_whose_array_and_index_disagree_asks_for_a_rerun(busi, tmp_path):
    out = tmp_path / "processed"
    preprocess(busi["tree"] / DATASET_DIR, busi["entries"], SMALL, out, tmp_path / "masks")
    with pytest.raises(DataError, match=r"does not match its index of 31 images; rerun `dvc repro preprocess`"):
        read_images(out, 31)
    (out / IMAGES_FILE).write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"images\.npy: not a readable image store"):
        read_images(out, 30)


@pytest.mark.slow
@requires_real_zip
def test_real_images_preprocess_without_their_masks(tmp_path):
    entries = read_manifest(PROJECT_ROOT / "data" / "busi_manifest.tsv")
    install_dataset(REAL_ZIP, tmp_path / DATASET_DIR, entries, project_params().download)
    array = preprocess(tmp_path / DATASET_DIR, entries, SMALL, tmp_path / "processed", tmp_path / "masks")
    assert array.shape == (780, 32, 32, 3)
    index = read_index(tmp_path / "processed")
    assert Counter(r.label for r in index) == {"benign": 437, "malignant": 210, "normal": 133}
    assert not any("_mask" in r.file for r in index)


def test_masks_are_joined_made_square_like_their_image_and_stored_in_its_order(busi, tmp_path):
    out, masks_dir = tmp_path / "processed", tmp_path / "masks"
    preprocess(busi["tree"] / DATASET_DIR, busi["entries"], SMALL, out, masks_dir)
    rows, masks = read_masks(masks_dir)
    assert [r.file for r in rows] == [r.file for r in read_index(out)]
    assert masks.shape == (30, 32, 32) and set(np.unique(masks)) <= {0, 1}
    by_image = masks_by_image(busi["entries"])
    assert [r.masks for r in rows] == [len(by_image.get(r.file, [])) for r in rows]
    raw = busi["tree"] / DATASET_DIR
    for k, row in enumerate(rows):
        # the same geometry as the image: the joined raw masks as a grey picture through to_square
        joined = np.zeros_like(np.asarray(Image.open(raw / row.file).convert("L")), dtype=bool)
        for mask in by_image[row.file]:
            joined |= np.asarray(Image.open(raw / mask.file).convert("L")) > 127
        grey = Image.fromarray(joined.astype(np.uint8) * 255)
        expected = np.asarray(to_square(grey, "study", 32, 36))[..., 0] >= 128
        assert np.array_equal(masks[k], expected.astype(np.uint8)), row.file


def test_an_image_without_masks_gets_an_empty_one_and_a_mask_of_another_size_is_refused(busi, tmp_path):
    images = [e for e in busi["entries"] if e.kind == "image"][:2]
    preprocess(busi["tree"] / DATASET_DIR, images, SMALL, tmp_path / "processed", tmp_path / "masks")
    rows, masks = read_masks(tmp_path / "masks")
    assert [r.masks for r in rows] == [0, 0] and not masks.any()
    mask = busi["tree"] / DATASET_DIR / "benign" / "benign (1)_mask.png"
    Image.new("1", (7 + Image.open(mask).width, 9)).save(mask)
    with pytest.raises(DataError, match=re.escape(f"{mask}: a mask of ")):
        preprocess(busi["tree"] / DATASET_DIR, busi["entries"], SMALL, tmp_path / "p2", tmp_path / "m2")


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _square_coordinates(x: float, y: float, w: int, h: int, geometry: str, size: int, short: int) -> tuple:
    """Where raw pixel coordinate (x, y) of a w x h image lands in the square, from the geometry's definition
    (torchvision's Resize(short) + CenterCrop(size); a plain resize; letterbox), independently of to_square."""
    if geometry == "resize":
        return x * size / w, y * size / h
    if geometry == "letterbox":
        scale = size / max(w, h)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        return x * sw / w + (size - sw) // 2, y * sh / h + (size - sh) // 2
    nw, nh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    return x * nw / w - round((nw - size) / 2), y * nh / h - round((nh - size) / 2)


@pytest.mark.slow
@requires_real_zip
@pytest.mark.parametrize("geometry", ["study", "resize", "letterbox"])
def test_real_masks_are_aligned_with_their_images(tmp_path, geometry):
    """The lesion's box in the stored mask is where the geometry puts the raw mask's box (within a pixel),
    on 30 real lesions of each class and 10 normal images (whose masks are empty)."""
    manifest = PROJECT_ROOT / "data" / "busi_manifest.tsv"
    by_image = masks_by_image(read_manifest(manifest, kinds=("mask",)))
    images = read_manifest(manifest)
    chosen = [
        e
        for c, n in (("benign", 30), ("malignant", 30), ("normal", 10))
        for e in [i for i in images if i.label == c][:n]
    ]
    entries = chosen + [m for e in chosen for m in by_image[e.file]]
    raw = tmp_path / DATASET_DIR
    install_dataset(REAL_ZIP, raw, entries, project_params().download)
    size, short = 128, 146
    config = dataclasses.replace(SMALL, geometry=geometry, image_size=size, resize_short_side=short)
    preprocess(raw, entries, config, tmp_path / "processed", tmp_path / "masks")
    rows, masks = read_masks(tmp_path / "masks")
    checked = 0
    for row, mask in zip(rows, masks):
        joined = np.zeros(Image.open(raw / row.file).size[::-1], dtype=bool)
        for m in by_image[row.file]:
            joined |= np.asarray(Image.open(raw / m.file).convert("L")) > 127
        if row.label == "normal":
            assert not joined.any() and not mask.any(), row.file
            continue
        h, w = joined.shape
        x0, y0, x1, y1 = _bbox(joined)
        (ex0, ey0), (ex1, ey1) = (
            _square_coordinates(x, y, w, h, geometry, size, short) for x, y in ((x0, y0), (x1, y1))
        )
        if min(ex0, ey0) < 1 or max(ex1, ey1) > size - 1:
            continue  # the lesion reaches the crop's edge: its box there is the edge, not the lesion's
        got = _bbox(mask)
        assert np.allclose(got, (ex0, ey0, ex1, ey1), atol=1.5), (row.file, got, (ex0, ey0, ex1, ey1))
        checked += 1
    assert checked >= 30  # most lesions (39 of 60 in the study's centre crop) lie clear of the square's edge


def test_a_mask_that_is_not_binary_or_not_readable_is_refused_by_name(busi, tmp_path):
    raw = busi["tree"] / DATASET_DIR
    mask = raw / "benign" / "benign (1)_mask.png"
    width, height = Image.open(mask).size
    grey = np.zeros((height, width), dtype=np.uint8)
    grey[: height // 2] = 255
    grey[height // 2 :, : width // 2] = 128  # a third grey level: a soft edge or another drawing
    Image.fromarray(grey).save(mask)
    with pytest.raises(DataError, match=re.escape(f"{mask}: not a binary mask (3 grey levels")):
        preprocess(raw, busi["entries"], SMALL, tmp_path / "p", tmp_path / "m")
    assert not (tmp_path / "p").exists() and not (tmp_path / "m").exists()
    mask.write_bytes(b"not a png")
    with pytest.raises(DataError, match=re.escape(str(mask))):
        preprocess(raw, busi["entries"], SMALL, tmp_path / "p", tmp_path / "m")
    mask.unlink()
    with pytest.raises(DataError, match=re.escape(str(mask))):
        preprocess(raw, busi["entries"], SMALL, tmp_path / "p", tmp_path / "m")


def test_a_mask_of_zeros_and_ones_marks_its_lesion(tmp_path):
    lesion = np.zeros((40, 60), dtype=np.uint8)
    lesion[10:20, 30:50] = 1
    Image.fromarray(lesion).save(tmp_path / "m.png")
    assert np.array_equal(join_masks([tmp_path / "m.png"], (60, 40)), lesion.astype(bool))
