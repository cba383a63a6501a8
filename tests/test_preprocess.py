from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torchvision.transforms as T
from PIL import Image

from bcmodels.config import PreprocessConfig
from bcmodels.download import DATASET_DIR, install_dataset, read_manifest
from bcmodels.errors import DataError
from bcmodels.preprocess import IMAGES_FILE, INDEX_FILE, preprocess, read_index, to_square
from tests.conftest import PROJECT_ROOT, REAL_ZIP, requires_real_zip


@pytest.mark.parametrize("size", [(70, 45), (45, 70), (64, 64), (563, 474)])
def test_study_geometry_equals_torchvision_resize_then_center_crop(size):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    config = PreprocessConfig(geometry="study", image_size=32, resize_short_side=36)
    expected = T.Compose([T.Resize(36), T.CenterCrop(32)])(image)
    assert np.array_equal(np.asarray(to_square(image, config)), np.asarray(expected))


def test_letterbox_keeps_the_whole_image_undistorted():
    image = Image.new("RGB", (80, 40), (200, 200, 200))
    out = np.asarray(to_square(image, PreprocessConfig(geometry="letterbox", image_size=32)))
    assert out.shape == (32, 32, 3)
    assert (out[:8] == 0).all() and (out[-8:] == 0).all()  # black bars above and below
    assert (out[8:24] == 200).all()  # the image, scaled to 32 x 16, in the middle


def test_resize_geometry_fills_the_square():
    image = Image.new("RGB", (80, 40), (90, 90, 90))
    out = np.asarray(to_square(image, PreprocessConfig(geometry="resize", image_size=32)))
    assert out.shape == (32, 32, 3) and (out == 90).all()


def test_grey_and_palette_images_become_rgb():
    grey = Image.new("L", (50, 60), 77)
    out = np.asarray(to_square(grey, PreprocessConfig(image_size=32, resize_short_side=36)))
    assert out.shape == (32, 32, 3) and (out == 77).all()


def test_preprocess_writes_store_and_index_in_manifest_order(busi, tmp_path):
    config = PreprocessConfig(image_size=32, resize_short_side=36, workers=2)
    out = tmp_path / "processed"
    array = preprocess(busi["tree"] / DATASET_DIR, busi["entries"], config, out)
    stored = np.load(out / IMAGES_FILE)
    assert stored.shape == (30, 32, 32, 3) and stored.dtype == np.uint8
    assert np.array_equal(stored, array)
    index = read_index(out / INDEX_FILE)
    assert [r["file"] for r in index] == [e.file for e in busi["entries"]]
    assert not any("_mask" in r["file"] for r in index)
    first = Image.open(busi["tree"] / DATASET_DIR / busi["entries"][0].file)
    assert np.array_equal(stored[0], np.asarray(to_square(first, config)))
    assert sorted(p.name for p in out.iterdir()) == [IMAGES_FILE, INDEX_FILE]  # no temporary files left


def test_undecodable_image_is_named(busi, tmp_path):
    broken = busi["tree"] / DATASET_DIR / "benign" / "benign (2).png"
    broken.write_bytes(broken.read_bytes()[:100])
    config = PreprocessConfig(image_size=32, resize_short_side=36, workers=1)
    with pytest.raises(DataError, match=r"benign \(2\)\.png: cannot decode image"):
        preprocess(busi["tree"] / DATASET_DIR, busi["entries"], config, tmp_path / "processed")
    assert not (tmp_path / "processed" / IMAGES_FILE).exists()


@requires_real_zip
def test_real_images_preprocess_without_their_masks(tmp_path):
    entries = read_manifest(PROJECT_ROOT / "data" / "busi_manifest.tsv")
    install_dataset(REAL_ZIP, tmp_path / DATASET_DIR, entries)
    config = PreprocessConfig(image_size=32, resize_short_side=36)
    array = preprocess(tmp_path / DATASET_DIR, entries, config, tmp_path / "processed")
    assert array.shape == (780, 32, 32, 3)
    index = read_index(tmp_path / "processed" / INDEX_FILE)
    assert Counter(r["class"] for r in index) == {"benign": 437, "malignant": 210, "normal": 133}
    assert not any("_mask" in r["file"] for r in index)
