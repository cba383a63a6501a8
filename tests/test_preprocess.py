from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torchvision.transforms as T
from PIL import Image
from ruamel.yaml import YAML

import bcmodels.preprocess

from bcmodels.config import PreprocessConfig
from bcmodels.download import DATASET_DIR, install_dataset, read_manifest
from bcmodels.errors import DataError
from bcmodels.preprocess import IMAGES_FILE, INDEX_FILE, preprocess, read_index, to_square
from tests.conftest import PROJECT_ROOT, REAL_ZIP, requires_real_zip


@pytest.mark.parametrize("size", [(70, 45), (45, 70), (64, 64), (563, 474), (20, 12), (3, 5), (1, 1)])
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
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"benign \(2\)\.png: cannot decode image"):
        preprocess(busi["tree"] / DATASET_DIR, busi["entries"], config, out / "processed")
    assert not out.exists() or list(out.iterdir()) == []  # no output, no temporary folder


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_failure_mid_preprocess_keeps_the_previous_output_whole(busi, tmp_path):
    config = PreprocessConfig(image_size=32, resize_short_side=36, workers=2)
    out = tmp_path / "out" / "processed"
    preprocess(busi["tree"] / DATASET_DIR, busi["entries"], config, out)
    before = _contents(out)
    last = busi["tree"] / DATASET_DIR / busi["entries"][-1].file  # the others are decoded before it fails
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(DataError, match=re.escape(f"{last}: cannot decode image (image file is truncated)")):
        preprocess(busi["tree"] / DATASET_DIR, busi["entries"], PreprocessConfig(image_size=24), out)
    assert _contents(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["processed"]  # no temporary folder beside it


def test_failure_while_writing_leaves_neither_file_half_new(busi, tmp_path, monkeypatch):
    config = PreprocessConfig(image_size=32, resize_short_side=36, workers=1)
    out = tmp_path / "out" / "processed"
    preprocess(busi["tree"] / DATASET_DIR, busi["entries"][:3], config, out)
    before = _contents(out)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(bcmodels.preprocess, "write_csv", disk_full)  # images.npy is written, index.csv fails
    with pytest.raises(OSError, match="No space left"):
        preprocess(busi["tree"] / DATASET_DIR, busi["entries"][:3], PreprocessConfig(image_size=24, workers=1), out)
    assert _contents(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["processed"]


def test_stage_refuses_a_bad_image_naming_it_and_keeps_its_output(busi, tmp_path):
    """python -m stages.preprocess as a user runs it, in a project folder of its own."""
    params = YAML(typ="safe").load((PROJECT_ROOT / "params.yaml").read_text())
    params["preprocess"].update(image_size=32, resize_short_side=36, workers=1)
    with (tmp_path / "params.yaml").open("w") as f:
        YAML(typ="safe").dump(params, f)
    data = tmp_path / "data"
    shutil.copytree(busi["tree"] / DATASET_DIR, data / "raw" / DATASET_DIR)
    shutil.copy(busi["manifest"], data / "busi_manifest.tsv")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}

    def stage() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "stages.preprocess"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip

    assert stage().returncode == 0
    before = _contents(data / "processed")
    (data / "raw" / DATASET_DIR / "normal" / "normal (2).png").write_text("not an image")
    result = stage()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    bad = f"data/raw/{DATASET_DIR}/normal/normal (2).png"
    assert last_line.startswith(f"error: {bad}: cannot decode image (cannot identify image file")
    assert _contents(data / "processed") == before
    assert sorted(p.name for p in data.iterdir()) == ["busi_manifest.tsv", "processed", "raw"]


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
