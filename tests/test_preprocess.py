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
from bcmodels.formats.manifest import read_manifest
from bcmodels.formats.store import IMAGES_FILE, INDEX_FILE, read_images, read_index
from bcmodels.io.images import to_square
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
    array = preprocess(busi["tree"] / DATASET_DIR, busi["entries"], SMALL, out)
    stored = read_images(out, len(busi["entries"]))
    assert stored.shape == (30, 32, 32, 3) and stored.dtype == np.uint8
    assert np.array_equal(stored, array)
    index = read_index(out)
    assert [r.file for r in index] == [e.file for e in busi["entries"]]
    assert not any("_mask" in r.file for r in index)
    first = Image.open(busi["tree"] / DATASET_DIR / busi["entries"][0].file)
    assert np.array_equal(stored[0], np.asarray(to_square(first, "study", 32, 36)))
    assert sorted(p.name for p in out.iterdir()) == [IMAGES_FILE, INDEX_FILE]  # no temporary files left


def test_undecodable_image_is_named(busi, tmp_path):
    broken = busi["tree"] / DATASET_DIR / "benign" / "benign (2).png"
    broken.write_bytes(broken.read_bytes()[:100])
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"benign \(2\)\.png: cannot decode image"):
        preprocess(busi["tree"] / DATASET_DIR, busi["entries"], dataclasses.replace(SMALL, workers=1), out / "p")
    assert not out.exists() or list(out.iterdir()) == []  # no output, no temporary folder


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_failure_mid_preprocess_keeps_the_previous_output_whole(busi, tmp_path):
    out = tmp_path / "out" / "processed"
    preprocess(busi["tree"] / DATASET_DIR, busi["entries"], SMALL, out)
    before = _contents(out)
    last = busi["tree"] / DATASET_DIR / busi["entries"][-1].file  # the others are decoded before it fails
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(DataError, match=re.escape(f"{last}: cannot decode image (image file is truncated)")):
        preprocess(busi["tree"] / DATASET_DIR, busi["entries"], dataclasses.replace(SMALL, image_size=24), out)
    assert _contents(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["processed"]  # no temporary folder beside it


def test_a_full_disk_while_writing_leaves_neither_file_half_new(busi, tmp_path, monkeypatch):
    one = dataclasses.replace(SMALL, workers=1)
    out = tmp_path / "out" / "processed"
    preprocess(busi["tree"] / DATASET_DIR, busi["entries"][:3], one, out)
    before = _contents(out)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out / INDEX_FILE))

    monkeypatch.setattr(bcmodels.formats.store, "write_csv", disk_full)  # images.npy is written, index.csv fails
    with pytest.raises(OSError, match="No space left"):
        preprocess(busi["tree"] / DATASET_DIR, busi["entries"][:3], dataclasses.replace(one, image_size=24), out)
    assert _contents(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["processed"]


def test_a_disk_that_fills_during_the_array_write_ends_in_one_line_naming_the_store(
    busi, tmp_path, monkeypatch, capsys
):
    """numpy reports the short write of a full disk as an OSError without errno (measured on a 2 MB tmpfs)."""
    one = dataclasses.replace(SMALL, workers=1)
    out = tmp_path / "out" / "processed"
    preprocess(busi["tree"] / DATASET_DIR, busi["entries"][:3], one, out)
    before = _contents(out)

    def fills_the_disk(f, array, *args, **kwargs):
        f.write(array.tobytes()[:100])
        raise OSError(f"{array.nbytes} requested and 100 written")

    monkeypatch.setattr(bcmodels.formats.store.np, "save", fills_the_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=0))
    bigger = dataclasses.replace(one, image_size=24)
    with pytest.raises(SystemExit) as exited:
        run_stage(lambda: preprocess(busi["tree"] / DATASET_DIR, busi["entries"][:3], bigger, out))
    assert exited.value.code == 1
    assert capsys.readouterr().err == f"error: {out}: the disk is full; free some space and run again\n"
    assert _contents(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["processed"]


def test_a_store_whose_array_and_index_disagree_asks_for_a_rerun(busi, tmp_path):
    out = tmp_path / "processed"
    preprocess(busi["tree"] / DATASET_DIR, busi["entries"], SMALL, out)
    with pytest.raises(DataError, match=r"does not match its index of 31 images; rerun `dvc repro preprocess`"):
        read_images(out, 31)
    (out / IMAGES_FILE).write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"images\.npy: not a readable image store"):
        read_images(out, 30)


@requires_real_zip
def test_real_images_preprocess_without_their_masks(tmp_path):
    entries = read_manifest(PROJECT_ROOT / "data" / "busi_manifest.tsv")
    install_dataset(REAL_ZIP, tmp_path / DATASET_DIR, entries, project_params().download)
    array = preprocess(tmp_path / DATASET_DIR, entries, SMALL, tmp_path / "processed")
    assert array.shape == (780, 32, 32, 3)
    index = read_index(tmp_path / "processed")
    assert Counter(r.label for r in index) == {"benign": 437, "malignant": 210, "normal": 133}
    assert not any("_mask" in r.file for r in index)
